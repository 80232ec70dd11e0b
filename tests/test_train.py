"""Training reaches the physics: accuracy on small budgets, robust across seeds."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hydra import compose, initialize_config_module

from pinn_cli import assemble, blocks, compiling, experiment, physics, problem, stopping, train
from pinn_cli.cli import to_config
from pinn_cli.config import register_configs
from pinn_cli.optim import signature as optim_signature


def config(*overrides):
    register_configs()
    with initialize_config_module("pinn_cli.conf", version_base="1.3"):
        return to_config(compose("config", overrides=["progress=false", *overrides]))


def run(tmp_path, *overrides):
    result = experiment.run(config(*overrides), tmp_path)
    assert result.code == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert result.objective == summary["energy"]["rel_error"]
    return summary


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_adam_alone_gets_the_infinite_well_within_1e_2(tmp_path, seed):
    s = run(
        tmp_path,
        f"seed={seed}",
        "optim=adam",
        "model.width=16",
        "train.steps=400",
        "train.points=64",
        "train.log_every=100",
        "checks.strict=false",  # Adam alone does not converge the residual: the run is suspect
    )
    assert s["wavefunction"]["l2_error"] < 1e-2
    assert s["energy"]["reference"] == pytest.approx(np.pi**2, rel=1e-15)


@pytest.mark.parametrize("seed", [0, 7])
def test_levenberg_marquardt_reaches_1e_6_in_seconds(tmp_path, seed):
    s = run(
        tmp_path,
        f"seed={seed}",
        "model.width=16",
        "train.steps=300",
        "train.points=64",
        "optim.refine_steps=100",
    )
    assert s["energy"]["rel_error"] < 1e-8
    assert s["wavefunction"]["l2_error"] < 1e-5


@pytest.mark.parametrize("potential,overrides", [("finite_well", []), ("barrier", [])])
def test_learned_energy_converges_on_jump_potentials(tmp_path, potential, overrides):
    s = run(
        tmp_path,
        f"potential={potential}",
        "model.width=16",
        "train.steps=500",
        "train.points=96",
        "optim.refine_steps=150",
        *overrides,
    )
    assert s["energy"]["learned_rel_error"] < 1e-5
    assert s["energy"]["rel_error"] < 1e-6
    assert s["wavefunction"]["l2_error"] < 1e-3


@pytest.mark.parametrize(
    "overrides, lower_states",
    [
        (["loss.normalization=hard"], 0),
        (["loss.normalization=penalty"], 0),
        (["loss.normalization=hard"], 2),
        (["loss.normalization=penalty", "energy=fixed", "energy.value=30.0"], 1),
    ],
)
def test_levenberg_marquardt_jacobian_matches_autodiff(overrides, lower_states):
    """The Jacobian assembly (per-point rows plus low-rank terms for the projection and the
    normalisation) equals jax.jacfwd of the whole residual vector."""
    from jax.flatten_util import ravel_pytree

    cfg = config("potential=barrier", "model.width=4", "train.points=24", *overrides)
    lower = None
    if lower_states:  # any W-orthonormal functions on the grid will do as "lower states"
        built = assemble.build(cfg)
        x, w = np.asarray(built.problem.x)[:, 0], np.asarray(built.problem.w)
        f = np.stack([np.sin((k + 1) * np.pi * (x + 1.0) / 2.0) for k in range(lower_states)], 1)
        q, _ = np.linalg.qr(np.sqrt(w)[:, None] * f)
        f = q / np.sqrt(w)[:, None]
        lower = physics.Lower(f, f * np.linspace(-3.0, 5.0, x.size)[:, None], f[..., None])
    built = assemble.build(cfg, n=lower_states, lower=lower)
    flat, unravel = ravel_pytree(built.state.params)
    ls = built.problem.least_squares(unravel)
    residual_vector, with_jacobian = ls.residual, ls.with_jacobian
    r, jac = with_jacobian(flat)
    np.testing.assert_allclose(r, residual_vector(flat), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(jac, jax.jacfwd(residual_vector)(flat), rtol=1e-9, atol=1e-9)
    loss = problem.make_loss(built.problem)(built.state.params)[0]
    assert float(r @ r) == pytest.approx(float(loss), rel=1e-12)


def test_blocks_resume_bit_identically():
    """Two blocks of 10 Adam steps equal one block of 20 (what resume relies on)."""
    built = assemble.build(config("model.width=8", "train.points=32", "optim=adam"))
    stage = train.make_stages(built.problem, built.plan, built.state.params)[0][0]
    params, opt = built.state.params, built.state.opt["adam"]
    prob = built.problem
    p20, _, *_ = stage.block(prob, params, opt, 20)
    p10, o10, *_ = stage.block(prob, params, opt, 10)
    p10, o10, *_ = stage.block(prob, p10, o10, 10)
    for a, b in zip(jax.tree.leaves(p20), jax.tree.leaves(p10)):
        assert jnp.array_equal(a, b)


class SlowLowered:
    """A lowered program whose compilation takes `seconds` (standing in for a big XLA one)."""

    def __init__(self, seconds, compiled=None):
        self.seconds, self.compiled = seconds, compiled

    def compile(self):
        import time

        time.sleep(self.seconds)
        return self.compiled


def test_a_stop_request_interrupts_a_compilation_at_once():
    import time

    t0 = time.perf_counter()
    with pytest.raises(compiling.Interrupted):
        compiling.compile_interruptibly(SlowLowered(30.0), lambda: time.perf_counter() - t0 > 0.2)
    assert time.perf_counter() - t0 < 2.0  # not the 30 s the compilation takes
    assert compiling.compile_interruptibly(SlowLowered(0.1, "done"), lambda: False) == "done"


def test_fit_interrupted_while_compiling_keeps_its_state_and_says_so():
    """A signal during a stage's compilation: fit stops with status interrupted, hands the
    unchanged state to the checkpoint callback, and does not wait for the compilation."""
    import dataclasses
    import time

    built = assemble.build(config("model.width=8", "train.points=32", "optim=adam"))
    stage, n = train.make_stages(built.problem, built.plan, built.state.params)[0]
    slow = dataclasses.replace(stage)
    slow.__dict__["block"] = type("Block", (), {"lower": lambda *_: SlowLowered(30.0)})()
    saved, t0 = {}, time.perf_counter()
    callbacks = train.Callbacks(
        on_checkpoint=lambda step, state: saved.update({step: state}),
        stop_requested=lambda: time.perf_counter() - t0 > 0.3,
    )
    result = train.fit(built.problem, built.plan, built.state, callbacks, stages=[(slow, n)])
    assert time.perf_counter() - t0 < 5.0
    assert result.status == "interrupted" and "while compiling adam" in result.stop_reason
    assert list(saved) == [0] and saved[0] is built.state


def test_every_stage_is_compiled_once_and_the_clock_is_the_callers():
    """fit compiles the first block of each stage and calls on_compiled once, when all are
    compiled; metrics' elapsed_s counts from Callbacks.clock (a run's start), not from the fit."""
    import time

    built = assemble.build(
        config("model.width=8", "train.points=32", "train.steps=20", "optim.refine_steps=10")
    )
    stages = train.make_stages(built.problem, built.plan, built.state.params)
    for stage, _ in stages:
        stage.compiled.clear()
    seen = []

    def on_compiled():
        seen.append([len(stage.compiled) for stage, _ in stages])

    records = []
    clock = time.perf_counter() - 100.0
    callbacks = train.Callbacks(on_log=records.extend, clock=clock, on_compiled=on_compiled)
    result = train.fit(built.problem, built.plan, built.state, callbacks, stages=stages)
    assert [stage.name for stage, _ in stages] == ["adam", "lm"]
    assert seen == [[1, 1]]  # called once, with both stages' blocks compiled
    assert result.first_step_at is not None and records
    assert all(100.0 <= r["elapsed_s"] < 100.0 + 300.0 for r in records)
    assert {r["stage"] for r in records} == {"adam", "lm"}


def test_diagnostics_compiled_ahead_give_the_programs_values_and_are_shared():
    """The diagnostics compiled in a thread when a fit starts return what the jitted program
    returns, and a second fit of the same signature reuses the compiled program; arguments of
    another signature go to the jitted program."""
    from pinn_cli.programs import diagnostics_program

    built = assemble.build(config("model.width=8", "train.points=32"))
    program, params = diagnostics_program(1), built.state.params
    first = blocks.Diagnostics(program, built.problem)
    first.ahead(params)
    got, want = first(params), program(built.problem, params)
    assert set(got) == set(want) >= {"energy", "rayleigh"}
    for key in want:
        np.testing.assert_array_equal(np.asarray(got[key]), np.asarray(want[key]))
    key = (program, optim_signature(built.problem, params))
    compiled = blocks.Diagnostics.compiled[key]
    assert not isinstance(compiled, compiling.Ahead)
    second = blocks.Diagnostics(program, built.problem)
    second.ahead(params)
    assert blocks.Diagnostics.compiled[key] is compiled
    host = jax.tree.map(np.asarray, params)  # NumPy leaves: another signature
    assert optim_signature(built.problem, host) != key[1]
    np.testing.assert_array_equal(
        np.asarray(second(host)["rayleigh"]), np.asarray(want["rayleigh"])
    )


def test_the_first_stage_trains_while_the_next_compiles_and_a_stop_still_interrupts():
    """The LM stage's compilation (30 s here) runs beside the Adam steps: every Adam step is
    taken before it ends, and a stop request while the LM stage waits for it ends the fit at
    once, with the state after the Adam steps."""
    import dataclasses
    import time

    built = assemble.build(
        config("model.width=8", "train.points=32", "train.steps=40", "optim.refine_steps=10")
    )
    (adam, n_adam), (lm, n_lm) = train.make_stages(built.problem, built.plan, built.state.params)
    slow = dataclasses.replace(lm)
    slow.__dict__["block"] = type("Block", (), {"lower": lambda *_: SlowLowered(30.0)})()
    records, saved, t0, adam_done = [], {}, time.perf_counter(), []

    def on_log(rows):
        records.extend(rows)
        adam_done.extend(time.perf_counter() for r in rows if r["step"] == n_adam)

    callbacks = train.Callbacks(
        on_log=on_log,
        on_checkpoint=lambda step, state: saved.update({step: state}),
        stop_requested=lambda: bool(adam_done) and time.perf_counter() > adam_done[0] + 0.5,
    )
    stages = [(adam, n_adam), (slow, n_lm)]
    result = train.fit(built.problem, built.plan, built.state, callbacks, stages=stages)
    assert time.perf_counter() - t0 < 10.0  # not the 30 s the LM compilation takes
    assert result.status == "interrupted" and "while compiling lm" in result.stop_reason
    assert {r["stage"] for r in records} == {"adam"} and records[-1]["step"] == n_adam
    assert max(saved) == n_adam and int(saved[n_adam].step) == n_adam


def test_the_lm_stage_holds_psi_s_scale_where_the_residual_cannot_see_it():
    """Hard normalisation, exp output: a constant added to N only rescales psi. rescaled() undoes
    any such drift (integral psi^2 back to 1) without changing the residual vector, and every LM
    block ends rescaled, so rounding cannot walk psi's scale towards underflow."""
    from jax.flatten_util import ravel_pytree

    built = assemble.build(config("potential=finite_well", "model.width=4", "train.points=24"))
    prob, params = built.problem, built.state.params
    drifted = prob.rescaled(params)
    drifted["net"]["out"]["bias"] = drifted["net"]["out"]["bias"] - 40.0  # psi ~ exp(-40 s)

    def norm2(q):
        return float(jnp.sum(prob.w * prob.projected(q)[0] ** 2))

    assert norm2(drifted) < 1e-30
    back = prob.rescaled(drifted)
    assert norm2(back) == pytest.approx(1.0, rel=1e-12)
    unravel = ravel_pytree(params)[1]
    ls = prob.least_squares(unravel)
    r0, r1 = ls.residual(ravel_pytree(drifted)[0]), ls.residual(ravel_pytree(back)[0])
    np.testing.assert_allclose(r1, r0, rtol=1e-8, atol=1e-12)
    lm = train.make_stages(prob, built.plan, params)[1][0]
    after = lm.block(prob, drifted, lm.init(drifted), 2)[0]
    assert norm2(after) == pytest.approx(1.0, rel=1e-10)
    # With the penalty normalisation the scale is the loss's business: left alone.
    tiny = ("potential=finite_well", "model.width=4", "train.points=24")
    penalty = assemble.build(config(*tiny, "loss.normalization=penalty")).problem
    assert penalty.rescaled(drifted) is drifted


