"""ASM-NAS: architecture self-attention over the candidate ops (Hao & Zhu, 2021).

Source: ``shared/seeds/002_8806e929ce68ba18.txt`` (digest ``shared/spec/002_asm_nas.md``).

The supernet is the DARTS one (``jaxnas.supernet.SuperNet``) with L = 15 cells and
**one architecture per cell** (``arch_sharing="cell"``): no free logits alpha;
every edge of every cell mixes its ops through its own attention module
(:class:`AttentionCombiner`, 15 x 14 = 210 modules):

* Eq. (4.3)  ``e^k = mean_{H, W, C} y^k`` per sample -> ``E`` of shape ``(B, |O|)``;
  the ``none`` op contributes an exact zero;
* Eq. (4.4)  ``z = sigmoid(T4 relu(T3 relu(T2 relu(T1 E))))``, 4 dense layers;
* Eq. (4.5)  ``a = softmax(z)`` over the ops.  Because ``z`` is in (0, 1) every
  coefficient lies in ``(1 / (1 + 7e), e / (e + 7)) = (0.04993, 0.27971)`` for
  8 ops (the paper's method; kept);
* Eq. (4.2)  edge output ``sum_k a^k y^k``.

The attention weights Theta are ordinary network weights (``"params"``).

Algorithm 1 as ``train_step`` (lines 3-5) and :meth:`ASMNAS.select` (lines 6-13):

1. **Single-level training** (line 4): ``(w, Theta) <- SGD(grad_{w, Theta}
   L_train)`` with momentum 0.9, weight decay 3e-4 and a cosine learning rate
   0.025 -> 0 (Sec. 5.1).  No architecture optimiser, no hypergradient.  The
   runner's ``train_batch`` (the first ``data.portion`` of the training split)
   trains; its ``valid_batch`` (the rest, the paper's "second part for
   architecture selection", Sec. 5) is **not trained on**: the step only keeps
   the first ``search.probe_batches`` of them in the state as a fixed held-out
   *probe* for the per-epoch genotype and attention plots.
2. **Selection without gradients** (lines 6-13): forward passes over held-out
   data accumulate the attention coefficients per edge per cell; each edge keeps
   its argmax op (Alg. 1 line 10: every edge, no top-2 rule; a ``none`` winner
   removes the edge).  ``search.selection = "cell_by_cell"`` is Algorithm 1
   literally (cell l is read while the cells before it are already discretised);
   ``"one_pass"`` reads all cells from one pass over the undiscretised supernet
   (the text's "structure ... remain[s] fixed").  The genotype records the
   supernet's reduction cells (``Genotype.reductions``; ``(4, 9)`` for the paper's
   15 cells), so retraining (``jaxnas train --genotype``) builds the 15 cells with
   their reductions where they were searched (Sec. 5.2: "the 5th and 10th cells").

The ``"arch"`` collection holds no trained variables, only what selection
writes and reads: per cell (``"layer_00"`` ...) an ``(n_edges, n_ops)``
**selection mask**, all ones while an edge is mixed by its attention and one-hot
once it is discretised (the kept op gets weight 1, Alg. 1 line 10).  The
stability study (``experiments/asmnas_stability.py``) uses the same mask to
replace one mixed op at a time.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterable, Sequence
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxnas.optional import require
from jaxnas.search.method import SearchMethodBase, check_choices, supernet_config
from jaxnas.spaces.darts import DARTS_CELL, CellTopology
from jaxnas.spaces.darts_derive import derive_cell
from jaxnas.spaces.darts_genotype import CellGenotype, Genotype, save
from jaxnas.supernet import Mixer

__all__ = [
    "ASMMixer",
    "ASMNAS",
    "ASMState",
    "ArchSelfAttention",
    "AttentionCombiner",
    "Selection",
    "attention_bounds",
    "cells_from_choice",
    "default_config",
    "op_embeddings",
    "plot_attention",
    "save_selection",
]

SELECTIONS = ("cell_by_cell", "one_pass")
AGGREGATES = ("mean", "vote")
DERIVES = ("all_edges", "darts_top2")


def default_config() -> ml_collections.ConfigDict:
    """Method-specific keys of ASM-NAS with the paper's values (Sec. 5.1)."""
    c = ml_collections.ConfigDict()
    # reductions: 0-based reduction cells; () = DARTS' layers // 3, 2 * layers // 3. The
    # paper: the 5th and 10th of 15 cells. The selected genotype records them.
    # attention_hidden: widths of Theta_1..Theta_3 (Eq. 4.4; the paper gives none).
    # attention_batch_mean: average E over the batch too (ablation; Eq. 4.3 is per sample).
    c.model = supernet_config(
        layers=15, reductions=(4, 9), attention_hidden=(16, 16, 16), attention_batch_mean=False
    )
    # lr_min 0: "annealed down to zero following a cosine schedule" (Sec. 5.1);
    # grad_clip (0 = off) is DARTS' 5, the paper gives none.
    c.optim = ml_collections.ConfigDict(
        dict(lr=0.025, lr_min=0.0, momentum=0.9, weight_decay=3e-4, grad_clip=5.0)
    )
    # selection: "cell_by_cell" (Alg. 1 lines 7-12) | "one_pass";
    # aggregate: "mean" (argmax of the mean coefficient) | "vote" (per-sample argmax counts);
    # derive: "all_edges" (Alg. 1: every edge keeps its argmax op) | "darts_top2" (ablation);
    # select_bn: "eval" (running statistics) | "train" (batch statistics) during selection;
    # probe_batches: held-out batches kept in the state for the per-epoch genotype/plots.
    c.search = ml_collections.ConfigDict(
        dict(
            epochs=30,
            selection="cell_by_cell",
            aggregate="mean",
            derive="all_edges",
            select_bn="eval",
            probe_batches=1,
        )
    )
    return c


