"""The problem a network is trained on, as plain arrays, and the losses built from the physics.

A Problem is everything the jitted code needs: the trial function, the collocation points
(which are also quadrature nodes) and their weights, V there, how E is held, and the lower
states to stay orthogonal to. It is dimension-agnostic: points are (N, d).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from . import physics
from .model import TrialFunction
from .quadrature import Rule


@dataclass(frozen=True)
class Problem:
    """Everything the jitted code needs, as plain values and arrays."""

    psi: TrialFunction
    x: jax.Array  # (N, d)
    w: jax.Array  # (N,)
    v: jax.Array  # (N,) V at x
    fixed_energy: float | None  # None: E is a trainable parameter
    energy_scale: float  # E = energy_scale * params["energy"] when learned
    normalization: str = "hard"
    norm_weight: float = 1.0
    lower: physics.Lower | None = None  # lower eigenstates to stay orthogonal to
    first_stage: str = "residual"  # "residual" | "ritz" (minimise the Rayleigh quotient first)

    def energy(self, params) -> jax.Array:
        if self.fixed_energy is None:
            return self.energy_scale * params["energy"]
        return jnp.asarray(self.fixed_energy, dtype=self.x.dtype)

    def fields(self, params) -> tuple[jax.Array, jax.Array, jax.Array]:
        """psi, grad psi and lap psi of the network (before projection) at the points."""
        return physics.evaluate(self.psi, params["net"], self.x)

    def projected(self, params) -> tuple[jax.Array, jax.Array]:
        """psi and lap psi with the lower states projected out."""
        p, _, lap = self.fields(params)
        return physics.project(self.lower, self.w, p, lap)


def make_problem(
    psi: TrialFunction,
    rule: Rule,
    potential,
    *,
    fixed_energy,
    normalization,
    norm_weight,
    dtype,
    lower: physics.Lower | None = None,
    first_stage: str = "residual",
) -> Problem:
    """The problem on a quadrature rule; E's scale is the flat box's ground energy."""
    scale = sum((math.pi / length) ** 2 for length in psi.box.lengths)
    as_array = lambda a: jnp.asarray(a, dtype)  # noqa: E731
    return Problem(
        psi=psi,
        x=as_array(rule.x),
        w=as_array(rule.w),
        v=as_array(potential.values(rule.x)),
        fixed_energy=fixed_energy,
        energy_scale=scale,
        normalization=normalization,
        norm_weight=norm_weight,
        lower=None if lower is None else physics.Lower(as_array(lower.p), as_array(lower.lap)),
        first_stage=first_stage,
    )


def init_params(problem: Problem, net_params, energy_init: float | None, members: int = 1) -> dict:
    """Trainable pytree: {"net": ...} plus {"energy": ...} when E is learned.

    A learned energy starts at `energy_init`, or at the lower bound min V + sum (pi / L_i)^2 of
    every eigenvalue. Starting below the spectrum lets the residual pull E up to the ground
    state; a start above it (e.g. the Rayleigh quotient of a random psi, spread over a deep
    well's walls) can settle on a state of a forbidden region instead. With members > 1 every
    leaf has a leading member axis.
    """
    params = {"net": net_params}
    if problem.fixed_energy is None:
        if energy_init is None:
            energy_init = float(jnp.min(problem.v)) + problem.energy_scale
        shape = () if members == 1 else (members,)
        params["energy"] = jnp.full(shape, energy_init / problem.energy_scale, problem.x.dtype)
    return params


def rayleigh(problem: Problem, params) -> jax.Array:
    """Rayleigh quotient of the (projected) trial function on the training grid."""
    if problem.lower is None:
        p, grad, _ = problem.fields(params)
        return physics.rayleigh_quotient(p, grad, problem.w, problem.v)
    return physics.energy_quotient(*problem.projected(params), problem.w, problem.v)


def make_loss(problem: Problem, kind: str = "residual") -> Callable:
    """params -> (total, named terms). "residual": the PDE residual (+ norm); "ritz": the
    Rayleigh quotient of the projected psi, whose minimum over the orthogonal complement of the
    lower states is the next eigenstate."""

    def loss(params):
        p, lap = problem.projected(params)
        if kind == "ritz":
            energy = physics.energy_quotient(p, lap, problem.w, problem.v)
            return energy / problem.energy_scale, {"ritz": energy}
        terms = physics.loss_terms(
            p,
            lap,
            problem.w,
            problem.v,
            problem.energy(params),
            normalization=problem.normalization,
            norm_weight=problem.norm_weight,
        )
        return sum(terms.values()), terms

    return loss
