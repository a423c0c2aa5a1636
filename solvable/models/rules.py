"""Learning-rate scaling rules measured on small torch networks, against their predictions.

The measurements come from :mod:`solvable.tools.rules` (``stable_lr``: the largest stable learning
rate per batch size, from vmapped learning-rate copies of the network and bisection); the
predictions from the same tool's curvature, linearized-kernel and gradient-noise formulas. This
module registers the claims that hold on those networks, in the form that holds.

References:
  Lewkowycz, Bahri, Dyer, Sohl-Dickstein, Gur-Ari, 2020. "The large learning rate phase of deep learning: the catapult mechanism." arXiv 2003.02218.
  McCandlish, Kaplan, Amodei et al., 2018. "An empirical model of large-batch training." arXiv 1812.06162.
  Ma, Bassily, Belkin, 2018. "The power of interpolation: understanding the effectiveness of SGD in modern over-parametrized learning." ICML, arXiv 1712.06559.
  Malladi, Lyu, Panigrahi, Arora, 2022. "On the SDEs and scaling rules for adaptive gradient algorithms." NeurIPS, arXiv 2205.10287.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import optimize as _opt
from scipy import stats as _sps
from torch import nn

from ..backend import Backend
from ..checks import check_choice, check_int, check_range
from ..claims import Claim, Measurement, Params, Tolerance, param, register, relative_errors
from ..tools import rules as _tr

__all__: list[str] = ["linearized_ms_threshold"]


# --------------------------------------------------------------------------------------------
# Section A: rules.linearized_threshold (wide two-layer networks near initialization)
#
# The network is tools.rules.TwoLayer, f(x) = a^T tanh(W x / sqrt(d)) / sqrt(m) (NTK parameterisation),
# at initialisation; the data are N Gaussian inputs in d dimensions with labels y = f_0(x) + delta z
# (tools.rules.problem), so the residual starts at delta z and the network starts next to an
# interpolating minimum. Minibatch SGD on the mean squared error (torch's MSELoss: per-example
# curvature s = 2), batches drawn without replacement.
#
# Closed form: the linearized model f_0 + J (theta - theta_0) has residual recursion
# r_{t+1} = (I - (eta s / B) K D_t) r_t with the empirical NTK K = J J^T, and its mean-square
# threshold eta*(B) is the least-squares one of features with Gram matrix s K
# (tools.rules.linearized_threshold; derived in proofs_check/check_rules.py).
#
# Measured: tools.rules.stable_lr on the network itself, stability judged by the late growth of the
# loss (the sign of the asymptotic growth rate, the linear-stability notion) in the mean over batch
# orders (the mean-square notion), with a cap that refuses catapults.

LT_N = 16                 # examples N
LT_D = 32                 # input dimension d (d = 2N: a well-conditioned kernel, lambda_min / lambda_max ~ 0.1)
LT_BATCHES = (2, 8)       # batch sizes B
LT_STEPS = 100            # T: stable iff L_T <= L_{T/2} (mean over seeds) ...
LT_CAP = 1e4              # ... and the loss never above LT_CAP L_0 (checked every LT_EVERY steps)
LT_EVERY = 5
LT_SEEDS = 16             # seeds of batch order
LT_Z = 3.0                # standard errors in the tolerance


@dataclass(frozen=True)
class LinearizedThresholdParams(Params):
    m: int = param(128, low=8, high=1 << 16, integer=True, domain=(96, 192), log=True,
                   doc="hidden width m of the two-layer tanh network (NTK parameterisation)")
    delta: float = param(1e-4, low=0, low_open=True, high=1.0, domain=(3e-5, 1.5e-4), log=True,
                         doc="initial residual scale delta (labels y = f_0(x) + delta z)")
    init: int = param(0, low=0, high=2**31 - 1, integer=True, domain=(0, 10_000),
                      doc="seed of the network's initialisation and of the data")


def _lt_problem(p: LinearizedThresholdParams, device: str = "cpu"):
    import torch

    from ..tools import rules as tr

    return tr.problem(p.m, N=LT_N, d=LT_D, delta=p.delta, seed=p.init, device=device, dtype=torch.float64)


@functools.lru_cache(maxsize=64)
def _lt_kernel(m: int, delta: float, init: int) -> np.ndarray:
    """The empirical NTK ``K`` (N x N) of the problem at initialisation (CPU, float64)."""
    from ..tools import rules as tr

    net, data = _lt_problem(LinearizedThresholdParams(m=m, delta=delta, init=init))
    return tr.ntk_gram(net, data[0])


def linearized_ms_threshold(m: int, delta: float, init: int, batch_sizes=LT_BATCHES) -> np.ndarray:
    """``eta*(B)``: mean-square threshold of minibatch SGD (without replacement) on the linearized
    two-layer network of width ``m`` at initialisation ``init``, MSELoss (``s = 2``), at each ``B``.

    ``eta*(B) = 1 / lambda_max`` of the least-squares mean-square operator of features ``X`` with
    ``X X^T = s K`` (:func:`solvable.tools.rules.linearized_threshold`); at ``B = N`` it is the
    full-batch ``2 / lambda_max(s K / N)``.
    """
    import torch
    from torch import nn

    from ..tools import rules as tr

    K = _lt_kernel(int(m), float(delta), int(init))
    data = (torch.zeros(LT_N, LT_D, dtype=torch.float64), torch.zeros(LT_N, 1, dtype=torch.float64))
    return tr.linearized_threshold(None, nn.MSELoss(), data, list(batch_sizes), "without", gram=K)


def _kernels_of(net, params: dict, X) -> "Any":
    """Empirical NTKs ``(copies, N, N)`` of the network at each copy's parameters (stacked dict)."""
    import torch

    names = list(params)

    def f(pv, x):
        return torch.func.functional_call(net, pv, (x[None],))[0, 0]

    def gram(pv):
        J = torch.func.vmap(torch.func.grad(f), in_dims=(None, 0))(pv, X)
        Jm = torch.cat([J[n].reshape(X.shape[0], -1) for n in names], dim=1)
        return Jm @ Jm.T

    return torch.func.vmap(gram)(params)


