"""Two-dimensional potentials V(x, y): boxes, oscillators, a disk, separable and non-separable
wells.

Each offers what training needs of any potential (`dim`, `box`, `values` on (N, 2)), plus the
disk's radius where the domain is a circle (psi = 0 on it) and its own reference spectrum
(reference2d.py: closed forms where they exist, exact 1-D matching for separable V, a spectral
element solver otherwise). Every factory checks its parameters and raises ValueError naming the
bad value and what is allowed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .formula import parse_xy
from .quadrature import Box

Interval = tuple[float, float]
_QUADRANTS = ((1, 1), (-1, 1), (-1, -1), (1, -1))


@dataclass(frozen=True)
class Potential2D:
    """V(x, y) on a rectangle (or the disk of `radius` inside it), psi = 0 on the boundary."""

    name: str
    intervals: tuple[Interval, Interval]  # the rectangle, or the disk's bounding square
    breaks: tuple[tuple[float, ...], tuple[float, ...]]  # x and y positions where V jumps
    fn: Callable  # (x, y) -> V, for NumPy or JAX arrays
    spectrum: Callable  # k -> reference2d.Spectrum2D, the k lowest states
    radius: float | None = None  # a disk centred at the origin
    piecewise_constant: bool = True  # False: V varies smoothly (no decay scale from its jumps)
    dim = 2

    @property
    def box(self) -> Box:
        return Box(self.intervals, self.breaks, self.corners)

    @property
    def corners(self) -> tuple[tuple[float, float], ...]:
        """Crossings of an x and a y breakpoint where V's jump is not separable: the mixed
        difference of V over the four quadrants around the crossing (V_++ - V_-+ + V_-- - V_+-)
        is not zero, so -lap psi = (E - V) psi has a quadrant-shaped source there and psi an
        r^2 log r singularity (zero for V = Vx(x) + Vy(y), whose jumps run along whole lines)."""
        (x0, x1), (y0, y1) = self.intervals
        eps = 1e-9 * max(x1 - x0, y1 - y0)
        found = []
        for a in self.breaks[0]:
            for b in self.breaks[1]:
                v = [float(self.fn(a + sx * eps, b + sy * eps)) for sx, sy in _QUADRANTS]
                if abs(v[0] - v[1] + v[2] - v[3]) > 1e-12 * max(1.0, *map(abs, v)):
                    found.append((float(a), float(b)))
        return tuple(found)

    def values(self, x):
        """V at points of shape (N, 2)."""
        return self.fn(x[..., 0], x[..., 1]) + 0.0 * x[..., 0]

    @property
    def span(self) -> float:
        """max V - min V over the domain (sampled): sets the trial function's decay scale."""
        (x0, x1), (y0, y1) = self.intervals
        x, y = np.meshgrid(np.linspace(x0, x1, 101), np.linspace(y0, y1, 101))
        v = np.asarray(self.fn(x, y) + 0.0 * x, float)
        return float(np.ptp(v))

    def axis_spreads(self, nodes: int = 200) -> tuple[float, float]:
        """Per axis, the spread (standard deviation) of the ground state of the 1-D problem along
        the line through V's sampled minimum (three-point finite differences, psi = 0 at the
        ends): how narrow psi is along each axis, in milliseconds and without SciPy."""
        (x0, x1), (y0, y1) = self.intervals
        gx, gy = np.meshgrid(np.linspace(x0, x1, 65), np.linspace(y0, y1, 65), indexing="ij")
        v = np.asarray(self.fn(gx, gy) + 0.0 * gx, float)
        i, j = np.unravel_index(np.argmin(v), v.shape)
        spreads = []
        for (lo, hi), line in (
            ((x0, x1), lambda t: (t, gy[i, j])),
            ((y0, y1), lambda t: (gx[i, j], t)),
        ):
            h = (hi - lo) / (nodes + 1)
            t = lo + h * np.arange(1, nodes + 1)
            vt = np.asarray(self.fn(*line(t)) + 0.0 * t, float)
            off = -np.ones(nodes - 1) / h**2
            op = np.diag(2.0 / h**2 + vt) + np.diag(off, 1) + np.diag(off, -1)
            p = np.linalg.eigh(op)[1][:, 0] ** 2
            mean = np.sum(p * t) / np.sum(p)
            spreads.append(float(np.sqrt(np.sum(p * (t - mean) ** 2) / np.sum(p))))
        return spreads[0], spreads[1]

    def closed_form_energy(self, n: int = 0) -> float | None:
        spectrum = self.spectrum(n + 1)
        return float(spectrum.energies[n]) if spectrum.method == "closed_form" else None


