"""Sympy derivations for solvable.models.symmetry: each builds the network and the group action in sympy,
derives the quantity, and compares it with solvable's numeric closed form."""

import numpy as np
import sympy as sp
import torch
from hypothesis import given
from hypothesis import strategies as st

from solvable.models import symmetry as sym
from solvable.testing import assert_close, proves

_seeds = st.integers(0, 2**16)


def _mat(name, r, c):
    return sp.Matrix(r, c, lambda i, j: sp.Symbol(f"{name}{i}{j}", real=True))


def _sq(M):
    return sum(x**2 for x in M)


@proves("symmetry.linear_invariance")
def check_gl_action_leaves_the_function_unchanged():
    U, V, X, g = _mat("u", 2, 3), _mat("v", 3, 2), _mat("x", 2, 2), _mat("g", 3, 3)
    U2, V2 = U * g.inv(), g * V
    assert sp.simplify(U2 * V2 * X - U * V * X) == sp.zeros(2, 2)
    # solvable's gl_action agrees with the symbolic action at a numeric point
    rng = np.random.default_rng(1)
    # sorted by name: set order follows the string hash, which changes between interpreter runs
    vals = {s: rng.normal() for s in sorted(U.free_symbols | V.free_symbols | g.free_symbols, key=str)}
    Un, Vn, gn = (np.array(m.subs(vals), float) for m in (U, V, g))
    U2n, V2n = sym.gl_action(Un, Vn, gn)
    # norm-wise, since single entries can cancel to near 0: a backward-stable solve has relative error
    # <= h eps cond(g) (factor 10 for the LU growth), a product of inner size h at most h eps |g| |V|
    eps, h = np.finfo(float).eps, 3
    U2s, V2s = np.array(U2.subs(vals), float), np.array(V2.subs(vals), float)
    assert np.linalg.norm(U2n - U2s) <= 10 * h * eps * np.linalg.cond(gn) * np.linalg.norm(U2s)
    assert np.linalg.norm(V2n - V2s) <= h * eps * np.linalg.norm(gn) * np.linalg.norm(Vn)
    # the claim's predicted value is the closed-form loss of the original net: the derived loss of the
    # acted-on net ||U g^-1 g V X - Y||^2 / 2n, lambdified, equals it at drawn points
    Y = _mat("y", 2, 2)
    R = U2 * V2 * X - Y
    syms = sorted(U.free_symbols | V.free_symbols | g.free_symbols | X.free_symbols | Y.free_symbols, key=str)
    loss = sp.lambdify(syms, _sq(R) / (2 * 2))
    for trial in range(3):
        vals = {sy: rng.normal() for sy in syms}
        Un, Vn, Xn, Yn = (np.array(m.subs(vals), float) for m in (U, V, X, Y))
        assert_close(loss(*[vals[sy] for sy in syms]), sym.linear_net_loss(Un, Vn, Xn, Yn), n_ops=1e4,
                     reason="the symbolic inverse of g evaluated in floating point: cond(g) amplifies")


@proves("symmetry.linear_invariance")
def check_positive_rescaling_of_relu_units():
    z, b = sp.symbols("z b", real=True)
    c = sp.Symbol("c", positive=True)
    relu = lambda t: sp.Max(t, 0)  # noqa: E731
    # (u / c) relu(c (v x) + c b) = u relu(v x + b) for c > 0
    u, vx = sp.symbols("u vx", real=True)
    # relu(c z) = c relu(z) for c > 0: check on both sides of the kink (z > 0 and z < 0)
    expr = (u / c) * relu(c * (vx + b)) - u * relu(vx + b)
    zp, zn = sp.Symbol("zp", positive=True), sp.Symbol("zn", negative=True)
    assert sp.simplify(expr.subs(vx, zp - b)) == 0
    assert sp.simplify(expr.subs(vx, zn - b)) == 0
    rng = np.random.default_rng(2)
    U, V, bb, cc, X = rng.normal(size=(2, 4)), rng.normal(size=(4, 3)), rng.normal(size=4), \
        rng.uniform(0.1, 3, 4), rng.normal(size=(3, 5))
    U2, V2, b2 = sym.relu_rescaling(U, V, bb, cc)
    f = lambda U_, V_, b_: U_ @ np.maximum(V_ @ X + b_[:, None], 0)  # noqa: E731
    assert_close(f(U2, V2, b2), f(U, V, bb), n_ops=100)
    del z


