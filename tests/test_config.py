from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from pinn_cli.cli import one_line, to_config
from pinn_cli.config import Config, ConfigError, register_configs, validate

CONF = Path(__file__).resolve().parents[1] / "pinn_cli" / "conf"
GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir() and not p.name.startswith("_"))


def options(group):
    return sorted(p.stem for p in (CONF / group).rglob("*.yaml"))


@pytest.fixture(scope="module")
def composer():
    register_configs()
    with initialize_config_module("pinn_cli.conf", version_base="1.3"):
        yield lambda *ov: compose("config", overrides=list(ov))


def test_groups_exist():
    assert {"potential", "energy", "optim"} <= set(GROUPS)


@pytest.mark.parametrize(
    "group,option",
    [(g, o) for g in GROUPS for o in options(g) if g != "hydra"],
)
def test_every_config_in_every_group_composes(composer, group, option):
    cfg = composer(f"{group}={option}")
    typed = to_config(cfg)  # typed and semantically valid
    assert isinstance(typed, Config)


def test_potential_defaults_choose_the_energy_mode(composer):
    assert to_config(composer()).energy.mode == "fixed"
    assert to_config(composer("potential=finite_well")).energy.mode == "learned"
    assert to_config(composer("potential=barrier")).energy.mode == "learned"
    assert (
        to_config(composer("potential=barrier", "energy=fixed", "energy.value=25.0")).energy.mode
        == "fixed"
    )


def test_overrides_reach_the_typed_config(composer):
    cfg = to_config(composer("potential=finite_well", "potential.V0=20", "potential.domain=[-3,3]"))
    assert cfg.potential.V0 == 20.0 and cfg.potential.domain == [-3.0, 3.0]


BAD = [
    ("model.width", 0, "model.width=0"),
    ("model.depth", 0, "model.depth=0"),
    ("train.steps", -1, "train.steps=-1"),
    ("train.points", 4, "train.points=4"),
    ("train.lr", 0.0, "train.lr=0.0"),
    ("model.activation", "relu", "psi''"),
    ("model.activation", "swishy", "swishy"),
    ("optim.refine", "newton", "newton"),
    ("loss.normalization", "soft", "soft"),
    ("train.ensemble", 0, "train.ensemble=0"),
]


@pytest.mark.parametrize("key,value,needle", BAD)
def test_impossible_values_name_the_value(composer, key, value, needle):
    cfg = composer()
    OmegaConf.update(cfg, key, value)
    with pytest.raises(ConfigError) as err:
        validate(OmegaConf.to_object(cfg))
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "overrides,needle",
    [
        (["potential=finite_well", "potential.V0=-1"], "V0=-1"),
        (["potential=barrier", "potential.width=2.0"], "inside potential.domain"),
        (["potential.domain=[1,0]"], "lo < hi"),
        (["potential=finite_well", "energy=fixed"], "energy.value"),
        (["train.ensemble=4", "state=1"], "state=0 or train.ensemble=1"),
    ],
)
def test_impossible_potentials(composer, overrides, needle):
    with pytest.raises(ConfigError, match=None) as err:
        to_config(composer(*overrides))
    assert needle in str(err.value)


def test_composition_errors_become_one_line(composer):
    with pytest.raises(Exception) as err:
        composer("model.width=abc")
    line = one_line(err.value)
    assert "\n" not in line and "model.width" in line and "abc" in line
    with pytest.raises(Exception) as err:
        composer("potential=nowhere")
    line = one_line(err.value)
    assert "finite_well" in line and "nowhere" in line and "\n" not in line
