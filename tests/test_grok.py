"""solvable.models.grok: Gromov's closed-form network for modular addition."""

from __future__ import annotations

import numpy as np
import pytest

from solvable.backend import get_backend
from solvable.models import grok


@pytest.mark.parametrize("p", [0, 1, 2, 4, 9, 15])
def test_p_must_be_an_odd_prime(p):
    with pytest.raises(ValueError, match=rf"p={p} (is out of range|is not prime)"):
        grok.check_prime(p)


def test_shapes_and_exact_pair_averages(backend):
    U, V, W = grok.gromov_weights(7, 50, 3, backend, seed=1)
    assert tuple(U.shape) == (3, 50, 7) and tuple(W.shape) == (3, 7, 50)
    z = backend.to_numpy(grok.gromov_logits(U, V, W, backend)) / 50
    a, b = np.meshgrid(np.arange(7), np.arange(7), indexing="ij")
    correct = np.take_along_axis(z, ((a + b) % 7)[None, :, :, None], axis=3)[..., 0]
    # the identity holds per run, not only on average over seeds
    np.testing.assert_allclose(correct.mean(axis=(1, 2)), 0.5, rtol=backend.roundoff(1e4))
    np.testing.assert_allclose(z.sum(axis=3), 0.0, atol=backend.roundoff(1e4) * 50)


def test_wide_network_is_exact_and_narrow_one_is_not():
    be = get_backend("numpy")
    acc = {}
    for width in (2, 600):
        U, V, W = grok.gromov_weights(23, width, 8, be, seed=0)
        z = grok.gromov_logits(U, V, W, be)
        a, b = np.meshgrid(np.arange(23), np.arange(23), indexing="ij")
        acc[width] = (z.argmax(axis=3) == (a + b) % 23).mean()
    assert acc[600] == 1.0 and acc[2] < 0.5


def test_same_seed_same_weights():
    be = get_backend("numpy")
    for x, y in zip(grok.gromov_weights(5, 4, 2, be, 3), grok.gromov_weights(5, 4, 2, be, 3)):
        np.testing.assert_array_equal(x, y)


def test_bad_width():
    with pytest.raises(ValueError, match="width=0"):
        grok.gromov_weights(5, 0, 1, get_backend("numpy"), 0)
