"""`pinn-report SWEEP_FOLDER`: one table and a few figures from a multirun sweep.

Each job folder holds what a single run writes (`.hydra/overrides.yaml`, `summary.json`,
`metrics.csv`, `pinn_run.log`). This module reads them back with the standard library, NumPy and
matplotlib only: no JAX, no Hydra, so it starts in a moment and runs anywhere the folder is.

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
import json
import math
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import study
from .outputs import HYDRA_OVERRIDES, LOG, METRICS, PSI, SUMMARY, WAVEFUNCTION_PNG

SUMMARY_CSV = "summary.csv"
REPORT_MD = "report.md"
FIGURES = "figures"
SEED = "seed"
SUSPECT = "suspect"  # a job whose summary reports a state that failed a self-check
OBJECTIVE = "energy.rel_error"

# summary.csv columns read from summary.json: column -> path inside summary.json
SUMMARY_COLUMNS = {
    "energy.estimate": ("energy", "estimate"),
    "energy.rel_error": ("energy", "rel_error"),
    "energy.learned_rel_error": ("energy", "learned_rel_error"),
    "wavefunction.l2_error": ("wavefunction", "l2_error"),
    "wall_s": ("timing", "wall_s"),
    "ms_per_step": ("timing", "ms_per_step"),
    "config_hash": ("provenance", "config_hash"),
    "ensemble.size": ("ensemble", "size"),
    "ensemble.energy_std": ("ensemble", "energy", "std"),  # spread over the members
    "norm.max_drift": ("norm", "max_drift"),  # equation=tdse
}
# Only when some job's summary has them.
OPTIONAL_COLUMNS = {"config_hash", "ensemble.size", "ensemble.energy_std", "norm.max_drift"}
# equation=tdse jobs are ranked by psi's relative L2 error over space and time.
TDSE_OBJECTIVE = "wavefunction.l2_error"

LOG_LINE = re.compile(r"^\[[^\]]*\]\[([^\]]*)\]\[([A-Z]+)\] - (.*)$")  # Hydra's job_logging format
NOTHING_LOGGED = "no summary.json and an empty log: still running, killed, or failed before logging"


class ReportError(Exception):
    """The folder is not a sweep (or holds no jobs yet): one line, no traceback."""


@dataclass
class Job:
    folder: Path
    name: str  # the folder, relative to the sweep
    num: int | None  # hydra.job.num
    overrides: dict[str, str]
    summary: dict | None
    status: str  # summary's status, or "failed" / "unfinished" without a summary
    error: str | None  # why it did not complete; None when it did

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    def value(self, column: str):
        """A summary.csv value: an override, or a number from summary.json (None when absent)."""
        if column in SUMMARY_COLUMNS:
            return dig(self.summary, SUMMARY_COLUMNS[column])
        return self.overrides.get(column)

    @property
    def objective(self) -> float | None:
        tdse = isinstance(self.summary, dict) and self.summary.get("equation") == "tdse"
        return finite(self.value(TDSE_OBJECTIVE if tdse else OBJECTIVE))


def dig(tree, path: Iterable[str]):
    for key in path:
        if not isinstance(tree, dict):
            return None
        tree = tree.get(key)
    return tree


def finite(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


# ---------------------------------------------------------------- reading the sweep folder


def parse_overrides(text: str) -> dict[str, str]:
    """`.hydra/overrides.yaml` (a YAML list of `key=value` strings) as {key: value}.

    `+key`/`++key` become `key`; a deletion `~key` has the value "".
    """
    items: list[str] = []
    for line in text.splitlines():
        if line.startswith("- "):
            items.append(line[2:].strip())
        elif line.startswith(" ") and line.strip() and items:  # a long plain scalar, folded
            items[-1] += " " + line.strip()
    out = {}
    for item in map(_yaml_scalar, items):
        key, _, value = item.partition("=")
        out[key.strip().lstrip("+~")] = value
    return out


def _yaml_scalar(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1].replace("''", "'")
    if len(text) >= 2 and text[0] == text[-1] == '"':
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text[1:-1]
    return text


def hydra_job_fields(text: str) -> dict[str, str]:
    """The scalar keys of `hydra.job` in `.hydra/hydra.yaml` (num, id, name, ...), unparsed."""
    fields, inside = {}, False
    for line in text.splitlines():
        if line == "  job:":
            inside = True
        elif inside:
            if line.strip() and not line.startswith("    "):
                break
            match = re.match(r"^    (\w+): (.+)$", line)
            if match:
                fields[match.group(1)] = _yaml_scalar(match.group(2).strip())
    return fields


def find_job_folders(sweep: Path) -> list[Path]:
    """The sweep's subfolders with a `.hydra/` inside (hidden ones such as .submitit skipped)."""
    return [
        child
        for child in sorted(sweep.iterdir())
        if child.is_dir() and not child.name.startswith(".") and (child / ".hydra").is_dir()
    ]


