"""Figures of a time-dependent run in one space dimension: psi(x, t) of the network against the
reference, as x-t maps, as snapshots at a few times, as observables against t, and as a GIF.

Arrays: x (X,), t (T,), psi and psi_ref complex (T, X) with psi[i] the wavefunction at t[i],
v (X,). Each function writes one file and returns nothing.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib import animation
from matplotlib.colors import LogNorm

from .plots import _save

DENSITY_TITLES = ("network |psi|^2", "reference |psi|^2", "|psi - psi_ref|")
LOG_FLOOR = 1e-16  # the error map's lowest colour, when the error is (near) zero everywhere


def _fields(x, t, psi, psi_ref, v):
    """The arrays as NumPy, with the shapes checked: psi and psi_ref (T, X), v (X,)."""
    x, t, v = (np.asarray(a, dtype=float) for a in (x, t, v))
    psi, psi_ref = np.asarray(psi, dtype=complex), np.asarray(psi_ref, dtype=complex)
    want = (t.size, x.size)
    if psi.shape != want or psi_ref.shape != want or v.shape != x.shape:
        raise ValueError(
            f"want psi, psi_ref of shape (T, X) = {want} and v of shape {x.shape}; got "
            f"{psi.shape}, {psi_ref.shape} and {v.shape}"
        )
    return x, t, psi, psi_ref, v


def time_indices(size: int, count: int) -> np.ndarray:
    """min(count, size) distinct indices into t, evenly spaced, with the first and the last."""
    if count < 1 or size < 1:
        raise ValueError(f"need count >= 1 and at least one time; got count={count}, T={size}")
    # Points at least one index apart round to distinct integers, so none is lost.
    return np.linspace(0, size - 1, min(count, size)).round().astype(int)


def _time_label(t: float) -> str:
    return f"t = {t:.4g}"


def _scaled(v: np.ndarray, low: float, high: float) -> np.ndarray:
    """V mapped linearly onto [low, high] (onto low where V is constant)."""
    span = np.ptp(v)
    return low + (high - low) * ((v - v.min()) / span if span > 0 else np.zeros_like(v))


def error_norm(err: np.ndarray) -> LogNorm:
    """Log colour scale of an error map: floor max(max * 1e-6, 1e-16), so zero error works."""
    top = float(np.max(err)) if err.size else 0.0
    floor = max(top * 1e-6, LOG_FLOOR)
    return LogNorm(vmin=floor, vmax=max(top, 10 * floor))


def _potential_behind(ax, x: np.ndarray, v: np.ndarray, *, label: bool = True):
    """V(x) filled in grey on a twin axis behind `ax`, as plots._psi_axes draws it."""
    pot = ax.twinx()
    pot.fill_between(x, np.min(v), v, color="0.85", label="V(x)", zorder=0)
    if label:
        pot.set_ylabel("V(x)", color="0.45")
    pot.tick_params(axis="y", colors="0.45", labelsize="small")
    ax.set_zorder(pot.get_zorder() + 1)
    ax.patch.set_visible(False)
    return pot


def density(path: Path, x, t, psi, psi_ref, v, *, title: str = "") -> None:
    """|psi|^2 of the network and of the reference on one colour scale, and |psi - psi_ref| on
    a log scale, as x-t maps side by side; V(x), scaled onto the t range, drawn in light grey."""
    x, t, psi, psi_ref, v = _fields(x, t, psi, psi_ref, v)
    rho, rho_ref, err = np.abs(psi) ** 2, np.abs(psi_ref) ** 2, np.abs(psi - psi_ref)
    top = max(float(rho.max()), float(rho_ref.max())) or 1.0
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 4.2), sharex=True, sharey=True)
    norm = error_norm(err)
    maps = ((rho, {"vmin": 0.0, "vmax": top}), (rho_ref, {"vmin": 0.0, "vmax": top}))
    maps += ((np.maximum(err, norm.vmin), {"norm": norm, "cmap": "magma"}),)
    for ax, (values, style), name in zip(axes, maps, DENSITY_TITLES):
        mesh = ax.pcolormesh(x, t, values, shading="auto", **style)
        fig.colorbar(mesh, ax=ax)
        if np.ptp(v) > 0:
            ax.plot(x, _scaled(v, t[0], t[-1]), color="0.85", lw=0.8, alpha=0.8)
        ax.set_title(name)
        ax.set_xlabel("x")
    axes[0].set_ylabel("t")
    if title:
        fig.suptitle(title)
    _save(fig, path)


def _snapshot(ax, x, psi: np.ndarray, ref: np.ndarray) -> None:
    """Re psi, Im psi and |psi|^2: the network dashed over the reference (thick, faint)."""
    for i, (name, part) in enumerate(
        (("Re psi", np.real), ("Im psi", np.imag), ("|psi|^2", lambda z: np.abs(z) ** 2))
    ):
        ax.plot(x, part(ref), color=f"C{i}", lw=3, alpha=0.35, label=f"{name} reference")
        ax.plot(x, part(psi), color=f"C{i}", lw=1.2, ls="--", label=f"{name} PINN")


def snapshots(path: Path, x, t, psi, psi_ref, v, *, count: int = 4, title: str = "") -> None:
    """psi at min(count, T) evenly spaced times, t[0] and t[-1] among them, one panel each."""
    x, t, psi, psi_ref, v = _fields(x, t, psi, psi_ref, v)
    picks = time_indices(t.size, count)
    cols = math.ceil(math.sqrt(picks.size))
    rows = math.ceil(picks.size / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.4 * rows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k >= picks.size:
            ax.remove()
            continue
        i = picks[k]
        _potential_behind(ax, x, v, label=k % cols == cols - 1)
        _snapshot(ax, x, psi[i], psi_ref[i])
        ax.set_title(_time_label(t[i]), fontsize="medium")
        ax.set_xlabel("x")
    axes.flat[0].set_ylabel("psi(x, t)")
    axes.flat[0].legend(loc="upper right", fontsize="x-small", ncol=2)
    if title:
        fig.suptitle(title)
    _save(fig, path)


def relative_drift(energy) -> np.ndarray:
    """(<H>(t) - <H>(0)) / |<H>(0)| (divided by 1 where <H>(0) is zero)."""
    energy = np.asarray(energy, dtype=float)
    return (energy - energy[0]) / (abs(energy[0]) or 1.0)


OBSERVABLES = (
    ("<x>(t)", lambda h: np.asarray(h["x"], dtype=float)),
    ("norm - 1", lambda h: np.asarray(h["norm"], dtype=float) - 1.0),
    ("(<H>(t) - <H>(0)) / |<H>(0)|", lambda h: relative_drift(h["energy"])),
)


def observables(path: Path, t, network: dict, reference: dict, *, title: str = "") -> None:
    """<x>, norm - 1 and each curve's energy drift from its own <H>(0) against t, stacked:
    the network dashed, the reference solid. network, reference: {"norm", "x", "energy"}."""
    t = np.asarray(t, dtype=float)
    fig, axes = plt.subplots(3, 1, figsize=(7, 7.5), sharex=True)
    for ax, (name, value) in zip(axes, OBSERVABLES):
        ax.plot(t, value(reference), color="C0", lw=1.6, label="reference")
        ax.plot(t, value(network), color="C1", lw=1.2, ls="--", label="PINN")
        ax.set_ylabel(name)
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    axes[0].legend(fontsize="small")
    axes[-1].set_xlabel("t")
    if title:
        axes[0].set_title(title)
    _save(fig, path)


def density_animation(
    path: Path, x, t, psi, psi_ref, v, *, frames: int = 60, fps: int = 15
) -> None:
    """A GIF of |psi|^2, network (dashed) over reference (thick, faint), one frame at each of
    min(frames, T) evenly spaced times; V(x) scaled into the plot in grey behind."""
    x, t, psi, psi_ref, v = _fields(x, t, psi, psi_ref, v)
    picks = time_indices(t.size, frames)
    rho, rho_ref = np.abs(psi) ** 2, np.abs(psi_ref) ** 2
    top = 1.1 * (max(float(rho[picks].max()), float(rho_ref[picks].max())) or 1.0)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.fill_between(x, 0.0, _scaled(v, 0.0, 0.9 * top), color="0.85", label="V(x) (scaled)")
    (ref_line,) = ax.plot(x, rho_ref[0], color="C0", lw=3, alpha=0.35, label="reference")
    (net_line,) = ax.plot(x, rho[0], color="C0", lw=1.2, ls="--", label="PINN")
    label = ax.text(0.02, 0.92, "", transform=ax.transAxes)
    ax.set(xlim=(x[0], x[-1]), ylim=(0.0, top), xlabel="x", ylabel="|psi|^2")
    ax.legend(loc="upper right", fontsize="x-small")
    fig.tight_layout()

    def draw(i: int):
        ref_line.set_ydata(rho_ref[i])
        net_line.set_ydata(rho[i])
        label.set_text(_time_label(t[i]))
        return ref_line, net_line, label

    movie = animation.FuncAnimation(fig, draw, frames=[int(i) for i in picks], blit=False)
    movie.save(path, writer=animation.PillowWriter(fps=fps), dpi=80)
    plt.close(fig)
