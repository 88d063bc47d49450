"""Hypergradients of the bi-level problem through one unrolled weight step.

DARTS (Liu et al., 2019, Eqs. 3-8) approximates ``w*(alpha)`` by one step of
the weight optimiser,

    w'(alpha) = w - xi * (mu * m + grad_w L_train(w, alpha) + lambda * w)     (DARTS Eq. 6)

(SGD with momentum buffer ``m``, momentum ``mu`` and weight decay ``lambda``,
exactly as ``architect._compute_unrolled_model``; no gradient clipping), and
differentiates the validation loss through it:

    d/dalpha L_val(w'(alpha), alpha)
      = grad_alpha L_val(w', alpha)
        - xi * grad^2_{alpha, w} L_train(w, alpha) . grad_w' L_val(w', alpha)  (DARTS Eq. 7)

Three ways to compute it, all for a generic ``loss_fn(w, alpha, batch) ->
scalar`` (pytrees ``w`` and ``alpha``):

* ``"exact"``: the mixed second-derivative term as a forward-over-reverse
  Hessian-vector product, ``jax.jvp`` of ``w -> grad_alpha L_train(w, alpha)``
  along ``v = grad_w' L_val``.  Exact; needs ``loss_fn`` to support forward
  mode (no ``custom_vjp`` inside).
* ``"unrolled"``: ``jax.grad`` of ``alpha -> L_val(w'(alpha), alpha)``
  straight through the unrolled step (reverse over reverse).  Exact.
* ``"finite_difference"``: DARTS' central difference (Eq. 8),
  ``(grad_alpha L_train(w + eps v) - grad_alpha L_train(w - eps v)) / (2 eps)``
  with ``eps = 0.01 / ||v||``, as ``architect._hessian_vector_product``.

With ``xi = 0`` all three reduce to the first-order gradient
``grad_alpha L_val(w, alpha)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import optax

LossFn = Callable[[Any, Any, Any], jax.Array]

MODES = ("exact", "unrolled", "finite_difference")


def virtual_sgd_step(
    w: Any,
    grad: Any,
    momentum_buf: Any,
    *,
    xi: float | jax.Array,
    momentum: float,
    weight_decay: float,
) -> Any:
    """``w' = w - xi (mu m + g + lambda w)`` for a given gradient ``g`` (DARTS Eq. 6)."""
    return jax.tree.map(
        lambda p, gi, m: p - xi * (momentum * m + gi + weight_decay * p), w, grad, momentum_buf
    )


def mixed_hvp(loss_fn: LossFn, w: Any, alpha: Any, batch: Any, v: Any) -> Any:
    """``grad^2_{alpha, w} L(w, alpha) . v`` exactly, forward over reverse: the
    directional derivative of ``w -> grad_alpha L(w, alpha)`` along ``v``."""
    return jax.jvp(lambda w_: jax.grad(loss_fn, argnums=1)(w_, alpha, batch), (w,), (v,))[1]


def unrolled_weights(
    loss_fn: LossFn,
    w: Any,
    alpha: Any,
    momentum_buf: Any,
    batch: Any,
    *,
    xi: float | jax.Array,
    momentum: float,
    weight_decay: float,
) -> Any:
    """One virtual SGD step ``w' = w - xi (mu m + grad_w L_train + lambda w)`` (DARTS Eq. 6)."""
    g = jax.grad(loss_fn)(w, alpha, batch)
    return virtual_sgd_step(w, g, momentum_buf, xi=xi, momentum=momentum, weight_decay=weight_decay)


def hypergradient(
    loss_fn: LossFn,
    w: Any,
    alpha: Any,
    momentum_buf: Any,
    train_batch: Any,
    valid_batch: Any,
    *,
    xi: float | jax.Array,
    momentum: float,
    weight_decay: float,
    mode: str = "exact",
    fd_epsilon: float = 0.01,
    hvp_loss_fn: LossFn | None = None,
) -> tuple[Any, jax.Array]:
    """``d/dalpha L_val(w'(alpha), alpha)`` (DARTS Eq. 7) and ``L_val(w', alpha)``.

    Args:
      loss_fn: ``(w, alpha, batch) -> scalar`` used for everything reverse-mode.
      w, alpha: weight and architecture pytrees.
      momentum_buf: the weight optimiser's momentum buffer (same tree as ``w``).
      train_batch, valid_batch: the two halves' batches.
      xi: virtual learning rate (DARTS: the current weight learning rate).
      momentum, weight_decay: of the weight optimiser.
      mode: ``"exact"``, ``"unrolled"`` or ``"finite_difference"``.
      fd_epsilon: the ``0.01`` of DARTS' finite difference step ``eps / ||v||``.
      hvp_loss_fn: the same function as ``loss_fn`` written so that it supports
        forward mode; used for the ``"exact"`` Hessian-vector product.

    Returns:
      ``(grad_alpha, valid_loss)``; ``grad_alpha`` has the structure of ``alpha``.
    """
    if mode not in MODES:
        raise ValueError(f"unknown hypergradient mode {mode!r}; choose from {MODES}")
    kw = dict(xi=xi, momentum=momentum, weight_decay=weight_decay)

    if mode == "unrolled":

        def unrolled_val(a):
            w1 = unrolled_weights(loss_fn, w, a, momentum_buf, train_batch, **kw)
            return loss_fn(w1, a, valid_batch)

        loss, g_alpha = jax.value_and_grad(unrolled_val)(alpha)
        return g_alpha, loss

    w1 = unrolled_weights(loss_fn, w, alpha, momentum_buf, train_batch, **kw)
    loss, (v, g_alpha) = jax.value_and_grad(loss_fn, argnums=(0, 1))(w1, alpha, valid_batch)

    if mode == "exact":
        hvp = mixed_hvp(hvp_loss_fn or loss_fn, w, alpha, train_batch, v)
    else:  # DARTS Eq. 8: central difference along v
        r = fd_epsilon / optax.tree.norm(v)

        def grad_alpha_at(sign):
            w_ = jax.tree.map(lambda p, vi: p + sign * r * vi, w, v)
            return jax.grad(loss_fn, argnums=1)(w_, alpha, train_batch)

        hvp = jax.tree.map(lambda a, b: (a - b) / (2 * r), grad_alpha_at(1.0), grad_alpha_at(-1.0))
    g = jax.tree.map(lambda ga, h: ga - xi * h, g_alpha, hvp)
    return g, loss


def first_order(loss_fn: LossFn, w: Any, alpha: Any, valid_batch: Any) -> tuple[Any, jax.Array]:
    """First-order DARTS: ``grad_alpha L_val(w, alpha)`` (xi = 0) and the loss."""
    loss, g = jax.value_and_grad(loss_fn, argnums=1)(w, alpha, valid_batch)
    return g, loss
