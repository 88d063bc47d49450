"""A small channel-scored pre-activation ResNet (basic blocks) for CPU demos (Fashion-MNIST).

Layout (He et al. 2016, "Identity mappings", basic blocks; shortcut as NetSlim's
PreResNet, from the block input ``x`` itself)::

    stem    conv3x3(C_in -> stem)
    block   h = relu(bn1(x)) -> conv1 3x3 (in -> mid, stride s)
            h = alpha * relu(bn2(h)) -> conv2 3x3 (mid -> out)
            out = h + (conv1x1(x, stride s) if the shape changes else x)
    head    alpha * relu(bn(select(x))) -> global average pool -> fc

Default: ``stem = 16``, one block per stage at widths 16, 32, 64 (strides 1, 2, 2):
77,562 parameters and 9,345,920 multiply-adds for 28x28x1 inputs and 10 classes.

**Where the scores sit** (thesis Eq. 4.1): ``block.mid`` scales ``conv1``'s output
channels after ``bn2`` and ReLU, at the input of ``conv2`` (before a BN a
training-mode BN would normalise the score away); ``final`` (a selection of the
residual stream) scales the channels the classifier reads.  ``mids`` sets each
block's ``mid`` width, ``select`` the head's kept channels; :meth:`PreActResNet.pruned`
fills both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxnas.models import prunable
from jaxnas.width.layers import batch_norm, conv, scale_channels

__all__ = ["PreActBlock", "PreActResNet"]


class PreActBlock(nn.Module):
    """Pre-activation basic block with a score on its inner channels."""

    mid: int
    out: int
    stride: int = 1
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, alpha: Any, train: bool) -> jax.Array:
        """``x``: ``(B, H, W, in)`` -> ``(B, H / stride, W / stride, out)``."""
        h = nn.relu(batch_norm(train, name="bn1")(x))
        h = conv(self.mid, 3, self.stride, name="conv1", dtype=self.dtype)(h)
        h = scale_channels(nn.relu(batch_norm(train, name="bn2")(h)), alpha)
        h = conv(self.out, 3, name="conv2", dtype=self.dtype)(h)
        if self.stride != 1 or x.shape[-1] != self.out:
            x = conv(self.out, 1, self.stride, name="shortcut", dtype=self.dtype)(x)
        return h + x


class PreActResNet(nn.Module):
    """Small channel-scored pre-activation ResNet; see the module doc.

    Attributes:
      num_classes: classifier outputs.
      stages: output width of each stage.
      blocks: blocks per stage.
      strides: first-block stride of each stage.
      stem: stem conv width.
      mids: per block inner width (default: the stage width).
      select: the head's kept channels of the last stage (``None``: all).
      scored: create the ``"arch"`` scores.
      dtype: computation dtype.

    Call: ``model.apply(variables, x, train=False)``, ``x`` ``(B, H, W, C_in)``; logits.
    """

    num_classes: int = 10
    stages: tuple[int, ...] = (16, 32, 64)
    blocks: tuple[int, ...] = (1, 1, 1)
    strides: tuple[int, ...] = (1, 2, 2)
    stem: int = 16
    mids: tuple[int, ...] | None = None
    select: tuple[int, ...] | None = None
    scored: bool = True
    dtype: Any = None

    def _specs(self) -> list[tuple[str, int, int, int]]:
        """``(name, mid, out, stride)`` per block."""
        if not (len(self.stages) == len(self.blocks) == len(self.strides)) or not self.stages:
            raise ValueError("PreActResNet: stages, blocks and strides need one entry per stage")
        if min(*self.stages, *self.blocks, *self.strides, self.stem) < 1:
            raise ValueError("PreActResNet: widths, block counts and strides must be >= 1")
        specs = []
        for s, (width, n, stride) in enumerate(zip(self.stages, self.blocks, self.strides)):
            for b in range(n):
                specs.append([f"stage{s + 1}_{b}", width, width, stride if b == 0 else 1])
        if self.mids is not None:
            if len(self.mids) != len(specs) or min(self.mids) < 1:
                raise ValueError(f"PreActResNet: mids needs {len(specs)} widths >= 1")
            for sp, m in zip(specs, self.mids):
                sp[1] = m
        if self.select is not None:
            s = np.asarray(self.select)
            if s.size == 0 or s.min() < 0 or s.max() >= self.stages[-1] or len(set(s)) != s.size:
                raise ValueError(f"PreActResNet: select must index [0, {self.stages[-1]})")
        return [tuple(sp) for sp in specs]

    def channel_groups(self) -> tuple[prunable.ChannelGroup, ...]:
        """``stage{s}_{b}.mid`` per block, then ``final`` (a selection)."""
        groups = [
            prunable.ChannelGroup(
                f"{name}.mid",
                mid,
                prunable.conv_out((name, "conv1")) + prunable.bn_slices((name, "bn2")),
                prunable.conv_in((name, "conv2")),
            )
            for name, mid, _, _ in self._specs()
        ]
        n_final = self.stages[-1] if self.select is None else len(self.select)
        groups.append(
            prunable.ChannelGroup(
                "final", n_final, prunable.bn_slices(("bn",)), prunable.dense_in(("fc",)), True
            )
        )
        return tuple(groups)

    def pruned(self, keep: Mapping[str, Sequence[int]]) -> PreActResNet:
        """The network keeping channels ``keep[group]`` (indices into the current group)."""
        keep = prunable.normalize_keep(self.channel_groups(), keep)
        mids = tuple(len(keep[f"{name}.mid"]) for name, *_ in self._specs())
        current = tuple(range(self.stages[-1])) if self.select is None else self.select
        select = tuple(current[i] for i in keep["final"])
        if select == tuple(range(self.stages[-1])):
            select = None
        return self.clone(mids=mids, select=select)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        specs = self._specs()
        a = prunable.score_variables(self, self.channel_groups(), self.scored)
        h = conv(self.stem, 3, name="stem", dtype=self.dtype)(x)
        for name, mid, out, stride in specs:
            h = PreActBlock(mid, out, stride, self.dtype, name=name)(h, a[f"{name}.mid"], train)
        if self.select is not None:
            h = jnp.take(h, np.asarray(self.select, np.int32), axis=-1)
        h = scale_channels(nn.relu(batch_norm(train, name="bn")(h)), a["final"])
        h = jnp.mean(h, axis=(1, 2))
        return nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(h)
