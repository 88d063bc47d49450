"""Candidate operations, NHWC, exactly as the DARTS reference defines them.

Reference: ``operations.py`` of the DARTS code (Liu et al., 2019).  Every op
maps ``(B, H, W, C) -> (B, H/stride, W/stride, C)``:

==============  ===========================================================
none            zeros (``x[:, ::s, ::s] * 0``)
max_pool_3x3    3x3 max pool, padding 1 (padded with -inf)
avg_pool_3x3    3x3 average pool, padding 1, padding excluded from the mean
skip_connect    identity; ``FactorizedReduce`` when strided
sep_conv_kxk    (ReLU, depthwise kxk, pointwise 1x1, BN) twice; only the
                first depthwise conv is strided; padding k//2
dil_conv_kxk    ReLU, depthwise kxk with dilation 2, pointwise 1x1, BN;
                padding k-1
==============  ===========================================================

In the search network (``affine=False``) BN has no scale or bias and every
pooling op is followed by a BN, as in DARTS' ``MixedOp``. Every BN of the library
is :class:`BatchNorm`: PyTorch's, whose running variance is updated with the
unbiased batch variance (flax's ``nn.BatchNorm`` uses the biased one).

Three things are this library's own, for speed on CPU and for the tests, and
none changes the function computed:

* depthwise convolutions are written as shifted multiply-adds (``depthwise``
  below) with a hand-written VJP; ``lax.conv_general_dilated`` with
  ``feature_group_count`` compiles and runs several times slower on CPU;
* 1x1 convolutions (``Pointwise``, ``nn.Dense``'s variable and value) have a
  hand-written VJP too, whose weight gradient is summed over batch chunks on the CPU
  (XLA writes the whole batch's transpose out for it otherwise);
* ``OpsConfig.smooth`` swaps ReLU for SiLU and max pooling for average pooling,
  so that second-order gradients can be checked against finite differences
  (a ReLU network's unrolled loss is only piecewise smooth).

Every submodule of an op has a fixed name, never Flax's automatic one, so that a
checkpoint's layout says what each array is and the PyTorch weight mapping
(``jaxnas.torch_weights``) is a table: ``ReLUConvBN``: ``conv``, ``bn``;
``FactorizedReduce``: ``conv_1``, ``conv_2``, ``bn`` (the reference's names);
``SepConv``: ``dw_conv1``, ``pw_conv1``, ``bn1``, ``dw_conv2``, ``pw_conv2``, ``bn2``;
``DilConv``: ``dw_conv``, ``pw_conv``, ``bn``; a search network's pool: ``bn``.
1x1 convolutions (``Pointwise``) have ``nn.Dense``'s kernels ``(C_in, C_out)``,
depthwise kernels are ``(k, k, C)``, other convolutions ``nn.Conv`` kernels
``(kh, kw, C_in, C_out)``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.linen.dtypes import canonicalize_dtype
from jax import lax

#: The DARTS search space, in the reference code's order (genotypes.PRIMITIVES).
DARTS_PRIMITIVES: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)

#: PyTorch BatchNorm defaults, in flax's convention: ``momentum`` is the decay of the
#: running averages (PyTorch's ``momentum=0.1``, the weight of the new batch, is 1 - 0.9).
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


@dataclasses.dataclass(frozen=True)
class OpsConfig:
    """How ops are computed (not what they compute).

    Attributes:
      depthwise: ``"custom_vjp"`` (shifted multiply-adds with a hand-written
        VJP, and the 1x1 convs' hand-written VJP; fastest, reverse mode only),
        ``"shifted"`` (the same forwards, plain autodiff: supports ``jax.jvp`` as
        needed by forward-over-reverse Hessian-vector products) or ``"lax"``
        (grouped convolution; 1x1 convs as with ``"shifted"``).
      smooth: SiLU instead of ReLU and average instead of max pooling (tests).
      dtype: computation dtype of convolutions and dense layers.
      group_ops: discrete cells only (``models.darts_net.DiscreteCell``): the ops of one
        name and stride that feed the same node run as one ``nn.vmap`` over their
        inputs (stacked variables), so a mixed-path cell compiles one body per
        (node, op) instead of one per edge op.
    """

    depthwise: str = "custom_vjp"
    smooth: bool = False
    dtype: jnp.dtype | None = None
    group_ops: bool = False

    def __post_init__(self):
        if self.depthwise not in ("custom_vjp", "shifted", "lax"):
            raise ValueError(f"unknown depthwise implementation {self.depthwise!r}")

    def act(self, x: jax.Array) -> jax.Array:
        """The network's nonlinearity: ReLU (DARTS) or SiLU when ``smooth``."""
        return nn.silu(x) if self.smooth else nn.relu(x)


# --------------------------------------------------------------------------
# depthwise convolution as shifted multiply-adds


def _out_size(n: int, k: int, stride: int, dilation: int, padding: int) -> int:
    return (n + 2 * padding - dilation * (k - 1) - 1) // stride + 1


def _taps(kernel: jax.Array) -> list[jax.Array]:
    """The ``kh * kw`` taps ``kernel[i, j]`` (each ``(C,)``, row-major), in one split.

    (Indexing tap by tap traces a slice and a squeeze per tap; this is one reshape
    and one split, which matters inside the scanned cells' autodiff.)"""
    kh, kw, c = kernel.shape
    return lax.split(kernel.reshape(kh * kw * c), (c,) * (kh * kw))


def _window(xp: jax.Array, i: int, j: int, shape, stride: int, dilation: int) -> jax.Array:
    """``xp[:, d*i + s*y, d*j + s*x, :]`` for the ``shape[1:3]`` output positions."""
    start = (0, i * dilation, j * dilation, 0)
    limit = (
        shape[0],
        start[1] + (shape[1] - 1) * stride + 1,
        start[2] + (shape[2] - 1) * stride + 1,
        shape[3],
    )
    return lax.slice(xp, start, limit, (1, stride, stride, 1))


def _shifted(xp: jax.Array, kernel: jax.Array, stride: int, dilation: int) -> jax.Array:
    """Valid depthwise correlation of a padded input.

    out[b, y, x, c] = sum_{i,j} xp[b, s*y + d*i, s*x + d*j, c] * kernel[i, j, c]

    Written in ``lax`` primitives (four per tap): the trace of a search step is
    mostly these taps, and ``jnp``'s broadcasting operators trace several more.
    """
    dtype = jnp.result_type(xp, kernel)
    xp, kernel = xp.astype(dtype), kernel.astype(dtype)
    b, hp, wp, c = xp.shape
    kh, kw, _ = kernel.shape
    shape = (b, _out_size(hp, kh, stride, dilation, 0), _out_size(wp, kw, stride, dilation, 0), c)
    out = None
    for t, k in enumerate(_taps(kernel)):
        term = lax.mul(
            _window(xp, t // kw, t % kw, shape, stride, dilation),
            lax.broadcast_in_dim(k, shape, (3,)),
        )
        out = term if out is None else lax.add(out, term)
    return out


def _pad_hw(x: jax.Array, lo: int, hi: int) -> jax.Array:
    zero = ((0, 0, 0),)
    return lax.pad(x, jnp.zeros((), x.dtype), zero + ((lo, hi, 0),) * 2 + zero)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _depthwise_vjp(x, kernel, stride, dilation, padding):
    return _shifted(_pad_hw(x, padding, padding), kernel, stride, dilation)


def _depthwise_fwd(x, kernel, stride, dilation, padding):
    # Save the padded input, not x: with x itself as a residual, reverse over
    # reverse inside lax.scan handed the residuals back misaligned (jax 0.10).
    xp = _pad_hw(x, padding, padding)
    return _shifted(xp, kernel, stride, dilation), (xp, kernel)


def _depthwise_bwd(stride, dilation, padding, res, g):
    xp, kernel = res
    hp, wp = xp.shape[1:3]
    h, w = hp - 2 * padding, wp - 2 * padding
    kh, kw, _ = kernel.shape
    # Input gradient: scatter g back through every tap = one stride-1
    # correlation of the zero-dilated, zero-padded g with the flipped kernel.
    gd = lax.pad(
        g, jnp.zeros((), g.dtype), ((0, 0, 0), (0, 0, stride - 1), (0, 0, stride - 1), (0, 0, 0))
    )
    lo_h, lo_w = dilation * (kh - 1), dilation * (kw - 1)
    gd = lax.pad(
        gd,
        jnp.zeros((), g.dtype),
        ((0, 0, 0), (lo_h, hp - gd.shape[1], 0), (lo_w, wp - gd.shape[2], 0), (0, 0, 0)),
    )
    gxp = _shifted(gd, kernel[::-1, ::-1], 1, dilation)
    gx = gxp[:, padding : padding + h, padding : padding + w]
    gk = _kernel_grad(xp.astype(g.dtype), g, kernel.shape, stride, dilation)
    return gx.astype(xp.dtype), gk.astype(kernel.dtype)


#: Bytes of input per batch chunk of the weight gradients summed over chunks (the
#: depthwise kernel's, :func:`_kernel_grad`, and the 1x1 conv's, :func:`_pointwise_bwd`):
#: small enough that a chunk's taps and transposes stay in a 2-core machine's cache.
KERNEL_GRAD_CHUNK_BYTES = 1 << 20


def _batch_chunk(batch: int, row_bytes: int) -> int:
    """The largest divisor of ``batch`` whose rows take at most
    :data:`KERNEL_GRAD_CHUNK_BYTES` (at least 1); the whole batch off the CPU, where
    the chunks' cache is not what bounds the sums and a loop would serialise them."""
    if jax.default_backend() != "cpu":
        return batch
    most = max(1, KERNEL_GRAD_CHUNK_BYTES // max(row_bytes, 1))
    return max(d for d in range(1, min(batch, most) + 1) if batch % d == 0)


def _sum_over_batch_chunks(f: Callable, a: jax.Array, b: jax.Array, zero: jax.Array) -> jax.Array:
    """``f(a, b)`` for a sum over the batch (axis 0) of ``a`` and ``b``, computed as the sum
    of ``f`` over batch chunks of :func:`_batch_chunk` rows of ``a`` (a ``lax.scan``
    whose carry starts at ``zero``), so that each chunk's intermediates stay in cache;
    one call of ``f`` on the whole batch when it fits in one chunk."""
    n = a.shape[0]
    chunk = _batch_chunk(n, math.prod(a.shape[1:]) * a.dtype.itemsize)
    if chunk == n:
        return f(a, b)
    split = lambda v: v.reshape(n // chunk, chunk, *v.shape[1:])  # noqa: E731
    total, _ = lax.scan(lambda s, ab: (lax.add(s, f(*ab)), None), zero, (split(a), split(b)))
    return total


def _kernel_grad(xp, g, kernel_shape, stride: int, dilation: int) -> jax.Array:
    """The depthwise kernel's gradient, ``gk[i, j, c] = sum_{b,y,x}
    xp[b, s*y + d*i, s*x + d*j, c] * g[b, y, x, c]``: ``kh * kw`` reductions over batch
    and space of ``xp`` ``(B, Hp, Wp, C)`` and ``g`` ``(B, Ho, Wo, C)``.

    Over the whole batch at once, each tap's window and product is an array the size
    of ``g`` that XLA writes out (a DARTS_V2 retraining cell's: 14 MB per tap); nine of
    them leave the cache, and the reductions then run at memory speed, ~5x slower than
    the same sums over batch chunks whose taps stay in cache (a ``lax.scan`` over
    chunks of :func:`_batch_chunk` rows, summed in the carry).  A batch that fits in one
    chunk is reduced as it is, without the loop.
    """
    kh, kw, _ = kernel_shape
    zero = np.zeros((), g.dtype)

    def taps(xc, gc):
        return lax.concatenate(
            [
                lax.reduce(
                    lax.mul(_window(xc, i, j, gc.shape, stride, dilation), gc),
                    zero,
                    lax.add,
                    (0, 1, 2),
                )
                for i in range(kh)
                for j in range(kw)
            ],
            0,
        )

    zeros = jnp.zeros((kh * kw * xp.shape[-1],), g.dtype)
    return _sum_over_batch_chunks(taps, xp, g, zeros).reshape(kernel_shape)


_depthwise_vjp.defvjp(_depthwise_fwd, _depthwise_bwd)


# --------------------------------------------------------------------------
# 3x3 max pooling as shifted maxima


def _max_taps(xp: jax.Array, shape, stride: int) -> list[jax.Array]:
    """The nine windows ``xp[:, s*y + i, s*x + j, :]`` of a 3x3 pool, row-major."""
    return [_window(xp, i, j, shape, stride, 1) for i in range(3) for j in range(3)]


def _max_pool_out(xp: jax.Array, stride: int) -> jax.Array:
    b, hp, wp, c = xp.shape
    shape = (b, _out_size(hp, 3, stride, 1, 0), _out_size(wp, 3, stride, 1, 0), c)
    return functools.reduce(lax.max, _max_taps(xp, shape, stride))


def _pad_neg_inf(x: jax.Array) -> jax.Array:
    zero = ((0, 0, 0),)
    return lax.pad(x, jnp.array(-jnp.inf, x.dtype), zero + ((1, 1, 0),) * 2 + zero)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _max_pool_vjp(x, stride):
    return _max_pool_out(_pad_neg_inf(x), stride)


def _max_pool_fwd(x, stride):
    xp = _pad_neg_inf(x)
    return _max_pool_out(xp, stride), xp


def _max_pool_bwd(stride, xp, g):
    """Each output's gradient goes to the first of its window's maxima in row-major
    order (PyTorch's and XLA's select-and-scatter rule), placed back by a padding per
    tap: ``gxp = sum_t pad_t(where(first_t, g, 0))``.

    The maxima are found again from the saved input, not read from the forward's
    output: under ``jax.checkpoint`` the input is recomputed and may differ from the
    forward's in the last bit, and a saved output would then match no window."""
    y = _max_pool_out(xp, stride)
    hp, wp = xp.shape[1:3]
    zero = jnp.zeros((), g.dtype)
    taken = None  # outputs whose maximum an earlier tap already took
    gxp = None
    for t, w in enumerate(_max_taps(xp, y.shape, stride)):
        i, j = divmod(t, 3)
        hit = lax.eq(w, y)
        first = hit if taken is None else lax.bitwise_and(hit, lax.bitwise_not(taken))
        taken = hit if taken is None else lax.bitwise_or(taken, hit)
        part = lax.pad(
            lax.select(first, g, jnp.zeros_like(g)),
            zero,
            (
                (0, 0, 0),
                (i, hp - i - (y.shape[1] - 1) * stride - 1, stride - 1),
                (j, wp - j - (y.shape[2] - 1) * stride - 1, stride - 1),
                (0, 0, 0),
            ),
        )
        gxp = part if gxp is None else lax.add(gxp, part)
    return (gxp[:, 1 : hp - 1, 1 : wp - 1],)


_max_pool_vjp.defvjp(_max_pool_fwd, _max_pool_bwd)


def max_pool_3x3(x: jax.Array, stride: int = 1, *, impl: str = "custom_vjp") -> jax.Array:
    """3x3 max pooling, padding 1 (padded with -inf), as ``torch.nn.MaxPool2d(3, stride,
    1)`` and ``nn.max_pool``.

    Args:
      x: ``(B, H, W, C)``.
      stride: 1 or 2.
      impl: ``"custom_vjp"`` (nine shifted maxima and a hand-written VJP that pads each
        tap's share of the gradient back: alone, on the CPU, five times faster than XLA's
        select-and-scatter; reverse mode only), else ``nn.max_pool`` (forward mode
        works).  The ``Pool`` op keeps ``nn.max_pool``: inside the search network's
        scanned, rematerialised edges the custom VJP made the whole step slower.

    Returns:
      ``(B, Ho, Wo, C)``, ``Ho = (H - 1) // stride + 1``.
    """
    if impl == "custom_vjp":
        return _max_pool_vjp(x, stride)
    return nn.max_pool(x, **_pool_window(stride))


# --------------------------------------------------------------------------
# 1x1 convolution with its weight gradient over batch chunks


def _channel_dot(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """``y[..., o] = sum_i x[..., i] kernel[i, o]``: a 1x1 convolution in NHWC
    (``nn.Dense``'s ``dot_general``, bit for bit)."""
    return lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())))


@jax.custom_vjp
def _pointwise_vjp(x, kernel):
    return _channel_dot(x, kernel)


def _pointwise_fwd(x, kernel):
    return _channel_dot(x, kernel), (x, kernel)


def _pointwise_bwd(res, g):
    """``dx = g kernel^T``; ``dkernel = sum_rows x^T g`` over the rows (batch and
    space) of ``x`` ``(B, ..., C_in)`` and ``g`` ``(B, ..., C_out)``.

    The rows are the major axis of both arrays, so every GEMM form of ``x^T g`` needs one
    operand transposed, and XLA's CPU dot writes that transpose out over the whole batch
    (a DARTS_V2 retraining cell's ``g``: 14 MB, about four times the dot's own time, read
    at a cache line per element).  Summed over batch chunks of at most
    :data:`KERNEL_GRAD_CHUNK_BYTES` of ``x`` (a ``lax.scan``), each chunk's transpose
    stays in cache.  A batch that fits in one chunk is one dot, without the loop.
    """
    x, kernel = res
    gx = lax.dot_general(g, kernel, (((g.ndim - 1,), (1,)), ((), ())))
    acc = jnp.promote_types(x.dtype, jnp.float32)  # bfloat16 sums in float32

    def xtg(xc, gc):  # (R, ..., C_in), (R, ..., C_out) -> (C_in, C_out), over the rows
        xc, gc = xc.reshape(-1, xc.shape[-1]), gc.reshape(-1, gc.shape[-1])
        return lax.dot_general(xc, gc, (((0,), (0,)), ((), ())), preferred_element_type=acc)

    gk = _sum_over_batch_chunks(xtg, x, g, jnp.zeros((x.shape[-1], g.shape[-1]), acc))
    return gx.astype(x.dtype), gk.astype(kernel.dtype)


_pointwise_vjp.defvjp(_pointwise_fwd, _pointwise_bwd)


def pointwise_conv(x: jax.Array, kernel: jax.Array, *, impl: str = "custom_vjp") -> jax.Array:
    """1x1 convolution over the channel axis, no bias.

    Args:
      x: ``(B, ..., C_in)``.
      kernel: ``(C_in, C_out)``.
      impl: ``"custom_vjp"`` (the weight gradient summed over batch chunks, reverse mode
        only), else plain autodiff (``"shifted"``, ``"lax"``: forward mode works); the
        value is the same dot either way.

    Returns:
      ``(B, ..., C_out)``.
    """
    if impl == "custom_vjp" and x.ndim > 1:
        return _pointwise_vjp(x, kernel)
    return _channel_dot(x, kernel)


def depthwise_conv(
    x: jax.Array,
    kernel: jax.Array,
    *,
    stride: int = 1,
    dilation: int = 1,
    padding: int = 0,
    impl: str = "custom_vjp",
) -> jax.Array:
    """Depthwise 2-D convolution (cross-correlation, as PyTorch), no bias.

    Args:
      x: ``(B, H, W, C)``.
      kernel: ``(kh, kw, C)``.
      stride, dilation, padding: as ``torch.nn.Conv2d`` (symmetric zero padding).
      impl: ``"custom_vjp"``, ``"shifted"`` or ``"lax"`` (see ``OpsConfig``).

    Returns:
      ``(B, Ho, Wo, C)`` with ``Ho = (H + 2p - d(kh-1) - 1) // s + 1``.
    """
    if impl == "custom_vjp":
        return _depthwise_vjp(x, kernel, stride, dilation, padding)
    if impl == "shifted":
        return _shifted(_pad_hw(x, padding, padding), kernel, stride, dilation)
    if impl == "lax":
        return lax.conv_general_dilated(
            x,
            kernel[:, :, None, :],
            (stride, stride),
            ((padding, padding), (padding, padding)),
            rhs_dilation=(dilation, dilation),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            feature_group_count=x.shape[-1],
        )
    raise ValueError(f"unknown depthwise implementation {impl!r}")


# --------------------------------------------------------------------------
# building blocks


class BatchNorm(nn.Module):
    """PyTorch's ``BatchNorm{1,2,3}d``, a drop-in for ``flax.linen.BatchNorm``.

    Training mode normalises with the batch mean and the *biased* batch variance
    (as both libraries do) and updates the running averages as PyTorch does::

        mean <- momentum * mean + (1 - momentum) * mean_B
        var  <- momentum * var  + (1 - momentum) * var_B * n / (n - 1)

    with ``n`` the number of elements reduced per feature (``N*H*W`` for NHWC).
    ``flax.linen.BatchNorm`` feeds the biased ``var_B`` into the running variance,
    which so ends up ``(n - 1) / n`` times PyTorch's (eval-mode outputs differ).
    Eval mode (``use_running_average``) normalises with the running averages.

    Everything else is ``nn.BatchNorm``'s, bit for bit: the variables (``"params"``:
    ``scale``, ``bias``; ``"batch_stats"``: ``mean``, ``var``, float32), the automatic
    name (``BatchNorm_<i>``), statistics in at least float32 from ``E[x]`` and ``E[x^2]``
    in one fused reduction, the output dtype. ``momentum`` is flax's convention, the
    decay of the running averages (PyTorch's ``momentum=m`` is ``1 - m`` here; the
    default 0.9 is PyTorch's 0.1). No ``axis_name``: under ``jit`` with a sharded batch
    (:mod:`jaxnas.parallel`) the reduction already spans the global batch.
    """

    use_running_average: bool | None = None
    axis: int = -1
    momentum: float = BN_MOMENTUM
    epsilon: float = BN_EPSILON
    dtype: jnp.dtype | None = None
    param_dtype: jnp.dtype = jnp.float32
    use_bias: bool = True
    use_scale: bool = True
    bias_init: Callable = nn.initializers.zeros
    scale_init: Callable = nn.initializers.ones

    @nn.compact
    def __call__(self, x: jax.Array, use_running_average: bool | None = None) -> jax.Array:
        use_running_average = nn.merge_param(
            "use_running_average", self.use_running_average, use_running_average
        )
        axis = self.axis % x.ndim
        reduce = tuple(i for i in range(x.ndim) if i != axis)
        features = (x.shape[axis],)
        shape = tuple(x.shape[axis] if i == axis else 1 for i in range(x.ndim))
        ra_mean = self.variable("batch_stats", "mean", jnp.zeros, features, jnp.float32)
        ra_var = self.variable("batch_stats", "var", jnp.ones, features, jnp.float32)
        if use_running_average:
            mean, var = ra_mean.value, ra_var.value
        else:
            stat_dtype = jnp.promote_types(
                x.dtype if self.dtype is None else self.dtype, jnp.float32
            )
            xs = x.astype(stat_dtype)
            mean = jnp.mean(xs, reduce)
            # E[x^2] - E[x]^2 can round below 0
            var = jnp.maximum(0.0, jnp.mean(lax.square(xs), reduce) - lax.square(mean))
            if not self.is_initializing():
                n = math.prod(x.shape[i] for i in reduce)
                unbiased = var * (n / max(n - 1, 1))  # PyTorch: var_B * n / (n - 1)
                m = self.momentum  # in the statistics' dtype (float64 in x64 mode)
                ra_mean.value = m * ra_mean.value.astype(stat_dtype) + (1 - m) * mean
                ra_var.value = m * ra_var.value.astype(stat_dtype) + (1 - m) * unbiased
        y = x - mean.reshape(shape)
        mul = lax.rsqrt(var + self.epsilon).reshape(shape)
        args = [x]
        if self.use_scale:
            scale = self.param("scale", self.scale_init, features, self.param_dtype)
            mul = mul * scale.reshape(shape)
            args.append(scale)
        y = y * mul
        if self.use_bias:
            bias = self.param("bias", self.bias_init, features, self.param_dtype)
            y = y + bias.reshape(shape)
            args.append(bias)
        return y.astype(canonicalize_dtype(*args, dtype=self.dtype))


def batch_norm(train: bool, affine: bool, name: str | None = None) -> BatchNorm:
    """PyTorch's BatchNorm (:class:`BatchNorm`, its defaults); batch statistics when
    ``train``."""
    return BatchNorm(
        use_running_average=not train,
        momentum=BN_MOMENTUM,
        epsilon=BN_EPSILON,
        use_scale=affine,
        use_bias=affine,
        name=name,
    )


class Pointwise(nn.Module):
    """1x1 convolution in NHWC: ``nn.Dense(features, use_bias=False)``'s variable
    (``kernel`` ``(C_in, C_out)``, LeCun normal) and value, computed by
    :func:`pointwise_conv` (``cfg.depthwise`` picks its VJP as for depthwise convs)."""

    features: int
    cfg: OpsConfig = OpsConfig()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        init = nn.initializers.lecun_normal()
        kernel = self.param("kernel", init, (x.shape[-1], self.features), jnp.float32)
        dtype = canonicalize_dtype(x, kernel, dtype=self.cfg.dtype)  # as nn.Dense promotes
        return pointwise_conv(x.astype(dtype), kernel.astype(dtype), impl=self.cfg.depthwise)


def _dense(features: int, cfg: OpsConfig, name: str | None = None) -> Pointwise:
    # A 1x1 convolution in NHWC is a dense layer over the channel axis.
    return Pointwise(features, cfg, name=name)


class DepthwiseConv(nn.Module):
    """Depthwise kxk convolution with a ``(k, k, C)`` kernel (PyTorch init)."""

    kernel_size: int
    stride: int = 1
    dilation: int = 1
    padding: int = 0
    cfg: OpsConfig = OpsConfig()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = self.kernel_size
        # LeCun normal over the k*k fan-in, like flax's nn.Conv default.
        init = nn.initializers.lecun_normal(in_axis=(0, 1), out_axis=2)
        kernel = self.param("kernel", init, (k, k, x.shape[-1]), jnp.float32)
        if self.cfg.dtype is not None:
            x, kernel = x.astype(self.cfg.dtype), kernel.astype(self.cfg.dtype)
        return depthwise_conv(
            x,
            kernel,
            stride=self.stride,
            dilation=self.dilation,
            padding=self.padding,
            impl=self.cfg.depthwise,
        )


class ReLUConvBN(nn.Module):
    """ReLU, kxk convolution, BN (``operations.ReLUConvBN``); 1x1 in cell preprocessing."""

    features: int
    kernel_size: int = 1
    stride: int = 1
    padding: int = 0
    affine: bool = True
    cfg: OpsConfig = OpsConfig()

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        x = self.cfg.act(x)
        if self.kernel_size == 1 and self.stride == 1:
            x = _dense(self.features, self.cfg, name="conv")(x)
        else:
            p = self.padding
            x = nn.Conv(
                self.features,
                (self.kernel_size, self.kernel_size),
                strides=self.stride,
                padding=((p, p), (p, p)),
                use_bias=False,
                dtype=self.cfg.dtype,
                name="conv",
            )(x)
        return batch_norm(train, self.affine, name="bn")(x)


class FactorizedReduce(nn.Module):
    """Halve resolution: ReLU, two stride-2 1x1 convs (the second offset by one
    pixel), channel concat, BN (``operations.FactorizedReduce``)."""

    features: int
    affine: bool = True
    cfg: OpsConfig = OpsConfig()

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        if self.features % 2:
            raise ValueError(f"FactorizedReduce needs an even channel count, got {self.features}")
        if x.shape[1] % 2 or x.shape[2] % 2:
            raise ValueError(
                f"FactorizedReduce needs even spatial size, got {x.shape[1]}x{x.shape[2]}; "
                "pad the input (data.pad_to) so every reduction sees an even size"
            )
        x = self.cfg.act(x)
        a = _dense(self.features // 2, self.cfg, name="conv_1")(x[:, ::2, ::2])
        b = _dense(self.features // 2, self.cfg, name="conv_2")(x[:, 1::2, 1::2])
        return batch_norm(train, self.affine, name="bn")(jnp.concatenate([a, b], axis=-1))


class SepConv(nn.Module):
    """(ReLU, depthwise kxk, pointwise, BN) twice; the first pass is strided.

    With ``bn_first`` (a class attribute: :class:`BNSepConv`) the BN leads each pass.
    """

    kernel_size: int
    stride: int = 1
    affine: bool = True
    cfg: OpsConfig = OpsConfig()
    bn_first = False

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        c, k = x.shape[-1], self.kernel_size
        for i, stride in ((1, self.stride), (2, 1)):
            if self.bn_first:
                x = batch_norm(train, self.affine, name=f"bn{i}")(x)
            x = self.cfg.act(x)
            x = DepthwiseConv(k, stride, 1, k // 2, self.cfg, name=f"dw_conv{i}")(x)
            x = _dense(c, self.cfg, name=f"pw_conv{i}")(x)
            if not self.bn_first:
                x = batch_norm(train, self.affine, name=f"bn{i}")(x)
        return x


class DilConv(nn.Module):
    """ReLU, depthwise kxk with dilation 2, pointwise, BN."""

    kernel_size: int
    stride: int = 1
    dilation: int = 2
    affine: bool = True
    cfg: OpsConfig = OpsConfig()

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        c, k, d = x.shape[-1], self.kernel_size, self.dilation
        x = self.cfg.act(x)
        x = DepthwiseConv(k, self.stride, d, d * (k // 2), self.cfg, name="dw_conv")(x)
        x = _dense(c, self.cfg, name="pw_conv")(x)
        return batch_norm(train, self.affine, name="bn")(x)


def _pool_window(stride: int):
    return dict(window_shape=(3, 3), strides=(stride, stride), padding=((1, 1), (1, 1)))


class Pool(nn.Module):
    """3x3 max or average pooling, padding 1; BN after it in the search network.

    Average pooling excludes the padding (``count_include_pad=False``).
    """

    kind: str  # "max" | "avg"
    stride: int = 1
    bn_after: bool = False
    cfg: OpsConfig = OpsConfig()

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        if self.kind == "max" and not self.cfg.smooth:
            # XLA's reduce-window, not max_pool_3x3's custom VJP: in the scanned,
            # rematerialised search cells that VJP made the paper-size step slower
            # (18 -> 23 s per step on 2 cores; docs/benchmarks.md)
            y = nn.max_pool(x, **_pool_window(self.stride))
        else:
            # flax divides by counts of the default float type: keep x's dtype
            y = nn.avg_pool(x, **_pool_window(self.stride), count_include_pad=False).astype(x.dtype)
        if self.bn_after:
            y = batch_norm(train, False, name="bn")(y)
        return y


class Identity(nn.Module):
    """``skip_connect`` at stride 1."""

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        del train
        return x


class Zero(nn.Module):
    """``none``: zeros at the output resolution."""

    stride: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        del train
        return jnp.zeros_like(x[:, :: self.stride, :: self.stride])


# --------------------------------------------------------------------------
# the registry

#: ``OPS[name](C, stride, affine, search, cfg) -> nn.Module`` whose call is
#: ``op(x, train)``.  ``search=True`` adds the BN after pooling ops that DARTS'
#: ``MixedOp`` adds.  Other search spaces register their variants here.
OpFactory = Callable[[int, int, bool, bool, OpsConfig], nn.Module]
OPS: dict[str, OpFactory] = {
    "none": lambda C, s, affine, search, cfg: Zero(s),
    "max_pool_3x3": lambda C, s, affine, search, cfg: Pool("max", s, search, cfg),
    "avg_pool_3x3": lambda C, s, affine, search, cfg: Pool("avg", s, search, cfg),
    "skip_connect": lambda C, s, affine, search, cfg: (
        Identity() if s == 1 else FactorizedReduce(C, affine, cfg)
    ),
    "sep_conv_3x3": lambda C, s, affine, search, cfg: SepConv(3, s, affine, cfg),
    "sep_conv_5x5": lambda C, s, affine, search, cfg: SepConv(5, s, affine, cfg),
    "sep_conv_7x7": lambda C, s, affine, search, cfg: SepConv(7, s, affine, cfg),
    "dil_conv_3x3": lambda C, s, affine, search, cfg: DilConv(3, s, 2, affine, cfg),
    "dil_conv_5x5": lambda C, s, affine, search, cfg: DilConv(5, s, 2, affine, cfg),
    # plain ReLU-conv-BN (DARTS' evaluation ops; PR-DARTS' Fig. 2 "convolution (3x3)")
    "conv_3x3": lambda C, s, affine, search, cfg: ReLUConvBN(C, 3, s, 1, affine, cfg),
}

#: Named candidate-op lists; search spaces of later methods add theirs.
PRIMITIVE_SETS: dict[str, tuple[str, ...]] = {
    "darts": DARTS_PRIMITIVES,
    # DARTS without the zero op (SparseNAS, BayesNAS keep their own zero handling).
    "darts_no_zero": DARTS_PRIMITIVES[1:],
}


def make_op(
    name: str, channels: int, stride: int, *, affine: bool, search: bool, cfg: OpsConfig
) -> nn.Module:
    """Instantiate the registered op ``name``; unknown names are a one-line error."""
    try:
        factory = OPS[name]
    except KeyError:
        raise ValueError(f"unknown op {name!r}; known ops: {', '.join(sorted(OPS))}") from None
    return factory(channels, stride, affine, search, cfg)


def resolve_primitives(spec: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """A named op list (``"darts"``), an explicit sequence of op names, or the names as
    one comma-separated string (``"none,skip_connect,sep_conv_3x3"``: what a config's
    string key can hold), validated."""
    if isinstance(spec, str) and "," in spec:
        spec = tuple(p.strip() for p in spec.split(",") if p.strip())
    prims = PRIMITIVE_SETS.get(spec) if isinstance(spec, str) else tuple(spec)
    if prims is None:
        raise ValueError(f"unknown primitive set {spec!r}; known: {', '.join(PRIMITIVE_SETS)}")
    for p in prims:
        if p not in OPS:
            raise ValueError(f"unknown op {p!r}; known ops: {', '.join(sorted(OPS))}")
    return prims


# --------------------------------------------------------------------------
# BN-ReLU-Conv ops (BayesNAS, Zhou et al., ICML 2019, App. D.1)
#
# "Convolutions are applied in the order of BN-ReLU-Conv and the depthwise
# separable convolution is always applied twice."  Separate names, so that a
# genotype says which ordering it was searched with and the discrete network
# builds the same op (``affine=True`` there, as every registered op).  The pools
# and ``skip_connect`` are DARTS' (no convolution to reorder).  Two variants
# follow the authors' public code instead of the paper's text:
#
# ==================  =========================================================
# bn_sep_conv_kxk     (BN, ReLU, depthwise kxk, pointwise 1x1) twice; the first
#                     depthwise conv is strided (paper and code agree)
# bn_dil_conv_kxk     BN, ReLU, depthwise kxk with dilation 2, pointwise 1x1
#                     (the paper's "dilated conv", DARTS' op reordered)
# bn_full_dil_conv_   BN, ReLU, *full* kxk conv with dilation 2, 1x1 conv (the
#   kxk               authors' code)
# bn_skip_connect     identity; strided: BN, 1x1 conv with stride 2 (the
#                     authors' code; DARTS uses FactorizedReduce)
# ==================  =========================================================


class BNSepConv(SepConv):
    """(BN, ReLU, depthwise kxk, pointwise) twice; the first depthwise conv is strided."""

    bn_first = True


class BNDilConv(nn.Module):
    """BN, ReLU, dilated kxk conv (depthwise, or ``full``), then a 1x1 conv; padding
    ``d (k // 2)`` keeps the size."""

    kernel_size: int
    stride: int = 1
    dilation: int = 2
    full: bool = False
    affine: bool = True
    cfg: OpsConfig = OpsConfig()

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        c, k, d = x.shape[-1], self.kernel_size, self.dilation
        p = d * (k // 2)
        x = self.cfg.act(batch_norm(train, self.affine, name="bn")(x))
        if self.full:
            x = nn.Conv(
                c,
                (k, k),
                strides=self.stride,
                padding=((p, p), (p, p)),
                kernel_dilation=d,
                use_bias=False,
                dtype=self.cfg.dtype,
                name="conv",
            )(x)
        else:
            x = DepthwiseConv(k, self.stride, d, p, self.cfg, name="dw_conv")(x)
        return _dense(c, self.cfg, name="pw_conv")(x)


class BNConvReduce(nn.Module):
    """Strided ``bn_skip_connect``: BN, then a 1x1 conv with stride 2 (no ReLU)."""

    affine: bool = True
    cfg: OpsConfig = OpsConfig()

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        x = batch_norm(train, self.affine, name="bn")(x)
        return _dense(x.shape[-1], self.cfg, name="conv")(x[:, ::2, ::2])


OPS.update(
    {
        "bn_sep_conv_3x3": lambda C, s, affine, search, cfg: BNSepConv(3, s, affine, cfg),
        "bn_sep_conv_5x5": lambda C, s, affine, search, cfg: BNSepConv(5, s, affine, cfg),
        "bn_dil_conv_3x3": lambda C, s, affine, search, cfg: BNDilConv(3, s, 2, False, affine, cfg),
        "bn_dil_conv_5x5": lambda C, s, affine, search, cfg: BNDilConv(5, s, 2, False, affine, cfg),
        "bn_full_dil_conv_3x3": lambda C, s, affine, search, cfg: BNDilConv(
            3, s, 2, True, affine, cfg
        ),
        "bn_full_dil_conv_5x5": lambda C, s, affine, search, cfg: BNDilConv(
            5, s, 2, True, affine, cfg
        ),
        "bn_skip_connect": lambda C, s, affine, search, cfg: (
            Identity() if s == 1 else BNConvReduce(affine, cfg)
        ),
    }
)

PRIMITIVE_SETS.update(
    {
        # BayesNAS: column 0 ("none") is the edge's zero-op gate, then the 7 ops of
        # App. D.1 in DARTS' order with BN-ReLU-Conv convolutions (the paper) ...
        "bayesnas": (
            "none",
            "max_pool_3x3",
            "avg_pool_3x3",
            "skip_connect",
            "bn_sep_conv_3x3",
            "bn_sep_conv_5x5",
            "bn_dil_conv_3x3",
            "bn_dil_conv_5x5",
        ),
        # ... or with the authors' code's dilated convs and strided skip.
        "bayesnas_code": (
            "none",
            "max_pool_3x3",
            "avg_pool_3x3",
            "bn_skip_connect",
            "bn_sep_conv_3x3",
            "bn_sep_conv_5x5",
            "bn_full_dil_conv_3x3",
            "bn_full_dil_conv_5x5",
        ),
    }
)
