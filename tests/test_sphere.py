"""Tests of solvable.models.sphere: closed forms against simulators, limits, bad input, divergence,
backends and seeds. The generic property tests of the claims are in tests/test_claims.py."""

from __future__ import annotations

import math

import numpy as np
import pytest

from solvable.models import sphere
from solvable.backend import get_backend
from solvable.claims import get
from solvable.stats import loglog_slope, mean_sem
from solvable.testing import assert_close


# ---- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, name", [
    (dict(mode="projected", elr=0.0), "elr"),
    (dict(mode="fixed_elr", elr=-1.0), "elr"),
    (dict(mode="sgd", eta=0.0), "eta"),
    (dict(mode="sgd", eta=-0.1), "eta"),
    (dict(mode="sgd", eta=0.1, wd=-1e-3), "wd"),
    (dict(mode="sgd", eta=0.1, momentum=1.0), "momentum"),
    (dict(mode="sgd", eta=0.1, noise=-1.0), "noise"),
    (dict(mode="sgd", eta=0.1, noise_kind="gaussian"), "noise_kind"),
    (dict(mode="sphere", eta=0.1), "mode"),
    (dict(mode="projected", elr=0.1, wd=0.1), "wd"),
    (dict(mode="sgd"), "eta"),
])
def test_simulate_rejects_bad_input(kwargs, name):
    a = sphere.rayleigh_spectrum(0.0, 1.0, 4)
    with pytest.raises(ValueError, match=name):
        sphere.simulate(a, np.ones((2, 4)), 3, **kwargs)


def test_zero_weight_vector_is_rejected():
    a = sphere.rayleigh_spectrum(0.0, 1.0, 3)
    w0 = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match="zero weight vector"):
        sphere.simulate(a, w0, 3, mode="sgd", eta=0.1)
    with pytest.raises(ValueError, match="zero weight vector"):
        sphere.rayleigh_grad(np.zeros(3), a)
    with pytest.raises(ValueError, match="zero weight vector"):
        sphere.rayleigh_loss(np.zeros((1, 3)), a)
    with pytest.raises(ValueError, match="zero weight"):
        sphere.simulate_bn_gd(np.zeros((1, 4, 2)), np.ones((5, 2)), np.eye(2)[[0, 1, 0, 1, 0]], np.ones((2, 4)),
                              2, eta=0.1, wd=0.0)


@pytest.mark.parametrize("fn, args, name", [
    (sphere.rayleigh_spectrum, (1.0, 1.0, 3), "a_max"),
    (sphere.rayleigh_spectrum, (2.0, 1.0, 3), "a_max"),
    (sphere.rayleigh_spectrum, (0.0, 1.0, 1), "d"),
    (sphere.projected_threshold, (1.0, 0.5), "a_max"),
    (sphere.wd_equilibrium, (0.0, 0.1), "eta"),
    (sphere.wd_equilibrium, (0.1, -0.1), "wd"),
    (sphere.wd_equilibrium, (2.0, 0.6), "eta\\*wd"),
    (sphere.wd_equilibrium_momentum, (0.1, 0.1, 1.0), "mu"),
    (sphere.lyapunov_at_minimum, (0.0, 1.0, 1.0, 5), "elr"),
    (sphere.lyapunov_at_minimum, (0.1, 1.0, 1.0, 2), "d"),
    (sphere.manifold_sharpness, (0.1, 0.0), "alpha"),
    (sphere.effective_lr, (0.0, 1.0), "lr"),
    (sphere.effective_lr, (0.1, 0.0), "rho0"),
    (sphere.scale_invariance_ratios, (0.0,), "c"),
])
def test_closed_forms_reject_bad_input(fn, args, name):
    with pytest.raises(ValueError, match=name):
        fn(*args)


