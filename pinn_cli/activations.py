"""Registry of smooth activations; names and plain values only, so validation stays JAX-free.

The fixed activations are functions of jax; the shaped ones (trainable parameters, or SIREN's
per-layer frequency and initialisation) are NNX modules built by `nonlinear.layer_activation`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

# name -> attribute path in jax (module, function)
FIXED: dict[str, tuple[str, str]] = {
    "tanh": ("jax.numpy", "tanh"),
    "sin": ("jax.numpy", "sin"),
    "cos": ("jax.numpy", "cos"),
    "gelu": ("jax.nn", "gelu"),
    "silu": ("jax.nn", "silu"),
    "softplus": ("jax.nn", "softplus"),
    "sigmoid": ("jax.nn", "sigmoid"),
    "elu": ("jax.nn", "elu"),
}

# name -> what it is (each is an NNX module in nonlinear.py)
SHAPED: dict[str, str] = {
    "adaptive_tanh": "tanh(n a z), trainable slope a per layer or per unit (Jagtap et al. 2020)",
    "stan": "tanh(z) + beta z tanh(z), trainable beta per unit (Gnanasambandam et al. 2022)",
    "polynorm": "sum_i w_i norm(z^i) + b over the layer's units (Zhuo et al. 2025)",
    "rational": "P3(z) / (1 + (q0 + q1 z)^2), trainable, tanh at the start (Boulle et al. 2020)",
    "siren": "sin, first layer sin(omega0 z), SIREN's initialisation (Sitzmann et al. 2020)",
}

ACTIVATIONS: tuple[str, ...] = (*FIXED, *SHAPED)
ADAPTIVE = ("layer", "neuron")  # model.adaptive: one slope per hidden layer, or per unit

_PIECEWISE_LINEAR = (
    "is piecewise linear, so psi'' vanishes almost everywhere and the Schrodinger residual "
    "cannot be trained"
)
_POLY_RELU = (
    "is a polynomial of ReLU: its second derivative jumps at 0 (ReLU^2) or is a delta there "
    "(ReLU), so psi'' and the Schrodinger residual are wrong at every kink; polynorm is the "
    "smooth member of that family"
)
_RELU_FAMILY = (
    "is built from ReLU, whose kink makes psi'' jump or vanish, so the Schrodinger residual is "
    "wrong at every kink"
)
# name -> why it is refused
_LINEAR_PIECES = "relu relu6 leaky_relu hard_tanh hard_sigmoid hard_silu hard_swish abs".split()
REFUSED: dict[str, str] = {name: _PIECEWISE_LINEAR for name in _LINEAR_PIECES} | {
    name: _POLY_RELU for name in ("polyrelu", "poly_relu", "polycom")
}


def refusal(name: str) -> str | None:
    """Why `name` is refused (None if it is not): the listed non-smooth activations, and any
    name of the ReLU family (polyrelu3, poly-relu, squared_relu, ...)."""
    if name in REFUSED:
        return REFUSED[name]
    plain = name.lower().replace("_", "").replace("-", "")
    if "relu" in plain:
        return _POLY_RELU if plain.startswith("poly") else _RELU_FAMILY
    return None


@dataclass(frozen=True)
class Activation:
    """The hidden layers' activation: its name and the options of the shaped ones."""

    name: str = "tanh"
    adaptive: str = "layer"  # adaptive_tanh: one slope per hidden layer, or "neuron": per unit
    slope_scale: float = 10.0  # adaptive_tanh: n in tanh(n a z); a starts at 1 / n
    omega0: float = 30.0  # siren: the first layer is sin(omega0 z)


def get_activation(name: str) -> Callable:
    """The jax function of a fixed activation."""
    import importlib

    module, attr = FIXED[name]
    return getattr(importlib.import_module(module), attr)
