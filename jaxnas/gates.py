"""Hard-concrete stochastic gates (Louizos et al., 2018) as used by PR-DARTS.

PR-DARTS (Zhou et al., NeurIPS 2020, Sec. 4.1) gives every (edge, op) pair its
own gate ``g ~ Bernoulli(sigmoid(beta))`` instead of a per-edge softmax, and
relaxes it so that ``beta`` gets a reparameterised gradient:

    u ~ Uniform(0, 1),     L = ln u - ln(1 - u)            (Logistic(0, 1) noise)
    g_bar   = sigmoid((L + beta) / tau)                     in (0, 1)
    g_tilde = a + (b - a) * g_bar                           stretched to (a, b), a < 0 < 1 < b
    g       = min(1, max(0, g_tilde))                       hard clip: exact 0s and 1s

with ``a = -0.1``, ``b = 1.1`` (paper L188).  Theorem 3 (corrected, see below):

    g = 0        iff  g_bar <= -a / (b - a)
    g = g_tilde  iff  -a / (b - a) < g_bar < (1 - a) / (b - a)
    g = 1        iff  g_bar >= (1 - a) / (b - a)

    P(g != 0) = sigmoid(beta - tau * ln(-a / b))            (= sigmoid(beta + tau ln 11))
    P(g == 1) = sigmoid(beta - tau * ln((1 - a) / (b - 1))) (= sigmoid(beta - tau ln 11))

The paper prints the three intervals of Theorem 3 for the *stretched* value
``g_tilde`` (``g_tilde in (0, -a/(b-a)]`` etc.); they only make sense for the
unstretched concrete sample ``g_bar``, whose range (0, 1) they partition.  The
``P(g == 1)`` form is not in the paper; it follows by the same argument.

Everything here is a pure function of arrays; ``tau`` may be a traced scalar,
so annealing it does not recompile a jitted step.  Shapes: ``beta`` is any
array, normally ``(n_edges, n_ops)`` = ``(14, 8)`` for one DARTS cell with the
ops in :data:`jaxnas.ops.DARTS_PRIMITIVES` order; op-selection functions work
on the last axis.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = [
    "A",
    "B",
    "OpSample",
    "concrete",
    "deterministic_gate",
    "hard_concrete",
    "logistic_noise",
    "log_odds_shift",
    "p_nonzero",
    "p_one",
    "sample_binary_gate",
    "sample_hard_concrete",
    "sample_two_ops",
    "straight_through",
    "stretch_clip",
]

#: Lower stretch limit (paper L188).
A: float = -0.1
#: Upper stretch limit (paper L188).
B: float = 1.1

ArrayLike = jax.Array | float


def log_odds_shift(a: float = A, b: float = B) -> float:
    """``-ln(-a / b)``: the shift of ``beta / tau`` in P(g != 0); ``ln 11`` for the defaults."""
    if not (a < 0.0 and b > 1.0):
        raise ValueError(f"hard-concrete limits need a < 0 and b > 1, got a={a}, b={b}")
    return -math.log(-a / b)


def logistic_noise(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    """``ln u - ln(1 - u)`` for ``u ~ Uniform(0, 1)``: Logistic(0, 1) noise, one per gate.

    ``jax.random.logistic`` keeps ``u`` away from 0 and 1, so the noise is finite.
    """
    return jax.random.logistic(key, shape, dtype)


def concrete(beta: jax.Array, noise: jax.Array, tau: ArrayLike) -> jax.Array:
    """The binary-concrete sample ``g_bar = sigmoid((noise + beta) / tau)`` in (0, 1)."""
    return jax.nn.sigmoid((noise + beta) / tau)


def stretch_clip(g_bar: jax.Array, a: float = A, b: float = B) -> jax.Array:
    """``clip(a + (b - a) g_bar, 0, 1)``; the gradient is ``b - a`` inside and 0 where clipped."""
    return jnp.clip(a + (b - a) * g_bar, 0.0, 1.0)


def hard_concrete(
    beta: jax.Array, noise: jax.Array, tau: ArrayLike, a: float = A, b: float = B
) -> jax.Array:
    """The hard-concrete gate for given noise (reparameterised, differentiable in ``beta``).

    ``dg/dbeta = (b - a) g_bar (1 - g_bar) / tau`` where ``0 < g_tilde < 1`` and 0 where
    the stretched sample is clipped to 0 or 1.

    Args:
      beta: gate logits, any shape.
      noise: Logistic(0, 1) noise of the same shape (:func:`logistic_noise`).
      tau: temperature (scalar, may be traced).
      a, b: stretch limits, ``a < 0 < 1 < b``.

    Returns:
      Gates in [0, 1], same shape as ``beta``.
    """
    return stretch_clip(concrete(beta, noise, tau), a, b)


def sample_hard_concrete(
    key: jax.Array, beta: jax.Array, tau: ArrayLike, a: float = A, b: float = B
) -> jax.Array:
    """Draw one hard-concrete gate per entry of ``beta`` (shape kept); see :func:`hard_concrete`."""
    beta = jnp.asarray(beta)
    return hard_concrete(beta, logistic_noise(key, beta.shape, beta.dtype), tau, a, b)


def p_nonzero(beta: jax.Array, tau: ArrayLike, a: float = A, b: float = B) -> jax.Array:
    """Theorem 3: the activation probability ``P(g != 0) = sigmoid(beta - tau ln(-a/b))``."""
    return jax.nn.sigmoid(beta + tau * log_odds_shift(a, b))


def p_one(beta: jax.Array, tau: ArrayLike, a: float = A, b: float = B) -> jax.Array:
    """``P(g == 1) = sigmoid(beta - tau ln((1 - a)/(b - 1)))`` (same argument as Theorem 3)."""
    if not (a < 0.0 and b > 1.0):
        raise ValueError(f"hard-concrete limits need a < 0 and b > 1, got a={a}, b={b}")
    return jax.nn.sigmoid(beta - tau * math.log((1.0 - a) / (b - 1.0)))


def straight_through(g: jax.Array, threshold: float = 0.5) -> jax.Array:
    """Binary forward value ``1[g > threshold]``, gradient of ``g`` (straight-through).

    With ``threshold = 0.5`` and limits symmetric about 1/2 (``a + b = 1``, the
    default) the forward value is exactly ``Bernoulli(sigmoid(beta))`` at every
    ``tau``: ``g > 1/2`` iff ``g_bar > 1/2`` iff ``noise > -beta``.  That is the
    paper's gate distribution; the gradient is the hard-concrete pathwise one.
    """
    hard = (g > threshold).astype(g.dtype)
    return hard + (g - jax.lax.stop_gradient(g))  # forward value exactly `hard`


def sample_binary_gate(
    key: jax.Array,
    beta: jax.Array,
    tau: ArrayLike,
    a: float = A,
    b: float = B,
    threshold: float = 0.5,
) -> jax.Array:
    """A straight-through binary gate: forward in {0, 1}, gradient through the hard-concrete g."""
    return straight_through(sample_hard_concrete(key, beta, tau, a, b), threshold)


def deterministic_gate(
    beta: jax.Array, tau: ArrayLike, a: float = A, b: float = B, *, binary: bool = False
) -> jax.Array:
    """A noise-free gate for evaluating the supernet (the paper does not say which).

    Default: the *median* gate ``clip(a + (b - a) sigmoid(beta / tau), 0, 1)``, i.e.
    the hard-concrete sample at zero noise (``g`` is increasing in the noise and the
    logistic median is 0).  With ``binary=True``: ``1[beta > 0]``, the mode of
    ``Bernoulli(sigmoid(beta))`` (equivalently ``1[median gate > 1/2]`` for the
    default limits).
    """
    beta = jnp.asarray(beta)
    if binary:
        return (beta > 0).astype(beta.dtype)
    return stretch_clip(jax.nn.sigmoid(beta / tau), a, b)


class OpSample(NamedTuple):
    """Result of :func:`sample_two_ops`; every field has the shape of ``beta``.

    Attributes:
      weights: the per-(edge, op) weight to multiply each op output by; exactly zero
        (value and gradient) on unselected ops, so those need not be computed.
      mask: 1.0 on the ``k`` selected ops of each edge (last axis), 0.0 elsewhere;
        no gradient.
      gates: the hard-concrete sample ``g`` of every op (selected or not).
    """

    weights: jax.Array
    mask: jax.Array
    gates: jax.Array


def _mask_from_order(order: jax.Array, k: int, n: int, dtype) -> jax.Array:
    """1.0 at the first ``k`` indices of ``order`` (last axis), 0.0 elsewhere."""
    return jax.nn.one_hot(order[..., :k], n, dtype=dtype).sum(axis=-2)


def sample_two_ops(
    key: jax.Array,
    beta: jax.Array,
    tau: ArrayLike,
    *,
    mode: str = "paper",
    k: int = 2,
    drop_prob: float = 0.4,
    a: float = A,
    b: float = B,
) -> OpSample:
    """Sample gates and select ``k`` ops per edge ("randomly select two operations", L188).

    ``mode="paper"`` (Eq. 7 with the acceleration of L188): ``k`` ops per edge chosen
    uniformly at random without replacement, independently of ``beta``; the weight of
    a selected op is its continuous hard-concrete gate ``g`` (which may be an exact 0).

    ``mode="code"`` (the authors' ``get_gumbel_prob``, after GDAS): each op's gate is
    lowered by 1 with probability ``drop_prob`` (so it ranks last), ties are broken
    uniformly at random (the code permutes the ops), the top ``k`` by this perturbed
    gate are kept, and the weight is straight-through: forward value exactly 1 on the
    kept ops, gradient ``dg/dbeta`` on them.  The code computes only the kept ops, so
    unselected ops get neither value nor gradient here either.

    Args:
      key: a JAX PRNG key; all randomness (noise, selection, drops) comes from it.
      beta: gate logits ``(..., n_ops)``, e.g. ``(14, 8)`` for a DARTS cell.
      tau: temperature, scalar (may be traced: no recompile when it changes).
      mode: ``"paper"`` or ``"code"`` (static).
      k: ops kept per edge, ``1 <= k <= n_ops`` (static).
      drop_prob: probability of demoting each op before the top-k (``"code"`` only).
      a, b: stretch limits.

    Returns:
      An :class:`OpSample` ``(weights, mask, gates)``, each of the shape of ``beta``.
    """
    beta = jnp.asarray(beta)
    n = beta.shape[-1]
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, {n}], got {k}")
    k_noise, k_sel, k_drop = jax.random.split(key, 3)
    g = sample_hard_concrete(k_noise, beta, tau, a, b)
    if mode == "paper":
        scores = jax.random.uniform(k_sel, beta.shape, beta.dtype)
        _, top = jax.lax.top_k(scores, k)
        mask = jax.nn.one_hot(top, n, dtype=beta.dtype).sum(axis=-2)
        weights = mask * g
    elif mode == "code":
        dropped = jax.random.bernoulli(k_drop, drop_prob, beta.shape)
        perturbed = jax.lax.stop_gradient(g) - dropped.astype(beta.dtype)
        tiebreak = jax.random.uniform(k_sel, beta.shape, beta.dtype)
        order = jnp.lexsort((tiebreak, -perturbed), axis=-1)  # descending gate, random ties
        mask = _mask_from_order(order, k, n, beta.dtype)
        weights = mask + mask * (g - jax.lax.stop_gradient(g))
    else:
        raise ValueError(f"unknown mode {mode!r}; expected 'paper' or 'code'")
    return OpSample(weights=weights, mask=jax.lax.stop_gradient(mask), gates=g)
