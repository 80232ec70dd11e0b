"""Which activation, how wide, how deep: the figures of an architecture study.

`pinn-report` draws these when a sweep varies `model.activation` together with `model.width`
and/or `model.depth` (`experiment=architecture_study`). Written into the sweep's figures/:
  study_POTENTIAL.png      per potential, two heat maps with activation down and width x depth
                           across: the median energy error over seeds (log10 colour, one scale
                           for every potential) and its spread, log10(max / min) over seeds
  study_error_vs_time.png  median error against median wall time, one point per architecture
                           and potential: colour the activation, marker the potential

The jobs come from sweep_jobs.load_sweep; this module reads no files. Jobs that trained to the
end count, "suspect" ones included (an architecture that misses the accuracy target is a result).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

ACTIVATION = "model.activation"
WIDTH = "model.width"
DEPTH = "model.depth"
POTENTIAL = "potential"
SEED = "seed"
SHAPE_KEYS = (WIDTH, DEPTH)  # the heat map's columns: the ones the sweep varies
TRAINED = ("completed", "suspect")
FLOOR = 1e-17  # an error of exactly 0 on a log scale
TIME_FIGURE = "study_error_vs_time"
MARKERS = "os^Dv<>pP*hX"


class StudyJob(Protocol):
    """What the study reads of a job (sweep_jobs.Job)."""

    overrides: dict[str, str]
    summary: dict | None
    status: str

    @property
    def objective(self) -> float | None: ...

    def value(self, column: str): ...


def applies(swept: list[str]) -> bool:
    """Whether a sweep over these keys is an architecture study."""
    return ACTIVATION in swept and any(key in swept for key in SHAPE_KEYS)


@dataclass(frozen=True)
class Trial:
    """One trained job, as the study sees it."""

    potential: str
    activation: str
    shape: tuple[int, ...]  # (width, depth), or the one of them the sweep varies
    error: float
    wall_s: float | None


def potential_of(job: StudyJob) -> str:
    """The potential's name from summary.json (set by an experiment's defaults, it is not an
    override), else the override."""
    named = (job.summary or {}).get("potential")
    if isinstance(named, dict) and named.get("name"):
        return str(named["name"])
    return job.overrides.get(POTENTIAL, "")


def _whole(text: str | None) -> int | None:
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def trials(jobs: list[StudyJob], swept: list[str]) -> list[Trial]:
    """The jobs that trained to the end with a finite energy error and an architecture."""
    keys = [k for k in SHAPE_KEYS if k in swept]
    found = []
    for job in jobs:
        shape = tuple(_whole(job.overrides.get(k)) for k in keys)
        activation = job.overrides.get(ACTIVATION)
        if job.status not in TRAINED or job.objective is None or not activation or None in shape:
            continue
        wall = job.value("wall_s")
        wall = float(wall) if isinstance(wall, int | float) and math.isfinite(wall) else None
        error = max(job.objective, FLOOR)
        found.append(Trial(potential_of(job), activation, shape, error, wall))
    return found


@dataclass
class Grid:
    """One potential's trials by (activation, shape): the heat maps' cells."""

    potential: str
    activations: list[str]
    shapes: list[tuple[int, ...]]
    cells: dict[tuple[str, tuple[int, ...]], list[Trial]] = field(default_factory=dict)

    def _table(self, statistic) -> np.ndarray:
        out = np.full((len(self.activations), len(self.shapes)), np.nan)
        for (activation, shape), group in self.cells.items():
            i, j = self.activations.index(activation), self.shapes.index(shape)
            out[i, j] = statistic(np.array([t.error for t in group]))
        return out

    def median(self) -> np.ndarray:
        """Median energy error over seeds: rows activations, columns shapes; NaN where none."""
        return self._table(np.median)

    def spread(self) -> np.ndarray:
        """log10(max / min) of the error over seeds; NaN where fewer than two seeds."""
        return self._table(lambda e: np.log10(e.max() / e.min()) if e.size > 1 else np.nan)

    def count(self) -> np.ndarray:
        return self._table(len)


def grids(found: list[Trial]) -> list[Grid]:
    """One grid per potential (in the jobs' order), every activation and shape in each."""
    activations = list(dict.fromkeys(t.activation for t in found))
    shapes = sorted({t.shape for t in found})
    by_potential: dict[str, Grid] = {}
    for t in found:
        grid = by_potential.setdefault(t.potential, Grid(t.potential, activations, shapes))
        grid.cells.setdefault((t.activation, t.shape), []).append(t)
    return list(by_potential.values())


def medians(found: list[Trial]) -> list[tuple[Trial, int]]:
    """Per potential, activation and shape: a Trial holding the median error and median wall
    time over seeds, with the number of seeds."""
    groups: dict[tuple, list[Trial]] = {}
    for t in found:
        groups.setdefault((t.potential, t.activation, t.shape), []).append(t)
    out = []
    for (potential, activation, shape), group in groups.items():
        walls = [t.wall_s for t in group if t.wall_s is not None]
        wall = float(np.median(walls)) if walls else None
        error = float(np.median([t.error for t in group]))
        out.append((Trial(potential, activation, shape, error, wall), len(group)))
    return out


# ---------------------------------------------------------------- figures


def shape_label(shape: tuple[int, ...]) -> str:
    return "×".join(map(str, shape))


def shape_title(swept: list[str]) -> str:
    return " × ".join(k.split(".")[-1] for k in SHAPE_KEYS if k in swept)


def _annotate(ax, image, values: np.ndarray, text) -> None:
    """Each cell's value written on it: white on a dark colour, black on a light one."""
    for (i, j), value in np.ndenumerate(values):
        red, green, blue, _ = image.cmap(image.norm(value)) if math.isfinite(value) else (1,) * 4
        dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5
        ax.text(j, i, text(i, j), ha="center", va="center", fontsize=7, color="w" if dark else "k")


def _heat_map(ax, values: np.ndarray, grid: Grid, limits, cmap: str):
    ax.set_facecolor("0.85")  # cells without a trained job
    image = ax.imshow(values, cmap=cmap, vmin=limits[0], vmax=limits[1], aspect="auto")
    ax.set_xticks(range(len(grid.shapes)), [shape_label(s) for s in grid.shapes])
    ax.set_yticks(range(len(grid.activations)), grid.activations)
    if len(grid.shapes) > 6:
        ax.tick_params(axis="x", labelrotation=45)
    return image


def _limits(values: np.ndarray, low: float | None = None) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return (0.0, 1.0)
    lo = float(finite.min()) if low is None else low
    hi = max(float(finite.max()), lo + 1e-3)
    return (lo, hi)


def _median_text(median: np.ndarray, count: np.ndarray, seeds: int):
    def text(i, j):
        if not math.isfinite(median[i, j]):
            return "–"
        n = int(count[i, j])
        return f"{median[i, j]:.1e}" + (f"\n{n}/{seeds}" if n < seeds else "")

    return text


def over(swept: list[str], count: int) -> str:
    """What a cell's `count` runs are: seeds, or seeds pooled with other swept keys."""
    pooled = [k for k in swept if k not in (ACTIVATION, *SHAPE_KEYS, POTENTIAL, SEED)]
    return f"{count} runs (seed, {', '.join(pooled)})" if pooled else f"{count} seeds"


def _decades(value: float) -> str:
    return f"{value:.1f}" if math.isfinite(value) else "–"


def heat_maps(path: Path, grid: Grid, swept: list[str], error_limits) -> Path:
    """The median error (log10 colour, `error_limits` shared by every potential) and the spread
    over seeds, side by side, activation down and width x depth across."""
    import matplotlib.pyplot as plt

    median, spread, count = grid.median(), grid.spread(), grid.count()
    seeds = int(np.nanmax(count)) if np.isfinite(count).any() else 0
    size = (3.0 + 0.9 * len(grid.shapes), max(3.0, 1.4 + 0.42 * len(grid.activations)))
    fig, (left, right) = plt.subplots(1, 2, figsize=(2 * size[0], size[1]), sharey=True)
    log = np.log10(median)
    image = _heat_map(left, log, grid, error_limits, "viridis")
    _annotate(left, image, log, _median_text(median, count, seeds))
    fig.colorbar(image, ax=left, label="log10 median E rel. error")
    left.set_title(f"{grid.potential}: median over {over(swept, seeds)}", fontsize=9)
    image = _heat_map(right, spread, grid, _limits(spread, 0.0), "Oranges")
    _annotate(right, image, spread, lambda i, j: _decades(spread[i, j]))
    fig.colorbar(image, ax=right, label="log10(max / min)")
    right.set_title("spread over seeds (decades; 0: every seed alike)", fontsize=9)
    for ax in (left, right):
        ax.set_xlabel(shape_title(swept))
    left.set_ylabel("activation")
    return _save(fig, path)


def _scatter_legends(ax, activations: list[str], potentials: list[str]) -> None:
    from matplotlib.lines import Line2D

    colours = [
        Line2D([], [], ls="", marker="o", color=f"C{i % 10}", label=a)
        for i, a in enumerate(activations)
    ]
    shapes = [
        Line2D([], [], ls="", marker=MARKERS[i % len(MARKERS)], color="0.3", label=p)
        for i, p in enumerate(potentials)
    ]
    first = ax.legend(handles=colours, title="activation", fontsize=7, loc="upper left")
    first.set_bbox_to_anchor((1.01, 1.0))
    ax.add_artist(first)
    ax.legend(handles=shapes, title="potential", fontsize=7, loc="lower left").set_bbox_to_anchor(
        (1.01, 0.0)
    )


def error_vs_time(path: Path, found: list[Trial], swept: list[str]) -> Path | None:
    """Median error against median wall time per architecture and potential, log axes."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogFormatter

    points = [(t, n) for t, n in medians(found) if t.wall_s is not None and t.wall_s > 0]
    if not points:
        return None
    activations = list(dict.fromkeys(t.activation for t in found))
    potentials = list(dict.fromkeys(t.potential for t in found))
    fig, ax = plt.subplots(figsize=(8, 5))
    for t, _ in points:
        colour = f"C{activations.index(t.activation) % 10}"
        marker = MARKERS[potentials.index(t.potential) % len(MARKERS)]
        ax.scatter(t.wall_s, t.error, color=colour, marker=marker, s=30, alpha=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_major_formatter(LogFormatter())  # 2, 5, 10, 20 s rather than 2x10^0
    ax.xaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 2)))
    ax.set_xlabel("wall time per run, s (median over seeds)")
    ax.set_ylabel("energy relative error (median over seeds)")
    ax.set_title(f"one point per activation, {shape_title(swept)} and potential", fontsize=9)
    ax.grid(True, which="major", alpha=0.3)
    _scatter_legends(ax, activations, potentials)
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def figure_name(potential: str) -> str:
    return "study_" + (re.sub(r"[^\w.=-]+", "_", potential) or "all")


def figures(folder: Path, jobs: list[StudyJob], swept: list[str]) -> list[Path]:
    """The study's figures in `folder` (which exists): per potential, the heat maps; then
    error against wall time. None when no job trained."""
    found = trials(jobs, swept)
    if not found:
        return []
    drawn = []
    all_grids = grids(found)
    limits = _limits(np.log10(np.concatenate([g.median().ravel() for g in all_grids])))
    for grid in all_grids:
        name = f"{figure_name(grid.potential)}.png"
        drawn.append(heat_maps(folder / name, grid, swept, limits))
    drawn.append(error_vs_time(folder / f"{TIME_FIGURE}.png", found, swept))
    return [p for p in drawn if p is not None]


HOW_TO_READ = (
    "Each heat map cell is one architecture (activation down, {shape} across) on one potential: "
    "left, the median over seeds of the energy's relative error on a log10 colour scale shared "
    "by every potential (the number on the cell; `k/n` under it when only k of n seeds trained "
    "to the end); right, how far the seeds disagree, log10(max / min) in decades. The scatter "
    "puts each architecture's median error against its median wall time: the lower left is "
    "accurate and cheap."
)


def markdown(figures: list[Path], swept: list[str]) -> list[str]:
    """report.md's section for the study's figures."""
    if not figures:
        return []
    out = [
        "## Which activation, how wide, how deep",
        "",
        HOW_TO_READ.format(shape=shape_title(swept)),
    ]
    out += [""] + [f"![{p.stem}]({p.parent.name}/{p.name})" for p in figures]
    return out
