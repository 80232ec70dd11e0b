"""The Python API: `solve(*overrides)` runs in-process, writes the same run folder as `pinn-run`
and returns its numbers and arrays; the quickstart notebook runs."""

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY

from pinn_cli import load, solve
from pinn_cli.cli import _resumed_config
from pinn_cli.config import ConfigError

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("api") / "run"
    return solve("potential=finite_well", *TINY, run_dir=run_dir), run_dir


def test_solve_returns_the_run_folder_s_numbers_and_arrays(tiny):
    result, run_dir = tiny
    summary = json.loads((run_dir / "summary.json").read_text())
    assert result.run_dir == run_dir and result.summary == summary
    assert result.energy == summary["energy"]["estimate"]
    assert result.objective == summary["energy"]["rel_error"]
    table = np.genfromtxt(run_dir / "psi.csv", delimiter=",", names=True)
    np.testing.assert_array_equal(result.x, table["x"])
    np.testing.assert_array_equal(result.psi[0], table["psi"])
    np.testing.assert_array_equal(result.psi_ref[0], table["psi_exact"])
    np.testing.assert_array_equal(result.v, table["V"])
    assert result.v.max() == 50.0  # the finite well's V0 on the plotting grid
    assert list(result.metrics["step"]) == [20.0, 40.0, 50.0]
    assert (run_dir / "pinn_run.log").read_text().count("state 0 stopped") == 1


def test_a_folder_written_by_solve_resumes_as_a_pinn_run_folder(tiny):
    _, run_dir = tiny
    cfg = _resumed_config(run_dir)
    assert cfg.potential.name == "finite_well" and cfg.model.width == 8


def test_solve_refuses_a_mistake_before_running(tmp_path):
    with pytest.raises(ConfigError, match=r"model\.width=0 must be at least 1"):
        solve("model.width=0", run_dir=tmp_path / "never")
    assert not (tmp_path / "never" / "summary.json").exists()


@pytest.mark.slow
def test_load_reads_a_time_dependent_run(tmp_path):
    result = solve(
        "potential=infinite_well", "initial=eigen", "time.T=0.05", "optim.refine_steps=20",
        "time.frames=11", "progress=false", "checks.strict=false", run_dir=tmp_path / "t",
    )  # fmt: skip
    again = load(tmp_path / "t")
    assert again.t.shape == (11,) and again.psi.shape == (11, again.x.size)
    assert np.iscomplexobj(again.psi) and np.iscomplexobj(again.psi_ref)
    np.testing.assert_array_equal(again.psi, result.psi)
    assert result.objective == result.summary["wavefunction"]["l2_error"]


@pytest.mark.slow
def test_the_quickstart_notebook_runs(tmp_path):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=600, resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "".join(
        out.get("text", "") for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs
    )
    assert "completed" in text, text
    assert text.count("energy rel. error") == 3, text
    figures = list(tmp_path.glob("outputs/*/*/notebook_psi.png"))
    assert figures, sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.png"))
