"""The ``graphcnn`` command.

    graphcnn demo [--epochs 20] [--batch-size 32] [--out DIR]
    graphcnn train MODEL [--dataset digits] [--epochs N] [--optimizer sgd|adam|adamw] ...
    graphcnn inspect MODEL [--batch-size N] [--opt-level N] [--training] [--dot F] [--png F]
    graphcnn bench MODEL|conv-layers [--batch-size 1,16] [--training] [--against PEERS] ...
    graphcnn compile MODEL [--batch-size N] [--backend cpu] [--opt-level N] [-o FILE]
                           [--training [--loss cross_entropy|mse]]
    graphcnn run FILE --input x.npy [--output y.npy]     (FILE: written by compile -o)
    graphcnn inspect FILE                                  (what an artifact holds)

MODEL is a zoo name (``lenet5``), an ``.onnx`` file, or ``path/to/file.py:function``
returning a Model (the file is the user's own code: it is imported from its path). Errors
in the arguments, the model file or the data are reported argparse-style (usage line,
message, exit status 2), never as a traceback.

Each subcommand is a module of graphcnn/commands/; this module only assembles them.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from graphcnn.commands import bench, demo, inspection, run, train
from graphcnn.commands import compile as compile_command  # not the builtin compile
from graphcnn.commands.common import CommandError

# in the order `graphcnn --help` lists them
COMMANDS = (demo, train, inspection, compile_command, run, bench)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="graphcnn", description="graphcnn: a deep-learning compiler for CNNs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    sub = subparsers.choices[args.command]
    from graphcnn.errors import GraphBuildError
    try:
        return int(args.func(args))
    except CommandError as exc:
        sub.error(str(exc))
    except (ValueError, FileNotFoundError, GraphBuildError, NotImplementedError) as exc:
        sub.error(f"{type(exc).__name__}: {exc}")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
