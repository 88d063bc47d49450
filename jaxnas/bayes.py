"""BayesNAS's Bayesian update as pure functions (Zhou et al., ICML 2019).

Every gate ``w`` (a scalar multiplying an op's or an edge's output) has a
zero-mean Gaussian prior with variance ``gamma``.  One iteration of
Algorithm 1 (per gate) / Algorithm 2 (gates tied over stacked cells) is

1. train the network with the re-weighted l1 / group-l1 penalty
   ``lam_w * sum omega |w|``                                       (eq. 16 / 21)
2. get the diagonal Hessian ``H`` of the data term w.r.t. the gates
   (:mod:`jaxnas.curvature`)
3. ``C = (1/gamma + H)^-1``                                          (eq. 17)
   ``omega = sqrt(gamma - C) / gamma = sqrt(H / (1 + gamma H))``     (eq. 18)
   ``s = |w| / omega``                                               (eq. 19)
   ``gamma = combine(s)`` along the dependencies                     (eq. 6 / 8)
4. prune where the prior's entropy ``1/2 ln(2 pi e gamma) <= 0``, i.e.
   ``gamma <= 1/(2 pi e) = 0.0585``.

Conventions (see the module functions for details):

* ``H`` is the Hessian of the *data* term ``E_D``.  Training minimises
  ``E_D + lam_w sum omega |w| = lam_w [E_D / lam_w + sum omega |w|]``, so the
  updates use ``H / lam_w`` (the ``lam`` arguments; as the authors' code does).
  With this scaling a larger ``lam_w`` prunes more.
* ``omega`` is computed in the stable form ``sqrt(H / (1 + gamma H))``: the
  printed ``sqrt(gamma - C) / gamma`` is 0/0 at ``gamma = 0``; the stable form
  tends to ``sqrt(H)`` there.  Negative ``H`` (possible with exact Hessians) is
  clipped to 0 (``negative="clip"``) or replaced by ``|H|`` (``"abs"``, the
  authors' code).
* ``s = |w| / max(omega, omega_floor)``: ``omega = 0`` (a gate the data ignores)
  gives a huge ``s`` instead of ``inf`` / NaN, the sparse-Bayesian limit.

DARTS cell layout: gates of one cell type are ``(n_copies, n_edges, 1 + n_ops)``,
copies = stacked cells of that type (each has its own gates), column 0 = the
edge's zero-op / identity gate (Sec. 4.2), columns ``1..n_ops`` = the ops.
Group-level (tied) hyper-parameters are ``(n_edges, 1 + n_ops)``.

Structured priors for network compression (App. B, Algorithm 3, Table S3):
:func:`group_axes` names the groups of a dense or conv kernel;
:func:`compression_update` is Algorithm 3's step 3.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxnas.spaces.darts import CellTopology

PyTree = Any

ENTROPY_THRESHOLD = 1.0 / (2.0 * math.pi * math.e)
"""``gamma`` at which the prior's differential entropy ``1/2 ln(2 pi e gamma)`` is 0."""

OMEGA_FLOOR = 1e-12

DEPENDENCIES = ("code", "paper")


# --------------------------------------------------------------------------
# Element-wise pieces (pytrees)
# --------------------------------------------------------------------------


def _hess(h: jax.Array, negative: str) -> jax.Array:
    if negative == "clip":
        return jnp.maximum(h, 0.0)
    if negative == "abs":
        return jnp.abs(h)
    raise ValueError(f"unknown negative={negative!r}; expected 'clip' or 'abs'")


def entropy(gamma: PyTree) -> PyTree:
    """Differential entropy of ``N(0, gamma)``, ``1/2 ln(2 pi e gamma)`` (Alg. 1 step 4)."""
    return jax.tree.map(lambda g: 0.5 * jnp.log(2.0 * math.pi * math.e * g), gamma)


