"""The architecture study: experiment=architecture_study composes to the documented grid, and a
tiny real multirun over activation x width (x depth) x seed goes through `pinn-report` to the
study's heat maps and scatter, whose medians are those of the jobs' summary.json files."""

import json
import math
import re
import statistics
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_sweeps import basic_jobs, fake_job, multirun, pinn_report, study_config, summary

from pinn_cli import report, study, sweep_jobs
from pinn_cli.activations import ACTIVATIONS

STUDY_YAML = Path(study.__file__).parent / "conf" / "experiment" / "architecture_study.yaml"
ACTIVATION_LIST = ["tanh", "sin", "gelu", "silu", "adaptive_tanh", "stan", "polynorm"]
ACTIVATION_LIST += ["rational", "siren"]
POTENTIALS = {"infinite_well", "finite_well", "barrier"}


def job_values(jobs: list[list[str]], key: str) -> list[str]:
    """The values `key` takes over the jobs, in order of first appearance."""
    return list(dict.fromkeys(dict(o.split("=", 1) for o in job)[key] for job in jobs))


def test_architecture_study_composes_to_the_documented_grid():
    cfg = study_config("architecture_study")
    jobs = basic_jobs(cfg)
    assert cfg.hydra.mode.name == "MULTIRUN"
    documented = re.search(r"= (\d+) jobs", STUDY_YAML.read_text())
    assert len(jobs) == int(documented.group(1)) == 9 * 2 * 2 * 3 * 3
    assert job_values(jobs, "model.activation") == ACTIVATION_LIST
    assert set(ACTIVATION_LIST) <= set(ACTIVATIONS)
    assert job_values(jobs, "model.width") == ["16", "32"]
    assert job_values(jobs, "model.depth") == ["1", "2"]
    assert job_values(jobs, "seed") == ["0", "1", "2"]
    assert set(job_values(jobs, "potential")) == POTENTIALS
    swept = {o.split("=")[0] for o in jobs[0]}
    assert study.applies(sorted(swept))


def test_every_activation_of_the_study_is_a_valid_config():
    from hydra import compose, initialize_config_module

    from pinn_cli.cli import to_config

    jobs = basic_jobs(study_config("architecture_study"))
    first = {dict(o.split("=", 1) for o in job)["model.activation"]: job for job in reversed(jobs)}
    with initialize_config_module("pinn_cli.conf", version_base="1.3"):
        typed = [
            to_config(compose("config", overrides=["experiment=architecture_study", *job]))
            for job in first.values()
        ]
    assert {t.model.activation for t in typed} == set(ACTIVATION_LIST)


def test_the_cluster_grid_in_the_comment_multiplies_out():
    """A swept key on the command line replaces the file's: the documented cluster grid."""
    from omegaconf import OmegaConf

    params = dict(study_config("architecture_study").hydra.sweeper.params)
    params.update({"model.width": "16,32,64,128", "model.depth": "1,2,3,4", "seed": "range(0,5)"})
    cluster = OmegaConf.create({"hydra": {"sweeper": {"params": params}}})
    assert len(basic_jobs(cluster)) == 2160
    assert "= 2160 jobs" in STUDY_YAML.read_text()


# ---------------------------------------------------------------- a real tiny study


def independent_medians(sweep: Path) -> dict[tuple, list[float]]:
    """{(potential, activation, width, depth): [energy rel. errors]} straight from the files."""
    errors: dict[tuple, list[float]] = {}
    for folder in sorted(p for p in sweep.iterdir() if (p / "summary.json").exists()):
        data = json.loads((folder / "summary.json").read_text())
        if data["status"] not in ("completed", "suspect"):
            continue
        overrides = yaml.safe_load((folder / ".hydra" / "overrides.yaml").read_text())
        setting = dict(o.split("=", 1) for o in overrides)
        key = (data["potential"]["name"], setting["model.activation"])
        key += (setting["model.width"], setting["model.depth"])
        errors.setdefault(key, []).append(data["energy"]["rel_error"])
    return errors


def check_study(sweep: Path, proc, potentials: list[str], shape_keys: list[str]) -> None:
    """The report draws a heat map per potential and the scatter, with medians and spreads that
    are those of the jobs' summary.json values, and report.md shows them."""
    assert proc.returncode == 0, proc.stderr[-3000:]
    done = pinn_report(sweep)
    assert done.returncode == 0, done.stderr
    names = [f"study_{p}.png" for p in potentials] + ["study_error_vs_time.png"]
    for name in names:
        assert (sweep / "figures" / name).stat().st_size > 0, name
    md = (sweep / "report.md").read_text()
    section = md.split("## Which activation, how wide, how deep", 1)[1].split("\n## ", 1)[0]
    assert [f"figures/{n}" for n in names] == re.findall(r"\((figures/[^)]+)\)", section)

    jobs = sweep_jobs.load_sweep(sweep)
    swept = sweep_jobs.swept_keys(jobs)
    grids = {g.potential: g for g in study.grids(study.trials(jobs, swept))}
    assert set(grids) == set(potentials)
    expected = independent_medians(sweep)
    assert {k[0] for k in expected} == set(potentials)
    for (potential, activation, width, depth), errors in expected.items():
        grid = grids[potential]
        shape = tuple(
            int(v) for k, v in (("model.width", width), ("model.depth", depth)) if k in shape_keys
        )
        i, j = grid.activations.index(activation), grid.shapes.index(shape)
        assert grid.median()[i, j] == pytest.approx(statistics.median(errors), rel=1e-12)
        spread = math.log10(max(errors) / min(errors))
        assert grid.spread()[i, j] == pytest.approx(spread, rel=1e-9, abs=1e-12)
    cells = sum(np.isfinite(g.median()).sum() for g in grids.values())
    assert cells == len(expected)


