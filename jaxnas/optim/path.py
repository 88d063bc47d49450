"""Reading a sparse solution off a pathwise regularisation path, as an optax wrapper.

A pathwise method raises the sparsity strength lambda step by step and reads
the model off the path (Simon et al. 2013, whose strategy SparseNAS follows;
glmnet stops its path once ``pmax`` variables are non-zero).  When the budget
is short, lambda jumps over the sparsity one wants: a few more steps of the
prox and every weight is zero.  :func:`path_snapshot` watches the sparse
iterate ``theta`` of a proximal transform (:func:`~jaxnas.optim.hapg`,
:func:`~jaxnas.optim.adam_hapg`, :func:`~jaxnas.optim.proximal`) and keeps,
per leaf, the first ``theta`` on the path with at most ``max_nonzeros``
non-zero entries, so that the solution at that point of the path survives the
rest of the run:

    snapshot_t = theta_t        while the leaf is not frozen and nnz(theta_t) > 0
    frozen_t   = frozen_{t-1} or 0 < nnz(theta_t) <= max_nonzeros

If lambda empties a leaf in one step before it reaches ``max_nonzeros``, the
snapshot is the last non-empty ``theta``; if the path never gets that sparse,
it is the last ``theta``.  The wrapper leaves the optimisation itself alone:
the updates and the inner state are exactly those of the inner transform.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

__all__ = ["PathSnapshotState", "path_snapshot"]


class PathSnapshotState(NamedTuple):
    """State of :func:`path_snapshot`: the inner state, ``snapshot`` (a pytree like
    ``theta``) and ``frozen`` (one bool per leaf of ``theta``)."""

    inner: Any
    snapshot: Any
    frozen: Any


def _theta(inner_state: Any) -> Any:
    return optax.tree_utils.tree_get(inner_state, "theta")


def path_snapshot(
    inner: optax.GradientTransformation, max_nonzeros: int
) -> optax.GradientTransformation:
    """``inner`` plus the snapshot of its ``theta`` at ``max_nonzeros`` (module doc).

    Args:
      inner: a transform whose state holds the sparse iterate under the name ``theta``
        (found with ``optax.tree_utils.tree_get``).
      max_nonzeros: freeze a leaf's snapshot at the first step where it has between 1
        and ``max_nonzeros`` non-zero entries (>= 1).

    Returns:
      A transform with :class:`PathSnapshotState`; ``state.snapshot`` has ``theta``'s
      structure.
    """
    if int(max_nonzeros) < 1:
        raise ValueError(f"max_nonzeros must be >= 1, got {max_nonzeros}")

    def init_fn(params):
        state = inner.init(params)
        theta = _theta(state)
        frozen = jax.tree.map(lambda t: jnp.zeros((), jnp.bool_), theta)
        return PathSnapshotState(state, jax.tree.map(jnp.asarray, theta), frozen)

    def update_fn(updates, state, params=None):
        updates, new_inner = inner.update(updates, state.inner, params)
        theta = _theta(new_inner)

        def follow(t, snap, frozen):
            nnz = jnp.sum(t != 0)
            new_snap = jnp.where(frozen | (nnz == 0), snap, t)
            return new_snap, frozen | ((nnz > 0) & (nnz <= max_nonzeros))

        pairs = jax.tree.map(follow, theta, state.snapshot, state.frozen)
        is_pair = lambda x: isinstance(x, tuple)  # noqa: E731
        snapshot = jax.tree.map(lambda p: p[0], pairs, is_leaf=is_pair)
        frozen = jax.tree.map(lambda p: p[1], pairs, is_leaf=is_pair)
        return updates, PathSnapshotState(new_inner, snapshot, frozen)

    return optax.GradientTransformation(init_fn, update_fn)
