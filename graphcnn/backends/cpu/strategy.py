"""Which implementation runs each node on the cpu backend, decided once per node when the
runner is built (as TVM's op strategies do).

Each op with more than one way to run has a strategy (candidates.py and, by op family,
candidates_grad.py, candidates_blocked.py, candidates_dense.py): candidate
implementations, each with the predicate saying which nodes it computes (`applies`), the
cost model's gate saying whether it is worth offering at all (`offered`) and a priority.
The offered candidates of the highest priority win; where several tie, those outside the
accuracy contract (accuracy.py: measured against float64 when autotuning, else as declared)
are left out, and the autotuner (autotune.py,
its measurements cached on disk per machine) picks the fastest, or the cost model's
default when measuring is off (GRAPHCNN_AUTOTUNE=0). The shape rules are
graphcnn/ops/conv_shapes.py's and the kernels' cost models (conv_gemm.use_gemm,
winograd.worth_trying, dense.use_blas); nothing else decides.

    impl = implementation(node, buffers)    # once, when the CpuRunner is built
    impl.run(ins, outs, attrs)               # the runner's step, at every run

The result is an Implementation record (name, why, run; the bytes of the frozen weights it
prepacked and of the workspaces a call takes); the runner keeps one per step
(`Step.implementation`, `Step.why`, `Step.packed_bytes`, `Step.workspace_bytes`),
`graphcnn inspect` and the bench profile show the names, and
an artifact saves the names so that loading it runs the same ones (a saved name that does
not apply on the loading machine is chosen again, with a warning). An op without a
strategy runs its registered kernel ('default'), or, with a scalar formula, its
generated kernel ('generated'). Called outside a runner (tests, one-off
calls), the registered kernel of an op here chooses at each call (choosing_kernel, at the end of this file).

Candidates are measured, when they are, on the node's shapes: its frozen weights and
random arrays for the rest (the node's own arrays when a kernel is called directly).
"""
from __future__ import annotations

import contextlib
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from graphcnn.backends.cpu import accuracy, autotune, blas
from graphcnn.backends.cpu.candidates import (
    STORES_OVER_SIDE,
    STRATEGIES,
    Candidate,
    Core,
    Site,
    anchor_site,
    array_site,
    node_site,
)
from graphcnn.backends.cpu.candidates_blocked import BLOCKED_STRATEGIES
from graphcnn.backends.cpu.candidates_dense import DENSE_STRATEGIES
from graphcnn.backends.cpu.candidates_grad import GRAD_STRATEGIES
from graphcnn.backends.cpu.kernels import conv_gemm, fused, nchw16c, pool_max_grad
from graphcnn.backends.cpu.registry import KernelFn, cpu_kernel, get_kernel
from graphcnn.ops.registry import get_op

STRATEGIES.update(BLOCKED_STRATEGIES)
STRATEGIES.update(DENSE_STRATEGIES)
STRATEGIES.update(GRAD_STRATEGIES)

__all__ = ["STRATEGIES", "Implementation", "Site", "array_site", "choose", "forced",
           "implementation", "node_site"]


@dataclass(frozen=True)
class Implementation:
    """How one node runs, chosen once. `run(ins, outs, attrs)` is what the runner's step
    calls at every run (the registered kernels' signature, every decision taken); `name`
    the candidate ('winograd', 'direct-wide', 'nchw16c-1x1'; 'default' for an op with one
    kernel, 'generated' for an elementwise group); `why` the rule, the cost model or the
    autotuner that chose it. `packed_bytes`: the frozen weights transformed for the kernel
    (packed panels, Winograd's U, NCHW16c blocks), made when the implementation was built
    and held by `run` (a live weight is transformed at each call: 0); `prepack()` makes
    them again, for an artifact's recording run (None: nothing prepacked).
    `workspaces`: the scratch one call takes beyond its outputs (conv_gemm.workspace's
    buffers), role -> bytes in the order the kernel asks for them, by its own formula
    for the node's shapes; `workspace_bytes` the bytes they take, laid out.
    `side_in_place`: the input `run` may find in its output's own bytes (a fused group's
    residual, which its kernel reads at each element just before storing it; the memory
    plan's over_side), or None."""
    name: str
    why: str
    run: KernelFn
    prepack: Callable[[], Any] | None = None
    packed_bytes: int = 0
    workspaces: dict[str, int] = field(default_factory=dict)
    side_in_place: int | None = None

    @property
    def workspace_bytes(self) -> int:
        return conv_gemm.layout_bytes(self.workspaces)


