"""Curvature of real torch models: Hessian-vector products, top eigenvalues, preconditioned sharpness.

The full-batch loss over a data loader with batches ``b`` is

    L(theta) = sum_b w_b L_b(theta),     w_b = W_b / sum_c W_c  (loss with reduction "mean"),
                                         w_b = 1                (loss with reduction "sum"),

where ``W_b`` is the normalizer the loss itself divides by over batch ``b``: the batch size ``n_b``
for a per-sample mean; for ``CrossEntropyLoss``/``NLLLoss`` with class-index targets, the sum of the
class weights of the targets that are not ``ignore_index`` (``sum_i weight[y_i]``, or their count
without ``weight``), which is how torch normalizes those means. So unequal batches, class weights
and ignored targets are weighted exactly as one big batch would weight them. A loss of another kind
that carries a ``weight`` is refused with a ``ValueError`` (its normalizer is unknown here); a plain
function is taken to be a per-sample mean (or a sum, with ``reduction="sum"``).

The Hessian ``H = sum_b w_b Hess L_b`` is applied to a vector one batch at a time (memory stays that
of one batch), by reverse-over-reverse (``vjp`` of ``grad``) or forward-over-reverse differentiation
(``jvp`` of ``grad``, ``H v = d/dt grad L(theta + t v)|_{t=0}``), chosen per device by default
(:data:`HVP_DEFAULT`).

The data must be the same on every pass (each product passes over it again): a loader whose two
passes differ (``shuffle=True``, random augmentation) is refused with a ``ValueError``, since its
products would be Hessians of different losses.

- :class:`HessianOperator`: ``H v`` over a loader, ``to_scipy()`` for ARPACK, a flat parameter view;
- :func:`dense_hessian`: the float64 dense oracle for small models (everything here is tested
  against it);
- :func:`lanczos`, :func:`top_eigenvalues`, :func:`sharpness`: top-k eigenpairs with residuals
  ``||H u - theta u||`` and a ``converged`` flag;
- :func:`adam_preconditioner`, :func:`preconditioned_sharpness`: ``lambda_1(P^-1 H)`` for an Adam or
  RMSProp state, ``P = diag(sqrt(v_hat) + eps)``, computed as the top eigenvalue of the symmetric
  ``P^-1/2 H P^-1/2`` (same spectrum as ``P^-1 H``).

BatchNorm and dropout: ``mode="eval"`` (default) evaluates the loss with running statistics and no
dropout; ``mode="train"`` uses batch statistics (without touching the running buffers). A loss that
is not a deterministic function of the parameters (dropout active in train mode) is refused with a
``ValueError``: averaging Hessians of random losses is not the Hessian of anything the user trains.

References:
  Pearlmutter, 1994. "Fast exact multiplication by the Hessian." Neural Computation 6(1).
  Lanczos, 1950; Golub and Van Loan, "Matrix Computations", 4th ed., sec. 10.1 (Lanczos with full
  reorthogonalisation).
  Yao, Gholami, Keutzer, Mahoney, 2020. "PyHessian: Neural networks through the lens of the
  Hessian." arXiv 1912.07145.
  Cohen, Kaur, Li, Kolter, Talwalkar, 2022. "Adaptive gradient methods at the edge of stability."
  arXiv 2207.14484 (preconditioned sharpness).
  Dangel, Tatzel, Hennig, 2024 (curvlinops). "Convolutions and more as einsum." arXiv 2307.02275.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn

from ..checks import check_choice, check_int, check_range

__all__ = [
    "HessianOperator",
    "EigenResult",
    "dense_hessian",
    "lanczos",
    "top_eigenvalues",
    "sharpness",
    "adam_preconditioner",
    "preconditioned_sharpness",
    "flat_parameters",
]

MODES = ("eval", "train")
REDUCTIONS = ("mean", "sum")
HVPS = ("auto", "forward", "reverse")

#: The Hessian-vector product used with ``hvp="auto"`` per device type. CPU: reverse-over-reverse,
#: measured faster (benchmarks/bench_stability.py ``hvp_cost``, torch 2.13, one thread, float32,
#: MSE, batch 256; one product in gradients' time, forward vs reverse): tanh MLP 512-512-512-10
#: (530k parameters) 2.44 vs 2.33, 64-64-64-10 (9k) 2.98 vs 2.32, 512-1024-512-10 (1.06M) 2.73 vs
#: 1.98 (the issue's measurement on a 536k MLP: 3.3 vs 2.3); torch's CPU forward-mode kernels carry
#: the overhead. CUDA: forward-over-reverse, which keeps no graph alive (less memory); not yet
#: measured on a GPU (``make gpu-check`` runs ``hvp_cost`` there and reports both).
HVP_DEFAULT = {"cpu": "reverse", "cuda": "forward"}


# --------------------------------------------------------------------------------------------
# Parameters as one flat vector


def _trainable(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("model has no trainable parameters (none with requires_grad=True): "
                         "the Hessian needs at least one")
    return named


def flat_parameters(model: nn.Module) -> torch.Tensor:
    """The trainable parameters of ``model`` concatenated in ``named_parameters`` order (a copy)."""
    return torch.cat([p.detach().reshape(-1) for _, p in _trainable(model)])


@contextlib.contextmanager
def _forward_mode(model: nn.Module, mode: str):
    """Put ``model`` in eval or train mode for the duration; restore flags afterwards.

    In train mode BatchNorm uses batch statistics; its running buffers are not updated (they would
    be written from inside a torch.func transform, and a curvature query must not change the model):
    ``track_running_stats`` is switched off for the duration, which makes ``F.batch_norm`` receive
    no running buffers.
    """
    flags = [(m, m.training) for m in model.modules()]
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    tracks = [m.track_running_stats for m in bns]
    try:
        model.train(mode == "train")
        if mode == "train":
            for m in bns:
                m.track_running_stats = False
        yield
    finally:
        for m, t in zip(bns, tracks):
            m.track_running_stats = t
        for m, was in flags:
            m.training = was


def _batch_size(x: Any) -> int:
    if isinstance(x, torch.Tensor):
        return int(x.shape[0]) if x.dim() > 0 else 1
    if isinstance(x, (list, tuple)) and x:
        return _batch_size(x[0])
    if isinstance(x, Mapping) and x:
        return _batch_size(next(iter(x.values())))
    raise ValueError(f"cannot read a batch size from inputs of type {type(x).__name__}: "
                     "inputs must be a tensor (batch first), or a tuple/list/mapping of such tensors")


# Losses whose mean divides by the number of elements (their ``weight`` rescales terms only).
_NUMEL_MEAN = (nn.BCELoss, nn.BCEWithLogitsLoss, nn.MultiLabelSoftMarginLoss, nn.MultiMarginLoss)
# Losses whose mean with class-index targets divides by the sum of the targets' class weights.
_WEIGHTED_MEAN = (nn.CrossEntropyLoss, nn.NLLLoss)


def _check_loss_weighting(loss_fn: Any, reduction: str) -> None:
    """Refuse a weighted loss whose mean's normalizer is not known here (see the module docstring)."""
    if reduction != "mean" or getattr(loss_fn, "weight", None) is None:
        return
    if isinstance(loss_fn, _NUMEL_MEAN + _WEIGHTED_MEAN):
        return
    raise ValueError(f"loss_fn={type(loss_fn).__name__} with a weight and reduction='mean' is not supported: its "
                     "mean's normalizer (what each batch divides by) is not known, so batches cannot be weighted as "
                     "one big batch; use reduction='sum' (and scale the result), or one batch holding all the data")


