"""Excited states: state=n finds states 0..n in order, each orthogonal to those below it."""

import json

import numpy as np
import pytest
from test_train import config

from pinn_cli import experiment, stopping

SMALL = ["train.steps=1000", "optim.refine_steps=300"]


def run(tmp_path, *overrides):
    assert experiment.run(config(*SMALL, *overrides), tmp_path).code == 0
    return json.loads((tmp_path / "summary.json").read_text())


@pytest.mark.parametrize(
    "potential,extra",
    [
        ("infinite_well", []),
        pytest.param("barrier", [], marks=pytest.mark.slow),
        pytest.param("finite_well", ["train.steps=2000"], marks=pytest.mark.slow),
    ],
)
def test_states_in_order_none_skipped(tmp_path, potential, extra):
    s = run(tmp_path, f"potential={potential}", "state=2", *extra)
    states = s["states"]
    assert [st["n"] for st in states] == [0, 1, 2]
    assert [st["nodes"] for st in states] == [0, 1, 2]
    energies = [st["energy"]["estimate"] for st in states]
    assert energies == sorted(energies)
    for st in states:
        assert st["energy"]["rel_error"] < 1e-6, st
        assert st["wavefunction"]["l2_error"] < 1e-3, st
    assert [st["parity"] for st in states] == ["even", "odd", "even"]
    assert s["energy"] == states[-1]["energy"] and s["state"] == 2
    header = (tmp_path / "psi.csv").read_text().splitlines()[0]
    assert header.startswith("x,psi_0,psi_exact_0,psi_1")
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "state_0",
        "state_1",
        "state_2",
    ]


@pytest.mark.slow
def test_found_states_are_orthogonal(tmp_path):
    run(tmp_path, "potential=barrier", "state=2")
    data = np.genfromtxt(tmp_path / "psi.csv", delimiter=",", names=True)
    x = data["x"]
    h = x[1] - x[0]
    psis = [data[f"psi_{n}"] for n in range(3)]
    for i in range(3):
        for j in range(i):
            assert abs(np.sum(psis[i] * psis[j]) * h) < 1e-4


@pytest.mark.slow  # ~20 s on 2 cores
def test_harmonic_oscillator_excited_states_share_one_compilation(tmp_path):
    """State 1 compiles the excited-state stages; state 2 (another carrier power, one more lower
    state, padded to the same shapes) runs them without compiling, and is right."""
    s = run(tmp_path, "potential=harmonic", "state=2")
    assert [st["energy"]["reference"] for st in s["states"]] == [1.0, 3.0, 5.0]
    assert [st["nodes"] for st in s["states"]] == [0, 1, 2]
    for st in s["states"][1:]:
        assert st["energy"]["rel_error"] < 1e-5, st
    compiled = [st["timing"]["compile_s"] for st in s["states"]]
    assert compiled[0] > 0 and compiled[1] > 0 and compiled[2] == 0.0, compiled


@pytest.mark.slow
def test_state_resume_after_interrupt_between_states(tmp_path):
    """A resumed multi-state run restores finished states and continues the unfinished one."""
    import shutil

    whole = tmp_path / "whole"
    run(whole, "potential=barrier", "state=1")
    part = tmp_path / "part"
    shutil.copytree(whole, part)
    shutil.rmtree(part / "checkpoints" / "state_1")
    (part / "summary.json").unlink()
    assert (
        experiment.run(config(*SMALL, "potential=barrier", "state=1"), part, resume=True).code == 0
    )
    a = json.loads((part / "summary.json").read_text())
    b = json.loads((whole / "summary.json").read_text())
    assert a["states"][0]["energy"] == b["states"][0]["energy"]
    assert a["states"][1]["energy"] == b["states"][1]["energy"]


