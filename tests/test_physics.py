import jax.numpy as jnp
import numpy as np
import pytest

from pinn_cli import physics
from pinn_cli.model import derivatives
from pinn_cli.potentials import barrier, finite_well, infinite_well


def sine(n, lo=0.0, hi=1.0):
    return lambda _params, x: jnp.sin(n * jnp.pi * (x - lo) / (hi - lo))


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_exact_eigenfunctions_have_zero_residual(n):
    x = jnp.linspace(0.01, 0.99, 57)
    p, _, d2p = physics.evaluate(sine(n), None, x)
    r = physics.residual(p, d2p, jnp.zeros_like(x), (n * np.pi) ** 2)
    assert float(jnp.max(jnp.abs(r))) < 1e-10 * (n * np.pi) ** 2
    # ...and a wrong energy does not
    r_wrong = physics.residual(p, d2p, jnp.zeros_like(x), (n * np.pi) ** 2 * 1.01)
    assert float(jnp.max(jnp.abs(r_wrong))) > 1e-2


def test_derivatives_match_closed_form():
    x = jnp.linspace(-1.0, 1.0, 11)
    _, dp, d2p = physics.evaluate(lambda _, t: jnp.exp(2 * t) * t**2, None, x)
    e = np.exp(2 * np.asarray(x))
    xs = np.asarray(x)
    np.testing.assert_allclose(dp, e * (2 * xs**2 + 2 * xs), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(d2p, e * (4 * xs**2 + 8 * xs + 2), rtol=1e-12, atol=1e-12)
    assert derivatives(lambda _, t: t**3, None, jnp.asarray(2.0))[2] == pytest.approx(12.0)


@pytest.mark.parametrize("n", [1, 2, 4])
def test_rayleigh_quotient_of_exact_state_is_its_energy(n):
    pot = infinite_well((0.0, 2.0))
    grid = physics.gauss_grid(pot.pieces, 64, pot)
    p, dp, _ = physics.evaluate(sine(n, 0.0, 2.0), None, jnp.asarray(grid.x))
    e = physics.rayleigh_quotient(p, dp, grid.w, grid.v)
    assert float(e) == pytest.approx((n * np.pi / 2.0) ** 2, rel=1e-13)


def test_gauss_grid_integrates_discontinuous_integrands_exactly():
    pot = finite_well((-2.0, 2.0), V0=50.0, width=1.0)
    grid = physics.gauss_grid(pot.pieces, 60, pot)
    assert not np.any(np.isin(grid.x, pot.breakpoints))
    # integral of V(x) x^2 over [-2, 2] = 50 * 2 * (8 - 1/8) / 3
    exact = 50.0 * 2.0 * (8.0 - 0.125) / 3.0
    assert np.sum(grid.w * grid.v * grid.x**2) == pytest.approx(exact, rel=1e-14)
    assert np.sum(grid.w) == pytest.approx(4.0, rel=1e-14)


def test_uniform_grid_is_trapezoid():
    pot = barrier((0.0, 1.0), V0=50.0, width=0.2)
    grid = physics.uniform_grid(pot.domain, 101, pot)
    assert np.sum(grid.w) == pytest.approx(1.0)
    assert np.sum(grid.w * grid.x**2) == pytest.approx(1 / 3, rel=1e-4)


def test_hard_normalisation_is_scale_invariant_and_penalty_is_not():
    x = jnp.linspace(0.05, 0.95, 40)
    w = jnp.full_like(x, 1 / 40)
    v = jnp.zeros_like(x)
    p, _, d2p = physics.evaluate(sine(1), None, x)
    kw = dict(w=w, v=v, energy=9.0)
    hard1 = physics.loss_terms(p, d2p, normalization="hard", norm_weight=1.0, **kw)
    hard3 = physics.loss_terms(3 * p, 3 * d2p, normalization="hard", norm_weight=1.0, **kw)
    assert float(hard1["residual"]) == pytest.approx(float(hard3["residual"]), rel=1e-12)
    pen = physics.loss_terms(3 * p, 3 * d2p, normalization="penalty", norm_weight=2.0, **kw)
    n2 = float(jnp.sum(w * 9 * p**2))
    assert float(pen["norm"]) == pytest.approx(2.0 * (n2 - 1.0) ** 2)
