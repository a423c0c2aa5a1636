"""The model modules whose claims are registered. Importing this module imports them all.

A new model module is added here; the coverage test then requires a proof check, a notebook
mention and a property test for each of its claims.
"""

import importlib

MODULES: tuple[str, ...] = ("dln", "ergodic", "gr", "rmt", "scaling", "sphere", "stability", "symmetry")

for _name in MODULES:
    importlib.import_module(f"{__package__}.{_name}")
