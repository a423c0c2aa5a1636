"""sympy derivations for solvable.models.sphere: each starts from the model (the loss, the update rule) and
derives the quantity that the module's closed form states, then compares the two."""

from __future__ import annotations

import math

import numpy as np
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from solvable.models import sphere
from solvable.testing import proves


def _vec(name: str, d: int) -> sp.Matrix:
    return sp.Matrix(sp.symbols(f"{name}1:{d + 1}", real=True))


def _rayleigh_L(w: sp.Matrix, a: list) -> sp.Expr:
    A = sp.diag(*a)
    return (w.T * A * w)[0] / (2 * (w.T * w)[0])


@proves("sphere.scale_invariance")
def check_scale_invariance_identities():
    """For any F, L(w) = F(w/||w||) has <grad L, w> = 0, grad L(cw) = grad L(w)/c and
    Hess L(cw) = Hess L(w)/c^2 (derived for an undefined F in 2-d); the Rayleigh toy and a
    BatchNorm unit with eps = 0 are of this form (L(cw) = L(w))."""
    c = sp.symbols("c", positive=True)
    w1, w2 = sp.symbols("w1 w2", real=True)
    F = sp.Function("F")
    r = sp.sqrt(w1**2 + w2**2)
    L = F(w1 / r, w2 / r)
    ws = [w1, w2]
    g = sp.Matrix([sp.diff(L, v) for v in ws])
    assert sp.simplify(g[0] * w1 + g[1] * w2) == 0
    scale = {w1: c * w1, w2: c * w2}
    assert sp.simplify(g.subs(scale, simultaneous=True) - g / c) == sp.zeros(2, 1)
    # the Hessian identity (the w-derivative of the gradient identity) on the 3-d Rayleigh toy, where
    # simplify works on rational functions (for an undefined F it is correct but slow in sympy)
    w3 = _vec("w", 3)
    a3 = list(sp.symbols("a1:4", real=True))
    H = sp.hessian(_rayleigh_L(w3, a3), list(w3))
    Hc = H.subs({v: c * v for v in w3}, simultaneous=True)
    assert sp.simplify(Hc - H / c**2) == sp.zeros(3, 3)
    # the measured ratios follow: cos(grad L, w) = 0, |grad L(cw)|/|grad L(w)| = 1/c and
    # ||Hess L(cw)||_F/||Hess L(w)||_F = 1/c^2, compared with the module's closed form
    gnorm = lambda G: sp.sqrt(sum(e**2 for e in G))  # noqa: E731
    derived = [0, sp.simplify(gnorm(g.subs(scale, simultaneous=True)) / gnorm(g)),
               sp.simplify(gnorm(Hc) / gnorm(H))]
    for cv in (0.3, 1.5, 7.0):
        num = [float(sp.N(e.subs(c, cv))) if hasattr(e, "subs") else float(e) for e in derived]
        np.testing.assert_allclose(num, sphere.scale_invariance_ratios(cv), rtol=1e-12)
    # the models are scale-invariant: the Rayleigh toy and a BatchNorm unit on 3 samples (eps = 0)
    d = 3
    w = _vec("w", d)
    a = list(sp.symbols("a1:4", real=True))
    X = sp.Matrix(3, d, sp.symbols("x1:10", real=True))
    t = sp.symbols("t1:4", real=True)
    z = X * w
    zc = z - sp.ones(3, 1) * (sum(z) / 3)
    bn = sum(t[i] * zc[i] for i in range(3)) / sp.sqrt(sum(e**2 for e in zc) / 3)
    for Lm in (_rayleigh_L(w, a), bn):
        assert sp.simplify(Lm.subs({v: c * v for v in w}, simultaneous=True) - Lm) == 0
    # and the module's gradient of the toy is the derived one
    Lr = _rayleigh_L(w, a)
    gfun = sp.lambdify((list(w), a), [sp.diff(Lr, v) for v in w])
    rng = np.random.default_rng(0)
    for _ in range(5):
        wv, av = rng.standard_normal(d), rng.standard_normal(d)
        np.testing.assert_allclose(sphere.rayleigh_grad(wv, av), gfun(list(wv), list(av)), rtol=1e-12, atol=1e-14)


