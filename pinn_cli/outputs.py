"""The run folder: metrics.csv, summary.json, orbax checkpoints, and what resume reads back."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

import jax

METRICS = "metrics.csv"
SUMMARY = "summary.json"
CHECKPOINTS = "checkpoints"


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
            restored = jax.tree.unflatten(jax.tree.structure(target), jax.tree.leaves(restored))
            return step, restored
        return None

    def close(self) -> None:
        self.manager.close()
