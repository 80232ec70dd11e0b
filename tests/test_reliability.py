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
    proc = start(run_dir, *TINY, "optim=adam", "train.lr=1e11", "train.lr_schedule=constant")
    assert proc.wait(timeout=300) == 3
    s = summary(run_dir)
    assert s["status"] == "diverged"
    assert s["diverged_step"] is not None
    assert "non-finite" in s["stop_reason"]
    assert all(step < s["diverged_step"] for step in checkpoint_steps(run_dir))


def test_corrupt_checkpoint_falls_back_to_the_previous_one(uninterrupted, tmp_path):
    run_dir = tmp_path / "copy"
    shutil.copytree(uninterrupted, run_dir)
    (run_dir / "summary.json").unlink()  # as if stopped: a finished run has nothing to resume
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
    (run_dir / "summary.json").unlink()
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


# --------------------------------------------------------------------------------------------
# Run folders are never silently reused.


def one_error_line(proc) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("pinn-run: error: ")
    return lines[0]


def test_a_folder_holding_a_run_is_refused_and_left_untouched(tmp_path, pinn_run):
    run_dir = tmp_path / "run"
    pinn_run(*TINY, f"hydra.run.dir={run_dir}", check=True)
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file() and "lock" not in p.name}
    proc = pinn_run(*TINY, "seed=5", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 2
    assert f"resume={run_dir}" in one_error_line(proc)
    after = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file() and "lock" not in p.name}
    assert after == before  # not a byte of the first run changed, .hydra/ and the log included


@pytest.mark.slow
def test_a_folder_left_by_a_refused_run_takes_the_corrected_command(tmp_path, pinn_run):
    """A mistake refused before training leaves only a log: the corrected command runs there."""
    run_dir = tmp_path / "run"
    refused = pinn_run(*TINY, "train.devices=64", f"hydra.run.dir={run_dir}")
    assert refused.returncode == 2 and "train.devices=64" in one_error_line(refused)
    assert not (run_dir / "summary.json").exists()
    pinn_run(*TINY, f"hydra.run.dir={run_dir}", check=True)
    assert summary(run_dir)["status"] == "completed"


@pytest.mark.slow
def test_overwrite_replaces_the_earlier_run_entirely(tmp_path, pinn_run):
    run_dir = tmp_path / "run"
    pinn_run(*TINY, f"hydra.run.dir={run_dir}", check=True)
    pinn_run(*TINY, "seed=5", "overwrite=true", f"hydra.run.dir={run_dir}", check=True)
    assert summary(run_dir)["seed"] == 5
    rows = metrics(run_dir)
    assert len(rows) == len({(r["state"], r["step"]) for r in rows})  # one run's rows only
    assert "seed=5" in (run_dir / ".hydra" / "overrides.yaml").read_text()


def test_a_sweep_folder_holding_a_sweep_is_refused(tmp_path, pinn_run):
    sweep = tmp_path / "sweep"
    pinn_run("-m", *TINY, "seed=0,1", f"hydra.sweep.dir={sweep}", check=True)
    proc = pinn_run("-m", *TINY, "seed=2", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 2 and "already holds a sweep" in one_error_line(proc)
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]


@pytest.mark.parametrize(
    "args, expected",
    [
        (["hydra.run.dir="], "hydra.run.dir is empty"),
        (["hydra.run.dir={file}/run"], "cannot be created"),
        (["resume={file}"], "not a folder"),
    ],
)
def test_unusable_folders_get_one_line(tmp_path, pinn_run, args, expected):
    file = tmp_path / "a-file"
    file.write_text("")
    proc = pinn_run(*TINY, *[a.format(file=file) for a in args], cwd=tmp_path)
    assert proc.returncode == 2 and expected in one_error_line(proc)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]  # nothing written


@pytest.mark.slow
def test_resume_of_a_finished_run_changes_nothing(tmp_path, pinn_run):
    run_dir = tmp_path / "run"
    pinn_run(*TINY, f"hydra.run.dir={run_dir}", check=True)
    before = (run_dir / "summary.json").read_bytes()
    proc = pinn_run(f"resume={run_dir}")
    assert proc.returncode == 0 and "has finished" in proc.stdout
    assert (run_dir / "summary.json").read_bytes() == before


