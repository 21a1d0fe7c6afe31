"""batch_norm_to_affine on the cuda backend: a batch norm after a concat (DenseNet's) runs
as sub/mul/add + relu in one fused kernel whose per-channel constants, shaped (C, 1, 1)
and (C,), broadcast along axis 1, and computes what the reference does at opt level 0."""
import numpy as np
import pytest

import graphcnn as gc
from graphcnn import nn
from graphcnn.ops.fused import member_ops


def _randomize(model: gc.Model, rng: np.random.Generator) -> None:
    for key, value in model.parameters().items():
        if key.endswith("running_var"):
            value[...] = rng.uniform(0.5, 2.0, value.shape)
        elif key.endswith(("running_mean", "bias")):
            value[...] = rng.normal(0, 0.5, value.shape)


@pytest.mark.parametrize("image", [True, False])
def test_batch_norm_after_a_concat_fuses_with_its_relu(image):
    rng = np.random.default_rng(3)
    if image:
        x_in = gc.Input((4, 5, 5), name="x")
        grown = nn.Conv2d(4, 2, 3, padding=1, bias=False)(x_in)
        head: nn.Layer = nn.Conv2d(6, 3, 1, bias=False)
        shape: tuple[int, ...] = (2, 4, 5, 5)
    else:
        x_in = gc.Input((4,), name="x")
        grown = nn.Linear(4, 2, bias=False)(x_in)
        head = nn.Linear(6, 3)
        shape = (2, 4)
    h = gc.relu(nn.BatchNorm2d(6)(gc.concat([x_in, grown], axis=1)))
    model = gc.Model(inputs=x_in, outputs=head(h))
    _randomize(model, rng)
    x = rng.normal(size=shape).astype(np.float32)
    want = gc.compile(model, batch_size=2, backend="reference", opt_level=0)(x)
    exe = gc.compile(model, batch_size=2, backend="cuda")
    assert not exe.graph.nodes_of("batch_norm")
    assert [member_ops(n.attrs) for n in exe.graph.nodes_of("fused")
            if n.attrs["anchor"] == ""] == [["sub", "mul", "add", "relu"]]
    np.testing.assert_allclose(exe(x), want, rtol=1e-4, atol=1e-5)
