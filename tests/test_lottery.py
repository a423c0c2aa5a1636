"""solvable.models.lottery: IMP logic on constructed inputs, limits, bad input, backends, seeds."""

from __future__ import annotations

import numpy as np
import pytest

from solvable.backend import get_backend
from solvable.claims import get
from solvable.models import lottery


def test_bad_input_names_parameter_value_and_range():
    be = get_backend("numpy")
    X, y, _ = lottery.sparse_teacher_data(be, 0, 4, 10, 5, 2, 0.1, 1.0)
    with pytest.raises(ValueError, match=r"sparsity=1 is out of range: sparsity must be a finite number in \[0, 1\)"):
        lottery.imp_linear(be, X, y, 1)
    with pytest.raises(ValueError, match=r"sparsity=-0.1 is out of range"):
        lottery.imp_linear(be, X, y, -0.1)
    with pytest.raises(ValueError, match=r"rewind_step=11 is out of range: rewind_step must be an integer in \[0, 10\]"):
        lottery.imp_linear(be, X, y, 0.5, rewind_step=11, train_steps=10)
    with pytest.raises(ValueError, match="n=4"):
        lottery.linear_ticket_risk(1.0, 3, 4)
    with pytest.raises(ValueError, match="n=9 is out of range"):
        get("lottery.linear_ticket").params(n=9, d=8)


def test_prune_schedule_is_strictly_decreasing_and_hits_the_target():
    for d, keep, rate in [(8, 3, 0.3), (100, 1, 0.2), (5, 5, 0.5), (10, 9, 0.01)]:
        c = lottery.prune_schedule(d, keep, rate)
        assert c[0] == d and c[-1] == keep and all(a > b for a, b in zip(c, c[1:]))


def test_noiseless_imp_finds_the_support_and_the_teacher_exactly():
    be = get_backend("numpy")
    X, y, w = lottery.sparse_teacher_data(be, 1, 50, 14, 8, 3, 0.0, 1.0)
    what, mask, lost = lottery.imp_linear(be, X, y, 1 - 3 / 8, 0.3, support=(w != 0).astype(float))
    np.testing.assert_allclose(what, w, atol=1e-10)
    np.testing.assert_array_equal(mask, (w != 0).astype(float))
    np.testing.assert_allclose(lost, 1 - 2 / 8)       # one more pruned weight is a teacher weight


def test_masked_fit_is_least_squares_on_the_kept_columns():
    be = get_backend("numpy")
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((3, 10, 6)), rng.standard_normal((3, 10))
    mask = np.array([[1, 0, 1, 1, 0, 1], [1, 1, 1, 1, 1, 1], [0, 0, 1, 0, 0, 0]], float)
    w = lottery.masked_lstsq(be, X, y, mask)
    for b in range(3):
        keep = mask[b] > 0
        ref = np.linalg.lstsq(X[b][:, keep], y[b], rcond=None)[0]
        np.testing.assert_allclose(w[b][keep], ref, rtol=1e-10)
        assert np.all(w[b][~keep] == 0)


def test_rewinding_does_not_move_the_refit():
    be = get_backend("numpy")
    X, y, _ = lottery.sparse_teacher_data(be, 2, 8, 12, 6, 2, 0.3, 1.0)
    a = lottery.imp_linear(be, X, y, 0.5, rewind_step=0, train_steps=10)[0]
    b = lottery.imp_linear(be, X, y, 0.5, rewind_step=10, train_steps=10)[0]
    np.testing.assert_array_equal(a, b)


def test_zero_sparsity_is_the_dense_fit():
    be = get_backend("numpy")
    X, y, _ = lottery.sparse_teacher_data(be, 3, 5, 12, 6, 2, 0.3, 1.0)
    w, mask, _ = lottery.imp_linear(be, X, y, 0.0)
    assert np.all(mask == 1)
    np.testing.assert_allclose(w, lottery.masked_lstsq(be, X, y, np.ones((5, 6))))


def test_numpy_and_torch_agree_and_same_seed_same_numbers():
    c = get("lottery.linear_ticket")
    p = c.params(draws=2000)
    a = c.measured(p, get_backend("numpy"), 5)
    b = c.measured(p, get_backend("numpy"), 5)
    assert a.value == b.value
    t = c.measured(p, get_backend("torch"), 5)
    # different generators: statistically equal means
    assert abs(a.value - t.value) < 4 * np.hypot(a.stderr, t.stderr)


def test_support_is_lost_right_after_the_target_on_strong_signal():
    c = get("lottery.linear_ticket")
    m = c.measured(c.params(draws=2000, beta=3.0, sigma=0.1), get_backend("numpy"), 0)
    assert m.info["found_fraction"] == 1.0
    assert m.info["support_lost_sparsity_min"] == pytest.approx(1 - 2 / 8)
