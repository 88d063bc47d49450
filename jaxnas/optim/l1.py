"""The l1 penalty ``gamma ||x||_1`` as composable optax transforms (proximal and subgradient).

Width search (F. Xue, PhD thesis, UC Irvine 2022, Sec. 4.2, Algorithm 3) adds
``gamma P(alpha)`` with ``P = ||alpha||_1`` (``gamma = 1e-4``) to the RARTS Lagrangian
(thesis Eq. 2.11).  The l1 term is not differentiable at 0, so it comes in two forms:

* :func:`l1_prox` -- the proximal (soft-threshold) step, RVSM's ``S`` (thesis
  Sec. 2.1.2; SparseNAS Eq. 9).  After the smooth step ``d`` of any optimiser::

      x+ = S_{eta gamma}(x + d),   [S_t(z)]_i = sgn(z_i) max(|z_i| - t, 0)

  i.e. ``argmin_v gamma ||v||_1 + ||v - (x + d)||^2 / (2 eta)``.  Entries with
  ``|x_i + d_i| <= eta gamma`` become **exactly 0** and stay 0 through
  ``optax.apply_updates`` (the update there is ``-x_i``).  ``eta`` must be the step
  the preceding optimiser took (its learning rate).  Put it **last** in an
  ``optax.chain`` (it needs the params and acts on the final update).

* :func:`add_l1_subgradient` -- the plain subgradient ``g + gamma sgn(x)`` (``sgn(0) =
  0``, the minimum-norm subgradient); goes **before** the optimiser, like
  ``optax.add_decayed_weights``.  What the code the thesis refers to for SiDT does
  (it adds ``1e-4 sign(alpha)`` to the score gradients); it never produces exact
  zeros, only small oscillating values.

With ``gamma = 0`` both are the identity on the updates, bit for bit.
``gamma`` (and ``step_size``) may be floats, arrays or optax schedules of the update
count.  To penalise only part of a pytree, wrap the transform in ``optax.masked``.

Relation to :func:`jaxnas.optim.proximal_step`: ``proximal_step(eta, gamma, alpha=1.0)``
computes the same prox values through the Sparse Group Lasso machinery; :func:`l1_prox`
is the plain l1 case, returns the incoming update unchanged wherever the prox does not
move it (so ``gamma = 0`` is exactly the identity transform), and needs no group spec.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxnas.optim.hapg import (
    ProximalState,
    add_updates,
    check_schedule,
    needs_params,
    proximal_state,
    scalar_dtype,
    scalars_at,
)
from jaxnas.optim.prox import soft_threshold

__all__ = ["L1SubgradientState", "add_l1_subgradient", "l1_penalty", "l1_prox"]

ScalarOrSchedule = float | jax.Array | Callable[[jax.Array], jax.Array]


class L1SubgradientState(NamedTuple):
    """State of :func:`add_l1_subgradient`: the update count (for a ``gamma`` schedule)."""

    count: jax.Array


def l1_penalty(x: Any) -> jax.Array:
    """``||x||_1 = sum_i |x_i|`` over all leaves of a pytree (scalar; 0 for an empty tree)."""
    leaves = jax.tree.leaves(x)
    if not leaves:
        return jnp.zeros(())
    dtype = jnp.result_type(*leaves)
    return sum((jnp.sum(jnp.abs(leaf)).astype(dtype) for leaf in leaves), jnp.zeros((), dtype))


def l1_prox(step_size: ScalarOrSchedule, gamma: ScalarOrSchedule) -> optax.GradientTransformation:
    """Soft-threshold proximal step for ``gamma ||x||_1``; put it **last** in a chain.

    With incoming updates ``d`` (e.g. ``-eta g`` from ``optax.sgd(eta)``) and
    ``t = step_size * gamma``::

        z = params + d,   theta = S_t(z)            (thesis Sec. 2.1.2; SparseNAS Eq. 9)
        updates = d                where theta == z  (the prox did not move z: t = 0, z_i = 0)
                = theta - params   elsewhere         (= -params where theta_i = 0: exact zero)

    so ``optax.chain(optax.sgd(eta), l1_prox(eta, gamma))`` is proximal SGD (ISTA) on
    ``f + gamma ||.||_1``.

    Args:
      step_size: the step of the preceding optimiser, ``eta >= 0`` (float or schedule).
      gamma: l1 strength ``gamma >= 0`` (float or schedule); 0 makes this the identity.

    Returns:
      A ``GradientTransformation`` whose ``update(updates, state, params)`` needs
      ``params``; state :class:`~jaxnas.optim.ProximalState` (``lam`` holds ``gamma``).
    """
    check_schedule("l1_prox: step_size", step_size)
    check_schedule("l1_prox: gamma", gamma)

    def init_fn(params):
        return proximal_state(params, step_size, gamma)

    def update_fn(updates, state, params=None):
        needs_params("l1_prox", params)
        eta, gam = scalars_at(state.count, scalar_dtype(params), step_size, gamma)
        z = add_updates(params, updates)
        theta = soft_threshold(z, eta * gam)
        new_updates = jax.tree.map(
            # Where the prox did not move z, hand d through untouched: gamma = 0 is then
            # the identity bit for bit (p + ((p + d) - p) need not be p + d in floats).
            lambda th, zz, p, d: jnp.where(th == zz, d.astype(p.dtype), th - p),
            theta,
            z,
            params,
            updates,
        )
        return new_updates, ProximalState(optax.safe_increment(state.count), eta, gam)

    return optax.GradientTransformation(init_fn, update_fn)


def add_l1_subgradient(gamma: ScalarOrSchedule) -> optax.GradientTransformation:
    """Add the l1 subgradient ``gamma sgn(params)`` to the updates (``sgn(0) = 0``).

    ``updates <- updates + gamma * sign(params)``: the gradient of ``gamma ||x||_1``
    away from 0 and its minimum-norm subgradient at 0.  Use it on the raw gradient,
    before the optimiser: ``optax.chain(add_l1_subgradient(1e-4), optax.adam(3e-4))``.

    Args:
      gamma: l1 strength ``gamma >= 0`` (float, array or schedule of the count).
    """
    check_schedule("add_l1_subgradient: gamma", gamma)

    def init_fn(params):
        del params
        return L1SubgradientState(count=jnp.zeros([], jnp.int32))

    def update_fn(updates, state, params=None):
        needs_params("add_l1_subgradient", params)
        (gam,) = scalars_at(state.count, scalar_dtype(params), gamma)
        new_updates = jax.tree.map(
            lambda g, p: g + (gam * jnp.sign(p)).astype(g.dtype), updates, params
        )
        return new_updates, L1SubgradientState(optax.safe_increment(state.count))

    return optax.GradientTransformation(init_fn, update_fn)