def test_claim_params_reject_bad_input():
    c = get("sphere.convergence_threshold")
    with pytest.raises(ValueError, match="a_max"):
        c.make_params(a_min=2.0, a_max=1.0)
    with pytest.raises(ValueError, match="lr"):
        get("sphere.fixed_elr_is_projected_sgd").make_params(lr=0.0)
    with pytest.raises(ValueError, match="n_steps"):
        get("sphere.fixed_elr_is_projected_sgd").make_params(n_steps=10**6)
    with pytest.raises(ValueError, match="eta"):
        get("sphere.wd_equilibrium").make_params(eta=-1.0)
    with pytest.raises(ValueError, match="wd"):
        get("sphere.wd_equilibrium").make_params(wd=-1.0)


# ---- the model ---------------------------------------------------------------------------------


def test_rayleigh_gradient_matches_autograd_and_is_scale_invariant():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    a = sphere.rayleigh_spectrum(-1.0, 2.0, 6)
    w = rng.standard_normal((5, 6))
    wt = torch.tensor(w, requires_grad=True)
    L = sphere.rayleigh_loss(wt, torch.tensor(a))
    (g,) = torch.autograd.grad(L.sum(), wt)
    assert_close(sphere.rayleigh_grad(w, a), g, n_ops=100, atol=1e-15, reason="gradient entries near zero")
    assert_close(sphere.rayleigh_grad(3.0 * w, a), sphere.rayleigh_grad(w, a) / 3.0, n_ops=100, atol=1e-15,
                 reason="entries near zero")
    g = sphere.rayleigh_grad(w, a)
    # <grad L, w> = 0 exactly; in floats, round-off of a d-term dot product relative to |g| |w|
    assert np.all(np.abs(np.sum(g * w, axis=1)) <= get_backend("numpy").roundoff(100)
                  * np.linalg.norm(g, axis=1) * np.linalg.norm(w, axis=1))


def test_bn_gradient_matches_autograd():
    torch = pytest.importorskip("torch")
    be = get_backend("torch")
    X, Y, W2, W0 = sphere.bn_task(be, 3)
    W = torch.stack([W0, 0.3 * W0 + 0.1]).requires_grad_(True)

    def ref(W, eps):
        z = torch.einsum("np,khp->knh", X, W)
        zc = z - z.mean(1, keepdim=True)
        hz = zc / torch.sqrt((zc * zc).mean(1, keepdim=True) + eps)
        return -(torch.log_softmax(torch.relu(hz) @ W2.T, -1) * Y).sum((1, 2)) / X.shape[0]

    for eps in (0.0, 1e-5):
        L, g = sphere.bn_net_loss_grad(W.detach(), X, Y, W2, eps=eps)
        Lr = ref(W, eps)
        (gr,) = torch.autograd.grad(Lr.sum(), W)
        assert_close(L, Lr, n_ops=1e3)
        assert_close(g, gr, rtol=1e-10, atol=1e-13, reason="hand-written backward vs autograd; entries near 0")
    # scale invariance of the network loss (eps = 0): L(cW) = L(W), grad(cW) = grad(W)/c
    L1, g1 = sphere.bn_net_loss_grad(W.detach(), X, Y, W2)
    L2, g2 = sphere.bn_net_loss_grad(4.0 * W.detach(), X, Y, W2)
    assert_close(L2, L1, n_ops=1e3)
    assert_close(4.0 * g2, g1, rtol=1e-10, atol=1e-14, reason="round-off; entries near zero")


def test_bn_gradient_numpy_equals_torch():
    be_n, be_t = get_backend("numpy"), get_backend("torch")
    X, Y, W2, W0 = sphere.bn_task(be_n, 1)
    Ln, gn = sphere.bn_net_loss_grad(W0[None], X, Y, W2)
    Lt, gt = sphere.bn_net_loss_grad(*(be_t.asarray(v) for v in (W0[None], X, Y, W2)))
    assert_close(Lt, Ln, n_ops=1e3)
    assert_close(gt, gn, rtol=1e-10, atol=1e-14, reason="entries near zero")


# ---- the simulator -----------------------------------------------------------------------------


