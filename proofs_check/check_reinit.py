"""Re-initialization of a diagonal linear network: the unbalanced flow's limit derived (sympy).

- The flow ``u' = -2 u g``, ``v' = 2 v g`` conserves ``u v``; it integrates to ``u = u0 e^{-2G}``,
  ``v = v0 e^{2G}`` (checked by differentiation), so ``beta = u^2 - v^2 = 2 a sinh(phi - 4G)`` with
  ``a = u0 v0``, ``phi = log(u0/v0)``.
- ``d/dbeta [a q(beta/a) - phi beta] = asinh(beta/(2a)) - phi``; at the flow's beta it equals
  ``-4G``, in range(X^T) since ``G = int X^T r / n``: the KKT conditions of the tilted problem;
  ``reinit.tilted_bias_solution`` is checked against them (stationarity on null(X), interpolation).
- Phase 1's factors: ``u v = alpha^2``, ``u^2 - v^2 = beta1`` solved for the positive root, against
  ``reinit.phase1_factors``.

``reinit.layerwise`` (a measured claim; what is derived is what the recipe does to the quantities it
is judged by):
- the normalized margin ``min_i y_i f(x_i) / prod_l ||W_l||_F`` of a bias-free ReLU net is invariant
  under ``W_l -> c_l W_l`` (``c_l > 0``): derived with ``relu(e) = (e + |e|)/2`` on symbolic weights;
- per activation region ``f`` is multilinear and ``<W_l, df/dW_l> = f`` for every layer (all 16
  masks of a (2, 2, 2, 1) net), so under gradient flow ``d/dt ||W_l||^2`` is the same for all layers:
  the differences are invariants, which a re-draw of the upper layers resets; checked on ``gd_mlp``
  (drift first order in the step) and on ``layerwise_schedule``'s re-drawn layers.
"""

from __future__ import annotations

import numpy as np
import sympy as sp

from solvable.models import dln, reinit
from solvable.testing import proves

t, beta, a, phi, G, al, b1 = sp.symbols("t beta a phi G alpha beta1", real=True)
u0, v0 = sp.symbols("u0 v0", positive=True)


def _q(z):
    return 2 - sp.sqrt(4 + z ** 2) + z * sp.asinh(z / 2)


@proves("reinit.dln_shape")
def check_tilted_limit_from_the_flow():
    g = sp.Function("g")(t)
    Gt = sp.Integral(g, t)
    u = u0 * sp.exp(-2 * Gt)
    v = v0 * sp.exp(2 * Gt)
    # u, v solve the flow and conserve u v
    assert sp.simplify(sp.diff(u, t) + 2 * u * g) == 0
    assert sp.simplify(sp.diff(v, t) - 2 * v * g) == 0
    assert sp.simplify(u * v - u0 * v0) == 0
    # beta = u^2 - v^2 = 2 a sinh(phi - 4 G)
    bflow = (u0 ** 2 * sp.exp(-4 * G) - v0 ** 2 * sp.exp(4 * G))
    tilted = 2 * (u0 * v0) * sp.sinh(sp.log(u0 / v0) - 4 * G)
    assert sp.simplify((bflow - tilted).rewrite(sp.exp)) == 0
    # gradient of the tilted potential
    apos = sp.symbols("a", positive=True)
    pot = apos * _q(beta / apos) - phi * beta
    dpot = sp.simplify(sp.diff(pot, beta))
    assert sp.simplify(dpot - (sp.asinh(beta / (2 * apos)) - phi)) == 0
    # at the flow's beta it is -4G (asinh(sinh(w)) = w, checked at sample points)
    at_flow = dpot.subs(beta, 2 * apos * sp.sinh(phi - 4 * G))
    for vals in [{apos: 0.3, phi: -1.1, G: 0.4}, {apos: 2.0, phi: 0.7, G: -0.9}]:
        assert abs(float(at_flow.subs(vals)) - float((-4 * G).subs(vals))) < 1e-12
    # the closed form meets these KKT conditions: interpolates, gradient in range(X^T)
    X, y, _ = dln.make_data(6, 14, 2, 3)
    rng = np.random.default_rng(0)
    av, ph = rng.uniform(0.1, 1.0, 14), rng.uniform(-1.5, 1.5, 14)
    bsol = reinit.tilted_bias_solution(X, y, av, ph)
    f = sp.lambdify((beta, apos, phi), dpot, "numpy")
    grad = f(bsol, av, ph)
    P = np.eye(14) - np.linalg.pinv(X) @ X
    assert np.linalg.norm(P @ grad) < 1e-8 * np.linalg.norm(grad)
    assert np.linalg.norm(X @ bsol - y) < 1e-9 * np.linalg.norm(y)
    # phase-1 factors: u v = alpha^2, u^2 - v^2 = beta1, u > 0
    us = sp.symbols("u", positive=True)
    sols = sp.solve(sp.Eq(us ** 2 - (al ** 2 / us) ** 2, b1), us)
    for bv, alv in [(0.7, 0.3), (-1.2, 0.5), (0.0, 2.0)]:
        roots = [complex(s.subs({b1: bv, al: alv})) for s in sols]
        real_pos = [r.real for r in roots if abs(r.imag) < 1e-12 and r.real > 0]
        uu, vv = reinit.phase1_factors(bv, alv)
        assert any(abs(float(uu) - r) < 1e-12 for r in real_pos)
        assert abs(float(uu * vv) - alv ** 2) < 1e-14