@pytest.mark.slow
def test_a_tiny_study_runs_end_to_end(tmp_path):
    """2 activations x 2 widths x 2 seeds on one potential: 8 tiny jobs, the basic launcher."""
    sweep = tmp_path / "study"
    proc = multirun(
        sweep, "model.activation=tanh,sin", "model.width=8,12", "seed=0,1", "potential=barrier"
    )
    check_study(sweep, proc, ["barrier"], ["model.width"])
    grid = study.grids(study.trials(sweep_jobs.load_sweep(sweep), ["model.width"]))[0]
    assert grid.activations == ["tanh", "sin"] and grid.shapes == [(8,), (12,)]
    assert (grid.count() == 2).all()


@pytest.mark.slow
def test_a_tiny_study_over_depth_and_potential(tmp_path):
    """2 activations x 2 depths x 2 seeds x 2 potentials: 16 tiny jobs."""
    sweep = tmp_path / "study"
    proc = multirun(
        sweep,
        "model.activation=tanh,silu",
        "model.depth=1,2",
        "seed=0,1",
        "potential=infinite_well,barrier",
    )
    check_study(sweep, proc, ["infinite_well", "barrier"], ["model.depth"])


# ---------------------------------------------------------------- synthetic sweeps


def study_job(sweep, num, activation, width, seed, rel, status="completed", wall=3.5):
    data = {**summary(rel, status=status), "potential": {"name": "finite_well"}}
    data["timing"] = {"wall_s": wall, "ms_per_step": 0.25}
    overrides = [f"model.activation={activation}", f"model.width={width}", f"seed={seed}"]
    return fake_job(sweep, num, overrides, data)


@pytest.fixture
def synthetic_study(tmp_path):
    """tanh and sin at widths 8 and 16 over three seeds; one sin job diverged, one suspect."""
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    errors = {
        ("tanh", 8): [1e-4, 2e-4, 4e-4],
        ("tanh", 16): [1e-6, 1e-6, 1e-3],
        ("sin", 8): [1e-5, 3e-5, None],
        ("sin", 16): [2e-8, 5e-8, 2e-2],
    }
    num = 0
    for (activation, width), values in errors.items():
        for seed, rel in enumerate(values):
            status = "diverged" if rel is None else "suspect" if rel > 1e-2 else "completed"
            study_job(sweep, num, activation, width, seed, rel, status, wall=width / 4 + seed)
            num += 1
    return sweep


def test_study_grid_counts_suspect_jobs_and_skips_diverged_ones(synthetic_study):
    jobs = sweep_jobs.load_sweep(synthetic_study)
    swept = sweep_jobs.swept_keys(jobs)
    assert study.applies(swept) and not study.applies(["model.width", "seed"])
    [grid] = study.grids(study.trials(jobs, swept))
    assert grid.potential == "finite_well"  # from summary.json: not an override here
    assert grid.activations == ["tanh", "sin"] and grid.shapes == [(8,), (16,)]
    np.testing.assert_allclose(grid.median(), [[2e-4, 1e-6], [2e-5, 5e-8]])
    np.testing.assert_array_equal(grid.count(), [[3, 3], [2, 3]])
    np.testing.assert_allclose(grid.spread(), np.log10([[4, 1000], [3, 1e6]]))
    [(point, seeds)] = [
        (t, n)
        for t, n in study.medians(study.trials(jobs, swept))
        if t.activation == "sin" and t.shape == (8,)
    ]
    assert seeds == 2 and point.wall_s == pytest.approx(2.5)  # walls 2 and 3


def test_report_embeds_the_study_figures_only_for_an_architecture_sweep(synthetic_study, tmp_path):
    assert report.main([str(synthetic_study)]) == 0
    md = (synthetic_study / "report.md").read_text()
    assert "## Which activation, how wide, how deep" in md
    for name in ("study_finite_well.png", "study_error_vs_time.png"):
        assert (synthetic_study / "figures" / name).stat().st_size > 0
        assert f"](figures/{name})" in md
    assert md.index("## Which activation") < md.index("## Figures")

    widths = tmp_path / "widths"
    widths.mkdir()
    for num, width in enumerate((8, 16)):
        fake_job(widths, num, [f"model.width={width}"], summary(1e-6))
    assert report.main([str(widths)]) == 0
    assert not list((widths / "figures").glob("study_*"))
    assert "Which activation" not in (widths / "report.md").read_text()
