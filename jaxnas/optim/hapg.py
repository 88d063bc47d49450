"""Proximal optax transforms: a proximal step, HAPG and AdamHAPG (SparseNAS, Wu et al.).

All three minimise ``f(x) + Omega(x)`` with ``f`` smooth (its gradient is the
``updates`` argument of ``update``) and Omega the Sparse Group Lasso of Eq. 2,
using the exact SGL prox of Eq. 5 (:func:`jaxnas.optim.prox.sgl_prox`).

**HAPG** (Eqs. 6-8), the accelerated proximal gradient of Huang & Wang (2017)
in SparseNAS' reparameterised form.  With step ``eta_t``, strength
``lam_t``, mixing ``alpha`` and ``u_t = (t - 2) / (t + 1)``::

    z_t     = A_{t-1} - eta_t g_{t-1}                                    (Eq. 6)
    theta_t = Prox_{eta_t lam_t (1-alpha) ||.||_2} o Prox_{eta_t lam_t alpha ||.||_1}(z_t)
                                                               (Eqs. 5, 9, 10)
    v_t     = theta_t - A_{t-1} + u_{t-1} v_{t-1}                        (Eq. 7)
    A_t     = theta_t + u_t v_t                                          (Eq. 8)

with ``A_0 = theta_0 = params``, ``v_0 = 0``, ``g_{t-1} = grad f(A_{t-1})``.
Since ``A_{t-1} = theta_{t-1} + u_{t-1} v_{t-1}``, ``v_t = theta_t -
theta_{t-1}`` and ``A_t`` is the Nesterov/FISTA look-ahead point: the standard
form ``d_t = theta_{t-1} + u_{t-1}(theta_{t-1} - theta_{t-2})``, ``theta_t =
prox(d_t - eta grad f(d_t))``.  The params the model uses are ``A_t``; they are
**not sparse** in general (an entry that just left the support is
``-u_t theta_{t-1}``).  The sparse iterate ``theta_t`` is kept in the state:
**read the architecture (the zeros) from** ``state.theta``.

**AdamHAPG** (SparseNAS, paragraph after Eq. 10): Eq. 6 becomes an Adam step
with per-element step sizes; the L1 prox uses each element's own step, the
group prox uses the median step of the group (a heuristic: the exact prox in
the diagonal metric has no closed form)::

    m_t = b1 m_{t-1} + (1 - b1) g,   s_t = b2 s_{t-1} + (1 - b2) g^2
    eta_{t,i} = eta_t / (sqrt(s_t,i / (1 - b2^t)) + eps)
    z_{t,i}   = A_{t-1,i} - eta_{t,i} m_t,i / (1 - b1^t)
    y_i       = sgn(z_i) max(|z_i| - eta_{t,i} lam alpha, 0)                (Eq. 9)
    theta_(n) = max(1 - sqrt(p_n) median_{i in n}(eta_{t,i}) lam (1-alpha) / ||y_(n)||, 0) y_(n)
                                                                        (Eq. 10)

then Eqs. 7-8 unchanged (the APG extrapolation is kept on top of Adam's own
momentum).  With all ``eta_{t,i}`` equal it is exactly HAPG.

**proximal_step**: ``theta = Prox(params + updates)`` for any preceding
optimiser in an ``optax.chain`` (proximal SGD = ISTA when it follows
``optax.sgd(eta)`` with ``step_size=eta``).

Hyperparameters ``learning_rate`` / ``step_size`` and ``lam`` are floats,
arrays (also traced, e.g. under ``vmap``) or optax schedules of the step
count; all transforms work with ``optax.inject_hyperparams`` (pass
``static_args='groups'`` if ``groups`` is a callable or a bare array).
Exact zeros survive ``optax.apply_updates``: the update is ``A_t - params``
and ``p + (0 - p) == 0`` exactly.  The prox needs the current params, so
these transforms must come **last** in a chain (no ``add_decayed_weights``
after them: fold weight decay into the gradient before).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnas.optim.groups import Groups, GroupSpec, resolve_groups
from jaxnas.optim.prox import check_nonneg, group_shrink, masked_threshold, soft_threshold

__all__ = [
    "AdamHAPGState",
    "HAPGState",
    "ProximalState",
    "adam_hapg",
    "apg_momentum",
    "hapg",
    "proximal",
    "proximal_step",
]

ScalarOrSchedule = float | jax.Array | Callable[[jax.Array], jax.Array]


class ProximalState(NamedTuple):
    """State of :func:`proximal_step`.

    count: int32 scalar, number of completed updates.
    step_size, lam: scalars used by the last update (its prox thresholds).
    """

    count: jax.Array
    step_size: jax.Array
    lam: jax.Array


class HAPGState(NamedTuple):
    """State of :func:`hapg` (all pytrees have the structure and shapes of params).

    count: int32 scalar ``t - 1`` before step t (number of completed steps).
    theta: ``theta_t``, the last prox output: the **sparse** iterate (Eqs. 5, 9, 10).
    velocity: ``v_t = theta_t - theta_{t-1}`` (Eq. 7).
    u: ``u_t``, the momentum of the last step (Eq. 8); ``u_{t-1}`` in Eq. 7.
    learning_rate, lam: ``eta_t`` and ``lam_t`` of the last step (for logging).
    """

    count: jax.Array
    theta: Any
    velocity: Any
    u: jax.Array
    learning_rate: jax.Array
    lam: jax.Array


class AdamHAPGState(NamedTuple):
    """State of :func:`adam_hapg`: :class:`HAPGState` plus Adam's moments ``mu``, ``nu``."""

    count: jax.Array
    theta: Any
    velocity: Any
    u: jax.Array
    mu: Any
    nu: Any
    learning_rate: jax.Array
    lam: jax.Array


