"""Lottery tickets, linear case: the refit's excess risk derived (sympy).

``w_hat - w* = (X^T X)^{-1} X^T eps`` on the found support (``X`` is ``n x s``), so
``||w_hat - w*||^2 = eps^T X (X^T X)^{-2} X^T eps``; averaging over ``eps ~ N(0, sigma^2 I)`` gives
``sigma^2 tr (X^T X)^{-1}`` (checked on a symbolic 3 x 2 design). The diagonal entry
``[(X^T X)^{-1}]_ii`` is the reciprocal of the residual sum of squares of column ``i`` regressed on
the other ``s - 1`` columns: a chi-square with ``k = n - s + 1`` degrees of freedom (a Gaussian
vector projected off an independent ``(s - 1)``-dimensional span). ``E[1/chi2_k]`` is integrated
from the chi-square density, giving ``E[(X^T X)^{-1}] = I / (n - s - 1)`` on the diagonal, and the
risk ``sigma^2 s / (n - s - 1)``, compared to ``lottery.linear_ticket_risk``.
"""

from __future__ import annotations

import numpy as np
import sympy as sp

from solvable.models import lottery
from solvable.testing import proves

sigma, x = sp.symbols("sigma x", positive=True)
n, s, k = sp.symbols("n s k", positive=True, integer=True)


def _noise_average_is_sigma2_trace():
    """E_eps ||A^{-1} X^T eps||^2 = sigma^2 tr(X A^{-2} X^T) = sigma^2 tr A^{-1}, A = X^T X, on a 3 x 2 X."""
    X = sp.Matrix(3, 2, sp.symbols("x0:6", real=True))
    A = X.T * X
    Ainv = A.inv()
    cov = sigma ** 2 * sp.eye(3)                                  # E[eps eps^T]
    averaged = (Ainv * X.T * cov * X * Ainv).trace()              # E tr(A^-1 X^T eps eps^T X A^-1)
    assert sp.simplify(averaged - sigma ** 2 * Ainv.trace()) == 0


def _inverse_chi2_mean(dof: int):
    density = x ** (sp.Rational(dof, 2) - 1) * sp.exp(-x / 2) / (2 ** sp.Rational(dof, 2) * sp.gamma(sp.Rational(dof, 2)))
    assert sp.simplify(sp.integrate(density, (x, 0, sp.oo)) - 1) == 0
    return sp.simplify(sp.integrate(density / x, (x, 0, sp.oo)))


@proves("lottery.linear_ticket")
def check_linear_ticket_risk_from_inverse_wishart():
    _noise_average_is_sigma2_trace()
    # E[1/chi2_k] = 1/(k - 2) for every k > 2 we integrate
    for dof in (3, 4, 7):
        assert sp.simplify(_inverse_chi2_mean(dof) - sp.Rational(1, dof - 2)) == 0
    diag_mean = 1 / ((n - s + 1) - 2)                             # k = n - s + 1 degrees of freedom
    risk = sp.simplify(sigma ** 2 * s * diag_mean)                # sigma^2 tr E[(X^T X)^{-1}]
    f = sp.lambdify((sigma, s, n), risk)
    for sg, ss, nn in [(0.3, 3, 12), (1.0, 1, 3), (0.7, 5, 20), (2.0, 2, 40)]:
        np.testing.assert_allclose(lottery.linear_ticket_risk(sg, ss, nn), f(sg, ss, nn), rtol=1e-14)
    # s = 1: (X^T X) is chi2_n itself, the direct integral agrees
    assert sp.simplify(_inverse_chi2_mean(9) - diag_mean.subs({n: 9, s: 1})) == 0
