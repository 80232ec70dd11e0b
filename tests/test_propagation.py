"""Tests for pinn_cli.propagation: eigenbases against closed forms and known levels, and the
eigenbasis propagation against closed-form solutions and an independent Crank-Nicolson run.

Every integral here uses the test's own Gauss-Legendre rule, split at the potential's jumps."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.sparse import diags, identity
from scipy.sparse.linalg import splu

from pinn_cli import finite_differences, reference
from pinn_cli.eigenbases import eigenbasis
from pinn_cli.potentials import Potential, make_potential
from pinn_cli.propagation import coherent_state, propagator, well_superposition

# -psi'' + x^4 psi = E psi on the whole line (tabulated; the walls at +-5 are ~e^-39 away).
QUARTIC = (1.0603620904841828, 3.7996730298013941, 7.4556979379867383, 11.644745511378163)

# A Gaussian packet heading right at a barrier: it starts 12.5 sigma from the wall and 15 sigma
# from the barrier, so psi0 vanishes there to ~1e-17 and its expansion converges fast.
BARRIER = dict(domain=(0.0, 2.0), V0=500.0, width=0.2, centre=1.2)
X0, SIGMA, K0 = 0.5, 0.04, 20.0
T_END = 0.02  # it has reached the barrier: about a third is through


def gauss_rule(potential, per_piece: int = 600) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights on every piece between the potential's jumps."""
    lo, hi = potential.domain
    edges = (lo, *potential.breakpoints, hi)
    t, w = np.polynomial.legendre.leggauss(per_piece)
    x = np.concatenate([a + 0.5 * (b - a) * (t + 1) for a, b in zip(edges, edges[1:])])
    weights = np.concatenate([0.5 * (b - a) * w for a, b in zip(edges, edges[1:])])
    return x, weights


def norm(f: np.ndarray, w: np.ndarray) -> np.ndarray:
    """L2 norm over the last axis."""
    return np.sqrt(np.sum(w * np.abs(f) ** 2, axis=-1))


def packet(x: np.ndarray) -> np.ndarray:
    """exp(-(x - x0)^2 / (4 sigma^2) + i k0 x), normalised on the whole line."""
    return (2 * math.pi * SIGMA**2) ** -0.25 * np.exp(
        -((x - X0) ** 2) / (4 * SIGMA**2) + 1j * K0 * x
    )


@pytest.fixture(scope="module")
def barrier_run():
    potential = make_potential("barrier", **BARRIER)
    return potential, propagator(potential, packet)


# --------------------------------------------------------------------------- eigenbasis


def test_infinite_well_energies_on_a_shifted_domain():
    basis = eigenbasis(make_potential("infinite_well", domain=(-0.3, 1.7)), 12)
    exact = ((np.arange(12) + 1) * math.pi / 2.0) ** 2
    assert basis.method == "closed_form"
    np.testing.assert_allclose(basis.energies, exact, rtol=1e-14)
    flat = make_potential("piecewise", segments=[[1.0, 2.0, 3.0], [2.0, 4.0, 3.0]])
    np.testing.assert_allclose(
        eigenbasis(flat, 5).energies, ((np.arange(5) + 1) * math.pi / 3.0) ** 2 + 3.0, rtol=1e-14
    )


def test_harmonic_low_states_are_the_hermite_functions():
    omega = 1.3
    basis = eigenbasis(make_potential("harmonic", omega=omega), 4)
    assert basis.method == "closed_form"
    np.testing.assert_allclose(basis.energies, omega * (2 * np.arange(4) + 1), rtol=1e-15)
    x = np.linspace(-8.0, 8.0, 801)
    expected = np.stack([reference.harmonic(omega, n).psi(x) for n in range(4)], axis=1)
    np.testing.assert_allclose(basis.states(x), expected, atol=1e-13)


