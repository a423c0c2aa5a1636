"""solvable.models.rules, Section B: the noise-scale critical batch and Adam's square-root rule on networks.

Logic on constructed inputs with known answers (the bend fit on synthetic eta(B), the noise scale of a
model whose per-example gradients are known, the problems' construction); stochastic statements over
seeds and with margins; the measurements of both claims at larger sizes under ``slow``.
"""

import math

import numpy as np
import pytest
import torch
from torch import nn

from solvable.models import rules as MR
from solvable.tools import rules as R


@pytest.mark.parametrize("eta_max, B_crit, gamma", [(1.0, 5.0, 1.0), (0.3, 12.0, 0.5), (2.0, 2.5, 0.8)])
def test_fit_bend_recovers_a_known_bend(eta_max, B_crit, gamma):
    Bs = list(MR.NS_GRID)
    em, bc, g = MR.fit_bend(Bs, MR.bend_form(Bs, eta_max, B_crit, gamma))
    assert em == pytest.approx(eta_max, rel=1e-6)
    assert bc == pytest.approx(B_crit, rel=1e-6)
    assert g == pytest.approx(gamma, rel=1e-6)


def test_fit_bend_with_noise_is_within_its_spread():
    # 5% log-normal noise on eta(B): the fitted B_c over 200 draws is centred on the truth (mean within
    # 4 standard errors of the mean), and a pure linear rule has no bend inside the grid
    g = np.random.default_rng(0)
    Bs = list(MR.NS_GRID)
    clean = MR.bend_form(Bs, 1.0, 6.0, 1.0)
    lb = np.log([MR.fit_bend(Bs, clean * np.exp(0.05 * g.standard_normal(len(Bs))))[1] for _ in range(200)])
    assert abs(lb.mean() - math.log(6.0)) < 4 * lb.std(ddof=1) / math.sqrt(lb.size) + 0.01
    assert MR.fit_bend(Bs, 0.01 * np.asarray(Bs, dtype=float))[1] > 10 * Bs[-1]


def test_fit_bend_rejects_bad_input():
    with pytest.raises(ValueError, match="at least 4 points"):
        MR.fit_bend([1, 2, 4], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="positive and finite"):
        MR.fit_bend([1, 2, 4, 8], [1.0, 2.0, float("nan"), 3.0])
    with pytest.raises(ValueError, match="positive and finite"):
        MR.fit_bend([1, 2, 4, 8], [1.0, -2.0, 1.0, 3.0])


def test_noise_scale_of_a_linear_model_in_closed_form():
    # f = w^T x, loss (f - y)^2 / 2: per-example gradients r_i x_i, B_noise = (mean r^2 |x|^2 - |G|^2) / |G|^2
    g = np.random.default_rng(3)
    X = g.standard_normal((20, 3))
    y = g.standard_normal(20)
    w = g.standard_normal(3)
    net = nn.Linear(3, 1, bias=False).double()
    with torch.no_grad():
        net.weight.copy_(torch.tensor(w)[None])
    got = R.noise_scale(net, lambda o, t: ((o - t) ** 2).mean() / 2, (torch.tensor(X), torch.tensor(y)[:, None]))
    r = X @ w - y
    G = X.T @ r / 20
    assert got["B_noise"] == pytest.approx((np.mean(r**2 * (X**2).sum(1)) - G @ G) / (G @ G), rel=1e-10)


def test_problems_are_reproducible_and_well_formed():
    for task in MR.TASKS:
        a = MR.noise_problem(task, seed=5)
        b = MR.noise_problem(task, seed=5)
        assert torch.equal(a[2][0], b[2][0]) and torch.equal(a[2][1], b[2][1])
        assert all(torch.equal(p, q) for p, q in zip(a[0].parameters(), b[0].parameters()))
    _, loss, (X, Y) = MR.noise_problem("classification", N=30, K=4, seed=1)
    assert isinstance(loss, nn.CrossEntropyLoss) and Y.dtype == torch.int64 and int(Y.max()) < 4
    # the global torch seed is left alone
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    MR.noise_problem("regression", seed=9)
    assert torch.equal(torch.rand(1), before)


