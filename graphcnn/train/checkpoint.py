"""Training checkpoints: one file, one commit point, everything hashed.

A checkpoint at ``runs/lenet`` (or ``runs/lenet.ckpt``; the older suffixes ``.npz`` and
``.json`` name the same checkpoint) is the single file ``runs/lenet.ckpt``:

    b"GCNNCKPT"  uint32 version  uint64 n        (little-endian; 20 bytes)
    n bytes of JSON: {"format", "version", "metadata": {...}, "arrays": [{"name",
        "dtype", "shape", "offset", "nbytes"}, ...]}
    zero padding to a multiple of 64, then the arrays' raw bytes, each at its offset
        (relative to the start of this data section, 64-byte aligned), in table order
    32 bytes: the SHA-256 of every byte before them

The arrays are the model's parameters (``param/<name>``) and the optimizer's state
(``opt/<kind>/<name>``); the metadata is everything else (epoch, history, optimizer
scalars, schedule, rng, normalization). Nothing is pickled or evaluated: arrays are raw
numeric bytes of an allow-listed dtype, the rest is JSON.

Surviving any kill: a save writes the whole file under a temporary name in the same
folder, fsyncs it, and only then renames it over the previous checkpoint (``os.replace``,
atomic): the rename is the one commit point, so a reader sees the previous checkpoint or
the new one, whole, whenever the writer dies. Temporary files of killed saves are removed
by the next save. A lock file (graphcnn/train/checkpoint_lock.py) refuses a second live
writer of the same path with CheckpointInUseError.

Loading checks the hash over the whole file (streamed: memory stays bounded by the
arrays' own size, which must add up to the file's size) and every field of the table
before any array is read; what the metadata means is checked by its user (the Trainer:
graphcnn/train/checkpoint_state.py) before anything is restored. A bad file raises
CheckpointError naming it. The older two-file format (``.npz`` + ``.json``) is still read.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import struct
import tempfile
import threading
from pathlib import Path
from typing import Any, BinaryIO, Mapping

import numpy as np

from graphcnn.errors import CheckpointError
from graphcnn.train.checkpoint_lock import CheckpointLock, remove_stale_temps, temp_prefix

FORMAT_NAME = "graphcnn-checkpoint"
FORMAT_VERSION = 2
SUFFIX = ".ckpt"
MAGIC = b"GCNNCKPT"
_PREFIX = struct.Struct("<8sIQ")
_ALIGN = 64
_DIGEST = 32
_PARAM, _OPT = "param/", "opt/"
# Limits on what a file may declare (checked before anything is allocated)
MAX_HEADER_BYTES = 16 << 20   # a real header is kilobytes: history, names, shapes
MAX_ARRAYS = 100_000
MAX_NDIM = 32
MAX_NAME_CHARS = 4096
# Numeric dtypes only, stored little-endian: nothing else is ever read
DTYPES = {np.dtype(t).str: np.dtype(t) for t in (
    "<f2", "<f4", "<f8", "|i1", "<i2", "<i4", "<i8", "|u1", "<u2", "<u4", "<u8", "|b1")}
_save_lock = threading.Lock()   # saves from threads of one process take turns


def checkpoint_file(path: str | os.PathLike[str]) -> Path:
    """The file of a checkpoint path: ``run``, ``run.ckpt``, ``run.npz``, ``run.json`` ->
    ``run.ckpt``."""
    p = Path(path)
    if p.suffix in (SUFFIX, ".npz", ".json"):
        p = p.with_suffix("")
    return p.with_name(p.name + SUFFIX)


def checkpoint_paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """The (arrays .npz, metadata .json) pair of the older two-file format."""
    stem = checkpoint_file(path).with_suffix("")
    return stem.with_name(stem.name + ".npz"), stem.with_name(stem.name + ".json")


def checkpoint_exists(path: str | os.PathLike[str]) -> bool:
    """True when there is a checkpoint at `path` (in either format)."""
    return checkpoint_file(path).exists() or checkpoint_paths(path)[1].exists()


# ---- writing ------------------------------------------------------------------------------
def save_checkpoint(path: str | os.PathLike[str], parameters: Mapping[str, np.ndarray],
                    optimizer_arrays: Mapping[str, np.ndarray],
                    metadata: Mapping[str, Any]) -> Path:
    """Write a checkpoint (see the module docstring); returns its file.

    `metadata` must be JSON-serializable (NumPy scalars and arrays are converted; NaN and
    infinities are refused). Raises CheckpointInUseError when another process writes the
    same path."""
    target = checkpoint_file(path)
    arrays = {_PARAM + k: _savable(_PARAM + k, v) for k, v in parameters.items()}
    arrays.update({_OPT + k: _savable(_OPT + k, v) for k, v in optimizer_arrays.items()})
    table, offset = [], 0
    for name, a in arrays.items():
        table.append({"name": name, "dtype": a.dtype.str, "shape": list(a.shape),
                      "offset": offset, "nbytes": a.nbytes})
        offset = _aligned(offset + a.nbytes)
    header = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "metadata": dict(metadata),
              "arrays": table}
    try:
        text = json.dumps(header, default=_json_default, allow_nan=False,
                          separators=(",", ":")).encode()
    except ValueError as exc:
        raise ValueError(f"checkpoint metadata for {target} holds a NaN or an infinity, "
                         f"which JSON cannot hold ({exc})") from None
    with _save_lock, CheckpointLock(target):
        # holding the lock, no live writer of this path has a temporary file open
        remove_stale_temps(target, *checkpoint_paths(target))
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=temp_prefix(target), suffix=".tmp",
                                        dir=target.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as f:
                _write(f, text, arrays)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)   # the commit point
        except BaseException:  # KeyboardInterrupt included: leave no half file behind
            _remove(tmp)
            raise
        _fsync_directory(target.parent)
    return target


def _savable(name: str, value: Any) -> np.ndarray:
    a = np.asarray(value)
    if a.dtype.newbyteorder("<").str not in DTYPES and a.dtype.str not in DTYPES:
        raise TypeError(f"checkpoint array {name!r} has dtype {a.dtype}; only numeric arrays "
                        f"can be saved (checkpoints are never pickled)")
    return np.asarray(a, a.dtype.newbyteorder("<"), order="C")  # keeps 0-d arrays 0-d


def _aligned(n: int) -> int:
    return -(-n // _ALIGN) * _ALIGN


def _write(f: BinaryIO, header: bytes, arrays: Mapping[str, np.ndarray]) -> None:
    digest = hashlib.sha256()

    def put(data: bytes | memoryview) -> None:
        f.write(data)
        digest.update(data)

    put(_PREFIX.pack(MAGIC, FORMAT_VERSION, len(header)) + header)
    put(bytes(_aligned(_PREFIX.size + len(header)) - _PREFIX.size - len(header)))
    for a in arrays.values():
        put(a.reshape(-1).view(np.uint8).data)
        put(bytes(_aligned(a.nbytes) - a.nbytes))
    f.write(digest.digest())


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"checkpoint metadata: {type(value).__name__} is not JSON-serializable")


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories can't be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---- reading ------------------------------------------------------------------------------
def load_checkpoint(path: str | os.PathLike[str],
                    expected: Mapping[str, tuple[int, ...]] | None = None, model_name: str = ""
                    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, Any]]:
    """Read a checkpoint: (parameters, optimizer arrays, metadata).

    FileNotFoundError when there is none; CheckpointError (a ValueError) naming the file
    for anything wrong in it. With `expected` (parameter name -> shape), parameters that
    do not match are refused before any array is read. The metadata gets "format" and
    "version" keys."""
    target = checkpoint_file(path)
    if not target.exists():
        legacy = checkpoint_paths(path)
        if legacy[1].exists():
            from graphcnn.train.checkpoint_legacy import load_legacy
            params, opt, meta = load_legacy(*legacy)
            if expected is not None:
                check_parameters(legacy[1], {k: v.shape for k, v in params.items()}, expected,
                                 model_name)
            return params, opt, meta
        raise FileNotFoundError(f"no checkpoint at {target}")
    try:
        with open(target, "rb") as f:
            return _read(f, target, expected, model_name)
    except OSError as exc:
        raise CheckpointError(f"checkpoint {target} cannot be read: {exc}") from None


def _read(f: io.BufferedReader, target: Path, expected: Mapping[str, tuple[int, ...]] | None,
          model_name: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, Any]]:
    where = f"checkpoint {target}"   # every message names the file
    size = os.fstat(f.fileno()).st_size
    prefix = f.read(_PREFIX.size)
    if len(prefix) < _PREFIX.size or prefix[:8] != MAGIC:
        raise CheckpointError(f"{where} is not a graphcnn checkpoint (or is truncated)")
    _, version, header_len = _PREFIX.unpack(prefix)
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{where}: format version {version} is not "
                              f"supported (this graphcnn reads version {FORMAT_VERSION})")
    data_start = _aligned(_PREFIX.size + header_len)
    if header_len > MAX_HEADER_BYTES or data_start + _DIGEST > size:
        raise CheckpointError(f"{where} is truncated or corrupt (its header declares "
                              f"{header_len} bytes; the file has {size})")
    _check_digest(f, where, size)
    f.seek(_PREFIX.size)
    header = _parse_header(f.read(header_len), where)
    table = _check_table(header.get("arrays"), where, size - _DIGEST - data_start)
    metadata = header.get("metadata")
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{where}: the metadata is a {type(metadata).__name__}, not "
                              f"an object")
    if expected is not None:
        check_parameters(target, {e["name"][len(_PARAM):]: tuple(e["shape"]) for e in table
                                 if e["name"].startswith(_PARAM)}, expected, model_name)
    params: dict[str, np.ndarray] = {}
    opt: dict[str, np.ndarray] = {}
    for entry in table:
        dtype = DTYPES[entry["dtype"]]
        array = np.empty(math.prod(entry["shape"]), dtype)
        f.seek(data_start + entry["offset"])
        if entry["nbytes"] and f.readinto(array.view(np.uint8).data) != entry["nbytes"]:
            raise CheckpointError(f"{where} is truncated (array {entry['name']!r})")
        array = array.reshape(entry["shape"])
        name: str = entry["name"]
        if name.startswith(_PARAM):
            params[name[len(_PARAM):]] = array
        else:
            opt[name[len(_OPT):]] = array
    metadata = dict(metadata, format=FORMAT_NAME, version=FORMAT_VERSION)
    return params, opt, metadata


def _check_digest(f: BinaryIO, where: str, size: int) -> None:
    """SHA-256 of everything but the last 32 bytes, in blocks of 1 MiB."""
    digest = hashlib.sha256()
    f.seek(0)
    left = size - _DIGEST
    while left > 0:
        block = f.read(min(left, 1 << 20))
        if not block:
            break
        digest.update(block)
        left -= len(block)
    if left or f.read(_DIGEST) != digest.digest():
        raise CheckpointError(f"{where} is corrupt or truncated (its SHA-256 "
                              f"does not match its contents)")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _parse_header(raw: bytes, where: str) -> dict[str, Any]:
    try:
        header = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"{where}: the header is not valid JSON "
                              f"({str(exc)[:200]})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{where} is not a graphcnn checkpoint")
    if header.get("version") != FORMAT_VERSION:
        raise CheckpointError(f"{where}: the header's version {str(header.get('version'))[:40]} "
                              f"is not {FORMAT_VERSION}")
    return header


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_table(table: Any, where: str, data_bytes: int) -> list[dict[str, Any]]:
    """Every entry well typed, the arrays laid out back to back exactly as a save writes
    them, and filling the data section exactly (so nothing is allocated that the file
    does not hold)."""
    if not isinstance(table, list) or len(table) > MAX_ARRAYS:
        raise CheckpointError(f"{where}: the array table is not a list of at most "
                              f"{MAX_ARRAYS} entries")
    names: set[str] = set()
    offset = 0
    for i, e in enumerate(table):
        bad = _bad_entry(e, names)
        if bad:
            raise CheckpointError(f"{where}: array entry {i} {bad}")
        if e["offset"] != offset:
            raise CheckpointError(f"{where}: array {e['name']!r} is at offset {e['offset']}, "
                                  f"expected {offset}")
        names.add(e["name"])
        offset = _aligned(offset + e["nbytes"])
        if offset > data_bytes:
            break
    if offset != data_bytes:
        raise CheckpointError(f"{where} is truncated or corrupt: its arrays take {offset} "
                              f"bytes, the file holds {data_bytes}")
    return table


def _bad_entry(e: Any, names: set[str]) -> str | None:
    """What is wrong with one table entry, or None."""
    if not isinstance(e, dict) or set(e) != {"name", "dtype", "shape", "offset", "nbytes"}:
        return "is not {name, dtype, shape, offset, nbytes}"
    name, shape = e["name"], e["shape"]
    if not (isinstance(name, str) and 0 < len(name) <= MAX_NAME_CHARS
            and name.startswith((_PARAM, _OPT))):
        return f"has a bad name {str(name)[:80]!r} (expected 'param/...' or 'opt/...')"
    if name in names:
        return f"repeats the name {name!r}"
    if not isinstance(e["dtype"], str) or e["dtype"] not in DTYPES:
        return f"{name!r} has dtype {str(e['dtype'])[:40]!r}, not a numeric dtype"
    if not (isinstance(shape, list) and len(shape) <= MAX_NDIM
            and all(_is_int(d) and d >= 0 for d in shape)):
        return f"{name!r} has a bad shape {str(shape)[:80]} (a list of sizes >= 0)"
    if not (_is_int(e["offset"]) and _is_int(e["nbytes"])):
        return f"{name!r} has a non-integer offset or size"
    if e["nbytes"] != math.prod(shape) * DTYPES[e["dtype"]].itemsize:
        return f"{name!r} declares {e['nbytes']} bytes for shape {shape} of {e['dtype']}"
    return None


def check_parameters(where: Path | str, found: Mapping[str, tuple[int, ...]],
                     expected: Mapping[str, tuple[int, ...]], model_name: str = "") -> None:
    """The checkpoint's parameter names and shapes are exactly the model's."""
    head = f"checkpoint {where} does not fit model {model_name!r}"
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{head}: its parameters lack {missing[:8]} and have "
                              f"unexpected {unexpected[:8]}")
    for name, shape in expected.items():
        if tuple(found[name]) != tuple(shape):
            raise CheckpointError(f"{head}: parameter {name!r} has shape "
                                  f"{tuple(found[name])} in the checkpoint, the model "
                                  f"expects {tuple(shape)}")
