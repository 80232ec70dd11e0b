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
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx

from . import mirror, nonlinear
from .activations import Activation
from .corners import PER_CORNER, corner_features
from .envelopes import box_envelope, disk_envelope, times
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
        n = g.network_jet(self.params, x)
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
    # per axis, 1.0 where psi is odd about the centre, 0.0 where it is even; leaves, so the
    # even and odd states of a run share their programs
    odd: tuple[float, ...] = ()
    # the parity comes from the network's output, N(x) +- N(x') (x' the mirror image of x),
    # instead of from features averaged over the images: the network keeps the coordinate
    # itself as an input, which a narrow well at the centre needs (u^2 squeezes it)
    mirror_output: bool = False

    @property
    def parity(self) -> int | None:
        """+1 or -1 when psi is even or odd by construction (mirror axes), else None."""
        if not any(self.mirror):
            return None
        return -1 if round(sum(float(o) for o in self.odd)) % 2 else 1

    def envelope(self, x: jax.Array) -> Jet:
        """B(x), times the carrier's factor when there is one, with its derivatives."""
        b = box_envelope(self.box, x) if self.radius is None else disk_envelope(self.radius, x)
        return b if self.carrier is None else times(b, self.carrier.jet(x))

    def network_jet(self, params, x: jax.Array) -> Jet:
        """N(features(x)) with its derivatives along each axis (even or odd with
        mirror_output)."""
        net = self.network(params)
        return self._symmetrised(lambda z: net.taylor(*self.feature_taylor(z)), x)

    @property
    def _sign(self):
        """+1 for an even psi, -1 for an odd one (a leaf: one program for both)."""
        return 1.0 - 2.0 * sum(self.odd)

    def _symmetrised(self, jet_of: Callable[[jax.Array], Jet], x: jax.Array) -> Jet:
        """`jet_of` (points -> a jet there) made even or odd with mirror_output, else itself."""
        if not self.mirror_output:
            return jet_of(x)
        return mirror.symmetrised(jet_of, x, self.box, self.mirror, self._sign)

    @property
    def dim(self) -> int:
        return self.box.dim

    def _columns(self, x: jax.Array):
        """Per input feature: its value and, per axis, its first and second derivative; with
        mirror axes, even along each of them (`_even_columns`)."""
        if any(self.mirror) and not self.mirror_output:
            return self._even_columns(x)
        return list(self._plain_columns(x))

    def _even_columns(self, x: jax.Array) -> list[Jet]:
        """The features averaged over the mirror axes' reflections (`mirror.even_columns`)."""
        return mirror.even_columns(self.box, self.kinks, self.mirror, self._plain_columns, x)

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
        n = self.network_jet(params, x)
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
        net = self.network(params)
        with_one = lambda a, c: jnp.concatenate([a, jnp.full_like(a[..., :1], c)], -1)  # noqa: E731

        def last_layer(z):
            h, dh, d2h = net.features_taylor(*self.feature_taylor(z))
            return with_one(h, 1.0), *(tuple(with_one(a, 0.0) for a in d) for d in (dh, d2h))

        h, dh, d2h = self._symmetrised(last_layer, x)
        b0, b1, b2 = self.envelope(x)
        column = lambda a: a[..., None]  # noqa: E731
        envelope = (column(b0), tuple(map(column, b1)), tuple(map(column, b2)))
        f, df, d2f = times(envelope, (h, dh, d2h))
        return f, jnp.stack(df, axis=-1), sum(d2f[1:], d2f[0])

    def __call__(self, params, x: jax.Array) -> jax.Array:
        """psi at points x (..., d)."""
        net = self.network(params)
        n = net(self.features(x))
        if self.mirror_output:
            signs = [-1.0 if m else 1.0 for m in self.mirror]
            image = mirror.reflected(self.box, signs, x)
            n = 0.5 * (n + self._sign * net(self.features(image)))
        g = jnp.exp(self.scale * n) if self.output == "exp" else n
        return self.envelope(x)[0] * g


jax.tree_util.register_dataclass(Carrier, ["params", "power"], ["ground"])
jax.tree_util.register_dataclass(
    TrialFunction,
    ["carrier", "scale", "kinks", "corners", "odd"],
    ["graphdef", "box", "output", "radius", "mirror", "mirror_output"],
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
    odd: tuple[float, ...] = (),
    mirror_output: bool = False,
) -> tuple[TrialFunction, dict]:
    """Initialise the network from `key`; return the trial function and its parameters.
    `mirror`: per axis, whether psi is even about the box's centre along it (`odd`: 1.0 per
    axis where it is odd there instead, `mirror_output`: by its output; see `TrialFunction`).
    `outputs` > 1: the network has that many outputs (a complex psi has two), for callers that
    use its features and network (`feature_taylor`, `network`) with their own envelope.

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
        graphdef,
        intervals,
        tuple(kinks),
        output,
        scale,
        radius,
        carrier,
        at,
        tuple(mirror),
        tuple(odd),
        mirror_output,
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


def spread_first_layer(params: dict, key: jax.Array) -> dict:
    """The network's parameters with its first hidden layer's biases drawn from U(-1, 1): with
    the default zero biases, odd activations and odd inputs (the centred coordinate) make the
    whole network odd, so the even part of a mirrored output (N(x) + N(x')) / 2 would start
    identically zero. (An odd state keeps the zero biases: its (N(x) - N(x')) / 2 then starts
    as N itself, as without the mirror.)"""
    hidden = dict(params["hidden"])
    first = min(hidden)
    bias = hidden[first]["bias"]
    spread = jax.random.uniform(key, bias.shape, bias.dtype, -1.0, 1.0)
    hidden[first] = {**hidden[first], "bias": spread}
    return {**params, "hidden": hidden}


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
