"""The DARTS cell topology (Liu et al., 2019, Sec. 2.1).

A cell is a DAG with ``n_inputs`` input nodes (the outputs of the two previous
cells) and ``n_nodes`` intermediate nodes.  Node ids count the inputs first:
inputs are ``0 .. n_inputs-1`` and intermediate node ``k`` has id
``n_inputs + k``.  Every intermediate node is the sum of its incoming edges and
the cell output is the channel concatenation of the intermediate nodes.

Edges are ordered as in the DARTS reference code (``model_search.Cell``): by
destination node, then by source id.  For the DARTS cell this gives 14 edges:

    edge  0, 1        -> node 2   from 0, 1
    edge  2, 3, 4     -> node 3   from 0, 1, 2
    edge  5 .. 8      -> node 4   from 0, 1, 2, 3
    edge  9 .. 13     -> node 5   from 0, 1, 2, 3, 4

which is also the row order of the architecture matrix alpha (14, n_ops).
"""

from __future__ import annotations

import dataclasses
from functools import cached_property


@dataclasses.dataclass(frozen=True)
class CellTopology:
    """Which edges a cell has.

    Attributes:
      n_inputs: number of input nodes (2 for DARTS).
      n_nodes: number of intermediate nodes (4 for DARTS).
      edges: tuple of ``(src, dst)`` node ids in alpha-row order; if empty,
        every intermediate node takes an edge from every earlier node.
    """

    n_inputs: int = 2
    n_nodes: int = 4
    edges: tuple[tuple[int, int], ...] = ()

    def __post_init__(self):
        if not self.edges:
            full = tuple(
                (src, self.n_inputs + k)
                for k in range(self.n_nodes)
                for src in range(self.n_inputs + k)
            )
            object.__setattr__(self, "edges", full)
        for src, dst in self.edges:
            if not (0 <= src < dst < self.n_inputs + self.n_nodes and dst >= self.n_inputs):
                raise ValueError(
                    f"bad edge ({src}, {dst}) for {self.n_inputs}+{self.n_nodes} nodes"
                )
        dsts = [d for _, d in self.edges]
        if dsts != sorted(dsts):
            raise ValueError("edges must be ordered by destination node")

    @property
    def n_edges(self) -> int:
        """Number of edges (rows of alpha)."""
        return len(self.edges)

    @cached_property
    def input_edges(self) -> tuple[int, ...]:
        """Indices of edges whose source is a cell input (strided in a reduction cell)."""
        return tuple(e for e, (s, _) in enumerate(self.edges) if s < self.n_inputs)

    @cached_property
    def inner_edges(self) -> tuple[int, ...]:
        """Indices of edges between intermediate nodes (always stride 1)."""
        return tuple(e for e, (s, _) in enumerate(self.edges) if s >= self.n_inputs)

    def incoming(self, node: int) -> tuple[int, ...]:
        """Edge indices that end in intermediate node ``node`` (0-based among intermediates)."""
        dst = self.n_inputs + node
        return tuple(e for e, (_, d) in enumerate(self.edges) if d == dst)


DARTS_CELL = CellTopology()
assert DARTS_CELL.n_edges == 14
