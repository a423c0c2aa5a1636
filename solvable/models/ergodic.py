"""Ergodic weight distributions: the invariant measures of SGD.

SGD with a constant step does not converge to a point: its iterates form a Markov chain whose law
converges to an invariant measure, while the loss settles and the gradient keeps a nonzero size.
This module holds the solvable cases of that picture and simulators that run many chains at once.

The model, in the cases solved here:

* quadratic with additive gradient noise (an Ornstein-Uhlenbeck-like AR(1) chain)::

      x_{t+1} = x_t - eta (H x_t + xi_t),        xi_t ~ N(0, C),

  stationary covariance ``Sigma = (I - eta H) Sigma (I - eta H)^T + eta^2 C`` (a discrete
  Lyapunov equation), in 1-D ``V = eta sigma^2 / (a (2 - eta a))`` for ``H = a``, ``C = sigma^2``;
* linear regression with fresh samples (multiplicative noise, a Kesten recursion)::

      x_{t+1} = (1 - eta a_t) x_t + eta b_t,     a_t = mean of b squared N(0,1) features,

  whose stationary law has a power-law tail ``P(|x| > s) ~ c s^(-alpha)`` with ``alpha`` the
  positive root of ``E|1 - eta a_t|^alpha = 1`` (Kesten 1973, Goldie 1991);
* Lookahead on the noisy quadratic model ``a (x - c)^2 / 2``, ``c ~ N(0, sigma^2)``: ``k`` inner
  SGD steps of size ``eta`` from the slow weights ``phi``, then ``phi <- phi + alpha (x_k - phi)``;
* a small MLP trained by minibatch SGD (torch), where nothing is solvable but the claim of Zhang
  et al. (2022) is measured: the loss plateaus, the gradient does not vanish, the weights keep
  moving and their law converges;
* a scale-invariant (Rayleigh-quotient) model with weight decay, where the direction's law is
  stationary.

Simulators take ``backend`` (numpy or torch, any device) and run a leading batch axis of chains as
one array program; loops are over time steps only.

References:
  Zhang, Li, Sra, Jadbabaie, 2022. "Neural Network Weights Do Not Converge to Stationary Points:
  An Invariant Measure Perspective." ICML, arXiv 2110.06256.
  Gurbuzbalaban, Simsekli, Zhu, 2021. "The Heavy-Tail Phenomenon in SGD." ICML, arXiv 2006.04740.
  Hodgkinson, Mahoney, 2021. "Multiplicative noise and heavy tails in stochastic optimization."
  ICML, arXiv 2006.06293.
  Zhang, Lucas, Hinton, Ba, 2019. "Lookahead Optimizer: k steps forward, 1 step back." NeurIPS,
  arXiv 1907.08610 (Proposition 1, noisy quadratic model).
  Kesten, 1973, Acta Math. 131; Goldie, 1991, Ann. Appl. Probab. 1 (implicit renewal theorem).
  Hill, 1975, Ann. Statist. 3 (tail-index estimator).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from scipy import integrate, linalg, optimize
from scipy import stats as sps

from ..backend import Backend, get_backend
from ..checks import check_int, check_positive, check_range
from ..claims import Claim, Measurement, Params, Tolerance, max_abs_error, param, register, relative_errors
from ..stats import batch_means, mean_sem

__all__ = [
    "stationary_variance",
    "stationary_loss_moments",
    "stationary_grad_sq",
    "stationary_covariance",
    "stationary_mean_square_displacement",
    "sgd_fluctuation_dissipation",
    "stationary_log_cos_angle",
    "kesten_moment",
    "kesten_lyapunov_exponent",
    "kesten_tail_index",
    "tail_index",
    "tail_index_two_point",
    "lookahead_variance",
    "hill_estimator",
    "sliced_wasserstein",
    "ChainResult",
    "simulate_sgd_quadratic",
    "simulate_kesten",
    "simulate_lookahead",
    "MLPRun",
    "train_mlp_chains",
    "default_quadratic",
    "window_distance_test",
    "window_distances",
    "norm_map_contraction",
    "sphere_chains",
]

Array = Any

# A chain whose |x| passes this bound has left every stationary scale the claims use (their
# stationary standard deviations are O(1)): it is reported as diverged, never carried on to inf.
# Checked every _CHECK_EVERY steps; 1e30 leaves room for x^4 of a chain that grew for 8 more steps.
DIVERGENCE_BOUND = 1e30
_CHECK_EVERY = 8
# z of the sliced-Wasserstein thresholds (permutation-null mean + Z sd; one-sided, about
# P(N(0,1) > 4) = 3.2e-5 where the null is near normal).
Z = 4.0


def _check_stable(eta: float, a: float) -> None:
    if not eta * a < 2.0:
        raise ValueError(
            f"eta*a={eta * a!r} is out of range: eta*a must be in (0, 2) for a stationary law to exist"
            f" (eta={eta!r}, a={a!r}; SGD on the quadratic diverges for eta*a >= 2)")


# --------------------------------------------------------------------------------------------
# Closed forms: quadratic with additive noise


def stationary_variance(eta: float, a: float, sigma: float) -> float:
    """Stationary variance of ``x_{t+1} = x_t - eta (a x_t + xi_t)``, ``xi_t ~ N(0, sigma^2)``.

    ``V = eta sigma^2 / (a (2 - eta a))``, from ``V = (1 - eta a)^2 V + eta^2 sigma^2``.

    Args:
      eta: step size ``eta > 0``.
      a: curvature ``a > 0``, with ``eta a < 2``.
      sigma: gradient-noise standard deviation ``sigma >= 0``.

    >>> stationary_variance(0.1, 1.0, 1.0)  # 0.1 / 1.9
    0.05263157894736842
    """
    eta, a = check_positive("eta", eta), check_positive("a", a)
    sigma = check_range("sigma", sigma, 0.0)
    _check_stable(eta, a)
    return eta * sigma**2 / (a * (2.0 - eta * a))


def stationary_loss_moments(eta: float, a: float, sigma: float) -> tuple[float, float]:
    """Stationary ``(E f, E f^2)`` of the loss ``f(x) = a x^2 / 2`` along the 1-D chain.

    The stationary law is ``N(0, V)`` (a linear recursion driven by Gaussian noise), so
    ``E f = a V / 2 = eta sigma^2 / (2 (2 - eta a))`` and ``E f^2 = a^2 E x^4 / 4 = 3 a^2 V^2 / 4``.
    Arguments as in :func:`stationary_variance`.
    """
    v = stationary_variance(eta, a, sigma)
    return a * v / 2.0, 3.0 * a**2 * v**2 / 4.0


def stationary_grad_sq(eta: float, a: float, sigma: float) -> float:
    """Stationary ``E f'(x)^2 = a^2 V = eta a sigma^2 / (2 - eta a)``: positive for every ``eta > 0``,
    so the loss settles while the (true) gradient does not vanish."""
    return a**2 * stationary_variance(eta, a, sigma)


def stationary_mean_square_displacement(eta: float, a: float, sigma: float, s: int) -> float:
    """``E (x_{t+s} - x_t)^2 = 2 V (1 - r^s)`` at stationarity, ``r = 1 - eta a``.

    Positive for every lag ``s >= 1``: the iterates keep moving although their law is fixed.
    """
    s = check_int("s", s, 0)
    v = stationary_variance(eta, a, sigma)
    return 2.0 * v * (1.0 - (1.0 - eta * a) ** s)


def stationary_covariance(eta: float, H: Array, C: Array) -> np.ndarray:
    """Stationary covariance of ``x_{t+1} = x_t - eta (H x_t + xi_t)``, ``xi_t ~ N(0, C)``.

    Solves ``Sigma = A Sigma A^T + eta^2 C`` with ``A = I - eta H`` by
    ``scipy.linalg.solve_discrete_lyapunov``. For diagonal ``H = diag(h)``:
    ``Sigma_ij = eta^2 C_ij / (1 - (1 - eta h_i)(1 - eta h_j))``.

    Args:
      eta: step size.
      H: symmetric curvature matrix (d, d); the spectral radius of ``I - eta H`` must be < 1.
      C: gradient-noise covariance (d, d), symmetric positive semidefinite.
    """
    eta = check_positive("eta", eta)
    H = np.atleast_2d(np.asarray(H, dtype=float))
    C = np.atleast_2d(np.asarray(C, dtype=float))
    if H.shape != C.shape or H.shape[0] != H.shape[1]:
        raise ValueError(f"H has shape {H.shape} and C has shape {C.shape}: both must be the same square shape")
    A = np.eye(H.shape[0]) - eta * H
    rho = float(np.max(np.abs(np.linalg.eigvals(A))))
    if not rho < 1.0:
        raise ValueError(f"eta={eta!r} is out of range: the spectral radius of I - eta H is {rho:.6g}, it must be < 1"
                         " (eta < 2 / lambda_max(H)) for a stationary law to exist")
    return linalg.solve_discrete_lyapunov(A, eta**2 * C)


def default_quadratic(a: float, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """The 3-D quadratic of the matrix case: ``H = a Q diag(1, 0.6, 0.3) Q^T`` (a fixed rotation
    ``Q``, so ``H`` is not diagonal and ``lambda_max(H) = a``) and ``C = sigma^2 K`` with a fixed
    correlated ``K``. Returns ``(H, C)``."""
    c1, s1, c2, s2 = math.cos(0.7), math.sin(0.7), math.cos(1.1), math.sin(1.1)
    q1 = np.array([[c1, -s1, 0.0], [s1, c1, 0.0], [0.0, 0.0, 1.0]])
    q2 = np.array([[1.0, 0.0, 0.0], [0.0, c2, -s2], [0.0, s2, c2]])
    q = q1 @ q2
    H = a * (q @ np.diag([1.0, 0.6, 0.3]) @ q.T)
    K = np.array([[1.0, 0.3, 0.0], [0.3, 1.0, 0.2], [0.0, 0.2, 0.5]])
    return 0.5 * (H + H.T), sigma**2 * K


def sgd_fluctuation_dissipation(lr: float) -> float:
    """Stationary ``E<theta, g> / E||g||^2 = lr / 2`` of SGD ``theta' = theta - lr g`` (any loss and noise).

    ``||theta'||^2 = ||theta||^2 - 2 lr <theta, g> + lr^2 ||g||^2``; at stationarity
    ``E||theta'||^2 = E||theta||^2``, so ``2 E<theta, g> = lr E||g||^2``, with ``g`` the minibatch gradient of
    the step (weight decay included). Yaida 2018, arXiv 1810.00004 (fluctuation-dissipation relation);
    derived in ``proofs_check/check_ergodic.py``.

    >>> sgd_fluctuation_dissipation(0.2)
    0.1
    """
    return check_positive("lr", lr) / 2.0


def stationary_log_cos_angle(eta: float, wd: float) -> float:
    """Stationary ``E[-log cos theta_t] = -log(1 - eta wd)`` of SGD with weight decay on a scale-invariant loss.

    ``w' = (1 - eta wd) w - eta g`` with ``g`` orthogonal to ``w`` gives, exactly at every step,
    ``||w'|| cos theta = (1 - eta wd) ||w||`` (``theta`` the angle between ``w`` and ``w'``), so
    ``log||w'|| - log||w|| = log(1 - eta wd) - log cos theta``; when the law of ``log||w||`` is stationary
    its mean change is 0. Whatever the loss and the noise; small angles give ``E theta^2 ~ 2 eta wd``
    (Wan et al. 2021, arXiv 2006.08419). Derived in ``proofs_check/check_ergodic.py``.
    """
    eta, wd = check_positive("eta", eta), check_positive("wd", wd)
    if not eta * wd < 1:
        raise ValueError(f"eta*wd={eta * wd!r} is out of range: eta*wd must be in (0, 1)")
    return -math.log1p(-eta * wd)


# --------------------------------------------------------------------------------------------
# Closed forms: Kesten tail index


def kesten_tail_index(moment: Callable[[float], float], alpha_max: float = 1e3) -> float:
    """Positive root ``alpha`` of ``moment(alpha) = E|A|^alpha = 1`` (scipy.optimize.brentq).

    ``m(alpha) = E|A|^alpha`` is log-convex with ``m(0) = 1``; when ``E log|A| < 0`` and
    ``P(|A| > 1) > 0`` it dips below 1 and crosses 1 once more at the tail index.
    """
    lo = None
    x = 1e-3
    while x < alpha_max:  # bracket the root: find a point below 1, then one above
        v = moment(x) - 1.0
        if v < 0:
            lo = x
        elif lo is not None:
            return float(optimize.brentq(lambda s: moment(s) - 1.0, lo, x, xtol=1e-12, rtol=1e-12))
        x *= 1.5
    raise ValueError("E|A|^alpha = 1 has no positive root below alpha_max: the chain has no power-law tail"
                     " (E log|A| >= 0 or |A| <= 1 almost surely)")


def _log_curvature_density_sqrt(s: np.ndarray, batch: int) -> np.ndarray:
    # a_t = (1/b) sum_{i<=b} u_i^2 with u_i ~ N(0,1) is Gamma(b/2, scale 2/b). In s = sqrt(a) its
    # density 2 s p(s^2) has no singularity at 0 (p(a) ~ a^(-1/2) for b = 1), which keeps
    # scipy's quad fast and accurate. Returned as a logarithm so large powers cannot overflow.
    h = batch / 2.0
    return math.log(2.0) + h * math.log(h) - math.lgamma(h) + (2.0 * h - 1.0) * np.log(s) - h * s * s


def _expect_abs(fn: Callable[[np.ndarray, np.ndarray], np.ndarray], eta: float, batch: int) -> float:
    """``E fn(log|1 - eta a_t|, log density)`` integrated in ``s = sqrt(a_t)`` by scipy's quad."""
    kink = 1.0 / math.sqrt(eta)  # |1 - eta s^2| has a kink at s = 1/sqrt(eta): split the integral there

    def g(s):
        with np.errstate(divide="ignore"):
            return fn(np.log(np.abs(1.0 - eta * s * s)), _log_curvature_density_sqrt(s, batch))

    lo = integrate.quad(g, 0.0, kink, limit=100, epsabs=1e-12, epsrel=1e-10)[0]
    hi = integrate.quad(g, kink, np.inf, limit=100, epsabs=1e-12, epsrel=1e-10)[0]
    return lo + hi


