"""Derivation of a DARTS-space genotype from architecture weights (the DARTS rule).

:func:`derive_cell` is ``model_search.Network.genotype._parse`` of the DARTS reference
code (Liu et al., 2019, Sec. 2.4) for any :class:`~jaxnas.spaces.darts.CellTopology`;
:func:`derive` applies it to the normal and the reduction cell.  Methods with their
own rule (SparseNAS' mixed paths, ASM-NAS' per-layer cells, PR-DARTS' gates) build on
:func:`derive_cell` or :func:`arch_array` in their modules; the pruning rules (BayesNAS,
SparseNAS) end in :func:`pruned_cell`.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from typing import Any

import numpy as np

from jaxnas.ops import DARTS_PRIMITIVES
from jaxnas.spaces import GenotypeError
from jaxnas.spaces.darts import DARTS_CELL, CellTopology
from jaxnas.spaces.darts_genotype import CellGenotype, Genotype

__all__ = ["arch_array", "derive", "derive_cell", "pruned_cell"]

logger = logging.getLogger(__name__)


def arch_array(
    weights: Any,
    primitives: Sequence[str],
    topology: CellTopology,
    shape_what: str = "weights have",
    values_what: str = "architecture weights",
) -> np.ndarray:
    """One cell's architecture weights as a float64 ``(n_edges, n_ops)`` array.

    Raises:
      GenotypeError: another shape (``"{shape_what} shape ..."``) or a NaN / inf
        (``"{values_what} contain NaN or inf"``).
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (topology.n_edges, len(primitives)):
        raise GenotypeError(
            f"{shape_what} shape {w.shape}, expected (n_edges, n_ops) = "
            f"({topology.n_edges}, {len(primitives)})"
        )
    if not np.all(np.isfinite(w)):
        raise GenotypeError(f"{values_what} contain NaN or inf")
    return w


def derive_cell(
    weights: Any,
    primitives: Sequence[str] = DARTS_PRIMITIVES,
    topology: CellTopology = DARTS_CELL,
    k: int | None = 2,
    exclude: Collection[str] = ("none",),
    threshold: float | None = None,
) -> CellGenotype:
    """Discretise one cell's architecture weights by the DARTS rule.

    This is ``model_search.Network.genotype._parse`` of the DARTS reference code,
    generalised to any :class:`CellTopology`: for each intermediate node, each
    incoming edge is scored by its largest weight over the ops not in ``exclude``;
    the ``k`` strongest edges are kept (ties: lower edge index first, via a stable
    sort), and each kept edge gets its argmax op over the non-excluded ops (ties:
    first op in ``primitives``).  A node's pairs are listed strongest edge first.

    Args:
      weights: array-like of shape ``(topology.n_edges, len(primitives))``, rows in
        topology edge order, normally softmaxed alphas (any real scores work).
      primitives: op names, the column order of ``weights``.
      topology: which edge each row is.
      k: edges kept per node (``None``: all).
      exclude: op names never chosen and ignored for edge strength ('none' in DARTS).
      threshold: if set, also drop edges whose strength is ``<= threshold`` (for
        methods that keep a variable number of inputs per node).

    Returns:
      A :class:`CellGenotype` with ``topology.n_nodes`` nodes and concat of all
      intermediate nodes.
    """
    primitives = tuple(primitives)
    w = arch_array(weights, primitives, topology, "weights have", "architecture weights")
    if k is not None and k < 0:
        raise GenotypeError(f"k must be >= 0 or None, got {k}")
    allowed = [i for i, name in enumerate(primitives) if name not in set(exclude)]
    if not allowed:
        raise GenotypeError(f"every op is excluded (exclude={tuple(exclude)})")

    nodes = []
    for node in range(topology.n_nodes):
        incoming = topology.incoming(node)
        strength = {e: max(w[e, i] for i in allowed) for e in incoming}
        ranked = sorted(incoming, key=lambda e: -strength[e])
        if k is not None:
            ranked = ranked[:k]
        if threshold is not None:
            ranked = [e for e in ranked if strength[e] > threshold]
        pairs = []
        for e in ranked:
            best = None
            for i in allowed:
                if best is None or w[e, i] > w[e, best]:
                    best = i
            pairs.append((primitives[best], topology.edges[e][0]))
        nodes.append(tuple(pairs))
    concat = tuple(range(topology.n_inputs, topology.n_inputs + topology.n_nodes))
    return CellGenotype(nodes=tuple(nodes), concat=concat, n_inputs=topology.n_inputs)


def pruned_cell(
    scores: np.ndarray,
    keep: np.ndarray,
    primitives: Sequence[str],
    topology: CellTopology = DARTS_CELL,
) -> CellGenotype:
    """The cell of a pruning rule (BayesNAS, SparseNAS): every kept pair, no top-k.

    Node ``k`` lists ``(primitives[o], src)`` for each incoming edge ``e = src -> k``
    and op ``o`` with ``keep[e, o]`` whose source survives, by decreasing
    ``scores[e, o]`` (ties: lower edge row, then earlier op); so an edge may keep
    several ops and a node any number of edges.  A node survives if it keeps at least
    one pair: a node whose inputs are all dropped is dropped with its outgoing edges
    (and so on downstream), and ``concat`` lists the survivors.  If none survives the
    cell computes zeros: it keeps its empty nodes, ``concat`` is the last node (one zero
    map), and a warning is logged.

    Args:
      scores: ``(topology.n_edges, len(primitives))`` ranking within a node.
      keep: bool, same shape: the pairs the rule keeps.
      primitives: the column names.
      topology: which edge each row is.
    """
    n0 = topology.n_inputs
    alive = [True] * n0
    nodes = []
    for k in range(topology.n_nodes):
        cand = []
        for e in topology.incoming(k):
            src = topology.edges[e][0]
            if not alive[src]:
                continue  # an edge out of a dropped node
            for o in np.nonzero(keep[e])[0]:
                cand.append((-scores[e, o], e, o, (primitives[o], src)))
        cand.sort(key=lambda c: c[:3])
        nodes.append(tuple(c[3] for c in cand))
        alive.append(bool(cand))
    concat = tuple(n0 + k for k in range(topology.n_nodes) if alive[n0 + k])
    if not concat:
        logger.warning("every node of a cell is pruned: the cell outputs zeros")
        concat = (n0 + topology.n_nodes - 1,)
    return CellGenotype(nodes=tuple(nodes), concat=concat, n_inputs=n0)


def derive(
    weights_normal: Any,
    weights_reduce: Any,
    primitives: Sequence[str] = DARTS_PRIMITIVES,
    topology: CellTopology = DARTS_CELL,
    k: int | None = 2,
    exclude: Collection[str] = ("none",),
    threshold: float | None = None,
) -> Genotype:
    """Derive a genotype from normal and reduction weights by the DARTS rule.

    Args:
      weights_normal, weights_reduce: arrays of shape ``(topology.n_edges, len(primitives))``
        (e.g. ``softmax(alpha_normal, -1)``, shape ``(14, 8)`` for DARTS).
      primitives, topology, k, exclude, threshold: see :func:`derive_cell`.

    Returns:
      A :class:`Genotype`; with the defaults its flat form equals DARTS'
      ``Network.genotype()`` output.
    """
    kw = dict(primitives=primitives, topology=topology, k=k, exclude=exclude, threshold=threshold)
    return Genotype(
        normal=derive_cell(weights_normal, **kw), reduce=derive_cell(weights_reduce, **kw)
    )
