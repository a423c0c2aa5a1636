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


def test_check_memory_names_the_parameter_the_estimate_and_what_is_free():
    from solvable.checks import available_memory, check_memory, format_bytes

    check_memory("n", 100, 8 * 100**2, available=10**9)  # fits: nothing raised
    with pytest.raises(ValueError) as e:
        check_memory("n", 100000, 8.0 * 100000**2, what="an n x n float64 matrix", available=10**9)
    msg = str(e.value)
    assert msg.startswith("n=100000 is out of range: an n x n float64 matrix needs about 74.5 GiB")
    assert "763 MiB available" in msg and "choose a smaller n" in msg
    assert format_bytes(1536) == "1.5 KiB"
    free = available_memory()
    assert free is None or free > 0
    with pytest.raises(ValueError, match="fraction"):
        check_memory("n", 1, 1, fraction=0)


def test_describe_range_prints_integers_exactly():
    from solvable.checks import describe_range

    assert describe_range(0, 2**63 - 1, False, False) == "[0, 9223372036854775807]"
    assert describe_range(0.5, None, True, False) == "(0.5, inf)"
