"""Trainer: the training loop over a compiled gradient step, with validation, metrics,
learning-rate schedules, augmentation, normalization and resumable checkpoints.

Choices worth knowing:

- `fit` compiles one GradientStep and one inference executable (``frozen=False``: it
  reads the live parameters) per batch size, cached on the trainer. Each epoch visits a
  fresh seeded permutation in batches of `batch_size` and, as PyTorch's DataLoader and
  Keras do, trains on the last, smaller batch too (10 samples in batches of 4: steps of
  4, 4 and 2): on cpu and reference the step runs any batch up to `batch_size`
  (``value_and_grad(batch_size=None)``), one executable (built only when the data leave
  a partial batch; otherwise a step for `batch_size`). ``drop_last=True`` drops that
  batch; it is dropped anyway, with a one-line RuntimeWarning, where no such step
  exists (cuda; a model whose training graph holds at one batch size), under
  ``distributed=True`` (every rank must take the same number of steps), and when it
  holds one sample and batch norm needs two per channel. A dataset smaller than
  `batch_size` trains with ``batch_size = len(X)``.
- Evaluation covers every sample. On the cpu and reference backends the inference
  executable runs any batch up to `batch_size` (``gc.compile(batch_size=None)``), so the
  last, smaller batch runs as it is; elsewhere it is padded with copies of its first row,
  and the padded rows' outputs are discarded.
- Training accuracy: the training graph outputs only the loss and gradients. With
  ``train_accuracy="epoch"`` (the default) it is measured at the end of each epoch on a
  fixed, evenly spaced subset of at most 1,024 training samples (no augmentation,
  inference mode): about one extra forward pass over 1,024 samples per epoch, and a
  number comparable with ``val_accuracy``. With ``"batch"`` the inference executable also
  runs on each training batch before the update (a running accuracy, as Keras shows; one
  extra forward per step). ``"none"`` skips it (``accuracy`` is then NaN).
- Resuming: the checkpoint holds the parameters, the optimizer, the schedule, the
  trainer's rng and the history, so an interrupted run resumed from its last checkpoint
  ends with the same parameters as an uninterrupted one. Settings given in
  ``resume_overrides`` (``{"lr": 0.001, "momentum": 0.0}``) replace the checkpoint's after
  it is restored; ``trainer.resume_changes`` lists (name, checkpoint's value, new value)
  and ``Callback.on_resume`` hears them (``graphcnn train`` prints them).
- ``distributed=True``: data-parallel over MPI ranks (graphcnn/distributed/, run under
  ``mpiexec``): ``batch_size`` is per rank, every rank trains on its shard (dropping
  its last partial batch whatever ``drop_last`` says: the ranks must take the same
  number of steps) and averages gradients; the epochs' training accuracy and validation are split among the ranks
  (each predicts a block of rows, every rank gets all); predict and evaluate called
  outside fit run on the calling rank alone; rank 0 alone prints and writes the
  checkpoint, which resumes on any number of ranks. docs/distributed.md. Batch norm
  uses each rank's own batch statistics, unless ``sync_batchnorm=True``: then those of
  the global batch, averaged over the ranks inside each step (forward and backward), as
  torch's SyncBatchNorm; W ranks of batch B then train as one process of batch W x B.
- Guards (graphcnn/train/guards.py): a NaN or infinite loss or gradient is handled by
  ``on_nonfinite`` (raise NonFiniteLossError, skip the update, or skip with a warning);
  a loss that diverges while finite (the mean of the last 5 batch losses above
  ``divergence_factor`` (10) times the starting loss) by ``on_divergence``: a
  DivergenceWarning ("warn"), the warning and the end of the run without saving a
  checkpoint of the diverged parameters ("stop"; ``trainer.diverged`` holds the reason),
  or no check ("ignore").
"""
from __future__ import annotations

import itertools
import warnings
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from graphcnn.arguments import check_bool, check_int
from graphcnn.distributed.parallel import Local, make_parallel
from graphcnn.model import Model
from graphcnn.objective import Objective, Targets, task_metrics
from graphcnn.train.callbacks import Callback
from graphcnn.train.checkpoint import checkpoint_exists, checkpoint_file, save_checkpoint
from graphcnn.train.checkpoint_lock import CheckpointLock
from graphcnn.train.executables import batches_per_epoch, inference_executable, training_step
from graphcnn.train.guards import (
    DIVERGENCE_POLICIES,
    DivergenceMonitor,
    DivergenceWarning,
    NonFiniteLossError,
    apply_overrides,
    check_overrides,
    nonfinite_cause,
)
from graphcnn.train.history import History

