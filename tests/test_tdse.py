"""The time-dependent equation: the trial function, the residual, the least-squares pieces, the
initial states, the configuration's refusals and short runs judged against closed forms."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hydra import compose, initialize_config_module
from jax.flatten_util import ravel_pytree

from pinn_cli import dynamics, initial_states, model, potentials, propagation, quadrature, tdse
from pinn_cli.cli import to_config
from pinn_cli.config import ConfigError, register_configs
from pinn_cli.quadrature import Box


def config(*overrides):
    register_configs()
    with initialize_config_module("pinn_cli.conf", version_base="1.3"):
        return to_config(compose("config", overrides=["progress=false", *overrides]))


def small_problem(kinks=(), lo=-2.0, hi=3.0, tau=0.3):
    """A random network over (x, t) and a complex start s(x) = (1 + 2i) sin, on a tensor rule."""
    box = Box(((lo, hi), (0.0, tau)), (tuple(kinks), ()))
    net, params = model.make_trial_function(
        box=box, width=6, depth=2, activation="tanh", output="linear",
        breakpoint_features=True, key=jax.random.key(3), outputs=2,
    )  # fmt: skip
    xs, wx = quadrature.gauss_pieces([(lo, hi)], [9])
    ts, wt = quadrature.gauss_pieces([(0.0, tau)], [4])
    rule = quadrature.tensor([(xs, wx), (ts, wt)])
    k = math.pi / (hi - lo)
    s = np.sin(k * (rule.x[:, 0] - lo))
    start = np.stack([s, 2.0 * s], -1)
    problem = tdse.TimeProblem(
        net, (lo, hi), tau, jnp.asarray(rule.x), jnp.asarray(rule.w),
        jnp.asarray(1.0 + rule.x[:, 0] ** 2), jnp.asarray(start), jnp.asarray(-(k**2) * start),
        times=4, norm0=float(np.sum(rule.w * np.sum(start**2, -1)) / tau),
    )  # fmt: skip
    return problem, {"net": params}


def test_fields_are_the_derivatives_of_the_trial_function():
    """psi_t and psi_xx of the one-pass jet against nested autodiff of psi(x, t); the initial
    condition and the wall zeros hold exactly for any parameters."""
    problem, params = small_problem(kinks=(0.5,))
    lo, hi = problem.interval
    k = math.pi / (hi - lo)

    def psi(xt):  # s(x) + (t / tau) B(x) N(x, t), written out
        s = jnp.sin(k * (xt[0] - lo)) * jnp.array([1.0, 2.0])
        b = 4.0 * (xt[0] - lo) * (hi - xt[0]) / (hi - lo) ** 2
        n = problem.net.network(params["net"])(problem.net.features(xt))
        return s + xt[1] / problem.window * b * n

    xt = problem.x[::5]
    p, p_t, p_xx = tdse.fields(
        problem.net, problem.interval, problem.window, params["net"], xt,
        problem.start[::5], problem.start_xx[::5],
    )  # fmt: skip
    np.testing.assert_allclose(p, jax.vmap(psi)(xt), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(p_t, jax.vmap(jax.jacfwd(psi))(xt)[..., 1], rtol=1e-10, atol=1e-11)
    hess = jax.vmap(jax.hessian(psi))(xt)[..., 0, 0]
    np.testing.assert_allclose(p_xx, hess, rtol=1e-9, atol=1e-10)
    edge = jnp.array([[lo, 0.1], [hi, 0.2], [0.7, 0.0]])
    start = jnp.array([[0.0, 0.0], [0.0, 0.0], [0.3, -0.4]])
    p_edge = tdse.fields(
        problem.net, problem.interval, problem.window, params["net"], edge, start, start
    )[0]
    np.testing.assert_allclose(p_edge, start, atol=1e-15)


def test_the_residual_vanishes_on_an_exact_solution():
    """r = i psi_t + psi_xx - V psi is zero for a superposition of infinite-well states (and not
    for the time-reversed one: the sign of i psi_t = H psi)."""
    x = np.linspace(0.1, 0.9, 7)
    t = 0.37
    e1, e2 = math.pi**2, 4 * math.pi**2

    def parts(sign):
        terms = [(np.sin(math.pi * x), e1), (np.sin(2 * math.pi * x), e2)]
        psi = sum(f * np.exp(-sign * 1j * e * t) for f, e in terms)
        psi_t = sum(-sign * 1j * e * f * np.exp(-sign * 1j * e * t) for f, e in terms)
        psi_xx = sum(-e * f * np.exp(-sign * 1j * e * t) for f, e in terms)
        pair = lambda z: jnp.asarray(np.stack([z.real, z.imag], -1))  # noqa: E731
        return tdse.residual(pair(psi), pair(psi_t), pair(psi_xx), jnp.zeros(x.size))

    assert float(jnp.max(jnp.abs(parts(+1)))) < 1e-12
    assert float(jnp.max(jnp.abs(parts(-1)))) > 1.0


@pytest.mark.slow
def test_least_squares_is_the_loss_and_its_jacobian():
    problem, params = small_problem(kinks=(0.5,))
    flat, unravel = ravel_pytree(params)
    ls = problem.least_squares(unravel, chunk=7)  # 36 points: 5 chunks of 7 and padding
    r, jac = ls.with_jacobian(flat)
    assert r.shape == (2 * problem.x.shape[0],)
    np.testing.assert_allclose(r, ls.residual(flat), rtol=1e-13, atol=1e-14)
    assert float(r @ r) == pytest.approx(float(problem.loss()(params)[0]), rel=1e-12)
    np.testing.assert_allclose(jac, jax.jacfwd(ls.residual)(flat), rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(ls.diagonal(flat), jnp.sum(jac**2, 0), rtol=1e-10, atol=1e-13)


# --------------------------------------------------------------------------- initial states


def test_initial_states_are_normalised_with_their_second_derivative():
    well = potentials.make_potential("finite_well")
    rule = quadrature.gauss_fixed(well.box, 200)
    x = rule.x[:, 0]
    for state in (
        initial_states.gaussian(well, x0=-0.3, k0=4.0, sigma=0.15),
        initial_states.superposition(well, [1.0, 0.0, 2.0]),
        initial_states.eigen(well, 1),
    ):
        psi, psi_xx = state.values(x)
        assert float(np.sum(rule.w * np.abs(psi) ** 2)) == pytest.approx(1.0, abs=1e-10)
        h = 1e-4  # a centred difference away from V's jumps
        inside = (np.abs(np.abs(x) - 0.5) > 0.01) & (np.abs(x) < 1.99)
        fd = (state(x + h) - 2 * psi + state(x - h)) / h**2
        np.testing.assert_allclose(
            psi_xx[inside], fd[inside], rtol=0, atol=1e-4 * np.abs(psi_xx).max()
        )


def test_an_eigen_initial_state_only_turns_its_phase():
    """The reference propagation of eigenstate n is exp(-i E_n t) psi_n."""
    well = potentials.make_potential("barrier")
    state = initial_states.eigen(well, 2)
    prop = propagation.propagator(well, state)
    x, t = np.linspace(0.05, 0.95, 30), np.array([0.0, 0.01, 0.05])
    psi = prop(x, t)
    np.testing.assert_allclose(np.abs(psi), np.abs(state(x))[None, :].repeat(3, 0), atol=1e-10)
    phase = psi[:, 10] / state(x)[10]
    np.testing.assert_allclose(phase, np.exp(-1j * state.energies[2] * t), atol=1e-10)


@pytest.mark.parametrize("omega,x0", [(1.0, 1.0), (2.0, -0.5)])
def test_the_energy_moments_of_a_coherent_state(omega, x0):
    """<H> = omega + omega^2 x0^2 and Delta H = sqrt(2 omega^3) |x0| (H = -d2/dx2 + omega^2 x^2);
    they set the windows (3 rad each at <H> + 3 Delta H) and the x nodes (10 per wavelength)."""
    well = potentials.make_potential("harmonic", omega=omega)
    mean, width = initial_states.energy_moments(well, initial_states.coherent(well, x0))
    assert mean == pytest.approx(omega + omega**2 * x0**2, rel=1e-10)
    assert width == pytest.approx(math.sqrt(2 * omega**3) * abs(x0), rel=1e-8)
    top = mean + 3 * width
    assert initial_states.auto_windows(top, math.pi) == math.ceil(top * math.pi / 3.0)
    region = initial_states.feature_interval(well, top)
    turning = math.sqrt(top) / omega  # V = top there
    assert region[1] == pytest.approx(min(8.0, 1.5 * turning), abs=0.01)
    pieces, counts = initial_states.space_pieces(well, top, region, floor=64)
    assert pieces[0][0] == -8.0 and pieces[-1][1] == 8.0
    inside = [n for (a, b), n in zip(pieces, counts) if region[0] <= a and b <= region[1]]
    waves = math.sqrt(top) * (region[1] - region[0]) / (2 * math.pi)  # min V = 0
    assert sum(inside) >= 20 * waves


@pytest.mark.parametrize(
    "overrides,needle",
    [
        (["equation=tdse", "time.T=-1"], "time.T=-1.0 must be > 0"),
        (["initial=gaussian", "initial.x0=0.02"], "at the domain's walls"),
        (["initial=gaussian", "initial.x0=1.5"], "at the domain's walls"),
        (["potential=barrier", "initial=coherent"], "potential=barrier is not harmonic"),
        (["initial=superposition", "initial.coefficients=[0,0]"], "not all zero"),
        (["initial=eigen", "initial.n=-1"], "initial.n=-1"),
        (["equation=stationary", "initial=eigen"], "equation=stationary"),
        (["equation=tdse", "potential=box2d"], "1-D potentials"),
        (["equation=tdse", "time.windows=0"], "time.windows=0"),
        (["equation=tdse", "state=2"], "state=2 is for eigenproblems"),
    ],
)
def test_bad_time_dependent_input_is_refused_with_one_line(overrides, needle):
    with pytest.raises(ConfigError, match=None) as err:
        config(*overrides)
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


def test_choosing_an_initial_state_chooses_the_time_dependent_equation():
    assert config("initial=eigen").equation.name == "tdse"
    assert config("equation=tdse").initial is None  # a gaussian packet (dynamics.initial_state)
    assert config().equation.name == "stationary"


# --------------------------------------------------------------------------- runs


@pytest.fixture(scope="module")
def coherent_run(tmp_path_factory):
    """A quarter period of the coherent state in two windows."""
    cfg = config(
        "potential=harmonic", "initial=coherent", "time.T=0.4", "time.windows=2",
        "optim.refine_steps=120", "time.frames=21",
    )  # fmt: skip
    run_dir = tmp_path_factory.mktemp("coherent")
    return dynamics.run(cfg, run_dir), run_dir


def test_a_short_coherent_run_follows_the_closed_form(coherent_run):
    result, run_dir = coherent_run
    s = result.summary
    assert result.code == 0 and s["status"] == "completed"
    assert s["wavefunction"]["l2_error"] < 3e-3
    assert s["norm"]["max_drift"] < 3e-3
    data = np.load(run_dir / "psi_t.npz")
    x, t = data["x"], data["t"]
    assert data["psi"].shape == data["psi_ref"].shape == (21, x.size)
    exact = propagation.coherent_state(1.0, 1.0, x, t)
    np.testing.assert_allclose(data["psi_ref"], exact, atol=1e-9)  # the reference itself
    err = np.linalg.norm(data["psi"] - exact) / np.linalg.norm(exact)
    assert err < 3e-3
    np.testing.assert_allclose(data["psi"][0], exact[0], atol=1e-12)  # held exactly at t = 0


def test_a_time_dependent_run_writes_its_files(coherent_run):
    result, run_dir = coherent_run
    for name in ("density.png", "snapshots.png", "observables.png", "density.gif",
                 "observables.csv", "metrics.csv", "summary.json"):  # fmt: skip
        assert (run_dir / name).stat().st_size > 0, name
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["equation"] == "tdse"
    assert {"l2_error", "l2_error_final"} <= set(summary["wavefunction"])
    assert {"max_drift"} <= set(summary["norm"]) and "max_drift" in summary["energy"]
    assert [w["window"] for w in summary["windows"]] == [0, 1]
    rows = np.genfromtxt(run_dir / "observables.csv", delimiter=",", names=True)
    assert rows.dtype.names == ("t", "norm", "x", "energy", "norm_ref", "x_ref", "energy_ref")
    np.testing.assert_allclose(rows["x_ref"], np.cos(2.0 * rows["t"]), atol=1e-9)  # x0 cos 2wt
    np.testing.assert_allclose(rows["x"], rows["x_ref"], atol=1e-2)
    assert result.objective == summary["wavefunction"]["l2_error"]


def test_a_resumed_run_continues_from_each_window_s_checkpoint(coherent_run, tmp_path):
    """Resuming a finished time-dependent run restores every window's last checkpoint: no step
    is trained again and the judged numbers are the same."""
    import shutil

    result, run_dir = coherent_run
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    assert sorted(p.name for p in (copy / "checkpoints").iterdir()) == ["window_0", "window_1"]
    cfg = config(
        "potential=harmonic", "initial=coherent", "time.T=0.4", "time.windows=2",
        "optim.refine_steps=120", "time.frames=21",
    )  # fmt: skip
    again = dynamics.run(cfg, copy, resume=True)
    assert again.summary["steps"] == result.summary["steps"] == 240
    assert again.summary["wavefunction"]["l2_error"] == pytest.approx(
        result.summary["wavefunction"]["l2_error"], rel=1e-9
    )
    rows = np.genfromtxt(copy / "metrics.csv", delimiter=",", names=True)
    assert rows.size == np.genfromtxt(run_dir / "metrics.csv", delimiter=",", names=True).size


def test_pinn_report_ranks_time_dependent_jobs_by_their_l2_error(tmp_path):
    from pinn_cli.report import Job

    def job(summary):
        return Job(tmp_path, "0", 0, {}, summary, "completed", None)

    tdse_job = job(
        {
            "equation": "tdse",
            "wavefunction": {"l2_error": 3e-5},
            "norm": {"max_drift": 1e-6},
            "energy": {"rel_error": 0.5},
        }
    )
    eigen_job = job({"wavefunction": {"l2_error": 3e-5}, "energy": {"rel_error": 2e-9}})
    assert tdse_job.objective == 3e-5
    assert eigen_job.objective == 2e-9
    assert tdse_job.value("norm.max_drift") == 1e-6
