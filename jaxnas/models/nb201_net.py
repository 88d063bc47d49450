"""NAS-Bench-201 networks: the search supernet and the discrete network of one cell.

Reference: ``D-X-Y/AutoDL-Projects`` -- ``lib/models/cell_operations.py`` (ops,
``ResNetBasicblock``), ``cell_searchs/search_cells.py`` + ``search_model_darts.py``
(``NAS201SearchCell``, ``TinyNetworkDarts``) and ``cell_infers/cells.py`` +
``tiny_network.py`` (``InferCell``, ``TinyNetwork``).  NHWC throughout.

The skeleton (both networks)::

    stem: conv3x3(C) + BN
    N cells (C)      -> ResNet basic block (2C, stride 2) ->
    N cells (2C)     -> ResNet basic block (4C, stride 2) ->
    N cells (4C)     -> BN + ReLU -> global average pool -> linear

with NAS-Bench-201's ``C = 16, N = 5`` (here ``init_channels``, ``cells_per_stage``;
the search and training configs pass ``model.layers`` as ``N``).  Every cell is the
same cell (one alpha of shape ``(6, 5)``, or one :class:`~jaxnas.spaces.nb201.NB201Arch`);
its output (node 3) has as many channels as its input.

The ops (``cell_operations.OPS``, stride 1, ``C_in == C_out`` inside a cell):

==============  ==========================================================
none            zeros (left out of the supernet's weighted sum: adds 0)
skip_connect    identity
nor_conv_1x1    ReLU, conv 1x1, BN
nor_conv_3x3    ReLU, conv 3x3 (padding 1), BN
avg_pool_3x3    3x3 average pool, stride 1, padding 1, ``count_include_pad=False``
                (``POOLING``); no BN after it, unlike DARTS' ``MixedOp``
==============  ==========================================================

The search supernet builds the cell ops with ``affine=False`` BN (``TinyNetworkDarts``
passes ``affine=False`` to ``SearchCell``), the reduction blocks, stem and last BN
with ``affine=True`` (their defaults); the discrete network uses ``affine=True``
everywhere.  The ResNet basic block (``ResNetBasicblock(C_in, C_out, 2)``) is
``ReLU-conv3x3(stride 2)-BN -> ReLU-conv3x3-BN`` plus a shortcut ``avgpool 2x2
(stride 2) -> conv 1x1`` (no BN).

Compile time: each stage's ``N`` cells are one ``nn.scan`` (one compiled cell body
per stage), and inside a supernet cell the 6 edges are one ``nn.scan`` (carry: the
stack of the 4 node tensors), as :mod:`jaxnas.supernet` does for DARTS cells.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxnas.ops import Identity, OpsConfig, Pool, ReLUConvBN, batch_norm
from jaxnas.spaces.nb201 import NB201_CELL, NB201_PRIMITIVES, NB201Arch
from jaxnas.supernet import MixedEdge, Mixer, SoftmaxMixer

__all__ = [
    "NB201Network",
    "NB201SuperNet",
    "ResNetBasicBlock",
    "make_op",
    "network_for_training",
    "search_op",
    "variables_from_supernet",
]

ARCH_NAME = "cell"  # the one entry of the supernet's "arch" collection


def make_op(name: str, channels: int, *, affine: bool, cfg: OpsConfig) -> nn.Module | None:
    """NAS-Bench-201's op ``name`` at stride 1 (``cell_operations.OPS``); None for ``none``."""
    if name == "none":
        return None
    if name == "skip_connect":
        return Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(channels, 1, 1, 0, affine, cfg)
    if name == "nor_conv_3x3":
        return ReLUConvBN(channels, 3, 1, 1, affine, cfg)
    if name == "avg_pool_3x3":
        return Pool("avg", 1, bn_after=False, cfg=cfg)
    raise ValueError(f"unknown NB201 op {name!r}; known: {', '.join(NB201_PRIMITIVES)}")


class ResNetBasicBlock(nn.Module):
    """``ResNetBasicblock(C_in, features, stride)``: two ReLU-conv3x3-BN plus a shortcut.

    ``(B, H, W, C_in) -> (B, H/s, W/s, features)``; the stride-2 shortcut is a 2x2
    average pool and a 1x1 conv (no BN), the stride-1 one the identity (equal
    channels) or ReLU-conv1x1-BN.
    """

    features: int
    stride: int = 2
    affine: bool = True
    cfg: OpsConfig = OpsConfig()

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        if self.stride not in (1, 2):
            raise ValueError(f"ResNetBasicBlock stride must be 1 or 2, got {self.stride}")
        if self.stride == 2 and (x.shape[1] % 2 or x.shape[2] % 2):
            # the strided conv would round up and the 2x2 pool down: the sum cannot be formed
            raise ValueError(
                f"an NB201 reduction block needs an even spatial size, got {x.shape[1]}x"
                f"{x.shape[2]}; pad the input (data.pad_to)"
            )
        f, cfg = self.features, self.cfg
        y = ReLUConvBN(f, 3, self.stride, 1, self.affine, cfg, name="conv_a")(x, train)
        y = ReLUConvBN(f, 3, 1, 1, self.affine, cfg, name="conv_b")(y, train)
        if self.stride == 2:
            r = nn.avg_pool(x, (2, 2), strides=(2, 2), padding="VALID")
            r = nn.Dense(f, use_bias=False, dtype=cfg.dtype, name="downsample")(r)
        elif x.shape[-1] != f:
            r = ReLUConvBN(f, 1, 1, 0, self.affine, cfg, name="downsample")(x, train)
        else:
            r = x
        return r + y


