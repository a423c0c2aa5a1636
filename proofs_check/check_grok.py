"""grok.gromov_solution: the pair-averaged logits of Gromov's network, derived (sympy).

One neuron, frequency s, phases phi1, phi2: z_q(a, b) = cos(t q + phi1 + phi2) (cos(t a + phi1) + cos(t b + phi2))^2
with t = 2 pi s/p. Written in exponentials, z is a sum of terms exp(i t (c_a a + c_b b + c_q q) + i phase);
the sum over a in Z_p of exp(2 pi i s c a/p) is p if s c = 0 mod p, else 0 (p prime, 0 < s < p). So the
average over all pairs of z_{(a+b) mod p} keeps exactly the terms with c_a = c_b = c_q (the q = a + b
substitution), and those are derived by expanding the product symbolically and collecting them.
"""

from __future__ import annotations

import itertools

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
