"""Typed configuration: frozen-by-convention dataclass schemas registered in Hydra's ConfigStore.

The composed DictConfig is converted into these dataclasses once (`OmegaConf.to_object`) and
checked by validation.py before anything is compiled; everything downstream receives plain
values.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


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
    # (list[Any]: OmegaConf coerces no int inside a nested list; config.py checks and converts)
    segments: list[Any] = field(
        default_factory=lambda: [[0.0, 0.3, 0.0], [0.3, 0.5, 40.0], [0.5, 1.0, 10.0]]
    )


@dataclass
class FormulaConfig(PotentialConfig):
    name: str = "formula"
    domain: list[float] = field(default_factory=lambda: [-4.0, 4.0])
    formula: str = "x**4 - 3*x**2"  # V(x) as an expression in x


@dataclass
class Box2DConfig(PotentialConfig):
    name: str = "box2d"
    domain: list[Any] = field(default_factory=lambda: [[0.0, 1.0], [0.0, 1.0]])


@dataclass
class Harmonic2DConfig(PotentialConfig):
    name: str = "harmonic2d"
    domain: list[Any] = field(default_factory=lambda: [[-6.0, 6.0], [-6.0, 6.0]])
    omega: list[float] = field(default_factory=lambda: [1.0, 1.0])  # V = wx^2 x^2 + wy^2 y^2


@dataclass
class DiskConfig(PotentialConfig):
    name: str = "disk"
    radius: float = 1.0  # V = 0 inside the circle about the origin, psi = 0 on it


@dataclass
class Separable2DConfig(PotentialConfig):
    name: str = "separable2d"
    # V = Vx(x) + Vy(y), each as piecewise's segments [[x0, x1, V], ...]; together the domain
    x_segments: list[Any] = field(
        default_factory=lambda: [[0.0, 0.4, 0.0], [0.4, 0.6, 30.0], [0.6, 1.0, 0.0]]
    )
    y_segments: list[Any] = field(default_factory=lambda: [[0.0, 0.5, 0.0], [0.5, 1.0, 10.0]])


@dataclass
class FiniteWell2DConfig(PotentialConfig):
    name: str = "finite_well2d"
    domain: list[Any] = field(default_factory=lambda: [[-2.0, 2.0], [-2.0, 2.0]])
    V0: float = 50.0
    width: Any = 1.0  # the centred well's side, or [wx, wy]


@dataclass
class Formula2DConfig(PotentialConfig):
    name: str = "formula2d"
    domain: list[Any] = field(default_factory=lambda: [[-6.0, 6.0], [-6.0, 6.0]])
    formula: str = "x**2 + y**2 + 0.5*x*y"  # V(x, y) as an expression in x and y


# The schema of each registered potential, by name (stored as schema/potential/<name>).
POTENTIAL_SCHEMAS: dict[str, type[PotentialConfig]] = {
    "infinite_well": InfiniteWellConfig,
    "finite_well": FiniteWellConfig,
    "barrier": BarrierConfig,
    "double_well": DoubleWellConfig,
    "harmonic": HarmonicConfig,
    "piecewise": PiecewiseConfig,
    "formula": FormulaConfig,
    "box2d": Box2DConfig,
    "harmonic2d": Harmonic2DConfig,
    "disk": DiskConfig,
    "separable2d": Separable2DConfig,
    "finite_well2d": FiniteWell2DConfig,
    "formula2d": Formula2DConfig,
}


@dataclass
class EquationConfig:
    # "stationary": eigenstates of -psi'' + V psi = E psi; "tdse": i psi_t = -psi_xx + V psi
    # from an initial state (the `initial` group) over 0 <= t <= time.T.
    name: str = "stationary"


@dataclass
class InitialConfig:
    """What every initial state's schema has: its registered name. Not itself a choice."""

    name: str = MISSING


@dataclass
class GaussianInitialConfig(InitialConfig):
    """exp(-(x - x0)^2 / (4 sigma^2) + i k0 x), normalised on the domain."""

    name: str = "gaussian"
    x0: float | None = None  # null: a quarter of the way into the domain
    # mean wave number (the kinetic energy is about k0^2 + 1 / (4 sigma^2)); null: k0^2 is the
    # range of V, so a packet meets a barrier at about its height
    k0: float | None = None
    sigma: float | None = None  # null: a fortieth of the domain


@dataclass
class CoherentInitialConfig(InitialConfig):
    """The oscillator's ground state displaced to x0, at rest (potential=harmonic only)."""

    name: str = "coherent"
    x0: float = 1.0


@dataclass
class SuperpositionInitialConfig(InitialConfig):
    """sum_n c_n psi_n over the potential's eigenstates 0, 1, ..., normalised."""

    name: str = "superposition"
    coefficients: list[float] = field(default_factory=lambda: [1.0, 1.0])


