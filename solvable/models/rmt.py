"""Random-matrix building blocks: Wigner and sample-covariance spectra, and their spiked outliers.

The model. A Wigner (GOE) matrix of size ``n`` and scale ``sigma`` is

    W = sigma (G + G^T) / sqrt(2 n),        G_ij iid N(0, 1),

so off-diagonal entries have variance ``sigma^2 / n`` and the spectrum fills ``[-2 sigma, 2 sigma]``
with the semicircle density ``rho(x) = sqrt(4 sigma^2 - x^2) / (2 pi sigma^2)``.
A sample covariance of ``p`` variables from ``n`` samples is ``S = X X^T / n`` with ``X`` of shape
``(p, n)`` and entries of variance ``sigma^2``; at ratio ``gamma = p / n`` its spectrum follows the
Marchenko-Pastur law on ``[sigma^2 (1 - sqrt gamma)^2, sigma^2 (1 + sqrt gamma)^2]``
(an atom ``1 - 1/gamma`` at 0 when ``gamma > 1``).

Spikes (Baik, Ben Arous, Peche transition):

- ``theta v v^T + W``: the top eigenvalue is ``theta + sigma^2 / theta`` when ``theta > sigma``, else
  the edge ``2 sigma``; the squared overlap of its eigenvector with ``v`` is ``1 - sigma^2/theta^2``
  above the transition and ``0`` below;
- population covariance ``I + (ell - 1) v v^T`` at ratio ``gamma``: the top sample eigenvalue is
  ``ell (1 + gamma / (ell - 1))`` when ``ell > 1 + sqrt(gamma)``, else the edge ``(1 + sqrt gamma)^2``.

Both outlier locations come from the Stieltjes transform ``G`` of the bulk: the additive spike
solves ``G_sc(z) = 1/theta``, the multiplicative one ``z G_mp(z) - 1 = 1/(ell - 1)``
(``proofs_check/check_rmt.py`` derives them in sympy).

Finite size. The mean empirical spectral distribution (ESD) of ``n`` eigenvalues differs from the
limit law at order ``1/n``. For a beta-ensemble with one-cut support ``[a, b]`` the first loop equation
``E[W^2] - V'(z) E[W] + ... + (1/n)(1 - 2/beta) E[W'] = 0`` (``W`` the normalised resolvent) gives the
mean resolvent ``G = G_0 + G_1/n`` with ``G_1 = (2/beta - 1) G_0' / (2 G_0 - V'(z))``; for the GOE
(``beta = 1``) this is the density correction ``[delta(x - a) + delta(x - b)]/4 - 1/(2 pi sqrt((b - x)(x - a)))``
(derived in ``proofs_check/check_rmt.py``), whose distribution function is

    E F_n(x) - F(x) = -arcsin((2x - a - b)/(b - a)) / (2 pi n) + o(1/n),    |.| <= 1/(4 n)

(:func:`esd_finite_size_bias`). Measured (tests/test_rmt.py): the GOE at ``n = 100`` and real
Wishart matrices (``p = 100``, ``gamma`` = 0.2, 0.5 and 1, where the left edge is hard) follow this
``1/n`` term within one standard error in the bulk and stay below ``1/(4n)`` at the edges. The
ESD of one matrix fluctuates about its mean by ``~ 0.9/n`` at each point (the counting function's
variance ``~ log(n)/pi^2``, Gustavsson 2005), which the claims measure over replicates.

The top eigenvalue at the edge fluctuates on the Tracy-Widom scale ``n^(-2/3)`` with mean
``-1.2065`` (GOE) in those units; an outlier fluctuates on the scale ``n^(-1/2)``; inside the
critical window ``|theta/sigma - 1| ~ n^(-1/3)`` neither limit applies, and the BBP claims exclude it.

References:
  Wigner 1958, Ann. Math. 67; Marchenko and Pastur 1967, Math. USSR-Sb. 1.
  Baik, Ben Arous, Peche 2005, Ann. Probab. 33, arXiv math/0403022.
  Peche 2006, PTRF 134, arXiv math/0411487 (Wigner spikes); Feral and Peche 2007, arXiv math/0605624.
  Benaych-Georges and Nadakuditi 2011, Adv. Math. 227, arXiv 0910.2120 (outliers via G(z) = 1/theta).
  Paul 2007, Stat. Sinica 17 (covariance spike overlap); Johnstone 2001, Ann. Stat. 29 (TW scaling).
  Tracy and Widom 1996, CMP 177 (GOE mean -1.2065).
  Bai and Yao 2008, Ann. IHP 44, arXiv math/0610525 (Gaussian fluctuations of spiked outliers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as _sps

from ..backend import Backend, Generator, get_backend
from ..checks import check_int, check_positive, check_range
from ..claims import Claim, Measurement, Params, Tolerance, param, register
from ..stats import mean_sem

__all__ = [
    "semicircle_density", "semicircle_cdf", "semicircle_edge",
    "marchenko_pastur_density", "marchenko_pastur_cdf", "marchenko_pastur_edges",
    "wigner", "sample_covariance", "spiked_wigner", "spiked_covariance", "spiked_wigner_top",
    "top_eigenvalues", "ks_distance", "esd_finite_size_bias", "esd_on_grid", "abs_errors",
    "bbp_wigner_outlier", "bbp_wigner_overlap", "bbp_covariance_outlier",
    "tracy_widom_scale_covariance", "TW1_MEAN", "lanczos_top", "wigner_approximation_top",
]

#: Mean of the GOE Tracy-Widom law F_1 (Tracy and Widom 1996; Bornemann 2010, arXiv 0804.2543).
TW1_MEAN = -1.2065335745820

# --------------------------------------------------------------------------------------------
# Closed forms: densities, distribution functions, edges, outliers


def _check_sigma(sigma: float) -> float:
    return check_positive("sigma", sigma)


def _check_gamma(gamma: float) -> float:
    return check_positive("gamma", gamma)


def _check_n(name: str, n: int) -> int:
    return check_int(name, n, 2, None)


def semicircle_edge(sigma: float = 1.0) -> float:
    """Right edge ``2 sigma`` of the semicircle law of a Wigner matrix of scale ``sigma``."""
    return 2.0 * _check_sigma(sigma)


def semicircle_density(x: Any, sigma: float = 1.0) -> np.ndarray:
    """Semicircle density ``rho(x) = sqrt(4 sigma^2 - x^2) / (2 pi sigma^2)`` on ``|x| <= 2 sigma``.

    >>> round(float(semicircle_density(0.0, 1.0)), 6)
    0.31831
    """
    s = _check_sigma(sigma)
    x = np.asarray(x, dtype=float)
    return np.sqrt(np.clip(4 * s * s - x * x, 0.0, None)) / (2 * math.pi * s * s)


def semicircle_cdf(x: Any, sigma: float = 1.0) -> np.ndarray:
    """Semicircle distribution ``F(x) = 1/2 + (u sqrt(1 - u^2) + arcsin u) / pi``, ``u = x / (2 sigma)``."""
    s = _check_sigma(sigma)
    u = np.clip(np.asarray(x, dtype=float) / (2 * s), -1.0, 1.0)
    return 0.5 + (u * np.sqrt(1.0 - u * u) + np.arcsin(u)) / math.pi


def marchenko_pastur_edges(gamma: float, sigma: float = 1.0) -> tuple[float, float]:
    """Edges ``sigma^2 (1 -+ sqrt gamma)^2`` of the Marchenko-Pastur law at ratio ``gamma = p/n``."""
    g = _check_gamma(gamma)
    s2 = _check_sigma(sigma) ** 2
    return s2 * (1 - math.sqrt(g)) ** 2, s2 * (1 + math.sqrt(g)) ** 2


def marchenko_pastur_density(x: Any, gamma: float, sigma: float = 1.0) -> np.ndarray:
    """Continuous part ``sqrt((b - x)(x - a)) / (2 pi gamma sigma^2 x)`` of the MP law on ``[a, b]``.

    Args:
      x: points; gamma: ratio ``p / n`` (> 0); sigma: entry scale (population covariance sigma^2 I).
    For ``gamma > 1`` the law also has an atom of mass ``1 - 1/gamma`` at 0 (not in this density).
    """
    g = _check_gamma(gamma)
    s2 = _check_sigma(sigma) ** 2
    a, b = marchenko_pastur_edges(g, 1.0)
    x = np.asarray(x, dtype=float) / s2
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.sqrt(np.clip((b - x) * (x - a), 0.0, None)) / (2 * math.pi * g * x)
    return np.where((x > a) & (x < b), d, 0.0) / s2


def marchenko_pastur_cdf(x: Any, gamma: float, sigma: float = 1.0) -> np.ndarray:
    """Marchenko-Pastur distribution function (with the atom at 0 when ``gamma > 1``), in closed form.

    With ``x = m + r cos(phi)``, ``m = 1 + gamma``, ``r = 2 sqrt(gamma)``, the density times ``dx`` is
    ``[(m - r cos phi) - (1 - gamma)^2 / (m + r cos phi)] dphi / (2 pi gamma)``, whose antiderivative is
    ``I(phi) = m phi - r sin phi - 2 |1 - gamma| arctan(sqrt(a/b) tan(phi/2))``; then
    ``F(x) = atom + (I(pi) - I(phi(x))) / (2 pi gamma)``.
    """
    g = _check_gamma(gamma)
    s2 = _check_sigma(sigma) ** 2
    a, b = marchenko_pastur_edges(g, 1.0)
    m, r = 1.0 + g, 2.0 * math.sqrt(g)
    x = np.asarray(x, dtype=float) / s2
    phi = np.arccos(np.clip((x - m) / r, -1.0, 1.0))
    k = math.sqrt(a / b)

    def anti(ph):
        return m * ph - r * np.sin(ph) - 2 * abs(1 - g) * np.arctan2(k * np.sin(ph / 2), np.cos(ph / 2))

    atom = max(0.0, 1.0 - 1.0 / g)
    cont = (anti(math.pi) - anti(phi)) / (2 * math.pi * g)
    return np.where(x < 0, 0.0, atom + cont)


def bbp_wigner_outlier(theta: float, sigma: float = 1.0) -> float:
    """Top eigenvalue of ``theta v v^T + W``: ``theta + sigma^2/theta`` if ``theta > sigma``, else ``2 sigma``."""
    t = check_range("theta", theta, 0.0, None)
    s = _check_sigma(sigma)
    return t + s * s / t if t > s else 2.0 * s


def bbp_wigner_overlap(theta: float, sigma: float = 1.0) -> float:
    """Squared overlap ``|<u, v>|^2`` of the top eigenvector: ``1 - sigma^2/theta^2`` above, 0 below."""
    t = check_range("theta", theta, 0.0, None)
    s = _check_sigma(sigma)
    return 1.0 - (s / t) ** 2 if t > s else 0.0


def bbp_covariance_outlier(ell: float, gamma: float) -> float:
    """Top sample eigenvalue for population covariance ``I + (ell - 1) v v^T`` at ratio ``gamma``.

    ``ell (1 + gamma / (ell - 1))`` when ``ell > 1 + sqrt(gamma)``, else the edge ``(1 + sqrt gamma)^2``.
    """
    l = check_positive("ell", ell)
    g = _check_gamma(gamma)
    c = 1.0 + math.sqrt(g)
    return l * (1.0 + g / (l - 1.0)) if l > c else c * c


def tracy_widom_scale_covariance(p: int, n: int) -> float:
    """Tracy-Widom scale of the top eigenvalue of ``X X^T / n`` (Johnstone 2001, eq. 1.4, divided by n)."""
    p = _check_n("p", p)
    n = _check_n("n", n)
    return (math.sqrt(n) + math.sqrt(p)) * (1 / math.sqrt(n) + 1 / math.sqrt(p)) ** (1 / 3) / n


def esd_finite_size_bias(n: int) -> float:
    """``1/(4n)``: the bound on the ``1/n`` term of the mean ESD of ``n`` eigenvalues of a ``beta = 1``
    ensemble, ``|E F_n(x) - F(x)| = |arcsin((2x - a - b)/(b - a))| / (2 pi n) <= 1/(4n)`` (module docstring).

    >>> esd_finite_size_bias(250)
    0.001
    """
    n = _check_n("n", n)
    return 1.0 / (4.0 * n)


# --------------------------------------------------------------------------------------------
# Samplers (batched: leading axis = independent replicates; numpy or torch through the Backend)


def _rng(backend: Backend | str | None, seed: int | None, rng: Generator | None) -> Generator:
    if rng is not None:
        return rng
    be = get_backend(backend or "numpy") if not isinstance(backend, Backend) else backend
    return be.rng(0 if seed is None else seed)


def wigner(batch: int, n: int, sigma: float = 1.0, *, backend: Backend | str | None = None,
           seed: int | None = None, rng: Generator | None = None) -> Any:
    """``batch`` GOE matrices ``sigma (G + G^T)/sqrt(2n)``, shape ``(batch, n, n)``.

    >>> wigner(2, 3, seed=0).shape
    (2, 3, 3)
    """
    batch = check_int("batch", batch, 1, None)
    n = _check_n("n", n)
    s = _check_sigma(sigma)
    g = _rng(backend, seed, rng)
    xp = g.backend.xp
    G = g.normal((batch, n, n))
    return (G + xp.permute_dims(G, (0, 2, 1))) * (s / math.sqrt(2 * n))


def spiked_wigner(batch: int, n: int, theta: float, sigma: float = 1.0, **kw: Any) -> Any:
    """``theta e_1 e_1^T + W`` (by the rotation invariance of W, ``v = e_1`` loses no generality)."""
    t = check_range("theta", theta, 0.0, None)
    W = wigner(batch, n, sigma, **kw)
    W[:, 0, 0] = W[:, 0, 0] + t
    return W


def _samples(batch: int, p: int, n: int, sigma: float, ell: float, kw: dict) -> Any:
    g = _rng(kw.get("backend"), kw.get("seed"), kw.get("rng"))
    X = g.normal((batch, p, n), scale=sigma)
    if ell != 1.0:
        X[:, 0, :] = X[:, 0, :] * math.sqrt(ell)
    return X, g.backend.xp


def _n_samples(p: int, g: float, gamma: Any) -> int:
    """``n = round(p / gamma)``, which must be >= 2: the error names the user's gamma, not the derived n."""
    n = round(p / g)
    if n < 2:
        raise ValueError(f"gamma={gamma!r} is out of range for p={p}: n = round(p/gamma) = {n} samples, but "
                         f"n must be >= 2, so gamma must be in (0, {p / 1.5:g}]")
    return n


