"""``graphcnn run``: run a compiled artifact (``graphcnn compile MODEL -o model.gcnn``).

    graphcnn run model.gcnn --input x.npy [--output y.npy]
    graphcnn run step.gcnn --input x.npy --target labels.npy [--output grads.npz]

The artifact's precompiled code runs: nothing is compiled (unless the artifact was compiled
for another CPU or Numba version: then a warning says why and the kernels compile).
`--input` is an ``.npy`` file; a model with several inputs takes one ``--input`` per input,
in order, or ``--input NAME=FILE``. Arrays are read with ``allow_pickle=False``. Without
``--output`` the result is described on stdout (shape, dtype, the values when small, the
arg-max of each row of a 2-D output); ``--output`` writes it to exactly the name given,
which must end in ``.npy`` (one output) or ``.npz`` (any number: several outputs, a
training step's gradients); the name is checked before the artifact is loaded.

``graphcnn inspect model.gcnn`` describes an artifact (`inspect_artifact` in inspection.py).
"""
from __future__ import annotations

import argparse
import os
import time
from typing import Any

import numpy as np

from graphcnn.commands.common import CommandError, add_command, check_output_file


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("artifact", metavar="ARTIFACT", help="a file written by graphcnn compile -o")
    p.add_argument("--input", action="append", required=True, metavar="[NAME=]FILE",
                   help="an .npy input (repeat for several inputs)")
    p.add_argument("--target", metavar="FILE", default=None,
                   help="training artifacts: the targets (class labels) as .npy")
    p.add_argument("--output", metavar="FILE", default=None,
                   help="write the output (.npy, or .npz for several outputs / gradients)")


def _read_npy(path: str) -> np.ndarray:
    if not os.path.isfile(path):
        raise CommandError(f"input file {path} does not exist")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise CommandError(f"cannot read {path} as an .npy array: {err}") from None
    if not isinstance(array, np.ndarray):
        raise CommandError(f"{path} is not an .npy array (an .npz archive?)")
    return array


def _feeds(specs: list[str], names: list[str]) -> dict[str, np.ndarray]:
    feeds: dict[str, np.ndarray] = {}
    positional = [s for s in specs if "=" not in s or os.path.isfile(s)]
    named = [s for s in specs if s not in positional]
    if len(positional) > len(names):
        raise CommandError(f"{len(positional)} inputs given; the artifact takes {names}")
    for name, path in zip(names, positional):
        feeds[name] = _read_npy(path)
    for spec in named:
        name, path = spec.split("=", 1)
        if name not in names:
            raise CommandError(f"unknown input {name!r}; the artifact takes {names}")
        feeds[name] = _read_npy(path)
    missing = [n for n in names if n not in feeds]
    if missing:
        raise CommandError(f"missing input(s) {missing}; the artifact takes {names}")
    return feeds


def describe(name: str, array: np.ndarray) -> list[str]:
    lines = [f"{name}: {array.dtype}{list(array.shape)}"]
    if array.size <= 100:
        with np.printoptions(precision=6, suppress=True, linewidth=100):
            lines += ["  " + line for line in str(array).splitlines()]
    else:
        lines.append(f"  min {array.min():.6g}, max {array.max():.6g}, "
                     f"mean {array.mean():.6g}")
    if array.ndim == 2 and array.dtype.kind == "f":
        lines.append(f"  arg-max per row: {array.argmax(axis=1).tolist()[:32]}")
    return lines


def run(args: argparse.Namespace) -> int:
    """Run ARTIFACT (written by graphcnn compile -o) on the --input arrays, with its
    precompiled code: no compilation."""
    import graphcnn as gc
    from graphcnn.runtime.gradient_step import GradientStep

    if args.output:
        check_output_file(args.output, "--output", suffixes=(".npy", ".npz"))
    if not os.path.exists(args.artifact):
        raise CommandError(f"no such artifact: {args.artifact}")
    start = time.perf_counter()
    loaded = gc.load(args.artifact)
    load_s = time.perf_counter() - start
    step = loaded if isinstance(loaded, GradientStep) else None
    exe = step.executable if step else loaded
    names = [n for n in exe.input_names if not (step and n == "target")]
    feeds = _feeds(args.input, names)
    count = len(exe.graph.output_names) if step is None else 2
    if args.output and args.output.lower().endswith(".npy") and count > 1:
        what = "a gradient per parameter" if step else f"{count} outputs"
        raise CommandError(f"--output {args.output}: the artifact gives {what}; an .npy "
                           f"file holds one array, give an .npz name")
    start = time.perf_counter()
    if step is not None:
        if args.target is None:
            raise CommandError("a training artifact needs --target (the labels or targets)")
        loss, grads = step(feeds[names[0]], _read_npy(args.target))
        outputs: dict[str, Any] = {f"grad:{k}": v for k, v in grads.items()}
        print(f"loss: {loss:.6g}")
    else:
        if args.target is not None:
            raise CommandError("--target is for training artifacts; this one is for inference")
        outputs = exe.run(feeds)
    run_s = time.perf_counter() - start
    how = "precompiled" if exe.precompiled else "compiled now"
    print(f"{args.artifact}: loaded in {load_s:.3f} s, ran in {run_s:.3f} s ({how} code)")
    if args.output:
        # through a file object: numpy appends no suffix, the name given is the name written
        with open(args.output, "wb") as f:
            if args.output.lower().endswith(".npy"):
                np.save(f, next(iter(outputs.values())), allow_pickle=False)
            else:
                # the keys are the names compile and inspect print (grad:c1.weight), as they are
                np.savez(f, **outputs)
        print(f"output: {args.output}")
    elif step is None:
        for name, value in outputs.items():
            print("\n".join(describe(name, value)))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return add_command(sub, "run", "run an artifact written by graphcnn compile -o", run,
                       add_arguments)
