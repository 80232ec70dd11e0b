"""The activations (issue 19): exact one-pass derivatives, trainable parameters that are
parameters like any other, the refusal of non-smooth ones, slope recovery in both losses, and
real runs that train and resume."""

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TINY
from hydra import compose, initialize_config_module
from jax.flatten_util import ravel_pytree

from pinn_cli import (
    assemble,
    ensemble,
    experiment,
    model,
    nonlinear,
    outputs,
    quadrature,
    tdse,
    train,
)
from pinn_cli.activations import ACTIVATIONS, SHAPED, Activation
from pinn_cli.cli import to_config
from pinn_cli.config import ConfigError, register_configs

SPECS = [Activation(name) for name in ACTIVATIONS] + [
    Activation("adaptive_tanh", adaptive="neuron", slope_scale=5.0),
    Activation("siren", omega0=3.0),
]
BOXES = {
    "1d": quadrature.Box(((-2.0, 2.0),), ((-0.5, 0.5),)),
    "2d": quadrature.Box(((0.0, 1.0), (-1.0, 2.0)), ((0.4,), ())),
}
# activation -> (options, {parameter: shape} of each hidden layer at width 8)
TRAINABLE = {
    "adaptive_tanh": (["model.adaptive=layer"], {"slope": ()}),
    "adaptive_tanh_neuron": (["model.adaptive=neuron"], {"slope": (8,)}),
    "stan": ([], {"beta": (8,)}),
    "polynorm": ([], {"weight": (3,), "bias": ()}),
    "rational": ([], {"p": (4,), "q": (2,)}),
}


def config(*overrides):
    register_configs()
    with initialize_config_module("pinn_cli.conf", version_base="1.3"):
        return to_config(compose("config", overrides=["progress=false", *overrides]))


def trial(activation, box, *, output="linear", key=None, width=6):
    return model.make_trial_function(
        box=box,
        width=width,
        depth=2,
        activation=activation,
        output=output,
        breakpoint_features=True,
        key=jax.random.key(3) if key is None else key,
        scale=1.3,
    )


def perturbed(params, seed=0, size=0.1):
    """Parameters moved off their initial values (slopes at 1/n, rational's zero coefficients):
    no term of a rule may vanish by accident of the start."""
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    moved = [a + size * jax.random.normal(k, a.shape, a.dtype) for a, k in zip(leaves, keys)]
    return jax.tree.unflatten(tree, moved)


def points(box, n=13):
    lo, hi = (np.array(end) for end in zip(*box.intervals))
    return jnp.asarray(np.random.default_rng(1).uniform(lo, hi, size=(n, box.dim)))


def close(a, b, rtol=1e-10):
    """Equal to rtol relative to b's largest magnitude (b's zeros compare absolutely)."""
    a, b = np.asarray(a), np.asarray(b)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.max(np.abs(b)))


# --------------------------------------------------------------------------------------------
# the one-pass jet


# The output map (linear or exp) is applied after the activations, whatever they are: each
# activation is checked in 1-D with the linear output and in 2-D through exp.
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.name}-{s.adaptive}-{s.omega0:g}")
@pytest.mark.parametrize("dim, output", [("1d", "linear"), ("2d", "exp")])
def test_one_pass_derivatives_equal_nested_autodiff(spec, dim, output):
    box = BOXES[dim]
    psi, params = trial(spec, box, output=output)
    params = perturbed(params)
    x = points(box)
    p, grad, lap = psi.taylor(params, x)
    plain = lambda q, y: psi(q, y)  # noqa: E731  (not a TrialFunction: nested jvps of __call__)
    p_ref, grad_ref, lap_ref = jax.vmap(lambda y: model.derivatives(plain, params, y))(x)
    close(p, p_ref)
    close(grad, grad_ref)
    close(lap, lap_ref)
    assert np.max(np.abs(lap_ref)) > 1e-3  # a real second derivative, not a vanishing one


