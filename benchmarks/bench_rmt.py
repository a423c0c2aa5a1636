"""rmt_batched: top eigenvalues of 64 independent 1000 x 1000 batch Hessians, one batched call vs a loop.

The batch Hessians are ``H_b = X_b^T X_b / B`` of least squares on spiked Gaussian features (d = 1000,
B = 256, population spike ell = 6). numpy's ``eigvalsh`` on a stack is a loop over LAPACK calls
internally (O(d^3) each), so the batched method here is Lanczos on the whole stack
(:func:`solvable.models.rmt.lanczos_top`): 40 batched products ``X^T (X v) / B``, one array program. The
loop side computes each Hessian and its full spectrum with ``eigvalsh`` (the standard way), matrix by
matrix. Both sides are checked against each other (the Lanczos residual bound is reported too).
torch: the same Lanczos program on torch vs a loop of ``torch.linalg.eigvalsh``, and
``torch.linalg.eigvalsh`` on the stack for reference. ``quick=True``: 4 matrices of 30 x 30, B = 16,
10 Lanczos steps (the suite's smoke test).
"""

from __future__ import annotations

import math
import time

import numpy as np

from solvable.models import rmt
from solvable.backend import cuda_available, get_backend

FULL = dict(BATCH=64, D=1000, B=256, ITERS=40)
QUICK = dict(BATCH=4, D=30, B=16, ITERS=10)
ELL = 6.0


def _best(fn, repeats):
    best, out = math.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _features(backend, BATCH, B, D):
    g = backend.rng(0)
    X = g.normal((BATCH, B, D))
    X[:, :, 0] = X[:, :, 0] * math.sqrt(ELL)
    return X


def _run(backend_name, quick=False):
    s = QUICK if quick else FULL
    BATCH, D, B = s["BATCH"], s["D"], s["B"]
    be = get_backend(backend_name, "cuda" if backend_name == "torch" and cuda_available() else "cpu")
    xp = be.xp
    X = _features(be, BATCH, B, D)
    Xt = xp.permute_dims(X, (0, 2, 1))
    v0 = be.rng(1).normal((BATCH, D))

    def batched():
        return rmt.lanczos_top(lambda V: (Xt @ (X @ V[..., None]))[..., 0] / B, v0, iters=s["ITERS"], backend=be)

    def loop():
        return [float(xp.linalg.eigvalsh(Xt[i] @ X[i] / B)[-1]) for i in range(BATCH)]

    def sync():
        if be.device == "cuda":
            import torch

            torch.cuda.synchronize()

    def timed(fn):
        def run():
            out = fn()
            sync()
            return out
        return run

    batched, loop = timed(batched), timed(loop)
    t_b, (top, res) = _best(batched, 3)
    t_l, ref = _best(loop, 1)
    top = be.to_numpy(top)
    out = {"quick": quick, "sizes": f"{BATCH} x ({D} x {D}) batch Hessians, B = {B}", "backend": backend_name,
           "device": be.device,
           "seconds_batched_lanczos": t_b, "seconds_loop_eigvalsh": t_l, "ratio": t_l / t_b,
           "max_rel_diff": float(np.max(np.abs(top - np.array(ref)) / np.array(ref))),
           "max_residual_bound": float(be.to_numpy(res).max())}
    if backend_name == "torch":
        t_s, _ = _best(timed(lambda: xp.linalg.eigvalsh(Xt @ X / B)[:, -1]), 1)
        out["seconds_torch_eigvalsh_on_stack"] = t_s
    return out


def bench_numpy(quick=False):
    res = _run("numpy", quick)
    res["target"] = ">= 2"
    res["note"] = "timed on a shared 2-core machine (OMP_NUM_THREADS as set by the caller)"
    return res


def bench_torch(quick=False):
    res = _run("torch", quick)
    res["target"] = ">= 2"
    return res


BENCHMARKS = {"rmt_batched": bench_numpy, "rmt_batched_torch": bench_torch}
TORCH_BENCHMARKS = ("rmt_batched_torch",)
