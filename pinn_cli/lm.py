"""Levenberg-Marquardt on the residual vector, with two ways to solve the damped normal equations.

* explicit: the Jacobian J (points x parameters) built one point at a time, then a Cholesky
  solve in the smaller of the two spaces. Cost ~ M P min(M, P): cheapest for small problems.
* cg: matrix-free Gauss-Newton. (J^T J + mu I) delta = -J^T r is solved by preconditioned
  conjugate gradients on Jacobian-vector and vector-Jacobian products of the residual
  (`jax.linearize` once per step, its transpose for J^T), never forming J or a Gram matrix.
  Cost ~ (2 + CG iterations) passes over the points, linear in M and in P; memory ~ M x width
  per layer plus one chunk of per-point gradient rows for the diagonal preconditioner.

`resources.choose_solver` picks between them by a cost estimate; both share the damping rule.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from . import physics
from .model import derivatives
from .optim import Stage
from .problem import Problem
from .resources import DIAGONAL_CHUNK

REFINE_BLOCK = 10  # refinement steps per compiled block (and per log row)
MU_FLOOR = 1e-12  # damping floor relative to max diag(J^T J): CG stays well posed


def _point_residual(problem: Problem, unravel: Callable) -> Callable:
    """(flat, x, V(x)) -> (residual at x before projection, (psi, lap psi))."""

    def point(flat, x, v_x):
        params = unravel(flat)
        p, _, lap = derivatives(problem.psi, params["net"], x)
        return physics.residual(p, lap, v_x, problem.energy(params)), (p, lap)

    return point


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
        mu = jnp.where(mu < 0, 1e-3 * jnp.max(jnp.sum(jac**2, axis=0)), mu)
        delta, j_delta = solve(jac, r, mu)
        return _damped_update(residual_vector, flat, mu, nu, r, delta, j_delta)

    return step


def _damped_update(residual_vector, flat, mu, nu, r, delta, j_delta):
    """Accept flat + delta if it lowers ||r||^2, and adapt mu by the ratio of the actual to the
    predicted decrease (Nielsen). -> (flat, mu, nu, loss before, loss after, accepted)."""
    loss = r @ r
    r_new = residual_vector(flat + delta)
    loss_new = r_new @ r_new
    predicted = -(2.0 * r @ j_delta + j_delta @ j_delta)
    rho = (loss - loss_new) / predicted
    ok = jnp.isfinite(loss_new) & jnp.all(jnp.isfinite(delta)) & (predicted > 0) & (rho > 0)
    flat = jnp.where(ok, flat + delta, flat)
    mu = jnp.where(ok, mu * jnp.maximum(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3), mu * nu)
    nu = jnp.where(ok, 2.0, 2.0 * nu)
    return flat, mu, nu, loss, jnp.where(ok, loss_new, loss), ok


def make_diagonal(problem: Problem, unravel: Callable, chunk: int = DIAGONAL_CHUNK) -> Callable:
    """flat -> diag(J^T J) of the pointwise part of J (the projection on lower states and the
    normalisation's coupling left out: it only preconditions). Per-point gradient rows are
    formed `chunk` points at a time and their squares summed, so memory is chunk x parameters."""
    m = problem.x.shape[0]
    n_chunks = -(-m // chunk)
    pad = n_chunks * chunk - m

    def chunked(a, fill):
        a = jnp.concatenate([a, jnp.broadcast_to(fill, (pad, *a.shape[1:])).astype(a.dtype)])
        return a.reshape(n_chunks, chunk, *a.shape[1:])

    xs = chunked(problem.x, problem.x[0])
    ws, vs = chunked(problem.w, 0.0), chunked(problem.v, 0.0)
    point = _point_residual(problem, unravel)
    rows = jax.vmap(jax.grad(lambda *a: point(*a)[0]), (None, 0, 0))

    def diagonal(flat):
        def add(total, c):
            x, w, v = c
            return total + jnp.sum(w[:, None] * rows(flat, x, v) ** 2, axis=0), None

        total, _ = jax.lax.scan(add, jnp.zeros_like(flat), (xs, ws, vs))
        if problem.normalization == "hard":
            p = physics.evaluate(problem.psi, unravel(flat)["net"], problem.x)[0]
            return total / jnp.sum(problem.w * p**2)
        return total

    return diagonal


def pcg(matvec: Callable, b, inv_diag, x0, iters: int, tol: float):
    """Preconditioned conjugate gradients for matvec(x) = b from x0, stopped after `iters`
    iterations or once ||b - matvec(x)|| <= tol ||b||. -> (x, iterations run)."""
    r = b - matvec(x0)
    z = inv_diag * r
    b_norm = jnp.sqrt(b @ b)

    def running(s):
        _, r, _, _, k = s
        return (k < iters) & (jnp.sqrt(r @ r) > tol * b_norm)

    def iterate(s):
        x, r, d, rz, k = s
        a_d = matvec(d)
        alpha = rz / (d @ a_d)
        x, r = x + alpha * d, r - alpha * a_d
        z = inv_diag * r
        rz_new = r @ z
        return x, r, z + (rz_new / rz) * d, rz_new, k + 1

    x, *_, k = jax.lax.while_loop(running, iterate, (x0, r, z, r @ z, jnp.asarray(0)))
    return x, k


def make_cg_step(problem: Problem, unravel: Callable, iters: int, tol: float) -> Callable:
    """One matrix-free Gauss-Newton (Levenberg-Marquardt) trial.

    (flat, mu, nu, warm start, diag(J^T J)) -> (flat, mu, nu, loss before, loss after,
    accepted, CG iterations, delta). CG starts from the previous step's delta (Martens' warm
    start: successive Gauss-Newton systems are close).
    """
    residual_vector, _ = make_residual_jacobian(problem, unravel)

    def step(flat, mu, nu, warm, diag):
        r, jvp = jax.linearize(residual_vector, flat)
        vjp = jax.linear_transpose(jvp, flat)
        mu = jnp.where(mu < 0, 1e-3 * jnp.max(diag), mu)
        mu = jnp.maximum(mu, MU_FLOOR * jnp.max(diag))
        normal = lambda s: vjp(jvp(s))[0] + mu * s  # noqa: E731
        delta, k = pcg(normal, -vjp(r)[0], 1.0 / (diag + mu), warm, iters, tol)
        return (*_damped_update(residual_vector, flat, mu, nu, r, delta, jvp(delta)), k, delta)

    return step


def _explicit_block(problem: Problem, unravel: Callable, finish: Callable) -> Callable:
    """n explicit LM steps in one lax.scan."""
    step = make_lm_step(problem, unravel)

    def block(params, opt_state, n):
        def one(carry, _):
            return step(*carry)[:3], None

        flat = ravel_pytree(params)[0]
        (flat, mu, nu), _ = jax.lax.scan(one, (flat, opt_state["mu"], opt_state["nu"]), None, n)
        return finish(flat, {"mu": mu, "nu": nu}, {})

    return block


def _cg_block(problem: Problem, unravel: Callable, finish: Callable, iters, tol) -> Callable:
    """n matrix-free LM steps in one lax.scan, the preconditioner computed once at its start;
    reports the mean CG iterations per step as the term "cg_iters"."""
    cg_step = make_cg_step(problem, unravel, iters, tol)
    diagonal = make_diagonal(problem, unravel)

    def block(params, opt_state, n):
        flat = ravel_pytree(params)[0]
        diag = diagonal(flat)

        def one(carry, _):
            flat, mu, nu, delta = carry
            flat, mu, nu, _, _, _, k, delta = cg_step(flat, mu, nu, delta, diag)
            return (flat, mu, nu, delta), k

        carry = (flat, opt_state["mu"], opt_state["nu"], opt_state["delta"])
        (flat, mu, nu, delta), k = jax.lax.scan(one, carry, None, n)
        state = {"mu": mu, "nu": nu, "delta": delta}
        return finish(flat, state, {"cg_iters": jnp.mean(k.astype(flat.dtype))})

    return block


def lm_stage(
    problem: Problem,
    loss: Callable,
    params_like,
    solver: str = "explicit",
    cg_iters: int = 20,
    cg_tol: float = 1e-3,
) -> Stage:
    """Levenberg-Marquardt with the "explicit" or "cg" solver (not "auto": see choose_solver).

    opt_state = {"mu": damping, "nu": its growth factor}, plus for "cg" the last step ("delta",
    CG's warm start)."""
    _, unravel = ravel_pytree(params_like)

    def init(params):
        # mu < 0 asks the first step to start from 1e-3 * max diag(J^T J), computed there.
        flat = ravel_pytree(params)[0]
        state = {"mu": jnp.asarray(-1.0, flat.dtype), "nu": jnp.asarray(2.0, flat.dtype)}
        return state | ({"delta": jnp.zeros_like(flat)} if solver == "cg" else {})

    def finish(flat, opt_state, extra):
        params = unravel(flat)
        total, terms = loss(params)
        return params, opt_state, total, terms | extra

    if solver == "explicit":
        block = _explicit_block(problem, unravel, finish)
    else:
        block = _cg_block(problem, unravel, finish, cg_iters, cg_tol)
    nan = lambda k: float("nan")  # noqa: E731
    return Stage("lm", init, block, nan, block_size=REFINE_BLOCK, converges=True, solver=solver)
