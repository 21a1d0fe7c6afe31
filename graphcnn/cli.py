"""The ``graphcnn`` command.

    graphcnn demo [--epochs 20] [--batch-size 32] [--out DIR]
    graphcnn train MODEL [--dataset digits] [--epochs N] [--optimizer sgd|adam|adamw] ...
    graphcnn inspect MODEL [--batch-size N] [--opt-level N] [--training] [--dot F] [--png F]
    graphcnn bench MODEL|conv-layers [--batch-size 1,16] [--training] [--against PEERS] ...
    graphcnn compile MODEL [--batch-size N] [--backend cpu] [--opt-level N] [-o FILE]
                           [--training [--loss cross_entropy|mse]]
    graphcnn run FILE --input x.npy [--output y.npy]     (FILE: written by compile -o)
    graphcnn inspect FILE                                  (what an artifact holds)

MODEL is a zoo name (``lenet5``), an ``.onnx`` file, or ``path/to/file.py:function``
returning a Model (the file is the user's own code: it is imported from its path). Errors in the arguments, the
model file or the data are reported argparse-style (usage line, message, exit status 2),
never as a traceback.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from inspect import signature
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

SCHEDULES = ("none", "step", "exponential", "cosine", "cyclic", "plateau")
OPTIMIZERS = ("sgd", "adam", "adamw")


class CommandError(Exception):
    """A user-facing error: printed as ``graphcnn <command>: error: <message>``."""


# ---- building blocks shared by the commands ---------------------------------------------
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


def make_optimizer(name: str, lr: float, momentum: float, weight_decay: float) -> Any:
    from graphcnn import optim

    if name == "sgd":
        return optim.SGD(lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return optim.Adam(lr=lr, weight_decay=weight_decay)
    return optim.AdamW(lr=lr, weight_decay=weight_decay)


def make_schedule(name: str, lr: float, epochs: int, batches_per_epoch: int) -> Any:
    """The schedules with settings that suit a run of `epochs` epochs."""
    from graphcnn import optim

    if name == "none":
        return None
    if name == "step":  # divide by 10 twice: after 1/2 and 3/4 of the run
        return optim.StepLR(step_size=max(1, epochs // 2), gamma=0.1)
    if name == "exponential":  # ends near lr / 100
        return optim.ExponentialLR(gamma=0.01 ** (1 / max(1, epochs)))
    if name == "cosine":
        return optim.CosineAnnealingLR(T_max=max(1, epochs))
    if name == "cyclic":  # triangular, a cycle every 4 epochs
        return optim.CyclicLR(base_lr=lr / 10, max_lr=lr, step_size_up=2 * batches_per_epoch)
    return optim.ReduceLROnPlateau(factor=0.5, patience=2)


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


# ---- commands -----------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> int:
    """LeNet-5 on the digits, SGD with Nesterov momentum, cosine-annealed learning rate,
    small random shifts as augmentation."""
    import graphcnn as gc
    from graphcnn.train.history import plot_history
    from graphcnn.train.trainer import Trainer

    start = time.perf_counter()
    (X, y), (Xt, yt) = load_dataset("digits")
    gc.manual_seed(args.seed)
    model = gc.models.lenet5()
    print(f"LeNet-5 ({model.num_parameters():,} parameters) on scikit-learn digits "
          f"upsampled to 32x32: {len(X)} training, {len(Xt)} test images")
    trainer = Trainer(model, optimizer=gc.optim.SGD(lr=args.lr, momentum=0.9, nesterov=True,
                                                   weight_decay=1e-4),
                      schedule=gc.optim.CosineAnnealingLR(T_max=args.epochs),
                      augment=args.augment or None, backend=args.backend, seed=args.seed)
    # The test split doubles as the validation data of the curves; nothing in training
    # (no schedule, no early stop) looks at it.
    history = trainer.fit(X, y, epochs=args.epochs, batch_size=args.batch_size,
                          validation_data=(Xt, yt), verbose=not args.quiet)
    result = trainer.evaluate(Xt, yt)
    print_report(result)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    png = plot_history(history, out / "lenet5_digits_curves.png",
                       title="LeNet-5 on digits (validation = test split)")
    print(f"training curves: {png}")
    print(f"total wall time: {time.perf_counter() - start:.1f} s")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    import graphcnn as gc
    from graphcnn.train.trainer import Trainer

    start = time.perf_counter()
    (X, y), (Xt, yt) = load_dataset(args.dataset)
    num_classes = int(max(y.max(), yt.max()) + 1)
    gc.manual_seed(args.seed)
    height, width = (int(d) for d in X.shape[2:])   # the zoo model is built for the data
    model = load_model(args.model, num_classes, in_channels=int(X.shape[1]),
                       input_size=height if height == width else (height, width))
    bs = min(args.batch_size, len(X))
    optimizer = make_optimizer(args.optimizer, args.lr, args.momentum, args.weight_decay)
    schedule = make_schedule(args.schedule, args.lr, args.epochs, len(X) // bs)
    trainer = Trainer(model, optimizer=optimizer, schedule=schedule, augment=args.augment,
                      backend=args.backend, checkpoint=args.checkpoint, seed=args.seed)
    history = trainer.fit(X, y, epochs=args.epochs, batch_size=args.batch_size,
                          validation_data=(Xt, yt), verbose=not args.quiet)
    print_report(trainer.evaluate(Xt, yt))
    if args.out:
        from graphcnn.train.history import plot_history
        Path(args.out).mkdir(parents=True, exist_ok=True)
        print(f"training curves: {plot_history(history, Path(args.out) / 'curves.png')}")
    if args.checkpoint:
        print(f"checkpoint: {args.checkpoint}")
    print(f"total wall time: {time.perf_counter() - start:.1f} s")
    return 0


# ---- argument parsing ---------------------------------------------------------------
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value


def _augment_spec(text: str) -> str:
    """Validate an augmentation spec now, so a typo is an argument error."""
    if text:
        from graphcnn.train.augment import parse_augment
        try:
            parse_augment(text)
        except (ValueError, KeyError) as exc:
            raise argparse.ArgumentTypeError(str(exc).strip("'\"")) from None
    return text


def _add_common(p: argparse.ArgumentParser, epochs: int, batch_size: int, lr: float) -> None:
    p.add_argument("--epochs", type=_positive_int, default=epochs, help=f"default {epochs}")
    p.add_argument("--batch-size", type=_positive_int, default=batch_size,
                   help=f"default {batch_size}")
    p.add_argument("--lr", type=_non_negative_float, default=lr,
                   help=f"learning rate, default {lr}")
    p.add_argument("--backend", choices=("cpu", "reference", "cuda"), default="cpu")
    p.add_argument("--seed", type=int, default=0, help="seeds initialization and shuffling")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="graphcnn", description="graphcnn: a deep-learning compiler for CNNs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = sub.add_parser("demo", help="train LeNet-5 on the digits and report",
                          description=cmd_demo.__doc__)
    _add_common(demo, epochs=20, batch_size=32, lr=0.05)
    demo.add_argument("--augment", type=_augment_spec, default="shift",
                      help="augmentation spec (default 'shift'; '' for none)")
    demo.add_argument("--out", default="graphcnn-demo", help="folder for the curves PNG")
    demo.set_defaults(func=cmd_demo)

    train = sub.add_parser("train", help="train a model on a dataset",
                           description="Train MODEL (a zoo name or path/to/file.py:function).")
    train.add_argument("model", metavar="MODEL")
    train.add_argument("--dataset", default="digits")
    _add_common(train, epochs=10, batch_size=64, lr=0.05)
    train.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd")
    train.add_argument("--momentum", type=_non_negative_float, default=0.9)
    train.add_argument("--weight-decay", type=_non_negative_float, default=0.0)
    train.add_argument("--schedule", choices=SCHEDULES, default="none")
    train.add_argument("--augment", type=_augment_spec, default=None,
                       help="e.g. 'shift,rotate'")
    train.add_argument("--checkpoint", default=None,
                       help="checkpoint path: saved each epoch, resumed if present")
    train.add_argument("--out", default=None, help="folder for the curves PNG")
    train.set_defaults(func=cmd_train)

    from graphcnn.inspect import add_arguments as inspect_arguments, cmd_inspect
    inspect = sub.add_parser("inspect", help="show the kernels, memory plan and report of "
                             "a compiled model", description=cmd_inspect.__doc__)
    inspect_arguments(inspect)
    inspect.set_defaults(func=cmd_inspect)

    from graphcnn.compile_command import add_arguments as compile_arguments, cmd_compile
    comp = sub.add_parser("compile", help="compile a model and print a summary",
                          description=cmd_compile.__doc__)
    compile_arguments(comp)
    comp.set_defaults(func=cmd_compile)

    from graphcnn.run_command import add_arguments as run_arguments, cmd_run
    run = sub.add_parser("run", help="run an artifact written by graphcnn compile -o",
                         description=cmd_run.__doc__)
    run_arguments(run)
    run.set_defaults(func=cmd_run)

    from graphcnn.bench.cli import add_arguments as bench_arguments, cmd_bench
    bench = sub.add_parser("bench", help="time a model (or ResNet-18's 3x3 convolutions) "
                           "against numpy, torch and onnxruntime", description=cmd_bench.__doc__)
    bench_arguments(bench)
    bench.set_defaults(func=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    sub = parser._subparsers._group_actions[0].choices[args.command]  # type: ignore[union-attr]
    from graphcnn.errors import GraphBuildError
    try:
        return int(args.func(args))
    except CommandError as exc:
        sub.error(str(exc))
    except (ValueError, FileNotFoundError, GraphBuildError, NotImplementedError) as exc:
        sub.error(f"{type(exc).__name__}: {exc}")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
