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
