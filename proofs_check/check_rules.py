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


# --------------------------------------------------------------------------------------------
# rules.noise_scale_critical_batch and rules.adam_sqrt_network (Section B of solvable.models.rules)

from solvable.models import rules as MR  # noqa: E402
from solvable.testing import proves  # noqa: E402


def _batches_with(N, B):
    return list(itertools.product(range(N), repeat=B))


@proves("rules.noise_scale_critical_batch")
def check_expected_one_step_change_of_a_quadratic_from_enumerated_batches():
    """E_b L(theta - eta g_b) - L(theta) for a quadratic L = (1/N) sum_i l_i, l_i = 1/2 theta^T H theta - a_i^T theta
    (per-example gradients g_i = H theta - a_i), enumerated over every batch of B draws with replacement:
    -eta |G|^2 + eta^2/2 (G^T H G + tr(H Sigma)/B) with Sigma = (1/N) sum_i (g_i - G)(g_i - G)^T (the 1/N
    of the noise scale's covariance, not a sum over examples)."""
    N, P = 3, 2
    eta = sp.Symbol("eta", positive=True)
    h = sp.Matrix(2, 2, lambda i, j: sp.Symbol(f"h{min(i, j)}{max(i, j)}", real=True))
    th = sp.Matrix(P, 1, lambda i, j: sp.Symbol(f"t{i}", real=True))
    a = [sp.Matrix(P, 1, lambda i, j, k=k: sp.Symbol(f"a{k}{i}", real=True)) for k in range(N)]
    L = lambda t: (t.T * h * t)[0] / 2 - sum(((ak.T * t)[0] for ak in a)) / N  # noqa: E731
    g = [h * th - ak for ak in a]
    G = sum(g, sp.zeros(P, 1)) / N
    Sigma = sum(((gi - G) * (gi - G).T for gi in g), sp.zeros(P, P)) / N
    for B in (1, 2, 3):
        bs = _batches_with(N, B)
        E = sum(L(th - eta * sum((g[i] for i in b), sp.zeros(P, 1)) / B) for b in bs) / len(bs) - L(th)
        closed = -eta * (G.T * G)[0] + eta**2 / 2 * ((G.T * h * G)[0] + (h * Sigma).trace() / B)
        assert sp.expand(E - closed) == 0, B


@proves("rules.noise_scale_critical_batch")
def check_mccandlish_rule_from_the_second_order_loss_change():
    """Minimising the expected change over eta gives eta_opt(B) = eta_max / (1 + B_crit/B) with
    eta_max = |G|^2 / G^T H G and B_crit = tr(H Sigma) / G^T H G; the change is <= 0 (the claim's E L_1 <= L_0)
    iff eta <= 2 eta_opt(B), the same bend; with H = I, B_crit = tr(Sigma)/|G|^2 = B_noise."""
    eta, B, g2, gHg, trHS, trS = sp.symbols("eta B g2 gHg trHS trS", positive=True)
    dL = -eta * g2 + eta**2 / 2 * (gHg + trHS / B)
    opt = sp.solve(sp.diff(dL, eta), eta)
    assert len(opt) == 1
    eta_max, B_crit = g2 / gHg, trHS / gHg
    assert sp.simplify(opt[0] - eta_max / (1 + B_crit / B)) == 0
    zeros = [z for z in sp.solve(dL, eta) if z != 0]
    assert len(zeros) == 1 and sp.simplify(zeros[0] - 2 * opt[0]) == 0
    # H = I: G^T H G = |G|^2 and tr(H Sigma) = tr(Sigma)
    assert sp.simplify(B_crit.subs({gHg: g2, trHS: trS}) - trS / g2) == 0
    # the bend form used by the fit: 1/eta_opt is affine in 1/B, and gamma = 1 is McCandlish's exponent
    assert sp.simplify(1 / opt[0] - (1 / eta_max) * (1 + B_crit / B)) == 0
    Bs = [1, 2, 4, 8, 16, 32, 64]
    em, bc, gam = MR.fit_bend(Bs, [float(2 * (3.0 / 5.0) / (1 + 7.0 / b)) for b in Bs])
    assert abs(bc - 7.0) < 1e-6 and abs(gam - 1.0) < 1e-6 and abs(em - 1.2) < 1e-6


