"""The network (Flax NNX) and the trial wavefunction that vanishes on the boundary of a box.

Points are arrays of shape (..., d). `TrialFunction.taylor` returns psi, its gradient and its
Laplacian in one forward pass: every layer carries the value and, for each axis, the first and
the pure second derivative along that axis (Taylor mode per axis). The derivative streams are a
tuple of one (..., width) array per axis, so each layer is 1 + 2d plain 2-D matmuls: stacking
them into one (d, ..., width) array measured 2.8x slower in 2-D on XLA:CPU (broadcasting the
activation's derivatives over the axis costs more than the matmuls), and in 1-D the tuple of one
is exactly the scalar-x pass. Parameters travel as pure dicts (a plain pytree of arrays), which
keeps the jitted code, the optimisers and the checkpoints simple. The activations and their
Taylor rules (fixed, trainable, or mixing a layer's units) are in nonlinear.py.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx

from . import nonlinear
from .activations import Activation
from .corners import PER_CORNER, corner_features
from .nonlinear import Jet, Streams, elementwise_rule
from .quadrature import Box


class MLP(nnx.Module):
    """Fully connected network R^in -> R (or R^outputs) with `depth` hidden layers of `width`
    units. One output is returned without its axis: (...,); more as (..., outputs).

    Each hidden layer has its own activation module (nonlinear.py); a trainable one's
    parameters sit in the pytree under "activations", a fixed one adds nothing to it."""

    def __init__(
        self,
        in_features: int,
        width: int,
        depth: int,
        activation: Activation,
        *,
        dtype,
        rngs,
        outputs: int = 1,
    ):
        sizes = [in_features] + [width] * depth
        kw = dict(dtype=dtype, param_dtype=dtype)
        self.hidden = nnx.List(
            [
                nnx.Linear(a, b, rngs=rngs, **nonlinear.linear_init(activation, k, a), **kw)
                for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))
            ]
        )
        xavier = nnx.initializers.xavier_normal()
        self.out = nnx.Linear(width, outputs, rngs=rngs, kernel_init=xavier, **kw)
        self.activations = nnx.List(
            [nonlinear.layer_activation(activation, k, width, dtype) for k in range(depth)]
        )
        self.outputs = outputs

    def _last(self, a: jax.Array) -> jax.Array:
        return a[..., 0] if self.outputs == 1 else a

    def features(self, z: jax.Array) -> jax.Array:
        """The last hidden layer's activations: the output is a linear map of these."""
        for layer, act in zip(self.hidden, self.activations):
            z = act(layer(z))
        return z

    def __call__(self, z: jax.Array) -> jax.Array:
        return self._last(self.out(self.features(z)))

    def features_taylor(self, z: jax.Array, dz: Streams, d2z: Streams) -> Jet:
        """The last hidden layer and its derivatives, given the input's (z, dz, d2z)."""
        for layer, act in zip(self.hidden, self.activations):
            w = layer.kernel[...]
            z, dz, d2z = act.taylor(layer(z), tuple(a @ w for a in dz), tuple(a @ w for a in d2z))
        return z, dz, d2z

    def slopes(self) -> list[jax.Array]:
        """The trainable slopes of adaptive activations, one array per hidden layer."""
        return [a.slope[...] for a in self.activations if isinstance(a, nonlinear.AdaptiveTanh)]

    def taylor(self, z: jax.Array, dz: Streams, d2z: Streams) -> Jet:
        """The output and its derivatives, given the input's (z, dz, d2z)."""
        z, dz, d2z = self.features_taylor(z, dz, d2z)
        w = self.out.kernel[...]
        last = lambda streams: tuple(self._last(a @ w) for a in streams)  # noqa: E731
        return self._last(self.out(z)), last(dz), last(d2z)


