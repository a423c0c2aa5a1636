"""Property-testing tools for solvable's claims and for users' own.

- :func:`params_strategy` draws claim parameters from the domain where the claim is asserted
  (``wide=True``: from the whole valid range, to look for where it stops being true);
- :func:`assert_claim` checks one claim at given parameters and fails with the whole verdict;
- :func:`falsify` runs hypothesis over the domain and returns the smallest counterexample;
- :func:`assert_close` is the one dtype-aware closeness assertion;
- :func:`proves` marks a sympy check in ``proofs_check/`` with the claim ids it derives;
- hypothesis profiles ``dev`` (fast), ``ci`` (default) and ``thorough`` (long runs and GPU),
  chosen by the ``HYPOTHESIS_PROFILE`` environment variable.

Example, a property test of a claim of your own::

    from hypothesis import given
    from solvable.testing import params_strategy, assert_claim

    @given(params_strategy(my_claim.params))
    def test_my_claim(p):
        assert_claim(my_claim, p)
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from .claims import Claim, Params, Verdict

__all__ = [
    "params_strategy",
    "assert_claim",
    "assert_close",
    "falsify",
    "FalsifyResult",
    "proves",
    "load_profile",
]

_COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
               derandomize=False)
settings.register_profile("dev", max_examples=3, **_COMMON)
# CI draws a fixed set of examples (a submission's result must not depend on the draw); searching
# for new counterexamples is the job of `solvable falsify` and of the random `thorough` profile.
settings.register_profile("ci", max_examples=4, **(_COMMON | {"derandomize": True}))
settings.register_profile("thorough", max_examples=60, **_COMMON)


def load_profile() -> str:
    """Load the profile named by ``HYPOTHESIS_PROFILE`` (default ``ci``) and return its name."""
    name = os.environ.get("HYPOTHESIS_PROFILE", "ci")
    settings.load_profile(name)
    return name


def _field_strategy(name: str, m: dict, wide: bool) -> st.SearchStrategy:
    if m["choices"] is not None:
        values = m["choices"] if (wide or m["domain"] is None) else m["domain"]
        return st.sampled_from(tuple(values))
    if wide and m["domain"] is not None:
        # The whole valid range, and the domain too, so that log-scaled domains keep their
        # small values while the search also reaches the range's far ends.
        return st.one_of(_interval_strategy(name, m, None), _interval_strategy(name, m, m["domain"]))
    return _interval_strategy(name, m, m["domain"])


def _interval_strategy(name: str, m: dict, domain: tuple | None) -> st.SearchStrategy:
    lo, hi = (None, None) if domain is None else domain
    lo = m["low"] if lo is None else lo
    hi = m["high"] if hi is None else hi
    if lo is None or hi is None:
        raise ValueError(f"parameter {name} has no finite range: give param(..., domain=(lo, hi))")
    excl_lo = bool(m["low_open"] and lo == m["low"])
    excl_hi = bool(m["high_open"] and hi == m["high"])
    if m["integer"]:
        lo_i = math.ceil(lo + (1e-9 if excl_lo else 0))
        hi_i = math.floor(hi - (1e-9 if excl_hi else 0))
        if m["log"] and lo_i >= 1:
            return st.floats(math.log(lo_i), math.log(hi_i)).map(
                lambda t: int(min(hi_i, max(lo_i, round(math.exp(t))))))
        return st.integers(lo_i, hi_i)
    if m["log"] and lo > 0:
        llo, lhi = math.log(lo), math.log(hi)
        return st.floats(llo, lhi).map(lambda t: float(min(hi, max(lo, math.exp(t)))))
    return st.floats(lo, hi, exclude_min=excl_lo, exclude_max=excl_hi, allow_nan=False, allow_infinity=False)


def params_strategy(params_cls: type[Params], wide: bool = False, **fixed: Any) -> st.SearchStrategy:
    """Hypothesis strategy of valid ``params_cls`` instances.

    Args:
      params_cls: a :class:`~solvable.claims.Params` subclass.
      wide: draw from the whole valid range instead of the claim's domain.
      fixed: parameters held at the given values.

    Draws that the class's own cross-parameter check rejects are filtered out.
    """
    parts = {}
    for name, m in params_cls.fields().items():
        parts[name] = st.just(fixed[name]) if name in fixed else _field_strategy(name, m, wide)

    def build(kw: dict) -> Params | None:
        try:
            return params_cls(**kw)
        except ValueError:
            return None

    return st.fixed_dictionaries(parts).map(build).filter(lambda p: p is not None)


def assert_claim(claim: Claim, params: Params | None = None, backend: str = "numpy", device: str = "cpu",
                 seed: int = 0, dtype: str | None = None, mutants: bool = False) -> Verdict:
    """Check ``claim`` at ``params`` and raise ``AssertionError`` with the verdict if it fails
    (``mutants=True`` also judges the claim's mutants; read them from ``verdict.mutants``)."""
    v = claim.check(params, backend=backend, device=device, seed=seed, dtype=dtype, mutants=mutants)
    if not v.passed:
        failed = [k for k, ok in v.checks.items() if not ok]
        raise AssertionError(
            f"{claim.id} failed at {v.params}: failed checks={failed}; error {v.error} vs tolerance"
            f" {v.tolerance} (margin {v.margin:.3g}; {v.tolerance_reason}); diverged={v.diverged};"
            f" predicted={v.predicted}; measured={v.measured}; info={v.info}")
    return v


def assert_close(actual: Any, expected: Any, *, rtol: float | None = None, atol: float = 0.0,
                 dtype: Any = np.float64, n_ops: float = 100.0, reason: str = "") -> None:
    """Assert ``|actual - expected| <= atol + rtol |expected|`` elementwise.

    ``rtol=None`` means round-off only: ``n_ops * eps(dtype)``, for two computations of the same
    number that differ by about ``n_ops`` floating-point operations. Pass ``atol`` only where the
    expected value is near zero, and say why in ``reason``.
    """
    if hasattr(actual, "detach"):
        actual = actual.detach().cpu().double().numpy()
    if hasattr(expected, "detach"):
        expected = expected.detach().cpu().double().numpy()
    if hasattr(dtype, "is_floating_point"):  # a torch dtype
        dtype = str(dtype).replace("torch.", "")
    if rtol is None:
        rtol = n_ops * float(np.finfo(np.dtype(dtype)).eps)
    a = np.asarray(actual, dtype=float)
    e = np.asarray(expected, dtype=float)
    np.testing.assert_allclose(a, e, rtol=rtol, atol=atol, err_msg=reason)


@dataclass
class FalsifyResult:
    """Outcome of :func:`falsify`: ``counterexample`` is None when none was found."""

    claim_id: str
    max_examples: int
    wide: bool
    counterexample: dict | None
    verdict: Verdict | None

    def to_json(self) -> dict:
        return {
            "id": self.claim_id,
            "max_examples": self.max_examples,
            "wide": self.wide,
            "found": self.counterexample is not None,
            "counterexample": self.counterexample,
            "verdict": None if self.verdict is None else self.verdict.to_json(),
        }


def falsify(claim: Claim, max_examples: int = 50, wide: bool = False, backend: str = "numpy",
            device: str = "cpu", seed: int = 0,
            on_example: Callable[[Params], None] | None = None) -> FalsifyResult:
    """Search the claim's domain (or, with ``wide``, its valid range) for a failing parameter set.

    Hypothesis shrinks what it finds, so the counterexample returned is a small one.
    """
    from hypothesis import find
    from hypothesis.errors import NoSuchExample

    def fails(p: Params) -> bool:
        if on_example is not None:
            on_example(p)
        return not claim.check(p, backend=backend, device=device, seed=seed).passed

    try:
        found = find(params_strategy(claim.params, wide=wide), fails,
                     settings=settings(max_examples=max_examples, database=None, **_COMMON))
    except NoSuchExample:
        return FalsifyResult(claim.id, max_examples, wide, None, None)
    return FalsifyResult(claim.id, max_examples, wide, found.asdict(),
                         claim.check(found, backend=backend, device=device, seed=seed))


def proves(*claim_ids: str) -> Callable:
    """Mark a ``proofs_check`` test as deriving the named claims (read by the coverage test)."""

    def mark(fn: Callable) -> Callable:
        fn.__proves__ = tuple(getattr(fn, "__proves__", ())) + claim_ids
        return fn

    return mark
