"""Sympy derivations for solvable.models.descent.

- min-norm risk, finite n: the inverse-Wishart mean from the Schur complement of one coordinate
  ((W^{-1})_11 = 1/chi2 with n - p + 1 degrees of freedom, Bartlett), E[1/chi2_k] integrated in sympy; the
  bias from the trace of a random rank-n projection (exchangeability of the coordinates);
- min-norm risk, limit: sigma2 gamma int x^{-1} dmu_MP derived from the Marchenko-Pastur self-consistent
  equation at z -> 0, on both sides of gamma = 1, and the n -> inf limits of the finite-n forms;
- optimal ridge: the Bayes posterior mean gives lam* = sigma2 p / r2 (the penalty minimising the risk of
  a linear estimate, derived by differentiating the risk along each singular direction), and the risk
  sigma2 gamma m(-lam) from the self-consistent equation, with its monotonicity in gamma.
"""

import functools
import math

import numpy as np
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from solvable.models import descent
from solvable.testing import proves

n, p, k, x = sp.symbols("n p k x", positive=True)
g, r2, s2, l = sp.symbols("gamma r2 sigma2 lam", positive=True)
m, z = sp.symbols("m z")


@functools.lru_cache(maxsize=None)
def _inverse_chi2_mean(dof):
    """E[1/X] for X ~ chi2_dof, by integrating against the chi2 density."""
    dens = x ** (k / 2 - 1) * sp.exp(-x / 2) / (2 ** (k / 2) * sp.gamma(k / 2))
    val = sp.integrate(dens / x, (x, 0, sp.oo), conds="none")
    return sp.gammasimp(sp.simplify(val).subs(k, dof))


@functools.lru_cache(maxsize=None)
def _finite_n_forms():
    # p < n: W = X^T X ~ Wishart_p(n, I); (W^{-1})_11 = 1 / (W_11 - w^T W_22^{-1} w) ~ 1/chi2_{n-p+1};
    # by exchangeability E tr W^{-1} = p E (W^{-1})_11.
    var_under = s2 * p * _inverse_chi2_mean(n - p + 1)
    # p > n: X X^T ~ Wishart_n(p, I): the same with the roles of n and p exchanged.
    var_over = s2 * n * _inverse_chi2_mean(p - n + 1)
    # bias: P = X^+ X projects on a rank-n subspace whose law is rotation invariant, so E P = (n/p) I
    # (trace n, exchangeable diagonal) and E ||(I - P) beta||^2 = beta^T (I - E P) beta.
    bias_over = r2 * (1 - n / p)
    return var_under, var_over, bias_over


@proves("descent.min_norm_risk")
def check_min_norm_finite_n_equals_closed_form():
    var_under, var_over, bias_over = _finite_n_forms()
    assert sp.simplify(sp.gammasimp(var_under - s2 * p / (n - p - 1))) == 0
    for pp, nn, rr, ss in [(10, 41, 1.3, 0.7), (30, 40, 2.0, 0.5), (120, 40, 2.0, 0.5), (60, 20, 0.4, 3.0)]:
        b, v = descent.min_norm_bias_variance(pp, nn, rr, ss)
        sub = {p: pp, n: nn, r2: rr, s2: ss}
        if pp < nn:
            assert b == 0 and math.isclose(v, float(var_under.subs(sub)), rel_tol=1e-12)
        else:
            assert math.isclose(b, float(bias_over.subs(sub)), rel_tol=1e-12)
            assert math.isclose(v, float(var_over.subs(sub)), rel_tol=1e-12)


def _mp_inverse_mean(ratio):
    """int x^{-1} dmu(x) for the Marchenko-Pastur law of ratio ``ratio`` < 1 (no atom at 0): -G(0), with G
    the root of ratio z G^2 - (z + ratio - 1) G + 1 = 0 that is analytic at z = 0 (0 lies outside the
    support [(1 - sqrt r)^2, ...]). At z = 0 the quadratic degenerates to a linear equation: its root is
    the analytic branch's value (the other root grows like 1/z)."""
    quad = sp.Poly(ratio * z * m**2 - (z + ratio - 1) * m + 1, m)
    assert quad.coeff_monomial(m**2).subs(z, 0) == 0
    (root,) = sp.solve(quad.as_expr().subs(z, 0), m)
    return sp.simplify(-root)


