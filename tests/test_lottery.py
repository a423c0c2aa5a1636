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


# ---- MLP tickets: masking, rewinding, controls, batching, bad input

import torch  # noqa: E402

WIDTHS = (6, 8, 8, 2)
TASK = {"relevant": 2, "teacher_width": 3, "n_train": 32, "n_test": 64}


def _short(**kw):
    args = dict(widths=WIDTHS, sparsity=0.8, rate=0.5, rewind_step=0, train_steps=8, seeds=[3, 5], lr=0.01,
                task=TASK, return_state=True)
    args.update(kw)
    return lottery.imp_mlp(**args)


def test_pruned_weights_stay_exactly_zero_through_training_and_counts_follow_the_schedule():
    out = _short()
    st = out["state"]
    counts = lottery.imp_schedule(WIDTHS, 0.8, 0.5)
    assert out["counts"] == counts
    for (W, _), M, c in zip(st["final"], st["masks"], counts[-1]):
        assert torch.all(W[M == 0] == 0)                          # exactly zero after training
        assert torch.all(M.sum((1, 2)) == c)                      # the mask keeps the schedule's count
    assert out["sparsity"][-1] == pytest.approx(1 - sum(counts[-1]) / sum(lottery.layer_counts(WIDTHS)))


def test_train_mlp_keeps_masked_weights_zero_and_matches_autograd_free_gd_direction():
    seeds = [0, 1]
    X, y, _, _ = lottery.teacher_task(seeds, d=6, classes=2, **TASK)
    W = lottery.init_mlp(WIDTHS, seeds)
    M = lottery.random_masks(WIDTHS, [10, 20, 5], seeds)
    Wt, Wk, loss = lottery.train_mlp(W, M, X, y, 20, 0.05, save_step=0)
    for (a, _), (b, _), m in zip(Wt, Wk, M):
        assert torch.all(a[m == 0] == 0) and torch.all(b[m == 0] == 0)
    # save_step = 0 is the initial (masked) weights
    for (a, _), (b, _), m in zip(W, Wk, M):
        assert torch.equal(a * m, b)
    # training lowers the loss
    _, _, loss0 = lottery.train_mlp(W, M, X, y, 0, 0.05)
    assert torch.all(loss < loss0)


def test_rewinding_to_k0_gives_the_init_on_the_kept_weights():
    out = _short(rewind_step=0)
    st = out["state"]
    for (W0, _), (Wr, _), M in zip(st["init"], st["rewound"], st["masks"]):
        assert torch.equal(Wr[M > 0], W0[M > 0]) and torch.all(Wr[M == 0] == 0)


def test_rewinding_to_step_k_gives_the_dense_run_at_k():
    k = 3
    out = _short(rewind_step=k)
    seeds = [3, 5]
    X, y, _, _ = lottery.teacher_task(seeds, d=6, classes=2, **TASK)
    W0 = lottery.init_mlp(WIDTHS, seeds)
    ones = [torch.ones_like(W) for W, _ in W0]
    _, Wk, _ = lottery.train_mlp(W0, ones, X, y, 8, 0.01, save_step=k)
    for (a, _), (b, _), M in zip(out["state"]["rewound"], Wk, out["state"]["masks"]):
        assert torch.equal(a, b * M)


def test_random_mask_has_the_tickets_per_layer_counts():
    out = _short()
    st = out["state"]
    for Mt, Mr in zip(st["masks"], st["random_masks"]):
        np.testing.assert_array_equal(Mt.sum((1, 2)).numpy(), Mr.sum((1, 2)).numpy())
        assert not torch.equal(Mt, Mr)


def test_magnitude_prune_keeps_the_largest_kept_magnitudes():
    W = torch.tensor([[[0.1, -3.0, 2.0], [0.5, -0.2, 1.0]]], dtype=torch.float64)
    M = torch.tensor([[[1.0, 0.0, 1.0], [1.0, 1.0, 1.0]]], dtype=torch.float64)
    new = lottery.magnitude_prune([(W, torch.zeros(1, 2))], [M], [3])[0]
    np.testing.assert_array_equal(new.numpy(), [[[0, 0, 1], [1, 0, 1]]])   # -3 was already pruned


