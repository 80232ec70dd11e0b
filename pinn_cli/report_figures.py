"""pinn-report's figures (matplotlib, imported when drawn): energy error against each swept
setting, the Rayleigh quotient's convergence of every job, psi of the best jobs."""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .outputs import METRICS, PSI, WAVEFUNCTION_PNG
from .sweep_jobs import SEED, SUSPECT, Job, dig, finite, ranked, swept_keys


def _numeric(values: list[str]) -> list[float] | None:
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError):
        return None


def short(value) -> str:
    """An override value for a label: floats to 4 significant digits, anything else as is."""
    text = "" if value is None else str(value)
    if re.fullmatch(r"[-+]?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?", text) and not text.isdigit():
        return f"{float(text):.4g}"
    return text


def label(settings: Iterable[tuple[str, str]]) -> str:
    return ", ".join(f"{k}={short(v)}" for k, v in settings) or "all runs"


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def _order(value: str):
    """Sort key for setting values: numbers by value, before any text."""
    number = _numeric([value])
    return (0, number[0], "") if number else (1, 0.0, value)


def error_series(jobs: list[Job], key: str, others: list[str]) -> dict[tuple, dict[str, list]]:
    """The energy errors of the jobs that trained to the end, suspect ones included (an
    unconverged width is a point of the study too): {settings of `others`: {value: [errors]}}."""
    series: dict[tuple, dict[str, list]] = {}
    for job in ranked(jobs) + [j for j in jobs if j.status == SUSPECT]:
        if job.objective is None or key not in job.overrides:
            continue
        settings = tuple((k, job.overrides.get(k)) for k in others)
        errors = series.setdefault(settings, {}).setdefault(job.overrides[key], [])
        errors.append(max(job.objective, 1e-17))
    return dict(sorted(series.items(), key=lambda kv: [_order(v or "") for _, v in kv[0]]))


def error_vs(path: Path, jobs: list[Job], key: str, swept: list[str]) -> Path | None:
    """Energy error against one swept setting: a line per combination of the other settings,
    seeds drawn as the median with a min-max bar. Text settings are categories on the x axis."""
    import matplotlib.pyplot as plt

    series = error_series(jobs, key, [k for k in swept if k not in (key, SEED)])
    if not series:
        return None
    values = [v for v in dict.fromkeys(j.overrides.get(key) for j in jobs) if v is not None]
    numbers = _numeric(values)
    categorical = numbers is None
    position = dict(zip(values, range(len(values)) if categorical else numbers))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if len(series) > 1 and sum(map(len, series.values())) < 2 * len(series):
        # one or two points per line (a random or optuna search): every job as a dot
        xy = [(position[v], e) for by in series.values() for v, es in by.items() for e in es]
        ax.scatter(*zip(*xy), s=18)
    else:
        for i, (settings, by_value) in enumerate(series.items()):
            xs = sorted(by_value, key=position.get)
            med = np.array([np.median(by_value[v]) for v in xs])
            spread = [med - [min(by_value[v]) for v in xs], [max(by_value[v]) for v in xs] - med]
            dodge = 0.08 * (i - (len(series) - 1) / 2) if categorical else 0.0
            ax.errorbar(
                [position[v] + dodge for v in xs],
                med,
                yerr=spread,
                fmt="o" if categorical else "o-",
                capsize=3,
                label=label(settings),
            )
        if 1 < len(series) <= 12:
            ax.legend(fontsize=8)
    if categorical:
        ax.set_xticks(range(len(values)), values, rotation=30 if len(values) > 5 else 0)
    elif min(numbers) > 0 and max(numbers) / min(numbers) > 5:
        ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(key)
    ax.set_ylabel("energy relative error")
    ax.set_title("median over seeds, bars min to max" if SEED in swept else "", fontsize=9)
    return _save(fig, path)


def read_columns(path: Path) -> dict[str, np.ndarray]:
    """A CSV's numeric columns as float arrays (text becomes NaN)."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}

    def number(text):
        try:
            return float(text)
        except (TypeError, ValueError):
            return math.nan

    return {k: np.array([number(r.get(k)) for r in rows]) for k in rows[0]}


def convergence(path: Path, jobs: list[Job], swept: list[str], highlight: int) -> Path | None:
    """Relative error of the Rayleigh quotient against step for every job; the best few coloured."""
    import matplotlib.pyplot as plt

    best = {j.name: rank for rank, j in enumerate(ranked(jobs)[:highlight])}
    curves = []
    for job in jobs:
        reference = finite(dig(job.summary, ("energy", "reference")))
        metrics = job.folder / METRICS
        if reference is None or reference == 0 or not metrics.exists():
            continue
        columns = read_columns(metrics)
        if "step" not in columns or "rayleigh" not in columns:
            continue
        rel = np.abs(columns["rayleigh"] - reference) / abs(reference)
        keep = np.isfinite(rel)
        curves.append((job, columns["step"][keep], np.maximum(rel[keep], 1e-17)))
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for job, steps, rel in curves:
        if job.name in best:
            continue
        ax.plot(steps, rel, color="0.6", lw=0.8, alpha=0.6)
    for job, steps, rel in sorted(curves, key=lambda c: best.get(c[0].name, 0)):
        if job.name in best:
            settings = [(k, job.overrides.get(k)) for k in swept]
            ax.plot(steps, rel, lw=1.6, label=f"#{job.num} {label(settings)}")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("|E_Rayleigh - E_ref| / |E_ref|")
    ax.set_title(f"{len(curves)} runs; the best {len(best)} coloured", fontsize=9)
    if best:
        ax.legend(fontsize=8)
    return _save(fig, path)


def best_psi(path: Path, jobs: list[Job], swept: list[str], count: int) -> Path | None:
    """psi of the best runs against the reference: from psi.csv, else their wavefunction.png."""
    import matplotlib.pyplot as plt

    best = ranked(jobs)[:count]
    if not best:
        return None
    fig, axes = plt.subplots(1, len(best), figsize=(4.2 * len(best), 3.6), squeeze=False)
    for ax, job in zip(axes[0], best):
        settings = label([(k, job.overrides.get(k)) for k in swept])
        ax.set_title(
            f"#{job.num} {settings}\nE rel. error {job.objective or math.nan:.2e}", fontsize=8
        )
        psi_file, png = job.folder / PSI, job.folder / WAVEFUNCTION_PNG
        columns = read_columns(psi_file) if psi_file.exists() else {}
        if {"x", "psi", "psi_exact"} <= set(columns):
            ax.plot(columns["x"], columns["psi_exact"], color="k", lw=2.5, alpha=0.45)
            ax.plot(columns["x"], columns["psi"], color="C0", lw=1.2, ls="--")
            ax.set_xlabel("x")
        elif png.exists():
            ax.imshow(plt.imread(png))
            ax.set_axis_off()
        else:
            ax.text(0.5, 0.5, "no psi.csv or wavefunction.png", ha="center", va="center")
            ax.set_axis_off()
    axes[0][0].set_ylabel("psi(x): run dashed, reference grey")
    return _save(fig, path)


def figures(folder: Path, jobs: list[Job], best: int) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    folder.mkdir(exist_ok=True)
    swept = swept_keys(jobs)
    drawn = [
        error_vs(folder / f"error_vs_{_filename(key)}.png", jobs, key, swept)
        for key in swept
        if key != SEED
    ]
    drawn.append(convergence(folder / "convergence.png", jobs, swept, best))
    drawn.append(best_psi(folder / "best_psi.png", jobs, swept, best))
    return [p for p in drawn if p is not None]


def _filename(key: str) -> str:
    return re.sub(r"[^\w.=-]+", "_", key)
