"""`graphcnn.save`: an Executable or a GradientStep as an artifact (the package's
docstring describes the file)."""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from graphcnn.ir.serialize import graph_to_json
from graphcnn.ops import collective
from graphcnn.runtime.artifact.format import (
    ARRAY_DTYPES,
    FORMAT,
    FORMAT_VERSION,
    member_records,
    npy_bytes,
    versions,
    write_zip,
)
from graphcnn.runtime.artifact.plan import plan_to_json


@dataclass
class ArtifactContents:
    """What an artifact holds of the object saved, as its `artifact_contents()` says.

    executable: the Executable whose graph, memory plan and kernels are saved (the writer
    reads it; it does not import the class, which imports the writer). parameters: values
    for the graph's `param` nodes. training: for a training step, its loss name,
    num_classes and trainable parameter names; None for inference.
    """

    executable: Any
    parameters: dict[str, np.ndarray]
    training: dict[str, Any] | None = None


def save(obj: Any, path: str | os.PathLike) -> None:
    """Save `obj`, an Executable or a GradientStep, as an ahead-of-time compiled artifact:
    the optimized graph, memory plan, weights and the machine code of every kernel, in one
    file that `graphcnn.load` runs in another process without compiling. Compiles each
    kernel's entry once (seconds), unless `obj` was loaded from an artifact and runs its
    code. The write is atomic: an interrupted save leaves no file at `path` (or the
    previous one, intact). Only cpu executables save; a training step must have a named
    loss.

    >>> import os, tempfile
    >>> import numpy as np, graphcnn as gc
    >>> exe = gc.compile(gc.models.lenet5(), batch_size=1)
    >>> path = os.path.join(tempfile.mkdtemp(), "lenet5.gcnn")
    >>> gc.save(exe, path)
    >>> x = np.ones((1, 1, 32, 32), np.float32)
    >>> bool(np.array_equal(gc.load(path)(x), exe(x)))
    True
    """
    contents_of = getattr(obj, "artifact_contents", None)
    if not callable(contents_of):
        raise TypeError(f"cannot save a {type(obj).__name__}; expected an Executable or a "
                        f"gradient step")
    contents: ArtifactContents = contents_of()
    exe = contents.executable
    if not exe.backend.saves_artifacts:
        raise ValueError(f"only cpu executables can be saved as artifacts (this one runs on "
                         f"{exe.backend.name!r})")
    missing = sorted(set(exe.param_values) - set(contents.parameters))
    if missing:
        raise ValueError(f"no value for parameter(s) {missing[:5]}")
    params = {name: np.asarray(contents.parameters[name]) for name in exe.param_values}
    manifest, members = _manifest(exe, params, contents.training)
    write_zip(os.fspath(path), manifest, members)


_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))   # the folder that holds graphcnn/
# an absolute path at the start of a location or after a space, quote or parenthesis
_ABS_PATH = re.compile(r"""(?:^|(?<=[\s'"(]))(?:[A-Za-z]:[\\/]|/)[^\s:'"]*""")


def portable_location(loc: str, cwd: str) -> str:
    """A node's location ("file:line", or an ONNX file's label) with no absolute path in
    it, so an artifact does not carry the builder's directory layout: a file of graphcnn
    itself relative to the folder holding the package ("graphcnn/models/resnet.py:42"),
    a file under `cwd` (the user's project) relative to it, any other just its name."""
    def relative(match: re.Match[str]) -> str:
        path = os.path.normpath(match.group(0))
        for root in (_PACKAGE_PARENT + os.sep + "graphcnn", cwd):
            if path.startswith(root.rstrip(os.sep) + os.sep):
                base = _PACKAGE_PARENT if root.endswith("graphcnn") else root
                return os.path.relpath(path, base).replace(os.sep, "/")
        return os.path.basename(path)
    return _ABS_PATH.sub(relative, loc)