GU = sp.symbols("gu", positive=True)
# gamma < 1: variance sigma2 tr (X^T X)^{-1} = sigma2 (p/n) (1/p) tr (X^T X / n)^{-1} -> sigma2 gamma int x^-1 dmu_gamma
LIM_UNDER = s2 * GU * _mp_inverse_mean(GU)
# gamma > 1: sigma2 tr (X X^T)^{-1} = sigma2 (n/p) (1/n) tr (X X^T / p)^{-1}, ratio n/p = 1/gamma; bias r2 (1 - 1/gamma)
LIM_OVER = r2 * (1 - 1 / g) + s2 * (1 / g) * _mp_inverse_mean(1 / g)


@proves("descent.min_norm_risk")
def check_finite_n_forms_tend_to_the_limits():
    var_under, var_over, bias_over = _finite_n_forms()
    fu = sp.limit(sp.gammasimp(var_under).subs(p, GU * n), n, sp.oo)
    fo = sp.limit(sp.gammasimp(var_over + bias_over).subs(p, g * n), n, sp.oo)
    assert sp.simplify(fu - LIM_UNDER) == 0
    assert sp.simplify(fo - LIM_OVER) == 0


@proves("descent.min_norm_risk")
@settings(max_examples=6, deadline=None)
@given(st.floats(0.05, 0.95), st.floats(1.05, 20.0), st.floats(0.1, 5.0), st.floats(0.1, 5.0))
def check_min_norm_limit_from_marchenko_pastur(g_under, g_over, rr, ss):
    got_u = float(LIM_UNDER.subs({GU: g_under, s2: ss}))
    got_o = float(LIM_OVER.subs({g: g_over, r2: rr, s2: ss}))
    assert math.isclose(got_u, descent.min_norm_risk_limit(g_under, rr, ss), rel_tol=1e-10)
    assert math.isclose(got_o, descent.min_norm_risk_limit(g_over, rr, ss), rel_tol=1e-10)


@proves("descent.optimal_ridge_removes_peak")
def check_optimal_penalty_from_the_risk():
    # Risk of ridge along one singular direction (singular value s, beta-coordinate a with E a^2 = r2/p,
    # noise coordinate e with E e^2 = sigma2): E ((s e - lam a) / (s^2 + lam))^2; the cross term vanishes.
    s = sp.symbols("s", positive=True)
    risk = (s**2 * s2 + l**2 * r2 / p) / (s**2 + l) ** 2
    crit = sp.solve(sp.diff(risk, l), l)
    assert crit == [s2 * p / r2]  # the same for every s: one penalty is optimal for the whole spectrum
    lam_star = crit[0]
    assert sp.simplify(risk.subs(l, lam_star) - s2 / (s**2 + lam_star)) == 0  # the posterior variance
    for pp, rr, ss in [(40, 2.0, 0.5), (7, 0.3, 1.7)]:
        assert math.isclose(descent.optimal_ridge_penalty(pp, rr, ss), float(lam_star.subs({p: pp, r2: rr, s2: ss})))


_T = sp.symbols("t", positive=True)
# the two roots, solved once and evaluated at the drawn points (lambdify: no symbolic work per draw)
_RIDGE_ROOTS = [sp.lambdify((g, _T), -r_, "cmath")
                for r_ in sp.solve((g * z * m**2 - (z + g - 1) * m + 1).subs(z, -_T), m)]


