"""solvable.models.reinit: the unbalanced flow's limit on constructed inputs, limits, bad input, backends,
seeds; the layer-wise schedule (kept layers bit-identical, margin invariance, Lanczos vs dense Hessian,
batched == looped, explicit GD vs autograd, divergence, bad input)."""

from __future__ import annotations

import math

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


# ---------------------------------------------------------------------------------------------
# reinit.layerwise: the layer-wise schedule on a ReLU MLP

import torch  # noqa: E402

from solvable.tools import curvature  # noqa: E402

WIDTHS = (5, 7, 6, 4, 1)


def _data(S=3, n=30, seed=0):
    return reinit.teacher_data(S, n, 50, WIDTHS[0], 4, seed)


def test_reinit_resets_exactly_the_intended_layers():
    X, y, _, _ = _data()
    run = reinit.layerwise_schedule(X, y, WIDTHS, 3, 7, 0.1, seed=5, snapshots=True)
    stages = run["stages"]
    assert [s["stage"] for s in stages] == [0, 1, 2, 3]
    for k in range(1, 4):
        before, prev = stages[k]["before"], stages[k - 1]["after"]
        fresh = reinit.init_mlp(WIDTHS, 3, 5 + 1000 * k)
        for l in range(4):
            if l < k:  # kept: bit-identical to the trained weights of the previous stage
                assert torch.equal(before[l], prev[l])
            else:  # re-drawn: exactly the fresh draw, not the trained weights
                assert torch.equal(before[l], fresh[l])
                assert not torch.equal(before[l], prev[l])
    # the baseline never re-initializes: its stage-0 weights equal the re-init arm's
    assert all(torch.equal(a, b) for a, b in zip(stages[0]["after"], stages[0]["base_after"]))


def test_normalized_margin_is_invariant_under_positive_layer_rescaling():
    # constructed input: a 2-2-1 net, two points, margins computed by hand
    W1 = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]], dtype=torch.float64)
    W2 = torch.tensor([[[1.0, -1.0]]], dtype=torch.float64)
    X = torch.tensor([[[3.0, 1.0], [-1.0, 2.0]]], dtype=torch.float64)
    y = torch.tensor([[1.0, -1.0]], dtype=torch.float64)
    # f(x1) = relu(3) - relu(2) = 1, f(x2) = relu(-1) - relu(4) = -4: margins 1 and 4
    norms = math.sqrt(5.0) * math.sqrt(2.0)
    gamma = reinit.normalized_margin([W1, W2], X, y)
    assert float(gamma[0]) == pytest.approx(1.0 / norms, rel=1e-14)
    for c1, c2 in [(0.1, 7.0), (3.0, 3.0), (1e-3, 1e2)]:
        assert float(reinit.normalized_margin([c1 * W1, c2 * W2], X, y)[0]) == pytest.approx(1 / norms, rel=1e-13)
    # a negative scale flips the ReLU's input: not a symmetry (the margin changes)
    assert float(reinit.normalized_margin([-W1, -W2], X, y)[0]) != pytest.approx(1 / norms, rel=1e-3)


def test_explicit_gd_matches_autograd():
    X, y, _, _ = _data()
    W0 = reinit.init_mlp(WIDTHS, 3, 1)
    W1, div, _ = reinit.gd_mlp(W0, X, y, 1, 0.3)
    Ws = [W.clone().requires_grad_(True) for W in W0]
    grads = torch.autograd.grad(reinit.logistic_loss(reinit.mlp_forward(Ws, X), y).sum(), Ws)
    for a, W, g in zip(W1, W0, grads):
        torch.testing.assert_close(a, W - 0.3 * g, rtol=1e-12, atol=1e-14)
    assert not div


def test_top_hessian_eigenvalue_matches_a_dense_float64_hessian():
    X, y, _, _ = reinit.teacher_data(2, 12, 1, 3, 3, 4)
    widths = (3, 4, 3, 1)
    W0 = reinit.init_mlp(widths, 2, 2)
    Ws, _, _ = reinit.gd_mlp(W0, X, y, 30, 0.2)
    vals, ok = reinit.top_hessian_eigenvalue(Ws, X, y)
    assert ok
    for s in range(2):
        # an independent oracle: torch.autograd.functional.hessian of the loss of the flat parameters
        shapes = [W[s].shape for W in Ws]
        flat = torch.cat([W[s].reshape(-1) for W in Ws])

        def loss(theta):
            parts, i = [], 0
            for sh in shapes:
                parts.append(theta[i:i + sh.numel()].reshape(1, *sh))
                i += sh.numel()
            return reinit.logistic_loss(reinit.mlp_forward(parts, X[s:s + 1]), y[s:s + 1])[0]

        H = torch.autograd.functional.hessian(loss, flat)
        top = float(torch.linalg.eigvalsh(0.5 * (H + H.T))[-1])
        assert vals[s] == pytest.approx(top, rel=1e-8)
        # and curvature's own dense oracle on the same module
        Hd = curvature.dense_hessian(reinit._module_of([W[s] for W in Ws]), reinit._Logistic(), [(X[s], y[s])])
        assert float(torch.linalg.eigvalsh(Hd)[-1]) == pytest.approx(top, rel=1e-10)


