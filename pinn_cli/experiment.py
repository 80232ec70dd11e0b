"""One experiment, end to end: assemble from a validated Config, train each state, judge, write
the run folder, and return the numbers.

Importable and testable without Hydra: `run(cfg, run_dir) -> RunResult`.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import threading
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import judging, outputs, provenance, stopping, trackers
from .assemble import Built, build, potential_from, state_parity
from .config import Config, ConfigError
from .judging import StateRun, network_values
from .process import EXIT_DIVERGED, EXIT_SUSPECT, ProfileWindow, Progress, StopFlag

log = logging.getLogger("pinn_run")
# orbax logs every file it writes at INFO, and a failed write (a full disk) as tracebacks from
# several threads; its errors reach the user as the raised error, in one line
logging.getLogger("absl").setLevel(logging.CRITICAL)
logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)  # "no TPU found" at INFO


@dataclass
class RunResult:
    """What a run returns: its exit code and summary.json's content."""

    code: int
    summary: dict

    @property
    def objective(self) -> float | None:
        """The sweep objective: the relative error of the energy estimate (of state n), or for
        equation=tdse the relative L2 error of psi over space and time."""
        return objective(self.summary)


def objective(summary: dict) -> float | None:
    if summary.get("equation") == "tdse":
        return summary["wavefunction"]["l2_error"]
    return summary["energy"]["rel_error"]


def run(cfg: Config, run_dir: Path, *, t_start: float | None = None, resume: bool = False):
    """Train and judge states 0..cfg.state into `run_dir`; returns a RunResult."""
    with run_frame(cfg, run_dir, _metric_fields(cfg), t_start) as frame:
        runs, basis = _train_states(cfg, frame, resume)
        if cfg.train.ensemble > 1:
            summary = judging.judge_ensemble(cfg, runs[0], frame.run_dir)
        else:
            summary = judging.judge_states(cfg, runs, basis, frame.run_dir)
        write_summary(frame, summary, [r.result for r in runs])
        _log_summary(summary)
    return RunResult(exit_code(cfg, runs[-1].result.status, summary, frame.stop), summary)


@dataclass
class Frame:
    """What every kind of run sets up before training: its folder, metrics.csv, the signal
    flag, the provenance block and when it started."""

    run_dir: Path
    metrics: outputs.MetricsWriter | trackers.TrackedMetrics
    stop: StopFlag
    provenance: dict
    t_start: float
    trackers: trackers.Trackers
    preloading: threading.Thread | None = None
    # (potential, states) of a 2-D run: its reference spectrum is computed during training
    reference: tuple | None = None

    def preload(self) -> None:
        """Import what judging and the figures need (matplotlib ~0.9 s, SciPy) in a daemon
        thread, once per run. Called when the training programs are compiled: training
        spends its time in XLA, which releases the GIL, so the imports cost neither the
        start-up (where they would compete with the Python of building and tracing) nor the
        time after training. A 2-D run's reference spectrum (seconds for the spectral-element
        solver) is computed there too, after the imports; judging waits for it
        (`evaluation2d.spectrum_for` holds a lock). A failure here is left for the real import
        or the judge to report."""
        if self.preloading is None:
            self.preloading = threading.Thread(
                target=_load_outputs, args=(self.reference,), name="preload", daemon=True
            )
            self.preloading.start()


def _load_outputs(reference: tuple | None = None) -> None:
    with suppress(Exception):
        import orbax.checkpoint  # noqa: F401  (the first checkpoint's)
        import scipy.linalg  # noqa: F401

        from . import evaluation, plots  # noqa: F401

        if reference is not None:
            from . import evaluation2d

            evaluation2d.spectrum_for(*reference)


@contextmanager
def run_frame(cfg: Config, run_dir: Path, fields: list[str], t_start: float | None = None):
    """JAX configured, provenance logged, metrics.csv opened; inside it the signal handlers are
    installed until the last file is written (a signal after training lets the outputs finish,
    then the run exits with the signal's code), and a file that cannot be written is recorded
    in summary.json."""
    t_start = time.perf_counter() if t_start is None else t_start
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    configure_jax(cfg)
    provenance_block = provenance.collect(dataclasses.asdict(cfg), sys.argv)
    log.info("config hash %s", provenance_block["config_hash"])
    metrics = outputs.MetricsWriter(run_dir / outputs.METRICS, fields)
    mirror = open_trackers(cfg, run_dir, provenance_block)
    stop = StopFlag()
    with stop.installed(), failure_recorded(cfg, run_dir, provenance_block, mirror):
        tee = trackers.TrackedMetrics(metrics, mirror) if mirror.live else metrics
        yield Frame(run_dir, tee, stop, provenance_block, t_start, mirror)


