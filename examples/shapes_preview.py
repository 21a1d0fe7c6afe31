"""Save a grid of a few images of ``gc.data.shapes`` with their masks and boxes.

    python examples/shapes_preview.py [OUT.png] [--n 6] [--size 64] [--seed 0]

Top row: the images, each shape's box drawn in its class's colour; bottom row: the
masks (background, circle, rectangle, triangle). Writes shapes_preview.png by default.
"""
from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")   # no display needed
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402

import graphcnn as gc  # noqa: E402

CLASS_COLOURS = ("#202020", "#e41a1c", "#377eb8", "#4daf4a")   # by mask value 0..3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="shapes_preview.png")
    parser.add_argument("--n", type=int, default=6, help="how many images (default 6)")
    parser.add_argument("--size", type=int, default=64, help="image size (default 64)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    ds = gc.data.shapes(args.n, size=args.size, seed=args.seed)
    fig, axes = plt.subplots(2, args.n, figsize=(2 * args.n, 4.4), squeeze=False)
    for i in range(args.n):
        top, bottom = axes[0, i], axes[1, i]
        top.imshow(ds.images[i].transpose(1, 2, 0), interpolation="nearest")
        for (x1, y1, x2, y2), label in zip(ds.boxes[i], ds.labels[i]):
            # imshow puts pixel j's center at j: the box's pixel edges are shifted by 0.5
            top.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False,
                                    edgecolor=CLASS_COLOURS[label], linewidth=1.5))
        count, area = ds.targets[i]
        top.set_title(f"count {int(count)}, area {area:.0%}", fontsize=9)
        bottom.imshow(ds.masks[i], cmap=ListedColormap(CLASS_COLOURS), vmin=0, vmax=3,
                      interpolation="nearest")
        for ax in (top, bottom):
            ax.set_xticks([])
            ax.set_yticks([])
    fig.legend(handles=[Patch(color=c, label=name)
                        for c, name in zip(CLASS_COLOURS, ds.class_names)],
               loc="lower center", ncol=4, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
