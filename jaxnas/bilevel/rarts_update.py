"""RARTS: the relaxed Lagrangian and its three-block Gauss-Seidel step, as pure functions.

F. Xue, *Relaxation and Optimization for Automated Learning of Neural Network
Architectures* (PhD thesis, UC Irvine, 2022), Ch. 2.  RARTS keeps two copies of
the weights with the same tree structure: the *primary* weights ``u`` trained on
``D_p`` and the *auxiliary* weights ``w`` trained on ``D_a``; both share one
architecture ``alpha``.  It minimises the single-level Lagrangian

    L(u, w, alpha) = L_p(u, alpha) + lam L_a(w, alpha)
                     + (beta / 2) ||u - w||^2 + gamma P(alpha)          (thesis Eq. 2.8, 2.11)

by gradient steps on the three blocks in Gauss-Seidel order, each block using
the newest values of the others (Eq. 2.10, expanded in Eq. 2.12; Algorithm 2
samples one batch from each half and uses *that pair* for all three blocks,
Eq. 2.34):

    w+ = w - eta_w [ lam grad_w L_a(w, alpha)   + beta (w - u)  ]                    (2.12a)
    u+ = u - eta_u [ grad_u L_p(u, alpha)       + beta (u - w+) ]                    (2.12b)
    a+ = a - eta_a [ lam grad_a L_a(w+, alpha) + grad_a L_p(u+, alpha)
                     + gamma grad_a P(alpha) ]                                       (2.12c)

``L_p`` is what DARTS calls the validation loss and ``L_a`` its training loss
(thesis Sec. 2.3.2: ``L_p = L_2``, ``L_a = L_1``).  Theorem 2.2 writes the
u-step size as ``eta_y``; ``y`` is this ``u`` (its bound has no ``lam``).

Each bracket above is the exact block gradient of ``L``; it is handed to a
per-block ``optax.GradientTransformation`` (``optax.sgd(eta)`` gives Eq. 2.12
literally; momentum, weight decay or Adam act on the same block gradient, so
e.g. the w-step's momentum sees the ``lam``-scaled loss gradient).

Everything is a pure function of pytrees: ``u``, ``w`` (same structure as ``u``)
and ``alpha`` may be any pytrees; the step jits, vmaps and differentiates
(``jax.grad`` through a step or a ``lax.scan`` of steps).

Auxiliary state (e.g. separate BN statistics for ``u`` and ``w``): with
``has_aux=True`` the losses are ``loss(params, alpha, batch, aux) -> (scalar,
new_aux)``; ``aux`` lives in ``RARTSState.u_aux`` / ``w_aux``.  The state keeps
the aux returned by the *weight* steps (2.12a: ``w_aux`` from the ``D_a`` batch,
2.12b: ``u_aux`` from the ``D_p`` batch); the alpha-step evaluates each loss
with the freshly updated aux, and its aux outputs are only reported in
``RARTSInfo`` (as the DARTS step in this package keeps the BN statistics of its
weight step only).  Put metrics such as accuracy in ``aux`` too if you want them;
the initial aux must then have the same structure.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

__all__ = [
    "RARTSInfo",
    "RARTSState",
    "lagrangian",
    "make_rarts_step",
    "rarts_init",
    "rarts_step",
    "sq_distance",
]

# loss(params, alpha, batch) -> scalar, or with has_aux:
# loss(params, alpha, batch, aux) -> (scalar, new_aux)
LossFn = Callable[..., Any]
PenaltyFn = Callable[[Any], jax.Array]


class RARTSState(NamedTuple):
    """The carried state of RARTS (a pytree)."""

    u: Any  # primary weights, trained on D_p
    w: Any  # auxiliary weights (same tree as u), trained on D_a
    alpha: Any  # shared architecture parameters
    u_opt: optax.OptState
    w_opt: optax.OptState
    alpha_opt: optax.OptState
    u_aux: Any = None  # the primary net's threaded aux (e.g. BN statistics); None without aux
    w_aux: Any = None  # the auxiliary net's threaded aux


class RARTSInfo(NamedTuple):
    """What one step reports; all values refer to the iterate *before* the step,
    ``(u^t, w^t, alpha^t)``, and come free from the step's own evaluations."""

    lagrangian: jax.Array  # L(u^t, w^t, alpha^t), Eq. 2.11
    loss_p: jax.Array  # L_p(u^t, alpha^t) on the D_p batch
    loss_a: jax.Array  # L_a(w^t, alpha^t) on the D_a batch
    sq_distance: jax.Array  # ||u^t - w^t||^2
    penalty: jax.Array  # P(alpha^t) (0 without a penalty)
    alpha_aux_p: Any = None  # aux of L_p(u^{t+1}, alpha^t) in the alpha-step (has_aux only)
    alpha_aux_a: Any = None  # aux of L_a(w^{t+1}, alpha^t) in the alpha-step (has_aux only)


