"""The `pinn-run` entry point: compose the config with Hydra, validate it, run the experiment.

This is the only module that imports Hydra's application machinery.
"""

from __future__ import annotations

import os
import time


def _process_age() -> float:
    """Seconds since this process started (the interpreter's own start-up included), where
    Linux's /proc says; else 0, i.e. timing starts when this module is imported."""
    try:
        with open("/proc/self/stat") as f:
            started = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22: start time
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - started / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


T_START = time.perf_counter() - _process_age()

import functools  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from .config import Config, ConfigError, register_configs  # noqa: E402
from .guard import RunLock, refuse  # noqa: E402
from .process import EXIT_FAILED, EXIT_SIGNAL, exit_now  # noqa: E402
from .validation import validate  # noqa: E402

log = logging.getLogger("pinn_run")


@functools.cache
def unique_dir(path: str) -> str:
    """`path`, or `path_1`, `path_2`, ... : the first that this process could create itself.

    Two runs started in the same second get separate folders (mkdir is atomic).
    """
    base, k = Path(path), 0
    while True:
        candidate = base if k == 0 else base.with_name(f"{base.name}_{k}")
        try:
            candidate.mkdir(parents=True)
            return str(candidate)
        except FileExistsError:
            k += 1


def to_config(cfg: DictConfig) -> Config:
    """Typed, validated Config from the composed DictConfig (a ConfigError on any mistake)."""
    obj = OmegaConf.to_object(cfg)
    assert isinstance(obj, Config)
    validate(obj)
    return obj


def _resumed_config(run_dir: Path) -> Config:
    """The config a run folder was started with, typed exactly as a fresh composition."""
    saved = run_dir / ".hydra" / "config.yaml"
    if not saved.exists():
        raise ConfigError(f"resume={run_dir}: not a run folder (no .hydra/config.yaml)")
    loaded = OmegaConf.load(saved)
    cfg = OmegaConf.merge(_saved_schema(loaded, run_dir), loaded)
    cfg.resume = None
    return to_config(cfg)


def _saved_schema(saved: DictConfig, run_dir: Path) -> DictConfig:
    """Config's schema with `potential` typed as the schema of the potential `saved` names.

    Keys of `saved.potential` that this schema lacks are dropped from `saved`: only run folders
    written before each potential had its own schema have them (every potential's keys, with
    values that potential's factory ignored).
    """
    import dataclasses

    from .config import INITIAL_SCHEMAS, POTENTIAL_SCHEMAS

    potential = saved.get("potential")
    name = potential.get("name") if isinstance(potential, DictConfig) else None
    if name not in POTENTIAL_SCHEMAS:
        raise ConfigError(
            f"resume={run_dir}: .hydra/config.yaml names potential={name!r}, not one of "
            f"{sorted(POTENTIAL_SCHEMAS)}"
        )
    potential_schema = POTENTIAL_SCHEMAS[name]
    fields = {f.name for f in dataclasses.fields(potential_schema)}
    for key in [k for k in potential if k not in fields]:
        del potential[key]
    schema = OmegaConf.structured(Config)
    schema.potential = OmegaConf.structured(potential_schema)
    initial = saved.get("initial")
    if isinstance(initial, DictConfig) and initial.get("name") in INITIAL_SCHEMAS:
        schema.initial = OmegaConf.structured(INITIAL_SCHEMAS[initial.get("name")])
    return schema


class RunFailed(RuntimeError):
    """A multirun job that ended with a non-zero exit code (diverged, interrupted)."""

    def __init__(self, code: int):
        super().__init__(f"a job ended with exit code {code} (its summary.json says why)")
        self.code = code

    def __reduce__(self):  # joblib's workers pickle it: rebuild it from the code, not the text
        return type(self), (self.code,)


_job_starts: list[float] = []  # each job's start in this process; a multirun runs several


def _fail(message: str) -> int:
    print(f"pinn-run: error: {message}", file=sys.stderr)
    return 2


