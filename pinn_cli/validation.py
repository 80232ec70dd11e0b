"""The checks of a typed Config that Hydra's type checks cannot express, all before any JAX work.

Each failure is a ConfigError whose message names the key, the value received and what is
allowed: the CLI prints it as one line and exits 2.
"""

from __future__ import annotations

import math

import numpy as np

from .activations import ACTIVATIONS, ADAPTIVE, refusal
from .config import POTENTIAL_SCHEMAS, Config, ConfigError, PotentialConfig, potential_params
from .limits import MAX_MAGNITUDE, MAX_SEED, check_keys, check_numbers
from .limits import require as _require
from .potentials import REGISTRY as POTENTIALS
from .resources import check_resources

CHOICES = {
    "energy.mode": ("fixed", "learned"),
    "model.output": ("auto", "exp", "linear"),
    "model.symmetry": ("auto", "off"),
    "model.adaptive": ADAPTIVE,
    "loss.normalization": ("hard", "penalty"),
    "train.lr_schedule": ("constant", "exponential", "cosine"),
    "train.collocation": ("gauss", "uniform"),
    "train.start": ("coarse", "random"),
    "optim.refine": ("none", "lm", "lbfgs"),
    "optim.solver": ("auto", "explicit", "cg"),
    "precision": ("float64", "float32"),
    "equation.name": ("stationary", "tdse"),
}

MIN_POINTS = 16
# the problem's own scales (the bounds on every number: limits.py)
MIN_DOMAIN = 1e-5  # its box's ground energy (pi / L)^2 is then ~1e11, below MAX_MAGNITUDE
MIN_PIECE = 1e-6  # the shortest smooth piece, as a fraction of the domain: Gauss nodes stay apart
MAX_SEGMENTS = 200  # each adds an input feature and >= 8 nodes, and V unrolls per segment in XLA
POINTS_PER_HALF_WAVE = 8  # state n has n nodes, n + 1 half-waves: at least 8 (n + 1) points


def _get(cfg: Config, dotted: str):
    node = cfg
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


def validate(cfg: Config) -> None:
    """Raise ConfigError naming the bad value and what is allowed; no JAX is touched here.

    Checked in order: the keys (no key a schema lacks, at any depth), the numbers (finite, in
    range; a piecewise potential's segments made floats), the choices, each setting's own
    constraints, the potential, the energy, and what the run needs of the machine.
    """
    _check_schema(cfg.potential)
    check_keys(cfg)
    _check_segments(cfg.potential)
    check_numbers(cfg)
    _check_choices(cfg)
    _check_settings(cfg)
    potential = _check_potential(cfg.potential)
    _check_scale(cfg.potential, potential)
    _check_dimension(cfg, potential)
    _check_equation(cfg, potential)
    _check_energy(cfg, potential)
    check_resources(cfg, potential)


def _check_choices(cfg: Config) -> None:
    activation = cfg.model.activation
    reason = refusal(activation)
    if reason:
        raise ConfigError(
            f"model.activation={activation!r} {reason}; choose a smooth one: {sorted(ACTIVATIONS)}"
        )
    _require(
        activation in ACTIVATIONS,
        f"model.activation={activation!r} is not registered; choose one of {sorted(ACTIVATIONS)}",
    )
    for key, allowed in CHOICES.items():
        value = _get(cfg, key)
        _require(value in allowed, f"{key}={value!r} is not allowed; choose one of {list(allowed)}")


