"""psi, psi', psi'' of the trial function: which way of computing them trains fastest.

    python -m benchmarks.derivatives [--out bench-results/derivatives.md] [--steps 50] [--reps 7]

Times one training step's derivative work, value_and_grad of the hard-normalised residual loss
integral(r^2) / integral(psi^2), for each method below: a jitted lax.scan of --steps steps
whose update is a plain gradient step, so only the loss and its gradient differ. The methods
are timed interleaved (A B C A B C ...) and both the median and the minimum are reported: on a
shared machine the minimum is the better estimate of what the code costs.
Sizes: width in {32, 64, 128} x points in {512, 1024}; depth 3, tanh, float64, linear output.

Methods
- nested-jvp/vmap: pinn-run today (model.derivatives: jvp over jvp of the scalar psi, vmapped).
  Four forward streams per layer (primal, two first-order tangents, one second-order).
- jet/vmap: Taylor mode (jax.experimental.jet) of the scalar psi, vmapped over the points.
- jet/batched: jet of psi applied to the whole (N,) array at once (each psi(x_i) depends on x_i
  only, so a tangent of ones gives every point's derivatives).
- taylor/3-dot: hand-written forward propagation of (h, h', h'') with (N, width) matmuls:
  z = hW + b, z' = h'W, z'' = h''W; a = s(z), a' = s'(z) z', a'' = s''(z) z'^2 + s'(z) z''.
  Three streams; s' and s'' of any activation by nested jvps of the elementwise function.
- taylor/3-dot, tanh by hand: the same with tanh' = 1 - t^2, tanh'' = -2 t tanh' written out.
- taylor/stacked, tanh by hand: [h; h'; h''] stacked into one (3N, width) matmul per layer.

`taylor2` is the prototype of the change proposed for pinn_cli/model.py (as MLP.taylor2 and
TrialFunction.taylor2): it takes a scalar x (the per-point API that Levenberg-Marquardt's
vmap(jacrev(...)) uses) or an (N,) array. `proposed_stage` is pinn-run's Adam stage with it,
which benchmarks.speed times next to pinn-run's own.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402
from jax.experimental import jet  # noqa: E402
from jax.flatten_util import ravel_pytree  # noqa: E402

from pinn_cli import model, physics, train  # noqa: E402
from pinn_cli.potentials import make_potential  # noqa: E402

SIZES = [(32, 512), (32, 1024), (64, 512), (64, 1024), (128, 512), (128, 1024)]
CURRENT = "nested-jvp/vmap (before taylor2)"

# --------------------------------------------------------------------------------------------
# The proposed drop-in: second-order forward (Taylor) propagation through the network.


def generic_taylor2(f: Callable) -> Callable:
    """The chain rule by nested unit-tangent jvps (model.elementwise_taylor2's generic path)."""
    return model.elementwise_taylor2(lambda u: f(u))  # a lambda never takes tanh's shortcut


tanh_taylor2 = model.tanh_taylor2


def activation_taylor2(activation: Callable) -> Callable:
    return tanh_taylor2 if activation is jnp.tanh else generic_taylor2(activation)


def features(psi: model.TrialFunction, x):
    """TrialFunction.features with the feature axis last, so x may be a scalar or (N,)."""
    lo, hi = psi.domain
    half = 0.5 * (hi - lo)
    s = (x - 0.5 * (lo + hi)) / half
    kinks = [jnp.where(x > b, ((x - b) / half) ** 2, 0.0) for b in psi.breakpoints]
    return jnp.stack([s, *kinks], axis=-1)


def taylor2(psi: model.TrialFunction, params, x, *, act=None, stacked: bool = False):
    """psi, psi', psi'' at x (a scalar or an array of points) in one forward pass.

    `act(z, z', z'') -> (a, a', a'')`; default: activation_taylor2 of the network's activation.
    `stacked`: one [h; h'; h''] matmul per layer instead of three (arrays of points only).
    """
    net = nnx.merge(psi.graphdef, params)
    act = act or activation_taylor2(net.activation)

    def unit(u):
        return (jnp.ones_like(u),)

    # The input features and their x-derivatives (elementwise in x: unit tangents suffice).
    (h, dh), (_, d2h) = jax.jvp(
        lambda u: jax.jvp(lambda y: features(psi, y), (u,), unit(u)), (x,), unit(x)
    )
    for layer in [*net.hidden, net.out]:
        w = layer.kernel[...]
        if stacked and h.ndim == 2:
            z, dz, d2z = jnp.split(jnp.concatenate([h, dh, d2h]) @ w, 3)
        else:
            z, dz, d2z = h @ w, dh @ w, d2h @ w
        z = z + layer.bias[...]
        h, dh, d2h = (z, dz, d2z) if layer is net.out else act(z, dz, d2z)
    n, dn, d2n = h[..., 0], dh[..., 0], d2h[..., 0]
    if psi.output == "exp":
        n, dn, d2n = generic_taylor2(lambda u: jnp.exp(psi.scale * u))(n, dn, d2n)
    # psi = B(x) n with the quadratic envelope B = c (x - lo)(hi - x).
    lo, hi = psi.domain
    c = 4.0 / (hi - lo) ** 2
    b, db, d2b = c * (x - lo) * (hi - x), c * (lo + hi - 2.0 * x), -2.0 * c
    return b * n, db * n + b * dn, d2b * n + 2.0 * db * dn + b * d2n


def proposed_loss(problem: train.Problem) -> Callable:
    """taylor2 is pinn-run's default now, so the proposal is train.make_loss itself."""
    return train.make_loss(problem)


def proposed_stage(problem: train.Problem, settings: train.Settings) -> train.Stage:
    """pinn-run's Adam stage (same schedule, same scan of blocks) with the proposed loss."""
    s = settings
    schedule = train.make_schedule(s.lr_schedule, s.lr, s.lr_final, s.steps)
    return train.adam_stage(proposed_loss(problem), schedule)


# --------------------------------------------------------------------------------------------
# The other candidates.


def batched_psi(psi: model.TrialFunction, params, x):
    """psi at an array of points (TrialFunction.__call__ with the feature axis last)."""
    lo, hi = psi.domain
    n = nnx.merge(psi.graphdef, params)(features(psi, x))
    envelope = 4.0 * (x - lo) * (hi - x) / (hi - lo) ** 2
    return envelope * (jnp.exp(psi.scale * n) if psi.output == "exp" else n)


def jet_derivatives(f: Callable, x):
    """f, f', f'' at x by jet; f maps x elementwise (a scalar, or each point independently)."""
    p, (dp, d2p) = jet.jet(f, (x,), ((jnp.ones_like(x), jnp.zeros_like(x)),))
    return p, dp, d2p


def nested_jvp(psi, params, x):
    """psi, psi', psi'' at a scalar x by forward-over-forward jvps (pinn-run before taylor2)."""

    def first(y):
        return jax.jvp(lambda z: psi(params, z), (y,), (jnp.ones_like(y),))

    (p, dp), (_, d2p) = jax.jvp(first, (x,), (jnp.ones_like(x),))
    return p, dp, d2p


METHODS: dict[str, Callable] = {
    CURRENT: lambda psi, params, x: jax.vmap(lambda xi: nested_jvp(psi, params, xi))(x),
    "jet/vmap": lambda psi, params, x: jax.vmap(
        lambda xi: jet_derivatives(lambda y: psi(params, y), xi)
    )(x),
    "jet/batched": lambda psi, params, x: jet_derivatives(lambda y: batched_psi(psi, params, y), x),
    "taylor/3-dot": lambda psi, params, x: taylor2(psi, params, x, act=generic_taylor2(jnp.tanh)),
    "taylor/3-dot, tanh by hand": lambda psi, params, x: taylor2(psi, params, x, act=tanh_taylor2),
    "taylor/stacked, tanh by hand": lambda psi, params, x: taylor2(
        psi, params, x, act=tanh_taylor2, stacked=True
    ),
}


# --------------------------------------------------------------------------------------------
# Checks and timing.


def problem(width: int, npts: int, *, output: str = "linear", breakpoint_features: bool = False):
    """The peers' problem: finite well (depth 3, tanh), uniform points with trapezoid weights."""
    pot = make_potential("finite_well", domain=(-2.0, 2.0), V0=50.0, width=1.0, centre=None)
    grid = physics.uniform_grid(pot.domain, npts, pot)
    psi, net = model.make_trial_function(
        domain=pot.domain,
        breakpoints=pot.breakpoints,
        width=width,
        depth=3,
        activation="tanh",
        output=output,
        breakpoint_features=breakpoint_features,
        key=jax.random.key(0),
        scale=2.0,
    )
    params = {"net": net, "energy": jnp.asarray(0.5)}
    return psi, params, tuple(jnp.asarray(a) for a in (grid.x, grid.w, grid.v))


def make_loss(method: Callable, psi, x, w, v) -> Callable:
    def loss(params):
        p, _, d2p = method(psi, params["net"], x)
        terms = physics.loss_terms(
            p, d2p, w, v, params["energy"], normalization="hard", norm_weight=1.0
        )
        return terms["residual"]

    return loss


def scan_of_steps(loss: Callable, steps: int) -> Callable:
    value_and_grad = jax.value_and_grad(loss)

    def run(params):
        def one(p, _):
            value, g = value_and_grad(p)
            return jax.tree.map(lambda a, b: a - 1e-4 * b, p, g), value

        return jax.lax.scan(one, params, length=steps)

    return jax.jit(run)


def xla_flops(compiled) -> float:
    """XLA's flop count of a compiled computation (a while loop's body is counted once)."""
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    return float(cost.get("flops", float("nan")))


def relative_deviation(ref, got) -> float:
    return max(
        float(np.max(np.abs(np.asarray(g) - np.asarray(r))) / np.max(np.abs(np.asarray(r))))
        for r, g in zip(ref, got)
    )


def check_agreement(output: str, breakpoint_features: bool) -> float:
    """Largest relative deviation from the current method: values, x-derivatives, parameter
    gradients of the loss, and the per-point Jacobian rows that Levenberg-Marquardt builds."""
    psi, params, (x, w, v) = problem(16, 64, output=output, breakpoint_features=breakpoint_features)
    ref = METHODS[CURRENT](psi, params["net"], x)
    worst = max(relative_deviation(ref, fn(psi, params["net"], x)) for fn in METHODS.values())
    scalar = jax.vmap(lambda xi: taylor2(psi, params["net"], xi))(x)
    worst = max(worst, relative_deviation(ref, scalar))
    # Whole gradient vectors (by symmetry some leaves, the biases here, are exactly zero).
    g_ref = ravel_pytree(jax.grad(make_loss(METHODS[CURRENT], psi, x, w, v))(params))[0]
    for fn in METHODS.values():
        g = ravel_pytree(jax.grad(make_loss(fn, psi, x, w, v))(params))[0]
        worst = max(worst, relative_deviation([g_ref], [g]))

    def rows(deriv):
        point = lambda p, xi: jnp.stack(deriv(psi, p, xi))  # noqa: E731
        jac = jax.vmap(jax.jacrev(point), in_axes=(None, 0))(params["net"], x)
        return [jnp.concatenate([a.reshape(len(x), 3, -1) for a in jax.tree.leaves(jac)], -1)]

    worst = max(worst, relative_deviation(rows(model.derivatives), rows(taylor2)))
    return worst


def interleaved_times(compiled: list, args: list, reps: int) -> list[list[float]]:
    """Seconds per call of each compiled function, called in turn (A B C A B C ...)."""
    for c, a in zip(compiled, args):
        jax.block_until_ready(c(*a))
    times: list[list[float]] = [[] for _ in compiled]
    for _ in range(reps):
        for c, a, t in zip(compiled, args, times):
            t0 = time.perf_counter()
            jax.block_until_ready(c(*a))
            t.append(time.perf_counter() - t0)
    return times


def measure(steps: int, reps: int, sizes, methods) -> list[dict]:
    rows = []
    for width, npts in sizes:
        psi, params, (x, w, v) = problem(width, npts)
        compiled = [
            scan_of_steps(make_loss(METHODS[m], psi, x, w, v), steps).lower(params).compile()
            for m in methods
        ]
        times = interleaved_times(compiled, [(params,)] * len(methods), reps)
        for name, c, t in zip(methods, compiled, times):
            rows.append(
                {
                    "width": width,
                    "points": npts,
                    "method": name,
                    "ms": 1e3 * statistics.median(t) / steps,
                    "ms_min": 1e3 * min(t) / steps,
                    "mflops": xla_flops(c) / 1e6,
                }
            )
            print(rows[-1], flush=True)
    return rows


def table(rows: list[dict]) -> str:
    out = [
        "| width x points | method | ms/step (median) | ms/step (min) "
        "| speed-up vs current (min) | XLA MFLOP/step |",
        "|---|---|---|---|---|---|",
    ]
    base = {(r["width"], r["points"]): r["ms_min"] for r in rows if r["method"] == CURRENT}
    for r in rows:
        ref = base.get((r["width"], r["points"]), float("nan"))
        out.append(
            f"| {r['width']} x {r['points']} | {r['method']} | {r['ms']:.3f} | {r['ms_min']:.3f} "
            f"| {ref / r['ms_min']:.2f} | {r['mflops']:.1f} |"
        )
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# Per-step overhead: nnx.jit on a module against jax.jit on split state, K steps per call.


def dispatch_variants(width: int, npts: int, k: int) -> dict[str, Callable[[], object]]:
    """Callables that each advance the same Adam training by k steps (pinn-run's loss).

    jax.jit: pinn-run's own Adam stage block (split state, lax.scan of k steps, then the loss
    of the new parameters for the log), and the same scan without that final loss.
    nnx.jit: the network and E as an nnx.Module with an nnx.Optimizer; k = 1 is the usual
    `@nnx.jit def train_step(model, optimizer)`, k > 1 scans k steps on the split state inside
    one nnx.jit call.
    """
    import optax

    psi, params, (x, w, v) = problem(width, npts)
    prob = train.Problem(psi, x, w, v, None, 1.0)
    loss = train.make_loss(prob)
    schedule = train.make_schedule("exponential", 1e-2, 1e-4, 2000)
    stage = train.adam_stage(loss, schedule)
    block = stage.block.lower(params, stage.init(params), k).compile()
    state = {"p": params, "o": stage.init(params)}

    def jax_jit():
        state["p"], state["o"], total, _ = block(state["p"], state["o"])
        return total

    opt = optax.adam(schedule)
    value_and_grad = jax.value_and_grad(lambda p: loss(p)[0])

    def plain_step(carry, _):
        p, o = carry
        total, grads = value_and_grad(p)
        updates, o = opt.update(grads, o, p)
        return (optax.apply_updates(p, updates), o), total

    plain = jax.jit(lambda p, o: jax.lax.scan(plain_step, (p, o), length=k))
    plain = plain.lower(params, opt.init(params)).compile()
    bare = {"p": params, "o": opt.init(params)}

    def jax_jit_plain():
        (bare["p"], bare["o"]), totals = plain(bare["p"], bare["o"])
        return totals

    class Trainable(nnx.Module):
        def __init__(self):
            self.net = nnx.merge(psi.graphdef, params["net"])
            self.energy = nnx.Param(params["energy"])

    def module_loss(m):
        pure = {"net": nnx.to_pure_dict(nnx.state(m.net, nnx.Param)), "energy": m.energy[...]}
        return loss(pure)[0]

    def one_step(m, opt):
        total, grads = nnx.value_and_grad(module_loss)(m)
        opt.update(m, grads)
        return total

    @nnx.jit
    def nnx_step(m, opt):
        return one_step(m, opt)

    @nnx.jit
    def nnx_block(m, opt):
        graphdef, st = nnx.split((m, opt))

        def body(carry, _):
            mm, oo = nnx.merge(graphdef, carry)
            total = one_step(mm, oo)
            return nnx.state((mm, oo)), total

        st, totals = jax.lax.scan(body, st, length=k)
        nnx.update((m, opt), st)
        return totals[-1]

    m = Trainable()
    opt = nnx.Optimizer(m, optax.adam(schedule), wrt=nnx.Param)
    nnx_call = (lambda: nnx_step(m, opt)) if k == 1 else (lambda: nnx_block(m, opt))
    return {
        "jax.jit, pinn-run's block (split state; + a final loss per call)": jax_jit,
        "jax.jit, plain scan of steps (split state)": jax_jit_plain,
        "nnx.jit (module + nnx.Optimizer)": nnx_call,
    }


def dispatch_table(width: int, npts: int, steps: int, reps: int) -> str:
    out = [
        f"| {width} x {npts}, pinn-run's loss | K = 1 step per call: ms/step "
        "| K = 100 steps per call: ms/step |",
        "|---|---|---|",
    ]
    cells: dict[str, list[str]] = {}
    for k in (1, 100):
        fns = dispatch_variants(width, npts, k)
        calls = max(1, steps // k)
        for fn in fns.values():
            jax.block_until_ready(fn())  # compile and warm up
        times: dict[str, list[float]] = {name: [] for name in fns}
        for _ in range(reps):
            for name, fn in fns.items():
                t0 = time.perf_counter()
                for _ in range(calls):
                    total = fn()
                jax.block_until_ready(total)
                times[name].append((time.perf_counter() - t0) / (calls * k))
        for name, t in times.items():
            cells.setdefault(name, []).append(
                f"{1e3 * statistics.median(t):.3f} (min {1e3 * min(t):.3f})"
            )
    out += [f"| {name} | {' | '.join(c)} |" for name, c in cells.items()]
    return "\n".join(out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--steps", type=int, default=50, help="steps per timed call")
    ap.add_argument("--reps", type=int, default=7, help="timed calls per method")
    ap.add_argument("--methods", nargs="*", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--sizes", nargs="*", default=[f"{w}x{n}" for w, n in SIZES])
    ap.add_argument(
        "--dispatch", action="store_true", help="only the nnx.jit vs jax.jit table (32 x 512)"
    )
    args = ap.parse_args(argv)
    if args.dispatch:
        text = dispatch_table(32, 512, steps=200, reps=args.reps)
        print(text)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(text + "\n")
        return
    for output, bp in [("linear", False), ("exp", True)]:
        dev = check_agreement(output, bp)
        print(f"agreement with nested jvp (output={output}, breakpoint features={bp}): {dev:.1e}")
        assert dev < 1e-9, dev
    sizes = [tuple(int(s) for s in size.split("x")) for size in args.sizes]
    text = table(measure(args.steps, args.reps, sizes, args.methods))
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
