"""Accuracy benchmark: the three default experiments and parameter variants, each a real
`pinn-run` process timed from its start to its exit. Prints a markdown table and writes it to --out.

    python -m benchmarks.accuracy [--out bench-results/accuracy.md] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PINN_RUN = Path(sys.executable).parent / "pinn-run"

CASES: list[tuple[str, list[str]]] = [
    ("infinite_well", []),
    ("finite_well", []),
    ("barrier", []),
    ("infinite_well", ["potential.domain=[-1,2]"]),
    ("finite_well", ["potential.V0=1"]),
    ("finite_well", ["potential.V0=500"]),
    ("finite_well", ["potential.width=0.2"]),
    ("finite_well", ["potential.width=3.2"]),
    ("finite_well", ["potential.domain=[-1,3]", "potential.centre=0.5"]),
    ("finite_well", ["seed=3"]),
    ("barrier", ["potential.V0=1"]),
    ("barrier", ["potential.V0=500"]),
    ("barrier", ["potential.width=0.05"]),
    ("barrier", ["potential.width=0.8"]),
    ("barrier", ["potential.V0=500", "potential.width=0.05"]),
    ("barrier", ["seed=1"]),
]

TARGETS = {"energy": 1e-8, "learned": 1e-6, "l2": 1e-5, "wall_s": 30.0}

STATE_CASES: list[tuple[str, list[str]]] = [
    ("infinite_well", ["state=4"]),
    ("finite_well", ["state=4"]),
    ("barrier", ["state=4"]),
    ("finite_well", ["state=4", "potential.V0=100", "potential.width=1.5"]),
    ("barrier", ["state=4", "potential.V0=200", "potential.width=0.1"]),
    ("harmonic", ["state=4"]),
    ("double_well", ["state=4"]),
]
STATE_TARGETS = {"energy": 1e-6, "l2": 1e-4, "wall_s": 120.0}

# Two dimensions: ground states of defaults and variants, then states 0-5 counted with
# multiplicity (degenerate levels judged as eigenspaces: psi error = subspace error there).
CASES_2D: list[tuple[str, list[str]]] = [
    ("box2d", []),
    ("box2d", ["potential.domain=[[0,2],[0,1]]"]),
    ("harmonic2d", []),
    ("harmonic2d", ["potential.omega=[1,2]"]),
    ("disk", []),
    ("disk", ["potential.radius=2.5"]),
    ("separable2d", []),
    (
        "separable2d",
        [
            "potential.x_segments=[[0,0.3,0],[0.3,0.7,100],[0.7,1,0]]",
            "potential.y_segments=[[0,0.5,20],[0.5,1,0]]",
        ],
    ),
    (
        "separable2d",
        [
            "potential.x_segments=[[0,0.45,0],[0.45,0.55,300],[0.55,1,0]]",
            "potential.y_segments=[[0,0.2,50],[0.2,1,0]]",
        ],
    ),
    ("finite_well2d", []),
    ("finite_well2d", ["potential.V0=1"]),
    ("finite_well2d", ["potential.V0=200"]),
    ("finite_well2d", ["potential.V0=500"]),
    ("finite_well2d", ["potential.V0=500", "potential.width=0.4"]),
    ("finite_well2d", ["potential.V0=100", "potential.width=2.0"]),
    ("finite_well2d", ["potential.width=0.4"]),
    ("finite_well2d", ["potential.width=0.8"]),
    ("finite_well2d", ["potential.width=3.2"]),
    ("finite_well2d", ["potential.width=[1.5,0.8]"]),
    ("formula2d", []),
]
STATE_CASES_2D: list[tuple[str, list[str]]] = [
    ("box2d", ["state=5", "train.points=400"]),
    ("harmonic2d", ["state=5"]),
    ("disk", ["state=5", "train.points=400"]),
    ("separable2d", ["state=5"]),
    ("finite_well2d", ["state=5"]),
    ("formula2d", ["state=5"]),
]
TARGETS_2D = {"energy": 1e-8, "l2": 1e-5, "wall_s": 60.0}
STATE_TARGETS_2D = {"energy": 1e-6, "l2": 1e-4, "wall_s": 240.0}


def pinn_run(potential: str, overrides: list[str], workdir: Path) -> tuple[dict | None, float, str]:
    """(summary or None, wall seconds of the whole command, last stderr line)."""
    run_dir = workdir / f"{potential}-{abs(hash(tuple(overrides)))}"
    cmd = [str(PINN_RUN), f"potential={potential}", *overrides, f"hydra.run.dir={run_dir}"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ})
    wall = time.perf_counter() - t0
    summary = run_dir / "summary.json"
    if proc.returncode != 0 and not summary.exists():  # a suspect run (exit 5) has a summary
        return None, wall, (proc.stderr.strip().splitlines() or [""])[-1]
    return json.loads(summary.read_text()), wall, ""


def run_case(potential: str, overrides: list[str], workdir: Path) -> dict:
    s, wall, error = pinn_run(potential, overrides, workdir)
    if s is None:
        return {"error": error, "wall_s": wall}
    return {
        "E_ref": s["energy"]["reference"],
        "E_est": s["energy"]["estimate"],
        "rel": s["energy"]["rel_error"],
        "learned_rel": s["energy"]["learned_rel_error"],
        "l2": s["wavefunction"]["l2_error"],
        "wall_s": wall,
    }


def fmt(x, spec=".2e"):
    return "n/a" if x is None else format(x, spec)


def table(rows) -> str:
    head = (
        "| potential | overrides | E_ref | E_estimate | rel. error | learned E rel. error "
        "| psi L2 error | wall s | targets met |\n|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for potential, overrides, r in rows:
        ov = " ".join(overrides) or "(defaults)"
        if "error" in r:
            lines.append(
                f"| {potential} | {ov} | failed: {r['error']} | | | | | {r['wall_s']:.1f} | no |"
            )
            continue
        met = (
            r["rel"] <= TARGETS["energy"]
            and (r["learned_rel"] is None or r["learned_rel"] <= TARGETS["learned"])
            and r["l2"] <= TARGETS["l2"]
            and r["wall_s"] <= TARGETS["wall_s"]
        )
        lines.append(
            f"| {potential} | {ov} | {r['E_ref']:.15g} | {r['E_est']:.15g} | {fmt(r['rel'])} "
            f"| {fmt(r['learned_rel'])} | {fmt(r['l2'])} | {r['wall_s']:.1f} | "
            f"{'yes' if met else 'no'} |"
        )
    return head + "\n".join(lines) + "\n"


def state_rows(potential: str, overrides: list[str], workdir: Path) -> list[str]:
    s, wall, error = pinn_run(potential, overrides, workdir)
    ov = " ".join(overrides)
    if s is None:
        return [f"| {potential} | {ov} | failed: {error} | | | | | | | {wall:.1f} | no |"]
    lines = []
    energies = [st["energy"]["estimate"] for st in s["states"]]
    ordered = energies == sorted(energies)
    for st in s["states"]:
        e, l2 = st["energy"], st["wavefunction"]["l2_error"]
        met = (
            e["rel_error"] <= STATE_TARGETS["energy"]
            and l2 <= STATE_TARGETS["l2"]
            and st["nodes"] == st["n"]
            and ordered
            and wall <= STATE_TARGETS["wall_s"]
        )
        lines.append(
            f"| {potential} | {ov} | {st['n']} | {e['reference']:.12g} | {e['estimate']:.12g} "
            f"| {fmt(e['rel_error'])} | {fmt(l2)} | {st['nodes']} | {st['parity'] or '-'} "
            f"| {wall:.1f} | {'yes' if met else 'no'} |"
        )
    return lines


def rows_2d(potential: str, overrides: list[str], workdir: Path, targets: dict) -> list[str]:
    """One row per state of a 2-D run; a degenerate state's psi error is its distance from the
    level's eigenspace, and the level's subspace error is shown with it."""
    s, wall, error = pinn_run(potential, overrides, workdir)
    ov = " ".join(overrides) or "(defaults)"
    if s is None:
        return [f"| {potential} | {ov} | failed: {error} | | | | | | {wall:.1f} | no |"]
    lines, levels = [], {lv["level"]: lv for lv in s.get("levels", [])}
    for st in s["states"]:
        e, l2 = st["energy"], st["wavefunction"]["l2_error"]
        level = levels.get(st.get("level"), {})
        sub = level.get("subspace_error", l2)
        met = (
            e["rel_error"] <= targets["energy"]
            and max(l2, sub) <= targets["l2"]
            and wall <= targets["wall_s"]
            and st["status"] == "completed"
        )
        lines.append(
            f"| {potential} | {ov} | {st['n']} | {e['reference']:.12g} | {e['estimate']:.12g} "
            f"| {fmt(e['rel_error'])} | {fmt(l2)} | {level.get('multiplicity', 1)}: {fmt(sub)} "
            f"| {wall:.1f} | {'yes' if met else 'no (' + st['status'] + ')'} |"
        )
    return lines


TABLE_2D = (
    "| potential | overrides | n | E_ref | E_estimate | rel. error | psi error | level "
    "multiplicity: subspace error | wall s | targets met |\n"
    "|---|---|---|---|---|---|---|---|---|---|\n"
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="bench-results/accuracy.md")
    ap.add_argument("--only", nargs="*", help="potential names to keep")
    ap.add_argument("--no-states", action="store_true", help="skip the excited-state table")
    ap.add_argument("--no-ground", action="store_true", help="skip the ground-state table")
    ap.add_argument("--no-2d", action="store_true", help="skip the two-dimensional tables")
    ap.add_argument("--only-2d", action="store_true", help="only the two-dimensional tables")
    ap.add_argument("--no-2d-ground", action="store_true", help="skip the 2-D ground-state table")
    args = ap.parse_args()
    keep = lambda c: not args.only or c[0] in args.only  # noqa: E731
    rows, state_lines, lines_2d, state_lines_2d = [], [], [], []
    if args.only_2d:
        args.no_ground = args.no_states = True
    with tempfile.TemporaryDirectory() as tmp:
        for potential, overrides in filter(
            keep, [] if args.no_2d or args.no_2d_ground else CASES_2D
        ):
            lines_2d += rows_2d(potential, overrides, Path(tmp), TARGETS_2D)
            print(lines_2d[-1], file=sys.stderr, flush=True)
        for potential, overrides in filter(keep, [] if args.no_2d else STATE_CASES_2D):
            state_lines_2d += rows_2d(potential, overrides, Path(tmp), STATE_TARGETS_2D)
            print("\n".join(state_lines_2d[-6:]), file=sys.stderr, flush=True)
        for potential, overrides in filter(keep, [] if args.no_ground else CASES):
            r = run_case(potential, overrides, Path(tmp))
            rows.append((potential, overrides, r))
            print(f"{potential} {' '.join(overrides)}: {r}", file=sys.stderr, flush=True)
        for potential, overrides in filter(keep, [] if args.no_states else STATE_CASES):
            state_lines += state_rows(potential, overrides, Path(tmp))
            print("\n".join(state_lines[-5:]), file=sys.stderr, flush=True)
    header = (
        f"Accuracy benchmark, {time.strftime('%Y-%m-%d')}, {platform.machine()} "
        f"{os.cpu_count()} cores, {platform.python_version()}; wall time of the whole "
        f"`pinn-run` command. Targets: E rel. error <= {TARGETS['energy']:g}, learned E <= "
        f"{TARGETS['learned']:g}, psi L2 <= {TARGETS['l2']:g}, wall <= {TARGETS['wall_s']:g} s.\n\n"
    )
    text = header + (table(rows) if rows else "")
    if state_lines:
        text += (
            f"\nExcited states (`state=4` finds states 0..4 in one run; wall time for all five). "
            f"Targets: E rel. error <= {STATE_TARGETS['energy']:g}, psi L2 <= "
            f"{STATE_TARGETS['l2']:g}, n nodes for state n, in order, <= "
            f"{STATE_TARGETS['wall_s']:g} s.\n\n"
            "| potential | overrides | n | E_ref | E_estimate | rel. error | psi L2 error | nodes "
            "| parity | wall s | targets met |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
            + "\n".join(state_lines)
            + "\n"
        )
    if lines_2d:
        text += (
            f"\nTwo dimensions, ground states. Targets: E rel. error <= {TARGETS_2D['energy']:g}, "
            f"psi L2 <= {TARGETS_2D['l2']:g}, wall <= {TARGETS_2D['wall_s']:g} s.\n\n"
            + TABLE_2D
            + "\n".join(lines_2d)
            + "\n"
        )
    if state_lines_2d:
        text += (
            f"\nTwo dimensions, states 0-5 counted with multiplicity (`state=5`; wall time for all "
            f"six). Targets: E rel. error <= {STATE_TARGETS_2D['energy']:g}, psi or subspace "
            f"error <= {STATE_TARGETS_2D['l2']:g}, wall <= {STATE_TARGETS_2D['wall_s']:g} s.\n\n"
            + TABLE_2D
            + "\n".join(state_lines_2d)
            + "\n"
        )
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)


if __name__ == "__main__":
    main()
