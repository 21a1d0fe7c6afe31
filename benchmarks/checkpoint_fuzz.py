"""Fuzz checkpoint files loaded into a Trainer, longer than the test suite does.

    python benchmarks/checkpoint_fuzz.py [--cases 5000] [--seed 0]

Each case takes a valid checkpoint of a small trainer (SGD with momentum state, StepLR,
Normalize, history) and damages it one way: flipped bytes, a truncation, or one metadata
field (anywhere in the tree) replaced by a value of another type, a huge number, a deep
nesting, or deleted, the file re-hashed so that the damage gets past the SHA-256 (what a
buggy or hostile writer could produce). It loads the result into a fresh trainer and
counts the outcomes by kind. Every failure must be a CheckpointError that leaves the
trainer's parameters, optimizer state and rng as they were; anything else is counted
under its exception's name and makes the script exit non-zero.
tests/test_checkpoint_kill.py runs a bounded version with hypothesis.
"""
from __future__ import annotations

import argparse
import collections
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import numpy as np  # noqa: E402
from checkpoint_files import repack  # noqa: E402

import graphcnn as gc  # noqa: E402
from graphcnn import nn  # noqa: E402
from graphcnn.errors import CheckpointError  # noqa: E402
from graphcnn.train.normalize import Normalize  # noqa: E402
from graphcnn.train.trainer import Trainer  # noqa: E402

_DEEP = "__deep__"


def make_trainer(seed: int) -> Trainer:
    gc.manual_seed(seed)
    x = gc.Input((4,), name="x")
    model = gc.Model(inputs=x, outputs=nn.Linear(4, 3, name="fc")(x), name="tiny")
    trainer = Trainer(model, optimizer=gc.optim.SGD(lr=0.1, momentum=0.9),
                      schedule=gc.optim.StepLR(step_size=2, gamma=0.5),
                      normalize=Normalize(mean=[0.5], std=[2.0]), seed=seed)
    params = model.trainable_parameters()
    trainer.optimizer.step(params, {k: np.full_like(v, 0.1) for k, v in params.items()})
    trainer.history.append(0, {"loss": 1.5, "accuracy": 0.5, "lr": 0.1})
    return trainer


def snapshot(trainer: Trainer) -> tuple[Any, ...]:
    arrays, scalars = trainer.optimizer.state_dict()
    return ({k: v.tobytes() for k, v in trainer.model.parameters().items()},
            {k: v.tobytes() for k, v in arrays.items()}, json.dumps(scalars, sort_keys=True),
            json.dumps(trainer.rng.bit_generator.state))


def paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value[:4]):
            out += paths(v, prefix + (i,))
    return out


def bad_value(rng: random.Random) -> Any:
    return rng.choice([None, True, False, "", "x" * rng.randint(1, 50), _DEEP, -1, 0, 2**64,
                       10**400, -(10**400), 1e308, -1e308, 0.5, [], [1, 2, 3], {}, {"a": 1},
                       [[[[]]]], rng.randint(-(10**9), 10**9)])


def mutate(original: bytes, header: dict[str, Any], path: Path, rng: random.Random) -> str:
    """Write one damaged file to `path`; returns the kind of damage."""
    kind = rng.choice(["flip", "truncate", "field", "field", "delete"])
    if kind == "flip":
        raw = bytearray(original)
        for at in rng.sample(range(len(raw)), rng.randint(1, 8)):
            raw[at] ^= rng.randint(1, 255)
        path.write_bytes(bytes(raw))
        return kind
    if kind == "truncate":
        path.write_bytes(original[:rng.randrange(len(original))])
        return kind
    field = rng.choice([p for p in paths(header) if p])
    value, depth = bad_value(rng), rng.randint(100, 300_000)

    def change(h: dict[str, Any]) -> bytes:
        node: Any = h
        for key in field[:-1]:
            node = node[key]
        if kind == "delete" and isinstance(node, dict):
            del node[field[-1]]
        else:
            node[field[-1]] = value
        return json.dumps(h).replace(json.dumps(_DEEP), "[" * depth + "]" * depth).encode()

    path.write_bytes(original)
    repack(path, change)
    return kind


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    outcomes: collections.Counter[str] = collections.Counter()
    kinds: collections.Counter[str] = collections.Counter()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        base = Path(d) / "c"
        writer = make_trainer(1)
        writer.save_checkpoint(str(base), 1)
        writer.release_checkpoint()
        original = (Path(d) / "c.ckpt").read_bytes()
        header: dict[str, Any] = {}
        repack(Path(d) / "c.ckpt", lambda h: header.update(h) or h)
        trainer = make_trainer(2)
        for _ in range(args.cases):
            kinds[mutate(original, header, Path(d) / "c.ckpt", rng)] += 1
            before = snapshot(trainer)
            try:
                trainer.load_checkpoint(str(base))
                outcomes["loaded"] += 1
                trainer.release_checkpoint()
                trainer = make_trainer(2)
            except CheckpointError as exc:
                untouched = snapshot(trainer) == before and "checkpoint" in str(exc)
                outcomes["CheckpointError" if untouched else "CheckpointError, trainer changed"] += 1
            except Exception as exc:  # noqa: BLE001 - what this script exists to count
                outcomes[type(exc).__name__] += 1
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {"cases": args.cases, "damage": dict(kinds), "outcomes": dict(outcomes),
              "seconds": round(time.perf_counter() - start, 1), "peak_rss_mib": round(peak)}
    print(json.dumps(result, indent=1))
    bad = set(outcomes) - {"loaded", "CheckpointError"}
    print("all failures were CheckpointErrors that left the trainer untouched" if not bad
          else f"unexpected outcomes: {sorted(bad)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
