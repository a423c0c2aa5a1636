"""Stability thresholds derived from the iterations' companion matrices (sympy).

Each method is written as its update rule on a quadratic of curvature ``lam`` (per eigen-direction);
sympy takes the Jacobian of the new state with respect to the old one (the companion matrix), its
characteristic polynomial ``z^2 + a1 z + a0``, and the Schur-Cohn (Jury) conditions for both roots
to lie in the open unit disk:

    |a0| < 1,    p(1) = 1 + a1 + a0 > 0,    p(-1) = 1 - a1 + a0 > 0.

For every method ``p(1)`` is a positive multiple of ``eta lam`` and ``|a0| < 1`` on the stable range,
so the boundary is ``p(-1) = 0``: an eigenvalue leaves the disk through ``z = -1``. Solving it for
``lam`` gives the threshold, compared with solvable's closed forms at hypothesis-drawn points.
"""

from __future__ import annotations

import numpy as np
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st

from solvable.models import stability
from solvable.claims import get
from solvable.testing import proves

eta, lam, beta, z = sp.symbols("eta lambda beta z", positive=True)
x, xp_, m = sp.symbols("x x_prev m", real=True)


def _companion(method: str) -> tuple[sp.Matrix, tuple]:
    """The update rule as written in solvable.models.stability's docstring, differentiated."""
    if method == "gd":
        new = (x - eta * lam * x,)
        state = (x,)
    elif method == "heavy_ball":
        x_new = x - eta * lam * x + beta * (x - xp_)
        new, state = (x_new, x), (x, xp_)
    elif method == "nesterov":
        y = x + beta * (x - xp_)
        x_new = y - eta * lam * y
        new, state = (x_new, x), (x, xp_)
    else:  # adam with a frozen preconditioner, lam = eigenvalue of P^-1 H, EMA momentum beta1 = beta
        m_new = beta * m + (1 - beta) * lam * x
        x_new = x - eta * m_new
        new, state = (x_new, m_new), (x, m)
    J = sp.Matrix(new).jacobian(sp.Matrix(state))
    return J, state


def derived_threshold(method: str) -> sp.Expr:
    """The curvature where an eigenvalue of the companion matrix reaches z = -1."""
    J, _ = _companion(method)
    p = sp.expand((z * sp.eye(J.shape[0]) - J).det())
    roots = sp.solve(sp.Eq(p.subs(z, -1), 0), lam)
    assert len(roots) == 1, roots
    return sp.simplify(roots[0])


def _jury(method: str):
    J, _ = _companion(method)
    p = sp.Poly(sp.expand((z * sp.eye(J.shape[0]) - J).det()), z)
    return p


def _assert_positive_for_beta_in_0_1(expr: sp.Expr) -> None:
    """``expr(beta) > 0`` for every ``beta`` in [0, 1), by sympy's solveset (symbolic, no sampling)."""
    b = sp.Symbol("b", real=True)
    bad = sp.solveset(sp.Le(expr.subs(beta, b), 0), b, sp.Interval.Ropen(0, 1))
    assert bad == sp.S.EmptySet, (expr, bad)


def _check_boundary_is_minus_one(method: str) -> sp.Expr:
    """p(1) > 0 for lam > 0 and |a0| < 1 on (0, lam*]: the only exit is through p(-1) = 0."""
    p = _jury(method)
    lam_star = derived_threshold(method)
    p1 = sp.factor(p.as_expr().subs(z, 1))
    # p(1) is eta*lam times a positive factor (1, or 1 - beta for adam... see the assertion)
    ratio = sp.simplify(p1 / (eta * lam))
    assert ratio.free_symbols <= {beta}, ratio
    _assert_positive_for_beta_in_0_1(ratio)
    if p.degree() == 2:
        a0 = p.all_coeffs()[-1]
        # a0 is affine in lam, so |a0| on [0, lam*] is largest at an endpoint
        assert sp.degree(a0, lam) <= 1
        for b in (0, sp.Rational(1, 3), sp.Rational(9, 10), sp.Rational(99, 100)):
            for end in (sp.Integer(0), lam_star):
                val = sp.simplify(a0.subs(lam, end).subs(beta, b))
                assert sp.Abs(val) < 1, (method, b, end, val)
        # p(-1) decreases through zero at lam*: stable below, unstable above. It is affine in lam, and
        # its slope is -eta times a factor shown positive for every beta in [0, 1), not at one beta
        pm1 = p.as_expr().subs(z, -1)
        assert sp.degree(pm1, lam) == 1
        slope = sp.simplify(-sp.diff(pm1, lam) / eta)
        assert slope.free_symbols <= {beta}, slope
        _assert_positive_for_beta_in_0_1(slope)
    return lam_star


def _numeric_spectral_radius(method: str, eta_v: float, beta_v: float, lam_v: float) -> float:
    J, _ = _companion(method)
    Jn = np.array(J.subs({eta: eta_v, beta: beta_v, lam: lam_v}).evalf(), dtype=float)
    return float(np.max(np.abs(np.linalg.eigvals(Jn))))


