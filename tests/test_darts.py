"""The DARTS method end to end on real Fashion-MNIST images (tiny shapes)."""

import jax
import numpy as np
import pytest

from jaxnas import data
from jaxnas.common import epoch_cosine_schedule
from jaxnas.config import default_config
from jaxnas.search import build

#: Four of DARTS' eight ops (zero, identity / factorized reduce, pooling, a depthwise-
#: separable conv): every kind of mixed-op path, at about half the compile time of the
#: eight (it grows with the ops per edge).  The conv is the dilated one: one depthwise +
#: pointwise block where sep_conv stacks two, so the second-order programs (which
#: differentiate the depthwise conv twice) compile faster.  The eight-op supernet
#: compiles in test_supernet.py (outputs, gradients, remat) and in test_asmnas.py's
#: search steps.
FEW_OPS = "none,skip_connect,max_pool_3x3,dil_conv_3x3"


def _config(primitives="darts", **search):
    c = default_config("darts")
    c.model.init_channels, c.model.layers = 2, 3
    c.model.primitives = primitives
    c.search.epochs = 2
    c.search.update(search)
    return c


@pytest.fixture(scope="module")
def batches():
    try:
        ds = data.load("fashion_mnist", "train", limit=16)
    except data.DatasetNotFoundError as e:
        pytest.skip(str(e))
    x = data.normalize(ds.images, "fashion_mnist")
    return [(x[i : i + 4], ds.labels[i : i + 4]) for i in range(0, 16, 4)]


def _run(method, batches, seed, steps=2, init=None):
    """``steps`` steps from ``init`` (default: ``method``'s own initial state)."""
    state = method.init(jax.random.key(seed), batches[0][0]) if init is None else init
    for i in range(steps):
        state, metrics = method.train_step(state, batches[2 * i % 4], batches[(2 * i + 1) % 4])
    return state, metrics


@pytest.fixture(scope="module")
def first_order(batches):
    return build(_config(FEW_OPS), steps_per_epoch=2, num_classes=10, input_shape=(28, 28, 1))


def test_same_seed_same_alpha(first_order, batches):
    a, metrics = _run(first_order, batches, seed=3)
    b, _ = _run(first_order, batches, seed=3)
    c, _ = _run(first_order, batches, seed=4)
    for k in a.arch:
        np.testing.assert_array_equal(a.arch[k], b.arch[k])
        assert not np.array_equal(a.arch[k], c.arch[k])
    assert np.isfinite(float(metrics["loss"])) and int(a.step) == 2


def test_alpha_moves_by_adam_step_size(first_order, batches):
    # Adam's first step moves each coordinate by about lr (3e-4) plus weight decay effects
    s0 = first_order.init(jax.random.key(0), batches[0][0])
    s1, _ = first_order.train_step(s0, batches[0], batches[1])
    delta = np.abs(np.asarray(s1.arch["normal"]) - np.asarray(s0.arch["normal"]))
    assert np.all(delta < 3.1e-4) and np.median(delta) > 2.5e-4


def test_arch_weights_and_genotype(first_order, batches):
    state = first_order.init(jax.random.key(0), batches[0][0])
    w = first_order.arch_weights(state)
    assert w["normal"].shape == (14, len(FEW_OPS.split(",")))
    np.testing.assert_allclose(w["reduce"].sum(-1), 1.0, rtol=1e-6)
    g = first_order.genotype(state)
    assert len(g.normal.pairs) == 8 and all(op != "none" for op, _ in g.normal.pairs)
    metrics = first_order.eval_step(state, batches[0])
    assert set(metrics) >= {"loss", "accuracy"}


def test_epoch_cosine_schedule():
    s = epoch_cosine_schedule(0.025, 0.001, epochs=50, steps_per_epoch=10)
    assert float(s(0)) == pytest.approx(0.025) and float(s(9)) == pytest.approx(0.025)
    # CosineAnnealingLR(T_max=50, eta_min=0.001) at epoch 25 is the midpoint
    assert float(s(250)) == pytest.approx(0.013)
    assert float(s(500)) == pytest.approx(0.001)


def test_fused_phases_equal_separate_phases(batches, x64):
    """The fused first-order step (one compiled gradient body) equals the plain one,
    to float64 rounding (float32 reassociation would hide a stale-alpha bug).  One
    (reduction) cell: the phases' order, the alpha each reads and the state they pass
    on do not depend on the cells; the float64 compile time does."""
    f64 = lambda t: jax.tree.map(
        lambda a: a.astype(np.float64) if np.issubdtype(a.dtype, np.floating) else a, t
    )
    batches = [(x.astype(np.float64), y) for x, y in batches]
    states = []
    for fuse in ("yes", "no"):
        c = _config(FEW_OPS, fuse_phases=fuse)
        c.model.layers = 1
        m = build(
            c,
            steps_per_epoch=2,
            num_classes=10,
            input_shape=(28, 28, 1),
        )
        assert m.fuse_phases == (fuse == "yes")
        state = f64(m.init(jax.random.key(1), batches[0][0]))
        for i in range(2):
            state, _ = m.train_step(state, batches[2 * i], batches[2 * i + 1])
        states.append(state)
    for a, b in zip(jax.tree.leaves(states[0]), jax.tree.leaves(states[1])):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.slow
def test_second_order_step(first_order, batches):
    """Exact second order, fused (forward-over-reverse HVP inside the phase scan),
    equals the separate-phase step with jax.grad straight through the unrolled
    step (reverse over reverse through the custom VJP); it differs from first order.
    (DARTS' finite difference is compared on a smooth supernet in float64 in
    test_hypergrad.py: in float32 with ReLU its error is large.)"""
    # one initial state for the three (the same supernet and optimizers: only the
    # arch update differs), so the second-order methods' inits are not compiled
    init = first_order.init(jax.random.key(0), batches[0][0])
    arch = {}
    for mode, fuse, depthwise in (("exact", "yes", "auto"), ("unrolled", "no", "custom_vjp")):
        cfg = _config(FEW_OPS, order="second", hypergradient=mode, fuse_phases=fuse)
        cfg.model.depthwise = depthwise
        m = build(cfg, steps_per_epoch=2, num_classes=10, input_shape=(28, 28, 1))
        assert jax.tree.structure(jax.eval_shape(m.init, jax.random.key(0), batches[0][0])) == (
            jax.tree.structure(init)
        )
        arch[mode] = _run(m, batches, seed=0, init=init)[0].arch
    arch["first"] = _run(first_order, batches, seed=0, init=init)[0].arch
    flat = lambda a: np.concatenate([np.ravel(a[k]) for k in sorted(a)])
    s0 = flat(init.arch)
    step = {k: flat(v) - s0 for k, v in arch.items()}  # what two steps changed
    rel = lambda a, b: np.linalg.norm(a - b) / np.linalg.norm(b)
    assert rel(step["unrolled"], step["exact"]) < 1e-3
    assert rel(step["first"], step["exact"]) > 1e-3
