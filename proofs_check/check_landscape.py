"""Landscape claims derived in sympy.

- ``landscape.bn_gradient_identity``: BatchNorm of one unit written from its definition for a
  concrete batch size m (symbols y_1..y_m, upstream gradients g_1..g_m, gamma, eps); sympy
  differentiates L = sum g_i z_i, and the coefficients (c0, c1, c2) of
  ||dL/dy||^2 sigma^2/gamma^2 = c0 ||g||^2 - c1 <1,g>^2 - c2 <g,yhat>^2 are solved for from exact
  rational sample points; they are compared with solvable's closed form (and the paper's printed
  1/sqrt(m) is shown not to be it).
- ``landscape.filter_norm_invariance``: a 2-layer ReLU net with symbolic weights; the
  filter-normalized direction at the rescaled weights is c times (resp. 1/c times) the original one,
  so every point of the plot is the rescaled image of the original point and the output is
  unchanged (ReLU written as (u + |u|)/2, positively homogeneous); a raw direction is not.
"""

from __future__ import annotations

import functools
import random

import numpy as np
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from solvable.models import landscape as L
from solvable.testing import proves


def _bn_grad_norm_sq(m: int):
    """||dL/dy||^2 from BN's definition, as a sympy expression of y, g, gamma, eps."""
    y = sp.symbols(f"y1:{m + 1}", real=True)
    g = sp.symbols(f"g1:{m + 1}", real=True)
    gamma, beta = sp.symbols("gamma beta", positive=True)
    eps = sp.Symbol("epsilon", nonnegative=True)
    mu = sum(y) / m
    var = sum((yi - mu) ** 2 for yi in y) / m
    sigma = sp.sqrt(var + eps)
    z = [gamma * (yi - mu) / sigma + beta for yi in y]
    Lz = sum(gi * zi for gi, zi in zip(g, z))
    grad = [sp.diff(Lz, yi) for yi in y]
    return y, g, gamma, eps, sum(gi ** 2 for gi in grad), sigma, mu


def derived_bn_coefficients(m: int, eps_value=0) -> list[sp.Expr]:
    """Solve for (c0, c1, c2) from three exact rational sample points of the derived norm."""
    y, g, gamma, eps, norm2, sigma, mu = _bn_grad_norm_sq(m)
    c = sp.symbols("c0:3")
    rng = random.Random(m)
    eqs = []
    for _ in range(3):
        sub = {yi: sp.Rational(rng.randint(-9, 9), rng.randint(1, 4)) for yi in y}
        while len(set(sub.values())) < 2:
            sub = {yi: sp.Rational(rng.randint(-9, 9), rng.randint(1, 4)) for yi in y}
        sub.update({gi: sp.Rational(rng.randint(-9, 9), rng.randint(1, 3)) for gi in g})
        sub[gamma] = sp.Rational(rng.randint(1, 5), 2)
        sub[eps] = eps_value
        s2 = (sigma ** 2).subs(sub)
        yhat = [((yi - mu) / sigma).subs(sub) for yi in y]
        gv = [sub[gi] for gi in g]
        f = sub[gamma] ** 2 / s2
        rhs = f * (c[0] * sum(v ** 2 for v in gv) - c[1] * sum(gv) ** 2
                   - c[2] * sum(a * b for a, b in zip(gv, yhat)) ** 2)
        eqs.append(sp.expand(norm2.subs(sub)) - sp.expand(rhs))
    sol = sp.solve(eqs, c, dict=True)
    assert len(sol) == 1, sol
    return [sp.simplify(sol[0][ci]) for ci in c]


@proves("landscape.bn_gradient_identity")
def check_bn_gradient_identity_coefficients():
    for m in (3, 5):
        coef = derived_bn_coefficients(m)
        closed = L.bn_gradient_coefficients(m)
        assert [sp.nsimplify(x) for x in coef] == [1, sp.Rational(1, m), sp.Rational(1, m)], (m, coef)
        np.testing.assert_allclose([float(x) for x in coef], closed, rtol=1e-15)
        # the paper's printed coefficient of <g, yhat>^2 is 1/sqrt(m): not what the definition gives
        assert sp.simplify(coef[2] - 1 / sp.sqrt(m)) != 0


