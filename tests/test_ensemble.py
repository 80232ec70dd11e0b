"""train.ensemble=K: K networks in one vmapped program, each judged as if trained alone."""

import csv
import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TINY
from test_train import config

from pinn_cli import assemble, ensemble, train

SMALL = ["model.width=8", "train.points=32", "train.steps=150", "optim.refine_steps=20"]


def fitted(cfg):
    built = assemble.build(cfg)
    return train.fit(built.problem, built.plan, built.state)


def normalised_psi(cfg, params):
    problem = assemble.build(cfg).problem
    p = np.asarray(problem.psi(params["net"], problem.x))
    return p / np.sqrt(np.sum(np.asarray(problem.w) * p**2))


@pytest.mark.slow
def test_member_i_is_the_network_that_seed_plus_i_trains_alone():
    together = fitted(config(*SMALL, "seed=5", "train.ensemble=3", "potential=finite_well"))
    assert together.status == "completed" and together.diverged_at == [None] * 3
    energies = []
    for i in range(3):
        cfg = config(*SMALL, f"seed={5 + i}", "potential=finite_well")
        alone = fitted(cfg)
        mine = ensemble.member(together.params, i)
        # psi's scale (the output bias under exp) is a null direction of the normalised loss,
        # where rounding differences may drift: compare the normalised psi, E and the loss.
        np.testing.assert_allclose(
            normalised_psi(cfg, mine), normalised_psi(cfg, alone.params), rtol=0, atol=1e-8
        )
        assert float(mine["energy"]) == pytest.approx(float(alone.params["energy"]), rel=1e-10)
        assert together.final_loss[i] == pytest.approx(alone.final_loss[0], rel=1e-4)
        energies.append(float(mine["energy"]))
    assert len(set(energies)) == 3  # three different networks, not one copied


class Poisoned:
    """A stage block that, from its `after`-th call on, makes the chosen members non-finite."""

    def __init__(self, block, members, after):
        self.block, self.members, self.after, self.calls = block, members, after, 0

    def lower(self, *args):
        compiled = self.block.lower(*args).compile()

        def run(problem, params, opt_state):
            self.calls += 1
            params, opt_state, total, terms = compiled(problem, params, opt_state)
            if self.calls >= self.after:
                for m in self.members:
                    params = jax.tree.map(lambda a, m=m: a.at[m].set(jnp.nan), params)
                    total = total.at[m].set(jnp.nan)
            return params, opt_state, total, terms

        return type("Lowered", (), {"compile": lambda _: run})()


ENSEMBLE = [*SMALL, "potential=finite_well", "train.ensemble=3", "optim=adam"]
BLOCKS = ["train.log_every=25", "train.checkpoint_every=25"]


def poisoned_fit(members, after=3, on_checkpoint=lambda step, state: None):
    built = assemble.build(config(*ENSEMBLE, *BLOCKS))
    params = ensemble.member(built.state.params, 0)
    (stage, n), *rest = train.make_stages(built.problem, built.plan, params)
    poisoned = dataclasses.replace(stage)
    poisoned.__dict__["block"] = Poisoned(stage.block, members, after)  # over the cached jit
    seen = []
    callbacks = train.Callbacks(on_log=seen.append, on_checkpoint=on_checkpoint)
    stages = [(poisoned, n), *rest]
    result = train.fit(built.problem, built.plan, built.state, callbacks, stages=stages)
    return result, seen


def test_a_diverging_member_keeps_its_last_finite_state_and_the_others_finish():
    result, seen = poisoned_fit([1], after=3)
    assert result.status == "completed" and result.step == 150
    assert result.diverged_at == [None, 75, None]  # the third block of 25 steps
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(result.params))
    member_1 = [r for records in seen for r in records if r["member"] == 1]
    assert [r["step"] for r in member_1] == [25, 50]  # no rows after it diverged
    last_logged = member_1[-1]["energy"]
    e = assemble.build(config(*SMALL, "potential=finite_well")).problem.energy_scale
    assert float(result.params["energy"][1]) * e == pytest.approx(last_logged, rel=1e-12)
    assert len([r for records in seen for r in records if r["member"] == 0]) == 6


def test_the_run_diverges_only_when_every_member_has():
    result, _ = poisoned_fit([0, 1, 2], after=2)
    assert result.status == "diverged" and result.diverged_at == [50, 50, 50]


@pytest.mark.slow
def test_ensemble_run_folder(tmp_path, pinn_run):
    run_dir = tmp_path / "run"
    pinn_run("train.ensemble=3", "seed=2", *TINY, f"hydra.run.dir={run_dir}", check=True)
    single = tmp_path / "single"
    pinn_run("seed=3", *TINY, f"hydra.run.dir={single}", check=True)
    top = json.loads((run_dir / "summary.json").read_text())
    members = [json.loads((run_dir / f"members/{i}/summary.json").read_text()) for i in range(3)]
    assert [m["seed"] for m in members] == [2, 3, 4]
    for i in range(3):
        header = (run_dir / f"members/{i}/psi.csv").read_text().splitlines()[0]
        assert header == "x,psi,psi_exact,V"
    # Each member is judged as if trained alone: member 1 is the run with seed=3.
    alone = json.loads((single / "summary.json").read_text())
    assert members[1]["energy"]["estimate"] == pytest.approx(alone["energy"]["estimate"], rel=1e-9)
    assert members[1]["wavefunction"]["l2_error"] == pytest.approx(
        alone["wavefunction"]["l2_error"], rel=1e-4
    )
    # The run's own results are the member with the lowest final training loss.
    best = int(np.argmin([m["final_loss"] for m in members]))
    assert top["ensemble"]["selected_member"] == best
    assert top["energy"] == members[best]["energy"]
    energies = [m["energy"]["estimate"] for m in members]
    assert top["ensemble"]["energy"]["std"] == pytest.approx(np.std(energies, ddof=1))
    with (run_dir / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert sorted({r["member"] for r in rows}) == ["0", "1", "2"]
    assert len({sum(r["member"] == m for r in rows) for m in "012"}) == 1
    for name in ("wavefunction.png", "energy.png", "loss.png"):
        assert (run_dir / name).stat().st_size > 0


def test_a_resumed_ensemble_keeps_a_diverged_member_frozen():
    saved = {}
    whole, _ = poisoned_fit(
        [1], after=3, on_checkpoint=lambda step, state: saved.update({step: state})
    )
    assert [int(d) for d in saved[100].diverged_at] == [-1, 75, -1]
    built = assemble.build(config(*ENSEMBLE, *BLOCKS))  # not poisoned: member 1 would train
    resumed = train.fit(built.problem, built.plan, saved[100])
    assert resumed.diverged_at == [None, 75, None] and resumed.status == "completed"
    for a, b, c in zip(
        *(jax.tree.leaves(r) for r in (resumed.params, whole.params, saved[100].params))
    ):
        assert np.array_equal(a[1], c[1])  # frozen where it diverged
        np.testing.assert_array_equal(
            np.asarray(a)[[0, 2]], np.asarray(b)[[0, 2]]
        )  # the others as if never stopped
