"""Proximal operators of the Sparse Group Lasso, as pure functions of pytrees.

Notation (SparseNAS, Wu et al.): ``x`` a pytree, its penalised entries split
into groups ``x_(n)`` of sizes ``p_n`` (see :mod:`jaxnas.optim.groups`).

* Eq. 9, element-wise soft-threshold (the prox of ``a ||.||_1``)::

      [S_a(z)]_i = sgn(z_i) * max(|z_i| - a_i, 0)

* Eq. 10, group (block) soft-threshold (the prox of
  ``sum_n b_n ||.(n)||_2`` with ``b_n = sqrt(p_n) * c_n``)::

      [G_c(z)]_(n) = max(1 - sqrt(p_n) c_n / ||z_(n)||_2, 0) * z_(n)

  (exactly 0 when ``||z_(n)|| <= sqrt(p_n) c_n``, including ``z_(n) = 0``).

* Eq. 5, the Sparse Group Lasso prox, L1 first, *then* the group shrink::

      Prox_Omega = G_c o S_a .

  With ``a = eta lam alpha`` and ``c = eta lam (1 - alpha)`` this is the exact
  prox of ``eta * Omega`` (Eq. 2) because the singleton groups of the L1 term
  are nested in the node groups (Jenatton et al. 2011).  The reverse order is
  *not* the prox: ``z = (3, 0.5)`` with ``a = 1`` and ``b = sqrt(2) c = 1``
  gives ``(1, 0)`` (objective 4.125) for Eq. 5 and ``(1.0136, 0)`` (objective
  4.12509) in the reverse order.

Shapes: every function maps a pytree to a pytree of the same structure,
shapes and dtypes.  Thresholds may be scalars, per-element pytrees (Eq. 9, as
AdamHAPG needs) or per-group ``[num_groups]`` arrays (Eq. 10).
Entries with group id ``-1`` are left untouched by :func:`sgl_prox` and do
not enter :func:`sgl_penalty`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas.optim.groups import Groups, GroupSpec, resolve_groups

__all__ = [
    "group_soft_threshold",
    "sgl_penalty",
    "sgl_prox",
    "soft_threshold",
]


def check_nonneg(name: str, value: Any) -> None:
    """One-line ValueError for a concrete negative (or NaN) value; tracers pass unchecked."""
    if value is None or callable(value):
        return
    for leaf in jax.tree.leaves(value):
        if isinstance(leaf, jax.core.Tracer):
            continue
        arr = np.asarray(leaf)
        if arr.dtype.kind in "fiu" and (np.any(arr < 0) or np.any(np.isnan(arr))):
            raise ValueError(f"{name} must be >= 0, got {arr.min() if arr.size else arr}")


def _as_groups(groups: GroupSpec | Groups, x: Any) -> Groups:
    return groups if isinstance(groups, Groups) else resolve_groups(groups, x)


def _leafwise(t: Any, x: Any, name: str) -> list[Any]:
    """Threshold leaves aligned with ``x``'s leaves: a pytree like ``x``, or one shared leaf."""
    n = len(jax.tree.leaves(x))
    if jax.tree.structure(t) == jax.tree.structure(x):
        return jax.tree.leaves(t)
    t_leaves = jax.tree.leaves(t)
    if len(t_leaves) == 1:
        return t_leaves * n
    raise ValueError(f"{name}: must be a scalar or a pytree with the structure of x")


def _safe_scale(norm: jax.Array, thr: jax.Array) -> jax.Array:
    """``max(1 - thr / norm, 0)`` with the convention 0 for ``norm = 0`` (no NaN, Eq. 10)."""
    keep = norm > thr
    return jnp.where(keep, 1.0 - thr / jnp.where(keep, norm, 1.0), 0.0)


def soft_threshold(x: Any, threshold: Any) -> Any:
    """Element-wise soft-threshold, SparseNAS Eq. 9: ``sgn(x) max(|x| - t, 0)``.

    Args:
      x: array or pytree.
      threshold: ``t >= 0``; a scalar, or a pytree like ``x`` (per-element, e.g.
        ``eta_i lam alpha`` in AdamHAPG) of broadcastable arrays.

    Returns:
      pytree like ``x``; entries with ``|x_i| <= t_i`` are exactly 0.
    """
    check_nonneg("soft_threshold: threshold", threshold)

    leaves, treedef = jax.tree.flatten(x)
    t_leaves = _leafwise(threshold, x, "soft_threshold: threshold")
    out = []
    for v, t in zip(leaves, t_leaves):
        t = jnp.asarray(t, v.dtype)
        keep = jnp.abs(v) > t
        out.append(jnp.where(keep, v - jnp.sign(v) * t, jnp.zeros_like(v)))  # +0, not -0
    return jax.tree.unflatten(treedef, out)


def group_shrink(x: Any, strength: Any, g: Groups) -> Any:
    """:func:`group_soft_threshold` on resolved groups ``g``, without the argument checks
    (for the optimisers of this package, which check once)."""
    leaves = jax.tree.leaves(x)
    if g.num_groups == 0:
        return x
    dtype = jnp.result_type(*leaves)
    sq = g.segment_sum([jnp.square(leaf).astype(dtype) for leaf in leaves])
    norm = jnp.sqrt(sq)
    thr = jnp.sqrt(jnp.asarray(g.sizes, dtype)) * jnp.asarray(strength, dtype)
    scale = _safe_scale(norm, thr)
    per_leaf = g.broadcast(scale, 1.0)
    out = [(leaf * s.astype(leaf.dtype)) for leaf, s in zip(leaves, per_leaf)]
    return jax.tree.unflatten(g.treedef, out)


