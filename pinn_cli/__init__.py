"""pinn-run: physics-informed neural networks for quantum eigenproblems and dynamics.

`from pinn_cli import solve`: run with command-line overrides from Python (pinn_cli/api.py).
"""

import os

# JAX's CPU LAPACK kernels (the Levenberg-Marquardt stage's Cholesky factorisations) run in
# SciPy's OpenBLAS, whose threads spin between calls and fight XLA's own thread pool for the
# cores: one thread makes an LM step 1.6x faster alone, and keeps two runs side by side (a
# joblib sweep) from slowing each other 50-fold. Set before any BLAS loads; a value already in
# the environment is kept.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__all__ = ["Result", "load", "solve"]


def __getattr__(name: str):
    # Loaded on first use: `pinn-run` itself never pays for the API's imports.
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'pinn_cli' has no attribute {name!r}")
