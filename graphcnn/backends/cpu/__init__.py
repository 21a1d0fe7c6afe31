from graphcnn.backends.cpu.runner import CpuRunner

__all__ = ["CpuRunner"]
