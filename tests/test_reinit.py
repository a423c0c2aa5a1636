"""solvable.models.reinit: the unbalanced flow's limit on constructed inputs, limits, bad input, backends, seeds."""

from __future__ import annotations

import numpy as np
import pytest

from solvable.backend import get_backend
from solvable.claims import get
from solvable.models import dln, reinit


def test_zero_tilt_is_the_balanced_dln_solution():
    X, y, _ = dln.make_data(6, 14, 2, 1)
    np.testing.assert_allclose(reinit.tilted_bias_solution(X, y, 0.3 ** 2, 0.0),
                               dln.implicit_bias_solution(X, y, 0.3), rtol=1e-8, atol=1e-10)


def test_reinit_to_the_phase1_value_changes_nothing():
    """Re-initializing v to the value it already has (v1 = alpha^2/u1) is no re-initialization: the
    tilted problem's start beta0 = u1^2 - v1^2 = beta1 already interpolates."""
    X, y, _ = dln.make_data(6, 14, 2, 2)
    beta1 = dln.implicit_bias_solution(X, y, 0.4)
    u1, v1 = reinit.phase1_factors(beta1, 0.4)
    np.testing.assert_allclose(reinit.tilted_bias_solution(X, y, u1 * v1, np.log(u1 / v1)), beta1,
                               rtol=1e-7, atol=1e-9)


def test_phase1_factors_are_the_flows_invariants():
    beta1 = np.array([-2.0, 0.0, 0.5, 3.0])
    u, v = reinit.phase1_factors(beta1, 0.3)
    np.testing.assert_allclose(u * v, 0.09, rtol=1e-14)
    np.testing.assert_allclose(u * u - v * v, beta1, rtol=1e-12, atol=1e-15)


def test_gd_from_an_unbalanced_start_reaches_the_tilted_solution():
    be = get_backend("numpy")
    X, y, _ = dln.make_data(5, 12, 1, 4, batch=2)
    rng = np.random.default_rng(1)
    u0, v0 = rng.uniform(0.2, 1.0, (2, 12)), rng.uniform(0.2, 1.0, (2, 12))
    u, v, loss, _, div = reinit.gd_from(be, X, y, u0, v0, 0.002)
    assert not div
    for b in range(2):
        pred = reinit.tilted_bias_solution(X[b], y[b], u0[b] * v0[b], np.log(u0[b] / v0[b]))
        beta = u[b] ** 2 - v[b] ** 2
        assert np.linalg.norm(beta - pred) / np.linalg.norm(pred) < 0.02


def test_bad_input_names_parameter_value_and_range():
    X, y, _ = dln.make_data(6, 14, 2, 1)
    with pytest.raises(ValueError, match=r"alpha_new=-1 is out of range"):
        reinit.reinit_prediction(X, y, 0.3, -1)
    with pytest.raises(ValueError, match=r"alpha=0 is out of range"):
        reinit.phase1_factors([1.0], 0)
    with pytest.raises(ValueError, match=r"n=16 is out of range: n must be < d=16"):
        get("reinit.dln_shape").params(n=16, d=16)


def test_a_hostile_problem_returns_finite_or_flags_divergence():
    be = get_backend("numpy")
    X, y, _ = dln.make_data(6, 14, 2, 1, batch=1)
    u, v, loss, steps, div = reinit.gd_from(be, X * 1e3, y * 1e9, np.ones((1, 14)), np.ones((1, 14)), 50.0,
                                            max_steps=200)
    assert div or np.all(np.isfinite(loss))


def test_numpy_and_torch_agree_and_same_seed_same_numbers():
    c = get("reinit.dln_shape")
    p = c.params(batch=1, c=0.01)
    a = c.measured(p, get_backend("numpy"), 0)
    b = c.measured(p, get_backend("numpy"), 0)
    np.testing.assert_array_equal(a.value, b.value)
    t = c.measured(p, get_backend("torch"), 0)
    np.testing.assert_allclose(a.value, t.value, rtol=1e-8, atol=1e-10)