@proves("symmetry.leaky_relu_invariance")
@given(seed=_seeds)
def check_data_dependent_action_is_a_projection(seed):
    # symbolic S (h x n): with full column rank, S^+ S = (S^T S)^-1 S^T S = I_n (exact action)
    S = _mat("s", 3, 2)
    pinv_full = (S.T * S).inv() * S.T
    assert sp.simplify(pinv_full * S - sp.eye(2)) == sp.zeros(2, 2)
    # h < n: S = row s (1 x 2); S^+ S = s^T s / |s|^2 is a rank-1 projector, I - Pi != 0
    s = _mat("r", 1, 2)
    Pi = s.T * s / (s * s.T)[0]
    assert sp.simplify(Pi * Pi - Pi) == sp.zeros(2, 2)
    assert (sp.eye(2) - Pi).rank(simplify=True) == 1
    # solvable's action gives f Pi with Pi from the derived projector, at drawn points, h < n
    rng = np.random.default_rng(seed)
    h, n, d, a = 2, 4, 4, 0.3
    U, V, X = rng.normal(size=(1, h)), rng.normal(size=(h, d)), rng.normal(size=(d, n))
    g = np.eye(h) + 0.3 * rng.normal(size=(h, h))
    U2, V2 = sym.leaky_relu_action(U, V, X, g, a)
    Snew = np.where(g @ V @ X > 0, g @ V @ X, a * g @ V @ X)
    Pi_n = Snew.T @ np.linalg.solve(Snew @ Snew.T, Snew)   # rows of S independent: S^T (S S^T)^-1 S
    f = U @ np.where(V @ X > 0, V @ X, a * V @ X)
    assert_close(U2 @ Snew, f @ Pi_n, n_ops=1e5, reason="pinv and the normal-equation projector differ by "
                 "round-off amplified by cond(S)")
    # exact iff S^+ S = I_n iff rank S = n: a generic h x n matrix has rank min(h, n), so exact iff h >= n,
    # the module's prediction for the widths n - 2, ..., n + 2
    for nn in (5, 8):
        derived = [float(np.linalg.matrix_rank(rng.normal(size=(nn + o, nn))) == nn) for o in sym._LEAKY_OFFSETS]
        assert derived == sym.leaky_relu_exact_widths(nn).tolist()


@proves("symmetry.orbit_curvature")
@given(seed=_seeds)
def check_orbit_curvature_from_the_curve(seed):
    k, h, d = 1, 2, 2
    U, V, M = _mat("u", k, h), _mat("v", h, d), _mat("m", h, h)
    t = sp.Symbol("t", real=True)
    # exp(tM) to third order: its first two t-derivatives at 0 are exact
    E = lambda s: sp.eye(h) + s * M + s**2 * M**2 / 2 + s**3 * M**3 / 6  # noqa: E731
    gamma = list(U * E(-t)) + list(E(t) * V)
    d1 = [sp.diff(c, t).subs(t, 0) for c in gamma]
    d2 = [sp.diff(c, t, 2).subs(t, 0) for c in gamma]
    a = sum(x**2 for x in d1)
    b = sum(x * y for x, y in zip(d1, d2))
    c = sum(y**2 for y in d2)
    kappa = sp.sqrt(a * c - b**2) / a ** sp.Rational(3, 2)
    syms = sorted(U.free_symbols | V.free_symbols | M.free_symbols, key=str)
    fn = sp.lambdify(syms, kappa, "numpy")
    rng = np.random.default_rng(seed)
    Un, Vn, Mn = rng.normal(size=(k, h)), rng.normal(size=(h, d)), rng.normal(size=(h, h))
    lookup = {}
    for name, arr in (("u", Un), ("v", Vn), ("m", Mn)):
        for i in range(arr.shape[0]):
            for j in range(arr.shape[1]):
                lookup[f"{name}{i}{j}"] = arr[i, j]
    derived = fn(*[lookup[str(s)] for s in syms])
    assert_close(sym.orbit_curvature_linear(Un, Vn, Mn), derived, n_ops=1e3)


