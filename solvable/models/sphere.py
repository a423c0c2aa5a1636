"""Scale-invariant losses on the sphere: fixed effective learning rate, weight decay, periodic behaviour.

A loss is scale-invariant when ``L(c w) = L(w)`` for every ``c > 0``, i.e. ``L(w) = F(w / ||w||)``.
Then (differentiating ``L(c w) = L(w)``)

    <grad L(w), w> = 0,     grad L(c w) = grad L(w) / c,     Hess L(c w) = Hess L(w) / c^2,

so the gradient is tangent to the sphere through ``w`` and shrinks like ``1/||w||``. One SGD step
``w' = w - eta grad L(w)`` moves the direction ``u = w/||w||`` exactly as a step of size
``eta / ||w||^2`` (the *effective learning rate*, ELR) on the unit sphere followed by
renormalisation. Weight decay ``wd`` shrinks ``||w||`` and so raises the ELR.

The toy model is the Rayleigh quotient ``F(u) = u^T A u / 2`` with ``A = diag(a)``; ``A`` diagonal
loses nothing because ``F`` is rotation-equivariant. Its sphere (Riemannian) gradient is
``grad_S F(u) = A u - (u^T A u) u``, its minima on the sphere are ``+-e_1`` (the eigenvector of
``a_min``), with ``F = a_min/2``, and its sphere average is ``tr A / (2 d)``.

Two further models: a BatchNorm MLP with a hand-written batched gradient (:func:`bn_net_loss_grad`,
:func:`simulate_bn_gd`; periodic behaviour), and a 3-d toy ``F(u) = u_3^2 (1 + alpha u_1^2)/2`` whose
minima form a circle of varying sharpness (:func:`simulate_sharpness_toy`; sharpness reduction).

Claims: ``sphere.scale_invariance``, ``sphere.fixed_elr_is_projected_sgd``,
``sphere.convergence_threshold``, ``sphere.three_regimes``, ``sphere.wd_equilibrium``,
``sphere.periodic_behavior``, ``sphere.sharpness_reduction``.

Three dynamics are simulated, batched over runs (leading axis ``B``), in :func:`simulate`:

* ``mode="sgd"``: plain (stochastic) gradient descent with weight decay and heavy-ball momentum
  (the PyTorch convention), ``b' = mu b + grad L(w) + wd w``, ``w' = w - eta b'``;
* ``mode="fixed_elr"``: SGD with ``lr = elr rho0^2`` whose weights are renormalised to norm
  ``rho0`` after every step (Kodryan et al. 2022);
* ``mode="projected"``: projected SGD on the unit sphere, ``u' = (u - elr grad_S F(u)) / ||.||``.

Gradient noise (``noise_kind``), added to the sphere gradient ``grad_S F(u)`` (tangent, then
divided by ``||w||`` like the gradient itself, so the noisy loss stays scale-invariant):

* ``"loss_scaled"``: ``sigma sqrt(2 (F(u) - F_min)) P_u xi``: covariance proportional to the excess
  loss, the structure of minibatch noise at an interpolating minimum (the noise vanishes at
  ``+-e_1``, so convergence is possible);
* ``"isotropic"``: ``sigma P_u xi``;
* ``"constant_norm"``: ``sigma P_u xi / ||P_u xi||``, a random tangent vector of norm exactly
  ``sigma`` (the constant sphere-gradient norm ``G`` of the weight-decay equilibrium);

with ``xi ~ N(0, I_d)`` drawn fresh for each run and step, and ``P_u = I - u u^T``.

References:
  Kodryan, Lobacheva, Nakhodnov, Vetrov, 2022. "Training Scale-Invariant Neural Networks on the
  Sphere Can Happen in Three Regimes." NeurIPS, arXiv 2209.03695.
  Lobacheva, Kodryan, Chirkova, Malinin, Vetrov, 2021. "On the Periodic Behavior of Neural Network
  Training with Batch Normalization and Weight Decay." NeurIPS, arXiv 2106.15739.
  Lyu, Li, Arora, 2022. "Understanding the Generalization Benefit of Normalization Layers:
  Sharpness Reduction." NeurIPS, arXiv 2206.07085.
  Wan, Zhu, Zhang, Sun, 2021. "Spherical Motion Dynamics: Learning Dynamics of Normalized Neural
  Network using SGD and Weight Decay." NeurIPS, arXiv 2006.08419.
  van Laarhoven, 2017. "L2 Regularization versus Batch and Weight Normalization." arXiv 1706.05350.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..backend import Backend, get_backend
from ..checks import check_choice, check_int, check_range
from ..claims import Claim, Measurement, Params, Tolerance, max_abs_error, param, register, relative_errors
from ..stats import loglog_slope

__all__ = [
    "rayleigh_spectrum",
    "rayleigh_loss",
    "rayleigh_sphere_grad",
    "rayleigh_grad",
    "SphereRun",
    "simulate",
    "random_directions",
    "projected_threshold",
    "scale_invariance_ratios",
    "effective_lr",
    "period_exponent",
    "wd_equilibrium",
    "wd_equilibrium_momentum",
    "sphere_average_loss",
    "uniform_coordinate_pdf",
    "bisect_projected_threshold",
    "lyapunov_at_minimum",
    "regime_12_boundary",
    "measure_regime_12_boundary",
    "classify_regimes",
    "REGIME_FACTORS",
    "bn_net_loss_grad",
    "bn_task",
    "simulate_bn_gd",
    "spike_onsets",
    "manifold_sharpness",
    "sharpness_toy_grad",
    "simulate_sharpness_toy",
    "instability_onsets",
    "NOISE_KINDS",
    "MODES",
]

Array = Any
MODES = ("sgd", "fixed_elr", "projected")
NOISE_KINDS = ("loss_scaled", "isotropic", "constant_norm")


# --------------------------------------------------------------------------------------------
# The model


def rayleigh_spectrum(a_min: float, a_max: float, d: int) -> np.ndarray:
    """Eigenvalues ``a_i = a_min + (a_max - a_min) (i - 1)/(d - 1)``, i = 1..d, of the toy's ``A``.

    >>> rayleigh_spectrum(1.0, 3.0, 3).tolist()
    [1.0, 2.0, 3.0]
    """
    a_min = check_range("a_min", a_min)
    a_max = check_range("a_max", a_max)
    d = check_int("d", d, 2)
    if not a_max > a_min:
        raise ValueError(f"a_max={a_max!r} is out of range: a_max must be > a_min={a_min!r}")
    return np.linspace(a_min, a_max, d)


def _check_w(w: Array, name: str = "w") -> None:
    xp = _xp_of(w)
    nrm = xp.sqrt(xp.sum(w * w, axis=-1))
    if bool(xp.any(nrm == 0)):
        rows = np.flatnonzero(np.asarray(nrm.cpu() if hasattr(nrm, "cpu") else nrm).reshape(-1) == 0)
        raise ValueError(f"{name} contains a zero weight vector (row {int(rows[0])} has norm 0.0): "
                         f"every weight vector in {name} must have norm in (0, inf)")
    if not bool(xp.all(xp.isfinite(nrm))):
        raise ValueError(f"{name} contains NaN or inf: {name} must be finite")


def _device_of(x: Array) -> Any:
    from array_api_compat import device

    return device(x)


def _json_safe(x: Any) -> Any:
    """``x`` with NaN entries of float arrays replaced by ``None`` (a NaN in ``info`` means "not
    measured", e.g. a task without cycles; ``verify --json`` refuses NaN, which is not JSON)."""
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, np.ndarray) and x.dtype.kind == "f" and np.isnan(x).any():
        return np.where(np.isnan(x), None, x).tolist()
    return x


def _xp_of(x: Array) -> Any:
    from array_api_compat import array_namespace

    return array_namespace(x)


def rayleigh_loss(w: Array, a: Array) -> Array:
    """``L(w) = F(w/||w||)``, ``F(u) = u^T diag(a) u / 2``, over the last axis (batched).

    Args:
      w: weights, shape ``(..., d)``, nonzero.
      a: eigenvalues of ``A``, shape ``(d,)`` (or broadcastable).
    """
    _check_w(w)
    xp = _xp_of(w)
    return 0.5 * xp.sum(a * w * w, axis=-1) / xp.sum(w * w, axis=-1)


def rayleigh_sphere_grad(u: Array, a: Array) -> Array:
    """Sphere gradient ``grad_S F(u) = A u - (u^T A u) u`` of ``F(u) = u^T A u/2`` at unit ``u``."""
    xp = _xp_of(u)
    au = a * u
    return au - xp.sum(u * au, axis=-1, keepdims=True) * u


def rayleigh_grad(w: Array, a: Array) -> Array:
    """Euclidean gradient ``grad L(w) = grad_S F(w/||w||) / ||w||`` of the scale-invariant toy."""
    _check_w(w)
    xp = _xp_of(w)
    r = xp.sqrt(xp.sum(w * w, axis=-1, keepdims=True))
    return rayleigh_sphere_grad(w / r, a) / r


def sphere_average_loss(a: Array) -> float:
    """``E_{u ~ Unif(S^{d-1})} F(u) = tr A / (2 d)`` (``E u_i^2 = 1/d``)."""
    a = np.asarray(a, dtype=float)
    return float(a.sum() / (2 * a.shape[-1]))


def uniform_coordinate_pdf(t: Any, d: int) -> np.ndarray:
    """Density of one coordinate ``t = u_1`` of ``u ~ Unif(S^{d-1})``: ``(1 - t^2)^{(d-3)/2} / B(1/2, (d-1)/2)``.

    Equivalently ``(t + 1)/2 ~ Beta((d-1)/2, (d-1)/2)``, the law the regime-3 test compares with.
    """
    from scipy.special import beta as beta_fn

    d = check_int("d", d, 2)
    t = np.asarray(t, dtype=float)
    return (1 - t * t) ** ((d - 3) / 2) / beta_fn(0.5, (d - 1) / 2)


def random_directions(backend: Backend, n: int, d: int, seed: int = 0) -> Array:
    """``n`` independent uniform unit vectors in ``R^d`` (normalised Gaussians), shape ``(n, d)``."""
    n = check_int("n", n, 1)
    d = check_int("d", d, 1)
    z = backend.rng(seed).normal((n, d))
    xp = backend.xp
    return z / xp.sqrt(xp.sum(z * z, axis=-1, keepdims=True))


# --------------------------------------------------------------------------------------------
# The batched simulator


@dataclass
class SphereRun:
    """The output of :func:`simulate` (arrays of the backend; ``B`` runs, ``T`` steps).

    Attributes:
      w: final weights ``(B, d)`` (unit directions for ``mode="projected"``).
      buf: final momentum buffer ``(B, d)`` (zeros without momentum).
      loss: ``F(u_t)`` at the recorded steps, ``(n_rec, B)``; row 0 is the initial point.
      sq_norm: ``||w_t||^2`` at the recorded steps, ``(n_rec, B)``.
      angle: angle between ``w_t`` and ``w_{t+1}`` (radians) of the step ending at each recorded
        step, ``(n_rec - 1, B)``.
      directions: ``u_t`` at the recorded steps, ``(n_rec, B, d)``, if asked for, else ``None``.
      steps: the recorded step indices ``(n_rec,)`` (numpy).
      diverged: per run, whether the weights became non-finite or zero (numpy bool ``(B,)``).
      diverged_step: per run, the first step where that happened, ``-1`` if never (numpy).
    """

    w: Array
    buf: Array
    loss: Array
    sq_norm: Array
    angle: Array
    directions: Array | None
    steps: np.ndarray
    diverged: np.ndarray
    diverged_step: np.ndarray
    info: dict = field(default_factory=dict)


# None: the divergence test of simulate() runs on the device for arrays off the CPU (no per-step
# synchronisation) and on the host otherwise; True/False force one path (the tests compare them).
_DEVICE_DIVERGENCE: bool | None = None


def _device_type(x: Array) -> str | None:
    dev = getattr(x, "device", None)
    return None if dev is None else getattr(dev, "type", str(dev))


def _rowdot(xp: Any, a: Array, b: Array) -> Array:
    """Row-wise inner products ``(B, 1)``: ``vecdot`` is ~5x faster than ``sum(a * b)`` (no temporary)."""
    return xp.vecdot(a, b)[..., None]


def _as_batch_param(name: str, value: Any, backend: Backend, B: int, low: float, low_open: bool,
                    high: float | None = None, high_open: bool = False) -> Array:
    v = np.asarray(backend.to_numpy(value) if hasattr(value, "detach") else value, dtype=float)
    for x in v.ravel():
        check_range(name, x, low, high, low_open=low_open, high_open=high_open)
    if v.ndim == 0:
        v = np.full((B,), float(v))
    if v.shape != (B,):
        raise ValueError(f"{name} has shape {v.shape}: {name} must be a scalar or have shape ({B},)")
    return backend.asarray(v.reshape(B, 1))


