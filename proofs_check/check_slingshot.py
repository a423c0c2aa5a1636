"""slingshot.epsilon_threshold derived from Adam's update on f = h theta^2/2 (sympy).

The state is (theta, m, v). With g = h theta, the update is
    m+ = b1 m + (1 - b1) g,  v+ = b2 v + (1 - b2) g^2,  theta+ = theta - eta m+/(sqrt(v+) + eps)
(bias corrections -> 1 after convergence). Derived here:
1. at the converged point theta = m = 0 the v-recurrence is v+ = b2 v: v decays like b2^t, to 0;
2. the Jacobian of (theta, m) at theta = m = 0 with v = 0 is the frozen-preconditioner recurrence with
   P = eps; its characteristic polynomial's root reaches z = -1 exactly at eps_c, found by solving
   p(-1) = 0 for eps (never assumed), and compared with solvable's closed form;
3. z = 1 is never a root for eps > 0 (p(1) = (1 - b1) eta h/eps > 0), |z1 z2| = b1 < 1: the only exit
   from the unit disk is through z = -1, so the converged state is stable iff eps > eps_c;
4. the escaping root moves as dz/d(h/P) = -eta at z = -1 (the spikes' growth rate near eps_c).
"""

from __future__ import annotations

import numpy as np
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st

from solvable.models import slingshot, stability
from solvable.testing import proves

theta, m, v, z = sp.symbols("theta m v z", real=True)
eta, h, eps, b1, b2, lam = sp.symbols("eta h epsilon beta1 beta2 lambda", positive=True)


def _update():
    g = h * theta
    m_new = b1 * m + (1 - b1) * g
    v_new = b2 * v + (1 - b2) * g ** 2
    th_new = theta - eta * m_new / (sp.sqrt(v_new) + eps)
    return th_new, m_new, v_new


def derived_eps_c() -> sp.Expr:
    th_new, m_new, v_new = _update()
    # 1. v at the converged point
    assert sp.simplify(v_new.subs({theta: 0, m: 0}) - b2 * v) == 0
    # 2. linearise (theta, m) at theta = m = 0, v -> 0
    J = sp.Matrix([th_new, m_new]).jacobian(sp.Matrix([theta, m])).subs({theta: 0, m: 0}).subs(v, 0)
    p = sp.expand((z * sp.eye(2) - J).det())
    roots = sp.solve(sp.Eq(p.subs(z, -1), 0), eps)
    assert len(roots) == 1, roots
    # 3. the other exits: p(1) > 0 and the product of the roots is b1
    assert sp.simplify(p.subs(z, 1) - (1 - b1) * eta * h / eps) == 0
    assert sp.simplify(sp.Poly(p, z).all_coeffs()[-1] - b1) == 0
    return sp.simplify(roots[0])


@proves("slingshot.epsilon_threshold")
def check_epsilon_threshold_from_adam_jacobian():
    e_c = derived_eps_c()
    e_closed = (1 - b1) * eta * h / (2 * (1 + b1))
    assert sp.simplify(e_c - e_closed) == 0
    # 4. the escaping root's speed at z = -1, in lambda = h/P with the frozen recurrence
    p = z ** 2 - (1 + b1 - (1 - b1) * eta * lam) * z + b1
    dz = sp.simplify(-sp.diff(p, lam) / sp.diff(p, z))
    lam_c = sp.solve(p.subs(z, -1), lam)[0]
    assert sp.simplify(dz.subs(z, -1).subs(lam, lam_c) + eta) == 0
    # and it is the stability module's threshold with lambda = h/eps
    from solvable.models import stability
    assert abs(float(lam_c.subs({eta: 0.3, b1: 0.7})) - stability.adam_threshold(0.3, 0.7)) < 1e-12

    f = sp.lambdify((eta, h, b1), e_c)

    @given(st.floats(1e-4, 1.0), st.floats(1e-2, 100.0), st.floats(0.0, 0.99))
    def agree(e, hh, b):
        assert abs(f(e, hh, b) - slingshot.epsilon_threshold(e, hh, b)) <= 1e-12 * abs(f(e, hh, b))

    agree()


@proves("slingshot.norm_cycles")
def check_norm_cycles_threshold_from_the_frozen_multimode_recurrence():
    """Frozen P (late times: bias corrections -> 1), f = (w - w*)^T H (w - w*)/2: with u = P^{1/2} (w - w*) and
    mu = P^{1/2} m, the step is u+ = u - eta A mu+, mu+ = beta1 mu + (1 - beta1) A u, A = P^{-1/2} H P^{-1/2}.
    In A's eigenbasis every mode (eigenvalue s) is a 2 x 2 linear recurrence; its characteristic polynomial at z = -1
    vanishes at eta s = 2 (1 + beta1)/(1 - beta1): the top eigenvalue leaves the unit disk first, through -1."""
    s = sp.symbols("s", positive=True)
    u, mu = sp.symbols("u mu", real=True)
    mu_new = b1 * mu + (1 - b1) * s * u
    u_new = u - eta * mu_new
    J = sp.Matrix([u_new, mu_new]).jacobian(sp.Matrix([u, mu]))
    p = sp.expand((z * sp.eye(2) - J).det())
    root = sp.solve(sp.Eq(p.subs(z, -1), 0), s)
    assert len(root) == 1
    derived = sp.simplify(eta * root[0])
    assert sp.simplify(p.subs(z, 1) - (1 - b1) * eta * s) == 0  # no exit through +1 for s > 0
    assert sp.simplify(sp.Poly(p, z).all_coeffs()[-1] - b1) == 0  # |roots| = sqrt(beta1) < 1 while complex
    for e_, b_ in ((0.01, 0.9), (0.02, 0.8), (0.3, 0.5)):
        val = float(derived.subs({eta: e_, b1: b_}))
        assert abs(val - e_ * stability.adam_threshold(e_, b_)) < 1e-12 * val
    # the simulator's S is the top eigenvalue of A: checked on a constructed P and H
    H = np.array([[2.0, 0.3], [0.3, 0.5]])
    P = np.array([0.1, 0.4])
    A = H / np.sqrt(P)[:, None] / np.sqrt(P)[None, :]
    assert abs(np.linalg.eigvalsh(A)[-1] - np.linalg.eigvals(np.diag(1 / P) @ H).real.max()) < 1e-12
