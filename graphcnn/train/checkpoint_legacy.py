"""The older two-file checkpoint format (version 1), read only: ``run.npz`` (``np.savez``
of ``param/<name>`` and ``opt/<key>`` arrays) and ``run.json`` (the metadata, with the
SHA-256 of the ``.npz``). The next save writes the single-file format beside them.

Read with the same care as the new format: the hash first, then every ``.npz`` member
checked (stored uncompressed, a numeric dtype, a declared size that is exactly the
member's) before it is read with ``allow_pickle=False``.
"""
from __future__ import annotations

import hashlib
import json
import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from graphcnn.errors import CheckpointError

FORMAT_NAME = "graphcnn-checkpoint"   # the same name as the new format's
LEGACY_VERSION = 1
_MAX_JSON_BYTES = 16 << 20


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_legacy(npz_path: Path, json_path: Path
                ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, Any]]:
    """(parameters, optimizer arrays, metadata) of a version-1 checkpoint."""
    try:
        if json_path.stat().st_size > _MAX_JSON_BYTES:
            raise CheckpointError(f"checkpoint metadata {json_path} is larger than "
                                  f"{_MAX_JSON_BYTES} bytes")
        meta = json.loads(json_path.read_text(), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"checkpoint metadata {json_path} is corrupt or truncated "
                              f"(not valid JSON: {str(exc)[:200]})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{json_path} is not a graphcnn checkpoint")
    if meta.get("version") != LEGACY_VERSION:
        raise CheckpointError(f"{json_path}: checkpoint format version "
                              f"{str(meta.get('version'))[:40]} is not supported")
    if not npz_path.exists():
        raise CheckpointError(f"checkpoint arrays {npz_path} are missing (metadata: "
                              f"{json_path})")
    if _sha256(npz_path) != meta.get("arrays_sha256"):
        raise CheckpointError(f"checkpoint arrays {npz_path} do not match their metadata "
                              f"{json_path} (corrupt, truncated, or from another save)")
    params: dict[str, np.ndarray] = {}
    opt: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(npz_path) as zf:
            for info in zf.infolist():
                key = _check_member(zf, info)
                with zf.open(info) as member:
                    array = np.lib.format.read_array(member, allow_pickle=False)
                if key.startswith("param/"):
                    params[key[len("param/"):]] = array
                elif key.startswith("opt/"):
                    opt[key[len("opt/"):]] = array
                else:
                    raise ValueError(f"unexpected array {key!r}")
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"checkpoint arrays {npz_path} are corrupt or truncated: "
                              f"{str(exc)[:200]}") from None
    return params, opt, meta


def _check_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> str:
    """The array name of one ``.npz`` member, after checking that reading it allocates
    no more than the member holds."""
    if not info.filename.endswith(".npy") or info.compress_type != zipfile.ZIP_STORED:
        raise ValueError(f"member {info.filename!r} is not an uncompressed .npy")
    with zf.open(info) as member:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(member)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(member)
        else:
            raise ValueError(f"member {info.filename!r} has .npy version {version}")
        header_end = member.tell()
    if dtype.hasobject or dtype.kind not in "biuf":
        raise ValueError(f"member {info.filename!r} has dtype {dtype}, not numeric")
    if math.prod(shape) * dtype.itemsize != info.file_size - header_end:
        raise ValueError(f"member {info.filename!r} declares shape {shape} but holds "
                         f"{info.file_size - header_end} bytes")
    return info.filename[:-len(".npy")]
