"""Kernel learning curves: kernel ridge regression on a power-law spectrum and the eigenlearning formula.

The model. Inputs carry ``modes = M`` Gaussian features ``z ~ N(0, I_M)`` (the kernel's eigenfunctions,
orthonormal under the data distribution); the kernel is ``K(x, x') = sum_i lambda_i z_i z'_i`` with
``lambda_i = i^(-a)``, the target ``f(x) = sum_i v_i z_i`` with ``v_i^2 = i^(-b)`` (``i = 1..M``,
unnormalised), labels ``y = f(x) + noise`` of variance ``sigma2``. Kernel ridge regression on ``n``
samples with ridge ``delta``:

    f_hat(x) = k(x)^T (K + delta I_n)^{-1} y,   whose coefficients are  c = Lambda Z^T (K + delta I)^{-1} y.

Its test error against fresh noisy labels is ``E = ||c - v||^2 + sigma2``.

The eigenlearning (replica, omniscient-risk) estimate (Bordelon, Canatar, Pehlevan 2020; Canatar,
Bordelon, Pehlevan 2021; Simon, Dickens, Karkada, DeWeese 2021): the effective regulariser ``kappa``
solves

    sum_i lambda_i / (lambda_i + kappa) + delta / kappa = n,

the learnabilities are ``L_i = lambda_i / (lambda_i + kappa)`` and

    E = n / (n - sum_i L_i^2) * (sum_i (1 - L_i)^2 v_i^2 + sigma2)     (:func:`eigenlearning_error`).

Two consequences derived in ``proofs_check/check_kernels.py``: the prefactor is ``n dkappa/ddelta``, and
the learnabilities sum to ``n - delta/kappa`` (``n`` exactly at ``delta = 0``, the conservation law that
holds at every finite ``n``: ``tr[(K + delta I)^{-1} K]`` is the sum of the learned fractions, measured
here). For ``n -> inf`` at ``delta = 0`` and ``M = inf``, ``kappa ~ (pi / (a sin(pi/a)) / n)^a`` and, without
noise, ``E ~ n^(-min(2a, b - 1))`` (the data-scaling exponent, :func:`data_scaling_exponent`).

Simulation (:func:`krr_learning_curve`): ``replicates`` independent training sets drawn at once
(``Z`` of shape ``(replicates, n, M)``), one batched solve.

References:
  Bordelon, Canatar, Pehlevan 2020, arXiv 2002.02561 (Sec. 3, eq. 6).
  Canatar, Bordelon, Pehlevan 2021, Nat. Commun. 12, arXiv 2006.13198.
  Simon, Dickens, Karkada, DeWeese 2021, arXiv 2110.03922 (eigenlearning, eqs. 6-9).
  Spigler, Geiger, Wyart 2020, arXiv 1905.10843 (learning-curve exponents).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import brentq

from ..backend import Backend, get_backend
from ..checks import check_int, check_range
from ..claims import Claim, Measurement, Params, Tolerance, param, register, relative_errors
from ..stats import mean_sem

__all__ = [
    "spectrum", "solve_kappa", "learnabilities", "eigenlearning_error", "data_scaling_exponent",
    "krr_learning_curve",
]

_Z = 3.0  # z-value of every Monte Carlo tolerance below (two-sided 0.27%)

# --------------------------------------------------------------------------------------------
# Closed forms


def spectrum(a: float, b: float, modes: int) -> tuple[np.ndarray, np.ndarray]:
    """``(lambda_i, v_i^2) = (i^(-a), i^(-b))`` for ``i = 1..modes``; ``a > 1`` (a summable spectrum)."""
    a = check_range("a", a, 1.0, None, low_open=True)
    b = check_range("b", b, 0.0, None, low_open=True)
    modes = check_int("modes", modes, 1, None)
    i = np.arange(1, modes + 1, dtype=float)
    return i ** (-a), i ** (-b)


def solve_kappa(lam: Any, n: float, ridge: float) -> float:
    """The root ``kappa > 0`` of ``sum_i lam_i / (lam_i + kappa) + ridge / kappa = n``.

    The left side decreases from ``+inf`` (or ``len(lam)`` at ``ridge = 0``) to 0, so a root exists iff
    ``ridge > 0`` or ``n < len(lam)``; it is found by bracketing in ``log kappa``.
    """
    lam = np.asarray(lam, dtype=float)
    n = check_range("n", n, 0.0, None, low_open=True)
    ridge = check_range("ridge", ridge, 0.0, None)
    if ridge == 0 and n >= lam.size:
        raise ValueError(f"n={n!r} is out of range for ridge=0 and modes={lam.size}: n must be in (0, {lam.size})")

    def f(t: float) -> float:
        k = math.exp(t)
        return float(np.sum(lam / (lam + k)) + ridge / k - n)

    lo, hi = math.log(lam.min()) - 30.0, math.log(lam.max() + ridge + 1.0) + 30.0
    return math.exp(brentq(f, lo, hi, xtol=1e-14, rtol=1e-14, maxiter=500))


def learnabilities(a: float, modes: int, n: float, ridge: float) -> np.ndarray:
    """``L_i = lambda_i / (lambda_i + kappa)`` at ``n`` samples."""
    lam, _ = spectrum(a, 2.0, modes)
    k = solve_kappa(lam, n, ridge)
    return lam / (lam + k)


def eigenlearning_error(a: float, b: float, ridge: float, n: float, modes: int, sigma2: float) -> tuple[float, float]:
    """``(E, sum_i L_i)``: the eigenlearning test error and the total learnability at ``n`` samples.

    >>> E, S = eigenlearning_error(2.0, 2.0, 0.0, 10, 100, 0.0)
    >>> round(S, 9)  # conservation of learnability at ridge 0
    10.0
    """
    s2 = check_range("sigma2", sigma2, 0.0, None)
    lam, v2 = spectrum(a, b, modes)
    ridge = check_range("ridge", ridge, 0.0, None)
    k = solve_kappa(lam, n, ridge)
    L = lam / (lam + k)
    e0 = n / (n - float(np.sum(L * L)))
    return e0 * (float(np.sum((1 - L) ** 2 * v2)) + s2), float(np.sum(L))


def data_scaling_exponent(a: float, b: float) -> float:
    """Noiseless ridgeless exponent ``alpha`` of ``E ~ n^(-alpha)``: ``min(2a, b - 1)`` (``b > 1``)."""
    a = check_range("a", a, 1.0, None, low_open=True)
    b = check_range("b", b, 1.0, None, low_open=True)
    return min(2 * a, b - 1)


# --------------------------------------------------------------------------------------------
# Simulator


def krr_learning_curve(a: float, b: float, ridge: float, n: int, modes: int, sigma2: float, replicates: int,
                       backend: Backend | str = "numpy", seed: int = 0) -> tuple[Any, Any]:
    """Kernel ridge regression on ``replicates`` training sets at once.

    Returns per-replicate ``(E, T)``: ``E = ||c - v||^2 + sigma2`` the test error against noisy labels,
    ``T = tr[(K + ridge I)^{-1} K]`` the sum over modes of the learned fractions ``dc_i/dv_i`` (computed
    without the closed form). Signs of ``v_i`` are positive; the law of ``Z`` makes them irrelevant.
    """
    lam, v2 = spectrum(a, b, modes)
    n = check_int("n", n, 1, None)
    ridge = check_range("ridge", ridge, 0.0, None)
    s2 = check_range("sigma2", sigma2, 0.0, None)
    replicates = check_int("replicates", replicates, 2, None)
    be = backend if isinstance(backend, Backend) else get_backend(backend)
    xp = be.xp
    g = be.rng(seed)
    Z = g.normal((replicates, n, modes))
    lam_, v = be.asarray(lam), be.asarray(np.sqrt(v2))
    y = Z @ v + g.normal((replicates, n), scale=math.sqrt(s2))
    ZL = Z * lam_
    K = ZL @ xp.matrix_transpose(Z)
    eye = be.asarray(np.eye(n))
    A = K + ridge * eye
    sol = xp.linalg.solve(A, xp.concat([y[..., None], K], axis=-1))
    alpha, AinvK = sol[..., 0], sol[..., 1:]
    c = (xp.matrix_transpose(ZL) @ alpha[..., None])[..., 0]
    E = xp.sum((c - v) ** 2, axis=-1) + s2
    T = xp.sum(xp.linalg.diagonal(AinvK) if hasattr(xp.linalg, "diagonal") else xp.diagonal(AinvK), axis=-1)
    return E, T


# --------------------------------------------------------------------------------------------
# Claims


@dataclass(frozen=True)
class LearningCurveParams(Params):
    a: float = param(1.5, low=1, low_open=True, domain=(1.2, 2.5), doc="kernel spectrum lambda_i = i^(-a)")
    b: float = param(1.6, low=0, low_open=True, domain=(1.2, 3.0), doc="target power v_i^2 = i^(-b)")
    ridge: float = param(0.05, low=0, domain=(0.03, 0.3), log=True, doc="ridge delta of K + delta I")
    n: int = param(64, low=1, integer=True, domain=(48, 96), doc="training-set size n")
    modes: int = param(400, low=2, integer=True, domain=(300, 500), doc="number of modes M")
    sigma2: float = param(0.3, low=0, domain=(0.1, 0.5), log=True, doc="label-noise variance sigma2")
    replicates: int = param(100, low=8, integer=True, domain=(80, 120), doc="independent training sets")

    def check(self) -> None:
        if self.ridge == 0 and self.n >= self.modes:
            raise ValueError(f"n={self.n} is out of range for ridge=0: ridgeless regression needs n < modes "
                             f"({self.modes}), n must be in [1, {self.modes - 1}]")


#: finite-n error model of the eigenlearning estimate: relative deviation of the mean test error
#: (and of the mean total learnability) from it is at most C / n. Measured in
#: tests/test_kernels.py::test_eigenlearning_finite_size (slow): at the 16 corners of the domain in
#: (a, b, ridge, sigma2), n = 24 and 96, 300 modes, 2000 training sets, n |E_sim - E| / E was at most
#: 0.28 (3-sigma Monte Carlo resolution 0.17..0.63) and n |T_sim - sum L| / sum L at most 0.13;
#: C = 0.6 covers the largest value plus its resolution.
EIGEN_BIAS_C = 0.6


def _measure_lc(p: LearningCurveParams, backend: Backend, seed: int) -> Measurement:
    E, T = krr_learning_curve(p.a, p.b, p.ridge, p.n, p.modes, p.sigma2, p.replicates, backend, seed)
    mE, sE = mean_sem(Backend.to_numpy(E))
    mT, sT = mean_sem(Backend.to_numpy(T))
    return Measurement(value=[float(mE), float(mT)], stderr=[float(sE), float(sT)])


def _tol_lc(p: LearningCurveParams, m: Measurement, be: Backend) -> Tolerance:
    v, se = np.asarray(m.value), np.asarray(m.stderr)
    return Tolerance(_Z * se / v + EIGEN_BIAS_C / p.n,
                     "3 Monte Carlo standard errors of each mean, plus the finite-n deviation of the "
                     "eigenlearning estimate, C/n with C = 0.6 (measured error model, see EIGEN_BIAS_C)")


def _lc_predicted(p: LearningCurveParams) -> list[float]:
    return list(eigenlearning_error(p.a, p.b, p.ridge, p.n, p.modes, p.sigma2))


def _mut_no_e0(p: LearningCurveParams) -> list[float]:
    lam, v2 = spectrum(p.a, p.b, p.modes)
    k = solve_kappa(lam, p.n, p.ridge)
    L = lam / (lam + k)
    return [float(np.sum((1 - L) ** 2 * v2)) + p.sigma2, float(np.sum(L))]


def _mut_no_ridge(p: LearningCurveParams) -> list[float]:
    return list(eigenlearning_error(p.a, p.b, 0.0, p.n, p.modes, p.sigma2))


def _mut_sigma(p: LearningCurveParams) -> list[float]:
    return list(eigenlearning_error(p.a, p.b, p.ridge, p.n, p.modes, math.sqrt(p.sigma2)))


register(Claim(
    id="kernels.learning_curve",
    statement=("Kernel ridge regression on n samples, spectrum lambda_i = i^(-a), target v_i^2 = i^(-b), "
               "i <= modes, ridge delta, noise sigma2: the mean test error is E = n/(n - sum L_i^2) "
               "(sum (1 - L_i)^2 v_i^2 + sigma2) and the summed learnability tr[(K + delta)^{-1} K] is "
               "n - delta/kappa, with L_i = lambda_i/(lambda_i + kappa) and kappa solving sum L_i + "
               "delta/kappa = n, up to a finite-n deviation below 0.6/n (measured)."),
    reference=("Bordelon, Canatar, Pehlevan 2020, arXiv 2002.02561; Canatar et al. 2021, arXiv 2006.13198; "
               "Simon, Dickens, Karkada, DeWeese 2021, arXiv 2110.03922, eqs. 6-9"),
    params=LearningCurveParams,
    predicted=_lc_predicted,
    measured=_measure_lc,
    tolerance=_tol_lc,
    error=relative_errors,
    sweep="n", sweep_values=(16, 32, 64, 128),
    summary=lambda v: v[0], summary_label="test error E",
    mutants={"no prefactor n/(n - sum L^2)": _mut_no_e0,
             "kappa without the ridge term delta/kappa": _mut_no_ridge,
             "sigma for sigma2": _mut_sigma},
    closed_forms=("eigenlearning_error", "solve_kappa"),
))
