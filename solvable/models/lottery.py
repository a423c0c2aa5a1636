"""Lottery tickets: iterative magnitude pruning (IMP) in its solvable case, sparse linear regression.

Data ``y = X w* + eps`` with isotropic Gaussian features ``X_ij ~ N(0, 1)`` (``n`` samples, ``d``
features), an ``s``-sparse teacher ``w*`` (``s`` entries ``+-beta`` on a random support ``S``) and
noise ``eps ~ N(0, sigma^2)``. IMP: fit least squares on the kept features, prune the smallest
magnitudes among them (a fraction ``rate`` of the kept ones per round, at least one), refit, repeat
down to the target sparsity ``1 - s/d``. The fit on a mask is the min-norm least-squares solution
with the pruned weights held at zero (for ``m <= n`` kept Gaussian features it is the unique
least-squares fit, so the weights it is rewound to do not change where the refit ends).

Once pruning has kept exactly the support, ``w_hat - w* = (X_S^T X_S)^{-1} X_S^T eps`` and the
excess risk on a fresh isotropic sample is ``||w_hat - w*||^2``, with mean

    E ||w_hat - w*||^2 = sigma^2 E tr (X_S^T X_S)^{-1} = sigma^2 s / (n - s - 1)

(inverse-Wishart mean ``E[(X_S^T X_S)^{-1}] = I_s / (n - s - 1)``, ``n > s + 1``). Pruning past
``s`` loses the support; the sparsity at which it first drops a teacher coordinate is reported.

Symbols: ``n`` samples, ``d`` features, ``s`` support size, ``sigma`` noise scale, ``beta`` teacher
magnitude, ``rate`` fraction pruned per round, ``draws`` independent datasets (the batch axis).

References:
  Frankle, Carbin, 2019. "The lottery ticket hypothesis: finding sparse, trainable neural networks." ICLR, arXiv 1803.03635.
  Frankle, Dziugaite, Roy, Carbin, 2020. "Linear mode connectivity and the lottery ticket hypothesis." ICML, arXiv 1912.05635 (rewinding to an early step k).
  Muirhead, 1982. "Aspects of multivariate statistical theory." Wiley, Thm 3.2.12 (inverse-Wishart mean).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backend import Backend
from ..checks import check_int, check_range
from ..claims import Claim, Measurement, Params, Tolerance, max_abs_error, param, register

__all__ = [
    "check_sparsity",
    "check_rewind",
    "prune_schedule",
    "linear_ticket_risk",
    "imp_linear",
    "sparse_teacher_data",
]


# --------------------------------------------------------------------------------------------
# Input checks


def check_sparsity(name: str, value: Any) -> float:
    """A sparsity (fraction of weights pruned): a number in ``[0, 1)``."""
    return check_range(name, value, 0.0, 1.0, high_open=True)


def check_rewind(rewind_step: Any, train_steps: Any) -> tuple[int, int]:
    """A rewinding step ``k`` in ``[0, train_steps]`` (``ValueError`` naming it past the end)."""
    train_steps = check_int("train_steps", train_steps, 1, None)
    return check_int("rewind_step", rewind_step, 0, train_steps), train_steps


def prune_schedule(d: int, keep: int, rate: float) -> list[int]:
    """Kept counts of IMP from ``d`` down to ``keep``: ``m+ = max(keep, min(m - 1, floor(m (1 - rate))))``."""
    d = check_int("d", d, 1, None)
    keep = check_int("keep", keep, 1, d)
    rate = check_range("rate", rate, 0.0, 1.0, low_open=True, high_open=True)
    out = [d]
    while out[-1] > keep:
        m = out[-1]
        out.append(max(keep, min(m - 1, math.floor(m * (1 - rate)))))
    return out


# --------------------------------------------------------------------------------------------
# Closed form


def linear_ticket_risk(sigma: float, s: int, n: int) -> float:
    """Expected excess risk of the least-squares refit on the true support of ``s`` isotropic
    Gaussian features from ``n`` samples: ``sigma^2 s / (n - s - 1)`` (needs ``n > s + 1``)."""
    sigma = check_range("sigma", sigma, 0.0, None)
    s = check_int("s", s, 1, None)
    n = check_int("n", n, s + 2, None)
    return sigma ** 2 * s / (n - s - 1)


# --------------------------------------------------------------------------------------------
# Simulation: batched IMP


def sparse_teacher_data(be: Backend, seed: int, draws: int, n: int, d: int, s: int, sigma: float, beta: float):
    """``draws`` datasets: ``X (draws, n, d)``, ``y (draws, n)``, teacher ``w (draws, d)`` with ``s``
    entries ``+-beta`` on a random support per draw."""
    xp = be.xp
    rng = be.rng(seed)
    X = rng.normal((draws, n, d))
    perm = rng.permutations(d, draws)
    on = be.asarray(be.to_numpy(perm) < s)                       # support: the first s of a permutation
    signs = be.asarray(np.sign(be.to_numpy(rng.uniform((draws, d), -1.0, 1.0))))
    w = beta * on * signs
    y = xp.sum(X * w[:, None, :], axis=-1) + rng.normal((draws, n), scale=sigma)
    return X, y, w


def masked_lstsq(be: Backend, X, y, mask):
    """Least squares on the kept columns, pruned weights zero: solves
    ``(X_m^T X_m + diag(1 - mask)) w = X_m^T y`` with ``X_m = X diag(mask)``, batched."""
    xp = be.xp
    Xm = X * mask[:, None, :]
    G = xp.matmul(xp.permute_dims(Xm, (0, 2, 1)), Xm)
    d = X.shape[-1]
    eye = be.asarray(np.eye(d))
    G = G + eye[None, :, :] * (1 - mask)[:, :, None]
    rhs = xp.matmul(xp.permute_dims(Xm, (0, 2, 1)), y[:, :, None])
    return xp.linalg.solve(G, rhs)[:, :, 0] * mask


def imp_linear(be: Backend, X, y, sparsity: float, rate: float = 0.3, rewind_step: int = 0,
               train_steps: int = 1, support=None):
    """Iterative magnitude pruning on batched least squares down to ``sparsity`` (fraction pruned,
    in ``[0, 1)``): fit, prune the smallest kept magnitudes (``prune_schedule``), refit.

    The fit on a mask is exact least squares (the limit of training), so rewinding to step
    ``rewind_step`` of ``train_steps`` does not change where a refit ends; both are validated.
    With ``support`` (a 0/1 array ``(draws, d)``) pruning continues to one weight and the
    sparsity at which each draw first loses a support coordinate is returned too.

    Returns ``(w, mask, lost_at)``: the refit at ``sparsity``, its mask, and (with ``support``)
    the per-draw sparsity at which the support was first lost (``nan`` without ``support``).
    """
    sparsity = check_sparsity("sparsity", sparsity)
    check_rewind(rewind_step, train_steps)
    xp = be.xp
    draws, n, d = X.shape
    keep = max(1, int(round(d * (1 - sparsity))))
    counts = prune_schedule(d, keep, rate)
    if support is not None:
        counts = counts + list(range(keep - 1, 0, -1))
    mask = be.asarray(np.ones((draws, d)))
    w = masked_lstsq(be, X, y, mask)
    w_target, mask_target = (w, mask) if keep == d else (None, None)
    lost = np.full(draws, np.nan)
    for m_prev, m in zip(counts[:-1], counts[1:]):
        score = xp.where(mask > 0, xp.abs(w), be.asarray(np.full((draws, d), np.inf)))
        rank = xp.argsort(xp.argsort(score, axis=-1), axis=-1)      # 0 = smallest kept magnitude
        mask = be.asarray(be.to_numpy(rank) >= (m_prev - m)) * mask
        w = masked_lstsq(be, X, y, mask)
        if m == keep:
            w_target, mask_target = w, mask
        if support is not None:
            has = np.all(be.to_numpy(mask) >= be.to_numpy(support), axis=-1)
            newly = np.isnan(lost) & ~has
            lost[newly] = 1 - m / d
    return w_target, mask_target, lost


# --------------------------------------------------------------------------------------------
# Claim


@dataclass(frozen=True)
class LinearTicketParams(Params):
    n: int = param(12, low=3, high=10**4, integer=True, domain=(11, 16), doc="samples n")
    d: int = param(8, low=2, high=1000, integer=True, domain=(5, 8), doc="features d")
    s: int = param(3, low=1, high=1000, integer=True, domain=(2, 4), doc="teacher support size s")
    sigma: float = param(0.3, low=0, low_open=True, domain=(0.1, 0.4), log=True, doc="noise scale sigma")
    beta: float = param(2.0, low=0, low_open=True, domain=(2.0, 3.0), doc="teacher magnitude beta")
    rate: float = param(0.3, low=0, high=1, low_open=True, high_open=True, domain=(0.2, 0.5),
                        doc="fraction of kept weights pruned per round")
    draws: int = param(20000, low=100, high=10**7, integer=True, domain=(20000, 24000), doc="datasets (Monte Carlo draws)")

    def check(self) -> None:
        if not self.s < self.d:
            raise ValueError(f"s={self.s} is out of range: s must be an integer in [1, d - 1] = [1, {self.d - 1}]")
        if not self.n >= self.d + 2:
            raise ValueError(f"n={self.n} is out of range: n must be an integer >= d + 2 = {self.d + 2} "
                             "(the dense least-squares fit needs a finite-variance inverse)")


Z = 4.0


def _ticket_measure(p: LinearTicketParams, be: Backend, seed: int) -> Measurement:
    X, y, w_star = sparse_teacher_data(be, seed, p.draws, p.n, p.d, p.s, p.sigma, p.beta)
    support = be.asarray(be.to_numpy(w_star) != 0)
    w, mask, lost = imp_linear(be, X, y, 1 - p.s / p.d, p.rate, support=support)
    found = np.all(be.to_numpy(mask) == be.to_numpy(support), axis=-1)
    excess = np.sum((be.to_numpy(w) - be.to_numpy(w_star)) ** 2, axis=-1)[found]
    k = int(found.sum())
    mean = float(excess.mean()) if k else float("nan")
    stderr = float(excess.std(ddof=1) / math.sqrt(k)) if k > 1 else float("inf")
    return Measurement(
        value=mean, stderr=stderr,
        checks={"support_found_in_95pct_of_draws": k >= 0.95 * p.draws,
                "support_lost_only_past_target": bool(np.all(lost[found] > 1 - p.s / p.d - 1e-12))},
        info={"found_fraction": k / p.draws,
              "support_lost_sparsity_mean": float(np.nanmean(lost)),
              "support_lost_sparsity_min": float(np.nanmin(lost)),
              "target_sparsity": 1 - p.s / p.d,
              "draws_used": k})


register(Claim(
    id="lottery.linear_ticket",
    statement=("Linear regression, isotropic Gaussian features (n samples, d features), s-sparse teacher of "
               "magnitude beta, noise sigma: IMP (least-squares fit, prune a fraction rate of the smallest "
               "kept magnitudes, refit) down to sparsity 1 - s/d keeps the support, and the refit's "
               "expected excess risk ||w_hat - w*||^2 (over the draws that kept the support, >= 95% on the "
               "domain) is sigma^2 s / (n - s - 1) (inverse-Wishart mean); "
               "pruning one weight further loses the support (sparsity reported in info)."),
    reference="derived here; Frankle and Carbin 2019, arXiv 1803.03635 (IMP); Muirhead 1982 Thm 3.2.12",
    params=LinearTicketParams,
    predicted=lambda p: linear_ticket_risk(p.sigma, p.s, p.n),
    measured=_ticket_measure,
    tolerance=lambda p, m, be: Tolerance(
        Z * m.stderr, f"Monte Carlo: {Z:g} standard errors of the mean excess risk over {m.info['draws_used']} draws"),
    error=max_abs_error,
    mutants={"n - s for n - s - 1": lambda p: p.sigma ** 2 * p.s / (p.n - p.s),
             "n for n - s - 1": lambda p: p.sigma ** 2 * p.s / p.n,
             "sigma for sigma^2": lambda p: p.sigma * p.s / (p.n - p.s - 1)},
    closed_forms=("linear_ticket_risk",),
    sweep="n", sweep_values=(10, 12, 16),
))