@proves("symmetry.newton_alignment")
def check_gradient_norm_on_the_orbit_and_its_minimum():
    # scalar net f = u v x: the orbit is (u/p, p v); derive ||grad L||^2 along it from L itself
    u, v = sp.symbols("u v", positive=True)
    x, y = sp.symbols("x y", real=True)
    p = sp.Symbol("p", positive=True)
    L = (u * v * x - y) ** 2 / 2
    G = sp.diff(L, u) ** 2 + sp.diff(L, v) ** 2
    Gp = sp.simplify(G.subs({u: u / p, v: p * v}, simultaneous=True))
    e = (u * v * x - y) * x                                  # E = (WX - Y) X^T / n, n = 1
    A, B = (e * v) ** 2, (u * e) ** 2                        # G_U^T G_U and G_V G_V^T
    # ||grad||^2 = P A + B / P with P = g^T g = p^2 (tr(PA) + tr(P^-1 B) in one dimension)
    assert sp.simplify(Gp - (p**2 * A + B / p**2)) == 0
    # stationary point: P A P = B; it is a minimum (convex in P) and the sup is infinite
    P = sp.Symbol("P", positive=True)
    F = P * A + B / P
    crit = [c for c in sp.solve(sp.diff(F, P), P) if c.is_positive is not False]
    assert len(crit) == 1
    Fmin = sp.simplify(F.subs(P, crit[0]))
    assert sp.simplify(sp.diff(F, P, 2).subs(P, crit[0])) != 0
    assert sp.limit(F.subs({u: 1, v: 1, x: 1, y: 3}), P, sp.oo) == sp.oo
    # at the stationary point A = B (gradient balance), and Fmin matches solvable's 2 ||E W^T E||_*
    # (at the orbit point (u/p, p v) the new A is P A and the new B is B / P)
    assert sp.simplify(crit[0] * A - B / crit[0]) == 0
    vals = {u: 0.7, v: 1.3, x: 0.9, y: 2.0}
    closed = sym.min_orbit_grad_norm_sq_linear(np.array([[0.7]]), np.array([[1.3]]), np.array([[0.9]]),
                                               np.array([[2.0]]))
    assert_close(closed, float(Fmin.subs(vals)), n_ops=100)


@proves("symmetry.newton_alignment")
@given(seed=_seeds)
def check_orbit_derivative_is_gradient_balance(seed):
    # matrix case: derive d/dt ||grad L((I + tM) . w)||^2 at t = 0 from the loss, compare with
    # 2 <sym(M), A - B> (stationary for all M iff A = B) and with solvable's orbit formula
    k, h, d, n = 1, 2, 2, 2
    U, V, X, Y, M = _mat("u", k, h), _mat("v", h, d), _mat("x", d, n), _mat("y", k, n), _mat("m", h, h)
    rng = np.random.default_rng(seed)
    vals = {s: sp.Float(rng.normal()) for s in sorted(U.free_symbols | V.free_symbols | X.free_symbols
                                                      | Y.free_symbols | M.free_symbols, key=str)}
    t = sp.Symbol("t", real=True)
    g = sp.eye(h) + t * M.subs(vals)
    Un, Vn, Xn, Yn = (m.subs(vals) for m in (U, V, X, Y))
    Ut, Vt = _mat("a", k, h), _mat("b", h, d)
    L = _sq(Ut * Vt * Xn - Yn) / (2 * n)
    grads = [sp.diff(L, s) for s in list(Ut) + list(Vt)]
    G = sum(q**2 for q in grads)
    sub = dict(zip(list(Ut) + list(Vt), list(Un * g.inv()) + list(g * Vn)))
    Gt = G.subs(sub)
    deriv = float(sp.diff(Gt, t).subs(t, 0))
    f = lambda m: np.array(m, float)  # noqa: E731
    Unp, Vnp, Xnp, Ynp, Mnp = f(Un), f(Vn), f(Xn), f(Yn), f(M.subs(vals))
    E = (Unp @ Vnp @ Xnp - Ynp) @ Xnp.T / n
    A = (E @ Vnp.T).T @ (E @ Vnp.T)
    B = (Unp.T @ E) @ (Unp.T @ E).T
    assert_close(deriv, float(np.sum((Mnp + Mnp.T) * (A - B))), n_ops=1e4)
    # and solvable's tr(PA) + tr(P^-1 B) equals the derived ||grad||^2 at t = 0.3
    derived = float(Gt.subs(t, 0.3))
    closed = sym.orbit_grad_norm_sq_linear(Unp, Vnp, Xnp, Ynp, np.eye(h) + 0.3 * Mnp)
    assert_close(closed, derived, n_ops=1e4)


