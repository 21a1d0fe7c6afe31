"""Op families; importing this package registers every op (see registry.py)."""
from graphcnn.ops import source, elementwise, dense, loss  # noqa: F401