def test_harmonic_high_states_feel_the_walls():
    """On [-8, 8] states n >~ 20 reach the walls: their levels are no longer 2n + 1, and the
    Galerkin path must agree with finite differences + Richardson (accurate to ~1e-10)."""
    potential = make_potential("harmonic")
    basis = eigenbasis(potential, 36)
    assert basis.method == "closed_form+legendre_galerkin"
    n = np.arange(10)
    np.testing.assert_allclose(basis.energies[:10], 2 * n + 1, rtol=1e-12)
    for n in (30, 35):
        fd = finite_differences.finite_difference(potential, potential.domain, n, grid=4000).energy
        assert basis.energies[n] == pytest.approx(fd, rel=1e-9)
        assert basis.energies[n] - (2 * n + 1) > 0.3  # the walls matter: E_30 = 61.38..., not 61


def test_smooth_formula_levels():
    square = eigenbasis(make_potential("formula", domain=(-10.0, 10.0), formula="x**2"), 10)
    assert square.method == "legendre_galerkin"
    np.testing.assert_allclose(square.energies, 2 * np.arange(10) + 1, rtol=1e-12)
    quartic = eigenbasis(make_potential("formula", domain=(-5.0, 5.0), formula="x**4"), 6)
    np.testing.assert_allclose(quartic.energies[:4], QUARTIC, rtol=1e-12)


def test_a_tunnel_split_pair_converges_with_pure_parities():
    """x^4 - 12 x^2 on [-5, 5]: states 0 and 1 lie 3.5e-7 apart. Solved as one problem, the
    quadrature's rounding mixed them by ~1e-8 at every basis size, the states never met the
    convergence test, and the reference fell back to finite differences (psi to ~1e-5)."""
    potential = make_potential("formula", domain=(-5.0, 5.0), formula="x**4 - 12*x**2")
    basis = eigenbasis(potential, 4)
    assert basis.method == "legendre_galerkin"
    x = np.linspace(0.05, 4.9, 50)
    psi, mirrored = basis.states(x), basis.states(-x)
    for n in range(4):  # even and odd by turns, to rounding
        np.testing.assert_allclose(mirrored[:, n], (-1) ** n * psi[:, n], atol=1e-12)
    # the energies of an independent method (second-order finite differences, extrapolated)
    for n in range(4):
        fd = finite_differences.finite_difference(potential, potential.domain, n).energy
        assert abs(basis.energies[n] - fd) <= 1e-9 * abs(fd)
    assert 0 < basis.energies[1] - basis.energies[0] < 1e-6


def test_piecewise_constant_uses_exact_matching():
    potential = make_potential("double_well")
    basis = eigenbasis(potential, 8)
    assert basis.method == "matching"
    pairs = [reference.piecewise_constant(potential.segments, n) for n in range(8)]
    np.testing.assert_allclose(basis.energies, [p.energy for p in pairs], rtol=1e-13)
    x = np.linspace(*potential.domain, 501)
    np.testing.assert_allclose(
        basis.states(x), np.stack([p.psi(x) for p in pairs], axis=1), atol=1e-12
    )
    # an independent method: finite differences (jumps on nodes) + Richardson, ~1e-10
    fd = [
        finite_differences.finite_difference(potential, potential.domain, n).energy for n in (0, 5)
    ]
    np.testing.assert_allclose(basis.energies[[0, 5]], fd, rtol=1e-8)


