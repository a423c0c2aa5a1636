"""Grokking modular addition: Gromov's closed-form network.

Task: ``(a, b) -> a + b mod p`` for ``a, b in Z_p`` (``p`` prime), inputs one-hot. A two-layer MLP with
quadratic activation and ``N`` hidden neurons,

    h_k(a, b) = (U_{k a} + V_{k b})^2,        z_q(a, b) = sum_k W_{q k} h_k(a, b),

with Gromov's (2023) weights: per neuron a frequency ``s_k`` uniform in ``{1, ..., (p-1)/2}`` and
phases ``phi1_k, phi2_k`` uniform in ``[0, 2 pi)``,

    U_{k a} = cos(2 pi s_k a/p + phi1_k),  V_{k b} = cos(2 pi s_k b/p + phi2_k),
    W_{q k} = cos(2 pi s_k q/p + phi1_k + phi2_k).

Expanding the square, ``h = cos^2 A + cos^2 B + cos(A + B) + cos(A - B)`` (``A, B`` the two
arguments); only ``cos(A + B) = cos(2 pi s (a + b)/p + phi1 + phi2)`` matches the output phase, and
``cos(A + B) cos(2 pi s q/p + phi1 + phi2)`` has phase average ``cos(2 pi s (a + b - q)/p)/2``, which
summed over the frequencies peaks at ``q = a + b``. Averaged over all ``p^2`` pairs the other terms
cancel exactly (sums of ``exp(2 pi i s m a/p)`` over ``a`` vanish for ``p`` prime, ``s m != 0 mod p``),
and ``sum_q W_{qk} = 0``, so for every seed and width (derived in ``proofs_check/check_grok.py``):

    mean over pairs of z_{a+b} = N/2,     mean over pairs and q != a + b of z_q = -N/(2 (p - 1)).

Per pair, the other terms are noise of size ``O(sqrt(N))`` against a gap ``~ N/2``, so the argmax is
``a + b`` on every pair once ``N`` is large enough (measured: at ``N >= 300``, ``p <= 31``, every pair
in every draw; the smallest margin was ``0.15 N`` at ``p = 31``).

References:
  Gromov, 2023. "Grokking modular arithmetic." arXiv 2301.02679.
  Power, Burda, Edwards, Babuschkin, Misra, 2022. "Grokking: generalization beyond overfitting on
  small algorithmic datasets." arXiv 2201.02177.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backend import Backend
from ..checks import check_int, check_range
from ..claims import Claim, Measurement, Params, Tolerance, param, register, relative_errors

__all__ = [
    "check_prime",
    "gromov_mean_logits",
    "gromov_weights",
    "gromov_logits",
]


def check_prime(p: int) -> int:
    """``p`` must be a prime ``>= 3`` (ValueError naming the value and the range otherwise)."""
    p = check_int("p", p, 3)
    if any(p % d == 0 for d in range(2, int(math.isqrt(p)) + 1)):
        raise ValueError(f"p={p} is not prime: p must be a prime >= 3")
    return p


# --------------------------------------------------------------------------------------------
# Closed forms


def gromov_mean_logits(p: int) -> list[float]:
    """``[1/2, -1/(2 (p - 1))]``: the correct logit and the wrong logits of Gromov's network, averaged
    over all pairs (and over the wrong classes), per neuron."""
    p = check_prime(p)
    return [0.5, -0.5 / (p - 1)]


# --------------------------------------------------------------------------------------------
# The construction, batched over seeds


def gromov_weights(p: int, width: int, runs: int, backend: Backend, seed: int) -> tuple[Any, Any, Any]:
    """``(U, V, W)`` of shapes ``(runs, width, p)``, ``(runs, width, p)``, ``(runs, p, width)``."""
    p = check_prime(p)
    width = check_int("width", width, 1)
    runs = check_int("runs", runs, 1)
    rng = backend.rng(seed)
    xp = backend.xp
    s = xp.astype(rng.integers(1, (p - 1) // 2 + 1, (runs, width, 1)), backend.float_dtype)
    ph1 = rng.uniform((runs, width, 1), 0.0, 2 * math.pi)
    ph2 = rng.uniform((runs, width, 1), 0.0, 2 * math.pi)
    n = backend.asarray(np.arange(p, dtype=float))[None, None, :]
    U = xp.cos(2 * math.pi * s * n / p + ph1)
    V = xp.cos(2 * math.pi * s * n / p + ph2)
    W = xp.permute_dims(xp.cos(2 * math.pi * s * n / p + ph1 + ph2), (0, 2, 1))
    return U, V, W


def gromov_logits(U: Any, V: Any, W: Any, backend: Backend) -> Any:
    """Logits ``z[r, a, b, q]`` of the quadratic-activation MLP on all ``p^2`` pairs."""
    H = (U[:, :, :, None] + V[:, :, None, :]) ** 2  # (runs, width, a, b)
    return _einsum(W, H, backend)


def _einsum(W, H, backend):
    if backend.name == "torch":
        import torch

        return torch.einsum("rqk,rkab->rabq", W, H)
    return np.einsum("rqk,rkab->rabq", W, H)


@dataclass(frozen=True)
class GromovParams(Params):
    p: int = param(23, low=3, high=61, integer=True, domain=(5, 31), doc="modulus p (prime)")
    width: int = param(400, low=1, high=4096, integer=True, domain=(300, 800), log=True, doc="hidden width N")
    seed: int = param(0, low=0, high=2**31 - 1, integer=True, domain=(0, 1000), doc="seed of the random frequencies and phases")

    def check(self) -> None:
        check_prime(self.p)


_RUNS = 8


def _measure_gromov(p: GromovParams, backend: Backend, seed: int) -> Measurement:
    U, V, W = gromov_weights(p.p, p.width, _RUNS, backend, seed + 7919 * p.seed)
    z = backend.to_numpy(gromov_logits(U, V, W, backend)) / p.width
    P = p.p
    a, b = np.meshgrid(np.arange(P), np.arange(P), indexing="ij")
    target = (a + b) % P
    correct = np.take_along_axis(z, target[None, :, :, None], axis=3)[..., 0]  # (runs, a, b)
    wrong_mean = (z.sum(axis=3) - correct) / (P - 1)
    acc = (z.argmax(axis=3) == target[None]).mean(axis=(1, 2))
    margin = correct - np.max(np.where(np.arange(P)[None, None, None, :] == target[None, :, :, None], -np.inf, z), axis=3)
    return Measurement(value=[float(correct.mean()), float(wrong_mean.mean())],
                       checks={"argmax_exact_on_all_pairs_all_runs": bool(acc.min() == 1.0)},
                       info={"accuracy_per_run": acc.tolist(), "min_margin_over_N": float(margin.min()),
                             "runs": _RUNS, "per_neuron_logit_sd": float(z.std(axis=(1, 2, 3)).mean() * math.sqrt(p.width))})


register(Claim(
    id="grok.gromov_solution",
    statement=("Gromov's closed-form weights (per neuron a frequency s in {1..(p-1)/2}, phases phi1, phi2; "
               "U = cos(2 pi s a/p + phi1), V = cos(2 pi s b/p + phi2), W = cos(2 pi s q/p + phi1 + phi2)) make the "
               "quadratic-activation MLP's logits, averaged over all p^2 pairs, exactly N/2 at q = a + b mod p and "
               "-N/(2(p - 1)) elsewhere, for every draw; at widths N >= 300 (p <= 31) the argmax is a + b mod p on "
               "every pair in every one of 8 draws (checked; the per-pair noise is O(sqrt N) against the gap N/2)."),
    reference="Gromov 2023, arXiv 2301.02679, sec. 3 (construction); averages derived here (proofs_check/check_grok.py)",
    params=GromovParams,
    predicted=lambda p: gromov_mean_logits(p.p),
    measured=_measure_gromov,
    tolerance=lambda p, m, be: Tolerance(be.roundoff(64 * p.width * p.p), (
        "exact identities: round-off of sums over p^2 pairs of width-N dot products (64 N p ulps)")),
    error=relative_errors,
    sweep="p", sweep_values=(5, 11, 23, 31),
    mutants={
        "phase average 1/4 for 1/2": lambda p: [0.25, -0.25 / (p.p - 1)],
        "wrong logits average 0": lambda p: [0.5, 0.0],
        "wrong logits -1/(2p)": lambda p: [0.5, -0.5 / p.p],
    },
    closed_forms=("gromov_mean_logits",),
))


# ============================================================================================
# The linear teacher-student model of Levi, Beck and Bar-Sinai (2023)
#
# Teacher ``y = T . x``, student ``y = w . x``, inputs ``x ~ N(0, I_d)`` (``d = d_in``, one output),
# ``N`` training inputs ``X`` (rows), ``lambda = d/N``. Loss ``L = |X (w - T)|^2/(2N) + gamma |w|^2/2``
# under gradient flow, ``dw/dt = -Sigma (w - T) - gamma w`` with ``Sigma = X^T X/N``. With
# ``T ~ N(0, I/d)`` and ``w(0) ~ N(0, sigma_w^2 I/d)`` the error ``D = w - T`` solves, per eigenmode
# ``x_i`` of ``Sigma`` (``e_i = exp(-(x_i + gamma) t)``),
#
#     D_i(t) = e_i w0_i - (gamma + x_i e_i)/(x_i + gamma) T_i,
#
# so ``E|D(t)|^2 = (1/d) sum_i [sigma_w^2 e_i^2 + (gamma + x_i e_i)^2/(x_i + gamma)^2]`` and, as
# ``d, N -> infinity`` at fixed ``lambda``, the empirical spectrum tends to Marchenko-Pastur:
#
#     G(t) = integral rho_MP(x; lambda) [sigma_w^2 e^{-2(x + gamma) t} + ((gamma + x e^{-(x+gamma)t})/(x + gamma))^2] dx
#
# with ``rho_MP = (1 - 1/lambda)_+ delta_0 + sqrt((b - x)(x - a))/(2 pi lambda x)`` on
# ``[a, b] = [(1 - sqrt lambda)^2, (1 + sqrt lambda)^2]`` (the atom's modes keep ``T_i``: the
# teacher's part outside the span of the data is never learned; weight decay only removes
# ``w0``'s part there). A test point is "correct" when ``|w . x - T . x| < eps``; given ``D`` that
# has probability ``erf(eps/(sqrt 2 |D|))`` and ``|D|^2 -> G(t)``, so the test accuracy is
#
#     A(t) = erf(eps/sqrt(2 G(t))).
#
# Training points see ``D^T Sigma D``, which decays faster (the slow modes have small ``x``): the
# training accuracy saturates first and the test accuracy follows late -- grokking, with a delay set
# by the small eigenvalues (the lower MP edge ``a``, which closes as ``lambda -> 1``).


def _lam(lam: float) -> float:
    return check_range("lam", lam, 0.0, None, low_open=True)


def marchenko_pastur_density(x: Any, lam: float) -> np.ndarray:
    """The continuous part of the Marchenko-Pastur law of ``X^T X/N`` (``X``: ``N x d`` standard normal,
    ``lam = d/N``): ``sqrt((b - x)(x - a))/(2 pi lam x)`` on ``[a, b] = [(1 -+ sqrt lam)^2]``, mass
    ``min(1, 1/lam)``."""
    lam = _lam(lam)
    x = np.asarray(x, dtype=float)
    a, b = (1 - math.sqrt(lam)) ** 2, (1 + math.sqrt(lam)) ** 2
    inside = (x > a) & (x < b)
    xs = np.where(inside, x, 0.5 * (a + b))
    return np.where(inside, np.sqrt(np.clip((b - xs) * (xs - a), 0, None)) / (2 * math.pi * lam * xs), 0.0)


def teacher_student_mode_error(x: Any, t: Any, gamma: float, sigma_w: float) -> np.ndarray:
    """``E D_i(t)^2 d`` of one eigenmode of curvature ``x`` at time ``t``: ``sigma_w^2 e^2 +
    ((gamma + x e)/(x + gamma))^2``, ``e = exp(-(x + gamma) t)`` (1 at ``x = gamma = 0``)."""
    x = np.asarray(x, dtype=float)
    t = np.asarray(t, dtype=float)
    e = np.exp(-(x + gamma) * t)
    s = x + gamma
    frac = np.where(s > 0, (gamma + x * e) / np.where(s > 0, s, 1.0), 1.0)
    return sigma_w ** 2 * e ** 2 + frac ** 2


def teacher_student_test_loss(t: Any, lam: float, gamma: float = 0.0, sigma_w: float = 1.0) -> np.ndarray:
    """``G(t) = lim E|w(t) - T|^2``: the Marchenko-Pastur average of :func:`teacher_student_mode_error`
    (its atom at 0 included for ``lam > 1``), by Gauss-Chebyshev quadrature of the second kind on
    ``[a, b]`` (exact for the square-root edges; 400 nodes).

    >>> round(float(teacher_student_test_loss(0.0, 0.5, 0.0, 0.5)), 12)
    1.25
    """
    lam = _lam(lam)
    gamma = check_range("gamma", gamma, 0.0, None)
    sigma_w = check_range("sigma_w", sigma_w, 0.0, None)
    t = np.asarray(t, dtype=float)
    a, b = (1 - math.sqrt(lam)) ** 2, (1 + math.sqrt(lam)) ** 2
    n = 400
    k = np.arange(1, n + 1)
    u = np.cos(k * math.pi / (n + 1))  # Chebyshev-U nodes: integral sqrt(1 - u^2) f(u) du
    wts = math.pi / (n + 1) * np.sin(k * math.pi / (n + 1)) ** 2
    x = 0.5 * (a + b) + 0.5 * (b - a) * u
    # rho dx = sqrt((b - x)(x - a))/(2 pi lam x) dx = ((b - a)/2)^2 sqrt(1 - u^2)/(2 pi lam x) du
    w = wts * ((b - a) / 2) ** 2 / (2 * math.pi * lam * x)
    f = teacher_student_mode_error(x[:, None], t.reshape(-1)[None, :], gamma, sigma_w)
    out = w @ f
    if lam > 1:
        out = out + (1 - 1 / lam) * teacher_student_mode_error(0.0, t.reshape(-1), gamma, sigma_w)
    return out.reshape(t.shape)


def teacher_student_accuracy(t: Any, eps: float, lam: float, gamma: float = 0.0, sigma_w: float = 1.0) -> np.ndarray:
    """Test accuracy ``A(t) = erf(eps/sqrt(2 G(t)))`` of the linear student in the limit ``d -> infinity``
    at ``lam = d/N``: the probability that ``|w(t) . x - T . x| < eps`` for a fresh ``x ~ N(0, I)``."""
    from scipy.special import erf

    eps = check_range("eps", eps, 0.0, None, low_open=True)
    G = teacher_student_test_loss(t, lam, gamma, sigma_w)
    with np.errstate(divide="ignore"):  # G = 0 (all error decayed away): accuracy erf(inf) = 1
        return erf(eps / np.sqrt(2 * G))


@dataclass
class TeacherStudentRun:
    """A batch of gradient-flow runs of the linear teacher-student model (``B`` draws of ``X, T, w0``).

    Attributes:
      test_accuracy: ``(B, len(t))`` ``erf(eps/(sqrt 2 |D(t)|))`` per draw.
      train_accuracy: ``(B, len(t))`` fraction of training points with ``|x_n . D(t)| < eps``.
      test_loss: ``(B, len(t))`` ``|D(t)|^2``.
      train_loss: ``(B, len(t))`` ``D^T Sigma D`` (twice the data term of ``L``).
    """

    times: np.ndarray
    test_accuracy: np.ndarray
    train_accuracy: np.ndarray
    test_loss: np.ndarray
    train_loss: np.ndarray


def simulate_teacher_student(d: int, lam: float, gamma: float, sigma_w: float, eps: float, times: Any, runs: int,
                             backend: Backend, seed: int) -> TeacherStudentRun:
    """Gradient flow ``dw/dt = -Sigma (w - T) - gamma w`` for ``runs`` independent draws of the training
    inputs ``X`` (``N = round(d/lam)`` rows), the teacher and the initial student, solved exactly in each
    draw's eigenbasis of ``Sigma = X^T X/N`` (one batched ``eigh``), at the given times."""
    from scipy.special import erf

    d = check_int("d", d, 2)
    lam = _lam(lam)
    gamma = check_range("gamma", gamma, 0.0, None)
    sigma_w = check_range("sigma_w", sigma_w, 0.0, None)
    eps = check_range("eps", eps, 0.0, None, low_open=True)
    runs = check_int("runs", runs, 1)
    N = max(1, int(round(d / lam)))
    xp = backend.xp
    rng = backend.rng(seed)
    X = rng.normal((runs, N, d))
    T = rng.normal((runs, d), 1.0 / math.sqrt(d))
    w0 = rng.normal((runs, d), sigma_w / math.sqrt(d))
    S = xp.matmul(xp.matrix_transpose(X), X) / N
    x, Q = xp.linalg.eigh(S)  # (runs, d), (runs, d, d)
    x = xp.clip(x, 0.0, None)  # the null modes come out as +-1e-16
    Tq = xp.sum(Q * T[:, :, None], axis=1)  # Q^T T
    wq = xp.sum(Q * w0[:, :, None], axis=1)
    tt = backend.asarray(np.asarray(times, dtype=float))
    e = xp.exp(-(x[:, None, :] + gamma) * tt[None, :, None])  # (runs, times, d)
    s = x[:, None, :] + gamma
    safe = xp.where(s > 0, s, xp.ones_like(s))
    Dq = e * wq[:, None, :] - xp.where(s > 0, (gamma + x[:, None, :] * e) / safe, xp.ones_like(s)) * Tq[:, None, :]
    test_loss = xp.sum(Dq * Dq, axis=2)
    train_loss = xp.sum(x[:, None, :] * Dq * Dq, axis=2)
    D = xp.matmul(Dq, xp.matrix_transpose(Q))  # (runs, times, d) back in input coordinates
    resid = xp.matmul(D, xp.matrix_transpose(X))  # (runs, times, N)
    train_acc = xp.mean(xp.astype(xp.abs(resid) < eps, resid.dtype), axis=2)
    tl = backend.to_numpy(test_loss)
    with np.errstate(divide="ignore"):
        acc = erf(eps / np.sqrt(2 * tl))
    return TeacherStudentRun(np.asarray(times, dtype=float), acc, backend.to_numpy(train_acc),
                             tl, backend.to_numpy(train_loss))


