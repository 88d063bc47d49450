"""Transformer pieces with SiDT dimension scores, shared by Swin-T and ViT.

SiDT (F. Xue, PhD thesis, UC Irvine 2022, Sec. 4.3.2; seed text L1268-1334) scores the
*embedding dimensions* of the attention heads and of the MLP hidden layer:

* **Attention** (thesis L1286, L1298-1304, L1310-1316): one diagonal matrix
  ``A = diag(alpha)``, ``alpha`` of length ``d/h`` (the head dimension), shared by the
  query, key and value, by all ``h`` heads and by all windows of a block::

      Q~_j = Q_j A,   K~_j = K_j A,   V~_j = V_j A,   H~_j = SA(Q~_j, K~_j, V~_j)
      MSA = [H~_1, ..., H~_h] W_O

  (the thesis numbers none of these equations).  ``alpha`` thus enters the logits
  quadratically (``Q_j A^2 K_j^T``) and the output linearly (through ``V``).  Here
  ``Q_j = X W_{Q,j} + b_{Q,j}`` (Swin's and ViT's qkv have a bias), and the score
  multiplies the biased projection, so it folds into the qkv kernel *and* bias.

* **MLP** (thesis L1327): ``sigma(X W_1 A) W_2`` with ``A`` of size ``d_m``: the score
  sits right after the first linear layer (after its bias), **before** the activation.
  The code the thesis cites for SiDT (``Cydia2018/ViT-cifar10-pruning``) scores after
  GELU instead; both prune exactly (``GELU(0) = 0``), their gradients differ; we follow
  the thesis text.

**Layout.**  The qkv kernel is stored as ``(d, 3, h, d_h)`` (bias ``(3, h, d_h)``) and
the output projection as ``(h, d_h, d)``, so one head dimension ``i`` of every head is
one index along one axis: pruning keeps ``d_h' <= d_h`` dimensions per head
(:func:`attention_group`), the heads themselves stay.  This is PyTorch's
``qkv(x).reshape(B, N, 3, h, d_h)`` order, so official weights map by a reshape.

**Attention scale.**  The logits are scaled by ``d_h^{-1/2}`` of the *unpruned* head
dimension (``scale_dim``), also in a pruned network: then a network whose pruned
scores are 0 computes exactly what its sliced twin computes (the zeroed dimensions add
nothing to ``Q A^2 K^T``).  Rescaling to ``(rho d_h)^{-1/2}`` after pruning would
change every logit by ``rho^{-1/2}`` (digest Sec. 8.18); the thesis writes
``sqrt(d)`` even for heads (L1278), which is loose notation.

Pruned sizes (thesis Table 4.3, L1335): with ``rho d_h`` of ``d_h`` head dimensions
kept, the qkv kernel (and bias) and the output kernel shrink by exactly ``rho``, so do
the ``2 n M^2 d`` multiply-adds of ``Q K^T`` and ``a V``; with ``rho d_m`` hidden units
kept, ``W_1`` (and ``b_1``) and ``W_2`` shrink by ``rho``.  The output bias, the
relative-position bias and the LayerNorms are not pruned.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxnas.models.prunable import ChannelGroup, Slice, normalize_keep

__all__ = [
    "LINEAR_INIT",
    "HeadsIn",
    "HeadsOut",
    "PreLNBlock",
    "ScoredAttention",
    "ScoredMLP",
    "WidthTransformer",
    "attend",
    "attention_group",
    "drop_path",
    "mlp_group",
    "patch_embed",
]

#: timm / Swin / ViT init of every linear layer: truncated normal, std 0.02 (bias 0).
LINEAR_INIT = nn.initializers.truncated_normal(0.02)


def patch_embed(features: int, patch: int, dtype: Any, name: str = "patch_embed") -> nn.Conv:
    """timm's ``PatchEmbed``: a ``patch x patch`` conv of stride ``patch`` (no padding) to
    ``features`` channels, ``(B, H, W, C) -> (B, H / patch, W / patch, features)``,
    PyTorch's default conv init (uniform, variance ``1 / (3 fan_in)``)."""
    return nn.Conv(
        features,
        (patch, patch),
        strides=(patch, patch),
        padding="VALID",
        kernel_init=nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform"),
        dtype=dtype,
        name=name,
    )


def drop_path(x: jax.Array, rate: float, rng: jax.Array | None) -> jax.Array:
    """Stochastic depth: zero the residual branch of a whole sample with probability
    ``rate`` and scale the survivors by ``1 / (1 - rate)`` (timm's ``drop_path``).
    ``rng=None`` or ``rate=0``: the identity (inference)."""
    if rng is None or rate == 0.0:
        return x
    keep = jax.random.bernoulli(rng, 1.0 - rate, (x.shape[0],) + (1,) * (x.ndim - 1))
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))


class HeadsIn(nn.Module):
    """The qkv projection ``(..., d) -> (..., 3, h, d_h)``, kernel ``(d, 3, h, d_h)``."""

    heads: int
    head_dim: int
    use_bias: bool = True
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        shape = (x.shape[-1], 3, self.heads, self.head_dim)
        kernel = self.param("kernel", LINEAR_INIT, shape)
        dt = self.dtype or x.dtype
        y = jnp.einsum("...d,dthe->...the", x.astype(dt), kernel.astype(dt))
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, shape[1:]).astype(dt)
        return y


