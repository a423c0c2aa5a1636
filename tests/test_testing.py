import numpy as np
import pytest
from hypothesis import given

from solvable.testing import assert_claim, assert_close, falsify, params_strategy, proves
from _toy import TOY_CLAIM, ToyParams


@given(params_strategy(ToyParams))
def test_strategy_draws_from_the_domain(p):
    assert -5 <= p.mu <= 5 and 100 <= p.n <= 1000 and p.kind == "gauss"


@given(params_strategy(ToyParams, wide=True))
def test_wide_strategy_draws_from_the_valid_range(p):
    assert -10 <= p.mu <= 10 and 2 <= p.n <= 10**6 and p.kind in ("gauss", "broken")


@given(params_strategy(ToyParams, mu=0.25))
def test_fixed_parameters(p):
    assert p.mu == 0.25


def test_assert_claim_reports_the_verdict():
    assert assert_claim(TOY_CLAIM).passed
    with pytest.raises(AssertionError, match=r"toy.sample_mean failed at .*'kind': 'broken'"):
        assert_claim(TOY_CLAIM, ToyParams(kind="broken"))


def test_falsify_in_domain_and_wide():
    assert falsify(TOY_CLAIM, max_examples=10).counterexample is None
    res = falsify(TOY_CLAIM, max_examples=60, wide=True)
    assert res.counterexample is not None and res.counterexample["kind"] == "broken"
    assert res.verdict is not None and not res.verdict.passed


def test_assert_close_is_dtype_aware():
    x = 1.0 + 50 * np.finfo(np.float32).eps
    assert_close(np.float32(x), 1.0, dtype=np.float32)          # 50 eps32 <= 100 eps32
    with pytest.raises(AssertionError):
        assert_close(x, 1.0, dtype=np.float64)                    # 50 eps32 >> 100 eps64
    assert_close(1e-20, 0.0, atol=1e-15, reason="value near zero")


def test_proves_accumulates_ids():
    @proves("a.b")
    @proves("c.d")
    def check():
        pass

    assert set(check.__proves__) == {"a.b", "c.d"}


# ---- search regions: open bounds and unbounded ranges


from dataclasses import dataclass  # noqa: E402

from hypothesis import settings  # noqa: E402

from solvable.claims import Params, param  # noqa: E402
from solvable.testing import (OPEN_BOUND_MARGIN, claim_sample, failure_rate, sample_seed, search_interval,  # noqa: E402
                              search_region)


@dataclass(frozen=True)
class OpenParams(Params):
    slope: float = param(0.2, low=0, high=1, low_open=True, domain=(0.05, 0.5), doc="negative slope")
    eta: float = param(0.5, low=0, low_open=True, domain=(0.1, 2.0), log=True, doc="step size, unbounded")
    n: int = param(10, low=2, integer=True, domain=(4, 40), doc="size, unbounded")


@given(params_strategy(OpenParams, wide=True))
def test_wide_draws_keep_off_open_bounds_and_stay_finite(p):
    # a slope of 5e-324 tests float underflow, not the claim: open bounds start a little inside
    assert p.slope >= OPEN_BOUND_MARGIN * (1 - 1e-12) and p.slope <= 1  # scale 1: the range's upper end
    assert p.eta >= OPEN_BOUND_MARGIN * 2.0 * (1 - 1e-12) and math.isfinite(p.eta)
    assert 2 <= p.n <= 40 + 100 * 40


def test_search_region_lists_the_intervals():
    iv = search_interval("slope", OpenParams.fields()["slope"], None)
    assert iv.lo == pytest.approx(OPEN_BOUND_MARGIN) and iv.hi == 1
    region = search_region(OpenParams, wide=True)
    assert region["slope"] == "[1e-06, 1] (open at 0, searched from 1e-06) and the domain [0.05, 0.5]"
    assert "unbounded above, cut at 202" in region["eta"] and "(log)" in region["eta"]
    assert search_region(OpenParams)["n"] == "[4, 40] integers"


# ---- falsify: counts, region, seeds; failure_rate


import math  # noqa: E402

from _toy import TOY_FLAKY, TOY_PAIR  # noqa: E402


def test_falsify_reports_examples_region_and_names_the_failed_check():
    res = falsify(TOY_PAIR, max_examples=100, wide=True)  # x < 0.25 on 1/8 of the draws
    assert res.counterexample is not None and res.counterexample["x"] < 0.25
    assert res.verdict.message == "failed check: x_at_least_quarter"
    assert 1 <= res.found_at <= res.examples and set(res.region) == {"lo", "hi", "x"}
    assert res.to_json()["examples"] == res.examples and res.to_json()["region"]["x"].startswith("[0, 1]")
    quiet = falsify(TOY_CLAIM, max_examples=5)
    assert quiet.counterexample is None and quiet.examples == 5 and quiet.found_at is None


def test_failure_rate_over_seeds():
    r = failure_rate(TOY_FLAKY, seeds=range(8))
    assert (r.k, r.n, r.failed, r.errors) == (2, 8, [1, 5], [])
    assert r.rate == 0.25 and 0.25 < r.upper < 0.7
    assert "fails for 2 of 8 seeds (0-7): seeds 1, 5" in str(r)
    assert r.messages[1].startswith("error 1 > tolerance 0.05")
    none = failure_rate(TOY_CLAIM, seeds=[3, 4])
    assert none.k == 0 and none.upper == pytest.approx(1 - 0.05 ** 0.5)  # Clopper-Pearson, 0 of 2
    with pytest.raises(ValueError, match="seeds"):
        failure_rate(TOY_CLAIM, seeds=[])


def test_falsify_with_seeds_draws_the_seed_and_measures_the_rate_at_the_defaults():
    res = falsify(TOY_FLAKY, max_examples=80, seeds=8)  # misses seeds 1, 5 with p = 0.75^80
    assert res.defaults is not None and res.defaults.k == 2
    assert res.counterexample is not None and res.seed % 4 == 1 and res.seeds == list(range(8))
    assert res.region["seed"].startswith("[0, 7] integers")


# ---- property tests with a budget per claim and a fixed seed per release in `ci`


def _draws(key, n, profile):
    settings.load_profile(profile)
    try:
        seen = []

        @claim_sample(key, n)
        @given(params_strategy(ToyParams))
        def prop(p):
            seen.append((p.mu, p.n))

        prop()
        return seen
    finally:
        from solvable.testing import load_profile
        load_profile()


def test_claim_sample_ci_is_fixed_per_claim_and_sized_by_the_budget():
    a = _draws("toy.sample_mean", 9, "ci")
    assert len(a) == 9 and a == _draws("toy.sample_mean", 9, "ci")  # the same sample at every run
    assert a != _draws("toy.other", 9, "ci")  # each claim draws its own
    assert len(_draws("toy.sample_mean", 30, "ci")) == 30
    assert sample_seed("a") != sample_seed("b")


def test_claim_sample_dev_caps_and_thorough_raises_the_count():
    assert len(_draws("toy.sample_mean", 9, "dev")) <= 3
    assert len(_draws("toy.sample_mean", 9, "thorough")) == 60
