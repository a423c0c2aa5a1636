"""Loss landscapes of any ``torch.nn.Module``: random directions, 1-D and 2-D slices, linear interpolation.

A slice of the loss around weights ``theta`` (the model's trainable parameters) along directions
``d_1, ..., d_k`` is the function

    f(a_1, ..., a_k) = L(theta + a_1 d_1 + ... + a_k d_k),

evaluated on a grid of coefficients ``a``. The loss ``L`` is the mean of ``loss_fn(model(x), y)``
over the given batches, weighted by batch size (one big batch). Directions:

- ``norm="filter"`` (Li et al. 2018, sec. 4): a Gaussian direction ``d``, then each filter
  ``d_{l,j}`` (slice ``j`` along the first axis of the weight of layer ``l``: a row of a Linear
  weight, an output channel of a Conv weight) is rescaled to the norm of the same filter of the
  weights, ``d_{l,j} <- d_{l,j} ||theta_{l,j}|| / ||d_{l,j}||``. A positive rescaling of one layer by
  ``c`` and the next by ``1/c`` (a symmetry of ReLU nets), or of any layer followed by BatchNorm,
  rescales the direction with the weights, so the plot is unchanged.
- ``norm="layer"``: each parameter tensor rescaled as a whole to the norm of the weight tensor.
- ``norm="none"``: the raw Gaussian direction.

Parameters with one dimension (biases, BatchNorm's ``gamma``/``beta``) are handled by
``bias_bn``: ``"zero"`` (the direction is 0 there: Li et al.'s plots, their ``--xignore biasbn``),
``"weights"`` (the direction equals the weights there, as their code does without that flag), or
``"normalize"`` (treated like any other tensor by ``norm``; for ``"filter"`` each entry is its own
filter, so its magnitude equals the weight's).

A direction depends only on the seed and the shapes of the trainable parameters (in
``named_parameters`` order): drawn on the CPU in float64 by a ``torch.Generator`` seeded with
``seed``, then normalised and moved to the parameters' device and dtype.

The grid is one batched program: ``torch.func.functional_call`` under ``torch.func.vmap`` over the
grid points, in chunks of ``chunk`` points so that the peak memory stays that of ``chunk`` copies of
the weights and activations (estimated and refused beforehand by ``solvable.checks.check_memory``).
BatchNorm is evaluated as the caller states: ``mode="eval"`` uses the running statistics;
``mode="train"`` uses the statistics of each batch, without touching the running buffers (the
buffers are hidden from the module for the duration of the call). Dropout in train mode is refused
(the loss would not be a function of the weights). Buffers (running statistics) are never moved
along a direction.

References:
  Li, Xu, Taylor, Studer, Goldstein, 2018. "Visualizing the loss landscape of neural nets."
  NeurIPS, arXiv 1712.09913 (filter normalization, sec. 4).
  Goodfellow, Vinyals, Saxe, 2015. "Qualitatively characterizing neural network optimization
  problems." ICLR, arXiv 1412.6544 (1-D linear interpolation).
  Frankle, Dziugaite, Roy, Carbin, 2020. "Linear mode connectivity and the lottery ticket
  hypothesis." ICML, arXiv 1912.05671 (barrier height).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..checks import check_choice, check_int, check_memory, check_range

__all__ = [
    "NORMS",
    "BIAS_BN",
    "MODES",
    "Landscape",
    "parameters",
    "random_direction",
    "normalize_direction",
    "check_direction",
    "evaluate",
    "slice_1d",
    "slice_2d",
    "interpolate",
    "barrier_height",
    "plot_1d",
    "plot_contour",
    "plot_surface",
]

NORMS = ("filter", "layer", "none")
BIAS_BN = ("zero", "weights", "normalize")
MODES = ("eval", "train")

Params = dict[str, torch.Tensor]


# --------------------------------------------------------------------------------------------
# Weights and directions


def parameters(model: nn.Module) -> Params:
    """The trainable parameters of ``model`` as ``{name: detached tensor}`` (``named_parameters``
    order), refused with ``ValueError`` if there are none or one holds NaN or inf."""
    out = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    if not out:
        raise ValueError("model has no trainable parameters (none with requires_grad=True): a landscape needs one")
    _check_finite("model parameter", out)
    return out


def _check_finite(what: str, params: Mapping[str, torch.Tensor]) -> None:
    for n, t in params.items():
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{what} {n!r} contains NaN or inf: the weights must be finite")


def check_direction(weights: Mapping[str, torch.Tensor], direction: Mapping[str, Any], name: str = "direction") -> Params:
    """``direction`` as tensors on the weights' device and dtype; ``ValueError`` naming the first
    parameter whose name or shape does not match, or that holds NaN or inf."""
    if not isinstance(direction, Mapping):
        raise ValueError(f"{name} is a {type(direction).__name__}: it must be a dict {{parameter name: tensor}} "
                         f"with the names and shapes of the model's trainable parameters")
    missing = [n for n in weights if n not in direction]
    extra = [n for n in direction if n not in weights]
    if missing or extra:
        raise ValueError(f"{name} does not match the model: missing {missing}, unexpected {extra}: it must have "
                         f"exactly the trainable parameters {list(weights)}")
    out = {}
    for n, w in weights.items():
        d = torch.as_tensor(direction[n])
        if tuple(d.shape) != tuple(w.shape):
            raise ValueError(f"{name}[{n!r}] has shape {tuple(d.shape)} but the parameter {n!r} has shape "
                             f"{tuple(w.shape)}: shapes must match")
        out[n] = d.to(device=w.device, dtype=w.dtype)
    _check_finite(f"{name} entry", out)
    return out


def normalize_direction(direction: Mapping[str, torch.Tensor], weights: Mapping[str, torch.Tensor],
                        norm: str = "filter", bias_bn: str = "zero") -> Params:
    """Rescale ``direction`` to the weights: per filter (``"filter"``), per tensor (``"layer"``) or
    not at all (``"none"``); one-dimensional parameters as ``bias_bn`` says (module docstring).

    ``ValueError`` on a zero-norm filter of the direction (it cannot be rescaled) and, for
    ``"filter"``/``"layer"``, on a weight filter of norm zero (the direction would vanish there:
    no plot shows that filter; pass ``norm="none"`` or perturb the weights)."""
    check_choice("norm", norm, NORMS)
    check_choice("bias_bn", bias_bn, BIAS_BN)
    direction = check_direction(weights, direction)
    out = {}
    for n, w in weights.items():
        d = direction[n]
        if w.dim() <= 1 and bias_bn != "normalize":
            out[n] = torch.zeros_like(w) if bias_bn == "zero" else w.clone()
            continue
        if norm == "none":
            out[n] = d.clone()
            continue
        if norm == "filter" and w.dim() >= 1:
            dims = tuple(range(1, w.dim()))
            dn = torch.linalg.vector_norm(d, dim=dims, keepdim=True) if dims else d.abs()
            wn = torch.linalg.vector_norm(w, dim=dims, keepdim=True) if dims else w.abs()
        else:
            dn, wn = d.norm(), w.norm()
        _refuse_zero(n, dn, "direction", norm)
        _refuse_zero(n, wn, "weight", norm)
        out[n] = d * (wn / dn)
    return out


def _refuse_zero(name: str, norms: torch.Tensor, what: str, norm: str) -> None:
    zero = (norms.reshape(-1) == 0).nonzero()
    if zero.numel():
        j = int(zero[0])
        unit = f"filter {j}" if norm == "filter" else "tensor"
        raise ValueError(f"{what} {unit} of parameter {name!r} has norm 0: {norm} normalization needs every "
                         f"{'filter' if norm == 'filter' else 'tensor'} of the {what} to have a nonzero norm")


def random_direction(weights: Mapping[str, torch.Tensor] | nn.Module, seed: int = 0, norm: str = "filter",
                     bias_bn: str = "zero") -> Params:
    """A Gaussian direction normalised to ``weights`` (a model or its :func:`parameters`).

    Drawn on the CPU in float64 from ``torch.Generator().manual_seed(seed)``, tensor by tensor in
    parameter order, so it depends only on ``seed`` and the shapes (the same on any device).
    """
    seed = check_int("seed", seed, 0)
    check_choice("norm", norm, NORMS)
    check_choice("bias_bn", bias_bn, BIAS_BN)
    w = parameters(weights) if isinstance(weights, nn.Module) else dict(weights)
    _check_finite("weights entry", w)
    g = torch.Generator().manual_seed(seed)
    raw = {n: torch.randn(tuple(t.shape), generator=g, dtype=torch.float64).to(device=t.device, dtype=t.dtype)
           for n, t in w.items()}
    return normalize_direction(raw, w, norm, bias_bn)


# --------------------------------------------------------------------------------------------
# Batched evaluation


@contextlib.contextmanager
def _bn_mode(model: nn.Module, mode: str):
    """Put ``model`` in ``mode`` for the call; in train mode hide BatchNorm running buffers (batch
    statistics are used, nothing is updated) and refuse active dropout."""
    was = model.training
    hidden = []
    try:
        model.train(mode == "train")
        if mode == "train":
            for name, m in model.named_modules():
                if isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0:
                    raise ValueError(f"module {name!r} is an active {type(m).__name__} (p={m.p}) in mode='train': "
                                     "the loss would be random; use mode='eval' or set p=0")
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
                    hidden.append((m, m.running_mean, m.running_var, m.num_batches_tracked))
                    m.running_mean = m.running_var = m.num_batches_tracked = None
        yield
    finally:
        for m, rm, rv, nb in hidden:
            m.running_mean, m.running_var, m.num_batches_tracked = rm, rv, nb
        model.train(was)


def _batches(data: Any) -> list[tuple[Any, Any]]:
    if isinstance(data, tuple) and len(data) == 2 and torch.is_tensor(data[0]):
        return [data]
    out = list(data)
    if not out:
        raise ValueError("data has no batches: pass (inputs, targets) or a non-empty iterable of such pairs")
    for b in out:
        if not (isinstance(b, (tuple, list)) and len(b) == 2):
            raise ValueError("data must be (inputs, targets) or an iterable of (inputs, targets) pairs")
    return [tuple(b) for b in out]


def _default_chunk(n_params: int, n_inputs: int, width_hint: int, itemsize: int, budget: float = 2**28) -> int:
    per_point = itemsize * (2 * n_params + 4 * n_inputs * max(width_hint, 1))
    return max(1, int(budget // per_point))


def evaluate(model: nn.Module, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], data: Any,
             origin: Mapping[str, torch.Tensor] | None, directions: Sequence[Mapping[str, torch.Tensor]],
             coords: Any, *, mode: str = "eval", chunk: int | None = None, progress: bool | None = None) -> np.ndarray:
    """``L(origin + sum_k coords[g, k] directions[k])`` for every grid point ``g`` (a numpy array).

    Args:
      model: any module; its trainable parameters are replaced, its buffers are kept.
      loss_fn: ``loss_fn(output, target)``, a scalar mean over the batch (e.g. ``nn.MSELoss()``).
      data: ``(inputs, targets)`` or an iterable of such batches (weighted by size).
      origin: the weights ``theta`` (default: the model's own).
      directions: ``k`` directions (dicts with the parameters' names and shapes).
      coords: ``(G, k)`` coefficients. mode: ``"eval"`` or ``"train"`` (BatchNorm, see module doc).
      chunk: grid points per vmapped call (default: a ~256 MiB estimate). progress: a rich bar
        (default: on when there are more than 8 chunks and stderr is a terminal).
    """
    from torch.func import functional_call, vmap

    check_choice("mode", mode, MODES)
    w = parameters(model) if origin is None else check_direction(parameters(model), origin, "origin")
    _check_finite("origin entry", w)
    dirs = [check_direction(w, d, f"directions[{i}]") for i, d in enumerate(directions)]
    C = torch.as_tensor(np.asarray(coords, dtype=float) if not torch.is_tensor(coords) else coords)
    if C.dim() == 1 and len(dirs) == 1:
        C = C[:, None]
    if C.dim() != 2 or C.shape[1] != len(dirs):
        raise ValueError(f"coords has shape {tuple(C.shape)}: it must be (G, {len(dirs)}), one column per direction")
    G = int(C.shape[0])
    if G == 0:
        raise ValueError("coords has 0 grid points: the grid must have at least one point")
    if not bool(torch.isfinite(C).all()):
        raise ValueError("coords contains NaN or inf: grid coordinates must be finite")
    batches = _batches(data)
    first = next(iter(w.values()))
    dev, dt = first.device, first.dtype
    C = C.to(device=dev, dtype=dt)
    n_params = sum(t.numel() for t in w.values())
    n_in = max(int(b[0].shape[0]) for b in batches)
    width = max((t.shape[0] for t in w.values() if t.dim() == 2), default=1)
    itemsize = first.element_size()
    if chunk is None:
        chunk = _default_chunk(n_params, n_in, int(width), itemsize)
    chunk = check_int("chunk", chunk, 1)
    chunk = min(chunk, G)
    check_memory("chunk", chunk, chunk * itemsize * (2 * n_params + 4 * n_in * int(width)),
                 what=f"{chunk} grid points of {n_params} weights and {n_in} x {width} activations",
                 device=str(dev))
    names = list(w)
    D = [torch.stack([d[n] for d in dirs]) for n in names]  # (k, *shape)
    sizes = torch.tensor([float(b[0].shape[0]) for b in batches], dtype=torch.float64)
    weights_b = (sizes / sizes.sum()).tolist()

    buffers: dict[str, torch.Tensor] = {}

    def loss_at(params, x, y):
        out = functional_call(model, ({**params, **buffers}), (x,))
        return loss_fn(out, y)

    batched = vmap(loss_at, in_dims=(0, None, None))
    out = torch.empty(G, dtype=torch.float64)
    n_chunks = math.ceil(G / chunk)
    bar = _progress(n_chunks, progress)
    with torch.no_grad(), _bn_mode(model, mode), bar as pb:
        task = pb.add_task("landscape", total=n_chunks) if pb is not None else None
        buffers.update(model.named_buffers())  # after _bn_mode: in train mode the running stats are hidden
        for s in range(0, G, chunk):
            c = C[s:s + chunk]
            params = {n: w[n].unsqueeze(0) + torch.tensordot(c, Dn, dims=([1], [0]))
                      for n, Dn in zip(names, D)}
            total = 0.0
            for (x, y), wb in zip(batches, weights_b):
                total = total + wb * batched(params, x.to(dev), y.to(dev)).to(torch.float64)
            out[s:s + chunk] = total.cpu()
            if pb is not None:
                pb.advance(task)
    return out.numpy()


def _progress(n_chunks: int, progress: bool | None):
    import sys

    show = progress if progress is not None else (n_chunks > 8 and sys.stderr.isatty())
    if not show:
        return contextlib.nullcontext(None)
    from rich.progress import Progress

    return Progress(transient=True)


# --------------------------------------------------------------------------------------------
# Results


@dataclass
class Landscape:
    """Losses on a grid: ``axes`` (one 1-D coordinate array per direction), ``losses`` (shape
    ``len(axes[0]) x len(axes[1]) ...``, ``ij`` indexing), and what produced them (``meta``: norm,
    bias_bn, seeds, mode). ``save``/``load`` round-trip through ``.npz`` with the same numbers."""

    axes: list[np.ndarray]
    losses: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        arrays = {f"axis{i}": np.asarray(a) for i, a in enumerate(self.axes)}
        np.savez(path, losses=np.asarray(self.losses), n_axes=len(self.axes),
                 meta_keys=np.array(list(self.meta), dtype=str),
                 meta_values=np.array([repr(v) for v in self.meta.values()], dtype=str), **arrays)
        return path if path.suffix == ".npz" else path.with_suffix(path.suffix + ".npz")

    @classmethod
    def load(cls, path: str | Path) -> "Landscape":
        import ast

        with np.load(Path(path)) as f:
            axes = [f[f"axis{i}"] for i in range(int(f["n_axes"]))]
            meta = {}
            for k, v in zip(f["meta_keys"].tolist(), f["meta_values"].tolist()):
                try:
                    meta[k] = ast.literal_eval(v)
                except (ValueError, SyntaxError):
                    meta[k] = v
            return cls(axes, f["losses"].copy(), meta)

    @property
    def barrier(self) -> float:
        """:func:`barrier_height` of a 1-D slice."""
        if len(self.axes) != 1:
            raise ValueError(f"barrier is defined on a 1-D slice; this landscape has {len(self.axes)} axes")
        return barrier_height(self.losses, self.axes[0])


def _axis(name: str, span: tuple[float, float], n: int) -> np.ndarray:
    n = check_int(name, n, 1)
    lo = check_range(f"{name} span start", span[0])
    hi = check_range(f"{name} span end", span[1])
    return np.linspace(lo, hi, n)


def slice_1d(model: nn.Module, loss_fn: Callable, data: Any, direction: Mapping[str, torch.Tensor] | None = None, *,
             seed: int = 0, norm: str = "filter", bias_bn: str = "zero", span: tuple[float, float] = (-1.0, 1.0),
             n: int = 51, mode: str = "eval", origin: Mapping[str, torch.Tensor] | None = None,
             chunk: int | None = None, progress: bool | None = None) -> Landscape:
    """``L(theta + a d)`` for ``n`` values of ``a`` in ``span``; ``d`` given, or random (``seed``,
    ``norm``, ``bias_bn``: :func:`random_direction`)."""
    if n is not None and check_int("n", n, 0) == 0:
        raise ValueError("n=0 is out of range: a slice needs at least one grid point (n >= 1)")
    w = parameters(model) if origin is None else check_direction(parameters(model), origin, "origin")
    d = random_direction(w, seed, norm, bias_bn) if direction is None else check_direction(w, direction)
    a = _axis("n", span, n)
    L = evaluate(model, loss_fn, data, w, [d], a[:, None], mode=mode, chunk=chunk, progress=progress)
    meta = {"kind": "1d", "norm": norm if direction is None else "given", "bias_bn": bias_bn, "seed": seed, "mode": mode}
    return Landscape([a], L, meta)


def slice_2d(model: nn.Module, loss_fn: Callable, data: Any,
             directions: Sequence[Mapping[str, torch.Tensor]] | None = None, *, seed: int = 0, norm: str = "filter",
             bias_bn: str = "zero", span: tuple[float, float] = (-1.0, 1.0), n: int = 21,
             span_y: tuple[float, float] | None = None, n_y: int | None = None, mode: str = "eval",
             origin: Mapping[str, torch.Tensor] | None = None, chunk: int | None = None,
             progress: bool | None = None) -> Landscape:
    """``L(theta + a d_1 + b d_2)`` on an ``n x n_y`` grid (``losses[i, j]`` at ``a_i, b_j``);
    random directions use seeds ``seed`` and ``seed + 1``."""
    n_y = n if n_y is None else n_y
    for nm, v in (("n", n), ("n_y", n_y)):
        if check_int(nm, v, 0) == 0:
            raise ValueError(f"{nm}=0 is out of range: a grid needs at least one point per axis ({nm} >= 1)")
    w = parameters(model) if origin is None else check_direction(parameters(model), origin, "origin")
    if directions is None:
        dirs = [random_direction(w, seed, norm, bias_bn), random_direction(w, seed + 1, norm, bias_bn)]
    else:
        if len(directions) != 2:
            raise ValueError(f"directions has {len(directions)} entries: a 2-D slice needs exactly 2")
        dirs = [check_direction(w, d, f"directions[{i}]") for i, d in enumerate(directions)]
    a = _axis("n", span, n)
    b = _axis("n_y", span if span_y is None else span_y, n_y)
    A, B = np.meshgrid(a, b, indexing="ij")
    L = evaluate(model, loss_fn, data, w, dirs, np.stack([A.ravel(), B.ravel()], 1), mode=mode, chunk=chunk,
                 progress=progress)
    meta = {"kind": "2d", "norm": norm if directions is None else "given", "bias_bn": bias_bn, "seed": seed,
            "mode": mode}
    return Landscape([a, b], L.reshape(len(a), len(b)), meta)


def interpolate(model: nn.Module, loss_fn: Callable, data: Any, theta_a: Mapping[str, torch.Tensor],
                theta_b: Mapping[str, torch.Tensor], *, n: int = 25, span: tuple[float, float] = (0.0, 1.0),
                mode: str = "eval", chunk: int | None = None, progress: bool | None = None) -> Landscape:
    """``L((1 - t) theta_a + t theta_b)`` for ``n`` values of ``t`` in ``span`` (default the
    segment); ``.barrier`` is :func:`barrier_height` (linear mode connectivity)."""
    if check_int("n", n, 0) == 0:
        raise ValueError("n=0 is out of range: an interpolation needs at least one point (n >= 1)")
    w = parameters(model)
    A = check_direction(w, theta_a, "theta_a")
    B = check_direction(w, theta_b, "theta_b")
    t = _axis("n", span, n)
    L = evaluate(model, loss_fn, data, A, [{k: B[k] - A[k] for k in A}], t[:, None], mode=mode, chunk=chunk,
                 progress=progress)
    return Landscape([t], L, {"kind": "interpolation", "mode": mode})


def barrier_height(losses: Any, t: Any | None = None) -> float:
    """``max_t [L(t) - ((1 - t) L(0) + t L(1))]`` over the samples of a segment (``t`` from 0 to 1,
    default evenly spaced): how far the loss rises above the chord between the endpoints (Frankle et
    al. 2020). Zero for a convex loss (the endpoints are samples, so it is never negative)."""
    L = np.asarray(losses, dtype=float).ravel()
    if L.size == 0:
        raise ValueError("losses has 0 points: the barrier needs at least the two endpoints")
    if not np.all(np.isfinite(L)):
        raise ValueError("losses contains NaN or inf: the barrier needs finite losses")
    tt = np.linspace(0.0, 1.0, L.size) if t is None else np.asarray(t, dtype=float).ravel()
    if tt.shape != L.shape:
        raise ValueError(f"t has {tt.size} points but losses has {L.size}: they must match")
    t0, t1 = tt[0], tt[-1]
    if t1 == t0:
        return 0.0
    u = (tt - t0) / (t1 - t0)
    return float(np.max(L - ((1 - u) * L[0] + u * L[-1])))


# --------------------------------------------------------------------------------------------
# Plots


def plot_1d(ls: Landscape, ax: Any = None, log: bool = False, **kw: Any) -> Any:
    import matplotlib.pyplot as plt

    ax = ax or plt.gca()
    ax.plot(ls.axes[0], ls.losses, **kw)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("t" if ls.meta.get("kind") == "interpolation" else "alpha")
    ax.set_ylabel("loss")
    return ax


def plot_contour(ls: Landscape, ax: Any = None, levels: int = 30, log: bool = False, **kw: Any) -> Any:
    import matplotlib.pyplot as plt

    if len(ls.axes) != 2:
        raise ValueError(f"plot_contour needs a 2-D landscape; this one has {len(ls.axes)} axes")
    ax = ax or plt.gca()
    Z = np.log10(ls.losses) if log else ls.losses
    cs = ax.contour(ls.axes[0], ls.axes[1], Z.T, levels=levels, **kw)
    ax.set_xlabel("alpha")
    ax.set_ylabel("beta")
    return cs


def plot_surface(ls: Landscape, ax: Any = None, log: bool = False, **kw: Any) -> Any:
    import matplotlib.pyplot as plt

    if len(ls.axes) != 2:
        raise ValueError(f"plot_surface needs a 2-D landscape; this one has {len(ls.axes)} axes")
    if ax is None:
        ax = plt.figure().add_subplot(projection="3d")
    A, B = np.meshgrid(ls.axes[0], ls.axes[1], indexing="ij")
    Z = np.log10(ls.losses) if log else ls.losses
    return ax.plot_surface(A, B, Z, cmap=kw.pop("cmap", "viridis"), **kw)
