import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pinn_cli import physics, quadrature
from pinn_cli.activations import ACTIVATIONS
from pinn_cli.model import derivatives, make_trial_function
from pinn_cli.potentials import barrier, finite_well, infinite_well


def sine(n, lo=0.0, hi=1.0):
    return lambda _params, x: jnp.sin(n * jnp.pi * (x[0] - lo) / (hi - lo))


def column(x):
    return jnp.asarray(x)[:, None]


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_exact_eigenfunctions_have_zero_residual(n):
    x = column(jnp.linspace(0.01, 0.99, 57))
    p, _, lap = physics.evaluate(sine(n), None, x)
    r = physics.residual(p, lap, jnp.zeros_like(p), (n * np.pi) ** 2)
    assert float(jnp.max(jnp.abs(r))) < 1e-10 * (n * np.pi) ** 2
    # ...and a wrong energy does not
    r_wrong = physics.residual(p, lap, jnp.zeros_like(p), (n * np.pi) ** 2 * 1.01)
    assert float(jnp.max(jnp.abs(r_wrong))) > 1e-2


def test_product_of_sines_has_zero_residual_in_two_dimensions():
    """sin(n pi x / Lx) sin(m pi y / Ly) on [0, Lx] x [0, Ly] at E = pi^2 (n^2/Lx^2 + m^2/Ly^2)."""
    lx, ly, n, m = 1.0, 2.0, 2, 3

    def psi(_, x):
        return jnp.sin(n * jnp.pi * x[0] / lx) * jnp.sin(m * jnp.pi * x[1] / ly)

    pts = jnp.asarray(np.random.default_rng(0).uniform([0, 0], [lx, ly], size=(40, 2)))
    p, grad, lap = physics.evaluate(psi, None, pts)
    assert grad.shape == (40, 2)
    e = np.pi**2 * (n**2 / lx**2 + m**2 / ly**2)
    assert float(jnp.max(jnp.abs(physics.residual(p, lap, 0.0, e)))) < 1e-10 * e
    assert float(jnp.max(jnp.abs(physics.residual(p, lap, 0.0, 1.01 * e)))) > 1e-2


