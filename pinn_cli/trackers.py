"""Experiment trackers (`logger=tensorboard`, `logger=mlflow`, both): the run's metrics, config,
summary, figures and folder, mirrored where researchers browse their runs.

The run folder stays the record: a tracker that is not installed, not reachable or fails midway
costs one warning line and is dropped; the run goes on writing its folder. Trackers are an
optional extra (`pip install 'pinn-run[trackers]'`); their packages are imported only when chosen.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from pathlib import Path

from .outputs import LOCK

log = logging.getLogger("pinn_run")

TENSORBOARD_DIR = "tensorboard"  # RUN/tensorboard/: the event files
MLFLOW_STORE = "mlruns"  # the default file store, beside outputs/ in the folder pinn-run starts in
# Columns of metrics.csv that index a row rather than measure something.
INDEX_COLUMNS = frozenset({"state", "window", "member", "step", "stage"})
# MLflow's limits per log_batch call.
BATCH_PARAMS, BATCH_METRICS = 100, 1000
# An MLflow server that is down should cost seconds, not minutes of retries.
MLFLOW_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
INSTALL_HINT = "install it with pip install 'pinn-run[trackers]'"
# Keys of summary.json that are not results: logged as params (the config), not as metrics.
CONFIG_ECHOES = frozenset({"provenance", "potential", "seed", "state", "initial", "time"})


def flatten(tree, prefix: str = "") -> Iterator[tuple[str, object]]:
    """(dotted key, leaf) for every leaf of nested dicts and lists (list items by index)."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from flatten(value, f"{prefix}{key}.")
    elif isinstance(tree, list | tuple):
        for i, value in enumerate(tree):
            yield from flatten(value, f"{prefix}{i}.")
    else:
        yield prefix[:-1], tree


def numbers(tree) -> dict[str, float]:
    """The finite numeric leaves of `tree` by dotted key (booleans left out)."""
    out = {}
    for key, value in flatten(tree):
        if isinstance(value, int | float) and not isinstance(value, bool):
            if math.isfinite(value):
                out[key] = float(value)
    return out


def row_scalars(record: dict) -> tuple[str, int, dict[str, float]]:
    """A metrics row as (prefix, step, {name: value}): the prefix names the state, time window
    or member the row belongs to ("state0", "window3", "state0/member1")."""
    parts = [f"{k}{record[k]}" for k in ("state", "window") if record.get(k) not in (None, "")]
    if record.get("member") not in (None, ""):
        parts.append(f"member{record['member']}")
    values = {}
    for key, value in record.items():
        if key in INDEX_COLUMNS or isinstance(value, str | bool) or value is None:
            continue
        value = float(value)  # Python, NumPy or 0-d JAX numbers
        if math.isfinite(value):
            values[key] = value
    return "/".join(parts) or "run", int(record["step"]), values


def error_series(rows: list[dict], summary: dict) -> Iterator[tuple[str, int, dict[str, float]]]:
    """The learned energy's and the Rayleigh quotient's relative errors at every logged step,
    against the reference energy each state was judged by (known only once training is over)."""
    references = {s["n"]: s["energy"].get("reference") for s in summary.get("states", [])}
    for record in rows:
        reference = references.get(record.get("state"))
        if not reference or "member" in record:
            continue
        prefix, step, values = row_scalars(record)
        errors = {
            f"{k}_rel_error": abs(values[k] - reference) / abs(reference)
            for k in ("energy", "rayleigh")
            if k in values
        }
        if errors:
            yield prefix, step, errors


def mlflow_status(status: str) -> str:
    """MLflow's run status for a pinn-run status (the exact one goes into the `status` tag)."""
    return {"completed": "FINISHED", "interrupted": "KILLED"}.get(status, "FAILED")


class Tracker:
    """What each tracker does: rows as they are logged, the outcome once the run is judged."""

    name = "tracker"

    def rows(self, records: list[tuple[str, int, dict[str, float]]]) -> None: ...

    def errors(self, records: list[tuple[str, int, dict[str, float]]]) -> None:
        """The relative errors against the reference at every logged step (after training)."""
        self.rows(records)

    def finish(self, summary: dict, run_dir: Path, step: int) -> None: ...

    def fail(self, status: str, reason: str) -> None: ...


