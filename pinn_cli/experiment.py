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

from . import outputs, provenance
from .config import Config, ConfigError, potential_params
from .potentials import Potential, make_potential

log = logging.getLogger("pinn_run")
logging.getLogger("absl").setLevel(logging.WARNING)  # orbax logs every file it writes at INFO
logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)  # "no TPU found" at INFO

EXIT_DIVERGED = 3
EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}


def potential_from(cfg: Config) -> Potential:
    return make_potential(cfg.potential.name, **potential_params(cfg.potential))


def fixed_energy(cfg: Config, potential: Potential, n: int = 0) -> float | None:
    """The energy of state n to hold fixed, or None when it is learned."""
    if cfg.energy.mode == "learned":
        return None
    if cfg.energy.value is not None:
        return float(cfg.energy.value)
    known = potential.closed_form_energy(n)
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
        ensemble=t.ensemble,
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


def network_key(cfg: Config, n: int = 0):
    """State n's initial key; with train.ensemble = K > 1, K keys from seeds seed..seed+K-1, so
    that member i starts from the network that seed=seed+i alone would train."""
    import jax

    if cfg.train.ensemble > 1:
        return jax.vmap(jax.random.key)(jax.numpy.arange(cfg.seed, cfg.seed + cfg.train.ensemble))
    key = jax.random.key(cfg.seed)
    return jax.random.fold_in(key, n) if n else key


def member(tree, i: int):
    """Member i's slice of an ensemble's stacked pytree."""
    import jax

    return jax.tree.map(lambda a: a[i], tree)


def build(cfg: Config, n: int = 0, lower=None) -> Built:
    """Potential, grid, network, problem and optimiser stages for state n, with its initial
    training state. `lower`: (values, psi'') of the states below n on the grid, W-orthonormal.
    With train.ensemble = K > 1 the state's leaves carry a leading member axis of size K."""
    import jax

    jax.config.update("jax_enable_x64", cfg.precision == "float64")
    import jax.numpy as jnp

    from . import model, physics, train

    dtype = jnp.float64 if cfg.precision == "float64" else jnp.float32
    potential = potential_from(cfg)
    energy = fixed_energy(cfg, potential, n)
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
        output=(("exp" if n == 0 else "linear") if m.output == "auto" else m.output),
        breakpoint_features=m.breakpoint_features,
        key=network_key(cfg, n),
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
        lower=lower,
        first_stage="ritz" if n > 0 else "residual",
    )
    members = cfg.train.ensemble
    params = train.init_params(problem, net, cfg.energy.init if n == 0 else None, members)
    settings = settings_from(cfg)
    stages = train.make_stages(problem, settings, params if members == 1 else member(params, 0))
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


@dataclass
class StateRun:
    """One trained state: what was built, how training ended, and its combination row."""

    n: int
    built: Built
    result: object


class Basis:
    """The trained states as W-orthonormal combinations of the raw trial functions.

    State k's function is its network's psi with the lower states projected out on the training
    grid; `rows[k]` holds its coefficients over networks 0..k, so it can be evaluated anywhere.
    """

    def __init__(self, w: np.ndarray):
        self.w = w
        self.rows: list[np.ndarray] = []
        self.p: list[np.ndarray] = []  # raw networks' psi on the training grid
        self.d2p: list[np.ndarray] = []

    def lower(self):
        if not self.rows:
            return None
        a = self._matrix()
        return np.stack(self.p, 1) @ a.T, np.stack(self.d2p, 1) @ a.T

    def _matrix(self) -> np.ndarray:
        k = len(self.rows)
        return np.array([np.pad(r, (0, k - len(r))) for r in self.rows])

    def add(self, p: np.ndarray, d2p: np.ndarray) -> None:
        """Append a network's psi, orthogonalised against the states so far and normalised."""
        k = len(self.rows)
        row = np.zeros(k + 1)
        row[k] = 1.0
        if k:
            a = self._matrix()
            phi = np.stack(self.p, 1) @ a.T
            c = phi.T @ (self.w * p)
            row[:k] -= c @ a
        self.p.append(p)
        self.d2p.append(d2p)
        f = np.stack(self.p, 1) @ row
        self.rows.append(row / np.sqrt(np.sum(self.w * f * f)))

    def combine(self, raw: list[np.ndarray]) -> list[np.ndarray]:
        """Each state's values from the raw networks' values on any grid."""
        stacked = np.stack(raw, 1)
        return [stacked[:, : len(r)] @ r for r in self.rows]


def _evaluate(built: Built, params, x: np.ndarray):
    import jax

    from . import physics

    xs = jax.numpy.asarray(x, built.problem.x.dtype)
    p, dp, d2p = jax.jit(physics.evaluate, static_argnums=0)(built.problem.psi, params["net"], xs)
    return np.asarray(p, float), np.asarray(dp, float), np.asarray(d2p, float)


