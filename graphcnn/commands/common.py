"""What the ``graphcnn`` subcommands share: the user-facing error, the checks of output
paths, model and dataset loading, the training report, and argument types.

A command module (demo.py, train.py, ...) exposes ``add_parser(subparsers)``, which adds its
subcommand with its arguments and sets ``func`` to its ``run(args) -> exit status``;
graphcnn/cli.py assembles them.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import tempfile
from inspect import signature
from pathlib import Path
from typing import Any, Callable

import numpy as np


class CommandError(Exception):
    """A mistake in the command line (a bad path, a missing file, an option that does not
    fit): printed argparse-style, the usage and ``graphcnn <command>: error: <message>``,
    exit status 2."""


class CommandFailed(CommandError):
    """The command ran and failed for a reason the user can act on (training diverged):
    printed as one line ``graphcnn <command>: error: <message>``, exit status 1."""


# ---- output paths: checked before any work starts ----------------------------------------
# A command that would fail writing its result only after minutes of training or compiling
# loses that work; so every path a command will write is checked first, by these helpers,
# and the error names the flag and the path the user gave (never a temporary file).

def _nearest_existing(path: Path) -> Path:
    """`path` or its closest ancestor that exists (a file, when a component is one)."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _cannot_write_in(directory: Path) -> str | None:
    """Why no file can be created in `directory`, or None when one can. Tried for real
    with a temporary file: permission bits do not tell (root, read-only mounts, /sys)."""
    try:
        fd, name = tempfile.mkstemp(prefix=".graphcnn-write-check-", dir=directory)
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    os.close(fd)
    os.unlink(name)
    return None


def _check_directory_for(flag: str, path: str, directory: Path, make_parents: bool) -> None:
    """The directory that will hold `path` exists (or, with make_parents, can be created
    under an existing directory) and is writable."""
    anchor = _nearest_existing(directory) if make_parents else directory
    if not anchor.exists():
        raise CommandError(f"{flag} {path}: directory {directory} does not exist")
    if not anchor.is_dir():
        raise CommandError(f"{flag} {path}: {anchor} is a file, not a directory")
    reason = _cannot_write_in(anchor)
    if reason is not None:
        raise CommandError(f"{flag} {path}: cannot write in {anchor} ({reason})")


def check_output_file(path: str, flag: str, suffixes: tuple[str, ...] = (),
                      make_parents: bool = False) -> Path:
    """Check, before any work, that a command can write the file `path` given with `flag`:
    a file name (with one of `suffixes` when given), not an existing directory, in a
    writable directory that exists (with make_parents: under an existing one).
    Raises CommandError naming the flag and the path."""
    if not path or path.endswith(("/", os.sep)):
        raise CommandError(f"{flag} {path!r}: expected a file name")
    target = Path(path)
    if suffixes and target.suffix.lower() not in suffixes:
        raise CommandError(f"{flag} {path}: the file name must end in {' or '.join(suffixes)}")
    if target.is_dir():
        raise CommandError(f"{flag} {path} is a directory; give a file name")
    if target.exists() and not target.is_file():
        raise CommandError(f"{flag} {path} exists and is not a regular file")
    if target.exists() and not os.access(target, os.W_OK):
        raise CommandError(f"{flag} {path} exists and is read-only")
    _check_directory_for(flag, path, target.parent, make_parents)
    return target


def check_output_dir(path: str, flag: str) -> Path:
    """Check, before any work, that the folder `path` given with `flag` is a writable
    directory or can be created (it is created when the command writes into it)."""
    if not path:
        raise CommandError(f"{flag}: expected a folder name")
    target = Path(path)
    if target.exists():
        if not target.is_dir():
            raise CommandError(f"{flag} {path} exists and is not a directory")
        reason = _cannot_write_in(target)
        if reason is not None:
            raise CommandError(f"{flag} {path}: cannot write in it ({reason})")
        return target
    _check_directory_for(flag, path, target.parent, make_parents=True)
    return target


def check_checkpoint_path(path: str, flag: str = "--checkpoint") -> Path:
    """Check, before any work, a checkpoint path given with `flag`: the directory that
    will hold it must be writable, or creatable under a writable one. (Which files the
    path names is graphcnn/train/checkpoint.py's business, so only its folder is checked.)"""
    if not path or path.endswith(("/", os.sep)):
        raise CommandError(f"{flag} {path!r}: expected a file name")
    target = Path(path)
    _check_directory_for(flag, path, target.parent, make_parents=True)
    return target


