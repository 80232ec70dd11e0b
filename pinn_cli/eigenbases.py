"""Eigenpairs of H = -d^2/dx^2 + V on a 1-D box, psi = 0 at the walls (units hbar^2/2m = 1):
the reference for smooth V and the basis the time-dependent reference propagates in
(propagation.py).

``eigenbasis`` takes them from the most accurate method the potential allows:

* a flat box (one value of V): the closed form sqrt(2/L) sin((n+1) pi (x - lo)/L) (exact);
* the oscillator V = omega^2 x^2: Hermite functions (exact on the whole line) for the low states
  whose value at both walls is below 1e-11 (a wall changes psi by about |psi(wall)|/sqrt(2 kappa)
  < 1e-11 and E by about 2 kappa psi(wall)^2 < 1e-20; on the default [-8, 8] that is n <= 3); the
  higher states feel the walls (n = 30: E = 61.3836..., not 61) and come from the Galerkin method;
* any other piecewise-constant V: exact matching, ``reference.piecewise_constant`` (~1e-13);
* smooth V (formula, and the oscillator's high states): Legendre Galerkin on the box, in Shen's
  basis (L_k - L_{k+2}) / sqrt(4k + 6), which vanishes at the walls and makes the kinetic matrix
  the identity; V's matrix by Gauss-Legendre; solved through the inverse operator (well
  conditioned, see ``_galerkin_solve``); the basis doubled until two sizes agree to 1e-11 in the
  energies and 1e-9 in the states. A polynomial basis converges spectrally whatever V does at the
  walls. The box's own sine basis does not: its odd extension of a state has a jump in the fourth
  derivative where V'(wall) psi'(wall) != 0, so the oscillator's high states on [-8, 8] converge
  only like N^-4.5 (still 1e-9 off at N = 2048, where rounding, ~eps N^2, has reached 1e-11).

Measured accuracy of ``eigenbasis``: the oscillator's levels omega (2n + 1) from the Galerkin path
(formula "x**2" on [-10, 10]) and the quartic oscillator's tabulated levels (on [-5, 5]) to ~1e-14
relative, ~1e-13 absolute up to E ~ 100; the oscillator's wall-affected levels agree with
``finite_differences.finite_difference`` (Richardson) to its own ~1e-10; orthonormality of every
basis to 3e-13 or better (the closed-form/Galerkin mix of the oscillator; ~4e-14 for the others).

Every state is real, normalised on [lo, hi], zero outside it, and positive on its first lobe
(psi'(lo) > 0, as in ``reference``). NumPy/SciPy only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from scipy.linalg import eigh
from scipy.special import roots_legendre

from . import reference

StatesFn = Callable[[np.ndarray], np.ndarray]

_ENERGY_RTOL = 1e-11  # Galerkin: energies with N and 2N basis functions agree (rel., abs < 1)
_STATE_TOL = 1e-9  # ... and so do the states (L2 norm of the difference)
_GALERKIN_START = 64  # smallest Legendre basis tried
_GALERKIN_MAX = 4096  # largest Legendre basis tried before giving up
_WALL_TAIL = 1e-11  # |Hermite function| at a wall below which the closed form is used in a box
_SIGN_FLOOR = 1e-6  # first |psi| above this fraction of its max fixes the sign (first lobe > 0)
_CHUNK = 2048  # nodes per Legendre Vandermonde block when evaluating states (16 MB at 1024)


@dataclass(frozen=True, eq=False)
class Eigenbasis:
    """The lowest K eigenpairs of H on the potential's box; ``states(x)`` evaluates them."""

    energies: np.ndarray  # (K,) increasing
    # "closed_form" | "matching" | "legendre_galerkin" | "closed_form+legendre_galerkin"
    method: str
    _evaluate: StatesFn = field(repr=False)

    def states(self, x: np.ndarray) -> np.ndarray:
        """(X, K) real: the normalised states at x (X,), zero outside the domain."""
        return self._evaluate(np.asarray(x, dtype=float).ravel())


# --------------------------------------------------------------------------- checks and helpers


def check_potential(potential) -> None:
    if getattr(potential, "dim", 1) != 1:
        raise ValueError(f"the eigenbasis is 1-D only; potential {potential.name!r} is not")


