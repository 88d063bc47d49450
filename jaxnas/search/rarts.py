"""RARTS cell search on the DARTS space (F. Xue, PhD thesis, UC Irvine 2022, Ch. 2-3).

The algorithm box (thesis Algorithm 2 with the updates of Eq. 2.12), one
iteration of ``train_step(state, train_batch, valid_batch)``:

    batch_a <- the runner's "train" batch (D_a),  batch_p <- its "valid" batch (D_p)
    w+ = w - eta_w [ lam grad_w L_a(w, a) + beta (w - u) ]                     (2.12a)
    u+ = u - eta_u [ grad_u L_p(u, a) + beta (u - w+) ]                        (2.12b)
    a+ = a - eta_a [ lam grad_a L_a(w+, a) + grad_a L_p(u+, a)
                     + gamma grad_a P(a) ]                                      (2.12c)

minimising the regularised Lagrangian ``L_p(u, a) + lam L_a(w, a) + beta/2 ||u - w||^2
+ gamma P(a)`` (Eq. 2.8, 2.11) by Gauss-Seidel blocks w -> u -> alpha with the same
batch pair for all three (Eq. 2.34).  The step is ``jaxnas.bilevel.rarts_update.rarts_step``
with this package's supernet as the losses; each copy threads its own BN statistics.

Which half is which: the thesis sets ``L_p = L_2`` (DARTS' validation loss) and
``L_a = L_1`` (DARTS' training loss) (Sec. 2.3.2, L521), so the *primary* copy ``u``
trains on the runner's "valid" half (the half DARTS uses for alpha) and the
*auxiliary*, lam-weighted copy ``w`` on its "train" half (the half DARTS uses for
the weights).  Both halves are halves of the training set (``data.portion``).

Settings (thesis L1042, "similar to DARTS"): both copies momentum SGD 0.025 -> 0.001
(cosine per epoch), momentum 0.9, weight decay 3e-4, gradient clipping 5 per block;
alpha Adam 3e-4, betas (0.5, 0.999), weight decay 1e-3; 50 epochs, batch 64.  Each
optimiser receives the exact block gradient of the Lagrangian (so the w-step's
momentum sees the lam-scaled loss gradient, and weight decay adds to the coupling).
Not in the thesis, chosen here: ``lam = 1``, ``beta = 1`` (see ``default_config``),
``w^0 = u^0`` (``search.w_init = "copy"``), the latency table (``jaxnas.latency``).

After the search only alpha matters (Ch. 3 retrains the derived cell from scratch);
the genotype follows the DARTS rule (``jaxnas.genotype.derive``, thesis Sec. 3.1.3).
``eval_step`` evaluates the primary copy ``u`` with its own BN statistics: ``u`` is the
copy of the unweighted loss ``L_p``, the one that plays the role of the model being
selected (DARTS' upper level), and the last weights the Gauss-Seidel sweep updates.

``model.space = "nb201"`` searches the NAS-Bench-201 / NATS-Bench cell instead (thesis
Sec. 3.5, Table 3.3; DARTS' space hook, ``configs/rarts_nb201_cifar10.py``): the cell
is then derived by NAS-Bench-201's rule and ``search.nats_bench`` reads its accuracy.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxnas import latency as latency_lib
from jaxnas.bilevel.rarts_update import RARTSState, rarts_step
from jaxnas.common import cross_entropy, epoch_cosine_schedule, torch_sgd
from jaxnas.search import darts
from jaxnas.search.darts import DARTS
from jaxnas.search.method import as_key

__all__ = ["RARTS", "RARTSSearchState", "default_config"]


def default_config() -> ml_collections.ConfigDict:
    """Method-specific config keys of RARTS with the thesis's CIFAR-10 values.

    ``search.lam`` and ``search.beta`` are not in the thesis.  ``lam = 1``: the two
    halves are equal-sized samples of one distribution, and since each optimiser sees
    the lam-scaled gradient, lam = 1 keeps the w-copy on the DARTS learning rate the
    thesis quotes (any other lam rescales it).  ``beta = 1``: the coupling shrinks
    ``u - w`` by about ``eta beta`` per block per step, i.e. a time constant of ~20
    steps at lr 0.025 and ~500 at 0.001 (an epoch is 391 steps on CIFAR-10): the copies
    stay close but are not forced equal, and ``eta beta`` stays far inside Theorem 2.2's
    step bound ``eta_u < 1/(beta + 2L)``.  ``gamma = 0.002`` is the thesis's value for
    CIFAR-10 (L1054), with latencies in milliseconds; it acts only when
    ``search.latency_table`` names a table (``jaxnas latency``).
    """
    c = darts.default_config()
    # DARTS' optimisers without the Nesterov option; the u copy's SGD is the w copy's
    w = {k: v for k, v in c.optim.items() if k != "w_nesterov"}
    u = {"u" + k[1:]: w[k] for k in ("w_lr", "w_lr_min", "w_momentum", "w_weight_decay")}
    c.optim = ml_collections.ConfigDict(dict(u, **w))
    # lam, beta: Lagrangian weights (Eq. 2.8); gamma: latency weight (Eq. 2.11);
    # latency_table: JSON from `jaxnas latency` ("" = no penalty);
    # w_init: "copy" (w^0 = u^0) | "independent" (its own random init).
    # nats_bench: as DARTS' (model.space="nb201": report the benchmark's accuracy of the cell).
    c.search = ml_collections.ConfigDict(
        dict(
            epochs=50,
            lam=1.0,
            beta=1.0,
            gamma=0.002,
            latency_table="",
            w_init="copy",
            nats_bench="",
        )
    )
    return c


class RARTSSearchState(flax.struct.PyTreeNode):
    """Everything RARTS carries from step to step (a pytree of arrays)."""

    step: jax.Array  # int32 scalar: iterations done
    u: Any  # primary weights, trained on D_p (the runner's "valid" half)
    w: Any  # auxiliary weights, same tree as u, trained on D_a (the "train" half)
    arch: Any  # shared alpha, {"normal": (14, n_ops), "reduce": ...}
    u_stats: Any  # BN running statistics of the u copy
    w_stats: Any  # BN running statistics of the w copy
    u_opt: optax.OptState
    w_opt: optax.OptState
    a_opt: optax.OptState
    rng: jax.Array  # raw uint32 key


class RARTS(DARTS):
    """RARTS (implements ``jaxnas.search.base.SearchMethod``).

    Reuses DARTS' supernet, losses (``apply``, ``loss``), mixer, genotype rule and
    optimisers (``w``'s is DARTS' weight SGD; RARTS' config has no Nesterov option);
    its own are the two weight copies, the Gauss-Seidel step and the latency penalty.

    Entry points: ``train_step(state, train_batch, valid_batch)`` (jitted, lam/beta/
    gamma from the config) and ``step_with(state, train_batch, valid_batch, hyper)``
    (jitted, ``hyper = {"lam", "beta", "gamma"}`` traced scalars: one compiled program
    for every setting), ``eval_step``, ``arch_weights``, ``genotype``.
    """

    name = "rarts"

    entry_points = ("train_step", "step_with", "eval_step")

    def check_config(self) -> None:
        """lam, beta, gamma >= 0 and a known ``search.w_init``."""
        s = self.config.search
        for key in ("lam", "beta", "gamma"):
            if s[key] < 0:
                raise ValueError(f"search.{key} must be >= 0, got {s[key]}")
        if s.w_init not in ("copy", "independent"):
            raise ValueError(f"search.w_init must be 'copy' or 'independent', got {s.w_init!r}")
        if s.latency_table and self.space != "darts":
            raise ValueError("search.latency_table is measured on the DARTS space only")

    def setup(self) -> None:
        """The second weight copy's optimiser (``u``), the latency table, the
        hyperparameters of the jitted ``train_step``."""
        m, o, s = self.config.model, self.config.optim, self.config.search
        self.u_lr_schedule = epoch_cosine_schedule(
            o.u_lr, o.u_lr_min, s.epochs, self.steps_per_epoch
        )
        self.u_tx = torch_sgd(
            self.u_lr_schedule,
            momentum=o.u_momentum,
            weight_decay=o.u_weight_decay,
            grad_clip=o.grad_clip,
        )
        self.latency_table = None
        self.latency = None  # {"normal": (14, n_ops), "reduce": ...} ms, summed over cells
        if s.latency_table:
            table = latency_lib.load_table(s.latency_table)
            latency_lib.check_table(
                table,
                init_channels=m.init_channels,
                layers=m.layers,
                input_shape=self.input_shape,
                primitives=self.primitives,
                source=f"search.latency_table {s.latency_table!r}",
            )
            self.latency_table = table
            self.latency = {
                k: np.asarray(v, np.float32)
                for k, v in latency_lib.cell_type_latency(table).items()
            }
        self.hyper = dict(lam=float(s.lam), beta=float(s.beta), gamma=float(s.gamma))

    # ---- the latency penalty (thesis Sec. 3.1.4, Eq. 2.11, 2.38) ----------------------

    def latency_penalty(self, arch: Any) -> jax.Array:
        """``P(alpha) = sum_edges softmax(alpha_e) . LAT_e`` in ms (0 without a table)."""
        if self.latency is None:
            return jnp.zeros(())
        return latency_lib.latency_penalty(arch, self.latency)

    def arch_regularizer(self, arch: Any) -> jax.Array:
        """``gamma P(alpha)``, the alpha-only term of Eq. 2.11."""
        return self.config.search.gamma * self.latency_penalty(arch)

    # ---- the method ---------------------------------------------------------------------

    def init(self, rng: jax.Array, sample_images: np.ndarray) -> RARTSSearchState:
        """Initial state; ``sample_images`` only gives the input shape.  ``w^0 = u^0``
        unless ``search.w_init = "independent"`` (thesis L322 allows either)."""
        rng_init, rng_w, rng_state = jax.random.split(as_key(rng), 3)
        variables = self.init_variables(rng_init, sample_images)
        u, arch, stats = variables["params"], variables["arch"], variables["batch_stats"]
        if self.config.search.w_init == "independent":
            w = self.init_variables(rng_w, sample_images)["params"]
        else:
            w = jax.tree.map(jnp.array, u)
        return RARTSSearchState(
            step=jnp.zeros((), jnp.int32),
            u=u,
            w=w,
            arch=arch,
            u_stats=stats,
            w_stats=jax.tree.map(jnp.array, stats),
            u_opt=self.u_tx.init(u),
            w_opt=self.w_tx.init(w),
            a_opt=self.a_tx.init(arch),
            rng=jax.random.key_data(rng_state),
        )

    def hyper_at(self, step: jax.Array | int) -> dict[str, jax.Array]:
        """``{"lam", "beta", "gamma"}`` (float32 scalars) for step ``step``: the
        config's, the same at every step (``step_with``'s ``hyper``, as PR-DARTS')."""
        return {k: jnp.asarray(v, jnp.float32) for k, v in self.hyper.items()}

    def _train_step(self, state: RARTSSearchState, train_batch, valid_batch):
        return self._step_with(state, train_batch, valid_batch, self.hyper_at(state.step))

    def _step_with(self, state: RARTSSearchState, train_batch, valid_batch, hyper):
        """One RARTS iteration (Eq. 2.12 / Algorithm 2) with ``hyper = {lam, beta, gamma}``."""
        rng_next, rng_a, rng_p = jax.random.split(jax.random.wrap_key_data(state.rng), 3)
        rng_a, rng_p = jax.random.key_data(rng_a), jax.random.key_data(rng_p)
        f32 = lambda x: jnp.asarray(x, jnp.float32)

        def loss_fn(rng):
            # (params, alpha, batch, aux) -> (cross entropy, aux); aux = BN stats + accuracy
            def f(params, arch, batch, aux):
                loss, (stats, acc) = self.loss(params, arch, aux["stats"], batch, rng=rng)
                return loss, {"stats": stats, "acc": f32(acc)}

            return f

        zero = jnp.zeros((), jnp.float32)
        rs = RARTSState(
            u=state.u,
            w=state.w,
            alpha=state.arch,
            u_opt=state.u_opt,
            w_opt=state.w_opt,
            alpha_opt=state.a_opt,
            u_aux={"stats": state.u_stats, "acc": zero},
            w_aux={"stats": state.w_stats, "acc": zero},
        )
        new, info = rarts_step(
            rs,
            valid_batch,  # D_p: L_p = DARTS' L_val (thesis Sec. 2.3.2)
            train_batch,  # D_a: L_a = DARTS' L_train
            loss_p=loss_fn(rng_p),
            loss_a=loss_fn(rng_a),
            tx_u=self.u_tx,
            tx_w=self.w_tx,
            tx_alpha=self.a_tx,
            lam=hyper["lam"],
            beta=hyper["beta"],
            gamma=hyper["gamma"],
            penalty=self.latency_penalty if self.latency is not None else None,
            has_aux=True,
        )
        state = state.replace(
            step=state.step + 1,
            u=new.u,
            w=new.w,
            arch=new.alpha,
            u_stats=new.u_aux["stats"],
            w_stats=new.w_aux["stats"],
            u_opt=new.u_opt,
            w_opt=new.w_opt,
            a_opt=new.alpha_opt,
            rng=jax.random.key_data(rng_next),
        )
        # every value describes the iterate before the step, like DARTS' metrics
        metrics = dict(
            loss=f32(info.loss_a),  # L_a(w^t) on the "train" batch
            accuracy=new.w_aux["acc"],
            valid_loss=f32(info.loss_p),  # L_p(u^t) on the "valid" batch
            valid_accuracy=new.u_aux["acc"],
            lagrangian=f32(info.lagrangian),  # Eq. 2.11
            uw_distance=f32(jnp.sqrt(info.sq_distance)),  # ||u^t - w^t||
            latency=f32(info.penalty),  # P(alpha^t), ms
            lr=f32(self.lr_schedule(state.step - 1)),
            lr_u=f32(self.u_lr_schedule(state.step - 1)),
        )
        return state, metrics

    def _eval_step(self, state: RARTSSearchState, batch):
        """Loss and accuracy of the primary copy ``u`` (its own BN statistics), inference mode."""
        logits, _ = self.apply(
            self.model, state.u, state.arch, state.u_stats, batch[0], train=False, rng=state.rng
        )
        loss, acc = cross_entropy(logits, batch[1])
        return dict(loss=loss, accuracy=acc)