def open_trackers(cfg: Config, run_dir: Path, provenance_block: dict) -> trackers.Trackers:
    """The experiment trackers cfg.logger chooses (none by default), started for this run."""
    tags = {
        "config_hash": provenance_block["config_hash"],
        "potential": cfg.potential.name,
        "equation": cfg.equation.name,
        "status": "running",
    }
    return trackers.open_trackers(cfg.logger, run_dir, dataclasses.asdict(cfg), tags)


def write_summary(frame: Frame, summary: dict, results: list) -> None:
    """summary.json, with the provenance and the timing of the fits (train.FitResult)."""
    summary["provenance"] = frame.provenance
    now = time.perf_counter()
    wall = now - frame.t_start
    train_s = sum(r.train_s for r in results)
    ends = [r.last_step_at for r in results if r.last_step_at is not None]
    summary["timing"].update(
        # Imports, configuration, building and the compilation of the first block: everything
        # before the first training step (later stages compile when they start).
        startup_s=(results[0].first_step_at or now) - frame.t_start,
        compile_s=sum(r.compile_s for r in results),
        # inside compiled training blocks; from the end of the last block to this summary
        train_s=train_s,
        outputs_s=now - max(ends) if ends else wall,
        outside_training=1.0 - train_s / wall if wall > 0 else 0.0,
        wall_s=wall,
    )
    outputs.write_json_atomic(frame.run_dir / outputs.SUMMARY, summary)
    if isinstance(frame.metrics, trackers.TrackedMetrics):
        frame.metrics.flush()
    frame.metrics.close()
    frame.trackers.finish(summary, frame.run_dir)


def exit_code(cfg: Config, status: str, summary: dict, stop: StopFlag) -> int:
    """The process's exit code: diverged, interrupted, suspect (checks.strict) or 0; a signal
    after training still exits with the signal's code, once the outputs are written."""
    code = {"diverged": EXIT_DIVERGED, "interrupted": stop.exit_code}.get(status, 0)
    if code == 0 and summary["status"] == "suspect" and cfg.checks.strict:
        code = EXIT_SUSPECT
    if stop() and code == 0:
        log.info("stopped by a signal after training; the outputs were written first")
        code = stop.exit_code
    return code


@contextmanager
def failure_recorded(cfg: Config, run_dir: Path, provenance_block: dict, mirror=None):
    """A file that cannot be written (a full disk, a folder made read-only) ends the run; before
    the error goes on to the caller, summary.json records status "failed" and why, where the
    disk still takes it. The checkpoints written so far stay: resume continues from them. Any
    error that ends the run is recorded in the trackers as a failed run."""
    try:
        yield
    except BaseException as err:
        if mirror is not None:
            mirror.fail("failed", f"{type(err).__name__}: {err}")
        if not isinstance(err, OSError):
            raise
        failed = {
            "status": "failed",
            "stop_reason": f"could not write {err.filename or run_dir}: {err.strerror or err}",
            "seed": cfg.seed,
            "run_dir": str(run_dir),
            "provenance": provenance_block,
        }
        for name in outputs.REGENERATED:  # maybe partial; resume writes them anew
            with suppress(OSError):
                (run_dir / name).unlink(missing_ok=True)
        with suppress(OSError):
            outputs.write_json_atomic(run_dir / outputs.SUMMARY, failed)
        raise


def cache_folder(setting: str | None) -> Path | None:
    """The compilation cache's folder, or None when it is off: `compile_cache=null`, and also
    `false`/`off`/`none`, which Hydra hands to a string field as the text "False" etc."""
    if not setting or setting.strip().lower() in ("false", "off", "none", "null", "0"):
        return None
    return Path(setting).expanduser()


