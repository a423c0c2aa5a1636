"""Curvature benchmarks (solvable.tools.curvature) on a ~1M-parameter tanh MLP.

- ``sharpness_vs_pyhessian``: the top Hessian eigenvalue to relative error 1e-3 of a tightly converged
  float64 reference (Lanczos, residual 1e-9), solvable's Lanczos against PyHessian's power iteration,
  each run at the loosest of its tolerances (solvable: residual tol 1e-1 ... 1e-3, where 1e-3 alone
  guarantees the accuracy; PyHessian: tol 1e-3 ... 1e-7) that reaches that accuracy.
  Target: pyhessian_time / solvable_time >= 3.
  Skipped (``ratio`` None, ``skipped`` gives the reason) when the ``pyhessian`` package is absent.
- ``hvp_cost``: one Hessian-vector product over the full batch against one gradient of the same
  loss. ``ratio`` is for the product ``hvp="auto"`` uses on the device (``default_hvp``: reverse-over-
  reverse on the CPU, forward-over-reverse on CUDA); both kinds are timed and reported by name.
  Target: hvp_time / grad_time <= 3.
- ``lanczos_vs_arpack``: the measurement behind the default eigensolver: solvable's torch Lanczos
  against ARPACK (scipy eigsh on the same operator) and curvlinops' HessianLinearOperator + eigsh
  (``curvlinops_skipped`` when it is not installed), at tol = 1e-6, k = 1. ``ratio`` is ARPACK's
  number of Hessian-vector products over Lanczos's (the products dominate the cost; wall times are
  reported too but are noisy on shared cores).
  Target: >= 1.

Sizes: MLP 512 -> 1024 -> 512 -> 10 (tanh), 1,055,242 parameters, MSE on 256 Gaussian inputs with
random targets, float32 (the reference in float64). Device: CUDA when available, else CPU.
``quick=True``: an MLP 8 -> 16 -> 8 -> 3 on 16 inputs (the suite's smoke test; not the benchmark's
ratios).
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from solvable.tools import curvature as cv

FULL = (512, 1024, 512, 10, 256)   # d_in, width1, width2, d_out, samples
QUICK = (8, 16, 8, 3, 16)


def _device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _problem(device: str, dtype=torch.float32, seed: int = 0, quick: bool = False):
    D_IN, WIDTH1, WIDTH2, D_OUT, N = QUICK if quick else FULL
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(D_IN, WIDTH1), nn.Tanh(), nn.Linear(WIDTH1, WIDTH2), nn.Tanh(),
                          nn.Linear(WIDTH2, D_OUT)).to(device=device, dtype=dtype)
    g = torch.Generator().manual_seed(seed + 1)
    X = torch.randn(N, D_IN, generator=g).to(device=device, dtype=dtype)
    Y = torch.randn(N, D_OUT, generator=g).to(device=device, dtype=dtype)
    return model, X, Y


def _n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _reference(device: str, quick: bool = False) -> float:
    model, X, Y = _problem(device, torch.float64, quick=quick)
    r = cv.top_eigenvalues(model, nn.MSELoss(), [(X, Y)], k=1, tol=1e-9, max_iter=200)
    return float(r.values[0])


def sharpness_vs_pyhessian(quick: bool = False) -> dict:
    device = _device()
    try:
        from pyhessian import hessian as PyHessian
    except Exception as e:  # noqa: BLE001 - any import failure means the comparison cannot run
        return {"ratio": None, "target": ">= 3", "quick": quick, "device": device,
                "skipped": f"baseline pyhessian is not installed ({type(e).__name__}: {e}); "
                           "install the bench extra: pip install -e '.[bench]'"}
    ref = _reference(device, quick)
    model, X, Y = _problem(device, quick=quick)
    N = X.shape[0]

    # Both sides get the same protocol: the loosest tolerance (tried from loose to tight) whose
    # answer is within 1e-3 of the reference; only that run's time counts.
    tried_solvable = []
    t_solvable, err_solvable, tol_solvable, r = float("nan"), float("nan"), None, None
    for tol in (1e-1, 3e-2, 1e-2, 3e-3, 1e-3):
        _sync(device)
        t0 = time.perf_counter()
        r = cv.top_eigenvalues(model, nn.MSELoss(), [(X, Y)], k=1, tol=tol)
        _sync(device)
        dt = time.perf_counter() - t0
        err = abs(float(r.values[0]) - ref) / abs(ref)
        tried_solvable.append({"tol": tol, "seconds": dt, "rel_error": err, "matvecs": r.matvecs})
        if err <= 1e-3:
            t_solvable, err_solvable, tol_solvable = dt, err, tol
            break

    tried = []
    t_py, err_py, tol_used = float("nan"), float("nan"), None
    for tol in (1e-3, 1e-4, 1e-5, 1e-6, 1e-7):
        torch.manual_seed(0)
        _sync(device)
        t0 = time.perf_counter()
        h = PyHessian(model, nn.MSELoss(), data=(X, Y), cuda=(device == "cuda"))
        vals, _ = h.eigenvalues(maxIter=1000, tol=tol, top_n=1)
        _sync(device)
        dt = time.perf_counter() - t0
        err = abs(float(vals[0]) - ref) / abs(ref)
        tried.append({"tol": tol, "seconds": dt, "rel_error": err})
        if err <= 1e-3:
            t_py, err_py, tol_used = dt, err, tol
            break
    return {
        "ratio": t_py / t_solvable,
        "target": ">= 3",
        "params": _n_params(model), "samples": N, "dtype": "float32", "backend": "torch", "device": device,
        "quick": quick, "reference": ref,
        "solvable_seconds": t_solvable, "solvable_rel_error": err_solvable, "solvable_tol": tol_solvable,
        "solvable_tries": tried_solvable,
        "pyhessian_seconds": t_py, "pyhessian_rel_error": err_py, "pyhessian_tol": tol_used,
        "pyhessian_tries": tried,
    }


def hvp_cost(quick: bool = False, repeats: int = 5) -> dict:
    """One full-batch Hessian-vector product over one gradient, for the product ``hvp="auto"``
    chooses on this device (``ratio``, the number the target is on) and for both kinds by name, timed
    round-robin (a burst of load on a shared machine hits every method alike)."""
    device = _device()
    model, X, Y = _problem(device, quick=quick)
    ops = {h: cv.HessianOperator(model, nn.MSELoss(), [(X, Y)], hvp=h) for h in ("forward", "reverse")}
    default = cv.HessianOperator(model, nn.MSELoss(), [(X, Y)]).hvp  # what hvp="auto" picks here
    v = torch.randn(ops["forward"].n, generator=torch.Generator().manual_seed(0)).to(device)
    fns = {"grad": ops["forward"].loss_and_gradient,
           "forward_over_reverse": lambda: ops["forward"].matvec(v),
           "reverse_over_reverse": lambda: ops["reverse"].matvec(v)}
    for fn in fns.values():  # warm-up: allocator, kernels
        fn()
    _sync(device)
    best = {k: float("inf") for k in fns}
    for _ in range(2 if quick else repeats):
        for k, fn in fns.items():
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            best[k] = min(best[k], time.perf_counter() - t0)
    name = {"forward": "forward_over_reverse", "reverse": "reverse_over_reverse"}
    return {"ratio": best[name[default]] / best["grad"], "target": "<= 3",
            "measured": f"hvp='auto' on {device}: {name[default]} (curvature.HVP_DEFAULT)",
            "default_hvp": default, "params": ops["forward"].n, "samples": X.shape[0], "dtype": "float32",
            "backend": "torch", "device": device, "quick": quick, "torch_threads": torch.get_num_threads(),
            "grad_seconds": best["grad"],
            "forward_over_reverse_seconds": best["forward_over_reverse"],
            "reverse_over_reverse_seconds": best["reverse_over_reverse"],
            "forward_over_reverse_ratio": best["forward_over_reverse"] / best["grad"],
            "reverse_over_reverse_ratio": best["reverse_over_reverse"] / best["grad"],
            "repeats": repeats}


def lanczos_vs_arpack(quick: bool = False) -> dict:
    device = _device()
    model, X, Y = _problem(device, quick=quick)
    op = cv.HessianOperator(model, nn.MSELoss(), [(X, Y)])
    out = {"target": ">= 1", "params": _n_params(model), "samples": X.shape[0], "dtype": "float32",
           "backend": "torch", "device": device, "tol": 1e-6, "quick": quick, "hvp": op.hvp}
    t0 = time.perf_counter()
    r = cv.top_eigenvalues(model, nn.MSELoss(), [(X, Y)], k=1, tol=1e-6, method="lanczos")
    _sync(device)
    out.update(lanczos_seconds=time.perf_counter() - t0, lanczos_matvecs=r.matvecs, lanczos_value=float(r.values[0]))
    t0 = time.perf_counter()
    a = cv.top_eigenvalues(model, nn.MSELoss(), [(X, Y)], k=1, tol=1e-6, method="arpack")
    out.update(arpack_seconds=time.perf_counter() - t0, arpack_matvecs=a.matvecs, arpack_value=float(a.values[0]))
    try:
        from curvlinops import HessianLinearOperator
    except Exception as e:  # noqa: BLE001 - the baseline is optional (bench extra)
        out["curvlinops_skipped"] = (f"baseline curvlinops is not installed ({type(e).__name__}); "
                                     "install the bench extra: pip install -e '.[bench]'")
    else:
        from scipy.sparse.linalg import eigsh

        try:
            params = [p for p in model.parameters() if p.requires_grad]
            t0 = time.perf_counter()
            H = HessianLinearOperator(model, nn.MSELoss(), params, [(X, Y)], check_deterministic=False).to_scipy()
            vals = eigsh(H, k=1, which="LA", tol=1e-6, v0=np.random.default_rng(0).standard_normal(H.shape[0]))[0]
            out.update(curvlinops_seconds=time.perf_counter() - t0, curvlinops_value=float(vals[0]))
        except Exception as e:  # noqa: BLE001 - curvlinops API differences only drop this column
            out["curvlinops_error"] = f"{type(e).__name__}: {str(e)[:200]}"
    out["ratio"] = out["arpack_matvecs"] / out["lanczos_matvecs"]
    return out


BENCHMARKS = {
    "sharpness_vs_pyhessian": sharpness_vs_pyhessian,
    "hvp_cost": hvp_cost,
    "lanczos_vs_arpack": lanczos_vs_arpack,
}
TORCH_BENCHMARKS = tuple(BENCHMARKS)
