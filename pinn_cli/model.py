"""The network (Flax NNX) and the trial wavefunction that satisfies psi(lo) = psi(hi) = 0 exactly.

The trial function is written per point: `psi(params, x)` takes a scalar x and returns a scalar, so
derivatives in x are plain nested `jvp`s and batching is one `vmap`. Parameters travel as pure dicts
(a plain pytree of arrays), which keeps the jitted code, the optimisers and the checkpoints simple.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx

from .activations import get_activation


class MLP(nnx.Module):
    """Fully connected network R^in -> R with `depth` hidden layers of `width` units."""

    def __init__(
        self, in_features: int, width: int, depth: int, activation: Callable, *, dtype, rngs
    ):
        sizes = [in_features] + [width] * depth
        kw = dict(kernel_init=nnx.initializers.xavier_normal(), dtype=dtype, param_dtype=dtype)
        self.hidden = nnx.List(
            [nnx.Linear(a, b, rngs=rngs, **kw) for a, b in zip(sizes[:-1], sizes[1:])]
        )
        self.out = nnx.Linear(width, 1, rngs=rngs, **kw)
        self.activation = activation

    def features(self, z: jax.Array) -> jax.Array:
        """The last hidden layer's activations: the output is a linear map of these."""
        for layer in self.hidden:
            z = self.activation(layer(z))
        return z

    def __call__(self, z: jax.Array) -> jax.Array:
        return self.out(self.features(z))[..., 0]


@dataclass(frozen=True)
class TrialFunction:
    """psi(params, x) = B(x) * g(N(features(x))), with B = 4 (x - lo)(hi - x) / L^2."""

    graphdef: nnx.GraphDef
    domain: tuple[float, float]
    breakpoints: tuple[float, ...]
    output: str  # "exp" (nodeless) or "linear"
    scale: float = 1.0  # psi = B exp(scale * N): lets an O(1) network reach large decay exponents

    def features(self, x: jax.Array) -> jax.Array:
        lo, hi = self.domain
        half = 0.5 * (hi - lo)
        s = (x - 0.5 * (lo + hi)) / half
        # (x - b)_+^2: C1 at b with a jump in its second derivative, as psi has where V jumps.
        kinks = [jnp.where(x > b, ((x - b) / half) ** 2, 0.0) for b in self.breakpoints]
        return jnp.stack([s, *kinks])

    def envelope(self, x: jax.Array) -> jax.Array:
        lo, hi = self.domain
        return 4.0 * (x - lo) * (hi - x) / (hi - lo) ** 2

    def basis(self, params, x: jax.Array) -> jax.Array:
        """B(x) [h(x), 1]: with output="linear", psi is this vector dotted with the output
        layer's (kernel, bias), so a Rayleigh-Ritz step can set that layer exactly."""
        h = nnx.merge(self.graphdef, params).features(self.features(x))
        return self.envelope(x) * jnp.append(h, 1.0)

    def __call__(self, params, x: jax.Array) -> jax.Array:
        lo, hi = self.domain
        n = nnx.merge(self.graphdef, params)(self.features(x))
        envelope = 4.0 * (x - lo) * (hi - x) / (hi - lo) ** 2
        return envelope * (jnp.exp(self.scale * n) if self.output == "exp" else n)


def make_trial_function(
    *,
    domain: tuple[float, float],
    breakpoints: tuple[float, ...],
    width: int,
    depth: int,
    activation: str,
    output: str,
    breakpoint_features: bool,
    key: jax.Array,
    scale: float = 1.0,
    dtype=jnp.float64,
) -> tuple[TrialFunction, dict]:
    """Initialise the network from `key`; return the trial function and its parameters."""
    kinks = tuple(breakpoints) if breakpoint_features else ()
    net = MLP(
        1 + len(kinks),
        width,
        depth,
        get_activation(activation),
        dtype=dtype,
        rngs=nnx.Rngs(params=key),
    )
    graphdef, state = nnx.split(net)
    return TrialFunction(graphdef, tuple(domain), kinks, output, scale), nnx.to_pure_dict(state)


def derivatives(psi: Callable, params, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """psi, psi' and psi'' at a scalar x by forward-over-forward differentiation."""

    def first(y):
        return jax.jvp(lambda z: psi(params, z), (y,), (jnp.ones_like(y),))

    (p, dp), (_, d2p) = jax.jvp(first, (x,), (jnp.ones_like(x),))
    return p, dp, d2p
