"""`graphcnn bench MODEL`: a zoo model's inference (gc.compile) or training step
(gc.value_and_grad + a gc.optim.SGD update) against peers measured in the same run.

Peers (each optional: skipped with a note when it is not installed or cannot run the
workload):

MODEL is a zoo name, or an ONNX file (its own weights; ONNX Runtime runs the file as given,
and there is no PyTorch peer).

* ``torch``: the same architecture in PyTorch eager (graphcnn/bench/torch_models.py) with
  graphcnn's weights loaded by name, the same thread count; inference under
  torch.inference_mode(), training as forward + cross-entropy + backward + torch.optim.SGD
  step;
* ``onnxruntime``: the model exported with gc.onnx.save, run by an InferenceSession with
  all graph optimizations and the same intra-op thread count (inference only);
* ``numpy``: graphcnn's reference backend (NumPy), only for small workloads (at most
  NUMPY_MAX_GFLOP of work per run).

Every peer's first result is compared with graphcnn's (logits; loss and gradients in
training) before anything is timed. Times are medians over `repeats` calls after `warmup`
calls. By default every system is timed in this process, in rounds of blocks (graphcnn,
then each peer; common.measure_interleaved): each block is one system's alone, after a
pause in which the others' spinning threads go to sleep, and a change in the machine's
speed during the run hits every contender alike. With `processes` N, each system is
timed in N fresh processes of its own instead (graphcnn/bench/isolate.py): the median of
their medians, and their spread. FLOPs are counted on the graph graphcnn runs (graphcnn/bench/flops.py).
"""
from __future__ import annotations

import os
import tempfile
from typing import Any, Callable

import numpy as np

from graphcnn.bench.common import gflops, measure, measure_interleaved, threads
from graphcnn.bench.cross_core import (
    cpu_ticks,
    cross_core_cost,
    phases_text,
    steal_share,
    steals_text,
)
from graphcnn.bench.flops import flops_by_op, graph_flops
from graphcnn.bench.gradient_check import float64_gradients, gradient_check, gradient_text

PEERS = ("numpy", "torch", "onnxruntime")
NUMPY_MAX_GFLOP = 1.0
SGD_OPTIONS: dict[str, Any] = {"lr": 0.01, "momentum": 0.9}


class Skip(Exception):
    """A peer that does not run here; the message says why."""


def import_optional(name: str) -> Any:
    """Import an optional peer package, or raise Skip saying it is not installed."""
    try:
        return __import__(name)
    except ImportError as exc:
        raise Skip(f"{name} is not installed ({exc})") from None


# ---- the workload -------------------------------------------------------------------------

def is_onnx_file(name: str) -> bool:
    return name.lower().endswith(".onnx")


def make_model(name: str, model_kwargs: dict[str, Any], seed: int = 0) -> Any:
    """The zoo model with seeded weights and non-trivial batch-norm statistics, or an ONNX
    file's model with its own weights."""
    import graphcnn as gc

    if is_onnx_file(name):
        return gc.onnx.load(name)
    gc.manual_seed(seed)
    model = gc.models.get_model(name, **model_kwargs)
    rng = np.random.default_rng(seed)
    for key, value in sorted(model.parameters().items()):
        if key.endswith("running_var"):
            value[...] = rng.uniform(0.5, 2.0, value.shape)
        elif key.endswith("running_mean"):
            value[...] = rng.normal(0, 0.1, value.shape)
    return model


def make_data(model: Any, batch: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed + batch)
    shape = (batch,) + tuple(model.inputs[0].type.shape[1:])
    classes = int(model.outputs[0].type.shape[-1])
    x = rng.standard_normal(shape, dtype=np.float32)
    return x, rng.integers(0, classes, batch).astype(np.int64)


class System:
    """One contender: `run()` is the timed call; `check` its first result."""

    def __init__(self, run: Callable[[], Any], check: Any) -> None:
        self.run = run
        self.check = check


