"""Judging the trained states: evaluate the networks on the fine quadrature rule, compare each
state with its reference, run the self-checks, write psi.csv and the figures, and build
summary.json's content (for an ensemble, each member's too).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import outputs
from .assemble import Built
from .config import Config

log = logging.getLogger("pinn_run")


@dataclass
class StateRun:
    """One trained state: what was built and how training ended."""

    n: int
    built: Built
    result: object  # train.FitResult


def network_values(built: Built, params, x) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """psi, grad psi and lap psi of one network at points x (N, d), as NumPy arrays."""
    import jax

    xs = jax.numpy.asarray(x, built.problem.x.dtype)
    out = _evaluate()(built.problem.psi, params["net"], xs)
    return tuple(np.asarray(a, float) for a in out)


def network_values_at(built: Built, params, *xs) -> list[tuple[np.ndarray, ...]]:
    """network_values at several point sets (each (N_i, d)) in one call: one compiled program
    for all of them (each new number of points compiles anew: ~0.25 s with an empty cache)."""
    out = network_values(built, params, np.concatenate(xs))
    cuts = np.cumsum([len(x) for x in xs])[:-1]
    return list(zip(*(np.split(a, cuts) for a in out)))


@functools.cache
def _evaluate():
    """physics.evaluate compiled once per trial-function structure and grid shape (the trial
    function is a pytree: an excited state's carrier is an argument, not a constant)."""
    import jax

    from . import physics

    return jax.jit(physics.evaluate)


def judge_states(cfg: Config, runs: list[StateRun], basis, run_dir: Path) -> dict:
    """Judge every state against its reference; write psi.csv and the figures; return the
    summary."""
    from . import evaluation, plots  # SciPy and matplotlib load after training

    potential = runs[0].built.potential
    if potential.dim == 2:
        return _judge_states_2d(cfg, runs, basis, run_dir)
    fine, x_plot = evaluation.fine_rule(potential), evaluation.plot_points(potential)
    at = [  # (fine rule, plotting points, training grid) per state
        network_values_at(r.built, r.result.params, fine[0].x, x_plot, r.built.problem.x)
        for r in runs
    ]
    _finish_basis(basis, runs, at[-1][2])
    raw = [values[0] for values in at]
    psi_q, grad_q, lap_q = (basis.combine([v[k] for v in raw]) for k in range(3))
    psi_x = basis.combine([values[1][0] for values in at])
    (psi_q, grad_q, lap_q, psi_x), mixing = _final_ritz(
        (psi_q, grad_q, lap_q, psi_x), fine[0].w, fine[1]
    )
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
    if len(runs) > 1:
        summary["ritz_mixing"] = mixing
    if failed and summary["status"] == "completed":
        summary["status"] = "suspect"
        summary["stop_reason"] = "; ".join(failed)
    return summary


def _final_ritz(fields: tuple, w, v) -> tuple[tuple, float]:
    """The final Rayleigh-Ritz step over every state's function: `fields` = (psi, grad psi,
    lap psi, any further values), one list over the states each, the first three on the rule
    of weights w where V is v. -> the fields rotated by the step's eigenvectors, and its
    mixing (largest off-diagonal entry). One state, or any non-finite value (a diverged state
    is judged as it is), leaves them as they are, mixing 0."""
    from . import evaluation

    psi, grad = fields[0], fields[1]
    if len(psi) < 2 or not all(np.all(np.isfinite(a)) for a in (*psi, *grad)):
        return fields, 0.0
    rotation = evaluation.ritz_rotation(psi, grad, w, v)
    mixing = float(np.max(np.abs(rotation - np.diag(np.diag(rotation)))))
    return tuple(evaluation.rotate(values, rotation) for values in fields), mixing


def _finish_basis(basis, runs: list[StateRun], last_on_grid) -> None:
    """Add the last state to the basis (its values on the training grid) when it is not yet in
    it: the last state of a run, or one that stopped early, is judged as it is."""
    if len(basis.rows) < len(runs):
        basis.add(*last_on_grid, parity=runs[-1].built.problem.psi.parity)


def _judge_states_2d(cfg: Config, runs: list[StateRun], basis, run_dir: Path) -> dict:
    """judge_states for a 2-D potential: energies and eigenspaces against the reference
    spectrum (degenerate levels judged as subspaces), psi.npz and wavefunction maps."""
    from . import evaluation2d, plots

    potential = runs[0].built.potential
    rule = evaluation2d.fine_rule(potential)
    v = np.asarray(potential.values(rule.x), float)
    grid = evaluation2d.plot_grid(potential)
    at = [  # (fine rule, plotting grid, training grid) per state, in one compiled program
        network_values_at(r.built, r.result.params, rule.x, grid[2], r.built.problem.x)
        for r in runs
    ]
    _finish_basis(basis, runs, at[-1][2])
    raw = [values[0] for values in at]
    psi_q, grad_q, lap_q = (basis.combine([values[k] for values in raw]) for k in range(3))
    on_grid = basis.combine([values[1][0] for values in at])
    # as in 1-D: it separates close levels that training left mixed (separable2d's states 4 and
    # 5, 0.7% apart)
    (psi_q, grad_q, lap_q, on_grid), _ = _final_ritz((psi_q, grad_q, lap_q, on_grid), rule.w, v)
    spectrum = evaluation2d.spectrum_for(potential, len(runs))
    judged, levels = evaluation2d.judge_states(
        potential, rule, v, list(zip(psi_q, grad_q)), spectrum
    )
    states = [_with_training(j, r) for j, r in zip(judged, runs)]
    failed = _self_checks(cfg, states, (rule, v), psi_q, lap_q, symmetric=False)
    norms = [np.sqrt(np.sum(rule.w * p**2)) for p in psi_q]
    _write_maps_2d(potential, grid, on_grid, states, norms, spectrum, run_dir)
    plots.history_figures(run_dir, {s["n"]: s["energy"]["reference"] for s in states})
    summary = _summary(cfg, runs, states, run_dir)
    summary["levels"] = levels
    summary["checks"] = {"strict": cfg.checks.strict, "failed": failed}
    if failed and summary["status"] == "completed":
        summary["status"] = "suspect"
        summary["stop_reason"] = "; ".join(failed)
    return summary


def _write_maps_2d(potential, grid, on_grid, states, norms, spectrum, run_dir: Path) -> None:
    """psi.npz and wavefunction.png of a 2-D run: each state (`on_grid`: its psi on the
    plotting grid) normalised by its norm on the fine rule, with its error against the
    reference level's eigenspace."""
    from . import evaluation2d, plots

    x, y, points, inside = grid
    maps = np.stack([np.where(inside, p / n, np.nan) for p, n in zip(on_grid, norms)])
    reference = evaluation2d.reference_maps(spectrum, points, inside, len(spectrum.energies))
    groups = evaluation2d.levels(np.asarray(spectrum.energies, float))
    level_of = {i: g for g in groups for i in g}
    errors = [evaluation2d.error_map(m, reference, level_of[i], 1.0) for i, m in enumerate(maps)]
    shape = (len(states), len(y), len(x))
    v_grid = np.where(inside, np.asarray(potential.values(points), float), np.nan)
    energies = [s["energy"]["estimate"] for s in states]
    outputs.write_psi_2d(
        run_dir / outputs.PSI_NPZ, x, y, maps.reshape(shape), v_grid.reshape(shape[1:]), energies
    )
    titles = [
        f"state {s['n']}: E = {s['energy']['estimate']:.10g} (reference "
        f"{s['energy']['reference']:.10g})"
        for s in states
    ]
    plots.wavefunction_maps(
        run_dir / outputs.WAVEFUNCTION_PNG,
        x,
        y,
        maps.reshape(shape),
        np.stack(errors).reshape(shape),
        v_grid.reshape(shape[1:]),
        titles=titles,
        title=potential.name,
    )


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
    trained = evaluation.with_training(
        judged,
        learned=learned,
        fixed=problem.fixed_energy,
        steps=result.step,
        status=result.status,
        stop_reason=result.stop_reason,
    )
    # the states of a run share their compiled stages: state 2 and above compile nothing
    trained["timing"] = {"compile_s": result.compile_s, "train_s": result.train_s}
    return trained


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
            "solvers": results[0].solvers,
        },
        "seed": cfg.seed,
        "run_dir": str(run_dir),
    }


def judge_ensemble(cfg: Config, run: StateRun, run_dir: Path) -> dict:
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
        p, g, _ = network_values(built, one.result.params, fine[0].x)
        px = network_values(built, one.result.params, x_plot)[0]
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
