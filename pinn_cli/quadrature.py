"""Quadrature rules whose nodes double as collocation points: integral f ~ sum(w * f(x)).

A rule is points `x` of shape (N, d) and weights `w` of shape (N,). On a box it is the tensor
product of one rule per axis; each axis is split at its breakpoints (where V jumps), so the
integrals of piecewise-smooth integrands are exact to the order of the rule and no node sits on
a jump. A domain that is not a box (a disk in polar coordinates, a space-time slab) implements
the same `Rule`. NumPy only: rules are built once, before anything is compiled.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

Interval = tuple[float, float]


@dataclass(frozen=True)
class Box:
    """A product of intervals, with the points on each axis where the potential jumps, and (in
    2-D) the corners where a jump along x meets one along y without V being separable there."""

    intervals: tuple[Interval, ...]
    breakpoints: tuple[tuple[float, ...], ...]  # per axis, inside its interval, increasing
    corners: tuple[tuple[float, ...], ...] = ()  # points (x, y): psi has r^2 log r there

    @property
    def dim(self) -> int:
        return len(self.intervals)

    @property
    def lengths(self) -> tuple[float, ...]:
        return tuple(hi - lo for lo, hi in self.intervals)

    def pieces(self, axis: int) -> tuple[Interval, ...]:
        """The sub-intervals of one axis on which the potential is smooth."""
        lo, hi = self.intervals[axis]
        edges = (lo, *self.breakpoints[axis], hi)
        return tuple(zip(edges[:-1], edges[1:]))


@dataclass(frozen=True)
class Rule:
    x: np.ndarray  # (N, d) nodes
    w: np.ndarray  # (N,) weights

    def __post_init__(self):
        if self.x.ndim != 2 or self.w.shape != self.x.shape[:1]:
            raise ValueError(
                f"a rule needs x (N, d) and w (N,); got {self.x.shape}, {self.w.shape}"
            )


def tensor(axes: list[tuple[np.ndarray, np.ndarray]]) -> Rule:
    """The product rule of one (nodes, weights) pair per axis; the last axis varies fastest."""
    grids = np.meshgrid(*[x for x, _ in axes], indexing="ij")
    weights = np.meshgrid(*[w for _, w in axes], indexing="ij")
    x = np.stack([g.ravel() for g in grids], axis=-1)
    return Rule(x, np.prod(np.stack([w.ravel() for w in weights]), axis=0))


@functools.lru_cache(maxsize=32)
def leggauss(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights on [-1, 1], cached (an eigenproblem of size n each:
    6-9 ms at the judge's 256, per smooth piece); read-only, as they are shared."""
    t, w = np.polynomial.legendre.leggauss(n)
    t.flags.writeable = w.flags.writeable = False
    return t, w


