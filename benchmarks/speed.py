"""Speed benchmark: pinn-run's Adam step against the PyTorch and DeepXDE peers, in one run.

    python -m benchmarks.speed --out bench-results/speed.md [--steps 300]
        [--peers-python ~/.pinn-peers/bin/python] [--peers-dir /work/shared/peers]

The problem is the peers' (see their README): finite well, depth 3, tanh, float64, linear
output, uniform points with trapezoid weights, hard normalisation, E trained from 1.0, Adam with
lr 1e-2 * 0.6**(step/1000). pinn-run is measured in this process: its Adam stage's jitted block
(`lax.scan` of n optimiser steps) compiled ahead of time for n = --block steps, then timed over
--reps calls, before and after the peers of the same size run as subprocesses; the median of all
calls is reported (the minimum too). The peers train --steps steps and time all but the first
--warmup. Every process is restricted to the same --threads cores (JAX on CPU uses every core it
may run on; the peers get --threads as their thread count).

Also reported: XLA's flop count of one step (cost_analysis of the compiled block, whose while
loop body it counts once, less the final loss evaluation in the block), the achieved rate, and
the float64 matrix-multiply ceiling measured in this run (best of jitted jnp.dot of n x n
matrices, 2 n^3 flops each) at the start and at the end. Ratios are peer ms / pinn-run ms:
above 1 means pinn-run is faster. Compare only ratios from one run: the machine is shared.

After the per-step table, the same run measures the time to solution (benchmarks.solution_time:
whole commands, seconds until the energy is within 1e-3, 1e-6, 1e-10; --no-tts skips it).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import solution_time

SIZES = [(32, 512), (64, 1024), (128, 1024)]
TARGET_RATIO = {(32, 512): 3.0, (64, 1024): 3.0, (128, 1024): 3.0}  # every size: 3x the fastest
TARGET_CEILING = (128, 1024), 0.60
PEERS = {
    "torch eager": ["torch_pinn.py", "--mode", "eager"],
    "torch.func": ["torch_pinn.py", "--mode", "func"],
    "torch.func + compile": ["torch_pinn.py", "--mode", "func", "--compile"],
    "DeepXDE": ["deepxde_pinn.py"],
}
PEER_LINE = re.compile(r"ms_per_step=([\d.eE+-]+) E=([-\d.eE+]+) relerr=([\d.eE+-]+)")
PINN = "pinn-run"


def overrides(width: int, points: int) -> list[str]:
    """pinn-run's configuration of the peers' problem."""
    return [
        "progress=false",
        "potential=finite_well",
        "model.depth=3",
        "model.activation=tanh",
        f"model.width={width}",
        f"train.points={points}",
        "train.collocation=uniform",
        "model.output=linear",
        "model.breakpoint_features=false",
        "energy=learned",
        "energy.init=1.0",
        "optim=adam",
    ]


def cpu_clock() -> tuple[float, float, float]:
    """(wall s, busy CPU s of the whole machine, CPU s of this process and its children)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    busy = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    t = os.times()
    return time.perf_counter(), busy, t.user + t.system + t.children_user + t.children_system


def others_load(start) -> float:
    """Percentage of the machine's CPU time since `start` used by processes not ours."""
    end = cpu_clock()
    wall = max(end[0] - start[0], 1e-9)
    return 100 * max((end[1] - start[1]) - (end[2] - start[2]), 0.0) / (wall * os.cpu_count())


def wait_until_quiet(limit_s: float, threshold: float = 10.0) -> float:
    """Wait up to limit_s for a 5 s window in which other processes use < threshold % CPU."""
    deadline = time.perf_counter() + limit_s
    while True:
        start = cpu_clock()
        time.sleep(5.0)
        last = others_load(start)
        if last < threshold or time.perf_counter() > deadline:
            return last


def restrict_cores(threads: int) -> list[int]:
    """Run this process (and its children) on the first `threads` allowed cores; before JAX."""
    cores = sorted(os.sched_getaffinity(0))[:threads]
    os.sched_setaffinity(0, cores)
    return cores


# --------------------------------------------------------------------------------------------
# pinn-run, in process.


def build(width: int, points: int):
    from hydra import compose, initialize_config_module

    from pinn_cli import assemble
    from pinn_cli.cli import to_config
    from pinn_cli.config import register_configs

    register_configs()
    with initialize_config_module("pinn_cli.conf", version_base="1.3"):
        cfg = to_config(compose("config", overrides=overrides(width, points)))
    return assemble.build(cfg)


def xla_flops(compiled) -> float:
    cost = compiled.cost_analysis()  # a dict in jax 0.10; a list of dicts in some versions
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    return float(cost.get("flops", float("nan")))


