"""PR-DARTS: path-regularized DARTS with group-structured binary gates.

Source: Zhou, Xiong, Socher, Hoi, "Theory-Inspired Path-Regularized Differential
Network Architecture Search", NeurIPS 2020 (``shared/seeds/004_11a42a3af26776c1.txt``;
digest ``shared/spec/004_pr_darts.md``).  Its appendices (the algorithm box and
the optimiser settings) are missing; what they leave open follows the authors'
code (marked [code]).

The supernet (Eq. 7): no softmax; every (edge, op) pair has its own gate
``g ~ Bernoulli(sigmoid(beta))``, relaxed to a hard-concrete sample
(``jaxnas.gates``), and each intermediate node is

    X^(l) = sum_{s<l} sum_t g^(l)_{s,t} O_t(X^(s))                                (7)

"Randomly select only two operations on each edge to update" (L188): per step and
per cell type two ops per edge are selected (``jaxnas.gates.sample_two_ops``) and
**only those are computed**: the mixer (:class:`GateMixer`) marks the ops with a
non-zero weight as active and the supernet skips the others with ``lax.cond``
(``jaxnas.supernet.Mixer``, ``active`` hook).  ``search.gates`` picks the form:

* ``"paper"``: a uniformly random pair per edge, weighted by its continuous gate
  ``g in [0, 1]`` (Eq. 7; a selected gate that is exactly 0 is not computed either);
* ``"code"``: [code] ``get_gumbel_prob``: the top two of the gates after dropping
  each with probability 0.4, straight-through (forward weight exactly 1, gradient
  ``dg/dbeta``).

One iteration of ``train_step(state, train_batch, valid_batch)`` (first order, the
order of [code]: weights first; tau is the epoch's temperature):

1. W step on the train batch: gates ``G ~ q(stop_grad(beta), tau)``,
   ``W <- SGD(W, grad_W CE(net(W, G; x_t), y_t))``: lr 0.025 cosine per epoch to
   0.001, momentum 0.9 Nesterov, weight decay 5e-4, gradient-norm clip 5 [code];
2. beta step on the valid batch, a fresh gate sample ``G(beta)`` reparameterised:

       beta <- Adam(beta, grad_beta [ CE(net(W, G(beta); x_v), y_v)
                                      + lam1 L_skip + lam2 L_nonskip - lam3 L_path ])

   (the objective after Eq. 8, Sec. 4.1-4.2; ``jaxnas.search.prdarts_reg``), Adam
   3e-4, betas (0.5, 0.999), coupled L2 1e-3 [code].

tau is annealed linearly per epoch, 10 -> 0.1 (L188; per epoch as [code]).  It is a
traced argument of the compiled step (``step_with``; ``train_step`` computes it from
the step counter inside the program), so annealing never recompiles.  All gate
randomness comes from the key in the state, so a run is a pure function of its seed.

The ``"arch"`` collection of the supernet holds beta (``{"normal": (14, 8),
"reduce": (14, 8)}``, initialised ``1e-3 N(0, 1)`` [code]).  The search step feeds
the sampled gate *values* to the supernet in beta's place (the mixer's
``edge_weights`` is the identity), so ``jax.grad`` w.r.t. beta goes through the
sampling explicitly.  Architecture weights for plots are the activation
probabilities ``P(g != 0) = sigmoid(beta - tau ln(-a/b))`` (Theorem 3); the
genotype keeps the top two (predecessor, op) pairs per node by that probability
(L188; ``search.derive = "darts"``: two distinct predecessors, as DARTS).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxnas import gates
from jaxnas.common import tau_schedule
from jaxnas.search.darts import DARTS, SearchState
from jaxnas.search.darts import default_config as darts_default_config
from jaxnas.search.method import check_choices, step_on
from jaxnas.search.prdarts_reg import (
    DERIVE_RULES,
    LAMBDA_NONSKIP,
    LAMBDA_PATH,
    LAMBDA_SKIP,
    VARIANTS,
    op_groups,
    prdarts_derive,
    prdarts_regularizer,
)
from jaxnas.spaces.darts_genotype import Genotype
from jaxnas.supernet import Mixer

__all__ = ["GATE_MODES", "GateMixer", "PRDARTS", "default_config"]

GATE_MODES = ("paper", "code")
EVAL_GATES = ("top", "sample")


def default_config() -> ml_collections.ConfigDict:
    """Method-specific config keys of PR-DARTS with the paper's CIFAR-10 values.

    The paper gives 8 cells, C = 16, 200 epochs, batch 128, tau 10 -> 0.1, a = -0.1,
    b = 1.1, lambda = (0.01, 0.005, 0.005), SGD for W and Adam for beta (L188); the
    optimiser settings are [code]'s (the paper's appendix with them is missing).
    """
    c = darts_default_config()  # DARTS' supernet and optimisers, [code]'s changes:
    # a_init_scale: beta = a_init_scale * N(0, 1) ([code]: 1e-3).
    c.optim.update(dict(w_nesterov=True, w_weight_decay=5e-4, a_init_scale=1e-3))
    # tau_max -> tau_min linearly per epoch (L188; [code]'s default tau_max is 1).
    # gates: "paper" (uniform pair, continuous gate) | "code" (top-2 after drops, straight
    #   through); ops_per_edge: ops computed per edge and step (L188: 2); drop_prob: "code".
    # reg_variant: "paper" | "code" (jaxnas.search.prdarts_reg); reg_threshold: hinge on the
    #   group terms, < 0 = the variant's default (paper none, code 0.2); reg_combine: how
    #   normal and reduce cells combine ("mean" [code] | "sum").
    # derive: "paper" (top 2 pairs per node by P(g != 0)) | "darts" (2 distinct
    #   predecessors) | "code" (per-edge softmax of beta).
    # eval_gates: the supernet's gates in eval_step: "top" (per edge the ops_per_edge ops
    #   of largest beta with their noise-free gate) | "sample" (a draw, as [code] logs).
    c.search = ml_collections.ConfigDict(
        dict(
            epochs=200,
            tau_max=10.0,
            tau_min=0.1,
            gates="paper",
            ops_per_edge=2,
            drop_prob=0.4,
            reg_variant="paper",
            lambda_skip=LAMBDA_SKIP,
            lambda_nonskip=LAMBDA_NONSKIP,
            lambda_path=LAMBDA_PATH,
            reg_threshold=-1.0,
            reg_combine="mean",
            derive="paper",
            eval_gates="top",
        )
    )
    return c


@dataclasses.dataclass(frozen=True)
class GateMixer(Mixer):
    """Eq. 7: an edge's output is ``sum_t w_t O_t(x)`` with the gate values ``w`` as
    given (no softmax), and only the ops with ``w_t != 0`` are computed.

    ``init_arch`` gives beta ``= init_scale N(0, 1)`` ([code]: 1e-3).  At apply time
    the arch entries are the sampled gate weights (``jaxnas.gates.OpSample.weights``),
    which ``edge_weights`` passes through.  Skipping zero weights is exact (the
    ``active`` contract of ``jaxnas.supernet.Mixer``): an unselected op's weight is
    ``mask * (...)`` with a constant mask, and a selected gate that is exactly 0 is
    clipped, where ``dg/dbeta = 0`` (almost surely), so a zero weight has a zero
    gradient.
    """

    init_scale: float = 1e-3
    stochastic: bool = False
    #: ``search.ops_per_edge``: every gate sample and ``eval_gates`` mark at most this
    #: many ops per edge (``Mixer.max_active``)
    max_active: int | None = None

    def init_arch(self, rng: jax.Array, shape: tuple[int, int]) -> jax.Array:
        """beta ``= init_scale * N(0, 1)`` of ``shape``."""
        return self.init_scale * jax.random.normal(rng, shape, jnp.float32)

    def active(self, w: jax.Array) -> jax.Array:
        """Ops to compute on an edge: those with a non-zero gate weight."""
        return w != 0


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ValueError(message)


class PRDARTS(DARTS):
    """PR-DARTS search (implements ``jaxnas.search.base.SearchMethod``); see the module
    docstring.

    Reuses DARTS' state (:class:`jaxnas.search.darts.SearchState`, ``arch`` = beta,
    ``rng`` = the gate key), ``init``, losses (``apply``, ``loss``) and supernet.
    Entry points: ``train_step(state, train_batch, valid_batch)`` (jitted; tau and the
    lambdas from the config and the step counter) and ``step_with(state, train_batch,
    valid_batch, hyper)`` (jitted; ``hyper = {"tau", "lambda_skip", "lambda_nonskip",
    "lambda_path"}`` traced scalars: one compiled program for every setting),
    ``eval_step``, ``arch_weights``, ``genotype``; ``sample_gates``, ``eval_gates``,
    ``tau_at``, ``hyper_at``.
    """

    name = "prdarts"
    #: the regularizers and the derivation assume the DARTS cell (its chain 1 -> 2 -> ... -> 5)
    spaces = ("darts",)

    entry_points = ("train_step", "step_with", "eval_step")

    def check_config(self) -> None:
        """The gate, regularizer and derivation settings (one line each)."""
        s = self.config.search
        n_ops = len(self.primitives)
        check_choices(
            self.config,
            ("search.gates", GATE_MODES),
            ("search.reg_variant", VARIANTS),
            ("search.derive", DERIVE_RULES),
            ("search.eval_gates", EVAL_GATES),
            ("search.reg_combine", ("mean", "sum")),
        )
        _check(
            1 <= s.ops_per_edge <= n_ops,
            f"search.ops_per_edge must be in [1, {n_ops}], got {s.ops_per_edge}",
        )
        _check(0.0 <= s.drop_prob < 1.0, f"search.drop_prob must be in [0, 1), got {s.drop_prob}")
        _check(
            0.0 < s.tau_min <= s.tau_max,
            f"need 0 < search.tau_min <= search.tau_max, got {s.tau_min}, {s.tau_max}",
        )
        _check(s.epochs >= 1, f"search.epochs must be >= 1, got {s.epochs}")
        for key in ("lambda_skip", "lambda_nonskip", "lambda_path"):
            _check(s[key] >= 0, f"search.{key} must be >= 0, got {s[key]}")
        op_groups(self.primitives, s.reg_variant)  # needs skip_connect and a conv op

    def setup(self) -> None:
        """The regularizer's threshold (None: off)."""
        s = self.config.search
        self.threshold = None if s.reg_threshold < 0 else float(s.reg_threshold)

    # ---- the supernet's mixer ----------------------------------------------------------

    def make_mixer(self) -> GateMixer:
        """Eq. 7: gate-weighted sum, only non-zero gates computed."""
        return GateMixer(
            init_scale=self.config.optim.a_init_scale,
            max_active=self.config.search.ops_per_edge,
        )

    # ---- temperature and regularizer weights -------------------------------------------

    def tau_at(self, step: jax.Array | int) -> jax.Array:
        """tau of the epoch that step ``step`` (0-based) belongs to (linear per epoch)."""
        s = self.config.search
        epoch = jnp.minimum(jnp.asarray(step) // self.steps_per_epoch, s.epochs - 1)
        return jnp.asarray(tau_schedule(epoch, s.epochs, s.tau_max, s.tau_min), jnp.float32)

    def hyper_at(self, step: jax.Array | int) -> dict[str, jax.Array]:
        """``{"tau", "lambda_skip", "lambda_nonskip", "lambda_path"}`` for step ``step``."""
        s = self.config.search
        f32 = lambda v: jnp.asarray(v, jnp.float32)
        return dict(
            tau=self.tau_at(step),
            lambda_skip=f32(s.lambda_skip),
            lambda_nonskip=f32(s.lambda_nonskip),
            lambda_path=f32(s.lambda_path),
        )

    def _state_tau(self, state: SearchState) -> jax.Array:
        """tau of the last step taken (of step 0 before any)."""
        return self.tau_at(jnp.maximum(state.step - 1, 0))

    # ---- gates ---------------------------------------------------------------------------

    def sample_gates(
        self, key: jax.Array, beta: Mapping[str, jax.Array], tau: jax.Array | float
    ) -> dict[str, gates.OpSample]:
        """One :class:`jaxnas.gates.OpSample` per cell type (independent keys).

        All cells of a type share the draw, as in [code] (one sample per forward pass
        and cell type).
        """
        s = self.config.search
        names = sorted(beta)
        keys = jax.random.split(key, len(names))
        return {
            n: gates.sample_two_ops(
                k, beta[n], tau, mode=s.gates, k=s.ops_per_edge, drop_prob=s.drop_prob
            )
            for n, k in zip(names, keys)
        }

    def eval_gates(
        self, beta: Mapping[str, jax.Array], tau: jax.Array | float, key: jax.Array
    ) -> dict[str, jax.Array]:
        """Gate weights for evaluating the supernet (the paper does not say which).

        ``"top"``: per edge the ``ops_per_edge`` ops of largest beta, weighted by their
        noise-free gate (``gates.deterministic_gate``; ``"code"`` gates: weight 1);
        ``"sample"``: a training-time draw with ``key``.
        """
        s = self.config.search
        if s.eval_gates == "sample":
            return {n: o.weights for n, o in self.sample_gates(key, beta, tau).items()}
        out = {}
        for n, b in beta.items():
            _, top = jax.lax.top_k(b, s.ops_per_edge)
            mask = jax.nn.one_hot(top, b.shape[-1], dtype=b.dtype).sum(-2)
            g = gates.deterministic_gate(b, tau) if s.gates == "paper" else jnp.ones_like(b)
            out[n] = mask * g
        return out

    # ---- the step ---------------------------------------------------------------------------

    def _train_step(self, state: SearchState, train_batch, valid_batch):
        return self._step_with(state, train_batch, valid_batch, self.hyper_at(state.step))

    def _step_with(self, state: SearchState, train_batch, valid_batch, hyper):
        """One PR-DARTS iteration (W step, then beta step) with traced ``hyper``."""
        s = self.config.search
        tau = hyper["tau"]
        key = jax.random.wrap_key_data(state.rng)
        k_next, k_w, k_b, k_model = jax.random.split(key, 4)
        rng_model = jax.random.key_data(k_model)  # the supernet's "mixer" stream (unused)

        # 1. W step on the train half; gates from beta held fixed
        sample_w = self.sample_gates(k_w, jax.lax.stop_gradient(state.arch), tau)
        g_weights = {n: o.weights for n, o in sample_w.items()}
        (loss, (stats, acc)), (g_w, _) = self.loss_and_grads(
            state.params, g_weights, state.batch_stats, train_batch, rng_model
        )
        upd, w_opt = self.w_tx.update(g_w, state.w_opt, state.params)
        params = optax.apply_updates(state.params, upd)

        # 2. beta step on the valid half: CE through a fresh reparameterised draw + Eq. 8
        # terms.  The CE's gradient is pulled back through the draw from the gradient
        # with respect to the gate weights, which the shared loss_and_grads (the W
        # step's trace) computes; the mask the regularizer reads is held fixed there.
        def draw(beta):
            sample = self.sample_gates(k_b, beta, tau)
            return {n: o.weights for n, o in sample.items()}, {n: o.mask for n, o in sample.items()}

        weights, pull_back, mask = jax.vjp(draw, state.arch, has_aux=True)
        (ce_v, (_, acc_v)), (_, g_gates) = self.loss_and_grads(
            params, weights, stats, valid_batch, rng_model
        )

        def regularizer(beta):
            reg = prdarts_regularizer(
                beta,
                tau,
                variant=s.reg_variant,
                mask=mask,
                lambdas=(hyper["lambda_skip"], hyper["lambda_nonskip"], hyper["lambda_path"]),
                threshold=self.threshold,
                combine=s.reg_combine,
                primitives=self.primitives,
                topology=self.model.topology,
            )
            return reg.total, reg

        (_, reg), g_reg = jax.value_and_grad(regularizer, has_aux=True)(state.arch)
        g_beta = jax.tree.map(jnp.add, pull_back(g_gates)[0], g_reg)
        upd, a_opt = self.a_tx.update(g_beta, state.a_opt, state.arch)
        arch = optax.apply_updates(state.arch, upd)

        new = step_on(state, k_next, params, arch, stats, w_opt, a_opt)
        metrics = self.two_step_metrics(
            state,
            (loss, acc),
            (ce_v, acc_v),
            g_w,
            g_beta,
            reg=reg.total,
            reg_skip=reg.skip,
            reg_nonskip=reg.nonskip + reg.pool,
            reg_path=reg.path,
            tau=tau,
            ops_per_edge=self._ops_computed(g_weights),
        )
        return new, metrics

    def _ops_computed(self, weights: Mapping[str, jax.Array]) -> jax.Array:
        """Mean number of ops per edge that the supernet computed (non-zero, not ``none``)."""
        cols = np.array([i for i, p in enumerate(self.primitives) if p != "none"], np.int32)
        counts = [jnp.sum(w[:, cols] != 0, axis=-1).mean() for w in weights.values()]
        return jnp.asarray(sum(counts) / len(counts), jnp.float32)

    def eval_arch(self, state: SearchState) -> Any:
        """The supernet is evaluated with :meth:`eval_gates` in place of beta."""
        key = jax.random.wrap_key_data(state.rng)
        return self.eval_gates(state.arch, self._state_tau(state), key)

    # ---- reading the architecture ---------------------------------------------------------

    def arch_weights(self, state: SearchState) -> dict[str, np.ndarray]:
        """Activation probabilities ``P(g != 0) = sigmoid(beta - tau ln(-a/b))`` (Theorem 3)
        at the temperature of the last step, ``{"normal": (14, n_ops), "reduce": ...}``."""
        tau = self._state_tau(state)
        return {k: np.asarray(gates.p_nonzero(v, tau)) for k, v in state.arch.items()}

    def genotype(self, state: SearchState) -> Genotype:
        """``search.derive``'s rule on beta (``none`` never selected; the ranking by
        ``P(g != 0)`` is the ranking by beta, so tau does not matter)."""
        beta = {k: np.asarray(v) for k, v in state.arch.items()}
        return prdarts_derive(
            beta["normal"],
            beta["reduce"],
            rule=self.config.search.derive,
            primitives=self.primitives,
            topology=self.model.topology,
        )
