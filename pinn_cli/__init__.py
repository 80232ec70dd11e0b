"""pinn-run: physics-informed neural networks for quantum eigenproblems and dynamics.

`from pinn_cli import solve`: run with command-line overrides from Python (pinn_cli/api.py).
"""

__all__ = ["Result", "load", "solve"]


def __getattr__(name: str):
    # Loaded on first use: `pinn-run` itself never pays for the API's imports.
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'pinn_cli' has no attribute {name!r}")
