"""Judging a time-dependent run: psi(x, t) of the network against the reference on a grid of
times, the observables (norm, <x>, <H>) and summary.json's numbers. NumPy arrays in, numbers out.
"""

from __future__ import annotations

import numpy as np


def time_weights(t: np.ndarray) -> np.ndarray:
    """Trapezoid weights on the (uniform or not) times t (T,)."""
    if t.size == 1:
        return np.ones(1)
    w = np.zeros_like(t)
    dt = np.diff(t)
    w[:-1] += 0.5 * dt
    w[1:] += 0.5 * dt
    return w


def observables(psi, psi_xx, x, w, v) -> dict[str, np.ndarray]:
    """Per time (T,): the norm, <x> and <H> = Re <psi, (-d2/dx2 + V) psi> / norm, from psi and
    psi'' (T, X) at the nodes x of a quadrature rule with weights w (X,)."""
    dens = np.abs(psi) ** 2
    norm = dens @ w
    h_psi = -psi_xx + v[None, :] * psi
    energy = np.real(np.conj(psi) * h_psi) @ w / norm
    return {"norm": norm, "x": (dens * x[None, :]) @ w / norm, "energy": energy}


def relative_l2(psi, ref, w, wt=None) -> float:
    """||psi - ref|| / ||ref|| over space (w) and, for (T, X) arrays, time (wt)."""
    err = (np.abs(psi - ref) ** 2) @ w
    size = (np.abs(ref) ** 2) @ w
    if wt is not None:
        err, size = err @ wt, size @ wt
    return float(np.sqrt(err / size))


def judge(t, psi, psi_xx, ref, x, w, v, reference_energy: float) -> dict:
    """summary.json's accuracy numbers of a run, from psi, psi'' and the reference (T, X) on the
    rule (x, w) at times t."""
    obs = observables(psi, psi_xx, x, w, v)
    e0 = obs["energy"][0]
    return {
        "wavefunction": {
            "l2_error": relative_l2(psi, ref, w, time_weights(t)),
            "l2_error_final": relative_l2(psi[-1], ref[-1], w),
        },
        "norm": {"max_drift": float(np.max(np.abs(obs["norm"] - 1.0)))},
        "energy": {
            "initial": float(e0),
            "reference": float(reference_energy),
            "rel_error": float(abs(e0 - reference_energy) / abs(reference_energy)),
            "max_drift": float(np.max(np.abs(obs["energy"] - e0)) / abs(e0)),
        },
    }, obs


def checks(judged: dict, psi_tol: float, norm_tol: float) -> list[str]:
    """The failed self-checks of a run: its error against the reference, its norm drift."""
    failed = []
    l2 = judged["wavefunction"]["l2_error"]
    if not l2 <= psi_tol:
        failed.append(f"psi: relative L2 error {l2:.1e} > {psi_tol}")
    drift = judged["norm"]["max_drift"]
    if not drift <= norm_tol:
        failed.append(f"norm: drifts by {drift:.1e} > {norm_tol}")
    return failed