def keep_mask(gamma: PyTree, threshold: float = ENTROPY_THRESHOLD) -> PyTree:
    """``True`` where a gate survives: entropy > 0, i.e. ``gamma > 1/(2 pi e)``."""
    return jax.tree.map(lambda g: g > threshold, gamma)


def posterior_variance(gamma: PyTree, hess: PyTree, *, negative: str = "clip") -> PyTree:
    """Laplace posterior variance ``C = (1/gamma + H)^-1 = gamma / (1 + gamma H)`` (eq. 17).

    The second form is finite at ``gamma = 0`` (where ``C = 0``).
    """
    return jax.tree.map(lambda g, h: g / (1.0 + g * _hess(h, negative)), gamma, hess)


def reweight(gamma: PyTree, hess: PyTree, *, negative: str = "clip") -> PyTree:
    """Re-weighting coefficient ``omega`` (eq. 18 / A.2.8), stable form.

    ``omega = sqrt(gamma - C) / gamma = sqrt(-C/gamma^2 + 1/gamma)
    = sqrt(H / (1 + gamma H))``; 0 where ``H = 0``, ``sqrt(H)`` at ``gamma = 0``.
    """
    return jax.tree.map(
        lambda g, h: jnp.sqrt(_hess(h, negative) / (1.0 + g * _hess(h, negative))), gamma, hess
    )


def switch(w: PyTree, omega: PyTree, *, omega_floor: float = OMEGA_FLOOR) -> PyTree:
    """Switch ``s = |w| / omega`` (eq. 19; the OCR prints ``g``; A.2.11)."""
    return jax.tree.map(lambda x, o: jnp.abs(x) / jnp.maximum(o, omega_floor), w, omega)


def harmonic(*terms: jax.Array) -> jax.Array:
    """Series-resistor combination ``(sum_i 1/t_i)^-1`` of eq. 6 / 8, NaN-free.

    0 where any term is ``<= 0`` (a dead switch kills the combination),
    ``<= min_i t_i`` everywhere, ``inf`` terms are neutral.
    """
    terms = jnp.broadcast_arrays(*terms)
    alive = jnp.all(jnp.stack([t > 0 for t in terms]), axis=0)
    inv = sum(1.0 / jnp.where(t > 0, t, 1.0) for t in terms)
    return jnp.where(alive, 1.0 / jnp.where(alive, inv, 1.0), 0.0)


def l1_penalty(w: PyTree, omega: PyTree, lam: float | jax.Array = 1.0) -> jax.Array:
    """Re-weighted l1 penalty ``lam sum |omega w|`` (eq. 16)."""
    leaves = jax.tree.leaves(jax.tree.map(lambda x, o: jnp.sum(jnp.abs(o * x)), w, omega))
    return lam * sum(leaves)


class SBLUpdate(NamedTuple):
    """Result of one closed-form update (Alg. 1 step 3); pytrees like ``w``."""

    gamma: PyTree  # new prior variance gamma(t)
    omega: PyTree  # re-weighting for the next training phase, omega(t)
    C: PyTree  # posterior variance C(t), from gamma(t-1)
    s: PyTree  # switches s(t)


