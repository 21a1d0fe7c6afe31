"""Op families; importing this package registers every op (see registry.py)."""
from graphcnn.ops import (conv, dense, elementwise, loss, norm, pool, shape,  # noqa: F401
                          softmax, source)
