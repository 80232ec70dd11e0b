"""Spectrum benchmark: the first ten states of 1-D potentials in one run each, and smooth
potentials on wide domains with several states. Every row is one state of a real `pinn-run`
process timed from its start to its exit (the wall time is the whole run's, all states).

    python -m benchmarks.spectrum [--out bench-results/spectrum.md] [--only NAME ...]
        [--no-ten] [--no-smooth]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.accuracy import fmt, pinn_run

TEN = ["state=9"]
TEN_CASES: list[tuple[str, list[str]]] = [
    ("infinite_well", TEN),
    ("finite_well", TEN),
    ("barrier", TEN),
    ("double_well", TEN),
    ("harmonic", TEN),
    ("piecewise", TEN),
    ("formula", [*TEN, 'potential.formula="x**4"', "potential.domain=[-5,5]"]),
    ("finite_well", [*TEN, "potential.V0=1"]),
    ("finite_well", [*TEN, "potential.V0=500", "potential.width=0.2"]),
    ("barrier", [*TEN, "potential.V0=200", "potential.width=0.8"]),
    ("harmonic", [*TEN, "potential.omega=2", "potential.domain=[-5,5]"]),
    ("infinite_well", [*TEN, "potential.domain=[-1,2]", "seed=3"]),
    # smooth V without a symmetry (no parity split): an off-centre oscillator, a tilted one,
    # Morse (five bound states, box states above them)
    ("formula", [*TEN, 'potential.formula="x**2"', "potential.domain=[-5,7]"]),
    ("formula", [*TEN, 'potential.formula="x**2+2*sin(3*x)"', "potential.domain=[-6,6]"]),
    ("formula", [*TEN, 'potential.formula="25*(1-exp(-(x-1)))**2"', "potential.domain=[-1,12]"]),
]
TEN_TARGETS = {"energy": 1e-10, "l2": 1e-6, "wall_s": 60.0}

# Smooth wells whose tails decay slowly, on domains much wider than the well, with box states
# (E above V at the walls) right above a few bound states.
SMOOTH_CASES: list[tuple[str, list[str]]] = [
    # Poschl-Teller: two bound states (-2.25, -0.25) in a box 20 times the well's width
    ("formula", ["state=3", 'potential.formula="-3.75/cosh(x)**2"', "potential.domain=[-20,20]"]),
    # a Gaussian well with four bound states
    ("formula", ["state=5", 'potential.formula="-12*exp(-x**2/4)"', "potential.domain=[-15,15]"]),
    # Morse: asymmetric, an anharmonic ladder of bound states
    (
        "formula",
        ["state=4", 'potential.formula="25*(1-exp(-(x-1)))**2"', "potential.domain=[-1,12]"],
    ),
    # quartic oscillator on a wide box: many states, Gaussian-free tails
    ("formula", ["state=9", 'potential.formula="x**4"', "potential.domain=[-5,5]"]),
]
SMOOTH_TARGETS = {"energy": 1e-8, "l2": 1e-5, "wall_s": 120.0}

HEAD = (
    "| potential | overrides | n | E_ref | E_estimate | rel. error | psi L2 error | nodes | parity "
    "| status | wall s | targets met |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n"
)


def rows(potential: str, overrides: list[str], workdir: Path, targets: dict) -> list[str]:
    """One row per state: targets met when the energy and psi errors and the whole run's wall
    time are within the targets, state n has n nodes, the energies are in order and the
    self-checks passed."""
    s, wall, error = pinn_run(potential, overrides, workdir)
    ov = " ".join(overrides)
    if s is None:
        return [f"| {potential} | {ov} | failed: {error} | | | | | | | | {wall:.1f} | no |"]
    energies = [st["energy"]["estimate"] for st in s["states"]]
    ordered = energies == sorted(energies)
    lines = []
    for st in s["states"]:
        e, l2 = st["energy"], st["wavefunction"]["l2_error"]
        met = (
            e["rel_error"] <= targets["energy"]
            and l2 <= targets["l2"]
            and st["nodes"] == st["n"]
            and ordered
            and st["status"] == "completed"
            and wall <= targets["wall_s"]
        )
        lines.append(
            f"| {potential} | {ov} | {st['n']} | {e['reference']:.12g} | {e['estimate']:.12g} "
            f"| {fmt(e['rel_error'])} | {fmt(l2)} | {st['nodes']} | {st['parity'] or '-'} "
            f"| {st['status']} | {wall:.1f} | {'yes' if met else 'no'} |"
        )
    return lines


def summary_line(lines: list[str]) -> str:
    met = sum(line.endswith("| yes |") for line in lines)
    return f"{met} of {len(lines)} states meet every target."


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="bench-results/spectrum.md")
    ap.add_argument("--only", nargs="*", help="potential names to keep")
    ap.add_argument("--no-ten", action="store_true", help="skip the ten-state table")
    ap.add_argument("--no-smooth", action="store_true", help="skip the smooth wide-domain table")
    args = ap.parse_args()
    keep = lambda c: not args.only or c[0] in args.only  # noqa: E731
    ten, smooth = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for potential, overrides in filter(keep, [] if args.no_ten else TEN_CASES):
            ten += rows(potential, overrides, Path(tmp), TEN_TARGETS)
            print("\n".join(ten[-10:]), file=sys.stderr, flush=True)
        for potential, overrides in filter(keep, [] if args.no_smooth else SMOOTH_CASES):
            smooth += rows(potential, overrides, Path(tmp), SMOOTH_TARGETS)
            print("\n".join(smooth[-10:]), file=sys.stderr, flush=True)
    text = (
        f"Spectrum benchmark, {time.strftime('%Y-%m-%d')}, {platform.machine()} "
        f"{os.cpu_count()} cores, {platform.python_version()}; wall time of the whole `pinn-run` "
        "command (all states of the run).\n"
    )
    if ten:
        text += (
            f"\nTen states (`state=9`). Targets: E rel. error <= {TEN_TARGETS['energy']:g}, "
            f"psi L2 <= {TEN_TARGETS['l2']:g}, n nodes for state n, in order, self-checks "
            f"passed, <= {TEN_TARGETS['wall_s']:g} s. {summary_line(ten)}\n\n"
            + HEAD
            + "\n".join(ten)
            + "\n"
        )
    if smooth:
        text += (
            f"\nSmooth wells on wide domains. Targets: E rel. error <= "
            f"{SMOOTH_TARGETS['energy']:g}, psi L2 <= {SMOOTH_TARGETS['l2']:g}, in order, "
            f"self-checks passed, <= {SMOOTH_TARGETS['wall_s']:g} s. {summary_line(smooth)}\n\n"
            + HEAD
            + "\n".join(smooth)
            + "\n"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