@dataclass(frozen=True)
class LinearTeacherStudentParams(Params):
    lam: float = param(0.5, low=0, low_open=True, high=4.0, domain=(0.2, 0.8), doc="lambda = d_in/N_train")
    gamma: float = param(0.01, low=0, high=1.0, domain=(0.0, 0.05), doc="weight decay gamma")
    eps: float = param(0.1, low=0, low_open=True, high=10.0, domain=(0.05, 0.3), log=True,
                       doc="accuracy threshold eps: a test point counts as correct when |error| < eps")
    sigma_w: float = param(0.5, low=0, high=10.0, domain=(0.0, 1.0), doc="initial student scale sigma_w (|w0| ~ sigma_w)")
    d: int = param(64, low=4, high=2000, integer=True, domain=(48, 96), doc="input dimension d_in of the simulation")


LTS_TIMES = tuple(float(t) for t in np.geomspace(1.0, 256.0, 9))
_LTS_RUNS = 64
_LTS_Z = 3.0


def _measure_lts(p: LinearTeacherStudentParams, backend: Backend, seed: int) -> Measurement:
    accs, ses = [], []
    for k, d in enumerate((p.d, 2 * p.d)):
        run = simulate_teacher_student(d, p.lam, p.gamma, p.sigma_w, p.eps, LTS_TIMES, _LTS_RUNS, backend,
                                       seed + 1009 * k)
        accs.append(run.test_accuracy.mean(axis=0))
        ses.append(run.test_accuracy.std(axis=0, ddof=1) / math.sqrt(_LTS_RUNS))
    tr = run.train_accuracy.mean(axis=0)
    grok_t = [float(np.interp(0.5, a, LTS_TIMES)) if a[-1] > 0.5 > a[0] else float("nan") for a in (tr, accs[1])]
    return Measurement(value=accs[1], stderr=ses[1],
                       info={"times": list(LTS_TIMES), "accuracy_at_d": accs[0].tolist(), "stderr_at_d": ses[0].tolist(),
                             "train_accuracy": tr.tolist(), "d": 2 * p.d, "N": int(round(2 * p.d / p.lam)),
                             "runs": _LTS_RUNS, "t_half_train": grok_t[0], "t_half_test": grok_t[1]})