NONFINITE_POLICIES = ("raise", "skip", "warn")
TRAIN_ACCURACY_MODES = ("epoch", "batch", "none")
_ACCURACY_SUBSET = 1024


def cross_entropy_from_logits(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy, in float64, stable (log-sum-exp with the row max subtracted)."""
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=1))
    return float(np.mean(log_norm - z[np.arange(len(z)), labels]))


class Trainer:
    """Trains a Model with a compiled gradient step (see the module docstring).

    >>> import graphcnn as gc
    >>> trainer = gc.Trainer(model, optimizer=gc.optim.SGD(lr=0.05, momentum=0.9))  # doctest: +SKIP
    >>> history = trainer.fit(X, y, epochs=10, batch_size=64, validation_data=(Xv, yv))  # doctest: +SKIP
    """

    def __init__(self, model: Model, loss: str | Callable[..., Any] = "cross_entropy",
                 optimizer: Any = None, schedule: Any = None, backend: str = "cpu",
                 augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | str | None = None,
                 normalize: Any = None, on_nonfinite: str = "raise", seed: int = 0,
                 checkpoint: str | None = None, checkpoint_every: int = 1,
                 train_accuracy: str = "epoch", on_divergence: str = "warn",
                 divergence_factor: float = 10.0,
                 resume_overrides: Mapping[str, Any] | None = None,
                 loss_weights: Mapping[str, float] | None = None,
                 metrics: Callable[[Any, Any], Mapping[str, Any]] | None = None,
                 distributed: bool = False, sync_batchnorm: bool = False,
                 drop_last: bool = False) -> None:
        if on_nonfinite not in NONFINITE_POLICIES:
            raise ValueError(f"on_nonfinite must be one of {NONFINITE_POLICIES}, got {on_nonfinite!r}")
        if on_divergence not in DIVERGENCE_POLICIES:
            raise ValueError(f"on_divergence must be one of {DIVERGENCE_POLICIES}, got "
                             f"{on_divergence!r}")
        DivergenceMonitor(divergence_factor)  # validates the factor now
        if train_accuracy not in TRAIN_ACCURACY_MODES:
            raise ValueError(f"train_accuracy must be one of {TRAIN_ACCURACY_MODES}, "
                             f"got {train_accuracy!r}")
        checkpoint_every = check_int("checkpoint_every", checkpoint_every, owner="Trainer")
        seed = check_int("seed", seed, minimum=0, owner="Trainer")
        if len(model.inputs) != 1:
            raise ValueError("Trainer needs a model with one input")
        self.objective = Objective(model, loss, loss_weights)
        if optimizer is None:
            from graphcnn.optim import SGD
            optimizer = SGD(lr=0.01, momentum=0.9)
        if isinstance(augment, str):
            from graphcnn.train.augment import parse_augment
            augment = parse_augment(augment)
        self.model, self.loss, self.optimizer, self.schedule = model, loss, optimizer, schedule
        self.loss_weights, self.metrics = loss_weights, metrics
        self.backend, self.augment, self.normalize = backend, augment, normalize
        self.on_nonfinite, self.seed, self.train_accuracy = on_nonfinite, seed, train_accuracy
        self.checkpoint, self.checkpoint_every = checkpoint, checkpoint_every
        self.on_divergence, self.divergence_factor = on_divergence, float(divergence_factor)
        self.resume_overrides = dict(resume_overrides or {})
        check_overrides(optimizer, self.resume_overrides)
        self.resume_changes: list[tuple[str, Any, Any]] = []
        self.diverged: str | None = None   # why the last fit stopped, with "stop"
        self._monitor: DivergenceMonitor | None = None
        self.rng = np.random.default_rng(seed)
        if sync_batchnorm and not distributed:
            raise ValueError("sync_batchnorm=True averages batch-norm statistics over the "
                             "ranks of distributed training; pass distributed=True too")
        self.sync_batchnorm = bool(sync_batchnorm)
        self.drop_last = check_bool("drop_last", drop_last, owner="Trainer")
        self._any_batch = not self.drop_last and not distributed   # ranks: equal steps
        self.parallel = make_parallel(bool(distributed))   # Local(): one process
        self._rows = Local()   # who predicts which rows: fit's epochs split them
        self.history = History()
        self.stop_training = False
        self.num_classes = self.objective.num_classes(self.objective.output_names[0])
        self.input_shape = tuple(model.inputs[0].type.shape[1:])
        self._steps: dict[tuple[int, bool], Any] = {}
        self._executables: dict[int, Any] = {}
        if schedule is not None:
            schedule.bind(optimizer)

    # ---- compiled pieces, cached per batch size ----------------------------------------
    def _step(self, batch_size: int, partial: bool) -> Any:
        """The step for batches of `batch_size`; one for any batch up to it when an epoch
        ends with a `partial` batch to train on."""
        sync = self.parallel.world_size if self.sync_batchnorm else 0
        step = training_step(self._steps, self.model, self.loss, self.backend, batch_size,
                             self._any_batch and partial, self.loss_weights, sync)
        if sync:
            step.allreduce = self.parallel.allreduce_mean
        return step

    def _executable(self, batch_size: int) -> Any:
        return inference_executable(self._executables, self.model, self.backend, batch_size)

    # ---- data checks and transforms ----------------------------------------------------
    def _check_data(self, X: np.ndarray, y: Any, what: str) -> tuple[np.ndarray, Targets]:
        """X as float32 samples of the model's input shape; y as the targets of each
        output with a loss (graphcnn/objective.py: an array, or a dict by output name)."""
        X = np.asarray(X)
        if X.ndim != len(self.input_shape) + 1 or tuple(X.shape[1:]) != self.input_shape:
            raise ValueError(f"{what}: X has shape {X.shape}; the model expects (N, "
                             f"{', '.join(map(str, self.input_shape))})")
        if X.dtype.kind not in "fiu":
            raise ValueError(f"{what}: X must be numeric, got dtype {X.dtype}")
        if len(X) == 0:
            raise ValueError(f"{what}: no samples")
        return np.ascontiguousarray(X, np.float32), self.objective.targets(y, len(X), what)

    def _prepare(self, xb: np.ndarray) -> np.ndarray:
        if self.normalize is not None:
            xb = np.asarray(self.normalize(xb), np.float32)
        return xb

    # ---- inference ---------------------------------------------------------------------
    def predict(self, X: np.ndarray, batch_size: int | None = None) -> Any:
        """The model's outputs for every row of X (normalized as in training): an array,
        or a dict by output name for a model with several outputs."""
        outputs = self._predict_all(X, batch_size)
        return outputs if len(outputs) > 1 else next(iter(outputs.values()))

    def predict_logits(self, X: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """The first output for every row of X (a classifier's logits)."""
        return self._predict_all(X, batch_size)[self.objective.output_names[0]]

    def _predict_all(self, X: np.ndarray, batch_size: int | None) -> Targets:
        X = np.ascontiguousarray(X, np.float32)
        if batch_size is None:
            batch_size = max(self._executables, default=min(64, len(X)))
        exe = self._executable(batch_size)
        names = self.objective.output_names
        out: dict[str, list[np.ndarray]] = {n: [] for n in names}
        first, end = self._rows.rows(len(X))   # this rank's block of rows
        for start in range(first, end, batch_size):
            xb = X[start:min(start + batch_size, end)]
            n = len(xb)
            if n < batch_size and exe.max_batch is None:  # pad with copies of a real row,
                # and drop those outputs below (an executable for one batch size)
                xb = np.concatenate([xb, np.repeat(xb[:1], batch_size - n, axis=0)])
            result = exe(self._prepare(xb))
            for name, value in zip(names, result if len(names) > 1 else (result,)):
                out[name].append(np.asarray(value)[:n])
        return self._rows.gather({n: np.concatenate(parts) for n, parts in out.items()},
                                 len(X))

    def evaluate(self, X: np.ndarray, y: Any, batch_size: int | None = None) -> dict[str, Any]:
        """The loss over every sample (the objective the step minimizes, in one pass over
        the whole set, float64 sums) and the metrics of the task: for a classifier
        accuracy, macro precision/recall/f1, per_class (precision, recall, f1, support
        lists) and confusion_matrix (rows: true class); for segmentation pixel_accuracy,
        miou, dice and per-class iou; for regression mae, rmse and r2; plus what the
        Trainer's `metrics` function returns."""
        X, targets = self._check_data(X, y, "evaluate")
        self.objective.check_labels(targets, "evaluate", np.arange(len(X)))
        predictions = self._predict_all(X, batch_size)
        result: dict[str, Any] = {"loss": self.objective.loss_value(predictions, targets)}
        result.update(task_metrics(self.objective, predictions, targets))
        if self.metrics is not None:
            single = self.objective.single
            result.update(self.metrics(
                next(iter(predictions.values())) if single else predictions,
                next(iter(targets.values())) if single else targets))
        return result

    def _validation_logs(self, result: Mapping[str, Any]) -> dict[str, float]:
        """What the history records of an evaluation: the loss and the scalar metrics
        (val_loss, val_accuracy, val_miou, val_r2, ...)."""
        skip = ("precision", "recall", "f1") if self.objective.task == "classification" else ()
        return {f"val_{k}": float(v) for k, v in result.items()
                if k not in skip and isinstance(v, (float, int, np.floating, np.integer))}

    # ---- checkpoints -------------------------------------------------------------------
    def save_checkpoint(self, path: str, epochs_done: int) -> None:
        """Save everything a resumed run needs (graphcnn/train/checkpoint.py: one file,
        written whole, then renamed into place). From its first save or resume the trainer
        holds the path: another process writing it gets CheckpointInUseError."""
        self._claim_checkpoint(path)
        save_checkpoint(path, *self.checkpoint_state(epochs_done))

    def checkpoint_state(self, epochs_done: int) -> tuple[Any, Any, dict[str, Any]]:
        """(parameters, optimizer arrays, metadata): what a checkpoint holds."""
        arrays, scalars = self.optimizer.state_dict()
        meta: dict[str, Any] = {
            "epoch": epochs_done,
            "model": {"name": self.model.name,
                      "parameters": {k: list(v.shape) for k, v in self.model.parameters().items()}},
            "history": self.history.state_dict(),
            "optimizer": {"class": type(self.optimizer).__name__, "scalars": scalars},
            "schedule": None if self.schedule is None else {
                "class": type(self.schedule).__name__, "state": self.schedule.state_dict()},
            "rng": self.rng.bit_generator.state,
            "normalize": None if self.normalize is None or not hasattr(self.normalize, "state_dict")
            else self.normalize.state_dict(),
        }
        return self.model.parameters(), arrays, meta

    def load_checkpoint(self, path: str) -> int:
        """Restore everything from a checkpoint; returns the number of epochs it completed.

        Every field is checked against this trainer's model, optimizer and schedule
        before anything is restored: a bad or foreign checkpoint raises CheckpointError
        (a ValueError) and leaves the trainer as it was."""
        self._claim_checkpoint(path)
        from graphcnn.train.checkpoint_state import restorable
        return restorable(self, path).apply(self)

    def _claim_checkpoint(self, path: str) -> None:
        """Hold the checkpoint path for as long as this trainer lives (released when it is
        garbage-collected, or by ``release_checkpoint``)."""
        locks = self.__dict__.setdefault("_checkpoint_locks", {})
        target = checkpoint_file(path)
        if target not in locks:
            locks[target] = CheckpointLock(target).acquire()

    def release_checkpoint(self) -> None:
        """Let other processes write this trainer's checkpoint paths."""
        for lock in self.__dict__.pop("_checkpoint_locks", {}).values():
            lock.release()

    # ---- training ----------------------------------------------------------------------
    def fit(self, X: np.ndarray, y: Any, epochs: int = 10, batch_size: int = 64,
            validation_data: tuple[np.ndarray, Any] | None = None, resume: bool = True,
            verbose: bool = True, callbacks: Sequence[Callback] | None = None) -> History:
        """Train for `epochs` epochs in total (a resumed run does the remaining ones).

        Returns the History (also kept as ``trainer.history``). Raises ValueError for bad
        data or labels outside the model's classes (naming the batch), and, by
        ``on_nonfinite``, NonFiniteLossError (a FloatingPointError) when a loss or gradient
        is not finite. With ``on_divergence="stop"`` a diverging run ends early and
        ``trainer.diverged`` says why (None otherwise).
        """
        X, y = self._check_data(X, y, "fit")
        validation = None
        if validation_data is not None:
            validation = self._check_data(*validation_data, "validation_data")
        epochs = check_int("epochs", epochs, minimum=0, owner="fit")
        batch_size = check_int("batch_size", batch_size, owner="fit")
        callbacks = list(callbacks or [])
        self.stop_training = False
        self.diverged = None
        self.resume_changes = []
        self.history = History()
        start_epoch, resumed = 0, False
        writer = self.checkpoint if self.parallel.is_main else None  # rank 0 alone writes
        if writer is not None:   # a second writer fails now, not after an epoch
            self._claim_checkpoint(writer)
        if writer is not None and resume and checkpoint_exists(writer):
            start_epoch = self.load_checkpoint(writer)
            self.resume_changes = apply_overrides(self.optimizer, self.schedule,
                                                  self.resume_overrides)
            resumed = True
        if self.normalize is not None and hasattr(self.normalize, "fit") and \
                not getattr(self.normalize, "fitted", True):
            self.normalize = self.normalize.fit(X)  # statistics of the training set only
        # every rank starts from rank 0's state (fresh or resumed)
        start_epoch, resumed = self.parallel.sync_state(self, start_epoch, resumed)
        if resumed:
            for cb in callbacks:
                cb.on_resume(self, start_epoch, self.resume_changes)
        self._monitor = self._divergence_monitor()
        if start_epoch >= epochs:
            return self.history
        bs = self.parallel.batch_size(batch_size, len(X))
        step = self._step(bs, partial=len(X) % bs != 0)
        exe = self._executable(bs)
        for cb in callbacks:
            cb.on_train_begin(self)
        for epoch in range(start_epoch, epochs):
            self._rows = self.parallel   # the epoch's evaluations: split among the ranks
            try:
                logs = self._train_epoch(epoch, epochs, X, y, bs, step, exe, callbacks,
                                         verbose, validation)
            finally:
                self._rows = Local()
            self.history.append(epoch, logs)
            for cb in callbacks:
                cb.on_epoch_end(self, epoch, logs)
            # a callback on any one rank that stops training stops every rank
            self.stop_training = bool(self.parallel.sum(np.array([self.stop_training]))[0])
            last = epoch + 1 == epochs or self.stop_training
            # a diverged run keeps its last checkpoint: the one to resume with a smaller lr
            if writer is not None and self.diverged is None and \
                    ((epoch + 1) % self.checkpoint_every == 0 or last):
                self.save_checkpoint(writer, epoch + 1)
            if self.stop_training:
                break
        for cb in callbacks:
            cb.on_train_end(self)
        return self.history

    def _train_epoch(self, epoch: int, epochs: int, X: np.ndarray, y: Targets, bs: int,
                     step: Any, exe: Any, callbacks: list[Callback], verbose: bool,
                     validation: tuple[np.ndarray, Targets] | None) -> dict[str, float]:
        from tqdm.auto import tqdm

        for cb in callbacks:
            cb.on_epoch_begin(self, epoch)
        # Dropout masks come from the executable's seed counter; restarting it from the
        # epoch number keeps a resumed run on the same masks as an uninterrupted one.
        # Each rank takes every W-th seed: different masks on each rank's samples.
        if hasattr(step.executable, "_seeds"):
            step.executable._seeds = itertools.count(
                (self.seed * 100_003 + epoch) * 1_000_003 + self.parallel.rank,
                self.parallel.world_size)
        lr = float(self.optimizer.lr)
        params = self.model.trainable_parameters()
        labels = self._class_labels(y)
        accuracy = self.train_accuracy if labels is not None else "not a classifier"
        order = self.parallel.shard(self.rng.permutation(len(X)))  # this rank's share
        # the last, smaller batch too, unless drop_last
        num_batches = batches_per_epoch(len(order), bs, step, not self._any_batch)
        loss_sum, counted, correct, seen, skipped = 0.0, 0, 0, 0, 0
        bar = tqdm(total=num_batches, desc=f"epoch {epoch + 1}/{epochs}", unit="batch",
                   disable=not verbose or not self.parallel.is_main, leave=True, dynamic_ncols=True)
        try:
            for b in range(num_batches):
                idx = order[b * bs:(b + 1) * bs]
                yb = {name: target[idx] for name, target in y.items()}
                self.objective.check_labels(yb, f"epoch {epoch + 1}, batch {b}", idx)
                xb = X[idx]
                if self.augment is not None:
                    xb = np.asarray(self.augment(xb, self.rng), np.float32)
                xb = self._prepare(xb)
                if accuracy == "batch" and labels is not None:  # the step's weights
                    correct += int((np.asarray(exe(xb)).argmax(axis=1) == labels[idx]).sum())
                    seen += len(idx)
                loss, grads = self.parallel.average(*step(xb, self.objective.step_target(yb)))
                cause = nonfinite_cause(loss, grads, epoch, b)
                if cause is not None:
                    skipped += 1
                    self._nonfinite(cause)
                    continue
                self.optimizer.step(params, grads)
                if self.schedule is not None and getattr(self.schedule, "per_batch", False):
                    self.schedule.step_batch()
                loss_sum += loss
                counted += 1
                batch_logs = {"loss": loss_sum / counted}
                if seen:
                    batch_logs["accuracy"] = correct / seen
                bar.set_postfix({k: f"{v:.4f}" for k, v in batch_logs.items()}, refresh=False)
                bar.update(1)
                for cb in callbacks:
                    cb.on_batch_end(self, epoch, b, {"loss": float(loss),
                                                     "batch_size": len(idx)})
                if self._watch_divergence(float(loss), epoch, b):
                    break  # "stop": the epoch ends here, its logs are still recorded
            if skipped and self.on_nonfinite == "skip":
                warnings.warn(f"epoch {epoch + 1}: skipped {skipped} update(s) with a "
                              f"non-finite loss or gradient", RuntimeWarning, stacklevel=3)
            logs = {"loss": loss_sum / counted if counted else float("nan")}
            self.parallel.broadcast_buffers(self.model)   # rank 0's running statistics
            if accuracy == "batch":
                correct, seen = (int(v) for v in self.parallel.sum(np.array([correct, seen])))
                logs["accuracy"] = correct / seen if seen else float("nan")
            elif accuracy == "epoch" and labels is not None:
                subset = np.linspace(0, len(X) - 1, min(len(X), _ACCURACY_SUBSET)).astype(np.int64)
                pred = self.predict_logits(X[subset], bs).argmax(axis=1)
                logs["accuracy"] = float((pred == labels[subset]).mean())
            elif accuracy == "none":
                logs["accuracy"] = float("nan")
            if validation is not None:
                logs.update(self._validation_logs(self.evaluate(*validation, batch_size=bs)))
            logs["lr"] = lr
            bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items()}, refresh=True)
        finally:
            bar.close()
        self._step_schedule(logs)
        return logs

    def _class_labels(self, y: Targets) -> np.ndarray | None:
        """A classifier's labels (training accuracy is measured on them), else None."""
        if self.objective.task != "classification" and not self.objective.one_hot_labels:
            return None
        target = next(iter(y.values()))
        return target if target.ndim == 1 else target.argmax(axis=1)

    def _nonfinite(self, cause: str) -> None:
        if self.on_nonfinite == "raise":
            raise NonFiniteLossError(cause)
        if self.on_nonfinite == "warn":
            warnings.warn(f"{cause}; the update was skipped", RuntimeWarning, stacklevel=4)

    def _divergence_monitor(self) -> DivergenceMonitor | None:
        """A fresh monitor for a fit; a resumed run's start is its history's first loss."""
        if self.on_divergence == "ignore":
            return None
        start = self.history.history.get("loss", [])
        return DivergenceMonitor(self.divergence_factor,
                                 reference=start[0] if start else None)

    def _watch_divergence(self, loss: float, epoch: int, batch: int) -> bool:
        """Feed a finite batch loss to the monitor; True when the run must stop now.
        Reported once per fit."""
        if self._monitor is None:
            return False
        cause = self._monitor.update(loss, epoch, batch)
        if cause is None:
            return False
        stopping = self.on_divergence == "stop"
        warnings.warn(DivergenceWarning(cause, stopping), stacklevel=4)
        self._monitor = None
        if stopping:
            self.diverged = cause
            self.stop_training = True
        return stopping

    def _step_schedule(self, logs: dict[str, float]) -> None:
        s = self.schedule
        if s is None or getattr(s, "per_batch", False):
            return
        if type(s).__name__ == "ReduceLROnPlateau":  # it steps on a metric
            s.step(logs.get("val_loss", logs["loss"]))
        else:
            s.step()