def _lt_measure(p: LinearizedThresholdParams, be: Backend, seed: int) -> Measurement:
    import torch
    from torch import nn

    from ..tools import rules as tr

    dev = be.device if be.name == "torch" else "cpu"
    net, data = _lt_problem(p, dev)
    loss = nn.MSELoss()
    K0 = tr.ntk_gram(net, data[0])
    # the search bracket: every SGD step is non-expansive below 2 / max_i s K_ii and full-batch GD
    # diverges above 2 / lambda_max(s K / N) (tools.rules.kernel_bounds), with margins
    lo, hi = tr.kernel_bounds(K0, 2.0)
    kw = dict(c=1.0, criterion="late", average="mean_square", cap=LT_CAP, every=LT_EVERY, seeds=LT_SEEDS,
              seed=LT_SEEDS * int(seed), dtype=torch.float64)
    # stage 1 (T/2 steps) finds the threshold to a few per cent; stage 2 (T steps, same seeds of batch
    # order) refines it inside +-10% of stage 1. Their difference is the finite-T shift: the crossing of
    # the late-growth statistic moves like 1/T (transients of the slow modes; mean of ratios), so
    # eta(T/2) - eta(T) estimates the shift left at T.
    coarse = tr.stable_lr(net, loss, data, list(LT_BATCHES), steps=LT_STEPS // 2, grid=8, rounds=2,
                          lr_range=(0.8 * lo, 1.05 * hi), **kw)
    fine, flags = [], list(coarse.out_of_range)
    for b, e1 in zip(LT_BATCHES, coarse.lr):
        r = tr.stable_lr(net, loss, data, [b], steps=LT_STEPS, grid=7, rounds=1, lr_range=(0.9 * e1, 1.1 * e1), **kw)
        fine.append(r)
        flags += r.out_of_range
    eta = np.array([r.lr[0] for r in fine])
    se = np.array([r.stderr[0] for r in fine])
    res = np.array([r.resolution[0] for r in fine])
    # kernel drift over runs at the measured threshold: the linearization's error is the change of
    # K along the trajectory (relative, operator norm; the largest over the seeds that stayed finite)
    drift = []
    for b, e in zip(LT_BATCHES, eta):
        run = tr.run_copies(net, loss, data, np.full(LT_SEEDS, e), LT_SEEDS * int(seed) + np.arange(LT_SEEDS), b,
                            steps=LT_STEPS, dtype=torch.float64, return_params=True)
        ok = np.isfinite(run["loss"][:, -1])
        Kt = _kernels_of(net, run["params"], data[0]).cpu().numpy()[ok]
        d = [np.linalg.norm(k - K0, 2) / np.linalg.norm(K0, 2) for k in Kt]
        drift.append(float(max(d)) if d else float("inf"))
    return Measurement(
        value=eta, stderr=se,
        checks={"inside_search_brackets": all(f == "" for f in flags)},
        info={"batch_sizes": list(LT_BATCHES), "eta_half_T": coarse.lr.tolist(),
              "finite_T_shift": (np.abs(coarse.lr - eta) / eta).tolist(), "resolution": res.tolist(),
              "kernel_drift": drift, "bracket": [0.8 * lo, 1.05 * hi], "definition": fine[0].definition})


def _lt_tolerance(p: LinearizedThresholdParams, m: Measurement, be: Backend) -> Tolerance:
    eta = np.asarray(m.value, dtype=float)
    tol = (LT_Z * np.asarray(m.stderr, dtype=float) / eta + np.asarray(m.info["finite_T_shift"])
           + np.asarray(m.info["resolution"]) + np.asarray(m.info["kernel_drift"]))
    return Tolerance(tol, reason=(
        f"per B: {LT_Z:g} jackknife standard errors over {LT_SEEDS} seeds of batch order + the measured "
        f"finite-T shift |eta(T/2) - eta(T)| / eta(T) (the crossing moves like 1/T) + the bisection's "
        f"half-cell + the measured relative kernel drift ||K_T - K_0|| / ||K_0|| over runs at the threshold "
        f"(eta* is homogeneous of degree -1 in K: a relative kernel change kappa moves it by about kappa)"))


def _lt_mutant_kernel(p):
    K = _lt_kernel(p.m, p.delta, p.init)
    return 2.0 * K       # s K with s = 2 (MSELoss)


