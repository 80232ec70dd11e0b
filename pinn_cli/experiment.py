"""One experiment, end to end: build from a validated Config, train, judge, write the run folder.

This module turns configuration into plain values for the factories; nothing below it sees the
config. It is importable and testable without Hydra.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import evaluation, outputs, plots, provenance
from .config import Config, ConfigError
from .potentials import Potential, make_potential

log = logging.getLogger("pinn_run")
logging.getLogger("absl").setLevel(logging.WARNING)  # orbax logs every file it writes at INFO

EXIT_DIVERGED = 3
EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}


def potential_from(cfg: Config) -> Potential:
    p = cfg.potential
    return make_potential(p.name, domain=tuple(p.domain), V0=p.V0, width=p.width, centre=p.centre)


def fixed_energy(cfg: Config, potential: Potential) -> float | None:
    """The energy to hold fixed, or None when it is learned."""
    if cfg.energy.mode == "learned":
        return None
    if cfg.energy.value is not None:
        return float(cfg.energy.value)
    known = potential.closed_form_energy(0)
    if known is None:
        raise ConfigError(
            f"energy=fixed needs energy.value: potential={potential.name!r} has no closed-form "
            f"energy; give energy.value=<E> or use energy=learned"
        )
    return known


def settings_from(cfg: Config):
    from .train import Settings

    t, o = cfg.train, cfg.optim
    return Settings(
        steps=t.steps,
        lr=t.lr,
        lr_schedule=t.lr_schedule,
        lr_final=t.lr_final,
        log_every=t.log_every,
        checkpoint_every=t.checkpoint_every,
        refine=o.refine,
        refine_steps=o.refine_steps if o.refine != "none" else 0,
        refine_tol=o.refine_tol,
    )


def output_scale(cfg: Config, potential: Potential) -> float:
    if cfg.model.output_scale is not None:
        return float(cfg.model.output_scale)
    values = [v for _, _, v in potential.segments]
    lo, hi = potential.domain
    return max(1.0, np.sqrt(max(values) - min(values)) * (hi - lo) / 4.0)


@dataclass
class Built:
    potential: Potential
    problem: object
    settings: object
    stages: list
    state: dict


def build(cfg: Config) -> Built:
    """Potential, grid, network, problem and optimiser stages, with the initial training state."""
    import jax

    jax.config.update("jax_enable_x64", cfg.precision == "float64")
    import jax.numpy as jnp

    from . import model, physics, train

    dtype = jnp.float64 if cfg.precision == "float64" else jnp.float32
    potential = potential_from(cfg)
    energy = fixed_energy(cfg, potential)
    if cfg.train.collocation == "gauss":
        grid = physics.gauss_grid(potential.pieces, cfg.train.points, potential)
    else:
        grid = physics.uniform_grid(potential.domain, cfg.train.points, potential)
    m = cfg.model
    psi, net = model.make_trial_function(
        domain=potential.domain,
        breakpoints=potential.breakpoints,
        width=m.width,
        depth=m.depth,
        activation=m.activation,
        output=m.output,
        breakpoint_features=m.breakpoint_features,
        key=jax.random.key(cfg.seed),
        scale=output_scale(cfg, potential),
        dtype=dtype,
    )
    problem = train.make_problem(
        psi,
        grid,
        fixed_energy=energy,
        normalization=cfg.loss.normalization,
        norm_weight=cfg.loss.norm_weight,
        dtype=dtype,
    )
    params = train.init_params(problem, net, cfg.energy.init)
    settings = settings_from(cfg)
    stages = train.make_stages(problem, settings, params)
    return Built(potential, problem, settings, stages, train.init_state(stages, params))


class ProfileWindow:
    """A JAX profiler trace of the first `steps` training steps, written into `directory`.

    Training runs in compiled blocks of train.log_every steps, so the trace stops at the first
    log record `steps` or more past `start` (a block boundary) and includes the first block's
    compilation. Writes directory/plugins/profile/<time>/<host>.xplane.pb (TensorBoard's profile
    plugin) and <host>.trace.json.gz (opens in https://ui.perfetto.dev).
    Does nothing when steps == 0.
    """

    def __init__(self, directory: Path, steps: int, start: int = 0):
        self.directory, self.steps, self.end = Path(directory), steps, start + steps
        self.active = False

    def __enter__(self) -> ProfileWindow:
        if self.steps > 0:
            import jax

            jax.profiler.start_trace(str(self.directory))
            self.active = True
        return self

    def after(self, step: int) -> None:
        if self.active and step >= self.end:
            self.stop()

    def stop(self) -> None:
        if self.active:
            import jax

            jax.profiler.stop_trace()
            self.active = False
            log.info("profiler trace of %d steps written to %s", self.steps, self.directory)

    def __exit__(self, *exc) -> None:
        self.stop()


class StopFlag:
    """SIGINT / SIGTERM set a flag; training checks it between compiled blocks."""

    def __init__(self):
        self.signum: int | None = None

    def __call__(self) -> bool:
        return self.signum is not None

    @contextmanager
    def installed(self):
        def handler(signum, _frame):
            self.signum = signum

        previous = {s: signal.signal(s, handler) for s in EXIT_SIGNAL}
        try:
            yield self
        finally:
            for s, h in previous.items():
                signal.signal(s, h)


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, disable=not (enabled and sys.stderr.isatty()), unit="step", leave=True)


def run(cfg: Config, run_dir: Path, *, t_start: float | None = None, resume: bool = False) -> int:
    """Train and judge one experiment into `run_dir`; returns the process exit code."""
    t_start = time.perf_counter() if t_start is None else t_start
    run_dir = Path(run_dir)
    built = build(cfg)
    from . import train

    warning = provenance.precision_warning(cfg.precision)
    if warning:
        log.warning(warning)
    provenance_block = provenance.collect(dataclasses.asdict(cfg), sys.argv)
    log.info("config hash %s", provenance_block["config_hash"])

    checkpoints = outputs.Checkpoints(run_dir, keep=cfg.train.keep_checkpoints)
    state = built.state
    if resume:
        state = _restore(checkpoints, state)
    metrics = outputs.MetricsWriter(
        run_dir / outputs.METRICS, resume_from_step=int(state["step"]) if resume else None
    )
    total = sum(n for _, n in built.stages)
    stop = StopFlag()
    bar = _progress(total, cfg.progress)
    bar.update(int(state["step"]))
    first_step_at: list[float] = []
    profiler = ProfileWindow(run_dir / "profile", cfg.profile_steps, start=int(state["step"]))

    def on_log(rec: dict) -> None:
        first_step_at or first_step_at.append(time.perf_counter())
        metrics.write(rec)
        profiler.after(rec["step"])
        bar.update(rec["step"] - bar.n)
        bar.set_postfix(loss=f"{rec['loss']:.3e}", E=f"{rec['energy']:.10g}")
        if bar.disable:
            log.info(
                "step %d [%s] loss %.4e E %.12g E_R %.12g",
                rec["step"],
                rec["stage"],
                rec["loss"],
                rec["energy"],
                rec["rayleigh"],
            )

    callbacks = train.Callbacks(on_log=on_log, on_checkpoint=checkpoints.save, stop_requested=stop)
    t_fit = time.perf_counter()
    with stop.installed(), profiler:
        result = train.fit(built.problem, built.settings, state, built.stages, callbacks)
    bar.close()
    checkpoints.close()
    log.info("stopped: %s", result.stop_reason)
    summary = summarise(cfg, built, result, run_dir)
    summary["provenance"] = provenance_block
    summary["timing"].update(
        startup_s=t_fit - t_start + result.compile_s,
        wall_s=time.perf_counter() - t_start,
    )
    outputs.write_json_atomic(run_dir / outputs.SUMMARY, summary)
    log.info(
        "E estimate %.15g (reference %.15g, rel. error %.3e); psi L2 error %.3e; status %s",
        summary["energy"]["estimate"],
        summary["energy"]["reference"],
        summary["energy"]["rel_error"],
        summary["wavefunction"]["l2_error"],
        summary["status"],
    )
    if result.status == "diverged":
        return EXIT_DIVERGED
    if result.status == "interrupted":
        return EXIT_SIGNAL.get(stop.signum, 130)
    return 0


def _restore(checkpoints: outputs.Checkpoints, state: dict) -> dict:
    found = checkpoints.restore_latest(state)
    if found is None:
        raise ConfigError(f"resume: no usable checkpoint in {checkpoints.directory}")
    step, restored = found
    log.info("resuming from the checkpoint at step %d", step)
    return restored


def summarise(cfg: Config, built: Built, result, run_dir: Path) -> dict:
    """Judge the final parameters against the reference; write the plots; return summary.json."""
    import jax

    from . import physics

    potential, problem = built.potential, built.problem
    ref = evaluation.reference_eigenpair(potential, 0)
    quad = evaluation.fine_quadrature(potential)
    x = jax.numpy.asarray(quad.x, problem.x.dtype)
    p, dp, _ = jax.jit(physics.evaluate, static_argnums=0)(problem.psi, result.params["net"], x)
    p, dp = np.asarray(p, dtype=float), np.asarray(dp, dtype=float)
    judged = evaluation.compare(p, dp, quad, ref)
    learned = float(problem.energy(result.params)) if problem.fixed_energy is None else None
    estimate = judged["rayleigh"]
    norm = float(np.sqrt(np.sum(quad.w * p**2)))
    _plots(run_dir, potential, problem, result.params, ref, norm, judged["l2_error"])
    rel = evaluation.relative_error
    return {
        "potential": {
            "name": potential.name,
            "domain": list(potential.domain),
            "segments": [list(s) for s in potential.segments],
        },
        "energy": {
            "estimate": estimate,
            "estimator": "rayleigh_quotient",
            "learned": learned,
            "fixed": problem.fixed_energy,
            "rayleigh": judged["rayleigh"],
            "reference": ref.energy,
            "reference_method": ref.method,
            "rel_error": rel(estimate, ref.energy),
            "learned_rel_error": rel(learned, ref.energy),
        },
        "wavefunction": {"l2_error": judged["l2_error"], "overlap": judged["overlap"]},
        "steps": result.step,
        "status": result.status,
        "stop_reason": result.stop_reason,
        "diverged_step": result.step if result.status == "diverged" else None,
        "timing": {
            "compile_s": result.compile_s,
            "ms_per_step": result.ms_per_step.get("adam", float("nan")),
            "ms_per_step_by_stage": result.ms_per_step,
        },
        "seed": cfg.seed,
        "run_dir": str(run_dir),
    }


def _plots(run_dir: Path, potential, problem, params, ref, norm: float, l2_error: float) -> None:
    """wavefunction.png, energy.png and loss.png; histories come from metrics.csv (resume-safe)."""
    import jax

    x = np.linspace(*potential.domain, 800)
    psi = np.asarray(jax.vmap(lambda xi: problem.psi(params["net"], xi))(x), dtype=float) / norm
    exact = ref.psi(x)
    sign = np.sign(np.sum(psi * exact)) or 1.0
    v = np.asarray(potential(x), dtype=float)
    title = f"{potential.name}: relative L2 error {l2_error:.2e}"
    plots.wavefunction(run_dir / "wavefunction.png", x, sign * psi, exact, v, title=title)
    np.savetxt(
        run_dir / "psi.csv",
        np.column_stack([x, sign * psi, exact, v]),
        delimiter=",",
        header="x,psi,psi_exact,V",
        comments="",
        fmt="%.17g",
    )
    path = run_dir / outputs.METRICS
    if not path.exists():
        return
    h = {k: np.asarray(v) for k, v in outputs.read_metrics(path).items() if k != "stage"}
    if len(h.get("step", ())) == 0:
        return
    plots.energy(run_dir / "energy.png", h["step"], h["energy"], h["rayleigh"], ref.energy)
    plots.losses(run_dir / "loss.png", h["step"], {k: h[k] for k in ("residual", "norm") if k in h})
