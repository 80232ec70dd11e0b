"""Tests for pinn_cli.plots_time: each figure is written, is a valid image, and draws what it
claims. The reference is a closed-form coherent state swinging in V = x^2 / 2; the "network"
is a slightly perturbed copy of it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.collections import PolyCollection, QuadMesh
from matplotlib.colors import LogNorm
from PIL import Image

from pinn_cli import plots_time

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
AMPLITUDE = 2.0  # the packet starts at rest at x = 2 and swings between -2 and 2


def coherent_state(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """psi(x, t) (T, X) of the harmonic oscillator (hbar = m = omega = 1), displaced by 2."""
    q = AMPLITUDE * np.cos(t)[:, None]
    p = -AMPLITUDE * np.sin(t)[:, None]
    phase = p * (x[None, :] - q / 2) - t[:, None] / 2
    return np.pi**-0.25 * np.exp(-((x[None, :] - q) ** 2) / 2 + 1j * phase)


@pytest.fixture(scope="module")
def run() -> dict:
    x = np.linspace(-8.0, 8.0, 201)
    t = np.linspace(0.0, 2 * np.pi, 41)
    psi_ref = coherent_state(x, t)
    psi = psi_ref * (1 + 0.02 * np.sin(x))[None, :] * np.exp(0.03j * t)[:, None]
    return {"x": x, "t": t, "psi": psi, "psi_ref": psi_ref, "v": x**2 / 2}


@pytest.fixture
def figures(monkeypatch) -> list:
    """The figures handed to plots_time._save, kept for inspection after they are written."""
    kept, save = [], plots_time._save

    def keep(fig, path):
        kept.append(fig)
        save(fig, path)

    monkeypatch.setattr(plots_time, "_save", keep)
    return kept


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        image.verify()


def titled(fig) -> dict:
    """The figure's axes by title (colour bars and twin axes have none)."""
    return {ax.get_title(): ax for ax in fig.axes if ax.get_title()}


def observables_of(x: np.ndarray, psi: np.ndarray, v: np.ndarray) -> dict:
    dx = x[1] - x[0]
    rho = np.abs(psi) ** 2
    norm = rho.sum(axis=1) * dx
    kinetic = 0.5 * (np.abs(np.gradient(psi, dx, axis=1)) ** 2).sum(axis=1) * dx
    return {
        "norm": norm,
        "x": (rho * x).sum(axis=1) * dx / norm,
        "energy": kinetic + (rho * v).sum(axis=1) * dx,
    }


def test_the_reference_is_a_normalised_swinging_packet(run):
    seen = observables_of(run["x"], run["psi_ref"], run["v"])
    np.testing.assert_allclose(seen["norm"], 1.0, atol=1e-10)
    np.testing.assert_allclose(seen["x"], AMPLITUDE * np.cos(run["t"]), atol=1e-8)
    # np.gradient's second-order error at momentum 2 and dx = 0.08 is about 1 %
    np.testing.assert_allclose(seen["energy"], (1 + AMPLITUDE**2) / 2, rtol=2e-2)


def test_time_indices_are_evenly_spaced_with_both_ends():
    assert plots_time.time_indices(41, 4).tolist() == [0, 13, 27, 40]
    assert plots_time.time_indices(5, 9).tolist() == [0, 1, 2, 3, 4]
    assert plots_time.time_indices(41, 1).tolist() == [0]
    for size, count in ((41, 40), (97, 60), (61, 60)):
        picks = plots_time.time_indices(size, count)
        assert len(np.unique(picks)) == count and picks[0] == 0 and picks[-1] == size - 1
    with pytest.raises(ValueError, match="count"):
        plots_time.time_indices(41, 0)


def test_density_maps_network_reference_and_log_error(run, figures, tmp_path):
    path = tmp_path / "density.png"
    plots_time.density(path, **run, title="coherent state")
    assert_png(path)
    (fig,) = figures
    panels = titled(fig)
    assert tuple(panels) == plots_time.DENSITY_TITLES
    assert len(fig.axes) == 6  # three maps, each with its colour bar
    meshes = [next(c for c in ax.collections if isinstance(c, QuadMesh)) for ax in panels.values()]
    rho, rho_ref = np.abs(run["psi"]) ** 2, np.abs(run["psi_ref"]) ** 2
    np.testing.assert_allclose(meshes[0].get_array().reshape(rho.shape), rho)
    np.testing.assert_allclose(meshes[1].get_array().reshape(rho.shape), rho_ref)
    top = max(rho.max(), rho_ref.max())
    assert meshes[0].get_clim() == meshes[1].get_clim() == (0.0, top)
    err = np.abs(run["psi"] - run["psi_ref"])
    assert isinstance(meshes[2].norm, LogNorm)
    assert meshes[2].norm.vmax == pytest.approx(err.max())
    assert meshes[2].norm.vmin == pytest.approx(err.max() * 1e-6)
    assert fig._suptitle.get_text() == "coherent state"


