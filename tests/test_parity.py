"""solvable.models.parity: the Fourier gap of a symmetric neuron on sparse parities."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from solvable.backend import get_backend
from solvable.models import parity as par


def test_inputs_are_the_whole_cube():
    X = par.all_inputs(4, get_backend("numpy"))
    assert X.shape == (16, 4) and len({tuple(r) for r in X}) == 16 and set(np.unique(X)) == {-1.0, 1.0}


def test_gradient_matches_majority_coefficients():
    """n odd: f = (1 + Maj)/2, so the gradient on a relevant coordinate is -Maj^(k-1)/2."""
    for n, k in [(7, 2), (9, 4), (11, 6)]:
        g = par.population_gradient(n, k, get_backend("numpy"))
        assert g[0] == pytest.approx(-par.majority_coefficient(n, k - 1) / 2, rel=1e-12)
        assert g[-1] == pytest.approx(-par.majority_coefficient(n, k + 1) / 2, rel=1e-12)


def test_gap_grows_like_n_over_k():
    assert [par.fourier_gap(n, 2) for n in (5, 9, 17)] == [-3.0, -7.0, -15.0]
    assert par.fourier_gap(101, 4) / par.fourier_gap(51, 4) == pytest.approx(97 / 47)


def test_numpy_and_torch_agree(backend):
    ref = par.population_gradient(10, 3, get_backend("numpy"))
    g = get_backend("numpy").to_numpy(par.population_gradient(10, 3, backend))
    np.testing.assert_allclose(g, ref, rtol=backend.roundoff(2 ** 10), atol=0)


@pytest.mark.parametrize("n,k,match", [(5, 6, r"k=6 is out of range: k must be an integer in \[1, n\] = \[1, 5\]"),
                                       (7, 3, "both odd"), (6, 1, r"k=1 is out of range"), (6, 6, "k=6 is out of range"),
                                       (1, 1, r"n=1 is out of range")])
def test_bad_input(n, k, match):
    with pytest.raises(ValueError, match=match):
        par.fourier_gap(n, k)


def test_majority_needs_odd_n():
    with pytest.raises(ValueError, match="n=4 is out of range"):
        par.majority_coefficient(4, 1)


def test_same_input_same_numbers():
    be = get_backend("numpy")
    np.testing.assert_array_equal(par.population_gradient(8, 2, be), par.population_gradient(8, 2, be))


# ------------------------------------------------------------------------------------------
# hidden progress


@pytest.mark.parametrize("n, k", [(8, 2), (7, 3), (7, 7)])
def test_hidden_progress_needs_n_odd_k_even(n, k):
    with pytest.raises(ValueError, match=f"n={n}"):
        par.hidden_progress_rates(n, k)


def test_population_loss_is_linear_while_the_pattern_is_symmetric(backend):
    W = backend.asarray(np.array([[1.0] * 7, [1.1, 1.05, 1.0, 0.95, 1.0, 1.0, 0.98]]))
    L = backend.to_numpy(par.population_loss(W, 2, backend))
    g = -np.array([par.hidden_progress_rates(7, 2)[0]] * 2 + [par.hidden_progress_rates(7, 2)[1]] * 5)
    np.testing.assert_allclose(L, backend.to_numpy(W) @ g, rtol=backend.roundoff(1e3))


def test_sgd_drift_matches_the_rates_over_seeds(backend):
    run = par.simulate_neuron_sgd(9, 2, 0.005, 100, 128, 16, backend, seed=4)
    assert run.symmetric_pattern.all()
    r = par.hidden_progress_rates(9, 2)
    drift = (run.relevant[-1] - 1.0) / (0.005 * 100)
    assert abs(drift.mean() - r[0]) < 4 * drift.std(ddof=1) / 4  # 4 standard errors over 16 seeds


def test_large_steps_leave_the_symmetric_pattern_and_are_flagged():
    run = par.simulate_neuron_sgd(7, 2, 0.5, 40, 64, 4, get_backend("numpy"), seed=0)
    assert not run.symmetric_pattern.any()


def test_neuron_sgd_same_seed_same_numbers():
    be = get_backend("numpy")
    a = par.simulate_neuron_sgd(7, 2, 0.01, 10, 8, 2, be, seed=1)
    b = par.simulate_neuron_sgd(7, 2, 0.01, 10, 8, 2, be, seed=1)
    np.testing.assert_array_equal(a.relevant, b.relevant)


# ------------------------------------------------------------------------------------------
# the MLP trained by online SGD (steps versus n; parity.iteration_scaling registers the ordering of exponents)


def test_mlp_learns_2_sparse_parity_over_seeds_and_mass_moves_to_the_relevant_coordinates(backend):
    out = par.train_mlp_parity(8, 2, 32, 0.05, 32, 8, backend, seed=0, max_steps=500, trace=True)
    assert (out["steps"] > 0).sum() >= 7  # a statement over 8 seeds, not one trajectory
    assert out["relevant_mass"][-1].mean() > 2 * 2 / 8  # the relevant share starts at k/n = 1/4


def test_train_mlp_bad_input():
    with pytest.raises(ValueError, match="k=5"):
        par.train_mlp_parity(4, 5, 8, 0.1, 8, 2, get_backend("numpy"), 0)
    with pytest.raises(ValueError, match="lr=0.0"):
        par.train_mlp_parity(6, 2, 8, 0.0, 8, 2, get_backend("numpy"), 0)


def test_parity_batched_benchmark_runs_quick():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_parity.py"
    spec = importlib.util.spec_from_file_location("bench_parity", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    res = mod.BENCHMARKS["parity_batched"](quick=True)
    assert res["ratio"] > 1 and res["target"] == ">= 10" and {"sizes", "backend"} <= set(res)


def test_order_classes_is_a_two_sided_z_test():
    assert par.order_classes(0.5, 0.1, 2.5) == [1, -1]
    assert par.order_classes(0.2, 0.1, 2.5) == [0, -1]  # 2 standard errors from 0: indistinguishable
    assert par.order_classes(1.1, 0.1, 2.5) == [1, 0]
    assert par.order_classes(-0.5, 0.1, 2.5) == [-1, -1]


def test_fit_with_seed_error_recovers_a_power_law():
    ns = (6, 8, 10, 12)
    rng = np.random.default_rng(0)
    steps = np.array([[3.0 * n ** 1.5] * 8 for n in ns]) * (1 + 0.01 * rng.standard_normal((4, 8)))
    a, se = par._fit_with_seed_error(ns, steps)
    assert abs(a - 1.5) < 4 * se and se < 0.05


@pytest.mark.slow
def test_steps_versus_n_exponents_over_seeds():
    be = get_backend("numpy")
    k2 = par.steps_versus_n(2, (8, 12, 16, 24, 32), be, seed=0)
    k3 = par.steps_versus_n(3, (6, 8, 10, 12, 16), be, seed=0)
    assert k2["failed"] == 0 and k3["failed"] == 0
    assert k3["slope"] > k2["slope"]  # the exponent grows with k (both well below k - 1 at k = 3)