def test_batched_equals_looped():
    X, y, _, _ = _data(S=3)
    run = reinit.layerwise_schedule(X, y, WIDTHS, 2, 6, 0.2, seed=9)
    W0 = reinit.init_mlp(WIDTHS, 3, 9)
    fresh = [reinit.init_mlp(WIDTHS, 3, 9 + 1000 * k) for k in (1, 2)]
    for s in range(3):
        one = lambda Ws: [W[s:s + 1] for W in Ws]  # noqa: E731
        base, _, _ = reinit.gd_mlp(one(W0), X[s:s + 1], y[s:s + 1], 18, 0.2)
        re, _, _ = reinit.gd_mlp(one(W0), X[s:s + 1], y[s:s + 1], 6, 0.2)
        for k in (1, 2):
            re = re[:k] + one(fresh[k - 1])[k:]
            re, _, _ = reinit.gd_mlp(re, X[s:s + 1], y[s:s + 1], 6, 0.2)
        for a, b in zip(run["base"], base):
            torch.testing.assert_close(a[s:s + 1], b, rtol=1e-11, atol=1e-13)
        for a, b in zip(run["reinit"], re):
            torch.testing.assert_close(a[s:s + 1], b, rtol=1e-11, atol=1e-13)


def test_divergence_is_flagged_not_nan():
    X, y, _, _ = _data()
    # weights of size 1e80 per layer: f overflows (4 layers, 1e320) and the logistic loss is inf
    Ws, div, step = reinit.gd_mlp([W * 1e80 for W in reinit.init_mlp(WIDTHS, 3, 0)], X, y, 200, 1.0)
    assert div and 1 <= step <= 50
    Ws, div, step = reinit.gd_mlp(reinit.init_mlp(WIDTHS, 3, 0), X, y, 20, 0.1)
    assert not div and step == 20


def test_paired_z():
    mean, se, z = reinit.paired_z([2.0, 3.0, 4.0], [1.0, 1.0, 1.0])
    assert (mean, se, z) == pytest.approx((2.0, 1 / math.sqrt(3), 2 * math.sqrt(3)))


@pytest.mark.parametrize("kwargs, match", [
    (dict(stages=0), r"stages=0 is out of range: stages must be an integer in \[1, 3\]"),
    (dict(stages=4), r"stages=4 is out of range"),
    (dict(steps=0), r"steps=0 is out of range: steps must be an integer in \[1, 1000000\]"),
    (dict(lr=-0.1), r"lr=-0.1 is out of range: lr must be a finite number in \(0, 10\]"),
    (dict(lr=float("nan")), r"lr=nan is out of range"),
    (dict(widths=(5, 7, 2)), r"widths\[-1\]=2 is out of range"),
    (dict(widths=(5, 0, 4, 1)), r"widths\[1\]=0 is out of range"),
    (dict(widths=(5, 1)), r"widths=\(5, 1\) is out of range"),
])
def test_layerwise_bad_input_names_parameter_value_and_range(kwargs, match):
    X, y, _, _ = _data()
    args = dict(widths=WIDTHS, stages=2, steps=5, lr=0.1) | kwargs
    with pytest.raises(ValueError, match=match):
        reinit.layerwise_schedule(X, y, **args)


def test_layerwise_claim_params_reject_bad_values():
    c = get("reinit.layerwise")
    with pytest.raises(ValueError, match=r"stages=5 is out of range"):
        c.params(stages=5)
    with pytest.raises(ValueError, match=r"lr=0 is out of range"):
        c.params(lr=0)
    with pytest.raises(ValueError, match=r"width=2 is out of range"):
        c.params(width=2)


@pytest.mark.slow
def test_layerwise_effects_over_more_seeds():
    """32 seeds at the defaults: accuracy and margin up, sharpness up and sharpness per unit loss down,
    each at |z| > 3 (the default check uses 12 seeds)."""
    c = get("reinit.layerwise")
    m = c.measured(c.params(n_seeds=32, seed=77), get_backend("torch"), 0)
    z = {k: m.info[k]["z"] for k in ("test_accuracy", "normalized_margin", "top_hessian_eigenvalue",
                                     "sharpness_over_loss")}
    assert z["test_accuracy"] > 3 and z["normalized_margin"] > 3 and z["top_hessian_eigenvalue"] > 3
    assert z["sharpness_over_loss"] < -3


def test_stage_measures_shapes_and_bad_input():
    X, y, _, _ = _data(S=2, n=20)
    run = reinit.layerwise_schedule(X, y, WIDTHS, 2, 5, 0.1, seed=1, snapshots=True)
    sm = reinit.stage_measures(run, X, y)
    assert sm["margin"]["base"].shape == (3, 2)
    assert np.isnan(sm["margin"]["reinit_before"][0]).all() and np.isfinite(sm["margin"]["reinit_before"][1:]).all()
    # stage 0 of both arms is the same network
    np.testing.assert_array_equal(sm["sharpness"]["base"][0], sm["sharpness"]["reinit_after"][0])
    with pytest.raises(ValueError, match="snapshots=True"):
        reinit.stage_measures(reinit.layerwise_schedule(X, y, WIDTHS, 1, 2, 0.1), X, y)
    with pytest.raises(ValueError, match=r"n_train=1 is out of range"):
        reinit.teacher_data(2, 1, 5, 3)
    with pytest.raises(ValueError, match=r"widths\[0\]=4 is out of range: it must equal the input dimension 5"):
        reinit.layerwise_schedule(X, y, (4, 3, 1), 1, 2, 0.1)