register(Claim(
    id="rules.linearized_threshold",
    statement=(
        f"Two-layer tanh network f = a^T tanh(W x / sqrt(d)) / sqrt(m) at initialisation, N = {LT_N} Gaussian inputs "
        f"(d = {LT_D}), labels y = f_0 + delta z, MSELoss, minibatch SGD without replacement: the measured largest "
        f"stable learning rate eta*(B) at B = {', '.join(map(str, LT_BATCHES))} equals the mean-square threshold of "
        "the linearized model (from the N x N empirical NTK K: least squares with Gram matrix 2K), within an "
        "allowance (seed noise, finite-T shift, bisection cell) plus the measured kernel drift "
        "||K_T - K_0|| / ||K_0||, which shrinks with width (O(1/sqrt(m)) at worst, Lee et al. 2019; measured ~ delta / m: "
        "1.0e-3 at m = 64 to 1.3e-4 at m = 512 for delta = 1e-2, B = 2). Stable means: the mean over "
        f"{LT_SEEDS} batch orders of L_T / L_(T/2) is <= 1 (T = {LT_STEPS}; the sign of the asymptotic growth rate) and "
        f"the loss never exceeds {LT_CAP:g} L_0. The cap decides the catapult window (2/lambda_max < eta < ~4/lambda_max "
        "for GD): there the loss grows to where the kernel moves, then converges, so 'late' alone would call it "
        "stable; the cap refuses it (GD from delta = 1.5e-4, m = 96: a catapult that peaks within T, eta >= 1.05 x "
        "2/lambda_max, peaks at >= 2e6 L_0; closer to 2/lambda_max the growth is too slow to catapult within T and "
        "'late' sees it), so a catapult run counts as unstable. Holds "
        "(registered) for m in [96, 192] (also seen at m = 256), delta in [3e-5, 1.5e-4], learning rates searched in "
        "[0.8 x 2/max_i 2K_ii, 1.05 x 2/lambda_max(2K/N)], d = 2N. Where it needs care: at B = N/2 the mean-square "
        "threshold is set by rare batch orders (typical runs decay at it), so the 16-seed estimate sits a few per "
        "cent high (within the finite-T allowance); at d = N (lambda_min/lambda_max ~ 0.03) it sat 4-9% high; "
        "without the cap, or at delta ~ 1e-2 with m ~ 100, catapults read as stable (notebook)."),
    reference=("derived here (linearized SGD second moments reduced to the N x N kernel, proofs_check/check_rules.py); "
               "Jacot, Gabriel, Hongler 2018, arXiv 1806.07572 (NTK); Lee et al. 2019, arXiv 1902.06720 (linearized "
               "wide networks); Wu, Ma, E 2018, NeurIPS (mean-square linear "
               "stability); Lewkowycz et al. 2020, arXiv 2003.02218 (catapult)"),
    params=LinearizedThresholdParams,
    predicted=lambda p: linearized_ms_threshold(p.m, p.delta, p.init),
    measured=_lt_measure,
    tolerance=_lt_tolerance,
    error=relative_errors,
    mutants={
        "full-batch 2/lambda_max at every B (no noise term)":
            lambda p: np.full(len(LT_BATCHES), 2.0 / (np.linalg.eigvalsh(_lt_mutant_kernel(p))[-1] / LT_N)),
        "linear rule B eta*(1), uncapped":
            lambda p: np.array(LT_BATCHES, dtype=float) * linearized_ms_threshold(p.m, p.delta, p.init, (1,))[0],
        "2 / max_i s K_ii (every step non-expansive)":
            lambda p: np.full(len(LT_BATCHES), 2.0 / float(np.max(np.diag(_lt_mutant_kernel(p))))),
        "s = 1 for MSELoss (factor 2)": lambda p: 2.0 * linearized_ms_threshold(p.m, p.delta, p.init),
    },
    closed_forms=("linearized_ms_threshold",),
    sweep="m", sweep_values=(96, 128, 192),
    backends=("torch",),
))


# --------------------------------------------------------------------------------------------
# Section B: rules.noise_scale_critical_batch and rules.adam_sqrt_network

#
# The model. Two small tanh networks at initialisation, each on its own task: a one-hidden-layer MLP
# (d inputs, m hidden units, one output) regressing a random tanh teacher with the mean squared error,
# and the same MLP with K outputs classifying Gaussian inputs by a random linear teacher (labels the
# argmax of x^T W) with the cross-entropy. N examples; minibatches of B examples drawn with
# replacement, so a batch gradient has covariance Sigma / B exactly (Sigma the per-example covariance).
#
# Predicted. McCandlish et al.'s quadratic model of one step: with G the full gradient, H the Hessian
# and Sigma the per-example gradient covariance, E L(theta - eta g_B) - L = -eta |G|^2
# + eta^2/2 (G^T H G + tr(H Sigma)/B); the loss decreases in expectation iff eta < 2 eta_opt(B) with
# eta_opt(B) = eta_max / (1 + B_crit / B), B_crit = tr(H Sigma) / G^T H G (derived in
# proofs_check/check_rules.py), and for H ~ I this is the simple noise scale B_noise = tr(Sigma)/|G|^2
# (their B_simple), which needs only per-example gradients. eta(B) grows linearly below B_crit and is
# flat above: 1/eta(B) = a (1 + (B_crit/B)^gamma) with gamma = 1.
#
# Measured (never calling the noise scale). The learning rate at which SGD stops decreasing the loss
# in expectation: the largest eta whose mean over batch orders of L_T / L_0 is at most 1 after T = 4
# steps (tools.rules.stable_lr, average="mean_square": the log-normal estimate of the mean ratio over
# `seeds` batch orders, jackknife spread), at B = 1, 2, ..., 64, on both tasks. The critical batch
# is read off the measured eta*(B) by fitting 1/eta = a (1 + (B_c/B)^gamma) (least squares on
# log eta, three parameters): B_c is where the two asymptotes, eta ~ B^gamma and eta = 1/a, cross;
# gamma is the fitted exponent of eta*(B) below B_c. Standard errors: delete-one jackknife over the
# batch-order seeds (the same seeds serve every B, so deleting one re-runs the whole pipeline
# without it).

