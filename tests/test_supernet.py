"""The supernet: the arch collection, shapes, cell wiring."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnas.ops import DARTS_PRIMITIVES, OpsConfig, ReLUConvBN
from jaxnas.supernet import SearchCell, SoftmaxMixer, SuperNet
from jaxnas.xla import jit_init

X = jnp.asarray(np.random.default_rng(0).normal(size=(2, 8, 8, 1)), jnp.float32)


@pytest.fixture(scope="module")
def tiny():
    model = SuperNet(num_classes=3, init_channels=2, layers=3)
    # jit_init: the init program compiled without LLVM optimisation (it runs once)
    variables = jit_init(lambda: model.init(jax.random.key(0), X))()
    return model, variables


def test_arch_collection_shapes(tiny):
    model, v = tiny
    assert set(v) == {"params", "arch", "batch_stats"}
    assert {k: a.shape for k, a in v["arch"].items()} == {"normal": (14, 8), "reduce": (14, 8)}
    # DARTS' initialisation: 1e-3 * N(0, 1)
    assert 0 < float(jnp.std(v["arch"]["normal"])) < 1e-2


def _float64(v):
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), v)


def _grads(model, v, x):
    """Gradients of ``sum(logits**2)`` w.r.t. ``(params, arch)`` at ``v`` (training mode)."""

    def loss(params, arch):
        logits, _ = model.apply(
            {"params": params, "arch": arch, "batch_stats": v["batch_stats"]},
            x,
            mutable=["batch_stats"],
        )
        return jnp.sum(logits**2)

    # compiled without LLVM optimisation (jit_init's options): it runs once, and its
    # values are compared, not its speed
    return jit_init(jax.grad(loss, argnums=(0, 1)))(v["params"], v["arch"])


@pytest.fixture(scope="module")
def tiny_grads(tiny):
    """The plain supernet's gradients in float64 (see the remat test): one compile for
    the two tests that read them."""
    model, v = tiny
    with jax.enable_x64(True):
        return _grads(model, _float64(v), jnp.asarray(X, jnp.float64))


def test_params_and_arch_gradients_are_separate_trees(tiny, tiny_grads):
    _, v = tiny
    gp, ga = tiny_grads
    assert jax.tree.structure(gp) == jax.tree.structure(v["params"])
    assert jax.tree.structure(ga) == jax.tree.structure(v["arch"])
    assert all(float(jnp.abs(g).sum()) > 0 for g in jax.tree.leaves(ga))


def test_per_cell_arch_sharing():
    model = SuperNet(num_classes=3, init_channels=2, layers=3, arch_sharing="cell")
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), X))
    assert {k: a.shape for k, a in shapes["arch"].items()} == {
        f"layer_{i:02d}": (14, 8) for i in range(3)
    }


def _cell(reduction, w):
    cell = SearchCell(4, reduction, False, DARTS_PRIMITIVES, SoftmaxMixer(), True)
    s = jnp.asarray(np.random.default_rng(1).normal(size=(2, 8, 8, 6)), jnp.float32)
    out, variables = cell.init_with_output(jax.random.key(0), s, s, w)
    return cell, variables, s, out


def test_cell_shapes():
    w = jnp.full((14, 8), 1 / 8)
    # traced for the shapes (jax.eval_shape), not run op by op; the normal cell's values
    # are checked in test_cell_wiring_closed_form
    shape = lambda reduction: jax.eval_shape(lambda: _cell(reduction, w)[3]).shape
    assert shape(False) == (2, 8, 8, 16)
    assert shape(True) == (2, 4, 4, 16)


def test_cell_wiring_closed_form():
    """All weight on skip_connect in a normal cell: node_k = 2**k (s0' + s1')."""
    w = jnp.zeros((14, 8)).at[:, DARTS_PRIMITIVES.index("skip_connect")].set(1.0)
    cell, variables, s, out = _cell(False, w)

    def prep(name):  # the cell's own preprocessing, applied standalone
        m = ReLUConvBN(4, affine=False, cfg=OpsConfig())
        sub = {"params": variables["params"][name], "batch_stats": variables["batch_stats"][name]}
        return m.apply(sub, s, True, mutable=["batch_stats"])[0]

    base = prep("preprocess0") + prep("preprocess1")
    nodes = np.split(np.asarray(out), 4, axis=-1)
    for k, node in enumerate(nodes):
        np.testing.assert_allclose(node, (2**k) * np.asarray(base), rtol=1e-5, atol=1e-5)
    # all weight on the zero op: every node is exactly zero
    w0 = jnp.zeros((14, 8)).at[:, 0].set(1.0)
    assert not np.any(np.asarray(cell.apply(variables, s, s, w0, mutable=["batch_stats"])[0]))


def test_supernet_output_and_bad_arch_shape(tiny):
    model, v = tiny
    # traced (jax.eval_shape), not run op by op: the shape and the trace-time check are
    # what is asserted; the outputs' values are compared in the depthwise and remat tests
    apply = lambda v: jax.eval_shape(lambda: model.apply(v, X, mutable=["batch_stats"]))
    logits, _ = apply(v)
    assert logits.shape == (2, 3)
    bad = dict(v, arch={"normal": jnp.zeros((14, 7)), "reduce": v["arch"]["reduce"]})
    with pytest.raises(ValueError, match="expected"):
        apply(bad)


def test_depthwise_implementations_agree(tiny):
    model, v = tiny
    # one program per implementation (not op by op), without LLVM optimisation: each
    # runs once
    apply = lambda m: jit_init(lambda v: m.apply(v, X, train=False))(v)
    outs = [
        apply(dataclasses.replace(model, cfg=OpsConfig(depthwise=impl)))
        for impl in ("custom_vjp", "shifted", "lax")
    ]
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outs[0], outs[2], rtol=1e-4, atol=1e-5)


def test_remat_gives_the_same_gradients(x64, tiny, tiny_grads):
    """In float64, so that the check is of the function, not of rounding: in float32 the
    recomputed forward may round differently from the saved one (other fusions, the
    hand-written VJPs' own order), and this tiny net's BNs amplify that to ~1e-4.  The
    plain gradients are the ``tiny_grads`` fixture's (the same program, float64)."""
    model, v = tiny
    plain = tiny_grads
    remat = _grads(dataclasses.replace(model, remat=True), _float64(v), jnp.asarray(X, jnp.float64))
    assert all(a.dtype == jnp.float64 for a in jax.tree.leaves((plain, remat)))
    for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(remat), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
