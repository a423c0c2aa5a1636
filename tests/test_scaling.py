"""solvable.models.scaling: exact thresholds against oracles and limits, simulators, sampling, bad input."""

import math

import numpy as np
import pytest

from solvable.models import rmt, scaling
from solvable.backend import get_backend
from solvable.claims import get
from solvable.stats import loglog_slope


@pytest.fixture(scope="module")
def data():
    return scaling.dataset(256, 16, noise=1.0, seed=1)


# ---- closed forms ----------------------------------------------------------------------------


def test_noise_factor_limits():
    assert scaling.batch_noise_factor(1, 50, "with") == 1.0
    assert scaling.batch_noise_factor(1, 50, "without") == 1.0      # one example: same either way
    assert scaling.batch_noise_factor(50, 50, "without") == 0.0     # the full batch has no noise
    assert scaling.batch_noise_factor(500, 50, "with") == 1 / 500   # with replacement B may exceed N


def test_full_batch_without_replacement_is_gradient_descent(data):
    X, _ = data
    eta = scaling.ms_threshold(X, X.shape[0], "without")
    lam = np.linalg.eigvalsh(X.T @ X / X.shape[0])[-1]
    assert math.isclose(eta, 2.0 / lam, rel_tol=1e-9)


def test_threshold_below_gd_and_increasing_in_B(data):
    X, _ = data
    gd = 2.0 / np.linalg.eigvalsh(X.T @ X / X.shape[0])[-1]
    etas = [scaling.ms_threshold(X, b, "with") for b in (1, 4, 16, 64, 256)]
    assert all(a < b for a, b in zip(etas, etas[1:])) and etas[-1] < gd


def test_finite_n_threshold_approaches_the_isotropic_population_formula():
    # the empirical fourth moments converge to Isserlis' at rate N^(-1/2): the error must shrink
    # (0.01 is 2.5 x the N^(-1/2) scale 1/sqrt(3200) times d/(B + d + 1))
    errs = []
    for N in (200, 3200):
        X, _ = scaling.dataset(N, 8, seed=2)
        errs.append(abs(scaling.ms_threshold(X, 2) / scaling.ms_threshold_isotropic(2, 8) - 1))
    assert errs[1] < errs[0] and errs[1] < 0.01


def test_linear_exponent_and_critical_batch_size_of_the_population_formula():
    # eta = 2B/(B + d + 1): slope -> 1 for B << d, B* = d + 1 exactly
    d = 400
    fit = loglog_slope([1, 2], [scaling.ms_threshold_isotropic(b, d) for b in (1, 2)])
    assert abs(fit.slope - 1) < 3 / (d + 1)
    Bs = [1, 4, 16, 64, 256, 1024]
    bstar, *_ = scaling._fit_bstar(Bs, [scaling.ms_threshold_isotropic(b, d) for b in Bs], 10**9, "with")
    assert math.isclose(bstar, d + 1, rel_tol=1e-9)


def test_rmt_rule_matches_in_the_linear_regime_and_is_conservative_near_Bstar():
    d = 400
    for B, lo, hi in ((1, 0.85, 1.0), (d, 0.45, 0.55), (10**4 * d, 0.95, 1.0)):
        ratio = scaling.rmt_threshold(1.0, d, 10**9, B, "without") / scaling.ms_threshold_isotropic(B, d)
        assert lo < ratio <= hi, (B, ratio)


def test_batch_hessian_top_without_replacement_is_spiked_mp():
    for ell, d, B in ((4.0, 100, 50), (1.2, 100, 400), (0.5, 50, 25)):
        assert math.isclose(scaling.batch_hessian_top(ell, d, 800, B, "without"),
                            rmt.bbp_covariance_outlier(ell, d / B), rel_tol=1e-9)


def test_adam_threshold_rises_as_sqrt_B_then_falls(data):
    X, r = data
    etas = [scaling.adam_threshold(X, r, b, "with") for b in (1, 2, 4, 64, 256, 1024)]
    slope_small = loglog_slope([1, 2], etas[:2]).slope
    slope_large = loglog_slope([256, 1024], etas[4:]).slope
    assert 0.3 < slope_small <= 0.5 and -0.5 <= slope_large < -0.3


# ---- simulators ------------------------------------------------------------------------------


