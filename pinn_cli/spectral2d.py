"""Reference eigenpairs of -lap psi + V(x, y) psi = E psi for any V on a rectangle, psi = 0 on
the boundary, by a tensor-product spectral element method whose elements are aligned with (and
graded towards) the lines where V jumps; the polynomial degree is raised until the energies stop
changing, and the change is reported as the accuracy. Returns a `reference2d.Spectrum2D`; the
closed forms and the separable case are in reference2d. NumPy/SciPy only.
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
from scipy.special import eval_legendre, roots_jacobi

from .reference2d import (
    Rect,
    Spectrum2D,
    Wavefunctions,
    _check_k,
    _check_points,
    _check_rect,
    levels,
)
from .sparse_eigen import lowest

_FIRST_ORDER = 8  # polynomial degree of the first solve
_ORDER_STEP = 2  # degree added per refinement; the last two solves give the accuracy
_MAX_ORDER = 28  # give up refining here (the accuracy then says how far it got)
_ENERGY_RTOL = 1e-12  # converged when no energy changes by more than this (relative) ...
_PSI_TOL = 1e-8  # ... and no eigenspace by more than this (L2 distance)
_ELEMENTS_PER_AXIS = 4  # elements of length at most (axis length) / this, before grading
_GRADING = 0.2  # size ratio of the geometric element layers next to a breakpoint
_LAYERS = 2  # layers on each side of a breakpoint
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
    vectors = lowest(b, sigma, count, _dissection(ax, ay)) / np.sqrt(mass)
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
