"""Coarse estimates of a potential's lowest states (1-D finite differences, one 2-D
spectral-element degree: milliseconds to ~1 s, solved once per run and cached), and what they
decide before training: excited states' carriers and targets (`assemble`), the decay layers of
a deep 2-D well's training rule and whether its ground state is confined to part of the box
(so that it starts from the coarse state, `warm_start`)."""

from __future__ import annotations

import functools

import numpy as np


@functools.lru_cache(maxsize=8)
def spectrum(potential, k: int) -> tuple[np.ndarray, float]:
    """Coarse estimates of the k lowest energies (1-D: plain finite differences; 2-D: one
    spectral-element degree), and the lowest V on the boundary (sampled just inside it)."""
    if potential.dim == 1:
        from . import finite_differences

        lo, hi = potential.domain
        energies = finite_differences.finite_difference_energies(potential, (lo, hi), k, 2000)
        inside = 1e-9 * (hi - lo)
        edge = [potential(np.array(lo + inside)), potential(np.array(hi - inside))]
        return energies, float(min(edge))
    energies = states(potential, k)[0]
    (x0, x1), (y0, y1) = potential.box.intervals
    t = np.linspace(0.0, 1.0, 401)
    eps = 1e-9
    xs, ys = x0 + (x1 - x0) * t, y0 + (y1 - y0) * t
    sides = [
        np.stack([xs, np.full_like(t, y0 + eps * (y1 - y0))], -1),
        np.stack([xs, np.full_like(t, y1 - eps * (y1 - y0))], -1),
        np.stack([np.full_like(t, x0 + eps * (x1 - x0)), ys], -1),
        np.stack([np.full_like(t, x1 - eps * (x1 - x0)), ys], -1),
    ]
    return energies, float(min(np.min(potential.values(side)) for side in sides))


@functools.lru_cache(maxsize=8)
def states(potential, k: int):
    """A 2-D potential's k lowest coarse energies and their wavefunctions
    (`spectral2d.coarse_states`), solved once per run for the decay layers, the excited
    states' carriers and targets, and the coarse start."""
    from . import spectral2d

    return spectral2d.coarse_states(potential, k)


DECAY_DEPTH = 7.0  # a decay layer is this many decay lengths 1 / kappa deep: psi falls by e^-7


def decay_layers(potential, box, state: int):
    """Per axis of a 2-D piecewise-constant V, per piece of `box`: how deep psi decays into it
    from each neighbouring piece, (from its lower end, from its upper end), for
    `quadrature.gauss`. A piece is forbidden when V is above state `state`'s coarse energy E
    over the whole strip it spans (V is constant on each cell of the breakpoints' grid, so its
    centres decide), and psi decays into it from an allowed neighbour within DECAY_DEPTH /
    kappa, kappa = sqrt(min V - E). Beyond that layer psi is below e^-7 of its value at the
    jump: the far part keeps a few nodes, the layer and the allowed pieces get the rest. Deep
    square wells need it: V0 = 200 went from E 4e-7, psi 1e-4 to 2e-9, 7e-6 with the same 2500
    nodes (docs/results.md). None for 1-D, smooth V and the disk."""
    if potential.dim != 2 or not potential.piecewise_constant or len(box.intervals) != 2:
        return None
    if not any(box.breakpoints):
        return None
    energy = float(spectrum(potential, state + 1)[0][state])
    centres = [[0.5 * (a + b) for a, b in box.pieces(axis)] for axis in range(2)]
    gx, gy = np.meshgrid(*centres, indexing="ij")
    cells = np.asarray(potential.fn(gx, gy) + 0.0 * gx, float)  # (x pieces, y pieces)
    out = []
    for axis in range(2):
        lowest = cells.min(axis=1 - axis)
        allowed = lowest <= energy
        depths = []
        for i, v in enumerate(lowest):
            depth = 0.0 if allowed[i] else DECAY_DEPTH / np.sqrt(v - energy)
            low = depth if i > 0 and allowed[i - 1] else 0.0
            high = depth if i + 1 < len(lowest) and allowed[i + 1] else 0.0
            depths.append((float(low), float(high)))
        out.append(tuple(depths))
    return tuple(out)


def confined(potential, box, state: int) -> bool:
    """Whether state `state` of a 2-D piecewise-constant V lives in part of `box` only: some
    forbidden piece reaches past its decay layers (`decay_layers`), so the training rule has a
    far part (`quadrature.with_layers`)."""
    from . import quadrature

    layers = decay_layers(potential, box, state)
    if layers is None:
        return False
    return any(any(quadrature.with_layers(box.pieces(axis), layers[axis])[1]) for axis in range(2))