def test_projected_gd_converges_below_and_not_above_threshold():
    a = sphere.rayleigh_spectrum(1.0, 3.0, 6)
    thr = sphere.projected_threshold(1.0, 3.0)
    w0 = sphere._near_e1(get_backend("numpy"), 2, 6, 1e-6, 0)
    r = sphere.simulate(a, w0, 3000, mode="projected", elr=np.array([0.95 * thr, 1.05 * thr]), record_every=3000)
    off = np.linalg.norm(r.w[:, 1:], axis=1)
    # below: the slowest multiplier |1 - 0.95 * 2| = 0.9 shrinks 1e-6 to ~1e-143 in 3000 steps (the
    # 1e-12 bound is far above it); above: |1 - 1.05 * 2| = 1.1 grows it until it saturates at O(1)
    assert off[0] < 1e-12 and off[1] > 1e-3


def test_same_seed_same_numbers_and_seeds_differ(backend):
    a = sphere.rayleigh_spectrum(0.0, 1.0, 5)
    w0 = sphere.random_directions(backend, 4, 5, 7)
    kw = dict(mode="sgd", eta=0.3, wd=0.01, momentum=0.5, noise=0.5, noise_kind="isotropic", backend=backend)
    r1 = sphere.simulate(a, w0, 50, seed=1, **kw)
    r2 = sphere.simulate(a, w0, 50, seed=1, **kw)
    r3 = sphere.simulate(a, w0, 50, seed=2, **kw)
    np.testing.assert_array_equal(backend.to_numpy(r1.w), backend.to_numpy(r2.w))
    assert not np.allclose(backend.to_numpy(r1.w), backend.to_numpy(r3.w))


def test_numpy_and_torch_agree_without_noise(backend):
    """The same deterministic program on each backend (float32 on CUDA: looser, by round-off)."""
    a = sphere.rayleigh_spectrum(0.0, 2.0, 8)
    w0 = np.random.default_rng(4).standard_normal((6, 8))
    # eta/(1 - mu) / ||w||^2 * (a_max - a_min) ~ 0.05 < 2: a contracting iteration, round-off stays small
    ref = sphere.simulate(a, w0, 200, mode="sgd", eta=0.1, wd=0.01, momentum=0.5)
    got = sphere.simulate(a, backend.asarray(w0), 200, mode="sgd", eta=0.1, wd=0.01, momentum=0.5, backend=backend)
    assert_close(got.w, ref.w, rtol=backend.roundoff(2e4), atol=backend.roundoff(2e4),
                 reason="round-off over 200 contracting steps; atol for near-zero coordinates")
    assert got.loss.shape == ref.loss.shape == (201, 6)


def test_divergence_is_reported_not_nan():
    """eta wd > 2 makes |1 - eta wd| > 1: the norm overflows; the run is frozen and flagged."""
    a = sphere.rayleigh_spectrum(0.0, 1.0, 3)
    w0 = np.ones((2, 3))
    r = sphere.simulate(a, w0, 2000, mode="sgd", eta=1.0, wd=np.array([0.0, 5.0]))
    assert r.diverged.tolist() == [False, True]
    assert 100 < r.diverged_step[1] < 2000 and r.diverged_step[0] == -1
    assert np.all(np.isfinite(r.sq_norm)) and np.all(np.isfinite(r.loss))


def test_recording_shapes_and_directions():
    a = sphere.rayleigh_spectrum(0.0, 1.0, 4)
    r = sphere.simulate(a, np.ones((3, 4)), 10, mode="fixed_elr", elr=0.2, rho0=2.0, record_every=5,
                        keep_directions=True)
    assert r.loss.shape == (3, 3) and r.angle.shape == (2, 3) and r.directions.shape == (3, 3, 4)
    assert_close(r.sq_norm, np.full((3, 3), 4.0), n_ops=10)
    assert r.steps.tolist() == [0, 5, 10]


