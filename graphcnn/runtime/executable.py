"""Executable: a compiled graph with named, checked inputs and outputs."""
from __future__ import annotations

import itertools
import os
from typing import TYPE_CHECKING, Any, Callable, Collection, Mapping

import numpy as np

from graphcnn.backends import Backend, get_backend
from graphcnn.ir.conventions import DROPOUT_SEED_INPUT
from graphcnn.ir.graph import Graph, Value
from graphcnn.ops import collective
from graphcnn.runtime.dynamic_batch import batch_major, check_batch
from graphcnn.runtime.memory_plan import live_bytes_lower_bound
from graphcnn.runtime.runner import Runner

if TYPE_CHECKING:
    from graphcnn.runtime.artifact.writer import ArtifactContents

# (input name, array, shape, dtype) -> the array as the runner takes it, or a ValueError
CheckFn = Callable[[str, Any, tuple[int, ...], str], Any]


def make_runner(graph: Graph, backend: str | Backend) -> Runner:
    """The runner of `graph` on `backend` (a name or a Backend), with its own memory plan."""
    return get_backend(backend).make_runner(graph)


def intermediate_bytes(graph: Graph) -> int:
    """The bytes of every value a compute node makes: one buffer per value."""
    return sum(v.type.nbytes for n in graph.compute_nodes() for v in n.outputs)


def constant_bytes(graph: Graph) -> int:
    """The bytes of the graph's constants (its frozen weights), as given."""
    return sum(int(np.asarray(n.attrs["value"]).nbytes) for n in graph.nodes
               if n.op == "constant")