def configure_jax(cfg: Config) -> None:
    import jax

    from . import exported

    jax.config.update("jax_enable_x64", cfg.precision == "float64")
    folder = cache_folder(cfg.compile_cache)
    if folder is not None:
        jax.config.update("jax_compilation_cache_dir", str(folder))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    exported.configure(None if folder is None else folder / exported.SUBFOLDER)
    warning = provenance.precision_warning(cfg.precision)
    if warning:
        log.warning(warning)


def _metric_fields(cfg: Config) -> list[str]:
    terms = ["residual"] + (["norm"] if cfg.loss.normalization == "penalty" else [])
    terms += ["ritz"] if cfg.state > 0 else []
    terms += ["slope_recovery"] if cfg.model.slope_recovery > 0 else []
    fields = ["state", "step", "stage", "loss", *terms, "energy", "rayleigh", "lr", "elapsed_s"]
    fields += ["cg_iters"] if cfg.optim.refine == "lm" and cfg.optim.solver != "explicit" else []
    return (["member"] if cfg.train.ensemble > 1 else []) + fields


def _train_states(cfg: Config, frame: Frame, resume: bool):
    """Train states 0..cfg.state in order, each orthogonal to those below it; stop early if one
    does not complete. Returns the runs and the basis of the finished states."""
    from .states import Basis

    runs: list[StateRun] = []
    basis, potential = None, potential_from(cfg)
    for n in range(cfg.state + 1):
        parity = state_parity(cfg, potential, n)
        lower, carrier = basis.lower(parity) if basis else None, _carrier(cfg, runs)
        built = build(cfg, n, lower, carrier)
        basis = basis or Basis(np.asarray(built.problem.w, float))
        if n == 0 and potential.dim == 2 and cfg.train.ensemble == 1:
            frame.reference = (built.potential, cfg.state + 1)  # what judging will ask for
        if n == 0 and parity is not None:
            _log_parity(built.problem.psi.mirror, cfg.state, built.problem.x.shape[0])
        result = train_one(cfg, n, built, frame, resume)
        for attempt in range(1, cfg.train.retries + 1):
            scale = max(abs(stopping.last_energy(result)), built.problem.energy_scale)
            below = [r.result for r in runs]
            if potential.dim != 1 or not stopping.state_stalled(result, below, scale):
                break
            built, result = _retrained(cfg, n, (built, result), (lower, carrier), frame, attempt)
        runs.append(StateRun(n, built, result))
        if result.status != "completed" or cfg.train.ensemble > 1 or n == cfg.state:
            break  # the judge adds the last state to the basis with its own evaluation
        basis.add(*network_values(built, result.params, built.problem.x), parity=parity)
    return runs, basis


RETRY_SEED = 1000  # attempt k starts from the network of seed + RETRY_SEED * k


def _retrained(cfg: Config, n: int, first: tuple, inputs: tuple, frame: Frame, attempt: int):
    """(built, result) of state n trained again from seed + RETRY_SEED * attempt, or `first`
    where that ends at a higher loss. The kept attempt's checkpoints are the state's (a resume
    continues from them), its rows metrics.csv's; its stop reason says what happened."""
    import shutil

    built, result = first
    seed = cfg.seed + RETRY_SEED * attempt
    loss = result.final_loss[0]
    log.warning(
        "state %d: the refinement stalled at loss %.3e (%s), far above the states below it; "
        "training it again from the network of seed %d",
        n,
        loss,
        result.stop_reason,
        seed,
    )
    home = outputs.checkpoint_dir(cfg.state, n)
    trial = f"{home}_attempt"
    frame.metrics.truncate_after(n, -1)
    again = build(dataclasses.replace(cfg, seed=seed), n, *inputs)
    retried = train_one(cfg, n, again, frame, False, sub=trial)
    better = retried.final_loss[0] < loss
    shutil.rmtree(frame.run_dir / (home if better else trial), ignore_errors=True)
    if better:
        (frame.run_dir / trial).rename(frame.run_dir / home)
        retried.stop_reason += (
            f" (attempt {attempt + 1}, seed {seed}; the last stalled at {loss:.3e})"
        )
        return again, retried
    frame.metrics.truncate_after(n, -1)
    for record in result.history:
        frame.metrics.write({"state": n, **record})
    log.info(
        "state %d: attempt %d ended at %.3e; keeping the earlier one",
        n,
        attempt + 1,
        retried.final_loss[0],
    )
    return built, result


