"""Claims for testing sweeps and maps, never registered globally (the coverage tests would ask them
for proofs and notebooks): workers find them by importing this module (``solvable.tools.sweep``
looks for a Claim object with the id in the claim's module).

- ``sweeptoy.disk``: passes iff ``x^2 + y^2 <= r^2`` (a boundary of known length ``2 pi r``); its
  measured value adds ``noise * N(0, 1)`` drawn from the unit's seed, so stored numbers depend on
  the seed. ``SWEEPTOY_DELAY`` (seconds, an environment variable, not a parameter: the keys stay
  the same) slows each check down for the interruption tests.
- ``sweeptoy.heavy_ball_converges``: the heavy-ball recurrence of ``solvable.models.stability`` on
  curvature 1, simulated; passes iff the growth factor per step is at most 1 + 1e-3. True boundary:
  ``eta = 2 + 2 beta`` (``stability.heavy_ball_threshold(eta, beta) = 1``).
- ``sweeptoy.sphere_converges``: projected GD on the sphere of ``solvable.models.sphere`` with
  ``A = diag(1, a_max)``, simulated from 1e-7 off the bottom eigenvector; passes iff it converges.
  True boundary: ``elr = 2 / (a_max - 1)`` (``sphere.projected_threshold``).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

import numpy as np

from solvable.claims import Claim, Measurement, Params, Tolerance, param


@dataclass(frozen=True)
class DiskParams(Params):
    x: float = param(0.0, low=-2, high=2, doc="x")
    y: float = param(0.0, low=-2, high=2, doc="y")
    r: float = param(1.0, low=0, high=2, low_open=True, doc="radius r")
    noise: float = param(0.0, low=0, high=1, doc="noise added to x^2 + y^2")
    fail_above: float = param(10.0, low=0, doc="raise in the check when x > fail_above")


def _disk_measure(p, backend, seed):
    delay = float(os.environ.get("SWEEPTOY_DELAY", "0"))
    if delay:
        time.sleep(delay)
    if p.x > p.fail_above:
        raise RuntimeError(f"x={p.x} > fail_above")
    draw = float(np.random.default_rng(seed).standard_normal())
    return Measurement(value=p.x ** 2 + p.y ** 2 + p.noise * draw, info={"draw": draw})


DISK = Claim(
    id="sweeptoy.disk",
    statement="x^2 + y^2 <= r^2",
    reference="geometry",
    params=DiskParams,
    predicted=lambda p: p.r ** 2,
    measured=_disk_measure,
    tolerance=lambda p, m, be: Tolerance(1.0, "passes iff measured / predicted <= 1"),
    error=lambda pred, meas: float(meas) / float(pred),
    bound="upper",
)


@dataclass(frozen=True)
class HeavyBallParams(Params):
    eta: float = param(1.0, low=0, low_open=True, high=10, doc="step size eta (curvature 1)")
    beta: float = param(0.5, low=0, high=0.95, doc="momentum beta")


def _hb_measure(p, backend, seed):
    from solvable.models import stability

    rate = stability.growth_rate("heavy_ball", backend.asarray([1.0]), p.eta, p.beta, backend.asarray([[1.0]]),
                                 backend.asarray([1.0]), backend, steps=40)
    return Measurement(value=math.exp(float(backend.to_numpy(rate)[0])))


HEAVY_BALL = Claim(
    id="sweeptoy.heavy_ball_converges",
    statement="heavy ball on curvature 1 does not grow: |z_1| <= 1 + 1e-3",
    reference="solvable.models.stability (growth_rate)",
    params=HeavyBallParams,
    predicted=lambda p: 1.0,
    measured=_hb_measure,
    tolerance=lambda p, m, be: Tolerance(1.0 + 1e-3, "growth factor per step at most 1 + 1e-3"),
    error=lambda pred, meas: float(meas) / float(pred),
    bound="upper",
)


@dataclass(frozen=True)
class SphereParams(Params):
    elr: float = param(0.5, low=0, low_open=True, high=10, doc="effective learning rate")
    a_max: float = param(3.0, low=1.05, high=10, doc="largest eigenvalue (a_min = 1)")


def _sphere_measure(p, backend, seed):
    from solvable.models import sphere

    stable = sphere._stable(backend, np.array([1.0, p.a_max]), np.array([p.elr]), 40, seed)
    return Measurement(value=1.0, checks={"converges": bool(stable[0])})


SPHERE = Claim(
    id="sweeptoy.sphere_converges",
    statement="projected GD on the sphere converges to the bottom eigenvector",
    reference="solvable.models.sphere (_stable)",
    params=SphereParams,
    predicted=lambda p: 1.0,
    measured=_sphere_measure,
    tolerance=lambda p, m, be: Tolerance(0.0, "the check is the convergence test"),
    backends=("numpy",),
)

ALL = (DISK, HEAVY_BALL, SPHERE)
