"""The ``graphcnn`` command.

    graphcnn --version
    graphcnn demo [--epochs 20] [--batch-size 32] [--out DIR]
    graphcnn train MODEL [--dataset digits] [--epochs N] [--optimizer sgd|adam|adamw] ...
    graphcnn inspect MODEL [--batch-size N] [--opt-level N] [--training] [--dot F] [--png F]
    graphcnn bench MODEL|conv-layers [--batch-size 1,16] [--training] [--against PEERS] ...
    graphcnn compile MODEL [--batch-size N] [--backend cpu] [--opt-level N] [-o FILE]
                           [--training [--loss cross_entropy|mse]]
    graphcnn run FILE --input x.npy [--output y.npy]     (FILE: written by compile -o)
    graphcnn inspect FILE                                  (what an artifact holds)

MODEL is a zoo name (``lenet5``), an ``.onnx`` file, or ``path/to/file.py:function``
returning a Model (the file is the user's own code: it is imported from its path).

Errors never show a traceback (``--debug`` or ``GRAPHCNN_DEBUG=1`` shows it, for
developers). Each is one line ``graphcnn <command>: error: <message>``:

* a mistake in the command line (a bad option, a path that cannot be written, a missing
  input file): argparse's usage line, then the message; exit status 2 (SystemExit, as
  argparse). Every output path is checked before any work starts (commands/common.py).
* a failure while working, which the user can act on: a bad or corrupt file (ONNX,
  artifact, checkpoint, .npy), a model that cannot be built, an OSError on a user's
  path, not enough memory, a non-finite or diverging loss; the message names the cause
  and the flag that helps (``--on-nonfinite skip``); exit status 1.
* anything else is a bug in graphcnn: ``graphcnn <command>: internal error: <type>:
  <message>`` and how to get the traceback; exit status 70 (sysexits' EX_SOFTWARE).

Warnings are printed as ``graphcnn <command>: warning: <message>``, one line each.

Each subcommand is a module of graphcnn/commands/; this module only assembles them.
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback
import warnings
from typing import Any, Sequence

from graphcnn import __version__
from graphcnn.commands import bench, demo, inspection, run, train
from graphcnn.commands import compile as compile_command  # not the builtin compile
from graphcnn.commands.common import CommandError, CommandFailed

# in the order `graphcnn --help` lists them
COMMANDS = (demo, train, inspection, compile_command, run, bench)
EXIT_ERROR, EXIT_USAGE, EXIT_INTERNAL = 1, 2, 70
DEBUG_ENV = "GRAPHCNN_DEBUG"
_DEBUG_HELP = f"show the traceback of an error (as {DEBUG_ENV}=1 does)"

# Errors a user's input or environment causes: reported as one line. Exceptions of other
# types are graphcnn's bugs (reported as an internal error). ValueError covers graphcnn's
# own errors (GraphBuildError, ArtifactError, OnnxImportError are ValueErrors), and
# TypeError the type checks of arguments and files; OSError any path the user named.
USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError, TypeError, OSError, EOFError, MemoryError, FloatingPointError,
    OverflowError, NotImplementedError, ImportError, RecursionError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="graphcnn", description="graphcnn: a deep-learning compiler for CNNs")
    parser.add_argument("--debug", action="store_true", default=False, help=_DEBUG_HELP)
    parser.add_argument("--version", action="version", version=f"graphcnn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        p = command.add_parser(sub)
        # also after the subcommand; SUPPRESS keeps a --debug given before it
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help=_DEBUG_HELP)
    return parser


def _one_line(text: str) -> str:
    """A message on one line: its lines joined, blank ones dropped."""
    return " ".join(line.strip() for line in str(text).splitlines() if line.strip())


def describe_error(exc: BaseException) -> str:
    """The message of a user-facing error, in the user's words: an OSError as its reason
    and path (not "[Errno 2]"), the CLI's hint where the error has one (a flag rather
    than a Python argument), the type name only for errors that are not Python's own."""
    cli_message = getattr(exc, "cli_message", None)
    if callable(cli_message):
        return _one_line(cli_message())
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename is not None else ""
        return _one_line(f"{exc.strerror}{where}")
    if isinstance(exc, MemoryError):
        detail = f" ({exc})" if str(exc) else ""
        return _one_line(f"not enough memory{detail}; try a smaller --batch-size or model")
    if isinstance(exc, RecursionError):
        return "a file or model nested too deeply to read (RecursionError)"
    text = _one_line(str(exc)) or type(exc).__name__
    if isinstance(exc, CommandError) or type(exc).__module__ == "builtins":
        return text
    return f"{type(exc).__name__}: {text}"


