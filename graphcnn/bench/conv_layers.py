"""`graphcnn bench conv-layers`: ResNet-18's 3x3 convolutions (64@56, 128@28, 256@14,
512@7; C = O, stride 1, pad 1) at batch 1 and 16: forward, input gradient and weight
gradient of graphcnn's cpu implementations (each chosen once by the cpu strategy, then
called directly with preallocated buffers, as a runner's step calls it) against
PyTorch's (F.conv2d, torch.nn.grad.conv2d_input, torch.nn.grad.conv2d_weight; same thread
count), with GFLOP/s and the fraction of the SGEMM roof. Each kernel's result is compared
with torch's before timing; the two are timed in alternating blocks
(common.measure_interleaved).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from graphcnn.bench.common import gflops, measure_interleaved, threads

# (channels, spatial size) of ResNet-18's stride-1 3x3 layers
LAYERS: tuple[tuple[int, int], ...] = ((64, 56), (128, 28), (256, 14), (512, 7))
PASSES = ("forward", "input_grad", "weight_grad")
# the speed targets: time ratio to torch, and (forward) the fraction of the SGEMM roof
TARGET_RATIO = {"forward": 1.0, "input_grad": 1.2, "weight_grad": 1.2}
TARGET_ROOF = {"forward": 0.60}


def conv_nodes(batch: int, channels: int, size: int, kernel: int = 3, stride: int = 1,
               padding: int = 1) -> dict[str, Any]:
    """The three conv nodes of one layer, built in a graph so that their attributes are
    the canonical ones the cpu kernels get."""
    from graphcnn.ir.graph import Graph

    g = Graph("conv_layer")
    x = g.input("x", (batch, channels, size, size))
    w = g.param("w", (channels, channels, kernel, kernel))
    geometry: dict[str, Any] = dict(stride=stride, padding=padding)
    y = g.add("conv2d", [x, w], **geometry)
    dy = g.input("dy", y.shape)
    dx = g.add("conv2d_input_grad", [dy, w], input_hw=(size, size), **geometry)
    dw = g.add("conv2d_weight_grad", [dy, x], kernel_hw=(kernel, kernel), **geometry)
    return {"forward": y.node, "input_grad": dx.node, "weight_grad": dw.node}


def bench_layer(batch: int, channels: int, size: int, repeats: int, warmup: int,
                use_torch: bool, log: Callable[[str], Any]) -> list[dict[str, Any]]:
    from graphcnn.backends.cpu.strategy import implementation
    from graphcnn.bench.flops import node_flops

    rng = np.random.default_rng(channels * 1000 + batch)
    nodes = conv_nodes(batch, channels, size)
    y_shape = nodes["forward"].outputs[0].shape
    x = rng.standard_normal((batch, channels, size, size), dtype=np.float32)
    w = (rng.standard_normal((channels, channels, 3, 3), dtype=np.float32)
         / np.float32(np.sqrt(channels * 9)))
    dy = rng.standard_normal(y_shape, dtype=np.float32)
    args = {"forward": [x, w], "input_grad": [dy, w], "weight_grad": [dy, x]}
    torch_fns: dict[str, Callable[[], Any]] = {}
    if use_torch:
        import torch
        import torch.nn.grad  # conv2d_input and conv2d_weight (a submodule)
        F = torch.nn.functional
        xt, wt, dyt = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(dy)

        def no_grad(fn: Callable[[], Any]) -> Callable[[], Any]:
            def run() -> Any:
                with torch.inference_mode():
                    return fn()
            return run

        torch_fns = {
            "forward": no_grad(lambda: F.conv2d(xt, wt, padding=1)),
            "input_grad": no_grad(lambda: torch.nn.grad.conv2d_input(
                xt.shape, wt, dyt, padding=1)),
            "weight_grad": no_grad(lambda: torch.nn.grad.conv2d_weight(
                xt, wt.shape, dyt, padding=1)),
        }
    rows = []
    for pass_ in PASSES:
        node = nodes[pass_]
        chosen = implementation(node, {})  # as a runner would, once
        kernel = chosen.run
        ins, attrs = args[pass_], node.attrs
        out = np.empty(node.outputs[0].shape, np.float32)
        flops = node_flops(node)
        row: dict[str, Any] = {"layer": f"{channels}@{size}", "channels": channels,
                               "size": size, "batch": batch, "pass": pass_,
                               "algorithm": chosen.name, "flops": flops}
        kernel(ins, [out], attrs)  # compile / load now

        # the loop's values bound as defaults (it is timed in this iteration only)
        def run_kernel(kernel: Any = kernel, ins: list[np.ndarray] = ins,
                       out: np.ndarray = out, attrs: dict[str, Any] = attrs) -> Any:
            return kernel(ins, [out], attrs)

        fns: dict[str, Callable[[], Any]] = {"graphcnn": run_kernel}
        if pass_ in torch_fns:
            expected = torch_fns[pass_]().numpy()
            scale = float(np.max(np.abs(expected))) or 1.0
            row["check_relative_diff"] = float(np.max(np.abs(out - expected))) / scale
            fns["torch"] = torch_fns[pass_]
        timings = measure_interleaved(fns, repeats, warmup)
        timing = timings["graphcnn"]
        row["graphcnn"] = dict(timing, gflops=gflops(flops, timing["median_ms"]))
        if "torch" in timings:
            t = timings["torch"]
            row["torch"] = dict(t, gflops=gflops(flops, t["median_ms"]))
            row["ratio"] = timing["median_ms"] / t["median_ms"]
        log(f"  {row['layer']:>7s} b{batch:<3d} {pass_:11s} graphcnn {timing['median_ms']:9.3f} ms"
            + (f"  torch {row['torch']['median_ms']:9.3f} ms  ratio {row['ratio']:.2f}"
               f"  (diff {row['check_relative_diff']:.1e})" if "torch" in row else ""))
        rows.append(row)
    return rows


def bench_conv_layers(batch_sizes: list[int], repeats: int = 20, warmup: int = 2,
                      use_torch: bool = True, roof: float | None = None,
                      layers: tuple[tuple[int, int], ...] = LAYERS,
                      log: Callable[[str], Any] = print) -> dict[str, Any]:
    if use_torch:
        import torch
        torch.set_num_threads(threads())
    rows = []
    for batch in batch_sizes:
        for channels, size in layers:
            rows += bench_layer(batch, channels, size, repeats, warmup, use_torch, log)
    for row in rows:
        g = row["graphcnn"]["gflops"]
        row["roof_fraction"] = g / roof if roof and g else None
        targets = []
        if "ratio" in row:
            limit = TARGET_RATIO[row["pass"]]
            targets.append({"target": f"<= {limit:g}x torch", "value": row["ratio"],
                            "met": row["ratio"] <= limit})
        if row["pass"] in TARGET_ROOF and row["roof_fraction"] is not None:
            limit = TARGET_ROOF[row["pass"]]
            targets.append({"target": f">= {limit:.0%} roof",
                            "value": row["roof_fraction"], "met": row["roof_fraction"] >= limit})
        row["targets"] = targets
    return {"rows": rows, "threads": threads()}