@proves("landscape.bn_gradient_identity")
def check_bn_identity_projector_form():
    """dL/dy = (gamma/sigma) P g with P = I - 11^T/m - yhat yhat^T/m at eps = 0, P a projector:
    hence the norm identity (derived symbolically for m = 3)."""
    m = 3
    y, g, gamma, eps, _, sigma, mu = _bn_grad_norm_sq(m)
    beta = sp.Symbol("beta", positive=True)
    sig0 = sigma.subs(eps, 0)
    yhat = sp.Matrix([(yi - mu) / sig0 for yi in y])
    z = [gamma * yh + beta for yh in yhat]
    grad = sp.Matrix([sp.diff(sum(gi * zi for gi, zi in zip(g, z)), yi) for yi in y])
    one = sp.ones(m, 1)
    P = sp.eye(m) - one * one.T / m - yhat * yhat.T / m
    diff = grad - gamma / sig0 * P * sp.Matrix(g)
    pt = {y[0]: 1, y[1]: -2, y[2]: sp.Rational(7, 3), g[0]: 2, g[1]: sp.Rational(-1, 2), g[2]: 5, gamma: 3}
    assert sp.simplify(diff.subs(pt)) == sp.zeros(m, 1)
    assert sp.simplify((P * P - P).subs(pt)) == sp.zeros(m, m)


@proves("landscape.bn_gradient_identity")
def check_bn_identity_with_eps_is_strict():
    """With eps > 0 the third coefficient is (1 + eps/sigma^2)/m > 1/m: eps/sigma^2 varies with the
    batch, so it is checked at one point (m = 3) against the closed form's eps_ratio argument."""
    m = 3
    y, g, gamma, eps, norm2, sigma, mu = _bn_grad_norm_sq(m)
    pt = {y[0]: 1, y[1]: -2, y[2]: 4, g[0]: 2, g[1]: -1, g[2]: 3, gamma: 2, eps: sp.Rational(1, 2)}
    s2 = (sigma ** 2).subs(pt)
    r = pt[eps] / s2
    yhat = [((yi - mu) / sigma).subs(pt) for yi in y]
    gv = [pt[gi] for gi in g]
    c0, c1, c2 = L.bn_gradient_coefficients(m, float(r))
    rhs = pt[gamma] ** 2 / s2 * (c0 * sum(v ** 2 for v in gv) - c1 * sum(gv) ** 2
                                 - c2 * sum(a * b for a, b in zip(gv, yhat)) ** 2)
    assert abs(float(norm2.subs(pt)) - float(rhs)) < 1e-12 * float(norm2.subs(pt))
    assert r > 0


def _relu(u):
    return (u + sp.Abs(u)) / 2


@functools.lru_cache(maxsize=1)
def _filter_plot_functions():
    """(filter-normalized plot at rescaled weights, at original weights, raw at rescaled, raw at
    original) as numpy functions of (weights, directions, x, c, alpha), after checking symbolically
    that normalizing at the rescaled weights gives the rescaled normalized direction."""
    c, a = sp.symbols("c alpha", positive=True)
    W1 = sp.Matrix(2, 2, sp.symbols("w1_1:5", real=True))
    W2 = sp.Matrix(1, 2, sp.symbols("w2_1:3", real=True))
    D1 = sp.Matrix(2, 2, sp.symbols("d1_1:5", real=True))
    D2 = sp.Matrix(1, 2, sp.symbols("d2_1:3", real=True))
    x = sp.Matrix(sp.symbols("x1:3", real=True))

    def fnorm(D, W):  # each row (filter) of D rescaled to the norm of W's row
        rows = []
        for j in range(D.rows):
            dn = sp.sqrt(sum(v ** 2 for v in D.row(j)))
            wn = sp.sqrt(sum(v ** 2 for v in W.row(j)))
            rows.append(D.row(j) * wn / dn)
        return sp.Matrix.vstack(*rows)

    for D, W, s_ in ((D1, W1, c), (D2, W2, 1 / c)):
        assert all(sp.simplify(e) == 0 for e in (fnorm(D, s_ * W) - s_ * fnorm(D, W)))

    def f(V1, V2):
        return (V2 * (V1 * x).applyfunc(_relu))[0]

    exprs = (f(c * W1 + a * fnorm(D1, c * W1), W2 / c + a * fnorm(D2, W2 / c)),
             f(W1 + a * fnorm(D1, W1), W2 + a * fnorm(D2, W2)),
             f(c * W1 + a * D1, W2 / c + a * D2), f(W1 + a * D1, W2 + a * D2))
    syms = list(W1) + list(W2) + list(D1) + list(D2) + list(x) + [c, a]
    return len(syms) - 2, [sp.lambdify(syms, e, "numpy") for e in exprs]


