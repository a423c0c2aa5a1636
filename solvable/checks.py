"""Input validation shared by every model.

Every public function rejects bad input with a ``ValueError`` that names the parameter, the value
it got and the valid range, e.g. ``alpha=-1.0 is out of range: alpha must be in (0, inf)``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = [
    "describe_range",
    "check_range",
    "check_positive",
    "check_int",
    "check_choice",
    "check_finite_array",
    "check_shapes_match",
]


def describe_range(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    left = "(" if (low is None or low_open) else "["
    right = ")" if (high is None or high_open) else "]"
    return f"{left}{lo}, {hi}{right}"


def check_range(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``float(value)`` if it is a finite number in the interval, else raise ``ValueError``.

    >>> check_range("eta", 0.5, 0, None, low_open=True)
    0.5
    """
    rng = describe_range(low, high, low_open, high_open)
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r} is not a number: {name} must be in {rng}") from None
    bad = (
        not math.isfinite(x)
        or (low is not None and (x < low or (low_open and x == low)))
        or (high is not None and (x > high or (high_open and x == high)))
    )
    if bad:
        raise ValueError(f"{name}={value!r} is out of range: {name} must be a finite number in {rng}")
    return x


def check_positive(name: str, value: Any) -> float:
    """Strictly positive finite number."""
    return check_range(name, value, 0.0, None, low_open=True)


def check_int(name: str, value: Any, low: int | None = None, high: int | None = None) -> int:
    """An integer (a float with integral value is accepted) in ``[low, high]``."""
    rng = describe_range(low, high, False, False)
    if isinstance(value, bool):
        raise ValueError(f"{name}={value!r} is not an integer: {name} must be an integer in {rng}")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r} is not an integer: {name} must be an integer in {rng}") from None
    if not math.isfinite(x) or x != int(x):
        raise ValueError(f"{name}={value!r} is not an integer: {name} must be an integer in {rng}")
    i = int(x)
    if (low is not None and i < low) or (high is not None and i > high):
        raise ValueError(f"{name}={value!r} is out of range: {name} must be an integer in {rng}")
    return i


def check_choice(name: str, value: Any, choices: tuple) -> Any:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not allowed: {name} must be one of {', '.join(map(str, choices))}")
    return value


def check_finite_array(name: str, array: Any) -> None:
    """Raise if ``array`` (numpy or torch) holds NaN or inf."""
    if hasattr(array, "detach"):  # torch tensor: reduce on its own device
        import torch

        ok = bool(torch.isfinite(array).all())
    else:
        ok = bool(np.all(np.isfinite(np.asarray(array))))
    if not ok:
        raise ValueError(f"{name} contains NaN or inf: {name} must be finite")


def check_shapes_match(name_a: str, a_len: int, name_b: str, b_len: int) -> None:
    if a_len != b_len:
        raise ValueError(
            f"{name_a} has {a_len} rows but {name_b} has {b_len}: {name_a} and {name_b} must have the same number of rows"
        )