def sq_distance(u: Any, w: Any) -> jax.Array:
    """``||u - w||^2`` summed over all leaves of two pytrees of the same structure."""
    leaves = jax.tree.leaves(jax.tree.map(lambda a, b: jnp.sum(jnp.square(a - b)), u, w))
    return sum(leaves, jnp.zeros((), jnp.result_type(*leaves) if leaves else jnp.float32))


def _call(loss: LossFn, has_aux: bool, params, alpha, batch, aux):
    """``(value, aux_out)`` of a loss under either calling convention."""
    if has_aux:
        return loss(params, alpha, batch, aux)
    return loss(params, alpha, batch), None


def lagrangian(
    u: Any,
    w: Any,
    alpha: Any,
    batch_p: Any,
    batch_a: Any,
    *,
    loss_p: LossFn,
    loss_a: LossFn,
    lam: float | jax.Array,
    beta: float | jax.Array,
    gamma: float | jax.Array = 0.0,
    penalty: PenaltyFn | None = None,
    has_aux: bool = False,
    u_aux: Any = None,
    w_aux: Any = None,
) -> jax.Array:
    """``L_p(u, alpha) + lam L_a(w, alpha) + beta/2 ||u - w||^2 + gamma P(alpha)`` (Eq. 2.11;
    Eq. 2.8 when ``penalty`` is None or ``gamma = 0``) on one batch pair."""
    lp, _ = _call(loss_p, has_aux, u, alpha, batch_p, u_aux)
    la, _ = _call(loss_a, has_aux, w, alpha, batch_a, w_aux)
    total = lp + lam * la + 0.5 * beta * sq_distance(u, w)
    if penalty is not None:
        total = total + gamma * penalty(alpha)
    return total


def rarts_init(
    u: Any,
    w: Any | None,
    alpha: Any,
    *,
    tx_u: optax.GradientTransformation,
    tx_w: optax.GradientTransformation,
    tx_alpha: optax.GradientTransformation,
    u_aux: Any = None,
    w_aux: Any = None,
) -> RARTSState:
    """Initial state.  ``w=None`` starts the auxiliary copy at ``u`` (the thesis allows
    different initialisations, Sec. 2.2.1); ``w_aux=None`` with ``u_aux`` given copies it."""
    if w is None:
        w = jax.tree.map(jnp.array, u)
    if w_aux is None and u_aux is not None:
        w_aux = jax.tree.map(jnp.array, u_aux)
    if jax.tree.structure(u) != jax.tree.structure(w):
        raise ValueError("u and w must have the same tree structure (network splitting)")
    return RARTSState(
        u=u,
        w=w,
        alpha=alpha,
        u_opt=tx_u.init(u),
        w_opt=tx_w.init(w),
        alpha_opt=tx_alpha.init(alpha),
        u_aux=u_aux,
        w_aux=w_aux,
    )


