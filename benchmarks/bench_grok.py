"""Benchmarks of solvable.models.grok.

grok_batched: ``runs`` (split, initialisation) draws of the quadratic MLP on a + b mod p, trained by full-batch
AdamW as one batched array program (leading run axis; gradients by hand, no per-run Python work) against the
same steps run draw by draw in a Python loop. Target ">= 10": at these sizes a step is a handful of small
matmuls, so the loop pays the per-call overhead ``runs`` times per step while the batched program pays it once.

Measured on CPU (torch, float64, one thread, loaded 2-core box): 9.9 in full mode (128 runs x 60 steps: 4.4 s
batched, 43 s loop), ~6 in quick mode (16 runs x 5 steps); before (2 threads, no warm-up) about 4.5. What limits it
is not a lack of batching. Profiled: a
step is three matmuls, and torch's batched matmul of ``runs`` tiny matrices (11 x 16 times 16 x 121) runs at ~1
GFLOP/s (about 3 ms for 128 runs, against ~10 us for one run's matmul in the loop: the loop is not slower per flop),
so the batched step is bound by the batched-GEMM kernel, not by Python overhead; on 2 threads of a loaded machine
each small matmul can also stall for tens of ms on thread contention (hence one thread here). The ratio the issue
asks for is reached where batched GEMM is efficient (CUDA: one kernel per step for all runs). Torch is warmed up
(one small call) before timing, so the quick mode's first-call start-up does not count.
"""

from __future__ import annotations

from solvable import get_backend
from solvable.models import grok

from _timing import best_of  # noqa: E402 (benchmarks/ is on sys.path when run)


def grok_batched(quick: bool = False) -> dict:
    import torch

    be = get_backend("torch", "cuda" if torch.cuda.is_available() else "cpu")
    threads = torch.get_num_threads()
    if be.device == "cpu":
        torch.set_num_threads(1)  # tiny matmuls: extra threads only contend (measured: 10 us -> 65 ms on a loaded box)
    p, width, fraction = 11, 16, 0.6
    runs, steps = (16, 5) if quick else (128, 60)
    kw = dict(steps=steps, checkpoints=1)

    def batched():
        grok.train_modular_mlp(p, width, fraction, runs, be, 0, **kw)

    def loop():
        for r in range(runs):
            grok.train_modular_mlp(p, width, fraction, 1, be, r, **kw)

    repeats = 1 if quick else 2
    try:
        grok.train_modular_mlp(p, width, fraction, 2, be, 0, steps=2, checkpoints=1)  # warm-up: torch start-up untimed
        t_b = best_of(batched, repeats)
        t_l = best_of(loop, repeats)
    finally:
        torch.set_num_threads(threads)
    return {"ratio": t_l / t_b, "target": ">= 10", "batched_seconds": t_b, "loop_seconds": t_l,
            "sizes": {"p": p, "width": width, "fraction": fraction, "runs": runs, "steps": steps},
            "backend": be.name, "device": be.device, "dtype": be.dtype, "torch_threads": 1 if be.device == "cpu" else threads}


BENCHMARKS = {"grok_batched": grok_batched}
