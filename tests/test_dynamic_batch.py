"""One executable for any batch size (graphcnn/runtime/dynamic_batch.py,
graphcnn/backends/cpu/dynamic.py): equal to fixed-batch executables at every batch, one
arena, weights transformed once, artifacts, the command line, the Trainer, refusals."""
import json
import subprocess
import sys
import threading

import numpy as np
import pytest

import graphcnn as gc
from graphcnn import nn
from graphcnn.dsl import apply
from graphcnn.runtime.dynamic_batch import DynamicBatchError, rebatch


def small_cnn() -> gc.Model:
    """Conv, batch norm, pooling, a residual add, a flatten and a dense head: every kind of
    node a batch passes through."""
    x = gc.Input((3, 12, 12), name="x")
    h = nn.ReLU()(nn.BatchNorm2d(8)(nn.Conv2d(3, 8, 3, padding=1)(x)))
    h = h + nn.Conv2d(8, 8, 3, padding=1)(h)
    h = nn.MaxPool2d(2)(h)
    h = nn.Flatten()(nn.Conv2d(8, 16, 1)(h))
    return gc.Model(x, nn.Linear(16 * 36, 5)(h), name="small_cnn")


def batch(n: int, shape: tuple[int, ...] = (3, 12, 12), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed + n).standard_normal((n, *shape)).astype(np.float32)


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_any_batch_equals_a_fixed_batch_executable(backend):
    model = small_cnn()
    dynamic = gc.compile(model, batch_size=None, max_batch=6, backend=backend)
    assert dynamic.max_batch == 6
    for n in (1, 2, 5, 6, 3):
        fixed = gc.compile(model, batch_size=n, backend=backend)
        x = batch(n)
        got = dynamic(x)
        assert got.shape == (n, 5)
        np.testing.assert_allclose(got, fixed(x), rtol=1e-5, atol=1e-6)


def test_zoo_models_at_several_batches():
    for model, shape in ((gc.models.lenet5(), (1, 32, 32)),
                         (gc.models.mobilenet_v2(10, input_size=32, width_mult=0.25),
                          (3, 32, 32))):
        dynamic = gc.compile(model, batch_size=None, max_batch=4)
        for n in (1, 3):
            x = batch(n, shape)
            np.testing.assert_allclose(dynamic(x), gc.compile(model, batch_size=n)(x),
                                       rtol=1e-4, atol=1e-5)


def test_one_arena_for_every_batch_and_weights_packed_once():
    model = small_cnn()
    dynamic = gc.compile(model, batch_size=None, max_batch=8)
    fixed = gc.compile(model, batch_size=8)
    before = dynamic.report()
    for n in (1, 2, 3, 7):
        dynamic(batch(n))
    after = dynamic.report()
    assert after["arena_bytes"] == before["arena_bytes"] == fixed.report()["arena_bytes"]
    assert after["contexts"] == 1
    runner = dynamic.runner
    # every batch's steps hold the same transformed weights, not copies
    packed = {id(v[0]) for v in runner._prepacked.values()}
    assert len(packed) == len(runner._prepacked)
    assert after["packed_weights_bytes"] == before["packed_weights_bytes"]


def test_batches_out_of_range_and_bad_shapes_are_one_line_errors():
    dynamic = gc.compile(small_cnn(), batch_size=None, max_batch=4, backend="reference")
    with pytest.raises(ValueError, match=r"batch 5; this executable runs batches of 1 to 4"):
        dynamic(batch(5))
    with pytest.raises(ValueError, match=r"batch 0"):
        dynamic(np.zeros((0, 3, 12, 12), np.float32))
    with pytest.raises(ValueError, match=r"expects float32 of shape \(2, 3, 12, 12\)"):
        dynamic(np.zeros((2, 3, 12, 11), np.float32))


def test_max_batch_with_a_fixed_batch_size_or_on_cuda_is_refused():
    with pytest.raises(ValueError, match="give one of batch_size and max_batch"):
        gc.compile(small_cnn(), batch_size=2, max_batch=8)
    with pytest.raises(ValueError, match="runs on the cpu and reference backends"):
        gc.compile(small_cnn(), batch_size=None, backend="cuda")


def test_default_max_batch_is_64():
    dynamic = gc.compile(gc.models.lenet5(), batch_size=None, backend="reference")
    assert dynamic.max_batch == 64
    assert dynamic(batch(64, (1, 32, 32))).shape == (64, 10)


def test_a_graph_that_folds_the_batch_into_another_axis_is_refused_by_name():
    x = gc.Input((4, 6), name="x")
    g = gc.Model(x, apply("reshape", [x], shape=(-1,)), name="folds")   # (B*24,)
    with pytest.raises(DynamicBatchError, match=r"reshape .*does not lead with the batch"):
        gc.compile(g, batch_size=None, max_batch=4)


def test_rebatch_keeps_node_and_value_ids():
    graph = small_cnn().graph(6, training=False)
    small = rebatch(graph, 2)
    assert [n.op for n in small.nodes] == [n.op for n in graph.nodes]
    assert [v.id for v in small.values()] == [v.id for v in graph.values()]
    assert small.outputs[0].shape == (2, 5)


