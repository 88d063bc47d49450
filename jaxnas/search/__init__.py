"""Search methods, one module each; ``build`` makes one from a config.

``METHODS`` maps a config's ``method`` name to its class; later methods
register themselves here.
"""

from __future__ import annotations

import ml_collections

from jaxnas.search.asmnas import ASMNAS
from jaxnas.search.base import SearchMethod
from jaxnas.search.bayesnas import BayesNAS
from jaxnas.search.darts import DARTS
from jaxnas.search.gdas import GDAS
from jaxnas.search.prdarts import PRDARTS
from jaxnas.search.rarts import RARTS
from jaxnas.search.sparsenas import SparseNAS

METHODS: dict[str, type] = {
    "darts": DARTS,
    "rarts": RARTS,
    "asmnas": ASMNAS,
    "sparsenas": SparseNAS,
    "bayesnas": BayesNAS,
    "prdarts": PRDARTS,
    "gdas": GDAS,
}


def build(
    config: ml_collections.ConfigDict,
    *,
    steps_per_epoch: int,
    num_classes: int,
    input_shape: tuple[int, int, int],
) -> SearchMethod:
    """The search method ``config.method`` set up for this data."""
    try:
        cls = METHODS[config.method]
    except KeyError:
        raise ValueError(
            f"unknown method {config.method!r}; known: {', '.join(sorted(METHODS))}"
        ) from None
    return cls(
        config, steps_per_epoch=steps_per_epoch, num_classes=num_classes, input_shape=input_shape
    )


__all__ = ["METHODS", "SearchMethod", "build"]
