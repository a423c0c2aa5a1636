"""Loss-landscape geometry: BatchNorm's gradient identity, filter-normalized plots, linear mode
connectivity, BatchNorm and smoothness along the training path, and a least-squares proxy of the
load-temperature taxonomy (the last three are documented at their sections below).

**BatchNorm, one unit.** Over a batch of ``m`` pre-activations ``y`` (one unit), BatchNorm is

    mu = (1/m) sum_i y_i,   sigma^2 = (1/m) sum_i (y_i - mu)^2 + eps,
    yhat = (y - mu)/sigma,  z = gamma yhat + beta.

For a loss with gradient ``g = dL/dz`` at the output, differentiating the definition gives
(``proofs_check/check_landscape.py``)

    dL/dy = (gamma/sigma) (g - (1/m) <1, g> 1 - (1/m) <g, yhat> yhat),

and, because ``1`` and ``yhat`` are orthogonal with ``||yhat||^2 = m (1 - eps/sigma^2)``,

    ||dL/dy||^2 = (gamma^2/sigma^2) (||g||^2 - (1/m) <1, g>^2 - (1/m)(1 + eps/sigma^2) <g, yhat>^2).

At ``eps = 0`` this is Santurkar et al.'s Theorem 4.1 with equality: coefficients
``(c_0, c_1, c_2) = (1, 1/m, 1/m)`` (:func:`bn_gradient_coefficients`). The paper prints
``1/sqrt(m)`` in front of ``<g, yhat>^2`` (arXiv 1805.11604v5, Thm. 4.1); with ``yhat`` normalised as
above (``||yhat||^2 = m``) the coefficient is ``1/m``, and ``1/sqrt(m)`` would make the stated bound
false (it subtracts more than the exact identity does). With ``eps > 0`` the inequality is strict.

**Filter-normalized plots.** For a ReLU network, ``(W_i, b_i, W_{i+1}) -> (c W_i, c b_i, W_{i+1}/c)``
(``c > 0``) leaves the function unchanged, as does rescaling each filter ``j`` of a layer followed
by BatchNorm (batch statistics) by its own ``c_j > 0``. A filter-normalized direction is rescaled
with the filter (``d_j ||c theta_j|| / ||d_j|| = c d_j ||theta_j|| / ||d_j||``), so every point of the
plot is the rescaled image of the original point and the plot is unchanged; a raw direction is not
rescaled and the plot changes. A per-neuron ReLU rescaling (row ``j`` of ``W_i`` by ``c_j``, column ``j``
of ``W_{i+1}`` by ``1/c_j``) is not covered: the columns of ``W_{i+1}`` are not its filters.

References:
  Santurkar, Tsipras, Ilyas, Madry, 2018. "How does batch normalization help optimization?"
  NeurIPS, arXiv 1805.11604 (Thm. 4.1).
  Ioffe, Szegedy, 2015. "Batch normalization." ICML, arXiv 1502.03167 (the definition).
  Li, Xu, Taylor, Studer, Goldstein, 2018. "Visualizing the loss landscape of neural nets."
  NeurIPS, arXiv 1712.09913 (sec. 4, filter normalization and scale invariance).
  Dinh, Pascanu, Bengio, Bengio, 2017. "Sharp minima can generalize for deep nets." ICML,
  arXiv 1703.04933 (the rescaling symmetry).
  Frankle, Dziugaite, Roy, Carbin, 2020. "Linear mode connectivity and the lottery ticket
  hypothesis." ICML, arXiv 1912.05671 (the barrier).
  Entezari, Sedghi, Saukh, Neyshabur, 2022. "The role of permutation invariance in linear mode
  connectivity of neural networks." ICLR, arXiv 2110.06296 (barrier vs width).
  Arora, Li, Lyu, 2019. "Theoretical analysis of auto rate-tuning by batch normalization." ICLR,
  arXiv 1812.03981 (scale invariance: gradient /c, Hessian /c^2).
  Yang, Hodgkinson, Theisen, Zou, Gonzalez, Ramchandran, Mahoney, 2021. "Taxonomizing local versus
  global structure in neural network loss landscapes." NeurIPS, arXiv 2107.11228.
  Hutchinson, 1990. "A stochastic estimator of the trace of the influence matrix." (trace estimator)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backend import Backend
from ..checks import check_choice, check_int, check_range
from ..claims import Claim, Measurement, Params, Tolerance, max_abs_error, param, register, relative_errors

__all__ = [
    "bn_gradient_coefficients",
    "bn_gradient_norm_sq",
    "bn_backward",
    "fit_bn_coefficients",
    "filter_plot_change",
    "relu_mlp",
    "rescale",
    "plot_change",
    "SYMMETRIES",
]


# --------------------------------------------------------------------------------------------
# Closed forms


def bn_gradient_coefficients(m: int, eps_ratio: float = 0.0) -> np.ndarray:
    """``(c_0, c_1, c_2) = (1, 1/m, (1 + eps/sigma^2)/m)``: ``||dL/dy||^2 = (gamma^2/sigma^2)
    (c_0 ||g||^2 - c_1 <1, g>^2 - c_2 <g, yhat>^2)`` for one BatchNorm unit over a batch of ``m``.

    ``eps_ratio`` is ``eps/sigma^2`` (0: Santurkar et al.'s Thm. 4.1 with equality).

    >>> bn_gradient_coefficients(4).tolist()
    [1.0, 0.25, 0.25]
    """
    m = check_int("m", m, 2)
    r = check_range("eps_ratio", eps_ratio, 0.0, 1.0, high_open=True)
    return np.array([1.0, 1.0 / m, (1.0 + r) / m])


def bn_gradient_norm_sq(g: Any, yhat: Any, gamma: Any, sigma: Any, eps_ratio: float = 0.0) -> Any:
    """The identity's right side, batched over leading axes: ``g``, ``yhat``
    of shape ``(..., m)``, ``gamma``, ``sigma`` of shape ``(...)``."""
    m = g.shape[-1]
    c0, c1, c2 = bn_gradient_coefficients(m, eps_ratio)
    s1 = (g.sum(-1)) ** 2
    s2 = (g * yhat).sum(-1) ** 2
    return (gamma / sigma) ** 2 * (c0 * (g * g).sum(-1) - c1 * s1 - c2 * s2)


def filter_plot_change(c: float) -> np.ndarray:
    """``[0, 0]``: the change of the filter-normalized 1-D and 2-D plots under a function-preserving
    rescaling by ``c`` (in units of the plot's loss range): none."""
    check_range("c", c, 0.0, None, low_open=True)
    return np.zeros(2)


# --------------------------------------------------------------------------------------------
# BatchNorm by autograd


def bn_backward(y: Any, g: Any, gamma: Any, beta: Any, eps: float = 0.0) -> Any:
    """``dL/dy`` of ``L = sum_i g_i z_i``, ``z = BN(y)``, by autograd through
    ``torch.nn.functional.batch_norm`` in training mode (batch statistics, biased variance).

    ``y``, ``g``: ``(B, m)`` torch tensors (``B`` independent units, a batch of ``m`` each);
    ``gamma``, ``beta``: ``(B,)``."""
    import torch
    import torch.nn.functional as F

    yy = y.detach().T.contiguous().requires_grad_(True)  # (m, B): B channels, batch m
    z = F.batch_norm(yy, None, None, weight=gamma, bias=beta, training=True, momentum=0.0, eps=eps)
    (gy,) = torch.autograd.grad((z * g.T).sum(), yy)
    return gy.T


def fit_bn_coefficients(lhs: Any, g: Any, y: Any, gamma: Any) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Least-squares ``(c_0, c_1, c_2)`` in ``lhs_b = (gamma_b/sigma_b)^2 (c_0 ||g_b||^2 - c_1 <1, g_b>^2
    - c_2 <g_b, yhat_b>^2)`` over the ``B`` rows (``sigma_b`` the biased standard deviation of ``y_b``).

    Returns the coefficients, their standard errors (from the residuals), the condition number of
    the scaled design, and the relative residual ``||A c - lhs|| / ||lhs||``."""
    y = np.asarray(y, dtype=float)
    g = np.asarray(g, dtype=float)
    lhs = np.asarray(lhs, dtype=float)
    mu = y.mean(-1, keepdims=True)
    sigma = np.sqrt(((y - mu) ** 2).mean(-1))
    yhat = (y - mu) / sigma[:, None]
    f = (np.asarray(gamma, dtype=float) / sigma) ** 2
    A = np.stack([f * (g * g).sum(-1), -f * g.sum(-1) ** 2, -f * (g * yhat).sum(-1) ** 2], 1)
    # rows scaled to unit lhs so every batch weighs the same in the fit
    A, b = A / lhs[:, None], np.ones_like(lhs)
    coef, *_ = np.linalg.lstsq(A, b, rcond=None)
    resid = A @ coef - b
    dof = max(len(b) - 3, 1)
    s2 = float(resid @ resid) / dof
    cov = s2 * np.linalg.inv(A.T @ A)
    return coef, np.sqrt(np.diag(cov)), float(np.linalg.cond(A)), float(np.linalg.norm(resid) / np.linalg.norm(b))


# --------------------------------------------------------------------------------------------
# Claim: BN gradient identity


@dataclass(frozen=True)
class BNIdentityParams(Params):
    m: int = param(8, low=3, high=4096, integer=True, domain=(3, 256), log=True,
                   doc="batch size m (m = 2 is degenerate: BN maps any two distinct values to -1, +1, gradient 0)")
    gamma: float = param(1.7, low=0, low_open=True, domain=(0.1, 10.0), log=True,
                         doc="BN scale gamma (each unit draws gamma times a factor in [0.5, 2])")
    sigma: float = param(3.0, low=0, low_open=True, domain=(0.01, 100.0), log=True,
                         doc="spread of the pre-activations y (each unit: sigma times a factor in [0.5, 2])")
    batches: int = param(64, low=8, high=100_000, integer=True, domain=(16, 256), log=True,
                         doc="number of random batches B (units) fitted at once")


def _measure_bn_identity(p: BNIdentityParams, backend: Backend, seed: int) -> Measurement:
    import torch

    dev = backend.device if backend.name == "torch" else "cpu"
    dt = torch.float64 if backend.name != "torch" else backend.float_dtype
    gen = torch.Generator().manual_seed(int(seed))

    def rnd(*shape, lo=None, hi=None):
        x = torch.rand(shape, generator=gen, dtype=torch.float64) if lo is not None else \
            torch.randn(shape, generator=gen, dtype=torch.float64)
        return (lo + (hi - lo) * x if lo is not None else x).to(device=dev, dtype=dt)

    B, m = p.batches, p.m
    y = p.sigma * rnd(B, 1, lo=0.5, hi=2.0) * rnd(B, m) + 5.0 * rnd(B, 1)
    # upstream gradients with a random mean and a random component along y, so that all three
    # terms of the identity vary independently across batches
    g = rnd(B, 1) + rnd(B, 1) * (y - y.mean(1, keepdim=True)) / p.sigma + rnd(B, m)
    gamma = p.gamma * rnd(B, lo=0.5, hi=2.0)
    beta = rnd(B)
    # torch refuses eps = 0 in training mode: the smallest normal number of the dtype, whose ratio
    # eps/sigma^2 (< 1e-30 here) is below the round-off of everything else
    gy = bn_backward(y, g, gamma, beta, eps=float(torch.finfo(dt).tiny))
    lhs = (gy * gy).sum(1)
    coef, se, cond, resid = fit_bn_coefficients(backend.to_numpy(lhs), backend.to_numpy(g), backend.to_numpy(y),
                                                backend.to_numpy(gamma))
    measured = coef
    # an exact identity: the residual of the fit is round-off, amplified by the design's conditioning
    # (m = 3: the projector has rank 1 and some batches have a near-zero left side)
    checks = {"identity_holds_to_roundoff": bool(resid < 16 * m * backend.eps * cond)}
    return Measurement(value=measured, stderr=se,
                       checks=checks, info={"condition_number": cond, "relative_residual": resid,
                                            "m_times_c1": float(coef[1] * m), "m_times_c2": float(coef[2] * m)})


def _bn_identity_tolerance(p: BNIdentityParams, m: Measurement, be: Backend) -> Tolerance:
    coef = np.abs(np.asarray(m.value, dtype=float))
    cond = float(m.info["condition_number"])
    # backward error of the autograd gradient and the regressors: O(m) roundings per entry, turned
    # into a coefficient error by the condition number of the design (Higham, Accuracy and Stability,
    # Thm. 20.1), plus 6 standard errors of the least-squares fit
    floor = 16.0 * p.m * be.eps * cond
    se = np.asarray(m.stderr, dtype=float)
    return Tolerance(value=(6 * se + floor * np.max(coef)) / np.maximum(coef, 1e-300),
                     reason="least squares on round-off residuals: 6 standard errors of each coefficient plus "
                            "16 m u cond(A) (the forward error of a backward-stable solve of the design)")


register(Claim(
    id="landscape.bn_gradient_identity",
    statement=("For one BatchNorm unit (eps = 0) over a batch of m, ||dL/dy||^2 = (gamma^2/sigma^2)(c0 ||g||^2 - "
               "c1 <1, g>^2 - c2 <g, yhat>^2) with (c0, c1, c2) = (1, 1/m, 1/m), g = dL/dz: Santurkar et al.'s "
               "Thm. 4.1 holds with equality. The printed coefficient 1/sqrt(m) of <g, yhat>^2 is not what the "
               "definition gives (it would make the bound false); with eps > 0 c2 = (1 + eps/sigma^2)/m and the "
               "inequality is strict. Measured: the three coefficients fitted by least squares to autograd "
               "gradients over B random batches."),
    reference="Santurkar, Tsipras, Ilyas, Madry 2018, arXiv 1805.11604, Thm. 4.1; coefficient derived here",
    params=BNIdentityParams,
    predicted=lambda p: bn_gradient_coefficients(p.m),
    measured=_measure_bn_identity,
    tolerance=_bn_identity_tolerance,
    error=relative_errors,
    mutants={"paper's printed 1/sqrt(m) on <g, yhat>^2": lambda p: np.array([1.0, 1 / p.m, 1 / math.sqrt(p.m)]),
             "cross term 2/m (||yhat||^2 = m not used)": lambda p: np.array([1.0, 1 / p.m, 2 / p.m]),
             "unbiased variance: 1/(m-1)": lambda p: np.array([1.0, 1 / (p.m - 1), 1 / (p.m - 1)]),
             "mean term dropped": lambda p: np.array([1.0, 0.0, 1 / p.m])},
    closed_forms=("bn_gradient_coefficients", "bn_gradient_norm_sq"),
    sweep="m", sweep_values=(2, 8, 64),
    summary=lambda v: float(np.asarray(v)[2]), summary_label="c2",
    backends=("torch",),
))


# --------------------------------------------------------------------------------------------
# Filter-normalized plots under rescaling symmetries

SYMMETRIES = ("layer", "bn_filter", "neuron")


def relu_mlp(d_in: int, width: int, bn: bool, seed: int, device: Any = "cpu", dtype: Any = None):
    """``d_in -> width -> width -> 1`` ReLU MLP (BatchNorm after the first layer if ``bn``).

    BatchNorm's ``eps`` is the dtype's smallest normal number: with torch's default ``1e-5`` the
    per-filter rescaling is a symmetry only up to relative order ``eps/sigma^2`` (measured: the
    function changed by 6e-5 at c = 3), and so is the plot."""
    import torch
    from torch import nn

    torch.manual_seed(int(seed))
    dt = dtype or torch.float64
    layers = [nn.Linear(d_in, width)] + ([nn.BatchNorm1d(width, eps=float(torch.finfo(dt).tiny))] if bn else []) + \
        [nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 1)]
    return nn.Sequential(*layers).to(device=device, dtype=dt)


def rescale(model, symmetry: str, c: float, seed: int = 0):
    """A copy of ``model`` (from :func:`relu_mlp`) rescaled by a function-preserving symmetry:

    - ``"layer"``: first Linear (weight and bias) by ``c``, second Linear's weight by ``1/c``;
    - ``"bn_filter"``: first Linear's filter ``j`` (row and bias) by ``c_j`` (log-uniform in
      ``[1/c, c]``), BatchNorm follows (batch statistics) so the function is unchanged;
    - ``"neuron"``: row ``j`` of the first Linear by ``c_j``, column ``j`` of the second by ``1/c_j``.
    """
    import copy

    import torch

    check_choice("symmetry", symmetry, SYMMETRIES)
    c = check_range("c", c, 0.0, None, low_open=True)
    out = copy.deepcopy(model)
    lin = [mod for mod in out if isinstance(mod, torch.nn.Linear)]
    w = lin[0].weight
    if symmetry == "layer":
        s = torch.full((w.shape[0],), c, dtype=w.dtype, device=w.device)
    else:
        g = torch.Generator().manual_seed(int(seed) + 7)
        s = torch.exp((2 * torch.rand(w.shape[0], generator=g, dtype=torch.float64) - 1) * math.log(c))
        s = s.to(device=w.device, dtype=w.dtype)
    with torch.no_grad():
        lin[0].weight.mul_(s[:, None])
        lin[0].bias.mul_(s)
        if symmetry != "bn_filter":
            lin[1].weight.div_(s[None, :])
    return out


def plot_change(model, rescaled, data, norm: str, seed: int, n1: int = 21, n2: int = 9,
                mode: str = "train") -> tuple[np.ndarray, float]:
    """``[max |Delta L_1d|, max |Delta L_2d|] / range(L)`` between the plots of ``model`` and
    ``rescaled`` along random directions of the same seed, normalised by ``norm``; and the largest
    ``max L / range(L)`` of the two original plots (how round-off of L is magnified)."""
    import torch

    from ..tools import landscape as ls

    loss = torch.nn.MSELoss()
    out, ratio = [], 0.0
    for kind in ("1d", "2d"):
        if kind == "1d":
            a = ls.slice_1d(model, loss, data, seed=seed, norm=norm, n=n1, mode=mode).losses
            b = ls.slice_1d(rescaled, loss, data, seed=seed, norm=norm, n=n1, mode=mode).losses
        else:
            a = ls.slice_2d(model, loss, data, seed=seed, norm=norm, n=n2, mode=mode).losses
            b = ls.slice_2d(rescaled, loss, data, seed=seed, norm=norm, n=n2, mode=mode).losses
        out.append(float(np.max(np.abs(a - b)) / (np.max(a) - np.min(a))))
        ratio = max(ratio, float(np.max(np.abs(a)) / (np.max(a) - np.min(a))))
    return np.asarray(out), ratio


@dataclass(frozen=True)
class FilterNormParams(Params):
    c: float = param(3.0, low=0, low_open=True, domain=(2.0, 8.0), log=True,
                     doc="rescaling factor c (layer symmetry), or the spread [1/c, c] of per-filter factors")
    symmetry: str = param("layer", choices=("layer", "bn_filter"), domain=("layer", "bn_filter"),
                          doc="which function-preserving rescaling")
    width: int = param(24, low=2, high=4096, integer=True, domain=(8, 48), doc="hidden width")


_FN_N = 128   # data points
_FN_D = 6     # input dimension


def _measure_filter_norm(p: FilterNormParams, backend: Backend, seed: int) -> Measurement:
    import torch

    dev = backend.device if backend.name == "torch" else "cpu"
    dt = torch.float64 if backend.name != "torch" else backend.float_dtype
    bn = p.symmetry == "bn_filter"
    model = relu_mlp(_FN_D, p.width, bn, seed, dev, dt)
    g = torch.Generator().manual_seed(int(seed) + 1)
    X = torch.randn(_FN_N, _FN_D, generator=g, dtype=torch.float64).to(device=dev, dtype=dt)
    Y = torch.sin(X.sum(1, keepdim=True))
    resc = rescale(model, p.symmetry, p.c, seed)
    filt, ratio = plot_change(model, resc, (X, Y), "filter", seed)
    raw, _ = plot_change(model, resc, (X, Y), "none", seed)
    layer, _ = plot_change(model, resc, (X, Y), "layer", seed)
    neuron = plot_change(model, rescale(model, "neuron", p.c, seed), (X, Y), "filter", seed)[0] if not bn else None
    # the function itself is unchanged (the premise), to round-off
    mode_ok = True
    with torch.no_grad():
        model.train(bn)
        resc.train(bn)
        f0, f1 = model(X), resc(X)
        mode_ok = float((f0 - f1).abs().max() / f0.abs().max())
    info = {"loss_max_over_range": ratio, "raw_change": raw.tolist(), "layer_norm_change": layer.tolist(), "function_change": mode_ok}
    if neuron is not None:
        info["per_neuron_relu_rescaling_filter_change"] = neuron.tolist()
    return Measurement(value=filt, checks={"raw_plot_changes": bool(raw.min() > 1e-3),
                                           "function_unchanged": bool(mode_ok < 1e6 * backend.eps)},
                       info=info)


def _filter_norm_tolerance(p: FilterNormParams, m: Measurement, be: Backend) -> Tolerance:
    # forward error of an MSE through three layers: each output is a sum of about 2 width + d
    # products rounded in a different order once rescaled, the loss a mean of N squares; relative
    # error <= (n_ops) u per loss value (Higham, sec. 3.1, gamma_n), against a loss range that the
    # plot spans: 64 (2 width + d + N) u times the measured ratio max L / range(L)
    n_ops = 2 * p.width + _FN_D + _FN_N
    ratio = float(m.info["loss_max_over_range"])
    return Tolerance(64 * n_ops * be.eps * ratio,
                     reason="round-off of two evaluations of the same function in different factorisations: "
                            "64 (2 width + d + N) u per loss value, times the measured max L / range(L)")


register(Claim(
    id="landscape.filter_norm_invariance",
    statement=("For a ReLU MLP, a rescaling that leaves the function unchanged (layer 1 by c and layer 2 by 1/c; or "
               "each filter j of a layer followed by BatchNorm, with batch statistics, by its own c_j in [1/c, c]) "
               "leaves the filter-normalized 1-D and 2-D plots (same seed) unchanged to round-off, while the plots "
               "along raw random directions change. Not for every symmetry: a per-neuron ReLU rescaling (row j of "
               "W1 by c_j, column j of W2 by 1/c_j) changes the filter-normalized plot (info: "
               "per_neuron_relu_rescaling_filter_change), since the columns of W2 are not its filters."),
    reference="Li, Xu, Taylor, Studer, Goldstein 2018, arXiv 1712.09913, sec. 4; Dinh et al. 2017, arXiv 1703.04933",
    params=FilterNormParams,
    predicted=lambda p: filter_plot_change(p.c),
    measured=_measure_filter_norm,
    tolerance=_filter_norm_tolerance,
    error=max_abs_error,
    mutants={"invariant to first order only: (c - 1)^2": lambda p: np.full(2, (p.c - 1) ** 2),
             "changes like a raw direction: |log c|": lambda p: np.full(2, abs(math.log(p.c)))},
    closed_forms=("filter_plot_change",),
    sweep="c", sweep_values=(2.0, 4.0, 8.0),
    backends=("torch",),
))


# --------------------------------------------------------------------------------------------
# Linear mode connectivity
#
# For least squares L(theta) = ||X theta - y||^2/(2n), L is quadratic, so along the segment
# theta(t) = (1 - t) theta_a + t theta_b,
#     L(t) = (1 - t) L(theta_a) + t L(theta_b) - t (1 - t) ||X (theta_b - theta_a)||^2/(2n)
# exactly (proofs_check/check_landscape.py): the loss lies below its chord, the barrier
# max_t [L(t) - chord(t)] is 0 (attained at the endpoints) and the midpoint sits ||X Delta||^2/(8n)
# below the chord. A two-layer ReLU network is not convex in its weights: two SGD solutions from
# different seeds are separated by a barrier, which (measured) does not vanish as the width grows.


def linear_chord_gap_coefficient() -> float:
    """``-1``: ``L(t) - chord(t) = c t (1 - t) ||X Delta||^2/(2n)`` with ``c = -1`` for least squares."""
    return -1.0


def mode_connectivity_classes() -> np.ndarray:
    """``[c, s]``: the linear model's chord-gap coefficient ``c = -1`` and the outcome ``s = +1`` of a
    one-sided z test that the wide network's mean barrier exceeds 0."""
    return np.array([linear_chord_gap_coefficient(), 1.0])


def train_pairs(width: Any, lr: float, pairs: int, seed: int, steps: int = 300, batch: int = 32,
                n: int = 128, d: int = 8, n_t: int = 11, linear: bool = False, device: Any = "cpu",
                dtype: Any = None) -> dict[str, Any]:
    """Train ``2 pairs`` networks per width by minibatch SGD (squared loss / 2) from independent
    initialisations and minibatch orders, and evaluate the training loss along the segment between
    the two members of each pair.

    The network is ``f(x) = sum_j a_j relu(w_j . x + b_j)`` (``w_j ~ N(0, I/d)``, ``a_j ~ N(0, 1/width)``,
    ``b = 0``), or ``f(x) = theta . x`` (``theta ~ N(0, I/d)``) if ``linear``; the target is
    ``tanh(u_0 . x) (u_1 . x) + sin(u_2 . x)`` on ``n`` Gaussian inputs (``u_k ~ N(0, I/d)``, from
    ``seed``). All widths and runs are one array program: narrower networks are zero-padded to the
    widest, and padded units stay zero (their output weight and gradient vanish).

    Returns ``t`` (``n_t``), ``losses`` (``n_t, widths, pairs``), ``barrier`` (``widths, pairs``)
    and, for the linear model, ``gap_scale = ||X Delta||^2/(2n)`` (``pairs``)."""
    import torch

    widths = [int(w) for w in np.atleast_1d(width)]
    for w in widths:
        check_int("width", w, 1)
    check_range("lr", lr, 0.0, None, low_open=True)
    pairs = check_int("pairs", pairs, 1)
    dt = dtype or torch.float64
    g = torch.Generator().manual_seed(int(seed))
    rn = lambda *s: torch.randn(s, generator=g, dtype=torch.float64).to(device=device, dtype=dt)
    X = rn(n, d)
    U = rn(3, d) / math.sqrt(d)
    Y = torch.tanh(X @ U[0]) * (X @ U[1]) + torch.sin(X @ U[2])
    nw, wm = len(widths), (1 if linear else max(widths))
    K = 2 * pairs * nw
    if linear:
        W1 = rn(K, d) / math.sqrt(d)
    else:
        mask = (torch.arange(wm)[None, :] < torch.tensor(widths)[:, None]).to(device=device, dtype=dt)
        mask = mask.repeat_interleave(2 * pairs, 0)
        W1 = rn(K, wm, d) / math.sqrt(d) * mask[:, :, None]
        b1 = torch.zeros(K, wm, device=device, dtype=dt)
        a = rn(K, wm) / mask.sum(1).sqrt()[:, None] * mask
    for _ in range(steps):
        idx = torch.randint(0, n, (K, batch), generator=g).to(device)
        Xb, Yb = X[idx], Y[idx]
        if linear:
            r = torch.einsum("kd,kbd->kb", W1, Xb) - Yb
            W1 = W1 - lr * torch.einsum("kb,kbd->kd", r, Xb) / batch
            continue
        pre = torch.einsum("kwd,kbd->kbw", W1, Xb) + b1[:, None, :]
        h = torch.relu(pre)
        r = torch.einsum("kbw,kw->kb", h, a) - Yb
        gh = r[:, :, None] * a[:, None, :] * (pre > 0)
        a = a - lr * torch.einsum("kb,kbw->kw", r, h) / batch
        W1 = W1 - lr * torch.einsum("kbw,kbd->kwd", gh, Xb) / batch
        b1 = b1 - lr * gh.sum(1) / batch
    T = torch.linspace(0, 1, n_t, dtype=dt, device=device)

    def lerp(x):
        x = x.reshape(nw, 2, pairs, *x.shape[1:])
        sh = (-1,) + (1,) * (x.dim() - 1)
        return (1 - T).reshape(sh) * x[None, :, 0] + T.reshape(sh) * x[None, :, 1]

    out: dict[str, Any] = {"t": T.cpu().numpy(), "widths": widths}
    if linear:
        f = torch.einsum("tnrd,bd->tnrb", lerp(W1), X)
        D = W1.reshape(nw, 2, pairs, d)
        out["gap_scale"] = ((torch.einsum("nrd,bd->nrb", D[:, 1] - D[:, 0], X) ** 2).sum(-1) / (2 * n)).cpu().numpy()
    else:
        h = torch.relu(torch.einsum("tnrwd,bd->tnrbw", lerp(W1), X) + lerp(b1)[..., None, :])
        f = torch.einsum("tnrbw,tnrw->tnrb", h, lerp(a))
    Ls = (0.5 * (f - Y) ** 2).mean(-1)
    chord = (1 - T)[:, None, None] * Ls[0] + T[:, None, None] * Ls[-1]
    out["losses"] = Ls.cpu().numpy()
    out["barrier"] = (Ls - chord).max(0).values.cpu().numpy()
    out["gap"] = (Ls - chord).cpu().numpy()
    out["diverged"] = not bool(torch.isfinite(Ls).all())
    return out


@dataclass(frozen=True)
class ModeConnectivityParams(Params):
    lr: float = param(0.05, low=0, low_open=True, high=10.0, domain=(0.02, 0.1), log=True,
                      doc="SGD step size (batch 32), the same for every width")
    width: int = param(32, low=8, high=1024, integer=True, domain=(16, 48),
                       doc="the wide network's hidden width (the narrow one has width 4)")


_MC = dict(pairs=8, steps=300, narrow=4, z=2.5)


def _measure_mode_connectivity(p: ModeConnectivityParams, backend: Backend, seed: int) -> Measurement:
    import torch

    dev = backend.device if backend.name == "torch" else "cpu"
    dt = torch.float64 if backend.name != "torch" else backend.float_dtype
    lin = train_pairs(1, p.lr, _MC["pairs"], seed, steps=_MC["steps"], linear=True, device=dev, dtype=dt)
    net = train_pairs((_MC["narrow"], p.width), p.lr, _MC["pairs"], seed + 1, steps=_MC["steps"], device=dev, dtype=dt)
    if lin["diverged"] or net["diverged"]:
        return Measurement(value=np.full(2, np.nan), diverged=True, diverged_step=_MC["steps"])
    # linear model: least-squares coefficient of gap(t) on t(1 - t) ||X Delta||^2/(2n), over t and pairs
    t = lin["t"]
    basis = (t * (1 - t))[:, None] * lin["gap_scale"][0][None, :]
    gap = lin["gap"][:, 0, :]
    c = float((basis * gap).sum() / (basis * basis).sum())
    # network: mean barrier over pairs at each width, one-sided z test at the wide width
    bar = net["barrier"]
    mean, se = bar.mean(1), bar.std(1, ddof=1) / math.sqrt(bar.shape[1])
    s = 1.0 if mean[1] > _MC["z"] * se[1] else 0.0
    slope = float(np.log(mean[1] / mean[0]) / np.log(p.width / _MC["narrow"]))
    slope_se = float(math.hypot(se[0] / mean[0], se[1] / mean[1]) / np.log(p.width / _MC["narrow"]))
    lmax = float(np.abs(lin["losses"]).max())
    return Measurement(
        value=np.array([c, s]),
        checks={"linear_barrier_zero_to_roundoff": bool(lin["barrier"].max() <= 64 * 128 * backend.eps * lmax)},
        info={"linear_barrier_max": float(lin["barrier"].max()), "linear_loss_max": lmax,
              "linear_gap_scale_min": float(lin["gap_scale"].min()),
              "widths": [_MC["narrow"], p.width], "mean_barrier": mean.tolist(), "barrier_stderr": se.tolist(),
              "endpoint_loss": net["losses"][0].mean(1).tolist(),
              "loglog_slope": slope, "loglog_slope_stderr": slope_se, "pairs": _MC["pairs"], "z": _MC["z"]})


def _mode_connectivity_tolerance(p: ModeConnectivityParams, m: Measurement, be: Backend) -> Tolerance:
    # entry 0: the gap is a difference of losses of size <= max L, each a mean of n = 128 squares
    # (forward error <= 128 u max L, Higham gamma_n), against the smallest measured basis amplitude
    # ||X Delta||^2/(8n); entry 1: the outcome of a z test, 0.5 only separates integer outcomes
    rnd = 4 * 128 * be.eps * float(m.info["linear_loss_max"]) / (float(m.info["linear_gap_scale_min"]) / 4)
    return Tolerance(value=np.array([rnd, 0.5]),
                     reason="entry 0: round-off of loss differences (4 n u max L) over the smallest chord gap "
                            "||X Delta||^2/(8n); entry 1: the outcome (0 or 1) of a one-sided z = 2.5 test over 8 pairs")


register(Claim(
    id="landscape.mode_connectivity",
    statement=("Least squares: along the segment between any two solutions, L(t) = chord(t) - t(1-t)||X Delta||^2/(2n) "
               "exactly, so the barrier max_t [L(t) - chord(t)] is 0 (measured coefficient -1 by a fit over t and 8 "
               "pairs of SGD runs from different seeds). A two-layer ReLU network trained by SGD (batch 32, 300 steps, "
               "same lr at every width) from two seeds is separated by a barrier that does not vanish at width 16-48: "
               "the mean barrier over 8 pairs exceeds 0 at z = 2.5 (entry 1 = 1). The literature's 'barrier falls as width "
               "grows' is not a robust form without permutation alignment: over widths 4 -> 32 the log-log slope "
               "(info) is positive in this underfitting regime and slightly negative (-0.15 +- 0.06) at larger targets "
               "and widths 4..64; the registered form is the non-vanishing barrier."),
    reference=("Frankle, Dziugaite, Roy, Carbin 2020, arXiv 1912.05671 (barrier); Entezari, Sedghi, Saukh, Neyshabur "
               "2021, arXiv 2110.06296 (width, permutations); Garipov et al. 2018, arXiv 1802.10026; linear case derived here"),
    params=ModeConnectivityParams,
    predicted=lambda p: mode_connectivity_classes(),
    measured=_measure_mode_connectivity,
    tolerance=_mode_connectivity_tolerance,
    error=lambda pred, meas: np.abs(np.asarray(pred, dtype=float) - np.asarray(meas, dtype=float)),
    mutants={"linear-model loss equals the chord (no curvature term)": lambda p: np.array([0.0, 1.0]),
             "chord gap t(1-t)||X Delta||^2/n (factor 1/2 dropped)": lambda p: np.array([-2.0, 1.0]),
             "barrier above the chord, like the network's": lambda p: np.array([1.0, 1.0]),
             "wide networks linearly connected (barrier vanishes)": lambda p: np.array([-1.0, 0.0])},
    closed_forms=("linear_chord_gap_coefficient", "mode_connectivity_classes"),
    sweep="width", sweep_values=(16, 32, 48),
    backends=("torch",),
))


# --------------------------------------------------------------------------------------------
# BatchNorm and smoothness along the training path
#
# Santurkar et al. (sec. 3.1, Fig. 4) measure, at points x of the training path, along the gradient
# g = grad L(x) over step sizes eta in a range:
#   loss variation      max_eta L(x - eta g) - min_eta L(x - eta g)   (eta = 0 included),
#   predictiveness      max_eta ||grad L(x) - grad L(x - eta g)||,
#   effective beta      max_eta ||grad L(x) - grad L(x - eta g)|| / ||eta g||,
# on the same minibatch, and find all three smaller with BatchNorm. Here: a 10 -> 24 -> 24 -> 1 ReLU
# MLP with and without BN after each hidden layer (batch statistics, eps = 1e-5), the same
# initial weights, minibatches and learning rate; eta in {0.5, 1, 2, 4} x lr.

SMOOTHNESS_METRICS = ("loss_variation", "gradient_predictiveness", "effective_beta")


def bn_smoothness_classes() -> np.ndarray:
    """``[-1, -1]``: the outcomes of two-sided z tests that the mean log ratio (BN / no BN) over seeds
    of the gradient predictiveness and of the effective beta-smoothness is below 0."""
    return np.array([-1.0, -1.0])


def _mlp_bn_forward(P: list, X: Any, bn: bool) -> Any:
    import torch

    W1, b1, W2, b2, a = P

    def norm(h):
        if not bn:
            return h
        return (h - h.mean(1, keepdim=True)) / (h.var(1, unbiased=False, keepdim=True) + 1e-5).sqrt()

    h = torch.relu(norm(torch.einsum("kwd,kbd->kbw", W1, X) + b1[:, None]))
    h = torch.relu(norm(torch.einsum("kvw,kbw->kbv", W2, h) + b2[:, None]))
    return torch.einsum("kbv,kv->kb", h, a)


def smoothness_along_path(bn: bool, lr: float, runs: int, seed: int, steps: int = 80, every: int = 8,
                          width: int = 24, d: int = 10, n: int = 256, batch: int = 32,
                          etas: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0), device: Any = "cpu",
                          dtype: Any = None) -> dict[str, Any]:
    """Train ``runs`` MLPs (``d -> width -> width -> 1``, ReLU, BN after each hidden layer if ``bn``)
    by minibatch SGD on ``L = mean (f - y)^2 / 2`` (target ``tanh(2 u_0.x)(u_1.x) + sin(2 u_2.x)``, ``n``
    Gaussian inputs), and every ``every`` steps record the three metrics of Santurkar et al. along the
    gradient on the current minibatch (``eta`` in ``etas`` times ``lr``). Data, initial weights and
    minibatches depend only on ``seed`` (the same with and without BN). Returns ``metrics``
    (``3, runs``: each metric's mean over the checkpoints), ``loss`` (final minibatch losses, ``runs``)
    and ``diverged``."""
    import torch

    check_range("lr", lr, 0.0, None, low_open=True)
    runs = check_int("runs", runs, 2)
    width = check_int("width", width, 1)
    dt = dtype or torch.float64
    g = torch.Generator().manual_seed(int(seed))
    rn = lambda *s: torch.randn(s, generator=g, dtype=torch.float64).to(device=device, dtype=dt)
    X = rn(n, d)
    U = rn(3, d) / math.sqrt(d)
    Y = torch.tanh(2 * X @ U[0]) * (X @ U[1]) + torch.sin(2 * X @ U[2])
    z = lambda *s: torch.zeros(s, device=device, dtype=dt)
    P = [rn(runs, width, d) / math.sqrt(d), z(runs, width), rn(runs, width, width) * math.sqrt(2 / width),
         z(runs, width), rn(runs, width) / math.sqrt(width)]
    E = torch.tensor(etas, dtype=dt, device=device) * lr
    ne = len(etas)
    rec = []
    for s in range(steps):
        idx = torch.randint(0, n, (runs, batch), generator=g).to(device)
        Xb, Yb = X[idx], Y[idx]
        P = [p.detach().requires_grad_(True) for p in P]
        L = 0.5 * ((_mlp_bn_forward(P, Xb, bn) - Yb) ** 2).mean(1)
        G = torch.autograd.grad(L.sum(), P)   # runs are independent: grad of the sum is each run's
        if s % every == 0:
            Q = [(p.detach()[None] - E.reshape(-1, *[1] * p.dim()) * gg[None]).reshape(ne * runs, *p.shape[1:])
                 .requires_grad_(True) for p, gg in zip(P, G)]
            Le = 0.5 * ((_mlp_bn_forward(Q, Xb.repeat(ne, 1, 1), bn) - Yb.repeat(ne, 1)) ** 2).mean(1)
            Ge = torch.autograd.grad(Le.sum(), Q)
            gnorm = torch.sqrt(sum((gg ** 2).flatten(1).sum(1) for gg in G))
            diff = torch.sqrt(sum(((ge.reshape(ne, runs, *gg.shape[1:]) - gg[None]) ** 2).flatten(2).sum(2)
                                  for ge, gg in zip(Ge, G)))
            allL = torch.cat([L.detach()[None], Le.detach().reshape(ne, runs)], 0)
            rec.append(torch.stack([allL.max(0).values - allL.min(0).values, diff.max(0).values,
                                    (diff / (E[:, None] * gnorm[None])).max(0).values]))
        P = [p.detach() - lr * gg for p, gg in zip(P, G)]
    M = torch.stack(rec).mean(0)
    ok = bool(torch.isfinite(M).all()) and bool(torch.isfinite(L).all())
    return {"metrics": M.cpu().numpy(), "loss": L.detach().cpu().numpy(), "diverged": not ok}


