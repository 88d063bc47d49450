"""What the searches of DARTS' recurrent space share (DARTS ``rnn/train_search.py``).

One iteration of :meth:`RNNSearch.train_step`, for the architecture ``arch`` of a
method's mixer on the recurrent language-model supernet
(:meth:`jaxnas.search_spaces.RNNSpace.lm_supernet`):

1. ``arch`` by the method's optimiser on the validation hypergradient ``g = grad_arch
   l_val(w*(arch), arch)`` (DARTS Eq. 6 / SparseNAS Eq. 11): first order ``grad_arch
   l_val(w, arch)`` (DARTS Eq. 7 with ``xi = 0``), or exact through one unrolled weight
   step: ``jax.grad`` of ``arch -> l_val(w - xi (clip(grad_w l_train(w, arch)) + wd w),
   arch)``, ``xi`` the step's learning rate (DARTS ``rnn/architect.py``, which clips the
   virtual step's gradient at 0.25 too -- why this does not reuse
   :func:`jaxnas.bilevel.hypergrad.hypergradient`, which has no clip);
2. ``w`` by DARTS' SGD on the training window with the updated ``arch``.

Hidden states are carried across windows (the state's ``h_train``, ``h_valid``); the
architecture window is the validation split at the training window's position; the
dropouts are DARTS' (AWD-LSTM's).  A method (:class:`jaxnas.search.sparsenas_rnn.SparseNASRNN`,
:class:`jaxnas.search.darts_rnn.DARTSRNN`) sets its ``name``, mixer, architecture
initialisation and optimiser, the architecture its evaluation reads, its metrics and
its derivation.  The run is :func:`jaxnas.run_rnn.search`, on the one loop.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxnas import parallel
from jaxnas.rnn.genotype import RNNGenotype
from jaxnas.rnn.model import DARTS_DROPOUTS, Dropouts, lm_loss
from jaxnas.rnn.sgd import darts_sgd, sgd_apply, window_lr
from jaxnas.search.core import MethodCore, next_state
from jaxnas.search.method import as_key, check_choices
from jaxnas.search_spaces import RNN_SPACE
from jaxnas.supernet import Mixer

__all__ = ["RNNSearch", "RNNSearchState", "rnn_search_config"]


def rnn_search_config() -> ml_collections.ConfigDict:
    """The keys every recurrent search has, with DARTS' PTB search values
    (``rnn/train_search.py``).

    model: ``size`` (embedding = hidden), ``steps`` (intermediate nodes), ``batchnorm``
      (DARTS' search-cell BN), ``scan_nodes`` (one compiled node body: ~5x faster
      compile on CPU, ~2x the cell's multiply-adds; :func:`jaxnas.rnn.model.supernet_states`),
      the dropouts (DARTS' names) and ``tar_beta``.
    optim: weight SGD ``w_lr``, ``w_weight_decay``, ``grad_clip``.
    search: ``epochs``, ``order`` (``"first"`` | ``"second"``: exact through one step).
    text: ``bptt``, ``window`` (``"two_point"``: DARTS' search windows; ``"normal"``;
      ``"fixed"``), ``max_seq_len_delta``, ``eval_batch_size`` (validation perplexity).
    The shared ``data`` keys used: ``dataset`` (``"ptb"``), ``data_dir``, ``batch_size``.
    """
    c = ml_collections.ConfigDict()
    c.model = ml_collections.ConfigDict(
        dict(
            size=300,
            steps=8,
            batchnorm=True,
            scan_nodes=True,
            **DARTS_DROPOUTS,
            dropoute=0.0,
            tar_beta=1e-3,
        )
    )
    c.optim = ml_collections.ConfigDict(dict(w_lr=20.0, w_weight_decay=5e-7, grad_clip=0.25))
    c.search = ml_collections.ConfigDict(dict(epochs=50, order="second"))
    c.text = ml_collections.ConfigDict(
        dict(bptt=35, window="two_point", max_seq_len_delta=20, eval_batch_size=10)
    )
    return c


class RNNSearchState(flax.struct.PyTreeNode):
    step: jax.Array  # int32: iterations done
    params: Any  # embedding, bias, w0, ws (steps, H, 2H)
    arch: Any  # {"recurrent": (n_edges, n_ops)}: what the mixer reads
    w_opt: Any
    a_opt: Any
    h_train: jax.Array  # (B, H) carried across training windows
    h_valid: jax.Array  # (B, H) carried across architecture windows
    rng: jax.Array  # uint32 key data


def _clip(tree: Any, max_norm: float) -> Any:
    return optax.clip_by_global_norm(max_norm).update(tree, optax.EmptyState())[0]


class RNNSearch(MethodCore):
    """A search of the recurrent space (module docstring), built by the one setup
    (:meth:`jaxnas.search.core.MethodCore.set_up`); ``train_step``/``eval_step`` are
    jitted, ``mesh_steps`` compiles them for a data mesh with :meth:`entry_shardings`.

    Not an image method: the state carries the hidden states and the windows are text,
    so the image supernet and BN statistics of
    :class:`~jaxnas.search.method.SearchMethodBase` do not apply.  A subclass defines
    :meth:`make_mixer`, :meth:`init_arch`, :meth:`arch_optimizer`, :meth:`arch_weights`
    and :meth:`genotype`, and may override :meth:`resolve_primitives`,
    :meth:`eval_arch`, :meth:`arch_metrics`.
    """

    #: what the architecture plots show (``alphas.png``'s title)
    arch_label = "alpha"

    def __init__(self, config: ml_collections.ConfigDict, *, vocab_size: int, steps_per_epoch: int):
        """The one setup for a vocabulary of ``vocab_size`` words."""
        self.vocab_size = int(vocab_size)
        self.set_up(config, steps_per_epoch)

    # ---- hooks ---------------------------------------------------------------------------

    def resolve_primitives(self) -> tuple[str, ...]:
        """The ops of the architecture's columns (default ``model.primitives`` through
        :meth:`jaxnas.search_spaces.RNNSpace.resolve_primitives`)."""
        return RNN_SPACE.resolve_primitives(self.config.model.primitives)

    def make_mixer(self) -> Mixer:
        """How an edge mixes its ops."""
        raise NotImplementedError

    def init_arch(self, rng: jax.Array) -> dict[str, jax.Array]:
        """``{"recurrent": (n_edges, n_ops)}`` at the start."""
        raise NotImplementedError

    def eval_arch(self, state: RNNSearchState) -> dict[str, jax.Array]:
        """The architecture the validation perplexity reads (default ``state.arch``)."""
        return state.arch

    def arch_metrics(self, state: RNNSearchState, a_opt: Any) -> dict[str, jax.Array]:
        """A method's own metrics of a step (``a_opt``: the updated optimiser state)."""
        del state, a_opt
        return {}

    def arch_weights(self, state: RNNSearchState) -> dict[str, np.ndarray]:
        """``{"recurrent": (n_edges, n_ops)}``: what the plots and the derivation read."""
        raise NotImplementedError

    def genotype(self, state: RNNSearchState) -> RNNGenotype:
        """The derived cell."""
        raise NotImplementedError

    # ---- the one setup's hooks -----------------------------------------------------------

    def check_config(self) -> None:
        """``search.order``; ``model.steps`` and ``model.size`` at least 1."""
        m = self.config.model
        check_choices(self.config, ("search.order", ("first", "second")))
        if m.steps < 1 or m.size < 1:
            raise ValueError(f"model.steps and model.size must be >= 1, got {m.steps}, {m.size}")

    def setup(self) -> None:
        """The cell's ``steps`` nodes, the ops, the supernet of the method's mixer
        (:meth:`jaxnas.search_spaces.RNNSpace.lm_supernet`), the dropouts and the edges'
        labels."""
        m = self.config.model
        self.steps = int(m.steps)
        self.primitives = self.resolve_primitives()
        self.net = RNN_SPACE.lm_supernet(
            self.make_mixer(), vocab_size=self.vocab_size, model=m, primitives=self.primitives
        )
        self.dropouts = Dropouts.from_config(m)
        self.edge_labels = [f"s{j}->s{i}" for i in range(1, self.steps + 1) for j in range(i)]

    def weight_optimizer(self) -> optax.GradientTransformation:
        """DARTS' SGD of the weights (:func:`jaxnas.rnn.sgd.darts_sgd`), its learning
        rate applied per window."""
        o = self.config.optim
        return darts_sgd(o.grad_clip, o.w_weight_decay)

    def state_sharding(self, mesh: Any) -> RNNSearchState:
        """The state's layout on the data mesh ``mesh`` (a pytree prefix of the state):
        the hidden states ``(B, H)`` split along ``B`` like the windows' rows they carry
        across windows, everything else replicated."""
        rep, data = parallel.replicated(mesh), parallel.batch_sharding(mesh)
        fields = {f: rep for f in RNNSearchState.__dataclass_fields__}
        return RNNSearchState(**{**fields, "h_train": data, "h_valid": data})

    def entry_shardings(self, name: str, mesh: Any) -> tuple[tuple[Any, ...], Any]:
        """The layout of ``train_step`` and ``eval_step`` on the data mesh ``mesh`` (what
        ``mesh_steps`` compiles): the update rule on the global batch of ``B`` rows split
        over the ``n`` devices (``B % n == 0``).

        ``S`` = :meth:`state_sharding`, ``D`` = rows split over the devices, ``R`` =
        replicated; a window is ``(x: (B, T) D, y: (B, T) D, n: () R)``::

            train_step: (state: S, train window, arch window) -> (state: S, metrics: R)
            eval_step:  (state: S, window, hidden: (B, H) D) -> (nll_sum: R, count: R, hidden: D)

        The dropout masks are drawn for the global batch from the replicated key (the
        same masks as on one device), the search cell's BN and every mean are over the
        ``B`` rows, so the step is the 1-device step up to the order of sums.
        """
        rep, data = parallel.replicated(mesh), parallel.batch_sharding(mesh)
        state, window = self.state_sharding(mesh), (data, data, rep)
        if name == "train_step":
            return (state, window, window), (state, rep)
        return (state, window, data), (rep, rep, data)

    # ---- state --------------------------------------------------------------------------

    def init(self, rng: jax.Array, batch_size: int) -> RNNSearchState:
        """Weights as DARTS (:meth:`jaxnas.rnn.supernet.RNNSuperNet.init`), the
        architecture of :meth:`init_arch`, zero hidden states."""
        k_w, k_a, k_state = jax.random.split(as_key(rng), 3)
        params = self.net.init(k_w)
        arch = self.init_arch(k_a)
        zeros = jnp.zeros((batch_size, self.config.model.size), jnp.float32)
        return RNNSearchState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            arch=arch,
            w_opt=self.w_tx.init(params),
            a_opt=self.a_tx.init(arch),
            h_train=zeros,
            h_valid=zeros,
            rng=jax.random.key_data(k_state),
        )

    # ---- losses -------------------------------------------------------------------------

    def loss(self, params, arch, window, hidden, rng, *, train=True, tar=False):
        """Mean NLL of a window (+ TAR when ``tar``); aux ``(hidden, nll_sum, count)``.
        ``rng`` draws the dropout masks and (in training) a stochastic mixer's sample."""
        x, y, n = window
        mixer_rng = None
        if self.net.mixer.stochastic and train and rng is not None:
            rng, mixer_rng = jax.random.split(rng)
        logits, h, raw = self.net.apply(
            params,
            arch,
            x,
            hidden,
            n,
            dropouts=self.dropouts,
            rng=rng,
            train=train,
            mixer_rng=mixer_rng,
        )
        tar_beta = self.config.model.tar_beta if tar else 0.0
        loss, (nll_sum, count) = lm_loss(logits, y, n, raw, tar_beta)
        return loss, (h, nll_sum, count)

    def arch_gradient(self, state, train_window, valid_window, xi, rng_t, rng_v):
        """``(g, l_val, hidden_valid)``: first order, or exact through one clipped SGD
        step of ``w`` (DARTS ``rnn/architect.py``; module docstring)."""
        o = self.config.optim

        if self.config.search.order == "first":

            def val(a):
                return self.loss(state.params, a, valid_window, state.h_valid, rng_v)

        else:

            def val(a):
                def train_loss(w):
                    return self.loss(w, a, train_window, state.h_train, rng_t)[0]

                gw = _clip(jax.grad(train_loss)(state.params), o.grad_clip)
                w1 = jax.tree.map(
                    lambda p, g: p - xi * (g + o.w_weight_decay * p), state.params, gw
                )
                return self.loss(w1, a, valid_window, state.h_valid, rng_v)

        (lv, (hv, _, _)), g = jax.value_and_grad(val, has_aux=True)(state.arch)
        return g, lv, hv

    def _train_step(self, state: RNNSearchState, train_window, valid_window):
        key = jax.random.wrap_key_data(state.rng)
        rng_next, rng_t, rng_v, rng_w = jax.random.split(key, 4)
        lr = window_lr(self.config.optim.w_lr, train_window[2], self.config.text.bptt)
        # 1. architecture: the method's optimiser on the hypergradient
        g, l_val, h_valid = self.arch_gradient(state, train_window, valid_window, lr, rng_t, rng_v)
        upd, a_opt = self.a_tx.update(g, state.a_opt, state.arch)
        arch = optax.apply_updates(state.arch, upd)
        # 2. weights: SGD on the training window with the new architecture
        (_, (h_train, nll_sum, count)), gw = jax.value_and_grad(
            lambda w: self.loss(w, arch, train_window, state.h_train, rng_w, tar=True),
            has_aux=True,
        )(state.params)
        params, w_opt = sgd_apply(self.w_tx, gw, state.w_opt, state.params, lr)
        metrics = {
            "loss": nll_sum / count,
            "valid_loss": l_val,
            "grad_norm": optax.tree.norm(gw),
            "lr": lr,
            **self.arch_metrics(state, a_opt),
        }
        trees = dict(params=params, arch=arch, w_opt=w_opt, a_opt=a_opt)
        new = next_state(state, rng_next, **trees, h_train=h_train, h_valid=h_valid)
        return new, metrics

    def _eval_step(self, state: RNNSearchState, window, hidden):
        """``(nll_sum, count, hidden)`` of :meth:`eval_arch`, no dropout; the search
        cell's BN normalises with the batch's statistics here too (no running averages:
        DARTS keeps them, but they only matter for this logged perplexity)."""
        _, (h, nll_sum, count) = self.loss(
            state.params, self.eval_arch(state), window, hidden, None, train=False
        )
        return nll_sum, count, h
