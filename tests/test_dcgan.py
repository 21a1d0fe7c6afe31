"""The DCGAN models (PyTorch's DCGAN tutorial): parameter names, counts and shapes at the
tutorial's sizes and at others, the DCGAN initialization, models called as layers in a
bigger model (a GAN's z -> generator -> discriminator shares their arrays), and ONNX."""
import numpy as np
import pytest

import graphcnn as gc


def tiny(size=16):
    gc.manual_seed(0)
    return (gc.models.dcgan_generator(nz=8, ngf=4, nc=1, image_size=size),
            gc.models.dcgan_discriminator(nc=1, ndf=4, image_size=size))


def test_the_tutorials_names_shapes_and_counts():
    g, d = gc.models.dcgan_generator(), gc.models.dcgan_discriminator()
    assert g.num_parameters(trainable_only=True) == 3_576_704
    assert d.num_parameters(trainable_only=True) == 2_765_568
    shapes = {k: v.shape for k, v in g.parameters().items()}
    assert shapes["main.0.weight"] == (100, 512, 4, 4)          # ConvTranspose2d(nz, ngf*8)
    assert shapes["main.1.weight"] == (512,)                     # BatchNorm2d
    assert shapes["main.12.weight"] == (64, 3, 4, 4)             # ConvTranspose2d(ngf, nc)
    assert [k for k in shapes if k.endswith("weight")] == [
        f"main.{i}.weight" for i in (0, 1, 3, 4, 6, 7, 9, 10, 12)]
    shapes = {k: v.shape for k, v in d.parameters().items()}
    assert [k for k in shapes if k.endswith("weight")] == [
        f"main.{i}.weight" for i in (0, 2, 3, 5, 6, 8, 9, 11)]
    assert shapes["main.11.weight"] == (1, 512, 4, 4)            # Conv2d(ndf*8, 1, 4, 1, 0)
    assert g.inputs[0].shape == (None, 100, 1, 1) and g.outputs[0].shape == (None, 3, 64, 64)
    assert d.outputs[0].shape == (None, 1, 1, 1)


def test_other_sizes_drop_the_widest_block():
    g, d = gc.models.dcgan_generator(nc=1, image_size=32), gc.models.dcgan_discriminator(
        nc=1, image_size=32)
    assert g.parameters()["main.0.weight"].shape == (100, 256, 4, 4)
    assert g.parameters()["main.9.weight"].shape == (64, 1, 4, 4)
    assert g.outputs[0].shape == (None, 1, 32, 32)
    assert d.parameters()["main.8.weight"].shape == (1, 256, 4, 4)
    g8 = gc.models.dcgan_generator(nz=2, ngf=4, nc=1, image_size=8)
    assert list(g8.parameters())[-1] == "main.3.weight" and g8.outputs[0].shape[-1] == 8
    for bad in (4, 24, 100):
        with pytest.raises(ValueError, match="image_size must be a power of two"):
            gc.models.dcgan_generator(image_size=bad)
        with pytest.raises(ValueError, match="image_size must be a power of two"):
            gc.models.dcgan_discriminator(image_size=bad)
    assert isinstance(gc.models.get_model("dcgan_generator", nz=4, ngf=2, nc=1,
                                          image_size=8), gc.Model)


def test_dcgan_initialization_and_sigmoid_option():
    gc.manual_seed(3)
    g = gc.models.dcgan_generator(ngf=32, nc=1, image_size=32)
    p = g.parameters()
    assert abs(p["main.3.weight"].std() - 0.02) < 0.002 and abs(p["main.3.weight"].mean()) < 1e-3
    assert abs(p["main.1.weight"].mean() - 1) < 0.01 and 0.01 < p["main.1.weight"].std() < 0.03
    assert not p["main.1.bias"].any() and not p["main.1.running_mean"].any()
    plain = gc.models.dcgan_generator(ngf=32, nc=1, image_size=32, init=False)
    assert (plain.parameters()["main.1.weight"] == 1).all()     # BatchNorm's default
    logits = gc.models.dcgan_discriminator(nc=1, ndf=4, image_size=8)
    probs = gc.models.dcgan_discriminator(nc=1, ndf=4, image_size=8, sigmoid=True)
    assert list(probs.parameters()) == list(logits.parameters())
    probs.load_parameters(logits.parameters())
    x = np.random.default_rng(0).standard_normal((3, 1, 8, 8)).astype(np.float32)
    z = gc.compile(logits, batch_size=3)(x)
    np.testing.assert_allclose(gc.compile(probs, batch_size=3)(x), 1 / (1 + np.exp(-z)),
                               rtol=1e-5)