def _fingerprint(x: Any) -> list:
    """A cheap summary of a batch that changes when its content or order changes (shapes, and a
    position-weighted sum of every tensor, computed where the tensor lives)."""
    if isinstance(x, torch.Tensor):
        v = x.detach().reshape(-1)
        if v.dtype == torch.bool or v.is_complex():
            v = v.to(torch.float64) if v.dtype == torch.bool else torch.view_as_real(v).reshape(-1)
        v = v.to(torch.float64)
        pos = torch.arange(v.numel(), device=v.device, dtype=torch.float64) % 97 + 1.0
        return [tuple(x.shape), float((v * pos).sum()), float(v.abs().sum())]
    if isinstance(x, (list, tuple)):
        return [_fingerprint(t) for t in x]
    if isinstance(x, Mapping):
        return [(k, _fingerprint(v)) for k, v in x.items()]
    return [repr(x)]


def _same_fingerprints(a: list, b: list) -> bool:
    """Equal structure and shapes; sums equal up to 64 ulps (two passes over the same data reduce in
    the same order, so they are bitwise equal in practice; the margin is for device reductions)."""
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= 64 * np.finfo(np.float64).eps * max(abs(a), abs(b))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_fingerprints(x, y) for x, y in zip(a, b))
    return a == b


def _to(x: Any, device: torch.device, dtype: torch.dtype | None) -> Any:
    if isinstance(x, torch.Tensor):
        if dtype is not None and x.is_floating_point():
            return x.to(device=device, dtype=dtype)
        return x.to(device=device)
    if isinstance(x, (list, tuple)):
        return type(x)(_to(t, device, dtype) for t in x)
    if isinstance(x, Mapping):
        moved = {k: _to(v, device, dtype) for k, v in x.items()}
        try:
            return type(x)(moved)  # keep the user's mapping type (UserDict, OrderedDict, ...)
        except TypeError:
            return moved
    return x