@pytest.mark.parametrize(
    "name, params, count",
    [
        ("infinite_well", dict(domain=(-0.3, 1.7)), 40),
        ("harmonic", {}, 36),
        ("formula", dict(domain=(-5.0, 5.0), formula="x**4"), 12),
        ("formula", dict(domain=(0.0, 1.0), formula="100*x"), 12),
        ("double_well", {}, 10),
        ("barrier", {}, 10),
    ],
)
def test_states_are_orthonormal_and_start_positive(name, params, count):
    potential = make_potential(name, **params)
    basis = eigenbasis(potential, count)
    assert basis.energies.shape == (count,) and np.all(np.diff(basis.energies) > 0)
    x, w = gauss_rule(potential)
    states = basis.states(x)
    gram = states.T @ (w[:, None] * states)
    np.testing.assert_allclose(gram, np.eye(count), atol=1e-11)
    grid = basis.states(np.linspace(*potential.domain, 20001))
    first = np.argmax(np.abs(grid) > 1e-3 * np.abs(grid).max(axis=0), axis=0)
    assert np.all(grid[first, np.arange(count)] > 0)  # psi rises from the left wall
    lo, hi = potential.domain
    assert np.all(basis.states(np.array([lo - 0.1, hi + 0.1])) == 0)


# --------------------------------------------------------------------------- closed forms


def test_coherent_state_is_the_displaced_ground_state_and_solves_the_equation():
    omega, x0 = 1.5, 0.8
    x = np.linspace(-7.0, 7.0, 1401)
    at_zero = coherent_state(omega, x0, x, [0.0])[0]
    ground = (omega / math.pi) ** 0.25 * np.exp(-0.5 * omega * (x - x0) ** 2)
    np.testing.assert_allclose(at_zero, ground, atol=1e-15)
    period = math.pi / omega  # E_n = omega (2n + 1): back to itself times exp(-i pi)
    np.testing.assert_allclose(coherent_state(omega, x0, x, [period])[0], -ground, atol=1e-14)
    t = np.linspace(0.0, period, 7)
    psi = coherent_state(omega, x0, x, t)
    dx = x[1] - x[0]
    centre = np.sum(x * np.abs(psi) ** 2, axis=1) * dx
    np.testing.assert_allclose(centre, x0 * np.cos(2 * omega * t), atol=1e-12)
    h = 1e-4  # i psi_t = -psi_xx + omega^2 x^2 psi, by central differences
    xs, ts = np.array([-0.7, 0.1, 1.9]), 0.37
    dt = (coherent_state(omega, x0, xs, [ts + h]) - coherent_state(omega, x0, xs, [ts - h]))[0]
    left = 1j * dt / (2 * h)
    side = [coherent_state(omega, x0, xs + s, [ts])[0] for s in (-h, 0.0, h)]
    right = -(side[0] - 2 * side[1] + side[2]) / h**2 + omega**2 * xs**2 * side[1]
    np.testing.assert_allclose(left, right, atol=1e-5)


def test_well_superposition_is_normalised_and_beats():
    domain = (1.0, 3.0)
    x = np.linspace(*domain, 2001)
    psi = well_superposition(domain, [2.0, 2.0], x, [0.0, 0.3])
    direct = np.sin(math.pi * (x - 1) / 2) + np.sin(math.pi * (x - 1))  # sqrt(2/L) = 1
    np.testing.assert_allclose(psi[0], direct / math.sqrt(2), atol=1e-15)
    assert np.sum(np.abs(psi) ** 2, axis=1) * (x[1] - x[0]) == pytest.approx([1, 1], abs=1e-6)
    beat = 2 * math.pi / (3 * math.pi**2 / 4)  # 2 pi / (E_1 - E_0)
    again = well_superposition(domain, [2.0, 2.0], x, [0.3 + beat])
    np.testing.assert_allclose(np.abs(again[0]), np.abs(psi[1]), atol=1e-13)


# --------------------------------------------------------------------------- propagation


@pytest.mark.parametrize("omega, x0, domain", [(1.0, 1.0, (-8.0, 8.0)), (2.0, -0.5, (-6.0, 6.0))])
def test_propagator_matches_the_coherent_state(omega, x0, domain):
    potential = make_potential("harmonic", domain=domain, omega=omega)
    prop = propagator(potential, lambda x: coherent_state(omega, x0, x, [0.0])[0])
    assert prop.truncation < 1e-10
    x, w = gauss_rule(potential)
    t = np.linspace(0.0, math.pi / omega, 9)  # one period of the centre
    exact = coherent_state(omega, x0, x, t)
    assert np.max(norm(prop(x, t) - exact, w) / norm(exact, w)) <= 1e-9
    assert prop.energy() == pytest.approx(omega * (1 + omega * x0**2), rel=1e-12)


