"""Benchmarks of solvable.models.lottery.

imp_batched: IMP with rewinding and both controls (``lottery.imp_mlp``) over 16 seeds as one batched program
(every round's seeds x arms are one stack of batched matmuls) against a Python loop of 16 single-seed calls of
the same function. Target ">= 5" on CPU (one thread): a step of one small MLP is a few tiny matmuls whose
per-call overhead the loop pays 16 times per step and the batch once.

Measured (CPU, torch float64, one thread, loaded 2-core box; 16 seeds, 4 rounds, T = 100, 3 arms from round 1):
ratio 2.8 (batched 2.5 s, loop 7.1 s): the target is not met. Why: the loop's single-seed call already trains its
three arms as one stack from round 1, so the baseline is partly batched; and the batched step is bound by
torch's batched GEMM of tiny matrices and by elementwise kernels (profiled: bmm, ReLU backward, clamp_min,
log-softmax are 60% of a step; 4.6 ms per step for 48 networks, ~0.1 ms a network, against 0.54 ms for one
network alone). A hand-written backward was not faster (5.4 ms against autograd's 4.7 ms per step). Quick mode
(4 seeds, 3 steps) is a smoke test only.

It also times one training step written with ``torch.func`` (``vmap`` of ``grad`` over stacked parameters)
against the batched-matmul step that ``train_mlp`` uses (``vmap_over_bmm``: above 1 means the bmm step is the
faster one, which is why ``train_mlp`` uses it).
"""

from __future__ import annotations

from solvable.models import lottery

from _timing import best_of  # noqa: E402 (benchmarks/ is on sys.path when run)


def _vmap_vs_bmm(widths, seeds, repeats, steps=20):
    import torch
    from torch.func import functional_call, grad, vmap  # noqa: F401

    X, y, _, _ = lottery.teacher_task(seeds, d=widths[0], classes=widths[-1], **lottery.TICKET_TASK)
    params = lottery.init_mlp(widths, seeds)
    masks = [torch.ones_like(W) for W, _ in params]
    flat = [t for Wb in params for t in Wb]
    n = y.shape[1]

    def one_loss(ps, ms, x, t):
        h = x
        L = len(ps) // 2
        for l in range(L):
            h = h @ (ps[2 * l] * ms[l]).T + ps[2 * l + 1]
            if l < L - 1:
                h = torch.relu(h)
        return torch.nn.functional.cross_entropy(h, t)

    vgrad = vmap(grad(one_loss), in_dims=(0, 0, 0, 0))

    def step_vmap():
        for _ in range(steps):
            vgrad(flat, masks, X, y)

    def step_bmm():
        for _ in range(steps):
            q = [t.detach().requires_grad_(True) for t in flat]
            logits = lottery.mlp_logits(list(zip(q[0::2], q[1::2])), masks, X)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, widths[-1]), y.reshape(-1), reduction="sum") / n
            torch.autograd.grad(loss, q)

    step_vmap(); step_bmm()
    return best_of(step_vmap, repeats) / steps, best_of(step_bmm, repeats) / steps


def imp_batched(quick: bool = False) -> dict:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: extra threads only contend on a shared box
    widths = lottery.TICKET_WIDTHS
    S, steps, rounds = (4, 3, 1) if quick else (16, lottery.TICKET_STEPS, 4)
    seeds = list(range(S))
    kw = dict(widths=widths, sparsity=None, rate=lottery.TICKET_RATE, rewind_step=0, train_steps=steps,
              lr=lottery.TICKET_LR, controls=True, task=lottery.TICKET_TASK, rounds=rounds)

    def batched():
        lottery.imp_mlp(seeds=seeds, **kw)

    def loop():
        for s in seeds:
            lottery.imp_mlp(seeds=[s], **kw)

    repeats = 1 if quick else 2
    try:
        lottery.imp_mlp(seeds=[0, 1], **dict(kw, train_steps=2, rounds=1))  # warm-up: torch start-up untimed
        t_b = best_of(batched, repeats)
        t_l = best_of(loop, repeats)
        t_vmap, t_bmm = _vmap_vs_bmm(widths, seeds if not quick else [0, 1], repeats, 2 if quick else 20)
    finally:
        torch.set_num_threads(threads)
    return {"ratio": t_l / t_b, "target": ">= 5", "batched_seconds": t_b, "loop_seconds": t_l,
            "vmap_step_seconds": t_vmap, "bmm_step_seconds": t_bmm, "vmap_over_bmm": t_vmap / t_bmm,
            "sizes": {"widths": list(widths), "seeds": S, "train_steps": steps, "rounds": rounds,
                      "arms": len(lottery.MLP_ARMS), "n_train": lottery.TICKET_TASK["n_train"]},
            "backend": "torch", "device": "cpu", "dtype": "float64", "torch_threads": 1}


BENCHMARKS = {"imp_batched": imp_batched}
TORCH_BENCHMARKS = ("imp_batched",)
