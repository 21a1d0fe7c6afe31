"""Kernel families; importing this package registers every cpu kernel."""
from graphcnn.backends.cpu.kernels import (conv, dense, elementwise, fused, loss,  # noqa: F401
                                           norm, pool, shape, softmax)
from graphcnn.backends.cpu.kernels import transpose, upsample  # noqa: F401,E402
from graphcnn.backends.cpu.kernels import nchw16c, nchw16c_expand  # noqa: F401,E402