def _stem(x: jax.Array, channels: int, train: bool, cfg: OpsConfig) -> jax.Array:
    x = nn.Conv(
        channels,
        (3, 3),
        padding=((1, 1), (1, 1)),
        use_bias=False,
        dtype=cfg.dtype,
        name="stem_conv",
    )(x)
    return batch_norm(train, True, name="stem_bn")(x)


def _head(x: jax.Array, num_classes: int, train: bool, cfg: OpsConfig) -> jax.Array:
    """``lastact`` (BN + ReLU), global average pool, classifier."""
    x = cfg.act(batch_norm(train, True, name="last_bn")(x))
    return nn.Dense(num_classes, dtype=cfg.dtype, name="classifier")(jnp.mean(x, axis=(1, 2)))


def _tiny_network(
    x: jax.Array,
    channels: int,
    cells_per_stage: int,
    num_classes: int,
    train: bool,
    cfg: OpsConfig,
    stage: Callable[[jax.Array, int], jax.Array],
) -> jax.Array:
    """``TinyNetwork``'s body around its cells: stem, three stages ``stage(x, s)`` (the
    cells of stage ``s``), a stride-2 :class:`ResNetBasicBlock` doubling the channels
    before stages 1 and 2, then :func:`_head`; logits ``(B, num_classes)``."""
    if cells_per_stage < 1:
        raise ValueError(f"cells_per_stage (model.layers) must be >= 1, got {cells_per_stage}")
    c = channels
    x = _stem(x, c, train, cfg)
    for s in range(3):
        if s:
            c *= 2
            x = ResNetBasicBlock(c, 2, True, cfg, name=f"reduce_{s}")(x, train)
        x = stage(x, s)
    return _head(x, num_classes, train, cfg)


def _scan_cells(body: type[nn.Module], n: int, broadcast_args: int) -> type[nn.Module]:
    """``n`` copies of ``body`` chained over the carry, variables stacked on axis 0."""
    return nn.scan(
        body,
        variable_axes={"params": 0, "batch_stats": 0, "intermediates": 0},
        split_rngs={"params": True},
        in_axes=(nn.broadcast,) * broadcast_args,
        length=n,
    )


# ------------------------------------------------------------------------------ search


def search_op(name: str, channels: int, stride: int, cfg: OpsConfig) -> nn.Module | None:
    """NAS-Bench-201's search op ``name`` (``affine=False`` BN, as ``TinyNetworkDarts``);
    the ``op_factory`` of :class:`jaxnas.supernet.MixedEdge` here (``stride`` is 1)."""
    del stride
    return make_op(name, channels, affine=False, cfg=cfg)


class _SearchSettings(nn.Module):
    """What every part of a search cell is built with (the supernet's settings)."""

    primitives: tuple[str, ...]
    mixer: Any
    train: bool
    cfg: OpsConfig = OpsConfig()
    remat: bool = False

    def settings(self) -> tuple[Any, ...]:
        """The fields, positionally, for the next part."""
        return (self.primitives, self.mixer, self.train, self.cfg, self.remat)


class _EdgeIntoBuffer(_SearchSettings):
    """Edge scan body: add ``edge(nodes[src])`` into ``nodes[dst]``."""

    @nn.compact
    def __call__(self, nodes: jax.Array, xs: tuple[jax.Array, jax.Array, jax.Array]):
        src, dst, w = xs
        cls = nn.remat(MixedEdge) if self.remat else MixedEdge
        edge = cls(self.primitives, 1, self.mixer, self.train, self.cfg, search_op, name="edge")
        y = edge(jax.lax.dynamic_index_in_dim(nodes, src, keepdims=False), w)
        cur = jax.lax.dynamic_index_in_dim(nodes, dst, keepdims=False)
        return jax.lax.dynamic_update_index_in_dim(nodes, cur + y, dst, 0), None


