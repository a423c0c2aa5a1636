"""Lottery tickets, linear case: the refit's excess risk derived (sympy).

``w_hat - w* = (X^T X)^{-1} X^T eps`` on the found support (``X`` is ``n x s``), so
``||w_hat - w*||^2 = eps^T X (X^T X)^{-2} X^T eps``; averaging over ``eps ~ N(0, sigma^2 I)`` gives
``sigma^2 tr (X^T X)^{-1}`` (checked on a symbolic 3 x 2 design). The diagonal entry
``[(X^T X)^{-1}]_ii`` is the reciprocal of the residual sum of squares of column ``i`` regressed on
the other ``s - 1`` columns: a chi-square with ``k = n - s + 1`` degrees of freedom (a Gaussian
vector projected off an independent ``(s - 1)``-dimensional span). ``E[1/chi2_k]`` is integrated
from the chi-square density, giving ``E[(X^T X)^{-1}] = I / (n - s - 1)`` on the diagonal, and the
risk ``sigma^2 s / (n - s - 1)``, compared to ``lottery.linear_ticket_risk``.

MLP tickets (``lottery.tickets_match_dense``): the claim's relation is measured, so what is derived is
the pruning arithmetic it rests on. IMP's rule ``m_{r+1} = floor(m_r (1 - p))`` lies between the
recurrences ``u_{r+1} = (1 - p) u_r`` and ``l_{r+1} = (1 - p) l_r - 1`` (``x - 1 < floor x <= x``), solved
with ``rsolve``: ``u_r = N (1 - p)^r``, ``l_r = (N + 1/p)(1 - p)^r - 1/p``, so the sparsity after ``r``
rounds is ``1 - (1 - p)^r`` up to ``(1 - (1 - p)^r) / (p N)``, exact at ``p = 1/2`` when ``2^r`` divides
``N`` (the claim's layers: 512, 1024, 64 weights, r <= 5); the rounds to a target sparsity ``s`` are at
most ``ceil(log(1 - s) / log(1 - p))``. A random mask keeping ``c`` of a layer's ``N = a b`` weights
leaves a unit with no input with the hypergeometric probability ``C(N - a, c) / C(N, c)``, which is
``prod_{i<a} (N - c - i)/(N - i)`` (derived), about ``(1 - c/N)^a``: 0.13 for a 32-wide layer at
sparsity 15/16, the dead units the random-pruning control suffers and the ticket does not.
"""

from __future__ import annotations

import numpy as np
import sympy as sp

from solvable.models import lottery
from solvable.testing import proves

import math

sigma, x = sp.symbols("sigma x", positive=True)
n, s, k = sp.symbols("n s k", positive=True, integer=True)


def _noise_average_is_sigma2_trace():
    """E_eps ||A^{-1} X^T eps||^2 = sigma^2 tr(X A^{-2} X^T) = sigma^2 tr A^{-1}, A = X^T X, on a 3 x 2 X."""
    X = sp.Matrix(3, 2, sp.symbols("x0:6", real=True))
    A = X.T * X
    Ainv = A.inv()
    cov = sigma ** 2 * sp.eye(3)                                  # E[eps eps^T]
    averaged = (Ainv * X.T * cov * X * Ainv).trace()              # E tr(A^-1 X^T eps eps^T X A^-1)
    assert sp.simplify(averaged - sigma ** 2 * Ainv.trace()) == 0


def _inverse_chi2_mean(dof: int):
    density = x ** (sp.Rational(dof, 2) - 1) * sp.exp(-x / 2) / (2 ** sp.Rational(dof, 2) * sp.gamma(sp.Rational(dof, 2)))
    assert sp.simplify(sp.integrate(density, (x, 0, sp.oo)) - 1) == 0
    return sp.simplify(sp.integrate(density / x, (x, 0, sp.oo)))


@proves("lottery.linear_ticket")
def check_linear_ticket_risk_from_inverse_wishart():
    _noise_average_is_sigma2_trace()
    # E[1/chi2_k] = 1/(k - 2) for every k > 2 we integrate
    for dof in (3, 4, 7):
        assert sp.simplify(_inverse_chi2_mean(dof) - sp.Rational(1, dof - 2)) == 0
    diag_mean = 1 / ((n - s + 1) - 2)                             # k = n - s + 1 degrees of freedom
    risk = sp.simplify(sigma ** 2 * s * diag_mean)                # sigma^2 tr E[(X^T X)^{-1}]
    f = sp.lambdify((sigma, s, n), risk)
    for sg, ss, nn in [(0.3, 3, 12), (1.0, 1, 3), (0.7, 5, 20), (2.0, 2, 40)]:
        np.testing.assert_allclose(lottery.linear_ticket_risk(sg, ss, nn), f(sg, ss, nn), rtol=1e-14)
    # s = 1: (X^T X) is chi2_n itself, the direct integral agrees
    assert sp.simplify(_inverse_chi2_mean(9) - diag_mean.subs({n: 9, s: 1})) == 0


# ---- lottery.tickets_match_dense: IMP's pruning arithmetic

r_, N_, p_ = sp.symbols("r N p", positive=True)
u, l = sp.Function("u"), sp.Function("l")


