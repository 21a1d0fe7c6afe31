"""Ahead-of-time compiled artifacts: one file that loads and runs without compiling.

    exe = gc.compile(model, batch_size=1)
    exe.save("model.gcnn")                    # or: graphcnn compile MODEL -o model.gcnn
    exe = gc.load("model.gcnn")               # another process, another day: no compiler

The file is a zip archive:

    manifest.json        the manifest (JSON, below)
    constants/<k>.npy    the graph's constant tensors (an inference model's weights)
    parameters/<k>.npy   values of the graph's `param` nodes (training artifacts)
    code/<k>.o           object code of one precompiled kernel entry (graphcnn.backends.cpu.aot)

The manifest holds: the format name and version; the versions of graphcnn, numba,
llvmlite, numpy and Python that wrote it; the target it was compiled for (triple, CPU name,
CPU features) and a fingerprint of the cpu kernels' sources; the optimized graph
(graphcnn.ir.serialize: nodes with op, inputs, attributes, locations and output types); the
schedule (the nodes run as kernels, in order) and the implementation the cpu strategy chose
for each (loading runs the same ones); the memory plan (arena bytes; per buffer the
values sharing it, offset, size, live range); input and output names, shapes and dtypes;
the kernel entries (kernel name, argument signature, return type, symbol, member); the
parameters; for a training step its loss; and per member its size and SHA-256.

**Loading never unpickles and never evaluates anything from the file**: the manifest is
JSON, validated field by field; arrays are read with `np.load(allow_pickle=False)` and
must have the recorded dtype and shape; the graph is rebuilt through `Graph.add_node`,
which checks every attribute and re-infers every shape; the memory plan is checked against
the graph's liveness (no two live tensors share bytes, everything fits the arena); every
member's SHA-256 is checked before it is used. The object code is machine code by design
(trust an artifact as you would trust a shared library); its only data-unpickling hooks
(Numba's exception info) are replaced by stubs at build time. A problem is an
`ArtifactError` naming it.

If the machine differs from the one compiled for (CPU name or features, triple), or numba,
llvmlite or the kernels' sources changed, loading warns saying why and compiles the kernels
with Numba instead. Writing is atomic: a temporary file in the target's directory, then
`os.replace`, so an interrupted save leaves no half-written file at the target path.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import re
import tempfile
import time
import warnings
import zipfile
from typing import Any

import numpy as np

from graphcnn.errors import ArtifactError
from graphcnn.ir.graph import Graph
from graphcnn.ir.serialize import graph_from_json, graph_to_json, resolve_ref, value_ref
from graphcnn.mode_rules import DROPOUT_SEED_INPUT
from graphcnn.runtime.executable import Executable
from graphcnn.runtime.memory_plan import ALIGN, VIEW_OPS, Buffer, MemoryPlan

FORMAT = "graphcnn-artifact"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 64 << 20
ARRAY_DTYPES = ("float32", "float64", "int64")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

__all__ = ["FORMAT_VERSION", "TrainingStep", "load", "read_manifest", "save_artifact"]


# ---- the training step a training artifact loads as ---------------------------------------
class TrainingStep:
    """A gradient step loaded from a training artifact (`graphcnn compile --training`):

        step = gc.load("step.gcnn")
        loss, grads = step(x, target)                  # as a GradientStep
        optimizer.step(step.trainable_parameters(), grads)
        step.save("step.gcnn")                         # the trained values, no compiling

    `parameters` maps every parameter name to the array the step reads at each call
    (initially the values saved in the artifact); update them in place. Each call also
    writes the batch-norm running statistics into them (training mode), as a GradientStep
    does to its model's parameters.
    """

    def __init__(self, executable: Executable, parameters: dict[str, np.ndarray],
                 trainable: list[str], loss: str, num_classes: int) -> None:
        self.executable = executable
        self.parameters = parameters
        self.trainable = list(trainable)
        self.loss = loss
        self.num_classes = num_classes
        self._state_names = [n for n in executable.output_names if n.startswith("state:")]

    def trainable_parameters(self) -> dict[str, np.ndarray]:
        return {name: self.parameters[name] for name in self.trainable}

    def __call__(self, x: np.ndarray, target: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        from graphcnn.api import check_labels

        if self.loss == "cross_entropy":
            check_labels(target, int(self.num_classes))
        input_name = self.executable.input_names[0]
        outputs = self.executable.run({input_name: x, "target": target})
        for name in self._state_names:
            self.parameters[name[len("state:"):]][...] = outputs[name]
        grads = {name[len("grad:"):]: value for name, value in outputs.items()
                 if name.startswith("grad:")}
        return float(outputs["loss"]), grads

    def save(self, path: str | os.PathLike) -> None:
        save_artifact(self, path)

    def report(self) -> dict[str, Any]:
        return self.executable.report()

    def __repr__(self) -> str:
        return (f"TrainingStep({self.executable.graph.name!r}, loss={self.loss!r}, "
                f"inputs={self.executable.input_names})")


# ---- writing ------------------------------------------------------------------------------
def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.require(array, requirements="C"), allow_pickle=False)
    return buf.getvalue()


def _versions() -> dict[str, str]:
    import llvmlite
    import numba

    import graphcnn
    return {"graphcnn": graphcnn.__version__, "numba": numba.__version__,
            "llvmlite": llvmlite.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def _zero_feeds(exe: Executable) -> dict[str, np.ndarray]:
    feeds = {name: np.zeros(exe._inputs[name].shape, exe._inputs[name].dtype)
             for name in exe.input_names}
    if DROPOUT_SEED_INPUT in exe._inputs:   # do not use up a seed
        feeds[DROPOUT_SEED_INPUT] = np.asarray(0, np.int64)
    return feeds


def _kernel_entries(exe: Executable) -> list[Any]:
    """The precompiled entries of every kernel launch the executable makes: those it was
    loaded with (same machine and sources), else recorded from one run on zeros and built."""
    from graphcnn.backends.cpu import aot
    from graphcnn.backends.cpu.registry import launch_mode

    own = getattr(exe, "_artifact_entries", None)
    if own is not None:
        return own
    recorder = aot.Recorder()
    with launch_mode(recorder=recorder):
        exe.run(_zero_feeds(exe))
    entries = []
    for (_, signature), (fn, readonly) in recorder.launches.items():
        try:
            entries.append(aot.build_entry(fn, signature, readonly))
        except aot.AotError as err:
            raise ValueError(f"cannot save {exe.graph.name!r}: {err}") from None
    return entries


def _plan_to_json(graph: Graph, plan: MemoryPlan) -> dict[str, Any]:
    values = {v.id: v for v in graph.values()}
    return {"arena_bytes": int(plan.arena_bytes),
            "buffers": [{"values": [value_ref(values[v.id]) for v in b.values],
                         "offset": int(b.offset), "size": int(b.size),
                         "first": int(b.first), "last": int(b.last)} for b in plan.buffers],
            "views": sorted(int(n) for n in plan.views)}


def _what_to_save(obj: Any) -> tuple[Executable, str, dict[str, np.ndarray], dict[str, Any]]:
    """(executable, kind, parameter values, training info) of an Executable, a
    GradientStep or a loaded TrainingStep."""
    from graphcnn.api import GradientStep

    if isinstance(obj, (GradientStep, TrainingStep)):
        exe = obj.executable
        if not isinstance(obj.loss, str):
            raise ValueError("a training step with a custom loss function cannot be saved as "
                             "an artifact; use a named loss (cross_entropy, mse)")
        if isinstance(obj, GradientStep):
            params = obj.model.parameters()
            trainable = [n.attrs["name"] for n in exe.graph.nodes
                         if n.op == "param" and n.attrs["trainable"]]
        else:
            params, trainable = obj.parameters, obj.trainable
        info = {"loss": obj.loss, "num_classes": int(obj.num_classes), "trainable": trainable}
        kind = "training"
    elif isinstance(obj, Executable):
        exe, kind, info = obj, "inference", {}
        params = obj._param_source() if obj._params and obj._param_source else {}
    else:
        raise TypeError(f"cannot save a {type(obj).__name__}; expected an Executable or a "
                        f"gradient step")
    if exe.backend != "cpu":
        raise ValueError(f"only cpu executables can be saved as artifacts (this one runs on "
                         f"{exe.backend!r})")
    missing = sorted(set(exe._params) - set(params))
    if missing:
        raise ValueError(f"no value for parameter(s) {missing[:5]}")
    return exe, kind, {name: np.asarray(params[name]) for name in exe._params}, info


def save_artifact(obj: Any, path: str | os.PathLike) -> None:
    """Write `obj` (an Executable, a GradientStep or a TrainingStep) to `path`, atomically.
    Compiles each kernel's C entry once (seconds); nothing is compiled at load."""
    from graphcnn.backends.cpu import aot

    exe, kind, params, info = _what_to_save(obj)
    graph = exe.graph
    entries = _kernel_entries(exe)
    members: dict[str, bytes] = {}
    arrays: dict[str, dict[str, Any]] = {}

    def add_array(array: np.ndarray, prefix: str = "constants") -> str:
        if array.dtype.name not in ARRAY_DTYPES:
            raise ValueError(f"cannot save an array of dtype {array.dtype}")
        name = f"{prefix}/{len([m for m in members if m.startswith(prefix)])}.npy"
        members[name] = _npy_bytes(array)
        arrays[name] = {"shape": list(array.shape), "dtype": array.dtype.name}
        return name

    graph_json = graph_to_json(graph, add_array)
    parameters = []
    for name, value in params.items():
        want = exe._params[name]
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
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "created_by": _versions(),
        "target": {**aot.host_target(), "kernels_fingerprint": aot.kernels_fingerprint()},
        "backend": "cpu",
        "name": graph.name,
        "ops_before": int(exe._ops_before),
        "naive_bytes_before": int(exe.report()["naive_bytes"]),
        "compile_seconds": round(float(exe.compile_seconds), 3),
        "seed": int(exe.seed),
        "inputs": [{"name": n, "shape": list(v.shape), "dtype": v.dtype}
                   for n, v in exe._inputs.items()],
        "outputs": [{"name": n, "shape": list(v.shape), "dtype": v.dtype}
                    for n, v in zip(graph.output_names, graph.outputs)],
        "graph": graph_json,
        "schedule": [n.id for n in graph.compute_nodes() if n.id not in plan.views],
        "implementations": [name for _, _, name, _ in exe.runner.implementations()],
        "memory_plan": _plan_to_json(graph, plan),
        "kernels": kernels,
        "arrays": arrays,
        "parameters": parameters,
        "training": info or None,
        "members": {name: {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                    for name, data in members.items()},
    }
    _write_zip(os.fspath(path), json.dumps(manifest, allow_nan=False, indent=1).encode(),
               members)


