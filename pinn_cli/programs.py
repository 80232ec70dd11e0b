"""The compiled programs of a fit, shared by every problem of the same kind and plan.

`make_stages(problem, plan, params_like)` gives the optimiser stages (Adam, then
Levenberg-Marquardt or L-BFGS) of a train.Plan; an excited state's Levenberg-Marquardt starts
with SHIFT_STEPS steps at E held at its Rayleigh-Ritz value (`shifted`). The stages take the
problem as an argument (a pytree), so they are cached by the settings the programs depend on,
and each keeps its compiled blocks: the second state of a run, or window of an evolution,
compiles nothing.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from .lm import REFINE_BLOCK, lm_stage
from .optim import (
    Stage,
    adam_stage,
    for_members,
    identified,
    lbfgs_stage,
    logged_schedule,
    make_schedule,
)
from .resources import choose_solver
from .states import ritz_output_layer

# An excited state's first Levenberg-Marquardt steps hold E at the Rayleigh-Ritz value its stage
# starts from. The residual (H - E) psi at a fixed shift E is smallest for the eigenstate whose
# energy is nearest the shift, as in shift-invert iteration, so these steps purify the state
# the Ritz start mostly is before E is free to move. With E free from the start, the double
# well's state 4 (Ritz value 55.2, E_4 = 54.87, E_5 = 57.64) went to state 5 (seeds 0 and 1);
# with 50 such steps it converges to state 4.
SHIFT_STEPS = 50


def make_stages(problem, plan, params_like) -> list[tuple[Stage, int]]:
    """[(stage, number of steps)] in order. `params_like`: one member's parameters. The stages
    are shared by every problem of the same kind under the same plan, with their compiled
    blocks: the second state of a run (or window of an evolution) compiles nothing."""
    solver = lm_solver(problem, plan, params_like) if plan.refine == "lm" else None
    key = (type(problem), problem.first_stage, plan.lr_schedule, plan.lr, plan.lr_final)
    geodesic = plan.geodesic
    if geodesic is None:  # measured to help 1-D problems (x only) with the explicit solver
        geodesic = solver == "explicit" and problem.x.shape[-1] == 1
    key += (plan.steps, plan.refine, solver, geodesic, plan.cg_iters, plan.cg_tol)
    key += (plan.ensemble, not sharded(problem))
    stages = _stages(*key)
    if len(stages) == 3:  # Adam, the shifted LM steps, LM
        shift = min(SHIFT_STEPS, plan.refine_steps)
        return list(zip(stages, (plan.steps, shift, plan.refine_steps - shift)))
    return list(zip(stages, (plan.steps, plan.refine_steps)))


@functools.lru_cache(maxsize=8)
def _stages(kind, first_stage, lr_schedule, lr, lr_final, steps, refine, solver, *rest):
    geodesic, cg_iters, cg_tol, members, native = rest
    loss = _loss("residual")
    schedule = make_schedule(lr_schedule, lr, lr_final, steps)
    logged = logged_schedule(lr_schedule, lr, lr_final, steps)
    stages = [adam_stage(_loss(first_stage), schedule, logged)]
    enter = ritz_output_layer if first_stage == "ritz" else None
    if enter is not None and members > 1:
        raise ValueError("ensembles train ground states only (no Rayleigh-Ritz stage)")
    if refine == "lm":
        ls = lambda problem, unravel: problem.least_squares(unravel)  # noqa: E731
        rescale = lambda problem, params: problem.rescaled(params)  # noqa: E731
        lm = lm_stage(ls, loss, solver, cg_iters, cg_tol, rescale, geodesic, native)
        if enter is not None:
            stages.append(shifted(dataclasses.replace(lm, enter=enter)))
            lm = dataclasses.replace(lm, enter=rayleigh_energy)
        stages.append(lm)
    elif refine == "lbfgs":
        stages.append(dataclasses.replace(lbfgs_stage(loss, REFINE_BLOCK), enter=enter))
    ident = (kind.__qualname__, first_stage, lr_schedule, lr, lr_final, steps, refine, solver)
    return tuple(
        identified(for_members(st, members), (i, st.name, *ident, *rest))
        for i, st in enumerate(stages)
    )


def sharded(problem) -> bool:
    """Whether the problem's points are split over several devices (train.devices > 1): XLA
    then partitions the LM step's Gram matrix itself, which a custom call would not allow."""
    sharding = getattr(problem.x, "sharding", None)
    return sharding is not None and len(sharding.device_set) > 1


def shifted(stage: Stage) -> Stage:
    """The stage on the problem with E held at the value the parameters hold as each block
    starts (set by the stage's `enter`, the Rayleigh-Ritz start), or at the problem's coarse
    `target` where that is lower; it runs to its budget.

    With the lower states projected out, any shift at or below E_n makes state n the nearest
    eigenstate, while one above the midpoint to E_{n+1} makes it state n + 1. A Rayleigh-Ritz
    value lies above E_n, by as much as the features miss (`finite_well2d state=5`: 52.38 for
    the level at 49.67, next level 52.00), so the lower of the two is the safer shift."""
    raw = stage.raw

    def block(problem, params, opt_state, n):
        shift = problem.energy(params)
        if problem.target is not None:
            shift = jnp.minimum(shift, problem.target)
        held = dataclasses.replace(problem, fixed_energy=shift)
        return raw(held, params, opt_state, n)

    return dataclasses.replace(stage, name=f"{stage.name}_shift", raw=block, converges=False)


def rayleigh_energy(problem, params):
    """params with the learned E set to psi's Rayleigh quotient: after the shifted steps, which
    held E at the shift, the parameter still holds the Rayleigh-Ritz start, and a free E that
    starts there pulls psi back towards the eigenstate nearest that start."""
    if problem.fixed_energy is not None:
        return params
    quotient = diagnostics_program(1)(problem, params)["rayleigh"]
    energy = params["energy"]
    return {**params, "energy": jnp.asarray(quotient / problem.energy_scale, energy.dtype)}


def _loss(kind: str) -> Callable:
    """(problem, params) -> (total, terms) of the problem's loss of that kind."""
    return lambda problem, params: problem.loss(kind)(params)


@functools.cache
def diagnostics_program(members: int) -> Callable:
    """(problem, params) -> the problem's diagnostics, compiled once, per member."""
    one = lambda problem, params: problem.diagnostics(params)  # noqa: E731
    return jax.jit(one if members == 1 else jax.vmap(one, in_axes=(None, 0)))


def lm_solver(problem, plan, params_like) -> str:
    """The linear solver the LM stage uses: plan.solver, or by cost estimate for "auto"."""
    return choose_solver(plan.solver, problem.residual_rows, ravel_pytree(params_like)[0].size)
