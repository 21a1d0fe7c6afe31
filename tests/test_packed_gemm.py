"""The packed-weights GEMM (backends/cpu/kernels/packed_gemm.py): its microkernel, written
as LLVM vector code, against numpy on randomized shapes (partial blocks of rows and of
pixels, strided views), and the convolutions that run on it against the reference."""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from op_check import check_op

import graphcnn as gc
from graphcnn import nn
from graphcnn.ops.conv import conv2d_ref


def rand(rng, shape):
    return rng.standard_normal(shape).astype(np.float32)


@given(m=st.integers(1, 40), k=st.integers(1, 40), n=st.integers(1, 70),
       extra=st.integers(0, 5), channels=st.booleans(), seed=st.integers(0, 2**16))
def test_matmul_packed_equals_numpy(m, k, n, extra, channels, seed):
    """Both microkernels (pixels or output channels in the lanes), with rows and pixels
    past the last whole panel, operands as views into wider rows: equal to numpy's product
    to float32 rounding, nothing written outside c."""
    from graphcnn.backends.cpu.kernels import packed_gemm as pg
    rng = np.random.default_rng(seed)
    w = rand(rng, (m, k))
    b = rand(rng, (k, n + extra))[:, extra:]          # rows longer than the view
    c_wide = np.full((m, n + 3), np.nan, np.float32)
    c = c_wide[:, 3:]
    if channels:
        pg.matmul_packed_channels(pg.packed(w, pg.LANES), m, b, c)
    else:
        pg.matmul_packed(pg.packed(w), m, b, c)
    want = w.astype(np.float64) @ b.astype(np.float64)
    np.testing.assert_allclose(c, want, rtol=1e-5, atol=1e-5 * max(1.0, k ** 0.5))
    assert np.isnan(c_wide[:, :3]).all()  # nothing written outside c