def _write_zip(path: str, manifest: bytes, members: dict[str, bytes]) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                               dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            with zipfile.ZipFile(handle, "w") as zf:
                zf.writestr(MANIFEST, manifest, compress_type=zipfile.ZIP_DEFLATED)
                for name, data in members.items():
                    # Weights barely compress and are read at every load: stored as is.
                    method = zipfile.ZIP_DEFLATED if name.startswith("code/") else \
                        zipfile.ZIP_STORED
                    zf.writestr(name, data, compress_type=method)
            handle.flush()
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)   # mkstemp made it private; a saved file is not
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# ---- reading: every field checked ---------------------------------------------------------
def _fail(path: str, message: str) -> ArtifactError:
    return ArtifactError(f"{path}: {message}")


def _field(data: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(data, dict) or key not in data:
        raise ValueError(f"{where} has no field {key!r}")
    value = data[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"{where}.{key} has the wrong type ({type(value).__name__})")
    return value


def _int(data: Any, key: str, where: str, minimum: int = 0) -> int:
    value = _field(data, key, int, where)
    if isinstance(value, bool) or value < minimum:
        raise ValueError(f"{where}.{key} must be an integer >= {minimum}")
    return value


def _reject_constant(text: str) -> None:
    raise ValueError(f"non-standard JSON constant {text}")


def _open(path: str) -> zipfile.ZipFile:
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such artifact: {path}")
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as err:
        raise _fail(path, f"not a graphcnn artifact (not a zip archive, or truncated: {err})"
                    ) from None


def _read_member(zf: zipfile.ZipFile, path: str, name: str, limit: int | None = None,
                 size: int | None = None) -> bytes:
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise _fail(path, f"missing member {name}") from None
    if limit is not None and info.file_size > limit:
        raise _fail(path, f"member {name} is too large ({info.file_size} bytes)")
    if size is not None and info.file_size != size:   # checked before inflating anything
        raise _fail(path, f"member {name} is corrupted (it is {info.file_size} bytes, the "
                          f"manifest says {size})")
    try:
        return zf.read(name)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, RuntimeError,
            NotImplementedError) as err:
        raise _fail(path, f"member {name} is corrupted or truncated ({err})") from None
    except Exception as err:  # zlib.error and friends
        raise _fail(path, f"member {name} is corrupted ({type(err).__name__}: {err})") from None


