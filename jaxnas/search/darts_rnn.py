"""DARTS on its recurrent space: the PTB cell search (Liu et al., ICLR 2019, Sec. 3.2;
[code]: ``rnn/train_search.py``, ``rnn/model_search.py``, ``rnn/architect.py``).

Every edge ``s_j -> s_i`` of the recurrent cell mixes DARTS' 5 primitives (``none``,
``tanh``, ``relu``, ``sigmoid``, ``identity``) by ``softmax(alpha)`` (Eq. 1,
:class:`jaxnas.supernet.SoftmaxMixer` on :meth:`jaxnas.search_spaces.RNNSpace.lm_supernet`),
``alpha = 1e-3 N(0, 1)``.  One iteration (:class:`jaxnas.search.rnn_search.RNNSearch`):
``alpha`` by Adam (lr 3e-3, betas (0.9, 0.999), PyTorch's coupled weight decay 1e-3)
on the validation gradient, first order (Eq. 7 with ``xi = 0``, [code]'s default) or
through one unrolled weight step (``search.order = "second"``); then the weights by
DARTS' SGD.  The cell is DARTS' rule (:func:`jaxnas.rnn.genotype.derive_darts_rnn`):
per node the predecessor and op, ``none`` excluded, of the largest softmax weight.
The run is :func:`jaxnas.run_rnn.search`.
"""

from __future__ import annotations

import jax
import ml_collections
import numpy as np
import optax

from jaxnas.rnn.genotype import RNNGenotype, derive_darts_rnn
from jaxnas.search.darts import arch_adam
from jaxnas.search.rnn_search import RNNSearch, RNNSearchState, rnn_search_config
from jaxnas.supernet import SoftmaxMixer

__all__ = ["DARTSRNN", "default_config"]


def default_config() -> ml_collections.ConfigDict:
    """The keys of ``method = "darts_rnn"`` with DARTS' PTB search values.

    The recurrent search's keys (:func:`jaxnas.search.rnn_search.rnn_search_config`), and
    model: ``primitives`` (``"darts_rnn"``: the 5 with ``none``; ``"rnn"``: the 4
    activations).
    optim: Adam on alpha ``a_lr``, ``a_beta1``, ``a_beta2``, ``a_weight_decay``;
    ``a_init_scale`` (alpha ``= a_init_scale N(0, 1)``).
    search: ``order`` ``"first"`` ([code]'s default; ``"second"``: exact through one step).
    """
    c = rnn_search_config()
    c.model.primitives = "darts_rnn"
    c.optim.update(a_lr=3e-3, a_beta1=0.9, a_beta2=0.999, a_weight_decay=1e-3, a_init_scale=1e-3)
    c.search.order = "first"
    return c


class DARTSRNN(RNNSearch):
    """DARTS' recurrent cell search (module docstring)."""

    name = "darts_rnn"

    def make_mixer(self) -> SoftmaxMixer:
        """``softmax(alpha)`` over the ops of an edge (Eq. 1)."""
        return SoftmaxMixer(init_scale=self.config.optim.a_init_scale)

    def init_arch(self, rng: jax.Array) -> dict[str, jax.Array]:
        """``{"recurrent": a_init_scale N(0, 1)}`` (``SoftmaxMixer.init_arch``)."""
        return self.net.init_arch(rng)

    def arch_optimizer(self) -> optax.GradientTransformation:
        """Adam with PyTorch's coupled weight decay (:func:`jaxnas.search.darts.arch_adam`)."""
        return arch_adam(self.config.optim)

    def arch_weights(self, state: RNNSearchState) -> dict[str, np.ndarray]:
        """``{"recurrent": softmax(alpha) (n_edges, n_ops)}``."""
        return {k: np.asarray(jax.nn.softmax(v, axis=-1)) for k, v in state.arch.items()}

    def genotype(self, state: RNNSearchState) -> RNNGenotype:
        """DARTS' rule on ``softmax(alpha)`` (:func:`jaxnas.rnn.genotype.derive_darts_rnn`)."""
        return derive_darts_rnn(self.arch_weights(state)["recurrent"], self.primitives)
