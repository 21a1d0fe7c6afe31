"""Limits on what graphcnn materializes from a model or a file, checked before allocating.

A hostile or broken file can declare any size: an ONNX input of [N, 1e5, 1e5, 1e5], a
`ConstantOfShape` of [4e8, 4] folded at import, an artifact array of a terabyte. Each is
refused with a one-line error that names the tensor, its shape and byte size, and the
setting that raises the limit, before anything of that size is allocated.

Settings (environment variables, read at each check so a test or a user can change them
at run time; a byte count, optionally with a K/M/G/T suffix, powers of 1024):

    GRAPHCNN_MAX_TENSOR_BYTES    the largest single tensor a model may declare or a compiled
                                 plan may hold (inputs, weights, intermediates at the
                                 compiled batch size), and the largest array an artifact
                                 may store; default 2G
    GRAPHCNN_MAX_CONSTANT_BYTES  the largest array ONNX import may compute while folding
                                 constants and shape computations; default 1G
"""
from __future__ import annotations

import math
import os
import re
from typing import TYPE_CHECKING, Iterable

from graphcnn.errors import LimitError

if TYPE_CHECKING:
    from graphcnn.ir.graph import Graph

TENSOR_ENV = "GRAPHCNN_MAX_TENSOR_BYTES"
CONSTANT_ENV = "GRAPHCNN_MAX_CONSTANT_BYTES"
DEFAULTS = {TENSOR_ENV: 2 << 30, CONSTANT_ENV: 1 << 30}
_SUFFIX = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE = re.compile(r"^\s*(\d+)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)


def _setting(env: str) -> int:
    text = os.environ.get(env, "").strip()
    if not text:
        return DEFAULTS[env]
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"{env}={text!r} is not a byte count (e.g. 4294967296 or 4G)")
    return int(match.group(1)) * _SUFFIX[match.group(2).upper()]


def max_tensor_bytes() -> int:
    """The limit GRAPHCNN_MAX_TENSOR_BYTES sets (default 2 GiB)."""
    return _setting(TENSOR_ENV)


def max_constant_bytes() -> int:
    """The limit GRAPHCNN_MAX_CONSTANT_BYTES sets (default 1 GiB)."""
    return _setting(CONSTANT_ENV)


def format_bytes(n: int) -> str:
    """A byte count for people: '6.0 GiB (6442450944 bytes)'."""
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit} ({n} bytes)"
    return f"{n} bytes"


def nbytes(shape: Iterable[int], itemsize: int) -> int:
    """The byte size of a tensor of `shape`, in Python integers (no overflow)."""
    return math.prod(int(d) for d in shape) * int(itemsize)


def check_bytes(size: int, what: str, env: str = TENSOR_ENV, hint: str = "") -> None:
    """Raise LimitError if `size` bytes exceed the limit the setting `env` sets; `what`
    names the tensor and its shape ("node 'x' (ConstantOfShape): float32[400000000, 4]")."""
    limit = _setting(env)
    if size > limit:
        raise LimitError(f"{what} would take {format_bytes(size)}, over the limit of "
                         f"{format_bytes(limit)} per tensor; raise it with the environment "
                         f"variable {env} if this is intended{hint}")


def check_graph(graph: Graph, hint: str = "") -> None:
    """Every value of an IR graph within GRAPHCNN_MAX_TENSOR_BYTES (before any backend
    allocates an arena or runs a node). `hint` is added to the message (e.g. a smaller
    batch size)."""
    limit = max_tensor_bytes()
    for node in graph.nodes:
        for value in node.outputs:
            if value.type.nbytes > limit:
                where = f" (at {node.loc})" if node.loc else ""
                label = f"input {node.attrs.get('name')!r}" if node.op == "input" else \
                    f"the output of {node.op} (%{value.id})"
                check_bytes(value.type.nbytes, f"{label}: {value.dtype}{list(value.shape)}"
                            f"{where}", hint=hint)