@pytest.mark.parametrize("coefficients", [[1.0, 1.0], [1.0, 0.5j, -0.3 + 0.2j]])
def test_propagator_matches_the_well_superposition(coefficients):
    domain = (1.0, 3.0)
    potential = make_potential("infinite_well", domain=domain)
    prop = propagator(potential, lambda x: well_superposition(domain, coefficients, x, [0.0])[0])
    x, w = gauss_rule(potential)
    t = np.array([0.0, 0.01, 0.37, 2.5, 40.0])
    exact = well_superposition(domain, coefficients, x, t)
    assert np.max(norm(prop(x, t) - exact, w) / norm(exact, w)) <= 1e-12


def test_an_eigenstate_only_turns_its_phase():
    potential = make_potential("barrier")
    pair = reference.piecewise_constant(potential.segments, 2)
    prop = propagator(potential, pair.psi)
    assert prop.truncation < 1e-12
    x = np.linspace(0.01, 0.99, 301)
    x = x[np.abs(pair.psi(x)) > 0.1]
    t = np.array([0.0, 0.013, 0.5, 3.0])
    psi = prop(x, t)
    np.testing.assert_allclose(
        np.abs(psi), np.abs(pair.psi(x))[None, :] + 0 * t[:, None], rtol=1e-11
    )
    phase = psi / pair.psi(x)[None, :]
    np.testing.assert_allclose(phase, np.exp(-1j * pair.energy * t)[:, None] + 0 * x, atol=1e-11)


def test_packet_on_barrier_is_resolved_to_tolerance(barrier_run):
    potential, prop = barrier_run
    count = len(prop.coefficients)
    assert prop.basis.method == "matching"
    assert prop.truncation < 1e-10 and count <= 600, f"{count} states: {prop.truncation:.2e}"
    x, w = gauss_rule(potential)
    residual = norm(packet(x) - prop(x, [0.0])[0], w) / norm(packet(x), w)
    assert residual < 1e-10, f"{count} states leave {residual:.2e}"


def test_packet_norm_and_energy_are_conserved(barrier_run):
    potential, prop = barrier_run
    exact = K0**2 + 1 / (4 * SIGMA**2)  # <p^2> of the packet; V = 0 where it is (to ~1e-40)
    assert prop.energy() == pytest.approx(exact, rel=1e-11)
    t = np.array([0.0, 0.5 * T_END, T_END])
    x, w = gauss_rule(potential)
    psi = prop(x, t)
    np.testing.assert_allclose(norm(psi, w), 1.0, atol=1e-11)
    potential_energy = np.sum(w * np.asarray(potential(x)) * np.abs(psi) ** 2, axis=1)
    grid = np.linspace(*potential.domain, 20001)  # kinetic energy by first differences
    kinetic = np.sum(np.abs(np.diff(prop(grid, t), axis=1)) ** 2, axis=1) / (grid[1] - grid[0])
    np.testing.assert_allclose(kinetic + potential_energy, exact, rtol=2e-6)
    assert potential_energy[-1] > 10  # the packet is in the barrier by T_END


def crank_nicolson(potential, psi0, intervals: int, steps: int, t_end: float):
    """psi(t_end) on the interior nodes of a uniform grid by Crank-Nicolson: second order in
    h and dt; V at a node on a jump is the mean of its two sides (keeps second order)."""
    lo, hi = potential.domain
    h = (hi - lo) / intervals
    x = lo + h * np.arange(1, intervals)
    v = 0.5 * (potential(x - 1e-6 * h) + potential(x + 1e-6 * h))
    off = np.full(intervals - 2, -1 / h**2)
    hamiltonian = diags([off, 2 / h**2 + v, off], [-1, 0, 1], format="csc")
    half = 0.5j * t_end / steps * hamiltonian
    ident = identity(intervals - 1, format="csc")
    solve, explicit = splu((ident + half).tocsc()).solve, (ident - half).tocsr()
    psi = psi0(x)
    for _ in range(steps):
        psi = solve(explicit @ psi)
    return x, psi


