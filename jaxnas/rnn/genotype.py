"""The recurrent cell genotype (DARTS' RNN space) and its SparseNAS derivation.

DARTS' recurrent cell (Liu et al., 2019, Sec. 2.1 and ``rnn/genotypes.py``)
has states ``s_0 .. s_8``: ``s_0`` comes from ``(x_t, h_{t-1})``, and
intermediate node ``i = 1..8`` picks one predecessor ``s_j`` (``j < i``) and one
activation; DARTS writes it ``Genotype(recurrent=[(op, j), ...], concat=range(1, 9))``
(the cell output is the mean of the ``concat`` states).

The sparse ("mixed path") form of SparseNAS lets node ``i`` keep several
``(op, j)`` pairs and lets a node be absent (all its incoming weights zero):
``nodes[i - 1]`` is the tuple of node ``i``'s pairs, empty for a dropped node.
A DARTS genotype is the case of one pair per node.

In the search space every node ``i`` has ``i`` incoming edges (one per
``j < i``), so there are ``1 + 2 + ... + 8 = 36`` edges; edge ``(i, j)`` has row
:func:`edge_index` ``= i (i - 1) / 2 + j`` of the architecture matrix
``A (36, n_ops)``.  SparseNAS' node groups (Eq. 2) are the incoming edges of
a node: group ``i`` has ``4 i`` entries for the 4 ops without ``none``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Collection, Sequence
from typing import Any

import numpy as np

from jaxnas.files import write_text
from jaxnas.spaces import GenotypeError

__all__ = [
    "DARTS_V1",
    "DARTS_V2",
    "RNN_OPS",
    "RNN_PRIMITIVES",
    "STEPS",
    "RNNGenotype",
    "derive_darts_rnn",
    "derive_rnn",
    "edge_index",
    "get_rnn_genotype",
    "node_groups",
]

logger = logging.getLogger(__name__)

STEPS = 8  # intermediate nodes (DARTS rnn/genotypes.py)
RNN_OPS = ("tanh", "relu", "sigmoid", "identity")
#: DARTS' RNN primitives (``none`` first); the sparse space drops ``none`` (A = 0 is the zero op).
RNN_PRIMITIVES = ("none", *RNN_OPS)

Pair = tuple[str, int]


def edge_index(i: int, j: int) -> int:
    """Row of edge ``s_j -> s_i`` (``1 <= i``, ``0 <= j < i``) in ``A``."""
    if not 0 <= j < i:
        raise ValueError(f"edge ({i}, {j}): need 0 <= j < i")
    return i * (i - 1) // 2 + j


def n_edges(steps: int = STEPS) -> int:
    return steps * (steps + 1) // 2


def node_groups(n_ops: int, steps: int = STEPS) -> np.ndarray:
    """SGL group ids of ``A (n_edges, n_ops)``: node ``i`` -> group ``i - 1`` (size ``n_ops i``)."""
    ids = np.zeros((n_edges(steps), n_ops), np.int32)
    for i in range(1, steps + 1):
        for j in range(i):
            ids[edge_index(i, j)] = i - 1
    return ids


def _pair(value: Any, what: str) -> Pair:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise GenotypeError(f"{what} must be an (op, predecessor) pair, got {value!r}")
    op, j = value
    if not isinstance(op, str):
        raise GenotypeError(f"{what}: op must be a string, got {op!r}")
    if isinstance(j, bool) or not isinstance(j, (int, np.integer)):
        raise GenotypeError(f"{what}: predecessor must be an integer, got {j!r}")
    return op, int(j)


@dataclasses.dataclass(frozen=True)
class RNNGenotype:
    """A recurrent cell: ``nodes[i - 1]`` = node ``i``'s ``(op, j)`` pairs; ``concat`` the
    states averaged into the output.

    Validated on construction: ops in ``RNN_OPS``; ``0 <= j < i``; a predecessor
    ``j >= 1`` must be a kept (non-empty) node; ``concat`` lists distinct kept
    states (``0`` allowed only when no node is kept).
    """

    nodes: tuple[tuple[Pair, ...], ...]
    concat: tuple[int, ...]

    def __post_init__(self):
        nodes = tuple(
            tuple(
                _pair(p, f"node {i + 1} pair {k}") for k, p in enumerate(_seq(n, f"node {i + 1}"))
            )
            for i, n in enumerate(_seq(self.nodes, "nodes"))
        )
        concat = tuple(int(c) for c in _seq(self.concat, "concat"))
        object.__setattr__(self, "nodes", nodes)
        object.__setattr__(self, "concat", concat)
        if not nodes:
            raise GenotypeError("a recurrent genotype needs at least one node")
        for i, pairs in enumerate(nodes, start=1):
            for op, j in pairs:
                if op not in RNN_OPS:
                    raise GenotypeError(f"node {i}: unknown op {op!r} (known: {RNN_OPS})")
                if not 0 <= j < i:
                    raise GenotypeError(f"node {i}: predecessor {j} is not in 0..{i - 1}")
                if j >= 1 and not nodes[j - 1]:
                    raise GenotypeError(f"node {i}: predecessor {j} is a dropped node")
        if not concat or len(set(concat)) != len(concat):
            raise GenotypeError(f"concat must list distinct states, got {list(concat)}")
        kept = {i for i, p in enumerate(nodes, start=1) if p}
        for c in concat:
            if c not in kept and not (c == 0 and not kept):
                raise GenotypeError(f"concat state {c} is not a kept node (kept: {sorted(kept)})")

    # ---- views ------------------------------------------------------------------------

    @property
    def steps(self) -> int:
        return len(self.nodes)

    @property
    def is_single_path(self) -> bool:
        return all(len(p) == 1 for p in self.nodes)

    @property
    def recurrent(self) -> list[Pair]:
        """DARTS' ``recurrent`` list (single-path genotypes only)."""
        if not self.is_single_path:
            raise GenotypeError("a mixed-path genotype has no DARTS 'recurrent' list")
        return [p[0] for p in self.nodes]

    @classmethod
    def from_darts(cls, recurrent: Sequence[Pair], concat: Sequence[int] | None = None):
        """From DARTS' ``Genotype(recurrent=[(op, j), ...], concat=range(1, 9))``."""
        recurrent = list(_seq(recurrent, "recurrent"))
        concat = range(1, len(recurrent) + 1) if concat is None else concat
        return cls(nodes=tuple((p,) for p in recurrent), concat=tuple(concat))

    def __str__(self) -> str:
        if self.is_single_path:
            return f"Genotype(recurrent={self.recurrent}, concat={list(self.concat)})"
        return f"RNNGenotype(nodes={[list(p) for p in self.nodes]}, concat={list(self.concat)})"

    # ---- JSON -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": "rnn", "concat": list(self.concat)}
        if self.is_single_path:
            out["recurrent"] = [list(p) for p in self.recurrent]
        else:
            out["nodes"] = [[list(p) for p in pairs] for pairs in self.nodes]
        return out

    @classmethod
    def from_dict(cls, d: Any) -> RNNGenotype:
        if not isinstance(d, dict):
            raise GenotypeError(
                f"a recurrent genotype must be a JSON object, got {type(d).__name__}"
            )
        if ("nodes" in d) == ("recurrent" in d):
            raise GenotypeError("a recurrent genotype needs exactly one of 'nodes', 'recurrent'")
        if "recurrent" in d:
            return cls.from_darts(
                [tuple(p) for p in _seq(d["recurrent"], "recurrent")], d.get("concat")
            )
        if "concat" not in d:
            raise GenotypeError("a mixed-path recurrent genotype needs 'concat'")
        return cls(nodes=d["nodes"], concat=d["concat"])

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> RNNGenotype:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise GenotypeError(f"malformed genotype JSON: {e}") from None
        return cls.from_dict(d)

    def save_json(self, path: str | os.PathLike) -> None:
        """Write :meth:`to_json` and a newline to ``path`` (atomically)."""
        write_text(path, self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> RNNGenotype:
        with open(path, encoding="utf-8") as f:
            return cls.from_json(f.read())


def _seq(value: Any, what: str) -> Sequence[Any]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, range)):
        raise GenotypeError(f"{what} must be a list, got {type(value).__name__}")
    return value


