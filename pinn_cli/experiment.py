"""One experiment, end to end: assemble from a validated Config, train each state, judge, write
the run folder, and return the numbers.

Importable and testable without Hydra: `run(cfg, run_dir) -> RunResult`.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import outputs, provenance
from .assemble import Built, build
from .config import Config, ConfigError
from .process import EXIT_DIVERGED, EXIT_SUSPECT, ProfileWindow, Progress, StopFlag

log = logging.getLogger("pinn_run")
logging.getLogger("absl").setLevel(logging.WARNING)  # orbax logs every file it writes at INFO
logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)  # "no TPU found" at INFO


@dataclass
class RunResult:
    """What a run returns: its exit code and summary.json's content."""

    code: int
    summary: dict

    @property
    def objective(self) -> float | None:
        """The sweep objective: the relative error of the energy estimate (of state n)."""
        return self.summary["energy"]["rel_error"]


@dataclass
class StateRun:
    """One trained state: what was built and how training ended."""

    n: int
    built: Built
    result: object  # train.FitResult


def run(cfg: Config, run_dir: Path, *, t_start: float | None = None, resume: bool = False):
    """Train and judge states 0..cfg.state into `run_dir`; returns a RunResult."""
    t_start = time.perf_counter() if t_start is None else t_start
    run_dir = Path(run_dir)
    _configure_jax(cfg)
    provenance_block = provenance.collect(dataclasses.asdict(cfg), sys.argv)
    log.info("config hash %s", provenance_block["config_hash"])
    metrics = outputs.MetricsWriter(run_dir / outputs.METRICS, _metric_fields(cfg))
    stop = StopFlag()
    # Installed until the last file is written: a signal after training lets the outputs finish,
    # then the run exits with the signal's code.
    with stop.installed(), _failure_recorded(cfg, run_dir, provenance_block):
        runs, basis = _train_states(cfg, run_dir, metrics, stop, resume)
        if cfg.train.ensemble > 1:
            summary = _judge_ensemble(cfg, runs[0], run_dir)
        else:
            summary = _judge_states(cfg, runs, basis, run_dir)
        summary["provenance"] = provenance_block
        summary["timing"].update(
            # Imports, configuration, building and the compilation of the first block:
            # everything before the first training step (later stages compile when they start).
            startup_s=(runs[0].result.first_step_at or time.perf_counter()) - t_start,
            compile_s=sum(r.result.compile_s for r in runs),
            wall_s=time.perf_counter() - t_start,
        )
        outputs.write_json_atomic(run_dir / outputs.SUMMARY, summary)
        _log_summary(summary)
    status = runs[-1].result.status
    code = {"diverged": EXIT_DIVERGED, "interrupted": stop.exit_code}.get(status, 0)
    if code == 0 and summary["status"] == "suspect" and cfg.checks.strict:
        code = EXIT_SUSPECT
    if stop() and code == 0:
        log.info("stopped by a signal after training; the outputs were written first")
        code = stop.exit_code
    return RunResult(code, summary)


@contextmanager
def _failure_recorded(cfg: Config, run_dir: Path, provenance_block: dict):
    """A file that cannot be written (a full disk, a folder made read-only) ends the run; before
    the error goes on to the caller, summary.json records status "failed" and why, where the
    disk still takes it. The checkpoints written so far stay: resume continues from them."""
    try:
        yield
    except OSError as err:
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


def _configure_jax(cfg: Config) -> None:
    import jax

    jax.config.update("jax_enable_x64", cfg.precision == "float64")
    if cfg.compile_cache:
        jax.config.update("jax_compilation_cache_dir", str(Path(cfg.compile_cache).expanduser()))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    warning = provenance.precision_warning(cfg.precision)
    if warning:
        log.warning(warning)


def _metric_fields(cfg: Config) -> list[str]:
    terms = ["residual"] + (["norm"] if cfg.loss.normalization == "penalty" else [])
    terms += ["ritz"] if cfg.state > 0 else []
    fields = ["state", "step", "stage", "loss", *terms, "energy", "rayleigh", "lr", "elapsed_s"]
    return (["member"] if cfg.train.ensemble > 1 else []) + fields


def _train_states(cfg: Config, run_dir: Path, metrics, stop, resume: bool):
    """Train states 0..cfg.state in order, each orthogonal to those below it; stop early if one
    does not complete. Returns the runs and the basis of the finished states."""
    from .states import Basis

    runs: list[StateRun] = []
    basis = None
    for n in range(cfg.state + 1):
        built = build(cfg, n, basis.lower() if basis else None)
        basis = basis or Basis(np.asarray(built.problem.w, float))
        result = _train(cfg, n, built, run_dir, metrics, stop, resume)
        runs.append(StateRun(n, built, result))
        if result.status != "completed" or cfg.train.ensemble > 1:
            break
        p, _, lap = _values(built, result.params, built.problem.x)
        basis.add(p, lap)
    return runs, basis


