"""Data-parallel training over MPI: 2 ranks under mpiexec (oversubscribed: one core each
on CI's two) against one process, the abort of every rank when one fails, resuming after
a rank was killed, and the error without mpi4py. The cases run in tests/mpi_worker.py."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mpi4py", reason="the distributed extra is not installed "
                                     "(pip install -e \".[distributed]\")")

ROOT = Path(__file__).resolve().parent.parent
WORKER = str(Path(__file__).resolve().parent / "mpi_worker.py")
LIMIT = 240   # seconds: a hang is a failure, not a stuck CI job


def _mpiexec() -> list[str]:
    """The venv's mpiexec (the mpich wheel's) first, else the one on PATH."""
    here = Path(sys.executable).parent / "mpiexec"
    found = str(here) if here.exists() else shutil.which("mpiexec")
    if found is None:
        pytest.skip("mpi4py is installed but no mpiexec was found (pip install mpich)")
    version = subprocess.run([found, "--version"], capture_output=True, text=True).stdout
    # Open MPI refuses more ranks than cores unless told
    return [found, "--oversubscribe"] if "Open MPI" in version else [found]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
        MPIEXEC_TIMEOUT=str(LIMIT), OMPI_ALLOW_RUN_AS_ROOT="1",
        OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", **extra)
    for name in ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK"):
        env.pop(name, None)
    return env


def run_ranks(*args: str, ranks: int = 2, **env: str) -> subprocess.CompletedProcess[str]:
    command = [*_mpiexec(), "-n", str(ranks), sys.executable, *args] if ranks > 1 else \
        [sys.executable, *args]
    # one thread per process: the two ranks share the two cores (as the ranks do
    # themselves, graphcnn/distributed/parallel.py), and one process matches them
    return subprocess.run(command, capture_output=True, text=True, timeout=LIMIT,
                          env=_env(NUMBA_NUM_THREADS="1", **env), cwd=ROOT)


def ok(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def test_two_ranks_equal_one_process(tmp_path):
    """10 SGD-momentum steps on 2 ranks of batch 8 equal one process of batch 16 (and
    rank 1's other starting weights were replaced by rank 0's); LeNet-5 on the digits
    reaches the same test accuracy; the buckets average (in the worker)."""
    ok(run_ranks(WORKER, "parity", str(tmp_path / "two")))
    ok(run_ranks(WORKER, "parity", str(tmp_path / "one"), ranks=1))
    two, one = np.load(tmp_path / "two.npz"), np.load(tmp_path / "one.npz")
    assert sorted(two) == sorted(one)
    for name in one:
        if name.startswith("equal/"):
            assert rel(two[name], one[name]) < 1e-6, name
    assert float(one["lenet/accuracy"]) > 0.5   # it learned
    assert abs(float(two["lenet/accuracy"]) - float(one["lenet/accuracy"])) < 1e-9
    assert abs(float(two["lenet/loss"]) - float(one["lenet/loss"])) < 1e-4
    assert abs(float(two["lenet/train_accuracy"]) - float(one["lenet/train_accuracy"])) < 0.01


def test_sync_batchnorm_two_ranks_equal_one_process(tmp_path):
    """With synchronized batch norm, 10 SGD-momentum steps on 2 ranks of batch 8 equal one
    process of batch 16 (the plain Trainer): parameters and running statistics. The
    world-size-1 sync path equals the plain path; each rank's own statistics do not."""
    ok(run_ranks(WORKER, "syncbn", str(tmp_path / "two")))
    ok(run_ranks(WORKER, "syncbn", str(tmp_path / "one"), ranks=1))
    two, one = np.load(tmp_path / "two.npz"), np.load(tmp_path / "one.npz")
    names = [n[len("plain/"):] for n in one if n.startswith("plain/")]
    assert {"bn.running_mean", "bn.running_var", "bn1.running_var"} <= set(names)
    for name in names:
        plain = one["plain/" + name]
        assert rel(one["sync/" + name], plain) < 1e-6, name     # world size 1
        assert rel(two["sync/" + name], plain) < 1e-6, name     # 2 ranks x 8 = 1 x 16
        assert rel(one["local/" + name], plain) < 1e-6, name
    # without synchronization the ranks' statistics are their halves' (DDP's default)
    assert max(rel(two["local/" + n], one["plain/" + n]) for n in names) > 1e-3


def test_a_raising_rank_ends_every_rank(tmp_path):
    start = time.perf_counter()
    proc = run_ranks(WORKER, "raise", str(tmp_path / "x"), "1")
    elapsed = time.perf_counter() - start
    assert proc.returncode != 0
    assert "rank 1 of 2: RuntimeError: injected failure" in proc.stderr, proc.stderr[-3000:]
    assert elapsed < 120, elapsed   # ended by MPI_Abort, not by a timeout


