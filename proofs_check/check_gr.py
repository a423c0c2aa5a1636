"""Derivations for the gr claims: the Taylor expansion of finite-difference GR in eps, the
eps = gamma identity with unnormalised SAM, and the two-step displacement of flooded GD.

The generic derivations use a polynomial loss of degree 5 in two variables with symbolic
coefficients (every derivative up to the fifth is an independent symbol, so nothing cancels by
accident) and a symbolic direction ``v`` standing for the value ``g = grad L(theta)`` (the
formulas only use g as the direction of the shift; it is substituted where its being the
gradient matters, in the flood-level crossing); the resulting
coefficients are compared with the numeric closed forms of ``solvable.models.gr`` on the quadratic-plus-
quartic model at hypothesis-drawn points.
"""

from __future__ import annotations

import itertools

import numpy as np
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st

from solvable.models import gr
from solvable.testing import proves

X = sp.symbols("x1 x2", real=True)
V = sp.symbols("v1 v2", real=True)
eps, gamma, eta = sp.symbols("epsilon gamma eta", real=True)


def _generic_loss(degree: int = 5) -> sp.Expr:
    terms = []
    for i, j in itertools.product(range(degree + 1), repeat=2):
        if i + j <= degree:
            terms.append(sp.Symbol(f"c_{i}_{j}") * X[0] ** i * X[1] ** j)
    return sp.Add(*terms)


L = _generic_loss()


def _grad(f: sp.Expr) -> sp.Matrix:
    return sp.Matrix([sp.diff(f, x) for x in X])


def _at(expr, point) -> sp.Expr:
    return expr.subs(dict(zip(X, point)), simultaneous=True)


def _deriv_tensor(f: sp.Expr, k: int, vecs) -> sp.Matrix:
    """``D^{k+1} f[v, ..., v]`` as a gradient-shaped vector, built from partial derivatives."""
    out = []
    for i in range(2):
        s = 0
        for idx in itertools.product(range(2), repeat=k):
            term = sp.diff(f, X[i], *[X[j] for j in idx])
            for j, vv in zip(idx, vecs):
                term = term * vv[j]
            s += term
        out.append(sp.expand(s))
    return sp.Matrix(out)


G = _grad(L)
HV = sp.Matrix([sum(sp.diff(G[i], X[j]) * V[j] for j in range(2)) for i in range(2)])
D3VV = _deriv_tensor(L, 2, [V, V])
D4VVV = _deriv_tensor(L, 3, [V, V, V])


def _series_coeffs(vec: sp.Matrix, var: sp.Symbol, upto: int) -> list[sp.Matrix]:
    """Coefficients of ``var^0 .. var^upto`` of a vector that is polynomial in ``var``."""
    polys = [sp.Poly(sp.expand(c), var) for c in vec]
    return [sp.Matrix([p.coeff_monomial(var ** k) for p in polys]) for k in range(upto + 1)]


def _is_zero(m: sp.Matrix) -> bool:
    return all(sp.expand(e) == 0 for e in m)


def _div(vec: sp.Matrix, by: sp.Expr) -> sp.Matrix:
    """Exact division of a vector polynomial in ``by`` with zero constant term (expand, no cancel)."""
    return vec.applyfunc(lambda e: sp.expand(sp.expand(e) / by))


# --------------------------------------------------------------------------------------------
# gr.finite_difference_error


def _fd_errors():
    """g_FD - g_GR for forward, backward (eps -> -eps) and central differences, direction v.

    The difference quotient is written with the shifted gradient grad L(theta + eps v); g_GR uses the
    exact Hessian-vector product. Everything is polynomial in eps after dividing by eps.
    """
    shifted_p = _at(G, [X[i] + eps * V[i] for i in range(2)])
    shifted_m = _at(G, [X[i] - eps * V[i] for i in range(2)])
    g_gr_part = gamma * HV  # the common g cancels in g_FD - g_GR
    fwd = _div(gamma * (shifted_p - G), eps) - g_gr_part
    bwd = fwd.subs(eps, -eps)
    cen = _div(gamma * (shifted_p - shifted_m), 2 * eps) - g_gr_part
    return {"forward": fwd, "backward": bwd, "central": cen}


_ERRS = _fd_errors()