def _check_header(path: str, manifest: Any) -> None:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise _fail(path, f"not a graphcnn artifact (manifest format is not {FORMAT!r})")
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _fail(path, f"manifest has an invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise _fail(path, f"artifact format version {version} is newer than this graphcnn "
                          f"reads (up to {FORMAT_VERSION}); upgrade graphcnn to load it")


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """The manifest of an artifact (format checked, members not verified)."""
    path = os.fspath(path)
    with _open(path) as zf:
        return _parse_manifest(path, _read_member(zf, path, MANIFEST, MAX_MANIFEST_BYTES))


def _parse_manifest(path: str, raw: bytes) -> dict[str, Any]:
    try:
        manifest = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise _fail(path, f"manifest is not valid JSON ({str(err)[:200]})") from None
    _check_header(path, manifest)
    return manifest


def _verified_members(zf: zipfile.ZipFile, path: str, manifest: dict[str, Any]
                      ) -> dict[str, bytes]:
    listed = _field(manifest, "members", dict, "manifest")
    present = set(zf.namelist()) - {MANIFEST}
    for name in sorted(set(listed) - present):
        raise _fail(path, f"missing member {name}")
    for name in sorted(present - set(listed)):
        raise _fail(path, f"unexpected member {name} (not listed in the manifest)")
    out = {}
    for name, meta in listed.items():
        size = _int(meta, "size", f"members[{name!r}]")
        digest = _field(meta, "sha256", str, f"members[{name!r}]")
        if not _SHA256.match(digest):
            raise ValueError(f"members[{name!r}].sha256 is not a SHA-256 digest")
        data = _read_member(zf, path, name, size=size)
        if len(data) != size or hashlib.sha256(data).hexdigest() != digest:
            raise _fail(path, f"member {name} is corrupted (its SHA-256 does not match the "
                              f"manifest)")
        out[name] = data
    return out


