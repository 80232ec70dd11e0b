"""Tests for pinn_cli.reference: closed form, exact matching and finite differences agree."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.optimize import brentq

from pinn_cli.finite_differences import finite_difference, finite_difference_energies
from pinn_cli.reference import Eigenpair, infinite_well, piecewise_constant

FINITE_WELL = ((-2.0, -0.5, 50.0), (-0.5, 0.5, 0.0), (0.5, 2.0, 50.0))
FINITE_WELL_E0 = 5.942242751944543
BARRIER = ((0.0, 0.4, 0.0), (0.4, 0.6, 50.0), (0.6, 1.0, 0.0))
BARRIER_E0 = 25.059686290157966
DOUBLE_WELL = (
    (0.0, 0.1, 500.0),
    (0.1, 0.3, 0.0),
    (0.3, 0.7, 500.0),
    (0.7, 0.9, 0.0),
    (0.9, 1.0, 500.0),
)

# FD + Richardson vs exact matching, relative. Observed worst over every case below: 5e-10 (the
# floor is rounding in the tridiagonal eigensolver, ~eps * 4/h^2 absolute, amplified 5/3 by the
# extrapolation); plain FD on the same grids errs by up to 2e-6. 2e-8 leaves a 40x margin.
FD_RICHARDSON_RTOL = 2e-8


def step_potential(segments):
    """A plain callable V(x) for the segments, one-sided (x >= x_left) at every jump."""

    def v(x):
        x = np.asarray(x, dtype=float)
        out = np.full_like(x, segments[0][2])
        for left, _, value in segments[1:]:
            out = np.where(x >= left, value, out)
        return out

    return v


def domain_of(segments):
    return segments[0][0], segments[-1][1]


def breakpoints_of(segments):
    return [right for _, right, _ in segments[:-1]]


def norm_sq(psi, domain, points=()):
    value, _ = quad(
        lambda x: float(psi(np.array(x))) ** 2,
        *domain,
        points=points,
        limit=500,
        epsabs=1e-13,
        epsrel=1e-12,
    )
    return value


def count_nodes(psi, domain, num=200_001):
    x = np.linspace(*domain, num)[1:-1]
    values = psi(x)
    values = values[np.abs(values) > 1e-9 * np.abs(values).max()]
    return int(np.sum(np.signbit(values[1:]) != np.signbit(values[:-1])))


def ode_residual(pair: Eigenpair, v, x, scale, delta=1e-4):
    """max |-psi'' + (V - E) psi| at x (central second difference), relative to `scale`."""
    f = pair.psi
    second = (f(x + delta) - 2 * f(x) + f(x - delta)) / delta**2
    return np.abs(-second + (v(x) - pair.energy) * f(x)).max() / scale


# --------------------------------------------------------------------------- closed form


def test_infinite_well_ground_energy_is_pi_squared():
    pair = infinite_well((0.0, 1.0), 0)
    assert pair.energy == pytest.approx(math.pi**2, rel=1e-15)
    assert pair.method == "closed_form"


@pytest.mark.parametrize("n", [0, 1, 4])
def test_infinite_well_other_domain_energy_norm_and_ode(n):
    domain = (-1.5, 2.0)
    length = 3.5
    pair = infinite_well(domain, n)
    assert pair.energy == pytest.approx(((n + 1) * math.pi / length) ** 2, rel=1e-15)
    assert norm_sq(pair.psi, domain) == pytest.approx(1.0, abs=1e-12)
    x = np.linspace(-1.4, 1.9, 7)
    scale = pair.energy * math.sqrt(2 / length)  # size of each term of the ODE
    assert ode_residual(pair, lambda x: 0 * x, x, scale) < 1e-6
    assert pair.psi(np.array([-1.5 + 1e-6]))[0] > 0  # psi'(lo) > 0
    assert count_nodes(pair.psi, domain) == n


# --------------------------------------------------------------------------- matching


@pytest.mark.parametrize("n", range(5))
def test_matching_flat_segment_reproduces_infinite_well(n):
    exact = infinite_well((0.0, 1.0), n).energy
    assert piecewise_constant([(0.0, 1.0, 0.0)], n).energy == pytest.approx(exact, rel=1e-13)
    # the same flat box cut into pieces exercises the transfer across boundaries; for n = 0 the
    # 0.03-wide piece has E * width^2 < 1e-2, so it goes through the small-argument series
    pieces = [(0.0, 0.13, 0.0), (0.13, 0.5, 0.0), (0.5, 0.53, 0.0), (0.53, 1.0, 0.0)]
    assert piecewise_constant(pieces, n).energy == pytest.approx(exact, rel=1e-13)


@pytest.mark.parametrize("c", [7.5, -3.0, 400.0])
@pytest.mark.parametrize("n", [0, 2])
def test_matching_constant_potential_shifts_energy(c, n):
    domain = (-1.0, 2.0)
    shifted = piecewise_constant([(*domain, c)], n).energy
    assert shifted == pytest.approx(infinite_well(domain, n).energy + c, rel=1e-13)


def test_matching_finite_well_known_value():
    pair = piecewise_constant(FINITE_WELL, 0)
    assert pair.method == "matching"
    assert pair.energy == pytest.approx(FINITE_WELL_E0, rel=1e-12)


def test_finite_well_value_from_independent_even_parity_condition():
    # Even state of the well |x| < a (V = 0) inside the box |x| < L (V = V0 elsewhere):
    #   inside  psi = cos(k x),                 psi'/psi = -k tan(k x)
    #   outside psi = B sinh(kappa (L - x)),    psi'/psi = -kappa coth(kappa (L - x))   (psi(L) = 0)
    # match psi'/psi at x = a:  k tan(k a) = kappa coth(kappa (L - a)),  k^2 = E, kappa^2 = V0 - E
    v0, a, big_l = 50.0, 0.5, 2.0

    def condition(k):
        kappa = math.sqrt(v0 - k * k)
        return k * math.tan(k * a) - kappa / math.tanh(kappa * (big_l - a))

    # ground state: the only root with 0 < k a < pi/2 (LHS rises from 0 to +inf, RHS > 0)
    k0 = brentq(
        condition, 1e-9, math.pi / (2 * a) - 1e-12, xtol=1e-15, rtol=4 * np.finfo(float).eps
    )
    assert k0 * k0 == pytest.approx(FINITE_WELL_E0, rel=1e-12)
    assert piecewise_constant(FINITE_WELL, 0).energy == pytest.approx(k0 * k0, rel=1e-12)


def test_matching_barrier_known_value():
    assert piecewise_constant(BARRIER, 0).energy == pytest.approx(BARRIER_E0, rel=1e-12)


@pytest.mark.parametrize(
    "segments", [FINITE_WELL, BARRIER, DOUBLE_WELL], ids=["well", "barrier", "double"]
)
@pytest.mark.parametrize("n", [0, 1, 3])
def test_matching_psi_normalised_smooth_nodes_and_ode(segments, n):
    pair = piecewise_constant(segments, n)
    domain, breaks = domain_of(segments), breakpoints_of(segments)
    assert norm_sq(pair.psi, domain, points=breaks) == pytest.approx(1.0, abs=1e-10)
    assert count_nodes(pair.psi, domain) == n
    assert pair.psi(np.array([domain[0] + 1e-7]))[0] > 0  # psi'(lo) > 0
    assert pair.psi(np.array(domain)) == pytest.approx([0.0, 0.0], abs=1e-9)
    scale = np.abs(pair.psi(np.linspace(*domain, 2001))).max()
    v_max = max(abs(v) for *_, v in segments)
    k_max = math.sqrt(pair.energy + v_max)
    d = 1e-5
    for b in breaks:  # psi and psi' continuous: second-order one-sided differences
        f = pair.psi
        left = (3 * f(np.array(b)) - 4 * f(np.array(b - d)) + f(np.array(b - 2 * d))) / (2 * d)
        right = (-3 * f(np.array(b)) + 4 * f(np.array(b + d)) - f(np.array(b + 2 * d))) / (2 * d)
        assert abs(f(np.array(b - 1e-12)) - f(np.array(b + 1e-12))) < 1e-10 * scale
        assert abs(left - right) < 1e-6 * k_max * scale
    v = step_potential(segments)
    for x_left, x_right, _ in segments:  # the ODE holds inside every piece
        x = np.linspace(x_left, x_right, 9)[1:-1]
        assert ode_residual(pair, v, x, (pair.energy + v_max) * scale) < 1e-5


def test_matching_energies_increasing_and_tunnelling_doublet():
    energies = [piecewise_constant(DOUBLE_WELL, n).energy for n in range(4)]
    assert np.all(np.diff(energies) > 0)
    # the two lowest states are a tunnelling doublet: tiny splitting, even / odd about x = 0.5
    assert (energies[1] - energies[0]) / energies[0] < 1e-3
    assert (energies[2] - energies[1]) / energies[0] > 1.0
    x = np.linspace(0.02, 0.48, 11)
    even, odd = piecewise_constant(DOUBLE_WELL, 0).psi, piecewise_constant(DOUBLE_WELL, 1).psi
    assert even(x) == pytest.approx(even(1 - x), abs=1e-8)
    assert odd(x) == pytest.approx(-odd(1 - x), abs=1e-8)


def test_matching_deep_doublet_is_resolved():
    # splitting ~6e-11 relative: isolating by node counting still gives E0 < E1
    deep = (
        (0.0, 0.1, 2000.0),
        (0.1, 0.2, 0.0),
        (0.2, 0.8, 2000.0),
        (0.8, 0.9, 0.0),
        (0.9, 1.0, 2000.0),
    )
    e0, e1 = (piecewise_constant(deep, n).energy for n in (0, 1))
    assert 0 < (e1 - e0) / e0 < 1e-9
    e_fd = finite_difference(step_potential(deep), (0.0, 1.0), 0).energy
    assert e0 == pytest.approx(e_fd, rel=FD_RICHARDSON_RTOL)


@pytest.mark.parametrize("n", [0, 2])
def test_matching_very_narrow_high_piece(n):
    # (E - V) * width^2 = 1e-3: this piece is propagated by the series, E is far below V there
    segments = ((0.0, 0.5, 0.0), (0.5, 0.501, 1000.0), (0.501, 1.0, 0.0))
    exact = piecewise_constant(segments, n).energy
    fd = finite_difference(step_potential(segments), (0.0, 1.0), n).energy
    assert exact == pytest.approx(fd, rel=FD_RICHARDSON_RTOL)


def test_matching_zero_width_piece_is_ignored():
    with_empty = ((0.0, 0.4, 0.0), (0.4, 0.4, 99.0), (0.4, 0.6, 50.0), (0.6, 1.0, 0.0))
    assert piecewise_constant(with_empty, 0).energy == pytest.approx(BARRIER_E0, rel=1e-13)


# --------------------------------------------------------------------------- finite differences


def test_finite_difference_is_second_order():
    grids = np.array([100, 200, 400, 800])
    exact = np.array([infinite_well((0.0, 2.0), n).energy for n in range(3)])
    errors = np.array(
        [
            np.abs(finite_difference_energies(lambda x: 0 * x, (0.0, 2.0), 3, g) - exact)
            for g in grids
        ]
    )
    for n in range(3):
        slope = np.polyfit(np.log(2.0 / grids), np.log(errors[:, n]), 1)[0]
        assert slope == pytest.approx(2.0, abs=0.1)


@pytest.mark.parametrize(
    ("segments", "exact"),
    [(FINITE_WELL, FINITE_WELL_E0), (BARRIER, BARRIER_E0)],
    ids=["well", "barrier"],
)
def test_finite_difference_richardson_matches_exact(segments, exact):
    v, domain = step_potential(segments), domain_of(segments)
    pair = finite_difference(v, domain, 0)
    assert pair.method == "finite_difference"
    assert pair.energy == pytest.approx(exact, rel=FD_RICHARDSON_RTOL)
    plain = finite_difference(v, domain, 0, richardson=False).energy
    assert abs(plain - exact) > 100 * abs(pair.energy - exact)  # extrapolation is doing the work
    assert norm_sq(pair.psi, domain, points=breakpoints_of(segments)) == pytest.approx(
        1.0, abs=1e-10
    )


@pytest.mark.parametrize("n", [0, 1, 2])
def test_finite_difference_psi_matches_exact_psi(n):
    x = np.linspace(-2.0, 2.0, 4001)
    fd = finite_difference(step_potential(FINITE_WELL), (-2.0, 2.0), n)
    exact = piecewise_constant(FINITE_WELL, n)
    assert np.abs(fd.psi(x) - exact.psi(x)).max() < 5e-6  # observed ~1e-6 (O(h^2) eigenvector)
    assert fd.psi(np.array([-2.0 + 1e-3]))[0] > 0


def test_finite_difference_asymmetric_step_on_node():
    # a single jump sampled one-sidedly by the callable: the node average keeps it second order
    segments = ((0.0, 0.3, 0.0), (0.3, 1.0, 50.0))
    exact = piecewise_constant(segments, 0).energy
    fd = finite_difference(step_potential(segments), (0.0, 1.0), 0, grid=4000).energy
    assert fd == pytest.approx(exact, rel=FD_RICHARDSON_RTOL)


def test_finite_difference_harmonic_oscillator():
    domain = (-10.0, 10.0)
    for n in range(5):
        pair = finite_difference(lambda x: x * x, domain, n)
        assert pair.energy == pytest.approx(2 * n + 1, abs=1e-8)
    assert count_nodes(pair.psi, domain) == 4
    x = np.linspace(-3.0, 3.0, 13)
    hermite_4 = 16 * x**4 - 48 * x**2 + 12  # psi_4 = H_4 exp(-x^2/2) / sqrt(2^4 4! sqrt(pi))
    exact = hermite_4 * np.exp(-(x**2) / 2) / math.sqrt(2**4 * 24 * math.sqrt(math.pi))
    assert pair.psi(x) == pytest.approx(exact, abs=1e-5)


SWEEP = [
    pytest.param(v0, width, shape, id=f"{shape}-V{v0:g}-w{width:g}")
    for v0 in (1.0, 50.0, 500.0)
    for width in (0.05, 0.8)
    for shape in ("well", "barrier")
]


@pytest.mark.parametrize(("v0", "width", "shape"), SWEEP)
def test_sweep_matching_vs_finite_difference(v0, width, shape):
    a, b = 0.5 - width / 2, 0.5 + width / 2
    inside, outside = (0.0, v0) if shape == "well" else (v0, 0.0)
    segments = ((0.0, a, outside), (a, b, inside), (b, 1.0, outside))
    exact = np.array([piecewise_constant(segments, n).energy for n in range(4)])
    fd = np.array(
        [finite_difference(step_potential(segments), (0.0, 1.0), n).energy for n in range(4)]
    )
    np.testing.assert_allclose(fd, exact, rtol=FD_RICHARDSON_RTOL)
    assert np.all(np.diff(exact) > 0)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "call",
    [
        lambda: infinite_well((0.0, 1.0), -1),
        lambda: infinite_well((1.0, 0.0), 0),
        lambda: infinite_well((0.0, 1.0), 1.5),
        lambda: piecewise_constant([(0.0, 1.0, 0.0)], -1),
        lambda: piecewise_constant([], 0),
        lambda: piecewise_constant([(0.0, 0.4, 0.0), (0.5, 1.0, 0.0)], 0),
        lambda: piecewise_constant([(0.5, 1.0, 0.0), (0.0, 0.5, 0.0)], 0),
        lambda: piecewise_constant([(0.0, 1.0, float("nan"))], 0),
        lambda: piecewise_constant([(0.0, 1.0)], 0),
        lambda: finite_difference(lambda x: 0 * x, (0.0, 1.0), -1),
        lambda: finite_difference(lambda x: 0 * x, (0.0, 1.0), 5, grid=4),
        lambda: finite_difference(
            lambda x: np.where(x > 0.3, np.nan, 0 * x), (0.0, 1.0), 0, grid=10
        ),
        lambda: finite_difference_energies(lambda x: 0 * x, (0.0, 1.0), 0, 100),
    ],
)
def test_bad_input_raises_value_error(call):
    with pytest.raises(ValueError):
        call()


@pytest.mark.parametrize("n", [0, 1, 2])
def test_matching_psi_is_accurate_after_deep_forbidden_regions(n):
    """Shooting from one wall alone amplifies rounding by exp(kappa * 1.5) ~ 1e14 here."""
    segments = [(-2.0, -0.5, 500.0), (-0.5, 0.5, 0.0), (0.5, 2.0, 500.0)]
    exact = piecewise_constant(segments, n)
    x = np.array([-2.0, -1.9, 1.9, 2.0])
    assert np.max(np.abs(exact.psi(x))) < 1e-12
    v = lambda t: np.where(np.abs(t) < 0.5, 0.0, 500.0)  # noqa: E731
    fd = finite_difference(v, (-2.0, 2.0), n, grid=4000)
    grid = np.linspace(-2.0, 2.0, 4001)
    h = grid[1] - grid[0]
    assert np.sqrt(np.sum((exact.psi(grid) - fd.psi(grid)) ** 2) * h) < 1e-5
