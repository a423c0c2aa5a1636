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
    return dual_solve(X, y, a2, 0.0, rtol=rtol)


def dual_solve(X: np.ndarray, y: np.ndarray, a: np.ndarray, phi, *, rtol: float = 1e-11) -> np.ndarray:
    """``beta(mu) = 2 a sinh(X^T mu + phi)`` with ``mu`` minimising the convex dual
    ``sum_i 2 a_i cosh((X^T mu)_i + phi_i) - y^T mu`` (``phi = 0``: the balanced start of
    :func:`implicit_bias_solution`, ``a = alpha^2``; ``phi != 0``: the tilted limit of an unbalanced
    start, used by ``reinit``). Trust-region Newton, then Newton polishing, then a residual check."""
    # Scaling the dual by 1/||y|| keeps the trust region well conditioned when alpha is tiny.
    scale = max(float(np.linalg.norm(y)), 1e-300)

    def fun(mu):
        return float(np.sum(2 * a * np.cosh(X.T @ mu + phi)) - y @ mu) / scale

    def jac(mu):
        return (X @ (2 * a * np.sinh(X.T @ mu + phi)) - y) / scale

    def hess(mu):
        return (X * (2 * a * np.cosh(X.T @ mu + phi))) @ X.T / scale

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
    beta = 2 * a * np.sinh(X.T @ mu + phi)
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
             record_every: int = 0, first_order_integrals: bool = False, refine: Any = 1.0,
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
    the slope 1 by halving ``c``). ``refine`` multiplies the whole step (both bounds), so runs at
    ``refine = h, h/2, h/4`` are one scheme at three step sizes, whose endpoints extrapolate to the
    flow's (Richardson); ``refine < 4`` keeps ``eta Lambda < 2``, inside explicit Euler's stability
    region. ``eta`` fixes the step instead (used to show divergence).

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
      refine: multiplies the adaptive step, in ``(0, 4)``: a number, or a ``(B,)`` array, one per run.
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
    refine_np = np.asarray(Backend.to_numpy(refine) if hasattr(refine, "detach") else refine, dtype=float)
    if refine_np.ndim > 1 or not np.all(np.isfinite(refine_np)) or np.any(refine_np <= 0) or np.any(refine_np >= 4):
        raise ValueError(f"refine={refine!r} is out of range: refine must be a number in (0, 4) or a 1-D array "
                         "of them, one per run")
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
    if refine_np.ndim == 1 and refine_np.shape[0] != B:
        raise ValueError(f"refine has {refine_np.shape[0]} entries but the batch has {B} runs: they must match")
    refine_b = be.asarray(refine_np) if refine_np.ndim == 1 else float(refine_np)

    theta = xp.concat([a, a], axis=-1)

    # The hot loop is overhead-bound (small arrays, thousands of steps): products with X use a
    # transpose taken once, and the gradient at the current iterate, computed once per step for the
    # loss and the step size, is reused by the GR/FD directions (``cache``) instead of recomputed
    # (measured: 0.86 -> ~0.2 ms per GR step, numpy, B = 3, n = 15, d = 40).
    Xt = xp.matrix_transpose(X)
    if X.ndim == 2:
        def fX(b):
            return b @ Xt

        def fXt(r):
            return r @ X
    else:
        def fX(b):
            return xp.matmul(X, b[..., None])[..., 0]

        def fXt(r):
            return xp.matmul(r[..., None, :], X)[..., 0, :]

    def g_at(th):
        u, v = th[..., :d], th[..., d:]
        return fXt(fX(u * u - v * v) - y) / n

    cache: dict = {"theta": None}

    def grad_fn(th):
        """``grad_theta L``; at the current iterate the gradient computed for the step is reused, and
        the last ``g`` at another point is kept (``g_shift``: FD-GR's ``g(theta + eps grad L)``)."""
        if th is cache["theta"]:
            return cache["grad"]
        g = g_at(th)
        cache["g_shift"] = g
        return xp.concat([2.0 * th[..., :d] * g, -2.0 * th[..., d:] * g], axis=-1)

    def hvp_fn(th, w):
        """``H(theta) w`` as :func:`dln_hvp`, reusing ``g`` at the current iterate."""
        g = cache["g"] if th is cache["theta"] else g_at(th)
        u, v = th[..., :d], th[..., d:]
        wu, wv = w[..., :d], w[..., d:]
        mjw = fXt(fX(2.0 * u * wu - 2.0 * v * wv)) / n
        return xp.concat([2.0 * g * wu + 2.0 * u * mjw, -2.0 * g * wv - 2.0 * v * mjw], axis=-1)

    if X.ndim == 2:
        lam_M = xp.linalg.eigvalsh(X @ Xt / n)[-1] * xp.ones((B,), dtype=be.float_dtype, device=X.device)
    else:
        lam_M = xp.linalg.eigvalsh(xp.matmul(X, Xt) / n)[:, -1]

    col2 = xp.sum(X * X, axis=-2) / n  # ||x_i||^2 / n per column, (d,) or (B, d)

    def direction(th, L):
        if method == "gd":
            return cache["grad"]
        if method == "gr":
            return _gr.gr_gradient(grad_fn, hvp_fn, th, gamma)
        if method == "fd":
            return _gr.fd_gr_gradient(grad_fn, th, gamma, eps)
        if method == "central":
            return _gr.central_fd_gr_gradient(grad_fn, th, gamma, eps)
        return _gr.flooding_gradient(L, cache["grad"], flood)

    loss0 = dln_loss(X, y, theta)
    bound = 1e12 * (loss0 + 1.0)
    target = rtol_loss * loss0
    zeros_B = xp.zeros((B,), dtype=be.float_dtype, device=X.device)
    t = zeros_B
    steps = xp.zeros((B,), dtype=xp.int64, device=X.device)
    int_g2 = xp.zeros((B, d), dtype=be.float_dtype, device=X.device)
    int_ggp = xp.zeros((B, d), dtype=be.float_dtype, device=X.device)
    int_J = xp.zeros((B, d), dtype=be.float_dtype, device=X.device)
    zero_d = xp.zeros_like(int_g2)
    div_step = -xp.ones((B,), dtype=xp.int64, device=X.device)
    active = xp.ones((B,), dtype=xp.bool, device=X.device)
    history: dict = {"step": [], "loss": [], "beta": []} if record_every else {}
    stiff = method in ("gr", "fd", "central")

    with np.errstate(all="ignore"):
        for k in range(max_steps + 1):
            u, v = theta[..., :d], theta[..., d:]
            beta = u * u - v * v
            r = fX(beta) - y
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
            g = fXt(r) / n
            cache.update(theta=theta, g=g, grad=xp.concat([2.0 * u * g, -2.0 * v * g], axis=-1))
            G = direction(theta, L)
            w = u * u + v * v
            if eta is None:
                # accuracy: each u_i, v_i moves by at most a fraction c per step (they stay > 0 under
                # the flow); stability: eta * Lambda <= 1/2 with Lambda >= ||Hessian of the update||.
                # ||X diag(w) X^T / n|| <= min(lambda_max(M) max_i w_i, trace = sum_i w_i ||x_i||^2 / n);
                # the trace bound is the tight one in the rich regime, where few w_i are large.
                kern = xp.minimum(lam_M * xp.max(w, axis=-1), xp.sum(w * col2, axis=-1))
                lam = 2.0 * xp.max(xp.abs(g), axis=-1) + 4.0 * kern
                if stiff:
                    lam = lam * (1.0 + gamma * lam)
                rel = xp.max(xp.abs(G) / xp.abs(theta), axis=-1)
                step = refine_b * xp.minimum(c / rel, 0.5 / lam)
            else:
                step = eta + zeros_B
            step = xp.where(active, step, zeros_B)
            # A frozen (diverged) run has step 0 but may have non-finite g: 0 * inf = NaN would
            # poison its integrals, so they add only where the run is active; divergence is
            # reported through `diverged` alone.
            act = active[:, None]
            sg = step[:, None] * g
            int_g2 = int_g2 + xp.where(act, sg * g, zero_d)
            if method == "fd":  # g(theta + eps grad L), kept by grad_fn when fd_gr_gradient asked for it
                int_ggp = int_ggp + xp.where(act, sg * cache["g_shift"], zero_d)
            if first_order_integrals:
                # first-order FD-GR coefficient g_i (M (g (u^2 + v^2)))_i along the unregularised flow
                int_J = int_J + xp.where(act, sg * (fXt(fX(g * w)) / n), zero_d)
            theta = xp.where(act, theta - step[:, None] * G, theta)
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
# Refinement levels of the Richardson-extrapolated claims: run j steps refine_j x min(c/rel, 0.5/Lambda)
# (see simulate), so the three runs are one scheme at steps h = 3, 3/2, 3/4 (in units of the base
# step); at 3 the stability bound puts eta Lambda at 1.5, inside Euler's region eta Lambda < 2. Over
# 4 seeds x 3 alphas the GD endpoint's error after extrapolation was 0.09-0.36 of the allowance
# ||R1 - R2|| (the leading-order theory says 1/3), the same as at h = 2, 1, 1/2 for 2/3 of the steps.
_LEVELS = (3.0, 1.5, 0.75)
# base step fraction of the GR claims: the step count is set by the stability bound there, not by c
# (0.005 -> 0.04 changes it by 3%), while the Richardson allowance falls from 5e-5 to 2.5e-6
_GR_C = 0.005