@proves("descent.optimal_ridge_removes_peak")
@settings(max_examples=8, deadline=None)
@given(st.floats(0.05, 8.0), st.floats(0.2, 5.0), st.floats(0.05, 3.0))
def check_optimal_ridge_risk_from_marchenko_pastur(gg, rr, ss):
    # sum_k sigma2 / (s_k^2 + lam*) over the p directions (zero singular values included) is
    # sigma2 tr (X^T X + lam* I)^{-1} = sigma2 (p/n) (1/p) tr (S + lam*/n)^{-1} -> sigma2 gamma m(-lam*/n),
    # m(-t) = -G(-t) with G solving gamma z G^2 - (z + gamma - 1) G + 1 = 0: the root with m(-t) > 0.
    vals = [complex(f(gg, ss * gg / rr)) for f in _RIDGE_ROOTS]
    pos = [v.real for v in vals if abs(v.imag) < 1e-12 and v.real > 0]
    assert len(pos) == 1
    derived = ss * gg * pos[0]
    assert math.isclose(derived, descent.optimal_ridge_risk(gg, rr, ss), rel_tol=1e-10)
    # no peak: R*(gamma) increases with gamma (p up at fixed n) and equals the model-wise curve
    grid = np.linspace(0.05, 8.0, 200)
    curve = np.array([descent.optimal_ridge_risk(q, rr, ss) for q in grid])
    assert np.all(np.diff(curve) > 0)
    # the min-norm limit exceeds it everywhere (ridge at lam* is optimal, lam = 0 is one choice)
    assert descent.min_norm_risk_limit(gg, rr, ss) >= descent.optimal_ridge_risk(gg, rr, ss)


@proves("descent.peak_at_interpolation")
def check_peak_location_and_height_at_finite_n():
    var_under, var_over, bias_over = _finite_n_forms()
    vu, vo = sp.gammasimp(var_under), sp.gammasimp(var_over)
    # the poles: the denominators of the exact variances vanish at p = n - 1 (below) and p = n + 1 (above)
    assert sp.solve(sp.denom(sp.together(vu)), p) == [n - 1]
    assert sp.solve(sp.denom(sp.together(vo)), p) == [n + 1]
    # model-wise each side rises toward the threshold: d/dp of the risk is > 0 below, and above it is
    # -sigma2 n/(p - n - 1)^2 + r2 n/p^2 < 0 once sigma2 p^2 > r2 (p - n - 1)^2 (true next to the pole)
    assert sp.simplify(sp.diff(vu, p) - s2 * (n - 1) / (n - p - 1) ** 2) == 0
    # hence the maximum over the finite values is at p = n - 2 or p = n + 2; compare the two
    below = vu.subs(p, n - 2)
    above = (vo + bias_over).subs(p, n + 2)
    assert sp.simplify(below - s2 * (n - 2)) == 0
    assert sp.simplify(above - (s2 * n + 2 * r2 / (n + 2))) == 0
    assert sp.simplify(above - below - (2 * s2 + 2 * r2 / (n + 2))) == 0  # > 0: the peak is at p = n + 2
    # the sample-wise curve (p = n features, m samples): m = n + 2 gives sigma2 n, m = n - 2 gives
    # sigma2 (n - 2) + 2 r2/n; the larger one is the peak
    mm = sp.symbols("m", positive=True)
    swap = lambda e, m_: e.subs({n: mm, p: n}, simultaneous=True).subs(mm, m_)  # noqa: E731
    s_under = swap(vu, n + 2)
    s_over = swap(vo + bias_over, n - 2)
    assert sp.simplify(s_under - s2 * n) == 0 and sp.simplify(s_over - (s2 * (n - 2) + 2 * r2 / n)) == 0
    # the growth: the height is linear in n and sigma2 (d/dn of the model-wise peak -> sigma2 > 0)
    assert sp.limit(sp.diff(above, n), n, sp.oo) == s2
    # the domain's condition: sample-wise above the threshold the risk at d = 8 exceeds that at d = 12 iff
    # sigma2 n (n - 1) > 77 r2
    over_s = lambda d: swap(vo + bias_over, n - d)  # noqa: E731
    diff = sp.factor(sp.together(over_s(8) - over_s(12)))
    assert sp.simplify(diff - 4 * (s2 * n * (n - 1) - 77 * r2) / (77 * n)) == 0
    for nn, rr, ss in [(30, 2.0, 0.5), (24, 3.0, 0.1), (41, 0.3, 1.7)]:
        got = descent.threshold_peak(nn, rr, ss)
        sub = {n: nn, r2: rr, s2: ss}
        hb, ha = float(below.subs(sub)), float(above.subs(sub))
        assert got["model_p"] == nn + 2 and math.isclose(got["model_height"], ha, rel_tol=1e-12)
        su, so = float(s_under.subs(sub)), float(s_over.subs(sub))
        assert got["sample_n"] == (nn + 2 if su > so else nn - 2)
        assert math.isclose(got["sample_height"], max(su, so), rel_tol=1e-12)
        assert ha > hb