@dataclass
class EigenInitialConfig(InitialConfig):
    """Eigenstate n alone: psi only turns its phase, exp(-i E_n t)."""

    name: str = "eigen"
    n: int = 0


INITIAL_SCHEMAS: dict[str, type[InitialConfig]] = {
    "gaussian": GaussianInitialConfig,
    "coherent": CoherentInitialConfig,
    "superposition": SuperpositionInitialConfig,
    "eigen": EigenInitialConfig,
}


@dataclass
class TimeConfig:
    """The time axis of equation=tdse."""

    # the end time; the default suits the default packet on the unit box: with the barrier,
    # its fast part has crossed and its slow part is turning back
    T: float = 0.01
    # K: train on [0, T/K], then each next window from the last one's end; null: enough that
    # each window sees about 3 radians of exp(-i E t) at the initial state's top energies
    windows: int | None = None
    points: int = 8  # Gauss-Legendre nodes in t per window (train.points are the x nodes)
    frames: int = 101  # times on the output grid: psi_t.npz, observables.csv, the figures


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
    # A V symmetric about the box's centre along an axis: "auto" makes a 2-D ground state
    # (state=0) even along that axis, and every state k of a 1-D run with excited states
    # (state > 0) even or odd ((-1)^k), by construction, each trained on one side of it (half
    # the domain; 2-D at twice the node density, 1-D at the same); "off": the whole domain.
    symmetry: str = "auto"
    # Input features (x - b)_+^2 at each breakpoint b of V, so psi'' can jump where V does.
    breakpoint_features: bool = True
    # activation=adaptive_tanh: tanh(n a z) with a trainable slope a per hidden layer ("layer")
    # or per unit ("neuron"); n = slope_scale, a starts at 1/n (Jagtap et al. 2020)
    adaptive: str = "layer"
    slope_scale: float = 10.0
    # weight of their slope-recovery term S(a) = 1 / mean_k exp(mean_i a_i^k) in the loss; 0: off
    slope_recovery: float = 0.0
    # activation=siren: the first layer is sin(omega0 z) (Sitzmann et al. 2020 use 30)
    omega0: float = 30.0
    # state=n: each state k > 0 carries a power of the trained ground state's decay,
    # psi_k = B exp(a_k s N0) N_k, so its network need not cancel to zero across the tails;
    # a_k = carrier * (scaled per state: assemble.carrier_power); 0: off; null: 1 where V is
    # not piecewise constant (smooth wells on wide domains), else 0
    carrier: float | None = None
    # 1-D state=n: state k's first hidden layer starts with its weights and biases times
    # 1 + state_scale * k, so its network starts with more oscillation across the domain
    # (state k has k nodes); 0: off. With 0.5 the infinite well's states 6-8 and the double
    # well's 4-9 reach psi <= 2e-7 (docs/results.md, "Ten states")
    state_scale: float = 0.5


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
    # Adam steps per state; null: 500 before the refinement stage of a ground-state run
    # (state=0), 2000 otherwise (Adam alone; the Rayleigh-Ritz stages of excited states)
    steps: int | None = None
    lr: float = 1e-2
    lr_schedule: str = "exponential"  # "constant" | "exponential" | "cosine"
    lr_final: float = 1e-4
    points: int = 192
    collocation: str = "gauss"  # "gauss": Gauss-Legendre per smooth piece | "uniform"
    log_every: int = 100
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    # 1-D state=n: an excited state whose refinement ends far above the loss the states below
    # it reached (stopping.STALL_FACTOR times, without E having settled: a local minimum) is trained
    # again from another initialisation (seed + 1000 * attempt), up to this many times; the
    # attempt of lowest loss is kept. 0: never
    retries: int = 2
    # K > 1: K networks from seeds seed..seed+K-1, trained side by side in one vmapped program.
    ensemble: int = 1
    # "coarse": a 2-D ground state of a piecewise-constant V starts with its network fitted
    # to the coarse reference state and learned E at its energy (warm_start.py); "random":
    # from the network's initialisation, as every other state does
    start: str = "coarse"
    # N > 1: the collocation points split over N devices (GPUs; on CPU, host devices made by
    # XLA_FLAGS=--xla_force_host_platform_device_count=N), parameters replicated (sharding.py)
    devices: int = 1