class Executable:
    """Runs a graph on a backend. Call it with arrays for the model's inputs (positional,
    in order, or by name); it returns the output (or a tuple of outputs). Any number of
    threads may call it at once: each call runs in a context of its own (an arena and a
    workspace, made when more calls run at once than there are contexts; see report()).

    `backend` is a name ("reference", "cpu", "cuda") or a Backend, resolved once here.
    `param_source` gives the values of the graph's `param` nodes at each call (None: the
    graph has none, its parameters are frozen into it as constants).
    """

    def __init__(self, graph: Graph, backend: str | Backend, *, ops_before: int,
                 naive_bytes_before: int | None = None,
                 compile_seconds: float = 0.0,
                 param_source: Callable[[], dict[str, np.ndarray]] | None = None,
                 seed: int = 0, runner: Runner | None = None) -> None:
        self.graph = graph
        self.backend = get_backend(backend)
        self.runner = runner if runner is not None else self.backend.make_runner(graph)
        self._ops_before = ops_before
        self._naive_bytes_before = naive_bytes_before
        self.compile_seconds = compile_seconds
        self._param_source = param_source
        self.seed = seed
        # next() on it is one step under the GIL: threads calling at once draw distinct seeds.
        self._seeds = itertools.count(seed * 1_000_003)
        # Every input by name (the dropout seed included) and every parameter by name.
        self.input_values: dict[str, Value] = {
            n.attrs["name"]: n.output for n in graph.nodes if n.op == "input"}
        self.param_values: dict[str, Value] = {
            n.attrs["name"]: n.output for n in graph.nodes if n.op == "param"}
        self.input_names = [k for k in self.input_values if k != DROPOUT_SEED_INPUT]
        self.output_names = list(graph.output_names)
        # Set by graphcnn.load: the artifact this executable was loaded from, how long that
        # took, and the precompiled kernel entries it runs (None: its kernels are Numba's),
        # which saving it again reuses instead of compiling them.
        self.artifact_path: str | None = None
        self.load_seconds: float | None = None
        self.precompiled_entries: list[Any] | None = None

    @property
    def precompiled(self) -> bool:
        """Whether the kernels run machine code loaded from an artifact (no compiler)."""
        return self.precompiled_entries is not None

    @property
    def parameters(self) -> dict[str, np.ndarray]:
        """The parameter values the next call reads, by name: the model's arrays (compiled
        with frozen=False), or those a loaded artifact holds (update them in place); empty
        when the parameters are frozen into the graph."""
        return self._param_source() if self._param_source else {}

    # ---- calling ----------------------------------------------------------------------
    @property
    def max_batch(self) -> int | None:
        """The largest batch an executable compiled with `batch_size=None` runs (any batch
        from 1 to it, without compiling again); None: it runs its one batch size."""
        return self.runner.max_batch

    def batch_of(self, feeds: Mapping[str, Any]) -> int | None:
        """The batch of a call with `feeds` on a dynamic-batch executable: the leading
        size of its inputs, checked to be 1 to max_batch (None: a fixed-batch one)."""
        if self.runner.max_batch is None:
            return None
        for name, value in self.input_values.items():
            if name in feeds and batch_major(value):
                shape = np.shape(feeds[name])
                if not shape:
                    raise ValueError(f"input {name!r} expects an array of shape "
                                     f"(batch, {', '.join(map(str, value.shape[1:]))}), "
                                     f"got a scalar")
                return check_batch(shape[0], self.runner.max_batch, name)
        return None

    def input_shape(self, name: str, batch: int | None = None) -> tuple[int, ...]:
        """The shape input `name` is fed at: at `batch` (a dynamic-batch executable's
        inputs take any batch up to max_batch), else as compiled."""
        value = self.input_values[name]
        if batch is None or not batch_major(value):
            return tuple(value.shape)
        return (batch, *value.shape[1:])

    def bind(self, feeds: Mapping[str, Any], *, check: CheckFn | None = None,
             skip: Collection[int] = (), batch: int | None = None) -> dict[int, Any]:
        """What the runner is fed for one call, by value id: each input of `feeds` (by
        name) passed through `check` (default `check_array`: host arrays as the graph
        needs them, or a ValueError saying what was expected), a fresh dropout seed unless
        one is fed, and the current value of every parameter whose value id is not in
        `skip` (a device runner's resident parameters). `batch`: the batch the inputs
        are checked against (a dynamic-batch executable's call; None: as compiled)."""
        unknown = sorted(set(feeds) - set(self.input_values))
        if unknown:
            raise ValueError(f"unknown input(s) {unknown}; this model takes {self.input_names}")
        check = check or check_array
        by_id: dict[int, Any] = {}
        for name, value in self.input_values.items():
            if name in feeds:
                array = feeds[name]
            elif name == DROPOUT_SEED_INPUT:
                array = np.asarray(next(self._seeds), dtype=np.int64)
            else:
                raise ValueError(f"missing input {name!r}; this model takes {self.input_names}")
            by_id[value.id] = check(name, array, self.input_shape(name, batch), value.dtype)
        source: dict[str, np.ndarray] | None = None
        for name, value in self.param_values.items():
            if value.id in skip:
                continue
            if source is None:   # asked once per call, and only when a parameter is fed
                source = self.parameters
            if name not in source:
                raise ValueError(f"no value for parameter {name!r}")
            by_id[value.id] = check_array(name, source[name], value.shape, value.dtype)
        return by_id

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Inputs by name -> outputs by name."""
        batch = self.batch_of(feeds)
        if batch is None:
            outputs = self.runner.run(self.bind(feeds))
        else:
            outputs = self.runner.run_at(self.bind(feeds, batch=batch), batch)
        return dict(zip(self.output_names, outputs))

    def __call__(self, *args: np.ndarray, **kwargs: np.ndarray) -> Any:
        if len(args) > len(self.input_names):
            raise ValueError(f"{len(args)} inputs given; this model takes {self.input_names}")
        feeds = dict(zip(self.input_names, args))
        feeds.update(kwargs)
        outputs = list(self.run(feeds).values())
        return outputs[0] if len(outputs) == 1 else tuple(outputs)

    def zero_feeds(self, batch: int | None = None) -> dict[str, np.ndarray]:
        """Zeros for every input (at `batch`: a dynamic-batch executable's; None: at the
        batch it was compiled for, its largest). The dropout seed is fed too, so that a run
        on them uses up no seed: the calls after it draw the same masks as without it."""
        return {name: np.zeros(self.input_shape(name, batch), value.dtype)
                for name, value in self.input_values.items()}

    def warm_up(self) -> None:
        """Run once on zeros so that every kernel is compiled (or loaded from the cache)
        now, not at the first call; a dynamic-batch executable at batch 1 too, whose
        kernels may differ. It runs on this process alone: `allreduce` nodes
        (synchronized batch norm) are the identity here, without a communicator."""
        with collective.local():
            self.run(self.zero_feeds())
            if self.max_batch is not None:   # at 1, or 2 where a batch of 1 cannot train
                self.run(self.zero_feeds(batch=self.runner.smallest_batch))

    def save(self, path: str | os.PathLike) -> None:
        """`graphcnn.save(self, path)`: this executable as an ahead-of-time compiled
        artifact that `graphcnn.load` runs without compiling."""
        from graphcnn.runtime.artifact.writer import save
        save(self, path)

    def artifact_contents(self) -> ArtifactContents:
        """What `graphcnn.save` writes of this executable: it, and the values of its
        parameters (none when they are frozen into the graph)."""
        from graphcnn.runtime.artifact.writer import ArtifactContents
        return ArtifactContents(self, self.parameters if self.param_values else {})

    # ---- reporting --------------------------------------------------------------------
    def report(self) -> dict[str, Any]:
        """ops_before: ops of the graph as the model wrote it; kernels: what runs now;
        weights_bytes: the graph's constants as given (the frozen weights; a model
        compiled with frozen=False feeds its parameters instead, not counted);
        packed_weights_bytes: the frozen weights the kernels hold transformed (packed
        panels, Winograd's U, NCHW16c blocks), made when the executable was built;
        arena_bytes: the memory plan's arena (every intermediate); workspace_bytes: the
        kernels' scratch a call leaves in its context (im2col columns, Winograd's blocks);
        peak_bytes = arena_bytes + workspace_bytes + packed_weights_bytes: what one
        executable called from one thread at a time costs beyond its weights (the
        reference backend, which has no plan: one buffer per intermediate).
        per_call_bytes = arena_bytes + workspace_bytes: what each call running at the same
        time as others adds (its context: the weights, packed or not, are shared);
        contexts: how many contexts the executable holds now, the most calls that have
        run at once (1 until two threads call at once; always 1 on cuda, whose calls
        take turns), so that it holds
        peak_bytes + (contexts - 1) * per_call_bytes. naive_bytes: one buffer per
        intermediate of the graph as written (what running it without an optimizer
        takes); optimized_naive_bytes: one buffer per intermediate of the optimized graph
        (what fusion alone saves); lower_bound_bytes: the most bytes alive at once at one
        op of the optimized graph (naive_bytes and lower_bound_bytes compare with
        arena_bytes)."""
        optimized_naive = intermediate_bytes(self.graph)
        naive = self._naive_bytes_before if self._naive_bytes_before is not None \
            else optimized_naive
        plan = self.runner.plan
        arena = plan.arena_bytes if plan is not None else optimized_naive
        workspace, packed = self.runner.workspace_bytes, self.runner.packed_bytes
        return {
            "backend": self.backend.name,
            "ops_before": self._ops_before,
            "kernels": len(self.runner.steps),
            "weights_bytes": constant_bytes(self.graph),
            "packed_weights_bytes": packed,
            "arena_bytes": arena,
            "workspace_bytes": workspace,
            "peak_bytes": arena + workspace + packed,
            "per_call_bytes": arena + workspace,
            "contexts": self.runner.contexts,
            "naive_bytes": naive,
            "optimized_naive_bytes": optimized_naive,
            "lower_bound_bytes": live_bytes_lower_bound(self.graph),
            "compile_seconds": round(self.compile_seconds, 3),
        }

    def __repr__(self) -> str:
        return (f"Executable({self.graph.name!r}, backend={self.backend.name!r}, "
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