@proves("landscape.filter_norm_invariance")
@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000))
def check_filter_normalized_plot_is_invariant(seed):
    n, (filt, orig, raw, raw0) = _filter_plot_functions()
    rng = np.random.default_rng(seed)
    args = list(rng.normal(size=n)) + [float(np.exp(rng.uniform(np.log(2), np.log(8)))), float(rng.uniform(0.1, 1))]
    scale = 1 + abs(orig(*args))
    assert abs(filt(*args) - orig(*args)) <= 1e-12 * scale
    # solvable's closed form says the same (no change)
    assert np.all(L.filter_plot_change(args[-2]) == 0)


@proves("landscape.filter_norm_invariance")
def check_raw_plot_is_not_invariant():
    n, (filt, orig, raw, raw0) = _filter_plot_functions()
    rng = np.random.default_rng(0)
    changed = 0
    for _ in range(20):
        args = list(rng.normal(size=n)) + [3.0, 0.5]
        changed += abs(raw(*args) - raw0(*args)) > 1e-6 * (1 + abs(raw0(*args)))
    assert changed >= 15


@proves("landscape.filter_norm_invariance")
def check_batchnorm_removes_per_filter_scale():
    """BN (eps = 0) of c_j u_j equals BN of u_j for c_j > 0: mean and standard deviation both scale by c_j."""
    m = 4
    u = sp.symbols(f"u1:{m + 1}", real=True)
    cj = sp.Symbol("c_j", positive=True)

    def bn(v):
        mu = sum(v) / m
        sd = sp.sqrt(sum((vi - mu) ** 2 for vi in v) / m)
        return [(vi - mu) / sd for vi in v]

    scaled = bn([cj * ui for ui in u])
    assert all(sp.simplify(a - b) == 0 for a, b in zip(scaled, bn(list(u))))


@proves("landscape.mode_connectivity")
def check_least_squares_segment_lies_below_its_chord():
    """L(theta) = ||X theta - y||^2/(2n) with symbolic X (n = 3, p = 2), y, endpoints a, b: sympy expands
    L((1-t) a + t b) - (1-t) L(a) - t L(b) and finds c t (1-t) ||X (b - a)||^2/(2n) with c = -1."""
    n, p = 3, 2
    X = sp.Matrix(n, p, lambda i, j: sp.Symbol(f"x{i}{j}", real=True))
    y = sp.Matrix(n, 1, lambda i, j: sp.Symbol(f"y{i}", real=True))
    a = sp.Matrix(p, 1, lambda i, j: sp.Symbol(f"a{i}", real=True))
    b = sp.Matrix(p, 1, lambda i, j: sp.Symbol(f"b{i}", real=True))
    t = sp.Symbol("t", real=True)

    def loss(th):
        r = X * th - y
        return (r.T * r)[0, 0] / (2 * n)

    gap = sp.expand(loss((1 - t) * a + t * b) - (1 - t) * loss(a) - t * loss(b))
    d = X * (b - a)
    scale = sp.expand(t * (1 - t) * (d.T * d)[0, 0] / (2 * n))
    c = sp.simplify(gap / scale)
    assert c.is_Integer and float(c) == L.linear_chord_gap_coefficient()
    # so the barrier max_t [L(t) - chord(t)] over [0, 1] is 0, attained at the endpoints
    assert L.mode_connectivity_classes()[0] == float(c)