def _lowest_order(vec: sp.Matrix, upto: int = 4) -> int:
    for k, c in enumerate(_series_coeffs(vec, eps, upto)):
        if not _is_zero(c):
            return k
    raise AssertionError("no nonzero coefficient up to eps^%d" % upto)


@proves("gr.finite_difference_error")
def check_fd_error_orders_from_taylor_expansion():
    """The lowest power of eps in g_FD - g_GR is 1 (forward, backward) and 2 (central), for a generic
    loss: the derived orders equal solvable's fd_error_order (the claim's prediction)."""
    for kind, err in _ERRS.items():
        assert _lowest_order(err) == gr.fd_error_order(kind), kind


@proves("gr.finite_difference_error")
def check_fd_error_leading_and_second_terms():
    """Forward: gamma (eps/2 D^3L[v,v] + eps^2/6 D^4L[v,v,v] + ...); backward the same with -eps;
    central: the odd powers cancel and the eps^2 term is gamma/6 D^4L[v,v,v]."""
    c = _series_coeffs(_ERRS["forward"], eps, 3)
    assert _is_zero(c[0])
    assert _is_zero(c[1] - gamma * D3VV / 2)
    assert _is_zero(c[2] - gamma * D4VVV / 6)
    cb = _series_coeffs(_ERRS["backward"], eps, 2)
    assert _is_zero(cb[1] + gamma * D3VV / 2) and _is_zero(cb[2] - gamma * D4VVV / 6)
    cc = _series_coeffs(_ERRS["central"], eps, 4)
    assert _is_zero(cc[0]) and _is_zero(cc[1]) and _is_zero(cc[3])
    assert _is_zero(cc[2] - gamma * D4VVV / 6)


# The quadratic-plus-quartic model of the claims, in sympy (d = 2, symmetric A).
a11, a12, a22, b1, b2, kappa = sp.symbols("a11 a12 a22 b1 b2 kappa", real=True)
LQ = (sp.Rational(1, 2) * (a11 * X[0] ** 2 + 2 * a12 * X[0] * X[1] + a22 * X[1] ** 2) - b1 * X[0] - b2 * X[1]
      + kappa / 4 * (X[0] ** 4 + X[1] ** 4))
GQ = _grad(LQ)


def _quartic_fd_error(kind: str) -> sp.Matrix:
    g = list(GQ)
    sp_ = _at(GQ, [X[i] + eps * g[i] for i in range(2)])
    sm = _at(GQ, [X[i] - eps * g[i] for i in range(2)])
    hg = sp.Matrix([sum(sp.diff(GQ[i], X[j]) * g[j] for j in range(2)) for i in range(2)])
    if kind == "central":
        e = _div(sp_ - sm, 2 * eps)
    elif kind == "forward":
        e = _div(sp_ - GQ, eps)
    else:
        e = _div(GQ - sm, eps)
    return (gamma * e - gamma * hg).applyfunc(sp.expand)


_QERR = {k: _quartic_fd_error(k) for k in ("forward", "backward", "central")}
_SYMS = (a11, a12, a22, b1, b2, kappa, X[0], X[1], gamma, eps)
_QERR_F = {k: sp.lambdify(_SYMS, v, "numpy") for k, v in _QERR.items()}


@proves("gr.finite_difference_error")
def check_quartic_error_terminates():
    """On the claim's model the error is a polynomial in eps: degree 2 (forward/backward, lowest
    power 1) and exactly eps^2 (central), which is why the claim's contamination bound uses only the
    eps^2 term and sets rho = 0 for central (D^5L = 0)."""
    for kind, e in _QERR.items():
        degs = {sp.Poly(c, eps).degree() for c in e if c != 0}
        lows = {min(m[0] for m in sp.Poly(c, eps).monoms()) for c in e if c != 0}
        if kind == "central":
            assert degs == {2} and lows == {2}
        else:
            assert degs == {2} and lows == {1}


_finite = dict(allow_nan=False, allow_infinity=False)


@given(st.lists(st.floats(-2, 2, **_finite), min_size=7, max_size=7), st.floats(0.01, 1.0), st.floats(1e-3, 0.1),
       st.floats(0.1, 2.0))