def _moment_integrand(alpha: float):
    return lambda logm, logp: np.exp(alpha * logm + logp)


def kesten_moment(alpha: float, eta: float, batch: int = 1) -> float:
    """``E|1 - eta a_t|^alpha`` for ``a_t`` a chi-square with ``batch`` degrees of freedom over
    ``batch`` (the curvature of a minibatch of ``batch`` Gaussian features), by scipy quadrature."""
    eta = check_positive("eta", eta)
    batch = check_int("batch", batch, 1)
    alpha = check_range("alpha", alpha, 0.0)
    return _expect_abs(_moment_integrand(alpha), eta, batch)


def kesten_lyapunov_exponent(eta: float, batch: int = 1) -> float:
    """``E log|1 - eta a_t|``: negative iff the Kesten chain has a stationary law."""
    eta = check_positive("eta", eta)
    batch = check_int("batch", batch, 1)
    return _expect_abs(lambda logm, logp: logm * np.exp(logp), eta, batch)


@functools.lru_cache(maxsize=256)
def _tail_index_cached(eta: float, batch: int) -> float:
    # alpha_max = 100: beyond it no power law is visible at any simulated scale.
    return kesten_tail_index(lambda a: _expect_abs(_moment_integrand(a), eta, batch), alpha_max=100.0)


def tail_index(eta: float, batch: int = 1) -> float:
    """Tail index ``alpha`` of SGD on 1-D linear regression with fresh Gaussian features.

    ``x_{t+1} = (1 - eta a_t) x_t + eta b_t`` with ``a_t`` the minibatch mean of ``u^2``; the
    stationary law has ``P(|x| > s) ~ c s^(-alpha)`` where ``E|1 - eta a_t|^alpha = 1``
    (Gurbuzbalaban, Simsekli, Zhu 2021, Thm. 2; Kesten 1973).

    Args:
      eta: step size.
      batch: minibatch size ``b`` (``a_t ~ chi^2_b / b``).

    >>> round(tail_index(1.0, batch=2), 9)  # a_t exponential: E(1 - a)^2 = 1
    2.0
    """
    eta = check_positive("eta", eta)
    batch = check_int("batch", batch, 1)
    lyap = kesten_lyapunov_exponent(eta, batch)
    if not lyap < 0:
        raise ValueError(f"eta={eta!r} is out of range: E log|1 - eta a_t| = {lyap:.4g} >= 0 at batch={batch},"
                         " so the chain has no stationary law; eta must make it negative")
    return _tail_index_cached(eta, batch)


def tail_index_two_point(eta: float, a_values: tuple[float, float], probs: tuple[float, float]) -> float:
    """Tail index for a two-point curvature: ``a_t = a_values[i]`` with probability ``probs[i]``.

    ``alpha`` solves ``p_1 |1 - eta a_1|^alpha + p_2 |1 - eta a_2|^alpha = 1`` (brentq).
    """
    eta = check_positive("eta", eta)
    m = np.abs(1.0 - eta * np.asarray(a_values, dtype=float))
    p = np.asarray(probs, dtype=float)
    if p.shape != (2,) or m.shape != (2,) or np.any(p < 0) or not math.isclose(p.sum(), 1.0):
        raise ValueError(f"probs={probs!r} is out of range: two probabilities in [0, 1] summing to 1 are needed")
    if not float(p @ np.log(m)) < 0:
        raise ValueError(f"eta={eta!r} is out of range: E log|1 - eta a_t| >= 0, so the chain has no stationary law")
    return kesten_tail_index(lambda s: float(p @ m**s))


# --------------------------------------------------------------------------------------------
# Closed forms: Lookahead on the noisy quadratic model


def lookahead_variance(eta: float, a: float, sigma: float, alpha: float, k: int) -> tuple[float, float]:
    """Stationary variances ``(V_SGD, V_LA)`` on the noisy quadratic ``a (x - c)^2 / 2``, ``c ~ N(0, sigma^2)``.

    With ``r = 1 - eta a``::

        V_SGD = eta^2 a^2 sigma^2 / (1 - r^2),
        V_LA  = alpha^2 (1 - r^2k) / (alpha^2 (1 - r^2k) + 2 alpha (1 - alpha)(1 - r^k)) * V_SGD,

    ``V_LA`` the variance of the slow weights ``phi`` at the outer steps; ``V_LA <= V_SGD`` with
    equality at ``alpha = 1``. (Derived here from the linear recursion of ``phi``, which agrees
    with Zhang et al. 2019, Prop. 1; see ``proofs_check/check_ergodic.py``.)

    Args:
      eta: inner SGD step; a: curvature; sigma: standard deviation of the optimum ``c``;
      alpha: slow step in ``(0, 1]``; k: inner steps per outer step, ``k >= 1``.
    """
    eta, a = check_positive("eta", eta), check_positive("a", a)
    sigma = check_range("sigma", sigma, 0.0)
    alpha = check_range("alpha", alpha, 0.0, 1.0, low_open=True)
    k = check_int("k", k, 1)
    _check_stable(eta, a)
    r = 1.0 - eta * a
    v_sgd = eta**2 * a**2 * sigma**2 / (1.0 - r**2)
    num = alpha**2 * (1.0 - r ** (2 * k))
    v_la = num / (num + 2.0 * alpha * (1.0 - alpha) * (1.0 - r**k)) * v_sgd
    return v_sgd, v_la


# --------------------------------------------------------------------------------------------
# Estimators


def hill_estimator(samples: Array, k: int) -> float:
    """Hill's estimator of the tail index from the ``k`` largest ``|x|``.

    ``alpha_hat = 1 / mean_{i<=k} log(|x|_(i) / |x|_(k+1))`` (order statistics, largest first).
    Its standard error is ``alpha / sqrt(k)`` for independent samples; its bias comes from the
    slowly varying part of the tail and grows with ``k / n`` (Hill 1975; de Haan, Ferreira 2006).
    """
    return float(_hill_rows(Backend.to_numpy(samples).reshape(1, -1), k)[0])


def _hill_rows(samples: np.ndarray, k: int) -> np.ndarray:
    """Hill's estimator of every row of ``samples`` (shape ``(groups, n)``) in one partition call."""
    x = np.abs(np.asarray(samples, dtype=float))
    n = x.shape[-1]
    k = check_int("k", k, 1, n - 1)
    top = np.partition(x, n - k - 1, axis=-1)[:, n - k - 1:]  # the k + 1 largest, the threshold first
    thr = top[:, :1]
    if not np.all(thr > 0):
        raise ValueError(f"k={k} is out of range: the (k+1)-th largest |x| is 0; take k smaller")
    return 1.0 / np.mean(np.log(top[:, 1:] / thr), axis=-1)


def sliced_wasserstein(X: Array, Y: Array, directions: Array) -> Array:
    """Sliced 1-Wasserstein distance between equal-size samples ``X`` and ``Y``.

    ``SW_1 = mean_l W_1(<X, theta_l>, <Y, theta_l>)``; for equal sizes the 1-D ``W_1`` is the mean
    absolute difference of the sorted projections. Leading batch axes of ``X`` and ``Y`` (shape
    ``(..., n, p)``) give a batch of distances; ``directions`` is ``(p, L)`` with unit columns.

    Written here rather than with ``scipy.stats.wasserstein_distance`` (which the tests use as the
    oracle) because a permutation null needs thousands of 1-D distances: for 200 relabellings x 32
    directions x 480 points, one vectorised sort took 1.1 s against 6.1 s for the scipy loop
    (measured on a loaded shared 2-core machine; the results agree to 3e-17).
    """
    px = np.sort(np.asarray(X) @ directions, axis=-2)
    py = np.sort(np.asarray(Y) @ directions, axis=-2)
    return np.abs(px - py).mean(axis=(-2, -1))