_points = st.tuples(st.floats(1e-3, 10.0), st.floats(0.0, 0.95))


@proves("stability.gd_threshold")
def check_gd_threshold_from_companion():
    lam_star = _check_boundary_is_minus_one("gd")
    f = sp.lambdify((eta,), lam_star)

    @given(_points)
    def agree(pt):
        e, _ = pt
        np.testing.assert_allclose(f(e), stability.gd_threshold(e), rtol=1e-13)
        np.testing.assert_allclose(f(e), get("stability.gd_threshold").predicted(
            get("stability.gd_threshold").make_params(eta=e)), rtol=1e-13)

    agree()


def _momentum_check(method: str, closed, claim_id: str, beta_name: str):
    lam_star = _check_boundary_is_minus_one(method)
    f = sp.lambdify((eta, beta), lam_star)
    claim = get(claim_id)

    @given(_points)
    def agree(pt):
        e, b = pt
        np.testing.assert_allclose(f(e, b), closed(e, b), rtol=1e-12)
        np.testing.assert_allclose(f(e, b), claim.predicted(claim.make_params(eta=e, **{beta_name: b})),
                                   rtol=1e-12)
        # just inside: spectral radius < 1; just outside: > 1 (eigenvalues of the derived matrix)
        assert _numeric_spectral_radius(method, e, b, f(e, b) * (1 - 1e-6)) < 1
        assert _numeric_spectral_radius(method, e, b, f(e, b) * (1 + 1e-6)) > 1

    agree()
    return lam_star


@proves("stability.heavy_ball_threshold")
def check_heavy_ball_threshold_from_companion():
    _momentum_check("heavy_ball", stability.heavy_ball_threshold, "stability.heavy_ball_threshold", "beta")


@proves("stability.nesterov_threshold")
def check_nesterov_threshold_from_companion():
    """The issue's (2 + 2 beta)/(eta (1 + 2 beta)) is what the derivation gives (checked here)."""
    _momentum_check("nesterov", stability.nesterov_threshold, "stability.nesterov_threshold", "beta")


@proves("stability.adam_threshold")
def check_adam_threshold_from_companion():
    lam_star = _momentum_check("adam", stability.adam_threshold, "stability.adam_threshold", "beta1")
    # 38/eta at beta1 = 0.9, exactly
    assert sp.simplify(lam_star.subs(beta, sp.Rational(9, 10)) - 38 / eta) == 0


def _taylor_gd_exit() -> sp.Expr:
    """GD on the second-order Taylor model of the loss at a minimum, L ~ delta^T H delta / 2, along an
    eigenvector of eigenvalue lam: delta+ = delta - eta lam delta; the step diverges past |1 - eta lam| = 1."""
    d = sp.symbols("delta", real=True)
    L = lam * d**2 / 2
    d_new = d - eta * sp.diff(L, d)
    mult = sp.simplify(d_new / d)
    return sp.solve(sp.Eq(mult, -1), lam)[0]


@proves("stability.edge_of_stability")
def check_edge_of_stability_threshold_is_the_quadratic_exit():
    lam_star = _taylor_gd_exit()
    claim = get("stability.edge_of_stability")
    f = sp.lambdify((eta,), lam_star)
    for e in (0.4, 0.5, 0.6, 0.123):
        np.testing.assert_allclose(claim.predicted(claim.make_params(eta=e)), f(e), rtol=1e-14)


@proves("stability.sharpness_after_training")
def check_sharpness_after_training_bound_is_the_quadratic_exit():
    lam_star = _taylor_gd_exit()
    claim = get("stability.sharpness_after_training")
    f = sp.lambdify((eta,), lam_star)
    for e in (0.4, 0.5, 0.6):
        np.testing.assert_allclose(claim.predicted(claim.make_params(eta=e)), [f(e), f(e)], rtol=1e-14)


@proves("stability.adaptive_edge_of_stability")
def check_adaptive_edge_is_the_frozen_adam_exit_at_beta1_09():
    lam_star = derived_threshold("adam").subs(beta, sp.Rational(9, 10))
    claim = get("stability.adaptive_edge_of_stability")
    f = sp.lambdify((eta,), lam_star)
    for e in (0.01, 0.015, 0.02):
        np.testing.assert_allclose(claim.predicted(claim.make_params(eta=e)), f(e), rtol=1e-13)
        # the claim measures the level at which the loss turns from decay to growth (spike onsets): the
        # frozen-P recurrence's growth rate log(spectral radius) changes sign exactly there
        lam_c = float(f(e))
        assert _numeric_spectral_radius("adam", e, 0.9, lam_c * (1 - 1e-6)) < 1
        assert _numeric_spectral_radius("adam", e, 0.9, lam_c * (1 + 1e-6)) > 1
