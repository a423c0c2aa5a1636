"""Grokking modular addition: Gromov's closed-form network.

Task: ``(a, b) -> a + b mod p`` for ``a, b in Z_p`` (``p`` prime), inputs one-hot. A two-layer MLP with
quadratic activation and ``N`` hidden neurons,

    h_k(a, b) = (U_{k a} + V_{k b})^2,        z_q(a, b) = sum_k W_{q k} h_k(a, b),

with Gromov's (2023) weights: per neuron a frequency ``s_k`` uniform in ``{1, ..., (p-1)/2}`` and
phases ``phi1_k, phi2_k`` uniform in ``[0, 2 pi)``,

    U_{k a} = cos(2 pi s_k a/p + phi1_k),  V_{k b} = cos(2 pi s_k b/p + phi2_k),
    W_{q k} = cos(2 pi s_k q/p + phi1_k + phi2_k).

Expanding the square, ``h = cos^2 A + cos^2 B + cos(A + B) + cos(A - B)`` (``A, B`` the two
arguments); only ``cos(A + B) = cos(2 pi s (a + b)/p + phi1 + phi2)`` matches the output phase, and
``cos(A + B) cos(2 pi s q/p + phi1 + phi2)`` has phase average ``cos(2 pi s (a + b - q)/p)/2``, which
summed over the frequencies peaks at ``q = a + b``. Averaged over all ``p^2`` pairs the other terms
cancel exactly (sums of ``exp(2 pi i s m a/p)`` over ``a`` vanish for ``p`` prime, ``s m != 0 mod p``),
and ``sum_q W_{qk} = 0``, so for every seed and width (derived in ``proofs_check/check_grok.py``):

    mean over pairs of z_{a+b} = N/2,     mean over pairs and q != a + b of z_q = -N/(2 (p - 1)).

Per pair, the other terms are noise of size ``O(sqrt(N))`` against a gap ``~ N/2``, so the argmax is
``a + b`` on every pair once ``N`` is large enough (measured: at ``N >= 300``, ``p <= 31``, every pair
in every draw; the smallest margin was ``0.15 N`` at ``p = 31``).

References:
  Gromov, 2023. "Grokking modular arithmetic." arXiv 2301.02679.
  Power, Burda, Edwards, Babuschkin, Misra, 2022. "Grokking: generalization beyond overfitting on
  small algorithmic datasets." arXiv 2201.02177.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backend import Backend
from ..checks import check_int, check_range
from ..claims import Claim, Measurement, Params, Tolerance, param, register, relative_errors

__all__ = [
    "check_prime",
    "gromov_mean_logits",
    "gromov_weights",
    "gromov_logits",
]


def check_prime(p: int) -> int:
    """``p`` must be a prime ``>= 3`` (ValueError naming the value and the range otherwise)."""
    p = check_int("p", p, 3)
    if any(p % d == 0 for d in range(2, int(math.isqrt(p)) + 1)):
        raise ValueError(f"p={p} is not prime: p must be a prime >= 3")
    return p


# --------------------------------------------------------------------------------------------
# Closed forms


def gromov_mean_logits(p: int) -> list[float]:
    """``[1/2, -1/(2 (p - 1))]``: the correct logit and the wrong logits of Gromov's network, averaged
    over all pairs (and over the wrong classes), per neuron."""
    p = check_prime(p)
    return [0.5, -0.5 / (p - 1)]


# --------------------------------------------------------------------------------------------
# The construction, batched over seeds


def gromov_weights(p: int, width: int, runs: int, backend: Backend, seed: int) -> tuple[Any, Any, Any]:
    """``(U, V, W)`` of shapes ``(runs, width, p)``, ``(runs, width, p)``, ``(runs, p, width)``."""
    p = check_prime(p)
    width = check_int("width", width, 1)
    runs = check_int("runs", runs, 1)
    rng = backend.rng(seed)
    xp = backend.xp
    s = xp.astype(rng.integers(1, (p - 1) // 2 + 1, (runs, width, 1)), backend.float_dtype)
    ph1 = rng.uniform((runs, width, 1), 0.0, 2 * math.pi)
    ph2 = rng.uniform((runs, width, 1), 0.0, 2 * math.pi)
    n = backend.asarray(np.arange(p, dtype=float))[None, None, :]
    U = xp.cos(2 * math.pi * s * n / p + ph1)
    V = xp.cos(2 * math.pi * s * n / p + ph2)
    W = xp.permute_dims(xp.cos(2 * math.pi * s * n / p + ph1 + ph2), (0, 2, 1))
    return U, V, W


def gromov_logits(U: Any, V: Any, W: Any, backend: Backend) -> Any:
    """Logits ``z[r, a, b, q]`` of the quadratic-activation MLP on all ``p^2`` pairs."""
    H = (U[:, :, :, None] + V[:, :, None, :]) ** 2  # (runs, width, a, b)
    return _einsum(W, H, backend)


def _einsum(W, H, backend):
    if backend.name == "torch":
        import torch

        return torch.einsum("rqk,rkab->rabq", W, H)
    return np.einsum("rqk,rkab->rabq", W, H)


@dataclass(frozen=True)
class GromovParams(Params):
    p: int = param(23, low=3, high=61, integer=True, domain=(5, 31), doc="modulus p (prime)")
    width: int = param(400, low=1, high=4096, integer=True, domain=(300, 800), log=True, doc="hidden width N")
    seed: int = param(0, low=0, high=2**31 - 1, integer=True, domain=(0, 1000), doc="seed of the random frequencies and phases")

    def check(self) -> None:
        check_prime(self.p)


_RUNS = 8


def _measure_gromov(p: GromovParams, backend: Backend, seed: int) -> Measurement:
    U, V, W = gromov_weights(p.p, p.width, _RUNS, backend, seed + 7919 * p.seed)
    z = backend.to_numpy(gromov_logits(U, V, W, backend)) / p.width
    P = p.p
    a, b = np.meshgrid(np.arange(P), np.arange(P), indexing="ij")
    target = (a + b) % P
    correct = np.take_along_axis(z, target[None, :, :, None], axis=3)[..., 0]  # (runs, a, b)
    wrong_mean = (z.sum(axis=3) - correct) / (P - 1)
    acc = (z.argmax(axis=3) == target[None]).mean(axis=(1, 2))
    margin = correct - np.max(np.where(np.arange(P)[None, None, None, :] == target[None, :, :, None], -np.inf, z), axis=3)
    return Measurement(value=[float(correct.mean()), float(wrong_mean.mean())],
                       checks={"argmax_exact_on_all_pairs_all_runs": bool(acc.min() == 1.0)},
                       info={"accuracy_per_run": acc.tolist(), "min_margin_over_N": float(margin.min()),
                             "runs": _RUNS, "per_neuron_logit_sd": float(z.std(axis=(1, 2, 3)).mean() * math.sqrt(p.width))})


register(Claim(
    id="grok.gromov_solution",
    statement=("Gromov's closed-form weights (per neuron a frequency s in {1..(p-1)/2}, phases phi1, phi2; "
               "U = cos(2 pi s a/p + phi1), V = cos(2 pi s b/p + phi2), W = cos(2 pi s q/p + phi1 + phi2)) make the "
               "quadratic-activation MLP's logits, averaged over all p^2 pairs, exactly N/2 at q = a + b mod p and "
               "-N/(2(p - 1)) elsewhere, for every draw; at widths N >= 300 (p <= 31) the argmax is a + b mod p on "
               "every pair in every one of 8 draws (checked; the per-pair noise is O(sqrt N) against the gap N/2)."),
    reference="Gromov 2023, arXiv 2301.02679, sec. 3 (construction); averages derived here (proofs_check/check_grok.py)",
    params=GromovParams,
    predicted=lambda p: gromov_mean_logits(p.p),
    measured=_measure_gromov,
    tolerance=lambda p, m, be: Tolerance(be.roundoff(64 * p.width * p.p), (
        "exact identities: round-off of sums over p^2 pairs of width-N dot products (64 N p ulps)")),
    error=relative_errors,
    sweep="p", sweep_values=(5, 11, 23, 31),
    mutants={
        "phase average 1/4 for 1/2": lambda p: [0.25, -0.25 / (p.p - 1)],
        "wrong logits average 0": lambda p: [0.5, 0.0],
        "wrong logits -1/(2p)": lambda p: [0.5, -0.5 / p.p],
    },
    closed_forms=("gromov_mean_logits",),
))
