"""Judging a trained wavefunction against a reference eigenpair (NumPy arrays in, numbers out)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import reference
from .potentials import Potential


@dataclass(frozen=True)
class Quadrature:
    x: np.ndarray
    w: np.ndarray
    v: np.ndarray


def fine_quadrature(potential: Potential, per_piece: int = 256) -> Quadrature:
    """Gauss-Legendre per smooth piece: exact to float64 for piecewise-smooth integrands."""
    t, u = np.polynomial.legendre.leggauss(per_piece)
    xs = [0.5 * (b - a) * t + 0.5 * (a + b) for a, b in potential.pieces]
    ws = [0.5 * (b - a) * u for a, b in potential.pieces]
    x = np.concatenate(xs)
    return Quadrature(x, np.concatenate(ws), np.asarray(potential(x), dtype=float))


def reference_eigenpair(potential: Potential, n: int = 0) -> reference.Eigenpair:
    """Closed forms for a flat box and the oscillator, exact matching for any other
    piecewise-constant potential, finite differences with Richardson extrapolation otherwise."""
    if potential.omega is not None:
        return reference.harmonic(potential.omega, n)
    if not potential.piecewise_constant:
        return reference.finite_difference(potential, potential.domain, n, grid=4000)
    if len(potential.segments) == 1:
        pair = reference.infinite_well(potential.domain, n)
        shift = potential.segments[0][2]
        return reference.Eigenpair(pair.energy + shift, pair.psi, pair.method)
    return reference.piecewise_constant(potential.segments, n)


def compare(psi: np.ndarray, dpsi: np.ndarray, quad: Quadrature, ref: reference.Eigenpair) -> dict:
    """Rayleigh quotient, relative L2 error (sign-aligned) and overlap of psi against `ref`.

    `psi` and `dpsi` are the network's values at `quad.x` (any normalisation).
    """
    n2 = np.sum(quad.w * psi**2)
    rayleigh = np.sum(quad.w * (dpsi**2 + quad.v * psi**2)) / n2
    unit = psi / np.sqrt(n2)
    exact = ref.psi(quad.x)
    overlap = np.sum(quad.w * unit * exact)
    sign = 1.0 if overlap >= 0 else -1.0
    l2 = np.sqrt(np.sum(quad.w * (sign * unit - exact) ** 2) / np.sum(quad.w * exact**2))
    return {"rayleigh": float(rayleigh), "l2_error": float(l2), "overlap": float(abs(overlap))}


def relative_error(value: float | None, exact: float) -> float | None:
    if value is None:
        return None
    return abs(value - exact) / abs(exact)


def count_nodes(psi: np.ndarray, floor: float = 1e-3) -> int:
    """Sign changes of psi on a fine grid, ignoring values below floor * max|psi| (the walls and
    deep tails, where rounding noise would add false nodes)."""
    keep = psi[np.abs(psi) > floor * np.max(np.abs(psi))]
    return int(np.sum(np.signbit(keep[1:]) != np.signbit(keep[:-1])))


def parity(psi: np.ndarray) -> str:
    """ "even" or "odd" under x -> lo + hi - x, for psi sampled on a uniform grid of the box."""
    s = float(np.sum(psi * psi[::-1]) / np.sum(psi * psi))
    return "even" if s > 0.5 else "odd" if s < -0.5 else "mixed"
