"""A procedural dataset: circles, rectangles and triangles on noisy backgrounds, with the
labels of four jobs at once (per-pixel masks, boxes with classes, regression targets, and
the dominant shape as a class).

    >>> import graphcnn as gc
    >>> ds = gc.data.shapes(4, size=32, seed=0)
    >>> ds.images.shape, ds.masks.shape, ds.targets.shape
    ((4, 3, 32, 32), (4, 32, 32), (4, 2))

How an image is made (every draw from one ``numpy.random.Generator(seed)``, in a fixed
order and of fixed sizes, so a seed gives the same set on every machine and two seeds
give independent sets):

- the background: a dark base colour (each channel in [0, 0.3]), a linear gradient of
  random direction (amplitude up to 0.1);
- ``min_shapes..max_shapes`` shapes, drawn one over the other in order: class 1 circle,
  2 rectangle (axis-aligned), 3 triangle (randomly rotated, its corners jittered); the
  extent of each (circle diameter, rectangle sides, the longer side of a triangle's box)
  is a fraction of ``size`` in [min_size, max_size], and every shape lies wholly inside
  the image; its colour has one channel bright (in [0.65, 1]), so it stands out from the
  background (with ``channels=1``: the colour's mean, at least 0.4);
- Gaussian noise of std ``noise`` over the whole image, then clipped to [0, 1].

Coordinates: pixel (row i, column j) covers [j, j+1) x [i, i+1); a pixel belongs to a
shape when its center (j + 0.5, i + 0.5) does.

Occlusion: the mask shows the shape drawn last at each pixel. A shape of which fewer than
``min_visible`` (default 0.25) of its own pixels stay visible under the later ones, or no
pixel at all (also with ``min_visible=0``), is not drawn: it is absent from the image, the mask,
the boxes and the labels (removing it only uncovers the shapes under it, so every shape
kept stays at least that visible). Every shape kept has a box: its full geometric extent
``[x1, y1, x2, y2]``, also where later shapes hide part of it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from graphcnn.arguments import check_int, check_number
from graphcnn.errors import ArgumentError

CLASS_NAMES = ("background", "circle", "rectangle", "triangle")
TARGET_NAMES = ("count", "area_fraction")
_OWNER = "gc.data.shapes"
_CHUNK = 256   # images rendered at a time


@dataclass(frozen=True)
class Shapes:
    """What `shapes` returns; ``len(ds)`` is the number of images.

    images   float32 (n, channels, size, size) in [0, 1], NCHW as the models take them
    masks    int64 (n, size, size): 0 background, 1 circle, 2 rectangle, 3 triangle
    boxes    n float32 arrays (k, 4): each shape's extent, xyxy in pixels, in draw order
    labels   n int64 arrays (k,): the class (1..3) of each box
    targets  float32 (n, 2): the number of shapes, and the visible foreground's fraction
             of the image, ``(mask > 0).mean()``
    dominant int64 (n,): for classification, the class of the largest visible area,
             counted from 0 (0 circle, 1 rectangle, 2 triangle; a tie goes to the first)
    """

    images: np.ndarray
    masks: np.ndarray
    boxes: list[np.ndarray]
    labels: list[np.ndarray]
    targets: np.ndarray
    dominant: np.ndarray
    class_names: tuple[str, ...] = CLASS_NAMES
    target_names: tuple[str, ...] = field(default=TARGET_NAMES)

    def __len__(self) -> int:
        return int(self.images.shape[0])


def _extents(rng: np.random.Generator, n: int, k: int, size: int, lo: float, hi: float
             ) -> tuple[np.ndarray, ...]:
    """The geometry of every slot, relative to its center: circle radius, rectangle half
    sides, triangle corners; and the offsets (dx0, dy0, dx1, dy1) of its extent."""
    s_circle = rng.uniform(lo, hi, (n, k)) * size
    s_rect = rng.uniform(lo, hi, (n, k, 2)) * size
    s_tri = rng.uniform(lo, hi, (n, k)) * size
    theta = rng.uniform(0.0, 2 * np.pi, (n, k, 1)) + (2 * np.pi / 3) * np.arange(3) \
        + rng.uniform(-0.2, 0.2, (n, k, 3))   # increasing angles: counter-clockwise
    corners = np.stack([np.cos(theta), np.sin(theta)], axis=-1)   # on the unit circle
    # Scaled so that the longer side of the triangle's box is its size, as a circle's
    # diameter is (a triangle fills less of its circumcircle than a circle does).
    longer = (corners.max(axis=2) - corners.min(axis=2)).max(axis=-1)
    corners *= (s_tri / longer)[..., None, None]
    return s_circle / 2, s_rect / 2, corners


def _coverage(kind: int, cx: np.ndarray, cy: np.ndarray, radius: np.ndarray,
              half: np.ndarray, corners: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """(m, size, size) bool: which pixel centers the m shapes of class `kind` cover."""
    px, py = grid[None, None, :], grid[None, :, None]
    dx, dy = px - cx[:, None, None], py - cy[:, None, None]    # (m, 1, S) and (m, S, 1)
    if kind == 1:
        return dx * dx + dy * dy <= (radius * radius)[:, None, None]
    if kind == 2:
        return (np.abs(dx) <= half[:, 0, None, None]) & (np.abs(dy) <= half[:, 1, None, None])
    inside = np.ones((len(cx), len(grid), len(grid)), bool)
    for i in range(3):   # the same side of each edge (corners run counter-clockwise)
        ax, ay = corners[:, i, 0, None, None], corners[:, i, 1, None, None]
        bx, by = corners[:, (i + 1) % 3, 0, None, None], corners[:, (i + 1) % 3, 1, None, None]
        inside &= (bx - ax) * (dy - ay) - (by - ay) * (dx - ax) >= 0
    return inside


def _compose(cover: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """(n, size, size) intp: 1 + the index of the slot drawn last at each pixel, 0 none."""
    top = np.zeros(cover.shape[1:], np.intp)
    for slot in range(cover.shape[0]):
        top[cover[slot] & keep[:, slot, None, None]] = slot + 1
    return top


class _Draws(NamedTuple):
    """Every random choice of a set but the pixel noise, per image (first axis) and slot."""

    active: np.ndarray    # (n, k) bool: the image's first `count` slots hold a shape
    kind: np.ndarray      # (n, k) class 1..3
    radius: np.ndarray    # (n, k) circles
    half: np.ndarray      # (n, k, 2) rectangles' half sides
    corners: np.ndarray   # (n, k, 3, 2) triangles' corners about the center
    ext: np.ndarray       # (n, k, 4) the extent about the center (dx0, dy0, dx1, dy1)
    center: np.ndarray    # (n, k, 2)
    colour: np.ndarray    # (n, k, 3)
    base: np.ndarray      # (n, 3) the background's colour
    slope: np.ndarray     # (n, 2) the background's gradient per pixel along x and y

    def rows(self, part: slice) -> _Draws:
        return _Draws(*(a[part] for a in self))


def _draw(rng: np.random.Generator, n: int, k: int, size: int, counts: tuple[int, int],
          sizes: tuple[float, float]) -> _Draws:
    count = rng.integers(counts[0], counts[1] + 1, n)
    kind = rng.integers(1, 4, (n, k))
    active = np.arange(k) < count[:, None]
    radius, half, corners = _extents(rng, n, k, size, *sizes)
    # The extent about the center, per class; the center is drawn so that it fits.
    ext = np.empty((n, k, 4))
    ext[..., :2], ext[..., 2:] = -radius[..., None], radius[..., None]
    is_rect, is_tri = kind == 2, kind == 3
    ext[is_rect] = np.concatenate([-half[is_rect], half[is_rect]], axis=-1)
    ext[is_tri] = np.concatenate([corners[is_tri].min(axis=1), corners[is_tri].max(axis=1)],
                                 axis=-1)
    u = rng.uniform(0.0, 1.0, (n, k, 2))
    center = -ext[..., :2] + u * (size - (ext[..., 2:] - ext[..., :2]))
    colour = rng.uniform(0.0, 1.0, (n, k, 3))
    bright = rng.integers(0, 3, (n, k))
    np.put_along_axis(colour, bright[..., None], rng.uniform(0.65, 1.0, (n, k, 1)), axis=-1)
    base = rng.uniform(0.0, 0.3, (n, 3))
    slope = rng.uniform(-0.1, 0.1, (n, 2)) / size
    return _Draws(active, kind, radius, half, corners, ext, center, colour, base, slope)


def _render(d: _Draws, size: int, min_visible: float, noise: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(keep (m, k), masks (m, S, S) int64, images (m, C, S, S) float32) of m images;
    `noise` is their (m, C, S, S) pixel noise, already scaled."""
    m, k = d.kind.shape
    channels = noise.shape[1]
    grid = np.arange(size, dtype=np.float64) + 0.5
    cover = np.zeros((k, m, size, size), bool)
    for slot in range(k):
        for c in (1, 2, 3):
            rows = np.flatnonzero(d.active[:, slot] & (d.kind[:, slot] == c))
            if rows.size:
                cover[slot, rows] = _coverage(
                    c, d.center[rows, slot, 0], d.center[rows, slot, 1],
                    d.radius[rows, slot], d.half[rows, slot], d.corners[rows, slot], grid)
    own = cover.sum(axis=(2, 3)).T                          # (m, k) pixels of each shape
    top = _compose(cover, d.active)
    visible = np.bincount((np.arange(m)[:, None, None] * (k + 1) + top).ravel(),
                          minlength=m * (k + 1)).reshape(m, k + 1)[:, 1:]
    keep = d.active & (visible > 0) & (visible >= min_visible * own)
    top = _compose(cover, keep)                             # without the hidden shapes

    # Per-image lookup tables indexed by `top`, flattened: one fancy index per array.
    flat = top + (np.arange(m) * (k + 1))[:, None, None]
    table = np.concatenate([np.zeros((m, 1), np.int64), d.kind * keep], axis=1)
    masks = table.ravel()[flat]
    colour, base = d.colour, d.base
    if channels == 1:   # grey: the colour's mean, kept apart from the dark background
        colour = np.maximum(colour.mean(axis=-1, keepdims=True), 0.4)
        base = base.mean(axis=-1, keepdims=True)
    ramp = (grid - size / 2).astype(np.float32)
    gradient = (d.slope[:, 0, None, None] * ramp[None, None, :]
                + d.slope[:, 1, None, None] * ramp[None, :, None]).astype(np.float32)
    foreground = top > 0
    images = np.empty((m, channels, size, size), np.float32)
    for ch in range(channels):
        palette = np.concatenate([np.zeros((m, 1)), colour[..., ch]], axis=1)
        painted = palette.astype(np.float32).ravel()[flat]
        background = gradient + base[:, ch, None, None].astype(np.float32)
        images[:, ch] = np.where(foreground, painted, background)
    images += noise
    np.clip(images, 0.0, 1.0, out=images)
    return keep, masks, images


