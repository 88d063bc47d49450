"""Discrete DARTS networks built from a genotype, for retraining and evaluation.

Reference: ``model.py`` of the DARTS code (Liu et al., 2019): ``Cell``,
``NetworkCIFAR``, ``NetworkImageNet``, ``AuxiliaryHeadCIFAR``,
``AuxiliaryHeadImageNet`` and ``utils.drop_path``.  NHWC throughout.

Cell
----
A cell takes the outputs ``s0, s1`` of the two previous cells, preprocesses
them to ``C`` channels (``s0``: ``FactorizedReduce`` if the previous cell
halved the resolution, else ReLU-conv1x1-BN; ``s1``: ReLU-conv1x1-BN) and
computes every intermediate node ``k`` as the sum of its inputs

    h_k = sum_{(op, src) in nodes[k]} drop_path(op(h_src))

(``drop_path`` only in training and never after an ``Identity``, exactly as
``Cell.forward`` of the reference).  The output is the channel concatenation
of the nodes in ``concat``: ``(B, H', W', len(concat) * C)``.  In a reduction
cell, ops reading a cell input have stride 2.  Nodes may have any number of
inputs (DARTS: 2) and ``concat`` any subset of the nodes; each layer may use
its own cell (``Genotype.cells``, see :meth:`jaxnas.genotype.Genotype.cell_for_layer`).

Reduction positions
-------------------
The reduction cells (channels double, resolution halves) sit where the genotype
says (``Genotype.reductions``, e.g. ASM-NAS' ``(4, 9)`` of 15 cells), else at the
network's ``reductions`` setting, else at DARTS' ``layers // 3, 2 * layers // 3``
(:meth:`jaxnas.genotype.Genotype.reduction_cells`).  A setting that differs from the
genotype's positions is an error, never silently preferred.  The auxiliary head reads
the output of the last reduction cell (DARTS' ``2 * layers // 3`` at DARTS' positions).

Eval cells use ``affine=True`` BN and no BN after pooling ops (``OPS[name](C,
stride, True)`` in the reference).  The options ``affine=False, pool_bn=True``
build the ops exactly as the search network does; they exist to check that a
one-hot supernet and the discrete network compute the same function
(:func:`variables_from_supernet`, :class:`OneHotMixer`).

Drop path (``utils.drop_path``): per sample, ``x * m / keep`` with
``m ~ Bernoulli(keep)``, ``keep = 1 - drop_prob``, one mask entry per image
broadcast over ``(H, W, C)``.  The random bits come from the flax rng stream
``"dropout"``; ``drop_prob`` may be a traced scalar (one compiled step serves
the linear ramp over epochs) and must be ``< 1``.

Auxiliary heads (training only; their parameters live under
``auxiliary_head`` so :func:`jaxnas.models.summary.count_params` can leave
them out, like the reference's ``"auxiliary" not in name`` filter):

* CIFAR (``AuxiliaryHeadCIFAR``, input 8x8 at 2/3 depth): ReLU, 5x5 average
  pool with stride 3 and no padding (-> 2x2), conv1x1 128 + BN + ReLU,
  conv2x2 768 + BN + ReLU (-> 1x1), linear.
* ImageNet (``AuxiliaryHeadImageNet``): the same with pool stride 2 and *no*
  BN after the 2x2 conv (the reference comments it out to match the paper).

**Fashion-MNIST and other input sizes (our choice).**  The CIFAR network runs
on 28x28x1 as is (28 -> 14 -> 7), but its auxiliary head then sees 7x7, where
the reference's pool (5, stride 3) gives 1x1 and the 2x2 conv cannot run.  The
head's pool stride is therefore ``H - 5`` (per axis) for an ``H x W`` input
map, which pools every map of at least 6x6 to exactly 2x2: stride 3 at 8x8
(the reference, unchanged) and stride 2 at 7x7 (Fashion-MNIST, the same pool
as the ImageNet head).  Everything else in the head is the reference's.  Maps
smaller than 6x6 at 2/3 depth are an error (use ``auxiliary=False``).  Set
``aux_pool_stride`` to override.  Padding 28x28 to 32x32 (``data.pad_to``)
is the other option and needs no adaptation.

ImageNet classifier input: the reference's ``AvgPool2d(7)`` on the final
7x7 map (224x224 input) is the global mean; we take the global mean, so other
resolutions also work.

Compile time: with ``scan_cells=True`` each run of identical consecutive normal
cells is one ``nn.scan`` (:func:`scan_groups`; DARTS_V2 at 20 layers: 9 cell
bodies instead of 20).  Measured on the 2-core development CPU for DARTS_V2,
C=36, 20 layers, batch 8, training step (value and gradient, drop path, aux
head): compile 31 s scanned vs 51 s unrolled, step 1.75 s vs 1.52 s; jitted
``init`` 19 s vs 50 s (an un-jitted ``init`` takes 15 s).  The default is the
unrolled network (the reference's layout, the faster step).

Parameter count (BN scale and bias counted, running statistics not, auxiliary
head excluded): DARTS_V2 with C=36, 20 layers, 10 classes has 3,349,342
parameters, the count of the reference implementation; on ImageNet (C=48, 14
layers, 1000 classes) 4,718,752 (the paper's 4.7M).  Both are pinned in
``tests/test_models.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxnas.ops import (
    DARTS_PRIMITIVES,
    OPS,
    FactorizedReduce,
    Identity,
    OpsConfig,
    ReLUConvBN,
    batch_norm,
    make_op,
)
from jaxnas.spaces import GenotypeError
from jaxnas.spaces.darts import DARTS_CELL, CellTopology
from jaxnas.spaces.darts_genotype import CellGenotype, Genotype, reduction_layers, validate
from jaxnas.supernet import Mixer

__all__ = [
    "AuxiliaryHead",
    "DATASET_SPECS",
    "DatasetSpec",
    "DiscreteCell",
    "NetworkCIFAR",
    "NetworkImageNet",
    "OneHotMixer",
    "check_genotype",
    "drop_path",
    "make_network",
    "one_hot_arch",
    "reduction_layers",
    "scan_groups",
    "variables_from_supernet",
]

DropProb = float | jax.Array


def aux_layer(layers: int, reductions: Sequence[int] | None = None) -> int:
    """The layer after which the auxiliary head reads: the last reduction cell, which is
    DARTS' ``2 * layers // 3`` at DARTS' positions (``reductions=None``) and also the
    fallback when there is no reduction cell."""
    return max(reductions) if reductions else 2 * layers // 3


def drop_path(x: jax.Array, drop_prob: DropProb, rng: jax.Array) -> jax.Array:
    """DARTS' ``utils.drop_path``: zero whole samples with probability ``drop_prob``.

    ``y[b] = x[b] * m[b] / keep`` with ``m[b] ~ Bernoulli(keep)``, ``keep = 1 - drop_prob``,
    so ``E[y] = x``.

    Args:
      x: ``(B, ...)``.
      drop_prob: probability in ``[0, 1)`` (a Python float or a traced scalar).
      rng: PRNG key for the ``(B,)`` mask.

    Returns:
      ``(B, ...)``, same dtype as ``x``.
    """
    keep = 1.0 - jnp.asarray(drop_prob, jnp.float32)
    mask = jax.random.bernoulli(rng, keep, (x.shape[0],) + (1,) * (x.ndim - 1))
    return (x / keep.astype(x.dtype)) * mask.astype(x.dtype)


def _is_static_zero(p: DropProb | None) -> bool:
    return p is None or (isinstance(p, (int, float)) and p == 0)


# ------------------------------------------------------------------------------ validation


def check_genotype(
    genotype: Genotype, layers: int, reductions: Sequence[int] | None = None
) -> Genotype:
    """Check that ``genotype`` can be built into a ``layers``-cell network; return it.

    Every op must be in the op registry :data:`jaxnas.ops.OPS`; every cell must have
    two inputs (``c_{k-2}, c_{k-1}``) and valid sources and concat ids; per-layer
    genotypes must have exactly ``layers`` cells; the reduction positions
    (``genotype.reductions``, else ``reductions``, else DARTS') must be in range and a
    ``reductions`` setting may not contradict the genotype's; a reduction cell may not
    concatenate its (full-resolution) inputs.

    Raises:
      GenotypeError: (a ``ValueError``) with a one-line message.
    """
    if not isinstance(genotype, Genotype):
        raise GenotypeError(f"expected a Genotype, got {type(genotype).__name__}")
    validate(genotype, known_ops=OPS)
    red = genotype.reduction_cells(layers, reductions)
    for i in range(layers):
        cell = genotype.cell_for_layer(i, layers, red)
        if cell.n_inputs != 2:
            raise GenotypeError(
                f"layer {i}: DARTS networks need cells with 2 inputs, got n_inputs={cell.n_inputs}"
            )
        if i in red and any(c < cell.n_inputs for c in cell.concat):
            raise GenotypeError(
                f"layer {i}: a reduction cell cannot concatenate its inputs "
                f"(concat {list(cell.concat)})"
            )
    return genotype


# ----------------------------------------------------------------------------------- cells


class DiscreteCell(nn.Module):
    """One discrete cell (``model.Cell``).

    Attributes:
      cell: the cell's genotype.
      channels: ``C``, channels of every node.
      reduction: whether this cell halves the resolution (stride 2 on input edges).
      reduction_prev: whether the previous cell did (``s0`` is then at twice the
        resolution of ``s1`` and is reduced by ``FactorizedReduce``).
      affine: BN with scale and bias (eval networks: True).
      pool_bn: BN (affine=False) after pooling ops, as in the search network.
      cfg: how ops are computed.

    Call: ``(s0 (B, H0, W0, C0), s1 (B, H, W, C1), train, drop_prob) ->
    (B, H', W', len(concat) * C)`` with ``H' = H / 2`` in a reduction cell.
    Op ``j`` of the flat ``(op, src)`` list (node by node) is the submodule ``ops_j``,
    like the reference's ``_ops[j]``; the preprocessing is ``preprocess0`` /
    ``preprocess1`` as there.  Every name below is fixed (the ops' own submodules too,
    see :mod:`jaxnas.ops`), never a Flax automatic name: ``jaxnas.torch_weights`` maps
    them to the reference's ``state_dict`` keys by a table.
    """

    cell: CellGenotype
    channels: int
    reduction: bool
    reduction_prev: bool
    affine: bool = True
    pool_bn: bool = False
    cfg: OpsConfig = OpsConfig()

    @nn.compact
    def __call__(
        self, s0: jax.Array, s1: jax.Array, train: bool, drop_prob: DropProb | None = None
    ) -> jax.Array:
        c, cfg, cell = self.channels, self.cfg, self.cell
        if self.reduction_prev:
            s0 = FactorizedReduce(c, self.affine, cfg, name="preprocess0")(s0, train)
        else:
            s0 = ReLUConvBN(c, affine=self.affine, cfg=cfg, name="preprocess0")(s0, train)
        s1 = ReLUConvBN(c, affine=self.affine, cfg=cfg, name="preprocess1")(s1, train)
        use_drop = train and not _is_static_zero(drop_prob) and not self.is_initializing()
        states = [s0, s1]
        if cfg.group_ops:
            return self._grouped(states, train, drop_prob if use_drop else None)
        j = 0
        for node in cell.nodes:
            terms = []
            for name, src in node:
                stride = 2 if self.reduction and src < cell.n_inputs else 1
                op = make_op(name, c, stride, affine=self.affine, search=self.pool_bn, cfg=cfg)
                op = op.clone(parent=self, name=f"ops_{j}")
                h = op(states[src], train)
                if use_drop and not isinstance(op, Identity):
                    h = drop_path(h, drop_prob, self.make_rng("dropout"))
                terms.append(h)
                j += 1
            if terms:
                total = terms[0]
                for t in terms[1:]:
                    total = total + t
            else:  # a node without inputs is zero
                st = 2 if self.reduction else 1
                total = jnp.zeros_like(s1[:, ::st, ::st])
            states.append(total)
        return jnp.concatenate([states[i] for i in cell.concat], axis=-1)

    def _grouped(
        self, states: list[jax.Array], train: bool, drop_prob: DropProb | None
    ) -> jax.Array:
        """``cfg.group_ops``: node ``k``'s ops of one name and stride run as one
        ``nn.vmap`` (submodule ``node{k}_{name}_s{stride}``, variables stacked along a
        leading axis in the order of the node's edges) over their stacked inputs
        ``(G, B, H, W, C)``; the node is the sum over the groups and over ``G``.  The same
        function as the per-op cell (``ops_j``) up to the order of the additions;
        drop-path draws one ``(G * B,)`` mask per group."""
        c, cfg, cell = self.channels, self.cfg, self.cell
        for k, node in enumerate(cell.nodes):
            groups: dict[tuple[str, int], list[int]] = {}
            for name, src in node:
                stride = 2 if self.reduction and src < cell.n_inputs else 1
                groups.setdefault((name, stride), []).append(src)
            total = None
            for (name, stride), srcs in groups.items():
                body = nn.vmap(
                    _OpBody,
                    variable_axes={"params": 0, "batch_stats": 0},
                    split_rngs={"params": True},
                    in_axes=(0, None),
                    out_axes=0,
                )
                op = body(name, c, stride, self.affine, self.pool_bn, cfg)
                op = op.clone(parent=self, name=f"node{k}_{name}_s{stride}")
                h = op(jnp.stack([states[i] for i in srcs]), train)
                probe = make_op(name, c, stride, affine=self.affine, search=self.pool_bn, cfg=cfg)
                identity = isinstance(probe, Identity)
                if drop_prob is not None and not identity:
                    g, b = h.shape[:2]
                    flat = drop_path(
                        h.reshape(g * b, *h.shape[2:]), drop_prob, self.make_rng("dropout")
                    )
                    h = flat.reshape(h.shape)
                h = jnp.sum(h, axis=0)
                total = h if total is None else total + h
            if total is None:  # a node without inputs is zero
                st = 2 if self.reduction else 1
                total = jnp.zeros_like(states[1][:, ::st, ::st])
            states.append(total)
        return jnp.concatenate([states[i] for i in cell.concat], axis=-1)


class _OpBody(nn.Module):
    """One op as the body of :meth:`DiscreteCell._grouped`'s ``nn.vmap`` (submodule
    ``op``: the same variables as the per-op cell's ``ops_j``)."""

    op_name: str
    channels: int
    stride: int
    affine: bool
    pool_bn: bool
    cfg: OpsConfig

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        op = make_op(
            self.op_name,
            self.channels,
            self.stride,
            affine=self.affine,
            search=self.pool_bn,
            cfg=self.cfg,
        )
        return op.clone(parent=self, name="op")(x, train)


def cell_class(remat: bool) -> type[nn.Module]:
    """:class:`DiscreteCell`, or with ``remat`` the same cell under ``nn.remat`` (its
    intermediates recomputed in the backward pass; ``train`` static): the same variables,
    random streams and values, up to float32 rounding of the recomputation.  Measured on
    a 2-core CPU (DARTS_V2 C=36, 20 cells, batch 96): peak RSS 13.7 -> 7.9 GB, step
    12.9 -> 12.5 s, compile 25 -> 31 s (docs/benchmarks.md)."""
    return nn.remat(DiscreteCell, static_argnums=(3,)) if remat else DiscreteCell


class _ScannedCell(nn.Module):
    """``nn.scan`` body: one normal cell, carry ``(s0, s1) -> (s1, cell(s0, s1))``."""

    cell: CellGenotype
    channels: int
    train: bool
    affine: bool = True
    pool_bn: bool = False
    cfg: OpsConfig = OpsConfig()
    remat: bool = False

    @nn.compact
    def __call__(
        self, carry: tuple[jax.Array, jax.Array], drop_prob: DropProb | None
    ) -> tuple[tuple[jax.Array, jax.Array], None]:
        s0, s1 = carry
        cell = cell_class(self.remat)(
            self.cell, self.channels, False, False, self.affine, self.pool_bn, self.cfg, name="cell"
        )
        return (s1, cell(s0, s1, self.train, drop_prob)), None


def scan_groups(
    genotype: Genotype,
    layers: int,
    channels: Sequence[int],
    reductions: Sequence[int] | None = None,
) -> list[range]:
    """Split layers ``0 .. layers-1`` into groups; a group of several layers runs as one
    ``nn.scan`` (one compiled cell body).  ``channels[i]``: output channels of cell ``i``;
    reduction layers from :meth:`Genotype.reduction_cells` (``reductions``: the setting).

    Consecutive layers join a group when they are normal cells (not reductions, not
    right after one) with the same cell genotype, and the group's first cell already
    reads two inputs of its own output shape (``channels[i]`` = cell ``i``'s output
    channels, equal for ``i-2``, ``i-1`` and ``i``), so the carry ``(s0, s1)`` keeps its
    shape.  A group ends at the auxiliary head's layer.  For DARTS_V2 with 20 layers:
    ``0, 1, 2-5, 6, 7, 8-12, 13, 14, 15-19``.
    """
    red_t = genotype.reduction_cells(layers, reductions)
    red, aux = set(red_t), aux_layer(layers, red_t)
    cells = [genotype.cell_for_layer(i, layers, red_t) for i in range(layers)]

    def starts_stable(i: int) -> bool:
        return i >= 2 and not {i, i - 1} & red and channels[i - 2] == channels[i - 1] == channels[i]

    groups: list[range] = []
    i = 0
    while i < layers:
        j = i + 1
        if starts_stable(i) and i != aux:
            while j < layers and j not in red and cells[j] == cells[i]:
                j += 1
                if j - 1 == aux:
                    break
        groups.append(range(i, j))
        i = j
    return groups


def _cell_channels(
    genotype: Genotype, layers: int, init_channels: int, red: Sequence[int]
) -> list[int]:
    c, out = init_channels, []
    for i in range(layers):
        c = c * 2 if i in red else c
        out.append(len(genotype.cell_for_layer(i, layers, red).concat) * c)
    return out


# ------------------------------------------------------------------------- auxiliary heads


class AuxiliaryHead(nn.Module):
    """Auxiliary classifier (``AuxiliaryHeadCIFAR`` / ``AuxiliaryHeadImageNet``).

    ``x (B, H, W, C) -> logits (B, num_classes)``: ReLU; 5x5 average pool, no
    padding, stride ``pool_stride`` (``None``: ``(H - 5, W - 5)``, i.e. a 2x2 output;
    see the module docstring); conv1x1 128 + BN + ReLU; conv2x2 768 (+ BN if
    ``bn_after_conv2``) + ReLU; flatten; linear.  Convs have no bias.

    Submodules: ``conv1`` (the 1x1 conv, a ``Dense`` kernel ``(C, 128)``), ``bn1``,
    ``conv2`` (kernel ``(2, 2, 128, 768)``), ``bn2``, ``classifier``.
    """

    num_classes: int
    pool_stride: int | tuple[int, int] | None = None
    bn_after_conv2: bool = True
    cfg: OpsConfig = OpsConfig()

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        h, w = x.shape[1], x.shape[2]
        if self.pool_stride is None:
            if h < 6 or w < 6:
                raise ValueError(
                    f"the auxiliary head needs a map of at least 6x6 at 2/3 depth, got {h}x{w}; "
                    "use auxiliary=False or a larger input"
                )
            stride = (h - 5, w - 5)
        elif isinstance(self.pool_stride, int):
            stride = (self.pool_stride, self.pool_stride)
        else:
            stride = tuple(self.pool_stride)
        x = nn.relu(x)
        x = nn.avg_pool(x, (5, 5), strides=stride, padding="VALID")
        x = nn.Dense(128, use_bias=False, dtype=self.cfg.dtype, name="conv1")(x)
        x = nn.relu(batch_norm(train, True, name="bn1")(x))
        x = nn.Conv(
            768, (2, 2), padding="VALID", use_bias=False, dtype=self.cfg.dtype, name="conv2"
        )(x)
        if self.bn_after_conv2:
            x = batch_norm(train, True, name="bn2")(x)
        x = nn.relu(x)
        x = x.reshape(x.shape[0], -1)
        return nn.Dense(self.num_classes, name="classifier")(x)


# -------------------------------------------------------------------------------- networks


class _EvalNetwork(nn.Module):
    """What :class:`NetworkCIFAR` and :class:`NetworkImageNet` share: the fields, the
    cell stack with its auxiliary head, the pool and the classifier.  A subclass gives
    :meth:`stem` (``x -> (s0, s1)``, the first cell's inputs), :meth:`aux_head` and
    ``reduction_prev`` (``s0`` at twice ``s1``'s resolution)."""

    genotype: Genotype
    num_classes: int
    init_channels: int = 36
    layers: int = 20
    auxiliary: bool = True
    drop_path_prob: float = 0.0
    affine: bool = True
    pool_bn: bool = False
    scan_cells: bool = False
    cfg: OpsConfig = OpsConfig()
    reductions: tuple[int, ...] | None = None
    remat: bool = False  # recompute each cell's intermediates in the backward pass
    reduction_prev = False

    def reduction_cells(self) -> tuple[int, ...]:
        """0-based indices of the reduction cells this network builds."""
        return self.genotype.reduction_cells(self.layers, self.reductions)

    def stem(self, x: jax.Array, train: bool) -> tuple[jax.Array, jax.Array]:
        """``(s0, s1)``, the inputs of the first cell."""
        raise NotImplementedError

    def aux_head(self) -> AuxiliaryHead:
        """The auxiliary head (named ``auxiliary_head``)."""
        raise NotImplementedError

    def _cell_stack(
        self,
        s0: jax.Array,
        s1: jax.Array,
        train: bool,
        drop_prob: DropProb | None,
        on_aux: Callable[[jax.Array], None],
    ) -> jax.Array:
        """The cells of ``NetworkCIFAR/ImageNet.forward``, called by the compact
        ``__call__`` (the cells become submodules ``cell_00``, ... of the network, or with
        ``scan_cells`` scanned groups ``cells_02_05``, ... holding ``cell`` with stacked
        variables, see :func:`scan_groups`).  Reduction layers: :meth:`reduction_cells`.
        ``on_aux(s1)`` is called with the output of the last reduction layer
        (:func:`aux_layer`).  ``remat``: every cell recomputes its intermediates in the
        backward pass (:func:`cell_class`)."""
        genotype, layers, cfg, remat = self.genotype, self.layers, self.cfg, self.remat
        affine, pool_bn, reduction_prev = self.affine, self.pool_bn, self.reduction_prev
        red = self.reduction_cells()
        chans = [self.init_channels * 2 ** sum(r <= i for r in red) for i in range(layers)]
        if self.scan_cells:
            chan_out = _cell_channels(genotype, layers, self.init_channels, red)
            groups = scan_groups(genotype, layers, chan_out, red)
        else:
            groups = [range(i, i + 1) for i in range(layers)]
        for group in groups:
            i = group[0]
            cell_g = genotype.cell_for_layer(i, layers, red)
            if len(group) == 1:
                reduction = i in red
                cell = cell_class(remat)(
                    cell_g, chans[i], reduction, reduction_prev, affine, pool_bn, cfg,
                    name=f"cell_{i:02d}",
                )  # fmt: skip
                s0, s1 = s1, cell(s0, s1, train, drop_prob)
                reduction_prev = reduction
            else:
                body = nn.scan(
                    _ScannedCell,
                    variable_axes={"params": 0, "batch_stats": 0},
                    split_rngs={"params": True, "dropout": True},
                    in_axes=nn.broadcast,
                    length=len(group),
                )
                name = f"cells_{group[0]:02d}_{group[-1]:02d}"
                scanned = body(cell_g, chans[i], train, affine, pool_bn, cfg, remat, name=name)
                (s0, s1), _ = scanned((s0, s1), drop_prob)
                reduction_prev = False
            if aux_layer(layers, red) in group:
                on_aux(s1)
        return s1

    @nn.compact
    def __call__(
        self, x: jax.Array, train: bool = False, drop_prob: DropProb | None = None
    ) -> tuple[jax.Array, jax.Array | None]:
        check_genotype(self.genotype, self.layers, self.reductions)
        drop_prob = self.drop_path_prob if drop_prob is None else drop_prob
        s0, s1 = self.stem(x, train)
        aux_out: list[jax.Array] = []

        def on_aux(s: jax.Array) -> None:
            if self.auxiliary and (train or self.is_initializing()):
                aux_out.append(self.aux_head()(s, train))

        s1 = self._cell_stack(s0, s1, train, drop_prob, on_aux)
        logits = nn.Dense(self.num_classes, name="classifier")(jnp.mean(s1, axis=(1, 2)))
        return logits, (aux_out[0] if aux_out and train else None)


class NetworkCIFAR(_EvalNetwork):
    """The DARTS CIFAR evaluation network (``model.NetworkCIFAR``).

    Stem: conv3x3 to ``3C`` + BN.  ``layers`` cells, channels doubling at the
    reduction cells (``genotype.reductions``, else ``reductions``, else DARTS'
    :func:`reduction_layers`); auxiliary head on the output of the last reduction cell
    (DARTS: layer ``2 * layers // 3``; training only); global average pool; linear
    classifier.

    Attributes:
      genotype: shared normal/reduce cells, or one cell per layer (``genotype.cells``).
      num_classes: classifier outputs.
      init_channels: ``C`` (36 in the paper).
      layers: number of cells (20 in the paper).
      auxiliary: build and (in training) evaluate the auxiliary head.
      drop_path_prob: default drop-path probability (overridden by ``drop_prob``).
      stem_multiplier: stem width in units of ``C`` (3).
      aux_pool_stride: the auxiliary head's pool stride; ``None``: ``H - 5`` (3 at 8x8).
      affine, pool_bn: see :class:`DiscreteCell` (eval: True, False).
      scan_cells: run each group of identical consecutive normal cells (:func:`scan_groups`)
        as one ``nn.scan``: the same function with fewer compiled cell bodies (9 instead
        of 20 for DARTS_V2); their variables are stacked under ``cells_AA_BB/cell``.
      cfg: how ops are computed (depthwise implementation, dtype).
      reductions: 0-based reduction layers for a genotype that records none (``None``:
        DARTS' positions); must equal ``genotype.reductions`` when that is set.

    Call: ``(x (B, H, W, C_in), train=False, drop_prob=None) -> (logits (B, classes),
    logits_aux (B, classes) or None)``; ``logits_aux`` is ``None`` unless ``train`` and
    ``auxiliary``.  In training with ``drop_prob > 0`` pass ``rngs={"dropout": key}``;
    ``init`` always creates the auxiliary head's variables (when ``auxiliary``).
    """

    stem_multiplier: int = 3
    aux_pool_stride: int | tuple[int, int] | None = None

    def stem(self, x: jax.Array, train: bool) -> tuple[jax.Array, jax.Array]:
        """conv3x3 to ``stem_multiplier * C`` + BN, read by the first cell twice."""
        s = nn.Conv(
            self.stem_multiplier * self.init_channels,
            (3, 3),
            padding=((1, 1), (1, 1)),
            use_bias=False,
            dtype=self.cfg.dtype,
            name="stem_conv",
        )(x)
        s = batch_norm(train, True, name="stem_bn")(s)
        return s, s

    def aux_head(self) -> AuxiliaryHead:
        """The CIFAR head: pool stride ``aux_pool_stride``, BN after the 2x2 conv."""
        return AuxiliaryHead(
            self.num_classes, self.aux_pool_stride, True, self.cfg, name="auxiliary_head"
        )


class NetworkImageNet(_EvalNetwork):
    """The DARTS ImageNet evaluation network, mobile setting (``model.NetworkImageNet``).

    ``stem0``: conv3x3 stride 2 to ``C/2`` + BN + ReLU + conv3x3 stride 2 to ``C`` + BN;
    ``stem1``: ReLU + conv3x3 stride 2 + BN (224 -> 112 -> 56 -> 28).  The first cell
    reads ``s0 = stem0(x)`` at twice the resolution of ``s1 = stem1(s0)``
    (``reduction_prev=True``).  Reductions as :class:`NetworkCIFAR` (DARTS':
    :func:`reduction_layers`); auxiliary head (ImageNet variant: pool stride 2, no BN
    after the 2x2 conv) after the last reduction cell (DARTS: layer ``2 * layers // 3``);
    global average pool (= the reference's ``AvgPool2d(7)`` at 224x224); linear classifier.

    Attributes and call as :class:`NetworkCIFAR` (paper: ``C=48``, 14 layers).
    """

    init_channels: int = 48
    layers: int = 14
    reduction_prev = True

    def stem(self, x: jax.Array, train: bool) -> tuple[jax.Array, jax.Array]:
        """``(stem0(x), stem1(stem0(x)))``, the class docstring's two stems."""
        c, dt = self.init_channels, self.cfg.dtype

        def conv(features: int, name: str) -> nn.Conv:
            return nn.Conv(
                features, (3, 3), 2, ((1, 1), (1, 1)), use_bias=False, dtype=dt, name=name
            )

        s0 = conv(c // 2, "stem0_conv0")(x)
        s0 = nn.relu(batch_norm(train, True, name="stem0_bn0")(s0))
        s0 = batch_norm(train, True, name="stem0_bn1")(conv(c, "stem0_conv1")(s0))
        s1 = batch_norm(train, True, name="stem1_bn")(conv(c, "stem1_conv")(nn.relu(s0)))
        return s0, s1

    def aux_head(self) -> AuxiliaryHead:
        """The ImageNet head: pool stride 2, no BN after the 2x2 conv."""
        return AuxiliaryHead(self.num_classes, 2, False, self.cfg, name="auxiliary_head")


# -------------------------------------------------------------------------------- factory


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """What a network needs to know about a dataset.

    Attributes:
      input_shape: ``(H, W, C)`` of one image as the network sees it.
      num_classes: number of classes.
      family: ``"cifar"`` (:class:`NetworkCIFAR`) or ``"imagenet"`` (:class:`NetworkImageNet`).
      init_channels, layers: the DARTS paper's evaluation setting for the family.
    """

    input_shape: tuple[int, int, int]
    num_classes: int
    family: str
    init_channels: int
    layers: int


#: Dataset name -> :class:`DatasetSpec` (the names of :mod:`jaxnas.data`, plus ``imagenet``).
DATASET_SPECS: dict[str, DatasetSpec] = {
    "cifar10": DatasetSpec((32, 32, 3), 10, "cifar", 36, 20),
    "cifar100": DatasetSpec((32, 32, 3), 100, "cifar", 36, 20),
    "fashion_mnist": DatasetSpec((28, 28, 1), 10, "cifar", 36, 20),
    "imagenet": DatasetSpec((224, 224, 3), 1000, "imagenet", 48, 14),
    "imagenet2012": DatasetSpec((224, 224, 3), 1000, "imagenet", 48, 14),
}


def make_network(
    genotype: Genotype,
    dataset: str = "cifar10",
    *,
    init_channels: int | None = None,
    layers: int | None = None,
    num_classes: int | None = None,
    auxiliary: bool = True,
    drop_path_prob: float = 0.0,
    scan_cells: bool = False,
    cfg: OpsConfig | None = None,
    reductions: Sequence[int] | None = None,
) -> tuple[nn.Module, tuple[int, int, int]]:
    """The evaluation network of ``genotype`` for ``dataset`` and its input shape.

    Defaults (``None``) come from :data:`DATASET_SPECS`: the paper's C=36 / 20 layers
    for the CIFAR family (CIFAR-10/100 and Fashion-MNIST), C=48 / 14 layers for
    ImageNet (mobile setting).  Reduction cells: ``genotype.reductions`` when the
    genotype records them, else ``reductions``, else DARTS' ``layers // 3, 2 * layers // 3``;
    a ``reductions`` that differs from the genotype's is a GenotypeError.

    ``scan_cells`` as in :class:`NetworkCIFAR`; ``cfg`` (default ``OpsConfig()``) says how
    ops are computed (depthwise implementation,
    compute dtype).

    Returns:
      ``(module, (H, W, C_in))``.

    Raises:
      ValueError: unknown dataset (one line); GenotypeError: a genotype that cannot be built.
    """
    try:
        spec = DATASET_SPECS[dataset]
    except KeyError:
        raise ValueError(
            f"unknown dataset {dataset!r}; known: {', '.join(DATASET_SPECS)}"
        ) from None
    c = spec.init_channels if init_channels is None else init_channels
    n = spec.layers if layers is None else layers
    k = spec.num_classes if num_classes is None else num_classes
    red = None if reductions is None else tuple(int(r) for r in reductions)
    check_genotype(genotype, n, red)
    cls = NetworkCIFAR if spec.family == "cifar" else NetworkImageNet
    net = cls(
        genotype,
        k,
        init_channels=c,
        layers=n,
        auxiliary=auxiliary,
        drop_path_prob=drop_path_prob,
        scan_cells=scan_cells,
        cfg=cfg or OpsConfig(),
        reductions=red,
    )
    return net, spec.input_shape


# ------------------------------------------------------------------ supernet consistency


@dataclasses.dataclass(frozen=True)
class OneHotMixer(Mixer):
    """A :class:`jaxnas.supernet.Mixer` whose op weights *are* the ``"arch"`` arrays.

    With ``arch = one_hot_arch(genotype, ...)`` every edge of the supernet computes
    exactly ``sum_o w[e, o] * o(x)`` with ``w`` 1 on the genotype's ops and 0
    elsewhere, i.e. the discrete cell's edges (zero for edges not in the genotype).
    """

    stochastic: bool = False

    def init_arch(self, rng: jax.Array, shape: tuple[int, int]) -> jax.Array:
        """Zeros of ``shape``; set the real weights with :func:`one_hot_arch`."""
        del rng
        return jnp.zeros(shape)


def _edge_index(topology: CellTopology, src: int, dst: int) -> int:
    try:
        return topology.edges.index((src, dst))
    except ValueError:
        raise GenotypeError(f"edge {src} -> {dst} is not in the search space's cell") from None


def _cell_one_hot(
    cell: CellGenotype, primitives: Sequence[str], topology: CellTopology
) -> np.ndarray:
    w = np.zeros((topology.n_edges, len(primitives)), np.float32)
    for op, src, dst in cell.edges:
        if op not in primitives:
            raise GenotypeError(f"op {op!r} is not among the supernet's primitives")
        w[_edge_index(topology, src, dst), list(primitives).index(op)] += 1.0
    return w


def one_hot_arch(
    genotype: Genotype,
    layers: int,
    *,
    primitives: Sequence[str] = DARTS_PRIMITIVES,
    topology: CellTopology = DARTS_CELL,
    arch_sharing: str = "cell_type",
    reductions: Sequence[int] | None = None,
) -> dict[str, jax.Array]:
    """The supernet ``"arch"`` collection that selects ``genotype`` (for :class:`OneHotMixer`).

    Returns ``{name: (n_edges, n_ops)}`` with 1 at ``(edge, op)`` for every ``(op, src)``
    input of every node and 0 elsewhere; names as ``SuperNet.arch_names``
    (``"normal"``/``"reduce"`` or, with ``arch_sharing="cell"``, ``"layer_00"``, ...).
    """
    if arch_sharing == "cell_type":
        if genotype.cells is not None:
            raise GenotypeError("a per-layer genotype needs arch_sharing='cell'")
        cells = {"normal": genotype.normal, "reduce": genotype.reduce}
    elif arch_sharing == "cell":
        red = genotype.reduction_cells(layers, reductions)
        cells = {f"layer_{i:02d}": genotype.cell_for_layer(i, layers, red) for i in range(layers)}
    else:
        raise ValueError(f"arch_sharing must be 'cell_type' or 'cell', got {arch_sharing!r}")
    return {k: jnp.asarray(_cell_one_hot(c, primitives, topology)) for k, c in cells.items()}


def variables_from_supernet(
    supernet_variables: dict[str, Any],
    genotype: Genotype,
    layers: int,
    *,
    topology: CellTopology = DARTS_CELL,
    reductions: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Map a ``SuperNet``'s ``params`` and ``batch_stats`` to a discrete network's.

    The stem (``stem_conv``, ``stem_bn``), the classifier and each cell's
    ``preprocess0/1`` have the same names in both.  Op ``j`` of cell ``i`` in the
    discrete network (``cell_ii/ops_j``, the ``j``-th ``(op, src)`` pair, node by node)
    takes the supernet's ``cell_ii/<scan>/edge/<op>`` sliced at the edge's position
    along the scan axis, where ``<scan>`` is ``edges`` (normal cell, position = edge
    index) or ``input_edges``/``inner_edges`` (reduction cell).  The result fits a
    discrete network built with ``affine=False, pool_bn=True`` (the supernet's op
    variants), ``layers`` cells and ``scan_cells=False``; the ``"arch"`` collection is
    dropped.  The reduction layers (``genotype.reductions``, else ``reductions``, else
    DARTS') must be the supernet's.
    """
    red = genotype.reduction_cells(layers, reductions)
    out: dict[str, Any] = {}
    for col in ("params", "batch_stats"):
        src_tree = supernet_variables.get(col)
        if src_tree is None:
            continue
        dst_tree: dict[str, Any] = {}
        for key, val in src_tree.items():
            if not key.startswith("cell_"):
                dst_tree[key] = val
                continue
            i = int(key.split("_")[1])
            cell = genotype.cell_for_layer(i, layers, red)
            new = {k: val[k] for k in ("preprocess0", "preprocess1") if k in val}
            for j, (op, src, dst) in enumerate(cell.edges):
                e = _edge_index(topology, src, dst)
                if i not in red:
                    scan, pos = "edges", e
                elif e in topology.input_edges:
                    scan, pos = "input_edges", topology.input_edges.index(e)
                else:
                    scan, pos = "inner_edges", topology.inner_edges.index(e)
                sub = val.get(scan, {}).get("edge", {}).get(op)
                if sub is not None:
                    new[f"ops_{j}"] = jax.tree.map(lambda a, p=pos: a[p], sub)
            dst_tree[key] = new
        out[col] = dst_tree
    return out
