"""Sparse parities: the Fourier gap that SGD amplifies at a symmetric initialisation.

Inputs ``x`` uniform on ``{-1, +1}^n``, target the ``k``-sparse parity ``y = chi_S(x) = prod_{i in S} x_i``
(``|S| = k``). One ReLU neuron ``sigma(w . x + b)`` with the correlation loss ``L = -E[y sigma(w . x + b)]``
at the symmetric initialisation ``w = w0 (1, ..., 1)``, ``b = 0`` (``w0 > 0``) has the population gradient

    -dL/dw_i = E[chi_S(x) x_i f(x)],    f(x) = sigma'(w0 sum_j x_j) = 1[sum_j x_j > 0].

``f`` is symmetric, so its Fourier coefficient on a set ``T`` depends only on ``|T|``: ``f^(T) = c_|T|``.
Since ``x_i chi_S = chi_{S \\ i}`` for ``i in S`` and ``chi_{S + i}`` otherwise, the gradient is ``c_{k-1}``
on each relevant coordinate and ``c_{k+1}`` on each other one, and their ratio is (derived here from the
Fourier coefficients of Majority, O'Donnell 2014, Thm 5.19, and of ``1[sum x = 0]``):

    n odd, k even:   f = (1 + Maj_n)/2,                       c_{k-1}/c_{k+1} = -(n - k)/(k - 1)
    n even, k odd:   the even-degree part of f is -1[sum x = 0]/2,  c_{k-1}/c_{k+1} = -(n - k)/k
    n even, k even:  the odd-degree part is sgn(sum x)/2,     c_{k-1}/c_{k+1} = -(n - k + 1)/(k - 1)
    n odd, k odd:    both vanish (Majority has no even-degree coefficient of degree > 0): no gap.

So the relevant coordinates get a gradient about ``n/k`` times larger than the rest (with the opposite
sign), while each is of size ``~ n^{-(k-1)/2}``: the signal SGD must amplify out of a plateau.

References:
  Barak, Edelman, Goel, Kakade, Malach, Zhang, 2022. "Hidden progress in deep learning: SGD learns
  parities near the computational limit." NeurIPS, arXiv 2207.08799 (sec. 4, the Fourier gap).
  O'Donnell, 2014. "Analysis of Boolean Functions." Cambridge University Press, sec. 5.3.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backend import Backend
from ..checks import check_int
from ..claims import Claim, Measurement, Params, Tolerance, param, register, relative_error

__all__ = [
    "check_nk",
    "fourier_gap",
    "majority_coefficient",
    "all_inputs",
    "population_gradient",
]


def check_nk(n: int, k: int) -> tuple[int, int]:
    """Validate ``n >= 2`` input bits and a parity of ``1 <= k <= n`` of them."""
    n = check_int("n", n, 2)
    k = check_int("k", k, 1)
    if k > n:
        raise ValueError(f"k={k} is out of range: k must be an integer in [1, n] = [1, {n}]")
    return n, k


# --------------------------------------------------------------------------------------------
# Closed forms


def majority_coefficient(n: int, j: int) -> float:
    """``Maj_n^(T)`` for ``|T| = j`` (``n`` odd): ``(-1)^((j-1)/2) C(m, (j-1)/2)/C(n-1, j-1) * 2 C(n-1, m)/2^n``
    for odd ``j`` (``m = (n-1)/2``), 0 for even ``j`` (O'Donnell 2014, Thm 5.19)."""
    n = check_int("n", n, 1)
    if n % 2 == 0:
        raise ValueError(f"n={n} is out of range: Majority needs an odd n")
    j = check_int("j", j, 0, n)
    if j % 2 == 0:
        return 0.0
    m = (n - 1) // 2
    return ((-1) ** ((j - 1) // 2) * math.comb(m, (j - 1) // 2) / math.comb(n - 1, j - 1)
            * 2.0 * math.comb(n - 1, m) / 2.0 ** n)


def fourier_gap(n: int, k: int) -> float:
    """``c_{k-1}/c_{k+1}``: the population gradient of a ReLU neuron at ``w = w0 1``, ``b = 0`` on a
    relevant coordinate over that on an irrelevant one, for the ``k``-sparse parity on ``n`` bits
    (``2 <= k < n``, not both odd). See the module docstring for the three cases.

    >>> fourier_gap(11, 4)
    -2.3333333333333335
    """
    n, k = check_nk(n, k)
    if k == n or k == 1:
        raise ValueError(f"k={k} is out of range: k must be in [2, n - 1] = [2, {n - 1}] (at k = 1 the relevant "
                         "gradient is the mean E f, not a Fourier coefficient of a parity; at k = n nothing is irrelevant)")
    if n % 2 == 1 and k % 2 == 1:
        raise ValueError(f"n={n} and k={k} are both odd: both gradients vanish at b = 0 (Majority has no "
                         "even-degree coefficient above degree 0); choose n or k even")
    if n % 2 == 1:
        return -(n - k) / (k - 1)
    if k % 2 == 1:
        return -(n - k) / k
    return -(n - k + 1) / (k - 1)


# --------------------------------------------------------------------------------------------
# Simulator: exact population gradients by enumerating {-1, +1}^n


def all_inputs(n: int, backend: Backend) -> Any:
    """All ``2^n`` points of ``{-1, +1}^n`` as a ``(2^n, n)`` array."""
    n = check_int("n", n, 1, 24)
    codes = np.arange(2 ** n)[:, None] >> np.arange(n)[None, :] & 1
    return backend.asarray(1.0 - 2.0 * codes)


def population_gradient(n: int, k: int, backend: Backend, w0: float = 1.0, b: float = 0.0) -> Any:
    """``dL/dw`` of ``L(w) = -E[chi_S(x) relu(w . x + b)]`` at ``w = w0 1`` by exact enumeration of all
    ``2^n`` inputs, ``S = {0, ..., k-1}``. On torch by autograd; on numpy by the explicit derivative
    ``-E[y 1[w . x + b > 0] x]`` (relu'(0) = 0, as torch's)."""
    n, k = check_nk(n, k)
    X = all_inputs(n, backend)
    xp = backend.xp
    y = xp.prod(X[:, :k], axis=1)
    if backend.name == "torch":
        import torch

        w = torch.full((n,), float(w0), dtype=X.dtype, device=X.device, requires_grad=True)
        loss = -torch.mean(y * torch.relu(X @ w + b))
        (g,) = torch.autograd.grad(loss, w)
        return g
    w = xp.full((n,), float(w0), dtype=X.dtype)
    act = xp.astype((X @ w + b) > 0, X.dtype)
    return -xp.mean((y * act)[:, None] * X, axis=0)


# --------------------------------------------------------------------------------------------
# Claims


@dataclass(frozen=True)
class FourierGapParams(Params):
    n: int = param(11, low=2, high=20, integer=True, domain=(4, 16), doc="number of input bits n")
    k: int = param(4, low=1, high=20, integer=True, domain=(2, 15), doc="parity order k (|S|)")

    def check(self) -> None:
        check_nk(self.n, self.k)
        fourier_gap(self.n, self.k)  # raises where the gap is undefined (k = 1, k = n, n and k odd)


def _measure_gap(p: FourierGapParams, backend: Backend, seed: int) -> Measurement:
    g = backend.to_numpy(population_gradient(p.n, p.k, backend))
    rel, irr = g[:p.k], g[p.k:]
    spread = max(np.ptp(rel), np.ptp(irr)) / max(abs(rel).max(), abs(irr).max())
    return Measurement(value=float(rel.mean() / irr.mean()),
                       checks={"symmetric_within_groups": bool(spread <= backend.roundoff(2 ** p.n))},
                       info={"relevant_gradient": float(rel.mean()), "irrelevant_gradient": float(irr.mean()),
                             "inputs_enumerated": 2 ** p.n})


register(Claim(
    id="parity.fourier_gap",
    statement=("At the symmetric initialisation w = w0 (1, ..., 1), b = 0, the population gradient of one ReLU "
               "neuron under the correlation loss on an n-bit k-sparse parity is c_{k-1} on each relevant "
               "coordinate and c_{k+1} on each other one (Fourier coefficients of f = 1[sum x > 0]), with ratio "
               "-(n - k)/(k - 1) for n odd, k even (Majority), -(n - k)/k for n even, k odd, and "
               "-(n - k + 1)/(k - 1) for n, k even (2 <= k < n); for n, k both odd both vanish (no gap at b = 0). Measured by "
               "enumerating all 2^n inputs."),
    reference=("Barak et al. 2022, arXiv 2207.08799, sec. 4; Majority's coefficients: O'Donnell 2014, Thm 5.19; "
               "the three cases derived here (proofs_check/check_parity.py)"),
    params=FourierGapParams,
    predicted=lambda p: fourier_gap(p.n, p.k),
    measured=_measure_gap,
    tolerance=lambda p, m, be: Tolerance(be.roundoff(2 ** p.n), (
        "exact enumeration: only round-off in the mean of 2^n terms (2^n ulps, a loose bound on pairwise "
        "summation)")),
    sweep="k", sweep_values=(2, 4, 6, 8),
    mutants={
        "leading order -n/k": lambda p: -p.n / p.k,
        "sign dropped": lambda p: abs(fourier_gap(p.n, p.k)),
        "k + 1 for k - 1 in the denominator": lambda p: -(p.n - p.k) / (p.k + 1),
    },
    closed_forms=("fourier_gap",),
))
