"""Array backends: numpy (the reference) and torch (CPU or CUDA), with dtype and seeding.

A simulator receives a :class:`Backend` and writes its array program once against ``backend.xp``,
the array-API namespace of that backend (``array_api_compat.numpy`` or ``array_api_compat.torch``).
Random numbers come from ``backend.rng(seed)``: the same seed on the same backend, device and dtype
gives the same numbers. Streams differ between numpy and torch, so cross-backend tests compare
statistics, or pass the same data in through :meth:`Backend.asarray`.

Defaults: float64 on the CPU (checks are made in double precision); float32 on CUDA, where claims
state a looser tolerance through :meth:`Backend.roundoff`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from .checks import check_choice, check_int

__all__ = ["Backend", "Generator", "get_backend", "cuda_available", "BACKENDS", "DEVICES"]

BACKENDS = ("numpy", "torch")
DEVICES = ("cpu", "cuda")
DTYPES = ("float64", "float32")


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a base dependency
        return False
    return bool(torch.cuda.is_available())


@dataclass(frozen=True)
class Backend:
    """Where and in what precision a simulator runs.

    Attributes:
      name: ``"numpy"`` or ``"torch"``.
      device: ``"cpu"`` or ``"cuda"`` (``"cuda"`` only with torch).
      dtype: ``"float64"`` or ``"float32"``.
    """

    name: str = "numpy"
    device: str = "cpu"
    dtype: str = "float64"

    @cached_property
    def xp(self) -> Any:
        """The array-API namespace (array-api-compat wrapper of numpy or torch)."""
        if self.name == "numpy":
            import array_api_compat.numpy as xp
        else:
            import array_api_compat.torch as xp
        return xp

    @cached_property
    def float_dtype(self) -> Any:
        """The native dtype object (``numpy.float64``, ``torch.float32``, ...)."""
        if self.name == "numpy":
            return np.dtype(self.dtype)
        import torch

        return getattr(torch, self.dtype)

    @property
    def eps(self) -> float:
        """Machine epsilon of the working dtype."""
        return float(np.finfo(self.dtype).eps)

    def roundoff(self, n_ops: float = 1.0) -> float:
        """A relative round-off bound: ``n_ops * eps`` (the dtype-aware tolerance helper).

        Use it where the only error between two computations of the same number is
        floating-point round-off accumulated over about ``n_ops`` operations.
        """
        return float(n_ops) * self.eps

    def asarray(self, x: Any) -> Any:
        """``x`` as an array of this backend, on its device, in its float dtype."""
        if self.name == "numpy":
            if hasattr(x, "detach"):
                x = x.detach().cpu().numpy()
            return np.asarray(x, dtype=self.float_dtype)
        import torch

        if isinstance(x, torch.Tensor):
            return x.to(device=self.device, dtype=self.float_dtype)
        # np.array copies: torch refuses to share memory with read-only numpy arrays.
        return torch.as_tensor(np.array(x, dtype=np.float64), dtype=self.float_dtype, device=self.device)

    @staticmethod
    def to_numpy(x: Any) -> np.ndarray:
        """Any array (numpy or torch, any device) as a float64 numpy array."""
        if hasattr(x, "detach"):
            x = x.detach().cpu().double().numpy()
        return np.asarray(x, dtype=np.float64)

    def rng(self, seed: int) -> "Generator":
        """A random generator for this backend seeded with ``seed``."""
        return Generator(self, check_int("seed", seed, 0, 2**63 - 1))


class Generator:
    """Random numbers on a backend, one interface over numpy's and torch's generators."""

    def __init__(self, backend: Backend, seed: int):
        self.backend = backend
        self.seed = seed
        if backend.name == "numpy":
            self._gen = np.random.default_rng(seed)
        else:
            import torch

            self._gen = torch.Generator(device=backend.device)
            self._gen.manual_seed(seed)

    def normal(self, shape: tuple[int, ...], scale: float = 1.0) -> Any:
        if self.backend.name == "numpy":
            return self._gen.standard_normal(shape, dtype=self.backend.float_dtype) * scale
        import torch

        out = torch.randn(shape, generator=self._gen, device=self.backend.device, dtype=self.backend.float_dtype)
        return out * scale

    def uniform(self, shape: tuple[int, ...], low: float = 0.0, high: float = 1.0) -> Any:
        if self.backend.name == "numpy":
            return self._gen.uniform(low, high, size=shape).astype(self.backend.float_dtype)
        import torch

        u = torch.rand(shape, generator=self._gen, device=self.backend.device, dtype=self.backend.float_dtype)
        return low + (high - low) * u

    def integers(self, low: int, high: int, shape: tuple[int, ...]) -> Any:
        """Uniform integers in ``[low, high)``."""
        if self.backend.name == "numpy":
            return self._gen.integers(low, high, size=shape)
        import torch

        return torch.randint(low, high, shape, generator=self._gen, device=self.backend.device)

    def permutations(self, n: int, batch: int) -> Any:
        """``batch`` independent permutations of ``range(n)``, shape ``(batch, n)``."""
        if self.backend.name == "numpy":
            return np.argsort(self._gen.random((batch, n)), axis=1)
        import torch

        keys = torch.rand((batch, n), generator=self._gen, device=self.backend.device)
        return torch.argsort(keys, dim=1)


def get_backend(name: str = "numpy", device: str = "cpu", dtype: str | None = None) -> Backend:
    """Validate and build a :class:`Backend`.

    ``dtype=None`` picks float64 on the CPU and float32 on CUDA.

    >>> get_backend("numpy").dtype
    'float64'
    """
    if isinstance(name, Backend):
        return name
    check_choice("backend", name, BACKENDS)
    check_choice("device", device, DEVICES)
    if device == "cuda":
        if name != "torch":
            raise ValueError("device='cuda' needs backend='torch': backend must be torch on cuda")
        if not cuda_available():
            raise ValueError("device='cuda' is not available: torch.cuda.is_available() is False")
    if dtype is None:
        dtype = "float32" if device == "cuda" else "float64"
    check_choice("dtype", dtype, DTYPES)
    return Backend(name, device, dtype)
