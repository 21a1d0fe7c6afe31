"""Kernel families; importing this package registers every cpu kernel."""
from graphcnn.backends.cpu.kernels import elementwise, dense, loss  # noqa: F401
