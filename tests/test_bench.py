"""graphcnn bench: the command runs, prints the table with its columns, writes JSON and a
PNG; a missing peer is skipped with a note; FLOP counts; the per-kernel profile; the conv
layer microbenchmark; the torch equivalents of the zoo models match graphcnn's outputs."""
from __future__ import annotations

import builtins
import json

import numpy as np
import pytest

import graphcnn as gc
from graphcnn.bench.flops import graph_flops, op_flops
from graphcnn.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# LeNet-5 FLOPs per image (2 per multiply-add): c1, c3, c5, f6, f7
LENET_LAYERS = (2 * 6 * 28 * 28 * 25, 2 * 16 * 10 * 10 * 6 * 25, 2 * 120 * 16 * 25,
                2 * 120 * 84, 2 * 84 * 10)
FAST = ["--repeats", "1", "--warmup", "0", "--roof-size", "128"]


def bench(*argv: str) -> int:
    return main(["bench", *argv, *FAST])


def table(out: str, first: str) -> tuple[str, list[list[str]]]:
    """The header line and the split rows of the printed table whose header starts with
    `first`."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(first + " "))
    rows = []
    for line in lines[start + 2:]:
        if not line.strip():
            break
        rows.append(line.split())
    return lines[start], rows


def block_imports(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """Make `import NAME` fail as if NAME were not installed."""
    real = builtins.__import__

    def fake(name, *args, **kwargs):
        if name.split(".")[0] in names:
            raise ImportError(f"No module named {name!r}")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)


# ---- FLOPs ----------------------------------------------------------------------------------

def test_op_flops_formulas():
    # conv2d: 2 * N * O * OH * OW * (C / groups) * kH * kW, from the output and weight shapes
    attrs = {"groups": 1}
    assert op_flops("conv2d", [(2, 3, 8, 8), (4, 3, 3, 3)], (2, 4, 6, 6), attrs) == \
        2 * 2 * 4 * 6 * 6 * 3 * 9
    assert op_flops("conv2d_input_grad", [(2, 4, 6, 6), (4, 3, 3, 3)], (2, 3, 8, 8), attrs) \
        == 2 * 2 * 4 * 6 * 6 * 3 * 9
    assert op_flops("conv2d_weight_grad", [(2, 4, 6, 6), (2, 3, 8, 8)], (4, 3, 3, 3), attrs) \
        == 2 * 2 * 4 * 6 * 6 * 3 * 9
    # depthwise: C/groups = 1
    assert op_flops("conv2d", [(1, 8, 5, 5), (8, 1, 3, 3)], (1, 8, 5, 5), {"groups": 8}) == \
        2 * 8 * 25 * 9
    assert op_flops("linear", [(5, 7), (3, 7)], (5, 3), {}) == 2 * 5 * 7 * 3
    assert op_flops("matmul", [(7, 5), (7, 3)], (5, 3), {"trans_a": True}) == 2 * 5 * 7 * 3
    assert op_flops("relu", [(5, 7)], (5, 7), {}) == 0
    fused = {"anchor": "linear", "anchor_attrs": {}, "anchor_inputs": 2,
             "steps": (("relu", {}, (-1,)),)}
    assert op_flops("fused", [(5, 7), (3, 7)], (5, 3), fused) == 2 * 5 * 7 * 3


def test_the_blocked_layout_keeps_a_graphs_flops():
    """MobileNetV2 through the cpu pipeline (blocked convs, fused expansions) counts the
    FLOPs of the NCHW graph it came from."""
    from graphcnn.passes import run_pipeline
    graph = gc.models.mobilenet_v2(10, width_mult=0.5, input_size=32).graph(2)
    blocked, _ = run_pipeline(graph, 2, "cpu")
    plain, _ = run_pipeline(graph, 2)
    assert {n.attrs.get("anchor") for n in blocked.nodes} >= {"conv2d_blocked",
                                                             "expand_depthwise_blocked"}
    assert graph_flops(blocked) == graph_flops(plain) > 0


@pytest.mark.parametrize("opt_level", [0, 2])
def test_lenet5_graph_flops(opt_level):
    model = gc.models.lenet5()
    exe = gc.compile(model, batch_size=3, opt_level=opt_level, backend="reference")
    assert graph_flops(exe.graph) == 3 * sum(LENET_LAYERS)
    # training: the forward, every weight gradient, and the input gradients of the layers
    # above c1 (c1's, the image's gradient, is dead code that opt level 0 keeps)
    step = gc.value_and_grad(model, batch_size=3, opt_level=opt_level, backend="reference")
    c1, *rest = LENET_LAYERS
    dead = c1 if opt_level == 0 else 0
    assert graph_flops(step.executable.graph) == 3 * (2 * c1 + 3 * sum(rest) + dead)


# ---- the command ------------------------------------------------------------------------------

def test_bench_prints_table_and_writes_json_and_png(tmp_path, capsys):
    pytest.importorskip("torch")
    js, png = tmp_path / "bench.json", tmp_path / "bench.png"
    md = tmp_path / "bench.md"
    assert bench("lenet5", "--batch-size", "1,2", "--against", "numpy,torch",
                 "--json", str(js), "--png", str(png), "--markdown", str(md)) == 0
    out = capsys.readouterr().out
    assert "SGEMM roof" in out and "machine:" in out
    header, rows = table(out, "model")
    for column in ("model", "batch", "mode", "graphcnn ms", "GFLOP/s", "% roof", "torch ms",
                   "x torch", "numpy ms", "x numpy"):
        assert column in header, column
    assert [r[:3] for r in rows] == [["lenet5", "1", "infer"], ["lenet5", "2", "infer"]]
    assert "Compared:" in out and "lenet5 infer batch 1: graphcnn takes" in out
    assert "target" not in out.lower()   # the developers' targets stay in the JSON

    data = json.loads(js.read_text())
    assert data["sgemm_roof"]["gflops"] > 0
    assert data["machine"]["cpu"]
    assert out.count("Cross-core transfers") == 3   # before the runs, twice after them
    for when in ("before", "after"):  # the host's phase, measured (None on one thread)
        probe = data["cross_core"][when]
        assert probe is None or probe["own_us"] > 0 and probe["ratio"] > 0
    assert [r["batch"] for r in data["results"]] == [1, 2]
    for r in data["results"]:
        assert set(r["systems"]) == {"graphcnn", "numpy", "torch"}
        assert r["flops"] == r["batch"] * sum(LENET_LAYERS)
        for system in r["systems"].values():
            assert system["median_ms"] > 0 and len(system["times_ms"]) == 1
        assert r["ratios"]["torch"] == pytest.approx(
            r["systems"]["graphcnn"]["median_ms"] / r["systems"]["torch"]["median_ms"])
        assert 0 < r["roof_fraction"]
        for check in r["checks"].values():  # the peers computed the same logits
            assert check["relative"] < 1e-4
    assert png.read_bytes()[:8] == PNG_MAGIC
    assert md.read_text().startswith("| model | batch | mode | graphcnn ms |")


def test_missing_peer_is_skipped_with_a_note(tmp_path, capsys, monkeypatch):
    block_imports(monkeypatch, "torch", "onnxruntime")
    js = tmp_path / "b.json"
    assert bench("lenet5", "--batch-size", "2", "--json", str(js)) == 0
    out = capsys.readouterr().out
    assert "torch skipped: torch is not installed" in out
    assert "onnxruntime skipped: onnxruntime is not installed" in out
    _, (row,) = table(out, "model")
    assert row.count("skipped") == 2
    r = json.loads(js.read_text())["results"][0]
    assert set(r["systems"]) == {"graphcnn", "numpy"}
    assert set(r["notes"]) == {"torch", "onnxruntime"}
    assert set(r["ratios"]) == {"numpy"}


def test_training_step_against_torch(tmp_path, capsys):
    pytest.importorskip("torch")
    js = tmp_path / "t.json"
    assert bench("lenet5", "--training", "--batch-size", "4", "--against",
                 "torch,onnxruntime", "--json", str(js), "--profile", "3") == 0
    out = capsys.readouterr().out
    assert "onnxruntime skipped: inference only" in out
    assert "Profile of lenet5 b4 train" in out
    r = json.loads(js.read_text())["results"][0]
    assert r["mode"] == "train" and set(r["systems"]) == {"graphcnn", "torch"}
    check = r["checks"]["torch"]
    assert check["loss_diff"] < 1e-5 and check["grad_max_relative_diff"] < 1e-4
    assert check["grads_compared"] == 10
    assert len(r["profile"]) == r["kernels"]
    assert "gradients vs PyTorch float64: worst " in out and "met by all 10 tensors" in out
    assert r["gradient_check"]["over"] == []


def test_onnxruntime_peer(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    js = tmp_path / "o.json"
    assert bench("lenet5", "--batch-size", "2", "--against", "onnxruntime",
                 "--json", str(js)) == 0
    r = json.loads(js.read_text())["results"][0]
    assert set(r["systems"]) == {"graphcnn", "onnxruntime"}
    assert r["checks"]["onnxruntime"]["relative"] < 1e-4


def test_conv_layers_command(tmp_path, capsys):
    pytest.importorskip("torch")
    js, png = tmp_path / "c.json", tmp_path / "c.png"
    assert bench("conv-layers", "--batch-size", "1", "--json", str(js), "--png", str(png)) == 0
    out = capsys.readouterr().out
    header, rows = table(out, "layer")
    assert len(rows) == 12
    for column in ("pass", "algorithm", "graphcnn ms", "GFLOP/s", "% roof", "torch ms",
                   "x torch"):
        assert column in header
    rows = json.loads(js.read_text())["rows"]
    assert [(r["layer"], r["pass"]) for r in rows[:3]] == [
        ("64@56", "forward"), ("64@56", "input_grad"), ("64@56", "weight_grad")]
    assert {r["layer"] for r in rows} == {"64@56", "128@28", "256@14", "512@7"}
    for r in rows:
        assert r["flops"] == 2 * r["channels"] ** 2 * 9 * r["size"] ** 2
        assert r["check_relative_diff"] < 1e-4  # the kernel computed what torch did
        assert r["targets"]
    assert png.read_bytes()[:8] == PNG_MAGIC


def test_conv_layers_without_torch(capsys, monkeypatch):
    from graphcnn.bench.conv_layers import bench_conv_layers
    block_imports(monkeypatch, "torch")
    assert bench("conv-layers", "--batch-size", "1", "--against", "torch") == 0
    out = capsys.readouterr().out
    assert "torch skipped: torch is not installed" in out
    res = bench_conv_layers([1], repeats=1, warmup=0, use_torch=False, roof=100.0,
                            layers=((8, 6),), log=lambda s: None)
    assert [r["pass"] for r in res["rows"]] == ["forward", "input_grad", "weight_grad"]
    assert all("torch" not in r for r in res["rows"])


@pytest.mark.parametrize("argv, message", [
    (["bench", "no_such_model"], "unknown model"),
    (["bench", "lenet5", "--against", "tensorflow"], "unknown peer"),
    (["bench", "lenet5", "--batch-size", "0"], "positive integers"),
])
def test_argument_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


# ---- profile and torch equivalents ----------------------------------------------------------

def test_profile_covers_every_step():
    from graphcnn.bench.profile import profile_kernels, summarize_by_kernel
    exe = gc.compile(gc.models.lenet5(), batch_size=2)
    x = np.random.default_rng(0).standard_normal((2, 1, 32, 32), dtype=np.float32)
    expected = exe(x)
    rows = profile_kernels(exe, {"image": x}, repeats=2)
    assert len(rows) == len(exe.runner.steps)
    assert all(r["ms"] > 0 and r["warm_ms"] > 0 for r in rows)  # in order, and again at once
    assert sum(r["share"] for r in rows) == pytest.approx(1.0)
    assert sum(r["flops"] for r in rows) == graph_flops(exe.graph)
    assert any(r["kernel"].startswith("fused[conv2d") for r in rows)
    algorithms = [r["algorithm"] for r in rows if "conv2d" in r["kernel"]]
    assert algorithms == [i for _, op, i, _ in exe.runner.implementations()
                          if op == "fused"][:3]  # the runner's record: c1, c3, c5
    assert algorithms[0] == "direct-wide" and set(algorithms[1:]) <= {
        "gemm", "packed", "packed-channels", "implicit"}
    kinds = summarize_by_kernel(rows)
    assert sum(k["count"] for k in kinds) == len(rows)
    np.testing.assert_allclose(exe(x), expected)  # profiling leaves the executable usable


@pytest.mark.parametrize("name, options", [
    ("resnet18", {"width": 8, "num_classes": 10, "input_size": 32}),
    # without dropout: its random draws would differ from torch's
    ("mobilenet_v2", {"width_mult": 0.25, "num_classes": 10, "input_size": 32, "dropout": 0.0}),
])
def test_torch_equivalents_match(name, options):
    pytest.importorskip("torch")
    from graphcnn.bench.model_bench import bench_workload
    r = bench_workload(name, 2, False, ["torch"], repeats=1, model_kwargs=options, warmup=0,
                       log=lambda s: None)
    assert r["checks"]["torch"]["relative"] < 1e-4
    t = bench_workload(name, 4, True, ["torch"], repeats=1, model_kwargs=options, warmup=0,
                       log=lambda s: None)
    check = t["checks"]["torch"]
    assert check["loss_diff"] < 1e-4
    if name == "resnet18":
        # mobilenet_v2's training gradients at these tiny sizes (batch norm over a few
        # values) differ from torch's float32 ones by up to ~10%; graphcnn's are the ones
        # within 1e-4 of float64 (torch's float64 gradients match float64 exactly)
        assert check["grad_max_relative_diff"] < 1e-3
    assert check["grads_compared"] == len(gc.models.get_model(name, **options)
                                          .trainable_parameters())


def test_measure_interleaved_alternates_blocks():
    from graphcnn.bench.common import measure_interleaved
    calls: list[str] = []
    res = measure_interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                              repeats=5, warmup=1, rounds=2, gap_s=0.0)
    # warm-up, then rounds of blocks (3 then 2 timed calls each)
    assert calls == ["a", "b"] + ["a"] * 3 + ["b"] * 3 + ["a"] * 2 + ["b"] * 2
    assert set(res) == {"a", "b"} and all(len(r["times_ms"]) == 5 for r in res.values())
    calls.clear()
    measure_interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                        repeats=2, warmup=0, rounds=2, gap_s=0.001)
    # with a gap, each block starts with an untimed call
    assert calls == ["a", "a", "b", "b"] * 2


def test_one_executable_for_any_batch_counts_the_flops_of_each_batch(tmp_path):
    """--max-batch times one executable compiled for batches up to 4: at batch 2 it does
    the work of batch 2 (its GFLOP/s are of that work, not of the maximum's)."""
    js = tmp_path / "bench.json"
    assert bench("lenet5", "--batch-size", "2,4", "--max-batch", "4", "--against", "numpy",
                 "--json", str(js)) == 0
    results = json.loads(js.read_text())["results"]
    assert [(r["batch"], r["max_batch"]) for r in results] == [(2, 4), (4, 4)]
    for r in results:
        assert r["flops"] == r["batch"] * sum(LENET_LAYERS)
        assert r["flops_by_op"]["conv2d"] == r["batch"] * sum(LENET_LAYERS[:3])
        assert r["checks"]["numpy"]["relative"] < 1e-4


def test_cross_core_probe_measures_both_writes_and_names_the_phase():
    from graphcnn.bench.cross_core import SLOW_PHASE_RATIO, cross_core_cost, phase_line
    probe = cross_core_cost(kb=64, repeats=4)
    if probe is None:   # one thread: nothing crosses
        assert "one thread" in phase_line(None, "before")
        return
    assert probe["kb"] == 64 and probe["own_us"] > 0 and probe["other_us"] > 0
    assert probe["ratio"] == pytest.approx(probe["other_us"] / probe["own_us"])
    slow = dict(probe, ratio=SLOW_PHASE_RATIO + 1)
    fast = dict(probe, ratio=SLOW_PHASE_RATIO - 1)
    assert "slow phase" in phase_line(slow, "x") and "fast phase" in phase_line(fast, "x")
    import numba
    threads = numba.get_num_threads()
    gc.set_num_threads(1)
    try:
        assert cross_core_cost(kb=64, repeats=2) is None
    finally:
        gc.set_num_threads(threads)


def test_cross_core_script_logs_the_model_beside_the_probe(tmp_path, capsys):
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "cross_core.py"
    spec = importlib.util.spec_from_file_location("cross_core_script", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    js = tmp_path / "cc.json"
    assert script.main(["--model", "lenet5", "--seconds", "0.3", "--calls", "2",
                        "--json", str(js)]) == 0
    out = capsys.readouterr().out
    assert "lenet5 b1" in out and "cross-core write" in out and "phase: " in out
    turns = json.loads(js.read_text())["turns"]
    assert turns and all(t["model_ms"] > 0 for t in turns)


def test_ab_checkouts_times_two_checkouts_in_turns(capsys):
    """benchmarks/ab_checkouts.py: each checkout in its own fresh processes (here the same
    one twice), a line per round and the medians; a folder that is no checkout is refused."""
    import importlib.util
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    spec = importlib.util.spec_from_file_location("ab_checkouts", root / "benchmarks" /
                                                  "ab_checkouts.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main([str(root), str(root), "--quick"]) == 0
    out = capsys.readouterr().out
    assert "lenet5 b1 round 1: old " in out and "medians over 1 rounds: old " in out
    with pytest.raises(SystemExit):
        script.main([str(root / "docs"), str(root), "--quick"])
    assert "is not a graphcnn checkout" in capsys.readouterr().err


def test_ab_checkouts_workers_import_their_own_checkout(tmp_path, monkeypatch):
    """A worker for another checkout imports that checkout's graphcnn, even when the
    script is run from this one (`python -c` puts the working folder first on the path)."""
    import importlib.util
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    spec = importlib.util.spec_from_file_location("ab_checkouts", root / "benchmarks" /
                                                  "ab_checkouts.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    other = tmp_path / "other"
    (other / "graphcnn").mkdir(parents=True)
    (other / "graphcnn" / "__init__.py").write_text("")
    monkeypatch.chdir(root)
    assert script.imported_graphcnn(str(other)) == (other / "graphcnn").resolve()
    assert script.imported_graphcnn(str(root)) == (root / "graphcnn").resolve()


def test_implicit_gemm_script_prints_each_layers_rate(capsys):
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "implicit_gemm.py"
    spec = importlib.util.spec_from_file_location("implicit_gemm_script", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    import numba
    threads = numba.get_num_threads()
    try:
        assert script.main(["--quick"]) == 0
    finally:
        gc.set_num_threads(threads)
    line = capsys.readouterr().out.splitlines()[-1]
    assert line.startswith("3x3 8->8 @12") and "1 thread " in line
    assert float(line.split()[-1]) > 0


def test_steal_share_is_the_hosts_share_of_the_cores_time():
    from graphcnn.bench.cross_core import cpu_ticks, steal_share, steals_text
    assert steal_share((10, 1000), (30, 1100)) == 0.2
    assert steal_share(None, (30, 1100)) is None and steal_share((5, 10), (5, 10)) is None
    assert steals_text([0.2, None, 0.0]) == "20%, -, 0%"
    ticks = cpu_ticks()
    if ticks is not None:   # Linux: (steal, total) since boot
        assert 0 <= ticks[0] <= ticks[1]


def benchmark_script(name: str):
    """benchmarks/<name>.py as a module (the scripts are not a package)."""
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parent.parent / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"{name}_script", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_blocked_vs_nchw_script_times_each_layer_in_both_layouts(capsys):
    script = benchmark_script("blocked_vs_nchw")
    assert script.main(["--quick", "--batch-size", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("batch 2") and lines[-1].startswith("sum: best NCHW")
    rows = lines[1:-1]
    assert len(rows) == 2 and "implicit" not in rows[0] and "implicit" in rows[1]
    for row in rows:   # every kernel timed, the blocked one's result equal to the NCHW's
        assert all(name in row for name in ("packed", "nchw16c", "blocked/best"))
        assert float(row.split("difference ")[1].rstrip(")")) < 1e-5


def test_depthwise_script_times_each_kernel_beside_the_memory_floor(capsys):
    script = benchmark_script("depthwise")
    assert script.main(["--quick", "--batch-size", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("batch 2") and lines[-1].startswith("sum: forward")
    rows = lines[1:-1]
    assert [row.split(":")[0].split()[-1] for row in rows] == ["rolling", "flat"]
    for row in rows:   # every kernel timed, each result the direct kernels'
        assert all(name in row for name in ("forward", "weight grad", "input grad", "floor"))
        assert float(row.split("difference ")[1].rstrip(")")) < 1e-5
