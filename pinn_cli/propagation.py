"""Reference solutions of the time-dependent Schrödinger equation in 1-D, by eigenbasis expansion.

Units hbar^2/2m = 1: i psi_t = -psi_xx + V(x) psi on [lo, hi], psi(lo, t) = psi(hi, t) = 0,
psi(x, 0) = psi0(x). With the eigenpairs (E_k, phi_k) of H = -d^2/dx^2 + V the solution is

    psi(x, t) = sum_k c_k exp(-i E_k t) phi_k(x),    c_k = <phi_k, psi0>,

exact in t: the only errors are the eigenpairs' and the truncation to K states, and the latter is
measured, not assumed: ``truncation = ||psi0 - sum_k c_k phi_k|| / ||psi0||`` on a quadrature that
resolves both psi0 and the states. Since the evolution is unitary, that bound holds at every t.

The eigenpairs (``eigenbasis``) come from the most accurate method the potential allows:

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
``reference.finite_difference`` (Richardson) to its own ~1e-10; orthonormality of every basis to
3e-13 or better (the closed-form/Galerkin mix of the oscillator; ~4e-14 for the others).

Measured accuracy of ``propagator`` (tests/test_propagation.py): a coherent state on [-8, 8]
(32 states) to 4e-12 of its closed form over a period, limited by its own 2e-11 at the wall; a
superposition of infinite-well states to 5e-15; a Gaussian packet on a barrier (128 states,
truncation 4e-14) agrees with Crank-Nicolson exactly as far as CN's own, measured, error.

Every state is real, normalised on [lo, hi], zero outside it, and positive on its first lobe
(psi'(lo) > 0, as in ``reference``). ``coherent_state`` and ``well_superposition`` are closed-form
solutions against which the propagation is tested. NumPy/SciPy only.
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
_FIRST_K = 32  # states tried first by `propagator`; doubled until the truncation is below tol
_PSI0_NODES = (64, 128, 256, 512, 1024)  # Gauss-Legendre nodes per piece tried for psi0
_PSI0_TAIL = 1e-13  # psi0 is resolved when its top Legendre coefficients are below this
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


@dataclass(frozen=True, eq=False)
class Propagator:
    """psi(x, t) = sum_k c_k exp(-i E_k t) phi_k(x), with its measured truncation error."""

    basis: Eigenbasis
    coefficients: np.ndarray  # (K,) complex, c_k = <phi_k, psi0>
    truncation: float  # ||psi0 - sum_k c_k phi_k|| / ||psi0||, holds at every t

    def __call__(self, x: np.ndarray, t: np.ndarray) -> np.ndarray:
        """(T, X) complex: the wavefunction at times t (T,) and points x (X,)."""
        t = np.atleast_1d(np.asarray(t, dtype=float))
        phases = np.exp(-1j * np.outer(t, self.basis.energies)) * self.coefficients
        return phases @ self.basis.states(x).T

    def energy(self) -> float:
        """<H> = sum |c_k|^2 E_k / sum |c_k|^2, conserved by the evolution."""
        weights = np.abs(self.coefficients) ** 2
        return float(np.sum(weights * self.basis.energies) / np.sum(weights))


# --------------------------------------------------------------------------- checks and helpers


def _check_potential(potential) -> None:
    if getattr(potential, "dim", 1) != 1:
        raise ValueError(f"propagation is 1-D only; potential {potential.name!r} is not")


def _check_count(count: int, name: str = "count") -> int:
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)):
        raise ValueError(f"{name} must be an integer >= 1, got {count!r}")
    if count < 1:
        raise ValueError(f"{name} must be >= 1 (the number of states), got {count}")
    return int(count)


def _gauss(pieces, nodes: Callable[[float], int]) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights on each piece, nodes(length) of them, in increasing x."""
    xs, ws = [], []
    for a, b in pieces:
        t, w = _leggauss(nodes(b - a))
        xs.append(a + 0.5 * (b - a) * (t + 1))
        ws.append(0.5 * (b - a) * w)
    return np.concatenate(xs), np.concatenate(ws)