def sample_covariance(batch: int, p: int, gamma: float, sigma: float = 1.0, **kw: Any) -> Any:
    """``batch`` matrices ``X X^T / n`` with ``X`` of shape ``(p, n)``, ``n = round(p / gamma)``."""
    batch = check_int("batch", batch, 1, None)
    p = _check_n("p", p)
    g = _check_gamma(gamma)
    s = _check_sigma(sigma)
    n = _n_samples(p, g, gamma)
    X, xp = _samples(batch, p, n, s, 1.0, kw)
    return X @ xp.permute_dims(X, (0, 2, 1)) / n


def spiked_covariance(batch: int, p: int, gamma: float, ell: float, **kw: Any) -> Any:
    """Sample covariances of ``n = round(p/gamma)`` samples of ``N(0, I + (ell - 1) e_1 e_1^T)``."""
    batch = check_int("batch", batch, 1, None)
    p = _check_n("p", p)
    g = _check_gamma(gamma)
    l = check_positive("ell", ell)
    n = _n_samples(p, g, gamma)
    X, xp = _samples(batch, p, n, 1.0, l, kw)
    return X @ xp.permute_dims(X, (0, 2, 1)) / n


def top_eigenvalues(A: Any, backend: Backend | str | None = None) -> Any:
    """Largest eigenvalue of each symmetric matrix in a stack ``(batch, n, n)`` (one batched call)."""
    xp = (backend if isinstance(backend, Backend) else get_backend(backend or
          ("torch" if hasattr(A, "detach") else "numpy"))).xp
    return xp.linalg.eigvalsh(A)[..., -1]


