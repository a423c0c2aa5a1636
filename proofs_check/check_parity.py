"""parity.fourier_gap derived from the neuron's population gradient (sympy, exact rationals).

The gradient of -E[chi_S(x) relu(w0 sum x)] on coordinate i is -E[chi_S x_i 1[sum x > 0]], the Fourier
coefficient of f = 1[sum x > 0] on S \\ i (i in S) or S + i (i not in S). f is symmetric, so its
coefficient on any |T| = j set is a Krawtchouk sum over the number w of -1 entries:

    c_j = 2^-n sum_w 1[n - 2w > 0] K(w),   K(w) = sum_i (-1)^i C(j, i) C(n - j, w - i)

(K(w): the sum of chi_T(x) over the x with w entries -1, i of them inside T).
The ratio c_{k-1}/c_{k+1} is computed from this sum in exact rationals and compared with solvable's
closed form for every n <= 24 and admissible k; for n odd, k even the closed form is also derived
symbolically from Majority's coefficient formula (O'Donnell Thm 5.19) by combsimp.
"""

from __future__ import annotations

import sympy as sp

from solvable.models import parity
from solvable.testing import proves


def krawtchouk(n: int, j: int, w: int) -> int:
    """sum of chi_T(x) over the x with w entries -1, |T| = j: choose i of the -1's inside T."""
    return sum((-1) ** i * sp.binomial(j, i) * sp.binomial(n - j, w - i) for i in range(0, min(j, w) + 1))


def coefficient(n: int, j: int) -> sp.Rational:
    """The Fourier coefficient of 1[sum x > 0] on a set of size j (w = number of -1 entries)."""
    return sp.Rational(sum(krawtchouk(n, j, w) for w in range(n + 1) if n - 2 * w > 0), 2 ** n)


@proves("parity.fourier_gap")
def check_fourier_gap_from_krawtchouk_sums():
    for n in range(3, 25):
        for k in range(2, n):
            if n % 2 == 1 and k % 2 == 1:
                assert coefficient(n, k - 1) == 0
                assert coefficient(n, k + 1) == 0
                continue
            derived = coefficient(n, k - 1) / coefficient(n, k + 1)
            assert abs(float(derived) - parity.fourier_gap(n, k)) <= 1e-12 * abs(float(derived)), (n, k)


def check_majority_case_symbolically():
    n, a = sp.symbols("n a", positive=True, integer=True)  # n odd, k = 2a + 2 even
    m = (n - 1) / 2

    def maj(j):  # |coefficient| of Majority at odd degree j, up to the common factor 2 C(n-1, m)/2^n
        return sp.binomial(m, (j - 1) / 2) / sp.binomial(n - 1, j - 1)

    k = 2 * a + 2
    ratio = sp.combsimp(maj(k - 1) / maj(k + 1))  # signs alternate: the true ratio is -ratio
    assert sp.simplify(ratio - (n - k) / (k - 1)) == 0


@proves("parity.hidden_progress")
def check_hidden_progress_rates_from_the_frozen_pattern():
    """With the activation pattern frozen to 1[sum x > 0], the loss L(w) = -E[chi_S 1[sum x > 0] (w . x)] is linear
    in w with gradient g_i = -coefficient(S xor {i}); one SGD step moves E w by -eta g and E L by -eta |g|^2.
    Derived with symbolic weights over all 2^n inputs (n <= 9) and with the Krawtchouk sums above for n <= 15."""
    import itertools

    eta = sp.symbols("eta", positive=True)
    for n, k in ((5, 2), (7, 2), (7, 4), (9, 4)):
        w = sp.symbols(f"w0:{n}")
        L = 0
        grads = [0] * n
        for x in itertools.product((-1, 1), repeat=n):
            if sum(x) <= 0:
                continue
            chi = sp.prod(x[:k])
            L += -chi * sum(wi * xi for wi, xi in zip(w, x))
        L = L / 2 ** n
        grads = [sp.diff(L, wi) for wi in w]
        assert all(sp.diff(L, wi, 2) == 0 for wi in w)  # linear: the drift is constant while the pattern holds
        drift = [-eta * g for g in grads]  # E[w+ - w] of one online step
        dL = sp.expand(L.subs({wi: wi + di for wi, di in zip(w, drift)}) - L)
        rates = parity.hidden_progress_rates(n, k)
        assert abs(float(drift[0] / eta) - rates[0]) < 1e-12 and abs(float(drift[-1] / eta) - rates[1]) < 1e-12
        assert abs(float(dL / eta) - rates[2]) < 1e-12
    for n in range(7, 16, 2):
        for k in range(2, n, 2):
            c1, c2 = coefficient(n, k - 1), coefficient(n, k + 1)
            derived = [c1, c2, -(k * c1 ** 2 + (n - k) * c2 ** 2)]
            assert all(abs(float(d) - r) <= 1e-12 * max(1e-3, abs(float(d))) for d, r in zip(derived, parity.hidden_progress_rates(n, k)))


