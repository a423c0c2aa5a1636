"""Shared test set-up: the hypothesis profile, and the backend/device matrix.

``backend_device`` runs a test on numpy/cpu, torch/cpu and torch/cuda; the CUDA case is marked
``gpu`` and skips cleanly where CUDA is missing. Test ids name the device.
"""

import os

import pytest

from solvable.backend import cuda_available, get_backend
from solvable.testing import load_profile

os.environ.setdefault("MPLBACKEND", "Agg")
load_profile()

BACKEND_DEVICES = [
    pytest.param(("numpy", "cpu"), id="numpy-cpu"),
    pytest.param(("torch", "cpu"), id="torch-cpu"),
    pytest.param(("torch", "cuda"), id="torch-cuda", marks=[
        pytest.mark.gpu, pytest.mark.skipif(not cuda_available(), reason="CUDA not available")]),
]


@pytest.fixture(params=BACKEND_DEVICES)
def backend_device(request):
    """``(backend_name, device)`` over numpy/cpu, torch/cpu and torch/cuda."""
    return request.param


@pytest.fixture
def backend(backend_device):
    """A :class:`solvable.Backend` for each entry of the matrix (float64 on CPU, float32 on CUDA)."""
    return get_backend(*backend_device)


# A toy model for testing the engine, CLI and report without depending on any real model:
# the sample mean of n draws of N(mu, 1) estimates mu, with standard error 1/sqrt(n).
from dataclasses import dataclass  # noqa: E402

from solvable import claims as _claims  # noqa: E402
from solvable.claims import Claim, Measurement, Params, Tolerance, param  # noqa: E402


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


@pytest.fixture
def toy_registry(monkeypatch):
    """Replace the registry by the toy claim alone (real models are not imported)."""
    monkeypatch.setattr(_claims, "_REGISTRY", {TOY_CLAIM.id: TOY_CLAIM})
    monkeypatch.setattr(_claims, "_load_models", lambda: None)
    return TOY_CLAIM
