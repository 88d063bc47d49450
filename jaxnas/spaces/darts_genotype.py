"""The DARTS cell genotype: types, validation and JSON.

Derivation from architecture weights is :mod:`jaxnas.spaces.darts_derive`, the
published cells :mod:`jaxnas.spaces.darts_zoo`, the pictures :mod:`jaxnas.spaces.drawing`;
:mod:`jaxnas.genotype` re-exports all of them under the old import path.

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

from jaxnas.files import write_text
from jaxnas.ops import OPS
from jaxnas.spaces import GenotypeError

__all__ = [
    "CellGenotype",
    "Genotype",
    "JSON_FORMAT",
    "KNOWN_OPS",
    "Pair",
    "from_json",
    "load",
    "reduction_layers",
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
