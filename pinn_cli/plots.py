"""Figures from NumPy arrays: the wavefunction against the reference, energy and loss histories."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def wavefunction(path: Path, x, psi, psi_ref, v, *, title: str = "") -> None:
    """PINN psi and the reference on one axis; V(x) drawn behind on a twin axis."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    pot = ax.twinx()
    pot.fill_between(x, 0, v, color="0.85", step="mid", label="V(x)", zorder=0)
    pot.set_ylabel("V(x)", color="0.45")
    pot.tick_params(axis="y", colors="0.45")
    ax.set_zorder(pot.get_zorder() + 1)
    ax.patch.set_visible(False)
    ax.plot(x, psi_ref, color="k", lw=2.5, alpha=0.45, label="reference")
    ax.plot(x, psi, color="C0", lw=1.2, ls="--", label="PINN")
    ax.set_xlabel("x")
    ax.set_ylabel("psi(x)")
    ax.set_title(title)
    ax.legend(loc="upper right")
    _save(fig, path)


def energy(path: Path, steps, learned, rayleigh, reference: float | None) -> None:
    """Energy against step (learned E and Rayleigh quotient), with the reference as a line."""
    fig, (ax, err) = plt.subplots(1, 2, figsize=(10, 4))
    steps = np.asarray(steps)
    ax.plot(steps, learned, label="E (trained / fixed)")
    ax.plot(steps, rayleigh, label="Rayleigh quotient", ls="--")
    if reference is not None:
        ax.axhline(reference, color="k", lw=0.8, label=f"reference {reference:.10g}")
        for values, name in ((learned, "E"), (rayleigh, "Rayleigh")):
            rel = np.abs(np.asarray(values) - reference) / abs(reference)
            err.semilogy(steps, np.maximum(rel, 1e-17), label=name)
        err.set_ylabel("relative error")
        err.set_xlabel("step")
        err.legend()
    ax.set_xlabel("step")
    ax.set_ylabel("energy")
    ax.legend()
    _save(fig, path)


def losses(path: Path, steps, terms: dict[str, np.ndarray]) -> None:
    """Each named loss term against step, log scale."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, values in terms.items():
        ax.semilogy(steps, np.maximum(np.abs(values), 1e-300), label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    _save(fig, path)
