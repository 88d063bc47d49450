"""BayesNAS cell search (Zhou et al., ICML 2019): hierarchical ARD priors on gates.

Source: ``shared/seeds/000_da33a04cbe3be5fe.txt`` (digest ``shared/spec/000_bayesnas.md``).

**Supernet** (Sec. 3-4, App. D.1).  The DARTS supernet (``jaxnas.supernet``)
with free scalar gates instead of a softmax: on edge ``i -> j`` every op ``o``
has a gate ``w^o_ij`` and the edge has one more, the identity "zero-op" gate
``w_ii'`` of Sec. 4.2 ("zero op rules all"), which takes the place of the
``none`` op.  Gates start at 1 (Alg. 1 initialisation).  With the default
``model.edge_gate="input"`` the zero-op gate scales the edge's input (the extra
node ``i' = w_ii' z_i`` of Sec. 4.2 that every op of the edge reads; the
authors' code does the same)::

    edge(x) = sum_{o >= 1} w[o] * op_o(w[0] * x)       (eq. 1 behind node i')

``"output"`` puts it on the edge's output instead, ``w[0] * sum_o w[o] op_o(x)``.
Every cell instance has its own gates (``arch_sharing="cell"``: ``"arch"``
holds ``{"layer_00": (n_edges, 1 + n_ops), ...}``, column 0 the zero-op gate,
the primitive list's ``"none"`` column); the gates of the same position in the
stacked cells of one type form a group (A.3.6), so the hyper-parameters
``gamma, omega`` are ``(n_edges, 1 + n_ops)`` per cell type.  The ops are the 7
non-zero DARTS ops with BN-ReLU-Conv convolutions (App. D.1; primitive set
``"bayesnas"``, or ``"bayesnas_code"`` with the authors' code's full dilated
convolutions and BN + 1x1 strided skip; see ``jaxnas.ops``).

**Algorithm 2** as the jitted ``train_step`` (one runner step = one SGD step
on the runner's "train" batch and one on its "valid" batch: BayesNAS is
single level, both halves train, see ``search.train_on``):

1. minimise ``L = mean CE + lam_w sum_g omega_g ||w_g||_2`` (eq. 21; eq. 16
   for groups of one) over the weights and the gates jointly, by SGD; weight
   decay only on the weights.  During the warm-up (the first
   ``search.warmup_epochs`` of the run) the gates are frozen at 1 and only the
   weights train (the authors' schedule, digest Sec. 3.8);
2. at the end of every ``search.update_every`` epochs (or steps) after the
   warm-up, inside the same jitted step (a ``lax.cond`` on the step count):
   the diagonal Hessian ``H`` of the mean CE w.r.t. every gate on the step's
   last batch (:meth:`BayesNAS.gate_hessian`, ``search.hessian``), then
   ``jaxnas.bayes.cell_update`` per cell type: ``C = (1/gamma + H')^-1`` (eq.
   17), ``omega = sqrt(sum_i H'_i / (1 + gamma H'_i))`` (eq. 18 / A.3.9), ``s =
   ||w||_2 / omega`` (eq. 19 / A.3.8), ``gamma`` by the dependency combination
   (eq. 6 / 8), ``H' = H / lam_w``;
3. prune where ``1/2 ln(2 pi e gamma) <= 0`` (Alg. 1 step 4): with
   ``search.prune`` the pruned gates are set to 0 and stay there (their
   gradient is masked), so a T_max-loop search continues on the smaller net.

The paper's schedule ("0.2 GPU-days") is the default: ``search.epochs = 1``,
``warmup_epochs = 0.1`` (10 % of the training set, weights only), the other
90 % joint training, one Hessian / gamma update at the end.  The general
T_max loop of Algorithm 1 is ``epochs = T_max * k``, ``update_every = k``.

**Hessian estimators** (``search.hessian``), all of ``mean CE`` on one batch,
BN in training mode, times the batch size with ``hessian_scale="sum"``:

* ``"paper"`` (default): App. C.3, ``H^o_ij = E(sum B^2 H_j)`` with ``B`` the
  un-gated tensor a gate multiplies and ``H_j`` the diagonal pre-activation
  Hessian where the gated tensor goes.  ``H_j`` is the diagonal of the
  Gauss-Newton matrix there, estimated by Monte Carlo (``hessian_samples``
  probes, one backward pass each): a custom VJP on every gate returns ``sum
  B^2 g^2`` for the probe's cotangent ``g`` (:func:`curvature_gate`), and
  ``jaxnas.curvature.probe_vjp_mean`` averages it, so ``E[g^2] = diag(G_j)``.
  The paper's recursion (C.1-C.2) would instead propagate diagonal
  approximations layer by layer through every op; the gate step (C.3) is the
  same.  ``"paper_meanfield"`` is the cheaper (C.3.2), ``E(|B|)^2 sum H_j``;
* ``"ggn_mc"``: the diagonal of the Gauss-Newton matrix w.r.t. the gates
  (``jaxnas.curvature.ggn_diag_mc``): C.3 without dropping the off-diagonal
  terms of ``H_j``;
* ``"hutchinson"``: Hutchinson's estimator of the full Hessian diagonal (can
  be negative; ``search.negative`` clips);
* ``"ggn_exact"`` / ``"exact"``: per-example Jacobians / ``jax.hessian``, for
  small supernets only (refused above ``search.exact_max``).

**Derivation** (Sec. 3.6, :func:`derive_bayes_cell`): the entropy rule, no
top-k: every op with ``gamma > 1/(2 pi e)`` whose edge gate and source node
survive is kept with weight 1 (so an edge may keep several ops and a node any
number of edges); nodes without a surviving input are dropped from the concat.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxnas import bayes
from jaxnas import curvature as cv
from jaxnas.common import cross_entropy, torch_sgd
from jaxnas.search.method import SearchMethodBase, check_choices, step_on, supernet_config
from jaxnas.spaces import GenotypeError
from jaxnas.spaces.darts import DARTS_CELL, CellTopology
from jaxnas.spaces.darts_derive import pruned_cell
from jaxnas.spaces.darts_genotype import CellGenotype, Genotype
from jaxnas.supernet import Mixer

__all__ = [
    "EDGE_GATES",
    "HESSIANS",
    "BayesMixer",
    "BayesNAS",
    "BayesState",
    "curvature_gate",
    "default_config",
    "derive_bayes",
    "derive_bayes_cell",
]

HESSIANS = ("paper", "paper_meanfield", "ggn_mc", "hutchinson", "ggn_exact", "exact")
EDGE_GATES = ("input", "output")
TRAIN_ON = ("both", "train")
UPDATE_UNITS = ("epoch", "step")
ENTROPY_FLOOR = -20.0  # arch_weights: entropy of gamma = 0 (-inf) shown as this


def default_config() -> ml_collections.ConfigDict:
    """BayesNAS' config keys with the paper's CIFAR-10 search values (digest Sec. 5.1).

    model.primitives: ``"bayesnas"`` (App. D.1) or ``"bayesnas_code"`` (the authors'
      dilated convs and strided skip); column 0 must be ``"none"`` (the zero-op gate).
    model.edge_gate: ``"input"`` (Sec. 4.2's node i', the authors' code) or ``"output"``.
    model.reductions: 0-based reduction cells; ``()``: DARTS' ``layers // 3, 2 layers // 3``.
    optim: weights by SGD (lr ``w_lr`` cosine per epoch to ``w_lr_min``; equal values =
      the paper's fixed 0.1), momentum 0.9, weight decay 1e-4; gates by SGD ``g_lr`` 0.1,
      momentum 0.9, no weight decay (the authors' code); ``grad_clip`` (0: off) clips the
      weights' and the gates' gradients, each by its own global norm.
    search.epochs, warmup_epochs, update_every, update_unit: the schedule (module doc).
    search.lam_w: lambda_w of the op gates (Table 1: 0.01, 0.007, 0.005); lam_edge: the
      zero-op gates' (0: same as lam_w; the authors' code has two).
    search.hessian, hessian_samples, probe_batch (0: all probes at once), hessian_scale
      (``"mean"``: of the mean CE; ``"sum"``: times the batch size), exact_max.
    search.dependency: ``"code"`` (eq. 8 with two terms, the authors' code) or
      ``"paper"`` (three terms); order: ``"alg1"`` | ``"alg3"``; negative: ``"clip"`` |
      ``"abs"`` (negative Hessian entries); prune: zero the pruned gates after an update.
    search.train_on: ``"both"`` halves of the training split (one SGD step on each per
      runner step) or only ``"train"``.
    search.eval_bn: BN statistics of the supernet's test metrics: ``"batch"`` (those of
      the test batch) or ``"running"`` (the running averages, which lag far behind free
      gates moving at lr 0.1).
    """
    c = ml_collections.ConfigDict()
    c.model = supernet_config(primitives="bayesnas", edge_gate="input", reductions=())
    c.optim = ml_collections.ConfigDict(
        dict(
            w_lr=0.1,
            w_lr_min=0.1,
            w_momentum=0.9,
            w_weight_decay=1e-4,
            grad_clip=0.0,
            g_lr=0.1,
            g_momentum=0.9,
        )
    )
    c.search = ml_collections.ConfigDict(
        dict(
            epochs=1,
            warmup_epochs=0.1,
            update_every=1,
            update_unit="epoch",
            lam_w=0.01,
            lam_edge=0.0,
            hessian="paper",
            hessian_samples=8,
            probe_batch=0,
            hessian_scale="mean",
            exact_max=256,
            dependency="code",
            order="alg1",
            negative="clip",
            prune=True,
            train_on="both",
            eval_bn="batch",
        )
    )
    return c


# ------------------------------------------------------------------------------ the gates


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def curvature_gate(w: jax.Array, b: jax.Array, mode: str) -> jax.Array:
    """``w * b`` whose backward pass gives the gate App. C.3's curvature, not its gradient.

    Forward: ``w * b`` (``w`` a scalar gate, ``b`` the tensor it multiplies).  Backward
    for the cotangent ``g`` of the output: ``w g`` for ``b`` (the true VJP, so the pass
    continues exactly) and, for ``w``, ``sum b^2 g^2`` (``mode="exact"``, C.3 with the
    single-probe ``g^2`` as the pre-activation Hessian) or ``E(|b|)^2 sum g^2``
    (``mode="meanfield"``, C.3.2).  Averaged over probes ``v`` with ``E[v v^T] = H_out``
    (:func:`jaxnas.curvature.probe_vjp_mean`): ``sum b^2 diag(G)`` with ``G`` the
    Gauss-Newton matrix at the gated tensor.
    """
    del mode
    return w * b


def _curvature_gate_fwd(w, b, mode):
    del mode
    return w * b, (w, b)


def _curvature_gate_bwd(mode, res, g):
    w, b = res
    if mode == "exact":
        cw = jnp.sum(jnp.square(b) * jnp.square(g))
    elif mode == "meanfield":
        cw = jnp.square(jnp.mean(jnp.abs(b))) * jnp.sum(jnp.square(g))
    else:
        raise ValueError(f"unknown curvature mode {mode!r}; expected 'exact' or 'meanfield'")
    return cw.astype(w.dtype).reshape(jnp.shape(w)), (w * g).astype(b.dtype)


curvature_gate.defvjp(_curvature_gate_fwd, _curvature_gate_bwd)


@dataclasses.dataclass(frozen=True)
class BayesMixer(Mixer):
    """The ``jaxnas.supernet.Mixer`` of BayesNAS: free gates, no softmax.

    An edge's weights ``w`` are its row of gates ``(1 + n_ops,)``: ``w[0]`` the
    zero-op gate (the ``"none"`` column), ``w[1:]`` the op gates.
    ``edge_gate="input"``: ``sum_{o>=1} w[o] op_o(w[0] x)`` (``edge_input`` hook);
    ``"output"``: ``w[0] sum_{o>=1} w[o] op_o(x)``.  ``curvature`` (``""``, ``"exact"``,
    ``"meanfield"``) makes every gate a :func:`curvature_gate` (the Hessian pass).
    """

    edge_gate: str = "input"
    curvature: str = ""
    stochastic: bool = False

    def __post_init__(self):
        if self.edge_gate not in EDGE_GATES:
            raise ValueError(f"edge_gate must be one of {EDGE_GATES}, got {self.edge_gate!r}")
        if self.curvature not in ("", "exact", "meanfield"):
            raise ValueError(f"unknown curvature mode {self.curvature!r}")

    def init_arch(self, rng: jax.Array, shape: tuple[int, int]) -> jax.Array:
        """All gates 1 (Alg. 1 initialisation ``w(0) = 1``)."""
        del rng
        return jnp.ones(shape, jnp.float32)

    def _gate(self, w: jax.Array, b: jax.Array) -> jax.Array:
        w = w.astype(b.dtype)
        return curvature_gate(w, b, self.curvature) if self.curvature else w * b

    def edge_input(self, x: jax.Array, w: jax.Array) -> jax.Array:
        """Sec. 4.2's node ``i' = w[0] x`` (``edge_gate="input"``), else ``x``."""
        return self._gate(w[0], x) if self.edge_gate == "input" else x

    def combine(self, outs: Sequence[jax.Array | None], w: jax.Array) -> jax.Array:
        """``sum_{o>=1} w[o] outs[o]`` (eq. 1), times ``w[0]`` for ``edge_gate="output"``."""
        if outs[0] is not None:
            raise ValueError("BayesNAS needs 'none' as the first primitive (the zero-op gate)")
        terms = [self._gate(w[o], y) for o, y in enumerate(outs) if y is not None]
        if not terms:
            raise ValueError("an edge needs at least one op besides 'none'")
        total = terms[0]
        for t in terms[1:]:
            total = total + t
        return self._gate(w[0], total) if self.edge_gate == "output" else total


# ---------------------------------------------------------------------------- derivation


def derive_bayes_cell(
    gamma: Any,
    primitives: Sequence[str],
    topology: CellTopology = DARTS_CELL,
    *,
    threshold: float = bayes.ENTROPY_THRESHOLD,
) -> CellGenotype:
    """The cell of one cell type by the entropy rule (Sec. 3.6, Alg. 1 steps 4-5).

    Keeps every op whose ``gamma > threshold`` (entropy ``1/2 ln(2 pi e gamma) > 0``)
    and whose edge (zero-op) gate and source node survive
    (:func:`jaxnas.bayes.cell_keep`), each with weight 1: no top-k, so an edge may
    keep several ops (several ``(op, src)`` pairs with the same ``src``) and a node
    any number of edges.  A node with no surviving input is dead: it is left out of
    ``concat`` and the edges leaving it are dropped.  A node's pairs are listed by
    decreasing ``gamma``.  If no node survives the cell computes zeros: it gets empty
    nodes and ``concat`` = the last node, with a warning.

    Args:
      gamma: ``(topology.n_edges, len(primitives))``, column 0 the zero-op gates.
      primitives: the column names; ``primitives[0]`` must be ``"none"``.
    """
    g = np.asarray(gamma, np.float64)
    primitives = tuple(primitives)
    if not primitives or primitives[0] != "none":
        raise GenotypeError(f"primitives must start with 'none' (zero-op gate), got {primitives}")
    if g.shape != (topology.n_edges, len(primitives)):
        raise GenotypeError(
            f"gamma has shape {g.shape}, expected ({topology.n_edges}, {len(primitives)})"
        )
    if np.any(np.isnan(g)):
        raise GenotypeError("gamma contains NaN")
    keep = np.array(bayes.cell_keep(jnp.asarray(g, jnp.float32), topology, threshold))
    keep[:, 0] = False  # the zero op is the edge gate, never a kept op
    # cell_keep already drops the ops out of a dead node, so pruned_cell's check is moot
    return pruned_cell(g, keep, primitives, topology)


def derive_bayes(
    gamma_normal: Any,
    gamma_reduce: Any,
    primitives: Sequence[str],
    topology: CellTopology = DARTS_CELL,
    *,
    threshold: float = bayes.ENTROPY_THRESHOLD,
) -> Genotype:
    """:func:`derive_bayes_cell` for the normal and the reduction cell."""
    kw = dict(topology=topology, threshold=threshold)
    return Genotype(
        normal=derive_bayes_cell(gamma_normal, primitives, **kw),
        reduce=derive_bayes_cell(gamma_reduce, primitives, **kw),
    )


# -------------------------------------------------------------------------------- method


class BayesState(flax.struct.PyTreeNode):
    """The search state (a pytree of arrays).

    ``arch`` and ``hess`` are per cell instance, ``{"layer_00": (n_edges, 1 + n_ops),
    ...}``; ``gamma``, ``omega`` and ``mask`` per cell type, ``{"normal": (n_edges,
    1 + n_ops), "reduce": ...}`` (tied over the stacked cells, Alg. 2).
    """

    step: jax.Array  # int32: runner steps done
    params: Any  # network weights
    arch: Any  # the gates w (Sec. 3), 1 at init
    batch_stats: Any
    w_opt: optax.OptState
    a_opt: optax.OptState  # the gates' optimiser
    rng: jax.Array  # raw uint32 key (Hessian probes)
    gamma: Any  # prior variances gamma(t) (eq. 6 / 8)
    omega: Any  # re-weighting omega(t) of the penalty (eq. 18)
    mask: Any  # 1 = gate in use, 0 = pruned and held at 0 (float32)
    hess: Any  # the last Hessian estimate H (Alg. 1 step 2), before the 1/lam_w scaling
    updates: jax.Array  # int32: Hessian / gamma updates done


class BayesNAS(SearchMethodBase):
    """BayesNAS search (Algorithms 1-2; implements ``jaxnas.search.base.SearchMethod``).

    Besides the protocol: ``gates_by_type(arch)`` and ``per_layer(...)`` (the grouping
    of Alg. 2), ``gate_hessian`` (step 2), ``bayes_update`` (steps 3-4),
    ``hessian_update`` (steps 2-4; all pure), ``penalty`` (eq. 21), ``warmup_steps`` /
    ``update_period`` (the schedule in runner steps) and ``is_update_step(step)``.

    The runner has no epoch-end hook, so the update runs inside the jitted
    ``train_step`` behind a ``lax.cond`` on the step count (both branches are compiled
    into the step; only the taken one runs).

    Built by the method contract (``jaxnas.search.method.SearchMethodBase``): the
    DARTS supernet with one set of gates per cell, losses, ``init`` and ``eval_step``
    are the shared ones, and so is the weights' SGD (``optim.w_*``, weight decay on the
    weights only: the gates have their own optimiser); the hooks below and the update
    rule are BayesNAS' own.
    """

    name = "bayesnas"
    spaces = ("darts",)  # the groups, the updates and the derivation assume the DARTS cell
    arch_sharing = "cell"  # every cell instance has its own gates (A.3.6)

    # ---- the hooks of the method contract (jaxnas.search.method) -----------------------

    def check_config(self) -> None:
        """The option values, the lambdas and the schedule (one line each), the primitive
        list (``"none"`` first, the zero-op gate) and the size limit of the exact
        Hessians (:meth:`_check_exact`)."""
        m, s = self.config.model, self.config.search
        check_choices(
            self.config,
            ("model.edge_gate", EDGE_GATES),
            ("search.hessian", HESSIANS),
            ("search.train_on", TRAIN_ON),
            ("search.update_unit", UPDATE_UNITS),
            ("search.hessian_scale", ("mean", "sum")),
            ("search.dependency", bayes.DEPENDENCIES),
            ("search.order", ("alg1", "alg3")),
            ("search.negative", ("clip", "abs")),
            ("search.eval_bn", ("batch", "running")),
        )
        if s.lam_w <= 0 or s.lam_edge < 0:
            raise ValueError(
                f"search.lam_w must be > 0 and search.lam_edge >= 0 (0: same as lam_w), got "
                f"{s.lam_w}, {s.lam_edge}: the updates use H / lambda_w"
            )
        if s.warmup_epochs < 0 or s.update_every < 1:
            raise ValueError(
                f"search.warmup_epochs must be >= 0 and search.update_every >= 1, got "
                f"{s.warmup_epochs}, {s.update_every}"
            )
        if s.hessian_samples < 1 or s.probe_batch < 0:
            raise ValueError("search.hessian_samples must be >= 1 and search.probe_batch >= 0")
        if self.primitives[0] != "none" or len(self.primitives) < 2:
            raise ValueError(
                f"model.primitives must be 'none' (its column is the zero-op gate, Sec. 4.2) "
                f"followed by the ops, got {self.primitives}"
            )
        if "none" in self.primitives[1:]:
            raise ValueError("model.primitives may contain 'none' only once, as the first op")
        n_gates = m.layers * DARTS_CELL.n_edges * len(self.primitives)
        passes = self.config.data.batch_size * self.num_classes
        self._check_exact(s.hessian, n_gates, passes, int(s.exact_max))

    def make_mixer(self) -> BayesMixer:
        """Free gates, the zero-op gate where ``model.edge_gate`` puts it (eq. 1, Sec. 4.2)."""
        return BayesMixer(self.config.model.edge_gate)

    def setup(self) -> None:
        """The Hessian passes' twin supernets, the grouping of Alg. 2 (``cell_types``), the
        lambdas, the schedule in runner steps and ``eval_bn``."""
        s = self.config.search
        # the Hessian pass of "paper": the same network, gates with the C.3 backward pass
        mode = {"paper": "exact", "paper_meanfield": "meanfield"}.get(s.hessian, "")
        self.curv_model = self.model.clone(mixer=BayesMixer(self.config.model.edge_gate, mode))
        self.hvp_model = self.forward_mode_model()  # Hutchinson, jax.hessian
        names = self.model.arch_names()
        self.cell_types = {
            t: tuple(n for i, n in enumerate(names) if (i in self.reductions) == (t == "reduce"))
            for t in ("normal", "reduce")
        }
        self.cell_types = {t: v for t, v in self.cell_types.items() if v}
        self.lam_op = float(s.lam_w)
        self.lam_edge = float(s.lam_edge) if s.lam_edge > 0 else self.lam_op
        spe = self.steps_per_epoch
        self.warmup_steps = int(round(s.warmup_epochs * spe))
        self.update_period = s.update_every * (spe if s.update_unit == "epoch" else 1)
        self.eval_bn = s.eval_bn

    def arch_optimizer(self) -> optax.GradientTransformation:
        """The gates' SGD (lr ``g_lr``, no weight decay); their gradients are clipped on
        their own (they are a few hundred scalars)."""
        o = self.config.optim
        return torch_sgd(o.g_lr, momentum=o.g_momentum, weight_decay=0.0, grad_clip=o.grad_clip)

    def make_state(self, sample_images: np.ndarray, **fields: Any) -> BayesState:
        """Gates, gamma and omega 1 (Alg. 1 initialisation), no Hessian yet."""
        del sample_images
        shape = (self.topology.n_edges, len(self.primitives))
        ones = {t: jnp.ones(shape, jnp.float32) for t in self.cell_types}
        return BayesState(
            **fields,
            gamma=ones,
            omega=ones,
            mask=ones,
            hess=jax.tree.map(jnp.zeros_like, fields["arch"]),
            updates=jnp.zeros((), jnp.int32),
        )

    @staticmethod
    def _check_exact(kind: str, n_gates: int, passes: int, limit: int) -> None:
        """Refuse the exact estimators above ``search.exact_max`` before anything is
        compiled: their memory grows with the passes they vmap, not their time."""
        if kind == "exact" and n_gates > limit:
            raise ValueError(
                f"search.hessian='exact' builds the dense {n_gates}x{n_gates} Hessian of the "
                f"gates with {n_gates} forward-over-reverse passes at once (memory ~ "
                f"{n_gates} backward passes); {n_gates} gates exceed search.exact_max={limit}. "
                "Use 'paper' or 'ggn_mc', or raise search.exact_max"
            )
        if kind == "ggn_exact" and passes > limit:
            raise ValueError(
                f"search.hessian='ggn_exact' runs batch x classes = {passes} backward passes at "
                f"once (per-example Jacobians), above search.exact_max={limit}. Use 'paper' or "
                "'ggn_mc', or raise search.exact_max"
            )

    # ---- grouping (Alg. 2) -------------------------------------------------------------

    def gates_by_type(self, arch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """Per-layer arrays stacked per cell type: ``{"normal": (n_normal, n_edges, 1 + n_ops),
        "reduce": (n_reduce, n_edges, 1 + n_ops)}`` (the group axis first, A.3.6)."""
        return {t: jnp.stack([arch[n] for n in names]) for t, names in self.cell_types.items()}

    def per_layer(self, per_type: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """A cell type's ``(n_edges, 1 + n_ops)`` broadcast to each of its layers."""
        return {n: per_type[t] for t, names in self.cell_types.items() for n in names}

    def penalty(self, arch: dict[str, jax.Array], omega: dict[str, jax.Array]) -> jax.Array:
        """Eq. 21: ``sum_types sum_{e,o} lam omega[e, o] ||w[:, e, o]||_2`` (groups = copies)."""
        grouped = self.gates_by_type(arch)
        return sum(
            bayes.cell_penalty(grouped[t], omega[t], lam_edge=self.lam_edge, lam_op=self.lam_op)
            for t in grouped
        )

    def is_update_step(self, step: jax.Array | int) -> jax.Array:
        """Whether the runner step ``step`` (0-based) ends with a Hessian / gamma update."""
        t = jnp.asarray(step) + 1
        return (t > self.warmup_steps) & (t % self.update_period == 0)

    # ---- model -------------------------------------------------------------------------

    def _masked(self, arch, mask):
        return jax.tree.map(jnp.multiply, arch, self.per_layer(mask))

    # ---- Alg. 1 step 2: the Hessian w.r.t. the gates -------------------------------------

    def gate_hessian(self, params, arch, batch_stats, batch, key) -> dict[str, jax.Array]:
        """Diagonal curvature of the mean CE on ``batch`` w.r.t. every gate, like ``arch``.

        ``search.hessian`` picks the estimator (module docstring); BN in training mode;
        ``hessian_scale="sum"`` multiplies by the batch size (the Hessian of the summed
        CE).  Pure and jittable.
        """
        s = self.config.search
        images, labels = batch
        k, pb = s.hessian_samples, (s.probe_batch or None)
        sampler = cv.cross_entropy_sampler("mean")

        def logits(model):
            return lambda a: self.apply(model, params, a, batch_stats, images, train=True)[0]

        def ce(model):
            return lambda a: cross_entropy(logits(model)(a), labels)[0]

        if s.hessian in ("paper", "paper_meanfield"):
            h = cv.probe_vjp_mean(
                logits(self.curv_model), arch, key, sampler, num_samples=k, probe_batch=pb
            )
        elif s.hessian == "ggn_mc":
            h = cv.ggn_diag_mc(
                logits(self.model), arch, key, sampler, num_samples=k, probe_batch=pb
            )
        elif s.hessian == "hutchinson":
            h = cv.hutchinson_diag(ce(self.hvp_model), arch, key, num_samples=k, probe_batch=pb)
        elif s.hessian == "ggn_exact":

            def mean_ce(z):
                return optax.softmax_cross_entropy_with_integer_labels(z, labels).mean()

            h = cv.ggn_diag_exact(logits(self.model), arch, mean_ce)
        else:  # "exact"
            h = cv.hessian_diag(ce(self.hvp_model), arch, max_params=s.exact_max)
        if s.hessian_scale == "sum":
            h = jax.tree.map(lambda x: x * images.shape[0], h)
        return h

    # ---- Alg. 1 / 2 steps 3-4: closed-form update and pruning --------------------------------

    def bayes_update(self, state: BayesState, hess: dict[str, jax.Array]) -> BayesState:
        """``jaxnas.bayes.cell_update`` per cell type on the (masked) gates and ``hess``;
        with ``search.prune`` the pruned gates become 0 and stay masked.  Pure."""
        s = self.config.search
        gates = self.gates_by_type(self._masked(state.arch, state.mask))
        h = self.gates_by_type(hess)
        gamma, omega, mask = {}, {}, {}
        for t in gates:
            cs, info = bayes.cell_update(
                gates[t],
                h[t],
                bayes.CellState(state.gamma[t], state.omega[t]),
                self.topology,
                dependency=s.dependency,
                lam_edge=self.lam_edge,
                lam_op=self.lam_op,
                order=s.order,
                negative=s.negative,
            )
            gamma[t], omega[t] = cs.gamma, cs.omega
            keep = info.keep.astype(jnp.float32)
            mask[t] = state.mask[t] * keep if s.prune else state.mask[t]
        arch = self._masked(state.arch, mask) if s.prune else state.arch
        return state.replace(
            arch=arch, gamma=gamma, omega=omega, mask=mask, hess=hess, updates=state.updates + 1
        )

    def hessian_update(self, state: BayesState, batch, key: jax.Array) -> BayesState:
        """Alg. 1 / 2 steps 2-4: :meth:`gate_hessian` of the masked gates on ``batch``
        (probes from ``key``), then :meth:`bayes_update`.  Pure and jittable."""
        arch = self._masked(state.arch, state.mask)
        h = self.gate_hessian(state.params, arch, state.batch_stats, batch, key)
        return self.bayes_update(state, h)

    # ---- the step ----------------------------------------------------------------------------

    def _train_step(self, state: BayesState, train_batch, valid_batch):
        rng_next, rng_h = jax.random.split(jax.random.wrap_key_data(state.rng))
        both = self.config.search.train_on == "both"
        batches = (train_batch, valid_batch) if both else (train_batch,)
        warm = state.step < self.warmup_steps
        live = 1.0 - warm.astype(jnp.float32)  # warm-up: gates frozen, no penalty
        mask = self.per_layer(state.mask)

        def loss(params, arch, stats, batch):
            a = jax.tree.map(jnp.multiply, arch, mask)
            logits, stats = self.apply(self.model, params, a, stats, batch[0], train=True)
            ce, acc = cross_entropy(logits, batch[1])
            pen = self.penalty(a, state.omega)  # eq. 21 with omega(t-1)
            return ce + live * pen, (stats, ce, acc, pen)

        def body(c, batch):  # Alg. 1 step 1: one SGD step on weights and gates
            params, arch, stats, w_opt, a_opt = c
            grad_fn = jax.value_and_grad(loss, (0, 1), has_aux=True)
            (_, (stats, ce, acc, pen)), (g_w, g_a) = grad_fn(params, arch, stats, batch)
            g_a = jax.tree.map(lambda g: g * live, g_a)
            upd, w_opt = self.w_tx.update(g_w, w_opt, params)
            params = optax.apply_updates(params, upd)
            upd, a_opt = self.a_tx.update(g_a, a_opt, arch)
            arch = optax.apply_updates(arch, upd)
            f32 = lambda x: jnp.asarray(x, jnp.float32)
            m = dict(
                loss=f32(ce), accuracy=f32(acc), penalty=f32(pen), grad_norm=optax.tree.norm(g_w)
            )
            return (params, arch, stats, w_opt, a_opt), m

        stack = lambda *xs: jax.tree.map(lambda *a: jnp.stack(a), *xs)
        carry = (state.params, state.arch, state.batch_stats, state.w_opt, state.a_opt)
        carry, ms = jax.lax.scan(body, carry, stack(*batches))
        new = step_on(state, rng_next, *carry)

        do = self.is_update_step(state.step)  # Alg. 1 steps 2-4 on the step's last batch
        new = jax.lax.cond(
            do, lambda st: self.hessian_update(st, batches[-1], rng_h), lambda st: st, new
        )
        kept = [
            m[:, 1:] * bayes.cell_keep(new.gamma[t], self.topology)[:, 1:]
            for t, m in new.mask.items()
        ]
        metrics = {k: jnp.mean(v) for k, v in ms.items()}
        metrics.update(
            lr=self.lr_schedule(state.step),
            kept_ops=jnp.mean(jnp.stack([jnp.mean(k) for k in kept])),
            gamma_updates=new.updates.astype(jnp.float32),
            warmup=warm.astype(jnp.float32),
        )
        return new, metrics

    def eval_arch(self, state: BayesState) -> Any:
        """The pruned gates; ``eval_step`` reads BN by ``search.eval_bn``: ``"batch"``
        statistics of the batch (the function the search trains) or the ``"running"``
        averages."""
        return self._masked(state.arch, state.mask)

    # ---- reading the architecture ---------------------------------------------------------

    def arch_weights(self, state: BayesState) -> dict[str, np.ndarray]:
        """Per cell type: the gates' root mean square over the stacked copies
        (``||w_g||_2 / sqrt(n)``, ``{"normal": (n_edges, 1 + n_ops)}``, column 0 the
        zero-op gate) and ``"entropy_<type>"``, the prior's entropy ``1/2 ln(2 pi e
        gamma)`` (kept where > 0; floored at -20 for gamma = 0)."""
        gates = self.gates_by_type(self._masked(state.arch, state.mask))
        out = {}
        for t, g in gates.items():
            out[t] = np.asarray(jnp.sqrt(jnp.mean(jnp.square(g), axis=0)))
        for t, g in state.gamma.items():
            ent = np.asarray(bayes.entropy(jnp.maximum(g, 0.0)), np.float64)
            out[f"entropy_{t}"] = np.maximum(ent, ENTROPY_FLOOR)
        return out

    def genotype(self, state: BayesState) -> Genotype:
        """The entropy-rule genotype of the current gamma (:func:`derive_bayes`); before the
        first update (gamma = 1) it is the whole supernet."""
        gamma = {t: np.asarray(g) for t, g in state.gamma.items()}
        normal = gamma.get("normal", gamma.get("reduce"))
        reduce = gamma.get("reduce", normal)
        g = derive_bayes(normal, reduce, self.primitives, self.topology)
        if tuple(self.config.model.reductions):  # searched at other than DARTS' positions
            g = dataclasses.replace(g, reductions=self.reductions)
        return g
