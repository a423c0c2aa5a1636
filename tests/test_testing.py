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
