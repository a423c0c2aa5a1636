"""Batch Hessians and the learning-rate vs batch-size rules, on models with exact Hessians.

The model. Least squares on features ``x_i`` (rows of ``X``, shape ``(N, d)``; Gaussian inputs, or
ReLU random features of Gaussian inputs), loss ``L(w) = (1/2N) sum_i (x_i^T w - y_i)^2``. The Hessian
is exact and constant: ``H = X^T X / N``; a minibatch ``b`` of size ``B`` has
``H_B = (1/B) sum_{i in b} x_i x_i^T``. Batches are drawn from the ``N`` examples with replacement
(``i_k`` iid uniform) or without (a uniform ``B``-subset).

Minibatch SGD on the error ``e = w - w*`` (realizable targets) is ``e_{t+1} = (I - eta H_{B_t}) e_t``.
Its second moment ``M = E[e e^T]`` obeys the exact linear recursion (derived here)

    M' = M - eta (H M + M H) + eta^2 [(1 - c_B) H M H + c_B T(M)],   T(M) = (1/N) sum_i x_i x_i^T M x_i x_i^T,

with the batch-noise factor ``c_B = 1/B`` (with replacement) or ``(N - B)/(B (N - 1))`` (without:
the finite-population factor). SGD is mean-square stable iff the spectral radius of this map is
below 1, i.e. ``eta < eta*(B) = 1 / lambda_max(A^{-1/2} Q A^{-1/2})`` with ``A(M) = H M + M H`` and
``Q(M) = (1 - c_B) H M H + c_B T(M)`` (the map is positive, so the critical eigenvector is a PSD
matrix). For isotropic Gaussian features in the population limit ``E[x x^T M x x^T] = 2 Sigma M Sigma +
tr(Sigma M) Sigma`` gives ``eta*(B) = 2 B / (s (B + d + 1))`` (``Sigma = s I``, with replacement):
linear in ``B`` below the critical batch size ``B* = d + 1``, flat (``2/s``) above.

``1/eta*`` is convex in ``c_B`` and close to affine, ``1/eta* ~ alpha + beta c_B``; the critical batch
size is ``B* = beta / alpha`` (where the noise term equals the curvature term), fitted on a grid of
``B`` the same way for the closed form and for the simulation.

The random-matrix rule of Granziol et al. replaces this by ``2 / lambda_max(H_B)``: the batch Hessian
is a spiked sample covariance whose top eigenvalue follows the BBP/Marchenko-Pastur outlier formula
at ratio ``d/B`` (:func:`batch_hessian_top`). Both rules are linear in ``B`` for ``B << d`` with the
same slope; near ``B ~ d`` the per-batch rule is conservative by up to a factor 2 (it is a worst-case
per-step condition, the mean-square threshold averages over batches).

Adam-style updates ``e <- e - eta P^{-1} g_B`` with ``P = diag(sqrt(v))``, ``v = E[g_B^2]`` the gradient
second moment at batch size ``B``, taken at the minimiser (pure noise: ``v = c_B V``,
``V_j = (1/N) sum_i x_ij^2 r_i^2``, ``r`` the residuals) are SGD on the features ``V^{-1/4} x`` with
step ``eta / sqrt(c_B)``, so ``eta*_Adam(B) = sqrt(c_B) eta*_SGD(V^{-1/4} X, B)`` exactly: ``~ sqrt(B)``
for ``B << B*`` and, because the noise preconditioner keeps shrinking, ``~ 1/sqrt(B)`` for
``B >> B*`` (the square-root rule does not extend past ``B*``).

References:
  Granziol, Zohren, Roberts 2022, "Learning Rates as a Function of Batch Size: A Random Matrix
  Theory Approach to Neural Network Training", JMLR 23, arXiv 2006.09092.
  Ma, Bassily, Belkin 2018, "The Power of Interpolation", arXiv 1712.06559 (critical batch size).
  McCandlish, Kaplan, Amodei et al. 2018, "An Empirical Model of Large-Batch Training", arXiv 1812.06162.
  Wu, Ma, E 2018, "How SGD Selects the Global Minima...", NeurIPS, (mean-square linear stability).
  Benaych-Georges and Nadakuditi 2011, arXiv 0910.2120 (multiplicative spikes);
  Silverstein and Bai 1995, J. Multivar. Anal. 54 (generalized Marchenko-Pastur).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize as _opt
from scipy import stats as _sps
from scipy.sparse.linalg import LinearOperator, eigsh

from ..backend import Backend, get_backend
from ..checks import check_choice, check_int, check_positive, check_range
from ..claims import Claim, Measurement, Params, Tolerance, param, register
from .rmt import TW1_MEAN, tracy_widom_scale_covariance
from ..stats import loglog_slope, mean_sem

__all__ = [
    "SAMPLING", "FEATURES", "batch_noise_factor", "dataset", "full_hessian", "batch_hessians",
    "ms_threshold", "ms_threshold_isotropic", "critical_batch_size", "batch_hessian_top",
    "rmt_threshold", "gradient_noise", "adam_threshold", "sgd_growth", "bisect_threshold",
    "estimate_preconditioner", "max_relative_error",
]

SAMPLING = ("with", "without")
FEATURES = ("gaussian", "random_features")

# --------------------------------------------------------------------------------------------
# The model: data, Hessians, batch-noise factor


def _check_batch(B: int, N: int, sampling: str) -> int:
    check_choice("sampling", sampling, SAMPLING)
    if sampling == "without":
        return check_int("B", B, 1, N)
    return check_int("B", B, 1, None)


def batch_noise_factor(B: int, N: int, sampling: str = "with") -> float:
    """``c_B``: the variance of a batch mean relative to that of one example.

    ``1/B`` with replacement; ``(N - B) / (B (N - 1))`` without (finite-population factor; 0 at B = N).

    >>> batch_noise_factor(4, 10, "without")
    0.16666666666666666
    """
    N = check_int("N", N, 2, None)
    B = _check_batch(B, N, sampling)
    return 1.0 / B if sampling == "with" else (N - B) / (B * (N - 1.0))


def dataset(N: int, d: int, *, features: str = "gaussian", ell: float = 1.0, scale: float = 1.0,
            noise: float = 0.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features ``X`` (N, d) and residuals ``r`` (N,) at the least-squares minimiser.

    ``gaussian``: ``x ~ N(0, scale * diag(ell, 1, ..., 1))`` (a spiked population Hessian).
    ``random_features``: ``x = (relu(F z / sqrt(d_in)) - 1/sqrt(2 pi)) / sd`` with ``z ~ N(0, I_{d_in})``,
    ``d_in = d``, ``F`` Gaussian (non-Gaussian features whose fourth moments differ from Isserlis').
    ``noise``: label-noise scale; ``r`` are the residuals of the fitted minimiser (``X^T r = 0``).
    """
    N = check_int("N", N, 2, None)
    d = check_int("d", d, 1, None)
    check_choice("features", features, FEATURES)
    ell = check_positive("ell", ell)
    scale = check_positive("scale", scale)
    noise = check_range("noise", noise, 0.0, None)
    rng = np.random.default_rng(check_int("seed", seed, 0, None))
    if features == "gaussian":
        X = rng.standard_normal((N, d)) * math.sqrt(scale)
        X[:, 0] *= math.sqrt(ell)
    else:
        F = rng.standard_normal((d, d))
        Z = rng.standard_normal((N, d))
        # centred by the population mean E relu(g) = 1/sqrt(2 pi) and scaled to unit variance
        # (Var relu(g) = 1/2 - 1/(2 pi)), so the scale of the Hessian bulk matches the Gaussian case
        X = (np.maximum(Z @ F.T / math.sqrt(d), 0.0) - 1 / math.sqrt(2 * math.pi)) \
            * math.sqrt(scale / (0.5 - 0.5 / math.pi))
    y = X @ rng.standard_normal(d) / math.sqrt(d) + noise * rng.standard_normal(N)
    w, *_ = np.linalg.lstsq(X, y, rcond=None)
    return X, X @ w - y


