"""The LLVM IR the vector microkernels are built of (packed_gemm.py, implicit_gemm.py,
nchw16c*.py): <16 x float> values (one 512-bit register of float32), the loop of fused
multiply-adds a tile is, vector loads and stores at float offsets, and the epilogue a
tile applies to its sums before it stores them.

Numba cannot be made to keep a tile's sums in registers (its loops over local arrays
spill them to memory), so each microkernel is an `intrinsic` that emits this code itself.
"""
from __future__ import annotations

from typing import Any

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

LANES = 16   # float32 lanes of a vector: one 512-bit register
F32, I64, I32 = ir.FloatType(), ir.IntType(64), ir.IntType(32)
VEC = ir.VectorType(F32, LANES)


def i64(value: int) -> ir.Constant:
    return ir.Constant(I64, value)


def emit_fma_loop(builder: ir.IRBuilder, k_len: ir.Value, vector_at: Any, scalar_at: Any,
                   count: int, vectors: int = 1, each_step: Any = None) -> list[ir.Value]:
    """The loop the microkernels are: for kk < k_len (>= 1), for v < vectors, j < count,
    acc[v * count + j] = fma(vector_at(kk, v), broadcast(scalar_at(kk, j)), acc[...]), the
    accumulators being loop phis (vector registers); returns the final acc values.
    (vector_at takes (kk) alone when vectors == 1.) each_step(kk), if given, emits code at
    the top of each step (a prefetch)."""
    fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(VEC, [VEC] * 3),
                                         "llvm.fma.v16f32")
    zero = ir.Constant(VEC, [ir.Constant(F32, 0.0)] * LANES)
    undef = ir.Constant(VEC, ir.Undefined)
    broadcast = ir.Constant(ir.VectorType(I32, LANES), [ir.Constant(I32, 0)] * LANES)
    before = builder.block
    loop = builder.append_basic_block("tile.loop")
    done = builder.append_basic_block("tile.done")
    builder.branch(loop)
    builder.position_at_end(loop)
    kk = builder.phi(I64)
    accs = [builder.phi(VEC) for _ in range(count * vectors)]
    kk.add_incoming(i64(0), before)
    for acc in accs:
        acc.add_incoming(zero, before)
    if each_step is not None:
        each_step(kk)
    rows = [vector_at(kk)] if vectors == 1 else [vector_at(kk, v) for v in range(vectors)]
    sums: list[ir.Value] = [zero] * (count * vectors)
    for j in range(count):
        one = builder.insert_element(undef, scalar_at(kk, j), ir.Constant(I32, 0))
        splat = builder.shuffle_vector(one, undef, broadcast)
        for v, vector in enumerate(rows):
            at = v * count + j
            sums[at] = builder.call(fma, [vector, splat, accs[at]])
    step = builder.add(kk, i64(1))
    end = builder.block
    kk.add_incoming(step, end)
    for acc, value in zip(accs, sums):
        acc.add_incoming(value, end)
    builder.cbranch(builder.icmp_signed("<", step, k_len), loop, done)
    builder.position_at_end(done)
    return sums


def load_vector(builder: ir.IRBuilder, base: ir.Value, at: ir.Value) -> ir.Value:
    return builder.load(builder.bitcast(builder.gep(base, [at]), VEC.as_pointer()), align=4)


def store_vector(builder: ir.IRBuilder, value: ir.Value, base: ir.Value, at: ir.Value) -> None:
    builder.store(value, builder.bitcast(builder.gep(base, [at]), VEC.as_pointer()), align=4)


def splat(builder: ir.IRBuilder, scalar: ir.Value) -> ir.Value:
    """A vector of 16 copies of a float32 scalar."""
    undef = ir.Constant(VEC, ir.Undefined)
    one = builder.insert_element(undef, scalar, ir.Constant(I32, 0))
    return builder.shuffle_vector(one, undef, ir.Constant(ir.VectorType(I32, LANES),
                                                          [ir.Constant(I32, 0)] * LANES))


# The epilogue the kernels apply before they store (so a fused group needs no second pass
# over its output): bits of `mode`; the formulas are the registry's, in the same order
# (graphcnn/ops/elementwise.py), so the results equal the generated epilogue's bit for bit.
# ADD_BIAS (this file's tiles): a per-row (output channel) bias, added first, as the
# generated epilogue adds a GEMM's bias before its chain.
ADD_SIDE, CLIP, RELU, ADD_BIAS = 1, 2, 4, 8