def box_envelope(box: Box, x: jax.Array) -> Jet:
    """B(x) = prod_i 4 (x_i - lo_i)(hi_i - x_i) / L_i^2 (zero on the boundary, 1 at the centre),
    with its first and pure second derivatives along each axis."""
    factors = []
    for i, (lo, hi) in enumerate(box.intervals):
        c, xi = 4.0 / (hi - lo) ** 2, x[..., i]
        factors.append(
            (c * (xi - lo) * (hi - xi), c * (lo + hi - 2.0 * xi), jnp.full_like(xi, -2.0 * c))
        )
    d1, d2 = [], []
    for i, (_, db, d2b) in enumerate(factors):
        rest = _product([b for j, (b, _, _) in enumerate(factors) if j != i], db)
        d1.append(db * rest)
        d2.append(d2b * rest)
    return _product([b for b, _, _ in factors], x[..., 0]), tuple(d1), tuple(d2)


def disk_envelope(radius: float, x: jax.Array) -> Jet:
    """B(x, y) = 1 - (x^2 + y^2) / R^2: zero on the circle of radius R about the origin, 1 at
    its centre, with its first and pure second derivatives along each axis."""
    c = 1.0 / radius**2
    r2 = sum(x[..., i] ** 2 for i in range(x.shape[-1]))
    axes = range(x.shape[-1])
    return (
        1.0 - c * r2,
        tuple(-2.0 * c * x[..., i] for i in axes),
        tuple(jnp.full_like(x[..., i], -2.0 * c) for i in axes),
    )


def _product(arrays: list[jax.Array], like: jax.Array) -> jax.Array:
    out = jnp.ones_like(like)
    for a in arrays:
        out = out * a
    return out


def times(b: Jet, g: Jet) -> Jet:
    """The product rule to second order, along each axis: (b g, (b g)', (b g)'')."""
    (b0, b1, b2), (g0, g1, g2) = b, g
    first = tuple(db * g0 + b0 * dg for db, dg in zip(b1, g1))
    second = tuple(d2b * g0 + 2.0 * db * dg + b0 * d2g for db, dg, d2b, d2g in zip(b1, g1, b2, g2))
    return b0 * g0, first, second


@dataclass(frozen=True, eq=False)
class Carrier:
    """A fixed factor exp(power * s N0(x)) that an excited state's trial function carries: the
    ground state's decay (psi_0 = B exp(s N0)), so that the network of state k only has to
    represent psi_k / psi_0^power, a function without psi_k's decaying tails. Compared by
    identity (its parameters are arrays). A pytree: the parameters and the power are leaves, so
    one compiled program serves every state that carries a factor of the same shape."""

    ground: TrialFunction
    params: dict
    power: float | jax.Array = 1.0

    def jet(self, x: jax.Array) -> Jet:
        g = self.ground
        n = g.network(self.params).taylor(*g.feature_taylor(x))
        return elementwise_rule(lambda u: jnp.exp(self.power * g.scale * u))(*n)