def full_hessian(X: Any) -> Any:
    """``H = X^T X / N`` (exact for least squares)."""
    return X.T @ X / X.shape[0]


def batch_hessians(X: Any, B: int, batch: int, sampling: str = "with", *, backend: Backend | str = "numpy",
                   seed: int = 0) -> Any:
    """``batch`` independent batch Hessians ``H_B = X_b^T X_b / B``, shape ``(batch, d, d)``."""
    be = get_backend(backend) if not isinstance(backend, Backend) else backend
    Xb = be.asarray(X)
    N = Xb.shape[0]
    B = _check_batch(B, N, sampling)
    idx = _draw(be.rng(seed), N, B, (batch,), sampling)
    Xs = Xb[idx]
    return be.xp.permute_dims(Xs, (0, 2, 1)) @ Xs / B


def _draw(g, N: int, B: int, lead: tuple, sampling: str) -> Any:
    """Batch indices, shape ``lead + (B,)``: iid uniform (with) or a uniform ``B``-subset (without)."""
    if sampling == "with" or B == 1:
        return g.integers(0, N, lead + (B,))
    if B <= 16:
        # Floyd's algorithm, vectorised over rows: O(B^2) per row instead of O(N) keys per row
        R = int(np.prod(lead))
        xp = g.backend.xp
        sel = g.integers(0, N - B + 1, (R, 1))
        for j in range(N - B + 1, N):
            t = g.integers(0, j + 1, (R, 1))
            dup = xp.any(sel == t, axis=1, keepdims=True)
            sel = xp.concat([sel, xp.where(dup, xp.full_like(t, j), t)], axis=1)
        return xp.reshape(sel, lead + (B,))
    keys = g.uniform(lead + (N,))
    # the B smallest of N iid uniform keys are a uniform B-subset; a partial selection costs O(N)
    # per row where a full argsort costs O(N log N)
    if g.backend.name == "numpy":
        return np.argpartition(keys, B - 1, axis=-1)[..., :B] if B < N else np.argsort(keys, axis=-1)
    import torch

    return torch.topk(keys, B, dim=-1, largest=False).indices


# --------------------------------------------------------------------------------------------
# Closed forms


def _ms_operator(X: np.ndarray):
    N, d = X.shape
    h, U = np.linalg.eigh(X.T @ X / N)
    if h[0] <= 1e-12 * h[-1]:
        raise ValueError(f"X has a singular Hessian (N={N}, d={d}): need N > d and full-rank features")
    Z = X @ U
    Dm = 1.0 / np.sqrt(h[:, None] + h[None, :])
    hh = np.outer(h, h)
    return N, d, h, Z, Dm, hh


def _lambda_max(op_parts, c: float, c0: float = 1.0) -> float:
    N, d, h, Z, Dm, hh = op_parts

    def mv(v):
        V = v.reshape(d, d) * Dm
        q = np.einsum("ij,jk,ik->i", Z, V, Z)
        return ((c0 - c) * hh * V * Dm + c * (Z.T * q) @ Z / N * Dm).ravel()

    op = LinearOperator((d * d, d * d), matvec=mv, dtype=float)
    v0 = (np.eye(d) / np.sqrt(np.diag(Dm))[:, None]).ravel()  # a PSD start, near the Perron vector
    return float(eigsh(op, k=1, which="LA", v0=v0, tol=1e-12)[0][0])


def ms_threshold(X: Any, B: int, sampling: str = "with", precond_scale: Any = None) -> float:
    """Exact mean-square stability threshold ``eta*(B)`` of minibatch SGD on least squares with data ``X``.

    ``eta* = 1 / lambda_max(A^{-1/2} Q A^{-1/2})`` (module docstring), computed with ARPACK Lanczos on
    the ``d^2``-dimensional operator (``O(N d^2)`` per product). Conditional on the data ``X``; exact
    for every ``N``, ``B`` and both sampling schemes.

    Args:
      X: features, shape ``(N, d)`` with ``N > d``.
      B: batch size; sampling: ``"with"`` or ``"without"`` replacement.
      precond_scale: optional per-feature scale ``q`` (features ``x * q``), used for Adam.
    """
    X = Backend.to_numpy(X)
    N = X.shape[0]
    c = batch_noise_factor(B, N, sampling)
    if precond_scale is not None:
        X = X * np.asarray(precond_scale, dtype=float)[None, :]
    return 1.0 / _lambda_max(_ms_operator(X), c)


