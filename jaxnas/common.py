"""What the step functions of every method and trainer share: losses, per-epoch
learning-rate schedules, the SGD momentum buffer and evaluation sums.

Shapes: ``logits`` ``(B, K)`` (any float dtype; losses are computed in float32),
``labels`` int ``(B,)``, ``mask`` ``(B,)`` with 1 for real rows and 0 for padding.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

__all__ = [
    "classification_means",
    "classification_sums",
    "cross_entropy",
    "epoch_cosine_schedule",
    "epoch_exponential_schedule",
    "lr_schedule",
    "momentum_buffer",
    "smoothed_cross_entropy",
    "tau_schedule",
    "torch_sgd",
]


def cross_entropy(logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean softmax cross entropy and top-1 accuracy:
    ``(mean_b -log softmax(z_b)[y_b], mean_b [argmax z_b == y_b])``."""
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    acc = jnp.mean(jnp.argmax(logits, -1) == labels)
    return loss, acc


def smoothed_cross_entropy(logits: jax.Array, labels: jax.Array, smoothing: float) -> jax.Array:
    """Mean cross entropy against ``(1 - s) onehot(y) + s / K`` (DARTS'
    ``CrossEntropyLabelSmooth``); ``s = 0`` is the plain cross entropy."""
    logits = logits.astype(jnp.float32)
    if smoothing == 0:
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    target = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), smoothing)
    return optax.softmax_cross_entropy(logits, target).mean()


def epoch_cosine_schedule(
    lr: float, lr_min: float, epochs: int, steps_per_epoch: int
) -> optax.Schedule:
    """``CosineAnnealingLR(T_max=epochs, eta_min=lr_min)`` stepped once per epoch:
    ``lr_e = lr_min + (lr - lr_min) (1 + cos(pi e / epochs)) / 2``, ``e = step //
    steps_per_epoch`` (held at ``epochs`` after the last epoch)."""

    def schedule(step):
        e = jnp.minimum(step // steps_per_epoch, epochs)
        return lr_min + 0.5 * (lr - lr_min) * (1 + jnp.cos(jnp.pi * e / epochs))

    return schedule


def epoch_exponential_schedule(lr: float, rate: float, steps_per_epoch: int) -> optax.Schedule:
    """``StepLR(step_size=1, gamma=rate)`` stepped once per epoch: ``lr * rate^e``,
    ``e = step // steps_per_epoch``."""

    def schedule(step):
        return lr * rate ** (step // steps_per_epoch).astype(jnp.float32)

    return schedule


def lr_schedule(optim: Mapping[str, Any], epochs: int, steps_per_epoch: int) -> optax.Schedule:
    """The learning rate of step ``t`` (constant within an epoch ``e = t // steps_per_epoch``).

    ``"cosine"``: ``lr_min + (lr - lr_min)(1 + cos(pi e / epochs)) / 2`` (DARTS ``train.py``,
    ``CosineAnnealingLR(epochs)`` stepped per epoch); ``"exponential"``: ``lr * decay_rate^e``
    (``train_imagenet.py``, ``StepLR(1, gamma=0.97)``).
    """
    lr, kind = float(optim["lr"]), optim["schedule"]
    if kind == "cosine":
        return epoch_cosine_schedule(lr, float(optim["lr_min"]), epochs, steps_per_epoch)
    if kind == "exponential":
        return epoch_exponential_schedule(lr, float(optim["decay_rate"]), steps_per_epoch)
    raise ValueError(f"optim.schedule must be 'cosine' or 'exponential', got {kind!r}")


def tau_schedule(
    epoch: int | jax.Array, n_epochs: int, tau_max: float = 10.0, tau_min: float = 0.1
) -> jax.Array | float:
    """Linear per-epoch temperature: ``tau_max - (tau_max - tau_min) * epoch / (n_epochs - 1)``.

    The annealing of the sampled methods: PR-DARTS (paper L188: 10 -> 0.1; its authors'
    code per epoch) and GDAS (10 -> 0.1, per epoch in its authors' code).  Epoch 0 gives
    ``tau_max`` and epoch ``n_epochs - 1`` gives ``tau_min``; with a single epoch the
    temperature stays ``tau_max``.  ``epoch`` may be traced.
    """
    if n_epochs < 1:
        raise ValueError(f"n_epochs must be >= 1, got {n_epochs}")
    frac = epoch / (n_epochs - 1) if n_epochs > 1 else 0 * epoch
    return tau_max - (tau_max - tau_min) * frac


def torch_sgd(
    lr: float | optax.Schedule,
    *,
    momentum: float,
    weight_decay: float,
    grad_clip: float = 0.0,
    nesterov: bool = False,
) -> optax.GradientTransformation:
    """PyTorch's ``SGD(lr, momentum, weight_decay)`` after ``clip_grad_norm_(grad_clip)``
    (the DARTS reference's weight step): ``g <- g min(1, c / ||g||)`` (only for ``c =
    grad_clip > 0``), ``g <- g + wd w`` (coupled L2; only for ``wd != 0``),
    ``m <- mu m + g``, ``w <- w - lr m`` (Nesterov: ``w <- w - lr (g + mu m)``).  The
    momentum buffer is :func:`momentum_buffer` of its state."""
    parts = [optax.clip_by_global_norm(grad_clip)] if grad_clip > 0 else []
    if weight_decay:
        parts.append(optax.add_decayed_weights(weight_decay))
    return optax.chain(*parts, optax.sgd(lr, momentum=momentum, nesterov=nesterov))


def momentum_buffer(opt_state: optax.OptState) -> Any:
    """The SGD momentum buffer ``m`` (the ``trace`` of ``optax.sgd``) inside an optimiser
    state; DARTS' second order needs it for the virtual step (Eq. 6)."""
    return optax.tree_utils.tree_get(opt_state, "trace")


def classification_sums(
    logits: jax.Array, labels: jax.Array, mask: jax.Array
) -> dict[str, jax.Array]:
    """Sums over the ``mask``-ed rows: cross entropy ``loss``, ``top1`` and ``top5``
    hits and the row ``count`` (divide by ``count`` after summing over batches, so that
    padded last batches weigh right)."""
    logits = logits.astype(jnp.float32)
    mask = mask.astype(jnp.float32)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    top5 = jax.lax.top_k(logits, min(5, logits.shape[-1]))[1]
    hit5 = jnp.any(top5 == labels[:, None], axis=-1)
    hit1 = jnp.argmax(logits, -1) == labels
    return dict(
        loss=jnp.sum(ce * mask),
        top1=jnp.sum(hit1 * mask),
        top5=jnp.sum(hit5 * mask),
        count=jnp.sum(mask),
    )


def classification_means(batch_sums: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """The per-batch :func:`classification_sums` (host values, e.g. after
    ``jax.device_get``) added up in order and divided by the row count: ``loss``,
    ``accuracy`` (top-1), ``top5`` and ``examples`` (the count)."""
    sums: dict[str, float] = {}
    for s in batch_sums:
        for key, v in s.items():
            sums[key] = sums.get(key, 0.0) + float(v)
    n = max(sums.get("count", 0.0), 1.0)
    return {
        "loss": sums.get("loss", 0.0) / n,
        "accuracy": sums.get("top1", 0.0) / n,
        "top5": sums.get("top5", 0.0) / n,
        "examples": sums.get("count", 0.0),
    }
