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

The recurrent search run (workdir, checkpoints, resume, pictures) is
:func:`jaxnas.run_rnn.search`, an experiment of the one loop.
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
from jaxnas.rnn.genotype import RNN_OPS, RNNGenotype, derive_rnn, edge_index, node_groups
from jaxnas.rnn.model import DARTS_DROPOUTS, Dropouts, lm_loss
from jaxnas.rnn.sgd import darts_sgd, sgd_apply, window_lr
from jaxnas.rnn.supernet import RNNSuperNet
from jaxnas.search.core import MethodCore, next_state
from jaxnas.search.method import as_key, check_choices
from jaxnas.search.sparsenas import LinearMixer, arch_optimizer, arch_optimizer_keys

__all__ = ["RNNSearchState", "SparseNASRNN", "default_config"]

OPTIMIZERS = ("adam_hapg", "hapg")


def default_config() -> ml_collections.ConfigDict:
    """The keys of ``method = "sparsenas_rnn"`` with the PTB search values (module docstring).

    model: ``size`` (embedding = hidden), ``steps`` (intermediate nodes), ``batchnorm``
      (DARTS' search-cell BN), ``scan_nodes`` (one compiled node body: ~5x faster
      compile on CPU, ~2x the cell's multiply-adds; :func:`jaxnas.rnn.model.supernet_states`),
      ``arch_init`` (``"uniform"``: ``A = 1/4``; ``"ones"``),
      ``arch_init_noise`` (relative), the dropouts (DARTS' names) and ``tar_beta``.
    optim: weight SGD ``w_lr``, ``w_weight_decay``, ``grad_clip``; AdamHAPG ``a_lr``,
      ``a_beta1``, ``a_beta2``, ``a_eps``; HAPG ``hapg_lr`` (cosine per epoch to
      ``hapg_lr_min``); ``a_momentum`` (``"apg"`` or a constant); ``a_weight_decay``.
    search: ``epochs``, ``order`` (``"first"`` | ``"second"``: exact through one step),
      ``optimizer``, ``alpha``, ``lam_start``, ``lam_step``, ``lam_every``,
      ``prune_threshold``.
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
            arch_init="uniform",
            arch_init_noise=0.0,
            **DARTS_DROPOUTS,
            dropoute=0.0,
            tar_beta=1e-3,
        )
    )
    optim_keys, search_keys = arch_optimizer_keys()  # the paper's, as the CNN search's
    c.optim = ml_collections.ConfigDict(
        dict(w_lr=20.0, w_weight_decay=5e-7, grad_clip=0.25, a_lr=1e-4, **optim_keys)
    )
    c.search = ml_collections.ConfigDict(dict(epochs=50, order="second", **search_keys))
    c.text = ml_collections.ConfigDict(
        dict(bptt=35, window="two_point", max_seq_len_delta=20, eval_batch_size=10)
    )
    return c


class RNNSearchState(flax.struct.PyTreeNode):
    step: jax.Array  # int32: iterations done
    params: Any  # embedding, bias, w0, ws (steps, H, 2H)
    arch: Any  # {"recurrent": A (36, 4)}: the extrapolated A_t of Eq. 8
    w_opt: Any
    a_opt: Any  # holds theta (the sparse prox output)
    h_train: jax.Array  # (B, H) carried across training windows
    h_valid: jax.Array  # (B, H) carried across architecture windows
    rng: jax.Array  # uint32 key data


def _clip(tree: Any, max_norm: float) -> Any:
    return optax.clip_by_global_norm(max_norm).update(tree, optax.EmptyState())[0]


class SparseNASRNN(MethodCore):
    """SparseNAS' RNN search (module docstring), built by the one setup
    (:meth:`jaxnas.search.core.MethodCore.set_up`); ``train_step``/``eval_step`` are
    jitted, ``mesh_steps`` compiles them for a data mesh with :meth:`entry_shardings`.

    Not an image method: the state carries the hidden states and the windows are text,
    so the supernet, BN statistics and mixers of
    :class:`~jaxnas.search.method.SearchMethodBase` do not apply.
    """

    name = "sparsenas_rnn"
    primitives = RNN_OPS

    def __init__(self, config: ml_collections.ConfigDict, *, vocab_size: int, steps_per_epoch: int):
        """The one setup for a vocabulary of ``vocab_size`` words."""
        self.vocab_size = int(vocab_size)
        self.set_up(config, steps_per_epoch)

    def check_config(self) -> None:
        """The options' values; ``model.steps`` and ``model.size`` at least 1."""
        m = self.config.model
        check_choices(
            self.config,
            ("search.optimizer", OPTIMIZERS),
            ("search.order", ("first", "second")),
            ("model.arch_init", ("uniform", "ones")),
        )
        if m.steps < 1 or m.size < 1:
            raise ValueError(f"model.steps and model.size must be >= 1, got {m.steps}, {m.size}")

    def setup(self) -> None:
        """The cell's ``steps`` nodes, the supernet (the recurrent space's cell, its edges
        mixed by :class:`~jaxnas.search.sparsenas.LinearMixer`: ``w = A``, Eq. 1), its
        dropouts, the SGL groups of ``A`` (Eq. 2: one per node ``i``, its ``4 i`` incoming
        weights) and the edges' labels."""
        m = self.config.model
        self.steps = int(m.steps)
        self.net = RNNSuperNet(
            LinearMixer(),
            self.vocab_size,
            m.size,
            self.steps,
            RNN_OPS,
            batchnorm=m.batchnorm,
            scan_nodes=m.scan_nodes,
        )
        self.dropouts = Dropouts.from_config(self.config.model)
        self.groups = {"recurrent": node_groups(len(RNN_OPS), self.steps)}  # Eq. 2: sizes 4 i
        self.edge_labels = [f"s{j}->s{i}" for i in range(1, self.steps + 1) for j in range(i)]

    def weight_optimizer(self) -> optax.GradientTransformation:
        """DARTS' SGD of the weights (:func:`jaxnas.rnn.sgd.darts_sgd`), its learning
        rate applied per window."""
        o = self.config.optim
        return darts_sgd(o.grad_clip, o.w_weight_decay)

    def arch_optimizer(self) -> optax.GradientTransformation:
        """AdamHAPG or HAPG on ``A`` (Eqs. 6-8; the paper found HAPG diverges on the
        RNN) after ``optim.a_weight_decay``; sets ``a_lr_schedule`` and ``lam_schedule``."""
        o = self.config.optim
        a_opt, self.a_lr_schedule, self.lam_schedule = arch_optimizer(
            self.config, self.steps_per_epoch, self.groups
        )
        chain = [optax.add_decayed_weights(o.a_weight_decay)] if o.a_weight_decay else []
        return optax.chain(*chain, a_opt)

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
        """Weights as DARTS, ``A_0 = theta_0 = 1/4`` (or 1) times ``1 + noise N(0, 1)``."""
        m = self.config.model
        k_w, k_a, k_state = jax.random.split(as_key(rng), 3)
        params = self.net.init(k_w)
        shape = self.net.arch_shape
        scale = 1.0 / len(RNN_OPS) if m.arch_init == "uniform" else 1.0
        noise = jax.random.normal(k_a, shape) if m.arch_init_noise else 0.0
        arch = {"recurrent": scale * (1.0 + m.arch_init_noise * noise) * jnp.ones(shape)}
        zeros = jnp.zeros((batch_size, m.size), jnp.float32)
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

    def theta(self, state: RNNSearchState) -> dict[str, jax.Array]:
        """The sparse iterate ``theta_t`` (the last prox output, Eqs. 5, 9, 10)."""
        return optax.tree_utils.tree_get(state.a_opt, "theta")

    # ---- losses -------------------------------------------------------------------------

    def loss(self, params, arch, window, hidden, rng, *, train=True, tar=False):
        """Mean NLL of a window (+ TAR when ``tar``); aux ``(hidden, nll_sum, count)``."""
        x, y, n = window
        logits, h, raw = self.net.apply(
            params, arch, x, hidden, n, dropouts=self.dropouts, rng=rng, train=train
        )
        tar_beta = self.config.model.tar_beta if tar else 0.0
        loss, (nll_sum, count) = lm_loss(logits, y, n, raw, tar_beta)
        return loss, (h, nll_sum, count)

    def arch_gradient(self, state, train_window, valid_window, xi, rng_t, rng_v):
        """``(g, l_val, hidden_valid)``: Eq. 11 first order, or exact through one clipped SGD
        step of ``w`` (Eq. 12; DARTS ``rnn/architect.py``)."""
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
        # 1. architecture: AdamHAPG / HAPG on the hypergradient (Eqs. 5-12)
        g, l_val, h_valid = self.arch_gradient(state, train_window, valid_window, lr, rng_t, rng_v)
        upd, a_opt = self.a_tx.update(g, state.a_opt, state.arch)
        arch = optax.apply_updates(state.arch, upd)
        # 2. weights: SGD on the training window with the new A
        (_, (h_train, nll_sum, count)), gw = jax.value_and_grad(
            lambda w: self.loss(w, arch, train_window, state.h_train, rng_w, tar=True),
            has_aux=True,
        )(state.params)
        params, w_opt = sgd_apply(self.w_tx, gw, state.w_opt, state.params, lr)
        theta = optax.tree_utils.tree_get(a_opt, "theta")["recurrent"]
        dead = sum(
            jnp.all(theta[edge_index(i, 0) : edge_index(i, 0) + i] == 0).astype(jnp.int32)
            for i in range(1, self.steps + 1)
        )
        trees = dict(params=params, arch=arch, w_opt=w_opt, a_opt=a_opt)
        new = next_state(state, rng_next, **trees, h_train=h_train, h_valid=h_valid)
        metrics = {
            "loss": nll_sum / count,
            "valid_loss": l_val,
            "grad_norm": optax.tree.norm(gw),
            "lr": lr,
            "lam": self.lam_schedule(state.step),
            "theta_zero_frac": jnp.mean(theta == 0),
            "zero_groups": dead,
        }
        return new, metrics

    def _eval_step(self, state: RNNSearchState, window, hidden):
        """``(nll_sum, count, hidden)`` of the sparse supernet (``theta``), no dropout; the
        search cell's BN normalises with the batch's statistics here too (no running
        averages: DARTS keeps them, but they only matter for this logged perplexity)."""
        _, (h, nll_sum, count) = self.loss(
            state.params, self.theta(state), window, hidden, None, train=False
        )
        return nll_sum, count, h

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
