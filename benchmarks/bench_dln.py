"""Speed of the batched DLN simulator: one array program over many trajectories vs a Python loop.

``dln_batched``: 256 trajectories, each on its own dataset (n = 50, d = 200, u(0) = v(0) = alpha with
a per-run alpha), 2000 gradient-descent steps, numpy float64 on the CPU. The batched side is one
``solvable.models.dln.simulate`` call on ``X`` of shape (256, 50, 200); the loop side calls the same
function once per trajectory (B = 1). Both use the same step rule and run exactly 2000 steps
(``rtol_loss = 0``: no early stop). The loop is timed on ``loop_subset`` trajectories and scaled to
256: every trajectory does the same work, so its cost is linear in their number (the per-trajectory
times are reported to show it). The same batched run is timed on torch (CPU).

Why this ratio is bounded on a CPU: each step reads the whole batch of designs twice (X beta and
X^T r), 256 * 50 * 200 * 8 B = 20 MB, at least the size of the last-level cache, so the batched step
runs at memory (or L3) bandwidth: batched matrix-vector products do 2 flops per 8-byte element read.
A single trajectory's 80 kB design stays in L2 and its step is dominated by the ~25 numpy calls'
fixed overhead (a few microseconds each). The run reports the bandwidth the batched step achieves
(``batched_design_gbytes_per_s``: 2 reads of the designs per step) next to the machine's, a
STREAM-like copy measured in the same run (``stream_copy_gbytes_per_s``: ``np.copyto`` between two
arrays of 4x the last-level cache, counting read + write bytes as STREAM does), and their quotient.

``dln_batched_shared``: many initialisations on one dataset, the shape of the dln claims (n = 20,
d = 40, as ``dln.implicit_bias``'s defaults; 1024 values of alpha). With a shared design the
batched products ``beta X^T`` and ``r X`` are matrix products (1024 x 40 by 40 x 20), which run at
the arithmetic rate and reuse ``X`` from cache, so the batched step costs a few microseconds per
trajectory against the loop's per-call overhead: target ratio >= 20.

``quick=True`` (``benchmarks/run.py --quick``, the smoke test in the suite) runs the same code at
tiny sizes; its ratios are not the benchmark's.
"""

from __future__ import annotations

import time

import numpy as np
from _timing import best_of

from solvable.backend import get_backend
from solvable.models import dln

FULL = dict(B=256, N=50, D=200, STEPS=2000, loop_subset=16, repeats=2, stream_elems=1 << 24)
QUICK = dict(B=4, N=6, D=12, STEPS=20, loop_subset=2, repeats=1, stream_elems=1 << 16)
SHARED_FULL = dict(B=1024, N=20, D=40, STEPS=1000, loop_subset=16, repeats=2)
SHARED_QUICK = dict(B=4, N=6, D=12, STEPS=20, loop_subset=2, repeats=1)


def stream_copy_gbytes_per_s(elems: int, repeats: int = 5) -> float:
    """STREAM-like copy bandwidth: best of ``repeats`` ``dst[:] = src`` over ``elems`` float64, in GB/s
    of bytes moved (one read and one write per element, STREAM's convention for Copy)."""
    src = np.ones(elems)
    dst = np.empty_like(src)
    np.copyto(dst, src)  # touch the pages first
    t = best_of(lambda: np.copyto(dst, src), repeats)
    return 2 * src.nbytes / t / 1e9


def _loop_times(X, y, alphas, n, kw) -> list[float]:
    per = []
    for i in range(n):
        t0 = time.perf_counter()
        dln.simulate(X[i] if X.ndim == 3 else X, y[i] if y.ndim == 2 else y, alphas[i:i + 1], **kw)
        per.append(time.perf_counter() - t0)
    return per


