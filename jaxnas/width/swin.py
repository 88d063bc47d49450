"""Swin Transformer (Liu et al. 2021) with SiDT dimension scores (thesis Sec. 4.3).

Layout of the official implementation (``microsoft/Swin-Transformer``,
``models/swin_transformer.py``), images NHWC::

    patch embed   conv p x p, stride p (3 -> C, with bias), LayerNorm
    stage s       depths[s] blocks at C_s = C 2^s channels, heads[s] heads:
      block       x = x + DropPath(W-MSA(LN(x)))       (shifted windows on odd blocks)
                  x = x + DropPath(MLP(LN(x)))           (hidden 4 C_s, exact GELU)
      merging     (not after the last stage) 2x2 neighbours concatenated (4 C_s),
                  LayerNorm, Linear 4 C_s -> 2 C_s without bias
    head          LayerNorm, average pool over tokens, Linear C_3 -> classes

W-MSA is multi-head attention inside ``M x M`` windows with a learned relative
position bias (a ``((2M-1)^2, heads)`` table read through a fixed index,
:func:`relative_position_index`); odd blocks roll the map by ``M // 2`` first and mask
the attention between tokens that were not neighbours before the roll
(:func:`shifted_window_mask`, ``-100`` on the logits as the official code).  As in the
official code, a stage whose resolution is at most ``M`` uses one window of its whole
map and no shift.  LayerNorm eps is PyTorch's 1e-5; linear layers and the bias table
start from a truncated normal (std 0.02), as the official ``_init_weights``.

**Swin-T** (:func:`swin_t`): ``C = 96``, depths 2-2-6-2, heads 3-6-12-24, ``M = 7``,
patch 4, 224x224: **28,288,354 parameters at 1000 classes, 27,596,254 at 100 and
27,534,734 at 20** (thesis Tables 4.4 / 4.5: 27.60 M / 27.53 M), and 4.49 G
multiply-adds (:meth:`SwinTransformer.macs`, the official ``flops()`` convention; the
thesis: 4.49 G "FLOPS").

**SiDT scores** (:mod:`jaxnas.width.attention`): per block ``stage{s}_{b}``, the group
``stage{s}_{b}.attn`` scores the ``d_h = C_s / heads`` head dimensions (shared by Q,
K, V, all heads and all windows; thesis L1310-1316) and ``stage{s}_{b}.mlp`` the
``4 C_s`` MLP hidden units (after ``fc1``, before GELU; L1327).  ``attn_dims`` /
``mlp_dims`` give each block's kept widths; :meth:`SwinTransformer.pruned` fills them.
The attention scale stays ``(C_s / heads)^{-1/2}`` after pruning (see the attention
module: masked == sliced).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxnas.models.prunable import score_variables
from jaxnas.width.attention import (
    LINEAR_INIT,
    PreLNBlock,
    ScoredAttention,
    WidthTransformer,
    patch_embed,
)

__all__ = [
    "SwinBlock",
    "SwinTransformer",
    "relative_position_index",
    "shifted_window_mask",
    "swin_t",
    "window_partition",
    "window_reverse",
]

LN_EPS = 1e-5  # torch.nn.LayerNorm
MASK_VALUE = -100.0  # the official code's logit for pairs from different regions


def relative_position_index(window: int) -> np.ndarray:
    """``(M^2, M^2)`` index into the ``((2M-1)^2, heads)`` bias table (official code).

    Token ``i`` at ``(y_i, x_i)`` (row-major in the window) and ``j`` get entry
    ``(y_i - y_j + M - 1) (2M - 1) + (x_i - x_j + M - 1)``.
    """
    ys, xs = np.meshgrid(np.arange(window), np.arange(window), indexing="ij")
    coords = np.stack([ys.reshape(-1), xs.reshape(-1)])  # (2, N)
    rel = coords[:, :, None] - coords[:, None, :] + (window - 1)  # (2, N, N)
    return (rel[0] * (2 * window - 1) + rel[1]).astype(np.int32)


def window_partition(x: jax.Array, window: int) -> jax.Array:
    """``(B, H, W, C) -> (B nW, M^2, C)``, windows row-major within each sample."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // window, window, w // window, window, c)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(-1, window * window, c)


