"""Configuration into plain objects: the potential, the quadrature rule, the trial function, the
problem, the training plan and the initial training state. Nothing below this module sees the
config.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from . import coarse, physics
from .activations import Activation
from .config import Config, ConfigError, potential_params
from .potentials import make_potential


def potential_from(cfg: Config):
    return make_potential(cfg.potential.name, **potential_params(cfg.potential))


def fixed_energy(cfg: Config, potential, n: int = 0) -> float | None:
    """The energy of state n to hold fixed, or None when it is learned."""
    if cfg.energy.mode == "learned":
        return None
    if cfg.energy.value is not None:
        return float(cfg.energy.value)
    known = potential.closed_form_energy(n)
    if known is None:
        raise ConfigError(
            f"energy=fixed needs energy.value: potential={potential.name!r} has no closed-form "
            f"energy; give energy.value=<E> or use energy=learned"
        )
    return known


# Adam steps per state when train.steps is null. Before a refinement stage a ground state needs
# Adam only to bring the network near the basin the second stage converges from: on 20 1-D
# ground-state cases (the accuracy table's and the other defaults) and 12 variants (widths 8-64,
# depths 1-3, sin, gelu, L-BFGS, fixed E, an ensemble) the Levenberg-Marquardt stage took as
# many steps after 500 Adam steps as after 2000, at the same errors (2026-12-02,
# docs/results.md). An excited state's Adam stage is a Rayleigh-Ritz minimisation that decides
# which state the refinement finds: with 500 the oscillator's ten states ended at psi 4.4e-6
# (3.6e-7 with 2000), the finite well's at E 4.6e-10 (1.5e-14).
ADAM_STEPS = 2000
ADAM_STEPS_GROUND = 500


def adam_steps(cfg: Config) -> int:
    """train.steps, or where it is null ADAM_STEPS_GROUND before the refinement of a
    ground-state run and ADAM_STEPS otherwise."""
    if cfg.train.steps is not None:
        return cfg.train.steps
    refined = cfg.optim.refine != "none" and cfg.optim.refine_steps > 0
    return ADAM_STEPS_GROUND if cfg.state == 0 and refined else ADAM_STEPS


def plan_from(cfg: Config):
    from .train import Plan

    t, o = cfg.train, cfg.optim
    return Plan(
        steps=adam_steps(cfg),
        lr=t.lr,
        lr_schedule=t.lr_schedule,
        lr_final=t.lr_final,
        log_every=t.log_every,
        checkpoint_every=t.checkpoint_every,
        refine=o.refine,
        refine_steps=o.refine_steps if o.refine != "none" else 0,
        refine_tol=o.refine_tol,
        refine_window=o.refine_window,
        refine_extra=(o.refine_steps if o.refine_extra is None else o.refine_extra)
        if o.refine != "none"
        else 0,
        settle_tol=o.settle_tol,
        solver=o.solver,
        geodesic=o.geodesic,
        cg_iters=o.cg_iters,
        cg_tol=o.cg_tol,
        ensemble=t.ensemble,
    )


def activation_from(cfg: Config) -> Activation:
    """The hidden layers' activation with its options, as a plain frozen value."""
    m = cfg.model
    return Activation(m.activation, m.adaptive, float(m.slope_scale), float(m.omega0))


def output_scale(cfg: Config, potential) -> float:
    """psi = B exp(scale N): sqrt(max V - min V) L / 4 for a 1-D piecewise-constant part, at
    least 1, so an O(1) network can reach the decay exponent of a deep well."""
    if cfg.model.output_scale is not None:
        return float(cfg.model.output_scale)
    if potential.dim == 2:
        if not potential.piecewise_constant:
            return 1.0
        return max(1.0, np.sqrt(potential.span) * max(potential.box.lengths) / 4.0)
    segments = getattr(potential, "segments", None)
    if not segments:
        return 1.0
    values = [v for _, _, v in segments]
    lo, hi = potential.domain
    return max(1.0, np.sqrt(max(values) - min(values)) * (hi - lo) / 4.0)