def test_an_excited_state_s_first_layer_starts_sharper_by_its_index():
    """1-D state k starts with its first hidden layer (weights and biases) 1 + state_scale * k
    times that of the same network without the scale; the layers after it, the ground state and
    2-D states are left as initialised."""
    from pinn_cli import api, assemble

    def layers(n, *overrides):
        cfg, _ = api.compose("state=3", "model.width=8", *overrides)
        net = assemble.build(cfg, n).state.params["net"]["hidden"]
        return [(np.asarray(net[k]["kernel"]), np.asarray(net[k]["bias"])) for k in sorted(net)]

    for n, factor in ((0, 1.0), (3, 2.5)):
        sharp, plain = layers(n), layers(n, "model.state_scale=0")
        np.testing.assert_allclose(sharp[0][0], factor * plain[0][0], rtol=1e-15)
        np.testing.assert_allclose(sharp[0][1], factor * plain[0][1], rtol=1e-15)
        assert np.abs(plain[0][0]).max() > 0
        for (k1, b1), (k0, b0) in zip(sharp[1:], plain[1:]):
            np.testing.assert_array_equal(k1, k0)
            np.testing.assert_array_equal(b1, b0)
    flat = layers(3, "potential=box2d", "train.points=64")
    flat_plain = layers(3, "potential=box2d", "train.points=64", "model.state_scale=0")
    np.testing.assert_array_equal(flat[0][0], flat_plain[0][0])


def test_carrier_power_follows_the_decay_of_each_state():
    """State n carries psi_0^a with a <= kappa_n / kappa_0, and none above the walls' V."""
    from pinn_cli import api, assemble

    def powers(*overrides):
        cfg, _ = api.compose(*overrides)
        pot = assemble.potential_from(cfg)
        return [assemble.carrier_power(cfg, pot, n) for n in range(cfg.state + 1)]

    # Poschl-Teller -3.75 / cosh^2 x: bound states at -2.25 and -0.25, then box states (E > 0)
    well = powers(
        "potential=formula",
        'potential.formula="-3.75/cosh(x)**2"',
        "potential.domain=[-20,20]",
        "state=3",
    )
    assert well[0] == 0.0 and well[2:] == [0.0, 0.0]
    assert well[1] == pytest.approx(np.sqrt(0.25 / 2.25), rel=1e-3)
    oscillator = powers("potential=harmonic", "state=6")
    assert oscillator[1] == pytest.approx(np.sqrt((64 - 3) / (64 - 1)), rel=1e-3)
    assert all(a > b > 0 for a, b in zip(oscillator[1:], oscillator[2:]))
    assert powers("potential=finite_well", "state=2") == [0.0, 0.0, 0.0]  # piecewise constant
    # 2-D: the lowest V on the sides of [-6, 6]^2 is 36; levels 2, 4, 4, 6
    plane = powers("potential=harmonic2d", "state=3")
    assert plane[0] == 0.0 and plane[1] == pytest.approx(plane[2], rel=1e-9)
    assert plane[1] == pytest.approx(np.sqrt((36 - 4) / (36 - 2)), rel=2e-3)
    assert plane[3] == pytest.approx(np.sqrt((36 - 6) / (36 - 2)), rel=2e-3)
    assert powers("potential=disk", "state=2", "model.carrier=1") == [0.0, 0.0, 0.0]
    assert powers("potential=harmonic", "state=2", "model.carrier=0") == [0.0, 0.0, 0.0]