# ---- models and data ---------------------------------------------------------------------
def load_model(spec: str, num_classes: int | None = None, in_channels: int | None = None,
               input_size: int | tuple[int, int] | None = None) -> Any:
    """A zoo name, an ``.onnx`` file, or ``path/to/file.py:function`` (the function is
    called with no arguments and must return a graphcnn Model). A zoo model is built for
    `num_classes` (its ``num_outputs``, for a regressor), and for the data's
    `in_channels` and `input_size` where it takes them."""
    from graphcnn.model import Model
    from graphcnn.models import ZOO, get_model

    if spec.lower().endswith(".onnx"):
        return _load_onnx(spec)

    if ":" in spec and spec.rsplit(":", 1)[0].endswith(".py"):
        path_text, func_name = spec.rsplit(":", 1)
        path = Path(path_text)
        if not path.is_file():
            raise CommandError(f"model file {path} does not exist")
        module_name = f"_graphcnn_user_model_{abs(hash(str(path.resolve())))}"
        module_spec = importlib.util.spec_from_file_location(module_name, path)
        if module_spec is None or module_spec.loader is None:
            raise CommandError(f"cannot import {path} as a Python file")
        module = importlib.util.module_from_spec(module_spec)
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:  # the user's file: report, don't crash
            raise CommandError(f"importing {path} failed: {type(exc).__name__}: {exc}") from None
        factory = getattr(module, func_name, None)
        if not callable(factory):
            raise CommandError(f"{path} has no function {func_name!r}")
        try:
            model = factory()
        except Exception as exc:
            raise CommandError(f"{spec}() failed: {type(exc).__name__}: {exc}") from None
        if not isinstance(model, Model):
            raise CommandError(f"{spec}() returned {type(model).__name__}, not a graphcnn Model")
        return model
    if spec.lower() not in ZOO:
        raise CommandError(f"unknown model {spec!r}: expected a zoo name ({', '.join(sorted(ZOO))}), "
                           f"an .onnx file or path/to/file.py:function")
    accepted = signature(ZOO[spec.lower()]).parameters
    takes_any = any(p.kind == p.VAR_KEYWORD for p in accepted.values())  # fn(**options)
    options = {"num_classes": num_classes, "in_channels": in_channels, "input_size": input_size}
    if "num_outputs" in accepted:   # a regressor: its outputs in place of classes
        options = {"num_outputs": options.pop("num_classes"), **options}
    kwargs = {k: v for k, v in options.items()
              if v is not None and (k in accepted or takes_any)}
    try:
        return get_model(spec, **kwargs)
    except TypeError as exc:
        raise CommandError(f"{spec}: {exc}") from None


def _load_onnx(spec: str) -> Any:
    """An .onnx file as a Model (needs the optional onnx package)."""
    path = Path(spec)
    if not path.is_file():
        raise CommandError(f"ONNX file {path} does not exist")
    try:
        from graphcnn import onnx as gc_onnx
        return gc_onnx.load(path)
    except ImportError as exc:  # the onnx package is not installed
        raise CommandError(str(exc)) from None


def load_dataset(name: str) -> Any:
    """A named dataset (``digits``, ``shapes``) or a user's ``.npz`` file (keys: see
    graphcnn/data/npz.py), as ``((X_train, y_train), (X_test, y_test))``. A file that
    does not exist is a command-line mistake (CommandError); a file that cannot be used
    is a DatasetError (a ValueError) naming the key at fault."""
    from graphcnn.data import DATASETS, load_npz

    if name.lower().endswith(".npz"):
        if not Path(name).is_file():
            raise CommandError(f"--dataset {name}: file does not exist")
        return load_npz(name)
    if name not in DATASETS:
        raise CommandError(f"unknown dataset {name!r}; available: {', '.join(sorted(DATASETS))}"
                           f", or an .npz file")
    try:
        return DATASETS[name]()
    except ImportError as exc:
        raise CommandError(str(exc)) from None


def print_report(result: dict[str, Any], print_fn: Callable[[str], Any] = print) -> None:
    """Accuracy, macro precision/recall/F1 and the confusion matrix, as text."""
    print_fn(f"test accuracy    {result['accuracy']:.2%}")
    print_fn(f"macro precision  {result['precision']:.4f}")
    print_fn(f"macro recall     {result['recall']:.4f}")
    print_fn(f"macro F1         {result['f1']:.4f}")
    print_fn(f"test loss        {result['loss']:.4f}")
    cm = np.asarray(result["confusion_matrix"])
    width = max(3, len(str(cm.max())) + 1)
    print_fn("confusion matrix (rows: true class, columns: predicted class)")
    print_fn(" " * 4 + "".join(f"{j:>{width}}" for j in range(cm.shape[1])))
    for i, row in enumerate(cm):
        print_fn(f"{i:>3} " + "".join(f"{v:>{width}}" for v in row))