# The 1-D module imports this one to register the 2-D potentials, so its checks are imported
# when called: importing this module first (as a test may) must not find that one half-built.
def _check(ok: bool, message: str) -> None:
    from .potentials import _check as check

    check(ok, message)


def _is_number(value) -> bool:
    from .potentials import _is_number as is_number

    return is_number(value)


def piecewise(*args, **kwargs):
    from .potentials import piecewise as one_d

    return one_d(*args, **kwargs)


def _interval(value, what: str) -> Interval:
    ok = isinstance(value, list | tuple) and len(value) == 2 and all(map(_is_number, value))
    _check(ok, f"{what}={value!r} must be two numbers [lo, hi]")
    lo, hi = float(value[0]), float(value[1])
    _check(lo < hi, f"{what}={value!r} must have lo < hi")
    return lo, hi


def _rectangle(domain) -> tuple[Interval, Interval]:
    """[[x0, x1], [y0, y1]]; a 1-D domain [lo, hi] is refused with the 2-D form to use."""
    flat = isinstance(domain, list | tuple) and len(domain) == 2 and all(map(_is_number, domain))
    _check(
        not flat,
        f"potential.domain={list(domain)!r} is one-dimensional; a 2-D potential needs "
        f"[[x0, x1], [y0, y1]]",
    )
    ok = isinstance(domain, list | tuple) and len(domain) == 2
    _check(ok, f"potential.domain={domain!r} must be [[x0, x1], [y0, y1]]")
    return _interval(domain[0], "potential.domain[0]"), _interval(domain[1], "potential.domain[1]")


def _positive(value, what: str) -> float:
    _check(_is_number(value) and value > 0, f"{what}={value!r} must be a number > 0")
    return float(value)


def _pair(value, what: str) -> tuple[float, float]:
    """A number for both axes, or [for x, for y]."""
    if _is_number(value):
        return float(value), float(value)
    ok = isinstance(value, list | tuple) and len(value) == 2 and all(map(_is_number, value))
    _check(ok, f"{what}={value!r} must be a number or two numbers [x, y]")
    return float(value[0]), float(value[1])


def box2d(domain=((0.0, 1.0), (0.0, 1.0))) -> Potential2D:
    """V = 0 on a rectangle: E = pi^2 (n^2 / Lx^2 + m^2 / Ly^2)."""
    rect = _rectangle(domain)
    spectrum = functools.partial(_reference("box2d"), rect)
    return Potential2D("box2d", rect, ((), ()), lambda x, y: 0.0 * x, spectrum)


def harmonic2d(domain=((-6.0, 6.0), (-6.0, 6.0)), omega=(1.0, 1.0)) -> Potential2D:
    """V = wx^2 x^2 + wy^2 y^2: E = wx (2n + 1) + wy (2m + 1) where the walls lie far in psi's
    tails; the two 1-D oscillators in their boxes where they do not (`reference2d.harmonic2d`)."""
    rect = _rectangle(domain)
    wx, wy = _pair(omega, "potential.omega")
    _check(wx > 0 and wy > 0, f"potential.omega={omega!r} must be > 0 on both axes")
    spectrum = _by_count(functools.partial(_reference("harmonic2d"), (wx, wy), domain=rect))
    fn = lambda x, y: wx**2 * x**2 + wy**2 * y**2  # noqa: E731
    return Potential2D("harmonic2d", rect, ((), ()), fn, spectrum, piecewise_constant=False)


def disk(radius=1.0) -> Potential2D:
    """V = 0 inside the circle of `radius` about the origin, psi = 0 on it: E = j_{m,k}^2 / R^2."""
    r = _positive(radius, "potential.radius")
    spectrum = functools.partial(_reference("disk"), r)
    square = ((-r, r), (-r, r))
    return Potential2D("disk", square, ((), ()), lambda x, y: 0.0 * x, spectrum, radius=r)


