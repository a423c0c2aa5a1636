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
import random
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from .claims import Claim, Params, Verdict, _jsonable

__all__ = [
    "params_strategy",
    "assert_claim",
    "assert_close",
    "falsify",
    "FalsifyResult",
    "failure_rate",
    "FailureRate",
    "Interrupted",
    "search_region",
    "search_interval",
    "claim_sample",
    "SOLVABLE_CI_SEED",
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


# The seed of the `ci` profile's draws: every claim's property test draws the same examples at every
# run on every machine (landing never depends on luck), and each claim draws its own (the seed is
# mixed with the claim's id). Rotated deliberately, once per release: a new value is a new sample,
# and a claim that fails on it is a finding to fix before the release, not noise to re-run.
SOLVABLE_CI_SEED = 20250601


def sample_seed(key: str) -> int:
    """The fixed hypothesis seed of ``key`` (a claim id) under the current ``SOLVABLE_CI_SEED``."""
    return zlib.crc32(f"{SOLVABLE_CI_SEED}:{key}".encode())


def claim_sample(key: str, max_examples: int | None = None) -> Callable:
    """Decorator for a ``@given`` property test of one claim: its example budget, and in a
    derandomized profile a fixed seed of its own.

    - ``ci`` (derandomized): ``max_examples`` examples drawn with :func:`sample_seed` (``key``):
      the same sample at every run, a different one per claim, rotated with ``SOLVABLE_CI_SEED``;
    - ``dev``: at most the profile's ``max_examples`` (a quick look);
    - ``thorough`` and other random profiles: at least the profile's ``max_examples``, at random.

    ``max_examples=None`` keeps the profile's count. Put it above ``@given``::

        @claim_sample(claim.id, 12)
        @given(params_strategy(claim.params))
        def prop(p): ...
    """
    from hypothesis import seed as _seed

    current = settings.default
    profile = getattr(settings, "_current_profile", None)
    n = current.max_examples if max_examples is None else int(max_examples)
    if max_examples is not None and not current.derandomize:
        n = min(n, current.max_examples) if profile == "dev" else max(n, current.max_examples)

    def wrap(test: Callable) -> Callable:
        test = settings(current, max_examples=n)(test)
        return _seed(sample_seed(key))(test) if current.derandomize else test

    return wrap


def load_profile() -> str:
    """Load the profile named by ``HYPOTHESIS_PROFILE`` (default ``ci``) and return its name."""
    name = os.environ.get("HYPOTHESIS_PROFILE", "ci")
    settings.load_profile(name)
    return name


# An open bound is searched from a little inside it: a draw at 5e-324 for a slope in (0, 1) tests
# float underflow, not the claim. The margin is this fraction of the parameter's scale (the largest
# magnitude among its domain's ends, its finite range ends and its default).
OPEN_BOUND_MARGIN = 1e-6
# An unbounded side of the valid range is searched this many domain-scales beyond the domain (two
# decades past it for a positive parameter), far enough to leave the regime, finite for hypothesis.
UNBOUNDED_REACH = 100.0


def _scale(m: dict) -> float:
    vals = [m["default"]] if isinstance(m.get("default"), (int, float)) else []
    vals += [v for v in (m["low"], m["high"]) if v is not None]
    if m["domain"] is not None:
        vals += list(m["domain"])
    mags = [abs(float(v)) for v in vals if math.isfinite(float(v))]
    return max(mags + [1e-300]) if mags else 1.0


@dataclass(frozen=True)
class Interval:
    """A closed interval searched for one numeric parameter: ``[lo, hi]``, drawn log-uniformly when
    ``log``; ``note`` says how it was derived from the parameter's range."""

    lo: float
    hi: float
    integer: bool
    log: bool
    note: str = ""

    def __str__(self) -> str:
        s = f"[{self.lo:g}, {self.hi:g}]" + (" integers" if self.integer else "") + (" (log)" if self.log else "")
        return s + (f" ({self.note})" if self.note else "")


def search_interval(name: str, m: dict, domain: tuple | None) -> Interval:
    """The finite closed interval hypothesis draws ``name`` from: ``domain`` if given, else the
    valid range with an open bound moved inside by ``OPEN_BOUND_MARGIN`` x the parameter's scale
    and an unbounded side cut ``UNBOUNDED_REACH`` domain-scales beyond the domain."""
    notes = []
    if domain is not None:
        lo, hi = float(domain[0]), float(domain[1])
        excl_lo = bool(m["low_open"] and m["low"] is not None and lo <= m["low"])
        excl_hi = bool(m["high_open"] and m["high"] is not None and hi >= m["high"])
    else:
        lo = None if m["low"] is None else float(m["low"])
        hi = None if m["high"] is None else float(m["high"])
        excl_lo, excl_hi = bool(m["low_open"]), bool(m["high_open"])
        d_lo, d_hi = m["domain"] if m["domain"] is not None else (lo, hi)
        if hi is None:
            base = d_hi if d_hi is not None else (d_lo if d_lo is not None else 0.0)
            width = (d_hi - d_lo) if (d_lo is not None and d_hi is not None) else 1.0
            hi = float(base) + UNBOUNDED_REACH * max(abs(float(base)), float(width), 1.0 if m["integer"] else 0.0)
            notes.append(f"unbounded above, cut at {hi:g}")
        if lo is None:
            base = d_lo if d_lo is not None else (d_hi if d_hi is not None else 0.0)
            width = (d_hi - d_lo) if (d_lo is not None and d_hi is not None) else 1.0
            lo = float(base) - UNBOUNDED_REACH * max(abs(float(base)), float(width), 1.0 if m["integer"] else 0.0)
            notes.append(f"unbounded below, cut at {lo:g}")
    if m["integer"]:
        lo_i = math.ceil(lo + (1e-9 if excl_lo else 0))
        hi_i = math.floor(hi - (1e-9 if excl_hi else 0))
        if hi_i < lo_i:
            raise ValueError(f"parameter {name} has no integer in [{lo:g}, {hi:g}]")
        return Interval(lo_i, hi_i, True, bool(m["log"] and lo_i >= 1), "; ".join(notes))
    margin = OPEN_BOUND_MARGIN * _scale(m)
    if excl_lo:
        lo = lo + max(margin, abs(lo) * OPEN_BOUND_MARGIN)
        notes.append(f"open at {m['low']:g}, searched from {lo:g}")
    if excl_hi:
        hi = hi - max(margin, abs(hi) * OPEN_BOUND_MARGIN)
        notes.append(f"open at {m['high']:g}, searched to {hi:g}")
    if hi < lo:
        raise ValueError(f"parameter {name} has an empty search interval [{lo:g}, {hi:g}]")
    return Interval(lo, hi, False, bool(m["log"] and lo > 0), "; ".join(notes))


def _draw(iv: Interval) -> st.SearchStrategy:
    lo, hi = iv.lo, iv.hi
    if iv.integer:
        if iv.log and lo >= 1 and hi > lo:
            return st.floats(math.log(lo), math.log(hi)).map(
                lambda t: int(min(hi, max(lo, round(math.exp(t))))))
        return st.integers(int(lo), int(hi))
    if iv.log and lo > 0 and hi > lo:
        llo, lhi = math.log(lo), math.log(hi)
        return st.floats(llo, lhi).map(lambda t: float(min(hi, max(lo, math.exp(t)))))
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


def search_region(params_cls: type[Params], wide: bool = False) -> dict[str, str]:
    """What :func:`params_strategy` draws each parameter from, in words: ``{"eta": "[0.001, 10] (log)"}``.

    In the domain (``wide=False``): each parameter's domain (its valid range where it declares
    none). With ``wide=True``: the valid range (made finite as :func:`search_interval` says) and,
    for parameters with a domain, the domain as well (half the draws each), so that a log-scaled
    domain keeps its small values while the search reaches the far ends.
    """
    out = {}
    for name, m in params_cls.fields().items():
        if m["choices"] is not None:
            values = m["choices"] if (wide or m["domain"] is None) else m["domain"]
            out[name] = "one of " + ", ".join(map(str, values))
        elif wide and m["domain"] is not None:
            out[name] = f"{search_interval(name, m, None)} and the domain {search_interval(name, m, m['domain'])}"
        else:
            out[name] = str(search_interval(name, m, m["domain"]))
    return out


def _field_strategy(name: str, m: dict, wide: bool) -> st.SearchStrategy:
    if m["choices"] is not None:
        values = m["choices"] if (wide or m["domain"] is None) else m["domain"]
        return st.sampled_from(tuple(values))
    if wide and m["domain"] is not None:
        # The whole valid range, and the domain too, so that log-scaled domains keep their
        # small values while the search also reaches the range's far ends.
        return st.one_of(_draw(search_interval(name, m, None)), _draw(search_interval(name, m, m["domain"])))
    return _draw(search_interval(name, m, m["domain"]))


def params_strategy(params_cls: type[Params], wide: bool = False, **fixed: Any) -> st.SearchStrategy:
    """Hypothesis strategy of valid ``params_cls`` instances.

    Args:
      params_cls: a :class:`~solvable.claims.Params` subclass.
      wide: draw from the whole valid range instead of the claim's domain.
      fixed: parameters held at the given values.

    Draws that the class's own cross-parameter check rejects are filtered out. Open bounds are
    searched from a little inside (``OPEN_BOUND_MARGIN`` of the parameter's scale) and unbounded
    sides are cut at a finite reach (``UNBOUNDED_REACH``); :func:`search_region` says where, in words.
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
            f"{claim.id} failed at {v.params} (seed {seed}): {v.message}; failed checks={failed}; error {v.error} vs tolerance"
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
class FailureRate:
    """How often a claim fails at one parameter set over simulation seeds (:func:`failure_rate`).

    ``failed`` lists the seeds whose verdict failed (status ``"failed"``), ``errors`` those whose
    check raised; ``upper`` is the one-sided 95% Clopper-Pearson upper bound of the failure rate
    (failures and errors together), so that 0 of 20 reads as "below 14%", not as "never".
    """

    claim_id: str
    params: dict
    seeds: list[int]
    failed: list[int]
    errors: list[int]
    messages: dict[int, str]

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def k(self) -> int:
        return len(self.failed) + len(self.errors)

    @property
    def rate(self) -> float:
        return self.k / self.n if self.n else math.nan

    @property
    def upper(self) -> float:
        """One-sided 95% upper confidence bound of the rate (Clopper-Pearson)."""
        if not self.n:
            return math.nan
        if self.k >= self.n:
            return 1.0
        from scipy.stats import beta

        return float(beta.ppf(0.95, self.k + 1, self.n - self.k))

    def __str__(self) -> str:
        seeds = f"{self.seeds[0]}-{self.seeds[-1]}" if self.seeds == list(range(self.seeds[0], self.seeds[-1] + 1)) \
            else ", ".join(map(str, self.seeds))
        s = f"{self.claim_id} fails for {self.k} of {self.n} seeds ({seeds})"
        if self.k:
            bad = sorted(self.failed + self.errors)
            s += f": seeds {', '.join(map(str, bad))}; rate {self.rate:.2g}"
        return s + f" (95% upper bound {self.upper:.2g})"

    def to_json(self) -> dict:
        return {"id": self.claim_id, "params": _jsonable(self.params), "n": self.n, "k": self.k,
                "rate": self.rate, "upper95": self.upper, "seeds": self.seeds, "failed": self.failed,
                "errors": self.errors, "messages": {str(k): v for k, v in self.messages.items()}}


def failure_rate(claim: Claim, params: Params | None = None, seeds: Iterable[int] = range(20), *,
                 backend: str = "numpy", device: str = "cpu",
                 on_verdict: Callable[[int, Verdict], None] | None = None) -> FailureRate:
    """Check ``claim`` at ``params`` (its defaults if None) once per simulation seed and count the
    failures: the rate at which the claim, as stated, fails for reasons of the draw alone.

    A claim whose premise holds only for some seeds (a network that does not reach the minimum)
    either enforces the premise or states this rate. A check that raises counts as a failure (in
    ``errors``). Interrupting it (Ctrl-C) raises :class:`Interrupted` carrying the seeds done so far.
    """
    p = params if params is not None else claim.params()
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds is empty: seeds must hold at least one seed")
    res = FailureRate(claim.id, p.asdict(), [], [], [], {})
    try:
        for s in seeds:
            v = claim.check(p, backend=backend, device=device, seed=s, on_error="verdict")
            res.seeds.append(s)
            if v.status == "error":
                res.errors.append(s)
            elif not v.passed:
                res.failed.append(s)
            if not v.passed:
                res.messages[s] = v.message
            if on_verdict is not None:
                on_verdict(s, v)
    except KeyboardInterrupt:
        raise Interrupted(res) from None
    return res


class Interrupted(KeyboardInterrupt):
    """A search or a count stopped by Ctrl-C; ``partial`` holds what was done before it."""

    def __init__(self, partial: Any):
        super().__init__("interrupted")
        self.partial = partial


@dataclass
class FalsifyResult:
    """Outcome of :func:`falsify`: ``counterexample`` is None when none was found.

    ``examples`` is the number of parameter sets checked (with ``seeds``, of (parameters, seed)
    pairs), the shrinking of a counterexample included; ``region`` says, per parameter, what was
    searched (:func:`search_region`); ``seed`` is the simulation seed of the counterexample;
    ``defaults`` is the failure rate at the defaults over the seeds (with ``seeds`` only);
    ``found_at`` the number of examples checked when the first counterexample was met.
    """

    claim_id: str
    max_examples: int
    wide: bool
    counterexample: dict | None
    verdict: Verdict | None
    examples: int = 0
    region: dict[str, str] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=list)
    seed: int | None = None
    defaults: FailureRate | None = None
    interrupted: bool = False
    found_at: int | None = None

    def to_json(self) -> dict:
        return {
            "id": self.claim_id,
            "max_examples": self.max_examples,
            "wide": self.wide,
            "found": self.counterexample is not None,
            "counterexample": self.counterexample,
            "seed": self.seed,
            "verdict": None if self.verdict is None else self.verdict.to_json(),
            "examples": self.examples,
            "region": self.region,
            "seeds": self.seeds,
            "defaults": None if self.defaults is None else self.defaults.to_json(),
            "interrupted": self.interrupted,
            "found_at": self.found_at,
        }


def falsify(claim: Claim, max_examples: int = 50, wide: bool = False, backend: str = "numpy",
            device: str = "cpu", seed: int = 0, seeds: int | None = None,
            on_example: Callable[[Params], None] | None = None, max_shrinks: int | None = None) -> FalsifyResult:
    """Search the claim's domain (or, with ``wide``, its valid range) for a failing parameter set.

    Hypothesis shrinks what it finds, so the counterexample returned is a small one; shrinking
    stops after ``max_shrinks`` further checks (default ``max_examples``), since a claim's check
    can take seconds. A check that raises is a counterexample too (its verdict has status
    ``"error"``). No example database is kept (``database=None``).

    Args:
      seeds: also draw the simulation seed, from ``seed, ..., seed + seeds - 1``; first the claim
        is checked at its defaults for each of those seeds, and the failure rate is reported in
        ``defaults`` (a claim can fail at its defaults for some seeds only).

    Ctrl-C raises :class:`Interrupted`, whose ``partial`` is the result so far (with the smallest
    counterexample met, if any).
    """
    from hypothesis import Phase, find
    from hypothesis.errors import NoSuchExample

    if max_examples < 1:
        raise ValueError(f"max_examples={max_examples!r} is out of range: max_examples must be at least 1")
    if seeds is not None and seeds < 1:
        raise ValueError(f"seeds={seeds!r} is out of range: seeds must be at least 1")
    budget = max_examples if max_shrinks is None else max_shrinks
    seed_list = [] if seeds is None else list(range(seed, seed + seeds))
    res = FalsifyResult(claim.id, max_examples, wide, None, None, region=search_region(claim.params, wide),
                        seeds=seed_list)
    if seed_list:
        res.region["seed"] = f"[{seed_list[0]}, {seed_list[-1]}] integers (the simulation seed)"
    seen: dict[tuple, Verdict] = {}
    last: dict = {}

    def fails(drawn) -> bool:
        p, s = drawn
        key = (tuple(sorted(p.asdict().items())), s)
        if key in seen:  # hypothesis replays what it has met: answer as before, without a new check
            return not seen[key].passed
        if res.found_at is not None and res.examples - res.found_at >= budget:
            return False  # the shrinking budget is spent: nothing new is smaller
        if on_example is not None:
            on_example(p)
        v = claim.check(p, backend=backend, device=device, seed=s, on_error="verdict")
        seen[key] = v
        res.examples += 1
        if not v.passed:
            last.update(params=p, seed=s, verdict=v)
            if res.found_at is None:
                res.found_at = res.examples
        return not v.passed

    phases = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink]  # no `explain`
    try:
        if seed_list:
            res.defaults = failure_rate(claim, None, seed_list, backend=backend, device=device)
        strategy = params_strategy(claim.params, wide=wide)
        strategy = st.tuples(strategy, st.integers(seed_list[0], seed_list[-1]) if seed_list else st.just(seed))
        # an explicit random: a fresh search each time, and hypothesis does not print a seed "to
        # reproduce" (meant for its own test runs) when the user presses Ctrl-C
        found, s = find(strategy, fails, random=random.Random(),
                        settings=settings(max_examples=max_examples, database=None, phases=phases, **_COMMON))
    except NoSuchExample:
        return res
    except KeyboardInterrupt as e:
        res.interrupted = True
        if isinstance(e, Interrupted) and res.defaults is None:
            res.defaults = e.partial
        if last:
            res.counterexample, res.seed, res.verdict = last["params"].asdict(), last["seed"], last["verdict"]
        raise Interrupted(res) from None
    res.counterexample, res.seed = found.asdict(), s
    res.verdict = seen[(tuple(sorted(found.asdict().items())), s)]
    return res


def proves(*claim_ids: str) -> Callable:
    """Mark a ``proofs_check`` test as deriving the named claims (read by the coverage test)."""

    def mark(fn: Callable) -> Callable:
        fn.__proves__ = tuple(getattr(fn, "__proves__", ())) + claim_ids
        return fn

    return mark