def _tol_lts(p: LinearTeacherStudentParams, m: Measurement, backend: Backend) -> Tolerance:
    a_d = np.asarray(m.info["accuracy_at_d"])
    se = np.sqrt(np.asarray(m.stderr) ** 2 + np.asarray(m.info["stderr_at_d"]) ** 2)
    shift = np.abs(np.asarray(m.value) - a_d)
    return Tolerance(shift + _LTS_Z * se + backend.roundoff(1e4), (
        f"finite size: the accuracy at d is a smooth function of (1/d) tr f(Sigma) and of |D|^2, whose means "
        f"and Jensen bias differ from the MP limit by O(1/d), so the bias at 2d is bounded by the measured "
        f"shift between d and 2d; plus {_LTS_Z:g} standard errors of that difference over {_LTS_RUNS} draws each"))


def _abs_errors(pred: Any, meas: Any) -> np.ndarray:
    return np.abs(np.asarray(pred, dtype=float) - np.asarray(meas, dtype=float))


register(Claim(
    id="grok.linear_teacher_student",
    statement=("Linear teacher-student under gradient flow dw/dt = -Sigma (w - T) - gamma w (Sigma = X^T X/N, "
               "x ~ N(0, I_d), T ~ N(0, I/d), w(0) ~ N(0, sigma_w^2 I/d)): the test accuracy at threshold eps is "
               "A(t) = erf(eps/sqrt(2 G(t))), G(t) = int rho_MP(x; lambda) [sigma_w^2 e^{-2(x+gamma)t} + "
               "((gamma + x e^{-(x+gamma)t})/(x+gamma))^2] dx with the Marchenko-Pastur law at lambda = d/N (its atom "
               "(1 - 1/lambda)_+ at 0 keeps the teacher's unseen part); the training accuracy saturates first "
               "(D^T Sigma D decays faster) and the test accuracy follows after a delay set by the lower MP edge "
               "(1 - sqrt lambda)^2; weight decay caps A at erf(eps/sqrt(2 int rho gamma^2/(x+gamma)^2)). Measured at "
               "t = 1..256 by exact flow on 64 draws at d and 2d."),
    reference=("Levi, Beck, Bar-Sinai 2023, arXiv 2310.16441, sec. 2-3 (model and MP analysis; normalisation and "
               "the weight-decay form derived here, proofs_check/check_grok.py)"),
    params=LinearTeacherStudentParams,
    predicted=lambda p: teacher_student_accuracy(np.asarray(LTS_TIMES), p.eps, p.lam, p.gamma, p.sigma_w),
    measured=_measure_lts,
    tolerance=_tol_lts,
    error=_abs_errors,
    sweep="lam", sweep_values=(0.2, 0.4, 0.6, 0.8),
    summary=lambda v: float(np.asarray(v)[4]), summary_label="test accuracy at t = 16",
    mutants={
        "population spectrum (Sigma = I, no MP spread)": lambda p: _erf_acc(p, teacher_student_mode_error(
            1.0, np.asarray(LTS_TIMES), p.gamma, p.sigma_w)),
        "amplitude decay e^{-x t} for the squared error e^{-2 x t}": lambda p: _erf_acc(p, teacher_student_test_loss(
            np.asarray(LTS_TIMES) / 2, p.lam, p.gamma, p.sigma_w)),
        "lambda = N/d for d/N": lambda p: teacher_student_accuracy(np.asarray(LTS_TIMES), p.eps, 1 / p.lam, p.gamma,
                                                                   p.sigma_w),
    },
    closed_forms=("teacher_student_accuracy", "teacher_student_test_loss"),
))


