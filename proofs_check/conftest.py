"""proofs_check: sympy derivations, one file per model, collected by pytest.

Besides ``test_*``, the ``check_*`` functions *defined* in a ``check_<model>.py`` file are
collected (names imported into it, such as ``solvable.checks.check_range``, are not).
"""

import inspect
import os

import pytest

from solvable.testing import load_profile

os.environ.setdefault("MPLBACKEND", "Agg")
load_profile()


def pytest_pycollect_makeitem(collector, name, obj):
    if (name.startswith("check_") and inspect.isfunction(obj) and isinstance(collector, pytest.Module)
            and obj.__module__ == collector.module.__name__):
        return list(collector._genfunctions(name, obj))
    return None
