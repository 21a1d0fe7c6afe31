"""ResNet-50's distinct convolutions, one at a time, graphcnn's cpu backend against ONNX
Runtime on the same one-layer model: the conv with its bias, and the epilogue ResNet-50
fuses into it (relu, or the residual add and relu), or none (the downsample branch).

    python benchmarks/conv_layers_vs_ort.py [--batch 1,16] [--repeats 40] [--rounds 10]
                                            [--only 1x1] [--candidates] [--scaling]
                                            [--threads 2]

graphcnn: gc.compile of a Model with one Conv2d (frozen weights: the cpu strategy
prepacks them once, as in a whole network), its runner's kernels called on its buffers
(as `graphcnn bench --profile` times them; a one-layer model runs one fused kernel). ONNX Runtime: a
Conv (+ Add + Relu) model from onnx.helper, intra_op_num_threads = --threads, sequential
execution, all graph optimizations. Both are checked against each other (relative max
difference) and timed in alternating blocks (graphcnn.bench.common.measure_interleaved):
medians and the ratio graphcnn / ORT (below 1: graphcnn is faster). --candidates also
times every cpu conv algorithm that applies to the layer (strategy.forced), against the
same ORT run, to show where the cost model or the autotuner picks the wrong one;
--scaling times the chosen kernels on one thread too, against a one-thread ORT session, to
separate a kernel's speed from how it shares the work between the threads.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from typing import Any, Callable

import numpy as np

# this checkout's graphcnn, not an installed one
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# (in channels, out channels, kernel, stride, input size, epilogue) of each distinct conv
# of torchvision's ResNet-50 (the stride on the 3x3, v1.5), in network order; the
# epilogue is what the network fuses into it: "relu", "add+relu" (the block's expand
# conv, then the residual), "" (the downsample branch).
LAYERS: tuple[tuple[int, int, int, int, int, str], ...] = (
    (3, 64, 7, 2, 224, "relu"),
    (64, 64, 1, 1, 56, "relu"),
    (64, 64, 3, 1, 56, "relu"),
    (64, 256, 1, 1, 56, ""),
    (64, 256, 1, 1, 56, "add+relu"),
    (256, 64, 1, 1, 56, "relu"),
    (256, 128, 1, 1, 56, "relu"),
    (128, 128, 3, 2, 56, "relu"),
    (256, 512, 1, 2, 56, ""),
    (128, 512, 1, 1, 28, "add+relu"),
    (512, 128, 1, 1, 28, "relu"),
    (128, 128, 3, 1, 28, "relu"),
    (512, 256, 1, 1, 28, "relu"),
    (256, 256, 3, 2, 28, "relu"),
    (512, 1024, 1, 2, 28, ""),
    (256, 1024, 1, 1, 14, "add+relu"),
    (1024, 256, 1, 1, 14, "relu"),
    (256, 256, 3, 1, 14, "relu"),
    (1024, 512, 1, 1, 14, "relu"),
    (512, 512, 3, 2, 14, "relu"),
    (1024, 2048, 1, 2, 14, ""),
    (512, 2048, 1, 1, 7, "add+relu"),
    (2048, 512, 1, 1, 7, "relu"),
    (512, 512, 3, 1, 7, "relu"),
)
# how many times each appears in ResNet-50 (for the weighted total)
COUNTS = (1, 1, 3, 1, 3, 2, 1, 1, 1, 4, 3, 3, 1, 1, 1, 6, 5, 5, 1, 1, 1, 3, 2, 2)
ALGORITHMS = ("gemm", "winograd", "winograd-packed", "packed", "packed-channels", "implicit")


def out_size(size: int, kernel: int, stride: int) -> int:
    return (size + 2 * (kernel // 2) - kernel) // stride + 1


def graphcnn_layer(layer: tuple[int, int, int, int, int, str], batch: int,
                   w: np.ndarray, b: np.ndarray, forced: str | None
                   ) -> tuple[Callable[..., Any], str]:
    """(the compiled one-layer executable, the conv's algorithm)."""
    import graphcnn as gc
    from graphcnn import nn
    from graphcnn.backends.cpu import strategy

    c, o, k, s, size, epilogue = layer
    x = gc.Input((c, size, size), name="x")
    conv = nn.Conv2d(c, o, k, stride=s, padding=k // 2)
    h = conv(x)
    inputs = [x]
    if epilogue == "relu":
        h = gc.relu(h)
    elif epilogue == "add+relu":
        r = gc.Input((o, out_size(size, k, s), out_size(size, k, s)), name="r")
        inputs.append(r)
        h = gc.relu(h + r)
    model = gc.Model(inputs=inputs, outputs=h, name="layer")
    params = model.parameters()
    names = list(params)
    model.load_parameters({names[0]: w, names[1]: b})
    if forced is None:
        exe = gc.compile(model, batch_size=batch, backend="cpu")
    else:
        with strategy.forced({"conv2d": forced}):
            exe = gc.compile(model, batch_size=batch, backend="cpu")
    algorithm = next((st.implementation for st in exe.runner.steps
                      if st.implementation not in ("default", "generated")), "?")
    return exe, algorithm


def kernels_of(exe: Any, args: list[np.ndarray]) -> Callable[[], Any]:
    """The runner's steps called directly on its buffers (as bench --profile times them):
    the layer's kernels without the executable's per-call work (binding the feeds)."""
    exe(*args)  # fills the runner's buffers with the inputs and the parameters
    runner = exe.runner
    calls = [(step.kernel, [runner.buffers[i] for i in step.inputs],
              [runner.buffers[o] for o in step.outputs], step.attrs) for step in runner.steps]

    def run() -> None:
        for kernel, ins, outs, attrs in calls:
            kernel(ins, outs, attrs)
    return run


def ort_layer(layer: tuple[int, int, int, int, int, str], batch: int, w: np.ndarray,
              b: np.ndarray, threads: int, workdir: str) -> Any:
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    c, o, k, s, size, epilogue = layer
    osz = out_size(size, k, s)
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, c, size, size])]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[k, k],
                              strides=[s, s], pads=[k // 2] * 4)]
    out = "y"
    if epilogue == "relu":
        nodes.append(helper.make_node("Relu", ["y"], ["z"]))
        out = "z"
    elif epilogue == "add+relu":
        inputs.append(helper.make_tensor_value_info("r", TensorProto.FLOAT,
                                                    [batch, o, osz, osz]))
        nodes += [helper.make_node("Add", ["y", "r"], ["s"]),
                  helper.make_node("Relu", ["s"], ["z"])]
        out = "z"
    graph = helper.make_graph(
        nodes, "layer", inputs,
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, [batch, o, osz, osz])],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    path = os.path.join(workdir, "layer.onnx")
    onnx.save(model, path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def applicable(layer: tuple[int, int, int, int, int, str]) -> list[str]:
    c, o, k, s, size, _ = layer
    names = ["gemm", "packed", "packed-channels"]
    if k > 1:
        names.append("implicit")
    if k == 3 and s == 1:
        names += ["winograd", "winograd-packed"]
    return names


def one_thread(run: Callable[[], Any]) -> Callable[[], Any]:
    """`run` with Numba's thread count at 1 for the call (the kernels chosen for more)."""
    import numba

    def alone() -> None:
        before = numba.get_num_threads()
        numba.set_num_threads(1)
        try:
            run()
        finally:
            numba.set_num_threads(before)
    return alone


def bench(layer: tuple[int, int, int, int, int, str], batch: int, threads: int,
          repeats: int, rounds: int, candidates: bool, workdir: str, scaling: bool = False
          ) -> list[dict[str, Any]]:
    from graphcnn.backends.cpu.blas import one_thread_pool
    from graphcnn.bench.common import measure_interleaved

    c, o, k, s, size, epilogue = layer
    rng = np.random.default_rng(c * 7 + o + k + s)
    w = (rng.standard_normal((o, c, k, k), dtype=np.float32) / np.sqrt(c * k * k)
         ).astype(np.float32)
    b = rng.standard_normal(o, dtype=np.float32)
    x = rng.standard_normal((batch, c, size, size), dtype=np.float32)
    osz = out_size(size, k, s)
    feeds = {"x": x}
    if epilogue == "add+relu":
        feeds["r"] = rng.standard_normal((batch, o, osz, osz), dtype=np.float32)
    session = ort_layer(layer, batch, w, b, threads, workdir)
    expected = session.run(None, feeds)[0]
    fns: dict[str, Callable[[], Any]] = {"ort": lambda: session.run(None, feeds)}
    algorithms: dict[str, str] = {}
    diffs: dict[str, float] = {}
    variants: list[str | None] = [None] + (applicable(layer) if candidates else [])
    for forced in variants:
        exe, algorithm = graphcnn_layer(layer, batch, w, b, forced)
        key = "chosen" if forced is None else forced
        if forced is not None and algorithm != forced:
            continue
        args = [feeds[n] for n in ("x", "r") if n in feeds]
        got = exe(*args)
        diffs[key] = float(np.max(np.abs(got - expected)) / (np.max(np.abs(expected)) or 1))
        algorithms[key] = algorithm
        fns[key] = kernels_of(exe, args)
    if scaling and threads > 1:  # the same kernels and session options on one thread
        alone = ort_layer(layer, batch, w, b, 1, workdir)
        fns["ort@1"] = lambda: alone.run(None, feeds)
        fns["chosen@1"] = one_thread(fns["chosen"])
        algorithms["chosen@1"], diffs["chosen@1"] = algorithms["chosen"], diffs["chosen"]
    with one_thread_pool():  # as the runner runs its kernels
        timings = measure_interleaved(fns, repeats, warmup=2, rounds=rounds, gap_s=0.05)
    ort_ms = timings["ort"]["median_ms"]
    shape = f"{c}->{o} {k}x{k}/{s} @{size}" + (f" +{epilogue}" if epilogue else "")
    rows = []
    for key in algorithms:
        ms = timings[key]["median_ms"]
        peer = timings["ort@1"]["median_ms"] if key.endswith("@1") else ort_ms
        rows.append({"layer": shape, "batch": batch, "variant": key,
                     "algorithm": algorithms[key], "graphcnn_ms": ms, "ort_ms": peer,
                     "ratio": ms / peer, "diff": diffs[key]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", default="1")
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=10,
                        help="alternating blocks per contender (the machine may be shared)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", default="", help="substring of the layer label to keep, "
                        "e.g. '1x1' or '@7'")
    parser.add_argument("--candidates", action="store_true",
                        help="also time every algorithm that applies")
    parser.add_argument("--scaling", action="store_true",
                        help="also time the chosen kernels and ORT on one thread "
                             "(variant chosen@1, against ORT on one thread)")
    args = parser.parse_args()
    import graphcnn as gc
    gc.set_num_threads(args.threads)
    print(f"{'layer':32s} {'b':>3s} {'variant':16s} {'algorithm':16s} {'graphcnn ms':>11s} "
          f"{'ORT ms':>8s} {'ratio':>6s} {'diff':>8s}")
    total = {"graphcnn": 0.0, "ort": 0.0}
    with tempfile.TemporaryDirectory() as workdir:
        for batch in (int(v) for v in args.batch.split(",")):
            for layer, count in zip(LAYERS, COUNTS):
                c, o, k, s, size, epilogue = layer
                label = f"{c}->{o} {k}x{k}/{s} @{size}" + (f" +{epilogue}" if epilogue else "")
                if args.only and args.only not in label:
                    continue
                for row in bench(layer, batch, args.threads, args.repeats, args.rounds,
                                 args.candidates, workdir, args.scaling):
                    print(f"{row['layer']:32s} {batch:3d} {row['variant']:16s} "
                          f"{row['algorithm']:16s} {row['graphcnn_ms']:11.3f} "
                          f"{row['ort_ms']:8.3f} {row['ratio']:6.2f} {row['diff']:8.1e}")
                    if row["variant"] == "chosen":
                        total["graphcnn"] += count * row["graphcnn_ms"]
                        total["ort"] += count * row["ort_ms"]
                sys.stdout.flush()
    if total["ort"]:
        print(f"ResNet-50's convs weighted by their counts: graphcnn {total['graphcnn']:.1f} ms,"
              f" ORT {total['ort']:.1f} ms, ratio {total['graphcnn'] / total['ort']:.2f}")


if __name__ == "__main__":
    main()
