"""A 2-D potential trains through the same loop as the 1-D ones, without a change to it.

The potential below is defined here, in the test, with only what the core asks of a potential
(`dim`, `box`, `values`): the quadrature, the trial function, the problem, Adam and
Levenberg-Marquardt take it as they take a 1-D potential.
"""

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pinn_cli import ensemble, model, physics, problem, quadrature, train


@dataclass(frozen=True)
class Box2D:
    """V = 0 on [0, Lx] x [0, Ly], psi = 0 on the boundary: E = pi^2 (n^2/Lx^2 + m^2/Ly^2)."""

    lx: float
    ly: float
    name = "box2d"
    dim = 2

    @property
    def box(self) -> quadrature.Box:
        return quadrature.Box(((0.0, self.lx), (0.0, self.ly)), ((), ()))

    def values(self, x):
        return 0.0 * x[..., 0]


@pytest.mark.parametrize("lx,ly", [(1.0, 1.0), (1.0, 1.5)])
def test_the_training_loop_finds_the_ground_state_of_a_2d_box(lx, ly):
    potential = Box2D(lx, ly)
    psi, net = model.make_trial_function(
        box=potential.box,
        width=12,
        depth=2,
        activation="tanh",
        output="exp",
        breakpoint_features=True,
        key=ensemble.keys(0, 1),
    )
    prob = problem.make_problem(
        psi,
        quadrature.gauss(potential.box, 144),
        potential,
        fixed_energy=None,
        normalization="hard",
        norm_weight=1.0,
        dtype=jnp.float64,
    )
    plan = train.Plan(steps=500, lr=1e-2, lr_final=1e-3, log_every=100, refine_steps=150)
    params = problem.init_params(prob, net, None)
    result = train.fit(prob, plan, train.init_state(prob, plan, params))
    assert result.status == "completed"
    exact = np.pi**2 * (1 / lx**2 + 1 / ly**2)
    learned = float(prob.energy(result.params))
    assert abs(learned - exact) / exact < 1e-6
    # the Rayleigh quotient on a finer rule, and psi against sin(pi x / Lx) sin(pi y / Ly)
    fine = quadrature.gauss_fixed(potential.box, 40)
    p, grad, _ = physics.evaluate(psi, result.params["net"], jnp.asarray(fine.x))
    rq = float(physics.rayleigh_quotient(p, grad, fine.w, potential.values(fine.x)))
    assert abs(rq - exact) / exact < 1e-6
    ref = np.sin(np.pi * fine.x[:, 0] / lx) * np.sin(np.pi * fine.x[:, 1] / ly)
    p = np.asarray(p) * np.sign(np.sum(fine.w * np.asarray(p) * ref))
    unit = lambda f: f / np.sqrt(np.sum(fine.w * f**2))  # noqa: E731
    assert np.sqrt(np.sum(fine.w * (unit(p) - unit(ref)) ** 2)) < 1e-3
    assert jax.tree.structure(result.params) == jax.tree.structure(params)


def test_a_disk_run_writes_its_maps_and_judges_against_bessel_zeros(tmp_path):
    """potential=disk through the whole runner: ground state j01^2 / R^2 to 1e-8, psi.npz on
    the plotting grid with NaN outside the circle, the level in summary.json."""
    import json

    from hydra import compose, initialize_config_module
    from scipy.special import jn_zeros

    from pinn_cli import experiment, outputs
    from pinn_cli.cli import to_config
    from pinn_cli.config import register_configs

    register_configs()
    overrides = ["potential=disk", "potential.radius=1.5", "model.width=16", "progress=false"]
    overrides += ["train.steps=400", "optim.refine_steps=150"]
    with initialize_config_module("pinn_cli.conf", version_base="1.3"):
        cfg = to_config(compose("config", overrides=overrides))
    assert experiment.run(cfg, tmp_path).code == 0
    s = json.loads((tmp_path / outputs.SUMMARY).read_text())
    exact = jn_zeros(0, 1)[0] ** 2 / 1.5**2
    assert s["energy"]["reference"] == pytest.approx(exact, rel=1e-14)
    assert s["energy"]["rel_error"] < 1e-8
    assert s["wavefunction"]["l2_error"] < 1e-5
    assert s["levels"][0]["multiplicity"] == 1 and s["levels"][0]["complete"]
    saved = np.load(tmp_path / outputs.PSI_NPZ)
    psi, x, y = saved["psi"], saved["x"], saved["y"]
    assert psi.shape == (1, y.size, x.size)
    outside = np.hypot(*np.meshgrid(x, y)) > 1.5
    assert np.all(np.isnan(psi[0][outside])) and np.all(np.isfinite(psi[0][~outside]))
    dx, dy = x[1] - x[0], y[1] - y[0]
    assert np.nansum(psi[0] ** 2) * dx * dy == pytest.approx(1.0, rel=2e-2)  # normalised


@pytest.mark.slow
def test_the_oscillator_s_degenerate_level_comes_out_with_the_carrier(tmp_path):
    """harmonic2d state=2: the level E = 4 (states 1 and 2) right as a subspace. Its states
    carry the ground state's Gaussian decay (without it they came out wrong and suspect)."""
    import json

    from test_train import config

    from pinn_cli import experiment, outputs

    overrides = ["potential=harmonic2d", "state=2", "train.steps=1000", "optim.refine_steps=300"]
    assert experiment.run(config(*overrides), tmp_path).code == 0
    s = json.loads((tmp_path / outputs.SUMMARY).read_text())
    assert s["status"] == "completed"
    ground, level = s["levels"]
    assert ground["multiplicity"] == 1 and ground["states"] == [0]
    assert level["multiplicity"] == 2 and level["states"] == [1, 2] and level["complete"]
    assert level["subspace_error"] < 1e-4
    for st in s["states"]:
        assert st["energy"]["rel_error"] < 1e-8, st["energy"]


def test_the_judging_rule_integrates_network_like_features_on_a_wide_box():
    """sech^2(2x) sech^2(2y), a tanh unit's slope, has poles 0.79 from the real axis: on
    [-6, 6]^2 Gauss-Legendre with 48 nodes per axis misses its integral by 3e-4 (the judged
    Rayleigh quotient of formula2d r^2 + 5 exp(-r^2) read 1e-7 low that way); the judging rule
    must get it to rounding, and keep at least 48 nodes on every piece of a well with jumps."""
    from pinn_cli import evaluation2d
    from pinn_cli.potentials import make_potential

    rule = evaluation2d.fine_rule(make_potential("formula2d"))
    f = 1.0 / np.cosh(2 * rule.x[:, 0]) ** 2 / np.cosh(2 * rule.x[:, 1]) ** 2
    exact = np.tanh(12.0) ** 2  # (int_-6^6 sech^2(2x) dx)^2 = (tanh(12))^2
    assert abs(np.sum(rule.w * f) / exact - 1) < 1e-13
    well = evaluation2d.fine_rule(make_potential("finite_well2d", width=0.4))
    xs = np.unique(well.x[:, 0])
    assert np.sum((xs > -0.2) & (xs < 0.2)) >= 48
