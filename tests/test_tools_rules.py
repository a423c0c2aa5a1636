"""solvable.tools.rules: batched stable-learning-rate search and its predictions on torch models.

Logic is tested on constructed inputs whose thresholds are known exactly (a linear model: GD on a
quadratic); stochastic statements are made over seeds, never on one seed's trajectory.
"""

import math

import numpy as np
import pytest
import torch
from torch import nn

from solvable.backend import cuda_available
from solvable.models import scaling
from solvable.tools import rules as R


def _linear(d=3, scale=(1.0, 0.5, 0.25)):
    net = nn.Linear(d, 1, bias=False).double()
    with torch.no_grad():
        net.weight.fill_(1.0)
    X = torch.diag(torch.tensor(scale, dtype=torch.float64).sqrt()) * math.sqrt(d)
    return net, X, torch.zeros(d, 1, dtype=torch.float64)


class Two(nn.Module):
    def __init__(self, d, m):
        super().__init__()
        self.W = nn.Parameter(torch.randn(m, d))
        self.a = nn.Parameter(torch.randn(m))

    def forward(self, x):
        return (torch.tanh(x @ self.W.T / self.W.shape[1] ** 0.5) @ self.a / self.a.shape[0] ** 0.5)[:, None]


def test_full_batch_gd_threshold_of_a_quadratic_is_2_over_lambda():
    # loss = mean_i (x_i^T w)^2 with X^T X / N = diag(scale): Hessian 2 diag(scale), lambda_max = 2
    net, X, Y = _linear()
    r = R.stable_lr(net, nn.MSELoss(), (X, Y), [3], lr_range=(0.1, 10.0), c=1.0, steps=40, seeds=2, rounds=4,
                    criterion="final")
    assert r.lr[0] == pytest.approx(1.0, rel=2e-2)
    assert r.out_of_range == [""]
    assert R.full_batch_threshold(net, nn.MSELoss(), (X, Y)) == pytest.approx(1.0, rel=1e-6)
    assert R.full_batch_threshold(net, nn.MSELoss(), (X, Y), "momentum", momentum=0.5) == pytest.approx(1.5)


def test_heavy_ball_threshold_measured():
    net, X, Y = _linear()
    r = R.stable_lr(net, nn.MSELoss(), (X, Y), [3], "momentum", momentum=0.5, lr_range=(0.1, 10.0), c=1.0,
                    steps=200, criterion="late", seeds=2, rounds=4)
    assert r.lr[0] == pytest.approx(1.5, rel=3e-2)


def test_out_of_range_flags():
    net, X, Y = _linear()
    lo = R.stable_lr(net, nn.MSELoss(), (X, Y), [3], lr_range=(5.0, 10.0), c=1.0, steps=20, seeds=1, rounds=1)
    hi = R.stable_lr(net, nn.MSELoss(), (X, Y), [3], lr_range=(0.01, 0.5), c=1.0, steps=20, seeds=1, rounds=1)
    assert lo.out_of_range == ["below"] and hi.out_of_range == ["above"]


def test_linearized_threshold_of_a_linear_model_is_the_least_squares_threshold():
    # for f = x^T w the NTK is X X^T and the linearized model is the model itself: the kernel
    # reduction must reproduce scaling.ms_threshold on the features (MSELoss: curvature s = 2)
    g = np.random.default_rng(0)
    N, d = 12, 4
    X = g.standard_normal((N, d)) * np.array([2.0, 1.0, 0.7, 0.4])
    net = nn.Linear(d, 1, bias=False).double()
    data = (torch.tensor(X), torch.zeros(N, 1, dtype=torch.float64))
    for sampling in ("with", "without"):
        got = R.linearized_threshold(net, nn.MSELoss(), data, [1, 3, 12], sampling)
        want = [scaling.ms_threshold(np.sqrt(2.0) * X, b, sampling) for b in (1, 3, 12)]
        np.testing.assert_allclose(got, want, rtol=1e-8)


