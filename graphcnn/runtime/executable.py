"""Executable: a compiled graph with named, checked inputs and outputs."""
from __future__ import annotations

import itertools
from typing import Any, Callable

import numpy as np

from graphcnn.ir.graph import Graph
from graphcnn.runtime.memory_plan import live_bytes_lower_bound
from graphcnn.ir.conventions import DROPOUT_SEED_INPUT

BACKENDS = ("reference", "cpu", "cuda")


def make_runner(graph: Graph, backend: str) -> Any:
    if backend == "reference":
        from graphcnn.backends.reference import ReferenceRunner
        return ReferenceRunner(graph)
    if backend == "cpu":
        from graphcnn.backends.cpu import CpuRunner
        return CpuRunner(graph)
    if backend == "cuda":
        from graphcnn.backends.cuda.runner import CudaRunner  # imports numba.cuda only now
        return CudaRunner(graph)
    raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")


def intermediate_bytes(graph: Graph) -> int:
    """The bytes of every value a compute node makes: one buffer per value."""
    return sum(v.type.nbytes for n in graph.compute_nodes() for v in n.outputs)


class Executable:
    """Runs a graph on a backend. Call it with arrays for the model's inputs (positional,
    in order, or by name); it returns the output (or a tuple of outputs)."""

    def __init__(self, graph: Graph, backend: str, *, ops_before: int,
                 naive_bytes_before: int | None = None,
                 compile_seconds: float = 0.0,
                 param_source: Callable[[], dict[str, np.ndarray]] | None = None,
                 seed: int = 0, runner: Any = None) -> None:
        self.graph = graph
        self.backend = backend
        self.runner = runner if runner is not None else make_runner(graph, backend)
        self._ops_before = ops_before
        self._naive_bytes_before = naive_bytes_before
        self.compile_seconds = compile_seconds
        self._param_source = param_source
        self.seed = seed
        self._seeds = itertools.count(seed * 1_000_003)
        self._inputs = {n.attrs["name"]: n.output for n in graph.nodes if n.op == "input"}
        self._params = {n.attrs["name"]: n.output for n in graph.nodes if n.op == "param"}
        self.input_names = [k for k in self._inputs if k != DROPOUT_SEED_INPUT]
        self.output_names = list(graph.output_names)

    # ---- calling ----------------------------------------------------------------------
    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Inputs by name -> outputs by name."""
        unknown = sorted(set(feeds) - set(self._inputs))
        if unknown:
            raise ValueError(f"unknown input(s) {unknown}; this model takes {self.input_names}")
        by_id: dict[int, np.ndarray] = {}
        for name, value in self._inputs.items():
            if name in feeds:
                array = feeds[name]
            elif name == DROPOUT_SEED_INPUT:
                array = np.asarray(next(self._seeds), dtype=np.int64)
            else:
                raise ValueError(f"missing input {name!r}; this model takes {self.input_names}")
            by_id[value.id] = check_array(name, array, value.shape, value.dtype)
        if self._params:
            source = self._param_source() if self._param_source else {}
            for name, value in self._params.items():
                if name not in source:
                    raise ValueError(f"no value for parameter {name!r}")
                by_id[value.id] = check_array(name, source[name], value.shape, value.dtype)
        outputs = self.runner.run(by_id)
        return dict(zip(self.output_names, outputs))

    def __call__(self, *args: np.ndarray, **kwargs: np.ndarray) -> Any:
        if len(args) > len(self.input_names):
            raise ValueError(f"{len(args)} inputs given; this model takes {self.input_names}")
        feeds = dict(zip(self.input_names, args))
        feeds.update(kwargs)
        outputs = list(self.run(feeds).values())
        return outputs[0] if len(outputs) == 1 else tuple(outputs)

    def save(self, path: Any) -> None:
        """Write this executable as an ahead-of-time compiled artifact: graph, memory plan,
        weights and machine code in one file that `graphcnn.load` runs without compiling
        (see graphcnn/runtime/artifact.py). The write is atomic."""
        from graphcnn.runtime.artifact import save_artifact
        save_artifact(self, path)

    # ---- reporting --------------------------------------------------------------------
    def report(self) -> dict[str, Any]:
        """ops_before: ops of the graph as the model wrote it; kernels: what runs now;
        peak_bytes: the arena; naive_bytes: one buffer per intermediate of the graph as
        written (what running it without an optimizer takes); optimized_naive_bytes: one
        buffer per intermediate of the optimized graph (what fusion alone saves);
        lower_bound_bytes: the most bytes alive at once at one op of the optimized graph."""
        optimized_naive = intermediate_bytes(self.graph)
        naive = self._naive_bytes_before if self._naive_bytes_before is not None \
            else optimized_naive
        plan = getattr(self.runner, "plan", None)
        return {
            "backend": self.backend,
            "ops_before": self._ops_before,
            "kernels": len(getattr(self.runner, "steps", self.graph.compute_nodes())),
            "peak_bytes": plan.arena_bytes if plan is not None else optimized_naive,
            "naive_bytes": naive,
            "optimized_naive_bytes": optimized_naive,
            "lower_bound_bytes": live_bytes_lower_bound(self.graph),
            "compile_seconds": round(self.compile_seconds, 3),
        }

    def __repr__(self) -> str:
        return (f"Executable({self.graph.name!r}, backend={self.backend!r}, "
                f"inputs={self.input_names}, outputs={self.output_names})")


def check_array(name: str, array: Any, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """The input as the graph needs it, or a ValueError that says what was expected."""
    array = np.asarray(array)
    want = np.dtype(dtype)
    if want.kind == "i" and array.dtype.kind in "iu":
        array = array.astype(want, copy=False)   # labels: any integer type will do
    if array.dtype != want or array.shape != tuple(shape):
        hint = ""
        if array.shape == tuple(shape) and want.kind == "f":
            hint = f"; convert with x.astype(np.{dtype})"
        raise ValueError(f"input {name!r} expects {dtype} of shape {tuple(shape)}, got "
                         f"{array.dtype} of shape {array.shape}{hint}")
    return array
