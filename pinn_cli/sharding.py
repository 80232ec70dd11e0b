"""Collocation points sharded over several devices (train.devices).

The problem's per-point arrays (the points, their weights, V and the lower states there) are
split along the points axis over a one-dimensional mesh of devices; everything else (the
network's parameters, the optimiser's state, an excited state's carrier) is replicated. The
compiled stages are unchanged: XLA partitions them from the arguments' shardings, adding the
reductions that the sums over points need (the loss, the Gram matrix J J^T of the explicit
Levenberg-Marquardt solve, the overlaps with the lower states). On several GPUs of one host
this splits the per-point work (the network's forward and Taylor passes, the Jacobian rows)
evenly; on CPU the devices are threads of one process (XLA_FLAGS=
--xla_force_host_platform_device_count=N), which tests the same program.

A point count that does not divide evenly is padded with copies of the last point at weight
zero: they add nothing to any integral, residual row or overlap.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

AXIS = "points"


def mesh(devices: int) -> jax.sharding.Mesh:
    """A mesh of the first `devices` devices along the points axis."""
    return jax.sharding.Mesh(np.array(jax.devices()[:devices]), (AXIS,))


def pad_points(problem, fields: tuple[str, ...], multiple: int):
    """`problem` with its per-point `fields` padded to the next multiple of `multiple` points:
    copies of the last point, with weight zero (field "w"). A field that already has that many
    rows (lower states computed on the padded grid of an earlier state) stays as it is."""
    n = problem.x.shape[0]
    target = n + (-n % multiple)

    def pad(a, weights: bool):
        a = jnp.asarray(a)
        extra = target - a.shape[0]
        if extra == 0:
            return a
        fill = (
            jnp.zeros((extra, *a.shape[1:]), a.dtype) if weights else jnp.repeat(a[-1:], extra, 0)
        )
        return jnp.concatenate([a, fill])

    changes = {
        name: jax.tree.map(lambda a, w=(name == "w"): pad(a, w), getattr(problem, name))
        for name in fields
    }
    return dataclasses.replace(problem, **changes)


def shard(problem, fields: tuple[str, ...], devices: int):
    """The problem placed on `devices` devices: per-point `fields` split along their first
    axis (padded to a multiple of `devices`), its other arrays replicated (Python numbers stay
    as they are)."""
    problem = pad_points(problem, fields, devices)
    m = mesh(devices)
    split, whole = NamedSharding(m, P(AXIS)), NamedSharding(m, P())
    put = lambda s: lambda a: jax.device_put(a, s)  # noqa: E731
    problem = dataclasses.replace(
        problem, **{name: jax.tree.map(put(split), getattr(problem, name)) for name in fields}
    )
    is_array = lambda a: isinstance(a, jax.Array | np.ndarray)  # noqa: E731
    return jax.tree.map(
        lambda a: (
            a
            if getattr(a, "sharding", None) == split or not is_array(a)
            else jax.device_put(a, whole)
        ),
        problem,
    )


def replicate(tree, devices: int):
    """Every leaf of `tree` (parameters, optimiser state) copied to each of the devices."""
    whole = NamedSharding(mesh(devices), P())
    return jax.tree.map(lambda a: jax.device_put(a, whole), tree)