def _check_settings(cfg: Config) -> None:
    """Each setting's own constraints, and those between settings."""
    m, t = cfg.model, cfg.train
    _require(cfg.state >= 0, f"state={cfg.state} must be >= 0 (0 is the ground state)")
    _require(
        cfg.state == 0 or m.output != "exp",
        f"model.output=exp has no nodes, so it cannot represent state={cfg.state}; "
        f"use model.output=auto or linear",
    )
    _require(
        cfg.state == 0 or cfg.energy.value is None,
        f"energy.value fixes one energy, but state={cfg.state} trains states 0..{cfg.state}; "
        f"use energy=learned, or energy=fixed without energy.value where closed forms exist",
    )
    _require(m.width >= 1, f"model.width={m.width} must be at least 1")
    _require(m.depth >= 1, f"model.depth={m.depth} must be at least 1")
    _require(
        m.output_scale is None or m.output_scale > 0,
        f"model.output_scale={m.output_scale} must be > 0 (or null: chosen from V)",
    )
    _check_activation_options(cfg)
    _require(
        t.steps is None or t.steps >= 0,
        f"train.steps={t.steps} must be >= 0 (or null: chosen by the run)",
    )
    _require(
        t.points >= MIN_POINTS, f"train.points={t.points} is too few; use at least {MIN_POINTS}"
    )
    _check_points_for_state(cfg)
    _require(t.lr > 0, f"train.lr={t.lr} must be > 0")
    _require(t.lr_final > 0, f"train.lr_final={t.lr_final} must be > 0")
    _require(t.log_every >= 1, f"train.log_every={t.log_every} must be >= 1")
    _require(t.checkpoint_every >= 1, f"train.checkpoint_every={t.checkpoint_every} must be >= 1")
    _check_ensemble(cfg)
    _require(t.devices >= 1, f"train.devices={t.devices} must be >= 1 (1: one device)")
    _require(
        t.devices == 1 or t.ensemble == 1,
        f"train.devices={t.devices} with train.ensemble={t.ensemble}: an ensemble runs on one "
        f"device (its members already batch the work); use train.devices=1 or train.ensemble=1",
    )
    _require(t.keep_checkpoints >= 1, f"train.keep_checkpoints={t.keep_checkpoints} must be >= 1")
    _require(t.retries >= 0, f"train.retries={t.retries} must be >= 0 (0: never retrain a state)")
    _require(
        cfg.optim.refine_steps >= 0, f"optim.refine_steps={cfg.optim.refine_steps} must be >= 0"
    )
    _require(cfg.profile_steps >= 0, f"profile_steps={cfg.profile_steps} must be >= 0")
    _require(cfg.loss.norm_weight > 0, f"loss.norm_weight={cfg.loss.norm_weight} must be > 0")


def _check_activation_options(cfg: Config) -> None:
    m = cfg.model
    _require(m.slope_scale > 0, f"model.slope_scale={m.slope_scale} must be > 0 (n in tanh(n a z))")
    _require(m.omega0 > 0, f"model.omega0={m.omega0} must be > 0 (siren's first-layer frequency)")
    _require(
        m.carrier is None or 0.0 <= m.carrier <= 4.0,
        f"model.carrier={m.carrier} must be null or in [0, 4] (the power of the ground state's "
        "decay that excited states carry)",
    )
    _require(
        0.0 <= m.state_scale <= 10.0,
        f"model.state_scale={m.state_scale} must be in [0, 10] (state k's first layer starts "
        "1 + state_scale * k times sharper; 0: off)",
    )
    _require(
        m.slope_recovery >= 0,
        f"model.slope_recovery={m.slope_recovery} must be >= 0 (a loss weight; 0: off)",
    )
    _require(
        m.slope_recovery == 0 or m.activation == "adaptive_tanh",
        f"model.slope_recovery={m.slope_recovery} weighs adaptive slopes, which "
        f"model.activation={m.activation!r} has none of; use model.activation=adaptive_tanh "
        f"or model.slope_recovery=0",
    )


def _check_points_for_state(cfg: Config) -> None:
    need = POINTS_PER_HALF_WAVE * (cfg.state + 1)
    _require(
        cfg.train.points >= need,
        f"state={cfg.state} has {cfg.state} node(s), which train.points={cfg.train.points} "
        f"cannot resolve; use train.points >= {need} ({POINTS_PER_HALF_WAVE} per half-wave)",
    )


