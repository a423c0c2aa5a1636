"""Benchmarks of solvable.models.symmetry.

teleport_overhead: the wall time of one teleport (10 ascent steps on the group element of the
data-dependent LeakyReLU action, on one minibatch) divided by the wall time of one training epoch
(one Adam step per minibatch over a dataset of ``n_batches`` minibatches) on the same two-layer MLP.

Target "<= 1": an ascent step is one double backward pass through the action (matrix_exp of an
h x h matrix, an SVD-based pseudo-inverse of the h x n activations, then the gradient of
||grad L||^2), i.e. a handful of minibatch forward/backward passes; 10 of them should cost no more
than the 64 minibatch steps of one epoch. Measured on a shared, noisy CPU; best of 3 repeats.
``quick=True``: 4 minibatches of 4 examples, h = 6, one repeat (the suite's smoke test).
"""

from __future__ import annotations

import time

import torch

from solvable import get_backend
from solvable.models import symmetry as sym


def _best(fn, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def teleport_overhead(quick: bool = False, n_batches: int = 64, batch: int = 16, d: int = 4, h: int = 24,
                      runs: int = 1) -> dict:
    if quick:
        n_batches, batch, h = 4, 4, 6
    repeats = 1 if quick else 3
    be = get_backend("torch", "cuda" if torch.cuda.is_available() else "cpu")
    rng = be.rng(0)
    X = rng.normal((n_batches, d, batch))
    Y = torch.tanh(rng.normal((1, d)) @ X)
    U = rng.normal((runs, 1, h), h ** -0.5).requires_grad_()
    V = rng.normal((runs, h, d), d ** -0.5).requires_grad_()
    opt = torch.optim.Adam([U, V], lr=1e-3)

    def epoch():
        for b in range(n_batches):
            opt.zero_grad()
            sym.mlp_loss(U, V, X[b], Y[b], 0.2).sum().backward()
            opt.step()
        if be.device == "cuda":
            torch.cuda.synchronize()

    def one_teleport():
        sym.teleport(U.detach(), V.detach(), X[0], Y[0], steps=10, step_size=0.05)
        if be.device == "cuda":
            torch.cuda.synchronize()

    epoch()
    one_teleport()  # warm-up
    t_epoch = _best(epoch, repeats)
    t_tele = _best(one_teleport, repeats)
    return {"ratio": t_tele / t_epoch, "target": "<= 1", "teleport_seconds": t_tele, "epoch_seconds": t_epoch,
            "sizes": {"n_batches": n_batches, "batch": batch, "d": d, "h": h, "runs": runs, "ascent_steps": 10},
            "backend": be.name, "device": be.device, "dtype": be.dtype, "quick": quick,
            "note": "epoch = one Adam step per minibatch; teleport on one minibatch (exact action, h >= batch)"}


BENCHMARKS = {"teleport_overhead": teleport_overhead}
TORCH_BENCHMARKS = ("teleport_overhead",)