@pytest.mark.parametrize("n", [12, 49, 200, 203])
def test_channels_product_splits_columns_or_weight_panels(n):
    """The channels-in-lanes product reads b in place, the threads splitting its columns
    (a partial last panel copied: 203 = 29 panels of 7) or, with few columns (12, 49),
    the weight panels: both equal to numpy's product, nothing read past b's end (b is the
    end of its buffer)."""
    from graphcnn.backends.cpu.kernels import packed_gemm as pg
    rng = np.random.default_rng(n)
    w, b = rand(rng, (40, 70)), rand(rng, (70, n))
    c = np.empty((40, n), np.float32)
    pg.matmul_packed_channels(pg.packed(w, pg.LANES), 40, b, c)
    assert pg.columns_split(40, n, 2) == (n >= 200)
    np.testing.assert_allclose(c, w.astype(np.float64) @ b, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("m", [16, 64, 80, 100])
@pytest.mark.parametrize("n", [49, 150, 203])
def test_wide_tiles_every_grouping(m, n):
    """The tiles of several vectors: weight panels taken three, two and one at a time (m =
    80: 3 + 2 panels; 64: 2 + 2; 100: 7 panels), pixel blocks of 64 with one of 16 to 48
    whole pixels left and a tail (150 = 2 x 64 + 16 + 6; 203 = 3 x 64 + 11): both
    microkernels equal numpy's product."""
    from graphcnn.backends.cpu.kernels import packed_gemm as pg
    rng = np.random.default_rng(m * n)
    w, b = rand(rng, (m, 37)), rand(rng, (37, n))
    want = w.astype(np.float64) @ b
    for width, product in ((pg.LANES, pg.matmul_packed_channels), (pg.MR, pg.matmul_packed)):
        c = np.full((m, n), np.nan, np.float32)
        product(pg.packed(w, width), m, b, c)
        np.testing.assert_allclose(c, want, rtol=1e-5, atol=1e-4)



def test_tiles_prefetch_their_columns_and_output_lines():
    """Both microkernels ask for lines ahead (packed_tiles.PREFETCH_AHEAD: rows of b lie a
    whole row of pixels apart, farther than the hardware prefetcher follows): the pixel
    tile for its output lines and for b's row k + 16 at each k, the channel tile for b's.
    The hints reach past b and c (a prefetch never faults): the products stay exact."""
    import numba

    from graphcnn.backends.cpu.kernels import packed_gemm as pg
    from graphcnn.backends.cpu.kernels import packed_tiles

    @numba.njit   # not cached, so its code can be read
    def both_tiles(w6, w16, b, c, t, zeros):
        packed_tiles._tile_4(w6.ctypes.data, b.ctypes.data, 64, c.ctypes.data, 64, b.shape[0], pg.MR,
                   zeros.ctypes.data, zeros.ctypes.data, 0, np.float32(0), np.float32(0))
        packed_tiles.tile_channels(w16.ctypes.data, b.ctypes.data, 64, t.ctypes.data, b.shape[0])

    rng = np.random.default_rng(1)
    w, b = rand(rng, (16, 9)), rand(rng, (9, 64))
    c, t = np.empty((pg.MR, 64), np.float32), np.empty((pg.NR, 16), np.float32)
    both_tiles(pg.packed(w[:pg.MR]), pg.packed(w, pg.LANES), b, c, t, np.zeros(16, np.float32))
    want = w.astype(np.float64) @ b
    np.testing.assert_allclose(c, want[:pg.MR], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(t, want[:, :pg.NR].T, rtol=1e-5, atol=1e-4)
    code = "".join(both_tiles.inspect_llvm().values())
    prefetches = [line for line in code.splitlines() if "call void @llvm.prefetch" in line]
    writes = [line for line in prefetches if "i32 1, i32 3, i32 1)" in line]
    assert len(writes) == pg.MR * 4               # the pixel tile's output lines
    assert len(prefetches) - len(writes) >= 4 + 2   # b's rows ahead (and the side's)

def test_panel_groups_never_leave_a_lone_panel_after_three():
    from graphcnn.backends.cpu.kernels import packed_gemm as pg
    groups = {}
    for count in range(1, 12):
        left, taken = count, []
        while left:
            taken.append(pg.panel_group(left))
            left -= taken[-1]
        groups[count] = taken
    assert groups[4] == [2, 2] and groups[7] == [3, 2, 2] and groups[5] == [3, 2]
    assert all(1 not in g for c, g in groups.items() if c > 1)


def test_weights_are_packed_in_panels_zero_past_the_last_row():
    from graphcnn.backends.cpu.kernels import packed_gemm
    w = rand(np.random.default_rng(0), (7, 5))
    first = packed_gemm.packed(w)
    assert first.shape == (2, 5, 6) and not first[1, :, 1:].any()  # zero rows past row 7
    np.testing.assert_array_equal(first[0], w[:6].T)
    wide = packed_gemm.packed(w, packed_gemm.LANES)
    assert wide.shape == (1, 5, 16) and not wide[0, :, 7:].any()


@st.composite
def conv_case(draw, kernel=3, height=20, width=20, stride=2, dilation=1, pad=2, channels=6):
    """(x shape, w shape, attrs) of a one-group conv with sizes up to the bounds given."""
    n, c, o = draw(st.integers(1, 2)), draw(st.integers(1, channels)), draw(st.integers(1, 13))
    kh, kw = draw(st.integers(1, kernel)), draw(st.integers(1, kernel))
    h, w = draw(st.integers(1, height)), draw(st.integers(1, width))
    strides = (draw(st.integers(1, stride)), draw(st.integers(1, stride)))
    dilations = (draw(st.integers(1, dilation)), draw(st.integers(1, dilation)))
    pads = draw(st.tuples(*[st.integers(0, pad)] * 4))
    assume(h + pads[0] + pads[1] >= (kh - 1) * dilations[0] + 1
           and w + pads[2] + pads[3] >= (kw - 1) * dilations[1] + 1)
    return (n, c, h, w), (o, c, kh, kw), dict(stride=strides, padding=pads,
                                              dilation=dilations, groups=1)


@given(case=conv_case(), bias=st.booleans(), seed=st.integers(0, 2**16),
       algorithm=st.sampled_from(["packed", "packed-channels", "winograd-packed", "implicit",
                                  "nchw16c"]))
def test_conv2d_on_the_packed_gemm_equals_the_reference(case, bias, seed, algorithm):
    """conv2d through the cpu kernel with a packed GEMM chosen (1x1 convs on the image
    itself, others on im2col columns or, 'implicit', on the padded image through a table
    of tap offsets; 3x3 stride-1 ones also by Winograd with its products on the
    microkernel; 'nchw16c', the blocked tap-table kernel copied back to NCHW), bias added
    after: equal to the reference."""
    from graphcnn.backends.cpu import autotune
    from graphcnn.backends.cpu.kernels import conv_gemm
    x_shape, w_shape, attrs = case
    rng = np.random.default_rng(seed)
    arrays = [rand(rng, x_shape), rand(rng, w_shape)] + ([rand(rng, w_shape[:1])] if bias else [])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(conv_gemm, "use_gemm", lambda *args: True)
        patch.setattr(autotune, "pick", lambda kind, key, candidates, default: (
            algorithm if algorithm in candidates else default))
        check_op("conv2d", arrays, attrs, grad=False)


def test_compiled_resnet_block_on_the_packed_gemm(monkeypatch):
    """A stride-2 conv, a 1x1 conv and a 3x3 conv with their fused epilogues, all on the
    packed GEMM with frozen weights: equal to the reference at opt level 0."""
    from graphcnn.backends.cpu import autotune
    from graphcnn.backends.cpu.kernels import conv_gemm, packed_images
    monkeypatch.setattr(conv_gemm, "use_gemm", lambda *args: True)
    chosen = []
    monkeypatch.setattr(autotune, "pick", lambda kind, key, candidates, default: (
        chosen.append(key) or ("packed" if "packed" in candidates else default)))
    calls = []
    original = packed_images.conv2d_packed   # the batch of 2 split over the threads
    monkeypatch.setattr(packed_images, "conv2d_packed",
                        lambda *args: (calls.append(args[1].shape), original(*args)))
    x = gc.Input((8, 12, 12), name="x")
    y = gc.relu(nn.Conv2d(8, 16, 3, stride=2, padding=1)(x))
    y = gc.relu(nn.Conv2d(16, 16, 3, padding=1)(y) + nn.Conv2d(8, 16, 1, stride=2)(x))
    model = gc.Model(x, y)
    xs = rand(np.random.default_rng(0), (2, 8, 12, 12))
    got = gc.compile(model, batch_size=2)(xs)
    assert len(calls) >= 3
    want = gc.compile(model, batch_size=2, backend="reference", opt_level=0)(xs)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_float64_and_grouped_convs_are_not_candidates():
    from graphcnn.backends.cpu.candidates import packed_fits
    attrs = dict(stride=(1, 1), padding=(1, 1, 1, 1), dilation=(1, 1), groups=1)
    assert packed_fits((1, 8, 9, 9), (8, 8, 3, 3), np.float32, attrs)
    assert not packed_fits((1, 8, 9, 9), (8, 8, 3, 3), np.float64, attrs)
    assert not packed_fits((1, 8, 9, 9), (8, 4, 3, 3), np.float32, dict(attrs, groups=2))
    full = dict(attrs, padding=(0, 0, 0, 0))
    assert not packed_fits((1, 8, 3, 3), (8, 8, 3, 3), np.float32, full)  # one dense GEMM


@given(case=conv_case(kernel=5, height=12, width=40, stride=3, dilation=2, pad=3, channels=5),
       seed=st.integers(0, 2**16))
def test_implicit_gemm_kernel_equals_the_reference(case, seed):
    """The implicit GEMM alone at any stride, dilation and padding, output rows up to 40
    wide (whole and partial blocks of 16 pixels) and partial panels of output channels:
    equal to the reference, every output written."""
    from graphcnn.backends.cpu.kernels.implicit_gemm import conv2d_implicit_gemm
    x_shape, w_shape, attrs = case
    rng = np.random.default_rng(seed)
    x, w = rand(rng, x_shape), rand(rng, w_shape)
    want = conv2d_ref(x.astype(np.float64), w.astype(np.float64), **attrs)
    out = np.full(want.shape, np.nan, np.float32)
    conv2d_implicit_gemm(x, w, out, attrs)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(want).max()))


