"""The LeNet-5 of the zoo: structure, parameter count, and that it learns the digits."""
import numpy as np
import pytest

import graphcnn as gc
from graphcnn.models import available_models, get_model

EXPECTED_SHAPES = {
    "c1.weight": (6, 1, 5, 5), "c1.bias": (6,),
    "c3.weight": (16, 6, 5, 5), "c3.bias": (16,),
    "c5.weight": (120, 16, 5, 5), "c5.bias": (120,),
    "f6.weight": (84, 120), "f6.bias": (84,),
    "f7.weight": (10, 84), "f7.bias": (10,),
}


def test_parameters_names_shapes_and_count():
    model = gc.models.lenet5()
    assert model.num_parameters() == 61_706
    assert {k: v.shape for k, v in model.parameters().items()} == EXPECTED_SHAPES
    assert list(model.parameters()) == list(EXPECTED_SHAPES)  # creation order


def test_num_classes():
    model = gc.models.lenet5(num_classes=3)
    assert model.parameters()["f7.weight"].shape == (3, 84)
    assert model.num_parameters() == 61_706 - 850 + 84 * 3 + 3
    with pytest.raises(ValueError):
        gc.models.lenet5(num_classes=0)


def test_zoo_lookup():
    assert "lenet5" in available_models()
    assert get_model("LeNet5").num_parameters() == 61_706
    assert get_model("lenet5", num_classes=2).parameters()["f7.bias"].shape == (2,)
    with pytest.raises(ValueError, match="unknown model"):
        get_model("alexnet9000")


def test_summary_rows():
    text = gc.models.lenet5().summary(print_fn=None)
    for layer in ("c1", "s2", "c3", "s4", "c5", "f6", "f7"):
        assert layer in text
    assert "61,706" in text


def test_forward_shapes_and_cpu_matches_reference():
    gc.manual_seed(0)
    model = gc.models.lenet5()
    x = np.random.default_rng(0).random((3, 1, 32, 32), dtype=np.float32)
    ref = gc.compile(model, batch_size=3, backend="reference")(x)
    cpu = gc.compile(model, batch_size=3, backend="cpu")(x)
    assert ref.shape == (3, 10)
    np.testing.assert_allclose(cpu, ref, rtol=1e-4, atol=1e-5)


def test_learns_a_digits_subset():
    pytest.importorskip("sklearn")
    (X, y), _ = gc.data.load_digits()
    X, y = X[:256], y[:256]
    gc.manual_seed(0)
    trainer = gc.Trainer(gc.models.lenet5(), optimizer=gc.optim.SGD(lr=0.05, momentum=0.9))
    history = trainer.fit(X, y, epochs=4, batch_size=32, verbose=False)
    assert history.history["loss"][-1] < 0.6 * history.history["loss"][0]
    assert history.history["accuracy"][-1] > 0.6
