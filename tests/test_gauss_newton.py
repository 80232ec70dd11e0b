"""The matrix-free Gauss-Newton (CG) solver of the Levenberg-Marquardt stage, against the explicit
one it replaces on large problems."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from pinn_cli import assemble, experiment, lm, optim, physics, problem, resources, train
from pinn_cli.cli import to_config
from pinn_cli.config import register_configs
from pinn_cli.validation import validate


def config(*overrides):
    from hydra import compose, initialize_config_module

    register_configs()
    with initialize_config_module("pinn_cli.conf", version_base="1.3"):
        return to_config(compose("config", overrides=["progress=false", *overrides]))


def lower_states(built, count):
    """Any W-orthonormal functions on the grid serve as lower states for the algebra."""
    x, w = np.asarray(built.problem.x)[:, 0], np.asarray(built.problem.w)
    f = np.stack([np.sin((k + 1) * np.pi * (x + 1.0) / 2.0) for k in range(count)], 1)
    q, _ = np.linalg.qr(np.sqrt(w)[:, None] * f)
    f = q / np.sqrt(w)[:, None]
    return physics.Lower(f, f * np.linspace(-3.0, 5.0, x.size)[:, None], f[..., None])


def built_problem(overrides, n_lower):
    # the whole domain: the algebra is the same with a parity, the test's problem is the plain one
    cfg = config(
        "potential=barrier", "model.width=6", "train.points=40", "model.symmetry=off", *overrides
    )
    lower = lower_states(assemble.build(cfg), n_lower) if n_lower else None
    built = assemble.build(cfg, n=n_lower, lower=lower)
    flat, unravel = ravel_pytree(built.state.params)
    # away from the initial point, so that no term of the residual is special
    flat = flat + 0.05 * jax.random.normal(jax.random.key(3), flat.shape, flat.dtype)
    return built, flat, unravel


def test_pcg_solves_a_preconditioned_system_and_stops_at_its_tolerance():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(60, 40))
    scale = np.logspace(0, 3, 40)  # badly scaled columns: what the diagonal preconditioner fixes
    gram = (a * scale).T @ (a * scale) + 1e-3 * np.eye(40)
    b = rng.normal(size=40)
    exact = np.linalg.solve(gram, b)
    matvec = lambda v: jnp.asarray(gram) @ v  # noqa: E731
    inv_diag = 1.0 / jnp.diag(jnp.asarray(gram))
    x, k = lm.pcg(matvec, jnp.asarray(b), inv_diag, jnp.zeros(40), 200, 1e-12)
    np.testing.assert_allclose(x, exact, rtol=1e-8)
    assert int(k) <= 60
    _, few = lm.pcg(matvec, jnp.asarray(b), inv_diag, jnp.zeros(40), 200, 1e-2)
    assert 0 < int(few) < int(k)
    _, capped = lm.pcg(matvec, jnp.asarray(b), inv_diag, jnp.zeros(40), 5, 1e-12)
    assert int(capped) == 5
    # started from the answer, it has nothing to do
    _, none = lm.pcg(matvec, jnp.asarray(b), inv_diag, jnp.asarray(exact), 200, 1e-6)
    assert int(none) == 0


@pytest.mark.parametrize(
    "overrides, n_lower",
    [
        (["loss.normalization=hard"], 0),
        (["loss.normalization=penalty"], 0),
        (["loss.normalization=hard"], 2),
    ],
)
def test_matrix_free_products_equal_the_explicit_jacobian(overrides, n_lower):
    """J v and J^T u by linearisation, and the preconditioner's diagonal, against the explicit
    Jacobian (per-point rows plus the low-rank terms of projection and normalisation)."""
    built, flat, unravel = built_problem(overrides, n_lower)
    ls = problem.least_squares(built.problem, unravel, chunk=7)  # 40 = 5 x 7 + 5: padding
    residual_vector, with_jacobian = ls.residual, ls.with_jacobian
    _, jac = with_jacobian(flat)
    _, jvp = jax.linearize(residual_vector, flat)
    vjp = jax.linear_transpose(jvp, flat)
    v = jax.random.normal(jax.random.key(1), flat.shape, flat.dtype)
    np.testing.assert_allclose(jvp(v), jac @ v, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(vjp(jac @ v)[0], jac.T @ (jac @ v), rtol=1e-9, atol=1e-10)
    if n_lower == 0 and "loss.normalization=penalty" in overrides:
        # penalty rows: the pointwise part is every row but the last (the norm's)
        diag = ls.diagonal(flat)
        np.testing.assert_allclose(diag, jnp.sum(jac[:-1] ** 2, axis=0), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("n_lower", [0, 1])
def test_a_converged_cg_step_is_the_explicit_step(n_lower):
    """With CG run to convergence, one matrix-free step lands where the explicit solve does.
    With a lower state both damp the step's change along it (the metric, scaled by J's largest
    column): given J's exact column norms as its diagonal, CG scales it as the explicit solve."""
    built, flat, unravel = built_problem([], n_lower)
    mu, nu = jnp.asarray(1e-2), jnp.asarray(2.0)
    ls = built.problem.least_squares(unravel)
    assert (ls.metric is not None) == (n_lower > 0)
    explicit = lm.make_lm_step(ls)(flat, mu, nu)
    diag = ls.diagonal(flat) if n_lower == 0 else jnp.sum(ls.with_jacobian(flat)[1] ** 2, axis=0)
    step = lm.make_cg_step(ls, iters=2000, tol=1e-14)
    matrix_free = step(flat, mu, nu, jnp.zeros_like(flat), diag)
    assert bool(explicit[5]) and bool(matrix_free[5])  # both accepted
    np.testing.assert_allclose(matrix_free[0], explicit[0], rtol=1e-7, atol=1e-9)
    assert float(matrix_free[4]) == pytest.approx(float(explicit[4]), rel=1e-6)
    assert 0 < int(matrix_free[6]) <= 2000


