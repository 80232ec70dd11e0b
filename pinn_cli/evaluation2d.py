"""Judging trained 2-D states against the reference spectrum, degenerate levels included.

A degenerate level has no single right wavefunction: a learned state is judged by its distance
from the level's reference eigenspace, and the states learned in one level together by the
largest principal angle between their span and that eigenspace. NumPy arrays in, numbers out.
"""

from __future__ import annotations

import threading
import warnings

import numpy as np

from . import quadrature
from .evaluation import relative_error
from .reference2d import levels

JUDGE_PER_PIECE = 48  # Gauss nodes per smooth piece of each axis, at least
JUDGE_PER_AXIS = 192  # and at least this many along each axis, spread by the pieces' lengths


def fine_rule(potential) -> quadrature.Rule:
    """The judging rule: JUDGE_PER_PIECE Gauss nodes per smooth piece of each axis, more where
    JUDGE_PER_AXIS spread by length give a piece more (a polar rule of ~16k nodes on a disk).
    48 per piece alone misjudged a wide smooth domain: formula2d r^2 + 5 exp(-r^2) on [-6, 6]^2
    read its Rayleigh quotient 1e-7 low on 48 x 48 nodes and within 3e-12 on 96, 128 and 256."""
    if potential.radius is not None:
        return quadrature.disk(potential.radius, 16384)
    return quadrature.gauss_fixed(potential.box, JUDGE_PER_PIECE, JUDGE_PER_AXIS)


