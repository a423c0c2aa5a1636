"""Benchmarks of solvable.models.grok.

grok_batched: ``runs`` (split, initialisation) draws of the quadratic MLP on a + b mod p, trained by full-batch
AdamW as one batched array program (leading run axis; gradients by hand, no per-run Python work) against the
same steps run draw by draw in a Python loop. Target ">= 10": at these sizes a step is a handful of small
matmuls, so the loop pays the per-call overhead ``runs`` times per step while the batched program pays it once.
"""

from __future__ import annotations

from solvable import get_backend
from solvable.models import grok

from _timing import best_of  # noqa: E402 (benchmarks/ is on sys.path when run)


def grok_batched(quick: bool = False) -> dict:
    import torch

    be = get_backend("torch", "cuda" if torch.cuda.is_available() else "cpu")
    p, width, fraction = 11, 16, 0.6
    runs, steps = (16, 5) if quick else (128, 60)
    kw = dict(steps=steps, checkpoints=1)

    def batched():
        grok.train_modular_mlp(p, width, fraction, runs, be, 0, **kw)

    def loop():
        for r in range(runs):
            grok.train_modular_mlp(p, width, fraction, 1, be, r, **kw)

    repeats = 1 if quick else 2
    t_b = best_of(batched, repeats)
    t_l = best_of(loop, repeats)
    return {"ratio": t_l / t_b, "target": ">= 10", "batched_seconds": t_b, "loop_seconds": t_l,
            "sizes": {"p": p, "width": width, "fraction": fraction, "runs": runs, "steps": steps},
            "backend": be.name, "device": be.device, "dtype": be.dtype}


BENCHMARKS = {"grok_batched": grok_batched}
