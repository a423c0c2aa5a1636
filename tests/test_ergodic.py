"""Tests of solvable.models.ergodic beyond the generic claim tests: limits of the closed forms, the
estimators against library oracles and exact samples, bad input, divergence, backends, seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from solvable.models import ergodic as E
from solvable.claims import apply_overrides, get
from solvable.stats import loglog_slope, mean_sem
from solvable.testing import assert_close

Z = E.Z_FW  # 4.5 standard errors: P(|N(0,1)| > 4.5) = 6.8e-6 per comparison


# ---------------------------------------------------------------------------------------------
# Closed forms: limits and consistency


def test_small_step_limit_of_the_stationary_variance_is_first_order():
    # V = eta sigma^2 / (2a) * 1 / (1 - eta a / 2): the small-eta (Langevin) limit is approached at order 1.
    etas = np.array([1e-3, 1e-2, 1e-1])
    dev = [abs(E.stationary_variance(e, 1.3, 0.7) * 2 * 1.3 / (e * 0.49) - 1) for e in etas]
    assert abs(loglog_slope(etas, dev).slope - 1.0) < 0.05


def test_lyapunov_solver_reduces_to_the_scalar_formula():
    for eta, a, s in [(0.1, 1.0, 1.0), (1.5, 1.2, 0.3), (0.01, 0.5, 2.0)]:
        assert_close(E.stationary_covariance(eta, [[a]], [[s**2]])[0, 0], E.stationary_variance(eta, a, s), n_ops=50)


def test_default_quadratic_has_largest_curvature_a():
    H, C = E.default_quadratic(1.7, 0.5)
    assert_close(np.linalg.eigvalsh(H).max(), 1.7, n_ops=50)
    assert not np.allclose(H, np.diag(np.diag(H)))  # the matrix case is not diagonal
    assert np.all(np.linalg.eigvalsh(C) > 0)


def test_lookahead_limits():
    v_sgd, v_la = E.lookahead_variance(0.3, 1.0, 1.0, 1.0, 7)
    assert_close(v_la, v_sgd, n_ops=20)  # alpha = 1: the slow weights are the SGD iterate
    # k -> infinity (r^k -> 0): the fast weights reach the SGD law, phi averages it: alpha / (2 - alpha)
    v_sgd, v_la = E.lookahead_variance(0.3, 1.0, 1.0, 0.4, 5000)
    assert_close(v_la / v_sgd, 0.4 / 1.6, n_ops=20)


def test_tail_index_is_heavier_for_larger_steps_and_lighter_for_larger_batches():
    a = [E.tail_index(e, 1) for e in (0.5, 0.7, 1.0, 1.5)]
    assert all(x > y for x, y in zip(a, a[1:]))
    b = [E.tail_index(1.0, bb) for bb in (1, 2, 4, 8)]
    assert all(x < y for x, y in zip(b, b[1:]))
    assert_close(E.tail_index(1.0, 2), 2.0, rtol=1e-8, reason="exponential a_t: E(1 - a)^2 = 1 exactly")


def test_kesten_moment_is_one_at_zero_and_at_the_tail_index():
    assert_close(E.kesten_moment(0.0, 0.8), 1.0, rtol=1e-9, reason="quadrature of a density")
    alpha = E.tail_index(0.8)
    assert_close(E.kesten_moment(alpha, 0.8), 1.0, rtol=1e-8, reason="brentq root at 1e-12")
    assert E.kesten_moment(alpha / 2, 0.8) < 1.0


# ---------------------------------------------------------------------------------------------
# Estimators


def test_hill_estimator_on_exact_pareto_samples():
    rng = np.random.default_rng(0)
    for alpha in (0.8, 1.5, 3.0):
        x = rng.pareto(alpha, 200_000) + 1.0  # P(X > s) = s^-alpha exactly, s >= 1
        k = 5000
        # On an exact Pareto tail Hill's estimate is unbiased up to k / (k - 1); its sd is alpha / sqrt(k).
        assert abs(E.hill_estimator(x, k) - alpha) <= Z * alpha / math.sqrt(k)


def test_sliced_wasserstein_matches_scipy_per_direction():
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(50, 3)), rng.normal(size=(50, 3)) + 0.3
    dirs = E._unit_directions(3, 7, 0)
    want = np.mean([sps.wasserstein_distance(X @ dirs[:, j], Y @ dirs[:, j]) for j in range(7)])
    assert_close(E.sliced_wasserstein(X, Y, dirs), want, n_ops=500)


def test_window_test_has_power_and_calibrated_null():
    rng = np.random.default_rng(2)
    A, B = rng.normal(size=(32, 5, 4)), rng.normal(size=(32, 5, 4))
    same = E.window_distance_test(A, B, seed=0)
    shifted = E.window_distance_test(A, B + 0.5, seed=0)
    assert same.distance <= same.null_mean + 4 * same.null_sd
    assert shifted.distance > shifted.null_mean + 4 * shifted.null_sd and shifted.p_value < 0.01


# ---------------------------------------------------------------------------------------------
# Simulators: backends, seeds, divergence


def test_quadratic_chains_match_the_closed_form_on_each_backend(backend):
    eta, a, s = 0.4, 1.1, 0.8
    res = E.simulate_sgd_quadratic(eta, [[a]], [[s**2]], 1000, 400, 60, backend, seed=5)
    m, se = mean_sem(res.moments["xx"][:, 0, 0])
    # float32 round-off, counted in operations: the naive running sum of the 400 averaged x^2 terms
    # (relative error <= 400 eps), the mean over 1000 chains (<= 1000 eps), and the chain's own
    # rounding, which the recurrence forgets at rate rho = |1 - eta a| (<= 2 eps / (1 - rho) on x^2)
    n_ops = 400 + 1000 + 2.0 / (1.0 - abs(1.0 - eta * a))
    tol = Z * se + (backend.roundoff(n_ops) * m if backend.dtype == "float32" else 0.0)
    assert abs(m - E.stationary_variance(eta, a, s)) <= tol


def test_lookahead_chains_on_each_backend(backend):
    res = E.simulate_lookahead(0.3, 1.0, 1.0, 0.5, 3, 1000, 50, 300, backend, seed=1)
    v_sgd, v_la = E.lookahead_variance(0.3, 1.0, 1.0, 0.5, 3)
    m, se = mean_sem(res.moments["la"])
    assert abs(m - v_la) <= Z * se


def test_same_seed_same_numbers():
    a = E.simulate_kesten(0.8, 500, 20, 5, 4, seed=9).trace
    b = E.simulate_kesten(0.8, 500, 20, 5, 4, seed=9).trace
    np.testing.assert_array_equal(a, b)
    r1 = E.train_mlp_chains(n_chains=4, n_steps=30, snapshot_every=10, seed=3)
    r2 = E.train_mlp_chains(n_chains=4, n_steps=30, snapshot_every=10, seed=3)
    np.testing.assert_array_equal(r1.weights, r2.weights)


def test_divergence_is_reported_not_nan():
    res = E.simulate_sgd_quadratic(1.0, [[2.5]], [[1.0]], 10, 2000, 0)
    assert res.diverged and 0 < res.diverged_step <= 2000
    assert not np.any(np.isnan(res.x))
    la = E.simulate_lookahead(1.0, 2.5, 1.0, 1.0, 2, 10, 0, 5000)
    assert la.diverged and la.diverged_step > 0
    ks = E.simulate_kesten(8.0, 100, 0, 50, 20)  # E log|1 - 8 a_t| = 0.93 > 0: no stationary law
    assert ks.diverged and ks.diverged_step > 0
    assert E.train_mlp_chains(n_chains=2, n_steps=200, lr=50.0, snapshot_every=10).diverged


def test_fluctuation_dissipation_on_the_quadratic_chain():
    """E<x, g> / E g^2 = eta / 2 for x' = x - eta g, g = a x + xi: the closed form against the chain."""
    eta, a, s = 0.4, 1.1, 0.8
    res = E.simulate_sgd_quadratic(eta, [[a]], [[s**2]], 2000, 1, 60, seed=2)
    x = res.x[:, 0]
    xi = np.random.default_rng(3).standard_normal(x.size) * s
    g = a * x + xi
    dot, se_d = mean_sem(x * g)
    sq = float(np.mean(g * g))
    assert abs(dot / sq - E.sgd_fluctuation_dissipation(eta)) <= Z * se_d / sq + Z * math.sqrt(2.0 / x.size) * eta


