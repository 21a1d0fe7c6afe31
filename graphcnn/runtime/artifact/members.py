"""Reading an artifact's members with bounded work: only the members the manifest's graph,
parameters and kernels use, each checked against the size the manifest implies before a
byte of it is inflated, and read in chunks straight into its array while it is hashed.

1. `member_plan(manifest)`: what each used member must be: an array (dtype and shape from
   the manifest's `arrays`; at most GRAPHCNN_MAX_TENSOR_BYTES) or object code (at most
   MAX_CODE_BYTES). A member the manifest lists that nothing uses is an error, found
   before anything is read (a listed gigabyte of padding costs nothing).
2. `check_entries`: the zip's entries are exactly the listed members; each
   entry's size is the one recorded, within the bound of step 1, and its compressed size
   is plausible for its method (stored: equal; deflate: at most ~1032:1), so a lying zip
   header cannot make us inflate more than the manifest allows.
3. `read_array` / `read_code`: the member is streamed: the .npy header is parsed (no
   pickle: numpy's literal parser) and must match the manifest, the array is allocated
   once at its final size and filled chunk by chunk while the SHA-256 is updated; the
   digest is checked before the array is used.
"""
from __future__ import annotations

import hashlib
import re
import zipfile
import zlib
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from graphcnn import limits
from graphcnn.errors import LimitError
from graphcnn.runtime.artifact.format import ARRAY_DTYPES, MANIFEST, fail, field, integer

MAX_CODE_BYTES = 256 << 20     # one kernel object file (a ResNet's are tens of KiB)
NPY_HEADER_MAX = 1 << 16       # a .npy header (magic, length, dict): version 1 caps it here
DEFLATE_MAX_RATIO = 1100       # deflate cannot do better than ~1032:1
CHUNK = 1 << 20
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Expected:
    """What a used member must be: an array of `dtype` and `shape`, or code."""
    kind: str                       # "array" or "code"
    dtype: str = ""
    shape: tuple[int, ...] = ()

    @property
    def nbytes(self) -> int:
        return limits.nbytes(self.shape, np.dtype(self.dtype).itemsize)

    def max_size(self) -> int:
        return self.nbytes + NPY_HEADER_MAX if self.kind == "array" else MAX_CODE_BYTES


def array_refs(data: Any, out: set[str], depth: int = 0) -> set[str]:
    """The names of the {"$array": name} references anywhere in the graph's JSON."""
    if depth > 64:
        raise ValueError("graph nested too deeply")
    if isinstance(data, dict):
        if len(data) == 1 and isinstance(data.get("$array"), str):
            out.add(data["$array"])
        for v in data.values():
            array_refs(v, out, depth + 1)
    elif isinstance(data, list):
        for v in data:
            array_refs(v, out, depth + 1)
    return out


def _array_meta(arrays: dict[str, Any], name: str) -> Expected:
    meta = arrays.get(name)
    if meta is None or not name.endswith(".npy"):
        raise ValueError(f"{name!r} is used but is not a stored .npy array")
    shape = field(meta, "shape", list, f"arrays[{name!r}]")
    dtype = field(meta, "dtype", str, f"arrays[{name!r}]")
    if dtype not in ARRAY_DTYPES or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise ValueError(f"arrays[{name!r}] has an invalid dtype or shape")
    return Expected("array", dtype, tuple(shape))


def member_plan(manifest: dict[str, Any]) -> dict[str, Expected]:
    """Every member the manifest uses, and what it must be (a ValueError says what is
    malformed)."""
    arrays = field(manifest, "arrays", dict, "manifest")
    used = array_refs(field(manifest, "graph", dict, "manifest"), set())
    for i, entry in enumerate(field(manifest, "parameters", list, "manifest")):
        used.add(field(entry, "member", str, f"parameters[{i}]"))
    plan = {name: _array_meta(arrays, name) for name in sorted(used)}
    for name in sorted(set(arrays) - used):
        raise ValueError(f"arrays[{name!r}] is not used by the graph or the parameters")
    for i, k in enumerate(field(manifest, "kernels", list, "manifest")):
        member = field(k, "member", str, f"kernels[{i}]")
        if member in plan and plan[member].kind != "code":
            raise ValueError(f"kernels[{i}].member {member!r} is an array")
        plan[member] = Expected("code")
    return plan


