"""Potentials V(x) on a box [lo, hi]: values, breakpoints where V jumps, and a name registry.

Every potential, of any dimension, offers what training needs: `dim`, `box` (the domain as a
`quadrature.Box`, with the breakpoints of each axis) and `values(x)` on points of shape (N, d).
The 1-D potentials below also keep their segments and a V(x) on plain arrays of x, which the
reference solvers use.

A potential is a piecewise-constant part, given as contiguous segments (x_left, x_right, V), plus an
optional smooth part (a function of x). The segments serve the network (features at the
breakpoints), the quadrature (Gauss-Legendre per piece) and, when there is no smooth part, the
exact reference solver (analytic matching across pieces). Every factory checks its parameters
and raises ValueError naming the bad value and what is allowed.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .formula import parse
from .quadrature import Box

Segment = tuple[float, float, float]


@dataclass(frozen=True)
class Potential:
    """V(x) = piecewise-constant segments + smooth(x), with Dirichlet walls at both ends."""

    name: str
    segments: tuple[Segment, ...]
    smooth: Callable | None = None  # array-library agnostic V_smooth(x)
    omega: float | None = None  # set for the harmonic oscillator V = omega^2 x^2
    dim = 1

    @property
    def box(self) -> Box:
        return Box((self.domain,), (self.breakpoints,))

    def values(self, x):
        """V at points of shape (N, 1)."""
        return self(x[..., 0])

    @property
    def domain(self) -> tuple[float, float]:
        return self.segments[0][0], self.segments[-1][1]

    @property
    def breakpoints(self) -> tuple[float, ...]:
        """Interior points where V jumps (equal neighbouring values are merged away)."""
        pairs = zip(self.segments, self.segments[1:])
        return tuple(right for (_, right, v), (_, _, w) in pairs if v != w)

    @property
    def pieces(self) -> tuple[tuple[float, float], ...]:
        """Sub-intervals of the domain on which V is smooth."""
        edges = (self.domain[0], *self.breakpoints, self.domain[1])
        return tuple(zip(edges[:-1], edges[1:]))

    @property
    def piecewise_constant(self) -> bool:
        return self.smooth is None

    def __call__(self, x):
        """V(x) for NumPy or JAX arrays."""
        value = x * 0 + self.segments[0][2]
        for (_, right, v), (_, _, w) in zip(self.segments, self.segments[1:]):
            if w != v:
                value = value + (w - v) * (x >= right)
        return value if self.smooth is None else value + self.smooth(x)

    def is_symmetric(self, tol: float = 1e-12) -> bool:
        """V(lo + hi - x) == V(x): states then have a parity."""
        x = np.linspace(*self.domain, 2001)[1:-1]
        x = x[np.all(np.abs(x[:, None] - np.array(self.breakpoints or [np.inf])) > 1e-9, axis=1)]
        a, b = np.asarray(self(x), float), np.asarray(self(sum(self.domain) - x), float)
        return bool(np.allclose(a, b, rtol=tol, atol=tol))

    def closed_form_energy(self, n: int = 0) -> float | None:
        """The exact energy where a closed form exists (a flat box, the oscillator), else None."""
        lo, hi = self.domain
        if self.omega is not None:
            return self.omega * (2 * n + 1)
        values = {v for _, _, v in self.segments}
        if self.smooth is not None or len(values) != 1:
            return None
        return ((n + 1) * math.pi / (hi - lo)) ** 2 + values.pop()


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _is_number(value) -> bool:
    """A finite real number (not a bool, a string or None)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _domain(domain) -> tuple[float, float]:
    _check(len(domain) == 2, f"potential.domain={list(domain)} must be two numbers [lo, hi]")
    lo, hi = float(domain[0]), float(domain[1])
    _check(
        math.isfinite(lo) and math.isfinite(hi),
        f"potential.domain=[{lo}, {hi}] must be two finite numbers",
    )
    _check(lo < hi, f"potential.domain=[{lo}, {hi}] needs lo < hi")
    return lo, hi


def _v0(V0: float) -> float:
    _check(math.isfinite(V0) and V0 >= 0, f"potential.V0={V0} must be a finite number >= 0")
    return float(V0)


def _centred(
    domain, width: float, centre: float | None, inside: float, outside: float
) -> tuple[Segment, ...]:
    lo, hi = _domain(domain)
    _check(width > 0, f"potential.width={width} must be > 0")
    c = 0.5 * (lo + hi) if centre is None else centre
    a, b = c - 0.5 * width, c + 0.5 * width
    _check(
        lo < a and b < hi,
        f"potential.width={width} centred at {c} spans [{a}, {b}], which must lie strictly "
        f"inside potential.domain=[{lo}, {hi}]",
    )
    return ((lo, a, outside), (a, b, inside), (b, hi, outside))