@proves("sphere.fixed_elr_is_projected_sgd")
def check_fixed_elr_step_is_projected_step():
    """w = rho u: w - lr grad L(w) = rho (u - (lr/rho^2) grad_S F(u)), the same direction after normalising,
    so the step of the equivalent projected SGD is lr/rho^2 (the module's effective_lr)."""
    rho, elr, lr = sp.symbols("rho elr lr", positive=True)
    d = 3
    u = _vec("u", d)
    a = list(sp.symbols("a1:4", real=True))
    w = _vec("w", d)
    L = _rayleigh_L(w, a)
    grad = sp.Matrix([sp.diff(L, v) for v in w])
    on_sphere = {u[2]: sp.sqrt(1 - u[0] ** 2 - u[1] ** 2)}
    g_at = grad.subs({w[i]: rho * u[i] for i in range(d)}, simultaneous=True).subs(on_sphere)
    step_fixed = (rho * u - elr * rho**2 * g_at).subs(on_sphere)
    A = sp.diag(*a)
    uu = u.subs(on_sphere)
    g_sphere = A * uu - (uu.T * A * uu)[0] * uu
    step_proj = uu - elr * g_sphere
    assert sp.simplify(step_fixed - rho * step_proj) == sp.zeros(d, 1)
    # the SGD step of rate lr is step_fixed with elr rho^2 = lr: solve for elr
    elr_of_lr = sp.solve(sp.Eq(elr * rho**2, lr), elr)[0]
    f = sp.lambdify((lr, rho), elr_of_lr)
    for lv, rv in ((0.5, 3.0), (0.1, 0.2), (2.0, 10.0)):
        assert math.isclose(f(lv, rv), sphere.effective_lr(lv, rv), rel_tol=1e-14)


def _linearised_multipliers(d: int, quotient_factor: sp.Expr):
    """Jacobian at e_1 of u -> normalise(u - elr grad_S F(u)), F = quotient_factor * u^T A u."""
    elr = sp.symbols("elr", positive=True)
    a = sp.symbols(f"a1:{d + 1}", real=True)
    eps = sp.symbols("epsilon")
    v = sp.symbols(f"v2:{d + 1}", real=True)
    u = sp.Matrix([1] + [eps * vi for vi in v])
    A = sp.diag(*a)
    gF = 2 * quotient_factor * A * u  # Euclidean gradient of quotient_factor u^T A u
    g = gF - (u.T * gF)[0] * u / (u.T * u)[0]
    step = u - elr * g
    new = step / sp.sqrt((step.T * step)[0])
    J = sp.Matrix([[sp.diff(sp.diff(new[i], eps).subs(eps, 0), vj) for vj in v] for i in range(1, d)])
    return sp.simplify(J), elr, a


@proves("sphere.convergence_threshold")
def check_projected_threshold_from_linearisation():
    """Linearise projected GD at e_1: multipliers 1 - elr (a_i - a_1); stable iff elr (a_d - a_1) < 2."""
    d = 4
    J, elr, a = _linearised_multipliers(d, sp.Rational(1, 2))
    assert J.is_diagonal()
    mults = [J[i, i] for i in range(d - 1)]
    for i, m in enumerate(mults):
        assert sp.simplify(m - (1 - elr * (a[i + 1] - a[0]))) == 0
    # for a_1 < a_i the multiplier decreases in elr and crosses -1 first for the largest gap
    crit = sp.solve(sp.Eq(mults[-1], -1), elr)[0]
    f = sp.lambdify((a[0], a[-1]), crit)
    rng = np.random.default_rng(1)
    for _ in range(10):
        lo, gap = rng.uniform(-3, 3), rng.uniform(0.1, 5)
        assert math.isclose(f(lo, lo + gap), sphere.projected_threshold(lo, lo + gap), rel_tol=1e-13)
    # the Rayleigh-quotient convention F = u^T A u doubles the gradient and halves the threshold
    J2, elr2, a2 = _linearised_multipliers(d, sp.Integer(1))
    crit2 = sp.solve(sp.Eq(J2[d - 2, d - 2], -1), elr2)[0]
    assert sp.simplify(crit2 - sp.Rational(1, 2) * crit.subs({a[0]: a2[0], a[-1]: a2[-1]})) == 0


