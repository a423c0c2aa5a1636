"""Timing shared by the benchmark modules (run through benchmarks/run.py, which puts this folder
on sys.path)."""

import time


def best_of(fn, repeats: int) -> float:
    """The shortest wall time of ``repeats`` calls of ``fn`` (the least disturbed by other load)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best