class SearchCell(_SearchSettings):
    """``NAS201SearchCell``: node ``i`` = sum over ``j < i`` of the mixed edge ``j -> i``.

    ``(x (B, H, W, C), w (6, n_ops)) -> node 3 (B, H, W, C)``.  Edges run in
    :data:`~jaxnas.spaces.nb201.NB201_CELL` order, which visits every edge into node
    ``j`` before any edge out of it.  Fields: ``primitives``, ``mixer``, ``train``,
    ``cfg``, ``remat`` (the supernet's).
    """

    @nn.compact
    def __call__(self, x: jax.Array, w: jax.Array) -> jax.Array:
        top = NB201_CELL
        src = np.array([s for s, _ in top.edges], np.int32)
        dst = np.array([d for _, d in top.edges], np.int32)
        nodes = jnp.concatenate([x[None], jnp.zeros((top.n_nodes, *x.shape), x.dtype)])
        body = nn.scan(
            _EdgeIntoBuffer,
            variable_axes={"params": 0, "batch_stats": 0, "intermediates": 0},
            split_rngs={"params": True},
            in_axes=0,
            length=top.n_edges,
        )
        nodes, _ = body(*self.settings(), name="edges")(nodes, (src, dst, w))
        return nodes[-1]


class _ScannedSearchCell(_SearchSettings):
    @nn.compact
    def __call__(self, x: jax.Array, w: jax.Array):
        return SearchCell(*self.settings(), name="cell")(x, w), None


class NB201SuperNet(nn.Module):
    """The NAS-Bench-201 search network (``TinyNetworkDarts``), parameterised by a mixer.

    ``__call__(x (B, H, W, C_in), train) -> logits (B, num_classes)``; the ``"arch"``
    collection holds one ``(6, len(primitives))`` array, ``"cell"``, shared by all
    ``3 * cells_per_stage`` cells.  Its edges are :class:`jaxnas.supernet.MixedEdge`
    with NAS-Bench-201's ops (:func:`search_op`), so every hook of a
    :class:`jaxnas.supernet.Mixer` works here as in :class:`jaxnas.supernet.SuperNet`.
    """

    num_classes: int
    init_channels: int = 16
    cells_per_stage: int = 5
    primitives: tuple[str, ...] = NB201_PRIMITIVES
    mixer: Mixer = SoftmaxMixer()
    cfg: OpsConfig = OpsConfig()
    remat: bool = False  # recompute each edge's intermediates in the backward pass
    topology = NB201_CELL

    def arch_names(self) -> tuple[str, ...]:
        """Names of the arrays in the ``"arch"`` collection."""
        return (ARCH_NAME,)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True, step_input: Any = None) -> jax.Array:
        """Logits ``(B, num_classes)``; ``step_input`` (traced per-step values, see
        :class:`jaxnas.supernet.Mixer`) goes to the mixer's ``edge_weights``."""
        shape = (NB201_CELL.n_edges, len(self.primitives))
        arch = self.variable(
            "arch", ARCH_NAME, lambda: self.mixer.init_arch(self.make_rng("params"), shape)
        ).value
        if arch.shape != shape:
            raise ValueError(f"arch[{ARCH_NAME!r}] has shape {arch.shape}, expected {shape}")
        rng = self.make_rng("mixer") if self.mixer.stochastic else None
        w = self.mixer.edge_weights(arch, rng, step_input)
        settings = (self.primitives, self.mixer, train, self.cfg, self.remat)

        def stage(x: jax.Array, s: int) -> jax.Array:
            body = _scan_cells(_ScannedSearchCell, self.cells_per_stage, 1)
            return body(*settings, name=f"stage_{s}")(x, w)[0]

        c, n = self.init_channels, self.cells_per_stage
        return _tiny_network(x, c, n, self.num_classes, train, self.cfg, stage)


# ---------------------------------------------------------------------------- discrete


class InferCell(nn.Module):
    """``InferCell``: node ``i`` = sum over ``j < i`` of ``op_{i<-j}(x_j)`` for one cell.

    ``none`` edges add nothing (the reference adds ``x * 0``); a node without any
    other input is zeros, and ops reading it still run on those zeros (a conv's BN
    maps them to its bias, as in the reference).  Op parameters live under
    ``edge_{e}`` (edge index).
    """

    arch: NB201Arch
    affine: bool = True
    cfg: OpsConfig = OpsConfig()

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        nodes: list[jax.Array | None] = [x] + [None] * NB201_CELL.n_nodes
        for e, ((src, dst), name) in enumerate(zip(NB201_CELL.edges, self.arch.ops)):
            op = make_op(name, x.shape[-1], affine=self.affine, cfg=self.cfg)
            if op is None:
                continue
            inp = jnp.zeros_like(x) if nodes[src] is None else nodes[src]
            y = op.clone(parent=self, name=f"edge_{e}")(inp, train)
            nodes[dst] = y if nodes[dst] is None else nodes[dst] + y
        return jnp.zeros_like(x) if nodes[-1] is None else nodes[-1]


