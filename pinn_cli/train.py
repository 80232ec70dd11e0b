"""Losses, optimisers, the jitted steps and the fit loop. Returns results; writes no files.

Training has two stages:
1. a first-order stage (Adam with a learning-rate schedule) run in blocks of steps, each block one
   compiled `lax.scan`, so Python is touched once per logging interval;
2. a float64 refinement: Levenberg-Marquardt on the residual vector (default) or L-BFGS.
Callbacks receive log records and checkpoints; the caller decides what to write.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from . import physics
from .model import TrialFunction, derivatives


@dataclass(frozen=True)
class Problem:
    """Everything the jitted code needs, as plain values and arrays."""

    psi: TrialFunction
    x: jax.Array
    w: jax.Array
    v: jax.Array
    fixed_energy: float | None  # None: E is a trainable parameter
    energy_scale: float  # E = energy_scale * params["energy"] when learned
    normalization: str = "hard"
    norm_weight: float = 1.0
    # Lower eigenstates to stay orthogonal to: values and psi'' at x, W-orthonormal columns (M, K).
    lower_p: jax.Array | None = None
    lower_d2p: jax.Array | None = None
    first_stage: str = "residual"  # "residual" | "ritz" (minimise the Rayleigh quotient first)

    def project(self, p, d2p):
        """Remove the lower states from psi (and the same combination from psi'')."""
        if self.lower_p is None:
            return p, d2p
        w = self.w.reshape(self.w.shape + (1,) * (p.ndim - 1))  # p may be a Jacobian (M, P)
        c = self.lower_p.T @ (w * p)
        return p - self.lower_p @ c, d2p - self.lower_d2p @ c

    def energy(self, params) -> jax.Array:
        if self.fixed_energy is None:
            return self.energy_scale * params["energy"]
        return jnp.asarray(self.fixed_energy, dtype=self.x.dtype)


def make_problem(
    psi: TrialFunction,
    grid: physics.Grid,
    *,
    fixed_energy,
    normalization,
    norm_weight,
    dtype,
    lower=None,
    first_stage: str = "residual",
) -> Problem:
    lo, hi = psi.domain
    return Problem(
        psi=psi,
        x=jnp.asarray(grid.x, dtype),
        w=jnp.asarray(grid.w, dtype),
        v=jnp.asarray(grid.v, dtype),
        fixed_energy=fixed_energy,
        energy_scale=(math.pi / (hi - lo)) ** 2,
        normalization=normalization,
        norm_weight=norm_weight,
        lower_p=None if lower is None else jnp.asarray(lower[0], dtype),
        lower_d2p=None if lower is None else jnp.asarray(lower[1], dtype),
        first_stage=first_stage,
    )


def init_params(problem: Problem, net_params, energy_init: float | None, members: int = 1) -> dict:
    """Trainable pytree: {"net": ...} plus {"energy": ...} when E is learned.

    A learned energy starts at `energy_init`, or at the lower bound min V + (pi / L)^2 of every
    eigenvalue. Starting below the spectrum lets the residual pull E up to the ground state; a
    start above it (e.g. the Rayleigh quotient of a random psi, spread over a deep well's walls)
    can settle on a state of a forbidden region instead. With members > 1 every leaf has a
    leading member axis.
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
    p, dp, d2p = physics.evaluate(problem.psi, params["net"], problem.x)
    if problem.lower_p is None:
        return physics.rayleigh_quotient(p, dp, problem.w, problem.v)
    p, d2p = problem.project(p, d2p)
    return jnp.sum(problem.w * p * (-d2p + problem.v * p)) / jnp.sum(problem.w * p**2)


def make_loss(problem: Problem, kind: str = "residual") -> Callable:
    """params -> (total, named terms). "residual": the PDE residual (+ norm); "ritz": the
    Rayleigh quotient of the projected psi, whose minimum over the orthogonal complement of the
    lower states is the next eigenstate."""

    def loss(params):
        p, _, d2p = physics.evaluate(problem.psi, params["net"], problem.x)
        p, d2p = problem.project(p, d2p)
        if kind == "ritz":
            w, v = problem.w, problem.v
            energy = jnp.sum(w * p * (-d2p + v * p)) / jnp.sum(w * p**2)
            return energy / problem.energy_scale, {"ritz": energy}
        terms = physics.loss_terms(
            p,
            d2p,
            problem.w,
            problem.v,
            problem.energy(params),
            normalization=problem.normalization,
            norm_weight=problem.norm_weight,
        )
        return sum(terms.values()), terms

    return loss


def make_schedule(kind: str, lr: float, lr_final: float, steps: int) -> optax.Schedule:
    steps = max(steps, 1)
    if kind == "constant":
        return optax.constant_schedule(lr)
    if kind == "cosine":
        return optax.cosine_decay_schedule(lr, steps, alpha=lr_final / lr)
    return optax.exponential_decay(lr, transition_steps=steps, decay_rate=lr_final / lr)


# --------------------------------------------------------------------------------------------
# Levenberg-Marquardt on the residual vector, with a Jacobian built one point at a time.


def make_residual_jacobian(problem: Problem, unravel: Callable) -> tuple[Callable, Callable]:
    """(flat -> r, flat -> (r, J)) with ||r||^2 equal to the residual loss.

    Row i of J is the gradient of point i's residual -psi_i'' + (V_i - E) psi_i. That scalar
    depends on the parameters through one network evaluation at x_i, so a vmap of per-point
    reverse-mode gradients builds the rows for about one backward pass over the batch. What
    couples the points (projection on the lower states, the normalisation) is low rank: it adds
    the Jacobians of a few scalar functionals (one backward pass each) as outer products.
    """
    sw = jnp.sqrt(problem.w)
    energy_of = lambda flat: problem.energy(unravel(flat))  # noqa: E731

    def point(flat, x, v):
        """(residual at x before projection, (psi, psi''))."""
        p, _, d2p = derivatives(problem.psi, unravel(flat)["net"], x)
        return -d2p + (v - energy_of(flat)) * p, (p, d2p)

    grad_point = jax.vmap(jax.grad(point, has_aux=True), in_axes=(None, 0, 0))
    val_point = jax.vmap(point, in_axes=(None, 0, 0))

    def projected_norm2(flat):
        """integral(psi^2) of the projected psi."""
        _, (p, d2p) = val_point(flat, problem.x, problem.v)
        return jnp.sum(problem.w * problem.project(p, d2p)[0] ** 2)

    def overlaps(flat):
        """c = <lower_k, psi>: projection removes lower_p @ c from psi and lower_d2p @ c from
        psi''."""
        _, (p, _) = val_point(flat, problem.x, problem.v)
        return problem.lower_p.T @ (problem.w * p)

    def finish(res, p):
        n2 = jnp.sum(problem.w * p**2)
        if problem.normalization == "hard":
            return sw * res / jnp.sqrt(n2), n2
        return jnp.append(sw * res, jnp.sqrt(problem.norm_weight) * (n2 - 1.0)), n2

    def residual_vector(flat):
        _, (p, d2p) = val_point(flat, problem.x, problem.v)
        p, d2p = problem.project(p, d2p)
        return finish(-d2p + (problem.v - energy_of(flat)) * p, p)[0]

    def with_jacobian(flat):
        j_res, (p, d2p) = grad_point(flat, problem.x, problem.v)
        energy = energy_of(flat)
        if problem.lower_p is not None:
            # The projected residual is q + u @ c, u = lower_d2p - (V - E) lower_p, E maybe learned.
            c, j_c = overlaps(flat), jax.jacrev(overlaps)(flat)
            u = problem.lower_d2p - (problem.v - energy)[:, None] * problem.lower_p
            d_energy = jax.grad(energy_of)(flat)
            j_res = j_res + u @ j_c + (problem.lower_p @ c)[:, None] * d_energy[None, :]
            p, d2p = problem.project(p, d2p)
        res = -d2p + (problem.v - energy) * p
        r, n2 = finish(res, p)
        g_n2 = jax.grad(projected_norm2)(flat)
        if problem.normalization == "hard":
            jr = (sw / jnp.sqrt(n2))[:, None] * j_res - (r / (2.0 * n2))[:, None] * g_n2[None, :]
            return r, jr
        c = jnp.sqrt(problem.norm_weight)
        return r, jnp.vstack([sw[:, None] * j_res, c * g_n2[None, :]])

    return residual_vector, with_jacobian


def make_lm_step(problem: Problem, unravel: Callable) -> Callable:
    """One Levenberg-Marquardt trial with Nielsen's damping update.

    (flat, mu, nu) -> (flat, mu, nu, loss before, loss after, accepted).
    """
    residual_vector, with_jacobian = make_residual_jacobian(problem, unravel)

    def solve(jac, r, mu):
        """(delta, J delta) with delta = -(J^T J + mu I)^-1 J^T r, solved in whichever of the
        two spaces is smaller.

        With fewer residuals M than parameters P the identity
        (J^T J + mu I)^-1 J^T = J^T (J J^T + mu I)^-1 turns a P x P system into an M x M one,
        and J delta = -(J J^T) z comes from the M x M matrix without another pass over J.
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


# --------------------------------------------------------------------------------------------
# Stages. Each advances (params, opt_state) by n steps in one compiled call and reports the loss.

REFINE_BLOCK = 10  # refinement steps per compiled block (and per log row)


@dataclass(frozen=True)
class Stage:
    name: str
    init: Callable  # params -> opt_state
    raw: Callable  # (params, opt_state, n) -> (params, opt_state, total, terms), not jitted
    lr: Callable[[int], float]  # step within the stage -> learning rate, for the log
    enter: Callable | None = None  # params -> params when the stage starts (not on resume)
    members: int = 1  # > 1: every argument and result of `raw` has a leading member axis

    @functools.cached_property
    def block(self) -> Callable:
        """`raw` compiled, with n static; vmapped over the members of an ensemble."""
        if self.members == 1:
            return jax.jit(self.raw, static_argnums=2)
        raw = self.raw

        def ensemble(params, opt_state, n):
            return jax.vmap(lambda p, o: raw(p, o, n))(params, opt_state)

        return jax.jit(ensemble, static_argnums=2)


def for_members(stage: Stage, members: int) -> Stage:
    """The stage for an ensemble: every argument and result of `block` and `init` carries a
    leading member axis, and one compiled program advances all members together."""
    if members == 1:
        return stage
    return dataclasses.replace(stage, init=jax.vmap(stage.init), members=members)


def _scan_block(loss: Callable, update: Callable) -> Callable:
    """A block of n steps of `update(params, opt_state, total, grads)`."""
    value_and_grad = jax.value_and_grad(loss, has_aux=True)

    def one_step(carry, _):
        params, opt_state = carry
        (total, terms), grads = value_and_grad(params)
        return update(params, opt_state, total, grads), (total, terms)

    def block(params, opt_state, n):
        (params, opt_state), _ = jax.lax.scan(one_step, (params, opt_state), length=n)
        total, terms = loss(params)
        return params, opt_state, total, terms

    return block


def adam_stage(loss: Callable, schedule: optax.Schedule) -> Stage:
    opt = optax.adam(schedule)

    def update(params, opt_state, total, grads):
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    return Stage("adam", opt.init, _scan_block(loss, update), lambda k: float(schedule(k)))


def lbfgs_stage(loss: Callable) -> Stage:
    """optax.lbfgs with its zoom line search (strong Wolfe conditions)."""
    opt = optax.lbfgs()
    loss_only = lambda p: loss(p)[0]  # noqa: E731

    def update(params, opt_state, total, grads):
        updates, opt_state = opt.update(
            grads, opt_state, params, value=total, grad=grads, value_fn=loss_only
        )
        return optax.apply_updates(params, updates), opt_state

    return Stage("lbfgs", opt.init, _scan_block(loss, update), lambda k: float("nan"))


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

    return Stage("lm", init, block, lambda k: float("nan"))


# --------------------------------------------------------------------------------------------
# The fit loop.


@dataclass(frozen=True)
class Settings:
    """Plain training settings (taken from the config by the caller)."""

    steps: int = 2000
    lr: float = 1e-2
    lr_schedule: str = "exponential"
    lr_final: float = 1e-4
    log_every: int = 100
    checkpoint_every: int = 1000
    refine: str = "lm"
    refine_steps: int = 300
    refine_tol: float = 1e-15
    ensemble: int = 1  # networks trained side by side; > 1: every state leaf has a member axis


@dataclass
class FitResult:
    params: Any
    status: str = "completed"  # "completed" | "diverged" | "interrupted"
    stop_reason: str = ""
    step: int = 0
    history: list[dict] = field(default_factory=list)
    compile_s: float = 0.0
    ms_per_step: dict[str, float] = field(default_factory=dict)  # per step of all members
    # Ensembles: the step at which each member diverged (None: it did not). A diverged member
    # keeps its last finite parameters; the run diverges only when every member has.
    diverged_at: list[int | None] = field(default_factory=list)
    final_loss: list[float] = field(default_factory=list)  # each member's last finite loss
    first_step_at: float | None = None  # perf_counter() when the first compiled block started


@dataclass
class Callbacks:
    on_log: Callable[[list[dict]], None] = lambda recs: None  # one record per member
    on_checkpoint: Callable[[int, Any], None] = lambda step, state: None
    stop_requested: Callable[[], bool] = lambda: False


def make_stages(problem: Problem, settings: Settings, params_like) -> list[tuple[Stage, int]]:
    """[(stage, number of steps)] in order. `params_like`: one member's parameters."""
    loss = make_loss(problem)
    schedule = make_schedule(settings.lr_schedule, settings.lr, settings.lr_final, settings.steps)
    stages = [(adam_stage(make_loss(problem, problem.first_stage), schedule), settings.steps)]
    if settings.refine == "lm":
        stages.append((lm_stage(problem, loss, params_like), settings.refine_steps))
    elif settings.refine == "lbfgs":
        stages.append((lbfgs_stage(loss), settings.refine_steps))
    if problem.first_stage == "ritz":
        if settings.ensemble > 1:
            raise ValueError("ensembles train ground states only (no Rayleigh-Ritz stage)")
        enter = functools.partial(ritz_output_layer, problem)
        stages[1:] = [(dataclasses.replace(st, enter=enter), n) for st, n in stages[1:]]
    return [(for_members(st, settings.ensemble), n) for st, n in stages]


def ritz_output_layer(problem: Problem, params) -> dict:
    """Rayleigh-Ritz in the span of the last hidden layer: set the (linear) output layer to the
    lowest eigenvector of H in that span, orthogonal to the lower states, and E to its eigenvalue.

    Adam only approaches the minimum of the Rayleigh quotient; the residual stage then converges
    to the nearest eigenpair, which may be a higher state. The exact minimum over the learned
    features is a much closer start, and it costs one small generalised eigenproblem.
    """
    import scipy.linalg

    def values(x):
        def basis(y):
            return problem.psi.basis(params["net"], y)

        first = lambda y: jax.jvp(basis, (y,), (jnp.ones_like(y),))  # noqa: E731
        (f, _), (_, d2f) = jax.jvp(first, (x,), (jnp.ones_like(x),))
        return f, d2f

    f, d2f = jax.jit(jax.vmap(values))(problem.x)
    f, d2f = problem.project(f, d2f)
    f, d2f, w, v = (np.asarray(a, float) for a in (f, d2f, problem.w, problem.v))
    s = f.T @ (w[:, None] * f)
    h = f.T @ (w[:, None] * (-d2f + v[:, None] * f))
    h = 0.5 * (h + h.T)
    lam, u = np.linalg.eigh(s)  # drop the directions the features (nearly) do not span
    keep = lam > 1e-12 * lam.max()
    t = u[:, keep] / np.sqrt(lam[keep])
    e, y = scipy.linalg.eigh(t.T @ h @ t)
    c = t @ y[:, 0]
    net = jax.tree.map(lambda a: a, params["net"])
    dtype = net["out"]["kernel"].dtype
    net["out"] = {"kernel": jnp.asarray(c[:-1, None], dtype), "bias": jnp.asarray(c[-1:], dtype)}
    out = {**params, "net": net}
    if problem.fixed_energy is None:
        out["energy"] = jnp.asarray(e[0] / problem.energy_scale, dtype)
    return out


def init_state(stages, params) -> dict:
    """The checkpointed training state: parameters, every stage's optimiser state, the step;
    for an ensemble also the step at which each member diverged (-1: it has not), so that a
    resumed run keeps a diverged member frozen as the uninterrupted run would."""
    state = {
        "params": params,
        "opt": {stage.name: stage.init(params) for stage, _ in stages},
        "step": jnp.asarray(0, jnp.int32),
    }
    members = stages[0][0].members if stages else 1
    if members > 1:
        state["diverged_at"] = jnp.full(members, -1, jnp.int32)
    return state


def fit(
    problem: Problem,
    settings: Settings,
    state: dict,
    stages: list[tuple[Stage, int]],
    callbacks: Callbacks | None = None,
) -> FitResult:
    """Run every stage from `state["step"]` (0, or a restored checkpoint's step) to the end."""
    callbacks = callbacks or Callbacks()
    diagnose = lambda p: (problem.energy(p), rayleigh(problem, p))  # noqa: E731
    diagnostics = jax.jit(diagnose if settings.ensemble == 1 else jax.vmap(diagnose))
    result = FitResult(params=state["params"], step=int(state["step"]))
    result.diverged_at = [None] * settings.ensemble
    if "diverged_at" in state:  # an ensemble's record, restored with its checkpoint
        result.diverged_at = [None if d < 0 else int(d) for d in np.asarray(state["diverged_at"])]
    result.final_loss = [float("nan")] * settings.ensemble
    t0, offset = time.perf_counter(), 0
    for stage, n_steps in stages:
        block_size = settings.log_every if stage.name == "adam" else REFINE_BLOCK
        state = _run_stage(
            stage, offset, n_steps, block_size, settings, state, diagnostics, callbacks, result, t0
        )
        offset += n_steps
        if result.status != "completed":
            break
    result.params = state["params"]
    if result.status == "completed" and not result.stop_reason:
        result.stop_reason = "all steps done"
    return result


def _run_stage(stage, offset, n_steps, block_size, settings, state, diag, callbacks, result, t0):
    end = offset + n_steps
    if stage.enter is not None and int(state["step"]) == offset and n_steps > 0:
        state = {**state, "params": stage.enter(state["params"])}
    compiled: dict[int, Callable] = {}
    run_s = run_steps = 0
    previous = None
    alive = np.array([d is None for d in result.diverged_at])
    while int(state["step"]) < end:
        step = int(state["step"])
        n = min(block_size - (step - offset) % block_size, end - step)
        params, opt_state = state["params"], state["opt"][stage.name]
        if n not in compiled:
            tc = time.perf_counter()
            compiled[n] = stage.block.lower(params, opt_state, n).compile()
            result.compile_s += time.perf_counter() - tc
        tr = time.perf_counter()
        result.first_step_at = result.first_step_at or tr
        params, opt_state, total, terms = compiled[n](params, opt_state)
        total = np.atleast_1d(np.asarray(total, dtype=float))  # waits for the block
        run_s, run_steps = run_s + time.perf_counter() - tr, run_steps + n
        step += n
        finite = np.isfinite(total) & _finite_members(params, settings.ensemble)
        for i in np.flatnonzero(alive & ~finite):
            result.diverged_at[i] = step
        alive &= finite
        if not alive.any():
            result.status = "diverged"
            result.stop_reason = f"non-finite loss or parameters in {stage.name} by step {step}"
            result.step = step
            return state  # the last good state
        if not alive.all():  # diverged members keep their last finite state
            params, opt_state = _where_members(
                alive, (params, opt_state), (state["params"], state["opt"][stage.name])
            )
        state = {
            **state,
            "params": params,
            "opt": {**state["opt"], stage.name: opt_state},
            "step": jnp.asarray(step, jnp.int32),
        }
        if "diverged_at" in state:
            record = [-1 if d is None else d for d in result.diverged_at]
            state["diverged_at"] = jnp.asarray(record, jnp.int32)
        result.step = step
        energy, rq = (np.atleast_1d(np.asarray(a, dtype=float)) for a in diag(params))
        terms = {k: np.atleast_1d(np.asarray(v, dtype=float)) for k, v in terms.items()}
        records = []
        for i in np.flatnonzero(alive):
            rec = {"step": step, "stage": stage.name, "loss": float(total[i])}
            if settings.ensemble > 1:
                rec = {"member": int(i), **rec}
            rec.update({k: float(v[i]) for k, v in terms.items()})
            rec.update(energy=float(energy[i]), rayleigh=float(rq[i]), lr=stage.lr(step - offset))
            rec["elapsed_s"] = time.perf_counter() - t0
            records.append(rec)
            result.final_loss[i] = float(total[i])
        result.history.extend(records)
        callbacks.on_log(records)
        stop = callbacks.stop_requested()
        converged = _stalled(stage, previous, total, settings.refine_tol, alive)
        if converged:  # the stage is over: a resume from this checkpoint skips the rest
            state["step"] = jnp.asarray(end, jnp.int32)
        if step % settings.checkpoint_every == 0 or step == end or stop or converged:
            callbacks.on_checkpoint(step, state)
        if stop:
            result.status, result.stop_reason = "interrupted", f"interrupted at step {step}"
            break
        if converged:
            loss = float(np.min(total[alive]))
            result.stop_reason = f"{stage.name} converged: loss {loss:.3e} stopped decreasing"
            break
        previous = total
    if run_steps:
        result.ms_per_step[stage.name] = 1e3 * run_s / run_steps
    return state


def _stalled(stage: Stage, previous, total, tol: float, alive) -> bool:
    """A refinement stage stops once a whole block no longer lowers the loss by a fraction > tol,
    for every member still training."""
    if stage.name == "adam" or previous is None:
        return False
    stalled = (total == 0.0) | ((previous - total) <= tol * previous)
    return bool(np.all(stalled[alive]))


def _finite_members(tree, members: int) -> np.ndarray:
    """Per member (or for the single network, as an array of one): are all its leaves finite?"""
    ok = np.ones(members, dtype=bool)
    for leaf in jax.tree.leaves(tree):
        finite = jnp.isfinite(leaf)
        axes = tuple(range(1 if members > 1 else 0, leaf.ndim))
        ok &= np.atleast_1d(np.asarray(jnp.all(finite, axis=axes)))
    return ok


def _where_members(keep: np.ndarray, new, old):
    """Member-wise choice between two stacked pytrees: new where keep[i], else old."""

    def pick(a, b):
        mask = jnp.asarray(keep).reshape((-1,) + (1,) * (a.ndim - 1))
        return jnp.where(mask, a, b)

    return jax.tree.map(pick, new, old)
