"""The package's import graph points one way, and the run folder's file names live in one module.

entry points (cli, report) -> experiment -> assemble -> training (train, optim, lm, states,
ensemble, problem) -> physics, model, potentials, quadrature. Judging, outputs and plots take
arrays and never import training.
"""

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "pinn_cli"

# module -> the layer it sits in; a module may import only from its own layer or lower ones.
LAYERS = {
    "cli": 6,
    "api": 6,
    "report": 6,
    "report_figures": 6,
    "sweep_jobs": 6,
    "experiment": 5,
    "dynamics": 5,
    "judging": 5,
    "guard": 5,
    "assemble": 4,
    "process": 4,
    "train": 3,
    "programs": 3,
    "blocks": 2,
    "states": 2,
    "lm": 2,
    "optim": 1,
    "warm_start": 1,
    "ensemble": 1,
    "problem": 1,
    "tdse": 1,
    "physics": 0,
    "compiling": 0,
    "exported": 0,
    "sharding": 0,
    "model": 0,
    "mirror": 0,
    "envelopes": 0,
    "corners": 0,
    "potentials": 0,
    "potentials2d": 0,
    "reference2d": 0,
    "spectral2d": 0,
    "sparse_eigen": 0,
    "coarse": 0,
    "evaluation2d": 0,
    "quadrature": 0,
    "activations": 0,
    "nonlinear": 0,
    "formula": 0,
    "reference": 0,
    "finite_differences": 0,
    "config": 0,
    "validation": 0,
    "limits": 0,
    "resources": 0,
    "provenance": 0,
    "evaluation": 0,
    "outputs": 0,
    "plots": 0,
    "study": 0,
    "plots_time": 0,
    "initial_states": 0,
    "evaluation_time": 0,
    "eigenbases": 0,
    "propagation": 0,
    "trackers": 0,
    "stopping": 0,
    "native": 0,
}
TRAINING = {
    "train",
    "optim",
    "lm",
    "states",
    "ensemble",
    "problem",
    "warm_start",
    "tdse",
    "assemble",
    "experiment",
}


def imports(module: str) -> set[str]:
    """The package modules that `module` imports (at any depth of its code)."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pinn_cli."):
            found.add(node.module.split(".")[1])
    return found - {"conf"}


def test_every_module_has_a_layer():
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert modules == set(LAYERS)


@pytest.mark.parametrize("module", sorted(LAYERS))
def test_imports_point_down(module):
    upward = {m for m in imports(module) if LAYERS[m] > LAYERS[module]}
    assert not upward, f"{module} imports {upward} from a higher layer"


@pytest.mark.parametrize(
    "module",
    [
        "evaluation",
        "outputs",
        "plots",
        "plots_time",
        "sweep_jobs",
        "report",
        "report_figures",
        "study",
        "reference",
        "propagation",
        "eigenbases",
    ],
)
def test_judging_and_outputs_never_import_training(module):
    assert not imports(module) & TRAINING


def test_run_folder_names_are_defined_only_in_outputs():
    """No string constant outside outputs.py names a file or folder of the run folder."""
    names = re.compile(r"(summary\.json|metrics\.csv|psi\.csv|checkpoints|[a-z_]+\.png)")
    for path in PACKAGE.glob("*.py"):
        if path.stem in ("outputs", "report", "report_figures"):
            continue  # report's sweep figures are the sweep folder's, not a run folder's
        constants = [
            node.value
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
        ]
        assert not [c for c in constants if names.fullmatch(c)], path.name