def simulate(
    a: Array,
    w0: Array,
    n_steps: int,
    *,
    mode: str = "sgd",
    eta: Any = None,
    elr: Any = None,
    rho0: float = 1.0,
    wd: Any = 0.0,
    momentum: float = 0.0,
    noise: float = 0.0,
    noise_kind: str = "loss_scaled",
    record_every: int = 1,
    keep_directions: bool = False,
    backend: Backend | str | None = None,
    seed: int = 0,
) -> SphereRun:
    """Batched SGD on the scale-invariant Rayleigh toy ``L(w) = F(w/||w||)``, ``F(u) = u^T A u/2``.

    Updates, for each run ``b`` of the batch (``g = (grad_S F(u) + n_t) / ||w||``, ``n_t`` the noise):

    * ``mode="sgd"``:        ``m' = mu m + g + wd w``,  ``w' = w - eta m'``;
    * ``mode="fixed_elr"``:  the same with ``eta = elr rho0^2``, then ``w' <- rho0 w'/||w'||``
      (``w0`` is first rescaled to norm ``rho0``);
    * ``mode="projected"``:  ``u' = (u - elr (grad_S F(u) + n_t)) / ||.||`` on the unit sphere
      (no weight decay or momentum: they have no meaning there).

    Args:
      a: eigenvalues of ``A`` (``d``,): see :func:`rayleigh_spectrum`.
      w0: initial weights ``(B, d)``, each nonzero.
      n_steps: number of steps ``T``.
      mode: ``"sgd"``, ``"fixed_elr"`` or ``"projected"``.
      eta: learning rate ``eta > 0`` (``mode="sgd"``); a scalar or one per run ``(B,)``.
      elr: effective learning rate ``> 0`` (``fixed_elr``, ``projected``); scalar or ``(B,)``.
      rho0: the fixed norm of ``fixed_elr``.
      wd: weight decay ``>= 0`` (``sgd``, ``fixed_elr``); scalar or ``(B,)``.
      momentum: heavy-ball coefficient ``mu`` in ``[0, 1)``.
      noise: noise scale ``sigma >= 0`` (see the module docstring).
      noise_kind: ``"loss_scaled"``, ``"isotropic"`` or ``"constant_norm"``.
      record_every: record loss, norm and angle every this many steps.
      keep_directions: also record the directions ``u_t`` (memory ``n_rec * B * d``).
      backend: a :class:`~solvable.backend.Backend` or its name (default numpy, float64).
      seed: seeds the noise; same seed and backend, same numbers.

    Returns:
      a :class:`SphereRun`. A run whose weights become non-finite or exactly zero is frozen from
      then on and flagged in ``diverged`` / ``diverged_step`` (divergence is a result, not NaN).

    Example:

    >>> import numpy as np
    >>> a = rayleigh_spectrum(0.0, 1.0, 4)
    >>> run = simulate(a, np.ones((2, 4)), 200, mode="projected", elr=0.5)
    >>> bool(run.loss[-1].max() < 1e-8)
    True
    """
    be = backend if isinstance(backend, Backend) else get_backend(backend or "numpy")
    xp = be.xp
    mode = check_choice("mode", mode, MODES)
    noise_kind = check_choice("noise_kind", noise_kind, NOISE_KINDS)
    n_steps = check_int("n_steps", n_steps, 0)
    record_every = check_int("record_every", record_every, 1)
    momentum = check_range("momentum", momentum, 0.0, 1.0, high_open=True)
    noise = check_range("noise", noise, 0.0, None)
    rho0 = check_range("rho0", rho0, 0.0, None, low_open=True)
    w = be.asarray(w0)
    if w.ndim != 2:
        raise ValueError(f"w0 has shape {tuple(w.shape)}: w0 must have shape (B, d)")
    _check_w(w, "w0")
    B, d = int(w.shape[0]), int(w.shape[1])
    a_np = np.asarray(be.to_numpy(a) if hasattr(a, "detach") else a, dtype=float)
    if a_np.shape != (d,):
        raise ValueError(f"a has shape {a_np.shape}: a must have shape ({d},), one eigenvalue per coordinate")
    if not np.all(np.isfinite(a_np)):
        raise ValueError("a contains NaN or inf: a must be finite")
    a_min = float(a_np.min())
    av = be.asarray(a_np)
    a_shift = be.asarray(a_np - a_min)

    if mode == "sgd":
        if eta is None:
            raise ValueError("eta=None is out of range: mode='sgd' needs eta in (0, inf)")
        lr = _as_batch_param("eta", eta, be, B, 0.0, True)
    else:
        if elr is None:
            raise ValueError(f"elr=None is out of range: mode={mode!r} needs elr in (0, inf)")
        lr = _as_batch_param("elr", elr, be, B, 0.0, True)
        if mode == "fixed_elr":
            lr = lr * rho0**2
    wdv = _as_batch_param("wd", wd, be, B, 0.0, False)
    if mode == "projected" and (momentum != 0.0 or bool(xp.any(wdv != 0))):
        raise ValueError(f"momentum={momentum!r}, wd={wd!r}: mode='projected' needs momentum=0 and wd=0")
    use_wd = bool(xp.any(wdv != 0))

    rng = be.rng(seed)
    if mode in ("fixed_elr", "projected"):
        target = rho0 if mode == "fixed_elr" else 1.0
        w = w * (target / xp.sqrt(_rowdot(xp, w, w)))
    buf = xp.zeros_like(w)

    n_rec = n_steps // record_every + 1
    losses, norms, angles, dirs = [], [], [], []
    alive = np.ones(B, dtype=bool)
    div_step = np.full(B, -1, dtype=np.int64)
    # Divergence bookkeeping. On the host (numpy, torch on the CPU) the per-step test costs nothing
    # to read, and the freeze runs only in a step where some run failed. On an accelerator, reading it
    # would synchronise the device every step; there the test and the freeze (a mask, the identical
    # arithmetic: where(ok, new, old) is new wherever ok) run on the device every step, and the host
    # reads the flags once, after the loop.
    on_device = _DEVICE_DIVERGENCE if _DEVICE_DIVERGENCE is not None else _device_type(w) not in ("cpu", None)
    if on_device:
        alive_d = xp.ones((B,), dtype=xp.bool, device=_device_of(w))
        div_d = xp.full((B,), -1, dtype=xp.int64, device=_device_of(w))

    def record(w_, r2_):
        u_ = w_ / xp.sqrt(r2_)
        losses.append(0.5 * xp.sum(av * u_ * u_, axis=-1))
        norms.append(r2_[:, 0])
        if keep_directions:
            dirs.append(u_)

    r2 = _rowdot(xp, w, w)
    record(w, r2)
    # overflow in a diverging run is detected and reported below: numpy need not warn about it
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(n_steps):
            r = xp.sqrt(r2)
            u = w / r
            au = av * u
            q = _rowdot(xp, u, au)
            gs = au - q * u
            if noise > 0:
                xi = rng.normal((B, d))
                xi = xi - _rowdot(xp, xi, u) * u
                if noise_kind == "loss_scaled":
                    # 2 (F(u) - F_min) = sum_i (a_i - a_min) u_i^2: summing non-negative terms keeps it
                    # accurate near the minimum, where u^T A u - a_min would be cancellation noise
                    gs = gs + noise * xp.sqrt(_rowdot(xp, a_shift * u, u)) * xi
                elif noise_kind == "isotropic":
                    gs = gs + noise * xi
                else:
                    gs = gs + noise * xi / xp.sqrt(_rowdot(xp, xi, xi))
            if mode == "projected":
                w_new = w - lr * gs
            else:
                step = gs / r
                if use_wd:
                    step = step + wdv * w
                if momentum:
                    buf = momentum * buf + step
                    step = buf
                w_new = w - lr * step
            r2_new = _rowdot(xp, w_new, w_new)
            if mode != "sgd":
                target = rho0 if mode == "fixed_elr" else 1.0
                w_new = w_new * (target / xp.sqrt(r2_new))
                r2_new = _rowdot(xp, w_new, w_new)
            if on_device:
                ok_d = xp.isfinite(r2_new[:, 0]) & (r2_new[:, 0] > 0)
                div_d = xp.where(alive_d & ~ok_d, xp.full_like(div_d, t + 1), div_d)
                alive_d = alive_d & ok_d
                keep = ok_d[:, None]
                w_new = xp.where(keep, w_new, w)
                r2_new = xp.where(keep, r2_new, r2)
                buf = xp.where(keep, buf, xp.zeros_like(buf))
                ok = None
            else:
                ok = be.to_numpy(xp.isfinite(r2_new[:, 0]) & (r2_new[:, 0] > 0)).astype(bool)
            if ok is not None and not ok.all():
                newly = alive & ~ok
                div_step[newly] = t + 1
                alive &= ok
                keep = be.asarray(ok.astype(float)).reshape(B, 1) > 0
                w_new = xp.where(keep, w_new, w)
                r2_new = xp.where(keep, r2_new, r2)
                buf = xp.where(keep, buf, xp.zeros_like(buf))
            if (t + 1) % record_every == 0:
                # angle between w_t and w_{t+1}: 2 atan2(|u'-u|, |u'+u|) is accurate for small angles
                u_new = w_new / xp.sqrt(r2_new)
                dm = u_new - u
                dp = u_new + u
                angles.append(2.0 * xp.atan2(xp.sqrt(xp.sum(dm * dm, axis=-1)), xp.sqrt(xp.sum(dp * dp, axis=-1))))
                record(w_new, r2_new)
            w, r2 = w_new, r2_new
    if on_device:
        alive, div_step = be.to_numpy(alive_d).astype(bool), be.to_numpy(div_d).astype(np.int64)

    stack = xp.stack
    return SphereRun(
        w=w, buf=buf, loss=stack(losses, axis=0), sq_norm=stack(norms, axis=0),
        # an empty angle record (n_steps < record_every) must live on the weights' device (CUDA)
        angle=stack(angles, axis=0) if angles else xp.zeros((0, B), dtype=be.float_dtype, device=_device_of(w)),
        directions=stack(dirs, axis=0) if keep_directions else None,
        steps=np.arange(n_rec) * record_every, diverged=~alive, diverged_step=div_step,
    )


# --------------------------------------------------------------------------------------------
# Closed forms


def projected_threshold(a_min: float, a_max: float) -> float:
    """Largest ELR at which projected GD on ``F(u) = u^T A u/2`` is locally stable at ``e_1``.

    Linearising ``u' = (u - elr grad_S F(u))/||.||`` at ``u = e_1 + v``, ``v ⟂ e_1``, gives
    ``v_i' = (1 - elr (a_i - a_min)) v_i`` (the renormalisation is second order), stable iff
    ``elr (a_max - a_min) < 2``. With the Rayleigh quotient ``u^T A u`` (no 1/2) the gradient doubles
    and the threshold halves to ``1/(a_max - a_min)``.

    >>> projected_threshold(1.0, 3.0)
    1.0
    """
    a_min = check_range("a_min", a_min)
    a_max = check_range("a_max", a_max)
    if not a_max > a_min:
        raise ValueError(f"a_max={a_max!r} is out of range: a_max must be > a_min={a_min!r}")
    return 2.0 / (a_max - a_min)


def scale_invariance_ratios(c: float) -> np.ndarray:
    """``[cos(grad L(w), w), |grad L(c w)|/|grad L(w)|, ||Hess L(c w)||/||Hess L(w)||] = [0, 1/c, 1/c^2]``
    for a scale-invariant ``L`` (differentiate ``L(c w) = L(w)`` once and twice in ``w``, and in ``c``).

    >>> scale_invariance_ratios(2.0).tolist()
    [0.0, 0.5, 0.25]
    """
    c = check_range("c", c, 0.0, None, low_open=True)
    return np.array([0.0, 1.0 / c, 1.0 / c**2])


def effective_lr(lr: float, rho0: float) -> float:
    """Effective learning rate ``lr / rho0^2`` of SGD at weight norm ``rho0`` on a scale-invariant loss.

    ``grad L(w) = grad_S F(u) / ||w||`` (``u = w/||w||``), so the step ``w - lr grad L(w)`` moves ``u``
    as ``u - (lr/||w||^2) grad_S F(u)`` before renormalisation: projected SGD on the unit sphere with
    step ``lr / rho0^2`` (Kodryan et al. 2022, arXiv 2209.03695, Sec. 3).

    >>> effective_lr(0.5, 2.0)
    0.125
    """
    lr = check_range("lr", lr, 0.0, None, low_open=True)
    rho0 = check_range("rho0", rho0, 0.0, None, low_open=True)
    return lr / rho0**2


