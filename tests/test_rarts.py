"""RARTS cell search (thesis Ch. 3) on a tiny supernet, the latency penalty and table.

One RARTS instance (C=2, 3 cells, 16x16 inputs, batch 4, four ops) serves the step
tests: ``step_with`` takes lam/beta/gamma as traced scalars, so every setting below
reuses one compiled step.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnas import latency as lat_lib
from jaxnas.config import default_config, load_config
from jaxnas.search import build
from jaxnas.search.rarts import RARTS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# none (excluded by the genotype rule), a pool with BN, identity / FactorizedReduce and a
# depthwise-separable conv: every kind of op, at a fraction of the 8-op compile time.  The
# conv is the dilated one: one depthwise + pointwise + BN block where sep_conv_3x3 stacks
# two (the same kind of op, a shorter compile)
OPS = ("none", "max_pool_3x3", "skip_connect", "dil_conv_3x3")
SHAPE = (16, 16, 1)


def _config(table=""):
    c = default_config("rarts")
    c.model.init_channels, c.model.layers = 2, 3
    with c.ignore_type():
        c.model.primitives = OPS
    c.search.epochs = 2
    c.search.latency_table = table
    return c


def _synthetic_table(seed=0):
    """A table with random positive latencies for the tiny supernet (no timing)."""
    cells = lat_lib.supernet_edges(2, 3, SHAPE)
    rng = np.random.default_rng(seed)
    shapes = {}
    for cell in cells:
        for e in cell["edges"]:
            shapes[e.key] = dict(
                channels=e.channels,
                height=e.height,
                width=e.width,
                stride=e.stride,
                latency={op: float(rng.uniform(0.01, 1.0)) for op in OPS},
            )
    return dict(
        version=1,
        unit="ms",
        supernet=dict(init_channels=2, layers=3, input_shape=list(SHAPE), primitives=list(OPS)),
        shapes=shapes,
        cells=[
            dict(layer=c["layer"], type=c["type"], edges=[e.key for e in c["edges"]]) for c in cells
        ],
    )


@pytest.fixture(scope="module")
def table_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("lat") / "table.json"
    lat_lib.save_table(_synthetic_table(), path)
    return str(path)


@pytest.fixture(scope="module")
def method(table_path):
    return build(_config(table_path), steps_per_epoch=2, num_classes=10, input_shape=SHAPE)


@pytest.fixture(scope="module")
def batches():
    rng = np.random.default_rng(0)
    make = lambda: (
        rng.normal(size=(4, *SHAPE)).astype(np.float32),
        rng.integers(0, 10, 4).astype(np.int32),
    )
    return make(), make()  # (D_a = the runner's "train" batch, D_p = its "valid" batch)


@pytest.fixture(scope="module")
def state0(method, batches):
    return method.init(jax.random.key(0), batches[0][0])


def _hyper(lam=1.0, beta=1.0, gamma=0.002):
    return dict(lam=jnp.float32(lam), beta=jnp.float32(beta), gamma=jnp.float32(gamma))


def _perturb(batch):
    x, y = batch
    return x + np.random.default_rng(1).normal(size=x.shape).astype(np.float32), y


def _same(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)


def _dist(a, b):
    return float(
        np.sqrt(
            sum(
                np.sum((np.asarray(x) - np.asarray(y)) ** 2)
                for x, y in zip(*map(jax.tree.leaves, (a, b)))
            )
        )
    )


def test_each_block_uses_its_own_half(method, state0, batches):
    """Eq. 2.12: w reads only D_a, u reads D_p (and D_a only through w^{t+1} in the
    coupling, Gauss-Seidel), alpha reads both; each copy has its own BN statistics."""
    d_a, d_p = batches
    step = lambda a, p, **h: method.step_with(state0, a, p, _hyper(**h))[0]
    base, new_p, new_a = step(d_a, d_p), step(d_a, _perturb(d_p)), step(_perturb(d_a), d_p)
    # (2.12a) the w-block and its BN statistics see D_a only
    _same(base.w, new_p.w)
    _same(base.w_stats, new_p.w_stats)
    assert _dist(base.w, new_a.w) > 1e-4
    # (2.12b) the u-block sees D_p ...
    assert _dist(base.u, new_p.u) > 1e-4
    _same(base.u_stats, new_a.u_stats)
    # ... and D_a only through beta (u^t - w^{t+1}): none at beta = 0, some at beta > 0
    _same(step(d_a, d_p, beta=0.0).u, step(_perturb(d_a), d_p, beta=0.0).u)
    assert _dist(base.u, new_a.u) > 1e-7
    # (2.12c) alpha sees both halves
    assert _dist(base.arch, new_p.arch) > 1e-7 and _dist(base.arch, new_a.arch) > 1e-7
    # w^0 = u^0 (search.w_init = "copy")
    _same(state0.u, state0.w)


def test_large_beta_keeps_copies_together(method, state0, batches):
    dist = {}
    for beta in (0.0, 10.0, 100.0):
        s = state0
        for _ in range(3):
            s, metrics = method.step_with(s, *batches, _hyper(beta=beta))
        dist[beta] = _dist(s.u, s.w)
        assert np.isfinite(float(metrics["lagrangian"]))
    assert dist[0.0] > dist[10.0] > dist[100.0]
    assert dist[100.0] < 0.3 * dist[0.0]


def test_metrics_and_lagrangian(method, state0, batches):
    s, m = method.step_with(state0, *batches, _hyper(lam=2.0, beta=3.0, gamma=0.5))
    assert int(s.step) == 1
    assert set(m) >= {"loss", "accuracy", "valid_loss", "valid_accuracy", "lr", "latency"}
    # Eq. 2.11 at the iterate before the step (u^0 = w^0: no coupling term)
    p = float(method.latency_penalty(state0.arch))
    assert float(m["latency"]) == pytest.approx(p, rel=1e-6)
    want = float(m["valid_loss"]) + 2.0 * float(m["loss"]) + 0.5 * p
    assert float(m["lagrangian"]) == pytest.approx(want, rel=1e-5)
    assert float(m["uw_distance"]) == 0.0 and float(m["lr"]) == pytest.approx(0.025)


def test_latency_penalty_steers_alpha(method, state0, batches):
    """With gamma dominating, Adam's first step moves each alpha by -lr sign(grad P):
    down for ops slower than the edge's softmax-weighted mean latency (Eq. 2.38)."""
    s, _ = method.step_with(state0, *batches, _hyper(gamma=1e4))
    for k, a0 in state0.arch.items():
        c = method.latency[k]
        sig = np.asarray(jax.nn.softmax(a0, -1))
        grad_sign = np.sign(sig * (c - np.sum(sig * c, -1, keepdims=True)))
        np.testing.assert_array_equal(np.sign(np.asarray(s.arch[k]) - np.asarray(a0)), -grad_sign)


