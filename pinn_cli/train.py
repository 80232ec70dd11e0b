"""The training state and the fit loop. Returns results; writes no files.

`fit(problem, plan, state, callbacks) -> FitResult` runs a first-order stage (Adam with a
learning-rate schedule), then a float64 refinement (Levenberg-Marquardt on the residual vector,
or L-BFGS), each in compiled blocks of steps. Between blocks the loop checks that every member
is finite, records a log row, and hands checkpoints to the callbacks; the caller decides what to
write.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from . import ensemble
from .blocks import Blocks, Diagnostics
from .compiling import Interrupted
from .optim import Stage
from .problem import Problem
from .programs import diagnostics_program, make_stages
from .stopping import EXTEND_WINDOW
from .stopping import settled as _settled
from .stopping import stalled as _stalled
from .stopping import still_falling as _still_falling


@dataclass(frozen=True)
class Plan:
    """Plain training settings (taken from the config by the caller)."""

    steps: int = 2000
    lr: float = 1e-2
    lr_schedule: str = "exponential"
    lr_final: float = 1e-4
    log_every: int = 100
    checkpoint_every: int = 1000
    refine: str = "lm"  # "lm" | "lbfgs" | "none"
    refine_steps: int = 300
    refine_tol: float = 1e-15
    refine_window: int = 10  # steps over which the refinement must lower the loss by refine_tol
    # Steps the last refinement stage may run past its budget while its loss still falls by
    # stopping.EXTEND_FACTOR per stopping.EXTEND_WINDOW steps (stopping.still_falling)
    refine_extra: int = 0
    # The refinement also stops once the Rayleigh quotient has moved less than this relative
    # tolerance over 50 steps and E agrees with it to 1e-8 (stopping.settled; 0: never)
    settle_tol: float = 0.0
    solver: str = "auto"  # the LM stage's linear solver: "auto" | "explicit" | "cg" (lm.py)
    geodesic: bool | None = None  # the LM steps' geodesic acceleration; None: 1-D, explicit
    cg_iters: int = 20
    cg_tol: float = 1e-3
    ensemble: int = 1  # networks trained side by side; > 1: every state leaf has a member axis


@struct.dataclass
class TrainState:
    """What a checkpoint holds: parameters, every stage's optimiser state, the step, and the
    step at which each member diverged (-1: it has not), so that a resumed ensemble keeps a
    diverged member frozen as the uninterrupted run would."""

    params: Any
    opt: dict
    step: jax.Array
    diverged_at: jax.Array  # (members,)


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
    last_step_at: float | None = None  # perf_counter() when the last compiled block ended
    train_s: float = 0.0  # seconds inside compiled training blocks (compilation excluded)
    solvers: dict[str, str] = field(default_factory=dict)  # stage -> its linear solver
    extended_by: int = 0  # steps the last refinement ran past its budget (Plan.refine_extra)


@dataclass
class Callbacks:
    on_log: Callable[[list[dict]], None] = lambda recs: None  # one record per member
    on_checkpoint: Callable[[int, TrainState], None] = lambda step, state: None
    stop_requested: Callable[[], bool] = lambda: False
    clock: float | None = None  # perf_counter() that elapsed_s counts from (None: the fit's start)
    on_compiled: Callable[[], None] = lambda: None  # every stage's first block is compiled


def one_member(params, members: int):
    return params if members == 1 else ensemble.member(params, 0)


def init_state(problem, plan: Plan, params) -> TrainState:
    stages = make_stages(problem, plan, one_member(params, plan.ensemble))
    return TrainState(
        params=params,
        opt={stage.name: _compiled(stage.init)(params) for stage, _ in stages},
        step=jnp.asarray(0, jnp.int32),
        diverged_at=jnp.full(plan.ensemble, -1, jnp.int32),
    )


@functools.cache
def _compiled(init: Callable) -> Callable:
    """A stage's optimiser-state initialisation as one program: run eagerly, each of its
    zeros_like is a program of its own (a cache lookup each, ~20-50 ms each to compile with an
    empty cache). The stages are shared by the states of a run, and so is this."""
    return jax.jit(init)


@dataclass
class _Loop:
    """What the fit carries from block to block: its instruments and the result so far."""

    problem: Problem
    plan: Plan
    callbacks: Callbacks
    diagnostics: Callable  # params -> {name: number}, per member (problem.diagnostics)
    result: FitResult
    t0: float = field(default_factory=time.perf_counter)

    @property
    def alive(self) -> np.ndarray:
        return np.array([d is None for d in self.result.diverged_at])


def fit(
    problem: Problem,
    plan: Plan,
    state: TrainState,
    callbacks: Callbacks | None = None,
    *,
    stages: list[tuple[Stage, int]] | None = None,
) -> FitResult:
    """Run every stage from `state.step` (0, or a restored checkpoint's step) to the end."""
    stages = stages or make_stages(problem, plan, one_member(state.params, plan.ensemble))
    result = FitResult(params=state.params, step=int(state.step))
    result.diverged_at = [None if d < 0 else int(d) for d in np.asarray(state.diverged_at)]
    result.final_loss = [float("nan")] * plan.ensemble
    diagnostics = Diagnostics(diagnostics_program(plan.ensemble), problem, plan.ensemble)
    diagnostics.ahead(state.params)
    callbacks = callbacks or Callbacks()
    loop = _Loop(problem, plan, callbacks, diagnostics, result)
    loop.t0 = loop.t0 if callbacks.clock is None else callbacks.clock
    _compile_ahead(loop, stages, state)
    offset = 0
    for i, (stage, n_steps) in enumerate(stages):
        extra = plan.refine_extra if i == len(stages) - 1 and stage.converges else 0
        state = _run_stage(loop, stage, offset, n_steps, state, extra)
        offset += n_steps
        if result.status != "completed":
            break
    result.params = state.params
    if result.status == "completed" and not result.stop_reason:
        result.stop_reason = "all steps done"
    if result.extended_by:
        result.stop_reason += (
            f" ({result.extended_by} steps past the budget, the loss still falling)"
        )
    return result


def _compile_ahead(loop: _Loop, stages: list[tuple[Stage, int]], state: TrainState) -> None:
    """Compile the first block of the first stage still to run before the first step, and
    those of the later stages in daemon threads while the first one trains: XLA compiles and
    runs steps without the GIL, so compiling the later stages (on the other core) comes off
    the critical path. `callbacks.on_compiled` runs in that thread once every stage is
    compiled, handing the rest of the training time to other threads. A stop requested
    meanwhile is left to the stage that compiles again."""
    offset, step, firsts = 0, int(state.step), []
    for stage, n_steps in stages:
        start, end = max(step, offset), offset + n_steps
        if start < end:
            size = stage.block_size or loop.plan.log_every
            firsts.append((stage, min(size - (start - offset) % size, end - start)))
        offset = end
    try:
        for stage, n in firsts[:1]:
            Blocks(stage, loop.problem, loop.result).compile(state, n, loop.callbacks)
    except Interrupted:
        return
    later = [Blocks(stage, loop.problem, loop.result).ahead(state, n) for stage, n in firsts[1:]]

    def rest():
        for future in later:
            future.wait()
        loop.callbacks.on_compiled()

    threading.Thread(target=rest, name="compile-ahead", daemon=True).start()


def _run_stage(loop: _Loop, stage: Stage, offset: int, n_steps: int, state: TrainState, extra=0):
    """Run one stage from the state's step to offset + n_steps; a stage given `extra` steps
    (the last refinement) runs on past that, a block at a time, while its loss still falls
    fast (stopping.still_falling), to at most offset + n_steps + extra."""
    end, ceiling = offset + n_steps, offset + n_steps + extra
    if stage.enter is not None and int(state.step) == offset and n_steps > 0:
        state = state.replace(params=stage.enter(loop.problem, state.params))
    blocks = Blocks(stage, loop.problem, loop.result)
    if stage.solver is not None:
        loop.result.solvers[stage.name] = stage.solver
    size = stage.block_size or loop.plan.log_every
    earlier: list[tuple[int, np.ndarray]] = []  # (step, loss per member) after each block
    energies: list[tuple[int, dict]] = []  # (step, diagnostics per member) after each block
    while int(state.step) < end:
        step = int(state.step)
        try:
            new, total, terms = blocks.advance(
                state, min(size - (step - offset) % size, end - step), loop.callbacks
            )
        except Interrupted:  # a signal while a block compiled: nothing new to lose
            loop.callbacks.on_checkpoint(step, state)
            loop.result.status = "interrupted"
            loop.result.stop_reason = f"interrupted at step {step}, while compiling {stage.name}"
            break
        alive = _check_finite(loop, stage, new, total)
        if not alive.any():
            return state  # the last good state
        state = _keep_alive(state, new, alive, stage.name, loop.result.diverged_at)
        energies.append((int(new.step), _record(loop, stage, offset, state, total, terms)))
        if int(new.step) == end < ceiling:
            end = _extended(loop, end, ceiling, size, earlier, total, alive)
        stop = loop.callbacks.stop_requested()
        why = _converged(loop.plan, stage, energies, earlier, int(new.step), total, alive)
        converged = why is not None
        if converged:  # the stage is over: a resume from this checkpoint skips the rest
            state = state.replace(step=jnp.asarray(end, jnp.int32))
        step = int(new.step)
        if step % loop.plan.checkpoint_every == 0 or step == end or stop or converged:
            loop.callbacks.on_checkpoint(step, state)
        if stop or converged:
            _stopped(loop.result, stage, step, total, alive, interrupted=stop, why=why)
            break
        earlier.append((int(new.step), total))
    if blocks.steps:
        loop.result.ms_per_step[stage.name] = 1e3 * blocks.seconds / blocks.steps
    return state


def _converged(plan: Plan, stage: Stage, energies, earlier, step: int, total, alive) -> str | None:
    """Why a refinement stage is over after the block ending at `step`: its E has settled or
    its loss stopped decreasing; None while it goes on (and always for other stages)."""
    if not stage.converges:
        return None
    if _settled(energies, plan.settle_tol, alive):
        return "E settled"
    if _stalled(earlier, step - plan.refine_window, total, plan.refine_tol, alive):
        return "stopped decreasing"
    return None


def _extended(loop: _Loop, end: int, ceiling: int, size: int, earlier, total, alive) -> int:
    """The stage's new end: one block further while the loss still falls fast, else `end`."""
    if not _still_falling(earlier, end - EXTEND_WINDOW, total, alive):
        return end
    loop.result.extended_by += min(size, ceiling - end)
    return min(end + size, ceiling)


def _check_finite(loop: _Loop, stage: Stage, new: TrainState, total) -> np.ndarray:
    """Mark members that went non-finite in this block; the members still alive."""
    result, step = loop.result, int(new.step)
    finite = np.isfinite(total) & ensemble.finite(new.params, loop.plan.ensemble)
    before = loop.alive
    for i in np.flatnonzero(before & ~finite):
        result.diverged_at[i] = step
    alive = before & finite
    result.step = step
    if not alive.any():
        result.status = "diverged"
        result.stop_reason = f"non-finite loss or parameters in {stage.name} by step {step}"
    return alive


def _keep_alive(old: TrainState, new: TrainState, alive: np.ndarray, name: str, diverged_at):
    """`new`, except that diverged members keep their last finite parameters and state."""
    if not alive.all():
        params, opt_state = ensemble.where(
            alive, (new.params, new.opt[name]), (old.params, old.opt[name])
        )
        new = new.replace(params=params, opt={**new.opt, name: opt_state})
    record = [-1 if d is None else d for d in diverged_at]
    if alive.all() and not any(d >= 0 for d in record):
        return new  # nothing diverged: new carries the state's all -1 (no device transfer)
    return new.replace(diverged_at=jnp.asarray(record, jnp.int32))


def _record(loop: _Loop, stage: Stage, offset: int, state: TrainState, total, terms) -> dict:
    """One log row per live member, handed to the callbacks and kept in the history; returns
    the diagnostics (per member)."""
    step, alive = int(state.step), loop.alive
    as_numbers = lambda d: {k: np.atleast_1d(np.asarray(v, dtype=float)) for k, v in d.items()}  # noqa: E731
    diagnostics, terms = as_numbers(loop.diagnostics(state.params)), as_numbers(terms)
    records = []
    for i in np.flatnonzero(alive):
        rec = {"step": step, "stage": stage.name, "loss": float(total[i])}
        if loop.plan.ensemble > 1:
            rec = {"member": int(i), **rec}
        rec.update({k: float(v[i]) for k, v in terms.items()})
        rec.update({k: float(v[i]) for k, v in diagnostics.items()}, lr=stage.lr(step - offset))
        rec["elapsed_s"] = time.perf_counter() - loop.t0
        records.append(rec)
        loop.result.final_loss[i] = float(total[i])
    loop.result.history.extend(records)
    loop.callbacks.on_log(records)
    return diagnostics


def _stopped(result: FitResult, stage: Stage, step: int, total, alive, *, interrupted, why):
    if interrupted:
        result.status, result.stop_reason = "interrupted", f"interrupted at step {step}"
    else:
        loss = float(np.min(total[alive]))
        result.stop_reason = f"{stage.name} converged at step {step}: {why} (loss {loss:.3e})"
