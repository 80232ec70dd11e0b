"""Sweeps: real multiruns through the basic, joblib and submitit_local launchers and the optuna
sweeper, the SLURM preset's batch script, the shipped studies, and `pinn-report` on real and
synthetic sweep folders."""

import csv
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import BIN, TINY

from pinn_cli import report, report_figures, sweep_jobs

PROBE = '''
import json, os, sys
from pathlib import Path
from hydra.experimental.callback import Callback

class EnvProbe(Callback):
    """Records, as each job starts in its own process, what JAX will read when it starts."""
    def on_job_start(self, config, **kwargs):
        Path(config.hydra.runtime.output_dir, "probe.json").write_text(json.dumps({
            "pid": os.getpid(),
            "preallocate": os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE"),
            "jax_imported": "jax" in sys.modules,
        }))
'''


def tiny(*overrides: str) -> list[str]:
    """The tiny test config with `overrides` replacing any of its keys."""
    keys = {o.split("=", 1)[0] for o in overrides}
    return [o for o in TINY if o.split("=", 1)[0] not in keys] + list(overrides)


def multirun(sweep: Path, *overrides: str, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "pinn-run"), "-m", *tiny(*overrides), f"hydra.sweep.dir={sweep}"],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def pinn_report(sweep: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "pinn-report"), str(sweep)], capture_output=True, text=True, timeout=120
    )


def probed(tmp: Path) -> tuple[list[str], dict]:
    """Overrides and environment that make every job write probe.json into its folder."""
    (tmp / "sweep_probe.py").write_text(PROBE)
    path = os.pathsep.join(p for p in (str(tmp), os.environ.get("PYTHONPATH")) if p)
    return ["+hydra.callbacks.probe._target_=sweep_probe.EnvProbe"], {"PYTHONPATH": path}


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def md_section(text: str, title: str) -> list[dict]:
    """The rows of the markdown table under the heading that starts with `title`."""
    section = text.split(f"## {title}", 1)[1].split("\n## ", 1)[0]
    table = [line for line in section.splitlines() if line.startswith("|")]
    if not table:
        return []
    header = [c.strip() for c in table[0].strip("|").split("|")]
    return [
        dict(zip(header, (c.strip() for c in line.strip("|").split("|")))) for line in table[2:]
    ]


def summary_of(job: Path) -> dict:
    return json.loads((job / "summary.json").read_text())


def check_completed_sweep(sweep: Path, proc, key: str, values: list[str]) -> list[dict]:
    """Every job wrote a full run folder; pinn-report's table matches their summaries."""
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = [sweep / str(n) for n in range(len(values))]
    for job, value in zip(jobs, values):
        for name in ("summary.json", "metrics.csv", "pinn_run.log", "wavefunction.png"):
            assert (job / name).stat().st_size > 0, (job, name)
        for name in ("config.yaml", "overrides.yaml", "hydra.yaml"):
            assert (job / ".hydra" / name).exists()
        assert f"{key}={value}" in (job / ".hydra" / "overrides.yaml").read_text()
        # trained to the end; a tiny run may fail the self-checks (it is not converged), which
        # then say so (tests/test_checks.py tests the checks themselves)
        assert summary_of(job)["status"] in ("completed", "suspect")
        assert (summary_of(job)["status"] == "suspect") == bool(summary_of(job)["checks"]["failed"])

    done = pinn_report(sweep)
    assert done.returncode == 0, done.stderr
    rows = read_csv(sweep / "summary.csv")
    assert [r["job"] for r in rows] == [str(n) for n in range(len(values))]
    assert {key, "train.steps", "model.depth", "status", "energy.rel_error"} <= set(rows[0])
    for row, job, value in zip(rows, jobs, values):
        summary = summary_of(job)
        assert row[key] == value
        assert row["status"] == summary["status"]
        assert float(row["energy.rel_error"]) == summary["energy"]["rel_error"]
        assert float(row["energy.estimate"]) == summary["energy"]["estimate"]
        assert float(row["wavefunction.l2_error"]) == summary["wavefunction"]["l2_error"]
        assert float(row["wall_s"]) == summary["timing"]["wall_s"]

    md = (sweep / "report.md").read_text()
    table = md_section(md, "Results")
    completed = [v for job, v in zip(jobs, values) if summary_of(job)["status"] == "completed"]
    assert len(table) == len(completed)  # suspect jobs have their own section
    errors = [float(r["E rel. error"]) for r in table]
    assert errors == sorted(errors)
    assert {r[key] for r in table} == {report_figures.short(v) for v in completed}
    assert "Failed or unfinished" not in md
    assert (sweep / "figures" / "convergence.png").stat().st_size > 0
    assert (sweep / "figures" / "best_psi.png").stat().st_size > 0
    return rows