def test_settled_needs_the_rayleigh_quotient_to_hold_still_and_e_to_agree_with_it():
    """The refinement's stopping rule on E: the Rayleigh quotient does not move over the
    window, and the learned E agrees with it to 1e-8, for every live member; a plateau with the
    two apart does not stop, nor does a quotient still moving."""
    alive = np.array([True, True])

    def rows(*triples):  # (step, E per member, E_R per member)
        return [(s, {"energy": np.array(e), "rayleigh": np.array(r)}) for s, e, r in triples]

    settled = rows((2000, [5.0, 7.0], [5.0, 7.0]), (2050, [5.0, 7.0], [5.0, 7.0 + 1e-13]))
    assert stopping.settled(settled, 1e-13, alive)
    assert not stopping.settled(settled, 0.0, alive)  # 0: never
    assert not stopping.settled(settled[1:], 1e-13, alive)  # no row a window earlier
    plateau = rows((2000, [8.26, 7.0], [8.26 + 1e-5, 7.0]), (2050, [8.26, 7.0], [8.26 + 1e-5, 7.0]))
    assert not stopping.settled(plateau, 1e-13, alive)
    assert stopping.settled(plateau, 1e-13, np.array([False, True]))  # a diverged member is out
    moving = rows((2000, [5.0, 7.0], [5.0 + 1e-11, 7.0]), (2050, [5.0, 7.0], [5.0, 7.0]))
    assert not stopping.settled(moving, 1e-13, alive)
    # the learned E wanders by 1e-11 (the residual no longer pins it) while the quotient holds
    wandering = rows((2000, [5.0 + 3e-11, 7.0], [5.0, 7.0]), (2050, [5.0 - 4e-11, 7.0], [5.0, 7.0]))
    assert stopping.settled(wandering, 1e-13, alive)
    assert not stopping.settled([(2050, {"loss": np.array([1.0])})], 1e-13, alive[:1])


