"""Tests of solvable.models.gr: the analytic test model against autograd, the finite-difference GR
gradients against exact GR, the torch-module methods against a dense-Hessian oracle, flooding,
bad input, divergence, backends and seeds."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from solvable.models import gr
from solvable.backend import get_backend
from solvable.stats import loglog_slope
from solvable.testing import assert_close

# --------------------------------------------------------------------------------------------
# helpers


def _mlp(seed=0, dtype=torch.float64, device="cpu"):
    torch.manual_seed(seed)
    m = torch.nn.Sequential(torch.nn.Linear(3, 6), torch.nn.Tanh(), torch.nn.Linear(6, 2))
    m = m.to(device=device, dtype=dtype)
    x = torch.randn(9, 3, dtype=dtype, device=device)
    y = torch.randn(9, 2, dtype=dtype, device=device)
    return m, (x, y)


def _mse(out, y):
    # written out: torch.nn.functional.mse_loss has no working forward-over-reverse rule in torch 2.14
    return ((out - y) ** 2).mean()


def _flat(ts):
    return torch.cat([t.reshape(-1) for t in ts])


def _dense_oracle(model, batch):
    """Flat parameters, their gradient, the dense Hessian and D^3L[g, g] by plain autograd."""
    from torch.func import functional_call

    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    theta = _flat([p.detach() for p in model.parameters()])

    def unflat(v):
        out, i = {}, 0
        for n, s in zip(names, shapes):
            k = math.prod(s)
            out[n] = v[i:i + k].reshape(s)
            i += k
        return out

    def loss(v):
        return _mse(functional_call(model, unflat(v), (batch[0],)), batch[1])

    g = torch.autograd.functional.jacobian(loss, theta)
    H = torch.autograd.functional.hessian(loss, theta)
    # D^3L[g, g] = d/dt H(theta + t g) g at t = 0, by a jvp of the Hessian-vector product
    _, d3 = torch.autograd.functional.jvp(
        lambda v: torch.autograd.functional.hvp(loss, v, g, create_graph=True)[1], theta, g)
    return theta, g, H, d3


# --------------------------------------------------------------------------------------------
# the analytic test model against autograd


def test_quartic_model_derivatives_match_autograd():
    model, theta = gr.quartic_problem(get_backend("torch"), seed=1, runs=3, d=5, kappa=0.7)
    th = theta.clone().requires_grad_(True)
    g_auto = torch.autograd.grad(model.loss(th).sum(), th, create_graph=True)[0]
    assert_close(model.grad(theta), g_auto, n_ops=50, reason="same sums, different order")
    v = torch.randn(theta.shape, dtype=theta.dtype, generator=torch.Generator().manual_seed(0))
    hv_auto = torch.autograd.grad((g_auto * v).sum(), th, create_graph=True)[0]
    assert_close(model.hvp(theta, v), hv_auto, n_ops=50)
    d3_auto = torch.autograd.grad((hv_auto * v).sum(), th, create_graph=True)[0]
    assert_close(model.third(theta, v, v), d3_auto, n_ops=50)
    d4_auto = torch.autograd.grad((d3_auto * v).sum(), th)[0]
    assert_close(model.fourth(v, v, v), d4_auto, n_ops=50)


def test_gr_gradient_is_gradient_of_the_penalised_loss():
    """g_GR is the gradient of L + (gamma/2)||grad L||^2, by autograd of that function."""
    model, theta = gr.quartic_problem(get_backend("torch"), seed=2, runs=4, d=6)
    gamma = 0.3
    th = theta.clone().requires_grad_(True)
    g = torch.autograd.grad(model.loss(th).sum(), th, create_graph=True)[0]
    pen = model.loss(th) + 0.5 * gamma * (g * g).sum(-1)
    auto = torch.autograd.grad(pen.sum(), th)[0]
    assert_close(gr.gr_gradient(model.grad, model.hvp, theta, gamma), auto, n_ops=100)


# --------------------------------------------------------------------------------------------
# finite-difference GR against exact GR


@pytest.mark.parametrize("kind", ["forward", "backward", "central"])
def test_fd_error_is_leading_term_plus_known_remainder(kind):
    """On the quartic the Taylor series terminates: forward/backward error = gamma(eps/2 D^3 + eps^2/6 D^4),
    central = gamma eps^2/6 D^4, exactly (to round-off)."""
    be = get_backend("numpy")
    model, theta = gr.quartic_problem(be, seed=3, runs=5, d=4)
    gamma = 0.2
    g = model.grad(theta)
    g_gr = gr.gr_gradient(model.grad, model.hvp, theta, gamma)
    d3, d4 = model.third(theta, g, g), model.fourth(g, g, g)
    for e in (1e-1, 1e-2):
        step = -e if kind == "backward" else e
        fd = gr.central_fd_gr_gradient if kind == "central" else gr.fd_gr_gradient
        err = fd(model.grad, theta, gamma, step) - g_gr
        lead = gr.fd_error_leading(kind, gamma, step, d3, d4)
        rem = 0.0 if kind == "central" else gamma * step ** 2 / 6 * d4
        scale = (1 + gamma / e) * model.grad_scale(theta)[:, None]
        # absolute round-off: the difference quotient multiplies the gradients' round-off by gamma/eps
        assert np.all(np.abs(err - lead - rem) < be.roundoff(200) * scale)


def test_roundoff_bound_flags_tiny_eps_only():
    be = get_backend("numpy")
    model, theta = gr.quartic_problem(be, seed=0, runs=8, d=8)
    c = gr.fd_error_curves(model, theta, 0.1, [1e-10, 1e-3], be)
    assert np.all(c["forward"]["rel_roundoff"][:, 0] > 1)  # the error is below the round-off there
    assert np.all(c["forward"]["rel_roundoff"][:, 1] < 1e-3)


def test_error_scales_linearly_in_gamma():
    be = get_backend("numpy")
    model, theta = gr.quartic_problem(be, seed=4, runs=3, d=4)
    errs = [np.linalg.norm(gr.fd_gr_gradient(model.grad, theta, gm, 1e-3)
                           - gr.gr_gradient(model.grad, model.hvp, theta, gm)) for gm in (0.01, 0.1, 1.0)]
    fit = loglog_slope([0.01, 0.1, 1.0], errs)
    assert abs(fit.slope - 1) < 1e-8  # g_FD - g_GR = gamma * (...) exactly: only round-off bends it


def test_gamma_zero_is_plain_gradient_and_sam_identity_is_exact():
    be = get_backend("numpy")
    model, theta = gr.quartic_problem(be, seed=5, runs=3, d=4)
    g = model.grad(theta)
    np.testing.assert_array_equal(gr.fd_gr_gradient(model.grad, theta, 0.0, 0.1), g)
    np.testing.assert_array_equal(gr.central_fd_gr_gradient(model.grad, theta, 0.0, 0.1), g)
    # the coefficients are exactly 0 and 1 at eps = gamma: bitwise equality with SAM
    np.testing.assert_array_equal(gr.fd_gr_gradient(model.grad, theta, 0.37, 0.37),
                                  gr.sam_gradient(model.grad, theta, 0.37))


def test_numpy_and_torch_agree(backend):
    ref_model, ref_theta = gr.quartic_problem("numpy", seed=6, runs=4, d=5)
    model, theta = gr.quartic_problem(backend, seed=6, runs=4, d=5)
    assert str(getattr(theta, "device", "cpu")).startswith(backend.device)
    for fn in (gr.fd_gr_gradient, gr.central_fd_gr_gradient):
        out = fn(model.grad, theta, 0.1, 0.05)
        ref = fn(ref_model.grad, ref_theta, 0.1, 0.05)
        # float32 on CUDA: the difference quotient amplifies round-off by gamma/eps = 2, the problem
        # has condition ~ 10 and sums of length 5: 4 * 2 * 10 * 5 operations' worth
        assert_close(out, ref, rtol=backend.roundoff(400), atol=backend.roundoff(400) * float(np.abs(ref).max()),
                     reason="same instances, round-off of the backend's dtype")


def test_same_seed_same_instances_different_seed_different():
    a = gr.quartic_problem("numpy", seed=7, runs=2, d=3)
    b = gr.quartic_problem("numpy", seed=7, runs=2, d=3)
    c = gr.quartic_problem("numpy", seed=8, runs=2, d=3)
    np.testing.assert_array_equal(a[0].A, b[0].A)
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


# --------------------------------------------------------------------------------------------
# flooding


def test_flooding_gradient_sign_and_flooded_gd_alternates():
    be = get_backend("numpy")
    model, theta = gr.quartic_problem(be, seed=9, runs=6, d=4)
    L, g = model.loss(theta), model.grad(theta)
    np.testing.assert_array_equal(gr.flooding_gradient(L, g, L + 1.0), -g)
    np.testing.assert_array_equal(gr.flooding_gradient(L, g, L - 1.0), g)
    eta = 1e-3
    run = gr.flooded_gd(model.loss, model.grad, theta, L + 0.5 * eta * (g * g).sum(-1), eta, 2)
    np.testing.assert_array_equal(run["signs"], np.array([[-1.0] * 6, [1.0] * 6]))
    disp = run["theta"][2] - theta
    # the L-gradient terms cancel: the displacement is O(eta^2), against eta |g| for one step
    assert np.all(np.linalg.norm(disp, axis=-1) < 10 * eta ** 2 * np.linalg.norm(model.hvp(theta, g), axis=-1))


def test_flooded_gd_reports_divergence():
    model, theta = gr.quartic_problem("numpy", seed=10, runs=2, d=3, kappa=2.0)
    with np.errstate(over="ignore", invalid="ignore"):
        run = gr.flooded_gd(model.loss, model.grad, 10 * theta, -1.0, 5.0, 50)
    assert run["diverged"] and isinstance(run["diverged_step"], int) and 1 <= run["diverged_step"] <= 50


def test_flooding_residual_fits_order_three_and_displacement_order_two():
    be = get_backend("numpy")
    model, theta = gr.quartic_problem(be, seed=11, runs=4, d=4)
    c = gr.flooding_residual_curves(model, theta, [1e-4, 1e-3, 1e-2], be)
    for o in ("ascent_first", "descent_first"):
        for r in c[o]["residual"]:
            assert abs(loglog_slope(c["eta"], r).slope - 3) < 0.05  # rho <= 0.03 at eta = 1e-2 here
        for r, rho in zip(c[o]["displacement"], c[o]["disp_rho"]):
            # the eta^3 term over the eta^2 one is rho: the local slope is within rho(1+rho)/(1-rho)^2 of 2
            assert abs(loglog_slope(c["eta"], r).slope - 2) <= gr._local_slope_bound(rho.max()) + 1e-3


def test_flooding_displacement_with_a_step_on_L_would_be_first_order():
    """What the 'full GR step' mutant describes: if the descent step did not cancel the ascent step's
    move along g (a step on L survives), the displacement would be O(eta); the claim's measurement
    of the displacement order separates the two on the same curves."""
    be = get_backend("numpy")
    model, theta = gr.quartic_problem(be, seed=2, runs=3, d=4)
    etas = np.array([1e-4, 1e-3, 1e-2])
    g = model.grad(theta)
    hg = model.hvp(theta, g)
    full_gr = [np.linalg.norm(-e * g - e**2 * hg, axis=-1) for e in etas]
    slopes = [loglog_slope(etas, np.array(full_gr)[:, i]).slope for i in range(3)]
    assert np.allclose(slopes, 1.0, atol=0.03)  # the eta^2 H g term bends it by ~eta ||Hg|| / ||g||
    c = gr.flooding_residual_curves(model, theta, etas, be)
    for r in c["ascent_first"]["displacement"]:
        assert abs(loglog_slope(etas, r).slope - 2.0) < 0.05


# --------------------------------------------------------------------------------------------
# general torch models, against the dense-Hessian oracle


@pytest.mark.parametrize("method", ["double_backprop", "forward_over_reverse"])
def test_exact_gr_on_mlp_matches_dense_hessian(method):
    model, batch = _mlp()
    theta, g, H, _ = _dense_oracle(model, batch)
    out = gr.exact_gr_grads(model, _mse, batch, 0.3, method=method)
    assert_close(_flat(out.grads), g + 0.3 * H @ g, n_ops=1000, reason="dense Hessian vs autograd HVP")
    assert_close(out.loss, _mse(model(batch[0]), batch[1]))


def test_exact_gr_where_the_hessian_vanishes_is_the_gradient():
    """A loss linear in its parameters (H = 0): exact and finite-difference GR equal grad L."""
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1).double()
    batch = (torch.randn(5, 3, dtype=torch.float64), torch.zeros(5, 1, dtype=torch.float64))

    def linear_loss(out, y):
        return (out - y).mean()

    _, g = gr.loss_gradient(model, linear_loss, batch)
    for out in (gr.exact_gr_grads(model, linear_loss, batch, 0.7),
                gr.fd_gr_grads(model, linear_loss, batch, 0.7, 0.1)):
        assert_close(_flat(out.grads), _flat(g), n_ops=10)


def test_fd_gr_on_mlp_matches_taylor_leading_term():
    """(g_FD - g_GR) / (gamma eps / 2) -> D^3L[g, g] with an O(eps) remainder (forward and backward),
    and the central error is O(eps^2): the remainder ratio drops by 10 (resp. 100) per decade."""
    model, batch = _mlp(1)
    theta, g, H, d3 = _dense_oracle(model, batch)
    gamma = 0.5
    g_gr = g + gamma * H @ g
    rel = {}
    for eps in (1e-2, 1e-3):
        for sign in (1, -1):
            e = _flat(gr.fd_gr_grads(model, _mse, batch, gamma, sign * eps).grads) - g_gr
            lead = gamma * sign * eps / 2 * d3
            rel[(eps, sign)] = float((e - lead).norm() / lead.norm())
    for sign in (1, -1):
        # O(eps) remainder: a tenfold smaller eps gives a tenfold smaller ratio, up to the O(eps^2) part
        assert rel[(1e-3, sign)] < 0.2 * rel[(1e-2, sign)]
    c2, c3 = [float((_flat(gr.central_fd_gr_grads(model, _mse, batch, gamma, e).grads) - g_gr).norm())
              for e in (1e-2, 1e-3)]
    assert 50 < c2 / c3 < 200  # order 2: ratio 100 for a tenfold step, up to the O(eps^4) term


def test_sam_identity_on_mlp():
    model, batch = _mlp(2)
    gamma = 0.05
    out = gr.fd_gr_grads(model, _mse, batch, gamma, gamma)
    _, g = gr.loss_gradient(model, _mse, batch)
    shifted = copy.deepcopy(model)
    with torch.no_grad():
        for p, gi in zip(shifted.parameters(), g):
            p.copy_(p + gamma * gi)
    _, g_sam = gr.loss_gradient(shifted, _mse, batch)
    assert_close(_flat(out.grads), _flat(g_sam), n_ops=10, reason="same operations, bitwise up to kernels")


def test_torch_methods_run_on_every_torch_device(backend):
    if backend.name != "torch":
        pytest.skip("torch-module methods")
    model, batch = _mlp(3, dtype=backend.float_dtype, device=backend.device)
    ref = gr.exact_gr_grads(model, _mse, batch, 0.1)
    fd = gr.central_fd_gr_grads(model, _mse, batch, 0.1, 1e-2)
    assert all(t.device.type == backend.device for t in fd.grads)
    # central-difference error ~ gamma eps^2 |D^4| ~ 1e-5 relative, float32 round-off / eps ~ 1e-5
    assert_close(_flat(fd.grads), _flat(ref.grads), rtol=1e-3, atol=1e-3 * float(_flat(ref.grads).abs().max()))


def test_gr_step_and_flooding_grads():
    model, batch = _mlp(4)
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    direction = gr.fd_gr_grads(model, _mse, batch, 0.1, 0.1).grads
    loss = gr.gr_step(model, opt, _mse, batch, "fd_gr", gamma=0.1, eps=0.1)
    for p, p0, d in zip(model.parameters(), before, direction):
        assert_close(p, p0 - 0.1 * d, n_ops=10)
    assert float(loss) > 0
    L = float(gr.loss_gradient(model, _mse, batch).loss)
    _, g = gr.loss_gradient(model, _mse, batch)
    below = gr.flooding_grads(model, _mse, batch, L + 1).grads
    above = gr.flooding_grads(model, _mse, batch, L - 1).grads
    assert_close(_flat(below), -_flat(g))
    assert_close(_flat(above), _flat(g))


@pytest.mark.seeded
def test_train_gr_and_fd_gr_track_each_other_and_reduce_the_loss():
    runs = {}
    for method, eps in (("gr", None), ("fd_gr", 1e-3)):
        model, batch = _mlp(5)
        runs[method] = gr.train(model, _mse, batch, method, lr=0.2, steps=30, gamma=0.05, eps=eps)
    assert runs["gr"]["losses"][-1] < runs["gr"]["losses"][0]
    # per-step difference O(gamma eps) = 5e-5 relative, accumulated over 30 contracting steps
    assert_close(runs["fd_gr"]["losses"], runs["gr"]["losses"], rtol=1e-3)


def test_train_reports_divergence():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1).double()
    x, y = torch.randn(16, 4, dtype=torch.float64) * 10, torch.randn(16, 1, dtype=torch.float64)
    out = gr.train(model, _mse, (x, y), "gd", lr=10.0, steps=500)
    assert out["diverged"] and 1 <= out["diverged_step"] <= 500
    assert len(out["losses"]) == out["diverged_step"] + 1


# --------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize("call, name", [
    (lambda g, t: gr.fd_gr_gradient(g, t, -0.1, 0.1), "gamma"),
    (lambda g, t: gr.fd_gr_gradient(g, t, float("nan"), 0.1), "gamma"),
    (lambda g, t: gr.fd_gr_gradient(g, t, 0.1, 0.0), "eps"),
    (lambda g, t: gr.fd_gr_gradient(g, t, 0.1, float("nan")), "eps"),
    (lambda g, t: gr.central_fd_gr_gradient(g, t, 0.1, float("inf")), "eps"),
    (lambda g, t: gr.gr_gradient(g, lambda a, v: v, t, -1.0), "gamma"),
    (lambda g, t: gr.sam_gradient(g, t, -1.0), "rho"),
    (lambda g, t: gr.fd_error_order("sideways"), "kind"),
    (lambda g, t: gr.flooded_gd(lambda a: a.sum(-1), g, t, 0.0, 0.0, 3), "lr"),
    (lambda g, t: gr.flooded_gd(lambda a: a.sum(-1), g, t, float("nan"), 0.1, 3), "b"),
    (lambda g, t: gr.flooded_gd(lambda a: a.sum(-1), g, t, np.array([0.0, np.inf]), 0.1, 3), "b"),
    (lambda g, t: gr.flooding_gradient(t.sum(-1), g(t), float("inf")), "b"),
    (lambda g, t: gr.mlp_problem(dtype="float33"), "dtype"),
    (lambda g, t: gr.quartic_problem("numpy", seed=-1), "seed"),
])
def test_bad_array_input_names_the_parameter(call, name):
    with pytest.raises(ValueError, match=rf"^{name}[= ]"):
        call(lambda t: 2 * t, np.ones((2, 3)))


@pytest.mark.parametrize("kwargs, name", [
    (dict(method="fd_gr", gamma=-1.0, eps=0.1), "gamma"),
    (dict(method="fd_gr", gamma=0.1, eps=0.0), "eps"),
    (dict(method="fd_gr", gamma=0.1, eps=None), "eps"),
    (dict(method="central_fd_gr", gamma=0.1, eps=float("nan")), "eps"),
    (dict(method="gr", gamma=float("inf")), "gamma"),
    (dict(method="flooding", b=float("nan")), "b"),
    (dict(method="flooding"), "b"),
    (dict(method="newton"), "method"),
])
def test_bad_torch_input_names_the_parameter(kwargs, name):
    model, batch = _mlp()
    with pytest.raises(ValueError, match=rf"^{name}="):
        gr.method_grads(model, _mse, batch, **kwargs)


def test_nan_in_batch_is_rejected():
    model, (x, y) = _mlp()
    x[0, 0] = float("nan")
    with pytest.raises(ValueError, match="batch inputs contains NaN"):
        gr.fd_gr_grads(model, _mse, (x, y), 0.1, 0.1)
    with pytest.raises(ValueError, match="pair"):
        gr.exact_gr_grads(model, _mse, x, 0.1)


# --------------------------------------------------------------------------------------------
# the claims off their defaults


def test_claims_measure_orders_in_float64_even_when_asked_for_float32():
    import solvable

    v = solvable.get("gr.finite_difference_error").check(backend="torch", dtype="float32")
    assert v.passed, v
    v = solvable.get("gr.fd_is_unnormalized_sam").check(backend="torch", dtype="float32")
    assert v.passed, v


def test_flooding_claim_fails_on_a_quadratic_where_the_residual_vanishes():
    """On a pure quadratic (kappa -> 0) D^3L = 0: the eta^3 term is gone and the residual is pure
    round-off, so the claim's order-3 fit cannot be made there (a check fails, it does not pass
    by accident)."""
    be = get_backend("numpy")
    model, theta = gr.quartic_problem(be, seed=0, runs=4, d=4, kappa=0.0)
    c = gr.flooding_residual_curves(model, theta, [1e-3, 1e-2, 1e-1], be)
    assert np.all(c["ascent_first"]["rel_roundoff"] > 1e-2)  # every point would be dropped
    import solvable

    claim = solvable.get("gr.flooding_is_fd_gr")
    v = claim.check(claim.params(kappa=1e-12))  # D^3L ~ 1e-12: the eta^3 term drowns in round-off
    assert not v.checks["enough_points"] and not v.passed, v


def test_sam_claim_measures_a_linear_law_that_can_fail():
    """The identity at eps = gamma is the zero of g_FD - SAM = a C0 + O(a^2), a = 1 - gamma/eps:
    the gap is measured to grow linearly in |a| with the derived coefficient, and a wrong
    finite-difference formula (coefficient (1 - gamma/eps)^2 on g) changes the slope and fails."""
    import solvable

    be = get_backend("numpy")
    model, theta = gr.quartic_problem(be, seed=0, runs=4, d=4)
    gamma = 0.2
    c0 = np.linalg.norm(gr.sam_gap_linear_coefficient(model.grad, model.hvp, theta, gamma), axis=-1)
    c = gr.sam_gap_curves(model, theta, gamma, [1e-5, 1e-4], be)
    # gap / |a| -> ||C0||: within the a^2 term (rho <= 1e-4 * ratio) and round-off
    assert_close(c["gap"] / c["a"], np.stack([c0, c0], 1), rtol=1e-3)
    assert np.all(c["identity_gap"] == 0.0)  # coefficients exactly 0 and 1: bitwise SAM
    claim = solvable.get("gr.fd_is_unnormalized_sam")
    assert claim.check().passed

    real = gr.fd_gr_gradient

    def offset(grad_fn, theta, gamma, eps):  # coefficients off by 1e-8: no exact zero at eps = gamma
        g = grad_fn(theta)
        c = gamma / eps + 1e-8
        return (1.0 - c) * g + c * grad_fn(theta + eps * g)

    def quadratic(grad_fn, theta, gamma, eps):  # a gap quadratic in a: slope 2
        a = 1.0 - gamma / eps
        hvp = gr.QuarticModel.hvp.__get__(model_of[0])
        c0 = gr.sam_gap_linear_coefficient(grad_fn, hvp, theta, gamma)
        return real(grad_fn, theta, gamma, eps) + (a * a - a) * c0

    p = claim.params()
    model_of = [gr.quartic_problem("numpy", p.instance, p.runs, p.d, p.kappa)[0]]
    verdicts = {}
    for wrong in (offset, quadratic):
        try:
            gr.fd_gr_gradient = wrong
            verdicts[wrong.__name__] = claim.check(p)
        finally:
            gr.fd_gr_gradient = real
    v = verdicts["offset"]  # caught by the identity check (the slope over a >= 1e-6 barely moves)
    assert not v.passed and not v.checks["identity_at_eps_equal_gamma"], v.info
    v = verdicts["quadratic"]  # caught by the fitted slope
    assert not v.passed and abs(v.measured[0] - 1.0) > v.tolerance, (v.measured, v.tolerance)