def _check_ensemble(cfg: Config) -> None:
    t = cfg.train
    _require(t.ensemble >= 1, f"train.ensemble={t.ensemble} must be >= 1 (1: a single network)")
    _require(
        t.ensemble == 1 or cfg.state == 0,
        f"train.ensemble={t.ensemble} trains ground states only, but state={cfg.state}; "
        f"use state=0 or train.ensemble=1",
    )
    last = cfg.seed + t.ensemble - 1
    _require(
        last <= MAX_SEED,
        f"seed={cfg.seed} with train.ensemble={t.ensemble} uses seeds up to {last}; JAX's PRNG "
        f"keys take seeds 0..{MAX_SEED}",
    )


def _check_segments(p) -> None:
    """A piecewise potential's segments: at most MAX_SEGMENTS rows of three numbers, made floats
    in place (the schema types them loosely so that `[[0,0.3,0],...]` with ints composes)."""
    segments = getattr(p, "segments", None)
    if not isinstance(segments, list):
        return
    _require(
        len(segments) <= MAX_SEGMENTS,
        f"potential.segments has {len(segments)} segments; at most {MAX_SEGMENTS} are allowed "
        f"(each one adds an input feature and collocation points, and compiling grows with them)",
    )
    for i, row in enumerate(segments):
        ok = isinstance(row, list) and len(row) == 3 and all(map(_is_number, row))
        _require(ok, f"potential.segments[{i}]={row!r} must be three numbers [x_left, x_right, V]")
    p.segments = [[float(v) for v in row] for row in segments]


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_schema(p) -> None:
    """`p` is an instance of the schema of the potential it names (its keys: `_check_keys`)."""
    name = p.get("name") if isinstance(p, dict) else getattr(p, "name", None)
    _require(
        name in POTENTIALS,
        f"potential={name!r} is not a known potential; choose one of {sorted(POTENTIALS)}",
    )
    schema = POTENTIAL_SCHEMAS.get(name)
    _require(schema is not None, f"potential={name} has no schema in pinn_cli/config.py")
    _require(
        not isinstance(p, dict),
        f"potential={name} is untyped: its config must list /schema/potential/{name}@_here_ "
        f"in its defaults",
    )
    _require(
        type(p) is schema,
        f"potential.name={name} does not name the potential chosen ({type(p).name}); "
        f"choose it with potential={name}",
    )


def _check_potential(p: PotentialConfig):
    from .potentials import make_potential

    try:
        return make_potential(p.name, **potential_params(p))
    except ValueError as err:
        raise ConfigError(str(err)) from None


def _check_scale(p: PotentialConfig, potential) -> None:
    """The built potential's domain is not too short, no smooth piece is too short for its
    nodes, and |V| stays within MAX_MAGNITUDE (sampled: a formula or omega^2 x^2 can exceed it
    though every parameter is in range)."""
    if potential.dim == 2:
        _check_scale_2d(p, potential)
        return
    lo, hi = potential.domain
    length = hi - lo
    _require(
        length >= MIN_DOMAIN,
        f"potential={p.name} has the domain [{lo:g}, {hi:g}], {length:g} long; it must be at "
        f"least {MIN_DOMAIN:g} long (its ground energy (pi/L)^2 grows past {MAX_MAGNITUDE:g})",
    )
    a, b = min(potential.pieces, key=lambda piece: piece[1] - piece[0])
    _require(
        b - a >= MIN_PIECE * length,
        f"potential={p.name} has a smooth piece [{a:g}, {b:g}], {b - a:g} long; each must be at "
        f"least {MIN_PIECE:g} of the domain's length {length:g}",
    )
    with np.errstate(all="ignore"):
        v = np.abs(np.asarray(potential(np.linspace(lo, hi, 1025)), float))
    worst = float(np.max(v)) if np.all(np.isfinite(v)) else math.inf
    _require(
        worst <= MAX_MAGNITUDE,
        f"potential={p.name} reaches |V|={worst:.3g} on [{lo:g}, {hi:g}]; |V| must stay <= "
        f"{MAX_MAGNITUDE:g} (the bound on every float, in units hbar^2/2m = 1)",
    )