def _load_array(path: str, name: str, data: bytes, meta: Any) -> np.ndarray:
    shape = tuple(_field(meta, "shape", list, f"arrays[{name!r}]"))
    dtype = _field(meta, "dtype", str, f"arrays[{name!r}]")
    if dtype not in ARRAY_DTYPES or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise ValueError(f"arrays[{name!r}] has an invalid dtype or shape")
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise _fail(path, f"member {name} is not a plain .npy array ({err})") from None
    if not isinstance(array, np.ndarray):
        raise _fail(path, f"member {name} is not a .npy array")
    if array.dtype != np.dtype(dtype) or array.shape != shape:
        raise _fail(path, f"member {name} holds {array.dtype}{list(array.shape)}, the manifest "
                          f"says {dtype}{list(shape)}")
    return array


def _liveness(graph: Graph) -> tuple[dict[int, int], dict[int, int]]:
    steps = graph.compute_nodes()
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for step, node in enumerate(steps):
        for v in node.inputs:
            last[v.id] = step
        for v in node.outputs:
            first[v.id] = step
            last.setdefault(v.id, step)
    for v in graph.outputs:
        last[v.id] = len(steps)
    return first, last


def _plan_from_json(graph: Graph, data: Any) -> MemoryPlan:
    """The stored memory plan, checked: every tensor the kernels write has a buffer large
    enough, inside the arena, aligned; buffers whose lifetimes overlap do not share bytes;
    views are reshapes over their input's bytes."""
    arena = _int(data, "arena_bytes", "memory_plan")
    first, last = _liveness(graph)
    buffers, offsets = [], {}
    for i, b in enumerate(_field(data, "buffers", list, "memory_plan")):
        where = f"memory_plan.buffers[{i}]"
        values = [resolve_ref(graph, r) for r in _field(b, "values", list, where)]
        offset, size = _int(b, "offset", where), _int(b, "size", where)
        lo, hi = _int(b, "first", where), _int(b, "last", where)
        if not values or offset % ALIGN or offset + size > arena:
            raise ValueError(f"{where} is empty, misaligned or outside the arena")
        for v in values:
            if v.id not in first or v.id in offsets:
                raise ValueError(f"{where}: value {value_ref(v)} is not a kernel output, or "
                                 f"is placed twice")
            if v.type.nbytes > size or lo > first[v.id] or hi < last[v.id]:
                raise ValueError(f"{where}: too small or too short-lived for {value_ref(v)}")
            offsets[v.id] = offset
        buffers.append(Buffer(values, size, lo, hi, offset))
    unplaced = sorted(set(first) - set(offsets))
    if unplaced:
        raise ValueError(f"memory_plan places no buffer for {len(unplaced)} tensor(s)")
    ordered = sorted(buffers, key=lambda b: b.offset)
    for k, a in enumerate(ordered):
        for b in ordered[k + 1:]:
            if b.offset >= a.offset + a.size:
                break
            if a.overlaps_in_time(b):
                raise ValueError("memory_plan puts tensors that are live at the same time in "
                                 "the same bytes")
    views = set()
    for node_id in _field(data, "views", list, "memory_plan"):
        if not isinstance(node_id, int) or not 0 <= node_id < len(graph.nodes):
            raise ValueError(f"memory_plan.views: bad node {node_id!r}")
        node = graph.nodes[node_id]
        if node.op not in VIEW_OPS or offsets.get(node.output.id) != offsets.get(
                node.inputs[0].id):
            raise ValueError(f"memory_plan.views: node {node_id} is not a view of its input")
        views.add(node_id)
    return MemoryPlan(buffers, offsets, arena, views)


