"""Learning-rate schedules and optimiser stages.

A stage advances (params, opt_state) by n steps in one compiled call (`lax.scan`) and reports the
loss, so Python is touched once per block. Levenberg-Marquardt, the second-order stage, is in
lm.py.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax


@dataclass(frozen=True)
class LeastSquares:
    """A loss written as ||r(flat)||^2 over the flattened parameters, for Levenberg-Marquardt."""

    residual: Callable  # flat -> r (R,)
    with_jacobian: Callable  # flat -> (r (R,), J (R, P))
    diagonal: Callable  # flat -> diag(J^T J) (P,), or an approximation of it (a preconditioner)
    # flat -> D (K, P): a step delta is damped by |D delta|^2 as well as by mu |delta|^2
    # (Marquardt's scaling: the loss and its minimisers are unchanged, only the path), D scaled
    # by lm so that its largest column has `metric_weight` times the norm of J's largest
    metric: Callable | None = None
    metric_weight: float = 0.0


def with_row(ls: LeastSquares, row: Callable) -> LeastSquares:
    """`ls` with one more residual, the scalar row(flat), appended (a penalty w * g(flat) on the
    loss enters as the row sqrt(w * g(flat))): its Jacobian row is one backward pass."""
    grad = jax.grad(row)

    def residual(flat):
        return jnp.append(ls.residual(flat), row(flat))

    def with_jacobian(flat):
        r, jac = ls.with_jacobian(flat)
        return jnp.append(r, row(flat)), jnp.vstack([jac, grad(flat)[None, :]])

    def diagonal(flat):
        return ls.diagonal(flat) + grad(flat) ** 2

    return LeastSquares(residual, with_jacobian, diagonal, ls.metric, ls.metric_weight)


def chunked_diagonal(rows: Callable, data: tuple, weights, chunk: int) -> Callable:
    """flat -> sum_i weights_i * rows_i(flat)^2 over points i: the diagonal of J^T J for
    pointwise residual rows, `rows(flat, *data_chunk)` giving (chunk, P) or (chunk, k, P).
    Rows are formed `chunk` points at a time in a lax.scan (padding has weight 0), so memory
    is chunk x parameters, not points x parameters."""
    m = weights.shape[0]
    n_chunks = -(-m // chunk)
    pad = n_chunks * chunk - m

    def chunked(a):
        fill = jnp.broadcast_to(a[:1], (pad, *a.shape[1:]))
        return jnp.concatenate([a, fill]).reshape(n_chunks, chunk, *a.shape[1:])

    ws = jnp.concatenate([weights, jnp.zeros(pad, weights.dtype)]).reshape(n_chunks, chunk)
    xs = tuple(chunked(a) for a in data)

    def diagonal(flat):
        def add(total, c):
            w, *d = c
            j = rows(flat, *d)
            j2 = j**2 if j.ndim == 2 else jnp.sum(j**2, axis=1)
            return total + jnp.sum(w[:, None] * j2, axis=0), None

        total, _ = jax.lax.scan(add, jnp.zeros_like(flat), (ws, *xs))
        return total

    return diagonal


def make_schedule(kind: str, lr: float, lr_final: float, steps: int) -> optax.Schedule:
    steps = max(steps, 1)
    if kind == "constant":
        return optax.constant_schedule(lr)
    if kind == "cosine":
        return optax.cosine_decay_schedule(lr, steps, alpha=lr_final / lr)
    return optax.exponential_decay(lr, transition_steps=steps, decay_rate=lr_final / lr)


def logged_schedule(kind: str, lr: float, lr_final: float, steps: int) -> Callable[[int], float]:
    """`make_schedule`'s learning rate at a step, in plain floats, for the log: evaluating the
    optax schedule outside a program runs (and, the first time, compiles) a few JAX ops per
    log row. Tested equal to optax's values."""
    steps = max(steps, 1)
    if kind == "constant":
        return lambda k: float(lr)
    if kind == "cosine":
        alpha = lr_final / lr
        cosine = lambda k: 0.5 * (1 + math.cos(math.pi * min(k, steps) / steps))  # noqa: E731
        return lambda k: lr * ((1 - alpha) * cosine(k) + alpha)
    return lambda k: lr * (lr_final / lr) ** (k / steps)