def sbl_update(
    w: PyTree,
    hess: PyTree,
    gamma: PyTree,
    *,
    omega: PyTree | None = None,
    order: str = "alg1",
    lam: float | jax.Array = 1.0,
    negative: str = "clip",
    omega_floor: float = OMEGA_FLOOR,
) -> SBLUpdate:
    """One closed-form update without dependencies (``gamma = s``), ``H' = H / lam``.

    ``order="alg1"`` (Algorithm 1 step 3, as printed and as the authors' code):
    ``C = gamma(t-1)/(1+gamma(t-1) H')`` (17), ``omega(t) = sqrt(H'/(1+gamma(t-1) H'))``
    (18), ``s = |w|/omega(t)`` (19), ``gamma(t) = s`` (eq. 6 with one term).

    ``order="alg3"`` (Algorithm 3's order, B.0.2-B.0.5; needs ``omega``, the
    weights the training phase used): ``gamma(t) = |w|/omega(t-1)``, then ``C`` and
    ``omega(t)`` from ``gamma(t)``.  This is exactly the CCCP of Proposition 3
    (the lasso step and the switch use the same ``omega``), so the type-II cost
    never increases; with ``"alg1"`` the training phase used ``omega(t-1)`` while
    ``s`` divides by ``omega(t)``, which reaches the same fixed point but is not
    monotone in general.

    On an orthogonal linear-Gaussian problem, iterating either with the exact
    lasso step for ``w`` reaches the type-II maximum-likelihood optimum
    ``gamma* = max(0, (Q^2 - lam S)/S^2)`` (Tipping & Faul, 2003, for ``lam = 1``).

    Args:
      w: gates (pytree).
      hess: diagonal Hessian of the data term, like ``w``.
      gamma: ``gamma(t-1)``, like ``w``.
      omega: ``omega(t-1)``, like ``w`` (only for ``order="alg3"``).
      lam: sparsity intensity ``lam_w``.
    Returns:
      :class:`SBLUpdate` with ``gamma(t)``, ``omega(t)``, ``C(t)``, ``s(t)``.
    """
    h = jax.tree.map(lambda x: x / lam, hess)
    if order == "alg1":
        c = posterior_variance(gamma, h, negative=negative)
        new_omega = reweight(gamma, h, negative=negative)
        s = switch(w, new_omega, omega_floor=omega_floor)
    elif order == "alg3":
        if omega is None:
            raise ValueError("sbl_update(order='alg3') needs omega, the training phase's weights")
        s = switch(w, omega, omega_floor=omega_floor)
        c = posterior_variance(s, h, negative=negative)
        new_omega = reweight(s, h, negative=negative)
    else:
        raise ValueError(f"unknown order {order!r}; expected 'alg1' or 'alg3'")
    return SBLUpdate(gamma=s, omega=new_omega, C=c, s=s)


# --------------------------------------------------------------------------
# Groups (Algorithm 2 over stacked cells, Algorithm 3 / Table S3 for kernels)
# --------------------------------------------------------------------------


def safe_norm(x: jax.Array, axis: int | Sequence[int] | None, keepdims: bool = False) -> jax.Array:
    """``||x||_2`` over ``axis`` with a zero (sub)gradient at ``x = 0`` instead of NaN."""
    axis = tuple(axis) if isinstance(axis, Sequence) else axis
    sq = jnp.sum(jnp.square(x), axis=axis, keepdims=keepdims)
    pos = sq > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, sq, 1.0)), 0.0)


def group_l1_penalty(
    w: jax.Array, omega: jax.Array, axes: Sequence[int], lam: float | jax.Array = 1.0
) -> jax.Array:
    """Re-weighted group lasso ``lam sum_g omega_g ||w_g||_2`` (eq. 21 / A.3.1, B.0.1).

    Args:
      w: array; a group is all entries that share the indices outside ``axes``.
      omega: group-level ``omega`` broadcastable to the reduced shape (e.g.
        ``keepdims`` shape from :func:`group_reweight`).
      axes: the axes reduced within a group.
    """
    nrm = safe_norm(w, tuple(axes), keepdims=True)
    return lam * jnp.sum(jnp.broadcast_to(omega, nrm.shape) * nrm)


