"""solvable.models.rmt: closed forms against library oracles and limits, samplers, KS statistic, bad input."""

import math

import numpy as np
import pytest
from scipy import integrate, stats

from solvable.models import rmt
from solvable.claims import get


# ---- closed forms ----------------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [0.3, 1.0, 2.5])
def test_semicircle_density_integrates_to_cdf(sigma):
    for x in (-1.5 * sigma, 0.0, 0.7 * sigma, 2 * sigma):
        val, err = integrate.quad(rmt.semicircle_density, -2 * sigma, x, args=(sigma,))
        assert math.isclose(val, float(rmt.semicircle_cdf(x, sigma)), abs_tol=1e-9 + err)
    assert rmt.semicircle_cdf(-3 * sigma, sigma) == 0.0 and rmt.semicircle_cdf(3 * sigma, sigma) == 1.0


@pytest.mark.parametrize("gamma", [0.1, 0.5, 1.0, 2.0])
def test_marchenko_pastur_density_integrates_to_cdf(gamma):
    a, b = rmt.marchenko_pastur_edges(gamma)
    atom = max(0.0, 1 - 1 / gamma)
    for x in (a + 0.3 * (b - a), a + 0.8 * (b - a), b):
        val, err = integrate.quad(rmt.marchenko_pastur_density, a, x, args=(gamma,), limit=200)
        assert math.isclose(atom + val, float(rmt.marchenko_pastur_cdf(x, gamma)), abs_tol=1e-7 + err)
    assert math.isclose(float(rmt.marchenko_pastur_cdf(b * 1.01, gamma)), 1.0, abs_tol=1e-12)


def test_marchenko_pastur_scale_sigma():
    # X with entries of variance sigma^2: eigenvalues scale by sigma^2
    np.testing.assert_allclose(rmt.marchenko_pastur_cdf(2.0 * 4, 0.5, 2.0), rmt.marchenko_pastur_cdf(2.0, 0.5))
    assert rmt.marchenko_pastur_edges(0.25, 2.0) == (4 * 0.25, 4 * 2.25)


def test_outliers_are_continuous_at_the_transition():
    for s in (0.5, 1.0, 3.0):
        assert math.isclose(rmt.bbp_wigner_outlier(s * (1 + 1e-12), s), 2 * s, rel_tol=1e-9)
        assert rmt.bbp_wigner_overlap(s * (1 + 1e-12), s) < 1e-9
    for g in (0.1, 1.0, 4.0):
        lc = 1 + math.sqrt(g)
        assert math.isclose(rmt.bbp_covariance_outlier(lc * (1 + 1e-10), g), lc**2, rel_tol=1e-8)
    # large spikes: the outlier tends to the spike itself and the overlap to 1
    assert math.isclose(rmt.bbp_wigner_outlier(1e6, 1.0), 1e6, rel_tol=1e-9)
    assert math.isclose(rmt.bbp_covariance_outlier(1e6, 0.5), 1e6, rel_tol=1e-5)


# ---- samplers and statistics ---------------------------------------------------------------


def test_wigner_is_symmetric_with_the_right_variance():
    W = rmt.wigner(4, 200, 2.0, seed=1)
    np.testing.assert_array_equal(W, np.transpose(W, (0, 2, 1)))
    off = W[:, np.triu_indices(200, 1)[0], np.triu_indices(200, 1)[1]]
    # 4 * 19900 entries: the variance estimate has relative standard error sqrt(2/79600) = 0.5%
    assert math.isclose(off.var() * 200, 4.0, rel_tol=5 * math.sqrt(2 / off.size))


def test_same_seed_same_numbers_and_batch_axis():
    a = rmt.spiked_covariance(3, 20, 0.5, 3.0, seed=7)
    b = rmt.spiked_covariance(3, 20, 0.5, 3.0, seed=7)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (3, 20, 20)


def test_ks_distance_matches_scipy():
    e = rmt.wigner(1, 150, seed=2)
    ev = np.linalg.eigvalsh(e)
    ours = rmt.ks_distance(ev, rmt.semicircle_cdf)[0]
    ref = stats.kstest(ev[0], rmt.semicircle_cdf).statistic
    assert math.isclose(ours, ref, rel_tol=1e-12)


def test_esd_on_grid_counts_and_averages():
    e = np.array([[0.0, 1.0, 2.0, 3.0], [0.5, 1.5, 2.5, 3.5]])
    mean, se = rmt.esd_on_grid(e, [1.0, 3.0, 10.0])
    # row 1: 2/4, 4/4, 1; row 2: 1/4, 3/4, 1 (a point equal to an eigenvalue counts it)
    np.testing.assert_allclose(mean, [0.375, 0.875, 1.0])
    np.testing.assert_allclose(se, [0.125, 0.125, 0.0])
    with pytest.raises(ValueError, match="replicates >= 2"):
        rmt.esd_on_grid(e[:1], [1.0])


