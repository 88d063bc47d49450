"""Search-space topologies, and the error every space's architecture parser raises.

:class:`GenotypeError` lives here, below :mod:`jaxnas.genotype` (which re-exports it)
and :mod:`jaxnas.spaces.nb201`, so that neither space imports the other's module.
"""

from jaxnas.spaces.darts import DARTS_CELL, CellTopology

__all__ = ["CellTopology", "DARTS_CELL", "GenotypeError"]


class GenotypeError(ValueError):
    """An invalid or unreadable genotype.  The message is always a single line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
