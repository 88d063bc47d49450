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
from collections.abc import Callable, Sequence
from typing import Any

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


def resolve_remat(setting: bool | None, backend: str | None = None) -> bool:
    """``model.remat``: recompute each mixed edge's intermediates in the backward pass.

    ``True`` / ``False`` as set; ``None`` (the default, "auto"): on for the CPU backend,
    off elsewhere.  Measured on a 2-core CPU (the DARTS search step; docs/benchmarks.md,
    "Rematerialisation on the CPU"), rematerialising is *faster* there as well as
    smaller: the saved intermediates of every op of every edge are written once and read
    once, and the memory pages that hold them are faulted in again every step (first
    order, separate phases, at (16, 8, 64): 23.6 -> 19.5 s, peak RSS 18.1 -> 3.6 GB; at
    (8, 5, 16): 1.68 -> 1.48 s).  Not measured on a GPU, where a paper-size search's
    intermediates fit and recomputing them adds forward FLOPs: off there.

    Args:
      setting: the config value (``True``, ``False`` or ``None``).
      backend: ``jax.default_backend()`` when None.
    """
    if setting is None:
        return (backend or jax.default_backend()) == "cpu"
    if not isinstance(setting, bool):
        raise ValueError(f"model.remat must be true, false or null (auto), got {setting!r}")
    return setting


class Mixer:
    """How an edge mixes its candidate ops: the base class of every method's mixer.

    A mixer is a frozen dataclass (hashable: the supernet holds it as a module
    attribute) that subclasses this class and defines

    * ``init_arch(rng, shape)``: the architecture variable of one cell,
      ``shape = (n_edges, n_ops)``;
    * ``edge_weights(arch, rng=None, step_input=None)``: the per-edge op weights
      ``(n_edges, n_ops)``.  ``rng`` is a key of the supernet's ``"mixer"`` stream
      when the mixer sets ``stochastic = True`` (else ``None``); ``step_input`` is
      the pytree of traced per-step values that the method passes to the supernet's
      ``__call__`` (e.g. GDAS' temperature ``{"tau": tau}``; ``None`` when it passes
      none), so annealing a value never recompiles the step.  Default: ``arch``
      itself (free op weights: BayesNAS' gates, SparseNAS' ``A``, PR-DARTS' gate
      weights, ASM-NAS' selection mask); DARTS' softmax and GDAS' sample override it.

    The other hooks have defaults, which a method overrides where it differs; the
    edge (:class:`MixedEdge`) calls each of them, in this order:

    * ``edge_input(x, w) -> x'``: the tensor every op of the edge reads, from the
      edge input ``x`` and the edge's weights ``w`` ``(n_ops,)``.  Default: ``x``
      (BayesNAS: its zero-op node ``i' = w[0] x``, Sec. 4.2).
    * ``active(w) -> (n_ops,) bool | None``: the ops to compute.  Default ``None``:
      all.  The others run the skip branch of a ``lax.cond`` that returns zeros, so
      neither their forward nor their backward pass is computed and their BN
      statistics are not updated; their outputs are exact zeros in value and
      gradient.  Skipping changes nothing where a skipped op's weight is 0 with a
      zero gradient (PR-DARTS' masked gates); for GDAS it *is* the estimator (only
      the sampled op is computed).  Every op's parameters are still created at init.
      Where the mixer also bounds the active ops per edge (``max_active``) and combines
      by :func:`weighted_sum` (:meth:`combines_by_weighted_sum`), an edge whose output
      has at least :data:`ACTIVE_SWITCH_MIN_SIZE` elements runs one ``lax.switch`` over
      the ops per slot instead, and a skipped op costs nothing at all (no zero output
      to multiply, add and differentiate).
    * ``combiner(name) -> nn.Module | None``: a Flax module with weights of its own
      (ASM-NAS' attention) that the edge calls as ``module(outs, w)`` in place of
      ``combine``.  It is created inside the edge, so its parameters are per-edge
      network weights (``"params"``, stacked along the edges' scan axis like the
      ops' own) and it may ``sow`` into ``"intermediates"``.  Default ``None``.
    * ``combine(outs, w)``: mixes the op outputs of one edge (``outs[o]`` is
      ``None`` for the zero op).  Default: :func:`weighted_sum`, ``sum_o w_o
      outs[o]`` (DARTS Eq. 1 with softmax weights).
    """

    #: True: ``edge_weights`` draws random numbers from the ``rng`` it is given
    stochastic: bool = False
    #: the most ops :meth:`active` marks on one edge (None: no bound; every op gets a
    #: ``lax.cond`` of its own)
    max_active: int | None = None

    def init_arch(self, rng: jax.Array, shape: tuple[int, int]) -> jax.Array:
        """The architecture variable of one cell, ``shape = (n_edges, n_ops)``."""
        raise NotImplementedError

    def edge_weights(
        self, arch: jax.Array, rng: jax.Array | None = None, step_input: Any = None
    ) -> jax.Array:
        """Per-edge op weights ``(n_edges, n_ops)`` from one cell's ``arch``; ``arch``
        itself by default."""
        del rng, step_input
        return arch

    def edge_input(self, x: jax.Array, w: jax.Array) -> jax.Array:
        """The tensor the edge's ops read; ``x`` itself by default."""
        del w
        return x

    def active(self, w: jax.Array) -> jax.Array | None:
        """Boolean ``(n_ops,)`` mask of the ops to compute; ``None`` (all) by default."""
        del w
        return None

    def combiner(self, name: str) -> nn.Module | None:
        """A per-edge Flax module used in place of :meth:`combine`; none by default."""
        del name
        return None

    def combine(self, outs: Sequence[jax.Array | None], w: jax.Array) -> jax.Array:
        """``sum_o w[o] * outs[o]`` (:func:`weighted_sum`)."""
        return weighted_sum(outs, w)

    def combines_by_weighted_sum(self) -> bool:
        """Whether :meth:`combine` is :func:`weighted_sum` (and there is no
        :meth:`combiner`).  Then, where :meth:`active` marks at most :attr:`max_active`
        ops (an int), the edge computes ``sum w[o] * O_o(x)`` over those ops only, one
        ``lax.switch`` per slot (:func:`_active_term`): a skipped op makes no zero
        tensor and adds none; the same sum to round-off.  Default: true when a
        subclass overrides neither."""
        cls = type(self)
        return cls.combine is Mixer.combine and cls.combiner is Mixer.combiner


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
class SoftmaxMixer(Mixer):
    """DARTS: ``w = softmax(alpha)`` over the ops of each edge (Eq. 1 of DARTS),
    alpha initialised as ``init_scale * N(0, 1)`` (``1e-3`` in the reference)."""

    init_scale: float = 1e-3
    stochastic: bool = False

    def init_arch(self, rng: jax.Array, shape: tuple[int, int]) -> jax.Array:
        """``init_scale * N(0, 1)`` of ``shape``."""
        return self.init_scale * jax.random.normal(rng, shape, jnp.float32)

    def edge_weights(
        self, arch: jax.Array, rng: jax.Array | None = None, step_input: Any = None
    ) -> jax.Array:
        """Row-wise softmax of alpha, ``(n_edges, n_ops)``."""
        del rng, step_input
        return jax.nn.softmax(arch, axis=-1)


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