def test_batched_equals_looped_on_the_same_seeds():
    seeds = [11, 12, 13]
    batched = _short(seeds=seeds, controls=True, return_state=False)
    for i, s in enumerate(seeds):
        one = _short(seeds=[s], controls=True, return_state=False)
        for arm in lottery.MLP_ARMS:
            np.testing.assert_allclose(one["acc"][arm][:, 0], batched["acc"][arm][:, i], rtol=0, atol=0, equal_nan=True)
            np.testing.assert_allclose(one["train_loss"][arm][:, 0], batched["train_loss"][arm][:, i],
                                       rtol=1e-12, equal_nan=True)


def test_imp_schedule_rounds_and_sparsity():
    c = lottery.imp_schedule(lottery.TICKET_WIDTHS, None, 0.5, rounds=5)
    assert [r[0] for r in c] == [512, 256, 128, 64, 32, 16]
    c2 = lottery.imp_schedule(lottery.TICKET_WIDTHS, 0.96875, 0.5)
    assert c2 == c


def test_mlp_bad_input_names_parameter_value_and_range():
    with pytest.raises(ValueError, match=r"sparsity=1 is out of range: sparsity must be a finite number in \[0, 1\)"):
        _short(sparsity=1)
    with pytest.raises(ValueError, match=r"sparsity=-0.2 is out of range"):
        _short(sparsity=-0.2)
    with pytest.raises(ValueError, match=r"rewind_step=9 is out of range: rewind_step must be an integer in \[0, 8\]"):
        _short(rewind_step=9)
    with pytest.raises(ValueError, match=r"rate=1 is out of range: rate must be a finite number in \(0, 1\)"):
        _short(rate=1)
    with pytest.raises(ValueError, match=r"rate=0 is out of range"):
        _short(rate=0)
    with pytest.raises(ValueError, match=r"widths=\(6, 0, 2\) is out of range: widths\[1\]=0 is out of range"):
        _short(widths=(6, 0, 2))
    with pytest.raises(ValueError, match=r"widths=\(6, -3, 2\) is out of range"):
        lottery.init_mlp((6, -3, 2), [0])
    with pytest.raises(ValueError, match=r"seeds=\[\] is empty"):
        _short(seeds=[])
    with pytest.raises(ValueError, match=r"train_steps=0 is out of range"):
        _short(train_steps=0)


def test_interval_excess_is_distance_outside():
    np.testing.assert_allclose(lottery.interval_excess([-0.01, 1, -1, -0.02], [-0.03, 0.0]), [0.02, 0.02])
    np.testing.assert_allclose(lottery.interval_excess([-0.01, 1, -1, -0.02], [0.5, -0.5]), [0.0, 0.0])


@pytest.mark.slow
def test_tickets_match_dense_and_controls_fall_below_over_seeds():
    """The claim's window measured over 32 seeds with controls at every round: at r = 4, 5 the claim's
    relation holds; at r = 1 the re-initialised ticket is not below the ticket (Liu et al. regime)."""
    seeds = list(range(500, 532))
    out = lottery.imp_mlp(lottery.TICKET_WIDTHS, None, lottery.TICKET_RATE, 0, lottery.TICKET_STEPS, seeds,
                          lottery.TICKET_LR, controls=True, task=lottery.TICKET_TASK, rounds=5)
    acc = out["acc"]
    se = lambda d: d.std(ddof=1) / np.sqrt(d.size)
    for r in (4, 5):
        d = acc["ticket"][r] - out["dense"]
        assert d.mean() + 3 * se(d) >= -lottery.TICKET_MARGIN
        for arm in ("reinit", "random"):
            d = acc[arm][r] - acc["ticket"][r]
            assert d.mean() + 2 * se(d) < 0
    d = acc["reinit"][1] - acc["ticket"][1]
    assert d.mean() + 3 * se(d) > 0


def test_zero_sparsity_is_the_dense_run_and_controls_can_be_chosen_by_round():
    out = _short(sparsity=0.0, return_state=False)
    assert out["sparsity"].tolist() == [0.0] and np.all(np.isfinite(out["dense"]))
    out = _short(sparsity=None, rounds=3, controls=[2], return_state=False)
    assert np.isnan(out["acc"]["reinit"][[0, 1, 3]]).all() and np.isfinite(out["acc"]["reinit"][2]).all()
    with pytest.raises(ValueError, match=r"controls=\[5\] is out of range|controls=5 is out of range"):
        _short(sparsity=None, rounds=3, controls=[5])
