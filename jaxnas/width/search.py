"""Width search: channel scores searched with RARTS plus an l1 penalty (thesis Algorithm 3).

F. Xue, PhD thesis (UC Irvine 2022), Sec. 4.2.  Every prunable channel ``i`` of a
:class:`~jaxnas.models.prunable.Prunable` model carries a score ``alpha_i`` (thesis
Eq. 4.1, the ``"arch"`` collection).  The search stage of Algorithm 3 minimises the
regularised RARTS Lagrangian (thesis Eq. 2.8, 2.11 with ``P = ||alpha||_1``)

    L(u, w, alpha) = L_p(u, alpha) + lam L_a(w, alpha) + beta/2 ||u - w||^2
                     + gamma ||alpha||_1                        (gamma = 1e-4, thesis L1160)

on the two halves ``D_p`` / ``D_a`` of the training set by one Gauss-Seidel sweep per
iteration (thesis Eq. 2.12, :func:`jaxnas.bilevel.rarts_update.rarts_step`):

    w+ = w - eta [ lam grad_w L_a(w, a) + beta (w - u) ]                      (2.12a)
    u+ = u - eta [ grad_u L_p(u, a) + beta (u - w+) ]                          (2.12b)
    a+ = prox_{eta_a gamma ||.||_1}( a - eta_a [ lam grad_a L_a(w+, a)
                                                + grad_a L_p(u+, a) ] )         (2.12c)

The l1 term acts on the score update only, in one of two forms
(:mod:`jaxnas.optim.l1`): ``l1="prox"`` (soft threshold after the smooth step, which
leaves **exact zeros**: the learned pruning ratio of thesis Table 4.2) or
``l1="subgradient"`` (``+ gamma sgn(alpha)`` on the gradient, what NetSlim and the
SiDT reference code do; never exactly zero).

Other orders (``order``), for the ablation of thesis Table 4.2 and the baselines:

* ``"darts1"``: DARTS first order on the same scores: one weight copy ``w`` trained on
  ``D_a``; ``alpha`` takes ``grad_alpha L_p(w, alpha)`` (DARTS Eq. 7 with ``xi = 0``)
  on ``D_p``, then the l1 step; the alpha step comes first, as in DARTS' code.
* ``"darts2"``: DARTS second order: the hypergradient of ``L_p(w'(alpha), alpha)``
  through one virtual weight step (DARTS Eq. 6-7, exact, forward over reverse:
  :func:`jaxnas.bilevel.hypergrad.hypergradient` ``mode="exact"``); a model with a
  hand-written VJP inside (MobileNetV2's default depthwise conv) needs a forward-mode
  twin, ``hvp_model`` (``cfg=OpsConfig(depthwise="shifted")``).
* ``"joint"``: no split: weights and (trainable) scores take a step on the same batch.
  With ``target="bn"`` the scores stay at 1 and the l1 subgradient goes on the BN
  scales of the groups instead (Network Slimming: Liu et al. 2017, their ``updateBN``);
  with ``target="none"`` it is plain training (the random-pruning baseline's network).

Everything is a pure function of the state pytree (:class:`WidthState`); the step is
one jitted function; the same seed gives the same state on CPU.  The loop is written
against :class:`~jaxnas.models.prunable.Prunable` and ``model.apply(variables, x,
train=...)`` only, so CNNs and the transformer models (``jaxnas.width.swin``,
``jaxnas.width.vit``) share it; collections a model lacks (``"batch_stats"`` of a
LayerNorm transformer) are simply empty.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnas.bilevel.hypergrad import first_order, hypergradient
from jaxnas.bilevel.rarts_update import RARTSState, rarts_step
from jaxnas.common import classification_sums, cross_entropy, lr_schedule, momentum_buffer
from jaxnas.models.prunable import ChannelGroup, get_leaf, set_leaf
from jaxnas.optim.l1 import add_l1_subgradient, l1_penalty, l1_prox
from jaxnas.xla import jit_init

__all__ = [
    "L1_FORMS",
    "OPTIMIZERS",
    "ORDERS",
    "TARGETS",
    "WeightOptim",
    "WidthSearch",
    "WidthState",
    "bn_scale_mask",
    "decay_mask",
    "make_schedule",
    "score_tx",
    "weight_tx",
]

ORDERS = ("rarts", "darts1", "darts2", "joint")
L1_FORMS = ("prox", "subgradient")
TARGETS = ("scores", "bn", "none")
SCHEDULES = ("cosine", "step", "constant", "warmup_cosine")
OPTIMIZERS = ("sgd", "adamw")
#: parameters Swin's AdamW recipe exempts from weight decay besides every 1-d one (norm
#: scales, biases): ``no_weight_decay`` / ``no_weight_decay_keywords`` of the Swin and
#: timm ViT models
NO_DECAY_NAMES = ("relative_position_bias_table", "absolute_pos_embed", "pos_embed", "cls_token")


class WidthState(flax.struct.PyTreeNode):
    """What the width search carries (a pytree of arrays).

    ``params`` / ``stats`` / ``opt`` are the weights whose network is pruned: the
    primary copy ``u`` for RARTS (trained on ``D_p``), the only copy otherwise.
    ``aux`` holds RARTS' auxiliary copy ``{"params": w, "stats": ..., "opt": ...}``
    (trained on ``D_a``) and is ``{}`` for the other orders.
    """

    step: jax.Array  # int32 scalar: iterations done
    params: Any
    stats: Any  # "batch_stats" ({} for a model without BatchNorm)
    opt: optax.OptState
    arch: Any  # {group name: alpha (size,)}
    a_opt: optax.OptState
    aux: Any
    rng: jax.Array  # raw uint32 key


# ------------------------------------------------------------------------- optimisers


def make_schedule(
    kind: str,
    lr: float,
    lr_min: float,
    epochs: int,
    steps_per_epoch: int,
    *,
    warmup_epochs: float = 0.0,
    warmup_lr: float = 0.0,
) -> optax.Schedule:
    """Learning rate of step ``t`` (constant within an epoch ``e = t // steps_per_epoch``,
    except ``"warmup_cosine"``).

    ``"cosine"``: :func:`jaxnas.common.lr_schedule` (per-epoch cosine to ``lr_min``);
    ``"step"``: Network Slimming's ``lr / 10`` at 50 % and ``lr / 100`` at 75 % of the
    epochs (the settings thesis Sec. 4.2 says it copies); ``"constant"``: ``lr``;
    ``"warmup_cosine"``: Swin's per-step schedule (timm ``CosineLRScheduler`` with a
    warm-up prefix): linear from ``warmup_lr`` to ``lr`` over ``W = round(warmup_epochs
    * steps_per_epoch)`` steps, then ``lr_min + (lr - lr_min)(1 + cos(pi (t - W) / (T -
    W))) / 2`` to ``T = epochs * steps_per_epoch`` (``optax.warmup_cosine_decay_schedule``).
    """
    if kind not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {kind!r}")
    if epochs < 1 or steps_per_epoch < 1:
        raise ValueError(
            f"need epochs >= 1 and steps_per_epoch >= 1, got {epochs}, {steps_per_epoch}"
        )
    if kind == "cosine":
        return lr_schedule(
            {"lr": lr, "schedule": "cosine", "lr_min": lr_min}, epochs, steps_per_epoch
        )
    if kind == "constant":
        return lambda t: jnp.full((), lr, jnp.float32)
    if kind == "warmup_cosine":
        total = epochs * steps_per_epoch
        warm = int(round(warmup_epochs * steps_per_epoch))
        if not 0 <= warm < total:
            raise ValueError(
                f"warmup_epochs={warmup_epochs} must be >= 0 and shorter than the {epochs} epochs"
            )
        return optax.warmup_cosine_decay_schedule(
            init_value=warmup_lr,
            peak_value=lr,
            warmup_steps=warm,
            decay_steps=total,
            end_value=lr_min,
        )

    def schedule(t):
        e = jnp.asarray(t) // steps_per_epoch
        drops = (2 * e >= epochs).astype(jnp.float32) + (4 * e >= 3 * epochs).astype(jnp.float32)
        return lr * 0.1**drops

    return schedule


def decay_mask(params: Any) -> Any:
    """A boolean pytree like ``params``: True where Swin's AdamW recipe applies weight
    decay (kernels and embeddings of two or more dimensions), False on 1-d leaves (norm
    scales), on every ``bias`` (an attention's qkv bias may be 2-d) and on
    :data:`NO_DECAY_NAMES` (Swin's ``build_optimizer``: ``len(shape) == 1 or
    name.endswith(".bias")`` or a ``no_weight_decay`` keyword)."""

    def decays(path, leaf) -> bool:
        name = str(getattr(path[-1], "key", path[-1])) if path else ""
        return np.ndim(leaf) > 1 and name != "bias" and name not in NO_DECAY_NAMES

    return jax.tree_util.tree_map_with_path(decays, params)


def weight_tx(
    schedule: optax.Schedule,
    *,
    momentum: float,
    weight_decay: float,
    grad_clip: float = 0.0,
    bn_l1: tuple[float, Any] | None = None,
    optimizer: str = "sgd",
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
) -> optax.GradientTransformation:
    """The weight optimiser: optional global-norm clip, optionally NetSlim's ``gamma
    sgn(scale)`` on the BN scales ``bn_l1 = (gamma, mask)`` (added to the raw gradient
    before the decay and the step, as NetSlim's ``updateBN``), then

    * ``"sgd"``: momentum SGD with coupled weight decay on every weight (PyTorch's SGD,
      NetSlim's and DARTS' recipe; ``momentum`` is used);
    * ``"adamw"``: ``optax.adamw(schedule, b1, b2, eps, weight_decay,
      mask=decay_mask)``: Adam with decoupled decay ``lr * wd * w`` on the kernels only
      (Swin's recipe, Liu et al. 2021, ``build_optimizer``; ``momentum`` is not used).
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"weight optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    parts = [optax.clip_by_global_norm(grad_clip)] if grad_clip > 0 else []
    if bn_l1 is not None:
        parts.append(optax.masked(add_l1_subgradient(bn_l1[0]), bn_l1[1]))
    if optimizer == "adamw":
        parts.append(
            optax.adamw(schedule, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, mask=decay_mask)
        )
    else:
        parts += [
            optax.add_decayed_weights(weight_decay),
            optax.sgd(schedule, momentum=momentum or None),
        ]
    return optax.chain(*parts)


@dataclasses.dataclass(frozen=True)
class WeightOptim:
    """The weight optimiser's settings: the keywords of the same names of
    :class:`WidthSearch` and :class:`~jaxnas.width.finetune.FineTuner`.

    Attributes:
      lr, lr_min, schedule: the learning rate's start and end and :func:`make_schedule`'s
        ``kind`` (``"cosine"``, ``"step"``, ``"constant"`` or ``"warmup_cosine"``).
      momentum, weight_decay, grad_clip: as :func:`weight_tx`.
      optimizer, b1, b2, eps: ``"sgd"`` (momentum SGD) or ``"adamw"`` (Swin's recipe,
        :func:`weight_tx`).
      warmup_epochs, warmup_lr: the ``"warmup_cosine"`` schedule's warm-up.
    """

    lr: float = 0.1
    lr_min: float = 0.0
    schedule: str = "cosine"
    momentum: float = 0.9
    weight_decay: float = 1e-4
    grad_clip: float = 0.0
    optimizer: str = "sgd"
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    warmup_epochs: float = 0.0
    warmup_lr: float = 0.0

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"weight optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}"
            )

    def lr_schedule(self, epochs: int, steps_per_epoch: int) -> optax.Schedule:
        """:func:`make_schedule` of these settings over ``epochs`` epochs."""
        return make_schedule(
            self.schedule,
            self.lr,
            self.lr_min,
            epochs,
            steps_per_epoch,
            warmup_epochs=self.warmup_epochs,
            warmup_lr=self.warmup_lr,
        )

    def tx(
        self, schedule: optax.Schedule, bn_l1: tuple[float, Any] | None = None
    ) -> optax.GradientTransformation:
        """:func:`weight_tx` of these settings on the learning rates ``schedule``."""
        return weight_tx(
            schedule,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            grad_clip=self.grad_clip,
            bn_l1=bn_l1,
            optimizer=self.optimizer,
            b1=self.b1,
            b2=self.b2,
            eps=self.eps,
        )


def score_tx(
    schedule: optax.Schedule, *, momentum: float, gamma: float, form: str
) -> optax.GradientTransformation:
    """The score optimiser with the l1 term of thesis Eq. 2.11 (``P = ||alpha||_1``).

    ``"prox"``: ``chain(sgd(eta), l1_prox(eta, gamma))``, the soft threshold
    ``S_{eta gamma}`` after the smooth (momentum) step: exact zeros.  ``"subgradient"``:
    ``chain(add_l1_subgradient(gamma), sgd(eta))``.  No weight decay on the scores (an
    l2 term the thesis does not have).
    """
    if form not in L1_FORMS:
        raise ValueError(f"l1 form must be one of {L1_FORMS}, got {form!r}")
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    sgd = optax.sgd(schedule, momentum=momentum or None)
    if form == "prox":
        return optax.chain(sgd, l1_prox(schedule, gamma))
    return optax.chain(add_l1_subgradient(gamma), sgd)


def bn_scale_mask(params: Any, groups: Sequence[ChannelGroup]) -> Any:
    """A boolean pytree like ``params``: True on the scale of each group's last BN (the BN
    right before its scores, :func:`jaxnas.width.surgery.bn_scale_scores`), which NetSlim's
    l1 term acts on."""
    mask = jax.tree.map(lambda _: False, params)
    wrapped = {"params": mask}
    for g in groups:
        scales = [s for s in g.producers if s.collection == "params" and s.path[-1] == "scale"]
        if not scales:
            raise ValueError(f"group {g.name!r} has no BatchNorm scale (NetSlim needs one)")
        get_leaf({"params": params}, "params", scales[-1].path)
        wrapped = set_leaf(wrapped, "params", scales[-1].path, True)
    return wrapped["params"]


# ------------------------------------------------------------------------------ search


def _variables(params, arch, stats) -> dict[str, Any]:
    out = {"params": params}
    if arch:
        out["arch"] = arch
    if stats:
        out["batch_stats"] = stats
    return out


class WidthSearch:
    """Search channel scores of a :class:`~jaxnas.models.prunable.Prunable` model.

    Args:
      model: a scored width model (``model.scored``), called as ``model.apply(variables,
        x, train=...)``.
      order: ``"rarts"`` | ``"darts1"`` | ``"darts2"`` | ``"joint"`` (module doc).
      gamma: l1 strength (thesis: 1e-4).
      l1: ``"prox"`` | ``"subgradient"``.
      target: ``"scores"`` (search the scores), ``"bn"`` (NetSlim: scores fixed at 1, l1
        on BN scales) or ``"none"`` (scores fixed, no l1); the last two need ``"joint"``.
      a_lr, a_momentum: the score optimiser (:func:`score_tx`; ``a_lr=None``: ``lr``),
        on the same schedule shape as the weights.
      lam, beta: RARTS' Lagrangian weights (Eq. 2.8).
      w_init: RARTS' ``w^0``: ``"copy"`` of ``u^0`` or ``"independent"``.
      epochs, steps_per_epoch: for the schedules.
      hvp_model: forward-mode twin of ``model`` for ``"darts2"`` (default ``model``).
      rng_names: rng streams the model's training pass draws from (dropout).
      optim: the weight optimiser(s), :class:`WeightOptim`'s fields as keywords (``lr``,
        ``lr_min``, ``schedule``, ``momentum``, ``weight_decay``, ``grad_clip``,
        ``optimizer``, ``b1``, ``b2``, ``eps``, ``warmup_epochs``, ``warmup_lr``); both
        RARTS copies use it.  DARTS-2's virtual step (DARTS Eq. 6) is SGD's, so
        ``"darts2"`` needs ``optimizer="sgd"``.

    Entry points: ``init(seed, sample_images) -> WidthState``; ``train_step(state,
    batch, valid_batch=None) -> (state, metrics)`` (jitted; ``batch`` is the ``D_a`` /
    weight batch, ``valid_batch`` the ``D_p`` batch of the split orders);
    ``eval_step(state, (x, y, mask)) -> sums`` (jitted, inference mode);
    ``variables(state)``: the searched network's variables.
    """

    def __init__(
        self,
        model: Any,
        *,
        order: str = "rarts",
        gamma: float = 1e-4,
        l1: str = "prox",
        target: str = "scores",
        a_lr: float | None = None,
        a_momentum: float = 0.9,
        lam: float = 1.0,
        beta: float = 1.0,
        w_init: str = "copy",
        epochs: int = 1,
        steps_per_epoch: int = 1,
        hvp_model: Any = None,
        rng_names: Sequence[str] = ("dropout",),
        **optim: Any,
    ):
        if order not in ORDERS:
            raise ValueError(f"unknown width search order {order!r}; choose from {ORDERS}")
        if target not in TARGETS:
            raise ValueError(f"unknown l1 target {target!r}; choose from {TARGETS}")
        if target != "scores" and order != "joint":
            raise ValueError(f"target={target!r} trains without the split: use order='joint'")
        if not getattr(model, "scored", False):
            raise ValueError("WidthSearch needs a scored model (scored=True: the 'arch' scores)")
        o = WeightOptim(**optim)
        for name, v in (("gamma", gamma), ("lam", lam), ("beta", beta), ("lr", o.lr)):
            if v < 0:
                raise ValueError(f"{name} must be >= 0, got {v}")
        if w_init not in ("copy", "independent"):
            raise ValueError(f"w_init must be 'copy' or 'independent', got {w_init!r}")
        if order == "darts2" and o.optimizer != "sgd":
            raise ValueError(
                "order='darts2' differentiates through an SGD virtual step (DARTS Eq. 6): "
                f"use optimizer='sgd', not {o.optimizer!r}"
            )
        self.model = model
        self.hvp_model = hvp_model if hvp_model is not None else model
        self.groups = tuple(model.channel_groups())
        self.order, self.target, self.l1 = order, target, l1
        self.gamma, self.lam, self.beta = float(gamma), float(lam), float(beta)
        self.optim = o
        self.momentum, self.weight_decay = float(o.momentum), float(o.weight_decay)
        self.w_init = w_init
        self.rng_names = tuple(rng_names)
        self.lr = o.lr_schedule(epochs, steps_per_epoch)
        a_lr = o.lr if a_lr is None else a_lr
        # the scores follow the weights' schedule shape, scaled to start at a_lr
        a_scale = a_lr / o.lr if o.lr > 0 else 0.0
        scores = dataclasses.replace(
            o, lr=a_lr, lr_min=o.lr_min * a_scale, warmup_lr=o.warmup_lr * a_scale
        )
        self.a_lr = scores.lr_schedule(epochs, steps_per_epoch)
        self._bn = target == "bn"
        if target == "scores":
            self.a_tx = score_tx(self.a_lr, momentum=a_momentum, gamma=gamma, form=l1)
        else:  # the scores stay at 1
            self.a_tx = optax.set_to_zero()
        self.tx = None  # set by init (the NetSlim mask needs the params' structure)
        self.train_step = jax.jit(self._train_step)
        self.eval_step = jax.jit(self._eval_step)
        self._init = jit_init(self._init_vars)

    # ---- state ------------------------------------------------------------------------

    def _init_vars(self, key, x):
        keys = {"params": key, **{n: key for n in self.rng_names}}
        return self.model.init(keys, x, train=False)

    def _make_tx(self, params):
        bn = (self.gamma, bn_scale_mask(params, self.groups)) if self._bn else None
        return self.optim.tx(self.lr, bn_l1=bn)

    def init(self, seed: int | jax.Array, sample_images: np.ndarray) -> WidthState:
        """Initial state; ``sample_images`` gives the input shape only."""
        key = jax.random.key(seed) if isinstance(seed, int) else seed
        k_init, k_w, k_state = jax.random.split(key, 3)
        x = jnp.zeros((2, *np.shape(sample_images)[1:]), jnp.float32)
        v = self._init(k_init, x)
        params, arch, stats = v["params"], v.get("arch", {}), v.get("batch_stats", {})
        if not arch:
            raise ValueError("the model created no 'arch' scores")
        self.tx = self._make_tx(params)
        aux = {}
        if self.order == "rarts":
            w = jax.tree.map(jnp.array, params)
            if self.w_init == "independent":
                w = self._init(k_w, x)["params"]
            aux = {"params": w, "stats": jax.tree.map(jnp.array, stats), "opt": self.tx.init(w)}
        return WidthState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            stats=stats,
            opt=self.tx.init(params),
            arch=arch,
            a_opt=self.a_tx.init(arch),
            aux=aux,
            rng=jax.random.key_data(k_state),
        )

    def variables(self, state: WidthState) -> dict[str, Any]:
        """``{"params", "batch_stats", "arch"}`` of the searched network (RARTS: ``u``)."""
        return jax.device_get(_variables(state.params, state.arch, state.stats))

    # ---- losses -----------------------------------------------------------------------

    def loss(self, params, arch, stats, batch, rng, model=None):
        """Training-mode cross entropy of a batch: ``(loss, (new_stats, accuracy))``."""
        model = self.model if model is None else model
        x, y = batch
        rngs = {
            n: jax.random.fold_in(jax.random.wrap_key_data(rng), i)
            for i, n in enumerate(self.rng_names)
        }
        logits, upd = model.apply(
            _variables(params, arch, stats), x, train=True, mutable=["batch_stats"], rngs=rngs
        )
        loss, acc = cross_entropy(logits.astype(jnp.float32), y)
        return loss, (upd.get("batch_stats", stats), acc)

    # ---- steps ------------------------------------------------------------------------

    def _train_step(self, state: WidthState, batch, valid_batch=None):
        if self.tx is None:
            raise ValueError("call WidthSearch.init (or restore a state) before train_step")
        if self.order != "joint" and valid_batch is None:
            raise ValueError(f"order {self.order!r} needs a valid_batch (the D_p half)")
        rng_next, rng_a, rng_p = jax.random.split(jax.random.wrap_key_data(state.rng), 3)
        rng_a, rng_p = jax.random.key_data(rng_a), jax.random.key_data(rng_p)
        step_fn = {
            "rarts": self._rarts,
            "darts1": self._darts,
            "darts2": self._darts,
            "joint": self._joint,
        }[self.order]
        new, metrics = step_fn(state, batch, valid_batch, rng_a, rng_p)
        f32 = lambda v: jnp.asarray(v, jnp.float32)
        # the l1 term and sparsity of the scores the step started from
        alphas = jnp.concatenate([jnp.ravel(a) for a in jax.tree.leaves(state.arch)])
        metrics = {k: f32(v) for k, v in metrics.items()}
        metrics.update(
            l1=f32(l1_penalty(state.arch)),
            zero_fraction=f32(jnp.mean(alphas == 0)),
            lr=f32(self.lr(state.step)),
        )
        new = new.replace(step=state.step + 1, rng=jax.random.key_data(rng_next))
        return new, metrics

    def _rarts(self, state, batch_a, batch_p, rng_a, rng_p):
        """Thesis Algorithm 3, search stage: Eq. 2.12a-c through ``rarts_step``, the l1
        term in ``a_tx`` (the prox or subgradient form of the gamma ||alpha||_1 block)."""

        def loss_fn(rng):
            def f(params, arch, batch, aux):
                loss, (stats, acc) = self.loss(params, arch, aux["stats"], batch, rng)
                return loss, {"stats": stats, "acc": jnp.asarray(acc, jnp.float32)}

            return f

        zero = jnp.zeros((), jnp.float32)
        rs = RARTSState(
            u=state.params,
            w=state.aux["params"],
            alpha=state.arch,
            u_opt=state.opt,
            w_opt=state.aux["opt"],
            alpha_opt=state.a_opt,
            u_aux={"stats": state.stats, "acc": zero},
            w_aux={"stats": state.aux["stats"], "acc": zero},
        )
        new, info = rarts_step(
            rs,
            batch_p,  # D_p: L_p
            batch_a,  # D_a: L_a
            loss_p=loss_fn(rng_p),
            loss_a=loss_fn(rng_a),
            tx_u=self.tx,
            tx_w=self.tx,
            tx_alpha=self.a_tx,
            lam=self.lam,
            beta=self.beta,
            has_aux=True,
        )
        state = state.replace(
            params=new.u,
            stats=new.u_aux["stats"],
            opt=new.u_opt,
            arch=new.alpha,
            a_opt=new.alpha_opt,
            aux={"params": new.w, "stats": new.w_aux["stats"], "opt": new.w_opt},
        )
        metrics = dict(
            loss=info.loss_a,
            accuracy=new.w_aux["acc"],
            valid_loss=info.loss_p,
            valid_accuracy=new.u_aux["acc"],
            # Eq. 2.11 with P = ||alpha||_1, at the iterate before the step
            lagrangian=info.lagrangian + self.gamma * l1_penalty(state.arch),
            uw_distance=jnp.sqrt(info.sq_distance),
        )
        return state, metrics

    def _darts(self, state, batch_a, batch_p, rng_a, rng_p):
        """The Table 4.2 ablation: DARTS' alternating steps on the same scores.

        alpha first (DARTS' ``architect.step``): ``grad_alpha L_p(w, alpha)`` (first
        order) or DARTS Eq. 7 through the virtual step ``w' = w - xi (mu m + grad_w L_a
        + lambda w)`` (Eq. 6, ``xi`` = the current weight lr), then the l1 step of
        ``a_tx``; then the weights on ``D_a`` with the new alpha.
        """

        def val_loss(model, rng):
            return lambda w, a, batch: self.loss(w, a, state.stats, batch, rng, model)[0]

        if self.order == "darts1":
            g_alpha, vloss = first_order(
                val_loss(self.model, rng_p), state.params, state.arch, batch_p
            )
        else:
            g_alpha, vloss = hypergradient(
                val_loss(self.model, rng_p),
                state.params,
                state.arch,
                # SGD without momentum keeps no buffer: m = 0 in Eq. 6
                momentum_buffer(state.opt)
                if self.momentum
                else jax.tree.map(jnp.zeros_like, state.params),
                batch_a,
                batch_p,
                xi=self.lr(state.step),
                momentum=self.momentum,
                weight_decay=self.weight_decay,
                mode="exact",
                hvp_loss_fn=val_loss(self.hvp_model, rng_p),
            )
        upd, a_opt = self.a_tx.update(g_alpha, state.a_opt, state.arch)
        arch = optax.apply_updates(state.arch, upd)
        (loss, (stats, acc)), g = jax.value_and_grad(self.loss, has_aux=True)(
            state.params, arch, state.stats, batch_a, rng_a
        )
        upd, opt = self.tx.update(g, state.opt, state.params)
        params = optax.apply_updates(state.params, upd)
        state = state.replace(params=params, stats=stats, opt=opt, arch=arch, a_opt=a_opt)
        return state, dict(loss=loss, accuracy=acc, valid_loss=vloss)

    def _joint(self, state, batch, _valid, rng_a, rng_p):
        """One step on one batch for weights and scores together (no split)."""
        del rng_p
        (loss, (stats, acc)), (g, g_a) = jax.value_and_grad(
            self.loss, argnums=(0, 1), has_aux=True
        )(state.params, state.arch, state.stats, batch, rng_a)
        upd, opt = self.tx.update(g, state.opt, state.params)
        upd_a, a_opt = self.a_tx.update(g_a, state.a_opt, state.arch)
        state = state.replace(
            params=optax.apply_updates(state.params, upd),
            stats=stats,
            opt=opt,
            arch=optax.apply_updates(state.arch, upd_a),
            a_opt=a_opt,
        )
        return state, dict(loss=loss, accuracy=acc)

    def _eval_step(self, state: WidthState, batch):
        x, y, mask = batch
        logits = self.model.apply(_variables(state.params, state.arch, state.stats), x, train=False)
        return classification_sums(logits, y, mask)


def score_vector(arch: Mapping[str, Any]) -> np.ndarray:
    """All scores in one flat host array (group order of the mapping)."""
    return np.concatenate([np.ravel(np.asarray(v)) for v in arch.values()])