# ---------------------------------------------------------------------------------------------
# reinit.layerwise: what the layer-wise recipe does to the margin normalization and to the flow's
# invariants of a bias-free ReLU MLP f = W3 relu(W2 relu(W1 x)).

def _relu_net(Ws, x, masks=None):
    """f for symbolic weights; ``masks`` fixes the activation pattern (one linear region)."""
    h = x
    for l, W in enumerate(Ws):
        z = W * h
        if l < len(Ws) - 1:
            if masks is None:
                z = z.applyfunc(lambda e: (e + sp.Abs(e)) / 2)  # relu(e) = max(0, e)
            else:
                z = sp.diag(*masks[l]) * z
        h = z
    return h[0, 0]


def _sym_weights(widths, tag):
    return [sp.Matrix(widths[l + 1], widths[l], lambda i, j: sp.Symbol(f"{tag}{l}_{i}{j}", real=True))
            for l in range(len(widths) - 1)]


@proves("reinit.layerwise")
def check_normalized_margin_is_invariant_under_layer_rescaling():
    """relu(c z) = c relu(z) for c > 0, so f(c_1 W_1, ..., c_L W_L) = (prod c_l) f(W) and
    ||c_l W_l||_F = c_l ||W_l||_F: the normalized margin min_i y_i f(x_i) / prod_l ||W_l||_F does not
    change. Derived on a (2, 2, 2, 1) net with symbolic weights, input and scales; then checked on
    ``reinit.normalized_margin`` (which the claim measures)."""
    import torch

    widths = (2, 2, 2, 1)
    Ws = _sym_weights(widths, "w")
    x = sp.Matrix(2, 1, sp.symbols("x0 x1", real=True))
    cs = sp.symbols("c1:4", positive=True)
    z = sp.Symbol("z", real=True)
    relu = sp.Lambda(z, (z + sp.Abs(z)) / 2)
    assert all(relu(v) == sp.Max(0, v) for v in (-2, 0, 3))
    assert sp.simplify(relu(cs[0] * z) - cs[0] * relu(z)) == 0
    f = _relu_net(Ws, x)
    fs = _relu_net([c * W for c, W in zip(cs, Ws)], x)
    # pull the positive scales out of every Max (the identity above, applied inside out)
    assert sp.simplify(fs - cs[0] * cs[1] * cs[2] * f) == 0
    for c, W in zip(cs, Ws):
        nW = sp.sqrt(sum(e ** 2 for e in W))
        assert sp.simplify(sp.sqrt(sum((c * e) ** 2 for e in W)) - c * nW) == 0
    # the implementation: rescaling every layer leaves normalized_margin unchanged
    g = torch.Generator().manual_seed(0)
    Wt = reinit.init_mlp((5, 7, 6, 1), 3, 1)
    X = torch.randn(3, 11, 5, generator=g, dtype=torch.float64)
    y = torch.sign(torch.randn(3, 11, generator=g, dtype=torch.float64))
    scaled = [W * c for W, c in zip(Wt, (0.3, 4.0, 2.5))]
    a, b = reinit.normalized_margin(Wt, X, y), reinit.normalized_margin(scaled, X, y)
    assert torch.allclose(a, b, rtol=1e-12, atol=0)