@proves("gr.finite_difference_error")
def check_quartic_leading_term_matches_solvable(vals, gm, ep, kp):
    """The sympy error on the quartic equals solvable's fd_error_leading plus its stated remainder,
    with D^3L and D^4L from solvable.models.gr.QuarticModel, at drawn points."""
    m11, m12, m22, bb1, bb2, t1, t2 = vals
    A = np.array([[[m11 + 3.0, m12], [m12, m22 + 3.0]]])
    model = gr.QuarticModel(A, np.array([[bb1, bb2]]), kp)
    theta = np.array([[t1, t2]])
    g = model.grad(theta)
    d3, d4 = model.third(theta, g, g), model.fourth(g, g, g)
    for kind in ("forward", "backward", "central"):
        step = -ep if kind == "backward" else ep
        derived = np.array(_QERR_F[kind](m11 + 3.0, m12, m22 + 3.0, bb1, bb2, kp, t1, t2, gm, ep), dtype=float).ravel()
        closed = gr.fd_error_leading(kind, gm, step, d3, d4)[0]
        if kind != "central":
            closed = closed + gm * step ** 2 / 6 * d4[0]
        scale = float(np.abs(derived).max() + np.abs(closed).max())
        np.testing.assert_allclose(derived, closed, rtol=1e-10, atol=1e-12 * scale)


# --------------------------------------------------------------------------------------------
# gr.fd_is_unnormalized_sam

G1, G2 = sp.Function("G1"), sp.Function("G2")


@proves("gr.fd_is_unnormalized_sam")
def check_eps_equal_gamma_is_sam_for_any_gradient_field():
    """With an arbitrary gradient field G, (1 - gamma/eps) G(theta) + (gamma/eps) G(theta + eps G(theta))
    at eps = gamma is G(theta + gamma G(theta)) identically."""
    Gt = sp.Matrix([G1(*X), G2(*X)])
    shifted = sp.Matrix([Gi(X[0] + eps * Gt[0], X[1] + eps * Gt[1]) for Gi in (G1, G2)])
    g_fd = (1 - gamma / eps) * Gt + (gamma / eps) * shifted
    sam = sp.Matrix([Gi(X[0] + gamma * Gt[0], X[1] + gamma * Gt[1]) for Gi in (G1, G2)])
    assert all(sp.simplify(e) == 0 for e in (g_fd.subs(eps, gamma) - sam))
    # and only there: at eps = 2 gamma the G(theta) coefficient is 1/2, not 0
    assert sp.simplify((1 - gamma / eps).subs(eps, 2 * gamma)) != 0


_SAM_F = sp.lambdify((a11, a12, a22, b1, b2, kappa, X[0], X[1], gamma),
                     _at(GQ, [X[i] + gamma * GQ[i] for i in range(2)]), "numpy")


@given(st.lists(st.floats(-2, 2, **_finite), min_size=7, max_size=7), st.floats(1e-3, 1.0), st.floats(0.1, 2.0))
@proves("gr.fd_is_unnormalized_sam")
def check_solvable_fd_at_eps_gamma_equals_derived_sam(vals, gm, kp):
    m11, m12, m22, bb1, bb2, t1, t2 = vals
    A = np.array([[[m11 + 3.0, m12], [m12, m22 + 3.0]]])
    model = gr.QuarticModel(A, np.array([[bb1, bb2]]), kp)
    out = gr.fd_gr_gradient(model.grad, np.array([[t1, t2]]), gm, gm)[0]
    derived = np.array(_SAM_F(m11 + 3.0, m12, m22 + 3.0, bb1, bb2, kp, t1, t2, gm), dtype=float).ravel()
    scale = float(np.abs(derived).max()) + 1.0
    # same number by different evaluation orders: round-off of sums of terms of size ~ scale^3
    np.testing.assert_allclose(out, derived, rtol=1e-11, atol=1e-11 * scale ** 3)


a_sym = sp.Symbol("a", real=True)


def _fd_minus_sam(grad: sp.Matrix, v) -> sp.Matrix:
    """g_FD(eps) - SAM from their definitions, with eps = gamma / (1 - a) (so a = 1 - gamma/eps) and the
    ascent direction v standing for grad L(theta) in the shifts."""
    e = gamma / (1 - a_sym)
    shifted = _at(grad, [X[i] + e * v[i] for i in range(2)])
    sam = _at(grad, [X[i] + gamma * v[i] for i in range(2)])
    return (1 - gamma / e) * grad + (gamma / e) * shifted - sam


