"""DARTS' recurrent search space for SparseNAS: genotype, cells, language model.

``genotype``: :class:`RNNGenotype` (DARTS' ``recurrent`` list or the sparse
mixed-path form), JSON, the SparseNAS derivation :func:`derive_rnn`.
``model``: the search (linear mixing by ``A``) and discrete cells and the
language model with AWD-style dropouts, as pure functions over parameter dicts.
``draw``: the cell's picture (``genotype_recurrent.{png,svg}``) and ``jaxnas plot``
for recurrent workdirs.  ``sgd``: DARTS' per-window SGD of the weights, which the
search and the retraining share. The search and retraining run on :mod:`jaxnas.loop`.
"""

from jaxnas.rnn import genotype
from jaxnas.rnn.genotype import *  # noqa: F403 -- all of the genotype module's public names
from jaxnas.rnn.model import (
    Dropouts,
    discrete_cell,
    init_discrete_params,
    init_supernet_params,
    lm_forward,
    lm_loss,
    supernet_arch_for,
    supernet_cell,
)

__all__ = [
    "Dropouts",
    "discrete_cell",
    "init_discrete_params",
    "init_supernet_params",
    "lm_forward",
    "lm_loss",
    "supernet_arch_for",
    "supernet_cell",
]
__all__ += genotype.__all__
