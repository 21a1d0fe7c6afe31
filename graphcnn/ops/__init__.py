"""Op families; importing this package registers every op and makes the registry the IR's
source of op rules (see registry.py and graphcnn/ir/rules.py)."""
from graphcnn.ops import (  # noqa: F401  # noqa: F401,E402  (ONNX interop ops)
                          activations,
                          binary_math,
                          collective,
                          conv,
                          dense,
                          elementwise,
                          fused,
                          layout,  # noqa: F401,E402  (made by the layout pass)
                          loss,
                          loss_binary,
                          loss_box,
                          loss_pixel,
                          norm,
                          norm_group,
                          norm_running,
                          pad_modes,
                          pool,
                          power,
                          resize,
                          shape,
                          softmax,
                          source,
                          transpose,
                          upsample,
)