def test_threads_at_different_batches_get_their_own_results():
    model = small_cnn()
    dynamic = gc.compile(model, batch_size=None, max_batch=6)
    inputs = {n: batch(n, seed=10) for n in range(1, 7)}
    want = {n: gc.compile(model, batch_size=n, backend="reference")(x)
            for n, x in inputs.items()}
    errors: list[str] = []

    def work(worker: int) -> None:
        for k in range(12):
            n = 1 + (worker + k) % 6
            got = dynamic(inputs[n])
            if not np.allclose(got, want[n], rtol=1e-4, atol=1e-5):
                errors.append(f"worker {worker} batch {n}")

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_onnx_model_with_a_symbolic_batch_keeps_it(tmp_path):
    model = small_cnn()
    path = str(tmp_path / "small.onnx")
    gc.onnx.save(model, path)
    imported = gc.onnx.load(path)
    dynamic = gc.compile(imported, batch_size=None, max_batch=4)
    for n in (1, 3):
        x = batch(n)
        np.testing.assert_allclose(dynamic(x), gc.compile(model, batch_size=n)(x),
                                   rtol=1e-4, atol=1e-5)


def test_artifact_runs_any_batch_in_a_fresh_process(tmp_path):
    model = small_cnn()
    dynamic = gc.compile(model, batch_size=None, max_batch=6)
    path = str(tmp_path / "any.gcnn")
    gc.save(dynamic, path)
    xs = {n: batch(n, seed=3) for n in (1, 4, 6)}
    for n, x in xs.items():
        np.save(tmp_path / f"x{n}.npy", x)
        np.save(tmp_path / f"y{n}.npy", dynamic(x))
    script = (
        "import json, sys, numpy as np, graphcnn as gc\n"
        "exe = gc.load(sys.argv[1])\n"
        "out = {'max_batch': exe.max_batch, 'precompiled': exe.precompiled}\n"
        "for n in (1, 4, 6):\n"
        "    got = exe(np.load(f'{sys.argv[2]}/x{n}.npy'))\n"
        "    out[str(n)] = bool(np.allclose(got, np.load(f'{sys.argv[2]}/y{n}.npy'),"
        " rtol=1e-5, atol=1e-6))\n"
        "print(json.dumps(out))\n")
    result = subprocess.run([sys.executable, "-c", script, path, str(tmp_path)],
                            capture_output=True, text=True, check=True)
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out == {"max_batch": 6, "precompiled": True, "1": True, "4": True, "6": True}
    assert "any batch size from 1 to 6" in gc.runtime.artifact.summarize(path)


def test_cli_compile_max_batch(tmp_path, capsys):
    from graphcnn.cli import main
    path = str(tmp_path / "lenet.gcnn")
    assert main(["compile", "lenet5", "--max-batch", "4", "-o", path]) == 0
    out = capsys.readouterr().out
    assert "any batch size from 1 to 4" in out
    exe = gc.load(path)
    assert exe(np.zeros((3, 1, 32, 32), np.float32)).shape == (3, 10)
    for extra, message in ((["--batch-size", "2"], "one of --batch-size and --max-batch"),
                           (["--training"], "--max-batch is for inference")):
        with pytest.raises(SystemExit) as exit_info:
            main(["compile", "lenet5", "--max-batch", "4", *extra])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err


def test_trainer_evaluates_the_last_short_batch_on_the_same_executable():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((11, 3, 12, 12)).astype(np.float32)
    y = rng.integers(0, 5, 11)
    trainer = gc.Trainer(small_cnn(), backend="cpu", train_accuracy="none")
    trainer.fit(X, y, epochs=1, batch_size=4, verbose=False)
    predictions = trainer.predict(X, batch_size=4)   # batches of 4, 4 and 3
    assert len(trainer._executables) == 1
    (exe,) = trainer._executables.values()
    assert exe.max_batch == 4
    fixed = gc.compile(trainer.model, batch_size=11, backend="reference")
    np.testing.assert_allclose(predictions, fixed(X), rtol=1e-4, atol=1e-5)


def test_the_guides_commands_run(tmp_path):
    """docs/dynamic_batch.md's shell block, line by line, with this checkout's graphcnn."""
    import os
    import re
    import shlex
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    guide = (root / "docs" / "dynamic_batch.md").read_text()
    (block,) = re.findall(r"```bash\n(.*?)```", guide, re.S)
    env = dict(os.environ, PYTHONPATH=str(root))
    outputs = []
    for line in block.strip().splitlines():
        argv = shlex.split(line, comments=True)
        cli = "import sys; from graphcnn.cli import main; sys.exit(main(sys.argv[1:]))"
        argv = [sys.executable, "-c", cli, *argv[1:]] if argv[0] == "graphcnn" \
            else [sys.executable, *argv[1:]]
        done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert done.returncode == 0, (line, done.stderr)
        outputs.append(done.stdout)
    assert "any batch size from 1 to 16" in outputs[0]
    assert "float32[5, 10]" in outputs[2]


def test_an_onnx_graph_written_for_one_batch_is_refused_in_one_line(tmp_path):
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    # (2, 3) -> Reshape to (6,): the batch folded into the only axis, as only batch 2 allows
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])], "folds",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [6])],
        [numpy_helper.from_array(np.array([6], np.int64), "shape")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model = gc.onnx.load(proto.SerializeToString())
    with pytest.raises(ValueError, match=r"runs at batch size 2 only .* batch_size=2"):
        gc.compile(model, batch_size=None)
    assert gc.compile(model, batch_size=2)(np.ones((2, 3), np.float32)).shape == (6,)