@dataclass
class OptimConfig:
    name: str = "adam_lm"
    refine: str = "lm"  # second stage after Adam: "none" | "lm" | "lbfgs"
    refine_steps: int = 800
    # The refinement stops once refine_window steps no longer lower the loss by a fraction
    # > refine_tol (refine_steps is the ceiling), as when the energy has settled at rounding
    refine_tol: float = 1e-15
    refine_window: int = 10
    # The last refinement stage may run up to this many steps past refine_steps while its loss
    # still falls by 1.5x per 100 steps (an oscillator's upper states converge linearly);
    # null: as many as refine_steps, 0: never
    refine_extra: int | None = None
    # ... or once the Rayleigh quotient has held still to this relative tolerance over 50 steps
    # and E agrees with it to 1e-8 (0: never); the loss keeps falling after that as psi sharpens
    settle_tol: float = 1e-13
    # The LM stage's linear solver: "explicit" forms the Jacobian (cheapest for small problems),
    # "cg" is matrix-free Gauss-Newton (conjugate gradients on J^T J, cost linear in points and
    # parameters), "auto" picks by a cost estimate.
    solver: str = "auto"
    # Geodesic acceleration (Transtrum & Sethna): each LM step adds the second-order correction
    # along its direction (one more residual pass in forward-over-forward mode and one more
    # solve), so the step gets the decrease the model predicts and the damping can fall. null:
    # for 1-D eigenproblems with the explicit solver (the energy reaches 1e-10 in 2-4x fewer
    # steps); not in 2-D (finite_well2d state=5, explicit solver: subspace errors 2.5e-4 with
    # it, 8e-5 without), nor for equation=tdse (x and t) or the cg solver (unmeasured)
    geodesic: bool | None = None
    cg_iters: int = 20  # CG iterations per LM step, at most
    cg_tol: float = 1e-3  # CG stops once its residual is below this fraction of the right side


@dataclass
class ChecksConfig:
    """Self-checks of every state (evaluation.self_checks): a state that fails one is reported
    "suspect"; with strict, the run then exits 5."""

    strict: bool = True  # false: record the failed checks but exit 0
    residual_tol: float = 1e-2  # ||(H - E) psi|| / (||lap psi|| + ||V psi||) on the fine rule
    orthogonality_tol: float = 1e-3  # |<psi_m, psi_n>| of normalised states
    energy_tol: float = 1e-2  # relative error of E against the reference
    psi_tol: float = 0.2  # relative L2 error of psi against the reference
    norm_tol: float = 1e-2  # equation=tdse: max over t of |integral |psi|^2 - 1|


@dataclass
class LoggerConfig:
    """Experiment trackers the run is mirrored to (the logger group: none, tensorboard,
    mlflow, or a list of them); the run folder is written either way."""

    tensorboard: bool = False  # event files in RUN/tensorboard/
    mlflow: bool = False
    # null: a file store in mlruns/ of the folder pinn-run starts in; or a server's URI
    tracking_uri: str | None = None
    experiment: str | None = None  # null: the sweep's folder in a multirun, else "pinn-run"
    run_name: str | None = None  # null: the job's overrides in a multirun, else the folder's name


@dataclass
class Config:
    # One of POTENTIAL_SCHEMAS, chosen by the potential group (OmegaConf has no unions).
    potential: Any = MISSING
    model: ModelConfig = field(default_factory=ModelConfig)
    energy: EnergyConfig = field(default_factory=EnergyConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    checks: ChecksConfig = field(default_factory=ChecksConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    equation: EquationConfig = field(default_factory=EquationConfig)
    # One of INITIAL_SCHEMAS (the initial group), for equation=tdse; null: a gaussian packet.
    initial: Any = None
    time: TimeConfig = field(default_factory=TimeConfig)
    seed: int = 0
    precision: str = "float64"  # "float64" | "float32"
    progress: bool = True
    resume: str | None = None  # a run folder to continue from its last good checkpoint
    overwrite: bool = False  # true: replace the run (or sweep) already in hydra.run.dir
    # XLA's persistent compilation cache: later runs of the same shapes skip compilation.
    compile_cache: str | None = "~/.cache/pinn-run/xla"
    state: int = 0  # the eigenstate to find (0 = ground); states 0..state-1 are found first
    profile_steps: int = 0  # > 0: JAX profiler trace of the first N training steps in <run>/profile


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="pinn_schema", node=Config)
    for name, schema in POTENTIAL_SCHEMAS.items():
        cs.store(group="schema/potential", name=name, node=schema)
    for name, schema in INITIAL_SCHEMAS.items():
        cs.store(group="schema/initial", name=name, node=schema)


def potential_params(p: PotentialConfig) -> dict:
    """The keyword arguments of `make_potential(p.name, **params)`: every field but `name`, as
    plain values (`domain` a tuple, other lists plain lists)."""
    params = dataclasses.asdict(p)
    del params["name"]
    if "domain" in params:
        params["domain"] = tuple(params["domain"])
    if "omega" in params and isinstance(params["omega"], list):
        params["omega"] = tuple(params["omega"])
    return params
