"""What a run needs of the machine, estimated from the config and refused before anything is
compiled: peak memory against the machine's physical memory. NumPy-free and JAX-free.
"""

from __future__ import annotations

import math
import os

from .config import Config, ConfigError

# Peak memory of a run, in floats: the per-point activations of the Taylor-mode forward pass and
# its backward pass (value, first and second derivative, kept and differentiated) per hidden unit,
# and copies of the parameters (gradient, Adam's moments, L-BFGS's history).
ACTIVATION_COPIES = 12
PARAMETER_COPIES = 32
MIN_NODES_PER_PIECE = 8  # quadrature.gauss puts at least this many nodes on each smooth piece
DIAGONAL_CHUNK = 32  # points per chunk of gradient rows for the matrix-free LM's preconditioner
# M P min(M, P) up to which the LM stage forms the Jacobian (M residual rows, P parameters);
# above it, conjugate gradients on Jacobian-vector products are cheaper. Measured on 2 cores
# (docs/speed.md): explicit wins at width 32 x 192 points (~8e7), CG from 64 x 192 (~3e8) up.
EXPLICIT_MAX_WORK = 2e8
PER_CORNER = 5  # input features per corner of a non-separable jump (corners.PER_CORNER; JAX-free)


def choose_solver(solver: str, rows: int, params: int) -> str:
    """The LM stage's linear solver, "explicit" or "cg", for `rows` residuals in `params`
    unknowns: `solver` itself unless it is "auto"."""
    if solver != "auto":
        return solver
    return "explicit" if rows * params * min(rows, params) <= EXPLICIT_MAX_WORK else "cg"


def memory_estimate(cfg: Config, potential) -> tuple[int, int, int]:
    """(bytes, parameters, collocation points) of a run at its peak, roughly: activations
    (points x width x depth x ACTIVATION_COPIES), copies of the parameters, and with
    optim.refine=lm the Jacobian (points x parameters) and its Gram matrix
    (min(points, parameters)^2), or for the matrix-free solver a chunk of gradient rows and a few
    parameter vectors; all of it once per member of an ensemble."""
    m, t = cfg.model, cfg.train
    box = potential.box
    kinks = sum(len(b) for b in box.breakpoints) + len(box.corners) * PER_CORNER
    inputs = box.dim + (kinks if m.breakpoint_features else 0)
    hidden = (inputs + 1) * m.width + (m.depth - 1) * (m.width + 1) * m.width
    params = hidden + m.width + 1 + 1  # the output layer, and the energy
    points = t.points
    if t.collocation == "gauss":
        pieces = [len(box.pieces(axis)) for axis in range(box.dim)]
        points += MIN_NODES_PER_PIECE**box.dim * math.prod(pieces)  # the least per piece
    floats = points * m.width * m.depth * ACTIVATION_COPIES + PARAMETER_COPIES * params
    if cfg.optim.refine == "lm" and choose_solver(cfg.optim.solver, points, params) == "cg":
        floats += DIAGONAL_CHUNK * params
    elif cfg.optim.refine == "lm":
        floats += points * params + min(points, params) ** 2
    itemsize = 8 if cfg.precision == "float64" else 4
    return floats * itemsize * t.ensemble, params, points


def machine_memory() -> int | None:
    """This machine's physical memory in bytes (None where the OS does not say). The whole of
    it, not what is free now: the estimate is rough, so only runs that cannot fit are refused."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}"
        n /= 1024
    return ""


def check_resources(cfg: Config, potential) -> None:
    """ConfigError when the run's estimated peak memory exceeds the machine's."""
    m, t = cfg.model, cfg.train
    need, params, points = memory_estimate(cfg, potential)
    limit = machine_memory()
    if limit is not None and need > limit:
        raise ConfigError(
            f"train.points={t.points}, model.width={m.width}, model.depth={m.depth}, "
            f"train.ensemble={t.ensemble} need about {_size(need)} of memory ({points} points x "
            f"{params} parameters, {cfg.precision}, optim.refine={cfg.optim.refine}), more than "
            f"this machine's {_size(limit or 0)}; use fewer points, a smaller model or ensemble"
        )
