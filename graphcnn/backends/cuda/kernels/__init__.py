"""Kernel families; importing this package registers every cuda kernel (it imports
numba.cuda: only the cuda runner and the tests import it)."""
from graphcnn.backends.cuda.kernels import (conv, dense, fused, loss, norm,  # noqa: F401
                                            pool, reduce, shape, softmax)
from graphcnn.backends.cuda.kernels import layout  # noqa: F401,E402
