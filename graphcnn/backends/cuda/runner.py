"""Runs a graph's nodes as cuda kernels over one device arena laid out by the memory plan
(graphcnn/runtime/memory_plan.py), as the cpu runner does on the host.

- Every value has a fixed device array: arena views for intermediates (reshape/flatten
  nodes the plan marks as views are skipped), device copies of the constants (uploaded
  once, at construction), and persistent device buffers for the inputs and parameters
  the caller feeds. So every kernel's launch is planned once and replayed each call.
- `run(feeds)` (what Executable.run calls) copies the host feeds into those buffers, runs,
  and returns host copies of the outputs. `run_device(feeds)` takes host *or* device
  arrays (device ones are copied device-to-device) and returns device arrays: fresh copies
  by default, or with copy=False views of the arena that the next call overwrites; the
  module's `run_device(exe, feeds)` does that for an Executable, by input name.
- Parameters marked resident (`make_resident`) are not uploaded at each call: the
  device copy is the master (the device optimizer updates it in place; see optim.py), and
  `download_parameters` brings it back to the host.
- Threads: the launches are bound to the one set of device buffers, so calls from several
  threads take turns (a lock held from the upload of the feeds to the copy of the
  outputs); the GPU runs one graph's kernels at a time on the default stream anyway.
  Device arrays returned with copy=False are the arena's: the next call, from any
  thread, overwrites them.
"""
from __future__ import annotations

import threading
from typing import Any, Iterable

import numpy as np

from graphcnn.backends.cuda.device import check_device_memory, cuda
from graphcnn.backends.cuda.registry import Launch, get_kernel
from graphcnn.ir.graph import Graph, Node, Value
from graphcnn.runtime.memory_plan import MemoryPlan, plan_memory
from graphcnn.runtime.runner import Runner


def _shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(shape) if len(shape) else (1,)  # scalars live as 1-element arrays