def _norm_recursion():
    """||w'||^2 from w' = (1 - k) w - eta g, g = G/|w| e_perp (2-d suffices: g is orthogonal to w)."""
    x, eta, G = sp.symbols("x eta G", positive=True)
    k = sp.symbols("k", positive=True)
    r = sp.sqrt(x)
    w = sp.Matrix([r, 0])
    g = sp.Matrix([0, G / r])
    wn = (1 - k) * w - eta * g
    return sp.simplify((wn.T * wn)[0]), (w.T * wn)[0], x, eta, G, k


@proves("sphere.wd_equilibrium")
def check_norm_recursion_fixed_point_and_angle():
    """Fixed point of the norm recursion, the ELR there, and the angle between w and w'."""
    xn, dot, x, eta, G, k = _norm_recursion()
    assert sp.simplify(xn - ((1 - k) ** 2 * x + eta**2 * G**2 / x)) == 0
    # the positive root (check the sign at a point with 0 < k < 1)
    sols = [s for s in sp.solve(sp.Eq(xn, x), x) if s.subs({k: sp.Rational(1, 3), eta: 1, G: 1}) > 0]
    assert len(sols) == 1
    xstar = sols[0]
    cos = (dot / sp.sqrt(x * xn)).subs(x, xstar)
    # sympy cannot use 0 < k < 1 to simplify the square roots: compare at random points instead
    derived = sp.lambdify((eta, k, G), [xstar, eta / xstar, sp.acos(cos)])
    rng = np.random.default_rng(2)
    for _ in range(10):
        e, wd, Gv = rng.uniform(0.05, 1), rng.uniform(0.01, 0.5), rng.uniform(0.1, 10)
        np.testing.assert_allclose(sphere.wd_equilibrium(e, wd, Gv), derived(e, e * wd, Gv), rtol=1e-12)
    # small eta wd: angle ~ sqrt(2 eta wd)
    assert sp.limit(sp.acos(1 - k) / sp.sqrt(2 * k), k, 0, "+") == 1


