"""The backends a graph runs on. Each is one `Backend`: its name, the graph passes it wants
from the compiler, the runner that executes a graph on it, and what it can save;
`get_backend(name)` is the one place where a backend's name is resolved.

Nothing heavy is imported here: a backend's runner and passes are imported when first
asked for (numba.cuda only when a cuda runner is built).

    >>> from graphcnn.backends import get_backend
    >>> cpu = get_backend("cpu")
    >>> cpu.name, cpu.saves_artifacts, get_backend("reference").compiles_kernels
    ('cpu', True, False)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from graphcnn.ir.graph import Graph
    from graphcnn.runtime.memory_plan import MemoryPlan
    from graphcnn.runtime.runner import Runner

# A graph pass (graphcnn/passes/pipeline.py names the same type Pass).
GraphPass = Callable[["Graph"], "Graph"]


@dataclass(frozen=True)
class Backend:
    """One backend.

    name: what `backend=` takes. compiles_kernels: its kernels are compiled (by Numba) at
    their first launch, so building an executable runs it once on zeros to compile them
    then rather than at the user's first call. saves_artifacts: its executables save as
    ahead-of-time compiled artifacts (`graphcnn.save`); the others' cannot be saved.
    """

    name: str
    compiles_kernels: bool
    saves_artifacts: bool
    runner_factory: Callable[["Graph", "MemoryPlan | None"], "Runner"]
    passes_factory: Callable[[], list[GraphPass]]

    def make_runner(self, graph: "Graph", plan: "MemoryPlan | None" = None) -> "Runner":
        """The runner of `graph` on this backend (memory plan: `plan`, or planned now)."""
        return self.runner_factory(graph, plan)

    def passes(self) -> list[GraphPass]:
        """This backend's own graph passes: run at opt level 2 and up on inference graphs,
        just before fusion, so the fused groups form around the ops they make (see
        graphcnn/passes/pipeline.py). Training graphs do not get them."""
        return self.passes_factory()

    def __str__(self) -> str:
        return self.name


def _reference_runner(graph: "Graph", plan: "MemoryPlan | None") -> "Runner":
    from graphcnn.backends.reference import ReferenceRunner
    if plan is not None:
        raise ValueError("the reference backend runs without a memory plan")
    return ReferenceRunner(graph)


def _cpu_runner(graph: "Graph", plan: "MemoryPlan | None") -> "Runner":
    from graphcnn.backends.cpu.runner import CpuRunner
    return CpuRunner(graph, plan)


def _cuda_runner(graph: "Graph", plan: "MemoryPlan | None") -> "Runner":
    from graphcnn.backends.cuda.runner import CudaRunner  # imports numba.cuda only now
    return CudaRunner(graph, plan)


def _no_passes() -> list[GraphPass]:
    return []


def _cpu_passes() -> list[GraphPass]:
    # The NCHW16c layout for depthwise regions (inference only: the backward kernels are
    # NCHW), then MobileNetV2's expand -> clip -> depthwise chains in it as one op; and
    # beyond batch 1 the concatenations an elementwise chain reads (DenseNet's) written
    # part by part through that chain, never as a whole.
    from graphcnn.passes.concat_epilogue import fuse_concat_epilogues
    from graphcnn.passes.layout import fuse_expand_depthwise, nchw16c_layout
    return [nchw16c_layout, fuse_expand_depthwise, fuse_concat_epilogues]


_BACKENDS: dict[str, Backend] = {
    "reference": Backend("reference", compiles_kernels=False, saves_artifacts=False,
                         runner_factory=_reference_runner, passes_factory=_no_passes),
    "cpu": Backend("cpu", compiles_kernels=True, saves_artifacts=True,
                   runner_factory=_cpu_runner, passes_factory=_cpu_passes),
    "cuda": Backend("cuda", compiles_kernels=True, saves_artifacts=False,
                    runner_factory=_cuda_runner, passes_factory=_no_passes),
}
BACKENDS = tuple(_BACKENDS)


def get_backend(backend: str | Backend) -> Backend:
    """The Backend of a name (a Backend is returned as it is); ValueError for an unknown
    name, listing the known ones."""
    if isinstance(backend, Backend):
        return backend
    if not isinstance(backend, str) or backend not in _BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
    return _BACKENDS[backend]


__all__ = ["BACKENDS", "Backend", "get_backend"]
