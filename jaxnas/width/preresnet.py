"""PreResNet for CIFAR in Network Slimming's bottleneck layout, with channel scores.

Layout (NetSlim's ``models/preresnet.py``, Liu et al. 2017; depth ``9n + 2``, ``n``
bottlenecks per stage, stages of ``planes = 16, 32, 64`` at 32, 16, 8 pixels)::

    stem   conv3x3(3 -> 16)
    block  h = select(x)                      # kept residual-stream channels (NetSlim's
                                              # channel_selection), the identity unpruned
           h = a_in  * relu(bn1(h))            -> conv1 1x1 (in  -> c1)
           h = a_mid1 * relu(bn2(h))           -> conv2 3x3 (c1 -> c2), stride 2 at a new stage
           h = a_mid2 * relu(bn3(h))           -> conv3 1x1 (c2 -> 4 planes)
           out = h + (downsample(x) if first block of a stage else x)   # 1x1 conv, no BN
    head   a_final * relu(bn(select(x))) -> global average pool -> fc

PreResNet-164 (``n = 18``) has **1,703,258 parameters at 10 classes** (1,726,388 at 100)
and 247,646,720 conv + fc multiply-adds on a 32x32 image (the 2.48e8 "FLOPS" of thesis
Table 4.1), counted by :func:`jaxnas.models.summary.count_params` / ``count_macs``.
NetSlim's own count of the same network adds its channel-selection ``indexes`` (8,080
more); the scores here live in ``"arch"`` and are not parameters.

**Where the scores sit** (thesis Eq. 4.1, ``X~^i = alpha_i X^i``): each score vector
multiplies the channels *after* their BN and ReLU, at the input of the conv that reads
them, where NetSlim's channel-selection layer sits.  Placed on a conv's output before
its own BN (the literal reading of Eq. 4.1 in a pre-activation net), a training-mode BN
would normalise ``alpha_i X^i`` back to ``X^i`` and ``alpha`` would get no task gradient.
After BN-ReLU, ``alpha_i`` scales one input channel of the next conv, which sums over
channels: nothing downstream cancels it.  Four kinds of group per network, the same
channels NetSlim's BN-scale ranking prunes:

* ``layer{s}_{b}.in`` (select): block input channels read by ``conv1`` (the residual
  stream stays whole; ``bn1`` is applied to the kept channels only, which equals
  NetSlim's BN-then-select since BN is per channel);
* ``layer{s}_{b}.mid1``: ``conv1``'s outputs (``bn2``, ``conv2``'s inputs);
* ``layer{s}_{b}.mid2``: ``conv2``'s outputs (``bn3``, ``conv3``'s inputs);
* ``final`` (select): the channels the classifier reads.

BN scales start at 0.5 (NetSlim's init: its scores are the BN scales); convs use He
fan-out init.  Config: ``widths`` gives each block's ``(c1, c2)`` (NetSlim's ``cfg``
without the selections), ``selects`` each block's kept input channels and the
head's (``None`` = all); :meth:`PreResNet.pruned` fills both.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxnas.models.prunable import (
    ChannelGroup,
    bn_slices,
    conv_in,
    conv_out,
    dense_in,
    normalize_keep,
    score_variables,
)
from jaxnas.width.layers import batch_norm, conv, scale_channels

__all__ = ["PreResNet", "preresnet164"]

STEM = 16
PLANES = (16, 32, 64)
EXPANSION = 4
NETSLIM_BN_SCALE = 0.5

Select = tuple[int, ...] | None


@dataclasses.dataclass(frozen=True)
class _BlockSpec:
    name: str
    inplanes: int
    c1: int
    c2: int
    out: int
    stride: int
    downsample: bool
    select: Select


def _take(x: jax.Array, select: Select) -> jax.Array:
    return x if select is None else jnp.take(x, np.asarray(select, np.int32), axis=-1)


def _compose(select: Select, width: int, kept: Sequence[int]) -> Select:
    """Indices into the full stream of the kept positions of an existing selection."""
    current = tuple(range(width)) if select is None else select
    new = tuple(current[i] for i in kept)
    return None if new == tuple(range(width)) else new


def _check_select(select: Select, width: int, what: str) -> None:
    if select is None:
        return
    s = np.asarray(select)
    if s.size == 0 or s.min() < 0 or s.max() >= width or len(np.unique(s)) != s.size:
        raise ValueError(f"{what}: selection must be distinct indices in [0, {width}), non-empty")


class PreActBottleneck(nn.Module):
    """NetSlim's pre-activation bottleneck with scores on its three prunable inputs."""

    c1: int
    c2: int
    out: int
    stride: int = 1
    downsample: bool = False
    select: Select = None
    bn_scale: float = NETSLIM_BN_SCALE
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, alphas: Sequence[Any], train: bool) -> jax.Array:
        """``x``: ``(B, H, W, inplanes)``; ``alphas``: ``(a_in, a_mid1, a_mid2)`` or Nones."""
        a_in, a1, a2 = alphas

        def bn_relu_score(name: str, h: jax.Array, alpha: Any) -> jax.Array:
            # Score after BN-ReLU: placed before the BN, BN would normalise it away.
            bn = batch_norm(train, name=name, scale_init=self.bn_scale)
            return scale_channels(nn.relu(bn(h)), alpha)

        h = bn_relu_score("bn1", _take(x, self.select), a_in)
        h = conv(self.c1, 1, name="conv1", dtype=self.dtype)(h)
        h = bn_relu_score("bn2", h, a1)
        h = conv(self.c2, 3, self.stride, name="conv2", dtype=self.dtype)(h)
        h = bn_relu_score("bn3", h, a2)
        h = conv(self.out, 1, name="conv3", dtype=self.dtype)(h)
        if self.downsample:
            x = conv(self.out, 1, self.stride, name="downsample", dtype=self.dtype)(x)
        return h + x


