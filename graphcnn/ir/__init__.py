from graphcnn.ir.graph import Graph, Node, Value, infer_node
from graphcnn.ir.types import TensorType

__all__ = ["Graph", "Node", "Value", "TensorType", "infer_node"]