#: Batch sizes of the noise-scale claim (N = 64, with replacement) and the number of SGD steps of its
#: "progress" criterion (E L_T <= L_0).
NS_GRID = (1, 2, 4, 8, 16, 32, 64)
NS_STEPS = 4
#: Family-wise false-failure rate of the per-entry comparisons (Bonferroni over the entries).
ALPHA = 1e-3
TASKS = ("regression", "classification")


def _z(K: int) -> float:
    return float(_sps.norm.ppf(1.0 - ALPHA / (2 * K)))


def noise_problem(task: str, N: int = 64, d: int = 4, m: int = 16, K: int = 3, seed: int = 0,
                  dtype: torch.dtype = torch.float64) -> tuple[nn.Module, Any, tuple[torch.Tensor, torch.Tensor]]:
    """The network at initialisation, its loss and data ``(X, Y)`` for ``task``; ``seed`` fixes all three.

    ``"regression"``: ``f(x) = w_2^T tanh(W_1 x + b_1) + b_2`` (torch's default initialisation), targets
    ``2 t(x)`` of a random tanh teacher ``t`` (8 hidden units), loss ``MSELoss``. ``"classification"``: the
    same MLP with ``K`` outputs, labels ``argmax_k (x^T W)_k`` for a Gaussian ``W`` (d x K), loss
    ``CrossEntropyLoss``. Inputs ``x ~ N(0, I_d)``, ``N`` examples.
    """
    check_choice("task", task, TASKS)
    N = check_int("N", N, 2)
    d = check_int("d", d, 1)
    m = check_int("m", m, 1)
    K = check_int("K", K, 2)
    g = torch.Generator().manual_seed(int(seed))
    out = 1 if task == "regression" else K
    with torch.random.fork_rng():
        torch.manual_seed(int(seed))
        net = nn.Sequential(nn.Linear(d, m), nn.Tanh(), nn.Linear(m, out)).to(dtype)
        teacher = nn.Sequential(nn.Linear(d, 8), nn.Tanh(), nn.Linear(8, 1)).to(dtype)
    X = torch.randn(N, d, generator=g, dtype=dtype)
    if task == "regression":
        with torch.no_grad():
            Y = 2.0 * teacher(X)
        return net, nn.MSELoss(), (X, Y)
    W = torch.randn(d, K, generator=g, dtype=dtype)
    return net, nn.CrossEntropyLoss(), (X, (X @ W).argmax(1))


def simple_noise_scale(task: str, N: int = 64, d: int = 4, m: int = 16, seed: int = 0) -> float:
    """``B_noise = tr(Sigma) / |G|^2`` of :func:`noise_problem` at initialisation (McCandlish et al. 2018,
    ``B_simple``; :func:`solvable.tools.rules.noise_scale`): ``G`` the full-data gradient, ``Sigma`` the
    per-example gradient covariance (mean over the ``N`` examples)."""
    net, loss, data = noise_problem(task, N, d, m, seed=seed)
    return float(_tr.noise_scale(net, loss, data)["B_noise"])


def bend_form(B: Any, eta_max: float, B_crit: float, gamma: float = 1.0) -> np.ndarray:
    """``eta(B) = eta_max / (1 + (B_crit / B)^gamma)``: McCandlish et al.'s ``eta_opt(B)`` at ``gamma = 1``
    (linear below ``B_crit``, flat above); ``gamma`` is the exponent of ``eta`` for ``B << B_crit``."""
    B = np.asarray(B, dtype=float)
    return eta_max / (1.0 + (B_crit / B) ** gamma)


def fit_bend(Bs: Any, etas: Any) -> tuple[float, float, float]:
    """Least-squares fit of ``log eta = log eta_max - log(1 + (B_c/B)^gamma)`` to measured ``eta(B)``.

    Returns ``(eta_max, B_c, gamma)``: ``B_c`` is where the asymptotes ``eta_max (B/B_c)^gamma`` and
    ``eta_max`` cross (the measured critical batch), ``gamma`` the fitted exponent below it.
    Parameters in logs (``log eta_max``, ``log B_c``, ``log gamma``), started from the ``gamma = 1`` fit
    ``1/eta = a + b/B`` (linear least squares: ``B_c = b/a``).

    >>> Bs = [1, 2, 4, 8, 16, 32, 64]
    >>> [round(v, 6) for v in fit_bend(Bs, bend_form(Bs, 2.0, 5.0, 0.8))]
    [2.0, 5.0, 0.8]
    """
    B = np.asarray(Bs, dtype=float)
    e = np.asarray(etas, dtype=float)
    if B.shape != e.shape or B.size < 4:
        raise ValueError(f"Bs and etas have shapes {B.shape} and {e.shape}: they must match, with at least 4 points")
    if not (np.all(B > 0) and np.all(np.isfinite(e)) and np.all(e > 0)):
        raise ValueError("Bs and etas must be positive and finite")
    A = np.stack([np.ones_like(B), 1.0 / B], axis=1)
    (a, b), *_ = np.linalg.lstsq(A, 1.0 / e, rcond=None)
    bc0 = b / a if (a > 0 and b > 0) else float(np.sqrt(B[0] * B[-1]))
    em0 = 1.0 / a if a > 0 else float(e.max())
    ly, lB = np.log(e), np.log(B)

    def resid(q):
        lem, lbc, lg = q
        return lem - np.logaddexp(0.0, math.exp(lg) * (lbc - lB)) - ly

    sol = _opt.least_squares(resid, [math.log(em0), math.log(bc0), 0.0], method="lm", xtol=1e-14, ftol=1e-14)
    lem, lbc, lg = sol.x
    return float(math.exp(lem)), float(math.exp(lbc)), float(math.exp(lg))


