"""Sympy derivations for solvable.models.ergodic, each compared with the module's numeric closed form.

Every check starts from the model's recurrence (moment equations, a linear recursion solved with
``rsolve``, the Lyapunov fixed point, the Kesten moment equation) and never restates the formula
it checks; the comparison is at hypothesis-drawn points through ``lambdify``.
"""

from __future__ import annotations

import math

import numpy as np
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from solvable.models import ergodic as E
from solvable.testing import assert_close, proves

eta, a, sigma = sp.symbols("eta a sigma", positive=True)
x, xi = sp.symbols("x xi", real=True)

# Points where a stationary law exists: eta * a < 2.
stable = st.tuples(st.floats(0.01, 1.5), st.floats(0.05, 1.9), st.floats(0.1, 3.0)).filter(
    lambda t: t[0] * t[1] < 1.98)


def _moment_step(expr_power: int, r) -> sp.Expr:
    """E[(r x - eta xi)^n] as a polynomial in the moments m_j = E x^j, for xi ~ N(0, sigma^2)
    independent of x (Gaussian moments: E xi^2 = sigma^2, E xi^4 = 3 sigma^4, odd ones 0)."""
    m = sp.symbols(f"m0:{expr_power + 1}")
    poly = sp.Poly(sp.expand((r * x - eta * xi) ** expr_power), x, xi)
    xi_mom = {0: 1, 1: 0, 2: sigma**2, 3: 0, 4: 3 * sigma**4}
    return sum(c * m[i] * xi_mom[j] for (i, j), c in poly.terms()), m


def _stationary_moments():
    """Solve the stationary moment equations m2 = E x'^2, m4 = E x'^4 (with m1 = m3 = 0)."""
    r = 1 - eta * a
    e2, m = _moment_step(2, r)
    m2 = sp.solve(sp.Eq(m[2], e2.subs({m[0]: 1, m[1]: 0})), m[2])[0]
    e4, m4s = _moment_step(4, r)
    m4 = sp.solve(sp.Eq(m4s[4], e4.subs({m4s[0]: 1, m4s[1]: 0, m4s[3]: 0, m4s[2]: m2})), m4s[4])[0]
    return sp.simplify(m2), sp.simplify(m4)


@proves("ergodic.ou_stationary")
def check_1d_variance_and_loss_moments_from_moment_equations():
    m2, m4 = _stationary_moments()
    loss = a * x**2 / 2
    ef = a * m2 / 2                      # E f from the second moment
    ef2 = sp.expand(loss**2).coeff(x, 4) * m4  # E f^2 = (a^2 / 4) E x^4
    eg2 = a**2 * m2                      # E f'(x)^2 with f'(x) = a x
    # positivity for every stable step: the loss does not reach 0 and the gradient does not vanish
    # (every stable step is eta = 2 / (a (1 + w)) for some w > 0)
    w = sp.Symbol("w", positive=True)
    assert sp.simplify(ef.subs(eta, 2 / (a * (1 + w)))).is_positive
    assert sp.simplify(eg2.subs(eta, 2 / (a * (1 + w)))).is_positive
    fns = sp.lambdify((eta, a, sigma), (m2, ef, ef2, eg2))

    @settings(max_examples=30, deadline=None)
    @given(stable)
    def compare(t):
        e, aa, s = t
        d_m2, d_ef, d_ef2, d_eg2 = fns(e, aa, s)
        # the derived forms divide by 1 - r^2 = eta a (2 - eta a) (and 1 - r^4), computed from r by
        # cancellation: relative round-off grows as 1/(2 - eta a) near the stability edge (seen at
        # eta a = 1.91: E f^2 off by 232 eps)
        k = 1.0 + 1.0 / (2.0 - e * aa)
        assert_close(E.stationary_variance(e, aa, s), d_m2, n_ops=50 * k)
        mf, mf2 = E.stationary_loss_moments(e, aa, s)
        assert_close(mf, d_ef, n_ops=50 * k)
        assert_close(mf2, d_ef2, n_ops=200 * k)
        assert_close(E.stationary_grad_sq(e, aa, s), d_eg2, n_ops=50 * k)

    compare()


