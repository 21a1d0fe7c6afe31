"""How the blocked tap-table kernel (backends/cpu/kernels/nchw16c_conv.py) orders its work:
the split of tiles and weight panels over the threads, and its passes over an L2's worth
of panels at a time, which must not change a bit of the result."""
import numpy as np
import pytest

from graphcnn.backends.cpu.kernels import nchw16c, nchw16c_conv
from graphcnn.backends.cpu.kernels.nchw16c_conv import split
from graphcnn.ops.registry import get_op


def test_a_large_plane_splits_its_tiles_and_a_small_one_its_weights():
    # ResNet-50's 256 -> 64 1x1 at 56x56, batch 16: 64 KB of weights, 51 MB of input:
    # eight chunks of tiles, every chunk over all the panels.
    chunk, groups = split(tiles=16 * 392, panels=2, threads=2, weight_bytes=64 << 10,
                          input_bytes=51 << 20)
    assert groups == 1 and chunk == -(-16 * 392 // 8)
    # Its 512 -> 2048 1x1 at 7x7, batch 1: 4 MB of weights read by 7 tiles of 100 KB of
    # input: the tiles stay together and the panels are split.
    chunk, groups = split(tiles=7, panels=64, threads=2, weight_bytes=4 << 20,
                          input_bytes=100 << 10)
    assert chunk == 7 and groups == 8
    # MobileNetV2's 960 -> 160 at 7x7, batch 1: seven tiles over five panels. Fewer bytes
    # move in two chunks of four tiles, but one thread would get 4/7 of the work: tile by
    # tile, in two groups of panels, each thread gets half.
    assert split(tiles=7, panels=5, threads=2, weight_bytes=614 << 10,
                 input_bytes=188 << 10) == (1, 2)
    # never more groups than panels, never more chunks than tiles
    chunk, groups = split(tiles=3, panels=1, threads=2, weight_bytes=1 << 30, input_bytes=1)
    assert groups == 1 and chunk == 1


@pytest.mark.parametrize("kernel", [1, 3])
def test_passes_over_a_few_panels_at_a_time_change_no_bit(kernel, monkeypatch):
    """With the panels' budget down to one panel's bytes, each task passes over its tiles
    once per panel: the output is the same, bit for bit, as in one pass (the same sums in
    the same order), 5 output blocks (2 whole panels and a half one)."""
    rng = np.random.default_rng(kernel)
    c, o, n, h = 40, 80, 2, 9
    attrs = dict(stride=(1, 1), padding=(kernel // 2,) * 4, dilation=(1, 1), groups=1)
    x = rng.standard_normal((n, c, h, h)).astype(np.float32)
    w = rng.standard_normal((o, c, kernel, kernel)).astype(np.float32)
    b = rng.standard_normal(o).astype(np.float32)
    xb = np.empty((n, 3, h, h, 16), np.float32)
    nchw16c._to_nchw16c(x, xb)
    run = nchw16c.conv_pointwise if kernel == 1 else nchw16c.conv_implicit
    outs = []
    for budget in (nchw16c_conv.PANELS_BYTES, c * kernel * kernel * 32 * 4):
        monkeypatch.setattr(nchw16c_conv, "PANELS_BYTES", budget)
        out = np.full((n, 5, h, h, 16), np.nan, np.float32)
        run([xb, w, b], out, attrs)
        outs.append(out)
    np.testing.assert_array_equal(outs[0], outs[1])
    back = np.empty((n, o, h, h), np.float32)
    nchw16c._from_nchw16c(outs[1], back)
    want = get_op("conv2d").run_ref([x, w, b], attrs)[0]
    np.testing.assert_allclose(back, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("max_batch", [None, 3])
def test_a_model_forced_to_nchw16c_equals_the_reference_at_any_batch(max_batch):
    """Every conv of a small ResNet-like model on the blocked kernel copied back to NCHW
    (a stride-2 3x3 with relu, a 1x1 projection, a 3x3 with the residual add and relu as
    the copy's epilogue; 20 channels, a partial block): one kernel per group, equal to the
    reference; compiled for a dynamic batch, at batches 1 and 3 from one executable."""
    import graphcnn as gc
    from graphcnn import nn
    from graphcnn.backends.cpu.strategy import forced
    x = gc.Input((8, 12, 12), name="x")
    y = gc.relu(nn.Conv2d(8, 20, 3, stride=2, padding=1)(x))
    y = gc.relu(nn.Conv2d(20, 20, 3, padding=1)(y) + nn.Conv2d(8, 20, 1, stride=2)(x))
    model = gc.Model(x, y)
    with forced({"conv2d": "nchw16c"}):
        exe = gc.compile(model, batch_size=None if max_batch else 3, max_batch=max_batch)
    rows = exe.runner.implementations()   # the two fused groups and the projection
    assert [(op, name) for _, op, name, _ in rows] == [
        ("fused", "nchw16c"), ("conv2d", "nchw16c"), ("fused", "nchw16c")]
    assert all("as it stores" in why for _, op, _, why in rows if op == "fused")
    rng = np.random.default_rng(5)
    for batch in ([1, 3] if max_batch else [3]):
        xs = rng.standard_normal((batch, 8, 12, 12)).astype(np.float32)
        want = gc.compile(model, batch_size=batch, backend="reference", opt_level=0)(xs)
        np.testing.assert_allclose(exe(xs), want, rtol=1e-4, atol=1e-5)