@settings(max_examples=6, deadline=None)
@given(st.integers(0, 10_000))
@proves("rules.noise_scale_critical_batch")
def check_noise_scale_of_linear_regression_in_closed_form(seed):
    """For f(x) = w^T x with loss (f - y)^2 / 2 the per-example gradient is r_i x_i (r = Xw - y): sympy gives
    B_noise = ((1/N) sum_i r_i^2 |x_i|^2 - |X^T r / N|^2) / |X^T r / N|^2, checked against tools.rules.noise_scale."""
    N, d = 3, 2
    w = sp.Matrix(d, 1, lambda i, j: sp.Symbol(f"w{i}", real=True))
    Xs = sp.Matrix(N, d, lambda i, j: sp.Symbol(f"x{i}{j}", real=True))
    ys = sp.Matrix(N, 1, lambda i, j: sp.Symbol(f"y{i}", real=True))
    gi = [sp.Matrix([sp.diff(((Xs[i, :] * w)[0] - ys[i]) ** 2 / 2, v) for v in w]) for i in range(N)]
    r = Xs * w - ys
    for i in range(N):
        assert sp.expand(gi[i] - r[i] * Xs[i, :].T) == sp.zeros(d, 1)
    G = sum(gi, sp.zeros(d, 1)) / N
    trS = sum(((g - G).T * (g - G))[0] for g in gi) / N
    closed = (sum(r[i] ** 2 * (Xs[i, :] * Xs[i, :].T)[0] for i in range(N)) / N - (G.T * G)[0]) / (G.T * G)[0]
    assert sp.simplify(trS / (G.T * G)[0] - closed) == 0
    rng = np.random.default_rng(seed)
    Nn, dn = 12, 3
    X = rng.standard_normal((Nn, dn))
    y = rng.standard_normal(Nn)
    wv = rng.standard_normal(dn)
    net = torch.nn.Linear(dn, 1, bias=False).double()
    with torch.no_grad():
        net.weight.copy_(torch.tensor(wv)[None, :])
    half_sq = lambda o, t: ((o - t) ** 2).mean() / 2          # noqa: E731
    got = R.noise_scale(net, half_sq, (torch.tensor(X), torch.tensor(y)[:, None]))["B_noise"]
    rv = X @ wv - y
    Gv = X.T @ rv / Nn
    want = (np.mean(rv**2 * np.sum(X**2, axis=1)) - Gv @ Gv) / (Gv @ Gv)
    assert abs(got - want) <= 1e-10 * want


@proves("rules.adam_sqrt_network")
def check_adam_noise_dominated_second_moment_and_effective_rate():
    """Enumerating batches with replacement, E g_B^2 = V/B + G^2 per coordinate (V the per-example variance);
    at a noisy minimum (G = 0) Adam's step eta g / sqrt(v) is SGD with learning rate eta sqrt(B / V)."""
    N = 3
    gs = sp.symbols("g0:3", real=True)
    eta, V = sp.symbols("eta V", positive=True)
    G = sum(gs) / N
    Vexpr = sum((x - G) ** 2 for x in gs) / N
    for B in (1, 2, 3):
        bs = _batches_with(N, B)
        E2 = sum((sum(gs[i] for i in b) / B) ** 2 for b in bs) / len(bs)
        assert sp.expand(E2 - (Vexpr / B + G**2)) == 0, B
    Bs = sp.Symbol("B", positive=True)
    assert sp.simplify(eta / sp.sqrt(V / Bs) - eta * sp.sqrt(Bs / V)) == 0


@proves("rules.adam_sqrt_network")
def check_square_root_exponent_from_the_stationary_excess_loss():
    """1-D quadratic l = h theta^2/2, noisy gradient h theta + xi with Var xi = V/B. SGD at rate e: the stationary
    variance of theta' = (1 - e h) theta - e xi solves s = (1 - e h)^2 s + e^2 V/B; the excess loss h s / 2
    reaching a fixed level L fixes the largest rate. Adam's rate e = eta sqrt(B/V): d log eta*/d log B -> 1/2 as
    e h -> 0 (SGD, e = eta: -> 1, the linear rule); the bias-corrected first Adam step eta m1/sqrt(v1) =
    eta g/|g| does not depend on B (the exponent 0 above the bend)."""
    e, h, V, B, L, s, eta, g = sp.symbols("e h V B L s eta g", positive=True)
    s_st = sp.solve(sp.Eq(s, (1 - e * h) ** 2 * s + e**2 * V / B), s)[0]
    excess = sp.simplify(h * s_st / 2)
    assert sp.simplify(excess - e * V / (2 * B * (2 - e * h))) == 0
    # leading order in e h: excess = e V / (4 B)
    lead = sp.limit(excess / e, e, 0)
    assert sp.simplify(lead - V / (4 * B)) == 0
    adam = sp.simplify(lead * eta * sp.sqrt(B / V))   # excess at e = eta sqrt(B/V)
    eta_star_adam = sp.solve(sp.Eq(adam, L), eta)[0]
    eta_star_sgd = sp.solve(sp.Eq(lead * eta, L), eta)[0]
    exp_adam = sp.simplify(B * sp.diff(sp.log(eta_star_adam), B))
    exp_sgd = sp.simplify(B * sp.diff(sp.log(eta_star_sgd), B))
    below, above = MR.adam_sqrt_exponents()
    assert exp_adam == sp.Rational(1, 2) and sp.nsimplify(below) == exp_adam
    assert exp_sgd == 1
    # first bias-corrected Adam step (m_0 = v_0 = 0): m1_hat = g, v1_hat = g^2 for every beta1, beta2
    b1, b2 = sp.symbols("beta1 beta2", positive=True)
    m1 = ((1 - b1) * g) / (1 - b1)
    v1 = ((1 - b2) * g**2) / (1 - b2)
    step = sp.simplify(eta * m1 / sp.sqrt(v1))
    assert step == eta and sp.diff(step, B) == 0 and above == 0.0