def ms_threshold_isotropic(B: int, d: int, s: float = 1.0) -> float:
    """Population (``N -> inf``) threshold ``2 B / (s (B + d + 1))`` for ``x ~ N(0, s I_d)``, with replacement."""
    B = check_int("B", B, 1, None)
    d = check_int("d", d, 1, None)
    s = check_positive("s", s)
    return 2.0 * B / (s * (B + d + 1.0))


def _fit_bstar(Bs, etas, N: int, sampling: str) -> tuple[float, float, float]:
    """Least-squares fit ``1/eta = alpha + beta c_B``; returns ``(B*, alpha, beta)``, ``B* = beta/alpha``."""
    c = np.array([batch_noise_factor(b, N, sampling) for b in Bs])
    A = np.stack([np.ones_like(c), c], axis=1)
    (alpha, beta), *_ = np.linalg.lstsq(A, 1.0 / np.asarray(etas, dtype=float), rcond=None)
    return float(beta / alpha), float(alpha), float(beta)


def critical_batch_size(X: Any, Bs, sampling: str = "with") -> float:
    """``B*`` from the exact thresholds on the grid ``Bs`` (fit ``1/eta* = alpha + beta c_B``)."""
    X = Backend.to_numpy(X)
    etas = [ms_threshold(X, b, sampling) for b in Bs]
    return _fit_bstar(Bs, etas, X.shape[0], sampling)[0]


def _weights(d: int, N: int, B: int, sampling: str) -> tuple[np.ndarray, np.ndarray]:
    """Values ``tau`` and probabilities of the per-example weight ``w_i d / B`` of a batch."""
    if sampling == "without":
        return np.array([0.0, d / B]), np.array([1 - B / N, B / N])
    k = np.arange(0, B + 1)
    pk = _sps.binom.pmf(k, B, 1.0 / N)
    keep = (N * pk >= 1e-3) | (k <= 1)  # multiplicities no example is expected to have are dropped
    return k[keep] * d / B, pk[keep] / pk[keep].sum()


def batch_hessian_top(ell: float, d: int, N: int, B: int, sampling: str = "without", scale: float = 1.0) -> float:
    """Predicted ``lambda_max(H_B)`` for Gaussian features ``N(0, scale diag(ell, 1, ..., 1))``.

    ``H_B = Sigma^{1/2} (Z^T W Z / B) Sigma^{1/2}``, ``W`` the diagonal of batch multiplicities. With
    ``m`` the Stieltjes transform of the bulk, its inverse is (generalized Marchenko-Pastur)
    ``z(m) = -1/m + (N/d) E[tau / (1 + tau m)]``, ``tau = w d / B``; the bulk edge is ``z(m_c)``
    with ``z'(m_c) = 0``, and the multiplicative spike ``ell`` has an outlier at ``z(m)`` where
    ``-(N/d) m E[tau/(1 + tau m)] = 1/(ell - 1)`` when that has a root in ``(m_c, 0)`` (BBP), else the
    top eigenvalue is the edge. Without replacement this is the spiked Marchenko-Pastur law at
    ``gamma = d/B``: ``ell (1 + gamma/(ell - 1))`` or ``(1 + sqrt gamma)^2``, exact as ``d, B -> inf``
    (a batch of distinct Gaussian rows is a Wishart sample, for every ``B <= N``).

    With replacement the multiplicities are Binomial(B, 1/N) and the formula is the limit in which every
    multiplicity kept occurs for many examples; at finite ``N`` the few duplicated examples of a batch
    act as separate rank-one spikes and this limit overestimates the top eigenvalue (see the notebook).
    """
    ell = check_positive("ell", ell)
    d = check_int("d", d, 1, None)
    N = check_int("N", N, 2, None)
    B = _check_batch(B, N, sampling)
    tau, pr = _weights(d, N, B, sampling)
    ratio = N / d

    def z(m):
        return -1.0 / m + ratio * np.sum(pr * tau / (1 + tau * m))

    def dz(m):
        return 1.0 / m**2 - ratio * np.sum(pr * tau**2 / (1 + tau * m) ** 2)

    lo = -1.0 / tau.max()
    eps = 1e-12 * abs(lo)
    m_c = _opt.brentq(dz, lo + eps, -eps, xtol=1e-15, rtol=1e-14)
    edge = z(m_c)
    if ell > 1.0:
        h = lambda m: -ratio * m * np.sum(pr * tau / (1 + tau * m)) - 1.0 / (ell - 1.0)  # noqa: E731
        if h(m_c) > 0:
            m_out = _opt.brentq(h, m_c, -eps, xtol=1e-15, rtol=1e-14)
            return scale * z(m_out)
    return scale * edge


def rmt_threshold(ell: float, d: int, N: int, B: int, sampling: str = "with", scale: float = 1.0) -> float:
    """The random-matrix learning-rate rule ``2 / lambda_max(H_B)`` (Granziol et al. 2022, Sec. 4)."""
    return 2.0 / batch_hessian_top(ell, d, N, B, sampling, scale)


def gradient_noise(X: Any, r: Any) -> np.ndarray:
    """Per-coordinate per-example gradient variance at the minimiser ``V_j = (1/N) sum_i x_ij^2 r_i^2``."""
    X = Backend.to_numpy(X)
    r = Backend.to_numpy(r)
    return np.mean(X**2 * r[:, None] ** 2, axis=0)


def adam_threshold(X: Any, r: Any, B: int, sampling: str = "with") -> float:
    """Exact mean-square threshold of ``e <- e - eta diag(sqrt(E g_B^2))^{-1} H_B e`` at the minimiser.

    ``E g_B^2 = c_B V`` (zero mean gradient at the minimiser), so the update is SGD on features
    ``V^{-1/4} x`` with step ``eta / sqrt(c_B)``: ``eta*_Adam = sqrt(c_B) eta*_SGD(V^{-1/4} X, B)``.
    Assumes: preconditioner from the exact second moment (beta2 -> 1, frozen), eps = 0, no momentum.
    """
    X = Backend.to_numpy(X)
    c = batch_noise_factor(B, X.shape[0], sampling)
    if c == 0.0:
        raise ValueError(f"B={B!r} equals N without replacement: the gradient noise vanishes, so the "
                         "noise preconditioner is singular; B must be < N")
    q = gradient_noise(X, r) ** -0.25
    return math.sqrt(c) * ms_threshold(X, B, sampling, precond_scale=q)