def window_reverse(x: jax.Array, window: int, h: int, w: int) -> jax.Array:
    """Inverse of :func:`window_partition`: ``(B nW, M^2, C) -> (B, H, W, C)``."""
    c = x.shape[-1]
    x = x.reshape(-1, h // window, w // window, window, window, c)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(-1, h, w, c)


def shifted_window_mask(h: int, w: int, window: int, shift: int) -> np.ndarray:
    """``(nW, M^2, M^2)`` additive mask of the shifted windows (official ``attn_mask``).

    The rolled map is cut into 3 x 3 regions (``[0, H-M)``, ``[H-M, H-shift)``,
    ``[H-shift, H)`` per axis); two tokens of a window may attend to each other only
    when they lie in the same region (they were neighbours before the roll): 0 there,
    ``-100`` elsewhere.
    """
    img = np.zeros((1, h, w, 1), np.float32)
    cuts = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    region = 0
    for hs in cuts:
        for ws in cuts:
            img[:, hs, ws, :] = region
            region += 1
    win = np.asarray(window_partition(img, window))[..., 0]  # (nW, N)
    diff = win[:, None, :] - win[:, :, None]
    return np.where(diff != 0, MASK_VALUE, 0.0).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class _BlockSpec:
    name: str
    stage: int  # 1-based
    dim: int
    heads: int
    head_dim: int  # unpruned: sets the attention scale
    attn_dim: int  # kept head dimensions
    hidden: int  # unpruned MLP width
    mlp_dim: int  # kept MLP units
    resolution: int
    window: int
    shift: int
    drop_path: float


class SwinBlock(PreLNBlock):
    """One Swin block on ``(B, H, W, C)``: (shifted) window attention and MLP, pre-LN
    residuals (:class:`~jaxnas.width.attention.PreLNBlock` with window attention).

    Attributes (after the base's): ``window`` ``M`` (default Swin's 7) and ``shift``
    (0: W-MSA; ``M // 2``: SW-MSA, the map rolled by ``-shift`` and masked).
    """

    window: int = 7
    shift: int = 0
    ln_eps = LN_EPS

    def attention(self, y: jax.Array, alpha: Any) -> jax.Array:
        """Attention within ``M x M`` windows, with the relative-position bias."""
        _, h, w, _ = y.shape
        m, s = self.window, self.shift
        table = self.param(
            "relative_position_bias_table", LINEAR_INIT, ((2 * m - 1) ** 2, self.heads)
        )
        bias = table[relative_position_index(m)].transpose(2, 0, 1)  # (heads, N, N)
        mask = jnp.asarray(shifted_window_mask(h, w, m, s)) if s else None
        if s:
            y = jnp.roll(y, (-s, -s), axis=(1, 2))
        attn = ScoredAttention(self.heads, self.attn_dim, self.head_dim, self.dtype, name="attn")
        y = window_reverse(attn(window_partition(y, m), alpha, bias, mask), m, h, w)
        if s:
            y = jnp.roll(y, (s, s), axis=(1, 2))
        return y


class PatchMerging(nn.Module):
    """2x2 neighbours concatenated (official order x0, x1, x2, x3), LN, Linear 4C -> 2C."""

    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """``(B, H, W, C) -> (B, H/2, W/2, 2C)``."""
        c = x.shape[-1]
        x = jnp.concatenate(
            [x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], axis=-1
        )
        x = nn.LayerNorm(LN_EPS, dtype=self.dtype, name="norm")(x)
        return nn.Dense(
            2 * c, use_bias=False, kernel_init=LINEAR_INIT, dtype=self.dtype, name="reduction"
        )(x)


class SwinTransformer(WidthTransformer):
    """Swin Transformer with SiDT scores; see the module doc.

    Attributes:
      num_classes: classifier outputs.
      image_size: input height = width.
      patch_size: patch embedding stride.
      embed_dim: ``C`` (stage ``s`` has ``C 2^s`` channels).
      depths: blocks per stage.
      heads: heads per stage (``C 2^s`` divisible by it).
      window: ``M`` (the map of every stage with more than ``M`` tokens a side must be
        divisible by it).
      mlp_ratio: MLP hidden width over the block width.
      drop_path_rate, attn_dims, mlp_dims, scored, dtype: as
        :class:`~jaxnas.width.attention.WidthTransformer` (and the call).
    """

    num_classes: int = 1000
    image_size: int = 224
    patch_size: int = 4
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    heads: tuple[int, ...] = (3, 6, 12, 24)
    window: int = 7
    mlp_ratio: float = 4.0

    def _specs(self) -> list[_BlockSpec]:
        if not self.depths or len(self.depths) != len(self.heads):
            raise ValueError(f"Swin: depths {self.depths} and heads {self.heads} must match")
        if min(*self.depths, *self.heads, self.patch_size, self.window, self.embed_dim) < 1:
            raise ValueError("Swin: depths, heads, patch_size, window, embed_dim must be >= 1")
        if self.image_size % self.patch_size:
            raise ValueError(
                f"Swin: image_size {self.image_size} not divisible by patch {self.patch_size}"
            )
        res = self.image_size // self.patch_size
        n_blocks = sum(self.depths)
        rates = np.linspace(0.0, self.drop_path_rate, n_blocks) if n_blocks > 1 else [0.0]
        specs, k = [], 0
        for s, (depth, heads) in enumerate(zip(self.depths, self.heads)):
            dim = self.embed_dim * 2**s
            if dim % heads:
                raise ValueError(f"Swin stage {s + 1}: {dim} channels not divisible by {heads}")
            window, shift = (res, 0) if res <= self.window else (self.window, self.window // 2)
            if res % window:
                raise ValueError(
                    f"Swin stage {s + 1}: resolution {res} not divisible by window {window}"
                )
            if s + 1 < len(self.depths) and res % 2:
                raise ValueError(f"Swin stage {s + 1}: odd resolution {res} cannot be merged")
            hidden = int(dim * self.mlp_ratio)
            for b in range(depth):
                specs.append(
                    _BlockSpec(
                        f"stage{s + 1}_{b}",
                        s + 1,
                        dim,
                        heads,
                        dim // heads,
                        dim // heads,
                        hidden,
                        hidden,
                        res,
                        window,
                        shift if b % 2 else 0,
                        float(rates[k]),
                    )
                )
                k += 1
            res //= 2
        for field, key in (("attn_dims", "attn_dim"), ("mlp_dims", "mlp_dim")):
            dims = getattr(self, field)
            if dims is None:
                continue
            if len(dims) != len(specs) or min(dims) < 1:
                raise ValueError(f"Swin: {field} needs {len(specs)} widths >= 1, got {dims}")
            specs = [dataclasses.replace(sp, **{key: int(d)}) for sp, d in zip(specs, dims)]
        return specs

    def block_widths(self) -> list[tuple[str, int, int]]:
        """``stage{s}_{b}``, its head dimensions and MLP units."""
        return [(sp.name, sp.attn_dim, sp.mlp_dim) for sp in self._specs()]

    def pruned(self, keep: Mapping[str, Sequence[int]]) -> SwinTransformer:
        """The network keeping dimensions ``keep[group]`` (indices into the current group)."""
        return self.clone(**self.kept_dims(keep))

    def mac_parts(self, input_shape: Sequence[int]) -> list[tuple[str, str, int]]:
        """Closed-form multiply-adds of one image, ``(module, part, MACs)`` in call order.

        The official ``SwinTransformer.flops()`` convention: patch embedding conv
        (``embed``) and its LayerNorm, per block ``norm1`` / ``norm2`` (one per element),
        ``qkv``, ``attn`` (``Q K^T`` and ``a V``: ``2 h N^2 d_h'`` per window), ``proj``,
        ``mlp`` (``fc1`` + ``fc2``), per merging its LayerNorm and ``reduction``, the final
        LayerNorm and the ``head``.  Biases, softmax, GELU, the pool are not counted.
        Swin-T at 224, 1000 classes: 4.49 G in all (:meth:`macs`).
        """
        h, w, c_in = (int(v) for v in input_shape)
        if h != self.image_size or w != self.image_size:
            raise ValueError(f"Swin built for {self.image_size}x{self.image_size}, got {h}x{w}")
        res = self.image_size // self.patch_size
        parts = [("patch_embed", "embed", res * res * self.embed_dim * c_in * self.patch_size**2)]
        parts.append(("patch_embed", "norm", res * res * self.embed_dim))
        specs = self._specs()
        for i, sp in enumerate(specs):
            n, win = sp.resolution**2, sp.window**2
            inner = sp.heads * sp.attn_dim
            parts += [
                (sp.name, "norm", n * sp.dim),
                (sp.name, "qkv", n * sp.dim * 3 * inner),
                (sp.name, "attn", 2 * n * win * inner),
                (sp.name, "proj", n * inner * sp.dim),
                (sp.name, "mlp", 2 * n * sp.dim * sp.mlp_dim),
                (sp.name, "norm", n * sp.dim),
            ]
            if i + 1 < len(specs) and specs[i + 1].stage != sp.stage:
                name = f"merge{sp.stage}"
                parts.append((name, "norm", n * sp.dim))
                parts.append((name, "reduction", (n // 4) * 4 * sp.dim * 2 * sp.dim))
        top = specs[-1]
        parts.append(("norm", "norm", top.resolution**2 * top.dim))
        parts.append(("head", "head", top.dim * self.num_classes))
        return parts

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        specs = self._specs()
        a = score_variables(self, self.channel_groups(), self.scored)
        dt = self.dtype
        x = patch_embed(self.embed_dim, self.patch_size, dt)(x)
        x = nn.LayerNorm(LN_EPS, dtype=dt, name="patch_norm")(x)
        for i, sp in enumerate(specs):
            block = SwinBlock(
                sp.heads,
                sp.attn_dim,
                sp.head_dim,
                sp.mlp_dim,
                sp.drop_path,
                dt,
                window=sp.window,
                shift=sp.shift,
                name=sp.name,
            )
            x = block(x, a[f"{sp.name}.attn"], a[f"{sp.name}.mlp"], train)
            if i + 1 < len(specs) and specs[i + 1].stage != sp.stage:
                x = PatchMerging(dt, name=f"merge{sp.stage}")(x)
        x = nn.LayerNorm(LN_EPS, dtype=dt, name="norm")(x)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, kernel_init=LINEAR_INIT, dtype=dt, name="head")(x)


def swin_t(num_classes: int = 1000, image_size: int = 224, **kw: Any) -> SwinTransformer:
    """Swin-T: ``C = 96``, depths 2-2-6-2, heads 3-6-12-24, window 7, patch 4, MLP ratio 4
    (27,596,254 parameters at 100 classes, 27,534,734 at 20).  The official Swin-T
    trains with drop path 0.2 (``swin_tiny_patch4_window7_224.yaml``); pass
    ``drop_path_rate=0.2`` for that (default 0 here, so inference needs no rng)."""
    return SwinTransformer(num_classes=num_classes, image_size=image_size, **kw)