#: DARTS' searched cells (rnn/genotypes.py): first order (V1) and second order (V2).
DARTS_V1 = RNNGenotype.from_darts(
    [("relu", 0), ("relu", 1), ("tanh", 2), ("relu", 3), ("relu", 4), ("identity", 1),
     ("relu", 5), ("relu", 1)]
)  # fmt: skip
DARTS_V2 = RNNGenotype.from_darts(
    [("sigmoid", 0), ("relu", 1), ("relu", 1), ("identity", 1), ("tanh", 2), ("sigmoid", 5),
     ("tanh", 3), ("relu", 5)]
)  # fmt: skip
_NAMED = {"darts_v1": DARTS_V1, "darts_v2": DARTS_V2}


def get_rnn_genotype(name_or_path: str | os.PathLike) -> RNNGenotype:
    """A named cell (``darts_v1``, ``darts_v2``) or a genotype JSON file."""
    key = os.fspath(name_or_path)
    if key in _NAMED:
        return _NAMED[key]
    if os.path.isfile(key):
        return RNNGenotype.load(key)
    raise GenotypeError(
        f"unknown recurrent genotype {key!r}: not a name ({', '.join(_NAMED)}) nor a file"
    )


def _steps_of(w: np.ndarray, primitives: tuple[str, ...], what: str) -> int:
    """The cell's node count from architecture weights ``w (n_edges(steps), n_ops)``;
    a one-line ``GenotypeError`` naming ``what`` if ``w`` has another shape."""
    if w.ndim != 2 or w.shape[1] != len(primitives):
        raise GenotypeError(f"{what}: shape {w.shape}, expected (n_edges, {len(primitives)})")
    steps = int(round((np.sqrt(8 * w.shape[0] + 1) - 1) / 2))
    if n_edges(steps) != w.shape[0]:
        raise GenotypeError(f"{what}: {w.shape[0]} rows, not a triangular number of edges")
    return steps