def check_count(count: int, name: str = "count") -> int:
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)):
        raise ValueError(f"{name} must be an integer >= 1, got {count!r}")
    if count < 1:
        raise ValueError(f"{name} must be >= 1 (the number of states), got {count}")
    return int(count)


def gauss_rule(pieces, nodes: Callable[[float], int]) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights on each piece, nodes(length) of them, in increasing x."""
    xs, ws = [], []
    for a, b in pieces:
        t, w = leggauss(nodes(b - a))
        xs.append(a + 0.5 * (b - a) * (t + 1))
        ws.append(0.5 * (b - a) * w)
    return np.concatenate(xs), np.concatenate(ws)


def sine_basis(lo: float, hi: float, x: np.ndarray, size: int) -> np.ndarray:
    """(X, size): the box's orthonormal sine functions j = 1..size at x, zero outside."""
    length = hi - lo
    angles = np.outer(x - lo, np.arange(1, size + 1)) * (math.pi / length)
    inside = ((x >= lo) & (x <= hi))[:, None]
    return np.where(inside, math.sqrt(2.0 / length) * np.sin(angles), 0.0)


def _signs(values: np.ndarray) -> np.ndarray:
    """(K,) +-1 making each column positive on its first lobe (its first |value| above the
    _SIGN_FLOOR fraction of its max, on increasing x); rounding noise near a wall is ignored."""
    big = np.abs(values) > _SIGN_FLOOR * np.abs(values).max(axis=0)
    first = np.argmax(big, axis=0)
    return np.where(values[first, np.arange(values.shape[1])] > 0, 1.0, -1.0)


# --------------------------------------------------------------------------- closed forms


def _box_basis(potential, count: int) -> Eigenbasis:
    lo, hi = potential.domain
    n = np.arange(1, count + 1)
    energies = (n * math.pi / (hi - lo)) ** 2 + potential.segments[0][2]
    return Eigenbasis(energies, "closed_form", lambda x: sine_basis(lo, hi, x, count))


def _hermite(omega: float, x: np.ndarray, count: int) -> np.ndarray:
    """(X, count): Hermite functions (-1)^n psi_n(x) of V = omega^2 x^2 (as reference.harmonic).

    The normalised three-term recurrence runs on psi_n exp(y^2/2) with a running log scale, so
    neither H_n(y) overflows nor exp(-y^2/2) underflows before the product is formed."""
    y = math.sqrt(omega) * x
    out = np.empty((len(x), count))
    prev, cur = np.zeros_like(y), np.full_like(y, math.pi**-0.25)
    log_scale = -0.5 * y * y + 0.25 * math.log(omega)
    for n in range(count):
        out[:, n] = (-1.0) ** n * cur * np.exp(log_scale)
        prev, cur = cur, math.sqrt(2.0 / (n + 1)) * y * cur - math.sqrt(n / (n + 1)) * prev
        big = np.abs(cur) > 1e100
        prev, cur = np.where(big, prev * 1e-100, prev), np.where(big, cur * 1e-100, cur)
        log_scale = log_scale + big * (100 * math.log(10.0))
    return out


def _oscillator_closed_count(potential, count: int) -> int:
    """How many of the lowest states the whole-line Hermite functions give to ~1e-11 in the box:
    both walls beyond the classical turning point and |psi_n| < _WALL_TAIL there."""
    omega, (lo, hi) = potential.omega, potential.domain
    walls = np.array([lo, hi])
    tails = np.abs(_hermite(omega, walls, count)) / omega**0.25
    turning = np.sqrt((2 * np.arange(count) + 1) / omega)
    ok = (lo < -turning) & (hi > turning) & np.all(tails < _WALL_TAIL, axis=0)
    return count if ok.all() else int(np.argmin(ok))


def _oscillator_basis(potential, count: int) -> Eigenbasis:
    omega, (lo, hi) = potential.omega, potential.domain
    closed = _oscillator_closed_count(potential, count)
    exact = omega * (2 * np.arange(closed) + 1.0)

    def hermite(x: np.ndarray) -> np.ndarray:
        return np.where(((x >= lo) & (x <= hi))[:, None], _hermite(omega, x, closed), 0.0)

    if closed == count:
        return Eigenbasis(exact, "closed_form", hermite)
    high = _galerkin(potential, count)
    if closed == 0:
        return high

    def states(x: np.ndarray) -> np.ndarray:
        return np.hstack([hermite(x), high.states(x)[:, closed:]])

    energies = np.concatenate([exact, high.energies[closed:]])
    return Eigenbasis(energies, "closed_form+legendre_galerkin", states)