@proves("descent.random_features")
def check_random_features_peak_from_the_hard_edge():
    # Hermite coefficients of relu under N(0, 1), integrated against the Gaussian density
    u = sp.symbols("u", real=True)
    phi = sp.exp(-u**2 / 2) / sp.sqrt(2 * sp.pi)
    mu0 = sp.integrate(u * phi, (u, 0, sp.oo))
    mu1 = sp.integrate(u * u * phi, (u, 0, sp.oo))
    second = sp.integrate(u**2 * phi, (u, 0, sp.oo))
    mustar2 = sp.simplify(second - mu0**2 - mu1**2)
    got = descent.relu_gaussian_coefficients()
    assert math.isclose(got[0], float(mu0)) and math.isclose(got[1], float(mu1))
    assert math.isclose(got[2] ** 2, float(mustar2)) and float(mustar2) > 0
    # Gaussian equivalence: Z = mu0 1 1^T + mu1 X W^T/sqrt(d) + mu* G; the first two terms have rank <= d + 1,
    # so for N, n >> d the small singular values of Z are those of mu* G (n x N, iid): the Marchenko-Pastur
    # law of ratio psi = N/n. Its support edges are where the discriminant of the Stieltjes equation
    # psi z G^2 - (z + psi - 1) G + 1 = 0 vanishes:
    ps = sp.symbols("psi", positive=True)
    edges = sp.solve(sp.discriminant(ps * z * m**2 - (z + ps - 1) * m + 1, m), z)
    lower = min(edges, key=lambda e: float(e.subs(ps, 0.5)))
    assert sp.simplify(lower - (1 - sp.sqrt(ps)) ** 2) == 0
    # the smallest squared singular value reaches 0 only at psi = 1: the ridgeless fit's norm, and with it
    # the variance of the test error, blows up at N = n and nowhere else
    assert sp.solve(lower, ps) == [1]
    for nn, dd in [(64, 16), (48, 8), (96, 30)]:
        assert descent.rf_peak_features(nn, dd) == nn  # psi = 1


@proves("descent.label_noise_peak")
def check_interpolation_width_from_the_parameter_count():
    # the network f(x) = a . tanh(W x + b) / sqrt(w): count the scalars of W (w x d), b (w) and a (w), and
    # solve P(w) = n (as many parameters as equations y_i = f(x_i)) for the threshold width
    w, d_ = sp.symbols("w d", positive=True)
    W, b, a = sp.MatrixSymbol("W", w, d_), sp.MatrixSymbol("b", w, 1), sp.MatrixSymbol("a", w, 1)
    P = sum(M.shape[0] * M.shape[1] for M in (W, b, a))
    (wstar,) = sp.solve(sp.Eq(P, n), w)
    assert sp.simplify(wstar - n / (d_ + 2)) == 0
    for nn, dd in [(24, 8), (22, 7), (28, 10)]:
        assert math.isclose(descent.interpolation_width(nn, dd), float(wstar.subs({n: nn, d_: dd})), rel_tol=1e-12)