def attention_bounds(n_ops: int) -> tuple[float, float]:
    """The range of a sigmoid-then-softmax coefficient (Eq. 4.4-4.5): ``z in (0, 1)``
    gives ``a in (1 / (1 + (n-1) e), e / (e + n - 1))``; (0.04993, 0.27971) for 8 ops."""
    return 1.0 / (1.0 + (n_ops - 1) * math.e), math.e / (math.e + n_ops - 1)


# ------------------------------------------------------------------ the attention module


def op_embeddings(outs: Sequence[jax.Array | None]) -> jax.Array:
    """Eq. (4.3): ``e^k = 1/(HWC) sum_{l,m,n} y^k[l, m, n]`` per sample, ``(B, n_ops)``
    in float32; an op output ``None`` (the zero op) gives an exact 0."""
    ref = next(y for y in outs if y is not None)
    zero = jnp.zeros((ref.shape[0],), jnp.float32)
    cols = [zero if y is None else jnp.mean(y.astype(jnp.float32), axis=(1, 2, 3)) for y in outs]
    return jnp.stack(cols, axis=-1)


class ArchSelfAttention(nn.Module):
    """Eq. (4.4)-(4.5): ``a = softmax(sigmoid(T4 relu(T3 relu(T2 relu(T1 E)))))``.

    ``E``: ``(B, n_ops)`` -> ``a``: ``(B, n_ops)``, rows on the simplex and inside
    :func:`attention_bounds`.  Dense layers with bias, Flax default init
    (LeCun normal kernels, zero biases): at init ``z`` is near 0.5 and ``a`` near
    uniform.
    """

    hidden: tuple[int, ...] = (16, 16, 16)

    @nn.compact
    def __call__(self, e: jax.Array) -> jax.Array:
        h = e
        for i, width in enumerate(self.hidden):
            h = nn.relu(nn.Dense(width, name=f"fc{i + 1}")(h))  # delta(Theta_i ...)
        z = nn.sigmoid(nn.Dense(e.shape[-1], name=f"fc{len(self.hidden) + 1}")(h))  # (4.4)
        return jax.nn.softmax(z, axis=-1)  # (4.5)


class AttentionCombiner(nn.Module):
    """One edge's mixed op, Eq. (4.2) with the attention of Eq. (4.3)-(4.5).

    Call ``(outs, w)``: ``outs[k]`` is op ``k``'s output ``(B, H, W, C)`` (``None``
    for the zero op), ``w`` the edge's row of the selection mask ``(n_ops,)``.  A
    row of all ones (mixed) gives ``sum_k a^k y^k`` with the per-sample
    coefficients ``a``; any other row (one-hot after selection) is used as fixed
    op weights.  ``a`` is sown as ``intermediates/.../coefficients`` either way, so
    selection can read cell l while earlier cells are discretised.
    """

    hidden: tuple[int, ...] = (16, 16, 16)
    batch_mean: bool = False

    @nn.compact
    def __call__(self, outs: Sequence[jax.Array | None], w: jax.Array) -> jax.Array:
        e = op_embeddings(outs)  # (4.3)
        if self.batch_mean:
            e = jnp.broadcast_to(jnp.mean(e, axis=0, keepdims=True), e.shape)
        a = ArchSelfAttention(self.hidden, name="attention")(e)  # (4.4)-(4.5)
        self.sow("intermediates", "coefficients", a)
        coef = jnp.where(jnp.all(w > 0), a, jnp.broadcast_to(w.astype(a.dtype), a.shape))
        terms = [
            coef[:, k, None, None, None].astype(y.dtype) * y
            for k, y in enumerate(outs)
            if y is not None
        ]
        total = terms[0]
        for t in terms[1:]:
            total = total + t
        return total  # (4.2)


