"""solvable.models.grok: Gromov's closed-form network for modular addition."""

from __future__ import annotations

import numpy as np
import pytest

from solvable.backend import get_backend
from solvable.models import grok


@pytest.mark.parametrize("p", [0, 1, 2, 4, 9, 15])
def test_p_must_be_an_odd_prime(p):
    with pytest.raises(ValueError, match=rf"p={p} (is out of range|is not prime)"):
        grok.check_prime(p)


def test_shapes_and_exact_pair_averages(backend):
    U, V, W = grok.gromov_weights(7, 50, 3, backend, seed=1)
    assert tuple(U.shape) == (3, 50, 7) and tuple(W.shape) == (3, 7, 50)
    z = backend.to_numpy(grok.gromov_logits(U, V, W, backend)) / 50
    a, b = np.meshgrid(np.arange(7), np.arange(7), indexing="ij")
    correct = np.take_along_axis(z, ((a + b) % 7)[None, :, :, None], axis=3)[..., 0]
    # the identity holds per run, not only on average over seeds
    np.testing.assert_allclose(correct.mean(axis=(1, 2)), 0.5, rtol=backend.roundoff(1e4))
    np.testing.assert_allclose(z.sum(axis=3), 0.0, atol=backend.roundoff(1e4) * 50)


def test_wide_network_is_exact_and_narrow_one_is_not():
    be = get_backend("numpy")
    acc = {}
    for width in (2, 600):
        U, V, W = grok.gromov_weights(23, width, 8, be, seed=0)
        z = grok.gromov_logits(U, V, W, be)
        a, b = np.meshgrid(np.arange(23), np.arange(23), indexing="ij")
        acc[width] = (z.argmax(axis=3) == (a + b) % 23).mean()
    assert acc[600] == 1.0 and acc[2] < 0.5


def test_same_seed_same_weights():
    be = get_backend("numpy")
    for x, y in zip(grok.gromov_weights(5, 4, 2, be, 3), grok.gromov_weights(5, 4, 2, be, 3)):
        np.testing.assert_array_equal(x, y)


def test_bad_width():
    with pytest.raises(ValueError, match="width=0"):
        grok.gromov_weights(5, 0, 1, get_backend("numpy"), 0)


# ------------------------------------------------------------------------------------------
# linear teacher-student


@pytest.mark.parametrize("lam", [0.3, 0.7, 1.5, 3.0])
def test_teacher_student_limits(lam):
    # t = 0: every mode carries sigma_w^2 + 1 and the MP law has mass 1 (atom included)
    assert grok.teacher_student_test_loss(0.0, lam, 0.02, 0.5) == pytest.approx(1.25, rel=1e-10)
    # t -> infinity without weight decay: only the atom's modes keep their error
    assert grok.teacher_student_test_loss(1e8, lam, 0.0, 0.5) == pytest.approx(max(0.0, 1 - 1 / lam) * 1.25, abs=1e-10)
    mass = np.trapezoid(grok.marchenko_pastur_density(np.linspace(1e-9, 12, 400001), lam), np.linspace(1e-9, 12, 400001))
    assert mass == pytest.approx(min(1.0, 1 / lam), rel=1e-3)


def test_teacher_student_accuracy_is_monotone_without_weight_decay_and_capped_with_it():
    t = np.geomspace(0.1, 1e4, 50)
    a0 = grok.teacher_student_accuracy(t, 0.1, 0.5, 0.0, 0.5)
    assert np.all(np.diff(a0) >= 0) and a0[-1] > 0.999
    a1 = grok.teacher_student_accuracy(t, 0.1, 0.5, 0.05, 0.5)
    assert a1[-1] < 0.9


def test_simulation_approaches_the_mp_limit_over_seeds_and_trains_before_it_tests(backend):
    t = np.array([2.0, 8.0, 32.0])
    run = grok.simulate_teacher_student(200, 0.6, 0.0, 0.5, 0.1, t, 24, backend, seed=5)
    assert run.test_accuracy.shape == (24, 3)
    pred = grok.teacher_student_accuracy(t, 0.1, 0.6, 0.0, 0.5)
    se = run.test_accuracy.std(0, ddof=1) / np.sqrt(24)
    assert np.all(np.abs(run.test_accuracy.mean(0) - pred) < 4 * se + 0.02)  # 0.02: O(1/d) at d = 200
    assert np.all(run.train_accuracy.mean(0) >= run.test_accuracy.mean(0))
    assert np.all(run.train_loss < run.test_loss * 3)  # D^T Sigma D vs |D|^2 (Sigma's top eigenvalue < 3.1)


def test_teacher_student_same_seed_same_numbers():
    be = get_backend("numpy")
    r1 = grok.simulate_teacher_student(20, 0.5, 0.01, 0.5, 0.1, [1.0, 5.0], 3, be, seed=2)
    r2 = grok.simulate_teacher_student(20, 0.5, 0.01, 0.5, 0.1, [1.0, 5.0], 3, be, seed=2)
    np.testing.assert_array_equal(r1.test_accuracy, r2.test_accuracy)


@pytest.mark.parametrize("kw, name", [({"lam": 0.0}, "lam=0.0"), ({"eps": -1.0}, "eps=-1.0"), ({"gamma": -0.1}, "gamma=-0.1")])
def test_teacher_student_bad_input(kw, name):
    args = dict(t=1.0, eps=0.1, lam=0.5, gamma=0.0, sigma_w=0.5)
    args.update(kw)
    with pytest.raises(ValueError, match=name):
        grok.teacher_student_accuracy(**args)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.2, 1.5])
