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
    "available_memory",
    "check_memory",
    "format_bytes",
]


def _num(x: float) -> str:
    """An integer exactly (``9223372036854775807``), any other number in ``%g``."""
    if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
        return str(int(x))
    return f"{x:g}"


def describe_range(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    lo = "-inf" if low is None else _num(low)
    hi = "inf" if high is None else _num(high)
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


def format_bytes(nbytes: float) -> str:
    """``1.5 GiB``-style size."""
    x = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(x) < 1024 or unit == "PiB":
            return f"{x:.0f} {unit}" if unit == "B" else f"{x:.3g} {unit}"
        x /= 1024
    return f"{x:.3g} PiB"  # pragma: no cover


def available_memory(device: str = "cpu") -> int | None:
    """Bytes that can be allocated now without swapping: ``MemAvailable`` of ``/proc/meminfo`` on
    Linux (the free pages plus the reclaimable caches), the free device memory on ``"cuda"``, the
    physical memory elsewhere; None where it cannot be read (then no estimate is refused)."""
    if str(device).startswith("cuda"):
        try:
            import torch

            free, _ = torch.cuda.mem_get_info(torch.device(device))
            return int(free)
        except Exception:
            return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import os

        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def check_memory(name: str, value: Any, nbytes: float, *, what: str = "", device: str = "cpu",
                 fraction: float = 0.8, available: int | None = None) -> None:
    """Refuse, before allocating, a parameter value whose arrays would not fit in memory.

    A simulator whose memory grows with a size parameter (``n`` for an ``n x n`` matrix, a batch
    of runs) calls this with its estimate: ``ValueError`` naming the parameter, its value, the
    estimate and the memory available, instead of a ``MemoryError`` (or the machine swapping)
    half-way through. The estimate is refused when it exceeds ``fraction`` of what
    :func:`available_memory` reports (``available`` overrides that, for tests).

    Args:
      name, value: the parameter that sets the size, and its value (named in the message).
      nbytes: the estimated peak allocation in bytes (e.g. ``3 * 8 * n**2`` for three float64
        ``n x n`` arrays).
      what: what is allocated, for the message (``"three n x n float64 matrices"``).
      device: ``"cpu"`` or a CUDA device.

    >>> check_memory("n", 100, 8 * 100**2, available=10**9)
    >>> check_memory("n", 10**6, 8 * 10**12, what="an n x n float64 matrix", available=10**9)
    Traceback (most recent call last):
    ...
    ValueError: n=1000000 is out of range: an n x n float64 matrix needs about 7.28 TiB, more than the 763 MiB available (80% of 954 MiB free): choose a smaller n
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction={fraction!r} is out of range: fraction must be in (0, 1]")
    free = available if available is not None else available_memory(device)
    if free is None:
        return
    limit = fraction * free
    if nbytes > limit:
        need = f"{what} needs" if what else "it needs"
        raise ValueError(f"{name}={value!r} is out of range: {need} about {format_bytes(nbytes)}, more than the "
                         f"{format_bytes(limit)} available ({fraction:.0%} of {format_bytes(free)} free"
                         f"{'' if device == 'cpu' else ' on ' + str(device)}): choose a smaller {name}")
