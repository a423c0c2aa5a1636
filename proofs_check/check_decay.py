"""Weight decay: L2 against decoupled decay, derived from the update rules (sympy).

- SGD: one step of each rule, solved for the L2 coefficient that makes them equal for every
  gradient, weight and schedule multiplier.
- Heavy ball: the companion matrices of both rules on a quadratic; their traces match only at
  lambda' = lambda/eta and their determinants never do; the t-step iterate from the matrix power,
  against ``decay.momentum_difference``.
- Adam: the rest points of both rules with constant gradients (m -> g, v -> g^2), with eps > 0,
  solved per sign case and taken to eps -> 0.
"""

from __future__ import annotations

import numpy as np
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from solvable.claims import get
from solvable.models import decay
from solvable.testing import proves

theta, g, eta, s, lam, lam2, h, mu, v = sp.symbols("theta g eta s lambda lambda_p h mu v", real=True)


@proves("decay.sgd_l2_equals_wd")
def check_sgd_l2_coefficient_from_one_step():
    l2_step = theta - eta * s * (g + lam2 * theta)           # torch.optim.SGD, weight_decay = lambda'
    decoupled = theta - eta * s * g - s * lam * theta         # SGDW (paper convention)
    sol = sp.solve(sp.Eq(l2_step, decoupled), lam2)
    assert len(sol) == 1
    derived = sp.simplify(sol[0])
    # one coefficient for every gradient, weight and schedule: T steps of the same map agree by induction
    assert derived.free_symbols == {lam, eta}
    assert sp.simplify((l2_step - decoupled).subs(lam2, derived)) == 0
    f = sp.lambdify((lam, eta), derived)

    @settings(max_examples=50, deadline=None)
    @given(st.floats(0, 1), st.floats(1e-3, 10))
    def agree(w, e):
        np.testing.assert_allclose(decay.l2_coefficient(w, e), f(w, e), rtol=1e-14)

    agree()
    # the conventions' map is the same relation
    np.testing.assert_allclose(decay.wd_paper_to_torch(0.03, 0.2), f(0.03, 0.2), rtol=1e-14)


def _companions():
    """(theta, v) -> (theta+, v+) for L2 heavy ball (torch buffer) and decoupled heavy ball on h theta^2/2."""
    v_l2 = mu * v + h * theta + lam2 * theta
    l2 = sp.Matrix([theta - eta * v_l2, v_l2])
    v_w = mu * v + h * theta
    dec = sp.Matrix([theta - eta * v_w - lam * theta, v_w])
    X = sp.Matrix([theta, v])
    return l2.jacobian(X), dec.jacobian(X)


@proves("decay.momentum_breaks_equivalence")
def check_momentum_difference_from_companion_matrices():
    A, B = _companions()
    # the iterate theta_k obeys x_{k+1} = tr x_k - det x_{k-1} (Cayley-Hamilton)
    assert sp.simplify(A.det() - mu) == 0                      # L2: det mu, whatever lambda'
    assert sp.simplify(B.det() - mu * (1 - lam)) == 0          # decoupled: det mu (1 - lambda)
    sol = sp.solve(sp.Eq(A.trace(), B.trace()), lam2)
    assert len(sol) == 1 and sp.simplify(sol[0] - lam / eta) == 0
    # no lambda' matches both: the determinants differ unless mu lambda = 0
    assert sp.solve(sp.Eq(A.det(), B.det()), lam2) == []
    assert sp.factor(A.det() - B.det()) == sp.factor(mu * lam)
    A1 = A.subs(lam2, lam / eta)
    start = sp.Matrix([1, 0])
    # the closed form's second-order recurrence solved by sympy (rsolve) and evaluated
    k = sp.Symbol("k", integer=True, nonnegative=True)
    x = sp.Function("x")
    tau_s, delta_s, x0_s, x1_s = sp.symbols("tau delta x0 x1")
    gen = sp.rsolve(x(k + 2) - tau_s * x(k + 1) + delta_s * x(k), x(k), {x(0): x0_s, x(1): x1_s})
    gen_f = sp.lambdify((k, tau_s, delta_s, x0_s, x1_s), gen, "numpy")

    @settings(max_examples=25, deadline=None)
    @given(st.floats(0.02, 0.2), st.floats(0.01, 0.1), st.floats(0.5, 0.95), st.floats(1.0, 8.0),
           st.integers(1, 40))
    def agree(e, w, m_, hh, t):
        vals = {eta: e, lam: w, mu: m_, h: hh}
        An = np.array(A1.subs(vals).evalf(), dtype=float)
        Bn = np.array(B.subs(vals).evalf(), dtype=float)
        s0 = np.array(start, dtype=float).ravel()
        ref = (np.linalg.matrix_power(An, t) @ s0)[0] - (np.linalg.matrix_power(Bn, t) @ s0)[0]
        got = decay.momentum_difference(np.array([hh]), e, w, m_, t)[0]
        np.testing.assert_allclose(got, ref, rtol=1e-8, atol=1e-13)
        # rsolve's general solution with the same trace, determinants and first step
        tr = float(An.trace())
        x1 = float((An @ s0)[0])
        sym = complex(gen_f(t, complex(tr), complex(np.linalg.det(An)), 1.0 + 0j, complex(x1))) - complex(
            gen_f(t, complex(tr), complex(np.linalg.det(Bn)), 1.0 + 0j, complex(x1)))
        np.testing.assert_allclose(sym.real, ref, rtol=1e-6, atol=1e-12)

    agree()
    claim = get("decay.momentum_breaks_equivalence")
    p = claim.params()
    np.testing.assert_allclose(claim.predicted(p), decay.momentum_difference(
        np.geomspace(1, p.kappa, p.d), p.eta, p.wd, p.mu, p.steps), rtol=1e-14)


