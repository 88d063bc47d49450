"""A small Vision Transformer with SiDT dimension scores, for CPU demos (Fashion-MNIST).

Layout (Dosovitskiy et al. 2021; timm's ``VisionTransformer``), images NHWC::

    patch embed   conv p x p, stride p (C_in -> d, with bias)
    tokens        [cls] + patches (``pool="cls"``) or the patches alone (``"mean"``),
                  plus a learned position embedding
    block         x = x + MSA(LN(x));  x = x + MLP(LN(x))      (pre-LN, exact GELU)
    head          LayerNorm, the cls token (or the mean over tokens), Linear d -> classes

LayerNorm eps 1e-6 and truncated-normal (std 0.02) linear / token / position inits, as
timm.  :func:`vit_tiny` defaults (28x28x1, patch 7: 16 patches + cls, ``d = 64``, 4
blocks of 4 heads of 16 dimensions, MLP 128, 10 classes): 139,018 parameters.

**SiDT scores** (thesis Sec. 4.3, L1298-1304 and L1327; :mod:`jaxnas.width.attention`):
per block ``block{i}``, ``block{i}.attn`` scores the ``d_h`` head dimensions (shared by
Q, K, V and all heads) and ``block{i}.mlp`` the MLP hidden units (after ``fc1``,
before GELU).  ``attn_dims`` / ``mlp_dims`` hold the kept widths per block
(:meth:`ViT.pruned`); the attention scale stays ``head_dim^{-1/2}`` of the unpruned
head dimension.
"""

from __future__ import annotations

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
    WidthTransformer,
    patch_embed,
)

__all__ = ["ViT", "ViTBlock", "vit_tiny"]

LN_EPS = 1e-6  # timm's ViT


class ViTBlock(PreLNBlock):
    """Pre-LN transformer block with scored attention and MLP on ``(B, N, d)`` tokens
    (:class:`~jaxnas.width.attention.PreLNBlock` as it is)."""

    ln_eps = LN_EPS


