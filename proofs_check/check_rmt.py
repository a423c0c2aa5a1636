"""Sympy derivations for solvable.models.rmt: densities and edges from the self-consistent equations of the
Stieltjes transform, outliers from the spike equations G(z) = 1/theta (additive) and
z G(z) - 1 = 1/(ell - 1) (multiplicative), each compared with solvable's closed forms."""

import math

import numpy as np
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from solvable.models import rmt
from solvable.testing import proves

z, s, g, th, l = sp.symbols("z sigma gamma theta ell", positive=True)
G = sp.symbols("G")
x = sp.symbols("x", real=True)

# Wigner: the Schur complement of one row gives G = 1/(z - sigma^2 G) as n -> inf.
G_SC = [r for r in sp.solve(sp.Eq(G, 1 / (z - s**2 * G)), G)]
# the branch with G ~ 1/z at infinity
G_SC = [r for r in G_SC if sp.limit(r * z, z, sp.oo) == 1][0]

# Sample covariance S = X X^T / n (p x n), gamma = p/n: G = 1/(z - 1/(1 + gamma z G)... ) reduces to
# the quadratic gamma z G^2 - (z + gamma - 1) G + 1 = 0 (Marchenko-Pastur self-consistent equation).
MP_EQ = g * z * G**2 - (z + g - 1) * G + 1
G_MP = [r for r in sp.solve(MP_EQ, G) if sp.limit(r * z, z, sp.oo) == 1][0]


def _density_from_G(quadratic, pts, subs):
    """-Im G(x + i0)/pi: at z = x + i eps take the root of the derived quadratic in G with Im G < 0
    (a Stieltjes transform maps the upper half plane to the lower one)."""
    poly = sp.Poly(quadratic.subs(subs), G)
    coeffs = [sp.lambdify(z, c, "numpy") for c in poly.all_coeffs()]
    out = []
    for p0 in pts:
        zz = complex(p0, 1e-13)
        roots = np.roots([complex(c(zz)) for c in coeffs])
        out.append(-roots[np.argmin(roots.imag)].imag / np.pi)
    return np.array(out)


SC_EQ = s**2 * G**2 - z * G + 1


def _density_expr(quadratic):
    """-Im G(x + i0) / pi on the bulk, in closed form from the derived quadratic a G^2 + b G + c = 0:
    where the discriminant is negative the roots are (-b +- i sqrt(-disc)) / (2a), so the branch with
    Im G < 0 gives sqrt(-disc) / (2 |a| pi) (a > 0 on the bulk for both laws here)."""
    poly = sp.Poly(quadratic, G)
    lead = poly.LC()
    return sp.sqrt(-sp.discriminant(quadratic, G)) / (2 * lead * sp.pi)


@proves("rmt.semicircle")
@settings(max_examples=5, deadline=None)
@given(st.floats(0.2, 5.0))
def check_semicircle_density_edges_and_cdf(sigma):
    # edges: where the discriminant of the quadratic for G vanishes
    disc = sp.discriminant(SC_EQ, G)
    edges = sorted(float(e.subs(s, sigma)) for e in sp.solve(sp.Eq(disc, 0), z))
    assert math.isclose(edges[-1], rmt.semicircle_edge(sigma), rel_tol=1e-12)
    pts = np.linspace(-1.9 * sigma, 1.9 * sigma, 7)
    dens = _density_from_G(SC_EQ, pts, {s: sigma})
    np.testing.assert_allclose(rmt.semicircle_density(pts, sigma), dens, rtol=1e-8)
    # the distribution function: integrate the density derived from the quadratic (sympy), after
    # checking that it is the same branch as the root-finding above at every point
    rho = _density_expr(SC_EQ).subs(z, x)
    f = sp.lambdify(x, rho.subs(s, sigma), "numpy")
    np.testing.assert_allclose(f(pts), dens, rtol=1e-8)
    F = sp.integrate(rho.subs(s, sp.nsimplify(sigma)), (x, -2 * sp.nsimplify(sigma), x))
    for p0 in pts:
        assert math.isclose(float(F.subs(x, p0)), float(rmt.semicircle_cdf(p0, sigma)), abs_tol=1e-12)


@proves("rmt.semicircle")
def check_semicircle_moments_are_catalan():
    # E tr W^{2k} / n -> sigma^{2k} C_k (non-crossing pairings): expand the derived G at infinity,
    # G(1/w)/w = sum_k m_k w^k, and compare with the moments of the closed-form density
    w = sp.symbols("w", positive=True)
    ser = sp.series(G_SC.subs(z, 1 / w) / w, w, 0, 8).removeO()
    xs = np.linspace(-3.0, 3.0, 600001)
    for k in range(4):
        m2k = sp.simplify(ser.coeff(w, 2 * k))
        assert sp.simplify(m2k - sp.catalan(k) * s ** (2 * k)) == 0
        num = np.trapezoid(xs ** (2 * k) * rmt.semicircle_density(xs, 1.5), xs)
        assert math.isclose(num, float(m2k.subs(s, 1.5)), rel_tol=1e-6)


