import dataclasses
import importlib.metadata
import json
import platform
import shlex
import shutil
import subprocess
from pathlib import Path

import jax
import pytest
import yaml
from conftest import BIN

from pinn_cli import provenance
from pinn_cli.config import BarrierConfig, Config, ModelConfig

KEYS = {
    "versions",
    "git",
    "backend",
    "devices",
    "float64",
    "env",
    "hostname",
    "command",
    "config_hash",
}
PACKAGES = {
    "python",
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
}
POTENTIALS = ("infinite_well", "finite_well", "barrier")
CONF = Path(provenance.__file__).parent / "conf"
PROFILING = "profile_steps" in {f.name for f in dataclasses.fields(Config)}
TINY_PROFILE = ["model.width=8", "model.depth=1", "train.steps=20", "optim.refine_steps=0"]
ARGV = ["pinn-run", "potential=barrier", "hydra.run.dir=/tmp/with space"]


def barrier_config(**model) -> dict:
    potential = BarrierConfig(V0=50.0, width=0.2)
    return dataclasses.asdict(Config(potential=potential, model=ModelConfig(**model)))


def reversed_keys(tree):
    if isinstance(tree, dict):
        return {k: reversed_keys(tree[k]) for k in reversed(list(tree))}
    return tree


# --------------------------------------------------------------------------------------------
# collect


def test_collect_has_every_key_and_the_installed_versions():
    block = provenance.collect(barrier_config(), ARGV)
    assert set(block) == KEYS
    assert set(block["versions"]) == PACKAGES
    assert block["versions"]["jax"] == importlib.metadata.version("jax") == jax.__version__
    assert block["versions"]["numpy"] == importlib.metadata.version("numpy")
    assert block["versions"]["python"] == platform.python_version()
    assert block["backend"] == "cpu"
    assert block["devices"] == {"platform": "cpu", "kind": "cpu", "count": jax.device_count()}


def test_collect_reports_float64_as_jax_has_it():
    before = jax.config.jax_enable_x64
    try:
        for enabled in (True, False):
            jax.config.update("jax_enable_x64", enabled)
            assert provenance.collect({}, ARGV)["float64"] is enabled
    finally:
        jax.config.update("jax_enable_x64", before)


def test_collect_is_json_safe_and_records_command_and_hash():
    cfg = barrier_config()
    block = provenance.collect(cfg, ARGV)
    assert json.loads(json.dumps(block, allow_nan=False)) == block
    assert shlex.split(block["command"]) == ARGV
    assert block["config_hash"] == provenance.config_hash(cfg)


def test_collect_records_xla_and_jax_environment(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setenv("PINN_UNRELATED", "1")
    env = provenance.collect({}, ARGV)["env"]
    assert env["XLA_FLAGS"] == "--xla_force_host_platform_device_count=2"
    assert env["JAX_PLATFORMS"] == "cpu"
    assert "PINN_UNRELATED" not in env


def test_unknown_distribution_has_no_version():
    assert provenance.version("surely-not-an-installed-distribution") is None


# --------------------------------------------------------------------------------------------
# git


def _git(cwd, *args):
    cmd = ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args]
    return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path, monkeypatch):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # no repository above tmp_path
    root = tmp_path / "repo"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "mod.py").write_text("x = 1\n")
    _git(root, "init", "-q")
    _git(root, "add", "pkg")
    _git(root, "commit", "-qm", "first")
    return root


def test_git_state_gives_commit_and_dirty_flag(repo):
    expected = _git(repo, "rev-parse", "HEAD")
    assert provenance.git_state(repo / "pkg") == {"commit": expected, "dirty": False}
    (repo / "pkg" / "mod.py").write_text("x = 2\n")
    assert provenance.git_state(repo / "pkg") == {"commit": expected, "dirty": True}


def test_git_state_is_null_outside_a_checkout_of_the_package(repo, tmp_path):
    outside = tmp_path / "plain"
    outside.mkdir()
    assert provenance.git_state(outside) is None
    untracked = repo / "venv" / "site-packages" / "pkg"  # an installed copy inside a repository
    untracked.mkdir(parents=True)
    (untracked / "mod.py").write_text("x = 1\n")
    assert provenance.git_state(untracked) is None


def test_git_state_is_null_without_git(repo, monkeypatch):
    monkeypatch.setenv("PATH", "")
    assert provenance.git_state(repo / "pkg") is None


# --------------------------------------------------------------------------------------------
# config_hash


def test_config_hash_ignores_key_order():
    a, b = barrier_config(), reversed_keys(barrier_config())
    assert list(a) != list(b) and list(a["model"]) != list(b["model"])
    assert provenance.config_hash(a) == provenance.config_hash(b)
    assert len(provenance.config_hash(a)) == 16
    int(provenance.config_hash(a), 16)


@pytest.mark.parametrize(
    "change",
    [
        lambda c: c["model"].update(width=33),
        lambda c: c["potential"].update(V0=50.5),
        lambda c: c["train"].update(steps=1234),
        lambda c: c.update(seed=1),
        lambda c: c.update(precision="float32"),
    ],
)
def test_config_hash_changes_with_the_numbers(change):
    cfg = barrier_config()
    change(cfg)
    assert provenance.config_hash(cfg) != provenance.config_hash(barrier_config())