def period_exponent() -> float:
    """Log-log slope of the training period against ``eta wd`` if the period is ``~ 1/(eta wd)``:
    the quiet phase lasts while the norm decays by ``(1 - eta wd)^2`` per step from one spike's
    norm jump ``R`` to the next instability, ``T = log R / (-2 log(1 - eta wd)) ~ log R / (2 eta wd)``
    (proofs_check), i.e. ``-1`` at a fixed jump ``R`` (Lobacheva et al. 2021, arXiv 2106.15739)."""
    return -1.0


def wd_equilibrium(eta: float, wd: float, G: float = 1.0) -> np.ndarray:
    """Equilibrium of SGD with weight decay on a scale-invariant loss of sphere-gradient norm ``G``.

    ``w' = (1 - eta wd) w - eta g`` with ``g ⟂ w``, ``||g|| = G/||w||`` gives the exact norm recursion
    ``x' = (1 - eta wd)^2 x + eta^2 G^2 / x`` for ``x = ||w||^2``, whose fixed point is
    ``x* = eta G / sqrt(eta wd (2 - eta wd))``; the ELR there is ``eta/x* = sqrt(eta wd (2 - eta wd))/G``
    and the angle between ``w`` and ``w'`` is ``arccos(1 - eta wd)`` (about ``sqrt(2 eta wd)``),
    independent of ``G``.

    Args:
      eta: learning rate ``eta`` in ``(0, inf)``; wd: weight decay in ``(0, inf)`` with
        ``eta wd < 1``; G: sphere-gradient norm ``G > 0``.

    Returns:
      ``[x*, elr*, angle*]`` (angle in radians per step).

    References: van Laarhoven 2017 (arXiv 1706.05350); Wan et al. 2021 (arXiv 2006.08419).

    >>> np.round(wd_equilibrium(0.1, 0.5, 1.0), 6).tolist()
    [0.320256, 0.31225, 0.31756]
    """
    eta = check_range("eta", eta, 0.0, None, low_open=True)
    wd = check_range("wd", wd, 0.0, None, low_open=True)
    G = check_range("G", G, 0.0, None, low_open=True)
    k = eta * wd
    if not k < 1:
        raise ValueError(f"eta*wd={k!r} is out of range: eta*wd must be in (0, 1)")
    x = eta * G / math.sqrt(k * (2 - k))
    return np.array([x, eta / x, math.acos(1 - k)])


def _momentum_moment_matrix(eta: float, wd: float, mu: float) -> tuple[np.ndarray, np.ndarray]:
    """One step of the second moments ``(E||w||^2, E<w,m>, E||m||^2)`` of heavy-ball SGD with wd.

    ``m' = mu m + g + wd w``, ``w' = w - eta m' = (1 - eta wd) w - eta mu m - eta g``; the gradient
    ``g`` is tangent (``<g, w> = 0``), has ``E[g | w, m] = 0`` and power ``s = E||g||^2``, so the
    moments obey ``z' = M z + s n``. Returns ``(M, n)``.
    """
    c = 1 - eta * wd
    M = np.array([
        [c * c, -2 * c * eta * mu, eta**2 * mu**2],
        [c * wd, c * mu - eta * mu * wd, -eta * mu**2],
        [wd**2, 2 * wd * mu, mu**2],
    ])
    n = np.array([eta**2, -eta, 1.0])
    return M, n


def wd_equilibrium_momentum(eta: float, wd: float, mu: float, G: float = 1.0) -> np.ndarray:
    """Equilibrium of heavy-ball SGD with weight decay on a scale-invariant loss (``||g|| = G/||w||``).

    Derived here: the moments ``z = (E||w||^2, E<w,m>, E||m||^2)`` obey ``z' = M z + s n``
    (:func:`_momentum_moment_matrix`) with gradient power ``s = G^2/||w||^2``. At the fixed point
    ``z = s K``, ``K = (I - M)^{-1} n``, so ``x* = ||w||^2 = G sqrt(K_1)`` (closing ``E 1/||w||^2`` as
    ``1/E||w||^2``, exact at ``mu = 0`` and accurate when ``||w||`` concentrates: large ``d``, small
    ``eta wd``), the ELR is ``eta / x*``, and ``cos angle = E<w, w'>/E||w||^2 = 1 - eta wd - eta mu
    K_2/K_1``. For small ``eta wd`` the angle is ``sqrt(2 eta wd / (1 + mu))`` (Wan et al. 2021).
    At ``mu = 0`` it reduces to :func:`wd_equilibrium`.

    Returns:
      ``[x*, elr*, angle*]``.
    """
    eta = check_range("eta", eta, 0.0, None, low_open=True)
    wd = check_range("wd", wd, 0.0, None, low_open=True)
    mu = check_range("mu", mu, 0.0, 1.0, high_open=True)
    G = check_range("G", G, 0.0, None, low_open=True)
    if not eta * wd < 1:
        raise ValueError(f"eta*wd={eta * wd!r} is out of range: eta*wd must be in (0, 1)")
    M, n = _momentum_moment_matrix(eta, wd, mu)
    K = np.linalg.solve(np.eye(3) - M, n)
    x = G * math.sqrt(K[0])
    cos = 1 - eta * wd - eta * mu * K[1] / K[0]
    return np.array([x, eta / x, math.acos(cos)])


def manifold_sharpness(phi: Any, alpha: float) -> Any:
    """Sphere sharpness ``S(phi) = 1 + alpha cos^2 phi`` of the sharpness toy on its minimum manifold.

    The toy (d = 3) is ``F(u) = u_3^2 (1 + alpha u_1^2) / 2``: its minima on the sphere are the
    equator ``u = (cos phi, sin phi, 0)``; there ``grad F = 0`` so the Riemannian Hessian is the
    Euclidean one restricted to the tangent plane, whose only nonzero entry is
    ``d^2 F / d u_3^2 = 1 + alpha cos^2 phi`` (along ``e_3``; the equator direction is flat).
    The flattest minima are ``phi = +-pi/2`` with ``S = 1``.
    """
    alpha = check_range("alpha", alpha, 0.0, None, low_open=True)
    return 1.0 + alpha * np.cos(phi) ** 2


def sharpness_toy_grad(w: Array, alpha: float) -> Array:
    """``grad L(w)`` of the scale-invariant sharpness toy ``L(w) = F(w/||w||)`` (see :func:`manifold_sharpness`)."""
    xp = _xp_of(w)
    r = xp.sqrt(xp.sum(w * w, axis=-1, keepdims=True))
    u = w / r
    u1, u3 = u[..., 0:1], u[..., 2:3]
    gF = xp.concat([alpha * u1 * u3**2, xp.zeros_like(u1), u3 * (1 + alpha * u1**2)], axis=-1)
    return (gF - xp.sum(gF * u, axis=-1, keepdims=True) * u) / r


def _fd_rel_step(eps: float) -> float:
    """Relative central-difference step: 1e-5 in float64; ``eps^(1/3)`` (~5e-3) in float32, where
    the round-off of a difference of gradients, ``~eps/h``, would swamp a 1e-5 step (``eps^(1/3)``
    balances it against the ``O(h^2)`` truncation, for a total error ``~eps^(2/3)``)."""
    return max(1e-5, eps ** (1.0 / 3.0))


def _fd_top_hessian_eig(grad_fn, w: Array, rel_h: float | None = None) -> Array:
    """Top eigenvalue of ``Hess L(w)`` (batched) from central differences of ``grad_fn``.

    Central differences are second order: with step ``h = rel_h ||w||`` the error is
    ``O(h^2 ||D^3 L||)``, about 1e-10 relative in float64 (``rel_h = 1e-5``), far below every
    tolerance that uses it; in float32 about ``eps^(2/3)`` ~ 2e-5 (see :func:`_fd_rel_step`).
    """
    xp = _xp_of(w)
    if rel_h is None:
        rel_h = _fd_rel_step(float(xp.finfo(w.dtype).eps))
    d = int(w.shape[-1])
    r = xp.sqrt(xp.sum(w * w, axis=-1, keepdims=True))
    h = rel_h * r
    cols = []
    for j in range(d):
        e = xp.zeros_like(w)
        e[..., j] = 1.0
        cols.append((grad_fn(w + h * e) - grad_fn(w - h * e)) / (2 * h))
    H = xp.stack(cols, axis=-1)
    H = 0.5 * (H + xp.permute_dims(H, (0, 2, 1)))
    return xp.linalg.eigvalsh(H)[..., -1]


def simulate_sharpness_toy(w0: Array, n_steps: int, *, eta: float, wd: float, alpha: float,
                           record_every: int = 1, backend: Backend | str | None = None) -> dict:
    """Full-batch GD with weight decay, ``w' = (1 - eta wd) w - eta grad L(w)``, on the sharpness toy.

    Batched over the rows of ``w0`` (``(B, 3)``). The weights are recorded every ``record_every``
    steps; afterwards the curvature at all recorded points is measured in one batched pass by central
    differences of the gradient. Returns numpy arrays ``(n_rec, B)``: ``steps``, ``sq_norm``
    ``||w||^2``, ``lam_max`` (top Hessian eigenvalue of ``L`` at ``w``), ``sphere_sharpness =
    ||w||^2 lam_max``, the same at the nearest minimum (``u_3`` set to 0, norm kept):
    ``lam_max_manifold`` and ``manifold_sharpness``; ``u3`` (the off-manifold coordinate of ``u``) and
    ``phi`` (the azimuth of ``u``). Divergence (non-finite or zero weights) is reported in
    ``diverged`` / ``diverged_step``.
    """
    be = backend if isinstance(backend, Backend) else get_backend(backend or "numpy")
    xp = be.xp
    eta = check_range("eta", eta, 0.0, None, low_open=True)
    wd = check_range("wd", wd, 0.0, None)
    alpha = check_range("alpha", alpha, 0.0, None, low_open=True)
    n_steps = check_int("n_steps", n_steps, 0)
    record_every = check_int("record_every", record_every, 1)
    w = be.asarray(w0)
    if w.ndim != 2 or int(w.shape[1]) != 3:
        raise ValueError(f"w0 has shape {tuple(w.shape)}: w0 must have shape (B, 3)")
    _check_w(w, "w0")
    B = int(w.shape[0])
    grad = lambda x: sharpness_toy_grad(x, alpha)  # noqa: E731
    steps, ws = [], []
    div_step = -1
    for t in range(n_steps + 1):
        if t % record_every == 0:
            steps.append(t)
            ws.append(w)
        if t == n_steps:
            break
        w_new = (1 - eta * wd) * w - eta * grad(w)
        r2 = xp.sum(w_new * w_new, axis=-1)
        if not bool(xp.all(xp.isfinite(r2) & (r2 > 0))):
            div_step = t + 1
            break
        w = w_new
    W = xp.reshape(xp.stack(ws), (-1, 3))
    sq = xp.sum(W * W, axis=-1)
    wm = W * be.asarray(np.array([1.0, 1.0, 0.0]))
    wm = wm * xp.sqrt(sq[:, None] / xp.sum(wm * wm, axis=-1, keepdims=True))
    n_rec = len(steps)
    shape = (n_rec, B)
    lam = be.to_numpy(_fd_top_hessian_eig(grad, W)).reshape(shape)
    lam_m = be.to_numpy(_fd_top_hessian_eig(grad, wm)).reshape(shape)
    sqn = be.to_numpy(sq).reshape(shape)
    Wn = be.to_numpy(W).reshape(n_rec, B, 3)
    return dict(steps=np.array(steps), sq_norm=sqn, lam_max=lam, sphere_sharpness=sqn * lam,
                lam_max_manifold=lam_m, manifold_sharpness=sqn * lam_m, u3=Wn[..., 2] / np.sqrt(sqn),
                phi=np.arctan2(Wn[..., 1], Wn[..., 0]), diverged=div_step >= 0, diverged_step=div_step)


# --------------------------------------------------------------------------------------------
# Claims



# initial points are drawn from a stream offset from the noise stream's seed: drawing both from the
# same seed would make the first noise vector parallel to w0
_INIT_SEED = 1_000_003


def _near_e1(be: Backend, B: int, d: int, eps: float, seed: int) -> Array:
    """``B`` unit vectors ``e_1 + eps xi`` (normalised), ``xi ~ N(0, I)``: starts near the minimum."""
    xp = be.xp
    z = be.rng(seed + _INIT_SEED).normal((B, d)) * eps
    e1 = be.asarray(np.eye(d)[0])
    w = e1 + z
    return w / xp.sqrt(xp.sum(w * w, axis=-1, keepdims=True))


# ---- sphere.scale_invariance --------------------------------------------------------------


