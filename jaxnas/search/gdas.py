"""GDAS: search with a differentiable architecture sampler (Dong & Yang, "Searching for A
Robust Neural Architecture in Four GPU Hours", CVPR 2019; [code]: the authors'
AutoDL-Projects, ``exps/NAS-Bench-201-algos/GDAS.py`` and ``search_model_gdas*.py``).

Every edge ``(i, j)`` holds logits ``alpha`` over its ops, a categorical distribution
``Pr(op k) = softmax(alpha)_k`` (Eq. 2).  Each forward pass *samples one op per edge*
and computes only that op (Eq. 7, :class:`GumbelMixer`):

    o_k ~ Gumbel(0, 1),   k* = argmax_k (alpha_k + o_k),   h = one_hot(k*)     (Eq. 5)
    h~  = softmax((alpha + o) / tau)                                          (Eq. 6)
    w   = h + (h~ - stop_gradient(h~))    forward: exactly h; backward: that of h~

so an edge outputs ``O_k*(x)`` and ``dL/dalpha = <dL/dy, O_k*(x)> h~_k* (e_k* - h~) / tau``
(:func:`gumbel_hard`; the unselected ops are not computed, the ``active`` hook of
``jaxnas.supernet.Mixer``).  Using ``alpha`` in place of [code]'s ``log_softmax(alpha)``
changes nothing: both differ by a constant per edge.

One iteration of ``train_step`` ([code]'s ``search_func``: first order, alternating):

1. weight step on a batch of the *train* half with a fresh sample: DARTS' SGD (momentum
   0.9, weight decay, gradient norm clipped to 5, lr cosine per epoch);
2. architecture step on a batch of the *valid* half with the new weights and a fresh
   sample: Adam on alpha (3e-4, betas (0.5, 0.999), weight decay 1e-3).

The temperature falls linearly per epoch from ``search.tau_max`` to ``search.tau_min``
(10 -> 0.1, [paper] Sec. 4; [code]: ``tau_max - (tau_max - tau_min) * epoch / (epochs -
1)``, :meth:`GDAS.tau_at`).  It reaches the mixer as the supernet's traced ``step_input``
``{"tau": tau}``, so annealing never recompiles.  Cells of one type share one sample per
forward pass ([code]: one draw per cell type and pass).  The cell is derived from
``softmax(alpha)`` by DARTS' rule (DARTS space) or NAS-Bench-201's (per edge the argmax,
``none`` included: [code]'s ``TinyNetworkGDAS.genotype``).  Choices the paper leaves
open: the deviations table of ``docs/methods/gdas.md``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxnas.common import tau_schedule
from jaxnas.search.darts import DARTS
from jaxnas.search.darts import default_config as darts_default_config
from jaxnas.search.method import SearchState, check_choices, step_on
from jaxnas.supernet import SoftmaxMixer, weighted_sum

__all__ = ["GDAS", "UNSELECTED_GRADS", "GumbelMixer", "check_config", "default_config"]

#: what the ops an edge did not sample contribute to ``dL/dw`` (see :class:`GumbelMixer`)
UNSELECTED_GRADS = ("zero", "bias")


def default_config() -> ml_collections.ConfigDict:
    """GDAS' config keys with the CIFAR-10 search of the DARTS space ([paper] Sec. 4.1:
    C = 16, 8 cells, 240 epochs, tau 10 -> 0.1, DARTS' optimisers)."""
    # DARTS' model (space "darts" | "nb201") and optimisers, and
    # a_init_scale: alpha = a_init_scale * N(0, 1) ([code]: 1e-3)
    c = darts_default_config()
    c.optim.a_init_scale = 1e-3
    # unselected_grad: "zero" (an unsampled op adds nothing, [code]'s DARTS-space cells) |
    #   "bias" (it adds its weight w_k = 0 as a scalar: [code]'s NAS-Bench-201 cell).
    # nats_bench: NATS-Bench topology archive (model.space="nb201"), "" for none.
    c.search = ml_collections.ConfigDict(
        dict(epochs=240, tau_max=10.0, tau_min=0.1, unselected_grad="zero", nats_bench="")
    )
    return c


def check_config(config: ml_collections.ConfigDict) -> None:
    """One-line ``ValueError`` on a bad GDAS setting (cheap: before anything is built)."""
    s = config.search
    if not 0.0 < s.tau_min <= s.tau_max:
        raise ValueError(f"need 0 < search.tau_min <= search.tau_max, got {s.tau_min}, {s.tau_max}")
    check_choices(config, ("search.unselected_grad", UNSELECTED_GRADS))


def gumbel_hard(
    key: jax.Array, alpha: jax.Array, tau: jax.Array | float
) -> tuple[jax.Array, jax.Array]:
    """``(w, k)``: a hard Gumbel-softmax sample of every row of ``alpha`` ``(n_edges, n_ops)``.

    ``o = jax.random.gumbel(key, alpha.shape, alpha.dtype)``, ``k = argmax(alpha + o)``
    (Eq. 5, ``(n_edges,)``) and ``w = one_hot(k) + (h~ - stop_gradient(h~))`` with ``h~ =
    softmax((alpha + o) / tau)`` (Eq. 6): ``w`` is exactly one-hot (``x - x = 0``) and its
    Jacobian w.r.t. ``alpha`` is that of ``h~`` (the straight-through estimator).
    """
    z = alpha + jax.random.gumbel(key, alpha.shape, alpha.dtype)
    soft = jax.nn.softmax(z / tau, axis=-1)
    k = jnp.argmax(z, axis=-1)
    return jax.nn.one_hot(k, alpha.shape[-1], dtype=soft.dtype) + (
        soft - jax.lax.stop_gradient(soft)
    ), k