class TensorBoard(Tracker):
    """Event files in RUN/tensorboard/ (tensorboardX: no TensorFlow needed).

    Each state (time window, member) is its own TensorBoard run, RUN/tensorboard/state0/ ...:
    its steps start at 0 again, and TensorBoard's reader takes a step that goes back within one
    run as a restart and drops what came after. The relative errors, known only at the end, go
    to state0/judged/ for the same reason; the config, the summary and the figures to the root.
    """

    name = "tensorboard"

    def __init__(self, run_dir: Path, config: dict):
        import yaml

        self.root = Path(run_dir) / TENSORBOARD_DIR
        self.writers: dict[str, object] = {}
        text = yaml.safe_dump(config, sort_keys=False)
        self._writer("").add_text("config", "```\n" + text + "\n```", 0)
        self._writer("").flush()

    def _writer(self, run: str):
        from tensorboardX import SummaryWriter

        if run not in self.writers:
            self.writers[run] = SummaryWriter(logdir=str(self.root / run))
        return self.writers[run]

    def _scalars(self, records, suffix: str = "") -> None:
        for prefix, step, values in records:
            writer = self._writer(prefix + suffix)
            for key, value in values.items():
                writer.add_scalar(key, value, step)
        for writer in self.writers.values():
            writer.flush()

    def rows(self, records):
        self._scalars(records)

    def errors(self, records):
        self._scalars(records, "/judged")

    def finish(self, summary, run_dir, step):
        import matplotlib.image

        root = self._writer("")
        for key, value in numbers(_results(summary)).items():
            root.add_scalar(f"summary/{key}", value, 0)
        for png in sorted(run_dir.glob("*.png")):
            image = matplotlib.image.imread(png)
            root.add_image(f"figures/{png.stem}", image[..., :3], 0, dataformats="HWC")
        root.add_text("status", summary.get("status", "unknown"), 0)
        self.close()

    def fail(self, status, reason):
        self._writer("").add_text("status", f"{status}: {reason}", 0)
        self.close()

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()


class MLflow(Tracker):
    """One MLflow run per pinn-run run, in the experiment named after the sweep (or
    logger.experiment): params = the flattened config, metrics per logged step, the summary's
    numbers, tags (config hash, potential, status), the run folder as artifacts."""

    name = "mlflow"

    def __init__(self, uri: str, experiment: str, run_name: str, config: dict, tags: dict):
        for key, value in MLFLOW_HTTP_DEFAULTS.items():
            os.environ.setdefault(key, value)
        if uri.startswith("file:"):
            # Per-run folders need no database, so parallel sweep jobs never contend for a lock;
            # MLflow 3 keeps this store in maintenance mode behind this switch.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=uri)
        experiment_id = self._experiment(experiment)
        self.run_id = self.client.create_run(
            experiment_id, run_name=run_name, tags=tags
        ).info.run_id
        params = [Param(k, str(v)[:6000]) for k, v in flatten(config)]
        for i in range(0, len(params), BATCH_PARAMS):
            self.client.log_batch(self.run_id, params=params[i : i + BATCH_PARAMS])

    def _experiment(self, name: str) -> str:
        """The experiment's id, created by whichever job of a sweep comes first."""
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(name)
        except Exception:  # another job of the sweep created it a moment ago
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def _metrics(self, metrics) -> None:
        for i in range(0, len(metrics), BATCH_METRICS):
            self.client.log_batch(self.run_id, metrics=metrics[i : i + BATCH_METRICS])

    def rows(self, records):
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._metrics(
            [
                Metric(f"{prefix}/{k}", v, now, step)
                for prefix, step, values in records
                for k, v in values.items()
            ]
        )

    def finish(self, summary, run_dir, step):
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        values = numbers(_results(summary))
        self._metrics([Metric(f"summary/{k}", v, now, step) for k, v in values.items()])
        for entry in sorted(run_dir.iterdir()):
            if entry.name == LOCK:
                continue
            if entry.is_dir():
                self.client.log_artifacts(self.run_id, str(entry), artifact_path=entry.name)
            else:
                self.client.log_artifact(self.run_id, str(entry))
        status = summary.get("status", "unknown")
        self.client.set_tag(self.run_id, "status", status)
        self.client.set_terminated(self.run_id, mlflow_status(status))

    def fail(self, status, reason):
        self.client.set_tag(self.run_id, "status", status)
        self.client.set_tag(self.run_id, "stop_reason", reason[:5000])
        self.client.set_terminated(self.run_id, mlflow_status(status))


