"""gc.models.cnn_regressor: its layout (names, shapes, counts), the cpu backend against the
NumPy reference, a training step with the mse loss, clear errors for bad options, and
ONNX export / re-import / ONNX Runtime with equal outputs."""
import numpy as np
import pytest

import graphcnn as gc
from graphcnn.models.regressor import stage_widths


def tiny(**options):
    gc.manual_seed(0)
    kwargs = dict(input_size=16, width=4, stages=2)
    kwargs.update(options)
    return gc.models.cnn_regressor(2, **kwargs)


def randomize(model, seed=1):
    """Batch-norm statistics and weights away from their initial values."""
    rng = np.random.default_rng(seed)
    for key, value in model.parameters().items():
        if key.endswith("running_var"):
            value[...] = rng.uniform(0.5, 1.5, value.shape)
        elif key.endswith(("running_mean", "bias")):
            value[...] = rng.normal(0.0, 0.1, value.shape)
        elif value.ndim == 1:
            value[...] = rng.uniform(0.5, 1.5, value.shape)


def test_layout_names_and_counts():
    model = gc.models.cnn_regressor()
    assert model.inputs[0].shape == (None, 3, 64, 64)
    assert model.outputs[0].shape == (None, 2)
    params = model.parameters()
    assert list(params)[:6] == ["stage1.conv1.weight", "stage1.bn1.weight", "stage1.bn1.bias",
                                "stage1.bn1.running_mean", "stage1.bn1.running_var",
                                "stage1.conv2.weight"]
    assert list(params)[-2:] == ["head.weight", "head.bias"]
    assert stage_widths(16, 4) == [16, 32, 64, 64]
    # by hand: 3x3 convs without bias, BN (weight, bias), the head
    widths, count, cin = stage_widths(16, 4), 0, 3
    for w in widths:
        count += 9 * cin * w + 2 * w + 9 * w * w + 2 * w
        cin = w
    count += 64 * 2 + 2
    assert model.num_parameters(trainable_only=True) == count == 146_418
    one = gc.models.cnn_regressor(1, in_channels=1, input_size=(32, 48), width=8, stages=3,
                                  convs_per_stage=1)
    assert one.outputs[0].shape == (None, 1) and one.inputs[0].shape == (None, 1, 32, 48)
    assert "stage3.conv1.weight" in one.parameters()
    assert "stage1.conv2.weight" not in one.parameters()
    assert gc.models.get_model("cnn_regressor", width=4).num_parameters() < count


def test_cpu_matches_reference_and_output_is_linear():
    model = tiny()
    randomize(model)
    x = np.random.default_rng(2).uniform(0, 1, (3, 3, 16, 16)).astype(np.float32)
    ref = gc.compile(model, batch_size=3, backend="reference")(x)
    out = gc.compile(model, batch_size=3, backend="cpu")(x)
    assert out.shape == (3, 2)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)
    # no activation on the head: shifting its bias shifts the outputs by exactly that
    # much, negative values included
    model.parameters()["head.bias"][...] += np.array([-50.0, 50.0], np.float32)
    shifted = gc.compile(model, batch_size=3, backend="reference")(x)
    np.testing.assert_allclose(shifted - ref, np.broadcast_to([-50.0, 50.0], ref.shape),
                               atol=1e-3)


def test_mse_step_gradients_match_finite_differences():
    model = tiny(stages=1, convs_per_stage=1, input_size=8)
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 1, (4, 3, 8, 8))
    y = rng.normal(0, 1, (4, 2))
    step = gc.value_and_grad(model, loss="mse", batch_size=4, backend="reference",
                             dtype="float64")
    params = model.parameters()   # the arrays the step reads at each call
    loss, grads = step(x, y)
    for name in ("head.weight", "stage1.conv1.weight", "stage1.bn1.bias"):
        flat = params[name].reshape(-1)
        for i in (0, flat.size - 1):
            saved = flat[i]
            losses, moved = [], []
            for delta in (1e-3, -1e-3):
                flat[i] = saved + delta   # the float32 parameter: the step moved exactly
                moved.append(float(flat[i]) - float(saved))
                losses.append(step(x, y)[0])
            flat[i] = saved
            fd = (losses[0] - losses[1]) / (moved[0] - moved[1])
            assert grads[name].reshape(-1)[i] == pytest.approx(fd, rel=1e-3, abs=1e-6)
    assert np.isfinite(loss) and set(grads) == set(model.trainable_parameters())


@pytest.mark.parametrize("options, message", [
    (dict(num_outputs=0), "num_outputs must be an int >= 1"),
    (dict(width=0), "width must be an int >= 1"),
    (dict(stages=2.0), "stages must be an int >= 1"),
    (dict(convs_per_stage=0), "convs_per_stage must be an int >= 1"),
    (dict(input_size=8, stages=4), "input_size must be at least 16 x 16, got 8 x 8"),
    (dict(in_channels=0), "in_channels must be an int >= 1"),
])
def test_bad_options_are_clear_errors(options, message):
    with pytest.raises(ValueError, match=message):
        gc.models.cnn_regressor(**options)


def test_onnx_export_reimport_and_onnxruntime(tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = tiny()
    randomize(model)
    x = np.random.default_rng(4).uniform(0, 1, (2, 3, 16, 16)).astype(np.float32)
    expected = gc.compile(model, batch_size=2, backend="cpu")(x)
    path = gc.onnx.save(model, tmp_path / "regressor.onnx")
    onnx.checker.check_model(onnx.load(path), full_check=True)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    back = gc.onnx.load(path)
    assert list(back.parameters()) == list(model.parameters())
    np.testing.assert_allclose(gc.compile(back, batch_size=2, backend="cpu")(x), expected,
                               rtol=1e-4, atol=1e-5)
