"""solvable: a theory sandbox for neural-network optimization.

Each claim about how networks train is checked three ways that must agree: a sympy derivation
(``proofs_check/``), a closed form (``claim.predicted``) and a simulation of the model that never
calls the closed form (``claim.measured``).

>>> import solvable
>>> ids = [c.id for c in solvable.all_claims()]
"""

import importlib

from . import claims as _claims
from .backend import Backend, get_backend
from .claims import Claim, Measurement, Params, Tolerance, Verdict, param, register

__version__ = "0.1.0"

__all__ = [
    "Backend",
    "Claim",
    "Measurement",
    "Params",
    "Tolerance",
    "Verdict",
    "all_claims",
    "get",
    "get_backend",
    "load_models",
    "param",
    "register",
    "select",
    "sweep",
    "verify",
]


def load_models() -> None:
    """Import ``solvable.models`` (every model module), which registers their claims."""
    importlib.import_module(f"{__name__}.models")


def all_claims() -> list[Claim]:
    """Every registered claim of every model, sorted by id."""
    load_models()
    return _claims.all_claims()


def get(claim_id: str) -> Claim:
    """The claim with this id (``UnknownClaimError``, a ``KeyError``, if there is none)."""
    load_models()
    return _claims.get(claim_id)


def select(patterns=None) -> list[Claim]:
    """Claims matching ids or module prefixes (``"dln"``, ``"dln.implicit_bias"``); all if empty."""
    load_models()
    return _claims.select(patterns)


_MODEL_NAMES = ("dln", "ergodic", "gr", "rmt", "scaling", "sphere", "stability", "symmetry")
_TOOL_NAMES = ("curvature",)


def __getattr__(name: str):
    # Models moved to solvable.models and tools to solvable.tools (0.2); `from solvable import dln`
    # keeps working by loading the module from its new home.
    if name in _MODEL_NAMES:
        return importlib.import_module(f"{__name__}.models.{name}")
    if name in _TOOL_NAMES:
        return importlib.import_module(f"{__name__}.tools.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def verify(patterns=None, *, backend: str = "numpy", device: str = "cpu", seed: int = 0, **overrides):
    """Check the selected claims (ids or module prefixes; all if None) and return their verdicts.

    ``overrides`` set parameters by name, as ``--set`` does on the command line: each applies to
    every selected claim that has it, and must belong to at least one.
    """
    from .claims import apply_overrides
    from .report import Verdicts

    claims = select(patterns)
    params = apply_overrides(claims, {k: str(v) for k, v in overrides.items()})
    return Verdicts([c.check(params[c.id], backend=backend, device=device, seed=seed) for c in claims])


def sweep(claim, grid, **kwargs):
    """Check a claim (object or id) over a grid of parameters and seeds, through a resumable store;
    a pandas DataFrame, or without pandas a :class:`solvable.tools.sweep.SweepResult`. See
    :func:`solvable.tools.sweep.sweep` for the arguments."""
    from .tools.sweep import sweep as _sweep

    return _sweep(claim, grid, **kwargs)