def ks_distance(eigenvalues: Any, cdf) -> np.ndarray:
    """Kolmogorov-Smirnov distance ``sup_x |F_n(x) - F(x)|`` of each row of ``eigenvalues``.

    ``D = max_i max(i/n - F(x_(i)), F(x_(i)) - (i-1)/n)`` over the sorted row; ``cdf`` is a continuous
    limit distribution function (a numpy callable).
    """
    e = np.sort(Backend.to_numpy(eigenvalues), axis=-1)
    n = e.shape[-1]
    if n < 2:
        raise ValueError(f"eigenvalues has {n} entries per row: n must be in [2, inf)")
    F = cdf(e)
    i = np.arange(1, n + 1)
    return np.maximum((i / n - F).max(axis=-1), (F - (i - 1) / n).max(axis=-1))


# --------------------------------------------------------------------------------------------
# Claims

_Z = 3.0  # z-value of the Monte Carlo allowances of the spike claims (two-sided 0.27% per entry)
#: Family-wise false-failure rate of the ESD claims (Student t, Bonferroni over the grid points).
ESD_ALPHA = 1e-3
#: Grid of the semicircle claim, in units of sigma; of the Marchenko-Pastur claim, in units of sigma^2
#: (fixed, not placed by the closed form: for gamma <= 1 the law lives inside [0, 4 sigma^2]).
SEMICIRCLE_GRID = tuple(np.round(np.linspace(-1.8, 1.8, 19), 12))
MP_GRID = tuple(np.round(np.linspace(0.2, 4.0, 20), 12))
# The claims hold float64 stacks of matrices; a size that needs more than this is refused up front
# (a ValueError naming the parameters, rather than a MemoryError half-way).
_MAX_BYTES = 2 * 2**30


