"""The solvable models, one module each. Importing this package imports them all, and so registers
their claims: the engine (``solvable.claims``) never imports a model; the package's face
(``solvable.all_claims``, ``solvable.get``, ``solvable.select``) and the command line load this
package before they read the registry.

A new model module is added to ``MODULES``; the coverage test then requires a proof check, a
notebook mention, mutants and a property test for each of its claims.
"""

import importlib

MODULES: tuple[str, ...] = (
    "dln", "ergodic", "gr", "rmt", "scaling", "sphere", "stability", "symmetry",
    "decay", "descent", "grok", "kernels", "landscape", "lottery", "parity", "reinit", "rules", "slingshot",
)

for _name in MODULES:
    importlib.import_module(f"{__package__}.{_name}")