# ---------------------------------------------------------------- real sweeps


def test_basic_launcher_sweeps_a_config_group(tmp_path):
    sweep = tmp_path / "basic"
    proc = multirun(sweep, "potential=infinite_well,barrier")
    check_completed_sweep(sweep, proc, "potential", ["infinite_well", "barrier"])
    names = [summary_of(sweep / str(n))["potential"]["name"] for n in (0, 1)]
    assert names == ["infinite_well", "barrier"]
    assert (sweep / "figures" / "error_vs_potential.png").exists()  # categorical axis


@pytest.mark.slow
def test_joblib_runs_jobs_in_parallel_processes(tmp_path):
    sweep = tmp_path / "joblib"
    extra, env = probed(tmp_path)
    proc = multirun(
        sweep, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=0,1", *extra, env=env
    )
    rows = check_completed_sweep(sweep, proc, "seed", ["0", "1"])
    assert [summary_of(sweep / r["job"])["seed"] for r in rows] == [0, 1]
    probes = [json.loads((sweep / str(n) / "probe.json").read_text()) for n in (0, 1)]
    assert probes[0]["pid"] != probes[1]["pid"]  # two worker processes
    for probe in probes:  # pinn-run's default reached the worker before JAX was imported there
        assert probe["preallocate"] == "false"
        assert not probe["jax_imported"]
    md = (sweep / "report.md").read_text()
    assert len(md_section(md, "Across seeds")) == 1  # both seeds in one group
    # the command ends with its jobs: joblib's idle workers (kept 300 s) are stopped at exit
    assert time.time() - (sweep / "report.md").stat().st_mtime < 60


@pytest.mark.slow
def test_submitit_local_runs_each_job_as_a_submitit_job(tmp_path):
    sweep = tmp_path / "submitit"
    extra, env = probed(tmp_path)
    proc = multirun(sweep, "hydra/launcher=submitit_local", "model.width=8,12", *extra, env=env)
    check_completed_sweep(sweep, proc, "model.width", ["8", "12"])
    assert len(list((sweep / ".submitit").rglob("*_log.out"))) == 2
    probes = [json.loads((sweep / str(n) / "probe.json").read_text()) for n in (0, 1)]
    assert probes[0]["pid"] != probes[1]["pid"]
    assert all(p["preallocate"] == "false" and not p["jax_imported"] for p in probes)
    assert (sweep / "figures" / "error_vs_model.width.png").exists()


@pytest.mark.slow
def test_a_failing_job_does_not_stop_the_sweep(tmp_path):
    sweep = tmp_path / "failing"
    proc = multirun(sweep, "model.width=0,8")  # job 0 is invalid and runs first
    # the sweep finishes, then reports the first failure as one line with the config-error code
    assert proc.returncode == 2
    assert "model.width=0 must be at least 1" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (sweep / "0" / "summary.json").exists()
    assert summary_of(sweep / "1")["status"] == "completed"

    done = pinn_report(sweep)
    assert done.returncode == 0, done.stderr
    rows = {r["job"]: r for r in read_csv(sweep / "summary.csv")}
    assert rows["0"]["status"] in ("failed", "unfinished") and rows["0"]["energy.rel_error"] == ""
    assert rows["0"]["error"]
    assert rows["1"]["status"] == "completed"
    md = (sweep / "report.md").read_text()
    assert [r["job"] for r in md_section(md, "Results")] == ["1"]
    failed = md_section(md, "Failed or unfinished jobs")
    assert [(r["job"], r["model.width"]) for r in failed] == [("0", "0")]


