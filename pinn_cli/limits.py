"""Bounds on every number of a config, and the checks that walk the typed config for them: no
key a schema lacks, at any depth; every int and float finite and inside its range. Each failure
is a ConfigError naming the key, the value and what is allowed (validation.py runs these first).
"""

from __future__ import annotations

import dataclasses
import math
import re

from .config import Config, ConfigError, PotentialConfig

# Bounds on numbers. Units: hbar^2 / 2m = 1, so with lengths of order 1 an energy is 1 / length^2.
# Every float is finite and at most MAX_MAGNITUDE in size: a V or an energy of 1e12 already has a
# decay length of 1e-6 and swamps the kinetic term of E - V in float64; squared residuals of it
# still fit float32 (3e38). Every int fits a signed 32-bit integer (XLA's counters and shapes).
MAX_MAGNITUDE = 1e12
MAX_INT = 2**31 - 1
MAX_SEED = 2**32 - 1  # JAX's threefry key holds 32 bits of seed: larger ones wrap or overflow
MAX_LENGTH = 1e6  # |coordinate| of a domain end, a segment edge, a width, a centre

# (key, as a regular expression; lowest; highest; why) where the default range is not the one.
RANGES = (
    ("seed", 0, MAX_SEED, "JAX's PRNG keys take a 32-bit unsigned seed"),
    (
        r"potential\.(domain\[\d+\]|segments\[\d+\]\[[01]\]|width|centre|separation)",
        -MAX_LENGTH,
        MAX_LENGTH,
        "lengths in units where hbar^2/2m = 1",
    ),
    (r"optim\.refine_tol", 0.0, 1.0, "a relative decrease of the loss"),
    (r"optim\.refine_window", 1, 1_000_000, "steps of the refinement stage"),
    (r"optim\.refine_extra", 0, 1_000_000, "steps past optim.refine_steps"),
    (r"optim\.settle_tol", 0.0, 1.0, "a relative change of the Rayleigh quotient"),
    (r"optim\.cg_tol", 0.0, 1.0, "a fraction of the right-hand side's norm"),
    (r"optim\.cg_iters", 1, 10_000, "conjugate-gradient iterations per step"),
)
DEFAULT_RANGES = {
    float: (-MAX_MAGNITUDE, MAX_MAGNITUDE, "the bound on every float, in units hbar^2/2m = 1"),
    int: (-MAX_INT, MAX_INT, "the bound on every int: a signed 32-bit integer"),
}


def require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def check_keys(node, key: str = "") -> None:
    """Every attribute of every schema dataclass in the config is one of its fields.

    `+model.widht=64` (or `++`, or `+foo=1`) appends a key that Hydra's struct mode would refuse
    otherwise, and `OmegaConf.to_object` sets it as an attribute; nothing would read it.
    """
    fields = [f.name for f in dataclasses.fields(node)]
    stray = sorted(set(vars(node)) - set(fields))
    if stray and isinstance(node, PotentialConfig):
        raise ConfigError(not_a_parameter(type(node), stray[0]))
    require(
        not stray,
        f"{_join(key, stray[0] if stray else '')} is not a key of {key or 'the config'}; "
        f"its keys are {fields}",
    )
    for name in fields:
        value = getattr(node, name)
        if dataclasses.is_dataclass(value):
            check_keys(value, _join(key, name))


def _numbers(node, key: str = ""):
    """(dotted key, value) for every int or float in a typed config: dataclass fields and the
    items of lists (`potential.segments[1][2]`), at any depth. Bools are not numbers here."""
    if dataclasses.is_dataclass(node):
        for f in dataclasses.fields(node):
            yield from _numbers(getattr(node, f.name), _join(key, f.name))
    elif isinstance(node, list | tuple):
        for i, item in enumerate(node):
            yield from _numbers(item, f"{key}[{i}]")
    elif isinstance(node, int | float) and not isinstance(node, bool):
        yield key, node


def allowed_range(key: str, value: float) -> tuple[float, float, str]:
    """(lowest, highest, why) for a number at `key`: from RANGES, else by its type."""
    for pattern, lo, hi, why in RANGES:
        if re.fullmatch(pattern, key):
            return lo, hi, why
    return DEFAULT_RANGES[float if isinstance(value, float) else int]


def _range_text(key: str, lo: float, hi: float) -> str:
    def num(v):
        return str(v) if isinstance(v, int) else f"{v:g}"

    return f"|{key}| <= {num(hi)}" if lo == -hi else f"{num(lo)} <= {key} <= {num(hi)}"


def check_numbers(cfg: Config) -> None:
    """Every number of the config is finite and inside its range (RANGES, DEFAULT_RANGES)."""
    for key, value in _numbers(cfg):
        lo, hi, why = allowed_range(key, value)
        allowed = f"{_range_text(key, lo, hi)} ({why})"
        require(math.isfinite(value), f"{key}={value} is not a finite number; allowed: {allowed}")
        require(lo <= value <= hi, f"{key}={value} is out of range; allowed: {allowed}")


def not_a_parameter(schema: type[PotentialConfig], key: str) -> str:
    """The one-line refusal of `potential.<key>` for a potential whose schema has no such field."""
    params = [f.name for f in dataclasses.fields(schema) if f.name != "name"]
    return (
        f"potential.{key} is not a parameter of potential={schema.name}; "
        f"its parameters are {params}"
    )
