"""DARTS' (AWD-LSTM's) SGD of a recurrent language model's weights, per BPTT window.

DARTS ``rnn/train_search.py`` and ``rnn/train.py`` step the weights by

    w <- w - lr_t (clip_c(g) + wd w),        lr_t = lr * seq_len_t / bptt

the gradient ``g`` clipped to global norm ``c`` first, PyTorch's SGD adding the weight
decay, and the learning rate scaled by the window's length ``seq_len_t`` (windows of
variable length carry gradients of as many time steps).  The search (SparseNAS'
weight step, :mod:`jaxnas.search.sparsenas_rnn`) and the retraining
(:mod:`jaxnas.train_rnn`) take this one step.
"""

from __future__ import annotations

from typing import Any

import jax
import optax

__all__ = ["darts_sgd", "sgd_apply", "window_lr"]


def darts_sgd(grad_clip: float, weight_decay: float) -> optax.GradientTransformation:
    """``g -> -(clip_c(g) + wd w)``: the direction of DARTS' SGD step without its learning
    rate, which :func:`sgd_apply` applies per window (stateless)."""
    return optax.chain(
        optax.clip_by_global_norm(grad_clip),
        optax.add_decayed_weights(weight_decay),
        optax.scale(-1.0),
    )


def window_lr(lr: float, seq_len: jax.Array, bptt: int) -> jax.Array:
    """DARTS' learning rate of a window of ``seq_len`` steps: ``lr * seq_len / bptt``."""
    return lr * seq_len / bptt


def sgd_apply(
    tx: optax.GradientTransformation, grads: Any, opt_state: Any, params: Any, lr: jax.Array
) -> tuple[Any, Any]:
    """``(params + lr * u, opt_state')`` with ``u`` the update of ``tx``
    (:func:`darts_sgd`) for ``grads``."""
    upd, opt_state = tx.update(grads, opt_state, params)
    return jax.tree.map(lambda p, u: p + lr * u, params, upd), opt_state