# --------------------------------------------------------------------------------------------
# Simulators (batched over learning rates x seeds; the loops are over time steps and rounds)


def sgd_growth(X: Any, B: int, lrs: Any, seeds: int, steps: int, sampling: str, backend: Backend,
               seed: int, precond: Any = None, return_k3: bool = False) -> tuple[np.ndarray, ...]:
    """Run minibatch SGD ``e <- e - eta P^{-1} H_B e`` for every learning rate x seed in one array program.

    Returns, per learning rate, the estimated mean-square growth ``log E|e_T|^2 - log E|e_{T/2}|^2`` over
    the second half and its standard error (and, with ``return_k3``, the third-cumulant term ``k3/6``
    that the log-normal estimate neglects). The estimate uses the seeds' log growths ``L``:
    ``mean(L) + var(L)/2``, the log-mean of a log-normal (``L`` is a sum of many weakly dependent
    per-step increments, so it is close to Gaussian; the plain sample mean of ``exp(L)`` is dominated
    by rare runs and is biased low at finite ``seeds``). ``|e|`` is renormalised every few steps (the
    dynamics are linear), so divergence never overflows.
    """
    xp = backend.xp
    Xb = backend.asarray(X)
    if Xb.ndim != 2:
        raise ValueError(f"X has shape {tuple(Xb.shape)}: X must be (N, d)")
    N, d = Xb.shape
    sampling = check_choice("sampling", sampling, SAMPLING)
    B = check_int("B", B, 1, None if sampling == "with" else N)
    # the standard error uses var(L) with ddof = 1 and var^2/(2 (seeds - 1)): it needs 2 runs
    seeds = check_int("seeds", seeds, 2, None)
    # the growth is measured over the second half, from step steps//2: at least one step each half
    steps = check_int("steps", steps, 2, None)
    lrs = np.atleast_1d(np.asarray(lrs, dtype=float))
    if lrs.ndim != 1 or lrs.size == 0 or not np.all(np.isfinite(lrs) & (lrs > 0)):
        raise ValueError(f"lrs={lrs!r} is out of range: lrs must be a nonempty 1-D array of finite numbers in (0, inf)")
    G = lrs.size
    R = G * seeds
    g = backend.rng(seed)
    eta = backend.asarray(np.repeat(lrs, seeds))[:, None]
    pinv = None if precond is None else backend.asarray(1.0 / np.asarray(precond, dtype=float))[None, :]
    e = g.normal((R, d))
    e = e / xp.linalg.vector_norm(e, axis=1, keepdims=True)
    logn = xp.zeros_like(e[:, 0])
    half = None
    # the norm can grow by at most (1 + eta max_i |x_i|^2)^k in k steps: every 8 steps keeps float64
    # far from overflow in the bracket; float32 renormalises every step
    renorm = 8 if backend.dtype == "float64" else 1
    # A row whose norm overflowed (or collapsed to 0) between renormalisations is a diverged run: it
    # is counted as growing by at least log(largest float) per renormalisation (finite in float32
    # too, where 1e300 would be inf and inf - inf NaN), and its iterate is zeroed so no NaN spreads.
    log_big = math.log(float(np.finfo(Backend.to_numpy(e[:1, :1]).dtype).max))
    # overflow to inf/NaN is the divergence that the renormalisation detects and accounts for below
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(steps):
            idx = _draw(g, N, B, (R,), sampling)
            Xs = Xb[idx]                                            # (R, B, d)
            res = (Xs @ e[:, :, None])[:, :, 0]                     # (R, B)
            grad = (xp.permute_dims(Xs, (0, 2, 1)) @ res[:, :, None])[:, :, 0] / B
            e = e - eta * (grad if pinv is None else grad * pinv)
            if t % renorm == renorm - 1 or t == steps // 2 - 1 or t == steps - 1:
                nn = xp.linalg.vector_norm(e, axis=1)
                ok = xp.isfinite(nn) & (nn > 0)
                safe = xp.where(ok, nn, xp.ones_like(nn))
                e = xp.where(ok[:, None], e / safe[:, None], xp.zeros_like(e))
                logn = logn + xp.where(ok, xp.log(safe), xp.ones_like(safe) * log_big)
            if t == steps // 2 - 1:
                half = logn
    L = 2.0 * Backend.to_numpy(logn - half).reshape(G, seeds)
    mu, var = L.mean(axis=1), L.var(axis=1, ddof=1)
    k3 = np.mean((L - mu[:, None]) ** 3, axis=1)
    est = mu + var / 2.0
    se = np.sqrt(var / seeds + var**2 / (2.0 * (seeds - 1)))
    if return_k3:
        # the first neglected term of log E exp(L) = k1 + k2/2 + k3/6 + ... (truncation bias)
        return est, se, k3 / 6.0
    return est, se


def _steps(B: int, d: int, base: int) -> int:
    # the non-critical modes of the second-moment map contract at a rate ~ B/(B + d) per step
    # (isotropic case), so the run length needed to see only the critical mode scales as (B + d)/B
    return int(base * math.ceil((B + d) / B))


