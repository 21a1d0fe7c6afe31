"""Training checkpoints: one ``.npz`` of arrays and one ``.json`` of everything else.

A checkpoint at ``runs/lenet`` (or ``runs/lenet.npz`` / ``runs/lenet.json``: the suffix is
dropped) is the pair of files

- ``runs/lenet.npz``: ``np.savez`` of the model's parameters (``param/<name>``) and the
  optimizer's state arrays (``opt/<key>``); read back with ``allow_pickle=False``;
- ``runs/lenet.json``: the format name and version, the epoch, the history, the optimizer's
  scalars, the schedule's state, the trainer rng's bit-generator state, the input
  normalization, and the SHA-256 of the ``.npz``.

Nothing is pickled, so loading a checkpoint never runs code from it.

Writes are atomic: both files are first written in full to temporary files in the same
directory and fsynced; only then does each replace its predecessor with ``os.replace``,
the ``.npz`` first and the ``.json`` (the commit point) last. A failure while writing
leaves the previous checkpoint whole. The ``.json`` records the hash of its ``.npz``, so
a crash in the instant between the two renames gives a pair that loading reports as
mismatched, rather than silently mixing two epochs.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

FORMAT_NAME = "graphcnn-checkpoint"
FORMAT_VERSION = 1
_PARAM, _OPT = "param/", "opt/"


def checkpoint_paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """The (arrays .npz, metadata .json) pair of files for a checkpoint path."""
    p = Path(path)
    if p.suffix in (".npz", ".json"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".npz"), p.with_name(p.name + ".json")


def checkpoint_exists(path: str | os.PathLike[str]) -> bool:
    """True when the metadata file (the one written last) exists."""
    return checkpoint_paths(path)[1].exists()


def _write_temp(target: Path, write: Callable[[Any], Any]) -> tuple[Path, str]:
    """Write via `write(file object)` to a temporary file next to `target` (same
    directory, so the later os.replace is atomic) and fsync it; returns the temporary
    path and the SHA-256 of its bytes. On any error the temporary file is removed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        return Path(tmp), _sha256(Path(tmp))
    except BaseException:  # KeyboardInterrupt included: never leave a half file behind
        _remove(Path(tmp))
        raise


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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_checkpoint(path: str | os.PathLike[str], parameters: Mapping[str, np.ndarray],
                    optimizer_arrays: Mapping[str, np.ndarray],
                    metadata: Mapping[str, Any]) -> tuple[Path, Path]:
    """Write a checkpoint (see the module docstring); returns the two file paths.

    `metadata` must be JSON-serializable (NumPy scalars and arrays are converted)."""
    npz_path, json_path = checkpoint_paths(path)
    arrays = {_PARAM + k: np.asarray(v) for k, v in parameters.items()}
    arrays.update({_OPT + k: np.asarray(v) for k, v in optimizer_arrays.items()})
    for key, value in arrays.items():
        if value.dtype == object:
            raise TypeError(f"checkpoint array {key!r} has dtype object; only numeric arrays "
                            f"can be saved (checkpoints are never pickled)")
    # Both files are written in full before either replaces anything, so a failure while
    # writing (an exception, a full disk, Ctrl-C) leaves the previous checkpoint as it was.
    # ignore: mypy matches **arrays against savez's `allow_pickle: bool` keyword too (a
    # stub with a typed keyword beside **kwds); the keys start "param/" or "opt/"
    npz_tmp, digest = _write_temp(npz_path,
                                  lambda f: np.savez(f, **arrays))  # type: ignore[arg-type]
    json_tmp = None
    try:
        meta = dict(metadata)
        meta.update(format=FORMAT_NAME, version=FORMAT_VERSION, arrays_sha256=digest)
        text = json.dumps(meta, indent=1, default=_json_default).encode()
        json_tmp, _ = _write_temp(json_path, lambda f: f.write(text))
        os.replace(npz_tmp, npz_path)
        os.replace(json_tmp, json_path)  # the commit point
    except BaseException:
        for tmp in (npz_tmp, json_tmp):
            if tmp is not None:
                _remove(tmp)
        raise
    _fsync_directory(npz_path.parent)
    return npz_path, json_path


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"checkpoint metadata: {type(value).__name__} is not JSON-serializable")


def load_checkpoint(path: str | os.PathLike[str]
                    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, Any]]:
    """Read a checkpoint: (parameters, optimizer arrays, metadata).

    Any missing, truncated, corrupt, mismatched or foreign file raises ValueError naming
    the file (FileNotFoundError when the checkpoint does not exist at all)."""
    npz_path, json_path = checkpoint_paths(path)
    if not json_path.exists():
        raise FileNotFoundError(f"no checkpoint at {json_path}")
    try:
        meta = json.loads(json_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"checkpoint metadata {json_path} is corrupt or truncated "
                         f"(not valid JSON: {exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise ValueError(f"{json_path} is not a graphcnn checkpoint")
    if meta.get("version") != FORMAT_VERSION:
        raise ValueError(f"{json_path}: checkpoint format version {meta.get('version')!r} is "
                         f"not supported (this graphcnn reads version {FORMAT_VERSION})")
    if not npz_path.exists():
        raise ValueError(f"checkpoint arrays {npz_path} are missing (metadata: {json_path})")
    if _sha256(npz_path) != meta.get("arrays_sha256"):
        raise ValueError(f"checkpoint arrays {npz_path} do not match their metadata "
                         f"{json_path} (corrupt, truncated, or from another save)")
    params: dict[str, np.ndarray] = {}
    opt: dict[str, np.ndarray] = {}
    try:
        with np.load(npz_path, allow_pickle=False) as data:
            for key in data.files:
                if key.startswith(_PARAM):
                    params[key[len(_PARAM):]] = data[key]
                elif key.startswith(_OPT):
                    opt[key[len(_OPT):]] = data[key]
                else:
                    raise ValueError(f"unexpected array {key!r}")
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise ValueError(f"checkpoint arrays {npz_path} are corrupt or truncated: {exc}") from None
    return params, opt, meta
