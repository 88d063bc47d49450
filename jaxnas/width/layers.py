"""Layers the width models share: PyTorch-style convolution and BatchNorm.

* :func:`conv`: ``nn.Conv`` without bias, symmetric zero padding ``k // 2`` as
  ``torch.nn.Conv2d(..., padding=k // 2)`` (flax's ``"SAME"`` pads a stride-2 conv of an
  even input on one side only), He-normal fan-out init (NetSlim's
  ``normal(0, sqrt(2 / (k k C_out)))``, torchvision's ``kaiming_normal_(mode="fan_out")``).
* :func:`batch_norm`: PyTorch's BN (:class:`jaxnas.ops.BatchNorm`: its running-variance
  update, momentum 0.1, eps 1e-5) with a configurable initial scale.
* :func:`scale_channels`: thesis Eq. 4.1, ``X~^i = alpha_i X^i`` on the channel axis.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax

from jaxnas.ops import BatchNorm

__all__ = ["HE_FAN_OUT", "batch_norm", "conv", "scale_channels"]

#: He normal over the fan-out ``k * k * C_out`` (NetSlim / torchvision conv init).
HE_FAN_OUT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def conv(
    features: int,
    kernel: int,
    stride: int = 1,
    *,
    name: str,
    dtype: Any = None,
) -> nn.Conv:
    """Bias-free ``kernel x kernel`` convolution, padding ``kernel // 2`` on every side."""
    p = kernel // 2
    return nn.Conv(
        features,
        (kernel, kernel),
        strides=(stride, stride),
        padding=((p, p), (p, p)),
        use_bias=False,
        kernel_init=HE_FAN_OUT,
        dtype=dtype,
        name=name,
    )


def batch_norm(train: bool, *, name: str, scale_init: float = 1.0) -> BatchNorm:
    """PyTorch's BatchNorm (:class:`jaxnas.ops.BatchNorm`); batch statistics when ``train``."""
    return BatchNorm(
        use_running_average=not train,
        scale_init=nn.initializers.constant(scale_init),
        name=name,
    )


def scale_channels(x: jax.Array, alpha: jax.Array | None) -> jax.Array:
    """Thesis Eq. 4.1: ``alpha_i X^i`` for channel ``i`` (last axis); ``None``: unscored."""
    return x if alpha is None else x * alpha.astype(x.dtype)