def _bn_mlp_loss(W1, X, y, w2):
    """Loss of a one-hidden-layer MLP whose first layer feeds train-mode BatchNorm (no affine).

    ``h = BN(X W1^T)`` with batch statistics and ``eps = 0`` (``eps > 0`` breaks exact scale
    invariance by a relative ``O(eps / var)``), ``f = tanh(h) w2``, ``L = mean (f - y)^2 / 2``.
    ``L`` is invariant under ``W1 -> c W1`` (each BN unit divides by its own standard deviation).
    """
    import torch

    z = X @ W1.T
    # train-mode BatchNorm written out: torch's batch_norm refuses eps = 0 in training
    zc = z - torch.mean(z, dim=0, keepdim=True)
    h = zc / torch.sqrt(torch.mean(zc * zc, dim=0, keepdim=True))
    f = torch.tanh(h) @ w2
    return 0.5 * torch.mean((f - y) ** 2)


@dataclass(frozen=True)
class ScaleInvarianceParams(Params):
    # the domain keeps c away from 1, where every power of c is 1 and no exponent can be told apart
    c: float = param(3.0, low=0, low_open=True, domain=(1.5, 10.0), log=True, doc="rescaling factor c")
    d: int = param(8, low=2, high=256, integer=True, domain=(2, 32), doc="toy dimension d")


def _grad_and_hessian(fn, w):
    """Gradient and dense Hessian of a scalar ``fn`` at ``w`` by double backpropagation (one row per
    coordinate; the sizes here are <= 256). ``torch.func.hessian`` gives the same matrix, but its first
    call imports torch._dynamo (~3 s measured here), more than the claim's whole budget."""
    import torch

    w = w.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(fn(w), w, create_graph=True)
    rows = [torch.autograd.grad(g[i], w, retain_graph=True)[0] for i in range(w.numel())]
    return g.detach(), torch.stack(rows).detach()


def _scale_invariance_tolerance(c: float, be: Backend) -> float:
    # each Hessian entry is a sum of ~100 flops (~1e2 eps relative), amplified by the scale c or 1/c
    return be.roundoff(1e3 * max(1.0, c, 1 / c))


def _measure_scale_invariance(p: ScaleInvarianceParams, be: Backend, seed: int) -> Measurement:
    import torch

    g = be.rng(seed)
    dev, dt = be.device, be.float_dtype
    a = torch.as_tensor(rayleigh_spectrum(-1.0, 2.0, p.d), dtype=dt, device=dev)
    toy = lambda w: 0.5 * torch.sum(a * w * w) / torch.sum(w * w)  # noqa: E731
    X, y = g.normal((16, 4)), g.normal((16,))
    w2 = g.normal((6,))
    net = lambda W: _bn_mlp_loss(W.reshape(6, 4), X, y, w2)  # noqa: E731
    nrm = torch.linalg.vector_norm
    fro = torch.linalg.matrix_norm
    tol = _scale_invariance_tolerance(p.c, be)
    out, same_direction = {}, True
    for name, fn, w in (("toy", toy, g.normal((p.d,))), ("bn_mlp", net, g.normal((24,)))):
        gw, Hw = _grad_and_hessian(fn, w)
        gc, Hc = _grad_and_hessian(fn, p.c * w)
        out[name] = [float(torch.abs(torch.dot(gw, w)) / (nrm(gw) * nrm(w))),
                     float(nrm(gc) / nrm(gw)), float(fro(Hc) / fro(Hw))]
        # the identities are between vectors and matrices, not only their sizes: grad L(c w) and
        # Hess L(c w) must point the way grad L(w) and Hess L(w) do (scale-free, no exponent used)
        same_direction &= bool(nrm(gc / nrm(gc) - gw / nrm(gw)) <= tol)
        same_direction &= bool(fro(Hc / fro(Hc) - Hw / fro(Hw)) <= tol)
    return Measurement(value=np.array(out["toy"] + out["bn_mlp"]),
                       checks={"gradient_and_hessian_keep_their_direction": same_direction},
                       info={"toy": out["toy"], "bn_mlp": out["bn_mlp"]})


register(Claim(
    id="sphere.scale_invariance",
    statement=("For a scale-invariant loss L(c w) = L(w): <grad L(w), w> = 0, grad L(c w) = grad L(w)/c and "
               "Hess L(c w) = Hess L(w)/c^2; measured with autograd gradients and Hessians at w and c w, for the "
               "Rayleigh toy in dimension d and a BatchNorm MLP with eps = 0 (BatchNorm's default eps > 0 breaks "
               "them by O(eps/var)). Value, per model: [|cos(grad L(w), w)|, |grad L(c w)|/|grad L(w)|, "
               "||Hess L(c w)||/||Hess L(w)||], predicted [0, 1/c, 1/c^2]; a check asks grad L(c w) and "
               "Hess L(c w) to keep the direction of grad L(w) and Hess L(w)."),
    reference="Differentiate L(c w) = L(w) in w and in c; Arora, Li, Lyu 2019 (arXiv 1812.03981), Lemma 2.4",
    params=ScaleInvarianceParams,
    predicted=lambda p: np.tile(scale_invariance_ratios(p.c), 2),
    measured=_measure_scale_invariance,
    tolerance=lambda p, m, be: Tolerance(_scale_invariance_tolerance(p.c, be),
                                         "round-off: the identities hold exactly; each entry of a float Hessian "
                                         "of ~100 flops carries ~1e2 eps, amplified by the scale c or 1/c "
                                         "(relative per entry, absolute for the predicted 0)"),
    error=relative_errors,
    mutants={
        "gradient unchanged by scaling (degree 0)": lambda p: np.tile([0.0, 1.0, p.c**-2], 2),
        "Hessian scales like the gradient, 1/c": lambda p: np.tile([0.0, 1 / p.c, 1 / p.c], 2),
        "scales like a quadratic loss (grad x c, Hessian x 1)": lambda p: np.tile([0.0, p.c, 1.0], 2),
    },
    closed_forms=("scale_invariance_ratios",),
    sweep="c", sweep_values=(1.5, 3.0, 10.0),
    summary=lambda v: float(np.asarray(v)[1]), summary_label="|grad L(c w)| / |grad L(w)| (Rayleigh toy)",
    backends=("torch",),
))


# ---- sphere.fixed_elr_is_projected_sgd ------------------------------------------------------


def _bn_mlp_losses(W, X, y, w2):
    """Per-network losses of :func:`_bn_mlp_loss`, batched: ``W`` is ``(B, h, p)``, ``X`` ``(m, p)`` or
    ``(B, m, p)``, ``y`` ``(m,)`` or ``(B, m)``, ``w2`` ``(h,)``; returns ``(B,)``. The networks are
    independent, so the gradient of the summed loss is the stack of their gradients."""
    import torch

    z = torch.matmul(X, W.mT)                                  # (B, m, h)
    zc = z - torch.mean(z, dim=-2, keepdim=True)
    h = zc / torch.sqrt(torch.mean(zc * zc, dim=-2, keepdim=True))
    f = torch.tanh(h) @ w2
    return 0.5 * torch.mean((f - y) ** 2, dim=-1)


@dataclass(frozen=True)
class FixedELRParams(Params):
    lr: float = param(0.5, low=0, low_open=True, domain=(0.05, 2.0), log=True, doc="learning rate lr of the SGD step")
    # the domain keeps rho0 away from 1, where lr, lr/rho0 and lr/rho0^2 coincide
    rho0: float = param(3.0, low=0, low_open=True, domain=(1.5, 10.0), log=True, doc="fixed weight norm rho0")
    batch: int = param(8, low=2, high=32, integer=True, domain=(4, 16), doc="minibatch size (of 32 points)")
    n_steps: int = param(30, low=1, high=1000, integer=True, domain=(10, 50), doc="SGD steps per run")


_ELR_RUNS, _ELR_N, _ELR_H, _ELR_P = 8, 32, 6, 4


def _measure_fixed_elr(p: FixedELRParams, be: Backend, seed: int) -> Measurement:
    import torch

    g = be.rng(seed)
    X, y, w2 = g.normal((_ELR_N, _ELR_P)), g.normal((_ELR_N,)), g.normal((_ELR_H,))
    W = g.normal((_ELR_RUNS, _ELR_H, _ELR_P))
    fro = lambda A: torch.sqrt(torch.sum(A * A, dim=(-2, -1), keepdim=True))  # noqa: E731
    W = p.rho0 * W / fro(W)
    idx = g.integers(0, _ELR_N, (p.n_steps, p.batch))
    Ws = [W]
    # SGD at the fixed norm rho0: a step of lr on the minibatch loss, then renormalisation
    for t in range(p.n_steps):
        Wt = Ws[-1].detach().requires_grad_(True)
        (gW,) = torch.autograd.grad(_bn_mlp_losses(Wt, X[idx[t]], y[idx[t]], w2).sum(), Wt)
        Wn = Ws[-1] - p.lr * gW
        Ws.append(p.rho0 * Wn / fro(Wn))
    Wst = torch.stack(Ws)                                       # (T + 1, B, h, p)
    # Independently: the sphere gradient at the unit-norm point u_t = w_t / rho0 (autograd of the same
    # minibatch loss, evaluated on the unit sphere), and the step s_t of projected SGD
    # u' = (u - s g_S)/||.|| that reproduces u_{t+1}: since g_S is tangent, <u', u> = 1/N and
    # <u', -g_S> = s |g_S|^2 / N, so s = <u', -g_S> / (|g_S|^2 <u', u>).
    u = (Wst[:-1] / p.rho0).reshape(-1, _ELR_H, _ELR_P).detach().requires_grad_(True)
    Xb = X[idx].repeat_interleave(_ELR_RUNS, dim=0)             # (T B, batch, p)
    yb = y[idx].repeat_interleave(_ELR_RUNS, dim=0)
    (gS,) = torch.autograd.grad(_bn_mlp_losses(u, Xb, yb, w2).sum(), u)
    u = u.detach().reshape(p.n_steps * _ELR_RUNS, -1)
    gS = gS.reshape(p.n_steps * _ELR_RUNS, -1)
    un = (Wst[1:] / p.rho0).reshape(p.n_steps * _ELR_RUNS, -1)
    dot = lambda a, b: torch.sum(a * b, dim=-1)  # noqa: E731
    cos_step = dot(un, u)
    s = dot(un, -gS) / (dot(gS, gS) * cos_step)
    # what projected SGD cannot produce: the part of u_{t+1} outside span(u_t, g_S(u_t)), relative to
    # the step's angle (round-off when the update is a projected SGD step)
    gh = gS / torch.sqrt(dot(gS, gS))[:, None]
    perp = un - cos_step[:, None] * u - dot(un, gh)[:, None] * gh
    tan_angle = torch.sqrt(dot(gS, gS)) * s
    off = be.to_numpy(torch.sqrt(dot(perp, perp)) / tan_angle)
    sv = be.to_numpy(s)
    return Measurement(value=np.array([sv.min(), sv.max()]),
                       checks={"update_lies_in_span_of_u_and_sphere_gradient":
                               bool(off.max() <= _elr_roundoff(p, be, float(be.to_numpy(tan_angle).min())))},
                       info={"min_angle_per_step": float(np.arctan(be.to_numpy(tan_angle).min())),
                             "max_off_span_over_angle": float(off.max()), "runs": _ELR_RUNS})


def _elr_roundoff(p: FixedELRParams, be: Backend, min_tan_angle: float) -> float:
    # the gradient at w_t and at u_t = w_t/rho0 are two evaluations of a BatchNorm network whose sums run
    # over the minibatch and the P = h p weights: ~10 (batch + P) eps relative each; u_{t+1} is known to
    # ~10 P eps absolutely, relative to the step's angle that is 10 P eps / tan(angle)
    n_ops = 10 * (p.batch + _ELR_H * _ELR_P)
    return be.roundoff(n_ops) * (1.0 + 1.0 / max(min_tan_angle, 1e-300))