# ---- choosing -----------------------------------------------------------------------------

_FORCED = threading.local()


@contextlib.contextmanager
def forced(names: dict[str, str]) -> Iterator[None]:
    """Within the block (in this thread), op -> the candidate every node of that op runs
    where the candidate applies (offered or not, whatever the contract): how the tests run
    each algorithm on whole models. A node it does not apply to is chosen as usual."""
    before = getattr(_FORCED, "names", {})
    _FORCED.names = {**before, **names}
    try:
        yield
    finally:
        _FORCED.names = before


def choose(site: Site, saved: str | None = None, where: str = "",
           group: Callable[[Candidate], Callable[[], None]] | None = None,
           group_key: tuple = ()) -> tuple[Candidate, str]:
    """(the candidate that runs `site`, why). `saved`: a name to take if it applies.
    `group`: for a fused group's anchor, a call of the whole group on each candidate, which
    the autotuner times instead of the anchor alone (under `group_key` beside the anchor's
    key): the candidates that apply the epilogue as they store save a pass the others make."""
    strategy = STRATEGIES[site.op]
    wanted = getattr(_FORCED, "names", {}).get(site.op)
    if wanted is not None:
        for c in strategy.candidates:
            if c.name == wanted and c.applies(site):
                return c, "forced (strategy.forced)"
    if saved is not None:
        for c in strategy.candidates:
            if c.name == saved and c.applies(site):
                return c, "saved with the artifact"
        warnings.warn(f"graphcnn: the saved implementation {saved!r} of {where or site.op} "
                      f"does not apply here; choosing again", RuntimeWarning, stacklevel=4)
    offered = [c for c in strategy.candidates if c.applies(site) and c.offered(site)]
    top = max(c.priority for c in offered)
    tied = [c for c in offered if c.priority == top]
    if len(tied) == 1:
        return tied[0], tied[0].rule
    tied, note = _within_contract(site, tied)
    if len(tied) == 1:
        return tied[0], f"the only one within the accuracy contract{note}"
    names = [c.name for c in tied]
    runs = {c.name: group(c) if group is not None else _timed(c.build(site), site)
            for c in tied}
    with blas.one_thread_pool():  # as the runner runs them
        name = autotune.pick(site.op, strategy.tune_key(site) + group_key, runs,
                             strategy.default(names))
    if autotune.enabled():
        conv_gemm.release_workspaces()  # what measuring every candidate grew them to
    how = "autotuned" if autotune.enabled() else "cost model"
    return next(c for c in tied if c.name == name), f"{how}, of {' | '.join(names)}{note}"


def _within_contract(site: Site, tied: list[Candidate]) -> tuple[list[Candidate], str]:
    """The tied candidates that meet the accuracy contract (accuracy.py): measured against
    float64 where the autotuner measures (cached with its choices), else as declared."""
    if not autotune.enabled() or site.op not in accuracy.MEASURED_OPS:
        return accuracy.meets(site, tied, None)
    names = [c.name for c in tied]

    def measure() -> dict[str, float]:
        with blas.one_thread_pool():
            return accuracy.measure(site, tied)
    errors = autotune.errors(f"accuracy:{site.op}", STRATEGIES[site.op].tune_key(site),
                             names, measure)
    return accuracy.meets(site, tied, errors)


def _timed(core: Core, site: Site) -> Callable[[], None]:
    def run() -> None:
        conv_gemm.begin_call()
        core.run(*site.scratch())
    return run


def implementation(node: Any, buffers: dict[int, np.ndarray], saved: str | None = None
                   ) -> Implementation:
    """The Implementation that runs `node` (its constants' arrays in `buffers`); `saved`:
    the name an artifact recorded for it."""
    where = f"%{node.outputs[0].id} ({node.op})" if node.outputs else node.op
    if node.op == "fused":
        return fused_implementation(node_site(node, buffers), saved, where)
    if node.op in STRATEGIES:
        return plain_implementation(node_site(node, buffers), saved, where)
    name = "generated" if get_op(node.op).scalar is not None else "default"
    if saved not in (None, name):
        warnings.warn(f"graphcnn: the saved implementation {saved!r} of {where} does not "
                      f"apply here; running its kernel", RuntimeWarning, stacklevel=2)
    if name == "generated":
        out = node.outputs[0]
        return Implementation(name, "its scalar formula: a generated kernel",
                              fused.single_op_step(node.op, node.attrs,
                                                   [v.shape for v in node.inputs],
                                                   out.shape, out.dtype))
    return Implementation(name, "the op's one kernel", get_kernel(node.op))