def test_fixed_elr_directions_do_not_depend_on_rho0():
    a = sphere.rayleigh_spectrum(1.0, 3.0, 6)
    w0 = np.random.default_rng(1).standard_normal((4, 6))
    kw = dict(mode="fixed_elr", elr=0.4, noise=0.3, keep_directions=True, seed=5)
    d1 = sphere.simulate(a, w0, 100, rho0=0.2, **kw).directions
    d2 = sphere.simulate(a, w0, 100, rho0=7.0, **kw).directions
    # elr = 0.4 < 2/(a_max - a_min) = 1 contracts, so round-off does not grow: ~10 d eps per step,
    # scaled by rho0 or 1/rho0 (the claim's own round-off budget); atol: coordinates near zero
    be = get_backend("numpy")
    assert_close(d1, d2, rtol=be.roundoff(10 * 6 * 100 * 7.0), atol=be.roundoff(10 * 6 * 100 * 7.0),
                 reason="round-off of a contracting iteration; coordinates near zero")


def test_fixed_elr_branch_equals_projected_branch():
    """The simulator's two branches (renormalised SGD at lr = elr rho0^2, projected SGD with step elr) give
    the same directions up to round-off: a test of the simulator (the claim checks the ELR independently,
    on a BatchNorm network with autograd)."""
    a = sphere.rayleigh_spectrum(1.0, 3.0, 10)
    w0 = sphere.random_directions(get_backend("numpy"), 16, 10, 7) * 0.7
    kw = dict(noise=0.5, noise_kind="loss_scaled", keep_directions=True, seed=3)
    r1 = sphere.simulate(a, w0, 200, mode="fixed_elr", elr=0.3, rho0=5.0, **kw)
    r2 = sphere.simulate(a, w0, 200, mode="projected", elr=0.3, **kw)
    tol = get_backend("numpy").roundoff(10 * 10 * 200 * 5.0)
    assert_close(r1.directions, r2.directions, rtol=tol, atol=tol, reason="round-off; coordinates near zero")


def test_batched_bn_losses_equal_one_network_at_a_time():
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(0)
    W = torch.randn(3, 6, 4, generator=g, dtype=torch.float64)
    X, y, w2 = (torch.randn(*s, generator=g, dtype=torch.float64) for s in ((16, 4), (16,), (6,)))
    batched = sphere._bn_mlp_losses(W, X, y, w2)
    single = torch.stack([sphere._bn_mlp_loss(W[i], X, y, w2) for i in range(3)])
    assert_close(batched, single, n_ops=100)
    # and the loss is scale-invariant row-block-wise: W -> c W leaves every network's loss
    assert_close(sphere._bn_mlp_losses(3.7 * W, X, y, w2), batched, n_ops=100)


def test_periodic_slope_band_error():
    err = sphere._slope_band_error
    assert err(-1.0, -1.1) == 0.0 and err(-1.0, -1.0) == 0.0
    assert math.isclose(err(-1.0, -0.9), 0.1) and math.isclose(err(-1.0, -1.35), 0.1)
    assert math.isclose(err(-0.5, -1.0), 0.25)  # the -1/2 law's band ends at -0.75


# ---- weight-decay equilibrium -------------------------------------------------------------------


def test_wd_equilibrium_limits():
    for k in (1e-6, 1e-4):
        x, elr, ang = sphere.wd_equilibrium(1.0, k, 1.0)
        assert math.isclose(ang, math.sqrt(2 * k), rel_tol=k)  # arccos(1 - k) = sqrt(2k)(1 + k/12 + ...)
        assert math.isclose(elr, math.sqrt(2 * k), rel_tol=k)
    # momentum mu = 0 reduces to the plain formula
    assert_close(sphere.wd_equilibrium_momentum(0.3, 0.2, 0.0, 2.0), sphere.wd_equilibrium(0.3, 0.2, 2.0), n_ops=100)