def _call(model: nn.Module, x: Any) -> Any:
    return model(*x) if isinstance(x, tuple) else model(x)


class HessianOperator:
    """The full-batch Hessian ``H`` of ``loss_fn(model(x), y)`` over ``data``, as a linear operator.

    ``H v = sum_b w_b Hess L_b v`` (weights in the module docstring), each term by
    ``torch.func.vjp`` of ``torch.func.grad(L_b)`` (reverse-over-reverse: the gradient's graph is
    kept alive and differentiated again) or ``torch.func.jvp(torch.func.grad(L_b), (theta,), (v,))``
    (forward-over-reverse: one forward and one backward pass in dual numbers, no retained graph).

    Args:
      model: a ``torch.nn.Module``; its trainable parameters (``requires_grad``) are ``theta``.
      loss_fn: ``loss_fn(output, target) -> scalar``, a batch mean or a batch sum.
      data: an iterable of ``(inputs, targets)`` batches (a ``DataLoader``, a list); a one-shot
        iterator is materialised once. Batches may have unequal sizes. Inputs are a tensor (batch
        first), a tuple of tensors (passed as positional arguments), a list, or any
        ``collections.abc.Mapping`` of tensors. A loader is passed over twice here and must give the
        same batches both times (no ``shuffle=True``, no random augmentation).
      reduction: ``"mean"`` or ``"sum"``: what ``loss_fn`` does over a batch; by default read from
        ``loss_fn.reduction`` (``torch.nn`` losses have it). Decides the weights ``w_b``; class
        weights and ``ignore_index`` of ``CrossEntropyLoss``/``NLLLoss`` are honoured.
      mode: ``"eval"`` (running BatchNorm statistics, no dropout) or ``"train"`` (batch statistics;
        refused if dropout makes the loss random).
      dtype: compute in this dtype (parameters, buffers and float inputs are cast); default the
        parameters' own dtype.
      hvp: ``"auto"`` (default): the faster product on the parameters' device,
        :data:`HVP_DEFAULT` (reverse-over-reverse on the CPU, forward-over-reverse on CUDA);
        ``"forward"``: forward-over-reverse, ``jvp`` of ``grad`` (no retained graph);
        ``"reverse"``: reverse-over-reverse, ``vjp`` of ``grad`` (keeps the gradient's graph alive
        per batch). The product used is ``self.hvp``.

    Raises:
      ValueError: no trainable parameters, an empty loader, an unknown reduction or mode, a
        weighted loss of unknown normalizer, a loader whose passes differ, or a non-deterministic loss.
    """

    def __init__(self, model: nn.Module, loss_fn: Callable, data: Iterable, *, reduction: str | None = None,
                 mode: str = "eval", dtype: torch.dtype | None = None, hvp: str = "auto"):
        check_choice("mode", mode, MODES)
        check_choice("hvp", hvp, HVPS)
        named = _trainable(model)
        if reduction is None:
            reduction = getattr(loss_fn, "reduction", None)
            if reduction is None:
                raise ValueError("reduction=None and loss_fn has no .reduction attribute: "
                                 "reduction must be one of mean, sum")
        check_choice("reduction", reduction, REDUCTIONS)
        _check_loss_weighting(loss_fn, reduction)
        if mode == "train":
            drop = [n for n, m in model.named_modules()
                    if isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0]
            if drop:
                raise ValueError(f"mode='train' with active dropout ({', '.join(drop)}): the loss is random, "
                                 "so its Hessian is not defined; use mode='eval' or set the dropout p to 0")
        if isinstance(data, Iterator):
            data = list(data)  # a one-shot iterator: keep it, every product passes over it again
        self.model, self.loss_fn, self.data = model, loss_fn, data
        self.reduction, self.mode = reduction, mode
        self.names = [n for n, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.sizes = [p.numel() for _, p in named]
        first = named[0][1]
        self.device = first.device
        self.hvp = HVP_DEFAULT.get(self.device.type, "forward") if hvp == "auto" else hvp
        self.dtype = dtype if dtype is not None else first.dtype
        self.theta = torch.cat([p.detach().reshape(-1) for _, p in named]).to(self.dtype)
        self.n = int(self.theta.numel())
        self.params = {n: p.detach().to(self.dtype) for n, p in named}
        trainable = set(self.names)
        self.frozen = {n: p.detach().to(self.dtype) for n, p in model.named_parameters() if n not in trainable}
        self.buffers = {n: (b.detach().to(self.dtype) if b.is_floating_point() else b.detach())
                        for n, b in model.named_buffers()}
        sizes, norms, prints = [], [], []
        fixed = isinstance(data, (list, tuple))  # a list of batches cannot change between passes
        for x, y in self._batches(cast=False):
            sizes.append(_batch_size(x))
            norms.append(self._normalizer(x, y))
            if not fixed:
                prints.append(_fingerprint((x, y)))
        if not sizes or sum(sizes) == 0:
            raise ValueError("data is empty: the loader must yield at least one (inputs, targets) batch")
        if reduction == "mean" and sum(norms) <= 0:
            raise ValueError("every target is ignore_index (or has class weight 0): the mean loss over data is 0/0, "
                             "so its Hessian is not defined")
        if not fixed:
            self._check_same_passes(prints)
        self.num_samples = int(sum(sizes))
        self.num_batches = len(sizes)
        # w_b of the module docstring, in the loader's order (the same on every pass, checked above)
        self.weights = [n / sum(norms) for n in norms] if reduction == "mean" else [1.0] * len(norms)
        self._check_deterministic()

    # -- the loss as a function of the flat parameter vector -----------------------------------
    def _batches(self, cast: bool = True):
        for batch in self.data:
            if not isinstance(batch, (tuple, list)) or len(batch) != 2:
                raise ValueError("each batch of data must be a pair (inputs, targets)")
            x, y = batch
            if cast:
                x, y = _to(x, self.device, self.dtype), _to(y, self.device, self.dtype)
            yield x, y

    def _normalizer(self, x: Any, y: Any) -> float:
        """``W_b``: what the loss's mean divides by over this batch (module docstring)."""
        lf = self.loss_fn
        if (isinstance(lf, _WEIGHTED_MEAN) and isinstance(y, torch.Tensor) and not y.is_floating_point()
                and not y.is_complex()):
            keep = y != lf.ignore_index
            if lf.weight is None:
                return float(keep.sum())
            return float(lf.weight.detach().double()[y[keep].to(lf.weight.device)].sum())
        return float(_batch_size(x))

    def _check_same_passes(self, first: list) -> None:
        second = [_fingerprint((x, y)) for x, y in self._batches(cast=False)]
        if len(second) != len(first):
            raise ValueError(f"data gave {len(first)} batches on one pass and {len(second)} on the next: the loader "
                             "must give the same batches on every pass (each product passes over it again)")
        for i, (a, b) in enumerate(zip(first, second)):
            if not _same_fingerprints(a, b):
                raise ValueError(f"data is not the same on two passes (batch {i} differs): a shuffling loader "
                                 "(shuffle=True) or random augmentation gives every product a different loss; "
                                 "use shuffle=False and deterministic transforms for curvature")

    def _split(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        return {n: t.view(s) for n, t, s in zip(self.names, theta.split(self.sizes), self.shapes)}

    def _flat(self, d: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([d[n].reshape(-1) for n in self.names])

    def _loss_of(self, params: dict[str, torch.Tensor], x: Any, y: Any) -> torch.Tensor:
        # The trainable parameters enter as a dict of leaves (not views of one flat vector):
        # torch.func.jvp of grad through split views of a dual tensor fails with "ZeroTensors are
        # immutable" on torch 2.x, while a pytree of separate tensors is supported.
        full = dict(params)
        full.update(self.frozen)
        full.update(self.buffers)
        out = torch.func.functional_call(self.model, full, x if isinstance(x, tuple) else (x,))
        return self.loss_fn(out, y)

    def batch_loss(self, theta: torch.Tensor, x: Any, y: Any) -> torch.Tensor:
        """``L_b(theta)``: the loss of one batch at the flat parameters ``theta``."""
        return self._loss_of(self._split(theta), x, y)

    def _check_deterministic(self) -> None:
        x, y = next(b for b, w in zip(self._batches(), self.weights) if w != 0)
        with torch.no_grad(), _forward_mode(self.model, self.mode):
            a = self.batch_loss(self.theta, x, y)
            b = self.batch_loss(self.theta, x, y)
        # Equal up to a few ulps, not bitwise: on CUDA a deterministic model's reductions (atomic adds
        # in matmul/scatter kernels) may sum in a different order on each call, moving the loss by
        # round-off, ~sqrt(n) ulps for a reordered sum of n terms (64 ulps: n up to ~4000 with room);
        # active dropout or other randomness moves it by O(1) relative, far beyond this.
        fi = torch.finfo(a.dtype)
        tol = 64 * fi.eps * torch.maximum(a.abs(), b.abs()).clamp_min(fi.tiny)
        if not bool(((a - b).abs() <= tol).all()):
            raise ValueError(f"the loss is not deterministic in mode={self.mode!r} (two evaluations at the same "
                             f"parameters gave {float(a)!r} and {float(b)!r}; dropout or another random layer is "
                             "active): refusing to average Hessians of a random loss; use mode='eval'")

    # -- products --------------------------------------------------------------------------------
    def _as_flat(self, v: Any) -> torch.Tensor:
        v = torch.as_tensor(v, device=self.device).to(self.dtype).reshape(-1)
        if v.numel() != self.n:
            raise ValueError(f"v has {v.numel()} entries: it must have {self.n} (the number of trainable parameters)")
        return v

    def matvec(self, v: Any) -> torch.Tensor:
        """``H v`` for a flat vector ``v`` (any array-like; returned as a tensor on the model's device)."""
        v = self._as_flat(v)
        out = torch.zeros_like(self.theta)
        with _forward_mode(self.model, self.mode):
            for (x, y), w in zip(self._batches(), self.weights):
                if w == 0:
                    continue  # every target ignored: the batch's own mean is 0/0 and it weighs nothing
                if self.hvp == "reverse":
                    _, pullback = torch.func.vjp(torch.func.grad(lambda p: self._loss_of(p, x, y)), self.params)
                    out.add_(self._flat(pullback(self._split(v))[0]), alpha=w)
                    continue
                if isinstance(y, torch.Tensor) and y.is_floating_point():
                    # A float target goes in as a primal with a materialised zero tangent: with the
                    # target closed over, the forward derivative of mse_loss's backward writes into
                    # an immutable ZeroTensor and fails (torch 2.x); the zero tangent costs one
                    # target-sized buffer and changes no number.
                    g = torch.func.grad(lambda p, t: self._loss_of(p, x, t))
                    _, hv = torch.func.jvp(g, (self.params, y), (self._split(v), torch.zeros_like(y)))
                else:
                    g = torch.func.grad(lambda p: self._loss_of(p, x, y))
                    _, hv = torch.func.jvp(g, (self.params,), (self._split(v),))
                out.add_(self._flat(hv), alpha=w)
        return out

    __matmul__ = matvec

    def loss_and_gradient(self) -> tuple[float, torch.Tensor]:
        """The full-batch loss ``L(theta)`` and gradient, with the same weights as :meth:`matvec`."""
        out = torch.zeros_like(self.theta)
        total = 0.0
        with _forward_mode(self.model, self.mode):
            for (x, y), w in zip(self._batches(), self.weights):
                if w == 0:
                    continue
                g, l = torch.func.grad_and_value(lambda p: self._loss_of(p, x, y))(self.params)
                out.add_(self._flat(g), alpha=w)
                total += w * float(l)
        return total, out

    def to_scipy(self):
        """A ``scipy.sparse.linalg.LinearOperator`` (float64 numpy in and out) for ARPACK."""
        from scipy.sparse.linalg import LinearOperator

        def mv(v: np.ndarray) -> np.ndarray:
            out = self.matvec(torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64)))
            return out.detach().cpu().double().numpy()

        return LinearOperator((self.n, self.n), matvec=mv, rmatvec=mv, dtype=np.float64)


def dense_hessian(model: nn.Module, loss_fn: Callable, data: Iterable, *, reduction: str | None = None,
                  mode: str = "eval") -> torch.Tensor:
    """The full-batch Hessian as a dense ``n x n`` float64 matrix (the oracle; small models only).

    Built row by row by ``torch.autograd.functional.hessian`` (reverse-over-reverse, no vmap) of each
    batch loss in float64 (parameters, buffers and float inputs cast to float64), weighted as in
    :class:`HessianOperator`, and symmetrised. It shares no differentiation path with the
    ``torch.func`` products it checks (forward-over-reverse ``jvp`` of ``grad``, reverse-over-reverse
    ``vjp`` of ``grad``); ``torch.func.hessian`` was not used because its
    vmapped forward mode gave a wrong Hessian (off by 0.8 in max-norm, against finite differences)
    for BatchNorm with batch statistics on torch 2.13.
    """
    op = HessianOperator(model, loss_fn, data, reduction=reduction, mode=mode, dtype=torch.float64)
    H = torch.zeros(op.n, op.n, dtype=torch.float64, device=op.device)
    with _forward_mode(model, mode):
        for (x, y), w in zip(op._batches(), op.weights):
            if w:
                H.add_(torch.autograd.functional.hessian(lambda th: op.batch_loss(th, x, y), op.theta), alpha=w)
    return 0.5 * (H + H.T)


# --------------------------------------------------------------------------------------------
# Top eigenvalues


@dataclass
class EigenResult:
    """Top eigenpairs of a symmetric operator.

    Attributes:
      values: the ``k`` eigenvalues, largest first (float64 numpy array).
      vectors: ``(n, k)`` tensor of unit eigenvectors (columns), on the operator's device (ARPACK:
        float64 on the CPU).
      residuals: ``||A u_i - theta_i u_i||`` for each pair, computed with one extra product each.
      converged: every residual is at most ``tol * max(|theta_i|, tiny)``.
      matvecs: the number of operator applications used.
      method: ``"lanczos"`` or ``"arpack"``.
    """

    values: np.ndarray
    vectors: torch.Tensor
    residuals: np.ndarray
    converged: bool
    matvecs: int
    method: str


def _select(theta: torch.Tensor, k: int, which: str) -> torch.Tensor:
    order = torch.argsort(theta.abs() if which == "LM" else theta, descending=True)
    return order[:k]


def lanczos(matvec: Callable[[torch.Tensor], torch.Tensor], n: int, k: int = 1, *, tol: float = 1e-6,
            max_iter: int | None = None, which: str = "LA", v0: torch.Tensor | None = None,
            device: Any = "cpu", dtype: torch.dtype = torch.float64, seed: int = 0) -> EigenResult:
    """Top-``k`` eigenpairs of a symmetric operator by Lanczos with full reorthogonalisation.

    Krylov basis ``q_1 .. q_m`` of ``(A, v0)`` with the tridiagonal ``T_m = Q^T A Q``; the Ritz pairs
    ``(theta_i, Q s_i)`` of ``T_m`` approximate the extreme eigenpairs. Every new vector is
    orthogonalised against the whole basis (classical Gram-Schmidt, a second pass where the first
    cancelled most of it: "twice is enough"), which keeps the basis orthogonal to working precision
    and avoids spurious copies of converged Ritz values. Iteration stops when the Lanczos residual
    estimates ``beta_m |s_{m,i}|`` of the wanted pairs fall below ``tol * |theta_i|``; the returned
    residuals are then recomputed exactly.

    Why a torch Lanczos rather than ARPACK (``scipy.sparse.linalg.eigsh``) or curvlinops (whose
    ``HessianLinearOperator`` is solved by the same ARPACK through scipy): all vectors stay on the
    model's device and dtype (no host round-trip per product on a GPU), and it needs fewer products.
    Measured on the CPU (benchmarks/bench_stability.py ``lanczos_vs_arpack``: a 1.06M-parameter tanh
    MLP, float32, ``tol = 1e-6``, ``k = 1``): 57 Hessian-vector products against ARPACK's 72 (its
    implicit restarts with the default ``ncv = max(2k + 1, 20)`` re-spend products); 5.1 s against
    7.0 s (curvlinops + ARPACK 7.5 s) on one quiet core (on a loaded one: 53 s against 45 s, noise).
    A full basis costs ``m n`` memory (m <= ``max_iter``), 0.2 GB at m = 57 there.
    ``method="arpack"`` of :func:`top_eigenvalues` remains available.

    Args:
      matvec: ``v -> A v`` on flat tensors.
      n: the dimension. k: how many eigenpairs (``1 <= k <= n``).
      tol: relative residual at which a Ritz pair counts as converged.
      max_iter: the largest Krylov dimension (default ``min(n, max(10 k, 100))``).
      which: ``"LA"`` largest algebraic (the sharpness) or ``"LM"`` largest magnitude.
      v0: the start vector (random normal from ``seed`` if None); warm starts pass the last one.
    """
    n = check_int("n", n, 1)
    k = check_int("k", k, 1, n)
    tol = check_range("tol", tol, 0.0, None, low_open=True)
    check_choice("which", which, ("LA", "LM"))
    m_max = min(n, max(10 * k, 100)) if max_iter is None else check_int("max_iter", max_iter, k, n)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    if v0 is None:
        v0 = torch.randn(n, generator=gen, dtype=torch.float64)
    q = v0.reshape(-1).to(device=device, dtype=dtype)
    if q.numel() != n:
        raise ValueError(f"v0 has {q.numel()} entries: it must have n={n}")
    # torch.empty, not zeros: rows past j are never read, and zero-filling m_max x n up front cost
    # 0.2 s of a 1.6 s solve on the 1M-parameter benchmark model
    Q = torch.empty(m_max, n, device=device, dtype=dtype)
    alpha = torch.zeros(m_max, dtype=torch.float64)
    beta = torch.zeros(m_max, dtype=torch.float64)
    q = q / q.norm()
    matvecs, m = 0, 0
    w = None
    for j in range(m_max):
        Q[j] = q
        w = matvec(q).reshape(-1).to(dtype)
        matvecs += 1
        alpha[j] = float(q @ w)
        # classical Gram-Schmidt against the whole basis, repeated once when the first pass
        # cancelled most of w (||w'|| < ||w|| / sqrt(2), the Daniel-Gragg-Kaufman-Stewart test):
        # "twice is enough", and once usually is
        before = float(w.norm())
        w = w - Q[: j + 1].T @ (Q[: j + 1] @ w)
        if float(w.norm()) < before / 2**0.5:
            w = w - Q[: j + 1].T @ (Q[: j + 1] @ w)
        b = float(w.norm())
        beta[j] = b
        m = j + 1
        scale = max(float(alpha[: m].abs().max()), 1e-300)
        if m >= k and (m % 2 == 0 or m == m_max or b <= 1e-12 * scale):
            T = torch.diag(alpha[:m]) + torch.diag(beta[: m - 1], 1) + torch.diag(beta[: m - 1], -1)
            th, S = torch.linalg.eigh(T)
            idx = _select(th, k, which)
            est = b * S[m - 1, idx].abs()
            if bool((est <= tol * th[idx].abs().clamp_min(1e-300)).all()):
                break
        if m == m_max:
            break
        if b <= 1e-12 * scale:
            # An invariant subspace: continue from a random vector orthogonal to it (beta = 0
            # decouples the blocks of T), so that k pairs can still be found when k > m.
            r = torch.randn(n, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)
            for _ in range(2):
                r = r - Q[: j + 1].T @ (Q[: j + 1] @ r)
            beta[j] = 0.0
            q = r / r.norm()
        else:
            q = w / b
    T = torch.diag(alpha[:m]) + torch.diag(beta[: m - 1], 1) + torch.diag(beta[: m - 1], -1)
    th, S = torch.linalg.eigh(T)
    idx = _select(th, k, which)
    values = th[idx]
    vecs = Q[:m].T @ S[:, idx].to(device=device, dtype=dtype)
    vecs = vecs / vecs.norm(dim=0, keepdim=True)
    res = np.empty(k)
    for i in range(k):
        r = matvec(vecs[:, i]).reshape(-1).to(dtype) - float(values[i]) * vecs[:, i]
        res[i] = float(r.norm())
    matvecs += k
    vals = values.numpy().astype(np.float64)
    converged = bool(np.all(res <= tol * np.maximum(np.abs(vals), 1e-300)))
    return EigenResult(vals, vecs, res, converged, matvecs, "lanczos")


def _arpack(n: int, k: int, tol: float, which: str, seed: int, matvec: Callable) -> EigenResult:
    from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

    count = [0]

    def mv(v: np.ndarray) -> np.ndarray:
        count[0] += 1
        return matvec(torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64))).detach().cpu().double().numpy()

    lo = LinearOperator((n, n), matvec=mv, rmatvec=mv, dtype=np.float64)
    v0 = np.random.default_rng(seed).standard_normal(n)
    # ARPACK's tol is on ||A u - theta u|| relative to |theta| as well
    try:
        vals, vecs = eigsh(lo, k=k, which=which, tol=tol, v0=v0)
    except ArpackNoConvergence as e:
        vals, vecs = e.eigenvalues, e.eigenvectors
        if len(vals) < k:
            raise
    order = np.argsort(np.abs(vals) if which == "LM" else vals)[::-1]
    vals, vecs = vals[order], vecs[:, order]
    V = torch.from_numpy(np.ascontiguousarray(vecs))
    res = np.array([np.linalg.norm(mv(vecs[:, i]) - vals[i] * vecs[:, i]) for i in range(k)])
    converged = bool(np.all(res <= tol * np.maximum(np.abs(vals), 1e-300)))
    return EigenResult(vals.astype(np.float64), V, res, converged, count[0], "arpack")