@dataclass(frozen=True)
class BNSmoothnessParams(Params):
    lr: float = param(0.08, low=0, low_open=True, high=10.0, domain=(0.04, 0.15), log=True,
                      doc="SGD step size, the same with and without BatchNorm")


_BS = dict(runs=16, z=2.5)


def _measure_bn_smoothness(p: BNSmoothnessParams, backend: Backend, seed: int) -> Measurement:
    import torch

    dev = backend.device if backend.name == "torch" else "cpu"
    dt = torch.float64 if backend.name != "torch" else backend.float_dtype
    plain = smoothness_along_path(False, p.lr, _BS["runs"], seed, device=dev, dtype=dt)
    withbn = smoothness_along_path(True, p.lr, _BS["runs"], seed, device=dev, dtype=dt)
    if plain["diverged"] or withbn["diverged"]:
        return Measurement(value=np.full(2, np.nan), diverged=True, diverged_step=80)
    lr_ = np.log(withbn["metrics"] / plain["metrics"])          # (3, runs): paired by seed
    mean, se = lr_.mean(1), lr_.std(1, ddof=1) / math.sqrt(lr_.shape[1])
    zs = mean / se
    cls = [float(np.sign(zi)) if abs(zi) > _BS["z"] else 0.0 for zi in zs]
    return Measurement(value=np.array(cls[1:]), info={
        "log_ratio_mean": dict(zip(SMOOTHNESS_METRICS, mean.tolist())),
        "log_ratio_stderr": dict(zip(SMOOTHNESS_METRICS, se.tolist())),
        "z": dict(zip(SMOOTHNESS_METRICS, zs.tolist())),
        "loss_variation_class": cls[0],
        "final_loss_no_bn": float(plain["loss"].mean()), "final_loss_bn": float(withbn["loss"].mean()),
        "runs": _BS["runs"], "z_threshold": _BS["z"]})