@pytest.mark.slow
def test_resume_refuses_overrides_that_change_the_run(tmp_path, pinn_run):
    run_dir = tmp_path / "run"
    pinn_run(*TINY, f"hydra.run.dir={run_dir}", check=True)
    proc = pinn_run(f"resume={run_dir}", "model.width=64")
    assert proc.returncode == 2 and "model.width=64" in one_error_line(proc)


@pytest.mark.slow
def test_a_second_process_in_the_same_run_folder_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    first = start(run_dir, *LONG)
    wait_for_checkpoint(run_dir, first)
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=120) == 143
    resumed = subprocess.Popen(
        [str(BIN / "pinn-run"), f"resume={run_dir}"], stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 120
    while not (run_dir / ".pinn-run.lock").read_text().strip() == str(resumed.pid):
        assert resumed.poll() is None and time.time() < deadline
        time.sleep(0.05)
    second = subprocess.run(
        [str(BIN / "pinn-run"), f"resume={run_dir}"], capture_output=True, text=True, timeout=120
    )
    resumed.send_signal(signal.SIGTERM)
    resumed.wait(timeout=120)
    assert second.returncode == 2
    assert f"in use by another pinn-run (pid {resumed.pid})" in one_error_line(second)
    rows = metrics(run_dir)
    assert len(rows) == len({(r["state"], r["step"]) for r in rows})  # no duplicate rows


@pytest.mark.slow
def test_a_signal_while_outputs_are_written_finishes_them_first(tmp_path):
    """SIGTERM after training: summary.json, psi.csv and the figures are written, then the
    process exits 143 (no traceback)."""
    run_dir = tmp_path / "run"
    proc = start(run_dir, *TINY)
    deadline = time.time() + 240
    while "stopped: all steps done" not in _log(run_dir):
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read()[-2000:]
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 143
    assert "Traceback" not in proc.stderr.read()
    assert summary(run_dir)["status"] == "completed"
    assert (run_dir / "psi.csv").exists() and (run_dir / "wavefunction.png").exists()


def _log(run_dir: Path) -> str:
    path = run_dir / "pinn_run.log"
    return path.read_text() if path.exists() else ""


@pytest.fixture(params=["150k", "300k"])
def small_disk(request, tmp_path):
    """A tmpfs of 150 kB (full during the first checkpoints) or 300 kB (during the later ones),
    where the machine lets this process mount one (root in a sandbox, as CI is); skipped
    elsewhere."""
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={request.param}", "tmpfs", str(mount)],
        capture_output=True,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {made.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
def test_a_full_disk_gives_one_line_keeps_the_checkpoints_and_resume_finishes(
    small_disk, tmp_path, pinn_run
):
    run_dir = small_disk / "run"
    proc = pinn_run(*TINY, f"hydra.run.dir={run_dir}")
    assert proc.returncode == 4
    assert "No space left on device" in one_error_line(proc)
    assert "Traceback" not in proc.stdout + proc.stderr
    assert checkpoint_steps(run_dir)  # the finished work survives
    # summary.json records the failure where the disk still takes it (files that the failed
    # write may have left partial are removed first to make room)
    assert not (run_dir / "summary.json").exists() or summary(run_dir)["status"] == "failed"
    # space is freed: the run moves to a bigger disk and resumes from its checkpoints
    moved = tmp_path / "moved"
    shutil.copytree(run_dir, moved)
    assert pinn_run(f"resume={moved}").returncode == 0
    assert summary(moved)["status"] == "completed"


@pytest.mark.parametrize("checked", [True, False], ids=["room-checked", "orbax-fails"])
def test_a_checkpoint_the_disk_cannot_take_is_a_full_disk_error_with_nothing_left_behind(
    small_disk, monkeypatch, checked
):
    """A step larger than the disk: refused before orbax starts (the room check), or, where the
    check passes and orbax's write fails part-way, the failure (tensorstore's ValueError) is
    raised as OSError(ENOSPC) and the partial step removed."""
    import errno

    import numpy as np

    from pinn_cli import outputs

    if not checked:
        monkeypatch.setattr(outputs, "_check_room", lambda directory, state: None)
    checkpoints = outputs.Checkpoints(small_disk, keep=3)
    checkpoints.save(10, {"w": np.arange(3.0)})
    checkpoints.save(20, {"w": np.random.default_rng(0).random(100_000)})  # 800 kB
    with pytest.raises(OSError) as raised:
        checkpoints.close()
    assert raised.value.errno == errno.ENOSPC
    assert checkpoint_steps(small_disk) == [10]
    assert not list((small_disk / outputs.CHECKPOINTS).glob("*tmp*"))


@pytest.mark.slow
def test_checkpoints_of_another_shape_are_named_as_such(tmp_path, pinn_run):
    run_dir = tmp_path / "run"
    pinn_run(*TINY, f"hydra.run.dir={run_dir}", check=True)
    (run_dir / "summary.json").unlink()  # as if it had been stopped
    saved = run_dir / ".hydra" / "config.yaml"
    saved.write_text(saved.read_text().replace("width: 8", "width: 16"))
    proc = pinn_run(f"resume={run_dir}")
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "do not match the run's config" in line and "(8,) there, (16,) now" in line
    assert "Traceback" not in proc.stdout + proc.stderr


@pytest.mark.slow
def test_a_signal_stops_a_sweep_after_the_current_job(tmp_path):
    sweep = tmp_path / "sweep"
    proc = subprocess.Popen(
        [str(BIN / "pinn-run"), "-m", *LONG, "seed=0,1", f"hydra.sweep.dir={sweep}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_checkpoint(sweep / "0", proc)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130
    assert "Traceback" not in proc.stderr.read()
    assert summary(sweep / "0")["status"] == "interrupted"
    assert not (sweep / "1").exists()  # the sweep stopped; the next job never started


def test_a_checkpoint_is_written_while_training_goes_on_and_its_error_is_not_lost(tmp_path):
    """`save` returns while the writer thread still writes; `steps` and `close` wait for it;
    a failed write (a full disk) is raised by the next call, not swallowed by the thread."""
    import threading

    import numpy as np

    from pinn_cli import outputs

    checkpoints = outputs.Checkpoints(tmp_path, keep=3)
    gate, real_write = threading.Event(), checkpoints._write

    def gated(step, state):
        assert gate.wait(10)
        real_write(step, state)

    checkpoints._write = gated
    checkpoints.save(10, {"w": np.arange(3.0)})  # returns although the write waits on the gate
    assert checkpoint_steps(tmp_path) == []
    gate.set()
    assert checkpoints.steps() == [10]  # waited for the write

    def full_disk(step, state):
        raise OSError(28, "No space left on device")

    checkpoints._write = full_disk
    checkpoints.save(20, {"w": np.arange(3.0)})
    with pytest.raises(OSError, match="No space left"):
        checkpoints.save(30, {"w": np.arange(3.0)})
    checkpoints._write = full_disk
    checkpoints.save(40, {"w": np.arange(3.0)})
    with pytest.raises(OSError, match="No space left"):
        checkpoints.close()
    assert checkpoint_steps(tmp_path) == [10]


def test_metrics_rows_are_on_disk_after_each_write_and_survive_a_truncation(tmp_path):
    """The writer keeps metrics.csv open between rows: each row is readable as soon as it is
    written (a crash loses none), a truncation for a restored state rewrites the file, and
    rows written after it follow the kept ones with one header."""
    from pinn_cli import outputs

    path = tmp_path / outputs.METRICS
    writer = outputs.MetricsWriter(path)
    for step in (100, 200, 300):
        writer.write({"state": 0, "step": step, "loss": 1.0 / step})
        assert outputs.read_metrics(path)["step"][-1] == step
    writer.truncate_after(0, 200)
    writer.write({"state": 0, "step": 250, "loss": 0.004})
    writer.close()
    assert outputs.read_metrics(path)["step"] == [100, 200, 250]
    assert path.read_text().count("state,step,loss") == 1
