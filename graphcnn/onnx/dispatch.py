"""Running an ONNX node through its folder or importer (importers.py): this module imports
every op module, so the tables are full before the first node is looked up."""
from __future__ import annotations

from typing import Any

from graphcnn.onnx import (  # noqa: F401  (fill the tables)
    ops_elementwise,
    ops_math,
    ops_nn,
    ops_norm,
    ops_reduce,
    ops_resize,
    ops_shape,
    ops_split,
)
from graphcnn.onnx.context import Folded, ImportContext
from graphcnn.onnx.importers import FOLDERS, IMPORTERS, Values
from graphcnn.onnx.reader import OnnxNode


def supported_ops() -> set[str]:
    return set(IMPORTERS) | set(FOLDERS)


def import_node(ctx: ImportContext, node: OnnxNode, inputs: Values) -> list[Any]:
    folded = [v for v in inputs if v is None or isinstance(v, Folded)]
    if node.op_type in FOLDERS and len(folded) == len(inputs):   # every input given folded
        outputs = FOLDERS[node.op_type](ctx, node, folded)
        # the folders check what they can before computing (ConstantOfShape, broadcasts,
        # Concat, Pad...); this bounds any other folded result before the next node reads it
        for out in outputs:
            if isinstance(out, Folded):
                ctx.check_folded([v.shape for v in out.values], out.values[0].dtype)
        return outputs
    if node.op_type in IMPORTERS:
        return IMPORTERS[node.op_type](ctx, node, inputs)
    raise ctx.error("graphcnn supports this op only in shape computations that fold at "
                    "import time (on constants and shapes), not on tensors computed at run "
                    "time")