register(Claim(
    id="landscape.bn_smoothness",
    statement=("Along the SGD path of a 10-24-24-1 ReLU MLP (synthetic regression, batch 32, 80 steps, 16 paired seeds: "
               "same data, initial weights and minibatches with and without BatchNorm, same lr in [0.04, 0.15]), the "
               "gradient predictiveness max_eta ||grad L(x) - grad L(x - eta g)|| and the effective beta-smoothness "
               "(the same over ||eta g||), eta in {0.5, 1, 2, 4} lr, are smaller with BatchNorm: the mean log ratio BN/no-BN "
               "is below 0 at z = 2.5 (measured [-1, -1]). The third quantity of Santurkar et al. Fig. 4, the loss "
               "variation along the gradient, is not smaller at every lr: larger with BN at lr = 0.04 (log ratio +0.3 to "
               "+0.4, z > 3), smaller at lr = 0.15 (-0.5 to -1.0); it is reported (info), not claimed."),
    reference="Santurkar, Tsipras, Ilyas, Madry 2018, arXiv 1805.11604, sec. 3.1 and Fig. 4; the paired-seed z test here",
    params=BNSmoothnessParams,
    predicted=lambda p: bn_smoothness_classes(),
    measured=_measure_bn_smoothness,
    tolerance=lambda p, m, be: Tolerance(0.5, (
        "the entries are outcomes (-1, 0, +1) of two-sided z = 2.5 tests on the mean over 16 paired seeds of "
        "log(metric with BN / metric without); 0.5 only separates the integer outcomes")),
    error=lambda pred, meas: np.abs(np.asarray(pred, dtype=float) - np.asarray(meas, dtype=float)),
    mutants={"no difference with BatchNorm": lambda p: np.array([0.0, 0.0]),
             "BatchNorm makes the landscape rougher": lambda p: np.array([1.0, 1.0]),
             "predictiveness improves, beta-smoothness does not": lambda p: np.array([-1.0, 0.0])},
    closed_forms=("bn_smoothness_classes",),
    sweep="lr", sweep_values=(0.04, 0.08, 0.15),
    backends=("torch",),
))