def apg_momentum(count: jax.Array, dtype: Any = jnp.float32) -> jax.Array:
    """SparseNAS Eq. 8: ``u_t = (t - 2) / (t + 1)`` with ``t = count + 1``.

    ``u_1 = -1/2``, ``u_2 = 0``, ``u_3 = 1/4``, ``u_10 = 8/11``; ``u_t -> 1``.
    """
    t = jnp.asarray(count, dtype) + 1.0
    return (t - 2.0) / (t + 1.0)


# ---------------------------------------------------------------------------- helpers


def schedule_value(x: ScalarOrSchedule, count: jax.Array) -> jax.Array:
    """``x(count)`` for a schedule, ``x`` for a constant."""
    return x(count) if callable(x) else x


def scalar_dtype(params: Any) -> Any:
    """The float dtype the step sizes of ``params`` are computed in (float32 without any)."""
    leaves = [leaf for leaf in jax.tree.leaves(params) if jnp.issubdtype(leaf.dtype, jnp.floating)]
    return jnp.result_type(*leaves) if leaves else jnp.float32


def scalars_at(count: jax.Array, dt: Any, *xs: ScalarOrSchedule) -> tuple[jax.Array, ...]:
    """``(x(count) or x, ...)`` for each of ``xs``, each a scalar of dtype ``dt``."""
    return tuple(jnp.asarray(schedule_value(x, count), dt) for x in xs)


def add_updates(params: Any, updates: Any) -> Any:
    """``z = params + d`` leaf by leaf, ``d`` cast to each parameter's dtype."""
    return jax.tree.map(lambda p, d: p + d.astype(p.dtype), params, updates)


def proximal_state(
    params: Any, step_size: ScalarOrSchedule, lam: ScalarOrSchedule
) -> ProximalState:
    """The initial :class:`ProximalState` (count 0, ``step_size`` and ``lam`` at count 0)."""
    zero = jnp.zeros([], jnp.int32)
    return ProximalState(zero, *scalars_at(zero, scalar_dtype(params), step_size, lam))


def check_schedule(name: str, x: ScalarOrSchedule) -> None:
    """Reject negative constants; evaluate a schedule at count 0 as a smoke check."""
    if callable(x):
        try:
            v = x(jnp.zeros([], jnp.int32))
        except Exception:  # a schedule that cannot be probed at count 0 is not checked
            return
        check_nonneg(f"{name} (schedule at count 0)", v)
    else:
        check_nonneg(name, x)


def _check_alpha(name: str, alpha: Any) -> None:
    if isinstance(alpha, jax.core.Tracer) or callable(alpha):
        return
    a = np.asarray(alpha)
    if a.dtype.kind not in "fiu" or np.any(np.isnan(a)) or np.any(a < 0) or np.any(a > 1):
        raise ValueError(f"{name}: alpha (the L1 / group mixing) must be in [0, 1], got {alpha}")


