"""Gradient regularization (GR), its finite-difference forms, and flooding.

GR minimises ``L(theta) + (gamma/2) ||grad L(theta)||^2``, whose gradient is

    g_GR = grad L + gamma H grad L,                                  H = Hess L(theta).

The finite-difference form replaces the Hessian-vector product by a difference of gradients:

    g_FD(eps) = (1 - gamma/eps) grad L(theta) + (gamma/eps) grad L(theta + eps grad L(theta)),

forward for ``eps > 0`` (an ascent step first), backward for ``eps < 0``; the central form uses
``(grad L(theta + eps g) - grad L(theta - eps g)) / (2 eps)`` for ``H g``. With ``g = grad L``
and the Taylor expansion of ``grad L`` along ``g`` (derived in ``proofs_check/check_gr.py``),

    g_FD - g_GR = (gamma eps / 2) D^3L[g, g] + (gamma eps^2 / 6) D^4L[g, g, g] + O(gamma eps^3),
    g_CD - g_GR = (gamma eps^2 / 6) D^4L[g, g, g] + O(gamma eps^4),

so the error is of order 1 in ``eps`` for forward and backward differences and of order 2 for the
central one. At ``eps = gamma`` the forward form is exactly ``grad L(theta + gamma grad L)``, the
gradient of unnormalised SAM. Flooding descends ``|L - b| + b``: below the flood level ``b`` it
ascends, above it descends; one ascent step and one descent step of size ``eta`` move ``theta`` by
``-eta (grad L(theta + eta g) - g) = -eta^2 H g + O(eta^3)`` (derived here), a gradient step of
size ``eta^2`` on the regulariser ``(1/2)||grad L||^2`` with the forward finite difference at
``eps = eta``; a descent step then an ascent step give the backward difference (``eps = -eta``).

Contents, top to bottom:

- the gradients on arrays (numpy or torch, any leading batch axes): :func:`gr_gradient`,
  :func:`fd_gr_gradient`, :func:`central_fd_gr_gradient`, :func:`sam_gradient`,
  :func:`flooding_gradient`, :func:`flooded_gd`;
- a solvable test model, :class:`QuarticModel` (quadratic plus quartic, batched, with its exact
  gradient, Hessian-vector product and third and fourth derivatives), and :func:`quartic_problem`;
- closed forms: :func:`fd_error_order`, :func:`fd_error_leading`, :func:`flooding_residual_order`,
  :func:`flooding_two_step_leading`;
- the same methods on any ``torch.nn.Module``: :func:`loss_gradient`, :func:`exact_gr_grads`,
  :func:`fd_gr_grads`, :func:`central_fd_gr_grads`, :func:`flooding_grads`, :func:`gr_step`,
  :func:`train`;
- the claims ``gr.finite_difference_error``, ``gr.fd_is_unnormalized_sam``, ``gr.flooding_is_fd_gr``.

References:
  Karakida, Takase, Hayase, Osawa, 2023. "Understanding Gradient Regularization in Deep
  Learning: Efficient Finite-Difference Computation and Implicit Bias." ICML, arXiv 2210.02720.
  Ishida, Yamane, Sakai, Niu, Sugiyama, 2020. "Do We Need Zero Training Loss After Achieving Zero
  Training Error?" (flooding), ICML, arXiv 2002.08709.
  Foret, Kleiner, Mobahi, Neyshabur, 2021. "Sharpness-Aware Minimization for Efficiently Improving
  Generalization." ICLR, arXiv 2010.01412.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
from array_api_compat import array_namespace

from ..backend import Backend, get_backend
from ..checks import check_choice, check_finite_array, check_int, check_range
from ..claims import Claim, Measurement, Params, Tolerance, max_abs_error, param, register
from ..stats import loglog_slope

__all__ = [
    "gr_gradient",
    "fd_gr_gradient",
    "central_fd_gr_gradient",
    "sam_gradient",
    "flooding_gradient",
    "flooded_gd",
    "QuarticModel",
    "quartic_problem",
    "fd_error_order",
    "fd_error_leading",
    "sam_gap_order",
    "flooding_displacement_order",
    "flooding_residual_order",
    "flooding_two_step_leading",
    "sam_gap_linear_coefficient",
    "sam_gap_curves",
    "GRGrads",
    "loss_gradient",
    "exact_gr_grads",
    "fd_gr_grads",
    "central_fd_gr_grads",
    "flooding_grads",
    "gr_step",
    "train",
    "method_grads",
    "mlp_problem",
    "mse_loss",
    "fd_error_curves",
    "flooding_residual_curves",
]

Array = Any

# --------------------------------------------------------------------------------------------
# Validation


def _check_gamma(gamma: float) -> float:
    return check_range("gamma", gamma, 0.0, None)


def _check_eps(eps: float) -> float:
    rng = "a nonzero finite number, in (-inf, 0) or (0, inf)"
    try:
        e = float(eps)
    except (TypeError, ValueError):
        raise ValueError(f"eps={eps!r} is not a number: eps must be {rng}") from None
    if e == 0.0 or not math.isfinite(e):
        raise ValueError(f"eps={eps!r} is out of range: eps must be {rng}")
    return e


def _check_eps_batch(eps: Any) -> Any:
    """A scalar eps (see :func:`_check_eps`) or an array of them, one per run, shaped to broadcast
    against ``theta`` (e.g. ``batch + (1,)``); every entry nonzero and finite."""
    if hasattr(eps, "shape") and getattr(eps, "ndim", 0) > 0:
        check_finite_array("eps", eps)
        xp = array_namespace(eps)
        if bool(xp.any(eps == 0)):
            raise ValueError("eps contains 0: every eps must be a nonzero finite number, in (-inf, 0) or (0, inf)")
        return eps
    return _check_eps(eps)


# --------------------------------------------------------------------------------------------
# The gradients, on arrays of either backend (any leading batch axes)


def gr_gradient(grad_fn: Callable[[Array], Array], hvp_fn: Callable[[Array, Array], Array],
                theta: Array, gamma: float) -> Array:
    """Exact GR gradient ``g_GR = grad L + gamma H grad L``.

    The gradient of ``L + (gamma/2) ||grad L||^2``, with the Hessian-vector product given exactly.

    Args:
      grad_fn: ``theta -> grad L(theta)``.
      hvp_fn: ``(theta, v) -> H(theta) v``.
      theta: parameters, any leading batch dimensions.
      gamma: GR strength ``gamma >= 0``.

    >>> import numpy as np
    >>> A = np.diag([1.0, 2.0])
    >>> gr_gradient(lambda t: t @ A, lambda t, v: v @ A, np.array([1.0, 1.0]), 0.5).tolist()
    [1.5, 4.0]
    """
    gamma = _check_gamma(gamma)
    g = grad_fn(theta)
    return g + gamma * hvp_fn(theta, g)


def fd_gr_gradient(grad_fn: Callable[[Array], Array], theta: Array, gamma: float, eps: float) -> Array:
    """Finite-difference GR gradient ``(1 - gamma/eps) g + (gamma/eps) grad L(theta + eps g)``.

    ``g = grad L(theta)``. Equal to ``g + gamma (grad L(theta + eps g) - g) / eps``, the exact GR
    gradient with ``H g`` replaced by a one-sided difference quotient; the error is
    ``(gamma eps / 2) D^3L[g, g] + O(gamma eps^2)``.

    Args:
      grad_fn: ``theta -> grad L(theta)``.
      theta: parameters, any leading batch dimensions.
      gamma: GR strength ``gamma >= 0``.
      eps: step of the difference; ``eps > 0`` forward (ascent first), ``eps < 0`` backward; a
        number, or an array broadcasting against ``theta`` (one step per run, e.g. shape
        ``batch + (1,)``).

    At ``eps = gamma`` the first coefficient is exactly 0 and the second exactly 1, so the result
    is ``grad L(theta + gamma grad L(theta))``, the unnormalised SAM gradient, bit for bit. Costs
    two gradients and no double backpropagation.

    >>> import numpy as np
    >>> fd_gr_gradient(lambda t: t ** 3, np.array([1.0]), 0.1, 0.1).tolist() == [1.1 ** 3]
    True
    """
    gamma = _check_gamma(gamma)
    eps = _check_eps_batch(eps)
    g = grad_fn(theta)
    return (1.0 - gamma / eps) * g + (gamma / eps) * grad_fn(theta + eps * g)


def central_fd_gr_gradient(grad_fn: Callable[[Array], Array], theta: Array, gamma: float, eps: float) -> Array:
    """Central-difference GR gradient ``g + gamma (grad L(theta + eps g) - grad L(theta - eps g)) / (2 eps)``.

    Three gradients; the odd Taylor terms cancel, leaving the error
    ``(gamma eps^2 / 6) D^4L[g, g, g] + O(gamma eps^4)``. Symbols as in :func:`fd_gr_gradient`.
    """
    gamma = _check_gamma(gamma)
    eps = _check_eps(eps)
    g = grad_fn(theta)
    return g + (gamma / (2.0 * eps)) * (grad_fn(theta + eps * g) - grad_fn(theta - eps * g))


def sam_gradient(grad_fn: Callable[[Array], Array], theta: Array, rho: float) -> Array:
    """Unnormalised SAM gradient ``grad L(theta + rho grad L(theta))`` (ascent radius ``rho >= 0``).

    Foret et al. (2021, arXiv 2010.01412) normalise the ascent direction; Karakida et al. (2023)
    note that without the normalisation this is forward finite-difference GR at ``eps = gamma = rho``.
    """
    rho = check_range("rho", rho, 0.0, None)
    return grad_fn(theta + rho * grad_fn(theta))


def _check_flood_level(b: Any) -> None:
    """``b`` a finite number, or an array of finite numbers (one flood level per run)."""
    if hasattr(b, "shape") and getattr(b, "ndim", 0) > 0:
        check_finite_array("b", b)
    else:
        check_range("b", b)


def flooding_gradient(loss: Array, grad: Array, b: float) -> Array:
    """Gradient of the flooded loss ``|L - b| + b``: ``sign(L - b) grad L``.

    Args:
      loss: ``L(theta)``, shape ``batch``.
      grad: ``grad L(theta)``, shape ``batch + (d,)``.
      b: flood level, a number or an array of shape ``batch``.

    At ``L = b`` the subgradient 0 is used. A non-finite ``b`` raises ``ValueError``.
    """
    _check_flood_level(b)
    xp = array_namespace(loss, grad)
    return xp.sign(loss - b)[..., None] * grad


def flooded_gd(loss_fn: Callable[[Array], Array], grad_fn: Callable[[Array], Array], theta0: Array,
               b: Array | float, lr: float, steps: int) -> dict[str, Any]:
    """Gradient descent on the flooded loss: ``theta <- theta - lr sign(L(theta) - b) grad L(theta)``.

    Args:
      loss_fn: ``theta -> L(theta)`` (shape ``batch``); grad_fn: ``theta -> grad L(theta)``.
      theta0: start, shape ``batch + (d,)``. b: flood level (number or shape ``batch``).
      lr: step size ``eta > 0``. steps: number of steps.

    Returns a dict with ``theta`` (``steps + 1`` iterates, stacked on a new leading axis),
    ``signs`` (``sign(L - b)`` at each step), ``diverged`` and ``diverged_step`` (the first step
    whose iterate is not finite; the run stops there).
    """
    lr = check_range("lr", lr, 0.0, None, low_open=True)
    steps = check_int("steps", steps, 0)
    _check_flood_level(b)
    xp = array_namespace(theta0)
    theta = theta0
    thetas, signs = [theta0], []
    for k in range(steps):
        s = xp.sign(loss_fn(theta) - b)
        theta = theta - lr * s[..., None] * grad_fn(theta)
        signs.append(s)
        thetas.append(theta)
        if not bool(xp.all(xp.isfinite(theta))):
            return {"theta": xp.stack(thetas), "signs": xp.stack(signs), "diverged": True, "diverged_step": k + 1}
    sig = xp.stack(signs) if signs else xp.zeros((0,) + tuple(theta0.shape[:-1]), dtype=theta0.dtype)
    return {"theta": xp.stack(thetas), "signs": sig, "diverged": False, "diverged_step": None}


# --------------------------------------------------------------------------------------------
# A solvable test model: quadratic plus quartic, batched over runs


@dataclass(frozen=True)
class QuarticModel:
    """``L(theta) = (1/2) theta^T A theta - b^T theta + (kappa/4) sum_j theta_j^4``, batched.

    Every derivative is in closed form and the Taylor series of ``grad L`` terminates:

    - ``grad L = A theta - b + kappa theta^3`` (powers element-wise);
    - ``H v = A v + 3 kappa theta^2 v``;
    - ``D^3L[u, v] = 6 kappa theta u v``;  ``D^4L[u, v, w] = 6 kappa u v w``;  ``D^5 L = 0``.

    So the forward finite-difference error is exactly ``gamma (eps/2 D^3L[g,g] + eps^2/6
    D^4L[g,g,g])`` and the central one exactly ``gamma eps^2/6 D^4L[g,g,g]``: the higher-order
    contamination of a fitted order is known, which is why the claims use this model.

    Attributes:
      A: symmetric matrices, shape ``(runs, d, d)``. b: shape ``(runs, d)``.
      kappa: quartic coefficient ``kappa``.
    All methods take ``theta`` of shape ``(runs, d)`` on the arrays' backend.
    """

    A: Array
    b: Array
    kappa: float

    def _Av(self, v: Array) -> Array:
        xp = array_namespace(v)
        return xp.matmul(self.A, v[..., None])[..., 0]

    def loss(self, theta: Array) -> Array:
        xp = array_namespace(theta)
        return (0.5 * xp.sum(theta * self._Av(theta), axis=-1) - xp.sum(self.b * theta, axis=-1)
                + 0.25 * self.kappa * xp.sum(theta ** 4, axis=-1))

    def grad(self, theta: Array) -> Array:
        return self._Av(theta) - self.b + self.kappa * theta ** 3

    def hvp(self, theta: Array, v: Array) -> Array:
        return self._Av(v) + 3.0 * self.kappa * theta ** 2 * v

    def third(self, theta: Array, u: Array, v: Array) -> Array:
        """``D^3L(theta)[u, v]`` as a vector."""
        return 6.0 * self.kappa * theta * u * v

    def fourth(self, u: Array, v: Array, w: Array) -> Array:
        """``D^4L[u, v, w]`` as a vector (constant in theta)."""
        return 6.0 * self.kappa * u * v * w

    def grad_scale(self, theta: Array) -> Array:
        """``|A theta| + |b| + kappa |theta^3|`` (2-norms, per run): the size of the terms summed
        in ``grad L``, which bounds its absolute round-off (relative to machine epsilon)."""
        xp = array_namespace(theta)
        nrm = xp.linalg.vector_norm
        return (nrm(self._Av(xp.abs(theta)), axis=-1) + nrm(self.b, axis=-1)
                + self.kappa * nrm(theta ** 3, axis=-1))


def quartic_problem(backend: Backend | str, seed: int, runs: int = 16, d: int = 8,
                    kappa: float = 0.5) -> tuple[QuarticModel, Array]:
    """Random instances of :class:`QuarticModel` and a start ``theta0`` for each, on ``backend``.

    ``A = G G^T / d + I/2`` with ``G`` standard normal (spectrum in about ``[0.5, 4.5]``),
    ``b`` and ``theta0`` standard normal. The numbers are drawn in float64 by numpy from ``seed``
    and moved to the backend, so numpy and torch (CPU or CUDA) see the same instances.

    Args:
      backend: a :class:`~solvable.backend.Backend` or its name.
      seed: the instances' seed. runs: number of instances (the batch axis). d: dimension.
      kappa: quartic coefficient ``kappa > 0``.
    """
    be = get_backend(backend) if isinstance(backend, str) else backend
    seed = check_int("seed", seed, 0, 2**63 - 1)
    runs = check_int("runs", runs, 1)
    d = check_int("d", d, 1)
    kappa = check_range("kappa", kappa, 0.0, None)
    rng = np.random.default_rng(seed)
    G = rng.standard_normal((runs, d, d))
    A = G @ np.swapaxes(G, 1, 2) / d + 0.5 * np.eye(d)
    b = rng.standard_normal((runs, d))
    theta0 = rng.standard_normal((runs, d))
    return QuarticModel(be.asarray(A), be.asarray(b), kappa), be.asarray(theta0)


# --------------------------------------------------------------------------------------------
# Closed forms

_FD_KINDS = ("forward", "backward", "central")


def fd_error_order(kind: str) -> int:
    """Order ``p`` of ``||g_FD - g_GR|| = O(gamma |eps|^p)``: 1 forward, 1 backward, 2 central.

    Derived from the Taylor expansion of ``grad L(theta + eps g)`` in ``eps`` (proofs_check):
    a one-sided difference quotient keeps the ``eps D^3L[g,g]/2`` term, the central one cancels
    all odd terms.
    """
    check_choice("kind", kind, _FD_KINDS)
    return 2 if kind == "central" else 1


def fd_error_leading(kind: str, gamma: float, eps: float, d3_gg: Array, d4_ggg: Array) -> Array:
    """Leading term of ``g_FD - g_GR``.

    ``(gamma eps / 2) D^3L[g, g]`` for forward and backward differences (``eps < 0`` backward),
    ``(gamma eps^2 / 6) D^4L[g, g, g]`` for the central one.

    Args:
      kind: ``"forward"``, ``"backward"`` or ``"central"``. gamma, eps: as in :func:`fd_gr_gradient`.
      d3_gg: ``D^3L(theta)[g, g]``; d4_ggg: ``D^4L(theta)[g, g, g]`` (vectors), ``g = grad L(theta)``.
    """
    check_choice("kind", kind, _FD_KINDS)
    gamma = _check_gamma(gamma)
    eps = _check_eps(eps)
    if kind == "central":
        return (gamma * eps ** 2 / 6.0) * d4_ggg
    return (gamma * eps / 2.0) * d3_gg


def sam_gap_order() -> int:
    """Order in ``a = 1 - gamma/eps`` of ``g_FD(eps) - SAM`` near ``eps = gamma``: 1, a linear law whose
    zero ``a = 0`` is the identity ``g_FD(gamma) = grad L(theta + gamma grad L)`` (derived in
    proofs_check: the law's value at ``a = 0`` vanishes and its slope there is ``C0``, see
    :func:`sam_gap_linear_coefficient`)."""
    return 1


def flooding_displacement_order() -> int:
    """Order in ``eta`` of the two-step displacement ``theta_2 - theta_0`` of flooded GD across the flood
    level (ascent then descent, or the reverse): 2, the order of :func:`flooding_two_step_leading`
    (the ``eta`` terms of the two steps cancel: no step on ``L`` itself; derived in proofs_check)."""
    return 2


def flooding_residual_order() -> int:
    """Order in ``eta`` of ``theta_2 - theta_0 + eta^2 H g`` after an ascent and a descent step
    (either order) of flooded GD: 3 (derived in proofs_check)."""
    return 3


def flooding_two_step_leading(hg: Array, eta: float) -> Array:
    """Leading two-step flooding displacement ``-eta^2 H g`` (``hg = H(theta_0) grad L(theta_0)``).

    Ascent then descent: ``theta_2 - theta_0 = -eta^2 H g - (eta^3/2) D^3L[g,g] + O(eta^4)``;
    descent then ascent: ``-eta^2 H g + (eta^3/2) D^3L[g,g] + O(eta^4)`` (derived in proofs_check).
    """
    eta = check_range("eta", eta, 0.0, None, low_open=True)
    return -(eta ** 2) * hg


# --------------------------------------------------------------------------------------------
# The same methods on any torch model


class GRGrads(NamedTuple):
    """``loss``: the loss at the current parameters (a 0-d tensor, detached); ``grads``: one
    tensor per trainable parameter, in ``model.parameters()`` order."""

    loss: Any
    grads: list


def _trainable(model) -> list:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no parameter with requires_grad=True: it must have at least one")
    return params


def _check_batch(batch: Sequence) -> tuple:
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise ValueError(f"batch is a {type(batch).__name__}: it must be a pair (inputs, targets)")
    for name, t in zip(("inputs", "targets"), batch):
        if hasattr(t, "is_floating_point") and t.is_floating_point():
            check_finite_array(f"batch {name}", t)
    return tuple(batch)


def _loss(model, loss_fn, batch):
    x, y = batch
    return loss_fn(model(x), y)


def loss_gradient(model, loss_fn: Callable, batch: Sequence) -> GRGrads:
    """``L = loss_fn(model(inputs), targets)`` and ``grad L`` over the trainable parameters.

    Args:
      model: a ``torch.nn.Module`` (its device and dtype are used throughout).
      loss_fn: ``(outputs, targets) -> scalar`` (e.g. ``torch.nn.functional.mse_loss``).
      batch: ``(inputs, targets)``, finite, on the model's device.
    """
    import torch

    batch = _check_batch(batch)
    params = _trainable(model)
    loss = _loss(model, loss_fn, batch)
    grads = torch.autograd.grad(loss, params)
    return GRGrads(loss.detach(), list(grads))


def _grads_at(model, loss_fn, batch, params: list, shift: list, eps: float) -> list:
    """``grad L(theta + eps * shift)`` without touching the model's parameters.

    torch.func.functional_call swaps in the shifted tensors for one call, so the model is never
    mutated (safe on exceptions, no copy-back round-off), at the cost of one parameter copy.
    """
    import torch
    from torch.func import functional_call

    names = [n for n, p in model.named_parameters() if p.requires_grad]
    shifted = torch._foreach_add([p.detach() for p in params], shift, alpha=eps)  # one fused pass
    for t in shifted:
        t.requires_grad_(True)
    x, y = batch
    out = functional_call(model, dict(zip(names, shifted)), (x,), strict=False)
    return list(torch.autograd.grad(loss_fn(out, y), shifted))


def exact_gr_grads(model, loss_fn: Callable, batch: Sequence, gamma: float, *,
                   method: str = "double_backprop") -> GRGrads:
    """Exact GR gradient ``grad L + gamma H grad L`` of a torch model.

    Args:
      model, loss_fn, batch: as in :func:`loss_gradient`. gamma: GR strength ``gamma >= 0``.
      method: ``"double_backprop"`` (default) differentiates ``<grad L, stop_grad(g)>`` through
        the graph of the first backward pass; ``"forward_over_reverse"`` takes ``H g`` as a
        ``torch.func.jvp`` of ``torch.func.grad``.

    Double backprop is the default because it measured cheaper: on a 1.07M-parameter tanh MLP
    (batch 128, one CPU thread) one gradient took 8.8 ms, double backprop 20 ms and
    forward-over-reverse 42 ms; in matrix-product FLOPs 0.61 G, 1.43 G and 2.46 G (the jvp carries a
    tangent through the whole gradient computation, and the first gradient has to be computed
    separately to serve as the tangent). benchmarks/bench_gr.py
    re-measures all three. With torch 2.14, ``torch.nn.functional.mse_loss`` fails under
    forward-over-reverse ("ZeroTensors are immutable"); ``((out - y) ** 2).mean()`` works.
    """
    import torch

    gamma = _check_gamma(gamma)
    check_choice("method", method, ("double_backprop", "forward_over_reverse"))
    batch = _check_batch(batch)
    params = _trainable(model)
    if method == "double_backprop":
        loss = _loss(model, loss_fn, batch)
        g = torch.autograd.grad(loss, params, create_graph=True)
        # Gradient blocks that do not depend on the parameters (a loss linear in them) carry no
        # graph; they add nothing to H g, and parameters unused by the rest get zeros.
        live = [i for i, gi in enumerate(g) if gi.requires_grad]
        if live:
            hg = list(torch.autograd.grad([g[i] for i in live], params, grad_outputs=[g[i].detach() for i in live],
                                          allow_unused=True, materialize_grads=True))
        else:
            hg = [torch.zeros_like(p) for p in params]
        torch._foreach_mul_(hg, gamma)  # in place on the fresh Hessian-vector products
        torch._foreach_add_(hg, [gi.detach() for gi in g])
        return GRGrads(loss.detach(), hg)
    from torch.func import functional_call, grad, jvp

    names = [n for n, p in model.named_parameters() if p.requires_grad]
    x, y = batch

    def f(ps):
        return loss_fn(functional_call(model, dict(zip(names, ps)), (x,), strict=False), y)

    primal = tuple(p.detach() for p in params)
    loss, g = torch.func.grad_and_value(f)(primal)[::-1]
    _, hg = jvp(grad(f), (primal,), (tuple(g),))
    return GRGrads(loss.detach(), [gi + gamma * hi for gi, hi in zip(g, hg)])


def fd_gr_grads(model, loss_fn: Callable, batch: Sequence, gamma: float, eps: float) -> GRGrads:
    """Finite-difference GR gradient of a torch model: two gradients, no double backprop.

    ``(1 - gamma/eps) grad L(theta) + (gamma/eps) grad L(theta + eps grad L(theta))``;
    ``eps > 0`` forward (ascent first), ``eps < 0`` backward; ``eps = gamma`` gives unnormalised
    SAM. Args as in :func:`exact_gr_grads`, plus ``eps != 0``. Modules with running statistics
    (batch norm in training mode) see two forward passes.
    """
    import torch

    gamma = _check_gamma(gamma)
    eps = _check_eps(eps)
    loss, g = loss_gradient(model, loss_fn, batch)
    g2 = _grads_at(model, loss_fn, batch, _trainable(model), g, eps)
    # in place on the fresh second gradients: (gamma/eps) g2 + (1 - gamma/eps) g
    torch._foreach_mul_(g2, gamma / eps)
    torch._foreach_add_(g2, g, alpha=1.0 - gamma / eps)
    return GRGrads(loss, g2)


def central_fd_gr_grads(model, loss_fn: Callable, batch: Sequence, gamma: float, eps: float) -> GRGrads:
    """Central-difference GR gradient of a torch model (three gradients):
    ``g + gamma (grad L(theta + eps g) - grad L(theta - eps g)) / (2 eps)``."""
    gamma = _check_gamma(gamma)
    eps = _check_eps(eps)
    loss, g = loss_gradient(model, loss_fn, batch)
    params = _trainable(model)
    gp = _grads_at(model, loss_fn, batch, params, g, eps)
    gm = _grads_at(model, loss_fn, batch, params, g, -eps)
    c = gamma / (2.0 * eps)
    return GRGrads(loss, [gi + c * (a - m) for gi, a, m in zip(g, gp, gm)])


def flooding_grads(model, loss_fn: Callable, batch: Sequence, b: float) -> GRGrads:
    """Gradient of the flooded loss ``|L - b| + b``: ``sign(L - b) grad L`` (flood level ``b``)."""
    b = check_range("b", b)
    loss, g = loss_gradient(model, loss_fn, batch)
    s = (loss - b).sign()
    return GRGrads(loss, [s * gi for gi in g])


_METHODS = ("gd", "gr", "gr_forward_over_reverse", "fd_gr", "central_fd_gr", "flooding")


def method_grads(model, loss_fn: Callable, batch: Sequence, method: str, *, gamma: float = 0.0,
                 eps: float | None = None, b: float | None = None) -> GRGrads:
    """The update direction of ``method``: ``"gd"`` (``grad L``), ``"gr"`` (exact, double
    backprop), ``"gr_forward_over_reverse"``, ``"fd_gr"`` (``eps`` > 0 forward, < 0 backward),
    ``"central_fd_gr"``, ``"flooding"`` (level ``b``)."""
    check_choice("method", method, _METHODS)
    if method == "gd":
        return loss_gradient(model, loss_fn, batch)
    if method == "gr":
        return exact_gr_grads(model, loss_fn, batch, gamma)
    if method == "gr_forward_over_reverse":
        return exact_gr_grads(model, loss_fn, batch, gamma, method="forward_over_reverse")
    if method == "flooding":
        if b is None:
            raise ValueError("b=None is not allowed: method='flooding' needs a finite flood level b")
        return flooding_grads(model, loss_fn, batch, b)
    if eps is None:
        raise ValueError(f"eps=None is not allowed: method={method!r} needs a nonzero finite eps")
    fn = fd_gr_grads if method == "fd_gr" else central_fd_gr_grads
    return fn(model, loss_fn, batch, gamma, eps)


def gr_step(model, optimizer, loss_fn: Callable, batch: Sequence, method: str = "fd_gr", *,
            gamma: float = 0.0, eps: float | None = None, b: float | None = None):
    """One optimizer step along the direction of ``method`` (see :func:`method_grads`).

    Writes the direction into each trainable parameter's ``.grad`` and calls
    ``optimizer.step()``; returns the loss before the step (a detached 0-d tensor).

    Example::

        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        loss = gr_step(model, opt, torch.nn.functional.mse_loss, (x, y), "fd_gr", gamma=0.05, eps=0.05)
    """
    out = method_grads(model, loss_fn, batch, method, gamma=gamma, eps=eps, b=b)
    for p, gi in zip(_trainable(model), out.grads):
        p.grad = gi
    optimizer.step()
    return out.loss


def train(model, loss_fn: Callable, batch: Sequence, method: str = "gd", *, lr: float = 0.1,
          steps: int = 100, gamma: float = 0.0, eps: float | None = None,
          b: float | None = None) -> dict[str, Any]:
    """Full-batch training of a torch model by SGD along ``method`` (see :func:`method_grads`).

    Returns ``losses`` (numpy, the loss before each step and after the last), ``grad_norms``
    (``||grad L||`` at the same points), ``diverged`` and ``diverged_step`` (the first step whose
    loss is not finite; training stops there). The model is trained in place.
    """
    import torch

    lr = check_range("lr", lr, 0.0, None, low_open=True)
    steps = check_int("steps", steps, 0)
    opt = torch.optim.SGD(_trainable(model), lr=lr)
    losses, gnorms = [], []
    for k in range(steps + 1):
        loss, g = loss_gradient(model, loss_fn, batch)
        losses.append(float(loss))
        gnorms.append(float(torch.sqrt(sum((gi * gi).sum() for gi in g))))
        if not (math.isfinite(losses[-1]) and math.isfinite(gnorms[-1])):
            return {"losses": np.array(losses), "grad_norms": np.array(gnorms), "diverged": True,
                    "diverged_step": k}
        if k < steps:
            gr_step(model, opt, loss_fn, batch, method, gamma=gamma, eps=eps, b=b)
    return {"losses": np.array(losses), "grad_norms": np.array(gnorms), "diverged": False,
            "diverged_step": None}


def mlp_problem(seed: int = 0, n: int = 64, widths: Sequence[int] = (4, 32, 1), *, device: str = "cpu",
                dtype: str = "float64") -> tuple[Any, tuple]:
    """A small tanh MLP and a teacher-student regression batch, for GR experiments on torch.

    Inputs ``x ~ N(0, I)`` (``n x widths[0]``); targets from a random teacher MLP of the same shape
    plus noise of standard deviation 0.1. Returns ``(model, (x, y))`` on ``device`` in ``dtype``;
    use with ``mse_loss`` below. The same seed gives the same model and data.
    """
    import torch

    seed = check_int("seed", seed, 0, 2**63 - 1)
    n = check_int("n", n, 1)
    check_choice("dtype", dtype, ("float32", "float64"))
    widths = [check_int("widths", w, 1) for w in widths]
    if len(widths) < 2:
        raise ValueError(f"widths={tuple(widths)!r} is too short: widths must list at least 2 layer sizes")
    gen = torch.Generator().manual_seed(seed)

    def net():
        layers = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            lin = torch.nn.Linear(a, b, dtype=getattr(torch, dtype))
            with torch.no_grad():
                lin.weight.copy_(torch.randn(lin.weight.shape, generator=gen, dtype=lin.weight.dtype) / math.sqrt(a))
                lin.bias.zero_()
            layers.append(lin)
            if i < len(widths) - 2:
                layers.append(torch.nn.Tanh())
        return torch.nn.Sequential(*layers).to(device)

    teacher, model = net(), net()
    x = torch.randn((n, widths[0]), generator=gen, dtype=getattr(torch, dtype)).to(device)
    with torch.no_grad():
        y = teacher(x) + 0.1 * torch.randn((n, widths[-1]), generator=gen, dtype=x.dtype).to(device)
    return model, (x, y)


def mse_loss(out, y):
    """``mean((out - y)^2)``, written out because ``torch.nn.functional.mse_loss`` fails under
    forward-over-reverse differentiation in torch 2.14."""
    return ((out - y) ** 2).mean()


# --------------------------------------------------------------------------------------------
# Simulations behind the claims

_GRID_POINTS = 13
# A point enters a fitted slope only where the next Taylor term is at most this fraction of the
# leading one (then the local slope is within rho (1 + rho) / (1 - rho)^2 = 0.058 of the order) ...
_RHO_MAX = 0.05
# ... and where the round-off bound is at most this fraction of the measured error (float32 on a
# GPU drops the smallest steps; float64 keeps them all at the defaults).
_ROUNDOFF_MAX = 0.01
_MIN_POINTS = 4


def _grid(step_max: float, decades: float) -> np.ndarray:
    return step_max * np.logspace(-decades, 0.0, _GRID_POINTS)


def _local_slope_bound(rho: np.ndarray) -> np.ndarray:
    """Bound on ``|d log||a e + c e^2|| / d log e - 1|`` where ``rho = e ||c|| / ||a|| < 1``."""
    rho = np.asarray(rho, dtype=float)
    with np.errstate(divide="ignore"):
        return np.where(rho < 1, rho * (1 + rho) / (1 - rho) ** 2, np.inf)


def _fit_runs(steps: np.ndarray, err: np.ndarray, rel_round: np.ndarray, rho: np.ndarray,
              valid: np.ndarray | None = None) -> dict[str, Any]:
    """Fit the log-log slope of ``err`` (runs x points) in ``steps`` for each run, on the points
    where round-off and the next Taylor term are small (and ``valid``, if given), and bound the
    slope's deviation.

    The least-squares slope of sorted points is a weighted mean (non-negative weights) of the
    secant slopes, each a mean of local slopes, so ``_local_slope_bound(max rho)`` bounds its
    contamination; a relative perturbation ``r`` of each ``err`` moves it by at most
    ``log(1/(1 - r)) * sum|x - mean x| / sum (x - mean x)^2`` (``x = log steps``).
    """
    slopes, stderrs, bounds, npts = [], [], [], []
    valid = np.ones(err.shape, dtype=bool) if valid is None else valid
    for e, r, q, ok in zip(err, rel_round, rho, valid):
        keep = (r <= _ROUNDOFF_MAX) & (q <= _RHO_MAX) & (e > 0) & ok
        npts.append(int(keep.sum()))
        if keep.sum() < 2:
            slopes.append(np.nan), stderrs.append(np.nan), bounds.append(np.inf)
            continue
        fit = loglog_slope(steps[keep], e[keep])
        x = np.log(steps[keep])
        dx = x - x.mean()
        round_shift = -np.log1p(-r[keep].max()) * np.abs(dx).sum() / (dx ** 2).sum()
        slopes.append(fit.slope)
        stderrs.append(fit.stderr)
        bounds.append(float(_local_slope_bound(q[keep].max()) + round_shift))
    return {"slopes": np.array(slopes), "stderr": np.array(stderrs), "bound": np.array(bounds),
            "points": np.array(npts)}


def _next_term_ratio(model: QuarticModel, theta: Array, g: Array, backend: Backend) -> np.ndarray:
    """``||D^4L[g,g,g]|| / (3 ||D^3L[g,g]||)`` per run: the second error term over the first per
    unit step; ``inf`` where ``D^3L[g,g] = 0`` (e.g. ``kappa = 0``), where no order can be fitted."""
    nrm = backend.xp.linalg.vector_norm
    num = backend.to_numpy(nrm(model.fourth(g, g, g), axis=-1))
    den = 3.0 * backend.to_numpy(nrm(model.third(theta, g, g), axis=-1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.inf)


def fd_error_curves(model: QuarticModel, theta: Array, gamma: float, eps_grid: Sequence[float],
                    backend: Backend) -> dict[str, Any]:
    """``||g_FD(eps) - g_GR||`` per run over ``eps_grid`` for the forward (``+eps``), backward
    (``-eps``) and central differences, with a round-off bound and the next-term ratio ``rho``.

    ``g_GR`` uses the model's exact Hessian-vector product; the round-off bound of each error is
    ``roundoff(4 d) (1 + gamma/|eps|) max grad_scale / ||error||`` (the difference quotient
    multiplies the gradients' absolute round-off by ``gamma/|eps|``); ``rho = |eps| ||D^4L[g,g,g]||
    / (3 ||D^3L[g,g]||)`` is the ratio of the second to the first error term (zero for central:
    the quartic's fifth derivative vanishes). Returns numpy arrays of shape ``(runs, len(grid))``.
    """
    xp = backend.xp
    nrm = xp.linalg.vector_norm
    d = int(theta.shape[-1])
    g = model.grad(theta)
    g_gr = gr_gradient(model.grad, model.hvp, theta, gamma)
    ratio = _next_term_ratio(model, theta, g, backend)
    scale0 = backend.to_numpy(model.grad_scale(theta))
    out: dict[str, Any] = {"eps": np.asarray(eps_grid, dtype=float)}
    for kind in _FD_KINDS:
        errs, rels, rhos = [], [], []
        for e in eps_grid:
            step = -e if kind == "backward" else e
            if kind == "central":
                gf = central_fd_gr_gradient(model.grad, theta, gamma, step)
                scale = np.maximum(np.maximum(scale0, backend.to_numpy(model.grad_scale(theta + step * g))),
                                   backend.to_numpy(model.grad_scale(theta - step * g)))
            else:
                gf = fd_gr_gradient(model.grad, theta, gamma, step)
                scale = np.maximum(scale0, backend.to_numpy(model.grad_scale(theta + step * g)))
            err = backend.to_numpy(nrm(gf - g_gr, axis=-1))
            errs.append(err)
            with np.errstate(divide="ignore"):
                rels.append(backend.roundoff(4 * d) * (1.0 + gamma / e) * scale / err)
            rhos.append(np.zeros_like(err) if kind == "central" else e * ratio)
        out[kind] = {"err": np.stack(errs, 1), "rel_roundoff": np.stack(rels, 1), "rho": np.stack(rhos, 1)}
    return out


def flooding_residual_curves(model: QuarticModel, theta0: Array, eta_grid: Sequence[float],
                             backend: Backend) -> dict[str, Any]:
    """Two steps of flooded GD per run and per ``eta``, starting just below the flood level
    (``"ascent_first"``) or just above it (``"descent_first"``).

    The flood level is put half-way to the first-order change of the loss:
    ``b = L(theta0) +- eta ||g0||^2 / 2``, so that ``L(theta0) < b < L(theta1)`` (resp. the
    reverse) for small ``eta`` and flooding alternates; the returned ``signs`` record what
    actually happened. ``displacement`` is ``||theta2 - theta0||`` (with ``disp_rel_roundoff`` and
    ``disp_rho = eta ||D^3L[g,g]|| / (2 ||H g||)``, the eta^3 term over the eta^2 one), ``residual``
    ``||theta2 - theta0 + eta^2 H g0||`` (exact HVP), ``fd_gap`` the largest relative gap between
    ``theta2 - theta0`` and ``-eps^2 (g_FD(1, eps) - g0)`` with ``eps = +eta`` (ascent first) or
    ``-eta`` (descent first). Round-off bound and ``rho`` as in :func:`fd_error_curves`.
    """
    xp = backend.xp
    nrm = xp.linalg.vector_norm
    d = int(theta0.shape[-1])
    g0 = model.grad(theta0)
    hg = model.hvp(theta0, g0)
    L0 = model.loss(theta0)
    gg = xp.sum(g0 * g0, axis=-1)
    ratio = _next_term_ratio(model, theta0, g0, backend)
    with np.errstate(divide="ignore", invalid="ignore"):
        hg_n = backend.to_numpy(nrm(hg, axis=-1))
        disp_ratio = np.where(hg_n > 0, backend.to_numpy(nrm(model.third(theta0, g0, g0), axis=-1))
                              / (2.0 * np.where(hg_n > 0, hg_n, 1.0)), np.inf)
    th_norm = backend.to_numpy(nrm(theta0, axis=-1))
    out: dict[str, Any] = {"eta": np.asarray(eta_grid, dtype=float)}
    for order, sgn in (("ascent_first", 1.0), ("descent_first", -1.0)):
        res, rels, rhos, signs, gaps, gap_bounds, divs = [], [], [], [], [], [], []
        disps, disp_rels, disp_rhos = [], [], []
        for eta in eta_grid:
            b = L0 + sgn * 0.5 * eta * gg
            run = flooded_gd(model.loss, model.grad, theta0, b, eta, 2)
            divs.append(run["diverged"])
            th2 = run["theta"][-1]
            disp = th2 - theta0
            r = backend.to_numpy(nrm(disp + eta ** 2 * hg, axis=-1))
            res.append(r)
            signs.append(backend.to_numpy(run["signs"]).T)
            scale = np.maximum(backend.to_numpy(model.grad_scale(theta0)),
                               backend.to_numpy(model.grad_scale(run["theta"][1])))
            with np.errstate(divide="ignore"):
                rels.append(backend.roundoff(4 * d) * (th_norm + 2 * eta * scale) / r)
            rhos.append(eta * ratio)
            step = sgn * eta
            fd_disp = -(step ** 2) * (fd_gr_gradient(model.grad, theta0, 1.0, step) - g0)
            disp_norm = backend.to_numpy(nrm(disp, axis=-1))
            gaps.append(backend.to_numpy(nrm(disp - fd_disp, axis=-1)) / disp_norm)
            # both sides carry the round-off of theta-sized sums and of eta * gradient-sized terms
            gap_bounds.append(backend.roundoff(4 * d) * (th_norm + 2 * eta * scale) / disp_norm)
            disps.append(disp_norm)
            disp_rels.append(gap_bounds[-1])
            disp_rhos.append(eta * disp_ratio)
        out[order] = {"residual": np.stack(res, 1), "rel_roundoff": np.stack(rels, 1), "rho": np.stack(rhos, 1),
                      "displacement": np.stack(disps, 1), "disp_rel_roundoff": np.stack(disp_rels, 1),
                      "disp_rho": np.stack(disp_rhos, 1),
                      "signs": np.stack(signs, 1), "fd_gap": np.stack(gaps, 1),
                      "fd_gap_bound": np.stack(gap_bounds, 1), "diverged": any(divs)}
    return out


# --------------------------------------------------------------------------------------------
# Claims


@dataclass(frozen=True)
class FDErrorParams(Params):
    gamma: float = param(0.1, low=0, low_open=True, high=100.0, domain=(1e-3, 1.0), log=True, doc="GR strength gamma")
    eps_max: float = param(0.1, low=0, low_open=True, high=10.0, domain=(0.03, 0.3), log=True,
                           doc="largest |eps| of the grid")
    decades: float = param(3.0, low=1.0, high=6.0, domain=(2.5, 3.5),
                           doc="the grid spans eps_max 10^-decades to eps_max")
    d: int = param(8, low=1, high=64, integer=True, domain=(2, 32), doc="dimension d of theta")
    kappa: float = param(0.5, low=0, low_open=True, high=100.0, domain=(0.1, 2.0), log=True,
                         doc="quartic coefficient kappa")
    runs: int = param(16, low=1, high=256, integer=True, domain=(4, 32), doc="random instances (batch)")


def _float64(backend: Backend) -> Backend:
    """The same backend and device in float64.

    Orders are measured in float64 on every device: in float32 the usable window between the
    round-off of a difference quotient (relative size ~ u/eps^2, u = 1.2e-7) and the next Taylor
    term (~ eps) is under a decade on this model, too short for a fitted slope.
    """
    return Backend(backend.name, backend.device, "float64")


def _measure_fd_error(p: FDErrorParams, backend: Backend, seed: int) -> Measurement:
    backend = _float64(backend)
    model, theta = quartic_problem(backend, seed, p.runs, p.d, p.kappa)
    curves = fd_error_curves(model, theta, p.gamma, _grid(p.eps_max, p.decades), backend)
    fits = {k: _fit_runs(curves["eps"], curves[k]["err"], curves[k]["rel_roundoff"], curves[k]["rho"])
            for k in _FD_KINDS}
    value = [float(np.mean(fits[k]["slopes"])) for k in _FD_KINDS]
    return Measurement(
        value=value,
        stderr=[float(np.sqrt(np.mean(fits[k]["stderr"] ** 2))) for k in _FD_KINDS],
        checks={"enough_points": all(int(fits[k]["points"].min()) >= _MIN_POINTS for k in _FD_KINDS)},
        info={"bound": [float(np.max(3 * fits[k]["stderr"] + fits[k]["bound"])) for k in _FD_KINDS],
              "points_min": [int(fits[k]["points"].min()) for k in _FD_KINDS],
              "slope_min": [float(np.min(fits[k]["slopes"])) for k in _FD_KINDS],
              "slope_max": [float(np.max(fits[k]["slopes"])) for k in _FD_KINDS]},
    )


def _tol_fd_error(p: FDErrorParams, m: Measurement, backend: Backend) -> Tolerance:
    b = m.info.get("bound", [math.inf])
    tol = float(np.max(b)) if np.all(np.isfinite(b)) else math.inf
    return Tolerance(tol, (
        "per run: 3 x the fit's stderr + the Taylor contamination rho(1+rho)/(1-rho)^2 of the next"
        f" term (points kept where rho <= {_RHO_MAX}; rho = 0 for central since D^5L = 0)"
        f" + the slope shift of a <= {_ROUNDOFF_MAX:.0%} round-off bound; the max over runs and kinds"))


register(Claim(
    id="gr.finite_difference_error",
    statement=("g_FD(eps) - g_GR = O(gamma |eps|^p) with p = 1 for forward (eps > 0) and backward (eps < 0)"
               " differences and p = 2 for the central difference; measured: the fitted log-log slope of"
               " ||g_FD - g_GR|| in |eps| on a quadratic-plus-quartic loss (mean over instances)."),
    reference=("Karakida, Takase, Hayase, Osawa 2023, ICML, arXiv 2210.02720 (finite-difference GR); orders"
               " derived here from the Taylor expansion of grad L(theta + eps g)"),
    params=FDErrorParams,
    predicted=lambda p: [float(fd_error_order(k)) for k in _FD_KINDS],
    measured=_measure_fd_error,
    tolerance=_tol_fd_error,
    error=max_abs_error,
    sweep="eps_max", sweep_values=(0.03, 0.1, 0.3),
    summary=lambda v: float(np.asarray(v, dtype=float)[0]),
    summary_label="order of the forward difference",
    mutants={
        "one-sided differences second order (as if centred)": lambda p: [2.0, 2.0, 2.0],
        "central difference first order (odd terms not cancelled)": lambda p: [1.0, 1.0, 1.0],
        "central difference third order (next odd power)": lambda p: [1.0, 1.0, 3.0],
    },
    closed_forms=("fd_error_order",),
))


@dataclass(frozen=True)
class SAMParams(Params):
    gamma: float = param(0.1, low=0, low_open=True, high=100.0, domain=(1e-3, 1.0), log=True,
                         doc="GR strength gamma = eps = SAM radius rho")
    d: int = param(8, low=1, high=64, integer=True, domain=(2, 32), doc="dimension d of theta")
    kappa: float = param(0.5, low=0, high=100.0, domain=(0.1, 2.0), log=True, doc="quartic coefficient kappa")
    runs: int = param(16, low=1, high=256, integer=True, domain=(1, 32), doc="random instances (batch)")
    instance: int = param(0, low=0, high=2**31 - 1, integer=True, domain=(0, 10_000),
                          doc="seed of the instances (A, b, theta), shared by closed form and simulation")


def sam_gap_linear_coefficient(grad_fn: Callable[[Array], Array], hvp_fn: Callable[[Array, Array], Array],
                               theta: Array, gamma: float) -> Array:
    """Coefficient ``C0`` of the linear law ``g_FD(eps) - SAM = a C0 + O(a^2)``, ``a = 1 - gamma/eps``.

    ``C0 = g - grad L(theta + gamma g) + gamma H(theta + gamma g) g`` with ``g = grad L(theta)``
    (derived in proofs_check/check_gr.py from the definition of ``g_FD``: writing ``eps = gamma/(1 - a)``,
    ``g_FD - SAM = a (g - grad L(theta + eps g)) + grad L(theta + eps g) - grad L(theta + gamma g)``).
    On the quadratic-plus-quartic model the law is exact with two more terms,
    ``a^2 gamma^2 / (2 (1 - a)) D^3L'[g, g] + a^3 gamma^3 / (6 (1 - a)^2) D^4L[g, g, g]`` (``'``: at
    ``theta + gamma g``). The identity at ``eps = gamma`` is the zero ``a = 0`` of this law.
    """
    gamma = _check_gamma(gamma)
    g = grad_fn(theta)
    tp = theta + gamma * g
    return g - grad_fn(tp) + gamma * hvp_fn(tp, g)


# 1 - gamma/eps on the grid: 3 decades below 3e-2. At small gamma C0 ~ gamma^2 D^3L/2 is tiny, so
# a < ~1e-4 drowns in round-off (gamma = 1e-3, kappa = 0.1 kept only 3 points with 4 decades below
# 1e-2); the next term is ~a times the linear one there (rho is measured per point and points
# above _RHO_MAX are dropped), so 3e-2 stays usable.
_SAM_A_MAX = 3e-2
_SAM_DECADES = 3.0


def sam_gap_curves(model: QuarticModel, theta: Array, gamma: float, a_grid: Sequence[float],
                   backend: Backend) -> dict[str, Any]:
    """``||g_FD(eps) - SAM||`` per run at ``eps = gamma / (1 - a)`` for ``a`` in ``a_grid``, with the
    coefficient actually applied (``a = 1 - gamma/eps`` recomputed in floating point), a round-off
    bound relative to each gap, and ``rho``: the higher terms of the law over the linear one, with the
    cubic term counted twice (its local log-slope is 3, the quadratic's 2), so that
    ``_local_slope_bound(rho)`` bounds the deviation of the local slope from 1. Also the gap at
    ``eps = gamma`` itself (``identity_gap``, relative to ``||SAM||``) and the condition number
    ``cond`` that multiplies its round-off."""
    xp = backend.xp
    nrm = xp.linalg.vector_norm
    d = int(theta.shape[-1])
    g = model.grad(theta)
    tp = theta + gamma * g
    sam = sam_gradient(model.grad, theta, gamma)
    c0 = backend.to_numpy(nrm(sam_gap_linear_coefficient(model.grad, model.hvp, theta, gamma), axis=-1))
    d3 = backend.to_numpy(nrm(model.third(tp, g, g), axis=-1))
    d4 = backend.to_numpy(nrm(model.fourth(g, g, g), axis=-1))
    scale = np.maximum(backend.to_numpy(model.grad_scale(theta)), backend.to_numpy(model.grad_scale(tp)))
    h_norm = backend.to_numpy(xp.sqrt(xp.sum(model.A * model.A, axis=(-2, -1)))
                              + 3 * model.kappa * xp.max(tp * tp, axis=-1))
    th_size = backend.to_numpy(nrm(theta, axis=-1) + gamma * nrm(g, axis=-1))
    gaps, rels, rhos, a_used = [], [], [], []
    for a in a_grid:
        eps = gamma / (1.0 - a)
        a_eff = 1.0 - gamma / eps
        gap = backend.to_numpy(nrm(fd_gr_gradient(model.grad, theta, gamma, eps) - sam, axis=-1))
        gaps.append(gap)
        a_used.append(abs(a_eff))
        with np.errstate(divide="ignore", invalid="ignore"):
            # gradients' round-off (size of their summed terms) times (1 + gamma/eps), plus the
            # round-off of the shifted points times |H|
            rels.append(backend.roundoff(4 * d) * ((2 + gamma / eps) * scale + 2 * h_norm * th_size) / gap)
            higher = (a_eff ** 2 * gamma ** 2 / (2 * abs(1 - a_eff)) * d3
                      + 2 * abs(a_eff) ** 3 * gamma ** 3 / (6 * (1 - a_eff) ** 2) * d4)
            rhos.append(np.where(c0 > 0, higher / (abs(a_eff) * np.where(c0 > 0, c0, 1.0)), np.inf))
    ident = backend.to_numpy(nrm(fd_gr_gradient(model.grad, theta, gamma, gamma) - sam, axis=-1))
    sam_n = backend.to_numpy(nrm(sam, axis=-1))
    cond = (scale + h_norm * th_size) / sam_n
    return {"a": np.asarray(a_used), "gap": np.stack(gaps, 1), "rel_roundoff": np.stack(rels, 1),
            "rho": np.stack(rhos, 1), "identity_gap": ident / sam_n, "cond": cond}


def _measure_sam(p: SAMParams, backend: Backend, seed: int) -> Measurement:
    # The instances come from p.instance; orders are fitted in float64 (see _float64).
    backend = _float64(backend)
    model, theta = quartic_problem(backend, p.instance, p.runs, p.d, p.kappa)
    a_grid = _SAM_A_MAX * np.logspace(-_SAM_DECADES, 0.0, _GRID_POINTS)
    c = sam_gap_curves(model, theta, p.gamma, a_grid, backend)
    # x axis: the coefficient 1 - gamma/eps as actually computed in floating point
    f = _fit_runs(c["a"], c["gap"], c["rel_roundoff"], c["rho"])
    slopes, stderrs, bounds, npts = f["slopes"], f["stderr"], f["bound"], f["points"]
    # identity at eps = gamma: zero up to round-off (4d operations' worth, times the condition number)
    id_tol = backend.roundoff(4 * p.d) * c["cond"]
    return Measurement(
        value=[float(np.mean(slopes))],
        stderr=[float(np.sqrt(np.mean(stderrs ** 2)))],
        checks={"identity_at_eps_equal_gamma": bool(np.all(c["identity_gap"] <= id_tol)),
                "enough_points": int(min(npts)) >= _MIN_POINTS},
        info={"bound": float(np.max(3 * stderrs + bounds)), "points_min": int(min(npts)),
              "slope_min": float(np.min(slopes)), "slope_max": float(np.max(slopes)),
              "identity_gap_max": float(np.max(c["identity_gap"])), "identity_tolerance_min": float(np.min(id_tol)),
              "a_range": [float(a_grid[0]), float(a_grid[-1])]})


def _tol_sam(p: SAMParams, m: Measurement, backend: Backend) -> Tolerance:
    b = m.info.get("bound", math.inf)
    tol = float(b) if np.isfinite(b) else math.inf
    return Tolerance(tol, (
        "per run: 3 x the fit's stderr + the contamination rho(1+rho)/(1-rho)^2 of the a^2 and a^3 terms of"
        f" the law (points kept where rho <= {_RHO_MAX}) + the slope shift of a <= {_ROUNDOFF_MAX:.0%} round-off"
        " bound; the max over runs. The identity at eps = gamma is a check: gap <= roundoff(4d) x condition"))


register(Claim(
    id="gr.fd_is_unnormalized_sam",
    statement=("At eps = gamma the forward finite-difference GR gradient is exactly the unnormalised SAM"
               " gradient grad L(theta + gamma grad L(theta)) (to round-off), and this is the zero of a linear law:"
               " g_FD(eps) - SAM = (1 - gamma/eps) (g - grad L(theta + gamma g) + gamma H(theta + gamma g) g)"
               " + O((1 - gamma/eps)^2). Measured: the fitted log-log slope of ||g_FD(eps) - SAM|| in |1 - gamma/eps|"
               " (predicted 1, mean over instances) for eps near gamma, plus the identity at eps = gamma (a check);"
               " on a batch of quadratic-plus-quartic losses."),
    reference=("Karakida, Takase, Hayase, Osawa 2023, arXiv 2210.02720 (F-GR at eps = gamma and SAM);"
               " Foret et al. 2021, arXiv 2010.01412 (SAM); linear law derived in proofs_check/check_gr.py"),
    params=SAMParams,
    predicted=lambda p: [float(sam_gap_order())],
    measured=_measure_sam,
    tolerance=_tol_sam,
    error=max_abs_error,
    sweep="gamma", sweep_values=(0.01, 0.1, 1.0),
    summary=lambda v: float(np.asarray(v, dtype=float)[0]),
    summary_label="order of ||g_FD - SAM|| in |1 - gamma/eps|",
    mutants={
        "quadratic contact at eps = gamma (gap ~ (1 - gamma/eps)^2)": lambda p: [2.0],
        "SAM radius eps/2, so no zero at eps = gamma (gap -> constant)": lambda p: [0.0],
    },
    closed_forms=("sam_gap_order",),
))


@dataclass(frozen=True)
class FloodingParams(Params):
    eta_max: float = param(0.1, low=0, low_open=True, high=10.0, domain=(0.03, 0.3), log=True,
                           doc="largest step size eta of the grid")
    decades: float = param(3.0, low=1.0, high=6.0, domain=(2.5, 3.5),
                           doc="the grid spans eta_max 10^-decades to eta_max")
    d: int = param(8, low=1, high=64, integer=True, domain=(2, 32), doc="dimension d of theta")
    kappa: float = param(0.5, low=0, low_open=True, high=100.0, domain=(0.1, 2.0), log=True,
                         doc="quartic coefficient kappa")
    runs: int = param(16, low=1, high=256, integer=True, domain=(4, 32), doc="random instances (batch)")


def _measure_flooding(p: FloodingParams, backend: Backend, seed: int) -> Measurement:
    backend = _float64(backend)  # see _float64: the residual is O(eta^3), round-off O(u)
    model, theta0 = quartic_problem(backend, seed, p.runs, p.d, p.kappa)
    curves = flooding_residual_curves(model, theta0, _grid(p.eta_max, p.decades), backend)
    orders = ("ascent_first", "descent_first")
    if any(curves[o]["diverged"] for o in orders):
        return Measurement(value=[math.nan] * 4, diverged=True, diverged_step=2)
    # The claim is about steps that straddle the flood level: a point (run, eta) enters only if
    # flooding did alternate there (ascent then descent, or descent then ascent). For large eta the
    # descent step overshoots the level (eta g'Hg > |g|^2) and the point is left out and counted.
    expected = {"ascent_first": (-1.0, 1.0), "descent_first": (1.0, -1.0)}
    alt = {o: np.all(curves[o]["signs"] == np.asarray(expected[o]), axis=-1) for o in orders}
    fits = {o: _fit_runs(curves["eta"], curves[o]["residual"], curves[o]["rel_roundoff"], curves[o]["rho"], alt[o])
            for o in orders}
    # the displacement itself, whose order needs no leading term: a step on L would make it O(eta)
    dfits = {o: _fit_runs(curves["eta"], curves[o]["displacement"], curves[o]["disp_rel_roundoff"],
                          curves[o]["disp_rho"], alt[o]) for o in orders}
    all_fits = [dfits[o] for o in orders] + [fits[o] for o in orders]
    return Measurement(
        value=[float(np.mean(f["slopes"])) for f in all_fits],
        stderr=[float(np.sqrt(np.mean(f["stderr"] ** 2))) for f in all_fits],
        checks={
            "alternates_at_smallest_eta": all(bool(np.all(alt[o][:, 0])) for o in orders),
            "enough_points": all(int(f["points"].min()) >= _MIN_POINTS for f in all_fits),
            # theta2 - theta0 = -eps^2 (g_FD(1, eps) - g0) exactly where flooding alternated; the
            # two sides differ by round-off.
            "equals_fd_step": all(bool(np.all((curves[o]["fd_gap"] <= curves[o]["fd_gap_bound"])[alt[o]]))
                                  for o in orders),
        },
        info={"bound": [float(np.max(3 * f["stderr"] + f["bound"])) for f in all_fits],
              "points_min": [int(f["points"].min()) for f in all_fits],
              "not_alternating": [int((~alt[o]).sum()) for o in orders],
              "fd_gap_max": [float(np.max(curves[o]["fd_gap"][alt[o]], initial=0.0)) for o in orders]},
    )


def _tol_flooding(p: FloodingParams, m: Measurement, backend: Backend) -> Tolerance:
    b = m.info.get("bound", [math.inf])
    tol = float(np.max(b)) if np.all(np.isfinite(b)) else math.inf
    return Tolerance(tol, (
        "per run: 3 x the fit's stderr + the Taylor contamination rho(1+rho)/(1-rho)^2 of the next term"
        f" (eta^3 over eta^2 for the displacement, eta^4 over eta^3 for the residual; points kept where"
        f" rho <= {_RHO_MAX} and flooding alternated) + the slope shift of a <= {_ROUNDOFF_MAX:.0%} round-off"
        " bound; the max over runs, both orders and both fits"))


register(Claim(
    id="gr.flooding_is_fd_gr",
    statement=("Near the flood level b, an ascent step then a descent step of flooded GD (|L - b| + b) with step"
               " eta give theta2 - theta0 = -eta (grad L(theta0 + eta g) - g) = -eta^2 H g - (eta^3/2) D^3L[g,g]"
               " + O(eta^4): a step of size eta^2 on the regulariser ||grad L||^2/2 computed by forward finite"
               " difference with eps = eta, with no step on L itself (so 'one GR step' holds for the penalty"
               " term only); descent then ascent gives the backward difference, eps = -eta. Measured: the fitted"
               " log-log slopes in eta of ||theta2 - theta0|| (2: no step on L) and of ||theta2 - theta0 + eta^2 H g||"
               " (3), each [ascent first, descent first], with the exact FD identity as a check."),
    reference=("Karakida, Takase, Hayase, Osawa 2023, arXiv 2210.02720 (flooding performs finite-difference GR);"
               " Ishida et al. 2020, arXiv 2002.08709 (flooding); two-step displacement derived here"),
    params=FloodingParams,
    predicted=lambda p: [float(flooding_displacement_order())] * 2 + [float(flooding_residual_order())] * 2,
    measured=_measure_flooding,
    tolerance=_tol_flooding,
    error=max_abs_error,
    sweep="eta_max", sweep_values=(0.03, 0.1, 0.3),
    summary=lambda v: float(np.asarray(v, dtype=float)[2]),
    summary_label="order of the two-step residual (ascent first)",
    # A wrong two-step displacement shows in the order of the displacement itself, or in the order of
    # what is left after removing -eta^2 H g (the residual is defined against the statement's term):
    mutants={
        "one full GR step (theta2 - theta0 = -eta g - eta^2 H g): displacement and residual O(eta)":
            lambda p: [1.0, 1.0, 1.0, 1.0],
        "half the penalty step (-eta^2 H g / 2, gamma = eta/2): residual O(eta^2)": lambda p: [2.0, 2.0, 2.0, 2.0],
        "the eta^3 terms cancel between the two steps: residual O(eta^4)": lambda p: [2.0, 2.0, 4.0, 4.0],
    },
    closed_forms=("flooding_displacement_order", "flooding_residual_order"),
))