def _unit_directions(p: int, n: int, seed: int) -> np.ndarray:
    d = np.random.default_rng(seed).standard_normal((p, n))
    return d / np.linalg.norm(d, axis=0, keepdims=True)


@dataclass
class WindowTest:
    """Sliced Wasserstein distance between two windows of a batch of chains and its permutation null."""

    distance: float
    null_quantile: float
    null_mean: float
    null_sd: float
    p_value: float


def window_distance_test(A: np.ndarray, B: np.ndarray, n_perm: int = 200, level: float = 1e-3,
                         n_directions: int = 32, seed: int = 0) -> WindowTest:
    """Compare window ``A`` on one half of the chains with window ``B`` on the other half.

    ``A`` and ``B`` have shape ``(chains, snapshots, p)``: each chain contributes a block of
    snapshots. The chains are independent, so under stationarity the blocks of ``A`` and ``B`` are
    exchangeable and the null law of the distance is the law under random relabelling of whole
    blocks (a permutation test that stays exact although snapshots within a block are correlated).
    Returns the distance, the ``1 - level`` quantile of the null (the sampling error of the
    distance at this sample size), the null mean and standard deviation and the permutation p-value.
    """
    ca, cb = A.shape[0], B.shape[0]
    if ca != cb or A.shape[1:] != B.shape[1:]:
        raise ValueError(f"A has shape {A.shape} and B has shape {B.shape}: they must match")
    dirs = _unit_directions(A.shape[-1], n_directions, seed)
    # Project once; a relabelling then only regroups the projected blocks before sorting.
    proj = np.concatenate([A, B], axis=0) @ dirs  # (2 chains, snapshots, directions)
    rng = np.random.default_rng(seed + 1)
    perm = np.argsort(rng.random((n_perm, 2 * ca)), axis=1)
    m = A.shape[1] * ca
    pa = np.sort(proj[perm[:, :ca]].reshape(n_perm, m, n_directions), axis=1)
    pb = np.sort(proj[perm[:, ca:]].reshape(n_perm, m, n_directions), axis=1)
    null = np.abs(pa - pb).mean(axis=(1, 2))
    d = float(sliced_wasserstein(A.reshape(-1, A.shape[-1]), B.reshape(-1, B.shape[-1]), dirs))
    return WindowTest(d, float(np.quantile(null, 1.0 - level)), float(null.mean()), float(null.std(ddof=1)),
                      float((1 + np.sum(null >= d)) / (n_perm + 1)))


# --------------------------------------------------------------------------------------------
# Simulators


@dataclass
class ChainResult:
    """Output of a batched chain simulation.

    Attributes:
      x: final states, shape ``(chains, d)`` (numpy).
      moments: per-chain time averages of the recorded statistics over the averaging window
        (dict of numpy arrays with leading axis ``chains``).
      trace: the recorded path of the traced chains, shape ``(steps, n_traced, d)`` or None.
      diverged, diverged_step: the chains left every stationary scale (``|x| > 1e100`` or not
        finite) at that step.
    """

    x: np.ndarray
    moments: dict[str, np.ndarray]
    trace: np.ndarray | None = None
    diverged: bool = False
    diverged_step: int | None = None


def _diverged(xp, x, bound: float = DIVERGENCE_BOUND) -> bool:
    return not bool(xp.all(xp.abs(x) < bound))  # NaN fails the comparison too


# The Kesten chain is heavy-tailed even when stationary: P(|x| > s) ~ s^-alpha reaches 1e30 with
# probability 1e-30 alpha, not negligible for alpha << 1, so its divergence bound is far higher
# (it computes no powers of x beyond u^2 x).
_KESTEN_BOUND = 1e250


