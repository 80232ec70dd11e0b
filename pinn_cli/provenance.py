"""Provenance of a run: which code, libraries, machine, settings and command produced it.

`collect` returns a JSON-safe dict for summary.json. It never raises for a missing git, a source
tree that is not a git checkout, or a package that is not installed: those fields become null.
`precision_warning` says, in one line, when the requested precision is slow on this backend.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shlex
import socket
import subprocess
from pathlib import Path

# Distributions whose versions can change the numbers or the run folder, by their PyPI names.
PACKAGES = (
    "pinn-run",
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "hydra-core",
    "omegaconf",
    "orbax-checkpoint",
    "numpy",
    "scipy",
)

# Top-level config keys that do not change the numbers a run produces; config_hash skips them.
HASH_EXCLUDED = (
    "progress",
    "resume",
    "overwrite",
    "checks",
    "profile_steps",
    "compile_cache",
    "hydra",
)

# Environment variables that steer XLA and JAX (device choice, memory, compiler flags) and the
# BLAS threads of JAX's CPU LAPACK kernels.
ENV_PREFIXES = ("XLA_", "JAX_")
ENV_NAMES = ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "TPU_VISIBLE_CHIPS")
ENV_NAMES += ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "PINN_RUN_NATIVE")

# GPUs whose float64 rate is a large fraction (1/2 or so) of their float32 rate.
FULL_RATE_FP64 = re.compile(r"(A100|H100|H200|B200|V100|P100|MI[23][0-9]{2})(?![0-9])")

GIT_TIMEOUT_S = 2.0


def config_hash(resolved_config: dict) -> str:
    """sha256 (hex, 16 characters) of the config, ignoring the keys that leave the numbers alone.

    Excluded, at the top level only: `progress` (a progress bar), `resume` (which folder to
    continue in; the resumed run's own config is what is hashed), `overwrite` (whether an earlier
    run in the folder may be replaced), `checks` (how results are judged, not computed),
    `compile_cache` (where compiled
    programs are kept), `profile_steps` (a profiler
    trace) and everything under `hydra` (output folders, launcher, logging). Every other key is
    kept, `seed` and `train.log_every` (the size of the compiled blocks) included, and so is
    `train.checkpoint_every`, to be safe. The serialisation is canonical (sorted keys, fixed
    separators), so the hash does not depend on key order. Equal values of different types (1
    and 1.0) hash differently: hash the typed config (`dataclasses.asdict(cfg)`), where Hydra
    has already coerced them.
    """
    kept = {k: v for k, v in resolved_config.items() if k not in HASH_EXCLUDED}
    text = json.dumps(kept, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def version(distribution: str) -> str | None:
    """The installed version of a distribution, or None when it is not installed."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, str | None]:
    return {"python": platform.python_version(), **{name: version(name) for name in PACKAGES}}


def _git(directory: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(
            ["git", *args],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def git_state(directory: Path | None = None) -> dict | None:
    """{"commit", "dirty"} of the git checkout holding `directory` (default: this package).

    None when git is missing or slow, or when the package's files are not tracked there (an
    installed copy in a virtual environment that lies inside some other repository). `dirty` is
    true when `git status --porcelain` lists anything: modified, staged or untracked files.
    """
    directory = Path(__file__).resolve().parent if directory is None else Path(directory)
    if not directory.is_dir():
        return None
    if _git(directory, "ls-files", "--error-unmatch", "--", ".") is None:
        return None
    commit = _git(directory, "rev-parse", "HEAD")
    status = _git(directory, "status", "--porcelain")
    if commit is None or status is None:
        return None
    return {"commit": commit, "dirty": bool(status)}


def environment() -> dict[str, str]:
    """XLA_*, JAX_* and device-visibility variables in force, by name."""
    return {
        k: v for k, v in sorted(os.environ.items()) if k.startswith(ENV_PREFIXES) or k in ENV_NAMES
    }


def devices() -> dict:
    """The default backend's first device and how many there are (initialises the backend)."""
    import jax

    found = jax.devices()
    return {
        "platform": found[0].platform,
        "kind": found[0].device_kind,
        "count": len(found),
    }


def collect(resolved_config: dict, argv: list[str]) -> dict:
    """The provenance block of summary.json (JSON-safe).

    Keys: `versions` (python and PACKAGES; null when not installed), `git` ({"commit", "dirty"}
    or null), `backend` (jax.default_backend()), `devices` ({"platform", "kind", "count"}),
    `float64` (jax_enable_x64 as it stands now), `env` (see `environment`), `hostname`,
    `command` (argv joined with shlex, so it can be pasted back into a shell) and `config_hash`
    (see `config_hash`).
    """
    import jax

    return {
        "versions": versions(),
        "git": git_state(),
        "backend": jax.default_backend(),
        "devices": devices(),
        "float64": bool(jax.config.jax_enable_x64),
        "env": environment(),
        "hostname": socket.gethostname(),
        "command": shlex.join(argv),
        "config_hash": config_hash(resolved_config),
    }


def precision_warning(
    precision: str, backend: str | None = None, device_kind: str | None = None
) -> str | None:
    """One line when `precision` is slow or emulated on the backend; None when it is fine.

    float64 is emulated on TPUs, and most GPUs run it at 1/32 or 1/64 of their float32 rate; the
    HPC parts matched by FULL_RATE_FP64 (A100, H100, H200, B200, V100, P100, MI200/MI300) do not.
    `backend` and `device_kind` default to JAX's default backend and its first device.
    """
    if precision != "float64":
        return None
    if backend is None or device_kind is None:
        import jax

        backend = jax.default_backend() if backend is None else backend
        device_kind = jax.devices()[0].device_kind if device_kind is None else device_kind
    backend = backend.lower()
    if backend == "tpu":
        return (
            f"precision=float64 on TPU ({device_kind}): float64 is emulated in software, many "
            f"times slower than float32, and some operations do not support it"
        )
    if backend in ("gpu", "cuda", "rocm") and not FULL_RATE_FP64.search(device_kind.upper()):
        return (
            f"precision=float64 on {device_kind}: this GPU runs float64 at a small fraction of "
            f"its float32 rate, so steps will be slow; precision=float32 is faster but less "
            f"accurate"
        )
    return None
