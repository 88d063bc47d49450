"""GDAS (jaxnas.search.gdas): the hard Gumbel-softmax sampler, its straight-through
gradient, the one-hot identity of a sampled supernet, the temperature schedule and tiny
end-to-end searches on the DARTS and NAS-Bench-201 spaces."""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnas import data
from jaxnas.config import ConfigError, default_config, load_config
from jaxnas.models import OneHotMixer
from jaxnas.models.nb201_net import NB201Network, NB201SuperNet, variables_from_supernet
from jaxnas.search import build
from jaxnas.search.gdas import GDAS, GumbelMixer, gumbel_hard
from jaxnas.spaces import nb201
from jaxnas.supernet import MixedEdge, SuperNet
from jaxnas.xla import jit_init

# The programs these tests compile to compare values go through jit_init: compiled without
# LLVM optimisation (a third less CPU time to compile, the same functions; each runs a few
# times on tiny inputs).

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: every kind of op; the conv is the dilated depthwise-separable one (one depthwise +
#: pointwise + BN block where sep_conv_3x3 stacks two: the same kind of op, a shorter
#: XLA compile, most of these tests' time)
OPS4 = ("none", "skip_connect", "max_pool_3x3", "dil_conv_3x3")
NB4 = ("none", "skip_connect", "nor_conv_3x3", "avg_pool_3x3")


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# ------------------------------------------------------------------------ the sampler


def test_hard_sample_is_one_hot_with_the_softmax_jacobian(x64):
    """Forward: exactly ``one_hot(argmax(alpha + o))`` with ``o`` the Gumbel noise of the
    key (Eq. 5); Jacobian: that of ``softmax((alpha + o) / tau)``, row by row (Eq. 6),
    ``d w_i / d alpha_j = s_i (delta_ij - s_j) / tau``."""
    key, tau = jax.random.key(3), 0.7
    alpha = jnp.asarray(np.random.default_rng(0).normal(size=(6, 5)))
    w, k = gumbel_hard(key, alpha, tau)
    z = np.asarray(alpha) + np.asarray(jax.random.gumbel(key, alpha.shape, alpha.dtype))
    np.testing.assert_array_equal(np.asarray(k), z.argmax(-1))
    np.testing.assert_array_equal(np.asarray(w), np.eye(5)[z.argmax(-1)])
    s = _softmax(z / tau)
    jac = np.asarray(jax.jacobian(lambda a: gumbel_hard(key, a, tau)[0])(alpha))
    expected = np.zeros((6, 5, 6, 5))
    for e in range(6):
        expected[e, :, e, :] = (np.diag(s[e]) - np.outer(s[e], s[e])) / tau
    np.testing.assert_allclose(jac, expected, rtol=1e-10, atol=1e-12)


def test_samples_follow_the_softmax_of_alpha():
    """Gumbel-Max: ``P(k) = softmax(alpha)_k`` whatever tau (20000 draws, 4 sigma)."""
    alpha = jnp.asarray([[1.0, 0.0, -1.0, 0.5]])
    keys = jax.random.split(jax.random.key(0), 20000)
    k = jax.vmap(lambda key: gumbel_hard(key, alpha, 0.1)[1][0])(keys)
    freq = np.bincount(np.asarray(k), minlength=4) / len(keys)
    p = _softmax(np.asarray(alpha[0]))
    np.testing.assert_allclose(freq, p, atol=4 * np.sqrt(p * (1 - p) / len(keys)).max())


def test_mixer_without_temperature_is_the_mode():
    """No ``step_input`` (init, ``eval_step``): the most likely op of every edge."""
    alpha = jnp.asarray(np.random.default_rng(1).normal(size=(14, 4)), jnp.float32)
    w = GumbelMixer().edge_weights(alpha, jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(w), np.eye(4)[np.asarray(alpha).argmax(-1)])


# --------------------------------------------------------- straight-through gradient


@pytest.mark.parametrize("unselected", ["zero", "bias"])
def test_edge_gradient_is_the_softmax_gradient_at_the_sampled_op(unselected):
    """One mixed edge, ``L = <c, y>``: only the sampled op ``k`` is computed, ``y = O_k(x)``,
    and ``dL/dalpha = sum_o g_o s_o (e_o - s) / tau`` with ``g_k = <c, y>`` and, for the
    unsampled ops, ``g_o = 0`` (``"zero"``) or ``sum(c)`` (``"bias"``)."""
    r = np.random.default_rng(2)
    x = jnp.asarray(r.normal(size=(2, 6, 6, 4)), jnp.float32)
    c = jnp.asarray(r.normal(size=(2, 6, 6, 4)), jnp.float32)
    mixer, tau = GumbelMixer(unselected_grad=unselected), 0.8
    edge = MixedEdge(OPS4, 1, mixer, train=True)
    variables = edge.init(jax.random.key(0), x, jnp.ones(4))
    dense = MixedEdge(OPS4, 1, OneHotMixer(), train=True)

    def loss(alpha, key):
        w = mixer.edge_weights(alpha[None], key, {"tau": tau})[0]
        y, _ = edge.apply(variables, x, w, mutable=["batch_stats"])
        return jnp.sum(c * y), y

    grad = jit_init(jax.grad(loss, has_aux=True))
    ys = jit_init(lambda w: dense.apply(variables, x, w, mutable=["batch_stats"])[0])
    alpha = jnp.asarray([0.3, -0.2, 0.1, 0.4], jnp.float32)
    seen = set()
    for seed in range(6):
        key = jax.random.key(seed)
        z = np.asarray(alpha) + np.asarray(jax.random.gumbel(key, (4,)))
        k, s = int(z.argmax()), _softmax(z / tau)
        g_alpha, y = grad(alpha, key)
        np.testing.assert_allclose(y, ys(jnp.eye(4)[k]), rtol=1e-6, atol=1e-6)  # y = O_k(x)
        g = np.full(4, float(jnp.sum(c)) if unselected == "bias" else 0.0)
        g[k] = float(jnp.sum(c * y))
        expected = sum(g[o] * s[o] * (np.eye(4)[o] - s) for o in range(4)) / tau
        np.testing.assert_allclose(g_alpha, expected, rtol=1e-4, atol=1e-5)
        seen.add(k)
    assert len(seen) >= 3  # the draws reach several ops, convs and pools among them


# ------------------------------------------------------------------ one-hot identity


@dataclasses.dataclass(frozen=True)
class KeyedGumbel(GumbelMixer):
    """:class:`GumbelMixer` drawing from a known key, so the test knows the sample."""

    seed: int = 0

    def edge_weights(self, arch, rng=None, step_input=None):
        return super().edge_weights(arch, jax.random.key(self.seed), step_input)


def _init(module, shape):
    x = jnp.zeros((2, *shape), jnp.float32)
    # jit_init: the init program compiled without LLVM optimisation (it runs once)
    return jit_init(lambda k: module.init({"params": k, "mixer": k}, x, train=True))(
        jax.random.key(1)
    )


def test_sampled_nb201_supernet_is_the_discrete_network_of_the_sample():
    """A sampled forward of the NAS-Bench-201 supernet (only the sampled op of every edge
    computed) equals the discrete network of the sampled cell, variables copied across."""
    shape, tau = (8, 8, 3), 0.5
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, *shape)), jnp.float32)
    sup = NB201SuperNet(5, init_channels=4, cells_per_stage=1, primitives=NB4, mixer=KeyedGumbel())
    sv = _init(sup, shape)
    alpha = jnp.asarray(np.random.default_rng(1).normal(size=(6, 4)), jnp.float32)
    sv = dict(sv, arch={"cell": alpha})
    k = np.asarray(gumbel_hard(jax.random.key(0), alpha, tau)[1])
    assert np.any(k != np.asarray(alpha).argmax(-1))  # a draw, not the mode
    arch = nb201.NB201Arch(tuple(NB4[i] for i in k))
    rngs = {"mixer": jax.random.key(9)}  # the supernet asks; KeyedGumbel uses its own key
    y_sup = jit_init(lambda v: sup.apply(v, x, train=False, step_input={"tau": tau}, rngs=rngs))(sv)
    net = NB201Network(arch, 5, init_channels=4, cells_per_stage=1, affine=False)
    y_net, _ = jit_init(lambda v: net.apply(v, x, train=False))(variables_from_supernet(sv, arch))
    np.testing.assert_allclose(np.asarray(y_net), np.asarray(y_sup), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_sampled_darts_supernet_is_the_one_hot_supernet():
    """On the DARTS space, a sampled forward (one op per edge computed) equals the supernet
    that computes every op with one-hot weights on the sampled ops (BN in training mode)."""
    shape, tau = (8, 8, 1), 2.0
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, *shape)), jnp.float32)
    kw = dict(init_channels=4, layers=3, primitives=OPS4)
    sup = SuperNet(10, mixer=KeyedGumbel(seed=5), **kw)
    sv = _init(sup, shape)
    r = np.random.default_rng(2)
    arch = {n: jnp.asarray(r.normal(size=(14, 4)), jnp.float32) for n in ("normal", "reduce")}
    sv = dict(sv, arch=arch)

    def fwd(model, v, **kw):
        return model.apply(v, x, train=True, mutable=["batch_stats"], **kw)[0]

    rngs = {"mixer": jax.random.key(9)}  # the supernet asks; KeyedGumbel uses its own key
    y_sup = jit_init(lambda v: fwd(sup, v, step_input={"tau": tau}, rngs=rngs))(sv)
    one_hot = {n: gumbel_hard(jax.random.key(5), a, tau)[0] for n, a in arch.items()}
    dense = SuperNet(10, mixer=OneHotMixer(), **kw)
    y_dense = jit_init(lambda v: fwd(dense, v))(dict(sv, arch=one_hot))
    np.testing.assert_allclose(np.asarray(y_sup), np.asarray(y_dense), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------- schedule and configuration


def test_temperature_schedule_is_linear_per_epoch():
    """``tau(step) = tau_max - (tau_max - tau_min) * epoch / (epochs - 1)``, ``epoch = step
    // steps_per_epoch`` (the authors' code), held at tau_min after the last epoch; one
    epoch stays at tau_max."""
    c = load_config(os.path.join(ROOT, "configs/gdas_fmnist_tiny.py"), ["search.epochs=4"])
    m = GDAS(c, steps_per_epoch=3, num_classes=10, input_shape=(28, 28, 1))
    for step in range(16):
        e = min(step // 3, 3)
        assert float(m.tau_at(step)) == pytest.approx(10.0 - 9.9 * e / 3, abs=2e-6)  # float32
    assert float(m.tau_at(9)) == pytest.approx(0.1, abs=2e-6)
    c.search.epochs = 1
    one = GDAS(c, steps_per_epoch=3, num_classes=10, input_shape=(28, 28, 1))
    assert float(one.tau_at(2)) == 10.0


def test_configs_and_bad_settings():
    for name in ("gdas_fmnist_tiny", "gdas_nb201_cifar10"):
        c = load_config(os.path.join(ROOT, f"configs/{name}.py"), [])
        assert c.method == "gdas" and (c.search.tau_max, c.search.tau_min) == (10.0, 0.1)
    nb = load_config(os.path.join(ROOT, "configs/gdas_nb201_cifar10.py"), [])
    assert nb.model.space == "nb201" and nb.search.epochs == 240
    m = build(nb, steps_per_epoch=2, num_classes=10, input_shape=(32, 32, 3))
    assert isinstance(m, GDAS) and isinstance(m.model, NB201SuperNet)
    assert isinstance(m.model.mixer, GumbelMixer) and m.model.mixer.unselected_grad == "bias"
    tiny = load_config(os.path.join(ROOT, "configs/gdas_fmnist_tiny.py"), [])
    m = build(tiny, steps_per_epoch=2, num_classes=10, input_shape=(28, 28, 1))
    assert isinstance(m.model, SuperNet) and isinstance(m.model.mixer, GumbelMixer)
    for bad, word in [("search.tau_min=0", "tau_min"), ("search.unselected_grad=x", "unselected")]:
        with pytest.raises(ConfigError, match=word):
            load_config(os.path.join(ROOT, "configs/gdas_fmnist_tiny.py"), [bad])
    assert default_config("gdas").search.unselected_grad == "zero"


# ------------------------------------------------------------------- end to end


def _needs_fmnist():
    try:
        data.load("fashion_mnist", "train", limit=1)
    except data.DatasetNotFoundError as e:
        pytest.skip(str(e))


def _epochs(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [r for r in map(json.loads, f) if r.get("kind") == "epoch"]


@pytest.mark.slow
def test_fmnist_search_end_to_end(tmp_path):
    """Two short epochs of the tiny Fashion-MNIST config (one reduction cell at C = 2, 128
    images, four ops) through the runner: tau 10 then 0.1, alphas are softmax rows, a
    genotype is written.  What is checked (the runner's tau schedule, records, alphas and
    genotype files) does not depend on the cells; XLA's compile time, most of this test's
    time, grows with them."""
    from jaxnas.run import search

    _needs_fmnist()
    c = load_config(
        os.path.join(ROOT, "configs/gdas_fmnist_tiny.py"),
        [
            "search.epochs=2",
            "data.limit=128",
            "model.layers=1",
            "model.init_channels=2",
            "model.primitives=" + ",".join(OPS4),
            "run.eval_limit=32",
            "run.tensorboard=false",
        ],
    )
    s = search(c, str(tmp_path / "run"), progress=False)
    assert s["method"] == "gdas" and s["epochs"] == 2
    for k in ("train/loss", "valid/loss", "valid/accuracy", "test/accuracy"):
        assert np.isfinite(s["final"][k]), k
    taus = [r["train/tau"] for r in _epochs(s["workdir"])]
    np.testing.assert_allclose(taus, [10.0, 0.1], atol=2e-6)  # float32
    w = np.load(os.path.join(s["workdir"], "alphas", "epoch_002.npz"))
    assert set(w.files) == {"normal", "reduce"}
    np.testing.assert_allclose(w["normal"].sum(-1), 1.0, rtol=1e-5)
    assert json.load(open(s["genotype_json"]))


@pytest.mark.slow
def test_nb201_search_end_to_end(tmp_path):
    """One short epoch on the NAS-Bench-201 space (C=2, N=1, 48 images): the genotype file
    holds an NB201 cell of the searched ops."""
    from jaxnas.run import search

    _needs_fmnist()
    c = load_config(
        os.path.join(ROOT, "configs/gdas_fmnist_tiny.py"),
        [
            "model.space=nb201",
            "model.primitives=" + ",".join(NB4),
            "model.init_channels=2",
            "model.layers=1",
            "search.epochs=1",
            "search.unselected_grad=bias",
            "data.batch_size=8",
            "data.limit=48",
            "run.eval_limit=16",
            "run.tensorboard=false",
        ],
    )
    s = search(c, str(tmp_path / "run"), progress=False)
    arch = nb201.load(s["genotype_json"])
    assert str(arch) == s["genotype"] and set(arch.ops) <= set(NB4)
    assert np.isfinite(s["final"]["test/accuracy"])