def _check_scale_2d(p: PotentialConfig, potential) -> None:
    """Each side of a 2-D domain at least MIN_DOMAIN long, |V| <= MAX_MAGNITUDE on it."""
    for (lo, hi), axis in zip(potential.intervals, "xy"):
        _require(
            hi - lo >= MIN_DOMAIN,
            f"potential={p.name} has the {axis} side [{lo:g}, {hi:g}], {hi - lo:g} long; each "
            f"side must be at least {MIN_DOMAIN:g} long",
        )
    worst = potential.span
    _require(
        math.isfinite(worst) and worst <= MAX_MAGNITUDE,
        f"potential={p.name} spans |V|={worst:.3g}; V must stay within {MAX_MAGNITUDE:g} "
        f"(the bound on every float, in units hbar^2/2m = 1)",
    )


def _check_dimension(cfg: Config, potential) -> None:
    """What 2-D runs do not offer yet: ensembles (judged on a 1-D grid)."""
    _require(
        potential.dim == 1 or cfg.train.ensemble == 1,
        f"train.ensemble={cfg.train.ensemble} is for 1-D potentials; potential="
        f"{cfg.potential.name} is 2-D: use train.ensemble=1",
    )


def _check_equation(cfg: Config, potential) -> None:
    """equation=tdse: a 1-D potential, one network per window, a sensible time axis, and an
    initial state that fits the potential (built here: a packet at a wall is refused)."""
    from .config import INITIAL_SCHEMAS
    from .initial_states import InitialStateError, make_initial_state

    name = getattr(cfg.initial, "name", None)
    if cfg.equation.name == "stationary":
        _require(
            cfg.initial is None,
            f"initial={name} is an initial state of the time-dependent equation, but "
            f"equation=stationary; drop initial=..., or use equation=tdse",
        )
        return
    tm = cfg.time
    _require(
        potential.dim == 1,
        f"equation=tdse is for 1-D potentials; potential={cfg.potential.name} is 2-D",
    )
    _require(cfg.state == 0, f"state={cfg.state} is for eigenproblems; equation=tdse has none")
    _require(cfg.train.ensemble == 1, "train.ensemble > 1 is for eigenproblems, not equation=tdse")
    _require(
        cfg.train.devices == 1,
        f"train.devices={cfg.train.devices} splits an eigenproblem's points; equation=tdse runs "
        f"on one device (train.devices=1)",
    )
    _require(tm.T > 0, f"time.T={tm.T} must be > 0 (the end time)")
    _require(
        tm.windows is None or tm.windows >= 1,
        f"time.windows={tm.windows} must be >= 1 (or null: chosen from the energies)",
    )
    _require(tm.points >= 2, f"time.points={tm.points} must be >= 2 (nodes in t per window)")
    _require(tm.frames >= 2, f"time.frames={tm.frames} must be >= 2 (times on the output grid)")
    if cfg.initial is None:
        return
    _require(
        type(cfg.initial) is INITIAL_SCHEMAS.get(name),
        f"initial={name!r} is not an initial state; choose one of {sorted(INITIAL_SCHEMAS)}",
    )
    try:
        make_initial_state(cfg.initial, potential)
    except InitialStateError as err:
        raise ConfigError(str(err)) from None


def _check_energy(cfg: Config, potential) -> None:
    e, p = cfg.energy, cfg.potential
    if e.mode != "fixed" or e.value is not None:
        return
    _require(
        potential.closed_form_energy(cfg.state) is not None,
        f"energy=fixed needs energy.value: potential={p.name!r} has no closed-form energy; "
        f"give energy.value=<E> or use energy=learned",
    )
