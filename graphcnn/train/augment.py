"""Data augmentation on image batches, in vectorized NumPy.

Every augmenter is a callable ``aug(batch, rng) -> batch``: `batch` is ``(N, C, H, W)``
(or ``(N, H, W)``), `rng` a ``np.random.Generator``; the result is a new float32 array of
the same shape, and the same rng state gives the same result. Random choices are made
per sample. A Trainer applies its augmenter to each training batch (never to
evaluation data), before normalization.

>>> aug = parse_augment("flip,shift:2,rotate:10")
>>> out = aug(images, np.random.default_rng(0))       # doctest: +SKIP

Spec strings (``parse_augment``; the CLI's ``--augment``), comma-separated:

=================  ====================================================================
``flip``/``hflip``  RandomFlip(): mirror left-right with probability 0.5
``vflip``           RandomFlip(horizontal=False, vertical=True)
``shift[:S]``       RandomTranslate(S): shift by up to S pixels each way (default 2),
                    zero fill
``crop[:P]``        RandomCrop(P): pad by P (default 4) and crop back at a random offset
``rotate[:D]``      RandomRotation(D): rotate by up to D degrees (default 10), bilinear
``brightness[:B]``  RandomBrightness(B): add a uniform offset in [-B, B] (default 0.1)
``noise[:S]``       RandomNoise(S): add Gaussian noise of std S (default 0.05)
``none`` or empty   no augmentation (``parse_augment`` returns None)
=================  ====================================================================
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["Augmenter", "Compose", "RandomFlip", "RandomTranslate", "RandomCrop",
           "RandomRotation", "RandomBrightness", "RandomNoise", "parse_augment"]


def _images(batch: Any, who: str) -> np.ndarray:
    x = np.asarray(batch, np.float32)
    if x.ndim not in (3, 4):
        raise ValueError(f"{who} needs an image batch (N, C, H, W) or (N, H, W), got shape "
                         f"{x.shape}")
    return x


class Augmenter:
    """Base class: ``__call__(batch, rng) -> batch``."""

    def __call__(self, batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class Compose(Augmenter):
    """Apply augmenters in order."""

    def __init__(self, augmenters: Sequence[Callable[[np.ndarray, np.random.Generator], np.ndarray]]
                 ) -> None:
        self.augmenters = list(augmenters)

    def __call__(self, batch, rng):
        out = np.asarray(batch, np.float32)
        for aug in self.augmenters:
            out = aug(out, rng)
        return np.asarray(out, np.float32) if self.augmenters else out.copy()


class RandomFlip(Augmenter):
    """Mirror each sample left-right (`horizontal`) and/or top-bottom (`vertical`), each
    with probability `p`, independently per sample and direction."""

    def __init__(self, horizontal: bool = True, vertical: bool = False, p: float = 0.5) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p!r}")
        if not (horizontal or vertical):
            raise ValueError("RandomFlip flips nothing: set horizontal and/or vertical")
        self.horizontal, self.vertical, self.p = bool(horizontal), bool(vertical), float(p)

    def __call__(self, batch, rng):
        x = _images(batch, "RandomFlip")
        out = x.copy()
        for on, axis in ((self.horizontal, -1), (self.vertical, -2)):
            if on:
                mask = rng.random(len(x)) < self.p
                out[mask] = np.flip(out[mask], axis=axis)
        return out


class RandomTranslate(Augmenter):
    """Shift each sample by a random whole number of pixels, ``dy, dx`` uniform in
    ``[-max_shift, max_shift]``, filling with zeros (content shifted out is lost):
    ``out[..., y, x] = in[..., y - dy, x - dx]``."""

    def __init__(self, max_shift: int = 2) -> None:
        if int(max_shift) != max_shift or max_shift < 0:
            raise ValueError(f"max_shift must be an integer >= 0, got {max_shift!r}")
        self.max_shift = int(max_shift)

    def offsets(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Per-sample shifts (dy, dx) as drawn by __call__."""
        s = self.max_shift
        d = rng.integers(-s, s + 1, size=(2, n))
        return d[0], d[1]

    def __call__(self, batch, rng):
        x = _images(batch, type(self).__name__)
        dy, dx = self.offsets(len(x), rng)
        return _shift(x, dy, dx, self.max_shift)