class PreResNet(nn.Module):
    """Channel-scored PreResNet (NetSlim layout); see the module doc.

    Attributes:
      depth: ``9n + 2`` (164 for PreResNet-164; 11, 20 for small variants).
      num_classes: classifier outputs.
      widths: per block ``(c1, c2)``, the widths of ``conv1`` and ``conv2`` outputs
        (default ``(planes, planes)``).
      selects: per block, then the head: kept residual-stream channels (``None``: all).
      scored: create the ``"arch"`` scores (``False``: the plain network, no ``"arch"``).
      dtype: computation dtype of the convolutions and the classifier.

    Call: ``model.apply(variables, x, train=False)`` with ``x`` of shape
    ``(B, H, W, C_in)`` (32x32 CIFAR); ``train=True`` needs ``mutable=["batch_stats"]``.
    Returns logits ``(B, num_classes)``.
    """

    depth: int = 164
    num_classes: int = 10
    widths: tuple[tuple[int, int], ...] | None = None
    selects: tuple[Select, ...] | None = None
    scored: bool = True
    dtype: Any = None

    def _n(self) -> int:
        if self.depth < 11 or (self.depth - 2) % 9:
            raise ValueError(f"PreResNet depth must be 9n + 2 with n >= 1, got {self.depth}")
        return (self.depth - 2) // 9

    def _specs(self) -> tuple[list[_BlockSpec], Select]:
        n = self._n()
        nb = 3 * n
        widths = self.widths or tuple((p, p) for p in PLANES for _ in range(n))
        selects = self.selects or (None,) * (nb + 1)
        if len(widths) != nb or len(selects) != nb + 1:
            raise ValueError(
                f"PreResNet-{self.depth}: widths needs {nb} (c1, c2) pairs and selects "
                f"{nb + 1} entries, got {len(widths)} and {len(selects)}"
            )
        specs, inplanes = [], STEM
        for i, ((c1, c2), sel) in enumerate(zip(widths, selects[:-1])):
            s, b = divmod(i, n)
            name = f"layer{s + 1}_{b}"
            if min(c1, c2) < 1:
                raise ValueError(f"{name}: widths must be >= 1, got {(c1, c2)}")
            _check_select(sel, inplanes, name)
            out = PLANES[s] * EXPANSION
            stride = 2 if (b == 0 and s > 0) else 1
            specs.append(_BlockSpec(name, inplanes, c1, c2, out, stride, b == 0, sel))
            inplanes = out
        _check_select(selects[-1], inplanes, "final")
        return specs, selects[-1]

    def channel_groups(self) -> tuple[ChannelGroup, ...]:
        """The ``9n + 1`` score groups (``.in``, ``.mid1``, ``.mid2`` per block, ``final``)."""
        specs, final_sel = self._specs()
        groups = []
        for sp in specs:
            p = sp.name
            n_in = sp.inplanes if sp.select is None else len(sp.select)
            groups += [
                ChannelGroup(
                    f"{p}.in", n_in, bn_slices((p, "bn1")), conv_in((p, "conv1")), select=True
                ),
                ChannelGroup(
                    f"{p}.mid1",
                    sp.c1,
                    conv_out((p, "conv1")) + bn_slices((p, "bn2")),
                    conv_in((p, "conv2")),
                ),
                ChannelGroup(
                    f"{p}.mid2",
                    sp.c2,
                    conv_out((p, "conv2")) + bn_slices((p, "bn3")),
                    conv_in((p, "conv3")),
                ),
            ]
        width = specs[-1].out
        n_final = width if final_sel is None else len(final_sel)
        groups.append(ChannelGroup("final", n_final, bn_slices(("bn",)), dense_in(("fc",)), True))
        return tuple(groups)

    def pruned(self, keep: Mapping[str, Sequence[int]]) -> PreResNet:
        """The network keeping channels ``keep[group]`` (indices into the current group)."""
        groups = self.channel_groups()
        keep = normalize_keep(groups, keep)
        specs, final_sel = self._specs()
        widths, selects = [], []
        for sp in specs:
            widths.append((len(keep[f"{sp.name}.mid1"]), len(keep[f"{sp.name}.mid2"])))
            selects.append(_compose(sp.select, sp.inplanes, keep[f"{sp.name}.in"]))
        selects.append(_compose(final_sel, specs[-1].out, keep["final"]))
        return self.clone(widths=tuple(widths), selects=tuple(selects))

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        specs, final_sel = self._specs()
        a = score_variables(self, self.channel_groups(), self.scored)
        h = conv(STEM, 3, name="conv1", dtype=self.dtype)(x)
        for sp in specs:
            block = PreActBottleneck(
                sp.c1,
                sp.c2,
                sp.out,
                sp.stride,
                sp.downsample,
                sp.select,
                dtype=self.dtype,
                name=sp.name,
            )
            h = block(h, (a[f"{sp.name}.in"], a[f"{sp.name}.mid1"], a[f"{sp.name}.mid2"]), train)
        h = _take(h, final_sel)
        h = nn.relu(batch_norm(train, name="bn", scale_init=NETSLIM_BN_SCALE)(h))
        h = scale_channels(h, a["final"])
        h = jnp.mean(h, axis=(1, 2))  # NetSlim's AvgPool2d(8) on the 8x8 map
        return nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(h)


def preresnet164(num_classes: int = 10, **kwargs: Any) -> PreResNet:
    """PreResNet-164 (NetSlim layout): 1,703,258 parameters at 10 classes."""
    return PreResNet(depth=164, num_classes=num_classes, **kwargs)
