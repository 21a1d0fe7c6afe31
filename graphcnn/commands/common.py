"""What the ``graphcnn`` subcommands share: the user-facing error, model and dataset
loading, the training report, and argument types.

A command module (demo.py, train.py, ...) exposes ``add_parser(subparsers)``, which adds its
subcommand with its arguments and sets ``func`` to its ``run(args) -> exit status``;
graphcnn/cli.py assembles them.
"""
from __future__ import annotations

import argparse
import importlib.util
from inspect import signature
from pathlib import Path
from typing import Any, Callable

import numpy as np


class CommandError(Exception):
    """A user-facing error: printed as ``graphcnn <command>: error: <message>``."""


# ---- models and data ---------------------------------------------------------------------
def load_model(spec: str, num_classes: int | None = None, in_channels: int | None = None,
               input_size: int | tuple[int, int] | None = None) -> Any:
    """A zoo name, an ``.onnx`` file, or ``path/to/file.py:function`` (the function is
    called with no arguments and must return a graphcnn Model). A zoo model is built for
    `num_classes`, and for the data's `in_channels` and `input_size` where it takes them."""
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
    from graphcnn.data import DATASETS

    if name not in DATASETS:
        raise CommandError(f"unknown dataset {name!r}; available: {', '.join(sorted(DATASETS))}")
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


def augment_spec(text: str) -> str:
    """Validate an augmentation spec now, so a typo is an argument error."""
    if text:
        from graphcnn.train.augment import parse_augment
        try:
            parse_augment(text)
        except (ValueError, KeyError) as exc:
            raise argparse.ArgumentTypeError(str(exc).strip("'\"")) from None
    return text


def add_training_arguments(p: argparse.ArgumentParser, epochs: int, batch_size: int,
                           lr: float) -> None:
    """The options that demo and train share, with their defaults."""
    p.add_argument("--epochs", type=positive_int, default=epochs, help=f"default {epochs}")
    p.add_argument("--batch-size", type=positive_int, default=batch_size,
                   help=f"default {batch_size}")
    p.add_argument("--lr", type=non_negative_float, default=lr,
                   help=f"learning rate, default {lr}")
    p.add_argument("--backend", choices=("cpu", "reference", "cuda"), default="cpu")
    p.add_argument("--seed", type=int, default=0, help="seeds initialization and shuffling")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


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
