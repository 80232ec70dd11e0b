"""Time-dependent benchmark (equation=tdse): each case a real `pinn-run` process timed from its
start to its exit, judged against the eigenbasis propagation. Prints a markdown table and
writes it to --out.

    python -m benchmarks.tdse [--out bench-results/tdse.md] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.accuracy import pinn_run

# (potential, overrides, targets: relative L2 over space-time, norm drift, wall seconds)
CASES: list[tuple[str, list[str], tuple[float, float, float]]] = [
    (
        "harmonic",
        ["initial=coherent", "initial.x0=1", f"time.T={math.pi!r}"],
        (1e-5, 1e-8, 180.0),
    ),
    (
        "infinite_well",
        ["initial=superposition", "initial.coefficients=[1,1]", f"time.T={2 / (3 * math.pi)!r}"],
        (1e-5, 1e-8, 120.0),
    ),
    ("barrier", ["initial=gaussian"], (1e-3, 1e-6, 300.0)),
    # two more: a phase-only eigenstate and a packet in the finite well
    ("finite_well", ["initial=eigen", "initial.n=1", "time.T=0.2"], (1e-5, 1e-8, 120.0)),
    (
        "harmonic",
        ["initial=gaussian", "initial.x0=-1", "initial.k0=2", "initial.sigma=0.5", "time.T=1.0"],
        (1e-4, 1e-6, 180.0),
    ),
]


def run_case(potential: str, overrides: list[str], workdir: Path) -> dict:
    s, wall, error = pinn_run(potential, overrides, workdir)
    if s is None:
        return {"error": error, "wall_s": wall}
    return {
        "l2": s["wavefunction"]["l2_error"],
        "l2_final": s["wavefunction"]["l2_error_final"],
        "norm": s["norm"]["max_drift"],
        "energy": s["energy"]["max_drift"],
        "windows": s["time"]["windows"],
        "steps": s["steps"],
        "states": s["reference"]["states"],
        "wall_s": wall,
    }


def line(potential: str, overrides: list[str], r: dict, targets) -> str:
    ov = " ".join(overrides)
    l2_t, norm_t, wall_t = targets
    if "error" in r:
        return f"| {potential} | {ov} | failed: {r['error']} | | | | | | {r['wall_s']:.0f} | no |"
    met = r["l2"] <= l2_t and r["norm"] <= norm_t and r["wall_s"] <= wall_t
    return (
        f"| {potential} | {ov} | {r['l2']:.2e} | {r['l2_final']:.2e} | {r['norm']:.1e} "
        f"| {r['energy']:.1e} | {r['windows']} / {r['steps']} | {r['states']} "
        f"| {r['wall_s']:.0f} | {'yes' if met else 'no'} (L2 <= {l2_t:g}, norm <= {norm_t:g}, "
        f"<= {wall_t:g} s) |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="bench-results/tdse.md")
    ap.add_argument("--only", nargs="*", help="potential names to keep")
    args = ap.parse_args()
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        for potential, overrides, targets in CASES:
            if args.only and potential not in args.only:
                continue
            r = run_case(potential, overrides, Path(tmp))
            lines.append(line(potential, overrides, r, targets))
            print(lines[-1], file=sys.stderr, flush=True)
    text = (
        f"Time-dependent benchmark, {time.strftime('%Y-%m-%d')}, {platform.machine()} "
        f"{os.cpu_count()} cores, {platform.python_version()}; wall time of the whole `pinn-run` "
        "command; errors against the eigenbasis propagation (reference states in the table).\n\n"
        "| potential | overrides | rel. L2 (x, t) | rel. L2 at T | norm drift | <H> drift "
        "| windows / steps | ref. states | wall s | targets met |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n" + "\n".join(lines) + "\n"
    )
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
