"""Sweep throughput: jobs per hour of a study through each launcher setting, in one run.

    python -m benchmarks.throughput --out bench-results/throughput.md [--study width_depth_study]

Each setting runs the whole study (`pinn-run -m experiment=STUDY`) as a real process, with its
own empty XLA compilation cache, so no setting profits from another's compilations; within a
setting, jobs of the same shape (the seeds) share the cache as they would in practice. Settings
run one after another in one invocation, and the table gives each one's wall time, jobs per
hour and its ratio to the basic (sequential) launcher measured beside it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.speed import cpu_clock, machine, others_load, versions

BIN = Path(sys.executable).parent
SETTINGS = {  # name -> launcher overrides
    "basic (sequential)": [],
    "joblib, 2 workers": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
}


def run_study(study: str, overrides: list[str], tmp: Path, name: str) -> dict:
    """Wall time and job outcomes of one whole study."""
    sweep, cache = tmp / f"sweep_{len(list(tmp.iterdir()))}", tmp / f"cache_{name[:5]}"
    cmd = [str(BIN / "pinn-run"), "-m", f"experiment={study}", *overrides]
    cmd += [f"hydra.sweep.dir={sweep}", f"compile_cache={cache}", "progress=false"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    statuses = [
        json.loads(p.read_text()).get("status") for p in sorted(sweep.glob("*/summary.json"))
    ]
    return {"wall_s": wall, "jobs": len(statuses), "code": proc.returncode, "statuses": statuses}


def table(study: str, rows: dict[str, dict], others: float) -> str:
    base = rows["basic (sequential)"]
    lines = [
        "| launcher | jobs | completed | wall s | jobs per hour | vs basic |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        per_hour = 3600.0 * r["jobs"] / r["wall_s"]
        ratio = base["wall_s"] / r["wall_s"] * r["jobs"] / max(base["jobs"], 1)
        done = sum(s == "completed" for s in r["statuses"])
        lines.append(
            f"| {name} | {r['jobs']} | {done} | {r['wall_s']:.0f} | {per_hour:.0f} | {ratio:.2f}x |"
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
    args = ap.parse_args()
    rows, start = {}, cpu_clock()
    with tempfile.TemporaryDirectory() as tmp:
        for name, overrides in SETTINGS.items():
            rows[name] = run_study(args.study, overrides, Path(tmp), name)
            print(f"{name}: {rows[name]['wall_s']:.0f} s, {rows[name]['jobs']} jobs", flush=True)
    text = table(args.study, rows, others_load(start))
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
