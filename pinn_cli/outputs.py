"""The run folder: every file name in it, metrics.csv, summary.json, psi.csv, orbax checkpoints,
and what resume reads back. Every module that reads or writes a run folder takes the names from
here. JAX is imported only by the checkpoint manager, so readers (pinn-report) stay light.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

METRICS = "metrics.csv"
SUMMARY = "summary.json"
CHECKPOINTS = "checkpoints"
PSI = "psi.csv"  # x, each state's psi and reference, V
LOG = "pinn_run.log"  # Hydra's job log (hydra.job.name = pinn_run)
WAVEFUNCTION_PNG = "wavefunction.png"
ENERGY_PNG = "energy.png"
LOSS_PNG = "loss.png"
MEMBERS = "members"  # members/<i>/ for each network of an ensemble
PROFILE = "profile"
HYDRA_CONFIG = ".hydra/config.yaml"
HYDRA_OVERRIDES = ".hydra/overrides.yaml"


def checkpoint_dir(states: int, n: int) -> str:
    """checkpoints/ for a ground-state run, checkpoints/state_n/ for each state of state > 0."""
    return CHECKPOINTS if states == 0 else f"{CHECKPOINTS}/state_{n}"


def member_dir(i: int) -> str:
    return f"{MEMBERS}/{i}"


class MetricsWriter:
    """Appends one row per log record; the header comes from the first record written."""

    def __init__(self, path: Path, fields: list[str] | None = None):
        self.path = Path(path)
        self._fields = fields  # None: the first record's keys

    def truncate_after(self, state: int, step: int) -> None:
        """Keep rows up to (state, step): a resumed run's metrics read as one uninterrupted run."""
        if not self.path.exists():
            return
        with self.path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            return
        self._fields = list(rows[0])
        with self.path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self._fields)
            writer.writeheader()
            writer.writerows(r for r in rows if (int(r["state"]), int(r["step"])) <= (state, step))

    def write(self, record: dict) -> None:
        if self._fields is None:
            self._fields = list(record)
        with self.path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self._fields, extrasaction="ignore")
            if f.tell() == 0:
                writer.writeheader()
            writer.writerow(record)


def read_metrics(path: Path) -> dict[str, list]:
    """metrics.csv as columns; numeric columns as floats."""
    with Path(path).open(newline="") as f:
        rows = list(csv.DictReader(f))
    columns: dict[str, list] = {k: [] for k in (rows[0] if rows else [])}
    for row in rows:
        for k, v in row.items():
            try:
                columns[k].append(float(v) if v != "" else float("nan"))
            except ValueError:
                columns[k].append(v)
    return columns


def _clean(value: Any) -> Any:
    """JSON-safe: NaN and inf become null; NumPy and JAX scalars become Python numbers."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json_atomic(path: Path, data: dict) -> None:
    """Write to a temporary file and rename it over the target, so no reader sees half a file."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_clean(data), indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


class Checkpoints:
    """orbax-checkpoint manager over `run_dir/checkpoints`: atomic steps, the last few kept."""

    def __init__(self, run_dir: Path, keep: int, subdir: str = CHECKPOINTS):
        import orbax.checkpoint as ocp

        self._ocp = ocp
        self.directory = Path(run_dir).absolute() / subdir
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
        )

    def save(self, step: int, state: Any) -> None:
        if step in self.manager.all_steps():
            return
        self.manager.save(step, args=self._ocp.args.StandardSave(state))
        self.manager.wait_until_finished()

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def restore_latest(self, target: Any) -> tuple[int, Any] | None:
        """The newest checkpoint that restores cleanly into `target`'s structure, else None.

        A corrupt or half-written step is skipped (and reported) in favour of the one before it.
        """
        for step in reversed(self.steps()):
            try:
                restored = self.manager.restore(step, args=self._ocp.args.StandardRestore(target))
            except Exception as err:  # orbax raises many types for damaged files
                print(f"checkpoint at step {step} is unusable ({type(err).__name__}); trying older")
                continue
            import jax

            restored = jax.tree.unflatten(jax.tree.structure(target), jax.tree.leaves(restored))
            return step, restored
        return None

    def close(self) -> None:
        self.manager.close()


def write_psi(path: Path, x, curves, v) -> None:
    """psi.csv: x, each state's PINN psi and reference (normalised, sign-aligned), V."""
    columns = [x] + [c for _, psi, exact in curves for c in (psi, exact)] + [v]
    names = ["x"] + [f"{k}{n}" for n, _, _ in curves for k in ("psi_", "psi_exact_")] + ["V"]
    if len(curves) == 1:
        names = ["x", "psi", "psi_exact", "V"]
    np.savetxt(
        path,
        np.column_stack(columns),
        delimiter=",",
        header=",".join(names),
        comments="",
        fmt="%.17g",
    )