def _check_memory(nbytes: float, what: str) -> None:
    if nbytes > _MAX_BYTES:
        raise ValueError(f"{what} need {nbytes / 2**30:.1f} GiB of float64 arrays: at most "
                         f"{_MAX_BYTES / 2**30:.0f} GiB; lower the size or the replicates")


def abs_errors(predicted: Any, measured: Any) -> np.ndarray:
    """Per-entry ``|measured_k - predicted_k|`` (distribution functions: absolute, not relative)."""
    p = np.asarray(predicted, dtype=float).ravel()
    m = np.asarray(measured, dtype=float).ravel()
    if p.shape != m.shape:
        raise ValueError(f"predicted has shape {p.shape} but measured has {m.shape}: shapes must match")
    return np.abs(m - p)


def esd_on_grid(eigenvalues: Any, x: Any) -> tuple[np.ndarray, np.ndarray]:
    """Mean over rows of the empirical distribution ``F_r(x_k) = #{i: e_ri <= x_k}/n``, and its
    standard error over the rows (replicates), at each grid point ``x_k``."""
    e = np.sort(Backend.to_numpy(eigenvalues), axis=-1)
    if e.ndim != 2 or e.shape[0] < 2:
        raise ValueError(f"eigenvalues has shape {e.shape}: it must be (replicates >= 2, n)")
    x = np.asarray(x, dtype=float)
    F = np.stack([np.searchsorted(row, x, side="right") for row in e]) / e.shape[1]
    return mean_sem(F)


def _esd_tolerance(n: int, m: Measurement) -> Tolerance:
    se = np.asarray(m.stderr, dtype=float)
    R, K = int(m.info["replicates"]), se.size
    t = float(_sps.t.ppf(1.0 - ESD_ALPHA / (2 * K), R - 1))
    bias = esd_finite_size_bias(n)
    return Tolerance(bias + t * se,
                     f"per point: the finite-size bias bound 1/(4n) = {bias:.2g} (the 1/n term of a beta = 1 "
                     f"ensemble's mean ESD, derived from the loop equation) plus t = {t:.2f} replicate standard "
                     f"errors (Student t with {R - 1} dof at {ESD_ALPHA:g}/(2 x {K}): family-wise false-failure "
                     f"rate {ESD_ALPHA:g} over the {K} points)")


def _replicates_field(default: int, domain: tuple):
    return param(default, low=2, high=512, integer=True, domain=domain, doc="independent matrices (replicates)")


@dataclass(frozen=True)
class SemicircleParams(Params):
    sigma: float = param(1.5, low=0, low_open=True, domain=(0.1, 10.0), log=True,
                         doc="Wigner scale sigma (edge 2 sigma)")
    n: int = param(300, low=2, high=4000, integer=True, domain=(100, 500), doc="matrix size n")
    replicates: int = _replicates_field(32, (16, 48))

    def check(self) -> None:
        _check_memory(3.0 * 8 * self.replicates * self.n**2,
                      f"replicates={self.replicates} GOE matrices of size n={self.n}")