def _log_parity(mirror: tuple[bool, ...], top: int, nodes: int) -> None:
    axes = " and ".join("xy"[i] for i, m in enumerate(mirror) if m)
    which = "each state n with parity (-1)^n" if top > 0 else "state 0 even"
    log.info(
        "V is symmetric about the domain's centre in %s: %s there by construction, training "
        "on %d nodes of the upper half",
        axes,
        which,
        nodes,
    )


def _carrier(cfg: Config, runs: list[StateRun]):
    """The trained ground state's decay for state len(runs) > 0 (model.carrier), or None."""
    from . import assemble, model

    if not runs:
        return None
    ground = runs[0].built
    power = assemble.carrier_power(cfg, ground.potential, len(runs))
    if power == 0.0 or ground.problem.psi.output != "exp":
        return None
    return model.Carrier(ground.problem.psi, runs[0].result.params["net"], power)


def train_one(
    cfg: Config,
    n: int,
    built: Built,
    frame: Frame,
    resume: bool,
    *,
    sub: str | None = None,
    label: str = "state",
):
    """Fit state (or time window) n, checkpointing into its own folder `sub` of the run folder
    (default: outputs.checkpoint_dir); metrics rows carry n in the column `label` and the
    seconds since the run started in elapsed_s."""
    from . import train

    run_dir, metrics = frame.run_dir, frame.metrics
    sub = sub or outputs.checkpoint_dir(cfg.state, n)
    checkpoints = outputs.Checkpoints(run_dir, keep=cfg.train.keep_checkpoints, subdir=sub)
    state = built.state
    if resume:
        state = _resumed(checkpoints, state, n == 0)
        metrics.truncate_after(n, int(state.step), key=label)
    total = built.plan.steps + built.plan.refine_steps
    progress = Progress(n, total, int(state.step), cfg.progress, label=label)
    profiler = ProfileWindow(run_dir / outputs.PROFILE, cfg.profile_steps if n == 0 else 0)

    def on_log(records: list[dict]) -> None:
        for rec in records:
            metrics.write({label: n, **rec})
        profiler.after(records[-1]["step"])
        progress(records)

    callbacks = train.Callbacks(on_log, checkpoints.save, frame.stop, frame.t_start, frame.preload)
    try:
        with profiler:
            result = train.fit(built.problem, built.plan, state, callbacks)
    finally:  # the last checkpoint is on disk (or its error raised) before anything else
        progress.close()
        checkpoints.close()
    for stage, solver in result.solvers.items():
        log.info("%s %d: %s solved its linear systems with the %s solver", label, n, stage, solver)
    log.info("%s %d stopped: %s", label, n, result.stop_reason)
    return result


def _resumed(checkpoints: outputs.Checkpoints, state, required: bool):
    """The newest usable checkpoint's state, else `state` (a ConfigError where one is
    `required`, or where the checkpoints do not fit the run's shapes)."""
    try:
        found = checkpoints.restore_latest(state)
    except outputs.CheckpointMismatch as err:
        raise ConfigError(f"resume: {err}") from None
    if found is None and required:
        raise ConfigError(f"resume: no usable checkpoint in {checkpoints.directory}")
    if found is None:
        return state
    log.info("resuming from the checkpoint at step %d", found[0])
    return found[1]


def _log_summary(summary: dict) -> None:
    for s in summary["states"]:
        log.info(
            "state %d: E estimate %.15g (reference %.15g, rel. error %.3e); psi L2 error %.3e",
            s["n"],
            s["energy"]["estimate"],
            s["energy"]["reference"],
            s["energy"]["rel_error"],
            s["wavefunction"]["l2_error"],
        )
    for m in summary.get("ensemble", {}).get("members", []):
        log.info(
            "member %d (seed %d, %s): E estimate %.15g (rel. error %.3e); psi L2 error %.3e",
            m["member"],
            m["seed"],
            m["status"],
            m["energy"],
            m["rel_error"],
            m["l2_error"],
        )
