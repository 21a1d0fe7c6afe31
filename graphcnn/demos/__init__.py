"""The demos of `graphcnn demo --task ...`: one module per job, each a small end-to-end
run (data, model, training, metrics, a picture) over the public API.

Each module has ``DEFAULTS`` (its epochs, batch size and learning rate, what
``--epochs``/``--batch-size``/``--lr`` fall back to) and ``run(args) -> int``, which
prints its metrics and writes its PNG into ``args.out``.
"""
from __future__ import annotations

import importlib
from types import ModuleType

# task -> module in this package; the first is the default
TASKS: dict[str, str] = {
    "classify": "classify",
    "segment": "segment",
    "detect": "detect",
    "regress": "regress",
    "generate": "generate",
}


def task_module(task: str) -> ModuleType:
    """The module running the demo of `task`."""
    return importlib.import_module(f"graphcnn.demos.{TASKS[task]}")
