"""GradientStep: `loss, grads = step(x, target)` over a compiled training graph.

A step reads its parameters from a `ParameterSource` at every call and writes the
batch-norm running statistics back into it (training mode, as in PyTorch). A step built by
`graphcnn.value_and_grad` reads its Model's parameters (a Model is a ParameterSource); a
step loaded from a training artifact holds its own (`HeldParameters`).
"""
from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any, Mapping, Protocol

import numpy as np

from graphcnn.ops import collective
from graphcnn.runtime.executable import Executable

if TYPE_CHECKING:
    from graphcnn.runtime.artifact.writer import ArtifactContents


class ParameterSource(Protocol):
    """Where a step's parameters live: the arrays themselves (no copies), by name."""

    def parameters(self) -> dict[str, np.ndarray]: ...

    def trainable_parameters(self) -> dict[str, np.ndarray]: ...


class HeldParameters:
    """Parameters a step holds itself, for want of a Model (a loaded training artifact)."""

    def __init__(self, values: dict[str, np.ndarray], trainable: list[str]) -> None:
        unknown = sorted(set(trainable) - set(values))
        if unknown:
            raise ValueError(f"trainable parameters {unknown[:5]} have no value")
        self.values = values
        self.trainable = list(trainable)

    def parameters(self) -> dict[str, np.ndarray]:
        return self.values

    def trainable_parameters(self) -> dict[str, np.ndarray]:
        return {name: self.values[name] for name in self.trainable}


class GradientStep:
    """`loss, grads = step(x, target)`: the loss and d(loss)/d(each trainable parameter).

    Batch-norm running statistics are updated in the parameters as a side effect of each
    call (training mode), as in PyTorch. Built by `graphcnn.value_and_grad` (its
    parameters are the model's) or loaded by `graphcnn.load` from a training artifact (it
    holds them: `step.parameters`, updated in place, e.g. by an optimizer):

        step = gc.load("step.gcnn")
        loss, grads = step(x, target)
        optimizer.step(step.trainable_parameters(), grads)
        gc.save(step, "step.gcnn")                     # the trained values, no compiling

    `loss` is a loss name ("cross_entropy", "mse") or the function the graph was built
    with; `num_classes` is what cross-entropy labels are checked against.

    Any number of threads may call a step at once (each call runs in a context of its
    own, see Executable): each gets the loss and gradients of its own batch at the
    parameters' current values. The batch-norm running statistics are the one thing
    concurrent calls share: each call writes its update back whole, one call at a time,
    but a call may read them while another writes, so with calls at once they end as some
    mix of the calls' updates (as with a PyTorch module trained from several threads).

    A step built with ``value_and_grad(batch_size=None, max_batch=N)`` runs any batch
    from 1 to N (``step.executable.max_batch`` is N; docs/dynamic_batch.md), each call
    returning what a step built at that batch returns; one loaded from its artifact too.

    `allreduce`: for a step built with synchronized batch norm (``value_and_grad(...,
    sync_batchnorm=W)``), the function that averages an array over the W ranks, which
    each call installs for its `allreduce` nodes (graphcnn/ops/collective.py); None: a
    step for one rank runs them as the identity, one for more ranks refuses to run.
    """

    allreduce: Any = None

    def __init__(self, executable: Executable, loss: Any,
                 source: ParameterSource, num_classes: int) -> None:
        self.executable = executable
        self.loss = loss
        self.source = source
        self.num_classes = num_classes
        self._state_names = [n for n in executable.output_names if n.startswith("state:")]
        self._write_back = threading.Lock()   # a call's running statistics, written whole

    @property
    def model(self) -> Any:
        """The Model whose parameters this step reads, or None for a step loaded from an
        artifact (which holds its own)."""
        return None if isinstance(self.source, HeldParameters) else self.source

    @property
    def parameters(self) -> dict[str, np.ndarray]:
        """Every parameter the step reads at each call, by name: the arrays themselves."""
        return self.source.parameters()

    def trainable_parameters(self) -> dict[str, np.ndarray]:
        return self.source.trainable_parameters()

    def __call__(self, x: np.ndarray, target: np.ndarray | Mapping[str, np.ndarray]
                 ) -> tuple[float, dict[str, np.ndarray]]:
        if self.loss == "cross_entropy" and not isinstance(target, Mapping):
            check_labels(target, int(self.num_classes))
        input_name = self.executable.input_names[0]
        if isinstance(target, Mapping):   # a model with several outputs: a target each
            feeds = {f"target:{name}": value for name, value in target.items()}
            expected = [n for n in self.executable.input_names if n.startswith("target:")]
            if sorted(feeds) != sorted(expected):
                raise ValueError(f"targets given for {sorted(target)}; this step takes "
                                 f"{sorted(n[len('target:'):] for n in expected)}")
        else:
            feeds = {"target": target}
        if self.allreduce is None:
            outputs = self.executable.run({input_name: x, **feeds})
        else:
            with collective.using(self.allreduce):
                outputs = self.executable.run({input_name: x, **feeds})
        if self._state_names:
            params = self.source.parameters()
            with self._write_back:
                for name in self._state_names:
                    params[name[len("state:"):]][...] = outputs[name]
        grads = {name[len("grad:"):]: value for name, value in outputs.items()
                 if name.startswith("grad:")}
        return float(outputs["loss"]), grads

    def report(self) -> dict[str, Any]:
        return self.executable.report()

    def save(self, path: str | os.PathLike) -> None:
        """`graphcnn.save(self, path)`: the step's code and its parameters' current values
        as an artifact that `graphcnn.load` returns as a GradientStep, without compiling."""
        from graphcnn.runtime.artifact.writer import save
        save(self, path)

    def artifact_contents(self) -> ArtifactContents:
        """What `graphcnn.save` writes of this step: its executable, its parameters'
        current values, and the loss, number of classes and trainable parameter names it
        loads back with. A custom loss function cannot be saved (it is code)."""
        from graphcnn.runtime.artifact.writer import ArtifactContents

        if not isinstance(self.loss, str):
            raise ValueError("a training step with a custom loss function cannot be saved as "
                             "an artifact; use a named loss (cross_entropy, mse)")
        trainable = [n.attrs["name"] for n in self.executable.graph.nodes
                     if n.op == "param" and n.attrs["trainable"]]
        return ArtifactContents(self.executable, self.parameters,
                                {"loss": self.loss, "num_classes": int(self.num_classes),
                                 "trainable": trainable})

    def __repr__(self) -> str:
        return (f"GradientStep({self.executable.graph.name!r}, loss={self.loss!r}, "
                f"inputs={self.executable.input_names})")


def check_labels(labels: np.ndarray, num_classes: int) -> None:
    """Class labels: integers in [0, num_classes), else a ValueError naming the bad ones."""
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu":
        raise ValueError(f"class labels must be integers, got dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)]
        raise ValueError(f"labels must be in [0, {num_classes}); got "
                         f"{sorted(set(bad.tolist()))[:5]}")
