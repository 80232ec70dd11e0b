"""Reference eigenpairs of -lap psi + V(x, y) psi = E psi in 2-D, psi = 0 on the boundary.

Units hbar^2/2m = 1. Every solver returns the lowest k states as a `Spectrum2D`: energies ascending
and counted with multiplicity, and one vectorised psi for all of them, orthonormal on the domain.
Within a degenerate level the basis is arbitrary (but deterministic): compare subspaces, grouped by
`levels`. NumPy/SciPy only, like `reference`:

* ``box2d``, ``harmonic2d``, ``disk``: closed forms (products of sines or Hermite functions; Bessel
  functions times cos/sin(m theta)); ``harmonic2d`` in a box whose walls reach psi: products of
  the 1-D oscillators' Galerkin states in their boxes.
* ``separable2d``: V = Vx(x) + Vy(y) piecewise constant; sums and products of the exact 1-D matching
  eigenpairs of `reference.piecewise_constant`.
* ``spectral2d.spectral_element``: any V on a rectangle (its own module).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import jn_zeros, jv

from .reference import (
    Eigenpair,
    Segment,
    check_domain,
    harmonic,
    infinite_well,
    piecewise_constant,
)

Wavefunctions = Callable[[np.ndarray], np.ndarray]
Rect = tuple[tuple[float, float], tuple[float, float]]

_EPS = np.finfo(float).eps
_CLOSED_FORM_ACCURACY = 4 * _EPS  # a sum of two correctly rounded terms
_DISK_ACCURACY = 4e-15  # jn_zeros: |J_m(j)/J_m'(j)| / j <= 7e-16 measured for m, s < 30
_MATCHING_ACCURACY = 1e-13  # reference.piecewise_constant's stated relative accuracy
_GALERKIN_ACCURACY = 1e-11  # eigenbases.eigenbasis's Legendre Galerkin, converged in the energies


@dataclass(frozen=True)
class Spectrum2D:
    """The lowest k states: energies (k,) ascending and psi(points (N, 2)) -> (k, N)."""

    energies: np.ndarray
    psi: Wavefunctions
    method: str  # "closed_form" | "matching" | "spectral_element"
    accuracy: float  # relative energy accuracy: rounding for closed forms, measured otherwise


def levels(energies: Sequence[float], rtol: float = 1e-9) -> list[list[int]]:
    """Indices of `energies` grouped into (near-)degenerate levels, lowest level first.

    A level collects every energy within rtol (relative) of its lowest member; comparing with the
    lowest member rather than the previous one keeps a dense ladder from chaining into one level.
    """
    values = np.asarray(energies, dtype=float).ravel()
    groups: list[list[int]] = []
    start = 0.0
    for i in np.argsort(values, kind="stable"):
        if not groups or values[i] - start > rtol * max(abs(values[i]), abs(start)):
            groups.append([])
            start = values[i]
        groups[-1].append(int(i))
    return groups


# --------------------------------------------------------------------------- input validation


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k (the number of states) must be an integer >= 1, got {k!r}")
    return int(k)


def _check_rect(domain) -> Rect:
    try:
        x_range, y_range = domain
    except (TypeError, ValueError) as err:
        raise ValueError(f"domain must be ((x0, x1), (y0, y1)), got {domain!r}") from err
    return (
        check_domain(x_range, "the x range of domain"),
        check_domain(y_range, "the y range of domain"),
    )


def _check_positive(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number > 0, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _check_points(points) -> tuple[np.ndarray, np.ndarray]:
    points = np.asarray(points, dtype=float)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points must have shape (N, 2), got {points.shape}")
    return points[:, 0], points[:, 1]


# --------------------------------------------------------------------------- closed forms


def _lowest_sums(ex: np.ndarray, ey: np.ndarray, k: int):
    """The k lowest sums ex[i] + ey[j] (ties ordered by the x index, then y) and their (i, j).

    The caller must pass enough 1-D energies: every pair among the k lowest sums must be present.
    """
    i, j = (a.ravel() for a in np.meshgrid(np.arange(len(ex)), np.arange(len(ey)), indexing="ij"))
    sums = ex[i] + ey[j]
    pick = np.lexsort((j, i, sums))[:k]
    return sums[pick], i[pick], j[pick]


def _products(
    xs: Sequence[Eigenpair], ys: Sequence[Eigenpair], k: int
) -> tuple[np.ndarray, Wavefunctions]:
    """The k lowest sums of 1-D energies (`_lowest_sums`) and the products of their states."""
    ex, ey = (np.array([s.energy for s in axis]) for axis in (xs, ys))
    sums, i, j = _lowest_sums(ex, ey, k)
    pairs = [(xs[a].psi, ys[b].psi) for a, b in zip(i, j)]

    def psi(points: np.ndarray) -> np.ndarray:
        x, y = _check_points(points)
        return np.stack([fx(x) * fy(y) for fx, fy in pairs])

    return sums, psi


def box2d(domain: Rect, k: int) -> Spectrum2D:
    """V = 0 in the rectangle: E = pi^2 (n^2/Lx^2 + m^2/Ly^2), psi = products of sines.

    k sines per axis suffice: state (n, m) has at least max(n, m) states at or below it.
    """
    (x_range, y_range), k = _check_rect(domain), _check_k(k)
    xs, ys = ([infinite_well(axis, n) for n in range(k)] for axis in (x_range, y_range))
    return Spectrum2D(*_products(xs, ys, k), "closed_form", _CLOSED_FORM_ACCURACY)


def harmonic2d(omega, k: int, domain: Rect | None = None) -> Spectrum2D:
    """V = wx^2 x^2 + wy^2 y^2 (omega = w or (wx, wy)). On the plane (no `domain`): E = wx(2n+1)
    + wy(2m+1), psi = products of the Hermite functions of `reference.harmonic`.

    In the rectangle `domain` with psi = 0 on its sides, V separates into two 1-D oscillators in
    boxes, each solved by `eigenbases.eigenbasis`: Hermite functions for the states whose tails
    are below 1e-11 at both walls, Legendre Galerkin (converged to 1e-11) for the rest. The plane's
    closed form is wrong where the walls reach psi: omega = (0.5, 1) in the default [-6, 6]^2 has
    its ground state at 1.50000007075, 4.7e-8 above the plane's 1.5.
    """
    k = _check_k(k)
    pair = (omega, omega) if np.ndim(omega) == 0 else tuple(omega)
    if len(pair) != 2:
        raise ValueError(f"omega must be a number or a pair (wx, wy), got {omega!r}")
    ws = [_check_positive(w, "omega") for w in pair]
    if domain is None:
        xs, ys = ([harmonic(w, n) for n in range(k)] for w in ws)
        return Spectrum2D(*_products(xs, ys, k), "closed_form", _CLOSED_FORM_ACCURACY)
    from . import eigenbases, potentials

    axes = [potentials.harmonic(axis, w) for axis, w in zip(_check_rect(domain), ws)]
    bases = [eigenbases.eigenbasis(axis, k) for axis in axes]
    energies, psi, (i, j) = _basis_products(*bases, k)
    plane = ws[0] * (2 * i + 1.0) + ws[1] * (2 * j + 1.0)
    if np.all(np.abs(energies - plane) <= _GALERKIN_ACCURACY * plane):  # walls move no level
        return Spectrum2D(plane, psi, "closed_form", _CLOSED_FORM_ACCURACY)
    return Spectrum2D(energies, psi, "galerkin", _GALERKIN_ACCURACY)


def _basis_products(bx, by, k: int) -> tuple[np.ndarray, Wavefunctions, tuple]:
    """`_products` for two 1-D `eigenbases.Eigenbasis` (each evaluated once per call), with the
    1-D indices (i, j) of the k states."""
    sums, i, j = _lowest_sums(bx.energies, by.energies, k)

    def psi(points: np.ndarray) -> np.ndarray:
        x, y = _check_points(points)
        fx, fy = bx.states(x), by.states(y)
        return np.stack([fx[:, a] * fy[:, b] for a, b in zip(i, j)])

    return sums, psi, (i, j)


def _disk_modes(k: int) -> list[tuple[float, int, int, int]]:
    """(j_{m,s}, m, s, part) of the k lowest disk states; part 0 = cos(m theta), 1 = sin.

    Mode (m, s) has s modes with the same m and m + 1 with the same s at or below it (Bessel zeros
    grow with both indices), so the k lowest have s <= k and m < k.
    """
    modes = [
        (float(j), m, s, part)
        for m in range(k)
        for s, j in enumerate(jn_zeros(m, k), start=1)
        for part in ((0,) if m == 0 else (0, 1))
    ]
    return sorted(modes)[:k]


def disk(radius: float, k: int) -> Spectrum2D:
    """V = 0 in the disk of the given radius centred at 0: E = j_{m,s}^2 / R^2.

    psi = J_m(j r / R) times 1, cos(m theta) or sin(m theta), normalised with the closed-form
    integral of J_m^2 (R^2 J_{m+1}(j)^2 / 2), and 0 outside the disk; J_m(j r/R) > 0 near r = 0.
    """
    radius, k = _check_positive(radius, "radius"), _check_k(k)
    modes = _disk_modes(k)
    energies = np.array([(j / radius) ** 2 for j, *_ in modes])

    def psi(points: np.ndarray) -> np.ndarray:
        x, y = _check_points(points)
        r, theta = np.hypot(x, y), np.arctan2(y, x)
        out = []
        for j, m, _, part in modes:
            angular = np.sin(m * theta) if part else np.cos(m * theta)
            norm = math.sqrt((1 if m == 0 else 2) / math.pi) / (radius * abs(jv(m + 1, j)))
            out.append(np.where(r <= radius, norm * jv(m, j * r / radius) * angular, 0.0))
        return np.stack(out)

    return Spectrum2D(energies, psi, "closed_form", _DISK_ACCURACY)


# --------------------------------------------------------------------------- separable matching


def separable2d(x_segments: Sequence[Segment], y_segments: Sequence[Segment], k: int) -> Spectrum2D:
    """V = Vx(x) + Vy(y), each piecewise constant: sums and products of exact 1-D eigenpairs.

    1-D levels are solved one at a time and only as far as needed: an axis gets another level
    while its highest so far, plus the other axis' ground state, still lies within the k lowest
    sums found so far (an upper bound on the true k-th sum).
    """
    k = _check_k(k)
    segments = (x_segments, y_segments)
    axes = [[piecewise_constant(pieces, 0)] for pieces in segments]
    while True:
        ex, ey = (np.array([s.energy for s in axis]) for axis in axes)
        sums = np.sort(np.add.outer(ex, ey).ravel())
        bound = sums[k - 1] if sums.size >= k else math.inf
        grow = (len(ex) < k and ex[-1] + ey[0] <= bound, len(ey) < k and ey[-1] + ex[0] <= bound)
        if not any(grow):
            return Spectrum2D(*_products(*axes, k), "matching", _MATCHING_ACCURACY)
        for axis, pieces, more in zip(axes, segments, grow):
            if more:
                axis.append(piecewise_constant(pieces, len(axis)))
