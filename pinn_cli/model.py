"""The network (Flax NNX) and the trial wavefunction that satisfies psi(lo) = psi(hi) = 0 exactly.

`psi(params, x)` takes a scalar x (or an array of points) and returns psi there. psi' and psi''
come from one forward pass that carries (value, slope, curvature) through every layer
(`TrialFunction.taylor2`): three (N, width) matmuls per layer instead of the four of nested jvps,
and no vmap. Parameters travel as pure dicts (a plain pytree of arrays), which keeps the jitted
code, the optimisers and the checkpoints simple.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx

from .activations import get_activation

Taylor2 = tuple[jax.Array, jax.Array, jax.Array]  # (f, f', f'') along x


def tanh_taylor2(z, dz, d2z) -> Taylor2:
    """tanh with its derivatives written out: tanh' = 1 - t^2, tanh'' = -2 t tanh'."""
    t = jnp.tanh(z)
    s1 = 1.0 - t * t
    return t, s1 * dz, s1 * (d2z - 2.0 * t * dz * dz)


def elementwise_taylor2(f: Callable) -> Callable[[jax.Array, jax.Array, jax.Array], Taylor2]:
    """(z, z', z'') -> (f(z), f(z)', f(z)'') for an elementwise f: the chain rule to second order.

    f' and f'' come from nested unit-tangent jvps of f, which XLA fuses into one loop; tanh has
    its rule written out, which trains 3-30% faster (benchmarks/derivatives.py).
    """
    if f is jnp.tanh:
        return tanh_taylor2

    def rule(z, dz, d2z):
        def value_and_slope(u):
            return jax.jvp(f, (u,), (jnp.ones_like(u),))

        (f0, f1), (_, f2) = jax.jvp(value_and_slope, (z,), (jnp.ones_like(z),))
        return f0, f1 * dz, f2 * dz * dz + f1 * d2z

    return rule


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

    def taylor2(self, z: jax.Array, dz: jax.Array, d2z: jax.Array) -> Taylor2:
        """The output and its first two derivatives along x, given the input's (z, z', z'')."""
        act = elementwise_taylor2(self.activation)
        for layer in self.hidden:
            w = layer.kernel[...]
            z, dz, d2z = act(layer(z), dz @ w, d2z @ w)
        w = self.out.kernel[...]
        return self.out(z)[..., 0], (dz @ w)[..., 0], (d2z @ w)[..., 0]


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
        return jnp.stack([s, *kinks], axis=-1)

    def envelope(self, x: jax.Array) -> jax.Array:
        lo, hi = self.domain
        return 4.0 * (x - lo) * (hi - x) / (hi - lo) ** 2

    def basis(self, params, x: jax.Array) -> jax.Array:
        """B(x) [h(x), 1]: with output="linear", psi is this vector dotted with the output
        layer's (kernel, bias), so a Rayleigh-Ritz step can set that layer exactly."""
        h = nnx.merge(self.graphdef, params).features(self.features(x))
        return self.envelope(x) * jnp.append(h, 1.0)

    def taylor2(self, params, x: jax.Array) -> Taylor2:
        """psi, psi', psi'' at x (a scalar or an array of points) in one forward pass."""

        def unit(u):
            return (jnp.ones_like(u),)

        # The input features are elementwise in x, so unit tangents give their derivatives.
        (f, df), (_, d2f) = jax.jvp(lambda u: jax.jvp(self.features, (u,), unit(u)), (x,), unit(x))
        n = nnx.merge(self.graphdef, params).taylor2(f, df, d2f)
        if self.output == "exp":
            n = elementwise_taylor2(lambda u: jnp.exp(self.scale * u))(*n)
        lo, hi = self.domain
        c = 4.0 / (hi - lo) ** 2
        b, db, d2b = c * (x - lo) * (hi - x), c * (lo + hi - 2.0 * x), -2.0 * c
        return b * n[0], db * n[0] + b * n[1], d2b * n[0] + 2.0 * db * n[1] + b * n[2]

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
    """Initialise the network from `key`; return the trial function and its parameters.

    A batch of keys (shape (K,)) initialises K networks: every leaf gets a leading member axis,
    and member i equals the network initialised from key[i] alone.
    """
    kinks = tuple(breakpoints) if breakpoint_features else ()

    def make(k):
        act = get_activation(activation)
        return MLP(1 + len(kinks), width, depth, act, dtype=dtype, rngs=nnx.Rngs(params=k))

    # One compiled initialisation instead of a dozen eagerly compiled ops (same numbers).
    one = key if key.ndim == 0 else key[0]
    graphdef = nnx.graphdef(nnx.eval_shape(make, one))
    init = lambda k: nnx.to_pure_dict(nnx.state(make(k)))  # noqa: E731
    params = jax.jit(init if key.ndim == 0 else jax.vmap(init))(key)
    return TrialFunction(graphdef, tuple(domain), kinks, output, scale), params


def derivatives(psi: Callable, params, x: jax.Array) -> Taylor2:
    """psi, psi' and psi'' at x.

    A TrialFunction carries them through its layers in one pass (`taylor2`), at a scalar x or at
    an array of points; any other psi(params, x) is differentiated at a scalar x by
    forward-over-forward jvps.
    """
    if isinstance(psi, TrialFunction):
        return psi.taylor2(params, x)

    def first(y):
        return jax.jvp(lambda z: psi(params, z), (y,), (jnp.ones_like(y),))

    (p, dp), (_, d2p) = jax.jvp(first, (x,), (jnp.ones_like(x),))
    return p, dp, d2p
