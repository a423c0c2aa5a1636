"""Sympy derivations for solvable.models.scaling.

- the second-moment recursion of minibatch SGD, E[H_B M H_B] = (1 - c_B) H M H + c_B T(M), derived by
  enumerating every batch of a small symbolic dataset (with and without replacement);
- the isotropic Gaussian threshold 2B/(s(B + d + 1)) from Isserlis moments computed by sympy.stats and
  the explicit d^2 x d^2 matrix of the recursion;
- the exact threshold of solvable.models.scaling.ms_threshold / adam_threshold checked against the spectral
  radius of the enumerated mean-square map (all batches of a tiny dataset);
- the batch-Hessian outlier equation reduced to the spiked Marchenko-Pastur law.
"""

import itertools
import math

import numpy as np
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from solvable.models import rmt, scaling
from solvable.testing import proves


def _batches(N, B, sampling):
    """All equally likely batches (ordered tuples with replacement, subsets without)."""
    if sampling == "with":
        return list(itertools.product(range(N), repeat=B))
    return list(itertools.combinations(range(N), B))


@proves("scaling.sgd_linear")
def check_second_moment_recursion_noise_factor():
    N = 4
    xs = sp.symbols("x0:4", real=True)
    m = sp.symbols("m", positive=True)
    h = sum(x**2 for x in xs) / N            # H (d = 1)
    t = sum(x**4 for x in xs) / N            # T(M)/M
    for sampling in ("with", "without"):
        for B in (1, 2, 3):
            bs = _batches(N, B, sampling)
            EHMH = sp.expand(sum((sum(xs[i] ** 2 for i in b) / B) ** 2 * m for b in bs) / len(bs))
            c = sp.symbols("c")
            sol = sp.solve(sp.Poly(sp.expand(EHMH - ((1 - c) * h**2 * m + c * t * m)), *xs).coeffs()[0], c)
            # the identity must hold for all data with one c: check the whole polynomial vanishes
            resid = sp.expand(EHMH - ((1 - sol[0]) * h**2 * m + sol[0] * t * m))
            assert resid == 0
            assert math.isclose(float(sol[0]), scaling.batch_noise_factor(B, N, sampling), rel_tol=1e-14)


def _iso_fourth_moment(d, s):
    """E[x x^T M x x^T] for x ~ N(0, s I_d), from sympy.stats (not from Isserlis' formula)."""
    from sympy.stats import E, Normal

    X = [Normal(f"x{i}", 0, sp.sqrt(s)) for i in range(d)]
    Ms = sp.Matrix(d, d, lambda i, j: sp.Symbol(f"M{min(i, j)}{max(i, j)}"))
    xv = sp.Matrix(X)
    q = (xv.T * Ms * xv)[0, 0]
    return Ms, sp.Matrix(d, d, lambda i, j: sp.simplify(E(sp.expand(xv[i] * xv[j] * q))))


@proves("scaling.sgd_linear")
def check_isotropic_fourth_moment_and_threshold():
    s, eta, B = sp.symbols("s eta B", positive=True)
    for d in (2, 3):
        Ms, T = _iso_fourth_moment(d, s)
        Sig = s * sp.eye(d)
        assert sp.simplify(T - (2 * Sig * Ms * Sig + (Sig * Ms).trace() * Sig)) == sp.zeros(d, d)
        # the mean-square map on symmetric M, population limit, with replacement (c = 1/B)
        c = 1 / B
        L = Ms - eta * (Sig * Ms + Ms * Sig) + eta**2 * ((1 - c) * Sig * Ms * Sig + c * T)
        syms = sorted(Ms.free_symbols, key=lambda x: x.name)
        Lmat = sp.Matrix([[sp.diff(L[i, j], v) for v in syms] for i in range(d) for j in range(i, d)])
        eigs = list(Lmat.eigenvals().keys())
        # threshold: the smallest eta > 0 at which some eigenvalue reaches 1
        crit = set()
        for ev in eigs:
            for r in sp.solve(sp.Eq(ev, 1), eta):
                if r != 0:
                    crit.add(sp.simplify(r))
        for Bv in (1, 3, 10, 50):
            vals = [float(r.subs({B: Bv, s: sp.Rational(3, 2)})) for r in crit]
            etastar = min(v for v in vals if v > 0)
            assert math.isclose(etastar, scaling.ms_threshold_isotropic(Bv, d, 1.5), rel_tol=1e-12)


def _enumerated_ms_map(X, B, sampling, eta, pinv=None):
    """E over all batches of (I - eta P^{-1} H_B) (x) (I - eta P^{-1} H_B): the exact mean-square map."""
    N, d = X.shape
    P = np.eye(d) if pinv is None else np.diag(pinv)
    acc = np.zeros((d * d, d * d))
    bs = _batches(N, B, sampling)
    for b in bs:
        A = np.eye(d) - eta * P @ (X[list(b)].T @ X[list(b)] / B)
        acc += np.kron(A, A)
    return acc / len(bs)


@proves("scaling.sgd_linear")
@settings(max_examples=6, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from([("with", 1), ("with", 2), ("without", 2), ("without", 3)]))
def check_ms_threshold_is_where_the_enumerated_map_reaches_one(seed, case):
    sampling, B = case
    X = np.random.default_rng(seed).standard_normal((5, 2))
    eta = scaling.ms_threshold(X, B, sampling)
    rho = lambda e: max(abs(np.linalg.eigvals(_enumerated_ms_map(X, B, sampling, e))))  # noqa: E731
    assert math.isclose(rho(eta), 1.0, abs_tol=1e-9)
    assert rho(eta * 0.99) < 1.0 < rho(eta * 1.01)


