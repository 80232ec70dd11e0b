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
    from .propagation import eigenbasis

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
