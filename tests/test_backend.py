import numpy as np
import pytest

from solvable.backend import get_backend


def test_defaults_and_dtypes(backend):
    x = backend.asarray([1.0, 2.0])
    assert backend.to_numpy(x).dtype == np.float64
    assert str(x.dtype).endswith(backend.dtype)
    if backend.device == "cpu":
        assert backend.dtype == "float64"


def test_same_seed_same_numbers(backend):
    a = backend.to_numpy(backend.rng(7).normal((5, 3)))
    b = backend.to_numpy(backend.rng(7).normal((5, 3)))
    c = backend.to_numpy(backend.rng(8).normal((5, 3)))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_generator_distributions(backend):
    # 10^5 draws: means within 5 standard errors (1/sqrt(1e5) ~ 0.0032) of their expectations.
    g = backend.rng(0)
    z = backend.to_numpy(g.normal((100_000,)))
    u = backend.to_numpy(g.uniform((100_000,), 2.0, 4.0))
    k = backend.to_numpy(g.integers(0, 10, (100_000,)))
    assert abs(z.mean()) < 5 / np.sqrt(1e5) and abs(z.std() - 1) < 0.02
    assert abs(u.mean() - 3.0) < 5 * (2 / np.sqrt(12)) / np.sqrt(1e5) and u.min() >= 2 and u.max() <= 4
    assert set(np.unique(k)) == set(range(10))
    perms = backend.to_numpy(g.permutations(6, 4))
    assert perms.shape == (4, 6) and all(sorted(r) == list(range(6)) for r in perms)


def test_array_namespace_is_array_api(backend):
    xp = backend.xp
    x = backend.asarray(np.arange(6.0).reshape(2, 3))
    np.testing.assert_allclose(backend.to_numpy(xp.sum(x, axis=1)), [3.0, 12.0])


@pytest.mark.parametrize("kw, needle", [
    (dict(name="jax"), "backend='jax'"),
    (dict(device="tpu"), "device='tpu'"),
    (dict(name="numpy", device="cuda"), "needs backend='torch'"),
    (dict(dtype="float16"), "dtype='float16'"),
])
def test_bad_backend_arguments(kw, needle):
    with pytest.raises(ValueError, match=needle.replace("(", r"\(")):
        get_backend(**kw)


def test_bad_seed():
    with pytest.raises(ValueError, match="seed=-1"):
        get_backend().rng(-1)


def test_roundoff_is_dtype_aware():
    assert get_backend(dtype="float32").roundoff(10) == pytest.approx(10 * np.finfo(np.float32).eps)
    assert get_backend().roundoff(10) == pytest.approx(10 * np.finfo(np.float64).eps)