def derive_rnn(
    theta: Any,
    primitives: Sequence[str] = RNN_OPS,
    *,
    threshold: float = 0.0,
    exclude: Collection[str] = ("none",),
) -> RNNGenotype:
    """The mixed-path cell of a sparse ``theta (36, n_ops)`` (SparseNAS, text after Eq. 3).

    As the CNN derivation (:func:`jaxnas.search.sparsenas.derive_sparse_cell`):
    keep every ``(op, j)`` of node ``i`` with ``|theta| > threshold`` whose source
    ``s_j`` survives (``s_0`` always does); a node without a kept input is
    dropped, and so are the edges out of it, transitively.  ``concat`` lists the
    surviving nodes (the output is their mean).  Pairs are ordered by
    ``|theta|``, largest first.  If every node is dropped the cell output is
    ``s_0`` (``concat = (0,)``) and a warning is logged.

    Dropping a dead node's outgoing edges is exact for the search supernet with
    its BatchNorm: a dead node is 0, so its outgoing edge computes
    ``A c f(W 0) = A sigmoid(0) f(0)``, a constant (nonzero only for ``sigmoid``)
    that the next node's batch normalisation subtracts.
    """
    w = np.abs(np.asarray(theta, np.float64))
    primitives = tuple(primitives)
    steps = _steps_of(w, primitives, "theta")
    if not np.all(np.isfinite(w)):
        raise GenotypeError("architecture weights contain NaN or inf")
    usable = np.array([p not in set(exclude) for p in primitives])
    alive = [True]
    nodes = []
    for i in range(1, steps + 1):
        cand = []
        for j in range(i):
            if not alive[j]:
                continue
            e = edge_index(i, j)
            for o in np.nonzero(usable & (w[e] > threshold))[0]:
                cand.append((-w[e, o], e, o, (primitives[o], j)))
        cand.sort(key=lambda c: c[:3])
        nodes.append(tuple(c[3] for c in cand))
        alive.append(bool(cand))
    concat = tuple(i for i in range(1, steps + 1) if alive[i])
    if not concat:
        logger.warning("every node of the recurrent cell is pruned: the output is s_0")
        concat = (0,)
    return RNNGenotype(nodes=tuple(nodes), concat=concat)


def derive_darts_rnn(weights: Any, primitives: Sequence[str] = RNN_PRIMITIVES) -> RNNGenotype:
    """DARTS' recurrent cell of ``weights (n_edges, n_ops)`` (``softmax(alpha)``; DARTS
    ``rnn/model_search.py``, ``genotype``): node ``i`` keeps one pair, from the
    predecessor ``j`` whose strongest op other than ``none`` is the strongest, that op;
    ``concat`` every node.  Ties go to the first ``j``, then the first op."""
    w = np.asarray(weights, np.float64)
    primitives = tuple(primitives)
    steps = _steps_of(w, primitives, "weights")
    ops = [o for o, p in enumerate(primitives) if p != "none"]
    if not ops:
        raise GenotypeError("the recurrent cell needs an op besides 'none'")
    pairs = []
    for i in range(1, steps + 1):
        best = w[edge_index(i, 0) : edge_index(i, 0) + i][:, ops]  # (i, ops without none)
        j = int(np.argmax(best.max(axis=1)))  # argmax: the first of ties, as DARTS' sort
        pairs.append((primitives[ops[int(np.argmax(best[j]))]], j))
    return RNNGenotype.from_darts(pairs)
