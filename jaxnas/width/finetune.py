"""Fine-tuning a pruned network from its warm start, with knowledge distillation.

Thesis Algorithm 3, fine-tuning stage (F. Xue, PhD thesis, UC Irvine 2022, Sec. 4.2):
ordinary SGD on the weights of the pruned (sliced) network, warm-started from the
searched weights, optionally distilling from the unpruned network.  The loss is

    L = CE(U, y) + kd_weight * T^2 * (1/N) sum_n KL( s(U^_n / T) || s(U_n / T) )   (L1198)

with ``U`` the student's (pruned network's) logits, ``U^`` the teacher's (unpruned
network's, inference mode) logits, ``s`` the softmax and ``T = 4``.  The thesis gives
the KL term (following TAS) but neither its weight nor a ``T^2`` factor: we add it to
the cross entropy with a configurable weight (``kd_weight = 0``: plain CE) and scale it
by ``T^2`` (Hinton et al. 2015), which keeps its gradient on the scale of the CE's as
``T`` changes.

:class:`FineTuner` is generic over any Flax module called as ``apply(variables, x,
train=...)``: ``"params"`` are trained, ``"batch_stats"`` (if any) are updated in
training mode, any other collection (e.g. the ``"arch"`` scores of a scored network)
is held fixed.  Learning rates come from :func:`jaxnas.width.search.make_schedule`
(:func:`jaxnas.common.lr_schedule` for the cosine), evaluation sums from
:func:`jaxnas.common.classification_sums`, test batches from
:func:`jaxnas.data.eval_batches`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from jaxnas.common import classification_sums
from jaxnas.width.search import WeightOptim

__all__ = ["FineTuneState", "FineTuner", "kd_loss"]


def kd_loss(student_logits: jax.Array, teacher_logits: jax.Array, temperature: float) -> jax.Array:
    """``T^2 (1/N) sum_n KL(softmax(t_n / T) || softmax(s_n / T))`` (thesis L1198, times T^2).

    Args:
      student_logits, teacher_logits: ``(N, K)``.
      temperature: ``T > 0``.

    Returns:
      A scalar; 0 exactly when the two softmaxes agree (e.g. equal logits).
    """
    if temperature <= 0:
        raise ValueError(f"KD temperature must be > 0, got {temperature}")
    t = jnp.asarray(temperature, jnp.float32)
    log_p = jax.nn.log_softmax(teacher_logits.astype(jnp.float32) / t, axis=-1)
    log_q = jax.nn.log_softmax(student_logits.astype(jnp.float32) / t, axis=-1)
    kl = jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=-1)
    return t**2 * jnp.mean(kl)


class FineTuneState(flax.struct.PyTreeNode):
    """The fine-tuning state (a pytree of arrays)."""

    step: jax.Array  # int32 scalar
    params: Any
    stats: Any  # "batch_stats" ({} without BatchNorm)
    fixed: Any  # every other collection (e.g. "arch"), held fixed
    opt: optax.OptState
    rng: jax.Array  # raw uint32 key


def _split(variables: Mapping[str, Any]) -> tuple[Any, Any, dict[str, Any]]:
    fixed = {k: v for k, v in variables.items() if k not in ("params", "batch_stats")}
    return variables["params"], variables.get("batch_stats", {}), fixed


def _join(params, stats, fixed) -> dict[str, Any]:
    out = {"params": params, **fixed}
    if stats:
        out["batch_stats"] = stats
    return out


class FineTuner:
    """Warm-start training (SGD or AdamW) of a (pruned) network, optionally distilling.

    Args:
      model: the student (any Flax module with ``apply(variables, x, train=...)``).
      teacher: ``(module, variables)`` of the unpruned network, or None (no KD).
      kd_weight: weight of the KD term (0: plain cross entropy; then no teacher is run).
      temperature: ``T`` of the KD term.
      label_smoothing: of the cross entropy.
      epochs, steps_per_epoch: for the schedule.
      rng_names: rng streams the student's training pass draws from (dropout).
      optim: the optimiser, :class:`~jaxnas.width.search.WeightOptim`'s fields as
        keywords (``lr``, ``lr_min``, ``schedule``, ``momentum``, ``weight_decay``,
        ``grad_clip``, ``optimizer``, ``b1``, ``b2``, ``eps``, ``warmup_epochs``,
        ``warmup_lr``).

    ``train_step(state, (x, y))`` -> ``(state, metrics)`` (jitted; metrics ``loss``
    (total), ``ce``, ``kd``, ``accuracy``, ``lr``); ``eval_step(state, (x, y, mask))``
    -> sums (jitted); ``variables(state)``.
    """

    def __init__(
        self,
        model: Any,
        *,
        teacher: tuple[Any, Mapping[str, Any]] | None = None,
        kd_weight: float = 0.0,
        temperature: float = 4.0,
        label_smoothing: float = 0.0,
        epochs: int = 1,
        steps_per_epoch: int = 1,
        rng_names: Sequence[str] = ("dropout",),
        **optim: Any,
    ):
        if kd_weight < 0:
            raise ValueError(f"kd_weight must be >= 0, got {kd_weight}")
        if kd_weight > 0 and teacher is None:
            raise ValueError("kd_weight > 0 needs a teacher (the unpruned network)")
        if temperature <= 0:
            raise ValueError(f"KD temperature must be > 0, got {temperature}")
        self.model = model
        self.kd_weight, self.temperature = float(kd_weight), float(temperature)
        self.label_smoothing = float(label_smoothing)
        self.rng_names = tuple(rng_names)
        self.teacher_model = teacher[0] if teacher is not None and kd_weight > 0 else None
        self.teacher_vars = teacher[1] if self.teacher_model is not None else {}
        self.optim = WeightOptim(**optim)
        self.lr = self.optim.lr_schedule(epochs, steps_per_epoch)
        self.tx = self.optim.tx(self.lr)
        self._step = jax.jit(self._train_step)
        self.eval_step = jax.jit(self._eval_step)

    def init(self, variables: Mapping[str, Any], seed: int = 0) -> FineTuneState:
        """The state warm-started from ``variables`` (the pruned network's)."""
        params, stats, fixed = _split(variables)
        params = jax.tree.map(jnp.asarray, params)
        return FineTuneState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            stats=jax.tree.map(jnp.asarray, stats),
            fixed=jax.tree.map(jnp.asarray, fixed),
            opt=self.tx.init(params),
            rng=jax.random.key_data(jax.random.key(seed)),
        )

    def variables(self, state: FineTuneState) -> dict[str, Any]:
        return jax.device_get(_join(state.params, state.stats, state.fixed))

    def train_step(self, state: FineTuneState, batch) -> tuple[FineTuneState, dict[str, Any]]:
        """One SGD step on ``batch = (x, y)`` (the teacher's variables are an argument of
        the compiled step, not constants baked into it)."""
        return self._step(state, batch, self.teacher_vars)

    def loss(self, params, state: FineTuneState, x, y, teacher_logits, rng):
        """``CE + kd_weight * kd_loss``; returns ``(total, (stats, ce, kd, accuracy))``."""
        keys = jax.random.wrap_key_data(rng)
        rngs = {n: jax.random.fold_in(keys, i) for i, n in enumerate(self.rng_names)}
        logits, upd = self.model.apply(
            _join(params, state.stats, state.fixed),
            x,
            train=True,
            mutable=["batch_stats"],
            rngs=rngs,
        )
        logits = logits.astype(jnp.float32)
        if self.label_smoothing:
            target = optax.smooth_labels(jax.nn.one_hot(y, logits.shape[-1]), self.label_smoothing)
            ce = optax.softmax_cross_entropy(logits, target).mean()
        else:
            ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        kd = jnp.zeros((), jnp.float32)
        if teacher_logits is not None:
            kd = kd_loss(logits, teacher_logits, self.temperature)
        acc = jnp.mean(jnp.argmax(logits, -1) == y)
        return ce + self.kd_weight * kd, (upd.get("batch_stats", state.stats), ce, kd, acc)

    def _train_step(self, state: FineTuneState, batch, teacher_vars):
        x, y = batch
        rng = jax.random.key_data(
            jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
        )
        teacher_logits = None
        if self.teacher_model is not None:
            # the teacher is the fixed unpruned network: inference mode, no gradient
            teacher_logits = jax.lax.stop_gradient(
                self.teacher_model.apply(teacher_vars, x, train=False)
            )
        (total, (stats, ce, kd, acc)), g = jax.value_and_grad(self.loss, has_aux=True)(
            state.params, state, x, y, teacher_logits, rng
        )
        upd, opt = self.tx.update(g, state.opt, state.params)
        new = state.replace(
            step=state.step + 1,
            params=optax.apply_updates(state.params, upd),
            stats=stats,
            opt=opt,
        )
        return new, dict(loss=total, ce=ce, kd=kd, accuracy=acc, lr=self.lr(state.step))

    def _eval_step(self, state: FineTuneState, batch):
        x, y, mask = batch
        logits = self.model.apply(_join(state.params, state.stats, state.fixed), x, train=False)
        return classification_sums(logits, y, mask)
