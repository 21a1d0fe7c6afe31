"""Mutations of valid ONNX files and artifacts, and the check every mutated file must pass:
it loads (and an ONNX model compiles and runs on the reference backend), or it fails with a
graphcnn error that has a message; never another exception, a hang or a large allocation.

Shared by tests/test_fuzz_files.py (hypothesis draws the random.Random) and
benchmarks/fuzz_files.py (a longer run from seeds)."""
from __future__ import annotations

import copy
import os
import random
import signal
import tempfile
import time
import tracemalloc
import warnings
from typing import Any, Callable

import numpy as np

HUGE = [2**31, 2**40, 2**62, -1, -(2**40), 0, 10**5, 3]
TIME_LIMIT_S = 20.0
MEMORY_LIMIT = 100 << 20


class Hang(Exception):
    """A case ran past TIME_LIMIT_S."""


class Failure(AssertionError):
    """A case that broke the contract (another exception, a hang, a large allocation)."""


def graphcnn_errors() -> tuple[type, ...]:
    from graphcnn.errors import ArtifactError, GraphBuildError, ShapeError
    from graphcnn.onnx.errors import OnnxImportError
    return (OnnxImportError, ArtifactError, GraphBuildError, ShapeError)


# ---- byte-level mutations --------------------------------------------------------------------

