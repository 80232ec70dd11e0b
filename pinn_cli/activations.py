"""Registry of smooth activations; names only at import time, so validation stays JAX-free."""

from __future__ import annotations

from collections.abc import Callable

# name -> attribute path in jax (module, function)
ACTIVATIONS: dict[str, tuple[str, str]] = {
    "tanh": ("jax.numpy", "tanh"),
    "sin": ("jax.numpy", "sin"),
    "cos": ("jax.numpy", "cos"),
    "gelu": ("jax.nn", "gelu"),
    "silu": ("jax.nn", "silu"),
    "softplus": ("jax.nn", "softplus"),
    "sigmoid": ("jax.nn", "sigmoid"),
    "elu": ("jax.nn", "elu"),
}

# Piecewise-linear activations: psi'' = 0 almost everywhere, so the residual cannot be trained.
REFUSED = frozenset(
    {"relu", "relu6", "leaky_relu", "hard_tanh", "hard_sigmoid", "hard_silu", "hard_swish", "abs"}
)


def get_activation(name: str) -> Callable:
    import importlib

    module, attr = ACTIVATIONS[name]
    return getattr(importlib.import_module(module), attr)