def test_fraction_outside_the_open_unit_interval(fraction):
    with pytest.raises(ValueError, match=rf"fraction={fraction}"):
        grok.train_split(7, fraction, 2, get_backend("numpy"), 0)


def test_train_split_sizes(backend):
    masks = backend.to_numpy(grok.train_split(11, 0.3, 4, backend, seed=1))
    assert masks.shape == (4, 121) and np.all(masks.sum(axis=1) == 36)


# ------------------------------------------------------------------------------------------
# the trained quadratic MLP (AdamW, weight decay): generalizes, weights concentrate on one frequency


def test_top_frequency_fraction_is_1_on_gromov_weights_and_small_on_noise():
    be = get_backend("numpy")
    U, V, W = (be.to_numpy(x) for x in grok.gromov_weights(11, 16, 2, be, seed=0))
    np.testing.assert_allclose(grok.top_frequency_fraction(U, V, W), 1.0, rtol=1e-12)
    rng = np.random.default_rng(0)
    noise = grok.fourier_concentration(rng.normal(size=(4, 64, 11)), rng.normal(size=(4, 64, 11)), rng.normal(size=(4, 11, 64)))
    assert (noise < 0.5).all()


def test_trained_mlp_generalizes_and_concentrates_over_seeds(backend):
    out = grok.train_modular_mlp(11, 48, 0.7, 4, backend, seed=0, steps=400, checkpoints=2)
    assert out["train_accuracy"][-1].min() == 1.0
    assert out["test_accuracy"][-1].mean() >= 0.9  # a statement over 4 seeds
    f = out["fourier_fraction"]
    assert f[0].mean() < 0.45 and f[-1].mean() > 0.8  # from noise (~0.33) to concentrated (saturates ~0.93, not 1)


def test_trained_mlp_bad_input():
    be = get_backend("numpy")
    with pytest.raises(ValueError, match="fraction=1.5"):
        grok.train_modular_mlp(11, 8, 1.5, 1, be, 0)
    with pytest.raises(ValueError, match="p=12"):
        grok.train_modular_mlp(12, 8, 0.5, 1, be, 0)


def test_trained_mlp_same_seed_same_numbers():
    be = get_backend("numpy")
    a = grok.train_modular_mlp(5, 8, 0.6, 2, be, seed=1, steps=5)
    b = grok.train_modular_mlp(5, 8, 0.6, 2, be, seed=1, steps=5)
    np.testing.assert_array_equal(a["U"], b["U"])


def test_grok_batched_benchmark_runs_quick(monkeypatch):
    import importlib.util
    import sys
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "benchmarks"
    monkeypatch.setattr(sys, "path", [str(folder)] + sys.path)  # bench modules import _timing from there
    spec = importlib.util.spec_from_file_location("bench_grok", folder / "bench_grok.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    res = mod.BENCHMARKS["grok_batched"](quick=True)
    assert res["ratio"] > 1 and res["target"] == ">= 10" and {"sizes", "backend"} <= set(res)


# ------------------------------------------------------------------------------------------
# steps to generalize against the training fraction


def test_train_split_per_run_fractions(backend):
    masks = backend.to_numpy(grok.train_split(11, [0.3, 0.5, 0.9], 3, backend, seed=2))
    assert masks.sum(axis=1).tolist() == [36, 60, 109]
    with pytest.raises(ValueError, match="runs=4"):
        grok.train_split(11, [0.3, 0.5], 4, backend, seed=2)
    with pytest.raises(ValueError, match="fraction=1.2"):
        grok.train_split(11, [0.3, 1.2], 2, backend, seed=2)


def test_steps_to_generalize_is_the_first_checked_hit_and_stops_early():
    be = get_backend("numpy")
    kw = dict(steps=200, checkpoints=200, generalize_at=0.9, track_every=1)
    out = grok.train_modular_mlp(11, 24, 0.9, 4, be, seed=3, **kw)
    first = out["steps_to_generalize"]
    acc = out["test_accuracy"]  # recorded every step here: the first hit must match it exactly
    for r in range(4):
        hits = np.flatnonzero(acc[:, r] >= 0.9)
        assert first[r] == (out["steps"][hits[0]] if hits.size else -1)
    assert (first > 0).mean() >= 0.5  # at fraction 0.9 most seeds generalize within 200 steps
    if (first > 0).all():
        early = grok.train_modular_mlp(11, 24, 0.9, 4, be, seed=3, stop_when_generalized=True, **kw)
        assert early["steps"][-1] == first.max()
        np.testing.assert_array_equal(early["steps_to_generalize"], first)


def test_generalize_at_bad_input():
    with pytest.raises(ValueError, match="generalize_at=1.5"):
        grok.train_modular_mlp(11, 8, 0.5, 1, get_backend("numpy"), 0, generalize_at=1.5)


def test_larger_fractions_generalize_sooner_over_seeds():
    be = get_backend("numpy")
    fr = np.repeat([0.7, 0.9], 6)
    st = grok.train_modular_mlp(11, 24, fr, 12, be, seed=5, steps=450, checkpoints=1, generalize_at=0.9,
                                track_every=5, stop_when_generalized=True)["steps_to_generalize"].reshape(2, 6)
    st = np.where(st < 0, 450, st)
    assert st[0].mean() > st[1].mean()  # a statement over 6 seeds per fraction, not one run's step


def test_endpoint_slope_on_constructed_steps():
    steps = np.array([[200.0, 220.0, 180.0], [100.0, 110.0, 90.0]])
    s, se = grok.endpoint_slope((0.5, 1.0), steps)
    assert abs(s + 1.0) < 1e-12 and se > 0