def check_entries(zf: zipfile.ZipFile, path: str, manifest: dict[str, Any],
                  plan: dict[str, Expected]) -> dict[str, tuple[int, str]]:
    """The zip's entries against the manifest and the plan (module docstring, step 2);
    returns each member's (size, sha256). Reads no member's data."""
    listed = field(manifest, "members", dict, "manifest")
    present = set(zf.namelist()) - {MANIFEST}   # each once: parse_manifest checked
    for name in sorted(set(listed) - present):
        raise fail(path, f"missing member {name}")
    for name in sorted(present - set(listed)):
        raise fail(path, f"unexpected member {name} (not listed in the manifest)")
    for name in sorted(set(plan) - set(listed)):
        raise fail(path, f"missing member {name}")
    for name in sorted(set(listed) - set(plan)):
        raise fail(path, f"member {name} is listed in the manifest but nothing in the "
                         f"artifact uses it")
    records = {}
    for name, meta in listed.items():
        size = integer(meta, "size", f"members[{name!r}]")
        digest = field(meta, "sha256", str, f"members[{name!r}]")
        if not _SHA256.match(digest):
            raise ValueError(f"members[{name!r}].sha256 is not a SHA-256 digest")
        expected = plan[name]
        if expected.kind == "array":
            try:
                limits.check_bytes(expected.nbytes, f"array {name}: "
                                   f"{expected.dtype}{list(expected.shape)}")
            except LimitError as err:
                raise fail(path, str(err)) from None
        if size > expected.max_size():
            what = f"a {expected.dtype}{list(expected.shape)} array" \
                if expected.kind == "array" else "a kernel's object code"
            raise fail(path, f"member {name} holds {size} bytes, more than {what} takes "
                             f"({expected.max_size()} at most)")
        info = zf.getinfo(name)
        if info.file_size != size:   # checked before inflating anything
            raise fail(path, f"member {name} is corrupted (it is {info.file_size} bytes, the "
                             f"manifest says {size})")
        if info.compress_type == zipfile.ZIP_STORED:
            plausible = info.compress_size == size
        elif info.compress_type == zipfile.ZIP_DEFLATED:
            plausible = size <= info.compress_size * DEFLATE_MAX_RATIO + 4096
        else:
            raise fail(path, f"member {name} uses compression method {info.compress_type} "
                             f"(artifacts are stored or deflated)")
        if not plausible:
            raise fail(path, f"member {name} is corrupted ({info.compress_size} compressed "
                             f"bytes cannot hold {size})")
        records[name] = (size, digest)
    return records


class _Hashing:
    """A member's stream, hashed and counted as it is read."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self.handle.read(n)
        self.digest.update(data)
        self.count += len(data)
        return data


def _stream(zf: zipfile.ZipFile, path: str, name: str, size: int, digest: str,
            fill: Any) -> Any:
    """Open member `name`, let fill(reader) read it, check that exactly `size` bytes of
    SHA-256 `digest` were read; what fill returned."""
    try:
        with zf.open(name) as handle:
            reader = _Hashing(handle)
            result = fill(reader)
            if reader.read(1):
                raise fail(path, f"member {name} is longer than the manifest says")
    except (zipfile.BadZipFile, EOFError, OSError, RuntimeError, NotImplementedError,
            zlib.error) as err:
        raise fail(path, f"member {name} is corrupted or truncated ({err})") from None
    if reader.count != size or reader.digest.hexdigest() != digest:
        raise fail(path, f"member {name} is corrupted (its SHA-256 does not match the "
                         f"manifest)")
    return result


def _fill(reader: _Hashing, out: memoryview, path: str, name: str) -> None:
    pos = 0
    while pos < len(out):
        chunk = reader.read(min(CHUNK, len(out) - pos))
        if not chunk:
            raise fail(path, f"member {name} is truncated")
        out[pos:pos + len(chunk)] = chunk
        pos += len(chunk)


def read_array(zf: zipfile.ZipFile, path: str, name: str, record: tuple[int, str],
               expected: Expected) -> np.ndarray:
    """A .npy member of the expected dtype and shape, read without unpickling into one
    array allocated at its final size."""
    from numpy.lib import format as npy

    def fill(reader: _Hashing) -> np.ndarray:
        try:
            version = npy.read_magic(reader)
            if version == (1, 0):
                shape, fortran, dtype = npy.read_array_header_1_0(reader)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = npy.read_array_header_2_0(reader)
            else:
                raise ValueError(f"unknown .npy version {version}")
        except (ValueError, EOFError, SyntaxError, TypeError) as err:
            raise fail(path, f"member {name} is not a plain .npy array ({err})") from None
        if dtype.hasobject:
            raise fail(path, f"member {name} is not a plain .npy array (it holds Python "
                             f"objects)")
        if dtype != np.dtype(expected.dtype) or tuple(shape) != expected.shape:
            raise fail(path, f"member {name} holds {dtype}{list(shape)}, the manifest says "
                             f"{expected.dtype}{list(expected.shape)}")
        if fortran and len(shape) > 1:
            raise fail(path, f"member {name} is a Fortran-ordered array (artifacts store "
                             f"C order)")
        if reader.count + expected.nbytes != record[0]:
            raise fail(path, f"member {name} is corrupted (its size does not match its "
                             f"header)")
        array = np.empty(expected.shape, np.dtype(expected.dtype))
        _fill(reader, array.reshape(-1).view(np.uint8).data, path, name)
        return array

    array: np.ndarray = _stream(zf, path, name, record[0], record[1], fill)
    return array


def read_code(zf: zipfile.ZipFile, path: str, name: str, record: tuple[int, str]) -> bytes:
    """An object-code member (its size was bounded by check_entries)."""
    def fill(reader: _Hashing) -> bytes:
        out = bytearray(record[0])
        _fill(reader, memoryview(out), path, name)
        return bytes(out)

    data: bytes = _stream(zf, path, name, record[0], record[1], fill)
    return data