@proves("gr.fd_is_unnormalized_sam")
def check_fd_minus_sam_is_linear_in_one_minus_gamma_over_eps():
    """For a generic (degree-5) loss: g_FD - SAM vanishes at a = 1 - gamma/eps = 0 and its derivative in
    a there is C0 = g - grad L(theta + gamma g) + gamma H(theta + gamma g) g (the claim's linear law, so
    its log-log slope in |a| is 1); on the claim's quartic the law is exact with the a^2 and a^3 terms
    that sam_gap_curves uses for rho."""
    diffs = _fd_minus_sam(G, V)
    assert _is_zero(diffs.subs(a_sym, 0))
    slope = diffs.diff(a_sym).subs(a_sym, 0)
    tp = [X[i] + gamma * V[i] for i in range(2)]
    h_shift = _at(HV, tp)
    c0 = G - _at(G, tp) + gamma * h_shift  # with v = g = G(theta): the claim's C0
    assert _is_zero((slope - c0).applyfunc(sp.together).applyfunc(sp.numer))
    # the lowest power of a with a nonzero coefficient is the claim's prediction (C0 is not identically 0)
    assert not _is_zero(c0) and gr.sam_gap_order() == 1
    # quartic: exact with two more terms (D^3L at theta + gamma v, D^4L constant)
    vq = sp.symbols("w1 w2", real=True)
    dq = _fd_minus_sam(GQ, vq)
    tq = [X[i] + gamma * vq[i] for i in range(2)]
    hq = sp.Matrix([sum(sp.diff(GQ[i], X[j]) * vq[j] for j in range(2)) for i in range(2)])
    d3q = sp.Matrix([sum(sp.diff(GQ[i], X[j], X[k]) * vq[j] * vq[k] for j in range(2) for k in range(2))
                     for i in range(2)])
    d4q = sp.Matrix([sum(sp.diff(GQ[i], X[j], X[k], X[m]) * vq[j] * vq[k] * vq[m]
                         for j in range(2) for k in range(2) for m in range(2)) for i in range(2)])
    c0q = GQ - _at(GQ, tq) + gamma * _at(hq, tq)
    law = (a_sym * c0q + a_sym ** 2 * gamma ** 2 / (2 * (1 - a_sym)) * _at(d3q, tq)
           + a_sym ** 3 * gamma ** 3 / (6 * (1 - a_sym) ** 2) * d4q)
    assert _is_zero((dq - law).applyfunc(sp.together).applyfunc(sp.numer))


_C0Q_F = sp.lambdify((a11, a12, a22, b1, b2, kappa, X[0], X[1], gamma),
                     GQ - _at(GQ, [X[i] + gamma * GQ[i] for i in range(2)])
                     + gamma * _at(sp.Matrix([sum(sp.diff(GQ[i], X[j]) * sp.Symbol(f"w{j + 1}") for j in range(2))
                                              for i in range(2)]), [X[i] + gamma * GQ[i] for i in range(2)]).subs(
                         {sp.Symbol("w1"): GQ[0], sp.Symbol("w2"): GQ[1]}, simultaneous=True),
                     "numpy")


@given(st.lists(st.floats(-2, 2, **_finite), min_size=7, max_size=7), st.floats(1e-3, 1.0), st.floats(0.1, 2.0))
@proves("gr.fd_is_unnormalized_sam")
def check_solvable_linear_coefficient_matches_derived(vals, gm, kp):
    """solvable's sam_gap_linear_coefficient equals the derived C0 on the quartic at drawn points."""
    m11, m12, m22, bb1, bb2, t1, t2 = vals
    A = np.array([[[m11 + 3.0, m12], [m12, m22 + 3.0]]])
    model = gr.QuarticModel(A, np.array([[bb1, bb2]]), kp)
    out = gr.sam_gap_linear_coefficient(model.grad, model.hvp, np.array([[t1, t2]]), gm)[0]
    derived = np.array(_C0Q_F(m11 + 3.0, m12, m22 + 3.0, bb1, bb2, kp, t1, t2, gm), dtype=float).ravel()
    scale = float(np.abs(derived).max()) + float(np.abs(model.grad_scale(np.array([[t1, t2]])))[0]) + 1.0
    # C0 is a difference of O(scale^3) gradients: round-off of sums of such terms
    np.testing.assert_allclose(out, derived, rtol=1e-9, atol=1e-11 * scale ** 3)