def group_reweight(
    gamma: jax.Array, hess: jax.Array, axes: Sequence[int], *, negative: str = "clip"
) -> jax.Array:
    """Group ``omega_g = sqrt(sum_{i in g} H_i / (1 + gamma_g H_i))`` (A.3.9 corrected, B.0.4-5).

    A.3.9 prints an extra inner square root; the form consistent with A.2.8
    and Table S3 is ``omega_g = sqrt(sum_i alpha_i)`` with ``alpha = (gamma - C)/
    gamma^2 = -C/gamma^2 + 1/gamma = H/(1 + gamma H)``.

    Args:
      gamma: group-level ``gamma`` (broadcastable to ``hess``).
      hess: per-member Hessian diagonal.
      axes: group axes of ``hess``.
    Returns:
      ``keepdims`` group-level array.
    """
    h = _hess(hess, negative)
    alpha = h / (1.0 + gamma * h)
    return jnp.sqrt(jnp.sum(alpha, axis=tuple(axes), keepdims=True))


def group_switch(
    w: jax.Array, omega: jax.Array, axes: Sequence[int], *, omega_floor: float = OMEGA_FLOOR
) -> jax.Array:
    """Group switch ``s_g = ||w_g||_2 / omega_g`` (A.3.8; Table S3's gamma column)."""
    return safe_norm(w, tuple(axes), keepdims=True) / jnp.maximum(omega, omega_floor)


# Table S3 for a Flax conv kernel (kh, kw, C_in, C_out) = paper's (M, K, C, N) axes.
# Each entry: the axes *reduced* within one group (the group is indexed by the rest).
CONV_GROUPS: dict[str, tuple[int, ...]] = {
    "element": (),
    "shape": (3,),  # (a) fixed (c, m, k), over all filters n
    "row": (1, 3),  # (b) fixed (c, m)
    "column": (0, 3),  # (c) fixed (c, k)
    "channel": (0, 1, 3),  # (e) fixed input channel c
    "group_shape": (2, 3),  # (f) fixed (m, k)
    "group_row": (1, 2, 3),  # (g) fixed m
    "group_column": (0, 2, 3),  # (h) fixed k
    "filter": (0, 1, 2),  # (j) fixed output filter n
}
# A Flax dense kernel (in, out) is the matrix W^T of W h = a; "row" = one output
# neuron (all its incoming weights), "column" = one input neuron (all its
# outgoing weights), as in the 2-D row-/column-wise groups of Wen et al. (2016).
DENSE_GROUPS: dict[str, tuple[int, ...]] = {
    "element": (),
    "row": (0,),
    "output": (0,),
    "filter": (0,),
    "column": (1,),
    "input": (1,),
    "channel": (1,),
}


def group_axes(kind: str, ndim: int) -> tuple[int, ...]:
    """Axes reduced within one group of Table S3 for a kernel with ``ndim`` dims.

    ``ndim == 4``: Flax conv kernel ``(kh, kw, C_in, C_out)``; kinds
    ``element, shape, row, column, channel, group_shape, group_row,
    group_column, filter`` (Table S3 (a)-(c), (e)-(h), (j); the overlapping
    row-and-column kinds (d), (i) are not provided).  ``ndim == 2``: Flax dense
    kernel ``(in, out)``; kinds ``row``/``output``/``filter`` (one output neuron),
    ``column``/``input``/``channel`` (one input neuron), ``element``.
    """
    table = {4: CONV_GROUPS, 2: DENSE_GROUPS}.get(ndim)
    if table is None:
        raise ValueError(f"group_axes: kernels must have 2 (dense) or 4 (conv) dims, got {ndim}")
    if kind not in table:
        raise ValueError(
            f"unknown group kind {kind!r} for a {ndim}-d kernel; known: {', '.join(table)}"
        )
    return table[kind]


def group_shape(shape: Sequence[int], axes: Sequence[int]) -> tuple[int, ...]:
    """``keepdims`` shape of the group-level hyper-parameters of an array."""
    return tuple(1 if i in tuple(axes) else d for i, d in enumerate(shape))


class GroupState(NamedTuple):
    """Group-level hyper-parameters of one kernel (``keepdims`` shapes)."""

    gamma: jax.Array
    omega: jax.Array
    C: jax.Array  # per member, like the kernel