def _results(summary: dict) -> dict:
    """The summary's results: without provenance and the settings it repeats from the config."""
    return {k: v for k, v in summary.items() if k not in CONFIG_ECHOES}


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]


class Trackers:
    """The chosen trackers as one: each call reaches every tracker still working; one that
    raises is dropped with a warning line, and the run goes on."""

    def __init__(self, trackers: list[Tracker]):
        self.live = trackers
        self.seen: list[dict] = []  # every metrics row, for the error series at the end

    def _each(self, what: str, call) -> None:
        for tracker in list(self.live):
            try:
                call(tracker)
            except Exception as err:
                log.warning(
                    "logger=%s: %s failed (%s); the run goes on without it (its folder has "
                    "everything)",
                    *(tracker.name, what, _short(err)),
                )
                self.live.remove(tracker)

    def rows(self, records: list[dict]) -> None:
        if records and self.live:
            self.seen += records
            scalars = [row_scalars(r) for r in records]
            self._each("logging metrics", lambda t: t.rows(scalars))

    def finish(self, summary: dict, run_dir: Path) -> None:
        series = list(error_series(self.seen, summary))
        self._each("logging the relative errors", lambda t: t.errors(series))
        step = max((int(r["step"]) for r in self.seen), default=0)
        self._each("logging the outcome", lambda t: t.finish(summary, Path(run_dir), step))
        self.live = []

    def fail(self, status: str, reason: str) -> None:
        self._each("recording the failure", lambda t: t.fail(status, reason))
        self.live = []


class TrackedMetrics:
    """metrics.csv's writer, with every row also handed to the trackers (in batches)."""

    FLUSH_ROWS = 200

    def __init__(self, writer, trackers: Trackers):
        self.writer, self.trackers = writer, trackers
        self._pending: list[dict] = []

    def truncate_after(self, state: int, step: int, key: str = "state") -> None:
        self.writer.truncate_after(state, step, key)

    def write(self, record: dict) -> None:
        self.writer.write(record)
        self._pending.append(record)
        if len(self._pending) >= self.FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        self.trackers.rows(pending)

    def close(self) -> None:
        self.writer.close()


def default_uri() -> str:
    """A file store in mlruns/ of the folder pinn-run was started in (beside outputs/)."""
    return (Path.cwd() / MLFLOW_STORE).resolve().as_uri()


def _open_one(name: str, make) -> Tracker | None:
    try:
        return make()
    except ImportError as err:
        package = {"tensorboard": "tensorboardX", "mlflow": "mlflow"}[name]
        log.warning(
            "logger=%s: %s is not installed (%s); %s. The run goes on without it",
            *(name, package, _short(err), INSTALL_HINT),
        )
    except Exception as err:
        log.warning(
            "logger=%s: could not start (%s); the run goes on without it", name, _short(err)
        )
    return None


def open_trackers(settings, run_dir: Path, config: dict, tags: dict) -> Trackers:
    """The trackers `settings` (config.LoggerConfig) chooses, started for this run."""
    made: list[Tracker | None] = []
    if settings.tensorboard:
        made.append(_open_one("tensorboard", lambda: TensorBoard(Path(run_dir), config)))
    if settings.mlflow:
        uri = settings.tracking_uri or default_uri()
        experiment = settings.experiment or "pinn-run"
        run_name = settings.run_name or Path(run_dir).name
        tags = {**tags, "run_dir": str(run_dir)}
        made.append(_open_one("mlflow", lambda: MLflow(uri, experiment, run_name, config, tags)))
    return Trackers([t for t in made if t is not None])