# --------------------------------------------------------------------------------------------
# A solvable proxy of Yang et al.'s load-temperature taxonomy
#
# Least squares L(w) = ||X w - y||^2/(2n), x ~ N(0, Sigma) with Sigma = diag(k^{-s}), k = 1..p,
# y = x.w* + noise; load alpha = n/p, temperature tau = eta/B (minibatch SGD). The Hessian is
# H = X^T X/n for every w: sharpness and trace are those of one matrix, E tr H = tr Sigma exactly, and
# the loss is convex, so the barrier between any two runs is 0 (L(t) lies below its chord). The
# similarity of two independent runs' test predictions (linear CKA) is what the load and temperature
# change: below alpha = 1 the runs keep their initial null-space components (different
# interpolators), and a higher temperature spreads the stationary SGD iterates.


def taxonomy_prediction(p: int, s: float) -> np.ndarray:
    """``[tr Sigma, tr Sigma, tr Sigma, 0]``: ``E tr(X^T X/n) = tr Sigma`` at each load of the grid
    (``Sigma = diag(k^{-s})``), and the barrier between independent runs of a convex loss, 0."""
    p = check_int("p", p, 1)
    t = float(np.sum(np.arange(1, p + 1, dtype=float) ** (-float(s))))
    return np.array([t, t, t, 0.0])