class ViT(WidthTransformer):
    """Vision Transformer with SiDT scores; see the module doc.

    Attributes:
      num_classes: classifier outputs.
      image_size: input height = width (divisible by ``patch_size``).
      patch_size: patch embedding stride.
      dim: token width ``d``.
      depth: blocks.
      heads: heads per block.
      head_dim: unpruned head dimension (default ``dim // heads``; sets the scale).
      mlp_dim: unpruned MLP width (default ``4 dim``).
      pool: ``"cls"`` (a class token) or ``"mean"`` (mean over the patch tokens).
      drop_path_rate, attn_dims, mlp_dims, scored, dtype: as
        :class:`~jaxnas.width.attention.WidthTransformer` (and the call).
    """

    num_classes: int = 10
    image_size: int = 28
    patch_size: int = 7
    dim: int = 64
    depth: int = 4
    heads: int = 4
    head_dim: int | None = None
    mlp_dim: int | None = None
    pool: str = "cls"

    def _widths(self) -> tuple[int, int, list[int], list[int]]:
        """``(head_dim, mlp_dim, attn_dims, mlp_dims)`` with the defaults filled in."""
        if min(self.dim, self.depth, self.heads, self.patch_size) < 1:
            raise ValueError("ViT: dim, depth, heads and patch_size must be >= 1")
        if self.image_size % self.patch_size:
            raise ValueError(
                f"ViT: image_size {self.image_size} not divisible by patch {self.patch_size}"
            )
        if self.pool not in ("cls", "mean"):
            raise ValueError(f"ViT: pool must be 'cls' or 'mean', got {self.pool!r}")
        if self.head_dim is None and self.dim % self.heads:
            raise ValueError(f"ViT: dim {self.dim} not divisible by {self.heads} heads")
        hd = self.head_dim if self.head_dim is not None else self.dim // self.heads
        md = self.mlp_dim if self.mlp_dim is not None else 4 * self.dim
        if min(hd, md) < 1:
            raise ValueError(f"ViT: head_dim and mlp_dim must be >= 1, got {hd}, {md}")
        out = []
        for field, full in (("attn_dims", hd), ("mlp_dims", md)):
            dims = getattr(self, field)
            if dims is None:
                dims = (full,) * self.depth
            if len(dims) != self.depth or min(dims) < 1:
                raise ValueError(f"ViT: {field} needs {self.depth} widths >= 1, got {dims}")
            out.append([int(d) for d in dims])
        return hd, md, out[0], out[1]

    def block_widths(self) -> list[tuple[str, int, int]]:
        """``block{i}``, its head dimensions and MLP units."""
        _, _, attn, mlp = self._widths()
        return [(f"block{i}", attn[i], mlp[i]) for i in range(self.depth)]

    def pruned(self, keep: Mapping[str, Sequence[int]]) -> ViT:
        """The network keeping dimensions ``keep[group]`` (indices into the current group)."""
        dims = self.kept_dims(keep)
        hd, md, _, _ = self._widths()
        return self.clone(head_dim=hd, mlp_dim=md, **dims)

    def mac_parts(self, input_shape: Sequence[int]) -> list[tuple[str, str, int]]:
        """Closed-form multiply-adds of one image, ``(module, part, MACs)``, counted as
        :meth:`jaxnas.width.swin.SwinTransformer.mac_parts` (LayerNorms one per element;
        ``attn`` is ``Q K^T`` and ``a V``: ``2 h N^2 d_h'``; no biases, softmax, GELU)."""
        h, w, c_in = (int(v) for v in input_shape)
        if h != self.image_size or w != self.image_size:
            raise ValueError(f"ViT built for {self.image_size}x{self.image_size}, got {h}x{w}")
        _, _, attn, mlp = self._widths()
        patches = (self.image_size // self.patch_size) ** 2
        n = patches + (self.pool == "cls")
        d = self.dim
        parts = [("patch_embed", "embed", patches * d * c_in * self.patch_size**2)]
        for i in range(self.depth):
            inner = self.heads * attn[i]
            parts += [
                (f"block{i}", "norm", n * d),
                (f"block{i}", "qkv", n * d * 3 * inner),
                (f"block{i}", "attn", 2 * n * n * inner),
                (f"block{i}", "proj", n * inner * d),
                (f"block{i}", "norm", n * d),
                (f"block{i}", "mlp", 2 * n * d * mlp[i]),
            ]
        parts += [("norm", "norm", n * d), ("head", "head", d * self.num_classes)]
        return parts

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        hd, _, attn, mlp = self._widths()
        a = score_variables(self, self.channel_groups(), self.scored)
        dt = self.dtype
        x = patch_embed(self.dim, self.patch_size, dt)(x)
        x = x.reshape(x.shape[0], -1, self.dim)
        if self.pool == "cls":
            cls = self.param("cls_token", LINEAR_INIT, (1, 1, self.dim))
            x = jnp.concatenate([jnp.broadcast_to(cls, (x.shape[0], 1, self.dim)), x], axis=1)
        pos = self.param("pos_embed", LINEAR_INIT, (1, x.shape[1], self.dim))
        x = x + pos.astype(x.dtype)
        rates = np.linspace(0.0, self.drop_path_rate, self.depth).tolist()
        for i in range(self.depth):
            block = ViTBlock(self.heads, attn[i], hd, mlp[i], rates[i], dt, name=f"block{i}")
            x = block(x, a[f"block{i}.attn"], a[f"block{i}.mlp"], train)
        x = nn.LayerNorm(LN_EPS, dtype=dt, name="norm")(x)
        x = x[:, 0] if self.pool == "cls" else jnp.mean(x, axis=1)
        return nn.Dense(self.num_classes, kernel_init=LINEAR_INIT, dtype=dt, name="head")(x)


def vit_tiny(num_classes: int = 10, image_size: int = 28, **kw: Any) -> ViT:
    """A ViT small enough to train on Fashion-MNIST on CPU in minutes (module doc): the
    :class:`ViT` defaults (patch 7, ``dim`` 64, depth 4, 4 heads), with ``mlp_dim``
    defaulting to ``2 dim`` here (128)."""
    kw.setdefault("mlp_dim", 2 * kw.get("dim", ViT.dim))
    return ViT(num_classes=num_classes, image_size=image_size, **kw)
