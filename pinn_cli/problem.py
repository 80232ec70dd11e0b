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
from .model import TrialFunction, derivatives
from .optim import LeastSquares, chunked_diagonal, with_row
from .quadrature import Rule
from .resources import DIAGONAL_CHUNK

# Weight of an excited state's content along the lower states (physics.lower_content) in the
# Ritz stage's loss, in the output layer's Ritz step and, relative to J, in the LM metric. The
# projected loss does not see that content, and without a cost on it a state's network came to
# hold ~1e3 times more of the lower states than of its own: state 9 of x^2 on [-5, 7] was a
# combination of the raw networks with coefficients up to 8e6, whose rounding (1e-8 in psi,
# inconsistently between psi and its slope) put the judged Rayleigh quotient 1.7e-9 *below*
# the exact level with a psi error of 8e-8 (docs/results.md, "Rounding in the upper states").
LOWER_WEIGHT = 1e-2


@dataclass(frozen=True, eq=False)
class Problem:
    """Everything the jitted code needs, as plain values and arrays. A pytree (arrays, the fixed
    energy and the trial function's carrier are leaves; the rest is static), passed to the
    compiled stages as an argument: the states of a run share their programs."""

    psi: TrialFunction
    x: jax.Array  # (N, d)
    w: jax.Array  # (N,)
    v: jax.Array  # (N,) V at x
    fixed_energy: float | jax.Array | None  # None: E is a trainable parameter
    energy_scale: float  # E = energy_scale * params["energy"] when learned
    normalization: str = "hard"
    norm_weight: float = 1.0
    lower: physics.Lower | None = None  # lower eigenstates to stay orthogonal to
    first_stage: str = "residual"  # "residual" | "ritz" (minimise the Rayleigh quotient first)
    slope_recovery: float = 0.0  # weight of Jagtap et al.'s S(a) in the loss (adaptive slopes)
    # An excited state's coarse estimate of its energy (assemble.coarse_level): the shifted
    # Levenberg-Marquardt steps hold E at the lower of it and the Rayleigh-Ritz value
    target: jax.Array | None = None
    lower_weight: float = 0.0  # of physics.lower_content in the Ritz stage and the LM metric

    def energy(self, params) -> jax.Array:
        if self.fixed_energy is None:
            return self.energy_scale * params["energy"]
        return jnp.asarray(self.fixed_energy, dtype=self.x.dtype)

    def fields(self, params) -> tuple[jax.Array, jax.Array, jax.Array]:
        """psi, grad psi and lap psi of the network (before projection) at the points."""
        return physics.evaluate(self.psi, params["net"], self.x)

    def projected(self, params) -> tuple[jax.Array, jax.Array, jax.Array]:
        """psi, grad psi and lap psi with the lower states projected out."""
        return physics.project_fields(self.lower, self.w, *self.fields(params))

    @property
    def residual_rows(self) -> int:
        """Rows of the residual vector the second-order stage solves for."""
        return self.x.shape[0] + (self.normalization == "penalty") + (self.slope_recovery > 0)

    def loss(self, kind: str = "residual") -> Callable:
        return make_loss(self, kind)

    def least_squares(self, unravel: Callable) -> LeastSquares:
        ls = least_squares(self, unravel)
        if self.slope_recovery > 0:  # the term w S(a) of the loss is the row sqrt(w S(a))
            return with_row(ls, lambda flat: jnp.sqrt(self.recovery(unravel(flat))))
        return ls

    def recovery(self, params) -> jax.Array:
        """The slope-recovery term of the loss, w S(a)."""
        return self.slope_recovery * self.psi.slope_recovery(params["net"])

    def rescaled(self, params):
        """params with psi scaled to integral psi^2 = 1, where that changes nothing else.

        With the hard normalisation the residual divides psi's scale out, so a constant added to
        the exp output (psi = B exp(s N)) is invisible to every stage. Levenberg-Marquardt's
        rounding can drift along it until psi^2 underflows and the loss reads exactly 0 (seen
        with stan on the finite well: psi ~ 1e-154, the stage stopped "converged" on a spoiled
        Rayleigh quotient). Shifting the output bias by -log(n2) / 2s after each block keeps
        psi's scale at 1; the residual, its Jacobian and the LM path are unchanged by it."""
        if self.normalization != "hard" or self.psi.output != "exp":
            return params
        p = self.projected(params)[0]
        shift = -0.5 * jnp.log(jnp.sum(self.w * p**2)) / self.psi.scale
        net = params["net"]
        out = {**net["out"], "bias": net["out"]["bias"] + shift}
        return {**params, "net": {**net, "out": out}}

    def diagnostics(self, params) -> dict[str, jax.Array]:
        """The numbers logged with every block: E and the Rayleigh quotient."""
        return {"energy": self.energy(params), "rayleigh": rayleigh(self, params)}