@np.errstate(over="ignore", invalid="ignore")  # overflow is caught as divergence
def simulate_sgd_quadratic(eta: float, H: Array, C: Array, n_chains: int, n_steps: int, burn_in: int = 0,
                           backend: Backend | str = "numpy", seed: int = 0, n_traced: int = 0,
                           x0: Array | None = None) -> ChainResult:
    """Run ``n_chains`` chains of ``x_{t+1} = x_t - eta (H x_t + xi_t)``, ``xi_t ~ N(0, C)``, at once.

    Chains start at ``x0`` (default 0). After ``burn_in`` steps, ``n_steps`` further steps are
    averaged per chain: ``moments["xx"]`` is the time average of ``x x^T`` (chains, d, d),
    ``moments["abs"]`` of ``|x|`` and ``moments["x4"]`` of ``x^4`` (per coordinate). ``n_traced`` chains have their whole path recorded.

    Args:
      eta: step size; H: (d, d) curvature; C: (d, d) noise covariance.
      backend: numpy or torch backend (any device); seed: random seed.
    """
    be = get_backend(backend) if isinstance(backend, str) else backend
    xp = be.xp
    eta = check_positive("eta", eta)
    n_chains = check_int("n_chains", n_chains, 1)
    n_steps = check_int("n_steps", n_steps, 1)
    burn_in = check_int("burn_in", burn_in, 0)
    H = np.atleast_2d(np.asarray(H, dtype=float))
    C = np.atleast_2d(np.asarray(C, dtype=float))
    d = H.shape[0]
    if H.ndim != 2 or H.shape != (d, d) or C.shape != (d, d):
        raise ValueError(f"H has shape {H.shape} and C has shape {C.shape}: H and C must both be square "
                         "(d, d) matrices of the same size d")
    # A sample of N(0, C) as z L^T; eigh rather than cholesky so a singular C (sigma = 0) works.
    w, U = np.linalg.eigh(C)
    L = U * np.sqrt(np.clip(w, 0.0, None))
    A_T = be.asarray((np.eye(d) - eta * H).T)
    L_T = be.asarray(eta * L.T)
    rng = be.rng(seed)
    x = be.asarray(np.zeros((n_chains, d)) if x0 is None else np.array(np.broadcast_to(np.asarray(x0, float), (n_chains, d))))
    sxx = (x[:, :, None] * x[:, None, :]) * 0.0
    sab = x * 0.0
    s4 = x * 0.0
    trace = []
    total = burn_in + n_steps
    block = max(1, min(total, 2**22 // max(1, n_chains * d)))  # draw noise in blocks: fewer calls
    t = 0
    while t < total:
        nb = min(block, total - t)
        noise = rng.normal((nb, n_chains, d))
        for j in range(nb):
            x = x @ A_T - noise[j] @ L_T
            if t >= burn_in:
                sxx = sxx + x[:, :, None] * x[:, None, :]
                sab = sab + xp.abs(x)
                s4 = s4 + (x * x) ** 2
            if n_traced:
                trace.append(x[:n_traced])
            t += 1
            if (t % _CHECK_EVERY == 0 or t == total) and _diverged(xp, x):
                return ChainResult(be.to_numpy(x), {}, None, True, t)
    moments = {"xx": be.to_numpy(sxx) / n_steps, "abs": be.to_numpy(sab) / n_steps,
               "x4": be.to_numpy(s4) / n_steps}
    return ChainResult(be.to_numpy(x), moments, be.to_numpy(xp.stack(trace)) if n_traced else None)


@np.errstate(over="ignore", invalid="ignore")  # overflow is caught as divergence
def simulate_kesten(eta: float, n_chains: int, burn_in: int, n_snapshots: int, spacing: int, batch: int = 1,
                    noise: float = 1.0, backend: Backend | str = "numpy", seed: int = 0) -> ChainResult:
    """SGD on 1-D linear regression with fresh samples, ``n_chains`` chains at once.

    Each step draws a minibatch of ``batch`` features ``u ~ N(0, 1)`` and targets ``y = eps``,
    ``eps ~ N(0, noise^2)`` (optimum 0), and takes ``x <- x - eta mean(u (u x - y))``, i.e.
    ``x <- (1 - eta a_t) x + eta b_t`` with ``a_t = mean u^2``, ``b_t = mean u eps``. After
    ``burn_in`` steps, ``n_snapshots`` states are kept every ``spacing`` steps:
    ``trace`` has shape ``(n_snapshots, n_chains, 1)``.
    """
    be = get_backend(backend) if isinstance(backend, str) else backend
    xp = be.xp
    eta = check_positive("eta", eta)
    n_chains, burn_in = check_int("n_chains", n_chains, 1), check_int("burn_in", burn_in, 0)
    n_snapshots, spacing = check_int("n_snapshots", n_snapshots, 1), check_int("spacing", spacing, 1)
    batch = check_int("batch", batch, 1)
    noise = check_range("noise", noise, 0.0)
    rng = be.rng(seed)
    x = be.asarray(np.zeros(n_chains))
    snaps = []
    total = burn_in + n_snapshots * spacing
    # features and targets are drawn in blocks of steps (one generator call per block, not two per step)
    block = max(1, min(total, 2**22 // (2 * batch * n_chains)))
    t = 0
    while t < total:
        nb = min(block, total - t)
        z = rng.normal((nb, 2, batch, n_chains))
        for j in range(nb):
            u, e = z[j, 0], noise * z[j, 1]
            if batch == 1:  # x - eta u (u x - e), without the mean over a single sample
                x = x * (1.0 - eta * u[0] * u[0]) + eta * u[0] * e[0]
            else:
                x = x - eta * xp.mean(u * (u * x - e), axis=0)
            t += 1
            if t > burn_in and (t - burn_in) % spacing == 0:
                snaps.append(x)
            if t % _CHECK_EVERY == 0 and _diverged(xp, x, _KESTEN_BOUND):
                return ChainResult(be.to_numpy(x)[:, None], {}, None, True, t)
    if _diverged(xp, x, _KESTEN_BOUND):
        return ChainResult(be.to_numpy(x)[:, None], {}, None, True, total)
    return ChainResult(be.to_numpy(x)[:, None], {}, be.to_numpy(xp.stack(snaps))[:, :, None])


@np.errstate(over="ignore", invalid="ignore")  # overflow is caught as divergence
def simulate_lookahead(eta: float, a: float, sigma: float, alpha: float, k: int, n_chains: int,
                       burn_in: int, n_outer: int, backend: Backend | str = "numpy", seed: int = 0) -> ChainResult:
    """Lookahead around SGD on the noisy quadratic ``a (x - c_t)^2 / 2``, ``c_t ~ N(0, sigma^2)``.

    Per outer step: the fast weights start at ``phi``, take ``k`` SGD steps
    ``x <- x - eta a (x - c)``, then ``phi <- phi + alpha (x - phi)``. A second set of
    ``n_chains`` plain SGD chains runs alongside with the same number of gradient steps.
    After ``burn_in`` outer steps, ``n_outer`` outer steps are averaged per chain:
    ``moments["la"]`` is the time average of ``phi^2`` and ``moments["sgd"]`` of ``x_SGD^2``.
    """
    be = get_backend(backend) if isinstance(backend, str) else backend
    xp = be.xp
    eta, a = check_positive("eta", eta), check_positive("a", a)
    sigma = check_range("sigma", sigma, 0.0)
    alpha = check_range("alpha", alpha, 0.0, 1.0, low_open=True)
    k = check_int("k", k, 1)
    n_chains, burn_in, n_outer = (check_int("n_chains", n_chains, 1), check_int("burn_in", burn_in, 0),
                                  check_int("n_outer", n_outer, 1))
    rng = be.rng(seed)
    phi = be.asarray(np.zeros(n_chains))
    sgd = be.asarray(np.zeros(n_chains))
    s_la, s_sgd = phi * 0.0, sgd * 0.0
    for t in range(1, burn_in + n_outer + 1):
        c = rng.normal((k, 2, n_chains), scale=sigma)
        x = phi
        for j in range(k):
            x = x - eta * a * (x - c[j, 0])
            sgd = sgd - eta * a * (sgd - c[j, 1])
        phi = phi + alpha * (x - phi)
        if t > burn_in:
            s_la = s_la + phi * phi
            s_sgd = s_sgd + sgd * sgd
        if t % _CHECK_EVERY == 0 and (_diverged(xp, phi) or _diverged(xp, sgd)):
            return ChainResult(be.to_numpy(phi)[:, None], {}, None, True, t * k)
    if _diverged(xp, phi) or _diverged(xp, sgd):
        return ChainResult(be.to_numpy(phi)[:, None], {}, None, True, (burn_in + n_outer) * k)
    return ChainResult(be.to_numpy(phi)[:, None], {"la": be.to_numpy(s_la) / n_outer,
                                                   "sgd": be.to_numpy(s_sgd) / n_outer})


@dataclass
class MLPRun:
    """A batch of SGD runs of one small MLP (see :func:`train_mlp_chains`).

    Attributes:
      steps: the steps at which snapshots were taken, shape ``(S,)``.
      weights: flattened parameters at the snapshots, ``(S, chains, P)``.
      loss: full-batch training loss at the snapshots, ``(S, chains)``.
      grad_norm: full-batch gradient norm at the snapshots, ``(S, chains)``.
      path_length: distance travelled since step 0, ``sum_t ||theta_{t+1} - theta_t||``, ``(S, chains)``.
      theta_dot_grad: ``sum_t <theta_t, g_t>`` since step 0, ``g_t`` the minibatch gradient of the step
        (weight decay included), ``(S, chains)``.
      grad_sq: ``sum_t ||g_t||^2`` since step 0, ``(S, chains)``.
      diverged, diverged_step: the loss left every finite scale at that step.
    """

    steps: np.ndarray
    weights: np.ndarray
    loss: np.ndarray
    grad_norm: np.ndarray
    path_length: np.ndarray
    theta_dot_grad: np.ndarray | None = None
    grad_sq: np.ndarray | None = None
    diverged: bool = False
    diverged_step: int | None = None


def train_mlp_chains(n_chains: int = 64, width: int = 16, dim: int = 4, n_data: int = 256, batch: int = 8,
                     lr: float = 0.1, weight_decay: float = 1e-3, label_noise: float = 0.5, n_steps: int = 3000,
                     snapshot_every: int = 25, backend: Backend | str = "torch", seed: int = 0) -> MLPRun:
    """Train ``n_chains`` copies of a one-hidden-layer tanh MLP by minibatch SGD, all at once (torch).

    Data (drawn from ``seed``): ``X ~ N(0, I_dim)``, ``y = tanh(X w* / sqrt(dim)) + label_noise eps``.
    The model ``f(x) = w2 . tanh(W1 x + b1) + b2`` has ``P = width (dim + 2) + 1`` parameters; all
    chains start from the same initialisation and differ only in their minibatches (``batch``
    indices drawn uniformly with replacement each step). Loss ``mean (f - y)^2 / 2`` plus
    ``weight_decay |theta|^2 / 2``; update ``theta <- theta - lr grad``.

    The chains are stacked along a leading axis and their gradients come from one backward pass of
    the summed loss (each chain's loss depends only on its own parameters, so that gradient is the
    per-chain gradient).
    """
    import torch

    be = get_backend(backend) if isinstance(backend, str) else backend
    if be.name != "torch":
        be = get_backend("torch", "cpu", be.dtype)
    n_chains, width, dim = check_int("n_chains", n_chains, 2), check_int("width", width, 1), check_int("dim", dim, 1)
    n_data, batch = check_int("n_data", n_data, 1), check_int("batch", batch, 1)
    lr = check_positive("lr", lr)
    weight_decay, label_noise = check_range("weight_decay", weight_decay, 0.0), check_range("label_noise", label_noise, 0.0)
    n_steps, snapshot_every = check_int("n_steps", n_steps, 1), check_int("snapshot_every", snapshot_every, 1)
    rng = be.rng(seed)
    X = rng.normal((n_data, dim))
    w_star = rng.normal((dim,))
    y = torch.sin(2.0 * X @ w_star / math.sqrt(dim)) + rng.normal((n_data,), scale=label_noise)
    init = [rng.normal((1, width, dim), scale=1.0 / math.sqrt(dim)), rng.normal((1, width), scale=0.1),
            rng.normal((1, width), scale=1.0 / math.sqrt(width)), rng.normal((1,), scale=0.1)]
    params = [p.expand((n_chains,) + tuple(p.shape[1:])).clone().requires_grad_(True) for p in init]

    def loss_per_chain(ps, xb, yb):  # xb (R, B, dim) or (B, dim); yb (R, B) or (B,)
        W1, b1, w2, b2 = ps
        h = torch.tanh(torch.einsum("...bd,rhd->rbh", xb, W1) + b1[:, None, :])
        f = torch.einsum("rbh,rh->rb", h, w2) + b2[:, None]
        data = 0.5 * ((f - yb) ** 2).mean(dim=1)
        return data + 0.5 * weight_decay * sum((p.reshape(n_chains, -1) ** 2).sum(dim=1) for p in ps)

    def flat(ps):
        return torch.cat([p.detach().reshape(n_chains, -1) for p in ps], dim=1)

    steps, weights, losses, gnorms, paths, dots, sqs = [], [], [], [], [], [], []
    path = torch.zeros(n_chains, dtype=be.float_dtype, device=be.device)
    dot = torch.zeros_like(path)
    sq = torch.zeros_like(path)

    def snapshot(t):
        loss = loss_per_chain(params, X, y)
        g = torch.autograd.grad(loss.sum(), params)
        steps.append(t)
        weights.append(flat(params))
        losses.append(loss.detach())
        gnorms.append(torch.sqrt(sum((gi.reshape(n_chains, -1) ** 2).sum(dim=1) for gi in g)))
        paths.append(path.clone())
        dots.append(dot.clone())
        sqs.append(sq.clone())

    snapshot(0)
    for t in range(1, n_steps + 1):
        idx = rng.integers(0, n_data, (n_chains, batch))
        loss = loss_per_chain(params, X[idx], y[idx])
        g = torch.autograd.grad(loss.sum(), params)
        with torch.no_grad():
            g_sq = 0.0
            for p, gi in zip(params, g):
                dot += (p * gi).reshape(n_chains, -1).sum(dim=1)
                g_sq = g_sq + gi.reshape(n_chains, -1).pow(2).sum(dim=1)
                p -= lr * gi
            sq += g_sq
            path += lr * torch.sqrt(g_sq)
        if t % snapshot_every == 0:
            snapshot(t)
            if not bool(torch.isfinite(losses[-1]).all()) or float(losses[-1].max()) > DIVERGENCE_BOUND:
                break
    out = MLPRun(np.array(steps), be.to_numpy(torch.stack(weights)), be.to_numpy(torch.stack(losses)),
                 be.to_numpy(torch.stack(gnorms)), be.to_numpy(torch.stack(paths)),
                 be.to_numpy(torch.stack(dots)), be.to_numpy(torch.stack(sqs)))
    if not np.all(np.isfinite(out.loss)) or float(out.loss.max()) > DIVERGENCE_BOUND:
        out.diverged, out.diverged_step = True, int(out.steps[-1])
    return out


# --------------------------------------------------------------------------------------------
# Claims

# Each scalar Monte Carlo comparison is allowed Z_FW standard errors, Bonferroni-corrected over the
# (at most five) groups a claim compares: P(any |N(0,1)| > 4.5) <= 5 * 6.8e-6 = 3.4e-5.
Z_FW = 4.5


def _burn_in(rho: float, steps_per_unit: int = 1) -> int:
    # Started at 0, the variance of a linear chain with contraction rho reaches (1 - rho^(2t)) of
    # its stationary value: rho^(2B) <= 1e-6 makes that start-up bias far below the MC error.
    # rho = 0 (eta a = 1: the chain forgets its start in one step) already meets it after one step;
    # the floor of 10 steps covers it (and avoids log(0)).
    if rho <= 1e-3:  # rho^(2*10) <= 1e-60: the floor is already far past the 1e-6 target
        return 10
    return max(10, math.ceil(math.log(1e-6) / (2.0 * math.log(rho)) / steps_per_unit))


def _tau(rho: float) -> float:
    # Integrated autocorrelation time of x^2 for a Gaussian AR(1) chain with coefficient rho.
    return (1.0 + rho**2) / (1.0 - rho**2)


def _group_relative_error(groups: tuple[slice, ...]) -> Callable[[Any, Any], float]:
    """Largest relative error over groups of entries (2-norm within a group)."""

    def err(predicted: Any, measured: Any) -> float:
        p = np.asarray(predicted, dtype=float).ravel()
        m = np.asarray(measured, dtype=float).ravel()
        return float(max(np.linalg.norm(m[g] - p[g]) / np.linalg.norm(p[g]) for g in groups))

    return err


def _distance_and_relative_error(predicted: Any, measured: Any) -> np.ndarray:
    """``[|d - d_pred|, |r - r_pred| / |r|]`` for a value ``[distance, r]``: the distance (predicted 0) is
    judged absolutely against its permutation null, the stationary moment ``r`` relative to its measured
    value (so a formula predicting ``r = 0`` is judged on the same scale as any other)."""
    p = np.asarray(predicted, dtype=float).ravel()
    m = np.asarray(measured, dtype=float).ravel()
    return np.array([abs(m[0] - p[0]), abs(m[1] - p[1]) / max(abs(m[1]), 1e-300)])


def _group_tolerance(groups, measured, stderr, z) -> float:
    """Largest ``z ||se_g|| / (||m_g|| - z ||se_g||)`` over the groups: whenever the Monte Carlo error of a
    group is within ``z`` standard errors, ``||p_g|| >= ||m_g|| - z ||se_g||``, so the relative error
    ``||m_g - p_g|| / ||p_g||`` is within this bound (computed from the measurement alone)."""
    m = np.asarray(measured, dtype=float).ravel()
    s = np.asarray(stderr, dtype=float).ravel()
    out = []
    for g in groups:
        zs = z * float(np.linalg.norm(s[g]))
        out.append(zs / max(float(np.linalg.norm(m[g])) - zs, 1e-300))
    return float(max(out))


@dataclass(frozen=True)
class QuadraticParams(Params):
    eta: float = param(0.5, low=0, low_open=True, domain=(0.05, 1.0), log=True, doc="step size eta")
    a: float = param(1.0, low=0, low_open=True, domain=(0.5, 1.9), doc="curvature a (largest eigenvalue of H)")
    # sigma != 1 in the domain (and at the default): there sigma and sigma^2 coincide
    sigma: float = param(1.5, low=0, low_open=True, domain=(1.2, 3.0), log=True, doc="gradient-noise std sigma")

    def check(self) -> None:
        _check_stable(self.eta, self.a)


# ---- ergodic.ou_stationary

_OU_GROUPS = (slice(0, 1), slice(1, 2), slice(2, 3), slice(3, 4), slice(4, 10))
# Three of the five groups (V, E f = a V / 2, E f'^2 = a^2 V) are rescalings of ONE measurement, the
# time average of x^2 (same relative error, same relative standard error): they are reported for the
# reader but are one test. The independent comparisons are three: x^2, x^4 (E f^2) and the 3x3
# covariance of the second chain. The Bonferroni correction counts those three, at the same
# family-wise level as Z_FW's five groups (2 * 5 * P(N(0,1) > 4.5) = 3.4e-5).
_OU_INDEPENDENT = 3
Z_OU = float(sps.norm.isf(5 * sps.norm.sf(Z_FW) / _OU_INDEPENDENT))
_N_OU = 2000


def _ou_predicted(p: QuadraticParams) -> np.ndarray:
    ef, ef2 = stationary_loss_moments(p.eta, p.a, p.sigma)
    H, C = default_quadratic(p.a, p.sigma)
    S = stationary_covariance(p.eta, H, C)
    return np.concatenate([[stationary_variance(p.eta, p.a, p.sigma), ef, ef2,
                            stationary_grad_sq(p.eta, p.a, p.sigma)], S[np.triu_indices(3)]])


def _ou_measure(p: QuadraticParams, be: Backend, seed: int) -> Measurement:
    H, C = default_quadratic(p.a, p.sigma)
    rho = float(np.max(np.abs(1.0 - p.eta * np.linalg.eigvalsh(H))))  # slowest mode of both chains
    burn = _burn_in(rho)
    n_steps = max(500, math.ceil(30 * _tau(rho)))
    one = simulate_sgd_quadratic(p.eta, [[p.a]], [[p.sigma**2]], _N_OU, n_steps, burn, be, seed)
    mat = simulate_sgd_quadratic(p.eta, H, C, _N_OU, n_steps, burn, be, seed + 1)
    for res in (one, mat):
        if res.diverged:
            return Measurement(value=None, diverged=True, diverged_step=res.diverged_step)
    xx = one.moments["xx"][:, 0, 0]
    per_chain = np.stack([xx, p.a * xx / 2.0, (p.a**2 / 4.0) * one.moments["x4"][:, 0], p.a**2 * xx], axis=1)
    iu = np.triu_indices(3)
    per_chain = np.concatenate([per_chain, mat.moments["xx"][:, iu[0], iu[1]]], axis=1)
    # Chains are independent, so the per-chain time averages are i.i.d.: their spread gives the
    # standard error exactly, whatever the autocorrelation within a chain.
    mean, se = mean_sem(per_chain)
    checks = {"mean_loss_positive": bool(mean[1] - Z_OU * se[1] > 0),
              "gradient_does_not_vanish": bool(mean[3] - Z_OU * se[3] > 0)}
    return Measurement(value=mean, stderr=se, checks=checks,
                       info={"chains": _N_OU, "burn_in": burn, "steps_averaged": n_steps, "rho": rho})


register(Claim(
    id="ergodic.ou_stationary",
    statement=("SGD x <- x - eta (a x + xi), xi ~ N(0, sigma^2), has stationary variance "
               "V = eta sigma^2 / (a (2 - eta a)), mean loss E f = a V / 2 > 0, E f^2 = 3 a^2 V^2 / 4 and "
               "E f'(x)^2 = eta a sigma^2 / (2 - eta a) > 0 (the loss settles, the gradient does not vanish); "
               "for x <- x - eta (H x + xi), xi ~ N(0, C), the covariance solves "
               "Sigma = (I - eta H) Sigma (I - eta H)^T + eta^2 C. Predicted: [V, E f, E f^2, E f'^2, "
               "upper triangle of Sigma (3-D)]."),
    reference=("Mandt, Hoffman, Blei 2017, arXiv 1704.04289, Sec. 3 (stationary covariance of SGD); "
               "Zhang, Li, Sra, Jadbabaie 2022, arXiv 2110.06256; moment equations derived here"),
    params=QuadraticParams,
    predicted=_ou_predicted,
    measured=_ou_measure,
    tolerance=lambda p, m, be: Tolerance(
        0.0 if m.diverged else _group_tolerance(_OU_GROUPS, m.value, m.stderr, Z_OU),
        f"{Z_OU:.2f} standard errors of the per-chain time averages (2000 independent chains), Bonferroni "
        "over the 3 independent comparisons (V, E f and E f'^2 all rescale the one time average of x^2; "
        "x^4; the covariance) at family-wise level 3.4e-5; the 3x3 covariance is one group in relative Frobenius norm, its z bound "
        "from the Szekely-Bakirov tail bound for Gaussian quadratic forms; relative to the measured group norm "
        "less its z standard errors; start-up bias <= 1e-6"),
    error=_group_relative_error(_OU_GROUPS),
    mutants={
        # every stationary moment depends on sigma through sigma^2: sigma -> sqrt(sigma) puts sigma there
        "sigma for sigma^2": lambda p: _ou_predicted(p.replace(sigma=math.sqrt(p.sigma))),
        "E f^2 = a^2 V^2 / 4 (the Gaussian fourth moment 3 V^2 dropped)":
            lambda p: _ou_predicted(p) * np.r_[1.0, 1.0, 1.0 / 3.0, np.ones(7)],
    },
    closed_forms=("stationary_variance", "stationary_loss_moments", "stationary_grad_sq", "stationary_covariance"),
    sweep="eta", sweep_values=(0.1, 0.5, 1.0, 1.5),
    summary=lambda v: float(np.asarray(v, dtype=float).ravel()[0]),
    summary_label="stationary variance V",
))


# ---- ergodic.time_average_equals_ensemble

_N_ENS = 20000      # chains of the ensemble average (one time)
_N_LONG = 64        # long chains, each averaged over time
_N_BATCHES = 20     # batch means per long chain
# two-sided 1e-4 over the 4 entries, t with 63 dof (the spread of 64 independent long chains; the
# ensemble entries, with 20000 chains, are nearly normal and get the same, slightly larger, quantile)
_T_TA = float(sps.t.isf(1e-4 / 8, _N_LONG - 1))
# each long chain against the ensemble: batch means (t, 19 dof), two-sided 1e-4 over 2 x 64 comparisons
_T_BM = float(sps.t.isf(1e-4 / (2 * 2 * _N_LONG), _N_BATCHES - 1))


def _ta_predicted(p: "TimeAverageParams") -> np.ndarray:
    v = stationary_variance(p.eta, p.a, p.sigma)
    ef = stationary_loss_moments(p.eta, p.a, p.sigma)[0]
    e_abs = math.sqrt(2.0 * v / math.pi)  # E|x| of the Gaussian stationary law N(0, V)
    return np.array([ef, ef, e_abs, e_abs])


def _ta_measure(p: "TimeAverageParams", be: Backend, seed: int) -> Measurement:
    r = abs(1.0 - p.eta * p.a)
    burn = _burn_in(r)
    batch_len = max(250, math.ceil(50 * _tau(r)))  # batches much longer than the correlation time
    one = ([[p.a]], [[p.sigma**2]])
    ens = simulate_sgd_quadratic(p.eta, *one, _N_ENS + _N_LONG, 1, burn - 1, be, seed)
    if ens.diverged:
        return Measurement(value=None, diverged=True, diverged_step=ens.diverged_step)
    # The ensemble: chains 64.. at step `burn`. The long chains: chains 0..63, carried on from there
    # batch by batch (each call averages one batch per chain).
    x_ens = ens.x[_N_LONG:, 0]
    x = ens.x[:_N_LONG]
    bf, ba = [], []
    for b in range(_N_BATCHES):
        res = simulate_sgd_quadratic(p.eta, *one, _N_LONG, batch_len, 0, be, seed + 1 + b, x0=x)
        if res.diverged:
            return Measurement(value=None, diverged=True, diverged_step=burn + b * batch_len + res.diverged_step)
        bf.append(p.a * res.moments["xx"][:, 0, 0] / 2.0)
        ba.append(res.moments["abs"][:, 0])
        x = res.x
    bf, ba = np.array(bf), np.array(ba)                       # (batches, long chains)
    t_f, t_abs = bf.mean(axis=0), ba.mean(axis=0)             # each chain's time average
    se_tf_k = bf.std(axis=0, ddof=1) / math.sqrt(_N_BATCHES)  # its batch-means standard error
    se_ta_k = ba.std(axis=0, ddof=1) / math.sqrt(_N_BATCHES)
    (mt_f, mt_abs), (se_tf, se_ta) = mean_sem(np.stack([t_f, t_abs], axis=1))
    e_f, se_ef = mean_sem(p.a * x_ens**2 / 2.0)
    e_abs, se_ea = mean_sem(np.abs(x_ens))
    value = np.array([mt_f, e_f, mt_abs, e_abs], dtype=float)
    se = np.array([se_tf, se_ef, se_ta, se_ea], dtype=float)
    z_chain = np.maximum(np.abs(t_f - e_f) / np.hypot(se_tf_k, se_ef),
                         np.abs(t_abs - e_abs) / np.hypot(se_ta_k, se_ea))
    checks = {"time_equals_ensemble_loss": bool(abs(mt_f - e_f) <= _T_TA * math.hypot(se_tf, se_ef)),
              "time_equals_ensemble_abs_x": bool(abs(mt_abs - e_abs) <= _T_TA * math.hypot(se_ta, se_ea)),
              "every_chain_time_average_equals_ensemble": bool(z_chain.max() <= _T_BM)}
    return Measurement(value=value, stderr=se, checks=checks,
                       info={"long_chain_steps": _N_BATCHES * batch_len, "long_chains": _N_LONG,
                             "batches": _N_BATCHES, "ensemble_chains": _N_ENS, "burn_in": burn,
                             "largest_chain_z_vs_ensemble": float(z_chain.max()), "chain_z_threshold": _T_BM})


def _ta_tolerance(m: Measurement) -> np.ndarray:
    """Per entry ``t se / (|m| - t se)``: the relative error bound whenever each entry's Monte Carlo error
    is within ``t`` standard errors (computed from the measurement alone)."""
    v = np.abs(np.asarray(m.value, dtype=float))
    ts = _T_TA * np.asarray(m.stderr, dtype=float)
    return ts / np.maximum(v - ts, 1e-300)


@dataclass(frozen=True)
class TimeAverageParams(QuadraticParams):
    # eta * a >= 0.05 in the domain keeps each long chain (1000 correlation times) under 2e4 steps.
    eta: float = param(0.5, low=0, low_open=True, domain=(0.1, 1.0), log=True, doc="step size eta")


register(Claim(
    id="ergodic.time_average_equals_ensemble",
    statement=("For SGD on a x^2 / 2 with gradient noise N(0, sigma^2), the time averages of the loss f and of |x| "
               "along each of 64 long chains (20 batch means each) equal the ensemble averages over 20000 chains "
               "at one time: every chain within its batch-means error (t, 19 dof, two-sided 1e-4 over the 128 "
               "comparisons), and their mean within the combined error; and both equal the stationary "
               "E f = eta sigma^2 / (2 (2 - eta a)) and E|x| = sqrt(2 V / pi), V = eta sigma^2 / (a (2 - eta a)), "
               "per entry within t(63 dof, two-sided 1e-4 / 4) standard errors (~1-4%: a formula 15% off fails). "
               "Values: [mean time f, ensemble f, mean time |x|, ensemble |x|]."),
    reference=("Birkhoff ergodic theorem for a geometrically ergodic AR(1) chain (Meyn, Tweedie 2009); "
               "batch means: Flegal, Jones 2010, Ann. Statist. 38; Zhang et al. 2022, arXiv 2110.06256"),
    params=TimeAverageParams,
    predicted=_ta_predicted,
    measured=_ta_measure,
    tolerance=lambda p, m, be: Tolerance(
        0.0 if m.diverged else _ta_tolerance(m),
        "per entry t(63 dof) quantile at two-sided 1e-4 / 4 entries times its standard error (the spread of "
        "64 independent long chains' time averages; i.i.d. chains for the ensemble), relative to the measured "
        "value less that allowance; start-up bias <= 1e-6"),
    error=relative_errors,
    mutants={"15% above": lambda p: 1.15 * _ta_predicted(p),
             "15% below": lambda p: 0.85 * _ta_predicted(p),
             "E|x| = sqrt(V) (the Gaussian factor sqrt(2/pi) dropped)":
                 lambda p: _ta_predicted(p) * np.r_[1.0, 1.0, math.sqrt(math.pi / 2), math.sqrt(math.pi / 2)]},
    closed_forms=("stationary_variance", "stationary_loss_moments"),
    sweep="eta", sweep_values=(0.1, 0.5, 1.0),
    summary=lambda v: float(np.asarray(v, dtype=float).ravel()[0]),
    summary_label="time-averaged loss",
))


# ---- ergodic.heavy_tail_index

# 32000 chains, snapshots every 5 steps after 100 burn-in steps: 4.5e6 states, 26e6 chain steps. The
# group spread of Hill's estimate at eta = 0.7-1.0 and tail fraction 1% was 0.5-0.6% of alpha (measured,
# 6 runs of 40000 chains), 1.3-1.8x the i.i.d. alpha / sqrt(k): extremes cluster over a few steps, and
# snapshots 1-5 steps apart gave the same spread per chain step.
_HT_CHAINS, _HT_BURN, _HT_SNAPS, _HT_SPACING, _HT_GROUPS, _HT_FRACTION = 32000, 100, 140, 5, 40, 0.01
_T_HT = float(sps.t.isf(1e-4 / 2, _HT_GROUPS - 1))
# Bias of Hill's estimator at tail fraction 1% (the slowly varying part of the Kesten tail), relative to
# alpha: +0.02% and +0.05% at eta = 0.7 and 1.0 on 1e7 states (100000 chains, standard error 0.3%);
# -0.8, -0.4 (eta = 0.7), -0.3, +0.4 (0.85), +0.5, +0.9% (1.0) on 5.6e6 states (standard error 0.5-0.6%).
# Allowed: 1%. At eta = 0.5 (alpha = 2.9, lighter tail) the same fraction is biased by -3.8%, so the
# domain is the heavy-tailed eta >= 0.7 (alpha <= 1.9); tests/test_ergodic.py checks the bias at 10x data.
_HT_BIAS = 0.01


@dataclass(frozen=True)
class TailParams(Params):
    eta: float = param(0.7, low=0, low_open=True, domain=(0.7, 1.0), doc="step size eta")
    batch: int = param(1, low=1, high=64, integer=True, domain=(1, 1), doc="minibatch size b (a_t ~ chi2_b / b)")

    def check(self) -> None:
        lyap = kesten_lyapunov_exponent(self.eta, self.batch)
        if not lyap < 0:
            raise ValueError(f"eta={self.eta!r} is out of range: E log|1 - eta a_t| = {lyap:.4g} >= 0 at "
                             f"batch={self.batch}, so SGD has no stationary law; eta must make it negative")
        try:
            tail_index(self.eta, self.batch)
        except ValueError:
            raise ValueError(f"eta={self.eta!r} is out of range: at batch={self.batch} the tail index exceeds "
                             "100 (no power law visible); eta must be larger") from None


def _ht_measure(p: TailParams, be: Backend, seed: int) -> Measurement:
    res = simulate_kesten(p.eta, _HT_CHAINS, _HT_BURN, _HT_SNAPS, _HT_SPACING, p.batch, 1.0, be, seed)
    if res.diverged:
        return Measurement(value=None, diverged=True, diverged_step=res.diverged_step)
    # Hill's estimator on independent groups of chains, each at the same tail fraction k/n = 1%: the
    # spread of the group estimates is an honest standard error although snapshots of one chain are
    # (weakly) dependent. The groups' reciprocals 1/alpha_g (mean log-excesses, unbiased for an exact
    # Pareto tail) are averaged, then inverted: averaging the alpha_g themselves would add a Jensen bias
    # of about +1/k per group (+0.09% at k = 1120).
    snaps = res.trace[:, :, 0]  # (snapshots, chains)
    S, n_chains = snaps.shape
    if n_chains % _HT_GROUPS:
        raise AssertionError(f"{n_chains} chains do not split into {_HT_GROUPS} equal groups")
    groups = snaps.reshape(S, _HT_GROUPS, n_chains // _HT_GROUPS).transpose(1, 0, 2).reshape(_HT_GROUPS, -1)
    k = max(10, round(_HT_FRACTION * groups.shape[1]))
    gamma, se_gamma = mean_sem(1.0 / _hill_rows(groups, k))
    alpha_hat = 1.0 / float(gamma)
    se = alpha_hat * float(se_gamma) / float(gamma)  # delta method
    return Measurement(value=alpha_hat, stderr=se,
                       info={"k_per_group": k, "samples_per_group": int(groups.shape[1]), "groups": _HT_GROUPS,
                             "hill_pooled": hill_estimator(snaps, k * _HT_GROUPS)})


def _lognormal_tail_index(eta: float, batch: int) -> float:
    """``-2 E log|A| / Var log|A|``, the root of ``E|A|^alpha = 1`` if ``log|A|`` were Gaussian (a wrong formula:
    ``log|1 - eta a_t|`` is far from Gaussian). Used as a mutant."""
    m1 = kesten_lyapunov_exponent(eta, batch)
    m2 = _expect_abs(lambda logm, logp: logm * logm * np.exp(logp), eta, batch)
    return -2.0 * m1 / (m2 - m1 * m1)


register(Claim(
    id="ergodic.heavy_tail_index",
    statement=("SGD on 1-D linear regression with fresh Gaussian features, x <- (1 - eta a_t) x + eta b_t with "
               "a_t ~ chi2_b / b, has a stationary law with power-law tail P(|x| > s) ~ c s^-alpha, alpha the "
               "positive root of E|1 - eta a_t|^alpha = 1 (heavy, alpha < 2, for eta > 2b/(b+2)); Hill's "
               "estimator at tail fraction 1% on 4.5e6 simulated states (40 independent groups of chains) "
               "agrees within t(39 dof, two-sided 1e-4) standard errors plus a measured Hill bias of 1% "
               "(~3.5% in all: an index 7% off fails). Asserted for eta in [0.7, 1] (alpha 1.9-1.1); at eta = 0.5 "
               "(alpha = 2.9) Hill's estimator at this fraction is biased by -3.8%."),
    reference=("Gurbuzbalaban, Simsekli, Zhu 2021, arXiv 2006.04740, Thm. 2; Hodgkinson, Mahoney 2021, "
               "arXiv 2006.06293; Kesten 1973; Goldie 1991; Hill 1975"),
    params=TailParams,
    predicted=lambda p: tail_index(p.eta, p.batch),
    measured=_ht_measure,
    tolerance=lambda p, m, be: Tolerance(
        0.0 if m.diverged else (_T_HT * float(m.stderr) / float(m.value) + _HT_BIAS) / max(
            1.0 - _T_HT * float(m.stderr) / float(m.value) - _HT_BIAS, 1e-300),
        "t quantile (39 dof, two-sided 1e-4) times the standard error of the pooled 40 independent group "
        "Hill estimates, plus the measured Hill bias at tail fraction 1% (1%), relative to the measured "
        "alpha less that allowance"),
    error=lambda pred, meas: abs(float(meas) - float(pred)) / float(pred),
    mutants={"7% below (x 0.93)": lambda p: 0.93 * tail_index(p.eta, p.batch),
             "7% above (x 1.07)": lambda p: 1.07 * tail_index(p.eta, p.batch),
             "lognormal approximation -2 E log|A| / Var log|A|": lambda p: _lognormal_tail_index(p.eta, p.batch)},
    closed_forms=("tail_index", "kesten_tail_index"),
    sweep="eta", sweep_values=(0.7, 0.85, 1.0),
    summary_label="tail index alpha",
))


# ---- ergodic.lookahead_variance

_N_LA = 2000


@dataclass(frozen=True)
class LookaheadParams(Params):
    eta: float = param(0.5, low=0, low_open=True, domain=(0.05, 1.0), log=True, doc="inner SGD step eta")
    a: float = param(1.0, low=0, low_open=True, domain=(0.5, 1.9), doc="curvature a")
    sigma: float = param(1.5, low=0, low_open=True, domain=(1.2, 3.0), log=True, doc="std sigma of the optimum c")
    # alpha = 1 is plain SGD (V_LA = V_SGD, and every alpha-dependent formula agrees): the domain stops at 0.9
    alpha: float = param(0.5, low=0, high=1, low_open=True, domain=(0.2, 0.9), doc="slow step alpha")
    k: int = param(5, low=1, high=1000, integer=True, domain=(1, 10), doc="inner steps k")

    def check(self) -> None:
        _check_stable(self.eta, self.a)


def _la_measure(p: LookaheadParams, be: Backend, seed: int) -> Measurement:
    r = 1.0 - p.eta * p.a
    rho_la = abs(1.0 - p.alpha * (1.0 - r**p.k))  # contraction of the slow weights per outer step
    rho = max(rho_la, abs(r) ** p.k)  # and of the plain SGD chains over the same k steps
    burn = _burn_in(rho)
    n_outer = max(200, math.ceil(40 * _tau(rho)))
    res = simulate_lookahead(p.eta, p.a, p.sigma, p.alpha, p.k, _N_LA, burn, n_outer, be, seed)
    if res.diverged:
        return Measurement(value=None, diverged=True, diverged_step=res.diverged_step)
    (v_sgd, v_la), (se_sgd, se_la) = mean_sem(np.stack([res.moments["sgd"], res.moments["la"]], axis=1))
    checks = {"lookahead_not_above_sgd": bool(v_la - v_sgd <= Z_FW * math.hypot(se_sgd, se_la))}
    return Measurement(value=np.array([v_sgd, v_la]), stderr=np.array([se_sgd, se_la]), checks=checks,
                       info={"chains": _N_LA, "burn_in_outer": burn, "outer_steps_averaged": n_outer,
                             "ratio_la_over_sgd": v_la / v_sgd})


register(Claim(
    id="ergodic.lookahead_variance",
    statement=("On the noisy quadratic a (x - c)^2 / 2, c ~ N(0, sigma^2), with r = 1 - eta a: SGD's stationary "
               "variance is V_SGD = eta^2 a^2 sigma^2 / (1 - r^2) and Lookahead's slow weights (k inner steps, "
               "slow step alpha) have V_LA = alpha^2 (1 - r^2k) / (alpha^2 (1 - r^2k) + 2 alpha (1 - alpha) "
               "(1 - r^k)) V_SGD <= V_SGD. Predicted: [V_SGD, V_LA]."),
    reference=("Zhang, Lucas, Hinton, Ba 2019, arXiv 1907.08610, Prop. 1; re-derived here from the linear "
               "recursion of the slow weights (proofs_check/check_ergodic.py), which confirms it"),
    params=LookaheadParams,
    predicted=lambda p: np.array(lookahead_variance(p.eta, p.a, p.sigma, p.alpha, p.k)),
    measured=_la_measure,
    tolerance=lambda p, m, be: Tolerance(
        0.0 if m.diverged else _group_tolerance((slice(0, 1), slice(1, 2)), m.value, m.stderr, Z_FW),
        "4.5 standard errors of the per-chain time averages over 2000 independent chains, the larger of "
        "the two relative ones (relative to the measured value less its 4.5 standard errors; Bonferroni "
        "over 2); start-up bias <= 1e-6"),
    error=_group_relative_error((slice(0, 1), slice(1, 2))),
    mutants={
        "sigma for sigma^2": lambda p: np.array(lookahead_variance(p.eta, p.a, math.sqrt(p.sigma), p.alpha, p.k)),
        "V_LA = V_SGD (Lookahead leaves the stationary variance unchanged)":
            lambda p: np.full(2, lookahead_variance(p.eta, p.a, p.sigma, p.alpha, p.k)[0]),
    },
    closed_forms=("lookahead_variance",),
    sweep="alpha", sweep_values=(0.2, 0.5, 0.8, 1.0),
    summary=lambda v: float(np.asarray(v, dtype=float).ravel()[1]),
    summary_label="slow-weight variance V_LA",
))


# ---- ergodic.weights_do_not_converge

_MLP_CHAINS, _MLP_STEPS, _MLP_EVERY = 64, 1200, 20


def window_distances(snapshots: np.ndarray, steps: np.ndarray, n_windows: int = 4, z: float = Z,
                     seed: int = 0) -> dict[str, np.ndarray]:
    """Sliced Wasserstein distance between a batch of chains' law in each time window and in the last.

    ``snapshots`` has shape ``(S, chains, p)`` (states at the steps ``steps``, shape ``(S,)``); it is
    cut into ``n_windows`` equal windows in time. Window ``j`` on the first half of the chains is
    compared with the last window on the second half (disjoint chains, so the two samples are
    independent), by :func:`window_distance_test`. Returns ``start``, ``end`` (steps), ``distance``,
    ``null_mean``, ``null_sd`` and ``threshold = null_mean + z null_sd``: the distance that sampling
    error alone reaches with probability about ``P(N(0,1) > z)``.
    """
    W = np.asarray(snapshots, dtype=float)
    S, R = W.shape[0], W.shape[1]
    n_windows = check_int("n_windows", n_windows, 2, S)
    n = S // n_windows
    half = R // 2
    last = W[(n_windows - 1) * n: n_windows * n, half: 2 * half].transpose(1, 0, 2)
    out = {k: [] for k in ("start", "end", "distance", "null_mean", "null_sd", "threshold")}
    for j in range(n_windows - 1):
        A = W[j * n:(j + 1) * n, :half].transpose(1, 0, 2)
        t = window_distance_test(A, last, seed=seed + j)
        out["start"].append(steps[j * n])
        out["end"].append(steps[(j + 1) * n - 1])
        out["distance"].append(t.distance)
        out["null_mean"].append(t.null_mean)
        out["null_sd"].append(t.null_sd)
        out["threshold"].append(t.null_mean + z * t.null_sd)
    return {k: np.asarray(v) for k, v in out.items()}


@dataclass(frozen=True)
class MLPParams(Params):
    # The domain keeps lr * weight_decay >= 0.006: the slowest (weight-decay-held) directions then
    # relax within ~170 steps, well inside the 600 steps before the compared windows. At
    # lr = 0.15, weight_decay = 0.02 the law is still moving at step 1200 (the claim fails there).
    lr: float = param(0.2, low=0, low_open=True, high=1.0, domain=(0.2, 0.3), doc="SGD step size")
    weight_decay: float = param(0.03, low=0, domain=(0.03, 0.05), doc="weight decay lambda")
    batch: int = param(8, low=1, high=256, integer=True, domain=(4, 16), doc="minibatch size")


def _mlp_measure(p: MLPParams, be: Backend, seed: int) -> Measurement:
    run = train_mlp_chains(n_chains=_MLP_CHAINS, width=8, dim=2, n_data=256, batch=p.batch, lr=p.lr,
                           weight_decay=p.weight_decay, label_noise=0.3, n_steps=_MLP_STEPS,
                           snapshot_every=_MLP_EVERY, backend=be, seed=seed)
    if run.diverged:
        return Measurement(value=None, diverged=True, diverged_step=run.diverged_step)
    wd = window_distances(run.weights[1:], run.steps[1:], n_windows=4, seed=seed)
    # Windows in time (after step 0): W_0 = early, W_2 and W_3 = the last two quarters.
    S = run.weights.shape[0] - 1
    n = S // 4
    win = [slice(1 + j * n, 1 + (j + 1) * n) for j in range(4)]
    loss_a, loss_b = run.loss[win[2]].mean(axis=0), run.loss[win[3]].mean(axis=0)
    g_a, g_b = run.grad_norm[win[2]].mean(axis=0), run.grad_norm[win[3]].mean(axis=0)
    travel_a = run.path_length[win[2].stop - 1] - run.path_length[win[2].start - 1]
    travel_b = run.path_length[win[3].stop - 1] - run.path_length[win[3].start - 1]
    disp_b = np.linalg.norm(run.weights[win[3].stop - 1] - run.weights[win[3].start - 1], axis=1)
    # Chains are independent: per-chain window statistics are i.i.d., paired between windows.
    # fluctuation-dissipation over the last half: sum <theta, g> / sum ||g||^2 per chain (i.i.d. chains)
    j0, j1 = win[2].start - 1, win[3].stop - 1
    fdr, se_fdr = mean_sem((run.theta_dot_grad[j1] - run.theta_dot_grad[j0]) / (run.grad_sq[j1] - run.grad_sq[j0]))
    d_loss, se_dloss = mean_sem(loss_b - loss_a)
    gb, se_gb = mean_sem(g_b)
    d_g, se_dg = mean_sem(g_b - g_a)
    tb, se_tb = mean_sem(travel_b)
    d_t, se_dt = mean_sem(travel_b - travel_a)
    db, se_db = mean_sem(disp_b)
    checks = {
        "loss_plateaus": bool(abs(d_loss) <= Z_FW * se_dloss),
        "grad_norm_bounded_away_from_zero": bool(gb - Z_FW * se_gb > 0 and d_g >= -Z_FW * se_dg),
        # Moving: the distance travelled in the last window and the displacement across it are both
        # bounded away from 0. (Equal speed in the last two windows is not asserted: at some domain
        # points, e.g. lr = 0.27, weight_decay = 0.048, batch = 6, it still drifts by ~10% = 5 se.)
        "weights_keep_moving": bool(tb - Z_FW * se_tb > 0 and db - Z_FW * se_db > 0),
    }
    return Measurement(
        value=np.array([float(wd["distance"][-1]), float(fdr)]),
        stderr=np.array([float(wd["null_sd"][-1]), float(se_fdr)]), checks=checks,
        info={"threshold": float(wd["threshold"][-1]), "null_mean": float(wd["null_mean"][-1]),
              "fdr_over_lr": float(fdr) / p.lr,
              "law_moved_from_early_window": bool(wd["distance"][0] > wd["threshold"][0]),
              "loss_below_init": bool(loss_b.mean() < run.loss[0].mean()),
              "window_distances_to_last": wd["distance"], "window_thresholds": wd["threshold"],
              "window_starts": wd["start"], "loss_init": float(run.loss[0].mean()),
              "loss_last_windows": [float(loss_a.mean()), float(loss_b.mean())],
              "grad_norm_last_windows": [float(g_a.mean()), float(g_b.mean())],
              "travel_last_windows": [float(travel_a.mean()), float(tb)],
              "travel_change_in_se": float(d_t / se_dt),
              "displacement_last_window": float(db), "chains": _MLP_CHAINS, "steps": _MLP_STEPS})


register(Claim(
    id="ergodic.weights_do_not_converge",
    statement=("A one-hidden-layer tanh MLP (8 units) trained by minibatch SGD with weight decay on noisy "
               "synthetic regression (64 chains from one initialisation): the loss plateaus, the full-batch "
               "gradient norm stays bounded away from zero, the weights keep moving (the distance travelled and "
               "the displacement over the last quarter are both bounded away from 0; constant speed is not "
               "asserted), and the weights' law converges: the sliced Wasserstein distance between the third and "
               "last quarter of 1200 steps (disjoint chains) is within its sampling error (permutation null mean "
               "+ 4 sd), and over the last half the stationary fluctuation-dissipation relation "
               "E<theta, g> = (lr/2) E||g||^2 holds (g the minibatch gradient of the step, weight decay included; "
               "within 4.5 standard errors over chains). Predicted: [distance 0, lr/2]. Holds once "
               "lr * weight_decay is large enough for the law to settle within the run (domain lr * weight_decay "
               ">= 0.006)."),
    reference=("Zhang, Li, Sra, Jadbabaie 2022, arXiv 2110.06256, Sec. 3-4 (invariant measure of SGD); sliced "
               "Wasserstein: Bonneel, Rabin, Peyre, Pfister 2015"),
    params=MLPParams,
    predicted=lambda p: np.array([0.0, sgd_fluctuation_dissipation(p.lr)]),
    measured=_mlp_measure,
    tolerance=lambda p, m, be: Tolerance(
        0.0 if m.diverged else np.array([float(m.info["threshold"]),
                                         Z_FW * float(m.stderr[1]) / abs(float(m.value[1]))]),
        "distance: the permutation null (200 relabellings of whole chains between the two windows), its mean "
        "+ 4 sd, the size sampling error alone reaches with probability about 3e-5; fluctuation-dissipation "
        "ratio: 4.5 standard errors over 64 i.i.d. chains, relative to the measured ratio"),
    error=_distance_and_relative_error,
    mutants={"E<theta, g> = lr E||g||^2 (the factor 1/2 dropped)": lambda p: np.array([0.0, p.lr]),
             "E<theta, g> = 0 (weights at a stationary point)": lambda p: np.array([0.0, 0.0])},
    closed_forms=("sgd_fluctuation_dissipation",),
    sweep="lr", sweep_values=(0.2, 0.25, 0.3),
    summary=lambda v: float(np.asarray(v, dtype=float).ravel()[0]),
    summary_label="sliced W1 between last windows",
    backends=("torch",),
))


# ---- ergodic.sphere_invariant_measure


def norm_map_contraction(eta: float, wd: float) -> float:
    """Contraction of the squared-norm map of SGD with weight decay on a scale-invariant loss.

    With ``g`` orthogonal to ``w`` and ``||g|| = G / ||w||`` (scale invariance), ``x = ||w||^2``
    follows ``x' = (1 - eta wd)^2 x + eta^2 G^2 / x``; at its fixed point the map's slope is
    ``2 (1 - eta wd)^2 - 1`` whatever ``G``, so the norm settles geometrically at rate
    ``|2 (1 - eta wd)^2 - 1|`` (< 1 for ``0 < eta wd < 1``), after which the direction moves at a
    fixed effective learning rate and its chain has an invariant law. (Derived here; see
    ``proofs_check/check_ergodic.py``.)
    """
    eta, wd = check_positive("eta", eta), check_positive("wd", wd)
    k = eta * wd
    if not k < 1:
        raise ValueError(f"eta*wd={k!r} is out of range: eta*wd must be in (0, 1)")
    return abs(2.0 * (1.0 - k) ** 2 - 1.0)


_SPH_D, _SPH_CHAINS, _SPH_EVERY = 4, 128, 15
# one chain's time average against the ensemble: batch means (t, 19 dof), two-sided 1e-4 over 2 observables
_T_BM_SPH = float(sps.t.isf(1e-4 / 4, _N_BATCHES - 1))


@dataclass(frozen=True)
class SphereParams(Params):
    eta: float = param(0.15, low=0, low_open=True, domain=(0.1, 0.2), doc="learning rate eta")
    wd: float = param(0.05, low=0, low_open=True, domain=(0.04, 0.1), doc="weight decay lambda")
    noise: float = param(0.5, low=0, low_open=True, domain=(0.3, 1.0), doc="isotropic gradient-noise scale sigma")

    def check(self) -> None:
        if not self.eta * self.wd < 1:
            raise ValueError(f"eta*wd={self.eta * self.wd!r} is out of range: eta*wd must be in (0, 1)")


def sphere_chains(eta: float, wd: float, noise: float, n_chains: int, n_steps: int, d: int = _SPH_D,
                  backend: Backend | str = "numpy", seed: int = 0):
    """SGD with weight decay on the scale-invariant Rayleigh toy ``L(w) = F(w/||w||)``,
    ``F(u) = u^T A u / 2``, ``A = diag(linspace(0, 1, d))``, with isotropic tangent gradient noise
    of scale ``noise``: ``n_chains`` runs from one start ``w0 = (1, ..., 1)/sqrt(d)``, every step
    recorded. The simulator is :func:`solvable.models.sphere.simulate` (``mode="sgd"``)."""
    from . import sphere  # the sphere module owns the scale-invariant simulator

    be = get_backend(backend) if isinstance(backend, str) else backend
    a = sphere.rayleigh_spectrum(0.0, 1.0, d)
    w0 = np.full((n_chains, d), 1.0 / math.sqrt(d))
    return sphere.simulate(a, w0, n_steps, mode="sgd", eta=eta, wd=wd, noise=noise, noise_kind="isotropic",
                           record_every=1, keep_directions=True, backend=be, seed=seed)


def _sphere_measure(p: SphereParams, be: Backend, seed: int) -> Measurement:
    # Burn-in: the norm's distance to equilibrium shrinks by the map's contraction per step; 1e-4 of
    # the start-up gap is far below the fluctuations. The direction relaxes faster (rate elr * gap).
    burn = max(600, math.ceil(math.log(1e-4) / math.log(norm_map_contraction(p.eta, p.wd))))
    n_steps = 2 * burn
    run = sphere_chains(p.eta, p.wd, p.noise, _SPH_CHAINS + 1, n_steps, backend=be, seed=seed)
    if bool(np.any(run.diverged)):
        return Measurement(value=None, diverged=True, diverged_step=int(np.max(run.diverged_step)))
    dirs = be.to_numpy(run.directions)            # (steps + 1, chains, d)
    loss = be.to_numpy(run.loss)                  # (steps + 1, chains)
    sq = be.to_numpy(run.sq_norm)
    stat = slice(burn, n_steps + 1, _SPH_EVERY)   # stationary half, thinned for the window test
    wd = window_distances(dirs[stat, 1:], run.steps[stat], n_windows=2, seed=seed)
    # Time averages along chain 0 over the stationary half (batch means), ensemble averages over
    # chains 1..N at the last step (independent chains).
    t_loss, se_tl = batch_means(loss[burn:, 0], _N_BATCHES)
    t_sq, se_ts = batch_means(sq[burn:, 0], _N_BATCHES)
    e_loss, se_el = mean_sem(loss[-1, 1:])
    e_sq, se_es = mean_sem(sq[-1, 1:])
    ang = be.to_numpy(run.angle)[burn:, 1:]
    angle = ang.mean(axis=0)
    m_angle, se_angle = mean_sem(angle)
    # the norm's stationarity, per step: E[-log cos theta] over the stationary half, per chain (i.i.d.)
    lc, se_lc = mean_sem(-np.log(np.cos(ang)).mean(axis=0))
    checks = {
        "time_equals_ensemble_loss": bool(abs(t_loss - e_loss) <= _T_BM_SPH * math.hypot(se_tl, se_el)),
        "time_equals_ensemble_sq_norm": bool(abs(t_sq - e_sq) <= _T_BM_SPH * math.hypot(se_ts, se_es)),
        "direction_keeps_moving": bool(m_angle - Z_FW * se_angle > 0),
    }
    return Measurement(
        value=np.array([float(wd["distance"][-1]), float(lc)]),
        stderr=np.array([float(wd["null_sd"][-1]), float(se_lc)]), checks=checks,
        info={"threshold": float(wd["threshold"][-1]), "null_mean": float(wd["null_mean"][-1]),
              "burn_in": burn, "steps": n_steps, "chains": _SPH_CHAINS,
              "loss_time_vs_ensemble": [float(t_loss), float(e_loss)],
              "sq_norm_time_vs_ensemble": [float(t_sq), float(e_sq)],
              "mean_angle_per_step": float(m_angle)})


register(Claim(
    id="ergodic.sphere_invariant_measure",
    statement=("SGD with weight decay lambda on the scale-invariant Rayleigh loss F(w/|w|), F(u) = u^T A u / 2 "
               "in d = 4, with isotropic tangent gradient noise (128 chains, one start): after the norm settles "
               "(it contracts at rate |2 (1 - eta lambda)^2 - 1| per step) the direction's law is stationary "
               "(sliced Wasserstein between the two halves of the stationary period, disjoint chains, within "
               "its permutation-null mean + 4 sd), the direction keeps moving, time averages of the loss "
               "and of |w|^2 along one chain equal ensemble averages, and the angle theta between successive "
               "weights has the stationary E[-log cos theta] = -log(1 - eta lambda) of the norm balance "
               "|w'| cos theta = (1 - eta lambda)|w| (exact per step; within 4.5 standard errors over chains, "
               "~0.3%; the small-angle E theta^2 / 2 = eta lambda is 0.2-0.5% off, not told apart at every "
               "domain point). Predicted: [distance 0, -log(1 - eta lambda)]."),
    reference=("Zhang, Li, Sra, Jadbabaie 2022, arXiv 2110.06256; Wan, Zhu, Zhang, Sun 2021, arXiv 2006.08419 "
               "(spherical motion dynamics); Li, Arora 2020, arXiv 1910.07454; simulator: solvable.models.sphere"),
    params=SphereParams,
    predicted=lambda p: np.array([0.0, stationary_log_cos_angle(p.eta, p.wd)]),
    measured=_sphere_measure,
    tolerance=lambda p, m, be: Tolerance(
        0.0 if m.diverged else np.array([float(m.info["threshold"]),
                                         Z_FW * float(m.stderr[1]) / abs(float(m.value[1]))]),
        "distance: the permutation null (200 relabellings of whole chains between the two windows), its mean "
        "+ 4 sd, the size sampling error alone reaches with probability about 3e-5; E[-log cos theta]: 4.5 "
        "standard errors over 128 i.i.d. chains, relative to the measured value"),
    error=_distance_and_relative_error,
    mutants={"the direction settles (angular update -> 0)": lambda p: np.array([0.0, 0.0]),
             "(1 - eta wd) not squared in the norm balance (-log cos theta = -log(1 - eta wd)/2)":
                 lambda p: np.array([0.0, -0.5 * math.log1p(-p.eta * p.wd)])},
    closed_forms=("stationary_log_cos_angle",),
    sweep="wd", sweep_values=(0.04, 0.07, 0.1),
    summary=lambda v: float(np.asarray(v, dtype=float).ravel()[0]),
    summary_label="sliced W1 between stationary windows",
))
