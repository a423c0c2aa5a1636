"""Sympy derivations for solvable.models.kernels (eigenlearning).

From the kappa equation sum_i lambda_i/(lambda_i + kappa) + delta/kappa = n alone:
- implicit differentiation gives dkappa/ddelta = 1/(n - sum L_i^2), so the prefactor of the test error is
  E0 = n/(n - sum L^2) = n dkappa/ddelta;
- summing L_i gives sum L_i = n - delta/kappa (n exactly at delta = 0);
- the infinite-spectrum asymptotics kappa ~ (pi/(a sin(pi/a)) / n)^a at delta = 0, from the integral of
  1/(1 + kappa u^a), and with it the noiseless data-scaling exponent min(2a, b - 1).
Each is compared with solvable's numeric closed forms (solve_kappa, eigenlearning_error).
"""

import math

import numpy as np
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from solvable.models import kernels
from solvable.testing import proves

M = 3
lams = sp.symbols(f"lambda1:{M + 1}", positive=True)
kap, dl, n = sp.symbols("kappa delta n", positive=True)
Ls = [li / (li + kap) for li in lams]
KAPPA_EQ = sum(Ls) + dl / kap - n


@proves("kernels.learning_curve")
def check_prefactor_is_n_dkappa_ddelta():
    # kappa(delta) defined implicitly by KAPPA_EQ = 0 (n fixed): dkappa/ddelta = -F_delta / F_kappa
    dk = -sp.diff(KAPPA_EQ, dl) / sp.diff(KAPPA_EQ, kap)
    # eliminate n with the equation itself: n = sum L + delta/kappa
    target = 1 / (sum(Ls) + dl / kap - sum(L**2 for L in Ls))
    assert sp.simplify(dk - target) == 0
    # numerically: E0 from eigenlearning_error equals n dkappa/ddelta by finite differences of solve_kappa
    lam, v2 = kernels.spectrum(1.7, 2.2, 50)
    nn, d0, h = 20.0, 0.05, 1e-6
    dkdd = (kernels.solve_kappa(lam, nn, d0 + h) - kernels.solve_kappa(lam, nn, d0 - h)) / (2 * h)
    k0 = kernels.solve_kappa(lam, nn, d0)
    L = lam / (lam + k0)
    E, _ = kernels.eigenlearning_error(1.7, 2.2, d0, nn, 50, 0.3)
    assert math.isclose(E, nn * dkdd * (float(np.sum((1 - L) ** 2 * v2)) + 0.3), rel_tol=1e-6)


# sum L_i = n - delta/kappa follows from KAPPA_EQ = 0 (simplified once, not per drawn point)
TOTAL = sp.solve(KAPPA_EQ, n)[0] - dl / kap
assert sp.simplify(TOTAL - sum(Ls)) == 0


@proves("kernels.learning_curve")
@settings(max_examples=8, deadline=None)
@given(st.floats(1.2, 3.0), st.floats(1.1, 3.0), st.floats(0.0, 0.5), st.integers(5, 60))
def check_total_learnability(a, b, ridge, nn):
    _, S = kernels.eigenlearning_error(a, b, ridge, nn, 100, 0.1)
    k = kernels.solve_kappa(kernels.spectrum(a, b, 100)[0], nn, ridge)
    assert math.isclose(S, nn - ridge / k, rel_tol=1e-9)
    if ridge == 0:
        assert math.isclose(S, nn, rel_tol=1e-9)