def gauss_pieces(pieces, counts) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights with counts[i] nodes on pieces[i], concatenated."""
    xs, ws = [], []
    for (a, b), n in zip(pieces, counts):
        t, u = leggauss(int(n))
        xs.append(0.5 * (b - a) * t + 0.5 * (a + b))
        ws.append(0.5 * (b - a) * u)
    return np.concatenate(xs), np.concatenate(ws)


def _split(pieces, total: int, min_per_piece: int, far=()) -> np.ndarray:
    """About `total` nodes over the pieces, in proportion to their lengths; the `far` ones (a
    flag per piece) get `min_per_piece` each and no share of the rest."""
    lengths = np.array([b - a for a, b in pieces])
    far = np.array(far or [False] * len(pieces), dtype=bool)
    counts = np.full(len(pieces), min_per_piece)
    rest = max(total - min_per_piece * int(far.sum()), 0)
    share = np.round(rest * lengths[~far] / lengths[~far].sum()).astype(int)
    counts[~far] = np.maximum(min_per_piece, share)
    return counts


def gauss(box: Box, total: int, min_per_piece: int = 8, shares=None, layers=None) -> Rule:
    """About `total` Gauss-Legendre nodes in all, split on each axis by piece length: total^(1/d)
    per axis, or with `shares` (one positive number per axis) per-axis counts in proportion to
    them (their product still about `total`). `layers`: per axis, per piece, the depths
    (from its lower end, from its upper end; 0 for none) of the layers into which psi decays
    from a neighbouring piece (`with_layers`)."""
    per_axis = [max(1, round(total ** (1.0 / box.dim)))] * box.dim
    if shares is not None:
        mean = math.prod(shares) ** (1.0 / box.dim)
        per_axis = [max(1, round(total ** (1.0 / box.dim) * s / mean)) for s in shares]
    axes = []
    for axis in range(box.dim):
        pieces, far = box.pieces(axis), ()
        if layers is not None:
            pieces, far = with_layers(pieces, layers[axis])
        counts = _split(pieces, per_axis[axis], min_per_piece, far)
        axes.append(gauss_pieces(pieces, counts))
    return tensor(axes)


def with_layers(pieces, depths) -> tuple[tuple[Interval, ...], tuple[bool, ...]]:
    """The pieces with each decay layer cut off as a piece of its own, and per piece whether it
    is the far part beyond the layers (where psi has decayed by exp(-depth * kappa)). A piece
    is cut only where that far part is at least as long as its layers: below that, spreading
    the nodes by length already puts them in the layer."""
    out, far = [], []
    for (a, b), (low, high) in zip(pieces, depths):
        c, d = a + low, b - high
        if (low or high) and d - c >= max(low, high):
            near = [(a, c)] if low else []
            top = [(d, b)] if high else []
            out += [*near, (c, d), *top]
            far += [False] * len(near) + [True] + [False] * len(top)
        else:
            out.append((a, b))
            far.append(False)
    return tuple(out), tuple(far)


def gauss_fixed(box: Box, per_piece: int, per_axis: int = 0, order: int | None = None) -> Rule:
    """`per_piece` Gauss-Legendre nodes on every smooth piece of every axis (for judging), or
    more where `per_axis` nodes spread over the axis by length give the piece more. With
    `order`, a piece's nodes are panels of `order` nodes each on equal parts of it (a
    composite rule: NumPy's nodes of order 2048 are off by ~1e-13, those of order 64 by 1e-16).
    """
    axes = []
    for axis in range(box.dim):
        pieces = box.pieces(axis)
        total = sum(b - a for a, b in pieces)
        counts = [max(per_piece, math.ceil(per_axis * (b - a) / total)) for a, b in pieces]
        if order is not None:
            pieces, counts = _panels(pieces, counts, order)
        axes.append(gauss_pieces(pieces, counts))
    return tensor(axes)


def _panels(pieces, counts, order: int) -> tuple[list[Interval], list[int]]:
    """Each piece cut into equal panels of `order` nodes, at least counts[i] nodes in all."""
    out = []
    for (a, b), n in zip(pieces, counts):
        edges = np.linspace(a, b, -(-int(n) // order) + 1)
        out += [(float(lo), float(hi)) for lo, hi in zip(edges[:-1], edges[1:])]
    return out, [order] * len(out)


def uniform(box: Box, total: int) -> Rule:
    """Evenly spaced points including the walls, with trapezoid weights, total^(1/d) per axis."""
    per_axis = max(2, round(total ** (1.0 / box.dim)))
    axes = []
    for lo, hi in box.intervals:
        x = np.linspace(lo, hi, per_axis)
        w = np.full(per_axis, x[1] - x[0])
        w[[0, -1]] *= 0.5
        axes.append((x, w))
    return tensor(axes)


def disk(radius: float, total: int) -> Rule:
    """About `total` nodes on the disk of `radius` about the origin: Gauss-Legendre in r (weight
    r dr), and 4x as many equally spaced angles (the trapezoid rule, spectrally accurate for
    periodic functions)."""
    n_r = max(4, round(math.sqrt(total / 4.0)))
    t, u = np.polynomial.legendre.leggauss(n_r)
    r, wr = 0.5 * radius * (t + 1.0), 0.5 * radius * u * 0.5 * radius * (t + 1.0)
    theta = 2.0 * math.pi * np.arange(4 * n_r) / (4 * n_r)
    rr, tt = np.meshgrid(r, theta, indexing="ij")
    x = np.stack([(rr * np.cos(tt)).ravel(), (rr * np.sin(tt)).ravel()], axis=-1)
    w = np.repeat(wr * 2.0 * math.pi / (4 * n_r), 4 * n_r)
    return Rule(x, w)