def test_wd_equilibrium_momentum_against_simulation():
    """Momentum: the moment closure E 1/||w||^2 ~ 1/E||w||^2 is approximate. By Jensen,
    E[1/x] = (1 + cv^2 + ...)/E[x] with cv^2 = Var x/(E x)^2, and the fixed point E x^2 ~ K_1 (1 + cv^2)
    puts E x at x* (1 + cv^2/2): allowed cv^2 (the second-order term, doubled for higher orders) plus
    4 standard errors of the time average (over the 16 independent runs). The mean angle, a
    nonlinear function of the same fluctuating moments, gets its own cv^2 the same way."""
    eta, wd, mu, d = 0.2, 0.1, 0.5, 64
    r = sphere.simulate(np.zeros(d), np.random.default_rng(0).standard_normal((16, d)), 3000, mode="sgd",
                        eta=eta, wd=wd, momentum=mu, noise=1.0, noise_kind="constant_norm", seed=1)
    xs, angs = r.sq_norm[1500:], r.angle[1500:]
    x, ang = xs.mean(), angs.mean()
    x_pred, _, ang_pred = sphere.wd_equilibrium_momentum(eta, wd, mu, 1.0)
    for val, pred, samples in ((x, x_pred, xs), (ang, ang_pred, angs)):
        cv2 = samples.var() / val**2
        _, se = mean_sem(samples.mean(axis=0))  # per-run time averages are independent
        assert abs(val / pred - 1) <= cv2 + 4 * se / val, (val, pred, cv2, se)
    # 1 - cos = eta wd/(1 + mu) + O((eta wd)^2) (proofs_check): relative O(eta wd) = 0.02
    assert abs(ang_pred / math.sqrt(2 * eta * wd / (1 + mu)) - 1) < eta * wd


# ---- threshold convention ------------------------------------------------------------------------


def test_threshold_halves_with_the_rayleigh_quotient_convention():
    """F(u) = u^T A u (no 1/2) is the 1/2-convention toy with 2A: the bisected threshold is 1/(a_max - a_min)."""
    a = sphere.rayleigh_spectrum(1.0, 3.0, 8)
    elr_c, hw = sphere.bisect_projected_threshold(2 * a)
    assert abs(elr_c - 1.0 / 2.0) <= 2 * hw + 1e-9


# ---- three regimes -------------------------------------------------------------------------------


def test_lyapunov_quadrature_against_monte_carlo():
    rng = np.random.default_rng(0)
    n = 400_000
    for e, s, d in ((0.2, 1.0, 10), (1.0, 1.5, 6)):
        z = rng.standard_normal(n)
        q = rng.chisquare(d - 2, n)
        v = 0.5 * np.log((1 - e + e * s * z) ** 2 + (e * s) ** 2 * q)
        m, se = mean_sem(v)
        assert abs(float(sphere.lyapunov_at_minimum(e, s, 1.0, d)) - m) < 4 * se


@pytest.mark.seeded
def test_regimes_are_ordered_on_the_default_toy():
    c = sphere.classify_regimes(np.array([0.05, 0.5, 50.0]), 1.0, 10, n_runs=64, n_steps=400)
    assert c["regime"][0] == 1 and c["regime"][1] == 2
    assert c["ks_p"][2] > 1e-3


# ---- periodic behaviour --------------------------------------------------------------------------


@pytest.mark.seeded
def test_rayleigh_toy_period_scales_like_inverse_sqrt_not_inverse():
    """The documented finding: on the smooth Rayleigh toy the period's exponent is about -1/2."""
    a = sphere.rayleigh_spectrum(0.0, 1.0, 5)
    ks = np.array([0.004, 0.008, 0.016, 0.032])
    w0 = np.tile(np.random.default_rng(0).standard_normal(5), (len(ks), 1))
    r = sphere.simulate(a, w0, 3000, mode="sgd", eta=0.5, wd=ks / 0.5, noise=1e-8, noise_kind="isotropic")
    periods = [np.mean(np.diff(sphere.spike_onsets(r.sq_norm[:, i], k))[1:]) for i, k in enumerate(ks)]
    fit = loglog_slope(ks, periods)
    # 3 standard errors of the fitted slope: -1 is excluded, -1/2 is not
    assert abs(fit.slope + 1) > 3 * fit.stderr and abs(fit.slope + 0.5) < 3 * fit.stderr, fit


