"""Candidate operations: the depthwise conv against lax, shapes, pooling details."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnas import ops
from jaxnas.ops import DARTS_PRIMITIVES, OPS, OpsConfig, depthwise_conv, make_op, resolve_primitives

CASES = [  # (k, stride, dilation, padding)
    (3, 1, 1, 1),
    (5, 1, 1, 2),
    (3, 2, 1, 1),
    (5, 2, 1, 2),
    (3, 1, 2, 2),
    (5, 2, 2, 4),
]


@pytest.mark.parametrize("k,s,d,p", CASES)
def test_depthwise_matches_grouped_conv_and_its_gradients(x64, k, s, d, p):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, 8, 8, 3)))
    w = jnp.asarray(rng.normal(size=(k, k, 3)))
    ref = depthwise_conv(x, w, stride=s, dilation=d, padding=p, impl="lax")
    g = jnp.asarray(rng.normal(size=ref.shape))

    @functools.partial(jax.jit, static_argnums=0)  # one program, not op by op
    def vjp(impl):
        f = lambda x_, w_: depthwise_conv(x_, w_, stride=s, dilation=d, padding=p, impl=impl)
        y, pull = jax.vjp(f, x, w)
        return y, pull(g)

    y_ref, (gx_ref, gw_ref) = vjp("lax")
    for impl in ("custom_vjp", "shifted"):
        y, (gx, gw) = vjp(impl)
        np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(gx, gx_ref, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(gw, gw_ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("k,s,d,p", [CASES[0], CASES[5]])
def test_kernel_gradient_over_batch_chunks_is_the_whole_batch_sum(x64, monkeypatch, k, s, d, p):
    """With a chunk budget of two padded images, the custom VJP's kernel gradient is
    summed over three batch chunks in a scan (what a large batch does); value and both
    gradients still equal lax's grouped convolution, and so does the second derivative
    through the scan (reverse over reverse)."""
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.normal(size=(6, 8, 8, 3)))
    w = jnp.asarray(rng.normal(size=(k, k, 3)))
    padded_image = (8 + 2 * p) ** 2 * 3 * 8  # float64 bytes
    monkeypatch.setattr(ops, "KERNEL_GRAD_CHUNK_BYTES", 2 * padded_image)
    assert ops._batch_chunk(6, padded_image) == 2

    shape = depthwise_conv(x, w, stride=s, dilation=d, padding=p, impl="lax").shape
    r = jnp.asarray(rng.normal(size=shape))

    def loss(impl):
        conv = lambda w_: depthwise_conv(x, w_, stride=s, dilation=d, padding=p, impl=impl)
        return lambda w_: jnp.sum(jnp.tanh(conv(w_)) * r)

    f, f_ref = loss("custom_vjp"), loss("lax")
    # jitted: one compiled program each instead of op-by-op dispatch (most of the time)
    grad, grad_ref = jax.jit(jax.grad(f)), jax.jit(jax.grad(f_ref))
    np.testing.assert_allclose(grad(w), grad_ref(w), rtol=1e-12, atol=1e-12)
    h = jax.jit(jax.jacrev(jax.grad(f)))(w)
    np.testing.assert_allclose(h, jax.jit(jax.hessian(f_ref))(w), rtol=1e-10, atol=1e-10)


def test_custom_vjp_second_derivative(x64):
    # reverse over reverse through the hand-written VJP (DARTS' "unrolled" mode needs it)
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(1, 6, 6, 2)))
    w = jnp.asarray(rng.normal(size=(3, 3, 2)))

    def f(impl):
        loss = lambda w_: jnp.sum(jnp.tanh(depthwise_conv(x, w_, stride=2, padding=1, impl=impl)))
        return jax.jit(jax.hessian(loss) if impl == "lax" else jax.jacrev(jax.grad(loss)))(w)

    np.testing.assert_allclose(f("custom_vjp"), f("lax"), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("stride", [1, 2])
def test_every_op_keeps_or_halves_resolution(stride):
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 8, 8, 4)), jnp.float32)
    for name in DARTS_PRIMITIVES:
        op = make_op(name, 4, stride, affine=False, search=True, cfg=OpsConfig())
        # traced for the shape (jax.eval_shape), not run op by op
        y, _ = jax.eval_shape(lambda op=op: op.init_with_output(jax.random.key(0), x, True))
        assert y.shape == (2, 8 // stride, 8 // stride, 4), name


def test_avg_pool_excludes_padding_and_max_pool_pads_with_minus_inf():
    cfg = OpsConfig()
    ones = jnp.ones((1, 5, 5, 1))
    avg = make_op("avg_pool_3x3", 1, 1, affine=False, search=False, cfg=cfg)
    y, _ = avg.init_with_output(jax.random.key(0), ones, True)
    np.testing.assert_allclose(y, 1.0)  # count_include_pad=True would give 4/9 in corners
    mx = make_op("max_pool_3x3", 1, 1, affine=False, search=False, cfg=cfg)
    y, _ = mx.init_with_output(jax.random.key(0), -ones, True)
    np.testing.assert_allclose(y, -1.0)  # zero padding would give 0 on the border


def test_zero_op_and_skip():
    x = jnp.ones((2, 8, 8, 4))
    for s in (1, 2):
        zero = make_op("none", 4, s, affine=False, search=True, cfg=OpsConfig())
        y, _ = zero.init_with_output(jax.random.key(0), x, True)
        assert y.shape == (2, 8 // s, 8 // s, 4) and not np.any(np.asarray(y))
    skip = make_op("skip_connect", 4, 1, affine=False, search=True, cfg=OpsConfig())
    y, _ = skip.init_with_output(jax.random.key(0), x, True)
    np.testing.assert_array_equal(y, x)


def test_factorized_reduce_rejects_odd_size():
    fr = make_op("skip_connect", 4, 2, affine=False, search=True, cfg=OpsConfig())
    with pytest.raises(ValueError, match="even spatial size"):
        fr.init(jax.random.key(0), jnp.ones((1, 7, 7, 4)), True)


def test_registry_errors_are_one_line():
    with pytest.raises(ValueError) as e:
        make_op("sep_conv_9x9", 4, 1, affine=False, search=True, cfg=OpsConfig())
    assert "sep_conv_9x9" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ValueError):
        resolve_primitives(("none", "conv_13x13"))
    assert resolve_primitives("darts") == DARTS_PRIMITIVES
    assert set(DARTS_PRIMITIVES) <= set(OPS)
    # a config's string key can list ops by name
    assert resolve_primitives(" none, sep_conv_3x3 ") == ("none", "sep_conv_3x3")
    with pytest.raises(ValueError, match="conv_13x13"):
        resolve_primitives("none,conv_13x13")
