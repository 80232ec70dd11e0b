"""A time-dependent run (equation=tdse), end to end: the initial state, one network per time
window trained in order (each from the last one's end), the judging against the reference
propagation, and the run folder. `run(cfg, run_dir) -> RunResult`, as experiment.run.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import outputs
from .assemble import Built, activation_from, plan_from, potential_from
from .config import Config, ConfigError
from .experiment import RunResult, exit_code, run_frame, train_one, write_summary
from .initial_states import (
    ENERGY_SPREAD,
    InitialStateError,
    auto_windows,
    energy_moments,
    feature_interval,
    make_initial_state,
    space_pieces,
)

log = logging.getLogger("pinn_run")


def initial_state(cfg: Config, potential):
    """The initial state the config names (a gaussian packet when it names none)."""
    from .config import GaussianInitialConfig

    try:
        return make_initial_state(cfg.initial or GaussianInitialConfig(), potential)
    except InitialStateError as err:
        raise ConfigError(str(err)) from None


@dataclass
class Window:
    """One trained time window: its problem (for the network and its rule) and the result."""

    k: int
    built: Built
    result: object  # train.FitResult


@dataclass(frozen=True)
class Grid:
    """The spatial nodes of the training rule, shared by every window."""

    x: np.ndarray  # (X,)
    w: np.ndarray  # (X,)
    t: np.ndarray  # (T,) Gauss-Legendre nodes on [0, tau]
    wt: np.ndarray  # (T,)
    tau: float
    windows: int
    features: tuple[float, float]  # the x interval the network's input is scaled over


def grid_from(cfg: Config, potential, psi0) -> Grid:
    from . import quadrature

    mean, width = energy_moments(potential, psi0)
    top = mean + ENERGY_SPREAD * width
    features = feature_interval(potential, top)
    x, w = quadrature.gauss_pieces(*space_pieces(potential, top, features, cfg.train.points))
    windows = cfg.time.windows or auto_windows(top, cfg.time.T)
    tau = cfg.time.T / windows
    t, wt = quadrature.gauss_pieces([(0.0, tau)], [cfg.time.points])
    return Grid(x, w, t, wt, tau, windows, features)


def build_window(cfg: Config, potential, grid: Grid, k: int, start, start_xx) -> Built:
    """The problem, plan and initial training state of window k, which starts from psi = start
    (complex, at the grid's x) with psi'' = start_xx."""
    import jax
    import jax.numpy as jnp

    from . import model, quadrature, tdse, train

    dtype = jnp.float64 if cfg.precision == "float64" else jnp.float32
    # the input is scaled over grid.features (the envelope still vanishes at the domain's walls)
    box = quadrature.Box((grid.features, (0.0, grid.tau)), (potential.breakpoints, ()))
    net, params = model.make_trial_function(
        box=box,
        width=cfg.model.width,
        depth=cfg.model.depth,
        activation=activation_from(cfg),
        output="linear",
        breakpoint_features=cfg.model.breakpoint_features,
        key=jax.random.fold_in(jax.random.key(cfg.seed), k),
        dtype=dtype,
        outputs=2,
    )
    rule = quadrature.tensor([(grid.x, grid.w), (grid.t, grid.wt)])
    pairs = lambda z: np.repeat(np.stack([z.real, z.imag], -1), grid.t.size, axis=0)  # noqa: E731
    as_array = lambda a: jnp.asarray(a, dtype)  # noqa: E731
    problem = tdse.TimeProblem(
        net=net,
        interval=potential.domain,
        window=grid.tau,
        x=as_array(rule.x),
        w=as_array(rule.w),
        v=as_array(potential.values(rule.x)),
        start=as_array(pairs(start)),
        start_xx=as_array(pairs(start_xx)),
        times=grid.t.size,
        norm0=float(np.sum(grid.w * np.abs(start) ** 2)),
        slope_recovery=float(cfg.model.slope_recovery),
    )
    plan = plan_from(cfg)
    params = {"net": params}
    return Built(potential, problem, plan, train.init_state(problem, plan, params))


@functools.cache
def _compiled_fields():
    """tdse.fields compiled once per grid shape for all windows (their trial functions, the
    static arguments, are equal), not once per call."""
    import jax

    from . import tdse

    return jax.jit(tdse.fields, static_argnums=(0, 1, 2))


def window_fields(window: Window, x: np.ndarray, t: np.ndarray, start, start_xx):
    """psi and psi'' (T, X) complex of one window at local times t (T,) and points x (X,), from
    its start values there."""
    import jax.numpy as jnp

    problem = window.built.problem
    xt = np.stack(np.meshgrid(x, t, indexing="xy"), -1).reshape(-1, 2)  # (T * X, 2), x fastest
    tile = lambda z: np.tile(np.stack([z.real, z.imag], -1), (t.size, 1))  # noqa: E731
    evaluate = _compiled_fields()
    dtype = problem.x.dtype
    p, _, p_xx = evaluate(
        *(problem.net, problem.interval, problem.window),
        window.result.params["net"],
        jnp.asarray(xt, dtype),
        jnp.asarray(tile(start), dtype),
        jnp.asarray(tile(start_xx), dtype),
    )
    as_complex = lambda a: (np.asarray(a)[:, 0] + 1j * np.asarray(a)[:, 1]).reshape(t.size, -1)  # noqa: E731
    return as_complex(p), as_complex(p_xx)


def chain(windows: list[Window], tau: float, x: np.ndarray, t: np.ndarray, psi0, psi0_xx):
    """psi and psi'' (T, X) at global times t (within the trained windows) and points x: each
    window from the previous one's end."""
    psi = np.zeros((t.size, x.size), complex)
    psi_xx = np.zeros_like(psi)
    start, start_xx = psi0, psi0_xx
    done = np.zeros(t.size, bool)
    for w in windows:
        mine = ~done & (t <= (w.k + 1) * tau * (1 + 1e-12))
        if mine.any():
            p, p_xx = window_fields(w, x, t[mine] - w.k * tau, start, start_xx)
            psi[mine], psi_xx[mine] = p, p_xx
            done |= mine
        end, end_xx = window_fields(w, x, np.array([tau]), start, start_xx)
        start, start_xx = end[0], end_xx[0]
    return psi, psi_xx


def run(cfg: Config, run_dir: Path, *, t_start: float | None = None, resume: bool = False):
    """Train the windows in order, judge, write the run folder; returns a RunResult."""
    with run_frame(cfg, run_dir, metric_fields(cfg), t_start) as frame:
        potential = potential_from(cfg)
        psi0 = initial_state(cfg, potential)
        grid = grid_from(cfg, potential, psi0)
        log.info(
            "%s on %s: %d window(s) of %.6g, %d x %d nodes each; x input scaled over [%.4g, %.4g]",
            *(psi0.name, potential.name, grid.windows, grid.tau, grid.x.size, grid.t.size),
            *grid.features,
        )
        windows = train_windows(cfg, potential, psi0, grid, frame, resume)
        summary = judge_run(cfg, potential, psi0, grid, windows, frame.run_dir)
        write_summary(frame, summary, [w.result for w in windows])
        log.info(
            "relative L2 error over space-time %.3e (at t = T %.3e); norm drift %.2e; "
            "<H> drift %.2e",
            summary["wavefunction"]["l2_error"],
            summary["wavefunction"]["l2_error_final"],
            summary["norm"]["max_drift"],
            summary["energy"]["max_drift"],
        )
    return RunResult(exit_code(cfg, windows[-1].result.status, summary, frame.stop), summary)


def metric_fields(cfg: Config) -> list[str]:
    fields = ["window", "step", "stage", "loss", "residual", "norm_drift", "lr", "elapsed_s"]
    fields += ["slope_recovery"] if cfg.model.slope_recovery > 0 else []
    return fields + (
        ["cg_iters"] if cfg.optim.refine == "lm" and cfg.optim.solver != "explicit" else []
    )


def train_windows(cfg, potential, psi0, grid: Grid, frame, resume: bool) -> list[Window]:
    """Each window from the last one's end, until all are trained or one does not complete."""
    start, start_xx = psi0.values(grid.x)
    windows: list[Window] = []
    for k in range(grid.windows):
        built = build_window(cfg, potential, grid, k, start, start_xx)
        sub = f"{outputs.CHECKPOINTS}/window_{k}"
        result = train_one(cfg, k, built, frame, resume, sub=sub, label="window")
        windows.append(Window(k, built, result))
        if result.status != "completed":
            break
        end, end_xx = window_fields(windows[-1], grid.x, np.array([grid.tau]), start, start_xx)
        start, start_xx = end[0], end_xx[0]
    return windows


def judge_run(cfg: Config, potential, psi0, grid: Grid, windows: list[Window], run_dir) -> dict:
    """Against the reference propagation: errors and observables on a fine rule at time.frames
    times, psi_t.npz and the figures on an even grid; summary.json's content."""
    from . import evaluation, evaluation_time, plots_time, propagation, quadrature

    reached = (windows[-1].k + (windows[-1].result.status == "completed")) * grid.tau
    t = np.linspace(0.0, max(reached, 0.0), cfg.time.frames if reached > 0 else 1)
    ref = propagation.propagator(potential, psi0)
    fine = quadrature.gauss_fixed(potential.box, 128)
    xf, wf = fine.x[:, 0], fine.w
    vf = np.asarray(potential(xf), float) * np.ones_like(xf)
    psi, psi_xx = chain(windows, grid.tau, xf, t, *psi0.values(xf))
    judged, obs = evaluation_time.judge(t, psi, psi_xx, ref(xf, t), xf, wf, vf, ref.energy())
    obs_ref = evaluation_time.observables(ref(xf, t), np.zeros_like(psi), xf, wf, vf)
    obs_ref["energy"] = np.full_like(t, ref.energy())
    x_plot = evaluation.plot_points(potential)[:, 0]
    v_plot = np.asarray(potential(x_plot), float) * np.ones_like(x_plot)
    psi_plot = chain(windows, grid.tau, x_plot, t, *psi0.values(x_plot))[0]
    ref_plot = ref(x_plot, t)
    outputs.write_psi_t(run_dir / outputs.PSI_T, x_plot, t, psi_plot, ref_plot, v_plot)
    outputs.write_observables(run_dir / outputs.OBSERVABLES, t, obs, obs_ref)
    title = (
        f"{potential.name}, {psi0.name}: relative L2 error {judged['wavefunction']['l2_error']:.2e}"
    )
    plots_time.density(
        run_dir / outputs.DENSITY_PNG, x_plot, t, psi_plot, ref_plot, v_plot, title=title
    )
    plots_time.snapshots(
        run_dir / outputs.SNAPSHOTS_PNG, x_plot, t, psi_plot, ref_plot, v_plot, title=title
    )
    plots_time.observables(run_dir / outputs.OBSERVABLES_PNG, t, obs, obs_ref, title=title)
    plots_time.density_animation(
        run_dir / outputs.DENSITY_GIF, x_plot, t, psi_plot, ref_plot, v_plot
    )
    failed = evaluation_time.checks(judged, cfg.checks.psi_tol, cfg.checks.norm_tol)
    return _summary(cfg, potential, psi0, grid, windows, judged, failed, ref, t, run_dir)


def _summary(cfg, potential, psi0, grid, windows, judged, failed, ref, t, run_dir) -> dict:
    from . import evaluation

    results = [w.result for w in windows]
    status, reason = results[-1].status, results[-1].stop_reason
    if failed and status == "completed":
        status, reason = "suspect", "; ".join(failed)
    return {
        "equation": "tdse",
        "potential": evaluation.describe(potential),
        "initial": dataclasses.asdict(cfg.initial) if cfg.initial else {"name": psi0.name},
        "time": {"T": cfg.time.T, "windows": grid.windows, "reached": float(t[-1])},
        **judged,
        "reference": {
            "method": f"eigenbasis propagation ({ref.basis.method})",
            "states": int(ref.coefficients.size),
            "truncation": float(ref.truncation),
        },
        "windows": [
            {
                "window": w.k,
                "steps": w.result.step,
                "status": w.result.status,
                "stop_reason": w.result.stop_reason,
                "final_loss": w.result.final_loss[0],
            }
            for w in windows
        ],
        "checks": {"strict": cfg.checks.strict, "failed": failed},
        "steps": sum(r.step for r in results),
        "status": status,
        "stop_reason": reason,
        "timing": {
            "ms_per_step_by_stage": results[0].ms_per_step,
            "solvers": results[0].solvers,
        },
        "seed": cfg.seed,
        "run_dir": str(run_dir),
    }