def test_vmapped_copies_equal_separate_runs():
    torch.manual_seed(0)
    net = Two(3, 16).double()
    X = torch.randn(10, 3, dtype=torch.float64)
    Y = torch.randn(10, 1, dtype=torch.float64)
    lrs, seeds = np.array([0.1, 0.5, 0.3]), np.array([4, 4, 7])
    for opt in R.OPTIMIZERS:
        both = R.run_copies(net, nn.MSELoss(), (X, Y), lrs, seeds, 3, optimizer=opt, steps=6)["loss"]
        one = np.concatenate([R.run_copies(net, nn.MSELoss(), (X, Y), lrs[k:k + 1], seeds[k:k + 1], 3,
                                           optimizer=opt, steps=6)["loss"] for k in range(3)])
        np.testing.assert_allclose(both, one, rtol=1e-10)
        chunked = R.run_copies(net, nn.MSELoss(), (X, Y), lrs, seeds, 3, optimizer=opt, steps=6, chunk=2)["loss"]
        np.testing.assert_allclose(both, chunked, rtol=1e-10)


def test_run_copies_matches_torch_optimizers():
    torch.manual_seed(1)
    net = Two(3, 8).double()
    X = torch.randn(6, 3, dtype=torch.float64)
    Y = torch.randn(6, 1, dtype=torch.float64)
    for opt, make in (("sgd", lambda p: torch.optim.SGD(p, lr=0.2)),
                      ("momentum", lambda p: torch.optim.SGD(p, lr=0.2, momentum=0.9)),
                      ("adam", lambda p: torch.optim.Adam(p, lr=0.01))):
        got = R.run_copies(net, nn.MSELoss(), (X, Y), [0.2 if opt != "adam" else 0.01], [0], 6, optimizer=opt,
                           steps=5)["loss"][0, -1]
        ref = Two(3, 8).double()
        ref.load_state_dict(net.state_dict())
        o = make(ref.parameters())
        for _ in range(5):
            o.zero_grad()
            nn.MSELoss()(ref(X), Y).backward()
            o.step()
        assert got == pytest.approx(float(nn.MSELoss()(ref(X), Y)), rel=1e-10)


def test_divergence_is_inf_not_nan():
    net, X, Y = _linear()
    L = R.run_copies(net, nn.MSELoss(), (X, Y), [1e3], [0], 3, steps=400)["loss"]
    assert np.isinf(L[0, -1]) and not np.isnan(L).any()


def test_same_seed_same_numbers_and_seed_spread():
    torch.manual_seed(0)
    net = Two(3, 32).double()
    X = torch.randn(16, 3, dtype=torch.float64)
    Y = torch.randn(16, 1, dtype=torch.float64)
    kw = dict(lr_range=(0.05, 20.0), steps=30, seeds=3, rounds=2, grid=5)
    a = R.stable_lr(net, nn.MSELoss(), (X, Y), [2, 16], **kw)
    b = R.stable_lr(net, nn.MSELoss(), (X, Y), [2, 16], **kw)
    np.testing.assert_array_equal(a.lr, b.lr)
    assert a.per_seed.shape == (2, 3) and np.all(a.stderr > 0)
    assert "L_T <= 2 L_0" in a.definition


def test_noise_scale_of_constructed_gradients():
    # loss = mean_i (w - z_i)^2 / 2 with scalar w: g_i = w - z_i, G = w - mean z, tr Sigma = var z
    z = torch.tensor([[0.0], [1.0], [2.0], [5.0]], dtype=torch.float64)
    net = nn.Linear(1, 1, bias=False).double()
    with torch.no_grad():
        net.weight.fill_(3.0)
    ns = R.noise_scale(net, lambda o, y: ((o - y) ** 2).mean() / 2, (torch.ones(4, 1, dtype=torch.float64), z))
    assert ns["B_noise"] == pytest.approx(np.var([0, 1, 2, 5]) / (3.0 - 2.0) ** 2)
    np.testing.assert_allclose(R.mccandlish_rule([1, 1e9], 2.0, 3.0), [0.5, 2.0], rtol=1e-8)


