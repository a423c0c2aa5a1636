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
from ..checks import check_int, check_range
from ..claims import Claim, Measurement, Params, Tolerance, param, register, relative_error

__all__ = [
    "check_nk",
    "fourier_gap",
    "majority_coefficient",
    "all_inputs",
    "population_gradient",
    "drift_time_exponent",
    "train_mlp_parity",
    "steps_versus_n",
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


# --------------------------------------------------------------------------------------------
# Hidden progress: the relevant weights drift at first order in the Fourier gap, the loss at second
#
# Online SGD on the same neuron and loss, fresh minibatches of B inputs per step, from w = w0 1:
#
#     w+ = w + eta (1/B) sum_b chi_S(x_b) 1[w . x_b > 0] x_b.
#
# For n odd, |sum_i x_i| >= 1, so while some c > 0 has sum_i |w_i - c| < c, w . x = c sum x + sum (w_i - c) x_i
# has the sign of sum x for every input: the activation pattern is that of the symmetric neuron,
# the population gradient is exactly g = -(c_{k-1} 1_S + c_{k+1} 1_{not S}) and the loss is linear in w,
# L(w) = g . w. Hence (derived here), as long as that holds, each step's update is an unbiased estimate
# of the same -eta g and
#
#     E[mean_{i in S} w_i(t)] = w0 + eta c_{k-1} t,    E[mean_{i not in S} w_i(t)] = w0 + eta c_{k+1} t,
#     E[L(t)] = L(0) - eta |g|^2 t,     |g|^2 = k c_{k-1}^2 + (n - k) c_{k+1}^2,
#
# with c_j = Maj_n^(j)/2 (f = (1 + Maj_n)/2 for n odd, k even). The progress measure (the gap between
# relevant and irrelevant weights) grows at first order in the small coefficients while the loss moves
# at second order: the plateau hides progress at the rate the Fourier gap sets.


def hidden_progress_rates(n: int, k: int) -> list[float]:
    """``[c_{k-1}, c_{k+1}, -|g|^2]``: per unit step size, the drift per step of the mean relevant weight,
    of the mean irrelevant weight, and of the population correlation loss, for a ReLU neuron under
    online SGD from ``w = w0 1``, ``b = 0`` (``n`` odd, ``k`` even, while the activation pattern is the
    symmetric one).

    >>> [round(r, 6) for r in hidden_progress_rates(7, 2)]
    [0.15625, -0.03125, -0.053711]
    """
    n, k = check_nk(n, k)
    if n % 2 == 0 or k % 2 == 1 or k == n:
        raise ValueError(f"n={n}, k={k} are out of range: hidden_progress_rates needs n odd and k even in [2, n - 1]")
    c1 = majority_coefficient(n, k - 1) / 2
    c2 = majority_coefficient(n, k + 1) / 2
    return [c1, c2, -(k * c1 ** 2 + (n - k) * c2 ** 2)]


@dataclass
class NeuronSGDRun:
    """Online SGD of single ReLU neurons (``R`` runs) on a ``k``-sparse parity.

    Attributes:
      relevant: ``(T + 1, R)`` mean weight on ``S``; irrelevant: the same off ``S``.
      loss: ``(len(checkpoints), R)`` population correlation loss by enumeration at ``checkpoints``.
      symmetric_pattern: ``(R,)`` True where ``sum |w - median w| < median w`` held at every step.
    """

    relevant: np.ndarray
    irrelevant: np.ndarray
    checkpoints: np.ndarray
    loss: np.ndarray
    symmetric_pattern: np.ndarray


def population_loss(W: Any, k: int, backend: Backend) -> Any:
    """``L(w) = -E[chi_S(x) relu(w . x)]`` for each row of ``W`` (``(R, n)``), by enumerating ``{-1, +1}^n``."""
    n = int(W.shape[-1])
    X = all_inputs(n, backend)
    xp = backend.xp
    y = xp.prod(X[:, :k], axis=1)
    pre = xp.matmul(W, xp.matrix_transpose(X))
    return -xp.mean(y[None, :] * xp.where(pre > 0, pre, 0 * pre), axis=1)


def simulate_neuron_sgd(n: int, k: int, eta: float, steps: int, batch: int, runs: int, backend: Backend, seed: int,
                        w0: float = 1.0, checkpoints: int = 5) -> NeuronSGDRun:
    """Online SGD on ``-chi_S(x) relu(w . x)`` from ``w = w0 1`` for ``runs`` independent seeds at once."""
    n, k = check_nk(n, k)
    eta = check_range("eta", eta, 0.0, None, low_open=True)
    steps = check_int("steps", steps, 1)
    batch = check_int("batch", batch, 1)
    runs = check_int("runs", runs, 1)
    xp = backend.xp
    rng = backend.rng(seed)
    W = xp.ones((runs, n), dtype=backend.float_dtype, **_dev(backend)) * w0
    rel = np.empty((steps + 1, runs))
    irr = np.empty((steps + 1, runs))
    rel[0] = irr[0] = w0
    ok = np.ones(runs, dtype=bool)
    cps = np.unique(np.linspace(0, steps, checkpoints + 1).round().astype(int))
    losses = [backend.to_numpy(population_loss(W, k, backend))]
    for t in range(1, steps + 1):
        X = 1.0 - 2.0 * xp.astype(rng.integers(0, 2, (runs, batch, n)), backend.float_dtype)
        y = xp.prod(X[:, :, :k], axis=2)
        act = xp.astype(xp.sum(X * W[:, None, :], axis=2) > 0, X.dtype)
        W = W + eta * xp.sum((y * act)[:, :, None] * X, axis=1) / batch
        Wn = backend.to_numpy(W)
        med = np.median(Wn, axis=1)
        ok &= (np.abs(Wn - med[:, None]).sum(axis=1) < med)
        rel[t] = Wn[:, :k].mean(axis=1)
        irr[t] = Wn[:, k:].mean(axis=1)
        if t in cps:
            losses.append(backend.to_numpy(population_loss(W, k, backend)))
    return NeuronSGDRun(rel, irr, cps, np.array(losses), ok)


def _dev(backend: Backend) -> dict:
    return {} if backend.name == "numpy" else {"device": backend.device}


@dataclass(frozen=True)
class HiddenProgressParams(Params):
    n: int = param(11, low=3, high=17, integer=True, domain=(7, 13), doc="number of input bits n (odd)")
    k: int = param(4, low=2, high=16, integer=True, domain=(2, 4), doc="parity order k (even)")

    def check(self) -> None:
        check_nk(self.n, self.k)
        if self.n % 2 == 0 or self.k % 2 == 1 or self.k >= self.n:
            raise ValueError(f"n={self.n}, k={self.k} are out of range: n must be odd and k even in [2, n - 1]")


_HP = dict(eta=0.005, steps=200, batch=256, runs=32)
_HP_Z = 3.0


def _slope(ts: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Per-run least-squares slope of ``ys - ys[0]`` on ``ts`` through the origin (the start is exact)."""
    return (ts[:, None] * (ys - ys[:1])).sum(axis=0) / (ts ** 2).sum()


def _measure_hidden(p: HiddenProgressParams, backend: Backend, seed: int) -> Measurement:
    run = simulate_neuron_sgd(p.n, p.k, _HP["eta"], _HP["steps"], _HP["batch"], _HP["runs"], backend, seed)
    ts = np.arange(_HP["steps"] + 1, dtype=float)
    per_run = np.stack([_slope(ts, run.relevant), _slope(ts, run.irrelevant),
                        _slope(run.checkpoints.astype(float), run.loss)]) / _HP["eta"]
    mean = per_run.mean(axis=1)
    se = per_run.std(axis=1, ddof=1) / math.sqrt(_HP["runs"])
    L0 = float(run.loss[0].mean())
    progress = float(np.mean(run.relevant[-1] - run.irrelevant[-1]))
    return Measurement(value=mean, stderr=se,
                       checks={"symmetric_activation_pattern_every_run_every_step": bool(run.symmetric_pattern.all())},
                       info={"relative_progress_rel_minus_irr_over_w0": progress,
                             "relative_loss_change": float((run.loss[-1].mean() - L0) / abs(L0)),
                             "initial_loss": L0, **_HP})


register(Claim(
    id="parity.hidden_progress",
    statement=("Online SGD (step eta, fresh minibatches) on one ReLU neuron with the correlation loss -chi_S relu(w . x) "
               "on an n-bit k-sparse parity (n odd, k even), from w = w0 (1, ..., 1): while sum |w_i - c| < c for "
               "some c (checked at every step: the activation pattern stays the symmetric one) the mean relevant "
               "weight drifts by eta c_{k-1} per step and the mean irrelevant weight by eta c_{k+1} (c_j = Maj_n^(j)/2), "
               "while the population loss falls by only eta (k c_{k-1}^2 + (n - k) c_{k+1}^2) per step: the progress "
               "measure (relevant minus irrelevant weight) grows at first order in the Fourier coefficients, the loss "
               "at second order (a plateau hiding progress)."),
    reference=("Barak et al. 2022, arXiv 2207.08799, sec. 4 (hidden progress, Fourier gap); the linear-drift form and "
               "its validity condition derived here (proofs_check/check_parity.py)"),
    params=HiddenProgressParams,
    predicted=lambda p: hidden_progress_rates(p.n, p.k),
    measured=_measure_hidden,
    tolerance=lambda p, m, be: Tolerance(_HP_Z * np.asarray(m.stderr) + be.roundoff(1e4), (
        f"{_HP_Z:g} standard errors over {_HP['runs']} independent runs: with the activation pattern fixed (checked) "
        "every minibatch gradient is an unbiased estimate of the same population gradient, so the weights and the "
        "loss minus their linear drift are martingales; no bias term")),
    error=lambda pred, meas: np.abs(np.asarray(pred) - np.asarray(meas)),
    sweep="n", sweep_values=(7, 9, 11, 13),
    mutants={
        "Majority's coefficients without the 1/2 of f = (1 + Maj)/2": lambda p: [
            2 * r if i < 2 else 4 * r for i, r in enumerate(hidden_progress_rates(p.n, p.k))],
        "relevant and irrelevant drifts swapped": lambda p: [hidden_progress_rates(p.n, p.k)[1],
                                                              hidden_progress_rates(p.n, p.k)[0],
                                                              hidden_progress_rates(p.n, p.k)[2]],
        "loss falls at first order, -(k c_{k-1} + (n - k) c_{k+1})": lambda p: hidden_progress_rates(p.n, p.k)[:2] + [
            -(p.k * hidden_progress_rates(p.n, p.k)[0] + (p.n - p.k) * hidden_progress_rates(p.n, p.k)[1])],
    },
    closed_forms=("hidden_progress_rates", "majority_coefficient"),
))


# --------------------------------------------------------------------------------------------
# Iteration scaling: online SGD on a one-hidden-layer ReLU MLP
#
# f(x) = sum_j a_j relu(w_j . x + b_j), hinge loss max(0, 1 - y f), fresh minibatches of B inputs per
# step (online SGD, so each minibatch before its update is a fresh test sample), w_j uniform on
# {-1, +1}^n / sqrt(n), a_j = +-1/m, b = 0 (Barak et al.'s sign initialisation, rescaled).
#
# Two heuristics for the growth of the steps with n: the signal-to-noise count 1/c_{k-1}^2 ~ n^{k-1}
# samples (steps ~ n^{k-1}/B), and the drift time 1/(lr c_{k-1}) ~ n^{(k-1)/2} (c_j ~ n^{-j/2}, derived in
# proofs_check/check_parity.py). Neither fits the absolute exponents measured at n <= 32 (see
# steps_versus_n: the local slope still falls with n); what holds, and is registered as
# parity.iteration_scaling, is the ordering: the fitted exponent at k = 3 exceeds the one at k = 2 by a
# margin that excludes 0 (independent of k) and excludes 1 (the n^{k-1} count's increment), consistent
# with the drift time's increment 1/2 per unit k. That n^O(k) holds asymptotically is not resolved here.


def train_mlp_parity(n: int, k: int, width: int, lr: float, batch: int, runs: int, backend: Backend, seed: int,
                     max_steps: int = 5000, target: float = 0.95, window: int = 8, trace: bool = False) -> dict:
    """Online SGD on the MLP above for ``runs`` seeds at once; returns ``steps`` (``(runs,)``: the first step at
    which the accuracy on the last ``window`` fresh minibatches reaches ``target``; -1 if never within
    ``max_steps``) and, with ``trace``, the per-step minibatch accuracy, hinge loss and relevant weight mass."""
    n, k = check_nk(n, k)
    width = check_int("width", width, 1)
    lr = check_range("lr", lr, 0.0, None, low_open=True)
    batch, runs = check_int("batch", batch, 1), check_int("runs", runs, 1)
    xp = backend.xp
    rng = backend.rng(seed)
    sign = lambda shape: 1.0 - 2.0 * xp.astype(rng.integers(0, 2, shape), backend.float_dtype)
    W = sign((runs, width, n)) / math.sqrt(n)
    b = xp.zeros((runs, width), dtype=backend.float_dtype, **_dev(backend))
    a = sign((runs, width)) / width
    hits = np.full(runs, -1)
    accs = np.zeros((window, runs))
    tr = {"accuracy": [], "loss": [], "relevant_mass": []}
    for t in range(1, check_int("max_steps", max_steps, 1) + 1):
        X = sign((runs, batch, n))
        y = xp.prod(X[:, :, :k], axis=2)
        pre = xp.matmul(X, xp.matrix_transpose(W)) + b[:, None, :]
        h = xp.where(pre > 0, pre, 0 * pre)
        f = xp.sum(h * a[:, None, :], axis=2)
        margin = y * f
        accs[t % window] = backend.to_numpy(xp.mean(xp.astype(margin > 0, f.dtype), axis=1))
        dl = -y * xp.astype(margin < 1, f.dtype) / batch  # d hinge/d f
        ga = xp.sum(h * dl[:, :, None], axis=1)
        gp = dl[:, :, None] * a[:, None, :] * xp.astype(pre > 0, f.dtype)
        W = W - lr * xp.matmul(xp.matrix_transpose(gp), X)
        b = b - lr * xp.sum(gp, axis=1)
        a = a - lr * ga
        if trace:
            tr["accuracy"].append(accs[t % window].copy())
            tr["loss"].append(backend.to_numpy(xp.mean(xp.where(margin < 1, 1 - margin, 0 * margin), axis=1)))
            Wn = backend.to_numpy(W)
            tr["relevant_mass"].append((Wn[:, :, :k] ** 2).sum(axis=(1, 2)) / (Wn ** 2).sum(axis=(1, 2)))
        if t >= window:
            hits = np.where((hits < 0) & (accs.mean(axis=0) >= target), t, hits)
            if (hits > 0).all() and not trace:
                break
    out = {"steps": hits}
    if trace:
        out.update({key: np.array(v) for key, v in tr.items()})
    return out


def steps_versus_n(k: int, ns: tuple[int, ...], backend: Backend, seed: int = 0, width: int = 32, lr: float = 0.05,
                   batch: int = 32, runs: int = 16) -> dict:
    """Mean steps to accuracy 0.95 (:func:`train_mlp_parity`) at each ``n`` and the log-log fit over ``n``
    (:func:`solvable.stats.loglog_slope`): ``{"n", "mean_steps", "failed", "slope", "stderr", "local_slopes"}``.

    Measured (not registered as a claim; see the module's notes): at k = 2, B = 32, n = 8..32 the fitted
    exponent is 0.68-1.09 depending on width and step size, with local slopes falling from ~1.3 to ~0.5
    as n grows, so neither n^{k-1} (the signal-to-noise count 1/c_{k-1}^2) nor n^{(k-1)/2} (the drift time
    1/c_{k-1}) describes the range; at k = 3, n = 6..16, the exponent is ~1.3.
    """
    from ..stats import loglog_slope

    steps, failed = [], 0
    for i, n in enumerate(ns):
        s = train_mlp_parity(n, k, width, lr, batch, runs, backend, seed + 7919 * i,
                             max_steps=200 * n ** (k - 1) + 2000)["steps"]
        failed += int((s < 0).sum())
        steps.append(float(s[s > 0].mean()) if (s > 0).any() else float("nan"))
    fit = loglog_slope(ns, steps)
    return {"n": list(ns), "mean_steps": steps, "failed": failed, "slope": fit.slope, "stderr": fit.stderr,
            "local_slopes": (np.diff(np.log(steps)) / np.diff(np.log(ns))).tolist()}


def drift_time_exponent(k: int) -> float:
    """``(k - 1)/2``: the exponent of ``n`` in the drift time ``1/(lr c_{k-1})`` of the relevant weights,
    since the Fourier coefficient of Majority at degree ``j`` falls like ``n^{-j/2}`` (O'Donnell 2014,
    Thm 5.19 with Stirling; derived in proofs_check/check_parity.py).

    >>> drift_time_exponent(3) - drift_time_exponent(2)
    0.5
    """
    return (check_int("k", k, 1) - 1) / 2


def order_classes(d: float, se: float, z: float, marks: tuple[float, ...] = (0.0, 1.0)) -> list[int]:
    """For each mark ``m``: +1 if ``d > m`` by more than ``z se``, -1 if below by more, 0 if indistinguishable
    (a two-sided z test of ``d = m``)."""
    return [int(np.sign(d - m)) if abs(d - m) > z * se else 0 for m in marks]


@dataclass(frozen=True)
class IterationScalingParams(Params):
    lr: float = param(0.3, low=0, low_open=True, high=1.0, domain=(0.3, 0.45), doc="SGD step size")
    width: int = param(32, low=4, high=256, integer=True, domain=(24, 40), doc="hidden width m")


IS_NS = (6, 8, 10, 12)
_IS = dict(batch=32, runs=24, z=2.5)


def _fit_with_seed_error(ns: tuple[int, ...], steps: np.ndarray) -> tuple[float, float]:
    """Least-squares log-log slope of the mean steps over ``ns`` and its standard error: the seed spread
    (delta method on each mean, ``runs`` independent seeds per n) combined with the fit's residual error
    (the curvature of log steps in log n over the range)."""
    from ..stats import loglog_slope

    means = steps.mean(axis=1)
    var_log = (steps.std(axis=1, ddof=1) / math.sqrt(steps.shape[1]) / means) ** 2
    lx = np.log(np.asarray(ns, dtype=float))
    dx = lx - lx.mean()
    fit = loglog_slope(ns, means)
    seed_se = math.sqrt(float((dx ** 2 * var_log).sum())) / float(dx @ dx)
    return fit.slope, math.hypot(seed_se, fit.stderr)


def _measure_iteration(p: IterationScalingParams, backend: Backend, seed: int) -> Measurement:
    alphas, ses, means, failed = [], [], {}, 0
    for k in (2, 3):
        rows = []
        for i, n in enumerate(IS_NS):
            s = train_mlp_parity(n, k, p.width, p.lr, _IS["batch"], _IS["runs"], backend, seed + 7919 * i + 104729 * k,
                                 max_steps=200 * n ** (k - 1) + 2000)["steps"]
            failed += int((s < 0).sum())
            rows.append(np.where(s > 0, s, 200 * n ** (k - 1) + 2000))  # a failure counts as the budget (none seen)
        rows = np.array(rows, dtype=float)
        a, se = _fit_with_seed_error(IS_NS, rows)
        alphas.append(a)
        ses.append(se)
        means[f"k{k}"] = rows.mean(axis=1).tolist()
    d, se_d = alphas[1] - alphas[0], math.hypot(*ses)
    return Measurement(value=order_classes(d, se_d, _IS["z"]), stderr=None,
                       checks={"every_run_reached_accuracy": failed == 0},
                       info={"exponent_k2": alphas[0], "stderr_k2": ses[0], "exponent_k3": alphas[1], "stderr_k3": ses[1],
                             "increment": d, "increment_stderr": se_d, "n": list(IS_NS), "mean_steps": means,
                             "z": _IS["z"], "batch": _IS["batch"], "runs": _IS["runs"]})


register(Claim(
    id="parity.iteration_scaling",
    statement=("Online SGD (hinge loss, B = 32, fresh minibatches) on a one-hidden-layer ReLU MLP learns k-sparse "
               "parities in steps (to minibatch accuracy 0.95) whose fitted log-log exponent in n (over n = 6..12, "
               "24 seeds each) is larger at k = 3 than at k = 2, by an increment d with 0 < d < 1 at 2.5 standard "
               "errors: measured [sign(d - 0), sign(d - 1)] = [+1, -1] (0 where a z = 2.5 test cannot tell). The "
               "exponent is not independent of k, and does not grow like the signal-to-noise count n^{k-1} "
               "(increment 1); the drift-time heuristic n^{(k-1)/2} (increment 1/2) is consistent with the ordering. "
               "The absolute exponents (about 0.85 and 1.3 here) match neither heuristic and the local slope at k = 2 "
               "still falls with n (1.3 to 0.5 over n = 8..32), so n^O(k) as an asymptotic law is not resolved at "
               "these sizes."),
    reference=("Barak et al. 2022, arXiv 2207.08799, sec. 3-4 (n^O(k) iterations; the SQ count n^{k-1}); the ordering "
               "form, the test and the drift-time exponent (k - 1)/2 derived here (proofs_check/check_parity.py)"),
    params=IterationScalingParams,
    predicted=lambda p: order_classes(drift_time_exponent(3) - drift_time_exponent(2), 0.0, 1.0),
    measured=_measure_iteration,
    tolerance=lambda p, m, be: Tolerance(0.5, (
        "the measured entries are the outcomes (-1, 0, +1) of two-sided z = 2.5 tests on the exponent increment, whose "
        "standard error combines the seed spread of the mean steps (24 independent seeds per n, delta method) and "
        "the log-log fit's residual error; 0.5 only separates the integer outcomes")),
    error=lambda pred, meas: np.abs(np.asarray(pred, dtype=float) - np.asarray(meas, dtype=float)),
    mutants={
        "exponent independent of k": lambda p: order_classes(0.0, 0.0, 1.0),
        "exponent k - 1 (signal-to-noise count n^{k-1})": lambda p: order_classes(1.0, 0.0, 1.0),
        "exponent falls with k": lambda p: order_classes(-0.5, 0.0, 1.0),
    },
    closed_forms=("drift_time_exponent",),
))