def test_polynorm_mixes_units_so_its_rule_is_not_elementwise():
    """Changing one unit's input changes every unit's output (the normalisation): the rule
    must carry the statistic's derivative, which an elementwise rule would drop."""
    act = nonlinear.PolyNorm(jnp.float64)
    z = jnp.array([0.3, -0.7, 1.1])
    dz = (jnp.array([1.0, 0.0, 0.0]),)
    _, (d1,), (d2,) = act.taylor(z, dz, (jnp.zeros(3),))
    jac = jax.jacfwd(act)(z)
    hess = jax.hessian(act)(z)
    close(d1, jac[:, 0], 1e-13)
    close(d2, hess[:, 0, 0], 1e-12)
    assert np.all(np.abs(np.asarray(d1[1:])) > 1e-3)  # units 1 and 2 feel unit 0


# --------------------------------------------------------------------------------------------
# trainable parameters are parameters


@pytest.mark.parametrize("case", sorted(TRAINABLE))
def test_trainable_parameters_are_in_the_pytree_and_get_gradients(case):
    options, shapes = TRAINABLE[case]
    name = case.removesuffix("_neuron")
    # penalty: the hard normalisation's loss is blind to psi's scale, which is all that the
    # last PolyNorm bias changes through exp(N)
    cfg = config(
        "potential=finite_well", f"model.activation={name}", *options, "model.width=8",
        "train.points=32", "loss.normalization=penalty",
    )  # fmt: skip
    built = assemble.build(cfg)
    net = built.state.params["net"]
    assert set(net) == {"hidden", "out", "activations"}
    assert jax.tree.map(jnp.shape, net["activations"]) == {0: shapes, 1: shapes}
    grads = jax.grad(lambda p: built.problem.loss()(p)[0])(perturbed(built.state.params))
    for path, g in jax.tree_util.tree_leaves_with_path(grads["net"]["activations"]):
        assert np.all(np.asarray(g) != 0.0), jax.tree_util.keystr(path)
    flat, _ = ravel_pytree(built.state.params)  # what the LM Jacobian's columns are
    count = sum(int(np.prod(s)) for s in shapes.values())
    assert flat.size == ravel_pytree(net["hidden"])[0].size + 8 + 1 + 1 + 2 * count


@pytest.mark.parametrize("name", ["tanh", "siren", "gelu"])
def test_fixed_activations_add_nothing_to_the_pytree(name):
    _, params = trial(name, BOXES["1d"])
    assert set(params) == {"hidden", "out"}


def test_adaptive_tanh_starts_as_tanh():
    """a = 1/n at the start: tanh(n a z) is tanh(z), whatever n."""
    for n in (1.0, 10.0, 7.5):
        act = nonlinear.AdaptiveTanh(4, True, n, jnp.float64)
        z = jnp.linspace(-3.0, 3.0, 4)
        np.testing.assert_allclose(act(z), jnp.tanh(z), rtol=1e-15)


def test_siren_uses_its_initialisation_and_first_layer_frequency():
    box = quadrature.Box(((-1.0, 1.0),), ((),))
    psi, params = trial(Activation("siren", omega0=30.0), box, width=64)
    (w1, b1), (w2, b2) = (
        (params["hidden"][k]["kernel"], params["hidden"][k]["bias"]) for k in (0, 1)
    )
    assert 0.9 < np.max(np.abs(w1)) <= 1.0  # U(-1/n, 1/n), fan-in n = 1
    bound = np.sqrt(6.0 / 64)
    assert 0.9 * bound < np.max(np.abs(w2)) <= bound  # U(-sqrt(6/n), sqrt(6/n))
    assert np.all(b1 != 0.0)  # not zero: the features need not all be odd
    u = psi.features(points(box))
    h = jnp.sin(30.0 * (u @ w1 + b1[None, :]))  # omega0 on the first layer only
    close(psi.network(params).features(u), jnp.sin(h @ w2 + b2[None, :]), 1e-14)


def test_rational_starts_as_tanh_and_has_no_pole():
    """The start is within 2e-3 of tanh on [-3, 3]; for any coefficients the denominator is
    >= 1, so |R(z)| <= |P(z)| and R is finite everywhere."""
    act = nonlinear.Rational(jnp.float64)
    z = jnp.linspace(-3.0, 3.0, 6001)
    assert float(jnp.max(jnp.abs(act(z) - jnp.tanh(z)))) < 2e-3
    rng = np.random.default_rng(0)
    wide = jnp.linspace(-50.0, 50.0, 100_001)
    for _ in range(20):
        p, q = rng.normal(scale=3.0, size=4), rng.normal(scale=3.0, size=2)
        act.p[...], act.q[...] = jnp.asarray(p), jnp.asarray(q)
        numerator = np.polyval(p[::-1], np.asarray(wide))
        r = np.asarray(act(wide))
        assert np.all(np.isfinite(r)) and np.all(np.abs(r) <= np.abs(numerator) * (1 + 1e-12))


