"""Sympy derivations for solvable.tools.rules.linearized_threshold (the linearized model's mean-square
threshold, reduced to the N x N kernel).

- the residual recursion of minibatch SGD on the linearized model, r' = (I - (eta s / B) K D) r with
  the NTK K = J J^T, derived from f = f_0 + J (theta - theta_0) and the batch-mean squared loss;
- its second-moment recursion, reduced to the N x N kernel,
  M' = M - eta (K_N M + M K_N) + eta^2 [(1 - c_B) K_N M K_N + c_B N K_N Diag(M) K_N],  K_N = s K / N,
  derived by enumerating every batch of a symbolic dataset (with and without replacement);
- the threshold of tools.rules.linearized_threshold checked against the spectral radius of the
  enumerated mean-square map (explicit N^2 x N^2 matrix of all batches) at random kernels.
"""

import itertools

import numpy as np
import sympy as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import brentq

from solvable.models import scaling
from solvable.testing import proves
from solvable.tools import rules as R


def _batches(N, B, sampling):
    if sampling == "with":
        return list(itertools.product(range(N), repeat=B))
    return list(itertools.combinations(range(N), B))


def _D(N, b):
    D = sp.zeros(N, N)
    for i in b:
        D[i, i] += 1
    return D


@proves("rules.linearized_threshold")
def check_linearized_residual_recursion():
    N, P = 3, 2
    J = sp.Matrix(N, P, lambda i, j: sp.Symbol(f"J{i}{j}", real=True))
    th = sp.Matrix(P, 1, lambda i, j: sp.Symbol(f"t{i}", real=True))
    f0 = sp.Matrix(N, 1, lambda i, j: sp.Symbol(f"f{i}", real=True))
    y = sp.Matrix(N, 1, lambda i, j: sp.Symbol(f"y{i}", real=True))
    eta, s = sp.symbols("eta s", positive=True)
    f = f0 + J * th
    for b in _batches(N, 2, "with"):
        B = len(b)
        loss = sum(s / 2 * (f[i] - y[i]) ** 2 for i in b) / B
        grad = sp.Matrix([sp.diff(loss, t) for t in th])
        r = f - y
        r_next = (f0 + J * (th - eta * grad)) - y
        assert sp.expand(r_next - (sp.eye(N) - eta * s / B * J * J.T * _D(N, b)) * r) == sp.zeros(N, 1)


@proves("rules.linearized_threshold")
def check_kernel_second_moment_recursion():
    N = 3
    K = sp.Matrix(N, N, lambda i, j: sp.Symbol(f"k{min(i, j)}{max(i, j)}", real=True))
    M = sp.Matrix(N, N, lambda i, j: sp.Symbol(f"m{min(i, j)}{max(i, j)}", real=True))
    eta, s = sp.symbols("eta s", positive=True)
    for sampling in ("with", "without"):
        for B in (1, 2):
            bs = _batches(N, B, sampling)
            E = sp.zeros(N, N)
            for b in bs:
                A = sp.eye(N) - eta * s / B * K * _D(N, b)
                E += A * M * A.T
            E /= len(bs)
            c = sp.Rational(scaling.batch_noise_factor(B, N, sampling)).limit_denominator(1000)
            KN = s * K / N
            Mdiag = sp.diag(*[M[i, i] for i in range(N)])
            closed = M - eta * (KN * M + M * KN) + eta**2 * ((1 - c) * KN * M * KN + c * N * KN * Mdiag * KN)
            assert sp.expand(E - closed) == sp.zeros(N, N), (sampling, B)


@proves("rules.linearized_threshold")
def check_two_layer_ntk_and_mse_curvature():
    """The claim's kernel: for f(x) = a^T tanh(W x / sqrt(d)) / sqrt(m) the NTK derived symbolically
    (sum over all parameters of df(x_i) df(x_j)) equals tools.rules.ntk_gram at random parameters, and
    MSELoss's per-example curvature d^2 (f - y)^2 / df^2 is s = 2 (the factor the claim's mutant drops)."""
    m, d, N = 2, 2, 3
    W = sp.Matrix(m, d, lambda i, j: sp.Symbol(f"w{i}{j}", real=True))
    a = sp.Matrix(m, 1, lambda i, j: sp.Symbol(f"a{i}", real=True))
    xs = [sp.Matrix(d, 1, lambda i, j: sp.Symbol(f"x{n}{i}", real=True)) for n in range(N)]
    theta = list(W) + list(a)
    fs = [sum(a[k] * sp.tanh((W[k, :] * x)[0] / sp.sqrt(d)) for k in range(m)) / sp.sqrt(m) for x in xs]
    grads = [[sp.diff(f, t) for t in theta] for f in fs]
    Ksym = sp.Matrix(N, N, lambda i, j: sum(gi * gj for gi, gj in zip(grads[i], grads[j])))
    syms = theta + [v for x in xs for v in x]
    Kf = sp.lambdify(syms, Ksym, "numpy")
    g = np.random.default_rng(0)
    net = R.TwoLayer(d, m).double()
    X = g.standard_normal((N, d))
    with torch.no_grad():
        net.W.copy_(torch.tensor(g.standard_normal((m, d))))
        net.a.copy_(torch.tensor(g.standard_normal(m)))
    vals = list(net.W.detach().numpy().ravel()) + list(net.a.detach().numpy()) + list(X.ravel())
    np.testing.assert_allclose(R.ntk_gram(net, torch.tensor(X)), np.array(Kf(*vals), dtype=float), rtol=1e-10)
    f, y = sp.symbols("f y", real=True)
    assert sp.diff((f - y) ** 2, f, 2) == 2
    assert R.loss_curvature(torch.nn.MSELoss(), torch.zeros(1)) == 2.0


def _enumerated_radius(K, B, sampling, eta):
    """Spectral radius of M -> E[A_b M A_b^T] as an explicit N^2 x N^2 matrix (all batches, s = 1)."""
    N = K.shape[0]
    bs = _batches(N, B, sampling)
    T = np.zeros((N * N, N * N))
    for b in bs:
        D = np.zeros((N, N))
        for i in b:
            D[i, i] += 1
        A = np.eye(N) - eta / B * K @ D
        T += np.kron(A, A)
    return float(np.max(np.abs(np.linalg.eigvals(T / len(bs)))))


@proves("rules.linearized_threshold")
@settings(max_examples=8, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from([(4, 1), (4, 2), (5, 2), (5, 5)]), st.sampled_from(["with", "without"]))
def check_linearized_threshold_is_the_enumerated_spectral_radius(seed, NB, sampling):
    N, B = NB
    g = np.random.default_rng(seed)
    Jm = g.standard_normal((N, N + 2)) * g.uniform(0.3, 2.0, N + 2)
    K = Jm @ Jm.T
    half_sq = lambda o, y: ((o - y) ** 2).mean() / 2          # noqa: E731  (s = 1)
    data = (torch.zeros(N, 1, dtype=torch.float64), torch.zeros(N, 1, dtype=torch.float64))
    got = float(R.linearized_threshold(None, half_sq, data, [B], sampling, gram=K)[0])
    hi = 2.0 / (np.linalg.eigvalsh(K)[-1] / N) * 1.0001
    root = brentq(lambda e: _enumerated_radius(K, B, sampling, e) - 1.0, 1e-6 * hi, hi, xtol=1e-14, rtol=1e-12)
    assert abs(got - root) <= 1e-7 * root, (got, root)