def test_carrier_enters_psi_and_its_derivatives():
    """psi = B C N with C = exp(a s N0): the one-pass derivatives equal nested autodiff."""
    import jax
    import jax.numpy as jnp

    from pinn_cli import model
    from pinn_cli.quadrature import Box

    box = Box(((-3.0, 3.0),), ((),))
    ground, g_params = model.make_trial_function(
        box=box, width=8, depth=2, activation="tanh", output="exp",
        breakpoint_features=False, key=jax.random.key(1), scale=2.0,
    )  # fmt: skip
    carrier = model.Carrier(ground, g_params, 0.7)
    psi, params = model.make_trial_function(
        box=box, width=8, depth=2, activation="tanh", output="linear",
        breakpoint_features=False, key=jax.random.key(2), carrier=carrier,
    )  # fmt: skip
    plain, _ = model.make_trial_function(
        box=box, width=8, depth=2, activation="tanh", output="linear",
        breakpoint_features=False, key=jax.random.key(2),
    )  # fmt: skip
    x = jnp.linspace(-2.9, 2.9, 13)[:, None]
    p, grad, lap = psi.taylor(params, x)
    factor = jnp.exp(0.7 * 2.0 * ground.network(g_params)(ground.features(x)))
    assert np.allclose(p, plain(params, x) * factor, rtol=1e-12, atol=1e-14)

    def one(params, xi):
        return psi(params, xi[None])[0]

    for i in range(len(x)):
        ref = model.derivatives(one, params, x[i])
        assert np.allclose(grad[i], ref[1], rtol=1e-10, atol=1e-12)
        assert np.allclose(lap[i], ref[2], rtol=1e-10, atol=1e-11)


def state_one(cfg):
    """State 1 built against the untrained ground network as its lower state: (built, the
    weights, the ground network's psi on the grid, its norm)."""
    from pinn_cli import assemble, physics

    ground = assemble.build(cfg, 0)
    p0, grad0, lap0 = (np.asarray(a) for a in physics.evaluate(
        ground.problem.psi, ground.state.params["net"], ground.problem.x))  # fmt: skip
    w = np.asarray(ground.problem.w)
    n0 = np.sqrt(np.sum(w * p0**2))
    lower = physics.Lower(p0[:, None] / n0, lap0[:, None] / n0, grad0[:, None] / n0)
    return assemble.build(cfg, 1, lower), w, p0, n0


def test_ritz_start_is_the_minimum_over_the_features(tmp_path):
    """The Rayleigh-Ritz start of state 1 sets E to the Rayleigh quotient of the new (projected)
    network, and that is no higher than the quotient of the network it started from: the step
    minimises over the span of the features, which contains the old output."""
    from pinn_cli import problem, states

    built, w, p0, n0 = state_one(config(*SMALL, "potential=harmonic", "state=1"))
    before = float(problem.rayleigh(built.problem, built.state.params))
    params = states.ritz_output_layer(built.problem, built.state.params)
    after = float(problem.rayleigh(built.problem, params))
    assert float(built.problem.energy(params)) == pytest.approx(after, rel=1e-9)
    assert after < before
    p = np.asarray(built.problem.projected(params)[0])
    assert abs(np.sum(w * p * p0)) / (n0 * np.sqrt(np.sum(w * p * p))) < 1e-10


def test_the_ritz_start_holds_less_of_the_lower_states_with_their_weight():
    """An excited state's content along the lower states is invisible to its projected loss;
    the Ritz start with `lower_weight` trades quotient for less of it (here the untrained
    ground network's; a large weight to see it clearly), and still sets E to the start's own
    Rayleigh quotient."""
    import dataclasses

    from pinn_cli import physics, problem, states

    built = state_one(config(*SMALL, "potential=harmonic", "state=1", "model.symmetry=off"))[0]
    assert built.problem.lower_weight == problem.LOWER_WEIGHT > 0

    def start(weight):
        prob = dataclasses.replace(built.problem, lower_weight=weight)
        params = states.ritz_output_layer(prob, built.state.params)
        quotient = float(problem.rayleigh(prob, params))
        assert float(prob.energy(params)) == pytest.approx(quotient, rel=1e-9)
        p = prob.fields(params)[0]
        return quotient, float(physics.lower_content(prob.lower, prob.w, p))

    (plain_e, plain_c), (held_e, held_c) = start(0.0), start(10.0)
    assert held_c < 0.5 * plain_c
    assert plain_e <= held_e  # the plain start is the minimum of the quotient
    assert held_e + 10.0 * built.problem.energy_scale * held_c < plain_e + 10.0 * (
        built.problem.energy_scale * plain_c
    )


