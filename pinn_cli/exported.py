"""Traced programs kept on disk (`jax.export`), so that a run whose programs an earlier run
traced reads them instead of tracing them again.

Tracing and lowering are Python under the GIL: on a 2-core VM the default run's
Levenberg-Marquardt block took 0.55-0.7 s to trace and lower and Adam's 0.2 s, the first on
the main thread before the first step, the second in a thread that competes with training for
the GIL and that the refinement waited for (docs/speed.md, "Traced programs on disk"). A stored
program is the StableHLO module `jax.export` serialises (~30-60 kB); reading it and lowering the
call takes ~0.04 s, and XLA's persistent cache (`compile_cache`, whose folder holds these too)
serves its compilation as before. Computed results are bitwise the same either way.

A program is stored under a key of everything its trace depends on: this package's source, the
versions of the libraries that trace it, the backend and its devices, the jax settings that
change a trace (x64 ...), whether the native Gram kernel runs, the program's identity (`ident`:
for an optimiser stage, the settings it was built from), its static arguments, and its
arguments' structure (the static fields included, memory addresses left out) with every leaf's
shape and dtype. Whatever it cannot store (no identity given, an argument placed on several
devices, a closure among the static fields, a program `jax.export` refuses) is traced as
before; a stored file that cannot be read is traced and written again.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import pickle
import re
import sys
import tempfile
from pathlib import Path

import jax
import numpy as np

log = logging.getLogger(__name__)

FORMAT = 1  # bump when the stored file's layout changes
SUFFIX = ".jaxprog"
SUBFOLDER = "programs"  # of the compilation cache's folder
VERSIONED = ("jax", "jaxlib", "flax", "optax", "numpy")
# jax settings that change what a trace produces
TRACE_CONFIG = (
    "jax_enable_x64",
    "jax_default_matmul_precision",
    "jax_numpy_dtype_promotion",
    "jax_numpy_rank_promotion",
    "jax_default_prng_impl",
    "jax_threefry_partitionable",
)
_ADDRESS = re.compile(r" at 0x[0-9a-f]+")
_folder: Path | None = None


def configure(folder: Path | None) -> None:
    """Store programs in `folder` (created on first write); None turns storing off."""
    global _folder
    _folder = None if folder is None else Path(folder)


def folder() -> Path | None:
    return _folder


def lower(jitted, args: tuple, statics: tuple = (), ident: tuple | None = None):
    """`jitted.lower(*args, *statics)`, or, where the program can be stored, the lowering of the
    stored program (read, or traced once and written): its `compile()` returns a callable on the
    same pytree arguments. `ident` names the Python function `jitted` runs; None: not stored."""
    if ident is None or _folder is None:
        return jitted.lower(*args, *statics)
    leaves, in_tree = jax.tree.flatten(args)
    tree = tree_text(in_tree)
    if tree is None or not all(_one_device(leaf) for leaf in leaves):
        return jitted.lower(*args, *statics)
    path = _folder / f"{key(ident, statics, tree, leaves)}{SUFFIX}"
    found = _read(path)
    if found is None:
        try:
            found = _export(jitted, statics, in_tree, leaves)
        except Exception as err:  # any refusal: trace as before
            log.debug("program %r not stored: %s", ident, err)
            return jitted.lower(*args, *statics)
        _write(path, *found)
    exported, out_tree = found
    return Lowered(jax.jit(exported.call).lower(*leaves), in_tree, out_tree)


class Lowered:
    """A stored program lowered for the flat arguments; `compile()` gives a callable on the
    pytree arguments (a TypeError for arguments of another structure, as a compiled jit's)."""

    def __init__(self, lowered, in_tree, out_tree):
        self.lowered, self.in_tree, self.out_tree = lowered, in_tree, out_tree

    def compile(self):
        compiled, in_tree, out_tree = self.lowered.compile(), self.in_tree, self.out_tree

        def call(*args):
            leaves, tree = jax.tree.flatten(args)
            if tree != in_tree:
                raise TypeError("arguments of another structure than the stored program's")
            return jax.tree.unflatten(out_tree, compiled(*leaves))

        return call


def tree_text(tree) -> str | None:
    """The arguments' structure as text that names what the trace depends on: static fields
    in full (NumPy arrays unabridged, floats to every digit), memory addresses left out. None
    where a static field is a function defined inside another (a closure's captured values do
    not show in its text) or a lambda."""
    with np.printoptions(threshold=sys.maxsize, floatmode="unique"):
        text = _ADDRESS.sub("", str(tree))
    return None if "<locals>" in text or "<lambda>" in text else text


def key(ident: tuple, statics: tuple, tree: str, leaves: list) -> str:
    """The stored program's name: a digest of everything its trace depends on (`tree`: the
    arguments' `tree_text`)."""
    from . import native

    digest = hashlib.sha256()
    parts = [
        _environment(),
        repr([getattr(jax.config, name, None) for name in TRACE_CONFIG]),
        repr(native.available()),
        repr(ident),
        repr(statics),
        tree,
        *(str(jax.typeof(leaf)) for leaf in leaves),
    ]
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:32]


@functools.cache
def _environment() -> str:
    """This package's source, the tracing libraries' versions, the backend and its devices."""
    from importlib.metadata import PackageNotFoundError, version

    digest = hashlib.sha256()
    package = Path(__file__).parent
    for path in sorted(package.rglob("*")):
        if path.suffix in (".py", ".cc") and path.is_file():
            digest.update(str(path.relative_to(package)).encode())
            digest.update(path.read_bytes())

    def of(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "-"

    devices = [f"{d.platform}:{d.device_kind}" for d in jax.devices()]
    return repr((FORMAT, digest.hexdigest(), [of(n) for n in VERSIONED], devices))


def _one_device(leaf) -> bool:
    sharding = getattr(leaf, "sharding", None)
    return sharding is None or len(sharding.device_set) == 1


def _export(jitted, statics: tuple, in_tree, leaves: list):
    """(the exported program on flat arguments, its results' structure)."""
    from . import native

    box = {}

    def flat(*flat_args):
        out = jitted(*jax.tree.unflatten(in_tree, flat_args), *statics)
        out_leaves, box["out_tree"] = jax.tree.flatten(out)
        return out_leaves

    specs = [_spec(leaf) for leaf in leaves]
    checks = [jax.export.DisabledSafetyCheck.custom_call(native.TARGET)]
    exported = jax.export.export(jax.jit(flat), disabled_checks=checks)(*specs)
    return exported, box["out_tree"]


def _spec(leaf) -> jax.ShapeDtypeStruct:
    aval = jax.typeof(leaf)
    return jax.ShapeDtypeStruct(np.shape(leaf), aval.dtype, weak_type=aval.weak_type)


def _read(path: Path):
    """(exported program, results' structure) from `path`, or None (absent or unreadable)."""
    try:
        blob = path.read_bytes()
    except OSError:
        return None
    try:
        stored = pickle.loads(blob)
        if stored.get("format") != FORMAT:
            return None
        return jax.export.deserialize(bytearray(stored["program"])), stored["out_tree"]
    except Exception as err:  # a damaged file is traced and written again
        log.debug("stored program %s unreadable: %s", path.name, err)
        return None


def _write(path: Path, exported, out_tree) -> None:
    """Write atomically (jobs of a sweep may write the same program at once); a folder that
    cannot be written only means the next run traces again."""
    try:
        blob = pickle.dumps(
            {"format": FORMAT, "program": bytes(exported.serialize()), "out_tree": out_tree}
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except Exception as err:  # storing is an optimisation
        log.debug("program %s not written: %s", path.name, err)
