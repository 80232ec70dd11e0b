"""Excited states: state=n finds states 0..n in order, each orthogonal to those below it."""

import json

import numpy as np
import pytest
from test_train import config

from pinn_cli import experiment

SMALL = ["train.steps=1000", "optim.refine_steps=300"]


def run(tmp_path, *overrides):
    assert experiment.run(config(*SMALL, *overrides), tmp_path).code == 0
    return json.loads((tmp_path / "summary.json").read_text())


@pytest.mark.parametrize(
    "potential,extra",
    [
        ("infinite_well", []),
        ("barrier", []),
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


def test_found_states_are_orthogonal(tmp_path):
    run(tmp_path, "potential=barrier", "state=2")
    data = np.genfromtxt(tmp_path / "psi.csv", delimiter=",", names=True)
    x = data["x"]
    h = x[1] - x[0]
    psis = [data[f"psi_{n}"] for n in range(3)]
    for i in range(3):
        for j in range(i):
            assert abs(np.sum(psis[i] * psis[j]) * h) < 1e-4


def test_harmonic_oscillator_excited_state(tmp_path):
    s = run(tmp_path, "potential=harmonic", "state=1")
    assert [st["energy"]["reference"] for st in s["states"]] == [1.0, 3.0]
    assert [st["nodes"] for st in s["states"]] == [0, 1]
    assert s["states"][1]["energy"]["rel_error"] < 1e-5


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
