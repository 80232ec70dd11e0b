"""The run folder: every file name in it, metrics.csv, summary.json, psi.csv, orbax checkpoints,
and what resume reads back. Every module that reads or writes a run folder takes the names from
here. JAX is imported only by the checkpoint manager, so readers (pinn-report) stay light.
"""

from __future__ import annotations

import csv
import errno
import functools
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

METRICS = "metrics.csv"
SUMMARY = "summary.json"
CHECKPOINTS = "checkpoints"
PSI = "psi.csv"  # x, each state's psi and reference, V
PSI_NPZ = "psi.npz"  # 2-D runs: x, y, psi (states, ny, nx), V (ny, nx), energies
LOG = "pinn_run.log"  # Hydra's job log (hydra.job.name = pinn_run)
WAVEFUNCTION_PNG = "wavefunction.png"
ENERGY_PNG = "energy.png"
LOSS_PNG = "loss.png"
PSI_T = "psi_t.npz"  # equation=tdse: x, t, psi and psi_ref (T, X) complex, V
OBSERVABLES = "observables.csv"  # equation=tdse: t, norm, <x>, <H> of network and reference
DENSITY_PNG = "density.png"
SNAPSHOTS_PNG = "snapshots.png"
OBSERVABLES_PNG = "observables.png"
DENSITY_GIF = "density.gif"
MEMBERS = "members"  # members/<i>/ for each network of an ensemble
PROFILE = "profile"
HYDRA_DIR = ".hydra"
HYDRA_CONFIG = ".hydra/config.yaml"
HYDRA_OVERRIDES = ".hydra/overrides.yaml"
LOCK = ".pinn-run.lock"  # held while a process works in the run folder
MULTIRUN_YAML = "multirun.yaml"  # Hydra's record of a sweep, in the sweep folder
# Written from the trained state after training; a resumed run writes them again.
TIME_FILES = (PSI_T, OBSERVABLES, DENSITY_PNG, SNAPSHOTS_PNG, OBSERVABLES_PNG, DENSITY_GIF)
REGENERATED = (PSI, PSI_NPZ, WAVEFUNCTION_PNG, ENERGY_PNG, LOSS_PNG, *TIME_FILES)
# What a run leaves in its folder: a folder holding any of these holds a run.
RUN_FILES = (
    SUMMARY,
    METRICS,
    CHECKPOINTS,
    PSI,
    PSI_NPZ,
    LOG,
    WAVEFUNCTION_PNG,
    ENERGY_PNG,
    LOSS_PNG,
    *TIME_FILES,
    MEMBERS,
    PROFILE,
    HYDRA_DIR,
)


def checkpoint_dir(states: int, n: int) -> str:
    """checkpoints/ for a ground-state run, checkpoints/state_n/ for each state of state > 0."""
    return CHECKPOINTS if states == 0 else f"{CHECKPOINTS}/state_{n}"


def member_dir(i: int) -> str:
    return f"{MEMBERS}/{i}"


class MetricsWriter:
    """Appends one row per log record; the header comes from the first record written. The
    file stays open between rows and is flushed after each (a row per training block: opening
    it per row cost ~1 ms of each ~5 ms block overhead); rewriting it closes it first."""

    def __init__(self, path: Path, fields: list[str] | None = None):
        self.path = Path(path)
        self._fields = fields  # None: the first record's keys
        self._file = None
        self._writer: csv.DictWriter | None = None

    def truncate_after(self, state: int, step: int, key: str = "state") -> None:
        """Drop the rows of `state` (or time window; column `key`) after `step`, where its
        restored checkpoint is: a resumed run's metrics read as one uninterrupted run. The rows
        of other states stay (each later state truncates its own when it is restored)."""
        self.close()
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
            writer.writerows(r for r in rows if int(r[key]) != state or int(r["step"]) <= step)

    def write(self, record: dict) -> None:
        if self._fields is None:
            self._fields = list(record)
        if self._file is None:
            self._file = self.path.open("a", newline="")
            self._writer = csv.DictWriter(self._file, self._fields, extrasaction="ignore")
            if self._file.tell() == 0:
                self._writer.writeheader()
        self._writer.writerow(record)
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file, self._writer = None, None


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
    try:
        tmp.write_text(json.dumps(_clean(data), indent=2, sort_keys=False) + "\n")
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)  # a half-written file helps nobody, on a full disk least
        raise