def test_spike_onsets_groups_a_burst():
    x = np.array([10.0, 9, 8, 7, 9, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 5, 4])
    assert sphere.spike_onsets(x, 0.05, quiet=0.1).tolist() == [4, 15]


# ---- sharpness toy -------------------------------------------------------------------------------


def test_sharpness_toy_gradient_and_manifold_hessian():
    torch = pytest.importorskip("torch")
    from torch.func import grad, hessian

    alpha = 1.7

    def L(w):
        u = w / torch.linalg.vector_norm(w)
        return 0.5 * u[2] ** 2 * (1 + alpha * u[0] ** 2)

    w = torch.tensor([0.3, -1.2, 0.4], dtype=torch.float64)
    assert_close(sphere.sharpness_toy_grad(w[None], alpha)[0], grad(L)(w), n_ops=100)
    phi, r = 0.8, 1.9
    wm = torch.tensor([r * math.cos(phi), r * math.sin(phi), 0.0], dtype=torch.float64)
    top = float(torch.linalg.eigvalsh(hessian(L)(wm))[-1])
    assert_close(top * r**2, sphere.manifold_sharpness(phi, alpha), n_ops=100)
    fd = sphere._fd_top_hessian_eig(lambda x: sphere.sharpness_toy_grad(x, alpha), wm[None].numpy().copy())
    assert_close(fd[0], top, rtol=1e-8, reason="central differences, O(h^2) with h = 1e-5 ||w||")


# ---- claims at non-default points and backends ---------------------------------------------------


@pytest.mark.parametrize("claim_id", ["sphere.convergence_threshold", "sphere.wd_equilibrium",
                                      "sphere.fixed_elr_is_projected_sgd", "sphere.sharpness_reduction"])
def test_cheap_claims_on_each_backend(claim_id, backend):
    c = get(claim_id)
    v = c.check(backend=backend)
    assert v.passed, v


@pytest.mark.slow
@pytest.mark.parametrize("claim_id", ["sphere.three_regimes", "sphere.periodic_behavior",
                                      "sphere.scale_invariance"])
def test_expensive_claims_on_each_backend(claim_id, backend):
    v = get(claim_id).check(backend=backend)
    assert v.passed, v


# ---- review additions: input checks, float32, empty records ------------------------------------


@pytest.mark.parametrize("fn, args, name", [
    (sphere.classify_regimes, (np.array([0.1]), 0.0, 10), "sigma"),
    (sphere.classify_regimes, (np.array([0.1]), 1.0, 2), "d"),
    (sphere.measure_regime_12_boundary, (-1.0, 10), "sigma"),
    (sphere.bisect_projected_threshold, (np.ones(3),), "a"),
    (sphere.random_directions, (get_backend("numpy"), 0, 3), "n"),
    (sphere.spike_onsets, (np.ones(4), 0.0), "eta_wd"),
])
def test_helpers_reject_bad_input(fn, args, name):
    with pytest.raises(ValueError, match=name):
        fn(*args)


def test_zero_weight_message_names_the_row():
    with pytest.raises(ValueError, match=r"w0 .*row 1 has norm 0\.0.*\(0, inf\)"):
        sphere.simulate(np.ones(3), np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]), 2, mode="sgd", eta=0.1)


def test_no_steps_gives_empty_angle_record_on_the_backend(backend):
    r = sphere.simulate(np.ones(3), backend.asarray(np.ones((2, 3))), 0, mode="sgd", eta=0.1, backend=backend)
    assert tuple(r.angle.shape) == (0, 2)
    assert str(getattr(r.angle, "device", "cpu")).split(":")[0] == str(getattr(r.w, "device", "cpu")).split(":")[0]