TAXONOMY_LOADS = (0.5, 2.0, 8.0)
TAXONOMY_BATCHES = (2, 8, 32)


def taxonomy_grid(p: int, s: float, seed: int, runs: int = 6, eta: float = 0.2, steps: int = 300,
                  probes: int = 64, noise: float = 0.3, device: Any = "cpu", dtype: Any = None) -> dict[str, Any]:
    """Over loads ``alpha`` in :data:`TAXONOMY_LOADS` and batch sizes ``B`` in :data:`TAXONOMY_BATCHES`
    (temperature ``eta/B``), train ``2 runs`` least-squares models by SGD from independent
    ``N(0, I)`` initialisations, and measure: the Hutchinson trace of ``H = X^T X/n`` (Rademacher
    probes, HVPs by autograd) and its standard error; the sampling standard error of ``tr(X^T X/n)``
    (row norms); the top eigenvalue by power iteration on HVPs with its residual; the barrier along
    the segment between the two runs of each pair (over the endpoint loss); the linear CKA of their
    test predictions."""
    import torch

    p = check_int("p", p, 2)
    dt = dtype or torch.float64
    g = torch.Generator().manual_seed(int(seed))
    rn = lambda *sh: torch.randn(sh, generator=g, dtype=torch.float64).to(device=device, dtype=dt)
    sd = torch.arange(1, p + 1, dtype=dt, device=device) ** (-float(s) / 2)
    wstar = rn(p)
    Xte = rn(512, p) * sd
    nl, nb = len(TAXONOMY_LOADS), len(TAXONOMY_BATCHES)
    out = {k: np.zeros((nl,)) for k in ("trace", "trace_se", "rows_se", "sharp", "sharp_resid", "sharp_exact")}
    out.update(barrier=np.zeros((nl, nb)), cka=np.zeros((nl, nb)), cka_se=np.zeros((nl, nb)), loss=np.zeros((nl, nb)))
    diverged = False
    for i, alpha in enumerate(TAXONOMY_LOADS):
        n = int(round(alpha * p))
        X = rn(n, p) * sd
        y = X @ wstar + noise * rn(n)
        # Hessian of the loss by autograd HVPs (the loss is quadratic: H is the same at every w)
        w = torch.zeros(p, device=device, dtype=dt, requires_grad=True)
        gr = torch.autograd.grad(0.5 * ((X @ w - y) ** 2).mean(), w, create_graph=True)[0]

        def hvp(V):
            return torch.stack([torch.autograd.grad(gr @ v, w, retain_graph=True)[0] for v in V])

        V = (torch.randint(0, 2, (probes, p), generator=g).to(device=device, dtype=dt) * 2 - 1)
        q = (V * hvp(V)).sum(1)
        out["trace"][i], out["trace_se"][i] = float(q.mean()), float(q.std() / math.sqrt(probes))
        r2 = (X * X).sum(1)
        out["rows_se"][i] = float(r2.std() / math.sqrt(n))
        v = torch.ones(p, device=device, dtype=dt) / math.sqrt(p)
        for _ in range(60):
            hv = hvp(v[None])[0]
            v = hv / hv.norm()
        hv = hvp(v[None])[0]
        rho = float(v @ hv)
        out["sharp"][i], out["sharp_resid"][i] = rho, float((hv - rho * v).norm())
        out["sharp_exact"][i] = float(np.linalg.eigvalsh((X.T @ X / n).cpu().numpy()).max())
        # SGD, every batch size at once: runs stacked on a leading axis
        K = 2 * runs
        W = rn(nb, K, p)
        Bs = torch.tensor(TAXONOMY_BATCHES, device=device)
        bmax = max(TAXONOMY_BATCHES)
        mask = (torch.arange(bmax, device=device)[None, :] < Bs[:, None]).to(dt)     # (nb, bmax)
        for _ in range(steps):
            idx = torch.randint(0, n, (nb, K, bmax), generator=g).to(device)
            Xb, yb = X[idx], y[idx]
            r = (torch.einsum("jkbp,jkp->jkb", Xb, W) - yb) * mask[:, None, :]
            W = W - eta * torch.einsum("jkb,jkbp->jkp", r, Xb) / Bs[:, None, None].to(dt)
        if not bool(torch.isfinite(W).all()):
            diverged = True
            break
        Wp = W.reshape(nb, 2, runs, p)
        T = torch.linspace(0, 1, 11, device=device, dtype=dt)
        Wt = (1 - T)[:, None, None, None] * Wp[None, :, 0] + T[:, None, None, None] * Wp[None, :, 1]
        Lt = 0.5 * ((torch.einsum("np,tjrp->tjrn", X, Wt) - y) ** 2).mean(-1)              # (T, nb, runs)
        chord = (1 - T)[:, None, None] * Lt[0] + T[:, None, None] * Lt[-1]
        scale = 0.5 * (Lt[0] + Lt[-1]) + 0.5 * (y ** 2).mean()
        out["barrier"][i] = ((Lt - chord).max(0).values / scale).max(-1).values.cpu().numpy()
        out["loss"][i] = (0.5 * (Lt[0] + Lt[-1])).mean(-1).cpu().numpy()
        F = torch.einsum("np,jcrp->jcrn", Xte, Wp)
        F = F - F.mean(-1, keepdim=True)
        cka = (F[:, 0] * F[:, 1]).sum(-1) ** 2 / ((F[:, 0] ** 2).sum(-1) * (F[:, 1] ** 2).sum(-1))    # (nb, runs)
        out["cka"][i], out["cka_se"][i] = cka.mean(-1).cpu().numpy(), (cka.std(-1) / math.sqrt(runs)).cpu().numpy()
    out["diverged"] = diverged
    out["loads"], out["temperatures"] = list(TAXONOMY_LOADS), [eta / b for b in TAXONOMY_BATCHES]
    return out


