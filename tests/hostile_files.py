"""Hostile and valid small files for the file-safety tests (tests/test_file_limits.py,
tests/test_fuzz_files.py) and the scripts benchmarks/hostile_files.py and
benchmarks/fuzz_files.py: each builder returns the bytes of a file."""
from __future__ import annotations

import hashlib
import io
import json
import zipfile
from typing import Any

import numpy as np

GIB = 1 << 30


def _model(nodes: list[Any], inputs: list[Any], outputs: list[Any],
           initializers: list[Any] = (), opset: int = 13) -> bytes:
    from onnx import helper
    graph = helper.make_graph(nodes, "hostile", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7
    return model.SerializeToString()


def constant_of_shape_onnx(shape: tuple[int, ...] = (400_000_000, 4)) -> bytes:
    """A ~130-byte file whose ConstantOfShape [4e8, 4] (6.4 GB of float32) feeds an Add."""
    from onnx import TensorProto, helper
    nodes = [helper.make_node("Constant", [], ["s"], value=helper.make_tensor(
                 "s", TensorProto.INT64, [len(shape)], list(shape))),
             helper.make_node("ConstantOfShape", ["s"], ["c"]),
             helper.make_node("Add", ["x", "c"], ["y"])]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])


def huge_input_onnx(dims: tuple[int, ...] = (100_000, 100_000, 100_000)) -> bytes:
    """A model whose input is declared [N, 1e5, 1e5, 1e5] (4e15 bytes per sample)."""
    from onnx import TensorProto, helper
    nodes = [helper.make_node("Relu", ["x"], ["y"])]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                        ["N", *dims])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])


def conv_net_onnx(kernel_shape: list[int] | None = None, seed: int = 0) -> bytes:
    """A small valid conv net: Conv(3x3, 2->4) -> Relu -> MaxPool -> Flatten -> Gemm.
    `kernel_shape` overrides the Conv's attribute (a contradicting one is hostile)."""
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.standard_normal((4, 2, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b")
    fc = numpy_helper.from_array(rng.standard_normal((3, 16)).astype(np.float32), "fc")
    conv_attrs: dict[str, Any] = dict(pads=[1, 1, 1, 1], strides=[1, 1],
                                      kernel_shape=kernel_shape or [3, 3])
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv1", **conv_attrs),
             helper.make_node("Relu", ["c"], ["r"], name="relu1"),
             helper.make_node("MaxPool", ["r"], ["p"], name="pool1", kernel_shape=[2, 2],
                              strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten", axis=1),
             helper.make_node("Gemm", ["f", "fc"], ["y"], name="fc", transB=1)]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 4, 4])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                  [w, b, fc])


def shape_net_onnx() -> bytes:
    """A valid model with the shape computations exporters write (Shape -> Gather ->
    Unsqueeze -> Concat -> Reshape) and a ConstantOfShape, for the fuzzer to mutate."""
    from onnx import TensorProto, helper
    i64 = TensorProto.INT64
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Constant", [], ["zero"], value=helper.make_tensor("z", i64, [], [0])),
             helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
             helper.make_node("Constant", [], ["axes"], value=helper.make_tensor("a", i64, [1], [0])),
             helper.make_node("Unsqueeze", ["n", "axes"], ["n1"]),
             helper.make_node("Constant", [], ["rest"], value=helper.make_tensor("r", i64, [1], [-1])),
             helper.make_node("Concat", ["n1", "rest"], ["target"], axis=0),
             helper.make_node("Reshape", ["x", "target"], ["flat"]),
             helper.make_node("Constant", [], ["cs"], value=helper.make_tensor("c", i64, [1], [8])),
             helper.make_node("ConstantOfShape", ["cs"], ["ones"],
                              value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])),
             helper.make_node("Add", ["flat", "ones"], ["y"])]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 2, 2])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])


# ---- artifacts ------------------------------------------------------------------------------

def small_artifact(path: str) -> None:
    """gc.save of a small conv net (batch 1) at `path`."""
    import graphcnn as gc
    from graphcnn import nn
    gc.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(8, 3), input_shape=(1, 4, 4))
    gc.save(gc.compile(model, batch_size=1), path)


def read_artifact(data: bytes) -> tuple[dict[str, Any], dict[str, bytes]]:
    """(manifest, members) of an artifact's bytes."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    return json.loads(members.pop("manifest.json")), members


def write_artifact(manifest: dict[str, Any], members: dict[str, Any], rehash: bool = True,
                   extra: dict[str, str] | None = None) -> bytes:
    """An artifact's bytes from a manifest and members (bytes, or a file path for a big
    member, streamed in); `rehash` records each member's true size and SHA-256; `extra`:
    members written from files but not listed."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        if rehash:
            records = {}
            for name, data in members.items():
                records[name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            manifest["members"] = records
        zf.writestr("manifest.json", json.dumps(manifest))
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def unused_member_artifact(valid_path: str, out_path: str, size: int = GIB) -> None:
    """The valid artifact at `valid_path` plus a listed but unused member of `size` zero
    bytes (deflated: ~1 MB per GiB), written to `out_path` without holding it in memory."""
    with open(valid_path, "rb") as f:
        manifest, members = read_artifact(f.read())
    digest = hashlib.sha256()
    block = bytes(1 << 20)
    for _ in range(size // len(block)):
        digest.update(block)
    manifest["members"]["constants/unused.npy"] = {"size": size // len(block) * len(block),
                                                    "sha256": digest.hexdigest()}
    with zipfile.ZipFile(out_path, "w") as zf:
        zf.writestr("manifest.json", json.dumps(manifest))
        for name, data in members.items():
            zf.writestr(name, data)
        info = zipfile.ZipInfo("constants/unused.npy")
        info.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(info, "w", force_zip64=True) as handle:
            for _ in range(size // len(block)):
                handle.write(block)


def zip_bomb_artifact(out_path: str, inflated: int = 64 << 20, declared: int = 100) -> None:
    """An archive whose manifest.json inflates to `inflated` bytes of spaces (~1000:1)
    while its zip headers declare `declared` bytes."""
    block = b" " * (1 << 20)
    with zipfile.ZipFile(out_path, "w") as zf:
        info = zipfile.ZipInfo("manifest.json")
        info.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(info, "w", force_zip64=True) as handle:
            for _ in range(inflated // len(block)):
                handle.write(block)
    data = bytearray(open(out_path, "rb").read())
    # the central directory's record (what readers trust): uncompressed size at +24
    central = data.rindex(b"PK\x01\x02")
    data[central + 24:central + 28] = declared.to_bytes(4, "little")
    with open(out_path, "wb") as f:
        f.write(bytes(data))