# The fields that hold one value (or row) per collocation point: split over train.devices.
POINT_FIELDS = ("x", "w", "v", "lower")

jax.tree_util.register_dataclass(
    Problem,
    ["psi", "x", "w", "v", "fixed_energy", "lower", "target"],
    [
        "energy_scale",
        "normalization",
        "norm_weight",
        "first_stage",
        "slope_recovery",
        "lower_weight",
    ],
)


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
    slope_recovery: float = 0.0,
    target: float | None = None,
    lower_weight: float = 0.0,
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
        lower=None if lower is None else jax.tree.map(as_array, lower),
        first_stage=first_stage,
        slope_recovery=slope_recovery,
        target=None if target is None else as_array(target),
        lower_weight=lower_weight if lower is not None else 0.0,
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
    p, grad, _ = problem.projected(params)
    return physics.rayleigh_quotient(p, grad, problem.w, problem.v)


def make_loss(problem: Problem, kind: str = "residual") -> Callable:
    """params -> (total, named terms). "residual": the PDE residual (+ norm); "ritz": the
    Rayleigh quotient of the projected psi, whose minimum over the orthogonal complement of the
    lower states is the next eigenstate. Either plus "slope_recovery", w S(a), when w > 0."""

    def loss(params):
        total, terms = physics_loss(params)
        if problem.slope_recovery > 0:
            terms["slope_recovery"] = problem.recovery(params)
            total = total + terms["slope_recovery"]
        return total, terms

    def physics_loss(params):
        raw = problem.fields(params)
        p, grad, lap = physics.project_fields(problem.lower, problem.w, *raw)
        if kind == "ritz":
            energy = physics.rayleigh_quotient(p, grad, problem.w, problem.v)
            total = energy / problem.energy_scale
            if problem.lower_weight > 0:  # keep psi's part along the lower states small
                content = physics.lower_content(problem.lower, problem.w, raw[0])
                total = total + problem.lower_weight * content
            return total, {"ritz": energy}
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


def _point_residual(problem: Problem, unravel: Callable) -> Callable:
    """(flat, x, V(x)) -> (residual at x before projection, (psi, lap psi))."""

    def point(flat, x, v_x):
        params = unravel(flat)
        p, _, lap = derivatives(problem.psi, params["net"], x)
        return physics.residual(p, lap, v_x, problem.energy(params)), (p, lap)

    return point


