"""The lowest eigenpairs of a sparse symmetric matrix whose spectrum is bounded below: Lanczos
(ARPACK) on the shifted inverse, with the eigenvalues below a shift counted from the pivots of
an unpivoted LU (Sylvester's law of inertia) so that a state Lanczos missed is sought again.
The spectral-element reference (spectral2d.py) solves its discrete problems with it.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, eigsh, splu

SEARCHES = 4  # Lanczos runs allowed to find every state (a rerun seeks the ones missed)


def factor(b: sp.csc_matrix, shift: float, order: np.ndarray) -> tuple[LinearOperator, int]:
    """(b - shift)^-1 as an operator, and the number of eigenvalues of b below shift.

    The LU is taken in `order` (a fill-reducing one) without pivoting. For symmetric b that is
    L D L^T with U = D L^T, so by Sylvester's law of inertia the negative pivots count the
    eigenvalues below.
    """
    shifted = (b - shift * sp.identity(b.shape[0], format="csc")).tocsr()[order][:, order]
    lu = splu(
        shifted.tocsc(),
        permc_spec="NATURAL",
        diag_pivot_thresh=0.0,
        options={"SymmetricMode": True},
    )
    if np.any(lu.perm_r != np.arange(b.shape[0])):
        raise RuntimeError(f"the LU of b - {shift} pivoted: its pivots no longer count eigenvalues")
    inverse = np.argsort(order)
    solve = LinearOperator(b.shape, matvec=lambda r: lu.solve(r[order])[inverse], dtype=float)
    return solve, int(np.sum(lu.U.diagonal() < 0))


def _deflated(solve: LinearOperator, found: np.ndarray) -> LinearOperator:
    """solve with the span of the orthonormal columns of `found` projected out (both sides)."""

    def matvec(r: np.ndarray) -> np.ndarray:
        y = solve.matvec(r - found @ (found.T @ r))
        return y - found @ (found.T @ y)

    return LinearOperator(solve.shape, matvec=matvec, dtype=float)


def lowest(b: sp.csc_matrix, sigma: float, count: int, order: np.ndarray) -> np.ndarray:
    """The `count` lowest eigenvectors of b (all eigenvalues above sigma), by Lanczos on
    (b - sigma)^-1, whose largest eigenvalues 1 / (E - sigma) belong to the lowest E.

    Single-vector Lanczos can miss a copy of a (near-)degenerate eigenvalue, and did, in an empty
    rectangle with an accidental degeneracy. So the eigenvalues below the highest one found are
    counted (matrix inertia), and any missing are sought again with the found ones projected out.
    ARPACK starts from a fixed pseudo-random vector: its own random default would make degenerate
    bases vary between calls, and a smooth one (all ones) misses every state odd under a symmetry.
    """
    solve, below = factor(b, sigma, order)
    if below:
        raise RuntimeError(
            f"{below} eigenvalues lie below the shift {sigma}, meant to be below all"
        )
    start = np.random.default_rng(0).standard_normal(b.shape[0])
    found, energies, want = np.empty((b.shape[0], 0)), np.empty(0), count
    for _ in range(SEARCHES):
        mu, vectors = eigsh(_deflated(solve, found), k=want, which="LM", tol=1e-12, v0=start)
        found = np.hstack([found, vectors])
        energies = np.append(energies, sigma + 1.0 / mu)
        rank = np.argsort(energies)
        top = energies[rank[count - 1]]
        ceiling = top + 1e-6 * (top - sigma)  # a margin far above rounding in the pivots
        want = factor(b, ceiling, order)[1] - int(np.sum(energies < ceiling))
        if want <= 0:
            return found[:, rank[:count]].T
    raise RuntimeError(f"{want} eigenvalues below {top} stayed hidden from Lanczos")
