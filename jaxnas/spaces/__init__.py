"""Search-space topologies."""

from jaxnas.spaces.darts import DARTS_CELL, CellTopology

__all__ = ["CellTopology", "DARTS_CELL"]