@pytest.mark.parametrize("kind,param", [("goe", None), ("loe", 0.2), ("loe", 0.5), ("loe", 1.0)])
def test_mean_esd_bias_is_the_derived_1_over_n_term_and_below_the_bound(kind, param):
    """The claims allow the mean ESD a finite-size bias 1/(4n): the sup of the 1/n term
    -arcsin((2x - a - b)/(b - a))/(2 pi n) of a beta = 1 ensemble. With 2000 replicates at n = 100 the
    measured bias follows that term in the bulk (5 standard errors) and stays below 1/(4n) everywhere."""
    n, R = 100, 2000
    if kind == "goe":
        x = np.linspace(-2.1, 2.1, 43)
        a, b = -2.0, 2.0
        eig = np.linalg.eigvalsh(rmt.wigner(R, n, 1.0, seed=5))
        F = rmt.semicircle_cdf(x)
    else:
        x = np.linspace(0.0, 4.2, 43)
        c = n / round(n / param)
        a, b = rmt.marchenko_pastur_edges(c)
        eig = np.linalg.eigvalsh(rmt.sample_covariance(R, n, param, seed=5))
        F = rmt.marchenko_pastur_cdf(x, c)
    mean, se = rmt.esd_on_grid(eig, x)
    bias = mean - F
    term = -np.arcsin(np.clip((2 * x - a - b) / (b - a), -1, 1)) / (2 * math.pi * n)
    bulk = (x > a + 0.15 * (b - a)) & (x < b - 0.15 * (b - a))
    assert np.all(np.abs(bias - term)[bulk] <= 5 * se[bulk] + 1e-12)
    assert np.all(np.abs(bias) <= rmt.esd_finite_size_bias(n) + 5 * se)


def test_semicircle_claim_rejects_a_wrong_scale_and_passes_the_right_one():
    c = get("rmt.semicircle")
    p = c.params(n=200)
    m = c.measure(p, seed=3)
    tol = c.tolerance(p, m, None)
    right = rmt.semicircle_cdf(p.sigma * np.asarray(rmt.SEMICIRCLE_GRID), p.sigma)
    wrong = rmt.semicircle_cdf(p.sigma * np.asarray(rmt.SEMICIRCLE_GRID), 1.05 * p.sigma)
    assert np.all(rmt.abs_errors(right, m.value) <= tol.value)
    assert np.any(rmt.abs_errors(wrong, m.value) > tol.value)


def test_sizes_have_an_upper_bound_before_any_allocation():
    # a ValueError naming the parameter and its range, not a MemoryError
    with pytest.raises(ValueError, match=r"n=100000000 is out of range: n must be an integer in \[2, 4000\]"):
        get("rmt.semicircle").params(n=100000000)
    with pytest.raises(ValueError, match=r"replicates=512 GOE matrices of size n=4000 need .* GiB"):
        get("rmt.semicircle").params(n=4000, replicates=512)
    with pytest.raises(ValueError, match=r"gamma=1e-06"):
        get("rmt.marchenko_pastur").params(gamma=1e-6)
    with pytest.raises(ValueError, match=r"p=100000 is out of range"):
        get("rmt.bbp_covariance").params(p=100000)


def test_bbp_wigner_default_exposes_sigma_squared():
    # sigma = 1 would make sigma and sigma^2 (and every power) the same number
    p = get("rmt.bbp_wigner").params()
    assert p.sigma != 1 and not math.isclose(rmt.bbp_wigner_outlier(p.theta, p.sigma),
                                             rmt.bbp_wigner_outlier(p.theta, math.sqrt(p.sigma)), rel_tol=0.05)


def test_top_eigenvalues_torch_matches_numpy_on_same_data(backend):
    A = rmt.wigner(3, 50, seed=4)
    top = backend.to_numpy(rmt.top_eigenvalues(backend.asarray(A), backend))
    tol = 50 * backend.eps * 50
    np.testing.assert_allclose(top, np.linalg.eigvalsh(A)[:, -1], rtol=tol)


@pytest.mark.parametrize("cid", ["rmt.semicircle", "rmt.bbp_wigner"])
def test_claims_on_each_backend(cid, backend_device):
    c = get(cid)
    # both claims take a matrix size n and a replicate count: the same cheap setting for each
    p = c.params(replicates=12, n=200)
    v = c.check(p, backend=backend_device[0], device=backend_device[1], seed=1)
    assert v.passed, v


