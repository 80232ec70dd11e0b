"""Ensemble benchmark: what train.ensemble=K costs against one network, measured side by side.

    python -m benchmarks.ensemble --out bench-results/ensemble.md [--members 1 2 4 8]

Two measurements, each interleaved so that the machine's drift hits every K alike:

1. Per stage, in this process: the default experiment's Adam block (train.log_every steps) and
   Levenberg-Marquardt block (its block size, 10 steps), compiled ahead of time for each K and
   called --reps times in turn; median ms per step of the whole ensemble.
2. Whole runs: the real `pinn-run` command with and without train.ensemble=K, --runs times each
   in turn, after one untimed run of each that fills XLA's compilation cache; median wall time
   of the command, and the run's own startup_s (imports, config, compilation before the first
   step) from summary.json. --runs 0 skips this part.

Ratios are ensemble time / one network's time; the issue's target is <= 3 at K = 8.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.speed import cpu_clock, machine, others_load, versions

TARGET = 3.0
CASES = {  # name -> pinn-run overrides
    "infinite_well (defaults)": [],
    "finite_well": ["potential=finite_well"],
    "finite_well, optim=adam": ["potential=finite_well", "optim=adam"],
}


def configure(members: int, overrides: list[str]):
    from hydra import compose, initialize_config_module

    from pinn_cli.cli import to_config
    from pinn_cli.config import register_configs

    register_configs()
    with initialize_config_module("pinn_cli.conf", version_base="1.3"):
        ov = ["progress=false", f"train.ensemble={members}", *overrides]
        return to_config(compose("config", overrides=ov))


def stage_times(members: list[int], reps: int) -> dict:
    """{(stage, K): [ms per step of the whole ensemble, per call]} on the default experiment."""
    import jax

    from pinn_cli import assemble, train

    blocks = {}
    for k in members:
        built = assemble.build(configure(k, []))
        params = built.state.params
        for stage, _ in train.make_stages(built.problem, built.plan, train.one_member(params, k)):
            n = stage.block_size or built.plan.log_every
            opt = built.state.opt[stage.name]
            args = (built.problem, params, opt)
            compiled = stage.block.lower(*args, n).compile()
            jax.block_until_ready(compiled(*args))
            blocks[(stage.name, k)] = (compiled, args, n)
    times = {key: [] for key in blocks}
    for _ in range(reps):
        for key, (compiled, args, n) in blocks.items():
            t0 = time.perf_counter()
            jax.block_until_ready(compiled(*args))
            times[key].append(1e3 * (time.perf_counter() - t0) / n)
    return times


def run_once(members: int, overrides: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        args = [f"hydra.run.dir={tmp}/run", "progress=false", *overrides]
        if members > 1:
            args.append(f"train.ensemble={members}")
        t0 = time.perf_counter()
        proc = subprocess.run(
            [str(Path(sys.executable).parent / "pinn-run"), *args],
            capture_output=True,
            text=True,
            timeout=900,
        )
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"pinn-run {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
        summary = json.loads(Path(f"{tmp}/run/summary.json").read_text())
    timing = summary["timing"]
    by_stage = timing["ms_per_step_by_stage"]
    return {"wall": wall, "startup": timing["startup_s"], "by_stage": by_stage}


def whole_runs(members: int, runs: int) -> dict:
    """{(case, K): [run records]} with K in (1, members), interleaved."""
    out = {}
    for case, overrides in CASES.items():
        for k in (1, members):
            run_once(k, overrides)  # fills the compilation cache; not timed
            out[(case, k)] = []
    for _ in range(runs):
        for case, overrides in CASES.items():
            for k in (1, members):
                out[(case, k)].append(run_once(k, overrides))
    return out


def report(meta: dict, stages: dict, runs: dict, members: int) -> str:
    med = statistics.median
    lines = [
        "# pinn-run ensemble benchmark",
        "",
        f"- date: {meta['date']}",
        f"- machine: {meta['machine']['cpu']}, {meta['machine']['cores']} cores "
        f"({meta['machine']['platform']})",
        f"- {meta['versions']}",
        f"- other processes' share of the CPU during the run: {meta['others']:.0f}%",
        "",
        "## Training stages, default experiment (infinite well, width 32, depth 2, 192 points)",
        "",
        "ms per step of the whole ensemble, median of the calls (blocks compiled ahead of time).",
        "",
        "| stage | K | ms/step | ratio to K = 1 | ms/step per member |",
        "|---|---|---|---|---|",
    ]
    for stage in ("adam", "lm"):
        base = med(stages[(stage, 1)])
        for (name, k), ts in stages.items():
            if name == stage:
                m = med(ts)
                lines.append(f"| {stage} | {k} | {m:.3f} | {m / base:.2f} | {m / k:.3f} |")
    if not runs:
        return "\n".join(lines) + "\n"
    lines += [
        "",
        f"## Whole `pinn-run` commands, K = {members} against one network",
        "",
        "Median wall time of the command over the timed runs (compilation cache warm); "
        "startup_s is the run's own report of the time before its first training step.",
        "",
        f"| case | K | wall s | startup_s | Adam ms/step | LM ms/step | ratio to K = 1 | "
        f"target <= {TARGET:g} |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for case in CASES:
        base = med(r["wall"] for r in runs[(case, 1)])
        for k in (1, members):
            rs = runs[(case, k)]
            wall = med(r["wall"] for r in rs)
            adam = med(r["by_stage"].get("adam", float("nan")) for r in rs)
            lm = med(r["by_stage"].get("lm", float("nan")) for r in rs)
            ratio = wall / base
            met = "" if k == 1 else ("met" if ratio <= TARGET else "not met")
            lines.append(
                f"| {case} | {k} | {wall:.1f} | {med(r['startup'] for r in rs):.1f} | "
                f"{adam:.3f} | {lm:.2f} | {ratio:.2f} | {met} |"
            )
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench-results/ensemble.md"))
    ap.add_argument("--members", type=int, nargs="*", default=[1, 2, 4, 8])
    ap.add_argument("--reps", type=int, default=7, help="calls of each compiled block")
    ap.add_argument(
        "--runs", type=int, default=2, help="timed pinn-run commands per case and K (0: none)"
    )
    args = ap.parse_args(argv)
    import jax

    jax.config.update("jax_enable_x64", True)
    members = sorted(set([1, *args.members]))
    start = cpu_clock()
    stages = stage_times(members, args.reps)
    runs = whole_runs(members[-1], args.runs) if args.runs > 0 else {}
    meta = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "versions": versions(),
        "others": others_load(start),
    }
    text = report(meta, stages, runs, members[-1])
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
