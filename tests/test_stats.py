import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from solvable.stats import batch_means, loglog_slope, mean_sem


@given(st.floats(-3, 3), st.floats(0.1, 10))
def test_loglog_slope_recovers_power_laws(p, c):
    x = np.geomspace(1e-3, 1, 7)
    fit = loglog_slope(x, c * x**p)
    assert fit.slope == pytest.approx(p, abs=1e-9)
    assert fit.stderr < 1e-9


def test_loglog_slope_stderr_covers_noise():
    # y = x^2 with 5% log-normal noise over 40 points: the fitted slope is within 4 stderr of 2.
    rng = np.random.default_rng(0)
    x = np.geomspace(1e-2, 1, 40)
    fit = loglog_slope(x, x**2 * np.exp(0.05 * rng.standard_normal(40)))
    assert abs(fit.slope - 2) < 4 * fit.stderr


def test_loglog_slope_bad_input():
    with pytest.raises(ValueError, match="positive"):
        loglog_slope([1, 2], [1, -1])
    with pytest.raises(ValueError, match="shapes"):
        loglog_slope([1, 2, 3], [1, 2])


def test_batch_means_stderr_of_an_ar1_chain():
    # AR(1) x+ = r x + e, unit innovations: Var(mean of T) ~ 1/(T (1 - r)^2). Batch means must
    # estimate that, not the naive 1/(T (1 - r^2)), within the sampling error of 40 batches (~25%).
    rng = np.random.default_rng(1)
    r, T = 0.9, 200_000
    e = rng.standard_normal(T)
    x = np.empty(T)
    x[0] = 0.0
    for t in range(1, T):
        x[t] = r * x[t - 1] + e[t]
    m, se = batch_means(x, n_batches=40)
    assert se == pytest.approx(1 / np.sqrt(T) / (1 - r), rel=0.35)


def test_mean_sem():
    m, s = mean_sem(np.arange(10.0))
    assert m == 4.5 and s == pytest.approx(np.std(np.arange(10.0), ddof=1) / np.sqrt(10))
    with pytest.raises(ValueError):
        mean_sem([1.0])
