"""lap psi for the loss: pinn-run's one-pass Taylor mode against nested autodiff, per training step.

    python -m benchmarks.derivatives [--out bench-results/derivatives.md] [--reps 7] [--steps 20]

Times jax.value_and_grad, with respect to the network's parameters, of loss = sum(lap psi^2) / N
with lap psi computed three ways, all from the package's own trial function (no copy of it):

- one pass: `TrialFunction.taylor` (what pinn-run trains with): the value and, per axis, the
  first and pure second derivatives carried through every layer as (N, width) matmuls.
- hessian/vmap: trace of `jax.hessian` of the scalar psi at one point, vmapped over the points.
- jvp-jvp/vmap: `model.derivatives` on psi as a plain callable (forward-over-forward `jax.jvp`
  along each axis), vmapped over the points.

Cases: d = 1 (N = 512 and 1024 Gauss points on [0, 1]) and d = 2 (a 32 x 32 Gauss grid on the
unit square), widths 32 and 64, depth 3, tanh, float64, linear output. Each method is a jitted
`lax.scan` of --steps steps whose update is a plain gradient step, compiled ahead of time; the
methods are called interleaved (A B C A B C ...) --reps times; median and minimum ms per step,
and each method's ratio to the one-pass one (above 1: slower). Before timing, every method's lap
psi is checked against the one-pass one (largest difference / largest |lap psi|).
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402

from benchmarks.speed import cpu_clock, load, machine, others_load, versions  # noqa: E402
from pinn_cli import model, quadrature  # noqa: E402

ONE_PASS = "one pass (TrialFunction.taylor)"
POINTS = {1: (512, 1024), 2: (1024,)}  # d -> N (in 2-D a square grid: 32 x 32)


def one_pass(psi, params, x):
    return psi.taylor(params, x)[2]


def hessian_trace(psi, params, x):
    def at(xi):
        return jnp.trace(jax.hessian(lambda y: psi(params, y))(xi))

    return jax.vmap(at)(x)


def jvp_jvp(psi, params, x):
    plain = lambda p, y: psi(p, y)  # noqa: E731  (a callable that is no TrialFunction)
    return jax.vmap(lambda xi: model.derivatives(plain, params, xi)[2])(x)


METHODS = {ONE_PASS: one_pass, "hessian/vmap": hessian_trace, "jvp-jvp/vmap": jvp_jvp}


def setup(d: int, width: int, points: int):
    box = quadrature.Box(((0.0, 1.0),) * d, ((),) * d)
    psi, params = model.make_trial_function(
        box=box,
        width=width,
        depth=3,
        activation="tanh",
        output="linear",
        breakpoint_features=False,
        key=jax.random.key(0),
        dtype=jnp.float64,
    )
    return psi, params, jnp.asarray(quadrature.gauss(box, points).x)


def scan_of_steps(method, psi, x, steps: int):
    def loss(params):
        return jnp.sum(method(psi, params, x) ** 2) / x.shape[0]

    value_and_grad = jax.value_and_grad(loss)

    def run(params):
        def one(p, _):
            value, g = value_and_grad(p)
            return jax.tree.map(lambda a, b: a - 1e-6 * b, p, g), value

        return jax.lax.scan(one, params, length=steps)

    return jax.jit(run)


def measure(d: int, width: int, points: int, steps: int, reps: int) -> list[dict]:
    psi, params, x = setup(d, width, points)
    ref = one_pass(psi, params, x)
    scale = float(jnp.max(jnp.abs(ref)))
    diff = {m: float(jnp.max(jnp.abs(f(psi, params, x) - ref))) / scale for m, f in METHODS.items()}
    compiled = {
        m: scan_of_steps(f, psi, x, steps).lower(params).compile() for m, f in METHODS.items()
    }
    for c in compiled.values():
        jax.block_until_ready(c(params))  # warm-up, not counted
    times: dict[str, list[float]] = {m: [] for m in METHODS}
    for _ in range(reps):
        for m, c in compiled.items():
            t0 = time.perf_counter()
            jax.block_until_ready(c(params))
            times[m].append(1e3 * (time.perf_counter() - t0) / steps)
    rows = []
    for m, t in times.items():
        rows.append(
            dict(d=d, width=width, points=x.shape[0], method=m, diff=diff[m])
            | dict(ms=statistics.median(t), ms_min=min(t))
        )
        print(rows[-1], flush=True)
    return rows


def table(rows: list[dict]) -> str:
    out = [
        "| d | width | points | method | ms/step (median) | ms/step (min) "
        "| x one pass (median) | x one pass (min) | max rel. diff of lap |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    base = {(r["d"], r["width"], r["points"]): r for r in rows if r["method"] == ONE_PASS}
    for r in rows:
        b = base[(r["d"], r["width"], r["points"])]
        pts = "32 x 32" if r["d"] == 2 and r["points"] == 1024 else str(r["points"])
        out.append(
            f"| {r['d']} | {r['width']} | {pts} | {r['method']} | {r['ms']:.3f} "
            f"| {r['ms_min']:.3f} | {r['ms'] / b['ms']:.2f} | {r['ms_min'] / b['ms_min']:.2f} "
            f"| {r['diff']:.1e} |"
        )
    return "\n".join(out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--steps", type=int, default=20, help="steps per timed call")
    ap.add_argument("--reps", type=int, default=7, help="timed calls per method")
    ap.add_argument("--dims", type=int, nargs="*", default=[1, 2], choices=sorted(POINTS))
    ap.add_argument("--widths", type=int, nargs="*", default=[32, 64])
    args = ap.parse_args(argv)
    start, load_start = cpu_clock(), load()
    rows = []
    for d in args.dims:
        for width in args.widths:
            for points in POINTS[d]:
                rows += measure(d, width, points, args.steps, args.reps)
    worst = max(r["diff"] for r in rows)
    print(f"largest relative difference of lap psi from the one-pass one: {worst:.1e}")
    mach = machine()
    text = "\n".join(
        [
            "# lap psi: one pass against nested autodiff",
            "",
            f"- date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
            f"- machine: {mach['cpu']}, {mach['cores']} cores ({mach['platform']})",
            f"- {versions()}",
            f"- load average at start {load_start}, at end {load()}; other processes' share "
            f"of the CPU during the run: {others_load(start):.0f}%",
            f"- depth 3, tanh, float64; lax.scan of {args.steps} steps per call, "
            f"{args.reps} calls per method, interleaved",
            "",
            table(rows),
            "",
        ]
    )
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    assert worst < 1e-9, f"the methods disagree: {worst:.1e}"


if __name__ == "__main__":
    main()
