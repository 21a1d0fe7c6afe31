"""The artifact file itself: a zip archive of a JSON manifest and members, read back with
every field, size and hash checked and nothing unpickled (see the package's docstring)."""
from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import tempfile
import zipfile
from typing import Any

import numpy as np

from graphcnn.errors import ArtifactError

FORMAT = "graphcnn-artifact"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
# A ResNet-50 training step's manifest is a few MiB; these bound what parsing a hostile
# one can allocate (Python objects are ~10-50x the JSON text that makes them).
MAX_MANIFEST_BYTES = 16 << 20
MAX_MANIFEST_CONTAINERS = 1 << 20   # JSON objects and arrays ('{' and '[', counted in the text)
ARRAY_DTYPES = ("float32", "float64", "int64")


def fail(path: str, message: str) -> ArtifactError:
    return ArtifactError(f"{path}: {message}")


# ---- manifest fields: a ValueError naming the field (load adds the file) ------------------
def field(data: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """data[key], which must be of `kind` (a bool is not an int)."""
    if not isinstance(data, dict) or key not in data:
        raise ValueError(f"{where} has no field {key!r}")
    value = data[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"{where}.{key} has the wrong type ({type(value).__name__})")
    return value


def integer(data: Any, key: str, where: str, minimum: int = 0) -> int:
    value = field(data, key, int, where)
    if isinstance(value, bool) or value < minimum:
        raise ValueError(f"{where}.{key} must be an integer >= {minimum}")
    return value


# ---- writing ------------------------------------------------------------------------------
def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.require(array, requirements="C"), allow_pickle=False)
    return buf.getvalue()


def versions() -> dict[str, str]:
    """The versions of what writes an artifact (the manifest's created_by)."""
    import llvmlite
    import numba

    import graphcnn
    return {"graphcnn": graphcnn.__version__, "numba": numba.__version__,
            "llvmlite": llvmlite.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def member_records(members: dict[str, bytes]) -> dict[str, dict[str, Any]]:
    """The manifest's `members`: per member its size and SHA-256."""
    return {name: {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            for name, data in members.items()}


def write_zip(path: str, manifest: dict[str, Any], members: dict[str, bytes]) -> None:
    """Write the archive atomically: a temporary file in the target's directory, then
    os.replace, so an interrupted save leaves no half-written file at `path`."""
    raw = json.dumps(manifest, allow_nan=False, indent=1).encode()
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                               dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            with zipfile.ZipFile(handle, "w") as zf:
                zf.writestr(MANIFEST, raw, compress_type=zipfile.ZIP_DEFLATED)
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


# ---- reading ------------------------------------------------------------------------------
def _reject_constant(text: str) -> None:
    raise ValueError(f"non-standard JSON constant {text}")


def open_archive(path: str) -> zipfile.ZipFile:
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such artifact: {path}")
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError) as err:
        raise fail(path, f"not a graphcnn artifact (not a zip archive, or truncated: {err})"
                   ) from None


def read_member(zf: zipfile.ZipFile, path: str, name: str, limit: int | None = None,
                size: int | None = None) -> bytes:
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise fail(path, f"missing member {name}") from None
    if limit is not None and info.file_size > limit:
        raise fail(path, f"member {name} is too large ({info.file_size} bytes)")
    if size is not None and info.file_size != size:   # checked before inflating anything
        raise fail(path, f"member {name} is corrupted (it is {info.file_size} bytes, the "
                         f"manifest says {size})")
    try:
        # read(n) inflates at most n bytes per step; zf.read(name) would inflate a lying
        # member's whole payload in one call before cutting it to its declared size
        with zf.open(name) as handle:
            data = handle.read(info.file_size)
            longer = bool(handle.read(1))
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, RuntimeError,
            NotImplementedError) as err:
        raise fail(path, f"member {name} is corrupted or truncated ({err})") from None
    except Exception as err:  # zlib.error and friends
        raise fail(path, f"member {name} is corrupted ({type(err).__name__}: {err})") from None
    if len(data) != info.file_size or longer:
        raise fail(path, f"member {name} is corrupted (it is not {info.file_size} bytes)")
    return data


def _check_header(path: str, manifest: Any) -> None:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise fail(path, f"not a graphcnn artifact (manifest format is not {FORMAT!r})")
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise fail(path, f"manifest has an invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise fail(path, f"artifact format version {version} is newer than this graphcnn "
                         f"reads (up to {FORMAT_VERSION}); upgrade graphcnn to load it")


def parse_manifest(path: str, zf: zipfile.ZipFile) -> dict[str, Any]:
    """The archive's manifest: JSON (no NaN or Infinity), of this format and a version
    this graphcnn reads. An archive with an entry twice is refused first: which of the
    two a reader takes is up to the reader."""
    seen: set[str] = set()
    for name in zf.namelist():
        if name in seen:
            raise fail(path, f"member {name} appears twice in the archive")
        seen.add(name)
    raw = read_member(zf, path, MANIFEST, MAX_MANIFEST_BYTES)
    if raw.count(b"{") + raw.count(b"[") > MAX_MANIFEST_CONTAINERS:
        raise fail(path, f"manifest has more than {MAX_MANIFEST_CONTAINERS} JSON objects and "
                         f"arrays (not one graphcnn writes)")
    try:
        manifest = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise fail(path, f"manifest is not valid JSON ({str(err)[:200]})") from None
    _check_header(path, manifest)
    return manifest


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """The manifest of an artifact (format checked, members not verified)."""
    path = os.fspath(path)
    with open_archive(path) as zf:
        return parse_manifest(path, zf)