#: the smallest edge output (elements) whose active ops :class:`MixedEdge` computes by a
#: ``lax.switch`` per slot (:func:`_active_term`).  Below it a ``lax.cond`` per op with
#: zeros for the skipped ones: as fast there, and it compiles each op once (one-process
#: A/B on the 2-core CPU under load, so a rough bound: PR-DARTS at C=8, 5 cells, batch
#: 16, edge outputs of 16*32*32*8 = 131k elements: 0.90 s per step and 41 s to compile,
#: against 0.96-0.99 s and 62-64 s by switches; at the paper size, outputs of 262k-1M
#: elements: 8.7 -> 5.7 s per step; docs/benchmarks.md).
ACTIVE_SWITCH_MIN_SIZE = 1 << 18


def _active_term(
    index: jax.Array,
    ops: Sequence[tuple[str, nn.Module]],
    x: jax.Array,
    w: jax.Array,
    train: bool,
    parent: nn.Module,
    stride: int,
) -> jax.Array:
    """``w[o] * ops[index][1](x)``, or zeros of the output shape if ``index ==
    len(ops)``: one active op's term of :func:`weighted_sum`, the op chosen at run
    time (a lifted ``lax.switch``; ``w`` is the edge's weights over ``ops``).

    Only the chosen branch runs, forward and backward; each op is bound under its
    name in ``parent``, the path it has when it runs unconditionally.
    """

    def branch(k: int, name: str, op: nn.Module):
        def run(mdl: nn.Module, x: jax.Array, w: jax.Array) -> jax.Array:
            return w[k] * op.clone(parent=mdl, name=name)(x, train)

        return run

    def nothing(mdl: nn.Module, x: jax.Array, w: jax.Array) -> jax.Array:
        del mdl
        y = x[:, ::stride, ::stride]
        return jnp.zeros(y.shape, jnp.result_type(w.dtype, y.dtype))

    branches = [branch(k, name, op) for k, (name, op) in enumerate(ops)] + [nothing]
    return nn.switch(index, branches, parent, x, w)


