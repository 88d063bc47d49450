"""Discrete architectures (genotypes): derive, validate, JSON, draw.

Representation
--------------
A :class:`CellGenotype` is one discrete cell.  ``nodes[k]`` lists the inputs
of intermediate node ``k`` as ``(op, src)`` pairs, where ``src`` is a node id
in the DARTS convention: ``0 .. n_inputs-1`` are the cell inputs
(``c_{k-2}``, ``c_{k-1}`` for DARTS) and intermediate node ``j`` has id
``n_inputs + j``; so a valid source of node ``k`` satisfies
``0 <= src < n_inputs + k``.  ``concat`` lists the node ids whose outputs are
concatenated into the cell output.  A node may have any number of inputs
(DARTS keeps 2; BayesNAS and SparseNAS keep a variable number).

For compatibility with the DARTS reference code a ``CellGenotype`` also
behaves like the DARTS flat list: iterating it yields the ``(op, src)`` pairs
node by node (node ``k``'s pairs at positions ``2k, 2k+1`` when every node has
two inputs), so ``op_names, indices = zip(*genotype.normal)`` works.

A :class:`Genotype` holds a normal and a reduction cell, like DARTS'
``Genotype(normal, normal_concat, reduce, reduce_concat)`` namedtuple
(``genotype.normal_concat`` and ``genotype.reduce_concat`` are provided as
properties).  Methods that derive one cell per layer (ASM-NAS, BayesNAS) set
``cells``: then layer ``i`` uses ``cells[i]`` (see :meth:`Genotype.cell_for_layer`).
``reductions`` optionally fixes which layers (0-based) are reduction cells; ``None``
means DARTS' ``n_layers // 3, 2 * n_layers // 3`` (:func:`reduction_layers`).  ASM-NAS
searches with reductions at the 5th and 10th of 15 cells and records ``(4, 9)``, so
the retraining network puts them where they were searched.

JSON
----
:func:`to_json` writes the plain DARTS dict when the genotype has no per-layer
cells and every node has exactly two inputs::

    {"normal": [["sep_conv_3x3", 0], ...], "normal_concat": [2, 3, 4, 5],
     "reduce": [...], "reduce_concat": [2, 3, 4, 5]}

and otherwise the general form::

    {"format": "jaxnas-genotype-v1",
     "normal": {"nodes": [[["sep_conv_3x3", 0], ...], ...], "concat": [...], "n_inputs": 2},
     "reduce": {...}, "cells": [{...}, ...], "reductions": [4, 9]}

(``cells`` and ``reductions`` only when set; a genotype with ``reductions`` always
uses the general form, since the DARTS dict has no place for them).

:func:`from_json` reads both.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import operator
import os
from collections.abc import Collection, Iterator, Sequence
from typing import Any

import numpy as np

from jaxnas.files import write_text
from jaxnas.ops import DARTS_PRIMITIVES, OPS
from jaxnas.optional import require
from jaxnas.spaces import GenotypeError
from jaxnas.spaces.darts import DARTS_CELL, CellTopology

__all__ = [
    "CellGenotype",
    "DARTS",
    "DARTS_V1",
    "DARTS_V2",
    "Genotype",
    "GenotypeError",
    "JSON_FORMAT",
    "KNOWN_OPS",
    "NAMED_GENOTYPES",
    "derive",
    "derive_cell",
    "from_json",
    "get_genotype",
    "load",
    "plot_cell",
    "plot_genotype",
    "reduction_layers",
    "register_genotype",
    "save",
    "to_json",
    "validate",
]

#: Tag written in the general (non-DARTS) JSON form.
JSON_FORMAT = "jaxnas-genotype-v1"

#: Op names accepted by :func:`validate` by default: every op of the registry
#: (:data:`jaxnas.ops.OPS`, which other search spaces extend, e.g. BayesNAS' BN-ReLU-conv
#: ops) plus the extra ops of the DARTS evaluation code (``operations.OPS``).
KNOWN_OPS: frozenset[str] = frozenset(OPS) | frozenset(
    {
        "none",
        "max_pool_3x3",
        "avg_pool_3x3",
        "max_pool_5x5",
        "skip_connect",
        "sep_conv_3x3",
        "sep_conv_5x5",
        "sep_conv_7x7",
        "dil_conv_3x3",
        "dil_conv_5x5",
        "conv_7x1_1x7",
        "conv_1x1",
        "conv_3x3",
    }
)

Pair = tuple[str, int]


def _as_int(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise GenotypeError(f"{what} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise GenotypeError(f"{what} must be an integer, got {value!r}") from None


def _as_pair(value: Any, what: str) -> Pair:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise GenotypeError(f"{what} must be an (op, src) pair, got {value!r}")
    op, src = value
    if not isinstance(op, str):
        raise GenotypeError(f"{what}: op name must be a string, got {op!r}")
    return op, _as_int(src, f"{what}: src")


def _as_seq(value: Any, what: str) -> Sequence[Any]:
    if isinstance(value, (str, bytes, dict)) or not isinstance(value, Sequence):
        raise GenotypeError(f"{what} must be a list, got {type(value).__name__}")
    return value


# --------------------------------------------------------------------------------------
# Data classes
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CellGenotype:
    """One discrete cell.

    Attributes:
      nodes: ``nodes[k]`` is a tuple of ``(op, src)`` pairs, the inputs of intermediate
        node ``k`` (node id ``n_inputs + k``), strongest first when derived.  Shape:
        ``n_nodes`` tuples of any length (DARTS: 2 each).
      concat: node ids concatenated into the cell output (DARTS: ``(2, 3, 4, 5)``).
      n_inputs: number of cell inputs (2 for DARTS: ``c_{k-2}``, ``c_{k-1}``).

    Iterating yields the flat DARTS list of ``(op, src)`` pairs, node by node;
    ``len`` and indexing refer to that flat list.
    """

    nodes: tuple[tuple[Pair, ...], ...]
    concat: tuple[int, ...]
    n_inputs: int = 2

    def __post_init__(self):
        nodes = tuple(
            tuple(_as_pair(p, f"node {k} input {i}") for i, p in enumerate(_as_seq(node, "node")))
            for k, node in enumerate(_as_seq(self.nodes, "nodes"))
        )
        concat = tuple(_as_int(c, "concat index") for c in _as_seq(self.concat, "concat"))
        object.__setattr__(self, "nodes", nodes)
        object.__setattr__(self, "concat", concat)
        object.__setattr__(self, "n_inputs", _as_int(self.n_inputs, "n_inputs"))

    @classmethod
    def from_pairs(
        cls,
        pairs: Sequence[Sequence[Any]],
        concat: Sequence[int] | None = None,
        *,
        per_node: int = 2,
        n_nodes: int | None = None,
        n_inputs: int = 2,
    ) -> CellGenotype:
        """Build a cell from the DARTS flat list of ``(op, src)`` pairs.

        Args:
          pairs: flat list, ``per_node`` consecutive pairs per intermediate node;
            length ``per_node * n_nodes``.
          concat: output node ids; default all intermediate nodes.
          per_node: inputs per node (2 in DARTS).
          n_nodes: expected number of intermediate nodes; default ``len(pairs) // per_node``.
          n_inputs: number of cell inputs.

        Raises:
          GenotypeError: if the length is not ``per_node * n_nodes``.
        """
        pairs = [_as_pair(p, f"entry {i}") for i, p in enumerate(_as_seq(pairs, "pairs"))]
        if per_node < 1:
            raise GenotypeError(f"per_node must be >= 1, got {per_node}")
        expected = per_node * n_nodes if n_nodes is not None else None
        if len(pairs) % per_node or (expected is not None and len(pairs) != expected):
            want = f"{expected}" if expected is not None else f"a multiple of {per_node}"
            raise GenotypeError(
                f"wrong number of entries: got {len(pairs)}, expected {want} "
                f"({per_node} (op, src) pairs per intermediate node)"
            )
        n = len(pairs) // per_node
        nodes = tuple(tuple(pairs[per_node * k : per_node * (k + 1)]) for k in range(n))
        if concat is None:
            concat = range(n_inputs, n_inputs + n)
        return cls(nodes=nodes, concat=tuple(concat), n_inputs=n_inputs)

    @property
    def n_nodes(self) -> int:
        """Number of intermediate nodes."""
        return len(self.nodes)

    @property
    def pairs(self) -> tuple[Pair, ...]:
        """The flat DARTS list: all ``(op, src)`` pairs, node by node."""
        return tuple(p for node in self.nodes for p in node)

    @property
    def edges(self) -> tuple[tuple[str, int, int], ...]:
        """All edges as ``(op, src, dst)`` with node ids (``dst = n_inputs + k``)."""
        return tuple(
            (op, src, self.n_inputs + k) for k, node in enumerate(self.nodes) for op, src in node
        )

    def inputs_per_node(self) -> int | None:
        """The common number of inputs of every node, or None if nodes differ."""
        counts = {len(node) for node in self.nodes}
        return counts.pop() if len(counts) == 1 else None

    def is_darts_form(self) -> bool:
        """Whether the cell is expressible in the DARTS flat form (2 inputs, 2 per node)."""
        return self.n_inputs == 2 and all(len(node) == 2 for node in self.nodes)

    def __iter__(self) -> Iterator[Pair]:
        return iter(self.pairs)

    def __len__(self) -> int:
        return sum(len(node) for node in self.nodes)

    def __getitem__(self, i: int) -> Pair:
        return self.pairs[i]


def reduction_layers(n_layers: int) -> tuple[int, ...]:
    """Layer indices of the reduction cells in a DARTS network of ``n_layers`` cells.

    DARTS puts them at ``n_layers // 3`` and ``2 * n_layers // 3`` (e.g. 2 and 5 for 8
    layers, 6 and 13 for 20).  Returns a sorted tuple without duplicates.
    """
    return tuple(sorted({n_layers // 3, 2 * n_layers // 3}))


def _as_reductions(
    value: Any, n_layers: int | None, what: str = "reductions", where: str = ""
) -> tuple[int, ...]:
    """``value`` as a sorted tuple of distinct 0-based layer indices in ``[0, n_layers)``."""
    idx = tuple(_as_int(r, f"{what} entry") for r in _as_seq(value, what))
    if len(set(idx)) != len(idx):
        raise GenotypeError(f"{what} {list(idx)}: duplicate layer index")
    for r in idx:
        if r < 0 or (n_layers is not None and r >= n_layers):
            where = where or (f"{n_layers} layers" if n_layers is not None else "a network")
            raise GenotypeError(
                f"{what} {list(idx)}: layer index {r} is out of range for {where} (0-based indices)"
            )
    return tuple(sorted(idx))


@dataclasses.dataclass(frozen=True)
class Genotype:
    """A discrete architecture: a normal and a reduction cell, optionally one cell per layer.

    Attributes:
      normal: the normal cell (stride 1).
      reduce: the reduction cell (edges from the cell inputs have stride 2).
      cells: optional per-layer cells (ASM-NAS, BayesNAS); when set, layer ``i`` uses
        ``cells[i]`` and the network must have ``len(cells)`` layers.  ``normal`` and
        ``reduce`` then hold representatives (see :meth:`from_cells`).
      reductions: optional 0-based layer indices of the reduction cells, sorted and
        distinct (``()``: no reduction cell); ``None``: DARTS' positions
        (:func:`reduction_layers`) for whatever depth the network has.  With ``cells``
        every index must be ``< len(cells)``.
    """

    normal: CellGenotype
    reduce: CellGenotype
    cells: tuple[CellGenotype, ...] | None = None
    reductions: tuple[int, ...] | None = None

    def __post_init__(self):
        for name in ("normal", "reduce"):
            if not isinstance(getattr(self, name), CellGenotype):
                raise GenotypeError(
                    f"Genotype.{name} must be a CellGenotype; use Genotype.from_darts(...) "
                    "for DARTS (op, src) lists"
                )
        if self.cells is not None:
            cells = tuple(_as_seq(self.cells, "cells"))
            for i, c in enumerate(cells):
                if not isinstance(c, CellGenotype):
                    raise GenotypeError(f"cells[{i}] must be a CellGenotype")
            object.__setattr__(self, "cells", cells)
        if self.reductions is not None:
            n = len(self.cells) if self.cells is not None else None
            where = f"a genotype of {n} per-layer cells" if n is not None else ""
            red = _as_reductions(self.reductions, n, where=where)
            object.__setattr__(self, "reductions", red)

    @classmethod
    def from_darts(
        cls,
        normal: Sequence[Sequence[Any]],
        normal_concat: Sequence[int],
        reduce: Sequence[Sequence[Any]],
        reduce_concat: Sequence[int],
        *,
        n_nodes: int | None = None,
    ) -> Genotype:
        """Build from the DARTS namedtuple fields (flat lists, 2 pairs per node).

        Args:
          normal, reduce: flat lists of ``(op, src)`` pairs, length ``2 * n_nodes``.
          normal_concat, reduce_concat: output node ids, e.g. ``[2, 3, 4, 5]``.
          n_nodes: expected number of intermediate nodes (default: inferred).

        Raises:
          GenotypeError: on a length that is not ``2 * n_nodes``.
        """
        try:
            n = CellGenotype.from_pairs(normal, normal_concat, n_nodes=n_nodes)
        except GenotypeError as e:
            raise GenotypeError(f"normal cell: {e}") from None
        try:
            r = CellGenotype.from_pairs(reduce, reduce_concat, n_nodes=n_nodes)
        except GenotypeError as e:
            raise GenotypeError(f"reduction cell: {e}") from None
        return cls(normal=n, reduce=r)

    @classmethod
    def from_cells(
        cls, cells: Sequence[CellGenotype], reductions: Sequence[int] | None = None
    ) -> Genotype:
        """Build a per-layer genotype; ``len(cells)`` is the number of layers.

        ``normal`` is set to the first cell at a normal position and ``reduce`` to the
        first cell at a reduction position: ``reductions`` (recorded in the genotype)
        or, if None, :func:`reduction_layers` (not recorded: the network decides).
        Without any reduction (``reductions=()``) both are the first cell.
        """
        cells = tuple(cells)
        if not cells:
            raise GenotypeError("from_cells needs at least one cell")
        if reductions is None:
            red = reduction_layers(len(cells))
        else:
            where = f"a genotype of {len(cells)} per-layer cells"
            red = reductions = _as_reductions(reductions, len(cells), where=where)
        normal = next((c for i, c in enumerate(cells) if i not in red), cells[0])
        reduce = cells[red[0]] if red else normal
        return cls(normal=normal, reduce=reduce, cells=cells, reductions=reductions)

    @property
    def normal_concat(self) -> tuple[int, ...]:
        """DARTS field: output node ids of the normal cell."""
        return self.normal.concat

    @property
    def reduce_concat(self) -> tuple[int, ...]:
        """DARTS field: output node ids of the reduction cell."""
        return self.reduce.concat

    def is_darts_form(self) -> bool:
        """Whether this is expressible as a DARTS namedtuple (no per-layer cells, no
        recorded reduction positions, 2 inputs per node)."""
        return (
            self.cells is None
            and self.reductions is None
            and self.normal.is_darts_form()
            and self.reduce.is_darts_form()
        )

    def to_darts_dict(self) -> dict[str, list]:
        """The DARTS namedtuple as a JSON-ready dict of lists (pairs as 2-lists)."""
        return {
            "normal": [list(p) for p in self.normal.pairs],
            "normal_concat": list(self.normal.concat),
            "reduce": [list(p) for p in self.reduce.pairs],
            "reduce_concat": list(self.reduce.concat),
        }

    def reduction_cells(
        self, n_layers: int, override: Sequence[int] | None = None
    ) -> tuple[int, ...]:
        """0-based reduction layers of an ``n_layers``-cell network built from this genotype.

        The genotype's ``reductions`` when set, else ``override`` (a network or config
        setting), else DARTS' :func:`reduction_layers`.  When both the genotype and
        ``override`` give positions they must agree: a setting never silently replaces
        the positions the cells were searched at.

        Raises:
          GenotypeError: positions out of range for ``n_layers`` or duplicated, or an
            ``override`` that differs from the genotype's ``reductions``.
        """
        n_layers = _as_int(n_layers, "n_layers")
        if self.cells is not None and len(self.cells) != n_layers:
            raise GenotypeError(
                f"genotype has {len(self.cells)} per-layer cells but the network has "
                f"{n_layers} layers"
            )
        if override is not None:
            override = _as_reductions(override, n_layers, what="reduction layers setting")
        if self.reductions is not None:
            if override is not None and override != self.reductions:
                raise GenotypeError(
                    f"the reduction layers setting {list(override)} conflicts with the "
                    f"genotype's reductions {list(self.reductions)}; leave the setting empty "
                    "to use the genotype's"
                )
            return _as_reductions(self.reductions, n_layers)
        return override if override is not None else reduction_layers(n_layers)

    def cell_for_layer(
        self, i: int, n_layers: int, reductions: Sequence[int] | None = None
    ) -> CellGenotype:
        """The cell used by layer ``i`` of an ``n_layers``-cell network.

        With per-layer ``cells`` this is ``cells[i]`` (``n_layers`` must equal
        ``len(cells)``); otherwise ``reduce`` at the reduction layers
        (:meth:`reduction_cells` with ``override=reductions``) and ``normal`` elsewhere.
        """
        if not 0 <= i < n_layers:
            raise IndexError(f"layer {i} out of range for {n_layers} layers")
        red = self.reduction_cells(n_layers, reductions)
        if self.cells is not None:
            return self.cells[i]
        return self.reduce if i in red else self.normal

    def __str__(self) -> str:
        """DARTS-style ``Genotype(normal=[...], normal_concat=[...], ...)`` when possible."""
        if not self.is_darts_form():
            return repr(self)
        return (
            f"Genotype(normal={list(self.normal.pairs)}, normal_concat={list(self.normal_concat)}, "
            f"reduce={list(self.reduce.pairs)}, reduce_concat={list(self.reduce_concat)})"
        )


# --------------------------------------------------------------------------------------
# Published genotypes
# --------------------------------------------------------------------------------------

#: DARTS (first order), from the DARTS reference code's genotypes.py.
DARTS_V1 = Genotype.from_darts(
    normal=[
        ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 0),
        ("skip_connect", 0),
        ("sep_conv_3x3", 1),
        ("skip_connect", 0),
        ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 0),
        ("skip_connect", 2),
    ],
    normal_concat=[2, 3, 4, 5],
    reduce=[
        ("max_pool_3x3", 0),
        ("max_pool_3x3", 1),
        ("skip_connect", 2),
        ("max_pool_3x3", 0),
        ("max_pool_3x3", 0),
        ("skip_connect", 2),
        ("skip_connect", 2),
        ("avg_pool_3x3", 0),
    ],
    reduce_concat=[2, 3, 4, 5],
)

#: DARTS (second order), from the DARTS reference code's genotypes.py.
DARTS_V2 = Genotype.from_darts(
    normal=[
        ("sep_conv_3x3", 0),
        ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 0),
        ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 1),
        ("skip_connect", 0),
        ("skip_connect", 0),
        ("dil_conv_3x3", 2),
    ],
    normal_concat=[2, 3, 4, 5],
    reduce=[
        ("max_pool_3x3", 0),
        ("max_pool_3x3", 1),
        ("skip_connect", 2),
        ("max_pool_3x3", 1),
        ("max_pool_3x3", 0),
        ("skip_connect", 2),
        ("skip_connect", 2),
        ("max_pool_3x3", 1),
    ],
    reduce_concat=[2, 3, 4, 5],
)

#: ``DARTS = DARTS_V2`` as in the reference code.
DARTS = DARTS_V2

#: The PR-DARTS cell released with the paper (the authors' ``PRDARTS_eval/genotypes.py``):
#: one skip, and the conv chain c_{k-1} -> 2 -> 3 -> 4 -> 5 that the path regularizer rewards.
PRDARTS = Genotype.from_darts(
    normal=[
        ("skip_connect", 0),
        ("sep_conv_3x3", 1),
        ("dil_conv_3x3", 2),
        ("sep_conv_3x3", 0),
        ("dil_conv_3x3", 3),
        ("sep_conv_3x3", 1),
        ("dil_conv_3x3", 4),
        ("dil_conv_3x3", 1),
    ],
    normal_concat=[2, 3, 4, 5],
    reduce=[
        ("avg_pool_3x3", 0),
        ("dil_conv_5x5", 1),
        ("sep_conv_3x3", 0),
        ("dil_conv_5x5", 2),
        ("sep_conv_5x5", 1),
        ("dil_conv_3x3", 3),
        ("dil_conv_5x5", 4),
        ("dil_conv_5x5", 1),
    ],
    reduce_concat=[2, 3, 4, 5],
)

#: Name -> genotype registry used by :func:`get_genotype`.
NAMED_GENOTYPES: dict[str, Genotype] = {
    "DARTS_V1": DARTS_V1,
    "DARTS_V2": DARTS_V2,
    "DARTS": DARTS_V2,
    "PRDARTS": PRDARTS,
}


def register_genotype(name: str, genotype: Genotype, *, overwrite: bool = False) -> None:
    """Add ``genotype`` to :data:`NAMED_GENOTYPES` under ``name``."""
    if not isinstance(genotype, Genotype):
        raise TypeError(f"expected a Genotype, got {type(genotype).__name__}")
    if name in NAMED_GENOTYPES and not overwrite and NAMED_GENOTYPES[name] != genotype:
        raise GenotypeError(f"genotype name {name!r} is already registered")
    NAMED_GENOTYPES[name] = genotype


def get_genotype(name_or_path: str | os.PathLike[str]) -> Genotype:
    """A registered genotype by name (e.g. ``"DARTS_V2"``) or one loaded from a JSON file.

    Raises:
      GenotypeError: if it is neither a registered name nor a readable genotype file.
    """
    key = os.fspath(name_or_path)
    if key in NAMED_GENOTYPES:
        return NAMED_GENOTYPES[key]
    if os.path.isfile(key):
        return load(key)
    names = ", ".join(sorted(NAMED_GENOTYPES))
    raise GenotypeError(f"unknown genotype {key!r}: not a registered name ({names}) nor a file")


# --------------------------------------------------------------------------------------
# Derivation (DARTS rule)
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------


def _validate_cell(
    cell: CellGenotype,
    label: str,
    known_ops: Collection[str] | None,
    n_nodes: int | None,
    inputs_per_node: int | None,
) -> None:
    if cell.n_inputs < 1:
        raise GenotypeError(f"{label}: n_inputs must be >= 1, got {cell.n_inputs}")
    if n_nodes is not None and cell.n_nodes != n_nodes:
        raise GenotypeError(
            f"{label}: wrong number of nodes: got {cell.n_nodes} ({len(cell)} entries), "
            f"expected {n_nodes}"
        )
    for k, node in enumerate(cell.nodes):
        node_id = cell.n_inputs + k
        where = f"{label} node {k} (id {node_id})"
        if inputs_per_node is not None and len(node) != inputs_per_node:
            raise GenotypeError(
                f"{where}: wrong number of entries: got {len(node)}, expected {inputs_per_node}"
            )
        for op, src in node:
            if known_ops is not None and op not in known_ops:
                close = difflib.get_close_matches(op, sorted(known_ops), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise GenotypeError(f"{where}: unknown op {op!r}{hint}")
            if not 0 <= src < node_id:
                raise GenotypeError(
                    f"{where}: bad input node index {src} for op {op!r}; must be in [0, {node_id})"
                )
    n_total = cell.n_inputs + cell.n_nodes
    if not cell.concat:
        raise GenotypeError(f"{label}: concat is empty")
    for c in cell.concat:
        if not 0 <= c < n_total:
            raise GenotypeError(f"{label}: bad concat index {c}; must be in [0, {n_total})")
    if len(set(cell.concat)) != len(cell.concat):
        raise GenotypeError(f"{label}: duplicate concat index in {list(cell.concat)}")


def validate(
    genotype: Genotype,
    known_ops: Collection[str] | None = KNOWN_OPS,
    *,
    n_nodes: int | None = None,
    inputs_per_node: int | None = None,
) -> Genotype:
    """Check a genotype; return it unchanged if valid.

    Checks every cell (normal, reduce and any per-layer cells): op names are in
    ``known_ops``; each source satisfies ``0 <= src < node id``; concat indices are
    in ``[0, n_inputs + n_nodes)``, non-empty and distinct; and optionally the
    number of nodes and of inputs per node (``inputs_per_node=2`` for the DARTS form).
    With ``reductions`` set, also the cells' roles (see :func:`_validate_roles`; the
    positions themselves are checked when the genotype is made).

    Args:
      genotype: the genotype to check.
      known_ops: allowed op names (e.g. ``jaxnas.ops.OPS``); ``None`` skips this check.
      n_nodes: required number of intermediate nodes per cell.
      inputs_per_node: required number of inputs of every node.

    Raises:
      GenotypeError: with a one-line message naming the cell, node and problem.
    """
    if not isinstance(genotype, Genotype):
        raise GenotypeError(f"expected a Genotype, got {type(genotype).__name__}")
    cells = [("normal cell", genotype.normal), ("reduction cell", genotype.reduce)]
    cells += [(f"cell {i}", c) for i, c in enumerate(genotype.cells or ())]
    for label, cell in cells:
        _validate_cell(cell, label, known_ops, n_nodes, inputs_per_node)
    if genotype.reductions is not None:
        _validate_roles(genotype)
    return genotype


def _validate_roles(genotype: Genotype) -> None:
    """Cells against the declared reduction positions, as far as cells carry a role.

    A :class:`CellGenotype` has no reduce/normal flag, so the role shows only in two
    places: a cell at a reduction position may not concatenate a cell input (its inputs
    stay at full resolution while its nodes are halved), and the ``normal`` / ``reduce``
    representatives of a per-layer genotype must be cells at positions of that role
    (what :meth:`Genotype.from_cells` picks).
    """
    red = genotype.reductions or ()
    if genotype.cells is None:
        at_reduction = [("the reduction cell", genotype.reduce)] if red else []
    else:
        at_reduction = [(f"cell {i}", genotype.cells[i]) for i in red]
    for label, cell in at_reduction:
        inputs = [c for c in cell.concat if c < cell.n_inputs]
        if inputs:
            raise GenotypeError(
                f"{label} sits at a reduction position (reductions {list(red)}) but "
                f"concatenates its full-resolution input(s) {inputs} (concat {list(cell.concat)})"
            )
    if genotype.cells is None:
        return
    cells = genotype.cells
    normal_pos = [i for i in range(len(cells)) if i not in red]
    if red and genotype.reduce not in {cells[i] for i in red}:
        raise GenotypeError(
            f"the genotype's reduce cell is none of the cells at its reductions {list(red)}; "
            "build per-layer genotypes with Genotype.from_cells(cells, reductions)"
        )
    if normal_pos and genotype.normal not in {cells[i] for i in normal_pos}:
        raise GenotypeError(
            f"the genotype's normal cell is none of the cells at its normal positions "
            f"(reductions {list(red)}); build per-layer genotypes with "
            "Genotype.from_cells(cells, reductions)"
        )


# --------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------


def _cell_to_obj(cell: CellGenotype) -> dict[str, Any]:
    return {
        "nodes": [[list(p) for p in node] for node in cell.nodes],
        "concat": list(cell.concat),
        "n_inputs": cell.n_inputs,
    }


def to_json(genotype: Genotype) -> str:
    """Serialise to JSON text (plain DARTS dict when possible; see the module docstring)."""
    if genotype.is_darts_form():
        obj: dict[str, Any] = genotype.to_darts_dict()
    else:
        obj = {
            "format": JSON_FORMAT,
            "normal": _cell_to_obj(genotype.normal),
            "reduce": _cell_to_obj(genotype.reduce),
        }
        if genotype.cells is not None:
            obj["cells"] = [_cell_to_obj(c) for c in genotype.cells]
        if genotype.reductions is not None:
            obj["reductions"] = list(genotype.reductions)
    lines = []
    for key, value in obj.items():
        if key == "cells":
            items = ",\n".join(f"    {json.dumps(c)}" for c in value)
            lines.append(f"  {json.dumps(key)}: [\n{items}\n  ]")
        else:
            lines.append(f"  {json.dumps(key)}: {json.dumps(value)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def _require(obj: dict[str, Any], key: str, where: str) -> Any:
    if key not in obj:
        raise GenotypeError(f"{where}: missing key {key!r}")
    return obj[key]


def _cell_from_obj(obj: Any, where: str) -> CellGenotype:
    if not isinstance(obj, dict):
        raise GenotypeError(f"{where} must be an object, got {type(obj).__name__}")
    nodes = _as_seq(_require(obj, "nodes", where), f"{where}.nodes")
    parsed = tuple(
        tuple(
            _as_pair(p, f"{where}.nodes[{k}][{i}]")
            for i, p in enumerate(_as_seq(node, f"{where}.nodes[{k}]"))
        )
        for k, node in enumerate(nodes)
    )
    concat = _as_seq(_require(obj, "concat", where), f"{where}.concat")
    concat = tuple(_as_int(c, f"{where}.concat entry") for c in concat)
    n_inputs = _as_int(obj.get("n_inputs", 2), f"{where}.n_inputs")
    return CellGenotype(nodes=parsed, concat=concat, n_inputs=n_inputs)


def _from_obj(obj: Any) -> Genotype:
    if not isinstance(obj, dict):
        raise GenotypeError(f"genotype JSON must be an object, got {type(obj).__name__}")
    normal = _require(obj, "normal", "genotype JSON")
    if isinstance(normal, dict):  # general form
        fmt = obj.get("format", JSON_FORMAT)
        if fmt != JSON_FORMAT:
            raise GenotypeError(f"unsupported genotype format {fmt!r}, expected {JSON_FORMAT!r}")
        n = _cell_from_obj(normal, "normal")
        r = _cell_from_obj(_require(obj, "reduce", "genotype JSON"), "reduce")
        cells = obj.get("cells")
        if cells is not None:
            cells = tuple(
                _cell_from_obj(c, f"cells[{i}]") for i, c in enumerate(_as_seq(cells, "cells"))
            )
        return Genotype(normal=n, reduce=r, cells=cells, reductions=obj.get("reductions"))
    # plain DARTS form (a "reductions" key is read here too, for hand-written files)
    fields = {}
    for key in ("normal", "normal_concat", "reduce", "reduce_concat"):
        value = _as_seq(_require(obj, key, "genotype JSON"), key)
        if key.endswith("concat"):
            fields[key] = [_as_int(c, f"{key} entry") for c in value]
        else:
            fields[key] = [_as_pair(p, f"{key}[{i}]") for i, p in enumerate(value)]
    g = Genotype.from_darts(**fields)
    if obj.get("reductions") is not None:
        g = dataclasses.replace(g, reductions=obj["reductions"])
    return g


def from_json(text: str, known_ops: Collection[str] | None = KNOWN_OPS) -> Genotype:
    """Parse JSON text in either the plain DARTS or the general form, and validate it.

    Args:
      text: JSON text.
      known_ops: passed to :func:`validate` (``None``: don't check op names).

    Raises:
      GenotypeError: one-line message on malformed JSON, missing keys, wrong types
        or an invalid genotype.
    """
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise GenotypeError(f"malformed genotype JSON: {e}") from None
    return validate(_from_obj(obj), known_ops)


def save(genotype: Genotype, path: str | os.PathLike[str]) -> None:
    """Write ``to_json(genotype)`` to ``path`` (atomically; parent folders are created)."""
    write_text(path, to_json(genotype))


def load(path: str | os.PathLike[str], known_ops: Collection[str] | None = KNOWN_OPS) -> Genotype:
    """Read a genotype JSON file written by :func:`save` or in the plain DARTS form.

    Raises:
      GenotypeError: one-line message starting with the path if the file cannot be
        read or is not a valid genotype.
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise GenotypeError(f"{path}: cannot read genotype file: {reason}") from None
    try:
        return from_json(text, known_ops)
    except GenotypeError as e:
        raise GenotypeError(f"{path}: {e}") from None


# --------------------------------------------------------------------------------------
# Drawing (matplotlib only)
# --------------------------------------------------------------------------------------

_OP_COLORS = {
    "none": "#9e9e9e",
    "skip_connect": "#333333",
    "max_pool_3x3": "#2e7d32",
    "max_pool_5x5": "#2e7d32",
    "avg_pool_3x3": "#558b2f",
    "sep_conv_3x3": "#1565c0",
    "sep_conv_5x5": "#283593",
    "sep_conv_7x7": "#4527a0",
    "dil_conv_3x3": "#c62828",
    "dil_conv_5x5": "#ad1457",
    "conv_7x1_1x7": "#ef6c00",
    "conv_1x1": "#6d4c41",
    "conv_3x3": "#5d4037",
}


def _input_name(i: int, n_inputs: int) -> str:
    lag = n_inputs - i
    return f"$c_{{k-{lag}}}$"


def _bezier(p0: np.ndarray, p2: np.ndarray, rad: float, t: np.ndarray) -> np.ndarray:
    """Points of matplotlib's ``arc3,rad=rad`` curve (equal aspect) at parameters ``t``."""
    d = p2 - p0
    c = (p0 + p2) / 2 + rad * np.array([d[1], -d[0]])
    t = t[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * c + t**2 * p2


def route_edges(
    edges: Sequence[tuple[str, int, int]],
    pos: dict[int, tuple[float, float]],
    r: float,
    fixed: Sequence[tuple[int, int]],
) -> list[tuple[float, float, float]]:
    """Greedily choose a curvature and label position for each edge.

    Each edge (in order) gets the ``arc3`` curvature and label parameter that
    minimise overlaps with nodes, previously routed curves and previous labels.

    Returns:
      ``(rad, label_x, label_y)`` per edge.
    """
    ts = np.linspace(0.0, 1.0, 41)
    inner = (ts > 0.2) & (ts < 0.8)
    rads = np.linspace(-0.6, 0.6, 25)
    label_ts = (0.5, 0.4, 0.6, 0.3, 0.7)
    centers = {n: np.asarray(p, dtype=float) for n, p in pos.items()}
    curves = [_bezier(centers[a], centers[b], 0.0, ts)[inner] for a, b in fixed]
    labels: list[tuple[np.ndarray, float, float]] = []  # center, half width, half height
    out = []
    for op, src, dst in edges:
        p0, p2 = centers[src], centers[dst]
        lines = op.split("\n")  # a mixed-path edge: one label line per op
        half_w, half_h = 0.05 * max(map(len, lines)) + 0.08, 0.17 * len(lines)
        best = None
        for rad in rads:
            pts = _bezier(p0, p2, rad, ts)
            cost = 0.4 * abs(rad)
            for n, c in centers.items():
                if n in (src, dst):
                    continue
                dmin = np.min(np.linalg.norm(pts - c, axis=1))
                cost += 40.0 * max(0.0, r + 0.3 - dmin)
            mid = pts[inner]
            for prev in curves:
                dist = np.min(np.linalg.norm(mid[:, None, :] - prev[None, :, :], axis=2), axis=1)
                cost += 2.0 * float(np.mean(dist < 0.15))
            for lt in label_ts:
                lc = _bezier(p0, p2, rad, np.array([lt]))[0]
                lcost = 0.3 * abs(lt - 0.5)
                for c2, hw, hh in labels:
                    ox = hw + half_w - abs(lc[0] - c2[0])
                    oy = hh + half_h - abs(lc[1] - c2[1])
                    if ox > 0 and oy > 0:
                        lcost += 10.0 + 10.0 * min(ox, oy)
                for c in centers.values():
                    ox = r + half_w - abs(lc[0] - c[0])
                    oy = r + half_h - abs(lc[1] - c[1])
                    if ox > 0 and oy > 0:
                        lcost += 10.0 + 10.0 * min(ox, oy)
                for prev in curves:
                    inside = (np.abs(prev[:, 0] - lc[0]) < half_w) & (
                        np.abs(prev[:, 1] - lc[1]) < half_h
                    )
                    lcost += 1.0 * float(np.mean(inside))
                if best is None or cost + lcost < best[0]:
                    best = (cost + lcost, float(rad), lc)
        assert best is not None
        _, rad, lc = best
        curves.append(_bezier(p0, p2, rad, ts)[inner])
        labels.append((lc, half_w, half_h))
        out.append((rad, float(lc[0]), float(lc[1])))
    return out


def cell_axes(
    pos: dict[Any, tuple[float, float]],
    routes: Sequence[tuple[float, float, float]],
    title: str | None,
    title_h: float,
    title_size: int,
) -> tuple[Any, Any]:
    """A pyplot-free ``(figure, axes)`` framing the nodes ``pos`` and the edge labels at
    ``(x, y)`` of ``routes`` (``(rad, x, y)`` each, :func:`route_edges`) with margins 1.0
    (x) and 0.8 (y), 0.75 inch a unit, equal aspect, no axis; ``title_h`` inches above
    for ``title`` in ``title_size`` points (no title when empty)."""
    Figure = require("matplotlib.figure", "drawing a cell").Figure
    xs = [p[0] for p in pos.values()] + [x for _, x, _ in routes]
    ys = [p[1] for p in pos.values()] + [y for _, _, y in routes]
    x0, x1 = min(xs) - 1.0, max(xs) + 1.0
    y0, y1 = min(ys) - 0.8, max(ys) + 0.8
    scale = 0.75
    height = (y1 - y0) * scale
    fig = Figure(figsize=((x1 - x0) * scale, height + title_h))
    ax = fig.add_axes((0, 0, 1, height / (height + title_h)))
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal")
    ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=title_size, y=1 - 0.1 * title_h / (height + title_h))
    return fig, ax


def draw_nodes(
    ax: Any, pos: dict[Any, tuple[float, float]], r: float, styles: dict[Any, tuple[str, str]]
) -> dict[Any, Any]:
    """A circle of radius ``r`` at each node of ``pos``, filled and labelled by
    ``styles[node] = (colour, label)``; returns ``{node: circle}`` (for :func:`draw_arrow`)."""
    Circle = require("matplotlib.patches", "drawing a cell").Circle
    circles = {}
    for node, (x, y) in pos.items():
        color, label = styles[node]
        circ = Circle((x, y), r, facecolor=color, edgecolor="black", lw=1.2, zorder=3)
        ax.add_patch(circ)
        circles[node] = circ
        ax.text(x, y, label, ha="center", va="center", fontsize=12, zorder=4)
    return circles


def draw_arrow(
    ax: Any,
    pos: dict[Any, tuple[float, float]],
    circles: dict[Any, Any],
    src: Any,
    dst: Any,
    rad: float,
    **kw: Any,
) -> None:
    """An arrow ``src -> dst`` between the node circles, bent by ``rad`` (matplotlib's
    ``arc3``), styled by ``kw`` (``color``, ``lw``, ``linestyle``)."""
    FancyArrowPatch = require("matplotlib.patches", "drawing a cell").FancyArrowPatch
    ax.add_patch(
        FancyArrowPatch(
            pos[src],
            pos[dst],
            connectionstyle=f"arc3,rad={rad}",
            arrowstyle="-|>",
            mutation_scale=14,
            patchA=circles[src],
            patchB=circles[dst],
            shrinkA=1,
            shrinkB=1,
            zorder=2,
            **kw,
        )
    )


def draw_label(ax: Any, x: float, y: float, text: str, color: str, pad: float) -> None:
    """An op name at ``(x, y)`` in its colour on a white rounded box (padding ``pad``)."""
    ax.text(
        x,
        y,
        text,
        ha="center",
        va="center",
        fontsize=9,
        color=color,
        zorder=5,
        bbox=dict(boxstyle=f"round,pad={pad}", fc="white", ec="none", alpha=0.85),
    )


def plot_cell(cell: CellGenotype, path: str | os.PathLike[str], title: str = "") -> str:
    """Draw a cell like the DARTS paper figures and save it to ``path``.

    Inputs ``c_{k-2}``, ``c_{k-1}`` are on the left, intermediate nodes ``0..n-1``
    left to right, and the output ``c_{k}`` on the right with dashed arrows from the
    ``concat`` nodes.  Edges are labelled with their op names and curved to avoid
    nodes and each other; the ops of one edge (mixed paths) share an arrow and
    are listed one per line.  The file format follows the extension of ``path``
    (``.png``, ``.svg``, ``.pdf``, ...).  Uses a pyplot-free
    ``matplotlib.figure.Figure``, so the global matplotlib backend is not touched.

    Returns:
      ``path`` as a string.
    """
    path = os.fspath(path)
    n_in, n = cell.n_inputs, cell.n_nodes
    dx, r = 2.4, 0.42
    pos: dict[int, tuple[float, float]] = {}
    for i in range(n_in):
        pos[i] = (0.0, (n_in - 1) / 2 * 2.8 - 2.8 * i)
    for k in range(n):
        pos[n_in + k] = (dx * (k + 1), 0.8 if k % 2 == 0 else -0.8)
    out_id = n_in + n
    pos[out_id] = (dx * (n + 1), 0.0)

    drawable = [(op, s, d) for op, s, d in cell.edges if s in pos and d in pos and s != d]
    merged: dict[tuple[int, int], list[str]] = {}  # several ops on one edge: one arrow
    for op, s, d in drawable:
        merged.setdefault((s, d), []).append(op)
    drawable = [("\n".join(ops), s, d) for (s, d), ops in merged.items()]
    concat = [c for c in dict.fromkeys(cell.concat) if c in pos and c != out_id]
    routes = route_edges(drawable, pos, r, [(c, out_id) for c in concat])
    fig, ax = cell_axes(pos, routes, title, 0.45 if title else 0.0, 13)

    styles = {i: ("#b4eeb4", _input_name(i, n_in)) for i in range(n_in)}
    styles.update({n_in + k: ("#add8e6", str(k)) for k in range(n)})
    styles[out_id] = ("#eee8aa", "$c_{k}$")
    circles = draw_nodes(ax, pos, r, styles)
    for c in concat:
        draw_arrow(ax, pos, circles, c, out_id, 0.0, color="#888888", lw=1.0, linestyle="--")
    for (op, src, dst), (rad, lx, ly) in zip(drawable, routes):
        color = _OP_COLORS.get(op, "black")
        draw_arrow(ax, pos, circles, src, dst, rad, color=color, lw=1.6)
        draw_label(ax, lx, ly, op, color, 0.15)

    fig.savefig(path, dpi=150, facecolor="white")
    return path


def plot_genotype(genotype: Genotype, path_prefix: str | os.PathLike[str]) -> list[str]:
    """Draw the normal and reduction cells (and any per-layer cells) to PNG and SVG.

    Writes ``{prefix}_normal.{png,svg}`` and ``{prefix}_reduce.{png,svg}``, plus
    ``{prefix}_cell{i:02d}.{png,svg}`` for each per-layer cell.

    Returns:
      The written paths.
    """
    prefix = os.fspath(path_prefix)
    parent = os.path.dirname(prefix)
    if parent:
        os.makedirs(parent, exist_ok=True)
    jobs = [
        ("normal", genotype.normal, "normal cell"),
        ("reduce", genotype.reduce, "reduction cell"),
    ]
    red = genotype.reductions or ()
    for i, c in enumerate(genotype.cells or ()):
        jobs.append((f"cell{i:02d}", c, f"cell {i}" + (", reduction" if i in red else "")))
    written = []
    for suffix, cell, title in jobs:
        for ext in ("png", "svg"):
            written.append(plot_cell(cell, f"{prefix}_{suffix}.{ext}", title=title))
    return written