@dataclass(frozen=True)
class NoiseScaleParams(Params):
    m: int = param(16, low=2, high=256, integer=True, domain=(12, 24), doc="hidden units m of both MLPs")
    d: int = param(4, low=1, high=64, integer=True, domain=(3, 6), doc="input dimension d")
    data_seed: int = param(0, low=0, integer=True, domain=(0, 10_000),
                           doc="seed of both networks' initialisation and data")
    seeds: int = param(16, low=4, high=64, integer=True, domain=(16, 20), doc="batch orders (seeds) per learning rate")


_NS_N = 64


def _predict_noise(p: NoiseScaleParams) -> list[float]:
    return [simple_noise_scale(t, _NS_N, p.d, p.m, p.data_seed) for t in TASKS]


def _measure_noise(p: NoiseScaleParams, backend: Backend, seed: int) -> Measurement:
    Bs = list(NS_GRID)
    bc, gam, se_bc, se_gam, etas, rel = [], [], [], [], [], []
    ok_range, ok_flags = True, True
    for t in TASKS:
        net, loss, data = noise_problem(t, _NS_N, p.d, p.m, seed=p.data_seed)
        r = _tr.stable_lr(net, loss, data, Bs, "sgd", steps=NS_STEPS, c=1.0, criterion="final",
                          average="mean_square", seeds=p.seeds, grid=6, rounds=2, sampling="with",
                          lr_range=(1e-3, 100.0), seed=seed)
        _, b, g = fit_bend(Bs, r.lr)
        # delete-one jackknife over the batch-order seeds (per_seed holds the thresholds without seed q)
        jk = np.array([fit_bend(Bs, r.per_seed[:, q])[1:] for q in range(p.seeds)])
        n = p.seeds
        lj = np.log(jk)
        se = np.sqrt((n - 1) / n * np.sum((lj - lj.mean(0)) ** 2, axis=0))
        bc.append(b)
        gam.append(g)
        se_bc.append(float(se[0]))
        se_gam.append(float(se[1]) * g)
        etas.append(r.lr.tolist())
        rel.append((r.stderr / r.lr).tolist())
        ok_flags &= all(f == "" for f in r.out_of_range)
        ok_range &= Bs[0] <= b <= Bs[-1]
    # exponents of eta*(B) over the two ends of the grid, reported (log-log least squares with the
    # jackknife-free textbook standard error)
    from ..stats import loglog_slope

    def _fit(b, e):
        f = loglog_slope(b, e)
        return f.slope, f.stderr

    ends = {t: {"below (B <= 4)": _fit(Bs[:3], e[:3]), "above (B >= 16)": _fit(Bs[-3:], e[-3:])}
            for t, e in zip(TASKS, etas)}
    return Measurement(
        value=bc,
        stderr=se_bc,
        checks={"thresholds_inside_the_lr_range": bool(ok_flags), "bend_inside_the_batch_grid": bool(ok_range)},
        info={"B": Bs, "eta_star": dict(zip(TASKS, etas)), "eta_star_relative_stderr": dict(zip(TASKS, rel)),
              "B_crit_measured": dict(zip(TASKS, bc)), "se_log_B_crit": dict(zip(TASKS, se_bc)),
              "gamma_measured": dict(zip(TASKS, gam)), "se_gamma": dict(zip(TASKS, se_gam)),
              "loglog_exponents_at_the_grid_ends": ends, "steps": NS_STEPS, "N": _NS_N,
              "criterion": "E_batch-orders[L_T / L_0] <= 1 (log-normal estimate), T = 4, batches with replacement"})


def _log_ratio_errors(predicted, measured) -> np.ndarray:
    """Per entry ``|log(measured / predicted)|`` (``inf`` for a predicted critical batch of ``inf``)."""
    pr = np.asarray(predicted, dtype=float).ravel()
    me = np.asarray(measured, dtype=float).ravel()
    if pr.shape != me.shape:
        raise ValueError(f"predicted has shape {pr.shape} but measured has {me.shape}: shapes must match")
    with np.errstate(divide="ignore", invalid="ignore"):
        e = np.abs(np.log(me) - np.log(pr))
    return np.where(np.isnan(e), np.inf, e)


#: The stated factor of the claim: the measured critical batch is within NS_FACTOR of B_noise. Over 44
#: domain draws (22 parameter points x 2 tasks, 16-20 seeds) the ratio B_c / B_noise ranged over
#: 0.34 .. 1.76 (regression 0.34 .. 1.34, mostly below 1; classification 0.57 .. 1.76), i.e. within a
#: factor 2.9; the quadratic model's own critical batch is tr(H Sigma) / G^T H G, which B_noise
#: replaces by tr(Sigma) / |G|^2 (equal only for H ~ I), and the networks are not quadratic over T = 4
#: steps at eta ~ 2 eta_opt.
NS_FACTOR = 3.0


