"""DARTS-space genotypes under their original import path (``jaxnas.genotype``).

The DARTS cell space lives in :mod:`jaxnas.spaces`, split by what each part is:

- :mod:`jaxnas.spaces.darts_genotype`: the types (:class:`CellGenotype`,
  :class:`Genotype`, :func:`reduction_layers`), :func:`validate` and the JSON forms
  (:func:`to_json`, :func:`from_json`, :func:`save`, :func:`load`);
- :mod:`jaxnas.spaces.darts_derive`: the DARTS rule (:func:`derive_cell`,
  :func:`derive`);
- :mod:`jaxnas.spaces.darts_zoo`: the published cells and the registry by name
  (:data:`NAMED_GENOTYPES`, :func:`get_genotype`);
- :mod:`jaxnas.spaces.drawing`: the cell pictures (:func:`plot_cell`,
  :func:`plot_genotype`) and the curve router they share with the recurrent cell's.

This module re-exports their public names, so ``from jaxnas.genotype import ...`` in
user code, configs and experiments keeps working; the library itself imports from
the modules above.
"""

from __future__ import annotations

from jaxnas.spaces import GenotypeError
from jaxnas.spaces.darts_derive import arch_array, derive, derive_cell
from jaxnas.spaces.darts_genotype import (
    JSON_FORMAT,
    KNOWN_OPS,
    CellGenotype,
    Genotype,
    Pair,
    from_json,
    load,
    reduction_layers,
    save,
    to_json,
    validate,
)
from jaxnas.spaces.darts_zoo import (
    DARTS,
    DARTS_V1,
    DARTS_V2,
    NAMED_GENOTYPES,
    PRDARTS,
    get_genotype,
    register_genotype,
)
from jaxnas.spaces.drawing import (
    cell_axes,
    draw_arrow,
    draw_label,
    draw_nodes,
    plot_cell,
    plot_genotype,
    route_edges,
)

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
    "PRDARTS",
    "Pair",
    "arch_array",
    "cell_axes",
    "derive",
    "derive_cell",
    "draw_arrow",
    "draw_label",
    "draw_nodes",
    "from_json",
    "get_genotype",
    "load",
    "plot_cell",
    "plot_genotype",
    "reduction_layers",
    "register_genotype",
    "route_edges",
    "save",
    "to_json",
    "validate",
]