@proves("decay.adam_fixed_points")
def check_adam_rest_points():
    ts = sp.Symbol("theta_star", real=True)
    eps, b1, b2 = sp.symbols("epsilon beta1 beta2", positive=True)
    m_, v_ = sp.symbols("m v_")
    # constant gradient at rest: the EMAs' fixed points
    m_rest = sp.solve(sp.Eq(m_, b1 * m_ + (1 - b1) * g), m_)[0]
    v_rest = sp.solve(sp.Eq(v_, b2 * v_ + (1 - b2) * g ** 2), v_)[0]
    assert sp.simplify(m_rest - g) == 0 and sp.simplify(v_rest - g ** 2) == 0
    # Adam + L2: the update m/(sqrt(v)+eps) vanishes iff g = 0, g = (1 + lambda') theta - theta*
    l2_rest = sp.solve(sp.Eq((theta - ts) + lam2 * theta, 0), theta)[0]
    # AdamW (torch convention): rest iff g/(|g| + eps) + lambda theta = 0, g = theta - theta*.
    # By symmetry (theta -> -theta) take theta* > 0; then g < 0 at rest (the decay pulls toward 0).
    tsp, lp = sp.symbols("theta_star lambda", positive=True)
    gm = sp.Symbol("g", negative=True)
    roots = sp.solve(sp.Eq(gm / (-gm + eps) + lp * (tsp + gm), 0), gm)

    def derived_w(tsv, lv):
        """The rest point: the root with g < 0 at small eps > 0, at eps = 0, mirrored for theta* < 0."""
        keep = []
        for r in roots:
            at = {tsp: sp.nsimplify(abs(tsv)), lp: sp.nsimplify(lv)}
            if float(r.subs(at).subs(eps, sp.Rational(1, 10 ** 6))) < 0:
                keep.append(float(r.subs(at).subs(eps, 0)))
        assert len(keep) == 1, (tsv, lv, keep)
        return np.sign(tsv) * (abs(tsv) + keep[0])

    for tsv in (-3.1, -1.2, -0.4, 0.3, 0.9, 2.2, 5.0):
        for lv in (0.3, 0.7, 1.0, 2.0):
            np.testing.assert_allclose(decay.adamw_fixed_point([tsv], lv)[0], derived_w(tsv, lv), rtol=1e-14)
            np.testing.assert_allclose(decay.adam_l2_fixed_point([tsv], lv)[0],
                                       float(l2_rest.subs({ts: tsv, lam2: lv})), rtol=1e-14)
    # the paper's convention: rest iff eta u + lambda_paper theta = 0, i.e. the box eta/lambda_paper,
    # which is 1/lambda_torch under the mapping lambda_torch = lambda_paper/eta
    box_paper = sp.solve(sp.Eq(eta * 1 - lam * theta, 0), theta)[0]
    assert sp.simplify(box_paper - 1 / (lam / eta)) == 0
    np.testing.assert_allclose(decay.wd_paper_to_torch(0.07, 0.1), 0.7, rtol=1e-14)
