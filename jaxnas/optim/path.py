"""Reading a sparse solution off a pathwise regularisation path, as an optax wrapper.

A pathwise method raises the sparsity strength lambda step by step and reads
the model off the path (Simon et al. 2013, whose strategy SparseNAS follows);
glmnet ends its path once ``pmax`` variables are non-zero.  When the budget is
short, lambda jumps over the sparsity one wants: a few more prox steps and
every weight is zero.  :func:`path_snapshot` watches the sparse iterate
``theta`` of a proximal transform (:func:`~jaxnas.optim.hapg`,
:func:`~jaxnas.optim.adam_hapg`, :func:`~jaxnas.optim.proximal`) and ends the
path of each leaf at the first ``theta`` with at most ``max_nonzeros`` non-zero
entries: that ``theta`` is kept as the leaf's ``snapshot`` and the leaf's
parameters stop moving.  Per leaf, with ``nnz_t`` the non-zeros of ``theta_t``:

    frozen_t   = frozen_{t-1} or nnz_t <= max_nonzeros
    snapshot_t = theta_t          if not frozen_{t-1} and nnz_t > 0, else snapshot_{t-1}
    update_t   = inner update     if not frozen_{t-1} and nnz_t > 0, else 0

If one step empties a leaf before it reaches ``max_nonzeros``, the snapshot is
the last non-empty ``theta`` and the parameters stay where they produced it;
if the path never gets that sparse, the snapshot is the last ``theta``.  Until
a leaf freezes, its updates are exactly those of the inner transform.

Why the parameters stop: in a network that normalises what the weighted sum
feeds (a DARTS cell's output goes through ReLU-conv-BN in the next cell), the
loss is invariant to a common scale of a leaf, so its gradient grows like one
over that scale; once the prox has shrunk a leaf to almost nothing the gradient
overflows.  The inner state keeps running for a frozen leaf but its ``theta``
is no longer the path's: read ``snapshot``.
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
    """``inner`` whose lambda path ends, per leaf, at ``max_nonzeros`` (module doc).

    Args:
      inner: a transform whose state holds the sparse iterate under the name ``theta``
        (found with ``optax.tree_utils.tree_get``), a pytree shaped like the params.
      max_nonzeros: a leaf's path ends at the first step where it has at most
        ``max_nonzeros`` non-zero entries (>= 1).

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
        if jax.tree.structure(theta) != jax.tree.structure(updates):
            raise ValueError("path_snapshot: theta and the updates must have one structure")

        def follow(u, t, snap, frozen):
            nnz = jnp.sum(t != 0)
            moving = ~frozen & (nnz > 0)
            return (
                jnp.where(moving, u, jnp.zeros_like(u)),
                jnp.where(moving, t, snap),
                frozen | (nnz <= max_nonzeros),
            )

        out = jax.tree.map(follow, updates, theta, state.snapshot, state.frozen)
        is_out = lambda x: isinstance(x, tuple)  # noqa: E731
        pick = [jax.tree.map(lambda o, i=i: o[i], out, is_leaf=is_out) for i in range(3)]
        return pick[0], PathSnapshotState(new_inner, pick[1], pick[2])

    return optax.GradientTransformation(init_fn, update_fn)