# --------------------------------------------------------------------------- exact matching


@lru_cache(maxsize=8192)
def _matching_pair(segments: tuple, n: int) -> reference.Eigenpair:
    return reference.piecewise_constant(segments, n)


def _matching_basis(potential, count: int) -> Eigenbasis:
    pairs = [_matching_pair(potential.segments, n) for n in range(count)]
    energies = np.array([pair.energy for pair in pairs])

    def states(x: np.ndarray) -> np.ndarray:
        return np.stack([pair.psi(x) for pair in pairs], axis=1)

    return Eigenbasis(energies, "matching", states)


# --------------------------------------------------------------------------- Legendre Galerkin


@lru_cache(maxsize=16)
def leggauss(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights on [-1, 1] (cached: the Galerkin loop reuses them)."""
    return roots_legendre(n)


def _shen(xi: np.ndarray, size: int) -> np.ndarray:
    """(X, size): (L_k - L_{k+2}) / sqrt(4k + 6) on [-1, 1], k < size: zero at +-1, and
    int phi_j' phi_k' = delta_jk (Shen's basis)."""
    legendre = np.polynomial.legendre.legvander(xi, size + 1)
    return (legendre[:, :size] - legendre[:, 2:]) / np.sqrt(4 * np.arange(size) + 6.0)


def _galerkin_solve(potential, count: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Lowest `count` eigenpairs in the first `size` Shen functions: (E, coefficients).

    The stiffness is exactly (2/L) I and V's matrix is by Gauss-Legendre (exact for polynomial V
    and to rounding for smooth V). K = H - s B with s below min V is symmetric positive definite
    and well conditioned, so the problem is solved as B u = mu K u for the largest mu = 1/(E - s):
    the inverse operator, whose top eigenpairs LAPACK resolves to ~eps (H's own norm grows like
    size^4, which would cost the low energies eps * size^4). E is then the Rayleigh quotient,
    evaluated as sums of positive terms (no cancellation).

    For V symmetric about the domain's centre the even and odd Shen functions (phi_k has parity
    (-1)^k) are solved as two problems: coupled only by the quadrature's rounding, a pair of
    levels a tunnel splitting apart mixed by rounding / splitting (x^4 - 12 x^2 on [-5, 5],
    states 0 and 1 3.5e-7 apart: the states moved by 1e-8 between basis sizes, never met the
    1e-9 test, and the reference fell back to finite differences, psi good to ~1e-5)."""
    lo, hi = potential.domain
    length = hi - lo
    xi, w = leggauss(math.ceil(1.5 * size) + 64)
    basis = _shen(xi, size)
    v = np.asarray(potential(lo + 0.5 * length * (xi + 1)), dtype=float) * np.ones_like(xi)
    shift = float(v.min()) - (math.pi / length) ** 2
    weighted = 0.5 * length * w[:, None] * basis
    k = basis.T @ ((v - shift)[:, None] * weighted)
    k[np.diag_indices(size)] += 2.0 / length
    mass = basis.T @ weighted
    split = potential.is_symmetric()
    blocks = [np.arange(p, size, 2) for p in (0, 1)] if split else [np.arange(size)]
    mus, columns = [], []
    for idx in blocks:
        n = min(count, len(idx))
        sub = np.ix_(idx, idx)
        mu, vec = eigh(mass[sub], k[sub], subset_by_index=[len(idx) - n, len(idx) - 1])
        full = np.zeros((size, n))
        full[idx] = vec
        mus.append(mu)
        columns.append(full)
    order = np.argsort(-np.concatenate(mus), kind="stable")[:count]  # largest mu: lowest E
    vectors = np.concatenate(columns, axis=1)[:, order]
    values = basis @ vectors
    norm2 = 0.5 * length * (w @ values**2)
    kinetic = 2.0 / length * np.sum(vectors**2, axis=0)
    energies = (kinetic + 0.5 * length * ((w * (v - shift)) @ values**2)) / norm2 + shift
    return energies, vectors * (_signs(values) / np.sqrt(norm2))


def _galerkin_agree(coarse: tuple, fine: tuple, length: float) -> bool:
    """Energies to _ENERGY_RTOL and states (exact L2 norm of the difference) to _STATE_TOL."""
    (e0, v0), (e1, v1) = coarse, fine
    if np.any(np.abs(e1 - e0) > _ENERGY_RTOL * np.maximum(1.0, np.abs(e1))):
        return False
    diff = np.zeros_like(v1)
    diff[: len(v0)] = v0
    diff -= v1
    xi, w = leggauss(len(v1) + 2)
    values = _shen(xi, len(v1)) @ diff
    return bool(np.all(np.sqrt(0.5 * length * (w @ values**2)) < _STATE_TOL))


def _legendre_basis(
    domain: tuple[float, float], energies: np.ndarray, vectors: np.ndarray
) -> Eigenbasis:
    """The Eigenbasis of the states sum_k vectors[k, n] phi_k(xi(x)), zero outside the domain."""
    lo, hi = domain
    size = len(vectors)
    # the states' Legendre coefficients: phi_k = (L_k - L_{k+2}) / sqrt(4k + 6)
    shen = vectors / np.sqrt(4 * np.arange(size) + 6.0)[:, None]
    coefficients = np.zeros((size + 2, vectors.shape[1]))
    coefficients[:size] += shen
    coefficients[2:] -= shen

    def states(x: np.ndarray) -> np.ndarray:
        inside = ((x >= lo) & (x <= hi))[:, None]
        xi = np.clip(2.0 * (x - lo) / (hi - lo) - 1.0, -1.0, 1.0)
        values = np.empty((xi.size, coefficients.shape[1]))
        for start in range(0, xi.size, _CHUNK):  # the Vandermonde rows a chunk at a time
            part = slice(start, start + _CHUNK)
            values[part] = np.polynomial.legendre.legvander(xi[part], size + 1) @ coefficients
        return np.where(inside, values, 0.0)

    return Eigenbasis(energies, "legendre_galerkin", states)


def _galerkin(potential, count: int, largest: int = _GALERKIN_MAX) -> Eigenbasis:
    """Legendre Galerkin, the basis doubled until two sizes agree; the larger one is kept."""
    size = max(_GALERKIN_START, 2 * count)
    coarse = _galerkin_solve(potential, count, size)
    while 2 * size <= largest:
        size *= 2
        fine = _galerkin_solve(potential, count, size)
        if _galerkin_agree(coarse, fine, potential.domain[1] - potential.domain[0]):
            return _legendre_basis(potential.domain, *fine)
        coarse = fine
    raise RuntimeError(
        f"the Legendre Galerkin method did not converge for {count} states of potential "
        f"{potential.name!r} with up to {largest} basis functions (is V smooth?)"
    )


def eigenbasis(potential, count: int, largest: int = _GALERKIN_MAX) -> Eigenbasis:
    """The lowest `count` eigenstates of a 1-D potential, from the most accurate method it allows.

    Flat box: closed form (exact). Oscillator (potential.omega set): Hermite functions for the
    states that do not feel the walls, Legendre Galerkin for the rest. Other piecewise-constant
    V: exact matching (~1e-13 relative). Smooth V: Legendre Galerkin converged to 1e-11 in the
    energies and 1e-9 in the states (measured against known levels: ~1e-14 relative; against
    finite differences for wall-affected states: ~1e-10, FD's own accuracy; orthonormality
    ~1e-13). Raises ValueError for count < 1, RuntimeError if the Galerkin method does not
    converge within `largest` (4096) basis functions (V not smooth).
    """
    check_potential(potential)
    count = check_count(count)
    if potential.omega is not None:
        return _oscillator_basis(potential, count)
    if potential.piecewise_constant and len({v for _, _, v in potential.segments}) == 1:
        return _box_basis(potential, count)
    if potential.piecewise_constant:
        return _matching_basis(potential, count)
    if potential.breakpoints:
        raise ValueError(
            f"potential {potential.name!r} has a smooth part and jumps at "
            f"{list(potential.breakpoints)}; eigenbasis handles piecewise-constant or smooth V"
        )
    return _galerkin(potential, count, largest)