def run(cfg: Config, run_dir: Path, *, t_start: float | None = None, resume: bool = False) -> int:
    """Train and judge states 0..cfg.state into `run_dir`; returns the process exit code."""
    t_start = time.perf_counter() if t_start is None else t_start
    run_dir = Path(run_dir)
    import jax

    jax.config.update("jax_enable_x64", cfg.precision == "float64")
    if cfg.compile_cache:
        jax.config.update("jax_compilation_cache_dir", str(Path(cfg.compile_cache).expanduser()))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    warning = provenance.precision_warning(cfg.precision)
    if warning:
        log.warning(warning)
    provenance_block = provenance.collect(dataclasses.asdict(cfg), sys.argv)
    log.info("config hash %s", provenance_block["config_hash"])
    terms = ["residual"] + (["norm"] if cfg.loss.normalization == "penalty" else [])
    terms += ["ritz"] if cfg.state > 0 else []
    fields = ["state", "step", "stage", "loss", *terms, "energy", "rayleigh", "lr", "elapsed_s"]
    if cfg.train.ensemble > 1:
        fields.insert(0, "member")
    metrics = outputs.MetricsWriter(run_dir / outputs.METRICS, fields)
    stop = StopFlag()
    runs: list[StateRun] = []
    basis: Basis | None = None
    with stop.installed():
        for n in range(cfg.state + 1):
            built = build(cfg, n, basis.lower() if basis else None)
            if basis is None:
                basis = Basis(np.asarray(built.problem.w, float))
            result = _train(cfg, n, built, run_dir, metrics, stop, resume)
            runs.append(StateRun(n, built, result))
            if result.status != "completed" or cfg.train.ensemble > 1:
                break
            p, _, d2p = _evaluate(built, result.params, np.asarray(built.problem.x, float))
            basis.add(p, d2p)
    if cfg.train.ensemble > 1:
        summary = summarise_ensemble(cfg, runs[0], run_dir)
    else:
        summary = summarise(cfg, runs, basis, run_dir)
    summary["provenance"] = provenance_block
    compile_s = sum(r.result.compile_s for r in runs)
    summary["timing"].update(
        # Imports, configuration, building and the compilation of the first block: everything
        # before the first training step (later stages compile when they start).
        startup_s=(runs[0].result.first_step_at or time.perf_counter()) - t_start,
        compile_s=compile_s,
        wall_s=time.perf_counter() - t_start,
    )
    outputs.write_json_atomic(run_dir / outputs.SUMMARY, summary)
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
    status = runs[-1].result.status
    if status == "diverged":
        return EXIT_DIVERGED
    if status == "interrupted":
        return EXIT_SIGNAL.get(stop.signum, 130)
    return 0


def _train(cfg: Config, n: int, built: Built, run_dir: Path, metrics, stop, resume: bool):
    """Fit one state, checkpointing into checkpoints/ (or checkpoints/state_n when n > 0)."""
    from . import train

    sub = outputs.CHECKPOINTS if cfg.state == 0 else f"{outputs.CHECKPOINTS}/state_{n}"
    checkpoints = outputs.Checkpoints(run_dir, keep=cfg.train.keep_checkpoints, subdir=sub)
    state = built.state
    if resume:
        found = checkpoints.restore_latest(state)
        if found is None and n == 0:
            raise ConfigError(f"resume: no usable checkpoint in {checkpoints.directory}")
        if found is not None:
            log.info("resuming from the checkpoint at step %d", found[0])
            state = found[1]
        metrics.truncate_after(n, int(state["step"]))
    total = sum(k for _, k in built.stages)
    bar = _progress(total, cfg.progress)
    bar.update(int(state["step"]))
    profiler = ProfileWindow(run_dir / "profile", cfg.profile_steps if n == 0 else 0)

    def on_log(records: list[dict]) -> None:
        for rec in records:
            metrics.write({"state": n, **rec})
        last = records[-1]
        profiler.after(last["step"])
        bar.update(last["step"] - bar.n)
        loss = min(r["loss"] for r in records)
        energy = float(np.median([r["energy"] for r in records]))
        bar.set_postfix(loss=f"{loss:.3e}", E=f"{energy:.10g}")
        if not bar.disable:
            return
        if len(records) == 1 and "member" not in last:
            log.info(
                "state %d step %d [%s] loss %.4e E %.12g E_R %.12g",
                n,
                last["step"],
                last["stage"],
                last["loss"],
                last["energy"],
                last["rayleigh"],
            )
        else:
            log.info(
                "step %d [%s] %d members: loss %.4e (best) E %.12g (median) E_R %.12g (median)",
                last["step"],
                last["stage"],
                len(records),
                loss,
                energy,
                float(np.median([r["rayleigh"] for r in records])),
            )

    callbacks = train.Callbacks(on_log=on_log, on_checkpoint=checkpoints.save, stop_requested=stop)
    with profiler:
        result = train.fit(built.problem, built.settings, state, built.stages, callbacks)
    bar.close()
    checkpoints.close()
    log.info("state %d stopped: %s", n, result.stop_reason)
    return result


