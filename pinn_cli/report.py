"""`pinn-report SWEEP_FOLDER`: one table and a few figures from a multirun sweep.

Each job folder holds what a single run writes (`.hydra/overrides.yaml`, `summary.json`,
`metrics.csv`, `pinn_run.log`), read back by `sweep_jobs.load_sweep`; this module and its
figures (report_figures.py) use the standard library, NumPy and matplotlib only: no JAX, no
Hydra, so it starts in a moment and runs anywhere the folder is.

Written into the sweep folder:
  summary.csv  one row per job: its overrides, status and headline numbers
  report.md    completed jobs sorted by the energy's relative error, seeds aggregated, the jobs
               that failed or did not finish with their error, and the figures
  figures/     error against each swept parameter, energy convergence, psi of the best runs;
               for a sweep over activation and width and/or depth, the study's heat maps and
               error against wall time (pinn_cli/study.py)
"""

from __future__ import annotations

import argparse
import csv
import math
import re
import sys
from pathlib import Path

import numpy as np

from . import study
from .report_figures import figures, label, short
from .sweep_jobs import (
    OPTIONAL_COLUMNS,
    SEED,
    SUMMARY_COLUMNS,
    SUSPECT,
    Job,
    ReportError,
    finite,
    load_sweep,
    override_keys,
    ranked,
    swept_keys,
)

SUMMARY_CSV = "summary.csv"
REPORT_MD = "report.md"
FIGURES = "figures"


# ---------------------------------------------------------------- summary.csv


def csv_columns(jobs: list[Job]) -> list[str]:
    metrics = [
        c
        for c in SUMMARY_COLUMNS
        if c not in OPTIONAL_COLUMNS or any(j.value(c) is not None for j in jobs)
    ]
    return ["job", "folder", *override_keys(jobs), "status", *metrics, "error"]


def csv_row(job: Job, columns: list[str]) -> dict:
    fixed = {"job": job.num, "folder": job.name, "status": job.status, "error": job.error}
    row = {c: fixed[c] if c in fixed else job.value(c) for c in columns}
    return {c: "" if v is None else v for c, v in row.items()}


def write_csv(path: Path, jobs: list[Job]) -> None:
    columns = csv_columns(jobs)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(csv_row(job, columns) for job in jobs)


# ---------------------------------------------------------------- report.md


def _fmt(value, spec: str = "") -> str:
    if value is None or value == "":
        return "–"
    if isinstance(value, float):
        return format(value, spec) if math.isfinite(value) else str(value)
    return re.sub(r"([|*])", r"\\\1", str(value)).replace("\n", " ")


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _settings(job: Job, keys: list[str]) -> list[str]:
    return [_fmt(short(job.overrides.get(k))) for k in keys]


def results_table(jobs: list[Job], keys: list[str]) -> str:
    header = ["rank", "job", *keys, "E estimate", "E rel. error", "learned E rel. error"]
    header += ["psi L2 error", "wall s", "ms/step"]
    rows = [
        [
            str(rank),
            _fmt(job.num if job.num is not None else job.name),
            *_settings(job, keys),
            _fmt(job.value("energy.estimate"), ".12g"),
            _fmt(job.value("energy.rel_error"), ".3e"),
            _fmt(job.value("energy.learned_rel_error"), ".3e"),
            _fmt(job.value("wavefunction.l2_error"), ".3e"),
            _fmt(job.value("wall_s"), ".1f"),
            _fmt(job.value("ms_per_step"), ".3g"),
        ]
        for rank, job in enumerate(ranked(jobs), start=1)
    ]
    return md_table(header, rows)


def seed_groups(jobs: list[Job], keys: list[str]) -> dict[tuple, list[Job]]:
    """Completed jobs grouped by every swept setting but the seed."""
    groups: dict[tuple, list[Job]] = {}
    for job in ranked(jobs):
        groups.setdefault(tuple(job.overrides.get(k) for k in keys), []).append(job)
    return groups


def seeds_table(jobs: list[Job], swept: list[str]) -> str:
    keys = [k for k in swept if k != SEED]
    rows = []
    for settings, group in seed_groups(jobs, keys).items():
        errors = [e for e in (j.objective for j in group) if e is not None]
        if not errors:
            continue
        l2 = [e for e in (finite(j.value("wavefunction.l2_error")) for j in group) if e is not None]
        stats = [np.median(errors), min(errors), max(errors)]
        rows.append(
            (
                stats[0],
                [
                    *(_fmt(v) for v in settings),
                    str(len(errors)),
                    *(_fmt(float(s), ".3e") for s in stats),
                    _fmt(float(np.median(l2)) if l2 else None, ".3e"),
                ],
            )
        )
    rows.sort(key=lambda r: r[0])
    header = [*keys, "seeds", "median E rel. error", "min", "max", "median psi L2 error"]
    return md_table(header, [r for _, r in rows])