@dataclasses.dataclass(frozen=True)
class ASMMixer(Mixer):
    """The ``jaxnas.supernet.Mixer`` of ASM-NAS: its ``combiner`` hook puts an
    :class:`AttentionCombiner` on every edge; the ``"arch"`` array of a cell is
    the selection mask (ones at init)."""

    hidden: tuple[int, ...] = (16, 16, 16)
    batch_mean: bool = False
    stochastic: bool = False

    def init_arch(self, rng: jax.Array, shape: tuple[int, int]) -> jax.Array:
        """All ones: every edge mixed by its attention."""
        del rng
        return jnp.ones(shape, jnp.float32)

    def combiner(self, name: str) -> AttentionCombiner:
        """The per-edge attention module (created inside the edge)."""
        return AttentionCombiner(self.hidden, self.batch_mean, name=name)


# ------------------------------------------------------------------ state and selection


class ASMState(flax.struct.PyTreeNode):
    """The search state (a pytree of arrays)."""

    step: jax.Array  # int32 scalar
    params: Any  # w and Theta
    arch: Any  # selection masks {"layer_00": (n_edges, n_ops), ...}; never trained
    batch_stats: Any
    w_opt: optax.OptState
    rng: jax.Array  # raw uint32 key (kept for the runner's checkpoints; unused)
    probe: jax.Array  # (probe_batches, B, H, W, C) held-out images


@dataclasses.dataclass(frozen=True)
class Selection:
    """What a selection found.

    Attributes:
      genotype: per-layer :class:`Genotype` (``cells``).
      choice: ``(L, n_edges)`` chosen op index per edge.
      coefficients: ``(L, n_edges, n_ops)`` mean attention coefficients (cell l read
        with cells < l discretised in the cell-by-cell form).
      votes: ``(L, n_edges, n_ops)`` fraction of samples whose argmax is each op.
      examples: held-out images seen per pass.
      mode, aggregate: how it was selected.
    """

    genotype: Genotype
    choice: np.ndarray
    coefficients: np.ndarray
    votes: np.ndarray
    examples: int
    mode: str
    aggregate: str


def _cell_attention(inter: Any, reduction: bool, topology: CellTopology) -> jax.Array:
    """A cell's sown coefficients in topology edge order: ``(n_edges, B, n_ops)``."""

    def get(scan: str) -> jax.Array:
        return inter[scan]["edge"]["mixer"]["coefficients"][0]

    if not reduction:
        return get("edges")
    parts = {e: None for e in range(topology.n_edges)}
    ins = get("input_edges")
    for k, e in enumerate(topology.input_edges):
        parts[e] = ins[k]
    if topology.inner_edges:
        inner = get("inner_edges")
        for k, e in enumerate(topology.inner_edges):
            parts[e] = inner[k]
    return jnp.stack([parts[e] for e in range(topology.n_edges)])


def cells_from_choice(
    choice: np.ndarray,
    coefficients: np.ndarray,
    primitives: Sequence[str],
    topology: CellTopology = DARTS_CELL,
    rule: str = "all_edges",
) -> tuple[CellGenotype, ...]:
    """One :class:`CellGenotype` per layer from the per-edge choices.

    ``"all_edges"`` (Alg. 1 line 10): every edge keeps its chosen op; ``none``
    removes the edge (a node may end with no inputs: it is zero).  A node lists
    its inputs strongest coefficient first.  ``"darts_top2"`` (ablation): the DARTS
    rule on the coefficients (2 strongest non-``none`` edges per node).
    """
    if rule not in DERIVES:
        raise ValueError(f"search.derive must be one of {DERIVES}, got {rule!r}")
    choice, coef = np.asarray(choice), np.asarray(coefficients, np.float64)
    cells = []
    for layer in range(choice.shape[0]):
        if rule == "darts_top2":
            cells.append(derive_cell(coef[layer], primitives, topology))
            continue
        nodes = []
        for node in range(topology.n_nodes):
            pairs = [
                (
                    coef[layer, e, choice[layer, e]],
                    topology.edges[e][0],
                    primitives[choice[layer, e]],
                )
                for e in topology.incoming(node)
                if primitives[choice[layer, e]] != "none"
            ]
            pairs.sort(key=lambda t: -t[0])  # stable: ties keep edge order
            nodes.append(tuple((op, src) for _, src, op in pairs))
        concat = tuple(range(topology.n_inputs, topology.n_inputs + topology.n_nodes))
        cells.append(CellGenotype(tuple(nodes), concat, topology.n_inputs))
    return tuple(cells)


