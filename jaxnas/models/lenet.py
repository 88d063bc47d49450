"""LeNet-300-100 and LeNet-5 (Caffe variant), with the widths of a pruned twin as fields.

The networks of BayesNAS App. B.2 / Tables S4-S5 (and of the Bayesian-compression
papers they compare with: Louizos et al. 2017, Neklyudov et al. 2017):

* **LeNet-300-100**: ``784 -> 300 -> 100 -> 10``, ReLU, no biases pruned away; the
  pruned architecture is written ``"in-h1-h2"`` (Table S4: ``784-300-100`` dense,
  ``465-37-90`` BayesNAS), where ``in`` counts the input pixels that are still read.
* **LeNet-5-Caffe**: ``conv 5x5 x20 -> maxpool 2 -> conv 5x5 x50 -> maxpool 2 ->
  flatten (4*4*50 = 800) -> dense 500 -> dense 10``, VALID convs, ReLU after the convs
  and the hidden dense layer; written ``"c1-c2-f-h"`` (Table S5: ``20-50-800-500``
  dense, ``5-10-65-25`` BayesNAS), where ``f`` counts the flattened features still
  read by the hidden dense layer.

A pruned twin reads only some inputs: ``input_index`` (LeNet-300-100, indices into the
784 flattened pixels) and ``flat_index`` (LeNet-5, indices into the ``4*4*c2``
flattened features of the pruned second conv) are static gathers stored in the
module's fields.  :meth:`channel_groups` names the prunable units for
:func:`jaxnas.width.surgery.slice_variables` (``jaxnas.models.prunable.ChannelGroup``
with ``producers`` = the kernel axis and bias that create a unit, ``consumers`` =
the next kernel's axis that reads it) and :meth:`pruned` builds the twin.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from jaxnas.models.prunable import ChannelGroup, Slice, normalize_keep

__all__ = ["LeNet300", "LeNet5"]


def _producer(layer: str, axis: int) -> tuple[Slice, ...]:
    return (Slice("params", (layer, "kernel"), axis), Slice("params", (layer, "bias"), 0))


def _consumer(layer: str, axis: int) -> tuple[Slice, ...]:
    return (Slice("params", (layer, "kernel"), axis),)


class LeNet300(nn.Module):
    """Multi-layer perceptron ``in -> hidden[0] -> hidden[1] -> num_classes``.

    Attributes:
      hidden: hidden widths (300, 100).
      num_classes: outputs.
      num_inputs: flattened input size of the dense network (784 for 28x28x1).
      input_index: kept input pixels (pruned twin), ``None``: all.
    """

    hidden: tuple[int, ...] = (300, 100)
    num_classes: int = 10
    num_inputs: int = 784
    input_index: tuple[int, ...] | None = None

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        """``x``: ``(B, H, W, C)`` (or ``(B, in)``) -> logits ``(B, num_classes)``."""
        del train
        x = x.reshape(x.shape[0], -1)
        if x.shape[1] != self.num_inputs:
            raise ValueError(f"LeNet300 expects {self.num_inputs} inputs, got {x.shape[1]}")
        if self.input_index is not None:
            x = x[:, np.asarray(self.input_index, np.int32)]
        for i, width in enumerate(self.hidden):
            x = nn.relu(nn.Dense(width, name=f"fc{i + 1}")(x))
        return nn.Dense(self.num_classes, name=f"fc{len(self.hidden) + 1}")(x)

    # -- structure used by jaxnas.bayes_compress ------------------------------------------
    def layer_names(self) -> tuple[str, ...]:
        """Weight layers in forward order (the last one is the classifier)."""
        return tuple(f"fc{i + 1}" for i in range(len(self.hidden) + 1))

    def n_in(self) -> int:
        return self.num_inputs if self.input_index is None else len(self.input_index)

    def channel_groups(self) -> tuple[ChannelGroup, ...]:
        """``input`` (pixels read by ``fc1``) and one group per hidden layer."""
        names = self.layer_names()
        groups = [ChannelGroup("input", self.n_in(), (), _consumer(names[0], 0), select=True)]
        for i, width in enumerate(self.hidden):
            groups.append(
                ChannelGroup(names[i], width, _producer(names[i], 1), _consumer(names[i + 1], 0))
            )
        return tuple(groups)

    def link(self, alive: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Cross-group liveness constraints (none for an MLP)."""
        return dict(alive)

    def pruned(self, keep: Mapping[str, Sequence[int]]) -> LeNet300:
        """The twin keeping ``keep[group]`` units (groups not listed stay whole)."""
        full = normalize_keep(self.channel_groups(), keep)
        base = np.arange(self.num_inputs) if self.input_index is None else self.input_index
        idx = tuple(int(base[i]) for i in full["input"])
        hidden = tuple(len(full[n]) for n in self.layer_names()[:-1])
        whole = self.input_index is None and len(idx) == self.num_inputs
        return self.clone(hidden=hidden, input_index=None if whole else idx)

    def architecture(self) -> str:
        """``"in-h1-h2"`` as in Table S4."""
        return "-".join(str(w) for w in (self.n_in(), *self.hidden))


