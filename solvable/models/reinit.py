"""Re-initialization: a solvable proxy on a two-layer diagonal linear network.

Model (as in :mod:`solvable.models.dln`): ``beta = u*u - v*v``, loss ``||X beta - y||^2 / (2n)``,
``g = X^T (X beta - y) / n``, gradient flow ``u' = -2 u g``, ``v' = +2 v g``. From any positive start
``(u0, v0)`` the flow keeps ``u_i v_i = u0_i v0_i`` and gives ``u = u0 e^{-2G}``, ``v = v0 e^{2G}``
(``G = int g``), so with ``a_i = u0_i v0_i`` and the tilt ``phi_i = log(u0_i / v0_i)``

    beta_i(t) = 2 a_i sinh(phi_i - 4 G_i(t)),      -4 G(t) in range(X^T).

An interpolating limit therefore satisfies the KKT conditions of

    min_beta  Q_a(beta) - <phi, beta>   s.t.  X beta = y,     Q_a(beta) = sum_i a_i q(beta_i / a_i),

``q`` the function of :func:`solvable.models.dln.q` (``grad = asinh(beta / (2a)) - phi``, zero at
``beta(0) = u0^2 - v0^2``: a Bregman divergence from the start). The balanced start ``u0 = v0 =
alpha`` is the case ``phi = 0`` (Woodworth et al. 2020); unbalanced starts give the per-coordinate
scale ``a = u0 v0`` and the tilt ``phi`` (Azulay et al. 2021, for ``beta = u v`` the conserved
quantity is ``u^2 - v^2`` instead; the ``u^2 - v^2`` parametrisation of ``dln`` conserves ``u v``).

Re-initialization recipe: train from ``u = v = alpha`` to interpolation (phase 1, ending at the
``dln`` solution ``beta1 = argmin Q_alpha``, where ``u1 v1 = alpha^2`` and ``u1^2 - v1^2 = beta1``,
so ``u1^2 = (beta1 + sqrt(beta1^2 + 4 alpha^4)) / 2``), re-initialize the second factor
``v <- alpha_new``, train again (phase 2). Phase 2 starts unbalanced: it ends at the tilted
solution with ``a = u1 alpha_new``, ``phi = log(u1 / alpha_new)``.

Symbols: ``alpha`` initial scale, ``alpha_new`` the re-initialized factor's value, ``n, d, k``
samples, dimension, teacher sparsity, ``c`` the largest relative change of a weight per GD step.

References:
  Woodworth et al., 2020. "Kernel and rich regimes in overparametrized models." COLT, arXiv 1906.05827.
  Azulay, Moroshko, Nacson, Woodworth, Srebro, Globerson, Soudry, 2021. "On the implicit bias of initialization shape: beyond infinitesimal mirror descent." ICML, arXiv 2102.09769.
  Alabdulmohsin, Maennel, Keysers, 2021. "The impact of reinitialization on generalization in convolutional neural networks." arXiv 2109.00267.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import dln
from ..backend import Backend
from ..checks import check_range
from ..claims import Claim, Measurement, Params, Tolerance, param, register

__all__ = ["tilted_bias_solution", "phase1_factors", "reinit_prediction", "gd_from"]


def tilted_bias_solution(X, y, a, phi, *, rtol: float = 1e-11) -> np.ndarray:
    """``argmin Q_a(beta) - <phi, beta>`` s.t. ``X beta = y`` through the dual: ``beta(mu) = 2 a
    sinh(X^T mu + phi)`` with ``mu`` minimising ``sum_i 2 a_i cosh((X^T mu)_i + phi_i) - y^T mu``."""
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    a = np.broadcast_to(np.asarray(a, dtype=float), (X.shape[1],))
    phi = np.broadcast_to(np.asarray(phi, dtype=float), (X.shape[1],))
    if not np.all(a > 0):
        raise ValueError("a contains a value <= 0: every a = u0 v0 must be in (0, inf)")
    return dln.dual_solve(X, y, a, phi, rtol=rtol)


def phase1_factors(beta1, alpha: float):
    """The factors at the end of phase 1 from its limit: ``u v = alpha^2``, ``u^2 - v^2 = beta1``."""
    alpha = check_range("alpha", alpha, 0.0, None, low_open=True)
    beta1 = np.asarray(beta1, dtype=float)
    u2 = (beta1 + np.sqrt(beta1 ** 2 + 4 * alpha ** 4)) / 2
    u = np.sqrt(u2)
    return u, alpha ** 2 / u


def reinit_prediction(X, y, alpha: float, alpha_new: float) -> np.ndarray:
    """Where phase 2 ends after re-initializing ``v <- alpha_new`` at the end of phase 1."""
    alpha_new = check_range("alpha_new", alpha_new, 0.0, None, low_open=True)
    beta1 = dln.implicit_bias_solution(X, y, alpha)
    u1, _ = phase1_factors(beta1, alpha)
    return tilted_bias_solution(X, y, u1 * alpha_new, np.log(u1 / alpha_new))


def gd_from(be: Backend, X, y, u, v, c: float, max_steps: int = 20000, rtol_loss: float = 1e-14):
    """Batched GD on ``beta = u^2 - v^2`` from ``(u, v)`` (``(B, d)``; ``X (B, n, d)``, ``y (B, n)``)
    with the adaptive step ``eta = min(c / max_i |2 g_i|, 1 / (2 Lambda))``, ``Lambda = 2 ||g||_inf +
    4 max_i (u^2 + v^2)_i lambda_max(X^T X / n)`` (relative change per step <= 2 c, stable).
    Runs until ``L <= rtol_loss L(0)`` for every run. Returns ``u, v, loss, steps, diverged``."""
    xp = be.xp
    X, y, u, v = (be.asarray(t) for t in (X, y, u, v))
    n = X.shape[1]
    lam = be.asarray(np.linalg.eigvalsh(np.einsum("bni,bnj->bij", be.to_numpy(X), be.to_numpy(X)) / n)[:, -1])

    def resid(u, v):
        return xp.sum(X * (u * u - v * v)[:, None, :], axis=-1) - y

    r = resid(u, v)
    L0 = xp.sum(r * r, axis=-1) / (2 * n)
    steps = 0
    for steps in range(1, max_steps + 1):
        g = xp.sum(X * r[:, :, None], axis=1) / n
        gmax = xp.max(xp.abs(g), axis=-1)
        Lam = 2 * gmax + 4 * xp.max(u * u + v * v, axis=-1) * lam
        eta = xp.minimum(c / (2 * gmax + 1e-300), 1 / (2 * Lam))[:, None]
        u, v = u - 2 * eta * u * g, v + 2 * eta * v * g
        r = resid(u, v)
        loss = xp.sum(r * r, axis=-1) / (2 * n)
        if not bool(xp.all(xp.isfinite(loss))):
            return u, v, loss, steps, True
        if bool(xp.all(loss <= rtol_loss * L0)):
            break
    return u, v, loss, steps, False


# --------------------------------------------------------------------------------------------
# Claim


@dataclass(frozen=True)
class DLNShapeParams(Params):
    alpha: float = param(0.3, low=0.05, high=10.0, domain=(0.2, 0.6), log=True, doc="initial scale alpha")
    alpha_new: float = param(1.0, low=0.05, high=10.0, domain=(0.8, 2.0), log=True,
                             doc="value the second factor v is re-initialized to")
    n: int = param(8, low=2, high=100, integer=True, domain=(6, 10), doc="samples n")
    d: int = param(16, low=3, high=200, integer=True, domain=(14, 20), doc="dimension d (> n)")
    k: int = param(2, low=1, high=20, integer=True, domain=(1, 3), doc="teacher sparsity k")
    batch: int = param(3, low=1, high=64, integer=True, domain=(2, 4), doc="datasets simulated together")
    seed: int = param(0, low=0, high=2**31 - 1, integer=True, domain=(0, 10000), doc="data seed")
    c: float = param(0.005, low=1e-4, high=0.1, domain=(0.003, 0.008), log=True,
                     doc="largest relative weight change per GD step (discretisation O(c))")

    def check(self) -> None:
        if self.n >= self.d:
            raise ValueError(f"n={self.n} is out of range: n must be < d={self.d} (overparametrised)")
        if self.k > self.d:
            raise ValueError(f"k={self.k} is out of range: k must be in [1, d={self.d}]")


def _data(p: DLNShapeParams):
    return dln.make_data(p.n, p.d, p.k, p.seed, batch=p.batch)


def _predict(p: DLNShapeParams, fn) -> np.ndarray:
    X, y, _ = _data(p)
    return np.concatenate([fn(X[b], y[b]) for b in range(p.batch)])


def _tilt_dropped(X, y, p):
    beta1 = dln.implicit_bias_solution(X, y, p.alpha)
    u1, _ = phase1_factors(beta1, p.alpha)
    return dln.implicit_bias_solution(X, y, np.sqrt(u1 * p.alpha_new))


def _measure(p: DLNShapeParams, be: Backend, seed: int) -> Measurement:
    X, y, _ = _data(p)
    ones = np.ones((p.batch, p.d))
    u1, v1, L1, s1, div1 = gd_from(be, X, y, p.alpha * ones, p.alpha * ones, p.c)
    # drift of the flow's invariant u v over phase 1 (first order in c for GD)
    uv1 = be.to_numpy(u1) * be.to_numpy(v1)
    drift1 = float(np.max(np.abs(0.5 * np.log(uv1) - math.log(p.alpha))))
    v_new = p.alpha_new * be.asarray(ones)
    u2, v2, L2, s2, div2 = gd_from(be, X, y, u1, v_new, p.c)
    if div1 or div2:
        return Measurement(value=np.full(p.batch * p.d, np.nan), diverged=True, diverged_step=s1 + s2)
    u2n, v2n = be.to_numpy(u2), be.to_numpy(v2)
    drift2 = float(np.max(np.abs(0.5 * np.log(u2n * v2n) - 0.5 * np.log(be.to_numpy(u1) * p.alpha_new))))
    beta = u2n ** 2 - v2n ** 2
    resid = max(dln._residual_term(X[b], beta[b], float(be.to_numpy(L2)[b])) for b in range(p.batch))
    # per-dataset relative bounds also bound the relative 2-norm error over the stacked datasets
    return Measurement(
        value=beta.ravel(),
        checks={"drift_below_0.1": max(drift1, drift2) < 0.1},
        info={"steps_phase1": s1, "steps_phase2": s2, "drift1": drift1, "drift2": drift2, "residual_term": resid,
              "beta_norm": float(np.linalg.norm(beta))})


def _tolerance(p: DLNShapeParams, m: Measurement, be: Backend) -> Tolerance:
    if m.diverged:
        return Tolerance(0.0, "diverged")
    # phase 1's end is off the flow's by its invariant drift (relative change of u1 <= 2 drift1 via the
    # dln endpoint sensitivity 2), which moves both a = u1 alpha_new and phi = log(u1/alpha_new) of phase 2;
    # phase 2 adds its own drift; each enters the tilted endpoint with sensitivity <= 2
    tol = 2 * (2 * m.info["drift1"]) * 2 + 2 * m.info["drift2"] + m.info["residual_term"] + be.roundoff(100 * p.d)
    return Tolerance(tol, "first-order GD error read off both phases' drift of the flow invariant u v "
                          "(sensitivity 2 per log-scale, phase-1 error entering scale and tilt), plus the "
                          "unconverged residual sqrt(2nL)/(s_min ||beta||)")


register(Claim(
    id="reinit.dln_shape",
    statement=("Diagonal linear network beta = u*u - v*v trained by GD from u = v = alpha to interpolation, "
               "then its second factor re-initialized to v = alpha_new and trained again, ends at argmin "
               "Q_a(beta) - <phi, beta> s.t. X beta = y with a = u1 alpha_new, phi = log(u1/alpha_new), "
               "u1^2 = (beta1 + sqrt(beta1^2 + 4 alpha^4))/2, beta1 = argmin Q_alpha: re-initialization "
               "changes the initialization's shape (scale and tilt), not just its scale."),
    reference=("derived here from the flow; Woodworth et al. 2020, arXiv 1906.05827; Azulay et al. 2021, "
               "arXiv 2102.09769 (unbalanced initialization shape); Alabdulmohsin et al. 2021, arXiv 2109.00267"),
    params=DLNShapeParams,
    predicted=lambda p: _predict(p, lambda X, y: reinit_prediction(X, y, p.alpha, p.alpha_new)),
    measured=_measure,
    tolerance=_tolerance,
    mutants={"balanced init at alpha_new": lambda p: _predict(
                 p, lambda X, y: dln.implicit_bias_solution(X, y, p.alpha_new)),
             "tilt dropped (balanced at sqrt(u1 alpha_new))": lambda p: _predict(
                 p, lambda X, y: _tilt_dropped(X, y, p)),
             "min-l2 interpolator": lambda p: _predict(p, dln.min_l2_interpolator),
             "re-initialization has no effect (phase-1 end)": lambda p: _predict(
                 p, lambda X, y: dln.implicit_bias_solution(X, y, p.alpha))},
    closed_forms=("reinit_prediction", "tilted_bias_solution", "phase1_factors"),
    sweep="alpha_new", sweep_values=(0.5, 1.0, 2.0),
))