# --------------------------------------------------------------------------------------------
# gr.flooding_is_fd_gr


def _flooding_two_steps(first: str):
    """Two steps of GD on |L - b| + b from theta0 with b put half-way to the first-order loss change,
    b = L(theta0) + s0 eta |g|^2 / 2 (s0 = +1 ascent first, -1 descent first).

    Returns (signs, displacement); the signs are derived from the series of L - b in eta, the
    displacement is a polynomial in eta with g = V (the value of grad L at theta0)."""
    s0 = 1 if first == "ascent" else -1
    gg = sum(v * v for v in V)
    b = L + s0 * eta * gg / 2
    # step 1: L(theta0) - b = -s0 eta |g|^2 / 2, so sign(L - b) = -s0 for eta > 0, g != 0
    assert sp.expand(L - b + s0 * eta * gg / 2) == 0
    sign1 = -s0
    th1 = [X[i] - eta * sign1 * V[i] for i in range(2)]
    # step 2: L(theta1) - b = eta (s0 grad L . g - s0 |g|^2 / 2) + O(eta^2) = s0 eta |g|^2 / 2 + O(eta^2)
    c = _series_coeffs(sp.Matrix([_at(L, th1) - b]), eta, 1)
    assert sp.expand(c[0][0]) == 0
    assert sp.expand(c[1][0].subs(dict(zip(V, G)), simultaneous=True) - s0 * (G.T * G)[0] / 2) == 0
    sign2 = s0
    g1 = _at(G, th1)
    th2 = [th1[i] - eta * sign2 * g1[i] for i in range(2)]
    disp = sp.Matrix([sp.expand(th2[i] - X[i]) for i in range(2)])
    return (sign1, sign2), disp


_HG = HV
_D3GG = D3VV


@proves("gr.flooding_is_fd_gr")
def check_two_step_flooding_displacement():
    """Ascent then descent: theta2 - theta0 = -eta^2 H g - eta^3/2 D^3L[g,g] + O(eta^4); descent then
    ascent: -eta^2 H g + eta^3/2 D^3L[g,g] + O(eta^4); no eta^1 term (the L-gradient steps cancel).
    So the residual after removing -eta^2 H g starts at eta^3: solvable's flooding_residual_order."""
    for first, s in (("ascent", 1), ("descent", -1)):
        signs, disp = _flooding_two_steps(first)
        assert signs == ((-1, 1) if first == "ascent" else (1, -1))
        c = _series_coeffs(disp, eta, 3)
        # eta^1: s0 (g - grad L(theta0)), zero because the first step moves along g = grad L(theta0)
        assert _is_zero(c[0]) and _is_zero(c[1] - s * (sp.Matrix(V) - G))
        assert _is_zero(c[2] + _HG)
        # with v = g the displacement starts at eta^2 (H g is not identically 0): the claim's first order
        at_g = [ck.subs(dict(zip(V, G)), simultaneous=True) for ck in c]
        assert next(k for k, ck in enumerate(at_g) if not _is_zero(ck)) == gr.flooding_displacement_order()
        assert _is_zero(c[3] + s * _D3GG / 2)
        # solvable's leading term against the derived eta^2 coefficient c[2] at drawn points
        coeff_syms = sorted(L.free_symbols - set(X), key=str)
        f_c2 = sp.lambdify(list(X) + list(V) + coeff_syms, c[2], "numpy")
        rng = np.random.default_rng(12)
        hv_f = sp.lambdify(list(X) + list(V) + coeff_syms, _HG, "numpy")
        for _ in range(3):
            xs, vs, cs = rng.standard_normal(2), rng.standard_normal(2), rng.standard_normal(len(coeff_syms))
            et = float(rng.uniform(1e-3, 0.5))
            derived = et ** 2 * np.asarray(f_c2(*xs, *vs, *cs), dtype=float).ravel()
            closed = gr.flooding_two_step_leading(np.asarray(hv_f(*xs, *vs, *cs), dtype=float).ravel(), et)
            np.testing.assert_allclose(closed, derived, rtol=1e-12, atol=1e-14 * (1 + np.abs(derived).max()))
        # residual order
        res = disp - s * eta * (sp.Matrix(V) - G) + _HG * eta ** 2  # the removed term is 0 at g = grad L
        k = next(k for k, ck in enumerate(_series_coeffs(res, eta, 4)) if not _is_zero(ck))
        assert k == gr.flooding_residual_order()


