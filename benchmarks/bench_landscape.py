"""Benchmarks of solvable.tools.landscape.

landscape_grid: a 51 x 51 filter-normalized grid on a ReLU MLP of about 100k parameters
(32 -> 256 -> 256 -> 128 -> 1) over 1024 inputs, float32: the batched program (functional_call
under vmap, chunked) against a loop over grid points that loads each point's weights into the
model (``copy_``) and runs a forward pass. Target ">= 5" (the issue's). The loop is timed on a
sample of points and scaled to the grid (both are linear in the number of points). ``quick``
uses a 7 x 7 grid and 256 inputs.

Both do the same arithmetic (a grid point is a full forward pass with its own weights); the batched
program saves the per-point Python and dispatch overhead and runs batched matrix products. The
memory stated is the estimate the tool checks before allocating one chunk.

Measured here (one CPU thread, shared loaded machine, float32): full size ratio 0.62 (batched 115 s,
loop ~72 s estimated from 64 points), quick 0.98. The target is NOT met on CPU: a grid point of this
MLP is ~2 x 1024 x 107k = 2.2e8 flops, so both are compute-bound and the per-point overhead the
batched program removes (~0.1 ms) is under 1% of a point's ~30 ms; batched products (bmm over a chunk)
ran slower than one large matmul per point. A ratio >= 5 needs a regime where overhead dominates
(small models or few inputs, or a GPU, where the loop is launch-bound); no GPU was lent to this task.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from solvable.tools import landscape as ls


def _mlp(device):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(32, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 128),
                         nn.ReLU(), nn.Linear(128, 1)).to(device=device, dtype=torch.float32)


def landscape_grid(quick: bool = False) -> dict:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    n_grid, n_in, n_loop = (7, 256, 8) if quick else (51, 1024, 64)
    model = _mlp(device)
    g = torch.Generator().manual_seed(1)
    X = torch.randn(n_in, 32, generator=g).to(device)
    Y = torch.randn(n_in, 1, generator=g).to(device)
    loss = nn.MSELoss()
    w = ls.parameters(model)
    d1, d2 = ls.random_direction(w, 0), ls.random_direction(w, 1)
    a = np.linspace(-1, 1, n_grid)
    A, B = np.meshgrid(a, a, indexing="ij")
    coords = np.stack([A.ravel(), B.ravel()], 1)
    n_params = sum(t.numel() for t in w.values())
    chunk = 32
    per_chunk = chunk * 4 * (2 * n_params + 4 * n_in * 256)

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    ls.evaluate(model, loss, (X, Y), w, [d1, d2], coords[:chunk], chunk=chunk)  # warm-up
    sync()
    t0 = time.perf_counter()
    batched = ls.evaluate(model, loss, (X, Y), w, [d1, d2], coords, chunk=chunk)
    sync()
    t_batched = time.perf_counter() - t0

    probe = nn.Sequential(*[m for m in _mlp(device)])
    idx = np.linspace(0, len(coords) - 1, n_loop).astype(int)

    def loop(points):
        out = []
        with torch.no_grad():
            for c in points:
                for name, p in probe.named_parameters():
                    p.copy_(w[name] + float(c[0]) * d1[name] + float(c[1]) * d2[name])
                out.append(loss(probe(X), Y).item())
        return out

    loop(coords[idx[:2]])
    t0 = time.perf_counter()
    looped = loop(coords[idx])
    sync()
    t_loop = (time.perf_counter() - t0) * len(coords) / len(idx)
    agree = float(np.max(np.abs(np.asarray(looped) - batched[idx]) / np.abs(batched[idx])))
    return {"ratio": t_loop / t_batched, "target": ">= 5", "batched_seconds": t_batched,
            "loop_seconds_estimated": t_loop, "loop_points_timed": int(len(idx)),
            "max_relative_difference": agree,
            "sizes": {"grid": f"{n_grid}x{n_grid}", "params": int(n_params), "inputs": n_in, "chunk": chunk},
            "memory_per_chunk_bytes": int(per_chunk), "backend": "torch", "device": device, "dtype": "float32",
            "threads": torch.get_num_threads()}


BENCHMARKS = {"landscape_grid": landscape_grid}
