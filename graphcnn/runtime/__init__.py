from graphcnn.runtime.executable import Executable, make_runner
from graphcnn.runtime.gradient_step import GradientStep

__all__ = ["Executable", "GradientStep", "make_runner"]
