"""A multirun sweep folder read back: one `Job` per job folder, from what a single run writes
(`.hydra/overrides.yaml`, `summary.json`, `pinn_run.log`) and the scheduler's logs, with the
standard library only. `pinn-report` (report.py) writes its table and figures from these.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .outputs import HYDRA_OVERRIDES, LOG, SUMMARY

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


def ranked(jobs: list[Job]) -> list[Job]:
    """Completed jobs, best energy first; a missing error sorts last."""
    done = [j for j in jobs if j.completed]
    return sorted(done, key=lambda j: (j.objective is None, j.objective or 0.0, j.num or 0))