def _warning_printer(prog: str) -> Any:
    """warnings.showwarning for the CLI: one line per warning, no source line."""
    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: Any = None, line: str | None = None) -> None:
        cli_message = getattr(message, "cli_message", None)
        text = cli_message() if callable(cli_message) else str(message)
        print(f"{prog}: warning: {_one_line(text)}", file=sys.stderr, flush=True)
    return show


class _Warnings:
    """Within the block, warnings print as one line each (restored after)."""

    def __init__(self, prog: str) -> None:
        self.prog = prog

    def __enter__(self) -> None:
        self.saved = warnings.showwarning
        warnings.showwarning = _warning_printer(self.prog)

    def __exit__(self, *exc: Any) -> None:
        warnings.showwarning = self.saved


def _error(prog: str, message: str, internal: bool = False) -> None:
    kind = "internal error" if internal else "error"
    print(f"{prog}: {kind}: {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)   # argument errors: usage + one line, exit 2
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    sub = subparsers.choices[args.command]
    debug = bool(getattr(args, "debug", False)) or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    if getattr(args, "distributed", False):
        return _run_distributed(args, sub, sub.prog, debug)
    return _run(args, sub, sub.prog, debug)


def _run_distributed(args: argparse.Namespace, sub: argparse.ArgumentParser, prog: str,
                     debug: bool) -> int:
    """A command on one of several MPI ranks: its messages name the rank, and a failure
    here ends every rank (MPI_Abort) instead of leaving them waiting in a collective."""
    from graphcnn import distributed
    from graphcnn.distributed.mpi import load_mpi

    try:
        load_mpi(f"{prog} --distributed")   # no mpi4py: say so before any work
        size, rank = distributed.world_size(), distributed.rank()
    except ImportError as exc:   # no mpi4py: say what to install
        _error(prog, describe_error(exc))
        return EXIT_ERROR
    if size == 1:
        return _run(args, sub, prog, debug)
    prog = f"{prog} [rank {rank} of {size}]"
    try:
        code = _run(args, sub, prog, debug)
    except SystemExit as exc:   # a usage error (exit 2) found while running
        code = exc.code if isinstance(exc.code, int) else EXIT_ERROR
    except BaseException:   # with --debug: the traceback, then every rank ends
        traceback.print_exc()
        code = EXIT_INTERNAL
    if code:
        distributed.abort(code=code)
    return code


def _run(args: argparse.Namespace, sub: argparse.ArgumentParser, prog: str,
         debug: bool) -> int:
    """Run the subcommand; errors as the module docstring says."""
    try:
        with _Warnings(prog):
            return int(args.func(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except CommandFailed as exc:
        if debug:
            raise
        _error(prog, describe_error(exc))
        return EXIT_ERROR
    except CommandError as exc:   # as argparse's own errors: usage, message, SystemExit(2)
        if debug:
            raise
        sub.print_usage(sys.stderr)
        _error(prog, describe_error(exc))
        raise SystemExit(EXIT_USAGE) from None
    except USER_ERRORS as exc:
        if debug:
            raise
        _error(prog, describe_error(exc))
        return EXIT_ERROR
    except Exception as exc:   # a bug: say so, and how to see where
        if debug:
            raise
        _error(prog, f"{type(exc).__name__}: {_one_line(str(exc))} (a bug in graphcnn: "
                     f"run with --debug or {DEBUG_ENV}=1 for the traceback, and report it)",
               internal=True)
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
