"""Run and sweep folders are never silently reused: Hydra callbacks that check them before Hydra
writes anything into them, and the lock that keeps two processes out of one run folder.

Hydra saves `.hydra/` and opens the job's log in the run folder before the task starts, so the
check must run in `on_run_start` / `on_multirun_start`, which come first. A folder that already
holds a run is refused with one line (exit 2) unless `overwrite=true`, which clears the earlier
run's files first; `resume=DIR` is the way to continue one.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from . import outputs

EXIT_USAGE = 2


def refuse(message: str) -> None:
    print(f"pinn-run: error: {message}", file=sys.stderr)
    sys.exit(EXIT_USAGE)


def holds_run(folder: Path) -> bool:
    """Whether the folder holds a run's work. The log and .hydra/ alone are not work: a run
    refused before training (a mistake in its config) leaves only those, and the corrected
    command may run there (its log continues in the same file)."""
    setup = (outputs.LOG, outputs.HYDRA_DIR)
    return any((folder / name).exists() for name in outputs.RUN_FILES if name not in setup)


def usable(folder: str, key: str) -> Path:
    """The folder, created if needed; one line and exit 2 if it cannot be written."""
    if not folder.strip():
        refuse(f"{key} is empty; give a folder for the run (or leave it unset for a dated one)")
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        refuse(f"{key}={folder} cannot be created: {err.strerror or err}")
    if not os.access(path, os.W_OK | os.X_OK):
        refuse(f"{key}={folder} is not writable")
    return path


def clear_run(folder: Path) -> None:
    """Remove an earlier run's files (overwrite=true)."""
    for name in outputs.RUN_FILES:
        target = folder / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


class RunFolderGuard(Callback):
    """Refuses a run or sweep folder that already holds runs, unless overwrite=true."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        if config.get("resume") not in (None, "null"):
            return  # resume=DIR continues in DIR; the app checks it is a run folder
        folder = usable(str(OmegaConf.select(config, "hydra.run.dir")), "hydra.run.dir")
        if holds_run(folder):
            if not config.get("overwrite"):
                refuse(
                    f"hydra.run.dir={folder} already holds a run; continue it with "
                    f"resume={folder}, choose another folder, or replace it with overwrite=true"
                )
            clear_run(folder)

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        folder = usable(str(OmegaConf.select(config, "hydra.sweep.dir")), "hydra.sweep.dir")
        jobs = [p for p in folder.iterdir() if p.is_dir() and holds_run(p)]
        if not jobs and not (folder / outputs.MULTIRUN_YAML).exists():
            return
        if not config.get("overwrite"):
            refuse(
                f"hydra.sweep.dir={folder} already holds a sweep ({len(jobs)} job folders); "
                f"choose another folder, or replace it with overwrite=true"
            )
        for job in jobs:
            shutil.rmtree(job)
        (folder / outputs.MULTIRUN_YAML).unlink(missing_ok=True)


class RunLock:
    """An exclusive lock on a run folder for as long as one process works in it; a second
    process is refused with one line (exit 2). The lock file records the holder's pid."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / outputs.LOCK
        self.file = None

    def __enter__(self) -> RunLock:
        self.file = self.path.open("a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.seek(0)
            holder = self.file.read().strip() or "unknown"
            self.file.close()
            refuse(f"{self.path.parent} is in use by another pinn-run (pid {holder}); wait for it")
        self.file.seek(0)
        self.file.truncate()
        self.file.write(str(os.getpid()))
        self.file.flush()
        return self

    def __exit__(self, *exc) -> None:
        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()
