"""SparseNAS: neural architecture search as a sparse supernet (Wu et al., AAAI 2021).

The supernet is the DARTS one with the softmax removed: every edge mixes its
candidate ops *linearly* by free real scalars ``A`` (Eq. 1),

    x_j = sum_{i<j} sum_{o in O} A_ij^o o(x_i),          A_ij^o in R,

over the 7 DARTS ops without ``none`` (``A = 0`` plays its role).  A Sparse
Group Lasso on ``A`` (Eq. 2) with one group per intermediate node (its
incoming weights: 2, 3, 4, 5 edges x 7 ops = 14, 21, 28, 35 entries per cell
type) prunes single paths (L1) and whole nodes (group term).

Algorithm 1, one iteration of ``train_step`` (the loop is DARTS'; only the
architecture optimiser, the mixer and the derivation are SparseNAS' own):

1. ``A`` by HAPG (Eqs. 6-8) or AdamHAPG (:mod:`jaxnas.optim`) on the
   validation hypergradient ``g = grad_A l_val(w*(A), A)`` (Eq. 11): first
   order, Eq. 12 exactly (``search.hypergradient="exact"`` / ``"unrolled"``)
   or the DARTS-corrected finite difference (``"finite_difference"``; Eq. 13
   as printed drops ``gamma`` and perturbs along ``grad_w l_train``, see the
   digest) -- all through ``DARTS.arch_gradient``.  Only the smooth loss
   enters ``g``; the penalty is handled by the prox (Eqs. 5, 9, 10);
2. ``w`` by SGD (momentum 0.9, weight decay 3e-4, cosine lr) on the train
   batch with the *updated* ``A``.

Which ``A`` is which: the optimiser's params -- ``state.arch``, the value the
supernet uses in the forward pass of both steps -- are the extrapolated
look-ahead point ``A_t = theta_t + u_t v_t`` of Eq. 8, which is **not**
sparse.  The sparse iterate is the prox output ``theta_t`` kept in the
optimiser state (``HAPGState.theta``); :meth:`SparseNAS.arch_weights`,
:meth:`SparseNAS.genotype` and ``eval_step`` read ``theta``.

Pathwise lambda (paper, "Effect of lambda" and Alg. 1 discussion): lambda
grows linearly, ``lam_start + lam_step * epoch`` with ``lam_step = 0.01``
(:func:`pathwise_lambda`, an optax schedule of the step count).

Derivation (paper, text after Eq. 3): drop ops with ``theta = 0``, then nodes
whose incoming group is zero -- and, transitively, every edge out of a dropped
node; the cell output concatenates the surviving nodes only
(:func:`derive_sparse_cell`).  A node may keep any number of edges and an
edge several ops ("mixed path").

The cherry-picked space of Table 1 (normal cell: sep_conv_3x3, skip_connect;
reduction cell: skip_connect, max_pool_3x3) is the primitive set
``"sparsenas_cherry_picked"``: the supernet carries the union of the three
ops and the op missing from a cell type is held at exactly 0 (its ``A``
column starts at 0, its gradient is masked, it belongs to no group), so the
group sizes are 4, 6, 8, 10 as in the paper.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxnas import optim
from jaxnas.common import epoch_cosine_schedule
from jaxnas.ops import PRIMITIVE_SETS
from jaxnas.search.darts import DARTS, SearchState
from jaxnas.search.darts import default_config as darts_default_config
from jaxnas.search.method import check_choices
from jaxnas.spaces import GenotypeError
from jaxnas.spaces.darts import DARTS_CELL, CellTopology
from jaxnas.spaces.darts_derive import pruned_cell
from jaxnas.spaces.darts_genotype import CellGenotype, Genotype
from jaxnas.supernet import Mixer

__all__ = [
    "CELL_OPS",
    "LinearMixer",
    "SparseNAS",
    "arch_optimizer",
    "arch_optimizer_keys",
    "cell_masks",
    "clip_each_cell",
    "default_config",
    "derive_sparse",
    "derive_sparse_cell",
    "node_groups",
    "pathwise_lambda",
]

#: The cherry-picked space of Table 1 (``AdamHAPG*``): the union of its ops ...
PRIMITIVE_SETS.setdefault(
    "sparsenas_cherry_picked", ("sep_conv_3x3", "skip_connect", "max_pool_3x3")
)

#: ... and the ops each cell type may use (primitive sets not listed: all ops but ``none``).
CELL_OPS: dict[str, dict[str, tuple[str, ...]]] = {
    "sparsenas_cherry_picked": {
        "normal": ("sep_conv_3x3", "skip_connect"),
        "reduce": ("skip_connect", "max_pool_3x3"),
    }
}

OPTIMIZERS = ("hapg", "adam_hapg")


def default_config() -> ml_collections.ConfigDict:
    """SparseNAS' config keys with the paper's CIFAR-10 values (the DARTS keys plus its own).

    model.primitives: ``"darts_no_zero"`` (the 7 ops) or ``"sparsenas_cherry_picked"``.
    model.arch_init: ``"uniform"`` (``A = 1/|O|``, |O| the cell type's op count) or
      ``"ones"``; ``arch_init_noise``: relative Gaussian noise ``A (1 + s N(0, 1))``.
    optim.a_lr, a_beta1, a_beta2, a_eps: AdamHAPG (3e-4 constant, (0.5, 0.999), 1e-8).
    optim.hapg_lr, hapg_lr_min: HAPG's step, cosine per epoch 0.025 -> 0.001.
    optim.a_weight_decay: L2 on A folded into the gradient before the prox (0: off);
      ``a_grad_clip``: each cell type's gradient of A clipped to this norm before the
      prox (0: off, the paper; :func:`clip_each_cell`).
    optim.a_momentum: ``"apg"`` (``u_t = (t-2)/(t+1)``, Eq. 8) or a constant, e.g. ``"0.9"``.
    search.optimizer: ``"hapg"`` | ``"adam_hapg"``; ``alpha``: L1/group mixing (Eq. 2);
      ``lam_start``, ``lam_step``: lambda = lam_start + lam_step * epoch, ``lam_every``:
      ``"epoch"`` (lambda steps up between epochs) or ``"step"`` (a ramp; see
      :func:`pathwise_lambda`);
      ``prune_threshold``: derivation keeps ``|theta| > prune_threshold`` (0: exact zeros);
      ``max_ops``: 0 (the paper) derives the cell from the last ``theta``; ``K > 0`` ends
      a cell type's lambda path at its first ``theta`` with at most ``K`` ops: that
      ``theta`` gives the cell and the cell type's ``A`` stops moving
      (:func:`jaxnas.optim.path_snapshot`).
    """
    c = darts_default_config()
    c.model.primitives = "darts_no_zero"
    c.model.arch_init = "uniform"
    c.model.arch_init_noise = 0.0
    optim_keys, search_keys = arch_optimizer_keys()
    c.optim.update(optim_keys)
    c.optim.a_grad_clip = 0.0
    c.search.order = "second"  # Alg. 1 uses the second-order hypergradient (Eqs. 12-13)
    c.search.hypergradient = "exact"  # Eq. 12 exactly; "finite_difference" is Eq. 13 (DARTS)
    c.search.update(search_keys)
    c.search.max_ops = 0
    return c


def arch_optimizer_keys() -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``optim`` and ``search`` keys that :func:`arch_optimizer` reads besides
    ``optim.a_lr`` and ``search.epochs``, with the paper's values: AdamHAPG's betas
    (0.5, 0.999) and eps 1e-8, HAPG's step 0.025 -> 0.001, the APG momentum, no weight
    decay on A; AdamHAPG, alpha 0.5, lambda 0 + 0.01 per epoch, exact zeros pruned.
    The CNN search and the recurrent one (:mod:`jaxnas.search.sparsenas_rnn`) share them."""
    optim_keys = dict(
        a_beta1=0.5,
        a_beta2=0.999,
        a_eps=1e-8,
        hapg_lr=0.025,
        hapg_lr_min=0.001,
        a_momentum="apg",
        a_weight_decay=0.0,
    )
    search_keys = dict(
        optimizer="adam_hapg",
        alpha=0.5,
        lam_start=0.0,
        lam_step=0.01,
        lam_every="epoch",
        prune_threshold=0.0,
    )
    return optim_keys, search_keys


# ------------------------------------------------------------------------------ supernet


@dataclasses.dataclass(frozen=True)
class LinearMixer(Mixer):
    """SparseNAS Eq. 1: an edge is ``sum_o A^o o(x)`` with free real ``A`` (no softmax).

    ``init_arch`` gives ``init_value * (1 + noise * N(0, 1))``; :class:`SparseNAS`
    rescales it per cell type (``1/|O|``) and zeroes the ops a cell type lacks.
    """

    init_value: float = 1.0
    noise: float = 0.0
    stochastic: bool = False

    def init_arch(self, rng: jax.Array, shape: tuple[int, int]) -> jax.Array:
        """``init_value * (1 + noise * N(0, 1))`` of ``shape``."""
        eps = jax.random.normal(rng, shape, jnp.float32) if self.noise else 0.0
        return self.init_value * (1.0 + self.noise * eps) * jnp.ones(shape, jnp.float32)


def cell_masks(
    primitives: Sequence[str], primitive_set: str | Sequence[str] = ""
) -> dict[str, np.ndarray]:
    """Which ops each cell type may use: ``{"normal": (n_ops,), "reduce": (n_ops,)}`` of 0/1.

    ``none`` is never used (``A = 0`` is the zero op); a primitive set listed in
    :data:`CELL_OPS` restricts each cell type to its own ops.
    """
    allowed = CELL_OPS.get(primitive_set) if isinstance(primitive_set, str) else None
    masks = {}
    for name in ("normal", "reduce"):
        ops = allowed[name] if allowed else primitives
        masks[name] = np.array([p in ops and p != "none" for p in primitives], np.float32)
        if not masks[name].any():
            raise ValueError(f"the {name} cell has no op besides 'none' in {tuple(primitives)}")
    return masks


def node_groups(
    masks: dict[str, np.ndarray], topology: CellTopology = DARTS_CELL
) -> dict[str, np.ndarray]:
    """The SGL group spec of ``A`` (Eq. 2): one group per intermediate node and cell type.

    Returns ``{"normal": (n_edges, n_ops), "reduce": ...}`` int arrays: entry
    ``(e, o)`` holds the group of the node edge ``e`` enters (normal cell:
    ``0 .. n_nodes-1``, reduction cell: ``n_nodes .. 2 n_nodes - 1``), or ``-1``
    (not penalised) for an op the cell type does not use.  Full DARTS space:
    group sizes 14, 21, 28, 35 per cell type; cherry-picked: 4, 6, 8, 10.
    """
    out = {}
    for t, name in enumerate(("normal", "reduce")):
        ids = np.full((topology.n_edges, len(masks[name])), -1, np.int32)
        for k in range(topology.n_nodes):
            for e in topology.incoming(k):
                ids[e] = np.where(masks[name] > 0, t * topology.n_nodes + k, -1)
        out[name] = ids
    return out


def pathwise_lambda(
    lam_step: float, steps_per_epoch: int, lam_start: float = 0.0, every: str = "epoch"
) -> optax.Schedule:
    """The pathwise sparsity strength, linear in the epoch ``e = count / steps_per_epoch``.

    ``every="epoch"``: ``lam = lam_start + lam_step * floor(e)``, constant within an
    epoch (paper: step 0.01 per epoch, "Effect of lambda"; start 0 and no cap are our
    reading).  ``every="step"``: ``lam = lam_start + lam_step * e``, the same line
    sampled at every step; at small budgets a jump of lambda between epochs either
    leaves the cell dense or empties it (README, "SparseNAS and BayesNAS at small
    budgets"), the per-step ramp prunes gradually.
    """
    if lam_step < 0 or lam_start < 0:
        raise ValueError(f"lam_start and lam_step must be >= 0, got {lam_start}, {lam_step}")
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    if every not in ("epoch", "step"):
        raise ValueError(f"the lambda path moves every 'epoch' or 'step', got {every!r}")

    def schedule(count):
        count = jnp.asarray(count)
        if every == "epoch":
            return lam_start + lam_step * (count // steps_per_epoch)
        return lam_start + lam_step * count.astype(jnp.float32) / steps_per_epoch

    return schedule


# ---------------------------------------------------------------------------- derivation


def derive_sparse_cell(
    theta: Any,
    primitives: Sequence[str],
    topology: CellTopology = DARTS_CELL,
    *,
    threshold: float = 0.0,
    exclude: Collection[str] = ("none",),
) -> CellGenotype:
    """The mixed-path cell of a sparse ``theta`` (paper, text after Eq. 3).

    Keeps every ``(op, edge)`` with ``|theta| > threshold`` (0: the exact zeros
    of the prox are dropped) whose source node survives; a node survives if it
    keeps at least one input, so a node whose whole group is zero is dropped
    together with its outgoing edges (and so on downstream).  ``concat`` lists
    the surviving nodes.  A node's pairs are ordered by ``|theta|``, largest first.

    If no node survives, the cell computes zero; it is returned with empty nodes
    and ``concat`` = the last node (one zero map), and a warning is logged.

    Args:
      theta: ``(topology.n_edges, len(primitives))``.
      primitives: the column names.
      topology: the cell's edges.
      threshold: keep ``|theta| > threshold``.
      exclude: ops never kept.
    """
    w = np.abs(np.asarray(theta, np.float64))
    primitives = tuple(primitives)
    if w.shape != (topology.n_edges, len(primitives)):
        raise GenotypeError(
            f"theta has shape {w.shape}, expected ({topology.n_edges}, {len(primitives)})"
        )
    if not np.all(np.isfinite(w)):
        raise GenotypeError("architecture weights contain NaN or inf")
    usable = np.array([p not in set(exclude) for p in primitives])
    return pruned_cell(w, usable & (w > threshold), primitives, topology)


def derive_sparse(
    theta_normal: Any,
    theta_reduce: Any,
    primitives: Sequence[str],
    topology: CellTopology = DARTS_CELL,
    *,
    threshold: float = 0.0,
) -> Genotype:
    """:func:`derive_sparse_cell` for the normal and the reduction cell."""
    kw = dict(topology=topology, threshold=threshold)
    return Genotype(
        normal=derive_sparse_cell(theta_normal, primitives, **kw),
        reduce=derive_sparse_cell(theta_reduce, primitives, **kw),
    )


# -------------------------------------------------------------------------------- method


def arch_optimizer(
    config: ml_collections.ConfigDict, steps_per_epoch: int, groups: Any
) -> tuple[optax.GradientTransformation, optax.Schedule, optax.Schedule]:
    """The proximal optimiser of A (Algorithm 1): ``(transform, lr schedule, lambda schedule)``.

    ``search.optimizer = "hapg"``: HAPG (Eqs. 6-8) with DARTS' cosine step per epoch from
    ``optim.hapg_lr`` to ``optim.hapg_lr_min``; ``"adam_hapg"``: AdamHAPG with the constant
    step ``optim.a_lr``.  Both with the pathwise lambda (:func:`pathwise_lambda`), the
    sparse-group-lasso mix ``search.alpha``, the ``groups`` spec and the momentum
    ``optim.a_momentum``.  Shared by the CNN search and the recurrent one
    (:mod:`jaxnas.search.sparsenas_rnn`).
    """
    o, s = config.optim, config.search
    lam_schedule = pathwise_lambda(s.lam_step, steps_per_epoch, s.lam_start, s.lam_every)
    momentum = _momentum(o.a_momentum)
    if s.optimizer == "hapg":
        lr_schedule = epoch_cosine_schedule(o.hapg_lr, o.hapg_lr_min, s.epochs, steps_per_epoch)
        tx = optim.hapg(lr_schedule, lam_schedule, s.alpha, groups, momentum=momentum)
    else:
        lr_schedule = optax.constant_schedule(o.a_lr)
        tx = optim.adam_hapg(
            lr_schedule,
            lam_schedule,
            s.alpha,
            groups,
            b1=o.a_beta1,
            b2=o.a_beta2,
            eps=o.a_eps,
            momentum=momentum,
        )
    return tx, lr_schedule, lam_schedule


def _momentum(setting: str) -> float | None:
    """``optim.a_momentum``: ``"apg"`` -> None (Eq. 8's ``(t-2)/(t+1)``), else a constant."""
    if setting == "apg":
        return None
    try:
        value = float(setting)
    except ValueError:
        value = -1.0
    if not 0.0 <= value < 1.0:
        raise ValueError(f"optim.a_momentum must be 'apg' or a number in [0, 1), got {setting!r}")
    return value


def clip_each_cell(max_norm: float) -> optax.GradientTransformation:
    """Scale each leaf (cell type) of the gradient of ``A`` to norm at most ``max_norm``.

    The next cell's ReLU-conv-BN normalises what a cell outputs, so the loss hardly
    depends on a common scale of that cell's ``A`` and its gradient grows like one over
    that scale: once the prox has shrunk a cell's ``A`` to almost nothing, an unclipped
    step throws it far out (measured: gradient norms 2 -> 2e2 -> 9e4 -> 2e7 within five steps,
    then NaN).  Per leaf, so that one cell's blow-up does not silence the other's.
    """

    def clip(g, params=None):
        del params
        return jax.tree.map(
            lambda x: x * jnp.minimum(1.0, max_norm / jnp.maximum(jnp.linalg.norm(x), 1e-30)), g
        )

    return optax.stateless(clip)


def _mask_gradient(masks: dict[str, np.ndarray]) -> optax.GradientTransformation:
    """Zero the gradient of ops a cell type does not use (their ``A`` stays exactly 0)."""
    return optax.stateless(
        lambda g, params=None: {k: v * jnp.asarray(masks[k], v.dtype) for k, v in g.items()}
    )


class SparseNAS(DARTS):
    """SparseNAS search (Algorithm 1); see the module docstring.

    Besides the ``SearchMethod`` interface: ``theta(state)`` (the sparse
    iterate), ``lam_schedule`` / ``a_lr_schedule`` (schedules of the step
    count), ``masks`` and ``groups`` (the group spec of Eq. 2).
    """

    name = "sparsenas"
    spaces = ("darts",)  # node groups and the mixed-path derivation assume the DARTS cell

    def check_config(self) -> None:
        """DARTS' checks and the optimiser, A's init, clip and path-end settings."""
        super().check_config()
        o, s = self.config.optim, self.config.search
        check_choices(
            self.config,
            ("search.optimizer", OPTIMIZERS),
            ("model.arch_init", ("uniform", "ones")),
        )
        if o.a_grad_clip < 0:
            raise ValueError(f"optim.a_grad_clip must be >= 0 (0: off), got {o.a_grad_clip}")
        if s.max_ops < 0:
            raise ValueError(f"search.max_ops must be >= 0 (0: off), got {s.max_ops}")

    def setup(self) -> None:
        """DARTS' and the op masks of the primitive set and the node groups of Eq. 2."""
        super().setup()
        self.masks = cell_masks(self.primitives, self.config.model.primitives)
        self.groups = node_groups(self.masks, self.model.topology)

    def arch_optimizer(self) -> optax.GradientTransformation:
        """HAPG / AdamHAPG with the SGL prox (Alg. 1), after masking, per-cell clipping and
        weight decay of the gradient; ends the lambda path at ``search.max_ops`` ops."""
        o, s = self.config.optim, self.config.search
        a_opt, self.a_lr_schedule, self.lam_schedule = arch_optimizer(
            self.config, self.steps_per_epoch, self.groups
        )
        chain = []
        if not all(mk.all() for mk in self.masks.values()):
            chain.append(_mask_gradient(self.masks))
        if o.a_grad_clip:
            chain.append(clip_each_cell(o.a_grad_clip))
        if o.a_weight_decay:  # folded into g before the prox (never after: zeros would move)
            chain.append(optax.add_decayed_weights(o.a_weight_decay))
        if s.max_ops:
            a_opt = optim.path_snapshot(a_opt, s.max_ops)
        return optax.chain(*chain, a_opt)

    def make_mixer(self):
        """Eq. 1: linear mixing by ``A`` (init rescaled per cell type in :meth:`init`)."""
        return LinearMixer(noise=self.config.model.arch_init_noise)

    # ---- state ----------------------------------------------------------------------

    def init(self, rng: jax.Array, sample_images: np.ndarray) -> SearchState:
        """DARTS' initial state with ``A_0 = theta_0 = mask / |O|`` (or ``mask``) per cell type."""
        state = super().init(rng, sample_images)
        arch = {}
        for name, a in state.arch.items():
            mask = np.asarray(self.masks[name])  # host side: init stays traceable (eval_shape)
            scale = 1.0 / float(mask.sum()) if self.config.model.arch_init == "uniform" else 1.0
            arch[name] = a * jnp.asarray(mask, a.dtype) * scale
        return state.replace(arch=arch, a_opt=self.a_tx.init(arch))

    def theta(self, state: SearchState) -> dict[str, jax.Array]:
        """The sparse iterate ``theta_t`` (the last prox output, Eqs. 5, 9, 10)."""
        return optax.tree_utils.tree_get(state.a_opt, "theta")

    def derived_theta(self, state: SearchState) -> dict[str, jax.Array]:
        """The ``theta`` the cell is derived from: ``theta_t``, or with ``search.max_ops``
        per cell type the ``theta`` where its path ended, at most that many ops
        (:func:`jaxnas.optim.path_snapshot`; ``theta_t`` until then)."""
        if self.config.search.max_ops:
            return optax.tree_utils.tree_get(state.a_opt, "snapshot")
        return self.theta(state)

    def _train_step(self, state: SearchState, train_batch, valid_batch):
        new, metrics = super()._train_step(state, train_batch, valid_batch)
        theta = self.derived_theta(new)
        n_zero, n_used, dead = 0, 0, 0
        for name, t in theta.items():
            mask = jnp.asarray(self.masks[name])
            n_zero = n_zero + jnp.sum((t == 0) * mask)
            n_used += float(self.masks[name].sum()) * t.shape[0]
            for k in range(self.model.topology.n_nodes):
                rows = np.array(self.model.topology.incoming(k))
                dead = dead + jnp.all(t[rows] == 0).astype(jnp.int32)
        metrics = dict(
            metrics,
            lam=self.lam_schedule(state.step),
            a_lr=self.a_lr_schedule(state.step),
            theta_zero_frac=n_zero / n_used,
            zero_groups=dead,
        )
        if self.config.search.max_ops:  # cell types whose cell is read off the path already
            frozen = optax.tree_utils.tree_get(new.a_opt, "frozen")
            metrics["path_frozen"] = sum(f.astype(jnp.int32) for f in jax.tree.leaves(frozen))
        return new, metrics

    def _eval_step(self, state: SearchState, batch):
        """The sparse supernet (:meth:`derived_theta`) in inference mode."""
        return super()._eval_step(state.replace(arch=self.derived_theta(state)), batch)

    # ---- reading the architecture -------------------------------------------------------

    def arch_weights(self, state: SearchState) -> dict[str, np.ndarray]:
        """:meth:`derived_theta` per cell type, ``{"normal": (14, n_ops), "reduce": ...}``
        (not ``A_t``)."""
        return {k: np.asarray(v) for k, v in self.derived_theta(state).items()}

    def genotype(self, state: SearchState) -> Genotype:
        """The mixed-path genotype of :meth:`derived_theta` (:func:`derive_sparse`)."""
        w = self.arch_weights(state)
        return derive_sparse(
            w["normal"],
            w["reduce"],
            self.primitives,
            self.model.topology,
            threshold=self.config.search.prune_threshold,
        )
