"""The errors of ONNX import and export. Both are ValueErrors, so the CLI reports them as
argument errors (a message, never a traceback)."""
from __future__ import annotations

from graphcnn.errors import LimitError


class OnnxImportError(ValueError):
    """An ONNX file graphcnn cannot import: not a valid ONNX model, an opset or op it does
    not support, a wrong dtype, a missing initializer, a shape that does not infer. The
    message names the node (name, op type, opset) where there is one."""


class OnnxExportError(ValueError):
    """A graphcnn model that cannot be written as ONNX (an op without an ONNX form)."""


class OnnxLimitError(OnnxImportError, LimitError):
    """An ONNX file that declares or folds a tensor larger than a limit of graphcnn.limits
    (an input, an initializer, a folded constant): refused before it is allocated, naming
    the node, the shape, the byte size and the setting that raises the limit."""
