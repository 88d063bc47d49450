"""MobileNetV2 (torchvision layout) with channel scores on the expanded hidden channels.

Layout (Sandler et al. 2018; ``torchvision.models.mobilenet_v2``, width 1.0)::

    stem    conv3x3(3 -> 32, stride 2) BN ReLU6
    block   [expand 1x1 (in -> t in) BN ReLU6]      (absent when t = 1)
            dw 3x3 (stride s) BN ReLU6
            alpha * .                                 <- the block's score vector
            project 1x1 (hidden -> out) BN            (+ x when s = 1 and in = out)
    last    conv1x1(320 -> 1280) BN ReLU6, alpha * ., global average pool,
            dropout 0.2, linear(1280 -> classes)

with the 17 inverted-residual blocks of ``(t, c, n, s)`` = (1,16,1,1), (6,24,2,2),
(6,32,3,2), (6,64,4,2), (6,96,3,1), (6,160,3,2), (6,320,1,1).  At 1000 classes this
has **3,504,872 parameters**, the count torchvision documents for ``mobilenet_v2``
(``MobileNet_V2_Weights.IMAGENET1K_V1.meta["num_params"]``), and 300,774,272 conv + fc
multiply-adds at 224x224 (torchvision: 0.3 GFLOPS); ImageNet-20 (thesis Sec. 4.2) has
the same body with a 20-way classifier.

**Where the scores sit** (thesis Eq. 4.1): on each block's hidden channels after the
depthwise conv's BN and ReLU6, at the input of the linear ``project`` conv.  Before a
BN the score would be normalised away in training; here it scales one input channel of
``project``, which sums over channels.  A zero score removes the channel's expand
filter, both BNs' entries, its depthwise filter and its ``project`` input.  Groups:

* ``block{i:02d}.hidden`` for every block with ``t > 1``;
* ``block00.hidden`` for the first block (``t = 1``, not residual: 32 -> 16): its
  hidden channels are the stem's outputs, which feed nothing else, so the group also
  slices the stem conv and stem BN.  A ``t = 1`` block with a residual connection
  (none in the standard layout) reads the residual stream and gets no group;
* ``head``: the 1280 channels of ``last_conv`` that the classifier reads.

The residual stream (block outputs) is not pruned.  Inits follow torchvision (conv
He fan-out, BN 1 / 0, classifier ``normal(0, 0.01)``, bias 0); the depthwise convs are
:class:`jaxnas.ops.DepthwiseConv` (shifted multiply-adds; ``cfg.depthwise`` picks the
implementation).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxnas.models.prunable import (
    ChannelGroup,
    bn_slices,
    conv_in,
    conv_out,
    dense_in,
    depthwise_channels,
    normalize_keep,
    score_variables,
)
from jaxnas.ops import DepthwiseConv, OpsConfig
from jaxnas.width.layers import batch_norm, conv, scale_channels

__all__ = ["MOBILENETV2_SETTING", "MobileNetV2", "make_divisible"]

#: ``(t, c, n, s)``: expansion, output channels, repeats, first stride (torchvision).
MOBILENETV2_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def make_divisible(v: float, divisor: int = 8) -> int:
    """torchvision's ``_make_divisible``: nearest multiple of ``divisor``, >= 90 % of ``v``."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


@dataclasses.dataclass(frozen=True)
class _BlockSpec:
    name: str
    inp: int
    out: int
    stride: int
    t: int
    hidden: int

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.inp == self.out


class InvertedResidual(nn.Module):
    """torchvision's ``InvertedResidual`` with a score on the hidden channels."""

    hidden: int
    out: int
    stride: int
    expand: bool
    residual: bool
    cfg: OpsConfig = OpsConfig()

    @nn.compact
    def __call__(self, x: jax.Array, alpha: Any, train: bool) -> jax.Array:
        """``x``: ``(B, H, W, in)`` -> ``(B, H / stride, W / stride, out)``."""
        h = x
        if self.expand:
            h = conv(self.hidden, 1, name="expand", dtype=self.cfg.dtype)(h)
            h = nn.relu6(batch_norm(train, name="expand_bn")(h))
        h = DepthwiseConv(3, self.stride, padding=1, cfg=self.cfg, name="dw")(h)
        h = scale_channels(nn.relu6(batch_norm(train, name="dw_bn")(h)), alpha)
        h = conv(self.out, 1, name="project", dtype=self.cfg.dtype)(h)
        h = batch_norm(train, name="project_bn")(h)
        return x + h if self.residual else h


