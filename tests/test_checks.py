import math

import numpy as np
import pytest

from solvable.checks import (check_choice, check_finite_array, check_int, check_positive, check_range,
                             check_shapes_match)


@pytest.mark.parametrize("call, needle", [
    (lambda: check_positive("alpha", 0), "alpha=0 is out of range: alpha must be a finite number in (0, inf)"),
    (lambda: check_positive("alpha", -1.5), "alpha=-1.5"),
    (lambda: check_range("beta", 1.0, 0, 1, high_open=True), "beta must be a finite number in [0, 1)"),
    (lambda: check_range("x", math.nan), "x=nan"),
    (lambda: check_range("x", math.inf, 0), "x=inf"),
    (lambda: check_range("x", "abc"), "x='abc' is not a number"),
    (lambda: check_int("k", 0, 1), "k=0 is out of range: k must be an integer in [1, inf)"),
    (lambda: check_int("k", 1.5), "k=1.5 is not an integer"),
    (lambda: check_int("k", True), "k=True is not an integer"),
    (lambda: check_choice("mode", "z", ("a", "b")), "mode='z' is not allowed: mode must be one of a, b"),
    (lambda: check_finite_array("X", np.array([1.0, np.nan])), "X contains NaN or inf"),
    (lambda: check_shapes_match("X", 3, "y", 4), "X has 3 rows but y has 4"),
])
def test_messages_name_parameter_value_and_range(call, needle):
    with pytest.raises(ValueError) as e:
        call()
    assert needle in str(e.value)


def test_valid_values_pass_through():
    assert check_range("b", 0.0, 0, 1, high_open=True) == 0.0
    assert check_int("k", 3.0, 1) == 3
    check_finite_array("X", np.ones(3))


def test_torch_arrays():
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError, match="X contains NaN"):
        check_finite_array("X", torch.tensor([1.0, float("inf")]))