def plain_implementation(site: Site, saved: str | None, where: str = "") -> Implementation:
    candidate, why = choose(site, saved, where)
    core = candidate.build(site)
    run, add = core.run, STRATEGIES[site.op].add_bias
    if core.adds_bias or add is None or len(site.in_shapes) < 3:
        def step(ins: list[np.ndarray], outs: list[np.ndarray], _: Any) -> None:
            run(ins, outs[0])
    else:
        def step(ins: list[np.ndarray], outs: list[np.ndarray], _: Any) -> None:
            run(ins, outs[0])
            add(outs[0], ins[2])
    return Implementation(candidate.name, why, step, prepack=core.prepack,
                          packed_bytes=core.packed_bytes, workspaces=candidate.scratch(site))


def fused_implementation(site: Site, saved: str | None, where: str = "") -> Implementation:
    attrs, anchor = site.attrs, site.attrs["anchor"]
    if not anchor:
        return Implementation("generated", "an elementwise group: its generated kernel",
                              fused.epilogue_step(attrs, site.out_shape, site.out_dtype,
                                                  site.in_shapes, None, False))
    if anchor == "concat":
        return Implementation("parts", "each part of the concatenation through the generated "
                              "epilogue into its channels",
                              fused.concat_epilogue_step(attrs, site.out_shape, site.out_dtype,
                                                         site.in_shapes))
    head = anchor_site(site)
    if anchor not in STRATEGIES:
        kernel, anchor_attrs = get_kernel(anchor), attrs["anchor_attrs"]
        relu_side = _relu_grad_side(site)
        if anchor in MASKED_BY_RELU_GRAD and relu_side is not None:
            masked_kernel, head_inputs = MASKED_BY_RELU_GRAD[anchor], attrs["anchor_inputs"]

            def relu_masked(ins: list[np.ndarray], outs: list[np.ndarray], _: Any) -> None:
                masked_kernel(ins[:head_inputs], outs[0], anchor_attrs, ins[relu_side])
            return Implementation("default", "the anchor's one kernel; the relu_grad mask "
                                  "applied as it stores", relu_masked)
        return _group_of(site, head, "default", "the anchor's one kernel",
                         Core(lambda ins, out: kernel(ins, [out], anchor_attrs)), {})

    def group(candidate: Candidate) -> Callable[[], None]:
        chosen = _group_of(site, head, candidate.name, "", candidate.build(head), {})

        def run() -> None:
            ins, out = site.scratch()
            conv_gemm.begin_call()
            chosen.run(ins, [out], attrs)
        return run
    candidate, why = choose(head, saved, where, group, _epilogue_key(site))
    return _group_of(site, head, candidate.name, why, candidate.build(head),
                     candidate.scratch(head))


def _group_of(site: Site, head: Site, name: str, why: str, core: Core,
              workspaces: dict[str, int]) -> Implementation:
    """A fused group run on `core` (its anchor's kernel): the epilogue applied as the core
    stores where it can, else the generated epilogue after it."""
    attrs = site.attrs
    if core.store is not None:
        form = nchw16c.epilogue_form(attrs["steps"], list(zip(site.in_shapes, site.in_dtypes)),
                                     (site.out_shape, site.out_dtype))
        if form is not None:
            # (a side that is also the conv's own input is read as a window: never)
            over_side = name in STORES_OVER_SIDE.get(head.op, ()) and \
                form.side is not None and form.side >= attrs["anchor_inputs"]
            return Implementation(name, f"{why}; the epilogue applied as it stores",
                                  fused.stored_epilogue_step(attrs, core.store, form,
                                                             over_side),
                                  prepack=core.prepack, packed_bytes=core.packed_bytes,
                                  workspaces=workspaces,
                                  side_in_place=form.side if over_side else None)
    mask = _clip_grad_mask(site)
    if core.store_mask is not None and mask is not None:
        side, low, high = mask
        head_inputs, store_mask = attrs["anchor_inputs"], core.store_mask

        def masked(ins: list[np.ndarray], outs: list[np.ndarray], _: Any) -> None:
            store_mask(ins[:head_inputs], outs[0], (ins[side], low, high))
        return Implementation(name, f"{why}; the clip_grad mask applied as it stores", masked,
                              prepack=core.prepack, packed_bytes=core.packed_bytes,
                              workspaces=workspaces)
    bias = not core.adds_bias and len(head.in_shapes) == 3
    return Implementation(name, f"{why}; then the generated epilogue",
                          fused.epilogue_step(attrs, site.out_shape, site.out_dtype,
                                              site.in_shapes, core.run, bias),
                          prepack=core.prepack, packed_bytes=core.packed_bytes,
                          workspaces=workspaces)


