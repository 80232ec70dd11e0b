"""Ensembles: K networks trained side by side in one vmapped program, and their bookkeeping.

Every leaf of an ensemble's parameters and optimiser states has a leading member axis. Member i
starts from the network that seed + i alone would train, and a member whose loss or parameters
go non-finite keeps its last finite state while the others go on.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def keys(seed: int, members: int, fold: int = 0) -> jax.Array:
    """The initial key of one network (members == 1; folded with `fold`, e.g. the state n), or
    `members` keys from seeds seed..seed+members-1."""
    if members > 1:
        return jax.vmap(jax.random.key)(jnp.arange(seed, seed + members))
    key = jax.random.key(seed)
    return jax.random.fold_in(key, fold) if fold else key


def member(tree, i: int):
    """Member i's slice of an ensemble's stacked pytree."""
    return jax.tree.map(lambda a: a[i], tree)


def finite(tree, members: int) -> np.ndarray:
    """Per member (or for the single network, as an array of one): are all its leaves finite?"""
    ok = np.ones(members, dtype=bool)
    for leaf in jax.tree.leaves(tree):  # on the host: eager JAX ops would each compile once
        leaf = np.asarray(leaf)
        axes = tuple(range(1 if members > 1 else 0, leaf.ndim))
        ok &= np.atleast_1d(np.isfinite(leaf).all(axis=axes))
    return ok


def where(keep: np.ndarray, new, old):
    """Member-wise choice between two stacked pytrees: new where keep[i], else old."""

    def pick(a, b):
        mask = jnp.asarray(keep).reshape((-1,) + (1,) * (a.ndim - 1))
        return jnp.where(mask, a, b)

    return jax.tree.map(pick, new, old)