def summarise(cfg: Config, runs: list[StateRun], basis: Basis, run_dir: Path) -> dict:
    """Judge every state against its reference; write psi.csv and the plots; return
    summary.json."""
    potential = runs[0].built.potential
    states, curves, x_plot = judge(runs, basis)
    _write_psi(run_dir / "psi.csv", x_plot, curves, np.asarray(potential(x_plot), dtype=float))
    _plots(run_dir, potential, x_plot, curves, states)
    return _summary(cfg, runs, states, run_dir)


def judge(runs: list[StateRun], basis: Basis):
    """(per-state summaries, [(n, psi, reference psi)] on x_plot, x_plot)."""
    from . import evaluation  # SciPy (the reference solvers) is imported after training

    potential = runs[0].built.potential
    quad = evaluation.fine_quadrature(potential)
    x_plot = np.linspace(*potential.domain, 801)
    raw_q = [_evaluate(r.built, r.result.params, quad.x) for r in runs]
    raw_x = [_evaluate(r.built, r.result.params, x_plot)[0] for r in runs]
    if len(basis.rows) < len(runs):  # the last state stopped early: judge it as it is
        last = runs[-1]
        p, _, d2p = _evaluate(last.built, last.result.params, np.asarray(last.built.problem.x))
        basis.add(p, d2p)
    psi_q = basis.combine([p for p, _, _ in raw_q])
    dpsi_q = basis.combine([dp for _, dp, _ in raw_q])
    psi_x = basis.combine(raw_x)
    states, curves = [], []
    for r, p, dp, px in zip(runs, psi_q, dpsi_q, psi_x):
        ref = evaluation.reference_eigenpair(potential, r.n)
        states.append(_state_summary(r, p, dp, px, quad, ref, potential, x_plot))
        norm = np.sqrt(np.sum(quad.w * p**2))
        exact = ref.psi(x_plot)
        sign = np.sign(np.sum(px * exact)) or 1.0
        curves.append((r.n, sign * px / norm, exact))
    return states, curves, x_plot


