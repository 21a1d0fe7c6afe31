"""Kernel families; importing this package registers every cpu kernel."""
from graphcnn.backends.cpu.kernels import (broadcast, conv, dense, fused, loss,  # noqa: F401
                                           norm, pool, shape, softmax)
from graphcnn.backends.cpu.kernels import transpose, upsample  # noqa: F401,E402
from graphcnn.backends.cpu.kernels import blocked, blocked_expand  # noqa: F401,E402
