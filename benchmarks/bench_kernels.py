"""ntk_vs_dense: the empirical NTK of a ~100k-parameter MLP on 256 inputs via torch.func (vmap of
per-example Jacobians, one contraction) against building it from a dense per-example Jacobian with a
Python loop of autograd.grad (the reference oracle). Both results are compared."""

from __future__ import annotations

import torch

from _timing import best_of
from solvable.tools import kernels as tk


def bench_ntk_vs_dense(quick: bool = False):
    n, d, w = (16, 8, 32) if quick else (256, 32, 300)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(d, w), torch.nn.ReLU(), torch.nn.Linear(w, w), torch.nn.ReLU(),
                              torch.nn.Linear(w, 1))
    x = torch.randn(n, d)
    out = {}

    def fast():
        out["f"] = tk.empirical_ntk(net, x, method="jacobian")

    def dense():
        out["d"] = tk.ntk_from_jacobian(tk.dense_jacobian(net, x))

    t_f = best_of(fast, 3)
    t_d = best_of(dense, 1)
    diff = float((out["f"] - out["d"]).abs().max() / out["d"].abs().max())
    return {"ratio": t_d / t_f, "target": ">= 10", "sizes": f"{n} inputs, {tk.parameter_count(net)} parameters",
            "backend": "torch", "device": "cpu", "seconds_torch_func": t_f, "seconds_dense_loop": t_d,
            "max_rel_diff": diff}


BENCHMARKS = {"ntk_vs_dense": bench_ntk_vs_dense}
