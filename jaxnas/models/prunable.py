"""Prunable channel groups as data: which tensors one channel-score vector controls.

Width search (F. Xue, PhD thesis, UC Irvine 2022, Sec. 4.2) gives every prunable
channel ``i`` a scalar score ``alpha_i`` that multiplies its feature map,

    X~^i = alpha_i X^i                                                  (thesis Eq. 4.1)

A :class:`ChannelGroup` is one score vector ``alpha`` (shape ``(size,)``, the
``"arch"`` entry named ``group.name``) together with every variable axis that is
indexed by the same channels:

* ``producers``: the leaves whose ``axis`` *creates* the channels (a conv kernel's
  output axis, the BN scale / bias / running mean / running variance, a depthwise
  kernel's channel axis);
* ``consumers``: the kernels that *read* ``alpha * X`` (a conv kernel's input axis, a
  dense kernel's row axis).  They follow ``alpha`` through linear maps only (at most a
  global average pool), so ``alpha`` can be folded into them exactly.

Pruning a set of channels of a group is then generic: take the kept indices along
every listed axis (:mod:`jaxnas.width.surgery`); the model's ``pruned(keep)`` gives the
matching smaller module.  A ``select`` group scores channels of a tensor that stays
whole elsewhere (the residual stream of a pre-activation ResNet, as Network Slimming's
channel-selection layer): pruning it records the kept channel indices in the model
config (a static gather) instead of shrinking the tensor's producer.

Every network that can be cut down implements :class:`Prunable`: the width-search
networks of :mod:`jaxnas.width` and the BayesNAS compression networks
(:mod:`jaxnas.models.lenet`, :mod:`jaxnas.models.resnet18`).  It lives here, below
both, so that a model never imports the width search (the import contract in
``pyproject.toml``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import jax.numpy as jnp
import numpy as np

__all__ = [
    "ChannelGroup",
    "Prunable",
    "Slice",
    "bn_slices",
    "check_groups",
    "conv_in",
    "conv_out",
    "dense_in",
    "depthwise_channels",
    "get_leaf",
    "normalize_keep",
    "score_variables",
    "set_leaf",
]


@dataclasses.dataclass(frozen=True)
class Slice:
    """One axis of one variable: ``variables[collection][path...]`` along ``axis``."""

    collection: str
    path: tuple[str, ...]
    axis: int


@dataclasses.dataclass(frozen=True)
class ChannelGroup:
    """One score vector and the variable axes its channels index (see the module doc).

    Attributes:
      name: the ``"arch"`` key of the score vector (e.g. ``"layer1_0.mid1"``).
      size: number of channels (the length of ``alpha``).
      producers: axes that create the channels (sliced by pruning).
      consumers: kernel axes that read ``alpha * X`` (sliced by pruning; ``alpha``
        folds into them).
      select: ``True`` for a channel selection of a tensor kept whole elsewhere.
      fold: the axes :func:`jaxnas.width.surgery.fold_scores` multiplies the score into
        (default ``None``: the consumers).  A score that is followed by a nonlinearity
        (SiDT's MLP score, before GELU) or by attention (SiDT's head-dimension score)
        folds into its producers instead (:mod:`jaxnas.width.attention`).
    """

    name: str
    size: int
    producers: tuple[Slice, ...]
    consumers: tuple[Slice, ...]
    select: bool = False
    fold: tuple[Slice, ...] | None = None

    @property
    def fold_slices(self) -> tuple[Slice, ...]:
        """The axes the score folds into: ``fold``, else the consumers."""
        return self.consumers if self.fold is None else self.fold

    @property
    def score(self) -> Slice:
        """The score vector itself, ``variables["arch"][name]``."""
        return Slice("arch", (self.name,), 0)

    @property
    def slices(self) -> tuple[Slice, ...]:
        """Every axis pruning slices: producers, consumers and the score vector."""
        return (*self.producers, *self.consumers, self.score)


class Prunable(Protocol):
    """A Flax width model whose output channels can be scored and pruned.

    ``channel_groups()`` lists its groups (pure Python on the config: no init);
    ``pruned(keep)`` returns the same family with the kept widths, where ``keep`` maps
    a group name to the sorted kept channel indices (groups not in ``keep`` stay whole).
    Called as ``model.apply(variables, x, train=...)``.  The models are Flax modules
    with a ``scored`` field (``clone(scored=False)``: the same network without
    ``"arch"``, as :func:`jaxnas.width.surgery.fold_scores` returns).
    """

    scored: bool

    def channel_groups(self) -> tuple[ChannelGroup, ...]: ...

    def pruned(self, keep: Mapping[str, Sequence[int]]) -> Prunable: ...


# ---------------------------------------------------------------------------- slice builders


def conv_out(path: Sequence[str]) -> tuple[Slice, ...]:
    """Output channels of an ``nn.Conv`` (HWIO kernel, axis 3)."""
    return (Slice("params", (*path, "kernel"), 3),)


def conv_in(path: Sequence[str]) -> tuple[Slice, ...]:
    """Input channels of an ``nn.Conv`` (HWIO kernel, axis 2)."""
    return (Slice("params", (*path, "kernel"), 2),)


def dense_in(path: Sequence[str]) -> tuple[Slice, ...]:
    """Input features of an ``nn.Dense`` (kernel ``(in, out)``, axis 0)."""
    return (Slice("params", (*path, "kernel"), 0),)


def depthwise_channels(path: Sequence[str]) -> tuple[Slice, ...]:
    """Channels of a :class:`jaxnas.ops.DepthwiseConv` (kernel ``(k, k, C)``, axis 2)."""
    return (Slice("params", (*path, "kernel"), 2),)


def bn_slices(path: Sequence[str]) -> tuple[Slice, ...]:
    """A BatchNorm's scale and bias (``"params"``) and running mean / var (``"batch_stats"``)."""
    path = tuple(path)
    return (
        Slice("params", (*path, "scale"), 0),
        Slice("params", (*path, "bias"), 0),
        Slice("batch_stats", (*path, "mean"), 0),
        Slice("batch_stats", (*path, "var"), 0),
    )