def graphcnn_system(model: Any, x: np.ndarray, y: np.ndarray, training: bool,
                    opt_level: int, backend: str = "cpu", max_batch: int | None = None
                    ) -> tuple[System, Any]:
    """(the system, its executable). `max_batch`: inference on one executable for any
    batch up to it (gc.compile(batch_size=None)), called at x's batch."""
    import graphcnn as gc

    if training:
        step = gc.value_and_grad(model, batch_size=len(x), opt_level=opt_level, backend=backend)
        loss, grads = step(x, y)
        opt = gc.optim.SGD(**SGD_OPTIONS)
        params = model.trainable_parameters()

        def run() -> None:
            opt.step(params, step(x, y)[1])

        return System(run, (loss, {k: np.array(v) for k, v in grads.items()})), step.executable
    if max_batch is not None:
        exe = gc.compile(model, batch_size=None, max_batch=max_batch, opt_level=opt_level,
                         backend=backend)
    else:
        exe = gc.compile(model, batch_size=len(x), opt_level=opt_level, backend=backend)
    return System(lambda: exe(x), np.array(exe(x))), exe


def torch_system(name: str, model_kwargs: dict[str, Any], model: Any, x: np.ndarray,
                 y: np.ndarray, training: bool, n_threads: int) -> System:
    if is_onnx_file(name):
        raise Skip("an ONNX file: no PyTorch model of it to compare with")
    torch = import_optional("torch")
    try:
        from graphcnn.bench.torch_models import build, load_graphcnn_weights
        net = load_graphcnn_weights(build(name, **model_kwargs), model)
    except KeyError as exc:
        raise Skip(str(exc).strip("'\"")) from None
    torch.set_num_threads(n_threads)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    if not training:
        net.eval()
        with torch.inference_mode():
            check = net(xt).numpy().copy()

        def run() -> None:
            with torch.inference_mode():
                net(xt)

        return System(run, check)
    net.train()
    F = torch.nn.functional
    net.zero_grad(set_to_none=True)
    loss = F.cross_entropy(net(xt), yt)
    loss.backward()
    grads = {}
    for k, p in net.named_parameters():
        assert p.grad is not None, "every parameter takes part in the loss"
        grads[k] = p.grad.numpy().copy()
    check = (float(loss.item()), grads)
    opt = torch.optim.SGD(net.parameters(), **SGD_OPTIONS)

    def train_step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(xt), yt).backward()
        opt.step()

    return System(train_step, check)


def onnxruntime_system(model: Any, x: np.ndarray, training: bool, n_threads: int,
                       workdir: str, source: str = "") -> System:
    """ONNX Runtime on `source` where it is an ONNX file (as given), else on the model as
    gc.onnx.save exports it."""
    if training:
        raise Skip("inference only (no training step)")
    ort = import_optional("onnxruntime")
    import_optional("onnx")
    try:
        from graphcnn import onnx as gc_onnx
    except ImportError as exc:
        raise Skip(f"graphcnn.onnx is not available ({exc})") from None
    path = source if is_onnx_file(source) else \
        os.path.join(workdir, f"{model.name}_b{len(x)}.onnx")
    try:
        if path != source:
            gc_onnx.save(model, path, batch_size=len(x))
    except Exception as exc:  # an op the exporter does not cover yet
        raise Skip(f"gc.onnx.save failed: {type(exc).__name__}: {exc}") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = n_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    feeds = {input_name: x}
    check = np.array(session.run(None, feeds)[0])
    return System(lambda: session.run(None, feeds), check)


def numpy_system(model: Any, x: np.ndarray, y: np.ndarray, training: bool, flops: int,
                 opt_level: int) -> System:
    if flops > NUMPY_MAX_GFLOP * 1e9:
        raise Skip(f"the reference backend is run only up to {NUMPY_MAX_GFLOP:g} GFLOP per "
                   f"call; this one is {flops / 1e9:.1f}")
    system, _ = graphcnn_system(model, x, y, training, opt_level, backend="reference")
    return system


# ---- checks -------------------------------------------------------------------------------

def compare(reference: Any, other: Any, training: bool) -> dict[str, Any]:
    """How far `other`'s first result is from graphcnn's (`reference`)."""
    if not training:
        ref, out = np.asarray(reference, np.float64), np.asarray(other, np.float64)
        diff = float(np.max(np.abs(ref - out)))
        scale = float(np.max(np.abs(ref))) or 1.0
        return {"max_abs_diff": diff, "max_abs_output": scale, "relative": diff / scale}
    (loss_a, grads_a), (loss_b, grads_b) = reference, other
    # Each gradient's difference relative to its own largest entry, floored at 1e-3 of the
    # largest entry of all: the biases of a batch norm that feeds another batch norm through
    # a linear layer have an exact gradient of 0, and both sides return rounding noise there.
    floor = 1e-3 * max((float(np.max(np.abs(g))) for g in grads_a.values() if g.size),
                       default=1.0)
    worst, worst_name = 0.0, ""
    for key, g in grads_a.items():
        if key not in grads_b:
            continue
        scale = max(float(np.max(np.abs(g))), floor) or 1.0
        rel = float(np.max(np.abs(np.asarray(g, np.float64) - grads_b[key]))) / scale
        if rel > worst:
            worst, worst_name = rel, key
    return {"loss": loss_a, "peer_loss": loss_b, "loss_diff": abs(loss_a - loss_b),
            "grad_max_relative_diff": worst, "grad_worst": worst_name,
            "grads_compared": len(set(grads_a) & set(grads_b))}