def _check_unit(name: str, value: Any, *, closed: bool = False) -> None:
    if isinstance(value, jax.core.Tracer):
        return
    v = np.asarray(value)
    hi_bad = np.any(v > 1) if closed else np.any(v >= 1)
    if np.any(np.isnan(v)) or np.any(v < 0) or hi_bad:
        raise ValueError(f"{name} must be in [0, 1{']' if closed else ')'}, got {value}")


def _resolver(groups: GroupSpec, name: str) -> Callable[[Any], Groups]:
    """Resolve the spec once per parameter structure (at trace time)."""
    if isinstance(groups, Groups):
        return lambda params: groups
    if isinstance(groups, jax.core.Tracer):
        raise ValueError(
            f"{name}: groups must be static (numpy/int), got a traced value; with "
            "optax.inject_hyperparams pass static_args='groups'"
        )
    cache: dict[Any, Groups] = {}

    def resolve(params: Any) -> Groups:
        leaves, treedef = jax.tree.flatten(params)
        key = (treedef, tuple(tuple(np.shape(x)) for x in leaves))
        if key not in cache:
            cache[key] = resolve_groups(groups, params, name=name)
        return cache[key]

    return resolve


def _prox(z: Any, l1: Any, group: Any, g: Groups) -> Any:
    """Eq. 5: Eq. 10 after Eq. 9 (l1 scalar or per-element; group scalar or per-group)."""
    y = soft_threshold(z, masked_threshold(l1, g, z))
    return group_shrink(y, group, g)


def _cast_like(tree: Any, like: Any) -> Any:
    return jax.tree.map(lambda t, p: t.astype(p.dtype), tree, like)


def needs_params(name: str, params: Any) -> None:
    """One-line ValueError when a proximal transform's ``update`` got no ``params``."""
    if params is None:
        raise ValueError(f"{name}: update needs params (the prox acts on the parameters)")


# ---------------------------------------------------------------------------- transforms


def proximal_step(
    step_size: ScalarOrSchedule,
    lam: ScalarOrSchedule,
    alpha: float | jax.Array = 0.5,
    groups: GroupSpec = None,
) -> optax.GradientTransformation:
    """The SGL prox applied after any optimiser (put it **last** in an ``optax.chain``).

    With incoming updates ``d`` (e.g. ``-eta g`` from ``optax.sgd(eta)``)::

        theta = Prox_{step lam Omega}(params + d)          (Eqs. 5, 9, 10)
        updates = theta - params

    so ``optax.chain(optax.sgd(eta), proximal_step(eta, lam, alpha))`` is ISTA /
    proximal SGD.  ``step_size`` must be the step the preceding optimiser took
    (its learning rate), since it scales the thresholds ``step lam alpha`` and
    ``sqrt(p_n) step lam (1 - alpha)``.

    Args:
      step_size: float or schedule of the count.
      lam: SGL strength ``lam >= 0`` (Eq. 2), float or schedule.
      alpha: L1 / group mixing in [0, 1] (1: Lasso, 0: group Lasso).
      groups: group spec, see :mod:`jaxnas.optim.groups` (``None``: one group per leaf).
    """
    check_schedule("proximal_step: step_size", step_size)
    check_schedule("proximal_step: lam", lam)
    _check_alpha("proximal_step", alpha)
    resolve = _resolver(groups, "proximal_step: groups")

    def init_fn(params):
        resolve(params)  # raise early on a bad group spec
        return proximal_state(params, step_size, lam)

    def update_fn(updates, state, params=None):
        needs_params("proximal_step", params)
        g = resolve(params)
        eta, lam_t = scalars_at(state.count, scalar_dtype(params), step_size, lam)
        z = add_updates(params, updates)
        theta = _prox(z, eta * lam_t * alpha, eta * lam_t * (1.0 - alpha), g)
        new_updates = jax.tree.map(lambda t, p: (t - p).astype(p.dtype), theta, params)
        return new_updates, ProximalState(optax.safe_increment(state.count), eta, lam_t)

    return optax.GradientTransformation(init_fn, update_fn)