def shapes(n: int, size: int = 64, seed: int = 0, *, max_shapes: int = 3,
           min_shapes: int = 1, min_size: float | None = None, max_size: float = 0.5,
           noise: float = 0.05, channels: int = 3, min_visible: float = 0.25) -> Shapes:
    """`n` images of ``size x size`` with circles, rectangles and triangles (see the module
    docstring for how they are drawn, and `Shapes` for what is returned).

    max_shapes, min_shapes  how many shapes an image gets (uniform in between; shapes
                            hidden by later ones are then dropped, see min_visible)
    min_size, max_size      a shape's extent, as a fraction of `size`; min_size * size
                            must be at least 4 pixels (so every shape covers a pixel);
                            min_size's default: 0.2, or 4 pixels' worth below size 20
    noise                   the std of the Gaussian pixel noise (0: none)
    channels                3 (colour) or 1 (grey)
    min_visible             the visible fraction of its pixels a shape needs to be kept

    Generation is vectorized NumPy, 256 images at a time (so the memory it needs beyond
    the result stays small); benchmarks/shapes_speed.py measures its speed.
    """
    n = check_int("n", n, 1, _OWNER)
    size = check_int("size", size, 8, _OWNER)
    seed = check_int("seed", seed, 0, _OWNER)
    max_shapes = check_int("max_shapes", max_shapes, 1, _OWNER)
    min_shapes = check_int("min_shapes", min_shapes, 1, _OWNER)
    if min_shapes > max_shapes:
        raise ArgumentError(f"{_OWNER}: min_shapes must be at most max_shapes "
                            f"({max_shapes}), got {min_shapes}")
    max_size = check_number("max_size", max_size, 0.0, 1.0, low_open=True, owner=_OWNER)
    if min_size is None:
        min_size = min(max(0.2, 4.0 / size), max_size)
    min_size = check_number("min_size", min_size, 0.0, max_size, low_open=True, owner=_OWNER)
    if min_size * size < 4.0 - 1e-9:
        raise ArgumentError(f"{_OWNER}: min_size * size must be at least 4 pixels, got "
                            f"{min_size:g} * {size} = {min_size * size:g} (min_size >= "
                            f"{4.0 / size:g} at size {size})")
    noise = check_number("noise", noise, 0.0, owner=_OWNER)
    if isinstance(channels, bool) or channels not in (1, 3):
        raise ArgumentError(f"{_OWNER}: channels must be 1 or 3, got {channels!r}")
    min_visible = check_number("min_visible", min_visible, 0.0, 1.0, owner=_OWNER)
    k = max_shapes

    rng = np.random.default_rng(seed)
    d = _draw(rng, n, k, size, (min_shapes, max_shapes), (min_size, max_size))
    keep = np.empty((n, k), bool)
    masks = np.empty((n, size, size), np.int64)
    images = np.empty((n, channels, size, size), np.float32)
    for start in range(0, n, _CHUNK):   # the noise too, chunk by chunk, from the same rng
        part = slice(start, min(n, start + _CHUNK))
        pixel_noise = rng.standard_normal((part.stop - start, channels, size, size),
                                          dtype=np.float32)
        pixel_noise *= np.float32(noise)
        keep[part], masks[part], images[part] = _render(d.rows(part), size, min_visible,
                                                        pixel_noise)

    boxes_all = (d.center[..., None, :] + d.ext.reshape(n, k, 2, 2)).reshape(n, k, 4)
    boxes = [boxes_all[i, keep[i]].astype(np.float32) for i in range(n)]
    labels = [d.kind[i, keep[i]].astype(np.int64) for i in range(n)]
    area = (masks > 0).mean(axis=(1, 2))
    targets = np.stack([keep.sum(axis=1), area], axis=1).astype(np.float32)
    per_class = np.stack([(masks == c).sum(axis=(1, 2)) for c in (1, 2, 3)], axis=1)
    dominant = per_class.argmax(axis=1).astype(np.int64)
    return Shapes(images=images, masks=masks, boxes=boxes, labels=labels, targets=targets,
                  dominant=dominant)


def load_shapes(size: int = 32, n_train: int = 2000, n_test: int = 500) -> tuple[
        tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Shapes as a classification dataset, ``((X_train, y_train), (X_test, y_test))``:
    y is the dominant shape (0 circle, 1 rectangle, 2 triangle), the class with the
    largest visible area; the training set from seed 0, the test set from seed 1.
    ``graphcnn train MODEL --dataset shapes`` trains on it."""
    train, test = shapes(n_train, size, seed=0), shapes(n_test, size, seed=1)
    return (train.images, train.dominant), (test.images, test.dominant)
