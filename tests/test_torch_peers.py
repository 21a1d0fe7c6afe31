"""The PyTorch peers of the larger zoo models (graphcnn/bench/torch_models.py and
torch_models_big.py): graphcnn's weights load into them by state_dict name and, in small
configurations, their eval-mode logits equal graphcnn's cpu backend's; ResNet-50's
training step (loss and every gradient) equals gc.value_and_grad's."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import graphcnn as gc

# Small configurations each zoo function allows: few classes, 32-pixel inputs where the
# head pools globally, narrow widths. VGG's head needs a feature map that 7x7 divides,
# so it keeps 224 pixels with 1/16 of the channels and 16 hidden units.
SMALL_VGG = {"width_mult": 1 / 16, "hidden": 16, "num_classes": 5, "input_size": 224}
SMALL_DENSENET = {"growth_rate": 4, "num_init_features": 8, "bn_size": 2, "num_classes": 5,
                  "input_size": 32}
CASES: list[tuple[str, dict[str, Any]]] = [
    ("resnet50", {"width": 8, "num_classes": 5, "input_size": 32}),
    ("resnet101", {"width": 4, "num_classes": 5, "input_size": 32}),
    ("resnet152", {"width": 4, "num_classes": 5, "input_size": 32}),
    # the zoo's GoogLeNet has fixed widths and no auxiliary heads; 32 pixels is its smallest
    ("googlenet", {"num_classes": 5, "input_size": 32}),
    ("densenet121", SMALL_DENSENET),
    ("densenet161", SMALL_DENSENET),
    ("densenet169", SMALL_DENSENET),
    ("densenet201", SMALL_DENSENET),
    ("vgg11", SMALL_VGG), ("vgg13", SMALL_VGG), ("vgg16", SMALL_VGG), ("vgg19", SMALL_VGG),
    ("vgg11_bn", SMALL_VGG), ("vgg13_bn", SMALL_VGG), ("vgg16_bn", SMALL_VGG),
    ("vgg19_bn", SMALL_VGG),
]


def _image(options: dict[str, Any], batch: int, seed: int = 1) -> np.ndarray:
    size = options["input_size"]
    return np.random.default_rng(seed).standard_normal((batch, 3, size, size),
                                                       dtype=np.float32)


def _randomize_batch_norm_stats(model: gc.Model) -> None:
    """Fresh running statistics are 0 and 1, which would leave a wrong mean or variance
    untested: give every batch norm its own."""
    rng = np.random.default_rng(2)
    params = model.parameters()
    for key, value in params.items():
        if key.endswith("running_mean"):
            value[...] = rng.uniform(-0.2, 0.2, value.shape)
        elif key.endswith("running_var"):
            value[...] = rng.uniform(0.5, 1.5, value.shape)


@pytest.mark.parametrize("name, options", CASES, ids=[c[0] for c in CASES])
def test_eval_logits_match_graphcnn(name: str, options: dict[str, Any]) -> None:
    torch = pytest.importorskip("torch")
    from graphcnn.bench.torch_models import build, load_graphcnn_weights
    gc.manual_seed(0)
    model = gc.models.get_model(name, **options)
    _randomize_batch_norm_stats(model)
    net = load_graphcnn_weights(build(name, **options), model).eval()
    x = _image(options, 2)
    mine = np.asarray(gc.compile(model, batch_size=2, backend="cpu")(x), np.float64)
    with torch.inference_mode():
        theirs = net(torch.from_numpy(x)).numpy().astype(np.float64)
    assert mine.shape == theirs.shape == (2, options["num_classes"])
    scale = float(np.max(np.abs(theirs)))
    assert scale > 0
    assert float(np.max(np.abs(mine - theirs))) / scale < 1e-4


# ResNet-50's training step at 64 pixels and batch 8. In float32 a ReLU whose input lies
# within rounding of 0 can fall on either side in any two float32 runs (PyTorch's own
# float32 gradients then differ from its float64 ones by up to 20% on some inputs at these
# sizes: one position of a 4x4 map weighs much in a weight gradient), so the float32 test
# compares the whole gradient with float64's; the float64 test checks every gradient.
TRAIN_OPTIONS = {"width": 8, "num_classes": 5, "input_size": 64}
TRAIN_LABELS = np.arange(8, dtype=np.int64) % 5
TRAIN_SEED = 2


def _torch_step(dtype: Any) -> tuple[float, dict[str, np.ndarray], gc.Model]:
    """(loss, gradients) of PyTorch's ResNet-50 peer in `dtype`, on the zoo model's
    weights, and that zoo model."""
    import torch

    from graphcnn.bench.torch_models import build, load_graphcnn_weights
    gc.manual_seed(0)
    model = gc.models.resnet50(**TRAIN_OPTIONS)
    net = load_graphcnn_weights(build("resnet50", **TRAIN_OPTIONS), model).train().to(dtype)
    x = torch.from_numpy(_image(TRAIN_OPTIONS, len(TRAIN_LABELS), TRAIN_SEED)).to(dtype)
    loss = torch.nn.functional.cross_entropy(net(x), torch.from_numpy(TRAIN_LABELS))
    loss.backward()
    grads = {k: p.grad.double().numpy() for k, p in net.named_parameters()
             if p.grad is not None}
    return float(loss.detach()), grads, model


def _check_step(model: gc.Model, loss: float, grads: dict[str, np.ndarray],
                torch_loss: float, torch_grads: dict[str, np.ndarray], tol: float) -> None:
    assert abs(loss - torch_loss) < tol * max(1.0, abs(torch_loss))
    assert set(torch_grads) == set(grads) == set(model.trainable_parameters())
    # each gradient relative to its own largest entry, floored at 1e-3 of the largest of
    # all (a batch norm bias feeding another batch norm has an exact gradient of 0, and
    # both sides return rounding noise there)
    floor = 1e-3 * max(float(np.max(np.abs(g))) for g in torch_grads.values())
    worst = max((float(np.max(np.abs(np.asarray(grads[k], np.float64) - g)))
                 / max(float(np.max(np.abs(g))), floor), k) for k, g in torch_grads.items())
    assert worst[0] < tol, worst


def test_resnet50_training_step_float64_matches_graphcnn() -> None:
    """The peer's training-mode graph (batch statistics, every gradient) is graphcnn's:
    in float64, gc.value_and_grad on the cpu backend and PyTorch agree to rounding."""
    torch = pytest.importorskip("torch")
    torch_loss, torch_grads, model = _torch_step(torch.float64)
    x = _image(TRAIN_OPTIONS, len(TRAIN_LABELS), TRAIN_SEED).astype(np.float64)
    step = gc.value_and_grad(model, batch_size=len(x), backend="cpu", dtype="float64")
    loss, grads = step(x, TRAIN_LABELS)
    _check_step(model, float(loss), grads, torch_loss, torch_grads, 1e-6)


def test_resnet50_training_step_float32_matches_graphcnn() -> None:
    """In float32, against the float64 step: the loss to 1e-5, and all the gradients
    together (one vector, relative L2 norm) to 1e-3, as close as PyTorch's own float32
    step. A ReLU input within rounding of 0 may fall on the other side on another machine
    (another conv algorithm): that moves one weight's gradient by percents, but not the
    whole gradient, so the check does not hang on the inputs chosen."""
    torch = pytest.importorskip("torch")
    exact_loss, exact, model = _torch_step(torch.float64)
    torch_loss, torch_grads, _ = _torch_step(torch.float32)
    x = _image(TRAIN_OPTIONS, len(TRAIN_LABELS), TRAIN_SEED)
    loss, grads = gc.value_and_grad(model, batch_size=len(x), backend="cpu")(x, TRAIN_LABELS)
    names = sorted(exact)

    def error(got: dict[str, np.ndarray]) -> float:
        diff = np.concatenate([(np.asarray(got[k], np.float64) - exact[k]).ravel()
                               for k in names])
        return float(np.linalg.norm(diff) / np.linalg.norm(
            np.concatenate([exact[k].ravel() for k in names])))
    assert abs(float(loss) - exact_loss) < 1e-5 * max(1.0, abs(exact_loss))
    assert error(grads) < 1e-3, (error(grads), error(torch_grads))
    assert error(torch_grads) < 1e-3   # the same bound holds for PyTorch's float32
