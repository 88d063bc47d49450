"""Discrete networks for retraining and evaluation.

* :mod:`jaxnas.models.darts_net`: DARTS evaluation networks built from a genotype
  (:class:`NetworkCIFAR`, :class:`NetworkImageNet`; also Fashion-MNIST), with
  auxiliary heads and drop path, and the mapping from a one-hot supernet.
* :mod:`jaxnas.models.summary`: parameter counts and multiply-adds
  (``jaxnas.models.summary.summary`` is not re-exported here: the name would
  shadow the submodule).
"""

from jaxnas.models.darts_net import (
    DATASET_SPECS,
    AuxiliaryHead,
    DiscreteCell,
    NetworkCIFAR,
    NetworkImageNet,
    OneHotMixer,
    check_genotype,
    drop_path,
    make_network,
    one_hot_arch,
    variables_from_supernet,
)
from jaxnas.models.summary import count_macs, count_params

__all__ = [
    "DATASET_SPECS",
    "AuxiliaryHead",
    "DiscreteCell",
    "NetworkCIFAR",
    "NetworkImageNet",
    "OneHotMixer",
    "check_genotype",
    "count_macs",
    "count_params",
    "drop_path",
    "make_network",
    "one_hot_arch",
    "variables_from_supernet",
]
