"""PR-DARTS regularizers, temperature schedule and derivation (Zhou et al., NeurIPS 2020).

The upper-level objective of PR-DARTS (Sec. 4.2, after Eq. 8) is

    min_beta  F_val(W*(beta), beta) + lam1 L_skip(beta) + lam2 L_nonskip(beta) - lam3 L_path(beta)

with lam1 = 0.01 > lam2 = 0.005 and lam3 = 0.005 (L188).  Every term is a
deterministic function of the activation probabilities of Theorem 3,

    p[e, t] = P(g[e, t] != 0) = sigmoid(beta[e, t] - tau ln(-a/b))     (jaxnas.gates.p_nonzero)

Sec. 4.1 (group-structured sparsity):

    L_skip    = zeta        * sum_e p[e, skip]                 mean skip activation
    L_nonskip = zeta/(r-1)  * sum_e sum_{t != skip} p[e, t]    mean non-skip activation

``zeta = 2/(h(h-1))`` is 1/(number of node pairs) in the paper; for the DARTS
cell (14 edges, the inputs are not connected) we take ``zeta = 1/n_edges``, so
both terms are plain means over the group's gates.  Per gate, the gradient is
``lam1 zeta p(1-p)`` on skip and ``lam2 zeta/(r-1) p(1-p)`` on every other op:
at equal ``p`` a skip gate is pushed ``lam1 (r-1)/lam2 = 14`` times harder.

Eq. 8 (path depth), over the chain ``c_{k-1} -> n0 -> n1 -> n2 -> n3`` (DARTS
node ids 1->2->3->4->5, "the input node which is the output of the previous
cell", L184) and the parameterised ops O_p (the four convolutions):

    L_path = prod_{(l, l+1) in chain} sum_{t in O_p} p[(l, l+1), t]

Two variants (``variant=``):

* ``"paper"`` (default): the formulas above; zero and the pools are in the
  non-skip group; the path factor is a *sum* over the conv ops (so L_path can
  exceed 1; 25.1 at beta = 0, tau = 0.1).
* ``"code"``: the authors' ``get_regularization``: given the mask ``M`` of the
  ops sampled in this forward pass (``jaxnas.gates.sample_two_ops``), each group
  term is the mean of ``p`` over the *sampled* gates of the group, with
  {none, convs} and {pools} as separate groups (both weighted by lam2); the
  cell types are averaged; each group term is then hinged,
  ``max(term - 0.2, 0)``; the path factor of a chain edge is the mean of ``p``
  over its sampled convs and the product runs over the chain edges with at
  least one sampled conv (0 if none).

Columns are looked up by op name in ``primitives`` (default
:data:`jaxnas.ops.DARTS_PRIMITIVES`, whose order differs from the authors'
code), so these are pure functions of ``beta`` arrays of shape
``(n_edges, n_ops)`` = ``(14, 8)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas.gates import A, B, p_nonzero
from jaxnas.ops import DARTS_PRIMITIVES
from jaxnas.spaces import GenotypeError
from jaxnas.spaces.darts import DARTS_CELL, CellTopology
from jaxnas.spaces.darts_derive import derive_cell
from jaxnas.spaces.darts_genotype import CellGenotype, Genotype

__all__ = [
    "CODE_THRESHOLD",
    "LAMBDA_NONSKIP",
    "LAMBDA_PATH",
    "LAMBDA_SKIP",
    "PATH_OPS",
    "POOL_OPS",
    "SKIP_OP",
    "OpGroups",
    "RegTerms",
    "chain_edges",
    "group_terms",
    "op_groups",
    "prdarts_derive",
    "prdarts_derive_cell",
    "prdarts_regularizer",
]

#: lam1 (skip group), lam2 (non-skip group), lam3 (path reward), paper L188.
LAMBDA_SKIP: float = 0.01
LAMBDA_NONSKIP: float = 0.005
LAMBDA_PATH: float = 0.005
#: Hinge threshold of the authors' code (``model.threshold``); not in the paper.
CODE_THRESHOLD: float = 0.2

SKIP_OP = "skip_connect"
#: The parameterised ops O_p of Eq. 8 (the convolutions of the DARTS space).
PATH_OPS: tuple[str, ...] = ("sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
#: Ops the authors' code puts in a separate pooling group.
POOL_OPS: tuple[str, ...] = ("max_pool_3x3", "avg_pool_3x3", "max_pool_5x5")

VARIANTS = ("paper", "code")


@dataclasses.dataclass(frozen=True)
class OpGroups:
    """Column indices of the op groups in a ``(n_edges, n_ops)`` beta.

    Attributes:
      skip: the skip-connection column(s).
      nonskip: the non-skip group (paper: every other op; code: none + convs).
      pool: the code's pooling group (empty for the paper variant).
      path: the parameterised ops O_p of Eq. 8.
    """

    skip: tuple[int, ...]
    nonskip: tuple[int, ...]
    pool: tuple[int, ...]
    path: tuple[int, ...]


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")


def op_groups(primitives: Sequence[str] = DARTS_PRIMITIVES, variant: str = "paper") -> OpGroups:
    """The op groups of ``primitives`` (columns of beta) for ``variant``.

    Raises:
      ValueError: if ``primitives`` has no ``skip_connect`` or no op of :data:`PATH_OPS`.
    """
    _check_variant(variant)
    primitives = tuple(primitives)
    if SKIP_OP not in primitives:
        raise ValueError(f"PR-DARTS needs {SKIP_OP!r} among the ops, got {primitives}")
    skip = tuple(i for i, n in enumerate(primitives) if n == SKIP_OP)
    path = tuple(i for i, n in enumerate(primitives) if n in PATH_OPS)
    if not path:
        raise ValueError(f"PR-DARTS needs a parameterised op of {PATH_OPS}, got {primitives}")
    rest = tuple(i for i in range(len(primitives)) if i not in skip)
    if variant == "paper":
        return OpGroups(skip=skip, nonskip=rest, pool=(), path=path)
    pool = tuple(i for i in rest if primitives[i] in POOL_OPS)
    nonskip = tuple(i for i in rest if i not in pool)
    return OpGroups(skip=skip, nonskip=nonskip, pool=pool, path=path)


def chain_edges(topology: CellTopology = DARTS_CELL, start: int | None = None) -> tuple[int, ...]:
    """Edge indices (beta rows) of the path ``start -> n_inputs -> n_inputs+1 -> ...``.

    Default ``start = n_inputs - 1`` (``c_{k-1}``, the previous cell's output): for
    the DARTS cell the edges ``(1,2), (2,3), (3,4), (4,5)`` = rows ``1, 4, 8, 13``.

    Raises:
      ValueError: if an edge of the chain is not in ``topology``.
    """
    if start is None:
        start = topology.n_inputs - 1
    nodes = [start, *range(topology.n_inputs, topology.n_inputs + topology.n_nodes)]
    index = {e: i for i, e in enumerate(topology.edges)}
    out = []
    for src, dst in zip(nodes[:-1], nodes[1:]):
        if (src, dst) not in index:
            raise ValueError(f"chain edge ({src}, {dst}) is not in the cell topology")
        out.append(index[(src, dst)])
    return tuple(out)


class RegTerms(NamedTuple):
    """The regularizer and its parts (scalars, before the lambdas unless noted).

    ``total = lam1 * skip + lam2 * (nonskip + pool) - lam3 * path`` (code variant:
    the group terms are the hinged ones).
    """

    total: jax.Array
    skip: jax.Array
    nonskip: jax.Array
    pool: jax.Array
    path: jax.Array


def _cols(x: jax.Array, cols: tuple[int, ...]) -> jax.Array:
    return x[..., np.asarray(cols, dtype=np.int32)]


def group_terms(
    beta: jax.Array,
    tau: jax.Array | float,
    *,
    variant: str = "paper",
    mask: jax.Array | None = None,
    primitives: Sequence[str] = DARTS_PRIMITIVES,
    topology: CellTopology = DARTS_CELL,
    path_reduce: str | None = None,
    a: float = A,
    b: float = B,
) -> dict[str, jax.Array]:
    """The unweighted, unhinged group terms of one cell: ``skip, nonskip, pool, path``.

    Args:
      beta: ``(topology.n_edges, len(primitives))`` gate logits of one cell type.
      tau: temperature (scalar, may be traced).
      variant: ``"paper"`` or ``"code"`` (see the module docstring).
      mask: ``(n_edges, n_ops)`` 0/1 mask of the ops sampled in this forward pass
        (``OpSample.mask``); used by the code variant only (``None``: every op).
      primitives: op names, the column order of ``beta``.
      topology: the cell (for the chain edges of L_path).
      path_reduce: how a chain edge's conv probabilities combine: ``"sum"`` (paper
        Eq. 8) or ``"mean"`` (the code, over the sampled convs).  Default: by variant.
      a, b: stretch limits.

    Returns:
      ``{"skip", "nonskip", "pool", "path"}`` scalars (``pool`` is 0 for the paper).
    """
    _check_variant(variant)
    beta = jnp.asarray(beta)
    if beta.shape != (topology.n_edges, len(primitives)):
        raise ValueError(
            f"beta has shape {beta.shape}, expected (n_edges, n_ops) = "
            f"({topology.n_edges}, {len(primitives)})"
        )
    if path_reduce is None:
        path_reduce = "sum" if variant == "paper" else "mean"
    if path_reduce not in ("sum", "mean"):
        raise ValueError(f"path_reduce must be 'sum' or 'mean', got {path_reduce!r}")
    groups = op_groups(primitives, variant)
    chain = np.asarray(chain_edges(topology), dtype=np.int32)
    p = p_nonzero(beta, tau, a, b)
    zero = jnp.zeros((), p.dtype)

    if variant == "paper":
        # zeta = 1/n_edges; L_nonskip carries the extra 1/(r-1): both are group means.
        skip = jnp.mean(_cols(p, groups.skip))
        nonskip = jnp.mean(_cols(p, groups.nonskip))
        pc = _cols(p[chain], groups.path)  # (len(chain), |O_p|)
        factors = pc.sum(-1) if path_reduce == "sum" else pc.mean(-1)
        return {"skip": skip, "nonskip": nonskip, "pool": zero, "path": jnp.prod(factors)}

    m = jnp.ones_like(p) if mask is None else jax.lax.stop_gradient(jnp.asarray(mask, p.dtype))
    pm = p * m

    def masked_mean(cols: tuple[int, ...]) -> jax.Array:
        if not cols:
            return zero
        count = _cols(m, cols).sum()
        return jnp.where(count > 0, _cols(pm, cols).sum() / jnp.maximum(count, 1.0), zero)

    pc, mc = _cols(pm[chain], groups.path), _cols(m[chain], groups.path)
    count = mc.sum(-1)
    has = count > 0
    edge_val = pc.sum(-1) if path_reduce == "sum" else pc.sum(-1) / jnp.maximum(count, 1.0)
    path = jnp.where(jnp.any(has), jnp.prod(jnp.where(has, edge_val, 1.0)), zero)
    return {
        "skip": masked_mean(groups.skip),
        "nonskip": masked_mean(groups.nonskip),
        "pool": masked_mean(groups.pool),
        "path": path,
    }


def prdarts_regularizer(
    beta: jax.Array | Mapping[str, jax.Array],
    tau: jax.Array | float,
    *,
    variant: str = "paper",
    mask: jax.Array | Mapping[str, jax.Array] | None = None,
    lambdas: tuple[float, float, float] = (LAMBDA_SKIP, LAMBDA_NONSKIP, LAMBDA_PATH),
    threshold: float | None = None,
    combine: str = "mean",
    primitives: Sequence[str] = DARTS_PRIMITIVES,
    topology: CellTopology = DARTS_CELL,
    path_reduce: str | None = None,
    a: float = A,
    b: float = B,
) -> RegTerms:
    """``lam1 L_skip + lam2 L_nonskip - lam3 L_path`` (the regularizer of the PR-DARTS objective).

    Args:
      beta: one cell's ``(14, 8)`` logits, or a mapping of cell types to such arrays
        (``{"normal": ..., "reduce": ...}``); the terms of the cell types are combined
        by ``combine`` (``"mean"``, as in the authors' code, or ``"sum"``).
      tau: temperature (scalar, may be traced).
      variant: ``"paper"`` or ``"code"``.
      mask: sampled-op masks of the same structure as ``beta`` (code variant only).
      lambdas: ``(lam1, lam2, lam3)``; default the paper's ``(0.01, 0.005, 0.005)``.
      threshold: hinge ``max(term - threshold, 0)`` on the group terms (after
        combining cell types).  Default: 0.2 for the code variant, none for the paper.
      combine, primitives, topology, path_reduce, a, b: see :func:`group_terms`.

    Returns:
      :class:`RegTerms` ``(total, skip, nonskip, pool, path)``; the parts are the
      combined (and, with a threshold, hinged) group terms before the lambdas.
    """
    if combine not in ("mean", "sum"):
        raise ValueError(f"combine must be 'mean' or 'sum', got {combine!r}")
    if threshold is None and variant == "code":
        threshold = CODE_THRESHOLD
    if isinstance(beta, Mapping):
        keys = list(beta)
        if not keys:
            raise ValueError("beta mapping is empty")
        masks: Mapping[str, Any] = mask if isinstance(mask, Mapping) else dict.fromkeys(keys, mask)
    else:
        keys, beta, masks = [None], {None: beta}, {None: mask}
    kw = dict(
        variant=variant, primitives=primitives, topology=topology, path_reduce=path_reduce, a=a, b=b
    )
    per_cell = [group_terms(beta[key], tau, mask=masks.get(key), **kw) for key in keys]
    scale = 1.0 / len(keys) if combine == "mean" else 1.0
    terms = {name: scale * sum(t[name] for t in per_cell) for name in per_cell[0]}
    if threshold is not None:
        for name in ("skip", "nonskip", "pool"):
            terms[name] = jnp.maximum(terms[name] - threshold, 0.0)
    lam1, lam2, lam3 = lambdas
    total = lam1 * terms["skip"] + lam2 * (terms["nonskip"] + terms["pool"]) - lam3 * terms["path"]
    return RegTerms(total=total, **terms)


# --------------------------------------------------------------------------------------
# Derivation (paper L176, L188)
# --------------------------------------------------------------------------------------

DERIVE_RULES = ("paper", "darts", "code")


def prdarts_derive_cell(
    beta: Any,
    *,
    rule: str = "paper",
    k: int = 2,
    primitives: Sequence[str] = DARTS_PRIMITIVES,
    topology: CellTopology = DARTS_CELL,
    exclude: Collection[str] = ("none",),
) -> CellGenotype:
    """Discretise one cell by activation probability.

    ``rule="paper"`` (L188): for each intermediate node, collect every (predecessor,
    op) pair on its incoming edges except ``exclude`` (``none``), rank them by
    ``P(g != 0) = sigmoid(beta - tau ln(-a/b))`` and keep the top ``k``; both may come
    from the same predecessor.  The shift is the same for every gate, so this ranks
    by ``beta`` and does not depend on ``tau``.  Ties: lower edge row, then earlier op.

    ``rule="darts"``: the DARTS convention, ``k`` distinct predecessors, each with its
    best op (:func:`jaxnas.genotype.derive_cell` on ``beta``).

    ``rule="code"``: the authors' ``genotype()``: like ``"paper"`` but ranked by the
    per-edge ``softmax(beta)``.

    Args:
      beta: ``(topology.n_edges, len(primitives))`` logits of one cell type.
      rule: ``"paper"``, ``"darts"`` or ``"code"``.
      k: inputs kept per node.
      primitives, topology: the columns and rows of ``beta``.
      exclude: op names never selected.

    Returns:
      A :class:`jaxnas.genotype.CellGenotype`; each node lists its pairs strongest first.
    """
    if rule not in DERIVE_RULES:
        raise ValueError(f"unknown rule {rule!r}; expected one of {DERIVE_RULES}")
    w = np.asarray(beta, dtype=np.float64)
    primitives = tuple(primitives)
    if w.shape != (topology.n_edges, len(primitives)):
        raise GenotypeError(
            f"beta has shape {w.shape}, expected (n_edges, n_ops) = "
            f"({topology.n_edges}, {len(primitives)})"
        )
    if not np.all(np.isfinite(w)):
        raise GenotypeError("architecture parameters contain NaN or inf")
    if rule == "darts":
        return derive_cell(w, primitives, topology, k=k, exclude=exclude)
    if rule == "code":
        w = np.exp(w - w.max(axis=1, keepdims=True))
        w = w / w.sum(axis=1, keepdims=True)
    allowed = [i for i, name in enumerate(primitives) if name not in set(exclude)]
    if not allowed:
        raise GenotypeError(f"every op is excluded (exclude={tuple(exclude)})")
    nodes = []
    for node in range(topology.n_nodes):
        cands = [(e, i) for e in topology.incoming(node) for i in allowed]
        cands.sort(key=lambda c: -w[c])  # stable: ties keep edge, then op order
        nodes.append(tuple((primitives[i], topology.edges[e][0]) for e, i in cands[:k]))
    concat = tuple(range(topology.n_inputs, topology.n_inputs + topology.n_nodes))
    return CellGenotype(nodes=tuple(nodes), concat=concat, n_inputs=topology.n_inputs)


def prdarts_derive(beta_normal: Any, beta_reduce: Any, **cell: Any) -> Genotype:
    """A :class:`jaxnas.genotype.Genotype` from normal and reduction logits; ``cell``: the
    keywords of :func:`prdarts_derive_cell` (``rule``, ``k``, ``primitives``, ``topology``,
    ``exclude``), the same for both cells."""
    return Genotype(
        normal=prdarts_derive_cell(beta_normal, **cell),
        reduce=prdarts_derive_cell(beta_reduce, **cell),
    )