def _kernel_entries(exe: Any) -> list[Any]:
    """The precompiled entries of every kernel launch the executable makes: those it was
    loaded with (same machine and sources), else recorded from one run on zeros and built."""
    from graphcnn.backends.cpu.precompiled import record_entries

    if exe.precompiled_entries is not None:
        return exe.precompiled_entries

    def run() -> None:
        # on zeros, alone: allreduce nodes are the identity (graphcnn/ops/collective.py)
        with collective.local():
            for batch in recorded_batches(exe.max_batch):
                if batch is None or batch >= exe.runner.smallest_batch:
                    exe.run(exe.zero_feeds(batch))
    return record_entries(run, repr(exe.graph.name))


def recorded_batches(max_batch: int | None) -> list[int | None]:
    """The batches whose kernel launches an artifact records: its one batch; for a dynamic
    one, its largest and 1 (whose choices the others take), 2 and the batch where the
    others switch from 1's choices to the largest's (their kernels, where a choice made at
    1 or at the largest does not apply)."""
    if max_batch is None:
        return [None]
    switch = math.ceil(math.sqrt(max_batch))
    return [b for b in sorted({max_batch, 1, min(2, max_batch), switch})]


def _manifest(exe: Any, params: dict[str, np.ndarray], training: dict[str, Any] | None
              ) -> tuple[dict[str, Any], dict[str, bytes]]:
    from graphcnn.backends.cpu.precompiled import target_record

    graph = exe.graph
    entries = _kernel_entries(exe)
    members: dict[str, bytes] = {}
    arrays: dict[str, dict[str, Any]] = {}

    def add_array(array: np.ndarray, prefix: str = "constants") -> str:
        if array.dtype.name not in ARRAY_DTYPES:
            raise ValueError(f"cannot save an array of dtype {array.dtype}")
        name = f"{prefix}/{len([m for m in members if m.startswith(prefix)])}.npy"
        members[name] = npy_bytes(array)
        arrays[name] = {"shape": list(array.shape), "dtype": array.dtype.name}
        return name

    graph_json = graph_to_json(graph, add_array)
    cwd = os.getcwd()
    for node in graph_json["nodes"]:
        if node["loc"]:
            node["loc"] = portable_location(node["loc"], cwd)
    parameters = []
    for name, value in params.items():
        want = exe.param_values[name]
        if value.shape != want.shape or value.dtype != np.dtype(want.dtype):
            raise ValueError(f"parameter {name!r} is {value.dtype}{list(value.shape)}, the graph "
                             f"needs {want.dtype}{list(want.shape)}")
        parameters.append({"name": name, "member": add_array(value, "parameters")})
    kernels = []
    objects: dict[bytes, str] = {}
    for entry in entries:
        if entry.obj not in objects:
            objects[entry.obj] = f"code/{len(objects)}.o"
            members[objects[entry.obj]] = entry.obj
        kernels.append({"name": entry.name, "signature": list(entry.signature),
                        "restype": entry.restype, "symbol": entry.symbol,
                        "member": objects[entry.obj], "imports": list(entry.imports)})
    plan = exe.runner.plan
    report = exe.report()
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": "training" if training else "inference",
        "created_by": versions(),
        "target": target_record(),
        "backend": exe.backend.name,
        "name": graph.name,
        "ops_before": int(report["ops_before"]),
        "naive_bytes_before": int(report["naive_bytes"]),
        "compile_seconds": round(float(exe.compile_seconds), 3),
        "seed": int(exe.seed),
        "inputs": [{"name": n, "shape": list(v.shape), "dtype": v.dtype}
                   for n, v in exe.input_values.items()],
        "outputs": [{"name": n, "shape": list(v.shape), "dtype": v.dtype}
                    for n, v in zip(graph.output_names, graph.outputs)],
        "graph": graph_json,
        "schedule": [n.id for n in graph.compute_nodes() if n.id not in plan.views],
        "implementations": [step.implementation for step in exe.runner.steps],
        # a dynamic-batch executable's (graphcnn/runtime/dynamic_batch.py): its largest
        # batch, and the choices at batch 1 (those at the largest are "implementations")
        "max_batch": exe.max_batch,
        "implementations_batch1": None if exe.max_batch is None
        else exe.runner.implementations_at(1),
        "memory_plan": plan_to_json(graph, plan),
        "kernels": kernels,
        "arrays": arrays,
        "parameters": parameters,
        "training": training or None,
        "members": member_records(members),
    }
    return manifest, members
