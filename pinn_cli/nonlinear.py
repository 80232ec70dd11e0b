"""The hidden layers' activations with their Taylor-mode rules: (z, z', z'') -> (f, f', f'').

A jet is the value and, per input axis, the first and the pure second derivative along that
axis (model.py). Every activation is an NNX module with `__call__(z)` and `taylor(z, dz, d2z)`,
one per hidden layer; the trainable ones hold nnx.Params, which land in the network's
parameter pytree beside the kernels (and so in the optimisers, the Levenberg-Marquardt
Jacobian, the checkpoints and the ensembles' member axis). A fixed activation holds no
parameter, so its network's pytree is the kernels and biases alone.

Parameters are broadcast against z (..., width) by an explicit reshape: the tests run with
jax_numpy_rank_promotion="raise".
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from .activations import Activation, get_activation

Streams = tuple[jax.Array, ...]  # one array per axis
# (f, df, d2f): the value (...,), and per axis the first and the pure second derivative.
Jet = tuple[jax.Array, Streams, Streams]

# Rational's start: the minimax fit of tanh on [-3, 3] by (p1 z + p3 z^3) / (1 + (q1 z)^2),
# off by at most 1.9e-3 there (the Pade approximant (15 z + z^3) / (15 + 6 z^2) is off by 5e-2).
RATIONAL_P = (0.0, 0.99254252, 0.0, 0.04761107)
RATIONAL_Q = (0.0, 0.60333636)
POLYNORM_EPS = 1e-6  # as in PolyCom's reference PolyNorm


def chain(f0, f1, f2, dz: Streams, d2z: Streams) -> Jet:
    """The chain rule to second order along every axis, from f(z), f'(z) and f''(z)."""
    return f0, tuple(f1 * a for a in dz), tuple(f2 * a * a + f1 * c for a, c in zip(dz, d2z))


def tanh_rule(z, dz: Streams, d2z: Streams) -> Jet:
    """tanh with its derivatives written out: tanh' = 1 - t^2, tanh'' = -2 t tanh'."""
    t = jnp.tanh(z)
    s1 = 1.0 - t * t
    return t, tuple(s1 * a for a in dz), tuple(s1 * (c - 2.0 * t * a * a) for a, c in zip(dz, d2z))


def elementwise_rule(f: Callable) -> Callable[[jax.Array, Streams, Streams], Jet]:
    """(z, z', z'') -> (f(z), f(z)', f(z)'') for an elementwise f: the chain rule to second order,
    along every axis.

    f' and f'' come from nested unit-tangent jvps of f, which XLA fuses into one loop; tanh has
    its rule written out, which trained 3-30% faster (docs/speed.md, before the redesign).
    """
    if f is jnp.tanh:
        return tanh_rule

    def rule(z, dz, d2z):
        def value_and_slope(u):
            return jax.jvp(f, (u,), (jnp.ones_like(u),))

        (f0, f1), (_, f2) = jax.jvp(value_and_slope, (z,), (jnp.ones_like(z),))
        return chain(f0, f1, f2, dz, d2z)

    return rule


def vector_rule(f: Callable) -> Callable[[jax.Array, Streams, Streams], Jet]:
    """The rule of an f that mixes the units of a layer (..., width) -> (..., width).

    Along axis i, g(t) = f(z + t z' + t^2 z'' / 2) has g'(0) = J z' and g''(0) = J z'' + H[z', z'],
    exactly f's first and pure second derivative along that axis: two nested jvps in t.
    """

    def rule(z, dz, d2z):
        t0 = jnp.zeros((), z.dtype)
        one = jnp.ones((), z.dtype)

        def along(a, c):
            path = lambda t: f(z + t * a + (0.5 * t * t) * c)  # noqa: E731
            slope = lambda t: jax.jvp(path, (t,), (one,))  # noqa: E731
            (f0, f1), (_, f2) = jax.jvp(slope, (t0,), (one,))
            return f0, f1, f2

        jets = [along(a, c) for a, c in zip(dz, d2z)]
        return jets[0][0], tuple(j[1] for j in jets), tuple(j[2] for j in jets)

    return rule


def _row(p: jax.Array, z: jax.Array) -> jax.Array:
    """A per-unit parameter (width,) shaped to broadcast against z (..., width); a scalar as is."""
    return p if p.ndim == 0 else p.reshape((1,) * (z.ndim - p.ndim) + p.shape)


class Fixed(nnx.Module):
    """A fixed elementwise function: no parameters (its pytree entry is empty)."""

    def __init__(self, f: Callable):
        self.f = f

    def __call__(self, z):
        return self.f(z)

    def taylor(self, z, dz, d2z) -> Jet:
        return elementwise_rule(self.f)(z, dz, d2z)


class Sine(nnx.Module):
    """SIREN's first layer, sin(omega0 z)."""

    def __init__(self, omega: float):
        self.omega = omega

    def __call__(self, z):
        return jnp.sin(self.omega * z)

    def taylor(self, z, dz, d2z) -> Jet:
        w = self.omega
        s, c = jnp.sin(w * z), jnp.cos(w * z)
        return chain(s, w * c, -(w * w) * s, dz, d2z)