def app(cfg: DictConfig) -> float | None:
    """The Hydra task: returns the energy's relative error (the objective for sweepers)."""
    from . import dynamics, experiment

    multirun = HydraConfig.get().mode.name == "MULTIRUN"
    t_start = time.perf_counter() if _job_starts else T_START
    _job_starts.append(t_start)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        typed = to_config(cfg)
        if typed.resume:
            run_dir = Path(typed.resume)
            typed = _resumed_config(run_dir)
            finished = _finished(run_dir)
            if finished is not None:
                return finished
        if multirun:
            _name_tracked_job(typed)
        with RunLock(run_dir):
            runner = dynamics.run if typed.equation.name == "tdse" else experiment.run
            result = runner(typed, run_dir, t_start=t_start, resume=cfg.resume is not None)
    except ConfigError as err:
        if multirun:
            log.error("config error: %s", err)  # into the job's own log, for pinn-report
            raise
        sys.exit(_fail(str(err)))
    except OSError as err:  # a full disk, a folder made read-only: the run cannot be written
        message = (
            f"could not write {err.filename or run_dir}: {err.strerror or err}; the checkpoints "
            f"written so far are kept, and resume={run_dir} continues once it is fixed"
        )
        if multirun:
            log.error(message)
            raise
        _fail(message)
        sys.exit(EXIT_FAILED)
    except Exception:
        if multirun:
            log.exception("job failed")
        raise
    if result.code != 0:
        if multirun:
            log.error("run ended with exit code %d", result.code)
            if result.code in EXIT_SIGNAL.values():
                sys.exit(result.code)  # a signal stops the whole sweep, not just this job
            raise RunFailed(result.code)
        sys.exit(result.code)
    return result.objective


def _name_tracked_job(cfg: Config) -> None:
    """In a multirun, the trackers' experiment is the sweep (its folder) and each job's run is
    named after its overrides, unless logger.experiment / logger.run_name say otherwise."""
    hydra_cfg = HydraConfig.get()
    cfg.logger.experiment = cfg.logger.experiment or str(hydra_cfg.sweep.dir)
    cfg.logger.run_name = (
        cfg.logger.run_name or hydra_cfg.job.override_dirname or str(hydra_cfg.job.num)
    )


def _finished(run_dir: Path) -> float | None:
    """For a resumed run that already finished: says so and returns its objective; changes
    nothing in the folder. None when there is something left to do."""
    import json

    from .outputs import SUMMARY

    try:
        summary = json.loads((run_dir / SUMMARY).read_text())
    except (OSError, ValueError):
        return None
    if summary.get("status") != "completed":
        return None
    print(f"pinn-run: resume={run_dir}: the run has finished (status completed); nothing to do")
    from .experiment import objective

    return objective(summary)


# Overrides that may go with resume=DIR: they change how the run is shown, not what it computes.
RESUME_KEEPS = ("progress=", "compile_cache=", "hydra.verbose=", "hydra/job_logging=")


def _argv_for_resume(argv: list[str]) -> list[str]:
    """`resume=DIR` continues in DIR itself: Hydra logs there and leaves its .hydra/ untouched.
    Overrides that would change the resumed run are refused: it continues as configured."""
    for arg in argv:
        if arg.startswith("resume=") and arg != "resume=null":
            run_dir = arg.split("=", 1)[1]
            if not Path(run_dir).is_dir():
                refuse(f"resume={run_dir}: not a folder (give the run folder to continue)")
            other = [a for a in argv if a != arg and not a.startswith(RESUME_KEEPS)]
            if other:
                refuse(
                    f"resume={run_dir} continues the run as it was configured; these overrides "
                    f"would change it: {other}. Start a new run for them (allowed with resume: "
                    f"{[k.rstrip('=') for k in RESUME_KEEPS]})"
                )
            return [*argv, f"hydra.run.dir={run_dir}", "hydra.output_subdir=null"]
    return argv


def one_line(err: BaseException) -> str:
    """A Hydra or OmegaConf composition error as one line: what was wrong and what is allowed."""
    from hydra.errors import MissingConfigException

    if isinstance(err, MissingConfigException) and err.options:
        missing = err.missing_cfg_file or ""
        group, _, name = missing.rpartition("/")
        return f"{group}={name} is not an option of '{group}'; choose one of {sorted(err.options)}"
    stray = _stray_potential_key(err)
    if stray:
        return stray
    lines = [str(err), str(err.__cause__ or "")]
    skip = ("reference_type", "object_type", "Set the environment", "To append", "Config search")
    kept = [
        line.strip()
        for text in lines
        for line in text.splitlines()
        if line.strip() and not line.strip().startswith(skip) and not line.startswith("\t")
    ]
    return "; ".join(dict.fromkeys(kept))


