"""A toy claim for testing the engine, CLI and report without depending on any real model.

The sample mean of n draws of N(mu, 1) estimates mu, with standard error 1/sqrt(n); the value
``kind="broken"`` (outside the claim's domain, inside its valid range) adds a bias of 0.5, so that
``falsify --wide`` has something to find.
"""

import math
from dataclasses import dataclass

from solvable import claims as _claims
from solvable.claims import Claim, Measurement, Params, Tolerance, param


@dataclass(frozen=True)
class ToyParams(Params):
    mu: float = param(1.0, low=-10, high=10, domain=(-5, 5), doc="mean mu")
    n: int = param(400, low=2, high=10**6, integer=True, domain=(100, 1000), doc="sample size n")
    kind: str = param("gauss", choices=("gauss", "broken"), domain=("gauss",), doc="'broken' adds a bias")


def _toy_measure(p, backend, seed):
    x = backend.rng(seed).normal((p.n,)) + p.mu + (0.5 if p.kind == "broken" else 0.0)
    return Measurement(value=float(backend.to_numpy(backend.xp.mean(x))), stderr=1 / p.n**0.5)


TOY_CLAIM = Claim(
    id="toy.sample_mean",
    statement="The sample mean of n draws of N(mu, 1) is within 5 standard errors of mu.",
    reference="the law of large numbers",
    params=ToyParams,
    predicted=lambda p: p.mu,
    measured=_toy_measure,
    tolerance=lambda p, m, be: Tolerance(5 * m.stderr, "5 standard errors 1/sqrt(n)"),
    error=_claims.max_abs_error,
    sweep="mu",
    sweep_values=(-1.0, 0.0, 2.0),
    mutants={"biased by one standard deviation": lambda p: p.mu + 1.0,
             "mean of |x|": lambda p: abs(p.mu) + 0.8},
)


# ---- more toys for the engine and the command line (registered by the `toy_claims` fixture)

from solvable.checks import check_memory  # noqa: E402


@dataclass(frozen=True)
class ToyMemoryParams(Params):
    n: int = param(100, low=2, integer=True, domain=(2, 1000), doc="matrix size n")
    guard: str = param("estimate", choices=("estimate", "none"),
                       doc="'estimate' refuses n before allocating; 'none' fails inside, as numpy would")


def _toy_memory(p, backend, seed):
    if p.guard == "estimate":
        # a fixed 'available' keeps the test independent of the machine's memory
        check_memory("n", p.n, 8.0 * p.n**2, what="an n x n float64 matrix", available=10**9)
    elif p.n > 10**4:
        raise MemoryError(f"Unable to allocate {8 * p.n**2 / 2**30:.3g} GiB for an array with shape ({p.n}, {p.n})")
    return Measurement(value=float(p.n))


TOY_MEMORY = Claim(
    id="toy.memory", statement="An n x n matrix has n rows.", reference="toy", params=ToyMemoryParams,
    predicted=lambda p: float(p.n), measured=_toy_memory,
    tolerance=lambda p, m, be: Tolerance(0.0, "exact"), error=_claims.max_abs_error)

# Raises KeyboardInterrupt (a user's Ctrl-C) on the INTERRUPT_AFTER[0]-th call (1 = the first).
INTERRUPT_AFTER = [1]


def _toy_interrupt(p, backend, seed):
    INTERRUPT_AFTER[0] -= 1
    if INTERRUPT_AFTER[0] <= 0:
        raise KeyboardInterrupt
    return Measurement(value=p.mu)


TOY_INTERRUPT = Claim(
    id="toy.user_interrupt", statement="Interrupted by the user.", reference="toy", params=ToyParams,
    predicted=lambda p: p.mu, measured=_toy_interrupt,
    tolerance=lambda p, m, be: Tolerance(1e-12, "exact"), error=_claims.max_abs_error)


@dataclass(frozen=True)
class ToyPairParams(Params):
    lo: float = param(0.0, low=-10, high=10, doc="lower end a")
    hi: float = param(1.0, low=-10, high=10, doc="upper end b")
    x: float = param(0.75, low=0, high=1, domain=(0.5, 1.0), doc="position x; the check needs x >= 0.25")

    def check(self) -> None:
        if not self.hi > self.lo:
            raise ValueError(f"hi={self.hi!r} is out of range: hi must be > lo={self.lo!r}")


def _toy_pair(p, backend, seed):
    ok = p.x >= 0.25
    # a measurement far off where its premise fails: the failed check is the reason, not the error
    return Measurement(value=p.lo + p.x * (p.hi - p.lo) + (0.0 if ok else 1.0), checks={"x_at_least_quarter": ok})


TOY_PAIR = Claim(
    id="toy.pair", statement="The point a + x (b - a) lies at x of the way from a to b.", reference="toy",
    params=ToyPairParams, predicted=lambda p: p.lo + p.x * (p.hi - p.lo), measured=_toy_pair,
    tolerance=lambda p, m, be: Tolerance(math.inf if not m.checks["x_at_least_quarter"] else 1e-9,
                                         "exact where the premise holds, anything where it does not"),
    error=_claims.max_abs_error, sweep="x", sweep_values=(0.5, 1.0),
    mutants={"x from the far end": lambda p: p.hi - p.x * (p.hi - p.lo), "the right formula": lambda p: p.lo + p.x * (p.hi - p.lo)})


def _toy_flaky(p, backend, seed):
    return Measurement(value=p.mu + (1.0 if seed % 4 == 1 else 0.0), stderr=0.01)


TOY_FLAKY = Claim(
    id="toy.flaky", statement="Holds except for one seed in four.", reference="toy", params=ToyParams,
    predicted=lambda p: p.mu, measured=_toy_flaky,
    tolerance=lambda p, m, be: Tolerance(0.05, "5 standard errors"), error=_claims.max_abs_error)


def _toy_bound(p, backend, seed):
    return Measurement(value=0.8 * p.mu, stderr=0.02 * abs(p.mu) + 1e-3)


TOY_BOUND = Claim(
    id="toy.upper_bound", statement="0.8 mu stays below mu for mu > 0.", reference="toy",
    params=ToyParams, predicted=lambda p: p.mu, measured=_toy_bound,
    tolerance=lambda p, m, be: Tolerance(0.01, "1% slack"),
    error=lambda pred, meas: max(0.0, float(meas) - float(pred)) / abs(float(pred)),
    bound="upper", sweep="mu", sweep_values=(0.5, 4.0),
    mutants={"bound 0.5 mu": lambda p: 0.5 * p.mu, "bound 0.7 mu": lambda p: 0.7 * p.mu})

ALL_TOYS = (TOY_CLAIM, TOY_MEMORY, TOY_INTERRUPT, TOY_PAIR, TOY_FLAKY, TOY_BOUND)
