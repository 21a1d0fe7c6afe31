"""Micro-timing of the cpu max_pool2d kernel against ONNX Runtime's MaxPool (a one-node
model, io-binding, no spinning) and an older kernel, on GoogLeNet's and ResNet's pooling
shapes, in alternating rounds (median of 7 rounds of medians). The older kernel is a copy
of a previous pool.py with its @cpu_kernel lines removed, as a module `oldpool` in /tmp/mp:

    git show 7ec21a8:graphcnn/backends/cpu/kernels/pool.py | sed 's/^@cpu_kernel.*$//' \
        > /tmp/mp/oldpool.py
    PYTHONPATH=. python benchmarks/max_pool.py BATCHES [NAME_FILTER] [THREADS]

e.g. `... max_pool.py 1,16 "" 2`. Results are asserted equal (old, new, ORT) first."""
import sys, time, statistics, importlib.util
sys.path.insert(0, "/tmp/mp")
import numpy as np
import onnx, onnxruntime as ort
from onnx import helper, TensorProto
from graphcnn.ops.pool import pool_out_hw
from graphcnn.backends.cpu.kernels import pool_max as newpool
import oldpool

CASES = [  # (shape, k, s, p, ceil)
    ((1,192,28,28),3,1,1,True), ((1,256,28,28),3,1,1,True), ((1,480,14,14),3,1,1,True),
    ((1,512,14,14),3,1,1,True), ((1,528,14,14),3,1,1,True), ((1,832,14,14),3,1,1,True),
    ((1,832,7,7),3,1,1,True),
    ((1,64,112,112),3,2,0,True), ((1,192,56,56),3,2,0,True), ((1,480,28,28),3,2,0,True),
    ((1,832,14,14),3,2,0,True), ((1,832,14,14),2,2,0,True), ((1,64,112,112),3,2,1,False),
]
batches = [int(b) for b in (sys.argv[1] if len(sys.argv) > 1 else "1").split(",")]
only = sys.argv[2] if len(sys.argv) > 2 else ""
TH = int(sys.argv[3]) if len(sys.argv) > 3 else 2
import numba; numba.set_num_threads(TH)

def ort_sess(shape, k, s, p, ceil):
    node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[k,k], strides=[s,s],
                            pads=[p]*4, ceil_mode=int(ceil))
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    so = ort.SessionOptions(); so.intra_op_num_threads = TH; so.inter_op_num_threads = 1; so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])

def timeit(fn, n):
    t = []
    for _ in range(n):
        a = time.perf_counter(); fn(); t.append(time.perf_counter() - a)
    return statistics.median(t)

for b in batches:
    for shape, k, s, p, ceil in CASES:
        shape = (b,) + shape[1:]
        name = f"{shape} {k}x{k}/s{s}/p{p}{' ceil' if ceil else ''}"
        if only and only not in name: continue
        attrs = dict(kernel_size=(k,k), stride=(s,s), padding=(p,p), dilation=(1,1), ceil_mode=ceil)
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        oh, ow = pool_out_hw(shape[2:], attrs)
        yo = np.empty(shape[:2] + (oh, ow), np.float32); yn = np.empty_like(yo)
        fo = lambda: oldpool.max_pool2d_kernel([x], [yo], attrs)
        fn = lambda: newpool.max_pool2d_kernel([x], [yn], attrs)
        sess = ort_sess(shape, k, s, p, ceil)
        io = sess.io_binding(); xo = ort.OrtValue.ortvalue_from_numpy(x)
        yr = np.empty_like(yo); yv = ort.OrtValue.ortvalue_from_numpy(yr)
        io.bind_ortvalue_input("x", xo); io.bind_ortvalue_output("y", yv)
        fr = lambda: sess.run_with_iobinding(io)
        for f in (fo, fn, fr, fo, fn, fr): f()
        assert np.array_equal(yo, yn) and np.array_equal(yo, yr), name
        n = max(5, min(200, int(2e7 / x.size)))
        res = {"old": [], "new": [], "ort": []}
        for r in range(7):
            for key, f in (("old", fo), ("new", fn), ("ort", fr)):
                res[key].append(timeit(f, n))
        m = {k2: 1e6 * statistics.median(v) for k2, v in res.items()}
        print(f"{name:42s} old {m['old']:8.1f} us  new {m['new']:8.1f} us  ort {m['ort']:8.1f} us  new/ort {m['new']/m['ort']:.2f}", flush=True)
