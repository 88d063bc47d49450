"""Structured group priors on network weights: the group types of BayesNAS Table S3.

BayesNAS App. B (Zhou et al., ICML 2019) puts a zero-mean Gaussian prior with one
variance ``gamma_g`` on every *group* ``g`` of a layer's weights,
``p(W) = prod_g N(W_g | 0, gamma_g I)``, which turns Algorithm 3 into a re-weighted
group lasso (B.0.1) with per-group updates (Table S3, B.0.2-B.0.5)::

    R(omega o W) = sum_g omega_g ||W_g||_2                          (Table S3, col. 3)
    gamma_g      = ||W_g||_2 / omega_g(t-1)                         (B.0.2)
    C_i          = (1/gamma_g + H_i)^-1            for i in g       (B.0.3)
    alpha_i      = -C_i/gamma_g^2 + 1/gamma_g = H_i / (1 + gamma_g H_i)   (B.0.4)
    omega_g      = sqrt(sum_{i in g} alpha_i)                       (B.0.5)

Conv kernels are Flax ``HWIO`` arrays ``(M, K, C, N)`` = the paper's ``W^l`` of shape
``N x C x M x K`` (filters x channels x kernel height x kernel width) with its axes
reordered.  Table S3's ten types, named by what one group holds fixed:

====  ==================  ===================================  ==================
row   name                one group = all weights with fixed   group size
====  ==================  ===================================  ==================
(a)   ``shape``           ``(c, m, k)``, all filters ``n``     ``N``
(b)   ``row``             ``(c, m)``                           ``N K``
(c)   ``column``          ``(c, k)``                           ``N M``
(d)   ``row_column``      ``(c, m, k)``: row ``m`` *and*       ``N (K + M)``
                          column ``k`` of channel ``c``
(e)   ``channel``         ``c``                                ``N M K``
(f)   ``group_shape``     ``(m, k)``                           ``N C``
(g)   ``group_row``       ``m``                                ``N C K``
(h)   ``group_column``    ``k``                                ``N C M``
(i)   ``group_row_column``  ``(m, k)``: row ``m`` and column   ``N C (K + M)``
                          ``k`` over all channels
(j)   ``filter``          ``n`` (one output filter)            ``C M K``
====  ==================  ===================================  ==================

(d) and (i) are *overlapping* groups: Table S3 writes their member vector as the
concatenation ``W_bar = [W_{:,c,m,:}, W_{:,c,:,k}]`` and ``omega_o = sqrt(sum alpha_row
+ sum alpha_col)``, so the weight at the crossing ``(m, k)`` is counted twice in
``||W_bar||`` and in ``omega``.  We follow that literally; a weight then lies in
``M + K`` (row-and-column) memberships of ``M + K - 1`` distinct groups.

Dense kernels are Flax ``(in, out)``.  Table S3 says an fc layer is the table with
``m = k = 1``, but then (a)-(e) collapse into one type; App. B.2 instead applies
"shape-wise, row-wise and column-wise regularization ... for the 2D weight matrices"
(Fig. S5 a-c), i.e. the 2-D matrix read as one ``M x K`` slice: shape-wise = single
weights, row-/column-wise = rows / columns.  So the dense types are

* ``element`` (alias ``shape``): one weight per group (Fig. S5a on a matrix);
* ``output`` (alias ``row``: a row of the paper's ``W`` in ``h = W a``, C.1.1): all
  incoming weights of one output neuron;
* ``input`` (alias ``column``): all outgoing weights of one input neuron.

(Aliases as in :data:`jaxnas.bayes.DENSE_GROUPS`; in Flax's ``(in, out)`` layout the
paper's rows are columns, hence the explicit names.)

Group-level arrays keep the kernel's rank (``keepdims`` layout), so they broadcast
against the kernel; for the overlapping types they carry both the ``M`` and ``K`` axes.
Everything here is pure ``jnp`` and jittable; :func:`membership` is the numpy
spelling-out of the same definitions (tests, pictures).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas.bayes import OMEGA_FLOOR

__all__ = [
    "CONV_KINDS",
    "DENSE_KINDS",
    "GroupKind",
    "alpha_sum",
    "dead_weights",
    "group_kind",
    "group_penalty",
    "group_update",
    "membership",
    "sq_norm",
]


@dataclasses.dataclass(frozen=True)
class GroupKind:
    """One group type for kernels of one rank.

    Attributes:
      name: canonical name (see the module table).
      ndim: kernel rank (2 dense, 4 conv).
      reduce: axes reduced within a group (regular, non-overlapping types).
      cross: for (d) / (i): ``True``; the group is indexed by ``(m, k[, c])`` and
        holds row ``m`` and column ``k`` (of channel ``c`` for (d), of all channels
        for (i)).
      per_channel: (d): the cross is taken within each input channel.
    """

    name: str
    ndim: int
    reduce: tuple[int, ...] = ()
    cross: bool = False
    per_channel: bool = False

    def group_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        """``keepdims`` shape of the group-level arrays for a kernel of ``shape``."""
        if self.cross:
            m, k, c, _ = shape
            return (m, k, c if self.per_channel else 1, 1)
        return tuple(1 if i in self.reduce else d for i, d in enumerate(shape))

    def num_groups(self, shape: Sequence[int]) -> int:
        return math.prod(self.group_shape(shape))


CONV_KINDS: dict[str, GroupKind] = {
    "element": GroupKind("element", 4, ()),
    "shape": GroupKind("shape", 4, (3,)),  # (a)
    "row": GroupKind("row", 4, (1, 3)),  # (b)
    "column": GroupKind("column", 4, (0, 3)),  # (c)
    "row_column": GroupKind("row_column", 4, cross=True, per_channel=True),  # (d)
    "channel": GroupKind("channel", 4, (0, 1, 3)),  # (e)
    "group_shape": GroupKind("group_shape", 4, (2, 3)),  # (f)
    "group_row": GroupKind("group_row", 4, (1, 2, 3)),  # (g)
    "group_column": GroupKind("group_column", 4, (0, 2, 3)),  # (h)
    "group_row_column": GroupKind("group_row_column", 4, cross=True),  # (i)
    "filter": GroupKind("filter", 4, (0, 1, 2)),  # (j)
}
DENSE_KINDS: dict[str, GroupKind] = {
    "element": GroupKind("element", 2, ()),
    "input": GroupKind("input", 2, (1,)),
    "output": GroupKind("output", 2, (0,)),
}
_DENSE_ALIASES = {"shape": "element", "row": "output", "column": "input"}


def group_kind(name: str, ndim: int) -> GroupKind:
    """The :class:`GroupKind` called ``name`` for a kernel of rank ``ndim`` (2 or 4)."""
    if ndim == 4:
        table, aliases = CONV_KINDS, {}
    elif ndim == 2:
        table, aliases = DENSE_KINDS, _DENSE_ALIASES
    else:
        raise ValueError(f"group priors need dense (2-d) or conv (4-d) kernels, got {ndim}-d")
    name = aliases.get(name, name)
    if name not in table:
        known = sorted([*table, *aliases])
        raise ValueError(f"unknown group type {name!r} for a {ndim}-d kernel; known: {known}")
    return table[name]


# ---------------------------------------------------------------------------- cross groups
# A cross group (m, k[, c]) holds row m (fixed m, all k') and column k (fixed k, all m').
# Work on a kernel view (M, K, B, A): B = channels kept apart ((d): C, (i): 1), A = the
# axis always reduced ((d): N filters, (i): C * N).


def _cross_view(kind: GroupKind, x: jax.Array) -> jax.Array:
    m, k, c, n = x.shape
    return x if kind.per_channel else x.reshape(m, k, 1, c * n)


def _cross_sq_norm(kind: GroupKind, w: jax.Array) -> jax.Array:
    v = jnp.square(_cross_view(kind, w))
    rows = jnp.sum(v, axis=(1, 3), keepdims=True)  # (M, 1, B, 1)
    cols = jnp.sum(v, axis=(0, 3), keepdims=True)  # (1, K, B, 1)
    return rows + cols  # the crossing counted twice: W_bar is a concatenation


def _cross_alpha(kind: GroupKind, h: jax.Array, gamma: jax.Array) -> jax.Array:
    hv = _cross_view(kind, h)  # (M, K', B, A)
    g = gamma[..., 0]  # (M, K, B)
    # row part: sum_{k', a} h[m, k', b, a] / (1 + gamma[m, k, b] h[m, k', b, a])
    rows = jnp.sum(
        hv[:, None] / (1.0 + g[:, :, None, :, None] * hv[:, None]), axis=(2, 4)
    )  # (M, K, B)
    # column part: sum_{m', a} h[m', k, b, a] / (1 + gamma[m, k, b] h[m', k, b, a])
    cols = jnp.sum(hv[None] / (1.0 + g[:, None, :, :, None] * hv[None]), axis=(1, 4))
    return (rows + cols)[..., None]


def _cross_dead(kind: GroupKind, dead: jax.Array, shape: Sequence[int]) -> jax.Array:
    m, k, c, n = shape
    row = jnp.any(dead, axis=1, keepdims=True)  # some group through row m' is dead
    col = jnp.any(dead, axis=0, keepdims=True)
    out = jnp.broadcast_to(row | col, (m, k, dead.shape[2], 1))
    if kind.per_channel:
        return jnp.broadcast_to(out, (m, k, c, n))
    return jnp.broadcast_to(out, (m, k, 1, c * n)).reshape(m, k, c, n)


# ---------------------------------------------------------------------------- per-group maths


def _safe_sqrt(sq: jax.Array) -> jax.Array:
    # sqrt with a zero (sub)gradient at 0: pruned groups must not give NaN gradients
    pos = sq > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, sq, 1.0)), 0.0)


def sq_norm(kind: GroupKind, w: jax.Array) -> jax.Array:
    """``||W_g||_2^2`` per group (``keepdims`` group shape)."""
    if kind.cross:
        return _cross_sq_norm(kind, w)
    return jnp.sum(jnp.square(w), axis=kind.reduce, keepdims=True)


def alpha_sum(kind: GroupKind, hess: jax.Array, gamma: jax.Array) -> jax.Array:
    """``sum_{i in g} H_i / (1 + gamma_g H_i)`` per group (B.0.4 summed as in B.0.5).

    ``hess`` is the (non-negative) Hessian diagonal shaped like the kernel, ``gamma``
    the group-level variances.
    """
    if kind.cross:
        return _cross_alpha(kind, hess, gamma)
    return jnp.sum(hess / (1.0 + gamma * hess), axis=kind.reduce, keepdims=True)


def dead_weights(kind: GroupKind, dead: jax.Array, shape: Sequence[int]) -> jax.Array:
    """Per-weight bool: the weight lies in at least one dead group."""
    if kind.cross:
        return _cross_dead(kind, dead, shape)
    return jnp.broadcast_to(dead, tuple(shape))


def group_penalty(kind: GroupKind, w: jax.Array, omega: jax.Array) -> jax.Array:
    """``sum_g omega_g ||W_g||_2`` (Table S3's ``R^l``; B.0.1 without ``lambda^l``).

    The norm has a zero subgradient at ``W_g = 0`` (no NaN for pruned groups).
    """
    sq = sq_norm(kind, w)
    return jnp.sum(omega * _safe_sqrt(sq))


def group_update(
    kind: GroupKind,
    w: jax.Array,
    hess: jax.Array,
    omega: jax.Array,
    *,
    lam: float | jax.Array = 1.0,
    omega_floor: float = OMEGA_FLOOR,
) -> tuple[jax.Array, jax.Array]:
    """Algorithm 3 step 3 for one kernel and one group type: ``(gamma(t), omega(t))``.

    ``gamma_g = ||W_g|| / omega_g(t-1)`` (B.0.2), then ``omega_g = sqrt(sum_{i in g}
    H'_i / (1 + gamma_g H'_i))`` (B.0.3-B.0.5) with ``H' = max(H, 0) / lam``: training
    minimises ``E_D + lam R`` = ``lam (E_D / lam + R)`` (as :func:`jaxnas.bayes.
    compression_update`, which this equals for the non-overlapping types).
    """
    h = jnp.maximum(hess, 0.0) / lam
    gamma = _safe_sqrt(sq_norm(kind, w)) / jnp.maximum(omega, omega_floor)
    return gamma, jnp.sqrt(alpha_sum(kind, h, gamma))


# ---------------------------------------------------------------------------- spelled out


def membership(kind: GroupKind, shape: Sequence[int]) -> list[np.ndarray]:
    """The members of every group as flat (C-order) indices into a kernel of ``shape``.

    Groups are listed in the C order of :meth:`GroupKind.group_shape`; a cross group
    lists its row then its column (the crossing twice, as Table S3's concatenation).
    """
    shape = tuple(int(s) for s in shape)
    idx = np.arange(math.prod(shape)).reshape(shape)
    if kind.cross:
        m, k, c, n = shape
        view = idx if kind.per_channel else idx.reshape(m, k, 1, c * n)
        out = []
        for mi, ki, bi in np.ndindex(m, k, view.shape[2]):
            out.append(np.concatenate([view[mi, :, bi, :].ravel(), view[:, ki, bi, :].ravel()]))
        return out
    keep = [i for i in range(len(shape)) if i not in kind.reduce]
    moved = np.transpose(idx, keep + list(kind.reduce))
    return list(moved.reshape(math.prod([shape[i] for i in keep]), -1))
