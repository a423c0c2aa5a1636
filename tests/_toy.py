"""A toy claim for testing the engine, CLI and report without depending on any real model.

The sample mean of n draws of N(mu, 1) estimates mu, with standard error 1/sqrt(n); the value
``kind="broken"`` (outside the claim's domain, inside its valid range) adds a bias of 0.5, so that
``falsify --wide`` has something to find.
"""

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
)