def test_ritz_energies_stay_above_min_v_when_the_network_aliases_between_the_nodes():
    """A network with large weights oscillates between the 16 nodes; where it curves up at the
    nodes, the Laplacian form <psi, H psi> / <psi, psi> goes negative (for 12 of 20 such
    networks here). The Ritz loss, the Rayleigh quotient and the Ritz start use
    |grad psi|^2 + V psi^2, so every energy they report stays at or above min V (0 in the
    infinite well), however the network aliases."""
    import jax

    from pinn_cli import problem, states

    cfg = config("potential=infinite_well", "state=1", "train.points=16", "model.width=64")
    built = state_one(cfg)[0]
    ritz = problem.make_loss(built.problem, "ritz")
    for seed in range(10):
        draw = np.random.default_rng(seed).normal
        net = jax.tree.map(lambda a, d=draw: 30.0 * d(size=a.shape), built.state.params["net"])
        params = {**built.state.params, "net": net}
        assert float(ritz(params)[1]["ritz"]) >= 0.0
        assert float(problem.rayleigh(built.problem, params)) >= 0.0
        start = states.ritz_output_layer(built.problem, params)
        assert float(built.problem.energy(start)) >= 0.0


@pytest.mark.slow
def test_excited_states_of_a_smooth_well_carry_the_ground_state_decay(tmp_path):
    """With the carrier the oscillator's states 1-3 reach the ground state's precision on a
    small budget (without it state 2 stopped near 1e-7 in energy)."""
    s = run(tmp_path, "potential=harmonic", "state=3")
    assert [st["nodes"] for st in s["states"]] == [0, 1, 2, 3]
    for st in s["states"]:
        assert st["energy"]["rel_error"] < 1e-9, st
        assert st["wavefunction"]["l2_error"] < 1e-4, st


@pytest.mark.slow  # ~20 s on 2 cores
def test_an_excited_state_starts_its_refinement_at_e_held_at_the_ritz_value(tmp_path):
    """State 1's Levenberg-Marquardt begins with SHIFT_STEPS steps (stage lm_shift) at E held
    at the Rayleigh-Ritz value the stage starts from, then E is free (stage lm); the ground
    state has no such steps."""
    from pinn_cli import programs

    cfg = config(*SMALL, "potential=finite_well", "state=1", "optim.refine_steps=100")
    assert experiment.run(cfg, tmp_path).code in (0, 5)
    rows = [r for r in _metrics(tmp_path) if r["stage"] != "adam"]
    ground = {r["stage"] for r in rows if r["state"] == "0"}
    shift = [r for r in rows if r["state"] == "1" and r["stage"] == "lm_shift"]
    free = [r for r in rows if r["state"] == "1" and r["stage"] == "lm"]
    assert ground == {"lm"}
    assert len(shift) * 10 == programs.SHIFT_STEPS and free
    assert len({r["energy"] for r in shift}) == 1  # held
    assert {r["energy"] for r in free} != {shift[0]["energy"]}  # then free to move
    assert int(shift[-1]["step"]) < int(free[0]["step"])