def _target_mismatch(manifest: dict[str, Any]) -> list[str]:
    """Why the precompiled code cannot run here (empty: it can)."""
    from graphcnn.backends.cpu import aot

    import llvmlite
    import numba

    target = _field(manifest, "target", dict, "manifest")
    made_by = _field(manifest, "created_by", dict, "manifest")
    host = aot.host_target()
    reasons = []
    if target.get("triple") != host["triple"]:
        reasons.append(f"compiled for {target.get('triple')}, this is {host['triple']}")
    if target.get("cpu_name") != host["cpu_name"]:
        reasons.append(f"compiled for CPU {target.get('cpu_name')!r}, this CPU is "
                       f"{host['cpu_name']!r}")
    theirs = set(str(target.get("cpu_features", "")).split(","))
    ours = set(host["cpu_features"].split(","))
    if theirs != ours:
        lacking = sorted(f[1:] for f in theirs - ours if f.startswith("+"))
        extra = sorted(f[1:] for f in ours - theirs if f.startswith("+"))
        text = "CPU features differ"
        if lacking:
            text += f" (this CPU lacks {', '.join(lacking[:6])})"
        if extra:
            text += f" (this CPU adds {', '.join(extra[:6])})"
        reasons.append(text)
    for name, version in (("numba", numba.__version__), ("llvmlite", llvmlite.__version__)):
        if made_by.get(name) != version:
            reasons.append(f"made with {name} {made_by.get(name)}, this is {name} {version}")
    if target.get("kernels_fingerprint") != aot.kernels_fingerprint():
        reasons.append("the cpu kernels' sources changed since it was compiled")
    return reasons


