"""Initial states psi0(x) of the time-dependent equation, with psi0'' (NumPy, complex).

Each is normalised on the potential's domain and vanishes at its walls: exactly for sums of
eigenstates, and to WALL_TOL of its peak for packets (a packet whose tail reaches a wall is
refused; the trial function holds psi = psi0 + O(t) B(x) exactly, so psi0 must be zero there).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import quadrature

WALL_TOL = 1e-10  # |psi0| at a wall, relative to its peak
MAX_STATES = 50  # terms of a superposition


class InitialStateError(ValueError):
    """An initial state that does not fit the potential or its domain (a user's mistake)."""


@dataclass(frozen=True)
class InitialState:
    """psi0 and psi0'' at any x, normalised on the domain; `energies`: of the eigenstates it
    is made of (superposition, eigen), else None."""

    name: str
    values: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # x (X,) -> (psi0, psi0'')
    energies: tuple[float, ...] | None = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.values(np.asarray(x, float))[0]


def _norm(potential, f: Callable) -> float:
    rule = quadrature.gauss_fixed(potential.box, 256)
    return math.sqrt(float(np.sum(rule.w * np.abs(f(rule.x[:, 0])) ** 2)))


def _packet(name: str, potential, psi: Callable, psi_xx: Callable, where: str) -> InitialState:
    """A closed-form packet, normalised, refused when its tail reaches a wall."""
    lo, hi = potential.domain
    grid = np.linspace(lo, hi, 4001)
    peak = float(np.max(np.abs(psi(grid))))
    wall = float(max(abs(psi(np.array([lo]))[0]), abs(psi(np.array([hi]))[0])))
    if not peak > 0 or wall > WALL_TOL * peak:
        raise InitialStateError(
            f"{where} puts the packet at the domain's walls (|psi0| there is {wall / peak:.1e} "
            f"of its peak, more than {WALL_TOL:g}); move it inside or widen potential.domain "
            f"[{lo:g}, {hi:g}]"
        )
    scale = 1.0 / _norm(potential, psi)
    return InitialState(name, lambda x: (scale * psi(x), scale * psi_xx(x)))


def gaussian(potential, x0: float | None, k0: float | None, sigma: float | None) -> InitialState:
    """exp(-(x - x0)^2 / (4 sigma^2) + i k0 x): |psi0|^2 has standard deviation sigma.

    Defaults: x0 a quarter into the domain, sigma 1/40 of it, and k0^2 = max V - min V, so that
    the mean kinetic energy straddles a barrier's height: part of the packet is reflected, part
    goes over or through."""
    lo, hi = potential.domain
    x0 = lo + 0.25 * (hi - lo) if x0 is None else float(x0)
    sigma = (hi - lo) / 40.0 if sigma is None else float(sigma)
    if k0 is None:
        v = np.asarray(potential(np.linspace(lo, hi, 2001)), float)
        k0 = math.sqrt(float(np.max(v) - np.min(v)))
    if not sigma > 0:
        raise InitialStateError(f"initial.sigma={sigma} must be > 0")

    def psi(x):
        return np.exp(-((x - x0) ** 2) / (4.0 * sigma**2) + 1j * k0 * x)

    def psi_xx(x):
        d = 1j * k0 - (x - x0) / (2.0 * sigma**2)
        return (d * d - 1.0 / (2.0 * sigma**2)) * psi(x)

    where = f"initial.x0={x0:g} with initial.sigma={sigma:g}"
    return _packet("gaussian", potential, psi, psi_xx, where)


def coherent(potential, x0: float) -> InitialState:
    """The oscillator's ground state (omega / pi)^(1/4) exp(-omega x^2 / 2) moved to x0."""
    omega = getattr(potential, "omega", None)
    if omega is None:
        raise InitialStateError(
            f"initial=coherent is the harmonic oscillator's displaced ground state; "
            f"potential={potential.name} is not harmonic (use potential=harmonic, or "
            f"initial=gaussian)"
        )

    def psi(x):
        return (omega / math.pi) ** 0.25 * np.exp(-0.5 * omega * (x - x0) ** 2) + 0j

    def psi_xx(x):
        return (omega**2 * (x - x0) ** 2 - omega) * psi(x)

    return _packet("coherent", potential, psi, psi_xx, f"initial.x0={x0:g}")


def superposition(potential, coefficients, name: str = "superposition") -> InitialState:
    """sum_n c_n psi_n / ||c|| over eigenstates 0, 1, ...; psi_n'' = (V - E_n) psi_n."""
    from .eigenbases import eigenbasis

    c = np.asarray(coefficients, dtype=complex)
    if c.ndim != 1 or c.size == 0 or not np.any(c != 0) or not np.all(np.isfinite(c)):
        raise InitialStateError(
            f"initial.coefficients={list(coefficients)} must be finite and not all zero"
        )
    if c.size > MAX_STATES:
        raise InitialStateError(
            f"initial.coefficients has {c.size} terms; at most {MAX_STATES} are allowed"
        )
    c = c / np.linalg.norm(c)
    basis = eigenbasis(potential, c.size)
    energies = np.asarray(basis.energies[: c.size], float)

    def values(x):
        phi = basis.states(x)[:, : c.size]
        v = np.broadcast_to(np.asarray(potential(x), float), x.shape)
        return phi @ c, (v[:, None] - energies[None, :]) * phi @ c

    return InitialState(name, values, tuple(float(e) for e in energies))


def eigen(potential, n: int) -> InitialState:
    if not 0 <= n < MAX_STATES:
        raise InitialStateError(f"initial.n={n} must be in 0..{MAX_STATES - 1}")
    return superposition(potential, [0.0] * n + [1.0], name="eigen")


def make_initial_state(cfg_initial, potential) -> InitialState:
    """From the `initial` config block (a schema of config.INITIAL_SCHEMAS)."""
    name = cfg_initial.name
    if name == "gaussian":
        return gaussian(potential, cfg_initial.x0, cfg_initial.k0, cfg_initial.sigma)
    if name == "coherent":
        return coherent(potential, cfg_initial.x0)
    if name == "superposition":
        return superposition(potential, cfg_initial.coefficients)
    return eigen(potential, cfg_initial.n)


# ------------------------------------------------------- what the state asks of the grid

# Windows when time.windows is null: psi turns its phase by E t, and one window should see at
# most this many radians of it at the top of the initial state's energies (<H> + 3 Delta H).
# Measured: the infinite-well beat [1, 1] at 7.3 rad per window and 8 time nodes lost the time
# dependence between the nodes (error 6.6e-5, norm drift 1e-4); at 3 rad it was resolved.
PHASE_PER_WINDOW = 3.0
MAX_AUTO_WINDOWS = 64
ENERGY_SPREAD = 3.0  # "the top of the energies": <H> + ENERGY_SPREAD * Delta H
# Gauss nodes in x per wavelength of the fastest wave, sqrt(E_top - min V), inside the region the
# state can reach (feature_interval); the rest of the domain keeps train.points' density. Measured
# (the barrier's default packet, 7.7 waves on the unit box): 8 per wave aliased (norm drift 7e-2
# after one window), 10 per wave L2 6.1e-2, 21 per wave 1.7e-3; the coherent state was not
# aliased at ~12 per wave inside its region.
NODES_PER_WAVE = 20.0
MIN_NODES_PER_PIECE = 8


def space_pieces(potential, top_energy: float, region, floor: int):
    """(pieces, nodes per piece) of the x rule: the domain split at V's jumps and at the ends of
    `region`; every piece gets train.points' density (`floor` over the domain), and pieces
    inside the region at least NODES_PER_WAVE per wavelength at the top energy."""
    lo, hi = potential.domain
    v_min = float(np.min(np.asarray(potential(np.linspace(lo, hi, 2001)), float)))
    k = np.sqrt(max(top_energy - v_min, 0.0))
    cuts = sorted({*potential.breakpoints, *(c for c in region if lo < c < hi)})
    edges = [lo, *cuts, hi]
    pieces = list(zip(edges[:-1], edges[1:]))
    counts = []
    for a, b in pieces:
        n = floor * (b - a) / (hi - lo)
        if region[0] <= a and b <= region[1]:
            n = max(n, NODES_PER_WAVE * k * (b - a) / (2.0 * np.pi))
        counts.append(max(MIN_NODES_PER_PIECE, int(np.ceil(n))))
    return pieces, counts


def auto_windows(top_energy: float, end: float) -> int:
    """Enough windows that each sees at most PHASE_PER_WINDOW radians of exp(-i E t)."""
    return int(min(MAX_AUTO_WINDOWS, max(1, np.ceil(abs(top_energy) * end / PHASE_PER_WINDOW))))


def energy_moments(potential, psi0) -> tuple[float, float]:
    """<H> and Delta H = sqrt(<H^2> - <H>^2) of the initial state, on a fine rule."""
    rule = quadrature.gauss_fixed(potential.box, 256)
    x = rule.x[:, 0]
    v = np.asarray(potential(x), float) * np.ones_like(x)
    p, p_xx = psi0.values(x)
    h_p = -p_xx + v * p
    mean = float(np.real(np.sum(rule.w * np.conj(p) * h_p)))
    return mean, float(np.sqrt(max(np.sum(rule.w * np.abs(h_p) ** 2) - mean**2, 0.0)))


def feature_interval(potential, top_energy: float, margin: float = 0.25):
    """Where psi can go: the x where V <= the top of the initial state's energies (energy is
    conserved, so the packet stays there but for its decaying tails), widened by `margin` of
    its length on each side, within the domain. The network's x input is scaled over this
    interval: a packet in a wide oscillator box then spans the input's range (the first window
    of the coherent state reached a 4x lower loss in 600 steps)."""
    lo, hi = potential.domain
    x = np.linspace(lo, hi, 4001)
    v = np.asarray(potential(x), float) * np.ones_like(x)
    allowed = x[v <= top_energy]
    if allowed.size == 0:
        return lo, hi
    a, b = float(allowed.min()), float(allowed.max())
    pad = margin * (b - a)
    return max(lo, a - pad), min(hi, b + pad)
