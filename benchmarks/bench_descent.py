"""descent_batched: 1000 min-norm least-squares fits as one batched Gram solve vs a Python loop of
numpy.linalg.lstsq (the standard per-problem way). Both sides are checked against each other."""

from __future__ import annotations

import numpy as np

from _timing import best_of
from solvable.backend import get_backend
from solvable.models import descent


def bench_descent_batched(quick: bool = False):
    batch, n, p = (50, 20, 40) if quick else (1000, 100, 200)
    be = get_backend("numpy")
    X, beta, eps = descent.sample_problem(batch, n, p, 2.0, 0.5, be, seed=0)
    y = (X @ beta[..., None])[..., 0] + eps
    out = {}

    def batched():
        out["b"] = descent.min_norm_fit(X, y, be)

    def loop():
        out["l"] = np.stack([np.linalg.lstsq(X[i], y[i], rcond=None)[0] for i in range(batch)])

    t_b = best_of(batched, 3)
    t_l = best_of(loop, 1)
    diff = float(np.max(np.abs(out["b"] - out["l"])) / np.max(np.abs(out["l"])))
    return {"ratio": t_l / t_b, "target": ">= 10", "sizes": f"{batch} fits of ({n} x {p})", "backend": "numpy",
            "device": "cpu", "seconds_batched": t_b, "seconds_loop_lstsq": t_l, "max_rel_diff": diff}


BENCHMARKS = {"descent_batched": bench_descent_batched}
