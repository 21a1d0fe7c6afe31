"""Each rank's share of an epoch: DistributedSampler's semantics (PyTorch, drop_last).

Every rank draws the same permutation of the N samples (the trainer's rng starts from the
shared seed and advances identically on every rank). The first ``(N // W) * W`` entries
are dealt out in turn: rank r takes entries r, r + W, r + 2W, ... Shards are disjoint and
equal in size; the last ``N % W`` entries of the permutation (different samples each
epoch) are not visited that epoch. Each rank then cuts its shard into batches of the
per-rank batch size B and drops its last partial batch (every rank takes the same
number of steps; the single-process Trainer, unless ``drop_last=True``, trains on it). So global batch b holds exactly the samples ``perm[b*B*W:(b+1)*B*W]`` -- the very
batch a single process with batch size ``B*W`` trains on at step b -- and an epoch has
``N // (B*W)`` steps on any world size.
"""
from __future__ import annotations

import numpy as np


def shard_indices(order: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """This rank's strided shard of an epoch's permutation `order` (module docstring)."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in a world of size {world_size}")
    usable = len(order) // world_size * world_size
    return order[rank:usable:world_size]