def _check_k(k: int, n: int) -> int:
    return check_int("k", k, 1, n)


def top_eigenvalues(model: nn.Module, loss_fn: Callable, data: Iterable, k: int = 1, *, tol: float = 1e-6,
                    method: str = "lanczos", which: str = "LA", max_iter: int | None = None,
                    reduction: str | None = None, mode: str = "eval", seed: int = 0,
                    v0: torch.Tensor | None = None, hvp: str = "auto") -> EigenResult:
    """Top-``k`` eigenvalues of the full-batch Hessian (largest algebraic by default).

    Args:
      model, loss_fn, data, reduction, mode, hvp: as in :class:`HessianOperator`.
      k: how many (``1 <= k <= number of trainable parameters``).
      tol: relative residual for convergence. method: ``"lanczos"`` (torch, default) or ``"arpack"``.
      which: ``"LA"`` (largest algebraic) or ``"LM"`` (largest magnitude).

    >>> import torch
    >>> from torch import nn
    >>> torch.manual_seed(0) and None
    >>> model = nn.Linear(3, 1, bias=False)
    >>> X = torch.eye(3); y = torch.zeros(3, 1)
    >>> r = top_eigenvalues(model, nn.MSELoss(reduction="sum"), [(X, y)], k=1)
    >>> round(float(r.values[0]), 6), r.converged     # H = 2 X^T X = 2 I
    (2.0, True)
    """
    check_choice("method", method, ("lanczos", "arpack"))
    op = HessianOperator(model, loss_fn, data, reduction=reduction, mode=mode, hvp=hvp)
    k = _check_k(k, op.n)
    if method == "arpack":
        if k >= op.n:
            raise ValueError(f"k={k} is out of range for method='arpack': k must be < n={op.n} (use 'lanczos')")
        return _arpack(op.n, k, tol, which, seed, op.matvec)
    return lanczos(op.matvec, op.n, k, tol=tol, max_iter=max_iter, which=which, v0=v0,
                   device=op.device, dtype=op.dtype, seed=seed)