class HeadsOut(nn.Module):
    """The output projection ``W_O``: ``(..., h, d_h) -> (..., d)``, kernel ``(h, d_h, d)``."""

    features: int
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", LINEAR_INIT, (*x.shape[-2:], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        dt = self.dtype or x.dtype
        return jnp.einsum("...he,hed->...d", x.astype(dt), kernel.astype(dt)) + bias.astype(dt)


def attend(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    scale: float,
    bias: jax.Array | None = None,
    mask: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """``softmax(scale q k^T + bias + mask) v`` per head (thesis L1278: ``SA(Q, K, V)``).

    Args:
      q, k, v: ``(B, N, h, d_h)``.
      scale: the logit scale (``d_h^{-1/2}`` of the unpruned head dimension).
      bias: ``(h, N, N)`` added to every sample's logits (Swin's relative position bias).
      mask: ``(nW, N, N)`` for ``B = B' nW`` windows (sample-major, window-minor, as
        Swin's window partition orders them): window ``w`` gets ``mask[w]``.

    Returns:
      ``(out (B, N, h, d_h), weights (B, h, N, N))``.
    """
    logits = jnp.einsum("bnhe,bmhe->bhnm", q * scale, k)
    if bias is not None:
        logits = logits + bias[None].astype(logits.dtype)
    if mask is not None:
        nw = mask.shape[0]
        logits = logits.reshape(-1, nw, *logits.shape[1:]) + mask[None, :, None]
        logits = logits.reshape(-1, *logits.shape[2:])
    # the softmax in at least float32 (bf16 logits would round the normalisation)
    weights = jax.nn.softmax(logits.astype(jnp.promote_types(logits.dtype, jnp.float32)), axis=-1)
    weights = weights.astype(v.dtype)
    return jnp.einsum("bhnm,bmhe->bnhe", weights, v), weights


class ScoredAttention(nn.Module):
    """Multi-head self-attention with a shared head-dimension score (module doc).

    Attributes:
      heads: ``h``.
      head_dim: ``d_h`` of this (possibly pruned) module.
      scale_dim: the unpruned head dimension; the logit scale is ``scale_dim^{-1/2}``.
      dtype: computation dtype.

    Submodules: ``qkv`` (:class:`HeadsIn`, with bias) and ``proj`` (:class:`HeadsOut`).
    """

    heads: int
    head_dim: int
    scale_dim: int
    dtype: Any = None

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        alpha: jax.Array | None,
        bias: jax.Array | None = None,
        mask: jax.Array | None = None,
        return_weights: bool = False,
    ) -> Any:
        """``x``: ``(B, N, d)``; ``alpha``: ``(d_h,)`` or ``None`` -> ``(B, N, d)``."""
        qkv = HeadsIn(self.heads, self.head_dim, dtype=self.dtype, name="qkv")(x)
        if alpha is not None:  # Q~_j = Q_j A, K~_j = K_j A, V~_j = V_j A (L1298-1304)
            qkv = qkv * alpha.astype(qkv.dtype)
        q, k, v = qkv[..., 0, :, :], qkv[..., 1, :, :], qkv[..., 2, :, :]
        out, weights = attend(q, k, v, self.scale_dim**-0.5, bias, mask)
        y = HeadsOut(x.shape[-1], dtype=self.dtype, name="proj")(out)
        return (y, weights) if return_weights else y


class ScoredMLP(nn.Module):
    """``GELU((X W_1 + b_1) A) W_2 + b_2`` (thesis L1322-1327), ``A = diag(alpha)``.

    Attributes:
      hidden: ``d_m`` of this (possibly pruned) module.
      dtype: computation dtype.

    GELU is the exact (erf) one, PyTorch's ``nn.GELU()`` default.
    """

    hidden: int
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, alpha: jax.Array | None) -> jax.Array:
        """``x``: ``(..., d)``; ``alpha``: ``(d_m,)`` or ``None`` -> ``(..., d)``."""
        h = nn.Dense(self.hidden, kernel_init=LINEAR_INIT, dtype=self.dtype, name="fc1")(x)
        if alpha is not None:  # the score right after W_1, before the activation (L1327)
            h = h * alpha.astype(h.dtype)
        h = nn.gelu(h, approximate=False)
        return nn.Dense(x.shape[-1], kernel_init=LINEAR_INIT, dtype=self.dtype, name="fc2")(h)