def test_growth_sign_brackets_the_exact_threshold(data, backend):
    X, _ = data
    eta = scaling.ms_threshold(X, 4, "with")
    est, se = scaling.sgd_growth(X, 4, [0.8 * eta, 1.2 * eta], 16, 200, "with", backend, seed=0)
    assert est[0] < -3 * se[0] and est[1] > 3 * se[1]


def test_divergence_never_overflows(data):
    X, _ = data
    est, se = scaling.sgd_growth(X, 2, [50.0], 4, 64, "with", get_backend("numpy"), seed=0)
    assert np.isfinite(est).all() and est[0] > 0


def test_float32_divergence_is_finite_growth_not_nan(data):
    # float32 overflows after one step at this rate: the run counts as diverged (growth >= log of the
    # largest float32 per renormalisation), never inf - inf = NaN
    X, _ = data
    est, se = scaling.sgd_growth(X, 2, [1e30], 4, 16, "with", get_backend("numpy", dtype="float32"), seed=0)
    assert np.isfinite(est).all() and est[0] > 0


def test_failed_bisection_fit_fails_the_claim(monkeypatch):
    # a failed root fit returns the bracket's midpoint: the claim must fail on it, not pass silently
    def failed(X, B, sampling, backend, seed, **kw):
        return scaling.ms_threshold(X, B, sampling), 0.01, {"steps": 1, "fit_failed": True, "bias": 0.0}

    monkeypatch.setattr(scaling, "bisect_threshold", failed)
    for cid in ("scaling.sgd_linear", "scaling.adam_sqrt"):
        v = get(cid).check()
        assert v.checks["bisection_fit_ok"] is False and not v.passed, v


def test_each_entry_is_held_to_its_own_allowance():
    # the engine's per-entry tolerance: an entry off by 2x its own allowance fails the claim even when
    # it is inside the loosest entry's allowance
    from solvable.claims import Measurement

    c = get("scaling.sgd_linear")
    m = Measurement(value=[1.08, 1.0], stderr=[0.01, 0.1], info={"bias": [0.0, 0.0]})
    t = scaling._tol_per_entry(None, m, get_backend("numpy"))
    z = scaling._z(2)
    np.testing.assert_allclose(t.value, [0.01 * z, 0.1 * z])
    assert 0.08 < t.value[1]
    err, marg, passed = c.judge(None, [1.0, 1.0], m, t)
    assert not passed and math.isclose(marg, 0.08 / (0.01 * z))
    err, marg, passed = c.judge(None, [1.08, 1.05], m, t)
    assert passed


def test_population_estimate_is_unbiased_where_the_run_level_lognormal_is_not():
    """At the exact threshold the mean-square growth over the second half is 0. One population per run
    (no resampling) is the old estimate mean(L) + var(L)/2 of the runs' log growths L: it misses
    k3/6 + k4/24 + ... and reads clearly negative (threshold located too high); populations of 16
    resampled runs read 0 within their error."""
    X, _ = scaling.dataset(256, 32, noise=1.0, seed=0)
    B = 16
    eta = scaling.ms_threshold(X, B, "with")
    steps = scaling._steps(B, 32, 20)
    be = get_backend("numpy")
    old, se_old = scaling.sgd_growth(X, B, [eta], 3000, steps, "with", be, seed=1, populations=3000)
    Z = scaling.sgd_growth(X, B, [eta], 3200, steps, "with", be, seed=2, populations=200, return_populations=True)[0]
    new, se_new = Z.mean() + Z.var(ddof=1) / 2, Z.std(ddof=1) / math.sqrt(Z.size)
    assert abs(new) <= 4 * se_new + 0.05, (new, se_new)
    assert old[0] < -4 * se_old[0] and old[0] < new - 0.1, (old, se_old, new)


def test_adam_default_noise_is_anisotropic():
    # V ~ I would make the V^(-1/4) preconditioner a scalar, invisible to the claim
    p = get("scaling.adam_sqrt").params()
    X, r = scaling._sgd_data(p)
    V = scaling.gradient_noise(X, r)
    assert V.max() / V.min() > 0.5 * p.kappa**2


def test_sizes_have_an_upper_bound():
    for cid, name in (("scaling.sgd_linear", "d"), ("scaling.adam_sqrt", "N"), ("scaling.batch_hessian_extremes", "N")):
        with pytest.raises(ValueError, match=rf"{name}=100000000 is out of range"):
            get(cid).params(**{name: 100000000})


