"""Excited states: orthogonalisation against the lower states and Rayleigh-Ritz over them.

State k trains its own network with states 0..k-1 projected out on the quadrature grid, so it
lives in their orthogonal complement; `Basis` keeps the trained states as W-orthonormal
combinations of the raw networks, and `ritz_output_layer` starts the residual stage from the
exact minimiser of the Rayleigh quotient over the network's learned features.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from . import physics
from .problem import Problem


class Basis:
    """The trained states as W-orthonormal combinations of the raw trial functions.

    State k's function is its network's psi with the lower states projected out on the training
    grid; `rows[k]` holds its coefficients over networks 0..k, so it can be evaluated anywhere.
    States with a parity (trained on half of a symmetric domain, where the grid's inner product
    of an even and an odd function is not zero) are orthogonal to the other parity by
    construction: only states of the same parity enter each other's rows and projections.
    """

    def __init__(self, w: np.ndarray):
        self.w = w
        self.rows: list[np.ndarray] = []
        self.parities: list[int | None] = []
        self.p: list[np.ndarray] = []  # raw networks' psi on the training grid
        self.grad: list[np.ndarray] = []
        self.lap: list[np.ndarray] = []

    def lower(self, parity: int | None = None) -> physics.Lower | None:
        """The states so far (of `parity` only, when given) on the training grid; None before
        the first. With none of that parity yet, one zero column: the state is still projected
        (onto nothing), so it shares the programs of the states that have lower states."""
        if not self.rows:
            return None
        keep = self._same(parity)
        if not keep:
            zero = np.zeros_like(self.p[0])[:, None]
            return physics.Lower(zero, zero, np.zeros_like(self.grad[0])[:, None, :])
        a = self._matrix()[keep]
        grad = np.einsum("mjd,kj->mkd", np.stack(self.grad, 1), a)
        return physics.Lower(np.stack(self.p, 1) @ a.T, np.stack(self.lap, 1) @ a.T, grad)

    def _same(self, parity: int | None) -> list[int]:
        return [k for k, q in enumerate(self.parities) if parity is None or q == parity]

    def _matrix(self) -> np.ndarray:
        k = len(self.rows)
        return np.array([np.pad(r, (0, k - len(r))) for r in self.rows])

    def add(self, p: np.ndarray, grad: np.ndarray, lap: np.ndarray, parity=None) -> None:
        """Append a network's psi (M,), grad psi (M, d) and lap psi (M,) on the training grid,
        orthogonalised against the states so far (of its `parity`, when it has one) and
        normalised."""
        k = len(self.rows)
        row = np.zeros(k + 1)
        row[k] = 1.0
        keep = self._same(parity)
        if keep:
            a = self._matrix()[keep]
            phi = np.stack(self.p, 1) @ a.T
            c = phi.T @ (self.w * p)
            row[:k] -= c @ a
        self.parities.append(parity)
        self.p.append(p)
        self.grad.append(grad.reshape(p.shape[0], -1))
        self.lap.append(lap)
        f = np.stack(self.p, 1) @ row
        self.rows.append(row / np.sqrt(np.sum(self.w * f * f)))

    def combine(self, raw: list[np.ndarray]) -> list[np.ndarray]:
        """Each state's values from the raw networks' values (N,) or (N, d) on any grid."""
        stacked = np.stack(raw, -1)
        return [stacked[..., : len(r)] @ r for r in self.rows]


@jax.jit
def _basis_taylor(psi, net, x):
    """psi's output-layer basis, its gradient and its Laplacian (TrialFunction.basis_taylor),
    compiled once for every state whose trial function has the same structure."""
    return psi.basis_taylor(net, x)


def ritz_output_layer(problem: Problem, params) -> dict:
    """Rayleigh-Ritz in the span of the last hidden layer: set the (linear) output layer to the
    lowest eigenvector of H in that span, orthogonal to the lower states, and E to its Rayleigh
    quotient. With `problem.lower_weight` the eigenvector is H's plus that weight times the
    combination's content along the lower states (as in the Ritz stage's loss): among nearly
    equal quotients, the one the network holds without large cancellation.

    Adam only approaches the minimum of the Rayleigh quotient; the residual stage then converges
    to the nearest eigenpair, which may be a higher state. The exact minimum over the learned
    features is a much closer start, and it costs one small generalised eigenproblem.
    """
    import scipy.linalg

    raw, grad, lap = _basis_taylor(problem.psi, params["net"], problem.x)
    f, grad, _ = physics.project_fields(problem.lower, problem.w, raw, grad, lap)
    f, grad, w, v = (np.asarray(a, float) for a in (f, grad, problem.w, problem.v))
    s = f.T @ (w[:, None] * f)
    # H from |grad psi|^2 + V psi^2 (physics.rayleigh_quotient): symmetric, and no combination's
    # quotient falls below min V however it aliases between the nodes
    h = np.einsum("mid,m,mjd->ij", grad, w, grad) + f.T @ ((w * v)[:, None] * f)
    penalised = h
    if problem.lower_weight > 0:  # as the Ritz stage's loss: + lower_weight * lower_content
        along = np.asarray(problem.lower.p, float).T @ (w[:, None] * np.asarray(raw, float))
        penalised = h + problem.lower_weight * problem.energy_scale * along.T @ along
    lam, u = np.linalg.eigh(s)  # drop the directions the features (nearly) do not span
    # Combinations below 1e-9 of the largest are not resolved by the grid: between its points
    # they are unconstrained, and their grid Rayleigh quotients can be spurious values (with
    # 1e-12 the oscillator's states 8-9 started from such values and landed below state 3).
    keep = lam > 1e-9 * lam.max()
    t = u[:, keep] / np.sqrt(lam[keep])
    _, y = scipy.linalg.eigh(t.T @ penalised @ t)
    c = t @ y[:, 0]
    net = jax.tree.map(lambda a: a, params["net"])
    dtype = net["out"]["kernel"].dtype
    net["out"] = {"kernel": jnp.asarray(c[:-1, None], dtype), "bias": jnp.asarray(c[-1:], dtype)}
    out = {**params, "net": net}
    if problem.fixed_energy is None:
        energy = (c @ h @ c) / (c @ s @ c)  # its Rayleigh quotient
        out["energy"] = jnp.asarray(energy / problem.energy_scale, dtype)
    return out