def _train(cfg: Config, n: int, built: Built, run_dir: Path, metrics, stop, resume: bool):
    """Fit one state, checkpointing into its own folder of checkpoints/."""
    from . import train

    sub = outputs.checkpoint_dir(cfg.state, n)
    checkpoints = outputs.Checkpoints(run_dir, keep=cfg.train.keep_checkpoints, subdir=sub)
    state = built.state
    if resume:
        try:
            found = checkpoints.restore_latest(state)
        except outputs.CheckpointMismatch as err:
            raise ConfigError(f"resume: {err}") from None
        if found is None and n == 0:
            raise ConfigError(f"resume: no usable checkpoint in {checkpoints.directory}")
        if found is not None:
            log.info("resuming from the checkpoint at step %d", found[0])
            state = found[1]
        metrics.truncate_after(n, int(state.step))
    total = built.plan.steps + built.plan.refine_steps
    progress = Progress(n, total, int(state.step), cfg.progress)
    profiler = ProfileWindow(run_dir / outputs.PROFILE, cfg.profile_steps if n == 0 else 0)

    def on_log(records: list[dict]) -> None:
        for rec in records:
            metrics.write({"state": n, **rec})
        profiler.after(records[-1]["step"])
        progress(records)

    callbacks = train.Callbacks(on_log=on_log, on_checkpoint=checkpoints.save, stop_requested=stop)
    with profiler:
        result = train.fit(built.problem, built.plan, state, callbacks)
    progress.close()
    checkpoints.close()
    log.info("state %d stopped: %s", n, result.stop_reason)
    return result


def _values(built: Built, params, x) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """psi, grad psi and lap psi of one network at points x (N, d), as NumPy arrays."""
    import jax

    from . import physics

    xs = jax.numpy.asarray(x, built.problem.x.dtype)
    values = jax.jit(physics.evaluate, static_argnums=0)(built.problem.psi, params["net"], xs)
    return tuple(np.asarray(a, float) for a in values)


def _judge_states(cfg: Config, runs: list[StateRun], basis, run_dir: Path) -> dict:
    """Judge every state against its reference; write psi.csv and the figures; return the
    summary."""
    from . import evaluation, plots  # SciPy and matplotlib load after training

    potential = runs[0].built.potential
    fine, x_plot = evaluation.fine_rule(potential), evaluation.plot_points(potential)
    if len(basis.rows) < len(runs):  # the last state stopped early: judge it as it is
        last = runs[-1]
        p, _, lap = _values(last.built, last.result.params, last.built.problem.x)
        basis.add(p, lap)
    raw = [_values(r.built, r.result.params, fine[0].x) for r in runs]
    psi_q, grad_q, lap_q = (basis.combine([values[k] for values in raw]) for k in range(3))
    psi_x = basis.combine([_values(r.built, r.result.params, x_plot)[0] for r in runs])
    states, curves = [], []
    for r, p, g, px in zip(runs, psi_q, grad_q, psi_x):
        judged, curve = evaluation.judge_state(potential, r.n, fine, (p, g), x_plot, px)
        states.append(_with_training(judged, r))
        curves.append(curve)
    failed = _self_checks(cfg, states, fine, psi_q, lap_q, potential.is_symmetric())
    v_plot = np.asarray(potential.values(x_plot), float)
    outputs.write_psi(run_dir / outputs.PSI, x_plot[:, 0], curves, v_plot)
    l2 = states[0]["wavefunction"]["l2_error"]
    title = f"{potential.name}: " + (
        f"relative L2 error {l2:.2e}" if len(states) == 1 else f"states 0-{len(states) - 1}"
    )
    references = {s["n"]: s["energy"]["reference"] for s in states}
    plots.run_figures(run_dir, x_plot[:, 0], curves, v_plot, title=title, references=references)
    summary = _summary(cfg, runs, states, run_dir)
    summary["checks"] = {"strict": cfg.checks.strict, "failed": failed}
    if failed and summary["status"] == "completed":
        summary["status"] = "suspect"
        summary["stop_reason"] = "; ".join(failed)
    return summary