@proves("symmetry.teleport_increases_gradient")
def check_first_order_gain_of_an_ascent_step():
    # scalar linear net, orbit (u e^{-s}, e^{s} v): the loss is constant and the rate of change of
    # ||grad L||^2 is obj'(0); a normalised ascent step of length s gains s |obj'(0)| + O(s^2)
    u, v, x, y, s = sp.symbols("u v x y s", real=True)
    L = (u * v * x - y) ** 2 / 2
    orbit = {u: u * sp.exp(-s), v: v * sp.exp(s)}
    assert sp.simplify(L.subs(orbit, simultaneous=True) - L) == 0
    G = sp.diff(L, u) ** 2 + sp.diff(L, v) ** 2
    rate = sp.diff(G.subs(orbit, simultaneous=True), s).subs(s, 0)
    vals = {u: 0.8, v: 0.5, x: 1.1, y: -0.7}
    r = float(rate.subs(vals))
    step = 1e-4
    Ut = torch.tensor([[[0.8]]], dtype=torch.float64)
    Vt = torch.tensor([[[0.5]]], dtype=torch.float64)
    X = torch.tensor([[1.1]], dtype=torch.float64)
    Y = torch.tensor([[-0.7]], dtype=torch.float64)
    _, _, info = sym.teleport(Ut, Vt, X, Y, action="linear", steps=1, step_size=step)
    gain = float(info["grad_norm_after"] ** 2 - info["grad_norm_before"] ** 2)
    # O(s^2) remainder: second derivative of G along the orbit, bounded here by 10 |G| s^2
    G0 = float(G.subs(vals))
    assert abs(gain - step * abs(r)) <= 10 * G0 * step**2
    assert gain > 0
    # off a critical point of the orbit (r != 0) every run gains: the module's fraction 1
    assert r != 0 and float(gain > 0) == sym.teleport_gain_fraction()


@proves("symmetry.teleport_accelerates")
def check_descent_lemma_rewards_a_larger_gradient():
    """Covers only the one-step decrease that motivates teleporting to a larger gradient:
    L(w) - L(w - eta grad L) = eta ||grad L||^2 + O(eta^2), to first order in eta. The multi-step,
    five-optimizer speed-up of the claim is measured, not proved."""
    u, v, x, y, eta = sp.symbols("u v x y eta", real=True)
    L = (u * v * x - y) ** 2 / 2
    gu, gv = sp.diff(L, u), sp.diff(L, v)
    L1 = L.subs({u: u - eta * gu, v: v - eta * gv}, simultaneous=True)
    first = sp.diff(L1, eta).subs(eta, 0)
    assert sp.simplify(first + gu**2 + gv**2) == 0
    # the simulator's SGD step shows the same first-order decrease
    vals = {u: 0.8, v: 0.5, x: 1.1, y: -0.7}
    Ut = torch.tensor([[[0.8]]], dtype=torch.float64)
    Vt = torch.tensor([[[0.5]]], dtype=torch.float64)
    X = torch.tensor([[1.1]], dtype=torch.float64)
    Y = torch.tensor([[-0.7]], dtype=torch.float64)
    e = 1e-5
    r = sym.train(Ut, Vt, X, Y, optimizer="sgd", lr=e, steps=1, action="linear")
    dec = float(r["loss"][0, 0] - r["loss"][0, 1]) / e
    G0 = float((gu**2 + gv**2).subs(vals))
    assert abs(dec - G0) <= 10 * G0 * e   # O(eta) remainder
    # at a fixed loss the first step's decrease eta ||grad L||^2 grows with the gradient: a teleported start
    # (larger gradient, same loss) needs no more steps to first order, the module's bound 1 on the ratio
    k = sp.Symbol("k", positive=True)  # the gradient gain of the teleport, ||grad|| -> k ||grad||
    ratio_first_order = sp.simplify((eta * (gu**2 + gv**2)) / (eta * k**2 * (gu**2 + gv**2)))
    assert sp.limit(ratio_first_order, k, 1) == 1 and float(sp.limit(ratio_first_order, k, 1)) == sym.teleport_speedup_bound()