@proves("sphere.wd_equilibrium")
def check_momentum_equilibrium():
    """Heavy ball: the moments of (w, m) from the update with a tangent, mean-zero gradient of power s;
    fixed point; cos angle; small-eta*wd limit sqrt(2 eta wd/(1 + mu)) (Wan et al. 2021)."""
    eta, lam, mu, s = sp.symbols("eta lambda mu s", positive=True)
    A, B, C = sp.symbols("A B C", real=True)
    # vectors as coefficients on (w, m, g); Gram matrix with <w,g> = 0, E<m,g> = 0, E<g,g> = s
    gram = sp.Matrix([[A, B, 0], [B, C, 0], [0, 0, s]])
    w, m, g = sp.Matrix([1, 0, 0]), sp.Matrix([0, 1, 0]), sp.Matrix([0, 0, 1])
    m_new = mu * m + g + lam * w
    w_new = w - eta * m_new
    ip = lambda p, q: sp.expand((p.T * gram * q)[0])  # noqa: E731
    new = sp.Matrix([ip(w_new, w_new), ip(w_new, m_new), ip(m_new, m_new)])
    z = sp.Matrix([A, B, C])
    M = new.jacobian(z)
    n = sp.Matrix([sp.diff(e, s) for e in new])
    assert sp.simplify(new - (M * z + n * s)) == sp.zeros(3, 1)
    Mn, nn = sphere._momentum_moment_matrix(0.3, 0.1, 0.7)
    subs = {eta: 0.3, lam: 0.1, mu: 0.7}
    np.testing.assert_allclose(np.array(M.subs(subs), dtype=float), Mn, rtol=1e-14)
    np.testing.assert_allclose(np.array(n.subs(subs), dtype=float).ravel(), nn, rtol=1e-14)
    K = (sp.eye(3) - M).LUsolve(n)
    cos = 1 - eta * lam - eta * mu * K[1] / K[0]
    # numeric comparison with the module
    rng = np.random.default_rng(3)
    for _ in range(5):
        e, wd, mm, G = rng.uniform(0.05, 1), rng.uniform(0.01, 0.2), rng.uniform(0, 0.95), rng.uniform(0.1, 5)
        sub = {eta: e, lam: wd, mu: mm}
        x = G * math.sqrt(float(K[0].subs(sub)))
        ang = math.acos(float(cos.subs(sub)))
        np.testing.assert_allclose(sphere.wd_equilibrium_momentum(e, wd, mm, G), [x, e / x, ang], rtol=1e-10)
    # 1 - cos = eta wd/(1 + mu) + O((eta wd)^2), i.e. angle ~ sqrt(2 eta wd/(1 + mu))
    kk = sp.symbols("k", positive=True)
    one_minus_cos = sp.simplify((1 - cos).subs(lam, kk / eta))
    lead = sp.limit(one_minus_cos / kk, kk, 0)
    assert sp.simplify(lead - 1 / (1 + mu)) == 0


@proves("sphere.three_regimes")
def check_linearised_noisy_step_and_lyapunov():
    """At e_1 with A = diag(a_1, a_1 + b, ...) and loss-scaled noise, first order in the distance:
    v' = (1 - elr b) v - elr sigma sqrt(b) |v| P xi; so |v'|^2/|v|^2 = (1 - x - y z)^2 + y^2 Q."""
    d = 4
    elr, b, sig, a1 = sp.symbols("elr b sigma a1", positive=True)
    eps = sp.symbols("epsilon", positive=True)
    v = sp.Matrix(sp.symbols("v2:5", real=True))
    xi = sp.Matrix(sp.symbols("xi1:5", real=True))
    u = sp.Matrix([1] + [eps * e for e in v])
    a = [a1] + [a1 + b] * (d - 1)
    A = sp.diag(*a)
    nu2 = (u.T * u)[0]
    gS = A * u - (u.T * A * u)[0] / nu2 * u
    excess = sum((a[i] - a1) * u[i] ** 2 for i in range(d)) / nu2  # 2 (F(u) - F_min) at u/|u|
    # excess = eps^2 * (non-negative), so sqrt(excess) = eps sqrt(excess/eps^2) for eps > 0
    ratio = sp.simplify(excess / eps**2)
    assert not ratio.has(a1)
    Pxi = xi - (u.T * xi)[0] / nu2 * u
    step = u - elr * (gS + sig * eps * sp.sqrt(ratio) * Pxi)
    new = step / sp.sqrt((step.T * step)[0])
    lin = sp.Matrix([sp.simplify(sp.diff(new[i], eps).subs(eps, 0)) for i in range(1, d)])
    vn = sp.sqrt((v.T * v)[0])
    expected = (1 - elr * b) * v - elr * sig * sp.sqrt(b) * vn * sp.Matrix(xi[1:])
    assert sp.simplify(lin - expected) == sp.zeros(d - 1, 1)
    # rotation invariance: with v = |v| e_2 the growth is (1 - x - y xi_2)^2 + y^2 (xi_3^2 + xi_4^2),
    # equal in law to (1 - x + y z)^2 + y^2 Q (xi is symmetric), the module's integrand
    x_, y_ = elr * b, elr * sig * sp.sqrt(b)
    lin_e2 = expected.subs({v[0]: 1, v[1]: 0, v[2]: 0})
    ratio = sp.expand((lin_e2.T * lin_e2)[0])
    assert sp.simplify(ratio - ((1 - x_ - y_ * xi[1]) ** 2 + y_**2 * (xi[2] ** 2 + xi[3] ** 2))) == 0
    # the module's quadrature of E (1/2) log(...) against direct numerical integration of the law
    # derived above (lambdified, not retyped): z = -xi_2 (xi is symmetric), Q = xi_3^2 + ... ~ chi^2_{d-2}
    from scipy import integrate

    zq, Qq = sp.symbols("z Q", real=True)
    law = ratio.subs({xi[1]: -zq, xi[2]: sp.sqrt(Qq), xi[3]: 0})
    law_fn = sp.lambdify((zq, Qq, elr, sig), law.subs(b, 1), "math")
    for e, s, dd in ((0.2, 1.0, 10), (0.5, 0.7, 6), (0.05, 2.0, 20)):
        kh = (dd - 2) / 2
        norm_q = 1.0 / (2**kh * math.gamma(kh))

        def f(q, z):  # integrand times the N(0,1) and chi^2_{d-2} densities (written out: fast)
            dens = math.exp(-z * z / 2) / math.sqrt(2 * math.pi) * norm_q * q ** (kh - 1) * math.exp(-q / 2)
            return 0.5 * math.log(law_fn(z, q, e, s)) * dens

        direct, err = integrate.dblquad(f, -10, 10, 0, 150, epsabs=1e-8)
        # truncation of the tails (|z| > 10, q > 150) is below 1e-15; dblquad's error estimate is err
        assert abs(direct - float(sphere.lyapunov_at_minimum(e, s, 1.0, dd))) < 1e-6 + 10 * err