register(Claim(
    id="sphere.fixed_elr_is_projected_sgd",
    statement=("SGD with learning rate lr whose weights are renormalised to norm rho0 after each step moves the "
               "direction of a scale-invariant network (one hidden layer of 6 units feeding train-mode BatchNorm "
               "with eps = 0, tanh, squared loss, 8 runs, fresh minibatches of 32 points) exactly as projected SGD "
               "on the unit sphere with step elr = lr/rho0^2: the step s_t that projected SGD "
               "u' = (u - s g_S(u))/||.|| needs to reproduce each update, with g_S the autograd gradient of the same "
               "minibatch loss at the unit-norm point u_t = w_t/rho0, equals lr/rho0^2 at every step "
               "(value [min_t s_t, max_t s_t]), and no update leaves span(u_t, g_S(u_t)) beyond round-off."),
    reference=("Kodryan et al. 2022 (arXiv 2209.03695), Sec. 3; derived here: w - lr grad L(w) = rho0 (u - (lr/rho0^2) "
               "grad_S F(u)) for ||w|| = rho0 (proofs_check/check_sphere.py)"),
    params=FixedELRParams,
    predicted=lambda p: np.full(2, effective_lr(p.lr, p.rho0)),
    measured=_measure_fixed_elr,
    tolerance=lambda p, m, be: Tolerance(
        _elr_roundoff(p, be, math.tan(m.info["min_angle_per_step"])),
        "round-off of two autograd evaluations of the network (~10 (batch + P) eps relative) and of the "
        "step's tangent component relative to its angle (/ tan of the smallest angle per step)"),
    error=relative_errors,
    mutants={"lr / rho0 (norm not squared)": lambda p: np.full(2, p.lr / p.rho0),
             "lr (the norm does not rescale the step)": lambda p: np.full(2, p.lr)},
    closed_forms=("effective_lr",),
    sweep="rho0", sweep_values=(1.5, 3.0, 10.0),
    summary=lambda v: float(np.asarray(v)[0]), summary_label="step of the equivalent projected SGD",
    backends=("torch",),
))


# ---- sphere.convergence_threshold -----------------------------------------------------------


@dataclass(frozen=True)
class ThresholdParams(Params):
    # the domain keeps a_min away from 0, where 2/a_max (the shift by a_min forgotten) would be right
    a_min: float = param(1.0, domain=(0.25, 3.0), doc="smallest eigenvalue a_min of A")
    a_max: float = param(3.0, domain=(0.5, 6.0), doc="largest eigenvalue a_max of A")
    d: int = param(10, low=2, high=4096, integer=True, domain=(2, 40), doc="dimension d")

    def check(self) -> None:
        if not self.a_max > self.a_min:
            raise ValueError(f"a_max={self.a_max!r} is out of range: a_max must be > a_min={self.a_min!r}")
        if not self.a_max - self.a_min >= 0.1:
            raise ValueError(f"a_max - a_min={self.a_max - self.a_min!r} is out of range: must be >= 0.1")


def _stable(be: Backend, a: np.ndarray, elrs: np.ndarray, n_steps: int, seed: int) -> np.ndarray:
    """Per ELR: does projected GD started 1e-7 from e_1 approach it? (batched over ELRs)

    Stable iff ``|v_T| <= |v_{T/2}|`` and ``|v_T| < |v_0|`` (max-norms), ``v`` the component
    orthogonal to ``e_1``. In the linear regime every mode of a stable iteration shrinks (possibly to
    exactly 0), so the test cannot report a stable iteration unstable; an unstable top mode
    (multiplier > 1 in modulus) dominates ``v`` once the
    others have decayed and makes ``|v_T| > |v_{T/2}|``; far past the threshold ``v`` saturates at
    O(1) > ``|v_0|``.
    """
    B = len(elrs)
    w0 = _near_e1(be, B, len(a), 1e-7, seed)
    half = n_steps // 2
    r1 = simulate(a, w0, half, mode="projected", elr=elrs, record_every=half, backend=be)
    r2 = simulate(a, r1.w, half, mode="projected", elr=elrs, record_every=half, backend=be)
    # max-norm: a 2-norm would underflow to 0 once the components drop below 1e-154
    off = lambda w: np.max(np.abs(be.to_numpy(w)[:, 1:]), axis=1)  # noqa: E731
    v0, v1, v2 = off(w0), off(r1.w), off(r2.w)
    # "<=": a fast contraction can reach exactly 0 (or a fixed subnormal) by step T/2
    return (v2 <= v1) & (v2 < v0)


