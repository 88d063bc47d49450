"""Pruning by channel scores, and surgery that builds the physically smaller network.

Thesis Algorithm 3, pruning stage (F. Xue, PhD thesis, UC Irvine 2022, Sec. 4.2):
"sort the alpha and prune the corresponding channels according to the ratio m".

1. :func:`choose_channels` ranks ``|alpha|`` and returns the kept channel indices of
   every group (:class:`~jaxnas.models.prunable.ChannelGroup`):

   * ``ratio=m, scope="global"``: one ranking over all prunable channels; the
     ``floor(m N)`` smallest ``|alpha|`` go (``N`` = channels of the prunable groups).
     This is NetSlim's single threshold and what the thesis's tables imply (its
     per-layer widths differ; see the digest, Sec. 8.12).
   * ``ratio=m, scope="layer"``: ``floor(m n_g)`` smallest of each group ``g``.
   * ``ratio=None``: keep the non-zero scores (the learned ratio of the MobileNetV2
     ablation, thesis Table 4.2, with exact zeros from :func:`jaxnas.optim.l1_prox`).

   **No group loses every channel**: at least ``min_keep`` (default 1) stay in each
   group.  In global scope the ranking then moves on to the next smallest score in
   another group, so exactly ``floor(m N)`` channels still go (ValueError where that
   is impossible); in layer scope a group's count is capped at ``n_g - min_keep``;
   with ``ratio=None`` an all-zero group keeps its first ``min_keep`` channels.
   **Ties** (equal ``|alpha|``) go in group order, then channel order: the earlier
   channel is pruned first (a stable sort).

2. :func:`prune` slices every producer, consumer and score axis of every group to the
   kept channels (conv kernels, BN scale / bias / running mean / variance, depthwise
   kernels, the next layers' input channels, ``alpha``) and returns the model's
   ``pruned(keep)`` twin: a network with fewer channels, not a mask.  With the pruned
   scores set to 0 (:func:`mask_scores`), the full network computes the same function
   as the sliced one, in inference and in training mode.

3. Scores for the baselines: :func:`bn_scale_scores` (Network Slimming ranks BN
   scales) and :func:`random_scores` (random pruning).

4. :func:`fold_scores` multiplies each score into the kernel that reads it (exact: the
   score follows the last nonlinearity) and returns the unscored network, e.g. for
   fine-tuning the weights alone; :func:`network_size` counts parameters and
   multiply-adds (:mod:`jaxnas.models.summary` conventions: ``"params"`` only, so the
   scores are not parameters; conv + dense MACs of one image).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas.models.prunable import (
    ChannelGroup,
    Prunable,
    check_groups,
    get_leaf,
    normalize_keep,
    set_leaf,
)
from jaxnas.models.summary import count_macs, count_params

__all__ = [
    "bn_scale_scores",
    "choose_channels",
    "fold_scores",
    "kept_widths",
    "mask_scores",
    "network_size",
    "prune",
    "pruning_summary",
    "random_scores",
    "slice_variables",
]

_EPS = 1e-9  # floor(m N) without float noise: floor(0.29 * 100) must be 29


def _on_host(np_fn, jnp_fn, *arrays):
    """Surgery is a one-off with static indices: run it in numpy (an eager jnp op per leaf
    shape would compile one XLA program each), or in jnp when traced (under ``jit``)."""
    if any(isinstance(a, jax.core.Tracer) for a in arrays):
        return jnp_fn(*arrays)
    return jnp.asarray(np_fn(*(np.asarray(a) for a in arrays)))


def _scores(arch: Mapping[str, Any], g: ChannelGroup) -> np.ndarray:
    if g.name not in arch:
        raise ValueError(f"arch has no scores for channel group {g.name!r}")
    a = np.abs(np.asarray(arch[g.name], np.float64)).reshape(-1)
    if a.shape != (g.size,):
        raise ValueError(f"arch[{g.name!r}] has {a.size} scores, the group has {g.size} channels")
    return a


def _order(scores: np.ndarray) -> np.ndarray:
    """Ascending ``|alpha|``; ties by index (stable)."""
    return np.argsort(scores, kind="stable")


def choose_channels(
    arch: Mapping[str, Any],
    groups: Sequence[ChannelGroup],
    *,
    ratio: float | None = None,
    scope: str = "global",
    min_keep: int = 1,
    prunable: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """Kept channel indices per group from the scores ``|alpha|`` (see the module doc).

    Args:
      arch: the ``"arch"`` collection, ``{group name: alpha (size,)}``.
      groups: the model's ``channel_groups()``.
      ratio: fraction ``m`` in ``[0, 1]`` of channels to prune, or ``None`` to keep the
        channels with ``alpha != 0``.
      scope: ``"global"`` (one ranking) or ``"layer"`` (each group on its own).
      min_keep: channels every group keeps at least (``>= 1``).
      prunable: names of the groups that may be pruned (default all); the others keep
        every channel and do not count in ``N``.

    Returns:
      ``{group name: sorted int64 array of kept indices}`` for every group.
    """
    if scope not in ("global", "layer"):
        raise ValueError(f"scope must be 'global' or 'layer', got {scope!r}")
    if ratio is not None and not 0.0 <= float(ratio) <= 1.0:
        raise ValueError(f"ratio must be in [0, 1] (or None: keep the non-zeros), got {ratio}")
    if int(min_keep) != min_keep or min_keep < 1:
        raise ValueError(f"min_keep must be an integer >= 1 (no layer may vanish), got {min_keep}")
    names = [g.name for g in groups]
    chosen = set(names) if prunable is None else set(prunable)
    unknown = sorted(chosen - set(names))
    if unknown:
        raise ValueError(f"unknown channel group(s) {unknown}; known: {names}")
    scores = {g.name: _scores(arch, g) for g in groups}
    pruned: dict[str, np.ndarray] = {g.name: np.zeros(g.size, bool) for g in groups}
    active = [g for g in groups if g.name in chosen]

    if ratio is None:
        for g in active:
            s = scores[g.name]
            drop = s == 0
            if g.size - drop.sum() < min_keep:  # all (or nearly all) zero: keep the first
                drop[np.sort(np.argsort(-s, kind="stable")[:min_keep])] = False
            pruned[g.name] = drop
    elif scope == "layer":
        for g in active:
            n = min(math.floor(ratio * g.size + _EPS), max(g.size - min_keep, 0))
            pruned[g.name][_order(scores[g.name])[:n]] = True
    else:
        total = sum(g.size for g in active)
        target = math.floor(ratio * total + _EPS)
        if not active:
            return {g.name: np.arange(g.size) for g in groups}
        flat = np.concatenate([scores[g.name] for g in active])
        gid = np.concatenate([np.full(g.size, i) for i, g in enumerate(active)])
        idx = np.concatenate([np.arange(g.size) for g in active])
        left = [g.size for g in active]
        done = 0
        for k in np.lexsort((idx, gid, flat)):  # |alpha|, then group order, then channel
            if done == target:
                break
            if left[gid[k]] > min_keep:
                pruned[active[gid[k]].name][idx[k]] = True
                left[gid[k]] -= 1
                done += 1
        if done < target:
            raise ValueError(
                f"cannot prune {target} of {total} channels keeping min_keep={min_keep} per "
                f"group ({len(active)} groups): at most {done} (lower the ratio)"
            )
    return {g.name: np.flatnonzero(~pruned[g.name]) for g in groups}


def bn_scale_scores(
    variables: Mapping[str, Any], groups: Sequence[ChannelGroup]
) -> dict[str, np.ndarray]:
    """Network Slimming's channel scores: the scale of each group's last BN.

    The last BN among a group's producers is the one right before its score vector
    (PreResNet: ``bn1``, ``bn2``, ``bn3`` of each block and the final ``bn``, exactly
    the BN layers NetSlim ranks; MobileNetV2: ``dw_bn`` and ``last_bn``).  Pass the
    result to :func:`choose_channels` in place of ``variables["arch"]``.
    """
    out = {}
    for g in groups:
        scales = [s for s in g.producers if s.collection == "params" and s.path[-1] == "scale"]
        if not scales:
            raise ValueError(f"group {g.name!r} has no BatchNorm scale among its producers")
        out[g.name] = np.asarray(get_leaf(variables, "params", scales[-1].path))
    return out


def random_scores(groups: Sequence[ChannelGroup], seed: int) -> dict[str, np.ndarray]:
    """Uniform random scores (the random-pruning baseline, thesis Table 4.2): ranked by
    :func:`choose_channels` they pick channels uniformly at random; same seed, same pick."""
    rng = np.random.default_rng(seed)
    return {g.name: rng.uniform(size=g.size) for g in groups}


def kept_widths(
    groups: Sequence[ChannelGroup], keep: Mapping[str, Sequence[int]]
) -> dict[str, tuple[int, int]]:
    """``{group name: (kept, total)}`` (for tables and the kept-width plot)."""
    full = normalize_keep(groups, keep)
    return {g.name: (len(full[g.name]), g.size) for g in groups}


def mask_scores(
    arch: Mapping[str, Any], groups: Sequence[ChannelGroup], keep: Mapping[str, Sequence[int]]
) -> dict[str, Any]:
    """The scores with every pruned channel set to 0 (the *masked* network's ``"arch"``)."""
    full = normalize_keep(groups, keep)
    out = dict(arch)
    for g in groups:
        mask = np.zeros(g.size, bool)
        mask[list(full[g.name])] = True
        out[g.name] = _on_host(
            lambda a, m=mask: np.where(m, a, np.zeros_like(a)),
            lambda a, m=mask: jnp.where(m, a, jnp.zeros_like(a)),
            arch[g.name],
        )
    return out


def _check_disjoint(groups: Sequence[ChannelGroup]) -> None:
    seen: dict[tuple[str, tuple[str, ...], int], str] = {}
    for g in groups:
        for s in g.slices:
            key = (s.collection, s.path, s.axis)
            if key in seen:
                raise ValueError(
                    f"groups {seen[key]!r} and {g.name!r} both slice "
                    f"{s.collection}/{'/'.join(s.path)} along axis {s.axis}"
                )
            seen[key] = g.name


def slice_variables(
    variables: Mapping[str, Any],
    groups: Sequence[ChannelGroup],
    keep: Mapping[str, Sequence[int]],
) -> dict[str, Any]:
    """Take the kept channels along every slice of every group (collections absent from
    ``variables`` are skipped).  Returns new nested dicts; the inputs are not changed."""
    full = normalize_keep(groups, keep)
    _check_disjoint(groups)
    check_groups(groups, variables)
    out: dict[str, Any] = dict(variables)
    for g in groups:
        idx = full[g.name]
        if len(idx) == g.size:
            continue
        take = np.asarray(idx, np.int32)
        for s in g.slices:
            if s.collection in out:
                leaf = _on_host(
                    lambda x, ax=s.axis, i=take: np.take(x, i, axis=ax),
                    lambda x, ax=s.axis, i=take: jnp.take(x, i, axis=ax),
                    get_leaf(out, s.collection, s.path),
                )
                out = set_leaf(out, s.collection, s.path, leaf)
    return out


def prune(
    model: Prunable, variables: Mapping[str, Any], keep: Mapping[str, Sequence[int]]
) -> tuple[Prunable, dict[str, Any]]:
    """Surgery: the smaller network ``model.pruned(keep)`` and its sliced variables.

    Args:
      model: a width model (:class:`~jaxnas.models.prunable.Prunable`).
      variables: its variables (``"params"``, ``"batch_stats"``, ``"arch"`` if scored).
      keep: ``{group name: kept channel indices}`` (e.g. from :func:`choose_channels`);
        groups not listed stay whole.

    Returns:
      ``(pruned_model, pruned_variables)``; ``pruned_model.apply(pruned_variables, x)``
      equals ``model.apply(variables with mask_scores(...), x)``.
    """
    groups = model.channel_groups()
    new_vars = slice_variables(variables, groups, keep)
    new_model = model.pruned(keep)
    check_groups(new_model.channel_groups(), new_vars)
    return new_model, new_vars


def fold_scores(model: Prunable, variables: Mapping[str, Any]) -> tuple[Prunable, dict[str, Any]]:
    """Fold each score into the kernels that read it; return the unscored network.

    Each score multiplies its channels after their last nonlinearity, and the channels
    reach their consumers only through linear maps (a conv, or a global average pool
    and a dense layer), so ``kernel[..., i, ...] *= alpha_i`` along the consumer's input
    axis is exact.  A group with ``fold`` set (a score before a nonlinearity, e.g.
    SiDT's) folds into those axes instead (its producers' kernel and bias).
    Returns ``(model.clone(scored=False), variables without "arch")``.
    """
    if "arch" not in variables:
        raise ValueError("fold_scores: variables have no 'arch' collection (unscored model?)")
    groups = model.channel_groups()
    check_groups(groups, variables)
    out = {k: v for k, v in variables.items() if k != "arch"}
    for g in groups:
        for s in g.fold_slices:
            leaf = get_leaf(out, s.collection, s.path)
            shape = [1] * np.ndim(leaf)
            shape[s.axis] = g.size
            folded = _on_host(
                lambda k, a, shape=shape: k * a.reshape(shape).astype(k.dtype),
                lambda k, a, shape=shape: k * a.reshape(shape).astype(k.dtype),
                leaf,
                variables["arch"][g.name],
            )
            out = set_leaf(out, s.collection, s.path, folded)
    return model.clone(scored=False), out


def network_size(
    model: Any, variables: Mapping[str, Any], input_shape: Sequence[int]
) -> dict[str, int]:
    """``{"params": ..., "macs": ...}`` of one image ``input_shape = (H, W, C)``, inference.

    Parameters are the ``"params"`` leaves (not the scores, not BN statistics);
    multiply-adds are conv, depthwise conv and dense layers
    (:func:`jaxnas.models.summary.count_macs`, traced with ``jax.eval_shape``).  A model
    with a ``macs(input_shape)`` method gives its own closed form instead (the vision
    transformers of :mod:`jaxnas.width.swin` / :mod:`jaxnas.width.vit`, whose attention
    products ``Q K^T`` and ``a V`` are no layer a tracer sees).
    """
    own = getattr(model, "macs", None)
    if callable(own):
        macs = int(own(tuple(input_shape)))
    else:
        shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype), variables)
        macs = count_macs(model, shapes, tuple(input_shape))
    return {"params": count_params(variables["params"]), "macs": macs}


def pruning_summary(
    model: Prunable,
    variables: Mapping[str, Any],
    keep: Mapping[str, Sequence[int]],
    input_shape: Sequence[int],
) -> dict[str, Any]:
    """Sizes before and after pruning, and the kept widths (a JSON-ready dict).

    Keys: ``channels`` / ``channels_kept`` (over all groups), ``pruned_ratio``
    (fraction of channels removed), ``params`` / ``params_after``, ``macs`` /
    ``macs_after``, ``widths`` (``{group: [kept, total]}``).
    """
    new_model, new_vars = prune(model, variables, keep)
    before = network_size(model, variables, input_shape)
    after = network_size(new_model, new_vars, input_shape)
    widths = kept_widths(model.channel_groups(), keep)
    total = sum(t for _, t in widths.values())
    kept = sum(k for k, _ in widths.values())
    return {
        "channels": total,
        "channels_kept": kept,
        "pruned_ratio": (total - kept) / total if total else 0.0,
        "params": before["params"],
        "params_after": after["params"],
        "macs": before["macs"],
        "macs_after": after["macs"],
        "widths": {k: list(v) for k, v in widths.items()},
    }
