"""Build the API reference: HTML pages from graphcnn's docstrings, with pdoc.

    python docs/build_api.py [-o docs/api]

Needs pdoc (`pip install -e ".[dev]"` brings it). Open docs/api/index.html after.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

# The public surface, as users import it: the package (its __all__: Input, Model, compile,
# value_and_grad, ...) and its subpackages; the modules where gc.load / gc.save and
# gc.Trainer live are listed too, since the package exposes those lazily.
MODULES = ("graphcnn", "graphcnn.nn", "graphcnn.optim", "graphcnn.losses", "graphcnn.data",
           "graphcnn.models", "graphcnn.metrics", "graphcnn.onnx", "graphcnn.distributed",
           "graphcnn.train.trainer", "graphcnn.runtime.artifact", "graphcnn.errors")


def build(out: Path) -> list[Path]:
    """Write the reference into `out`; returns the HTML files written."""
    import pdoc
    import pdoc.render

    pdoc.render.configure(footer_text="graphcnn API reference")
    with warnings.catch_warnings():   # names re-exported lazily are documented in their module
        warnings.simplefilter("ignore")
        pdoc.pdoc(*MODULES, output_directory=out)
    return sorted(out.rglob("*.html"))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", default=str(Path(__file__).parent / "api"),
                        help="output folder (default docs/api)")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's graphcnn
    pages = build(Path(args.out))
    print(f"{len(pages)} pages in {args.out}; open {Path(args.out) / 'index.html'}")