def _rtol_loss(be: Backend) -> float:
    # float64: stop at L <= 1e-14 L(0) (beta then within ~1e-7 relative of the interpolating set);
    # float32 cannot resolve that, so stop at its round-off floor (100 eps)^2.
    return max(1e-14, (100.0 * be.eps) ** 2)


def _rtol_loss_fine(be: Backend) -> float:
    # the Richardson-extrapolated claims resolve ~1e-6 in beta: stop at 1e-18 L(0) (beta within
    # ~1e-9 of the interpolating set) in float64, at the round-off floor in float32
    return max(1e-18, (100.0 * be.eps) ** 2)


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


def _log_scale(theta: np.ndarray, alpha: float) -> np.ndarray:
    """``log(sqrt(u_i v_i) / alpha)`` read off the simulated parameters: the run's own effective scale
    (for the flow ``u_i v_i`` moves only through the regulariser), not the closed form's."""
    d = theta.shape[-1] // 2
    return 0.5 * np.log(theta[..., :d] * theta[..., d:]) - math.log(alpha)


def _diverged(run: DLNRun, d: int, rows: int = 1) -> Measurement | None:
    div = run.numpy("diverged")
    if np.any(div):
        step = int(np.max(run.numpy("diverged_step")))
        return Measurement(value=np.full(rows * d, np.nan), diverged=True, diverged_step=step)
    return None