def darts_search_op(name: str, channels: int, stride: int, cfg: OpsConfig) -> nn.Module:
    """DARTS' search op ``name`` (``affine=False`` BN, ``jaxnas.ops.make_op``)."""
    return make_op(name, channels, stride, affine=False, search=True, cfg=cfg)


class MixedEdge(nn.Module):
    """All candidate ops on one edge, combined by the mixer (``MixedOp``).

    ``(x (B, H, W, C), w (n_ops,)) -> (B, H/stride, W/stride, C)``.  The mixer's hooks
    (:class:`Mixer`), in order: ``edge_input`` (what the ops read), ``active`` (only
    the ops it marks are computed; the others' outputs are zeros), ``combiner`` or
    ``combine``.  ``op_factory(name, channels, stride, cfg)`` builds a candidate op
    (every name but ``"none"``): DARTS' search ops by default, NAS-Bench-201's in
    ``jaxnas.models.nb201_net``.
    """

    primitives: tuple[str, ...]
    stride: int
    mixer: Mixer
    train: bool
    cfg: OpsConfig = OpsConfig()
    op_factory: Callable[[str, int, int, OpsConfig], nn.Module] = darts_search_op

    @nn.compact
    def __call__(self, x: jax.Array, w: jax.Array) -> jax.Array:
        c = x.shape[-1]
        x = self.mixer.edge_input(x, w)
        # at init every op runs, so that all parameters exist whatever is active later
        on = None if self.is_initializing() else self.mixer.active(w)
        if (
            on is not None
            and self.mixer.max_active is not None
            and self.mixer.combines_by_weighted_sum()
            and x[:, :: self.stride, :: self.stride].size >= ACTIVE_SWITCH_MIN_SIZE
        ):
            return self._active_sum(x, w, on)
        outs = []
        for o, name in enumerate(self.primitives):
            if name == "none":
                outs.append(None)  # the zero op: contributes w * 0 to a weighted sum
                continue
            op = self.op_factory(name, c, self.stride, self.cfg)
            if on is None:
                # bind the op under its primitive name: params read like the op list
                outs.append(op.clone(parent=self, name=name)(x, self.train))
            else:
                outs.append(_run_if(on[o], op, name, x, self.train, self, self.stride))
        combiner = self.mixer.combiner("mixer")
        if combiner is not None:  # a mixer with weights of its own (see ``Mixer``)
            return combiner(outs, w)
        return self.mixer.combine(outs, w)

    def _active_sum(self, x: jax.Array, w: jax.Array, on: jax.Array) -> jax.Array:
        """:func:`weighted_sum` of the (at most ``mixer.max_active``) ops marked ``on``:
        one :func:`_active_term` per slot, the slots taking the active ops in the op
        order (so the terms add in :func:`weighted_sum`'s order).

        Each slot compiles its own switch: a scan over the slots, compiling one switch
        once, ran slower than even a ``lax.cond`` per op (docs/benchmarks.md, "Only
        the sampled ops")."""
        ops = [
            (o, name, self.op_factory(name, x.shape[-1], self.stride, self.cfg))
            for o, name in enumerate(self.primitives)
            if name != "none"
        ]
        if not ops:
            raise ValueError("an edge needs at least one op besides 'none'")
        cols = np.array([o for o, _, _ in ops])
        # the active ops' positions in ``ops``, ascending; len(ops) (no op) fills the rest
        (slots,) = jnp.nonzero(on[cols], size=self.mixer.max_active, fill_value=len(ops))
        named = [(name, op) for _, name, op in ops]
        total = None
        for k in range(self.mixer.max_active):
            # slot k holds the k-th active op, so never one of the first k
            term = _active_term(
                slots[k] - k, named[k:], x, w[cols[k:]], self.train, self, self.stride
            )
            total = term if total is None else total + term
        return total


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
    mixer: Mixer = SoftmaxMixer()
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
    def __call__(self, x: jax.Array, train: bool = True, step_input: Any = None) -> jax.Array:
        """Logits ``(B, num_classes)``; ``step_input`` (traced per-step values, see
        :class:`Mixer`) goes to the mixer's ``edge_weights``."""
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
            weights[name] = self.mixer.edge_weights(a, rng, step_input)

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
