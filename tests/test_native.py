"""The Gram matrix through BLAS's dsyrk (pinn_cli/native): the product XLA would form, in the
LM step where it is used, and XLA's dot where the kernel must not run."""

import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pinn_cli import lm, native

needs_compiler = pytest.mark.skipif(
    shutil.which("g++") is None and not native.library_path().exists(),
    reason="no C++ compiler to build the kernel",
)


@needs_compiler
@pytest.mark.parametrize("shape", [(722, 2500), (192, 1154), (37, 5), (1, 9), (300, 300)])
@pytest.mark.parametrize("rows", [True, False])
def test_the_kernel_forms_the_gram_matrix(shape, rows):
    """Every entry of A A^T (rows) or A^T A, both triangles, for square, tall, wide and one-row
    operands; the band edges and the threads (bands of equal work) must cover the matrix
    exactly once."""
    assert native.available()
    a = np.random.default_rng(0).standard_normal(shape)
    out = np.asarray(jax.jit(lambda x: native.gram(x, rows=rows))(jnp.asarray(a)))
    exact = a @ a.T if rows else a.T @ a
    np.testing.assert_allclose(out, exact, rtol=0, atol=1e-13 * np.abs(exact).max())
    np.testing.assert_array_equal(out, out.T)


@needs_compiler
def test_the_kernel_is_in_the_program_and_maps_over_ensemble_members():
    a = jnp.asarray(np.random.default_rng(1).standard_normal((4, 30, 50)))
    assert native.TARGET in jax.jit(native.gram).lower(a[0]).as_text()
    assert (
        native.TARGET not in jax.jit(lambda x: native.gram(x, native=False)).lower(a[0]).as_text()
    )
    out = jax.jit(jax.vmap(native.gram))(a)
    np.testing.assert_allclose(out, jnp.einsum("bij,bkj->bik", a, a), rtol=1e-13, atol=1e-12)


@needs_compiler
@pytest.mark.parametrize("rows, kernel", [(40, False), (400, True)])
def test_the_damped_step_with_the_kernel_is_the_step_with_xla(rows, kernel):
    """The parameter space (more rows than parameters: 2-D, tdse) forms J^T J in the kernel;
    the residual space (1-D) keeps XLA's dot, the program its tables were measured with."""
    rng = np.random.default_rng(2)
    jac, r = jnp.asarray(rng.standard_normal((rows, 120))), jnp.asarray(rng.standard_normal(rows))
    step = jax.jit(lambda j, b: lm.solve(j, b, 1e-3))
    assert (native.TARGET in step.lower(jac, r).as_text()) == kernel
    with_kernel = step(jac, r)
    with_xla = jax.jit(lambda j, b: lm.solve(j, b, 1e-3, native=False))(jac, r)
    for got, want in zip(with_kernel, with_xla):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    delta = with_kernel[0]  # and it is the damped least-squares step
    normal = jac.T @ jac + 1e-3 * jnp.eye(120)
    np.testing.assert_allclose(normal @ delta, -jac.T @ r, rtol=1e-9, atol=1e-9)


SHARDED = r"""
import jax, jax.numpy as jnp, numpy as np
from pinn_cli import programs

class Points:
    def __init__(self, x):
        self.x = x

mesh = jax.sharding.Mesh(np.array(jax.devices()[:2]), ("points",))
split = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("points"))
print(programs.sharded(Points(jax.device_put(jnp.zeros((4, 1)), split))),
      programs.sharded(Points(jnp.zeros((4, 1)))), programs.sharded(Points(np.zeros((4, 1)))))
"""


def test_points_on_several_devices_keep_xla_dot():
    """A problem whose points lie on several devices must not reach the kernel (XLA partitions
    the Gram matrix's sum over points itself); one device or a host array may."""
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    done = subprocess.run([sys.executable, "-c", SHARDED], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["True", "False", "False"]


def test_turned_off_by_the_environment(monkeypatch):
    monkeypatch.setenv(native.ENV, "0")
    assert not native.available()
    a = jnp.ones((3, 4))
    assert native.TARGET not in jax.jit(lambda x: native.gram(x)).lower(a).as_text()


def test_a_kernel_that_cannot_be_built_leaves_xla_dot(monkeypatch, tmp_path, caplog):
    """No compiler (or a failing one): one warning, no exception, and gram is XLA's dot."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("CXX", "false")
    assert native._loaded.__wrapped__() is False
    assert "not built" in caplog.text
    assert not list(tmp_path.rglob("*.so"))


WHILE_SCIPY_LOADS = r"""
import importlib.abc, importlib.util, sys, threading, time
from pinn_cli import native
assert "scipy.linalg" not in sys.modules

class Slow(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader
    def create_module(self, spec):
        started.set()
        time.sleep(0.5)  # holds scipy.linalg's import lock, not yet in sys.modules
    def exec_module(self, module):
        self.loader.exec_module(module)

class Pause(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "scipy.linalg" or threading.current_thread().name != "preload":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        spec.loader = Slow(spec.loader)
        return spec

started = threading.Event()
sys.meta_path.insert(0, Pause())
errors = []
def preload():
    try:
        import scipy.linalg
    except BaseException as err:
        errors.append(repr(err))
thread = threading.Thread(target=preload, name="preload")
thread.start()
started.wait(5)
try:
    print(native._capsule_pointer("dsyrk") > 0)
except BaseException as err:
    errors.append(repr(err))
thread.join()
print(errors)
"""


def test_blas_is_found_while_another_thread_imports_scipy_linalg():
    """The run imports SciPy in a background thread while the kernel looks up BLAS: with the
    submodule imported before its package, the two threads' import locks deadlock (Python
    raises in the thread importing scipy.linalg). Forced here by pausing that import between
    taking its lock and entering sys.modules."""
    done = subprocess.run(
        [sys.executable, "-c", WHILE_SCIPY_LOADS], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[:2] == ["True", "[]"], done.stdout