def _one_step_by(site: Site, op: str) -> tuple[int, dict[str, Any]] | None:
    """(side input, the step's attrs) where the group's epilogue is one `op` of the anchor's
    result by a side input of the output's shape and dtype (a mask a kernel can apply as
    it stores); else None."""
    steps = site.attrs["steps"]
    if len(steps) != 1 or steps[0][0] != op:
        return None
    _, step_attrs, refs = steps[0]
    if len(refs) != 2 or refs[0] != -1 or refs[1] < 0:
        return None
    side = refs[1]
    if (tuple(site.in_shapes[side]) != tuple(site.out_shape)
            or np.dtype(site.in_dtypes[side]) != np.dtype(site.out_dtype)):
        return None
    return side, step_attrs


def _clip_grad_mask(site: Site) -> tuple[int, float, float] | None:
    """(side input, low, high) where the group's epilogue is one clip_grad by a side input
    (_one_step_by), with finite bounds (ReLU6's gradient after a depthwise input
    gradient: MobileNet's); else None."""
    found = _one_step_by(site, "clip_grad")
    if found is None:
        return None
    side, step_attrs = found
    low, high = float(step_attrs["low"]), float(step_attrs["high"])
    if not (np.isfinite(low) and np.isfinite(high)):
        return None
    return side, low, high


# Kernels that apply a fused relu_grad's mask themselves, by anchor op: kernel(anchor
# inputs, out, anchor attrs, y).
MASKED_BY_RELU_GRAD: dict[str, Callable[..., None]] = {
    "max_pool2d_grad": pool_max_grad.max_pool2d_grad_relu}


def _relu_grad_side(site: Site) -> int | None:
    """The side input y where the group's epilogue is one relu_grad by y (_one_step_by;
    ResNet's stem: the max pool's gradient, then the relu's); else None."""
    found = _one_step_by(site, "relu_grad")
    return None if found is None else found[0]


def _epilogue_key(site: Site) -> tuple:
    """What a fused group adds to its anchor's autotuning key: its epilogue's ops, their
    attributes and the operands they read beyond the anchor's."""
    steps = tuple((op, repr(sorted(op_attrs.items())), refs)
                  for op, op_attrs, refs in site.attrs["steps"])
    return ("epilogue", steps, site.in_shapes[site.attrs["anchor_inputs"]:])


# ---- the registered kernels: choosing at each call ------------------------------------------
# For calls outside a runner (tests, one-off calls, a kernel that falls back on another):
# registered when this module is imported (the cpu runner imports it), so that the
# kernel registry, which every kernel module imports, need not import the strategy.

def choosing_kernel(op: str) -> KernelFn:
    def kernel(ins: list[np.ndarray], outs: list[np.ndarray], attrs: dict[str, Any]) -> None:
        conv_gemm.begin_call()
        site = array_site(op, ins, outs[0], attrs)
        chosen = fused_implementation(site, None) if op == "fused" else \
            plain_implementation(site, None)
        chosen.run(ins, outs, attrs)
    kernel.__name__ = kernel.__qualname__ = f"{op}_kernel"
    kernel.__doc__ = (f"The cpu kernel of {op} called outside a runner: chooses its "
                      f"implementation at each call (a runner chooses once per node).")
    return kernel


for _op in (*STRATEGIES, "fused"):
    cpu_kernel(_op)(choosing_kernel(_op))
