"""Potentials V(x) on a box [lo, hi]: their values, the breakpoints where V jumps, and a registry.

Every potential here is piecewise constant, described by contiguous segments (x_left, x_right, V).
That one description serves the network (features at the breakpoints), the quadrature
(Gauss-Legendre per piece) and the exact reference solver (analytic matching across pieces).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Segment = tuple[float, float, float]


@dataclass(frozen=True)
class Potential:
    """A piecewise-constant potential on [lo, hi] with Dirichlet walls at both ends."""

    name: str
    segments: tuple[Segment, ...]

    @property
    def domain(self) -> tuple[float, float]:
        return self.segments[0][0], self.segments[-1][1]

    @property
    def breakpoints(self) -> tuple[float, ...]:
        """Interior points where V jumps (equal neighbouring values are merged away)."""
        return tuple(
            right for (_, right, v), (_, _, w) in zip(self.segments, self.segments[1:]) if v != w
        )

    @property
    def pieces(self) -> tuple[tuple[float, float], ...]:
        """Sub-intervals of the domain on which V is smooth (constant)."""
        edges = (self.domain[0], *self.breakpoints, self.domain[1])
        return tuple(zip(edges[:-1], edges[1:]))

    def __call__(self, x):
        """V(x) for NumPy or JAX arrays (comparisons and arithmetic only)."""
        value = x * 0 + self.segments[0][2]
        for (_, right, v), (_, _, w) in zip(self.segments, self.segments[1:]):
            if w != v:
                value = value + (w - v) * (x >= right)
        return value

    def closed_form_energy(self, n: int = 0) -> float | None:
        """The exact energy where a closed form exists (a flat box), else None."""
        values = {v for _, _, v in self.segments}
        if len(values) != 1:
            return None
        lo, hi = self.domain
        return ((n + 1) * math.pi / (hi - lo)) ** 2 + values.pop()

    def sample(self, num: int = 1000) -> tuple[np.ndarray, np.ndarray]:
        x = np.linspace(*self.domain, num)
        return x, np.asarray(self(x), dtype=float)


def _centred_segments(
    domain: tuple[float, float], width: float, centre: float | None, inside: float, outside: float
) -> tuple[Segment, ...]:
    lo, hi = domain
    c = 0.5 * (lo + hi) if centre is None else centre
    a, b = c - 0.5 * width, c + 0.5 * width
    return ((lo, a, outside), (a, b, inside), (b, hi, outside))


def infinite_well(domain: tuple[float, float] = (0.0, 1.0), **_) -> Potential:
    lo, hi = domain
    return Potential("infinite_well", ((lo, hi, 0.0),))


def finite_well(
    domain: tuple[float, float] = (-2.0, 2.0),
    V0: float = 50.0,
    width: float = 1.0,
    centre: float | None = None,
    **_,
) -> Potential:
    return Potential("finite_well", _centred_segments(domain, width, centre, 0.0, V0))


def barrier(
    domain: tuple[float, float] = (0.0, 1.0),
    V0: float = 50.0,
    width: float = 0.2,
    centre: float | None = None,
    **_,
) -> Potential:
    return Potential("barrier", _centred_segments(domain, width, centre, V0, 0.0))


REGISTRY: dict[str, Callable[..., Potential]] = {
    "infinite_well": infinite_well,
    "finite_well": finite_well,
    "barrier": barrier,
}


def make_potential(name: str, **params) -> Potential:
    """Build a registered potential by name from plain parameters."""
    if name not in REGISTRY:
        raise ValueError(f"unknown potential {name!r}; choose one of {sorted(REGISTRY)}")
    return REGISTRY[name](**params)
