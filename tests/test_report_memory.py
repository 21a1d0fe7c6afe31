"""Executable.report()'s memory figures are true: the kernels' workspaces hold exactly what
the runner predicts, and what compiling and running an executable allocates is what the
report says (ResNet-18 and MobileNetV2, small)."""
from __future__ import annotations

import gc as python_gc
import tracemalloc
from typing import Any, Callable

import numpy as np
import pytest

import graphcnn as gc
from graphcnn.backends.cpu.kernels.conv_gemm import held_workspace_bytes, release_workspaces

BATCH, SIZE = 2, 64
MODELS: dict[str, Callable[[], Any]] = {
    "resnet18": lambda: gc.models.resnet18(num_classes=10, width=16, input_size=SIZE),
    "mobilenet_v2": lambda: gc.models.mobilenet_v2(num_classes=10, width_mult=0.5,
                                                   input_size=SIZE),
}


def numpy_bytes() -> int:
    """The bytes of the numpy arrays' data alive now, as tracemalloc traces them (numpy
    reports its data allocations in a domain of their own; Python's objects, Numba's and
    LLVM's compiler memory are not in it)."""
    python_gc.collect()
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.DomainFilter(True, np.lib.tracemalloc_domain)])
    return sum(trace.size for trace in snapshot.traces)


@pytest.fixture(scope="module", params=sorted(MODELS))
def measured(request: pytest.FixtureRequest) -> tuple[Any, np.ndarray, dict[str, Any], int]:
    """(executable, input, its report, the numpy bytes that compiling it and its first call
    added). A first compile of the same model beforehand compiles the kernels and fills
    the process-wide tables (Numba's, the tap tables' caches), which are not the
    executable's; the thread's workspaces are dropped before the measured compile, so
    that its call makes them again."""
    model = MODELS[request.param]()
    x = np.random.default_rng(0).standard_normal((BATCH, 3, SIZE, SIZE)).astype(np.float32)
    first = gc.compile(model, batch_size=BATCH)
    first(x)
    del first
    release_workspaces()
    tracemalloc.start()
    try:
        before = numpy_bytes()
        exe = gc.compile(model, batch_size=BATCH)
        exe(x)
        grown = numpy_bytes() - before
    finally:
        tracemalloc.stop()
    return exe, x, exe.report(), grown


def test_the_workspaces_hold_what_the_runner_predicts(measured):
    """The executable's one call context (one thread calls it) holds them, not the
    thread: the thread's own workspace stays empty."""
    exe, x, report, _ = measured
    release_workspaces()
    exe(x)
    assert exe.runner.held_scratch_bytes == exe.runner.workspace_bytes \
        == report["workspace_bytes"]
    assert held_workspace_bytes() == 0 and report["contexts"] == 1
    assert report["workspace_bytes"] == max(s.workspace_bytes for s in exe.runner.steps) > 0


def test_the_report_adds_up(measured):
    exe, _, report, _ = measured
    assert report["peak_bytes"] == (report["arena_bytes"] + report["workspace_bytes"]
                                    + report["packed_weights_bytes"])
    assert report["per_call_bytes"] == report["arena_bytes"] + report["workspace_bytes"]
    assert report["arena_bytes"] == exe.runner.plan.arena_bytes
    assert report["packed_weights_bytes"] == sum(s.packed_bytes for s in exe.runner.steps) > 0
    assert report["weights_bytes"] > 0


def test_the_report_is_what_an_executable_allocates(measured):
    """What compiling and calling it once leaves allocated (numpy's data: the folded
    weights, the arena, the prepacked weights, the thread's workspaces) is
    weights_bytes + peak_bytes, within 10%: the model's own parameters existed before."""
    exe, _, report, grown = measured
    predicted = report["weights_bytes"] + report["peak_bytes"]
    print(f"{exe.graph.name}: measured {grown:,} bytes, report {predicted:,} "
          f"(weights {report['weights_bytes']:,}, arena {report['arena_bytes']:,}, "
          f"workspace {report['workspace_bytes']:,}, packed "
          f"{report['packed_weights_bytes']:,})")
    assert abs(grown - predicted) <= 0.1 * grown


def test_a_training_step_prepacks_nothing():
    """Its weights are parameters, fed at each call (they change): nothing is transformed
    ahead of the calls, and the graph has no frozen weights to count."""
    step = gc.value_and_grad(gc.models.lenet5(), loss="cross_entropy", batch_size=4)
    report = step.report()
    assert report["packed_weights_bytes"] == 0
    assert report["peak_bytes"] == report["arena_bytes"] + report["workspace_bytes"]
