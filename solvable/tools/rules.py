"""Learning-rate scaling rules on any torch model: measured largest stable learning rates and predictions.

**Measured.** :func:`stable_lr` runs many copies of ``model``, one per (learning rate, seed of batch
order), as one batched program: the trainable parameters are stacked along a leading copy axis and
the step is ``torch.func.vmap`` of ``torch.func.grad`` of ``torch.func.functional_call`` (chunks of
``chunk`` copies bound the memory). Each copy starts from the model's current parameters ``theta_0``
and takes ``T = steps`` minibatch steps; at step ``t`` it uses the batch ``b_t`` of ``B`` examples
(drawn iid per step, with or without replacement inside the batch, from the copy's seed: copies with
the same seed see the same batches). Optimizers (per copy, ``eta`` its learning rate, ``g`` the batch
gradient): SGD ``theta -= eta g``; heavy ball (torch's momentum) ``v = beta v + g, theta -= eta v``;
Adam (Kingma and Ba 2015) with bias correction.

*Stable* (stated, with ``T`` and ``c`` parameters): with ``L_t`` the full-data loss after ``t`` steps,

- ``criterion="final"``: ``L_T <= c L_0`` (a catapult that recovers by step ``T`` counts as stable);
- ``criterion="max"``: ``max_{t <= T} L_t <= c L_0`` (checked every ``every`` steps: any growth
  beyond ``c`` is unstable, a catapult included);
- ``criterion="late"``: ``L_T <= c L_{T/2}`` (the loss does not grow over the second half; with
  ``c = 1`` this is the sign of the asymptotic growth rate, the definition of linear stability).

``average="per_seed"`` bisects each seed's threshold separately (the estimate is the mean over seeds,
the spread their standard deviation); ``average="mean_square"`` calls a learning rate stable when the
mean over seeds of the ratio (``L_T / L_0`` etc.) is at most ``c``, estimated log-normally as
``exp(mean(l) + var(l)/2)`` of the seeds' log-ratios ``l`` (the plain mean of ``exp(l)`` is dominated by
rare runs), which is the mean-square stability of the theory; its spread is a jackknife over seeds.

**Predicted** (at the model's current parameters):

- :func:`full_batch_threshold`: ``2 / lambda_max(H)`` (GD), ``(2 + 2 beta) / lambda_max(H)`` (heavy
  ball), ``(2 + 2 beta_1) / ((1 - beta_1) lambda_max(P^-1 H))`` (Adam with a frozen preconditioner ``P``:
  38/eta at beta_1 = 0.9), by :mod:`solvable.tools.curvature`'s Lanczos;
- :func:`linearized_threshold`: the exact mean-square threshold of minibatch SGD on the linearized
  model ``f(theta) ~ f_0 + J (theta - theta_0)`` for a squared loss (per-example curvature ``s``).
  The residual ``r = f - y`` obeys ``r_{t+1} = (I - (eta s / B) K D_t) r_t`` with the empirical NTK
  ``K = J J^T`` (N x N) and ``D_t`` the batch's diagonal of multiplicities; its second moment obeys
  the recursion of least squares with features whose Gram matrix is ``s K`` (derived in
  ``proofs_check/check_rules.py``), so the threshold is :func:`solvable.models.scaling.ms_threshold`
  on the features ``X = U sqrt(s h)`` (``K = U h U^T``): an ``N^2``-dimensional problem whatever the
  parameter count;
- :func:`noise_scale`: ``B_noise = tr(Sigma) / |G|^2`` (McCandlish et al. 2018), ``Sigma`` the
  per-example gradient covariance, and :func:`mccandlish_rule` ``eta(B) = eta_max / (1 + B_noise/B)``;
- :func:`mbb_critical_batch`: ``m* = 1 + beta / lambda_1`` with ``beta = max_i s K_ii`` and
  ``lambda_1 = lambda_max(s K / N)`` (Ma, Bassily, Belkin 2018, the crossover of
  ``eta(m) = m / (beta + (m - 1) lambda_1)``).

:func:`rule_report` tabulates and plots measured against predicted with fitted log-log exponents
below and above a critical batch size.

References:
  McCandlish, Kaplan, Amodei et al. 2018, "An Empirical Model of Large-Batch Training", arXiv 1812.06162.
  Ma, Bassily, Belkin 2018, "The Power of Interpolation", arXiv 1712.06559.
  Lewkowycz, Bahri, Dyer, Sohl-Dickstein, Gur-Ari 2020, "The large learning rate phase of deep
  learning: the catapult mechanism", arXiv 2003.02218.
  Jacot, Gabriel, Hongler 2018, "Neural Tangent Kernel", arXiv 1806.07572 (the linearized model).
  Wu, Ma, E 2018, "How SGD selects the global minima..." (mean-square linear stability), NeurIPS.
  Cohen et al. 2022, arXiv 2207.14484 (Adam's preconditioned threshold 38/eta).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..checks import check_choice, check_int, check_memory, check_range
from . import curvature as cv

__all__ = [
    "OPTIMIZERS", "CRITERIA", "AVERAGES", "StableLR", "stable_lr", "run_copies", "per_example_gradients",
    "ntk_gram", "loss_curvature", "linearized_threshold", "full_batch_threshold", "noise_scale",
    "mccandlish_rule", "mbb_critical_batch", "rule_report",
]

OPTIMIZERS = ("sgd", "momentum", "adam")
CRITERIA = ("final", "max", "late")
AVERAGES = ("per_seed", "mean_square")
SAMPLING = ("with", "without")


# --------------------------------------------------------------------------------------------
# Input checks


def _check_data(data: Any, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise ValueError("data must be a pair (inputs, targets) of tensors with the examples along dim 0")
    X, Y = (torch.as_tensor(t) for t in data)
    if X.dim() == 0 or Y.dim() == 0 or X.shape[0] != Y.shape[0]:
        raise ValueError(f"data has inputs of shape {tuple(X.shape)} and targets of shape {tuple(Y.shape)}: "
                         "both need the same number of examples along dim 0")
    if X.shape[0] < 1:
        raise ValueError("data is empty: it needs at least one example")
    for name, t in (("inputs", X), ("targets", Y)):
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"data {name} contain NaN or inf: data must be finite")
    X = X.to(device=device, dtype=dtype) if X.is_floating_point() else X.to(device)
    Y = Y.to(device=device, dtype=dtype) if Y.is_floating_point() else Y.to(device)
    return X, Y


def _check_batch_sizes(batch_sizes: Any, N: int) -> list[int]:
    bs = list(np.atleast_1d(np.asarray(batch_sizes)).ravel()) if not isinstance(batch_sizes, (list, tuple)) \
        else list(batch_sizes)
    if not bs:
        raise ValueError("batch_sizes is empty: give at least one batch size in [1, N]")
    out = []
    for b in bs:
        out.append(check_int("batch size", b, 1, N))
    return out


class _Functional:
    """``model`` as a pure function of its trainable parameters (dict), frozen tensors closed over."""

    def __init__(self, model: nn.Module, loss_fn: Callable, dtype: torch.dtype | None):
        named = cv._trainable(model)   # ValueError when nothing is trainable
        self.model, self.loss_fn = model, loss_fn
        first = named[0][1]
        self.device = first.device
        self.dtype = dtype or first.dtype
        self.names = [n for n, _ in named]
        self.params = {n: p.detach().to(self.dtype) for n, p in named}
        train = set(self.names)
        self.frozen = {n: p.detach().to(self.dtype) for n, p in model.named_parameters() if n not in train}
        self.frozen.update({n: (b.detach().to(self.dtype) if b.is_floating_point() else b.detach())
                            for n, b in model.named_buffers()})
        self.n = sum(p.numel() for p in self.params.values())

    def out(self, p: dict, x: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(self.model, {**p, **self.frozen}, (x,))

    def loss(self, p: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(self.out(p, x), y)

    def check_scalar_loss(self, X: torch.Tensor, Y: torch.Tensor) -> float:
        with torch.no_grad():
            v = self.loss(self.params, X, Y)
        if not isinstance(v, torch.Tensor) or v.numel() != 1 or v.dim() != 0:
            shape = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
            raise ValueError(f"loss_fn returned a value of shape {shape}: it must return a scalar (0-dim tensor), "
                             "e.g. a loss with reduction='mean'")
        return float(v)


# --------------------------------------------------------------------------------------------
# Batched runs of many copies


def _batch_indices(N: int, B: int, steps: int, seeds: Sequence[int], sampling: str, device) -> torch.Tensor:
    """Batch indices ``(len(seeds), steps, B)``: seed ``s`` fixes the batch order of every copy using it."""
    out = []
    for s in seeds:
        g = torch.Generator().manual_seed(int(s))
        if sampling == "with":
            out.append(torch.randint(0, N, (steps, B), generator=g))
        else:
            out.append(torch.rand(steps, N, generator=g).argsort(dim=1)[:, :B])
    return torch.stack(out).to(device)


def run_copies(model: nn.Module, loss_fn: Callable, data: Any, lrs: Any, seeds: Any, batch_size: int, *,
               optimizer: str = "sgd", steps: int = 100, momentum: float = 0.9,
               betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, sampling: str = "without",
               record_every: int | None = None, chunk: int = 256, dtype: torch.dtype | None = None,
               mode: str = "eval", return_params: bool = False) -> dict:
    """Train one copy of ``model`` per entry of ``lrs`` (with batch order ``seeds[k]``), as one vmapped program.

    Returns ``{"steps": (m,), "loss": (copies, m)}``: the full-data loss of every copy at the recorded
    steps (``0``, ``T/2``, ``T`` and every ``record_every`` steps when given), float64 numpy; a copy
    whose parameters overflowed has loss ``inf`` from then on (divergence is a result, never NaN).
    Divergence is checked at the recorded steps only (copies never mix inside the vmapped step, so a
    non-finite copy cannot spoil the others in between, and the step needs no host synchronisation).
    ``return_params=True`` adds ``"params"``: the final trainable parameters, ``{name: (copies, ...)}``
    tensors on the model's device (zero for a diverged copy).
    """
    check_choice("optimizer", optimizer, OPTIMIZERS)
    check_choice("sampling", sampling, SAMPLING)
    steps = check_int("steps", steps, 2)
    chunk = check_int("chunk", chunk, 1)
    fn = _Functional(model, loss_fn, dtype)
    X, Y = _check_data(data, fn.device, fn.dtype)
    N = X.shape[0]
    B = check_int("batch size", batch_size, 1, N)
    lrs = np.atleast_1d(np.asarray(lrs, dtype=float))
    seeds = np.atleast_1d(np.asarray(seeds)).astype(int)
    if lrs.ndim != 1 or lrs.size == 0 or not np.all(np.isfinite(lrs) & (lrs > 0)):
        raise ValueError(f"lrs={lrs!r} is out of range: lrs must be a nonempty 1-D array of finite numbers in (0, inf)")
    if seeds.shape != lrs.shape:
        raise ValueError(f"seeds has shape {seeds.shape} but lrs has {lrs.shape}: one seed per copy")
    record = {0, steps // 2, steps}
    if record_every is not None:
        record |= set(range(0, steps + 1, check_int("record_every", record_every, 1)))
    record = sorted(record)
    elt = torch.finfo(fn.dtype).bits // 8
    states = {"sgd": 2, "momentum": 3, "adam": 4}[optimizer]
    check_memory("chunk", chunk, elt * min(chunk, lrs.size) * (states * fn.n + 4 * B * max(1, X[0].numel())),
                 what="the stacked parameters, gradients and optimizer state of one chunk of copies",
                 device=str(fn.device))
    useeds = sorted(set(seeds.tolist()))
    idx_all = _batch_indices(N, B, steps, useeds, sampling, fn.device)
    pos = {s: i for i, s in enumerate(useeds)}
    loss_b = torch.func.vmap(fn.loss, in_dims=(0, None, None))
    grad_b = torch.func.vmap(torch.func.grad(fn.loss), in_dims=(0, 0, 0))
    out = np.empty((lrs.size, len(record)))
    record_set = set(record)
    finals: list[dict] = []
    with cv._forward_mode(model, mode), torch.no_grad():
        for c0 in range(0, lrs.size, chunk):
            sl = slice(c0, min(c0 + chunk, lrs.size))
            R = sl.stop - sl.start
            lr = torch.as_tensor(lrs[sl], dtype=fn.dtype, device=fn.device)
            idx = idx_all[torch.as_tensor([pos[s] for s in seeds[sl]], device=fn.device)]   # (R, T, B)
            P = {n: p.unsqueeze(0).expand(R, *p.shape).clone() for n, p in fn.params.items()}
            shapes = {n: (R,) + (1,) * (p.dim() - 1) for n, p in P.items()}
            lr_v = {n: lr.view(shapes[n]) for n in P}
            S1 = {n: torch.zeros_like(p) for n, p in P.items()} if optimizer != "sgd" else None
            S2 = {n: torch.zeros_like(p) for n, p in P.items()} if optimizer == "adam" else None
            dead = torch.zeros(R, dtype=torch.bool, device=fn.device)
            rec = []
            for t in range(steps + 1):
                if t in record_set:
                    # a copy whose parameters or loss stopped being finite is dead from here on and
                    # frozen at zero (its loss reads inf); checked only here, see the docstring
                    L = loss_b(P, X, Y).to(torch.float64)
                    dead |= ~torch.isfinite(L)
                    for n in P:
                        # a sum is non-finite when any entry is (NaN and inf propagate; an overflowing
                        # sum of finite entries means entries near the dtype's max: diverged as well)
                        dead |= ~torch.isfinite(P[n].reshape(R, -1).sum(dim=1))
                    if bool(dead.any()):
                        for n in P:
                            P[n][dead] = 0.0
                    rec.append(torch.where(dead, torch.full_like(L, math.inf), L))
                if t == steps:
                    break
                it = idx[:, t]
                G = grad_b(P, X[it], Y[it])
                for n in P:
                    g = G[n]
                    if optimizer == "sgd":
                        P[n].addcmul_(lr_v[n], g, value=-1.0)
                    elif optimizer == "momentum":
                        S1[n].mul_(momentum).add_(g)
                        P[n].addcmul_(lr_v[n], S1[n], value=-1.0)
                    else:
                        b1, b2 = betas
                        S1[n].mul_(b1).add_(g, alpha=1 - b1)
                        S2[n].mul_(b2).addcmul_(g, g, value=1 - b2)
                        mh = S1[n] / (1 - b1 ** (t + 1))
                        vh = S2[n] / (1 - b2 ** (t + 1))
                        P[n].addcdiv_(lr_v[n] * mh, vh.sqrt_().add_(eps), value=-1.0)
            out[sl] = torch.stack(rec, dim=1).cpu().numpy()
            if return_params:
                finals.append(P)
    res = {"steps": np.array(record), "loss": out}
    if return_params:
        res["params"] = {n: torch.cat([f[n] for f in finals]) for n in fn.names}
    return res


def _log_ratio(res: dict, criterion: str, steps: int) -> np.ndarray:
    L, ts = res["loss"], list(res["steps"])
    with np.errstate(divide="ignore", invalid="ignore"):
        if criterion == "final":
            lr = np.log(L[:, ts.index(steps)]) - np.log(L[:, 0])
        elif criterion == "late":
            lr = np.log(L[:, ts.index(steps)]) - np.log(L[:, ts.index(steps // 2)])
        else:
            lr = np.log(L.max(axis=1)) - np.log(L[:, 0])
    return np.where(np.isfinite(lr) | (lr == -np.inf), lr, np.inf)


@dataclass
class StableLR:
    """Result of :func:`stable_lr`.

    Attributes:
      batch_sizes: the batch sizes ``B``.
      lr: the estimate of the largest stable learning rate at each ``B``.
      stderr: its standard error (seed spread / sqrt(seeds), combined with the bisection resolution).
      spread: the standard deviation over seeds (per_seed) or the jackknife spread (mean_square).
      per_seed: ``(len(B), seeds)`` thresholds of each seed (per_seed), jackknife values (mean_square).
      resolution: relative half-width of the final bisection bracket.
      out_of_range: per ``B``: ``"below"`` (even the lowest lr is unstable), ``"above"`` or ``""``.
      definition: the stability definition in words.
    """

    batch_sizes: list[int]
    lr: np.ndarray
    stderr: np.ndarray
    spread: np.ndarray
    per_seed: np.ndarray
    resolution: np.ndarray
    out_of_range: list[str]
    definition: str
    info: dict = field(default_factory=dict)


def _pooled(l: np.ndarray) -> np.ndarray:
    """``log`` of the log-normal estimate of the mean ratio, over the last axis (seeds)."""
    with np.errstate(invalid="ignore"):
        v = l.mean(axis=-1) + l.var(axis=-1, ddof=1) / 2.0
    return np.where(np.isfinite(v) | (v == -np.inf), v, np.inf)


def _crossing(u: np.ndarray, s: np.ndarray, logc: float) -> float:
    """Largest-stable log lr from statistics ``s`` on the grid ``u``: the first crossing of ``logc``,
    linearly interpolated (the first unstable point and the one before)."""
    bad = np.nonzero(s > logc)[0]
    if bad.size == 0:
        return float(u[-1])
    j = int(bad[0])
    if j == 0:
        return float(u[0])
    a, b = s[j - 1], s[j]
    if not np.isfinite(b):
        return float(0.5 * (u[j - 1] + u[j]))
    w = (logc - a) / (b - a) if b != a else 0.5
    return float(u[j - 1] + np.clip(w, 0.0, 1.0) * (u[j] - u[j - 1]))


def stable_lr(model: nn.Module, loss_fn: Callable, data: Any, batch_sizes: Sequence[int], optimizer: str = "sgd",
              *, lr_range: tuple[float, float] | None = None, steps: int = 100, c: float = 2.0,
              criterion: str = "final", average: str = "per_seed", cap: float | None = None,
              seeds: int = 4, grid: int = 8,
              rounds: int = 3, every: int = 1, momentum: float = 0.9, betas: tuple[float, float] = (0.9, 0.999),
              eps: float = 1e-8, sampling: str = "without", chunk: int = 256, dtype: torch.dtype | None = None,
              mode: str = "eval", seed: int = 0) -> StableLR:
    """The largest stable learning rate of ``optimizer`` at each batch size, by batched bisection.

    Each round runs ``grid`` log-spaced learning rates (the current bracket's ends included) x ``seeds``
    copies as one program (:func:`run_copies`); per seed (``average="per_seed"``) or on the pooled
    mean-square statistic (``"mean_square"``) the bracket shrinks to the cell around the first unstable
    point, a factor ``grid - 1`` per round. Stability: see the module docstring (``steps`` = T, ``c``,
    ``criterion``). The estimate is the interpolated crossing of ``log c`` in the last round.

    Args:
      model: any ``nn.Module``; its trainable parameters are trained, from their current values.
      loss_fn: ``loss_fn(model(x), y) -> scalar`` (a batch mean).
      data: ``(inputs, targets)`` tensors, examples along dim 0 (the whole dataset, ``N`` examples).
      batch_sizes: the ``B`` to measure, each in ``[1, N]``.
      optimizer: ``"sgd"``, ``"momentum"`` (heavy ball, ``momentum`` = beta) or ``"adam"`` (``betas``, ``eps``).
      lr_range: the initial bracket; default ``[1e-3, 8] x 2/lambda_max(H)`` for SGD/momentum (curvature's
        Lanczos) and ``[1e-5, 1]`` for Adam. A ``B`` whose threshold is outside is flagged in ``out_of_range``.
      cap: when given, a run whose loss ever exceeds ``cap L_0`` (checked every ``every`` steps) is
        unstable under any criterion: it rules out a catapult (Lewkowycz et al. 2020) counted as stable.
      sampling: each step's batch drawn ``"without"`` (a uniform B-subset) or ``"with"`` replacement.
      chunk: copies per vmapped program (bounds memory). seed: seeds are ``seed, seed + 1, ...``.

    >>> import torch; from torch import nn
    >>> torch.manual_seed(0) and None
    >>> net = nn.Linear(2, 1, bias=False).double()
    >>> X = torch.eye(2, dtype=torch.float64); Y = torch.zeros(2, 1, dtype=torch.float64)
    >>> with torch.no_grad(): _ = net.weight.fill_(1.0)
    >>> r = stable_lr(net, nn.MSELoss(), (X, Y), [2], lr_range=(0.1, 10.0), c=1.0, steps=20, seeds=2, rounds=4)
    >>> bool(abs(r.lr[0] - 2.0) < 0.05)         # H = I: GD on L = |w|^2 / 2 is stable iff lr < 2
    True
    """
    check_choice("optimizer", optimizer, OPTIMIZERS)
    check_choice("criterion", criterion, CRITERIA)
    check_choice("average", average, AVERAGES)
    c = check_range("c", c, 0.0, None, low_open=True)
    seeds_n = check_int("seeds", seeds, 3 if average == "mean_square" else 1)   # the jackknife needs a variance of >= 2 seeds
    grid = check_int("grid", grid, 3)
    rounds = check_int("rounds", rounds, 1)
    steps = check_int("steps", steps, 2)
    fn = _Functional(model, loss_fn, dtype)
    X, Y = _check_data(data, fn.device, fn.dtype)
    N = int(X.shape[0])
    Bs = _check_batch_sizes(batch_sizes, N)
    fn.check_scalar_loss(X, Y)
    if lr_range is None:
        if optimizer == "adam":
            lr_range = (1e-5, 1.0)
        else:
            lam = cv.sharpness(model, loss_fn, [(X, Y)], reduction="mean", mode=mode)
            ref = 2.0 / max(lam, 1e-300)
            lr_range = (1e-3 * ref, 8.0 * ref)
    lo0, hi0 = (check_range("lr_range", v, 0.0, None, low_open=True) for v in lr_range)
    if not hi0 > lo0:
        raise ValueError(f"lr_range={lr_range!r} is out of range: need 0 < low < high")
    logc = math.log(c)
    seed_list = [seed + k for k in range(seeds_n)]
    U = seeds_n if average == "per_seed" else 1
    kw = dict(optimizer=optimizer, steps=steps, momentum=momentum, betas=betas, eps=eps, sampling=sampling,
              record_every=every if (criterion == "max" or cap is not None) else None, chunk=chunk, dtype=dtype, mode=mode)
    est, se, spread, per, resol, oor = [], [], [], [], [], []
    for B in Bs:
        lo = np.full(U, math.log(lo0))
        hi = np.full(U, math.log(hi0))
        flag = ""
        for k in range(rounds):
            u = np.linspace(lo, hi, grid, axis=1)                      # (U, grid)
            if average == "per_seed":
                lrs = np.exp(u).ravel()
                sd = np.repeat(seed_list, grid)
            else:
                lrs = np.repeat(np.exp(u[0]), seeds_n)
                sd = np.tile(seed_list, grid)
            res = run_copies(model, loss_fn, (X, Y), lrs, sd, B, **kw)
            lr_stat = _log_ratio(res, criterion, steps)
            if cap is not None:
                # a run whose loss ever exceeded cap x L_0 is unstable whatever the criterion says
                # (a catapult that recovers by T would otherwise read as stable under "late")
                with np.errstate(divide="ignore", invalid="ignore"):
                    peak = np.log(res["loss"].max(axis=1)) - np.log(res["loss"][:, 0])
                lr_stat = np.where(~(peak <= math.log(cap)), np.inf, lr_stat)
            s = lr_stat.reshape(U, grid) if average == "per_seed" else _pooled(lr_stat.reshape(grid, seeds_n))[None]
            unstable = s > logc
            if k == 0:
                if bool(np.all(unstable[:, 0])):
                    flag = "below"
                elif bool(np.all(~unstable)):
                    flag = "above"
            if k < rounds - 1:
                for i in range(U):
                    bad = np.nonzero(unstable[i])[0]
                    j = int(bad[0]) if bad.size else grid - 1
                    j = min(max(j, 1), grid - 1)
                    lo[i], hi[i] = u[i, j - 1], u[i, j]
        if average == "per_seed":
            roots = np.array([_crossing(u[i], s[i], logc) for i in range(U)])
            vals = np.exp(roots)
            m = float(vals.mean())
            sp_ = float(vals.std(ddof=1)) if U > 1 else 0.0
            step_rel = float(np.max(u[:, 1] - u[:, 0]))
            se_ = math.hypot(sp_ / math.sqrt(U) / m, step_rel / 2)
            per.append(vals)
        else:
            ls = lr_stat.reshape(grid, seeds_n)
            root = _crossing(u[0], s[0], logc)
            jk = np.array([_crossing(u[0], _pooled(np.delete(ls, q, axis=1)), logc) for q in range(seeds_n)])
            var_jk = (seeds_n - 1) / seeds_n * np.sum((jk - jk.mean()) ** 2)
            m = float(math.exp(root))
            sp_ = float(math.sqrt(var_jk)) * m
            step_rel = float(u[0, 1] - u[0, 0])
            # the crossing is interpolated on a smooth pooled statistic: its error is second order in
            # the grid step, so the seed noise (jackknife) is the standard error
            se_ = math.sqrt(var_jk)
            per.append(np.exp(jk))
        est.append(m)
        spread.append(sp_)
        se.append(se_ * m)
        resol.append(step_rel / 2)
        oor.append(flag)
    stat = {"final": f"L_T <= {c:g} L_0", "max": f"max_(t<=T, every {every}) L_t <= {c:g} L_0",
            "late": f"L_T <= {c:g} L_(T/2)"}[criterion]
    if cap is not None:
        stat += f" and max_(t<=T, every {every}) L_t <= {cap:g} L_0"
    avg = "for each seed of batch order" if average == "per_seed" else \
        "for the mean over seeds (log-normal estimate exp(mean + var/2) of the log-ratios)"
    definition = (f"stable: {stat} after T = {steps} steps of {optimizer} from the current parameters, {avg}; "
                  f"batches drawn {sampling} replacement; L the full-data loss")
    return StableLR(Bs, np.array(est), np.array(se), np.array(spread), np.array(per), np.array(resol), oor,
                    definition, {"lr_range": (lo0, hi0), "seeds": seed_list, "N": N, "params": fn.n,
                                 "optimizer": optimizer, "criterion": criterion, "average": average,
                                 "steps": steps, "c": c, "cap": cap})


# --------------------------------------------------------------------------------------------
# Predictions


def per_example_gradients(model: nn.Module, fn_of_output: Callable, data: Any, *, chunk: int = 256,
                          dtype: torch.dtype | None = None, mode: str = "eval") -> torch.Tensor:
    """``(N, P)``: the gradient of ``fn_of_output(model(x_i)[None], y_i[None])`` for every example ``i``."""
    fn = _Functional(model, fn_of_output, dtype)
    X, Y = _check_data(data, fn.device, fn.dtype)
    N = X.shape[0]
    check_memory("data", f"N={N}", (torch.finfo(fn.dtype).bits // 8) * N * fn.n * 2,
                 what=f"an N x P matrix of per-example gradients (N={N}, P={fn.n})", device=str(fn.device))

    def one(p, x, y):
        return fn.loss(p, x[None], y[None])

    g = torch.func.vmap(torch.func.grad(one), in_dims=(None, 0, 0))
    rows = []
    with cv._forward_mode(model, mode):
        for c0 in range(0, N, chunk):
            G = g(fn.params, X[c0:c0 + chunk], Y[c0:c0 + chunk])
            rows.append(torch.cat([G[n].reshape(G[n].shape[0], -1) for n in fn.names], dim=1))
    return torch.cat(rows).detach()


def ntk_gram(model: nn.Module, inputs: torch.Tensor, **kw: Any) -> np.ndarray:
    """The empirical NTK Gram matrix ``K = J J^T`` (N x N) of a scalar-output model, ``J_i = d f(x_i)/d theta``."""
    X = torch.as_tensor(inputs)
    with torch.no_grad():
        out = model(X[:1].to(next(model.parameters()).device, next(model.parameters()).dtype))
    if out[0].numel() != 1:
        raise ValueError(f"model output has {out[0].numel()} entries per example: the linearized threshold "
                         "needs a scalar output (one per example)")
    J = per_example_gradients(model, lambda o, y: o.sum(), (X, torch.zeros(X.shape[0])), **kw)
    J = J.to(torch.float64)
    return (J @ J.T).cpu().numpy()


def loss_curvature(loss_fn: Callable, target: torch.Tensor, output_shape=(1, 1), dtype=torch.float64) -> float:
    """``s = d^2 loss_fn(f, y) / df^2`` for one example (``2`` for ``MSELoss()``; constant for a squared loss)."""
    y = torch.as_tensor(target, dtype=dtype).reshape(output_shape)
    f = torch.zeros(output_shape, dtype=dtype)
    h = torch.func.hessian(lambda z: loss_fn(z, y))(f)
    return float(h.reshape(-1)[0])


def linearized_threshold(model: nn.Module, loss_fn: Callable, data: Any, batch_sizes: Sequence[int],
                         sampling: str = "without", *, gram: np.ndarray | None = None) -> np.ndarray:
    """Mean-square threshold of minibatch SGD on the linearized model, from the N x N NTK (squared loss).

    ``eta*(B) = scaling.ms_threshold(U sqrt(s h), B, sampling)`` with ``s K = U (s h) U^T`` restricted to
    its nonzero eigenvalues (module docstring). ``loss_fn`` must be a batch mean of a squared loss of a
    scalar output (``s`` read by :func:`loss_curvature`); ``gram`` skips recomputing ``K``.
    """
    from ..models import scaling

    check_choice("sampling", sampling, SAMPLING)
    X = torch.as_tensor(data[0])
    N = int(X.shape[0])
    Bs = _check_batch_sizes(batch_sizes, N)
    K = ntk_gram(model, X) if gram is None else np.asarray(gram, dtype=float)
    s = loss_curvature(loss_fn, torch.as_tensor(data[1])[:1])
    h, Uv = np.linalg.eigh(s * K)
    keep = h > 1e-10 * h[-1]
    F = Uv[:, keep] * np.sqrt(h[keep])[None, :]
    return np.array([scaling.ms_threshold(F, b, sampling) for b in Bs])


def full_batch_threshold(model: nn.Module, loss_fn: Callable, data: Any, optimizer: str = "sgd", *,
                         momentum: float = 0.9, betas: tuple[float, float] = (0.9, 0.999),
                         preconditioner: Any = None, mode: str = "eval", tol: float = 1e-6) -> float:
    """Full-batch threshold at the current parameters: ``2/lambda_max(H)``, ``(2 + 2 beta)/lambda_max(H)``, or
    ``(2 + 2 beta_1)/((1 - beta_1) lambda_max(P^-1 H))`` for Adam (``preconditioner`` = ``P``, flat, positive)."""
    check_choice("optimizer", optimizer, OPTIMIZERS)
    d = [tuple(_check_data(data, next(model.parameters()).device, next(model.parameters()).dtype))]
    if optimizer == "adam":
        if preconditioner is None:
            raise ValueError("optimizer='adam' needs preconditioner: the diagonal P = sqrt(v) + eps")
        lam = float(cv.preconditioned_sharpness(model, loss_fn, d, preconditioner, reduction="mean", mode=mode,
                                                tol=tol).values[0])
        b1 = betas[0]
        return (2 + 2 * b1) / ((1 - b1) * lam)
    lam = cv.sharpness(model, loss_fn, d, reduction="mean", mode=mode, tol=tol)
    return (2.0 + (2.0 * momentum if optimizer == "momentum" else 0.0)) / lam


def noise_scale(model: nn.Module, loss_fn: Callable, data: Any, **kw: Any) -> dict:
    """Gradient noise scale ``B_noise = tr(Sigma) / |G|^2`` (McCandlish et al. 2018, the "simple" noise scale).

    ``G = mean_i g_i``, ``Sigma = (1/N) sum_i (g_i - G)(g_i - G)^T`` over per-example gradients ``g_i``.
    Also returns ``v_diag``, the per-coordinate ``E g_i^2`` pieces for Adam's preconditioner.
    """
    Gi = per_example_gradients(model, loss_fn, data, **kw).to(torch.float64)
    G = Gi.mean(0)
    D = Gi - G
    tr = float((D * D).sum() / Gi.shape[0])
    g2 = float(G @ G)
    return {"B_noise": tr / g2, "trace_sigma": tr, "grad_norm2": g2, "N": int(Gi.shape[0]),
            "sigma_diag": (D * D).mean(0).cpu().numpy(), "grad": G.cpu().numpy()}


def mccandlish_rule(batch_sizes: Sequence[int], eta_max: float, B_noise: float) -> np.ndarray:
    """``eta(B) = eta_max / (1 + B_noise / B)`` (McCandlish et al. 2018, eq. 2.6 form)."""
    B = np.asarray(batch_sizes, dtype=float)
    return eta_max / (1.0 + B_noise / B)


def mbb_critical_batch(gram: np.ndarray, s: float = 1.0) -> float:
    """``m* = 1 + beta / lambda_1``, ``beta = max_i s K_ii``, ``lambda_1 = lambda_max(s K) / N`` (Ma et al. 2018)."""
    K = np.asarray(gram, dtype=float)
    return 1.0 + float(np.max(np.diag(K))) / float(np.linalg.eigvalsh(K)[-1] / K.shape[0])


# --------------------------------------------------------------------------------------------
# Report


def _fit(Bs, etas, sel):
    from ..stats import loglog_slope

    x = [b for b, k in zip(Bs, sel) if k]
    y = [e for e, k in zip(etas, sel) if k]
    if len(x) < 2:
        return float("nan"), float("nan")
    f = loglog_slope(x, y)
    return f.slope, f.stderr


def rule_report(result: StableLR, predictions: dict[str, Any] | None = None, *, critical_batch: float | None = None,
                ax: Any = None) -> dict:
    """A table (text) and a log-log figure of measured ``eta*(B)`` (error bars: 2 standard errors) against
    each prediction; fitted exponents of ``eta*`` vs ``B`` below and above ``critical_batch``.

    Returns ``{"table": str, "figure": Figure, "slope_below": (slope, stderr), "slope_above": ...}``.
    """
    import matplotlib.pyplot as plt

    predictions = predictions or {}
    Bs = result.batch_sizes
    etas = result.lr
    bc = critical_batch if critical_batch is not None else float(np.sqrt(Bs[0] * Bs[-1]))
    below = _fit(Bs, etas, [b <= bc for b in Bs])
    above = _fit(Bs, etas, [b >= bc for b in Bs])
    names = list(predictions)
    head = f"{'B':>6} {'measured':>12} {'stderr':>10} " + " ".join(f"{n[:14]:>14}" for n in names)
    rows = [head]
    for i, b in enumerate(Bs):
        pv = []
        for n in names:
            v = np.broadcast_to(np.asarray(predictions[n], dtype=float), (len(Bs),))[i]
            pv.append(f"{v:14.5g}")
        rows.append(f"{b:>6} {etas[i]:12.5g} {result.stderr[i]:10.2g} " + " ".join(pv))
    rows.append(f"fitted exponent B <= {bc:.3g}: {below[0]:.3f} +- {below[1]:.3f}; "
                f"B >= {bc:.3g}: {above[0]:.3f} +- {above[1]:.3f}")
    rows.append(result.definition)
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 4))
    else:
        fig = ax.figure
    ax.errorbar(Bs, etas, yerr=2 * result.stderr, fmt="o", color="k", capsize=3, label="measured")
    for n in names:
        ax.plot(Bs, np.broadcast_to(np.asarray(predictions[n], dtype=float), (len(Bs),)), "-", label=n)
    ax.axvline(bc, color="gray", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("batch size B")
    ax.set_ylabel("largest stable learning rate")
    ax.legend(fontsize=8)
    return {"table": "\n".join(rows), "figure": fig, "slope_below": below, "slope_above": above}


# --------------------------------------------------------------------------------------------
# A worked example: a wide two-layer network near initialisation and its catapult window
# (Lewkowycz et al. 2020, arXiv 2003.02218): what a stability definition must decide.


class TwoLayer(nn.Module):
    """``f(x) = a^T tanh(W x / sqrt(d)) / sqrt(m)`` (NTK parameterisation), one output per example."""

    def __init__(self, d: int, m: int):
        super().__init__()
        self.W = nn.Parameter(torch.randn(m, d))
        self.a = nn.Parameter(torch.randn(m))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d, m = self.W.shape[1], self.W.shape[0]
        return (torch.tanh(x @ self.W.T / math.sqrt(d)) @ self.a / math.sqrt(m))[:, None]


def problem(m: int, N: int = 32, d: int = 4, delta: float = 0.01, seed: int = 0, device: str = "cpu",
            dtype: torch.dtype = torch.float64) -> tuple[TwoLayer, tuple[torch.Tensor, torch.Tensor]]:
    """The network at initialisation and data ``(X, y = f_0(X) + delta z)``; ``seed`` fixes all three."""
    g = torch.Generator().manual_seed(int(seed))
    net = TwoLayer(d, m)
    with torch.no_grad():
        net.W.copy_(torch.randn(m, d, generator=g))
        net.a.copy_(torch.randn(m, generator=g))
    net = net.to(device=device, dtype=dtype)
    X = torch.randn(N, d, generator=g).to(device=device, dtype=dtype)
    z = torch.randn(N, 1, generator=g).to(device=device, dtype=dtype)
    with torch.no_grad():
        Y = net(X) + delta * z
    return net, (X, Y)


def kernel_bounds(K: np.ndarray, s: float = 2.0) -> tuple[float, float]:
    """``(2 / max_i s K_ii, 2 / lambda_max(s K / N))``: below the first every SGD step is non-expansive for
    the linearized model, above the second full-batch GD diverges; the SGD threshold lies in between."""
    K = np.asarray(K, dtype=float)
    return 2.0 / (s * float(np.max(np.diag(K)))), 2.0 / (s * float(np.linalg.eigvalsh(K)[-1]) / K.shape[0])


def catapult_run(m: int, lr_factor: float, steps: int = 200, delta: float = 1.0, seed: int = 0) -> np.ndarray:
    """Full-batch GD on :func:`problem` at ``eta = lr_factor x 2/lambda_max(NTK)``: the loss curve (every step)."""
    net, data = problem(m, delta=delta, seed=seed)
    K = ntk_gram(net, data[0])
    eta = lr_factor * kernel_bounds(K)[1]
    res = run_copies(net, nn.MSELoss(), data, [eta], [0], data[0].shape[0], steps=steps, record_every=1)
    return res["loss"][0]
