"""Curvature of a loss: Hessian-vector products, exact Hessians, diagonal Gauss-Newton.

Self-contained (imports only jax), so other projects can use it on its own.
Every function takes pytrees of parameters and returns pytrees of the same
structure, and is jittable (wrap it in ``jax.jit`` with the callables closed
over).  Conventions:

* ``f(params, *args) -> scalar``: a loss.
* ``model_fn(params) -> z``: the network's outputs, ``z`` of shape ``(N, *out)``
  with ``N`` examples along the leading axis (``K = prod(out)`` outputs each).
* ``loss_fn(z) -> scalar``: the loss as a function of the outputs, *separable
  over the leading axis* (a sum or mean of per-example terms), so the output
  Hessian ``H_out = d^2 loss / dz^2`` is block diagonal with one ``K x K``
  block ``H_n`` per example.

The generalised Gauss-Newton (GGN) matrix is ``G = J^T H_out J`` with ``J = dz /
d params``; it equals the Hessian when ``z`` is linear in the parameters and
drops the terms ``sum_k dL/dz_k d^2 z_k / dparams^2`` otherwise.  It is positive
semidefinite whenever ``H_out`` is (cross-entropy, squared error).

Estimators of ``diag(Hessian)`` / ``diag(G)`` here:

==========================  ============================  ===========================
function                    what                          cost
==========================  ============================  ===========================
``hessian_diag``            exact Hessian diagonal        P HVPs, P^2 memory (refuses
                            (``jax.hessian``)             above ``max_params``)
``hutchinson_diag``         unbiased, Hessian, can be <0  1 HVP per probe
``ggn_diag_exact``          exact GGN diagonal            N*K backward passes
                            (per-example Jacobians)       (refuses above a size limit)
``ggn_diag_mc``             unbiased, GGN, always >= 0    1 backward pass per probe
paper recursions            BayesNAS App. C: exact for    ~1 backward pass
(``dense_*``, ``conv_*``,   one layer with a diagonal
``gate_*``)                 output Hessian, else approx.
==========================  ============================  ===========================

The Monte-Carlo GGN estimator draws, per example ``n``, a vector ``v_n`` with
``E[v_n v_n^T] = H_n`` (independent across examples) and back-propagates it once:
``u = J^T v``.  Then ``E[u u^T] = sum_n J_n^T H_n J_n = G`` because the cross-
example terms vanish in expectation, so ``E[u**2] = diag(G)`` exactly.  The
samplers below build ``v`` either as ``L_n eps`` with ``L_n L_n^T = H_n`` and
Rademacher/Gaussian ``eps`` (default) or, for softmax cross-entropy, from
targets sampled from the model (``v_n = p_n - onehot(y~p_n)``, the "Fisher"
form of Martens & Grosse, 2015), both unbiased.

The layer-wise recursions are those of BayesNAS (Zhou et al., ICML 2019,
App. C), which follow Botev et al. (2017) with every pre-activation Hessian
replaced by its diagonal.  Flax layouts: dense kernels ``(in, out)``, images
``NHWC``, conv kernels ``HWIO``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

PyTree = Any
# A sampler maps the outputs z (N, *out) and a PRNG key to v (N, *out) with
# E[v v^T] = the output Hessian of the loss (block diagonal over examples).
OutputSampler = Callable[[jax.Array, jax.Array], jax.Array]

DEFAULT_MAX_PARAMS = 4096
"""``hessian``/``hessian_diag`` refuse above this many parameters (a 4096^2
float32 matrix is 64 MiB; its construction costs 4096 HVPs)."""

DEFAULT_MAX_JACOBIAN_ENTRIES = 2**26
"""``ggn_diag_exact`` refuses when ``N * K * P`` exceeds this (256 MiB float32)."""

_CONV_DN = ("NHWC", "HWIO", "NHWC")


def num_params(params: PyTree) -> int:
    """Total number of scalars in a pytree."""
    return sum(math.prod(jnp.shape(x)) for x in jax.tree.leaves(params))


def _tree_zeros_like(tree: PyTree) -> PyTree:
    return jax.tree.map(jnp.zeros_like, tree)


# --------------------------------------------------------------------------
# Hessian-vector products and exact Hessians
# --------------------------------------------------------------------------


def hvp(f: Callable[..., jax.Array], params: PyTree, v: PyTree, *args: Any) -> PyTree:
    """Hessian-vector product ``(d^2 f / dparams^2) v``, forward over reverse.

    ``jax.jvp`` of ``jax.grad(f)`` along ``v``: one forward-mode pass through
    the gradient, cheaper in time and memory than reverse over reverse.
    ``f`` must support forward mode (no ``jax.custom_vjp`` inside).

    Args:
      f: ``f(params, *args) -> scalar``.
      params, v: pytrees of the same structure and shapes.
    Returns:
      a pytree like ``params``.
    """
    return jax.jvp(lambda p: jax.grad(f)(p, *args), (params,), (v,))[1]


def _check_size(n: int, max_params: int, what: str) -> None:
    if n > max_params:
        gib = n * n * 4 / 2**30
        raise ValueError(
            f"{what}: {n} parameters exceed max_params={max_params} (the dense Hessian would "
            f"take {gib:.2g} GiB in float32); use hvp, hutchinson_diag or ggn_diag_mc, "
            f"or raise max_params"
        )


def hessian(
    f: Callable[..., jax.Array],
    params: PyTree,
    *args: Any,
    max_params: int = DEFAULT_MAX_PARAMS,
) -> jax.Array:
    """The dense Hessian of ``f`` w.r.t. ``params``, via ``jax.hessian``.

    Args:
      f: ``f(params, *args) -> scalar``.
      params: pytree with ``P`` scalars in total.
      max_params: refuse (``ValueError``) when ``P`` exceeds it.
    Returns:
      ``(P, P)`` array indexed in ``jax.flatten_util.ravel_pytree(params)``
      order.
    """
    flat, unravel = ravel_pytree(params)
    _check_size(flat.size, max_params, "hessian")
    return jax.hessian(lambda x: f(unravel(x), *args))(flat)


def hessian_diag(
    f: Callable[..., jax.Array],
    params: PyTree,
    *args: Any,
    max_params: int = DEFAULT_MAX_PARAMS,
) -> PyTree:
    """Exact diagonal of the Hessian of ``f``, ``diag(d^2 f / dparams^2)``.

    Builds the dense Hessian with ``jax.hessian`` (so only for small problems;
    refuses above ``max_params`` scalars) and returns its diagonal shaped like
    ``params``.
    """
    flat, unravel = ravel_pytree(params)
    return unravel(jnp.diagonal(hessian(f, params, *args, max_params=max_params)))


def _probe_mean(one: Callable[[jax.Array], PyTree], like: PyTree, key, num_samples, probe_batch):
    """Mean of ``one(k)`` over ``jax.random.split(key, num_samples)``: chunks of
    ``probe_batch`` probes are vmapped, chunks run sequentially (``lax.scan``).

    (On CPU a backward pass inside a ``lax.scan`` body is several times slower
    than the same pass vmapped over probes, so the default vmaps all probes.)
    """
    keys = jax.random.split(key, num_samples)
    chunk = num_samples if probe_batch is None else min(probe_batch, num_samples)
    if num_samples % chunk:
        raise ValueError(f"num_samples={num_samples} is not a multiple of probe_batch={chunk}")

    def chunk_sum(ks):
        return jax.tree.map(lambda t: jnp.sum(t, 0), jax.vmap(one)(ks))

    if chunk == num_samples:
        total = chunk_sum(keys)
    else:

        def body(acc, ks):
            return jax.tree.map(jnp.add, acc, chunk_sum(ks)), None

        total, _ = jax.lax.scan(
            body, _tree_zeros_like(like), keys.reshape(num_samples // chunk, chunk)
        )
    return jax.tree.map(lambda t: t / num_samples, total)


def _vjp_probe_mean(model_fn, params, key, sampler, num_samples, probe_batch, post):
    """Mean over probes ``v = sampler(z, k)`` of ``post(J^T v)``, one forward pass
    ``z = model_fn(params)`` shared by all (:func:`_probe_mean` over the keys)."""
    z, vjp_fn = jax.vjp(model_fn, params)

    def one(k):
        (u,) = vjp_fn(sampler(z, k))
        return post(u)

    return _probe_mean(one, params, key, num_samples, probe_batch)


def hutchinson_diag(
    f: Callable[..., jax.Array],
    params: PyTree,
    key: jax.Array,
    *args: Any,
    num_samples: int = 1,
    probe_batch: int | None = None,
) -> PyTree:
    """Hutchinson's estimator of the Hessian diagonal, ``mean_k z_k * (H z_k)``.

    ``z_k`` Rademacher; unbiased for ``diag(H)``; one HVP per probe; entries can
    be negative (the full Hessian is indefinite in general).  Probes use
    ``jax.random.split(key, num_samples)``; ``probe_batch`` of them are vmapped
    at a time (default: all).
    """
    flat, unravel = ravel_pytree(params)

    def one(k):
        z = jax.random.rademacher(k, flat.shape, dtype=flat.dtype)
        return z * hvp(lambda x: f(unravel(x), *args), flat, z)

    return unravel(_probe_mean(one, flat, key, num_samples, probe_batch))


# --------------------------------------------------------------------------
# Generalised Gauss-Newton diagonal
# --------------------------------------------------------------------------


def output_hessian_blocks(loss_fn: Callable[[jax.Array], jax.Array], z: jax.Array) -> jax.Array:
    """Per-example output Hessian blocks ``H_n = d^2 loss / dz_n^2``.

    For a loss separable over the leading axis the output Hessian is block
    diagonal, so ``K`` output-space HVPs with the tangent ``1_N (x) e_k`` give
    column ``k`` of every block at once.

    Args:
      loss_fn: ``loss_fn(z) -> scalar``, separable over axis 0.
      z: outputs, shape ``(N, *out)``.
    Returns:
      ``(N, K, K)`` with ``K = prod(out)``.
    """
    n = z.shape[0]
    k = math.prod(z.shape[1:])
    basis = jnp.broadcast_to(jnp.eye(k, dtype=z.dtype)[:, None, :], (k, n, k))
    g = jax.grad(lambda zz: loss_fn(zz.reshape(z.shape)))
    flat = z.reshape(n, k)
    cols = jax.vmap(lambda t: jax.jvp(g, (flat,), (t,))[1])(basis)  # (K, N, K): [k, n, j]
    return jnp.transpose(cols, (1, 2, 0))


def ggn_diag_exact(
    model_fn: Callable[[PyTree], jax.Array],
    params: PyTree,
    loss_fn: Callable[[jax.Array], jax.Array],
    *,
    max_jacobian_entries: int = DEFAULT_MAX_JACOBIAN_ENTRIES,
) -> PyTree:
    """Exact diagonal of the GGN ``G = sum_n J_n^T H_n J_n``.

    ``diag(G)_p = sum_n sum_{k,l} J[n,k,p] H_n[k,l] J[n,l,p]`` from the full
    Jacobian ``J = jax.jacrev(model_fn)`` (``N*K`` backward passes, the per-
    example Jacobians) and the output Hessian blocks of
    :func:`output_hessian_blocks`.  Exact also when examples interact inside
    ``model_fn`` (e.g. batch norm in train mode).  For small output sizes;
    refuses (``ValueError``) when ``N * K * P`` exceeds ``max_jacobian_entries``.

    Args:
      model_fn: ``params -> z`` with ``z`` of shape ``(N, *out)``.
      params: pytree with ``P`` scalars.
      loss_fn: ``z -> scalar``, separable over axis 0.
    Returns:
      a pytree like ``params``.
    """
    z = jax.eval_shape(model_fn, params)
    n, k = z.shape[0], math.prod(z.shape[1:])
    p = num_params(params)
    if n * k * p > max_jacobian_entries:
        raise ValueError(
            f"ggn_diag_exact: the Jacobian has N*K*P = {n}*{k}*{p} = {n * k * p} entries, "
            f"above max_jacobian_entries={max_jacobian_entries}; use ggn_diag_mc"
        )
    zv = model_fn(params)
    blocks = output_hessian_blocks(loss_fn, zv)  # (N, K, K)
    jac = jax.jacrev(model_fn)(params)  # leaves (N, *out, *leaf)

    def leaf(j, x):
        j = j.reshape(n, k, -1)
        return jnp.einsum("nkp,nkl,nlp->p", j, blocks, j).reshape(jnp.shape(x))

    return jax.tree.map(leaf, jac, params)


def ggn_diag_mc(
    model_fn: Callable[[PyTree], jax.Array],
    params: PyTree,
    key: jax.Array,
    sampler: OutputSampler,
    *,
    num_samples: int = 1,
    probe_batch: int | None = None,
) -> PyTree:
    """Monte-Carlo GGN diagonal: one forward pass, one backward pass per probe.

    For each probe draw ``v = sampler(z, key)`` with ``E[v v^T] = H_out`` and
    ``v_n`` independent across examples, and form ``u = J^T v`` with a single
    ``jax.vjp``; ``E[u**2] = diag(J^T H_out J)``, so the mean of ``u**2`` over
    probes is an unbiased, non-negative estimate of the GGN diagonal.  No
    per-example gradients are needed and train-mode batch norm is fine (the
    whole batch is one function).

    Args:
      model_fn: ``params -> z`` with ``z`` of shape ``(N, *out)``.
      params: pytree.
      key: PRNG key; probe ``i`` uses ``jax.random.split(key, num_samples)[i]``.
      sampler: e.g. :func:`cross_entropy_sampler`, :func:`squared_error_sampler`,
        :func:`sampler_from_loss`.
      num_samples: probes averaged; they share the forward pass's residuals.
      probe_batch: probes vmapped at once (memory ``probe_batch`` x one backward
        pass); chunks run sequentially.  Default: all at once.
    Returns:
      a pytree like ``params``.
    """
    square = functools.partial(jax.tree.map, jnp.square)
    return _vjp_probe_mean(model_fn, params, key, sampler, num_samples, probe_batch, square)


def probe_vjp_mean(
    model_fn: Callable[[PyTree], jax.Array],
    params: PyTree,
    key: jax.Array,
    sampler: OutputSampler,
    *,
    num_samples: int = 1,
    probe_batch: int | None = None,
) -> PyTree:
    """Mean over probes of the raw back-propagated probe ``J^T v`` (not squared).

    The building block for models whose backward pass is itself a curvature
    recursion: a ``jax.custom_vjp`` that returns, for a gate ``w`` on a tensor
    ``b``, ``sum b^2 g^2`` instead of ``sum b g`` (``g`` the probe's cotangent
    there) gives, averaged over probes, ``sum b^2 E[g^2] = sum b^2 diag(G_node)``,
    BayesNAS' App. C.3 with the node's diagonal GGN (see
    ``jaxnas.search.bayesnas``).  With an ordinary ``model_fn`` the mean of
    ``J^T v`` is an unbiased estimate of 0.  Arguments as :func:`ggn_diag_mc`.
    """
    return _vjp_probe_mean(model_fn, params, key, sampler, num_samples, probe_batch, lambda u: u)


def _reduction_scale(z: jax.Array, reduction: str, batch_axes: int) -> float:
    if reduction == "sum":
        return 1.0
    if reduction == "mean":
        return 1.0 / math.sqrt(math.prod(z.shape[:batch_axes]))
    raise ValueError(f"unknown reduction {reduction!r}; expected 'sum' or 'mean'")


def _noise(key: jax.Array, shape: Sequence[int], dtype, noise: str) -> jax.Array:
    if noise == "rademacher":
        return jax.random.rademacher(key, tuple(shape), dtype=dtype)
    if noise == "gaussian":
        return jax.random.normal(key, tuple(shape), dtype=dtype)
    raise ValueError(f"unknown noise {noise!r}; expected 'rademacher' or 'gaussian'")


def cross_entropy_sampler(reduction: str = "mean", noise: str = "rademacher") -> OutputSampler:
    """Sampler for softmax cross-entropy on logits ``z`` of shape ``(..., C)``.

    The per-example logit Hessian is ``H_n = diag(p) - p p^T``, ``p = softmax(z_n)``
    (independent of the label).  ``noise="rademacher"`` / ``"gaussian"``:
    ``v = L eps`` with the exact square root ``L = diag(sqrt p) - p sqrt(p)^T``
    (``L L^T = H_n`` since ``sum p = 1``).  ``noise="label"``: sample
    ``y ~ Cat(p)`` and return ``v = p - onehot(y)``, the gradient of the loss at
    the sampled label (``E[v v^T] = H_n``).  ``reduction="mean"`` (loss averaged
    over all leading axes) scales ``v`` by ``1/sqrt(#examples)``.
    """

    def sample(z: jax.Array, key: jax.Array) -> jax.Array:
        scale = _reduction_scale(z, reduction, z.ndim - 1)
        p = jax.nn.softmax(z, axis=-1)
        if noise == "label":
            y = jax.random.categorical(key, z, axis=-1)
            return scale * (p - jax.nn.one_hot(y, z.shape[-1], dtype=z.dtype))
        eps = _noise(key, z.shape, z.dtype, noise)
        sp = jnp.sqrt(p)
        return scale * (sp * eps - p * jnp.sum(sp * eps, axis=-1, keepdims=True))

    return sample


def squared_error_sampler(
    sigma2: float = 1.0, reduction: str = "sum", noise: str = "rademacher"
) -> OutputSampler:
    """Sampler for ``E = 1/(2 sigma2) sum_n ||z_n - y_n||^2`` (``H_n = I / sigma2``).

    ``v = eps / sqrt(sigma2)``; ``reduction="mean"`` divides the loss by ``N``
    (the leading axis).
    """

    def sample(z: jax.Array, key: jax.Array) -> jax.Array:
        scale = _reduction_scale(z, reduction, 1) / math.sqrt(sigma2)
        return scale * _noise(key, z.shape, z.dtype, noise)

    return sample


def sampler_from_loss(
    loss_fn: Callable[[jax.Array], jax.Array], noise: str = "rademacher"
) -> OutputSampler:
    """Sampler for any loss separable over axis 0 (small ``K`` only).

    Computes the blocks ``H_n`` (:func:`output_hessian_blocks`), their
    symmetric square roots ``L_n = V_n diag(sqrt(max(lambda, 0))) V_n^T``
    (negative eigenvalues clipped, which gives the GGN of the convexified
    loss), and returns ``v_n = L_n eps_n``.
    """

    def sample(z: jax.Array, key: jax.Array) -> jax.Array:
        blocks = output_hessian_blocks(loss_fn, z)
        lam, vec = jnp.linalg.eigh(blocks)
        root = jnp.einsum("nij,nj,nkj->nik", vec, jnp.sqrt(jnp.maximum(lam, 0.0)), vec)
        eps = _noise(key, blocks.shape[:2], z.dtype, noise)
        return jnp.einsum("nij,nj->ni", root, eps).reshape(z.shape)

    return sample


# --------------------------------------------------------------------------
# BayesNAS App. C: layer-wise diagonal recursions
# --------------------------------------------------------------------------
#
# Notation of App. C: layer ``i -> j`` computes ``h_j = W a_i`` with
# ``a_i = sigma(h_i)``; ``H_j`` is the (diagonal of the) "pre-activation
# Hessian" d^2 L / dh_j^2, one value per example and unit; the recursion runs
# backwards from the output seed (e.g. :func:`softmax_cross_entropy_hessian_diag`).


def softmax_cross_entropy_hessian_diag(logits: jax.Array, reduction: str = "mean") -> jax.Array:
    """Seed of the recursion: ``diag(H_n) = p (1 - p)`` at the logits.

    (The BayesNAS code keeps only the true-class entry ``p_y (1 - p_y)``; this
    is the full diagonal.)  ``reduction="mean"`` divides by the number of
    examples (all axes but the last).  Shape like ``logits``.
    """
    p = jax.nn.softmax(logits, axis=-1)
    return p * (1.0 - p) * _reduction_scale(logits, reduction, logits.ndim - 1) ** 2


def _activation(h: jax.Array, act_deriv, act_curv) -> jax.Array:
    if act_deriv is not None:
        h = jnp.square(act_deriv) * h
    if act_curv is not None:
        h = h + act_curv
    return h


def dense_weight_hessian(a: jax.Array, h: jax.Array) -> jax.Array:
    """Diagonal Hessian of a dense kernel, Eq. (C.1.4): ``sum_n a_n^2 (x) H_n``.

    Exact for any loss separable over examples when ``h`` holds the diagonals of
    the per-example output Hessians (only same-output entries enter a weight's
    second derivative).

    Args:
      a: layer inputs ``(N, m)``.
      h: diagonal pre-activation Hessian at the outputs, ``(N, n)``.
    Returns:
      ``(m, n)``, the layout of a Flax ``Dense`` kernel.  (The bias Hessian is
      ``h.sum(0)``.)
    """
    return jnp.einsum("ni,nj->ij", jnp.square(a), h)


def dense_pre_hessian(
    h: jax.Array,
    kernel: jax.Array,
    *,
    act_deriv: jax.Array | None = None,
    act_curv: jax.Array | None = None,
) -> jax.Array:
    """Back-propagate the diagonal pre-activation Hessian, Eq. (C.1.5).

    ``H_i = B_i^2 o ((W^T)^2 H_j) + D_i`` with ``B_i = sigma'(h_i)`` and
    ``D_i = sigma''(h_i) o dL/da_i`` (the OCR prints ``sigma'(H_i)``; it is the
    pre-activation ``h_i``).  For a Flax kernel ``(m, n)`` the middle term is
    ``h @ (kernel**2).T``.  Exact for the diagonal when ``H_j`` is diagonal
    (e.g. a squared-error output); otherwise the dropped off-diagonal terms
    make it an approximation.

    Args:
      h: ``(N, n)`` diagonal pre-activation Hessian at the layer output.
      kernel: ``(m, n)``.
      act_deriv: ``sigma'(h_i)``, ``(N, m)``; ``None`` for no activation.
      act_curv: ``sigma''(h_i) * dL/da_i``, ``(N, m)``; ``None`` for zero
        (ReLU, or a Gauss-Newton recursion).
    Returns:
      ``(N, m)``.
    """
    return _activation(h @ jnp.square(kernel).T, act_deriv, act_curv)


def conv_patches(
    x: jax.Array,
    kernel_size: Sequence[int],
    *,
    strides: Sequence[int] = (1, 1),
    padding: str | Sequence[tuple[int, int]] = "SAME",
    dilation: Sequence[int] = (1, 1),
) -> jax.Array:
    """im2col (Ma & Lu, 2017): ``x (b, H, W, C)`` -> ``M (b, Ho, Wo, C*kh*kw)``.

    Feature order ``(C, kh, kw)`` (channel major), as
    ``jax.lax.conv_general_dilated_patches`` returns it.
    """
    return jax.lax.conv_general_dilated_patches(
        x,
        tuple(kernel_size),
        tuple(strides),
        padding,
        rhs_dilation=tuple(dilation),
        dimension_numbers=_CONV_DN,
    )


def conv_weight_hessian(
    x: jax.Array,
    h: jax.Array,
    kernel_size: Sequence[int],
    *,
    strides: Sequence[int] = (1, 1),
    padding: str | Sequence[tuple[int, int]] = "SAME",
    dilation: Sequence[int] = (1, 1),
    reduction: str = "sum",
    approx: str = "rows",
) -> jax.Array:
    """Diagonal Hessian of a conv kernel via im2col, Eqs. (C.2.1)-(C.2.4).

    The conv is the dense layer ``M_i W^M`` on the ``R = b Ho Wo`` rows of
    :func:`conv_patches`; per row ``n`` (C.2.1) ``diag((M^n M^n^T) (x) H^n) =
    (M^n)^2 (x) H^n``.  ``reduction="sum"`` adds the rows: the exact diagonal
    when the output Hessian is diagonal (e.g. squared error on the output);
    ``"mean"`` divides by ``R`` as printed in (C.2.3).  ``approx="meanfield"``
    is (C.2.4), ``E(M^2) (x) E(H)`` (times ``R`` for ``"sum"``), reading the
    paper's ``E(M_i)^2`` as the row mean of the squares (exact when ``H`` is
    constant over rows).

    Args:
      x: conv input ``(b, H, W, C_in)``.
      h: diagonal pre-activation Hessian at the output ``(b, Ho, Wo, C_out)``.
      kernel_size: ``(kh, kw)``.
    Returns:
      ``(kh, kw, C_in, C_out)``, a Flax ``Conv`` kernel's layout.
    """
    kh, kw = kernel_size
    c_in, c_out = x.shape[-1], h.shape[-1]
    m2 = jnp.square(
        conv_patches(x, kernel_size, strides=strides, padding=padding, dilation=dilation)
    ).reshape(-1, c_in * kh * kw)
    hr = h.reshape(-1, c_out)
    rows = hr.shape[0]
    if approx == "rows":
        out = m2.T @ hr
    elif approx == "meanfield":
        out = jnp.outer(m2.mean(0), hr.mean(0)) * rows
    else:
        raise ValueError(f"unknown approx {approx!r}; expected 'rows' or 'meanfield'")
    if reduction == "mean":
        out = out / rows
    elif reduction != "sum":
        raise ValueError(f"unknown reduction {reduction!r}; expected 'sum' or 'mean'")
    # (C_in, kh, kw, C_out) -> HWIO
    return jnp.transpose(out.reshape(c_in, kh, kw, c_out), (1, 2, 0, 3))


def conv_pre_hessian(
    h: jax.Array,
    kernel: jax.Array,
    input_shape: Sequence[int],
    *,
    strides: Sequence[int] = (1, 1),
    padding: str | Sequence[tuple[int, int]] = "SAME",
    dilation: Sequence[int] = (1, 1),
    act_deriv: jax.Array | None = None,
    act_curv: jax.Array | None = None,
) -> jax.Array:
    """Back-propagate the diagonal pre-activation Hessian through a conv (C.2).

    Per im2col row the recursion is (C.1.5) with ``W^M``; folding the rows
    back to the image (col2im, summing overlapping patches) is the transposed
    convolution with the *squared* kernel, computed as the VJP of
    ``x -> conv(x, kernel**2)`` applied to ``h``.  Then ``B^2 o . + D`` as in
    :func:`dense_pre_hessian`.  Exact for the diagonal of the input Hessian
    when the output Hessian is diagonal.

    Args:
      h: ``(b, Ho, Wo, C_out)``.
      kernel: ``(kh, kw, C_in, C_out)``.
      input_shape: ``(b, H, W, C_in)``.
    Returns:
      ``(b, H, W, C_in)``.
    """
    k2 = jnp.square(kernel)

    def conv(x):
        return jax.lax.conv_general_dilated(
            x,
            k2,
            tuple(strides),
            padding,
            rhs_dilation=tuple(dilation),
            dimension_numbers=_CONV_DN,
        )

    _, vjp = jax.vjp(conv, jnp.zeros(tuple(input_shape), h.dtype))
    (hin,) = vjp(h)
    return _activation(hin, act_deriv, act_curv)


def gate_hessian(
    b: jax.Array, h: jax.Array, *, reduction: str = "sum", approx: str = "exact"
) -> jax.Array:
    """Hessian of a scalar gate ``w`` multiplying a tensor ``b``, App. C.3.

    The gated output is ``w * b``; with ``h`` the diagonal pre-activation
    Hessian there, ``H_w = sum b^2 h`` over every element (batch, positions,
    channels) -- exact when the output Hessian is diagonal.
    ``approx="meanfield"`` is (C.3.2), ``E(|b|)^2 sum h`` (the mean of ``|b|``
    over all elements, squared; exact when ``|b|`` is constant).
    ``reduction="mean"`` divides by the batch size ``b.shape[0]`` (the paper's
    ``E`` over the mini-batch; the authors' code sums).

    Args:
      b: un-gated op output, any shape ``(N, ...)``.
      h: same shape as ``b`` (or broadcastable).
    Returns:
      a scalar.
    """
    if approx == "exact":
        out = jnp.sum(jnp.square(b) * h)
    elif approx == "meanfield":
        out = jnp.square(jnp.mean(jnp.abs(b))) * jnp.sum(jnp.broadcast_to(h, b.shape))
    else:
        raise ValueError(f"unknown approx {approx!r}; expected 'exact' or 'meanfield'")
    if reduction == "mean":
        return out / b.shape[0]
    if reduction != "sum":
        raise ValueError(f"unknown reduction {reduction!r}; expected 'sum' or 'mean'")
    return out


def gate_pre_hessian(h: jax.Array, w: jax.Array) -> jax.Array:
    """Pre-activation Hessian behind a gate, (C.3.1): ``w^2 h``.

    Where several gated branches read the same tensor (e.g. identity ops of
    one edge), (C.3.1) adds their contributions, ``H_i = sum_o (w^o)^2 H_j``,
    which drops the cross terms ``2 w^o w^o' H_j``.
    """
    return jnp.square(w) * h


__all__ = [
    "DEFAULT_MAX_JACOBIAN_ENTRIES",
    "DEFAULT_MAX_PARAMS",
    "OutputSampler",
    "conv_patches",
    "conv_pre_hessian",
    "conv_weight_hessian",
    "cross_entropy_sampler",
    "dense_pre_hessian",
    "dense_weight_hessian",
    "gate_hessian",
    "gate_pre_hessian",
    "ggn_diag_exact",
    "ggn_diag_mc",
    "hessian",
    "hessian_diag",
    "hutchinson_diag",
    "num_params",
    "output_hessian_blocks",
    "probe_vjp_mean",
    "sampler_from_loss",
    "softmax_cross_entropy_hessian_diag",
    "squared_error_sampler",
]