def test_penalty_hand_sum_and_gradient(method, state0, x64):
    table = method.latency_table
    # LAT per alpha row = the edge's latency summed over the cells of that type
    lat = {t: np.zeros((14, len(OPS))) for t in ("normal", "reduce")}
    for cell in table["cells"]:
        for e, key in enumerate(cell["edges"]):
            for k, op in enumerate(OPS):
                lat[cell["type"]][e, k] += table["shapes"][key]["latency"][op]
    for t in lat:
        np.testing.assert_allclose(method.latency[t], lat[t], rtol=1e-6)
    rng = np.random.default_rng(3)
    arch = {t: jnp.asarray(rng.normal(size=(14, len(OPS)))) for t in lat}
    hand = 0.0
    for t in lat:
        for e in range(14):
            z = np.exp(np.asarray(arch[t][e]))
            hand += np.dot(z / z.sum(), lat[t][e])
    p = lat_lib.latency_penalty(arch, lat)
    assert float(p) == pytest.approx(hand, rel=1e-12)
    grad = jax.grad(lat_lib.latency_penalty)(arch, lat)
    for t in lat:  # softmax Jacobian . LAT = sigma * (c - <sigma, c>)  (Prop. 2.9)
        sig = np.asarray(jax.nn.softmax(arch[t], -1))
        c = lat[t]
        np.testing.assert_allclose(
            grad[t], sig * (c - np.sum(sig * c, -1, keepdims=True)), rtol=1e-10, atol=1e-14
        )
    assert float(method.arch_regularizer(state0.arch)) == pytest.approx(
        0.002 * float(method.latency_penalty(state0.arch)), rel=1e-6
    )