def _measure_semicircle(p: SemicircleParams, backend: Backend, seed: int) -> Measurement:
    W = wigner(p.replicates, p.n, p.sigma, rng=backend.rng(seed))
    eig = backend.xp.linalg.eigvalsh(W)
    mean, se = esd_on_grid(eig, p.sigma * np.asarray(SEMICIRCLE_GRID))
    return Measurement(value=mean, stderr=se, info={"n": p.n, "replicates": p.replicates,
                                                    "grid_over_sigma": list(SEMICIRCLE_GRID)})


def _semicircle_on_grid(p, scale: float = 1.0) -> np.ndarray:
    return semicircle_cdf(p.sigma * np.asarray(SEMICIRCLE_GRID), scale * p.sigma)


register(Claim(
    id="rmt.semicircle",
    statement=("The mean empirical spectral distribution of an n x n GOE matrix of scale sigma is the semicircle "
               "law on [-2 sigma, 2 sigma] up to its O(1/n) finite-size term: at the 19 points x = sigma u, "
               "u = -1.8, -1.6, .., 1.8, the ESD averaged over the replicates is within 1/(4n) plus t replicate "
               "standard errors of the semicircle distribution function (t: Student quantile, Bonferroni over the "
               "points, family-wise 1e-3). Not claimed: a bound on one matrix's Kolmogorov-Smirnov distance (the "
               "earlier K_n = (1 + sqrt(2) log(n)/pi)/n was a heuristic, exceeded by single replicates)."),
    reference=("Wigner 1958; the 1/n term from the beta-ensemble loop equation (derived here; cf. Johansson 1998, "
               "Duke Math. J. 91, for the 1/N expansion), counting-function variance Gustavsson 2005"),
    params=SemicircleParams,
    predicted=lambda p: _semicircle_on_grid(p),
    measured=_measure_semicircle,
    error=abs_errors,
    tolerance=lambda p, m, be: _esd_tolerance(p.n, m),
    sweep="sigma", sweep_values=(0.5, 1.5, 4.0),
    summary=lambda v: v[14], summary_label="F(sigma)",
    mutants={
        "no 1/sqrt(2) of the symmetrisation (edge 2 sqrt(2) sigma)": lambda p: _semicircle_on_grid(p, math.sqrt(2)),
        "Gaussian law of the same variance sigma^2": lambda p: _sps.norm.cdf(np.asarray(SEMICIRCLE_GRID)),
        "edge sigma instead of 2 sigma": lambda p: _semicircle_on_grid(p, 0.5),
    },
    closed_forms=("semicircle_cdf",),
))


@dataclass(frozen=True)
class MarchenkoPasturParams(Params):
    gamma: float = param(0.5, low=0, high=1, low_open=True, domain=(0.2, 1.0), log=True,
                         doc="ratio gamma = p / n (the claim is stated for gamma <= 1)")
    p: int = param(300, low=2, high=4000, integer=True, domain=(100, 300), doc="dimension p (number of eigenvalues)")
    sigma: float = param(1.5, low=0, low_open=True, domain=(0.3, 3.0), log=True, doc="entry scale sigma")
    replicates: int = _replicates_field(32, (16, 48))

    def check(self) -> None:
        n = round(self.p / self.gamma)
        _check_memory(8.0 * self.replicates * self.p * (n + 2 * self.p),
                      f"replicates={self.replicates} samples of p={self.p} x n={n} (gamma={self.gamma!r})")


def _mp_ratio(p) -> float:
    """The realised ratio ``p / n``, ``n = round(p / gamma)`` (the simulated matrices have it)."""
    return p.p / round(p.p / p.gamma)


def _measure_mp(p: MarchenkoPasturParams, backend: Backend, seed: int) -> Measurement:
    S = sample_covariance(p.replicates, p.p, p.gamma, p.sigma, rng=backend.rng(seed))
    eig = backend.xp.linalg.eigvalsh(S)
    mean, se = esd_on_grid(eig, p.sigma**2 * np.asarray(MP_GRID))
    return Measurement(value=mean, stderr=se, info={"n_samples": round(p.p / p.gamma), "replicates": p.replicates,
                                                    "grid_over_sigma2": list(MP_GRID)})


def _semicircle_mutant_mp(p, centre: float, radius: float) -> np.ndarray:
    return semicircle_cdf(np.asarray(MP_GRID) - centre, radius / 2)  # in units of sigma^2


