import dataclasses
import inspect
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from pinn_cli.cli import _resumed_config, one_line, to_config
from pinn_cli.config import (
    POTENTIAL_SCHEMAS,
    Config,
    ConfigError,
    PotentialConfig,
    potential_params,
    register_configs,
)
from pinn_cli.potentials import REGISTRY, make_potential
from pinn_cli.validation import validate

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
    # the coherent state is the oscillator's: it needs potential=harmonic
    partner = ["potential=harmonic"] if (group, option) == ("initial", "coherent") else []
    cfg = composer(f"{group}={option}", *partner)
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
    ("train.devices", 0, "train.devices=0"),
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
        (["train.ensemble=2", "train.devices=2"], "train.devices=1 or train.ensemble=1"),
        (["initial=gaussian", "train.devices=2"], "equation=tdse runs on one device"),
        (["train.retries=-1"], "train.retries=-1 must be >= 0"),
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


# --------------------------------------------------------------------------------------------
# one schema per potential


def factory_parameters(name):
    """The named keyword arguments of a potential's factory (not its catch-all **kwargs)."""
    signature = inspect.signature(REGISTRY[name])
    return {
        p.name
        for p in signature.parameters.values()
        if p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
    }


def schema_fields(cls):
    return {f.name for f in dataclasses.fields(cls)}


def test_every_registered_potential_has_a_schema_and_a_config():
    assert set(POTENTIAL_SCHEMAS) == set(REGISTRY) == set(options("potential"))
    assert len(set(POTENTIAL_SCHEMAS.values())) == len(POTENTIAL_SCHEMAS)  # no shared class


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_each_potential_composes_to_its_own_schema(composer, name):
    typed = to_config(composer(f"potential={name}"))
    schema = POTENTIAL_SCHEMAS[name]
    assert type(typed.potential) is schema
    assert issubclass(schema, PotentialConfig) and typed.potential.name == name
    assert schema_fields(schema) == factory_parameters(name) | {"name"}
    params = potential_params(typed.potential)
    assert set(params) == factory_parameters(name)
    assert make_potential(name, **params).name == name


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_schema_defaults_match_the_potential_config_file(name):
    raw = (CONF / "potential" / f"{name}.yaml").read_text()
    text = yaml.safe_load(raw)
    if raw.startswith("# @package _global_"):  # it also sets keys outside the potential
        assert f"/schema/potential/{name}@potential" in text["defaults"]
        values = text["potential"]
    else:
        assert f"/schema/potential/{name}@_here_" in text["defaults"]
        values = {k: v for k, v in text.items() if k != "defaults"}
    assert values == {
        k: v for k, v in dataclasses.asdict(POTENTIAL_SCHEMAS[name]()).items() if k in values
    }


def test_potential_params_are_plain_values(composer):
    params = potential_params(to_config(composer("potential=piecewise")).potential)
    assert params == {"segments": [[0.0, 0.3, 0.0], [0.3, 0.5, 40.0], [0.5, 1.0, 10.0]]}
    assert type(params["segments"]) is list and type(params["segments"][0]) is list
    params = potential_params(to_config(composer("potential=double_well")).potential)
    assert params == {
        "domain": (-2.0, 2.0),
        "V0": 50.0,
        "width": 0.8,
        "separation": 0.4,
        "centre": None,
    }


def test_infinite_well_config_lists_only_its_own_keys(pinn_run):
    proc = pinn_run("potential=infinite_well", "--cfg", "job", check=True)
    composed = yaml.safe_load(proc.stdout)
    assert composed["potential"] == {"name": "infinite_well", "domain": [0.0, 1.0]}
    for key in ("V0", "omega", "formula", "width", "segments"):
        assert key not in composed["potential"]