def _richardson(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First-order Richardson extrapolation over the three :data:`_LEVELS` (leading axis of ``x``).

    With ``x(h) = x* + K1 h + K2 h^2 + O(h^3)`` at ``h = 2s, s, s/2``: ``R1 = 2 x(s) - x(2s) = x* - 2 K2 s^2``,
    ``R2 = 2 x(s/2) - x(s) = x* - K2 s^2/2``, so ``R1 - R2 = -3 K2 s^2 / 2`` is three times the residual of
    ``R2`` to leading order. Returns ``(R2, R1 - R2)``.
    """
    x = np.asarray(x, dtype=float)
    r1, r2 = 2.0 * x[1] - x[0], 2.0 * x[2] - x[1]
    return r2, r1 - r2


def _levels_alpha(alpha: float, groups: int = 1) -> np.ndarray:
    return np.full((len(_LEVELS) * groups, 1), alpha)


def _levels_refine(groups: int = 1) -> np.ndarray:
    return np.tile(np.asarray(_LEVELS), groups)


def _richardson_beta(X: np.ndarray, run_beta: np.ndarray, run_loss: np.ndarray) -> tuple[np.ndarray, float, float]:
    """``(R2, allowance, residual)`` of the final ``beta`` over the levels: the allowance is
    ``||R1 - R2|| / ||R2||`` (three times the leading-order residual estimate; the factor covers a
    third-order term up to twice the second-order one), the residual ``3 max_j sqrt(2nL_j)/(s_min ||beta_j||)``
    (R2 = 2 x(1/2) - x(1): the unconverged residuals of the runs add with weights 2 and 1)."""
    beta, diff = _richardson(run_beta)
    nb = max(float(np.linalg.norm(beta)), 1e-300)
    res = 3.0 * max(_residual_term(X, run_beta[j], float(run_loss[j])) for j in range(len(_LEVELS)))
    return beta, float(np.linalg.norm(diff)) / nb, res


_RICHARDSON_REASON = (
    "measured discretisation error: the endpoint is Richardson-extrapolated from runs at steps h, h/2, h/4 "
    "(R2 = 2 b(h/4) - b(h/2)); the allowance is ||R1 - R2|| / ||R2||, 3x the leading-order estimate (R1 - R2)/3 "
    "of R2's O(h^2) residual (tests/test_dln.py checks it against the exact GD endpoint argmin Q_alpha over "
    "seeds and alphas), plus 3x the runs' unconverged residual sqrt(2nL)/(s_min ||beta||) and round-off")


# -- dln.implicit_bias ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ImplicitBiasParams(Params):
    # alpha = 0.3: between the regimes, where argmin Q_alpha is 20-70% from both limits and a factor
    # sqrt(2) in alpha moves it by 12-15%; the domain reaches alpha = 3, where it is within ~1e-3 of
    # min-l2 and the Richardson allowance (~1e-7 there) still separates the mutants.
    alpha: float = param(0.3, low=0.01, high=100.0, domain=(0.1, 3.0), log=True,
                         doc="initial scale alpha: u(0) = v(0) = alpha (below 0.01 GD needs more steps than the budget)")
    n: int = param(15, low=2, high=100, integer=True, domain=(10, 20), doc="number of samples n")
    d: int = param(40, low=3, high=200, integer=True, domain=(30, 50), doc="dimension d (> n)")
    k: int = param(3, low=1, high=20, integer=True, domain=(1, 3), doc="sparsity k of the teacher")
    seed: int = param(0, low=0, high=2**31 - 1, integer=True, domain=(0, 10000), doc="data seed")
    c: float = param(0.01, low=1e-3, high=0.25, domain=(0.005, 0.02), log=True,
                     doc="base step fraction c of the adaptive GD step; the runs use 3c, 1.5c, 0.75c (error O(c))")

    def check(self) -> None:
        _shape_check(self)


def _predict_implicit_bias(p: ImplicitBiasParams) -> np.ndarray:
    X, y, _ = _data(p)
    return implicit_bias_solution(X, y, p.alpha)


def _measure_implicit_bias(p: ImplicitBiasParams, backend: Backend, seed: int) -> Measurement:
    # The dynamics are deterministic given the data; the data come from p.seed so that the closed
    # form and the simulation see the same X, y on every backend. Three step sizes in one call.
    X, y, _ = _data(p)
    run = simulate(X, y, _levels_alpha(p.alpha), c=p.c, refine=_levels_refine(), max_steps=_MAX_STEPS,
                   rtol_loss=_rtol_loss_fine(backend), backend=backend)
    bad = _diverged(run, p.d)
    if bad is not None:
        return bad
    bl, loss, theta = run.numpy("beta"), run.numpy("loss"), run.numpy("theta")
    beta, allowance, res = _richardson_beta(X, bl, loss)
    drift = float(np.max(np.abs(_log_scale(theta[-1], p.alpha))))
    return Measurement(
        value=beta,
        checks={"converged": bool(np.all(run.numpy("converged")))},
        info={"richardson_allowance": allowance, "residual_term": res, "final_loss": loss.tolist(),
              "steps": run.numpy("steps").tolist(), "log_alpha_drift_finest": drift,
              "first_order_error_finest": float(np.linalg.norm(bl[-1] - beta) / np.linalg.norm(beta)),
              "l1_norm": float(np.sum(np.abs(beta))), "l2_norm": float(np.linalg.norm(beta))})


def _tol_richardson(p, m: Measurement, be: Backend) -> Tolerance:
    if m.diverged:
        return Tolerance(0.0, "diverged")
    tol = m.info["richardson_allowance"] + m.info["residual_term"] + be.roundoff(100 * p.d)
    return Tolerance(tol, _RICHARDSON_REASON)


register(Claim(
    id="dln.implicit_bias",
    statement=("Gradient flow on beta = u*u - v*v from u = v = alpha, loss ||X beta - y||^2/(2n), converges to "
               "argmin_{X beta = y} Q_alpha(beta), Q_alpha = alpha^2 sum_i q(beta_i/alpha^2), "
               "q(z) = 2 - sqrt(4+z^2) + z asinh(z/2); measured: GD endpoints at three step sizes, "
               "Richardson-extrapolated to the flow."),
    reference=("Woodworth et al. 2020, arXiv 1906.05827, Theorem 1; closed form solved here through the dual "
               "beta = 2 alpha^2 sinh(X^T mu), constant of mu = -(4/n) int r dt derived in proofs_check/check_dln.py"),
    params=ImplicitBiasParams,
    predicted=_predict_implicit_bias,
    measured=_measure_implicit_bias,
    tolerance=_tol_richardson,
    sweep="alpha", sweep_values=(0.1, 0.3, 1.0, 3.0),
    summary=lambda b: float(np.sum(np.abs(np.asarray(b, dtype=float)))), summary_label="||beta||_1",
    mutants={
        "rich limit (min-l1) at every alpha": lambda p: min_l1_interpolator(*_data(p)[:2]),
        "kernel limit (min-l2) at every alpha": lambda p: min_l2_interpolator(*_data(p)[:2]),
        "scale from the initial weight norm (u^2 + v^2 = 2 alpha^2 for alpha^2)":
            lambda p: implicit_bias_solution(*_data(p)[:2], math.sqrt(2.0) * p.alpha),
        "factor 2 dropped in the KKT form (beta = alpha^2 sinh(X^T mu))":
            lambda p: implicit_bias_solution(*_data(p)[:2], p.alpha / math.sqrt(2.0)),
    },
    closed_forms=("implicit_bias_solution",),
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
    # One batched call: the two scales asked for, each moved 10x away from its limit (for the
    # monotonicity checks), and alpha_large at the three Richardson levels (its limit is resolved
    # to ~1e-6, far below its first-order discretisation error).
    alphas = np.array([p.alpha_small, 10 * p.alpha_small, p.alpha_large / 10] + [p.alpha_large] * len(_LEVELS))
    refine = np.array([1.0, 1.0, 1.0, *_LEVELS])
    # The last approach to the interpolating set is sublinear at small alpha (the inactive
    # coordinates decay at a rate proportional to their own size); the run is capped and the
    # unconverged residual enters the tolerance (residual_term) and a check.
    run = simulate(X, y, alphas[:, None], c=_LIMITS_C, refine=refine, max_steps=_LIMITS_STEPS,
                   rtol_loss=_rtol_loss_fine(backend), backend=backend)
    bad = _diverged(run, p.d, rows=2)
    if bad is not None:
        return bad
    beta, theta, loss = run.numpy("beta"), run.numpy("theta"), run.numpy("loss")
    drift = np.max(np.abs(_log_invariant_drift(theta, np.log(alphas)[:, None])), axis=1)
    res = [_residual_term(X, beta[i], float(loss[i])) for i in range(len(alphas))]
    l1 = np.sum(np.abs(beta[:4]), axis=1)
    l2 = np.linalg.norm(beta[:4], axis=1)
    slack = 2 * drift[:4] + np.asarray(res[:4])
    b_large, rich_allow, rich_res = _richardson_beta(X, beta[3:], loss[3:])
    return Measurement(
        value=np.concatenate([beta[0], b_large]),
        # monotone in alpha up to the runs' own error budget (2 x drift + residual term), which
        # matters once both runs sit on the limit to within it
        checks={"l1_norm_decreases_as_alpha_decreases": bool(l1[0] <= l1[1] * (1 + slack[0] + slack[1])),
                "residual_term_below_0.05": bool(max(res) < 0.05),
                "l2_norm_decreases_as_alpha_increases": bool(l2[3] <= l2[2] * (1 + slack[2] + slack[3]))},
        info={"alphas": alphas[:4].tolist(), "l1_norms": l1.tolist(), "l2_norms": l2.tolist(),
              "final_loss": loss.tolist(), "steps": run.numpy("steps").tolist(),
              "log_alpha_drift": drift.tolist(), "residual_term": res,
              "large_richardson_allowance": rich_allow, "large_residual_term": rich_res})


def _limits_errors(predicted, measured) -> np.ndarray:
    """``[relative error of the small-alpha half, relative error of the large-alpha half]``."""
    from ..claims import relative_error

    p = np.asarray(predicted, dtype=float)
    m = np.asarray(measured, dtype=float)
    h = p.size // 2
    return np.array([relative_error(p[:h], m[:h]), relative_error(p[h:], m[h:])])


def _finite_alpha_gaps(p: KernelRichParams) -> tuple[float, float]:
    """The distance of argmin Q_alpha to its limit, from Q_alpha alone (never from the limits).

    Small alpha: telescoped over alpha_s, alpha_s^2, alpha_s^3, ``d1 + d2 / (1 - d2/d1)`` with
    ``d_j = ||Q(alpha_s^j) - Q(alpha_s^(j+1))||``: the leakage off the l1 solution's support decays like
    a power of alpha (its exponent set by the dual slack), so the differences fall geometrically.
    Large alpha: ``Q_alpha = ||beta||^2/(4 alpha^2) + O(alpha^-6)`` (proofs_check) puts argmin Q_alpha
    at ``b2 + C alpha^-4 + O(alpha^-8)``, hence the gap at alpha_L is ``(16/15) ||Q(alpha_L) - Q(2 alpha_L)||``.
    Both relative to the norm of the solution nearer the limit.
    """
    X, y, _ = _data(p)
    qs = [implicit_bias_solution(X, y, p.alpha_small ** j) for j in (1, 2, 3)]
    n3 = float(np.linalg.norm(qs[2]))
    d1, d2 = (float(np.linalg.norm(qs[j] - qs[j + 1])) / n3 for j in (0, 1))
    gap_s = d1 + (d2 / (1.0 - d2 / d1) if d2 < d1 else math.inf)
    ql, ql2 = implicit_bias_solution(X, y, p.alpha_large), implicit_bias_solution(X, y, 2 * p.alpha_large)
    gap_l = (16.0 / 15.0) * float(np.linalg.norm(ql - ql2) / np.linalg.norm(ql2))
    return gap_s, gap_l


def _tol_limits(p: KernelRichParams, m: Measurement, be: Backend) -> Tolerance:
    if m.diverged:
        return Tolerance(np.zeros(2), "diverged")
    gap_s, gap_l = _finite_alpha_gaps(p)
    dr, rs = m.info["log_alpha_drift"], m.info["residual_term"]
    ro = be.roundoff(100 * p.d)
    tol_s = gap_s + 2 * dr[0] + rs[0] + ro
    tol_l = gap_l + m.info["large_richardson_allowance"] + m.info["large_residual_term"] + ro
    m.info["finite_alpha_gap"] = [gap_s, gap_l]
    return Tolerance(np.array([tol_s, tol_l]), (
        f"per half. Finite-alpha gap of argmin Q_alpha to its limit, from Q_alpha alone: {gap_s:.2e} at alpha_s "
        f"(telescoped over alpha_s^j, j = 1, 2, 3), {gap_l:.2e} at alpha_L ((16/15) ||Q(alpha_L) - Q(2 alpha_L)||, "
        "the alpha^-4 law). Small alpha: plus the first-order GD error (2 x invariant drift + residual term). "
        "Large alpha: plus the Richardson allowance of the extrapolated run (" + _RICHARDSON_REASON.split(": ", 1)[1]
        + ")"))


register(Claim(
    id="dln.kernel_rich_limits",
    statement=("The gradient-flow solution tends to the minimum-l1 interpolator as alpha -> 0 (rich regime) and to "
               "the minimum-l2 interpolator as alpha -> inf (kernel regime); each half is judged against its own "
               "allowance, the finite-alpha gap of argmin Q_alpha (computed from Q_alpha alone: a data-dependent "
               "power of alpha at small alpha, alpha^-4 at large alpha) plus the run's discretisation error; "
               "checked too: ||beta||_1 does not grow from 10 alpha_s to alpha_s, nor ||beta||_2 from alpha_L/10 to "
               "alpha_L, beyond the runs' errors."),
    reference="Woodworth et al. 2020, arXiv 1906.05827, Theorem 2 and Sec. 3; limits of Q_alpha derived in proofs_check",
    params=KernelRichParams,
    predicted=_predict_limits,
    measured=_measure_limits,
    tolerance=_tol_limits,
    error=_limits_errors,
    sweep="alpha_small", sweep_values=(0.005, 0.01, 0.02),
    summary=lambda b: float(np.sum(np.abs(np.asarray(b, dtype=float)[: len(b) // 2]))),
    summary_label="||beta(alpha_small)||_1",
    mutants={
        "limits swapped (kernel regime at small alpha)":
            lambda p: np.concatenate([min_l2_interpolator(*_data(p)[:2]), min_l1_interpolator(*_data(p)[:2])]),
        "no rich regime (min-l2 at both scales)": lambda p: np.concatenate([min_l2_interpolator(*_data(p)[:2])] * 2),
        "no kernel regime (min-l1 at both scales)": lambda p: np.concatenate([min_l1_interpolator(*_data(p)[:2])] * 2),
        "kernel limit 2% off (1.02 x min-l2)":
            lambda p: np.concatenate([min_l1_interpolator(*_data(p)[:2]), 1.02 * min_l2_interpolator(*_data(p)[:2])]),
    },
    closed_forms=("min_l1_interpolator", "min_l2_interpolator"),
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


def _level_runs(p, method: str, gamma: float, eps: float | None, backend: Backend,
                first_order_integrals: bool = False) -> DLNRun:
    """``method`` at the three :data:`_LEVELS` in one call; with ``eps`` (FD-GR), forward (+eps) then
    backward (-eps): six runs."""
    X, y, _ = _data(p)
    groups = 1 if eps is None else 2
    eps_runs = None if eps is None else np.repeat([eps, -eps], len(_LEVELS))
    return simulate(X, y, _levels_alpha(p.alpha, groups), method=method, gamma=gamma, eps=eps_runs, c=_GR_C,
                    refine=_levels_refine(groups), max_steps=_MAX_STEPS, rtol_loss=_rtol_loss_fine(backend),
                    first_order_integrals=first_order_integrals, backend=backend)


@functools.lru_cache(maxsize=16)
def _numpy_levels(p: Params, method: str, gamma: float, eps: float | None) -> DLNRun:
    """:func:`_level_runs` on numpy float64, cached: ``predicted``, the mutants and a numpy
    ``measured`` share one simulation."""
    return _level_runs(p, method, gamma, eps, get_backend("numpy"), first_order_integrals=(method == "gr"))


def _runs(p, method: str, gamma: float, eps: float | None, backend: Backend) -> DLNRun:
    if backend.name == "numpy" and backend.dtype == "float64":
        return _numpy_levels(p, method, gamma, eps)
    return _level_runs(p, method, gamma, eps, backend, first_order_integrals=(method == "gr"))


def _rows(run: DLNRun, name: str, group: int = 0) -> np.ndarray:
    """The three level rows of ``name`` for group ``group`` (0: the run, or FD forward; 1: FD backward)."""
    k = len(_LEVELS)
    return run.numpy(name)[group * k:(group + 1) * k]


def _integral(run: DLNRun, name: str, group: int = 0) -> np.ndarray:
    """A Richardson-extrapolated integral (``int_g2`` or ``int_ggplus``) along the flow."""
    return _richardson(_rows(run, name, group))[0]


def _gr_prediction(p, integral: np.ndarray, const: float = 4.0) -> np.ndarray:
    """argmin Q with alpha_i = alpha exp(-const gamma I_i); ``const = 4`` is :func:`effective_alpha`."""
    X, y, _ = _data(p)
    a = effective_alpha(p.alpha, p.gamma, integral) if const == 4.0 else \
        p.alpha * np.exp(-const * p.gamma * np.asarray(integral))
    return implicit_bias_solution(X, y, a)


def _predict_gr_effective_alpha(p: GREffectiveAlphaParams) -> np.ndarray:
    # The closed form is argmin Q with coordinate-wise alpha_i = alpha exp(-4 gamma I_i); its input
    # I_i = int g_i^2 dt is a functional of the GR flow with no closed form, so it is taken from numpy
    # runs of GR at the three levels, Richardson-extrapolated (residual ~1e-5 relative). A diverged
    # run keeps finite integrals up to its divergence (simulate masks frozen runs); measured reports it.
    return _gr_prediction(p, _integral(_numpy_levels(p, "gr", p.gamma, None), "int_g2"))


def _kkt_sensitivity(X: np.ndarray, theta: np.ndarray, beta: np.ndarray) -> float:
    """``||P diag(2 beta)||_2 / ||beta||``: the first-order change of argmin_{X beta = y} Q_a per unit change
    of the log-scales ``log a_i`` (relative, worst direction), read off the simulated endpoint.

    From the KKT form ``beta_i = 2 a_i^2 sinh(z_i)``, ``z in range(X^T)``: ``d beta = P (2 beta d log a)`` with
    ``P = I - W X^T (X W X^T)^-1 X`` and ``W = diag(2 a^2 cosh z) = diag(u^2 + v^2)`` (since ``a_i^2 = u_i v_i``).
    """
    d = theta.shape[-1] // 2
    w = theta[:d] ** 2 + theta[d:] ** 2
    XW = X * w
    P = np.eye(d) - XW.T @ np.linalg.solve(XW @ X.T, X)
    return float(np.linalg.norm(P * (2.0 * beta), 2) / max(float(np.linalg.norm(beta)), 1e-300))


def _integral_allowance(X, theta_levels, beta, I_levels, alpha) -> tuple[float, float]:
    """The effect on the prediction of the residual of the extrapolated integral ``I``.

    ``|I_R1 - I_R2|`` (three times the leading-order residual of ``I_R2``) moves each ``log alpha_i`` by its
    relative size times the simulated log-scale ``log(sqrt(u_i v_i)/alpha)`` (``log alpha_i`` is proportional to
    ``I_i``, whatever the constant); the change of the argmin is that times :func:`_kkt_sensitivity`.
    Returns ``(allowance, max relative residual of I)``.
    """
    I, dI = _richardson(I_levels)
    log_a, _ = _richardson(_log_scale(theta_levels, alpha))
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(np.abs(I) > 0, np.abs(dI) / np.abs(I), 0.0)
    delta = rel * np.abs(log_a)
    return _kkt_sensitivity(X, theta_levels[-1], beta) * float(np.linalg.norm(delta)), float(np.max(rel))


def _measure_gr_effective_alpha(p: GREffectiveAlphaParams, backend: Backend, seed: int) -> Measurement:
    X, y, _ = _data(p)
    run = _runs(p, "gr", p.gamma, None, backend)
    bad = _diverged(run, p.d)
    if bad is not None:
        return bad
    theta, loss = run.numpy("theta"), run.numpy("loss")
    beta, allowance, res = _richardson_beta(X, run.numpy("beta"), loss)
    i_allow, i_rel = _integral_allowance(X, theta, beta, run.numpy("int_g2"), p.alpha)
    log_a, _ = _richardson(_log_scale(theta, p.alpha))
    # "alpha_i <= alpha" read off the simulated parameters (sqrt(u_i v_i) at the end), not off the
    # formula: a GR term of the wrong sign would raise u_i v_i above alpha^2 and fail it.
    return Measurement(
        value=beta,
        checks={"converged": bool(np.all(run.numpy("converged"))),
                "simulated_sqrt_uv_below_alpha": bool(np.all(_log_scale(theta, p.alpha) < 0))},
        info={"richardson_allowance": allowance, "integral_allowance": i_allow, "residual_term": res,
              "integral_relative_residual_max": i_rel, "final_loss": loss.tolist(),
              "steps": run.numpy("steps").tolist(),
              "simulated_alpha_eff_over_alpha_min": float(np.exp(np.min(log_a))),
              "simulated_alpha_eff_over_alpha_geomean": float(np.exp(np.mean(log_a)))})


def _tol_gr_effective_alpha(p, m: Measurement, be: Backend) -> Tolerance:
    if m.diverged:
        return Tolerance(0.0, "diverged")
    tol = m.info["richardson_allowance"] + m.info["integral_allowance"] + m.info["residual_term"] \
        + be.roundoff(100 * p.d)
    return Tolerance(tol, _RICHARDSON_REASON + "; plus the extrapolated integral's residual |I_R1 - I_R2| carried "
                     "through log alpha_i (proportional to I_i) and the KKT map's sensitivity ||P diag(2 beta)||, read "
                     "off the simulated endpoint")


register(Claim(
    id="dln.gr_effective_alpha",
    statement=("Exact GR (gradient grad L + gamma H grad L) on the DLN ends at argmin_{X beta = y} of Q with "
               "coordinate-wise scale alpha_i = alpha exp(-4 gamma int g_i^2 dt) <= alpha, g = grad_beta L; the "
               "constant 4 is derived (d log(u_i v_i)/dt = -8 gamma g_i^2) and holds for any scaling of L since g "
               "is the gradient in beta. The integral has no closed form: predicted takes it from the GR flow "
               "(numpy runs at three step sizes, Richardson-extrapolated), measured is the flow's endpoint "
               "(extrapolated the same way); the check is that Q with those scales picks that endpoint, and "
               "sqrt(u_i v_i) < alpha at the end of every run."),
    reference="Karakida et al. 2023, arXiv 2210.02720, Sec. 5 (DLN analysis); constant derived in proofs_check/check_dln.py",
    params=GREffectiveAlphaParams,
    predicted=_predict_gr_effective_alpha,
    measured=_measure_gr_effective_alpha,
    tolerance=_tol_gr_effective_alpha,
    sweep="gamma", sweep_values=(0.03, 0.1, 0.2),
    summary=lambda b: float(np.sum(np.abs(np.asarray(b, dtype=float)))), summary_label="||beta||_1",
    mutants={
        "constant 3 for 4": lambda p: _gr_prediction(
            p, _integral(_numpy_levels(p, "gr", p.gamma, None), "int_g2"), 3.0),
        "constant 8 for 4 (u_i v_i for alpha_i)": lambda p: _gr_prediction(
            p, _integral(_numpy_levels(p, "gr", p.gamma, None), "int_g2"), 8.0),
        "constant 2 for 4 (GD's gamma = eta/2 carried over)": lambda p: _gr_prediction(
            p, _integral(_numpy_levels(p, "gr", p.gamma, None), "int_g2"), 2.0),
        "one scalar scale (alpha exp(-4 gamma mean_i I_i))": lambda p: _gr_prediction(
            p, np.full(p.d, np.mean(_integral(_numpy_levels(p, "gr", p.gamma, None), "int_g2")))),
        "no GR effect (argmin Q_alpha)": lambda p: implicit_bias_solution(*_data(p)[:2], p.alpha),
    },
    closed_forms=("effective_alpha", "implicit_bias_solution"),
))


# -- dln.gr_rich_bias -----------------------------------------------------------------------------


@dataclass(frozen=True)
class GRRichBiasParams(Params):
    alpha: float = param(0.5, low=0.05, high=10.0, domain=(0.3, 1.0), log=True, doc="initial scale alpha")
    # gamma = |eps| = 0.1: the FD effect on beta against exact GR (~1e-2) and the forward/backward
    # split (~2e-2) sit far above the Richardson allowance (~1e-5); the domain keeps the l1 and
    # alpha_eff orderings (checks) clear of the runs' errors.
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


def _rich_prediction(p, const: float = 4.0, swap: bool = False) -> np.ndarray:
    """argmin Q with alpha_i = alpha exp(-const gamma int g_i g_i^+ dt), forward then backward, each
    integral taken along numpy FD-GR runs (Richardson-extrapolated)."""
    run = _numpy_levels(p, "fd", p.gamma, p.eps)
    out = [_gr_prediction(p, _integral(run, "int_ggplus", g), const) for g in (0, 1)]
    return np.concatenate(out[::-1] if swap else out)


def _predict_rich_bias(p: GRRichBiasParams) -> np.ndarray:
    # argmin Q with alpha_i = alpha exp(-4 gamma int g_i(theta) g_i(theta + eps grad L) dt), the exact
    # FD-GR effective scale; the integral (no closed form) is taken along the FD-GR flow.
    return _rich_prediction(p)


def _measure_rich_bias(p: GRRichBiasParams, backend: Backend, seed: int) -> Measurement:
    X, y, teacher = _data(p)
    fd = _runs(p, "fd", p.gamma, p.eps, backend)
    gr_run = _runs(p, "gr", p.gamma, None, backend)
    for r in (fd, gr_run):
        bad = _diverged(r, p.d, rows=2)
        if bad is not None:
            return bad
    groups = {"fd_forward": (fd, 0), "fd_backward": (fd, 1), "gr": (gr_run, 0)}
    beta, allow, res, log_a, i_allow = {}, {}, {}, {}, {}
    for k, (r, g) in groups.items():
        th = _rows(r, "theta", g)
        beta[k], allow[k], res[k] = _richardson_beta(X, _rows(r, "beta", g), _rows(r, "loss", g))
        log_a[k] = _richardson(_log_scale(th, p.alpha))[0]
        if k != "gr":
            i_allow[k] = _integral_allowance(X, th, beta[k], _rows(r, "int_ggplus", g), p.alpha)[0]
    # the simulated effective scales: means over coordinates, and on / off the teacher's support
    support = teacher != 0
    mean_log = {k: float(np.mean(v)) for k, v in log_a.items()}
    shrink_on = {k: float(np.mean(v[support])) for k, v in log_a.items()}
    shrink_off = {k: float(np.mean(v[~support])) for k, v in log_a.items()}
    # l1 norms of the extrapolated endpoints, each with its own error (||R1 - R2||_1-sized)
    l1 = {k: float(np.sum(np.abs(b))) for k, b in beta.items()}
    l1_err = {k: (allow[k] + res[k]) * float(np.linalg.norm(beta[k])) * math.sqrt(p.d) for k in beta}
    ordered = ("fd_backward", "gr", "fd_forward")
    l1_gaps = [l1[b] - l1[a] - l1_err[a] - l1_err[b] for a, b in zip(ordered, ordered[1:])]
    split_pred = fd_forward_backward_split(p.gamma, p.eps, _integral(gr_run, "int_J"))
    value = np.concatenate([beta["fd_forward"], beta["fd_backward"]])
    return Measurement(
        value=value,
        checks={"converged": bool(np.all(fd.numpy("converged")) and np.all(gr_run.numpy("converged"))),
                "alpha_eff_forward_lt_gr_lt_backward":
                    bool(mean_log["fd_forward"] < mean_log["gr"] < mean_log["fd_backward"]),
                "l1_norm_backward_lt_gr_lt_forward": bool(min(l1_gaps) > 0),
                "shrink_larger_on_teacher_support":
                    all(shrink_on[k] < shrink_off[k] for k in ("gr", "fd_forward"))},
        info={"richardson_allowance": [allow["fd_forward"], allow["fd_backward"]],
              "integral_allowance": [i_allow["fd_forward"], i_allow["fd_backward"]],
              "residual_term": [res["fd_forward"], res["fd_backward"]],
              "simulated_mean_log_alpha_eff_over_alpha": mean_log,
              "simulated_log_shrink_on_support": shrink_on, "simulated_log_shrink_off_support": shrink_off,
              "backward_raises_alpha_eff": mean_log["fd_backward"] > 0,
              "l1_norm": l1, "l1_margin_over_errors": l1_gaps,
              "split_vs_gr_simulated": [mean_log["fd_forward"] - mean_log["gr"],
                                        mean_log["fd_backward"] - mean_log["gr"]],
              "split_vs_gr_first_order": split_pred.tolist(),
              "final_loss": {k: _rows(r, "loss", g).tolist() for k, (r, g) in groups.items()},
              "steps": {k: _rows(r, "steps", g).tolist() for k, (r, g) in groups.items()}})


def _rich_errors(predicted, measured) -> np.ndarray:
    """``[relative error of the forward half, of the backward half]``."""
    return _limits_errors(predicted, measured)


def _tol_rich_bias(p, m: Measurement, be: Backend) -> Tolerance:
    if m.diverged:
        return Tolerance(np.zeros(2), "diverged")
    tol = (np.asarray(m.info["richardson_allowance"]) + np.asarray(m.info["integral_allowance"])
           + np.asarray(m.info["residual_term"]) + be.roundoff(100 * p.d))
    return Tolerance(tol, "per half (forward, backward): " + _RICHARDSON_REASON + "; plus the extrapolated "
                     "integral's residual carried through log alpha_i and the KKT sensitivity ||P diag(2 beta)||")


register(Claim(
    id="dln.gr_rich_bias",
    statement=("Finite-difference GR ends at argmin_{X beta = y} Q with alpha_i = alpha exp(-4 gamma int g_i(theta) "
               "g_i(theta + eps grad L) dt) (exact, derived here; the integral is taken along the simulated FD-GR "
               "flow, forward eps > 0 and backward eps < 0). Checked with it, on the simulated scales "
               "sqrt(u_i v_i): forward differences shrink alpha_eff more than exact GR, backward less; the shrink "
               "of GR and forward FD-GR is larger on the teacher's support than off it; and the endpoint moves "
               "away from the min-l1 interpolator as alpha_eff shrinks (||beta||_1: backward < GR < forward), so "
               "Karakida et al.'s 'towards the rich regime' holds for alpha_eff only, not for the l1 norm."),
    reference=("Karakida et al. 2023, arXiv 2210.02720, Sec. 5 (GR and forward FD-GR bias DLNs towards the rich "
               "regime); the exact FD-GR alpha_eff and the l1 counter-observation are derived and measured here"),
    params=GRRichBiasParams,
    predicted=_predict_rich_bias,
    measured=_measure_rich_bias,
    tolerance=_tol_rich_bias,
    error=_rich_errors,
    sweep="eps", sweep_values=(0.05, 0.1, 0.15),
    summary=lambda b: float(np.sum(np.abs(np.asarray(b, dtype=float)[: len(b) // 2]))),
    summary_label="||beta_forward||_1",
    mutants={
        "constant 3 for 4": lambda p: _rich_prediction(p, 3.0),
        "forward and backward swapped": lambda p: _rich_prediction(p, swap=True),
        "no FD effect (exact GR's alpha_eff for both)": lambda p: np.concatenate(
            [_gr_prediction(p, _integral(_numpy_levels(p, "gr", p.gamma, None), "int_g2"))] * 2),
        "no GR effect (argmin Q_alpha for both)":
            lambda p: np.concatenate([implicit_bias_solution(*_data(p)[:2], p.alpha)] * 2),
    },
    closed_forms=("effective_alpha", "implicit_bias_solution"),
))