def test_config_hash_ignores_progress_resume_and_hydra():
    cfg = barrier_config()
    cfg.update(progress=not cfg["progress"], resume="outputs/earlier", profile_steps=20)
    cfg["hydra"] = {"run": {"dir": "outputs/elsewhere"}, "job": {"name": "other"}}
    assert provenance.config_hash(cfg) == provenance.config_hash(barrier_config())


# --------------------------------------------------------------------------------------------
# precision_warning


@pytest.mark.parametrize(
    ("precision", "backend", "kind", "warns"),
    [
        ("float64", "cpu", "cpu", False),
        ("float64", "tpu", "TPU v5 lite", True),
        ("float32", "tpu", "TPU v5 lite", False),
        ("float64", "gpu", "NVIDIA GeForce RTX 4090", True),
        ("float64", "gpu", "NVIDIA RTX A1000", True),
        ("float32", "gpu", "NVIDIA GeForce RTX 4090", False),
        ("float64", "gpu", "NVIDIA H200", False),
        ("float64", "gpu", "NVIDIA A100-SXM4-80GB", False),
        ("float64", "gpu", "Tesla V100-SXM2-16GB", False),
        ("float64", "gpu", "AMD Instinct MI250X", False),
    ],
)
def test_precision_warning(precision, backend, kind, warns):
    message = provenance.precision_warning(precision, backend, kind)
    if warns:
        assert isinstance(message, str) and "\n" not in message
        assert "float64" in message and kind in message
    else:
        assert message is None


def test_precision_warning_defaults_to_this_machine():
    assert provenance.precision_warning("float64") is None  # the tests run on CPU


# --------------------------------------------------------------------------------------------
# debug=smoke and debug=profile, end to end: real runs at once (startup and compilation dominate)


def test_profile_preset_traces_whole_blocks():
    preset = yaml.safe_load((CONF / "debug" / "profile.yaml").read_text())
    steps, every = preset["profile_steps"], preset["train"]["log_every"]
    assert 0 < steps <= preset["train"]["steps"] and steps % every == 0


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{name: (exit code, output, run folder)}: debug=smoke per potential, and debug=profile."""
    root = tmp_path_factory.mktemp("runs")
    commands = {name: ["debug=smoke", f"potential={name}"] for name in POTENTIALS}
    if PROFILING:
        commands["profile"] = ["debug=profile", *TINY_PROFILE]
    procs = {
        name: subprocess.Popen(
            [str(BIN / "pinn-run"), *args, f"hydra.run.dir={name}"],
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name, args in commands.items()
    }
    try:
        outputs = {name: proc.communicate(timeout=300)[0] for name, proc in procs.items()}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
    return {name: (procs[name].returncode, outputs[name], root / name) for name in commands}


def assert_trained(run_dir):
    """Trained to the end. A smoke run is not converged, so it may fail the self-checks
    (checks.strict=false in the preset), which then say so; tests/test_checks.py tests them."""
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] in ("completed", "suspect")
    assert (summary["status"] == "suspect") == bool(summary["checks"]["failed"])
    assert summary["stop_reason"] == "all steps done" or summary["checks"]["failed"]


@pytest.mark.slow
@pytest.mark.parametrize("name", POTENTIALS)
def test_smoke_preset_runs_the_whole_pipeline(runs, name):
    code, output, run_dir = runs[name]
    assert code == 0, output[-3000:]
    for file in ("summary.json", "metrics.csv", "wavefunction.png", "energy.png", "loss.png"):
        assert (run_dir / file).is_file(), file
    assert any((run_dir / "checkpoints").iterdir())
    assert_trained(run_dir)
    composed = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
    assert composed["potential"]["name"] == name
    assert (composed["model"]["width"], composed["model"]["depth"]) == (8, 1)
    assert (composed["train"]["steps"], composed["train"]["points"]) == (50, 48)
    assert composed["progress"] is False


@pytest.mark.slow
@pytest.mark.skipif(not PROFILING, reason="Config has no profile_steps yet")
def test_profile_preset_writes_a_trace(runs):
    code, output, run_dir = runs["profile"]
    assert code == 0, output[-3000:]
    assert_trained(run_dir)
    traces = list((run_dir / "profile" / "plugins" / "profile").glob("*/*.xplane.pb"))
    assert len(traces) == 1 and traces[0].stat().st_size > 0


@pytest.mark.parametrize("preset,expected", [(None, "1"), ("2", "2")])
def test_blas_runs_one_thread_unless_the_environment_says_otherwise(preset, expected):
    """Importing pinn_cli sets OPENBLAS_NUM_THREADS=1 before SciPy's OpenBLAS loads (JAX's CPU
    LAPACK kernels run there), keeps a value the user set, and the run records it."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if preset is not None:
        env["OPENBLAS_NUM_THREADS"] = preset
    code = (
        "import os, pinn_cli\n"
        "from pinn_cli import provenance\n"
        "name = 'OPENBLAS_NUM_THREADS'\n"
        "print(os.environ[name], provenance.environment()[name])"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.split() == [expected, expected], out.stderr
