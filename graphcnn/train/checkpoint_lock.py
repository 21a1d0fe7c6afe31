"""Who may write a checkpoint path: an advisory lock file next to the checkpoint.

``runs/lenet.ckpt`` is guarded by ``runs/.lenet.ckpt.lock``, locked with ``fcntl.flock``
by the process that writes the checkpoint. The kernel drops the lock when that process
ends, however it ends (SIGKILL included), so a lock left by a dead process is simply
taken over by the next writer; the pid written into the file only serves the message a
second writer gets. The lock file is never deleted: deleting it would let two processes
hold locks on two different files of the same name.

Within one process the lock is shared: every holder in the process counts, and the lock
is released when the last one lets go (two trainers in one process, one after another,
as a test or a notebook has them, write the same path without a quarrel).

Where ``fcntl`` does not exist (Windows) there is no cross-process lock; saves are still
atomic.
"""
from __future__ import annotations

import os
import re
import socket
import threading
from pathlib import Path

from graphcnn.errors import CheckpointInUseError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

_registry_lock = threading.Lock()
_held: dict[str, list[int]] = {}   # real lock-file path -> [fd, holders in this process]
# mkstemp's names: the prefix we give, 8 characters of its alphabet, the suffix we give
_TEMP_TAIL = r"\.[a-z0-9_]{8}\.tmp"


def lock_file(checkpoint: Path) -> Path:
    """The lock file of a checkpoint file."""
    return checkpoint.with_name(f".{checkpoint.name}.lock")


def temp_prefix(target: Path) -> str:
    """The prefix of the temporary files a save of `target` writes (hidden, same folder)."""
    return f".{target.name}."


def remove_stale_temps(target: Path, *others: Path) -> int:
    """Remove temporary files left by killed saves of `target` (and of `others`, the
    names of the older format). Only call it holding the lock: then no live writer of
    these paths can be writing one. Returns how many were removed."""
    removed = 0
    try:
        names = os.listdir(target.parent)
    except OSError:
        return 0
    for t in (target, *others):
        pattern = re.compile(re.escape(temp_prefix(t)[:-1]) + _TEMP_TAIL + r"\Z")
        for name in names:
            if pattern.match(name):
                try:
                    os.unlink(target.parent / name)
                    removed += 1
                except OSError:
                    pass
    return removed


class CheckpointLock:
    """The exclusive right of this process to write the checkpoint file `checkpoint`.

    >>> with CheckpointLock(Path("runs/lenet.ckpt")):   # doctest: +SKIP
    ...     ...  # write it

    A second process gets CheckpointInUseError naming the path and the holder's pid.
    """

    def __init__(self, checkpoint: Path) -> None:
        self.checkpoint = Path(checkpoint)
        self.path = lock_file(self.checkpoint)
        self.held = False

    def acquire(self) -> "CheckpointLock":
        if self.held:
            return self
        key = os.path.realpath(self.path)
        with _registry_lock:
            entry = _held.get(key)
            if entry is not None:
                entry[1] += 1
            else:
                _held[key] = [self._lock_fd(), 1]
        self.held = True
        return self

    def _lock_fd(self) -> int:
        """Open and lock the lock file; raises CheckpointInUseError if another process
        holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if fcntl is None:  # pragma: no cover - Windows: no lock
                return fd
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _read_holder(fd)
                os.close(fd)
                raise CheckpointInUseError(
                    f"checkpoint {self.checkpoint} is being written by another process "
                    f"({holder}); two trainers must not share one checkpoint path: give "
                    f"this one another path or stop the other (lock file {self.path})"
                ) from None
            try:  # the file we locked may have been deleted and re-created meanwhile
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        return fd

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        key = os.path.realpath(self.path)
        with _registry_lock:
            entry = _held.get(key)
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] == 0:
                del _held[key]
                os.close(entry[0])   # closing the descriptor drops the flock

    def __enter__(self) -> "CheckpointLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        try:
            self.release()
        except Exception:  # interpreter shutdown: the process's end drops the lock anyway
            pass


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text or "pid unknown"