def test_shifted_steps_hold_e_at_the_lower_of_the_ritz_value_and_the_coarse_estimate():
    """An excited state's problem carries its coarse energy estimate (finite differences: within
    1e-5 of 4 pi^2 for the infinite well's state 1), and the shifted steps hold E at the lower
    of it and the Rayleigh-Ritz value in the parameters: a Ritz value above the level's
    midpoint would steer them to the state above. The free steps after them start from psi's
    Rayleigh quotient, not from the Ritz value the parameter still holds."""
    import dataclasses

    import jax.numpy as jnp

    from pinn_cli import optim, problem, programs

    built = state_one(config(*SMALL, "potential=infinite_well", "energy=learned", "state=1"))[0]
    prob = built.problem
    assert float(prob.target) == pytest.approx(4 * np.pi**2, rel=1e-5)
    held = []
    capture = lambda problem, params, opt, n: held.append(float(problem.fixed_energy))  # noqa: E731
    block = programs.shifted(optim.Stage("lm", init=None, raw=capture, lr=None)).raw
    params = {**built.state.params, "energy": jnp.asarray(50.0 / prob.energy_scale)}
    for target, expected in ((None, 50.0), (39.5, 39.5), (60.0, 50.0)):
        block(dataclasses.replace(prob, target=target), params, None, 1)
        assert held[-1] == pytest.approx(expected, rel=1e-12)
    free = programs.rayleigh_energy(prob, params)
    quotient = float(problem.rayleigh(prob, params))
    assert float(prob.energy(free)) == pytest.approx(quotient, rel=1e-12) != 50.0


@pytest.mark.slow
def test_the_square_well_s_six_states_come_out_in_order(tmp_path):
    """finite_well2d state=5 with its defaults: the level at 49.67 lies between a doubly
    degenerate one and a level at 52.00, and state 4's Ritz start (~52.3) lies nearer 52.00;
    states 4 and 5 skipped to 52.00 and 53.95 while the shifted steps held E at the Ritz value.
    Every state right, every level complete."""
    assert experiment.run(config("potential=finite_well2d", "state=5"), tmp_path).code == 0
    s = json.loads((tmp_path / "summary.json").read_text())
    assert [lv["multiplicity"] for lv in s["levels"]] == [1, 2, 1, 1, 1]
    for level in s["levels"]:
        assert level["complete"] and level["subspace_error"] < 1e-3, level
    for st in s["states"]:
        assert st["energy"]["rel_error"] < 1e-6, st["energy"]


def _metrics(run_dir):
    import csv

    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_a_diverged_excited_state_is_reported_and_the_states_below_it_are_judged(
    tmp_path, monkeypatch
):
    """State 1 diverges (non-finite parameters): the run ends with the diverged exit code and a
    summary in which state 0 is judged as usual; the final Rayleigh-Ritz step over all states,
    which cannot take non-finite values, is skipped instead of failing the run."""
    import dataclasses

    import jax

    from pinn_cli import process, train

    fit, calls = train.fit, []

    def second_diverges(*args, **kwargs):
        result = fit(*args, **kwargs)
        calls.append(result)
        if len(calls) == 2:
            nan = jax.tree.map(lambda a: a * np.nan, result.params)
            return dataclasses.replace(result, params=nan, status="diverged", stop_reason="nan")
        return result

    monkeypatch.setattr(train, "fit", second_diverges)
    code = experiment.run(config(*SMALL, "potential=infinite_well", "state=1"), tmp_path).code
    assert code == process.EXIT_DIVERGED
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["status"] == "diverged"
    assert s["states"][0]["energy"]["rel_error"] < 1e-8


def test_states_of_opposite_parity_never_enter_each_other_s_projection():
    """On the upper half of a symmetric domain, the grid inner product of an even and an odd
    function is not zero; the basis keeps them apart by parity: an even state is made
    orthogonal to the even states only, and an odd state's projection holds only odd ones."""
    from pinn_cli import quadrature
    from pinn_cli.states import Basis

    half = quadrature.gauss(quadrature.Box(((0.0, 1.0),), ((),)), 40)
    x, w = half.x[:, 0], half.w
    even0, odd1, even2 = np.cos(np.pi * x / 2), np.sin(np.pi * x), np.cos(np.pi * x / 2) + x**2
    assert abs(np.sum(w * even0 * odd1)) > 0.1  # not orthogonal on the half grid
    basis = Basis(w)
    for f, parity in ((even0, 1), (odd1, -1), (even2, 1)):
        basis.add(f, np.zeros((len(x), 1)), -f, parity=parity)
    assert basis.rows[1][0] == 0.0 and basis.rows[2][1] == 0.0
    s0, s1, s2 = basis.combine([even0, odd1, even2])
    assert abs(np.sum(w * s0 * s2)) < 1e-13 and np.sum(w * s2 * s2) == pytest.approx(1.0)
    assert np.allclose(basis.lower(1).p, np.stack([s0, s2], 1))
    assert np.allclose(basis.lower(-1).p[:, 0], s1)
    assert basis.lower().p.shape[1] == 3  # without a parity: every state
    first_odd = Basis(w)
    first_odd.add(even0, np.zeros((len(x), 1)), -even0, parity=1)
    assert np.all(first_odd.lower(-1).p == 0.0)  # no odd state yet: projected onto nothing