def _sine(lo: float, hi: float, x: np.ndarray, size: int) -> np.ndarray:
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
    return Eigenbasis(energies, "closed_form", lambda x: _sine(lo, hi, x, count))


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
def _leggauss(n: int) -> tuple[np.ndarray, np.ndarray]:
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
    xi, w = _leggauss(math.ceil(1.5 * size) + 64)
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
    xi, w = _leggauss(len(v1) + 2)
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
    _check_potential(potential)
    count = _check_count(count)
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


# --------------------------------------------------------------------------- propagation


def _check_tol(tol: float) -> float:
    if isinstance(tol, bool) or not isinstance(tol, (int, float, np.floating)):
        raise ValueError(f"tol must be a number > 0, got {tol!r}")
    if not (math.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be a finite number > 0 (the truncation bound), got {tol}")
    return float(tol)


def _sample(psi0: Callable, x: np.ndarray) -> np.ndarray:
    """psi0 at x as a complex (X,) array, refused with a clear message if it is not one."""
    values = np.asarray(psi0(x))
    if values.shape != x.shape:
        raise ValueError(
            f"psi0 must map x of shape {x.shape} to values of that shape, got {values.shape}"
        )
    values = values.astype(complex)
    if not np.all(np.isfinite(values)):
        raise ValueError("psi0 returned non-finite values on the domain")
    return values


def _legendre_tail(t: np.ndarray, w: np.ndarray, f: np.ndarray) -> float:
    """Largest of the top quarter of f's Legendre coefficients on one piece (nodes t, weights w)."""
    q = len(t)
    coefficients = (np.polynomial.legendre.legvander(t, q - 1).T @ (w * f)) * (np.arange(q) + 0.5)
    return float(np.abs(coefficients[3 * q // 4 :]).max())


def _psi0_nodes(potential, psi0: Callable) -> int:
    """Gauss-Legendre nodes per piece that resolve psi0 (its Legendre coefficients decay below
    _PSI0_TAIL of its max on every piece); the largest tried if none does."""
    for q in _PSI0_NODES:
        t, w = _leggauss(q)
        pieces = potential.pieces
        values = [_sample(psi0, a + 0.5 * (b - a) * (t + 1)) for a, b in pieces]
        scale = max(np.abs(f).max() for f in values)
        if scale == 0:
            raise ValueError("psi0 is zero on the whole domain; nothing to propagate")
        if all(_legendre_tail(t, w, f) <= _PSI0_TAIL * scale for f in values):
            return q
    return _PSI0_NODES[-1]


def _projection_rule(potential, basis: Eigenbasis, q_psi0: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights exact (to rounding) for phi_j phi_k and phi_k psi0 on every piece."""
    probe, _ = _gauss(potential.pieces, lambda piece: q_psi0)
    v_min = float(np.min(np.asarray(potential(probe), dtype=float) * np.ones_like(probe)))
    k_max = math.sqrt(max(float(basis.energies[-1]) - v_min, 1.0))
    return _gauss(potential.pieces, lambda piece: q_psi0 + math.ceil(0.75 * k_max * piece) + 32)


def _project(basis: Eigenbasis, x: np.ndarray, w: np.ndarray, f: np.ndarray) -> tuple:
    """(c, truncation): coefficients <phi_k, psi0> and ||psi0 - sum c_k phi_k|| / ||psi0||."""
    phi = basis.states(x)
    c = phi.T @ (w * f)
    residual = f - phi @ c
    norm = math.sqrt(float(np.sum(w * np.abs(f) ** 2)))
    return c, math.sqrt(float(np.sum(w * np.abs(residual) ** 2))) / norm


def propagator(
    potential, psi0: Callable, *, tol: float = 1e-10, max_states: int = 600
) -> Propagator:
    """The eigenbasis solution for psi(x, 0) = psi0(x) (a callable x (X,) -> complex (X,)).

    psi0 is projected on the lowest K eigenstates by Gauss-Legendre quadrature split at the
    potential's breakpoints, with enough nodes for psi0 (its Legendre coefficients on every piece
    decay below 1e-13) and for the states. K starts at 32 and doubles until the truncation
    ||psi0 - sum c_k phi_k|| / ||psi0|| is below tol, or K reaches max_states: then the truncation
    achieved is what ``Propagator.truncation`` records (check it; psi0 must vanish at the walls and
    be smooth for the expansion to converge fast).
    """
    _check_potential(potential)
    tol = _check_tol(tol)
    max_states = _check_count(max_states, "max_states")
    if not callable(psi0):
        raise ValueError(f"psi0 must be a callable x -> psi0(x), got {type(psi0).__name__}")
    q_psi0 = _psi0_nodes(potential, psi0)
    count = min(_FIRST_K, max_states)
    while True:
        basis = eigenbasis(potential, count)
        x, w = _projection_rule(potential, basis, q_psi0)
        c, truncation = _project(basis, x, w, _sample(psi0, x))
        if truncation < tol or count == max_states:
            return Propagator(basis, c, truncation)
        count = min(2 * count, max_states)


# --------------------------------------------------------------------------- closed-form solutions


def coherent_state(omega: float, x0: float, x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(T, X): the oscillator's ground state displaced to x0 at rest at t = 0, exactly.

    H = -d^2/dx^2 + omega^2 x^2 is hbar = 1, m = 1/2, frequency 2 omega: with y = sqrt(omega) x
    and alpha(t) = alpha0 exp(-2 i omega t), alpha0 = sqrt(omega / 2) x0,
    psi = (omega/pi)^(1/4) exp(-i omega t - y^2/2 + sqrt(2) alpha y - alpha^2/2 - alpha0^2/2),
    the Hermite generating function applied to sum_n alpha^n / sqrt(n!) psi_n exp(-i E_n t). The
    centre moves as x0 cos(2 omega t); the global phase is exact.
    """
    if not (math.isfinite(omega) and omega > 0):
        raise ValueError(f"omega must be a finite number > 0, got {omega}")
    y = math.sqrt(omega) * np.asarray(x, dtype=float).ravel()[None, :]
    t = np.atleast_1d(np.asarray(t, dtype=float)).ravel()[:, None]
    alpha0 = math.sqrt(0.5 * omega) * x0
    alpha = alpha0 * np.exp(-2j * omega * t)
    exponent = -1j * omega * t - 0.5 * y**2 + math.sqrt(2.0) * alpha * y
    return (omega / math.pi) ** 0.25 * np.exp(exponent - 0.5 * alpha**2 - 0.5 * alpha0**2)


def well_superposition(domain, coefficients, x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(T, X): sum_n c_n phi_n(x) exp(-i E_n t) in the infinite well on domain, with the
    coefficients (states 0, 1, ...) normalised; phi_n = sqrt(2/L) sin((n+1) pi (x - lo)/L),
    E_n = (n+1)^2 pi^2 / L^2."""
    lo, hi = (float(v) for v in domain)
    if not lo < hi:
        raise ValueError(f"domain must be (lo, hi) with lo < hi, got {domain!r}")
    c = np.asarray(coefficients, dtype=complex).ravel()
    if c.size == 0 or not np.all(np.isfinite(c)) or not np.any(c):
        raise ValueError(f"coefficients must be finite and not all zero, got {coefficients!r}")
    c = c / np.linalg.norm(c)
    energies = (np.arange(1, c.size + 1) * math.pi / (hi - lo)) ** 2
    t = np.atleast_1d(np.asarray(t, dtype=float)).ravel()
    phases = np.exp(-1j * np.outer(t, energies)) * c
    return phases @ _sine(lo, hi, np.asarray(x, dtype=float).ravel(), c.size).T