class CudaRunner(Runner):
    """A step's kernel is the list of its planned launches (each a configured numba.cuda
    kernel with its arguments bound), run in order."""

    name = "cuda"
    plan: MemoryPlan

    def __init__(self, graph: Graph, plan: MemoryPlan | None = None) -> None:
        self._cuda = cuda()
        plan = plan if plan is not None else plan_memory(graph)
        fed = [n for n in graph.nodes if n.op in ("input", "param")]
        consts = [n for n in graph.nodes if n.op == "constant"]
        fed_bytes = sum(n.output.type.nbytes for n in fed)
        const_bytes = sum(n.output.type.nbytes for n in consts)
        check_device_memory(
            plan.arena_bytes + fed_bytes + const_bytes,
            f"graph {graph.name!r} (arena {plan.arena_bytes:,} bytes, inputs and "
            f"parameters {fed_bytes:,}, constants {const_bytes:,})")
        self._lock = threading.RLock()   # one call at a time: see the module's docstring
        self.params: dict[str, Any] = {}        # param name -> its device buffer
        self.resident: set[int] = set()
        self._by_name: dict[str, int] = {}      # input or param name -> its value id
        super().__init__(graph, plan)

    # ---- building ---------------------------------------------------------------------
    def bind_source(self, node: Node) -> None:
        """Inputs and parameters get persistent device buffers, fed at each call."""
        v = node.output
        self.buffers[v.id] = self._cuda.device_array(_shape(v.shape), v.dtype)
        if node.op == "param":
            self.params[node.attrs["name"]] = self.buffers[v.id]
        self._by_name[node.attrs["name"]] = v.id

    def constant(self, value: Value, array: Any) -> Any:
        array = np.ascontiguousarray(array)   # uploaded once
        return self._cuda.to_device(array.reshape(_shape(array.shape)))

    def new_arena(self) -> Any:
        return self._cuda.device_array(max(self.plan.arena_bytes, 1), np.uint8)

    def place(self, value: Value, arena: Any) -> Any:
        offset = self.plan.offsets[value.id]
        nbytes = max(int(np.prod(value.shape, dtype=np.int64)), 1) * \
            np.dtype(value.dtype).itemsize
        return arena[offset:offset + nbytes].view(np.dtype(value.dtype)).reshape(
            _shape(value.shape))

    def new_context(self) -> Any:
        raise AssertionError("the cuda runner runs one call at a time: it has one context")

    def build_kernel(self, node: Node) -> list[Launch]:
        ins = [self.buffers[v.id] for v in node.inputs]
        outs = [self.buffers[v.id] for v in node.outputs]
        try:
            return get_kernel(node.op)(ins, outs, node.attrs)
        except NotImplementedError as err:
            raise NotImplementedError(f"node %{node.output.id} = {node.op}: {err}") from None

    # ---- calling ----------------------------------------------------------------------
    def run(self, feeds: dict[int, Any]) -> list[Any]:
        with self._lock:
            return super().run(feeds)

    def feed(self, context: Any, feeds: dict[int, Any]) -> dict[int, Any]:
        """Host feeds are uploaded, device ones copied device-to-device; resident
        parameters are skipped."""
        for vid, array in feeds.items():
            if vid in self.resident:
                continue
            buf = self.buffers[vid]
            if hasattr(array, "copy_to_host"):        # a device array: device-to-device
                buf.copy_to_device(array.reshape(buf.shape) if array.shape != buf.shape
                                   else array)
            else:
                buf.copy_to_device(np.ascontiguousarray(array).reshape(buf.shape))
        return self.buffers

    def launch(self, context: Any, buffers: dict[int, Any]) -> None:
        for step in self.steps:
            for launch in step.kernel:
                launch()

    def collect(self, buffers: dict[int, Any]) -> list[np.ndarray]:
        """Host copies of the outputs."""
        return [buffers[v.id].copy_to_host().reshape(v.shape) for v in self.graph.outputs]

    def run_device(self, feeds: dict[int, Any], copy: bool = True) -> list[Any]:
        """Like run, with host or device feeds, returning device arrays (fresh copies, or
        with copy=False the arena's own buffers, valid until the next call)."""
        with self._lock:
            context = self.take_context()
            try:
                buffers = self.feed(context, feeds)
                self.launch(context, buffers)
                outs = [buffers[v.id] for v in self.graph.outputs]
                if not copy:
                    return outs
                fresh = []
                for buf in outs:
                    new = self._cuda.device_array(buf.shape, buf.dtype)
                    new.copy_to_device(buf)
                    fresh.append(new)
                return fresh
            finally:
                self.give_back(context)

    # ---- device-resident parameters ---------------------------------------------------
    def make_resident(self, params: dict[str, np.ndarray], names: Iterable[str] | None = None
                      ) -> None:
        """Upload `params` (name -> host array) once and stop uploading them per call."""
        with self._lock:
            self._make_resident(params, names)

    def _make_resident(self, params: dict[str, np.ndarray], names: Iterable[str] | None
                       ) -> None:
        for name in (names if names is not None else params):
            if name not in self.params:
                continue
            buf = self.params[name]
            buf.copy_to_device(np.ascontiguousarray(params[name]).reshape(buf.shape))
            self.resident.add(self._by_name[name])

    def download_parameters(self, params: dict[str, np.ndarray]) -> None:
        """Copy the resident device parameters into the host arrays `params`, in place."""
        with self._lock:
            for name, vid in self._by_name.items():
                if vid in self.resident and name in params:
                    host = self.params[name].copy_to_host()
                    params[name][...] = host.reshape(params[name].shape)


def check_device_array(name: str, array: Any, shape: tuple[int, ...], dtype: str) -> Any:
    """A host or device input exactly as the graph takes it (nothing is converted: that
    would bring a device array to the host), else a ValueError saying what was expected."""
    if tuple(array.shape) != tuple(shape) or np.dtype(array.dtype) != np.dtype(dtype):
        raise ValueError(f"input {name!r} expects {dtype} of shape {tuple(shape)}, got "
                         f"{array.dtype} of shape {tuple(array.shape)}")
    return array


def run_device(exe: Any, feeds: dict[str, Any], copy: bool = True) -> dict[str, Any]:
    """Run a cuda Executable on host or device arrays (by input name) and return device
    arrays by output name, with no host round trip: the zero-copy path of the cuda
    backend. The feeds are bound as Executable.run binds them (parameters from the
    executable's source unless resident, a dropout seed drawn unless fed), with inputs
    checked but not converted."""
    runner = exe.runner
    if not isinstance(runner, CudaRunner):
        raise ValueError(f"run_device needs an executable compiled with backend='cuda', "
                         f"this one is {exe.backend.name!r}")
    by_id = exe.bind(feeds, check=check_device_array, skip=runner.resident)
    outputs = runner.run_device(by_id, copy=copy)
    return dict(zip(exe.output_names, outputs))
