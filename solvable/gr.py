"""Gradient regularization (GR), its finite-difference forms, and flooding.

GR minimises ``L(theta) + (gamma/2) ||grad L(theta)||^2``, whose gradient is

    g_GR = grad L + gamma H grad L,                                  H = Hess L(theta).

The finite-difference form replaces the Hessian-vector product by a difference of gradients:

    g_FD(eps) = (1 - gamma/eps) grad L(theta) + (gamma/eps) grad L(theta + eps grad L(theta)),

forward for ``eps > 0`` (an ascent step first), backward for ``eps < 0``; the central form uses
``(grad L(theta + eps g) - grad L(theta - eps g)) / (2 eps)`` for ``H g``.

The functions below take ``grad_fn`` acting on arrays of either backend (numpy or torch) with any
leading batch dimensions, so the same code runs batched on CPU and GPU.

References:
  Karakida, Takase, Hayase, Osawa, 2023. "Understanding Gradient Regularization in Deep
  Learning: Efficient Finite-Difference Computation and Implicit Bias." ICML, arXiv 2210.02720.
"""

from __future__ import annotations

from typing import Any, Callable

from .checks import check_range

__all__ = ["gr_gradient", "fd_gr_gradient", "central_fd_gr_gradient"]

Array = Any


def _check_eps(eps: float) -> float:
    e = float(eps)
    if e == 0.0 or e != e:
        raise ValueError(f"eps={eps!r} is out of range: eps must be a nonzero finite number")
    return check_range("eps", e)


def gr_gradient(grad_fn: Callable[[Array], Array], hvp_fn: Callable[[Array, Array], Array],
                theta: Array, gamma: float) -> Array:
    """Exact GR gradient ``grad L + gamma H grad L``.

    Args:
      grad_fn: ``theta -> grad L(theta)``.
      hvp_fn: ``(theta, v) -> H(theta) v``.
      theta: parameters, any leading batch dimensions.
      gamma: GR strength ``gamma >= 0``.
    """
    gamma = check_range("gamma", gamma, 0.0, None)
    g = grad_fn(theta)
    return g + gamma * hvp_fn(theta, g)


def fd_gr_gradient(grad_fn: Callable[[Array], Array], theta: Array, gamma: float, eps: float) -> Array:
    """Finite-difference GR gradient ``(1 - gamma/eps) g + (gamma/eps) grad L(theta + eps g)``.

    Args:
      grad_fn: ``theta -> grad L(theta)``.
      theta: parameters, any leading batch dimensions.
      gamma: GR strength ``gamma >= 0``.
      eps: step of the difference; ``eps > 0`` forward (ascent first), ``eps < 0`` backward.

    At ``eps = gamma`` this is ``grad L(theta + gamma grad L(theta))``, the unnormalised SAM
    gradient. Costs two gradients and no double backpropagation.
    """
    gamma = check_range("gamma", gamma, 0.0, None)
    eps = _check_eps(eps)
    g = grad_fn(theta)
    return (1.0 - gamma / eps) * g + (gamma / eps) * grad_fn(theta + eps * g)


def central_fd_gr_gradient(grad_fn: Callable[[Array], Array], theta: Array, gamma: float, eps: float) -> Array:
    """Central-difference GR gradient ``g + gamma (grad L(theta + eps g) - grad L(theta - eps g)) / (2 eps)``."""
    gamma = check_range("gamma", gamma, 0.0, None)
    eps = _check_eps(eps)
    g = grad_fn(theta)
    return g + (gamma / (2.0 * eps)) * (grad_fn(theta + eps * g) - grad_fn(theta - eps * g))