def test_mbb_critical_batch():
    K = np.diag([4.0, 1.0, 1.0, 1.0])
    # beta = 4, lambda_1 = 4 / 4 = 1: m* = 1 + 4
    assert R.mbb_critical_batch(K) == pytest.approx(5.0)


def test_rule_report_fits_exponents():
    res = R.StableLR([1, 2, 4, 8, 16], np.array([1, 2, 4, 5, 5.0]), np.full(5, 0.1), np.zeros(5),
                     np.zeros((5, 2)), np.zeros(5), [""] * 5, "test")
    rep = R.rule_report(res, {"linear": [1, 2, 4, 8, 16]}, critical_batch=4)
    assert rep["slope_below"][0] == pytest.approx(1.0)
    assert "fitted exponent" in rep["table"] and rep["figure"] is not None


@pytest.mark.parametrize("case, match", [
    ("empty", "batch_sizes is empty"),
    ("too_big", "batch size=9 is out of range"),
    ("nonscalar", "must return a scalar"),
    ("frozen", "no trainable parameters"),
    ("nan", "NaN"),
])
def test_bad_input(case, match):
    net, X, Y = _linear()
    loss, Bs = nn.MSELoss(), [2]
    if case == "empty":
        Bs = []
    elif case == "too_big":
        Bs = [9]
    elif case == "nonscalar":
        loss = nn.MSELoss(reduction="none")
    elif case == "frozen":
        net.weight.requires_grad_(False)
    else:
        X = X.clone()
        X[0, 0] = float("nan")
    with pytest.raises(ValueError, match=match):
        R.stable_lr(net, loss, (X, Y), Bs, lr_range=(0.1, 1.0))


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="CUDA not available")
def test_vmapped_runs_on_cuda_match_cpu():
    torch.manual_seed(0)
    net = Two(3, 16).double()
    X = torch.randn(10, 3, dtype=torch.float64)
    Y = torch.randn(10, 1, dtype=torch.float64)
    cpu = R.run_copies(net, nn.MSELoss(), (X, Y), [0.1, 0.5], [0, 1], 3, steps=10)["loss"]
    gpu = R.run_copies(net.cuda(), nn.MSELoss(), (X, Y), [0.1, 0.5], [0, 1], 3, steps=10)["loss"]
    np.testing.assert_allclose(cpu, gpu, rtol=1e-8)
    r = R.stable_lr(net, nn.MSELoss(), (X, Y), [2, 10], lr_range=(0.05, 20.0), steps=20, seeds=2, rounds=2)
    assert np.all(np.isfinite(r.lr))


# --------------------------------------------------------------------------------------------
# The worked example: a wide two-layer net near initialisation and its catapult window


def test_problem_is_near_initialisation_and_reproducible():
    net, (X, Y) = R.problem(64, delta=0.01, seed=3)
    net2, (X2, Y2) = R.problem(64, delta=0.01, seed=3)
    assert torch.equal(X, X2) and torch.equal(Y, Y2)
    with torch.no_grad():
        r = net(X) - Y
    assert float(r.pow(2).mean().sqrt()) == pytest.approx(0.01, rel=0.5)


def test_kernel_bounds_bracket_the_linearized_threshold():
    net, data = R.problem(128, seed=1)
    K = R.ntk_gram(net, data[0])
    lo, hi = R.kernel_bounds(K)
    eta = R.linearized_threshold(net, nn.MSELoss(), data, [1, 8, 32], "without")
    assert lo <= eta[0] <= eta[1] <= eta[2] <= hi * (1 + 1e-9)
    assert eta[2] == pytest.approx(hi, rel=1e-8)       # B = N without replacement: full-batch GD


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_catapult_window_grows_then_converges(seed):
    # full-batch GD at 3/lambda_max (inside (2, 4)/lambda_max) from an O(1) residual: the loss first
    # grows well above L_0, then falls below it (Lewkowycz et al. 2020); at 5/lambda_max it diverges
    L = R.catapult_run(256, 1.5, steps=150, seed=seed)
    assert L.max() > 3 * L[0] and L[-1] < L[0]
    L = R.catapult_run(256, 2.5, steps=150, seed=seed)
    assert not L[-1] < L[0]
