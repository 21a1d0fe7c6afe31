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


@pytest.mark.parametrize("kernel,o", [(1, 80), (3, 80), (1, 128), (3, 64)])
def test_passes_over_a_few_panels_at_a_time_change_no_bit(kernel, o, monkeypatch):
    """With the panels' budget down to one panel's bytes, each task passes over its tiles
    once per panel: the output is the same, bit for bit, as in one pass (the same sums in
    the same order). 80 output channels are 5 blocks: 2 whole panels of 2 and a half one;
    64 and 128 are wide panels of 4 blocks by 7 pixels. The 9x9 planes' tiles run across
    the ends of rows."""
    rng = np.random.default_rng(kernel)
    c, n, h = 40, 2, 9
    attrs = dict(stride=(1, 1), padding=(kernel // 2,) * 4, dilation=(1, 1), groups=1)
    x = rng.standard_normal((n, c, h, h)).astype(np.float32)
    w = rng.standard_normal((o, c, kernel, kernel)).astype(np.float32)
    b = rng.standard_normal(o).astype(np.float32)
    xb = np.empty((n, 3, h, h, 16), np.float32)
    nchw16c._to_nchw16c(x, xb)
    run = nchw16c.conv_pointwise if kernel == 1 else nchw16c.conv_implicit
    panel = nchw16c_conv.panel_blocks(o)
    assert panel == (2 if o == 80 else 4)
    outs = []
    for budget in (nchw16c_conv.PANELS_BYTES, c * kernel * kernel * 16 * panel * 4):
        monkeypatch.setattr(nchw16c_conv, "PANELS_BYTES", budget)
        out = np.full((n, o // 16, h, h, 16), np.nan, np.float32)
        run([xb, w, b], out, attrs)
        outs.append(out)
    np.testing.assert_array_equal(outs[0], outs[1])
    back = np.empty((n, o, h, h), np.float32)
    nchw16c._from_nchw16c(outs[1], back)
    want = get_op("conv2d").run_ref([x, w, b], attrs)[0]
    np.testing.assert_allclose(back, want, rtol=1e-4, atol=1e-4)


def test_a_wide_panel_with_missing_blocks_computes_on_zeros_and_stores_none_of_them():
    """Wide panels asked for where the blocks do not come in fours (6 blocks: a whole panel
    and a half one): the half panel's two missing blocks are not stored, and the rest
    equals the narrow panels' result."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 1, 7, 11, 16)).astype(np.float32)
    w = rng.standard_normal((96, 16, 3, 3)).astype(np.float32)
    bias16 = np.zeros(96, np.float32)
    attrs = dict(stride=(1, 1), padding=(1,) * 4, dilation=(1, 1), groups=1)
    outs = []
    for nb in (2, 4):
        out = np.full((1, 8, 7, 11, 16), 7.0, np.float32)
        nchw16c_conv.conv2d_nchw16c_general(x, w, bias16, out[:, :6], attrs,
                                            panels=nchw16c_conv.packed_weights(w, nb))
        outs.append(out)
    np.testing.assert_allclose(outs[1], outs[0], rtol=1e-6, atol=1e-5)
    assert (outs[1][:, 6:] == 7.0).all()


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