def _tol_noise(p: NoiseScaleParams, m: Measurement, be: Backend) -> Tolerance:
    se = np.asarray(m.stderr, dtype=float)
    z = _z(se.size)
    return Tolerance(math.log(NS_FACTOR) + z * se,
                     f"per entry, on |log(B_c / B_noise)|: log {NS_FACTOR:g} (the claim's stated factor: the measured "
                     f"range of B_c / B_noise over 44 domain draws was 0.34 .. 1.76; B_noise is B_crit = "
                     f"tr(H Sigma)/G^T H G with H replaced by I) + z = {z:.2f} standard errors of log B_c (delete-one "
                     f"jackknife over the batch-order seeds; Bonferroni over the {se.size} entries, family-wise "
                     f"{ALPHA:g})")


register(Claim(
    id="rules.noise_scale_critical_batch",
    statement=("On two small tanh MLPs at initialisation (a regression on a random teacher with the squared error, "
               "and a 3-class classification with the cross-entropy; N = 64 examples, batches with replacement), "
               "the critical batch B_c of the largest learning rate eta*(B) at which T = 4 SGD steps still decrease "
               "the loss in expectation (E L_T <= L_0 over batch orders) agrees with the simple gradient noise scale "
               "B_noise = tr(Sigma)/|G|^2 at the start point within a factor 3; B_c is read off eta*(B), "
               "B = 1 .. 64, by fitting 1/eta = a (1 + (B_c/B)^gamma) (the crossing of eta ~ B^gamma and its "
               "plateau). predicted/measured = [B_c (regression), B_c (classification)]. Measured: B_c/B_noise "
               "in 0.34 .. 1.76 over 44 domain draws (B_noise 1-12), gamma 0.8 .. 1.7 (McCandlish: 1): the factor "
               "is B_noise's neglect of the Hessian weighting (B_crit = tr(H Sigma)/G^T H G) and the non-quadratic "
               "steps. Over longer horizons it fails: with T = 30 the classification bend moves to 3-5 x "
               "B_noise (the cross-entropy keeps decreasing at large steps) and the regression one to 0.5 x."),
    reference=("McCandlish, Kaplan, Amodei et al. 2018 (arXiv 1812.06162), Sec. 2.2 and App. A (B_simple, "
               "eta_opt(B) = eta_max / (1 + B_noise/B)); the criterion and the fit derived here"),
    params=NoiseScaleParams,
    predicted=_predict_noise,
    measured=_measure_noise,
    error=_log_ratio_errors,
    tolerance=_tol_noise,
    sweep="m", sweep_values=(12, 16, 24),
    summary=lambda v: v[0], summary_label="critical batch (regression)",
    backends=("torch",),
    mutants={
        "tr Sigma summed over the examples, not averaged (N B_noise)":
            lambda p: [_NS_N * b for b in _predict_noise(p)],
        "ratio inverted: |G|^2 / tr Sigma": lambda p: [1.0 / b for b in _predict_noise(p)],
        "no critical batch (pure linear rule eta ~ B)": lambda p: [math.inf, math.inf],
    },
    closed_forms=("simple_noise_scale",),
))


# --- Adam: the square-root rule on a network --------------------------------------------------
#
# The model. A tanh MLP (d inputs, m hidden units) started at a teacher's weights: the targets are
# the teacher's outputs plus label noise sigma z, so the start point is a noisy minimum (the gradient
# G is O(sigma/sqrt(N)) while each example's gradient is O(sigma): B_noise ~ N) and the batch gradient
# is dominated by noise at every B. Adam (beta_1 = 0.9, beta_2 = 0.999, bias correction), batches with
# replacement.
#
# Why a square root (derived here, the network analogue of scaling.adam_sqrt). In the noise-dominated
# regime Adam's second moment is v ~ E g_B^2 = V / B, so its step eta m / sqrt(v) is SGD with the
# learning rate eta sqrt(B / V): B enters the effective learning rate as sqrt(B). The loss excess of
# SGD with learning rate eta' and batch noise Sigma / B scales as eta' / B; for Adam it scales as
# eta sqrt(B) / B = eta / sqrt(B), so the learning rate at which the loss grows by a fixed factor
# scales as sqrt(B) (SGD: as B, the linear rule). Above a critical batch B_c the bias-corrected first
# steps, sign-like steps of length ~eta per coordinate whatever B, cap eta*: the exponent falls to 0.
# This differs from the least-squares model with a frozen preconditioner (scaling.adam_sqrt), where
# eta* falls as 1/sqrt(B) above B*: there v is the exact second moment; here Adam starts from v = 0.
#
# Measured. eta*(B) = the largest eta whose full-data loss, checked every 5 steps for T = 100 steps,
# never exceeds 3 L_0 (mean over batch orders, log-normal estimate; tools.rules.stable_lr with
# criterion="max", c = 3). Why that criterion: Adam's steps are bounded by ~eta and its
# preconditioner grows with the gradients, so past the threshold a run does not diverge, it settles
# at a higher loss; linear (late-growth) stability never fails, and the usable-learning-rate notion
# is the growth of the loss above its noise floor L_0 ~ sigma^2. Fitted exponents: log-log least
# squares of eta*(B) over B = 1, 2, 4, 8 (below) and B = 32, 64, 128 (above), standard errors by the
# delete-one jackknife over the batch-order seeds.
#
# What was measured (12 seeds). With c = 2 (16 draws of m in 6-10, d in 3-5, sigma in 0.7-1.2) the
# exponent below was 0.48 .. 0.69 (mean 0.57), not exactly 1/2: v also holds the squared full
# gradient, which grows as the run leaves the minimum, and a B-independent part of v pulls the
# exponent towards the linear rule's 1 (with c = 1.25 it drops to 0.4-0.6 but the bend leaves the
# grid). The bend (fitted 1/eta = a (1 + (B_c/B)^gamma)) moves down as c grows (c = 1.5: B_c = 20-73;
# c = 2: 11-58; c = 3: 7-28; c = 4: 4-7) while the exponent below stays near 0.5-0.6 (c = 3, 12
# draws: 0.47 .. 0.71, mean 0.59); where the bend is near B = 32 the "above" exponent keeps a residual slope (c = 2, B_c = 58:
# 0.24 +- 0.06; c = 3 on that draw: 0.18 +- 0.07), which is why the claim uses c = 3. Neither
# exponent is its rule's value within z = 3.3 jackknife standard errors on every draw (defaults:
# 0.62 +- 0.04 below), so the claim reads each entry as a choice between the two rival rules. For sigma < 0.5 the bend moves to B_c ~ 60-100, past the
# grid, so the domain is sigma >= 0.7 (and d <= 4).

