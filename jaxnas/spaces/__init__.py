"""The search spaces' data, and the error every space's architecture parser raises.

- :mod:`jaxnas.spaces.darts`: cell topologies (:class:`CellTopology`, the DARTS cell);
- :mod:`jaxnas.spaces.darts_genotype`: the DARTS cell genotype (types, validation, JSON);
- :mod:`jaxnas.spaces.darts_derive`: the DARTS rule from architecture weights;
- :mod:`jaxnas.spaces.darts_zoo`: the published DARTS-space cells by name;
- :mod:`jaxnas.spaces.drawing`: cell pictures (the curve router every picture shares);
- :mod:`jaxnas.spaces.nb201`: the NAS-Bench-201 cell (arch strings, derivation, JSON,
  picture, the NATS-Bench lookup).

:class:`GenotypeError` lives here, below all of them (and :mod:`jaxnas.genotype`, the
old import path, which re-exports it), so that no space imports another's module.
"""

from jaxnas.spaces.darts import DARTS_CELL, CellTopology

__all__ = ["CellTopology", "DARTS_CELL", "GenotypeError"]


class GenotypeError(ValueError):
    """An invalid or unreadable genotype.  The message is always a single line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