def bisect_threshold(X: Any, B: int, sampling: str, backend: Backend, seed: int, *, seeds: int = 24,
                     grid: int = 7, rounds: int = 4, base_steps: int = 40, precond: Any = None
                     ) -> tuple[float, float, dict]:
    """Largest mean-square-stable learning rate of (preconditioned) SGD, found by simulation.

    The bracket starts at ``[2 / max_i x_i^T P^{-1} x_i, 2 / lambda_max(P^{-1/2} H P^{-1/2})]``: below the
    left end every step is non-expansive, above the right end the mean iterate diverges (full-batch GD).
    Each round simulates ``grid`` learning rates (log-spaced inside the bracket) x ``seeds`` runs in one
    array program and keeps the cell where the estimated growth changes sign, widened by half a grid
    step on each side (a noisy sign near the root must not exclude it): the bracket shrinks 4x a round.
    The last round fits the growth linearly in ``log eta`` over its grid and the previous round's and
    returns the root, with the standard error propagated from the growth estimates.

    Returns ``(eta_hat, relative standard error, info)``; ``info["bias"]`` is the relative size of the
    neglected third-cumulant term at the root.
    """
    Xn = Backend.to_numpy(X)
    if Xn.ndim != 2:
        raise ValueError(f"X has shape {Xn.shape}: X must be (N, d)")
    N, d = Xn.shape
    seeds = check_int("seeds", seeds, 2, None)
    grid = check_int("grid", grid, 2, None)       # the cell width u[1] - u[0] needs two points
    rounds = check_int("rounds", rounds, 1, None)
    base_steps = check_int("base_steps", base_steps, 1, None)
    q = np.ones(d) if precond is None else 1.0 / np.sqrt(np.asarray(precond, dtype=float))
    Xq = Xn * q[None, :]
    lo = math.log(2.0 / np.max(np.sum(Xq * Xq, axis=1)))
    hi = math.log(2.0 / np.linalg.eigvalsh(Xq.T @ Xq / N)[-1])
    lo0, hi0 = lo, hi
    steps = _steps(B, d, base_steps)
    for k in range(rounds):
        u = np.linspace(lo, hi, grid + 2)[1:-1]
        est, se, k3 = sgd_growth(Xn, B, np.exp(u), seeds, steps, sampling, backend, seed + 7919 * k, precond,
                                 return_k3=True)
        if k == rounds - 2:
            prev = (u, est, se, k3)
        if k < rounds - 1:
            # the cell where the growth changes sign: the split j (first divergent point) that the
            # z-scores of the estimates contradict least, so that one noisy point cannot mislead
            zsc = est / np.maximum(se, 1e-12)
            score = [np.sum(np.maximum(zsc[:j], 0)) + np.sum(np.maximum(-zsc[j:], 0)) for j in range(grid + 1)]
            j = int(np.argmin(score))
            half = 0.5 * (u[1] - u[0])
            cell_lo = u[j - 1] if j > 0 else lo
            cell_hi = u[j] if j < grid else hi
            lo, hi = max(lo0, cell_lo - half), min(hi0, cell_hi + half)
        else:
            # fit on this round's points and the previous round's (4x wider): the narrow last grid
            # pins the root, the wider one fixes the slope when the growth is noisy
            if rounds > 1:
                u, est, se, k3 = (np.concatenate([a, b]) for a, b in zip(prev, (u, est, se, k3)))
            w = 1.0 / np.maximum(se, 1e-12) ** 2
            A = np.stack([np.ones_like(u), u - u.mean()], axis=1)
            cov = np.linalg.inv(A.T @ (A * w[:, None]))
            a, b = cov @ (A.T @ (w * est))
            if b <= 0:
                return math.exp(0.5 * (lo + hi)), 0.5 * (hi - lo), {"steps": steps, "fit_failed": True,
                                                                    "bias": 0.5 * (hi - lo)}
            root = u.mean() - a / b
            # delta method for -a/b
            gvec = np.array([-1.0 / b, a / b**2])
            se_root = float(math.sqrt(gvec @ cov @ gvec))
            root = float(np.clip(root, lo, hi))
            # truncation bias of the log-normal estimate, pooled over the grid (median |k3/6|),
            # moved to the root through the fitted slope; relative, like se_root (u = log eta)
            bias = float(np.median(np.abs(k3)) / b)
            return math.exp(root), se_root, {"steps": steps, "bracket": [math.exp(lo), math.exp(hi)],
                                             "bias": bias}
    raise AssertionError("unreachable")


def estimate_preconditioner(X: Any, r: Any, B: int, sampling: str, backend: Backend, seed: int,
                            batches: int = 4096, return_error: bool = False) -> Any:
    """Monte Carlo ``sqrt(mean_k g_{B,k}^2)`` over ``batches`` minibatch gradients at the minimiser.

    This is Adam's second-moment estimate with ``beta2 -> 1`` (a plain average), batched over batches.
    With ``return_error``, also the largest relative standard error of the preconditioner over the
    coordinates, ``max_j sd(g_j^2) / (2 sqrt(batches) mean(g_j^2))`` (measured: per-example gradients
    ``x r`` are heavy-tailed, so the Gaussian value ``sqrt(2/batches)/2`` would understate it).
    """
    be = backend
    Xb = be.asarray(X)
    rb = be.asarray(r)
    N = Xb.shape[0]
    idx = _draw(be.rng(seed), N, B, (batches,), sampling)
    Gs = (be.xp.permute_dims(Xb[idx], (0, 2, 1)) @ rb[idx][:, :, None])[:, :, 0] / B   # (batches, d)
    g2 = Backend.to_numpy(Gs * Gs)
    P = np.sqrt(g2.mean(axis=0))
    if return_error:
        return P, float(np.max(g2.std(axis=0, ddof=1) / (2 * math.sqrt(batches) * g2.mean(axis=0))))
    return P


def max_relative_error(predicted: Any, measured: Any) -> float:
    """``max_k |measured_k - predicted_k| / |predicted_k|``."""
    p = np.asarray(predicted, dtype=float).ravel()
    m = np.asarray(measured, dtype=float).ravel()
    if p.shape != m.shape:
        raise ValueError(f"predicted has shape {p.shape} but measured has {m.shape}: shapes must match")
    return float(np.max(np.abs(m - p) / np.abs(p)))


# --------------------------------------------------------------------------------------------
# Claims

_Z = 3.0


@dataclass(frozen=True)
class BatchHessianParams(Params):
    ell: float = param(4.0, low=0, low_open=True, domain=(0.5, 8.0), doc="population spike ell of the Hessian")
    d: int = param(100, low=2, integer=True, domain=(60, 120), doc="number of parameters d")
    N: int = param(800, low=4, integer=True, domain=(400, 1200), doc="number of examples N")
    sampling: str = param("without", choices=SAMPLING, domain=("without",),
                          doc="batches drawn without (asserted) or with replacement (not asserted: see statement)")
    replicates: int = param(48, low=2, integer=True, domain=(32, 48), doc="independent datasets and batches")

    def check(self) -> None:
        for B in _hessian_grid(self.N):
            if B < 2:
                raise ValueError(f"N={self.N!r} is too small: the batch grid N/16 .. N needs N >= 32")
            gam = self.d / B
            w = 2.0 * min(self.d, B) ** (-1 / 3)
            if abs((self.ell - 1.0) / math.sqrt(gam) - 1.0) < w:
                raise ValueError(
                    f"ell={self.ell!r} is inside the BBP critical window at B={B} "
                    f"(|(ell - 1)/sqrt(d/B) - 1| < {w:.3g}): "
                    "the claim is asserted outside it")