ADAM_GRID = (1, 2, 4, 8, 32, 64, 128)
ADAM_BELOW = (1, 2, 4, 8)
ADAM_ABOVE = (32, 64, 128)
ADAM_STEPS = 100
ADAM_C = 3.0
_ADAM_N = 128


def adam_problem(N: int = 128, d: int = 4, m: int = 8, sigma: float = 0.5, seed: int = 0,
                 dtype: torch.dtype = torch.float64) -> tuple[nn.Module, Any, tuple[torch.Tensor, torch.Tensor]]:
    """A tanh MLP ``f(x) = w_2^T tanh(W_1 x + b_1) + b_2`` (torch's default initialisation) at the teacher's
    weights, and data ``(X, f(X) + sigma z)`` with ``x, z`` standard normal: a noisy minimum (``B_noise ~ N``)."""
    N = check_int("N", N, 2)
    d = check_int("d", d, 1)
    m = check_int("m", m, 1)
    sigma = check_range("sigma", sigma, 0.0, None, low_open=True)
    g = torch.Generator().manual_seed(int(seed))
    with torch.random.fork_rng():
        torch.manual_seed(int(seed))
        net = nn.Sequential(nn.Linear(d, m), nn.Tanh(), nn.Linear(m, 1)).to(dtype)
    X = torch.randn(N, d, generator=g, dtype=dtype)
    with torch.no_grad():
        Y = net(X) + sigma * torch.randn(N, 1, generator=g, dtype=dtype)
    return net, nn.MSELoss(), (X, Y)


def adam_sqrt_exponents() -> tuple[float, float]:
    """The exponents of Adam's ``eta*(B)`` in the noise-dominated regime: ``1/2`` below the critical batch
    (effective learning rate ``eta sqrt(B/V)``, module comment), ``0`` above (bias-corrected sign-like
    first steps)."""
    return 0.5, 0.0


@dataclass(frozen=True)
class AdamNetworkParams(Params):
    m: int = param(8, low=2, high=128, integer=True, domain=(6, 10), doc="hidden units m")
    d: int = param(3, low=1, high=64, integer=True, domain=(3, 4), doc="input dimension d")
    sigma: float = param(0.8, low=0, low_open=True, high=10, domain=(0.7, 1.2), log=True, doc="label noise sigma")
    data_seed: int = param(0, low=0, integer=True, domain=(0, 10_000), doc="seed of the teacher and the data")
    seeds: int = param(12, low=4, high=64, integer=True, domain=(12, 14), doc="batch orders (seeds) per learning rate")


def _slopes(Bs: list[int], etas: np.ndarray, above: tuple[int, ...] = ADAM_ABOVE) -> tuple[float, float]:
    from ..stats import loglog_slope

    lo = [Bs.index(b) for b in ADAM_BELOW]
    hi = [Bs.index(b) for b in above]
    return (loglog_slope(ADAM_BELOW, etas[lo]).slope, loglog_slope(list(above), etas[hi]).slope)


def _measure_adam_net(p: AdamNetworkParams, backend: Backend, seed: int) -> Measurement:
    Bs = list(ADAM_GRID)
    net, loss, data = adam_problem(_ADAM_N, p.d, p.m, p.sigma, seed=p.data_seed)
    r = _tr.stable_lr(net, loss, data, Bs, "adam", steps=ADAM_STEPS, c=ADAM_C, criterion="max", every=5,
                      average="mean_square", seeds=p.seeds, grid=6, rounds=2, sampling="with",
                      lr_range=(1e-3, 3.0), seed=seed)
    _, bc, gam = fit_bend(Bs, r.lr)
    # "above" is the fixed window B = 32 .. 128: a window adapted to B >= 2 B_c (tried) keeps only
    # B = 64, 128 on late bends, and the two-point slope's jackknife error (0.16) then narrows the
    # interval below the bias of a gradual bend (a ci draw failed at 0.27 against 0.24)
    above = ADAM_ABOVE
    s = _slopes(Bs, r.lr, above)
    jk = np.array([_slopes(Bs, r.per_seed[:, q], above) for q in range(p.seeds)])
    n = p.seeds
    se = np.sqrt((n - 1) / n * np.sum((jk - jk.mean(0)) ** 2, axis=0))
    return Measurement(
        value=list(s), stderr=se.tolist(),
        checks={"thresholds_inside_the_lr_range": all(f == "" for f in r.out_of_range)},
        info={"B": Bs, "eta_star": r.lr.tolist(), "eta_star_relative_stderr": (r.stderr / r.lr).tolist(),
              "bend_fit_B_c": bc, "bend_fit_gamma": gam, "above_window": list(above), "steps": ADAM_STEPS,
              "N": _ADAM_N, "criterion": r.definition})