def proximal(
    base: optax.GradientTransformation,
    step_size: ScalarOrSchedule,
    lam: ScalarOrSchedule,
    alpha: float | jax.Array = 0.5,
    groups: GroupSpec = None,
) -> optax.GradientTransformation:
    """Turn ``base`` into a proximal optimiser: ``optax.chain(base, proximal_step(...))``.

    ``proximal(optax.sgd(eta), eta, lam, alpha)`` is ISTA (proximal gradient
    descent) on ``f + Omega``.  The params after ``optax.apply_updates`` are the
    prox output, so they carry the exact zeros.
    """
    return optax.chain(base, proximal_step(step_size, lam, alpha, groups))


def _momentum_value(momentum: Any, count: jax.Array, dt: Any) -> jax.Array:
    if momentum is None:
        return apg_momentum(count, dt)
    return jnp.asarray(schedule_value(momentum, count), dt)


def _hapg_scalars(
    params: Any,
    count: jax.Array,
    learning_rate: ScalarOrSchedule,
    lam: ScalarOrSchedule,
    momentum: ScalarOrSchedule | None,
) -> tuple[Any, jax.Array, jax.Array, jax.Array]:
    """``(dt, eta_t, lam_t, u_t)`` of the step after ``count`` completed ones."""
    dt = scalar_dtype(params)
    eta, lam_t = scalars_at(count, dt, learning_rate, lam)
    return dt, eta, lam_t, _momentum_value(momentum, count, dt)


def _hapg_init(params: Any, learning_rate: ScalarOrSchedule, lam: ScalarOrSchedule) -> dict:
    """The fields :class:`HAPGState` and :class:`AdamHAPGState` share, at count 0:
    ``theta_0 = A_0``, ``v_0 = 0``, ``u = 0``, ``eta`` and ``lam`` at count 0."""
    dt = scalar_dtype(params)
    zero = jnp.zeros([], jnp.int32)
    eta, lam0 = scalars_at(zero, dt, learning_rate, lam)
    velocity = jax.tree.map(jnp.zeros_like, params)
    return dict(
        count=zero,
        theta=params,
        velocity=velocity,
        u=jnp.zeros([], dt),
        lam=lam0,
        learning_rate=eta,
    )


def _accelerate(state: Any, params: Any, theta: Any, u_t: jax.Array, **fields: Any):
    """Eqs. 7-8 after the prox: ``v_t = theta_t - A_{t-1} + u_{t-1} v_{t-1}``,
    ``A_t = theta_t + u_t v_t``; returns ``(A_t - A_{t-1}, state)`` with ``state`` (a
    :class:`HAPGState` or :class:`AdamHAPGState`) holding ``theta_t``, ``v_t``,
    ``u_t`` and ``fields``."""
    velocity = jax.tree.map(  # Eq. 7
        lambda th, a, v: th - a + state.u.astype(a.dtype) * v, theta, params, state.velocity
    )
    a_new = jax.tree.map(lambda th, v: th + u_t.astype(th.dtype) * v, theta, velocity)  # Eq. 8
    updates = jax.tree.map(lambda an, a: an - a, a_new, params)
    return updates, state._replace(theta=theta, velocity=velocity, u=u_t, **fields)


def hapg(
    learning_rate: ScalarOrSchedule,
    lam: ScalarOrSchedule,
    alpha: float | jax.Array = 0.5,
    groups: GroupSpec = None,
    momentum: ScalarOrSchedule | None = None,
) -> optax.GradientTransformation:
    """Hierarchical Accelerated Proximal Gradient, SparseNAS Eqs. 6-8 (see the module doc).

    Args:
      learning_rate: ``eta_t`` (float or schedule; the paper uses cosine decay).
      lam: SGL strength ``lam_t >= 0`` (float or schedule, e.g. the pathwise
        linear increase of the paper).
      alpha: L1 / group mixing in [0, 1].
      groups: group spec (``None``: one group per leaf).
      momentum: ``None`` for the paper's ``u_t = (t - 2) / (t + 1)`` (Eq. 8), or
        a constant / schedule ``u(count)``.  ``momentum=0`` is ISTA; a constant
        ``mu`` with ``lam = 0`` equals ``optax.sgd(eta, momentum=mu, nesterov=True)``.

    Returns:
      A ``GradientTransformation``; ``update(grads, state, params)`` needs
      ``params = A_{t-1}`` and returns ``A_t - A_{t-1}``.  ``state.theta`` is the
      sparse iterate to read the architecture from.
    """
    check_schedule("hapg: learning_rate", learning_rate)
    check_schedule("hapg: lam", lam)
    _check_alpha("hapg", alpha)
    resolve = _resolver(groups, "hapg: groups")

    def init_fn(params):
        resolve(params)
        return HAPGState(**_hapg_init(params, learning_rate, lam))

    def update_fn(grads, state, params=None):
        needs_params("hapg", params)
        g = resolve(params)
        _, eta, lam_t, u_t = _hapg_scalars(params, state.count, learning_rate, lam, momentum)
        z = jax.tree.map(lambda a, gr: a - (eta * gr).astype(a.dtype), params, grads)  # Eq. 6
        theta = _cast_like(_prox(z, eta * lam_t * alpha, eta * lam_t * (1.0 - alpha), g), params)
        count = optax.safe_increment(state.count)
        return _accelerate(state, params, theta, u_t, count=count, learning_rate=eta, lam=lam_t)

    return optax.GradientTransformation(init_fn, update_fn)