@proves("rmt.marchenko_pastur")
@settings(max_examples=5, deadline=None)
@given(st.floats(0.05, 1.0))
def check_marchenko_pastur_density_edges_and_cdf(gamma):
    disc = sp.discriminant(MP_EQ, G)
    roots = sorted(float(r.subs(g, gamma)) for r in sp.solve(sp.Eq(disc, 0), z))
    a, b = rmt.marchenko_pastur_edges(gamma)
    np.testing.assert_allclose(roots, [a, b], rtol=1e-10, atol=1e-14)
    pts = a + (b - a) * np.array([0.05, 0.2, 0.5, 0.8, 0.95])
    dens = _density_from_G(MP_EQ, pts, {g: gamma})
    np.testing.assert_allclose(rmt.marchenko_pastur_density(pts, gamma), dens, rtol=1e-8)
    # the closed-form distribution function is the integral of the derived density
    import mpmath

    # on the bulk the derived branch is -Im G = sqrt(-disc)/(2 gamma x): integrate it with mpmath
    dens_expr = _density_expr(MP_EQ).subs({g: gamma, z: x})
    f = sp.lambdify(x, dens_expr, "mpmath")
    np.testing.assert_allclose([float(f(p0)) for p0 in pts], dens, rtol=1e-8)
    for p0 in pts[[1, 3]]:
        integral = mpmath.quad(lambda t: mpmath.re(f(t)), [a, p0])
        assert math.isclose(float(integral), float(rmt.marchenko_pastur_cdf(p0, gamma)), abs_tol=1e-8)


@proves("rmt.marchenko_pastur")
def check_marchenko_pastur_moments_are_narayana():
    # E tr S^k / p -> sum_j N(k, j) gamma^(j-1) (Narayana numbers): expand G at infinity
    w = sp.symbols("w")
    ser = sp.series(G_MP.subs(z, 1 / w) / w, w, 0, 5).removeO()  # G(1/w)/w = sum_k m_k w^k
    for k in range(1, 4):
        mk = sp.expand(ser.coeff(w, k))
        nar = sum(sp.binomial(k, j) * sp.binomial(k, j - 1) / k * g ** (j - 1) for j in range(1, k + 1))
        assert sp.simplify(mk - nar) == 0
    # the closed-form density has the same second moment 1 + gamma
    a, b = rmt.marchenko_pastur_edges(0.3)
    xs = np.linspace(a, b, 400001)
    m2 = np.trapezoid(xs**2 * rmt.marchenko_pastur_density(xs, 0.3), xs)
    assert math.isclose(m2, 1.3, rel_tol=1e-5)


@proves("rmt.bbp_wigner")
@settings(max_examples=8, deadline=None)
@given(st.floats(0.1, 6.0), st.floats(0.3, 3.0))
def check_bbp_wigner_outlier_and_overlap(theta, sigma):
    # det(z - W - theta v v^T) = 0  <=>  1 = theta v^T (z - W)^{-1} v  ->  G_sc(z) = 1/theta
    sols = [r for r in sp.solve(sp.Eq(G_SC, 1 / th), z)]
    # G_sc maps (2 sigma, inf) onto (0, 1/sigma): a root outside the bulk exists iff theta > sigma
    G_edge = sp.simplify(G_SC.subs(z, 2 * s))
    assert sp.simplify(G_edge - 1 / s) == 0
    if theta > sigma:
        vals = [float(r.subs({th: theta, s: sigma})) for r in sols]
        out = [v for v in vals if v > 2 * sigma]
        assert len(out) == 1
        assert math.isclose(out[0], rmt.bbp_wigner_outlier(theta, sigma), rel_tol=1e-12)
        # eigenvector overlap |<u, v>|^2 = 1 / (theta^2 G'(z)) in absolute value (residue of the resolvent)
        dG = sp.diff(G_SC, z)
        ov = float((-1 / (th**2 * dG)).subs({th: theta, s: sigma, z: out[0]}))
        assert math.isclose(ov, rmt.bbp_wigner_overlap(theta, sigma), rel_tol=1e-10)
    else:
        # No root outside the bulk: on (2 sigma, inf) the physical G_sc decreases (G' < 0, checked on
        # a grid reaching the edge) from G(2 sigma) = 1/sigma to 0, so its range is (0, 1/sigma),
        # which 1/theta >= 1/sigma misses. The candidate sympy's solve returns is the other branch.
        assert sp.limit(G_SC, z, sp.oo) == 0
        dG = sp.lambdify(z, sp.diff(G_SC, z).subs(s, sigma), "numpy")
        zs = 2 * sigma * (1 + np.logspace(-8, 3, 200))
        assert np.all(dG(zs) < 0)
        assert not (0 < 1 / theta < 1 / sigma)
        Gs = sp.lambdify(z, G_SC.subs(s, sigma), "numpy")
        for r in sols:
            zc = float(r.subs({th: theta, s: sigma}))
            assert zc <= 2 * sigma or abs(Gs(zc) - 1 / theta) > 1e-9 / theta or math.isclose(theta, sigma)
        # hence the top eigenvalue sticks to the edge, and its eigenvector is a bulk one (no outlier
        # to carry an O(1) overlap)
        assert rmt.bbp_wigner_outlier(theta, sigma) == 2 * sigma
        assert rmt.bbp_wigner_overlap(theta, sigma) == 0.0