def test_adam_problem_starts_at_the_teacher_with_label_noise():
    net, loss, (X, Y) = MR.adam_problem(N=2000, sigma=0.7, seed=4)
    with torch.no_grad():
        r = Y - net(X)
    assert float(r.std()) == pytest.approx(0.7, rel=0.1)
    ns = R.noise_scale(net, loss, (X, Y))
    assert ns["B_noise"] > 100      # noise-dominated start: B_noise ~ N


def test_simple_noise_scale_is_positive_and_order_of_magnitude():
    for task in MR.TASKS:
        b = MR.simple_noise_scale(task, seed=0)
        assert 0.5 < b < 64


def test_square_root_exponents_and_mutant_distances():
    below, above = MR.adam_sqrt_exponents()
    assert (below, above) == (0.5, 0.0)


def test_log_ratio_errors():
    e = MR._log_ratio_errors([2.0, 4.0], [4.0, 1.0])
    np.testing.assert_allclose(e, [math.log(2), math.log(4)])
    assert np.all(np.isinf(MR._log_ratio_errors([math.inf, math.inf], [3.0, 5.0])))
    with pytest.raises(ValueError, match="shapes must match"):
        MR._log_ratio_errors([1.0], [1.0, 2.0])


@pytest.mark.parametrize("kw, match", [
    (dict(task="ranking"), "task"),
    (dict(task="regression", N=1), "N=1 is out of range"),
    (dict(task="regression", m=0), "m=0 is out of range"),
    (dict(task="classification", K=1), "K=1 is out of range"),
])
def test_noise_problem_bad_input(kw, match):
    with pytest.raises(ValueError, match=match):
        MR.noise_problem(**kw)


def test_params_bad_input():
    with pytest.raises(ValueError, match="seeds"):
        MR.NoiseScaleParams(seeds=2)
    with pytest.raises(ValueError, match="sigma"):
        MR.AdamNetworkParams(sigma=0.0)
    with pytest.raises(ValueError, match="sigma"):
        MR.adam_problem(sigma=-1.0)


def test_sgd_progress_threshold_bends_at_the_noise_scale_of_a_linear_model():
    # a linear model is the quadratic of the one-step derivation: with T = 2 steps the E L_T <= L_0 rate
    # bends near tr(H Sigma)/G^T H G; with isotropic inputs (H ~ I) that is the simple noise scale.
    # Stated over seeds of batch order with a factor-2 margin, not one run.
    g = np.random.default_rng(1)
    N, d = 64, 3
    X = torch.tensor(g.standard_normal((N, d)))
    y = torch.tensor(g.standard_normal(N))[:, None] * 0.7 + X @ torch.ones(d, 1, dtype=torch.float64)
    net = nn.Linear(d, 1, bias=False).double()
    with torch.no_grad():
        net.weight.zero_()
    loss = lambda o, t: ((o - t) ** 2).mean() / 2        # noqa: E731
    bn = R.noise_scale(net, loss, (X, y))["B_noise"]
    Bs = list(MR.NS_GRID)
    r = R.stable_lr(net, loss, (X, y), Bs, steps=2, c=1.0, average="mean_square", seeds=16, grid=6, rounds=2,
                    sampling="with", lr_range=(1e-3, 10.0))
    bc = MR.fit_bend(Bs, r.lr)[1]
    assert 0.5 < bc / bn < 2.0


@pytest.mark.slow
def test_noise_scale_claim_over_data_seeds():
    c = MR.NoiseScaleParams
    from solvable.claims import get

    claim = get("rules.noise_scale_critical_batch")
    ratios = []
    for s in range(6):
        p = c(data_seed=100 + s, seeds=24)
        v = claim.check(p, backend="torch", seed=s)
        assert v.passed, v.message
        ratios += list(np.asarray(v.measured) / np.asarray(v.predicted))
    assert 1 / MR.NS_FACTOR < min(ratios) and max(ratios) < MR.NS_FACTOR


@pytest.mark.slow
def test_adam_exponents_over_data_seeds():
    from solvable.claims import get

    claim = get("rules.adam_sqrt_network")
    below = []
    for s in range(4):
        v = claim.check(MR.AdamNetworkParams(data_seed=200 + s, seeds=24), backend="torch", seed=s, mutants=True)
        assert v.passed, v.message
        assert all(r.rejected for r in v.mutants.values())
        below.append(v.measured[0])
    assert 0.4 < float(np.mean(below)) < 0.75
