"""Reference eigenpairs of -psi'' + V(x) psi = E psi, psi(lo) = psi(hi) = 0, for any V by
second-order central differences on a uniform grid (optionally Richardson-extrapolated): for smooth
V the extrapolated energy is O(h^4); for V with jumps it is only as good as the placement of the
jumps allows (see ``finite_difference``). Conventions as in reference.py (normalised psi, 0
outside [lo, hi], psi'(lo) > 0).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.linalg import eigh_tridiagonal

from .reference import Eigenpair, PotentialFn, Wavefunction, check_domain, check_n

_EIG_TOL = 2 * np.finfo(float).tiny  # LAPACK's "most accurate" absolute tolerance for stebz


def _check_grid(grid: int, n_states: int) -> int:
    grid = check_n(grid, "grid")
    if grid < n_states + 1 or grid < 3:
        raise ValueError(f"grid={grid} intervals is too coarse for {n_states} states")
    return grid


def _sample_potential(v: PotentialFn, x: np.ndarray, h: float) -> np.ndarray:
    """V at the nodes as the mean of the two one-sided values (x -/+ 1e-6 h).

    For smooth V this is V(x) up to ~1e-12 h^2 V''; at a jump lying on a node it gives the average
    of the two sides, which keeps the scheme second order there (a one-sided value would be O(h)).
    """
    eps = 1e-6 * h
    vx = 0.5 * (np.asarray(v(x - eps), dtype=float) + np.asarray(v(x + eps), dtype=float))
    vx = np.broadcast_to(vx, x.shape)
    if not np.all(np.isfinite(vx)):
        raise ValueError("the potential returned non-finite values on the grid")
    return vx


def _fd_solve(
    v: PotentialFn, lo: float, hi: float, n_states: int, grid: int, vectors: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Lowest n_states eigenpairs of the FD operator on `grid` intervals: (nodes, E, vectors)."""
    h = (hi - lo) / grid
    x = lo + h * np.arange(1, grid)
    diag = 2.0 / h**2 + _sample_potential(v, x, h)
    off = np.full(grid - 2, -1.0 / h**2)
    # bisection to full precision: the default tolerance eps * ||T|| ~ eps * 4 / h^2 costs ~1e-9
    options = dict(select="i", select_range=(0, n_states - 1), lapack_driver="stebz", tol=_EIG_TOL)
    if not vectors:
        return x, eigh_tridiagonal(diag, off, eigvals_only=True, **options), None
    energies, vecs = eigh_tridiagonal(diag, off, **options)
    return x, energies, vecs


def finite_difference_energies(
    v: PotentialFn, domain: tuple[float, float], n_states: int, grid: int
) -> np.ndarray:
    """Lowest n_states eigenvalues of the plain second-order FD operator (grid = # of intervals)."""
    lo, hi = check_domain(domain)
    n_states = check_n(n_states, "n_states")
    if n_states == 0:
        raise ValueError("n_states must be >= 1")
    grid = _check_grid(grid, n_states)
    return _fd_solve(v, lo, hi, n_states, grid, vectors=False)[1]


def _spline_psi(x: np.ndarray, u: np.ndarray, lo: float, hi: float) -> Wavefunction:
    """Cubic spline through (lo, 0), (x, u), (hi, 0), normalised exactly, with psi'(lo) > 0."""
    knots = np.concatenate([[lo], x, [hi]])
    vals = np.concatenate([[0.0], u, [0.0]])
    # psi'(lo) > 0 <=> psi > 0 before its first node. u[0] alone can be rounding noise when psi is
    # tiny at the wall (e.g. a harmonic tail), so use the first entry well above the noise level.
    first = np.flatnonzero(np.abs(u) > 1e-8 * np.abs(u).max())[0]
    sign = 1.0 if u[first] > 0 else -1.0
    spline = CubicSpline(knots, sign * vals, extrapolate=False)
    nodes, weights = np.polynomial.legendre.leggauss(4)  # exact for the degree-6 spline^2
    left, width = knots[:-1, None], np.diff(knots)[:, None]
    norm_sq = float(np.sum(0.5 * width * spline(left + 0.5 * (nodes + 1) * width) ** 2 * weights))
    scale = 1.0 / math.sqrt(norm_sq)

    def psi(xq: np.ndarray) -> np.ndarray:
        return np.nan_to_num(scale * spline(np.asarray(xq, dtype=float)), nan=0.0)

    return psi


def finite_difference(
    v: PotentialFn,
    domain: tuple[float, float],
    n: int,
    grid: int = 4000,
    richardson: bool = True,
) -> Eigenpair:
    """Eigenpair n by second-order central differences on `grid` uniform intervals.

    With ``richardson`` the problem is also solved with 2 * grid intervals and the energy is
    extrapolated as (4 E_{h/2} - E_h) / 3; psi is a cubic spline of the finest grid's eigenvector.
    For smooth V the extrapolated error is O(h^4). V is sampled at the nodes as the mean of its two
    one-sided values, so a jump that lies on a node gets the average of both sides: the plain error
    is then O(h^2) and, when every jump lies on a node of the coarse grid (hence of both grids), the
    extrapolation removes it (observed ~1e-10 relative at grid=4000). A jump strictly between nodes
    is seen one-sidedly and shifted by up to h/2: O(h) error (observed ~1e-4 relative at grid=4000,
    V0=50) of alternating sign, which extrapolation does not remove. Exactly midway between nodes
    is O(h^2) but becomes a node on the fine grid, so extrapolation only partly helps.
    """
    lo, hi = check_domain(domain)
    n = check_n(n)
    grid = _check_grid(grid, n + 1)
    x, energies, vecs = _fd_solve(v, lo, hi, n + 1, grid * (2 if richardson else 1), vectors=True)
    energy = float(energies[n])
    if richardson:
        coarse = _fd_solve(v, lo, hi, n + 1, grid, vectors=False)[1][n]
        energy = (4.0 * energy - coarse) / 3.0
    return Eigenpair(
        energy=energy, psi=_spline_psi(x, vecs[:, n], lo, hi), method="finite_difference"
    )
