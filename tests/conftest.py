"""Shared test set-up: the hypothesis profile, the backend/device matrix, and the toy registry.

``backend_device`` runs a test on numpy/cpu, torch/cpu and torch/cuda; the CUDA case is marked
``gpu`` and skips cleanly where CUDA is missing. Test ids name the device.
"""

import os

import pytest

from _toy import ALL_TOYS, INTERRUPT_AFTER, TOY_CLAIM  # tests/ is on sys.path (pytest's prepend import mode)
import solvable
from solvable import claims as _claims
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


@pytest.fixture
def toy_registry(monkeypatch):
    """Replace the registry by the toy claim alone (real models are not imported)."""
    monkeypatch.setattr(_claims, "_REGISTRY", {TOY_CLAIM.id: TOY_CLAIM})
    monkeypatch.setattr(solvable, "load_models", lambda: None)
    return TOY_CLAIM


@pytest.fixture
def toy_claims(monkeypatch):
    """Replace the registry by every toy claim of ``_toy.py`` (errors, interrupts, bounds, checks)."""
    monkeypatch.setattr(_claims, "_REGISTRY", {c.id: c for c in ALL_TOYS})
    monkeypatch.setattr(solvable, "load_models", lambda: None)
    INTERRUPT_AFTER[0] = 1
    yield {c.id: c for c in ALL_TOYS}
    INTERRUPT_AFTER[0] = 1