def init_group_state(shape: Sequence[int], axes: Sequence[int], dtype=jnp.float32) -> GroupState:
    """Algorithm 3's initialisation ``gamma(0) = omega(0) = 1`` for a kernel of ``shape``."""
    g = jnp.ones(group_shape(shape, axes), dtype)
    return GroupState(gamma=g, omega=g, C=jnp.zeros(tuple(shape), dtype))


def compression_update(
    w: jax.Array,
    hess: jax.Array,
    state: GroupState,
    axes: Sequence[int],
    *,
    lam: float | jax.Array = 1.0,
    negative: str = "clip",
    omega_floor: float = OMEGA_FLOOR,
) -> GroupState:
    """Algorithm 3 step 3 for one kernel (App. B, Table S3).

    ``gamma_g = ||W_g||_2 / omega_g(t-1)`` (B.0.2), ``C = (1/gamma + H')^-1`` (B.0.3),
    ``alpha = -C/gamma^2 + 1/gamma = H'/(1 + gamma H')`` (B.0.4),
    ``omega_g = sqrt(sum_{i in g} alpha_i)`` (B.0.5), with ``H' = H / lam``.
    Note the order differs from Algorithm 1 (gamma from the previous omega).
    Prune groups with ``gamma_g <= 1/(2 pi e)``.
    """
    h = _hess(hess / lam, negative)
    gamma = group_switch(w, state.omega, axes, omega_floor=omega_floor)
    c = gamma / (1.0 + gamma * h)
    omega = group_reweight(gamma, h, axes)
    return GroupState(gamma=gamma, omega=omega, C=c)


# --------------------------------------------------------------------------
# DARTS cells: dependency combination (eq. 6 / 8) and Algorithm 2
# --------------------------------------------------------------------------


class CellState(NamedTuple):
    """Tied hyper-parameters of one cell type, each ``(n_edges, 1 + n_ops)``."""

    gamma: jax.Array
    omega: jax.Array


class CellInfo(NamedTuple):
    """Diagnostics of :func:`cell_update`."""

    s: jax.Array  # (n_edges, 1 + n_ops) group switches
    C: jax.Array  # (n_copies, n_edges, 1 + n_ops) posterior variances, from gamma(t-1)
    keep: jax.Array  # (n_edges, 1 + n_ops) bool, see cell_keep


def init_cell_state(n_edges: int, n_ops: int, dtype=jnp.float32) -> CellState:
    """``gamma(0) = omega(0) = 1`` (Alg. 1/2 initialisation; the authors' code draws U(0,1))."""
    one = jnp.ones((n_edges, 1 + n_ops), dtype)
    return CellState(gamma=one, omega=one)


def cell_penalty(
    gates: jax.Array,
    omega: jax.Array,
    *,
    lam_edge: float | jax.Array,
    lam_op: float | jax.Array,
) -> jax.Array:
    """Eq. 21: ``sum_{e,o} lam_(o) omega[e,o] ||gates[:, e, o]||_2`` (group = cell copies).

    ``lam_edge`` weighs the zero-op / edge gates (column 0) and ``lam_op`` the
    op gates, as the authors' code (``lambda_origin`` / ``lambda_child``); the
    paper's single ``lam_w`` is ``lam_edge = lam_op``.

    Args:
      gates: ``(n_copies, n_edges, 1 + n_ops)``.
      omega: ``(n_edges, 1 + n_ops)``.
    """
    nrm = safe_norm(gates, 0)
    lam = jnp.concatenate(
        [
            jnp.full(nrm.shape[:-1] + (1,), lam_edge),
            jnp.full(nrm.shape[:-1] + (nrm.shape[-1] - 1,), lam_op),
        ],
        axis=-1,
    ).astype(nrm.dtype)
    return jnp.sum(lam * omega * nrm)