# --------------------------------------------------------------------------------------------
# slope recovery


def adaptive_problem(weight, adaptive="layer", *more):
    cfg = config(
        "potential=finite_well", "model.activation=adaptive_tanh", f"model.adaptive={adaptive}",
        f"model.slope_recovery={weight}", "model.width=4", "train.points=24", *more,
    )  # fmt: skip
    return assemble.build(cfg)


def with_slopes(params, slopes):
    net = dict(params["net"])
    net["activations"] = {
        k: {"slope": jnp.broadcast_to(a, v["slope"].shape)}
        for (k, v), a in zip(net["activations"].items(), slopes)
    }
    return {**params, "net": net}


@pytest.mark.parametrize("adaptive", ["layer", "neuron"])
def test_slope_recovery_adds_its_weight_times_s_of_the_slopes(adaptive):
    """S(a) = 1 / mean_k exp(mean_i a_i^k): slopes 0.2 (layer 0) and -0.1 (layer 1) give
    S = 2 / (e^0.2 + e^-0.1); per unit, slopes [0.1, 0.3, 0.2, 0.2] average to 0.2."""
    layer0 = jnp.array([0.1, 0.3, 0.2, 0.2]) if adaptive == "neuron" else jnp.asarray(0.2)
    slopes = [layer0, jnp.asarray(-0.1)]
    expected = 2.0 / (np.exp(0.2) + np.exp(-0.1))
    off, on = adaptive_problem(0, adaptive), adaptive_problem(0.5, adaptive)
    params = with_slopes(on.state.params, slopes)
    total_on, terms = on.problem.loss()(params)
    total_off, terms_off = off.problem.loss()(params)
    assert "slope_recovery" not in terms_off
    assert float(terms["slope_recovery"]) == pytest.approx(0.5 * expected, rel=1e-14)
    assert float(total_on - total_off) == pytest.approx(0.5 * expected, rel=1e-12)
    ritz = on.problem.loss("ritz")(params)[1]  # the Rayleigh-quotient stage carries it too
    assert float(ritz["slope_recovery"]) == pytest.approx(0.5 * expected, rel=1e-14)


