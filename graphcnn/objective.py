"""Objective: what a model is trained to do — a loss term per output, their weights, the
targets they take, and the metrics its evaluation reports.

One training loop serves every job through it (graphcnn/train/trainer.py):

- classification: (N, C) logits and (N,) class labels ("cross_entropy"; "mse" takes
  the labels as one-hot rows);
- segmentation: (N, C, H, W) logits and (N, H, W) labels ("pixel_cross_entropy", ...);
- regression: one output and float targets of its shape ("mse", "l1", "smooth_l1");
- several outputs (a detector's heads): a loss per output name and ``loss_weights``, as
  Keras' ``compile(loss={...}, loss_weights={...})``; the step's loss is the weighted sum.

Targets are given as an array for a one-output model and as a dict by output name (or a
tuple in output order) for several. Internally they are always a dict by output name.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from graphcnn.ir.graph import Graph, Value
from graphcnn.losses import Loss, as_loss
from graphcnn.model import Model
from graphcnn.ops.registry import get_op

LossArg = Any   # str | Loss | callable | Mapping[str, str | Loss] | Sequence[str | Loss]
Targets = dict[str, np.ndarray]


class Objective:
    """The losses of a model's outputs and the targets they take.

    >>> import graphcnn as gc
    >>> from graphcnn import nn
    >>> x = gc.Input((4,))
    >>> model = gc.Model(x, {"a": nn.Linear(4, 3)(x), "b": nn.Linear(4, 2)(x)})
    >>> Objective(model, {"a": "cross_entropy", "b": "mse"}, {"b": 0.5}).weights
    {'a': 1.0, 'b': 0.5}
    """

    def __init__(self, model: Model, loss: LossArg,
                 loss_weights: Mapping[str, float] | Sequence[float] | None = None) -> None:
        self.output_names = list(model.output_names)
        # per-sample prediction shapes: the batch axis is bound at compile time
        self.sample_shapes = {n: tuple(t.type.shape[1:])
                              for n, t in zip(self.output_names, model.outputs)}
        self.custom: Callable[..., Value] | None = None
        self.terms: dict[str, Loss] = {}
        if callable(loss) and not isinstance(loss, Loss):
            if len(self.output_names) != 1:
                raise ValueError("a loss function takes one prediction; for a model with "
                                 f"outputs {self.output_names} give a loss per output name")
            self.custom = loss
        elif isinstance(loss, Mapping):
            unknown = sorted(set(loss) - set(self.output_names))
            if unknown:
                raise ValueError(f"loss names outputs {unknown} the model does not have; its "
                                 f"outputs are {self.output_names}")
            self.terms = {n: as_loss(loss[n]) for n in self.output_names if n in loss}
            if not self.terms:
                raise ValueError("the loss dict names no output")
        elif isinstance(loss, (list, tuple)):
            if len(loss) != len(self.output_names):
                raise ValueError(f"{len(loss)} losses for the {len(self.output_names)} "
                                 f"outputs {self.output_names}")
            self.terms = {n: as_loss(t) for n, t in zip(self.output_names, loss)}
        else:   # one name or term: for every output, as Keras does
            self.terms = {n: as_loss(loss) for n in self.output_names}
        self.weights = self._weights(loss_weights)
        self.one_hot_labels = False   # class labels were given to a loss on scores

    def _weights(self, given: Mapping[str, float] | Sequence[float] | None) -> dict[str, float]:
        names = list(self.terms) or self.output_names
        if given is None:
            return {n: 1.0 for n in names}
        if not isinstance(given, Mapping):
            given = dict(zip(names, given, strict=True))
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise ValueError(f"loss_weights names {unknown}, which have no loss; the losses "
                             f"are on {names}")
        return {n: float(given.get(n, 1.0)) for n in names}

    # ---- the graph ---------------------------------------------------------------------
    @property
    def single(self) -> bool:
        """One output with a loss: its target is fed as "target", as a bare array."""
        return len(self.output_names) == 1

    def feed_name(self, output: str) -> str:
        return "target" if self.single else f"target:{output}"

    def build(self, graph: Graph, predictions: Sequence[Value]) -> Value:
        """Add the target inputs and the scalar loss over `predictions` (the model's
        outputs, in order) to `graph`."""
        by_name = dict(zip(self.output_names, predictions))
        if self.custom is not None:
            p = predictions[0]
            return self.custom(graph, p, graph.input("target", p.shape, p.dtype))
        total: Value | None = None
        for name, term in self.terms.items():
            p = by_name[name]
            want = term.target_type(p.type)
            value = term.build(graph, p, graph.input(self.feed_name(name), want.shape,
                                                     want.dtype))
            if self.weights[name] != 1.0:
                value = graph.add("mul", [value, graph.constant(
                    np.asarray(self.weights[name], dtype=p.dtype))])
            total = value if total is None else graph.add("add", [total, value])
        assert total is not None, "an objective has at least one term"
        return total

    # ---- targets -----------------------------------------------------------------------
    def kind(self, output: str) -> str:
        """"class_index", "like", or "custom" for a loss function."""
        return self.terms[output].target_kind if output in self.terms else "custom"

    def num_classes(self, output: str) -> int:
        """The size of axis 1 of an output's prediction (its classes)."""
        shape = self.sample_shapes[output]
        return int(shape[0]) if shape else 1

    def targets(self, y: Any, n: int, what: str) -> Targets:
        """The targets of `n` samples as a dict by output name, checked and converted:
        class indices to int64, the rest to float32 in the prediction's shape (integer
        class labels for a one-output "like" loss become one-hot rows)."""
        names = list(self.terms) or self.output_names
        if isinstance(y, Mapping):
            missing = [k for k in names if k not in y]
            if missing:
                raise ValueError(f"{what}: y has no targets for outputs {missing}; give a "
                                 f"dict with keys {names}")
            given = {k: y[k] for k in names}
        elif isinstance(y, (list, tuple)) and len(names) > 1:
            if len(y) != len(names):
                raise ValueError(f"{what}: {len(y)} targets for the outputs {names}")
            given = dict(zip(names, y))
        elif len(names) == 1:
            given = {names[0]: y}
        else:
            raise ValueError(f"{what}: this model has outputs {names}; give y as a dict by "
                             f"output name")
        return {k: self._target(k, np.asarray(v), n, what) for k, v in given.items()}

    def _target(self, output: str, y: np.ndarray, n: int, what: str) -> np.ndarray:
        label = f"{what}: y" if self.single else f"{what}: the target of output {output!r}"
        if len(y) != n:
            raise ValueError(f"{label} has {len(y)} samples but X has {n}")
        shape = self.sample_shapes[output]
        kind = self.kind(output)
        if kind == "class_index":
            want = (n,) + shape[1:]
            if y.dtype.kind not in "iu":
                raise ValueError(f"{label} must hold integer class labels, got dtype {y.dtype}")
            if y.shape != want:
                raise ValueError(f"{label} has shape {y.shape}; the prediction {(n,) + shape} "
                                 f"takes labels of shape {want}")
            return y.astype(np.int64, copy=False)
        if kind == "like" and y.ndim == 1 and y.dtype.kind in "iu" and len(shape) == 1 \
                and shape[0] > 1:   # class labels for a loss on scores: one-hot rows
            check_label_range(y, shape[0], label)
            self.one_hot_labels = True   # evaluated as a classifier
            return np.eye(shape[0], dtype=np.float32)[y]
        if y.dtype.kind not in "fiub":
            raise ValueError(f"{label} must be numeric, got dtype {y.dtype}")
        want = (n,) + shape
        if y.shape != want:
            if y.size != int(np.prod(want)):
                raise ValueError(f"{label} has shape {y.shape}; the prediction has shape "
                                 f"{want}")
            y = y.reshape(want)   # e.g. (N,) targets for an (N, 1) prediction
        return np.ascontiguousarray(y, np.float32)

    def check_labels(self, targets: Targets, where: str, indices: np.ndarray) -> None:
        """Class labels in [0, C) or equal to the loss's ignore_index, naming the samples
        of any that are not."""
        for name, y in targets.items():
            if self.kind(name) != "class_index":
                continue
            classes = self.num_classes(name)
            ignore = self.ignore_index(name)
            bad = ((y < 0) | (y >= classes)) & (y != ignore if ignore is not None else True)
            if bad.any():
                rows = np.nonzero(bad.reshape(len(y), -1).any(axis=1))[0]
                whose = "" if self.single else f" of output {name!r}"
                raise ValueError(
                    f"{where}: labels{whose} {np.unique(y[bad])[:8].tolist()} (at sample "
                    f"indices {indices[rows][:8].tolist()}) are outside [0, {classes}), the "
                    f"model's {classes} classes")

    def ignore_index(self, output: str) -> int | None:
        term = self.terms.get(output)
        if term is None:
            return None
        op = get_op(term.entry.op)
        if "ignore_index" in term.attrs:
            return int(term.attrs["ignore_index"])
        if "ignore_index" in op.attrs:
            return int(op.attrs["ignore_index"].default)
        return None

    def step_target(self, targets: Targets) -> Any:
        """What a GradientStep takes: the bare array for one output, else the dict."""
        return next(iter(targets.values())) if self.single else targets

    # ---- evaluation --------------------------------------------------------------------
    @property
    def task(self) -> str:
        """"classification", "segmentation", "regression" or "other": what evaluate
        reports beyond the loss."""
        if not self.single or self.custom is not None:
            return "other"
        name = self.output_names[0]
        rank = len(self.sample_shapes[name])
        if self.kind(name) == "class_index":
            return "classification" if rank == 1 else "segmentation" if rank == 3 else "other"
        return "regression"

    def loss_value(self, predictions: Targets, targets: Targets) -> float:
        """The objective's loss over whole arrays (the reference backend's ops): the
        same definition the training step minimizes, over every sample at once."""
        from graphcnn.runtime.executable import Executable
        n = len(next(iter(predictions.values())))
        g = Graph("evaluation_loss")
        values = [g.input(f"prediction:{k}", (n,) + self.sample_shapes[k], "float32")
                  for k in self.output_names]
        g.set_outputs([self.build(g, values)], ["loss"])
        feeds = {f"prediction:{k}": np.asarray(v, np.float32) for k, v in predictions.items()}
        feeds.update({self.feed_name(k): v for k, v in targets.items()})
        with np.errstate(all="ignore"):
            return float(Executable(g, "reference", ops_before=0).run(feeds)["loss"])


