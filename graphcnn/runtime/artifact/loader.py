"""`graphcnn.load`: an artifact back as an Executable (inference) or a GradientStep
(training), every part checked before it is used (the package's docstring lists how)."""
from __future__ import annotations

import os
import time
import warnings
from typing import Any

import numpy as np

from graphcnn import limits
from graphcnn.errors import ArtifactError, LimitError
from graphcnn.ir.graph import Graph
from graphcnn.ir.serialize import graph_from_json
from graphcnn.runtime.artifact.format import fail, field, integer, open_archive, parse_manifest
from graphcnn.runtime.artifact.members import check_entries, member_plan, read_array, read_code
from graphcnn.runtime.artifact.plan import plan_from_json
from graphcnn.runtime.executable import Executable
from graphcnn.runtime.gradient_step import GradientStep, HeldParameters


def load(path: str | os.PathLike, *, warm_up: bool = True) -> Executable | GradientStep:
    """Load an artifact: an Executable (inference) or a GradientStep (training) that holds
    its parameters (`step.parameters`, initially the values saved).

    Runs the precompiled machine code: nothing is compiled. If the code was compiled for
    another CPU, numba or kernel version, warns why and compiles with Numba instead (now,
    unless `warm_up=False`). Raises ArtifactError for a file that is not a valid artifact.
    """
    start = time.perf_counter()
    path = os.fspath(path)
    with open_archive(path) as zf:
        manifest = parse_manifest(path, zf)
        try:
            # which members the manifest uses and what each must be, then the zip's
            # entries against that: all before a byte of any member is inflated
            plan = member_plan(manifest)
            records = check_entries(zf, path, manifest, plan)
        except ValueError as err:
            if isinstance(err, ArtifactError):
                raise
            raise fail(path, f"invalid manifest: {err}") from None
        arrays = {name: read_array(zf, path, name, records[name], expected)
                  for name, expected in plan.items() if expected.kind == "array"}
        code = {name: read_code(zf, path, name, records[name])
                for name, expected in plan.items() if expected.kind == "code"}
    try:
        return _build(path, manifest, arrays, code, start, warm_up)
    except ArtifactError:
        raise
    except (ValueError, TypeError, KeyError) as err:
        raise fail(path, f"invalid manifest: {str(err).strip(chr(34) + chr(39))}") from None


def _target_mismatch(manifest: dict[str, Any]) -> list[str]:
    """Why the artifact's precompiled code cannot run here (empty: it can)."""
    from graphcnn.backends.cpu.precompiled import target_mismatch as cpu_mismatch

    return cpu_mismatch(field(manifest, "target", dict, "manifest"),
                        field(manifest, "created_by", dict, "manifest"))


def _build(path: str, manifest: dict[str, Any], arrays: dict[str, np.ndarray],
           code: dict[str, bytes], start: float, warm_up: bool) -> Executable | GradientStep:
    from graphcnn.backends.cpu import aot
    from graphcnn.backends.cpu.registry import launch_mode
    from graphcnn.backends.cpu.runner import CpuRunner

    kind = field(manifest, "kind", str, "manifest")
    if kind not in ("inference", "training"):
        raise ValueError(f"unknown artifact kind {kind!r}")
    # The cpu backend is the one that saves artifacts (Backend.saves_artifacts): what
    # follows (its runner, its precompiled code) is the cpu backend's.
    if field(manifest, "backend", str, "manifest") != "cpu":
        raise ValueError("only cpu artifacts are supported")
    def get_array(name: str) -> np.ndarray:
        if name not in arrays or not name.startswith("constants/"):
            raise ValueError(f"constant {name!r} is not a stored array")
        array = arrays[name]
        array.setflags(write=False)   # constants are frozen
        return array

    graph = graph_from_json(field(manifest, "graph", dict, "manifest"), get_array)
    try:   # the manifest's input shapes decide every tensor's size: bounded before the arena
        limits.check_graph(graph)
    except LimitError as err:
        raise fail(path, str(err)) from None
    plan = plan_from_json(graph, field(manifest, "memory_plan", dict, "manifest"))
    schedule = field(manifest, "schedule", list, "manifest")
    if schedule != [n.id for n in graph.compute_nodes() if n.id not in plan.views]:
        raise ValueError("the schedule does not match the graph")
    _check_io(manifest, graph)
    chosen = manifest.get("implementations")  # absent in artifacts written before them
    if chosen is not None and (not isinstance(chosen, list) or len(chosen) != len(schedule)
                               or not all(isinstance(c, str) for c in chosen)):
        raise ValueError("implementations must name one implementation per scheduled node")
    parameters = _parameters(path, manifest, graph, arrays)

    kernels = _kernel_list(manifest, code, aot)
    reasons = _target_mismatch(manifest)
    table = None
    if reasons:
        warnings.warn(f"{path}: not using its precompiled code ({'; '.join(reasons)}); "
                      f"compiling the kernels with Numba instead", RuntimeWarning, stacklevel=3)
    else:
        try:
            table = aot.load_entries([(k.name, k.signature, k.restype, k.symbol, k.obj)
                                      for k in kernels])
        except aot.AotError as err:
            raise fail(path, str(err)) from None

    saved = None if chosen is None else dict(zip(schedule, chosen))
    max_batch = _max_batch(manifest, graph, len(schedule))
    with launch_mode(table=table):  # a node chosen again is measured on the precompiled code
        if max_batch is None:
            runner = CpuRunner(graph, plan, saved)
        else:
            from graphcnn.backends.cpu.dynamic import DynamicCpuRunner
            batch1 = dict(zip(schedule, manifest["implementations_batch1"]))
            runner = DynamicCpuRunner(graph, plan, saved, batch1)
    runner.launch_table = table
    exe = Executable(graph, "cpu", ops_before=integer(manifest, "ops_before", "manifest"),
                     naive_bytes_before=integer(manifest, "naive_bytes_before", "manifest"),
                     compile_seconds=float(field(manifest, "compile_seconds", (int, float),
                                                 "manifest")),
                     param_source=(lambda: parameters) if parameters else None,
                     seed=integer(manifest, "seed", "manifest"), runner=runner)
    exe.artifact_path = path
    exe.precompiled_entries = kernels if table is not None else None
    if table is None and warm_up:
        exe.warm_up()
    exe.load_seconds = time.perf_counter() - start
    if kind == "inference":
        return exe
    info = field(manifest, "training", dict, "manifest")
    loss = field(info, "loss", str, "training")
    trainable = field(info, "trainable", list, "training")
    if not set(trainable) <= set(parameters) or not all(isinstance(t, str) for t in trainable):
        raise ValueError("training.trainable names unknown parameters")
    return GradientStep(exe, loss, HeldParameters(parameters, trainable),
                        integer(info, "num_classes", "training"))


