"""The pass manager: a plain list of Graph -> Graph passes per opt level. It times each
pass, verifies the graph after it, names the pass in any error, and dumps the graph after
the passes named in GRAPHCNN_DUMP_AFTER (comma-separated, or 'all')."""
from __future__ import annotations

import os
import sys
import time
from typing import Callable

from graphcnn.errors import VerificationError
from graphcnn.ir.graph import Graph
from graphcnn.ir.verify import verify
from graphcnn.passes.bn_folding import fold_batch_norm
from graphcnn.passes.constant_folding import constant_folding
from graphcnn.passes.cse import common_subexpression_elimination
from graphcnn.passes.dce import dead_code_elimination
from graphcnn.passes.fusion import fuse_operators
from graphcnn.passes.layout import nchw16c_layout, fuse_expand_depthwise
from graphcnn.passes.simplify import algebraic_simplification

Pass = Callable[[Graph], Graph]

# The order: DCE first so no pass works on dead nodes; constant folding before batch-norm
# folding (it turns weights computed from constants into the constants BN folding needs)
# and before simplification (x * 1 needs its 1 to be a constant); BN folding before
# simplification (folding removes the batch norms, nothing it makes needs simplifying
# again); simplification before CSE (an identity removed may make two nodes read the same
# value); DCE for whatever the others left unread; fusion last, on the final graph.
PIPELINES: dict[int, list[Pass]] = {
    0: [],
    1: [dead_code_elimination, constant_folding, algebraic_simplification,
        common_subexpression_elimination, dead_code_elimination],
    2: [dead_code_elimination, constant_folding, fold_batch_norm, algebraic_simplification,
        common_subexpression_elimination, dead_code_elimination, fuse_operators],
    3: [dead_code_elimination, constant_folding, fold_batch_norm, algebraic_simplification,
        common_subexpression_elimination, dead_code_elimination, fuse_operators],
}

# Passes for one backend's kernels, run at opt level 2 and up just before fusion (so the
# groups form around the ops they make): the cpu backend's blocked layout for depthwise
# regions (inference graphs only: the backward kernels are NCHW), then MobileNetV2's
# expand -> clip -> depthwise chains in it as one op.
BACKEND_PASSES: dict[str, list[Pass]] = {"cpu": [nchw16c_layout, fuse_expand_depthwise]}


def passes_for(opt_level: int, backend: str | None = None) -> list[Pass]:
    """The pipeline of `opt_level`, with `backend`'s own passes (None: none)."""
    if opt_level not in PIPELINES:
        raise ValueError(f"opt_level must be one of {sorted(PIPELINES)}, got {opt_level}")
    passes = list(PIPELINES[opt_level])
    if opt_level >= 2 and backend in BACKEND_PASSES:
        at = passes.index(fuse_operators)
        passes[at:at] = BACKEND_PASSES[backend]
    return passes


def run_pipeline(graph: Graph, opt_level: int, backend: str | None = None
                 ) -> tuple[Graph, dict[str, float]]:
    """Run the passes of `opt_level` (and of `backend`, if it has its own: see
    BACKEND_PASSES) on `graph`."""
    passes = passes_for(opt_level, backend)
    dump = {p.strip() for p in os.environ.get("GRAPHCNN_DUMP_AFTER", "").split(",") if p.strip()}
    timings: dict[str, float] = {}
    verify(graph)
    for pass_fn in passes:
        name = pass_fn.__name__
        start = time.perf_counter()
        try:
            graph = pass_fn(graph)
            verify(graph)
        except VerificationError as err:
            raise VerificationError(f"after pass {name!r}: {err}") from err
        except Exception as err:
            err.args = (f"in pass {name!r}: {err}",) + err.args[1:]
            raise
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - start
        if name in dump or "all" in dump:
            print(f"// after {name}\n{graph}", file=sys.stderr)
    return graph, timings