def bisect_projected_threshold(a: np.ndarray, backend: Backend | str | None = None, *, n_grid: int = 32,
                               rounds: int = 4, n_steps: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Largest stable ELR of projected GD at ``e_1``, by batched grid bisection of the simulation.

    Round 1 scans a log grid over ``[1e-4, 1e4] / max|a|`` ; each later round scans ``n_grid``
    points between the last stable and the first unstable ELR. Returns ``(elr_c, half_width)``.
    """
    be = backend if isinstance(backend, Backend) else get_backend(backend or "numpy")
    a = np.asarray(a, dtype=float)
    n_grid = check_int("n_grid", n_grid, 2)
    rounds = check_int("rounds", rounds, 1)
    n_steps = check_int("n_steps", n_steps, 2)
    if a.ndim != 1 or len(a) < 2 or not np.all(np.isfinite(a)) or not np.ptp(a) > 0:
        raise ValueError(f"a={a!r} is out of range: a must be >= 2 finite eigenvalues with a_max > a_min")
    scale = float(np.max(np.abs(a)))
    grid = np.geomspace(1e-4, 1e4, 2 * n_grid) / scale
    lo = hi = None
    for k in range(rounds):
        st = _stable(be, a, grid, n_steps, seed + k)
        unstable = np.flatnonzero(~st)
        if len(unstable) == 0 or unstable[0] == 0:
            raise RuntimeError("threshold not bracketed by the ELR grid")
        j = unstable[0]
        lo, hi = grid[j - 1], grid[j]
        grid = np.linspace(lo, hi, n_grid)
    return 0.5 * (lo + hi), 0.5 * (hi - lo)


def _measure_threshold(p: ThresholdParams, be: Backend, seed: int) -> Measurement:
    a = rayleigh_spectrum(p.a_min, p.a_max, p.d)
    elr_c, hw = bisect_projected_threshold(a, be, seed=seed)
    return Measurement(value=elr_c, stderr=hw, info={"bracket_half_width": hw})


register(Claim(
    id="sphere.convergence_threshold",
    statement=("Projected GD u' = (u - elr grad_S F(u))/||.|| on F(u) = u^T A u/2 is locally stable at the bottom "
               "eigenvector iff elr (a_max - a_min) < 2 (A = diag(linspace(a_min, a_max, d))); measured: the "
               "ELR bisected from simulations started 1e-7 from e_1. With the Rayleigh quotient u^T A u (no 1/2) "
               "the threshold is 1/(a_max - a_min)."),
    reference=("derived here (linearisation at e_1, proofs_check/check_sphere.py); "
               "Kodryan et al. 2022, arXiv 2209.03695"),
    params=ThresholdParams,
    predicted=lambda p: projected_threshold(p.a_min, p.a_max),
    measured=_measure_threshold,
    tolerance=lambda p, m, be: Tolerance(
        2 * m.info["bracket_half_width"] / max(abs(m.value) - m.info["bracket_half_width"], 1e-300) + 1e-9,
        "the threshold lies within the last bisection bracket [elr_c - w, elr_c + w] (relative: w/(elr_c - w)); "
        "x 2 for a grid point next to the threshold judged on the wrong side (its multiplier within ~1/T "
        "of 1); + 1e-9 for the O(1e-14) nonlinear corrections of the 1e-7 start"),
    mutants={"1/(a_max - a_min) (Rayleigh quotient without the 1/2)": lambda p: 1.0 / (p.a_max - p.a_min),
             "2/a_max (Euclidean Hessian, shift by a_min forgotten)": lambda p: 2.0 / p.a_max},
    closed_forms=("projected_threshold",),
    sweep="a_max", sweep_values=(2.0, 3.0, 5.0),
))


# ---- sphere.wd_equilibrium ------------------------------------------------------------------


@dataclass(frozen=True)
class WDEquilibriumParams(Params):
    eta: float = param(0.5, low=0, low_open=True, domain=(0.05, 1.0), log=True, doc="learning rate eta")
    wd: float = param(0.02, low=0, low_open=True, domain=(0.02, 0.2), log=True, doc="weight decay wd")
    G: float = param(2.0, low=0, low_open=True, domain=(0.1, 10.0), log=True, doc="sphere-gradient norm G")
    d: int = param(16, low=2, high=4096, integer=True, domain=(2, 64), doc="dimension d")

    def check(self) -> None:
        if not self.eta * self.wd < 1:
            raise ValueError(f"eta*wd={self.eta * self.wd!r} is out of range: eta*wd must be in (0, 1)")


def _equilibrium_steps(eta: float, wd: float) -> int:
    # the norm recursion contracts at rate |2(1 - k)^2 - 1| <= exp(-2k) per step (k = eta wd < 1/2);
    # 20/k steps leave exp(-40) of the initial offset
    return int(math.ceil(20.0 / (eta * wd))) + 10


def _measure_wd_eq(p: WDEquilibriumParams, be: Backend, seed: int) -> Measurement:
    T = _equilibrium_steps(p.eta, p.wd)
    w0 = random_directions(be, 4, p.d, seed + _INIT_SEED)
    r = simulate(np.zeros(p.d), w0, T, mode="sgd", eta=p.eta, wd=p.wd, noise=p.G, noise_kind="constant_norm",
                 record_every=T, backend=be, seed=seed)
    x = be.to_numpy(r.sq_norm[-1])
    ang = be.to_numpy(r.angle[-1])
    return Measurement(value=np.array([x.mean(), (p.eta / x).mean(), ang.mean()]),
                       diverged=bool(r.diverged.any()),
                       info={"n_steps": T, "spread_sq_norm": float(x.max() - x.min())})


register(Claim(
    id="sphere.wd_equilibrium",
    statement=("The scalar norm recursion of SGD with weight decay on a scale-invariant loss: w' = (1 - eta wd) w "
               "- eta g with g tangent and ||g|| = G/||w|| (simulated as a zero loss plus tangent noise of constant "
               "norm G in a random direction, in dimension d; any scale-invariant loss whose sphere gradient has "
               "constant norm G gives the same norms and angles) reaches ||w||^2 = eta G / sqrt(eta wd (2 - eta wd)), "
               "ELR eta/||w||^2 = sqrt(eta wd (2 - eta wd))/G and angular update per step arccos(1 - eta wd) "
               "(~ sqrt(2 eta wd), independent of G); predicted = [||w||^2, ELR, angle], per entry. With momentum "
               "mu the same moment closure gives ~ sqrt(2 eta wd/(1 + mu)) (wd_equilibrium_momentum; approximate, "
               "see tests)."),
    reference=("derived here from the norm recursion x' = (1 - eta wd)^2 x + eta^2 G^2/x; van Laarhoven 2017 "
               "(arXiv 1706.05350); Wan et al. 2021 (arXiv 2006.08419)"),
    params=WDEquilibriumParams,
    predicted=lambda p: wd_equilibrium(p.eta, p.wd, p.G),
    measured=_measure_wd_eq,
    tolerance=lambda p, m, be: Tolerance(1e-9 + be.roundoff(10 * m.info["n_steps"]),
                                         "the transient decays below exp(-40) in the 20/(eta wd) steps run; "
                                         "round-off ~10 eps per step (relative, per entry)"),
    error=relative_errors,
    mutants={
        "small-angle limit (x* = eta G/sqrt(2 eta wd), angle sqrt(2 eta wd))":
            lambda p: np.array([p.eta * p.G / math.sqrt(2 * p.eta * p.wd), math.sqrt(2 * p.eta * p.wd) / p.G,
                                math.sqrt(2 * p.eta * p.wd)]),
        "(1 - eta wd) not squared (x* = eta G/sqrt(eta wd))":
            lambda p: np.array([p.eta * p.G / math.sqrt(p.eta * p.wd), math.sqrt(p.eta * p.wd) / p.G,
                                math.acos(1 - p.eta * p.wd)]),
    },
    closed_forms=("wd_equilibrium",),
    sweep="wd", sweep_values=(0.02, 0.05, 0.2),
    summary=lambda v: float(v[2]), summary_label="angular update per step (rad)",
))


# ---- sphere.three_regimes -------------------------------------------------------------------


def lyapunov_at_minimum(elr: Any, sigma: float, b: float, d: int, n_nodes: int = 160) -> np.ndarray:
    """Top Lyapunov exponent at ``e_1`` of projected SGD with loss-scaled noise, two-level spectrum.

    For ``A = diag(a_min, a_min + b, ..., a_min + b)`` the linearisation at ``u = e_1 + v`` is
    ``v' = (1 - elr b) v + elr sigma sqrt(b) |v| xi``, ``xi ~ N(0, I_{d-1})`` (the loss-scaled noise
    ``sigma sqrt(2 (F - F_min)) P_u xi`` with ``2 (F - F_min) = b |v|^2``). It is rotation-invariant
    in ``v``, so ``log(|v'|/|v|)`` are i.i.d. with law
    ``(1/2) log[(1 - x + y z)^2 + y^2 Q]``, ``x = elr b``, ``y = elr sigma sqrt(b)``,
    ``z ~ N(0, 1)``, ``Q ~ chi^2_{d-2}``; its mean is the exponent, computed here by Gauss-Hermite
    (``z``) times generalised Gauss-Laguerre (``Q/2 ~ Gamma((d-2)/2)``) quadrature.
    Convergence to ``e_1`` (regime 1) holds iff the exponent is negative.

    Args:
      elr: effective learning rate(s); sigma: noise scale ``> 0``; b: ``a_max - a_min > 0``;
      d: dimension ``>= 3``; n_nodes: quadrature nodes per axis.
    """
    from scipy.special import gammaln, roots_genlaguerre, roots_hermitenorm

    sigma = check_range("sigma", sigma, 0.0, None, low_open=True)
    b = check_range("b", b, 0.0, None, low_open=True)
    d = check_int("d", d, 3)
    e = np.asarray(elr, dtype=float)
    for v in e.ravel():
        check_range("elr", v, 0.0, None, low_open=True)
    z, wz = roots_hermitenorm(n_nodes)
    wz = wz / np.sqrt(2 * np.pi)
    k = (d - 2) / 2.0
    g, wg = roots_genlaguerre(n_nodes, k - 1.0)
    wg = wg * np.exp(-gammaln(k))
    x = (e * b)[..., None, None]
    y = (e * sigma * math.sqrt(b))[..., None, None]
    val = 0.5 * np.log((1 - x + y * z[:, None]) ** 2 + y**2 * 2 * g[None, :])
    return np.sum(val * wz[:, None] * wg[None, :], axis=(-2, -1))


def regime_12_boundary(sigma: float, b: float, d: int) -> float:
    """The ELR where :func:`lyapunov_at_minimum` changes sign: the convergence / equilibrium boundary."""
    from scipy.optimize import brentq

    f = lambda e: float(lyapunov_at_minimum(e, sigma, b, d))  # noqa: E731
    hi = 1.0 / b
    while f(hi) < 0:
        hi *= 2
    lo = hi / 2
    while f(lo) > 0:
        lo /= 2
    return brentq(f, lo, hi, xtol=1e-12, rtol=1e-12)


def _growth_rates(be: Backend, elrs: np.ndarray, n_runs: int, n_steps: int, sigma: float, d: int,
                  seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error over runs of ``log(|v_T|/|v_0|)/T`` from ``v0`` off ``e_1``.

    Projected SGD with loss-scaled noise on ``A = diag(0, 1, ..., 1)``. In float64, starting
    ``v0 = 1e-80`` from ``e_1`` keeps ``|v|`` in ``[1e-150, 1e-10]`` for ``|log growth| < 160``:
    linear (corrections ``O(|v|^2)``) and clear of underflow, so the per-step log-growths are i.i.d.
    (the linearisation is rotation-invariant) and their mean over runs estimates the Lyapunov
    exponent. float32 (CUDA) underflows below ~1e-38, where ``1e-80`` would start at exactly
    ``e_1`` (log 0): there ``v0 = 1e-15`` keeps ``|v|`` in ``[1e-35, 1e-4]`` for ``|log growth| <
    25``. With ``a_min = 0`` no step subtracts nearly equal numbers (``u^T A u = |v|^2``), so the
    small scale costs no relative precision. A run that still under- or overflows (``|v|`` = 0 or
    not finite, far from the boundary) contributes its sign only: its growth is clipped to the
    range the start scale can resolve.
    """
    a = np.ones(d)
    a[0] = 0.0
    E = np.repeat(elrs, n_runs)
    v0 = 1e-80 if be.eps < 1e-10 else 1e-15
    w0 = _near_e1(be, len(E), d, v0, seed)
    r = simulate(a, w0, n_steps, mode="projected", elr=E, noise=sigma, noise_kind="loss_scaled",
                 record_every=n_steps, backend=be, seed=seed)
    off = lambda w: np.linalg.norm(be.to_numpy(w)[:, 1:], axis=1)  # noqa: E731
    with np.errstate(divide="ignore"):
        g = (np.log(off(r.w)) - np.log(off(w0))) / n_steps
    # |log growth| beyond -log(v0) cannot be resolved (underflow to 0 gives -inf): keep the sign
    lim = -math.log(v0) / n_steps
    g = np.clip(g, -lim, lim).reshape(len(elrs), n_runs)
    return g.mean(axis=1), g.std(axis=1, ddof=1) / math.sqrt(n_runs)


def measure_regime_12_boundary(sigma: float, d: int, backend: Backend | str | None = None,
                               seed: int = 0) -> tuple[float, float, dict]:
    """Bisect the convergence / equilibrium boundary from simulations (never the quadrature).

    Three batched rounds on ``A = diag(0, 1, ..., 1)``: a log grid brackets the sign change of the
    measured growth rate; a linear grid in that bracket locates it; a quadratic least-squares fit
    of the growth rate on 16 ELRs within +-10% of it gives the root and, by the delta method, its
    standard error. Returns ``(elr_12, stderr, info)``.
    """
    be = backend if isinstance(backend, Backend) else get_backend(backend or "numpy")
    sigma = check_range("sigma", sigma, 0.0, None, low_open=True)
    d = check_int("d", d, 3)
    grid = np.geomspace(1e-3, 1e3, 16)
    lam, _ = _growth_rates(be, grid, 8, 100, sigma, d, seed)
    j = int(np.flatnonzero(lam > 0)[0])
    grid = np.linspace(grid[max(j - 1, 0)], grid[j], 16)
    lam, _ = _growth_rates(be, grid, 16, 300, sigma, d, seed + 1)
    pos = np.flatnonzero(lam > 0)
    j = int(pos[0]) if len(pos) else len(grid) - 1
    j = max(j, 1)
    l0, l1 = lam[j - 1], lam[j]
    centre = grid[j - 1] + (grid[j] - grid[j - 1]) * (-l0 / (l1 - l0) if l1 != l0 else 0.5)
    grid = centre * np.linspace(0.9, 1.1, 16)
    lam, se = _growth_rates(be, grid, 32, 800, sigma, d, seed + 2)
    x = grid / centre - 1.0
    coef, cov = np.polyfit(x, lam, 2, w=1.0 / se, cov="unscaled")
    c2, c1, c0 = coef
    disc = c1 * c1 - 4 * c2 * c0
    # the root of the quadratic nearest the centre (the fit is monotone over the window)
    root = (-c1 + math.copysign(math.sqrt(max(disc, 0.0)), c1)) / (2 * c2) if abs(c2) > 1e-12 else -c0 / c1
    if abs(c2) > 1e-12:
        roots = np.roots(coef)
        roots = roots[np.isreal(roots)].real
        root = float(roots[np.argmin(np.abs(roots))])
    slope = 2 * c2 * root + c1
    # delta method: d root / d coef = -(root^2, root, 1) / slope
    J = -np.array([root**2, root, 1.0]) / slope
    root_se = float(math.sqrt(J @ cov @ J))
    return centre * (1 + root), centre * root_se, {"fit_slope": float(slope / centre), "window_centre": float(centre)}


@dataclass(frozen=True)
class ThreeRegimesParams(Params):
    sigma: float = param(1.5, low=0, low_open=True, domain=(1.0, 2.0), log=True,
                         doc="loss-scaled gradient-noise scale sigma")
    d: int = param(10, low=3, high=1024, integer=True, domain=(8, 20), doc="dimension d")


REGIME_FACTORS = (0.25, 2.0, 4.0, 8.0, 16.0, 64.0, 256.0, 1024.0)


def classify_regimes(elrs: np.ndarray, sigma: float, d: int, backend: Backend | str | None = None, *,
                     n_runs: int = 128, n_steps: int = 400, seed: int = 0, alpha: float = 1e-3,
                     loss_rtol: float = 0.02) -> dict:
    """Classify each ELR of projected SGD (loss-scaled noise, ``A = diag(0, 1, ..., 1)``) into a regime.

    Runs start ``1e-3`` from ``e_1``. With ``Lbar`` the loss averaged over steps ``[T/2, T]`` and runs:

    * 1 (convergence): the mean loss (= excess loss, ``F_min = 0``) fell by three orders of
      magnitude over the ``T`` steps;
    * 3 (divergence, random walk): ``u_1`` at step ``T`` is not rejected as uniform on the sphere
      (Kolmogorov-Smirnov test of ``(u_1 + 1)/2`` against ``Beta((d-1)/2, (d-1)/2)``, the law of a
      coordinate of a uniform unit vector, at level ``alpha``; runs are independent samples) and
      ``Lbar`` is within ``loss_rtol`` (2%) plus 4 standard errors of the sphere average ``tr A/(2d)``
      (the large-ELR law is close to, not exactly, uniform: with 1024 runs its mean loss is 0.3-1.2%
      below the sphere average for sigma in [1, 2], d in [6, 20], a bias a pure significance test
      would eventually detect);
    * 2 (chaotic equilibrium): otherwise.

    Stationarity is measured separately: the difference of the loss averages over ``[T/2, 3T/4)`` and
    ``[3T/4, T]`` in units of its standard error over runs (``stationarity_z``). ``u1`` holds the
    final ``u_1`` of every run, ``(n_elr, n_runs)``.
    """
    from scipy import stats as sps

    be = backend if isinstance(backend, Backend) else get_backend(backend or "numpy")
    elrs = np.asarray(elrs, dtype=float)
    sigma = check_range("sigma", sigma, 0.0, None, low_open=True)
    d = check_int("d", d, 3)
    n_runs = check_int("n_runs", n_runs, 2)
    n_steps = check_int("n_steps", n_steps, 8)  # recorded every 4 steps: the halves and quarters need rows
    a = np.ones(d)
    a[0] = 0.0
    E = np.repeat(elrs, n_runs)
    w0 = _near_e1(be, len(E), d, 1e-3, seed)
    r = simulate(a, w0, n_steps, mode="projected", elr=E, noise=sigma, noise_kind="loss_scaled",
                 record_every=4, backend=be, seed=seed)
    L = be.to_numpy(r.loss).reshape(-1, len(elrs), n_runs)
    u1 = be.to_numpy(r.w)[:, 0].reshape(len(elrs), n_runs)
    n = L.shape[0]
    h, q = n // 2, (3 * n) // 4
    avg = sphere_average_loss(a)
    beta = sps.beta((d - 1) / 2, (d - 1) / 2)
    out = {k: [] for k in ("regime", "final_loss", "mean_loss", "mean_loss_se", "ks_p", "stationarity_z")}
    for i in range(len(elrs)):
        per_run = L[h:, i, :].mean(axis=0)
        m, se = float(per_run.mean()), float(per_run.std(ddof=1) / math.sqrt(n_runs))
        diff = L[h:q, i, :].mean(axis=0) - L[q:, i, :].mean(axis=0)
        z = float(abs(diff.mean()) / max(diff.std(ddof=1) / math.sqrt(n_runs), 1e-300))
        p = float(sps.kstest((u1[i] + 1) / 2, beta.cdf).pvalue)
        final = float(L[-1, i, :].mean())
        if final < 1e-3 * float(L[0, i, :].mean()):
            reg = 1
        elif p >= alpha and abs(m - avg) <= loss_rtol * avg + 4 * se:
            reg = 3
        else:
            reg = 2
        for k, v in zip(out, (reg, final, m, se, p, z)):
            out[k].append(v)
    out = {k: np.array(v) for k, v in out.items()}
    out["elr"] = elrs
    out["u1"] = u1
    out["sphere_average"] = avg
    return out


def _measure_three_regimes(p: ThreeRegimesParams, be: Backend, seed: int) -> Measurement:
    e12, se, info = measure_regime_12_boundary(p.sigma, p.d, be, seed)
    elrs = e12 * np.array(REGIME_FACTORS)
    # below the boundary convergence takes ~1/elr steps (the drift rate at e_1 is elr b, b = 1):
    # the first ELR gets its own, longer run so that regime 1 can show within the test
    c1 = classify_regimes(elrs[:1], p.sigma, p.d, be, seed=seed + 3, n_runs=32,
                          n_steps=max(400, 4 * int(math.ceil(4.0 / elrs[0]))))
    c = classify_regimes(elrs[1:], p.sigma, p.d, be, seed=seed + 4)
    c = {k: (np.concatenate([np.atleast_1d(c1[k]), np.atleast_1d(c[k])]) if k not in ("sphere_average", "u1")
             else c[k]) for k in c}
    reg = c["regime"]
    three = np.flatnonzero(reg == 3)
    # the 2/3 boundary: the smallest grid ELR from which every larger grid ELR is regime 3
    tail = len(reg)
    while tail > 0 and reg[tail - 1] == 3:
        tail -= 1
    e23 = float(elrs[tail]) if tail < len(reg) else float("nan")
    eq = reg == 2
    checks = {
        "regime1_below_boundary": bool(reg[0] == 1),
        "regime2_exists": bool(eq.any()),
        "regime2_stationary": bool(np.all(c["stationarity_z"][eq] < 4.0)),
        "regime2_above_minimum": bool(np.all(c["mean_loss"][eq] > 4 * c["mean_loss_se"][eq])),
        "regime2_below_sphere_average":
            bool(np.all(c["mean_loss"][eq] < c["sphere_average"] - 4 * c["mean_loss_se"][eq])),
        "regime3_at_largest_elr": bool(reg[-1] == 3),
    }
    info.update(elr_12_stderr=se, elr_23=_json_safe(e23), grid=elrs, regimes=reg, ks_p=c["ks_p"], mean_loss=c["mean_loss"],
                sphere_average=c["sphere_average"], stationarity_z=c["stationarity_z"], n_regime3=len(three))
    return Measurement(value=e12, stderr=se, checks=checks, info=info)


register(Claim(
    id="sphere.three_regimes",
    statement=("Projected SGD on the sphere with loss-scaled minibatch-style noise sigma sqrt(2(F - F_min)) P_u xi "
               "on F(u) = u^T A u/2, A = diag(0, 1, ..., 1) in dimension d, passes as the ELR grows through "
               "(1) convergence to e_1 (Lyapunov exponent at e_1 negative), (2) a stationary chaotic equilibrium "
               "with mean loss above the minimum and below the sphere average (each by 4 standard errors), and "
               "(3) a random walk whose direction is not rejected as uniform (KS test of u_1 against Beta((d-1)/2,(d-1)/2) at level 1e-3, 128 runs) with "
               "the loss within 2% of its sphere average tr A/(2d) (it is close to, not exactly, uniform: 0.3-1.2% "
               "below the average with 1024 runs; asserted for d >= 8, since at d = 6 KS with 4096 runs rejects "
               "uniformity at p ~ 1e-3). predicted: the 1/2 boundary, the root of the exponent "
               "(1/2) E log[(1 - elr + elr sigma z)^2 + elr^2 sigma^2 chi^2_{d-2}]; measured: bisected from "
               "simulations; the 2/3 boundary (no closed form) is in info. The BatchNorm-network version was "
               "not built."),
    reference=("Kodryan et al. 2022 (arXiv 2209.03695), regimes; the 1/2 boundary and the noise model are "
               "derived here (proofs_check/check_sphere.py)"),
    params=ThreeRegimesParams,
    predicted=lambda p: regime_12_boundary(p.sigma, 1.0, p.d),
    measured=_measure_three_regimes,
    tolerance=lambda p, m, be: Tolerance(4 * m.stderr / max(abs(m.value) - 4 * m.stderr, 1e-300) + 1e-6,
                                         "4 standard errors of the fitted root (delta method on the "
                                         "quadratic fit of i.i.d. log-growth means), relative; 1e-6 quadrature"),
    mutants={
        "mean-square stability, elr = 2/(1 + sigma^2 (d - 1))": lambda p: 2.0 / (1.0 + p.sigma**2 * (p.d - 1)),
        "noise not projected on the tangent space (chi^2 with d - 1 dof)":
            lambda p: regime_12_boundary(p.sigma, 1.0, p.d + 1),
    },
    closed_forms=("regime_12_boundary", "lyapunov_at_minimum"),
    sweep="sigma", sweep_values=(1.0, 1.4, 2.0),
))


# ---- a BatchNorm network with a hand-written gradient (batched, both backends) ----------------


def bn_net_loss_grad(W: Array, X: Array, Y: Array, W2: Array, eps: float = 0.0) -> tuple[Array, Array]:
    """Loss and gradient of a BatchNorm MLP, batched over networks (leading axis ``K``).

    ``z = X W_k^T`` (``n x h``), train-mode BatchNorm without affine parameters
    ``hat z = (z - mean_n z) / sqrt(var_n z + eps)``, ``f = relu(hat z) W2^T`` (``n x c``, ``W2``
    fixed), ``L_k = mean_n CE(f, Y)`` with one-hot labels ``Y``. With ``eps = 0``, ``L_k`` is
    scale-invariant in ``W_k`` (row-wise, in fact). The backward pass is written out (BatchNorm:
    ``d z = (d hat z - mean d hat z - hat z mean(d hat z . hat z)) / sd``) so that one array program
    serves numpy and torch; tests check it against torch autograd.

    Args:
      W: ``(K, h, p)`` trained weights; X: ``(n, p)`` or ``(K, n, p)`` inputs; Y: ``(n, c)`` or
      ``(K, n, c)`` one-hot labels; W2: ``(c, h)`` or ``(K, c, h)`` fixed read-out; eps: BatchNorm's
      epsilon.

    Returns:
      ``(L, grad)`` of shapes ``(K,)`` and ``(K, h, p)``.
    """
    xp = _xp_of(W)
    n = int(X.shape[-2])  # the sample axis: X may carry a leading network axis
    # one read-out for all networks (c, h), or one per network (K, c, h)
    W2T = xp.permute_dims(W2, (1, 0)) if W2.ndim == 2 else xp.permute_dims(W2, (0, 2, 1))
    z = xp.matmul(X, xp.permute_dims(W, (0, 2, 1)))          # (K, n, h)
    zc = z - xp.mean(z, axis=1, keepdims=True)
    sd = xp.sqrt(xp.mean(zc * zc, axis=1, keepdims=True) + eps)
    hz = zc / sd
    act = xp.where(hz > 0, hz, xp.zeros_like(hz))
    f = xp.matmul(act, W2T)                                    # (K, n, c)
    fmax = xp.max(f, axis=-1, keepdims=True)
    ef = xp.exp(f - fmax)
    se = xp.sum(ef, axis=-1, keepdims=True)
    logp = f - fmax - xp.log(se)
    L = -xp.sum(logp * Y, axis=(1, 2)) / n
    dF = (ef / se - Y) / n
    dact = xp.matmul(dF, W2)                                   # (K, n, h)
    dhz = xp.where(hz > 0, dact, xp.zeros_like(dact))
    dz = (dhz - xp.mean(dhz, axis=1, keepdims=True) - hz * xp.mean(dhz * hz, axis=1, keepdims=True)) / sd
    grad = xp.matmul(xp.permute_dims(dz, (0, 2, 1)), X)       # (K, h, p)
    return L, grad


def bn_task(backend: Backend, seed: int, n: int = 32, p: int = 8, h: int = 16, c: int = 2,
            readout_scale: float = 3.0) -> tuple[Array, Array, Array, Array]:
    """Synthetic memorisation task and a network: ``X ~ N(0, I_p)``, random labels, fixed read-out.

    Returns ``(X, Y, W2, W0)``; ``W0`` is ``(h, p)`` standard normal.
    """
    g = backend.rng(seed)
    X = g.normal((n, p))
    labels = backend.to_numpy(g.integers(0, c, (n,))).astype(int)
    Y = backend.asarray(np.eye(c)[labels])
    W2 = g.normal((c, h), scale=readout_scale)
    W0 = g.normal((h, p))
    return X, Y, W2, W0


def simulate_bn_gd(W0: Array, X: Array, Y: Array, W2: Array, n_steps: int, *, eta: float, wd: Any,
                   backend: Backend | str | None = None) -> dict:
    """Full-batch GD with weight decay on :func:`bn_net_loss_grad`, batched over networks.

    ``W' = W - eta (grad L(W) + wd W)``, ``W0`` of shape ``(K, h, p)``, ``wd`` a scalar or ``(K,)``.
    Returns numpy ``loss`` and ``sq_norm`` (``||W||_F^2``) of shape ``(n_steps + 1, K)``, and
    ``diverged`` / ``diverged_step`` (non-finite or zero weights).
    """
    be = backend if isinstance(backend, Backend) else get_backend(backend or "numpy")
    xp = be.xp
    eta = check_range("eta", eta, 0.0, None, low_open=True)
    n_steps = check_int("n_steps", n_steps, 0)
    W = be.asarray(W0)
    K = int(W.shape[0])
    wdv = _as_batch_param("wd", wd, be, K, 0.0, False).reshape(K, 1, 1)
    X, Y, W2 = be.asarray(X), be.asarray(Y), be.asarray(W2)
    if bool(xp.any(xp.sum(W * W, axis=(1, 2)) == 0)):
        raise ValueError("W0 contains a zero weight matrix: W0 must have norm in (0, inf)")
    losses, norms = [], []
    div = -1
    # overflow in a diverging run is detected and reported: numpy need not warn about it
    with np.errstate(over="ignore", invalid="ignore"):
        return _bn_gd_loop(be, W, X, Y, W2, wdv, eta, n_steps, losses, norms, div)


def _bn_gd_loop(be, W, X, Y, W2, wdv, eta, n_steps, losses, norms, div):
    xp = be.xp
    for t in range(n_steps + 1):
        L, g = bn_net_loss_grad(W, X, Y, W2)
        losses.append(L)
        norms.append(xp.sum(W * W, axis=(1, 2)))
        if t == n_steps:
            break
        W = W - eta * (g + wdv * W)
        # checked every 64 steps (a host sync per step would stall CUDA); the exact first step is
        # recovered below from the recorded norms
        # the squared norm, not W, is tested: W can stay finite while ||W||^2 (and the loss) overflow
        sq_t = xp.sum(W * W, axis=(1, 2))
        if t % 64 == 63 and not bool(xp.all(xp.isfinite(sq_t) & (sq_t > 0))):
            norms.append(sq_t)
            losses.append(xp.full_like(L, float("nan")))
            div = t + 1
            break
    sq = be.to_numpy(xp.stack(norms))
    if div >= 0:
        bad = ~(np.isfinite(sq) & (sq > 0)).all(axis=1)
        div = int(np.flatnonzero(bad)[0])
    return dict(loss=be.to_numpy(xp.stack(losses)), sq_norm=sq, diverged=div >= 0, diverged_step=div)


# ---- sphere.periodic_behavior -----------------------------------------------------------------


def spike_onsets(sq_norm: np.ndarray, eta_wd: float, jump: float = 1.02, quiet: float = 0.1) -> np.ndarray:
    """Steps where a training cycle starts: the weight norm jumps after a quiet decay.

    A *jump* is a step with ``||w_{t+1}||^2 > jump ||w_t||^2`` (weight decay alone only shrinks the
    norm, by ``(1 - eta wd)^2``; gradients of an unstable step push it up). Jumps closer than
    ``quiet / (eta wd)`` steps to the previous jump belong to the same spike (a spike is a burst of
    a few unstable steps), so a new cycle starts only after the norm has decayed for a while.
    """
    eta_wd = check_range("eta_wd", eta_wd, 0.0, None, low_open=True)
    jump = check_range("jump", jump, 1.0, None, low_open=True)
    x = np.asarray(sq_norm, dtype=float)
    jumps = np.flatnonzero(x[1:] > jump * x[:-1]) + 1
    if len(jumps) == 0:
        return jumps
    gap = quiet / eta_wd
    onsets = [int(jumps[0])]
    for prev, j in zip(jumps[:-1], jumps[1:]):
        if j - prev > gap:
            onsets.append(int(j))
    return np.array(onsets)


@dataclass(frozen=True)
class PeriodicParams(Params):
    eta: float = param(1.0, low=0, low_open=True, domain=(0.5, 2.0), log=True, doc="learning rate eta")
    k_min: float = param(0.005, low=0, low_open=True, high=0.1, domain=(0.004, 0.006), log=True,
                         doc="smallest eta*wd; the grid is k_min * (1, 2, 4, 8)")
    n_tasks: int = param(12, low=2, high=64, integer=True, domain=(12, 14), doc="random tasks (data, init)")
    # at most 1e5 steps: loss and norm are recorded at every step for 4 n_tasks networks (2 x 200 MB at 64 tasks)
    n_steps: int = param(1600, low=100, high=100000, integer=True, domain=(1600, 2000), doc="GD steps")


def _measure_periodic(p: PeriodicParams, be: Backend, seed: int) -> Measurement:
    xp = be.xp
    ks = p.k_min * np.array([1.0, 2.0, 4.0, 8.0])
    tasks = [bn_task(be, seed * 1000 + j) for j in range(p.n_tasks)]
    # each task has its own read-out: one shared read-out whose two class rows happen to be alike
    # leaves every task of a seed unable to fit its labels (no cycles anywhere, ~1 seed in 10)
    W2 = xp.stack([t[2] for t in tasks for _ in ks])
    X = xp.stack([t[0] for t in tasks for _ in ks])
    Y = xp.stack([t[1] for t in tasks for _ in ks])
    W0 = xp.stack([t[3] for t in tasks for _ in ks])
    r = simulate_bn_gd(W0, X, Y, W2, p.n_steps, eta=p.eta, wd=np.tile(ks, p.n_tasks) / p.eta, backend=be)
    if r["diverged"]:
        return Measurement(value=float("nan"), diverged=True, diverged_step=r["diverged_step"])
    periods = np.full((p.n_tasks, len(ks)), np.nan)
    min_loss = np.full((p.n_tasks, len(ks)), np.nan)
    log_jump = np.full((p.n_tasks, len(ks)), np.nan)
    for j in range(p.n_tasks * len(ks)):
        ti, ki = divmod(j, len(ks))
        x = r["sq_norm"][:, j]
        on = spike_onsets(x, ks[ki])
        if len(on) >= 4:  # the first cycle is a transient from the initialisation: need >= 2 after it
            periods[ti, ki] = float(np.mean(np.diff(on)[1:]))
            # norm jump of each cycle: the norm's peak in the cycle over its value before the spike
            log_jump[ti, ki] = float(np.mean([math.log(x[a:b].max() / x[a - 1]) for a, b in zip(on[1:-1], on[2:])]))
            min_loss[ti, ki] = float(np.min(r["loss"][on[1]:on[-1], j]))
    # a task shows the periodic behaviour when it has cycles at every eta wd and the loss is nearly
    # minimised (below 0.05, vs log 2 = 0.69 for chance) within each cycle
    ok = np.all(np.isfinite(periods), axis=1) & np.all(min_loss < 0.05, axis=1)
    raw = np.array([loglog_slope(ks, periods[t]).slope for t in np.flatnonzero(ok)])
    log_corr = np.array([loglog_slope(ks, log_jump[t]).slope for t in np.flatnonzero(ok)])
    decay_law = periods * 2 * (-np.log1p(-ks)) / log_jump
    n_ok = len(raw)
    mean = float(raw.mean()) if n_ok else float("nan")
    se = float(raw.std(ddof=1) / math.sqrt(n_ok)) if n_ok >= 2 else float("nan")
    lc = float(log_corr.mean()) if n_ok else float("nan")
    checks = {"at_least_4_periodic_tasks": n_ok >= 4}
    # info keeps only the periodic tasks' rows: other rows hold NaN ("no cycles"), which is not JSON
    return Measurement(value=mean, stderr=se, checks=checks,
                       info={"eta_wd": ks, "periods": periods[ok], "log_norm_jump": log_jump[ok],
                             "period_slopes": raw, "log_jump_slopes": log_corr, "log_correction": _json_safe(lc),
                             "period_times_2k_over_log_jump": decay_law[ok], "n_periodic_tasks": n_ok,
                             "periodic_tasks": np.flatnonzero(ok),
                             "median_min_loss_in_cycle": _json_safe(float(np.nanmedian(min_loss)))})


# The period is 1/(eta wd) "up to a logarithm": T ~ log R / (2 eta wd), and the norm jump R of a spike
# shrinks as eta wd grows, which steepens the slope below -1 (the logarithm's own exponent, in info,
# was -0.17 to -0.38 over seeds 0-3). Measured at the defaults over seeds 0-13 (12 tasks each, 120
# periodic tasks): mean slopes -1.004 to -1.243, pooled -1.134 (standard error 0.014); with 5000 steps
# (seeds 0-3) -1.16 to -1.21. The band below -1 is that measured deviation, 0.243, rounded up to 0.25.
_PERIOD_LOG_BAND = 0.25


def _slope_band_error(predicted: Any, measured: Any) -> float:
    """Distance of the measured slope from the band ``[predicted - 0.25, predicted]``: the period falls
    like ``(eta wd)^predicted`` times a logarithm that only steepens it (see ``_PERIOD_LOG_BAND``)."""
    pr, m = float(np.asarray(predicted, dtype=float)), float(np.asarray(measured, dtype=float))
    return max(0.0, m - pr, (pr - _PERIOD_LOG_BAND) - m)


register(Claim(
    id="sphere.periodic_behavior",
    statement=("Full-batch GD with weight decay on a BatchNorm MLP (16 hidden units, a fixed random read-out per "
               "task, 32 random-label points) trains periodically: the loss is nearly minimised (< 0.05), the weight norm decays, "
               "the ELR grows "
               "until a loss spike and a norm jump, and again; the period scales like 1/(eta wd) up to a logarithm: "
               "the log-log slope of period against eta wd in (k_min, 8 k_min), averaged over the random tasks that "
               "show cycles, lies in [-1.25, -1] within 3 standard errors. Not exactly -1: the quiet-phase law "
               "T = log R/(2 eta wd) (R the norm jump of a spike) holds with log R shrinking as eta wd grows, and "
               "the measured slope was -1.00 to -1.24 over seeds 0-13 (pooled -1.134 +- 0.014 over 120 tasks; "
               "-1.16 to -1.21 with 5000 steps), so a slope of -1.3 is not told apart from it at this budget, "
               "while -1/2 and 0 are. A smooth quadratic-well toy (Rayleigh quotient, GD + wd) instead gives "
               "slope -0.51 +- 0.01, since its norm jumps grow with eta wd (notebook)."),
    reference="Lobacheva et al. 2021 (arXiv 2106.15739), Sec. 4-5; Li, Lyu, Arora 2020 (arXiv 2010.02916)",
    params=PeriodicParams,
    predicted=lambda p: period_exponent(),
    measured=_measure_periodic,
    tolerance=lambda p, m, be: Tolerance(
        3 * m.stderr if m.stderr is not None and math.isfinite(m.stderr) else 0.0,
        "3 standard errors of the mean slope over independent random tasks (the band [-1.25, -1] of the "
        "error function is the logarithm's measured steepening, not part of this allowance)"),
    error=_slope_band_error,
    mutants={"-1/2: period ~ 1/sqrt(eta wd), the angular-update time (as on the smooth toy)": lambda p: -0.5,
             "0: period set by the learning rate alone": lambda p: 0.0},
    closed_forms=("period_exponent",),
    sweep="k_min", sweep_values=(0.004, 0.005, 0.006),
))


# ---- sphere.sharpness_reduction ---------------------------------------------------------------


def instability_onsets(u3: np.ndarray) -> np.ndarray:
    """Steps where the off-manifold amplitude ``|u_3|`` turns from shrinking to growing.

    Near the manifold the sharp direction is ``e_3`` and one GD step multiplies ``u_3`` by about
    ``1 - eta wd - eta lam_max``; ``|u_3|`` starts growing exactly when that multiplier leaves
    ``[-1, 1]``, i.e. at the edge of stability.
    """
    a = np.abs(np.asarray(u3, dtype=float))
    grow = a[1:] > a[:-1]
    return np.flatnonzero(grow[1:] & ~grow[:-1]) + 1


@dataclass(frozen=True)
class SharpnessParams(Params):
    eta: float = param(0.5, low=0, low_open=True, domain=(0.2, 1.0), log=True, doc="learning rate eta")
    eta_wd: float = param(0.01, low=0, low_open=True, high=0.5, domain=(0.005, 0.02), log=True,
                          doc="eta * wd (weight decay wd = eta_wd / eta)")
    alpha: float = param(1.0, low=0, low_open=True, domain=(0.5, 2.0), log=True,
                         doc="sharpness contrast alpha: S(phi) = 1 + alpha cos^2 phi")
    phi0: float = param(0.3, low=0.0, high=1.5, domain=(0.1, 0.6), doc="initial azimuth phi0 (sharp side)")


def _sharpness_steps(p: SharpnessParams) -> int:
    return int(math.ceil(12.0 / p.eta_wd))


def _measure_sharpness(p: SharpnessParams, be: Backend, seed: int) -> Measurement:
    # deterministic GD: the seed only tilts the start off the manifold (u_3 in [0.2, 0.4])
    tilt = 0.2 + 0.2 * float(be.to_numpy(be.rng(seed).uniform((1,)))[0])
    w0 = be.asarray(np.array([[math.cos(p.phi0), math.sin(p.phi0), tilt]]))
    T = _sharpness_steps(p)
    r = simulate_sharpness_toy(w0, T, eta=p.eta, wd=p.eta_wd / p.eta, alpha=p.alpha, backend=be)
    if r["diverged"]:
        return Measurement(value=np.full(2, np.nan), diverged=True, diverged_step=r["diverged_step"])
    S = r["manifold_sharpness"][:, 0]
    P = p.eta * r["lam_max_manifold"][:, 0]
    on = instability_onsets(r["u3"][:, 0])
    # each onset in the linear regime lies in [2(1 - k), 2/(1 - k)], k = eta wd (proofs_check); the
    # first onsets, while the start's tilt u_3 ~ 0.3 decays, are nonlinear and may fall outside, so
    # the band is reported (info), not asserted; the claim compares the median with 2
    k = p.eta_wd
    in_band = float(np.mean((P[on] >= 2 * (1 - k)) & (P[on] <= 2 / (1 - k)))) if len(on) else float("nan")
    first = int(np.argmax(P > 1.9)) if np.any(P > 1.9) else len(P) - 1
    # finite-difference noise of S: ~1e-10 relative in float64 (the 1e-9 allowance), ~eps^(2/3)
    # with the larger float32 step (see _fd_rel_step); 10 x that bounds the difference of two values
    fd_noise = 1e-9 if be.eps < 1e-10 else 10 * be.eps ** (2.0 / 3.0)
    mono = bool(np.all(np.diff(S[first:]) <= fd_noise * S[first:-1]))
    return Measurement(
        value=np.array([S[-1], float(np.median(P[on])) if len(on) else np.nan]),
        checks={"sharpness_non_increasing_after_reaching_eos": mono, "at_least_5_instabilities": len(on) >= 5},
        info={"n_steps": T, "n_onsets": int(len(on)), "fraction_of_onsets_in_band": _json_safe(in_band), "eta_lam_at_onsets": P[on][:50],
              "initial_manifold_sharpness": float(S[0])})


def _max_rel_error(pred, meas) -> float:
    p = np.asarray(pred, dtype=float)
    m = np.asarray(meas, dtype=float)
    return float(np.max(np.abs(m - p) / np.abs(p)))


register(Claim(
    id="sphere.sharpness_reduction",
    statement=("GD with weight decay (w' = (1 - eta wd) w - eta grad L) on the scale-invariant toy "
               "L(w) = F(w/||w||), F(u) = u_3^2 (1 + alpha u_1^2)/2, whose minima form the circle u_3 = 0 with sphere "
               "sharpness S(phi) = 1 + alpha cos^2 phi: the norm decays until eta lam_max(Hess L) reaches 2 (edge of "
               "stability: sphere sharpness = 2 ||w||^2/eta), then the iterate drifts along the manifold with S "
               "non-increasing to the flattest minimum S = 1; predicted = [min S, 2], measured = [S at the nearest "
               "minimum after 12/(eta wd) steps, median of eta lam_max at the onsets of instability]. With weight "
               "decay the onsets of |u_3| growth are at eta lam = 2(1 - eta wd), detected within one step of a "
               "ramp of (1 - eta wd)^-2, so each (in the linear regime) lies in [2(1 - eta wd), 2/(1 - eta wd)], "
               "whose geometric centre is 2; the first onsets, while the initial tilt decays, are nonlinear and "
               "may fall outside (fraction inside in info)."),
    reference=("Lyu, Li, Arora 2022 (arXiv 2206.07085), Thm. 4.1 and Sec. 4; "
               "the toy and its closed forms are built here"),
    params=SharpnessParams,
    predicted=lambda p: np.array([float(np.min(manifold_sharpness(np.linspace(0, np.pi, 1001), p.alpha))), 2.0]),
    measured=_measure_sharpness,
    error=_max_rel_error,
    tolerance=lambda p, m, be: Tolerance(p.eta_wd / (1 - p.eta_wd) + 1e-3,
                                         "every onset lies in [2(1 - eta wd), 2/(1 - eta wd)] (threshold "
                                         "2(1 - eta wd) for u_3, resolved to one step of eta lam_max's ramp "
                                         "x (1 - eta wd)^-2; derived in proofs_check), at most eta wd/(1 - eta wd) "
                                         "relative from 2; 1e-3 bounds O(u_3^2) corrections and the remaining "
                                         "excess sharpness after 12/(eta wd) steps of drift"),
    mutants={
        "no drift along the manifold (S stays at S(phi0))":
            lambda p: np.array([float(manifold_sharpness(p.phi0, p.alpha)), 2.0]),
        "drift to the manifold's average sharpness 1 + alpha/2": lambda p: np.array([1.0 + p.alpha / 2, 2.0]),
        "edge of stability at eta lam_max = 1": lambda p: np.array([1.0, 1.0]),
    },
    closed_forms=("manifold_sharpness",),
    sweep="alpha", sweep_values=(0.5, 1.0, 2.0),
    summary=lambda v: float(v[0]), summary_label="final sphere sharpness",
))