def test_symmetric_1d_runs_train_each_parity_on_half_the_domain():
    """A symmetric V: state n is even or odd by construction ((-1)^n), on the upper half of
    the domain, and its even or odd part does not start at zero; a ground-state run puts the
    whole count of nodes on the half domain, a run with excited states half of it; an
    asymmetric V keeps the whole domain, and model.symmetry=off turns it off."""
    import jax.numpy as jnp

    from pinn_cli import assemble

    cases = [
        (["potential=finite_well", "state=3"], (True,)),
        (["potential=infinite_well", "potential.domain=[-1,2]", "state=1"], (True,)),
        (["potential=finite_well"], (True,)),
        (["potential=piecewise", "state=2"], ()),
        (["potential=finite_well", "state=3", "model.symmetry=off"], ()),
    ]
    for overrides, mirror in cases:
        cfg = config(*overrides)
        potential = assemble.potential_from(cfg)
        assert assemble.mirror_axes(cfg, potential, 1) == mirror, overrides
    cfg = config("potential=harmonic", "state=3")
    built = [assemble.build(cfg, n) for n in range(4)]
    assert [b.problem.psi.parity for b in built] == [1, -1, 1, -1]
    assert np.all(np.asarray(built[0].problem.x) > 0.0)  # the domain's upper half
    whole = assemble.build(config("potential=harmonic", "state=3", "model.symmetry=off"), 1)
    assert 2 * len(built[0].problem.x) == len(whole.problem.x)  # at the whole domain's density
    ground = assemble.build(config("potential=harmonic"))
    assert ground.problem.psi.parity == 1 and np.all(np.asarray(ground.problem.x) > 0.0)
    assert len(ground.problem.x) == len(whole.problem.x)  # twice the density
    x = jnp.linspace(0.05, 5.9, 9)[:, None]
    for b, sign in zip(built, (1.0, -1.0, 1.0, -1.0)):
        psi, params = b.problem.psi, b.state.params["net"]
        np.testing.assert_allclose(psi(params, -x), sign * psi(params, x), rtol=1e-12, atol=1e-15)
        # without a spread of first-layer biases, the tanh network of the centred coordinate
        # is odd, and an even state's (N(x) + N(-x)) / 2 starts identically zero
        assert np.max(np.abs(psi(params, x))) > 1e-3


@pytest.mark.slow  # ~30 s on 2 cores, most of it compilation
def test_six_states_of_the_infinite_well_on_a_small_budget(tmp_path):
    """States 0-5 of the infinite well on [0, 1] with 1000 Adam and 300 LM steps each: every
    energy within 1e-8 of (n + 1)^2 pi^2, psi within 1e-6, n nodes and parity (-1)^n."""
    s = run(tmp_path, "potential=infinite_well", "state=5")
    for st in s["states"]:
        n = st["n"]
        exact = (n + 1) ** 2 * np.pi**2
        assert abs(st["energy"]["estimate"] - exact) <= 1e-8 * exact, st
        assert st["wavefunction"]["l2_error"] <= 1e-6, st
        assert st["nodes"] == n and st["parity"] == ("even" if n % 2 == 0 else "odd"), st
    assert [st["n"] for st in s["states"]] == list(range(6))


