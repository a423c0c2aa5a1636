"""solvable.models.slingshot: Adam's spikes after convergence and the epsilon that suppresses them."""

from __future__ import annotations

import numpy as np
import pytest

from solvable.backend import get_backend
from solvable.models import slingshot as sl

ETA, H, B1, B2 = 0.01, 2.0, 0.9, 0.98


def test_closed_form_limits_and_values():
    assert sl.epsilon_threshold(0.01, 2.0, 0.9) == pytest.approx(0.01 * 2.0 / 38)
    assert sl.epsilon_threshold(0.01, 2.0, 0.0) == pytest.approx(0.01)  # no momentum: GD's 2/eta
    # linear in eta and h, vanishing as beta1 -> 1
    assert sl.epsilon_threshold(0.02, 2.0, 0.5) == pytest.approx(2 * sl.epsilon_threshold(0.01, 2.0, 0.5))
    assert sl.epsilon_threshold(0.01, 2.0, 0.999999) < 1e-8


@pytest.mark.parametrize("kw,name", [(dict(eta=-1.0, h=1.0, beta1=0.9), "eta"), (dict(eta=0.1, h=0.0, beta1=0.9), "h"),
                                     (dict(eta=0.1, h=1.0, beta1=1.0), "beta1")])
def test_bad_input_names_parameter(kw, name):
    with pytest.raises(ValueError, match=rf"{name}=.* must be"):
        sl.epsilon_threshold(**kw)


def test_negative_eps_is_rejected():
    with pytest.raises(ValueError, match=r"eps=-0.1 is out of range: eps must be a finite number in \[0, inf\)"):
        sl.simulate_adam([1e-3, -0.1], ETA, H, B1, B2, 10, get_backend("numpy"))


def test_spikes_recur_well_below_and_never_above_threshold(backend):
    ec = ETA * H * (1 - B1) / (2 * (1 + B1))  # written out: the tests may use the formula, the claim may not
    run = sl.simulate_adam(np.array([0.5, 0.9, 1.1, 2.0]) * ec, ETA, H, B1, B2, 6000, backend)
    spikes = run.spikes_at[6000]
    assert (spikes[:2] >= 2).all() and (spikes[2:] == 0).all()
    assert (run.converged_at > 0).all()  # every run converged first
    # above eps_c the amplitude keeps falling (hundreds of e-folds, no underflow: it is a log)
    assert (run.log_amplitude[2:] < -100).all() and np.isfinite(run.log_amplitude).all()


def test_just_below_threshold_settles_on_the_period_two_orbit():
    """Derived here: a 2-cycle theta = +-a is neutral (z = -1) when sqrt(v) + eps = eps_c, i.e. h a = eps_c - eps."""
    ec = ETA * H * (1 - B1) / (2 * (1 + B1))
    r = np.array([0.998, 0.999])
    run = sl.simulate_adam(r * ec, ETA, H, B1, B2, 20000, get_backend("numpy"))
    assert (run.spikes_at[20000] == 1).all()  # left the converged state once, then no recurring spikes
    np.testing.assert_allclose(run.sqrt_v, (1 - r) * ec, rtol=1e-3)


def test_numpy_and_torch_agree_on_spike_counts():
    ec = ETA * H * (1 - B1) / (2 * (1 + B1))
    eps = np.array([0.5, 0.95, 1.05]) * ec
    a = sl.simulate_adam(eps, ETA, H, B1, B2, 3000, get_backend("numpy"))
    b = sl.simulate_adam(eps, ETA, H, B1, B2, 3000, get_backend("torch"))
    np.testing.assert_array_equal(a.converged_at, b.converged_at)
    assert ((a.spikes_at[3000] >= 2) == (b.spikes_at[3000] >= 2)).all()


def test_same_inputs_same_numbers():
    be = get_backend("numpy")
    a = sl.measure_epsilon_threshold(ETA, H, B1, B2, be, steps=1500, rounds=2)
    b = sl.measure_epsilon_threshold(ETA, H, B1, B2, be, steps=1500, rounds=2)
    assert a == b


def test_threshold_independent_of_beta2():
    be = get_backend("numpy")
    vals = [sl.measure_epsilon_threshold(ETA, H, B1, b2, be).value for b2 in (0.97, 0.99)]
    assert vals[0] == pytest.approx(vals[1], rel=2e-3)


def test_trace_is_kept_when_asked():
    run = sl.simulate_adam([1e-4], ETA, H, B1, B2, 50, get_backend("numpy"), trace=True)
    assert run.trace.shape == (50, 1) and run.sqrt_v_trace.shape == (50, 1)


# ------------------------------------------------------------------------------------------
# norm_cycles: spikes of a least-squares model under Adam at small eps


def test_spike_onsets_on_a_constructed_loss():
    t = np.arange(300)
    loss = np.where(t < 100, 10.0 ** (-0.1 * t), 0.0)  # falls 10 decades
    loss = np.where((t >= 100) & (t < 150), 1e-10, loss)
    loss = np.where(t >= 150, 1e-2, loss)  # a rise of 8 decades at 150
    loss[120] = 1e-11  # the low
    spikes = sl.spike_onsets(loss[:, None])
    assert spikes == [[(120, 150)]]
    assert sl.spike_onsets(np.where(t >= 150, 1e-13, loss)[:, None]) == [[]]  # below the floor: not a spike


def test_norm_cycles_spikes_start_near_the_threshold_over_seeds():
    out = sl.simulate_norm_cycles(0.01, 0.9, 12, 2500, get_backend("numpy"), seed=4)
    assert np.isfinite(out["loss"]).all()
    spikes = sl.spike_onsets(out["loss"])
    onsets = [out["eta_sharpness"][a, r] for r, sp in enumerate(spikes) for a, _ in sp]
    assert len(onsets) >= 10  # spikes recur (a statement over 12 data draws)
    assert 30 < np.median(onsets) < 42  # around 38, far from 2 or 20


def test_norm_cycles_no_spikes_with_a_large_eps():
    out = sl.simulate_norm_cycles(0.01, 0.9, 6, 2500, get_backend("numpy"), seed=1, eps=1e-2)
    assert all(len(s) == 0 for s in sl.spike_onsets(out["loss"]))


def test_norm_cycles_numpy_and_torch_agree_early():
    a = sl.simulate_norm_cycles(0.01, 0.9, 3, 50, get_backend("numpy"), seed=0)
    b = sl.simulate_norm_cycles(0.01, 0.9, 3, 50, get_backend("torch"), seed=0)
    assert a["loss"].shape == b["loss"].shape and np.isfinite(b["loss"]).all()
    c = sl.simulate_norm_cycles(0.01, 0.9, 3, 50, get_backend("numpy"), seed=0)
    np.testing.assert_array_equal(a["loss"], c["loss"])


@pytest.mark.parametrize("kw,name", [({"eta": 0.0}, "eta"), ({"beta1": 1.0}, "beta1"), ({"eps": -1.0}, "eps")])
def test_norm_cycles_bad_input(kw, name):
    args = dict(eta=0.01, beta1=0.9, runs=2, steps=5, backend=get_backend("numpy"), seed=0)
    args.update(kw)
    with pytest.raises(ValueError, match=name):
        sl.simulate_norm_cycles(**args)