@pytest.mark.parametrize("height", range(1, 10))
def test_implicit_gemm_tiles_of_one_to_four_output_rows(height):
    """Output heights 1 to 9 split into groups of one to four rows (9: 3, 3, 3; 5: 2, 3),
    each with a whole block of 16 columns and a partial one, and a partial weight panel."""
    from graphcnn.backends.cpu.kernels.implicit_gemm import conv2d_implicit_gemm
    attrs = dict(stride=(1, 1), padding=(1, 1, 1, 1), dilation=(1, 1), groups=1)
    rng = np.random.default_rng(height)
    x, w = rand(rng, (2, 5, height, 20)), rand(rng, (7, 5, 3, 3))
    want = conv2d_ref(x.astype(np.float64), w.astype(np.float64), **attrs)
    out = np.full(want.shape, np.nan, np.float32)
    conv2d_implicit_gemm(x, w, out, attrs)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(want).max()))


def test_channel_panels_are_six_or_seven_pixels_wide_whichever_wastes_less():
    from graphcnn.backends.cpu.kernels.packed_gemm import NR, NR_WIDE, panel_width
    assert panel_width(49) == NR_WIDE == 7   # ResNet's 7x7 planes: seven whole panels
    assert panel_width(48) == NR == 6        # a tie or a better fit keeps six
    assert panel_width(196) == NR_WIDE and panel_width(12) == NR and panel_width(1) == NR


