"""A 2-D ground state's network started from the coarse reference state instead of from its
random initialisation (`train.start=coarse`).

From the random start, psi is spread over the whole box and Adam follows the residual towards
whichever state is nearest: in a deep narrow well (`finite_well2d` with V0 = 500 and width 0.4)
that was never the ground state, whose psi lives on a tenth of the box and falls by e^-38 in
the walls; the run converged to a state at E = 817 against 81.8 and was flagged suspect. The
coarse spectral-element solve (one degree, ~1 s, already made for the decay layers) knows
where psi lives. The network's output is fitted to it in the log domain, where the decay into
the walls is a slope the exponential output reaches, and learned E starts at the coarse
energy: the same run then reached E 4e-8, psi 4e-5 (docs/results.md, "Two dimensions").
Only a ground state confined to part of the box starts this way (`assemble.starts_from_coarse`):
where psi fills the box the random start finds it, and the wide well did worse from the fit.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

FIT_STEPS = 1000  # Adam steps on the log-domain misfit: ~1 s for 2500 nodes on 2 cores
FIT_LR = (1e-2, 1e-4)  # cosine decay from the first to the second
FLOOR = 1e-10  # of max |target|: below it the coarse state is rounding, and only psi's excess costs


def log_misfit(psi, net, x: jax.Array, w: jax.Array, log_target: jax.Array, known: jax.Array):
    """Weighted mean of (log |psi| - log target)^2 at the nodes; where the target is not
    `known` (below the floor), only log |psi| above it counts."""
    d = jnp.log(jnp.abs(psi(net, x)) + jnp.finfo(x.dtype).tiny) - log_target
    d = jnp.where(known, d, jnp.maximum(d, 0.0))
    return jnp.sum(w * d**2) / jnp.sum(w)


@functools.partial(jax.jit, static_argnames=("steps",))
def fit(psi, net, x, w, log_target, known, steps: int = FIT_STEPS):
    """`net` after `steps` Adam steps on `log_misfit`; returns it with the first and last
    misfit."""
    opt = optax.adam(optax.cosine_decay_schedule(FIT_LR[0], steps, FIT_LR[1] / FIT_LR[0]))
    grad = jax.value_and_grad(lambda p: log_misfit(psi, p, x, w, log_target, known))

    def step(carry, _):
        p, s = carry
        value, g = grad(p)
        update, s = opt.update(g, s, p)
        return (optax.apply_updates(p, update), s), value

    (net, _), values = jax.lax.scan(step, (net, opt.init(net)), None, length=steps)
    return net, values[0], values[-1]


def from_state(
    psi, params: dict, x, w, target: np.ndarray, energy: float | None, scale: float, members: int
):
    """`params` with the network fitted to the positive state `target` (its values at the
    nodes x) and, when E is learned and `energy` given, E there (`scale`: the problem's energy
    unit). With an ensemble (`members` > 1, a leading member axis) every member is fitted from
    its own start. Returns the parameters and the largest misfit before and after."""
    target = np.asarray(target, float)
    floor = FLOOR * float(np.max(np.abs(target)))
    known = jnp.asarray(target > floor)
    log_target = jnp.asarray(np.log(np.maximum(target, floor)), x.dtype)
    run = lambda net: fit(psi, net, x, w, log_target, known)  # noqa: E731
    net, before, after = (jax.vmap(run) if members > 1 else run)(params["net"])
    out = {**params, "net": net}
    if energy is not None and "energy" in params:
        out["energy"] = jnp.full_like(params["energy"], energy / scale)
    return out, float(jnp.max(before)), float(jnp.max(after))