def cell_gamma(
    s: jax.Array,
    topology: CellTopology,
    *,
    dependency: str = "code",
    threshold: float = ENTROPY_THRESHOLD,
) -> jax.Array:
    """Effective prior variances from switches along the cell's dependencies.

    For op ``o'`` on edge ``e = (j -> k)`` with edge (zero-op) switch ``s_e``:

    * ``"code"`` (authors' code, 2 terms): ``gamma_e = s_e`` and
      ``gamma_{e,o'} = (1/s_e + 1/s_{e,o'})^-1``.
    * ``"paper"`` (eq. 8, 3 terms): ``gamma_{e,o'} = (1/s_e + 1/P_j + 1/s_{e,o'})^-1``
      with ``P_j = sum_{edges e'' -> j} sum_o s_{e'',o}`` the union (eq. 4) of
      the switches of the ops entering ``j``; the edge gate itself gets
      ``gamma_e = (1/s_e + 1/P_j)^-1`` (eq. 6 for the identity edge ``j -> j'``).
      Edges out of a cell input have no predecessor term.  Ops entering ``j``
      that are already pruned (``gamma <= threshold``) are OFF and count 0 in
      ``P_j`` (Prop. 1: information flows only through non-zero ops), so a node
      whose inputs are all pruned has ``P_j = 0`` and every op leaving it gets
      ``gamma = 0``.  Computed in topological (edge) order.

    Both give ``gamma_{e,o'} = harmonic(gamma_e, s_{e,o'}) <= gamma_e``: a dead
    edge gate kills its ops.

    Args:
      s: ``(n_edges, 1 + n_ops)``, column 0 the edge switches.
    Returns:
      ``(n_edges, 1 + n_ops)``, column 0 the edge gates' ``gamma``.
    """
    if dependency not in DEPENDENCIES:
        raise ValueError(f"unknown dependency {dependency!r}; expected one of {DEPENDENCIES}")
    if s.shape[0] != topology.n_edges:
        raise ValueError(f"s has {s.shape[0]} edge rows, the topology has {topology.n_edges}")
    if dependency == "code":
        return jnp.concatenate([s[:, :1], harmonic(s[:, :1], s[:, 1:])], axis=-1)
    rows: list[jax.Array] = []
    pred: dict[int, jax.Array] = {}  # node id -> P_j
    for e, (src, dst) in enumerate(topology.edges):
        if src < topology.n_inputs:
            g_edge = s[e, 0]
        else:
            g_edge = harmonic(s[e, 0], pred.get(src, jnp.zeros((), s.dtype)))
        g_ops = harmonic(g_edge, s[e, 1:])
        rows.append(jnp.concatenate([g_edge[None], g_ops]))
        alive = jnp.sum(jnp.where(g_ops > threshold, s[e, 1:], 0.0))
        pred[dst] = pred.get(dst, 0.0) + alive
    return jnp.stack(rows)


def cell_keep(
    gamma: jax.Array, topology: CellTopology, threshold: float = ENTROPY_THRESHOLD
) -> jax.Array:
    """Which gates survive (Alg. 1 step 4) plus the structural dependencies.

    An op survives iff its own ``gamma > threshold``, its edge gate survives
    and its source node is alive; an edge gate survives iff its ``gamma >
    threshold`` and its source is alive; a node is alive iff it is a cell input
    or some surviving op enters it.  So a dead edge gate kills its ops and a
    dead node kills its outgoing edges, whatever ``cell_gamma`` variant made
    ``gamma``.

    Args:
      gamma: ``(n_edges, 1 + n_ops)``.
    Returns:
      bool ``(n_edges, 1 + n_ops)``.
    """
    alive: dict[int, jax.Array] = {i: jnp.array(True) for i in range(topology.n_inputs)}
    rows = []
    for e, (src, dst) in enumerate(topology.edges):
        src_alive = alive.get(src, jnp.array(False))
        k_edge = (gamma[e, 0] > threshold) & src_alive
        k_ops = (gamma[e, 1:] > threshold) & k_edge
        rows.append(jnp.concatenate([k_edge[None], k_ops]))
        alive[dst] = alive.get(dst, jnp.array(False)) | jnp.any(k_ops)
    return jnp.stack(rows)


