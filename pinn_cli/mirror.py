"""Trial functions with a parity about the box's centre, by construction.

Two forms, per mirror axis (the reflection x_i -> 2 c_i - x_i, c the box's centre):

* even features (`even_columns`): the network's inputs averaged over the reflections, so the
  network itself is even; a mirror axis's own coordinate, whose average is zero, becomes
  2 u^2 - 1. Used for 2-D ground states, where it needs no second network pass.
* a symmetrised output (`symmetrised`): (N(x) + s N(x')) / 2 with the plain features, s = +1
  (even) or -1 (odd). It keeps the coordinate itself as an input, which structure at the centre
  needs (u^2 squeezes it: a well on 5% of the domain maps to 0.25% of the feature's range), and
  gives odd states too. Used for every state of a 1-D run with excited states.

Jets are (value, per-axis first derivatives, per-axis second derivatives), as in model.py.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable

import jax
import jax.numpy as jnp

from .nonlinear import Jet
from .quadrature import Box


def reflected(box: Box, signs: list[float], x: jax.Array) -> jax.Array:
    """x with each axis i reflected about the box's centre where signs[i] = -1."""
    centre = [0.5 * (lo + hi) for lo, hi in box.intervals]
    return jnp.stack([c + s * (x[..., i] - c) for i, (c, s) in enumerate(zip(centre, signs))], -1)


def symmetrised(
    jet_of: Callable[[jax.Array], Jet], x: jax.Array, box: Box, mirror: tuple[bool, ...], sign
) -> Jet:
    """(f(x) + sign f(x')) / 2 with its derivatives, x' the image of x under the reflections of
    the mirror axes and f given as `jet_of` (points -> a jet there): first derivatives taken at
    the image pick up -1 on each mirror axis, second derivatives do not."""
    a0, a1, a2 = jet_of(x)
    signs = [-1.0 if m else 1.0 for m in mirror]
    b0, b1, b2 = jet_of(reflected(box, signs, x))
    mix = lambda p, q: 0.5 * (p + sign * q)  # noqa: E731
    return (
        mix(a0, b0),
        tuple(mix(p, s * q) for p, q, s in zip(a1, b1, signs)),
        tuple(mix(p, q) for p, q in zip(a2, b2)),
    )


def even_columns(
    box: Box,
    kinks: tuple[tuple[float, ...], ...],
    mirror: tuple[bool, ...],
    plain_columns: Callable[[jax.Array], Iterable[Jet]],
    x: jax.Array,
) -> list[Jet]:
    """The features `plain_columns` gives, averaged over the reflections of the mirror axes:
    even along each, with the singular and kink features of every mirror image of a corner or
    breakpoint. A mirror axis's own coordinate (the first column of its axis, followed by one
    column per breakpoint), whose average is zero, becomes 2 u^2 - 1 (u scaled to [-1, 1])."""
    dim = box.dim
    axes = [i for i, m in enumerate(mirror) if m]
    total = None
    for flips in itertools.product((1.0, -1.0), repeat=len(axes)):
        signs = [1.0] * dim
        for i, s in zip(axes, flips):
            signs[i] = s
        cols = [
            (v, tuple(s * a for s, a in zip(signs, d)), d2)
            for v, d, d2 in plain_columns(reflected(box, signs, x))
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
    start, zero = 0, jnp.zeros_like(x[..., 0])
    for i, axis_kinks in enumerate(kinks):
        if mirror[i]:
            lo, hi = box.intervals[i]
            half = 0.5 * (hi - lo)
            u = (x[..., i] - 0.5 * (lo + hi)) / half
            d = tuple(4.0 * u / half if j == i else zero for j in range(dim))
            d2 = tuple(jnp.full_like(u, 4.0 / half**2) if j == i else zero for j in range(dim))
            out[start] = (2.0 * u**2 - 1.0, d, d2)
        start += 1 + len(axis_kinks)
    return out
