"""A user's own arrays as a classification or regression dataset: ``graphcnn train MODEL
--dataset data.npz`` (or ``gc.data.load_npz("data.npz")``).

The keys of the ``.npz`` (``np.savez("data.npz", x_train=..., y_train=...)``):

    x_train  images, float (float16/32/64, read as float32), (N, C, H, W) or (N, H, W)
             (one channel)
    y_train  class labels, integers >= 0, (N,); or regression targets, float (read as
             float32), (N,) for one target or (N, K) for K
    x_test, y_test   optional, the same kinds (images of the same C, H, W as x_train,
             targets of the same kind and K as y_train);
             without them, a fixed fifth of the training arrays (``test_fraction``, a
             permutation from ``seed``) is held out as the test set
    x, y     accepted instead of x_train, y_train

Each mistake is one line naming the file and the key: a missing key, an image array that
is not float or has non-finite values, labels that are not integers or are negative, a
label array that is not 1-D, float targets that are not (N,) or (N, K) or are not finite,
lengths that differ, test images whose shape differs from the
training images', test targets of another kind (integer labels against float targets)
or another number of targets than the training ones. The file is read with ``allow_pickle=False`` (an object array is refused,
never unpickled), and each member's declared size is checked against
GRAPHCNN_MAX_TENSOR_BYTES before it is read.
"""
from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np

from graphcnn.limits import max_tensor_bytes

Split = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
KEYS = ("x_train", "y_train", "x_test", "y_test", "x", "y")


class DatasetError(ValueError):
    """A dataset file that cannot be used; the message names the file and the key."""


def _members(path: Path) -> dict[str, zipfile.ZipInfo]:
    """The ``.npy`` members of the archive by key."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except zipfile.BadZipFile:
        if path.read_bytes()[:6] == b"\x93NUMPY":
            raise DatasetError(f"{path} is an .npy array, not an .npz archive of named "
                               f"arrays (save with np.savez(path, x_train=..., "
                               f"y_train=...))") from None
        raise DatasetError(f"{path} is not an .npz archive (not a zip file)") from None
    return {i.filename[:-4]: i for i in infos if i.filename.endswith(".npy")}


def _read(path: Path, key: str, info: zipfile.ZipInfo) -> np.ndarray:
    """One member, after checking its header: no objects, a size under the limit."""
    try:
        with zipfile.ZipFile(path) as zf, zf.open(info) as member:
            version = np.lib.format.read_magic(member)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(member)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(member)
            if dtype.hasobject:
                raise DatasetError(f"{path}: {key} holds Python objects (dtype {dtype}); "
                                   f"only numeric arrays are read")
            nbytes = math.prod(shape) * dtype.itemsize
            if nbytes > max_tensor_bytes():
                raise DatasetError(f"{path}: {key} of shape {tuple(shape)} and dtype "
                                   f"{dtype} is {nbytes} bytes, more than the limit "
                                   f"GRAPHCNN_MAX_TENSOR_BYTES={max_tensor_bytes()}")
        with zipfile.ZipFile(path) as zf, zf.open(info) as member:
            return np.lib.format.read_array(member, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        if isinstance(exc, DatasetError):
            raise
        raise DatasetError(f"{path}: cannot read {key}: {exc}") from None


def _images(path: Path, key: str, x: np.ndarray) -> np.ndarray:
    if x.dtype.kind != "f":
        raise DatasetError(f"{path}: {key} has dtype {x.dtype}; images must be float "
                           f"(e.g. float32 in [0, 1])")
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[0] == 0 or 0 in x.shape:
        raise DatasetError(f"{path}: {key} has shape {x.shape}; images must be (N, C, H, W) "
                           f"or (N, H, W) with N >= 1")
    if not np.isfinite(x).all():
        raise DatasetError(f"{path}: {key} has non-finite values (NaN or infinity)")
    return np.ascontiguousarray(x, dtype=np.float32)


def _labels(path: Path, key: str, y: np.ndarray, n: int, x_key: str) -> np.ndarray:
    """Integer class labels (N,) as int64, or float regression targets (N,) / (N, K) as
    float32."""
    if y.dtype.kind not in "iuf":
        raise DatasetError(f"{path}: {key} has dtype {y.dtype}; expected integer class "
                           f"labels (e.g. int64) or float regression targets (e.g. float32)")
    if y.dtype.kind == "f":
        if y.ndim not in (1, 2) or (y.ndim == 2 and y.shape[1] == 0):
            raise DatasetError(f"{path}: {key} has shape {y.shape}; float regression targets "
                               f"must be (N,) or (N, K)")
    elif y.ndim != 1:
        raise DatasetError(f"{path}: {key} has shape {y.shape}; class labels must be 1-D "
                           f"(N,) (store regression targets as floats)")
    if len(y) != n:
        raise DatasetError(f"{path}: {x_key} has {n} images but {key} has {len(y)} labels")
    if y.dtype.kind == "f":
        if not np.isfinite(y).all():
            raise DatasetError(f"{path}: {key} has non-finite targets (NaN or infinity)")
        return np.ascontiguousarray(y, dtype=np.float32)
    if y.size and y.dtype.kind == "u" and y.max() > np.iinfo(np.int64).max:
        raise DatasetError(f"{path}: {key} has a label {int(y.max())}, too large for int64")
    if y.size and y.min() < 0:
        raise DatasetError(f"{path}: {key} has a negative label ({int(y.min())}); classes "
                           f"are 0, 1, 2, ...")
    return y.astype(np.int64)


def describe_targets(y: np.ndarray) -> str:
    """What a target array holds, in words: "integer class labels" or "float targets
    (N, K)"."""
    if y.dtype.kind in "iu":
        return f"integer class labels ({y.dtype})"
    return f"float targets of shape {y.shape}"