def test_mlp_records_the_fluctuation_dissipation_sums():
    run = E.train_mlp_chains(n_chains=4, width=4, dim=2, lr=0.1, weight_decay=0.05, n_steps=60, snapshot_every=20, seed=1)
    assert run.theta_dot_grad.shape == run.grad_sq.shape == run.path_length.shape
    assert np.all(np.diff(run.grad_sq, axis=0) > 0) and np.all(run.theta_dot_grad[0] == 0)
    # ||theta_T||^2 - ||theta_0||^2 = -2 lr sum <theta, g> + lr^2 sum ||g||^2, exactly (up to round-off)
    lhs = np.sum(run.weights[-1] ** 2, axis=1) - np.sum(run.weights[0] ** 2, axis=1)
    rhs = -2 * 0.1 * run.theta_dot_grad[-1] + 0.01 * run.grad_sq[-1]
    assert_close(lhs, rhs, rtol=1e-9, atol=1e-12, reason="60 steps of float64 sums; atol near a zero change")


def test_log_cos_angle_of_the_sphere_chains():
    """E[-log cos theta] over the stationary half against -log(1 - eta wd), without gradient noise too."""
    eta, wd = 0.2, 0.1
    run = E.sphere_chains(eta, wd, 0.3, 64, 1200, seed=4)
    q = -np.log(np.cos(np.asarray(run.angle)[600:])).mean(axis=0)
    m, se = mean_sem(q)
    assert abs(m - E.stationary_log_cos_angle(eta, wd)) <= Z * se