@proves("kernels.learning_curve")
def check_kappa_asymptotics_and_exponent():
    # sum_i 1/(1 + kappa i^a) ~ int_0^inf du / (1 + kappa u^a) = kappa^(-1/a) pi / (a sin(pi/a))
    u, kp = sp.symbols("u kappa", positive=True)
    aa = 2
    integral = sp.integrate(1 / (1 + kp * u**aa), (u, 0, sp.oo))
    closed = kp ** (-sp.Rational(1, aa)) * sp.pi / (aa * sp.sin(sp.pi / aa))
    assert sp.simplify(integral - closed) == 0
    # the sum over i >= 1 is the integral minus f(0)/2 (Euler-Maclaurin), so n + 1/2 = integral and
    # kappa = (pi/(a sin(pi/a)) / (n + 1/2))^a; the remaining error is O(1) in the count, relative O(1/n)
    # in kappa^(1/a) (the truncation at 10^6 modes removes a count 1/(10^6 kappa) < 0.1 here)
    lam, _ = kernels.spectrum(2.0, 2.0, 10**6)
    for nn in (100, 400):
        k = kernels.solve_kappa(lam, nn, 0.0)
        pred = float((closed.subs(kp, 1) / (nn + sp.Rational(1, 2))) ** aa)
        assert abs(k / pred - 1) < 2 * aa / nn
    # noiseless ridgeless error: the unlearned tail sum_{i > n} v_i^2 ~ n^(1-b) when b - 1 < 2a, else the
    # head (1 - L_i)^2 ~ (kappa/lambda_i)^2 ~ n^(-2a); fitted slope of the formula over n
    for (A, B) in ((1.5, 2.0), (2.0, 6.0)):
        ns = np.array([100, 200, 400, 800])
        Es = [kernels.eigenlearning_error(A, B, 0.0, int(q), 20000, 0.0)[0] for q in ns]
        slope = np.polyfit(np.log(ns), np.log(Es), 1)[0]
        assert abs(-slope - kernels.data_scaling_exponent(A, B)) < 0.1, (A, B, slope)


@proves("kernels.ntk_drift")
def check_drift_and_lazy_exponents():
    # One hidden unit j of f = w^-1/2 sum_j a_j act(v_j x) (NTK parametrisation, one input direction per
    # example, x1 and x2 the two inputs). Its contribution to the NTK is k_j / w with
    # k_j = act(v x1) act(v x2) + a^2 x1 x2 act'(v x1) act'(v x2). One GD step moves (a, v) by
    # -lr w^-1/2 r grad_(a, v)[a act(v x1)] (residual r at x1): O(w^-1/2) per unit.
    a, v, x1, x2, r, lr, w = sp.symbols("a v x1 x2 r lr w", real=True)
    act = sp.tanh
    k = act(v * x1) * act(v * x2) + a**2 * x1 * x2 * sp.diff(act(v * x1), v) / x1 * sp.diff(act(v * x2), v) / x2
    out = a * act(v * x1)
    step = [-lr * r * sp.diff(out, q) / sp.sqrt(w) for q in (a, v)]
    first = sum(sp.diff(k, q) * dq for q, dq in zip((a, v), step))  # dk_j to first order in the step
    # a ~ N(0, 1) is symmetric: the first-order change is odd in a, so its mean over units vanishes and the
    # sum over w units is a random walk, (1/w) sqrt(w) w^-1/2 = 1/w; the second order is even, coherent:
    # (1/w) w (w^-1/2)^2 = 1/w. Both give the exponent -1 (the 1/sqrt(w) term would need a nonzero mean).
    assert sp.expand(first.subs(a, -a) + first) == 0
    second = sum(sp.diff(k, q1, q2) * d1 * d2 / 2 for q1, d1 in zip((a, v), step) for q2, d2 in zip((a, v), step))
    assert sp.expand(second.subs(a, -a) - second) == 0
    wp = sp.symbols("w", positive=True)
    order_first = sp.degree(sp.powsimp(1 / (sp.sqrt(wp) * wp ** sp.Rational(-1, 2) / wp)), wp) * -1
    order_second = sp.degree(sp.powsimp(1 / (wp * (wp ** sp.Rational(-1, 2)) ** 2 / wp)), wp) * -1
    assert order_first == order_second == -1
    # lazy training: model alpha (f(theta) - f(theta0)), loss (1/(2 alpha^2)) (model - y)^2. The first GD
    # step from theta0 (model 0) is theta1 - theta0 = lr y f'(theta0) / alpha; the distance between the
    # model and its linearisation after it is alpha (f(theta1) - f(theta0) - f'(theta0)(theta1 - theta0)).
    th, y, eps = sp.symbols("theta y epsilon", real=True)
    f = sp.tanh(th)
    d = lr * y * sp.diff(f, th) * eps  # eps = 1/alpha
    F = f.subs(th, th + d) - f - sp.diff(f, th) * d  # the gap is F / eps, F analytic in eps
    assert F.subs(eps, 0) == 0 and sp.diff(F, eps).subs(eps, 0) == 0  # no alpha^1 or alpha^0 term
    slope = sp.diff(F, eps, 2).subs(eps, 0) / 2  # the alpha^-1 coefficient, nonzero where f'' != 0
    assert sp.simplify(slope - sp.diff(f, th, 2) * d.subs(eps, 1) ** 2 / 2) == 0  # order alpha^-1
    assert tuple(kernels.drift_exponents()) == (float(order_first), -1.0)