def separable2d(x_segments=None, y_segments=None) -> Potential2D:
    """V = Vx(x) + Vy(y), each piecewise constant as in `piecewise`; the domain is their span.
    Reference: sums of the exact 1-D levels."""
    vx = piecewise(x_segments or [[0.0, 0.4, 0.0], [0.4, 0.6, 30.0], [0.6, 1.0, 0.0]])
    vy = piecewise(y_segments or [[0.0, 0.5, 0.0], [0.5, 1.0, 10.0]])
    spectrum = functools.partial(_reference("separable2d"), vx.segments, vy.segments)
    fn = lambda x, y: vx(x) + vy(y)  # noqa: E731
    return Potential2D(
        "separable2d", (vx.domain, vy.domain), (vx.breakpoints, vy.breakpoints), fn, spectrum
    )


def finite_well2d(domain=((-2.0, 2.0), (-2.0, 2.0)), V0=50.0, width=1.0) -> Potential2D:
    """V = 0 in a centred rectangle of `width` (or [wx, wy]), V0 outside it: not separable."""
    rect = _rectangle(domain)
    _check(_is_number(V0), f"potential.V0={V0!r} must be a number")
    wx, wy = _pair(width, "potential.width")
    (x0, x1), (y0, y1) = rect
    for w, (lo, hi), axis in ((wx, (x0, x1), "x"), (wy, (y0, y1), "y")):
        _check(
            0 < w < hi - lo,
            f"potential.width={width!r}: the well's {axis} side {w:g} must be > 0 and shorter "
            f"than the domain's {hi - lo:g}",
        )
    cx, cy = 0.5 * (x0 + x1), 0.5 * (y0 + y1)
    xb, yb = (cx - wx / 2, cx + wx / 2), (cy - wy / 2, cy + wy / 2)
    v0 = float(V0)

    def fn(x, y):
        inside = (abs(x - cx) < wx / 2) * (abs(y - cy) < wy / 2)
        return v0 * (1.0 - inside) + 0.0 * x

    spectrum = functools.partial(_reference("spectral_element"), fn, rect, xbreaks=xb, ybreaks=yb)
    return Potential2D("finite_well2d", rect, (xb, yb), fn, _by_count(spectrum))


def formula2d(domain=((-6.0, 6.0), (-6.0, 6.0)), formula="x**2 + y**2 + 0.5*x*y") -> Potential2D:
    """A smooth V(x, y) written as a formula in x and y (parsed safely, never eval'd); its
    reference is the spectral element solver."""
    rect = _rectangle(domain)
    _check(bool(formula), 'potential=formula2d needs potential.formula="<expression in x, y>"')
    fn = parse_xy(formula)
    (x0, x1), (y0, y1) = rect
    x, y = np.meshgrid(np.linspace(x0, x1, 65), np.linspace(y0, y1, 65))
    with np.errstate(all="ignore"):  # log(0), sqrt(-1): refused below, in one line
        finite = bool(np.all(np.isfinite(np.asarray(fn(x, y), float))))
    _check(
        finite,
        f"potential.formula={formula!r} is not finite everywhere on {[list(i) for i in rect]}; "
        f"V must be finite on the whole domain (choose a potential.domain where it is defined)",
    )
    spectrum = _by_count(functools.partial(_reference("spectral_element"), fn, rect))
    return Potential2D("formula2d", rect, ((), ()), fn, spectrum, piecewise_constant=False)


def _reference(name: str) -> Callable:
    """reference2d.<name> (spectral2d's for "spectral_element"), imported when first called
    (SciPy loads only for judging)."""

    def solve(*args, **kwargs):
        from . import reference2d, spectral2d

        module = spectral2d if name == "spectral_element" else reference2d
        return getattr(module, name)(*args, **kwargs)

    return solve


def _by_count(solver: Callable) -> Callable:
    """solver(k=...) as a function of k alone, cached: judging asks for it more than once."""
    return functools.lru_cache(maxsize=4)(lambda k: solver(k=k))


REGISTRY_2D: dict[str, Callable[..., Potential2D]] = {
    "box2d": box2d,
    "harmonic2d": harmonic2d,
    "disk": disk,
    "separable2d": separable2d,
    "finite_well2d": finite_well2d,
    "formula2d": formula2d,
}
