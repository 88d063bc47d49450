"""Group structure of a parameter pytree for the Sparse Group Lasso (SGL).

The SGL penalty of SparseNAS (Wu et al., Eq. 2) is

    Omega(x) = lam * alpha * ||x||_1 + lam * (1 - alpha) * sum_n sqrt(p_n) * ||x_(n)||_2 ,

where the groups ``x_(n)`` (sizes ``p_n``) partition the penalised entries.
A *group spec* says which entry belongs to which group.  It is one of

* ``None``: every leaf of the pytree is one group (the natural layout for
  architecture weights stored one leaf per node, e.g. ``a_k`` of shape
  ``[2 + k, num_ops]`` for intermediate node ``k`` of a DARTS cell);
* a pytree with the *same structure* as the parameters whose leaves are
  integers or integer arrays *broadcastable* to the parameter leaf's shape.
  Entry ``i`` of leaf ``l`` belongs to group ``ids[l][i]``.  Ids are
  **global**: the same id in two leaves puts entries of both leaves in one
  group.  Any non-negative integers may be used (they are relabelled
  ``0 .. num_groups - 1`` in increasing order).  The id ``-1`` marks entries
  that are **not penalised** at all (neither the L1 nor the group term; the
  proximal operator is the identity there), e.g. biases;
* a callable ``params -> ids pytree`` as above.  It is called on the
  parameters (or on tracers of them, inside ``jit``/``vmap``), so it must
  depend only on the structure and shapes, never on the values.

Helpers: :func:`leaf_groups` (spelled-out version of ``None``) and
:func:`groups_along_axis` (one group per slice along an axis of every leaf,
e.g. the outgoing weights of each input neuron of a dense kernel ``[in,
out]`` for ``axis=0``, as in Scardapane et al. 2017).

A spec is resolved against a concrete pytree structure into a static
:class:`Groups` (numpy ids, sizes); this happens at trace time, so group
bookkeeping costs nothing inside a compiled step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

GroupSpec = Any  # None | pytree of int (arrays) | Callable[[params], pytree of int arrays]

__all__ = ["GroupSpec", "Groups", "groups_along_axis", "leaf_groups", "resolve_groups"]


@dataclasses.dataclass(frozen=True, eq=False)
class Groups:
    """A resolved, static group structure for one parameter pytree.

    Attributes:
      treedef: structure of the parameter pytree.
      shapes: shape of every parameter leaf (in ``jax.tree.leaves`` order).
      ids: per leaf, an ``int32`` numpy array of the leaf's shape holding the
        group index in ``0 .. num_groups - 1``, or ``-1`` (not penalised).
      uniform: per leaf, the single group id of the whole leaf if all its
        entries share one id (fast path), else ``None``.
      sizes: ``[num_groups]`` numpy array, ``p_n`` = number of entries of group n.
      num_groups: ``N``.
    """

    treedef: Any
    shapes: tuple[tuple[int, ...], ...]
    ids: tuple[np.ndarray, ...]
    uniform: tuple[int | None, ...]
    sizes: np.ndarray
    num_groups: int

    # -- static index tables for the per-group median (AdamHAPG) -------------
    @property
    def penalised(self) -> tuple[np.ndarray, ...]:
        """Per leaf, a boolean mask of the penalised entries (``id >= 0``)."""
        return tuple(i >= 0 for i in self.ids)

    def _flat_tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        flat_ids = np.concatenate([i.ravel() for i in self.ids]) if self.ids else np.zeros(0, int)
        sel = np.nonzero(flat_ids >= 0)[0]
        offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)
        return flat_ids, sel, offsets

    def segment_sum(self, leaves: list[jax.Array]) -> jax.Array:
        """``[num_groups]`` sums over each group of the entries of ``leaves``."""
        dtype = jnp.result_type(*leaves) if leaves else jnp.float32
        total = jnp.zeros((self.num_groups,), dtype)
        for leaf, ids, uni in zip(leaves, self.ids, self.uniform):
            if uni is not None:
                if uni >= 0:
                    total = total.at[uni].add(jnp.sum(leaf))
                continue
            seg = np.where(ids >= 0, ids, self.num_groups).ravel()
            part = jax.ops.segment_sum(leaf.ravel(), seg, num_segments=self.num_groups + 1)
            total = total + part[: self.num_groups]
        return total

    def broadcast(self, per_group: jax.Array, fill: float | jax.Array) -> list[jax.Array]:
        """Per leaf, ``per_group[id]`` at every entry (``fill`` where ``id == -1``)."""
        ext = jnp.concatenate([per_group, jnp.reshape(jnp.asarray(fill, per_group.dtype), (1,))])
        out = []
        for ids, uni, shape in zip(self.ids, self.uniform, self.shapes):
            if uni is not None:
                out.append(jnp.broadcast_to(ext[uni], shape))
            else:
                out.append(ext[np.where(ids >= 0, ids, self.num_groups)])
        return out

    def median(self, leaves: list[jax.Array]) -> jax.Array:
        """``[num_groups]`` median of the entries of each group.

        For an even group size it is the mean of the two middle values (the
        numpy / ``jnp.median`` convention).  One sort of the penalised entries
        keyed by (group id, value); works under ``jit`` and ``vmap``.
        """
        flat_ids, sel, offsets = self._flat_tables()
        vals = jnp.concatenate([leaf.ravel() for leaf in leaves])[sel]
        gid = jnp.asarray(flat_ids[sel])
        order = jnp.lexsort((vals, gid))
        srt = vals[order]
        lo = offsets + (self.sizes - 1) // 2
        hi = offsets + self.sizes // 2
        return 0.5 * (srt[lo] + srt[hi])


def leaf_groups(params: Any) -> Any:
    """Group spec with one group per leaf (the same as ``groups=None``)."""
    leaves, treedef = jax.tree.flatten(params)
    return jax.tree.unflatten(treedef, list(range(len(leaves))))


def groups_along_axis(axis: int = 0, *, skip_ndim_below: int = 2) -> Callable[[Any], Any]:
    """Spec factory: every slice along ``axis`` of every leaf is its own group.

    For a dense kernel ``W[in, out]`` and ``axis=0`` the group of input unit
    ``i`` is its row ``W[i, :]``, i.e. its outgoing weights.  Leaves with
    fewer than ``skip_ndim_below`` dimensions (biases, by default) are not
    penalised (id ``-1``).  Ids are made disjoint across leaves.
    """

    def spec(params: Any) -> Any:
        leaves, treedef = jax.tree.flatten(params)
        out, offset = [], 0
        for leaf in leaves:
            shape = np.shape(leaf)
            if len(shape) < skip_ndim_below:
                out.append(-1)
                continue
            ax = axis % len(shape)
            ids = np.arange(shape[ax]).reshape([-1 if d == ax else 1 for d in range(len(shape))])
            out.append(ids + offset)
            offset += shape[ax]
        return jax.tree.unflatten(treedef, out)

    return spec


def _is_tracer(x: Any) -> bool:
    return isinstance(x, jax.core.Tracer)


def resolve_groups(spec: GroupSpec, params: Any, *, name: str = "groups") -> Groups:
    """Resolve a group spec against ``params`` (arrays or tracers; only shapes are used).

    Raises:
      ValueError: (one line) if the spec's structure or shapes do not match
        ``params``, if ids are not integers >= -1, or if ids are traced values
        (e.g. a spec that ``optax.inject_hyperparams`` turned into a
        hyperparameter: pass ``static_args='groups'`` there).
    """
    leaves, treedef = jax.tree.flatten(params)
    shapes = tuple(tuple(np.shape(leaf)) for leaf in leaves)
    if spec is None:
        spec = leaf_groups(params)
    elif callable(spec):
        spec = spec(params)
    spec_leaves, spec_def = jax.tree.flatten(spec)
    if spec_def != treedef:
        raise ValueError(
            f"{name}: the group spec's pytree structure {spec_def} does not match the "
            f"params' structure {treedef}"
        )
    raw = []
    for k, (ids, shape) in enumerate(zip(spec_leaves, shapes)):
        if _is_tracer(ids):
            raise ValueError(
                f"{name}: group ids must be static (numpy/int), got a traced value; with "
                "optax.inject_hyperparams pass static_args='groups'"
            )
        arr = np.asarray(ids)
        if arr.dtype.kind not in "iu" and arr.dtype != bool:
            raise ValueError(f"{name}: group ids of leaf {k} must be integers, got {arr.dtype}")
        try:
            arr = np.broadcast_to(arr, shape).astype(np.int64)
        except ValueError:
            raise ValueError(
                f"{name}: group ids of leaf {k} with shape {arr.shape} do not broadcast to the "
                f"parameter shape {shape}"
            ) from None
        if arr.size and arr.min() < -1:
            raise ValueError(
                f"{name}: group ids must be >= -1 (-1 = not penalised), got {arr.min()}"
            )
        raw.append(arr)
    used = np.unique(np.concatenate([a.ravel() for a in raw])) if raw else np.zeros(0, np.int64)
    used = used[used >= 0]
    ids = []
    for arr in raw:
        rel = np.where(arr >= 0, np.searchsorted(used, arr), -1).astype(np.int32)
        ids.append(rel)
    uniform = tuple(
        int(a.ravel()[0]) if a.size and np.all(a == a.ravel()[0]) else None for a in ids
    )
    sizes = np.zeros(len(used), np.int64)
    for a in ids:
        sizes += np.bincount(a[a >= 0].ravel(), minlength=len(used)).astype(np.int64)
    return Groups(
        treedef=treedef,
        shapes=shapes,
        ids=tuple(ids),
        uniform=uniform,
        sizes=sizes,
        num_groups=len(used),
    )