@proves("rmt.bbp_covariance")
@settings(max_examples=8, deadline=None)
@given(st.floats(0.2, 10.0), st.floats(0.05, 3.0))
def check_bbp_covariance_outlier(ell, gamma):
    # S = Sigma^{1/2} A Sigma^{1/2}, Sigma^{-1} = I - (1 - 1/ell) v v^T: det(z Sigma^{-1} - A) = 0
    # <=> 1 = z (1 - 1/ell) v^T (z - A)^{-1} v  ->  z G_mp(z) = ell/(ell - 1)
    G_spike = l / ((l - 1) * z)
    z_sol = sp.solve(sp.numer(sp.together(MP_EQ.subs(G, G_spike))), z)
    assert len(z_sol) == 1
    z_out = z_sol[0]
    b = (1 + math.sqrt(gamma)) ** 2
    # at the edge the quadratic has a double root G(b) = (b + gamma - 1)/(2 gamma b); z G increases
    # to it as z decreases to b, so the spike equation has a root outside the bulk iff
    # ell/(ell - 1) < b G(b), i.e. ell > ell_c with ell_c/(ell_c - 1) = b G(b)
    coeffs = sp.Poly(MP_EQ, G).all_coeffs()
    G_edge = (-coeffs[1] / (2 * coeffs[0])).subs(z, sp.Float(b, 30)).subs(g, gamma)
    l_c = sp.solve(sp.Eq(l / (l - 1), b * G_edge), l)[0]
    assert math.isclose(float(l_c), 1 + math.sqrt(gamma), rel_tol=1e-10)
    if ell > float(l_c):
        zo = float(z_out.subs({l: ell, g: gamma}))
        assert zo > b
        # the spike's G is the physical branch (the root ~ 1/z at infinity) at z_out
        Gphys = float(G_MP.subs({g: gamma, z: zo}).evalf())
        assert math.isclose(Gphys, ell / ((ell - 1) * zo), rel_tol=1e-9)
        assert math.isclose(zo, rmt.bbp_covariance_outlier(ell, gamma), rel_tol=1e-12)
    else:
        # No root outside the bulk: on (b, inf) the physical z G_mp(z) decreases from b G(b) to 1
        # (checked: its derivative is negative on a grid reaching the edge, its limit at infinity is 1),
        # so its range is (1, b G(b)), which ell/(ell - 1) misses: it is >= b G(b) for 1 < ell <= ell_c
        # and negative for ell < 1.
        assert sp.limit(z * G_MP, z, sp.oo) == 1  # symbolic in gamma: a float gamma gives 1 - 1e-15
        zG = z * G_MP.subs(g, gamma)
        d_zG = sp.lambdify(z, sp.diff(zG, z), "numpy")
        zs = b * (1 + np.logspace(-8, 3, 200))
        assert np.all(d_zG(zs) < 0)
        if ell != 1.0:  # ell = 1: no spike at all
            target = ell / (ell - 1)
            assert not (1 < target < float(b * G_edge))
        assert rmt.bbp_covariance_outlier(ell, gamma) == b


# ---- the finite-size term behind the ESD claims' allowance 1/(4n) ------------------------------
# Loop equation of the beta-ensemble (integration by parts of sum_i d/d lambda_i [f(lambda_i) P] = 0 under
# the joint density P ~ prod |lambda_i - lambda_j|^beta prod w(lambda_i)), for W = (1/n) sum 1/(z - lambda_i):
#   Hermite (w = exp(-beta n lambda^2/4), f = 1/(z - lambda)):
#       E[W^2] - z E[W] + 1 - (2/beta - 1) E[W'] / n = 0;
#   Laguerre (w = lambda^((beta/2)(n - p + 1) - 1) exp(-beta n lambda/2), f = lambda/(z - lambda), c = p/n,
#   W over the p eigenvalues):
#       c z E[W^2] + (1 - c - z) E[W] + 1 - (2/beta - 1) (E[W] + z E[W']) / n = 0.
# With E[W^2] = E[W]^2 + O(1/n^2) and E[W] = G_0 + G_1/n, the 1/n order is linear in G_1.
beta_ = sp.Integer(1)
# a symbol with no assumptions: with z > 0 sympy would merge sqrt(z - a) sqrt(z - b) into the principal
# sqrt((z - a)(z - b)), which is the wrong branch below the middle of the support
zc = sp.Symbol("zc")