@proves("landscape.bn_smoothness")
def check_batchnorm_scale_invariance_shrinks_gradient_and_curvature():
    """The mechanism (Arora, Li, Lyu 2018, arXiv 1812.03981): a layer followed by BatchNorm (eps = 0) makes the
    loss invariant to the scale of its weights, L(c w) = L(w); sympy differentiates a BN unit over a batch of 3
    with symbolic weights w and finds <w, grad L> = 0, grad L(c w) = grad L(w)/c and Hess L(c w) = Hess L(w)/c^2,
    so the gradient-difference ratios measured by the claim (predictiveness, effective beta) fall as the weight
    norm grows along training, which a network without BN does not have. The claim's sign ([-1, -1]) is
    measured; this derives why it is a decrease, not an increase."""
    w = sp.symbols("w1:3", real=True)
    c = sp.Symbol("c", positive=True)
    xs = [(1, 2), (-1, sp.Rational(1, 2)), (3, -1)]
    gs = [sp.Rational(1, 3), -2, sp.Rational(5, 4)]          # a fixed upstream linear loss, and its square

    def loss(ww):
        u = [ww[0] * a + ww[1] * b for a, b in xs]
        mu = sum(u) / 3
        sd = sp.sqrt(sum((ui - mu) ** 2 for ui in u) / 3)
        z = [(ui - mu) / sd for ui in u]
        return sum(gi * zi for gi, zi in zip(gs, z)) ** 2

    Lw = loss(w)
    Lc = loss([c * wi for wi in w])  # L(c w)
    grad = [sp.diff(Lw, wi) for wi in w]
    pt = {w[0]: sp.Rational(3, 2), w[1]: sp.Rational(-2, 3)}
    assert sp.simplify((Lc - Lw).subs(pt)) == 0
    assert sp.simplify(sum(wi * gi for wi, gi in zip(w, grad)).subs(pt)) == 0
    cpt = {wi: c * v for wi, v in pt.items()}
    assert all(sp.simplify(g.subs(cpt) - g.subs(pt) / c) == 0 for g in grad)
    H = sp.hessian(Lw, w)
    assert all(sp.simplify(H[i, j].subs(cpt) - H[i, j].subs(pt) / c ** 2) == 0 for i in range(2) for j in range(2))
    assert np.all(L.bn_smoothness_classes() == -1)


@proves("landscape.taxonomy")
def check_least_squares_hessian_trace_and_convexity():
    """For L(w) = ||X w - y||^2/(2n), sympy differentiates twice: the Hessian is X^T X/n, free of w and y;
    E tr(X^T X/n) = (1/n) sum_i E ||x_i||^2 = tr Sigma for x ~ N(0, Sigma) (each E x_k^2 = Sigma_kk), so the
    closed form is tr Sigma at every load; and H is positive semidefinite, so the barrier is 0."""
    n, p = 3, 2
    X = sp.Matrix(n, p, lambda i, j: sp.Symbol(f"x{i}{j}", real=True))
    y = sp.Matrix(n, 1, lambda i, j: sp.Symbol(f"y{i}", real=True))
    w = sp.Matrix(p, 1, lambda i, j: sp.Symbol(f"w{i}", real=True))
    r = X * w - y
    Lw = (r.T * r)[0, 0] / (2 * n)
    H = sp.hessian(Lw, list(w))
    assert sp.simplify(H - X.T * X / n) == sp.zeros(p, p)
    assert all(sp.diff(H[i, j], v) == 0 for i in range(p) for j in range(p) for v in list(w) + list(y))
    # expectation of the trace: replace x_ik^2 by Sigma_kk (Gaussian second moments), cross terms absent
    sig = sp.symbols(f"S1:{p + 1}", positive=True)
    tr = sp.expand(H.trace())
    Etr = tr.subs({X[i, k] ** 2: sig[k] for i in range(n) for k in range(p)})
    assert sp.simplify(Etr - sum(sig)) == 0
    for pp, s in ((16, 1.0), (32, 0.5)):
        pred = L.taxonomy_prediction(pp, s)
        assert np.allclose(pred[:3], sum(float(k) ** (-s) for k in range(1, pp + 1))) and pred[3] == 0
    # PSD: v^T H v = ||X v||^2/n
    v = sp.Matrix(p, 1, sp.symbols("v1:3", real=True))
    assert sp.simplify((v.T * H * v)[0, 0] - ((X * v).T * (X * v))[0, 0] / n) == 0
