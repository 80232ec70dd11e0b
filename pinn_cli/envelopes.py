"""Envelopes that make a trial function vanish on the domain's boundary, with their first and
pure second derivatives along each axis (jets, as in model.py), and the product rule that
multiplies them onto the network's output."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .nonlinear import Jet
from .quadrature import Box


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