def infinite_well(domain=(0.0, 1.0)) -> Potential:
    lo, hi = _domain(domain)
    return Potential("infinite_well", ((lo, hi, 0.0),))


def finite_well(domain=(-2.0, 2.0), V0=50.0, width=1.0, centre=None) -> Potential:
    return Potential("finite_well", _centred(domain, width, centre, 0.0, _v0(V0)))


def barrier(domain=(0.0, 1.0), V0=50.0, width=0.2, centre=None) -> Potential:
    return Potential("barrier", _centred(domain, width, centre, _v0(V0), 0.0))


def double_well(domain=(-2.0, 2.0), V0=50.0, width=0.8, separation=0.4, centre=None) -> Potential:
    """Two wells of `width` (V = 0) a `separation` apart, V0 between and around them."""
    lo, hi = _domain(domain)
    V0 = _v0(V0)
    _check(width > 0, f"potential.width={width} must be > 0")
    _check(separation > 0, f"potential.separation={separation} must be > 0")
    c = 0.5 * (lo + hi) if centre is None else centre
    a, b = c - 0.5 * separation - width, c + 0.5 * separation + width
    _check(
        lo < a and b < hi,
        f"two wells of potential.width={width} a potential.separation={separation} apart span "
        f"[{a}, {b}], which must lie strictly inside potential.domain=[{lo}, {hi}]",
    )
    s0, s1 = c - 0.5 * separation, c + 0.5 * separation
    return Potential(
        "double_well", ((lo, a, V0), (a, s0, 0.0), (s0, s1, V0), (s1, b, 0.0), (b, hi, V0))
    )


def harmonic(domain=(-8.0, 8.0), omega=1.0) -> Potential:
    """V = omega^2 x^2; E_n = omega (2n + 1) once the box is wide enough not to matter."""
    lo, hi = _domain(domain)
    _check(omega > 0, f"potential.omega={omega} must be > 0")
    return Potential("harmonic", ((lo, hi, 0.0),), smooth=lambda x: omega**2 * x**2, omega=omega)


def piecewise(segments=None) -> Potential:
    """User segments [[x0, x1, V], [x1, x2, V], ...], contiguous, covering the domain in order."""
    _check(
        bool(segments),
        "potential=piecewise needs potential.segments=[[x0,x1,V],[x1,x2,V],...]",
    )
    rows = []
    for seg in segments:
        _check(
            np.ndim(seg) == 1 and len(seg) == 3 and all(_is_number(s) for s in seg),
            f"potential.segments entry {list(seg)} must be [x_left, x_right, V], three finite "
            f"numbers",
        )
        rows.append(tuple(float(s) for s in seg))
    for a, b, _v in rows:
        _check(a < b, f"potential.segments entry [{a}, {b}, ...] needs x_left < x_right")
    for (_, b, _), (a, _, _) in zip(rows, rows[1:]):
        _check(a == b, f"potential.segments are not contiguous: one ends at {b}, the next at {a}")
    return Potential("piecewise", tuple(rows))


def formula(domain=(-4.0, 4.0), formula=None) -> Potential:
    """A smooth V(x) written as a formula in x (parsed safely, never eval'd)."""
    lo, hi = _domain(domain)
    _check(bool(formula), 'potential=formula needs potential.formula="<expression in x>"')
    fn = parse(formula)
    x = np.linspace(lo, hi, 257)
    with np.errstate(all="ignore"):  # log(0), sqrt(-1): refused below, in one line
        finite = bool(np.all(np.isfinite(np.asarray(fn(x), float))))
    _check(
        finite,
        f"potential.formula={formula!r} is not finite everywhere on [{lo}, {hi}]; V must be "
        f"finite on the whole domain (choose a potential.domain where it is defined)",
    )
    return Potential("formula", ((lo, hi, 0.0),), smooth=fn)


REGISTRY: dict[str, Callable[..., Potential]] = {
    "infinite_well": infinite_well,
    "finite_well": finite_well,
    "barrier": barrier,
    "double_well": double_well,
    "harmonic": harmonic,
    "piecewise": piecewise,
    "formula": formula,
}


# The 2-D potentials build on the checks above; registered here so that one name space serves.
from .potentials2d import REGISTRY_2D  # noqa: E402

REGISTRY.update(REGISTRY_2D)


def make_potential(name: str, **params) -> Potential:
    """Build a registered potential by name from plain parameters (ValueError if impossible)."""
    if name not in REGISTRY:
        raise ValueError(
            f"potential={name!r} is not a known potential; choose one of {sorted(REGISTRY)}"
        )
    return REGISTRY[name](**params)