def sharpness(model: nn.Module, loss_fn: Callable, data: Iterable, **kwargs: Any) -> float:
    """``lambda_1(H)``, the largest Hessian eigenvalue of the full-batch loss (see :func:`top_eigenvalues`)."""
    return float(top_eigenvalues(model, loss_fn, data, k=1, **kwargs).values[0])


# --------------------------------------------------------------------------------------------
# Preconditioned sharpness


def adam_preconditioner(optimizer: torch.optim.Optimizer, model: nn.Module) -> torch.Tensor:
    """The diagonal ``P = sqrt(v_hat) + eps`` of an Adam/AdamW or RMSprop state, flat in model order.

    Adam: ``v_hat = v / (1 - beta2^t)`` (bias correction; ``v`` = ``exp_avg_sq``, or its running
    maximum ``max_exp_avg_sq`` with ``amsgrad=True``; ``t`` = ``step``).
    RMSprop: ``v_hat = v`` (``square_avg``; torch's RMSprop has no bias correction), minus the squared
    running mean of the gradient when ``centered``.

    Raises ``ValueError`` if a trainable parameter has no state yet (take one step first) or the
    optimizer is of another kind.
    """
    named = _trainable(model)
    group_of = {}
    for g in optimizer.param_groups:
        for p in g["params"]:
            group_of[id(p)] = g
    parts = []
    for name, p in named:
        st = optimizer.state.get(p, {})
        g = group_of.get(id(p))
        if g is None or not st:
            raise ValueError(f"parameter {name} has no optimizer state: the optimizer must have taken a step "
                             "on every trainable parameter of the model")
        if "exp_avg_sq" in st:
            step = float(st["step"])
            # with amsgrad torch divides by the running maximum of v, not by v itself
            v = st["max_exp_avg_sq"] if g.get("amsgrad", False) else st["exp_avg_sq"]
            v_hat = v / (1.0 - g["betas"][1] ** step)
        elif "square_avg" in st:
            v_hat = st["square_avg"]
            if g.get("centered", False):
                v_hat = v_hat - st["grad_avg"] ** 2
        else:
            raise ValueError(f"optimizer={type(optimizer).__name__} is not supported: optimizer must be "
                             "Adam, AdamW or RMSprop")
        parts.append((v_hat.sqrt() + g["eps"]).detach().reshape(-1))
    return torch.cat(parts)