@proves("ergodic.time_average_equals_ensemble")
def check_stationary_law_is_gaussian_and_mean_abs():
    """The stationary law: its characteristic function solves phi(s) = phi(r s) exp(-eta^2 sigma^2 s^2 / 2);
    the Gaussian with the moment-equation variance solves it, and E|x| follows by integration."""
    m2, _ = _stationary_moments()
    s = sp.symbols("s", real=True)
    r = 1 - eta * a
    phi = lambda z: sp.exp(-m2 * z**2 / 2)
    assert sp.simplify(phi(s) - phi(r * s) * sp.exp(-(eta * sigma * s) ** 2 / 2)) == 0
    V = sp.symbols("V", positive=True)
    density = sp.exp(-x**2 / (2 * V)) / sp.sqrt(2 * sp.pi * V)
    e_abs = sp.simplify(2 * sp.integrate(x * density, (x, 0, sp.oo))).subs(V, m2)
    ef = a * m2 / 2
    fn = sp.lambdify((eta, a, sigma), (ef, e_abs))

    @settings(max_examples=30, deadline=None)
    @given(stable)
    def compare(t):
        e, aa, sg = t
        d_ef, d_abs = fn(e, aa, sg)
        pred = E._ta_predicted(E.TimeAverageParams(eta=e, a=aa, sigma=sg))
        assert_close(pred, [d_ef, d_ef, d_abs, d_abs], n_ops=100)

    compare()


@proves("ergodic.ou_stationary")
def check_lyapunov_solution_for_diagonal_H():
    h = sp.symbols("h1:4", positive=True)
    c = sp.Matrix(3, 3, lambda i, j: sp.Symbol(f"c{min(i, j)}{max(i, j)}", real=True))
    S = sp.Matrix(3, 3, lambda i, j: sp.Symbol(f"S{min(i, j)}{max(i, j)}", real=True))
    A = sp.diag(*[1 - eta * hi for hi in h])
    eqs = list(S - (A * S * A.T + eta**2 * c))
    unknowns = sorted(S.free_symbols, key=str)
    sol = sp.solve(eqs, unknowns, dict=True)[0]
    Sd = S.subs(sol)
    fn = sp.lambdify((eta, h, list(sorted(c.free_symbols, key=str))), Sd)

    @settings(max_examples=25, deadline=None)
    @given(st.lists(st.floats(0.1, 1.9), min_size=3, max_size=3), st.floats(0.05, 1.0),
           st.lists(st.floats(-0.3, 0.3), min_size=3, max_size=3))
    def compare(hs, e, off):
        hs = np.array(hs) / max(hs) * 1.9 / max(e, 1e-9) * min(1.0, e)  # keep eta * h_i < 2
        C = np.array([[1.0, off[0], off[1]], [off[0], 1.0, off[2]], [off[1], off[2], 1.0]])
        cvals = [C[0, 0], C[0, 1], C[0, 2], C[1, 1], C[1, 2], C[2, 2]]
        derived = np.array(fn(e, list(hs), cvals), dtype=float)
        got = E.stationary_covariance(e, np.diag(hs), C)
        assert_close(got, derived, rtol=1e-9, atol=1e-12, reason="scipy's Lyapunov solver (Bartels-Stewart) round-off")

    compare()
    # The non-diagonal H of the claim: sympy's exact linear solve of vec(Sigma) = (A (x) A) vec(Sigma) + eta^2 vec(C)
    H, C = E.default_quadratic(1.3, 0.7)
    e = sp.Rational(9, 10)
    Hs, Cs = sp.Matrix(H), sp.Matrix(C)
    As = sp.eye(3) - e * Hs
    Ssym = sp.Matrix(3, 3, lambda i, j: sp.Symbol(f"T{min(i, j)}{max(i, j)}"))
    sol = sp.solve(list(Ssym - (As * Ssym * As.T + e**2 * Cs)), sorted(Ssym.free_symbols, key=str), dict=True)[0]
    derived = np.array(Ssym.subs(sol), dtype=float)
    assert_close(E.stationary_covariance(0.9, H, C), derived, rtol=1e-9, reason="linear-solve round-off")


