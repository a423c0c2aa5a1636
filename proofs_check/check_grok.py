"""grok.gromov_solution: the pair-averaged logits of Gromov's network, derived (sympy).

One neuron, frequency s, phases phi1, phi2: z_q(a, b) = cos(t q + phi1 + phi2) (cos(t a + phi1) + cos(t b + phi2))^2
with t = 2 pi s/p. Written in exponentials, z is a sum of terms exp(i t (c_a a + c_b b + c_q q) + i phase);
the sum over a in Z_p of exp(2 pi i s c a/p) is p if s c = 0 mod p, else 0 (p prime, 0 < s < p). So the
average over all pairs of z_{(a+b) mod p} keeps exactly the terms with c_a = c_b = c_q (the q = a + b
substitution), and those are derived by expanding the product symbolically and collecting them.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import sympy as sp

from solvable.models import grok
from solvable.testing import proves

A, B, Q, P1, P2 = sp.symbols("A B Q phi1 phi2", real=True)
E = sp.symbols("E_a E_b E_q")  # exp(i t a), exp(i t b), exp(i t q)


def _expanded():
    ea, eb, eq = E
    e1, e2 = sp.exp(sp.I * P1), sp.exp(sp.I * P2)
    cos = lambda x, ph: (x * ph + 1 / (x * ph)) / 2
    return sp.expand(cos(eq, e1 * e2) * (cos(ea, e1) + cos(eb, e2)) ** 2)


def mean_correct_logit() -> sp.Expr:
    """Average over (a, b) with q = a + b: E_q = E_a E_b; a monomial E_a^i E_b^j survives iff i = j = 0."""
    ea, eb, eq = E
    z = sp.expand(_expanded().subs(eq, ea * eb))
    total = 0
    for term in sp.Add.make_args(z):
        c, rest = term.as_independent(ea, eb)
        if rest == 1:
            total += c
    return sp.simplify(total)


def mean_over_q() -> sp.Expr:
    """Average over q of z_q at fixed (a, b): only E_q^0 terms survive."""
    z = _expanded()
    c, rest = 0, 0
    for term in sp.Add.make_args(z):
        coeff, r = term.as_independent(E[2])
        if r == 1:
            c += coeff
    return sp.simplify(c)


@proves("grok.gromov_solution")
def check_gromov_mean_logits_from_fourier_orthogonality():
    correct = mean_correct_logit()
    assert sp.simplify(correct - sp.Rational(1, 2)) == 0, correct
    assert mean_over_q() == 0
    # wrong classes: (p * mean over q - correct)/(p - 1), averaged over pairs
    for p in (3, 5, 7, 11, 31, 61):
        wrong = (0 - correct) / (p - 1)
        assert np.allclose([float(correct), float(wrong)], grok.gromov_mean_logits(p), rtol=1e-15, atol=0)
    # a direct numeric check of the orthogonality used: one neuron, all pairs
    rng = np.random.default_rng(0)
    for p in (5, 13):
        s, ph1, ph2 = rng.integers(1, (p - 1) // 2 + 1), *rng.uniform(0, 2 * np.pi, 2)
        t = 2 * np.pi * s / p
        a, b = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
        z = np.cos(t * (a + b) + ph1 + ph2) * (np.cos(t * a + ph1) + np.cos(t * b + ph2)) ** 2
        assert abs(z.mean() - 0.5) < 1e-12


# --------------------------------------------------------------------------------------------
# grok.linear_teacher_student: the mode's flow (dsolve) and the Marchenko-Pastur law from its
# Stieltjes equation.

_x, _g, _t, _T, _w0, _s = sp.symbols("x gamma t T w0 sigma_w", real=True)
_lam, _z = sp.symbols("lambda z")


def mode_error_derived() -> sp.Expr:
    """Solve dD/dt = -(x + gamma) D - gamma T, D(0) = w0 - T (the flow dw/dt = -x (w - T) - gamma w
    of one eigenmode), square, and average over independent w0 (variance sigma_w^2) and T (variance 1)."""
    D = sp.Function("D")
    sol = sp.dsolve(sp.Eq(D(_t).diff(_t), -(_x + _g) * D(_t) - _g * _T), D(_t), ics={D(0): _w0 - _T}).rhs
    sq = sp.expand(sol ** 2)
    avg = sq.subs(_w0 * _T, 0).subs({_w0 ** 2: _s ** 2, _T ** 2: 1})
    return sp.simplify(avg.subs({_w0: 0, _T: 0}))


def stieltjes_root() -> sp.Expr:
    """g(z) = int rho(x)/(x - z) dx of Sigma = X^T X/N (lambda = d/N) solves lambda z g^2 + (z - 1 + lambda) g + 1 = 0
    (Marchenko-Pastur 1967; the self-consistent equation of the resolvent); the branch with g ~ -1/z at infinity."""
    g = sp.symbols("g")
    roots = sp.solve(_lam * _z * g ** 2 + (_z - 1 + _lam) * g + 1, g)
    # pick the root with z g -> -1 as z -> infinity
    for r in roots:
        if sp.limit(sp.simplify(r * _z).subs(_lam, sp.Rational(1, 2)), _z, sp.oo) == -1:
            return r
    raise AssertionError("no decaying branch")


@proves("grok.linear_teacher_student")
def check_teacher_student_mode_and_marchenko_pastur():
    rng = np.random.default_rng(0)
    derived = sp.lambdify((_x, _g, _t, _s), mode_error_derived(), "numpy")
    for _ in range(20):
        x, g, t, s = rng.uniform(0.05, 3), rng.uniform(0, 0.2), rng.uniform(0, 20), rng.uniform(0, 2)
        assert abs(derived(x, g, t, s) - float(grok.teacher_student_mode_error(x, t, g, s))) < 1e-12
    root = stieltjes_root()
    # density: rho(x) = Im g(x + i0)/pi
    g_num = sp.lambdify((_z, _lam), root, "numpy")
    for lam in (0.2, 0.5, 0.8, 2.0):
        a, b = (1 - lam ** 0.5) ** 2, (1 + lam ** 0.5) ** 2
        for x in np.linspace(a, b, 9)[1:-1]:
            dens = abs(np.imag(g_num(complex(x, 1e-12), lam))) / np.pi
            assert abs(dens - float(grok.marchenko_pastur_density(x, lam))) < 1e-8, (lam, x)
    # small t: G(t) = (1 + sigma_w^2) sum_k m_k (-2 t)^k/k! at gamma = 0, the MP moments m_k from the
    # expansion g(z) = -sum_k m_k z^-(k+1) at infinity
    u = sp.symbols("u", positive=True)
    K = 10
    ser = sp.series(sp.simplify(-root.subs(_z, 1 / u) / u), u, 0, K + 1).removeO()
    for lam in (sp.Rational(1, 4), sp.Rational(3, 5)):
        m = [ser.subs(_lam, lam).expand().coeff(u, k) for k in range(K + 1)]
        assert m[0] == 1 and m[1] == 1 and sp.simplify(m[2] - 1 - lam) == 0
        for t in (0.05, 0.1):
            for s in (0.0, 0.7):
                series_G = (1 + s ** 2) * sum(float(m[k]) * (-2 * t) ** k / math.factorial(k) for k in range(K + 1))
                assert abs(series_G - float(grok.teacher_student_test_loss(t, float(lam), 0.0, s))) < 1e-9
    # t -> infinity with weight decay: G = gamma^2 int rho/(x + gamma)^2 = gamma^2 g'(-gamma) (atom included);
    # on z < 0 the product of the roots is 1/(lambda z) < 0 and g(z) = int rho/(x - z) > 0 picks the positive
    # one; g' by implicit differentiation of the Stieltjes equation
    g, = sp.symbols("g", real=True),
    F = _lam * _z * g ** 2 + (_z - 1 + _lam) * g + 1
    dg = -sp.diff(F, _z) / sp.diff(F, g)
    for lam in (0.3, 0.7, 1.5, 3.0):
        for gm in (0.02, 0.1, 0.5):
            roots = [complex(r) for r in sp.Poly(F.subs({_z: -gm, _lam: lam}), g).nroots()]
            gv = max(r.real for r in roots)
            val = gm ** 2 * float(dg.subs({_z: -gm, _lam: lam, g: gv}))
            assert abs(val - float(grok.teacher_student_test_loss(1e7, lam, gm, 0.9))) < 1e-7 * max(1.0, val), (lam, gm)


@proves("grok.time_vs_fraction")
def check_sample_budget_slope_from_full_batch_presentations():
    """Full batch: a step presents all f p^2 training pairs, so a fixed presentation budget C gives T(f) = C/(f p^2);
    differentiate log T in log f (substituting f = e^x) to get the mark the measured slope is tested against."""
    x, C, p = sp.symbols("x C p", positive=True)
    T = C / (sp.exp(x) * p ** 2)
    slope = sp.simplify(sp.diff(sp.log(T), x))
    assert slope == -1
    assert float(slope) == grok.sample_budget_slope()
    assert grok.time_fraction_classes() == [int(sp.sign(-sp.oo)), int(sp.sign(-sp.oo))]


@proves("grok.trained_is_fourier")
def check_share_marks_from_parseval():
    """A neuron's row x_a = sum_j c_j cos(2 pi s_j a/p + phi_j) over m distinct frequencies s_j in {1..(p-1)/2}: its DFT
    X_k = sum_a x_a w^{-k a} (w = exp(2 pi i/p)) keeps, by orthogonality (sum_a w^{n a} = p [n = 0 mod p]),
    X_{+-s_j} = p c_j e^{+-i phi_j}/2, so the power at frequency s_j is p^2 c_j^2/2 and, by Parseval, the total is
    p sum_a x_a^2 = p^2 sum_j c_j^2/2. The top share is max c_j^2/sum c_j^2: 1 for one cosine (Gromov), 1/2 for two
    equal ones, 2/(p - 1) for equal power on all (p - 1)/2 frequencies. Derived here for symbolic amplitudes, then the
    marks and the measuring function are checked against it."""
    P, s = 11, 3
    z, e = sp.symbols("z e")  # z = w = exp(2 pi i/p) (a root of the cyclotomic polynomial), e = exp(i phi)
    cyc = sp.cyclotomic_poly(P, z)

    def reduce(expr):  # exponents of z mod p, then mod the cyclotomic polynomial (sum of all p-th roots = 0)
        poly = sp.Poly(sp.expand(expr), z)
        folded = sum(c * z ** (m[0] % P) for m, c in zip(poly.monoms(), poly.coeffs()))
        return sp.expand(sp.rem(sp.expand(folded), cyc, z))

    row = [(z ** ((s * a) % P) * e + z ** ((-s * a) % P) / e) / 2 for a in range(P)]
    X = [reduce(sum(xa * z ** ((-k * a) % P) for a, xa in enumerate(row))) for k in range(P)]
    assert sp.simplify(X[s] - sp.Integer(P) * e / 2) == 0 and sp.simplify(X[P - s] - sp.Integer(P) / (2 * e)) == 0
    assert all(X[k] == 0 for k in range(P) if k not in (s, P - s))
    power_s = sp.expand(X[s] * X[P - s] * 2)  # |X_s|^2 + |X_{-s}|^2 with conj(e) = 1/e
    total = P * reduce(sum(sp.expand(xa * xa) for xa in row))  # Parseval: p sum_a x_a^2 (x real: x^2 = x conj x)
    assert sp.simplify(power_s / total - 1) == 0, (power_s, total)
    c = sp.symbols("c1:6", positive=True)
    share = lambda cs: sp.Max(*[ci ** 2 for ci in cs]) / sum(ci ** 2 for ci in cs)
    marks = [share([c[0]] * ((P - 1) // 2)), share([c[0], c[0]]), share([c[0]])]
    assert [sp.nsimplify(m) for m in marks] == [sp.Rational(2, 10), sp.Rational(1, 2), 1]
    assert np.allclose([float(m) for m in marks], grok.share_marks(11), rtol=1e-15)
    rng = np.random.default_rng(0)
    a = np.arange(11)
    for freqs, mark in (((1, 2, 3, 4, 5), 0), ((2, 4), 1), ((3,), 2)):
        row = sum(np.cos(2 * np.pi * f * a / 11 + rng.uniform(0, 2 * np.pi)) for f in freqs)
        rows = np.broadcast_to(row, (1, 1, 11))
        assert abs(grok.top_frequency_fraction(rows, rows, np.swapaxes(rows, -1, -2))[0, 0] - grok.share_marks(11)[mark]) < 1e-12
    assert grok.trained_fourier_classes(11) == [1, 1, -1]