def preconditioned_sharpness(model: nn.Module, loss_fn: Callable, data: Iterable, preconditioner: Any, *,
                             tol: float = 1e-6, reduction: str | None = None, mode: str = "eval",
                             seed: int = 0, max_iter: int | None = None, hvp: str = "auto") -> EigenResult:
    """``lambda_1(P^-1 H)`` as the top eigenvalue of ``P^-1/2 H P^-1/2`` (Cohen et al. 2022).

    ``P^-1 H`` is similar to the symmetric ``P^-1/2 H P^-1/2`` (``P`` diagonal, positive), so both
    have the same real spectrum and Lanczos applies to the symmetric form.

    Args:
      preconditioner: a flat positive tensor ``P`` (diagonal, model order), or a torch Adam/AdamW/
        RMSprop optimizer whose state gives ``P`` by :func:`adam_preconditioner`.
      the rest: as in :func:`top_eigenvalues`.
    Returns the :class:`EigenResult` of ``k = 1``; its vector ``u`` is an eigenvector of the symmetric
    form (``P^-1/2 u`` is one of ``P^-1 H``).
    """
    op = HessianOperator(model, loss_fn, data, reduction=reduction, mode=mode, hvp=hvp)
    if isinstance(preconditioner, torch.optim.Optimizer):
        P = adam_preconditioner(preconditioner, model)
    else:
        P = torch.as_tensor(preconditioner).reshape(-1)
    P = P.to(device=op.device, dtype=op.dtype)
    if P.numel() != op.n:
        raise ValueError(f"preconditioner has {P.numel()} entries: it must have {op.n} (one per trainable parameter)")
    if not bool((P > 0).all()) or not bool(torch.isfinite(P).all()):
        raise ValueError("preconditioner must be finite and positive in every entry")
    d = P.rsqrt()
    return lanczos(lambda u: d * op.matvec(d * u), op.n, 1, tol=tol, max_iter=max_iter, device=op.device,
                   dtype=op.dtype, seed=seed)
