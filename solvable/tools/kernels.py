"""Neural tangent kernels of any ``torch.nn.Module``: empirical (``torch.func``) and, for fully connected
ReLU networks, the infinite-width limit in closed form.

The empirical NTK of a network ``f(theta, x)`` with ``k`` outputs is the Gram matrix of its parameter
Jacobians,

    Theta(x, x')_{ab} = sum_p  d f_a(x) / d theta_p  *  d f_b(x') / d theta_p,

returned with shape ``(n1, n2, k, k)`` (``(n1, n2)`` when the model returns one number per example).
Two ways to compute it (:func:`empirical_ntk`, ``method=``):

- ``"jacobian"``: per-example Jacobians by ``vmap(jacrev(f))`` (memory ``(n1 + n2) k P``), then one
  contraction over parameters, cost ``n1 n2 k^2 P`` multiply-adds. Cheaper while the Jacobians fit in
  memory: the contraction is one large matrix product, and each Jacobian is built once.
- ``"implicit"``: never forms a Jacobian: for each example of ``x1`` and each output, one VJP gives the
  row ``J1^T e_a`` and one JVP pushes it through ``f(., x2)``; memory ``O(P)`` per vmapped slice, cost about
  ``n1 k`` (VJP + batched JVP over ``x2``) passes, i.e. ``n1 n2 k`` forward-pass equivalents. It is the
  choice when ``(n1 + n2) k P`` floats do not fit (large models, many outputs), and it is cheaper in
  FLOPs when a forward pass costs less than ``k P`` per example (e.g. weight sharing: convolutions).
- ``"auto"`` takes ``"jacobian"`` when the Jacobians take under ``max_jacobian_bytes`` (default 1 GiB),
  else ``"implicit"``.

:func:`dense_jacobian` (a Python loop of ``torch.autograd.grad`` over examples and outputs) and
:func:`ntk_from_jacobian` are the reference oracle the fast paths are tested against.

Infinite width (:func:`relu_ntk`, NTK parametrisation, :class:`NTKMLP`): with ``h^1 = W^1 x / sqrt(d)``,
``h^{l+1} = W^{l+1} sqrt(2/w) relu(h^l)`` for ``l = 1..L`` (``h^{L+1}`` the output), all ``W ~ N(0, 1)``, no
biases, the arc-cosine recursions are ``Sigma^1 = x.x'/d``,

    Sigma^{l+1} = sqrt(Sigma_xx Sigma_x'x') (sin t + (pi - t) cos t) / pi,   dSigma^{l+1} = (pi - t) / pi,
    Theta^{l+1} = Theta^l dSigma^{l+1} + Sigma^{l+1},    Theta^1 = Sigma^1,

with ``cos t = Sigma^l(x, x') / sqrt(Sigma^l(x, x) Sigma^l(x', x'))``; the empirical NTK of :class:`NTKMLP`
converges to ``Theta^{L+1}`` as the width ``w -> inf`` with fluctuations ``O(1/sqrt(w))``.

References:
  Jacot, Gabriel, Hongler 2018, arXiv 1806.07572 (the NTK and its infinite-width limit).
  Cho and Saul 2009, NeurIPS (arc-cosine kernels).
  Arora, Du, Hu, Li, Salakhutdinov, Wang 2019, arXiv 1904.11955 (exact NTK recursions, Sec. 3).
  Novak, Sohl-Dickstein, Schoenholz 2022, arXiv 2206.08720 (fast finite-width NTK: Jacobian
  contraction vs implicit NTK-vector products).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..checks import check_choice, check_int, check_positive

__all__ = ["empirical_ntk", "dense_jacobian", "ntk_from_jacobian", "relu_ntk", "NTKMLP", "kernel_distance",
           "parameter_count"]

METHODS = ("auto", "jacobian", "implicit")


def parameter_count(model) -> int:
    """Number of trainable scalars ``P`` of ``model``."""
    return sum(int(p.numel()) for p in model.parameters() if p.requires_grad)


def _functional(model):
    import torch
    from torch.func import functional_call

    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}
    buffers = {k: v.detach() for k, v in model.named_buffers()}

    def f(p, x):  # one example in, its outputs flattened to (k,)
        out = functional_call(model, (p, buffers), (x.unsqueeze(0),))
        return out.reshape(-1)

    return f, params, torch


def _check_inputs(x1, x2):
    if x1.ndim < 1 or x1.shape[0] < 1:
        raise ValueError(f"x1 has shape {tuple(x1.shape)}: x1 must be (n1, ...) with n1 >= 1")
    if x2 is not None and tuple(x2.shape[1:]) != tuple(x1.shape[1:]):
        raise ValueError(f"x2 has shape {tuple(x2.shape)} but x1 has {tuple(x1.shape)}: the example shapes must match")


def empirical_ntk(model, x1, x2=None, method: str = "auto", max_jacobian_bytes: float = 2**30):
    """Empirical NTK ``Theta(x1_i, x2_j)`` of ``model`` at its current parameters.

    Args:
      model: a ``torch.nn.Module`` mapping a batch ``(n, ...)`` to ``(n,)`` or ``(n, k)`` outputs.
      x1: inputs ``(n1, ...)``; x2: inputs ``(n2, ...)`` (default ``x1``).
      method: ``"jacobian"`` (contract per-example Jacobians), ``"implicit"`` (VJP then JVP, no
        Jacobian stored) or ``"auto"`` (Jacobian contraction while it needs under ``max_jacobian_bytes``);
        see the module docstring for which is cheaper where.
    Returns:
      a tensor ``(n1, n2, k, k)``, or ``(n1, n2)`` for models with one output per example.

    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)).double()
    >>> x = torch.randn(4, 3, dtype=torch.float64)
    >>> a, b = empirical_ntk(net, x, method="jacobian"), empirical_ntk(net, x, method="implicit")
    >>> a.shape, bool(torch.allclose(a, b))
    (torch.Size([4, 4, 2, 2]), True)
    """
    method = check_choice("method", method, METHODS)
    check_positive("max_jacobian_bytes", max_jacobian_bytes)
    _check_inputs(x1, x2)
    f, params, torch = _functional(model)
    from torch.func import jacrev, jvp, vjp, vmap

    same = x2 is None
    x2 = x1 if same else x2
    with torch.no_grad():
        probe = f(params, x1[0])
    k = int(probe.numel())
    scalar = model(x1[:1]).ndim == 1
    if method == "auto":
        P = sum(int(v.numel()) for v in params.values())
        nbytes = (x1.shape[0] + (0 if same else x2.shape[0])) * k * P * probe.element_size()
        method = "jacobian" if nbytes <= max_jacobian_bytes else "implicit"
    if method == "jacobian":
        def jac(x):
            j = vmap(jacrev(f), (None, 0))(params, x)
            return torch.cat([v.reshape(x.shape[0], k, -1) for v in j.values()], dim=-1)

        J1 = jac(x1)
        J2 = J1 if same else jac(x2)
        K = torch.einsum("iap,jbp->ijab", J1, J2)
    else:
        def row(xa):
            _, pull = vjp(lambda p: f(p, xa), params)

            def one(e):
                (tangent,) = pull(e)
                _, out = jvp(lambda p: vmap(f, (None, 0))(p, x2), (params,), (tangent,))
                return out  # (n2, k): sum_p J2[j, b, p] J1[a, p]

            return vmap(one)(torch.eye(k, dtype=probe.dtype, device=probe.device))  # (k_a, n2, k_b)

        K = vmap(row)(x1).permute(0, 2, 1, 3)
    return K[..., 0, 0] if scalar else K


def dense_jacobian(model, x):
    """Per-example Jacobians ``(n, k, P)`` by a Python loop of ``torch.autograd.grad`` (the reference)."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    rows = []
    for i in range(x.shape[0]):
        out = model(x[i:i + 1]).reshape(-1)
        per_out = []
        for a in range(out.numel()):
            g = torch.autograd.grad(out[a], params, retain_graph=True, allow_unused=True)
            per_out.append(torch.cat([(torch.zeros_like(p) if gi is None else gi).reshape(-1)
                                      for gi, p in zip(g, params)]))
        rows.append(torch.stack(per_out))
    return torch.stack(rows)