def _same_kind(path: Path, y: np.ndarray, yt: np.ndarray, y_key: str) -> None:
    """The test targets are of the training targets' kind (and number, for floats)."""
    if (y.dtype.kind == "f") != (yt.dtype.kind == "f") or y.shape[1:] != yt.shape[1:]:
        raise DatasetError(f"{path}: {y_key} holds {describe_targets(y)} but y_test holds "
                           f"{describe_targets(yt)}; both must be integer class labels or "
                           f"both float targets with the same number of columns")


def load_npz(path: str | Path, test_fraction: float = 0.2, seed: int = 0) -> Split:
    """The arrays of `path` as ``((X_train, y_train), (X_test, y_test))`` (see the module
    docstring for the keys); raises DatasetError naming the key at fault."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(2, "No such file", str(path))
    members = _members(path)
    if "x_train" in members and "x" in members:
        raise DatasetError(f"{path} has both x_train and x; give one of them")
    train_keys = ("x_train", "y_train") if "x" not in members else ("x", "y")
    for key in train_keys:
        if key not in members:
            raise DatasetError(f"{path} has no array {key!r} (found {sorted(members)}; "
                               f"expected x_train and y_train, optionally x_test and "
                               f"y_test)")
    if ("x_test" in members) != ("y_test" in members):
        missing = "y_test" if "x_test" in members else "x_test"
        raise DatasetError(f"{path} has no array {missing!r} (x_test and y_test go together)")
    x_key, y_key = train_keys
    X = _images(path, x_key, _read(path, x_key, members[x_key]))
    y = _labels(path, y_key, _read(path, y_key, members[y_key]), len(X), x_key)
    if "x_test" in members:
        Xt = _images(path, "x_test", _read(path, "x_test", members["x_test"]))
        if Xt.shape[1:] != X.shape[1:]:
            raise DatasetError(f"{path}: x_test's images are {Xt.shape[1:]}, x_train's "
                               f"{X.shape[1:]} (C, H, W must match)")
        yt = _labels(path, "y_test", _read(path, "y_test", members["y_test"]), len(Xt),
                     "x_test")
        _same_kind(path, y, yt, y_key)
        return (X, y), (Xt, yt)
    if len(X) < 2:
        raise DatasetError(f"{path}: {x_key} has {len(X)} image; holding out a test set "
                           f"needs at least 2 (or give x_test and y_test)")
    order = np.random.default_rng(seed).permutation(len(X))
    n_test = min(len(X) - 1, max(1, round(test_fraction * len(X))))
    test, train = order[:n_test], order[n_test:]
    return (X[train], y[train]), (X[test], y[test])
