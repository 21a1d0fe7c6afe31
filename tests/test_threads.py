"""One executable (or training step) called from several threads at once: every call's
result is the one a single thread gets for its inputs. LeNet-5 on the cpu backend, from a
compile and from an artifact, inference and value_and_grad; the pool of call contexts
behind it; the threading layer graphcnn asks Numba for, and what happens on one that is
not thread-safe (tests/cuda/test_threads.py does the cuda runner, on the simulator)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any, Callable

import numba
import numpy as np
import pytest

import graphcnn as gc
from graphcnn.backends.cpu import threads as cpu_threads

ROOT = Path(__file__).resolve().parent.parent
BATCH, INPUTS, CALLS = 4, 6, 50


def close(got: Any, want: Any) -> bool:
    """Equal up to float rounding: a call sharing the cores runs its kernels on fewer
    threads, which may sum in another order (as gc.set_num_threads would)."""
    got, want = np.asarray(got), np.asarray(want)
    return got.shape == want.shape and \
        bool(np.abs(got - want).max(initial=0) <= 1e-5 * max(np.abs(want).max(initial=0), 1e-3))


def hammer(call: Callable[[int], Any], check: Callable[[int, Any], bool], workers: int,
           calls: int = CALLS) -> list[str]:
    """`workers` threads, started together, each making `calls` calls call(k) with
    k = (worker + i) % INPUTS; the calls whose result fails `check(k, result)`."""
    start = threading.Barrier(workers)
    wrong: list[str] = []
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            start.wait()
            for i in range(calls):
                k = (worker + i) % INPUTS
                if not check(k, call(k)):
                    wrong.append(f"thread {worker} call {i} (input {k})")
        except BaseException as err:  # reported below, not lost in the thread
            errors.append(err)

    pool = [threading.Thread(target=work, args=(w,)) for w in range(workers)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if errors:
        raise errors[0]
    return wrong


@pytest.fixture(scope="module")
def lenet() -> tuple[Any, Any, list[np.ndarray], list[np.ndarray]]:
    """(model, executable at batch 4, inputs, the single-thread outputs for them)."""
    model = gc.models.lenet5()
    exe = gc.compile(model, BATCH)
    rng = np.random.default_rng(0)
    shape = exe.input_values[exe.input_names[0]].shape
    xs = [rng.standard_normal(shape).astype(np.float32) for _ in range(INPUTS)]
    return model, exe, xs, [exe(x) for x in xs]


@pytest.mark.parametrize("workers", [2, 4])
def test_an_executable_called_from_threads_gives_each_call_its_own_result(lenet, workers):
    _, exe, xs, want = lenet
    wrong = hammer(lambda k: exe(xs[k]), lambda k, y: close(y, want[k]), workers)
    assert not wrong, f"{len(wrong)} of {workers * CALLS} calls wrong: {wrong[:5]}"
    report = exe.report()
    assert 1 <= report["contexts"] <= workers   # no more contexts than calls at once
    assert report["per_call_bytes"] == report["arena_bytes"] + report["workspace_bytes"]


def test_a_loaded_artifact_called_from_threads(lenet, tmp_path):
    _, exe, xs, want = lenet
    gc.save(exe, tmp_path / "lenet.gcnn")
    loaded = gc.load(tmp_path / "lenet.gcnn")
    assert loaded.precompiled
    wrong = hammer(lambda k: loaded(xs[k]), lambda k, y: close(y, want[k]), 3)
    assert not wrong, f"{len(wrong)} of {3 * CALLS} calls wrong: {wrong[:5]}"


def test_a_training_step_called_from_threads(lenet):
    """Each thread its own batches; every loss and gradient is the single-thread one for
    that batch (the parameters do not change: nothing applies the gradients)."""
    model = lenet[0]
    step = gc.value_and_grad(model, loss="cross_entropy", batch_size=BATCH)
    rng = np.random.default_rng(1)
    shape = step.executable.input_values[step.executable.input_names[0]].shape
    batches = [(rng.standard_normal(shape).astype(np.float32), rng.integers(0, 10, BATCH))
               for _ in range(INPUTS)]
    want = [step(x, t) for x, t in batches]

    def same(k: int, got: tuple[float, dict[str, np.ndarray]]) -> bool:
        loss, grads = got
        return close(loss, want[k][0]) and grads.keys() == want[k][1].keys() and \
            all(close(grads[name], want[k][1][name]) for name in grads)

    wrong = hammer(lambda k: step(*batches[k]), same, 2, calls=20)
    assert not wrong, f"{len(wrong)} of 40 steps wrong: {wrong[:5]}"


def test_each_context_has_its_own_arena_and_workspace_and_shares_the_weights(lenet):
    _, exe, xs, want = lenet
    runner = exe.runner
    first = runner.take_context()
    second = runner.take_context()   # the first is held: a new one
    try:
        assert second is not first and runner.contexts >= 2
        assert not np.shares_memory(first.arena, second.arena)
        assert first.scratch is not second.scratch
        constants = [n.output.id for n in exe.graph.nodes if n.op == "constant"]
        assert constants and all(first.buffers[c] is second.buffers[c] for c in constants)
        assert exe(xs[0]) is not None   # a third call meanwhile: a context of its own
    finally:
        runner.give_back(second)
        runner.give_back(first)
    made = runner.contexts
    for x, y in zip(xs, want):          # one thread again: no more contexts are made
        assert close(exe(x), y)
    assert runner.contexts == made == exe.report()["contexts"]


def test_calls_at_once_share_the_threads_and_give_them_back(monkeypatch):
    total = numba.get_num_threads()
    assert cpu_threads.share(total) == total   # no call running
    cpu_threads.enter()
    cpu_threads.enter()
    try:
        assert cpu_threads.share(total) == max(1, total // 2)
        assert cpu_threads.share(1) == 1
        monkeypatch.setattr(cpu_threads, "SHARE_CORES", False)   # GRAPHCNN_SHARE_CORES=0
        assert cpu_threads.share(total) == total
    finally:
        cpu_threads.leave()
        cpu_threads.leave()
    assert cpu_threads.running() == 0 and cpu_threads.share(total) == total


def test_a_call_leaves_its_threads_setting_as_it_was(lenet):
    """Calls at once run on fewer threads each; after them, each thread has the count it
    had (its own setting, as gc.set_num_threads makes it, included)."""
    _, exe, xs, _ = lenet
    settings = (numba.get_num_threads(), 1)
    start = threading.Barrier(2)
    seen: dict[int, list[int]] = {0: [], 1: []}

    def work(worker: int) -> None:
        numba.set_num_threads(settings[worker])
        start.wait()
        for i in range(10):
            exe(xs[i % INPUTS])
            seen[worker].append(numba.get_num_threads())

    pool = [threading.Thread(target=work, args=(w,)) for w in (0, 1)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert seen == {w: [settings[w]] * 10 for w in (0, 1)}
    assert cpu_threads.running() == 0


def test_graphcnn_runs_on_a_thread_safe_layer():
    assert cpu_threads.layer() in cpu_threads.SAFE_LAYERS


# ---- the threading layer, in fresh processes (Numba picks it once per process) -------------
TWO_THREADS = """
    import threading, warnings
    import numpy as np, numba, graphcnn as gc
    warnings.simplefilter("always")
    exe = gc.compile(gc.models.lenet5(), 2)
    xs = [np.full((2, 1, 32, 32), v, np.float32) for v in (0.5, -1.0)]
    with warnings.catch_warnings(record=True) as alone:
        want = [exe(x) for x in xs]
    print("alone", len(alone))
    wrong, start = [], threading.Barrier(2)
    def work(k):
        start.wait()
        for _ in range(30):
            if not np.array_equal(exe(xs[k]), want[k]):
                wrong.append(k)
    pool = [threading.Thread(target=work, args=(k,)) for k in (0, 1)]
    for t in pool: t.start()
    for t in pool: t.join()
    print("layer", numba.threading_layer(), "wrong", len(wrong))
"""


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_THREADING_LAYER")}
    full.update(env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=full,
                          capture_output=True, text=True, timeout=300)


def test_a_thread_safe_layer_is_chosen_over_one_the_priority_prefers():
    """Numba's priority (here: workqueue first) would pick the layer that cannot run two
    graphs at once; unless the user names a layer, graphcnn asks for a thread-safe one."""
    result = _python(TWO_THREADS, NUMBA_THREADING_LAYER_PRIORITY="workqueue omp tbb")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "layer omp wrong 0" in result.stdout or "layer tbb wrong 0" in result.stdout, \
        result.stdout + result.stderr[-2000:]


def test_on_workqueue_calls_take_turns_and_say_so_once():
    """The user chose workqueue: it is kept, and calls from two threads take turns (each
    still right) with one warning naming what to install, never an abort; one thread's
    calls (the single-thread results first) warn of nothing."""
    result = _python(TWO_THREADS, NUMBA_THREADING_LAYER="workqueue")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "layer workqueue wrong 0" in result.stdout, result.stdout + result.stderr[-2000:]
    assert "alone 0" in result.stdout
    assert result.stderr.count("run one at a time") == 1, result.stderr[-2000:]
    assert "libgomp" in result.stderr and "tbb" in result.stderr