@proves("scaling.adam_sqrt")
def check_adam_preconditioner_is_noise_and_threshold():
    # E g_B^2 at the minimiser equals c_B V (enumerate batches of a symbolic dataset with X^T r = 0)
    N, B = 4, 2
    x = sp.symbols("x0:4", real=True)
    r = sp.symbols("r0:4", real=True)
    cons = {r[3]: -(x[0] * r[0] + x[1] * r[1] + x[2] * r[2]) / x[3]}   # sum_i x_i r_i = 0
    V = sum((x[i] * r[i]) ** 2 for i in range(N)) / N
    for sampling in ("with", "without"):
        bs = _batches(N, B, sampling)
        Eg2 = sum((sum(x[i] * r[i] for i in b) / B) ** 2 for b in bs) / len(bs)
        c = scaling.batch_noise_factor(B, N, sampling)
        assert sp.simplify((Eg2 - sp.nsimplify(c) * V).subs(cons)) == 0
    # the preconditioned update reaches spectral radius 1 exactly at adam_threshold
    rng = np.random.default_rng(3)
    X = rng.standard_normal((6, 2))
    y = rng.standard_normal(6)
    w, *_ = np.linalg.lstsq(X, y, rcond=None)
    res = X @ w - y
    for sampling, Bv in (("with", 2), ("without", 3)):
        eta = scaling.adam_threshold(X, res, Bv, sampling)
        cB = scaling.batch_noise_factor(Bv, 6, sampling)
        pinv = 1.0 / np.sqrt(cB * np.mean(X**2 * res[:, None] ** 2, axis=0))
        rho = lambda e: max(abs(np.linalg.eigvals(_enumerated_ms_map(X, Bv, sampling, e, pinv))))  # noqa: E731
        assert math.isclose(rho(eta), 1.0, abs_tol=1e-9)
    # exponent: eta_Adam = sqrt(c)/(alpha + beta c), c = 1/B: d log eta / d log B -> 1/2 as B -> 0
    Bs, al, be = sp.symbols("B alpha beta", positive=True)
    eta_adam = sp.sqrt(1 / Bs) / (al + be / Bs)
    slope = sp.simplify(sp.diff(sp.log(eta_adam), Bs) * Bs)
    assert sp.limit(slope, Bs, 0) == sp.Rational(1, 2)
    assert sp.limit(slope, Bs, sp.oo) == -sp.Rational(1, 2)
    # and the SGD rule: eta = 1/(alpha + beta/B) has exponent 1 at B -> 0, 0 at B -> oo; B* = beta/alpha
    eta_sgd = 1 / (al + be / Bs)
    sl = sp.simplify(sp.diff(sp.log(eta_sgd), Bs) * Bs)
    assert sp.limit(sl, Bs, 0) == 1 and sp.limit(sl, Bs, sp.oo) == 0
    assert sp.simplify(sl.subs(Bs, be / al) - sp.Rational(1, 2)) == 0


def _derive_outlier_without_replacement():
    # generalized MP inverse z(m) = -1/m + (N/d) E[tau/(1 + tau m)] with tau = d/B on a fraction B/N of
    # the examples (sampling without replacement); (N/d)(B/N) tau = 1
    m, gam, L = sp.symbols("m gamma ell")
    zm = -1 / m + 1 / (1 + gam * m)
    Gs = sp.symbols("G")
    mp = gam * zm * Gs**2 - (zm + gam - 1) * Gs + 1
    assert sp.simplify(mp.subs(Gs, -m)) == 0   # G = -m solves the MP equation at z = z(m): same bulk
    # outlier equation -(N/d) m E[tau/(1 + tau m)] = 1/(ell - 1), solved for m, mapped through z(m)
    m_out = sp.solve(sp.Eq(-m / (1 + gam * m), 1 / (L - 1)), m)[0]
    return sp.lambdify((L, gam), sp.simplify(zm.subs(m, m_out)))


_Z_OUT = _derive_outlier_without_replacement()


@proves("scaling.batch_hessian_extremes")
@settings(max_examples=8, deadline=None)
@given(st.floats(0.3, 8.0), st.integers(20, 200), st.integers(1, 8))
def check_batch_hessian_outlier_reduces_to_spiked_mp(ell, d, k):
    B = max(1, (d * k) // 4)
    N = 4 * B
    gv = d / B
    pred = scaling.batch_hessian_top(ell, d, N, B, "without")
    assert math.isclose(pred, rmt.bbp_covariance_outlier(ell, gv), rel_tol=1e-9)
    if ell > 1 + math.sqrt(gv):
        assert math.isclose(float(_Z_OUT(ell, gv)), pred, rel_tol=1e-9)


@proves("scaling.batch_hessian_extremes")
def check_with_replacement_weights_change_the_bulk_only_through_duplicates():
    # with replacement the multiplicities are Binomial(B, 1/N); as N -> inf at fixed B they are 0/1 and
    # the prediction tends to the without-replacement (spiked MP) one; at B = N duplicates push it up
    d, B = 100, 200
    far = scaling.batch_hessian_top(4.0, d, 10**6, B, "with")
    assert math.isclose(far, rmt.bbp_covariance_outlier(4.0, d / B), rel_tol=1e-3)
    assert scaling.batch_hessian_top(4.0, d, B, B, "with") > rmt.bbp_covariance_outlier(4.0, d / B)
    # normalisation (N/d) E[tau] = 1 (H_B is unbiased for H), up to the dropped multiplicities that no
    # example is expected to have (expected count < 1e-3 each)
    tau, pr = scaling._weights(d, 1000, B, "with")
    assert math.isclose((1000 / d) * float(np.sum(pr * tau)), 1.0, rel_tol=1e-4)