def _erf_acc(p: LinearTeacherStudentParams, G: np.ndarray) -> np.ndarray:
    from scipy.special import erf

    with np.errstate(divide="ignore"):
        return erf(p.eps / np.sqrt(2 * np.asarray(G)))


# --------------------------------------------------------------------------------------------
# Training splits of the p^2 pairs (for the trained-MLP claims, still to come)


def check_fraction(fraction: float) -> float:
    """The training fraction of the ``p^2`` pairs must lie in the open interval (0, 1)."""
    return check_range("fraction", fraction, 0.0, 1.0, low_open=True, high_open=True)


def train_split(p: int, fraction: Any, runs: int, backend: Backend, seed: int) -> Any:
    """``(runs, p^2)`` boolean masks, each marking ``round(fraction p^2)`` (at least 1, at most ``p^2 - 1``)
    training pairs ``(a, b) = divmod(index, p)`` chosen uniformly without replacement, one per run.
    ``fraction`` is one number or one per run (a sequence of length ``runs``)."""
    p = check_prime(p)
    runs = check_int("runs", runs, 1)
    fr = np.atleast_1d(np.asarray(fraction, dtype=float))
    if fr.size not in (1, runs):
        raise ValueError(f"fraction has {fr.size} entries; expected 1 or runs={runs}")
    for x in fr:
        check_fraction(float(x))
    m = np.minimum(p * p - 1, np.maximum(1, np.round(fr * p * p))).astype(int)
    perm = backend.rng(seed).permutations(p * p, runs)
    if fr.size == 1:
        return perm < int(m[0])
    return perm < backend.asarray(np.broadcast_to(m, (runs,)).astype(float))[:, None]


