"""Small statistics used by several claims: log-log slopes with their standard errors,
means with standard errors, and batch means for time averages of correlated chains."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Fit", "loglog_slope", "mean_sem", "batch_means"]


@dataclass(frozen=True)
class Fit:
    """A least-squares line ``log y = intercept + slope * log x`` and the slope's standard error."""

    slope: float
    intercept: float
    stderr: float


def loglog_slope(x, y) -> Fit:
    """Fit ``y ~ C x^slope`` by least squares on logs; ``stderr`` is the slope's standard error.

    The order of an error term (diffrax-style ``order``) or a scaling exponent is measured this way.

    >>> round(loglog_slope([1, 2, 4], [3, 12, 48]).slope, 12)
    2.0
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.shape != y.shape or x.size < 2:
        raise ValueError(f"x and y have shapes {x.shape} and {y.shape}: they must match, with at least 2 points")
    if np.any(x <= 0) or np.any(y <= 0):
        raise ValueError("x and y must be positive for a log-log fit")
    lx, ly = np.log(x), np.log(y)
    if x.size == 2:
        s = float((ly[1] - ly[0]) / (lx[1] - lx[0]))
        return Fit(s, float(ly[0] - s * lx[0]), float("nan"))
    # The textbook formulas rather than scipy.stats.linregress, whose stderr is NaN for an exactly
    # constant y (its correlation coefficient is undefined there), a case slopes of 0 do hit.
    dx = lx - lx.mean()
    sxx = float(dx @ dx)
    slope = float(dx @ (ly - ly.mean()) / sxx)
    intercept = float(ly.mean() - slope * lx.mean())
    resid = ly - (intercept + slope * lx)
    stderr = float(np.sqrt(resid @ resid / (x.size - 2) / sxx))
    return Fit(slope, intercept, stderr)


def mean_sem(samples, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Sample mean and its standard error ``std / sqrt(n)`` (independent samples)."""
    a = np.asarray(samples, dtype=float)
    n = a.shape[axis]
    if n < 2:
        raise ValueError(f"samples has {n} entries along axis {axis}: need at least 2")
    return a.mean(axis=axis), a.std(axis=axis, ddof=1) / np.sqrt(n)


def batch_means(chain, n_batches: int = 20, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Time average of a correlated chain and its standard error by non-overlapping batch means.

    The chain is cut into ``n_batches`` equal blocks; if the blocks are longer than the
    autocorrelation time their means are nearly independent, and the standard error of the
    overall mean is ``std(block means) / sqrt(n_batches)`` (Flegal and Jones 2010).
    """
    a = np.moveaxis(np.asarray(chain, dtype=float), axis, 0)
    if n_batches < 2 or a.shape[0] < n_batches:
        raise ValueError(f"n_batches={n_batches} is out of range: must be in [2, chain length {a.shape[0]}]")
    m = a.shape[0] // n_batches
    blocks = a[: m * n_batches].reshape((n_batches, m) + a.shape[1:]).mean(axis=1)
    return blocks.mean(axis=0), blocks.std(axis=0, ddof=1) / np.sqrt(n_batches)