def check_text(check: dict[str, Any]) -> str:
    if "relative" in check:
        return (f"max |diff| {check['max_abs_diff']:.1e} "
                f"(outputs up to {check['max_abs_output']:.2f})")
    return (f"loss diff {check['loss_diff']:.1e}; gradients: both float32, see the float64 "
            f"check ({check['grads_compared']} compared)")


def float64_check(name: str, model_kwargs: dict[str, Any], model: Any, x: np.ndarray,
                  y: np.ndarray, mine: System, torch_peer: System | None) -> dict[str, Any]:
    """graphcnn's gradients (and PyTorch float32's) per tensor against a float64 run."""
    source, exact = float64_gradients(name, model_kwargs, model, x, y)
    peer = torch_peer.check[1] if torch_peer is not None else None
    return gradient_check(mine.check[1], exact, source, peer)


# ---- the benchmark ------------------------------------------------------------------------

def graph_at(exe: Any, batch: int) -> Any:
    """The graph `exe` runs at `batch`: a dynamic-batch executable's is built at its
    maximum, and its FLOPs at `batch` are those of the graph replayed there."""
    if exe.max_batch is None or batch == exe.max_batch:
        return exe.graph
    from graphcnn.runtime.dynamic_batch import rebatch
    return rebatch(exe.graph, batch)


def bench_workload(name: str, batch: int, training: bool, against: list[str], repeats: int,
                   opt_level: int = 2, model_kwargs: dict[str, Any] | None = None,
                   warmup: int = 2, profile_repeats: int = 0,
                   log: Callable[[str], Any] = print, processes: int = 0,
                   max_batch: int | None = None) -> dict[str, Any]:
    """One (model, batch, mode): graphcnn and each peer, timed; the cross-checks; FLOPs.
    `processes` 0: every system timed in this process, in blocks (measure_interleaved);
    N >= 1: each in N fresh processes of its own (graphcnn/bench/isolate.py). `max_batch`:
    graphcnn's inference runs on one executable for any batch up to it."""
    model_kwargs = dict(model_kwargs or {})
    mode = "train" if training else "infer"
    model = make_model(name, model_kwargs)
    x, y = make_data(model, batch)
    n_threads = threads()
    log(f"{name} batch {batch} {mode}: building ...")
    # Peers first: they read the weights before graphcnn's training updates change them.
    peers: dict[str, System] = {}
    notes: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="graphcnn-bench-") as workdir:
        for peer in against:
            if peer == "numpy":
                continue  # needs the FLOPs: after graphcnn is built
            try:
                if peer == "torch":
                    peers[peer] = torch_system(name, model_kwargs, model, x, y, training,
                                               n_threads)
                elif peer == "onnxruntime":
                    peers[peer] = onnxruntime_system(model, x, training, n_threads, workdir,
                                                     name)
            except Skip as exc:
                notes[peer] = str(exc)
        mine, exe = graphcnn_system(model, x, y, training, opt_level,
                                    max_batch=None if training else max_batch)
        flops = graph_flops(graph_at(exe, batch))
        if "numpy" in against:
            try:
                peers["numpy"] = numpy_system(model, x, y, training, flops, opt_level)
            except Skip as exc:
                notes["numpy"] = str(exc)

        result: dict[str, Any] = {
            "model": name, "model_kwargs": model_kwargs, "batch": batch, "mode": mode,
            "opt_level": opt_level, "threads": n_threads, "input_shape": list(x.shape),
            "max_batch": exe.max_batch,
            "flops": flops, "flops_by_op": flops_by_op(graph_at(exe, batch)),
            "kernels": len(exe.runner.steps), "compile_seconds": exe.compile_seconds,
            "systems": {}, "checks": {}, "notes": notes, "ratios": {}}
        order = ["graphcnn"] + [p for p in against if p in peers]
        systems = {"graphcnn": mine, **peers}
        for key in order[1:]:
            result["checks"][key] = compare(mine.check, systems[key].check, training)
        if training:  # before timing: the timed steps update the weights
            result["gradient_check"] = float64_check(name, model_kwargs, model, x, y, mine,
                                                     peers.get("torch"))
            log(f"  {gradient_text(result['gradient_check'])}")
        if processes:
            from graphcnn.bench.isolate import time_isolated
            log(f"  timing {', '.join(order)}: {repeats} calls each, in {processes} fresh "
                f"process(es) per system ...")
            spec = {"model": name, "model_kwargs": model_kwargs, "batch": batch,
                    "training": training, "opt_level": opt_level, "threads": n_threads,
                    "max_batch": exe.max_batch,
                    "repeats": repeats, "warmup": warmup}
            timings = time_isolated(spec, order, processes)
            result["timing"] = (f"each system in {processes} fresh process(es) of its own; "
                                f"the median of their medians")
        else:
            log(f"  timing {', '.join(order)}: {repeats} calls each, in rounds ...")
            timings = measure_interleaved({k: systems[k].run for k in order}, repeats,
                                          warmup)
            result["timing"] = ("one process: each system's calls in blocks of their own, "
                                "after a pause in which the others' threads go to sleep")
        for key in order:
            timing = timings[key]
            timing["gflops"] = gflops(flops, timing["median_ms"])
            result["systems"][key] = timing
            spread = (f" (spread over processes {100 * timing['spread']:.0f}%; "
                      f"cross-core {phases_text(timing['cross_core_ratios'])}; "
                      f"stolen by the host {steals_text(timing['steals'])})"
                      if "spread" in timing else "")
            log(f"  {key:12s} {timing['median_ms']:10.3f} ms median of {repeats}{spread}"
                + (f"   check: {check_text(result['checks'][key])}"
                   if key in result["checks"] else ""))
        for peer, note in notes.items():
            log(f"  {peer:12s} skipped: {note}")
    gc_ms = result["systems"]["graphcnn"]["median_ms"]
    for peer in peers:
        result["ratios"][peer] = gc_ms / result["systems"][peer]["median_ms"]
    if profile_repeats:
        from graphcnn.bench.profile import profile_kernels
        feeds = {exe.input_names[0]: x}
        if training:
            feeds["target"] = y
        result["profile"] = profile_kernels(exe, feeds, profile_repeats)
    return result