register(Claim(
    id="rmt.marchenko_pastur",
    statement=("The mean empirical spectral distribution of X X^T / n (X of shape p x n, entries N(0, sigma^2), "
               "n = round(p/gamma), gamma <= 1) is the Marchenko-Pastur law at ratio p/n on "
               "[sigma^2 (1 - sqrt(p/n))^2, sigma^2 (1 + sqrt(p/n))^2] up to its O(1/p) finite-size term: at the 20 "
               "points x = sigma^2 v, v = 0.2, 0.4, .., 4, the ESD averaged over the replicates is within 1/(4p) "
               "plus t replicate standard errors of the Marchenko-Pastur distribution function (as rmt.semicircle)."),
    reference=("Marchenko and Pastur 1967; the 1/p term as for rmt.semicircle (beta = 1 Laguerre ensemble, "
               "measured in tests/test_rmt.py)"),
    params=MarchenkoPasturParams,
    predicted=lambda p: marchenko_pastur_cdf(p.sigma**2 * np.asarray(MP_GRID), _mp_ratio(p), p.sigma),
    measured=_measure_mp,
    error=abs_errors,
    tolerance=lambda p, m, be: _esd_tolerance(p.p, m),
    sweep="gamma", sweep_values=(0.2, 0.5, 1.0),
    summary=lambda v: v[4], summary_label="F(sigma^2)",
    mutants={
        # S - sigma^2 I as a Wigner matrix: a semicircle with the law's mean sigma^2 and variance gamma sigma^4
        "Wigner approximation (semicircle of mean sigma^2, variance gamma sigma^4)":
            lambda p: _semicircle_mutant_mp(p, 1.0, 2 * math.sqrt(_mp_ratio(p))),
        "semicircle on the Marchenko-Pastur support (right edges, symmetric shape)":
            lambda p: _semicircle_mutant_mp(p, 1 + _mp_ratio(p), 2 * math.sqrt(_mp_ratio(p))),
    },
    closed_forms=("marchenko_pastur_cdf",),
))


#: Width of the excluded critical window, in units of n^(-1/3) (the BBP window scale).
BBP_WINDOW = 2.0


@dataclass(frozen=True)
class BBPWignerParams(Params):
    theta: float = param(3.0, low=0, domain=(0.05, 5.0), doc="spike strength theta")
    sigma: float = param(1.5, low=0, low_open=True, domain=(1.5, 3.0),
                         doc="Wigner scale sigma (domain away from 1, where sigma and sigma^2 coincide; "
                             "sigma is a scale: (theta, sigma) and (theta/sigma, 1) are the same claim)")
    n: int = param(300, low=2, high=4000, integer=True, domain=(150, 400), doc="matrix size n")
    replicates: int = _replicates_field(32, (24, 48))

    def check(self) -> None:
        w = BBP_WINDOW * self.n ** (-1 / 3)
        if abs(self.theta / self.sigma - 1.0) < w:
            raise ValueError(
                f"theta={self.theta!r} is inside the critical window: the claim needs |theta/sigma - 1| >= "
                f"{BBP_WINDOW:g} n^(-1/3) = {w:.3g} (finite-size effects dominate there)")
        _check_memory(3.0 * 8 * self.replicates * self.n**2,
                      f"replicates={self.replicates} spiked matrices of size n={self.n}")


def spiked_wigner_top(batch: int, n: int, theta: float, sigma: float = 1.0, **kw: Any) -> tuple[np.ndarray, np.ndarray]:
    """Simulated top eigenvalue and squared overlap ``|<u, e1>|^2`` of ``batch`` spiked Wigner matrices."""
    A = spiked_wigner(batch, n, theta, sigma, **kw)
    g = _rng(kw.get("backend"), kw.get("seed"), kw.get("rng"))
    vals, vecs = g.backend.xp.linalg.eigh(A)
    return Backend.to_numpy(vals[:, -1]), Backend.to_numpy(vecs[:, 0, -1]) ** 2


def _measure_bbp_wigner(p: BBPWignerParams, backend: Backend, seed: int) -> Measurement:
    lam, ov = spiked_wigner_top(p.replicates, p.n, p.theta, p.sigma, rng=backend.rng(seed))
    (ml, mo), (sl, so) = mean_sem(np.stack([lam, ov], axis=1))
    return Measurement(value=[float(ml), float(mo)], stderr=[float(sl), float(so)],
                       info={"top_eigenvalue_sd": float(lam.std(ddof=1))})


def _tol_bbp_wigner(p: BBPWignerParams, m: Measurement, be: Backend) -> Tolerance:
    se = np.asarray(m.stderr, dtype=float)
    r = min(p.theta, p.sigma) / max(p.theta, p.sigma)
    near = 1.0 / (p.n * (1.0 - r) ** 2)
    edge = abs(TW1_MEAN) * p.n ** (-2 / 3)
    return Tolerance(_Z * se + np.array([p.sigma * max(edge, near), near]),
                     "per entry, 3 standard errors of the replicate mean plus a finite-size bias: for the top "
                     "eigenvalue sigma x the larger of the Tracy-Widom mean |E TW1| n^(-2/3) (at the edge) and "
                     "1/(n (1 - r)^2); for the overlap 1/(n (1 - r)^2), the finite-size scale of an eigenvector "
                     "near the transition (r = min/max of theta, sigma)")


def _bbp_wigner_pair(theta: float, sigma: float) -> list[float]:
    return [bbp_wigner_outlier(theta, sigma), bbp_wigner_overlap(theta, sigma)]


