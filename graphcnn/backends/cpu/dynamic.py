"""A cpu runner for any batch size from 1 to a maximum (graphcnn/runtime/dynamic_batch.py).

It is a CpuRunner of the graph at its maximum batch: that runner's memory plan, arenas and
call contexts serve every batch. The steps at a smaller batch `b` are built the first time
a call runs at `b` (then kept): the graph replayed at `b`, its kernels chosen for `b`'s
shapes, taking the choice made at the nearer of batch 1 and the maximum (both chosen when
the executable was compiled) where it still applies, so that no call autotunes. Each
context's buffers at `b` are views of its own arena, prefixes of the maximum's at the same
offsets; the frozen weights are transformed once, for every batch (shared_prepack.py).
"""
from __future__ import annotations

import math
import threading
import warnings
from typing import Any

import numpy as np

from graphcnn.backends.cpu.runner import CpuRunner
from graphcnn.backends.cpu.shared_prepack import PrepackStore, sharing_prepacked
from graphcnn.backends.cpu.strategy import Implementation
from graphcnn.ir.graph import Graph, Value
from graphcnn.runtime.dynamic_batch import DynamicBatchError, max_batch_of, rebatch
from graphcnn.runtime.memory_plan import MemoryPlan
from graphcnn.runtime.runner import CallContext, Step


class _StepsAt(CpuRunner):
    """The steps of the graph at one batch, built as a CpuRunner builds them but placing
    nothing: its values live in the dynamic runner's contexts."""

    def new_arena(self) -> np.ndarray:
        return np.empty(0, np.uint8)

    def place(self, value: Value, arena: np.ndarray) -> None:  # type: ignore[override]
        return None   # (the Runner base class allows None: "made at each call")


class DynamicCpuRunner(CpuRunner):
    """`graph` is built at the maximum batch; `run_at(feeds, batch)` runs any batch up to
    it. `implementations` (node id -> name) fix the choices at the maximum, as in a
    CpuRunner; `implementations_batch1` those at batch 1 (an artifact's: None chooses
    them now)."""

    def __init__(self, graph: Graph, plan: MemoryPlan | None = None,
                 implementations: dict[int, str] | None = None,
                 implementations_batch1: dict[int, str] | None = None) -> None:
        self.max_batch = self._largest = max_batch_of(graph)
        self._prepacked: PrepackStore = {}
        self._shapes: dict[int, dict[int, tuple[int, ...]]] = {}   # batch -> value shapes
        self._lock = threading.Lock()
        with sharing_prepacked(self._prepacked):
            super().__init__(graph, plan, implementations)
        full = {step.node: step.implementation for step in self.steps}
        self._at: dict[int, tuple[list[Step], dict[int, Implementation]]] = {
            self.max_batch: (self.steps, self.chosen)}
        self._choices: dict[int, dict[int, str]] = {self.max_batch: full}
        try:
            one = self._build(1, implementations_batch1)
        except DynamicBatchError:   # batch norm in training on (N, C): 2 values at least
            if self.max_batch < 2:
                raise
            self.smallest_batch = 2
            one = self._at.get(2) or self._build(2, implementations_batch1)
        self._choices[self.smallest_batch] = {step.node: step.implementation
                                              for step in one[0]}
        self._at[self.smallest_batch] = one
        self._views: dict[tuple[int, int], dict[int, np.ndarray]] = {}

    # ---- the steps at each batch ------------------------------------------------------
    def implementations_at(self, batch: int) -> list[str]:
        """The implementation of each step at `batch`, in step order (built if need be; at
        the smallest batch the graph runs when `batch` is below it: what an artifact
        records as its "batch 1" choices)."""
        return [step.implementation for step in self.steps_at(max(batch,
                                                                  self.smallest_batch))[0]]

    def steps_at(self, batch: int) -> tuple[list[Step], dict[int, Implementation]]:
        found = self._at.get(batch)
        if found is None:
            with self._lock:   # two threads at a new batch at once build it once
                found = self._at.get(batch)
                if found is None:
                    found = self._at[batch] = self._build(batch, self._nearest_choices(batch))
        return found

    def _nearest_choices(self, batch: int) -> dict[int, str]:
        """The choices made at 1 or at the maximum, whichever is nearer on a log scale
        (the costs that decide them grow with the work, roughly as the batch)."""
        middle = math.sqrt(self._largest)
        return self._choices[self.smallest_batch if batch < middle else self._largest]

    def _build(self, batch: int, saved: dict[int, str] | None
               ) -> tuple[list[Step], dict[int, Implementation]]:
        graph = rebatch(self.graph, batch)
        with warnings.catch_warnings(), sharing_prepacked(self._prepacked):
            # A choice made at another batch may not apply at this one: choose again,
            # silently (the warning is for an artifact whose saved choice does not apply).
            warnings.filterwarnings("ignore", message=".*saved implementation",
                                    category=RuntimeWarning)
            built = _StepsAt(graph, self.plan, saved)
        self._shapes[batch] = {v.id: v.shape for v in graph.values()}
        return built.steps, built.chosen

    # ---- calling ----------------------------------------------------------------------
    def _buffers_at(self, context: CallContext, batch: int) -> dict[int, np.ndarray]:
        """The context's buffers at `batch`: its constants, and each planned value as a view
        of its arena at the maximum's offset (made once per context and batch)."""
        key = (id(context), batch)
        views = self._views.get(key)
        if views is None:
            shapes = self._shapes[batch]
            views = dict(self._constants)
            for value in self._placed:
                views[value.id] = self._view(context.arena, value, shapes[value.id])
            self._views[key] = views
        return views

    def _view(self, arena: np.ndarray, value: Value, shape: tuple[int, ...]) -> np.ndarray:
        offset = self.plan.offsets[value.id]
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(value.dtype).itemsize
        return arena[offset:offset + nbytes].view(value.dtype).reshape(shape)

    def run_at(self, feeds: dict[int, Any], batch: int) -> list[Any]:
        """Run at `batch` (1 to max_batch): feeds by value id, at that batch."""
        if batch == self.max_batch:
            return self.run(feeds)
        steps, chosen = self.steps_at(batch)
        context = self.take_context()
        try:
            buffers = self._buffers_at(context, batch)
            for vid, array in feeds.items():
                buffers[vid] = np.require(array, requirements="C")
            self.launch(context, buffers, steps, chosen)
            return self.collect(buffers)
        finally:
            self.give_back(context)
