"""solvable.models.kernels: eigenlearning closed form vs batched kernel ridge regression."""

import itertools
import math

import numpy as np
import pytest

from solvable.backend import get_backend
from solvable.models import kernels
from solvable.stats import mean_sem


def test_kappa_solves_its_equation_and_limits():
    lam, _ = kernels.spectrum(1.5, 2.0, 300)
    for n, ridge in ((10, 0.0), (50, 0.1), (299, 0.0)):
        k = kernels.solve_kappa(lam, n, ridge)
        assert np.sum(lam / (lam + k)) + ridge / k == pytest.approx(n, rel=1e-10)
    # n -> 0: nothing learned, E -> sum v^2 + sigma2
    E, S = kernels.eigenlearning_error(1.5, 2.0, 0.1, 1e-9, 300, 0.3)
    assert E == pytest.approx(float(np.sum(kernels.spectrum(1.5, 2.0, 300)[1])) + 0.3, rel=1e-6)


def test_bad_input_names_parameter_value_and_range():
    with pytest.raises(ValueError, match=r"a=1.0 is out of range: a must be a finite number in \(1, inf\)"):
        kernels.spectrum(1.0, 2.0, 10)
    with pytest.raises(ValueError, match=r"ridge=-0.1 is out of range: ridge must be a finite number in \[0, inf\)"):
        kernels.solve_kappa([1.0, 0.5], 1, -0.1)
    with pytest.raises(ValueError, match=r"sigma2=-1.0 is out of range"):
        kernels.eigenlearning_error(1.5, 2.0, 0.1, 10, 50, -1.0)
    with pytest.raises(ValueError, match=r"n=60.0 is out of range for ridge=0 and modes=50: n must be in \(0, 50\)"):
        kernels.solve_kappa(np.ones(50), 60, 0.0)
    with pytest.raises(ValueError, match=r"a=0.5 is out of range"):
        kernels.LearningCurveParams(a=0.5)
    with pytest.raises(ValueError, match=r"ridge=-1 is out of range"):
        kernels.LearningCurveParams(ridge=-1)


def test_ridgeless_learnability_is_conserved_exactly(backend):
    # tr[K^{-1} K] = n for every draw: the conservation law holds at finite n, not only on average
    _, T = kernels.krr_learning_curve(1.5, 2.0, 0.0, 20, 100, 0.1, 4, backend, seed=0)
    tol = 1e-3 if backend.dtype == "float32" else 1e-8
    np.testing.assert_allclose(backend.to_numpy(T), 20.0, rtol=tol)


def test_numpy_and_torch_agree_in_distribution():
    out = []
    for name in ("numpy", "torch"):
        E, _ = kernels.krr_learning_curve(1.5, 1.6, 0.05, 32, 200, 0.3, 400, name, seed=0)
        out.append(mean_sem(get_backend(name).to_numpy(E)))
    (m1, s1), (m2, s2) = out
    assert abs(m1 - m2) < 4 * math.hypot(s1, s2)


def test_same_seed_same_numbers(backend):
    a = kernels.krr_learning_curve(1.5, 1.6, 0.05, 16, 50, 0.3, 3, backend, seed=4)
    b = kernels.krr_learning_curve(1.5, 1.6, 0.05, 16, 50, 0.3, 3, backend, seed=4)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(backend.to_numpy(x), backend.to_numpy(y))


def test_learning_curve_slope_follows_the_formula():
    # the simulated data-scaling exponent over n = 16..128 matches the slope of the eigenlearning curve
    from solvable.stats import loglog_slope
    ns = [16, 32, 64, 128]
    sim = [kernels.krr_learning_curve(1.5, 2.0, 1e-3, n, 400, 0.0, 60, "numpy", seed=n)[0].mean() for n in ns]
    th = [kernels.eigenlearning_error(1.5, 2.0, 1e-3, n, 400, 0.0)[0] for n in ns]
    assert abs(loglog_slope(ns, sim).slope - loglog_slope(ns, th).slope) < 0.1


@pytest.mark.slow
def test_eigenlearning_finite_size():
    """The measured error model behind EIGEN_BIAS_C, at the corners of the claim's domain."""
    for a, b, r, s2 in itertools.product([1.2, 2.5], [1.2, 3.0], [0.01, 0.3], [0.1, 0.5]):
        for n in (24, 96):
            E, T = kernels.krr_learning_curve(a, b, r, n, 300, s2, 2000, "numpy", seed=1)
            Ep, S = kernels.eigenlearning_error(a, b, r, n, 300, s2)
            mE, sE = mean_sem(E)
            assert n * (abs(mE - Ep) - 3 * sE) / Ep < kernels.EIGEN_BIAS_C
            assert n * abs(T.mean() - S) / S < kernels.EIGEN_BIAS_C