def node_shares(potential) -> tuple[float, float] | None:
    """Per-axis node counts for a smooth 2-D V, in proportion to each axis's length over psi's
    spread along it: an anisotropic oscillator's narrow axis gets the nodes its narrower packet
    needs (omega = [1, 2] on [-6, 6]^2: 25 x 36 instead of 30 x 30). None (equal counts, split
    by piece length) for 1-D and piecewise-constant V, whose nodes follow the breakpoints."""
    if potential.dim != 2 or potential.piecewise_constant:
        return None
    return tuple(
        length / spread for length, spread in zip(potential.box.lengths, potential.axis_spreads())
    )


def min_per_piece(potential, points: int) -> int:
    """The fewest Gauss nodes a smooth piece of a 1-D V gets: a quarter of the points (fewer
    when there are more than four pieces, never under 8). Split by length alone, a narrow well
    (V0 = 500, 5% of [-2, 2]) held 10 of 192 nodes: the residual, zero at those nodes, left psi
    free between them (E 1e-9, psi 3e-6; with 24 nodes 5e-12, 4e-7, two seeds each). The
    narrow walls of a wide deep well are the same case: with V0 = 400 on 75% of [-2, 2] each
    0.5-wide wall, where psi falls by e^-10 from a jump of psi'' of 400 psi, held 24 nodes, and
    the network bent psi between them within 0.1 of the jump (E 1.4e-7, psi 4.5e-6; the
    training grid's Rayleigh quotient fell below E_0); with 48, 1.0e-12 and 3.2e-8."""
    if potential.dim != 1:
        return 8
    pieces = len(potential.box.pieces(0))
    return max(8, min(points // 4, points // pieces))


def mirror_axes(cfg: Config, potential, n: int = 0) -> tuple[bool, ...]:
    """Per axis, whether state n's psi has a parity about the box's centre along it: a 2-D
    ground-state run (state=0) of a V symmetric about that centre line (sampled on a grid that
    avoids the centre), where the ground state, nodeless and unique, is even; every state of a
    1-D run of a symmetric V, state n having parity (-1)^n. () otherwise.

    A 1-D ground state needs it where two wells are nearly degenerate: a barrier of V0 = 500
    across 40% of [0, 1] or two wells of V0 = 200 a separation of 0.4 apart have an odd state
    within 1e-4 of E_0, and on the whole domain the network found a state living in one well,
    (psi_0 +- psi_1) / sqrt(2) (psi error 0.77, flagged "suspect"); even by construction they
    reach E 2e-14 and 3e-13."""
    if cfg.model.symmetry == "off":
        return ()
    if potential.dim == 1:
        return (True,) if potential.is_symmetric() else ()
    if n != 0 or cfg.state != 0 or getattr(potential, "radius", None) is not None:
        return ()
    (x0, x1), (y0, y1) = potential.box.intervals
    t = (np.arange(1, 60) + 0.5 * np.sqrt(2.0) - 0.5) / 60.0  # off the centre and the breakpoints
    gx, gy = np.meshgrid(x0 + (x1 - x0) * t, y0 + (y1 - y0) * t, indexing="ij")
    v = lambda a, b: np.asarray(potential.fn(a, b) + 0.0 * a, float)  # noqa: E731
    here, scale = v(gx, gy), 1e-12 * max(1.0, float(np.max(np.abs(v(gx, gy)))))
    flipped = (v(x0 + x1 - gx, gy), v(gx, y0 + y1 - gy))
    mirror = tuple(bool(np.all(np.abs(f - here) <= scale)) for f in flipped)
    return mirror if any(mirror) else ()


def state_parity(cfg: Config, potential, n: int) -> int | None:
    """+1 or -1 when state n is trained even or odd by construction (`mirror_axes`), else
    None: a 1-D state n of a symmetric V has parity (-1)^n, a mirrored 2-D ground state +1."""
    if not mirror_axes(cfg, potential, n):
        return None
    return -1 if potential.dim == 1 and n % 2 else 1


def mirrored(box, mirror: tuple[bool, ...]):
    """The half of `box` on the upper side of the centre of each mirror axis (its breakpoints
    and corners there): where training needs nodes when psi is even along those axes."""
    from .quadrature import Box

    if not any(mirror):
        return box
    intervals = tuple(
        (0.5 * (lo + hi), hi) if m else (lo, hi) for (lo, hi), m in zip(box.intervals, mirror)
    )
    breaks = tuple(
        tuple(b for b in bs if b > lo) for bs, (lo, _) in zip(box.breakpoints, intervals)
    )
    inside = lambda c: all(lo < ci < hi for ci, (lo, hi) in zip(c, intervals))  # noqa: E731
    return Box(intervals, breaks, tuple(c for c in box.corners if inside(c)))


def rule_from(cfg: Config, potential, mirror: tuple[bool, ...] = ()):
    """The training rule; with mirror axes, on the half box (`mirrored`). A 2-D half box gets
    as many nodes per axis as the whole one would (twice the density along each mirror axis:
    its corner and wall layers need them), and so does a 1-D ground-state run's (two deep wells
    V0 = 500 a separation of 0.8 apart: E 1.3e-7 with half of them, 5.5e-12 with all); in a 1-D
    run with excited states each half box gets half of them, the whole domain's density, since
    its states evaluate the network twice per node (`mirror.symmetrised`): the double well's
    ten states took 30.8 s that way against 62.1 s with the whole count, at the same errors
    (docs/results.md, "Ten states"). The fewest nodes per piece (`min_per_piece`) come
    from the whole count: with half of it, the 0.5-wide walls of V0 = 400 on 75% of [-2, 2]
    kept 24 nodes and every even state of `state=9` missed (E 1.8e-9, psi 3.2e-6)."""
    from . import quadrature

    points = cfg.train.points
    if getattr(potential, "radius", None) is not None:
        return quadrature.disk(potential.radius, points)
    box = mirrored(potential.box, mirror)
    if potential.dim == 1 and any(mirror) and cfg.state > 0:
        points = (points + 1) // 2
    if cfg.train.collocation == "gauss":
        least = min_per_piece(potential, cfg.train.points)
        shares = node_shares(potential)
        layers = coarse.decay_layers(potential, box, cfg.state)
        return quadrature.gauss(box, points, least, shares=shares, layers=layers)
    return quadrature.uniform(box, points)


def starts_from_coarse(cfg: Config, potential, psi) -> bool:
    """Whether the ground state's network starts fitted to the coarse reference state
    (`warm_start`): train.start=coarse, a 2-D piecewise-constant V on a rectangle whose ground
    state is `confined`, the exponential output. Where psi fills the box the random start finds
    it, and the fitted one did worse on the wide square well (`width=3.2`: E drifted from 1e-5
    to 3e-5 while LM lowered the loss, psi 1e-3, against 2e-9 and 3e-6 from the random start).
    A smooth V has output scale 1, and on a wide domain the fit does not reach psi's Gaussian
    tails (misfit 160 -> 37 on harmonic2d)."""
    return (
        cfg.train.start == "coarse"
        and potential.dim == 2
        and potential.piecewise_constant
        and getattr(potential, "radius", None) is None
        and psi.output == "exp"
        and psi.carrier is None
        and coarse.confined(potential, mirrored(potential.box, psi.mirror), 0)
    )


def coarse_start(cfg: Config, potential, prob, params: dict) -> dict:
    """`params` fitted to the coarse ground state at the problem's nodes, learned E at its
    energy unless energy.init is given (`warm_start.from_state`); logs the fit."""
    import logging

    from . import warm_start

    energies, states = coarse.states(potential, cfg.state + 1)
    x = np.asarray(prob.x)
    ground = states(x)[0]
    energy = float(energies[0]) if cfg.energy.init is None else None
    params, before, after = warm_start.from_state(
        prob.psi, params, prob.x, prob.w, ground, energy, prob.energy_scale, cfg.train.ensemble
    )
    logging.getLogger("pinn_run").info(
        "state 0 starts from the coarse reference state (E %.6g): log-psi misfit %.2e -> %.2e",
        energies[0],
        before,
        after,
    )
    return params


@dataclass(frozen=True)
class Built:
    """What training state n needs: the potential, its problem, the plan and the initial state."""

    potential: object
    problem: object  # problem.Problem
    plan: object  # train.Plan
    state: object  # train.TrainState


def carrier_power(cfg: Config, potential, n: int) -> float:
    """The power of the ground state's decay that state n > 0 carries (model.carrier; null:
    1 for a V that is not piecewise constant, in 1-D or 2-D, else 0), scaled for state n.

    State n decays as exp(-kappa_n |x|) near a wall where V = V_edge, kappa_n^2 = V_edge - E_n;
    carrying psi_0^a with a kappa_0 > kappa_n would make psi_n / carrier grow towards the walls,
    so a <= kappa_n / kappa_0 (0 for a state above V_edge, a box state). And psi_n / psi_0
    grows like a degree-n polynomial across the allowed region (the oscillator's Hermite
    factor): above n = 4 a further 2 / sqrt(n) keeps the network's output within a few orders
    of magnitude (measured on the oscillator's states 1-9: a = 1 throughout left states 7-9 at
    1e-6 to 2e-5, 1 / sqrt(n) throughout cost states 2-3 two orders). E_n here is a coarse
    finite-difference estimate (milliseconds): it only shapes the trial function. V_edge is the
    lowest V on the boundary (in 1-D, the lower of the two walls)."""
    base = cfg.model.carrier
    if base is None:
        base = 0.0 if potential.piecewise_constant else 1.0
    if base == 0.0 or n == 0 or getattr(potential, "radius", None) is not None:
        return 0.0  # (the disk has no walls of a box to decay towards: no carrier)
    energies, v_edge = coarse.spectrum(potential, max(cfg.state, n) + 1)
    if energies[n] >= v_edge:
        return 0.0
    kappa2 = (v_edge - energies[n]) / (v_edge - energies[0])
    return base * float(np.sqrt(kappa2 * min(1.0, 4.0 / n)))


def coarse_level(cfg: Config, potential, n: int) -> float | None:
    """State n's coarse energy estimate (`coarse.spectrum`), which its shifted
    Levenberg-Marquardt steps may hold E at (programs.shifted); None for the ground state, a
    fixed energy, and the disk (the coarse solvers see only its bounding square)."""
    if n == 0 or cfg.energy.mode != "learned" or getattr(potential, "radius", None) is not None:
        return None
    return float(coarse.spectrum(potential, max(cfg.state, n) + 1)[0][n])


def check_devices(devices: int) -> None:
    """Refuse train.devices beyond the devices JAX sees (before anything compiles)."""
    import jax

    found = jax.devices()
    if len(found) < devices:
        raise ConfigError(
            f"train.devices={devices}: only {len(found)} {found[0].platform} device(s) visible; "
            f"use train.devices <= {len(found)} (on CPU, more host devices come from "
            f"XLA_FLAGS=--xla_force_host_platform_device_count={devices})"
        )


def on_devices(devices: int, prob, params):
    """The problem's points split over `devices` devices, the parameters replicated."""
    from . import problem, sharding

    return sharding.shard(prob, problem.POINT_FIELDS, devices), sharding.replicate(params, devices)


def trial_function(cfg: Config, potential, n: int, carrier, dtype):
    """State n's trial function and its initial network parameters: with a mirror axis in 1-D
    the output symmetrised (`mirror.symmetrised`), an even state's first-layer biases spread
    (`model.spread_first_layer`); a 1-D state n > 0 with its first layer 1 +
    model.state_scale * n times sharper."""
    import jax
    import jax.numpy as jnp

    from . import ensemble, model

    m, mirror = cfg.model, mirror_axes(cfg, potential, n)
    parity = state_parity(cfg, potential, n) if potential.dim == 1 else None
    psi, net = model.make_trial_function(
        box=potential.box,
        width=m.width,
        depth=m.depth,
        activation=activation_from(cfg),
        output=(("exp" if n == 0 else "linear") if m.output == "auto" else m.output),
        breakpoint_features=m.breakpoint_features,
        key=ensemble.keys(cfg.seed, cfg.train.ensemble, fold=n),
        scale=output_scale(cfg, potential),
        dtype=dtype,
        radius=getattr(potential, "radius", None),
        carrier=carrier,
        mirror=mirror,
        # a leaf (1.0 odd, 0.0 even), so that the even and odd states share one program
        odd=() if parity is None else (1.0 if parity == -1 else 0.0,),
        mirror_output=parity is not None,
    )
    if psi.mirror_output and psi.parity == 1:  # member i's biases as seed + i alone draws them
        seeds = jnp.arange(cfg.seed, cfg.seed + cfg.train.ensemble)
        keys = jax.vmap(lambda s: jax.random.fold_in(jax.random.key(s), 7919 + n))(seeds)
        if cfg.train.ensemble > 1:
            net = jax.vmap(model.spread_first_layer)(net, keys)
        else:
            net = model.spread_first_layer(net, keys[0])
    if n > 0 and potential.box.dim == 1 and m.state_scale != 0:
        net = model.scale_first_layer(net, 1.0 + m.state_scale * n)
    return psi, net


def build(cfg: Config, n: int = 0, lower: physics.Lower | None = None, carrier=None) -> Built:
    """Potential, grid, network, problem and plan for state n, with its initial training state.
    `lower`: the states below n on the grid, W-orthonormal; `carrier`: a model.Carrier for
    excited states (the trained ground state's decay). With train.ensemble = K > 1 the
    state's leaves carry a leading member axis of size K."""
    import jax

    jax.config.update("jax_enable_x64", cfg.precision == "float64")
    import jax.numpy as jnp

    from . import problem, train

    dtype = jnp.float64 if cfg.precision == "float64" else jnp.float32
    if cfg.train.devices > 1:
        check_devices(cfg.train.devices)
    potential = potential_from(cfg)
    psi, net = trial_function(cfg, potential, n, carrier, dtype)
    prob = problem.make_problem(
        psi,
        rule_from(cfg, potential, psi.mirror),
        potential,
        fixed_energy=fixed_energy(cfg, potential, n),
        normalization=cfg.loss.normalization,
        norm_weight=cfg.loss.norm_weight,
        dtype=dtype,
        lower=None if lower is None else lower.padded(cfg.state),
        first_stage="ritz" if n > 0 else "residual",
        slope_recovery=float(cfg.model.slope_recovery),
        target=coarse_level(cfg, potential, n),
        lower_weight=problem.LOWER_WEIGHT if potential.dim == 1 else 0.0,
    )
    params = problem.init_params(prob, net, cfg.energy.init if n == 0 else None, cfg.train.ensemble)
    if n == 0 and starts_from_coarse(cfg, potential, psi):
        params = coarse_start(cfg, potential, prob, params)
    if cfg.train.devices > 1:
        prob, params = on_devices(cfg.train.devices, prob, params)
    plan = plan_from(cfg)
    if n < cfg.state:  # the states above are projected against this one: refine it to the end
        plan = dataclasses.replace(plan, settle_tol=0.0)
    return Built(potential, prob, plan, train.init_state(prob, plan, params))
