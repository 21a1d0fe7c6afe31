"""ONNX import and export (needs the optional packages onnx, and onnxruntime to run an
exported model: ``pip install 'graphcnn[onnx]'``).

    >>> import graphcnn as gc
    >>> model = gc.onnx.load("model.onnx")                  # doctest: +SKIP
    >>> gc.onnx.save(gc.models.lenet5(), "lenet5.onnx")      # doctest: +SKIP
"""
from graphcnn.onnx import export_math  # noqa: F401  (fills the exporter's table)
from graphcnn.onnx.dispatch import supported_ops
from graphcnn.onnx.errors import OnnxExportError, OnnxImportError
from graphcnn.onnx.exporter import save, to_proto
from graphcnn.onnx.loader import load
from graphcnn.onnx.reader import MAX_OPSET, MIN_OPSET

__all__ = ["MAX_OPSET", "MIN_OPSET", "OnnxExportError", "OnnxImportError", "load", "save",
           "supported_ops", "to_proto"]