class _ScannedInferCell(nn.Module):
    arch: NB201Arch
    affine: bool = True
    cfg: OpsConfig = OpsConfig()

    @nn.compact
    def __call__(self, x: jax.Array, train: bool):
        return InferCell(self.arch, self.affine, self.cfg, name="cell")(x, train), None


class NB201Network(nn.Module):
    """The network NAS-Bench-201 trains for one cell (``TinyNetwork``).

    ``__call__(x, train, drop_prob=None) -> (logits, None)``: the signature of
    :class:`jaxnas.models.NetworkCIFAR`, so :class:`jaxnas.train.Trainer` trains it
    (:func:`network_for_training`); NAS-Bench-201 has neither drop path nor an
    auxiliary head (``drop_prob`` is accepted and must be 0 or None).
    ``affine=False`` builds the cell ops as the supernet does (for
    :func:`variables_from_supernet`).  ``scan_cells``: each stage's cells are one
    ``nn.scan`` (stacked variables under ``stage_s/cell``); else ``stage_s_cell_i``.
    """

    arch: NB201Arch
    num_classes: int
    init_channels: int = 16
    cells_per_stage: int = 5
    affine: bool = True
    cfg: OpsConfig = OpsConfig()
    scan_cells: bool = True

    def reduction_cells(self) -> tuple[int, ...]:
        """Where the two ResNet blocks sit among the ``3N + 2`` layers (``TinyNetwork.cells``)."""
        n = self.cells_per_stage
        return (n, 2 * n + 1)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, drop_prob: Any = None):
        if isinstance(drop_prob, (int, float)) and drop_prob > 0:
            raise ValueError("NAS-Bench-201 networks have no drop path")
        n, cfg = self.cells_per_stage, self.cfg

        def stage(x: jax.Array, s: int) -> jax.Array:
            if not self.scan_cells:
                for i in range(n):
                    x = InferCell(self.arch, self.affine, cfg, name=f"stage_{s}_cell_{i}")(x, train)
                return x
            body = _scan_cells(_ScannedInferCell, n, 1)
            return body(self.arch, self.affine, cfg, name=f"stage_{s}")(x, train)[0]

        logits = _tiny_network(x, self.init_channels, n, self.num_classes, train, cfg, stage)
        return logits, None


def network_for_training(
    arch: NB201Arch,
    num_classes: int,
    *,
    init_channels: int,
    layers: int,
    auxiliary: bool = False,
    drop_path_prob: float = 0.0,
    scan_cells: bool = True,
    cfg: OpsConfig | None = None,
    reductions: Sequence[int] | None = None,
) -> NB201Network:
    """:class:`NB201Network` from a retraining config's model keys (the keyword arguments
    :class:`jaxnas.train.Trainer` gives ``NetworkCIFAR``): ``layers`` is ``N``, the
    cells per stage.  What NAS-Bench-201 does not have is a one-line ValueError."""
    if auxiliary:
        raise ValueError("NAS-Bench-201 networks have no auxiliary head: set model.auxiliary=False")
    if drop_path_prob:
        raise ValueError("NAS-Bench-201 networks have no drop path: set model.drop_path_prob=0")
    if reductions:
        raise ValueError("NAS-Bench-201's reduction blocks are fixed: leave model.reductions empty")
    return NB201Network(
        arch,
        num_classes,
        init_channels=init_channels,
        cells_per_stage=layers,
        cfg=cfg or OpsConfig(),
        scan_cells=scan_cells,
    )


def variables_from_supernet(
    supernet_variables: dict[str, Any],
    arch: NB201Arch,
    primitives: Sequence[str] = NB201_PRIMITIVES,
) -> dict[str, Any]:
    """The variables of ``NB201Network(arch, affine=False)`` taken from a supernet's.

    Edge ``e``'s op of cell ``i`` in stage ``s`` is the supernet's
    ``stage_s/cell/edges/edge/<op>`` at position ``(i, e)`` of the (cells, edges)
    scan axes; stem, reduction blocks, last BN and classifier are copied as they are.
    ``none`` edges have no variables.  Used to check that a supernet whose op weights
    are one-hot on ``arch`` computes the discrete network.
    """
    del primitives  # ops are found by name
    out: dict[str, Any] = {}
    for col, tree in supernet_variables.items():
        if col == "arch":
            continue
        new = {}
        for key, val in tree.items():
            if not key.startswith("stage_"):
                new[key] = val
                continue
            edges = val["cell"]["edges"]["edge"]
            cell = {}
            for e, op in enumerate(arch.ops):
                if op in edges:
                    cell[f"edge_{e}"] = jax.tree.map(lambda a, e=e: a[:, e], edges[op])
            if cell:
                new[key] = {"cell": cell}
        out[col] = new
    return out