@pytest.mark.parametrize("claim_id", ["sphere.three_regimes", "sphere.sharpness_reduction"])
def test_claims_in_float32(claim_id):
    """float32 (the CUDA default), run on the CPU: the 1/2 boundary starts at a scale float32 can
    hold (1e-80 underflows to 0), the finite-difference Hessian uses a float32-sized step."""
    pytest.importorskip("torch")
    v = get(claim_id).check(backend="torch", dtype="float32")
    assert v.passed, v


@pytest.mark.seeded
def test_bn_gd_divergence_is_reported_at_its_step():
    """eta wd = 5 multiplies W by -4 per step: ||W||^2 overflows (W itself stays finite a while
    longer); the run is flagged at the first recorded step whose squared norm is not finite."""
    be = get_backend("numpy")
    X, Y, W2, W0 = sphere.bn_task(be, 0)
    r = sphere.simulate_bn_gd(np.stack([W0, W0]), X, Y, W2, 300, eta=1.0, wd=np.array([0.0, 5.0]))
    assert r["diverged"]
    k = r["diverged_step"]
    assert np.isfinite(r["sq_norm"][:k]).all() and not np.isfinite(r["sq_norm"][k]).all()
    # 16^k ||W0||^2 reaches the float64 limit ~1.8e308 near k = (308 - log10 ||W0||^2) / log10 16
    k_pred = (math.log10(np.finfo(float).max) - math.log10(float((W0 * W0).sum()))) / math.log10(16)
    assert abs(k - k_pred) <= 1, (k, k_pred)


def test_bn_gradient_with_one_readout_per_network():
    """A (K, c, h) read-out gives network k exactly what the shared-read-out call gives it alone."""
    be = get_backend("numpy")
    tasks = [sphere.bn_task(be, s) for s in (1, 2)]
    W = np.stack([t[3] for t in tasks])
    X, Y, W2 = (np.stack([t[i] for t in tasks]) for i in (0, 1, 2))
    L, g = sphere.bn_net_loss_grad(W, X, Y, W2)
    for k, (Xk, Yk, W2k, W0k) in enumerate(tasks):
        Lk, gk = sphere.bn_net_loss_grad(W0k[None], Xk, Yk, W2k)
        assert_close(L[k], Lk[0], n_ops=1e3)
        assert_close(g[k], gk[0], n_ops=1e3, atol=1e-15, reason="same operations batched; entries near zero")


@pytest.mark.parametrize("backend_name", ["numpy", "torch"])
def test_divergence_test_on_the_device_gives_identical_results(backend_name, monkeypatch):
    """simulate() tests divergence on the device (a mask every step, read by the host once) for
    arrays off the CPU, and on the host otherwise: forcing each path on the CPU gives bitwise the
    same run, diverging and healthy rows alike (momentum buffer reset, frozen weights, the step)."""
    be = get_backend(backend_name)
    a = sphere.rayleigh_spectrum(0.0, 1.0, 5)
    w0 = be.asarray(np.random.default_rng(3).standard_normal((4, 5)))
    kw = dict(mode="sgd", eta=1.0, wd=np.array([0.0, 5.0, 0.01, 8.0]), momentum=0.3, noise=0.2,
              noise_kind="isotropic", record_every=7, backend=be, seed=4)
    runs = {}
    for on_device in (False, True):
        monkeypatch.setattr(sphere, "_DEVICE_DIVERGENCE", on_device)
        runs[on_device] = sphere.simulate(a, w0, 700, **kw)
    host, dev = runs[False], runs[True]
    assert host.diverged.tolist() == [False, True, False, True]
    np.testing.assert_array_equal(dev.diverged, host.diverged)
    np.testing.assert_array_equal(dev.diverged_step, host.diverged_step)
    for field in ("w", "buf", "loss", "sq_norm", "angle"):
        np.testing.assert_array_equal(be.to_numpy(getattr(dev, field)), be.to_numpy(getattr(host, field)), field)
