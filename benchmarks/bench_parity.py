"""Benchmarks of solvable.models.parity.

parity_batched: ``runs`` seeds of online SGD on the one-hidden-layer MLP (k-sparse parity, hinge loss)
trained as one batched array program (leading run axis) against the same number of steps run seed by
seed in a Python loop. Target ">= 10": at these sizes a step is a few small matmuls, so the loop pays
the per-call overhead ``runs`` times per step while the batched program pays it once.
"""

from __future__ import annotations

import time

from solvable import get_backend
from solvable.models import parity


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def parity_batched(quick: bool = False) -> dict:
    import torch

    # torch: a step is ~20 small kernels whose dispatch the loop pays per seed (on numpy the ratio is ~5:
    # the same flops, less overhead to amortise)
    be = get_backend("torch", "cuda" if torch.cuda.is_available() else "cpu")
    n, k, width, batch = 12, 2, 16, 16
    runs, steps = (32, 6) if quick else (128, 60)
    kw = dict(max_steps=steps, target=2.0)  # target > 1: never reached, every call runs all the steps

    def batched():
        parity.train_mlp_parity(n, k, width, 0.05, batch, runs, be, 0, **kw)

    def loop():
        for r in range(runs):
            parity.train_mlp_parity(n, k, width, 0.05, batch, 1, be, r, **kw)

    repeats = 1 if quick else 2
    t_b = _best(batched, repeats)
    t_l = _best(loop, repeats)
    return {"ratio": t_l / t_b, "target": ">= 10", "batched_seconds": t_b, "loop_seconds": t_l,
            "sizes": {"n": n, "k": k, "width": width, "batch": batch, "runs": runs, "steps": steps},
            "backend": be.name, "device": be.device, "dtype": be.dtype}


BENCHMARKS = {"parity_batched": parity_batched}