@proves("ergodic.heavy_tail_index")
def check_kesten_tail_equation_for_two_point_curvature():
    """Two-point a_t whose multipliers are -m and 1/m: E|A|^alpha = p m^alpha + (1 - p) m^-alpha = 1 is a
    quadratic in y = m^alpha with roots 1 (alpha = 0) and the tail index; compare with brentq."""
    p, m, al, y = sp.symbols("p m alpha y", positive=True)
    moment = p * m**al + (1 - p) * m ** (-al)
    quad = sp.expand(sp.simplify((moment - 1) * m**al).subs(m**al, y))
    roots = [rt for rt in sp.solve(sp.Eq(quad, 0), y) if sp.simplify(rt - 1) != 0]
    assert len(roots) == 1
    alpha_closed = sp.log(roots[0]) / sp.log(m)
    assert sp.simplify(moment.subs(al, alpha_closed) - 1) == 0
    lyap = p * sp.log(m) + (1 - p) * sp.log(1 / m)  # E log|A| < 0  <=>  p < 1/2
    fn = sp.lambdify((p, m), (alpha_closed, lyap))

    @settings(max_examples=40, deadline=None)
    @given(st.floats(0.05, 0.45), st.floats(1.2, 6.0), st.floats(0.1, 3.0))
    def compare(pp, mm, e):
        closed, ly = fn(pp, mm)
        assert ly < 0
        a_values = ((1 + mm) / e, (1 - 1 / mm) / e)  # 1 - eta a = -m and 1 / m
        numeric = E.tail_index_two_point(e, a_values, (pp, 1 - pp))
        assert_close(numeric, closed, rtol=1e-9, reason="brentq stopped at xtol = rtol = 1e-12")

    compare()


@proves("ergodic.heavy_tail_index")
def check_kesten_alpha_two_at_gaussian_features():
    """For a_t ~ chi2_b / b (Gamma(b/2, 2/b)) derive the step where alpha = 2, i.e. E(1 - eta a)^2 = 1,
    from the Gamma moments, and check the quadrature + brentq solver returns 2 there."""
    b = sp.symbols("b", positive=True, integer=True)
    t = sp.symbols("t", positive=True)
    k, th = b / 2, 2 / b
    density = t ** (k - 1) * sp.exp(-t / th) / (sp.gamma(k) * th**k)
    moments = [sp.simplify(sp.integrate(t**j * density, (t, 0, sp.oo), conds="none")) for j in (1, 2)]
    eq = sp.expand(1 - 2 * eta * moments[0] + eta**2 * moments[1]) - 1
    eta_star = [s_ for s_ in sp.solve(eq, eta) if s_ != 0][0]
    for bb in (1, 2, 3, 4, 8):
        e = float(eta_star.subs(b, bb))
        assert_close(E.tail_index(e, bb), 2.0, rtol=1e-7, reason="quad at epsrel 1e-10, brentq at 1e-12")


def _lookahead_derivation():
    """Slow-weight variance of Lookahead from its linear recursion, for symbolic k."""
    al = sp.symbols("alpha", positive=True)
    k, j = sp.symbols("k j", integer=True, nonnegative=True)
    r = sp.symbols("r", real=True)
    v = sp.Function("v")
    # Fast weights from phi: x_j = r^j phi + n_j, n_{j+1} = r n_j + eta a c_j, n_0 = 0; the noise
    # part's variance obeys v_{j+1} = r^2 v_j + eta^2 a^2 sigma^2.
    vk = sp.rsolve(v(j + 1) - r**2 * v(j) - eta**2 * a**2 * sigma**2, v(j), {v(0): 0}).subs(j, k)
    # phi' = phi + alpha (x_k - phi) = (1 - alpha + alpha r^k) phi + alpha n_k, n_k independent of phi.
    VLA = sp.symbols("V_LA", positive=True)
    v_la = sp.solve(sp.Eq(VLA, (1 - al + al * r**k) ** 2 * VLA + al**2 * vk), VLA)[0]
    # Plain SGD: V = r^2 V + eta^2 a^2 sigma^2.
    VS = sp.symbols("V_SGD", positive=True)
    v_sgd = sp.solve(sp.Eq(VS, r**2 * VS + eta**2 * a**2 * sigma**2), VS)[0]
    return al, k, r, sp.simplify(v_sgd), sp.simplify(v_la)


