"""Speed of the batched DLN simulator: one array program over 256 trajectories vs a Python loop.

``dln_batched``: 256 trajectories (each its own dataset, n = 50, d = 200, u(0) = v(0) = alpha with a
per-run alpha), 2000 gradient-descent steps, numpy float64 on the CPU. The batched side is one
``solvable.models.dln.simulate`` call on ``X`` of shape (256, 50, 200); the loop side calls the same function
once per trajectory (B = 1). Both use the same step rule and run exactly 2000 steps
(``rtol_loss = 0``: no early stop). The loop is timed on ``LOOP_SUBSET`` trajectories and scaled to
256: every trajectory does the same work, so its cost is linear in their number (the per-trajectory
times are reported to show it). The same batched run is timed on torch (CPU).

Why the ratio is bounded on a CPU: each step reads the whole batch of designs twice (X beta and
X^T r), 256 * 50 * 200 * 8 B = 20 MB, more than the caches hold, so the batched step runs at memory
bandwidth; a single trajectory's 80 kB design stays in L2 and its step is dominated by the ~25 numpy
calls' fixed overhead (a few microseconds each). The reported ``per_step_us`` and
``batched_matvec_gbytes_per_s`` make both sides of that argument measurable.
"""

from __future__ import annotations

import time

import numpy as np
from _timing import best_of

from solvable.models import dln
from solvable.backend import get_backend

B, N, D, STEPS = 256, 50, 200, 2000
LOOP_SUBSET = 16
REPEATS = 2


def _data():
    X, y, _ = dln.make_data(N, D, 5, seed=0, batch=B)
    alphas = np.geomspace(0.1, 1.0, B)
    return X, y, alphas




def dln_batched() -> dict:
    X, y, alphas = _data()
    kw = dict(max_steps=STEPS, rtol_loss=0.0)
    t_batched = best_of(lambda: dln.simulate(X, y, alphas, **kw), REPEATS)
    per_traj = []
    for i in range(LOOP_SUBSET):
        t0 = time.perf_counter()
        dln.simulate(X[i], y[i], alphas[i], **kw)
        per_traj.append(time.perf_counter() - t0)
    t_loop = float(np.mean(per_traj)) * B
    tb = get_backend("torch")
    t_torch = best_of(lambda: dln.simulate(X, y, alphas, backend=tb, **kw), 1)
    # the memory-bound kernel alone: one batched X @ beta over the whole batch
    beta = np.ones((B, D))
    reps = 20
    t0 = time.perf_counter()
    for _ in range(reps):
        np.matmul(X, beta[..., None])
    t_mv = (time.perf_counter() - t0) / reps
    return {
        "ratio": t_loop / t_batched,
        "target": ">= 20",
        "compared": "Python loop of dln.simulate over single trajectories / one batched dln.simulate call",
        "sizes": {"trajectories": B, "n": N, "d": D, "steps": STEPS},
        "backend": "numpy", "device": "cpu", "dtype": "float64",
        "batched_seconds": t_batched,
        "loop_seconds": t_loop,
        "loop_measured_on": LOOP_SUBSET,
        "loop_seconds_per_trajectory": [round(t, 4) for t in per_traj],
        "per_step_us": {"batched_all_256": 1e6 * t_batched / STEPS, "single_trajectory": 1e6 * t_loop / B / STEPS},
        "batched_matvec_gbytes_per_s": X.nbytes / t_mv / 1e9,
        "torch_cpu_batched_seconds": t_torch,
        "note": "shared CPU: times are noisy; re-run on a quiet machine",
    }


BENCHMARKS = {"dln_batched": dln_batched}
