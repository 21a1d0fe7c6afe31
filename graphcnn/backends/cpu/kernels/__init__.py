"""Kernel families; importing this package registers every cpu kernel."""
from graphcnn.backends.cpu.kernels import (conv, dense, elementwise, loss, norm,  # noqa: F401
                                           pool, shape, softmax)