@proves("ergodic.lookahead_variance")
def check_lookahead_variance_from_linear_recursion():
    al, k, r, v_sgd, v_la = _lookahead_derivation()
    subs_r = 1 - eta * a
    fn = sp.lambdify((eta, a, sigma, al, k), (v_sgd.subs(r, subs_r), v_la.subs(r, subs_r)))
    # alpha = 1 is plain SGD restarted from phi every k steps: the variances agree
    assert sp.simplify((v_la - v_sgd).subs(al, 1)) == 0

    @settings(max_examples=40, deadline=None)
    @given(stable, st.floats(0.05, 1.0), st.integers(1, 40))
    def compare(t, alpha, kk):
        e, aa, s = t
        d_sgd, d_la = fn(e, aa, s, alpha, kk)
        got_sgd, got_la = E.lookahead_variance(e, aa, s, alpha, kk)
        assert_close(got_sgd, d_sgd, n_ops=100)
        assert_close(got_la, d_la, rtol=1e-10, reason="r^k with k <= 40 and a ratio: round-off only")
        assert got_la <= got_sgd * (1 + 1e-12)

    compare()


@proves("ergodic.weights_do_not_converge")
def check_linearised_law_converges_while_iterates_keep_moving():
    """What the claim's checks rest on, derived for the linearised chain near a minimum.

    Covered: near a minimum with curvature a, SGD is the linear chain x_{t+1} = r x_t - eta xi_t,
    r = 1 - eta a. Derived from that recurrence: (1) its law N(0, v_t) converges geometrically,
    v_t = V (1 - r^(2t)) ("the weights' law converges"); (2) at stationarity the displacement across
    a window of s steps has E(x_{t+s} - x_t)^2 = 2 V (1 - r^s), bounded below by
    2 V (1 - max(r, r^2)) > 0 for every s >= 1 ("displacement across the last window bounded away
    from 0"); (3) the one-step increment is Gaussian with a t-independent variance 2 V (1 - r), so
    the expected distance travelled over L steps is L sqrt(2 * 2 V (1 - r) / pi): linear in L, the
    same in any two stationary windows ("distance travelled grows linearly").
    Not covered: the MLP itself. A tanh network has no closed-form stationary law, so the claim's
    numbers (window distance, loss plateau, gradient norm, travel) are checked only by simulation
    against the permutation null and Monte Carlo standard errors; this derivation shows the
    mechanism in the quadratic analogue, not the network's values.
    """
    t, s = sp.symbols("t s", integer=True, nonnegative=True)
    j, L = sp.symbols("j L", integer=True, positive=True)
    r = 1 - eta * a
    v = sp.Function("v")
    vt = sp.rsolve(v(t + 1) - r**2 * v(t) - eta**2 * sigma**2, v(t), {v(0): 0})
    W = sp.Symbol("W")
    Vs = sp.solve(W - r**2 * W - eta**2 * sigma**2, W)[0]  # the fixed point of the variance map
    # (1) the law N(0, v_t) converges geometrically: v_t = V (1 - r^(2t)) exactly
    fn_gap = sp.lambdify((eta, a, sigma, t), vt - Vs * (1 - r ** (2 * t)))
    for e, aa, sg, tt in [(0.3, 1.2, 0.7, 5), (1.1, 1.5, 2.0, 17), (0.05, 0.5, 1.0, 100)]:
        assert abs(fn_gap(e, aa, sg, tt)) <= 1e-12 * float(Vs.subs({eta: e, a: aa, sigma: sg}))
    # (2) unroll the recurrence: x_{t+s} - x_t = (r^s - 1) x_t - eta sum_{j<s} r^(s-1-j) xi_{t+j}, the
    # noise independent of x_t, so its second moment at stationarity is (r^s - 1)^2 V + eta^2 sigma^2
    # sum_{j<s} r^(2j); derive the sum and compare with the closed form 2 V (1 - r^s)
    rr = sp.Symbol("rr", positive=True)  # r^2 as a symbol: a geometric sum sympy closes
    geo = sp.summation(rr ** (j - 1), (j, 1, s))
    msd = (r**s - 1) ** 2 * Vs + eta**2 * sigma**2 * geo.subs(rr, r**2)
    fn_msd = sp.lambdify((eta, a, sigma, s), msd)
    # (3) one step: Var(x_{t+1} - x_t) = 2 V (1 - r) does not depend on t
    step_var = sp.simplify(msd.subs(s, 1))
    assert sp.simplify(step_var - 2 * Vs * (1 - r)) == 0
    travel = L * sp.sqrt(2 * step_var / sp.pi)  # E|N(0, q)| = sqrt(2 q / pi), summed over L steps
    assert sp.simplify(sp.diff(travel, L, 2)) == 0 and sp.diff(travel, L).free_symbols.isdisjoint({L})

    @settings(max_examples=30, deadline=None)
    @given(stable, st.integers(1, 200))
    def compare(tt, lag):
        e, aa, sg = tt
        got = E.stationary_mean_square_displacement(e, aa, sg, lag)
        rv = 1.0 - e * aa
        # the derived geometric sum (1 - r^(2s)) / (1 - r^2) cancels to relative size 1 - r^2: its
        # round-off is eps / (1 - r^2), on top of ~400 operations for r^s with s <= 200
        assert_close(got, fn_msd(e, aa, sg, lag), n_ops=400 + 4.0 / (1.0 - rv * rv))
        v_stat = E.stationary_variance(e, aa, sg)
        # bounded away from zero uniformly in the window length
        assert got >= 2 * v_stat * (1 - max(rv, rv * rv)) * (1 - 1e-12) > 0

    compare()


