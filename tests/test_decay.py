"""solvable.models.decay: conventions, limits, bad input, backends, seeds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from solvable.backend import get_backend
from solvable.models import decay


def test_negative_weight_decay_is_refused_with_name_value_range():
    with pytest.raises(ValueError, match=r"wd=-0.1 is out of range: wd must be a finite number in \[0, inf\)"):
        decay.l2_coefficient(-0.1, 0.1)
    with pytest.raises(ValueError, match=r"wd_paper=-1 is out of range"):
        decay.wd_paper_to_torch(-1, 0.1)
    with pytest.raises(ValueError, match=r"l2=-0.5 is out of range"):
        decay.adam_l2_fixed_point([1.0], -0.5)
    with pytest.raises(ValueError, match=r"eta=0 is out of range: eta must be a finite number in \(0, inf\)"):
        decay.l2_coefficient(0.1, 0)
    with pytest.raises(ValueError, match="wd"):
        decay.momentum_difference([1.0], 0.1, -0.01, 0.9, 5)
    with pytest.raises(ValueError, match="kind='linear' is not allowed"):
        decay.schedule("linear", 10)


def test_conventions_map_both_ways():
    assert decay.wd_torch_to_paper(decay.wd_paper_to_torch(0.03, 0.2), 0.2) == pytest.approx(0.03, rel=1e-15)


def test_torch_adamw_matches_the_papers_update_under_the_mapping():
    """torch.optim.AdamW(lr = eta s_t, weight_decay = lambda_paper / eta) is, step by step, the paper's
    theta+ = theta - s_t (eta u + lambda_paper theta)."""
    g = torch.Generator().manual_seed(0)
    ts = torch.randn(5, generator=g, dtype=torch.float64)
    eta, lam_paper, steps = 0.05, 0.02, 30
    s = decay.schedule("cosine", steps)
    w = torch.nn.Parameter(torch.randn(5, generator=g, dtype=torch.float64))
    th = w.detach().clone()
    opt = torch.optim.AdamW([w], lr=eta, weight_decay=decay.wd_paper_to_torch(lam_paper, eta), eps=1e-8)
    m = torch.zeros_like(th)
    v = torch.zeros_like(th)
    for t in range(1, steps + 1):
        opt.param_groups[0]["lr"] = eta * s[t - 1]
        opt.zero_grad()
        (0.5 * ((w - ts) ** 2).sum()).backward()
        opt.step()
        grad = th - ts
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad ** 2
        u = (m / (1 - 0.9 ** t)) / ((v / (1 - 0.999 ** t)).sqrt() + 1e-8)
        th = th - s[t - 1] * (eta * u + lam_paper * th)
    np.testing.assert_allclose(w.detach().numpy(), th.numpy(), rtol=1e-12, atol=1e-14)


def test_sgd_l2_equals_sgdw_at_the_mapped_coefficient_for_every_schedule():
    for kind in decay.SCHEDULES:
        a = decay.sgd_l2_run(3, 0.2, decay.l2_coefficient(0.05, 0.2), 10, kind)
        b, _ = decay.sgdw_run(3, 0.2, 0.05, 10, kind)
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-13)
        c = decay.sgd_l2_run(3, 0.2, 0.05, 10, kind)  # lambda' = lambda: not the same run
        assert np.max(np.abs(c - b)) > 1e-6


def test_momentum_difference_limits():
    h = np.array([1.0, 2.0, 4.0])
    assert np.all(decay.momentum_difference(h, 0.1, 0.05, 0.9, 0) == 0)          # t = 0
    assert np.all(decay.momentum_difference(h, 0.1, 0.05, 0.9, 1) == 0)          # one step: same trace
    assert np.allclose(decay.momentum_difference(h, 0.1, 0.05, 0.0, 25), 0, atol=1e-15)  # mu = 0: SGD
    assert np.allclose(decay.momentum_difference(h, 0.1, 0.0, 0.9, 25), 0, atol=1e-15)  # no decay
    assert np.all(np.abs(decay.momentum_difference(h, 0.1, 0.05, 0.9, 3)) > 0)


def test_no_l2_coefficient_reproduces_decoupled_heavy_ball():
    h = np.array([1.0, 3.0])
    _, dec, _ = decay.momentum_runs(h, 0.1, 0.0, 0.05, 0.9, 30)
    gaps = [np.max(np.abs(decay.momentum_runs(h, 0.1, l2, 0.05, 0.9, 30)[0] - dec))
            for l2 in np.linspace(0, 1.5, 16)]
    assert min(gaps) > 1e-4


def test_adam_fixed_point_closed_forms():
    ts = np.array([-3.0, -0.5, 0.2, 2.0])
    np.testing.assert_allclose(decay.adamw_fixed_point(ts, 1.0), [-1.0, -0.5, 0.2, 1.0])
    np.testing.assert_allclose(decay.adam_l2_fixed_point(ts, 1.0), ts / 2)
    np.testing.assert_allclose(decay.adam_l2_fixed_point(ts, 0.0), ts)


@pytest.mark.parametrize("convention,box", [("torch", 1 / 0.8), ("paper", 0.1 / 0.8)])
def test_adamw_runs_end_in_the_box_of_their_convention(convention, box):
    be = get_backend("numpy")
    ts = np.array([3.0, -0.05, -2.0])
    _, w = decay.adam_runs(ts, 0.8, 0.8, 0.1, 1500, be, seed=0, convention=convention)
    np.testing.assert_allclose(np.max(np.abs(w), axis=1), box, rtol=1e-3)


def test_adam_runs_numpy_and_torch_agree_over_seeds():
    ts = decay.draw_theta_star(4, 1.0, 0)
    outs = []
    for name in ("numpy", "torch"):
        a, w = decay.adam_runs(ts, 1.0, 1.0, 0.1, 800, get_backend(name), seed=1)
        outs.append(np.concatenate([get_backend(name).to_numpy(a).mean(0), get_backend(name).to_numpy(w).mean(0)]))
    np.testing.assert_allclose(outs[0], outs[1], atol=1e-3)  # different starts, same limits


def test_same_seed_same_numbers():
    be = get_backend("numpy")
    a1, w1 = decay.adam_runs([1.0, -2.0], 0.5, 0.5, 0.1, 50, be, seed=7)
    a2, w2 = decay.adam_runs([1.0, -2.0], 0.5, 0.5, 0.1, 50, be, seed=7)
    assert np.array_equal(a1, a2) and np.array_equal(w1, w2)