@proves("rmt.semicircle")
def check_goe_mean_esd_1_over_n_term():
    # sigma = 1: G0^2 - zc G0 + 1 = 0, G0 ~ 1/zc; sqrt(zc - 2) sqrt(zc + 2) is the branch analytic off [-2, 2]
    root = sp.sqrt(zc - 2) * sp.sqrt(zc + 2)
    G0 = (zc - root) / 2
    assert sp.simplify(sp.expand(G0**2 - zc * G0 + 1)) == 0
    G1s = sp.symbols("G1")
    first_order = sp.expand((G0 + G1s / sp.Symbol("N")) ** 2).coeff(sp.Symbol("N"), -1) - zc * G1s \
        - (2 / beta_ - 1) * sp.diff(G0, zc)
    G1 = sp.solve(first_order, G1s)[0]
    # G1 = [1/(zc - 2) + 1/(zc + 2)]/4 - 1/(2 sqrt(zc^2 - 4)): two edge atoms of mass 1/4 and a continuous part
    assert sp.simplify(G1 - ((1 / (zc - 2) + 1 / (zc + 2)) / 4 - 1 / (2 * root))) == 0
    # on the bulk root -> i sqrt(4 - x^2) (Im G0 < 0 above the axis): the density -Im G1/pi of the
    # continuous part is -1/(2 pi sqrt(4 - x^2)); checked at points just above the bulk
    rho1 = -1 / (2 * sp.pi * sp.sqrt(4 - x**2))
    g1 = sp.lambdify(zc, G1 - (1 / (zc - 2) + 1 / (zc + 2)) / 4, "mpmath")
    for xv in (-1.7, -0.4, 0.9, 1.95):
        import mpmath

        assert math.isclose(-float(mpmath.im(g1(xv + 1e-14j))) / math.pi, float(rho1.subs(x, xv)), rel_tol=1e-9)
    F1 = sp.Rational(1, 4) + sp.integrate(rho1, (x, -2, x))  # the left atom, then the continuous part
    assert sp.simplify(F1 + sp.asin(x / 2) / (2 * sp.pi)) == 0
    assert sp.simplify(F1.subs(x, 2) + sp.Rational(1, 4)) == 0 and sp.simplify(F1.subs(x, -2) - sp.Rational(1, 4)) == 0
    # |F1| is largest at the edges, 1/4: the allowance n * esd_finite_size_bias(n)
    for n in (100, 300, 4000):
        assert math.isclose(n * rmt.esd_finite_size_bias(n), 0.25, rel_tol=1e-15)


@proves("rmt.marchenko_pastur")
@settings(max_examples=4, deadline=None)
@given(st.floats(0.15, 1.0))
def check_loe_mean_esd_1_over_n_term(c):
    import mpmath

    a, b = rmt.marchenko_pastur_edges(c)
    root = sp.sqrt(zc - a) * sp.sqrt(zc - b)  # the branch analytic off [a, b]
    G0 = ((zc + c - 1) - root) / (2 * c * zc)
    assert abs(complex((c * zc * G0**2 + (1 - c - zc) * G0 + 1).subs(zc, 2.7 + 0.3j))) < 1e-12
    G1s = sp.symbols("G1")
    G1 = sp.solve(2 * c * zc * G0 * G1s + (1 - c - zc) * G1s - (2 / beta_ - 1) * (G0 + zc * sp.diff(G0, zc)), G1s)[0]
    g1 = sp.lambdify(zc, G1, "mpmath")
    # F_1(x) = -(1/pi) Im of the integral of G_1 along a path above the real axis from left of the
    # support (where G_1 is real) to x + i0: it passes above the edge singularities; per 1/p it is
    # c F_1 (1/n = c/p)
    for u in (0.1, 0.3, 0.5, 0.8, 0.95):
        xv = a + u * (b - a)
        I = mpmath.quad(g1, [a - 0.5, a + 0.5 * (b - a) * u + 0.6j, xv + 1e-13j])
        F1 = -float(mpmath.im(I)) / math.pi * c
        assert math.isclose(F1, -math.asin(2 * u - 1) / (2 * math.pi), abs_tol=1e-6), (c, u, F1)
    assert math.isclose(100 * rmt.esd_finite_size_bias(100), 0.25)
