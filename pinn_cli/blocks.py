"""A fit's compiled programs at run time: each stage's blocks of steps and the diagnostics
after each block, compiled once per argument signature (read from disk where `exported` stored
them) and, where training can go on meanwhile, compiled ahead in a daemon thread. The blocks
time themselves into the fit's result (train.FitResult: compile_s, train_s, first and last
step); `state` is a train.TrainState, `callbacks` a train.Callbacks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import ClassVar

import jax.numpy as jnp
import numpy as np

from . import exported
from .compiling import Ahead, compile_interruptibly
from .optim import Stage, signature


class Diagnostics:
    """The problem's diagnostics (the Rayleigh quotient ...) after each block. Traced and
    lowered at the first block's log row, on the main thread, they kept training waiting
    ~0.5 s of a 4 s run; `ahead` compiles them in a daemon thread when the fit starts, while
    the first block compiles and runs. Compiled programs are kept per signature, so the
    states and time windows of a run that share one share it."""

    compiled: ClassVar[dict] = {}  # (program, signature) -> Ahead, then the compiled program

    def __init__(self, program: Callable, problem, members: int = 1):
        self.program, self.problem, self.members = program, problem, members

    def _key(self, params):
        return self.program, signature(self.problem, params)

    def ahead(self, params) -> None:
        key = self._key(params)
        if key not in self.compiled:
            args, ident = (self.problem, params), ("diagnostics", self.members)
            lowered = lambda: exported.lower(self.program, args, (), ident).compile()  # noqa: E731
            self.compiled[key] = Ahead(lowered)

    def __call__(self, params):
        key = self._key(params)
        entry = self.compiled.get(key)
        if isinstance(entry, Ahead):
            try:
                entry = self.compiled[key] = entry.result(lambda: False)
            except Exception:  # the plain program reports it, below
                entry = self.compiled[key] = None
        if entry is not None:
            try:
                return entry(self.problem, params)
            except TypeError:  # compiled for other argument types (weak types, placement)
                self.compiled[key] = None
        return self.program(self.problem, params)


class Blocks:
    """A stage's compiled blocks on one problem, and the time spent running them. The programs
    are kept with the stage (`Stage.compiled`), so a later problem of the same signature (the
    next state, the next time window) reuses them."""

    def __init__(self, stage: Stage, problem, result):
        self.stage, self.problem, self.result = stage, problem, result
        self.seconds, self.steps = 0.0, 0

    def compile(self, state, n: int, callbacks):
        """The stage's block of n steps for this state's signature, compiled once (or waited
        for, if `ahead` is compiling it). Raises Interrupted when a stop is requested while it
        compiles."""
        args = (self.problem, state.params, state.opt[self.stage.name])
        key = (n, signature(*args))
        entry = self.stage.compiled.get(key)
        if entry is None:
            tc = time.perf_counter()
            lowered = exported.lower(self.stage.block, args, (n,), self.stage.ident)
            self.stage.compiled[key] = compile_interruptibly(lowered, callbacks.stop_requested)
            self.result.compile_s += time.perf_counter() - tc
        elif isinstance(entry, Ahead):
            tc = time.perf_counter()
            self.stage.compiled[key] = entry.result(callbacks.stop_requested)
            self.result.compile_s += time.perf_counter() - tc
        return self.stage.compiled[key]

    def ahead(self, state, n: int) -> Ahead:
        """Start tracing, lowering and compiling the block of n steps in a daemon thread; the
        block's `compile` waits for it."""
        args = (self.problem, state.params, state.opt[self.stage.name])
        key = (n, signature(*args))
        if key not in self.stage.compiled:
            stage = self.stage
            self.stage.compiled[key] = Ahead(
                lambda: exported.lower(stage.block, args, (n,), stage.ident).compile()
            )
        entry = self.stage.compiled[key]
        return entry if isinstance(entry, Ahead) else Ahead(lambda: entry)

    def advance(self, state, n: int, callbacks):
        """(state n steps on, total loss per member (NumPy), named terms). Raises Interrupted
        when a stop is requested while the block compiles."""
        args = (self.problem, state.params, state.opt[self.stage.name])
        block = self.compile(state, n, callbacks)
        tr = time.perf_counter()
        self.result.first_step_at = self.result.first_step_at or tr
        params, opt_state, total, terms = block(*args)
        total = np.atleast_1d(np.asarray(total, dtype=float))  # waits for the block
        self.result.last_step_at = time.perf_counter()
        self.result.train_s += self.result.last_step_at - tr
        self.seconds, self.steps = self.seconds + self.result.last_step_at - tr, self.steps + n
        new = state.replace(
            params=params,
            opt={**state.opt, self.stage.name: opt_state},
            step=jnp.asarray(int(state.step) + n, jnp.int32),
        )
        return new, total, terms
