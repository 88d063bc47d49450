"""ResNet-18 for CIFAR-10 (He et al., 2016), with prunable block-internal widths.

The backbone of BayesNAS App. B.2.2: a 3x3 stem conv (64), four stages of two basic
blocks (64, 128, 256, 512 channels; stride 2 and a 1x1 projection at the first block
of stages 2-4), global average pooling and a dense classifier: "in addition to the
input conv layer and output fc layer, the other 16 conv layers are separated into 8
blocks with 2 layers each".  BN after every conv (ReLU after the first BN of a block
and after the residual addition); PyTorch's BN (:class:`jaxnas.ops.BatchNorm`).

Pruning a filter of a block's *first* conv removes a channel that only that block
reads (its second conv's input), so it shrinks the network physically: ``mids`` holds
the 8 internal widths of a pruned twin.  The second conv's filters write into the
residual stream, which other blocks read; dead filters there stay zeros (reported as
sparsity), as do shape-wise zeros.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from jaxnas.models.prunable import ChannelGroup, Slice, bn_slices, normalize_keep
from jaxnas.ops import BatchNorm

__all__ = ["ResNet18"]

STAGES = (64, 128, 256, 512)


class _Block(nn.Module):
    mid: int
    out: int
    stride: int

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
        bn = dict(use_running_average=not train)  # PyTorch's defaults
        y = nn.Conv(self.mid, (3, 3), self.stride, padding=1, use_bias=False, name="conv1")(x)
        y = nn.relu(BatchNorm(name="bn1", **bn)(y))
        y = nn.Conv(self.out, (3, 3), padding=1, use_bias=False, name="conv2")(y)
        y = BatchNorm(name="bn2", **bn)(y)
        if self.stride != 1 or x.shape[-1] != self.out:
            x = nn.Conv(self.out, (1, 1), self.stride, use_bias=False, name="proj_conv")(x)
            x = BatchNorm(name="proj_bn", **bn)(x)
        return nn.relu(x + y)


class ResNet18(nn.Module):
    """CIFAR ResNet-18; ``mids``: the 8 block-internal widths (``None``: dense widths).

    Call: ``model.apply(variables, x, train=...)`` with ``x`` of shape ``(B, 32, 32, 3)``.
    """

    num_classes: int = 10
    mids: tuple[int, ...] | None = None
    width: int = 64  # stem width; the stages are width * (1, 2, 4, 8)

    def _mids(self) -> tuple[int, ...]:
        if self.mids is not None:
            if len(self.mids) != 8:
                raise ValueError(f"ResNet18 needs 8 internal widths, got {len(self.mids)}")
            return tuple(self.mids)
        return tuple(self.width * s // 64 for s in STAGES for _ in range(2))

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        bn = dict(use_running_average=not train)  # PyTorch's defaults
        x = nn.Conv(self.width, (3, 3), padding=1, use_bias=False, name="stem")(x)
        x = nn.relu(BatchNorm(name="stem_bn", **bn)(x))
        mids = self._mids()
        for i in range(8):
            out = self.width * STAGES[i // 2] // 64
            stride = 2 if i % 2 == 0 and i > 0 else 1
            x = _Block(mids[i], out, stride, name=f"block{i}")(x, train)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, name="fc")(x)

    def layer_names(self) -> tuple[str, ...]:
        """Every conv / dense layer (paths joined by ``/``), forward order."""
        names = ["stem"]
        for i in range(8):
            names += [f"block{i}/conv1", f"block{i}/conv2"]
            if i in (2, 4, 6):
                names.append(f"block{i}/proj_conv")
        return (*names, "fc")

    def bn_of(self) -> dict[str, str]:
        """The BN that follows each conv layer (its channels die with the filters)."""
        out = {"stem": "stem_bn"}
        for i in range(8):
            out[f"block{i}/conv1"] = f"block{i}/bn1"
            out[f"block{i}/conv2"] = f"block{i}/bn2"
            if i in (2, 4, 6):
                out[f"block{i}/proj_conv"] = f"block{i}/proj_bn"
        return out

    def channel_groups(self) -> tuple[ChannelGroup, ...]:
        """One group per block: the first conv's filters (and BN), read by the second."""
        return tuple(
            ChannelGroup(
                f"block{i}",
                m,
                (
                    Slice("params", (f"block{i}", "conv1", "kernel"), 3),
                    *bn_slices((f"block{i}", "bn1")),
                ),
                (Slice("params", (f"block{i}", "conv2", "kernel"), 2),),
            )
            for i, m in enumerate(self._mids())
        )

    def link(self, alive: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(alive)

    def pruned(self, keep: Mapping[str, Sequence[int]]) -> ResNet18:
        full = normalize_keep(self.channel_groups(), keep)
        return self.clone(mids=tuple(len(full[f"block{i}"]) for i in range(8)))

    def architecture(self) -> str:
        """The 8 internal widths, e.g. ``"64-64-128-128-256-256-512-512"``."""
        return "-".join(str(m) for m in self._mids())
