"""A typo costs seconds, a crash costs nothing already done."""

import csv
import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import BIN, TINY

LONG = [  # long enough to be caught mid-training, each block short
    "model.width=8",
    "model.depth=1",
    "train.points=32",
    "train.steps=4000",
    "train.log_every=50",
    "train.checkpoint_every=200",
    "optim.refine_steps=20",
    "progress=false",
]


def metrics(run_dir: Path) -> list[dict]:
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    for r in rows:
        r.pop("elapsed_s")
    return rows


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def checkpoint_steps(run_dir: Path) -> list[int]:
    d = run_dir / "checkpoints"
    return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.exists() else []


def start(run_dir: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "pinn-run"), *args, f"hydra.run.dir={run_dir}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_checkpoint(run_dir: Path, proc: subprocess.Popen, minimum: int = 1) -> None:
    deadline = time.time() + 240
    while len(checkpoint_steps(run_dir)) < minimum:
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("whole") / "run"
    proc = start(run_dir, *LONG)
    assert proc.wait(timeout=600) == 0, proc.stderr.read()[-2000:]
    return run_dir


def test_same_seed_gives_identical_metrics(uninterrupted, tmp_path):
    proc = start(tmp_path / "again", *LONG)
    assert proc.wait(timeout=600) == 0
    assert metrics(tmp_path / "again") == metrics(uninterrupted)
    a, b = summary(tmp_path / "again"), summary(uninterrupted)
    assert a["energy"] == b["energy"] and a["wavefunction"] == b["wavefunction"]
    assert a["provenance"]["config_hash"] == b["provenance"]["config_hash"]


@pytest.mark.slow
def test_sigkill_then_resume_equals_uninterrupted_run(uninterrupted, tmp_path):
    run_dir = tmp_path / "killed"
    proc = start(run_dir, *LONG)
    wait_for_checkpoint(run_dir, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert not (run_dir / "summary.json").exists()
    killed_at = checkpoint_steps(run_dir)[-1]
    assert killed_at < 4000
    resumed = subprocess.run(
        [str(BIN / "pinn-run"), f"resume={run_dir}"], capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert (
        f"resuming from the checkpoint at step {killed_at}"
        in (run_dir / "pinn_run.log").read_text()
    )
    assert metrics(run_dir) == metrics(uninterrupted)
    a, b = summary(run_dir), summary(uninterrupted)
    assert a["energy"] == b["energy"]  # bit-identical on CPU
    assert a["wavefunction"] == b["wavefunction"]
    assert a["status"] == "completed"


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signals_save_and_exit(tmp_path, sig, code):
    run_dir = tmp_path / "sig"
    proc = start(run_dir, *LONG)
    wait_for_checkpoint(run_dir, proc)
    proc.send_signal(sig)
    assert proc.wait(timeout=120) == code
    s = summary(run_dir)
    assert s["status"] == "interrupted"
    assert 0 < s["steps"] < 4020
    assert checkpoint_steps(run_dir)[-1] == s["steps"]  # the interrupted state itself is saved


def test_divergence_keeps_last_good_checkpoint(tmp_path):
    run_dir = tmp_path / "div"
    proc = start(run_dir, *TINY, "optim=adam", "train.lr=1e30", "train.lr_schedule=constant")
    assert proc.wait(timeout=300) == 3
    s = summary(run_dir)
    assert s["status"] == "diverged"
    assert s["diverged_step"] is not None
    assert "non-finite" in s["stop_reason"]
    assert all(step < s["diverged_step"] for step in checkpoint_steps(run_dir))


def test_corrupt_checkpoint_falls_back_to_the_previous_one(uninterrupted, tmp_path):
    run_dir = tmp_path / "copy"
    shutil.copytree(uninterrupted, run_dir)
    steps = checkpoint_steps(run_dir)
    assert len(steps) >= 2
    newest = run_dir / "checkpoints" / str(steps[-1])
    for f in newest.rglob("*"):
        if f.is_file():
            f.write_bytes(b"garbage")
    proc = subprocess.run(
        [str(BIN / "pinn-run"), f"resume={run_dir}"], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    log = (run_dir / "pinn_run.log").read_text()
    assert f"resuming from the checkpoint at step {steps[-2]}" in log
    assert summary(run_dir)["energy"] == summary(uninterrupted)["energy"]


def test_resume_without_usable_checkpoint_says_so(tmp_path, uninterrupted):
    run_dir = tmp_path / "none"
    shutil.copytree(uninterrupted, run_dir)
    shutil.rmtree(run_dir / "checkpoints")
    proc = subprocess.run(
        [str(BIN / "pinn-run"), f"resume={run_dir}"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"pinn-run: error: resume: no usable checkpoint in {run_dir / 'checkpoints'}"
    ]


def test_resume_of_a_folder_that_is_not_a_run(tmp_path):
    proc = subprocess.run(
        [str(BIN / "pinn-run"), f"resume={tmp_path}"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "not a run folder" in proc.stderr


@pytest.mark.slow
def test_ensemble_sigkill_then_resume_equals_uninterrupted_run(tmp_path):
    args = [*LONG, "train.ensemble=3", "potential=finite_well"]
    whole = tmp_path / "whole"
    assert start(whole, *args).wait(timeout=600) == 0
    run_dir = tmp_path / "killed"
    proc = start(run_dir, *args)
    wait_for_checkpoint(run_dir, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert checkpoint_steps(run_dir)[-1] < 4000
    resumed = subprocess.run(
        [str(BIN / "pinn-run"), f"resume={run_dir}"], capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert metrics(run_dir) == metrics(whole)
    for i in range(3):
        a = json.loads((run_dir / f"members/{i}/summary.json").read_text())
        b = json.loads((whole / f"members/{i}/summary.json").read_text())
        assert a["energy"] == b["energy"] and a["wavefunction"] == b["wavefunction"]