def test_packet_on_barrier_agrees_with_crank_nicolson(barrier_run):
    """The CN error is measured by halving h and dt together (estimate = (fine - coarse) / 3): the
    eigenbasis solution must sit that far from the fine run, and much closer to the Richardson
    extrapolation (4 fine - coarse) / 3, whose own error is of higher order."""
    potential, prop = barrier_run
    x, coarse = crank_nicolson(potential, packet, 4000, 2000, T_END)
    _, fine = crank_nicolson(potential, packet, 8000, 4000, T_END)
    fine = fine[1::2]  # the coarse grid's nodes
    h = x[1] - x[0]
    exact = prop(x, [T_END])[0]
    estimate = math.sqrt(h * np.sum(np.abs(fine - coarse) ** 2)) / 3
    error = math.sqrt(h * np.sum(np.abs(fine - exact) ** 2))
    extrapolated = math.sqrt(h * np.sum(np.abs((4 * fine - coarse) / 3 - exact) ** 2))
    assert 1e-5 < estimate < 1e-3
    assert error <= 1.05 * estimate
    assert extrapolated <= 0.02 * estimate


def test_max_states_reached_records_the_truncation(barrier_run):
    potential, _ = barrier_run
    prop = propagator(potential, packet, max_states=48)
    assert len(prop.coefficients) == 48
    x, w = gauss_rule(potential)
    residual = norm(packet(x) - prop(x, [0.0])[0], w) / norm(packet(x), w)
    assert prop.truncation > 1e-4  # far from tol, and said so
    assert prop.truncation == pytest.approx(residual, rel=1e-6)


# --------------------------------------------------------------------------- bad inputs


WELL = make_potential("infinite_well")


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: eigenbasis(WELL, 0), "count must be >= 1"),
        (lambda: eigenbasis(WELL, -3), "count must be >= 1"),
        (lambda: eigenbasis(WELL, 2.5), "count must be an integer"),
        (lambda: eigenbasis(WELL, True), "count must be an integer"),
        (lambda: propagator(WELL, np.sin, tol=0.0), "tol must be a finite number > 0"),
        (lambda: propagator(WELL, np.sin, tol=-1e-3), "tol must be a finite number > 0"),
        (lambda: propagator(WELL, np.sin, tol=math.nan), "tol must be a finite number > 0"),
        (lambda: propagator(WELL, np.sin, max_states=0), "max_states must be >= 1"),
        (lambda: propagator(WELL, "sin"), "psi0 must be a callable"),
        (lambda: propagator(WELL, lambda x: x[:3]), "psi0 must map x of shape"),
        (lambda: propagator(WELL, lambda x: 0 * x), "psi0 is zero"),
        (lambda: propagator(WELL, lambda x: x / 0.0), "non-finite"),
        (lambda: eigenbasis(make_potential("box2d"), 3), "1-D only"),
        (
            lambda: eigenbasis(Potential("mix", ((0, 1, 0), (1, 2, 5)), smooth=np.sin), 3),
            "smooth part and jumps",
        ),
        (lambda: coherent_state(0.0, 1.0, [0.0], [0.0]), "omega must be"),
        (lambda: well_superposition((0, 1), [0, 0], [0.5], [0.0]), "not all zero"),
    ],
)
def test_bad_inputs_raise_a_clear_value_error(call, message):
    with np.errstate(all="ignore"), pytest.raises(ValueError, match=message):
        call()
