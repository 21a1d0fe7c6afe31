"""``graphcnn demo``: one job end to end (data, model, training, metrics, a picture).

    graphcnn demo [--task classify|...] [--epochs N] [--batch-size N] [--lr X] [--out DIR]

The default task trains LeNet-5 on the digits; each task lives in graphcnn/demos/.
"""
from __future__ import annotations

import argparse

from graphcnn.commands.common import add_training_arguments, augment_spec


def run(args: argparse.Namespace) -> int:
    """Train a model for one job (--task; default classify: LeNet-5 on the digits) and
    report its metrics and a picture."""
    from graphcnn.demos import task_module
    module = task_module(args.task)
    for option, value in module.DEFAULTS.items():
        if getattr(args, option) is None:
            setattr(args, option, value)
    return int(module.run(args))


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from graphcnn.demos import TASKS
    p = sub.add_parser("demo", help="train a model for one job and report",
                       description=run.__doc__)
    p.add_argument("--task", choices=tuple(TASKS), default="classify",
                   help="the job: " + ", ".join(TASKS) + " (default classify)")
    add_training_arguments(p, epochs=None, batch_size=None, lr=None)
    p.add_argument("--augment", type=augment_spec, default="shift",
                   help="augmentation spec for classify (default 'shift'; '' for none)")
    p.add_argument("--out", default="graphcnn-demo", help="folder for the PNGs")
    p.set_defaults(func=run)
    return p
