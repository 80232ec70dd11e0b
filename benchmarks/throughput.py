"""Sweep throughput: jobs per hour of a study through each launcher setting, in one run.

    python -m benchmarks.throughput --out bench-results/throughput.md [--study width_depth_study]
        [--batched]

Each setting runs the whole study (`pinn-run -m experiment=STUDY`) as a real process, with its
own empty XLA compilation cache, so no setting profits from another's compilations; within a
setting, jobs of the same shape (the seeds) share the cache as they would in practice. The
"seeds batched" settings (with --batched) run each shape's three seeds as one job
(`seed=0 train.ensemble=3`: one vmapped program, members equal to the seeds' own networks at
the start), and count its three networks as three jobs, as the report does. Settings
run one after another in one invocation, and the table gives each one's wall time, jobs per
hour and its ratio to the basic (sequential) launcher measured beside it.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.speed import cpu_clock, machine, others_load, versions
from pinn_cli import sweep_jobs

BIN = Path(sys.executable).parent
JOBLIB = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
BATCHED = ["seed=0", "train.ensemble=3"]  # a shape's three seeds as one vmapped ensemble
SETTINGS = {  # name -> launcher overrides
    "basic (sequential)": [],
    "joblib, 2 workers": JOBLIB,
}
BATCHED_SETTINGS = {  # with --batched (slower on 2 CPU cores: docs/results.md)
    "basic, seeds batched (train.ensemble=3)": BATCHED,
    "joblib, 2 workers, seeds batched": JOBLIB + BATCHED,
}


def run_study(study: str, overrides: list[str], tmp: Path, name: str) -> dict:
    """Wall time and job outcomes of one whole study."""
    sweep, cache = tmp / f"sweep_{len(list(tmp.iterdir()))}", tmp / f"cache_{name[:5]}"
    cmd = [str(BIN / "pinn-run"), "-m", f"experiment={study}", *overrides]
    cmd += [f"hydra.sweep.dir={sweep}", f"compile_cache={cache}", "progress=false"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    # an ensemble job counts as its networks (sweep_jobs.members_of): jobs are trained networks
    jobs = sweep_jobs.load_sweep(sweep) if sweep.exists() else []
    errors = [job.objective for job in jobs if job.completed and job.objective is not None]
    return {
        "wall_s": wall,
        "jobs": len(jobs),
        "code": proc.returncode,
        "statuses": [job.status for job in jobs],
        "median_error": statistics.median(errors) if errors else float("nan"),
        "worst_error": max(errors, default=float("nan")),
    }


def table(study: str, rows: dict[str, dict], others: float) -> str:
    base = rows["basic (sequential)"]
    lines = [
        "| launcher | jobs | completed | wall s | jobs per hour | vs basic "
        "| median E rel. error | worst |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        per_hour = 3600.0 * r["jobs"] / r["wall_s"]
        ratio = base["wall_s"] / r["wall_s"] * r["jobs"] / max(base["jobs"], 1)
        done = sum(s == "completed" for s in r["statuses"])
        lines.append(
            f"| {name} | {r['jobs']} | {done} | {r['wall_s']:.0f} | {per_hour:.0f} | {ratio:.2f}x "
            f"| {r['median_error']:.1e} | {r['worst_error']:.1e} |"
        )
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    m = machine()
    head = (
        f"Sweep throughput, experiment={study}, {when}, {m['cpu']} ({m['cores']} cores), "
        f"{versions()}; other processes used {others:.0f}% of the machine meanwhile.\n\n"
    )
    return head + "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="bench-results/throughput.md")
    ap.add_argument("--study", default="width_depth_study")
    ap.add_argument("--batched", action="store_true", help="also run the seeds-batched settings")
    args = ap.parse_args()
    settings = {**SETTINGS, **(BATCHED_SETTINGS if args.batched else {})}
    rows, start = {}, cpu_clock()
    with tempfile.TemporaryDirectory() as tmp:
        for name, overrides in settings.items():
            rows[name] = run_study(args.study, overrides, Path(tmp), name)
            print(f"{name}: {rows[name]['wall_s']:.0f} s, {rows[name]['jobs']} jobs", flush=True)
    text = table(args.study, rows, others_load(start))
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
