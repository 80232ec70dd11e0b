"""Reference eigenpairs of -psi'' + V(x) psi = E psi on [lo, hi] with psi(lo) = psi(hi) = 0.

Units hbar^2/2m = 1; states are numbered n = 0, 1, 2, ... (state n has n interior nodes). Three
independent solvers, NumPy/SciPy only:

* ``infinite_well``: closed form for V = 0.
* ``piecewise_constant``: exact transcendental matching for piecewise-constant V. The ODE is solved
  analytically piece by piece, the n-th eigenvalue is bracketed by Sturm node counting and polished
  with ``brentq``; energies are accurate to ~1e-13 relative.
* ``finite_differences.finite_difference``: second-order central differences (optionally
  Richardson-extrapolated) for any V, in its own module.

Every ``Eigenpair.psi`` is normalised on [lo, hi], returns 0 outside [lo, hi] and has psi'(lo) > 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq

Wavefunction = Callable[[np.ndarray], np.ndarray]
PotentialFn = Callable[[np.ndarray], np.ndarray]
Segment = tuple[float, float, float]

_MAX_PHASE = 16.0  # largest sqrt(|E - V|) * length of one analytic sub-step (bounds sinh growth)
_GAUSS_NODES = 64  # Gauss-Legendre nodes per sub-step; exact to rounding for phase <= _MAX_PHASE
_SERIES_Z = 1e-2  # |(E - V) t^2| below which cos/sin(k t)/k are evaluated by their Taylor series
_BISECT_MAX = 400  # bisection steps allowed when bracketing an eigenvalue by node counting


@dataclass(frozen=True)
class Eigenpair:
    """An energy with its normalised wavefunction (psi'(lo) > 0) and the method that produced it."""

    energy: float
    psi: Wavefunction
    method: str  # "closed_form" | "matching" | "finite_difference"


# --------------------------------------------------------------------------- input validation


def check_n(n: int, name: str = "n") -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {n!r}")
    if n < 0:
        raise ValueError(f"{name} must be >= 0, got {n}")
    return int(n)


def check_domain(domain: tuple[float, float], name: str = "domain") -> tuple[float, float]:
    try:
        lo, hi = (float(x) for x in domain)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a pair (lo, hi) of numbers, got {domain!r}") from err
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"{name} must satisfy lo < hi (both finite), got {domain!r}")
    return lo, hi


def _check_segments(segments: Sequence[Segment]) -> tuple[np.ndarray, np.ndarray]:
    """Validated edges (length m + 1) and values (length m); zero-width pieces are dropped."""
    try:
        rows = np.array([[float(a), float(b), float(v)] for a, b, v in segments], dtype=float)
    except (TypeError, ValueError) as err:
        raise ValueError("segments must be a sequence of (x_left, x_right, V) triples") from err
    if rows.shape[0] == 0:
        raise ValueError("segments must not be empty")
    if not np.all(np.isfinite(rows)):
        raise ValueError("segments must contain only finite numbers")
    left, right, values = rows.T
    if np.any(right < left):
        raise ValueError("every segment needs x_left <= x_right")
    scale = right[-1] - left[0]
    if not scale > 0:
        raise ValueError("segments must cover an interval of positive length")
    gaps = np.abs(left[1:] - right[:-1])
    if np.any(gaps > 1e-12 * max(scale, np.abs(rows[:, :2]).max())):
        bad = int(np.argmax(gaps))
        raise ValueError(
            f"segments must be contiguous and in order: segment {bad} ends at {right[bad]!r} "
            f"but segment {bad + 1} starts at {left[bad + 1]!r}"
        )
    keep = right > left
    edges = np.append(left[keep], right[-1])
    return edges, values[keep]


# --------------------------------------------------------------------------- closed form