@dataclass(frozen=True, eq=False)
class Stage:
    """An optimiser stage. `raw` takes the problem (a pytree: its arrays are arguments, not
    constants of the program) before the parameters, so one compiled block serves every
    problem of the same shapes: the states of a run, the windows of a time evolution."""

    name: str
    init: Callable  # params -> opt_state
    raw: Callable  # (problem, params, opt_state, n) -> (params, opt_state, total, terms)
    lr: Callable[[int], float]  # step within the stage -> learning rate, for the log
    enter: Callable | None = None  # (problem, params) -> params as the stage starts (not resumed)
    members: int = 1  # > 1: params, opt_state and the results of `raw` have a member axis
    block_size: int | None = None  # steps per compiled block; None: the plan's log interval
    converges: bool = False  # stop once a block no longer lowers the loss (refinement stages)
    solver: str | None = None  # the linear solver of a second-order stage, for the record
    # (raw, the settings its functions were built from): set by `identified`; `exported`
    # stores its compiled blocks' programs on disk under `ident`
    identity: tuple | None = None
    # compiled blocks by (steps, argument signature), kept with the stage for its next problem
    # (not an __init__ argument: a stage made by dataclasses.replace starts with none)
    compiled: dict = dataclasses.field(default_factory=dict, init=False, repr=False)

    @functools.cached_property
    def block(self) -> Callable:
        """`raw` jitted, with n static; vmapped over the members of an ensemble (the problem
        is shared by all members)."""
        if self.members == 1:
            return jax.jit(self.raw, static_argnums=3)
        raw = self.raw

        def ensemble(problem, params, opt_state, n):
            return jax.vmap(lambda p, o: raw(problem, p, o, n))(params, opt_state)

        return jax.jit(ensemble, static_argnums=3)

    @property
    def ident(self) -> tuple | None:
        """The settings `raw` was built from, or None (traced anew by every process): a stage
        whose `raw` was replaced after it was identified (dataclasses.replace) has none, so a
        program stored for the old function is never read for the new one."""
        if self.identity is None or self.identity[0] is not self.raw:
            return None
        return self.identity[1]


def identified(stage: Stage, ident: tuple) -> Stage:
    """The stage with the settings its functions were built from (see `Stage.ident`)."""
    return dataclasses.replace(stage, identity=(stage.raw, ident))


def signature(*args) -> tuple:
    """What a compiled program depends on: the pytree structure (with its static parts) and
    each leaf's shape, dtype and placement."""
    leaves, tree = jax.tree.flatten(args)
    return tree, tuple(
        (jnp.shape(a), jnp.result_type(a), getattr(a, "sharding", None)) for a in leaves
    )


def for_members(stage: Stage, members: int) -> Stage:
    """The stage for an ensemble: every argument and result of `block` and `init` carries a
    leading member axis, and one compiled program advances all members together."""
    if members == 1:
        return stage
    return dataclasses.replace(stage, init=jax.vmap(stage.init), members=members)


def scan_block(loss: Callable, update: Callable) -> Callable:
    """A block of n steps of `update(params, opt_state, total, grads)` on `loss(problem,
    params)`."""
    value_and_grad = jax.value_and_grad(loss, argnums=1, has_aux=True)

    def block(problem, params, opt_state, n):
        def one_step(carry, _):
            params, opt_state = carry
            (total, terms), grads = value_and_grad(problem, params)
            return update(problem, params, opt_state, total, grads), (total, terms)

        (params, opt_state), _ = jax.lax.scan(one_step, (params, opt_state), length=n)
        total, terms = loss(problem, params)
        return params, opt_state, total, terms

    return block


def adam_stage(loss: Callable, schedule: optax.Schedule, logged: Callable | None = None) -> Stage:
    """Adam on `loss(problem, params) -> (total, terms)`; `logged`: the schedule in plain
    floats for the log (`logged_schedule`), else the optax schedule is evaluated."""
    opt = optax.adam(schedule)

    def update(problem, params, opt_state, total, grads):
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    logged = logged or (lambda k: float(schedule(k)))
    return Stage("adam", opt.init, scan_block(loss, update), logged)


def lbfgs_stage(loss: Callable, block_size: int) -> Stage:
    """optax.lbfgs with its zoom line search (strong Wolfe conditions)."""
    opt = optax.lbfgs()

    def update(problem, params, opt_state, total, grads):
        updates, opt_state = opt.update(
            grads,
            opt_state,
            params,
            value=total,
            grad=grads,
            value_fn=lambda p: loss(problem, p)[0],
        )
        return optax.apply_updates(params, updates), opt_state

    block = scan_block(loss, update)
    nan = lambda k: float("nan")  # noqa: E731
    return Stage("lbfgs", opt.init, block, nan, block_size=block_size, converges=True)
