"""solvable.tools.landscape: directions (seed, normalisation, bias/BN handling), the batched grid
against a loop that loads each point's weights into the model, BatchNorm modes, barrier, save/load,
plots, bad input."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from solvable.backend import cuda_available
from solvable.tools import landscape as ls

EPS = np.finfo(np.float64).eps
DEVICES = [pytest.param("cpu", id="cpu"),
           pytest.param("cuda", id="cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
               not cuda_available(), reason="CUDA not available")])]


def net(bn=False, seed=0, device="cpu", width=12):
    torch.manual_seed(seed)
    layers = [nn.Linear(4, width)] + ([nn.BatchNorm1d(width)] if bn else []) + [nn.ReLU(), nn.Linear(width, 2)]
    return nn.Sequential(*layers).double().to(device)


def data(n=40, seed=1, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 4, generator=g, dtype=torch.float64)
    return X.to(device), torch.randn(n, 2, generator=g, dtype=torch.float64).to(device)


def loop_reference(model, loss_fn, batches, origin, dirs, coords, mode):
    """One model per grid point with its weights loaded by copy_ (what the batched program replaces)."""
    out = []
    for c in np.asarray(coords):
        m = copy.deepcopy(model)
        m.train(mode == "train")
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm1d):
                mod.momentum = 0.0
        with torch.no_grad():
            for n, p in m.named_parameters():
                p.copy_(origin[n] + sum(float(ck) * d[n] for ck, d in zip(c, dirs)))
            N = sum(x.shape[0] for x, _ in batches)
            out.append(sum(x.shape[0] / N * loss_fn(m(x), y).item() for x, y in batches))
    return np.array(out)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_batched_grid_matches_loop_over_points_with_bn(device, mode):
    m = net(bn=True, device=device)
    with torch.no_grad():  # nontrivial running statistics, so eval and train differ
        m[1].running_mean.uniform_(-0.5, 0.5)
        m[1].running_var.uniform_(0.5, 2.0)
    X, Y = data(device=device)
    batches = [(X[:25], Y[:25]), (X[25:], Y[25:])]  # unequal batches, weighted by size
    w = ls.parameters(m)
    dirs = [ls.random_direction(w, 3), ls.random_direction(w, 4, norm="layer")]
    coords = np.random.default_rng(0).uniform(-1, 1, (11, 2))
    got = ls.evaluate(m, nn.MSELoss(), batches, w, dirs, coords, mode=mode, chunk=4)
    ref = loop_reference(m, nn.MSELoss(), batches, w, dirs, coords, mode)
    np.testing.assert_allclose(got, ref, rtol=1e3 * EPS, atol=0)
    rm = m[1].running_mean.clone()
    ls.evaluate(m, nn.MSELoss(), batches, w, dirs, coords, mode="train")
    assert torch.equal(rm, m[1].running_mean), "train mode must not update the running statistics"
    assert m[1].running_var is not None and m[1].num_batches_tracked is not None  # buffers restored


def test_eval_and_train_modes_differ_and_model_mode_is_restored():
    m = net(bn=True)
    with torch.no_grad():
        m[1].running_mean.fill_(0.3)
    m.train()
    X, Y = data()
    a = ls.slice_1d(m, nn.MSELoss(), (X, Y), n=5, mode="eval").losses
    b = ls.slice_1d(m, nn.MSELoss(), (X, Y), n=5, mode="train").losses
    assert np.abs(a - b).max() > 1e-3 and m.training


def test_chunking_does_not_change_the_numbers():
    m, (X, Y) = net(), data()
    a = ls.slice_2d(m, nn.MSELoss(), (X, Y), n=6, chunk=1).losses
    b = ls.slice_2d(m, nn.MSELoss(), (X, Y), n=6, chunk=36).losses
    np.testing.assert_allclose(a, b, rtol=10 * EPS)


def test_same_seed_same_direction_depends_only_on_shapes():
    a, b = net(seed=0), net(seed=5)  # same shapes, different weights
    da = ls.random_direction(a, 7, norm="none")
    db = ls.random_direction(b, 7, norm="none")
    for k in da:
        assert torch.equal(da[k], db[k])
    dc = ls.random_direction(a, 8, norm="none")
    assert not torch.equal(da["0.weight"], dc["0.weight"])
    fa, fb = ls.random_direction(a, 7), ls.random_direction(a, 7)
    assert all(torch.equal(fa[k], fb[k]) for k in fa)


def test_filter_normalization_matches_each_filter_norm():
    m = net()
    w = ls.parameters(m)
    d = ls.random_direction(w, 0, norm="filter")
    for k, t in w.items():
        if t.dim() == 2:
            np.testing.assert_allclose(d[k].norm(dim=1).numpy(), t.norm(dim=1).numpy(), rtol=1e-13)
        else:
            assert torch.count_nonzero(d[k]) == 0  # bias_bn="zero"
    dl = ls.random_direction(w, 0, norm="layer")
    assert abs(dl["0.weight"].norm() - w["0.weight"].norm()) < 1e-12
    dw = ls.random_direction(w, 0, bias_bn="weights")
    assert torch.equal(dw["0.bias"], w["0.bias"])
    dn = ls.random_direction(w, 0, bias_bn="normalize")
    np.testing.assert_allclose(dn["0.bias"].abs().numpy(), w["0.bias"].abs().numpy(), rtol=1e-14)


def test_filter_normalization_of_a_conv_is_per_output_channel():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 1)).double()
    w = ls.parameters(m)
    d = ls.random_direction(w, 1)
    np.testing.assert_allclose(d["0.weight"].flatten(1).norm(dim=1).numpy(),
                               w["0.weight"].flatten(1).norm(dim=1).numpy(), rtol=1e-13)
    X = torch.randn(8, 2, 6, 6, dtype=torch.float64)
    out = ls.slice_1d(m, nn.MSELoss(), (X, torch.zeros(8, 1, dtype=torch.float64)), n=3)
    assert out.losses.shape == (3,) and np.all(np.isfinite(out.losses))


def test_zero_at_origin_and_quadratic_exactness_on_a_linear_model():
    torch.manual_seed(0)
    m = nn.Linear(4, 2, bias=False).double()
    X, Y = data()
    d = ls.random_direction(m, 0, norm="none")
    out = ls.slice_1d(m, nn.MSELoss(), (X, Y), d, span=(-2, 2), n=9)
    L0 = nn.MSELoss()(m(X), Y).item()
    assert abs(out.losses[4] - L0) < 10 * EPS * L0
    # the MSE of a linear model is a quadratic in a: third differences vanish
    assert np.abs(np.diff(out.losses, 3)).max() < 1e3 * EPS * out.losses.max()


def test_interpolation_endpoints_and_barrier():
    a, b = net(seed=0), net(seed=1)
    X, Y = data()
    out = ls.interpolate(a, nn.MSELoss(), (X, Y), ls.parameters(a), ls.parameters(b), n=11)
    La, Lb = nn.MSELoss()(a(X), Y).item(), nn.MSELoss()(b(X), Y).item()
    assert abs(out.losses[0] - La) < 1e-13 and abs(out.losses[-1] - Lb) < 1e-13
    assert out.barrier >= 0
    assert ls.barrier_height([1.0, 0.5, 0.0]) == 0.0  # on the chord
    assert ls.barrier_height([0.0, 2.0, 1.0]) == pytest.approx(1.5)
    assert ls.barrier_height([1.0, 0.2, 1.0]) == 0.0  # convex dip: never negative (endpoints included)


def test_save_load_same_grid_same_numbers(tmp_path):
    m, (X, Y) = net(), data()
    out = ls.slice_2d(m, nn.MSELoss(), (X, Y), n=4, n_y=3, seed=2, norm="layer")
    path = out.save(tmp_path / "grid.npz")
    back = ls.Landscape.load(path)
    for x, y in zip(out.axes, back.axes):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(out.losses, back.losses)
    assert back.meta == out.meta and back.losses.shape == (4, 3)


def test_plots_draw(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m, (X, Y) = net(), data()
    two = ls.slice_2d(m, nn.MSELoss(), (X, Y), n=5)
    one = ls.slice_1d(m, nn.MSELoss(), (X, Y), n=5)
    fig = plt.figure()
    ls.plot_1d(one, fig.add_subplot(131))
    ls.plot_contour(two, fig.add_subplot(132))
    ls.plot_surface(two, fig.add_subplot(133, projection="3d"))
    fig.savefig(tmp_path / "f.png")
    plt.close(fig)
    with pytest.raises(ValueError, match="2-D landscape"):
        ls.plot_contour(one)


def test_progress_bar_runs():
    m, (X, Y) = net(), data()
    out = ls.slice_1d(m, nn.MSELoss(), (X, Y), n=12, chunk=1, progress=True)
    assert out.losses.shape == (12,)


def test_bad_input_names_what_is_wrong():
    m, (X, Y) = net(), data()
    w = ls.parameters(m)
    bad = dict(ls.random_direction(w, 0))
    bad["0.weight"] = torch.zeros(3, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"direction\['0.weight'\] has shape \(3, 3\) but the parameter"):
        ls.slice_1d(m, nn.MSELoss(), (X, Y), bad)
    with pytest.raises(ValueError, match="missing \\['2.bias'\\]"):
        ls.slice_1d(m, nn.MSELoss(), (X, Y), {k: v for k, v in w.items() if k != "2.bias"})
    zero = {k: torch.randn_like(v) for k, v in w.items()}
    zero["0.weight"][3] = 0
    with pytest.raises(ValueError, match="direction filter 3 of parameter '0.weight' has norm 0"):
        ls.normalize_direction(zero, w)
    wz = dict(w)
    wz["2.weight"] = w["2.weight"].clone()
    wz["2.weight"][1] = 0
    with pytest.raises(ValueError, match="weight filter 1 of parameter '2.weight' has norm 0"):
        ls.random_direction(wz, 0)
    with pytest.raises(ValueError, match="n=0 is out of range"):
        ls.slice_1d(m, nn.MSELoss(), (X, Y), n=0)
    with pytest.raises(ValueError, match="n_y=0 is out of range"):
        ls.slice_2d(m, nn.MSELoss(), (X, Y), n=3, n_y=0)
    with pytest.raises(ValueError, match="coords has 0 grid points"):
        ls.evaluate(m, nn.MSELoss(), (X, Y), w, [w], np.zeros((0, 1)))
    with torch.no_grad():
        m[0].weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="model parameter '0.weight' contains NaN"):
        ls.slice_1d(m, nn.MSELoss(), (X, Y))
    with pytest.raises(ValueError, match="norm='cosine' is not allowed"):
        ls.random_direction(w, 0, norm="cosine")
    with pytest.raises(ValueError, match="mode='test' is not allowed"):
        ls.evaluate(net(), nn.MSELoss(), (X, Y), None, [w], np.zeros((1, 1)), mode="test")


def test_dropout_in_train_mode_is_refused_and_memory_is_checked(monkeypatch):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 2)).double()
    X, Y = data()
    with pytest.raises(ValueError, match="active Dropout"):
        ls.slice_1d(m, nn.MSELoss(), (X, Y), n=3, mode="train")
    assert ls.slice_1d(m, nn.MSELoss(), (X, Y), n=3, mode="eval").losses.shape == (3,)
    import solvable.checks

    monkeypatch.setattr(solvable.checks, "available_memory", lambda device="cpu": 10_000)
    with pytest.raises(ValueError, match="chunk=4 is out of range: 4 grid points of .* needs about"):
        ls.slice_1d(m, nn.MSELoss(), (X, Y), n=4, chunk=4)
