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


# sum L_i = n - delta/kappa follows from KAPPA_EQ = 0
TOTAL = sp.solve(KAPPA_EQ, n)[0] - dl / kap


@proves("kernels.learning_curve")
@settings(max_examples=8, deadline=None)
@given(st.floats(1.2, 3.0), st.floats(1.1, 3.0), st.floats(0.0, 0.5), st.integers(5, 60))
def check_total_learnability(a, b, ridge, nn):
    assert sp.simplify(TOTAL - sum(Ls)) == 0
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