def _stray_potential_key(err: BaseException) -> str | None:
    """For `potential.<key>=...` where the chosen potential has no such parameter: says so and
    lists the parameters it has (Hydra's own message names only the schema class)."""
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    from .config import POTENTIAL_SCHEMAS
    from .limits import not_a_parameter

    cause = err.__cause__ if err.__cause__ is not None else err
    if not isinstance(cause, (ConfigAttributeError, ConfigKeyError)):
        return None
    schema = getattr(cause, "object_type", None)
    key = getattr(cause, "key", None)
    if schema not in POTENTIAL_SCHEMAS.values() or not isinstance(key, str):
        return None
    return not_a_parameter(schema, key)


def _report_compactly(func):
    """Stands in for Hydra's run_and_report: user mistakes in composition become one line.

    Errors that are not about the configuration keep their traceback; HYDRA_FULL_ERROR=1 restores
    Hydra's own reporting.
    """
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        return func()
    except (HydraException, OmegaConfBaseException, ConfigError) as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        sys.exit(_fail(one_line(err)))
    except RunFailed as err:
        _fail(str(err))
        sys.exit(err.code)


VERSIONED = ("pinn-run", "jax", "jaxlib", "flax", "optax", "hydra-core", "omegaconf")


def version_line() -> str:
    """`pinn-run --version`: this package's version and those of what it runs on, read from the
    installed packages' metadata (nothing is imported, so it answers at once)."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    def of(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    first, *rest = VERSIONED
    parts = ", ".join(f"{name} {of(name)}" for name in rest)
    return f"{first} {of(first)} ({parts}; Python {platform.python_version()})"


# Overrides that can set hydra.mode: the studies (experiment=...) run as multiruns by
# themselves; hydra.mode itself; a Hydra config group (hydra/launcher=..., whose file could).
# The output folders (hydra.run.dir, hydra.sweep.dir) and hydra.job.* cannot.
MODE_KEYS = ("experiment", "hydra/")
MODE_SETTINGS = ("hydra", "hydra.mode")


def _mode_only_where_set(get_mode):
    """Hydra composes the whole config once only to read `hydra.mode`, then again to run
    (~0.3 s, a twentieth of a default run). Of pinn-run's own configs only an experiment sets
    it, so without an experiment or hydra.* override, or another config folder, there is
    nothing to read: the mode is the command line's (-m or not), as when the config sets none.
    A scripted run names its folder (hydra.run.dir=...): that is no reason to compose twice.
    """

    @functools.wraps(get_mode)
    def wrapper(self, config_name, overrides):
        keys = [o.split("=", 1)[0].lstrip("+~") for o in overrides]
        other_configs = any(a.startswith(("-cd", "--config-dir")) for a in sys.argv[1:])
        if config_name == "config" and not other_configs and not keys_set_mode(keys):
            return None
        return get_mode(self, config_name, overrides)

    return wrapper


def keys_set_mode(keys: list[str]) -> bool:
    return any(k.startswith(MODE_KEYS) or k in MODE_SETTINGS for k in keys)


def main() -> None:
    import hydra._internal.utils as hydra_utils
    from hydra._internal.hydra import Hydra

    if "--version" in sys.argv[1:]:  # Hydra's own flag would print only Hydra's version
        print(version_line())
        return

    logging.raiseExceptions = False  # a log that cannot be written (a full disk) prints nothing

    hydra_utils.run_and_report = _report_compactly
    if not hasattr(Hydra.get_mode, "__wrapped__"):
        Hydra.get_mode = _mode_only_where_set(Hydra.get_mode)
    register_configs()
    if not OmegaConf.has_resolver("pinn_unique"):
        OmegaConf.register_new_resolver("pinn_unique", unique_dir)
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    # optuna 2.10's storage (the sweeps extra) on SQLAlchemy 1.4 warns about SQLAlchemy 2.0
    os.environ.setdefault("SQLALCHEMY_SILENCE_UBER_WARNING", "1")
    sys.argv = [sys.argv[0], *_argv_for_resume(sys.argv[1:])]
    try:
        hydra.main(version_base="1.3", config_path="conf", config_name="config")(app)()
    except SystemExit as done:
        exit_now(done.code)
    exit_now(0)


if __name__ == "__main__":
    main()
