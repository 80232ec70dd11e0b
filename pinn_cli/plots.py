"""Figures from NumPy arrays: the wavefunction against the reference, energy and loss histories."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib import ticker

from . import outputs

# Fixed margins (figure fractions) of the three figures every 1-D run draws: tight_layout
# renders each figure once more to measure its labels, ~40% of the time spent on the figures.
PSI_MARGINS = dict(left=0.1, right=0.9, bottom=0.12, top=0.92)
ENERGY_MARGINS = dict(left=0.08, right=0.98, bottom=0.12, top=0.96, wspace=0.3)
LOSS_MARGINS = dict(left=0.11, right=0.97, bottom=0.12, top=0.96)


def _save(fig, path: Path, margins: dict | None = None) -> None:
    if margins is None:
        fig.tight_layout()
    else:
        fig.subplots_adjust(**margins)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plain_log_labels(ax) -> None:
    """A log y axis labelled 1e-10, not $10^{-10}$: matplotlib's default labels go through its
    TeX-like parser, whose first use builds a grammar (0.1-0.2 s of the ~0.7 s a run spends
    on its figures)."""
    ax.yaxis.set_major_formatter(ticker.LogFormatter(labelOnlyBase=True))
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())


def _psi_axes(x, v):
    """A figure for psi(x), with V(x) filled in grey on a twin axis behind it."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    pot = ax.twinx()
    pot.fill_between(x, np.min(v), v, color="0.85", label="V(x)", zorder=0)
    pot.set_ylabel("V(x)", color="0.45")
    pot.tick_params(axis="y", colors="0.45")
    ax.set_zorder(pot.get_zorder() + 1)
    ax.patch.set_visible(False)
    ax.set_xlabel("x")
    ax.set_ylabel("psi(x)")
    return fig, ax


def wavefunction(path: Path, x, curves, v, *, title: str = "") -> None:
    """PINN psi (dashed) and the reference (thick, faint) for each state; V(x) drawn behind.

    curves: [(n, psi, psi_reference)] on x, each normalised and sign-aligned.
    """
    fig, ax = _psi_axes(x, v)
    for i, (n, psi, exact) in enumerate(curves):
        label = "reference" if len(curves) == 1 else f"reference, n={n}"
        ax.plot(x, exact, color=f"C{i}", lw=3, alpha=0.35, label=label)
        ax.plot(x, psi, color=f"C{i}", lw=1.2, ls="--", label="PINN" if len(curves) == 1 else None)
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize="small")
    _save(fig, path, PSI_MARGINS)


def ensemble_wavefunctions(path: Path, x, curves, v, *, title: str = "") -> None:
    """Every member's psi (thin) over the reference (thick, faint); V(x) drawn behind.

    curves: [(n, psi, psi_reference)] per member, each normalised and sign-aligned.
    """
    fig, ax = _psi_axes(x, v)
    ax.plot(x, curves[0][2], color="k", lw=3, alpha=0.3, label="reference")
    for i, (_, psi, _) in enumerate(curves):
        ax.plot(x, psi, color=f"C{i % 10}", lw=0.9, ls="--", label=f"member {i}")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize="x-small", ncol=2)
    _save(fig, path, PSI_MARGINS)


def _by_state(h: dict):
    """(label, rows) per curve: one per state, or one per member of an ensemble."""
    key = "member" if "member" in h else "state"
    groups = h.get(key, np.zeros_like(h["step"]))
    for n in np.unique(groups):
        yield int(n), groups == n