def test_eval_uses_u_and_reads_arch(method, state0, batches):
    s, _ = method.step_with(state0, *batches, _hyper())
    m = method.eval_step(s, batches[1])
    assert set(m) >= {"loss", "accuracy"}
    scrambled_w = jax.tree.map(lambda x: x + 1.0, s.w)
    _same(m, method.eval_step(s.replace(w=scrambled_w, w_stats=s.u_stats), batches[1]))
    other = method.eval_step(s.replace(u=s.w, u_stats=s.w_stats), batches[1])
    assert float(other["loss"]) != float(m["loss"])
    w = method.arch_weights(s)
    assert w["normal"].shape == (14, len(OPS))
    np.testing.assert_allclose(w["reduce"].sum(-1), 1.0, rtol=1e-6)
    g = method.genotype(s)
    assert len(g.normal.pairs) == 8 and all(op != "none" for op, _ in g.reduce.pairs)
    # a pytree of arrays (what the runner's orbax checkpoints need)
    leaves, tree = jax.tree.flatten(s)
    assert all(hasattr(x, "shape") and hasattr(x, "dtype") for x in leaves)
    _same(jax.tree.unflatten(tree, leaves), s)


def _traced_edge_keys(c, layers, shape):
    """Edge shapes MixedEdge sees when SuperNet is traced (jax.eval_shape: no compile)."""
    from flax import linen as nn

    from jaxnas.supernet import MixedEdge, SuperNet

    seen = set()

    def spy(next_fun, args, kwargs, context):
        if isinstance(context.module, MixedEdge) and context.method_name == "__call__":
            _, h, w, ch = args[0].shape
            seen.add(lat_lib.EdgeShape(ch, h, w, context.module.stride).key)
        return next_fun(*args, **kwargs)

    net = SuperNet(num_classes=10, init_channels=c, layers=layers, primitives=("skip_connect",))
    x = jnp.zeros((1, *shape))
    with nn.intercept_methods(spy):
        jax.eval_shape(lambda: net.init(jax.random.key(0), x, train=True))
    return seen


def test_supernet_edges_match_the_supernet():
    for c, layers, shape in ((2, 3, SHAPE), (16, 8, (32, 32, 3))):
        cells = lat_lib.supernet_edges(c, layers, shape)
        keys = {e.key for cell in cells for e in cell["edges"]}
        assert keys == _traced_edge_keys(c, layers, shape)
        assert [cell["type"] for cell in cells].count("reduce") == 2
    assert keys == {
        "c16_h32_w32_s1",
        "c32_h32_w32_s2",
        "c32_h16_w16_s1",
        "c64_h16_w16_s2",
        "c64_h8_w8_s1",
    }


def test_table_checks(table_path, tmp_path):
    with pytest.raises(ValueError, match="jaxnas latency"):
        build(
            _config(str(tmp_path / "missing.json")),
            steps_per_epoch=2,
            num_classes=10,
            input_shape=SHAPE,
        )
    cfg = _config(table_path)
    cfg.model.layers = 5
    with pytest.raises(ValueError, match="layers=3.*layers=5"):
        build(cfg, steps_per_epoch=2, num_classes=10, input_shape=SHAPE)
    with pytest.raises(ValueError, match="input_hw"):
        build(_config(table_path), steps_per_epoch=2, num_classes=10, input_shape=(28, 28, 1))
    bad = _config()
    bad.search.beta = -1.0
    with pytest.raises(ValueError, match="search.beta"):
        build(bad, steps_per_epoch=2, num_classes=10, input_shape=SHAPE)


