"""The Python API for notebooks and scripts: `solve("potential=finite_well", "model.width=64")`.

It takes the command line's overrides, composes the same configs, validates them the same way,
writes the same run folder (with `.hydra/config.yaml`, so `pinn-run resume=DIR` continues it) and
returns a `Result`: the summary's numbers, psi and V on the plotting grid as NumPy arrays, the
metrics as columns, and the folder.
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import outputs
from .config import Config, register_configs


@dataclass(frozen=True)
class Result:
    """One run's outcome. Arrays are on the plotting grid:

    * 1-D eigenproblems: `x` (X,), `psi` and `psi_ref` (states, X), normalised and sign-aligned,
      `v` (X,);
    * 2-D: `x` (nx,), `y` (ny,), `psi` (states, ny, nx), `v` (ny, nx), no `psi_ref`;
    * equation=tdse: `x` (X,), `t` (T,), `psi` and `psi_ref` complex (T, X), `v` (X,).
    """

    run_dir: Path
    code: int  # the exit code `pinn-run` would have returned
    summary: dict
    x: np.ndarray
    psi: np.ndarray
    v: np.ndarray
    psi_ref: np.ndarray | None = None
    y: np.ndarray | None = None
    t: np.ndarray | None = None
    metrics: dict[str, np.ndarray] = field(default_factory=dict)  # metrics.csv by column

    @property
    def status(self) -> str:
        return self.summary["status"]

    @property
    def energy(self) -> float | None:
        """The energy estimate of the last state (None for equation=tdse)."""
        return self.summary["energy"].get("estimate")

    @property
    def objective(self) -> float | None:
        """What a sweep minimises: the energy's relative error, or psi's L2 error in time."""
        from .experiment import objective

        return objective(self.summary)


def compose(*overrides: str) -> tuple[Config, object]:
    """The typed, validated Config of these overrides (a ConfigError names any mistake), and the
    composed config without Hydra's own keys (what .hydra/config.yaml holds)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from omegaconf import OmegaConf

    from .cli import to_config

    register_configs()
    with initialize_config_module("pinn_cli.conf", version_base="1.3"):
        cfg = hydra_compose("config", overrides=list(overrides))
    resolved = OmegaConf.to_container(cfg, resolve=False)
    typed = to_config(cfg)
    return typed, OmegaConf.create({k: v for k, v in resolved.items() if k != "hydra"})


def solve(*overrides: str, run_dir: str | Path | None = None) -> Result:
    """Run pinn-run with these overrides in this process; returns the Result.

    `run_dir`: the run folder (default: outputs/DATE/TIME as on the command line). A user's
    mistake raises ConfigError before anything is compiled."""
    from omegaconf import OmegaConf

    from . import dynamics, experiment
    from .cli import unique_dir
    from .guard import RunLock

    cfg, plain = compose(*overrides)
    run_dir = Path(run_dir or unique_dir(time.strftime("outputs/%Y-%m-%d/%H-%M-%S")))
    hydra_dir = run_dir / outputs.HYDRA_DIR
    hydra_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(plain, hydra_dir / "config.yaml")
    (hydra_dir / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    runner = dynamics.run if cfg.equation.name == "tdse" else experiment.run
    with RunLock(run_dir), _logged(run_dir / outputs.LOG):
        run = runner(cfg, run_dir)
    return load(run_dir, code=run.code)


def load(run_dir: str | Path, code: int = 0) -> Result:
    """The Result of a finished run folder (by `solve` or by `pinn-run`)."""
    run_dir = Path(run_dir)
    summary = json.loads((run_dir / outputs.SUMMARY).read_text())
    metrics = {}
    if (run_dir / outputs.METRICS).exists():
        metrics = {
            k: np.asarray(v) for k, v in outputs.read_metrics(run_dir / outputs.METRICS).items()
        }
    return Result(run_dir=run_dir, code=code, summary=summary, metrics=metrics, **_arrays(run_dir))


def _arrays(run_dir: Path) -> dict:
    if (run_dir / outputs.PSI_T).exists():
        with np.load(run_dir / outputs.PSI_T) as d:
            return {"x": d["x"], "t": d["t"], "psi": d["psi"], "psi_ref": d["psi_ref"], "v": d["v"]}
    if (run_dir / outputs.PSI_NPZ).exists():
        with np.load(run_dir / outputs.PSI_NPZ) as d:
            return {"x": d["x"], "y": d["y"], "psi": d["psi"], "v": d["V"]}
    table = np.genfromtxt(run_dir / outputs.PSI, delimiter=",", names=True)
    names = table.dtype.names
    psi = [table[n] for n in names if n.startswith("psi") and "exact" not in n]
    ref = [table[n] for n in names if n.startswith("psi_exact")]
    return {"x": table["x"], "psi": np.array(psi), "psi_ref": np.array(ref), "v": table["V"]}


@contextmanager
def _logged(path: Path):
    """The run's log lines into its folder's pinn_run.log, as Hydra's job logging does."""
    logger = logging.getLogger("pinn_run")
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        handler.close()