class MobileNetV2(nn.Module):
    """Channel-scored MobileNetV2; see the module doc.

    Attributes:
      num_classes: 1000 (ImageNet), 20 (ImageNet-20), ...
      width_mult: torchvision's width multiplier (channels rounded to multiples of 8).
      setting: the ``(t, c, n, s)`` rows (a reduced one for tests keeps the block code).
      stem: nominal stem width (default ``make_divisible(32 width_mult)``); with the
        block widths it fixes which blocks are residual (``s = 1``, ``in = out``), also
        after pruning.
      last_channel: head width (default ``make_divisible(1280 max(1, width_mult))``).
      hidden: per block hidden width (default ``round(in t)``).  A ``t = 1`` block has
        no expand conv, so its hidden width is its input width; for a non-residual first
        block that is the stem conv's output width, which ``hidden[0]`` then sets.
      dropout: before the classifier (training only; needs a ``"dropout"`` rng).
      scored: create the ``"arch"`` scores.
      cfg: depthwise implementation and computation dtype (:class:`jaxnas.ops.OpsConfig`).

    Call: ``model.apply(variables, x, train=False)``, ``x`` ``(B, H, W, 3)``; logits.
    """

    num_classes: int = 1000
    width_mult: float = 1.0
    setting: tuple[tuple[int, int, int, int], ...] = MOBILENETV2_SETTING
    stem: int | None = None
    last_channel: int | None = None
    hidden: tuple[int, ...] | None = None
    dropout: float = 0.2
    scored: bool = True
    cfg: OpsConfig = OpsConfig()

    def _widths(self) -> tuple[int, int]:
        stem = self.stem if self.stem is not None else make_divisible(32 * self.width_mult)
        last = self.last_channel
        if last is None:
            last = make_divisible(1280 * max(1.0, self.width_mult))
        if min(stem, last) < 1:
            raise ValueError(f"MobileNetV2: stem and last_channel must be >= 1, got {stem}, {last}")
        return stem, last

    def _specs(self) -> list[_BlockSpec]:
        if not self.setting or any(len(row) != 4 or min(row) < 1 for row in self.setting):
            raise ValueError(f"MobileNetV2: setting must be (t, c, n, s) rows >= 1: {self.setting}")
        stem, _ = self._widths()
        specs, inp = [], stem
        for t, c, n, s in self.setting:
            out = make_divisible(c * self.width_mult)
            for j in range(n):
                i = len(specs)
                hidden = int(round(inp * t))
                specs.append(_BlockSpec(f"block{i:02d}", inp, out, s if j == 0 else 1, t, hidden))
                inp = out
        if self.hidden is not None:
            if len(self.hidden) != len(specs) or min(self.hidden) < 1:
                raise ValueError(
                    f"MobileNetV2: hidden needs {len(specs)} widths >= 1, got {self.hidden}"
                )
            specs = [dataclasses.replace(sp, hidden=h) for sp, h in zip(specs, self.hidden)]
        for i, sp in enumerate(specs):
            if sp.t == 1 and sp.hidden != sp.inp and not (i == 0 and not sp.residual):
                raise ValueError(
                    f"MobileNetV2 {sp.name}: t = 1 has no expand conv, so hidden must equal its "
                    f"input width {sp.inp}, got {sp.hidden}"
                )
        return specs

    def _stem_pruned(self, specs: Sequence[_BlockSpec]) -> bool:
        """Whether the first block's hidden channels are the stem's (t = 1, no residual)."""
        return specs[0].t == 1 and not specs[0].residual

    def _stem_width(self, specs: Sequence[_BlockSpec]) -> int:
        """Output width of the stem conv: the first block's hidden width when prunable."""
        return specs[0].hidden if self._stem_pruned(specs) else self._widths()[0]

    def channel_groups(self) -> tuple[ChannelGroup, ...]:
        """``block{i}.hidden`` per prunable block, then ``head``."""
        groups = []
        for i, sp in enumerate(self._specs()):
            p = sp.name
            tail = depthwise_channels((p, "dw")) + bn_slices((p, "dw_bn"))
            if sp.t != 1:
                prod = conv_out((p, "expand")) + bn_slices((p, "expand_bn")) + tail
            elif i == 0 and not sp.residual:
                prod = conv_out(("stem",)) + bn_slices(("stem_bn",)) + tail
            else:
                continue  # its hidden channels are a residual stream: not prunable here
            groups.append(ChannelGroup(f"{p}.hidden", sp.hidden, prod, conv_in((p, "project"))))
        _, last = self._widths()
        groups.append(
            ChannelGroup(
                "head",
                last,
                conv_out(("last_conv",)) + bn_slices(("last_bn",)),
                dense_in(("classifier",)),
            )
        )
        return tuple(groups)

    def pruned(self, keep: Mapping[str, Sequence[int]]) -> MobileNetV2:
        """The network keeping channels ``keep[group]`` (indices into the current group)."""
        keep = normalize_keep(self.channel_groups(), keep)
        specs = self._specs()
        hidden = tuple(len(keep.get(f"{sp.name}.hidden", range(sp.hidden))) for sp in specs)
        # ``stem`` stays the nominal width: it fixes which blocks are residual.
        return self.clone(stem=self._widths()[0], hidden=hidden, last_channel=len(keep["head"]))

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        specs = self._specs()
        stem, last = self._stem_width(specs), self._widths()[1]
        a = score_variables(self, self.channel_groups(), self.scored)
        dt = self.cfg.dtype
        h = conv(stem, 3, 2, name="stem", dtype=dt)(x)
        h = nn.relu6(batch_norm(train, name="stem_bn")(h))
        for sp in specs:
            block = InvertedResidual(
                sp.hidden, sp.out, sp.stride, sp.t != 1, sp.residual, self.cfg, name=sp.name
            )
            h = block(h, a.get(f"{sp.name}.hidden"), train)
        h = conv(last, 1, name="last_conv", dtype=dt)(h)
        h = scale_channels(nn.relu6(batch_norm(train, name="last_bn")(h)), a["head"])
        h = jnp.mean(h, axis=(1, 2))
        h = nn.Dropout(self.dropout, deterministic=not train or self.dropout == 0)(h)
        return nn.Dense(
            self.num_classes,
            kernel_init=nn.initializers.normal(0.01),
            dtype=dt,
            name="classifier",
        )(h)