def infinite_well(domain: tuple[float, float], n: int) -> Eigenpair:
    """Closed form for V = 0: E = ((n+1) pi / L)^2, psi = sqrt(2/L) sin((n+1) pi (x - lo) / L)."""
    lo, hi = check_domain(domain)
    n = check_n(n)
    length = hi - lo
    k = (n + 1) * math.pi / length

    def psi(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        inside = (x >= lo) & (x <= hi)
        return np.where(inside, math.sqrt(2.0 / length) * np.sin(k * (x - lo)), 0.0)

    return Eigenpair(energy=k * k, psi=psi, method="closed_form")


# --------------------------------------------------------------------------- exact matching


def _cos_sin(q: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """c = cos(sqrt(q) t) and s = sin(sqrt(q) t) / sqrt(q) (cosh/sinh for q < 0, series near 0).

    With these, the solution of psi'' = -q psi from (p, dp) at t = 0 is psi(t) = c p + s dp and
    psi'(t) = -q s p + c dp, for any sign of q and without dividing by zero.
    """
    q, t = np.broadcast_arrays(np.asarray(q, dtype=float), np.asarray(t, dtype=float))
    z = q * t * t
    k = np.sqrt(np.abs(q))
    kt = k * t
    safe_k = np.where(k > 0, k, 1.0)
    c = np.where(q > 0, np.cos(kt), np.cosh(kt))
    s = np.where(q > 0, np.sin(kt), np.sinh(kt)) / safe_k
    c_series = 1 + z * (-1 / 2 + z * (1 / 24 + z * (-1 / 720 + z * (1 / 40320 - z / 3628800))))
    s_series = t * (
        1 + z * (-1 / 6 + z * (1 / 120 + z * (-1 / 5040 + z * (1 / 362880 - z / 39916800))))
    )
    small = np.abs(z) < _SERIES_Z
    return np.where(small, c_series, c), np.where(small, s_series, s)


def _substeps(edges: np.ndarray, values: np.ndarray, energy: float) -> tuple[np.ndarray, ...]:
    """Split pieces so that sqrt(|E - V|) * width <= _MAX_PHASE; returns (starts, widths, V)."""
    widths = np.diff(edges)
    counts = np.maximum(1, np.ceil(np.sqrt(np.abs(energy - values)) * widths / _MAX_PHASE))
    counts = counts.astype(int)
    starts = np.concatenate(
        [a + w * np.arange(m) / m for a, w, m in zip(edges[:-1], widths, counts)]
    )
    return starts, np.repeat(widths / counts, counts), np.repeat(values, counts)


def _propagate(widths: np.ndarray, values: np.ndarray, energy: float) -> tuple[np.ndarray, ...]:
    """Shoot from psi(lo) = 0, psi'(lo) = 1 across the sub-steps.

    Returns the rescaled states (p, dp) at each sub-step start, their log scale factors (true state
    = exp(log_scale) * (p, dp)) and the rescaled end state. Rescaling is by a positive factor, so
    signs (hence roots and nodes) are those of the true solution.
    """
    m = len(widths)
    p, dp, log_scale = np.empty(m), np.empty(m), np.empty(m)
    c, s = _cos_sin(energy - values, widths)
    q = energy - values
    state, log_s = (0.0, 1.0), 0.0
    for i in range(m):
        p[i], dp[i], log_scale[i] = state[0], state[1], log_s
        a = c[i] * state[0] + s[i] * state[1]
        b = -q[i] * s[i] * state[0] + c[i] * state[1]
        r = math.hypot(a, b)  # > 0: the transfer matrix has determinant 1
        state, log_s = (a / r, b / r), log_s + math.log(r)
    return p, dp, log_scale, np.array(state)


def _zeros_in_step(p: float, dp: float, q: float, width: float, p_end: float) -> int:
    """Number of zeros of the local solution in (0, width]."""
    if q > 0:  # psi = R sin(phi + k t): count multiples of pi in (phi, phi + k width]
        k = math.sqrt(q)
        phi = math.atan2(p, dp / k)
        return math.floor((phi + k * width) / math.pi) - math.floor(phi / math.pi)
    if p == 0:  # psi'' = kappa^2 psi (or linear): at most one zero, and it is at t = 0
        return 0
    return int(p_end == 0 or (p_end > 0) != (p > 0))


def _count_nodes(edges: np.ndarray, values: np.ndarray, energy: float) -> int:
    """Sturm count: zeros of psi(x; E) in (lo, hi) = number of eigenvalues strictly below E."""
    _, widths, v = _substeps(edges, values, energy)
    p, dp, _, end = _propagate(widths, v, energy)
    p_next = np.append(p[1:], end[0])
    total = sum(
        _zeros_in_step(p[i], dp[i], energy - v[i], widths[i], p_next[i]) for i in range(len(p))
    )
    return total - int(end[0] == 0)  # a zero exactly at hi is not interior


def _bracket(edges: np.ndarray, values: np.ndarray, n: int) -> tuple[float, float]:
    """(a, b) with exactly n eigenvalues below a and n + 1 below b, so that a <= E_n < b."""
    length = edges[-1] - edges[0]
    a = float(values.min())  # no eigenvalue lies at or below min V
    b = float(values.max()) + ((n + 1.5) * math.pi / length) ** 2  # E_n <= max V + box E_n < b
    count_a, count_b = 0, _count_nodes(edges, values, b)
    for _ in range(_BISECT_MAX):
        if count_a == n and count_b == n + 1:
            return a, b
        mid = 0.5 * (a + b)
        if not a < mid < b:
            break
        count = _count_nodes(edges, values, mid)
        if count <= n:
            a, count_a = mid, count
        else:
            b, count_b = mid, count
    raise RuntimeError(
        f"could not isolate eigenvalue n={n} (counts {count_a}, {count_b} at {a}, {b})"
    )


def _matching_energy(edges: np.ndarray, values: np.ndarray, n: int) -> float:
    """E_n: Sturm bracket, then brentq on psi(hi; E) with a sub-step layout fixed over [a, b]."""
    a, b = _bracket(edges, values, n)
    _, widths, v = _substeps(edges, values, b)  # fixed layout: psi(hi; E) continuous on [a, b]

    def end_value(energy: float) -> float:
        return float(_propagate(widths, v, energy)[3][0])

    f_a, f_b = end_value(a), end_value(b)
    if f_a == 0:
        return a
    if f_a * f_b > 0:
        raise RuntimeError(f"no sign change of psi(hi) in [{a}, {b}] for n={n}")
    scale = max(abs(a), abs(b), (math.pi / (edges[-1] - edges[0])) ** 2)
    rtol = 4 * np.finfo(float).eps
    return float(brentq(end_value, a, b, xtol=1e-15 * scale, rtol=rtol, maxiter=500))


class _Shot:
    """The solution shot from the left wall (psi = 0, psi' = 1) at a fixed energy, evaluable
    anywhere as exp(log_ref) * value(x), with log_ref chosen by the caller to avoid overflow."""

    def __init__(self, edges: np.ndarray, values: np.ndarray, energy: float):
        self.starts, self.widths, self.v = _substeps(edges, values, energy)
        self.p, self.dp, self.log_scale, _ = _propagate(self.widths, self.v, energy)
        self.q = energy - self.v

    def peak(self) -> int:
        """Index of the sub-step start where |psi| is largest (p = 0 only at the wall)."""
        with np.errstate(divide="ignore"):
            return int(np.argmax(np.log(np.abs(self.p)) + self.log_scale))

    def value(self, x: np.ndarray, log_ref: float) -> np.ndarray:
        i = np.clip(np.searchsorted(self.starts, x, side="right") - 1, 0, len(self.starts) - 1)
        c, s = _cos_sin(self.q[i], x - self.starts[i])
        return np.exp(self.log_scale[i] - log_ref) * (c * self.p[i] + s * self.dp[i])


def _matching_psi(edges: np.ndarray, values: np.ndarray, energy: float) -> Wavefunction:
    """Vectorised, normalised analytic wavefunction at the given eigenvalue.

    Shooting from one wall amplifies the eigenvalue's rounding error by the growing exponential
    of every forbidden region it crosses, so psi is shot from both walls and joined where the
    left solution peaks: each side is used only where it is accurate.
    """
    lo, hi = edges[0], edges[-1]
    left = _Shot(edges, values, energy)
    right = _Shot(lo + hi - edges[::-1], values[::-1], energy)  # mirrored: x -> lo + hi - x
    k = left.peak()
    x_m = left.starts[k]
    log_ref = left.log_scale[k]
    at_m = left.value(np.array([x_m]), log_ref)[0]
    right_ref = right.log_scale[right.peak()]
    ratio = at_m / right.value(np.array([lo + hi - x_m]), right_ref)[0]

    def raw(x: np.ndarray) -> np.ndarray:
        return np.where(
            x <= x_m, left.value(x, log_ref), ratio * right.value(lo + hi - x, right_ref)
        )

    nodes, weights = np.polynomial.legendre.leggauss(_GAUSS_NODES)
    ends = np.append(left.starts[1:], hi)
    gx = (0.5 * (nodes[None, :] + 1) * (ends - left.starts)[:, None] + left.starts[:, None]).ravel()
    gw = (0.5 * weights[None, :] * (ends - left.starts)[:, None]).ravel()
    norm = math.sqrt(float(np.sum(gw * raw(gx) ** 2)))

    def psi(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        return np.where((x >= lo) & (x <= hi), raw(x) / norm, 0.0)

    return psi


def piecewise_constant(segments: Sequence[Segment], n: int) -> Eigenpair:
    """Exact eigenpair n for a piecewise-constant V given as contiguous (x_left, x_right, V) pieces.

    The ODE is integrated analytically across the pieces (cos/sin, cosh/sinh or linear), the
    eigenvalue is isolated by Sturm node counting and found with brentq to ~1e-13 relative.
    """
    edges, values = _check_segments(segments)
    n = check_n(n)
    energy = _matching_energy(edges, values, n)
    return Eigenpair(energy=energy, psi=_matching_psi(edges, values, energy), method="matching")


# --------------------------------------------------------------------------- harmonic oscillator


def harmonic(omega: float, n: int) -> Eigenpair:
    """V = omega^2 x^2 on the whole line: E_n = omega (2n + 1), psi_n a Hermite function.

    In a box [lo, hi] the walls shift E_n by about exp(-omega lo^2); on the default [-8, 8] that is
    far below float64 resolution. Sign convention as elsewhere: psi rises from the left wall.
    """
    n = check_n(n)
    if not omega > 0:
        raise ValueError(f"omega={omega} must be > 0")
    norm = omega**0.25 / math.sqrt(2.0**n * math.factorial(n) * math.sqrt(math.pi))
    sign = (-1.0) ** n

    def psi(x: np.ndarray) -> np.ndarray:
        y = math.sqrt(omega) * np.asarray(x, dtype=float)
        h_prev, h = np.zeros_like(y), np.ones_like(y)  # H_{-1}, H_0
        for k in range(n):
            h_prev, h = h, 2.0 * y * h - 2.0 * k * h_prev
        return sign * norm * h * np.exp(-0.5 * y**2)

    return Eigenpair(energy=omega * (2 * n + 1), psi=psi, method="closed_form")
