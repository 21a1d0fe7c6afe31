"""``graphcnn compile``: compile a model for inference and print a summary.

    graphcnn compile MODEL [--batch-size N | --max-batch N] [--backend cpu|reference|cuda]
                           [--opt-level N] [-o model.gcnn]
                           [--training [--loss cross_entropy|mse]]

MODEL is a zoo name, an ``.onnx`` file or ``path/to/file.py:function``. The summary: the
model (parameters, inputs, outputs), the op count before the passes and the kernels
after, the memory plan's peak next to the naive sum and the lower bound (from
``Executable.report()``), and the compile time.

The steps are separate functions (`compile_model`, `summary_lines`) so that more
outputs can be added after compiling.

``-o FILE`` also writes an ahead-of-time compiled artifact (graphcnn/runtime/artifact/):
the optimized graph, memory plan, weights and the machine code of every kernel, which
``graphcnn run FILE`` / ``gc.load(FILE)`` run in another process without compiling.
``--max-batch N`` compiles one executable for any batch size from 1 to N
(``gc.compile(model, batch_size=None, max_batch=N)``): its artifact runs each call at the
batch its input has. ``--training`` compiles the training step (forward + loss + backward, ``gc.value_and_grad``)
instead; its artifact loads as a ``GradientStep`` that holds its parameters.
"""
from __future__ import annotations

import argparse
from typing import Any

from graphcnn.commands.common import (
    OPT_LEVEL_HELP,
    OPT_LEVELS,
    CommandError,
    add_command,
    check_output_file,
    load_model,
    positive_int,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL",
                   help="a zoo name, an .onnx file or path/to/file.py:function")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="the one batch size it runs, default 1")
    p.add_argument("--max-batch", type=positive_int, default=None, metavar="N",
                   help="instead of --batch-size: one executable for any batch size from 1 "
                        "to N (cpu and reference backends)")
    p.add_argument("--backend", choices=("cpu", "reference", "cuda"), default="cpu")
    p.add_argument("--opt-level", type=int, choices=OPT_LEVELS, default=2,
                  help=OPT_LEVEL_HELP)
    p.add_argument("-o", "--output", metavar="FILE", default=None,
                   help="write an ahead-of-time compiled artifact (run it with graphcnn run)")
    p.add_argument("--training", action="store_true",
                   help="compile the training step (forward + loss + backward)")
    p.add_argument("--loss", choices=("cross_entropy", "mse"), default="cross_entropy",
                   help="the training step's loss, default cross_entropy")


def compile_model(args: argparse.Namespace) -> tuple[Any, Any]:
    """(model, executable) for the options in `args`."""
    import graphcnn as gc

    if getattr(args, "max_batch", None) is not None:
        if args.batch_size is not None:
            raise CommandError("give one of --batch-size and --max-batch")
        if getattr(args, "training", False):
            raise CommandError("--max-batch is for inference: a training step has one "
                               "batch size (--batch-size)")
        if args.backend == "cuda":
            raise CommandError("--max-batch runs on the cpu and reference backends; on "
                               "cuda, give --batch-size")
    if args.batch_size is None:
        args.batch_size = 1   # (with --max-batch: not used)
    model = load_model(args.model)
    if getattr(args, "max_batch", None) is not None:
        return model, gc.compile(model, batch_size=None, max_batch=args.max_batch,
                                 backend=args.backend, opt_level=args.opt_level)
    if getattr(args, "training", False):
        step = gc.value_and_grad(model, loss=args.loss, batch_size=args.batch_size,
                                 backend=args.backend, opt_level=args.opt_level)
        args.step = step
        return model, step.executable
    exe = gc.compile(model, batch_size=args.batch_size, backend=args.backend,
                     opt_level=args.opt_level)
    return model, exe


def _mib(count: int) -> str:
    return f"{count / 2**20:.2f} MiB"


def summary_lines(model: Any, exe: Any, batch_size: int | None, opt_level: int
                  ) -> list[str]:
    report = exe.report()
    batches = f"batch size {batch_size}" if exe.max_batch is None else \
        f"any batch size from 1 to {exe.max_batch}"
    inputs = ", ".join(f"{t.name} {tuple(t.type.shape[1:])}" for t in model.inputs)
    outputs = ", ".join(f"{name} {tuple(v.shape)}"
                        for name, v in zip(exe.graph.output_names, exe.graph.outputs))
    return [
        f"model       {model.name} ({model.num_parameters():,} parameters)",
        f"inputs      {inputs} per sample",
        f"outputs     {outputs}",
        f"target      {report['backend']}, {batches}, opt level {opt_level}",
        f"ops         {report['ops_before']} before the passes -> {report['kernels']} kernels",
        f"memory      peak {_mib(report['peak_bytes'])}: arena {_mib(report['arena_bytes'])} "
        f"(naive {_mib(report['naive_bytes'])}, lower bound "
        f"{_mib(report['lower_bound_bytes'])}), workspace {_mib(report['workspace_bytes'])}, "
        f"prepacked weights {_mib(report['packed_weights_bytes'])}",
        f"compile     {report['compile_seconds']:.2f} s",
    ]


def run(args: argparse.Namespace) -> int:
    """Compile MODEL (a zoo name, an .onnx file or path/to/file.py:function) for
    inference and print a summary: ops before the passes, kernels after, the memory plan
    and the compile time."""
    if args.output and args.backend != "cpu":
        raise CommandError(f"-o: only the cpu backend makes artifacts, not {args.backend!r}")
    if args.output:   # before compiling: a bad path must not cost a full compile
        check_output_file(args.output, "-o")
    model, exe = compile_model(args)
    for line in summary_lines(model, exe, args.batch_size, args.opt_level):
        print(line)
    if args.output:
        import time

        from graphcnn.runtime.artifact import read_manifest
        start = time.perf_counter()
        (args.step if args.training else exe).save(args.output)
        manifest = read_manifest(args.output)
        size = sum(m["size"] for m in manifest["members"].values())
        what = "training step" if args.training else "inference"
        print(f"artifact    {args.output} ({what}, {_mib(size)}, "
              f"{len(manifest['kernels'])} precompiled kernel entries, saved in "
              f"{time.perf_counter() - start:.2f} s)")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return add_command(sub, "compile", "compile a model and print a summary", run, add_arguments)
