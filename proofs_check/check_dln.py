"""Derivations for the diagonal linear network claims (solvable.models.dln), in sympy.

Each check builds the model from its definition (beta = u*u - v*v, L = ||X beta - y||^2 / (2n), the
GR penalty, the finite-difference gradient), derives the quantity, and compares it with solvable's
numeric closed form at random points. Small symbolic sizes (n = 2, d = 2 or 3) keep sympy fast;
the formulas are coordinate-wise, so nothing depends on the size.
"""

from __future__ import annotations

import functools
import numpy as np
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from solvable.models import dln
from solvable.testing import proves

N, D = 2, 3


def _model(n: int = N, d: int = D):
    """Symbols and the loss of a DLN with a symbolic n x d design."""
    X = sp.Matrix(n, d, lambda i, j: sp.Symbol(f"x{i}{j}", real=True))
    y = sp.Matrix(n, 1, lambda i, _: sp.Symbol(f"y{i}", real=True))
    u = sp.Matrix(d, 1, lambda i, _: sp.Symbol(f"u{i}", positive=True))
    v = sp.Matrix(d, 1, lambda i, _: sp.Symbol(f"v{i}", positive=True))
    beta = sp.Matrix([u[i] ** 2 - v[i] ** 2 for i in range(d)])
    r = X * beta - y
    L = (r.T * r)[0, 0] / (2 * n)
    theta = list(u) + list(v)
    return X, y, u, v, beta, r, L, theta


def _point(rng, n=N, d=D):
    X = rng.standard_normal((n, d))
    y = rng.standard_normal(n)
    u = rng.uniform(0.3, 1.5, d)
    v = rng.uniform(0.3, 1.5, d)
    return X, y, u, v


def _lam(expr, X, y, u, v, *extra):
    """lambdify over the flattened entries of X, y, u, v (and extra scalars), called with arrays."""
    syms = list(X) + list(y) + list(u) + list(v) + list(extra)
    f = sp.lambdify(syms, expr, "numpy")

    def call(Xn, yn, un, vn, *ex):
        vals = list(np.ravel(Xn)) + list(np.ravel(yn)) + list(np.ravel(un)) + list(np.ravel(vn)) + list(ex)
        return np.asarray(f(*vals), dtype=float)

    return call


# ---------------------------------------------------------------------------------------------
# dln.implicit_bias


@proves("dln.implicit_bias")
def check_grad_Q_is_asinh_and_kkt_form():
    """d/dbeta [alpha^2 q(beta/alpha^2)] = asinh(beta/(2 alpha^2)); inverting the KKT condition
    asinh(beta/(2 alpha^2)) = (X^T mu)_i gives beta = 2 alpha^2 sinh(X^T mu)."""
    b = sp.Symbol("beta", real=True)
    a = sp.Symbol("alpha", positive=True)
    z = sp.Symbol("z", real=True)
    q = 2 - sp.sqrt(4 + z**2) + z * sp.asinh(z / 2)
    Qi = a**2 * q.subs(z, b / a**2)
    dQ = sp.simplify(sp.diff(Qi, b))
    assert sp.simplify(dQ - sp.asinh(b / (2 * a**2))) == 0
    s = sp.Symbol("s", real=True)
    (beta_of_s,) = sp.solve(sp.Eq(dQ, s), b)
    assert sp.simplify(beta_of_s - 2 * a**2 * sp.sinh(s)) == 0
    f = sp.lambdify((b, a), dQ, "numpy")
    rng = np.random.default_rng(0)
    bs, als = rng.standard_normal(20) * 3, rng.uniform(0.05, 3, 20)
    np.testing.assert_allclose([f(x, al) for x, al in zip(bs, als)],
                               [dln.grad_Q_alpha(x, al) for x, al in zip(bs, als)], rtol=1e-12)
    # solvable's solution satisfies the derived KKT form: grad Q(beta) lies in the row space of X
    X, y, _ = dln.make_data(8, 20, 2, 1)
    for alpha in (0.2, 1.0):
        beta = dln.implicit_bias_solution(X, y, alpha)
        gq = np.asarray(sp.lambdify(b, dQ.subs(a, alpha), "numpy")(beta))
        proj = X.T @ np.linalg.lstsq(X.T, gq, rcond=None)[0]
        assert np.linalg.norm(gq - proj) <= 1e-8 * np.linalg.norm(gq)
        np.testing.assert_allclose(X @ beta, y, rtol=0, atol=1e-9 * np.linalg.norm(y))


