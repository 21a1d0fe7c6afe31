"""The one place that imports mpi4py: lazily, with a clear error where it is missing.

``import graphcnn`` never imports mpi4py (importing it initializes MPI, which costs time
and, under some launchers, resources). Only asking for distributed training, or for the
rank of a process that a launcher started, imports it.
"""
from __future__ import annotations

import os
from typing import Any

INSTALL_HINT = 'pip install -e ".[distributed]"  (or: pip install mpi4py mpich)'
# What MPI launchers set in each process they start: MPICH/Hydra and Intel MPI (PMI_*),
# Open MPI (OMPI_COMM_WORLD_*), PMIx-based launchers and Slurm's srun.
_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "SLURM_NTASKS")


class MPIUnavailableError(ImportError):
    """Distributed training was asked for, and mpi4py (or an MPI library) is missing."""

    def cli_message(self) -> str:   # the command prints the message alone
        return str(self)


def launched_size() -> int:
    """The world size a launcher announced in the environment (1 when none did)."""
    for name in _SIZE_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1


def load_mpi(what: str = "distributed training") -> Any:
    """mpi4py's ``MPI`` module (initializing MPI on first use), or MPIUnavailableError
    saying what to install."""
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise MPIUnavailableError(
            f"{what} needs mpi4py and an MPI library, which are not installed ({exc}); "
            f"install them with: {INSTALL_HINT}") from None
    except RuntimeError as exc:   # mpi4py present, the MPI library it was built on is not
        raise MPIUnavailableError(
            f"{what} needs an MPI library that mpi4py can load ({exc}); install one "
            f"with: {INSTALL_HINT}") from None
    return MPI


def available() -> bool:
    """True when mpi4py can be imported (without importing it: no MPI initialization)."""
    import importlib.util
    import sys

    if "mpi4py" in sys.modules:   # imported already, or blocked (None)
        return sys.modules["mpi4py"] is not None
    return importlib.util.find_spec("mpi4py") is not None