def cell_update(
    gates: jax.Array,
    hess: jax.Array,
    state: CellState,
    topology: CellTopology,
    *,
    dependency: str = "code",
    lam_edge: float | jax.Array = 1.0,
    lam_op: float | jax.Array = 1.0,
    order: str = "alg1",
    negative: str = "clip",
    omega_floor: float = OMEGA_FLOOR,
    threshold: float = ENTROPY_THRESHOLD,
) -> tuple[CellState, CellInfo]:
    """Algorithm 2 step 3 for one cell type: tied updates over the stacked copies.

    With ``H'`` the Hessian divided by ``lam_edge`` (column 0) or ``lam_op``:

    * ``C_i = gamma/(1 + gamma H'_i)`` per copy ``i`` (A.3.2),
    * ``omega = sqrt(sum_i H'_i/(1 + gamma H'_i))`` (A.3.9 corrected, A.3.11),
    * ``s = ||w||_2 / omega`` over the copies (A.3.8, A.3.10),
    * ``gamma = cell_gamma(s)`` (eq. 6 / 8, A.3.5),

    then the keep mask of :func:`cell_keep`.  With one copy this is Algorithm 1.
    ``order="alg3"`` instead takes ``s = ||w||_2 / omega(t-1)`` (the weights the
    training phase used), ``gamma(t) = cell_gamma(s)`` and then ``C`` and
    ``omega(t)`` from ``gamma(t)``: the CCCP order (see :func:`sbl_update`).

    Args:
      gates: ``(n_copies, n_edges, 1 + n_ops)``.
      hess: like ``gates``.
      state: ``gamma(t-1)``, ``omega(t-1)`` (the latter, the penalty weight of
        the training phase, is used only by ``order="alg3"``).
    Returns:
      ``(CellState(gamma(t), omega(t)), CellInfo)``.
    """
    n_ops = gates.shape[-1] - 1
    lam = jnp.concatenate(
        [jnp.full((1,), lam_edge, hess.dtype), jnp.full((n_ops,), lam_op, hess.dtype)]
    )
    h = _hess(hess / lam, negative)
    if order == "alg1":
        c = state.gamma / (1.0 + state.gamma * h)
        omega = group_reweight(state.gamma, h, (0,))[0]
        s = group_switch(gates, omega, (0,), omega_floor=omega_floor)[0]
        gamma = cell_gamma(s, topology, dependency=dependency, threshold=threshold)
    elif order == "alg3":
        s = group_switch(gates, state.omega, (0,), omega_floor=omega_floor)[0]
        gamma = cell_gamma(s, topology, dependency=dependency, threshold=threshold)
        c = gamma / (1.0 + gamma * h)
        omega = group_reweight(gamma, h, (0,))[0]
    else:
        raise ValueError(f"unknown order {order!r}; expected 'alg1' or 'alg3'")
    keep = cell_keep(gamma, topology, threshold)
    return CellState(gamma=gamma, omega=omega), CellInfo(s=s, C=c, keep=keep)


__all__ = [
    "CONV_GROUPS",
    "DENSE_GROUPS",
    "DEPENDENCIES",
    "ENTROPY_THRESHOLD",
    "CellInfo",
    "CellState",
    "GroupState",
    "SBLUpdate",
    "cell_gamma",
    "cell_keep",
    "cell_penalty",
    "cell_update",
    "compression_update",
    "entropy",
    "group_axes",
    "group_l1_penalty",
    "group_reweight",
    "group_shape",
    "group_switch",
    "harmonic",
    "init_cell_state",
    "init_group_state",
    "keep_mask",
    "l1_penalty",
    "posterior_variance",
    "reweight",
    "safe_norm",
    "sbl_update",
    "switch",
]