@proves("dln.implicit_bias")
def check_gradient_flow_solution_and_its_constant():
    """grad_u L = 2 u g, grad_v L = -2 v g with g = X^T r / n; the flow u' = -2 u g, v' = 2 v g is solved by
    u = alpha e^{-2G}, v = alpha e^{2G} (G' = g), so beta = 2 alpha^2 sinh(X^T mu) with mu = -(4/n) int r dt."""
    X, y, u, v, beta, r, L, theta = _model()
    g = X.T * r / N
    for i in range(D):
        assert sp.expand(sp.diff(L, u[i]) - 2 * u[i] * g[i]) == 0
        assert sp.expand(sp.diff(L, v[i]) + 2 * v[i] * g[i]) == 0
    t, a = sp.Symbol("t"), sp.Symbol("alpha", positive=True)
    G = sp.Function("G")(t)
    ut, vt = a * sp.exp(-2 * G), a * sp.exp(2 * G)
    gsym = sp.diff(G, t)
    assert sp.simplify(sp.diff(ut, t) - (-2 * ut * gsym)) == 0
    assert sp.simplify(sp.diff(vt, t) - (2 * vt * gsym)) == 0
    # beta = u^2 - v^2 with G = X^T R / n (R = int r dt): beta = 2 alpha^2 sinh(c X^T R / n); find c
    c, w = sp.Symbol("c"), sp.Symbol("w", real=True)  # w stands for (X^T R / n)_i
    beta_t = sp.simplify((ut**2 - vt**2).subs(G, w))
    c_val = sp.solve(sp.Eq(sp.simplify((beta_t - 2 * a**2 * sp.sinh(c * w)).rewrite(sp.exp).subs(w, 1)), 0), c)
    assert -4 in c_val
    # the analytic gradient in solvable agrees with the derivative of the sympy loss
    grad_expr = sp.Matrix([sp.diff(L, th) for th in theta])
    f = _lam(grad_expr, X, y, u, v)
    rng = np.random.default_rng(1)
    for _ in range(5):
        Xn, yn, un, vn = _point(rng)
        ref = f(Xn, yn, un, vn).ravel()
        np.testing.assert_allclose(dln.dln_grad(Xn, yn, np.concatenate([un, vn])), ref, rtol=1e-12, atol=1e-14)


@proves("dln.implicit_bias", "dln.gr_effective_alpha")
def check_hessian_vector_product():
    """solvable.models.dln.dln_hvp equals the sympy Hessian of L times a vector."""
    X, y, u, v, beta, r, L, theta = _model()
    H = sp.hessian(L, theta)
    f = _lam(H, X, y, u, v)
    rng = np.random.default_rng(2)
    for _ in range(5):
        Xn, yn, un, vn = _point(rng)
        w = rng.standard_normal(2 * D)
        Hn = f(Xn, yn, un, vn)
        np.testing.assert_allclose(dln.dln_hvp(Xn, yn, np.concatenate([un, vn]), w), Hn @ w, rtol=1e-11, atol=1e-13)


# ---------------------------------------------------------------------------------------------
# dln.kernel_rich_limits