@pytest.mark.seeded
def test_mlp_law_moves_early_then_settles():
    run = E.train_mlp_chains(n_chains=32, width=8, dim=2, lr=0.2, weight_decay=0.03, label_noise=0.3,
                             n_steps=400, snapshot_every=20, seed=1)
    wd = E.window_distances(run.weights[1:], run.steps[1:], n_windows=4)
    assert wd["distance"][0] > wd["threshold"][0]  # the test sees the transient from one initialisation
    assert np.all(np.diff(run.path_length, axis=0) > 0)


def test_sphere_direction_law_moves_from_the_start():
    run = E.sphere_chains(0.15, 0.05, 0.5, 64, 300, seed=0)
    dirs = np.asarray(run.directions)[1::10]
    wd = E.window_distances(dirs, run.steps[1::10], n_windows=3)
    assert wd["distance"][0] > wd["threshold"][0]


# ---------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize("call, name", [
    (lambda: E.stationary_variance(0.0, 1.0, 1.0), "eta"),
    (lambda: E.stationary_variance(0.1, -1.0, 1.0), "a"),
    (lambda: E.stationary_variance(1.0, 2.5, 1.0), r"eta\*a"),
    (lambda: E.lookahead_variance(0.1, 1.0, 1.0, 0.0, 3), "alpha"),
    (lambda: E.lookahead_variance(0.1, 1.0, 1.0, 1.5, 3), "alpha"),
    (lambda: E.lookahead_variance(0.1, 1.0, 1.0, 0.5, 0), "k"),
    (lambda: E.tail_index(5.0), "eta"),
    (lambda: E.hill_estimator(np.ones(10) * 2, 20), "k"),
    (lambda: E.stationary_covariance(1.0, np.diag([2.5, 1.0]), np.eye(2)), "eta"),
    (lambda: E.QuadraticParams(eta=1.5, a=1.5), r"eta\*a"),
    (lambda: E.LookaheadParams(alpha=1.2), "alpha"),
    (lambda: E.LookaheadParams(k=0), "k"),
    (lambda: E.TailParams(eta=4.0), "eta"),
    (lambda: E.sgd_fluctuation_dissipation(0.0), "lr"),
    (lambda: E.stationary_log_cos_angle(2.0, 0.6), r"eta\*wd"),
    (lambda: E.SphereParams(eta=20.0, wd=0.1), r"eta\*wd"),
    (lambda: E.norm_map_contraction(-1.0, 0.1), "eta"),
    (lambda: E.simulate_sgd_quadratic(0.1, np.eye(2), np.eye(3), 2, 2), "C"),
    (lambda: E.simulate_sgd_quadratic(0.1, np.ones((2, 3)), np.eye(2), 2, 2), "H"),
])
def test_bad_input_names_the_parameter(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_cli_overrides_outside_the_stationary_range_are_rejected():
    claim = get("ergodic.ou_stationary")
    with pytest.raises(ValueError, match=r"eta\*a"):
        apply_overrides([claim], {"eta": "2.5"})


# ---------------------------------------------------------------------------------------------
# Slow: the Hill bias at the claim's tail fraction, measured at ten times the claim's data


@pytest.mark.slow
def test_hill_bias_below_its_allowance():
    """Pooled Hill estimate at the claim's tail fraction on 5x the claim's states: within the claim's bias
    allowance plus Z standard errors (the i.i.d. alpha / sqrt(k) times 1.8, the clustering of extremes
    measured for the claim's group spread)."""
    for eta in (0.7, 0.85, 1.0):
        res = E.simulate_kesten(eta, 5 * E._HT_CHAINS, E._HT_BURN, E._HT_SNAPS, E._HT_SPACING, seed=11)
        x = res.trace.ravel()
        k = round(E._HT_FRACTION * x.size)
        rel = E.hill_estimator(x, k) / E.tail_index(eta) - 1
        assert abs(rel) < E._HT_BIAS + Z * 1.8 / math.sqrt(k), (eta, rel)


# ---------------------------------------------------------------------------------------------
# Regression: a chain with contraction rho = 0 (eta a = 1 forgets its start in one step)


def test_burn_in_at_zero_contraction_is_the_floor():
    assert E._burn_in(0.0) == 10
    # away from 0 it is the shortest start-up with rho^(2B) <= 1e-6
    B = E._burn_in(0.9)
    assert 0.9 ** (2 * B) <= 1e-6 < 0.9 ** (2 * (B - 1))


@pytest.mark.parametrize("cid, overrides", [
    ("ergodic.time_average_equals_ensemble", {"eta": 1.0, "a": 1.0}),     # a registered sweep value
    ("ergodic.lookahead_variance", {"eta": 1.0, "a": 1.0, "alpha": 1.0}),
])
def test_claims_at_zero_contraction(cid, overrides):
    c = get(cid)
    v = c.check(c.make_params(**overrides), seed=0)
    assert v.passed, v
