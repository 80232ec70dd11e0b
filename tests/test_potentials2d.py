"""Two-dimensional potentials: their parameters, the disk's domain, and the judging of
degenerate levels."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pinn_cli import corners, ensemble, evaluation2d, model, quadrature, resources
from pinn_cli.config import ConfigError
from pinn_cli.potentials import make_potential
from pinn_cli.validation import validate


def config(*overrides):
    from hydra import compose, initialize_config_module

    from pinn_cli.cli import to_config
    from pinn_cli.config import register_configs

    register_configs()
    with initialize_config_module("pinn_cli.conf", version_base="1.3"):
        return to_config(compose("config", overrides=["progress=false", *overrides]))


@pytest.mark.parametrize(
    "overrides, words",
    [
        (["potential=finite_well2d", "potential.width=5.0"], ["potential.width=5.0", "shorter"]),
        (
            ["potential=finite_well2d", "potential.width=[0.5,4.5]"],
            ["potential.width", "y side 4.5"],
        ),
        (
            ["potential=box2d", "potential.domain=[0,1]"],
            ["one-dimensional", "[[x0, x1], [y0, y1]]"],
        ),
        (["potential=harmonic2d", "potential.domain=[0,1]"], ["one-dimensional"]),
        (["potential=disk", "potential.radius=-1.0"], ["potential.radius=-1.0", "> 0"]),
        (["potential=box2d", "potential.domain=[[1,0],[0,1]]"], ["potential.domain[0]", "lo < hi"]),
        (["potential=harmonic2d", "potential.omega=[1,-2]"], ["potential.omega", "> 0"]),
        (["potential=disk", "train.ensemble=2"], ["train.ensemble=2", "1-D potentials"]),
        (["potential=disk", "potential.domain=[0,1]"], ["potential.domain"]),
        (["potential=box2d", "train.start=warm"], ["train.start", "warm", "coarse", "random"]),
    ],
)
def test_bad_2d_input_is_refused_in_one_line(overrides, words):
    try:
        cfg = config(*overrides)
    except Exception as err:  # a key the schema lacks is refused while composing
        message = str(err)
    else:
        with pytest.raises(ConfigError) as err:
            validate(cfg)
        message = str(err.value)
        assert "\n" not in message
    for word in words:
        assert word in message


@pytest.mark.parametrize(
    "name", ["box2d", "harmonic2d", "disk", "separable2d", "finite_well2d", "formula2d"]
)
def test_every_2d_default_validates_and_is_two_dimensional(name):
    cfg = config(f"potential={name}")
    validate(cfg)
    potential = make_potential(name)
    assert potential.dim == 2 and potential.box.dim == 2


def test_the_finite_well_2d_is_not_separable():
    """V0 outside a square well: the corners see V0, not 2 V0, and the jumps are breakpoints."""
    p = make_potential("finite_well2d", V0=50.0, width=1.0)
    v = np.asarray(p.values(np.array([[0.0, 0.0], [1.5, 0.0], [0.0, 1.5], [1.5, 1.5]])))
    np.testing.assert_array_equal(v, [0.0, 50.0, 50.0, 50.0])
    assert p.box.breakpoints == ((-0.5, 0.5), (-0.5, 0.5))


def test_corners_are_where_a_jump_of_v_is_not_separable():
    """The square well's four corners carry psi's r^2 log r; a separable V has jumps along whole
    lines and no such corner."""
    well = make_potential("finite_well2d", V0=50.0, width=[1.0, 0.6])
    assert sorted(well.box.corners) == [(-0.5, -0.3), (-0.5, 0.3), (0.5, -0.3), (0.5, 0.3)]
    assert make_potential("separable2d").box.corners == ()
    assert make_potential("harmonic2d").box.corners == ()
    assert resources.PER_CORNER == corners.PER_CORNER  # the memory estimate counts them too


@pytest.mark.parametrize("k", range(corners.PER_CORNER))
def test_the_corner_functions_solve_the_quadrant_sources_and_are_c1(k):
    """Each corner function's derivatives equal nested autodiff's; its Laplacian is zero outside
    the quadrant u, v < 0 and 4 pi, 12 pi u, -12 pi v, 24 pi u^2, -48 pi u v inside (the sources
    psi_c, u, v, u^2, u v times the quadrant); value and gradient match across every ray."""
    sources = [
        lambda u, v: 4 * np.pi + 0 * u,
        lambda u, v: 12 * np.pi * u,
        lambda u, v: -12 * np.pi * v,
        lambda u, v: 24 * np.pi * u**2,
        lambda u, v: -48 * np.pi * u * v,
    ]
    f = lambda u, v: corners.corner_features(u, v)[k][0]  # noqa: E731
    u, v = jnp.asarray(np.random.default_rng(k).uniform(-1.5, 1.5, size=(2, 24)))
    _, (wu, wv), (wuu, wvv) = corners.corner_features(u, v)[k]
    nested = jax.jit(
        jax.vmap(
            lambda a, b: (
                jax.grad(f, 0)(a, b),
                jax.grad(f, 1)(a, b),
                jax.grad(jax.grad(f, 0), 0)(a, b),
                jax.grad(jax.grad(f, 1), 1)(a, b),
            )
        )
    )
    for one_pass, autodiff in zip((wu, wv, wuu, wvv), nested(u, v)):
        np.testing.assert_allclose(one_pass, autodiff, atol=1e-11)
    inside = (u < 0) & (v < 0)
    np.testing.assert_allclose(wuu + wvv, np.where(inside, sources[k](u, v), 0.0), atol=1e-11)
    eps = 1e-9
    for a, b in [(-0.7, 0.0), (0.0, -0.6), (0.4, 0.0), (0.0, 0.8)]:  # the four rays, both sides
        side = [(a + eps * (b != 0), b + eps * (a != 0)), (a - eps * (b != 0), b - eps * (a != 0))]
        (w1, g1, _), (w2, g2, _) = (corners.corner_features(*map(jnp.asarray, p))[k] for p in side)
        assert float(w1) == pytest.approx(float(w2), abs=1e-8)
        np.testing.assert_allclose(np.asarray(g1), np.asarray(g2), atol=1e-7)


def test_the_disk_rule_integrates_polynomials_and_stays_inside():
    rule = quadrature.disk(1.5, 1024)
    r2 = np.sum(rule.x**2, axis=1)
    assert np.all(r2 < 1.5**2)
    assert np.sum(rule.w) == pytest.approx(np.pi * 1.5**2, rel=1e-13)
    assert np.sum(rule.w * r2) == pytest.approx(np.pi * 1.5**4 / 2, rel=1e-13)
    assert np.sum(rule.w * rule.x[:, 0] ** 2 * rule.x[:, 1] ** 2) == pytest.approx(
        np.pi * 1.5**6 / 24, rel=1e-12
    )


def test_the_disk_envelope_vanishes_on_the_circle_and_its_laplacian_is_exact():
    radius = 1.3
    box = quadrature.Box(((-radius, radius), (-radius, radius)), ((), ()))
    psi, params = model.make_trial_function(
        box=box,
        width=8,
        depth=2,
        activation="tanh",
        output="exp",
        breakpoint_features=False,
        key=ensemble.keys(0, 1),
        radius=radius,
    )
    theta = np.linspace(0.0, 2 * np.pi, 17)
    circle = jnp.asarray(np.stack([radius * np.cos(theta), radius * np.sin(theta)], -1))
    np.testing.assert_allclose(psi(params, circle), 0.0, atol=1e-15)
    x = jnp.asarray([[0.3, -0.2], [-0.9, 0.5], [0.0, 1.0]])
    _, grad, lap = psi.taylor(params, x)

    def hessian_trace(point):
        return jnp.trace(jax.hessian(lambda z: psi(params, z))(point))

    np.testing.assert_allclose(lap, jax.vmap(hessian_trace)(x), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grad, jax.vmap(jax.grad(lambda z: psi(params, z)))(x), rtol=1e-10)


def test_degenerate_levels_are_judged_as_subspaces():
    """Any rotation of a degenerate pair has subspace error 0; a state leaking into the next
    level has an error equal to the sine of the leak."""
    rule = quadrature.gauss(quadrature.Box(((0.0, 1.0), (0.0, 1.0)), ((), ())), 900)
    x, y = rule.x[:, 0], rule.x[:, 1]
    f = lambda n, m: 2.0 * np.sin(n * np.pi * x) * np.sin(m * np.pi * y)  # noqa: E731
    pair = np.stack([f(1, 2), f(2, 1)], -1)
    rotated = pair @ np.array([[np.cos(0.7), -np.sin(0.7)], [np.sin(0.7), np.cos(0.7)]])
    assert evaluation2d.subspace_error(rule.w, rotated, pair) < 1e-12
    leak = 1e-3
    mixed = np.sqrt(1 - leak**2) * rotated[:, 0] + leak * f(2, 2)
    assert evaluation2d.subspace_error(rule.w, mixed[:, None], pair) == pytest.approx(
        leak, rel=1e-6
    )
    both = np.stack([mixed, rotated[:, 1]], -1)
    assert evaluation2d.subspace_error(rule.w, both, pair) == pytest.approx(leak, rel=1e-3)
    assert evaluation2d.levels(np.array([2.0, 4.0, 4.0 + 1e-12, 6.0, 6.0, 6.0])) == [
        [0],
        [1, 2],
        [3, 4, 5],
    ]


def test_formula2d_parses_x_and_y_and_its_reference_is_the_rotated_oscillator():
    """V = x^2 + y^2 + x y / 2 = r^T A r: frequencies sqrt of A's eigenvalues (1.25, 0.75), so
    E = sqrt(1.25) (2n + 1) + sqrt(0.75) (2m + 1), which the spectral element reference gives."""
    p = make_potential("formula2d")
    np.testing.assert_allclose(p.values(np.array([[1.0, 2.0], [-1.0, 0.5]])), [6.0, 1.0])
    w1, w2 = np.sqrt(1.25), np.sqrt(0.75)
    exact = sorted(w1 * (2 * n + 1) + w2 * (2 * m + 1) for n in range(4) for m in range(4))[:4]
    np.testing.assert_allclose(p.spectrum(4).energies, exact, rtol=1e-10)


@pytest.mark.parametrize(
    "formula, words",
    [
        ("x**2 + z", ["unknown name 'z'", "use x, y, pi, e"]),
        ("log(x)", ["not finite everywhere"]),
        ("__import__('os')", ["__import__"]),
    ],
)
def test_bad_2d_formulas_are_refused_in_one_line(formula, words):
    with pytest.raises(ConfigError) as err:
        validate(config("potential=formula2d", f"potential.formula={formula!r}"))
    assert "\n" not in str(err.value)
    for word in words:
        assert word in str(err.value)


def test_the_reference_spectrum_holds_the_whole_level_of_the_last_state():
    """State 3 of the isotropic oscillator is the first of the three at E = 6: the reference
    asked for judging holds all three (and the next level begins after them)."""
    spectrum = evaluation2d.spectrum_for(make_potential("harmonic2d"), 4)
    energies = np.asarray(spectrum.energies)
    assert np.sum(np.isclose(energies, 6.0, rtol=1e-12)) == 3 and energies.max() > 6.0
    assert len(evaluation2d.spectrum_for(make_potential("box2d"), 1).energies) == 2


def test_a_smaller_reference_does_not_wait_for_a_larger_one_in_progress():
    """A run stopped after its first state judges it against a reference of two states while
    the reference for all of its `state=100` states is still being solved (for the spectral
    element solver, minutes): it must not wait for that one."""
    import threading
    from types import SimpleNamespace

    release = threading.Event()

    def spectrum(k):
        if k > 10:
            assert release.wait(30)  # the large solve, held until the test ends
        return SimpleNamespace(energies=np.arange(1.0, k + 1.0))

    potential = SimpleNamespace(spectrum=spectrum)
    large = threading.Thread(target=evaluation2d.spectrum_for, args=(potential, 100))
    large.start()
    while not evaluation2d._SPECTRUM_LOCK.locked():  # the large solve holds the lock
        threading.Event().wait(0.01)
    small = []
    asked = threading.Thread(target=lambda: small.append(evaluation2d.spectrum_for(potential, 1)))
    asked.start()
    asked.join(5)
    answered = list(small)
    release.set()
    large.join(30)
    assert answered and list(answered[0].energies) == [1.0, 2.0]


def test_judging_accepts_any_basis_of_a_degenerate_level_and_names_its_energies():
    """Exact box states 0, then a rotated pair of level 1: energies exact, errors ~0, level 1
    complete with multiplicity 2; a state that mixes levels is not."""
    from pinn_cli import reference2d

    spectrum = reference2d.box2d(((0.0, 1.0), (0.0, 1.0)), 10)
    rule = quadrature.gauss(quadrature.Box(((0.0, 1.0), (0.0, 1.0)), ((), ())), 1600)
    x, y = rule.x[:, 0], rule.x[:, 1]

    def state(n, m):
        s, c = np.sin, np.cos
        psi = s(n * np.pi * x) * s(m * np.pi * y)
        grad = np.pi * np.stack(
            [
                n * c(n * np.pi * x) * s(m * np.pi * y),
                m * s(n * np.pi * x) * c(m * np.pi * y),
            ],
            -1,
        )
        return psi, grad

    (p0, g0), (pa, ga), (pb, gb) = state(1, 1), state(1, 2), state(2, 1)
    c, s = np.cos(0.4), np.sin(0.4)
    values = [(p0, g0), (c * pa + s * pb, c * ga + s * gb), (-s * pa + c * pb, -s * ga + c * gb)]
    v = np.zeros_like(x)
    states, levels = evaluation2d.judge_states(None, rule, v, values, spectrum)
    for st in states:
        assert st["energy"]["rel_error"] < 1e-12
        assert st["wavefunction"]["l2_error"] < 1e-10
    assert [st["wavefunction"]["degenerate"] for st in states] == [False, True, True]
    assert levels[1]["multiplicity"] == 2 and levels[1]["complete"]
    assert levels[1]["subspace_error"] < 1e-10
    mixed = [(p0, g0), (0.6 * pa + 0.8 * state(2, 2)[0], 0.6 * ga + 0.8 * state(2, 2)[1])]
    states, levels = evaluation2d.judge_states(None, rule, v, mixed, spectrum)
    assert states[1]["wavefunction"]["l2_error"] == pytest.approx(0.8, rel=1e-6)
    assert not levels[1]["complete"]


def test_a_smooth_potential_gives_its_narrow_axis_more_nodes():
    """psi's spread along an oscillator's axis is 1 / sqrt(2 omega): omega = [1, 2] asks for
    sqrt(2) times the node density along y; the isotropic default keeps 30 x 30, and a
    piecewise-constant V keeps nodes split by its pieces alone."""
    from pinn_cli import assemble

    narrow = make_potential("harmonic2d", omega=[1.0, 2.0])
    sx, sy = narrow.axis_spreads()
    assert sx == pytest.approx(1 / np.sqrt(2.0), rel=1e-3) and sy == pytest.approx(0.5, rel=1e-3)
    rule = quadrature.gauss(narrow.box, 900, shares=assemble.node_shares(narrow))
    nx, ny = (len(np.unique(rule.x[:, i])) for i in range(2))
    assert ny / nx == pytest.approx(np.sqrt(2.0), rel=0.05) and abs(nx * ny - 900) < 30
    iso = quadrature.gauss(make_potential("harmonic2d").box, 900, shares=(1.0, 1.0))
    assert [len(np.unique(iso.x[:, i])) for i in range(2)] == [30, 30]
    assert assemble.node_shares(make_potential("finite_well2d")) is None


@pytest.mark.slow
def test_a_deep_well_s_nodes_follow_psi_s_decay_into_its_walls():
    """Outside a deep square well psi decays as exp(-kappa d), kappa^2 = V0 - E: the rule cuts
    each outer piece DECAY_DEPTH / kappa from the wall and gives the far part only the fewest
    nodes a piece gets, so the well and the layer get the rest. A shallow well (the default
    V0 = 50, its layer most of the outer piece) keeps nodes spread by length alone."""
    from pinn_cli import assemble, coarse

    deep = make_potential("finite_well2d", V0=500.0)
    energy = deep.spectrum(1).energies[0]  # the reference, not the rule's coarse estimate
    kappa = np.sqrt(500.0 - energy)
    half = assemble.mirrored(deep.box, (True, True))  # [0, 2] on each axis, the wall at 0.5
    layers = coarse.decay_layers(deep, half, 0)
    for axis in range(2):
        pieces, far = quadrature.with_layers(half.pieces(axis), layers[axis])
        assert far == (False, False, True)
        assert pieces[1][0] == 0.5
        assert pieces[1][1] - 0.5 == pytest.approx(coarse.DECAY_DEPTH / kappa, rel=1e-3)
    rule = quadrature.gauss(half, 2500, 8, layers=layers)
    x = np.unique(rule.x[:, 0])
    assert len(x) == 50 and np.sum(x > 0.5 + coarse.DECAY_DEPTH / kappa) == 8
    assert np.sum(x < 0.5) > 50 * 0.5 / 2.0  # more than by length: the well's share grew
    assert rule.w.sum() == pytest.approx(4.0, rel=1e-12)

    shallow = make_potential("finite_well2d")
    half = assemble.mirrored(shallow.box, (True, True))
    layers = coarse.decay_layers(shallow, half, 0)
    plain = quadrature.gauss(half, 2500, 8)
    np.testing.assert_array_equal(quadrature.gauss(half, 2500, 8, layers=layers).x, plain.x)


def test_a_barrier_between_two_allowed_pieces_gets_a_layer_from_each_side():
    pieces, far = quadrature.with_layers(
        ((0.0, 1.0), (1.0, 3.0), (3.0, 4.0)), ((0.0, 0.0), (0.4, 0.4), (0.0, 0.0))
    )
    assert pieces == ((0.0, 1.0), (1.0, 1.4), (1.4, 2.6), (2.6, 3.0), (3.0, 4.0))
    assert far == (False, False, True, False, False)
    # a layer deeper than the far part beyond it leaves the piece whole
    assert quadrature.with_layers(((0.0, 1.0),), ((0.6, 0.0),)) == (((0.0, 1.0),), (False,))


@pytest.mark.parametrize(
    "overrides, mirror",
    [
        (["potential=finite_well2d"], (True, True)),
        (["potential=finite_well2d", "potential.domain=[[-2,2],[-1,3]]"], (True, True)),
        (["potential=harmonic2d", "potential.omega=[1,2]"], (True, True)),
        (["potential=separable2d"], (True, False)),  # a centred barrier along x, a step along y
        (["potential=separable2d", "potential.x_segments=[[0,0.3,0],[0.3,1,9]]"], ()),
        (["potential=formula2d"], ()),  # x^2 + y^2 + x y / 2: even under (x, y) -> (-x, -y) only
        (["potential=disk"], ()),  # its polar rule covers the whole disk
        (["potential=finite_well2d", "state=1"], ()),  # excited states have odd members
        (["potential=finite_well2d", "model.symmetry=off"], ()),
    ],
)
def test_ground_states_of_mirror_symmetric_wells_train_on_half_the_domain(overrides, mirror):
    """A 2-D ground state is even along each axis V is symmetric about; training then takes
    the half box above the centre, with the whole box's node count per axis."""
    from pinn_cli import assemble

    cfg = config(*overrides)
    potential = assemble.potential_from(cfg)
    assert assemble.mirror_axes(cfg, potential) == mirror
    if potential.name == "finite_well2d" and mirror:
        rule = assemble.rule_from(cfg, potential, mirror)
        whole = assemble.rule_from(cfg, potential)
        (x0, x1), (y0, y1) = potential.box.intervals
        centre = np.array([0.5 * (x0 + x1), 0.5 * (y0 + y1)])
        assert np.all((rule.x > centre) | ~np.array(mirror))
        assert [len(np.unique(rule.x[:, i])) for i in range(2)] == [
            len(np.unique(whole.x[:, i])) for i in range(2)
        ]
        # exact on the half box: a polynomial in the well and outside it, integrated piecewise
        area = np.prod([(x1 - x0) / (2 if mirror[0] else 1), (y1 - y0) / (2 if mirror[1] else 1)])
        assert np.sum(rule.w) == pytest.approx(area, rel=1e-13)