@proves("ergodic.sphere_invariant_measure")
def check_norm_map_of_scale_invariant_sgd_with_weight_decay():
    """w' = (1 - eta wd) w - eta g with g orthogonal to w (scale invariance: <grad L(w), w> = 0) and
    ||g|| = G / ||w|| (grad L(c w) = grad L(w) / c). Derive the squared-norm map from the vectors,
    its fixed point and its slope there: the norm settles geometrically, so the direction runs at a
    fixed effective learning rate and its chain has an invariant law."""
    wd, G, xs = sp.symbols("wd G x", positive=True)
    # 2-D suffices: w = (sqrt(x), 0), g = (0, G / sqrt(x)) orthogonal to it.
    w = sp.Matrix([sp.sqrt(xs), 0])
    g = sp.Matrix([0, G / sp.sqrt(xs)])
    w_new = (1 - eta * wd) * w - eta * g
    x_new = sp.simplify(w_new.dot(w_new))
    sample = {eta: sp.Rational(1, 10), wd: sp.Rational(1, 10), G: 1}  # a squared norm is positive
    fixed = [s_ for s_ in sp.solve(sp.Eq(x_new, xs), xs) if s_.subs(sample).is_positive]
    assert len(fixed) == 1
    slope = sp.simplify(sp.diff(x_new, xs).subs(xs, fixed[0]))
    assert G not in slope.free_symbols  # the rate does not depend on the gradient size
    fn = sp.lambdify((eta, wd, G), (fixed[0], slope))

    @settings(max_examples=30, deadline=None)
    @given(st.floats(0.01, 1.0), st.floats(0.01, 0.5), st.floats(0.1, 3.0))
    def compare(e, lam, gg):
        x_star, sl = fn(e, lam, gg)
        # the slope 2 (1 - eta wd)^2 - 1 is a difference of O(1) terms: its relative round-off grows
        # as 1/|slope| (seen at eta = 0.89, wd = 0.32: slope 0.023, relative difference 4.8e-15)
        assert_close(E.norm_map_contraction(e, lam), abs(sl), n_ops=20 * (1.0 + 1.0 / abs(sl)))
        assert abs(sl) < 1
        from solvable.models import sphere
        assert_close(sphere.wd_equilibrium(e, lam, gg)[0], x_star, n_ops=50)

    compare()