def failures_table(jobs: list[Job], keys: list[str], status: str | None = None) -> str:
    """The jobs that did not complete; with `status`, only those with that status (and the
    column is "failed checks" for suspect jobs)."""
    rows = [
        [_fmt(j.num), _fmt(j.name), *_settings(j, keys), j.status, _fmt(j.error)]
        for j in jobs
        if not j.completed and (status is None or j.status == status)
    ]
    why = "failed checks" if status == SUSPECT else "error"
    return md_table(["job", "folder", *keys, "status", why], rows)


def markdown(
    sweep: Path, jobs: list[Job], figures: list[Path], studied: list[Path] | None = None
) -> str:
    swept = swept_keys(jobs)
    fixed = [k for k in override_keys(jobs) if k not in swept]
    best = ranked(jobs)
    suspect = [j for j in jobs if j.status == SUSPECT]
    failed = [j for j in jobs if not j.completed and j.status != SUSPECT]
    out = [
        f"# Sweep report: {sweep}",
        "",
        f"{len(jobs)} jobs: {len(best)} completed, {len(suspect)} suspect (a state failed a "
        f"self-check), {len(failed)} failed or unfinished. "
        "Objective: relative error of the energy estimate (Rayleigh quotient) against the "
        "reference eigenvalue.",
    ]
    if fixed:
        common = " ".join(f"`{k}={jobs[0].overrides[k]}`" for k in fixed)
        out += ["", f"Common overrides: {common}"]
    if best and best[0].objective is not None:
        settings = label((k, best[0].overrides.get(k)) for k in swept)
        out += [
            "",
            f"Best: job {best[0].num} ({settings}), E rel. error {best[0].objective:.3e}.",
        ]
    out += ["", "## Results (sorted by energy relative error)", "", results_table(jobs, swept)]
    if SEED in swept:
        out += ["", "## Across seeds (median, min and max)", "", seeds_table(jobs, swept)]
    if studied:
        out += ["", *study.markdown(studied, swept)]
    if figures:
        out += ["", "## Figures", ""]
        out += [f"![{p.stem}]({p.parent.name}/{p.name})" for p in figures]
    if suspect:
        out += ["", f"## Suspect jobs ({len(suspect)}): results that failed a self-check", ""]
        out += [failures_table(suspect, swept, SUSPECT)]
    if failed:
        out += ["", f"## Failed or unfinished jobs ({len(failed)})", ""]
        out += [failures_table(failed, swept)]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- entry point


def write_report(sweep: Path, best: int = 3) -> list[Job]:
    """summary.csv, report.md and figures/ in `sweep`; returns the jobs read."""
    sweep = Path(sweep)
    jobs = load_sweep(sweep)
    write_csv(sweep / SUMMARY_CSV, jobs)
    drawn = figures(sweep / FIGURES, jobs, best)
    swept = swept_keys(jobs)
    studied = study.figures(sweep / FIGURES, jobs, swept) if study.applies(swept) else []
    (sweep / REPORT_MD).write_text(markdown(sweep, jobs, drawn, studied))
    return jobs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="pinn-report",
        description="Gather a pinn-run multirun sweep into summary.csv, report.md and figures/.",
    )
    parser.add_argument("sweep", type=Path, metavar="SWEEP_FOLDER", help="multirun/DATE/TIME")
    parser.add_argument("--best", type=int, default=3, help="best runs to draw (default 3)")
    args = parser.parse_args(argv)
    try:
        jobs = write_report(args.sweep, best=max(args.best, 1))
    except ReportError as err:
        print(f"pinn-report: error: {err}", file=sys.stderr)
        return 2
    done = sum(j.completed for j in jobs)
    suspect = sum(j.status == SUSPECT for j in jobs)
    print(
        f"{args.sweep}: {len(jobs)} jobs, {done} completed, "
        + (f"{suspect} suspect, " if suspect else "")
        + f"{len(jobs) - done - suspect} failed or unfinished; wrote {SUMMARY_CSV}, {REPORT_MD} "
        f"and {FIGURES}/"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
