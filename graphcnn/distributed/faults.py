"""A failure on one rank ends every rank, quickly, with a message naming the rank.

Without this, a rank that raises leaves the others waiting forever in their next
collective. ``install_abort_handler`` replaces ``sys.excepthook`` (as ``python -m
mpi4py`` does): an uncaught exception prints ``graphcnn: rank R of W: Type: message``
and its traceback on stderr, then calls ``MPI_Abort`` on COMM_WORLD, which makes the
launcher end every rank (in about a second with MPICH's Hydra) with a non-zero status.
A rank killed outright (SIGKILL) is the launcher's to handle: mpiexec ends the job.
"""
from __future__ import annotations

import sys
import time
import traceback
from types import TracebackType
from typing import Any

_installed = False


ABORT_GRACE_S = 0.25


def _world() -> tuple[Any, int, int]:
    from graphcnn.distributed.mpi import load_mpi

    comm = load_mpi().COMM_WORLD
    return comm, int(comm.Get_rank()), int(comm.Get_size())


def abort(message: str = "", code: int = 1) -> None:
    """Print `message` (prefixed with this rank) and end every rank with status `code`.
    In a world of one it exits this process."""
    comm, rank, size = _world()
    if message:
        print(f"graphcnn: rank {rank} of {size}: {message}", file=sys.stderr, flush=True)
    code = code if code not in (None, 0) else 1
    if size == 1:
        raise SystemExit(code)
    sys.stderr.flush()
    sys.stdout.flush()
    # mpiexec forwards a rank's output through its proxy, which MPI_Abort kills: a moment
    # for the message to reach the user's terminal first (seen lost on a loaded machine)
    time.sleep(ABORT_GRACE_S)
    comm.Abort(code)


def _hook(kind: type[BaseException], value: BaseException,
          tb: TracebackType | None) -> None:
    if issubclass(kind, SystemExit) and getattr(value, "code", 1) in (None, 0):
        return
    traceback.print_exception(kind, value, tb, file=sys.stderr)
    lines = str(value).strip().splitlines()
    detail = f"{kind.__name__}: {lines[0]}" if lines else kind.__name__
    abort(f"{detail} (ending every rank)",
          code=130 if issubclass(kind, KeyboardInterrupt) else 1)


def install_abort_handler() -> None:
    """Make an uncaught exception on any rank end every rank (see the module docstring).
    Only in a world of more than one rank; installing it twice is harmless."""
    global _installed
    if _installed:
        return
    _, _, size = _world()
    if size > 1:
        sys.excepthook = _hook
        _installed = True
