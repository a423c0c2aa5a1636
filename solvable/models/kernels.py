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
  Vyas, Bansal, Nakkiran 2022, arXiv 2206.10012 (trained networks vs their empirical NTK;
  :func:`network_vs_ntk_run`, claim ``kernels.network_beats_ntk``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import brentq

from ..backend import Backend, get_backend
from ..checks import check_int, check_range
from ..claims import Claim, Measurement, Params, Tolerance, max_abs_error, param, register, relative_errors
from ..stats import loglog_slope, mean_sem

__all__ = [
    "spectrum", "solve_kappa", "learnabilities", "eigenlearning_error", "data_scaling_exponent",
    "krr_learning_curve", "ntk_drift_run", "jackknife_slope", "drift_exponents", "LAZY_ALPHAS",
    "two_layer_entk", "network_vs_ntk_run", "network_beats_ntk_outcomes",
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


# --------------------------------------------------------------------------------------------
# The drift of the empirical NTK during training, and lazy training


def _mlp(params: tuple, x: Any, act) -> Any:
    """One hidden layer in NTK parametrisation: ``f(x) = sqrt(1/w) a . act(W x / sqrt(d))`` (one example
    or a batch ``(n, d)``); ``params = (W, a)`` with ``W`` ``(w, d)``, ``a`` ``(w,)``, all ``N(0, 1)`` at init."""
    W, a = params
    h = x @ W.T / math.sqrt(W.shape[-1])
    return act(h) @ a / math.sqrt(W.shape[0])


def _entk(params: tuple, x: Any, act) -> Any:
    """Empirical NTK ``J J^T`` of :func:`_mlp` on ``x`` ``(n, d)`` by ``torch.func.jacrev``."""
    import torch
    from torch.func import jacrev

    J = jacrev(_mlp)(params, x, act)
    J = torch.cat([j.reshape(x.shape[0], -1) for j in J], dim=1)
    return J @ J.T


def _teacher_data(seeds: int, n: int, d: int, gen, dtype, device):
    import torch

    X = torch.randn(seeds, n, d, generator=gen, dtype=dtype, device=device)
    u = torch.randn(seeds, d, 1, generator=gen, dtype=dtype, device=device)
    y = torch.tanh(2.0 * (X @ u)[..., 0] / math.sqrt(d))
    return X, y


def ntk_drift_run(width: int, seeds: int, n: int, d: int, steps: int, lr: float, alphas: Any = (1.0,),
                  activation: str = "tanh", seed: int = 0, device: str = "cpu", dtype=None) -> dict[str, np.ndarray]:
    """Train ``seeds`` networks of one width (``torch.func.vmap`` over stacked parameters and data) by
    full-batch gradient descent on ``L = (1/(2 n alpha^2)) sum_i (alpha (f(x_i) - f_0(x_i)) - y_i)^2``,
    the lazy scaling of Chizat, Oyallon, Bach (``alpha = 1``: ordinary training of the centred model).

    Returns per-seed (and per ``alpha``) arrays: ``drift = ||K_T - K_0||_F / ||K_0||_F`` of the empirical NTK
    on the training inputs, ``distance`` the kernel distance ``1 - cos(K_T, K_0)``, ``lin_error`` the
    relative distance ``||alpha (f_T - f_0) - u_T|| / ||y||`` between the trained model and its
    linearisation, trained alike (``u_{t+1} = u_t - (lr/n) K_0 (u_t - y)`` on the training inputs:
    gradient descent on the linear model ``alpha J_0 (theta - theta_0)``, whose dynamics do not depend
    on ``alpha``), and ``loss`` at the end. Data: ``x ~ N(0, I_d)``, ``y = tanh(2 u.x / sqrt(d))`` with a
    random unit-scale ``u`` per seed.
    """
    import torch
    from torch.func import grad, vmap

    width = check_int("width", width, 1, None)
    seeds = check_int("seeds", seeds, 2, None)
    act = {"tanh": torch.tanh, "relu": torch.relu}[activation]
    dtype = dtype or torch.float64
    gen = torch.Generator(device=device).manual_seed(check_int("seed", seed, 0, None))
    X, y = _teacher_data(seeds, n, d, gen, dtype, device)
    p0 = (torch.randn(seeds, width, d, generator=gen, dtype=dtype, device=device),
          torch.randn(seeds, width, generator=gen, dtype=dtype, device=device))
    al = torch.as_tensor(np.asarray(alphas, dtype=float), dtype=dtype, device=device)
    A = al.numel()
    # one program over (alpha, seed): parameters tiled along a leading alpha axis
    tile = lambda t: t.unsqueeze(0).expand(A, *t.shape).reshape(A * seeds, *t.shape[1:])  # noqa: E731
    p0s, Xs, ys = tuple(tile(t) for t in p0), tile(X), tile(y)
    a_s = al.repeat_interleave(seeds)

    def loss(p, q, x, yy, a):
        out = a * (_mlp(p, x, act) - _mlp(q, x, act))
        return 0.5 * torch.mean((out - yy) ** 2) / a**2

    g = vmap(grad(loss))
    p = p0s
    for _ in range(steps):
        p = tuple(t - lr * dt for t, dt in zip(p, g(p, p0s, Xs, ys, a_s)))
    ntk = vmap(_entk, (0, 0, None))
    K0 = ntk(p0, X, act)
    KT = ntk(tuple(t.reshape(A, seeds, *t.shape[1:])[0] for t in p), X, act)  # the first alpha's runs
    drift = (KT - K0).flatten(1).norm(dim=1) / K0.flatten(1).norm(dim=1)
    cos = (KT * K0).flatten(1).sum(1) / (KT.flatten(1).norm(dim=1) * K0.flatten(1).norm(dim=1))
    u = torch.zeros_like(y)
    for _ in range(steps):
        u = u - lr / n * (K0 @ (u - y)[..., None])[..., 0]
    f = vmap(_mlp, (0, 0, None))
    out = (a_s[:, None] * (f(p, Xs, act) - f(p0s, Xs, act))).reshape(A, seeds, n)
    lin = (out - u).norm(dim=-1) / y.norm(dim=-1)
    lossT = ((out - y) ** 2).mean(-1)
    to = lambda t: t.detach().cpu().double().numpy()  # noqa: E731
    return {"drift": to(drift), "distance": to(1 - cos), "lin_error": to(lin), "loss": to(lossT)}


def jackknife_slope(x: Any, runs: Any) -> tuple[float, float]:
    """Log-log slope of the mean over runs (``runs`` ``(S, len(x))``) and its leave-one-run-out jackknife
    standard error (the spread over independent runs, which the residual standard error misses)."""
    runs = np.asarray(runs, dtype=float)
    S = runs.shape[0]
    full = loglog_slope(x, runs.mean(0)).slope
    loo = np.array([loglog_slope(x, np.delete(runs, i, 0).mean(0)).slope for i in range(S)])
    return float(full), float(math.sqrt((S - 1) / S * np.sum((loo - loo.mean()) ** 2)))


def drift_exponents() -> tuple[float, float]:
    """``(-1, -1)``: the relative NTK drift ``||K_T - K_0|| / ||K_0||`` over a fixed training time falls as
    ``1/width`` (smooth activation; the ``1/sqrt(width)`` term has zero mean by the symmetry ``a -> -a``
    of the readout, Dyer and Gur-Ari 2019), and the lazy linearisation error as ``1/alpha``
    (Chizat, Oyallon, Bach 2019, Thm 2.2). Derived in ``proofs_check/check_kernels.py``."""
    return -1.0, -1.0


#: the scale multipliers alpha of the lazy-training fit
LAZY_ALPHAS = (1.0, 2.0, 4.0, 8.0, 16.0)


@dataclass(frozen=True)
class DriftParams(Params):
    min_width: int = param(64, low=8, integer=True, domain=(48, 96), doc="smallest width w (widths w, 2w, 4w, 8w)")
    n: int = param(16, low=2, integer=True, domain=(12, 24), doc="training inputs n")
    d: int = param(4, low=1, integer=True, domain=(3, 6), doc="input dimension d")
    seeds: int = param(16, low=4, integer=True, domain=(16, 20), doc="independent runs (init and data) per width")
    steps: int = param(40, low=1, integer=True, domain=(30, 50), doc="gradient-descent steps T")
    lr: float = param(3.0, low=0, low_open=True, domain=(2.0, 4.0), doc="learning rate (NTK parametrisation)")


def _measure_drift(p: DriftParams, backend: Backend, seed: int) -> Measurement:
    dev = backend.device if backend.name == "torch" else "cpu"
    import torch

    dt = getattr(torch, backend.dtype)
    widths = [p.min_width * 2**k for k in range(4)]
    drift = np.stack([ntk_drift_run(w, p.seeds, p.n, p.d, p.steps, p.lr, seed=seed + 1009 * k, device=dev,
                                    dtype=dt)["drift"] for k, w in enumerate(widths)], axis=1)
    lazy = ntk_drift_run(p.min_width, p.seeds, p.n, p.d, p.steps, p.lr, alphas=LAZY_ALPHAS, seed=seed + 7,
                         device=dev, dtype=dt)
    lin = lazy["lin_error"].T  # (seeds, alphas)
    fits = [loglog_slope(widths, drift.mean(0)), loglog_slope(LAZY_ALPHAS, lin.mean(0))]
    jks = [jackknife_slope(widths, drift), jackknife_slope(LAZY_ALPHAS, lin)]
    se = [math.hypot(jk[1], f.stderr) for jk, f in zip(jks, fits)]
    return Measurement(value=[f.slope for f in fits], stderr=se,
                       checks={"training fits the data (final mean square error below 0.05; E y^2 is about 0.6)":
                               bool(np.mean(lazy["loss"][0]) < 0.05)},
                       info={"widths": widths, "drift_mean": drift.mean(0).tolist(),
                             "lin_error_mean": lin.mean(0).tolist(), "alphas": list(LAZY_ALPHAS),
                             "jackknife_se": [j[1] for j in jks], "fit_se": [f.stderr for f in fits]})


def _tol_drift(p: DriftParams, m: Measurement, be: Backend) -> Tolerance:
    return Tolerance(_Z * np.asarray(m.stderr),
                     "3 standard errors of each fitted exponent: the jackknife over independent runs "
                     "(sampling) and the residual standard error of the log-log fit (departure from a "
                     "power law at these sizes), added in quadrature")


register(Claim(
    id="kernels.ntk_drift",
    statement=("A one-hidden-layer tanh network in NTK parametrisation, trained by full-batch GD for a fixed "
               "time: the relative change ||K_T - K_0||_F/||K_0||_F of its empirical NTK on the training "
               "inputs falls as width^-1 (not the width^-1/2 often quoted: the 1/sqrt(width) term averages "
               "out by the readout's sign symmetry; with ReLU the measured exponent is shallower, -0.7 to "
               "-0.9), and with the lazy multiplier alpha the distance between the trained network and its "
               "linearisation falls as alpha^-1; exponents fitted over widths w..8w and alpha = 1..16."),
    reference=("Jacot, Gabriel, Hongler 2018, arXiv 1806.07572; Dyer, Gur-Ari 2019, arXiv 1909.11304 "
               "(dK/dt = O(1/width)); Chizat, Oyallon, Bach 2019, arXiv 1812.07956, Thm 2.2; Lee et al. 2019, "
               "arXiv 1902.06720"),
    params=DriftParams,
    predicted=lambda p: list(drift_exponents()),
    measured=_measure_drift,
    tolerance=_tol_drift,
    error=relative_errors,
    backends=("torch",),
    sweep="lr", sweep_values=(2.0, 3.0, 4.0),
    summary=lambda v: v[0], summary_label="NTK drift exponent",
    mutants={"drift 1/sqrt(width)": lambda p: [-0.5, -1.0],
             "lazy error 1/sqrt(alpha)": lambda p: [-1.0, -0.5],
             "lazy error 1/alpha^2 (the Taylor remainder without the factor alpha)": lambda p: [-1.0, -2.0]},
    closed_forms=("drift_exponents",),
))


# --------------------------------------------------------------------------------------------
# A trained network against kernel regression with its initial empirical NTK


def two_layer_entk(W: Any, a: Any, x1: Any, x2: Any) -> Any:
    """Empirical NTK of :func:`_mlp` (tanh) in closed form, batched over leading axes:

        Theta(x, x') = (1/w) sum_j [ tanh(h_j) tanh(h'_j) + a_j^2 sech^2(h_j) sech^2(h'_j) x.x'/d ],
        h_j = W_j . x / sqrt(d),

    the readout gradients plus the first-layer gradients (derived in ``proofs_check/check_kernels.py``).
    ``W`` ``(..., w, d)``, ``a`` ``(..., w)``, ``x1`` ``(..., n1, d)``, ``x2`` ``(..., n2, d)``.
    """
    w, d = W.shape[-2], W.shape[-1]
    Wt = W.transpose(-1, -2) / math.sqrt(d)
    t1, t2 = (x1 @ Wt).tanh(), (x2 @ Wt).tanh()
    g1, g2 = (1 - t1**2) * a[..., None, :], (1 - t2**2) * a[..., None, :]
    return (t1 @ t2.transpose(-1, -2) + (g1 @ g2.transpose(-1, -2)) * (x1 @ x2.transpose(-1, -2)) / d) / w


def network_vs_ntk_run(ns: Any, seeds: int, d: int, width: int, steps: int, lr: float, ridge: float = 1e-4,
                       n_test: int = 256, seed: int = 0, device: str = "cpu", dtype=None) -> dict[str, np.ndarray]:
    """Test errors of a trained two-layer tanh net and of KRR with its initial eNTK, for every ``n`` in ``ns``.

    Task (single index): ``x ~ N(0, I_d)``, ``y = tanh(2 u.x)`` with a random unit ``u`` per seed. For each
    seed one initialisation ``(W, a)`` and one nested sample ``x_1..x_max(ns)``; the first ``n`` points form
    the training set of size ``n``. The network (centred, ``f - f_0``, NTK parametrisation) is trained by
    full-batch GD for ``steps`` steps on the mean square error over its ``n`` points; all ``(n, seed)`` runs
    are one ``torch.func.vmap`` program (the sizes enter as masks). Kernel regression: ``f(x) = Theta_0(x,
    X) (Theta_0(X, X) + ridge I)^{-1} y``. Returns ``net`` and ``ntk``, test mean square errors
    ``(seeds, len(ns))`` on ``n_test`` fresh points, and ``train`` the network's final training error.
    """
    import torch
    from torch.func import grad, vmap

    ns = [check_int("n", n, 1, None) for n in ns]
    seeds = check_int("seeds", seeds, 2, None)
    d, width = check_int("d", d, 1, None), check_int("width", width, 1, None)
    steps = check_int("steps", steps, 0, None)
    lr = check_range("lr", lr, 0.0, None, low_open=True)
    ridge = check_range("ridge", ridge, 0.0, None)
    dt = dtype or torch.float64
    gen = torch.Generator(device=device).manual_seed(check_int("seed", seed, 0, None))
    N, B = max(ns), len(ns)
    X = torch.randn(seeds, N, d, generator=gen, dtype=dt, device=device)
    Xt = torch.randn(seeds, n_test, d, generator=gen, dtype=dt, device=device)
    u = torch.randn(seeds, d, 1, generator=gen, dtype=dt, device=device)
    u = u / u.norm(dim=1, keepdim=True)
    y, yt = torch.tanh(2.0 * (X @ u)[..., 0]), torch.tanh(2.0 * (Xt @ u)[..., 0])
    W = torch.randn(seeds, width, d, generator=gen, dtype=dt, device=device)
    a = torch.randn(seeds, width, generator=gen, dtype=dt, device=device)
    ntk = []
    for n in ns:  # one batched solve over seeds per size (the sizes differ, so no common shape)
        K = two_layer_entk(W, a, X[:, :n], X[:, :n])
        Kt = two_layer_entk(W, a, Xt, X[:, :n])
        alpha = torch.linalg.solve(K + ridge * torch.eye(n, dtype=dt, device=device), y[:, :n, None])
        ntk.append(((Kt @ alpha)[..., 0] - yt).pow(2).mean(-1))
    mask = (torch.arange(N, device=device)[None, :] < torch.tensor(ns, device=device)[:, None]).to(dt)
    rep = lambda t: t.unsqueeze(0).expand(B, *t.shape).reshape(B * seeds, *t.shape[1:])  # noqa: E731
    p0 = (rep(W), rep(a))
    Xb, yb, mb = rep(X), rep(y), mask.repeat_interleave(seeds, 0)
    act = torch.tanh

    def loss(p, q, x, yy, m):
        return 0.5 * torch.sum(m * (_mlp(p, x, act) - _mlp(q, x, act) - yy) ** 2) / m.sum()

    g = vmap(grad(loss))
    p = p0
    for _ in range(steps):
        p = tuple(t - lr * dt_ for t, dt_ in zip(p, g(p, p0, Xb, yb, mb)))
    f = vmap(_mlp, (0, 0, None))
    out = f(p, rep(Xt), act) - f(p0, rep(Xt), act)
    net = (out - rep(yt)).pow(2).mean(-1).reshape(B, seeds).T
    tr = (mb * (f(p, Xb, act) - f(p0, Xb, act) - yb) ** 2).sum(-1) / mb.sum(-1)
    to = lambda t: t.detach().cpu().double().numpy()  # noqa: E731
    return {"net": to(net), "ntk": to(torch.stack(ntk, 1)), "train": to(tr.reshape(B, seeds).T)}


def network_beats_ntk_outcomes() -> list[float]:
    """Expected outcomes of the three one-sided z-tests at ``z = 2`` on ``Delta = s_ntk - s_net`` (fitted
    data-scaling exponents of the test error, ``E ~ n^s``): ``[Delta > 2 se, |Delta| <= 2 se, Delta < -2 se]``
    = ``[1, 0, 0]``: the network's exponent is more negative (it learns the relevant direction, feature
    learning; Vyas, Bansal, Nakkiran 2022), the frozen initial kernel's is not."""
    return [1.0, 0.0, 0.0]


#: z of the exponent comparison
BEAT_Z = 2.0


@dataclass(frozen=True)
class BeatParams(Params):
    d: int = param(12, low=1, integer=True, domain=(10, 12), doc="input dimension d")
    width: int = param(32, low=2, integer=True, domain=(24, 32), doc="hidden width w")
    min_n: int = param(16, low=2, integer=True, domain=(16, 18), doc="smallest training set (n, 2n, 4n, 8n)")
    seeds: int = param(8, low=4, integer=True, domain=(8, 10), doc="independent runs (task, init, data)")
    steps: int = param(100, low=1, integer=True, domain=(100, 120), doc="full-batch GD steps")
    lr: float = param(8.0, low=0, low_open=True, domain=(7.0, 9.0), doc="learning rate (NTK parametrisation)")
    ridge: float = param(1e-4, low=0, domain=(1e-5, 1e-3), log=True, doc="ridge of the eNTK regression")


def _measure_beat(p: BeatParams, backend: Backend, seed: int) -> Measurement:
    import torch

    dev = backend.device if backend.name == "torch" else "cpu"
    ns = [p.min_n * 2**k for k in range(4)]
    r = network_vs_ntk_run(ns, p.seeds, p.d, p.width, p.steps, p.lr, p.ridge, seed=seed, device=dev,
                           dtype=getattr(torch, backend.dtype))
    fits = {k: loglog_slope(ns, r[k].mean(0)) for k in ("net", "ntk")}
    jks = {k: jackknife_slope(ns, r[k]) for k in ("net", "ntk")}
    se = {k: math.hypot(jks[k][1], fits[k].stderr) for k in fits}
    delta = fits["ntk"].slope - fits["net"].slope
    sd = math.hypot(se["net"], se["ntk"])
    z = delta / sd
    out = [float(z > BEAT_Z), float(abs(z) <= BEAT_Z), float(z < -BEAT_Z)]
    return Measurement(value=out, stderr=[0.0, 0.0, 0.0],
                       info={"ns": ns, "net_exponent": fits["net"].slope, "net_stderr": se["net"],
                             "ntk_exponent": fits["ntk"].slope, "ntk_stderr": se["ntk"], "z": z,
                             "net_mean": r["net"].mean(0).tolist(), "ntk_mean": r["ntk"].mean(0).tolist(),
                             "train_error": float(r["train"].mean())})


def _tol_beat(p: BeatParams, m: Measurement, be: Backend) -> Tolerance:
    return Tolerance(0.5, "outcomes of z-tests are 0 or 1: any disagreement (error 1) fails; the statistical "
                          "allowance sits in the tests' z = 2 on the jackknife + fit stderrs of the exponents")


register(Claim(
    id="kernels.network_beats_ntk",
    statement=("Single-index task y = tanh(2 u.x), x ~ N(0, I_d), d = 10..12, n = n0..8 n0 (n0 = 16..18): a "
               "two-layer tanh net of width 24..32 trained by full-batch GD (100..120 steps, lr 7..9, NTK "
               "parametrisation) "
               "has a test-error data-scaling exponent more negative than kernel ridge regression (ridge "
               "1e-5..1e-3) with its initial empirical NTK, by more than 2 standard errors (jackknife over "
               "seeds plus fit residual, in quadrature); measured: network about n^-0.75, initial eNTK about "
               "n^-0.1 (it plateaus: its rank w(d+1) and its weak first-layer term keep it near the linear "
               "predictor). Outcomes [net faster, equal, kernel faster] = [1, 0, 0]. Not asserted beyond these "
               "sizes: at d = 14 with 90 steps at lr 6 the gap is still there (-0.5 vs -0.1) but z falls to ~2."),
    reference="Vyas, Bansal, Nakkiran 2022, arXiv 2206.10012; Jacot, Gabriel, Hongler 2018, arXiv 1806.07572",
    params=BeatParams,
    predicted=lambda p: network_beats_ntk_outcomes(),
    measured=_measure_beat,
    tolerance=_tol_beat,
    error=max_abs_error,
    backends=("torch",),
    sweep="width", sweep_values=(24, 32, 40),
    summary=lambda v: v[0], summary_label="network exponent more negative (z-test outcome)",
    mutants={"equal exponents": lambda p: [0.0, 1.0, 0.0],
             "kernel faster": lambda p: [0.0, 0.0, 1.0]},
    closed_forms=("network_beats_ntk_outcomes",),
))
