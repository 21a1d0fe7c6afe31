"""The measured algorithm choice (backends/cpu/autotune.py): it measures once per key and
machine, keeps the choice in a JSON file, trusts no other machine's choices, survives a
damaged file, and measures nothing when turned off."""
import json
import time

import pytest

from graphcnn.backends.cpu import autotune


@pytest.fixture
def tuning(monkeypatch, tmp_path):
    path = tmp_path / "autotune.json"
    monkeypatch.setenv("GRAPHCNN_AUTOTUNE", "1")
    monkeypatch.setenv("GRAPHCNN_AUTOTUNE_CACHE", str(path))
    autotune.forget()
    yield path
    autotune.forget()


def candidates(calls, slow="a"):
    def make(name):
        def run():
            calls.append(name)
            time.sleep(0.004 if name == slow else 0.0)
        return run
    return {"a": make("a"), "b": make("b")}


def test_measures_once_picks_the_faster_and_keeps_it_on_disk(tuning):
    calls = []
    assert autotune.pick("conv2d", ((1, 2), "f4"), candidates(calls), default="a") == "b"
    assert calls.count("a") == 1 + autotune.RUNS and calls.count("b") == 1 + autotune.RUNS
    calls.clear()
    assert autotune.pick("conv2d", ((1, 2), "f4"), candidates(calls), default="a") == "b"
    assert calls == []
    data = json.loads(tuning.read_text())
    (machine, entry), = data["machines"].items()
    assert machine == autotune.machine_key()
    (key, choice), = entry["choices"].items()
    assert key == "conv2d((1, 2), 'f4')['a', 'b']" and choice["choice"] == "b"
    assert choice["ms"]["a"] > choice["ms"]["b"]
    autotune.forget()  # a new process reads the file: no measuring again
    assert autotune.pick("conv2d", ((1, 2), "f4"), candidates(calls), default="a") == "b"
    assert calls == []


def test_other_machines_choices_are_not_trusted(tuning):
    tuning.write_text(json.dumps({"version": autotune.VERSION, "machines": {
        "another CPU | threads=64 | blas=Zen": {"choices": {
            "conv2d((1, 2), 'f4')['a', 'b']": {"choice": "a", "ms": {}}}}}}))
    calls = []
    assert autotune.pick("conv2d", ((1, 2), "f4"), candidates(calls), default="a") == "b"
    assert calls  # measured here
    machines = json.loads(tuning.read_text())["machines"]
    assert len(machines) == 2  # the other machine's entry is kept


@pytest.mark.parametrize("content", ["{not json", '["a list"]', '{"version": 99, "machines": {}}'])
def test_a_damaged_file_is_ignored_with_a_warning_and_replaced(tuning, content):
    tuning.write_text(content)
    with pytest.warns(UserWarning, match="ignoring the autotune cache"):
        assert autotune.pick("conv2d", ("k",), candidates([]), default="a") == "b"
    assert json.loads(tuning.read_text())["version"] == autotune.VERSION


def test_a_new_candidate_is_measured_not_skipped_by_an_old_choice(tuning):
    """A choice made among a and b says nothing about c: offering c measures again."""
    calls = []
    assert autotune.pick("conv2d", ("k",), candidates(calls), default="a") == "b"
    with_c = dict(candidates(calls), c=lambda: (calls.append("c"), time.sleep(0.008)))
    calls.clear()
    assert autotune.pick("conv2d", ("k",), with_c, default="a") == "b"
    assert "c" in calls
    assert autotune.known("conv2d", ("k",), ["a", "b", "c"], default="a") == "b"
    assert autotune.known("conv2d", ("k",), ["a", "c"], default="a") == "a"  # never measured


def test_new_kernels_measure_again_instead_of_keeping_the_old_choice(tuning, monkeypatch):
    """The machine key names a digest of the cpu kernels' sources: a choice made with other
    kernels (an older graphcnn, where "b" was the slower) is not kept."""
    calls = []
    assert autotune.pick("conv2d", ((1, 2), "f4"), candidates(calls, slow="b"), "a") == "a"
    assert autotune.kernels_digest() in autotune.machine_key()
    monkeypatch.setattr(autotune, "kernels_digest", lambda: "another-version")
    autotune.forget()
    calls.clear()
    assert autotune.pick("conv2d", ((1, 2), "f4"), candidates(calls, slow="a"), "a") == "b"
    assert calls.count("a") == 1 + autotune.RUNS
    assert len(json.loads(tuning.read_text())["machines"]) == 2