@proves("kernels.network_beats_ntk")
def check_two_layer_entk_and_linear_krr():
    # The eNTK of f = w^-1/2 sum_j a_j tanh(W_j . x / sqrt(d)), derived by differentiating f in every
    # parameter (w = 2, d = 2 symbolically) and summing the products of the gradients, against
    # kernels.two_layer_entk at random numeric values.
    import torch

    w, d = 2, 2
    Ws = sp.Matrix(w, d, lambda i, j: sp.Symbol(f"W{i}{j}", real=True))
    As = sp.symbols(f"a0:{w}", real=True)
    xs, zs = sp.symbols(f"x0:{d}", real=True), sp.symbols(f"z0:{d}", real=True)

    def f(x):
        return sum(As[j] * sp.tanh(sum(Ws[j, k] * x[k] for k in range(d)) / sp.sqrt(d)) for j in range(w)) / sp.sqrt(w)

    params = list(Ws) + list(As)
    theta = sum(sp.diff(f(xs), q) * sp.diff(f(zs), q) for q in params)
    rng = np.random.default_rng(3)
    Wn, an, x1, x2 = rng.normal(size=(w, d)), rng.normal(size=w), rng.normal(size=d), rng.normal(size=d)
    subs = {**{Ws[i, j]: Wn[i, j] for i in range(w) for j in range(d)}, **dict(zip(As, an)),
            **dict(zip(xs, x1)), **dict(zip(zs, x2))}
    sym = float(theta.subs(subs))
    T = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    num = float(kernels.two_layer_entk(T(Wn), T(an), T(x1[None]), T(x2[None]))[0, 0])
    assert abs(sym - num) < 1e-12 * max(1.0, abs(sym))
    # KRR with a fixed kernel is linear in the labels: f_hat = k(x)^T (K + r I)^{-1} y, so
    # d f_hat / d y is label-independent; with the initial eNTK the predictor is a fixed linear map of y,
    # unable to adapt the features to the target direction u (what the trained network does).
    y1, y2, r = sp.symbols("y1 y2 r", real=True)
    K = sp.Matrix([[2, sp.Rational(1, 2)], [sp.Rational(1, 2), 1]])
    kx = sp.Matrix([[sp.Rational(1, 3), sp.Rational(3, 4)]])
    fh = (kx * (K + r * sp.eye(2)).inv() * sp.Matrix([y1, y2]))[0]
    assert all(sp.diff(fh, yy, 2) == 0 and sp.diff(fh, y1, y2) == 0 for yy in (y1, y2))
    # the three z-test outcomes are exclusive and exhaustive; the prediction is "network faster"
    out = kernels.network_beats_ntk_outcomes()
    assert sum(out) == 1 and out[0] == 1