def error_from_log(text: str) -> str | None:
    """The last ERROR record of a Hydra job log, with the exception its traceback ends in."""
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    error_at, message = None, None
    for i, line in enumerate(lines):
        match = LOG_LINE.match(line)
        if match and match.group(2) in ("ERROR", "CRITICAL"):
            error_at, message = i, match.group(3)
    tracebacks = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent")]
    exception = None
    if tracebacks and (error_at is None or tracebacks[-1] > error_at):
        body = []
        for line in lines[tracebacks[-1] + 1 :]:
            if LOG_LINE.match(line):
                break
            if not line.startswith((" ", "\t")):
                body.append(line)
        exception = body[-1] if body else None
    if message and exception and exception not in message:
        return f"{message}: {exception}"
    return message or exception


def error_from_scheduler_log(text: str) -> str | None:
    """A job's stderr as submitit kept it: a traceback, or the scheduler's last error line."""
    found = error_from_log(text)
    if found:
        return found
    hits = [
        line.strip()
        for line in text.splitlines()
        if re.search(r"error|cancelled|killed|out of memory|oom", line, re.IGNORECASE)
    ]
    return hits[-1] if hits else None


def _scheduler_logs(sweep: Path, job_id: str | None) -> list[Path]:
    if not job_id or not (sweep / ".submitit").is_dir():
        return []
    return sorted((sweep / ".submitit").rglob(f"{glob_escape(job_id)}_*log.err"))


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def load_job(folder: Path, sweep: Path) -> Job:
    hydra = hydra_job_fields(_read(folder / ".hydra" / "hydra.yaml"))
    num = hydra.get("num", folder.name)
    overrides = parse_overrides(_read(folder / HYDRA_OVERRIDES))
    summary, error = None, None
    summary_path = folder / SUMMARY
    if summary_path.exists():
        try:
            summary = json.loads(summary_path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            error = f"summary.json is unreadable ({err})"
    if isinstance(summary, dict):
        status = str(summary.get("status") or "unknown")
        if status != "completed":
            error = summary.get("stop_reason") or f"status {status}"
        return Job(folder, _relative(folder, sweep), _int(num), overrides, summary, status, error)
    log = _read(folder / LOG)
    error = error or error_from_log(log)
    for path in _scheduler_logs(sweep, hydra.get("id")):
        error = error or error_from_scheduler_log(_read(path))
    status = "failed" if error else "unfinished"
    if error is None:
        last = [line for line in log.splitlines() if line.strip()]
        error = f"no summary.json; the log ends: {_message(last[-1])}" if last else NOTHING_LOGGED
    return Job(folder, _relative(folder, sweep), _int(num), overrides, None, status, error)


def members_of(job: Job) -> list[Job]:
    """A completed ensemble job (`train.ensemble=K`: seeds seed..seed+K-1 trained in one
    process, the way a study batches its seeds) as its K networks, one Job per member read from
    its `members/<i>/summary.json`, with the member's seed as its `seed` override, so the tables
    and figures treat them as the seeds they are. Each member's `timing.wall_s` is the job's
    wall time over K (what one network cost); the ensemble's size and spread stay in its
    columns. Any other job, or one whose member summaries are missing, is itself."""
    ensemble = dig(job.summary, ("ensemble",)) if job.completed else None
    members = ensemble.get("members") if isinstance(ensemble, dict) else None
    if not isinstance(members, list) or not members:
        return [job]
    out = []
    for entry in members:
        folder = job.folder / str(entry.get("dir", ""))
        try:
            summary = json.loads((folder / SUMMARY).read_text())
        except (OSError, json.JSONDecodeError, TypeError):
            return [job]
        if not isinstance(summary, dict):
            return [job]
        wall = finite(dig(job.summary, ("timing", "wall_s")))
        timing = {**(summary.get("timing") or {})}
        timing["wall_s"] = None if wall is None else wall / len(members)
        summary = {**summary, "timing": timing, "ensemble": _spread(ensemble)}
        seed = entry.get("seed", summary.get("seed"))
        status = str(summary.get("status") or "unknown")
        error = None if status == "completed" else summary.get("stop_reason") or f"status {status}"
        overrides = {**job.overrides, SEED: str(seed)}
        name = f"{job.name}/{entry.get('dir')}"
        out.append(Job(folder, name, job.num, overrides, summary, status, error))
    return out


def _spread(ensemble: dict) -> dict:
    """The ensemble's size and energy spread, for its members' rows."""
    return {"size": ensemble.get("size"), "energy": {"std": dig(ensemble, ("energy", "std"))}}


def _message(line: str) -> str:
    match = LOG_LINE.match(line)
    return match.group(3) if match else line.strip()


def _relative(folder: Path, sweep: Path) -> str:
    return folder.relative_to(sweep).as_posix()


def _int(text) -> int | None:
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def load_sweep(sweep: Path) -> list[Job]:
    """Every job of the sweep, in job-number order; a ReportError if `sweep` is not a sweep."""
    sweep = Path(sweep)
    if not sweep.exists():
        raise ReportError(f"{sweep}: no such folder")
    if not sweep.is_dir():
        raise ReportError(f"{sweep} is a file; give the sweep folder (multirun/DATE/TIME)")
    if (sweep / ".hydra").is_dir():
        raise ReportError(
            f"{sweep} is a single run's folder (it has .hydra/), not a sweep; give the multirun "
            f"folder that holds the jobs, e.g. multirun/DATE/TIME"
        )
    folders = find_job_folders(sweep)
    if not folders:
        if (sweep / "multirun.yaml").exists():
            raise ReportError(f"{sweep} is a sweep with no job folders yet (none has .hydra/)")
        raise ReportError(
            f"{sweep} is not a sweep folder: no subfolder has .hydra/ "
            f"(pinn-run -m writes multirun/DATE/TIME/N/)"
        )
    jobs = [one for folder in folders for one in members_of(load_job(folder, sweep))]
    return sorted(jobs, key=lambda j: (j.num is None, j.num if j.num is not None else 0, j.name))


# ---------------------------------------------------------------- the table


def override_keys(jobs: list[Job]) -> list[str]:
    """Every override key, in the order the jobs list them."""
    return list(dict.fromkeys(k for job in jobs for k in job.overrides))


def swept_keys(jobs: list[Job]) -> list[str]:
    """Override keys whose value is not the same in every job."""
    return [
        key
        for key in override_keys(jobs)
        if len({job.overrides.get(key) for job in jobs}) > 1
        or any(key not in job.overrides for job in jobs)
    ]


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


def ranked(jobs: list[Job]) -> list[Job]:
    """Completed jobs, best energy first; a missing error sorts last."""
    done = [j for j in jobs if j.completed]
    return sorted(done, key=lambda j: (j.objective is None, j.objective or 0.0, j.num or 0))


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
        settings = _label((k, best[0].overrides.get(k)) for k in swept)
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


# ---------------------------------------------------------------- figures


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


def _label(settings: Iterable[tuple[str, str]]) -> str:
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
                label=_label(settings),
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
            ax.plot(steps, rel, lw=1.6, label=f"#{job.num} {_label(settings)}")
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
        settings = _label([(k, job.overrides.get(k)) for k in swept])
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