def _tol_adam_net(p: AdamNetworkParams, m: Measurement, be: Backend) -> Tolerance:
    se = np.asarray(m.stderr, dtype=float)
    return Tolerance(np.array([ADAM_REGIME_BAND, ADAM_ABOVE_HALF_WIDTH - ADAM_Z * se[1]]), (
        f"below, absolute {ADAM_REGIME_BAND:g}: half the distance between the rival exponents 1/2 (square-root "
        "rule) and 1 (SGD's linear rule), so the entry decides which the measured exponent is nearer (not z "
        "standard errors: it sits systematically above 1/2, 0.47 .. 0.71 over the draws, the full gradient's "
        f"share of Adam's second moment; jackknife standard error {se[0]:.3f} here). Above: the exponent's "
        f"one-sided {ADAM_Z:g}-standard-error interval (jackknife over batch orders, {se[1]:.3f} here) must lie "
        "inside (-1/2, 1/2), between the frozen-preconditioner fall and the square-root rule continued: "
        f"tolerance {ADAM_ABOVE_HALF_WIDTH:g} - {ADAM_Z:g} se"))


#: Below: half the gap between the rival exponents (1/2 vs 1).
ADAM_REGIME_BAND = 0.25
#: Above: the open interval (-1/2, 1/2) between the rivals, narrowed by ADAM_Z jackknife standard errors.
ADAM_ABOVE_HALF_WIDTH = 0.5
ADAM_Z = 1.645     # one-sided 95% at each end


register(Claim(
    id="rules.adam_sqrt_network",
    statement=("Adam (beta_1 = 0.9, beta_2 = 0.999, bias correction) on a tanh MLP started at a noisy minimum "
               "(a teacher's weights, targets with label noise sigma; N = 128, batches with replacement): the "
               "largest learning rate eta*(B) whose loss stays below 3 L_0 for T = 100 steps grows as sqrt(B) "
               "below its critical batch (the fitted log-log exponent over B = 1 .. 8 is nearer 1/2 than SGD's "
               "linear 1), and past the bend the square-root rule stops: the exponent over B = 32 .. 128 lies, with its one-sided 1.645-standard-error "
               "interval, inside (-1/2, 1/2): below the square-root rule continued and above the 1/sqrt(B) fall "
               "of the frozen-preconditioner model (scaling.adam_sqrt), because Adam's bias-corrected first steps "
               "are sign-like steps of length ~eta whatever B. predicted/measured = [exponent below, exponent "
               "above]. Measured (c = 3): below 0.39 .. 0.71 (defaults 0.62 +- 0.04; not 1/2 within z standard "
               "errors: the pure 1/2 is the limit of a noise-dominated second moment, the full gradient's share of "
               "v pulls it towards 1); bend at B_c = 4 .. 28; above -0.11 .. 0.33 over about 100 draws, mostly "
               "near 0 (a plateau) but not resolved from 1/2 on every draw at this budget: 3 draws read 0.28 .. 0.33 "
               "(gradual bends, gamma 0.57 .. 0.72, whose local exponent at 2 B_c is still ~0.25 and on which a window B >= 2 B_c, tried, kept only two points; jackknife standard "
               "errors 0.07 .. 0.10), so 'flat above' is a finding, not asserted. Asserted for sigma in [0.7, 1.2]: "
               "for sigma < 0.5 the bend moves past B = 32 and the 'above' exponent reads 0.3 .. 0.6."),
    reference=("derived here (noise-dominated effective learning rate eta sqrt(B/V)); Malladi, Lyu, Panigrahi, "
               "Arora 2022 (arXiv 2205.10287), the square-root scaling rule for Adam; Granziol, Zohren, Roberts "
               "2022 (arXiv 2006.09092), Sec. 5; Kingma and Ba 2015 (arXiv 1412.6980)"),
    params=AdamNetworkParams,
    predicted=lambda p: list(adam_sqrt_exponents()),
    measured=_measure_adam_net,
    error=lambda pr, me: np.abs(np.asarray(me, dtype=float) - np.asarray(pr, dtype=float)),
    tolerance=_tol_adam_net,
    sweep="sigma", sweep_values=(0.3, 0.5, 1.0),
    summary=lambda v: v[0], summary_label="exponent of eta*(B) below the critical batch",
    backends=("torch",),
    mutants={
        "linear rule below the critical batch (exponent 1)": lambda p: [1.0, 0.0],
        "frozen-preconditioner model above B* (exponent -1/2, scaling.adam_sqrt)": lambda p: [0.5, -0.5],
    },
    closed_forms=("adam_sqrt_exponents",),
))