def test_auto_forms_the_jacobian_only_where_that_is_cheaper():
    assert resources.choose_solver("auto", 192, 1200) == "explicit"  # the defaults
    assert resources.choose_solver("auto", 1024, 33666) == "cg"  # width 128, depth 3
    assert resources.choose_solver("auto", 4096, 2000) == "cg"  # a 2-D grid
    assert resources.choose_solver("explicit", 4096, 33666) == "explicit"
    assert resources.choose_solver("cg", 10, 10) == "cg"


def test_the_memory_estimate_has_no_jacobian_for_the_matrix_free_solver():
    big = ["potential=finite_well", "model.width=256", "model.depth=3", "train.points=8192"]
    potential = assemble.potential_from(config(*big))
    explicit, params, points = resources.memory_estimate(
        config(*big, "optim.solver=explicit"), potential
    )
    matrix_free, _, _ = resources.memory_estimate(config(*big, "optim=adam_gn"), potential)
    assert explicit > points * params * 8  # the Jacobian alone
    assert matrix_free < points * params * 8 / 10


def test_matrix_free_training_reaches_the_explicit_precision(tmp_path):
    """optim=adam_gn trains the infinite well to 1e-9, logs CG iterations, records the solver."""
    cfg = config(
        "optim=adam_gn",
        "model.width=16",
        "train.steps=300",
        "train.points=64",
        "optim.refine_steps=300",
    )
    result = experiment.run(cfg, tmp_path)
    assert result.code == 0
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["timing"]["solvers"] == {"lm": "cg"}
    assert s["energy"]["rel_error"] < 1e-9
    assert s["wavefunction"]["l2_error"] < 1e-6
    import csv

    with (tmp_path / "metrics.csv").open() as f:
        iters = [float(r["cg_iters"]) for r in csv.DictReader(f) if r["stage"] == "lm"]
    assert iters and all(0 < k <= cfg.optim.cg_iters for k in iters)


@pytest.mark.slow
def test_ensemble_members_train_with_the_matrix_free_solver():
    cfg = config("optim=adam_gn", "model.width=8", "train.points=48", "train.ensemble=2")
    built = assemble.build(cfg)
    plan = built.plan.__class__(**{**built.plan.__dict__, "steps": 200, "refine_steps": 100})
    state = train.init_state(built.problem, plan, built.state.params)
    result = train.fit(built.problem, plan, state)
    assert result.status == "completed"
    assert result.solvers == {"lm": "cg"}
    energies = jax.vmap(lambda p: problem.rayleigh(built.problem, p))(result.params)
    np.testing.assert_allclose(energies, np.pi**2, rtol=1e-6)


