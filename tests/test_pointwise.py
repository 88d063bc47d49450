"""The 1x1 convolution (``jaxnas.ops.Pointwise``, ``pointwise_conv``): nn.Dense's
variable and value, and its hand-written VJP (weight gradient over batch chunks) equal
to plain autodiff."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnas import ops
from jaxnas.ops import OpsConfig, Pointwise, pointwise_conv


@pytest.mark.parametrize("dtype", [None, jnp.bfloat16])
def test_pointwise_is_dense_without_bias(dtype):
    """Same variable tree, initial values and output as ``nn.Dense(use_bias=False)``,
    bit for bit (checkpoints and PyTorch weights keep their layout)."""
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 5, 5, 6)), jnp.float32)
    dense = nn.Dense(4, use_bias=False, dtype=dtype)
    pw = Pointwise(4, OpsConfig(dtype=dtype))
    v_dense, v_pw = dense.init(jax.random.key(3), x), pw.init(jax.random.key(3), x)
    assert jax.tree.structure(v_dense) == jax.tree.structure(v_pw)
    np.testing.assert_array_equal(v_pw["params"]["kernel"], v_dense["params"]["kernel"])
    y = pw.apply(v_pw, x)
    assert y.dtype == dense.apply(v_dense, x).dtype
    np.testing.assert_array_equal(y, dense.apply(v_dense, x))


def test_weight_gradient_over_batch_chunks_is_the_whole_batch_sum(x64, monkeypatch):
    """With a budget of two images per chunk, the kernel gradient is summed over three
    batch chunks in a scan (what a large batch does); value, input and kernel gradients
    equal plain autodiff of the same dot in float64, and so does the second derivative
    through the scan (reverse over reverse, DARTS' unrolled hypergradient)."""
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(6, 4, 4, 3)))
    w = jnp.asarray(rng.normal(size=(3, 5)))
    r = jnp.asarray(rng.normal(size=(6, 4, 4, 5)))
    image = 4 * 4 * 3 * 8  # float64 bytes of one image of x
    monkeypatch.setattr(ops, "KERNEL_GRAD_CHUNK_BYTES", 2 * image)
    assert ops._batch_chunk(6, image) == 2

    def loss(impl):
        return lambda x_, w_: jnp.sum(jnp.tanh(pointwise_conv(x_, w_, impl=impl)) * r)

    f, f_ref = loss("custom_vjp"), loss("shifted")
    np.testing.assert_array_equal(pointwise_conv(x, w), pointwise_conv(x, w, impl="lax"))
    g, g_ref = jax.jit(jax.grad(f, (0, 1)))(x, w), jax.jit(jax.grad(f_ref, (0, 1)))(x, w)
    for a, b in zip(g, g_ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    # d/dw of (the kernel gradient's contraction with a fixed direction)
    v = jnp.asarray(rng.normal(size=w.shape))
    second = lambda f_: jax.jit(jax.grad(lambda w_: jnp.vdot(jax.grad(f_, 1)(x, w_), v)))  # noqa: E731
    np.testing.assert_allclose(second(f)(w), second(f_ref)(w), rtol=1e-10, atol=1e-12)