def _shift(x: np.ndarray, dy: np.ndarray, dx: np.ndarray, pad: int) -> np.ndarray:
    """Per-sample integer shifts with zero fill, by one gather from the padded batch."""
    if pad == 0:
        return x.copy()
    h, w = x.shape[-2:]
    widths = [(0, 0)] * (x.ndim - 2) + [(pad, pad), (pad, pad)]
    padded = np.pad(x, widths)
    # windows[n, ..., oy, ox] is padded[n, ..., oy:oy+h, ox:ox+w]; the shift (dy, dx)
    # reads the window at (pad - dy, pad - dx).
    windows = sliding_window_view(padded, (h, w), axis=(-2, -1))
    n = np.arange(len(x))
    if x.ndim == 4:
        out = windows[n, :, pad - dy, pad - dx]
    else:
        out = windows[n, pad - dy, pad - dx]
    return np.ascontiguousarray(out, np.float32)


class RandomCrop(RandomTranslate):
    """Pad each side by `padding` zeros and crop a window of the original size at a
    random offset (torchvision's ``RandomCrop(size, padding)`` with size = the input's):
    a random shift by up to `padding` pixels each way."""

    def __init__(self, padding: int = 4) -> None:
        if int(padding) != padding or padding < 0:
            raise ValueError(f"padding must be an integer >= 0, got {padding!r}")
        super().__init__(int(padding))
        self.padding = int(padding)