def check_label_range(y: np.ndarray, classes: int, label: str) -> None:
    bad = (y < 0) | (y >= classes)
    if bad.any():
        raise ValueError(f"{label}: labels {np.unique(y[bad])[:8].tolist()} are outside "
                         f"[0, {classes})")


def task_metrics(objective: Objective, predictions: Targets, targets: Targets) -> dict[str, Any]:
    """What evaluate reports for the objective's task, beyond the loss: classification
    (accuracy, macro precision/recall/f1, per_class, confusion_matrix), segmentation
    (pixel_accuracy, miou, dice, per-class iou; graphcnn.metrics.segmentation_metrics'
    conventions, the loss's ignore_index left out), regression (mae, rmse, r2)."""
    from graphcnn import metrics
    task = objective.task
    if task == "other":
        return {}
    name = objective.output_names[0]
    pred, y = predictions[name], targets[name]
    classes = objective.num_classes(name)
    if task == "classification" or objective.one_hot_labels:
        labels = y if y.ndim == 1 else y.argmax(axis=1)
        guess = pred.argmax(axis=1)
        prf = metrics.precision_recall_f1(labels, guess, num_classes=classes)
        cm = metrics.confusion_matrix(labels, guess, num_classes=classes)
        return {
            "accuracy": float(metrics.accuracy(labels, guess)),
            "precision": float(prf["macro_precision"]),
            "recall": float(prf["macro_recall"]),
            "f1": float(prf["macro_f1"]),
            "per_class": {"precision": np.asarray(prf["precision"]).tolist(),
                          "recall": np.asarray(prf["recall"]).tolist(),
                          "f1": np.asarray(prf["f1"]).tolist(),
                          "support": cm.sum(axis=1).tolist()},
            "confusion_matrix": cm,
        }
    if task == "segmentation":
        seg = metrics.segmentation_metrics(y, pred.argmax(axis=1), num_classes=classes,
                                           ignore_index=objective.ignore_index(name))
        return {"pixel_accuracy": float(seg["pixel_accuracy"]),
                "miou": float(seg["mean_iou"]), "dice": float(seg["mean_dice"]),
                "iou": np.asarray(seg["iou"]).tolist(),
                "confusion_matrix": seg["confusion_matrix"]}
    flat_y, flat_p = y.reshape(len(y), -1), pred.reshape(len(pred), -1)
    return metrics.regression_metrics(flat_y, flat_p)