class ASMNAS(SearchMethodBase):
    """The ASM-NAS search method (implements ``jaxnas.search.base.SearchMethod``).

    Built by the method contract (``jaxnas.search.method.SearchMethodBase``): the
    DARTS supernet with one architecture per cell, the losses, ``init`` and
    ``eval_step`` are the shared ones; its own are the attention mixer, the
    single-level step (Alg. 1 line 4) and selection (lines 6-13, :meth:`select`).
    """

    name = "asmnas"
    spaces = ("darts",)  # selection and the per-layer genotype assume the DARTS cell
    arch_sharing = "cell"  # one architecture (attention modules, mask) per cell
    # the base's SGD (cosine from optim.lr to optim.lr_min; Sec. 5.1: 0.025 -> 0) on
    # (w, Theta), PyTorch's coupled L2 also on Theta: the only optimiser, its keys unprefixed
    weight_keys = ""

    # ---- the hooks of the method contract (jaxnas.search.method) -----------------------

    def check_config(self) -> None:
        """The selection settings and ``search.probe_batches`` (one line each)."""
        s = self.config.search
        check_choices(
            self.config,
            ("search.selection", SELECTIONS),
            ("search.aggregate", AGGREGATES),
            ("search.derive", DERIVES),
            ("search.select_bn", ("eval", "train")),
        )
        if s.probe_batches < 1:
            raise ValueError(f"search.probe_batches must be >= 1, got {s.probe_batches}")

    def make_mixer(self) -> ASMMixer:
        """An :class:`AttentionCombiner` on every edge (Eq. 4.2-4.5)."""
        m = self.config.model
        return ASMMixer(tuple(int(h) for h in m.attention_hidden), m.attention_batch_mean)

    def setup(self) -> None:
        """The jitted attention pass of selection and the probe selection's cache."""
        self._attention = jax.jit(self._attention_batch)
        self._cache: tuple[Any, Any] | None = None

    def arch_optimizer(self) -> optax.GradientTransformation:
        """None to speak of: ``"arch"`` is the selection mask, never trained (its state is
        not kept, see :meth:`make_state`)."""
        return optax.set_to_zero()

    def make_state(self, sample_images: np.ndarray, **fields: Any) -> ASMState:
        """The shared fields but ``a_opt`` (Alg. 1 line 2); the probe starts as copies of
        ``sample_images`` and holds held-out images after the first step."""
        del fields["a_opt"]
        probe = jnp.broadcast_to(
            jnp.asarray(sample_images, jnp.float32),
            (self.config.search.probe_batches, *sample_images.shape),
        )
        return ASMState(**fields, probe=jnp.array(probe))

    # ---- Algorithm 1, lines 1-5 ------------------------------------------------------

    def _train_step(self, state: ASMState, train_batch, valid_batch):
        # line 4: one gradient of L_train over (w, Theta) together; no arch step
        grad_fn = jax.value_and_grad(self.loss, has_aux=True)
        (loss, (stats, acc)), grads = grad_fn(
            state.params, state.arch, state.batch_stats, train_batch
        )
        upd, w_opt = self.w_tx.update(grads, state.w_opt, state.params)
        params = optax.apply_updates(state.params, upd)
        # the held-out batch is never trained on: the first probe_batches are kept
        k = state.probe.shape[0]
        slot = jnp.minimum(state.step, k - 1)
        stored = jax.lax.dynamic_update_index_in_dim(
            state.probe, valid_batch[0].astype(state.probe.dtype), slot, 0
        )
        probe = jnp.where(state.step < k, stored, state.probe)
        new = state.replace(
            step=state.step + 1, params=params, batch_stats=stats, w_opt=w_opt, probe=probe
        )
        metrics = dict(
            loss=loss,
            accuracy=acc,
            grad_norm=optax.tree.norm(grads),
            lr=self.lr_schedule(state.step),
        )
        return new, metrics

    # ---- Algorithm 1, lines 6-13: selection ------------------------------------------------

    def _attention_batch(self, params, arch, batch_stats, images):
        """Coefficient sums and per-sample argmax counts over one batch: ``(L, E, K)`` each."""
        variables = {"params": params, "arch": arch, "batch_stats": batch_stats}
        train = self.config.search.select_bn == "train"
        mutable = ["intermediates", "batch_stats"] if train else ["intermediates"]
        _, inter = self.model.apply(variables, images, train=train, mutable=mutable)
        inter = inter["intermediates"]
        a = jnp.stack(
            [
                _cell_attention(inter[f"cell_{i:02d}"], i in self.reductions, self.topology)
                for i in range(self.model.layers)
            ]
        )  # (L, E, B, K)
        votes = jax.nn.one_hot(jnp.argmax(a, -1), a.shape[-1], dtype=jnp.float32).sum(2)
        return a.astype(jnp.float32).sum(2), votes

    def _accumulate(self, state: ASMState, arch: Any, batches: Iterable) -> tuple:
        sums = votes = None
        n = 0
        for images in batches:
            s, v = self._attention(state.params, arch, state.batch_stats, images)
            sums = s if sums is None else sums + s
            votes = v if votes is None else votes + v
            n += images.shape[0]
        if n == 0:
            raise ValueError("selection needs at least one held-out batch")
        return np.asarray(sums) / n, np.asarray(votes) / n, n

    def select(
        self,
        state: ASMState,
        batches: Iterable[Any],
        *,
        mode: str | None = None,
        aggregate: str | None = None,
        derive: str | None = None,
    ) -> Selection:
        """Algorithm 1, lines 6-13, without gradients.

        Args:
          state: a trained state (weights are only read).
          batches: held-out batches, ``(images, labels)`` pairs or bare image arrays
            (re-iterated once per cell in the cell-by-cell form: pass a list or a
            re-iterable).
          mode: ``"cell_by_cell"`` (cell l read with cells < l discretised, L passes)
            or ``"one_pass"``; default ``search.selection``.
          aggregate: ``"mean"`` (argmax of the mean coefficient) or ``"vote"``
            (argmax of the per-sample argmax counts); default ``search.aggregate``.
          derive: ``"all_edges"`` or ``"darts_top2"``; default ``search.derive``.
        """
        s = self.config.search
        mode, aggregate, derive = mode or s.selection, aggregate or s.aggregate, derive or s.derive
        if mode not in SELECTIONS:
            raise ValueError(f"selection mode must be one of {SELECTIONS}, got {mode!r}")
        if aggregate not in AGGREGATES:
            raise ValueError(f"aggregate must be one of {AGGREGATES}, got {aggregate!r}")
        images = [b[0] if isinstance(b, (tuple, list)) else b for b in batches]
        names = self.model.arch_names()
        n_ops = len(self.primitives)
        if mode == "one_pass":
            coef, votes, n = self._accumulate(state, state.arch, images)
            score = coef if aggregate == "mean" else votes
            choice = np.argmax(score, axis=-1)
        else:
            arch = dict(state.arch)
            L, E = len(names), self.topology.n_edges
            coef, votes = np.zeros((L, E, n_ops)), np.zeros((L, E, n_ops))
            choice = np.zeros((L, E), np.int64)
            for layer, name in enumerate(names):  # line 7
                c, v, n = self._accumulate(state, arch, images)  # lines 8-9
                coef[layer], votes[layer] = c[layer], v[layer]
                score = c[layer] if aggregate == "mean" else v[layer]
                choice[layer] = np.argmax(score, axis=-1)
                arch[name] = jnp.asarray(np.eye(n_ops, dtype=np.float32)[choice[layer]])  # line 10
        cells = cells_from_choice(choice, coef, self.primitives, self.topology, derive)
        return Selection(self._genotype(cells), choice, coef, votes, n, mode, aggregate)

    def _genotype(self, cells: Sequence[CellGenotype]) -> Genotype:
        # the supernet's reduction cells travel with the cells searched at them
        return Genotype.from_cells(cells, reductions=self.reductions)

    def _probe_selection(self, state: ASMState) -> Selection:
        key = (id(state.params), int(state.step))
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self.select(state, list(state.probe)))
        return self._cache[1]

    # ---- what the runner reads every epoch ------------------------------------------------

    def arch_weights(self, state: ASMState) -> dict[str, np.ndarray]:
        """Mean attention coefficients on the held-out probe, ``{"layer_00": (14, n_ops)}``
        (cell l read as ``search.selection`` says)."""
        coef = self._probe_selection(state).coefficients
        return {name: coef[i] for i, name in enumerate(self.model.arch_names())}

    def genotype(self, state: ASMState) -> Genotype:
        """The per-layer genotype selected on the held-out probe
        (:func:`jaxnas.asmnas_select.select_workdir` selects on the whole held-out split)."""
        return self._probe_selection(state).genotype

    def discretise(self, arch: Any, layer: int, edge: int, op: int) -> Any:
        """``arch`` with edge ``edge`` of cell ``layer`` replaced by op ``op`` (weight 1)."""
        name = self.model.arch_names()[layer]
        row = jnp.zeros((len(self.primitives),), jnp.float32).at[op].set(1.0)
        return dict(arch, **{name: arch[name].at[edge].set(row)})