class Timed:
    """One stage's jitted block, compiled for `block` steps, timed call after call."""

    def __init__(self, name: str, built, stage, loss, block: int):
        """`loss`: the stage's loss function (params -> (total, terms)), for its flop count."""
        import jax

        self.name, self.block, self.times, self.others = name, block, [], []
        self.problem = built.problem
        self.state = (built.state.params, stage.init(built.state.params))
        t0 = time.perf_counter()
        self.compiled = stage.block.lower(self.problem, *self.state, block).compile()
        self.compile_s = time.perf_counter() - t0
        # XLA counts a while loop's body once: flops(block) = one step + the final loss.
        loss = jax.jit(loss).lower(self.state[0]).compile()
        twice = stage.block.lower(self.problem, *self.state, 2 * block).compile()
        f1, f2, f_loss = xla_flops(self.compiled), xla_flops(twice), xla_flops(loss)
        self.flops = (f2 - f1) / block if f2 > 1.5 * f1 else f1 - f_loss
        self.run(1)  # warm-up, not counted
        self.times.clear()
        self.others.clear()

    def run(self, reps: int) -> None:
        import jax

        start = cpu_clock()
        for _ in range(reps):
            t0 = time.perf_counter()
            params, opt_state, total, _ = self.compiled(self.problem, *self.state)
            jax.block_until_ready(total)
            self.times.append((time.perf_counter() - t0) / self.block)
            self.state = (params, opt_state)
        self.others.append(others_load(start))

    def result(self) -> dict:
        import jax

        energy = self.state[0].get("energy")
        return {
            "ms": 1e3 * statistics.median(self.times),
            "ms_min": 1e3 * min(self.times),
            "calls": len(self.times),
            "flops": self.flops,
            "compile_s": self.compile_s,
            "others_cpu": max(self.others),
            "energy_param": None if energy is None else float(jax.device_get(energy)),
        }


def pinn_timed(width: int, points: int, block: int) -> Timed:
    """pinn-run's Adam stage (the first of its stages) on the peers' problem."""
    from pinn_cli import problem, train

    built = build(width, points)
    (adam, _), *_ = train.make_stages(built.problem, built.plan, built.state.params)
    return Timed(PINN, built, adam, problem.make_loss(built.problem), block)


def matmul_ceiling(sizes=(1024, 2048), reps: int = 5) -> dict:
    """Best float64 GFLOP/s of a jitted n x n @ n x n product."""
    import jax
    import jax.numpy as jnp

    best = {}
    for n in sizes:
        ka, kb = jax.random.split(jax.random.key(0))
        a = jax.random.normal(ka, (n, n), jnp.float64)
        b = jax.random.normal(kb, (n, n), jnp.float64)
        f = jax.jit(jnp.dot).lower(a, b).compile()
        f(a, b).block_until_ready()
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            f(a, b).block_until_ready()
            times.append(time.perf_counter() - t0)
        best[n] = 2 * n**3 / min(times) / 1e9
    return best


# --------------------------------------------------------------------------------------------
# The peers, as subprocesses.


def find_peers(python: Path, peers_dir: Path) -> str | None:
    """None when the peers can run, else why not."""
    if not python.exists():
        return f"peers skipped: no interpreter at {python} (see {peers_dir}/README.md to install)"
    if not (peers_dir / "torch_pinn.py").exists():
        return f"peers skipped: no torch_pinn.py in {peers_dir}"
    return None


def peer_versions(python: Path) -> str:
    code = (
        "import importlib.metadata as m\n"
        "print(' '.join(f'{p} {m.version(p)}' for p in ('torch', 'deepxde')))"
    )
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=120)
    return out.stdout.strip() or f"unknown ({out.stderr.strip()[-200:]})"


def run_peer(python, peers_dir, name, width, points, args) -> dict:
    script, *flags = PEERS[name]
    cmd = [
        str(python),
        str(peers_dir / script),
        *flags,
        *("--width", str(width), "--depth", "3", "--npts", str(points)),
        *("--steps", str(args.steps), "--warmup", str(args.warmup)),
        *("--threads", str(args.threads)),
    ]
    env = {**os.environ, "DDE_BACKEND": "pytorch"}
    t0, start = time.perf_counter(), cpu_clock()
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {args.timeout} s"}
    lines = out.stdout.strip().splitlines()
    m = PEER_LINE.search(lines[-1]) if out.returncode == 0 and lines else None
    if m is None:
        return {"error": (out.stderr.strip().splitlines() or ["no output"])[-1][:200]}
    return {
        "ms": float(m[1]),
        "E": float(m[2]),
        "relerr": float(m[3]),
        "wall_s": time.perf_counter() - t0,
        "others_cpu": others_load(start),
    }


