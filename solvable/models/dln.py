"""Diagonal linear networks: implicit bias of gradient flow, and how gradient regularization moves it.

Model (Woodworth et al. 2020). Parameters ``theta = (u, v)`` in ``R^d x R^d``, regression vector
``beta = u*u - v*v``, initialisation ``u(0) = v(0) = alpha * 1``, loss

    L(u, v) = (1/2n) ||X beta - y||^2,            g := grad_beta L = X^T (X beta - y) / n,

so ``grad_u L = 2 u g``, ``grad_v L = -2 v g`` and, with ``M = X^T X / n`` and
``J w = 2 u w_u - 2 v w_v``, the Hessian-vector product is

    H w = ( 2 g w_u + 2 u (M J w),  -2 g w_v - 2 v (M J w) ).

Gradient flow integrates to ``u = alpha exp(-2 int g)``, ``v = alpha exp(+2 int g)`` and
``beta(t) = -2 alpha^2 sinh(4 int_0^t g) = 2 alpha^2 sinh(X^T mu(t))`` with
``mu(t) = -(4/n) int_0^t (X beta - y) ds``: the limit solves the KKT system of

    min Q_alpha(beta)  s.t.  X beta = y,     Q_alpha(beta) = sum_i alpha_i^2 q(beta_i / alpha_i^2),
    q(z) = 2 - sqrt(4 + z^2) + z asinh(z / 2),  grad Q_alpha(beta)_i = asinh(beta_i / (2 alpha_i^2)).

Gradient regularization (GR) adds ``(gamma/2) ||grad_theta L||^2``; its flow keeps the same form with
a coordinate-wise effective scale (derived in proofs_check/check_dln.py)

    alpha_i = alpha exp(-4 gamma int_0^inf g_i(t)^2 dt)                      (exact GR),
    alpha_i = alpha exp(-4 gamma int_0^inf g_i(theta) g_i(theta + eps grad L) dt)   (FD-GR, exact),

the constant 4 holding for any scaling of L because ``g`` is the gradient in beta. Expanding the
second to first order in eps gives the forward/backward difference
``-16 gamma eps int g_i (M (g (u^2 + v^2)))_i dt``, whose (u^2 + v^2)-weighted sum is
``-16 gamma eps int ||X (g (u^2+v^2))||^2 / n dt``: forward differences (eps > 0) shrink the
effective scale more than exact GR on average, backward ones less.

Simulators (:func:`simulate`) are batched array programs over runs (leading axis: many
initialisations and datasets), written once against ``backend.xp`` (numpy or torch, CPU or CUDA).
The GR, finite-difference GR and central-difference gradients come from :mod:`solvable.models.gr`.

References:
  Woodworth, Gunasekar, Lee, Moroshko, Savarese, Golan, Soudry, Srebro, 2020. "Kernel and Rich
  Regimes in Overparametrized Models." COLT, arXiv 1906.05827 (Theorem 1, the Q_alpha bias).
  Karakida, Takase, Hayase, Osawa, 2023. "Understanding Gradient Regularization in Deep Learning:
  Efficient Finite-Difference Computation and Implicit Bias." ICML, arXiv 2210.02720 (Sec. 5).
  Barrett and Dherin, 2021. "Implicit Gradient Regularization." ICLR, arXiv 2009.11162 (GD with
  step eta follows GR with gamma = eta/2 to first order; seen here as the GD drift of u*v).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.optimize

from . import gr as _gr
from ..backend import Backend, get_backend
from ..checks import check_finite_array, check_int, check_range
from ..claims import Claim, Measurement, Params, Tolerance, param, register

__all__ = [
    "make_data",
    "dln_beta",
    "dln_loss",
    "dln_grad",
    "dln_hvp",
    "q",
    "Q_alpha",
    "grad_Q_alpha",
    "implicit_bias_solution",
    "min_l2_interpolator",
    "min_l1_interpolator",
    "effective_alpha",
    "DLNRun",
    "simulate",
    "METHODS",
]

Array = Any
METHODS = ("gd", "gr", "fd", "central", "flood")


# ------------------------------------------------------------------------------------------------
# Data and input validation


def make_data(n: int, d: int, k: int, seed: int, batch: int | None = None, noise: float = 0.0):
    """Gaussian design with a k-sparse teacher: ``X_ij ~ N(0, 1)``, ``y = X beta* (+ noise)``.

    The teacher has ``k`` nonzero entries at random positions, each ``+-1`` with a random sign.

    Args:
      n, d: samples and dimension (``X`` is ``n x d``).
      k: sparsity of the teacher ``beta*`` (``1 <= k <= d``).
      seed: numpy seed; the same seed gives the same data on every backend.
      batch: ``None`` for one dataset, else ``B`` independent datasets (leading axis).
      noise: standard deviation of label noise.

    Returns:
      ``(X, y, beta_star)`` as float64 numpy arrays, shapes ``(n, d), (n,), (d,)`` or with a
      leading ``B``.
    """
    n = check_int("n", n, 1)
    d = check_int("d", d, 1)
    k = check_int("k", k, 1, d)
    noise = check_range("noise", noise, 0.0)
    rng = np.random.default_rng(check_int("seed", seed, 0, 2**63 - 1))
    B = 1 if batch is None else check_int("batch", batch, 1)
    X = rng.standard_normal((B, n, d))
    beta = np.zeros((B, d))
    idx = np.argsort(rng.random((B, d)), axis=1)[:, :k]
    signs = rng.choice([-1.0, 1.0], size=(B, k))
    np.put_along_axis(beta, idx, signs, axis=1)
    y = np.einsum("bnd,bd->bn", X, beta) + noise * rng.standard_normal((B, n))
    if batch is None:
        return X[0], y[0], beta[0]
    return X, y, beta


def _check_alpha(alpha: Any) -> None:
    a = np.asarray(Backend.to_numpy(alpha) if hasattr(alpha, "detach") else alpha, dtype=float)
    if a.size == 1:
        check_range("alpha", float(a.ravel()[0]), 0.0, None, low_open=True)
    elif not (np.all(np.isfinite(a)) and np.all(a > 0)):
        bad = a[~(np.isfinite(a) & (a > 0))].ravel()[0]
        raise ValueError(f"alpha contains {bad!r}: every alpha must be a finite number in (0, inf)")


def _check_data(X: Any, y: Any) -> tuple[int, int, int | None]:
    """Shapes ``(n, d)`` / ``(n,)`` or batched ``(B, n, d)`` / ``(B, n)``; finite entries."""
    xs, ys = tuple(X.shape), tuple(y.shape)
    if len(xs) not in (2, 3):
        raise ValueError(f"X has shape {xs}: X must be (n, d) or (B, n, d)")
    if len(ys) not in (1, 2):
        raise ValueError(f"y has shape {ys}: y must be (n,) or (B, n)")
    n, d = xs[-2], xs[-1]
    if ys[-1] != n:
        raise ValueError(f"X has {n} rows but y has {ys[-1]} entries: X and y must have the same number of rows (n)")
    if len(xs) == 3 and len(ys) == 2 and xs[0] != ys[0]:
        raise ValueError(f"X has batch size {xs[0]} but y has {ys[0]}: X and y must have the same batch size")
    check_finite_array("X", X)
    check_finite_array("y", y)
    B = xs[0] if len(xs) == 3 else (ys[0] if len(ys) == 2 else None)
    return n, d, B


# ------------------------------------------------------------------------------------------------
# The model: forward, gradient, Hessian-vector product (array API, batched)


def _xp(a: Any):
    from array_api_compat import array_namespace

    return array_namespace(a)


def _X_apply(xp, X, b):
    """``X b`` for X ``(n, d)`` or ``(B, n, d)`` and b ``(..., d)``, returning ``(..., n)``."""
    if X.ndim == 2:
        return b @ xp.matrix_transpose(X)
    return xp.matmul(X, b[..., None])[..., 0]


def _Xt_apply(xp, X, r):
    """``X^T r`` for X ``(n, d)`` or ``(B, n, d)`` and r ``(..., n)``, returning ``(..., d)``."""
    if X.ndim == 2:
        return r @ X
    return xp.matmul(r[..., None, :], X)[..., 0, :]


def _split(theta):
    d = theta.shape[-1] // 2
    return theta[..., :d], theta[..., d:]


def dln_beta(theta: Array) -> Array:
    """``beta = u*u - v*v`` for ``theta = concat(u, v)`` along the last axis."""
    u, v = _split(theta)
    return u * u - v * v


def dln_loss(X: Array, y: Array, theta: Array) -> Array:
    """``L = ||X beta - y||^2 / (2n)`` per run (leading axes of ``theta``)."""
    xp = _xp(theta)
    r = _X_apply(xp, X, dln_beta(theta)) - y
    return xp.sum(r * r, axis=-1) / (2.0 * X.shape[-2])


def _g(X, y, theta):
    xp = _xp(theta)
    r = _X_apply(xp, X, dln_beta(theta)) - y
    return _Xt_apply(xp, X, r) / X.shape[-2]


def dln_grad(X: Array, y: Array, theta: Array) -> Array:
    """``grad_theta L = concat(2 u g, -2 v g)``, ``g = X^T (X beta - y) / n``.

    ``theta`` has shape ``(..., 2d)``; ``X`` is ``(n, d)`` (shared) or ``(B, n, d)``.

    >>> import numpy as np
    >>> X = np.eye(2); y = np.array([1.0, 0.0]); th = np.array([1.0, 1.0, 0.5, 0.5])
    >>> dln_grad(X, y, th).tolist()
    [-0.25, 0.75, 0.125, -0.375]
    """
    xp = _xp(theta)
    u, v = _split(theta)
    g = _g(X, y, theta)
    return xp.concat([2.0 * u * g, -2.0 * v * g], axis=-1)


def dln_hvp(X: Array, y: Array, theta: Array, w: Array) -> Array:
    """Analytic Hessian-vector product ``H(theta) w`` of the DLN loss.

    ``H w = (2 g w_u + 2 u (M J w), -2 g w_v - 2 v (M J w))``, ``J w = 2 u w_u - 2 v w_v``,
    ``M = X^T X / n``. Tested against torch.func double backpropagation in tests/test_dln.py.
    """
    xp = _xp(theta)
    u, v = _split(theta)
    wu, wv = _split(w)
    g = _g(X, y, theta)
    jw = 2.0 * u * wu - 2.0 * v * wv
    mjw = _Xt_apply(xp, X, _X_apply(xp, X, jw)) / X.shape[-2]
    return xp.concat([2.0 * g * wu + 2.0 * u * mjw, -2.0 * g * wv - 2.0 * v * mjw], axis=-1)


# ------------------------------------------------------------------------------------------------
# Closed forms (numpy reference)


def q(z: Array) -> Array:
    """``q(z) = 2 - sqrt(4 + z^2) + z asinh(z / 2)`` (Woodworth et al. 2020, Theorem 1)."""
    z = np.asarray(z, dtype=float)
    # 2 - sqrt(4 + z^2) = -z^2 / (2 + sqrt(4 + z^2)): no cancellation of O(1) terms at small z
    return z * np.arcsinh(z / 2.0) - z * z / (2.0 + np.sqrt(4.0 + z * z))


def Q_alpha(beta: Array, alpha: Array) -> float:
    """``Q_alpha(beta) = sum_i alpha_i^2 q(beta_i / alpha_i^2)`` (``alpha`` scalar or per coordinate)."""
    _check_alpha(alpha)
    a2 = np.asarray(alpha, dtype=float) ** 2
    beta = np.asarray(beta, dtype=float)
    return float(np.sum(a2 * q(beta / a2)))


def grad_Q_alpha(beta: Array, alpha: Array) -> np.ndarray:
    """``grad Q_alpha(beta) = asinh(beta / (2 alpha^2))`` (derived in proofs_check/check_dln.py)."""
    _check_alpha(alpha)
    a2 = np.asarray(alpha, dtype=float) ** 2
    return np.arcsinh(np.asarray(beta, dtype=float) / (2.0 * a2))


def implicit_bias_solution(X: Array, y: Array, alpha: Array, *, rtol: float = 1e-11) -> np.ndarray:
    """``argmin Q_alpha(beta)`` subject to ``X beta = y``, through its dual.

    KKT: ``asinh(beta / (2 alpha^2)) = X^T mu``, i.e. ``beta(mu) = 2 alpha^2 sinh(X^T mu)``; ``mu``
    minimises the strictly convex dual ``D(mu) = sum_i 2 alpha_i^2 cosh((X^T mu)_i) - y^T mu``,
    whose gradient is ``X beta(mu) - y`` and Hessian ``X diag(2 alpha^2 cosh(X^T mu)) X^T``.
    Solved with scipy's trust-region Newton (``trust-exact``), then checked: the interpolation
    residual ``||X beta - y|| / ||y||`` must be below ``rtol``.

    Args:
      X: ``(n, d)`` design, rank n; y: ``(n,)`` labels; alpha: scalar or ``(d,)`` scales > 0.

    References: Woodworth et al. 2020, arXiv 1906.05827, Theorem 1.
    """
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    if X.ndim != 2 or y.ndim != 1:
        raise ValueError(f"X has shape {X.shape} and y {y.shape}: implicit_bias_solution takes one dataset, (n, d) and (n,)")
    _check_data(X, y)
    _check_alpha(alpha)
    a2 = np.broadcast_to(np.asarray(alpha, dtype=float) ** 2, (X.shape[1],))
    # Scaling the dual by 1/||y|| keeps the trust region well conditioned when alpha is tiny.
    scale = max(float(np.linalg.norm(y)), 1e-300)

    def fun(mu):
        z = X.T @ mu
        return float(np.sum(2 * a2 * np.cosh(z)) - y @ mu) / scale

    def jac(mu):
        return (X @ (2 * a2 * np.sinh(X.T @ mu)) - y) / scale

    def hess(mu):
        return (X * (2 * a2 * np.cosh(X.T @ mu))) @ X.T / scale

    res = scipy.optimize.minimize(fun, np.zeros(X.shape[0]), jac=jac, hess=hess, method="trust-exact",
                                  options=dict(gtol=rtol * 1e-2, maxiter=2000))
    mu = res.x
    # Newton polishing: trust-exact's stopping test is on the scaled gradient; a few full steps
    # from its endpoint reach the quadratic-convergence region's round-off floor.
    for _ in range(20):
        r = jac(mu) * scale
        if np.linalg.norm(r) <= 1e-3 * rtol * scale:
            break
        mu = mu - np.linalg.solve(hess(mu) * scale, r)
    beta = 2 * a2 * np.sinh(X.T @ mu)
    resid = np.linalg.norm(X @ beta - y) / scale
    if not np.isfinite(resid) or resid > rtol:
        raise RuntimeError(f"dual solve did not converge: residual {resid:.3g} > rtol {rtol:.3g} ({res.message})")
    return beta


def min_l2_interpolator(X: Array, y: Array) -> np.ndarray:
    """``argmin ||beta||_2`` s.t. ``X beta = y`` (``numpy.linalg.lstsq``: the pseudo-inverse solution)."""
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    _check_data(X, y)
    return np.linalg.lstsq(X, y, rcond=None)[0]


def min_l1_interpolator(X: Array, y: Array) -> np.ndarray:
    """``argmin ||beta||_1`` s.t. ``X beta = y`` (basis pursuit) as a linear program.

    ``beta = p - m`` with ``p, m >= 0``, minimise ``1^T (p + m)`` s.t. ``X (p - m) = y``;
    solved by ``scipy.optimize.linprog`` (HiGHS).
    """
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    _check_data(X, y)
    d = X.shape[1]
    res = scipy.optimize.linprog(np.ones(2 * d), A_eq=np.hstack([X, -X]), b_eq=y, bounds=(0, None),
                                 method="highs")
    if res.status != 0:
        raise RuntimeError(f"linprog failed: {res.message}")
    return res.x[:d] - res.x[d:]


def effective_alpha(alpha: float, gamma: float, integral: Array) -> np.ndarray:
    """``alpha_i = alpha exp(-4 gamma I_i)`` with ``I_i = int g_i g_i^+ dt`` (``g^+ = g`` for exact GR).

    The constant 4 is derived in proofs_check/check_dln.py (``d log(u_i v_i)/dt = -8 gamma g_i g_i^+``).
    """
    _check_alpha(alpha)
    gamma = check_range("gamma", gamma, 0.0)
    return alpha * np.exp(-4.0 * gamma * np.asarray(integral, dtype=float))


# ------------------------------------------------------------------------------------------------
# Simulators


@dataclass
class DLNRun:
    """The outcome of :func:`simulate` for a batch of ``B`` runs (arrays of the run's backend).

    Attributes:
      theta: final ``(B, 2d)`` parameters ``concat(u, v)``; ``beta`` the final ``(B, d)`` vector.
      loss: final training loss ``(B,)`` (the plain loss L, also for flooding).
      time: flow time ``sum_k eta_k`` per run ``(B,)``; ``steps`` steps taken per run.
      int_g2: ``int g_i^2 dt`` ``(B, d)`` (left Riemann sum over the steps).
      int_ggplus: ``int g_i(theta) g_i(theta + eps grad L) dt`` for ``method="fd"`` (else int_g2).
      int_J: with ``first_order_integrals``, ``int g_i (M (g (u^2 + v^2)))_i dt``, the coefficient of the
        first-order (in eps) FD-GR correction; zeros otherwise.
      diverged: ``(B,)`` booleans; ``diverged_step`` the first step with non-finite or exploding
        loss (``-1`` where none).
      converged: loss reached ``rtol_loss * L(0)``.
      history: ``{"step": list, "loss": list of (B,), "beta": list of (B, d)}`` if recorded.
    """

    theta: Array
    beta: Array
    loss: Array
    time: Array
    steps: Array
    int_g2: Array
    int_ggplus: Array
    int_J: Array
    diverged: Array
    diverged_step: Array
    converged: Array
    backend: Backend
    history: dict = field(default_factory=dict)

    def numpy(self, name: str) -> np.ndarray:
        return Backend.to_numpy(getattr(self, name))


def simulate(X: Array, y: Array, alpha: Array, *, method: str = "gd", gamma: float = 0.0,
             eps: float | None = None, flood: float | None = None, c: float = 0.02,
             eta: float | None = None, max_steps: int = 20000, rtol_loss: float = 1e-14,
             record_every: int = 0, first_order_integrals: bool = False,
             backend: Backend | str | None = None) -> DLNRun:
    """Integrate the training dynamics of a batch of diagonal linear networks.

    Update ``theta_{k+1} = theta_k - eta_k G(theta_k)`` with ``G`` one of

      - ``"gd"``: ``grad L`` (gradient descent; with small steps, gradient flow),
      - ``"gr"``: ``grad L + gamma H grad L`` (exact GR, analytic HVP, :func:`solvable.models.gr.gr_gradient`),
      - ``"fd"``: ``(1 - gamma/eps) grad L + (gamma/eps) grad L(theta + eps grad L)``
        (:func:`solvable.models.gr.fd_gr_gradient`; forward ``eps > 0``, backward ``eps < 0``),
      - ``"central"``: central-difference GR (:func:`solvable.models.gr.central_fd_gr_gradient`),
      - ``"flood"``: ``sign(L - b) grad L``, the gradient of ``|L - b| + b`` (``b = flood``,
        :func:`solvable.models.gr.flooding_gradient`).

    Step-size scheme (per run): ``eta_k = min(c / max_i |G_i / theta_i|, 1 / (2 Lambda_k))``. The
    first bound limits the relative change of every ``u_i, v_i`` in one step to ``c`` (accuracy:
    the flow's time scale for that coordinate); the second is stability, with
    ``Lambda_k = 2 ||g||_inf + 4 min(lambda_max(M) max_i w_i, sum_i w_i M_ii) >= ||H||``
    (``w = u^2 + v^2``), times
    ``(1 + gamma Lambda)`` for the GR methods (``H + gamma H^2``). Explicit Euler on the flow is a
    first-order scheme: the endpoint differs from the flow's by ``O(c)`` (tests/test_dln.py fits
    the slope 1 by halving ``c``). ``eta`` fixes the step instead (used to show divergence).

    Args:
      X: ``(n, d)`` shared design or ``(B, n, d)`` one per run; y: ``(n,)`` or ``(B, n)``.
      alpha: initial scale, ``u(0) = v(0) = alpha``: scalar; ``(B,)`` or ``(B, 1)`` one per run;
        ``(B, d)`` (or ``(1, d)``, shared by the data batch) per run and coordinate. A 1-D alpha of
        length ``d`` with unbatched data is ambiguous (``d`` runs, or one run's coordinates?) and
        raises ``ValueError``: pass ``alpha[None, :]`` or ``alpha[:, None]``.
      method: one of :data:`METHODS`; gamma: GR strength ``>= 0``; eps: FD step (nonzero): a number,
        or for ``"fd"`` a ``(B,)`` array, one step per run (forward and backward in one call);
      flood: flood level ``b >= 0``.
      c: the largest relative change of any ``u_i, v_i`` in one step, in ``(0, 1]``;
        eta: a fixed step ``> 0`` instead of the adaptive one.
      max_steps: step budget; rtol_loss: a run stops when ``L <= rtol_loss * L(0)``.
      record_every: record loss and beta every this many steps (0: no history).
      first_order_integrals: also accumulate ``int_J`` (two more products with X per step).
      backend: :class:`~solvable.Backend` (default numpy float64); data are moved onto it.

    Returns:
      :class:`DLNRun`. Divergence (non-finite loss, or loss above ``1e12 (L(0) + 1)``) is a result:
      ``diverged`` and the first ``diverged_step`` per run; the run is frozen there.

    Example (gradient descent from two scales in one call, against the implicit-bias closed form):

    >>> X, y, _ = make_data(10, 30, 2, seed=0)
    >>> run = simulate(X, y, np.array([0.3, 3.0]))
    >>> [bool(np.linalg.norm(run.numpy("beta")[i] - implicit_bias_solution(X, y, a)) < 1e-2)
    ...  for i, a in enumerate([0.3, 3.0])]
    [True, True]
    """
    be = get_backend() if backend is None else get_backend(backend) if isinstance(backend, str) else backend
    xp = be.xp
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not allowed: method must be one of {', '.join(METHODS)}")
    gamma = check_range("gamma", gamma, 0.0)
    eps_runs = None
    if method in ("fd", "central"):
        if eps is None:
            raise ValueError(f"eps=None is out of range: method={method!r} needs a nonzero finite eps")
        if np.ndim(Backend.to_numpy(eps) if hasattr(eps, "detach") else eps) > 0:
            if method != "fd":
                raise ValueError(f"eps has shape {np.shape(eps)}: method={method!r} takes one number eps")
            eps_runs = np.asarray(Backend.to_numpy(eps) if hasattr(eps, "detach") else eps, dtype=float)
            if eps_runs.ndim != 1 or not np.all(np.isfinite(eps_runs)) or np.any(eps_runs == 0):
                raise ValueError(f"eps={eps_runs!r} is out of range: eps must be a nonzero finite number or a 1-D "
                                 "array of them, one per run")
        else:
            eps = _gr._check_eps(eps)
    if method == "flood":
        flood = check_range("flood", 0.0 if flood is None else flood, 0.0)
    c = check_range("c", c, 0.0, 1.0, low_open=True)
    if eta is not None:
        eta = check_range("eta", eta, 0.0, None, low_open=True)
    max_steps = check_int("max_steps", max_steps, 1)
    rtol_loss = check_range("rtol_loss", rtol_loss, 0.0)
    record_every = check_int("record_every", record_every, 0)
    _check_alpha(alpha)

    X = be.asarray(X)
    y = be.asarray(y)
    n, d, B_data = _check_data(X, y)
    a = be.asarray(alpha)
    shapes = f"scalar, (B,) per run, (B, 1) per run, or (B, d={d}) / (1, d={d}) per coordinate"
    if a.ndim == 0:
        B = 1 if B_data is None else B_data
        a = xp.ones((B, d), dtype=be.float_dtype, device=X.device) * a
    elif a.ndim == 1:
        if B_data is not None and a.shape[0] != B_data:
            raise ValueError(f"alpha has {a.shape[0]} entries but the data batch is {B_data}: they must match")
        if B_data is None and a.shape[0] == d:
            # (d,) could mean d runs or one run with per-coordinate scales: refuse to guess
            raise ValueError(f"alpha has shape ({d},) = (d,), which is ambiguous: pass alpha[None, :] (shape (1, d)) "
                             f"for per-coordinate scales or alpha[:, None] (shape (B, 1)) for {d} runs; alpha must be "
                             + shapes)
        a = xp.ones((a.shape[0], d), dtype=be.float_dtype, device=X.device) * a[:, None]
    elif a.ndim == 2:
        if a.shape[1] not in (1, d) or (B_data is not None and a.shape[0] not in (1, B_data)):
            raise ValueError(f"alpha has shape {tuple(a.shape)}: alpha must be {shapes}")
        rows = B_data if (B_data is not None and a.shape[0] == 1) else a.shape[0]
        a = xp.ones((rows, d), dtype=be.float_dtype, device=X.device) * a
    else:
        raise ValueError(f"alpha has shape {tuple(a.shape)}: alpha must be {shapes}")
    B = a.shape[0]
    if eps_runs is not None:
        if eps_runs.shape[0] != B:
            raise ValueError(f"eps has {eps_runs.shape[0]} entries but the batch has {B} runs: they must match")
        eps = be.asarray(eps_runs)[:, None]  # one step per run, broadcast over the coordinates
    if y.ndim == 1:
        y = xp.ones((B, 1), dtype=be.float_dtype, device=X.device) * y[None, :]

    theta = xp.concat([a, a], axis=-1)
    grad_fn = functools.partial(dln_grad, X, y)
    hvp_fn = functools.partial(dln_hvp, X, y)

    if X.ndim == 2:
        lam_M = xp.linalg.eigvalsh(X @ xp.matrix_transpose(X) / n)[-1] * xp.ones((B,), dtype=be.float_dtype,
                                                                                  device=X.device)
    else:
        lam_M = xp.linalg.eigvalsh(xp.matmul(X, xp.matrix_transpose(X)) / n)[:, -1]

    col2 = xp.sum(X * X, axis=-2) / n  # ||x_i||^2 / n per column, (d,) or (B, d)

    def direction(th, g, L):
        if method == "gd":
            u, v = _split(th)
            return xp.concat([2.0 * u * g, -2.0 * v * g], axis=-1)
        if method == "gr":
            return _gr.gr_gradient(grad_fn, hvp_fn, th, gamma)
        if method == "fd":
            return _gr.fd_gr_gradient(grad_fn, th, gamma, eps)
        if method == "central":
            return _gr.central_fd_gr_gradient(grad_fn, th, gamma, eps)
        u, v = _split(th)
        return _gr.flooding_gradient(L, xp.concat([2.0 * u * g, -2.0 * v * g], axis=-1), flood)

    loss0 = dln_loss(X, y, theta)
    bound = 1e12 * (loss0 + 1.0)
    target = rtol_loss * loss0
    zeros_B = xp.zeros((B,), dtype=be.float_dtype, device=X.device)
    t = zeros_B
    steps = xp.zeros((B,), dtype=xp.int64, device=X.device)
    int_g2 = xp.zeros((B, d), dtype=be.float_dtype, device=X.device)
    int_ggp = xp.zeros((B, d), dtype=be.float_dtype, device=X.device)
    int_J = xp.zeros((B, d), dtype=be.float_dtype, device=X.device)
    div_step = -xp.ones((B,), dtype=xp.int64, device=X.device)
    active = xp.ones((B,), dtype=xp.bool, device=X.device)
    history: dict = {"step": [], "loss": [], "beta": []} if record_every else {}
    stiff = method in ("gr", "fd", "central")

    with np.errstate(all="ignore"):
        for k in range(max_steps + 1):
            beta = dln_beta(theta)
            r = _X_apply(xp, X, beta) - y
            L = xp.sum(r * r, axis=-1) / (2.0 * n)
            bad = ~(L <= bound)  # catches NaN as well as blow-up
            div_step = xp.where(bad & (div_step < 0), xp.full_like(div_step, k), div_step)
            active = active & ~bad & ~(L <= target)
            if record_every and k % record_every == 0:
                history["step"].append(k)
                history["loss"].append(be.to_numpy(L))
                history["beta"].append(be.to_numpy(beta))
            if k == max_steps:
                break
            if k % 50 == 0 and not bool(xp.any(active)):
                break
            g = _Xt_apply(xp, X, r) / n
            G = direction(theta, g, L)
            if eta is None:
                # accuracy: each u_i, v_i moves by at most a fraction c per step (they stay > 0 under
                # the flow); stability: eta * Lambda <= 1/2 with Lambda >= ||Hessian of the update||.
                u, v = _split(theta)
                w = u * u + v * v
                # ||X diag(w) X^T / n|| <= min(lambda_max(M) max_i w_i, trace = sum_i w_i ||x_i||^2 / n);
                # the trace bound is the tight one in the rich regime, where few w_i are large.
                kern = xp.minimum(lam_M * xp.max(w, axis=-1), xp.sum(w * col2, axis=-1))
                lam = 2.0 * xp.max(xp.abs(g), axis=-1) + 4.0 * kern
                if stiff:
                    lam = lam * (1.0 + gamma * lam)
                rel = xp.max(xp.abs(G) / xp.abs(theta), axis=-1)
                step = xp.minimum(c / rel, 0.5 / lam)
            else:
                step = eta + zeros_B
            step = xp.where(active, step, zeros_B)
            # A frozen (diverged) run has step 0 but may have non-finite g: 0 * inf = NaN would
            # poison its integrals, so they add only where the run is active; divergence is
            # reported through `diverged` alone.
            act = active[:, None]
            zero_d = xp.zeros_like(int_g2)
            int_g2 = int_g2 + xp.where(act, step[:, None] * g * g, zero_d)
            if method == "fd":
                gplus = _g(X, y, theta + eps * grad_fn(theta))
                int_ggp = int_ggp + xp.where(act, step[:, None] * g * gplus, zero_d)
            if first_order_integrals:
                # first-order FD-GR coefficient g_i (M (g (u^2 + v^2)))_i along the unregularised flow
                u, v = _split(theta)
                gw = g * (u * u + v * v)
                int_J = int_J + xp.where(act, step[:, None] * g * (_Xt_apply(xp, X, _X_apply(xp, X, gw)) / n), zero_d)
            theta = xp.where(active[:, None], theta - step[:, None] * G, theta)
            t = t + step
            steps = steps + xp.astype(active, xp.int64)
    if method != "fd":
        int_ggp = int_g2
    with np.errstate(all="ignore"):  # a diverged run's frozen iterate may overflow here too
        L = dln_loss(X, y, theta)
        beta = dln_beta(theta)
    diverged = div_step >= 0
    converged = (L <= target) & ~diverged
    return DLNRun(theta=theta, beta=beta, loss=L, time=t, steps=steps, int_g2=int_g2,
                  int_ggplus=int_ggp, int_J=int_J, diverged=diverged, diverged_step=div_step, converged=converged,
                  backend=be, history=history)


# ------------------------------------------------------------------------------------------------
# Claims

_MAX_STEPS = 40000
_LIMITS_STEPS = 6000
_LIMITS_C = 0.005  # small alpha: the escape phase dominates the GD drift of log alpha, keep it ~1e-2
# The GR claims resolve effects of a few 1e-3 in beta (the constant 4 against 3, forward against
# backward differences), so their O(c) budget 2 x drift must sit well below that: at c = 0.0025
# the drift is ~6e-4 (1.2e-3 budget) against ~3e-3 at c = 0.02, and the run costs only ~10% more
# steps because the stability bound 1/(2 Lambda), not c, limits the step after the escape phase.
_GR_C = 0.0025


def _rtol_loss(be: Backend) -> float:
    # float64: stop at L <= 1e-14 L(0) (beta then within ~1e-7 relative of the interpolating set);
    # float32 cannot resolve that, so stop at its round-off floor (100 eps)^2.
    return max(1e-14, (100.0 * be.eps) ** 2)


def _data(p) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return make_data(p.n, p.d, p.k, p.seed)


def _shape_check(p) -> None:
    if p.n >= p.d:
        raise ValueError(f"n={p.n} is out of range: n must be < d={p.d} (overparametrised, so X beta = y has many solutions)")
    if p.k > p.d:
        raise ValueError(f"k={p.k} is out of range: k must be in [1, d={p.d}]")


def _residual_term(X: np.ndarray, beta: np.ndarray, loss: float) -> float:
    """Distance bound from the unconverged residual: ||X^+ r|| / ||beta|| <= sqrt(2 n L) / (s_min ||beta||)."""
    s_min = float(np.linalg.svd(X, compute_uv=False)[-1])
    return math.sqrt(2.0 * X.shape[0] * max(loss, 0.0)) / (s_min * max(float(np.linalg.norm(beta)), 1e-300))


def _log_invariant_drift(theta: np.ndarray, log_alpha_eff: np.ndarray) -> np.ndarray:
    """``log sqrt(u_i v_i) - log alpha_i``: zero for the flow, first order in the step for GD."""
    d = theta.shape[-1] // 2
    return 0.5 * np.log(theta[..., :d] * theta[..., d:]) - log_alpha_eff


def _diverged(run: DLNRun, d: int, rows: int = 1) -> Measurement | None:
    div = run.numpy("diverged")
    if np.any(div):
        step = int(np.max(run.numpy("diverged_step")))
        return Measurement(value=np.full(rows * d, np.nan), diverged=True, diverged_step=step)
    return None


_DISCRETISATION_REASON = (
    "first-order GD error, read off the run: the flow conserves u_i v_i = alpha_i^2, GD moves log alpha_i "
    "by delta = max_i |log sqrt(u_i v_i) - log alpha_i| (O(c)); the endpoint's sensitivity "
    "|d log beta / d log alpha_i| <= 2 gives 2 delta; plus the unconverged residual sqrt(2nL)/(s_min ||beta||)")


# -- dln.implicit_bias ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ImplicitBiasParams(Params):
    alpha: float = param(0.3, low=0.01, high=100.0, domain=(0.1, 3.0), log=True,
                         doc="initial scale alpha: u(0) = v(0) = alpha (below 0.01 GD needs more steps than the budget)")
    n: int = param(15, low=2, high=100, integer=True, domain=(10, 20), doc="number of samples n")
    d: int = param(40, low=3, high=200, integer=True, domain=(30, 50), doc="dimension d (> n)")
    k: int = param(3, low=1, high=20, integer=True, domain=(1, 3), doc="sparsity k of the teacher")
    seed: int = param(0, low=0, high=2**31 - 1, integer=True, domain=(0, 10000), doc="data seed")
    c: float = param(0.02, low=1e-3, high=0.5, domain=(0.01, 0.04), log=True,
                     doc="step fraction c of the adaptive GD step (discretisation error O(c))")

    def check(self) -> None:
        _shape_check(self)


def _predict_implicit_bias(p: ImplicitBiasParams) -> np.ndarray:
    X, y, _ = _data(p)
    return implicit_bias_solution(X, y, p.alpha)


def _measure_implicit_bias(p: ImplicitBiasParams, backend: Backend, seed: int) -> Measurement:
    # The dynamics are deterministic given the data; the data come from p.seed so that the closed
    # form and the simulation see the same X, y on every backend.
    X, y, _ = _data(p)
    run = simulate(X, y, p.alpha, c=p.c, max_steps=_MAX_STEPS, rtol_loss=_rtol_loss(backend), backend=backend)
    bad = _diverged(run, p.d)
    if bad is not None:
        return bad
    beta, theta, loss = run.numpy("beta")[0], run.numpy("theta")[0], float(run.numpy("loss")[0])
    drift = float(np.max(np.abs(_log_invariant_drift(theta, math.log(p.alpha)))))
    return Measurement(
        value=beta,
        checks={"converged": bool(run.numpy("converged")[0]), "drift_below_0.1": drift < 0.1},
        info={"final_loss": loss, "steps": int(run.numpy("steps")[0]), "flow_time": float(run.numpy("time")[0]),
              "log_alpha_drift": drift, "residual_term": _residual_term(X, beta, loss),
              "l1_norm": float(np.sum(np.abs(beta))), "l2_norm": float(np.linalg.norm(beta))})


def _tol_discretisation(p, m: Measurement, be: Backend) -> Tolerance:
    if m.diverged:
        return Tolerance(0.0, "diverged")
    tol = 2.0 * m.info["log_alpha_drift"] + m.info["residual_term"] + be.roundoff(100 * p.d)
    return Tolerance(tol, _DISCRETISATION_REASON)


register(Claim(
    id="dln.implicit_bias",
    statement=("Gradient flow on beta = u*u - v*v from u = v = alpha, loss ||X beta - y||^2/(2n), converges to "
               "argmin_{X beta = y} Q_alpha(beta), Q_alpha = alpha^2 sum_i q(beta_i/alpha^2), "
               "q(z) = 2 - sqrt(4+z^2) + z asinh(z/2)."),
    reference=("Woodworth et al. 2020, arXiv 1906.05827, Theorem 1; closed form solved here through the dual "
               "beta = 2 alpha^2 sinh(X^T mu), constant of mu = -(4/n) int r dt derived in proofs_check/check_dln.py"),
    params=ImplicitBiasParams,
    predicted=_predict_implicit_bias,
    measured=_measure_implicit_bias,
    tolerance=_tol_discretisation,
    sweep="alpha", sweep_values=(0.1, 0.3, 1.0, 3.0),
    summary=lambda b: float(np.sum(np.abs(np.asarray(b, dtype=float)))), summary_label="||beta||_1",
))


# -- dln.kernel_rich_limits -----------------------------------------------------------------------


@dataclass(frozen=True)
class KernelRichParams(Params):
    alpha_small: float = param(0.01, low=1e-4, high=0.1, domain=(0.005, 0.02), log=True,
                               doc="small initial scale (rich regime)")
    alpha_large: float = param(10.0, low=1.0, high=1000.0, domain=(5.0, 30.0), log=True,
                               doc="large initial scale (kernel regime)")
    n: int = param(20, low=2, high=100, integer=True, domain=(15, 25), doc="number of samples n")
    d: int = param(40, low=3, high=200, integer=True, domain=(30, 50), doc="dimension d (> n)")
    k: int = param(2, low=1, high=20, integer=True, domain=(1, 2), doc="sparsity k of the teacher")
    seed: int = param(0, low=0, high=2**31 - 1, integer=True, domain=(0, 10000), doc="data seed")

    def check(self) -> None:
        _shape_check(self)


def _predict_limits(p: KernelRichParams) -> np.ndarray:
    X, y, _ = _data(p)
    return np.concatenate([min_l1_interpolator(X, y), min_l2_interpolator(X, y)])


def _measure_limits(p: KernelRichParams, backend: Backend, seed: int) -> Measurement:
    X, y, _ = _data(p)
    # one batched call: the two scales asked for, and each moved 10x away from its limit
    alphas = np.array([p.alpha_small, 10 * p.alpha_small, p.alpha_large / 10, p.alpha_large])
    # The last approach to the interpolating set is sublinear at small alpha (the inactive
    # coordinates decay at a rate proportional to their own size); the run is capped and the
    # unconverged residual enters the tolerance (residual_term) and a check.
    run = simulate(X, y, alphas, c=_LIMITS_C, max_steps=_LIMITS_STEPS, rtol_loss=_rtol_loss(backend), backend=backend)
    bad = _diverged(run, p.d, rows=2)
    if bad is not None:
        return bad
    beta, theta, loss = run.numpy("beta"), run.numpy("theta"), run.numpy("loss")
    drift = np.max(np.abs(_log_invariant_drift(theta, np.log(alphas)[:, None])), axis=1)
    res = [_residual_term(X, beta[i], float(loss[i])) for i in range(4)]
    l1 = np.sum(np.abs(beta), axis=1)
    l2 = np.linalg.norm(beta, axis=1)
    slack = 2 * drift + np.asarray(res)
    return Measurement(
        value=np.concatenate([beta[0], beta[3]]),
        # monotone in alpha up to the runs' own error budget (2 x drift + residual term), which
        # matters once both runs sit on the limit to within it
        checks={"l1_norm_decreases_as_alpha_decreases": bool(l1[0] <= l1[1] * (1 + slack[0] + slack[1])),
                "residual_term_below_0.05": bool(max(res) < 0.05),
                "l2_norm_decreases_as_alpha_increases": bool(l2[3] <= l2[2] * (1 + slack[2] + slack[3]))},
        info={"alphas": alphas.tolist(), "l1_norms": l1.tolist(), "l2_norms": l2.tolist(),
              "final_loss": loss.tolist(), "steps": run.numpy("steps").tolist(),
              "log_alpha_drift": drift.tolist(), "residual_term": res})


def _limits_error(predicted, measured) -> float:
    from ..claims import relative_error

    p = np.asarray(predicted, dtype=float)
    m = np.asarray(measured, dtype=float)
    h = p.size // 2
    return max(relative_error(p[:h], m[:h]), relative_error(p[h:], m[h:]))


def _tol_limits(p: KernelRichParams, m: Measurement, be: Backend) -> Tolerance:
    if m.diverged:
        return Tolerance(0.0, "diverged")
    X, y, _ = _data(p)
    b1, b2 = min_l1_interpolator(X, y), min_l2_interpolator(X, y)
    gap_s = float(np.linalg.norm(implicit_bias_solution(X, y, p.alpha_small) - b1) / np.linalg.norm(b1))
    gap_l = float(np.linalg.norm(implicit_bias_solution(X, y, p.alpha_large) - b2) / np.linalg.norm(b2))
    dr, rs = m.info["log_alpha_drift"], m.info["residual_term"]
    tol = max(gap_s + 2 * dr[0] + rs[0], gap_l + 2 * dr[3] + rs[3]) + be.roundoff(100 * p.d)
    m.info["finite_alpha_gap"] = [gap_s, gap_l]
    return Tolerance(tol, (
        f"finite-alpha gap ||argmin Q_alpha - limit|| / ||limit|| = {gap_s:.2e} (small alpha, -> 0 like a power of "
        f"alpha), {gap_l:.2e} (large alpha, O(alpha^-4)), plus the GD discretisation budget of dln.implicit_bias "
        "(2 x invariant drift + residual term)"))


register(Claim(
    id="dln.kernel_rich_limits",
    statement=("The gradient-flow solution tends to the minimum-l1 interpolator as alpha -> 0 (rich regime) and to "
               "the minimum-l2 interpolator as alpha -> inf (kernel regime); at finite alpha the distance is the "
               "gap of argmin Q_alpha, which decays like alpha^-4 at large alpha but only slowly (a data-dependent "
               "power of alpha) at small alpha."),
    reference="Woodworth et al. 2020, arXiv 1906.05827, Theorem 2 and Sec. 3; limits of Q_alpha derived in proofs_check",
    params=KernelRichParams,
    predicted=_predict_limits,
    measured=_measure_limits,
    tolerance=_tol_limits,
    error=_limits_error,
    sweep="alpha_small", sweep_values=(0.005, 0.01, 0.02),
    summary=lambda b: float(np.sum(np.abs(np.asarray(b, dtype=float)[: len(b) // 2]))),
    summary_label="||beta(alpha_small)||_1",
))


# -- dln.gr_effective_alpha -----------------------------------------------------------------------


@dataclass(frozen=True)
class GREffectiveAlphaParams(Params):
    alpha: float = param(0.5, low=0.05, high=10.0, domain=(0.3, 1.0), log=True, doc="initial scale alpha")
    gamma: float = param(0.1, low=0, high=1.0, domain=(0.03, 0.2), log=True, doc="GR strength gamma")
    n: int = param(15, low=2, high=100, integer=True, domain=(10, 20), doc="number of samples n")
    d: int = param(40, low=3, high=200, integer=True, domain=(30, 50), doc="dimension d (> n)")
    k: int = param(3, low=1, high=20, integer=True, domain=(1, 3), doc="sparsity k of the teacher")
    seed: int = param(0, low=0, high=2**31 - 1, integer=True, domain=(0, 10000), doc="data seed")

    def check(self) -> None:
        _shape_check(self)


@functools.lru_cache(maxsize=16)
def _numpy_run(p: Params, method: str, gamma: float, eps: float | tuple | None) -> DLNRun:
    X, y, _ = _data(p)
    be = get_backend("numpy")
    # a tuple of eps: one run per entry, batched in one call
    alpha = p.alpha if not isinstance(eps, tuple) else np.full((len(eps), 1), p.alpha)
    eps = np.asarray(eps) if isinstance(eps, tuple) else eps
    return simulate(X, y, alpha, method=method, gamma=gamma, eps=eps, c=_GR_C, max_steps=_MAX_STEPS,
                    rtol_loss=_rtol_loss(be), first_order_integrals=(method == "gr"), backend=be)


def _row(run: DLNRun, i: int) -> DLNRun:
    """Run ``i`` of a batched :class:`DLNRun`, as a batch of one."""
    arrays = {f: getattr(run, f)[i:i + 1] for f in ("theta", "beta", "loss", "time", "steps", "int_g2", "int_ggplus",
                                                   "int_J", "diverged", "diverged_step", "converged")}
    return DLNRun(backend=run.backend, history={}, **arrays)


def _predict_gr_effective_alpha(p: GREffectiveAlphaParams) -> np.ndarray:
    # The closed form is argmin Q with coordinate-wise alpha_i = alpha exp(-4 gamma I_i); its input
    # I_i = int g_i^2 dt is a functional of the GR trajectory, taken from a numpy run of it.
    X, y, _ = _data(p)
    # A diverged run keeps finite integrals up to its divergence (simulate masks frozen runs), and the
    # measurement reports the divergence.
    run = _numpy_run(p, "gr", p.gamma, None)
    return implicit_bias_solution(X, y, effective_alpha(p.alpha, p.gamma, run.numpy("int_g2")[0]))


def _measure_gr_effective_alpha(p: GREffectiveAlphaParams, backend: Backend, seed: int) -> Measurement:
    X, y, _ = _data(p)
    if backend.name == "numpy" and backend.dtype == "float64":
        run = _numpy_run(p, "gr", p.gamma, None)
    else:
        run = simulate(X, y, p.alpha, method="gr", gamma=p.gamma, c=_GR_C, max_steps=_MAX_STEPS,
                       rtol_loss=_rtol_loss(backend), backend=backend)
    bad = _diverged(run, p.d)
    if bad is not None:
        return bad
    beta, theta, loss = run.numpy("beta")[0], run.numpy("theta")[0], float(run.numpy("loss")[0])
    # the scale the closed form uses, from the closed-form function itself (constant included)
    log_aeff = np.log(effective_alpha(p.alpha, p.gamma, run.numpy("int_g2")[0]))
    drift = float(np.max(np.abs(_log_invariant_drift(theta, log_aeff))))
    # "alpha_i <= alpha" read off the simulated parameters (sqrt(u_i v_i) at the end), not off the
    # formula: a GR term of the wrong sign would raise u_i v_i above alpha^2 and fail it.
    sqrt_uv = np.sqrt(theta[: p.d] * theta[p.d:])
    return Measurement(
        value=beta,
        checks={"converged": bool(run.numpy("converged")[0]),
                "simulated_sqrt_uv_below_alpha": bool(np.all(sqrt_uv < p.alpha)),
                "drift_below_0.1": drift < 0.1},
        info={"final_loss": loss, "steps": int(run.numpy("steps")[0]), "log_alpha_drift": drift,
              "residual_term": _residual_term(X, beta, loss),
              "alpha_eff_over_alpha_min": float(np.exp(np.min(log_aeff) - math.log(p.alpha))),
              "alpha_eff_over_alpha_geomean": float(np.exp(np.mean(log_aeff) - math.log(p.alpha)))})


register(Claim(
    id="dln.gr_effective_alpha",
    statement=("Exact GR (gradient grad L + gamma H grad L) on the DLN ends at argmin_{X beta = y} of Q with "
               "coordinate-wise scale alpha_i = alpha exp(-4 gamma int g_i^2 dt) <= alpha, g = grad_beta L; the "
               "constant 4 is derived (d log(u_i v_i)/dt = -8 gamma g_i^2) and holds for any scaling of L since g "
               "is the gradient in beta; the integral is taken along the simulated GR trajectory."),
    reference="Karakida et al. 2023, arXiv 2210.02720, Sec. 5 (DLN analysis); constant derived in proofs_check/check_dln.py",
    params=GREffectiveAlphaParams,
    predicted=_predict_gr_effective_alpha,
    measured=_measure_gr_effective_alpha,
    tolerance=_tol_discretisation,
    sweep="gamma", sweep_values=(0.03, 0.1, 0.2),
    summary=lambda b: float(np.sum(np.abs(np.asarray(b, dtype=float)))), summary_label="||beta||_1",
))


# -- dln.gr_rich_bias -----------------------------------------------------------------------------


@dataclass(frozen=True)
class GRRichBiasParams(Params):
    alpha: float = param(0.5, low=0.05, high=10.0, domain=(0.3, 1.0), log=True, doc="initial scale alpha")
    # gamma = |eps| = 0.1: the forward/backward split of beta (~2e-2) and the FD effect against exact
    # GR (~1e-2) sit 8-16x above the discretisation budget (~1.2e-3 at c = _GR_C); at 0.05 they
    # were within 1.1-2.6x of the old budget. The domain keeps them >= ~2.5x above it.
    gamma: float = param(0.1, low=1e-3, high=1.0, domain=(0.05, 0.15), log=True, doc="GR strength gamma")
    eps: float = param(0.1, low=1e-3, high=1.0, domain=(0.05, 0.15), log=True,
                       doc="|eps| of the finite difference; forward uses +eps, backward -eps")
    n: int = param(15, low=2, high=100, integer=True, domain=(10, 20), doc="number of samples n")
    d: int = param(40, low=3, high=200, integer=True, domain=(30, 50), doc="dimension d (> n)")
    k: int = param(3, low=1, high=20, integer=True, domain=(1, 3), doc="sparsity k of the teacher")
    seed: int = param(0, low=0, high=2**31 - 1, integer=True, domain=(0, 10000), doc="data seed")

    def check(self) -> None:
        _shape_check(self)


def fd_forward_backward_split(gamma: float, eps: float, int_J: Array) -> np.ndarray:
    """First-order split of FD-GR's log effective scale around exact GR.

    ``log alpha_i(+-|eps|) - log alpha_i(GR) = -/+ 16 gamma |eps| J_i + O(gamma eps^2)`` with
    ``J_i = int g_i (M (g (u^2 + v^2)))_i dt`` along the GR trajectory (derived in
    proofs_check/check_dln.py; the trajectories of the three methods also differ at O(gamma eps),
    which enters the difference at second order). Returns ``[forward, backward]`` of the
    coordinate means.
    """
    gamma = check_range("gamma", gamma, 0.0)
    eps = abs(_gr._check_eps(eps))
    j = float(np.mean(np.asarray(int_J, dtype=float)))
    return np.array([-16 * gamma * eps * j, 16 * gamma * eps * j])


def _fd_runs(p, backend: Backend | None = None) -> dict:
    """Forward (+eps) and backward (-eps) FD-GR in one batched call (eps per run)."""
    if backend is None:
        run = _numpy_run(p, "fd", p.gamma, (p.eps, -p.eps))
    else:
        X, y, _ = _data(p)
        run = simulate(X, y, np.full((2, 1), p.alpha), method="fd", gamma=p.gamma, eps=np.array([p.eps, -p.eps]),
                       c=_GR_C, max_steps=_MAX_STEPS, rtol_loss=_rtol_loss(backend), backend=backend)
    return {"fd_forward": _row(run, 0), "fd_backward": _row(run, 1)}


def _predict_rich_bias(p: GRRichBiasParams) -> np.ndarray:
    # argmin Q with alpha_i = alpha exp(-4 gamma int g_i(theta) g_i(theta + eps grad L) dt), the exact
    # FD-GR effective scale, its integral taken along numpy runs of FD-GR (forward, then backward).
    X, y, _ = _data(p)
    out = []
    for run in _fd_runs(p).values():  # integrals stay finite if a run diverged; measured reports it
        out.append(implicit_bias_solution(X, y, effective_alpha(p.alpha, p.gamma, run.numpy("int_ggplus")[0])))
    return np.concatenate(out)


def _measure_rich_bias(p: GRRichBiasParams, backend: Backend, seed: int) -> Measurement:
    X, y, _ = _data(p)
    b1 = min_l1_interpolator(X, y)  # for the distances reported in info only
    if backend.name == "numpy" and backend.dtype == "float64":
        runs = {"gd": _numpy_run(p, "gd", 0.0, None), "gr": _numpy_run(p, "gr", p.gamma, None), **_fd_runs(p)}
    else:
        kw = dict(c=_GR_C, max_steps=_MAX_STEPS, rtol_loss=_rtol_loss(backend), backend=backend)
        runs = {"gd": simulate(X, y, p.alpha, method="gd", **kw),
                "gr": simulate(X, y, p.alpha, method="gr", gamma=p.gamma, first_order_integrals=True, **kw),
                **_fd_runs(p, backend)}
    for r in runs.values():
        bad = _diverged(r, p.d, rows=2)
        if bad is not None:
            return bad
    log_a = {k: np.log(effective_alpha(p.alpha, p.gamma, r.numpy("int_ggplus")[0]))
             for k, r in runs.items() if k != "gd"}
    mean_log = {k: float(np.mean(v) - math.log(p.alpha)) for k, v in log_a.items()}
    drift = max(float(np.max(np.abs(_log_invariant_drift(runs[k].numpy("theta")[0], log_a[k]))))
                for k in ("fd_forward", "fd_backward"))
    res = max(_residual_term(X, runs[k].numpy("beta")[0], float(runs[k].numpy("loss")[0]))
              for k in ("fd_forward", "fd_backward"))
    l1 = {k: float(np.sum(np.abs(r.numpy("beta")[0]))) for k, r in runs.items()}
    dist = {k: float(np.linalg.norm(r.numpy("beta")[0] - b1) / np.linalg.norm(b1)) for k, r in runs.items()}
    split_pred = fd_forward_backward_split(p.gamma, p.eps, runs["gr"].numpy("int_J")[0])
    split_meas = [mean_log["fd_forward"] - mean_log["gr"], mean_log["fd_backward"] - mean_log["gr"]]
    value = np.concatenate([runs["fd_forward"].numpy("beta")[0], runs["fd_backward"].numpy("beta")[0]])
    return Measurement(
        value=value,
        checks={"alpha_eff_forward_lt_gr_lt_backward":
                bool(mean_log["fd_forward"] < mean_log["gr"] < mean_log["fd_backward"]),
                "converged": all(bool(r.numpy("converged")[0]) for r in runs.values()),
                "drift_below_0.1": drift < 0.1},
        info={"mean_log_alpha_eff_over_alpha": mean_log, "backward_raises_alpha_eff": mean_log["fd_backward"] > 0,
              "l1_norm": l1, "relative_distance_to_min_l1": dist,
              "l1_norm_gd_lt_backward_lt_gr_lt_forward": bool(l1["gd"] < l1["fd_backward"] < l1["gr"] < l1["fd_forward"]),
              "split_vs_gr_measured": split_meas, "split_vs_gr_first_order": split_pred.tolist(),
              "log_alpha_drift": drift, "residual_term": res,
              "final_loss": {k: float(r.numpy("loss")[0]) for k, r in runs.items()},
              "steps": {k: int(r.numpy("steps")[0]) for k, r in runs.items()}})


def _rich_error(predicted, measured) -> float:
    return _limits_error(predicted, measured)


register(Claim(
    id="dln.gr_rich_bias",
    statement=("Finite-difference GR ends at argmin_{X beta = y} Q with alpha_i = alpha exp(-4 gamma int g_i(theta) "
               "g_i(theta + eps grad L) dt) (exact, derived here); forward differences (eps > 0) shrink alpha_eff "
               "more than exact GR, backward (eps < 0) less (first order: -/+ 16 gamma |eps| int g (M (g (u^2+v^2)))), "
               "and backward can even raise it above alpha (towards the kernel regime) when that term beats "
               "4 gamma int g^2. "
               "Karakida et al.'s 'towards the rich regime' holds in this alpha_eff sense only: the shrink is largest "
               "on high-gradient (teacher-support) coordinates, and with a Gaussian design and a sparse teacher the "
               "endpoint moves away from the min-l1 interpolator (||beta||_1 grows: GD < backward < GR < forward)."),
    reference=("Karakida et al. 2023, arXiv 2210.02720, Sec. 5 (GR and forward FD-GR bias DLNs towards the rich "
               "regime); the exact FD-GR alpha_eff, its first-order split and the l1 counter-observation are "
               "derived and measured here"),
    params=GRRichBiasParams,
    predicted=_predict_rich_bias,
    measured=_measure_rich_bias,
    tolerance=_tol_discretisation,
    error=_rich_error,
    sweep="eps", sweep_values=(0.05, 0.1, 0.15),
    summary=lambda b: float(np.sum(np.abs(np.asarray(b, dtype=float)[: len(b) // 2]))),
    summary_label="||beta_forward||_1",
))
