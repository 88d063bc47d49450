"""Width search foundations: channel-scored CNNs, pruning by score, real surgery.

F. Xue, PhD thesis (UC Irvine 2022), Sec. 4.1-4.2: a scalar score ``alpha_i`` per
prunable channel multiplies its feature map (Eq. 4.1), lives in the ``"arch"``
collection, is searched with an l1 penalty (:func:`jaxnas.optim.l1_prox`,
:func:`jaxnas.optim.add_l1_subgradient`), ranked, and the network is cut down to the
kept channels.

* models (each a :class:`~jaxnas.width.groups.Prunable`: ``channel_groups()``,
  ``pruned(keep)``): :class:`PreResNet` (NetSlim layout; PreResNet-164: 1,703,258
  parameters at 10 classes), :class:`MobileNetV2` (torchvision layout: 3,504,872 at
  1000 classes), :class:`PreActResNet` (small, for CPU demos on Fashion-MNIST);
* :mod:`jaxnas.width.groups`: channel groups as data (which axes a score controls);
* :mod:`jaxnas.width.surgery`: :func:`choose_channels` (global / per-layer ranking,
  ratio or non-zeros), :func:`prune` (sliced variables + the smaller model),
  :func:`mask_scores`, :func:`fold_scores`, :func:`network_size`,
  :func:`pruning_summary`, baseline scores :func:`bn_scale_scores` (Network Slimming)
  and :func:`random_scores`.
"""

from jaxnas.width.groups import ChannelGroup, Prunable, Slice, check_groups
from jaxnas.width.mobilenetv2 import MOBILENETV2_SETTING, MobileNetV2
from jaxnas.width.preresnet import PreResNet, preresnet164
from jaxnas.width.resnet import PreActResNet
from jaxnas.width.surgery import (
    bn_scale_scores,
    choose_channels,
    fold_scores,
    kept_widths,
    mask_scores,
    network_size,
    prune,
    pruning_summary,
    random_scores,
    slice_variables,
)

__all__ = [
    "MOBILENETV2_SETTING",
    "ChannelGroup",
    "MobileNetV2",
    "PreActResNet",
    "PreResNet",
    "Prunable",
    "Slice",
    "bn_scale_scores",
    "check_groups",
    "choose_channels",
    "fold_scores",
    "kept_widths",
    "mask_scores",
    "network_size",
    "preresnet164",
    "prune",
    "pruning_summary",
    "random_scores",
    "slice_variables",
]