def load(path: str | os.PathLike, *, warm_up: bool = True) -> Any:
    """Load an artifact: an Executable (inference) or a TrainingStep (training).

    Runs the precompiled machine code: nothing is compiled. If the code was compiled for
    another CPU, numba or kernel version, warns why and compiles with Numba instead (now,
    unless `warm_up=False`). Raises ArtifactError for a file that is not a valid artifact.
    """
    from graphcnn.backends.cpu import aot
    from graphcnn.backends.cpu.runner import CpuRunner

    start = time.perf_counter()
    path = os.fspath(path)
    with _open(path) as zf:
        manifest = _parse_manifest(path, _read_member(zf, path, MANIFEST, MAX_MANIFEST_BYTES))
        try:
            members = _verified_members(zf, path, manifest)
        except ValueError as err:
            if isinstance(err, ArtifactError):
                raise
            raise _fail(path, f"invalid manifest: {err}") from None
    try:
        return _build(path, manifest, members, start, warm_up, aot, CpuRunner)
    except ArtifactError:
        raise
    except (ValueError, TypeError, KeyError) as err:
        raise _fail(path, f"invalid manifest: {str(err).strip(chr(34) + chr(39))}") from None


def _build(path: str, manifest: dict[str, Any], members: dict[str, bytes], start: float,
           warm_up: bool, aot: Any, runner_class: Any) -> Any:
    kind = _field(manifest, "kind", str, "manifest")
    if kind not in ("inference", "training"):
        raise ValueError(f"unknown artifact kind {kind!r}")
    if _field(manifest, "backend", str, "manifest") != "cpu":
        raise ValueError("only cpu artifacts are supported")
    array_meta = _field(manifest, "arrays", dict, "manifest")
    arrays: dict[str, np.ndarray] = {}
    for name, meta in array_meta.items():
        if name not in members or not name.endswith(".npy"):
            raise ValueError(f"arrays[{name!r}] names no .npy member")
        arrays[name] = _load_array(path, name, members[name], meta)

    def get_array(name: str) -> np.ndarray:
        if name not in arrays or not name.startswith("constants/"):
            raise ValueError(f"constant {name!r} is not a stored array")
        array = arrays[name]
        array.setflags(write=False)   # constants are frozen
        return array

    graph = graph_from_json(_field(manifest, "graph", dict, "manifest"), get_array)
    plan = _plan_from_json(graph, _field(manifest, "memory_plan", dict, "manifest"))
    schedule = _field(manifest, "schedule", list, "manifest")
    if schedule != [n.id for n in graph.compute_nodes() if n.id not in plan.views]:
        raise ValueError("the schedule does not match the graph")
    _check_io(manifest, graph)
    chosen = manifest.get("implementations")  # absent in artifacts written before them
    if chosen is not None and (not isinstance(chosen, list) or len(chosen) != len(schedule)
                               or not all(isinstance(c, str) for c in chosen)):
        raise ValueError("implementations must name one implementation per scheduled node")

    graph_params = {n.attrs["name"]: n.output for n in graph.nodes if n.op == "param"}
    parameters: dict[str, np.ndarray] = {}
    for i, entry in enumerate(_field(manifest, "parameters", list, "manifest")):
        name = _field(entry, "name", str, f"parameters[{i}]")
        member = _field(entry, "member", str, f"parameters[{i}]")
        if name not in graph_params or member not in arrays or \
                not member.startswith("parameters/"):
            raise ValueError(f"parameters[{i}] ({name!r}) is not a parameter of the graph")
        value, want = arrays[member], graph_params[name]
        if value.shape != want.shape or value.dtype != np.dtype(want.dtype):
            raise _fail(path, f"parameter {name!r} is {value.dtype}{list(value.shape)} in "
                              f"{member}, the graph needs {want.dtype}{list(want.shape)}")
        parameters[name] = value
    if set(parameters) != set(graph_params):
        raise ValueError(f"missing values for parameters "
                         f"{sorted(set(graph_params) - set(parameters))[:5]}")

    kernels = _kernel_list(manifest, members, aot)
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
            raise _fail(path, str(err)) from None

    from graphcnn.backends.cpu.registry import launch_mode
    with launch_mode(table=table):  # a node chosen again is measured on the precompiled code
        runner = runner_class(graph, plan, None if chosen is None else dict(zip(schedule, chosen)))
    runner.launch_table = table
    seed = _int(manifest, "seed", "manifest")
    exe = Executable(graph, "cpu", ops_before=_int(manifest, "ops_before", "manifest"),
                     naive_bytes_before=_int(manifest, "naive_bytes_before", "manifest"),
                     param_source=(lambda: parameters) if parameters else None, seed=seed,
                     runner=runner)
    exe.compile_seconds = float(_field(manifest, "compile_seconds", (int, float), "manifest"))
    exe.parameters = parameters
    exe.artifact_path = path
    exe.precompiled = table is not None
    exe._artifact_entries = kernels if table is not None else None
    if table is None and warm_up:
        exe.run(_zero_feeds(exe))
    exe.load_seconds = time.perf_counter() - start
    if kind == "inference":
        return exe
    info = _field(manifest, "training", dict, "manifest")
    loss = _field(info, "loss", str, "training")
    trainable = _field(info, "trainable", list, "training")
    if not set(trainable) <= set(parameters) or not all(isinstance(t, str) for t in trainable):
        raise ValueError("training.trainable names unknown parameters")
    return TrainingStep(exe, parameters, trainable, loss, _int(info, "num_classes", "training"))


