"""H psi, the residual, the projection onto lower states, normalisation and the Rayleigh quotient.

Pure functions of arrays; no configuration objects. Units: hbar^2 / 2m = 1, so
H psi = -lap psi + V psi. Points are (N, d); psi, V, lap psi and the weights are (N,); the
gradient is (N, d). Every optimiser stage, the excited-state projection and the judging of a run
call these functions: the physics is written once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from .model import TrialFunction, derivatives


def residual(p, lap, v, energy):
    """(H - E) psi = -lap psi + (V - E) psi."""
    return -lap + (v - energy) * p


def evaluate(psi: Callable, params, x) -> tuple[jax.Array, jax.Array, jax.Array]:
    """psi (N,), grad psi (N, d) and lap psi (N,) at every point of x (N, d)."""
    if isinstance(psi, TrialFunction):
        return derivatives(psi, params, x)  # one pass over all points: (N, width) matmuls
    return jax.vmap(lambda xi: derivatives(psi, params, xi))(x)


def rayleigh_quotient(p, grad, w, v):
    """E_R = integral(|grad psi|^2 + V psi^2) / integral(psi^2); psi vanishes on the boundary.

    This form, not <psi, -lap psi + V psi>, on any rule with positive weights is at least min V:
    a function that curves up at every node (lap psi / psi > 0 there) makes the Laplacian form
    as negative as it likes, and minimising it finds such aliased functions (a 2-D square
    well's third state went to E ~ -4e4 that way)."""
    return jnp.sum(w * (jnp.sum(grad**2, axis=-1) + v * p**2)) / jnp.sum(w * p**2)


@dataclass(frozen=True, eq=False)
class Lower:
    """Lower eigenstates on the grid: values and Laplacians (M, K), gradients (M, K, d),
    W-orthonormal columns. Zero columns (padding, so that every state of a run has the same
    shapes) change nothing."""

    p: jax.Array
    lap: jax.Array
    grad: jax.Array

    def padded(self, k: int) -> Lower:
        """The same states with zero columns up to k (as they are when they have k or more)."""
        if self.p.shape[1] >= k:
            return self
        pad = lambda a: jnp.pad(a, ((0, 0), (0, k - a.shape[1])) + ((0, 0),) * (a.ndim - 2))  # noqa: E731
        return Lower(pad(self.p), pad(self.lap), pad(self.grad))


jax.tree_util.register_dataclass(Lower, ["p", "lap", "grad"], [])


def _weights_like(w, a):
    """w (M,) shaped to multiply a, which is (M,) or (M, P) (a Jacobian)."""
    return w.reshape(w.shape + (1,) * (a.ndim - 1))


def overlaps(lower: Lower, w, p):
    """c_k = <lower_k, psi> (K,), or (K, P) when p is a Jacobian (M, P)."""
    return lower.p.T @ (_weights_like(w, p) * p)


def lower_content(lower: Lower, w, p):
    """sum_k c_k^2 / integral (P psi)^2: how much of psi lies along the lower states against
    what is left of it once they are projected out (0 for psi orthogonal to them). The
    projected loss does not see it; where it is large, the state is a small difference of
    large functions and rounding in the lower states grows by as much (problem.LOWER_WEIGHT)."""
    c = overlaps(lower, w, p)
    left = p - lower.p @ c
    return jnp.sum(c**2) / jnp.sum(w * left**2)


def project(lower: Lower | None, w, p, lap):
    """psi with the lower states removed, and lap psi with the same combination removed."""
    if lower is None:
        return p, lap
    c = overlaps(lower, w, p)
    return p - lower.p @ c, lap - lower.lap @ c


def project_fields(lower: Lower | None, w, p, grad, lap):
    """psi (M,) or (M, B), grad psi (M, d) or (M, B, d) and lap psi with the lower states
    removed (the same combination from each)."""
    if lower is None:
        return p, grad, lap
    c = overlaps(lower, w, p)
    removed = jnp.einsum("mkd,k...->m...d", lower.grad, c)
    return p - lower.p @ c, grad - removed, lap - lower.lap @ c


def loss_terms(
    p, lap, w, v, energy, *, normalization: str, norm_weight: float
) -> dict[str, jax.Array]:
    """Named loss terms; the total loss is their sum.

    "hard": residual = integral(r^2) / integral(psi^2), invariant to the scale of psi, so the
    trivial psi = 0 and the scale ambiguity are gone without a weight to tune.
    "penalty" (the paper's form): residual = integral(r^2), norm = w (integral(psi^2) - 1)^2.
    """
    r2 = jnp.sum(w * residual(p, lap, v, energy) ** 2)
    n2 = jnp.sum(w * p**2)
    if normalization == "hard":
        return {"residual": r2 / n2}
    return {"residual": r2, "norm": norm_weight * (n2 - 1.0) ** 2}