def adam_hapg(
    learning_rate: ScalarOrSchedule,
    lam: ScalarOrSchedule,
    alpha: float | jax.Array = 0.5,
    groups: GroupSpec = None,
    b1: float | jax.Array = 0.5,
    b2: float | jax.Array = 0.999,
    eps: float | jax.Array = 1e-8,
    momentum: ScalarOrSchedule | None = None,
) -> optax.GradientTransformation:
    """AdamHAPG: HAPG with an Adam step, per-element L1 and per-group median group steps.

    See the module doc for the math (SparseNAS, paragraph after Eq. 10, with
    Eqs. 5-10).  The Adam step is optax's (bias-corrected moments, ``eps``
    outside the square root); the paper's betas are ``(0.5, 0.999)``.  The
    median of an even-sized group is the mean of its two middle step sizes.

    Args:
      learning_rate: ``eta_t`` (float or schedule).
      lam: SGL strength ``lam_t >= 0`` (float or schedule).
      alpha: L1 / group mixing in [0, 1].
      groups: group spec (``None``: one group per leaf).
      b1, b2: Adam decay rates in [0, 1).
      eps: Adam's ``eps >= 0`` (step ``eta / (sqrt(s_hat) + eps)``).
      momentum: as in :func:`hapg` (``None``: ``(t - 2) / (t + 1)``).
    """
    check_schedule("adam_hapg: learning_rate", learning_rate)
    check_schedule("adam_hapg: lam", lam)
    _check_alpha("adam_hapg", alpha)
    _check_unit("adam_hapg: b1", b1)
    _check_unit("adam_hapg: b2", b2)
    check_nonneg("adam_hapg: eps", eps)
    resolve = _resolver(groups, "adam_hapg: groups")

    def init_fn(params):
        resolve(params)
        init = _hapg_init(params, learning_rate, lam)
        return AdamHAPGState(**init, mu=init["velocity"], nu=init["velocity"])

    def update_fn(grads, state, params=None):
        needs_params("adam_hapg", params)
        g = resolve(params)
        dt, eta, lam_t, u_t = _hapg_scalars(params, state.count, learning_rate, lam, momentum)
        count = optax.safe_increment(state.count)
        mu = optax.tree.update_moment(grads, state.mu, b1, 1)
        nu = optax.tree.update_moment_per_elem_norm(grads, state.nu, b2, 2)
        mu_hat = optax.tree.bias_correction(mu, b1, count)
        nu_hat = optax.tree.bias_correction(nu, b2, count)
        step = jax.tree.map(  # eta_{t,i}
            lambda n, p: (eta / (jnp.sqrt(n) + eps)).astype(p.dtype), nu_hat, params
        )
        z = jax.tree.map(lambda a, s, m: a - s * m.astype(a.dtype), params, step, mu_hat)  # Eq. 6
        l1 = jax.tree.map(lambda s: s * (lam_t * alpha).astype(s.dtype), step)  # Eq. 9, per elem
        if g.num_groups:
            med = g.median(jax.tree.leaves(step))  # per-group median step
            group = med * (lam_t * (1.0 - alpha)).astype(med.dtype)  # Eq. 10
        else:
            group = jnp.zeros([], dt)
        theta = _cast_like(_prox(z, l1, group, g), params)
        return _accelerate(
            state, params, theta, u_t, count=count, mu=mu, nu=nu, learning_rate=eta, lam=lam_t
        )

    return optax.GradientTransformation(init_fn, update_fn)