def foreign_keys():
    """(potential, a key that some other potential has but this one lacks), one per potential."""
    every = set().union(*(schema_fields(c) for c in POTENTIAL_SCHEMAS.values()))
    return [(n, sorted(every - schema_fields(c))[0]) for n, c in sorted(POTENTIAL_SCHEMAS.items())]


@pytest.mark.parametrize("name,key", [*foreign_keys(), ("finite_well", "formula")])
@pytest.mark.parametrize("plus", ["", "+"])
def test_a_key_of_another_potential_is_refused_in_one_line(pinn_run, tmp_path, name, key, plus):
    proc = pinn_run(f"potential={name}", f"{plus}potential.{key}=2", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"potential.{key} is not a parameter of potential={name}" in lines[0], lines[0]
    assert not (tmp_path / "metrics.csv").exists()


def test_a_wrongly_typed_potential_value_is_one_line(pinn_run, tmp_path):
    proc = pinn_run("potential=finite_well", "potential.V0=abc", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "potential.V0" in lines[0] and "abc" in lines[0], proc.stderr


def test_the_name_must_match_the_chosen_potential(composer):
    with pytest.raises(ConfigError, match="potential=harmonic"):
        to_config(composer("potential=infinite_well", "potential.name=harmonic"))


def test_unknown_potential_keys_are_named_by_one_line(composer):
    with pytest.raises(Exception) as err:
        composer("potential=harmonic", "potential.V0=3")
    line = one_line(err.value)
    assert (
        line
        == "potential.V0 is not a parameter of potential=harmonic; its parameters are "
        + str(
            [f.name for f in dataclasses.fields(POTENTIAL_SCHEMAS["harmonic"]) if f.name != "name"]
        )
    )
    with pytest.raises(Exception) as err:
        composer("potential=nowhere")
    assert "schema" not in one_line(err.value)


# --------------------------------------------------------------------------------------------
# a resumed config is typed as a fresh one


def save_run(tmp_path, cfg) -> Path:
    """A run folder holding `cfg` as Hydra saves it (.hydra/config.yaml)."""
    (tmp_path / ".hydra").mkdir(parents=True)
    (tmp_path / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    return tmp_path


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_a_resumed_config_is_typed_as_a_fresh_one(composer, tmp_path, name):
    composed = composer(f"potential={name}", "seed=3")
    fresh = to_config(composed)
    resumed = _resumed_config(save_run(tmp_path, composed))
    assert type(resumed.potential) is type(fresh.potential) is POTENTIAL_SCHEMAS[name]
    assert dataclasses.asdict(resumed) == dataclasses.asdict(fresh)
    assert resumed.seed == 3


def test_a_resumed_config_keeps_changed_potential_values(composer, tmp_path):
    composed = composer("potential=double_well", "potential.V0=20", "potential.centre=0.1")
    resumed = _resumed_config(save_run(tmp_path, composed))
    assert type(resumed.potential) is POTENTIAL_SCHEMAS["double_well"]
    assert (resumed.potential.V0, resumed.potential.centre) == (20.0, 0.1)


def test_a_run_folder_from_the_shared_schema_resumes_typed(composer, tmp_path):
    """Run folders written when one schema held every potential's keys still resume."""
    composed = composer("potential=infinite_well")
    legacy = {"V0": 0.0, "width": 0.0, "centre": None, "separation": 0.0, "omega": 1.0}
    composed.potential = {**OmegaConf.to_container(composed.potential), **legacy}
    resumed = _resumed_config(save_run(tmp_path, composed))
    assert resumed.potential == POTENTIAL_SCHEMAS["infinite_well"]()


def test_a_resumed_folder_naming_no_known_potential_is_refused(composer, tmp_path):
    composed = composer()
    composed.potential = {"name": "nowhere", "domain": [0.0, 1.0]}
    with pytest.raises(ConfigError, match="nowhere"):
        _resumed_config(save_run(tmp_path, composed))


# --------------------------------------------------------------------------------------------
# every mistake in a value is one line, before anything is compiled


def refusal(composer, *overrides) -> str:
    """The ConfigError message for a composed config (one line), or fail."""
    with pytest.raises(ConfigError) as err:
        to_config(composer(*overrides))
    message = str(err.value)
    assert "\n" not in message, message
    return message


def refused_in_one_line(pinn_run, tmp_path, *args) -> str:
    """The real command's single stderr line, after asserting exit code 2 and no traceback."""
    proc = pinn_run(*args, f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pinn-run: error: "), proc.stderr
    assert "Traceback" not in proc.stderr and "Warning" not in proc.stderr, proc.stderr
    assert not (tmp_path / "run" / "metrics.csv").exists()
    return lines[0]


SEGMENTS = "potential.segments=[[0,0.3,0],[0.3,0.5,40],[0.5,1,10]]"


@pytest.mark.parametrize(
    "overrides,needles",
    [
        (["potential=finite_well", "potential.V0=inf"], ["potential.V0=inf", "1e+12"]),
        (["potential=piecewise", SEGMENTS.replace("40]", "nan]")], ["segments[1][2]=nan"]),
        (["potential=piecewise", SEGMENTS.replace("40]", "1e300]")], ["segments[1][2]=1e+300"]),
        (["potential=piecewise", SEGMENTS.replace("[0.5,1,", "[0.5,inf,")], ["[2][1]=inf"]),
        (["potential.domain=[0,inf]"], ["potential.domain[1]=inf"]),
        (["potential.domain=[-1e7,1]"], ["potential.domain[0]=-10000000.0", "1e+06"]),
        (["energy=fixed", "energy.value=nan"], ["energy.value=nan"]),
        (["energy.init=inf"], ["energy.init=inf"]),
        (["seed=9223372036854775808"], ["seed=9223372036854775808", "0 <= seed <= 4294967295"]),
        (["seed=-1"], ["seed=-1", "0 <= seed <= 4294967295"]),
        (["seed=4294967295", "train.ensemble=2"], ["seed=4294967295", "4294967296"]),
        (["train.lr=nan"], ["train.lr=nan"]),
        (["train.lr_final=-inf"], ["train.lr_final=-inf"]),
        (["loss.norm_weight=inf"], ["loss.norm_weight=inf"]),
        (["optim.refine_tol=2"], ["optim.refine_tol=2.0", "0 <= optim.refine_tol <= 1"]),
        (["train.steps=99999999999"], ["train.steps=99999999999", "2147483647"]),
        (["model.output_scale=0"], ["model.output_scale=0.0", "> 0"]),
        (["potential=harmonic", "potential.omega=1e9"], ["potential=harmonic", "|V|=6.4e+19"]),
        (["potential.domain=[0,1e-9]"], ["[0, 1e-09]", "1e-05"]),
        (["potential=finite_well", "potential.width=1e-9"], ["smooth piece", "1e-06"]),
    ],
)
def test_non_finite_and_out_of_range_numbers_are_refused(composer, overrides, needles):
    message = refusal(composer, *overrides)
    for needle in needles:
        assert needle in message, message


def float_fields(node, key=""):
    """Dotted keys of every float field of a typed config (optional ones and list items too)."""
    for f in dataclasses.fields(node):
        path, value = f"{key}.{f.name}".lstrip("."), getattr(node, f.name)
        if dataclasses.is_dataclass(value):
            yield from float_fields(value, path)
        elif "list[float]" in str(f.type):
            yield from (f"{path}[{i}]" for i in range(len(value)))
        elif "float" in str(f.type):
            yield path


def set_at(node, key, value):
    *parents, last = key.replace("[", ".").replace("]", "").split(".")
    for part in parents:
        node = node[int(part)] if part.isdigit() else getattr(node, part)
    if last.isdigit():
        node[int(last)] = value
    else:
        setattr(node, last, value)


@pytest.mark.parametrize("name", sorted(REGISTRY))
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1e300])
def test_every_float_of_every_schema_must_be_finite_and_in_range(composer, name, bad):
    keys = list(float_fields(to_config(composer(f"potential={name}"))))
    assert "train.lr" in keys and "energy.value" in keys and "model.output_scale" in keys
    for key in keys:
        typed = to_config(composer(f"potential={name}"))
        set_at(typed, key, bad)
        with pytest.raises(ConfigError) as err:
            validate(typed)
        assert f"{key}={bad}" in str(err.value), (key, str(err.value))


def test_int_segments_build_the_same_potential_as_float_ones(composer):
    ints = to_config(composer("potential=piecewise", SEGMENTS))
    floats = to_config(composer("potential=piecewise"))
    assert potential_params(ints.potential) == potential_params(floats.potential)
    assert all(type(v) is float for row in ints.potential.segments for v in row)
    built = make_potential("piecewise", **potential_params(ints.potential))
    assert built == make_potential("piecewise", **potential_params(floats.potential))
    assert built.segments == ((0.0, 0.3, 0.0), (0.3, 0.5, 40.0), (0.5, 1.0, 10.0))
    from pinn_cli.provenance import config_hash

    assert config_hash(dataclasses.asdict(ints)) == config_hash(dataclasses.asdict(floats))
    domain = to_config(composer("potential=finite_well", "potential.domain=[-3,3]")).potential
    assert domain.domain == [-3.0, 3.0] and all(type(v) is float for v in domain.domain)


@pytest.mark.parametrize(
    "segments,needle",
    [
        ("[[0,0.3,0],[0.3,0.5],[0.5,1,10]]", "potential.segments[1]=[0.3, 0.5]"),
        ("[[0,0.3,0],[0.3,0.5,abc],[0.5,1,10]]", "potential.segments[1]=[0.3, 0.5, 'abc']"),
        ("[[0,0.3,0],[0.3,0.5,true],[0.5,1,10]]", "potential.segments[1]=[0.3, 0.5, True]"),
        ("[1,2,3]", "potential.segments[0]=1"),
    ],
)
def test_segments_that_are_not_rows_of_three_numbers_are_refused(composer, segments, needle):
    message = refusal(composer, "potential=piecewise", f"potential.segments={segments}")
    assert needle in message and "three numbers" in message, message


@pytest.mark.parametrize(
    "override,needle",
    [
        ("+model.widht=64", "model.widht is not a key of model; its keys are ['width', 'depth'"),
        ("++model.widht=64", "model.widht is not a key of model"),
        ("+foo=1", "foo is not a key of the config; its keys are ['potential', 'model'"),
        ("+train.foo.bar=1", "train.foo is not a key of train; its keys are ['steps'"),
        ("+optim.x=1", "optim.x is not a key of optim"),
        ("+energy.x=1", "energy.x is not a key of energy"),
        ("+potential.V1=1", "potential.V1 is not a parameter of potential=infinite_well"),
    ],
)
def test_unknown_keys_at_any_depth_are_refused(composer, override, needle):
    assert needle in refusal(composer, override)


def test_an_unknown_key_is_refused_by_the_real_command(pinn_run, tmp_path):
    line = refused_in_one_line(pinn_run, tmp_path, "+model.widht=64")
    assert "model.widht is not a key of model" in line and "'width'" in line, line


@pytest.mark.parametrize(
    "formula,domain,needle",
    [
        ("1/0", "[-1,1]", "'1 / 0' in potential.formula='1/0' is inf"),
        ("9**9**9**9", "[-1,1]", "constant exponents are at most 100"),
        ("x**-200", "[1,2]", "has the exponent -200"),
        ("exp(1000)*x", "[-1,1]", "'exp(1000)'"),
        ("x" + "+x" * 50000, "[-1,1]", "at most 1000 characters"),
        ("x" + "+x" * 200, "[-1,1]", "more than 100 deep"),
        ("log(x)", "[0,1]", "not finite everywhere on [0.0, 1.0]"),
        ("sqrt(x)", "[-1,1]", "not finite everywhere on [-1.0, 1.0]"),
        ("1e300*x", "[-1,1]", "|V|=1e+300"),
    ],
)
def test_formulas_that_cannot_be_evaluated_are_one_line(composer, formula, domain, needle):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a RuntimeWarning would escape as an exception here
        message = refusal(
            composer,
            "potential=formula",
            f'potential.formula="{formula}"',
            f"potential.domain={domain}",
        )
    assert needle in message and "potential" in message and "formula" in message, message
    assert len(message) < 400, message


def test_an_undefined_formula_is_one_line_without_warnings(pinn_run, tmp_path):
    line = refused_in_one_line(
        pinn_run,
        tmp_path,
        "potential=formula",
        'potential.formula="sqrt(x)"',
        "potential.domain=[-1,1]",
    )
    assert "potential.formula='sqrt(x)' is not finite everywhere on [-1.0, 1.0]" in line, line


@pytest.mark.parametrize(
    "overrides,needles",
    [
        (["train.points=1000000000"], ["train.points=1000000000", "1000000008 points", "TiB"]),
        (["model.width=100000", "model.depth=2"], ["model.width=100000", "10000400002 param"]),
        (["model.width=4096", "train.ensemble=100000"], ["train.ensemble=100000"]),
    ],
)
def test_runs_that_cannot_fit_in_memory_are_refused(composer, overrides, needles):
    message = refusal(composer, *overrides)
    assert "of memory" in message and "more than this machine's" in message, message
    for needle in needles:
        assert needle in message, message


def test_the_memory_estimate_and_its_limit(composer, monkeypatch):
    from pinn_cli import resources

    typed = to_config(composer())
    need, params, points = resources.memory_estimate(typed, make_potential("infinite_well"))
    assert params == 32 + 32 + 32 * 32 + 32 + 32 + 1 + 1 and points == 192 + 8
    assert need < 2**30  # the default run is far from any limit
    monkeypatch.setattr(resources, "machine_memory", lambda: need - 1)
    message = refusal(composer)
    assert f"more than this machine's {resources._size(need - 1)}" in message, message


def test_a_run_that_cannot_fit_is_refused_by_the_real_command(pinn_run, tmp_path):
    line = refused_in_one_line(pinn_run, tmp_path, "train.points=1000000000")
    assert "train.points=1000000000" in line and "of memory" in line, line


def test_too_many_segments_and_unresolvable_states_are_refused(composer):
    edges = [i / 201 for i in range(202)]
    rows = [[a, b, float(i % 2)] for i, (a, b) in enumerate(zip(edges, edges[1:]))]
    message = refusal(composer, "potential=piecewise", f"potential.segments={rows}")
    assert "potential.segments has 201 segments; at most 200" in message, message
    rows = rows[:200]
    rows[-1][1] = 1.0
    to_config(composer("potential=piecewise", f"potential.segments={rows}", "train.points=2000"))
    message = refusal(composer, "state=50")
    assert "state=50" in message and "train.points=192" in message, message
    assert "train.points >= 408" in message, message
    assert to_config(composer("state=50", "train.points=408")).state == 50


@pytest.mark.parametrize("setting", ["false", "False", "off", "null", "none"])
def test_compile_cache_off_in_any_spelling_means_no_folder(composer, setting):
    from pinn_cli.experiment import cache_folder

    cfg = to_config(composer(f"compile_cache={setting}"))
    assert cache_folder(cfg.compile_cache) is None


def test_compile_cache_folder_is_expanded(composer):
    from pinn_cli.experiment import cache_folder

    cfg = to_config(composer("compile_cache='~/xla-here'"))
    assert cache_folder(cfg.compile_cache) == Path.home() / "xla-here"