def test_density_of_a_perfect_network_uses_the_log_floor(run, figures, tmp_path):
    path = tmp_path / "exact.png"
    plots_time.density(path, **{**run, "psi": run["psi_ref"]})
    assert_png(path)
    error = titled(figures[0])["|psi - psi_ref|"]
    mesh = next(c for c in error.collections if isinstance(c, QuadMesh))
    assert mesh.norm.vmin == plots_time.LOG_FLOOR < mesh.norm.vmax
    values = mesh.get_array()
    assert np.ma.count_masked(values) == 0 and np.all(values == plots_time.LOG_FLOOR)


def test_density_rejects_mismatched_shapes(run, tmp_path):
    with pytest.raises(ValueError, match=r"\(T, X\)"):
        plots_time.density(tmp_path / "bad.png", **{**run, "psi": run["psi"].T})


def dashed_density(ax) -> np.ndarray:
    """The network's |psi|^2 in a snapshot panel: the third dashed line."""
    dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert len(dashed) == 3 and len(ax.get_lines()) == 6
    return dashed[2].get_ydata()


def test_snapshots_at_evenly_spaced_times_with_both_ends(run, figures, tmp_path):
    path = tmp_path / "snapshots.png"
    plots_time.snapshots(path, **run, count=4)
    assert_png(path)
    panels = titled(figures[0])
    picks = [0, 13, 27, 40]
    assert list(panels) == [f"t = {run['t'][i]:.4g}" for i in picks]
    for i, ax in zip(picks, panels.values()):
        np.testing.assert_allclose(dashed_density(ax), np.abs(run["psi"][i]) ** 2)
        twin = [o for o in figures[0].axes if o is not ax and o.bbox.bounds == ax.bbox.bounds]
        assert any(isinstance(c, PolyCollection) for c in twin[0].collections)  # V(x) behind


def test_snapshots_clamp_count_to_the_number_of_times(run, figures, tmp_path):
    short = {**run, "t": run["t"][:5], "psi": run["psi"][:5], "psi_ref": run["psi_ref"][:5]}
    path = tmp_path / "clamped.png"
    plots_time.snapshots(path, **short, count=9)
    assert_png(path)
    assert list(titled(figures[0])) == [f"t = {s:.4g}" for s in short["t"]]


def test_observables_stack_three_panels_network_dashed(run, figures, tmp_path):
    network = observables_of(run["x"], run["psi"], run["v"])
    reference = observables_of(run["x"], run["psi_ref"], run["v"])
    path = tmp_path / "observables.png"
    plots_time.observables(path, run["t"], network, reference, title="obs")
    assert_png(path)
    axes = figures[0].axes
    assert [ax.get_ylabel() for ax in axes] == [name for name, _ in plots_time.OBSERVABLES]
    drift = (network["energy"] - network["energy"][0]) / abs(network["energy"][0])
    expected = (network["x"], network["norm"] - 1, drift)
    for ax, want in zip(axes, expected):
        solid, dashed = ax.get_lines()
        assert (solid.get_linestyle(), dashed.get_linestyle()) == ("-", "--")
        np.testing.assert_allclose(dashed.get_ydata(), want)
    np.testing.assert_allclose(axes[0].get_lines()[0].get_ydata(), reference["x"])


def test_relative_drift_survives_zero_initial_energy():
    np.testing.assert_allclose(plots_time.relative_drift([0.0, 0.5]), [0.0, 0.5])
    np.testing.assert_allclose(plots_time.relative_drift([-2.0, -1.0]), [0.0, 0.5])


@pytest.mark.parametrize("frames", [60, 10])
def test_density_animation_has_one_frame_per_time(run, tmp_path, frames):
    path = tmp_path / "density.gif"
    plots_time.density_animation(path, **run, frames=frames, fps=20)
    with Image.open(path) as gif:
        assert gif.format == "GIF"
        assert gif.n_frames == min(frames, run["t"].size)
        assert gif.size == (480, 280)
        first = np.asarray(gif.convert("RGB"))
        gif.seek(gif.n_frames - 1)
        last = np.asarray(gif.convert("RGB"))
    assert not np.array_equal(first, last)
