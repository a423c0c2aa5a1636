"""Speed of the batched chain simulator of solvable.models.ergodic.

``ergodic_chains``: 10^5 chains of 10^3 steps of SGD on a noisy quadratic (numpy) in one batched call
of :func:`solvable.models.ergodic.simulate_sgd_quadratic`, against a Python loop over chains calling the
same simulator one chain at a time. The loop is timed on a subset of chains and scaled linearly to
10^5 (each chain costs the same), which the output says. ``quick=True``: tiny sizes (the suite's
smoke test), not the benchmark's ratio.
"""

from __future__ import annotations

from _timing import best_of

from solvable.models import ergodic as E

FULL = (100_000, 1_000, 100)   # chains, steps, chains timed in the loop
QUICK = (64, 20, 2)


def ergodic_chains(quick: bool = False) -> dict:
    N_CHAINS, N_STEPS, N_LOOP_SUBSET = QUICK if quick else FULL
    eta, a, sigma = 0.5, 1.0, 1.0
    batched = best_of(lambda: E.simulate_sgd_quadratic(eta, [[a]], [[sigma**2]], N_CHAINS, N_STEPS, 0, "numpy", 0), 3)

    def loop():
        for c in range(N_LOOP_SUBSET):
            E.simulate_sgd_quadratic(eta, [[a]], [[sigma**2]], 1, N_STEPS, 0, "numpy", c)

    loop_subset = best_of(loop, 2)
    loop_scaled = loop_subset * N_CHAINS / N_LOOP_SUBSET
    return {
        "ratio": loop_scaled / batched,
        "target": ">= 50",
        "chains": N_CHAINS,
        "steps": N_STEPS,
        "backend": "numpy",
        "device": "cpu",
        "quick": quick,
        "batched_seconds": batched,
        "loop_seconds_scaled": loop_scaled,
        "loop_seconds_measured": loop_subset,
        "loop_chains_measured": N_LOOP_SUBSET,
        "note": (f"loop timed on {N_LOOP_SUBSET} chains (best of 2) and scaled linearly to {N_CHAINS}; "
                 "batched: best of 3; both call simulate_sgd_quadratic (1-D, per-chain moments recorded)"),
    }


BENCHMARKS = {"ergodic_chains": ergodic_chains}
TORCH_BENCHMARKS = ()