def rarts_step(
    state: RARTSState,
    batch_p: Any,
    batch_a: Any,
    *,
    loss_p: LossFn,
    loss_a: LossFn,
    tx_u: optax.GradientTransformation,
    tx_w: optax.GradientTransformation,
    tx_alpha: optax.GradientTransformation,
    lam: float | jax.Array,
    beta: float | jax.Array,
    gamma: float | jax.Array = 0.0,
    penalty: PenaltyFn | None = None,
    has_aux: bool = False,
) -> tuple[RARTSState, RARTSInfo]:
    """One RARTS iteration, blocks w -> u -> alpha (Eq. 2.12 / Algorithm 2, Eq. 2.34).

    Args:
      state: ``RARTSState`` with ``(u^t, w^t, alpha^t)`` and the optimiser states.
      batch_p: the batch from ``D_p`` (used by ``loss_p`` in the u- and alpha-steps).
      batch_a: the batch from ``D_a`` (used by ``loss_a`` in the w- and alpha-steps).
      loss_p: ``(u, alpha, batch_p) -> scalar`` (or ``(u, alpha, batch_p, aux) ->
        (scalar, aux)`` with ``has_aux``), the primary (DARTS "validation") loss.
      loss_a: the same for ``w`` on ``batch_a``, the auxiliary (DARTS "train") loss.
      tx_u, tx_w, tx_alpha: one optimiser per block; each receives the exact block
        gradient of the Lagrangian (``optax.sgd(eta)`` reproduces Eq. 2.12).
      lam, beta, gamma: the Lagrangian's weights (Python floats or arrays; arrays may be
        traced, e.g. to differentiate with respect to them).
      penalty: ``P(alpha) -> scalar`` (Eq. 2.11), or None.
      has_aux: the losses thread an aux pytree (see the module docstring).

    Returns:
      ``(new_state, info)``; ``info`` describes the iterate before the step.
    """
    u, w, alpha = state.u, state.w, state.alpha

    def value_and_grad(loss, argnums, params, a, batch, aux):
        f = lambda p, a_: _call(loss, has_aux, p, a_, batch, aux)
        return jax.value_and_grad(f, argnums=argnums, has_aux=True)(params, a)

    # (2.12a) w-block: lam grad_w L_a(w^t, alpha^t) + beta (w^t - u^t), on the D_a batch
    (la, w_aux), g_la = value_and_grad(loss_a, 0, w, alpha, batch_a, state.w_aux)
    g_w = jax.tree.map(lambda g, wi, ui: lam * g + beta * (wi - ui), g_la, w, u)
    upd, w_opt = tx_w.update(g_w, state.w_opt, w)
    w_new = optax.apply_updates(w, upd)

    # (2.12b) u-block: grad_u L_p(u^t, alpha^t) + beta (u^t - w^{t+1}), on the D_p batch
    (lp, u_aux), g_lp = value_and_grad(loss_p, 0, u, alpha, batch_p, state.u_aux)
    g_u = jax.tree.map(lambda g, ui, wi: g + beta * (ui - wi), g_lp, u, w_new)
    upd, u_opt = tx_u.update(g_u, state.u_opt, u)
    u_new = optax.apply_updates(u, upd)

    # (2.12c) alpha-block at (u^{t+1}, w^{t+1}, alpha^t): both batches, plus the penalty
    (_, aux_a), ga_a = value_and_grad(loss_a, 1, w_new, alpha, batch_a, w_aux)
    (_, aux_p), ga_p = value_and_grad(loss_p, 1, u_new, alpha, batch_p, u_aux)
    g_alpha = jax.tree.map(lambda ga, gp: lam * ga + gp, ga_a, ga_p)
    if penalty is not None:
        pen, g_pen = jax.value_and_grad(penalty)(alpha)
        g_alpha = jax.tree.map(lambda g, gp: g + gamma * gp, g_alpha, g_pen)
    else:
        pen = jnp.zeros((), jnp.result_type(lp))
    upd, alpha_opt = tx_alpha.update(g_alpha, state.alpha_opt, alpha)
    alpha_new = optax.apply_updates(alpha, upd)

    dist = sq_distance(u, w)
    total = lp + lam * la + 0.5 * beta * dist
    if penalty is not None:
        total = total + gamma * pen
    info = RARTSInfo(
        lagrangian=total,
        loss_p=lp,
        loss_a=la,
        sq_distance=dist,
        penalty=pen,
        alpha_aux_p=aux_p,
        alpha_aux_a=aux_a,
    )
    new_state = RARTSState(
        u=u_new,
        w=w_new,
        alpha=alpha_new,
        u_opt=u_opt,
        w_opt=w_opt,
        alpha_opt=alpha_opt,
        u_aux=u_aux,
        w_aux=w_aux,
    )
    return new_state, info


def make_rarts_step(
    **settings: Any,
) -> Callable[[RARTSState, Any, Any], tuple[RARTSState, RARTSInfo]]:
    """``step(state, batch_p, batch_a) -> (state, info)``: :func:`rarts_step` with its
    keyword ``settings`` bound (``loss_p``, ``loss_a``, ``tx_u``, ``tx_w``, ``tx_alpha``,
    ``lam``, ``beta`` and optionally ``gamma``, ``penalty``, ``has_aux``; a missing or
    unknown one is a ``TypeError`` here).  Not jitted: wrap it in ``jax.jit`` or use it
    inside ``lax.scan``."""
    inspect.signature(rarts_step).bind(None, None, None, **settings)
    return functools.partial(rarts_step, **settings)
