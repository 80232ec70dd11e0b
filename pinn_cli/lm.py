"""Levenberg-Marquardt on the residual vector, with a Jacobian built one point at a time."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from . import physics
from .model import derivatives
from .optim import Stage
from .problem import Problem

REFINE_BLOCK = 10  # refinement steps per compiled block (and per log row)


def make_residual_jacobian(problem: Problem, unravel: Callable) -> tuple[Callable, Callable]:
    """(flat -> r, flat -> (r, J)) with ||r||^2 equal to the residual loss.

    Row i of J is the gradient of point i's residual -lap psi_i + (V_i - E) psi_i. That scalar
    depends on the parameters through one network evaluation at x_i, so a vmap of per-point
    reverse-mode gradients builds the rows for about one backward pass over the batch. What
    couples the points (projection on the lower states, the normalisation) is low rank: it adds
    the Jacobians of a few scalar functionals (one backward pass each) as outer products.
    """
    sw, lower, w, v = jnp.sqrt(problem.w), problem.lower, problem.w, problem.v
    energy_of = lambda flat: problem.energy(unravel(flat))  # noqa: E731

    def point(flat, x, v_x):
        """(residual at x before projection, (psi, lap psi))."""
        p, _, lap = derivatives(problem.psi, unravel(flat)["net"], x)
        return physics.residual(p, lap, v_x, energy_of(flat)), (p, lap)

    grad_point = jax.vmap(jax.grad(point, has_aux=True), in_axes=(None, 0, 0))
    val_point = jax.vmap(point, in_axes=(None, 0, 0))

    def projected(flat):
        _, (p, lap) = val_point(flat, problem.x, v)
        return physics.project(lower, w, p, lap)

    def projected_norm2(flat):
        return jnp.sum(w * projected(flat)[0] ** 2)

    def overlaps(flat):
        return physics.overlaps(lower, w, val_point(flat, problem.x, v)[1][0])

    def finish(res, p):
        n2 = jnp.sum(w * p**2)
        if problem.normalization == "hard":
            return sw * res / jnp.sqrt(n2), n2
        return jnp.append(sw * res, jnp.sqrt(problem.norm_weight) * (n2 - 1.0)), n2

    def residual_vector(flat):
        p, lap = projected(flat)
        return finish(physics.residual(p, lap, v, energy_of(flat)), p)[0]

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
        r, n2 = finish(physics.residual(p, lap, v, energy), p)
        g_n2 = jax.grad(projected_norm2)(flat)
        if problem.normalization == "hard":
            jr = (sw / jnp.sqrt(n2))[:, None] * j_res - (r / (2.0 * n2))[:, None] * g_n2[None, :]
            return r, jr
        c = jnp.sqrt(problem.norm_weight)
        return r, jnp.vstack([sw[:, None] * j_res, c * g_n2[None, :]])

    return residual_vector, with_jacobian


def solve(jac, r, mu):
    """(delta, J delta) with delta = -(J^T J + mu I)^-1 J^T r, solved in whichever of the two
    spaces is smaller.

    With fewer residuals M than parameters P the identity
    (J^T J + mu I)^-1 J^T = J^T (J J^T + mu I)^-1 turns a P x P system into an M x M one, and
    J delta = -(J J^T) z comes from the M x M matrix without another pass over J.
    """
    m, p = jac.shape
    if m < p:
        gram = jac @ jac.T
        k = gram + mu * jnp.eye(m, dtype=jac.dtype)
        z = jax.scipy.linalg.cho_solve(jax.scipy.linalg.cho_factor(k), r)
        return -jac.T @ z, -gram @ z
    a = jac.T @ jac + mu * jnp.eye(p, dtype=jac.dtype)
    delta = -jax.scipy.linalg.cho_solve(jax.scipy.linalg.cho_factor(a), jac.T @ r)
    return delta, jac @ delta


def make_lm_step(problem: Problem, unravel: Callable) -> Callable:
    """One Levenberg-Marquardt trial with Nielsen's damping update.

    (flat, mu, nu) -> (flat, mu, nu, loss before, loss after, accepted).
    """
    residual_vector, with_jacobian = make_residual_jacobian(problem, unravel)

    def step(flat, mu, nu):
        r, jac = with_jacobian(flat)
        loss = r @ r
        mu = jnp.where(mu < 0, 1e-3 * jnp.max(jnp.sum(jac**2, axis=0)), mu)
        delta, j_delta = solve(jac, r, mu)
        r_new = residual_vector(flat + delta)
        loss_new = r_new @ r_new
        predicted = -(2.0 * r @ j_delta + j_delta @ j_delta)
        rho = (loss - loss_new) / predicted
        ok = jnp.isfinite(loss_new) & jnp.all(jnp.isfinite(delta)) & (rho > 0)
        flat = jnp.where(ok, flat + delta, flat)
        mu = jnp.where(ok, mu * jnp.maximum(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3), mu * nu)
        nu = jnp.where(ok, 2.0, 2.0 * nu)
        return flat, mu, nu, loss, jnp.where(ok, loss_new, loss), ok

    return step


def lm_stage(problem: Problem, loss: Callable, params_like) -> Stage:
    """Levenberg-Marquardt; opt_state = {"mu": damping, "nu": its growth factor}."""
    _, unravel = ravel_pytree(params_like)
    step = make_lm_step(problem, unravel)

    def init(params):
        # mu < 0 asks the first step to start from 1e-3 * max diag(J^T J), computed there.
        dtype = ravel_pytree(params)[0].dtype
        return {"mu": jnp.asarray(-1.0, dtype), "nu": jnp.asarray(2.0, dtype)}

    def block(params, opt_state, n):
        def one(carry, _):
            flat, mu, nu = carry
            flat, mu, nu, *_ = step(flat, mu, nu)
            return (flat, mu, nu), None

        flat = ravel_pytree(params)[0]
        (flat, mu, nu), _ = jax.lax.scan(one, (flat, opt_state["mu"], opt_state["nu"]), length=n)
        params = unravel(flat)
        total, terms = loss(params)
        return params, {"mu": mu, "nu": nu}, total, terms

    return Stage("lm", init, block, lambda k: float("nan"), block_size=REFINE_BLOCK, converges=True)