def dln_batched(quick: bool = False) -> dict:
    s = QUICK if quick else FULL
    B, N, D, STEPS = s["B"], s["N"], s["D"], s["STEPS"]
    X, y, _ = dln.make_data(N, D, min(5, D), seed=0, batch=B)
    alphas = np.geomspace(0.1, 1.0, B)
    kw = dict(max_steps=STEPS, rtol_loss=0.0)
    stream = stream_copy_gbytes_per_s(s["stream_elems"])
    t_batched = best_of(lambda: dln.simulate(X, y, alphas, **kw), s["repeats"])
    per_traj = _loop_times(X, y, alphas, s["loop_subset"], kw)
    t_loop = float(np.mean(per_traj)) * B
    tb = get_backend("torch")
    t_torch = best_of(lambda: dln.simulate(X, y, alphas, backend=tb, **kw), 1)
    # the memory-bound kernel alone: one batched X @ beta over the whole batch
    beta = np.ones((B, D))
    t_mv = best_of(lambda: np.matmul(X, beta[..., None]), 20)
    design_bw = 2 * X.nbytes * STEPS / t_batched / 1e9
    return {
        "ratio": t_loop / t_batched,
        "target": ">= 20",
        "compared": "Python loop of dln.simulate over single trajectories / one batched dln.simulate call "
                    "(one dataset per trajectory)",
        "sizes": {"trajectories": B, "n": N, "d": D, "steps": STEPS},
        "backend": "numpy", "device": "cpu", "dtype": "float64", "quick": quick,
        "batched_seconds": t_batched,
        "loop_seconds": t_loop,
        "loop_measured_on": s["loop_subset"],
        "loop_seconds_per_trajectory": [round(t, 4) for t in per_traj],
        "per_step_us": {"batched_all": 1e6 * t_batched / STEPS, "single_trajectory": 1e6 * t_loop / B / STEPS},
        "designs_mbytes": X.nbytes / 1e6,
        "batched_design_gbytes_per_s": design_bw,
        "batched_matvec_gbytes_per_s": X.nbytes / t_mv / 1e9,
        "stream_copy_gbytes_per_s": stream,
        "stream_array_mbytes": 8 * s["stream_elems"] / 1e6,
        "batched_design_bandwidth_over_stream_copy": design_bw / stream,
        "torch_cpu_batched_seconds": t_torch,
        "note": "the independent-dataset step streams the designs: its ratio is capped by bandwidth "
                "(compare batched_design_gbytes_per_s with stream_copy_gbytes_per_s); shared CPU: times are noisy",
    }


def dln_batched_shared(quick: bool = False) -> dict:
    s = SHARED_QUICK if quick else SHARED_FULL
    B, N, D, STEPS = s["B"], s["N"], s["D"], s["STEPS"]
    X, y, _ = dln.make_data(N, D, min(3, D), seed=0)
    alphas = np.geomspace(0.01, 10.0, B)[:, None]  # (B, 1): one initial scale per run
    kw = dict(max_steps=STEPS, rtol_loss=0.0)
    t_batched = best_of(lambda: dln.simulate(X, y, alphas, **kw), s["repeats"])
    per_traj = _loop_times(X, y, alphas, s["loop_subset"], kw)
    t_loop = float(np.mean(per_traj)) * B
    tb = get_backend("torch")
    t_torch = best_of(lambda: dln.simulate(X, y, alphas, backend=tb, **kw), 1)
    return {
        "ratio": t_loop / t_batched,
        "target": ">= 20",
        "compared": "Python loop of dln.simulate over single initialisations / one batched dln.simulate call "
                    "(one shared dataset: the batched products are matrix products)",
        "sizes": {"initialisations": B, "n": N, "d": D, "steps": STEPS},
        "backend": "numpy", "device": "cpu", "dtype": "float64", "quick": quick,
        "batched_seconds": t_batched,
        "loop_seconds": t_loop,
        "loop_measured_on": s["loop_subset"],
        "loop_seconds_per_trajectory": [round(t, 4) for t in per_traj],
        "per_step_us": {"batched_all": 1e6 * t_batched / STEPS, "batched_per_trajectory": 1e6 * t_batched / B / STEPS,
                        "single_trajectory": 1e6 * t_loop / B / STEPS},
        "torch_cpu_batched_seconds": t_torch,
        "note": "sizes of the dln claims (n = 20, d = 40); shared CPU: times are noisy",
    }


BENCHMARKS = {"dln_batched": dln_batched, "dln_batched_shared": dln_batched_shared}
TORCH_BENCHMARKS = ()
