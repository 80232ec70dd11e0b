"""Levenberg-Marquardt on the residual vector, with two ways to solve the damped normal equations.

* explicit: the Jacobian J (points x parameters) built one point at a time, then a Cholesky
  solve in the smaller of the two spaces. Cost ~ M P min(M, P): cheapest for small problems.
* cg: matrix-free Gauss-Newton. (J^T J + mu I) delta = -J^T r is solved by preconditioned
  conjugate gradients on Jacobian-vector and vector-Jacobian products of the residual
  (`jax.linearize` once per step, its transpose for J^T), never forming J or a Gram matrix.
  Cost ~ (2 + CG iterations) passes over the points, linear in M and in P; memory ~ M x width
  per layer plus one chunk of per-point gradient rows for the diagonal preconditioner.

`resources.choose_solver` picks between them by a cost estimate; both share the damping rule.
The residual vector, its Jacobian and the preconditioner come from the problem
(`problem.Problem.least_squares` for eigenstates, `tdse.TimeProblem.least_squares` for dynamics).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from .native import gram as native_gram
from .native import runs as native_runs
from .optim import LeastSquares, Stage

REFINE_BLOCK = 10  # refinement steps per compiled block (and per log row)
MU_FLOOR = 1e-12  # damping floor relative to max diag(J^T J) (both solvers)


def damped_solver(jac, mu, native: bool = True) -> Callable:
    """b -> (delta, J delta) with delta = -(J^T J + mu I)^-1 J^T b, one Cholesky factor shared
    by every right-hand side, in whichever of the two spaces is smaller. In the parameter space
    J^T J comes from BLAS's dsyrk on CPU (`native.gram`; `native=False`: XLA's dot, for sharded
    J).

    With fewer residuals M than parameters P the identity
    (J^T J + mu I)^-1 J^T = J^T (J J^T + mu I)^-1 turns a P x P system into an M x M one, and
    J delta = -(J J^T) z comes from the M x M matrix without another pass over J.
    """
    m, p = jac.shape
    if m < p:
        # The M x M Gram matrix of 1-D problems (192 x 1.2k) is small: XLA's dot takes 1.2 ms
        # against the kernel's 1.0, and the 1-D tables were measured with it (an LM trajectory
        # follows rounding: with the kernel's, the oscillator's ten states ended at E 2.3e-10
        # where XLA's reached 4.8e-11).
        gram = jac @ jac.T
        factor = jax.scipy.linalg.cho_factor(gram + mu * jnp.eye(m, dtype=jac.dtype))

        def in_residual_space(b):
            z = jax.scipy.linalg.cho_solve(factor, b)
            return -jac.T @ z, -gram @ z

        return in_residual_space
    if native_runs(jac, native):  # the kernel reads J as it lies in memory
        gram, jac_t = native_gram(jac, rows=False), None
    else:
        # J^T J as (J^T)(J^T)^T, J^T materialised first: XLA's CPU dot contracting the leading
        # axes of J runs ~2.4x slower than one contracting the trailing axes (2500 x 721 float64
        # on 2 cores: 48 ms against 20 ms with the copy); the barrier keeps the simplifier from
        # folding the transpose back into the dot.
        jac_t = jax.lax.optimization_barrier(jac.T)
        gram = jac_t @ jac_t.T
    factor = jax.scipy.linalg.cho_factor(gram + mu * jnp.eye(p, dtype=jac.dtype))

    def in_parameter_space(b):
        jtb = b @ jac if jac_t is None else jac_t @ b
        delta = -jax.scipy.linalg.cho_solve(factor, jtb)
        return delta, jac @ delta

    return in_parameter_space


def solve(jac, r, mu, native: bool = True):
    """(delta, J delta) with delta = -(J^T J + mu I)^-1 J^T r."""
    return damped_solver(jac, mu, native)(r)


# The acceleration is dropped when it is large against the velocity, 2 |a| > alpha |v|:
# the second-order model no longer holds over it (Transtrum & Sethna's alpha)
GEODESIC_ALPHA = 0.75


def accelerated(residual_vector, flat, v, solve_for) -> tuple:
    """Transtrum & Sethna's geodesic acceleration of the Levenberg-Marquardt velocity v: a
    solves the damped normal equations (`solve_for`, v's own factor or CG) for the residual's
    second directional derivative along v (forward over forward mode), and the step is
    v + a/2, or v alone where the acceleration is too large to trust (far from the solution,
    where refusing the step would only raise the damping). -> (step, True). The step's
    acceptance and the damping's update still compare the actual decrease with the one v's
    linear model predicts (the decrease the acceleration adds is a bonus, as in Transtrum's
    implementation)."""
    along = lambda x: jax.jvp(residual_vector, (x,), (v,))[1]  # noqa: E731
    r_vv = jax.jvp(along, (flat,), (v,))[1]
    a = solve_for(r_vv)
    admissible = 4.0 * (a @ a) <= GEODESIC_ALPHA**2 * (v @ v)
    return jnp.where(admissible, v + 0.5 * a, v), True


def metric_rows(ls: LeastSquares, flat, scale):
    """The problem's metric D (`LeastSquares.metric`) scaled so that its largest column has
    `metric_weight` times `scale`, the largest column norm^2 of J; None without one."""
    if ls.metric is None or ls.metric_weight <= 0:
        return None
    d = ls.metric(flat)
    largest = jnp.max(jnp.sum(d**2, axis=0))
    return jnp.sqrt(ls.metric_weight * scale / jnp.where(largest > 0, largest, 1.0)) * d


def make_lm_step(ls: LeastSquares, geodesic: bool = False, native: bool = True) -> Callable:
    """One Levenberg-Marquardt trial with Nielsen's damping update, geodesically accelerated
    with `geodesic`; `native`: the Gram matrix through BLAS (`damped_solver`).

    (flat, mu, nu) -> (flat, mu, nu, loss before, loss after, accepted).
    """
    residual_vector = ls.residual

    def step(flat, mu, nu):
        r, jac = ls.with_jacobian(flat)
        scale = jnp.max(jnp.sum(jac**2, axis=0))
        # The floor keeps a run of accepted steps (each divides mu by up to 3) from driving mu
        # so low that the rejections of one block (mu times 2, 4, 8, ...) cannot bring it back:
        # the stage then read as converged with the loss far above its floor.
        mu = jnp.maximum(jnp.where(mu < 0, 1e-3 * scale, mu), MU_FLOOR * scale)
        d = metric_rows(ls, flat, scale)
        m = r.shape[0]
        if d is not None:  # |D delta|^2 as rows of J whose residual is zero
            jac = jnp.vstack([jac, d])
        pad = lambda b: jnp.pad(b, (0, jac.shape[0] - m))  # noqa: E731
        solver = damped_solver(jac, mu, native)
        delta, j_delta = solver(pad(r))
        # The decrease the linear model predicts, as a sum of positive terms (delta solves the
        # damped normal equations): -(2 r.J delta + |J delta|^2) is the difference of two
        # nearly equal numbers once the step is small, and its rounding made it negative for
        # steps that did lower the loss (finite_well V0=250 width=2, state 8: a run of such
        # refusals raised mu by 1e9 and ended the stage at psi 2.6e-6, "stopped decreasing").
        # With a metric: |J delta|^2 + 2 |D delta|^2 + 2 mu |delta|^2.
        predicted = j_delta @ j_delta + j_delta[m:] @ j_delta[m:] + 2.0 * mu * (delta @ delta)
        if not geodesic:
            return _damped_update(residual_vector, flat, mu, nu, r, delta, predicted)
        step, ok = accelerated(residual_vector, flat, delta, lambda b: solver(pad(b))[0])
        return _damped_update(residual_vector, flat, mu, nu, r, step, predicted, ok)

    return step


def _damped_update(residual_vector, flat, mu, nu, r, delta, predicted, admissible=True):
    """Accept flat + delta if it is admissible and lowers ||r||^2, and adapt mu by the ratio of
    the actual decrease to the `predicted` one, the linear model's (Nielsen).
    -> (flat, mu, nu, loss before, loss after, accepted)."""
    loss = r @ r
    r_new = residual_vector(flat + delta)
    loss_new = r_new @ r_new
    rho = (loss - loss_new) / predicted
    ok = jnp.isfinite(loss_new) & jnp.all(jnp.isfinite(delta)) & (predicted > 0) & (rho > 0)
    ok = ok & admissible & (loss_new > 0)
    flat = jnp.where(ok, flat + delta, flat)
    mu = jnp.where(ok, mu * jnp.maximum(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3), mu * nu)
    nu = jnp.where(ok, 2.0, 2.0 * nu)
    return flat, mu, nu, loss, jnp.where(ok, loss_new, loss), ok


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


def make_cg_step(ls: LeastSquares, iters: int, tol: float, geodesic: bool = False) -> Callable:
    """One matrix-free Gauss-Newton (Levenberg-Marquardt) trial.

    (flat, mu, nu, warm start, diag(J^T J)) -> (flat, mu, nu, loss before, loss after,
    accepted, CG iterations, delta). CG starts from the previous step's delta (Martens' warm
    start: successive Gauss-Newton systems are close); with `geodesic` the acceleration's own
    CG solve starts from zero (the iterations reported are the velocity's).
    """
    residual_vector = ls.residual

    def step(flat, mu, nu, warm, diag):
        r, jvp = jax.linearize(residual_vector, flat)
        vjp = jax.linear_transpose(jvp, flat)
        mu = jnp.where(mu < 0, 1e-3 * jnp.max(diag), mu)
        mu = jnp.maximum(mu, MU_FLOOR * jnp.max(diag))
        d = metric_rows(ls, flat, jnp.max(diag))
        if d is None:
            normal = lambda s: vjp(jvp(s))[0] + mu * s  # noqa: E731
            inv_diag = 1.0 / (diag + mu)
        else:
            normal = lambda s: vjp(jvp(s))[0] + d.T @ (d @ s) + mu * s  # noqa: E731
            inv_diag = 1.0 / (diag + jnp.sum(d**2, axis=0) + mu)
        delta, k = pcg(normal, -vjp(r)[0], inv_diag, warm, iters, tol)
        step, ok = delta, True
        if geodesic:

            def solve_for(b):
                zero = jnp.zeros_like(flat)
                return pcg(normal, -vjp(b)[0], inv_diag, zero, iters, tol)[0]

            step, ok = accelerated(residual_vector, flat, delta, solve_for)
        j_delta = jvp(delta)  # CG's delta solves the damped system only to cg_tol
        predicted = -(2.0 * r @ j_delta + j_delta @ j_delta)
        update = _damped_update(residual_vector, flat, mu, nu, r, step, predicted, ok)
        return (*update, k, delta)

    return step


def _explicit_block(least_squares: Callable, finish: Callable, geodesic: bool, native: bool):
    """n explicit LM steps in one lax.scan."""

    def block(problem, params, opt_state, n):
        flat, unravel = ravel_pytree(params)
        step = make_lm_step(least_squares(problem, unravel), geodesic, native)

        def one(carry, _):
            return step(*carry)[:3], None

        (flat, mu, nu), _ = jax.lax.scan(one, (flat, opt_state["mu"], opt_state["nu"]), None, n)
        return finish(problem, unravel, flat, {"mu": mu, "nu": nu}, {})

    return block


def _cg_block(least_squares: Callable, finish: Callable, iters, tol, geodesic) -> Callable:
    """n matrix-free LM steps in one lax.scan, the preconditioner computed once at its start;
    reports the mean CG iterations per step as the term "cg_iters"."""

    def block(problem, params, opt_state, n):
        flat, unravel = ravel_pytree(params)
        ls = least_squares(problem, unravel)
        cg_step = make_cg_step(ls, iters, tol, geodesic)
        diag = ls.diagonal(flat)

        def one(carry, _):
            flat, mu, nu, delta = carry
            flat, mu, nu, _, _, _, k, delta = cg_step(flat, mu, nu, delta, diag)
            return (flat, mu, nu, delta), k

        carry = (flat, opt_state["mu"], opt_state["nu"], opt_state["delta"])
        (flat, mu, nu, delta), k = jax.lax.scan(one, carry, None, n)
        state = {"mu": mu, "nu": nu, "delta": delta}
        extra = {"cg_iters": jnp.mean(k.astype(flat.dtype))}
        return finish(problem, unravel, flat, state, extra)

    return block


def lm_stage(
    least_squares: Callable,
    loss: Callable,
    solver: str = "explicit",
    cg_iters: int = 20,
    cg_tol: float = 1e-3,
    rescale: Callable | None = None,
    geodesic: bool = False,
    native: bool = True,
) -> Stage:
    """Levenberg-Marquardt with the "explicit" or "cg" solver (not "auto": see choose_solver) on
    the residual vector `least_squares(problem, unravel)` builds (unravel: flat vector ->
    parameters), geodesically accelerated with `geodesic`; `loss(problem, params)` is reported
    after each block. `native`: the explicit solver's Gram matrix through BLAS's dsyrk
    (`native.gram`), which needs J on one device.

    opt_state = {"mu": damping, "nu": its growth factor}, plus for "cg" the last step ("delta",
    CG's warm start). `rescale(problem, params)`, applied after every block, moves the parameters
    along a direction the residual cannot see (psi's scale), so rounding cannot drift them
    along it."""

    def init(params):
        # mu < 0 asks the first step to start from 1e-3 * max diag(J^T J), computed there.
        flat = ravel_pytree(params)[0]
        state = {"mu": jnp.asarray(-1.0, flat.dtype), "nu": jnp.asarray(2.0, flat.dtype)}
        return state | ({"delta": jnp.zeros_like(flat)} if solver == "cg" else {})

    def finish(problem, unravel, flat, opt_state, extra):
        params = unravel(flat) if rescale is None else rescale(problem, unravel(flat))
        total, terms = loss(problem, params)
        return params, opt_state, total, terms | extra

    if solver == "explicit":
        block = _explicit_block(least_squares, finish, geodesic, native)
    else:
        block = _cg_block(least_squares, finish, cg_iters, cg_tol, geodesic)
    nan = lambda k: float("nan")  # noqa: E731
    return Stage("lm", init, block, nan, block_size=REFINE_BLOCK, converges=True, solver=solver)
