"""Typed configuration: frozen-by-convention dataclass schemas registered in Hydra's ConfigStore,
plus the semantic checks that Hydra's type checks cannot express.

The composed DictConfig is converted into these dataclasses once (`OmegaConf.to_object`) and
validated before anything is compiled; everything downstream receives plain values.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from .activations import ACTIVATIONS, REFUSED
from .potentials import REGISTRY as POTENTIALS


class ConfigError(ValueError):
    """A user's mistake in the configuration: reported as one line, no traceback."""


@dataclass
class PotentialConfig:
    """What every potential's schema has: the registered name it builds. Not itself a choice."""

    name: str = MISSING


# One schema per potential: its fields are exactly the keyword arguments of its factory in
# potentials.py, so a key of another potential is refused where Hydra composes the config.


@dataclass
class InfiniteWellConfig(PotentialConfig):
    name: str = "infinite_well"
    domain: list[float] = field(default_factory=lambda: [0.0, 1.0])


@dataclass
class FiniteWellConfig(PotentialConfig):
    name: str = "finite_well"
    domain: list[float] = field(default_factory=lambda: [-2.0, 2.0])
    V0: float = 50.0
    width: float = 1.0
    centre: float | None = None  # null: the middle of the domain


@dataclass
class BarrierConfig(PotentialConfig):
    name: str = "barrier"
    domain: list[float] = field(default_factory=lambda: [0.0, 1.0])
    V0: float = 50.0
    width: float = 0.2
    centre: float | None = None  # null: the middle of the domain


@dataclass
class DoubleWellConfig(PotentialConfig):
    name: str = "double_well"
    domain: list[float] = field(default_factory=lambda: [-2.0, 2.0])
    V0: float = 50.0
    width: float = 0.8
    separation: float = 0.4  # the barrier between the two wells
    centre: float | None = None  # null: the middle of the domain


@dataclass
class HarmonicConfig(PotentialConfig):
    name: str = "harmonic"
    domain: list[float] = field(default_factory=lambda: [-8.0, 8.0])
    omega: float = 1.0  # V = omega^2 x^2


@dataclass
class PiecewiseConfig(PotentialConfig):
    name: str = "piecewise"
    # [[x0, x1, V], [x1, x2, V], ...], contiguous; together they are the domain
    segments: list[list[float]] = field(
        default_factory=lambda: [[0.0, 0.3, 0.0], [0.3, 0.5, 40.0], [0.5, 1.0, 10.0]]
    )


@dataclass
class FormulaConfig(PotentialConfig):
    name: str = "formula"
    domain: list[float] = field(default_factory=lambda: [-4.0, 4.0])
    formula: str = "x**4 - 3*x**2"  # V(x) as an expression in x


# The schema of each registered potential, by name (stored as schema/potential/<name>).
POTENTIAL_SCHEMAS: dict[str, type[PotentialConfig]] = {
    "infinite_well": InfiniteWellConfig,
    "finite_well": FiniteWellConfig,
    "barrier": BarrierConfig,
    "double_well": DoubleWellConfig,
    "harmonic": HarmonicConfig,
    "piecewise": PiecewiseConfig,
    "formula": FormulaConfig,
}


@dataclass
class ModelConfig:
    width: int = 32
    depth: int = 2
    activation: str = "tanh"
    # "exp": psi = B(x) exp(N(x)), nodeless, so only the ground state is representable;
    # "linear": psi = B(x) N(x), the paper's form; "auto": exp for state 0, linear above it.
    output: str = "auto"
    # psi = B exp(output_scale * N); null: sqrt(max V - min V) * L / 4, at least 1, so an O(1)
    # network can reach the decay exponent kappa * distance of a deep well.
    output_scale: float | None = None
    # Input features (x - b)_+^2 at each breakpoint b of V, so psi'' can jump where V does.
    breakpoint_features: bool = True


@dataclass
class EnergyConfig:
    mode: str = "learned"  # "fixed" | "learned"
    value: float | None = None  # fixed energy; default: the exact value where one is known
    init: float | None = (
        None  # learned energy's start; default: Rayleigh quotient of the initial psi
    )


@dataclass
class LossConfig:
    normalization: str = "hard"  # "hard": residual / ||psi||^2 | "penalty": + w (||psi||^2 - 1)^2
    norm_weight: float = 1.0


@dataclass
class TrainConfig:
    steps: int = 2000
    lr: float = 1e-2
    lr_schedule: str = "exponential"  # "constant" | "exponential" | "cosine"
    lr_final: float = 1e-4
    points: int = 192
    collocation: str = "gauss"  # "gauss": Gauss-Legendre per smooth piece | "uniform"
    log_every: int = 100
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    # K > 1: K networks from seeds seed..seed+K-1, trained side by side in one vmapped program.
    ensemble: int = 1


@dataclass
class OptimConfig:
    name: str = "adam_lm"
    refine: str = "lm"  # second stage after Adam: "none" | "lm" | "lbfgs"
    refine_steps: int = 800
    refine_tol: float = (
        1e-15  # stop when the relative loss decrease of an accepted step is below this
    )