def test_the_kernels_buffers_start_on_a_cache_line():
    """Packed and transformed weights, the nchw16c weights and bias, and the workspaces
    start on a 64-byte line (numpy's own large arrays start 16 bytes into one): a 16-lane
    load from them never spans two lines."""
    from graphcnn.backends.cpu.aligned import aligned_empty, aligned_zeros
    from graphcnn.backends.cpu.kernels import nchw16c, winograd
    from graphcnn.backends.cpu.kernels import packed_gemm as pg
    from graphcnn.backends.cpu.kernels.conv_gemm import workspace
    rng = np.random.default_rng(0)
    w = rand(rng, (40, 24, 3, 3))
    arrays = [pg.packed(w.reshape(40, -1)), pg.packed(w.reshape(40, -1), pg.LANES),
              winograd.weight_transform(w), winograd.weight_transform(w, packed=True),
              nchw16c.depthwise_weights(rand(rng, (40, 1, 3, 3))),
              nchw16c.padded_bias([w, w], 3, np.float32), workspace("col", (1000, 7), np.float32),
              aligned_empty((3, 1001), np.float64), aligned_zeros(17, np.float32)]
    for a in arrays:
        assert a.ctypes.data % 64 == 0 and a.flags.c_contiguous
    np.testing.assert_array_equal(arrays[1], pg.packed(w.reshape(40, -1), pg.LANES))
    assert not aligned_zeros((2, 3), np.float32).any()


@pytest.mark.parametrize("kernel", ["packed", "implicit", "nchw16c"])
@pytest.mark.parametrize("mode", ["relu", "clip", "add", "add+relu"])
def test_packed_conv_applies_bias_and_epilogue_as_it_stores(mode, kernel):
    """conv2d_packed, the implicit GEMM and the blocked kernel copied back to NCHW with a
    bias and a fused group's epilogue (a residual add, then relu or clip), whole 64-pixel
    blocks, a block of 16 and a tail (9x9 = 81 pixels; the implicit GEMM: rows of 9, a
    partial block each; nchw16c: 13 channels, a partial block), a partial panel of weight
    rows (13 = 2 x 6 + 1): equal to the conv, the bias and the epilogue computed one after
    the other, NaN in the side included."""
    from graphcnn.backends.cpu.kernels import implicit_gemm, nchw16c_nchw
    from graphcnn.backends.cpu.kernels import packed_gemm as pg
    from graphcnn.backends.cpu.kernels.nchw16c_conv import Epilogue
    from graphcnn.backends.cpu.kernels.vector_ir import ADD_SIDE, CLIP, RELU
    rng = np.random.default_rng(len(mode))
    attrs = dict(stride=(1, 1), padding=(1, 1, 1, 1), dilation=(1, 1), groups=1)
    x, w, bias = rand(rng, (2, 5, 9, 9)), rand(rng, (13, 5, 3, 3)), rand(rng, (13,))
    side = rand(rng, (2, 13, 9, 9))
    side[1, 12, 8, 8] = side[0, 0, 0, 0] = np.nan    # in the tail and in a whole block
    bits = {"relu": RELU, "clip": CLIP, "add": ADD_SIDE, "add+relu": ADD_SIDE | RELU}[mode]
    epilogue = Epilogue(side if bits & ADD_SIDE else None, bits, -0.5, 0.75)
    out = np.full((2, 13, 9, 9), np.nan, np.float32)
    conv = {"packed": pg.conv2d_packed, "implicit": implicit_gemm.conv2d_implicit_gemm,
            "nchw16c": nchw16c_nchw.conv2d_through_blocks}[kernel]
    conv(x, w, out, attrs, None, bias, epilogue)
    want = np.empty_like(out)
    conv(x, w, want, attrs)
    want = want + bias[:, None, None]
    if bits & ADD_SIDE:
        want = want + side
    if bits & CLIP:
        want = np.where(want < -0.5, np.float32(-0.5), np.where(want > 0.75, np.float32(0.75),
                                                                want))
    if bits & RELU:
        want = np.where(want <= 0, np.float32(0), want)
    np.testing.assert_array_equal(out, want)   # bit for bit, NaN where the side has one


def test_a_packed_conv_group_runs_as_one_kernel_equal_to_the_reference():
    """conv + bias + residual add + relu forced to the packed GEMM: one kernel, its
    epilogue applied as it stores, equal to the reference."""
    from graphcnn.backends.cpu.strategy import forced
    x = gc.Input((8, 10, 10), name="x")
    y = gc.relu(nn.Conv2d(8, 8, 3, padding=1)(x) + x)
    model = gc.Model(x, y)
    xs = rand(np.random.default_rng(1), (2, 8, 10, 10))
    with forced({"conv2d": "packed"}):
        exe = gc.compile(model, batch_size=2)
    whys = [why for _, op, name, why in exe.runner.implementations() if name == "packed"]
    assert whys and all("as it stores" in why for why in whys)
    want = gc.compile(model, batch_size=2, backend="reference", opt_level=0)(xs)
    np.testing.assert_allclose(exe(xs), want, rtol=1e-4, atol=1e-5)