@proves("gr.flooding_is_fd_gr")
def check_two_steps_are_exactly_an_fd_regulariser_step():
    """theta2 - theta0 = -eps^2 (g_FD(gamma=1, eps) - g) exactly, eps = +eta (ascent first) or -eta
    (descent first): a gradient step of size eta^2 on ||grad L||^2/2 with the forward (backward)
    difference at |eps| = eta, and no step on L itself."""
    for first, s in (("ascent", 1), ("descent", -1)):
        _, disp = _flooding_two_steps(first)
        e = s * eta
        # g_FD(1, e) - g = (grad L(theta + e g) - g) / e with g = V = grad L(theta)
        fd_minus_g = _div(_at(G, [X[i] + e * V[i] for i in range(2)]) - G, eta) / s
        # the two sides differ by s eta (g - grad L(theta0)) = 0 exactly
        assert _is_zero(disp + e ** 2 * fd_minus_g - s * eta * (sp.Matrix(V) - G))


_DISP_Q = {}
for _first in ("ascent", "descent"):
    g = GQ
    s0 = 1 if _first == "ascent" else -1
    th1 = [X[i] + s0 * eta * g[i] for i in range(2)]
    th2 = [th1[i] - s0 * eta * _at(g, th1)[i] for i in range(2)]
    _DISP_Q[_first] = sp.lambdify((a11, a12, a22, b1, b2, kappa, X[0], X[1], eta),
                                  sp.Matrix([th2[i] - X[i] for i in range(2)]), "numpy")


@given(st.lists(st.floats(-2, 2, **_finite), min_size=7, max_size=7), st.floats(1e-3, 0.05), st.floats(0.1, 2.0))
@proves("gr.flooding_is_fd_gr")
def check_solvable_flooded_gd_matches_derived_displacement(vals, et, kp):
    """solvable's flooded GD (with b half-way, as in the claim) moves theta by the derived two-step
    displacement, and its leading term is flooding_two_step_leading."""
    m11, m12, m22, bb1, bb2, t1, t2 = vals
    A = np.array([[[m11 + 3.0, m12], [m12, m22 + 3.0]]])
    model = gr.QuarticModel(A, np.array([[bb1, bb2]]), kp)
    theta = np.array([[t1, t2]])
    g = model.grad(theta)
    if float((g * g).sum()) < 1e-6:
        return  # at a stationary point there is no flood crossing to follow
    for first, s0 in (("ascent", 1), ("descent", -1)):
        b = model.loss(theta) + s0 * 0.5 * et * (g * g).sum(-1)
        run = gr.flooded_gd(model.loss, model.grad, theta, b, et, 2)
        if not np.array_equal(run["signs"][:, 0], [-s0, s0]):
            continue  # eta beyond the alternation range for this draw: the derivation does not apply
        derived = np.array(_DISP_Q[first](m11 + 3.0, m12, m22 + 3.0, bb1, bb2, kp, t1, t2, et), dtype=float).ravel()
        disp = (run["theta"][2] - theta)[0]
        # differences of O(1) iterates: absolute round-off ~ 1e-15 |theta| + eta |g|
        np.testing.assert_allclose(disp, derived, rtol=0, atol=1e-13 * (1 + np.abs(theta).max() + et * np.abs(g).max()))
        lead = gr.flooding_two_step_leading(model.hvp(theta, g), et)[0]
        # O(eta^3) remainder: eta^3/2 |D^3L[g,g]| + eta^4/6 |D^4L[g,g,g]| bounds |disp - lead|
        rem = et ** 3 / 2 * np.abs(model.third(theta, g, g)[0]) + et ** 4 / 6 * np.abs(model.fourth(g, g, g)[0])
        assert np.all(np.abs(disp - lead) <= rem * (1 + 1e-9) + 1e-12 * (1 + np.abs(theta).max()))