def test_ntk_drift_run_limits_and_seeds():
    r = kernels.ntk_drift_run(32, 4, 8, 3, 0, 1.0, alphas=(1.0, 4.0))
    assert np.all(r["drift"] == 0) and np.all(r["lin_error"] < 1e-12)  # no step: no drift, no gap
    a = kernels.ntk_drift_run(32, 4, 8, 3, 5, 1.0, seed=3)
    b = kernels.ntk_drift_run(32, 4, 8, 3, 5, 1.0, seed=3)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_lazy_gap_and_drift_fall_over_seeds():
    # statements over 8 independent runs each, not one seed's numbers
    r = kernels.ntk_drift_run(32, 8, 12, 4, 30, 3.0, alphas=(1.0, 8.0), seed=1)
    assert np.mean(r["lin_error"][1] < r["lin_error"][0]) >= 0.9
    wide = kernels.ntk_drift_run(256, 8, 12, 4, 30, 3.0, seed=2)
    assert wide["drift"].mean() < r["drift"].mean()


def test_jackknife_slope_of_an_exact_power_law():
    x = np.array([1.0, 2.0, 4.0, 8.0])
    s, se = kernels.jackknife_slope(x, np.outer(np.linspace(1, 2, 6), x ** -1.0))
    assert s == pytest.approx(-1.0) and se == pytest.approx(0.0, abs=1e-12)


def test_ntk_drift_bad_input():
    with pytest.raises(ValueError, match=r"width=0 is out of range"):
        kernels.ntk_drift_run(0, 4, 8, 3, 1, 1.0)
    with pytest.raises(ValueError, match=r"min_width=4 is out of range"):
        kernels.DriftParams(min_width=4)


@pytest.mark.gpu
@pytest.mark.skipif(not __import__("solvable.backend", fromlist=["x"]).cuda_available(), reason="CUDA not available")
def test_ntk_drift_on_cuda_at_larger_widths():
    import torch
    from solvable.stats import loglog_slope
    widths = [256, 512, 1024, 2048]
    d = [kernels.ntk_drift_run(w, 32, 32, 8, 60, 3.0, seed=k, device="cuda", dtype=torch.float64)["drift"].mean()
         for k, w in enumerate(widths)]
    assert abs(loglog_slope(widths, d).slope + 1.0) < 0.25


def test_two_layer_entk_matches_torch_func_jacobian():
    import torch

    from solvable.tools.kernels import empirical_ntk

    g = torch.Generator().manual_seed(1)
    W, a = torch.randn(7, 3, generator=g, dtype=torch.float64), torch.randn(7, generator=g, dtype=torch.float64)
    x = torch.randn(5, 3, generator=g, dtype=torch.float64)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.W, self.a = torch.nn.Parameter(W.clone()), torch.nn.Parameter(a.clone())

        def forward(self, z):
            return kernels._mlp((self.W, self.a), z, torch.tanh)

    K = kernels.two_layer_entk(W, a, x, x)
    assert torch.allclose(K, empirical_ntk(Net(), x, method="jacobian"), atol=1e-12)
    assert torch.allclose(K, K.T) and torch.linalg.eigvalsh(K).min() > -1e-12


def test_network_vs_ntk_limits_and_seeds():
    r = kernels.network_vs_ntk_run([8, 16], 4, 5, 16, 0, 1.0, seed=2)
    # zero steps: the centred network predicts 0, its test error is the mean y^2 of the shared test set
    assert np.allclose(r["net"], r["net"][:, :1]) and np.all(r["net"] > 0.2) and np.all(r["train"] > 0.1)
    again = kernels.network_vs_ntk_run([8, 16], 4, 5, 16, 0, 1.0, seed=2)
    assert np.array_equal(r["ntk"], again["ntk"]) and np.array_equal(r["net"], again["net"])
    with pytest.raises(ValueError, match=r"lr=-1.0 is out of range"):
        kernels.network_vs_ntk_run([8, 16], 4, 5, 16, 10, -1.0)
    with pytest.raises(ValueError, match=r"seeds=1 is out of range"):
        kernels.network_vs_ntk_run([8, 16], 1, 5, 16, 10, 1.0)


def test_network_exponent_more_negative_over_seeds():
    import solvable
    from solvable.backend import get_backend

    c = solvable.get("kernels.network_beats_ntk")
    be = get_backend("torch")
    ms = [c.measured(c.params(), be, s) for s in (11, 12)]
    # over seeds: each z-test says "network faster", and the exponents are on the right sides
    assert all(m.value == [1.0, 0.0, 0.0] for m in ms)
    assert all(m.info["net_exponent"] < -0.3 and m.info["ntk_exponent"] > -0.3 for m in ms)