# ---- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize("call,name", [
    (lambda: rmt.marchenko_pastur_density(1.0, 0.0), "gamma"),
    (lambda: rmt.marchenko_pastur_cdf(1.0, -1.0), "gamma"),
    (lambda: rmt.semicircle_density(0.0, 0.0), "sigma"),
    (lambda: rmt.wigner(1, 1), "n"),
    (lambda: rmt.sample_covariance(1, 1, 0.5), "p"),
    (lambda: rmt.sample_covariance(1, 3, 3.0), "gamma"),   # n = round(3/3) = 1 < 2: names gamma, not n
    (lambda: rmt.spiked_covariance(1, 3, 3.0, 2.0), "gamma"),
    (lambda: rmt.bbp_wigner_outlier(1.0, -2.0), "sigma"),
    (lambda: rmt.bbp_covariance_outlier(2.0, 0.0), "gamma"),
    (lambda: rmt.esd_finite_size_bias(1), "n"),
    (lambda: get("rmt.bbp_wigner").params(theta=1.0, sigma=1.0), "theta"),
    (lambda: get("rmt.bbp_covariance").params(ell=1.7, gamma=0.5), "ell"),
    (lambda: get("rmt.marchenko_pastur").params(gamma=0.0), "gamma"),
])
def test_bad_input_names_the_parameter(call, name):
    with pytest.raises(ValueError, match=name):
        call()


# ---- Lanczos ---------------------------------------------------------------------------------


def _batch_matvec(A):
    return lambda V: (A @ V[..., None])[..., 0]


def test_lanczos_top_matches_eigvalsh_at_full_krylov_dimension():
    rng = np.random.default_rng(3)
    A = rng.standard_normal((4, 12, 12))
    A = A + A.transpose(0, 2, 1)
    top, res = rmt.lanczos_top(_batch_matvec(A), rng.standard_normal((4, 12)), iters=12)
    # 12 steps span the whole space: the Ritz value is the eigenvalue up to round-off of O(n) products
    np.testing.assert_allclose(top, np.linalg.eigvalsh(A)[:, -1], rtol=0, atol=1e3 * np.finfo(float).eps * 12)


@pytest.mark.parametrize("iters", [0, 13])
def test_lanczos_rejects_iters_outside_1_to_n(iters):
    A = np.eye(12)[None]
    with pytest.raises(ValueError, match=r"iters=.*\[1, 12\]"):
        rmt.lanczos_top(_batch_matvec(A), np.ones((1, 12)), iters=iters)


def test_lanczos_breakdown_restarts_instead_of_dividing_by_zero():
    # v0 spans an invariant subspace (two eigenvectors of a negative definite diagonal operator):
    # the Krylov space closes after 1 or 2 steps (beta = 0); the top eigenvalue -1 lies outside it
    D = np.diag(-np.arange(1.0, 9.0))
    v0 = np.zeros((2, 8))
    v0[:, 3] = 1.0
    v0[1, 5] = 1.0
    with np.errstate(all="raise"):
        top, res = rmt.lanczos_top(_batch_matvec(np.stack([D, D])), v0, iters=8)
    np.testing.assert_allclose(top, [-1.0, -1.0], atol=1e-12)
    assert np.all(np.isfinite(res))


def test_bbp_covariance_outlier_bias_is_order_1_over_n():
    # the tolerance of rmt.bbp_covariance allows an outlier's mean an O(1/n) offset (its value)/n above the
    # transition; with 2000 replicates the mean offset must lie within it (plus 3 standard errors)
    ell, gamma, p = 8.0, 2.0, 100
    n = round(p / gamma)
    lam = rmt.top_eigenvalues(rmt.spiked_covariance(2000, p, gamma, ell, seed=11))
    psi = rmt.bbp_covariance_outlier(ell, gamma)
    se = lam.std(ddof=1) / math.sqrt(lam.size)
    assert abs(lam.mean() - psi) <= psi / n + 3 * se, (lam.mean() - psi, psi / n, se)
    # and the spread is the Gaussian n^(-1/2) scale of Bai and Yao 2008 (within 10%: 2000 samples
    # give the sample sd to 1.6% relative standard error, the rest is the O(1/n) correction)
    sd_limit = math.sqrt(2 * ell**2 * (1 - gamma / (ell - 1) ** 2) / n)
    assert abs(lam.std(ddof=1) / sd_limit - 1.0) < 0.1