@proves("dln.kernel_rich_limits")
def check_limits_of_Q_alpha():
    """alpha -> inf: alpha^2 q(beta/alpha^2) = beta^2/(4 alpha^2) + O(alpha^-6) (so argmin -> min-l2);
    alpha -> 0: alpha^2 q(beta/alpha^2) = |beta| log(1/alpha^2) + |beta| log|beta| - |beta| + o(1)
    (so Q_alpha / log(1/alpha^2) -> ||beta||_1 and argmin -> min-l1)."""
    b = sp.Symbol("beta", positive=True)  # q is even, so |beta| covers both signs
    s = sp.Symbol("s", positive=True)  # s = alpha^2
    z = sp.Symbol("z", positive=True)
    q = 2 - sp.sqrt(4 + z**2) + z * sp.asinh(z / 2)
    Qs = s * q.subs(z, b / s)
    # large alpha: expand in e = 1/s around 0
    e = sp.Symbol("e", positive=True)
    ser = sp.series(Qs.subs(s, 1 / e), e, 0, 3).removeO()
    assert sp.simplify(ser - b**2 * e / 4) == 0  # the O(e^2) term vanishes; next is O(e^3)
    # small alpha: the difference from the l1-with-log form tends to 0
    small = b * sp.log(b / s) - b
    assert sp.limit(Qs - small, s, 0, "+") == 0
    # against solvable's Q_alpha
    rng = np.random.default_rng(3)
    beta = rng.standard_normal(6)
    for alpha in (1e3, 1e4):
        np.testing.assert_allclose(dln.Q_alpha(beta, alpha) * 4 * alpha**2, np.sum(beta**2), rtol=10 / alpha**4)
    lead = sp.lambdify((b, s), small, "numpy")
    for alpha in (1e-3, 1e-5):
        ref = float(np.sum(lead(np.abs(beta), alpha**2)))
        np.testing.assert_allclose(dln.Q_alpha(beta, alpha), ref, rtol=0, atol=10 * alpha**2 * beta.size)


# ---------------------------------------------------------------------------------------------
# dln.gr_effective_alpha


@proves("dln.gr_effective_alpha")
def check_gr_flow_effective_alpha_constant():
    """GR flow theta' = -grad(L + gamma/2 ||grad L||^2): d log(u_i v_i)/dt = -8 gamma g_i^2 exactly, and
    d log(u_i / v_i)/dt = -4 (X^T nu)_i with nu = (r + 4 gamma X (g (u^2+v^2))) / n. Hence u_i v_i =
    alpha^2 exp(-8 gamma int g_i^2): alpha_i = alpha exp(-4 gamma int g_i^2) (constant 4 for any loss
    scaling), and beta = 2 alpha_i^2 sinh(X^T mu): the KKT form of argmin Q with coordinate-wise alpha_i."""
    X, y, u, v, beta, r, L, theta = _model(2, 2)
    gam = sp.Symbol("gamma", positive=True)
    grad = sp.Matrix([sp.diff(L, th) for th in theta])
    R = gam / 2 * (grad.T * grad)[0, 0]
    flow = -sp.Matrix([sp.diff(L + R, th) for th in theta])
    g = X.T * r / 2
    w = sp.Matrix([u[i] ** 2 + v[i] ** 2 for i in range(2)])
    nu = (r + 4 * gam * X * sp.Matrix([g[i] * w[i] for i in range(2)])) / 2
    Xtnu = X.T * nu
    for i in range(2):
        dlog_uv = flow[i] / u[i] + flow[2 + i] / v[i]
        assert sp.expand(dlog_uv + 8 * gam * g[i] ** 2) == 0
        dlog_ratio = flow[i] / u[i] - flow[2 + i] / v[i]
        assert sp.expand(dlog_ratio + 4 * Xtnu[i]) == 0
    # alpha_i from u_i v_i = alpha^2 exp(-8 gamma I): compare with solvable.models.dln.effective_alpha
    a, I = sp.Symbol("alpha", positive=True), sp.Symbol("I", positive=True)
    alpha_i = sp.sqrt(a**2 * sp.exp(-8 * gam * I))
    f = sp.lambdify((a, gam, I), sp.simplify(alpha_i), "numpy")
    rng = np.random.default_rng(4)
    for _ in range(5):
        al, ga, ii = rng.uniform(0.1, 2), rng.uniform(0, 0.5), rng.uniform(0, 3, 4)
        np.testing.assert_allclose(dln.effective_alpha(al, ga, ii), f(al, ga, ii), rtol=1e-13)


# ---------------------------------------------------------------------------------------------
# dln.gr_rich_bias


