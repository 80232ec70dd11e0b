"""train.devices: the collocation points split over several devices give the one-device result.

The multi-device runs are in a subprocess whose CPU shows two host devices
(XLA_FLAGS=--xla_force_host_platform_device_count=2), the way CI tests a program meant for
several GPUs.
"""

import dataclasses
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_train import config

from pinn_cli import assemble, physics, problem, sharding

TWO_DEVICES = r"""
import json, sys
from pathlib import Path
from pinn_cli import api, experiment
out = {}
for devices in (1, 2):
    cfg, _ = api.compose(*sys.argv[2:], f"train.devices={devices}", "compile_cache=null")
    r = experiment.run(cfg, Path(sys.argv[1]) / str(devices))
    states = r.summary["states"]
    out[devices] = [[s["energy"]["estimate"], s["wavefunction"]["l2_error"]] for s in states]
print(json.dumps(out))
"""


def two_device_runs(tmp_path, *overrides):
    # Points on several devices form the LM step's Gram matrix with XLA's dot (partitioned);
    # the one-device run does too here (PINN_RUN_NATIVE=0), so that the two runs are the same
    # program and differ only by the partition. Against the BLAS kernel's rounding the LM's
    # trajectory moves the psi errors (~1e-8) by a few 1e-10, as any reordered sum does.
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    env["PINN_RUN_NATIVE"] = "0"
    cmd = [sys.executable, "-c", TWO_DEVICES, str(tmp_path), *overrides, "progress=false"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return np.array(out["1"]), np.array(out["2"])


@pytest.mark.slow
def test_two_devices_give_the_one_device_states(tmp_path):
    """An excited state (lower states and a carrier as arguments) on an odd number of points
    (padded with weight-zero points): energies equal to rounding, psi errors to rounding (the
    errors are ~1e-9 to 1e-8: the two reduction orders move them by ~1e-10). On the whole
    domain (model.symmetry=off), so that the 99 points stay odd; with parity (49 or 50 points on
    the half domain) the energies agree as closely, the psi errors ~1e-8 by up to 8e-9."""
    one, two = two_device_runs(
        tmp_path,
        "potential=harmonic",
        "state=1",
        "model.symmetry=off",
        "train.points=99",
        "train.steps=600",
        "optim.refine_steps=150",
        # step for step: whether a stage runs past its budget is a threshold on the loss, which
        # the two reduction orders can put on either side (one block more: psi 4.5e-9 vs 5.4e-9)
        "optim.refine_extra=0",
    )
    assert one.shape == two.shape == (2, 2)
    np.testing.assert_allclose(two[:, 0], one[:, 0], rtol=1e-11)
    assert abs(one[1, 0] - 3.0) < 1e-5  # and the run itself is right
    np.testing.assert_allclose(two[:, 1], one[:, 1], rtol=1e-3, atol=2e-10)


@pytest.mark.slow
def test_two_devices_give_the_one_device_state_in_two_dimensions(tmp_path):
    """A 2-D ground state (points (N, 2), mirrored to the upper quarter) split over two
    devices: the one-device energy and psi error to rounding."""
    one, two = two_device_runs(
        tmp_path,
        "potential=box2d",
        "train.points=400",
        "train.steps=300",
        "optim.refine_steps=100",
        "optim.refine_extra=0",
    )
    assert one.shape == two.shape == (1, 2)
    np.testing.assert_allclose(two[:, 0], one[:, 0], rtol=1e-12)
    assert abs(one[0, 0] / (2 * np.pi**2) - 1) < 1e-10  # and the run itself is right
    np.testing.assert_allclose(two[:, 1], one[:, 1], rtol=1e-3)


@pytest.mark.slow
def test_padding_points_with_weight_zero_changes_no_integral():
    built = assemble.build(config("potential=finite_well", "train.points=97", "model.width=8"))
    prob, params = built.problem, built.state.params
    padded = sharding.pad_points(prob, problem.POINT_FIELDS, 5)
    assert prob.x.shape[0] % 5 != 0 and padded.x.shape[0] % 5 == 0
    assert float(jnp.sum(padded.w[prob.x.shape[0] :])) == 0.0
    for kind in ("residual", "ritz"):
        a, b = prob.loss(kind)(params)[0], padded.loss(kind)(params)[0]
        assert float(b) == pytest.approx(float(a), rel=1e-13)
    # lower states already on the padded grid keep their rows
    rows = padded.x.shape[0]
    lower = physics.Lower(jnp.ones((rows, 2)), jnp.zeros((rows, 2)), jnp.zeros((rows, 2, 1)))
    again = sharding.pad_points(dataclasses.replace(prob, lower=lower), problem.POINT_FIELDS, 5)
    assert again.lower.p.shape == lower.p.shape and again.x.shape == padded.x.shape


def test_one_device_places_nothing():
    """train.devices=1 (the default) leaves the problem on the default device, unsharded."""
    built = assemble.build(config("model.width=8", "train.points=32"))
    assert (
        len(built.problem.x.devices()) == 1 == len(jax.tree.leaves(built.state.params)[0].devices())
    )