register(Claim(
    id="rmt.bbp_wigner",
    statement=("For theta e1 e1^T + W (W GOE with edge 2 sigma), the top eigenvalue is theta + sigma^2/theta "
               "and its eigenvector's squared overlap with e1 is 1 - sigma^2/theta^2 when theta > sigma; "
               "below, 2 sigma and 0 (replicate means, each within its own allowance). Asserted outside the "
               "critical window |theta/sigma - 1| < 2 n^(-1/3), where finite-size effects dominate and neither "
               "form holds at finite n."),
    reference="Peche 2006 (arXiv math/0411487); Benaych-Georges and Nadakuditi 2011 (arXiv 0910.2120), Sec. 3.1",
    params=BBPWignerParams,
    predicted=lambda p: _bbp_wigner_pair(p.theta, p.sigma),
    measured=_measure_bbp_wigner,
    error=abs_errors,
    tolerance=_tol_bbp_wigner,
    sweep="theta", sweep_values=(0.5, 1.0, 3.0, 4.5),
    summary=lambda v: v[0], summary_label="top eigenvalue",
    mutants={
        # entry variance sigma/n: the law of scale sqrt(sigma)
        "sigma for sigma^2 (entry variance sigma/n)": lambda p: _bbp_wigner_pair(p.theta, math.sqrt(p.sigma)),
        "no 1/sqrt(2) of the symmetrisation (scale sqrt(2) sigma)":
            lambda p: _bbp_wigner_pair(p.theta, math.sqrt(2) * p.sigma),
    },
    closed_forms=("bbp_wigner_outlier", "bbp_wigner_overlap"),
))


@dataclass(frozen=True)
class BBPCovarianceParams(Params):
    ell: float = param(4.0, low=0, low_open=True, domain=(0.2, 8.0), doc="population spike ell")
    gamma: float = param(0.5, low=0, low_open=True, domain=(0.25, 2.0), log=True, doc="ratio gamma = p / n")
    p: int = param(200, low=2, high=4000, integer=True, domain=(100, 250), doc="dimension p")
    replicates: int = _replicates_field(64, (32, 64))

    def check(self) -> None:
        w = BBP_WINDOW * self.p ** (-1 / 3)
        if abs((self.ell - 1.0) / math.sqrt(self.gamma) - 1.0) < w:
            raise ValueError(
                f"ell={self.ell!r} is inside the critical window: the claim needs |(ell - 1)/sqrt(gamma) - 1| >= "
                f"{BBP_WINDOW:g} p^(-1/3) = {w:.3g} (finite-size effects dominate there)")
        n = round(self.p / self.gamma)
        _check_memory(8.0 * self.replicates * self.p * (n + 2 * self.p),
                      f"replicates={self.replicates} samples of p={self.p} x n={n} (gamma={self.gamma!r})")


def _bbp_cov_ratio(p: BBPCovarianceParams) -> float:
    """The realised ratio ``p / n``, ``n = round(p/gamma)`` (the simulated samples have it)."""
    return p.p / max(2, round(p.p / p.gamma))


def _measure_bbp_cov(p: BBPCovarianceParams, backend: Backend, seed: int) -> Measurement:
    S = spiked_covariance(p.replicates, p.p, p.gamma, p.ell, rng=backend.rng(seed))
    lam = Backend.to_numpy(top_eigenvalues(S, backend))
    m, se = mean_sem(lam)
    return Measurement(value=float(m), stderr=float(se), info={"n_samples": round(p.p / p.gamma)})


def _tol_bbp_cov(p: BBPCovarianceParams, m: Measurement, be: Backend) -> Tolerance:
    n = max(2, round(p.p / p.gamma))
    # at the edge the mean top eigenvalue is Johnstone's centring (sqrt(n - 1) + sqrt(p))^2 / n, which
    # differs from its n -> inf form by the shift below, plus E TW1 times his Tracy-Widom scale; an
    # outlier (Gaussian on the scale n^(-1/2), Bai and Yao 2008) has a mean off by O(1/n), allowed
    # (measured value)/n (tests/test_rmt.py::test_bbp_covariance_outlier_bias_is_order_1_over_n). The
    # larger of the two is allowed, so the allowance needs no knowledge of which side of the
    # transition the parameters are on.
    shift = (1.0 + 2.0 * math.sqrt(p.p) * (math.sqrt(n) - math.sqrt(n - 1))) / n
    edge_bias = abs(TW1_MEAN) * tracy_widom_scale_covariance(p.p, n) + shift
    outlier_bias = abs(float(m.value)) / n
    return Tolerance(_Z * (m.stderr or 0.0) + max(edge_bias, outlier_bias),
                     "3 standard errors of the replicate mean, plus the larger finite-size bias: at the edge "
                     "Johnstone's (2001) centring shift and |E TW1| times his Tracy-Widom scale, for an outlier an "
                     "O(1/n) offset allowed (measured value)/n")


def wigner_approximation_top(ell: float, gamma: float) -> float:
    """A plausible wrong formula (the covariance claims' mutant): ``S - I`` read as ``sqrt(gamma) GOE +
    (ell - 1) e1 e1^T``, whose top eigenvalue is ``1 + (ell - 1) + gamma/(ell - 1)`` above
    ``ell - 1 = sqrt(gamma)``, else ``1 + 2 sqrt(gamma)``: off by exactly ``gamma`` everywhere."""
    t, s = ell - 1.0, math.sqrt(gamma)
    return 1.0 + (t + gamma / t if t > s else 2.0 * s)


