"""The errors of ONNX import and export. Both are ValueErrors, so the CLI reports them as
argument errors (a message, never a traceback)."""
from __future__ import annotations


class OnnxImportError(ValueError):
    """An ONNX file graphcnn cannot import: not a valid ONNX model, an opset or op it does
    not support, a wrong dtype, a missing initializer, a shape that does not infer. The
    message names the node (name, op type, opset) where there is one."""


class OnnxExportError(ValueError):
    """A graphcnn model that cannot be written as ONNX (an op without an ONNX form)."""
