"""Self-checks: a state that is not what it claims to be is "suspect", never "completed"."""

import json
from dataclasses import dataclass

import numpy as np
import pytest
from test_train import config

from pinn_cli import evaluation, experiment


@dataclass
class Tol:
    residual_tol: float = 1e-2
    orthogonality_tol: float = 1e-3
    energy_tol: float = 1e-2
    psi_tol: float = 0.2


def state(n, energy, nodes=None, parity=None, rel_error=1e-9, l2=1e-6):
    return {
        "n": n,
        "energy": {"estimate": energy, "rel_error": rel_error},
        "wavefunction": {"l2_error": l2},
        "nodes": n if nodes is None else nodes,
        "parity": parity or ("even" if n % 2 == 0 else "odd"),
    }


def checks(states, overlaps=None, residuals=None, symmetric=True):
    k = len(states)
    overlaps = np.eye(k) if overlaps is None else overlaps
    residuals = [1e-8] * k if residuals is None else residuals
    return evaluation.self_checks(states, overlaps, residuals, Tol(), symmetric)


def test_right_states_pass_every_check():
    assert checks([state(0, 1.0), state(1, 3.0), state(2, 5.0)]) == [[], [], []]


@pytest.mark.parametrize(
    "states, overlaps, residuals, symmetric, n, name",
    [
        ([state(0, 1.0), state(1, 3.0, nodes=2)], None, None, True, 1, "nodes"),
        ([state(0, 1.0), state(1, 3.0, parity="even")], None, None, True, 1, "parity"),
        ([state(0, 1.0), state(1, 0.5)], None, None, True, 1, "order"),
        ([state(0, 1.0), state(1, 3.0)], [[1, 0.2], [0.2, 1]], None, True, 1, "orthogonality"),
        ([state(0, 1.0), state(1, 3.0)], None, [1e-8, 0.3], True, 1, "residual"),
        ([state(0, 1.0, rel_error=0.5)], None, None, True, 0, "energy"),
        ([state(0, 1.0, l2=1.2)], None, None, True, 0, "psi"),
    ],
)
def test_each_failing_check_is_named_on_its_state(states, overlaps, residuals, symmetric, n, name):
    overlaps = None if overlaps is None else np.array(overlaps, float)
    failed = checks(states, overlaps, residuals, symmetric)
    assert [bool(f) for f in failed] == [i == n for i in range(len(states))]
    assert len(failed[n]) == 1 and failed[n][0].startswith(f"{name}: ")


def test_parity_is_not_checked_where_v_is_not_symmetric():
    assert checks([state(0, 1.0, parity="mixed")], symmetric=False) == [[]]


def test_the_relative_residual_is_zero_for_an_eigenstate_and_order_one_otherwise():
    x = np.linspace(0.0, 1.0, 2001)
    w = np.full_like(x, x[1] - x[0])
    v = np.zeros_like(x)
    psi, lap = np.sin(np.pi * x), -(np.pi**2) * np.sin(np.pi * x)
    assert evaluation.relative_residual(psi, lap, w, v, np.pi**2) < 1e-12
    assert evaluation.relative_residual(psi, lap, w, v, 2 * np.pi**2) == pytest.approx(1.0)
    assert evaluation.relative_residual(7 * psi, 7 * lap, w, v, 2 * np.pi**2) == pytest.approx(1.0)


UNCONVERGED = ["potential=finite_well", "optim=adam", "train.steps=30", "train.log_every=10"]


def test_an_unconverged_run_is_suspect_with_exit_5(tmp_path):
    result = experiment.run(config(*UNCONVERGED), tmp_path)
    assert result.code == 5
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["status"] == "suspect" and s["states"][0]["status"] == "suspect"
    assert any(line.startswith("state 0: residual: ") for line in s["checks"]["failed"])


def test_checks_strict_false_records_the_checks_and_exits_0(tmp_path):
    result = experiment.run(config(*UNCONVERGED, "checks.strict=false"), tmp_path)
    assert result.code == 0
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "suspect"


@pytest.mark.slow
def test_a_converged_run_passes(tmp_path):
    result = experiment.run(
        config("model.width=16", "train.steps=300", "optim.refine_steps=100"), tmp_path
    )
    assert result.code == 0
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["status"] == "completed" and s["checks"]["failed"] == []
    assert s["states"][0]["checks"]["residual"] < 1e-4


def test_the_console_names_the_state_and_the_check(tmp_path, pinn_run):
    proc = pinn_run(*UNCONVERGED, "progress=false", f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 5
    assert "state 0 is suspect: residual: " in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