@proves("sphere.periodic_behavior")
def check_quiet_phase_period_scaling():
    """Between spikes the gradient vanishes and w' = (1 - eta wd) w: undoing a norm jump R takes
    T = log R / (-2 log(1 - k)) steps (k = eta wd), whose log-log slope in k tends to -1."""
    k, R, x0, t = sp.symbols("k R x0 t", positive=True)
    q = sp.symbols("q", positive=True)  # q = 1 - eta wd in (0, 1)
    x = sp.Function("x")
    x_t = sp.rsolve(x(t + 1) - q**2 * x(t), x(t), {x(0): x0})
    # solve x_t = x0 / R in logarithms
    T = sp.solve(sp.Eq(sp.expand_log(sp.log(x_t), force=True), sp.log(x0) - sp.log(R)), t)[0]
    T = T.subs(q, 1 - k)
    assert sp.simplify(T - sp.log(R) / (-2 * sp.log(1 - k))) == 0
    slope = sp.simplify(k * sp.diff(sp.log(T), k))
    assert sp.limit(slope, k, 0, "+") == -1
    assert float(sp.limit(slope, k, 0, "+")) == sphere.period_exponent()


@proves("sphere.sharpness_reduction")
def check_manifold_and_sharpness():
    """Minima of F(u) = u_3^2 (1 + alpha u_1^2)/2 on the sphere: u_3 = 0; Hess L at w on it has
    eigenvalues {0, 0, (1 + alpha cos^2 phi)/|w|^2}; GD with wd is unstable along e_3 iff
    eta lam_max > 2 - eta wd."""
    alpha, phi, r = sp.symbols("alpha phi r", positive=True)
    w = _vec("w", 3)
    nw2 = (w.T * w)[0]
    L = (w[2] ** 2 / nw2) * (1 + alpha * w[0] ** 2 / nw2) / 2
    at = {w[0]: r * sp.cos(phi), w[1]: r * sp.sin(phi), w[2]: 0}
    grad = sp.Matrix([sp.diff(L, v) for v in w]).subs(at)
    assert sp.simplify(grad) == sp.zeros(3, 1)
    H = sp.simplify(sp.hessian(L, list(w)).subs(at))
    eig = sp.simplify(H * sp.Matrix([0, 0, 1]))
    S = sp.simplify(eig[2] * r**2)
    assert sp.simplify(eig - sp.Matrix([0, 0, S / r**2])) == sp.zeros(3, 1)
    f = sp.lambdify((phi, alpha), S)
    for ph, al in ((0.0, 1.0), (0.7, 2.0), (1.5, 0.5)):
        assert math.isclose(f(ph, al), float(sphere.manifold_sharpness(ph, al)), rel_tol=1e-13)
    # the other two eigenvalues vanish (radial: scale invariance; azimuthal: the manifold is flat)
    assert sp.simplify(H.det()) == 0 and sp.simplify(H.trace() - S / r**2) == 0
    # GD + wd from w = (r cos phi, r sin phi, r delta), first order in delta: w_3' = (1 - k - eta lam) w_3
    # with lam = S/r^2, and ||w'|| = (1 - k) r (the gradient is O(delta)); so the measured
    # u_3 = w_3/||w|| has multiplier (1 - k - eta lam)/(1 - k): |.| > 1 iff eta lam > 2(1 - k)
    eta, lam, k, dl = sp.symbols("eta lam k delta", positive=True)
    wd_ = k / eta
    w0 = sp.Matrix([r * sp.cos(phi), r * sp.sin(phi), r * dl])
    gL = sp.Matrix([sp.diff(L, v) for v in w]).subs({w[i]: w0[i] for i in range(3)}, simultaneous=True)
    w1 = (1 - k) * w0 - eta * gL
    u3_new = w1[2] / sp.sqrt((w1.T * w1)[0])
    # d u_3'/d u_3 at u_3 = 0; |1 - k| = 1 - k since 0 < k = eta wd < 1
    mult = sp.simplify(sp.diff(u3_new, dl).subs(dl, 0)).subs(sp.Abs(k - 1), 1 - k)
    lam_at = S / r**2
    assert sp.simplify(mult - (1 - k - eta * lam_at) / (1 - k)) == 0
    assert wd_ * eta == k
    crit = sp.solve(sp.Eq((1 - k - eta * lam) / (1 - k), -1), lam)[0]
    assert sp.simplify(eta * crit - 2 * (1 - k)) == 0
    # on the manifold eta lam = eta S/||w||^2 rises by ||w||^2/||w'||^2 = (1 - k)^-2 per step (S fixed),
    # so a detected onset lies in [2(1 - k), 2/(1 - k)], whose geometric centre is the predicted 2
    ramp = sp.simplify(((r**2) / ((1 - k) * r) ** 2))
    hi = sp.simplify(eta * crit * ramp)
    assert sp.simplify(hi - 2 / (1 - k)) == 0
    assert sp.simplify(sp.sqrt(eta * crit * hi) - 2) == 0
    # the flattest minimum: min over phi of S is 1 (phi = pi/2), which the claim predicts
    assert sp.minimum(S.subs(alpha, 1), phi, sp.Interval(0, sp.pi)) == 1


@settings(max_examples=5, deadline=None)
@given(st.floats(-3, 3), st.floats(0.1, 5))
@proves("sphere.convergence_threshold")
def check_threshold_lambdified_at_random_points(a_min, gap):
    J, elr, a = _LIN
    m = J[-1, -1]
    val = float(m.subs({elr: sphere.projected_threshold(a_min, a_min + gap), a[0]: a_min, a[-1]: a_min + gap}))
    assert math.isclose(val, -1.0, rel_tol=1e-12)


_LIN = _linearised_multipliers(3, sp.Rational(1, 2))