register(Claim(
    id="rmt.bbp_covariance",
    statement=("For n = round(p/gamma) samples of N(0, I + (ell - 1) e1 e1^T), the mean top eigenvalue of the "
               "sample covariance is ell (1 + c/(ell - 1)) when ell > 1 + sqrt(c), else the edge (1 + sqrt(c))^2, "
               "at the realised ratio c = p/n. Asserted outside the critical window |(ell - 1)/sqrt(gamma) - 1| < "
               "2 p^(-1/3)."),
    reference="Baik, Ben Arous, Peche 2005 (arXiv math/0403022); Baik and Silverstein 2006; Paul 2007",
    params=BBPCovarianceParams,
    predicted=lambda p: bbp_covariance_outlier(p.ell, _bbp_cov_ratio(p)),
    measured=_measure_bbp_cov,
    error=abs_errors,
    tolerance=_tol_bbp_cov,
    sweep="ell", sweep_values=(0.5, 1.1, 3.0, 5.0),
    summary_label="top eigenvalue",
    mutants={
        "Wigner approximation (edge 1 + 2 sqrt(gamma), outlier ell + gamma/(ell - 1))":
            lambda p: wigner_approximation_top(p.ell, _bbp_cov_ratio(p)),
        "top singular value of X/sqrt(n) for the top eigenvalue of X X^T/n":
            lambda p: math.sqrt(bbp_covariance_outlier(p.ell, _bbp_cov_ratio(p))),
    },
    closed_forms=("bbp_covariance_outlier",),
))


# --------------------------------------------------------------------------------------------
# Batched Lanczos: top eigenvalues of a stack of symmetric operators in one array program


def lanczos_top(matvec, v0: Any, iters: int = 40, backend: Backend | str | None = None) -> tuple[Any, Any]:
    """Largest eigenvalue of each operator in a batch by Lanczos with full reorthogonalisation.

    ``matvec(V)`` applies the batch of symmetric operators to ``V`` of shape ``(batch, n)``; ``v0`` is the
    start ``(batch, n)``. Every step is one batched product, so a stack of operators is handled by
    one array program (numpy's batched ``eigvalsh`` loops over the stack internally and costs O(n^3)
    per matrix; this costs ``iters`` products). Returns ``(top Ritz values, residual bounds)``; the
    residual bound ``beta_k |s_k|`` is a rigorous bound on the distance to an eigenvalue.

    References: Lanczos 1950; Golub and Van Loan, Matrix Computations, Sec. 10.1.
    """
    be = backend if isinstance(backend, Backend) else get_backend(
        backend or ("torch" if hasattr(v0, "detach") else "numpy"))
    xp = be.xp
    if v0.ndim != 2:
        raise ValueError(f"v0 has shape {tuple(v0.shape)}: v0 must be (batch, n)")
    n = int(v0.shape[-1])
    # a Krylov space of an n x n operator has dimension <= n: step n + 1 has nothing left to add
    iters = check_int("iters", iters, 1, n)
    nrm0 = xp.linalg.vector_norm(v0, axis=-1, keepdims=True)
    if not bool(xp.all(nrm0 > 0)):
        raise ValueError("v0 has a zero row: every start vector must be nonzero")
    q = v0 / nrm0
    Q = [q]
    alphas, betas = [], []
    eps = float(np.finfo(Backend.to_numpy(v0[:1, :1]).dtype).eps)
    for k in range(iters):
        w = matvec(Q[-1])
        scale = xp.linalg.vector_norm(w, axis=-1)
        a = xp.sum(w * Q[-1], axis=-1)
        alphas.append(a)
        Qs = xp.stack(Q, axis=-1)                                   # (batch, n, k+1)
        # full reorthogonalisation (twice is enough, Kahan-Parlett)
        for _ in range(2):
            w = w - (Qs @ (xp.permute_dims(Qs, (0, 2, 1)) @ w[..., None]))[..., 0]
        b = xp.linalg.vector_norm(w, axis=-1)
        if k == iters - 1:
            break
        # Breakdown: the Krylov space of a row is invariant (exactly, up to the round-off of k + 1
        # projections of a vector of norm ||A q||). Its Ritz values are then exact eigenvalues, and
        # the row restarts from a fresh vector orthogonal to Q with beta = 0 (T becomes block
        # diagonal), so later Ritz values are still eigenvalues of the operator and no 0/0 occurs.
        broken = b <= 10.0 * math.sqrt(k + 1) * eps * scale
        if bool(xp.any(broken)):
            fresh = be.asarray(np.random.default_rng(k).standard_normal(tuple(v0.shape)))
            fresh = fresh.astype(v0.dtype) if be.name == "numpy" else fresh.to(dtype=v0.dtype)
            for _ in range(2):
                fresh = fresh - (Qs @ (xp.permute_dims(Qs, (0, 2, 1)) @ fresh[..., None]))[..., 0]
            w = xp.where(broken[:, None], fresh, w)
            nb = xp.linalg.vector_norm(w, axis=-1)
            betas.append(xp.where(broken, xp.zeros_like(b), b))
            Q.append(w / nb[:, None])
        else:
            betas.append(b)
            Q.append(w / b[:, None])
    T = xp.zeros((v0.shape[0], iters, iters), dtype=v0.dtype) if be.name == "numpy" else \
        xp.zeros((v0.shape[0], iters, iters), dtype=v0.dtype, device=v0.device)
    for i, a in enumerate(alphas):
        T[:, i, i] = a
    for i, bb in enumerate(betas):
        T[:, i, i + 1] = bb
        T[:, i + 1, i] = bb
    evals, evecs = xp.linalg.eigh(T)
    return evals[:, -1], b * xp.abs(evecs[:, -1, -1])
