"""Proximal optimisation for sparse (group) regularisation, as optax transforms.

Self-contained: depends only on jax, numpy and optax (no Flax, no other part
of jaxnas), so other JAX projects can ``import jaxnas.optim`` on its own.

From SparseNAS ("Neural Architecture Search as Sparse Supernet", Wu et al.):

* prox operators (pure functions of pytrees): :func:`soft_threshold` (Eq. 9),
  :func:`group_soft_threshold` (Eq. 10, with the ``sqrt(group size)`` factor),
  :func:`sgl_prox` (Eq. 5: Eq. 10 after Eq. 9, the exact Sparse Group Lasso
  prox) and the penalty itself, :func:`sgl_penalty` (Eq. 2);
* ``optax.GradientTransformation`` s: :func:`proximal_step` / :func:`proximal`
  (any optimiser followed by the prox; ISTA after ``optax.sgd``), :func:`hapg`
  (Eqs. 6-8) and :func:`adam_hapg` (AdamHAPG);
* group specs: :func:`resolve_groups`, :func:`leaf_groups`,
  :func:`groups_along_axis` (see :mod:`jaxnas.optim.groups`);
* :func:`path_snapshot`: the solution at a chosen sparsity along a pathwise
  lambda schedule (see :mod:`jaxnas.optim.path`);
* the plain l1 penalty ``gamma ||x||_1`` (RARTS width search, thesis Sec. 4.2):
  :func:`l1_prox` (soft-threshold step, exact zeros), :func:`add_l1_subgradient`
  and :func:`l1_penalty` (see :mod:`jaxnas.optim.l1`).

Example::

    opt = jaxnas.optim.adam_hapg(3e-4, lam=optax.linear_schedule(0.0, 0.5, 20_000))
    state = opt.init(arch)
    updates, state = opt.update(grads, state, arch)
    arch = optax.apply_updates(arch, updates)   # the look-ahead point A_t
    sparse = state.theta                        # derive the architecture from this
"""

from jaxnas.optim.groups import Groups, GroupSpec, groups_along_axis, leaf_groups, resolve_groups
from jaxnas.optim.hapg import (
    AdamHAPGState,
    HAPGState,
    ProximalState,
    adam_hapg,
    apg_momentum,
    hapg,
    proximal,
    proximal_step,
)
from jaxnas.optim.l1 import L1SubgradientState, add_l1_subgradient, l1_penalty, l1_prox
from jaxnas.optim.path import PathSnapshotState, path_snapshot
from jaxnas.optim.prox import group_soft_threshold, sgl_penalty, sgl_prox, soft_threshold

__all__ = [
    "AdamHAPGState",
    "GroupSpec",
    "Groups",
    "HAPGState",
    "L1SubgradientState",
    "PathSnapshotState",
    "ProximalState",
    "adam_hapg",
    "add_l1_subgradient",
    "apg_momentum",
    "group_soft_threshold",
    "groups_along_axis",
    "hapg",
    "l1_penalty",
    "l1_prox",
    "leaf_groups",
    "path_snapshot",
    "proximal",
    "proximal_step",
    "resolve_groups",
    "sgl_penalty",
    "sgl_prox",
    "soft_threshold",
]
