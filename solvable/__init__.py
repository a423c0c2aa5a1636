"""solvable: a theory sandbox for neural-network optimization.

Each claim about how networks train is checked three ways that must agree: a sympy derivation
(``proofs_check/``), a closed form (``claim.predicted``) and a simulation of the model that never
calls the closed form (``claim.measured``).

>>> import solvable
>>> ids = [c.id for c in solvable.all_claims()]
"""

from .backend import Backend, get_backend
from .claims import Claim, Measurement, Params, Tolerance, Verdict, all_claims, get, param, register, select

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
    "param",
    "register",
    "select",
    "verify",
]


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
