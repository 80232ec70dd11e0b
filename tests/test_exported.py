"""Traced programs kept on disk (pinn_cli/exported.py): read instead of traced, the same
numbers, and never a stored program for arguments it was not traced for."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pinn_cli import exported


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setattr(exported, "_folder", tmp_path / "programs")
    return tmp_path / "programs"


@dataclasses.dataclass
class Toy:
    """A pytree like problem.Problem: arrays as leaves, a static field in the structure."""

    x: jax.Array
    scale: float  # static
    f: object = jnp.tanh  # static


jax.tree_util.register_dataclass(Toy, ["x"], ["scale", "f"])


def counted():
    """A fresh jitted function (as a new process has) and the list its traces append to."""
    traces = []

    def fn(toy, params, n):
        traces.append(n)
        y = params["w"] * toy.f(toy.scale * toy.x)
        for _ in range(n):
            y = jnp.sin(y) + params["b"]
        return {"y": y, "total": jnp.sum(y**2)}, (y[0],)

    return jax.jit(fn, static_argnums=2), traces


def args(scale=1.5, size=7):
    x = jnp.linspace(-1.0, 1.0, size)
    return Toy(x, scale), {"w": jnp.asarray(0.7), "b": jnp.asarray(0.1)}


def leaves_equal(a, b) -> bool:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(np.array_equal(p, q) for p, q in zip(la, lb))


def test_a_stored_program_is_read_not_traced_and_computes_the_same(store):
    fn, traces = counted()
    out = exported.lower(fn, args(), (3,), ident=("toy",)).compile()(*args())
    assert traces == [3]  # traced once, to be stored
    direct = fn(*args(), 3)
    assert len(list(store.glob(f"*{exported.SUFFIX}"))) == 1
    assert leaves_equal(out, direct)
    assert jax.tree.structure(out) == jax.tree.structure(direct)

    again, traces_again = counted()  # another process: nothing traced in memory
    out2 = exported.lower(again, args(), (3,), ident=("toy",)).compile()(*args())
    assert traces_again == []
    assert leaves_equal(out2, direct)


@pytest.mark.parametrize(
    "changed",
    [
        lambda: (args(scale=1.5 + 1e-12), (3,), ("toy",)),  # a static field, 13th digit
        lambda: (args(size=9), (3,), ("toy",)),  # a shape
        lambda: (args(), (4,), ("toy",)),  # a static argument
        lambda: (args(), (3,), ("another",)),  # another program
    ],
)
def test_what_the_trace_depends_on_selects_another_program(store, changed):
    fn, _ = counted()
    exported.lower(fn, args(), (3,), ident=("toy",)).compile()
    a, statics, ident = changed()
    fresh, traces = counted()
    out = exported.lower(fresh, a, statics, ident=ident).compile()(*a)
    assert traces == [statics[0]]  # traced anew, not read
    assert len(list(store.glob(f"*{exported.SUFFIX}"))) == 2
    assert leaves_equal(out, fresh(*a, *statics))


def test_a_closure_in_the_structure_is_never_stored(store):
    """A lambda's or a local function's text does not show the values it captured."""
    fn, _ = counted()
    toy, params = args()
    for k in (2.0, 3.0):
        local = Toy(toy.x, toy.scale, lambda z, k=k: jnp.tanh(k * z))
        out = exported.lower(fn, (local, params), (3,), ident=("toy",)).compile()(local, params)
        assert leaves_equal(out, fn(local, params, 3))
    assert not list(store.glob(f"*{exported.SUFFIX}"))


def test_a_damaged_file_is_traced_again_and_rewritten(store):
    fn, _ = counted()
    exported.lower(fn, args(), (3,), ident=("toy",))
    (path,) = store.glob(f"*{exported.SUFFIX}")
    path.write_bytes(b"not a program")
    fresh, traces = counted()
    out = exported.lower(fresh, args(), (3,), ident=("toy",)).compile()(*args())
    assert traces == [3]
    assert leaves_equal(out, fresh(*args(), 3))
    assert exported._read(path) is not None


def test_arguments_of_another_structure_are_refused(store):
    fn, _ = counted()
    call = exported.lower(fn, args(), (3,), ident=("toy",)).compile()
    toy, params = args()
    with pytest.raises(TypeError):
        call(toy, {**params, "c": jnp.asarray(1.0)})


def test_off_or_without_an_identity_it_is_jits_own_lowering(tmp_path, monkeypatch):
    fn, _ = counted()
    monkeypatch.setattr(exported, "_folder", None)
    assert isinstance(exported.lower(fn, args(), (3,), ident=("toy",)), jax.stages.Lowered)
    monkeypatch.setattr(exported, "_folder", tmp_path)
    assert isinstance(exported.lower(fn, args(), (3,)), jax.stages.Lowered)
    assert not list(tmp_path.iterdir())


def test_levenberg_marquardt_blocks_stored_are_bitwise_the_traced_ones(store):
    """The real stages, with LAPACK's Cholesky and (more points than parameters) the native
    Gram kernel's custom call: 10 Adam and 10 LM steps from the same state."""
    from pinn_cli import api, assemble, native, programs

    cfg, _ = api.compose("potential=finite_well", "model.width=8", "model.depth=1")
    built = assemble.build(cfg, 0)
    state = built.state
    for stage, _ in programs.make_stages(built.problem, built.plan, state.params):
        a = (built.problem, state.params, state.opt[stage.name])
        direct = stage.block.lower(*a, 10).compile()(*a)
        written = exported.lower(stage.block, a, (10,), stage.ident).compile()(*a)
        read = exported.lower(stage.block, a, (10,), stage.ident).compile()(*a)
        assert leaves_equal(written, direct) and leaves_equal(read, direct), stage.name
        assert np.isfinite(np.asarray(direct[2])).all()
    stored = [exported._read(p)[0].mlir_module() for p in store.glob(f"*{exported.SUFFIX}")]
    assert len(stored) == 2
    if native.available():
        assert sum(native.TARGET in text for text in stored) == 1  # the LM block's Gram matrix


def test_a_stage_whose_function_is_replaced_loses_its_identity():
    """`Stage.ident` names the function it was built from: a stage made from it with another
    `raw` (dataclasses.replace, as `programs.shifted` does) must not read the old program."""
    from pinn_cli import api, assemble, programs

    cfg, _ = api.compose("potential=finite_well", "model.width=8", "model.depth=1")
    built = assemble.build(cfg, 0)
    stages = [s for s, _ in programs.make_stages(built.problem, built.plan, built.state.params)]
    assert all(s.ident is not None for s in stages)
    assert len({s.ident for s in stages}) == len(stages)
    lm = stages[-1]
    assert dataclasses.replace(lm, name="renamed").ident == lm.ident  # same function
    assert dataclasses.replace(lm, raw=stages[0].raw).ident is None
    assert programs.shifted(lm).ident is None