def combine(runs: list[dict]) -> dict:
    """One peer's repeated runs: the median ms/step, with the spread and the worst contention."""
    ok = [r for r in runs if "ms" in r]
    if not ok:
        return runs[-1]
    ms = [r["ms"] for r in ok]
    return {
        "ms": statistics.median(ms),
        "ms_all": ms,
        "relerr": ok[-1]["relerr"],
        "others_cpu": max(r["others_cpu"] for r in ok),
        "failed_runs": len(runs) - len(ok),
    }


# --------------------------------------------------------------------------------------------
# Report.


def machine() -> dict:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "platform": platform.platform()}


def versions() -> str:
    import importlib.metadata as md

    names = ("jax", "jaxlib", "flax", "optax", "numpy")
    return f"python {platform.python_version()}, " + ", ".join(
        f"{n} {md.version(n)}" for n in names
    )


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def fmt(x: float | None, spec: str) -> str:
    return "–" if x is None else format(x, spec)


def report(meta: dict, rows: dict, ceiling: float) -> str:
    lines = [
        "# pinn-run speed benchmark",
        "",
        f"- date: {meta['date']}",
        f"- machine: {meta['machine']['cpu']}, {meta['machine']['cores']} cores "
        f"({meta['machine']['platform']}); run on cores {meta['cores_used']}",
        f"- pinn-run side: {meta['versions']}; XLA_FLAGS={meta['xla_flags']!r}",
        f"- peers: {meta['peer_versions']}",
        f"- load average (1, 5, 15 min) at start {meta['load_start']}, at end {meta['load_end']}",
        "- float64 matmul ceiling (best jitted jnp.dot): "
        + ", ".join(f"{n}x{n}: {g:.1f} GFLOP/s" for n, g in meta["matmul"].items())
        + f"; ceiling used: {ceiling:.1f} GFLOP/s",
        f"- pinn-run: Adam block of {meta['block']} steps compiled ahead of time, "
        f"{meta['calls']} calls per size, interleaved with the peers' runs (median; min in "
        f"brackets); peers: {meta['steps']} steps, the first {meta['warmup']} untimed, "
        f"{meta['peer_reps']} runs each (median; every run in brackets)",
        "",
        "| width x points | implementation | ms/step | peer / pinn-run | GFLOP/s achieved "
        "| % of matmul ceiling | XLA MFLOP/step | others' CPU |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (w, n), impls in rows.items():
        base = impls.get(PINN, {}).get("ms")
        for name, r in impls.items():
            if "error" in r:
                lines.append(f"| {w} x {n} | {name} | failed: {r['error']} | | | | | |")
                continue
            if "flops" in r:
                gflops = r["flops"] / (r["ms"] * 1e6)
                ratio = "1 (reference)" if name == PINN else f"{base / r['ms']:.2f} (speed-up)"
                ms = f"{r['ms']:.3f} ({r['ms_min']:.3f})"
                cells = [ms, ratio, f"{gflops:.1f}", f"{100 * gflops / ceiling:.0f}%"]
                cells.append(f"{r['flops'] / 1e6:.1f}")
            else:
                spread = "/".join(f"{m:.2f}" for m in r.get("ms_all", []))
                ms = f"{r['ms']:.3f}" + (f" ({spread})" if len(r.get("ms_all", [])) > 1 else "")
                cells = [ms, fmt(base and r["ms"] / base, ".2f"), "–", "–", "–"]
            cells.append(fmt(r.get("others_cpu"), ".0f") + "%")
            lines.append(f"| {w} x {n} | {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "others' CPU: share of the machine's CPU time that other processes used during the "
        "measurement (/proc/stat less this process tree). Rows above ~10% are contaminated: "
        "the peers' two-thread OpenMP loops slow down many-fold when another process takes a "
        "core, which would flatter pinn-run's ratios.",
        "",
        *targets(rows, ceiling),
        "",
    ]
    if meta.get("notes"):
        lines += [f"Note: {note}" for note in meta["notes"]] + [""]
    return "\n".join(lines)


def targets(rows: dict, ceiling: float) -> list[str]:
    out = [
        "Targets: ratio = fastest peer ms / pinn-run ms (same run).",
        "",
        "| width x points | fastest peer | its ms/step | pinn-run ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for size, impls in rows.items():
        peers = {k: v for k, v in impls.items() if k in PEERS and "ms" in v}
        mine = impls.get(PINN, {}).get("ms")
        if not peers or mine is None:
            continue
        name, best = min(peers.items(), key=lambda kv: kv[1]["ms"])
        ratio, goal = best["ms"] / mine, TARGET_RATIO.get(size, float("nan"))
        out.append(
            f"| {size[0]} x {size[1]} | {name} | {best['ms']:.3f} | {ratio:.2f} | >= {goal:g} "
            f"| {'yes' if ratio >= goal else 'no'} |"
        )
    if len(out) == 4:
        out.append("| (no peer measurements in this run) | | | | | |")
    size, share = TARGET_CEILING
    r = rows.get(size, {}).get(PINN)
    if r and "flops" in r:
        achieved = r["flops"] / (r["ms"] * 1e6) / ceiling
        out.append(
            f"\n{PINN} at {size[0]} x {size[1]}: {100 * achieved:.0f}% of the matmul ceiling "
            f"(target >= {100 * share:.0f}%: {'met' if achieved >= share else 'not met'})."
        )
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench-results/speed.md"))
    ap.add_argument("--steps", type=int, default=300, help="peer steps per run")
    ap.add_argument("--warmup", type=int, default=20, help="untimed peer steps")
    ap.add_argument("--block", type=int, default=100, help="pinn-run steps per compiled block")
    ap.add_argument("--reps", type=int, default=4, help="timed pinn-run blocks between peer runs")
    ap.add_argument("--peer-reps", type=int, default=3, help="runs of each peer per size")
    ap.add_argument("--threads", type=int, default=2, help="cores for every implementation")
    ap.add_argument("--peers-python", type=Path, default=Path("~/.pinn-peers/bin/python"))
    ap.add_argument("--peers-dir", type=Path, default=Path("/work/shared/peers"))
    ap.add_argument("--peers", nargs="*", default=list(PEERS), choices=list(PEERS))
    ap.add_argument("--sizes", nargs="*", default=[f"{w}x{n}" for w, n in SIZES])
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per peer run")
    ap.add_argument(
        "--quiet-wait",
        type=float,
        default=120.0,
        help="seconds to wait, before each size, for other processes to use < 10%% CPU (0: no)",
    )
    ap.add_argument("--no-tts", action="store_true", help="skip the time-to-solution table")
    solution_time.add_arguments(ap)
    args = ap.parse_args(argv)
    args.peers_python = args.peers_python.expanduser()
    cores = restrict_cores(args.threads)  # before JAX starts its thread pools

    import jax

    jax.config.update("jax_enable_x64", True)
    sizes = [tuple(int(s) for s in size.split("x")) for size in args.sizes]
    notes = []
    skip = find_peers(args.peers_python, args.peers_dir)
    if skip:
        notes.append(skip)
        print(skip, file=sys.stderr)
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "cores_used": cores,
        "versions": versions(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "peer_versions": peer_versions(args.peers_python) if not skip else "not run",
        "load_start": load(),
        "block": args.block,
        "calls": (args.peer_reps + 1) * args.reps if not skip else args.reps,
        "steps": args.steps,
        "warmup": args.warmup,
        "peer_reps": args.peer_reps,
        "notes": notes,
    }
    matmul = matmul_ceiling()
    rows: dict = {}
    for w, n in sizes:
        if args.quiet_wait > 0:
            quiet = wait_until_quiet(args.quiet_wait)
            print(f"{w}x{n}: other processes' CPU before start {quiet:.0f}%", flush=True)
        timed = pinn_timed(w, n, args.block)
        runs: dict[str, list[dict]] = {}
        for _ in range(0 if skip else args.peer_reps):  # pinn-run, every peer, pinn-run, ...
            timed.run(args.reps)
            for name in args.peers:
                r = run_peer(args.peers_python, args.peers_dir, name, w, n, args)
                runs.setdefault(name, []).append(r)
                print(f"{w}x{n} {name}: {r}", flush=True)
        timed.run(args.reps)
        rows[(w, n)] = {timed.name: timed.result()} | {name: combine(r) for name, r in runs.items()}
        print(f"{w}x{n} pinn-run: {rows[(w, n)][PINN]}", flush=True)
    for n, g in matmul_ceiling().items():
        matmul[n] = max(matmul[n], g)
    meta.update(matmul=matmul, load_end=load())
    text = report(meta, rows, max(matmul.values()))
    if not args.no_tts:  # the time-to-solution table, measured in the same run
        text += "\n" + solution_time.run(argparse.Namespace(**vars(args)))
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    raw = {"meta": meta, "rows": {f"{w}x{n}": r for (w, n), r in rows.items()}}
    args.out.with_suffix(".json").write_text(json.dumps(raw, indent=1, default=str))


if __name__ == "__main__":
    main()
