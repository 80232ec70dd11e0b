"""Second-order stage benchmark: one Levenberg-Marquardt step, explicit and matrix-free, against
one Adam step, measured side by side in one process; then whole commands.

    python -m benchmarks.second_order --out bench-results/second_order.md [--whole]

The problem is the one issue 20 measured: finite well, depth 3, the default trial function and
Gauss points, sizes width x points. Every stage's compiled block is timed (Adam: --adam-block
steps per call; LM: 10 steps per call, the stage's own block) after --warm Adam steps, so the
LM steps start from a partly trained network as in a run. Reported per size: ms per step of
Adam, of the explicit LM (forms the Jacobian) and of the matrix-free one (CG on J v, J^T u), the
LM / Adam ratios, CG iterations per step, and XLA's temporary memory of each compiled block
(`memory_analysis`, the peak of buffers live inside the program). The explicit solver is
skipped above --explicit-max-work (its cost would dominate the run; the issue's table has it).

With --whole the commands `pinn-run potential=finite_well model.width=128 model.depth=3
train.points=1024` and the three defaults are also run and timed (wall, energy error, solver).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.speed import machine, versions

SIZES = [(32, 192), (64, 192), (128, 192), (32, 1024), (64, 1024), (128, 1024)]
DEFAULTS = ["infinite_well", "finite_well", "barrier"]


def build(width: int, points: int, solver: str):
    from hydra import compose, initialize_config_module

    from pinn_cli import assemble
    from pinn_cli.cli import to_config
    from pinn_cli.config import register_configs

    overrides = [
        "progress=false",
        "potential=finite_well",
        "model.depth=3",
        f"model.width={width}",
        f"train.points={points}",
        f"optim.solver={solver}",
    ]
    register_configs()
    with initialize_config_module("pinn_cli.conf", version_base="1.3"):
        cfg = to_config(compose("config", overrides=overrides))
    return assemble.build(cfg)


def temp_bytes(compiled) -> float:
    analysis = compiled.memory_analysis()
    return float(getattr(analysis, "temp_size_in_bytes", float("nan")))


def time_block(stage, problem, params, n: int, reps: int) -> dict:
    """ms per step of `stage`'s block of n steps (median of reps calls), its memory, and the
    stage's extra terms (cg_iters) of the last call."""
    import jax

    opt = stage.init(params)
    compiled = stage.block.lower(problem, params, opt, n).compile()
    out = compiled(problem, params, opt)  # warm-up
    jax.block_until_ready(out[2])
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        out = compiled(problem, out[0], out[1])
        jax.block_until_ready(out[2])
        times.append((time.perf_counter() - t0) / n)
    extra = {k: float(v) for k, v in out[3].items() if k == "cg_iters"}
    return {"ms": 1e3 * statistics.median(times), "mem": temp_bytes(compiled), **extra}


def measure(width: int, points: int, args) -> dict:
    from jax.flatten_util import ravel_pytree

    from pinn_cli import train

    row = {"width": width, "points": points}
    for solver in ("explicit", "cg"):
        built = build(width, points, solver)
        (adam, _), (lm, _) = train.make_stages(built.problem, built.plan, built.state.params)
        params = built.state.params
        rows, n_params = built.problem.x.shape[0], ravel_pytree(params)[0].size
        row.update(params=n_params, rows=rows)
        if solver == "explicit":
            trained = adam.block(built.problem, params, adam.init(params), args.warm)
            row["trained"] = trained[0]
            row["adam"] = time_block(adam, built.problem, params, args.adam_block, args.reps)
            if rows * n_params * min(rows, n_params) > args.explicit_max_work:
                row["explicit"] = None
                continue
        row[solver] = time_block(lm, built.problem, row["trained"], 10, args.reps)
    row.pop("trained")
    return row


def whole(overrides: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [str(Path(sys.executable).parent / "pinn-run"), *overrides, "progress=false"]
        cmd += [f"hydra.run.dir={tmp}/run"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        try:
            s = json.loads((Path(tmp) / "run" / "summary.json").read_text())
        except OSError:
            return {"wall": wall, "code": proc.returncode, "error": proc.stderr[-300:]}
    return {
        "wall": wall,
        "code": proc.returncode,
        "rel_error": s["energy"]["rel_error"],
        "l2": s["wavefunction"]["l2_error"],
        "solver": s["timing"]["solvers"].get("lm", "–"),
        "steps": s["steps"],
    }


def mib(x: float) -> str:
    return f"{x / 2**20:.1f}"


def report(rows: list[dict], wholes: list[tuple[str, dict]], meta: dict) -> str:
    lines = [
        "# Second-order stage: one LM step against one Adam step",
        "",
        f"{meta['date']}; {meta['machine']['cpu']}, {meta['machine']['cores']} cores; "
        f"{meta['versions']}. Finite well, depth 3, float64; medians of {meta['reps']} calls.",
        "",
        "| width x points | parameters | Adam ms/step | explicit LM ms/step | CG LM ms/step "
        "| explicit / Adam | CG / Adam | CG iterations/step | memory MiB: Adam / explicit / CG |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        a, e, c = r["adam"], r["explicit"], r["cg"]
        lines.append(
            f"| {r['width']} x {r['points']} | {r['params']} | {a['ms']:.2f} | "
            f"{'skipped' if e is None else format(e['ms'], '.1f')} | {c['ms']:.1f} | "
            f"{'–' if e is None else format(e['ms'] / a['ms'], '.0f') + 'x'} | "
            f"{c['ms'] / a['ms']:.1f}x | {c.get('cg_iters', float('nan')):.1f} | "
            f"{mib(a['mem'])} / {'–' if e is None else mib(e['mem'])} / {mib(c['mem'])} |"
        )
    if wholes:
        lines += [
            "",
            "Whole commands (wall time of the process, compilation cache as found):",
            "",
            "| command | solver | wall s | exit | steps | energy rel. error | psi L2 error |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, w in wholes:
            lines.append(
                f"| `{name}` | {w.get('solver', '–')} | {w['wall']:.1f} | {w['code']} | "
                f"{w.get('steps', '–')} | {w.get('rel_error', float('nan')):.2e} | "
                f"{w.get('l2', float('nan')):.2e} |"
            )
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench-results/second_order.md"))
    ap.add_argument("--sizes", nargs="*", default=[f"{w}x{n}" for w, n in SIZES])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--warm", type=int, default=500, help="Adam steps before the LM timing")
    ap.add_argument("--adam-block", type=int, default=100)
    ap.add_argument("--explicit-max-work", type=float, default=1e11)
    ap.add_argument("--whole", action="store_true", help="also time whole pinn-run commands")
    args = ap.parse_args(argv)
    os.environ.setdefault("XLA_FLAGS", "")
    import jax

    jax.config.update("jax_enable_x64", True)
    rows = []
    for size in args.sizes:
        width, points = (int(v) for v in size.split("x"))
        rows.append(measure(width, points, args))
        print(f"{size}: {rows[-1]}", flush=True)
    wholes = []
    if args.whole:
        big = ["potential=finite_well", "model.width=128", "model.depth=3", "train.points=1024"]
        wholes.append(("pinn-run " + " ".join(big), whole(big)))
        for name in DEFAULTS:
            wholes.append((f"pinn-run potential={name}", whole([f"potential={name}"])))
            print(wholes[-1], flush=True)
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "versions": versions(),
        "reps": args.reps,
    }
    text = report(rows, wholes, meta)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