class LeNet5(nn.Module):
    """LeNet-5-Caffe: ``conv(c1) -> pool -> conv(c2) -> pool -> [flat] -> dense(h) -> 10``.

    Attributes:
      conv: the two conv widths (20, 50).
      hidden: the hidden dense width (500).
      num_classes: outputs.
      flat_index: kept flattened features (pruned twin), ``None``: all ``4*4*c2``.
    """

    conv: tuple[int, int] = (20, 50)
    hidden: int = 500
    num_classes: int = 10
    flat_index: tuple[int, ...] | None = None

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        """``x``: ``(B, 28, 28, 1)`` -> logits ``(B, num_classes)``."""
        del train
        for i, width in enumerate(self.conv):
            x = nn.Conv(width, (5, 5), padding="VALID", name=f"conv{i + 1}")(x)
            x = nn.max_pool(nn.relu(x), (2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)  # (h, w, c) order
        if self.flat_index is not None:
            x = x[:, np.asarray(self.flat_index, np.int32)]
        x = nn.relu(nn.Dense(self.hidden, name="fc1")(x))
        return nn.Dense(self.num_classes, name="fc2")(x)

    def layer_names(self) -> tuple[str, ...]:
        return ("conv1", "conv2", "fc1", "fc2")

    def n_flat(self, spatial: int = 16) -> int:
        return spatial * self.conv[1] if self.flat_index is None else len(self.flat_index)

    def channel_groups(self) -> tuple[ChannelGroup, ...]:
        """``conv1``, ``conv2`` (filters), ``flat`` (features read by ``fc1``), ``fc1``.

        ``conv2``'s channels reach ``fc1`` through the flatten, i.e. along strided rows
        of ``fc1``'s kernel: that link is :meth:`link`'s, and slicing ``fc1``'s rows is
        the ``flat`` group's (so every kernel axis is sliced by one group).
        """
        c1, c2 = self.conv
        return (
            ChannelGroup("conv1", c1, _producer("conv1", 3), _consumer("conv2", 2)),
            ChannelGroup("conv2", c2, _producer("conv2", 3), ()),
            ChannelGroup("flat", self.n_flat(), (), _consumer("fc1", 0), select=True),
            ChannelGroup("fc1", self.hidden, _producer("fc1", 1), _consumer("fc2", 0)),
        )

    def flat_channels(self) -> np.ndarray:
        """Channel of conv2 that each (kept) flattened feature comes from."""
        c2 = self.conv[1]
        chan = np.tile(np.arange(c2), 16)  # flatten of (4, 4, c2): channel fastest
        return chan if self.flat_index is None else chan[np.asarray(self.flat_index)]

    def link(self, alive: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """A feature lives only if its channel does; a channel only if a feature is read."""
        out = dict(alive)
        chan = self.flat_channels()
        out["flat"] = alive["flat"] & alive["conv2"][chan]
        read = np.zeros(self.conv[1], bool)
        np.logical_or.at(read, chan, out["flat"])
        out["conv2"] = alive["conv2"] & read
        return out

    def pruned(self, keep: Mapping[str, Sequence[int]]) -> LeNet5:
        """The twin keeping ``keep[group]``; ``keep["flat"]`` must only hold features of
        kept ``conv2`` channels (as :meth:`link` guarantees)."""
        full = normalize_keep(self.channel_groups(), keep)
        chan = self.flat_channels()
        base = np.arange(16 * self.conv[1]) if self.flat_index is None else self.flat_index
        kept_c2 = np.asarray(full["conv2"])
        new_pos = -np.ones(self.conv[1], np.int64)  # old channel -> new channel index
        new_pos[kept_c2] = np.arange(len(kept_c2))
        flat = []
        for f in full["flat"]:
            c = chan[f]
            if new_pos[c] < 0:
                raise ValueError(f"flat feature {f} reads pruned conv2 channel {c}")
            spatial = int(base[f]) // self.conv[1]
            flat.append(spatial * len(kept_c2) + int(new_pos[c]))
        n_new = 16 * len(kept_c2)
        flat_index = None if flat == list(range(n_new)) else tuple(flat)
        return self.clone(
            conv=(len(full["conv1"]), len(kept_c2)), hidden=len(full["fc1"]), flat_index=flat_index
        )

    def architecture(self) -> str:
        """``"c1-c2-f-h"`` as in Table S5."""
        return f"{self.conv[0]}-{self.conv[1]}-{self.n_flat()}-{self.hidden}"
