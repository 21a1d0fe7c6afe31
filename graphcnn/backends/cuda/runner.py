"""Runs a graph's nodes as cuda kernels over one device arena laid out by the memory plan
(graphcnn/runtime/memory_plan.py), as the cpu runner does on the host.

- Every value has a fixed device array: arena views for intermediates (reshape/flatten
  nodes the plan marks as views are skipped), device copies of the constants (uploaded
  once, at construction), and persistent device buffers for the inputs and parameters
  the caller feeds. So every kernel's launch is planned once and replayed each call.
- `run(feeds)` (what Executable.run calls) copies the host feeds into those buffers, runs,
  and returns host copies of the outputs. `run_device(feeds)` takes host *or* device
  arrays (device ones are copied device-to-device) and returns device arrays: fresh copies
  by default, or with copy=False views of the arena that the next call overwrites.
- Parameters marked resident (`make_resident`) are not uploaded at each call: the
  device copy is the master (the device optimizer updates it in place; see optim.py), and
  `download_parameters` brings it back to the host.
"""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from graphcnn.backends.cuda.device import check_device_memory, cuda
from graphcnn.backends.cuda.registry import Launch, get_kernel
from graphcnn.ir.graph import Graph
from graphcnn.runtime.memory_plan import MemoryPlan, plan_memory


def _shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(shape) if len(shape) else (1,)  # scalars live as 1-element arrays


class CudaRunner:
    name = "cuda"

    def __init__(self, graph: Graph, plan: MemoryPlan | None = None) -> None:
        cu = cuda()
        self.graph = graph
        self.plan = plan if plan is not None else plan_memory(graph)
        fed = [n for n in graph.nodes if n.op in ("input", "param")]
        consts = [n for n in graph.nodes if n.op == "constant"]
        fed_bytes = sum(n.output.type.nbytes for n in fed)
        const_bytes = sum(n.output.type.nbytes for n in consts)
        check_device_memory(
            self.plan.arena_bytes + fed_bytes + const_bytes,
            f"graph {graph.name!r} (arena {self.plan.arena_bytes:,} bytes, inputs and "
            f"parameters {fed_bytes:,}, constants {const_bytes:,})")
        self.arena = cu.device_array(max(self.plan.arena_bytes, 1), np.uint8)
        self.buffers: dict[int, Any] = {}
        self.params: dict[str, Any] = {}        # param name -> its device buffer
        self.resident: set[int] = set()
        self.steps: list[tuple[str, list[Launch]]] = []
        for node in graph.nodes:
            if node.op in ("input", "param"):
                v = node.output
                self.buffers[v.id] = cu.device_array(_shape(v.shape), v.dtype)
                if node.op == "param":
                    self.params[node.attrs["name"]] = self.buffers[v.id]
                continue
            if node.op == "constant":
                value = np.ascontiguousarray(node.attrs["value"])
                self.buffers[node.output.id] = cu.to_device(value.reshape(_shape(value.shape)))
                continue
            for value in node.outputs:
                self.buffers[value.id] = self._view(value.id, value.shape, value.dtype)
            if node.id in self.plan.views:
                continue  # a reshape over its own input's memory: nothing to run
            ins = [self.buffers[v.id] for v in node.inputs]
            outs = [self.buffers[v.id] for v in node.outputs]
            try:
                launches = get_kernel(node.op)(ins, outs, node.attrs)
            except NotImplementedError as err:
                raise NotImplementedError(f"node %{node.output.id} = {node.op}: {err}") \
                    from None
            self.steps.append((node.op, launches))
        self._by_name = {n.attrs["name"]: n.output.id for n in fed}

    def _view(self, vid: int, shape: tuple[int, ...], dtype: str) -> Any:
        offset = self.plan.offsets[vid]
        nbytes = max(int(np.prod(shape, dtype=np.int64)), 1) * np.dtype(dtype).itemsize
        return self.arena[offset:offset + nbytes].view(np.dtype(dtype)).reshape(_shape(shape))

    @property
    def allocated_bytes(self) -> int:
        return self.plan.arena_bytes

    # ---- calling ----------------------------------------------------------------------
    def _feed(self, feeds: dict[int, Any]) -> None:
        for vid, array in feeds.items():
            if vid in self.resident:
                continue
            buf = self.buffers[vid]
            if hasattr(array, "copy_to_host"):        # a device array: device-to-device
                buf.copy_to_device(array.reshape(buf.shape) if array.shape != buf.shape
                                   else array)
            else:
                buf.copy_to_device(np.ascontiguousarray(array).reshape(buf.shape))

    def _launch(self) -> None:
        for _, launches in self.steps:
            for launch in launches:
                launch()

    def run(self, feeds: dict[int, np.ndarray]) -> list[np.ndarray]:
        """feeds: value id -> host array for every input and param (resident params are
        skipped); returns host copies of the outputs."""
        self._feed(feeds)
        self._launch()
        return [self.buffers[v.id].copy_to_host().reshape(v.shape) for v in self.graph.outputs]

    def run_device(self, feeds: dict[int, Any], copy: bool = True) -> list[Any]:
        """Like run, with host or device feeds, returning device arrays (fresh copies, or
        with copy=False the arena's own buffers, valid until the next call)."""
        self._feed(feeds)
        self._launch()
        outs = [self.buffers[v.id] for v in self.graph.outputs]
        if not copy:
            return outs
        cu = cuda()
        fresh = []
        for buf in outs:
            new = cu.device_array(buf.shape, buf.dtype)
            new.copy_to_device(buf)
            fresh.append(new)
        return fresh

    # ---- device-resident parameters ---------------------------------------------------
    def make_resident(self, params: dict[str, np.ndarray], names: Iterable[str] | None = None
                      ) -> None:
        """Upload `params` (name -> host array) once and stop uploading them per call."""
        for name in (names if names is not None else params):
            if name not in self.params:
                continue
            buf = self.params[name]
            buf.copy_to_device(np.ascontiguousarray(params[name]).reshape(buf.shape))
            self.resident.add(self._by_name[name])

    def download_parameters(self, params: dict[str, np.ndarray]) -> None:
        """Copy the resident device parameters into the host arrays `params`, in place."""
        for name, vid in self._by_name.items():
            if vid in self.resident and name in params:
                host = self.params[name].copy_to_host()
                params[name][...] = host.reshape(params[name].shape)