def _envelopes():
    upper = sp.rsolve(u(r_ + 1) - (1 - p_) * u(r_), u(r_), {u(0): N_})
    lower = sp.rsolve(l(r_ + 1) - (1 - p_) * l(r_) + 1, l(r_), {l(0): N_})
    # the solutions satisfy their recurrences and start at N
    assert sp.simplify(upper.subs(r_, r_ + 1) - (1 - p_) * upper) == 0
    assert sp.simplify(lower.subs(r_, r_ + 1) - ((1 - p_) * lower - 1)) == 0
    assert sp.simplify(upper.subs(r_, 0) - N_) == 0 and sp.simplify(lower.subs(r_, 0) - N_) == 0
    assert sp.simplify(upper - N_ * (1 - p_) ** r_) == 0
    assert sp.simplify(lower - ((N_ + 1 / p_) * (1 - p_) ** r_ - 1 / p_)) == 0
    return sp.lambdify((N_, p_, r_), upper), sp.lambdify((N_, p_, r_), lower)


def _dead_unit_probability():
    """P(a row of fan-in a keeps none of c random picks among N = a b): C(N - a, c) / C(N, c)."""
    a, c, N = sp.symbols("a c N", positive=True, integer=True)
    hyper = sp.binomial(N - a, c) / sp.binomial(N, c)
    prod = sp.Product((N - c - sp.Symbol("i")) / (N - sp.Symbol("i")), (sp.Symbol("i"), 0, a - 1))
    for aa, bb, cc in [(3, 2, 2), (4, 3, 5), (32, 32, 64), (16, 32, 32)]:
        v = {a: aa, N: aa * bb, c: cc}
        assert sp.simplify(sp.combsimp(hyper.subs(v)) - prod.subs(v).doit()) == 0
    return lambda aa, cc, NN: float(hyper.subs({a: aa, c: cc, N: NN}))   # exact: gamma overflows in floats


@proves("lottery.tickets_match_dense")
def check_imp_sparsity_schedule_and_random_mask_counts():
    up, lo = _envelopes()
    rng = np.random.default_rng(0)
    for _ in range(200):
        widths = tuple(int(w) for w in rng.integers(1, 40, size=rng.integers(2, 5)))
        rate = float(rng.uniform(0.05, 0.95))
        rounds = int(rng.integers(0, 8))
        counts = lottery.imp_schedule(widths, None, rate, rounds=rounds)
        for li, N in enumerate(lottery.layer_counts(widths)):
            for r in range(rounds + 1):
                m = counts[r][li]
                # the at-least-one rule (m - 1 when floor(m (1 - p)) = m) and the floor at 1 keep m in
                # [max(1, l_r), u_r] until the layer is down to one weight
                assert m <= up(N, rate, r) + 1e-9 or m == 1, (widths, rate, r, m)
                assert m > lo(N, rate, r) - 1e-9 or r == 0, (widths, rate, r, m)
    # the claim's layers at rate 1/2: exact sparsities 1 - 2^-r
    for r in (4, 5):
        counts = lottery.imp_schedule(lottery.TICKET_WIDTHS, None, 0.5, rounds=r)
        totals = lottery.layer_counts(lottery.TICKET_WIDTHS)
        assert counts[r] == [N * sp.Rational(1, 2 ** r) for N in totals]
        assert all(sp.Rational(c, N) == 1 - (1 - sp.Rational(1, 2 ** r)) for c, N in zip(counts[r], totals))
    # rounds to a target sparsity: at most ceil(log(1 - s)/log(1 - p)) (solve (1 - p)^r = 1 - s)
    s_ = sp.symbols("s", positive=True)
    r_star = sp.solve(sp.Eq((1 - p_) ** r_, 1 - s_), r_)[0]
    for N, s, rate in [(512, 0.9, 0.2), (1024, 0.97, 0.5), (64, 0.5, 0.3), (1000, 0.99, 0.6)]:
        keep = max(1, round(N * (1 - s)))
        R = len(lottery.prune_schedule(N, keep, rate)) - 1
        bound = math.ceil(float(r_star.subs({p_: rate, s_: 1 - keep / N})) - 1e-12)
        assert R <= bound, (N, s, rate, R, bound)
    # random pruning keeps exactly the ticket's per-layer counts; its dead-unit rate is hypergeometric
    dead = _dead_unit_probability()
    counts = lottery.imp_schedule(lottery.TICKET_WIDTHS, None, 0.5, rounds=4)[4]
    seeds = list(range(400))
    masks = lottery.random_masks(lottery.TICKET_WIDTHS, counts, seeds)
    for M, c in zip(masks, counts):
        assert np.all(M.sum((1, 2)).numpy() == c)
    M = masks[1].numpy()                                          # 32 x 32, 64 kept weights
    frac = float((M.sum(-1) == 0).mean())
    want = float(dead(32, counts[1], 32 * 32))
    assert abs(want - (1 - counts[1] / 1024) ** 32) < 0.01
    se = math.sqrt(want * (1 - want) / M.shape[0])                # units nearly independent: rows of one
    assert abs(frac - want) < 5 * se * 2, (frac, want)            # mask are negatively correlated (x2)