@dataclass
class Config:
    # One of POTENTIAL_SCHEMAS, chosen by the potential group (OmegaConf has no unions).
    potential: Any = MISSING
    model: ModelConfig = field(default_factory=ModelConfig)
    energy: EnergyConfig = field(default_factory=EnergyConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    seed: int = 0
    precision: str = "float64"  # "float64" | "float32"
    progress: bool = True
    resume: str | None = None  # a run folder to continue from its last good checkpoint
    # XLA's persistent compilation cache: later runs of the same shapes skip compilation.
    compile_cache: str | None = "~/.cache/pinn-run/xla"
    state: int = 0  # the eigenstate to find (0 = ground); states 0..state-1 are found first
    profile_steps: int = 0  # > 0: JAX profiler trace of the first N training steps in <run>/profile


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="pinn_schema", node=Config)
    for name, schema in POTENTIAL_SCHEMAS.items():
        cs.store(group="schema/potential", name=name, node=schema)


CHOICES = {
    "energy.mode": ("fixed", "learned"),
    "model.output": ("auto", "exp", "linear"),
    "loss.normalization": ("hard", "penalty"),
    "train.lr_schedule": ("constant", "exponential", "cosine"),
    "train.collocation": ("gauss", "uniform"),
    "optim.refine": ("none", "lm", "lbfgs"),
    "precision": ("float64", "float32"),
}

MIN_POINTS = 16


def _get(cfg: Config, dotted: str):
    node = cfg
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def validate(cfg: Config) -> None:
    """Raise ConfigError naming the bad value and what is allowed; no JAX is touched here."""
    p, m, t = cfg.potential, cfg.model, cfg.train
    _check_schema(p)
    if m.activation in REFUSED:
        raise ConfigError(
            f"model.activation={m.activation!r} is piecewise linear, so psi'' vanishes almost "
            f"everywhere and the Schrodinger residual cannot be trained; choose a smooth one: "
            f"{sorted(ACTIVATIONS)}"
        )
    _require(
        m.activation in ACTIVATIONS,
        f"model.activation={m.activation!r} is not registered; choose one of {sorted(ACTIVATIONS)}",
    )
    for key, allowed in CHOICES.items():
        value = _get(cfg, key)
        _require(value in allowed, f"{key}={value!r} is not allowed; choose one of {list(allowed)}")
    _check_potential(p)
    _check_energy(cfg)
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
    _require(t.steps >= 0, f"train.steps={t.steps} must be >= 0")
    _require(
        t.points >= MIN_POINTS, f"train.points={t.points} is too few; use at least {MIN_POINTS}"
    )
    _require(t.lr > 0, f"train.lr={t.lr} must be > 0")
    _require(t.lr_final > 0, f"train.lr_final={t.lr_final} must be > 0")
    _require(t.log_every >= 1, f"train.log_every={t.log_every} must be >= 1")
    _require(t.checkpoint_every >= 1, f"train.checkpoint_every={t.checkpoint_every} must be >= 1")
    _require(t.ensemble >= 1, f"train.ensemble={t.ensemble} must be >= 1 (1: a single network)")
    _require(
        t.ensemble == 1 or cfg.state == 0,
        f"train.ensemble={t.ensemble} trains ground states only, but state={cfg.state}; "
        f"use state=0 or train.ensemble=1",
    )
    _require(t.keep_checkpoints >= 1, f"train.keep_checkpoints={t.keep_checkpoints} must be >= 1")
    _require(
        cfg.optim.refine_steps >= 0, f"optim.refine_steps={cfg.optim.refine_steps} must be >= 0"
    )
    _require(cfg.profile_steps >= 0, f"profile_steps={cfg.profile_steps} must be >= 0")
    _require(cfg.loss.norm_weight > 0, f"loss.norm_weight={cfg.loss.norm_weight} must be > 0")


def potential_params(p: PotentialConfig) -> dict:
    """The keyword arguments of `make_potential(p.name, **params)`: every field but `name`, as
    plain values (`domain` a tuple, other lists plain lists)."""
    params = dataclasses.asdict(p)
    del params["name"]
    if "domain" in params:
        params["domain"] = tuple(params["domain"])
    return params


def _check_schema(p) -> None:
    """`p` is an instance of the schema of the potential it names, with no stray attributes
    (`+potential.key=...` appends a key that Hydra's struct mode would otherwise refuse)."""
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
    stray = sorted(set(vars(p)) - {f.name for f in dataclasses.fields(schema)})
    if stray:
        raise ConfigError(not_a_parameter(schema, stray[0]))


def not_a_parameter(schema: type[PotentialConfig], key: str) -> str:
    """The one-line refusal of `potential.<key>` for a potential whose schema has no such field."""
    params = [f.name for f in dataclasses.fields(schema) if f.name != "name"]
    return (
        f"potential.{key} is not a parameter of potential={schema.name}; "
        f"its parameters are {params}"
    )


def _check_potential(p: PotentialConfig):
    from .potentials import make_potential

    try:
        return make_potential(p.name, **potential_params(p))
    except ValueError as err:
        raise ConfigError(str(err)) from None


def _check_energy(cfg: Config) -> None:
    e, p = cfg.energy, cfg.potential
    if e.mode != "fixed" or e.value is not None:
        return
    potential = _check_potential(p)
    _require(
        potential.closed_form_energy(cfg.state) is not None,
        f"energy=fixed needs energy.value: potential={p.name!r} has no closed-form energy; "
        f"give energy.value=<E> or use energy=learned",
    )
