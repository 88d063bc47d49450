"""Width search foundations: channel-scored CNNs, pruning by score, real surgery.

F. Xue, PhD thesis (UC Irvine 2022), Sec. 4.1-4.2: a scalar score ``alpha_i`` per
prunable channel multiplies its feature map (Eq. 4.1), lives in the ``"arch"``
collection, is searched with an l1 penalty (:func:`jaxnas.optim.l1_prox`,
:func:`jaxnas.optim.add_l1_subgradient`), ranked, and the network is cut down to the
kept channels.

* models (each a :class:`~jaxnas.models.prunable.Prunable`: ``channel_groups()``,
  ``pruned(keep)``): :class:`PreResNet` (NetSlim layout; PreResNet-164: 1,703,258
  parameters at 10 classes), :class:`MobileNetV2` (torchvision layout: 3,504,872 at
  1000 classes), :class:`PreActResNet` (small, for CPU demos on Fashion-MNIST);
  SiDT vision transformers (thesis Sec. 4.3: scores on head dimensions and MLP units,
  :mod:`jaxnas.width.attention`): :class:`SwinTransformer` (Swin-T: 27,596,254
  parameters at 100 classes) and :class:`ViT` (:func:`vit_tiny` for Fashion-MNIST);
* :mod:`jaxnas.width.search`: :class:`WidthSearch`, the score search (thesis
  Algorithm 3: RARTS + gamma ||alpha||_1; DARTS-1/2 ablation; NetSlim / plain training);
* :mod:`jaxnas.width.finetune`: :class:`FineTuner` (warm start, :func:`kd_loss` at T);
* :mod:`jaxnas.width_compress` (beside :mod:`jaxnas.bayes_compress`, a run driver of
  the one loop, so outside this package): ``jaxnas compress`` for rarts-width /
  netslim / random / sidt (search, prune, fine-tune, workdir);
* :mod:`jaxnas.width.data`: its data (in-memory datasets, streamed ImageNet /
  ImageNet-20, the bi-level split by index sets, on-device resize to
  ``model.input_size``);
* :mod:`jaxnas.models.prunable` (shared with the BayesNAS compression networks):
  channel groups as data (which axes a score controls);
* :mod:`jaxnas.width.surgery`: :func:`choose_channels` (global / per-layer ranking,
  ratio or non-zeros), :func:`prune` (sliced variables + the smaller model),
  :func:`mask_scores`, :func:`fold_scores`, :func:`network_size`,
  :func:`pruning_summary`, baseline scores :func:`bn_scale_scores` (Network Slimming)
  and :func:`random_scores`.
"""

from jaxnas.models.prunable import ChannelGroup, Prunable, Slice, check_groups
from jaxnas.width.finetune import FineTuner, kd_loss
from jaxnas.width.mobilenetv2 import MOBILENETV2_SETTING, MobileNetV2
from jaxnas.width.preresnet import PreResNet, preresnet164
from jaxnas.width.resnet import PreActResNet
from jaxnas.width.search import WidthSearch, WidthState
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
from jaxnas.width.swin import SwinTransformer, swin_t
from jaxnas.width.vit import ViT, vit_tiny

__all__ = [
    "MOBILENETV2_SETTING",
    "ChannelGroup",
    "FineTuner",
    "MobileNetV2",
    "PreActResNet",
    "PreResNet",
    "Prunable",
    "Slice",
    "SwinTransformer",
    "ViT",
    "WidthSearch",
    "WidthState",
    "bn_scale_scores",
    "check_groups",
    "choose_channels",
    "fold_scores",
    "kd_loss",
    "kept_widths",
    "mask_scores",
    "network_size",
    "preresnet164",
    "prune",
    "pruning_summary",
    "random_scores",
    "slice_variables",
    "swin_t",
    "vit_tiny",
]