@dataclasses.dataclass(frozen=True)
class GumbelMixer(SoftmaxMixer):
    """Eq. 5-7: one sampled op per edge, weight 1 forward, the softmax's gradient back.

    alpha is DARTS' (``SoftmaxMixer.init_arch``: ``init_scale * N(0, 1)``).
    ``edge_weights(alpha, rng, {"tau": tau})`` is :func:`gumbel_hard`; without a
    ``step_input`` (``init``, ``eval_step``) it is the mode, ``one_hot(argmax alpha)``.
    ``active`` computes only the op of weight 1.  ``unselected_grad``: ``"zero"``: the
    others contribute nothing (``dL/dw_k = 0``); ``"bias"``: each adds its weight (0 in the
    forward pass) to the edge output, so ``dL/dw_k`` is the sum of ``dL/dy``.
    """

    unselected_grad: str = "zero"
    stochastic: bool = True
    max_active: int | None = 1  # the sample, or the mode, is one op per edge

    def edge_weights(
        self, arch: jax.Array, rng: jax.Array | None = None, step_input: Any = None
    ) -> jax.Array:
        """A hard sample ``(n_edges, n_ops)`` at ``step_input["tau"]``, else the mode."""
        if rng is None or step_input is None:
            return jax.nn.one_hot(jnp.argmax(arch, axis=-1), arch.shape[-1], dtype=arch.dtype)
        return gumbel_hard(rng, arch, step_input["tau"])[0]

    def active(self, w: jax.Array) -> jax.Array:
        """The sampled op (weight 1; the others are exactly 0)."""
        return w > 0.5

    def combines_by_weighted_sum(self) -> bool:
        """With ``"zero"``, :meth:`combine` is the weighted sum: only the sampled op's
        term is added (``Mixer.combines_by_weighted_sum``)."""
        return self.unselected_grad == "zero"

    def combine(self, outs, w: jax.Array) -> jax.Array:
        """``w_k* O_k*(x)`` (Eq. 7), plus the unselected weights for ``"bias"``."""
        y = weighted_sum(outs, w)
        if self.unselected_grad == "bias":
            off = jax.lax.stop_gradient(w) == 0
            y = y + jnp.sum(jnp.where(off, w, 0)).astype(y.dtype)
        return y


class GDAS(DARTS):
    """The GDAS search method (the DARTS family's contract; see the module docstring).

    Entry points: ``train_step(state, train_batch, valid_batch)`` and ``eval_step``
    (jitted), ``tau_at``, ``arch_weights`` (``softmax(alpha)``), ``genotype``.
    """

    name = "gdas"

    def check_config(self) -> None:
        """:func:`check_config` (no ``search.order``: GDAS is first order)."""
        check_config(self.config)

    def setup(self) -> None:
        """Nothing beyond the supernet and the two optimisers (no hypergradient)."""

    def make_mixer(self) -> GumbelMixer:
        """Eq. 5-7: one Gumbel-sampled op per edge."""
        o, s = self.config.optim, self.config.search
        return GumbelMixer(init_scale=o.a_init_scale, unselected_grad=s.unselected_grad)

    def tau_at(self, step: jax.Array | int) -> jax.Array:
        """tau of the epoch step ``step`` (0-based) belongs to, linear per epoch."""
        s = self.config.search
        epoch = jnp.minimum(jnp.asarray(step) // self.steps_per_epoch, s.epochs - 1)
        return jnp.asarray(tau_schedule(epoch, s.epochs, s.tau_max, s.tau_min), jnp.float32)

    def _train_step(self, state: SearchState, train_batch, valid_batch):
        """One GDAS iteration: weight step, then alpha step, each on its own sample."""
        tau = self.tau_at(state.step)
        hyper = {"tau": tau}
        k_next, k_w, k_a = jax.random.split(jax.random.wrap_key_data(state.rng), 3)
        k_w, k_a = jax.random.key_data(k_w), jax.random.key_data(k_a)

        # 1. weights on the train half, alpha fixed (its gradient is not taken: the
        # shared loss_and_grads computes it and XLA drops it)
        (loss, (stats, acc)), (g_w, _) = self.loss_and_grads(
            state.params, state.arch, state.batch_stats, train_batch, k_w, hyper
        )
        upd, w_opt = self.w_tx.update(g_w, state.w_opt, state.params)
        params = optax.apply_updates(state.params, upd)

        # 2. alpha on the valid half with the new weights (BN statistics updated as in [code])
        (loss_v, (stats, acc_v)), (_, g_a) = self.loss_and_grads(
            params, state.arch, stats, valid_batch, k_a, hyper
        )
        upd, a_opt = self.a_tx.update(g_a, state.a_opt, state.arch)
        arch = optax.apply_updates(state.arch, upd)

        new = step_on(state, k_next, params, arch, stats, w_opt, a_opt)
        return new, self.two_step_metrics(state, (loss, acc), (loss_v, acc_v), g_w, g_a, tau=tau)

    def arch_weights(self, state: SearchState) -> dict[str, np.ndarray]:
        """``softmax(alpha)`` per ``"arch"`` entry (Eq. 2), what the genotype is read from."""
        return {k: np.asarray(jax.nn.softmax(v, axis=-1)) for k, v in state.arch.items()}