@dataclass(frozen=True)
class TaxonomyParams(Params):
    p: int = param(32, low=2, high=4096, integer=True, domain=(16, 48), doc="number of features p")
    s: float = param(1.0, low=0.0, high=4.0, domain=(0.5, 1.5), doc="decay of the covariance spectrum k^{-s}")


def _measure_taxonomy(p: TaxonomyParams, backend: Backend, seed: int) -> Measurement:
    import torch

    dev = backend.device if backend.name == "torch" else "cpu"
    dt = torch.float64 if backend.name != "torch" else backend.float_dtype
    o = taxonomy_grid(p.p, p.s, seed, device=dev, dtype=dt)
    if o["diverged"]:
        return Measurement(value=np.full(4, np.nan), diverged=True, diverged_step=300)
    sharp_ok = bool(np.all(np.abs(o["sharp"] - o["sharp_exact"]) <= o["sharp_resid"] + 1e3 * backend.eps * o["sharp_exact"]))
    return Measurement(value=np.concatenate([o["trace"], [float(o["barrier"].max())]]),
                       checks={"power_iteration_within_residual_of_exact_top_eigenvalue": sharp_ok},
                       info={k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in o.items()})


def _taxonomy_tolerance(p: TaxonomyParams, m: Measurement, be: Backend) -> Tolerance:
    se = np.hypot(np.asarray(m.info["trace_se"]), np.asarray(m.info["rows_se"]))
    tr = np.asarray(m.value[:3], dtype=float)
    # traces: 4 standard errors (Hutchinson's probes and the design's rows, both measured), relative;
    # barrier: round-off of loss differences, 4 n u (n <= 8 p), in units of the loss scale
    return Tolerance(value=np.concatenate([4 * se / tr, [4 * 8 * p.p * be.eps * 4]]),
                     reason="traces: 4 measured standard errors (Rademacher probes; sampling of tr(X^T X/n) from the "
                            "row norms); barrier: round-off 4 n u of a difference of losses over the loss scale")


