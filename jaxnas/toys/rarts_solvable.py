"""The solvable model of the RARTS thesis (Xue 2022, Example 2.4 / 2.7, Fig. 2.1).

Scalar weight ``w`` and architecture ``alpha``:

    L_p(w, alpha) = alpha w - 2 alpha + 1        (primary / DARTS "validation" loss L_2)
    L_a(w, alpha) = w^2 - 2 alpha w + alpha^2    (auxiliary / DARTS "training" loss L_1)

The bilevel problem ``min_alpha L_p(w*(alpha), alpha)``, ``w*(alpha) = argmin_w L_a = alpha``
reduces to ``min (alpha - 1)^2``: the true optimum is ``(w, alpha) = (1, 1)``.

Limits of the first-order methods (all four run here, each as an iteration over
``lax.scan``):

* DARTS-1 (Eq. 2.21, equilibrium 2.22) and MiLeNAS-1 (Eq. 2.23, equilibrium 2.24): (2, 2).
* DARTS-2, exact: the alpha-gradient through one unrolled step
  ``w' = w - xi grad_w L_a`` is ``(1 - 2 xi) w + 4 xi alpha - 2`` (derived, not in the
  thesis), so ``w = alpha = 2 / (1 + 2 xi)``; ``xi = 1/2`` solves the inner problem in
  one step and gives (1, 1).
* RARTS (Eq. 2.12 on the Lagrangian 2.8, equilibrium 2.19), with
  ``D = 4 beta lam - beta - 2 lam != 0`` (thesis, end of Example 2.4):

      w = (4 beta lam - 2 beta) / D,
      u = (4 beta lam - 2 beta - 4 lam) / D,
      alpha = 4 beta lam / D.

All methods update the weights first and then alpha at the new weights, the order of
Eq. 2.21 / 2.23 / 2.12 (DARTS' own code steps alpha first; the limits do not depend on it).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxnas.bilevel import hypergrad
from jaxnas.bilevel.rarts_update import lagrangian as _rarts_lagrangian
from jaxnas.bilevel.rarts_update import make_rarts_step, rarts_init

__all__ = [
    "LIPSCHITZ",
    "bilevel_loss",
    "darts2_equilibrium",
    "lagrangian",
    "loss_a",
    "loss_p",
    "rarts_equilibrium",
    "rarts_min_value",
    "run_darts1",
    "run_darts2",
    "run_milenas1",
    "run_rarts",
    "step_size_bounds",
]

# Common Lipschitz constant of grad L_p (Hessian [[0, 1], [1, 0]]: 1) and grad L_a
# (Hessian [[2, -2], [-2, 2]]: eigenvalues 0 and 4), as Theorem 2.2 assumes one L.
LIPSCHITZ = 4.0

Array = jax.Array


def loss_p(w: Array, alpha: Array, batch: Any = None) -> Array:
    """``L_p(w, alpha) = alpha w - 2 alpha + 1`` (Example 2.4); ``batch`` is ignored."""
    del batch
    return alpha * w - 2 * alpha + 1


def loss_a(w: Array, alpha: Array, batch: Any = None) -> Array:
    """``L_a(w, alpha) = w^2 - 2 alpha w + alpha^2`` (Example 2.4); ``batch`` is ignored."""
    del batch
    return w**2 - 2 * alpha * w + alpha**2


def lagrangian(u: Array, w: Array, alpha: Array, lam: Any, beta: Any) -> Array:
    """``alpha u - 2 alpha + 1 + lam (w^2 - 2 alpha w + alpha^2) + beta/2 (u - w)^2`` (Eq. 2.8)."""
    return _rarts_lagrangian(
        u, w, alpha, None, None, loss_p=loss_p, loss_a=loss_a, lam=lam, beta=beta
    )


def rarts_equilibrium(lam: Any, beta: Any) -> tuple[Array, Array, Array]:
    """Closed-form limit ``(u, w, alpha)`` of RARTS (thesis, Example 2.4)."""
    d = 4 * beta * lam - beta - 2 * lam
    w = (4 * beta * lam - 2 * beta) / d
    u = (4 * beta * lam - 2 * beta - 4 * lam) / d
    alpha = 4 * beta * lam / d
    return u, w, alpha


def rarts_min_value(lam: Any, beta: Any) -> Array:
    """``L* = L(u, w, alpha)`` at the equilibrium, ``= 1 - alpha = -(beta + 2 lam) / D``."""
    return 1 - rarts_equilibrium(lam, beta)[2]


def darts2_equilibrium(xi: Any) -> Any:
    """``w = alpha = 2 / (1 + 2 xi)``: the limit of exact second-order DARTS on this model."""
    return 2 / (1 + 2 * xi)


def step_size_bounds(
    lam: Any, beta: Any, gamma: Any = 0.0, lipschitz: float = LIPSCHITZ
) -> tuple[Any, Any, Any]:
    """Theorem 2.2 (Eq. 2.15): below ``(c1, c2, c3)`` for ``(eta_u, eta_w, eta_alpha)`` the
    Lagrangian never increases.

    ``c1 = 1/2 [beta/2 + L]^-1`` (written for ``eta_y`` in the thesis; ``y`` is ``u``),
    ``c2 = 1/2 [beta/2 + lam L]^-1``, ``c3 = 1/2 [(1 + lam + gamma/2) L]^-1``.
    """
    c1 = 0.5 / (beta / 2 + lipschitz)
    c2 = 0.5 / (beta / 2 + lam * lipschitz)
    c3 = 0.5 / ((1 + lam + gamma / 2) * lipschitz)
    return c1, c2, c3


def _stack0(x0: Array, xs: Array) -> Array:
    return jnp.concatenate([jnp.asarray(x0, xs.dtype)[None], xs])


@partial(jax.jit, static_argnames="steps")
def run_rarts(
    lam: Any,
    beta: Any,
    *,
    u0: Any,
    w0: Any,
    alpha0: Any,
    eta_u: Any,
    eta_w: Any,
    eta_alpha: Any,
    steps: int,
) -> dict[str, Array]:
    """RARTS (Eq. 2.12) with plain gradient steps, through the generic
    ``jaxnas.bilevel.rarts_update`` step.

    Returns ``{"u", "w", "alpha", "lagrangian"}``, each of shape ``(steps + 1,)``
    (iterates 0..steps).  All numeric arguments may be traced (vmap over them).
    """
    u0, w0, alpha0 = (jnp.asarray(x, jnp.result_type(float)) for x in (u0, w0, alpha0))
    txs = dict(tx_u=optax.sgd(eta_u), tx_w=optax.sgd(eta_w), tx_alpha=optax.sgd(eta_alpha))
    step = make_rarts_step(loss_p=loss_p, loss_a=loss_a, lam=lam, beta=beta, **txs)
    state = rarts_init(u0, w0, alpha0, **txs)

    def body(s, _):
        s, info = step(s, None, None)
        return s, (s.u, s.w, s.alpha, info.lagrangian)

    final, (us, ws, alphas, lags) = jax.lax.scan(body, state, None, length=steps)
    last = lagrangian(final.u, final.w, final.alpha, lam, beta)
    return dict(
        u=_stack0(u0, us),
        w=_stack0(w0, ws),
        alpha=_stack0(alpha0, alphas),
        lagrangian=jnp.concatenate([lags, last[None]]),
    )


def bilevel_loss(w: Array, alpha: Array, batch: str) -> Array:
    """One loss for both halves, as ``hypergrad`` expects: ``"a"`` -> L_a, ``"p"`` -> L_p."""
    return loss_a(w, alpha) if batch == "a" else loss_p(w, alpha)


def _run_pair(alpha_grad, w0, alpha0, eta_w, eta_alpha, steps):
    """``w+ = w - eta_w grad_w L_a(w, alpha)``, then ``alpha+ = alpha - eta_alpha g(w+, alpha)``."""
    w0, alpha0 = (jnp.asarray(x, jnp.result_type(float)) for x in (w0, alpha0))

    def body(carry, _):
        w, alpha = carry
        w = w - eta_w * jax.grad(loss_a)(w, alpha)
        alpha = alpha - eta_alpha * alpha_grad(w, alpha)
        return (w, alpha), (w, alpha)

    _, (ws, alphas) = jax.lax.scan(body, (w0, alpha0), None, length=steps)
    return dict(w=_stack0(w0, ws), alpha=_stack0(alpha0, alphas))


@partial(jax.jit, static_argnames="steps")
def run_darts1(*, w0: Any, alpha0: Any, eta_w: Any, eta_alpha: Any, steps: int) -> dict[str, Array]:
    """First-order DARTS (Eq. 2.21): ``alpha`` descends ``grad_alpha L_p(w^{t+1}, alpha)``.
    Returns ``{"w", "alpha"}`` of shape ``(steps + 1,)``."""
    g = lambda w, a: hypergrad.first_order(bilevel_loss, w, a, "p")[0]
    return _run_pair(g, w0, alpha0, eta_w, eta_alpha, steps)


@partial(jax.jit, static_argnames="steps")
def run_milenas1(
    *, w0: Any, alpha0: Any, lam: Any, eta_w: Any, eta_alpha: Any, steps: int
) -> dict[str, Array]:
    """First-order MiLeNAS (Eq. 2.23): ``alpha`` descends
    ``grad_alpha L_a(w^{t+1}, alpha) + lam grad_alpha L_p(w^{t+1}, alpha)``."""
    g = lambda w, a: jax.grad(loss_a, 1)(w, a) + lam * jax.grad(loss_p, 1)(w, a)
    return _run_pair(g, w0, alpha0, eta_w, eta_alpha, steps)


@partial(jax.jit, static_argnames="steps")
def run_darts2(
    *, w0: Any, alpha0: Any, xi: Any, eta_w: Any, eta_alpha: Any, steps: int
) -> dict[str, Array]:
    """Exact second-order DARTS: ``alpha`` descends ``d/dalpha L_p(w' (alpha), alpha)`` with
    ``w'(alpha) = w^{t+1} - xi grad_w L_a(w^{t+1}, alpha)``, by ``jax.grad`` through the
    unrolled step (``hypergrad.hypergradient(mode="unrolled")``, plain SGD: no momentum,
    no weight decay).  ``xi`` is a free parameter here, not tied to ``eta_w``."""

    def g(w, a):
        zero = jnp.zeros_like(w)
        return hypergrad.hypergradient(
            bilevel_loss,
            w,
            a,
            zero,
            "a",
            "p",
            xi=xi,
            momentum=0.0,
            weight_decay=0.0,
            mode="unrolled",
        )[0]

    return _run_pair(g, w0, alpha0, eta_w, eta_alpha, steps)