def group_soft_threshold(x: Any, strength: Any, groups: GroupSpec | Groups = None) -> Any:
    """Group (block) soft-threshold with the ``sqrt(group size)`` factor, SparseNAS Eq. 10.

    For every group ``n`` of size ``p_n``::

        x_(n) <- max(1 - sqrt(p_n) * c_n / ||x_(n)||_2, 0) * x_(n)

    Args:
      x: array or pytree.
      strength: ``c >= 0``, a scalar or a ``[num_groups]`` array (per group, e.g.
        ``median_i(eta_i) lam (1 - alpha)`` in AdamHAPG).  The threshold on the
        group norm is ``sqrt(p_n) * c_n``.
      groups: a group spec (``None``: each leaf is one group, so a bare array is
        one group) or a resolved :class:`~jaxnas.optim.groups.Groups`.

    Returns:
      pytree like ``x``; a group with ``||x_(n)|| <= sqrt(p_n) c_n`` becomes
      exactly 0 (also when it is 0 already: no NaN); entries with id -1 are
      unchanged.
    """
    check_nonneg("group_soft_threshold: strength", strength)
    return group_shrink(x, strength, _as_groups(groups, x))


def masked_threshold(threshold: Any, g: Groups, x: Any) -> Any:
    """Per-leaf thresholds, 0 on unpenalised entries (id -1)."""
    leaves = jax.tree.leaves(x)
    t_leaves = _leafwise(threshold, x, "sgl_prox: l1_threshold")
    out = []
    for leaf, t, pen, uni in zip(leaves, t_leaves, g.penalised, g.uniform):
        t = jnp.asarray(t, leaf.dtype)
        if uni is not None:
            out.append(t if uni >= 0 else jnp.zeros_like(t))
        else:
            out.append(jnp.where(pen, t, 0.0).astype(leaf.dtype))
    return jax.tree.unflatten(g.treedef, out)


def sgl_prox(
    x: Any, l1_threshold: Any, group_strength: Any, groups: GroupSpec | Groups = None
) -> Any:
    """Sparse Group Lasso prox, SparseNAS Eq. 5 = Eq. 10 after Eq. 9.

    ``theta = G_c(S_a(x))`` with ``a`` = ``l1_threshold`` (scalar or
    per-element pytree) and ``c`` = ``group_strength`` (scalar or
    ``[num_groups]``).  With ``a = eta lam alpha``, ``c = eta lam (1 - alpha)``
    it is ``argmin_u 1/2 ||u - x||^2 + eta Omega(u)`` for Omega of Eq. 2.
    In closed form, per group::

        theta_(n) = max(1 - sqrt(p_n) c_n / ||S_a(x_(n))||, 0) S_a(x_(n)) .

    Entries with group id -1 pass through unchanged.
    """
    check_nonneg("sgl_prox: l1_threshold", l1_threshold)
    check_nonneg("sgl_prox: group_strength", group_strength)
    g = _as_groups(groups, x)
    y = soft_threshold(x, masked_threshold(l1_threshold, g, x))  # Eq. 9
    return group_shrink(y, group_strength, g)  # Eq. 10, composed as Eq. 5


def _safe_norm(sq: jax.Array) -> jax.Array:
    """``sqrt(sq)`` whose gradient at 0 is 0 (a valid subgradient choice), not NaN."""
    pos = sq > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, sq, 1.0)), 0.0)


def sgl_penalty(x: Any, lam: Any, alpha: Any, groups: GroupSpec | Groups = None) -> jax.Array:
    """Sparse Group Lasso penalty, SparseNAS Eq. 2 (scalar).

        Omega(x) = lam alpha sum_i |x_i| + lam (1 - alpha) sum_n sqrt(p_n) ||x_(n)||_2

    over the penalised entries (id >= 0).  Differentiable almost everywhere;
    at ``x_(n) = 0`` the gradient of the group norm is taken as 0 (no NaN), so
    it can be added to a loss for the subgradient baselines (SGD, Adam).
    """
    check_nonneg("sgl_penalty: lam", lam)
    g = _as_groups(groups, x)
    leaves = jax.tree.leaves(x)
    if not leaves:
        return jnp.zeros(())
    dtype = jnp.result_type(*leaves)
    l1 = sum(
        jnp.sum(jnp.where(pen, jnp.abs(leaf), 0.0)).astype(dtype)
        for leaf, pen in zip(leaves, g.penalised)
    )
    if g.num_groups:
        norms = _safe_norm(g.segment_sum([jnp.square(leaf).astype(dtype) for leaf in leaves]))
        gl = jnp.sum(jnp.sqrt(jnp.asarray(g.sizes, dtype)) * norms)
    else:
        gl = jnp.zeros((), dtype)
    return lam * alpha * l1 + lam * (1.0 - alpha) * gl