def ntk_from_jacobian(J1, J2=None):
    """``Theta_{ij,ab} = sum_p J1[i, a, p] J2[j, b, p]`` from dense Jacobians ``(n, k, P)``."""
    import torch

    return torch.einsum("iap,jbp->ijab", J1, J1 if J2 is None else J2)


def kernel_distance(K1, K2) -> float:
    """``1 - <K1, K2>_F / (||K1||_F ||K2||_F)``: 0 for kernels equal up to scale (Fort et al. 2020)."""
    a = np.asarray(K1.detach().cpu() if hasattr(K1, "detach") else K1, dtype=float).ravel()
    b = np.asarray(K2.detach().cpu() if hasattr(K2, "detach") else K2, dtype=float).ravel()
    return float(1.0 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def relu_ntk(x1: Any, x2: Any | None = None, depth: int = 1) -> np.ndarray:
    """Infinite-width NTK ``Theta^{L+1}(x1_i, x2_j)`` of :class:`NTKMLP` with ``depth = L`` hidden ReLU layers.

    >>> x = np.eye(2)
    >>> np.round(relu_ntk(x, depth=1), 6)  # orthogonal inputs: t = pi/2
    array([[1.      , 0.159155],
           [0.159155, 1.      ]])
    """
    depth = check_int("depth", depth, 1, None)
    x1 = np.asarray(x1, dtype=float)
    x2 = x1 if x2 is None else np.asarray(x2, dtype=float)
    if x1.ndim != 2 or x2.ndim != 2 or x1.shape[1] != x2.shape[1]:
        raise ValueError(f"x1 and x2 have shapes {x1.shape} and {x2.shape}: they must be (n, d) with the same d")
    d = x1.shape[1]
    s12 = x1 @ x2.T / d
    s11 = np.sum(x1 * x1, axis=1) / d
    s22 = np.sum(x2 * x2, axis=1) / d
    theta = s12.copy()
    for _ in range(depth):
        norm = np.sqrt(np.outer(s11, s22))
        c = np.clip(s12 / np.where(norm > 0, norm, 1.0), -1.0, 1.0)
        t = np.arccos(c)
        s12 = norm * (np.sin(t) + (math.pi - t) * c) / math.pi
        theta = theta * (math.pi - t) / math.pi + s12
        # the diagonal: t = 0, so Sigma(x, x) is unchanged by a ReLU layer with the factor 2
    return theta


def NTKMLP(d_in: int, width: int, depth: int = 1, out: int = 1, dtype=None):
    """A fully connected ReLU network in NTK parametrisation (weights ``N(0, 1)``, layer scale
    ``sqrt(c / fan_in)``, ``c = 1`` on the input layer and 2 after a ReLU, no biases); its NTK tends to
    :func:`relu_ntk` as ``width -> inf``. Returns a ``torch.nn.Module`` with ``out`` outputs
    (one output: shape ``(n,)``)."""
    import torch

    d_in, width = check_int("d_in", d_in, 1, None), check_int("width", width, 1, None)
    depth, out = check_int("depth", depth, 1, None), check_int("out", out, 1, None)

    class _NTKMLP(torch.nn.Module):
        def __init__(self):
            super().__init__()
            sizes = [d_in] + [width] * depth + [out]
            self.weights = torch.nn.ParameterList(
                [torch.nn.Parameter(torch.randn(b, a, dtype=dtype or torch.get_default_dtype()))
                 for a, b in zip(sizes[:-1], sizes[1:])])
            self.scales = [math.sqrt((1.0 if i == 0 else 2.0) / a) for i, a in enumerate(sizes[:-1])]

        def forward(self, x):
            h = x
            for i, (W, s) in enumerate(zip(self.weights, self.scales)):
                if i > 0:
                    h = torch.relu(h)
                h = s * h @ W.T
            return h[:, 0] if out == 1 else h

    return _NTKMLP()