def energy(path: Path, h: dict, references: dict[int, float]) -> None:
    """Energy against step (trained or fixed E and Rayleigh quotient) with the references, and
    their relative errors, one colour per state."""
    fig, (ax, err) = plt.subplots(1, 2, figsize=(10, 4))
    members = "member" in h
    for i, (n, rows) in enumerate(_by_state(h)):
        steps, ref = h["step"][rows], references.get(0 if members else n)
        tag = f" member {n}" if members else ("" if len(references) == 1 else f" n={n}")
        ax.plot(steps, h["energy"][rows], color=f"C{i}", label=f"E{tag}")
        ax.plot(steps, h["rayleigh"][rows], color=f"C{i}", ls="--", label=f"Rayleigh{tag}")
        if ref is None:
            continue
        ax.axhline(ref, color=f"C{i}", lw=0.6, alpha=0.6)
        for values, ls in ((h["energy"][rows], "-"), (h["rayleigh"][rows], "--")):
            rel = np.abs(values - ref) / abs(ref)
            err.semilogy(steps, np.maximum(rel, 1e-17), color=f"C{i}", ls=ls)
    ax.set_xlabel("step")
    ax.set_ylabel("energy (thin lines: references)")
    ax.legend(fontsize="small")
    err.set_xlabel("step")
    err.set_ylabel("relative error (solid E, dashed Rayleigh)")
    _plain_log_labels(err)
    _save(fig, path, ENERGY_MARGINS)


def losses(path: Path, h: dict, keys: list[str]) -> None:
    """Each named loss term against step, log scale, one colour per state."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (n, rows) in enumerate(_by_state(h)):
        for j, key in enumerate(keys):
            values = np.abs(h[key][rows])
            ok = np.isfinite(values)
            if ok.any():
                tag = "member " if "member" in h else "n="
                label = key if n == 0 and i == 0 else (f"{key} {tag}{n}" if j == 0 else None)
                ax.semilogy(
                    h["step"][rows][ok],
                    np.maximum(values[ok], 1e-300),
                    color=f"C{i}",
                    ls=("-", "--", ":")[j % 3],
                    label=label,
                )
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    _plain_log_labels(ax)
    ax.legend(fontsize="small")
    _save(fig, path, LOSS_MARGINS)


def wavefunction_maps(path: Path, x, y, maps, errors, v, *, titles: list[str], title: str) -> None:
    """2-D runs: per state, psi as a heat map with V's contours over it, and its error map
    beside it (psi minus its best fit in the reference level's eigenspace)."""
    rows = len(maps)
    fig, axes = plt.subplots(rows, 2, figsize=(8.4, 3.6 * rows), squeeze=False)
    for (left, right), psi, err, name in zip(axes, maps, errors, titles):
        scale = np.nanmax(np.abs(psi)) or 1.0
        im = left.pcolormesh(x, y, psi, cmap="RdBu_r", vmin=-scale, vmax=scale, shading="auto")
        if np.nanmax(v) > np.nanmin(v):
            left.contour(x, y, v, levels=6, colors="0.3", linewidths=0.6)
        fig.colorbar(im, ax=left)
        left.set_title(name, fontsize="small")
        worst = np.nanmax(np.abs(err)) or 1.0
        im = right.pcolormesh(x, y, err, cmap="PuOr", vmin=-worst, vmax=worst, shading="auto")
        fig.colorbar(im, ax=right)
        right.set_title(f"error (max {worst:.1e})", fontsize="small")
        for ax in (left, right):
            ax.set_aspect("equal")
            ax.set_xlabel("x")
            ax.set_ylabel("y")
    fig.suptitle(title)
    _save(fig, path)


def run_figures(
    run_dir: Path, x, curves, v, *, title: str, references: dict[int, float], members=False
) -> None:
    """wavefunction.png, energy.png and loss.png of a run; histories come from metrics.csv.
    members: `curves` are an ensemble's networks, drawn over one reference."""
    draw = ensemble_wavefunctions if members else wavefunction
    draw(Path(run_dir) / outputs.WAVEFUNCTION_PNG, x, curves, v, title=title)
    history_figures(run_dir, references)


def history_figures(run_dir: Path, references: dict[int, float]) -> None:
    path = Path(run_dir) / outputs.METRICS
    if not path.exists():
        return
    h = {k: np.asarray(c) for k, c in outputs.read_metrics(path).items() if k != "stage"}
    if len(h.get("step", ())) == 0:
        return
    energy(Path(run_dir) / outputs.ENERGY_PNG, h, references)
    losses(Path(run_dir) / outputs.LOSS_PNG, h, [k for k in ("residual", "norm", "ritz") if k in h])