class RandomRotation(Augmenter):
    """Rotate each sample about its center by an angle uniform in ``[-degrees,
    degrees]`` (positive: counter-clockwise as displayed, rows going down), filling with
    zeros. ``interpolation``: ``'bilinear'`` (default) or ``'nearest'``."""

    def __init__(self, degrees: float = 10.0, interpolation: str = "bilinear") -> None:
        if not (degrees >= 0 and math.isfinite(degrees)):
            raise ValueError(f"degrees must be a finite number >= 0, got {degrees!r}")
        if interpolation not in ("bilinear", "nearest"):
            raise ValueError(f"interpolation must be 'bilinear' or 'nearest', got "
                             f"{interpolation!r}")
        self.degrees, self.interpolation = float(degrees), interpolation

    def angles(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Per-sample angles in degrees, as drawn by __call__."""
        return rng.uniform(-self.degrees, self.degrees, size=n)

    def __call__(self, batch, rng):
        x = _images(batch, "RandomRotation")
        return rotate(x, self.angles(len(x), rng), self.interpolation)


def rotate(batch: np.ndarray, degrees: np.ndarray | float,
           interpolation: str = "bilinear") -> np.ndarray:
    """Rotate each sample of a (N, C, H, W) or (N, H, W) batch about its center by its
    angle in `degrees` (counter-clockwise as displayed), zero fill. Fully vectorized: the
    source coordinates of every output pixel of every sample, then one gather per
    interpolation corner."""
    x = np.asarray(batch, np.float32)
    squeeze = x.ndim == 3
    if squeeze:
        x = x[:, None]
    n, c, h, w = x.shape
    theta = np.deg2rad(np.broadcast_to(np.asarray(degrees, np.float64), (n,)))
    cos, sin = np.cos(theta)[:, None, None], np.sin(theta)[:, None, None]
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    yy = (np.arange(h, dtype=np.float64) - cy)[None, :, None]
    xx = (np.arange(w, dtype=np.float64) - cx)[None, None, :]
    # inverse map: output pixel (y, x) reads the input at the point rotated by -theta
    # (with rows pointing down, a counter-clockwise turn on screen is clockwise in (x, y))
    src_x = cos * xx - sin * yy + cx          # (n, h, w)
    src_y = sin * xx + cos * yy + cy
    # a zero border of 1 pixel: out-of-range reads (clipped onto it) give the fill value
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    ni = np.arange(n)[:, None, None, None]
    ci = np.arange(c)[None, :, None, None]

    def gather(iy: np.ndarray, ix: np.ndarray) -> np.ndarray:
        iy = np.clip(iy + 1, 0, h + 1)[:, None]
        ix = np.clip(ix + 1, 0, w + 1)[:, None]
        return padded[ni, ci, iy, ix]

    if interpolation == "nearest":
        out = gather(np.floor(src_y + 0.5).astype(np.int64), np.floor(src_x + 0.5).astype(np.int64))
    else:
        y0f, x0f = np.floor(src_y), np.floor(src_x)
        wy = (src_y - y0f).astype(np.float32)[:, None]
        wx = (src_x - x0f).astype(np.float32)[:, None]
        y0, x0 = y0f.astype(np.int64), x0f.astype(np.int64)
        top = gather(y0, x0) * (1 - wx) + gather(y0, x0 + 1) * wx
        bottom = gather(y0 + 1, x0) * (1 - wx) + gather(y0 + 1, x0 + 1) * wx
        out = top * (1 - wy) + bottom * wy
    out = out.astype(np.float32, copy=False)
    return out[:, 0] if squeeze else out


class RandomBrightness(Augmenter):
    """Add a per-sample offset uniform in ``[-delta, delta]`` to every value of the
    sample."""

    def __init__(self, delta: float = 0.1) -> None:
        if not (delta >= 0 and math.isfinite(delta)):
            raise ValueError(f"delta must be a finite number >= 0, got {delta!r}")
        self.delta = float(delta)

    def __call__(self, batch, rng):
        x = np.asarray(batch, np.float32)
        if x.ndim < 2:
            raise ValueError(f"RandomBrightness needs a batch (N, ...), got shape {x.shape}")
        offset = rng.uniform(-self.delta, self.delta, size=len(x)).astype(np.float32)
        return x + offset.reshape((-1,) + (1,) * (x.ndim - 1))


class RandomNoise(Augmenter):
    """Add Gaussian noise of standard deviation `std` to every value."""

    def __init__(self, std: float = 0.05) -> None:
        if not (std >= 0 and math.isfinite(std)):
            raise ValueError(f"std must be a finite number >= 0, got {std!r}")
        self.std = float(std)

    def __call__(self, batch, rng):
        x = np.asarray(batch, np.float32)
        return x + rng.normal(0.0, self.std, size=x.shape).astype(np.float32)


# name -> (factory, argument parser, default argument or None when it takes none)
_SPECS: dict[str, tuple[Callable[..., Augmenter], Callable[[str], Any] | None, Any]] = {
    "flip": (lambda: RandomFlip(), None, None),
    "hflip": (lambda: RandomFlip(), None, None),
    "vflip": (lambda: RandomFlip(horizontal=False, vertical=True), None, None),
    "shift": (RandomTranslate, int, 2),
    "translate": (RandomTranslate, int, 2),
    "crop": (RandomCrop, int, 4),
    "rotate": (RandomRotation, float, 10.0),
    "brightness": (RandomBrightness, float, 0.1),
    "noise": (RandomNoise, float, 0.05),
}


def parse_augment(spec: str | None) -> Augmenter | None:
    """An augmenter from a spec such as ``"flip,shift:3,rotate:10"`` (see the module
    docstring); None for ``""``, ``"none"`` or None. Raises ValueError naming the valid
    augmentations for an unknown name, or the expected argument for a bad one."""
    if spec is None:
        return None
    items = [part.strip() for part in str(spec).split(",")]
    items = [part for part in items if part]
    if not items or items == ["none"]:
        return None
    valid = ", ".join(f"{k}:{_SPECS[k][2]}" if _SPECS[k][1] else k for k in _SPECS)
    augmenters: list[Augmenter] = []
    for item in items:
        name, sep, arg = item.partition(":")
        name = name.strip().lower()
        if name not in _SPECS:
            raise ValueError(f"unknown augmentation {name!r} in {spec!r}; valid: {valid} "
                             f"(comma-separated; 'none' for no augmentation)")
        factory, convert, default = _SPECS[name]
        if convert is None:
            if sep:
                raise ValueError(f"augmentation {name!r} takes no argument, got {item!r}")
            augmenters.append(factory())
            continue
        if not sep:
            augmenters.append(factory(default))
            continue
        try:
            value = convert(arg.strip())
        except ValueError:
            kind = "an integer" if convert is int else "a number"
            raise ValueError(f"augmentation {name!r} needs {kind} argument, got {item!r}") from None
        try:
            augmenters.append(factory(value))
        except ValueError as exc:
            raise ValueError(f"augmentation {item!r}: {exc}") from None
    return augmenters[0] if len(augmenters) == 1 else Compose(augmenters)