def test_still_falling_asks_for_a_fast_fall_over_the_window_by_any_live_member():
    """The refinement may run past its budget only while some live member's loss is below
    1/EXTEND_FACTOR of its value EXTEND_WINDOW steps earlier."""
    alive = np.array([True, True])
    window, factor = stopping.EXTEND_WINDOW, stopping.EXTEND_FACTOR
    earlier = [(2000, np.array([1e-8, 1e-20])), (2000 + window // 2, np.array([5e-9, 1e-20]))]
    since = 2000  # a window before the block that ends at step 2000 + window
    fast = np.array([0.9e-8 / factor, 1e-20])
    slow = np.array([1.1e-8 / factor, 1e-20])
    assert stopping.still_falling(earlier, since, fast, alive)
    assert not stopping.still_falling(earlier, since, slow, alive)
    assert not stopping.still_falling(earlier, since, fast, np.array([False, True]))
    assert not stopping.still_falling(earlier, since - 1, fast, alive)  # nothing that early
    assert not stopping.still_falling(earlier, since, np.array([np.nan, 1e-20]), alive)


@pytest.mark.slow
def test_a_refinement_still_converging_at_its_budget_runs_on_to_its_ceiling(tmp_path):
    """150 LM steps after a short Adam stage end with the loss falling fast: with
    optim.refine_extra the stage runs on past its budget (and says so), never beyond the
    ceiling; without it, it stops at the budget."""
    short = (
        "potential=finite_well",
        "train.steps=200",
        "optim.refine_steps=150",
        "checks.strict=false",
    )
    plain = run(tmp_path / "plain", *short, "optim.settle_tol=0", "optim.refine_extra=0")
    assert plain["steps"] == 350
    assert plain["states"][0]["stop_reason"] == "all steps done"
    more = run(tmp_path / "more", *short, "optim.settle_tol=0", "optim.refine_extra=100")
    assert 350 < more["steps"] <= 450
    assert "past the budget" in more["states"][0]["stop_reason"]
    assert more["energy"]["rel_error"] < plain["energy"]["rel_error"]


@pytest.mark.slow
def test_the_refinement_stops_once_e_has_settled(tmp_path):
    """The infinite well's E settles at rounding long before the LM budget ends: the stage
    stops, says why, and E is within the tolerance it stopped at."""
    s = run(tmp_path, "train.steps=1000", "optim.refine_steps=800")
    assert s["stop_reason"].startswith("lm converged at step") and "E settled" in s["stop_reason"]
    assert s["steps"] < 1800
    assert s["energy"]["rel_error"] < 1e-12
    full = run(
        tmp_path / "full", "train.steps=1000", "optim.refine_steps=800", "optim.settle_tol=0"
    )
    assert full["steps"] == 1800 and full["stop_reason"] == "all steps done"


@pytest.mark.parametrize("kind", ["constant", "cosine", "exponential"])
def test_the_logged_learning_rate_is_the_optax_schedule(kind):
    from pinn_cli.optim import logged_schedule, make_schedule

    schedule, logged = (
        make_schedule(kind, 1e-2, 1e-4, 2000),
        logged_schedule(kind, 1e-2, 1e-4, 2000),
    )
    for k in (0, 1, 100, 999, 2000, 2500):
        assert logged(k) == pytest.approx(float(schedule(k)), rel=1e-12)


@pytest.mark.slow
def test_a_narrow_deep_well_gets_enough_nodes_inside_for_1e_10(tmp_path):
    """V0 = 500 on 5% of [-2, 2]: split by length the well held 10 of 192 nodes and the run
    ended at E 1e-9, psi 3e-6 (two seeds); with an eighth of the nodes it meets 1e-10 / 1e-6."""
    cfg = config("potential=finite_well", "potential.V0=500", "potential.width=0.2")
    rule = assemble.rule_from(cfg, assemble.potential_from(cfg))
    inside = np.abs(np.asarray(rule.x)[:, 0]) < 0.1
    assert inside.sum() >= cfg.train.points // 8
    s = run(tmp_path, "potential=finite_well", "potential.V0=500", "potential.width=0.2")
    assert s["energy"]["rel_error"] <= 1e-10
    assert s["wavefunction"]["l2_error"] <= 1e-6


@pytest.mark.slow
def test_the_walls_of_a_wide_deep_well_get_enough_nodes_for_1e_10(tmp_path):
    """V0 = 400 on 75% of [-2, 2]: split by length each 0.5-wide wall held 24 of 192 nodes,
    and the network bent psi between them next to the jump (E 1.4e-7, psi 4.5e-6)."""
    over = ("potential=finite_well", "potential.V0=400", "potential.width=3.0")
    cfg = config(*over)
    rule = assemble.rule_from(cfg, assemble.potential_from(cfg))
    wall = np.asarray(rule.x)[:, 0] > 1.5
    assert wall.sum() >= cfg.train.points // 4
    s = run(tmp_path, *over)
    assert s["energy"]["rel_error"] <= 1e-10
    assert s["wavefunction"]["l2_error"] <= 1e-6


def test_a_symmetric_runs_half_domain_keeps_the_whole_counts_nodes_per_piece():
    """A 1-D run with excited states of a symmetric V trains on half the domain with half the
    points; its walls still get a quarter of the whole count (with a quarter of the half, the
    even states of V0 = 400 on 75% of [-2, 2] ended at E 1.8e-9, psi 3.2e-6)."""
    cfg = config("potential=finite_well", "potential.V0=400", "potential.width=3.0", "state=9")
    potential = assemble.potential_from(cfg)
    mirror = assemble.mirror_axes(cfg, potential, 0)
    x = np.asarray(assemble.rule_from(cfg, potential, mirror).x)[:, 0]
    assert any(mirror) and x.min() >= 0.0  # the upper half
    assert (x > 1.5).sum() >= cfg.train.points // 4


@pytest.mark.parametrize(
    "overrides, steps",
    [
        ([], assemble.ADAM_STEPS_GROUND),  # a ground state before its LM stage
        (["optim=adam_lbfgs"], assemble.ADAM_STEPS_GROUND),
        (["state=2"], assemble.ADAM_STEPS),  # excited states: Rayleigh-Ritz stages
        (["optim=adam"], assemble.ADAM_STEPS),  # Adam is the whole training
        (["optim.refine_steps=0"], assemble.ADAM_STEPS),
        (["train.steps=123"], 123),
        (["state=2", "train.steps=0"], 0),
    ],
)
def test_adam_steps_by_default_depend_on_what_follows_and_which_state(overrides, steps):
    assert assemble.plan_from(config(*overrides)).steps == steps