# ---- argument types and shared options -----------------------------------------------------
NONFINITE_CHOICES = ("raise", "skip", "warn")     # Trainer(on_nonfinite=...)
DIVERGENCE_CHOICES = ("warn", "stop", "ignore")   # Trainer(on_divergence=...)

def _number_at_least(text: str, kind: Callable[[str], Any], minimum: int,
                     expected: str) -> Any:
    """kind(text) if it is >= minimum, else the argument error "expected <expected>"."""
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if not value >= minimum:  # also rejects nan
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
    return value


def positive_int(text: str) -> int:
    """An argument type: an integer >= 1."""
    return _number_at_least(text, int, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    """An argument type: an integer >= 0."""
    return _number_at_least(text, int, 0, "an integer >= 0")


def non_negative_float(text: str) -> float:
    """An argument type: a number >= 0 (not nan)."""
    return _number_at_least(text, float, 0, "a number >= 0")


def seed(text: str) -> int:
    """An argument type: a random seed, an integer in [0, 2**32)."""
    value = _number_at_least(text, int, 0, "a seed, an integer >= 0")
    if value >= 2**32:
        raise argparse.ArgumentTypeError(f"expected a seed below 2**32, got {text}")
    return int(value)


def augment_spec(text: str) -> str:
    """Validate an augmentation spec now, so a typo is an argument error."""
    if text:
        from graphcnn.train.augment import parse_augment
        try:
            parse_augment(text)
        except (ValueError, KeyError) as exc:
            raise argparse.ArgumentTypeError(str(exc).strip("'\"")) from None
    return text


def add_training_arguments(p: argparse.ArgumentParser, epochs: int | None,
                           batch_size: int | None, lr: float | None) -> None:
    """The options that demo and train share, with their defaults (None: the command
    picks one later, e.g. per demo task)."""
    def default(value: object) -> str:
        return "default: the task's" if value is None else f"default {value}"
    p.add_argument("--epochs", type=positive_int, default=epochs, help=default(epochs))
    p.add_argument("--batch-size", type=positive_int, default=batch_size,
                   help=default(batch_size))
    p.add_argument("--lr", type=non_negative_float, default=lr,
                   help=f"learning rate, {default(lr)}")
    p.add_argument("--backend", choices=("cpu", "reference", "cuda"), default="cpu")
    p.add_argument("--seed", type=seed, default=0, help="seeds initialization and shuffling")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--on-nonfinite", choices=NONFINITE_CHOICES, default="raise",
                   help="when a loss or gradient is NaN or infinite: stop with an error "
                        "(raise, the default), skip the update (skip), or skip it with a "
                        "warning (warn)")
    p.add_argument("--on-divergence", choices=DIVERGENCE_CHOICES, default="warn",
                   help="when the loss grows far above its start (10x): warn (default), "
                        "stop the run (stop, an error; the last checkpoint is kept), or "
                        "ignore")


# what --opt-level means, the same words in every command that takes it
OPT_LEVELS = (0, 1, 2)
OPT_LEVEL_HELP = ("graph optimization level: 0 runs no pass; 1 dead-code elimination, constant "
                  "folding, simplification, CSE; 2 (default) also batch-norm folding, the "
                  "backend's layout pass and fusion")


# ---- subcommands ---------------------------------------------------------------------------
def add_command(sub: argparse._SubParsersAction, name: str, help: str,
                run: Callable[[argparse.Namespace], int],
                add_arguments: Callable[[argparse.ArgumentParser], None]
                ) -> argparse.ArgumentParser:
    """Add the subcommand `name` (its --help shows run's docstring) with the arguments
    add_arguments adds, running run(args)."""
    p = sub.add_parser(name, help=help, description=run.__doc__)
    add_arguments(p)
    p.set_defaults(func=run)
    return p


def fail_if_diverged(trainer: Any) -> None:
    """A run that `--on-divergence stop` ended fails the command, saying what helps."""
    if trainer.diverged is not None:
        raise CommandFailed(f"{trainer.diverged}; stopped (--on-divergence stop); try a "
                            f"smaller --lr")
