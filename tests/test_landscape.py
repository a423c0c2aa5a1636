"""Tests of solvable.models.landscape: BN gradient identity (closed form vs autograd, eps > 0 strict,
limits), filter-normalized plots under rescalings, bad input, seeds."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from solvable import get_backend
from solvable.claims import get
from solvable.models import landscape as L

TB = get_backend("torch")
EPS = np.finfo(np.float64).eps


def _batch(B, m, seed):
    g = torch.Generator().manual_seed(seed)
    y = 2.0 * torch.randn(B, m, generator=g, dtype=torch.float64) + 1.0
    gr = torch.randn(B, m, generator=g, dtype=torch.float64)
    gamma = 0.5 + torch.rand(B, generator=g, dtype=torch.float64)
    return y, gr, gamma


@settings(max_examples=15, deadline=None)
@given(m=st.integers(3, 64), seed=st.integers(0, 2**16))
def test_identity_closed_form_equals_autograd_per_batch(m, seed):
    y, g, gamma = _batch(4, m, seed)
    gy = L.bn_backward(y, g, gamma, torch.zeros(4, dtype=torch.float64), eps=1e-300)
    lhs = (gy * gy).sum(1).numpy()
    mu = y.mean(1, keepdim=True)
    sigma = ((y - mu) ** 2).mean(1).sqrt()
    yhat = (y - mu) / sigma[:, None]
    rhs = L.bn_gradient_norm_sq(g.numpy(), yhat.numpy(), gamma.numpy(), sigma.numpy())
    np.testing.assert_allclose(lhs, rhs, rtol=1e3 * m * EPS)


@pytest.mark.parametrize("eps", [1e-3, 1e-1, 1.0])
def test_with_eps_the_bound_is_strict_and_the_eps_form_is_exact(eps):
    y, g, gamma = _batch(8, 16, 0)
    gy = L.bn_backward(y, g, gamma, torch.zeros(8, dtype=torch.float64), eps=eps)
    lhs = (gy * gy).sum(1).numpy()
    mu = y.mean(1, keepdim=True)
    var = ((y - mu) ** 2).mean(1)
    sigma = (var + eps).sqrt()
    yhat = ((y - mu) / sigma[:, None]).numpy()
    paper = L.bn_gradient_norm_sq(g.numpy(), yhat, gamma.numpy(), sigma.numpy())  # eps_ratio 0
    assert np.all(lhs < paper)
    exact = [L.bn_gradient_norm_sq(g.numpy()[b], yhat[b], gamma.numpy()[b], sigma.numpy()[b],
                                   float(eps / sigma[b] ** 2)) for b in range(8)]
    np.testing.assert_allclose(lhs, exact, rtol=1e-12)


def test_m2_is_degenerate_zero_gradient():
    y, g, gamma = _batch(5, 2, 1)
    gy = L.bn_backward(y, g, gamma, torch.zeros(5, dtype=torch.float64), eps=1e-300)
    assert gy.abs().max() < 1e-12 * g.abs().max() * (gamma / y.std(1)).max()


def test_coefficients_limits_and_bad_input():
    assert L.bn_gradient_coefficients(1000)[1] == pytest.approx(1e-3)
    with pytest.raises(ValueError, match=r"m=1 is out of range: m must be an integer in \[2, inf\)"):
        L.bn_gradient_coefficients(1)
    with pytest.raises(ValueError, match="eps_ratio=-0.1 is out of range"):
        L.bn_gradient_coefficients(4, -0.1)
    with pytest.raises(ValueError, match="m=2 is out of range"):
        get("landscape.bn_gradient_identity").params(m=2)
    with pytest.raises(ValueError, match="c=0 is out of range"):
        L.filter_plot_change(0)
    with pytest.raises(ValueError, match="symmetry='swap' is not allowed"):
        L.rescale(L.relu_mlp(3, 4, False, 0), "swap", 2.0)


def test_rescalings_preserve_the_function():
    X = torch.randn(32, 5, dtype=torch.float64)
    for sym, bn in (("layer", False), ("neuron", False), ("bn_filter", True)):
        m = L.relu_mlp(5, 10, bn, 0)
        r = L.rescale(m, sym, 4.0, 0)
        m.train(), r.train()
        with torch.no_grad():
            assert (m(X) - r(X)).abs().max() < 1e-12 * m(X).abs().max()


def test_filter_plot_invariant_layer_plot_not_under_bn_per_filter_rescaling():
    torch.manual_seed(0)
    X = torch.randn(64, 6, dtype=torch.float64)
    Y = torch.sin(X.sum(1, keepdim=True))
    m = L.relu_mlp(6, 12, True, 1)
    r = L.rescale(m, "bn_filter", 5.0, 1)
    f, _ = L.plot_change(m, r, (X, Y), "filter", 0)
    lay, _ = L.plot_change(m, r, (X, Y), "layer", 0)
    assert f.max() < 1e-12 and lay.max() > 1e-3


def test_per_neuron_relu_rescaling_breaks_filter_normalization_over_seeds():
    X = torch.randn(64, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    Y = torch.sin(X.sum(1, keepdim=True))
    changes = []
    for seed in range(4):
        m = L.relu_mlp(6, 12, False, seed)
        changes.append(L.plot_change(m, L.rescale(m, "neuron", 4.0, seed), (X, Y), "filter", seed)[0].max())
    assert min(changes) > 1e-3


@pytest.mark.parametrize("cid", ["landscape.bn_gradient_identity", "landscape.filter_norm_invariance",
                                 "landscape.mode_connectivity", "landscape.bn_smoothness", "landscape.taxonomy"])
def test_same_seed_same_numbers(cid):
    c = get(cid)
    a = c.measure(c.params(), backend="torch", seed=5).value
    b = c.measure(c.params(), backend="torch", seed=5).value
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_numpy_request_runs_on_torch_cpu():
    v = get("landscape.bn_gradient_identity").check(backend="numpy")
    assert v.passed and v.backend == "torch"


# ---- mode connectivity

def test_linear_model_segment_is_exactly_below_its_chord():
    out = L.train_pairs(1, 0.05, 4, 3, steps=50, linear=True)
    t = out["t"]
    pred = -(t * (1 - t))[:, None] * out["gap_scale"][0][None, :]
    np.testing.assert_allclose(out["gap"][:, 0, :], pred, atol=1e3 * EPS * out["losses"].max())
    assert out["barrier"].max() <= 1e3 * EPS * out["losses"].max()


def test_padded_widths_equal_separate_runs_in_shape_and_stay_zero():
    out = L.train_pairs((2, 6), 0.05, 3, 0, steps=20)
    assert out["losses"].shape == (11, 2, 3) and out["barrier"].shape == (2, 3)
    assert np.all(out["barrier"] >= 0)


def test_network_barrier_positive_over_seeds():
    # a statement over 8 pairs of seeds, not one run: the mean barrier at width 16 is clearly above 0
    out = L.train_pairs(16, 0.05, 8, 11, steps=200)
    b = out["barrier"][0]
    assert b.mean() > 3 * b.std(ddof=1) / np.sqrt(b.size)


def test_train_pairs_bad_input():
    with pytest.raises(ValueError, match="lr"):
        L.train_pairs(4, -0.1, 2, 0)
    with pytest.raises(ValueError, match="width"):
        L.train_pairs(0, 0.1, 2, 0)


def test_mode_connectivity_divergence_is_a_result():
    c = get("landscape.mode_connectivity")
    m = c.measured(c.params(lr=5.0, width=16), TB, 0)
    assert m.diverged


# ---- BatchNorm smoothness

def test_smoothness_metrics_shapes_positive_and_bn_forward_normalises():
    out = L.smoothness_along_path(True, 0.05, 3, 0, steps=9, every=4)
    assert out["metrics"].shape == (3, 3) and np.all(out["metrics"] > 0) and not out["diverged"]
    P = [torch.randn(2, 5, 4, dtype=torch.float64), torch.zeros(2, 5, dtype=torch.float64),
         torch.randn(2, 5, 5, dtype=torch.float64), torch.zeros(2, 5, dtype=torch.float64),
         torch.randn(2, 5, dtype=torch.float64)]
    X = torch.randn(2, 16, 4, dtype=torch.float64)
    # BN (eps = 1e-5, so up to relative order eps/var) makes the output invariant to the first layer's scale
    P2 = [3.0 * P[0]] + P[1:]
    np.testing.assert_allclose(L._mlp_bn_forward(P, X, True), L._mlp_bn_forward(P2, X, True), rtol=1e-4)
    assert not np.allclose(L._mlp_bn_forward(P, X, False), L._mlp_bn_forward(P2, X, False))


def test_effective_beta_of_a_quadratic_is_its_curvature_along_the_gradient():
    # the definition on L = x^T A x / 2: the ratio is ||A g||/||g|| for every eta (the claim measures its max)
    A = np.diag([1.0, 4.0])
    x = np.array([1.0, 1.0])
    g = A @ x
    for eta in (0.1, 0.5):
        assert np.isclose(np.linalg.norm(A @ x - A @ (x - eta * g)) / np.linalg.norm(eta * g),
                          np.linalg.norm(A @ g) / np.linalg.norm(g))


def test_bn_smoothness_bad_input_and_divergence():
    with pytest.raises(ValueError, match="lr"):
        L.smoothness_along_path(False, 0.0, 4, 0)
    with pytest.raises(ValueError, match="runs"):
        L.smoothness_along_path(False, 0.1, 1, 0)
    c = get("landscape.bn_smoothness")
    assert c.measured(c.params(lr=8.0), TB, 0).diverged


# ---- taxonomy proxy

def test_taxonomy_grid_shapes_zero_barrier_and_exact_sharpness():
    o = L.taxonomy_grid(8, 1.0, 0, runs=3, steps=60, probes=16)
    assert np.asarray(o["barrier"]).shape == (3, 3) and np.all(np.asarray(o["barrier"]) <= 1e-12)
    assert np.all(np.abs(o["sharp"] - o["sharp_exact"]) <= o["sharp_resid"] + 1e-10)
    assert np.all((o["cka"] >= 0) & (o["cka"] <= 1 + 1e-12))


def test_taxonomy_prediction_limits_and_bad_input():
    np.testing.assert_allclose(L.taxonomy_prediction(5, 0.0), [5, 5, 5, 0])
    with pytest.raises(ValueError, match="p"):
        L.taxonomy_prediction(0, 1.0)
    with pytest.raises(ValueError, match="p"):
        L.taxonomy_grid(1, 1.0, 0)


def test_taxonomy_below_interpolation_threshold_runs_disagree_over_seeds():
    # a statement over 6 pairs of seeds: test-prediction CKA at load 0.5 is below the one at load 8
    o = L.taxonomy_grid(16, 1.0, 3, runs=6, steps=150, probes=8)
    assert o["cka"][0].mean() < o["cka"][2].mean()