class AdaptiveTanh(nnx.Module):
    """tanh(n a z) (Jagtap, Kawaguchi & Karniadakis 2020): the slope a is trainable, one scalar
    for the layer or one per unit, and starts at 1 / n, so the network starts as plain tanh;
    the scale n >= 1 speeds up a's own training."""

    def __init__(self, width: int, neuron: bool, scale: float, dtype):
        self.slope = nnx.Param(jnp.full((width,) if neuron else (), 1.0 / scale, dtype))
        self.scale = scale

    def _gain(self, z):
        return self.scale * _row(self.slope[...], z)

    def __call__(self, z):
        return jnp.tanh(self._gain(z) * z)

    def taylor(self, z, dz, d2z) -> Jet:
        s = self._gain(z)
        return tanh_rule(s * z, tuple(s * a for a in dz), tuple(s * c for c in d2z))


class Stan(nnx.Module):
    """Self-scalable tanh (Gnanasambandam et al., arXiv 2204.12589): tanh(z) + beta z tanh(z),
    beta trainable per unit, starting at 1."""

    def __init__(self, width: int, dtype):
        self.beta = nnx.Param(jnp.ones((width,), dtype))

    def __call__(self, z):
        return (1.0 + _row(self.beta[...], z) * z) * jnp.tanh(z)

    def taylor(self, z, dz, d2z) -> Jet:
        b = _row(self.beta[...], z)
        t = jnp.tanh(z)
        s1, u = 1.0 - t * t, 1.0 + b * z
        return chain(u * t, b * t + u * s1, 2.0 * s1 * (b - u * t), dz, d2z)


def _rms(u: jax.Array) -> jax.Array:
    """u / sqrt(mean over the units of u^2 + eps): PolyNorm's normalisation."""
    return u * jax.lax.rsqrt(jnp.mean(u * u, axis=-1, keepdims=True) + POLYNORM_EPS)


class PolyNorm(nnx.Module):
    """PolyNorm (Zhuo et al., "Polynomial Composition Activations", ICLR 2025):
    w_0 norm(z^3) + w_1 norm(z^2) + w_2 norm(z) + b, norm(u) = u / sqrt(mean_units(u^2) + eps),
    w starting at 1/3 each and b at 0 as in the reference code. The normalisation mixes a
    layer's units, so its Taylor rule is `vector_rule`."""

    def __init__(self, dtype):
        self.weight = nnx.Param(jnp.full((3,), 1.0 / 3.0, dtype))
        self.bias = nnx.Param(jnp.zeros((), dtype))

    def __call__(self, z):
        w = self.weight[...]
        return w[0] * _rms(z**3) + w[1] * _rms(z * z) + w[2] * _rms(z) + self.bias[...]

    def taylor(self, z, dz, d2z) -> Jet:
        return vector_rule(self)(z, dz, d2z)


class Rational(nnx.Module):
    """A type (3, 2) rational activation (Boulle, Nakatsukasa & Townsend 2020) with trainable
    coefficients, one set per layer: (p0 + p1 z + p2 z^2 + p3 z^3) / (1 + (q0 + q1 z)^2).

    The denominator is >= 1 for every z and every coefficient, so the function has no pole and
    is smooth however training moves it, and it spans every positive quadratic up to a factor
    that the numerator absorbs. It starts as the minimax fit of tanh on [-3, 3] (RATIONAL_P/Q)."""

    def __init__(self, dtype):
        self.p = nnx.Param(jnp.asarray(RATIONAL_P, dtype))
        self.q = nnx.Param(jnp.asarray(RATIONAL_Q, dtype))

    def __call__(self, z):
        p, q = self.p[...], self.q[...]
        return (p[0] + z * (p[1] + z * (p[2] + z * p[3]))) / (1.0 + (q[0] + q[1] * z) ** 2)

    def taylor(self, z, dz, d2z) -> Jet:
        return elementwise_rule(self)(z, dz, d2z)


def layer_activation(spec: Activation, k: int, width: int, dtype) -> nnx.Module:
    """The activation module of hidden layer k."""
    name = spec.name
    if name == "adaptive_tanh":
        return AdaptiveTanh(width, spec.adaptive == "neuron", spec.slope_scale, dtype)
    if name == "stan":
        return Stan(width, dtype)
    if name == "polynorm":
        return PolyNorm(dtype)
    if name == "rational":
        return Rational(dtype)
    if name == "siren":
        return Sine(spec.omega0) if k == 0 else Fixed(jnp.sin)
    return Fixed(get_activation(name))


def _uniform(bound: float) -> Callable:
    def init(key, shape, dtype=jnp.float64):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def linear_init(spec: Activation, k: int, fan_in: int) -> dict:
    """nnx.Linear's initialisers for hidden layer k (the output layer keeps the defaults).

    SIREN's (Sitzmann et al. 2020): the first layer's kernel U(-1/n, 1/n) (n its fan-in) under
    sin(omega0 z), later kernels U(-sqrt(6/n), sqrt(6/n)), biases U(-1/sqrt(n), 1/sqrt(n)) (the
    reference code's default). Every other activation keeps Xavier-normal kernels and zero
    biases."""
    if spec.name != "siren":
        return {"kernel_init": nnx.initializers.xavier_normal()}
    bias = _uniform(1.0 / math.sqrt(fan_in))
    if k == 0:
        return {"kernel_init": _uniform(1.0 / fan_in), "bias_init": bias}
    return {"kernel_init": _uniform(math.sqrt(6.0 / fan_in)), "bias_init": bias}


def slope_recovery(slopes: list[jax.Array]) -> jax.Array:
    """Jagtap et al.'s slope-recovery term S(a) = 1 / mean_k exp(mean_i a_i^k) over the hidden
    layers k (and their units i): added to the loss it rewards steeper activations."""
    return 1.0 / jnp.mean(jnp.stack([jnp.exp(jnp.mean(a)) for a in slopes]))