def _taxonomy_error(pred, meas):
    pred, meas = np.asarray(pred, dtype=float), np.asarray(meas, dtype=float)
    return np.concatenate([np.abs(meas[:3] / pred[:3] - 1), np.abs(meas[3:] - pred[3:])])


register(Claim(
    id="landscape.taxonomy",
    statement=("Least-squares proxy of Yang et al.'s load-temperature map (x ~ N(0, diag k^{-s}), load n/p in "
               "{0.5, 2, 8}, temperature eta/B with eta = 0.2, B in {2, 8, 32}, 6 pairs of independent SGD runs): the "
               "Hessian X^T X/n is exact and the same at every w (power iteration on autograd HVPs equals its top "
               "eigenvalue within its residual); its trace by Hutchinson's estimator equals E tr H = tr Sigma within "
               "4 measured standard errors at each load; the barrier between independent runs is 0 at every load and "
               "temperature (convex loss). So of the paper's boundaries, the one between poorly and well connected "
               "phases (barrier > 0 vs ~ 0) does not appear in the proxy; the load boundary appears at the "
               "interpolation threshold n/p = 1 in the similarity of independent runs' test predictions (CKA, info: "
               "below 1 the runs keep their initial null-space components: CKA 0.2-0.9 at n/p = 0.5 against 0.94-1.0 "
               "above), and the temperature changes CKA by a few percent at most, with no boundary. The sharpness-based "
               "boundaries of the paper are absent too: sharpness depends on the load (the design) only, never on the "
               "temperature or the run."),
    reference=("Yang, Hodgkinson, Theisen, Zou, Gonzalez, Ramchandran, Mahoney 2021, arXiv 2107.11228 (the taxonomy); "
               "Hutchinson 1990 (trace estimator); the proxy and its closed forms here"),
    params=TaxonomyParams,
    predicted=lambda p: taxonomy_prediction(p.p, p.s),
    measured=_measure_taxonomy,
    tolerance=_taxonomy_tolerance,
    error=_taxonomy_error,
    mutants={"isotropic design: trace p": lambda p: np.array([p.p, p.p, p.p, 0.0], dtype=float),
             "H = X^T X/p: trace (n/p) tr Sigma": lambda p: taxonomy_prediction(p.p, p.s) * np.array([*TAXONOMY_LOADS, 0.0]),
             "poorly connected phase: barrier of the loss scale": lambda p: np.concatenate([taxonomy_prediction(p.p, p.s)[:3], [0.5]])},
    closed_forms=("taxonomy_prediction",),
    sweep="p", sweep_values=(16, 32, 48),
    backends=("torch",),
))