def test_models_called_as_layers_share_their_arrays():
    g, d = tiny()
    z = gc.Input((8, 1, 1), name="z")
    gan = gc.Model(z, d(g(z)), name="gan")
    params = gan.parameters()
    assert len(params) == len(g.parameters()) + len(d.parameters())
    for prefix, model in (("dcgan_generator.", g), ("dcgan_discriminator.", d)):
        for name, array in model.parameters().items():
            assert params[prefix + name] is array               # the same storage
    # the models themselves keep their own names and still compile alone
    assert list(g.parameters())[0] == "main.0.weight"
    zs = np.random.default_rng(1).standard_normal((4, 8, 1, 1)).astype(np.float32)
    chained = gc.compile(d, batch_size=4)(gc.compile(g, batch_size=4)(zs))
    np.testing.assert_allclose(gc.compile(gan, batch_size=4)(zs), chained, rtol=1e-5,
                               atol=1e-6)
    # a step on the combined model: gradients for both models' parameters; applying the
    # generator's changes the generator (and so the combined model) in place
    step = gc.value_and_grad(gan, loss="bce_with_logits", batch_size=4)
    before = g.parameters()["main.0.weight"].copy()
    loss, grads = step(zs, np.ones((4, 1, 1, 1), np.float32))
    assert set(grads) == set(gan.trainable_parameters()) and np.isfinite(loss)
    opt = gc.optim.Adam(lr=1e-2)
    mine = {k[len("dcgan_generator."):]: v for k, v in grads.items()
            if k.startswith("dcgan_generator.")}
    opt.step(g.trainable_parameters(), mine)
    assert not np.array_equal(g.parameters()["main.0.weight"], before)
    assert params["dcgan_generator.main.0.weight"] is g.parameters()["main.0.weight"]


def test_gradients_for_some_parameters_only():
    g, d = tiny()
    z = gc.Input((8, 1, 1), name="z")
    gan = gc.Model(z, d(g(z)), name="gan")
    zs = np.random.default_rng(3).standard_normal((4, 8, 1, 1)).astype(np.float32)
    target = np.zeros((4, 1, 1, 1), np.float32)
    full = gc.value_and_grad(gan, loss="bce_with_logits", batch_size=4, backend="reference")
    d_names = [k for k in gan.trainable_parameters() if k.startswith("dcgan_discriminator.")]
    only_d = gc.value_and_grad(gan, loss="bce_with_logits", batch_size=4, backend="reference",
                               wrt=d_names)
    assert len(only_d.executable.graph.nodes) < len(full.executable.graph.nodes)  # no G pass
    state = {k: v.copy() for k, v in gan.parameters().items()}
    loss, grads = full(zs, target)
    gan.load_parameters(state)                    # the same running statistics again
    loss_d, grads_d = only_d(zs, target)
    assert loss_d == loss and sorted(grads_d) == sorted(d_names)
    for k in d_names:
        np.testing.assert_array_equal(grads_d[k], grads[k])
    with pytest.raises(ValueError, match=r"wrt names \['main.0.weight'\]"):
        gc.value_and_grad(gan, loss="bce_with_logits", batch_size=4, wrt=["main.0.weight"])


@pytest.mark.parametrize("which", ["generator", "discriminator"])
def test_onnx_round_trip_and_onnxruntime(which, tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    g, d = tiny()
    model = g if which == "generator" else d
    rng = np.random.default_rng(2)
    for key, value in model.parameters().items():   # non-trivial batch-norm statistics
        if key.endswith("running_var"):
            value[...] = rng.uniform(0.5, 1.5, value.shape)
        elif key.endswith("running_mean"):
            value[...] = rng.normal(0, 0.1, value.shape)
    shape = (3, 8, 1, 1) if which == "generator" else (3, 1, 16, 16)
    x = rng.standard_normal(shape).astype(np.float32)
    expected = gc.compile(model, batch_size=3)(x)
    path = gc.onnx.save(model, tmp_path / f"{which}.onnx")
    onnx.checker.check_model(onnx.load(path), full_check=True)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    back = gc.onnx.load(path)
    assert list(back.parameters()) == list(model.parameters())
    np.testing.assert_allclose(gc.compile(back, batch_size=3)(x), expected, rtol=1e-5,
                               atol=1e-6)