def _check_io(manifest: dict[str, Any], graph: Graph) -> None:
    inputs = [{"name": n.attrs["name"], "shape": list(n.output.shape), "dtype": n.output.dtype}
              for n in graph.nodes if n.op == "input"]
    outputs = [{"name": n, "shape": list(v.shape), "dtype": v.dtype}
               for n, v in zip(graph.output_names, graph.outputs)]
    if _field(manifest, "inputs", list, "manifest") != inputs or \
            _field(manifest, "outputs", list, "manifest") != outputs:
        raise ValueError("inputs/outputs do not match the graph")


def _kernel_list(manifest: dict[str, Any], members: dict[str, bytes], aot: Any) -> list[Any]:
    out = []
    for i, k in enumerate(_field(manifest, "kernels", list, "manifest")):
        where = f"kernels[{i}]"
        name = _field(k, "name", str, where)
        signature = _field(k, "signature", list, where)
        restype = _field(k, "restype", str, where)
        symbol = _field(k, "symbol", str, where)
        member = _field(k, "member", str, where)
        imports = _field(k, "imports", list, where)
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


def summarize(path: str | os.PathLike) -> str:
    """What an artifact is, from its manifest alone (nothing loaded or verified): kind,
    versions, target (and whether this machine can run its code), inputs and outputs, the
    precompiled kernel entries and the members."""
    manifest = read_manifest(path)
    made = manifest.get("created_by", {})
    target = manifest.get("target", {})
    members = manifest.get("members", {})
    size = sum(m.get("size", 0) for m in members.values() if isinstance(m, dict))
    try:
        reasons = _target_mismatch(manifest)
    except (ValueError, TypeError, AttributeError):
        reasons = ["unreadable target"]
    here = "this machine runs it" if not reasons else "this machine compiles instead: " + \
        "; ".join(reasons)
    lines = [f"artifact {os.fspath(path)}: {manifest.get('kind')} {manifest.get('name')!r}, "
             f"format {manifest.get('format_version')}, {size / 2**20:.2f} MiB in "
             f"{len(members)} members",
             "made with " + ", ".join(f"{k} {v}" for k, v in made.items()),
             f"compiled for {target.get('triple')}, CPU {target.get('cpu_name')} ({here})"]
    for side in ("inputs", "outputs"):
        for v in manifest.get(side, []):
            lines.append(f"{side[:-1]:7}{v.get('name')}: {v.get('dtype')}{v.get('shape')}")
    training = manifest.get("training")
    if isinstance(training, dict):
        lines.append(f"training step: loss {training.get('loss')}, "
                     f"{len(training.get('trainable', []))} trainable parameters")
    kernels = manifest.get("kernels", [])
    code = sum(members.get(m, {}).get("size", 0) for m in {k.get("member") for k in kernels})
    lines.append(f"precompiled kernel entries: {len(kernels)} ({code:,} bytes of object code)")
    for k in kernels:
        lines.append(f"  {k.get('name')}({', '.join(k.get('signature', []))})")
    lines.append(f"compiled in {manifest.get('compile_seconds')} s; memory plan arena "
                 f"{manifest.get('memory_plan', {}).get('arena_bytes', 0):,} bytes")
    return "\n".join(lines)
