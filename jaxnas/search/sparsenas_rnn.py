"""SparseNAS on DARTS' recurrent space: the PTB cell search (Wu et al., AAAI 2021, Sec. 4, RNN).

The paper: "same cell setup and search space as DARTS", 50 epochs, batch 256,
**AdamHAPG** with lr 1e-4 and betas (0.5, 0.999) (HAPG diverged on the RNN,
paper's ablation).  Everything else is DARTS' ``rnn/train_search.py``: SGD lr
20 (scaled per step by ``seq_len / bptt``), gradient clip 0.25, weight decay
5e-7, embedding = hidden = 300, dropouts (output 0.75, hidden 0.25, x 0.75,
input 0.2, embedding 0), temporal activation regularisation 1e-3, BPTT 35
(0.95) or 17 (0.05), hidden states carried across windows and reset each epoch,
the architecture batch taken from the validation split at the same position.

One iteration of :meth:`SparseNASRNN.train_step` (Algorithm 1):

1. ``A`` by AdamHAPG (or HAPG) on the validation hypergradient
   ``g = grad_A l_val(w*(A), A)`` (Eq. 11): first order ``grad_A l_val(w, A)`` or
   exact through one unrolled weight step (Eq. 12 without approximation):
   ``jax.grad`` of ``A -> l_val(w - xi (clip(grad_w l_train(w, A)) + wd w), A)``,
   ``xi`` the step's learning rate (DARTS ``rnn/architect.py``, which clips the
   virtual step's gradient at 0.25 too -- why this does not reuse
   :func:`jaxnas.bilevel.hypergrad.hypergradient`, which has no clip).  The
   SGL penalty (Eq. 2) enters only through the prox (Eqs. 5, 9, 10), with one
   group per node (its ``4 i`` incoming weights); lambda is pathwise
   (:func:`~jaxnas.search.sparsenas.pathwise_lambda`);
2. ``w`` by SGD on the training window with the updated ``A``.

The network uses the extrapolated ``A_t`` (Eq. 8); the sparse prox output
``theta`` is what :meth:`SparseNASRNN.genotype`, ``arch_weights`` and the
validation perplexity read (as in the CNN search, :mod:`jaxnas.search.sparsenas`).

The step (both orders, the weight step, the state, the data-mesh layout) is the
recurrent search's, :class:`jaxnas.search.rnn_search.RNNSearch`, shared with DARTS'
(:mod:`jaxnas.search.darts_rnn`); its network is the recurrent space's supernet
(:meth:`jaxnas.search_spaces.RNNSpace.lm_supernet`) with
:class:`~jaxnas.search.sparsenas.LinearMixer` (``w = A``, Eq. 1).  The recurrent search
run (workdir, checkpoints, resume, pictures) is :func:`jaxnas.run_rnn.search`, an
experiment of the one loop.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxnas.rnn.genotype import RNN_OPS, RNNGenotype, derive_rnn, edge_index, node_groups
from jaxnas.search.method import check_choices
from jaxnas.search.rnn_search import RNNSearch, RNNSearchState, rnn_search_config
from jaxnas.search.sparsenas import LinearMixer, arch_optimizer, arch_optimizer_keys

__all__ = ["RNNSearchState", "SparseNASRNN", "default_config"]

OPTIMIZERS = ("adam_hapg", "hapg")


def default_config() -> ml_collections.ConfigDict:
    """The keys of ``method = "sparsenas_rnn"`` with the PTB search values (module docstring).

    The recurrent search's keys (:func:`jaxnas.search.rnn_search.rnn_search_config`:
    model ``size``, ``steps``, ``batchnorm``, ``scan_nodes``, the dropouts, ``tar_beta``;
    optim ``w_lr``, ``w_weight_decay``, ``grad_clip``; search ``epochs``, ``order``
    (``"second"`` here); text), and
    model: ``arch_init`` (``"uniform"``: ``A = 1/4``; ``"ones"``), ``arch_init_noise``
      (relative).
    optim: AdamHAPG ``a_lr``, ``a_beta1``, ``a_beta2``, ``a_eps``; HAPG ``hapg_lr``
      (cosine per epoch to ``hapg_lr_min``); ``a_momentum`` (``"apg"`` or a constant);
      ``a_weight_decay``.
    search: ``optimizer``, ``alpha``, ``lam_start``, ``lam_step``, ``lam_every``,
      ``prune_threshold``.
    """
    c = rnn_search_config()
    c.model.update(arch_init="uniform", arch_init_noise=0.0)
    optim_keys, search_keys = arch_optimizer_keys()  # the paper's, as the CNN search's
    c.optim.update(a_lr=1e-4, **optim_keys)
    c.search.update(order="second", **search_keys)
    return c


class SparseNASRNN(RNNSearch):
    """SparseNAS' RNN search (module docstring) on the recurrent search of
    :class:`jaxnas.search.rnn_search.RNNSearch`: ``state.arch`` is the extrapolated
    ``A_t`` of Eq. 8, ``state.a_opt`` holds ``theta`` (the sparse prox output)."""

    name = "sparsenas_rnn"
    arch_label = "theta"

    def resolve_primitives(self) -> tuple[str, ...]:
        """The 4 activations, no ``none`` (``A = 0`` is the zero op)."""
        return RNN_OPS

    def check_config(self) -> None:
        """The options' values; ``model.steps`` and ``model.size`` at least 1."""
        super().check_config()
        check_choices(
            self.config,
            ("search.optimizer", OPTIMIZERS),
            ("model.arch_init", ("uniform", "ones")),
        )

    def make_mixer(self) -> LinearMixer:
        """Eq. 1: ``w = A`` (:class:`~jaxnas.search.sparsenas.LinearMixer`)."""
        return LinearMixer()

    def setup(self) -> None:
        """The recurrent search's setup, the SGL groups of ``A`` (Eq. 2: one per node
        ``i``, its ``4 i`` incoming weights)."""
        super().setup()
        self.groups = {"recurrent": node_groups(len(RNN_OPS), self.steps)}  # Eq. 2: sizes 4 i

    def arch_optimizer(self) -> optax.GradientTransformation:
        """AdamHAPG or HAPG on ``A`` (Eqs. 6-8; the paper found HAPG diverges on the
        RNN) after ``optim.a_weight_decay``; sets ``a_lr_schedule`` and ``lam_schedule``."""
        o = self.config.optim
        a_opt, self.a_lr_schedule, self.lam_schedule = arch_optimizer(
            self.config, self.steps_per_epoch, self.groups
        )
        chain = [optax.add_decayed_weights(o.a_weight_decay)] if o.a_weight_decay else []
        return optax.chain(*chain, a_opt)

    def init_arch(self, rng: jax.Array) -> dict[str, jax.Array]:
        """``A_0 = theta_0 = 1/4`` (or 1) times ``1 + noise N(0, 1)``."""
        m = self.config.model
        shape = self.net.arch_shape
        scale = 1.0 / len(RNN_OPS) if m.arch_init == "uniform" else 1.0
        noise = jax.random.normal(rng, shape) if m.arch_init_noise else 0.0
        return {"recurrent": scale * (1.0 + m.arch_init_noise * noise) * jnp.ones(shape)}

    def theta(self, state: RNNSearchState) -> dict[str, jax.Array]:
        """The sparse iterate ``theta_t`` (the last prox output, Eqs. 5, 9, 10)."""
        return optax.tree_utils.tree_get(state.a_opt, "theta")

    def eval_arch(self, state: RNNSearchState) -> dict[str, jax.Array]:
        """The sparse supernet: ``theta``."""
        return self.theta(state)

    def arch_metrics(self, state: RNNSearchState, a_opt) -> dict[str, jax.Array]:
        """``lam`` (the pathwise lambda of the step), ``theta_zero_frac`` and
        ``zero_groups`` (the nodes whose every incoming weight is exactly 0)."""
        theta = optax.tree_utils.tree_get(a_opt, "theta")["recurrent"]
        dead = sum(
            jnp.all(theta[edge_index(i, 0) : edge_index(i, 0) + i] == 0).astype(jnp.int32)
            for i in range(1, self.steps + 1)
        )
        return {
            "lam": self.lam_schedule(state.step),
            "theta_zero_frac": jnp.mean(theta == 0),
            "zero_groups": dead,
        }

    # ---- reading the architecture -------------------------------------------------------

    def arch_weights(self, state: RNNSearchState) -> dict[str, np.ndarray]:
        """``{"recurrent": theta (36, 4)}``."""
        return {k: np.asarray(v) for k, v in self.theta(state).items()}

    def genotype(self, state: RNNSearchState) -> RNNGenotype:
        """The mixed-path cell of ``theta`` (:func:`~jaxnas.rnn.genotype.derive_rnn`)."""
        return derive_rnn(
            self.arch_weights(state)["recurrent"],
            RNN_OPS,
            threshold=self.config.search.prune_threshold,
        )