def plot_grid(potential, n: int = 121) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x (n,), y (n,), points (n*n, 2) with y slowest, inside (n*n,) bool) for maps."""
    (x0, x1), (y0, y1) = potential.intervals
    x, y = np.linspace(x0, x1, n), np.linspace(y0, y1, n)
    yy, xx = np.meshgrid(y, x, indexing="ij")
    points = np.stack([xx.ravel(), yy.ravel()], axis=-1)
    inside = np.ones(len(points), bool)
    if potential.radius is not None:
        inside = np.hypot(points[:, 0], points[:, 1]) <= potential.radius
    return x, y, points, inside


def _orthonormal(sw: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """W-orthonormal basis (as sqrt(w) * f, (N, k)) of the span of columns (N, k)."""
    q, _ = np.linalg.qr(sw[:, None] * columns)
    return q


def subspace_error(w: np.ndarray, learned: np.ndarray, reference: np.ndarray) -> float:
    """sin of the largest principal angle between span(learned) (N, k) and span(reference)
    (N, m), k <= m, in the W inner product: 0 when the learned states lie in the eigenspace."""
    sw = np.sqrt(w)
    a, b = _orthonormal(sw, learned), _orthonormal(sw, reference)
    rest = a - b @ (b.T @ a)
    return float(min(np.linalg.norm(rest, 2), 1.0))


# one reference solve at a time: the run computes it during training (experiment.Frame.preload)
# and judging, asking for the same, waits for it and then finds it in the potential's cache
_SPECTRUM_LOCK = threading.Lock()
_IN_PROGRESS: list[tuple[object, int]] = []  # (potential, count) being solved under the lock


def spectrum_for(potential, count: int):
    """The reference spectrum with enough states that the level of state count-1 is whole: one
    state more than learned, doubled while the last of them may still belong to that level (a
    numerical reference costs about linearly in the states asked for). The last level may end
    inside a higher level, which the solver warns of: that level is not judged, so the warning
    is silenced here.

    A request for fewer states than the solve in progress (a run stopped before its last state:
    the reference for all of them is still being computed, for `state=100` minutes) does not
    wait for it: it solves for its own states beside it."""
    busy = list(_IN_PROGRESS)
    if busy and busy[0][0] is potential and busy[0][1] > count:
        return _spectrum(potential, count)
    with _SPECTRUM_LOCK:
        _IN_PROGRESS[:] = [(potential, count)]
        try:
            return _spectrum(potential, count)
        finally:
            _IN_PROGRESS.clear()


def _spectrum(potential, count: int):
    k = count + 1
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*ends inside a degenerate level")
        while True:
            spectrum = potential.spectrum(k)
            energies = np.asarray(spectrum.energies, float)
            if len(energies) < k or levels(energies)[-1][0] >= count:
                return spectrum
            k *= 2


def judge_states(potential, rule, v, values, spectrum) -> tuple[list[dict], list[dict]]:
    """(per state, per level) judged numbers.

    values: per learned state (psi, grad psi) at the rule's nodes (any normalisation), states
    counted with multiplicity in increasing energy. Per state: the Rayleigh quotient against the
    reference energy of its index; psi's relative L2 error (sign-aligned) for a non-degenerate
    level, its distance from the eigenspace for a degenerate one. Per level that the states
    reach: reference energies, multiplicity, the learned states and their subspace error.
    """
    ref = np.asarray(spectrum.psi(rule.x), float)  # (K, N)
    groups = levels(np.asarray(spectrum.energies, float))
    level_of = {i: k for k, g in enumerate(groups) for i in g}
    units = [psi / np.sqrt(np.sum(rule.w * psi**2)) for psi, _ in values]
    states = [
        _state(n, psi, grad, rule.w, v, ref, groups[level_of[n]], spectrum) | {"level": level_of[n]}
        for n, (psi, grad) in enumerate(values)
    ]
    judged_levels = []
    for k, group in enumerate(groups):
        learned = [i for i in group if i < len(values)]
        if not learned:
            break
        span = np.stack([units[i] for i in learned], axis=-1)
        judged_levels.append(
            {
                "level": k,
                "reference_energies": [float(spectrum.energies[i]) for i in group],
                "multiplicity": len(group),
                "states": learned,
                "energies": [states[i]["energy"]["estimate"] for i in learned],
                "subspace_error": subspace_error(rule.w, span, ref[group].T),
                "complete": len(learned) == len(group),
            }
        )
    return states, judged_levels


def _state(n: int, psi, grad, w, v, ref, group: list[int], spectrum) -> dict:
    """State n's numbers from the network's psi and grad psi on the rule (any normalisation)."""
    n2 = np.sum(w * psi**2)
    rq = float(np.sum(w * (np.sum(grad**2, axis=-1) + v * psi**2)) / n2)
    unit = psi / np.sqrt(n2)
    e_ref = float(spectrum.energies[n])
    if len(group) == 1:
        exact = ref[n] / np.sqrt(np.sum(w * ref[n] ** 2))
        aligned = unit if np.sum(w * unit * exact) >= 0 else -unit
        error = float(np.sqrt(np.sum(w * (aligned - exact) ** 2)))
    else:
        error = subspace_error(w, unit[:, None], ref[group].T)
    return {
        "n": n,
        "energy": {
            "estimate": rq,
            "estimator": "rayleigh_quotient",
            "rayleigh": rq,
            "reference": e_ref,
            "reference_method": spectrum.method,
            "rel_error": relative_error(rq, e_ref),
        },
        "wavefunction": {"l2_error": error, "degenerate": len(group) > 1},
        "nodes": None,
        "parity": None,
    }


def reference_maps(spectrum, points: np.ndarray, inside: np.ndarray, count: int) -> np.ndarray:
    """The first `count` reference states on the plotting points (count, P), NaN outside."""
    ref = np.asarray(spectrum.psi(points), float)[:count]
    return np.where(inside[None, :], ref, np.nan)


def error_map(learned: np.ndarray, reference: np.ndarray, group: list[int], w_plot) -> np.ndarray:
    """learned minus its best approximation in the span of the level's reference states, on
    the plotting points (both normalised there with the plotting weights)."""
    ok = np.isfinite(learned)
    a = np.where(ok, learned, 0.0)
    b = np.where(ok[None, :], reference[group], 0.0)
    coef, *_ = np.linalg.lstsq((b * np.sqrt(w_plot)).T, a * np.sqrt(w_plot), rcond=None)
    return np.where(ok, a - coef @ b, np.nan)
