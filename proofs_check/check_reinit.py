"""Re-initialization of a diagonal linear network: the unbalanced flow's limit derived (sympy).

- The flow ``u' = -2 u g``, ``v' = 2 v g`` conserves ``u v``; it integrates to ``u = u0 e^{-2G}``,
  ``v = v0 e^{2G}`` (checked by differentiation), so ``beta = u^2 - v^2 = 2 a sinh(phi - 4G)`` with
  ``a = u0 v0``, ``phi = log(u0/v0)``.
- ``d/dbeta [a q(beta/a) - phi beta] = asinh(beta/(2a)) - phi``; at the flow's beta it equals
  ``-4G``, in range(X^T) since ``G = int X^T r / n``: the KKT conditions of the tilted problem;
  ``reinit.tilted_bias_solution`` is checked against them (stationarity on null(X), interpolation).
- Phase 1's factors: ``u v = alpha^2``, ``u^2 - v^2 = beta1`` solved for the positive root, against
  ``reinit.phase1_factors``.
"""

from __future__ import annotations

import numpy as np
import sympy as sp

from solvable.models import dln, reinit
from solvable.testing import proves

t, beta, a, phi, G, al, b1 = sp.symbols("t beta a phi G alpha beta1", real=True)
u0, v0 = sp.symbols("u0 v0", positive=True)


def _q(z):
    return 2 - sp.sqrt(4 + z ** 2) + z * sp.asinh(z / 2)


@proves("reinit.dln_shape")
def check_tilted_limit_from_the_flow():
    g = sp.Function("g")(t)
    Gt = sp.Integral(g, t)
    u = u0 * sp.exp(-2 * Gt)
    v = v0 * sp.exp(2 * Gt)
    # u, v solve the flow and conserve u v
    assert sp.simplify(sp.diff(u, t) + 2 * u * g) == 0
    assert sp.simplify(sp.diff(v, t) - 2 * v * g) == 0
    assert sp.simplify(u * v - u0 * v0) == 0
    # beta = u^2 - v^2 = 2 a sinh(phi - 4 G)
    bflow = (u0 ** 2 * sp.exp(-4 * G) - v0 ** 2 * sp.exp(4 * G))
    tilted = 2 * (u0 * v0) * sp.sinh(sp.log(u0 / v0) - 4 * G)
    assert sp.simplify((bflow - tilted).rewrite(sp.exp)) == 0
    # gradient of the tilted potential
    apos = sp.symbols("a", positive=True)
    pot = apos * _q(beta / apos) - phi * beta
    dpot = sp.simplify(sp.diff(pot, beta))
    assert sp.simplify(dpot - (sp.asinh(beta / (2 * apos)) - phi)) == 0
    # at the flow's beta it is -4G (asinh(sinh(w)) = w, checked at sample points)
    at_flow = dpot.subs(beta, 2 * apos * sp.sinh(phi - 4 * G))
    for vals in [{apos: 0.3, phi: -1.1, G: 0.4}, {apos: 2.0, phi: 0.7, G: -0.9}]:
        assert abs(float(at_flow.subs(vals)) - float((-4 * G).subs(vals))) < 1e-12
    # the closed form meets these KKT conditions: interpolates, gradient in range(X^T)
    X, y, _ = dln.make_data(6, 14, 2, 3)
    rng = np.random.default_rng(0)
    av, ph = rng.uniform(0.1, 1.0, 14), rng.uniform(-1.5, 1.5, 14)
    bsol = reinit.tilted_bias_solution(X, y, av, ph)
    f = sp.lambdify((beta, apos, phi), dpot, "numpy")
    grad = f(bsol, av, ph)
    P = np.eye(14) - np.linalg.pinv(X) @ X
    assert np.linalg.norm(P @ grad) < 1e-8 * np.linalg.norm(grad)
    assert np.linalg.norm(X @ bsol - y) < 1e-9 * np.linalg.norm(y)
    # phase-1 factors: u v = alpha^2, u^2 - v^2 = beta1, u > 0
    us = sp.symbols("u", positive=True)
    sols = sp.solve(sp.Eq(us ** 2 - (al ** 2 / us) ** 2, b1), us)
    for bv, alv in [(0.7, 0.3), (-1.2, 0.5), (0.0, 2.0)]:
        roots = [complex(s.subs({b1: bv, al: alv})) for s in sols]
        real_pos = [r.real for r in roots if abs(r.imag) < 1e-12 and r.real > 0]
        uu, vv = reinit.phase1_factors(bv, alv)
        assert any(abs(float(uu) - r) < 1e-12 for r in real_pos)
        assert abs(float(uu * vv) - alv ** 2) < 1e-14
