"""Reference eigenpairs of -lap psi + V(x, y) psi = E psi in 2-D, psi = 0 on the boundary.

Units hbar^2/2m = 1. Every solver returns the lowest k states as a `Spectrum2D`: energies ascending
and counted with multiplicity, and one vectorised psi for all of them, orthonormal on the domain.
Within a degenerate level the basis is arbitrary (but deterministic): compare subspaces, grouped by
`levels`. NumPy/SciPy only, like `reference`:

* ``box2d``, ``harmonic2d``, ``disk``: closed forms (products of sines or Hermite functions; Bessel
  functions times cos/sin(m theta)); ``harmonic2d`` in a box whose walls reach psi: products of
  the 1-D oscillators' Galerkin states in their boxes.
* ``separable2d``: V = Vx(x) + Vy(y) piecewise constant; sums and products of the exact 1-D matching
  eigenpairs of `reference.piecewise_constant`.
* ``spectral_element``: any V on a rectangle, by a tensor-product spectral element method whose
  elements are aligned with (and graded towards) the lines where V jumps; the polynomial degree is
  raised until the energies stop changing, and the change is reported as the accuracy.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.sparse as sp
from scipy.linalg import eigh
from scipy.sparse.linalg import LinearOperator, eigsh, splu
from scipy.special import eval_legendre, jn_zeros, jv, roots_jacobi

from .reference import (
    Eigenpair,
    Segment,
    _check_domain,
    harmonic,
    infinite_well,
    piecewise_constant,
)

Wavefunctions = Callable[[np.ndarray], np.ndarray]
Rect = tuple[tuple[float, float], tuple[float, float]]

_EPS = np.finfo(float).eps
_CLOSED_FORM_ACCURACY = 4 * _EPS  # a sum of two correctly rounded terms
_DISK_ACCURACY = 4e-15  # jn_zeros: |J_m(j)/J_m'(j)| / j <= 7e-16 measured for m, s < 30
_MATCHING_ACCURACY = 1e-13  # reference.piecewise_constant's stated relative accuracy
_GALERKIN_ACCURACY = 1e-11  # propagation.eigenbasis's Legendre Galerkin, converged in the energies


@dataclass(frozen=True)
class Spectrum2D:
    """The lowest k states: energies (k,) ascending and psi(points (N, 2)) -> (k, N)."""

    energies: np.ndarray
    psi: Wavefunctions
    method: str  # "closed_form" | "matching" | "spectral_element"
    accuracy: float  # relative energy accuracy: rounding for closed forms, measured otherwise


def levels(energies: Sequence[float], rtol: float = 1e-9) -> list[list[int]]:
    """Indices of `energies` grouped into (near-)degenerate levels, lowest level first.

    A level collects every energy within rtol (relative) of its lowest member; comparing with the
    lowest member rather than the previous one keeps a dense ladder from chaining into one level.
    """
    values = np.asarray(energies, dtype=float).ravel()
    groups: list[list[int]] = []
    start = 0.0
    for i in np.argsort(values, kind="stable"):
        if not groups or values[i] - start > rtol * max(abs(values[i]), abs(start)):
            groups.append([])
            start = values[i]
        groups[-1].append(int(i))
    return groups


# --------------------------------------------------------------------------- input validation


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k (the number of states) must be an integer >= 1, got {k!r}")
    return int(k)


def _check_rect(domain) -> Rect:
    try:
        x_range, y_range = domain
    except (TypeError, ValueError) as err:
        raise ValueError(f"domain must be ((x0, x1), (y0, y1)), got {domain!r}") from err
    return (
        _check_domain(x_range, "the x range of domain"),
        _check_domain(y_range, "the y range of domain"),
    )


def _check_positive(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number > 0, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _check_points(points) -> tuple[np.ndarray, np.ndarray]:
    points = np.asarray(points, dtype=float)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points must have shape (N, 2), got {points.shape}")
    return points[:, 0], points[:, 1]


# --------------------------------------------------------------------------- closed forms


def _lowest_sums(ex: np.ndarray, ey: np.ndarray, k: int):
    """The k lowest sums ex[i] + ey[j] (ties ordered by the x index, then y) and their (i, j).

    The caller must pass enough 1-D energies: every pair among the k lowest sums must be present.
    """
    i, j = (a.ravel() for a in np.meshgrid(np.arange(len(ex)), np.arange(len(ey)), indexing="ij"))
    sums = ex[i] + ey[j]
    pick = np.lexsort((j, i, sums))[:k]
    return sums[pick], i[pick], j[pick]


def _products(
    xs: Sequence[Eigenpair], ys: Sequence[Eigenpair], k: int
) -> tuple[np.ndarray, Wavefunctions]:
    """The k lowest sums of 1-D energies (`_lowest_sums`) and the products of their states."""
    ex, ey = (np.array([s.energy for s in axis]) for axis in (xs, ys))
    sums, i, j = _lowest_sums(ex, ey, k)
    pairs = [(xs[a].psi, ys[b].psi) for a, b in zip(i, j)]

    def psi(points: np.ndarray) -> np.ndarray:
        x, y = _check_points(points)
        return np.stack([fx(x) * fy(y) for fx, fy in pairs])

    return sums, psi


def box2d(domain: Rect, k: int) -> Spectrum2D:
    """V = 0 in the rectangle: E = pi^2 (n^2/Lx^2 + m^2/Ly^2), psi = products of sines.

    k sines per axis suffice: state (n, m) has at least max(n, m) states at or below it.
    """
    (x_range, y_range), k = _check_rect(domain), _check_k(k)
    xs, ys = ([infinite_well(axis, n) for n in range(k)] for axis in (x_range, y_range))
    return Spectrum2D(*_products(xs, ys, k), "closed_form", _CLOSED_FORM_ACCURACY)


def harmonic2d(omega, k: int, domain: Rect | None = None) -> Spectrum2D:
    """V = wx^2 x^2 + wy^2 y^2 (omega = w or (wx, wy)). On the plane (no `domain`): E = wx(2n+1)
    + wy(2m+1), psi = products of the Hermite functions of `reference.harmonic`.

    In the rectangle `domain` with psi = 0 on its sides, V separates into two 1-D oscillators in
    boxes, each solved by `propagation.eigenbasis`: Hermite functions for the states whose tails
    are below 1e-11 at both walls, Legendre Galerkin (converged to 1e-11) for the rest. The plane's
    closed form is wrong where the walls reach psi: omega = (0.5, 1) in the default [-6, 6]^2 has
    its ground state at 1.50000007075, 4.7e-8 above the plane's 1.5.
    """
    k = _check_k(k)
    pair = (omega, omega) if np.ndim(omega) == 0 else tuple(omega)
    if len(pair) != 2:
        raise ValueError(f"omega must be a number or a pair (wx, wy), got {omega!r}")
    ws = [_check_positive(w, "omega") for w in pair]
    if domain is None:
        xs, ys = ([harmonic(w, n) for n in range(k)] for w in ws)
        return Spectrum2D(*_products(xs, ys, k), "closed_form", _CLOSED_FORM_ACCURACY)
    from . import potentials, propagation

    axes = [potentials.harmonic(axis, w) for axis, w in zip(_check_rect(domain), ws)]
    bases = [propagation.eigenbasis(axis, k) for axis in axes]
    energies, psi, (i, j) = _basis_products(*bases, k)
    plane = ws[0] * (2 * i + 1.0) + ws[1] * (2 * j + 1.0)
    if np.all(np.abs(energies - plane) <= _GALERKIN_ACCURACY * plane):  # walls move no level
        return Spectrum2D(plane, psi, "closed_form", _CLOSED_FORM_ACCURACY)
    return Spectrum2D(energies, psi, "galerkin", _GALERKIN_ACCURACY)


def _basis_products(bx, by, k: int) -> tuple[np.ndarray, Wavefunctions, tuple]:
    """`_products` for two 1-D `propagation.Eigenbasis` (each evaluated once per call), with the
    1-D indices (i, j) of the k states."""
    sums, i, j = _lowest_sums(bx.energies, by.energies, k)

    def psi(points: np.ndarray) -> np.ndarray:
        x, y = _check_points(points)
        fx, fy = bx.states(x), by.states(y)
        return np.stack([fx[:, a] * fy[:, b] for a, b in zip(i, j)])

    return sums, psi, (i, j)


def _disk_modes(k: int) -> list[tuple[float, int, int, int]]:
    """(j_{m,s}, m, s, part) of the k lowest disk states; part 0 = cos(m theta), 1 = sin.

    Mode (m, s) has s modes with the same m and m + 1 with the same s at or below it (Bessel zeros
    grow with both indices), so the k lowest have s <= k and m < k.
    """
    modes = [
        (float(j), m, s, part)
        for m in range(k)
        for s, j in enumerate(jn_zeros(m, k), start=1)
        for part in ((0,) if m == 0 else (0, 1))
    ]
    return sorted(modes)[:k]


def disk(radius: float, k: int) -> Spectrum2D:
    """V = 0 in the disk of the given radius centred at 0: E = j_{m,s}^2 / R^2.

    psi = J_m(j r / R) times 1, cos(m theta) or sin(m theta), normalised with the closed-form
    integral of J_m^2 (R^2 J_{m+1}(j)^2 / 2), and 0 outside the disk; J_m(j r/R) > 0 near r = 0.
    """
    radius, k = _check_positive(radius, "radius"), _check_k(k)
    modes = _disk_modes(k)
    energies = np.array([(j / radius) ** 2 for j, *_ in modes])

    def psi(points: np.ndarray) -> np.ndarray:
        x, y = _check_points(points)
        r, theta = np.hypot(x, y), np.arctan2(y, x)
        out = []
        for j, m, _, part in modes:
            angular = np.sin(m * theta) if part else np.cos(m * theta)
            norm = math.sqrt((1 if m == 0 else 2) / math.pi) / (radius * abs(jv(m + 1, j)))
            out.append(np.where(r <= radius, norm * jv(m, j * r / radius) * angular, 0.0))
        return np.stack(out)

    return Spectrum2D(energies, psi, "closed_form", _DISK_ACCURACY)


# --------------------------------------------------------------------------- separable matching


def separable2d(x_segments: Sequence[Segment], y_segments: Sequence[Segment], k: int) -> Spectrum2D:
    """V = Vx(x) + Vy(y), each piecewise constant: sums and products of exact 1-D eigenpairs.

    1-D levels are solved one at a time and only as far as needed: an axis gets another level
    while its highest so far, plus the other axis' ground state, still lies within the k lowest
    sums found so far (an upper bound on the true k-th sum).
    """
    k = _check_k(k)
    segments = (x_segments, y_segments)
    axes = [[piecewise_constant(pieces, 0)] for pieces in segments]
    while True:
        ex, ey = (np.array([s.energy for s in axis]) for axis in axes)
        sums = np.sort(np.add.outer(ex, ey).ravel())
        bound = sums[k - 1] if sums.size >= k else math.inf
        grow = (len(ex) < k and ex[-1] + ey[0] <= bound, len(ey) < k and ey[-1] + ex[0] <= bound)
        if not any(grow):
            return Spectrum2D(*_products(*axes, k), "matching", _MATCHING_ACCURACY)
        for axis, pieces, more in zip(axes, segments, grow):
            if more:
                axis.append(piecewise_constant(pieces, len(axis)))


# --------------------------------------------------------------------------- spectral elements

_FIRST_ORDER = 8  # polynomial degree of the first solve
_ORDER_STEP = 2  # degree added per refinement; the last two solves give the accuracy
_MAX_ORDER = 28  # give up refining here (the accuracy then says how far it got)
_ENERGY_RTOL = 1e-12  # converged when no energy changes by more than this (relative) ...
_PSI_TOL = 1e-8  # ... and no eigenspace by more than this (L2 distance)
_ELEMENTS_PER_AXIS = 4  # elements of length at most (axis length) / this, before grading
_GRADING = 0.2  # size ratio of the geometric element layers next to a breakpoint
_LAYERS = 2  # layers on each side of a breakpoint
_SEARCHES = 4  # Lanczos runs allowed to find every state (a rerun seeks the ones missed)
_SPLIT_RTOL = 1e-6  # states this close at the first (coarse) degree are taken as one level
_ROUNDING = 1e-14  # floor of the stated accuracy: rounding of the Ritz energies, ~5e-15 seen
_NUDGE = 1e-12  # V is sampled this far (relative to the axis length) inside each element
_CHUNK = 1 << 22  # array elements per chunk when evaluating psi


@lru_cache
def coarse_energies(potential, k: int, degree: int = 8) -> np.ndarray:
    """The k lowest eigenvalues at one spectral-element degree on the potential's rectangle
    (psi = 0 on its sides; elements cut at V's jumps as in `spectral_element`): an estimate in
    a fraction of a second, for shaping and steering the training of excited states, not for
    judging them. Degree 8 is within 1e-3 (relative) of the converged levels (measured on the
    eight lowest states: box 7e-11, separable well 1e-13, square well 5e-10, oscillator with
    omega = [1, 2] 8e-4, formula2d's default 4e-5; at degree 6 up to 5e-3). The disk is not a
    rectangle: its estimate would be the bounding square's."""
    return coarse_states(potential, k, degree)[0]


def coarse_states(potential, k: int, degree: int = 8) -> tuple[np.ndarray, Wavefunctions]:
    """`coarse_energies` (ascending) with the states' wavefunctions (`_wavefunctions`: the
    degree-p interpolants, 0 outside the rectangle), from the same solve."""
    (x0, x1), (y0, y1) = potential.box.intervals
    edges = (
        _edges(x0, x1, _check_breaks(potential.breaks[0], (x0, x1), "xbreaks")),
        _edges(y0, y1, _check_breaks(potential.breaks[1], (y0, y1), "ybreaks")),
    )
    solution = _solve(potential.fn, edges, degree, _check_k(k))
    return solution.energies, _wavefunctions(solution)


def _gll(p: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Gauss-Lobatto-Legendre nodes t, weights w, D[i, j] = l_j'(t_i), barycentric weights."""
    t = np.concatenate([[-1.0], roots_jacobi(p - 1, 1, 1)[0], [1.0]])
    w = 2.0 / (p * (p + 1) * eval_legendre(p, t) ** 2)
    diff = t[:, None] - t[None, :]
    np.fill_diagonal(diff, 1.0)
    bary = 1.0 / np.prod(diff, axis=1)
    d = bary[None, :] / bary[:, None] / diff
    np.fill_diagonal(d, 0.0)
    np.fill_diagonal(d, -d.sum(axis=1))
    return t, w, d, bary


def _basis(t: np.ndarray, p: int) -> np.ndarray:
    """Lagrange basis of the degree-p GLL nodes at local coordinates t in [-1, 1]: (len(t), p+1).

    Barycentric formula (stable at any degree); a point on a node gets that node's unit vector.
    """
    nodes, _, _, bary = _gll(p)
    diff = t[:, None] - nodes[None, :]
    on_node = diff == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = bary / diff
        basis = terms / terms.sum(axis=1, keepdims=True)
    hit = on_node.any(axis=1)
    basis[hit] = on_node[hit]
    return basis


def _edges(lo: float, hi: float, breaks: np.ndarray) -> np.ndarray:
    """Element edges of one axis: a cut at every breakpoint, equal elements of length at most
    (hi - lo) / _ELEMENTS_PER_AXIS in between, and _LAYERS geometric layers on both sides of each
    breakpoint. The layers resolve the corner singularities (r^2 log r) of psi where a horizontal
    and a vertical jump of V cross; without them p-convergence there is only algebraic.
    """
    ends = np.concatenate([[lo], breaks, [hi]])
    cuts = [ends]
    for i, (a, b) in enumerate(zip(ends[:-1], ends[1:])):
        count = math.ceil(_ELEMENTS_PER_AXIS * (b - a) / (hi - lo) - 1e-9)
        h = (b - a) / count
        cuts.append(a + h * np.arange(1, count))
        layers = h * _GRADING ** np.arange(1, _LAYERS + 1)
        if i > 0:
            cuts.append(a + layers)
        if i < len(ends) - 2:
            cuts.append(b - layers)
    return np.unique(np.concatenate(cuts))


@dataclass(frozen=True)
class _Axis:
    """Degree-p GLL elements on one axis; global node numbers include both walls."""

    edges: np.ndarray  # (ne + 1,)
    p: int
    index: np.ndarray  # (ne, p + 1) global number of each element's nodes
    weights: np.ndarray  # (ne, p + 1) quadrature weights w h / 2
    sample: np.ndarray  # (ne, p + 1) node positions, the two ends moved _NUDGE inside
    mass: np.ndarray  # (n,) assembled diagonal GLL mass
    stiffness: sp.csr_matrix  # (n, n) assembled int u' v'

    def locate(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Element of each x and the element's Lagrange basis there."""
        e = np.clip(np.searchsorted(self.edges, x, side="right") - 1, 0, len(self.edges) - 2)
        h = self.edges[e + 1] - self.edges[e]
        return e, _basis(np.clip(2.0 * (x - self.edges[e]) / h - 1.0, -1.0, 1.0), self.p)

    @property
    def interior_separators(self) -> np.ndarray:
        """Interior unknown numbers (walls removed) of the nodes shared by two elements."""
        return self.p * np.arange(1, len(self.edges) - 1) - 1


def _axis(edges: np.ndarray, p: int) -> _Axis:
    """Degree-p GLL elements between the given edges: stiffness, lumped mass and lookup tables."""
    t, w, d, _ = _gll(p)
    h = np.diff(edges)
    index = p * np.arange(len(h))[:, None] + np.arange(p + 1)[None, :]
    weights = 0.5 * h[:, None] * w[None, :]
    sample = edges[:-1, None] + 0.5 * h[:, None] * (t[None, :] + 1.0)
    nudge = _NUDGE * (edges[-1] - edges[0])
    sample[:, 0] += nudge
    sample[:, -1] -= nudge
    local = d.T @ (w[:, None] * d)  # int l_i' l_j' on [-1, 1], exact with GLL quadrature
    rows = np.broadcast_to(index[:, :, None], (len(h), p + 1, p + 1))
    cols = np.broadcast_to(index[:, None, :], (len(h), p + 1, p + 1))
    values = (2.0 / h)[:, None, None] * local[None]
    n = p * len(h) + 1
    stiffness = sp.csr_matrix((values.ravel(), (rows.ravel(), cols.ravel())), shape=(n, n))
    mass = np.bincount(index.ravel(), weights.ravel(), minlength=n)
    return _Axis(edges, p, index, weights, sample, mass, stiffness)


def _sample_potential(v: Callable, ax: _Axis, ay: _Axis) -> np.ndarray:
    """V at every element's nodes, (nex, p+1, ney, p+1), each element seeing its own side of a jump.

    A node on an element edge is shared, but V there may differ between the two elements (a
    breakpoint), so it is sampled a hair inside each element and assembled element by element.
    """
    shape = ax.sample.shape + ay.sample.shape
    x, y = ax.sample[:, :, None, None], ay.sample[None, None, :, :]
    try:
        values = np.broadcast_to(np.asarray(v(x, y), dtype=float), shape)
    except ValueError as err:
        raise ValueError(f"v(x, y) must broadcast to the shape {shape} of its inputs") from err
    if not np.all(np.isfinite(values)):
        raise ValueError("v(x, y) returned non-finite values on the element nodes")
    return values


def _dissection(ax: _Axis, ay: _Axis) -> np.ndarray:
    """Nested-dissection order of the interior unknowns, for a sparse LU with little fill.

    Elements couple only through shared nodes, so a grid line on an element edge splits the
    unknowns into two uncoupled halves; ordering halves first and the separating line last,
    recursively down to single elements, leaves fill only inside elements and separators.
    """
    nx, ny = len(ax.mass) - 2, len(ay.mass) - 2
    seps = (ax.interior_separators, ay.interior_separators)
    blocks = []

    def block(i0: int, i1: int, j0: int, j1: int) -> None:
        blocks.append((np.arange(i0, i1)[:, None] * ny + np.arange(j0, j1)[None, :]).ravel())

    def split(i0: int, i1: int, j0: int, j1: int) -> None:
        cx = seps[0][(seps[0] > i0) & (seps[0] < i1 - 1)]
        cy = seps[1][(seps[1] > j0) & (seps[1] < j1 - 1)]
        if cx.size and (not cy.size or i1 - i0 >= j1 - j0):
            c = int(cx[np.argmin(np.abs(2 * cx - i0 - i1))])
            split(i0, c, j0, j1)
            split(c + 1, i1, j0, j1)
            block(c, c + 1, j0, j1)
        elif cy.size:
            c = int(cy[np.argmin(np.abs(2 * cy - j0 - j1))])
            split(i0, i1, j0, c)
            split(i0, i1, c + 1, j1)
            block(i0, i1, c, c + 1)
        else:
            block(i0, i1, j0, j1)

    split(0, nx, 0, ny)
    return np.concatenate(blocks)


@dataclass(frozen=True)
class _Solution:
    """Eigenpairs at one degree: energies ascending and nodal values u (k, nx, ny), walls included,
    M-orthonormal (M = the GLL mass)."""

    ax: _Axis
    ay: _Axis
    energies: np.ndarray
    u: np.ndarray


def _factor(b: sp.csc_matrix, shift: float, order: np.ndarray) -> tuple[LinearOperator, int]:
    """(b - shift)^-1 as an operator, and the number of eigenvalues of b below shift.

    The LU is taken in dissection order without pivoting. For symmetric b that is L D L^T with
    U = D L^T, so by Sylvester's law of inertia the negative pivots count the eigenvalues below.
    """
    shifted = (b - shift * sp.identity(b.shape[0], format="csc")).tocsr()[order][:, order]
    lu = splu(
        shifted.tocsc(),
        permc_spec="NATURAL",
        diag_pivot_thresh=0.0,
        options={"SymmetricMode": True},
    )
    if np.any(lu.perm_r != np.arange(b.shape[0])):
        raise RuntimeError(f"the LU of b - {shift} pivoted: its pivots no longer count eigenvalues")
    inverse = np.argsort(order)
    solve = LinearOperator(b.shape, matvec=lambda r: lu.solve(r[order])[inverse], dtype=float)
    return solve, int(np.sum(lu.U.diagonal() < 0))


def _deflated(solve: LinearOperator, found: np.ndarray) -> LinearOperator:
    """solve with the span of the orthonormal columns of `found` projected out (both sides)."""

    def matvec(r: np.ndarray) -> np.ndarray:
        y = solve.matvec(r - found @ (found.T @ r))
        return y - found @ (found.T @ y)

    return LinearOperator(solve.shape, matvec=matvec, dtype=float)


def _lowest(b: sp.csc_matrix, sigma: float, count: int, order: np.ndarray) -> np.ndarray:
    """The `count` lowest eigenvectors of b (all eigenvalues above sigma), by Lanczos on
    (b - sigma)^-1, whose largest eigenvalues 1 / (E - sigma) belong to the lowest E.

    Single-vector Lanczos can miss a copy of a (near-)degenerate eigenvalue, and did, in an empty
    rectangle with an accidental degeneracy. So the eigenvalues below the highest one found are
    counted (matrix inertia), and any missing are sought again with the found ones projected out.
    ARPACK starts from a fixed pseudo-random vector: its own random default would make degenerate
    bases vary between calls, and a smooth one (all ones) misses every state odd under a symmetry.
    """
    solve, below = _factor(b, sigma, order)
    if below:
        raise RuntimeError(
            f"{below} eigenvalues lie below the shift {sigma}, meant to be below all"
        )
    start = np.random.default_rng(0).standard_normal(b.shape[0])
    found, energies, want = np.empty((b.shape[0], 0)), np.empty(0), count
    for _ in range(_SEARCHES):
        mu, vectors = eigsh(_deflated(solve, found), k=want, which="LM", tol=1e-12, v0=start)
        found = np.hstack([found, vectors])
        energies = np.append(energies, sigma + 1.0 / mu)
        rank = np.argsort(energies)
        top = energies[rank[count - 1]]
        ceiling = top + 1e-6 * (top - sigma)  # a margin far above rounding in the pivots
        want = _factor(b, ceiling, order)[1] - int(np.sum(energies < ceiling))
        if want <= 0:
            return found[:, rank[:count]].T
    raise RuntimeError(f"{want} eigenvalues below {top} stayed hidden from Lanczos")


def _ritz(
    u: np.ndarray, ax: _Axis, ay: _Axis, weighted_v: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Rayleigh-Ritz in the span of the nodal vectors u (k, nx, ny): energies ascending, and the
    rotated vectors, M-orthonormal.

    The Lanczos results are only as good as the LU solves: eigenvalues carry ~1e-12 relative
    noise (b has entries ~p^4/h^2 that cancel in b @ u), and two states 1e-4 apart were mixed by
    1e-8. Here the energy form is summed at the quadrature nodes from gradients and values, free
    of that cancellation, so the energies have rounding errors only and the states' mixing
    within the span is undone; an error d outside the span moves the energies by O(d^2).
    """
    k = len(u)
    _, _, d, _ = _gll(ax.p)
    dx = np.sqrt(ax.weights) * (2 / np.diff(ax.edges))[:, None]  # sqrt(w h / 2) * d/dx scale
    dy = np.sqrt(ay.weights) * (2 / np.diff(ay.edges))[:, None]
    gx = np.einsum("qi,keij->keqj", d, u[:, ax.index, :]) * dx[:, :, None] * np.sqrt(ay.mass)
    gy = np.einsum("qj,kiej->kieq", d, u[:, :, ay.index]) * dy * np.sqrt(ax.mass)[:, None, None]
    local = u[:, ax.index][:, :, :, ay.index].reshape(k, -1)
    energy = sum(g.reshape(k, -1) @ g.reshape(k, -1).T for g in (gx, gy))
    energy += (local * weighted_v.ravel()) @ local.T
    values = (u * np.sqrt(np.outer(ax.mass, ay.mass))).reshape(k, -1)
    energies, rotation = eigh(energy, values @ values.T)
    return energies, np.einsum("kl,kij->lij", rotation, u)


def _empty_ground(ax: _Axis, ay: _Axis) -> float:
    """Ground-state energy of the empty rectangle: the problem's natural energy scale."""
    return math.pi**2 * sum((axis.edges[-1] - axis.edges[0]) ** -2.0 for axis in (ax, ay))


def _solve(v: Callable, edges: tuple[np.ndarray, np.ndarray], p: int, count: int) -> _Solution:
    """The lowest `count` eigenpairs at degree p on the given elements."""
    ax, ay = _axis(edges[0], p), _axis(edges[1], p)
    weighted_v = (
        ax.weights[:, :, None, None] * ay.weights[None, None] * _sample_potential(v, ax, ay)
    )
    nx, ny = len(ax.mass), len(ay.mass)
    nodes = ax.index[:, :, None, None] * ny + ay.index[None, None]
    v_mass = np.bincount(
        np.broadcast_to(nodes, weighted_v.shape).ravel(), weighted_v.ravel(), minlength=nx * ny
    ).reshape(nx, ny)[1:-1, 1:-1]
    mx, my = ax.mass[1:-1], ay.mass[1:-1]
    mass = np.outer(mx, my).ravel()
    a = (
        sp.kron(ax.stiffness[1:-1, 1:-1], sp.diags(my))
        + sp.kron(sp.diags(mx), ay.stiffness[1:-1, 1:-1])
        + sp.diags(v_mass.ravel())
    )
    scale = sp.diags(1.0 / np.sqrt(mass))
    b = (scale @ a @ scale).tocsc()
    # the lowest eigenvalue exceeds min V plus (about) the empty box's ground-state energy
    sigma = float(np.min(v_mass.ravel() / mass)) - 0.5 * _empty_ground(ax, ay)
    vectors = _lowest(b, sigma, count, _dissection(ax, ay)) / np.sqrt(mass)
    u = np.zeros((count, nx, ny))
    u[:, 1:-1, 1:-1] = vectors.reshape(count, nx - 2, ny - 2)
    return _Solution(ax, ay, *_ritz(u, ax, ay, weighted_v))


def _prolong(coarse: _Axis, fine: _Axis) -> np.ndarray:
    """(n_fine, n_coarse): values at the fine nodes of the coarse degree's interpolant (exact:
    both degrees share the elements, and degree p polynomials are degree p + step ones)."""
    t, *_ = _gll(fine.p)
    x = (fine.edges[:-1, None] + 0.5 * np.diff(fine.edges)[:, None] * (t[None, :] + 1.0)).ravel()
    e, basis = coarse.locate(x)
    matrix = np.zeros((len(fine.mass), len(coarse.mass)))
    matrix[fine.index.ravel()[:, None], coarse.index[e]] = basis
    return matrix


def _change(coarse: _Solution, fine: _Solution, skip: Sequence[int]) -> tuple[float, float]:
    """How much the states moved from one degree to the next.

    Returns the largest energy change, relative to max(|E|, the empty box's ground state) so
    that an energy near 0 cannot demand an absolute change below rounding, and the largest L2
    distance of a coarse state from the fine eigenspace of its level (so a rotated basis of a
    degenerate level costs nothing). States in `skip` (part of a level cut by k) are left out of
    the distance: each degree may pick a different part of their level.
    """
    scale = np.maximum(np.abs(fine.energies), _empty_ground(fine.ax, fine.ay))
    energy = float(np.max(np.abs(fine.energies - coarse.energies) / scale))
    px, py = _prolong(coarse.ax, fine.ax), _prolong(coarse.ay, fine.ay)
    moved = px @ coarse.u @ py.T
    weight = np.outer(fine.ax.mass, fine.ay.mass)
    distance = 0.0
    for level in levels(fine.energies):
        group = [i for i in level if i not in skip]
        if not group:
            continue
        f, c = fine.u[group], moved[group]
        overlap = np.einsum("aij,bij,ij->ab", f, c, weight)
        residual = c - np.einsum("ab,aij->bij", overlap, f)
        distance = max(distance, math.sqrt(np.max(np.einsum("bij,ij->b", residual**2, weight))))
    return energy, distance


def _wavefunctions(solution: _Solution) -> Wavefunctions:
    """psi(points (N, 2)) -> (k, N): the degree-p interpolant of each nodal vector, 0 outside.

    Sign: positive at the first node, x-major, where |psi| exceeds 1e-3 of its maximum (near the
    x0 wall, as low as possible), a value far above rounding; in an empty box this matches the
    products of sines of `box2d`, which rise from the lower-left corner.
    """
    ax, ay, u = solution.ax, solution.ay, solution.u
    k = len(u)
    flat = np.abs(u.reshape(k, -1))
    first = np.argmax(flat > 1e-3 * flat.max(axis=1, keepdims=True), axis=1)
    u = u * np.sign(u.reshape(k, -1)[np.arange(k), first])[:, None, None]
    (x0, x1), (y0, y1) = (ax.edges[[0, -1]], ay.edges[[0, -1]])
    chunk = max(1, _CHUNK // (k * (ax.p + 1) * (ay.p + 1)))

    def psi(points: np.ndarray) -> np.ndarray:
        x, y = _check_points(points)
        out = np.zeros((k, len(x)))
        inside = np.flatnonzero((x >= x0) & (x <= x1) & (y >= y0) & (y <= y1))
        for part in np.array_split(inside, max(1, math.ceil(len(inside) / chunk))):
            ex, bx = ax.locate(x[part])
            ey, by = ay.locate(y[part])
            local = u[:, ax.index[ex][:, :, None], ay.index[ey][:, None, :]]
            out[:, part] = np.einsum("knij,ni,nj->kn", local, bx, by)
        return out

    return psi


def _check_breaks(breaks, interval: tuple[float, float], name: str) -> np.ndarray:
    try:
        values = np.unique(np.asarray(breaks, dtype=float).ravel())
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a sequence of numbers, got {breaks!r}") from err
    lo, hi = interval
    if not np.all((values > lo) & (values < hi)):
        raise ValueError(f"{name} must lie strictly inside ({lo}, {hi}), got {breaks!r}")
    return values


def _cut_level(energies: np.ndarray, k: int) -> list[int]:
    """The states below k that share a level with state k (0-based), warning if there are any:
    then the k states end inside a degenerate level, and hold an arbitrary part of it."""
    level = next(group for group in levels(energies, _SPLIT_RTOL) if k in group)
    cut = sorted(i for i in level if i < k)
    if cut:
        warnings.warn(
            f"k={k} ends inside a degenerate level (E ~ {energies[k]:.10g}): states {cut} span "
            "an arbitrary part of it; choose k so that the level is complete",
            stacklevel=3,
        )
    return cut


def _orders(order: int | None) -> list[int]:
    if order is None:
        return list(range(_FIRST_ORDER, _MAX_ORDER + 1, _ORDER_STEP))
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order < 4:
        raise ValueError(f"order must be None (automatic) or an integer >= 4, got {order!r}")
    return [int(order) - _ORDER_STEP, int(order)]


def spectral_element(
    v: Callable,
    domain: Rect,
    k: int,
    xbreaks: Sequence[float] = (),
    ybreaks: Sequence[float] = (),
    order: int | None = None,
) -> Spectrum2D:
    """The lowest k states of -lap psi + v(x, y) psi on a rectangle, psi = 0 on its boundary.

    v(x, y) takes broadcastable arrays. It may jump across the vertical lines x = xbreaks and the
    horizontal lines y = ybreaks (and must be smooth elsewhere): the elements are cut there, so
    v is smooth on each. Tensor-product Gauss-Lobatto-Legendre elements of degree p, diagonal
    (GLL) mass; the generalized problem is made standard by scaling with M^-1/2 and solved by
    shift-invert Lanczos. With order=None the degree goes 8, 10, ... up to 28 until the k
    energies change by < 1e-12 (relative) and each eigenspace by < 1e-8 (L2) between two degrees;
    an explicit order solves at order - 2 and order only. `accuracy` is the last energy change
    (relative to max(|E|, the empty box's ground state), at least 1e-14): an error estimate of
    the coarser of the two, while the finer one is returned.
    Choose k so that it does not end inside a degenerate level (a warning says when it does).
    """
    (x_range, y_range), k = _check_rect(domain), _check_k(k)
    edges = (
        _edges(*x_range, _check_breaks(xbreaks, x_range, "xbreaks")),
        _edges(*y_range, _check_breaks(ybreaks, y_range, "ybreaks")),
    )
    orders = _orders(order)
    first = _solve(v, edges, orders[0], k + 1)
    cut = _cut_level(first.energies, k)
    previous = _Solution(first.ax, first.ay, first.energies[:k], first.u[:k])
    for p in orders[1:]:
        solution = _solve(v, edges, p, k)
        energy_change, psi_change = _change(previous, solution, cut)
        if energy_change <= _ENERGY_RTOL and psi_change <= _PSI_TOL:
            break
        previous = solution
    return Spectrum2D(
        solution.energies,
        _wavefunctions(solution),
        "spectral_element",
        max(energy_change, _ROUNDING),
    )