def test_configs():
    c = load_config(os.path.join(ROOT, "configs/rarts_cifar10.py"))
    assert c.method == "rarts" and c.model.layers == 8 and c.data.batch_size == 64
    assert c.search.gamma == 0.002 and c.search.epochs == 50 and c.search.latency_table
    assert (c.optim.w_lr, c.optim.u_lr, c.optim.a_lr, c.optim.a_weight_decay) == (
        0.025,
        0.025,
        3e-4,
        1e-3,
    )
    t = load_config(os.path.join(ROOT, "configs/rarts_fmnist_tiny.py"), ["search.beta=5"])
    assert t.method == "rarts" and t.search.beta == 5.0 and t.search.latency_table == ""
    assert isinstance(build(t, steps_per_epoch=2, num_classes=10, input_shape=(28, 28, 1)), RARTS)


def test_latency_command_measures_every_op_and_shape(tmp_path, capsys):
    """`jaxnas latency` on a one-cell net (8x8 DIGITS inputs, all 8 DARTS ops)."""
    from jaxnas.cli import main

    cfg = tmp_path / "cfg.py"
    cfg.write_text(
        "from jaxnas.config import default_config\n"
        "def get_config():\n"
        "    c = default_config('rarts')\n"
        "    c.data.dataset = 'digits'\n"
        "    c.model.init_channels, c.model.layers = 2, 1\n"
        "    return c\n"
    )
    out = tmp_path / "lat.json"
    args = ["latency", "--config", str(cfg), "--out", str(out), "--runs", "2", "--warmup", "1"]
    assert main(args) == 0
    assert "latency table" in capsys.readouterr().out
    table = lat_lib.load_table(out)
    assert table["unit"] == "ms" and table["supernet"]["input_shape"] == [8, 8, 1]
    cells = lat_lib.supernet_edges(2, 1, (8, 8, 1))
    keys = {e.key for cell in cells for e in cell["edges"]}
    assert set(table["shapes"]) == keys == {"c4_h8_w8_s2", "c4_h4_w4_s1"}
    for key in keys:
        lat = table["shapes"][key]["latency"]
        assert set(lat) == set(table["supernet"]["primitives"]) and len(lat) == 8
        assert all(v > 0 and np.isfinite(v) for v in lat.values())
    assert json.loads(out.read_text())["cells"][0]["type"] == "reduce"


@pytest.mark.slow
def test_real_search_one_epoch(tmp_path):
    """One short epoch of a real RARTS search on Fashion-MNIST through the runner
    (checkpoint, evaluation, genotype), on the 4-op space to keep compile short."""
    import ml_collections

    from jaxnas import data
    from jaxnas.run import search

    c = load_config(os.path.join(ROOT, "configs/rarts_fmnist_tiny.py"))
    c.search.epochs = 1
    c.data.batch_size = 8
    c.data.limit = 64  # 32 + 32 -> 4 steps
    c.model.layers, c.model.init_channels = 3, 2
    c.run.eval_limit = 16
    c.run.tensorboard = False
    try:
        data.load("fashion_mnist", "train", limit=1)
    except data.DatasetNotFoundError as e:
        pytest.skip(str(e))

    def four_ops(config, **kw):  # the runner's config, with this file's 4-op space
        config = ml_collections.ConfigDict(config.to_dict())
        with config.ignore_type():
            config.model.primitives = OPS
        return build(config, **kw)

    s = search(c, str(tmp_path / "run"), progress=False, build=four_ops)
    final = s["final"]
    assert s["method"] == "rarts" and s["epochs"] == 1
    for k in ("train/loss", "valid/loss", "valid/accuracy", "test/accuracy", "train/lagrangian"):
        assert np.isfinite(final[k]), k
    assert os.path.exists(s["genotype_json"])
    with open(os.path.join(s["workdir"], "alphas", "meta.json")) as f:
        assert json.load(f)["primitives"] == list(OPS)