@dataclass(frozen=True)
class TrialFunction:
    """psi(params, x) = B(x) C(x) g(N(features(x))): B the envelope (zero on the box's faces, or
    on the circle of `radius` about the origin), C an optional fixed `Carrier` (1 without one),
    g = exp or identity. A pytree whose leaves are the output scale and the carrier's: the rest
    is its static structure, equal for networks of equal shape. The positions of the breakpoint
    features and the corners are leaves too (their counts are structure), so runs that differ
    only in V, a sweep over V0 or over a well's width, share their compiled programs through
    the persistent cache."""

    graphdef: nnx.GraphDef
    box: Box  # the intervals only; the breakpoints and corners are `kinks` and `corners`
    kinks: tuple[tuple[float, ...], ...]  # per axis: the breakpoints with a feature (x_i - b)_+^2
    output: str  # "exp" (nodeless) or "linear"
    scale: float = 1.0  # psi = B exp(scale * N): lets an O(1) network reach large decay exponents
    radius: float | None = None  # the domain is this disk about the origin, not the box
    carrier: Carrier | None = None
    corners: tuple[tuple[float, float], ...] = ()  # with the breakpoint features: see corners.py
    # per axis: psi is even about the box's centre along it (a ground state of a V symmetric
    # there); the features are averaged over the mirror images, so every psi is even by
    # construction and training needs nodes on one side only (`mirrored`)
    mirror: tuple[bool, ...] = ()

    def envelope(self, x: jax.Array) -> Jet:
        """B(x), times the carrier's factor when there is one, with its derivatives."""
        b = box_envelope(self.box, x) if self.radius is None else disk_envelope(self.radius, x)
        return b if self.carrier is None else times(b, self.carrier.jet(x))

    @property
    def dim(self) -> int:
        return self.box.dim

    def _columns(self, x: jax.Array):
        """Per input feature: its value and, per axis, its first and second derivative; with
        mirror axes, even along each of them (`_even_columns`)."""
        return self._even_columns(x) if any(self.mirror) else list(self._plain_columns(x))

    def _even_columns(self, x: jax.Array) -> list[Jet]:
        """The features averaged over the reflections x_i -> 2 c_i - x_i of the mirror axes (c
        the box's centre): even along each, with the singular and kink features of every
        mirror image of a corner or breakpoint. A mirror axis's own coordinate, whose average
        is zero, becomes 2 u^2 - 1 (u the coordinate scaled to [-1, 1])."""
        axes = [i for i, m in enumerate(self.mirror) if m]
        centre = [0.5 * (lo + hi) for lo, hi in self.box.intervals]
        total = None
        for flips in itertools.product((1.0, -1.0), repeat=len(axes)):
            signs = [1.0] * self.dim
            for i, s in zip(axes, flips):
                signs[i] = s
            image = jnp.stack(
                [c + s * (x[..., i] - c) for i, (c, s) in enumerate(zip(centre, signs))], -1
            )
            cols = [
                (v, tuple(s * a for s, a in zip(signs, d)), d2)
                for v, d, d2 in self._plain_columns(image)
            ]
            total = (
                cols
                if total is None
                else [
                    (v + v2, tuple(map(jnp.add, d, e)), tuple(map(jnp.add, d2, e2)))
                    for (v, d, d2), (v2, e, e2) in zip(total, cols)
                ]
            )
        k = float(2 ** len(axes))
        out = [(v / k, tuple(a / k for a in d), tuple(a / k for a in d2)) for v, d, d2 in total]
        start = 0
        for i, kinks in enumerate(self.kinks):
            if self.mirror[i]:
                (lo, hi), zero = self.box.intervals[i], jnp.zeros_like(x[..., 0])
                half = 0.5 * (hi - lo)
                u = (x[..., i] - centre[i]) / half
                d = tuple(4.0 * u / half if j == i else zero for j in range(self.dim))
                d2 = tuple(
                    jnp.full_like(u, 4.0 / half**2) if j == i else zero for j in range(self.dim)
                )
                out[start] = (2.0 * u**2 - 1.0, d, d2)
            start += 1 + len(kinks)
        return out

    def _plain_columns(self, x: jax.Array):
        """Per input feature: its value and, per axis, its first and second derivative.

        Each coordinate scaled to [-1, 1]; then, per axis, (x_i - b)_+^2 for each breakpoint b:
        C1 at b with a jump in its second derivative, as psi has where V jumps; then, per corner
        (`Box.corners`), the functions `corner_features` carrying psi's r^k log r singularities."""
        zero = jnp.zeros_like(x[..., 0])

        def on_axis(i, value, d, d2):
            ds = tuple(d if j == i else zero for j in range(self.dim))
            return value, ds, tuple(d2 if j == i else zero for j in range(self.dim))

        for i, ((lo, hi), kinks) in enumerate(zip(self.box.intervals, self.kinks)):
            half, xi = 0.5 * (hi - lo), x[..., i]
            yield on_axis(i, (xi - 0.5 * (lo + hi)) / half, jnp.full_like(xi, 1.0 / half), zero)
            for b in kinks:
                u = jnp.where(xi > b, (xi - b) / half, 0.0)
                yield on_axis(i, u**2, 2.0 * u / half, jnp.where(xi > b, 2.0 / half**2, 0.0))
        if self.corners:
            half = 0.5 * max(self.box.lengths)  # one scale for both axes keeps Laplace's form
            for cx, cy in self.corners:
                u, v = (x[..., 0] - cx) / half, (x[..., 1] - cy) / half
                for w, (wu, wv), (wuu, wvv) in corner_features(u, v):
                    yield w, (wu / half, wv / half), (wuu / half**2, wvv / half**2)

    def features(self, x: jax.Array) -> jax.Array:
        """(..., d) -> (..., F): the network's inputs."""
        return jnp.stack([value for value, _, _ in self._columns(x)], axis=-1)

    def feature_taylor(self, x: jax.Array) -> Jet:
        """The input features (..., F) and their derivatives along each axis, (..., F) each."""
        columns = list(self._columns(x))
        f = jnp.stack([value for value, _, _ in columns], axis=-1)
        along = lambda k, i: jnp.stack([c[k][i] for c in columns], axis=-1)  # noqa: E731
        axes = range(self.dim)
        return f, tuple(along(1, i) for i in axes), tuple(along(2, i) for i in axes)

    def network(self, params) -> MLP:
        return nnx.merge(self.graphdef, params)

    def slope_recovery(self, params) -> jax.Array | None:
        """Jagtap et al.'s S(a) of the network's adaptive slopes; None when it has none."""
        slopes = self.network(params).slopes()
        return nonlinear.slope_recovery(slopes) if slopes else None

    def _jet(self, params, x: jax.Array) -> Jet:
        """psi with its derivatives along each axis."""
        n = self.network(params).taylor(*self.feature_taylor(x))
        if self.output == "exp":
            n = elementwise_rule(lambda u: jnp.exp(self.scale * u))(*n)
        return times(self.envelope(x), n)

    def taylor(self, params, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """psi (...,), grad psi (..., d) and lap psi (...,) at points x (..., d), in one pass."""
        p, dp, d2p = self._jet(params, x)
        return p, jnp.stack(dp, axis=-1), sum(d2p[1:], d2p[0])

    def basis_taylor(self, params, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """B(x) [h(x), 1] (..., width + 1), its gradient (..., width + 1, d) and its Laplacian:
        with output="linear", psi is this vector dotted with the output layer's (kernel, bias),
        so a Rayleigh-Ritz step can set that layer exactly."""
        h, dh, d2h = self.network(params).features_taylor(*self.feature_taylor(x))
        with_one = lambda a, c: jnp.concatenate([a, jnp.full_like(a[..., :1], c)], -1)  # noqa: E731
        h = with_one(h, 1.0)
        dh, d2h = tuple(with_one(a, 0.0) for a in dh), tuple(with_one(a, 0.0) for a in d2h)
        b0, b1, b2 = self.envelope(x)
        column = lambda a: a[..., None]  # noqa: E731
        envelope = (column(b0), tuple(map(column, b1)), tuple(map(column, b2)))
        f, df, d2f = times(envelope, (h, dh, d2h))
        return f, jnp.stack(df, axis=-1), sum(d2f[1:], d2f[0])

    def __call__(self, params, x: jax.Array) -> jax.Array:
        """psi at points x (..., d)."""
        n = self.network(params)(self.features(x))
        g = jnp.exp(self.scale * n) if self.output == "exp" else n
        return self.envelope(x)[0] * g


jax.tree_util.register_dataclass(Carrier, ["params", "power"], ["ground"])
jax.tree_util.register_dataclass(
    TrialFunction,
    ["carrier", "scale", "kinks", "corners"],
    ["graphdef", "box", "output", "radius", "mirror"],
)


def make_trial_function(
    *,
    box: Box,
    width: int,
    depth: int,
    activation: str | Activation,
    output: str,
    breakpoint_features: bool,
    key: jax.Array,
    scale: float = 1.0,
    dtype=jnp.float64,
    radius: float | None = None,
    outputs: int = 1,
    carrier: Carrier | None = None,
    mirror: tuple[bool, ...] = (),
) -> tuple[TrialFunction, dict]:
    """Initialise the network from `key`; return the trial function and its parameters.
    `mirror`: per axis, whether psi is even about the box's centre along it (see
    `TrialFunction`). `outputs` > 1: the network has that many outputs (a complex psi has
    two), for callers that use its features and network (`feature_taylor`, `network`) with
    their own envelope.

    A batch of keys (shape (K,)) initialises K networks: every leaf gets a leading member axis,
    and member i equals the network initialised from key[i] alone. `activation`: a name (its
    options at their defaults) or an `activations.Activation`.
    """
    kinks = box.breakpoints if breakpoint_features else ((),) * box.dim
    corners = len(box.corners) * PER_CORNER if breakpoint_features else 0
    in_features = box.dim + sum(len(k) for k in kinks) + corners
    act = activation if isinstance(activation, Activation) else Activation(activation)
    shape = (in_features, width, depth, act, jnp.dtype(dtype), outputs, key.ndim)
    graphdef, init = _initializer(*shape)
    params = init(key)
    intervals = Box(box.intervals, ((),) * box.dim)
    at = box.corners if breakpoint_features else ()
    psi = TrialFunction(
        graphdef, intervals, tuple(kinks), output, scale, radius, carrier, at, tuple(mirror)
    )
    return psi, params


@functools.lru_cache(maxsize=16)
def _initializer(in_features, width, depth, act, dtype, outputs, batched):
    """(graphdef, key -> pure-dict parameters), compiled once per network shape: one program
    instead of a dozen eagerly compiled ops (same numbers), shared by every state of a run."""

    def make(k):
        rngs = nnx.Rngs(params=k)
        return MLP(in_features, width, depth, act, dtype=dtype, rngs=rngs, outputs=outputs)

    graphdef = nnx.graphdef(nnx.eval_shape(make, jax.random.key(0)))
    init = lambda k: nnx.to_pure_dict(nnx.state(make(k)))  # noqa: E731
    return graphdef, jax.jit(init if batched == 0 else jax.vmap(init))


def scale_first_layer(params: dict, factor: float) -> dict:
    """The network's parameters with its first hidden layer's weights and biases multiplied by
    `factor`: each unit's transition stays where it was and becomes `factor` times sharper, so
    the network starts with that much more oscillation across the domain."""
    hidden = dict(params["hidden"])
    first = min(hidden)
    hidden[first] = {**hidden[first]}
    for name in ("kernel", "bias"):
        hidden[first][name] = hidden[first][name] * factor
    return {**params, "hidden": hidden}


def derivatives(psi: Callable, params, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """psi, grad psi (..., d) and lap psi at x.

    A TrialFunction carries them through its layers in one pass (`taylor`), at one point (d,)
    or at an array of points (N, d); any other psi(params, x) is differentiated at one point
    x (d,) by forward-over-forward jvps along each axis.
    """
    if isinstance(psi, TrialFunction):
        return psi.taylor(params, x)

    def along(e):
        first = lambda y: jax.jvp(lambda z: psi(params, z), (y,), (e,))  # noqa: E731
        (p, dp), (_, d2p) = jax.jvp(first, (x,), (e,))
        return p, dp, d2p

    p, dp, d2p = jax.vmap(along)(jnp.eye(x.shape[-1], dtype=x.dtype))
    return p[0], dp, jnp.sum(d2p)