def test_turned_off_it_takes_the_default_without_running_anything(tuning, monkeypatch):
    monkeypatch.setenv("GRAPHCNN_AUTOTUNE", "0")
    calls = []
    assert autotune.pick("conv2d", ("k",), candidates(calls), default="a") == "a"
    assert calls == [] and not tuning.exists()


def test_one_candidate_needs_no_measuring(tuning):
    calls = []
    assert autotune.pick("conv2d", ("k",), {"only": lambda: calls.append(1)}, "only") == "only"
    assert calls == [] and not tuning.exists()


def test_recording_an_artifact_runs_every_candidate(tuning, monkeypatch):
    from graphcnn.backends.cpu import registry
    from graphcnn.backends.cpu.aot import Recorder
    monkeypatch.setenv("GRAPHCNN_AUTOTUNE", "0")
    calls = []
    with registry.launch_mode(recorder=Recorder()):
        assert autotune.pick("conv2d", ("k",), candidates(calls), default="a") == "a"
    assert sorted(calls) == ["a", "b"]


def test_an_unwritable_cache_keeps_the_choice_in_the_process(tuning, monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("GRAPHCNN_AUTOTUNE_CACHE", str(blocker / "autotune.json"))
    autotune.forget()
    calls = []
    with pytest.warns(UserWarning) as warned:
        assert autotune.pick("conv2d", ("k",), candidates(calls), default="a") == "b"
    assert any("cannot write the autotune cache" in str(w.message) for w in warned)
    calls.clear()
    assert autotune.pick("conv2d", ("k",), candidates(calls), default="a") == "b"
    assert calls == []


def test_a_conv_layer_is_tuned_between_its_algorithms(tuning):
    """The conv2d kernel offers im2col, Winograd F(2x2) and F(4x4) (a small weight) and the
    packed GEMMs for a 3x3 stride-1 float32 layer and keeps the measured choice (any:
    which is fastest depends on the machine)."""
    import numpy as np

    from graphcnn.backends.cpu import blas, strategy
    from graphcnn.backends.cpu.registry import get_kernel
    from graphcnn.ops.conv import conv2d_ref
    assert strategy.STRATEGIES  # importing it registers the conv2d kernel
    conv2d_kernel = get_kernel("conv2d")
    if not blas.AVAILABLE:
        pytest.skip("numpy's OpenBLAS was not found: no Winograd path")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 16, 16, 16)).astype(np.float32)
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    attrs = dict(stride=(1, 1), padding=(1, 1, 1, 1), dilation=(1, 1), groups=1)
    out = np.empty((2, 16, 16, 16), np.float32)
    conv2d_kernel([x, w], [out], attrs)
    np.testing.assert_allclose(out, conv2d_ref(x, w, **attrs), rtol=1e-4, atol=1e-4)
    (entry,) = json.loads(tuning.read_text())["machines"][autotune.machine_key()]["choices"].values()
    assert set(entry["ms"]) == {"gemm", "winograd", "winograd-packed", "winograd-f4",
                                "packed", "packed-channels", "implicit", "nchw16c"}
    assert entry["choice"] in entry["ms"]


def test_another_thread_count_is_another_machine(tuning):
    """Choices measured with two threads say nothing about one: after gc.set_num_threads
    the candidates are measured again, and both entries stay in the file."""
    import numba
    threads = numba.get_num_threads()
    if threads < 2:
        pytest.skip("needs two threads to compare")
    calls = []
    assert autotune.pick("conv2d", ("k",), candidates(calls), default="a") == "b"
    try:
        numba.set_num_threads(1)
        calls.clear()
        assert autotune.pick("conv2d", ("k",), candidates(calls), default="a") == "b"
        assert calls  # measured again
    finally:
        numba.set_num_threads(threads)
    calls.clear()
    assert autotune.pick("conv2d", ("k",), candidates(calls), default="a") == "b"
    assert calls == []
    assert len(json.loads(tuning.read_text())["machines"]) == 2