class PreLNBlock(nn.Module):
    """A pre-LN transformer block with scored attention and MLP (ViT's; Swin's with its
    windows in :meth:`attention`), ``x`` of any token layout ``(B, ..., d)``::

        x = x + DropPath(attention(LN_1(x), alpha_attn))
        x = x + DropPath(MLP(LN_2(x), alpha_mlp))

    The two drop-path draws split one ``"dropout"`` key (training with ``drop_path > 0``
    only); ``ln_eps`` (a class attribute) is the LayerNorms' epsilon.
    """

    heads: int
    attn_dim: int
    head_dim: int
    mlp_dim: int
    drop_path: float = 0.0
    dtype: Any = None
    ln_eps = 1e-6

    def attention(self, y: jax.Array, alpha: Any) -> jax.Array:
        """The attention branch on the normalised tokens ``y`` (same shape out)."""
        attn = ScoredAttention(self.heads, self.attn_dim, self.head_dim, self.dtype, name="attn")
        return attn(y, alpha)

    @nn.compact
    def __call__(
        self, x: jax.Array, alpha_attn: Any, alpha_mlp: Any, train: bool = False
    ) -> jax.Array:
        """``x``: ``(B, ..., d)`` -> same shape."""
        rng = self.make_rng("dropout") if train and self.drop_path > 0 else None
        r1, r2 = jax.random.split(rng) if rng is not None else (None, None)
        y = nn.LayerNorm(self.ln_eps, dtype=self.dtype, name="norm1")(x)
        x = x + drop_path(self.attention(y, alpha_attn), self.drop_path, r1)
        y = nn.LayerNorm(self.ln_eps, dtype=self.dtype, name="norm2")(x)
        y = ScoredMLP(self.mlp_dim, self.dtype, name="mlp")(y, alpha_mlp)
        return x + drop_path(y, self.drop_path, r2)


def attention_group(name: str, path: Sequence[str], head_dim: int) -> ChannelGroup:
    """The head-dimension group of a :class:`ScoredAttention` at ``path``.

    Produces: the qkv kernel axis 3 and bias axis 2 (the score folds into both: it
    multiplies the biased projection, before the softmax); consumes: the output
    kernel's head-dimension axis 1.
    """
    p = tuple(path)
    qkv = (Slice("params", (*p, "qkv", "kernel"), 3), Slice("params", (*p, "qkv", "bias"), 2))
    return ChannelGroup(
        name, head_dim, qkv, (Slice("params", (*p, "proj", "kernel"), 1),), fold=qkv
    )


def mlp_group(name: str, path: Sequence[str], hidden: int) -> ChannelGroup:
    """The hidden-unit group of a :class:`ScoredMLP` at ``path``.

    Produces: ``fc1``'s kernel axis 1 and bias (the score folds into both: it sits
    before the activation); consumes: ``fc2``'s kernel axis 0.
    """
    p = tuple(path)
    fc1 = (Slice("params", (*p, "fc1", "kernel"), 1), Slice("params", (*p, "fc1", "bias"), 0))
    return ChannelGroup(name, hidden, fc1, (Slice("params", (*p, "fc2", "kernel"), 0),), fold=fc1)


class WidthTransformer(nn.Module):
    """What Swin-T and ViT share as width-searchable networks: a sequence of blocks, each
    with one :func:`attention_group` ``{block}.attn`` (head dimensions) and one
    :func:`mlp_group` ``{block}.mlp`` (hidden units), in block order.

    A subclass gives :meth:`block_widths` and ``mac_parts(input_shape)`` (closed-form
    multiply-adds ``[(module, part, MACs)]``); these attributes follow its own:

    Attributes:
      drop_path_rate: stochastic depth, linear from 0 to this over the blocks (training
        only; needs a ``"dropout"`` rng).
      attn_dims: kept head dimensions per block (``None``: all).
      mlp_dims: kept MLP units per block (``None``: all).
      scored: create the ``"arch"`` scores.
      dtype: computation dtype.

    Call: ``model.apply(variables, x, train=False)``, ``x`` ``(B, H, W, C_in)``; logits.
    """

    drop_path_rate: float = 0.0
    attn_dims: tuple[int, ...] | None = None
    mlp_dims: tuple[int, ...] | None = None
    scored: bool = True
    dtype: Any = None

    def block_widths(self) -> list[tuple[str, int, int]]:
        """``[(block name, head dimensions, MLP units)]`` of the current network."""
        raise NotImplementedError

    def channel_groups(self) -> tuple[ChannelGroup, ...]:
        """``{block}.attn`` and ``{block}.mlp`` per block, in block order."""
        groups = []
        for name, attn, mlp in self.block_widths():
            groups.append(attention_group(f"{name}.attn", (name, "attn"), attn))
            groups.append(mlp_group(f"{name}.mlp", (name, "mlp"), mlp))
        return tuple(groups)

    def kept_dims(self, keep: Mapping[str, Sequence[int]]) -> dict[str, tuple[int, ...]]:
        """``{"attn_dims": ..., "mlp_dims": ...}`` of the network keeping the dimensions
        ``keep[group]`` (indices into the current group; a group left out keeps all)."""
        keep = normalize_keep(self.channel_groups(), keep)
        names = [name for name, _, _ in self.block_widths()]
        return {
            "attn_dims": tuple(len(keep[f"{n}.attn"]) for n in names),
            "mlp_dims": tuple(len(keep[f"{n}.mlp"]) for n in names),
        }

    def macs(self, input_shape: Sequence[int]) -> int:
        """Total of ``mac_parts(input_shape)``."""
        return sum(m for _, _, m in self.mac_parts(input_shape))