def modular_targets(p: int, backend: Backend) -> Any:
    """``(p, p^2)`` one-hot targets of ``a + b mod p`` for the pairs ``(a, b) = divmod(index, p)``."""
    idx = np.arange(p * p)
    return backend.asarray((np.arange(p)[:, None] == ((idx // p + idx % p) % p)[None, :]).astype(float))


def _forward(U: Any, V: Any, W: Any, backend: Backend) -> tuple[Any, Any, Any]:
    xp = backend.xp
    R, N, p = U.shape
    pre = xp.reshape(U[:, :, :, None] + V[:, :, None, :], (R, N, p * p))
    h = pre * pre
    return pre, h, xp.matmul(W, h)  # z: (R, p, p^2)


def train_modular_mlp(p: int, width: int, fraction: float, runs: int, backend: Backend, seed: int, steps: int = 600,
                      lr: float = 0.02, weight_decay: float = 2.0, init_scale: float = 1.0, checkpoints: int = 12,
                      beta1: float = 0.9, beta2: float = 0.98, eps: float = 1e-8, generalize_at: float | None = None,
                      track_every: int = 10, stop_when_generalized: bool = False) -> dict:
    """AdamW on the quadratic MLP for ``runs`` (split, initialisation) draws at once.

    Update (per parameter ``theta``, gradient ``g`` of the mean squared error over the run's training pairs):
    ``m = beta1 m + (1 - beta1) g``, ``v = beta2 v + (1 - beta2) g^2``,
    ``theta -= lr (m_hat/(sqrt(v_hat) + eps) + weight_decay theta)`` (bias-corrected ``m_hat``, ``v_hat``).
    Initial weights ``N(0, init_scale^2/p)`` for ``U, V`` and ``N(0, init_scale^2/width)`` for ``W``.

    Returns ``{"U", "V", "W"}`` (numpy, final), ``"mask"`` (``(runs, p^2)`` training pairs), and per checkpoint
    ``"steps"``, ``"train_accuracy"``, ``"test_accuracy"``, ``"train_loss"``, ``"test_loss"`` (``(C, runs)``)
    and ``"fourier_fraction"`` (``(C, runs)``, :func:`fourier_concentration`). ``fraction`` may be one number or
    one per run (runs with different split sizes trained as one program). With ``generalize_at`` set, the test
    accuracy is also checked every ``track_every`` steps (argmax only, cheap) and ``"steps_to_generalize"`` holds,
    per run, the first checked step at which it is ``>= generalize_at`` (``-1``: not within ``steps``); with
    ``stop_when_generalized`` training ends once every run has (the final record is then at that step).
    """
    p = check_prime(p)
    width = check_int("width", width, 1)
    runs = check_int("runs", runs, 1)
    steps = check_int("steps", steps, 1)
    track_every = check_int("track_every", track_every, 1)
    if generalize_at is not None:
        generalize_at = check_range("generalize_at", generalize_at, 0.0, 1.0, low_open=True)
    lr = check_range("lr", lr, 0.0, None, low_open=True)
    weight_decay = check_range("weight_decay", weight_decay, 0.0, None)
    xp = backend.xp
    rng = backend.rng(seed)
    mask = xp.astype(train_split(p, fraction, runs, backend, seed + 1), backend.float_dtype)  # (R, p^2)
    msum = xp.sum(mask, axis=1)
    Y = modular_targets(p, backend)
    params = [rng.normal((runs, width, p), init_scale / math.sqrt(p)), rng.normal((runs, width, p), init_scale / math.sqrt(p)),
              rng.normal((runs, p, width), init_scale / math.sqrt(width))]
    mom = [xp.zeros_like(x) for x in params]
    sec = [xp.zeros_like(x) for x in params]
    cps = set(np.unique(np.linspace(0, steps, checkpoints + 1).round().astype(int)).tolist())
    rec: dict[str, list] = {k: [] for k in ("steps", "train_accuracy", "test_accuracy", "train_loss", "test_loss",
                                            "fourier_fraction")}
    target = np.argmax(backend.to_numpy(Y), axis=0)
    mask_np = backend.to_numpy(mask)
    target_b = backend.asarray(target.astype(float))
    test_w = 1.0 - mask
    test_n = xp.sum(test_w, axis=1)
    first = np.full(runs, -1, dtype=int)

    def record(t, z):
        zn = backend.to_numpy(z)
        correct = (zn.argmax(axis=1) == target[None, :]).astype(float)
        per_pair = ((zn - backend.to_numpy(Y)[None]) ** 2).sum(axis=1)
        rec["steps"].append(t)
        for name, w in (("train", mask_np), ("test", 1 - mask_np)):
            rec[f"{name}_accuracy"].append((correct * w).sum(axis=1) / w.sum(axis=1))
            rec[f"{name}_loss"].append((per_pair * w).sum(axis=1) / w.sum(axis=1))
        rec["fourier_fraction"].append(fourier_concentration(*(backend.to_numpy(x) for x in params)))

    for t in range(0, steps + 1):
        U, V, W = params
        pre, h, z = _forward(U, V, W, backend)
        if t in cps:
            record(t, z)
        if generalize_at is not None and t % track_every == 0 and (first < 0).any():
            hit = xp.astype(xp.argmax(z, axis=1), backend.float_dtype) == target_b[None, :]
            acc = backend.to_numpy(xp.sum(xp.astype(hit, backend.float_dtype) * test_w, axis=1) / test_n)
            first = np.where((first < 0) & (acc >= generalize_at), t, first)
            if stop_when_generalized and (first >= 0).all():
                if t not in cps:
                    record(t, z)
                break
        if t == steps:
            break
        dz = 2.0 * (z - Y[None]) * (mask / msum[:, None])[:, None, :]
        dW = xp.matmul(dz, xp.matrix_transpose(h))
        dpre = xp.reshape(2.0 * pre * xp.matmul(xp.matrix_transpose(W), dz), (runs, width, p, p))
        grads = [xp.sum(dpre, axis=3), xp.sum(dpre, axis=2), dW]
        c1, c2 = 1 - beta1 ** (t + 1), 1 - beta2 ** (t + 1)
        for i in range(3):
            mom[i] = beta1 * mom[i] + (1 - beta1) * grads[i]
            sec[i] = beta2 * sec[i] + (1 - beta2) * grads[i] * grads[i]
            params[i] = params[i] - lr * (mom[i] / c1 / (xp.sqrt(sec[i] / c2) + eps) + weight_decay * params[i])
    out = {k: np.array(v) for k, v in rec.items()}
    out.update({"U": backend.to_numpy(params[0]), "V": backend.to_numpy(params[1]), "W": backend.to_numpy(params[2]),
                "mask": mask_np.astype(bool)})
    if generalize_at is not None:
        out["steps_to_generalize"] = first
    return out


def top_frequency_fraction(U: np.ndarray, V: np.ndarray, W: np.ndarray) -> np.ndarray:
    """Per run and neuron, the fraction of the squared norm of ``(U_k., V_k., W_.k)`` that lies at the single
    frequency ``s in {1, ..., (p-1)/2}`` (the pair of Fourier modes ``+-s``) carrying most of it: ``(runs, width)``.
    1 for Gromov's construction (every neuron a pure cosine at one ``s`` in all three), about
    ``2 log(p)/p``-ish for a random vector; the constant (``s = 0``) mode counts against it."""
    U, V, W = (np.asarray(x, dtype=float) for x in (U, V, W))
    p = U.shape[-1]
    rows = np.stack([U, V, np.swapaxes(W, -1, -2)], axis=-2)  # (runs, width, 3, p)
    power = np.abs(np.fft.rfft(rows, axis=-1)) ** 2
    power[..., 1:] *= 2  # s and p - s (p odd: no Nyquist mode)
    total = p * (rows ** 2).sum(axis=(-1, -2))
    return power[..., 1:].sum(axis=-2).max(axis=-1) / np.where(total > 0, total, 1.0)


def fourier_concentration(U: np.ndarray, V: np.ndarray, W: np.ndarray) -> np.ndarray:
    """Per run, the share of the network's squared weight norm that lies in each neuron's top frequency:
    ``sum_k |theta_k|^2 f_k / sum_k |theta_k|^2`` with ``f_k`` from :func:`top_frequency_fraction` (neurons that
    weight decay has shrunk to noise count in proportion to their norm): ``(runs,)``."""
    rows = np.stack([np.asarray(U, float), np.asarray(V, float), np.swapaxes(np.asarray(W, float), -1, -2)], axis=-2)
    norm = (rows ** 2).sum(axis=(-1, -2))
    return (top_frequency_fraction(U, V, W) * norm).sum(axis=-1) / norm.sum(axis=-1)


# ============================================================================================
# grok.trained_is_fourier: the trained weights concentrate on one frequency per neuron (but not purely)
#
# Measured (numpy, p = 11, N = 48, fraction 0.7, lr 0.02, weight decay 2, 8 runs): the norm-weighted top-frequency
# share rises from 0.33 at initialisation to 0.875 (T = 250), 0.930 (T = 500) and saturates at 0.933 +- 0.002 through
# T = 2000, with test accuracy 1.0 from T = 250. So the share is registered against three marks: the even spread over
# the (p - 1)/2 frequencies, two equal frequencies (1/2) and Gromov's pure cosine (1); it sits strictly between 1/2
# and 1. Where the remaining ~7% goes (measured, N = 24, T = 400): in U and V about 2% at the constant mode and 1% at
# the harmonic 2s, in W (whose own share is lower, ~0.86) about 3% at 2s; the rest is spread. No closed form for the
# residual is derived, so only the ordering is claimed.


def share_marks(p: int) -> tuple[float, float, float]:
    """The top-frequency shares of three reference forms of a neuron's weights: equal power on all ``(p - 1)/2``
    non-constant frequencies (``2/(p - 1)``), equal power on two frequencies (``1/2``), and Gromov's pure cosine at one
    frequency (``1``) (derived from Parseval in proofs_check/check_grok.py).

    >>> share_marks(11)
    (0.2, 0.5, 1.0)
    """
    p = check_prime(p)
    return 2.0 / (p - 1), 0.5, 1.0


def trained_fourier_classes(p: int) -> list[int]:
    """The registered ordering of the trained share ``F`` against :func:`share_marks`: ``F > 2/(p - 1)``,
    ``F > 1/2`` and ``F < 1``, i.e. ``[+1, +1, -1]`` as outcomes of z tests."""
    from .parity import order_classes

    marks = share_marks(p)
    return order_classes(0.5 * (marks[1] + marks[2]), 0.0, 1.0, marks=marks)


@dataclass(frozen=True)
class TrainedFourierParams(Params):
    lr: float = param(0.02, low=0, low_open=True, high=0.1, domain=(0.018, 0.03), doc="AdamW step size")
    width: int = param(32, low=4, high=256, integer=True, domain=(24, 40), doc="hidden width N")
    fraction: float = param(0.7, low=0, high=1, low_open=True, high_open=True, domain=(0.7, 0.85),
                            doc="training fraction of the p^2 pairs")


_TF = dict(p=11, runs=6, steps=500, weight_decay=2.0, z=3.0)


def _measure_tf(p: TrainedFourierParams, backend: Backend, seed: int) -> Measurement:
    from .parity import order_classes

    P = _TF["p"]
    out = train_modular_mlp(P, p.width, p.fraction, _TF["runs"], backend, seed, steps=_TF["steps"], lr=p.lr,
                            weight_decay=_TF["weight_decay"], checkpoints=1)
    share = out["fourier_fraction"][-1]
    mean, se = float(share.mean()), float(share.std(ddof=1) / math.sqrt(share.size))
    marks = (2.0 / (P - 1), 0.5, 1.0)  # the reference forms, restated (the closed form is not called here)
    return Measurement(value=order_classes(mean, se, _TF["z"], marks=marks), stderr=None,
                       checks={"generalized": bool(out["test_accuracy"][-1].mean() >= 0.9)},
                       info={"share_mean": mean, "share_stderr": se, "share_per_run": share.tolist(),
                             "share_at_init": float(out["fourier_fraction"][0].mean()),
                             "test_accuracy": out["test_accuracy"][-1].tolist(), **_TF})


register(Claim(
    id="grok.trained_is_fourier",
    statement=("The quadratic MLP trained by full-batch AdamW (weight decay 2, MSE) on a fraction of the pairs of "
               "a + b mod 11 generalizes and its weights concentrate on one frequency per neuron: the norm-weighted "
               "share of each neuron's (U, V, W) squared norm in its top frequency (6 seeds, 500 steps) exceeds the "
               "even spread 2/(p - 1) and 1/2 (one frequency carries most of the norm), but stays below Gromov's pure "
               "cosine 1, at 3 standard errors of the seed spread. Measured about 0.93 (from 0.33 at initialisation); "
               "it saturates there (0.933 +- 0.002 up to 2000 steps), so Gromov's periodic form is reached in its "
               "frequencies, not exactly: ~7% of the norm stays off the top frequency (constant mode and harmonic 2s "
               "among it)."),
    reference=("Gromov 2023, arXiv 2301.02679, sec. 4 (trained weights are periodic); Power et al. 2022, arXiv "
               "2201.02177; the share, the marks and the test defined and derived here"),
    params=TrainedFourierParams,
    predicted=lambda p: trained_fourier_classes(_TF["p"]),
    measured=_measure_tf,
    tolerance=lambda p, m, be: Tolerance(0.5, (
        "the measured entries are outcomes (-1, 0, +1) of two-sided z = 3 tests of the mean share (6 independent "
        "seeds; standard error from their spread) against the marks; 0.5 only separates the integer outcomes")),
    error=lambda pred, meas: np.abs(np.asarray(pred, dtype=float) - np.asarray(meas, dtype=float)),
    mutants={
        "even spread 2/(p-1)": lambda p: [0, -1, -1],
        "two frequencies 1/2": lambda p: [1, 0, -1],
        "pure cosine 1 (Gromov's form exactly)": lambda p: [1, 1, 0],
    },
    closed_forms=("trained_fourier_classes", "share_marks"),
))


# ============================================================================================
# grok.time_vs_fraction: steps to generalize against the training fraction (Power et al. 2022, Fig. 1 in spirit)


def sample_budget_slope() -> float:
    """``-1``: the log-log slope of steps against the training fraction ``f`` if generalizing took a fixed number of
    example presentations ``T f p^2 = C`` (full batch: every step presents all ``f p^2`` training pairs), i.e.
    ``T = C/(f p^2)``, ``d log T/d log f = -1`` (derived in proofs_check/check_grok.py). The measured slope is
    compared with it and with 0 (no dependence).

    >>> sample_budget_slope()
    -1.0
    """
    return -1.0


def time_fraction_classes() -> list[int]:
    """The registered ordering: the slope lies below 0 (steps fall as the fraction grows) and below the
    sample-budget slope ``-1`` (they fall faster than ``1/f``): ``[-1, -1]`` as outcomes of z tests against the marks
    ``(0, sample_budget_slope())``."""
    from .parity import order_classes

    return order_classes(-math.inf, 0.0, 1.0, marks=(0.0, sample_budget_slope()))


@dataclass(frozen=True)
class TimeVsFractionParams(Params):
    lr: float = param(0.02, low=0, low_open=True, high=0.1, domain=(0.018, 0.03), doc="AdamW step size")
    width: int = param(24, low=4, high=256, integer=True, domain=(20, 28), doc="hidden width N")


_TVF = dict(p=11, fractions=(0.7, 0.8, 0.9), runs=8, steps=450, threshold=0.9, track_every=5, weight_decay=2.0, z=2.5)


def endpoint_slope(fractions: tuple[float, ...], steps: np.ndarray) -> tuple[float, float]:
    """Log-log slope between the lowest and highest fraction, ``log(mean T_hi/mean T_lo)/log(f_hi/f_lo)``, and its
    standard error from the seed spread (delta method on each mean of ``steps.shape[1]`` independent seeds)."""
    lo, hi = steps[0], steps[-1]
    n = steps.shape[1]
    d = math.log(fractions[-1] / fractions[0])
    var = (lo.std(ddof=1) / lo.mean()) ** 2 / n + (hi.std(ddof=1) / hi.mean()) ** 2 / n
    return math.log(hi.mean() / lo.mean()) / d, math.sqrt(var) / abs(d)


def _measure_tvf(p: TimeVsFractionParams, backend: Backend, seed: int) -> Measurement:
    from .parity import _fit_with_seed_error, order_classes

    fr, R, S = _TVF["fractions"], _TVF["runs"], _TVF["steps"]
    out = train_modular_mlp(_TVF["p"], p.width, np.repeat(fr, R), len(fr) * R, backend, seed, steps=S, lr=p.lr,
                            weight_decay=_TVF["weight_decay"], checkpoints=1, generalize_at=_TVF["threshold"],
                            track_every=_TVF["track_every"], stop_when_generalized=True)
    st = out["steps_to_generalize"].reshape(len(fr), R).astype(float)
    censored = (st < 0).sum(axis=1)
    st = np.where(st < 0, S, st)  # not generalized within the budget: counted as the budget (biases the slope to 0)
    slope, se = endpoint_slope(fr, st)
    fit, fit_se = _fit_with_seed_error(fr, st)
    means = st.mean(axis=1)
    return Measurement(value=order_classes(slope, se, _TVF["z"], marks=(0.0, -1.0)), stderr=None,
                       checks={"highest_fraction_always_generalizes": bool(censored[-1] == 0)},
                       info={"slope": slope, "slope_stderr": se, "fitted_slope_all_fractions": fit, "fitted_stderr": fit_se,
                             "mean_steps": means.tolist(), "censored_runs": censored.tolist(), **_TVF})


register(Claim(
    id="grok.time_vs_fraction",
    statement=("Full-batch AdamW (weight decay 2) on the quadratic MLP for a + b mod 11 reaches test accuracy 0.9 in "
               "fewer steps the larger the training fraction: the log-log slope of the mean steps between fractions "
               "0.7 and 0.9 (8 seeds each, 450-step budget) is below 0 and below -1 at 2.5 standard errors, i.e. the "
               "steps fall faster than 1/fraction (a fixed number of example presentations). Measured slope about -3 "
               "(+-0.4). Below fraction 0.6 no run generalizes within 400 steps at these sizes, so the law is a "
               "steep fall near a threshold fraction, not a power law over (0, 1)."),
    reference=("Power et al. 2022, arXiv 2201.02177, Fig. 1 (steps to generalize vs training fraction); the ordering "
               "form, the sample-budget mark -1 and the test derived here"),
    params=TimeVsFractionParams,
    predicted=lambda p: time_fraction_classes(),
    measured=_measure_tvf,
    tolerance=lambda p, m, be: Tolerance(0.5, (
        "the measured entries are outcomes (-1, 0, +1) of two-sided z = 2.5 tests of the endpoint slope against 0 and "
        "-1, its standard error from the spread of 8 independent seeds per fraction (delta method); 0.5 only "
        "separates the integer outcomes")),
    error=lambda pred, meas: np.abs(np.asarray(pred, dtype=float) - np.asarray(meas, dtype=float)),
    mutants={
        "independent of fraction": lambda p: [0, 1],
        "increasing with fraction": lambda p: [1, 1],
        "1/fraction (fixed sample budget)": lambda p: [-1, 0],
    },
    closed_forms=("time_fraction_classes", "sample_budget_slope"),
))