@proves("dln.gr_rich_bias")
def check_fd_gr_flow_effective_alpha_and_first_order_split():
    """FD-GR flow theta' = -[(1 - gamma/eps) grad L(theta) + (gamma/eps) grad L(theta + eps grad L)]:
    d log(u_i v_i)/dt = -8 gamma g_i(theta) g_i(theta^+) exactly (so alpha_i = alpha exp(-4 gamma int g g^+)),
    d log(u_i/v_i)/dt is in the row space of X; and g_i^+ = g_i + 4 eps (M (g (u^2+v^2)))_i + O(eps^2), so
    forward minus GR is -16 gamma eps int g_i (M (g w))_i + O(gamma eps^2), backward the opposite."""
    X, y, u, v, beta, r, L, theta = _model(2, 2)
    gam, eps = sp.Symbol("gamma", positive=True), sp.Symbol("epsilon", nonzero=True, real=True)
    grad = sp.Matrix([sp.diff(L, th) for th in theta])
    shift = {th: th + eps * gi for th, gi in zip(theta, grad)}
    grad_plus = grad.subs(shift, simultaneous=True)
    flow = -((1 - gam / eps) * grad + (gam / eps) * grad_plus)
    n = 2
    g = X.T * r / n
    beta_plus = beta.subs(shift, simultaneous=True)
    g_plus = X.T * (X * beta_plus - y) / n
    for i in range(2):
        dlog_uv = flow[i] / u[i] + flow[2 + i] / v[i]
        assert sp.expand(dlog_uv + 8 * gam * g[i] * g_plus[i]) == 0
    # d log(u/v)/dt = -4 (1 - gamma/eps) g - 4 (gamma/eps) g^+, both in range(X^T)
    for i in range(2):
        dlog_ratio = flow[i] / u[i] - flow[2 + i] / v[i]
        assert sp.expand(dlog_ratio + 4 * (1 - gam / eps) * g[i] + 4 * (gam / eps) * g_plus[i]) == 0
    # first order in eps of g^+, and of the rate -8 gamma g g^+ relative to exact GR's -8 gamma g^2
    M = X.T * X / n
    w = sp.Matrix([u[i] ** 2 + v[i] ** 2 for i in range(2)])
    Mgw = M * sp.Matrix([g[i] * w[i] for i in range(2)])
    rate_split = []
    for i in range(2):
        d1 = sp.diff(g_plus[i], eps).subs(eps, 0)
        assert sp.expand(d1 - 4 * Mgw[i]) == 0
        rate_split.append(sp.expand(-4 * gam * g[i] * d1 * eps))  # d/dt log alpha_i, forward minus GR
    f = _lam(rate_split, X, y, u, v, gam, eps)
    fJ = _lam([g[i] * Mgw[i] for i in range(2)], X, y, u, v)
    rng = np.random.default_rng(5)
    for _ in range(5):
        Xn, yn, un, vn = _point(rng, 2, 2)
        ga, ep = rng.uniform(0.01, 0.2), rng.uniform(0.01, 0.2)
        derived = f(Xn, yn, un, vn, ga, ep).ravel()
        J = fJ(Xn, yn, un, vn).ravel()
        fwd, bwd = dln.fd_forward_backward_split(ga, ep, J)
        np.testing.assert_allclose(fwd, derived.mean(), rtol=1e-12)
        np.testing.assert_allclose(bwd, -derived.mean(), rtol=1e-12)


@functools.lru_cache(maxsize=1)
def _line_cubic():
    """grad L(theta + s w) of the DLN as a polynomial in s, derived from the loss with symbolic X, y,
    theta and direction w (n = d = 2; the loss is coordinate-wise, nothing depends on the size).
    Returns the degree in s and lambdified coefficients of s^2 (D^3L[w,w]/2) and s^3 (D^4L[w,w,w]/6)."""
    X, y, u, v, beta, r, L, theta = _model(2, 2)
    w = sp.symbols("w0:4", real=True)
    s = sp.Symbol("s", real=True)
    grad = [sp.diff(L, t) for t in theta]
    line = {t: t + s * wi for t, wi in zip(theta, w)}
    polys = [sp.Poly(sp.expand(gi.subs(line, simultaneous=True)), s) for gi in grad]
    syms = list(X) + list(y) + list(u) + list(v) + list(w)
    c2 = sp.lambdify(syms, [pl.coeff_monomial(s**2) for pl in polys], "numpy")
    c3 = sp.lambdify(syms, [pl.coeff_monomial(s**3) for pl in polys], "numpy")
    return max(pl.degree() for pl in polys), c2, c3