class Checkpoints:
    """orbax-checkpoint manager over `run_dir/checkpoints`: atomic steps, the last few kept.
    orbax (~0.3 s to import) is loaded when the first checkpoint is written or read.

    `save` hands the state to one writer thread and returns: training goes on while the step
    is written (a default 1-D run saved for 0.25-0.4 s on its main thread, the first save
    waiting for orbax's import). Saves are written in order, one at a time; the next `save`,
    `steps`, `restore_latest` and `close` first wait for the one in flight and raise its error
    (a full disk) there. The state's arrays are immutable, so training cannot change what is
    being written. A step is on disk once orbax commits it (atomically): a process killed
    mid-write leaves the previous steps."""

    def __init__(self, run_dir: Path, keep: int, subdir: str = CHECKPOINTS):
        self.directory = Path(run_dir).absolute() / subdir
        self.keep = keep
        self._pending = None  # the save in flight (a concurrent.futures.Future)

    @functools.cached_property
    def _ocp(self):
        import orbax.checkpoint as ocp

        return ocp

    @functools.cached_property
    def manager(self):
        ocp = self._ocp
        _drop_closed_loop_reports()
        # orbax writes synchronously inside the writer thread: its own background threads would
        # report a failed write (a full disk) by logging tracebacks and could hang at exit
        options = ocp.CheckpointManagerOptions(
            max_to_keep=self.keep, create=True, enable_async_checkpointing=False
        )
        return ocp.CheckpointManager(
            self.directory,
            options=options,
            item_handlers=ocp.StandardCheckpointHandler(),  # also reads a step's shapes
        )

    @functools.cached_property
    def _writer(self):
        from concurrent.futures import ThreadPoolExecutor

        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint")

    def save(self, step: int, state: Any) -> None:
        """Write `state` as `step` in the writer thread, after the save before it."""
        self.wait()
        self._pending = self._writer.submit(self._write, step, state)

    def _write(self, step: int, state: Any) -> None:
        if step in self.manager.all_steps():
            return
        _check_room(self.directory, state)
        try:
            self.manager.save(step, args=self._ocp.args.StandardSave(state))
            self.manager.wait_until_finished()
        except Exception as err:
            _remove_partial(self.directory)
            if not isinstance(err, OSError) and _NO_SPACE in str(err):
                # tensorstore reports a full disk as ValueError('RESOURCE_EXHAUSTED: ...')
                raise OSError(errno.ENOSPC, _NO_SPACE, str(self.directory)) from err
            raise

    def wait(self) -> None:
        """Until the save in flight is on disk; raises its error."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def steps(self) -> list[int]:
        self.wait()
        return sorted(self.manager.all_steps())

    def restore_latest(self, target: Any) -> tuple[int, Any] | None:
        """The newest checkpoint that restores cleanly into `target`'s structure, else None.

        A corrupt or half-written step is skipped (and reported) in favour of the one before it.
        Raises CheckpointMismatch when there are checkpoints but none has the target's shapes
        (the run's config was edited), before asking orbax to restore one.
        """
        mismatched = []
        for step in reversed(self.steps()):
            difference = self._shape_difference(step, target)
            if difference:
                mismatched.append(difference)
                continue
            try:
                restored = self.manager.restore(step, args=self._ocp.args.StandardRestore(target))
            except Exception as err:  # orbax raises many types for damaged files
                print(f"checkpoint at step {step} is unusable ({type(err).__name__}); trying older")
                continue
            import jax

            restored = jax.tree.unflatten(jax.tree.structure(target), jax.tree.leaves(restored))
            return step, restored
        if mismatched and len(mismatched) == len(self.steps()):
            raise CheckpointMismatch(
                f"the checkpoints in {self.directory} do not match the run's config: "
                f"{mismatched[0]}"
            )
        return None

    def _shape_difference(self, step: int, target: Any) -> str:
        """'' when the step's saved arrays have the target's paths and shapes, else the first
        difference. A step whose metadata cannot be read is left to the restore to judge."""
        try:
            saved = _shapes(self.manager.item_metadata(step))
        except Exception:  # damaged metadata: the restore will report and skip it
            return ""
        wanted = _shapes(target)
        for path in sorted(set(saved) | set(wanted)):
            if saved.get(path) != wanted.get(path):
                return f"{'.'.join(path)} is {saved.get(path)} there, {wanted.get(path)} now"
        return ""

    def close(self) -> None:
        """Waits for the save in flight (raising its error), then closes the manager."""
        try:
            self.wait()
        finally:
            if "_writer" in self.__dict__:
                self._writer.shutdown()
            if "manager" in self.__dict__:  # opened
                self.manager.close()


class CheckpointMismatch(ValueError):
    """Checkpoints exist but none fits the run's parameter shapes."""


_NO_SPACE = os.strerror(errno.ENOSPC)  # "No space left on device"
# room a step needs beyond its arrays: orbax's metadata, manifest and OCDBT files (~20 kB for a
# small network), doubled for safety
_CHECKPOINT_OVERHEAD = 64 * 1024


def _check_room(directory: Path, state: Any) -> None:
    """Raises OSError(ENOSPC) before orbax starts a step the disk cannot take: orbax's own
    failure part-way through a write leaves its threads and temporary folders behind."""
    import jax

    needed = 2 * sum(np.asarray(leaf).nbytes for leaf in jax.tree.leaves(state))
    needed += _CHECKPOINT_OVERHEAD
    directory.mkdir(parents=True, exist_ok=True)
    if shutil.disk_usage(directory).free < needed:
        raise OSError(errno.ENOSPC, _NO_SPACE, str(directory))


@functools.cache  # once per process: the hook is not wrapped again for every manager
def _drop_closed_loop_reports() -> None:
    """When a write fails part-way (a full disk), tensorstore's callbacks still pending find
    orbax's event loop closed and report RuntimeError('Event loop is closed') as unraisable
    exceptions, bare tracebacks on stderr while the run ends with the write's own error. Those
    reports are dropped; any other unraisable exception is reported as before."""
    import sys

    previous = sys.unraisablehook

    def hook(unraisable) -> None:
        err = unraisable.exc_value
        if not (isinstance(err, RuntimeError) and str(err) == "Event loop is closed"):
            previous(unraisable)

    sys.unraisablehook = hook


def _remove_partial(directory: Path) -> None:
    """Removes the temporary folders a failed write left, so the disk keeps its room for
    summary.json."""
    for partial in directory.glob("*.orbax-checkpoint-tmp*"):
        shutil.rmtree(partial, ignore_errors=True)


def _shapes(tree) -> dict[tuple[str, ...], tuple[int, ...]]:
    """{path as names: shape} of a pytree of arrays or of orbax's array metadata."""
    import jax

    def name(key) -> str:
        for attr in ("key", "name", "idx"):
            if hasattr(key, attr):
                return str(getattr(key, attr))
        return str(key)

    return {
        tuple(name(k) for k in path): tuple(getattr(leaf, "shape", ()))
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
    }


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


def write_psi_2d(path: Path, x, y, psi, v, energies) -> None:
    """psi.npz: x (nx,), y (ny,), psi (states, ny, nx) normalised on the domain (NaN outside a
    disk), V (ny, nx) and the states' energies."""
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, x=x, y=y, psi=psi, V=v, energies=np.asarray(energies, float))
    os.replace(tmp, path)


def write_psi_t(path: Path, x, t, psi, psi_ref, v) -> None:
    """psi_t.npz: x (X,), t (T,), psi and psi_ref complex (T, X), V (X,)."""
    with open(path, "wb") as f:
        np.savez_compressed(f, x=x, t=t, psi=psi, psi_ref=psi_ref, v=v)


def write_observables(path: Path, t, network: dict, reference: dict) -> None:
    """observables.csv: per time, norm, <x> and <H> of the network and of the reference."""
    names = ("norm", "x", "energy")
    with Path(path).open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["t", *names, *(f"{n}_ref" for n in names)])
        for i, ti in enumerate(t):
            row = [network[n][i] for n in names] + [reference[n][i] for n in names]
            writer.writerow([repr(float(ti)), *(repr(float(a)) for a in row)])
