"""The Gram matrix A A^T of the explicit Levenberg-Marquardt solve through BLAS's dsyrk.

XLA:CPU forms a matrix product's every entry; a Gram matrix is symmetric, and BLAS's symmetric
rank-k update (dsyrk) forms one triangle, half the arithmetic. `gram(a)` runs an XLA FFI custom
call (kernels/gram.cc) that splits the triangle into bands of equal work over the process's
cores and calls SciPy's BLAS (single-threaded, as pinn-run runs it) on each: 2500 x 722 in
17 ms against XLA's 36 ms on two cores (docs/speed.md). Where the kernel cannot run it is XLA's
dot: on GPU and TPU, for other dtypes, and when the kernel cannot be built.

The kernel is compiled once per machine with the C++ compiler (`$CXX`, else `g++`, against
jaxlib's FFI headers) into ~/.cache/pinn-run/native (under `$XDG_CACHE_HOME` when set);
`make install` builds it. `PINN_RUN_NATIVE=0` turns it off (XLA's dot everywhere).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import jax
import jax.numpy as jnp

log = logging.getLogger(__name__)

ENV = "PINN_RUN_NATIVE"
TARGET = "pinn_gram"
SOURCE = Path(__file__).with_name("kernels") / "gram.cc"

_lock = threading.Lock()


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pinn-run" / "native"


def library_path() -> Path:
    """Where the kernel built from this source for this jaxlib lives."""
    import jaxlib

    key = hashlib.sha256(SOURCE.read_bytes() + jaxlib.__version__.encode()).hexdigest()[:16]
    return cache_dir() / f"gram-{key}.so"


def build() -> Path:
    """The kernel's shared library, compiled unless it already is (atomically: jobs of a sweep
    may build it at once). Raises OSError or CalledProcessError when it cannot be built."""
    path = library_path()
    if path.exists():
        return path
    compiler = shutil.which(os.environ.get("CXX", "g++"))
    if compiler is None:
        raise OSError("no C++ compiler (set CXX or install g++)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=path.parent)
    os.close(fd)
    try:
        flags = ["-O2", "-shared", "-fPIC", "-std=c++17", "-w", "-pthread"]
        include = f"-I{jax.ffi.include_dir()}"
        subprocess.run(
            [compiler, *flags, include, str(SOURCE), "-o", tmp],
            check=True,
            capture_output=True,
            text=True,
        )
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _capsule_pointer(name: str) -> int:
    """The address of SciPy's BLAS routine `name` (scipy.linalg.cython_blas's C API).
    The package is imported first: `import scipy.linalg.cython_blas` would hold the
    submodule's import lock while waiting for a thread that is importing scipy.linalg (the
    run's preload), whose __init__ then needs that submodule: Python's deadlock error."""
    from scipy.linalg import cython_blas as blas

    capsule = blas.__pyx_capi__[name]
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype = ctypes.c_void_p
    get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    return get_pointer(capsule, get_name(capsule))


@functools.cache
def _loaded() -> bool:
    """Whether the kernel is registered with XLA (built and loaded on first call)."""
    try:
        lib = ctypes.CDLL(str(build()))
    except (OSError, subprocess.CalledProcessError) as err:
        detail = getattr(err, "stderr", None) or err
        log.warning("native Gram kernel not built (%s): XLA's dot forms J^T J", detail)
        return False
    lib.pinn_gram_init.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
    lib.pinn_gram_init(_capsule_pointer("dsyrk"), _capsule_pointer("dgemm"), _cores())
    jax.ffi.register_ffi_target(TARGET, jax.ffi.pycapsule(lib.PinnGram), platform="cpu")
    return True


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def available() -> bool:
    """Whether `gram` runs the kernel for float64 arrays on this backend."""
    if os.environ.get(ENV, "1") == "0" or jax.default_backend() != "cpu":
        return False
    with _lock:
        return _loaded()


def runs(a: jax.Array, native: bool = True) -> bool:
    """Whether `gram(a, native)` runs the kernel (else XLA's dot)."""
    return native and a.ndim == 2 and a.dtype == jnp.float64 and available()


def gram(a: jax.Array, native: bool = True, rows: bool = True) -> jax.Array:
    """a a^T, or a^T a with `rows=False` (the kernel reads a as it is: no transposed copy).
    With `native=False`, or where the kernel cannot run, XLA's dot: a caller whose arrays are
    sharded over several devices asks for that, so that XLA partitions the product."""
    if not runs(a, native):
        return a @ a.T if rows else a.T @ a
    n = a.shape[0 if rows else 1]
    out = jax.ShapeDtypeStruct((n, n), a.dtype)
    return jax.ffi.ffi_call(TARGET, out, vmap_method="sequential")(a, rows=int(rows))


if __name__ == "__main__":  # `make install`: build the kernel once, say what happened
    logging.basicConfig(format="%(message)s")
    print(f"native Gram kernel: {library_path() if available() else 'not built (XLA dot)'}")