@proves("ergodic.weights_do_not_converge")
def check_fluctuation_dissipation_of_sgd():
    """theta' = theta - lr g (g the step's minibatch gradient, weight decay included): expand ||theta'||^2
    from the vectors; stationarity E||theta'||^2 = E||theta||^2 leaves E<theta, g> / E||g||^2 = lr / 2
    (Yaida 2018), whatever the loss. Checked on the quadratic chain, where both sides are known."""
    lr = sp.symbols("lr", positive=True)
    th = sp.Matrix(sp.symbols("th1:4", real=True))
    gv = sp.Matrix(sp.symbols("g1:4", real=True))
    new = th - lr * gv
    D, Q = sp.symbols("D Q", positive=True)  # E<theta, g> and E||g||^2
    # E||theta'||^2 - E||theta||^2 is linear in the two moments: read off their coefficients
    change = sp.expand(new.dot(new) - th.dot(th))
    coeff_D = -2 * lr
    coeff_Q = lr**2
    assert sp.simplify(change - (coeff_D * th.dot(gv) + coeff_Q * gv.dot(gv))) == 0
    ratio = sp.solve(sp.Eq(coeff_D * D + coeff_Q * Q, 0), D)[0] / Q
    fn = sp.lambdify(lr, ratio)
    for lv in (0.05, 0.2, 1.3):
        assert math.isclose(fn(lv), E.sgd_fluctuation_dissipation(lv), rel_tol=1e-14)
    # the quadratic chain x' = x - eta (a x + xi): E[x g] = a V, E[g^2] = a^2 V + sigma^2
    for e, aa, sg in ((0.3, 1.2, 0.7), (1.1, 1.5, 2.0), (0.05, 0.5, 1.0)):
        v = E.stationary_variance(e, aa, sg)
        assert math.isclose(aa * v / (aa * aa * v + sg * sg), E.sgd_fluctuation_dissipation(e), rel_tol=1e-12)


@proves("ergodic.sphere_invariant_measure")
def check_log_cos_angle_balances_weight_decay():
    """w' = (1 - k) w - eta g with g orthogonal to w: ||w'|| cos theta = <w', w>/||w|| = (1 - k) ||w|| at every
    step, so log||w'|| - log||w|| = log(1 - k) - log cos theta; a stationary log||w|| has mean change 0, so
    E[-log cos theta] = -log(1 - k), the module's closed form."""
    k = sp.symbols("k", positive=True)
    x, gn = sp.symbols("x gn", positive=True)
    w = sp.Matrix([sp.sqrt(x), 0])
    g = sp.Matrix([0, gn])
    w_new = (1 - k) * w - eta * g
    cos_t = w_new.dot(w) / (sp.sqrt(w_new.dot(w_new)) * sp.sqrt(w.dot(w)))
    step = sp.log(sp.sqrt(w_new.dot(w_new))) - sp.log(sp.sqrt(x))
    # the per-step identity, for 0 < k < 1 (cos theta > 0)
    ident = sp.simplify((step - (sp.log(1 - k) - sp.log(cos_t))).subs({k: sp.Rational(1, 7)}))
    assert ident == 0
    stationary = sp.solve(sp.Eq(sp.log(1 - k) + sp.Symbol("m"), 0), sp.Symbol("m"))[0]  # m = E[-log cos]
    fn = sp.lambdify(k, stationary)
    for e, lam in ((0.15, 0.05), (0.5, 0.3), (1.0, 0.9)):
        assert math.isclose(fn(e * lam), E.stationary_log_cos_angle(e, lam), rel_tol=1e-14)