def test_killed_rank_ends_the_job_and_resume_equals_uninterrupted(tmp_path):
    """Rank 1 is SIGKILLed in epoch 2: mpiexec ends the job; the epoch-1 checkpoint is
    intact; resumed on one process, or on two ranks (rank 0 broadcasts the momentum, the
    rng and the history it read), it ends where an uninterrupted 2-rank run ends."""
    from graphcnn.train.checkpoint import load_checkpoint

    ok(run_ranks(WORKER, "resume", str(tmp_path / "full"), "0"))
    killed = run_ranks(WORKER, "resume", str(tmp_path / "cut"), "1")
    assert killed.returncode != 0
    assert not (tmp_path / "cut.npz").exists()
    assert load_checkpoint(tmp_path / "cut")[2]["epoch"] == 1
    shutil.copy(tmp_path / "cut.ckpt", tmp_path / "cut2.ckpt")
    ok(run_ranks(WORKER, "resume", str(tmp_path / "cut"), "0", ranks=1))
    ok(run_ranks(WORKER, "resume", str(tmp_path / "cut2"), "0"))
    full = np.load(tmp_path / "full.npz")
    for resumed in (np.load(tmp_path / "cut.npz"), np.load(tmp_path / "cut2.npz")):
        for name in full:
            assert rel(resumed[name], full[name]) < 1e-6, name


FAILING_MODEL = """
import os
import graphcnn as gc
from graphcnn import nn

def build():
    rank = os.environ.get("PMI_RANK", os.environ.get("OMPI_COMM_WORLD_RANK"))
    if rank == os.environ.get("FAIL_ON_RANK"):
        raise ValueError("no model on this rank")
    x = gc.Input((1, 32, 32), name="x")
    return gc.Model(inputs=x, outputs=nn.Linear(1024, 10)(nn.Flatten()(x)), name="m")
"""


def test_command_on_two_ranks_reports_once_and_checkpoints(tmp_path):
    model = tmp_path / "model.py"
    model.write_text(FAILING_MODEL)   # it fails only on a rank named in the environment
    proc = run_ranks("-m", "graphcnn.cli", "train", f"{model}:build", "--distributed",
                     "--epochs", "1", "--batch-size", "32", "--checkpoint",
                     str(tmp_path / "ck"), "--out", str(tmp_path / "out"))
    ok(proc)
    assert proc.stdout.count("test accuracy") == 1, proc.stdout   # rank 0 alone prints
    assert proc.stderr.count("epoch 1/1:   0%") == 1, proc.stderr   # one progress bar
    assert (tmp_path / "ck.ckpt").exists() and (tmp_path / "out" / "curves.png").exists()


def test_command_failing_on_one_rank_ends_every_rank(tmp_path):
    model = tmp_path / "model.py"
    model.write_text(FAILING_MODEL)
    start = time.perf_counter()
    proc = run_ranks("-m", "graphcnn.cli", "train", f"{model}:build", "--distributed",
                     "--epochs", "1", "--quiet", FAIL_ON_RANK="1")
    assert proc.returncode != 0
    assert "graphcnn train [rank 1 of 2]: error:" in proc.stderr, proc.stderr[-3000:]
    assert "no model on this rank" in proc.stderr
    assert time.perf_counter() - start < 120


BLOCKED = "import sys; sys.modules['mpi4py'] = None\n"


def test_without_mpi4py_distributed_training_says_what_to_install():
    code = BLOCKED + """
import graphcnn as gc
from graphcnn import nn
x = gc.Input((4,), name="x")
model = gc.Model(inputs=x, outputs=nn.Linear(4, 2)(x))
assert gc.distributed.world_size() == 1 and gc.distributed.rank() == 0
try:
    gc.Trainer(model, distributed=True)
except ImportError as exc:
    print(exc)
from graphcnn.cli import main
sys.exit(main(["train", "lenet5", "--distributed", "--epochs", "1"]))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=LIMIT, env=_env(), cwd=ROOT)
    assert proc.returncode == 1, proc.stderr[-3000:]
    hint = 'pip install -e ".[distributed]"'
    assert hint in proc.stdout
    assert proc.stderr.count(hint) == 1 and "Traceback" not in proc.stderr, proc.stderr


def test_import_graphcnn_never_imports_mpi4py():
    code = ("import sys, graphcnn as gc, graphcnn.distributed, graphcnn.train.trainer\n"
            "gc.Trainer\nimport graphcnn.cli\n"
            "assert 'mpi4py' not in sys.modules, 'mpi4py imported'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=LIMIT, env=_env(), cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_shards_are_disjoint_and_make_the_single_process_batches():
    from graphcnn.distributed import shard_indices

    order = np.random.default_rng(0).permutation(103)
    world, batch = 3, 4
    shards = [shard_indices(order, r, world) for r in range(world)]
    assert {len(s) for s in shards} == {103 // world}
    union = np.concatenate(shards)
    assert len(np.unique(union)) == len(union) == 102   # the last 103 % 3 left out
    for b in range(len(shards[0]) // batch):   # global batch b = one process's batch b
        together = np.concatenate([s[b * batch:(b + 1) * batch] for s in shards])
        assert sorted(together) == sorted(order[b * batch * world:(b + 1) * batch * world])
    with pytest.raises(ValueError, match="rank 3"):
        shard_indices(order, 3, 3)