def flip_bytes(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        out[rng.randrange(len(out))] ^= rng.choice([0x01, 0x80, 0xFF, rng.randrange(1, 256)])
    return bytes(out)


def truncate(rng: random.Random, data: bytes) -> bytes:
    return data[:rng.randrange(len(data))]


# ---- ONNX field mutations -------------------------------------------------------------------

def _dims_holders(model: Any) -> list[Any]:
    """Every repeated dims field: initializers, tensor attributes, value infos' shapes."""
    holders: list[Any] = [t.dims for t in model.graph.initializer]
    for node in model.graph.node:
        holders += [a.t.dims for a in node.attribute if a.HasField("t")]
    return holders


def mutate_onnx_fields(rng: random.Random, data: bytes) -> bytes:
    from onnx import AttributeProto, ModelProto
    model = ModelProto()
    model.ParseFromString(data)
    graph = model.graph
    choice = rng.randrange(9)
    if choice == 0:   # a declared input dimension: huge, negative, zero
        dims = [d for v in graph.input for d in v.type.tensor_type.shape.dim]
        if dims:
            rng.choice(dims).dim_value = rng.choice(HUGE)
    elif choice == 1:   # a tensor's dims
        holders = [h for h in _dims_holders(model) if len(h)]
        if holders:
            h = rng.choice(holders)
            h[rng.randrange(len(h))] = rng.choice(HUGE)
    elif choice == 2:   # a tensor's values (shape computations read them)
        tensors = [a.t for n in graph.node for a in n.attribute if a.HasField("t")]
        tensors = [t for t in tensors if len(t.int64_data) or len(t.raw_data)]
        if tensors:
            t = rng.choice(tensors)
            if len(t.int64_data):
                t.int64_data[rng.randrange(len(t.int64_data))] = rng.choice(HUGE)
            else:
                t.raw_data = np.asarray([rng.choice(HUGE)] * (len(t.raw_data) // 8),
                                        np.int64).tobytes()
    elif choice == 3:   # a data type
        tensors = list(graph.initializer) + [a.t for n in graph.node for a in n.attribute
                                             if a.HasField("t")]
        if tensors:
            rng.choice(tensors).data_type = rng.choice([0, 1, 2, 6, 7, 8, 9, 10, 11, 16, 99])
        elif graph.input:
            graph.input[0].type.tensor_type.elem_type = rng.choice([0, 7, 8, 99])
    elif choice == 4:   # an attribute's type or values
        attrs = [a for n in graph.node for a in n.attribute]
        if attrs:
            a = rng.choice(attrs)
            kind = rng.randrange(4)
            if kind == 0:
                a.type = rng.choice([AttributeProto.FLOAT, AttributeProto.INT,
                                     AttributeProto.STRING, AttributeProto.INTS,
                                     AttributeProto.TENSOR, AttributeProto.GRAPH])
            elif kind == 1 and len(a.ints):
                a.ints[rng.randrange(len(a.ints))] = rng.choice(HUGE)
            elif kind == 2:
                a.i = rng.choice(HUGE)
            else:
                a.ints.extend([rng.choice(HUGE)])
    elif choice == 5 and graph.node:   # a node removed
        del graph.node[rng.randrange(len(graph.node))]
    elif choice == 6 and graph.node:   # a node's input or output renamed
        node = rng.choice(graph.node)
        names = node.input if node.input and rng.random() < 0.5 else node.output
        if len(names):
            names[rng.randrange(len(names))] = rng.choice(["", "nowhere", graph.input[0].name
                                                           if graph.input else "x"])
    elif choice == 7 and graph.node:   # a node duplicated, or its op changed
        node = rng.choice(graph.node)
        if rng.random() < 0.5:
            graph.node.extend([copy.deepcopy(node)])
        else:
            node.op_type = rng.choice(["Conv", "Add", "Reshape", "ConstantOfShape", "Gather",
                                       "Concat", "Pad", "Cast", "MaxPool", "Gemm", "Nope"])
    else:   # the opset
        model.opset_import[0].version = rng.choice([1, 10, 11, 13, 21, 22, 2**40])
    return bytes(model.SerializeToString())


# ---- artifact mutations ------------------------------------------------------------------------

def _json_paths(data: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(data, dict):
        for k, v in data.items():
            out += _json_paths(v, path + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += _json_paths(v, path + (i,))
    return out


_VALUES: list[Any] = HUGE + [None, "", "float64", "int64", "x" * 20, [], {}, [2**40, 2**40],
                             [-1], True, 1.5, {"$array": "constants/0.npy"}]


def mutate_manifest(rng: random.Random, manifest: dict[str, Any]) -> None:
    """Set one field anywhere in the manifest (weighted to the sizes: members, arrays,
    memory plan, input shapes) to a hostile value, or delete it."""
    paths = [p for p in _json_paths(manifest) if p]
    focus = [p for p in paths if p[0] in ("members", "arrays", "memory_plan", "inputs",
                                          "outputs", "parameters", "kernels")]
    path = rng.choice(focus if focus and rng.random() < 0.7 else paths)
    parent = manifest
    for key in path[:-1]:
        parent = parent[key]
    if rng.random() < 0.15:
        del parent[path[-1]]
    else:
        parent[path[-1]] = copy.deepcopy(rng.choice(_VALUES))


def mutate_artifact(rng: random.Random, data: bytes) -> bytes:
    from hostile_files import read_artifact, write_artifact
    choice = rng.randrange(6)
    if choice == 0:
        return flip_bytes(rng, data)
    if choice == 1:
        return truncate(rng, data)
    manifest, members = read_artifact(data)
    rehash = rng.random() < 0.7
    if choice == 2:
        mutate_manifest(rng, manifest)
        return write_artifact(manifest, members, rehash=False)
    name = rng.choice(sorted(members))
    if choice == 3:     # removed
        del members[name]
    elif choice == 4:   # renamed
        members[rng.choice(["constants/99.npy", "code/9.o", "x", name + "x"])] = \
            members.pop(name)
    else:               # content replaced: an array of another shape/dtype, or junk
        members[name] = rng.choice([b"", b"\x93NUMPY\x01\x00", members[name][:40],
                                    members[name] * 2, bytes(64)])
    out = write_artifact(manifest, members, rehash=rehash)
    if rng.random() < 0.2:   # a duplicate entry
        import io
        import zipfile
        buf = io.BytesIO(out)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with zipfile.ZipFile(buf, "a") as zf:
                zf.writestr(rng.choice(["manifest.json", name]), b"{}")
        out = buf.getvalue()
    return out


# ---- the check ---------------------------------------------------------------------------------

def _alarm(signum: int, frame: Any) -> None:
    raise Hang(f"ran past {TIME_LIMIT_S} s")


def load_onnx(data: bytes) -> None:
    import graphcnn as gc
    model = gc.onnx.load(data)
    exe = gc.compile(model, batch_size=1, backend="reference")
    exe.run(exe.zero_feeds())


def load_artifact(data: bytes) -> None:
    import graphcnn as gc
    fd, path = tempfile.mkstemp(suffix=".gcnn")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gc.load(path, warm_up=False)
    finally:
        os.unlink(path)


def run_case(load: Callable[[bytes], None], data: bytes) -> str:
    """Run load(data) under a time bound and tracemalloc: "ok", or the graphcnn error's
    type name; raises Failure for anything else (another exception, a message-less error,
    a hang, an allocation over MEMORY_LIMIT)."""
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, TIME_LIMIT_S)
    tracemalloc.start()
    start = time.perf_counter()
    outcome, error = "ok", None
    try:
        load(data)
    except Hang as exc:
        error = exc
    except graphcnn_errors() as exc:
        outcome = type(exc).__name__
        if not str(exc).strip():
            error = exc
    except Exception as exc:   # the contract: never anything else
        error = exc
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    if error is not None:
        raise Failure(f"{type(error).__name__}: {str(error)[:300]} "
                      f"({time.perf_counter() - start:.1f} s)") from error
    if peak > MEMORY_LIMIT:
        raise Failure(f"allocated {peak / 2**20:.0f} MiB ({outcome})")
    return outcome


def base_files(artifact_path: str) -> dict[str, tuple[list[bytes], Callable[..., bytes],
                                                      Callable[[bytes], None]]]:
    """Per kind: the valid files, the mutator, the loader."""
    import hostile_files as hf
    with open(artifact_path, "rb") as f:
        artifact = f.read()

    def onnx_mutation(rng: random.Random, data: bytes) -> bytes:
        pick = rng.randrange(4)
        if pick == 0:
            return flip_bytes(rng, data)
        if pick == 1:
            return truncate(rng, data)
        return mutate_onnx_fields(rng, data)

    return {"onnx": ([hf.conv_net_onnx(), hf.shape_net_onnx()], onnx_mutation, load_onnx),
            "artifact": ([artifact], mutate_artifact, load_artifact)}