def test_derivatives_match_closed_form():
    x = column(jnp.linspace(-1.0, 1.0, 11))
    _, dp, lap = physics.evaluate(lambda _, t: jnp.exp(2 * t[0]) * t[0] ** 2, None, x)
    xs = np.asarray(x)[:, 0]
    e = np.exp(2 * xs)
    np.testing.assert_allclose(dp[:, 0], e * (2 * xs**2 + 2 * xs), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(lap, e * (4 * xs**2 + 8 * xs + 2), rtol=1e-12, atol=1e-12)
    assert derivatives(lambda _, t: t[0] ** 3, None, jnp.asarray([2.0]))[2] == pytest.approx(12.0)


@pytest.mark.parametrize("n", [1, 2, 4])
def test_rayleigh_quotient_of_exact_state_is_its_energy(n):
    pot = infinite_well((0.0, 2.0))
    rule = quadrature.gauss(pot.box, 64)
    p, grad, _ = physics.evaluate(sine(n, 0.0, 2.0), None, jnp.asarray(rule.x))
    e = physics.rayleigh_quotient(p, grad, rule.w, pot.values(rule.x))
    assert float(e) == pytest.approx((n * np.pi / 2.0) ** 2, rel=1e-13)


def test_gauss_rule_integrates_discontinuous_integrands_exactly():
    pot = finite_well((-2.0, 2.0), V0=50.0, width=1.0)
    rule = quadrature.gauss(pot.box, 60)
    assert rule.x.shape[1] == 1
    assert not np.any(np.isin(rule.x, pot.breakpoints))
    # integral of V(x) x^2 over [-2, 2] = 50 * 2 * (8 - 1/8) / 3
    exact = 50.0 * 2.0 * (8.0 - 0.125) / 3.0
    assert np.sum(rule.w * pot.values(rule.x) * rule.x[:, 0] ** 2) == pytest.approx(
        exact, rel=1e-14
    )
    assert np.sum(rule.w) == pytest.approx(4.0, rel=1e-14)


def test_tensor_rule_integrates_a_jump_on_each_axis_exactly():
    """A 2-D box with a breakpoint on each axis: the product rule is exact for a polynomial
    times a step in x and a step in y, and no node lies on a breakpoint line."""
    box = quadrature.Box(((0.0, 1.0), (-1.0, 2.0)), ((0.3,), (0.5, 1.0)))
    rule = quadrature.gauss(box, 400)
    x, y = rule.x[:, 0], rule.x[:, 1]
    assert rule.x.shape[1] == 2 and not np.any(np.isin(x, [0.3])) and not np.any(np.isin(y, [0.5]))
    f = (x > 0.3) * x**3 * (y > 0.5) * y**2
    assert np.sum(rule.w * f) == pytest.approx((1 - 0.3**4) / 4 * (8 - 0.125) / 3, rel=1e-13)
    assert np.sum(rule.w) == pytest.approx(3.0, rel=1e-14)


def test_uniform_rule_is_trapezoid():
    pot = barrier((0.0, 1.0), V0=50.0, width=0.2)
    rule = quadrature.uniform(pot.box, 101)
    assert np.sum(rule.w) == pytest.approx(1.0)
    assert np.sum(rule.w * rule.x[:, 0] ** 2) == pytest.approx(1 / 3, rel=1e-4)


def nested_laplacian(psi, params, x):
    """lap psi at one point by nested reverse-over-reverse autodiff (the Hessian's trace)."""
    return jnp.trace(jax.hessian(lambda y: psi(params, y))(x))


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize(
    "box",
    [
        quadrature.Box(((-2.0, 2.0),), ((-0.5, 0.5),)),
        quadrature.Box(((0.0, 1.0), (-1.0, 2.0)), ((0.4,), ())),
    ],
    ids=["1d", "2d"],
)
@pytest.mark.parametrize("output", ["exp", "linear"])
def test_one_pass_laplacian_matches_nested_autodiff(activation, box, output):
    check_against_nested_autodiff(activation, box, output)


@pytest.mark.parametrize("output", ["exp", "linear"])
def test_one_pass_laplacian_with_corner_functions_matches_nested_autodiff(output):
    """A box whose jump lines cross at a corner: the network also takes the corner functions,
    which depend on both axes."""
    box = quadrature.Box(((-2.0, 2.0), (-1.0, 2.0)), ((-0.5, 0.5), (0.6,)), ((0.5, 0.6),))
    check_against_nested_autodiff("tanh", box, output)


@pytest.mark.parametrize("mirror", [(True, True), (True, False), (False, True)])
def test_a_mirrored_trial_function_is_even_and_its_laplacian_matches_nested_autodiff(mirror):
    """Mirror axes (a ground state of a V symmetric about the box's centre): psi is even along
    each of them for any parameters, and the one-pass derivatives still match autodiff."""
    box = quadrature.Box(
        ((-2.0, 2.0), (-1.0, 3.0)),
        ((-0.5, 0.5), (0.4, 1.6)),
        ((-0.5, 0.4), (0.5, 0.4), (-0.5, 1.6), (0.5, 1.6)),
    )
    psi, params = check_against_nested_autodiff("tanh", box, "exp", mirror)
    x = np.random.default_rng(2).uniform([-2.0, -1.0], [2.0, 3.0], size=(23, 2))
    for axis, centre in ((0, 0.0), (1, 1.0)):
        flipped = x.copy()
        flipped[:, axis] = 2.0 * centre - x[:, axis]
        difference = np.max(np.abs(psi(params, jnp.asarray(flipped)) - psi(params, jnp.asarray(x))))
        scale = np.max(np.abs(psi(params, jnp.asarray(x))))
        assert (difference < 1e-12 * scale) == mirror[axis]


@pytest.mark.parametrize("odd", [0.0, 1.0])
def test_an_odd_or_even_1d_trial_function_has_its_parity_and_exact_derivatives(odd):
    """A 1-D state with a parity: even features, times u = (x - c) / half when odd."""
    box = quadrature.Box(((-1.0, 2.0),), ((0.2, 0.8),))
    psi, params = check_against_nested_autodiff("tanh", box, "linear", (True,), (odd,), True)
    x = jnp.asarray(np.random.default_rng(4).uniform(0.0, 1.5, size=(9, 1)))
    sign = -1.0 if odd else 1.0
    np.testing.assert_allclose(psi(params, 1.0 - x), sign * psi(params, x), rtol=1e-12, atol=1e-15)
    assert psi.parity == (-1 if odd else 1)


def check_against_nested_autodiff(activation, box, output, mirror=(), odd=(), by_output=False):
    psi, params = make_trial_function(
        box=box,
        width=6,
        depth=2,
        activation=activation,
        output=output,
        breakpoint_features=True,
        key=jax.random.key(3),
        scale=1.3,
        mirror=mirror,
        odd=odd,
        mirror_output=by_output,
    )
    lo = np.array([a for a, _ in box.intervals])
    hi = np.array([b for _, b in box.intervals])
    x = jnp.asarray(np.random.default_rng(1).uniform(lo, hi, size=(17, box.dim)))
    p, grad, lap = psi.taylor(params, x)
    np.testing.assert_allclose(p, jax.vmap(lambda y: psi(params, y))(x), rtol=1e-13, atol=1e-14)
    grads = jax.vmap(jax.grad(lambda y: psi(params, y)))(x)
    np.testing.assert_allclose(grad, grads, rtol=1e-11, atol=1e-12)
    laps = jax.vmap(lambda y: nested_laplacian(psi, params, y))(x)
    np.testing.assert_allclose(lap, laps, rtol=1e-10, atol=1e-10)
    # one point at a time (what the Levenberg-Marquardt Jacobian differentiates) agrees too
    p0, _, lap0 = derivatives(psi, params, x[0])
    assert float(p0) == pytest.approx(float(p[0]), rel=1e-13)
    assert float(lap0) == pytest.approx(float(lap[0]), rel=1e-11, abs=1e-12)
    return psi, params


def test_trial_function_vanishes_on_the_whole_boundary_of_a_box():
    box = quadrature.Box(((0.0, 1.0), (-1.0, 2.0)), ((), ()))
    psi, params = make_trial_function(
        box=box,
        width=5,
        depth=1,
        activation="tanh",
        output="exp",
        breakpoint_features=False,
        key=jax.random.key(0),
    )
    t = jnp.linspace(0.0, 1.0, 9)
    edges = [
        jnp.stack([t * 0.0, -1.0 + 3.0 * t], -1),
        jnp.stack([t * 0.0 + 1.0, -1.0 + 3.0 * t], -1),
        jnp.stack([t, t * 0.0 - 1.0], -1),
        jnp.stack([t, t * 0.0 + 2.0], -1),
    ]
    for edge in edges:
        assert float(jnp.max(jnp.abs(psi(params, edge)))) < 1e-15
    assert float(psi(params, jnp.asarray([[0.5, 0.5]]))[0]) > 0


def test_projection_removes_the_lower_states():
    rule = quadrature.gauss(infinite_well((0.0, 1.0)).box, 64)
    x, w = rule.x[:, 0], rule.w
    ground = np.sqrt(2.0) * np.sin(np.pi * x)[:, None]  # normalised on [0, 1]
    ground_grad = np.sqrt(2.0) * np.pi * np.cos(np.pi * x)[:, None, None]
    lower = physics.Lower(ground, -(np.pi**2) * ground, ground_grad)
    f, f_grad, f_lap = x - x**3, (1.0 - 3.0 * x**2)[:, None], -6.0 * x  # overlaps the ground
    c = float(physics.overlaps(lower, w, f)[0])
    p, lap = physics.project(lower, w, f, f_lap)
    assert abs(c) > 0.1
    assert abs(float(np.sum(w * p * ground[:, 0]))) < 1e-14
    # the Laplacian of the projected function: lap f - c lap(ground)
    np.testing.assert_allclose(lap, f_lap + c * np.pi**2 * ground[:, 0], rtol=1e-13, atol=1e-13)
    # its gradient: grad f - c grad(ground)
    p2, grad, lap2 = physics.project_fields(lower, w, f, f_grad, f_lap)
    np.testing.assert_allclose(grad, f_grad - c * ground_grad[:, 0], rtol=1e-13, atol=1e-13)
    for a, b in ((p2, p), (lap2, lap)):
        np.testing.assert_allclose(a, b, rtol=1e-15, atol=1e-15)
    # zero columns (every state of a run padded to one shape) project the same
    padded = lower.padded(4)
    assert padded.p.shape == (64, 4) and padded.grad.shape == (64, 4, 1)
    assert lower.padded(1) is lower
    for a, b in zip(physics.project_fields(padded, w, f, f_grad, f_lap), (p, grad, lap)):
        np.testing.assert_allclose(a, b, rtol=1e-15, atol=1e-15)


def test_lower_content_is_the_part_along_the_lower_states_over_the_rest():
    """3 sin(pi x) + 0.5 sin(2 pi x) (orthogonal, both normalised by sqrt 2) against the
    ground state: 3^2 / 0.5^2 = 36 along it for one part left; 0 for a function orthogonal to
    it; unchanged by psi's scale."""
    rule = quadrature.gauss(infinite_well((0.0, 1.0)).box, 64)
    x, w = rule.x[:, 0], rule.w
    ground = np.sqrt(2.0) * np.sin(np.pi * x)
    second = np.sqrt(2.0) * np.sin(2.0 * np.pi * x)
    lower = physics.Lower(ground[:, None], ground[:, None], ground[:, None, None])
    f = 3.0 * ground + 0.5 * second
    assert float(physics.lower_content(lower, w, f)) == pytest.approx(36.0, rel=1e-12)
    assert float(physics.lower_content(lower, w, -7.0 * f)) == pytest.approx(36.0, rel=1e-12)
    assert float(physics.lower_content(lower, w, second)) < 1e-28


def test_hard_normalisation_is_scale_invariant_and_penalty_is_not():
    x = column(jnp.linspace(0.05, 0.95, 40))
    w = jnp.full(40, 1 / 40)
    v = jnp.zeros(40)
    p, _, lap = physics.evaluate(sine(1), None, x)
    kw = dict(w=w, v=v, energy=9.0)
    hard1 = physics.loss_terms(p, lap, normalization="hard", norm_weight=1.0, **kw)
    hard3 = physics.loss_terms(3 * p, 3 * lap, normalization="hard", norm_weight=1.0, **kw)
    assert float(hard1["residual"]) == pytest.approx(float(hard3["residual"]), rel=1e-12)
    pen = physics.loss_terms(3 * p, 3 * lap, normalization="penalty", norm_weight=2.0, **kw)
    n2 = float(jnp.sum(w * 9 * p**2))
    assert float(pen["norm"]) == pytest.approx(2.0 * (n2 - 1.0) ** 2)


def test_trial_functions_that_differ_only_in_breakpoint_positions_share_their_structure():
    """A sweep over a well's width compiles once: the breakpoint and corner positions are leaves
    of the trial function, so two widths give one pytree structure (what jit and the persistent
    cache key on) and evaluate with the positions they were given."""

    def trial(box):
        return make_trial_function(
            box=box,
            width=4,
            depth=1,
            activation="tanh",
            output="linear",
            breakpoint_features=True,
            key=jax.random.key(0),
        )

    (a, pa), (b, _) = (
        trial(finite_well((-2.0, 2.0), width=1.0).box),
        trial(finite_well((-2.0, 2.0), width=1.4).box),
    )
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    x = jnp.array([[0.6]])  # inside the wider well only: its feature (x - 0.5)_+^2 is nonzero
    assert float(a.features(x)[0, 2]) > 0.0 and float(b.features(x)[0, 2]) == 0.0
    evaluate = jax.jit(lambda psi, p, y: psi(p, y))
    assert float(evaluate(b, pa, x)[0]) == pytest.approx(float(b(pa, x)[0]), rel=1e-14)
    corner = quadrature.Box(((-2.0, 2.0), (-2.0, 2.0)), ((-0.5,), (0.5,)), ((-0.5, 0.5),))
    moved = quadrature.Box(((-2.0, 2.0), (-2.0, 2.0)), ((-0.7,), (0.3,)), ((-0.7, 0.3),))
    assert jax.tree_util.tree_structure(trial(corner)[0]) == jax.tree_util.tree_structure(
        trial(moved)[0]
    )
