from graphcnn.runtime.executable import Executable, make_runner

__all__ = ["Executable", "make_runner"]