def _summary(cfg: Config, runs: list[StateRun], states: list[dict], run_dir: Path) -> dict:
    potential = runs[0].built.potential
    target = states[-1]
    results = [r.result for r in runs]
    return {
        "potential": {
            "name": potential.name,
            "domain": list(potential.domain),
            "segments": [list(s) for s in potential.segments],
            "symmetric": potential.is_symmetric(),
        },
        "state": cfg.state,
        "energy": target["energy"],
        "wavefunction": target["wavefunction"],
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


def summarise_ensemble(cfg: Config, run: StateRun, run_dir: Path) -> dict:
    """Judge each member as if it had been trained alone, into members/<i>/ (summary.json,
    psi.csv); the run's summary.json is the member with the lowest final training loss (chosen
    without looking at the reference) plus an "ensemble" block with every member's results and
    the spread of their energies. The figures show all members."""
    from . import evaluation

    built, result = run.built, run.result
    potential = built.potential
    w, x_train = np.asarray(built.problem.w, float), np.asarray(built.problem.x, float)
    members, curves = [], []
    x_plot = v = None
    for i in range(cfg.train.ensemble):
        diverged = result.diverged_at[i]
        res = dataclasses.replace(
            result,
            params=member(result.params, i),
            history=[h for h in result.history if h.get("member") == i],
            status="diverged" if diverged is not None else result.status,
            stop_reason=(
                f"non-finite loss or parameters by step {diverged}"
                if diverged is not None
                else result.stop_reason
            ),
        )
        one = StateRun(0, built, res)
        basis = Basis(w)
        p, _, d2p = _evaluate(built, res.params, x_train)
        basis.add(p, d2p)
        states, c, x_plot = judge([one], basis)
        v = np.asarray(potential(x_plot), dtype=float)
        directory = run_dir / "members" / str(i)
        directory.mkdir(parents=True, exist_ok=True)
        _write_psi(directory / "psi.csv", x_plot, c, v)
        s = _summary(cfg, [one], states, directory)
        s.update(member=i, seed=cfg.seed + i, final_loss=result.final_loss[i])
        s["diverged_step"] = diverged
        outputs.write_json_atomic(directory / outputs.SUMMARY, s)
        members.append(s)
        curves.append(c[0])
    losses = np.array([m["final_loss"] if m["status"] != "diverged" else np.nan for m in members])
    best = int(np.nanargmin(losses)) if np.isfinite(losses).any() else 0
    ok = [m for m in members if m["status"] != "diverged"] or members
    energies = np.array([m["energy"]["estimate"] for m in ok])
    reference = members[0]["energy"]["reference"]
    summary = {**members[best], "run_dir": str(run_dir), "seed": cfg.seed}
    for key in ("member", "final_loss"):
        summary.pop(key)
    summary["status"] = result.status
    summary["ensemble"] = {
        "size": cfg.train.ensemble,
        "seeds": [m["seed"] for m in members],
        "selected_member": best,
        "selection": "lowest final training loss",
        "diverged_members": [m["member"] for m in members if m["status"] == "diverged"],
        "energy": {
            "mean": float(np.mean(energies)),
            "std": float(np.std(energies, ddof=1)) if len(energies) > 1 else 0.0,
            "min": float(np.min(energies)),
            "max": float(np.max(energies)),
            "mean_rel_error": evaluation.relative_error(float(np.mean(energies)), reference),
        },
        "members": [
            {
                "member": m["member"],
                "seed": m["seed"],
                "status": m["status"],
                "final_loss": m["final_loss"],
                "energy": m["energy"]["estimate"],
                "rel_error": m["energy"]["rel_error"],
                "learned_rel_error": m["energy"]["learned_rel_error"],
                "l2_error": m["wavefunction"]["l2_error"],
                "dir": f"members/{m['member']}",
            }
            for m in members
        ],
    }
    _ensemble_plots(run_dir, potential, x_plot, curves, v, summary)
    return summary


def _state_summary(run: StateRun, p, dp, p_plot, quad, ref, potential, x_plot) -> dict:
    from . import evaluation

    judged = evaluation.compare(p, dp, quad, ref)
    problem = run.built.problem
    learned = float(problem.energy(run.result.params)) if problem.fixed_energy is None else None
    rel = evaluation.relative_error
    return {
        "n": run.n,
        "energy": {
            "estimate": judged["rayleigh"],
            "estimator": "rayleigh_quotient",
            "learned": learned,
            "fixed": problem.fixed_energy,
            "rayleigh": judged["rayleigh"],
            "reference": ref.energy,
            "reference_method": ref.method,
            "rel_error": rel(judged["rayleigh"], ref.energy),
            "learned_rel_error": rel(learned, ref.energy),
        },
        "wavefunction": {"l2_error": judged["l2_error"], "overlap": judged["overlap"]},
        "nodes": evaluation.count_nodes(p_plot),
        "parity": evaluation.parity(p_plot) if potential.is_symmetric() else None,
        "steps": run.result.step,
        "status": run.result.status,
        "stop_reason": run.result.stop_reason,
    }


def _write_psi(path: Path, x, curves, v) -> None:
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


def _plots(run_dir: Path, potential, x, curves, states) -> None:
    """wavefunction.png, energy.png, loss.png; histories come from metrics.csv."""
    from . import plots  # matplotlib is imported after training, not before the first step

    v = np.asarray(potential(x), dtype=float)
    first = states[0]["wavefunction"]["l2_error"]
    title = (
        f"{potential.name}: relative L2 error {first:.2e}"
        if len(states) == 1
        else f"{potential.name}: states 0-{len(states) - 1}"
    )
    plots.wavefunction(run_dir / "wavefunction.png", x, curves, v, title=title)
    _history_plots(run_dir, {s["n"]: s["energy"]["reference"] for s in states})


def _history_plots(run_dir: Path, references: dict[int, float]) -> None:
    from . import plots

    path = run_dir / outputs.METRICS
    if not path.exists():
        return
    h = {k: np.asarray(c) for k, c in outputs.read_metrics(path).items() if k != "stage"}
    if len(h.get("step", ())) == 0:
        return
    plots.energy(run_dir / "energy.png", h, references)
    plots.losses(run_dir / "loss.png", h, [k for k in ("residual", "norm", "ritz") if k in h])


def _ensemble_plots(run_dir: Path, potential, x, curves, v, summary: dict) -> None:
    from . import plots

    e = summary["ensemble"]
    errors = [m["l2_error"] for m in e["members"] if m["status"] != "diverged"]
    title = (
        f"{potential.name}: {e['size']} networks, relative L2 error "
        f"{min(errors):.1e} to {max(errors):.1e}"
    )
    plots.ensemble_wavefunctions(run_dir / "wavefunction.png", x, curves, v, title=title)
    _history_plots(run_dir, {0: summary["energy"]["reference"]})