@pytest.mark.slow
@pytest.mark.parametrize("normalization", ["hard", "penalty"])
def test_slope_recovery_is_one_more_row_of_the_levenberg_marquardt_residual(normalization):
    built = adaptive_problem(0.5, "neuron", f"loss.normalization={normalization}")
    params = perturbed(built.state.params, size=0.05)
    flat, unravel = ravel_pytree(params)
    ls = built.problem.least_squares(unravel)
    r, jac = ls.with_jacobian(flat)
    assert r.shape == (built.problem.residual_rows,)
    np.testing.assert_allclose(r, ls.residual(flat), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(jac, jax.jacfwd(ls.residual)(flat), rtol=1e-9, atol=1e-9)
    total, terms = built.problem.loss()(params)
    assert float(r @ r) == pytest.approx(float(total), rel=1e-12)
    assert float(r[-1]) ** 2 == pytest.approx(float(terms["slope_recovery"]), rel=1e-13)
    slope_columns = ravel_pytree(jax.tree.map(lambda a: a != 0, jax.grad(
        lambda p: built.problem.recovery(p))(params)))[0]  # fmt: skip
    assert np.all((np.asarray(jac[-1]) != 0) == np.asarray(slope_columns))
    assert int(np.sum(slope_columns)) == 2 * 4  # one slope per unit, two hidden layers
    plain = adaptive_problem(0, "neuron", f"loss.normalization={normalization}")
    diagonal = ls.diagonal(flat)
    extra = diagonal - plain.problem.least_squares(unravel).diagonal(flat)
    np.testing.assert_allclose(extra, jac[-1] ** 2, atol=1e-12 * float(jnp.max(diagonal)))


@pytest.mark.slow
def test_slope_recovery_enters_the_time_dependent_losses_too():
    box = quadrature.Box(((0.0, 1.0), (0.0, 0.1)), ((), ()))
    spec = Activation("adaptive_tanh", adaptive="neuron")
    net, params = model.make_trial_function(
        box=box, width=4, depth=2, activation=spec, output="linear",
        breakpoint_features=False, key=jax.random.key(0), outputs=2,
    )  # fmt: skip
    rule = quadrature.tensor([quadrature.gauss_pieces([(0.0, 1.0)], [n]) for n in (8, 3)])
    x = jnp.asarray(rule.x)
    start = jnp.stack([jnp.sin(jnp.pi * x[:, 0]), jnp.zeros(x.shape[0])], -1)
    problem = tdse.TimeProblem(
        net, (0.0, 1.0), 0.1, x, jnp.asarray(rule.w), jnp.zeros(x.shape[0]), start,
        -(jnp.pi**2) * start, times=3, norm0=0.5, slope_recovery=0.5,
    )  # fmt: skip
    params = perturbed({"net": params}, size=0.05)
    total, terms = problem.loss()(params)
    slopes = params["net"]["activations"]
    s_of_a = 2.0 / sum(np.exp(np.mean(slopes[k]["slope"])) for k in (0, 1))
    assert float(terms["slope_recovery"]) == pytest.approx(0.5 * s_of_a, rel=1e-13)
    assert float(total) == pytest.approx(float(terms["residual"] + terms["slope_recovery"]))
    flat, unravel = ravel_pytree(params)
    r, jac = problem.least_squares(unravel).with_jacobian(flat)
    assert r.shape == (problem.residual_rows,) == (2 * x.shape[0] + 1,)
    assert float(r @ r) == pytest.approx(float(total), rel=1e-12)
    residual = problem.least_squares(unravel).residual
    np.testing.assert_allclose(jac, jax.jacfwd(residual)(flat), rtol=1e-9, atol=1e-9)


# --------------------------------------------------------------------------------------------
# refused and invalid settings, before any compilation


@pytest.mark.parametrize(
    "name,needle",
    [
        ("relu", "piecewise linear"),
        ("polyrelu", "second derivative jumps"),
        ("poly_relu", "second derivative jumps"),
        ("PolyReLU3", "second derivative jumps"),
        ("squared_relu", "kink"),
    ],
)
def test_non_smooth_activations_are_refused_with_the_reason(name, needle):
    with pytest.raises(ConfigError) as err:
        config(f"model.activation={name}")
    message = str(err.value)
    assert name in message and needle in message and "polynorm" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "overrides,needle",
    [
        (["model.adaptive=unit"], "model.adaptive='unit'"),
        (["model.omega0=0"], "model.omega0=0.0 must be > 0"),
        (["model.slope_scale=-1"], "model.slope_scale=-1.0 must be > 0"),
        (["model.activation=adaptive_tanh", "model.slope_recovery=-0.1"], ">= 0"),
        (["model.activation=stan", "model.slope_recovery=0.1"], "adaptive_tanh"),
    ],
)
def test_bad_activation_options_name_the_value(overrides, needle):
    with pytest.raises(ConfigError) as err:
        config(*overrides)
    assert needle in str(err.value) and "\n" not in str(err.value)


# --------------------------------------------------------------------------------------------
# ensembles, Rayleigh-Ritz


# A per-layer scalar (adaptive_tanh) and per-unit vectors (polynorm): the shapes an ensemble's
# member axis must be prepended to.
@pytest.mark.parametrize("name", ["adaptive_tanh", "polynorm"])
def test_an_ensemble_of_two_initialises_member_by_member(name):
    keys = jax.vmap(jax.random.key)(jnp.arange(2))
    box = BOXES["1d"]
    psi, params = trial(name, box, key=keys)
    for i in range(2):
        _, alone = trial(name, box, key=keys[i])
        for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(alone)):
            np.testing.assert_array_equal(a[i], b)
    assert not np.array_equal(*params["hidden"][0]["kernel"])
    p, _, lap = jax.vmap(psi.taylor, in_axes=(0, None))(params, points(box))
    assert p.shape == lap.shape == (2, 13) and np.all(np.isfinite(lap))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["stan", "rational"])