@proves("dln.gr_rich_bias")
@settings(max_examples=20, deadline=None)
@given(st.floats(0.01, 0.3), st.floats(0.01, 0.3), st.integers(0, 1000))
def check_fd_gradient_expansion_numerically(gamma, eps, seed):
    """The DLN loss is a quartic polynomial in theta, so grad L(theta + s g) is a cubic in s:
    grad L(theta + s g) = g + s H g + s^2/2 D^3L[g,g] + s^3/6 D^4L[g,g,g] with nothing after it, and
    g_FD - g_GR = gamma (eps/2 D^3L[g,g] + eps^2/6 D^4L[g,g,g]) exactly (eps < 0: backward). The cubic
    is derived in sympy from the loss; solvable's FD-GR minus exact-GR gradients (analytic gradient
    and HVP) must equal it up to round-off, forward and backward."""
    from solvable.models import gr

    degree, c2f, c3f = _line_cubic()
    assert degree == 3  # quartic loss: the Taylor series of grad L along a line terminates at s^3
    rng = np.random.default_rng(seed)
    n = d = 2
    Xn, yn, un, vn = _point(rng, n, d)
    th = np.concatenate([un, vn])
    g = dln.dln_grad(Xn, yn, th)
    args = list(Xn.ravel()) + list(yn) + list(un) + list(vn) + list(g)
    c2, c3 = np.asarray(c2f(*args), dtype=float), np.asarray(c3f(*args), dtype=float)
    gf = lambda t: dln.dln_grad(Xn, yn, t)  # noqa: E731
    hv = lambda t, w: dln.dln_hvp(Xn, yn, t, w)  # noqa: E731
    for e in (eps, -eps):  # forward and backward
        err = gr.fd_gr_gradient(gf, th, gamma, e) - gr.gr_gradient(gf, hv, th, gamma)
        want = gamma * (e * c2 + e**2 * c3)
        # round-off: the gradients' absolute error (u = 2.2e-16 times the size of the summed terms,
        # |u|,|v| times |X|^T (|X| |beta| + |y|) / n, at both points; <= 100 operations, x4 margin)
        # is multiplied by gamma/|eps| in the difference quotient
        size = 0.0
        for tt in (th, th + e * g):
            inner = np.abs(Xn).T @ (np.abs(Xn) @ np.abs(tt[:d] ** 2 - tt[d:] ** 2) + np.abs(yn)) / n
            size = max(size, float(np.max(2 * np.abs(tt) * np.tile(inner, 2))))
        atol = 2.2e-16 * 400 * (1 + gamma / eps) * size
        np.testing.assert_allclose(err, want, rtol=0, atol=atol)


@proves("dln.gr_effective_alpha", "dln.gr_rich_bias")
def check_kkt_sensitivity_weights_are_read_off_the_parameters():
    """The allowance for the extrapolated integral propagates d log a_i through the KKT map
    beta_i = 2 a_i^2 sinh(z_i), z in range(X^T): at fixed z, d beta_i / d log a_i = 2 beta_i, and the
    z-correction that keeps X beta = y has weights d beta_i / d z_i = 2 a_i^2 cosh(z_i), which equal
    u_i^2 + v_i^2 at the endpoint (a_i^2 = u_i v_i, beta_i = u_i^2 - v_i^2): so the sensitivity is read
    off the simulated parameters, without the closed form."""
    u, v = sp.symbols("u v", positive=True)
    a, z = sp.symbols("a z", positive=True)
    la = sp.Symbol("la", real=True)  # log a
    beta = 2 * a**2 * sp.sinh(z)
    assert sp.simplify(sp.diff(beta.subs(a, sp.exp(la)), la).subs(la, sp.log(a)) - 2 * beta) == 0
    weight = sp.diff(beta, z)
    # at the endpoint: a^2 = u v and sinh z = (u^2 - v^2) / (2 u v), so cosh z = (u^2 + v^2) / (2 u v)
    z_end = sp.asinh((u**2 - v**2) / (2 * u * v))
    at_end = sp.factor(sp.simplify(weight.subs({a: sp.sqrt(u * v), z: z_end})), deep=True)
    assert sp.simplify(sp.sqrtdenest(sp.powdenest(at_end, force=True)) - (u**2 + v**2)) == 0
    assert sp.simplify(beta.subs({a: sp.sqrt(u * v), z: z_end}) - (u**2 - v**2)) == 0