# ------------------------------------------------------------------ saving and pictures


def plot_attention(
    coefficients: np.ndarray,
    primitives: Sequence[str],
    path: str | os.PathLike,
    *,
    reductions: Sequence[int] = (),
    choice: np.ndarray | None = None,
    topology: CellTopology = DARTS_CELL,
    title: str = "ASM-NAS attention coefficients",
) -> str:
    """Per-cell heat maps of the mean coefficients (the paper's Fig. 4): one panel per
    cell, edges as rows, ops as columns; the chosen op of each edge is boxed."""
    Figure = require("matplotlib.figure", "plotting").Figure
    Rectangle = require("matplotlib.patches", "plotting").Rectangle

    coef = np.asarray(coefficients)
    L, E, K = coef.shape
    ncols = min(5, L)
    nrows = math.ceil(L / ncols)
    fig = Figure(figsize=(2.9 * ncols, 3.2 * nrows + 0.6))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    lo, hi = attention_bounds(K)
    labels = [f"{s}->{d}" for s, d in topology.edges] if topology.n_edges == E else None
    im = None
    for i, ax in enumerate(axes.flat):
        if i >= L:
            ax.axis("off")
            continue
        im = ax.imshow(coef[i], vmin=lo, vmax=hi, cmap="viridis", aspect="auto")
        kind = "reduction" if i in reductions else "normal"
        ax.set_title(f"({chr(97 + i) if i < 26 else i}) cell {i + 1}, {kind}", fontsize=8)
        ax.set_xticks(range(K), [p.replace("_", " ") for p in primitives], rotation=90, fontsize=5)
        ax.set_yticks(range(E), labels or range(E), fontsize=5)
        if choice is not None:
            for e in range(E):
                ax.add_patch(
                    Rectangle((choice[i, e] - 0.5, e - 0.5), 1, 1, fill=False, ec="red", lw=0.8)
                )
    if im is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.6, label="a")
    fig.suptitle(title)
    path = os.fspath(path)
    fig.savefig(path, dpi=130, facecolor="white")
    return path