def test_an_ensemble_trains_its_members_activation_parameters_apart(name):
    cfg = config(
        "potential=finite_well", f"model.activation={name}", "train.ensemble=2",
        "model.width=8", "train.points=32", "optim=adam",
    )  # fmt: skip
    built = assemble.build(cfg)
    stage = train.make_stages(built.problem, built.plan, ensemble.member(built.state.params, 0))
    block = stage[0][0].block
    params, _, total, _ = block(built.problem, built.state.params, built.state.opt["adam"], 5)
    assert total.shape == (2,) and np.all(np.isfinite(total))
    start = built.state.params["net"]["activations"]
    for a, b in zip(jax.tree.leaves(start), jax.tree.leaves(params["net"]["activations"])):
        assert a.shape[0] == 2 and np.all(np.asarray(a != b).reshape(2, -1).any(axis=1))
        assert not np.array_equal(b[0], b[1])  # each member trains its own


@pytest.mark.parametrize("name", sorted(SHAPED))
def test_the_last_hidden_layer_spans_a_linear_output(name):
    """basis_taylor (Rayleigh-Ritz's basis) dotted with the output layer is psi, grad psi and
    lap psi."""
    box = BOXES["2d"]
    psi, params = trial(name, box)
    params = perturbed(params)
    f, grad_f, lap_f = psi.basis_taylor(params, points(box))
    c = jnp.concatenate([params["out"]["kernel"][:, 0], params["out"]["bias"]])
    p, grad, lap = psi.taylor(params, points(box))
    close(f @ c, p, 1e-12)
    close(jnp.einsum("nbd,b->nd", grad_f, c), grad, 1e-12)
    close(lap_f @ c, lap, 1e-12)


# --------------------------------------------------------------------------------------------
# real runs


def metrics_loss(run_dir):
    return outputs.read_metrics(run_dir / outputs.METRICS)["loss"]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SHAPED))
def test_a_short_run_trains_and_resumes_with_its_activation_parameters(tmp_path, name):
    """A tiny run lowers its loss; resumed from its step-20 checkpoint (the later ones removed),
    it ends bit-identical to the uninterrupted run, which it could not with the activation's
    parameters lost or reset."""
    tiny = [*TINY, "optim.refine_steps=40", "train.keep_checkpoints=10"]
    cfg = config("potential=finite_well", f"model.activation={name}", "model.omega0=2", *tiny)
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert experiment.run(cfg, whole).code == 0
    summary = json.loads((whole / outputs.SUMMARY).read_text())
    losses = metrics_loss(whole)
    assert summary["steps"] == 80 and losses[-1] < 1e-2 * losses[0]  # every step taken
    assert summary["energy"]["rel_error"] < 1e-2  # ~5e-4 (2e-3 for siren) after 90 steps
    shutil.copytree(whole, cut)
    checkpoints = outputs.Checkpoints(cut, keep=3, subdir=outputs.checkpoint_dir(0, 0))
    for step in checkpoints.steps():
        if step > 20:
            shutil.rmtree(checkpoints.directory / str(step))
    checkpoints.close()
    (cut / outputs.SUMMARY).unlink()
    fresh = assemble.build(cfg).state
    checkpoints = outputs.Checkpoints(cut, keep=3, subdir=outputs.checkpoint_dir(0, 0))
    step, restored = checkpoints.restore_latest(fresh)
    checkpoints.close()
    assert step == 20
    start, saved = fresh.params["net"], restored.params["net"]
    if name != "siren":  # siren's only parameters are the kernels and biases
        moved = jax.tree.map(lambda a, b: bool(np.any(a != b)), start, saved)["activations"]
        assert all(jax.tree.leaves(moved))  # trained, and saved as trained
    assert experiment.run(cfg, cut, resume=True).code == 0
    again = json.loads((cut / outputs.SUMMARY).read_text())
    assert again["energy"] == summary["energy"]
    assert again["wavefunction"] == summary["wavefunction"]
    assert metrics_loss(cut) == losses
