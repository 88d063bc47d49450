"""``jaxnas.ops.max_pool_3x3``: nine shifted maxima with a hand-written VJP, equal to
``nn.max_pool`` (XLA's reduce-window and select-and-scatter) in value and gradient."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnas.ops import max_pool_3x3


def _flax(x, stride):
    return nn.max_pool(x, (3, 3), (stride, stride), ((1, 1), (1, 1)))


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("ties", [False, True])
def test_value_and_gradient_equal_flax_max_pool(x64, stride, ties):
    """Same value and the same gradient as ``nn.max_pool`` in float64, odd and even sizes;
    with ``ties`` (integers 0..2: most windows hold their maximum several times) the
    gradient still goes to the window's first maximum in row-major order, as XLA's
    select-and-scatter (and PyTorch) send it; reverse over reverse (the gradient's
    derivative in the output weights) equals flax's too."""
    rng = np.random.default_rng(stride + 2 * ties)
    shape = (2, 7, 6, 3)
    x = rng.integers(0, 3, size=shape).astype(np.float64) if ties else rng.normal(size=shape)
    x = jnp.asarray(x)
    y = max_pool_3x3(x, stride)
    np.testing.assert_array_equal(y, _flax(x, stride))
    r = jnp.asarray(rng.normal(size=y.shape))

    def grad(pool):
        return jax.jit(jax.grad(lambda x_, r_: jnp.sum(pool(x_) * r_)))

    g = grad(lambda x_: max_pool_3x3(x_, stride))(x, r)
    np.testing.assert_allclose(g, grad(lambda x_: _flax(x_, stride))(x, r), rtol=0, atol=1e-12)
    v = jnp.asarray(rng.normal(size=x.shape))

    def second(pool):
        inner = jax.grad(lambda x_, r_: jnp.sum(pool(x_) * r_))
        return jax.jit(jax.grad(lambda r_: jnp.vdot(inner(x, r_), v)))(r)

    np.testing.assert_allclose(
        second(lambda x_: max_pool_3x3(x_, stride)),
        second(lambda x_: _flax(x_, stride)),
        rtol=0,
        atol=1e-12,
    )


def test_forward_mode_needs_the_flax_pool():
    """``impl="lax"`` is ``nn.max_pool``, which ``jax.jvp`` passes; the custom VJP is
    reverse mode only."""
    x = jnp.asarray(np.random.default_rng(0).normal(size=(1, 4, 4, 2)), jnp.float32)
    y, _ = jax.jvp(lambda x_: max_pool_3x3(x_, 1, impl="lax"), (x,), (x,))
    np.testing.assert_array_equal(y, _flax(x, 1))
    with pytest.raises(TypeError, match="custom_vjp"):
        jax.jvp(lambda x_: max_pool_3x3(x_, 1), (x,), (x,))