def run_device(exe: Any, feeds: dict[str, Any], copy: bool = True) -> dict[str, Any]:
    """Run a cuda Executable on host or device arrays (by input name) and return device
    arrays by output name, with no host round trip: the zero-copy path of the cuda
    backend. Parameters come from the executable's model as in Executable.run (unless
    resident); a dropout seed is drawn as Executable.run draws it."""
    from graphcnn.ir.conventions import DROPOUT_SEED_INPUT
    runner = exe.runner
    if not isinstance(runner, CudaRunner):
        raise ValueError(f"run_device needs an executable compiled with backend='cuda', "
                         f"this one is {exe.backend!r}")
    by_id: dict[int, Any] = {}
    for name, value in exe._inputs.items():
        if name in feeds:
            array = feeds[name]
        elif name == DROPOUT_SEED_INPUT:
            array = np.asarray(next(exe._seeds), dtype=np.int64)
        else:
            raise ValueError(f"missing input {name!r}; this model takes {exe.input_names}")
        if tuple(array.shape) != tuple(value.shape) or np.dtype(array.dtype) != \
                np.dtype(value.dtype):
            raise ValueError(f"input {name!r} expects {value.dtype} of shape "
                             f"{tuple(value.shape)}, got {array.dtype} of shape "
                             f"{tuple(array.shape)}")
        by_id[value.id] = array
    unknown = sorted(set(feeds) - set(exe._inputs))
    if unknown:
        raise ValueError(f"unknown input(s) {unknown}; this model takes {exe.input_names}")
    if exe._params:
        resident = runner.resident
        source = None
        for name, value in exe._params.items():
            if value.id in resident:
                continue
            if source is None:
                source = exe._param_source() if exe._param_source else {}
            by_id[value.id] = source[name]
    outputs = runner.run_device(by_id, copy=copy)
    return dict(zip(exe.output_names, outputs))