def save_selection(
    selection: Selection, folder: str | os.PathLike, primitives: Sequence[str], reductions=()
) -> dict[str, str]:
    """Write ``attention.npz`` (coefficients, votes, choice), ``attention.png`` (heat maps),
    ``genotype.json`` and ``selection.json`` under ``folder``.  ``reductions`` (for the
    panel titles): default the genotype's."""
    if not reductions:
        reductions = selection.genotype.reductions or ()

    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    npz = os.path.join(folder, "attention.npz")
    np.savez(
        npz,
        coefficients=selection.coefficients,
        votes=selection.votes,
        choice=selection.choice,
        primitives=np.array(primitives),
    )
    png = plot_attention(
        selection.coefficients,
        primitives,
        os.path.join(folder, "attention.png"),
        reductions=reductions,
        choice=selection.choice,
    )
    gj = os.path.join(folder, "genotype.json")
    save(selection.genotype, gj)
    meta = os.path.join(folder, "selection.json")
    with open(meta, "w", encoding="utf-8") as f:
        json.dump(
            dict(
                mode=selection.mode,
                aggregate=selection.aggregate,
                examples=selection.examples,
                reductions=list(reductions),
                choice=[[primitives[k] for k in row] for row in selection.choice.tolist()],
            ),
            f,
            indent=1,
        )
    return dict(coefficients=npz, heatmaps=png, genotype=gj, meta=meta)
