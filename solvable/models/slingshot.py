"""The slingshot mechanism: Adam's loss spikes after convergence, and the epsilon that suppresses them.

Adam on a one-dimensional quadratic ``f(theta) = h theta^2 / 2`` (gradient ``g = h theta``):

    m+ = beta1 m + (1 - beta1) g,    v+ = beta2 v + (1 - beta2) g^2,
    theta+ = theta - eta m_hat / (sqrt(v_hat) + eps),   m_hat = m+/(1 - beta1^t), v_hat = v+/(1 - beta2^t)

(``torch.optim.Adam``'s update). Freeze the preconditioner ``P = sqrt(v_hat) + eps``: the pair
``(theta, m)`` is then a linear recurrence whose eigenvalue leaves the unit disk through ``z = -1``
when the preconditioned curvature ``h/P`` crosses ``(2 + 2 beta1)/((1 - beta1) eta)``
(:func:`solvable.models.stability.adam_threshold`, 38/eta at beta1 = 0.9).

After convergence ``g -> 0``: the gradient's contribution to ``v`` vanishes and ``v`` decays like
``beta2^t``, so ``P`` falls to ``eps`` (not to 0: the step ``eta g/(sqrt(v) + eps)`` becomes plain
momentum GD with step ``eta/eps``). Hence, derived here:

* if ``h/eps < (2 + 2 beta1)/((1 - beta1) eta)``, every frozen system along the way is stable
  (``P >= eps``) and the iterate converges for good: no spike after convergence;
* otherwise, once ``sqrt(v) + eps`` falls below ``(1 - beta1) eta h/(2 + 2 beta1)`` the converged
  state is unstable: ``theta`` grows geometrically (a loss spike), ``g^2`` refills ``v`` until
  ``P`` is back above the threshold, the iterate converges again, ``v`` decays again, and the cycle
  repeats (a "slingshot").

So spikes recur after convergence iff ``eps < eps_c``,

    eps_c = (1 - beta1) eta h / (2 (1 + beta1))       (= eta h / 38 at beta1 = 0.9),

independent of ``beta2`` (which sets only the period of the cycles). The issue's description ("v
decays like beta2^t, so the effective step eta/(sqrt(v) + eps) grows until the preconditioned
sharpness crosses the threshold") holds with one correction: the effective step does not grow
without bound, it saturates at ``eta/eps``, which is exactly why a large enough eps suppresses the
spikes. Near the threshold the escaping root is ``z ~ -1 - eta (h/P - lambda_c)`` (derived in
``proofs_check/check_slingshot.py``), so the spikes grow fast (about ``38 delta`` nats per step at
``eps = eps_c (1 - delta)``, beta1 = 0.9) but start from a depth of hundreds of e-folds.

The simulator (:func:`simulate_adam`) runs a batch of eps values at once and carries ``(theta, m)``
as a log amplitude times a unit vector, so the hundreds of e-folds between spikes neither underflow
nor lose the sign structure (the recurrence is linear in ``(theta, m)`` given ``v``; ``g^2`` enters
``v`` through ``exp(2 log amplitude)``, which underflows to 0 only where it is negligible).

A spike (stated): after the amplitude ``A = sqrt(theta^2 + (m/h)^2)`` has fallen by a factor
``10^3`` below its last peak ("converged"), a rise by a factor ``10^3`` above its lowest value since
then (the loss ``h theta^2/2`` rises about ``10^6``-fold). Spikes "recur" when at least two are
counted.

References:
  Thilak, Littwin, Zhai, Saremi, Paiss, Susskind, 2022. "The slingshot mechanism: an empirical
  study of adaptive optimizers and the grokking phenomenon." arXiv 2206.04817.
  Cohen et al. 2022. "Adaptive gradient methods at the edge of stability." arXiv 2207.14484.
  Kingma, Ba, 2015. "Adam: a method for stochastic optimization." arXiv 1412.6980.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backend import Backend
from ..checks import check_int, check_range
from ..claims import Claim, Measurement, Params, Tolerance, param, register, relative_error
from . import stability

__all__ = [
    "epsilon_threshold",
    "simulate_adam",
    "AdamRun",
    "measure_epsilon_threshold",
    "EpsilonThresholdMeasurement",
    "SPIKE_FACTOR",
]

SPIKE_FACTOR = 1e3  # amplitude factor of a fall ("converged") and of a rise ("spike")


def _eta(eta: float) -> float:
    return check_range("eta", eta, 0.0, None, low_open=True)


def _h(h: float) -> float:
    return check_range("h", h, 0.0, None, low_open=True)


def _beta(name: str, beta: float) -> float:
    return check_range(name, beta, 0.0, 1.0, high_open=True)


# --------------------------------------------------------------------------------------------
# Closed form


def epsilon_threshold(eta: float, h: float, beta1: float) -> float:
    """``eps_c = (1 - beta1) eta h / (2 (1 + beta1))``: Adam's loss spikes recur after convergence
    on ``f = h theta^2/2`` iff ``eps < eps_c`` (``eta``: step size, ``h``: curvature, ``beta1``:
    momentum). It is the ``eps`` at which ``h/eps`` equals the frozen-preconditioner threshold
    ``(2 + 2 beta1)/((1 - beta1) eta)``.

    >>> round(epsilon_threshold(0.01, 2.0, 0.9) * 38 / (0.01 * 2.0), 12)
    1.0
    """
    b = _beta("beta1", beta1)
    return (1.0 - b) * _eta(eta) * _h(h) / (2.0 * (1.0 + b))


# --------------------------------------------------------------------------------------------
# Simulator


@dataclass
class AdamRun:
    """A batch of Adam runs on ``h theta^2/2``.

    Attributes:
      spikes_at: ``{step: (G,) int}`` spikes counted up to each requested step.
      log_amplitude: ``(G,)`` final ``log A`` (``A = sqrt(theta^2 + (m/h)^2)``).
      converged_at: ``(G,)`` first step at which the run counted as converged (-1: never).
      trace: ``(steps, G)`` ``log A`` per step when asked for, else None.
      sqrt_v: ``(G,)`` final ``sqrt(v_hat)``.
    """

    spikes_at: dict[int, np.ndarray]
    log_amplitude: np.ndarray
    converged_at: np.ndarray
    trace: np.ndarray | None
    sqrt_v: np.ndarray
    sqrt_v_trace: np.ndarray | None = None


def simulate_adam(eps: Any, eta: float, h: float, beta1: float, beta2: float, steps: int, backend: Backend,
                  theta0: float = 1.0, count_at: tuple[int, ...] = (), trace: bool = False) -> AdamRun:
    """Adam (with bias correction) on ``h theta^2/2`` for every ``eps`` in a batch, counting spikes.

    Args:
      eps: ``(G,)`` Adam epsilons (``>= 0``), one run each. eta, h, beta1, beta2: as in the module
        docstring. steps: number of Adam steps. theta0: start (``m = v = 0``).
      count_at: steps at which to record the running spike count (the final step always is).
      trace: keep ``log A`` and ``sqrt(v_hat)`` for every step (for plots).
    """
    eta, h = _eta(eta), _h(h)
    beta1, beta2 = _beta("beta1", beta1), _beta("beta2", beta2)
    steps = check_int("steps", steps, 1)
    theta0 = check_range("theta0", theta0, 0.0, None, low_open=True)
    e_np = np.asarray(eps, dtype=float).reshape(-1)
    for e in e_np:
        check_range("eps", float(e), 0.0, None)
    xp = backend.xp
    e = backend.asarray(e_np)
    G = e_np.size
    R = math.log(SPIKE_FACTOR)
    ones = xp.ones_like(e)
    u = ones  # theta / A
    w = 0 * ones  # (m / h) / A
    s = ones * math.log(theta0)  # log A
    v = 0 * ones
    peak = s
    low = s
    down = xp.zeros(G, dtype=xp.bool, device=None if backend.name == "numpy" else backend.device)
    spikes = 0 * ones
    conv = -ones
    marks = set(int(k) for k in count_at) | {steps}
    out: dict[int, np.ndarray] = {}
    tr = np.empty((steps, G)) if trace else None
    trv = np.empty((steps, G)) if trace else None
    for t in range(1, steps + 1):
        w = beta1 * w + (1.0 - beta1) * u
        g_true = h * u * xp.exp(s)  # the gradient itself: 0 where it underflows, i.e. is negligible
        v = beta2 * v + (1.0 - beta2) * g_true * g_true
        sv = xp.sqrt(v / (1.0 - beta2 ** t))
        u = u - eta * h * (w / (1.0 - beta1 ** t)) / (sv + e)
        n = xp.sqrt(u * u + w * w)
        s = s + xp.log(n)
        u, w = u / n, w / n
        fell = xp.logical_and(xp.logical_not(down), s <= peak - R)
        down = xp.logical_or(down, fell)
        conv = xp.where(xp.logical_and(fell, conv < 0), t * ones, conv)
        low = xp.where(fell, s, xp.minimum(low, s))
        rose = xp.logical_and(down, s >= low + R)
        spikes = spikes + xp.astype(rose, spikes.dtype)
        down = xp.logical_and(down, xp.logical_not(rose))
        peak = xp.where(rose, s, xp.maximum(peak, s))
        if trace:
            tr[t - 1] = backend.to_numpy(s)
            trv[t - 1] = backend.to_numpy(sv)
        if t in marks:
            out[t] = backend.to_numpy(spikes).astype(int)
    return AdamRun(out, backend.to_numpy(s), backend.to_numpy(conv).astype(int), tr, backend.to_numpy(sv), trv)


@dataclass
class EpsilonThresholdMeasurement:
    """The located boundaries. ``value``: the largest eps whose converged state is left again (>= 1
    spike) within ``2T`` steps (bracket midpoint); ``value_half``: the same within ``T``;
    ``recurring``: the largest eps with >= 2 spikes within ``2T`` (recurring slingshots); ``width``:
    the largest final relative bracket width; ``bracketed``: in round 1 the smallest eps left its
    converged state and the largest did not."""

    value: float
    value_half: float
    recurring: float
    width: float
    rounds: int
    bracketed: bool
    steps: int


def _largest_true(grid: np.ndarray, yes: np.ndarray) -> tuple[float, float, bool]:
    if not yes.any() or yes[-1]:
        return float("nan"), float("nan"), False
    i = int(np.flatnonzero(yes)[-1])
    return float(grid[i]), float(grid[i + 1]), bool(yes[0])


def measure_epsilon_threshold(eta: float, h: float, beta1: float, beta2: float, backend: Backend,
                              steps: int | None = None, grid: int = 24, rounds: int = 3) -> EpsilonThresholdMeasurement:
    """Locate, by multisection over batched runs, the largest eps at which the converged state is
    left again (a spike), within ``T`` and within ``2T`` steps, and the largest eps with recurring
    spikes (>= 2) within ``2T``.

    Round 1 tests ``eps = eta h * geomspace(1e-4, 1, grid + 1)`` (a scale from dimensions alone);
    each later round tests ``grid + 1`` points in ``[largest yes, next]`` of the previous round, one
    grid per criterion, all criteria in one batch. ``T = steps``, default ``60/(1 - beta2)``. The
    two budgets bound the finite-time bias (a run near the boundary needs long to regrow from the
    depth it fell to) by the shift between them.
    """
    eta, h = _eta(eta), _h(h)
    beta1, beta2 = _beta("beta1", beta1), _beta("beta2", beta2)
    T = int(math.ceil(60.0 / (1.0 - beta2))) if steps is None else check_int("steps", steps, 1)
    grid = check_int("grid", grid, 2)
    criteria = ((T, 1), (2 * T, 1), (2 * T, 2))
    g0 = np.geomspace(1e-4, 1.0, grid + 1) * eta * h
    grids = [g0 for _ in criteria]
    brackets = [(np.nan, np.nan)] * len(criteria)
    ok = True
    n = g0.size
    for r in range(check_int("rounds", rounds, 1)):
        run = simulate_adam(np.concatenate(grids), eta, h, beta1, beta2, 2 * T, backend, count_at=(T,))
        new = []
        for k, ((budget, need), gr) in enumerate(zip(criteria, grids)):
            yes = run.spikes_at[budget][k * n:(k + 1) * n] >= need
            lo, hi, good = _largest_true(gr, yes)
            if r == 0 and need == 1:
                ok = ok and good
            if not np.isfinite(lo):
                ok = False
                lo, hi = gr[0], gr[-1]
            brackets[k] = (lo, hi)
            new.append(np.linspace(lo, hi, grid + 1))
        grids = new
    mids = [0.5 * (lo + hi) for lo, hi in brackets]
    width = max((hi - lo) / hi for lo, hi in brackets[:2])
    return EpsilonThresholdMeasurement(mids[1], mids[0], mids[2], width, rounds, ok, T)


# --------------------------------------------------------------------------------------------
# Claims


@dataclass(frozen=True)
class EpsilonThresholdParams(Params):
    eta: float = param(0.01, low=0, low_open=True, domain=(3e-3, 3e-2), log=True, doc="Adam step size eta")
    h: float = param(2.0, low=0, low_open=True, domain=(0.5, 5.0), log=True, doc="curvature h of f = h theta^2/2")
    beta1: float = param(0.9, low=0, high=1, high_open=True, domain=(0.5, 0.9), doc="Adam momentum beta1")
    beta2: float = param(0.98, low=0, high=1, high_open=True, domain=(0.97, 0.99),
                         doc="Adam second-moment decay beta2 (sets the cycle period only)")


def _measure_eps(p: EpsilonThresholdParams, backend: Backend, seed: int) -> Measurement:
    # deterministic dynamics: the seed has nothing to draw
    m = measure_epsilon_threshold(p.eta, p.h, p.beta1, p.beta2, backend)
    return Measurement(value=m.value, checks={"boundary_bracketed": m.bracketed},
                       info={"value_at_T": m.value_half, "T": m.steps, "2T": 2 * m.steps,
                             "recurring_spikes_below": m.recurring, "recurring_over_value": m.recurring / m.value,
                             "bracket_rel_width": m.width, "shift_T_to_2T": abs(m.value - m.value_half) / m.value})


def _tol_eps(p: EpsilonThresholdParams, m: Measurement, backend: Backend) -> Tolerance:
    shift = float(m.info.get("shift_T_to_2T", float("nan")))
    width = float(m.info.get("bracket_rel_width", float("nan")))
    return Tolerance(shift + width, (
        f"finite-budget bias plus bracket width: a run at eps = eps_c (1 - delta) needs ~ t0 + D/(c delta) steps "
        f"to spike twice (D: depth in e-folds, c delta: growth rate per step), so the located boundary sits below "
        f"eps_c by K/(T - t0); the shift between budgets T and 2T, K T/((T - t0)(2T - t0)) = {shift:.1e}, bounds "
        f"the bias at 2T, K/(2T - t0); plus the final bracket's relative width {width:.1e}"))


register(Claim(
    id="slingshot.epsilon_threshold",
    statement=("Adam (eta, beta1, beta2, eps, bias-corrected) on f = h theta^2/2 from theta = 1 leaves its converged "
               "state again (a spike: after the amplitude sqrt(theta^2 + (m/h)^2) has fallen 10^3-fold from its peak, "
               "a rise 10^3-fold above its low) iff eps < eps_c = (1 - beta1) eta h/(2 (1 + beta1)) (eta h/38 at "
               "beta1 = 0.9), independent of beta2: after convergence v decays like beta2^t, P = sqrt(v) + eps falls "
               "to eps (the effective step saturates at eta/eps; it does not grow without bound as the issue's "
               "wording suggests), and h/P crosses Adam's frozen-preconditioner threshold (2 + 2 beta1)/((1 - beta1) "
               "eta) iff eps < eps_c. Where the issue's 'spikes recur iff eps < eps_c' fails: just below eps_c the "
               "first spike ends on a stable period-2 orbit theta = +-(eps_c - eps)/h (sqrt(v) = eps_c - eps, the "
               "loss stays at (eps_c - eps)^2/(2h), no further spikes); spikes recur (>= 2) only below a lower "
               "eps_* (0.9967 eps_c at the defaults, 0.906 eps_c at beta1 = 0.5; reported in info). Asserted for "
               "1 - beta2 << 1 - beta1 (beta1 <= 0.9, beta2 in [0.97, 0.99]): at beta1 = beta2 = 0.95 the iterate "
               "never converges deeply, it hovers at the edge. Measured: the largest eps with a spike within 2T = "
               "120/(1 - beta2) steps, located by multisection over batched runs."),
    reference=("derived here from the frozen-preconditioner threshold of Cohen et al. 2022, arXiv 2207.14484 "
               "(solvable.models.stability.adam_threshold); mechanism: Thilak et al. 2022, arXiv 2206.04817"),
    params=EpsilonThresholdParams,
    predicted=lambda p: epsilon_threshold(p.eta, p.h, p.beta1),
    measured=_measure_eps,
    tolerance=_tol_eps,
    sweep="beta1", sweep_values=(0.5, 0.8, 0.9, 0.95),
    mutants={
        "GD threshold 2/eta (momentum ignored): eta h/2": lambda p: p.eta * p.h / 2.0,
        "threshold (2 + 2 beta1)/eta of heavy ball: eta h/(2 + 2 beta1)": lambda p: p.eta * p.h / (2.0 + 2.0 * p.beta1),
        "factor 2 dropped: (1 - beta1) eta h/(1 + beta1)": lambda p: (1 - p.beta1) * p.eta * p.h / (1 + p.beta1),
        "times sqrt(1 - beta2) (v's stationary scale (1 - beta2) g^2)": lambda p: (1 - p.beta1) * p.eta * p.h
        * math.sqrt(1.0 - p.beta2) / (2 * (1 + p.beta1)),
    },
    closed_forms=("epsilon_threshold", "stability.adam_threshold"),
    # A recurrence of ~75 scalars for 3 x 6000 steps: torch's per-operation dispatch dominates (34 s on
    # torch CPU against 1 s on numpy, measured); simulate_adam itself runs on torch and is tested there.
    backends=("numpy",),
))


# ============================================================================================
# slingshot.norm_cycles: spikes of a small model start where the preconditioned sharpness crosses Adam's threshold
#
# Model: least squares on +-1 labels, f(w) = |X w - y|^2/(2 n), X: (n, d) Gaussian inputs with column scales
# (1, 0.6, 0.3) (an anisotropic Hessian H = X^T X/n, exact and constant), w in R^d (the model's only, i.e. last, layer).
# Adam with bias correction at a small eps (1e-7): after convergence v decays, P = sqrt(v_hat) + eps falls, the
# preconditioned sharpness S = lambda_max(P^-1/2 H P^-1/2) grows until it crosses (2 + 2 beta1)/((1 - beta1) eta),
# the converged state turns unstable, the loss spikes (and |w| bursts away from |w*|), g^2 refills v, S drops, and
# the cycle repeats. A spike (stated): after the loss has fallen 10^6-fold below its last peak, a rise 10^6-fold above
# its low to a loss above 1e-12 (far above the float64 floor ~1e-30, where round-off makes small spikes of its own).
# Its onset is the low. Measured: eta S at the onsets.


def simulate_norm_cycles(eta: float, beta1: float, runs: int, steps: int, backend: Backend, seed: int,
                         beta2: float = 0.99, eps: float = 1e-7, n: int = 16, scales: tuple[float, ...] = (1.0, 0.6, 0.3)
                         ) -> dict:
    """Batched Adam on ``runs`` least-squares problems (one data draw each). Returns numpy ``(steps, runs)`` arrays
    ``"loss"``, ``"norm"`` (``|w|``) and ``"eta_sharpness"`` (``eta lambda_max(P^-1/2 H P^-1/2)`` with the ``P`` the
    step used), and ``"norm_star"`` (``|w*|``, ``(runs,)``)."""
    eta, beta1, beta2 = _eta(eta), _beta("beta1", beta1), _beta("beta2", beta2)
    eps = check_range("eps", eps, 0.0, None)
    runs, steps = check_int("runs", runs, 1), check_int("steps", steps, 1)
    xp = backend.xp
    rng = backend.rng(seed)
    d = len(scales)
    X = rng.normal((runs, n, d), 1.0) * backend.asarray(np.asarray(scales, dtype=float))
    y = xp.sign(rng.normal((runs, n), 1.0))
    Xn = backend.to_numpy(X)
    H_np = np.einsum("rni,rnj->rij", Xn, Xn) / n
    w_star = np.linalg.solve(H_np, (np.einsum("rni,rn->ri", Xn, backend.to_numpy(y)) / n)[..., None])[..., 0]
    H, ws = backend.asarray(H_np), backend.asarray(w_star)
    w = xp.zeros((runs, d), dtype=backend.float_dtype)
    m, v = xp.zeros_like(w), xp.zeros_like(w)
    losses, norms, Ps = [], [], []
    for t in range(steps):
        e = w - ws
        g = xp.matmul(H, e[..., None])[..., 0]
        losses.append(0.5 * xp.sum(e * g, axis=1))
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        P = xp.sqrt(v / (1 - beta2 ** (t + 1))) + eps
        Ps.append(P)
        w = w - eta * m / (1 - beta1 ** (t + 1)) / P
        norms.append(xp.sqrt(xp.sum(w * w, axis=1)))
    loss = backend.to_numpy(xp.stack(losses))
    Pn = backend.to_numpy(xp.stack(Ps))  # (steps, runs, d)
    s = 1.0 / np.sqrt(Pn)
    S = np.linalg.eigvalsh(s[..., :, None] * H_np[None] * s[..., None, :])[..., -1] * eta
    return {"loss": loss, "norm": backend.to_numpy(xp.stack(norms)), "eta_sharpness": S,
            "norm_star": np.linalg.norm(w_star, axis=1)}


def spike_onsets(loss: np.ndarray, decades: float = 6.0, floor: float = 1e-12) -> list[list[tuple[int, int]]]:
    """Per run (columns of ``loss``), the spikes as ``(onset, top)`` steps: after the loss has fallen ``decades`` below
    its last peak ("converged"), the first step at which it is ``decades`` above its low since and above ``floor``
    (the top); the onset is the low."""
    lL = np.log10(np.maximum(np.asarray(loss, dtype=float), 1e-300))
    out = []
    for r in range(lL.shape[1]):
        peak, low, tlow, conv, spikes = lL[0, r], np.inf, 0, False, []
        for t in range(lL.shape[0]):
            x = lL[t, r]
            if not conv:
                peak = max(peak, x)
                if x < peak - decades:
                    conv, low, tlow = True, x, t
            else:
                if x < low:
                    low, tlow = x, t
                if x > low + decades and x > math.log10(floor):
                    spikes.append((tlow, t))
                    conv, peak = False, x
        out.append(spikes)
    return out


@dataclass(frozen=True)
class NormCyclesParams(Params):
    eta: float = param(0.01, low=0, low_open=True, domain=(0.007, 0.014), log=True, doc="Adam step size eta")
    beta1: float = param(0.9, low=0, high=1, high_open=True, domain=(0.8, 0.9), doc="Adam momentum beta1")


_NC = dict(runs=24, steps=3000, beta2=0.99, eps=1e-7, window=50, z=3.0)


def _measure_nc(p: NormCyclesParams, backend: Backend, seed: int) -> Measurement:
    out = simulate_norm_cycles(p.eta, p.beta1, _NC["runs"], _NC["steps"], backend, seed, beta2=_NC["beta2"],
                               eps=_NC["eps"])
    if not np.isfinite(out["loss"]).all():
        bad = np.flatnonzero(~np.isfinite(out["loss"]).all(axis=1))
        return Measurement(value=float("nan"), diverged=True, diverged_step=int(bad[0]))
    S = out["eta_sharpness"]
    spikes = spike_onsets(out["loss"])
    onsets = np.array([S[a, r] for r, sp in enumerate(spikes) for a, _ in sp])
    # the threshold as read off the measured S (a crossing: the largest S in the window before the top)
    peaks = np.array([S[max(0, b - _NC["window"]):b + 1, r].max() for r, sp in enumerate(spikes) for _, b in sp])
    # norm bursts: the largest |w|/|w*| - 1 between onset and top, against the same at the onset
    bursts = np.array([np.abs(out["norm"][a:b + 1, r] / out["norm_star"][r] - 1).max()
                       for r, sp in enumerate(spikes) for a, b in sp])
    crossed = (S.max(axis=0) >= np.median(onsets)) if onsets.size else np.zeros(S.shape[1], bool)
    spiked = np.array([len(sp) > 0 for sp in spikes])
    if onsets.size < 10:
        return Measurement(value=float("nan"), checks={"at_least_10_spikes": False}, info={"spikes": int(onsets.size)})
    q1, q3 = np.percentile(onsets, [25, 75])
    lo, hi = float(np.median(onsets)), float(np.median(peaks))
    return Measurement(value=0.5 * (lo + hi), stderr=None,
                       checks={"at_least_10_spikes": True, "no_spike_without_reaching_the_onset_level":
                               bool(not (spiked & ~crossed).any())},
                       info={"bracket": [lo, hi], "spikes": int(onsets.size), "runs_with_spikes": int(spiked.sum()),
                             "onset_quartiles": [float(q1), float(q3)], "median_peak_before_top": float(np.median(peaks)),
                             "median_norm_burst": float(np.median(bursts)), **_NC})


def _tol_nc(p: NormCyclesParams, m: Measurement, backend: Backend) -> Tolerance:
    lo, hi = m.info.get("bracket", [float("nan")] * 2)
    rel = (hi - lo) / (hi + lo)
    return Tolerance(rel, (
        f"the measured bracket's half-width ({rel:.3f} relative): the crossing lies between the median eta S at the "
        f"spike onsets (the loss lows, reached at or before the crossing while other modes still decay) and the "
        f"median of the largest eta S in the {_NC['window']} steps before the tops (S keeps rising through the "
        f"crossing until g^2 refills v); the measured value is the bracket's midpoint"))


register(Claim(
    id="slingshot.norm_cycles",
    statement=("Adam (eps = 1e-7, beta2 = 0.99, bias-corrected) on least squares (n = 16 Gaussian inputs in d = 3 "
               "with column scales 1, 0.6, 0.3, +-1 labels; exact Hessian X^T X/n) converges, then the loss spikes "
               "again and again, |w| bursting away from |w*| with each spike; the spikes start (at the loss low) where "
               "the preconditioned sharpness eta lambda_max(P^-1/2 H P^-1/2), P = sqrt(v_hat) + eps, equals Adam's "
               "frozen threshold 2(1 + beta1)/(1 - beta1) (38 at beta1 = 0.9): the median over ~100-400 spikes "
               "(24 data draws, 3000 steps) of eta S at the onsets (36.1 at beta1 = 0.9) and the median of the largest eta S "
               "in the 50 steps before the tops (40.2) bracket it, and their midpoint matches it within the bracket's "
               "half-width (~5%); "
               "runs whose S never reaches it do not spike. Where it fails: on logistic regression (separable data) "
               "the Hessian vanishes with the gradient, S hovers at the threshold without loss spikes (measured), so "
               "the slingshot needs a loss whose curvature stays as the gradient vanishes."),
    reference=("Thilak et al. 2022, arXiv 2206.04817 (slingshots: norm bursts with loss spikes); threshold from Cohen "
               "et al. 2022, arXiv 2207.14484 (solvable.models.stability.adam_threshold); the tiny model and the "
               "onset measure defined here"),
    params=NormCyclesParams,
    predicted=lambda p: p.eta * stability.adam_threshold(p.eta, p.beta1),
    measured=_measure_nc,
    tolerance=_tol_nc,
    error=relative_error,
    mutants={
        "GD threshold 2/eta (momentum ignored)": lambda p: 2.0,
        "2/(1 - beta1) (the 1 + beta1 dropped)": lambda p: 2.0 / (1.0 - p.beta1),
        "heavy-ball threshold (2 + 2 beta1)/eta": lambda p: 2.0 + 2.0 * p.beta1,
    },
    closed_forms=("stability.adam_threshold",),
    backends=("numpy",),
))
