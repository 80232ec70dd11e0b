import json
import os
import subprocess
import sys
import time

import pytest
from conftest import BIN, TINY

SUMMARY_KEYS = {
    "potential": None,
    "energy": {"estimate", "learned", "reference", "rel_error"},
    "wavefunction": {"l2_error", "overlap"},
    "steps": None,
    "timing": {"compile_s", "ms_per_step", "wall_s", "startup_s", "train_s", "outputs_s"},
    "status": None,
    "checks": {"strict", "failed"},
}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("tiny") / "run"
    proc = subprocess.run(
        [str(BIN / "pinn-run"), "potential=barrier", *TINY, f"hydra.run.dir={run_dir}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


def test_run_folder_has_every_file(tiny_run):
    for name in ("summary.json", "metrics.csv", "wavefunction.png", "energy.png", "loss.png"):
        assert (tiny_run / name).stat().st_size > 0, name
    for name in ("config.yaml", "overrides.yaml", "hydra.yaml"):
        assert (tiny_run / ".hydra" / name).exists()
    assert (tiny_run / "pinn_run.log").exists()
    steps = sorted(int(p.name) for p in (tiny_run / "checkpoints").iterdir() if p.name.isdigit())
    assert steps and steps[-1] == 50  # the final state: 40 Adam + 10 LM steps


def test_summary_has_every_key(tiny_run):
    summary = json.loads((tiny_run / "summary.json").read_text())
    for key, sub in SUMMARY_KEYS.items():
        assert key in summary
        if sub:
            assert sub <= set(summary[key]), (key, sub - set(summary[key]))
    assert summary["potential"]["name"] == "barrier"
    # trained to the end; a tiny run may fail the self-checks (tests/test_checks.py), which say so
    assert summary["status"] in ("completed", "suspect")
    assert (summary["status"] == "suspect") == bool(summary["checks"]["failed"])
    assert summary["steps"] == 50
    ref = summary["energy"]["reference"]
    assert ref == pytest.approx(25.059686290157966, rel=1e-13)
    est = summary["energy"]["estimate"]
    assert summary["energy"]["rel_error"] == pytest.approx(abs(est - ref) / ref)
    assert summary["energy"]["learned"] is not None  # the barrier learns E by default
    t = summary["timing"]
    # where the time went: before the first step, inside the steps, after the last one
    assert 0 < t["train_s"] and 0 < t["outputs_s"] and 0 < t["startup_s"]
    assert t["startup_s"] + t["train_s"] + t["outputs_s"] <= t["wall_s"] * (1 + 1e-9)
    assert t["outside_training"] == pytest.approx(1 - t["train_s"] / t["wall_s"])


def test_metrics_rows_per_logged_step(tiny_run):
    import csv

    rows = list(csv.DictReader((tiny_run / "metrics.csv").open()))
    assert [int(r["step"]) for r in rows] == [20, 40, 50]
    assert {"step", "loss", "residual", "energy", "lr", "elapsed_s", "stage"} <= set(rows[0])
    assert [r["stage"] for r in rows] == ["adam", "adam", "lm"]


@pytest.mark.parametrize(
    "args,needles",
    [
        (["potential=nowhere"], ["nowhere", "finite_well"]),
        (["model.activation=relu"], ["relu", "psi''"]),
        (["model.width=abc"], ["model.width", "abc"]),
        (["model.widht=3"], ["widht"]),
        (["potential=barrier", "potential.width=1.5"], ["potential.width=1.5"]),
    ],
)
def test_user_mistakes_exit_with_one_line(pinn_run, tmp_path, args, needles):
    t0 = time.perf_counter()
    proc = pinn_run(*args, f"hydra.run.dir={tmp_path / 'r'}")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert all(n in lines[0] for n in needles), lines[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "r" / "metrics.csv").exists()
    assert time.perf_counter() - t0 < 20  # refused before any training or compilation


def test_help_answers(pinn_run):
    proc = pinn_run("--help")
    assert proc.returncode == 0
    assert "potential" in proc.stdout and "finite_well" in proc.stdout


def test_runs_started_in_the_same_second_get_separate_folders(tmp_path):
    cmd = [str(BIN / "pinn-run"), *TINY, "train.steps=0", "optim.refine_steps=0"]
    procs = [
        subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(3)
    ]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read().decode()[-2000:]
    summaries = sorted(tmp_path.glob("outputs/*/*/summary.json"))
    assert len(summaries) == 3
    assert len({s.parent for s in summaries}) == 3


def test_module_entry_point_matches_console_script():
    proc = subprocess.run(
        [sys.executable, "-m", "pinn_cli.cli", "potential=nowhere"], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "nowhere" in proc.stderr


def test_unique_dir_never_returns_a_folder_that_exists(tmp_path):
    from pinn_cli.cli import unique_dir

    unique_dir.cache_clear()
    first = unique_dir(str(tmp_path / "12-00-00"))
    unique_dir.cache_clear()  # a second process asking for the same second
    second = unique_dir(str(tmp_path / "12-00-00"))
    unique_dir.cache_clear()
    third = unique_dir(str(tmp_path / "12-00-00"))
    assert [first, second, third] == [
        str(tmp_path / n) for n in ("12-00-00", "12-00-00_1", "12-00-00_2")
    ]
    assert all((tmp_path / n).is_dir() for n in ("12-00-00", "12-00-00_1", "12-00-00_2"))


def test_version_names_this_package_and_what_it_runs_on(pinn_run):
    from importlib.metadata import version

    proc = pinn_run("--version")
    assert proc.returncode == 0 and proc.stderr == ""
    line = proc.stdout.strip()
    assert line.startswith(f"pinn-run {version('pinn-run')} (")
    assert f"jax {version('jax')}" in line and f"flax {version('flax')}" in line
    assert "Hydra" not in line  # not Hydra's own --version


def test_shell_completion_completes_groups_and_keys(tmp_path):
    def complete(line: str) -> set[str]:
        env = {**os.environ, "COMP_LINE": line}
        proc = subprocess.run(
            [str(BIN / "pinn-run"), "-sc", "query=bash"],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=60,
        )
        return set(proc.stdout.split())

    assert complete("pinn-run potential=fin") == {
        "potential=finite_well",
        "potential=finite_well2d",
    }
    assert {"logger=mlflow", "logger=tensorboard", "logger=none"} <= complete("pinn-run logger=")
    assert "model.width=" in complete("pinn-run model.")


def test_a_failed_job_survives_the_trip_from_a_joblib_worker():
    """joblib's workers pickle the exception: its code and one-line message must come back
    as they were (the sweep's exit code and the line the user reads)."""
    import pickle

    from pinn_cli.cli import RunFailed

    back = pickle.loads(pickle.dumps(RunFailed(5)))
    assert back.code == 5
    assert str(back) == "a job ended with exit code 5 (its summary.json says why)"


@pytest.mark.parametrize("code,rc,err", [(None, 0, ""), (3, 3, ""), ("bad input", 1, "bad input")])
def test_exit_now_runs_the_atexit_handlers_and_keeps_the_exit_code(tmp_path, code, rc, err):
    """The command ends with os._exit (no interpreter teardown): what atexit would flush is
    flushed first, and the code is what sys.exit(code) would give."""
    marker = tmp_path / "flushed"
    script = (
        "import atexit, sys\n"
        "from pinn_cli.process import exit_now\n"
        f"atexit.register(lambda: open({str(marker)!r}, 'w').write('yes'))\n"
        "print('buffered', end='')\n"
        f"exit_now({code!r})\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == rc
    assert marker.read_text() == "yes" and proc.stdout == "buffered"
    assert proc.stderr.strip() == err


def test_hydra_composes_the_config_for_its_mode_only_where_an_override_can_set_it():
    """Hydra composes the whole config once to read hydra.mode before composing it to run;
    pinn-run skips that first composition unless an experiment, hydra.mode, a Hydra config
    group or another primary config could set the mode (an output folder cannot)."""
    from pinn_cli import cli

    calls = []
    wrapped = cli._mode_only_where_set(lambda self, name, overrides: calls.append(name) or "read")
    plain = ["potential=finite_well", "seed=1", "+train.x=1", "hydra.run.dir=/tmp/r"]
    assert wrapped(None, "config", plain) is None
    assert wrapped(None, "config", ["hydra.sweep.dir=s", "hydra.job.chdir=true"]) is None
    assert calls == []
    setting = (
        ["experiment=width_depth_study"],
        ["+experiment=x"],
        ["hydra.mode=MULTIRUN"],
        ["+hydra.mode=RUN"],
        ["hydra/launcher=joblib"],
    )
    for overrides in setting:
        assert wrapped(None, "config", overrides) == "read"
    assert wrapped(None, "my_config", []) == "read"
    assert len(calls) == len(setting) + 1


def test_a_mode_set_by_an_override_still_sweeps_without_m(tmp_path, pinn_run):
    sweep = tmp_path / "sweep"
    proc = pinn_run(
        *TINY, "hydra.mode=MULTIRUN", "seed=0,1", f"hydra.sweep.dir={sweep}", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.name for p in sweep.iterdir() if (p / "summary.json").exists()) == ["0", "1"]