def _hessian_grid(N: int) -> list[int]:
    return sorted({max(1, N // k) for k in (16, 8, 4, 2, 1)})


def _measure_batch_hessian(p: BatchHessianParams, backend: Backend, seed: int) -> Measurement:
    xp = backend.xp
    g = backend.rng(seed)
    R = p.replicates
    X = g.normal((R, p.N, p.d))
    X[:, :, 0] = X[:, :, 0] * math.sqrt(p.ell)
    Bs = _hessian_grid(p.N)
    tops, ses, diffs = [], [], []
    full = Backend.to_numpy(xp.linalg.eigvalsh(xp.permute_dims(X, (0, 2, 1)) @ X / p.N)[:, -1])
    for B in Bs:
        idx = _draw(g, p.N, B, (R,), p.sampling)
        Xs = xp.take_along_axis(X, idx[:, :, None] if backend.name == "numpy" else
                                idx[:, :, None].expand(R, B, p.d), axis=1)
        # the nonzero spectrum of X_b^T X_b / B equals that of the smaller Gram matrix X_b X_b^T / B
        M = (Xs @ xp.permute_dims(Xs, (0, 2, 1)) if B < p.d else xp.permute_dims(Xs, (0, 2, 1)) @ Xs) / B
        lam = Backend.to_numpy(xp.linalg.eigvalsh(M)[:, -1])
        m, se = mean_sem(lam)
        tops.append(float(m))
        ses.append(float(se))
        diffs.append(mean_sem(lam - full))       # paired with the same dataset's full Hessian
    tops_a = np.array(tops)
    # "exceeds": significantly above the full Hessian's top at the smallest B (3 standard errors of the
    # paired difference), and never significantly below it at any B < N
    checks = {"batch_top_exceeds_full_top_at_smallest_B": bool(diffs[0][0] > _Z * diffs[0][1]),
              "batch_top_never_significantly_below_full_top": all(
                  bool(dm > -_Z * ds) for (dm, ds), B in zip(diffs, Bs) if B < p.N)}
    return Measurement(value=tops, stderr=ses, checks=checks,
                       info={"B": Bs, "full_hessian_top": float(full.mean()),
                             "rmt_lr": list(2.0 / tops_a)})


def _tol_batch_hessian(p: BatchHessianParams, m: Measurement, be: Backend) -> Tolerance:
    rel = []
    for B, v, se in zip(_hessian_grid(p.N), m.value, m.stderr):
        edge = (1 + math.sqrt(p.d / B)) ** 2
        tw = tracy_widom_scale_covariance(min(p.d, B), max(p.d, B)) * max(p.d, B) / B
        bias = abs(TW1_MEAN) * tw * max(1.0, v / edge)
        rel.append((_Z * se + bias) / v)
    return Tolerance(float(max(rel)), "max over B of (3 standard errors + |E TW1| x Tracy-Widom scale (Johnstone "
                     "2001) x outlier/edge) / value: replicate noise plus the finite-size edge bias")


register(Claim(
    id="scaling.batch_hessian_extremes",
    statement=("For least squares on Gaussian features with population Hessian diag(ell, 1, ..., 1), the top "
               "eigenvalue of the batch Hessian H_B (B = N/16 .. N examples drawn with or without "
               "replacement) follows the spiked generalized Marchenko-Pastur outlier at ratio d/B "
               "(without replacement: ell (1 + (d/B)/(ell - 1)), or the edge (1 + sqrt(d/B))^2 below the BBP "
               "transition), and exceeds the full Hessian's top eigenvalue for every B < N. Asserted for "
               "sampling without replacement; with replacement the generalized-MP limit with Binomial(B, 1/N) "
               "multiplicities overestimates the top eigenvalue at these sizes (by 10-40% for ell < 1 + "
               "sqrt(d/B)): the O(1) duplicated examples act as separate rank-one spikes, not as bulk."),
    reference=("Granziol, Zohren, Roberts 2022 (arXiv 2006.09092), Sec. 3-4; outlier equation from "
               "Benaych-Georges and Nadakuditi 2011 (arXiv 0910.2120) with the Silverstein-Bai 1995 bulk; "
               "with-replacement multiplicities derived here"),
    params=BatchHessianParams,
    predicted=lambda p: [batch_hessian_top(p.ell, p.d, p.N, B, p.sampling) for B in _hessian_grid(p.N)],
    measured=_measure_batch_hessian,
    error=max_relative_error,
    tolerance=_tol_batch_hessian,
    sweep="ell", sweep_values=(0.5, 4.0, 6.0),
    summary=lambda v: v[0], summary_label="lambda_max(H_B) at B = N/16",
))

# --- SGD: linear rule ---------------------------------------------------------------------------

_SGD_GRID = (1, 2, 4, 16, 64, 128)


@dataclass(frozen=True)
class SGDLinearParams(Params):
    d: int = param(32, low=2, integer=True, domain=(24, 40), doc="number of parameters d")
    N: int = param(256, low=4, integer=True, domain=(256, 384), doc="number of examples N (>= 2 x 128)")
    features: str = param("gaussian", choices=FEATURES, domain=("gaussian",),
                          doc="Gaussian inputs (asserted) or ReLU random features (noisier measurement)")
    sampling: str = param("with", choices=SAMPLING, doc="batches drawn with or without replacement")
    data_seed: int = param(0, low=0, integer=True, domain=(0, 1000), doc="seed of the dataset")
    seeds: int = param(24, low=4, integer=True, domain=(24, 32), doc="SGD runs per learning rate")

    def check(self) -> None:
        if self.N < 2 * max(_SGD_GRID) or self.N <= self.d:
            raise ValueError(f"N={self.N!r} is out of range: N must be >= {2 * max(_SGD_GRID)} and > d={self.d}")


def _sgd_data(p) -> tuple[np.ndarray, np.ndarray]:
    return dataset(p.N, p.d, features=p.features, noise=1.0, seed=p.data_seed)


def _linear_fit_range(Bs) -> list[int]:
    return [b for b in Bs if b <= 4]


def _summarise(Bs, etas, N, sampling) -> tuple[float, float, float]:
    fitB = _linear_fit_range(Bs)
    fit = loglog_slope(fitB, [etas[Bs.index(b)] for b in fitB])
    bstar = _fit_bstar(Bs, etas, N, sampling)[0]
    return fit.slope, fit.stderr, bstar


def _predict_sgd(p: SGDLinearParams) -> list[float]:
    X, _ = _sgd_data(p)
    Bs = list(_SGD_GRID)
    etas = [ms_threshold(X, b, p.sampling) for b in Bs]
    slope, _, bstar = _summarise(Bs, etas, p.N, p.sampling)
    return etas + [slope, bstar]


def _loglog_slopes(x, Y: np.ndarray) -> np.ndarray:
    """Least-squares slope of ``log Y[r]`` on ``log x`` for every row ``r`` (one ``lstsq`` call)."""
    A = np.stack([np.ones(len(x)), np.log(np.asarray(x, dtype=float))], axis=1)
    return np.linalg.lstsq(A, np.log(Y).T, rcond=None)[0][1]


def _propagate(Bs, etas, rel_se, N, sampling, rng) -> tuple[float, float]:
    """Standard errors of (slope, B*) by resampling the thresholds within their standard errors.

    Both summaries are linear least-squares fits (:func:`_summarise`), so the 200 resamples are
    fitted at once: ``lstsq`` with 200 right-hand sides.
    """
    draws = np.exp(np.log(etas)[None, :] + rng.standard_normal((200, len(etas))) * np.asarray(rel_se)[None, :])
    fitB = _linear_fit_range(Bs)
    slopes = _loglog_slopes(fitB, draws[:, [Bs.index(b) for b in fitB]])
    c = np.array([batch_noise_factor(b, N, sampling) for b in Bs])
    alpha, beta = np.linalg.lstsq(np.stack([np.ones_like(c), c], axis=1), (1.0 / draws).T, rcond=None)[0]
    return float(slopes.std()), float((beta / alpha).std())


# Systematic offset of the measured SGD threshold that the growth-rate estimate leaves after its
# k3/6 term: averaged over 6 seeds (numpy, d = 32) it is +0.17 +- 0.06 % at B = 2 and +0.58 +- 0.05 %
# at B = 4 (4x longer runs: +0.34 +- 0.06 %). Solving the exact second-moment recursion over the same
# run length moves the root by ~1e-6, so it is not a start-up transient; it comes from the estimator
# (log-normal estimate from `seeds` runs, ratio of norms), whose exact source is not established.
# 1 % bounds the largest measured offset by more than 8 of its standard errors.
_SGD_ESTIMATOR_BIAS = 0.01


def _measure_sgd(p: SGDLinearParams, backend: Backend, seed: int) -> Measurement:
    X, _ = _sgd_data(p)
    Bs = list(_SGD_GRID)
    etas, rels, bias, failed = [], [], [], []
    for k, b in enumerate(Bs):
        eta, rel, inf = bisect_threshold(X, b, p.sampling, backend, seed + 1000 * k, seeds=p.seeds)
        etas.append(eta)
        rels.append(rel)
        bias.append(inf["bias"] + _SGD_ESTIMATOR_BIAS)
        failed.append(bool(inf.get("fit_failed", False)))
    slope, _, bstar = _summarise(Bs, etas, p.N, p.sampling)
    # exponent and B* inherit the thresholds' errors: resample them within standard error + bias
    se_slope, se_bstar = _propagate(Bs, etas, np.add(rels, bias), p.N, p.sampling, np.random.default_rng(seed))
    rmt_lr = [2.0 / float(np.mean(Backend.to_numpy(backend.xp.linalg.eigvalsh(
        batch_hessians(X, b, 64, p.sampling, backend=backend, seed=seed + 17))[:, -1]))) for b in Bs]
    # a failed root fit (non-increasing growth over the last grids) returns only the bracket's midpoint:
    # that is no measurement of the threshold, so the claim must fail rather than pass on it
    return Measurement(value=etas + [slope, bstar], stderr=rels + [se_slope / abs(slope), se_bstar / bstar],
                       checks={"bisection_fit_ok": not any(failed)},
                       info={"fit_failed_at_B": [b for b, f in zip(Bs, failed) if f], "B": Bs, "rmt_lr_2_over_mean_lambda_max_HB": rmt_lr,
                             "asymptotic_exponent": 1.0, "bias": bias + [0.0, 0.0]})


def _tol_per_entry(predict):
    """Tolerance of a claim whose entries have their own allowances ``z se_k + bias_k`` (relative).

    The engine compares one scalar error with one tolerance; with the loosest entry's allowance as
    that tolerance, a precise entry could be 10-30x off and pass. So every entry is also compared
    with its own allowance: ``error_k / allowance_k`` goes to ``info["error_over_allowance"]`` and
    the check ``every_entry_within_its_allowance`` (binding: the verdict fails if any entry exceeds
    its own allowance). ``predict`` is the claim's closed form, evaluated here, not in the simulation.
    """

    def tol(p, m: Measurement, be: Backend) -> Tolerance:
        se = np.asarray(m.stderr, dtype=float)
        bias = np.asarray(m.info.get("bias", [0.0] * len(se)), dtype=float)
        allow = _Z * se + bias
        pred = np.asarray(predict(p), dtype=float)
        rel = np.abs(np.asarray(m.value, dtype=float) - pred) / np.abs(pred)
        ratio = rel / allow
        m.info["allowance"] = allow.tolist()
        m.info["error_over_allowance"] = ratio.tolist()
        m.checks["every_entry_within_its_allowance"] = bool(np.all(ratio <= 1.0))
        return Tolerance(float(allow.max()),
                         "scalar: the loosest entry's allowance; binding: each entry k within its own allowance "
                         "3 relative standard errors + bias_k (check every_entry_within_its_allowance; ratios in "
                         "info.error_over_allowance). Standard errors: seed noise of the growth fit in the last "
                         "bisection round (exponent and B* propagated); bias: the log-normal truncation term "
                         "|k3|/6 of the growth estimate, measured from the runs (SGD: plus a 1% bound on the "
                         "estimator's measured systematic offset, up to +0.58% at B = 4; see _SGD_ESTIMATOR_BIAS)")

    return tol


register(Claim(
    id="scaling.sgd_linear",
    statement=("The largest mean-square-stable learning rate of minibatch SGD on least squares (batches "
               "from N >= 256 examples) equals the exact threshold 1/lambda_max(A^{-1/2} Q A^{-1/2}) of the "
               "second-moment recursion (B = 1 .. 128): it grows linearly in B below the critical batch size "
               "B* (fitted "
               "log-log exponent over B <= 4, -> 1 as B/B* -> 0; B* = d + 1 for isotropic Gaussian data "
               "as N -> inf) and flattens above it; predicted/measured = [eta*(B)..., exponent, B*]. Asserted for "
               "Gaussian features; for ReLU random features the closed form is still exact but the SGD "
               "measurement (log-normal estimate of the mean square) is off by up to ~10%."),
    reference=("derived here (mean-square linear stability of SGD); Granziol, Zohren, Roberts 2022 "
               "(arXiv 2006.09092) for the linear rule; Ma, Bassily, Belkin 2018 (arXiv 1712.06559)"),
    params=SGDLinearParams,
    predicted=_predict_sgd,
    measured=_measure_sgd,
    error=max_relative_error,
    tolerance=_tol_per_entry(_predict_sgd),
    sweep="d", sweep_values=(24, 32, 40),
    summary=lambda v: v[-1], summary_label="critical batch size B*",
))

# --- Adam: square-root rule ---------------------------------------------------------------------

_ADAM_GRID = (1, 2, 4, 16, 64)


@dataclass(frozen=True)
class AdamSqrtParams(Params):
    d: int = param(32, low=2, integer=True, domain=(24, 40), doc="number of parameters d")
    N: int = param(256, low=4, integer=True, domain=(256, 384), doc="number of examples N (>= 256)")
    features: str = param("gaussian", choices=FEATURES, domain=("gaussian",),
                          doc="Gaussian inputs (asserted) or ReLU random features (noisier measurement)")
    sampling: str = param("with", choices=SAMPLING, doc="batches drawn with or without replacement")
    data_seed: int = param(0, low=0, integer=True, domain=(0, 1000), doc="seed of the dataset")
    seeds: int = param(24, low=4, integer=True, domain=(24, 32), doc="runs per learning rate")

    def check(self) -> None:
        if self.N < 256 or self.N <= self.d:
            raise ValueError(f"N={self.N!r} is out of range: N must be >= 256 and > d={self.d}")


def _predict_adam(p: AdamSqrtParams) -> list[float]:
    X, r = _sgd_data(p)
    etas = [adam_threshold(X, r, b, p.sampling) for b in _ADAM_GRID]
    fit = loglog_slope(_ADAM_GRID[:3], etas[:3])
    return etas + [fit.slope]


def _measure_adam(p: AdamSqrtParams, backend: Backend, seed: int) -> Measurement:
    X, r = _sgd_data(p)
    etas, rels, bias, pre, failed = [], [], [], [], []
    for k, b in enumerate(_ADAM_GRID):
        P, pre_k = estimate_preconditioner(X, r, b, p.sampling, backend, seed + 31 * k, return_error=True)
        eta, rel, inf = bisect_threshold(X, b, p.sampling, backend, seed + 1000 * k, seeds=p.seeds, precond=P)
        failed.append(bool(inf.get("fit_failed", False)))
        etas.append(eta)
        rels.append(rel)
        bias.append(inf["bias"])
        pre.append(pre_k)
    fit = loglog_slope(_ADAM_GRID[:3], etas[:3])
    # the preconditioner's Monte Carlo error (largest over coordinates) moves eta by at most as much
    # (eta scales linearly with P), added in quadrature to the bisection's standard error
    errs = [math.hypot(x, q) for x, q in zip(rels, pre)]
    draws = np.exp(np.log(etas[:3])[None, :] + np.random.default_rng(seed).standard_normal((200, 3))
                   * (np.asarray(errs[:3]) + np.asarray(bias[:3]))[None, :])
    se_slope = float(np.std(_loglog_slopes(_ADAM_GRID[:3], draws)))
    return Measurement(value=etas + [fit.slope],
                       stderr=errs + [se_slope / abs(fit.slope)],
                       checks={"bisection_fit_ok": not any(failed)},
                       info={"fit_failed_at_B": [b for b, f in zip(_ADAM_GRID, failed) if f], "B": list(_ADAM_GRID), "asymptotic_exponent": 0.5, "bias": bias + [0.0]})


register(Claim(
    id="scaling.adam_sqrt",
    statement=("For Adam-style updates e <- e - eta diag(sqrt(E g_B^2))^{-1} g_B at the least-squares minimiser "
               "(preconditioner from the gradient second moment at batch size B, beta2 -> 1, eps = 0, no "
               "momentum), the largest mean-square-stable eta is sqrt(c_B) eta*_SGD(V^{-1/4} X, B): it grows "
               "as sqrt(B) (fitted exponent over B <= 4, -> 0.5 as B/B* -> 0) below B*, but falls as "
               "1/sqrt(B) above B* because the noise preconditioner keeps shrinking: the square-root rule "
               "holds only for B << B*; predicted/measured = [eta*(B)..., exponent]. Asserted for Gaussian "
               "features (ReLU random features: exact closed form, noisier measurement)."),
    reference=("derived here; the square-root rule is Granziol, Zohren, Roberts 2022 (arXiv 2006.09092), "
               "Sec. 5; Adam: Kingma and Ba 2015 (arXiv 1412.6980)"),
    params=AdamSqrtParams,
    predicted=_predict_adam,
    measured=_measure_adam,
    error=max_relative_error,
    tolerance=_tol_per_entry(_predict_adam),
    sweep="d", sweep_values=(24, 32, 40),
    summary=lambda v: v[-1], summary_label="fitted exponent (B <= 4)",
))
