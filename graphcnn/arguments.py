"""Argument checks where arguments are given: layer constructors, ``gc.Input``,
``gc.compile``, ``value_and_grad`` and the Trainer.

Each check names the argument and the value, as PyTorch's do ("Conv2d: kernel_size must
be greater than zero, got 0"), and converts what it accepts to plain Python values. A
count is an int: ``True`` and ``2.5`` are refused (ArgumentTypeError, both a TypeError
and a ValueError), NumPy integers are accepted. Values outside their domain raise
ArgumentError (a ValueError, and a GraphBuildError for code that catches that). The
traceback of a constructor's error already ends at the user's line, so the messages do
not repeat it.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Sequence

import numpy as np

from graphcnn.errors import ArgumentError, ArgumentTypeError


def _where(owner: str) -> str:
    return f"{owner}: " if owner else ""


def check_int(name: str, value: Any, minimum: int = 1, owner: str = "") -> int:
    """`value` as an int >= `minimum` (1: a positive count; 0: a size that may be 0).

    The one check of counts: bools and floats are refused, NumPy integers accepted."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        what = {1: "a positive int", 0: "a non-negative int"}.get(
            minimum, "an int" if minimum < 0 else f"an int >= {minimum}")
        raise ArgumentTypeError(f"{_where(owner)}{name} must be {what}, got {value!r} "
                                f"({type(value).__name__})")
    number = int(value)
    if number < minimum:
        rule = {1: "greater than zero", 0: "non-negative"}.get(minimum, f"at least {minimum}")
        raise ArgumentError(f"{_where(owner)}{name} must be {rule}, got {number}")
    return number


def check_pair(name: str, value: Any, minimum: int = 1, owner: str = "") -> tuple[int, int]:
    """An int or a sequence of two ints, each checked by `check_int`, as (h, w)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (numbers.Integral, Sequence)):
        raise ArgumentTypeError(f"{_where(owner)}{name} must be an int or a pair of ints, "
                                f"got {value!r}")
    if isinstance(value, Sequence):
        if len(value) != 2:
            raise ArgumentError(f"{_where(owner)}{name} must be an int or a pair of ints, "
                                f"got {len(value)} values {tuple(value)!r}")
        return (check_int(f"{name}[0]", value[0], minimum, owner),
                check_int(f"{name}[1]", value[1], minimum, owner))
    size = check_int(name, value, minimum, owner)
    return size, size


def check_ints(name: str, value: Any, lengths: Sequence[int], minimum: int = 0,
               owner: str = "") -> tuple[int, ...]:
    """An int (repeated to lengths[-1] values) or a sequence of one of `lengths` ints."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return (check_int(name, value, minimum, owner),) * lengths[-1]
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) \
            or len(value) not in lengths:
        counts = " or ".join(str(n) for n in lengths)
        raise ArgumentTypeError(f"{_where(owner)}{name} must be an int or {counts} ints, got "
                                f"{value!r}")
    return tuple(check_int(f"{name}[{i}]", v, minimum, owner) for i, v in enumerate(value))


def check_number(name: str, value: Any, low: float = -math.inf, high: float = math.inf,
                 low_open: bool = False, high_open: bool = False, owner: str = "") -> float:
    """A finite real number (bools refused) in the interval given, as a float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ArgumentTypeError(f"{_where(owner)}{name} must be a number, got {value!r} "
                                f"({type(value).__name__})")
    number = float(value)
    too_low = number <= low if low_open else number < low
    too_high = number >= high if high_open else number > high
    if not math.isfinite(number) or too_low or too_high:
        if math.isinf(low) and math.isinf(high):
            rule = "a finite number"
        elif math.isinf(high):
            rule = "greater than zero" if (low == 0 and low_open) else f">= {low:g}"
        else:
            rule = (f"in {'(' if low_open else '['}{low:g}, {high:g}"
                    f"{')' if high_open else ']'}")
        raise ArgumentError(f"{_where(owner)}{name} must be {rule}, got {value!r}")
    return number


def check_bool(name: str, value: Any, owner: str = "") -> bool:
    """A bool (NumPy's too); 0/1 and strings are refused, as they hide mistakes."""
    if not isinstance(value, (bool, np.bool_)):
        raise ArgumentTypeError(f"{_where(owner)}{name} must be True or False, got "
                                f"{value!r}")
    return bool(value)


def check_choice(name: str, value: Any, choices: Sequence[Any], owner: str = "") -> Any:
    if value not in choices:
        raise ArgumentError(f"{_where(owner)}{name} must be one of {tuple(choices)}, got "
                            f"{value!r}")
    return value


def check_shape(name: str, value: Any, owner: str = "") -> tuple[int, ...]:
    """A shape: a sequence of positive ints."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ArgumentTypeError(f"{_where(owner)}{name} must be a sequence of positive ints, "
                                f"got {value!r}")
    try:
        return tuple(check_int(f"{name}[{i}]", d, 1, owner) for i, d in enumerate(value))
    except ArgumentError as exc:   # the whole shape too: "shape[1] ... in (1, 0, 8)"
        raise type(exc)(f"{exc} (in {name} {tuple(value)!r})") from None
