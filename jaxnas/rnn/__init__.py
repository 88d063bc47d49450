"""DARTS' recurrent search space for SparseNAS: genotype, cells, language model.

``genotype``: :class:`RNNGenotype` (DARTS' ``recurrent`` list or the sparse
mixed-path form), JSON, the SparseNAS derivation :func:`derive_rnn`.
``model``: the search (linear mixing by ``A``) and discrete cells and the
language model with AWD-style dropouts, as pure functions over parameter dicts.
``draw``: the cell's picture (``genotype_recurrent.{png,svg}``) and ``jaxnas plot``
for recurrent workdirs.  ``sgd``: DARTS' per-window SGD of the weights, which the
search and the retraining share. The search and retraining run on :mod:`jaxnas.loop`.
"""

from jaxnas.rnn.genotype import (
    DARTS_V1,
    DARTS_V2,
    RNN_OPS,
    RNN_PRIMITIVES,
    STEPS,
    RNNGenotype,
    derive_rnn,
    edge_index,
    get_rnn_genotype,
    node_groups,
)
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
    "DARTS_V1",
    "DARTS_V2",
    "RNN_OPS",
    "RNN_PRIMITIVES",
    "STEPS",
    "Dropouts",
    "RNNGenotype",
    "derive_rnn",
    "discrete_cell",
    "edge_index",
    "get_rnn_genotype",
    "init_discrete_params",
    "init_supernet_params",
    "lm_forward",
    "lm_loss",
    "node_groups",
    "supernet_arch_for",
    "supernet_cell",
]