def least_squares(problem: Problem, unravel: Callable, chunk: int = DIAGONAL_CHUNK) -> LeastSquares:
    """The residual vector r (||r||^2 equal to the residual loss), its Jacobian and diag(J^T J).

    Row i of J is the gradient of point i's residual -lap psi_i + (V_i - E) psi_i. That scalar
    depends on the parameters through one network evaluation at x_i, so a vmap of per-point
    reverse-mode gradients builds the rows for about one backward pass over the batch. What
    couples the points (projection on the lower states, the normalisation) is low rank: it adds
    the Jacobians of a few scalar functionals (one backward pass each) as outer products.
    """
    sw, lower, w, v = jnp.sqrt(problem.w), problem.lower, problem.w, problem.v
    energy_of = lambda flat: problem.energy(unravel(flat))  # noqa: E731
    point = _point_residual(problem, unravel)
    grad_point = jax.vmap(jax.grad(point, has_aux=True), in_axes=(None, 0, 0))
    val_point = jax.vmap(point, in_axes=(None, 0, 0))

    def projected(flat):
        _, (p, lap) = val_point(flat, problem.x, v)
        return physics.project(lower, w, p, lap)

    def projected_norm2(flat):
        return jnp.sum(w * projected(flat)[0] ** 2)

    def overlaps(flat):
        return physics.overlaps(lower, w, val_point(flat, problem.x, v)[1][0])

    def residual_vector(flat):
        p, lap = projected(flat)
        return _rows(problem, physics.residual(p, lap, v, energy_of(flat)), p)[0]

    def with_jacobian(flat):
        j_res, (p, lap) = grad_point(flat, problem.x, v)
        energy = energy_of(flat)
        if lower is not None:
            # The projected residual is q - R(lower) c, R(lower) the lower states' residuals.
            c, j_c = overlaps(flat), jax.jacrev(overlaps)(flat)
            u = -physics.residual(lower.p, lower.lap, v[:, None], energy)
            d_energy = jax.grad(energy_of)(flat)
            j_res = j_res + u @ j_c + (lower.p @ c)[:, None] * d_energy[None, :]
            p, lap = physics.project(lower, w, p, lap)
        r, n2 = _rows(problem, physics.residual(p, lap, v, energy), p)
        g_n2 = jax.grad(projected_norm2)(flat)
        if problem.normalization == "hard":
            jr = (sw / jnp.sqrt(n2))[:, None] * j_res - (r / (2.0 * n2))[:, None] * g_n2[None, :]
            return r, jr
        c = jnp.sqrt(problem.norm_weight)
        return r, jnp.vstack([sw[:, None] * j_res, c * g_n2[None, :]])

    diagonal = _diagonal(problem, unravel, chunk)
    return LeastSquares(residual_vector, with_jacobian, diagonal, *_metric(problem, unravel))


def _metric(problem: Problem, unravel: Callable) -> tuple[Callable | None, float]:
    """LM's metric and its weight: the Jacobian of psi's overlaps with the lower states over
    the projected norm (the change of physics.lower_content a step makes), or (None, 0)."""
    if problem.lower_weight <= 0:
        return None, 0.0
    lower, w = problem.lower, problem.w

    def psi(flat):
        return physics.evaluate(problem.psi, unravel(flat)["net"], problem.x)[0]

    def metric(flat):
        p = psi(flat)
        left = p - lower.p @ physics.overlaps(lower, w, p)
        overlaps = lambda f: physics.overlaps(lower, w, psi(f))  # noqa: E731
        return jax.jacrev(overlaps)(flat) / jnp.sqrt(jnp.sum(w * left**2))

    return metric, problem.lower_weight


def _rows(problem: Problem, res, p) -> tuple[jax.Array, jax.Array]:
    """The loss as residual rows (||rows||^2 = the loss, physics.loss_terms) from the pointwise
    residual `res` of psi values `p`, and integral psi^2."""
    sw, n2 = jnp.sqrt(problem.w), jnp.sum(problem.w * p**2)
    if problem.normalization == "hard":
        return sw * res / jnp.sqrt(n2), n2
    return jnp.append(sw * res, jnp.sqrt(problem.norm_weight) * (n2 - 1.0)), n2


def _diagonal(problem: Problem, unravel: Callable, chunk: int) -> Callable:
    """flat -> diag(J^T J) of the pointwise part of J (the projection on lower states and the
    normalisation's coupling left out: it only preconditions)."""
    point = _point_residual(problem, unravel)
    rows = jax.vmap(jax.grad(lambda *a: point(*a)[0]), (None, 0, 0))
    pointwise = chunked_diagonal(rows, (problem.x, problem.v), problem.w, chunk)

    def diagonal(flat):
        if problem.normalization == "hard":
            p = physics.evaluate(problem.psi, unravel(flat)["net"], problem.x)[0]
            return pointwise(flat) / jnp.sum(problem.w * p**2)
        return pointwise(flat)

    return diagonal
