"""The pass manager: a plain list of Graph -> Graph passes per opt level. It times each
pass, verifies the graph after it, names the pass in any error, and dumps the graph after
the passes named in GRAPHCNN_DUMP_AFTER (comma-separated, or 'all'; `pass_names()` lists
the names it takes, and any other name is an error rather than silently nothing)."""
from __future__ import annotations

import os
import sys
import time
from typing import Callable

from graphcnn.backends import Backend, get_backend
from graphcnn.errors import VerificationError
from graphcnn.ir.graph import Graph
from graphcnn.ir.verify import verify
from graphcnn.passes.bn_affine import batch_norm_to_affine
from graphcnn.passes.bn_folding import fold_batch_norm
from graphcnn.passes.bn_train_activation import fuse_batch_norm_activation
from graphcnn.passes.constant_folding import constant_folding
from graphcnn.passes.cse import common_subexpression_elimination
from graphcnn.passes.dce import dead_code_elimination
from graphcnn.passes.fusion import fuse_operators
from graphcnn.passes.pool_first import pool_before_pointwise_conv
from graphcnn.passes.simplify import algebraic_simplification

Pass = Callable[[Graph], Graph]

# The order: DCE first so no pass works on dead nodes; constant folding before batch-norm
# folding (it turns weights computed from constants into the constants BN folding needs)
# and before simplification (x * 1 needs its 1 to be a constant); BN folding before
# simplification (folding removes the batch norms, nothing it makes needs simplifying
# again); the batch norms folding left (after no conv or linear) become sub/mul/add after
# it, for fusion to join with their neighbours, and before simplification (a scale of ones
# is an x * 1); an average pool after a 1x1 conv goes before it once batch norms between
# them are folded; simplification before CSE (an identity removed may make two nodes read
# the same value); DCE for whatever the others left unread; a training batch norm takes the
# relu or clip after it (on the final graph, where it knows every reader of y); fusion
# last.
PIPELINES: dict[int, list[Pass]] = {
    0: [],
    1: [dead_code_elimination, constant_folding, algebraic_simplification,
        common_subexpression_elimination, dead_code_elimination],
    2: [dead_code_elimination, constant_folding, fold_batch_norm, batch_norm_to_affine,
        pool_before_pointwise_conv, algebraic_simplification, common_subexpression_elimination, dead_code_elimination,
        fuse_batch_norm_activation, fuse_operators],
}
DUMP_ENV = "GRAPHCNN_DUMP_AFTER"


def passes_for(opt_level: int, backend: str | Backend | None = None) -> list[Pass]:
    """The pipeline of `opt_level`, with `backend`'s own passes (None: none) just before
    fusion at opt level 2 and up (see Backend.passes)."""
    if opt_level not in PIPELINES:
        raise ValueError(f"opt_level must be one of {sorted(PIPELINES)}, got {opt_level}")
    passes = list(PIPELINES[opt_level])
    if opt_level >= 2 and backend is not None:
        at = passes.index(fuse_operators)
        passes[at:at] = get_backend(backend).passes()
    return passes


def pass_names() -> list[str]:
    """The name of every pass some pipeline may run: those of the opt levels and each
    backend's own (what GRAPHCNN_DUMP_AFTER takes, besides 'all')."""
    from graphcnn.backends import BACKENDS
    names = [p.__name__ for level in PIPELINES.values() for p in level]
    names += [p.__name__ for b in BACKENDS for p in get_backend(b).passes()]
    return list(dict.fromkeys(names))


def dump_after() -> set[str]:
    """The pass names in GRAPHCNN_DUMP_AFTER; an unknown one is a ValueError listing the
    valid names (a typo would otherwise print nothing, silently)."""
    dump = {p.strip() for p in os.environ.get(DUMP_ENV, "").split(",") if p.strip()}
    valid = pass_names()
    unknown = sorted(dump - set(valid) - {"all"})
    if unknown:
        raise ValueError(f"{DUMP_ENV}: unknown pass name(s) {', '.join(unknown)}; expected "
                         f"'all' or some of {', '.join(valid)}")
    return dump


def run_pipeline(graph: Graph, opt_level: int, backend: str | Backend | None = None
                 ) -> tuple[Graph, dict[str, float]]:
    """Run the passes of `opt_level` (and of `backend`, if it has its own: see
    Backend.passes) on `graph`."""
    passes = passes_for(opt_level, backend)
    dump = dump_after()
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
