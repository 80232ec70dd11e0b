import os
import sys
from pathlib import Path

import jax
import pytest

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")  # (N,) - (N, 1) must fail loudly

BIN = Path(sys.executable).parent
TINY = [
    "model.width=8",
    "model.depth=1",
    "train.steps=40",
    "train.points=32",
    "train.log_every=20",
    "train.checkpoint_every=20",
    "optim.refine_steps=10",
    "progress=false",
    "checks.strict=false",  # a tiny run tests the plumbing; its numbers are not converged
]


@pytest.fixture
def pinn_run():
    """Run the real `pinn-run` console script; returns the CompletedProcess."""
    import subprocess

    def run(*args, cwd=None, env=None, check=False, timeout=300):
        full_env = {**os.environ, **(env or {})}
        proc = subprocess.run(
            [str(BIN / "pinn-run"), *args],
            cwd=cwd,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"pinn-run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        return proc

    return run


@pytest.fixture(autouse=True)
def _programs_traced_in_process(monkeypatch):
    """In-process runs trace their programs instead of reading stored ones (exported.py): a test
    that patches a function or constant the programs use must not read a program an earlier,
    unpatched run stored under the same key. The console-script tests store and read them."""
    from pinn_cli import exported

    monkeypatch.setattr(exported, "_folder", None)
    monkeypatch.setattr(exported, "configure", lambda folder: None)
