"""The lowering of elementwise chains that every code generator shares.

A chain of elementwise steps (a fused group's `steps`, graphcnn/ops/fused.py: per step
an op, its attributes, and operand refs: -1 for the running value, k >= 0 for the fused
node's input k) becomes backend-neutral SSA lines, one per step, from the op registry's
scalar formulas (`OpDef.scalar`) with the step's attributes inlined as literals:

    steps: ("add", {}, (-1, 3)), ("clip", {"low": 0.0, "high": 6.0}, (-1,)),
           ("tanh", {}, (-1,))
    lines: t0 = (v + a0)
           t1 = (0.0 if t0 < 0.0 else (6.0 if t0 > 6.0 else t0))
           t2 = math.tanh(t1)

The names: `v` is the anchor's output element (a group with an anchor), `a<k>` the
element of the k-th side input (the fused node's inputs the chain reads, in `side_refs`
order), `t<k>` the value after step k; the last `t` is the chain's result. The lines are
plain Python expressions (arithmetic, comparisons, conditional expressions, `math`
calls and constants) that Numba compiles for the CPU and for CUDA alike. A renderer (the cpu code
generator, backends/cpu/codegen.py, and the cuda one, backends/cuda/codegen.py) binds v
and the a<k> in its own loop nest or device function, renames library calls to its own
(`Lowered.render`: the cpu writes `math.tanh` as a vectorizable `fast_tanh`), and stores
the result. So each formula is lowered once, here, for every backend, as tinygrad's
renderers share one language; this module imports neither Numba nor any backend.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from graphcnn.ops.registry import get_op

Step = tuple[str, Mapping[str, Any], Sequence[int]]

RUNNING = -1  # the operand ref of the running value
ANCHOR_VALUE = "v"

# A library call in a formula: `math.tanh(`, not part of a longer name.
_CALL = re.compile(r"(?<![\w.])(math\.[A-Za-z_]\w*)(?=\()")


@dataclass(frozen=True)
class Ssa:
    """One line: `name = expr`."""

    name: str
    expr: str

    def __str__(self) -> str:
        return f"{self.name} = {self.expr}"


@dataclass(frozen=True)
class Lowered:
    """A chain lowered: its lines, the name of its result, and the fused node's input
    index behind each side name (sides[k] is read as `a<k>`)."""

    lines: tuple[Ssa, ...]
    result: str
    sides: tuple[int, ...]
    anchored: bool

    @property
    def calls(self) -> frozenset[str]:
        """The library calls the lines make, e.g. {"math.tanh"}."""
        return frozenset(m for line in self.lines for m in _CALL.findall(line.expr))

    def render(self, calls: Mapping[str, str] | None = None) -> list[str]:
        """The lines as statements, each library call renamed by `calls` (a call it does
        not name stays as it is)."""
        if not calls:
            return [str(line) for line in self.lines]
        return [f"{line.name} = "
                + _CALL.sub(lambda m: calls.get(m.group(1), m.group(1)), line.expr)
                for line in self.lines]


def side_name(k: int) -> str:
    return f"a{k}"


def side_refs(steps: Sequence[Step]) -> list[int]:
    """The fused node's inputs the chain reads, in the order of its side names a0, a1..."""
    return sorted({r for _, _, refs in steps for r in refs if r >= 0})


def literal(value: Any) -> str:
    """An attribute value as a source literal (floats exactly, by repr; the non-finite
    ones, which repr writes as names no generated module defines, as `math` constants:
    a clip without one bound has the other at infinity)."""
    if isinstance(value, (bool, np.bool_)):
        return "True" if value else "False"
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value):
            return "math.nan"
        if math.isinf(value):
            return "math.inf" if value > 0 else "(-math.inf)"
        return repr(value)
    if isinstance(value, (int, np.integer)):
        return repr(int(value))
    raise TypeError(f"cannot inline attribute value {value!r} into generated code")


def lower(steps: Sequence[Step], anchored: bool) -> Lowered:
    """The SSA lines of a chain. `anchored`: the chain starts from the anchor's value `v`;
    otherwise its first step reads side inputs only."""
    sides = side_refs(steps)
    position = {r: k for k, r in enumerate(sides)}
    running = ANCHOR_VALUE if anchored else None
    lines = []
    for k, (op, attrs, refs) in enumerate(steps):
        formula = get_op(op).scalar
        if formula is None:
            raise NotImplementedError(f"op {op!r} has no scalar formula; it cannot be fused")
        if running is None and RUNNING in refs:
            raise ValueError(f"step {k} ({op}) reads the running value before anything "
                             f"made it")
        operands = [running if r == RUNNING else side_name(position[r]) for r in refs]
        expr = formula.format(*operands, **{key: literal(v) for key, v in attrs.items()})
        lines.append(Ssa(f"t{k}", expr))
        running = lines[-1].name
    if running is None or running == ANCHOR_VALUE:
        raise ValueError("a chain needs at least one step")
    return Lowered(tuple(lines), running, tuple(sides), anchored)