# ---------------------------------------------------------------------------- pytrees


def get_leaf(variables: Mapping[str, Any], collection: str, path: Sequence[str]) -> Any:
    """``variables[collection][path[0]]...[path[-1]]``; ValueError naming the missing key."""
    node: Any = variables
    for key in (collection, *path):
        if not isinstance(node, Mapping) or key not in node:
            raise ValueError(f"variables have no {collection}/{'/'.join(path)} (missing {key!r})")
        node = node[key]
    return node


def set_leaf(variables: Mapping[str, Any], collection: str, path: Sequence[str], value: Any):
    """A copy of nested dicts ``variables`` with one leaf replaced (inputs are not mutated)."""
    keys = (collection, *path)

    def rec(node: Mapping[str, Any], i: int) -> dict[str, Any]:
        out = dict(node)
        out[keys[i]] = value if i == len(keys) - 1 else rec(node[keys[i]], i + 1)
        return out

    get_leaf(variables, collection, path)  # clear error on a bad path
    return rec(variables, 0)


def check_groups(groups: Sequence[ChannelGroup], variables: Mapping[str, Any]) -> None:
    """Check that every slice of every group exists and has ``group.size`` entries.

    ``variables`` may hold arrays or ``jax.ShapeDtypeStruct`` s (from ``jax.eval_shape``).
    Collections absent from ``variables`` (e.g. ``"arch"`` of an unscored model, or
    ``"batch_stats"`` of params alone) are skipped.

    Raises:
      ValueError: a missing leaf, a duplicate group name, or a size mismatch.
    """
    seen: set[str] = set()
    for g in groups:
        if g.name in seen:
            raise ValueError(f"duplicate channel group {g.name!r}")
        seen.add(g.name)
        for s in g.slices:
            if s.collection not in variables:
                continue
            shape = np.shape(get_leaf(variables, s.collection, s.path))
            if not -len(shape) <= s.axis < len(shape) or shape[s.axis] != g.size:
                raise ValueError(
                    f"group {g.name!r}: {s.collection}/{'/'.join(s.path)} has shape {shape}, "
                    f"expected {g.size} along axis {s.axis}"
                )


def score_variables(
    module: Any, groups: Sequence[ChannelGroup], scored: bool = True
) -> dict[str, Any]:
    """Create (or read) one ``"arch"`` vector per group inside ``module`` (a compact call).

    Scores start at 1, so a scored network computes what its unscored twin computes
    (thesis Sec. 4.2 gives no initialisation; the code it refers to for SiDT uses ones).
    Returns ``{group name: alpha}``; ``scored=False``: ``{group name: None}`` and no
    variable (the plain network).
    """
    if not scored:
        return {g.name: None for g in groups}
    return {
        g.name: module.variable("arch", g.name, lambda n=g.size: jnp.ones((n,), jnp.float32)).value
        for g in groups
    }


def normalize_keep(
    groups: Sequence[ChannelGroup], keep: Mapping[str, Sequence[int]]
) -> dict[str, tuple[int, ...]]:
    """Validate a keep map and return ``{name: sorted kept indices}`` for *every* group.

    Groups missing from ``keep`` keep all their channels.

    Raises:
      ValueError: an unknown group name, an index out of range or repeated, or a group
        left with no channel (a layer with zero channels would not be a network).
    """
    by_name = {g.name: g for g in groups}
    unknown = sorted(set(keep) - set(by_name))
    if unknown:
        raise ValueError(f"unknown channel group(s) {unknown}; known: {sorted(by_name)}")
    out: dict[str, tuple[int, ...]] = {}
    for g in groups:
        if g.name not in keep:
            out[g.name] = tuple(range(g.size))
            continue
        idx = np.asarray(keep[g.name]).reshape(-1)
        if idx.size and not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"group {g.name!r}: kept indices must be integers, got {idx.dtype}")
        idx = idx.astype(np.int64)
        if idx.size == 0:
            raise ValueError(f"group {g.name!r}: keeps no channel (keep at least 1)")
        if idx.min() < 0 or idx.max() >= g.size or len(np.unique(idx)) != idx.size:
            raise ValueError(
                f"group {g.name!r}: kept indices must be distinct and in [0, {g.size}), "
                f"got {idx.tolist()}"
            )
        out[g.name] = tuple(int(i) for i in np.sort(idx))
    return out
