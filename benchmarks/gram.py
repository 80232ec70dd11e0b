"""The explicit Levenberg-Marquardt solve with more residuals than parameters: J^T J formed by
BLAS's dsyrk (lm.solve, pinn_cli/native), by XLA's dot from a materialised J^T, and as the plain
`jac.T @ jac`, side by side.

    python -m benchmarks.gram [--out bench-results/gram.md] [--reps 7]

XLA's CPU dot contracting the leading axes of two (M, P) operands runs much slower than one
contracting their trailing axes; lm.solve copies J^T once (behind an optimisation barrier, so the
simplifier cannot fold the transpose back into the dot) and hands it to the native kernel, which
forms one triangle of (J^T)(J^T)^T (half the arithmetic) in bands over the cores. Shapes: the
2-D square well's default Jacobian (50 x 50 nodes, 721 parameters), a time window of the
time-dependent equation (1024 rows, 658 parameters) and a larger one. The three solves of each
shape are compiled first and then called interleaved --reps times; median ms per solve, the
ratios, and the largest difference of the kernel's step from the plain one, relative to the
step.
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
import numpy as np  # noqa: E402

from benchmarks.speed import machine, versions  # noqa: E402
from pinn_cli import lm, native  # noqa: E402

SHAPES = [(2500, 721), (1024, 658), (4096, 1200)]


def plain(jac, r, mu):
    """The damped step with J^T J formed directly (the formulation lm.solve replaced)."""
    a = jac.T @ jac + mu * jnp.eye(jac.shape[1], dtype=jac.dtype)
    delta = -jax.scipy.linalg.cho_solve(jax.scipy.linalg.cho_factor(a), jac.T @ r)
    return delta, jac @ delta


def median_ms(fn, args, reps: int) -> list[float]:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(1e3 * (time.perf_counter() - t))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for m, p in SHAPES:
        jac, r = jnp.asarray(rng.normal(size=(m, p))), jnp.asarray(rng.normal(size=m))
        mu = 1e-3 * float(jnp.max(jnp.sum(jac**2, axis=0)))
        xla = lambda j, b, u: lm.solve(j, b, u, native=False)  # noqa: E731
        named = (("lm.solve", lm.solve), ("xla", xla), ("plain", plain))
        solves = {name: jax.jit(f) for name, f in named}
        steps = {name: f(jac, r, mu)[0] for name, f in solves.items()}  # compiles
        diff = float(jnp.max(jnp.abs(steps["lm.solve"] - steps["plain"])))
        diff /= float(jnp.max(jnp.abs(steps["plain"])))
        times = {name: [] for name in solves}
        for _ in range(args.reps):
            for name, f in solves.items():
                times[name] += median_ms(f, (jac, r, mu), 1)
        new, copied, old = (statistics.median(times[k]) for k in ("lm.solve", "xla", "plain"))
        rows.append(
            f"| {m} x {p} | {old:.1f} | {copied:.1f} | {new:.1f} | {old / copied:.2f}x "
            f"| {copied / new:.2f}x | {diff:.1e} |"
        )
    where = machine()
    lines = [
        f"Measured {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC on {where['cpu']}, "
        f"{where['cores']} cores ({versions()}), float64, median of {args.reps} interleaved "
        f"calls; native kernel: {'yes' if native.available() else 'not available'}.",
        "",
        "| J (rows x parameters) | plain jac.T @ jac, ms | XLA, J^T copied, ms | BLAS dsyrk "
        "(lm.solve), ms | copy vs plain | dsyrk vs copy | step difference (relative) |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
