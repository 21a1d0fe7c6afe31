"""``graphcnn compile``: compile a model for inference and print a summary.

    graphcnn compile MODEL [--batch-size N] [--backend cpu|reference|cuda] [--opt-level N]

MODEL is a zoo name, an ``.onnx`` file or ``path/to/file.py:function``. The summary: the
model (parameters, inputs, outputs), the op count before the passes and the kernels
after, the memory plan's peak next to the naive sum and the lower bound (from
``Executable.report()``), and the compile time.

The steps are separate functions (`compile_model`, `summary_lines`) so that more
outputs (an artifact file, ``-o model.gcnn``) can be added after compiling.
"""
from __future__ import annotations

import argparse
from typing import Any


def add_arguments(p: argparse.ArgumentParser) -> None:
    from graphcnn.cli import _positive_int
    p.add_argument("model", metavar="MODEL",
                   help="a zoo name, an .onnx file or path/to/file.py:function")
    p.add_argument("--batch-size", type=_positive_int, default=1, help="default 1")
    p.add_argument("--backend", choices=("cpu", "reference", "cuda"), default="cpu")
    p.add_argument("--opt-level", type=int, choices=(0, 1, 2, 3), default=2,
                   help="graph optimization level, default 2")


def compile_model(args: argparse.Namespace) -> tuple[Any, Any]:
    """(model, executable) for the options in `args`."""
    import graphcnn as gc
    from graphcnn.cli import load_model

    model = load_model(args.model)
    exe = gc.compile(model, batch_size=args.batch_size, backend=args.backend,
                     opt_level=args.opt_level)
    return model, exe


def _mib(count: int) -> str:
    return f"{count / 2**20:.2f} MiB"


def summary_lines(model: Any, exe: Any, batch_size: int, opt_level: int) -> list[str]:
    report = exe.report()
    inputs = ", ".join(f"{t.name} {tuple(t.type.shape[1:])}" for t in model.inputs)
    outputs = ", ".join(f"{name} {tuple(v.shape)}"
                        for name, v in zip(exe.graph.output_names, exe.graph.outputs))
    return [
        f"model       {model.name} ({model.num_parameters():,} parameters)",
        f"inputs      {inputs} per sample",
        f"outputs     {outputs}",
        f"target      {report['backend']}, batch size {batch_size}, opt level {opt_level}",
        f"ops         {report['ops_before']} before the passes -> {report['kernels']} kernels",
        f"memory      peak {_mib(report['peak_bytes'])} (naive {_mib(report['naive_bytes'])}, "
        f"lower bound {_mib(report['lower_bound_bytes'])})",
        f"compile     {report['compile_seconds']:.2f} s",
    ]


def cmd_compile(args: argparse.Namespace) -> int:
    """Compile MODEL (a zoo name, an .onnx file or path/to/file.py:function) for
    inference and print a summary: ops before the passes, kernels after, the memory plan
    and the compile time."""
    model, exe = compile_model(args)
    for line in summary_lines(model, exe, args.batch_size, args.opt_level):
        print(line)
    return 0
