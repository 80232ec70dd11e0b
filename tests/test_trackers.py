"""Experiment trackers (`logger=...`): a real sweep read back with MLflow's client and
TensorBoard's event reader, a tracker that is missing or unreachable, failed runs' status, and
the pure helpers."""

import csv
import json
import math
import os
import subprocess
import time
from pathlib import Path

import pytest
from conftest import BIN, TINY

# The trackers extra is part of `make install`: a missing tracker fails here, it is not skipped.
from tensorboard.backend.event_processing import event_accumulator

from pinn_cli import trackers

MLFLOW_ENV = {"MLFLOW_ALLOW_FILE_STORE": "true"}


def run(args: list[str], cwd: Path, env: dict | None = None, timeout: int = 300):
    return subprocess.run(
        [
            str(BIN / "pinn-run"),
            *[a for a in args if a == "-m"],
            *TINY,
            *[a for a in args if a != "-m"],
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def metrics_rows(run_dir: Path) -> list[dict]:
    with (run_dir / "metrics.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def client(cwd: Path):
    os.environ.update(MLFLOW_ENV)
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=(cwd / "mlruns").as_uri())


@pytest.fixture(scope="module")
def tracked_sweep(tmp_path_factory):
    """Two jobs (seeds 0 and 1) of a multirun with both trackers."""
    cwd = tmp_path_factory.mktemp("tracked")
    sweep = cwd / "multirun" / "study"
    proc = run(["-m", "logger=[tensorboard,mlflow]", "seed=0,1", f"hydra.sweep.dir={sweep}"], cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cwd, sweep


def test_a_sweep_is_one_mlflow_experiment_with_a_run_per_job(tracked_sweep):
    cwd, sweep = tracked_sweep
    c = client(cwd)
    experiment = c.get_experiment_by_name(str(sweep))
    assert experiment is not None, [e.name for e in c.search_experiments()]
    runs = {r.data.params["seed"]: r for r in c.search_runs([experiment.experiment_id])}
    assert sorted(runs) == ["0", "1"]
    for job in ("0", "1"):
        r, run_dir = runs[job], sweep / job
        summary = json.loads((run_dir / "summary.json").read_text())
        assert r.info.status == "FINISHED" and r.data.tags["status"] == summary["status"]
        assert f"seed={job}" in r.info.run_name.split(",")  # the job's overrides
        assert r.data.tags["config_hash"] == summary["provenance"]["config_hash"]
        assert r.data.tags["potential"] == "infinite_well"
        assert r.data.params["model.width"] == "8" and r.data.params["train.steps"] == "40"
        expected = summary["energy"]["rel_error"]
        assert r.data.metrics["summary/energy.rel_error"] == pytest.approx(expected, rel=1e-12)
        rows = [row for row in metrics_rows(run_dir) if row["state"] == "0"]
        history = c.get_metric_history(r.info.run_id, "state0/loss")
        assert [m.step for m in history] == [int(row["step"]) for row in rows]
        assert [m.value for m in history] == pytest.approx([float(row["loss"]) for row in rows])
        errors = c.get_metric_history(r.info.run_id, "state0/energy_rel_error")
        reference = summary["energy"]["reference"]
        last = abs(float(rows[-1]["energy"]) - reference) / reference
        assert errors[-1].value == pytest.approx(last, rel=1e-9)
        artifacts = {a.path for a in c.list_artifacts(r.info.run_id)}
        assert {"summary.json", "metrics.csv", "wavefunction.png", "checkpoints"} <= artifacts
        assert ".pinn-run.lock" not in artifacts


def scalars(path: Path) -> event_accumulator.EventAccumulator:
    acc = event_accumulator.EventAccumulator(
        str(path), size_guidance={"scalars": 0, "images": 0, "tensors": 0}
    )
    acc.Reload()
    return acc


def test_tensorboard_holds_every_logged_scalar_the_figures_and_the_config(tracked_sweep):
    _, sweep = tracked_sweep
    run_dir = sweep / "0"
    rows = metrics_rows(run_dir)
    state0 = scalars(run_dir / "tensorboard" / "state0")
    for column in ("loss", "residual", "energy", "rayleigh", "lr"):
        logged = [r for r in rows if math.isfinite(float(r[column]))]  # no lr in the LM stage
        assert 0 < len(logged)
        events = state0.Scalars(column)
        assert [e.step for e in events] == [int(r["step"]) for r in logged]
        assert [e.value for e in events] == pytest.approx([float(r[column]) for r in logged])
    judged = scalars(run_dir / "tensorboard" / "state0" / "judged")
    reference = json.loads((run_dir / "summary.json").read_text())["energy"]["reference"]
    errors = [abs(float(r["energy"]) - reference) / reference for r in rows]
    assert [e.value for e in judged.Scalars("energy_rel_error")] == pytest.approx(errors)
    root = scalars(run_dir / "tensorboard")
    tags = root.Tags()
    assert "summary/wavefunction.l2_error" in tags["scalars"]
    assert {"figures/wavefunction", "figures/loss", "figures/energy"} <= set(tags["images"])
    config_text = root.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "width: 8" in config_text


def test_a_missing_tracker_costs_one_line_and_the_run_goes_on(tmp_path):
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "tensorboardX.py").write_text("raise ImportError('No module named tensorboardX')\n")
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(shadow), os.environ.get("PYTHONPATH")]))}
    run_dir = tmp_path / "run"
    proc = run(["logger=tensorboard", f"hydra.run.dir={run_dir}"], tmp_path, env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [
        line for line in (proc.stdout + proc.stderr).splitlines() if "logger=tensorboard" in line
    ]
    assert len(lines) == 1 and "tensorboardX is not installed" in lines[0]
    assert "pinn-run[trackers]" in lines[0]
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"
    assert not (run_dir / "tensorboard").exists()


def test_an_unreachable_mlflow_server_costs_one_line_and_seconds(tmp_path):
    run_dir = tmp_path / "run"
    started = time.perf_counter()
    proc = run(
        ["logger=mlflow", "logger.tracking_uri=http://127.0.0.1:9", f"hydra.run.dir={run_dir}"],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if "logger=mlflow" in line]
    assert len(lines) == 1 and "could not start" in lines[0]
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"
    assert time.perf_counter() - started < 120  # no minutes of HTTP retries


def test_a_diverged_run_is_recorded_as_failed_with_its_status(tmp_path):
    run_dir = tmp_path / "div"
    args = ["logger=mlflow", "optim=adam", "train.lr=1e11", "train.lr_schedule=constant"]
    proc = run([*args, f"hydra.run.dir={run_dir}"], tmp_path)
    assert proc.returncode == 3
    c = client(tmp_path)
    (r,) = c.search_runs([c.get_experiment_by_name("pinn-run").experiment_id])
    assert r.info.status == "FAILED" and r.data.tags["status"] == "diverged"
    assert r.info.run_name == "div"


def test_a_run_that_raises_is_recorded_as_failed():
    class Recorder(trackers.Tracker):
        name = "recorder"

        def __init__(self):
            self.failed = None

        def fail(self, status, reason):
            self.failed = (status, reason)

    from pinn_cli.config import Config
    from pinn_cli.experiment import failure_recorded

    recorder = trackers.Trackers([Recorder()])
    tracker = recorder.live[0]
    with pytest.raises(ValueError), failure_recorded(Config(), Path("/nonexistent"), {}, recorder):
        raise ValueError("boom")
    assert tracker.failed == ("failed", "ValueError: boom")


def test_a_tracker_that_fails_midway_is_dropped_and_the_others_go_on(caplog):
    class Broken(trackers.Tracker):
        name = "broken"

        def rows(self, records):
            raise RuntimeError("disk gone")

    class Good(trackers.Tracker):
        name = "good"

        def __init__(self):
            self.got = []

        def rows(self, records):
            self.got.extend(records)

    good = Good()
    mirror = trackers.Trackers([Broken(), good])
    mirror.rows([{"state": 0, "step": 10, "stage": "adam", "loss": 0.5}])
    mirror.rows([{"state": 0, "step": 20, "stage": "adam", "loss": 0.25}])
    assert mirror.live == [good]
    assert [step for _, step, _ in good.got] == [10, 20]
    assert sum("logger=broken" in r.message for r in caplog.records) == 1


def test_helpers():
    tree = {"a": {"b": 1, "c": [2.5, {"d": "x"}]}, "e": True, "f": float("nan")}
    assert dict(trackers.flatten(tree)) == {
        "a.b": 1,
        "a.c.0": 2.5,
        "a.c.1.d": "x",
        "e": True,
        "f": tree["f"],
    }
    assert trackers.numbers(tree) == {"a.b": 1.0, "a.c.0": 2.5}
    prefix, step, values = trackers.row_scalars(
        {"member": 1, "state": 2, "step": 30, "stage": "lm", "loss": 0.1, "lr": float("inf")}
    )
    assert (prefix, step, values) == ("state2/member1", 30, {"loss": 0.1})
    assert trackers.row_scalars({"window": 3, "step": 5, "loss": 1})[0] == "window3"
    statuses = {s: trackers.mlflow_status(s) for s in ("completed", "interrupted", "suspect")}
    assert statuses == {"completed": "FINISHED", "interrupted": "KILLED", "suspect": "FAILED"}