def check_frozen_pattern_condition_by_enumeration():
    """sum |w_i - c| < c (some c > 0) and n odd imply sign(w . x) = sign(sum x) on every input."""
    import itertools

    import numpy as np

    rng = np.random.default_rng(0)
    X = np.array(list(itertools.product((-1, 1), repeat=7)), dtype=float)
    for _ in range(200):
        c = rng.uniform(0.5, 2)
        d = rng.normal(size=7)
        d *= rng.uniform(0, 1) * c / np.abs(d).sum()
        assert np.all(np.sign(X @ (c + d)) == np.sign(X.sum(1)))


@proves("parity.iteration_scaling")
def check_drift_time_exponent_from_majority_asymptotics():
    """The relevant weights drift at lr c_{k-1} per step (parity.hidden_progress), so the drift time is
    1/(lr c_{k-1}); with c_j = Maj_n^(j)/2 (n = 2m + 1, j = 2i + 1 odd),
    Maj^(j) = C(m, i)/C(2m, 2i) * 2 C(2m, m)/2^(2m+1). The first factor is rational in m with
    C(m, i)/C(2m, 2i) m^i -> finite nonzero; the central factor a_m = C(2m, m)/4^m has
    a_{m+1}/a_m = 1 - s/m + O(1/m^2) with s = 1/2, so a_m ~ C m^{-1/2} (Gauss's test). Hence
    c_j ~ n^{-i - 1/2} = n^{-j/2}, the drift time grows like n^{(k-1)/2}, and its exponent's increment per
    unit k is 1/2, strictly between 0 and 1 (the predicted order classes). Derived for odd degrees k - 1 (k even);
    at an even degree the neuron needs a nonzero threshold for the same n^{-(k-1)/2} (at b = 0, n even, the only
    even-degree part is the atom -1[sum x = 0]/2, whose degree-2 coefficient falls like n^{-3/2}: checked below on
    the exact Krawtchouk sums), so the k = 3 exponent (k - 1)/2 is the generic-threshold heuristic."""
    m = sp.symbols("m", positive=True, integer=True)
    ratio = sp.expand_func(sp.binomial(2 * m + 2, m + 1) / sp.binomial(2 * m, m)) / 4
    s = -sp.limit(m * (sp.simplify(ratio) - 1), m, sp.oo)
    assert s == sp.Rational(1, 2)
    for i in range(0, 4):
        j = 2 * i + 1
        R = sp.simplify(sp.expand_func(sp.binomial(m, i) / sp.binomial(2 * m, 2 * i)))
        lim = sp.limit(R * m ** i, m, sp.oo)
        assert lim.is_finite and lim != 0, (j, lim)
        exponent = i + s  # c_j ~ m^{-(i + s)} = n^{-j/2}
        assert exponent == sp.Rational(j, 2) == sp.nsimplify(parity.drift_time_exponent(j + 1))
    inc = sp.nsimplify(parity.drift_time_exponent(3) - parity.drift_time_exponent(2))
    assert inc == sp.Rational(1, 2) and parity.order_classes(float(inc), 0.0, 1.0) == [1, -1]
    # b = 0, n even: c_2 n^{3/2} settles (ratios of successive doublings tend to 1), c_2 n^1 does not
    c2 = [float(coefficient(n, 2)) for n in (32, 64, 128)]
    assert abs(c2[2] / c2[1] * 2 ** 1.5 - 1) < abs(c2[1] / c2[0] * 2 ** 1.5 - 1) < 0.05 and c2[2] / c2[1] * 2 < 0.8
