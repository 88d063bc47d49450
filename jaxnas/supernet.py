"""The search network: DARTS cells stacked into a supernet, parameterised by an
edge *mixer*.

Reference: ``model_search.py`` of the DARTS code (Liu et al., 2019, Sec. 2.1).
Every edge (i -> j) of a cell computes all candidate ops ``o(x_i)`` and a mixer
combines them; DARTS' mixer is the softmax-weighted sum of Eq. (1)

    o_bar(x) = sum_o softmax(alpha)_o * o(x).

Methods differ only in the mixer: how the architecture variables turn into
per-edge weights (``edge_weights``) and how an edge combines its op outputs
(``combine``).  Everything else here is shared.

Variable collections::

    model.apply({"params": w, "arch": a, "batch_stats": s}, x, train=True,
                mutable=["batch_stats"])

``"arch"`` holds one ``(n_edges, n_ops)`` array per cell type (``"normal"``,
``"reduce"``) or, with ``arch_sharing="cell"``, one per cell (``"layer_00"``,
...), so ``jax.grad`` with respect to weights and to architecture gives two
separate pytrees.

Compile time: every cell runs its edges with ``nn.scan``, so one compiled body
serves all the edges of a cell; a normal cell is one scan over its 14 edges
(carry: the stack of node tensors), a reduction cell one scan over its 8
strided input edges and one over its 6 inner edges.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Protocol

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxnas.ops import (
    DARTS_PRIMITIVES,
    FactorizedReduce,
    OpsConfig,
    ReLUConvBN,
    batch_norm,
    make_op,
)
from jaxnas.spaces.darts import DARTS_CELL, CellTopology


class Mixer(Protocol):
    """How an edge mixes its candidate ops; each method supplies one.

    ``init_arch(rng, shape)`` creates the architecture variable of one cell
    (``shape = (n_edges, n_ops)``); ``edge_weights(arch, rng)`` maps it to
    per-edge op weights ``(n_edges, n_ops)`` (``rng`` is ``None`` unless the
    mixer sets ``stochastic = True``); ``combine(outs, w)`` mixes the op outputs
    of one edge (``outs[o]`` is ``None`` for the zero op) with its weights
    ``w`` of shape ``(n_ops,)``.

    Optional hook for mixers whose combination has its own weights (ASM-NAS's
    attention over the op outputs): ``combiner()`` returns a Flax module that is
    called as ``combiner(outs, w)`` instead of ``combine``.  It is created inside
    the edge, so its parameters are per-edge network weights (``"params"``,
    stacked along the edges' scan axis like the ops' own) and it may ``sow``
    diagnostics into ``"intermediates"`` (stacked the same way).

    Optional hook for mixers that use only a few ops per edge (PR-DARTS: two
    sampled ops): ``active(w)`` maps the edge's weights ``(n_ops,)`` to a boolean
    ``(n_ops,)`` array (traced) of the ops to compute; the edge runs every other
    op's branch of a ``lax.cond`` that returns zeros instead, so neither its
    forward nor its backward pass is computed and its BN statistics are not
    updated.  Valid only where such an op's weight is exactly 0 *with a zero
    gradient* (a masked weight), so that skipping changes no value and no
    gradient.  Every op's parameters are still created at init.

    Optional hook for a gate on the edge's *input* (BayesNAS' zero-op node
    ``i'``, Sec. 4.2): ``edge_input(x, w)`` maps the edge input ``x`` and the
    edge's weights ``(n_ops,)`` to the tensor every op of the edge reads.
    """

    stochastic: bool

    def init_arch(self, rng: jax.Array, shape: tuple[int, int]) -> jax.Array: ...

    def edge_weights(self, arch: jax.Array, rng: jax.Array | None) -> jax.Array: ...

    def combine(self, outs: Sequence[jax.Array | None], w: jax.Array) -> jax.Array: ...


def weighted_sum(outs: Sequence[jax.Array | None], w: jax.Array) -> jax.Array:
    """``sum_o w[o] * outs[o]``; a ``None`` output (the zero op) adds exactly 0."""
    terms = [w[o] * y for o, y in enumerate(outs) if y is not None]
    if not terms:
        raise ValueError("an edge needs at least one op besides 'none'")
    total = terms[0]
    for t in terms[1:]:
        total = total + t
    return total


@dataclasses.dataclass(frozen=True)
class SoftmaxMixer:
    """DARTS: ``w = softmax(alpha)`` over the ops of each edge (Eq. 1 of DARTS),
    alpha initialised as ``init_scale * N(0, 1)`` (``1e-3`` in the reference)."""

    init_scale: float = 1e-3
    stochastic: bool = False

    def init_arch(self, rng: jax.Array, shape: tuple[int, int]) -> jax.Array:
        """``init_scale * N(0, 1)`` of ``shape``."""
        return self.init_scale * jax.random.normal(rng, shape, jnp.float32)

    def edge_weights(self, arch: jax.Array, rng: jax.Array | None = None) -> jax.Array:
        """Row-wise softmax of alpha, ``(n_edges, n_ops)``."""
        del rng
        return jax.nn.softmax(arch, axis=-1)

    def combine(self, outs: Sequence[jax.Array | None], w: jax.Array) -> jax.Array:
        """Weighted sum of the op outputs."""
        return weighted_sum(outs, w)


def _run_if(
    pred: jax.Array,
    op: nn.Module,
    name: str,
    x: jax.Array,
    train: bool,
    parent: nn.Module,
    stride: int,
) -> jax.Array:
    """``op(x)`` if ``pred`` else zeros of the op's output shape (``x[:, ::s, ::s]``).

    A lifted ``lax.cond``: on one device only the taken branch runs, in the
    forward and in the backward pass (the untaken op's gradients are zeros).
    The op is bound under ``name`` in ``parent``, the same path as when it runs
    unconditionally, so the parameters are those created at init.
    """

    def run(mdl: nn.Module, x: jax.Array) -> jax.Array:
        return op.clone(parent=mdl, name=name)(x, train)

    def skip(mdl: nn.Module, x: jax.Array) -> jax.Array:
        del mdl
        return jnp.zeros_like(x[:, ::stride, ::stride])

    return nn.cond(pred, run, skip, parent, x)


class MixedEdge(nn.Module):
    """All candidate ops on one edge, combined by the mixer (``MixedOp``).

    With a mixer that has the ``active`` hook (see :class:`Mixer`) only the ops
    it marks are computed; the others' outputs are zeros."""

    primitives: tuple[str, ...]
    stride: int
    mixer: Any
    train: bool
    cfg: OpsConfig = OpsConfig()

    @nn.compact
    def __call__(self, x: jax.Array, w: jax.Array) -> jax.Array:
        c = x.shape[-1]
        edge_input = getattr(self.mixer, "edge_input", None)  # see ``Mixer``
        if edge_input is not None:
            x = edge_input(x, w)
        active = getattr(self.mixer, "active", None)  # see ``Mixer``: compute only these ops
        # at init every op runs, so that all parameters exist whatever is active later
        on = None if active is None or self.is_initializing() else active(w)
        outs = []
        for o, name in enumerate(self.primitives):
            if name == "none":
                outs.append(None)  # the zero op: contributes w * 0 to a weighted sum
                continue
            op = make_op(name, c, self.stride, affine=False, search=True, cfg=self.cfg)
            if on is None:
                # bind the op under its primitive name: params read like the op list
                outs.append(op.clone(parent=self, name=name)(x, self.train))
            else:
                outs.append(_run_if(on[o], op, name, x, self.train, self, self.stride))
        combiner = getattr(self.mixer, "combiner", None)
        if combiner is not None:  # a mixer with weights of its own (see ``Mixer``)
            return combiner(name="mixer")(outs, w)
        return self.mixer.combine(outs, w)


class _EdgeBody(nn.Module):
    """What the scan bodies share: one mixed edge, optionally rematerialised
    (keep only the edge input for the backward pass and recompute the ops'
    intermediates: about 1/3 more compute for a fraction of the memory)."""

    primitives: tuple[str, ...]
    stride: int
    mixer: Any
    train: bool
    cfg: OpsConfig = OpsConfig()
    remat: bool = False

    def edge(self, x: jax.Array, w: jax.Array) -> jax.Array:
        cls = nn.remat(MixedEdge) if self.remat else MixedEdge
        return cls(self.primitives, self.stride, self.mixer, self.train, self.cfg, name="edge")(
            x, w
        )


class _EdgeIntoBuffer(_EdgeBody):
    """Scan body: read node ``src`` from the node stack, add the edge output to ``dst``."""

    @nn.compact
    def __call__(self, nodes: jax.Array, xs: tuple[jax.Array, jax.Array, jax.Array]):
        src, dst, w = xs
        y = self.edge(jax.lax.dynamic_index_in_dim(nodes, src, keepdims=False), w)
        nodes = jax.lax.dynamic_update_index_in_dim(
            nodes, jax.lax.dynamic_index_in_dim(nodes, dst, keepdims=False) + y, dst, 0
        )
        return nodes, None


class _EdgeFromInputs(_EdgeBody):
    """Scan body for strided edges: the inputs are a broadcast carry, outputs are stacked."""

    @nn.compact
    def __call__(self, inputs: jax.Array, xs: tuple[jax.Array, jax.Array]):
        src, w = xs
        return inputs, self.edge(jax.lax.dynamic_index_in_dim(inputs, src, keepdims=False), w)


def _scan(body: type[nn.Module], n: int) -> type[nn.Module]:
    return nn.scan(
        body,
        variable_axes={"params": 0, "batch_stats": 0, "intermediates": 0},
        split_rngs={"params": True},
        in_axes=0,
        length=n,
    )


class SearchCell(nn.Module):
    """One DARTS search cell (``model_search.Cell``).

    Inputs ``s0, s1`` are the outputs of the cells k-2 and k-1; ``w`` is the
    ``(n_edges, n_ops)`` op weights.  Output: ``(B, H', W', n_nodes * C)``.
    """

    channels: int
    reduction: bool
    reduction_prev: bool
    primitives: tuple[str, ...]
    mixer: Any
    train: bool
    topology: CellTopology = DARTS_CELL
    cfg: OpsConfig = OpsConfig()
    remat: bool = False

    @nn.compact
    def __call__(self, s0: jax.Array, s1: jax.Array, w: jax.Array) -> jax.Array:
        c, top, cfg = self.channels, self.topology, self.cfg
        if self.reduction_prev:
            s0 = FactorizedReduce(c, affine=False, cfg=cfg, name="preprocess0")(s0, self.train)
        else:
            s0 = ReLUConvBN(c, affine=False, cfg=cfg, name="preprocess0")(s0, self.train)
        s1 = ReLUConvBN(c, affine=False, cfg=cfg, name="preprocess1")(s1, self.train)
        src = np.array([s for s, _ in top.edges], np.int32)
        dst = np.array([d for _, d in top.edges], np.int32)
        args = (self.primitives,)
        kw = dict(remat=self.remat)
        if not self.reduction:
            zeros = jnp.zeros((top.n_nodes, *s1.shape), s1.dtype)
            nodes = jnp.concatenate([jnp.stack([s0, s1]), zeros])
            body = _scan(_EdgeIntoBuffer, top.n_edges)
            nodes, _ = body(*args, 1, self.mixer, self.train, cfg, **kw, name="edges")(
                nodes, (src, dst, w)
            )
            inter = nodes[top.n_inputs :]
        else:
            ie, ne = np.array(top.input_edges), np.array(top.inner_edges)
            body = _scan(_EdgeFromInputs, len(ie))
            _, ys = body(*args, 2, self.mixer, self.train, cfg, **kw, name="input_edges")(
                jnp.stack([s0, s1]), (src[ie], w[ie])
            )
            # each intermediate node starts as the sum of its strided input edges
            inter = jnp.stack(
                [
                    sum(ys[k] for k, e in enumerate(ie) if dst[e] == top.n_inputs + n)
                    if any(dst[e] == top.n_inputs + n for e in ie)
                    else jnp.zeros_like(ys[0])
                    for n in range(top.n_nodes)
                ]
            )
            if len(ne):
                body = _scan(_EdgeIntoBuffer, len(ne))
                inter, _ = body(*args, 1, self.mixer, self.train, cfg, **kw, name="inner_edges")(
                    inter, (src[ne] - top.n_inputs, dst[ne] - top.n_inputs, w[ne])
                )
        return jnp.concatenate(list(inter), axis=-1)


def reduction_layers(layers: int) -> tuple[int, ...]:
    """Positions of the reduction cells: 1/3 and 2/3 of the depth (DARTS)."""
    return (layers // 3, 2 * layers // 3)


def resolve_reductions(layers: int, reductions: Sequence[int] | None) -> tuple[int, ...]:
    """``reductions`` (0-based cell indices) checked, or :func:`reduction_layers` if None."""
    if reductions is None:
        return reduction_layers(layers)
    red = tuple(sorted({int(r) for r in reductions}))
    if any(not 0 <= r < layers for r in red):
        raise ValueError(f"reduction cells {red} out of range for {layers} layers")
    return red


class SuperNet(nn.Module):
    """The DARTS search network (``model_search.Network``).

    Stem: 3x3 conv to ``stem_multiplier * C`` channels + BN; ``layers`` cells,
    channels doubling at each reduction cell; global average pool; linear
    classifier.  ``__call__(x (B, H, W, C_in), train) -> logits (B, classes)``.
    """

    num_classes: int
    init_channels: int = 16
    layers: int = 8
    stem_multiplier: int = 3
    primitives: tuple[str, ...] = DARTS_PRIMITIVES
    mixer: Any = SoftmaxMixer()
    topology: CellTopology = DARTS_CELL
    arch_sharing: str = "cell_type"  # "cell_type" (normal/reduce) | "cell" (one per layer)
    cfg: OpsConfig = OpsConfig()
    remat: bool = False  # recompute each edge's intermediates in the backward pass
    # 0-based reduction cells; None: DARTS' ``layers // 3, 2 * layers // 3``
    reductions: tuple[int, ...] | None = None

    def reduction_cells(self) -> tuple[int, ...]:
        """0-based indices of the reduction cells."""
        return resolve_reductions(self.layers, self.reductions)

    def arch_names(self) -> tuple[str, ...]:
        """Names of the arrays in the ``"arch"`` collection."""
        if self.arch_sharing == "cell_type":
            return ("normal", "reduce")
        if self.arch_sharing == "cell":
            return tuple(f"layer_{i:02d}" for i in range(self.layers))
        raise ValueError(f"arch_sharing must be 'cell_type' or 'cell', got {self.arch_sharing!r}")

    def arch_name(self, layer: int) -> str:
        """The ``"arch"`` entry that cell ``layer`` uses."""
        if self.arch_sharing == "cell":
            return f"layer_{layer:02d}"
        return "reduce" if layer in self.reduction_cells() else "normal"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        shape = (self.topology.n_edges, len(self.primitives))
        arch = {
            name: self.variable(
                "arch", name, lambda: self.mixer.init_arch(self.make_rng("params"), shape)
            ).value
            for name in self.arch_names()
        }
        for name, a in arch.items():
            if a.shape != shape:
                raise ValueError(f"arch[{name!r}] has shape {a.shape}, expected {shape}")
        weights = {}
        for name, a in arch.items():
            rng = self.make_rng("mixer") if self.mixer.stochastic else None
            weights[name] = self.mixer.edge_weights(a, rng)

        c_stem = self.stem_multiplier * self.init_channels
        s = nn.Conv(c_stem, (3, 3), padding=((1, 1), (1, 1)), use_bias=False, name="stem_conv")(x)
        s = batch_norm(train, True, name="stem_bn")(s)
        s0 = s1 = s
        c, reduction_prev = self.init_channels, False
        red = self.reduction_cells()
        for i in range(self.layers):
            reduction = i in red
            c = c * 2 if reduction else c
            cell = SearchCell(
                c,
                reduction,
                reduction_prev,
                self.primitives,
                self.mixer,
                train,
                self.topology,
                self.cfg,
                self.remat,
                name=f"cell_{i:02d}",
            )
            s0, s1 = s1, cell(s0, s1, weights[self.arch_name(i)])
            reduction_prev = reduction
        out = jnp.mean(s1, axis=(1, 2))
        return nn.Dense(self.num_classes, name="classifier")(out)