@pytest.mark.slow
def test_optuna_search_minimises_the_returned_energy_error(tmp_path):
    from omegaconf import OmegaConf

    sweep = tmp_path / "optuna"
    proc = multirun(sweep, "experiment=optuna_search", "hydra.sweeper.n_trials=2", "model.depth=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = OmegaConf.load(sweep / "optimization_results.yaml")
    errors = [summary_of(sweep / str(n))["energy"]["rel_error"] for n in (0, 1)]
    assert results.best_value == min(errors)  # the objective is summary.json's rel_error
    trials = [
        sweep_jobs.parse_overrides((sweep / str(n) / ".hydra" / "overrides.yaml").read_text())
        for n in (0, 1)
    ]
    assert all(1e-4 <= float(t["train.lr"]) <= 1e-1 and t["model.depth"] == "1" for t in trials)
    assert pinn_report(sweep).returncode == 0
    assert (sweep / "figures" / "error_vs_train.lr.png").exists()


@pytest.mark.slow
def test_an_optuna_study_stopped_after_3_trials_resumes_to_6_from_its_database(tmp_path):
    import optuna

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = [
        "experiment=optuna_search",
        f"hydra.sweeper.storage={storage}",
        "hydra.sweeper.study_name=resumed",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.n_jobs=1",
        "model.depth=1",
    ]
    first = multirun(tmp_path / "first", *study)
    assert first.returncode == 0, first.stderr[-3000:]
    before = optuna.load_study(study_name="resumed", storage=storage).trials
    assert [t.state.name for t in before] == ["COMPLETE"] * 3
    second = multirun(tmp_path / "second", *study)
    assert second.returncode == 0, second.stderr[-3000:]
    after = optuna.load_study(study_name="resumed", storage=storage).trials
    assert [t.number for t in after] == list(range(6))
    assert all(t.state.name == "COMPLETE" for t in after)
    assert [t.params for t in after[:3]] == [t.params for t in before]  # kept, not redone
    values = [summary_of(tmp_path / "second" / str(n))["energy"]["rel_error"] for n in range(3)]
    assert [t.value for t in after[3:]] == pytest.approx(values, rel=1e-12)


def test_slurm_gpu_preset_writes_a_one_gpu_batch_script(tmp_path):
    """Real submitit against stand-in sbatch/srun: the batch script it submits is captured."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "sbatch").write_text(
        '#!/bin/sh\nfor a; do :; done\ncp "$a" "$CAPTURE.tmp" && mv "$CAPTURE.tmp" "$CAPTURE"\n'
        'echo "Submitted batch job 4242"\n'
    )
    for name in ("srun", "sacct", "squeue", "scancel"):
        (fake / name).write_text("#!/bin/sh\nexit 0\n")
    for path in fake.iterdir():
        path.chmod(0o755)
    capture = tmp_path / "sbatch.sh"
    env = {**os.environ, "PATH": f"{fake}{os.pathsep}{os.environ['PATH']}", "CAPTURE": str(capture)}
    args = ["hydra/launcher=submitit_slurm_gpu", "hydra.launcher.partition=gpu", "seed=0,1"]
    cmd = [str(BIN / "pinn-run"), "-m", *args, f"hydra.sweep.dir={tmp_path / 'slurm'}"]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while not capture.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        proc.terminate()  # it would wait for the stand-in jobs forever
        _, stderr = proc.communicate(timeout=30)
    assert capture.exists(), stderr[-3000:]
    script = capture.read_text()
    for line in (
        "#SBATCH --gpus-per-node=1",
        "#SBATCH --ntasks-per-node=1",
        "#SBATCH --partition=gpu",
        "#SBATCH --array=0-1",
        "export XLA_PYTHON_CLIENT_PREALLOCATE=false",
    ):
        assert line in script, line
    assert script.index("export XLA_PYTHON") < script.index("srun ")


# ---------------------------------------------------------------- the shipped studies


def study_config(name: str):
    """The composed config of `experiment=name`, Hydra's part included."""
    from hydra import compose, initialize_config_module

    from pinn_cli.config import register_configs

    register_configs()
    with initialize_config_module("pinn_cli.conf", version_base="1.3"):
        return compose("config", overrides=[f"experiment={name}"], return_hydra_config=True)


def basic_jobs(cfg) -> list[list[str]]:
    """The jobs the basic sweeper expands `hydra.sweeper.params` to, as Hydra does."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = [f"{k}={v}" for k, v in cfg.hydra.sweeper.params.items()]
    [jobs] = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(params), None)
    return jobs


@pytest.mark.parametrize(
    "name,count,keys",
    [
        ("seed_paper", 15, {"potential", "seed"}),
        ("activation_study", 24, {"model.activation", "seed"}),
        ("width_depth_study", 36, {"model.width", "model.depth", "seed"}),
    ],
)
def test_every_job_of_a_study_is_a_valid_config(name, count, keys):
    from hydra import compose, initialize_config_module

    from pinn_cli.cli import to_config

    cfg = study_config(name)
    jobs = basic_jobs(cfg)
    assert cfg.hydra.mode.name == "MULTIRUN"  # `pinn-run experiment=...` sweeps without -m
    assert len(jobs) == count
    assert {o.split("=")[0] for o in jobs[0]} == keys
    with initialize_config_module("pinn_cli.conf", version_base="1.3"):
        typed = [
            to_config(compose("config", overrides=[f"experiment={name}", *job])) for job in jobs
        ]
    assert len({repr(t) for t in typed}) == count  # each job a different config


def test_optuna_study_searches_lr_width_and_depth():
    from hydra import compose, initialize_config_module

    from pinn_cli.cli import to_config

    sweeper = study_config("optuna_search").hydra.sweeper
    assert "optuna" in sweeper._target_ and sweeper.direction == "minimize"
    assert set(sweeper.params) == {"train.lr", "model.width", "model.depth"}
    assert "log" in sweeper.params["train.lr"]
    assert 0 < sweeper.n_trials <= 20
    with initialize_config_module("pinn_cli.conf", version_base="1.3"):
        for width, depth in ((8, 1), (64, 3)):
            over = [f"model.width={width}", f"model.depth={depth}", "train.lr=1e-4"]
            to_config(compose("config", overrides=["experiment=optuna_search", *over]))


# ---------------------------------------------------------------- pinn-report on a synthetic sweep


def fake_job(sweep, num, overrides, summary=None, log="", metrics=None, job_id=None, psi=False):
    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    ident = f"    id: '{job_id}'\n" if job_id else ""
    (job / ".hydra" / "hydra.yaml").write_text(
        f"hydra:\n  job:\n    name: pinn_run\n{ident}    num: {num}\n"
    )
    (job / "pinn_run.log").write_text(log)
    if summary is not None:
        (job / "summary.json").write_text(json.dumps(summary))
    if metrics is not None:
        lines = ["step,stage,loss,energy,rayleigh"] + [f"{s},adam,1.0,{e},{e}" for s, e in metrics]
        (job / "metrics.csv").write_text("\n".join(lines) + "\n")
    if psi:
        rows = ["x,psi,psi_exact,V"] + [
            f"{x / 10},{x * (10 - x) / 25},{x * (10 - x) / 25},0" for x in range(11)
        ]
        (job / "psi.csv").write_text("\n".join(rows) + "\n")
    return job


def summary(rel, status="completed", stop="all steps done", config_hash=None):
    """summary.json as the runner writes it (NaN and inf become null)."""
    energy = {"estimate": None, "reference": 10.0, "rel_error": None, "learned_rel_error": None}
    if rel is not None:
        energy.update(estimate=10.0 * (1 + rel), rel_error=rel, learned_rel_error=2 * rel)
    out = {
        "energy": energy,
        "wavefunction": {"l2_error": None if rel is None else rel**0.5, "overlap": 1.0},
        "status": status,
        "stop_reason": stop,
        "timing": {"wall_s": 3.5, "ms_per_step": 0.25},
        "seed": 0,
    }
    if config_hash:
        out["provenance"] = {"config_hash": config_hash}
    return out


@pytest.fixture
def synthetic(tmp_path):
    """Widths 8 and 16 over seeds 0 and 1, plus a crashed, a diverged and a silent job."""
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    (sweep / ".submitit" / "4242_6").mkdir(parents=True)
    (sweep / ".submitit" / "4242_6" / "4242_6_0_log.err").write_text(
        "srun: error: n01: task 0: Killed\n"
        "slurmstepd: error: *** JOB 4242 ON n01 CANCELLED AT 2024-05-01T12:00:00 "
        "DUE TO TIME LIMIT ***\n"
    )
    (sweep / "notes").mkdir()  # a folder without .hydra is not a job
    errors = {(8, 0): 3e-4, (8, 1): 1e-4, (16, 0): 2e-6, (16, 1): 8e-6}
    for num, ((width, seed), rel) in enumerate(errors.items()):
        fake_job(
            sweep,
            num,
            [f"model.width={width}", f"seed={seed}", "potential=finite_well"],
            summary(rel, config_hash=f"h{num}" if num else None),
            metrics=[(20, 10.5), (40, 10.0 * (1 + rel))],
            psi=num == 2,
        )
    log = (
        "[2024-05-01 12:00:00,000][pinn_run][INFO] - step 20 [adam] loss 1e0\n"
        "[2024-05-01 12:00:01,000][pinn_run][ERROR] - job failed\n"
        "Traceback (most recent call last):\n"
        '  File "x.py", line 1, in <module>\n'
        "ValueError: boom\n"
    )
    fake_job(sweep, 4, ["model.width=32", "seed=0", "potential=finite_well"], log=log)
    fake_job(
        sweep,
        5,
        ["model.width=32", "seed=1", "potential=finite_well"],
        summary(None, status="diverged", stop="non-finite loss in adam by step 20"),
        metrics=[(20, 11.0)],
    )
    fake_job(sweep, 6, ["model.width=64", "seed=0", "potential=finite_well"], job_id="4242_6")
    fake_job(sweep, 7, ["model.width=64", "seed=1", "potential=finite_well"])
    return sweep, errors


def test_report_aggregates_a_synthetic_sweep(synthetic, capsys):
    sweep, errors = synthetic
    assert report.main([str(sweep)]) == 0
    assert "8 jobs, 4 completed, 4 failed or unfinished" in capsys.readouterr().out

    rows = read_csv(sweep / "summary.csv")
    assert [r["job"] for r in rows] == [str(n) for n in range(8)]
    assert list(rows[0])[:5] == ["job", "folder", "model.width", "seed", "potential"]
    assert [r["config_hash"] for r in rows[:4]] == ["", "h1", "h2", "h3"]
    for row, rel in zip(rows, errors.values()):
        assert row["status"] == "completed"
        assert float(row["energy.rel_error"]) == rel
        assert float(row["energy.learned_rel_error"]) == 2 * rel
        assert float(row["ms_per_step"]) == 0.25
    by_job = {r["job"]: r for r in rows}
    assert (
        by_job["4"]["status"] == "failed" and by_job["4"]["error"] == "job failed: ValueError: boom"
    )
    assert by_job["5"]["status"] == "diverged" and "non-finite" in by_job["5"]["error"]
    assert by_job["6"]["status"] == "failed" and "DUE TO TIME LIMIT" in by_job["6"]["error"]
    assert by_job["7"]["status"] == "unfinished"
    assert by_job["7"]["error"] == sweep_jobs.NOTHING_LOGGED

    md = (sweep / "report.md").read_text()
    results = md_section(md, "Results")
    assert [r["job"] for r in results] == ["2", "3", "1", "0"]  # best first
    assert [r["model.width"] for r in results] == ["16", "16", "8", "8"]
    assert "potential" not in results[0]  # the same in every job: listed once above the table
    assert "`potential=finite_well`" in md
    seeds = md_section(md, "Across seeds")
    assert [(r["model.width"], r["seeds"]) for r in seeds] == [("16", "2"), ("8", "2")]
    assert float(seeds[0]["median E rel. error"]) == pytest.approx(5e-6)
    assert float(seeds[1]["min"]) == pytest.approx(1e-4)
    assert float(seeds[1]["max"]) == pytest.approx(3e-4)
    failed = md_section(md, "Failed or unfinished jobs")
    assert [r["job"] for r in failed] == ["4", "5", "6", "7"]
    assert failed[0]["error"] == "job failed: ValueError: boom"

    figures = {p.name for p in (sweep / "figures").iterdir()}
    assert figures == {"error_vs_model.width.png", "convergence.png", "best_psi.png"}
    for name in figures:
        assert f"figures/{name}" in md


def test_report_writes_its_table_when_no_job_completed(tmp_path):
    sweep = tmp_path / "sweep"
    fake_job(sweep, 0, ["model.width=0"], log="")
    assert report.main([str(sweep)]) == 0
    md = (sweep / "report.md").read_text()
    assert md_section(md, "Results") == []
    assert [r["job"] for r in md_section(md, "Failed or unfinished jobs")] == ["0"]


@pytest.mark.parametrize(
    "layout,message",
    [
        ("missing", "no such folder"),
        ("file", "is a file"),
        ("run", "single run's folder"),
        ("empty", "not a sweep folder"),
        ("started", "no job folders yet"),
    ],
)
def test_report_refuses_a_folder_that_is_not_a_sweep(tmp_path, capsys, layout, message):
    target = tmp_path / "target"
    if layout == "file":
        target.write_text("x")
    elif layout == "run":
        (target / ".hydra").mkdir(parents=True)
    elif layout != "missing":
        target.mkdir()
    if layout == "started":
        (target / "multirun.yaml").write_text("hydra: {}\n")
    assert report.main([str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pinn-report: error: ") and message in err
    assert len(err.strip().splitlines()) == 1


def test_overrides_parse_quoted_and_prefixed_entries():
    text = (
        "- +model.width=8\n- 'potential.domain=[-2, 2]'\n"
        '- "note=a \\"b\\""\n- ~loss\n- ++seed=3\n'
    )
    assert sweep_jobs.parse_overrides(text) == {
        "model.width": "8",
        "potential.domain": "[-2, 2]",
        "note": 'a "b"',
        "loss": "",
        "seed": "3",
    }
    assert sweep_jobs.parse_overrides("[]\n") == {}


def test_error_from_log_prefers_the_last_error_and_its_exception():
    assert sweep_jobs.error_from_log("") is None
    assert sweep_jobs.error_from_log("[t][pinn_run][INFO] - step 20\n") is None
    plain = "Traceback (most recent call last):\n  File 'a'\nRuntimeError: run ended\n"
    assert sweep_jobs.error_from_log(plain) == "RuntimeError: run ended"
    logged = "[t][pinn_run][ERROR] - config error: model.width=0 must be at least 1\n"
    assert sweep_jobs.error_from_log(logged) == "config error: model.width=0 must be at least 1"


def test_short_labels_round_floats_only():
    assert [report_figures.short(v) for v in ("0.0020547625", "8", "tanh", "1e-3", None)] == [
        "0.002055",
        "8",
        "tanh",
        "0.001",
        "",
    ]


def test_report_module_does_not_import_jax():
    code = "import sys, pinn_cli.report as r; r.main(['/nonexistent']); print('jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
    assert re.search(r"no such folder", out.stderr)


def test_report_shows_the_spread_of_ensemble_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    single = summary(1e-6)
    ensemble = {**summary(2e-6), "ensemble": {"size": 8, "energy": {"std": 3e-9}}}
    fake_job(sweep, 0, ["train.ensemble=1"], single)
    fake_job(sweep, 1, ["train.ensemble=8"], ensemble)
    assert report.main([str(sweep)]) == 0
    rows = {r["job"]: r for r in read_csv(sweep / "summary.csv")}
    assert rows["1"]["ensemble.size"] == "8" and float(rows["1"]["ensemble.energy_std"]) == 3e-9
    assert rows["0"]["ensemble.size"] == "" and rows["0"]["ensemble.energy_std"] == ""
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "multirun.yaml").write_text("hydra: {}\n")
    fake_job(plain, 0, ["seed=0"], single)
    assert report.main([str(plain)]) == 0
    assert "ensemble.size" not in read_csv(plain / "summary.csv")[0]


def ensemble_job(sweep, num, overrides, rels, seed0=0, members_written=True):
    """A job of `train.ensemble=len(rels)` whose member i (seed seed0 + i) reached rels[i]."""
    members = [
        {"member": i, "seed": seed0 + i, "status": "completed", "dir": f"members/{i}"}
        for i in range(len(rels))
    ]
    whole = {
        **summary(min(rels)),
        "timing": {"wall_s": 12.0, "ms_per_step": 0.5},
        "ensemble": {"size": len(rels), "energy": {"std": 1e-9}, "members": members},
    }
    job = fake_job(sweep, num, overrides, whole)
    if members_written:
        for i, rel in enumerate(rels):
            (job / "members" / str(i)).mkdir(parents=True)
            own = {**summary(rel), "seed": seed0 + i, "timing": {"ms_per_step": 0.5}}
            (job / "members" / str(i) / "summary.json").write_text(json.dumps(own))
    return job


def test_report_counts_an_ensemble_job_as_its_seeds(tmp_path, capsys):
    """A study with its seeds batched (seed=0 train.ensemble=3) reads like the same study with
    one job per seed: a row per network with its own seed and errors."""
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    ensemble_job(sweep, 0, ["model.width=8", "seed=0", "train.ensemble=3"], [3e-4, 1e-4, 2e-4])
    ensemble_job(sweep, 1, ["model.width=16", "seed=0", "train.ensemble=3"], [2e-6, 8e-6, 4e-6])
    assert report.main([str(sweep)]) == 0
    assert "6 jobs, 6 completed" in capsys.readouterr().out
    rows = read_csv(sweep / "summary.csv")
    assert [(r["model.width"], r["seed"]) for r in rows] == [
        (w, s) for w in ("8", "16") for s in ("0", "1", "2")
    ]
    assert [float(r["energy.rel_error"]) for r in rows] == [3e-4, 1e-4, 2e-4, 2e-6, 8e-6, 4e-6]
    assert {float(r["wall_s"]) for r in rows} == {4.0}  # the job's 12 s over its 3 networks
    assert {r["ensemble.size"] for r in rows} == {"3"}
    seeds = md_section((sweep / "report.md").read_text(), "Across seeds")
    assert [(r["model.width"], r["seeds"]) for r in seeds] == [("16", "3"), ("8", "3")]
    assert float(seeds[0]["median E rel. error"]) == pytest.approx(4e-6)
    assert float(seeds[1]["max"]) == pytest.approx(3e-4)


def test_an_ensemble_job_without_its_member_summaries_stays_one_row(tmp_path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    ensemble_job(sweep, 0, ["train.ensemble=2"], [1e-6, 3e-6], members_written=False)
    jobs = sweep_jobs.load_sweep(sweep)
    assert [(j.name, j.value("energy.rel_error")) for j in jobs] == [("0", 1e-6)]


def test_report_lists_suspect_jobs_in_their_own_section(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    fake_job(sweep, 0, ["seed=0"], summary(1e-9), metrics=[(20, 10.0)])
    reason = "state 0: residual: 5.3e-01 (relative) > 0.01"
    fake_job(sweep, 1, ["seed=1"], summary(0.2, status="suspect", stop=reason), metrics=[(20, 12)])
    assert report.main([str(sweep)]) == 0
    assert "2 jobs, 1 completed, 1 suspect, 0 failed or unfinished" in capsys.readouterr().out
    md = (sweep / "report.md").read_text()
    suspect = md_section(md, "Suspect jobs")
    assert [(r["job"], r["failed checks"]) for r in suspect] == [("1", reason)]
    assert "Failed or unfinished" not in md
