"""H psi, the residual, quadrature, normalisation and the Rayleigh quotient.

Pure functions of (params, points); no configuration objects. Units: hbar^2 / 2m = 1, so
H psi = -psi'' + V psi.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from .model import TrialFunction, derivatives


@dataclass(frozen=True)
class Grid:
    """Collocation points that double as quadrature nodes: integral f ~ sum(w * f(x))."""

    x: np.ndarray
    w: np.ndarray
    v: np.ndarray  # V at x


def gauss_grid(pieces, total: int, potential: Callable, min_per_piece: int = 8) -> Grid:
    """Gauss-Legendre nodes on each smooth piece, about `total` in all, split by piece length.

    Integrals of piecewise-smooth integrands are then exact to the order of the rule; no node sits
    on a breakpoint, so V is never evaluated at a jump.
    """
    lengths = np.array([b - a for a, b in pieces])
    counts = np.maximum(min_per_piece, np.round(total * lengths / lengths.sum()).astype(int))
    xs, ws = [], []
    for (a, b), n in zip(pieces, counts):
        t, u = np.polynomial.legendre.leggauss(int(n))
        xs.append(0.5 * (b - a) * t + 0.5 * (a + b))
        ws.append(0.5 * (b - a) * u)
    x = np.concatenate(xs)
    return Grid(x, np.concatenate(ws), np.asarray(potential(x), dtype=float))


def uniform_grid(domain, total: int, potential: Callable) -> Grid:
    """`total` evenly spaced points including both walls, with trapezoid weights."""
    x = np.linspace(domain[0], domain[1], total)
    w = np.full(total, x[1] - x[0])
    w[[0, -1]] *= 0.5
    return Grid(x, w, np.asarray(potential(x), dtype=float))


def residual(p, d2p, v, energy):
    """(H - E) psi = -psi'' + (V - E) psi."""
    return -d2p + (v - energy) * p


def evaluate(psi: Callable, params, x) -> tuple[jax.Array, jax.Array, jax.Array]:
    """psi, psi', psi'' at every point of x (shape (N,) each)."""
    if isinstance(psi, TrialFunction):
        return derivatives(psi, params, x)  # one pass over all points: (N, width) matmuls
    return jax.vmap(lambda xi: derivatives(psi, params, xi))(x)


def rayleigh_quotient(p, dp, w, v):
    """E_R = integral(psi'^2 + V psi^2) / integral(psi^2); psi vanishes at the walls."""
    return jnp.sum(w * (dp**2 + v * p**2)) / jnp.sum(w * p**2)


def loss_terms(
    p, d2p, w, v, energy, *, normalization: str, norm_weight: float
) -> dict[str, jax.Array]:
    """Named loss terms; the total loss is their sum.

    "hard": residual = integral(r^2) / integral(psi^2), invariant to the scale of psi, so the
    trivial psi = 0 and the scale ambiguity are gone without a weight to tune.
    "penalty" (the paper's form): residual = integral(r^2), norm = w (integral(psi^2) - 1)^2.
    """
    r2 = jnp.sum(w * residual(p, d2p, v, energy) ** 2)
    n2 = jnp.sum(w * p**2)
    if normalization == "hard":
        return {"residual": r2 / n2}
    return {"residual": r2, "norm": norm_weight * (n2 - 1.0) ** 2}