@proves("reinit.layerwise")
def check_gradient_flow_balances_the_layers_and_reinit_resets_the_invariants():
    """In every activation region f = W3 D2 W2 D1 W1 x is multilinear, and Euler's identity holds per
    layer: <W_l, df/dW_l> = f (derived for all 16 masks of a (2, 2, 2, 1) net). Under the gradient flow
    W_l' = -dL/dW_l of L = (1/n) sum_i l(y_i f(x_i)) it gives
        d/dt ||W_l||_F^2 = -(2/n) sum_i l'(y_i f_i) y_i f_i,
    the same for every layer: the differences ||W_{l+1}||^2 - ||W_l||^2 are invariants of the flow
    (Du, Hu, Lee 2018, arXiv 1806.00900). Layer-wise re-initialization at stage k resets the invariants
    that involve re-drawn layers (D_l for l >= k) to those of fresh draws; D_l for l < k are kept.
    Checked on ``reinit.gd_mlp`` with a small step: the invariants drift by O(eta) while the norms grow,
    and ``layerwise_schedule``'s re-drawn layers carry the fresh D_l."""
    import itertools

    import torch

    widths = (2, 2, 2, 1)
    Ws = _sym_weights(widths, "w")
    x = sp.Matrix(2, 1, sp.symbols("x0 x1", real=True))
    for bits in itertools.product((0, 1), repeat=4):
        masks = [bits[:2], bits[2:]]
        f = _relu_net(Ws, x, masks)
        for W in Ws:
            euler = sum(e * sp.diff(f, e) for e in W)
            assert sp.expand(euler - f) == 0
    # the flow: dL/dW_l = (1/n) sum_i l'_i y_i df_i/dW_l, with two points and symbolic l'_i
    n = 2
    xs = [sp.Matrix(2, 1, sp.symbols(f"x{i}_0 x{i}_1", real=True)) for i in range(n)]
    lp = sp.symbols("lp0:2", real=True)
    yy = sp.symbols("y0:2", real=True)
    masks = [[(1, 0), (1, 1)], [(1, 1), (0, 1)]]  # each point in its own region
    fs = [_relu_net(Ws, xs[i], masks[i]) for i in range(n)]
    rates = []
    for W in Ws:
        rate = sum(-2 * e * sum(lp[i] * yy[i] * sp.diff(fs[i], e) for i in range(n)) / n for e in W)
        rates.append(sp.expand(rate))
    common = sp.expand(-sp.Rational(2, n) * sum(lp[i] * yy[i] * fs[i] for i in range(n)))
    for rate in rates:
        assert sp.expand(rate - common) == 0
    # the implementation: small-step GD keeps D_l = ||W_{l+1}||^2 - ||W_l||^2 up to O(eta)
    X, y, _, _ = reinit.teacher_data(4, 40, 1, 6, 4, 2)
    W0 = reinit.init_mlp((6, 10, 10, 1), 4, 3)

    def sq(Ws):
        return torch.stack([(W.flatten(1) ** 2).sum(1) for W in Ws])

    for lr in (0.02, 0.01):
        W1, div, _ = reinit.gd_mlp(W0, X, y, int(4 / lr), lr)
        assert not div
        growth = (sq(W1) - sq(W0))[0]
        drift = ((sq(W1) - sq(W0)) - growth).abs().max()
        # the common change is O(1) (early on it can be negative: sum_i l'_i y_i f_i > 0 while
        # points are misclassified), the drift of the invariants a small fraction of it
        assert float(drift) < 0.1 * float(growth.abs().max())
        if lr == 0.02:
            drift_big = float(drift)
        else:
            # first order in eta: halving the step about halves the drift
            assert 0.35 < float(drift) / drift_big < 0.65
    # the re-drawn layers carry fresh invariants: stage k=1 keeps W_1 and resets W_2, W_3
    run = reinit.layerwise_schedule(X, y, (6, 10, 10, 1), 1, 5, 0.05, 3, snapshots=True)
    before = run["stages"][1]["before"]
    fresh = reinit.init_mlp((6, 10, 10, 1), 4, 3 + 1000)
    assert all(torch.equal(a, b) for a, b in zip(before[1:], fresh[1:]))
    assert torch.equal(before[0], run["stages"][0]["after"][0])
