"""Per-kernel profile of a compiled cpu executable: each step of `exe.runner.steps` timed
in schedule order inside whole passes, over the buffers the runner allocated
(runner.buffers), the way CpuRunner.run calls them; and each step again when it runs a
second time at once ('warm'), which separates a kernel's own time from what the rest of the
network's memory traffic costs it (data evicted between calls).

    >>> import graphcnn as gc, numpy as np
    >>> exe = gc.compile(gc.models.lenet5(), batch_size=2)
    >>> rows = profile_kernels(exe, {"image": np.zeros((2, 1, 32, 32), np.float32)}, 3)
    >>> rows[0]["kernel"]                                                 # doctest: +SKIP
    'fused[conv2d + tanh]'
"""
from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from graphcnn.backends.cpu.blas import one_thread_pool
from graphcnn.bench.common import fmt, text_table
from graphcnn.bench.flops import node_flops


def step_nodes(exe: Any) -> list[Any]:
    """The graph nodes behind runner.steps, in order (the runner skips inputs, params,
    constants and the reshapes that are views)."""
    runner = exe.runner
    views = getattr(runner.plan, "views", {})
    nodes = [n for n in exe.graph.nodes
             if n.op not in ("input", "param", "constant") and n.id not in views]
    if len(nodes) != len(runner.steps):
        raise RuntimeError(f"{len(nodes)} nodes for {len(runner.steps)} runner steps")
    return nodes


def describe_node(node: Any) -> str:
    """A short shape summary: inputs -> output."""
    ins = ",".join("x".join(map(str, v.shape)) for v in node.inputs[:2])
    out = "x".join(map(str, node.outputs[0].shape))
    return f"{ins} -> {out}"


def profile_kernels(exe: Any, feeds: dict[str, np.ndarray], repeats: int = 5
                    ) -> list[dict[str, Any]]:
    """Each kernel's median time over `repeats` passes (each pass runs all steps in order,
    so every kernel sees the values, and the caches, it would in a real run), and over as
    many more passes its time when run a second time at once ('warm_ms': its data in cache;
    the difference is what the network's memory traffic costs it). One row per step, in
    schedule order: index, kernel label, algorithm (the implementation the runner chose
    for the step, '' where the op has one kernel), shapes, FLOPs, ms, warm_ms, GFLOP/s,
    share of the total."""
    from graphcnn.ops.fused import op_label

    exe.run(feeds)  # fills runner.buffers with this call's inputs and parameters
    runner = exe.runner
    nodes = step_nodes(exe)
    algorithms = [step.implementation if step.implementation != "default" else ""
                  for step in runner.steps]
    buffers = runner.buffers
    calls = [(step.kernel, [buffers[i] for i in step.inputs],
              [buffers[o] for o in step.outputs], step.attrs) for step in runner.steps]
    times: list[list[float]] = [[] for _ in calls]
    warm: list[list[float]] = [[] for _ in calls]
    with one_thread_pool():  # as in the runner
        for _ in range(max(1, repeats)):
            for k, (kernel, ins, outs, attrs) in enumerate(calls):
                start = time.perf_counter()
                kernel(ins, outs, attrs)
                times[k].append(time.perf_counter() - start)
        for _ in range(max(1, repeats)):  # apart, so the passes above are real calls' order
            for k, (kernel, ins, outs, attrs) in enumerate(calls):
                kernel(ins, outs, attrs)
                start = time.perf_counter()
                kernel(ins, outs, attrs)
                warm[k].append(time.perf_counter() - start)
    medians = [statistics.median(t) * 1e3 for t in times]
    warm_medians = [statistics.median(t) * 1e3 for t in warm]
    total = sum(medians) or 1.0
    rows = []
    for k, (node, ms, warm_ms) in enumerate(zip(nodes, medians, warm_medians)):
        flops = node_flops(node)
        rows.append({"step": k, "kernel": op_label(node), "algorithm": algorithms[k],
                     "shapes": describe_node(node), "flops": flops, "ms": ms,
                     "warm_ms": warm_ms,
                     "gflops": flops / (ms * 1e-3) / 1e9 if flops and ms else None,
                     "share": ms / total})
    return rows


def summarize_by_kernel(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows grouped by kernel label and algorithm: count, ms, warm ms, FLOPs, GFLOP/s,
    share."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        g = groups.setdefault((r["kernel"], r["algorithm"]),
                              {"kernel": r["kernel"], "algorithm": r["algorithm"], "count": 0,
                               "ms": 0.0, "warm_ms": 0.0, "flops": 0, "share": 0.0})
        g["count"] += 1
        g["ms"] += r["ms"]
        g["warm_ms"] += r["warm_ms"]
        g["flops"] += r["flops"]
        g["share"] += r["share"]
    out = sorted(groups.values(), key=lambda g: -g["ms"])
    for g in out:
        g["gflops"] = g["flops"] / (g["ms"] * 1e-3) / 1e9 if g["flops"] and g["ms"] else None
    return out


def profile_table(rows: list[dict[str, Any]], top: int = 10, roof: float | None = None,
                  markdown: bool = False) -> str:
    """The `top` slowest steps."""
    header = ["step", "kernel", "algorithm", "shapes", "ms", "warm ms", "share", "GFLOP/s"]
    if roof:
        header.append("% roof")
    body = []
    for r in sorted(rows, key=lambda r: -r["ms"])[:top]:
        line = [str(r["step"]), r["kernel"], r["algorithm"] or "-", r["shapes"],
                f"{r['ms']:.3f}", f"{r['warm_ms']:.3f}", f"{r['share']:.1%}",
                fmt(r["gflops"], ".1f")]
        if roof:
            line.append(fmt(r["gflops"] / roof * 100 if r["gflops"] else None, ".0f"))
        body.append(line)
    return text_table(header, body, markdown)


def summary_table(rows: list[dict[str, Any]], top: int = 8, roof: float | None = None,
                  markdown: bool = False) -> str:
    """Time per kernel kind (label + algorithm), slowest first."""
    header = ["kernel", "algorithm", "count", "ms", "warm ms", "share", "GFLOP/s"]
    if roof:
        header.append("% roof")
    body = []
    for g in summarize_by_kernel(rows)[:top]:
        line = [g["kernel"], g["algorithm"] or "-", str(g["count"]), f"{g['ms']:.3f}",
                f"{g['warm_ms']:.3f}", f"{g['share']:.1%}", fmt(g["gflops"], ".1f")]
        if roof:
            line.append(fmt(g["gflops"] / roof * 100 if g["gflops"] else None, ".0f"))
        body.append(line)
    return text_table(header, body, markdown)