@pytest.mark.parametrize(
    "override, words",
    [
        ("optim.solver=qr", ["optim.solver", "qr", "auto", "explicit", "cg"]),
        ("optim.cg_iters=0", ["optim.cg_iters", "0"]),
        ("optim.cg_tol=2.0", ["optim.cg_tol", "2.0"]),
    ],
)
def test_bad_solver_settings_are_refused_with_one_line(override, words):
    from pinn_cli.config import ConfigError

    with pytest.raises(ConfigError) as err:
        validate(config(override))
    message = str(err.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_a_step_whose_residual_reads_exactly_zero_is_refused():
    """A trial step that sends psi's exponential output to underflow makes every normalised
    residual read 0: the linear model predicted a large decrease, so the step would pass the
    ratio test, and the stage would sit on psi = 0 (non-finite from then on). It is refused
    and the damping raised, as for any step that does not lower the loss."""
    r = jnp.ones(3)
    delta = -jnp.ones(2)
    predicted = r @ r  # the linear model predicts the whole loss away: rho = 1 if it "lands"
    flat, mu, nu = jnp.zeros(2), jnp.asarray(1.0), jnp.asarray(2.0)
    landed = lm._damped_update(lambda f: jnp.zeros(3), flat, mu, nu, r, delta, predicted)
    assert not bool(landed[5]) and float(landed[1]) == 2.0 and float(landed[4]) == 3.0
    halved = lm._damped_update(lambda f: 0.5 * r, flat, mu, nu, r, delta, predicted)
    assert bool(halved[5]) and np.allclose(halved[0], delta)


def linear(a, r0) -> optim.LeastSquares:
    """The least-squares problem r(f) = A f + r0."""
    return optim.LeastSquares(lambda f: a @ f + r0, lambda f: (a @ f + r0, a), None)


@pytest.mark.parametrize("rows", [40, 160])  # the residual space (M < P) and the parameter space
def test_a_step_that_lowers_a_linear_loss_is_never_refused(rows):
    """On a linear least-squares problem the loss falls by exactly what the linear model
    predicts, so every damped step is accepted. Near a floor the decrease is a tiny fraction of
    the loss: written as -(2 r.J delta + |J delta|^2) the prediction is the difference of two
    nearly equal numbers, and with J delta from the Gram matrix (the residual space) its
    rounding gave it the wrong sign for 8 of these 20 steps, each refused and mu doubled."""
    p = 120
    for seed in range(20):
        rng = np.random.default_rng(seed)
        k = min(rows, p)
        u = np.linalg.qr(rng.standard_normal((rows, k)))[0]
        v = np.linalg.qr(rng.standard_normal((p, k)))[0]
        s = np.logspace(6, -5, k)  # an ill-conditioned J: its Gram matrix spans 1e12 to 1e-10
        a = jnp.asarray(u @ np.diag(s) @ v.T)
        # the residual lies almost wholly along directions the damping (mu = 1) holds still
        r0 = jnp.asarray(u @ (np.where(s < 1e-3, 1.0, 1e-9) * rng.standard_normal(k)))
        out = lm.make_lm_step(linear(a, r0))(jnp.zeros(p), jnp.asarray(1.0), jnp.asarray(2.0))
        before, after, accepted = float(out[3]), float(out[4]), bool(out[5])
        assert accepted and after < before, (seed, before, after)


def test_a_metric_damps_the_step_along_it_and_leaves_the_minimiser():
    """Marquardt's metric D: a step is damped by |D delta|^2 as well. On r(f) = A f + r0 (full
    column rank: one minimiser, here with r = 0) D = e_0 with weight 10 holds f_0 nearly still
    in the first step (explicit and CG solvers alike), where without it f_0 moves by O(1);
    run on, both reach the same minimiser."""
    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.standard_normal((40, 6)))
    best = np.linspace(1.0, 2.0, 6)
    r0 = -a @ jnp.asarray(best)  # r = A (f - best): zero at the minimiser
    plain = linear(a, r0)
    e0 = jnp.eye(6)[:1]
    held = optim.LeastSquares(plain.residual, plain.with_jacobian, None, lambda f: e0, 10.0)
    diag = jnp.sum(a**2, axis=0)

    def first_and_last(ls, cg):
        step = jax.jit(lm.make_cg_step(ls, 50, 1e-14) if cg else lm.make_lm_step(ls))
        flat, mu, nu, warm = jnp.zeros(6), jnp.asarray(1e-3), jnp.asarray(2.0), jnp.zeros(6)
        path = []
        for _ in range(300):
            out = step(flat, mu, nu, warm, diag) if cg else step(flat, mu, nu)
            flat, mu, nu = out[:3]
            warm = out[-1] if cg else warm
            path.append(np.asarray(flat))
        return path[0], path[-1]

    for cg in (False, True):
        free_first, free_last = first_and_last(plain, cg)
        held_first, held_last = first_and_last(held, cg)
        assert abs(free_first[0]) > 0.5 * abs(best[0])
        assert abs(held_first[0]) < 0.2 * abs(free_first[0])
        np.testing.assert_allclose(held_last, best, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(free_last, best, rtol=1e-8, atol=1e-10)