def test_the_reference_computed_during_training_is_the_one_judging_uses():
    """A 2-D run solves its reference in the preload thread while it trains; judging, asking
    for the same spectrum meanwhile, waits for that solve instead of starting its own."""
    import functools
    import threading
    import time
    from types import SimpleNamespace

    from pinn_cli import evaluation2d, experiment

    calls, started = [], threading.Event()

    class Slow:
        @functools.lru_cache(maxsize=4)  # noqa: B019 (one instance, as potentials cache)
        def spectrum(self, k):
            calls.append(k)
            started.set()
            time.sleep(0.3)
            return SimpleNamespace(energies=np.arange(1.0, k + 1.0))

    potential = Slow()
    frame = SimpleNamespace(preloading=None, reference=(potential, 3))
    experiment.Frame.preload(frame)
    assert started.wait(30.0)  # the preload thread is inside the solve
    spectrum = evaluation2d.spectrum_for(potential, 3)
    assert calls == [4] and list(spectrum.energies) == [1.0, 2.0, 3.0, 4.0]
    frame.preloading.join(5.0)


@pytest.mark.slow
def test_a_deep_narrow_well_s_ground_state_starts_inside_the_well():
    """From its random initialisation psi spreads over the whole box, its Rayleigh quotient far
    above the ground level, and training found a state of E ~ 10x the ground energy. Fitted to
    the coarse reference state (train.start=coarse) psi starts in the well: its Rayleigh
    quotient and the learned E are near the converged reference's ground energy."""
    from pinn_cli import assemble, problem

    well = ["potential=finite_well2d", "potential.V0=500", "potential.width=0.4"]
    exact = evaluation2d.spectrum_for(make_potential("finite_well2d", V0=500.0, width=0.4), 1)
    exact = float(exact.energies[0])
    quotient, energy = {}, {}
    for start in ("coarse", "random"):
        built = assemble.build(config(*well, "train.points=900", f"train.start={start}"))
        quotient[start] = float(problem.rayleigh(built.problem, built.state.params))
        energy[start] = float(built.problem.energy(built.state.params))
    assert quotient["coarse"] == pytest.approx(exact, rel=0.25)  # 88.6 against 81.8
    assert energy["coarse"] == pytest.approx(exact, rel=1e-3)
    assert quotient["random"] > 3.0 * exact  # 540


@pytest.mark.parametrize(
    "overrides, confined",
    [
        (["potential.V0=500", "potential.width=0.4"], True),
        (["potential.V0=200"], True),
        ([], False),
        (["potential.width=3.2"], False),
        (["potential.V0=1"], False),
    ],
)
def test_only_a_ground_state_confined_to_part_of_the_box_starts_from_the_coarse_state(
    overrides, confined
):
    """A deep well's ground state decays to nothing within part of the box (its training rule
    has a far part beyond the decay layers): it starts from the coarse state. One that fills
    the box keeps the random start, which finds it."""
    from pinn_cli import assemble, coarse

    cfg = config("potential=finite_well2d", *overrides)
    potential = assemble.potential_from(cfg)
    box = assemble.mirrored(potential.box, assemble.mirror_axes(cfg, potential, 0))
    assert coarse.confined(potential, box, 0) is confined