def _self_checks(cfg: Config, states, fine, psi, lap, symmetric: bool) -> list[str]:
    """Run evaluation.self_checks on every state; mark the states that fail one "suspect", log
    one line per failed check, and return those lines ("state n: check: numbers")."""
    from . import evaluation

    w, v = fine[0].w, fine[1]
    unit = [p / np.sqrt(np.sum(w * p**2)) for p in psi]
    overlaps = np.array([[np.sum(w * a * b) for b in unit] for a in unit])
    residuals = [
        evaluation.relative_residual(p, q, w, v, s["energy"]["estimate"])
        for p, q, s in zip(psi, lap, states)
    ]
    lines = []
    checks = evaluation.self_checks(states, overlaps, residuals, cfg.checks, symmetric)
    for state, failed, residual in zip(states, checks, residuals):
        state["checks"] = {"residual": residual, "failed": failed}
        if failed and state["status"] == "completed":
            state["status"] = "suspect"
        for check in failed:
            log.warning("state %d is suspect: %s", state["n"], check)
            lines.append(f"state {state['n']}: {check}")
    return lines


def _with_training(judged: dict, run: StateRun) -> dict:
    from . import evaluation

    problem, result = run.built.problem, run.result
    learned = float(problem.energy(result.params)) if problem.fixed_energy is None else None
    return evaluation.with_training(
        judged,
        learned=learned,
        fixed=problem.fixed_energy,
        steps=result.step,
        status=result.status,
        stop_reason=result.stop_reason,
    )


def _summary(cfg: Config, runs: list[StateRun], states: list[dict], run_dir: Path) -> dict:
    from . import evaluation

    results = [r.result for r in runs]
    return {
        "potential": evaluation.describe(runs[0].built.potential),
        "state": cfg.state,
        "energy": states[-1]["energy"],
        "wavefunction": states[-1]["wavefunction"],
        "states": states,
        "steps": sum(r.step for r in results),
        "status": results[-1].status,
        "stop_reason": results[-1].stop_reason,
        "diverged_step": results[-1].step if results[-1].status == "diverged" else None,
        "timing": {
            "ms_per_step": results[0].ms_per_step.get("adam", float("nan")),
            "ms_per_step_by_stage": results[0].ms_per_step,
        },
        "seed": cfg.seed,
        "run_dir": str(run_dir),
    }


def _judge_ensemble(cfg: Config, run: StateRun, run_dir: Path) -> dict:
    """Judge each member as if it had been trained alone, into members/<i>/ (summary.json,
    psi.csv); the run's summary.json is the member with the lowest final training loss (chosen
    without looking at the reference) plus an "ensemble" block with every member's results and
    the spread of their energies. The figures show all members."""
    from . import ensemble, evaluation, plots

    built, result, potential = run.built, run.result, run.built.potential
    fine, x_plot = evaluation.fine_rule(potential), evaluation.plot_points(potential)
    members, curves = [], []
    for i in range(cfg.train.ensemble):
        diverged = result.diverged_at[i]
        one = StateRun(0, built, _member_result(result, i, ensemble.member(result.params, i)))
        p, g, _ = _values(built, one.result.params, fine[0].x)
        px = _values(built, one.result.params, x_plot)[0]
        judged, curve = evaluation.judge_state(potential, 0, fine, (p, g), x_plot, px)
        directory = run_dir / outputs.member_dir(i)
        directory.mkdir(parents=True, exist_ok=True)
        v_plot = np.asarray(potential.values(x_plot), float)
        outputs.write_psi(directory / outputs.PSI, x_plot[:, 0], [curve], v_plot)
        s = _summary(cfg, [one], [_with_training(judged, one)], directory)
        s.update(member=i, seed=cfg.seed + i, final_loss=result.final_loss[i])
        s["diverged_step"] = diverged
        outputs.write_json_atomic(directory / outputs.SUMMARY, s)
        members.append(s)
        curves.append(curve)
    best = evaluation.best_member(members)
    summary = {**members[best], "run_dir": str(run_dir), "seed": cfg.seed, "status": result.status}
    for key in ("member", "final_loss"):
        summary.pop(key)
    summary["ensemble"] = evaluation.ensemble_block(members, cfg.train.ensemble, best)
    errors = [m["l2_error"] for m in summary["ensemble"]["members"] if m["status"] != "diverged"]
    title = (
        f"{potential.name}: {cfg.train.ensemble} networks, relative L2 error "
        f"{min(errors):.1e} to {max(errors):.1e}"
    )
    v_plot = np.asarray(potential.values(x_plot), float)
    references = {0: summary["energy"]["reference"]}
    plots.run_figures(
        run_dir, x_plot[:, 0], curves, v_plot, title=title, references=references, members=True
    )
    return summary


def _member_result(result, i: int, params):
    diverged = result.diverged_at[i]
    return dataclasses.replace(
        result,
        params=params,
        history=[h for h in result.history if h.get("member") == i],
        status="diverged" if diverged is not None else result.status,
        stop_reason=(
            f"non-finite loss or parameters by step {diverged}"
            if diverged is not None
            else result.stop_reason
        ),
    )


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
