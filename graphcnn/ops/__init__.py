"""Op families; importing this package registers every op and makes the registry the IR's
source of op rules (see registry.py and graphcnn/ir/rules.py)."""
from graphcnn.ops import (conv, dense, elementwise, fused, loss, norm, pool,  # noqa: F401
                          shape, softmax, source)
from graphcnn.ops import transpose, upsample  # noqa: F401,E402  (ONNX interop ops)
from graphcnn.ops import layout  # noqa: F401,E402  (made by the layout pass)