def emit_epilogue(builder: ir.IRBuilder, value: ir.Value, side: ir.Value, at: ir.Value,
                  mode: ir.Value, low: ir.Value, high: ir.Value, reads_side: bool = True
                  ) -> ir.Value:
    """value (+ side[at..at+16] if ADD_SIDE), then clip(low, high) if CLIP or relu if RELU.
    `side` must point at readable memory even without ADD_SIDE (it is read, not used);
    with reads_side False it is not read, and ADD_SIDE must be off (emit_by_side)."""
    vec = value.type

    def flag(bit: int) -> ir.Value:
        return builder.icmp_signed("!=", builder.and_(mode, i64(bit)), i64(0))

    if reads_side:
        value = builder.select(flag(ADD_SIDE),
                               builder.fadd(value, load_vector(builder, side, at)), value)
    lo, hi = splat(builder, low), splat(builder, high)
    # clip: low if x < low else (high if x > high else x)
    clipped = builder.select(builder.fcmp_ordered("<", value, lo), lo, builder.select(
        builder.fcmp_ordered(">", value, hi), hi, value))
    value = builder.select(flag(CLIP), clipped, value)
    # relu: 0 if x <= 0 else x (NaN stays NaN)
    zero = ir.Constant(vec, [ir.Constant(F32, 0.0)] * LANES)
    rectified = builder.select(builder.fcmp_ordered("<=", value, zero), zero, value)
    return builder.select(flag(RELU), rectified, value)


def emit_by_side(builder: ir.IRBuilder, mode: ir.Value, emit: Any) -> None:
    """emit(reads_side) in two branches, on whether `mode` adds a side: a tile's stores
    without a side then do not read the output's lines first (a store whose value waits on
    a read of a line not in the cache is held back until the line comes, where a plain
    store waits in the store buffer and the tile goes on)."""
    has_side = builder.icmp_signed("!=", builder.and_(mode, i64(ADD_SIDE)), i64(0))
    with builder.if_else(has_side) as (with_side, without):
        with with_side:
            emit(True)
        with without:
            emit(False)


def emit_tile_stores(builder: ir.IRBuilder, sums: list[ir.Value], count: int, vectors: int,
                     rows: ir.Value, at_of: Any, bias: ir.Value, side: ir.Value, c: ir.Value,
                     mode: ir.Value, low: ir.Value, high: ir.Value) -> None:
    """A tile's stores (packed_tiles' pixel tile, implicit_gemm's): sums[v * count + r] for
    r < rows (of the tile's `count`) and v < vectors, plus bias[r] where mode has ADD_BIAS,
    through the epilogue, to c[at_of(r, v)] (side read at the same offsets, where mode
    adds it)."""
    with_bias = builder.icmp_signed("!=", builder.and_(mode, i64(ADD_BIAS)), i64(0))

    def stores(reads_side: bool) -> None:
        for r in range(count):
            with builder.if_then(builder.icmp_signed("<", i64(r), rows)):
                row_bias = splat(builder, builder.load(builder.gep(bias, [i64(r)]), align=4))
                for v in range(vectors):
                    at, value = at_of(r, v), sums[v * count + r]
                    value = builder.select(with_bias, builder.fadd(value, row_bias), value)
                    store_vector(builder, emit_epilogue(builder, value, side, at, mode, low,
                                                        high, reads_side), c, at)
    emit_by_side(builder, mode, stores)


def emit_prefetch(builder: ir.IRBuilder, base: ir.Value, at: ir.Value, write: bool) -> None:
    """A hint that the line holding base[at] is about to be read (or written): fetched into
    the cache now, so the access that follows does not wait for it."""
    i8p = ir.IntType(8).as_pointer()
    prefetch = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(ir.VoidType(), [i8p, I32, I32, I32]), "llvm.prefetch.p0i8")
    builder.call(prefetch, [builder.bitcast(builder.gep(base, [at]), i8p),
                            ir.Constant(I32, int(write)), ir.Constant(I32, 3), ir.Constant(I32, 1)])


@intrinsic
def prefetch_rows(typingctx: Any, addr: Any, step: Any, count: Any) -> Any:
    """Ask for the lines at float offsets 0, step, ..., (count - 1) * step from addr to be
    fetched for writing: the rows a tile is about to store to (a tile whose rows lie far
    apart waits on each line's read before its store, see packed_tiles.PREFETCH_AHEAD)."""
    def codegen(context: Any, builder: ir.IRBuilder, signature: Any, args: Any) -> Any:
        base_int, stride, rows = args
        base = builder.inttoptr(base_int, F32.as_pointer())
        with cgutils.for_range(builder, rows) as loop:
            emit_prefetch(builder, base, builder.mul(loop.index, stride), write=True)
        return context.get_dummy_value()
    return types.void(types.uintp, types.int64, types.int64), codegen