def bench_model(name: str, batch_sizes: list[int], training: bool = False,
                against: list[str] | None = None, repeats: int = 20, opt_level: int = 2,
                model_kwargs: dict[str, Any] | None = None, warmup: int = 2,
                profile_repeats: int = 0, log: Callable[[str], Any] = print,
                processes: int = 0, max_batch: int | None = None) -> list[dict[str, Any]]:
    against = list(PEERS if against is None else against)
    return [bench_workload(name, b, training, against, repeats, opt_level, model_kwargs,
                           warmup, profile_repeats, log, processes, max_batch)
            for b in batch_sizes]


def isolated_worker() -> None:
    """The child of graphcnn/bench/isolate.py: read the spec on stdin, build its one
    system, time it, print JSON."""
    import json
    import sys

    import graphcnn as gc

    spec = json.loads(sys.stdin.read())

    gc.set_num_threads(spec["threads"])
    model = make_model(spec["model"], spec["model_kwargs"])
    x, y = make_data(model, spec["batch"])
    system, training = spec["system"], spec["training"]
    with tempfile.TemporaryDirectory(prefix="graphcnn-bench-") as workdir:
        if system == "graphcnn":
            run = graphcnn_system(model, x, y, training, spec["opt_level"],
                                  max_batch=spec["max_batch"])[0].run
        elif system == "numpy":
            run = graphcnn_system(model, x, y, training, spec["opt_level"],
                                  backend="reference")[0].run
        elif system == "torch":
            run = torch_system(spec["model"], spec["model_kwargs"], model, x, y, training,
                               spec["threads"]).run
        else:
            run = onnxruntime_system(model, x, training, spec["threads"], workdir,
                                     spec["model"]).run
        ticks = cpu_ticks()
        timing = measure(run, spec["repeats"], spec["warmup"])
        steal = steal_share(ticks, cpu_ticks())
    # the host's phase right after the timing (bench/cross_core.py): which one this
    # process's median comes from
    probe = cross_core_cost(repeats=10)
    print(json.dumps(dict(timing, pid=os.getpid(), steal=steal,
                          cross_core_ratio=probe["ratio"] if probe else None)))