def _fit(loss, reason="all steps done", status="completed", extended_by=0):
    from pinn_cli import train

    return train.FitResult(
        params=None, status=status, stop_reason=reason, final_loss=[loss], extended_by=extended_by
    )


def test_a_state_stalled_where_it_ends_far_above_the_states_below_without_e_settling():
    below = [_fit(1e-14), _fit(3e-13)]
    factor = stopping.STALL_FACTOR
    assert stopping.state_stalled(_fit(2e-6), below)
    assert stopping.state_stalled(_fit(3e-13 * factor * 1.01), below)
    assert not stopping.state_stalled(_fit(3e-13 * factor * 0.99), below)
    assert not stopping.state_stalled(_fit(2e-6, "lm converged at step 900: E settled"), below)
    assert not stopping.state_stalled(_fit(2e-6, status="interrupted"), below)
    assert not stopping.state_stalled(_fit(2e-6, extended_by=50), below)  # still falling at the end
    assert not stopping.state_stalled(_fit(float("nan")), below)  # resumed: no step ran
    assert not stopping.state_stalled(_fit(2e-6), [])  # the ground state has nothing below it
    assert stopping.state_stalled(_fit(2e-6), [_fit(float("nan")), _fit(1e-14)])
    # a loss at 1e-12 of the energy scale squared or below has not stalled, whatever is below
    # it (the infinite well on [-3, 3]: state 1 at 5.2e-16 over a ground state at 2.9e-21)
    floor = stopping.STALL_FLOOR
    assert not stopping.state_stalled(_fit(5.2e-16), [_fit(2.9e-21)], scale=1.1)
    assert not stopping.state_stalled(_fit(floor * 400 * 0.99), [_fit(1e-30)], scale=20.0)
    assert stopping.state_stalled(_fit(floor * 400 * 1.01), [_fit(1e-30)], scale=20.0)
    assert stopping.state_stalled(_fit(6.8e-6), [_fit(1e-14)], scale=21.9)  # x^4 - 12 x^2, state 2


@pytest.mark.parametrize("seed", [0, 2])  # the first attempt ends lower with 0, the retry with 2
def test_a_stalled_state_is_trained_again_and_the_lower_loss_kept(tmp_path, monkeypatch, seed):
    """With every state counted as stalled, state 1 is trained again from seed + 1000: the
    attempt of lower final loss is kept, with its checkpoints in the state's folder and its
    rows alone in metrics.csv, and the summary's stop reason says so where it is the retry."""
    import csv

    from pinn_cli import outputs

    monkeypatch.setattr(stopping, "STALL_FACTOR", 0.0)
    monkeypatch.setattr(stopping, "STALL_FLOOR", 0.0)
    fits, train_one = [], experiment.train_one

    def recorded(cfg, n, built, *args, **kwargs):
        result = train_one(cfg, n, built, *args, **kwargs)
        fits.append((n, result))
        return result

    monkeypatch.setattr(experiment, "train_one", recorded)
    cfg = config(
        "state=1",
        "train.retries=1",
        "model.width=8",
        "train.steps=200",
        "optim.refine_steps=30",
        "checks.strict=false",
        f"seed={seed}",
    )
    assert experiment.run(cfg, tmp_path).code == 0
    first, again = [r for n, r in fits if n == 1]
    kept = min(first, again, key=lambda r: r.final_loss[0])
    rows = [r for r in csv.DictReader((tmp_path / outputs.METRICS).open()) if r["state"] == "1"]
    steps = [int(r["step"]) for r in rows]
    assert steps == sorted(steps) and len(rows) == len(kept.history)
    assert float(rows[-1]["loss"]) == kept.final_loss[0]
    folders = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert folders == ["state_0", "state_1"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    retry_kept = f"attempt 2, seed {seed + 1000}" in summary["states"][1]["stop_reason"]
    assert retry_kept == (kept is again)