def test_same_seed_same_numbers(data):
    X, _ = data
    be = get_backend("numpy")
    a = scaling.sgd_growth(X, 2, [0.1, 0.2], 4, 40, "without", be, seed=5)
    b = scaling.sgd_growth(X, 2, [0.1, 0.2], 4, 40, "without", be, seed=5)
    np.testing.assert_array_equal(a[0], b[0])


@pytest.mark.seeded
def test_bisection_finds_the_exact_threshold(data):
    X, _ = data
    be = get_backend("numpy")
    for B, sampling in ((2, "with"), (8, "without")):
        eta, se, info = scaling.bisect_threshold(X, B, sampling, be, seed=1, seeds=16)
        exact = scaling.ms_threshold(X, B, sampling)
        assert abs(eta / exact - 1) <= 3 * se + info["bias"], (B, eta, exact, se, info)


def test_without_replacement_draws_are_uniform_subsets(backend):
    g = backend.rng(0)
    for B in (3, 40):
        idx = backend.to_numpy(scaling._draw(g, 50, B, (4000,), "without")).astype(int)
        assert all(len(set(row)) == B for row in idx)
        counts = np.bincount(idx.ravel(), minlength=50)
        # each index appears with probability B/50 per row: binomial standard error, 5 sigma
        expect = 4000 * B / 50
        assert np.all(np.abs(counts - expect) < 5 * math.sqrt(expect))


def test_preconditioner_estimate_matches_noise_second_moment(data):
    X, r = data
    P = scaling.estimate_preconditioner(X, r, 4, "with", get_backend("numpy"), seed=0, batches=4096)
    exact = np.sqrt(scaling.gradient_noise(X, r) / 4)
    # P = sqrt(mean of 4096 g^2) has relative standard error sqrt(var(g^2) / (E g^2)^2 / 4096) / 2, and
    # var(g^2) / (E g^2)^2 = kurtosis(g) - 1. One example's gradient x_ij r_i is a product of two
    # independent (near-)Gaussians, kurtosis 3 x 3 = 9, so the factor is 8; averaging B = 4 examples
    # lowers the kurtosis to 3 + 6/B = 4.5 (factor 3.5): 8 is the conservative B = 1 value. 5 sigma.
    np.testing.assert_allclose(P, exact, rtol=5 * 0.5 * math.sqrt(8 / 4096))


# ---- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize("call,name", [
    (lambda: scaling.batch_noise_factor(0, 10), "B"),
    (lambda: scaling.batch_noise_factor(11, 10, "without"), "B"),
    (lambda: scaling.batch_noise_factor(2, 10, "sometimes"), "sampling"),
    (lambda: scaling.batch_hessian_top(2.0, 10, 100, 5, "without", scale=1.0) and
     scaling.batch_hessian_top(-1.0, 10, 100, 5), "ell"),
    (lambda: scaling.ms_threshold_isotropic(0, 10), "B"),
    (lambda: scaling.dataset(1, 3), "N"),
    (lambda: scaling.adam_threshold(*scaling.dataset(20, 3, noise=1.0), 20, "without"), "B"),
    (lambda: scaling.sgd_growth(np.eye(4), 2, [0.1], 1, 10, "with", get_backend("numpy"), 0), "seeds"),
    (lambda: scaling.sgd_growth(np.eye(4), 2, [0.1], 4, 1, "with", get_backend("numpy"), 0), "steps"),
    (lambda: scaling.sgd_growth(np.eye(4), 2, [-0.1], 4, 10, "with", get_backend("numpy"), 0), "lrs"),
    (lambda: scaling.sgd_growth(np.eye(4), 5, [0.1], 4, 10, "without", get_backend("numpy"), 0), "B"),
    (lambda: scaling.bisect_threshold(np.eye(4), 2, "with", get_backend("numpy"), 0, seeds=1), "seeds"),
    (lambda: scaling.bisect_threshold(np.eye(4), 2, "with", get_backend("numpy"), 0, grid=1), "grid"),
    (lambda: scaling.bisect_threshold(np.eye(4), 2, "with", get_backend("numpy"), 0, rounds=0), "rounds"),
    (lambda: scaling.bisect_threshold(np.eye(4), 2, "with", get_backend("numpy"), 0, base_steps=0), "base_steps"),
])
def test_bad_input_names_the_parameter(call, name):
    with pytest.raises(ValueError, match=name):
        call()