def _max_batch(manifest: dict[str, Any], graph: Graph, steps: int) -> int | None:
    """A dynamic-batch artifact's largest batch (None: a fixed-batch one, or one written
    before dynamic batches), checked against its graph and its batch-1 choices."""
    max_batch = manifest.get("max_batch")
    if max_batch is None:
        return None
    from graphcnn.runtime.dynamic_batch import max_batch_of
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) \
            or max_batch != max_batch_of(graph):
        raise ValueError("max_batch must be the batch of the graph's inputs")
    batch1 = manifest.get("implementations_batch1")
    if not isinstance(batch1, list) or len(batch1) != steps \
            or not all(isinstance(c, str) for c in batch1):
        raise ValueError("implementations_batch1 must name one implementation per "
                         "scheduled node")
    return max_batch


def _parameters(path: str, manifest: dict[str, Any], graph: Graph,
                arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The stored value of every `param` node of the graph, of its shape and dtype."""
    graph_params = {n.attrs["name"]: n.output for n in graph.nodes if n.op == "param"}
    parameters: dict[str, np.ndarray] = {}
    for i, entry in enumerate(field(manifest, "parameters", list, "manifest")):
        name = field(entry, "name", str, f"parameters[{i}]")
        member = field(entry, "member", str, f"parameters[{i}]")
        if name not in graph_params or member not in arrays or \
                not member.startswith("parameters/"):
            raise ValueError(f"parameters[{i}] ({name!r}) is not a parameter of the graph")
        value, want = arrays[member], graph_params[name]
        if value.shape != want.shape or value.dtype != np.dtype(want.dtype):
            raise fail(path, f"parameter {name!r} is {value.dtype}{list(value.shape)} in "
                             f"{member}, the graph needs {want.dtype}{list(want.shape)}")
        parameters[name] = value
    if set(parameters) != set(graph_params):
        raise ValueError(f"missing values for parameters "
                         f"{sorted(set(graph_params) - set(parameters))[:5]}")
    return parameters


def _check_io(manifest: dict[str, Any], graph: Graph) -> None:
    inputs = [{"name": n.attrs["name"], "shape": list(n.output.shape), "dtype": n.output.dtype}
              for n in graph.nodes if n.op == "input"]
    outputs = [{"name": n, "shape": list(v.shape), "dtype": v.dtype}
               for n, v in zip(graph.output_names, graph.outputs)]
    if field(manifest, "inputs", list, "manifest") != inputs or \
            field(manifest, "outputs", list, "manifest") != outputs:
        raise ValueError("inputs/outputs do not match the graph")


def _kernel_list(manifest: dict[str, Any], members: dict[str, bytes], aot: Any) -> list[Any]:
    out = []
    for i, k in enumerate(field(manifest, "kernels", list, "manifest")):
        where = f"kernels[{i}]"
        name = field(k, "name", str, where)
        signature = field(k, "signature", list, where)
        restype = field(k, "restype", str, where)
        symbol = field(k, "symbol", str, where)
        member = field(k, "member", str, where)
        imports = field(k, "imports", list, where)
        if not all(isinstance(s, str) for s in signature):
            raise ValueError(f"{where}.signature must be a list of strings")
        for spec in signature:
            aot.parse_spec(spec)
        if restype not in aot.RETURN_CTYPES or member not in members or \
                not member.startswith("code/"):
            raise ValueError(f"{where} has an invalid return type or member")
        out.append(aot.BuiltEntry(name, tuple(signature), restype, symbol, members[member],
                                  [str(s) for s in imports]))
    return out