@proves("symmetry.teleport_accelerates")
def check_one_step_decrease_grows_with_the_gradient_at_fixed_loss():
    """What the claim relies on, for one GD step of finite size on the scalar linear net
    f = u v x: the exact decrease is a polynomial in eta, derived here,
    Delta(eta) = eta ||g||^2 - (eta^2 / 2) g^T H g + O(eta^3) (g = grad L, H its Hessian), so at fixed loss
    it grows with ||g||^2 up to the curvature term. Along the orbit (u e^-s, v e^s) the loss is fixed and
    ||g||^2 = e^{2s} A + e^{-2s} B is unbounded; solvable's teleport (linear action) moves to a larger ||g||
    at the same loss, and its SGD step then decreases the loss by the derived Delta, more than before the
    teleport. Not covered: several steps, other optimizers, the LeakyReLU net (measured by the claim)."""
    u, v, x, y, eta = sp.symbols("u v x y eta", real=True)
    L = (u * v * x - y) ** 2 / 2
    g = sp.Matrix([sp.diff(L, u), sp.diff(L, v)])
    H = sp.hessian(L, (u, v))
    L1 = L.subs({u: u - eta * g[0], v: v - eta * g[1]}, simultaneous=True)
    Delta = sp.Poly(sp.expand(L - L1), eta)
    assert Delta.degree() == 4                                  # L is quartic in w
    assert sp.simplify(Delta.coeff_monomial(eta) - (g.T * g)[0]) == 0
    assert sp.simplify(Delta.coeff_monomial(eta**2) + (g.T * H * g)[0] / 2) == 0
    # on the orbit the loss is fixed and ||g||^2 = e^{2s} A + e^{-2s} B (A = (e v)^2, B = (u e)^2)
    s_ = sp.Symbol("s", real=True)
    orbit = {u: u * sp.exp(-s_), v: v * sp.exp(s_)}
    assert sp.simplify(L.subs(orbit, simultaneous=True) - L) == 0
    e = (u * v * x - y) * x
    G_orbit = (g.T * g)[0].subs(orbit, simultaneous=True)
    assert sp.simplify(G_orbit - (sp.exp(2 * s_) * (e * v) ** 2 + sp.exp(-2 * s_) * (u * e) ** 2)) == 0
    # solvable: teleport (GL(1) action) then one SGD step, against the derived exact Delta
    x0, y0, lr = 1.1, -0.7, 0.05
    Ut = torch.tensor([[[0.8]]], dtype=torch.float64)
    Vt = torch.tensor([[[0.5]]], dtype=torch.float64)
    X = torch.tensor([[x0]], dtype=torch.float64)
    Y = torch.tensor([[y0]], dtype=torch.float64)
    U1, V1, info = sym.teleport(Ut, Vt, X, Y, action="linear", steps=10, step_size=0.05)
    assert float(info["grad_norm_after"]) > float(info["grad_norm_before"])
    Dfn = sp.lambdify((u, v, x, y, eta), Delta.as_expr(), "math")
    decs = []
    for Ua, Va in ((Ut, Vt), (U1, V1)):
        r = sym.train(Ua, Va, X, Y, optimizer="sgd", lr=lr, steps=1, action="linear")
        dec = float(r["loss"][0, 0] - r["loss"][0, 1])
        derived = Dfn(float(Ua), float(Va), x0, y0, lr)
        # dec is a difference of two losses L = 0.65 (each within ~10 eps L) and is >= 0.06: <= 200 eps
        # relative; the derived polynomial's O(1) terms add ~100 eps
        assert_close(dec, derived, n_ops=1000, reason="loss difference and polynomial round-off")
        decs.append(dec)
    assert_close(float(info["loss_after"]), float(info["loss_before"]), n_ops=100)
    assert decs[1] > decs[0]


@proves("symmetry.curvature_generalization")
def check_orbit_keeps_the_function_but_changes_curvature():
    # on the orbit of f = u v x the product (hence validation loss) is fixed while the curvature moves
    u, v, m, t = sp.symbols("u v m t", real=True)
    gam = sp.Matrix([u * sp.exp(-m * t), v * sp.exp(m * t)])
    assert sp.simplify(gam[0] * gam[1] - u * v) == 0
    d1, d2 = sp.diff(gam, t), sp.diff(gam, t, 2)
    a, b, c = (d1.T * d1)[0], (d1.T * d2)[0], (d2.T * d2)[0]
    kappa = sp.simplify(sp.sqrt(a * c - b**2) / a ** sp.Rational(3, 2))
    k0 = sp.simplify(kappa.subs(t, 0))
    # derived: kappa = 2 |u v| / (u^2 + v^2)^(3/2), scale-dependent: balanced points are more curved
    vals = [(0.5, 2.0), (1.0, 1.0), (2.0, 0.5)]
    ks = [float(k0.subs({u: a_, v: b_, m: 1.3})) for a_, b_ in vals]
    closed = [float(sym.orbit_curvature_linear(np.array([[a_]]), np.array([[b_]]), np.array([[1.3]])))
              for a_, b_ in vals]
    assert_close(closed, ks, n_ops=100)
    assert ks[1] > ks[0] and ks[0] == ks[2]   # same u v, different curvature
