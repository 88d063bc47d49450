"""The recurrent space's supernet for an edge mixer (jaxnas.rnn.supernet): DARTS' softmax,
SparseNAS' free A, GDAS' Gumbel sample; the mixers it cannot honour raise."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnas.config import default_config
from jaxnas.rnn import RNN_OPS, RNN_PRIMITIVES, RNNGenotype, discrete_cell, edge_index
from jaxnas.rnn.model import lm_forward, lm_loss, supernet_cell
from jaxnas.search.asmnas import ASMMixer
from jaxnas.search.bayesnas import BayesMixer
from jaxnas.search.gdas import GumbelMixer
from jaxnas.search.prdarts import GateMixer
from jaxnas.search.sparsenas import LinearMixer
from jaxnas.search.sparsenas_rnn import SparseNASRNN
from jaxnas.search_spaces import RNN_SPACE
from jaxnas.supernet import Mixer, SoftmaxMixer

V, H, B, T = 7, 3, 4, 5
STEPS = 4  # 10 edges: small programs


def _net(mixer, primitives=RNN_PRIMITIVES, *, batchnorm=False, scan_nodes=False, steps=STEPS):
    model = dict(size=H, steps=steps, batchnorm=batchnorm, scan_nodes=scan_nodes)
    return RNN_SPACE.lm_supernet(mixer, vocab_size=V, model=model, primitives=primitives)


def _params(net, dtype=jnp.float64, scale=10.0):
    # larger weights than DARTS' U(-0.04, 0.04) so every nonlinearity matters
    p = net.init(jax.random.PRNGKey(0))
    return jax.tree.map(lambda a: jnp.asarray(a * scale, dtype), p)


def _inputs(dtype=jnp.float64):
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(1), 3)
    x = jax.random.normal(k1, (B, H), dtype)
    h = jax.random.normal(k2, (B, H), dtype)
    hm = jnp.where(jax.random.uniform(k3, (B, H)) < 0.3, 0.0, 1.4).astype(dtype)  # dropouth
    return x, h, jnp.ones((B, H), dtype), hm


def _discrete_params(p):
    return dict(p, ws={str(i): p["ws"][i - 1] for i in range(1, p["ws"].shape[0] + 1)})


def _cell_fn(net):
    """jitted ``(params, arch, rng, step_input, inputs) -> h_t`` of ``net``."""
    return jax.jit(lambda p, a, rng, si, inputs: net.cell(p, {"recurrent": a}, rng, si)(*inputs))


def _one_hot_logits(pairs, primitives, scale):
    """alpha with ``scale`` on each node's ``(op, j)`` pair and on ``none`` elsewhere."""
    alpha = np.zeros((len(pairs) * (len(pairs) + 1) // 2, len(primitives)))
    alpha[:, primitives.index("none")] = scale
    for i, (f, j) in enumerate(pairs, start=1):
        alpha[edge_index(i, j)] = 0.0
        alpha[edge_index(i, j), primitives.index(f)] = scale
    return alpha


def test_softmax_of_a_one_hot_alpha_is_the_discrete_cell(x64):
    """DARTS' mixer on DARTS' 5 primitives: softmax(50 e_k) is one-hot to e^-50, so the
    cell is the DARTS genotype's, each node ``hw_f(s_j)`` of its one pair (the scanned
    node schedule: the GDAS test below)."""
    genotype = RNNGenotype.from_darts([("sigmoid", 0), ("relu", 1), ("tanh", 1), ("identity", 2)])
    net = _net(SoftmaxMixer())
    p, inputs = _params(net), _inputs()
    alpha = jnp.asarray(_one_hot_logits(genotype.recurrent, RNN_PRIMITIVES, 50.0))
    got = _cell_fn(net)(p, alpha, None, None, inputs)
    want = discrete_cell(_discrete_params(p), genotype)(*inputs)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def _by_hand(p, alpha, inputs, primitives, batchnorm):
    """DARTS' model_search.py cell in numpy: s_i = sum_j sum_f softmax(alpha_e)_f hw_f(s_j)."""
    x, h, xm, hm = (np.asarray(a) for a in inputs)
    acts = {
        "tanh": np.tanh,
        "relu": lambda z: np.maximum(z, 0.0),
        "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)),
        "identity": lambda z: z,
    }

    def sig(z):
        return 1.0 / (1.0 + np.exp(-z))

    def bn(s):
        return (s - s.mean(0)) / np.sqrt(s.var(0) + 1e-5) if batchnorm else s

    ck = np.concatenate([x * xm, h * hm], -1) @ np.asarray(p["w0"])
    states = [bn(h + sig(ck[:, :H]) * (np.tanh(ck[:, H:]) - h))]
    for i in range(1, p["ws"].shape[0] + 1):
        s = np.zeros((B, H))
        for j in range(i):
            e = edge_index(i, j)
            w = np.exp(alpha[e] - alpha[e].max())
            w /= w.sum()
            ck = (states[j] * hm) @ np.asarray(p["ws"][i - 1])
            for f, name in enumerate(primitives):
                if name != "none":
                    s += w[f] * (states[j] + sig(ck[:, :H]) * (acts[name](ck[:, H:]) - states[j]))
        states.append(bn(s))
    return np.mean(states[1:], axis=0)


def test_softmax_cell_is_the_by_hand_sum_over_edges_and_ops(x64):
    """Random alpha, DARTS' 5 primitives, BN on: both node schedules equal the by-hand
    DARTS search cell (the ``none`` column adds exactly zero)."""
    alpha = np.random.default_rng(3).normal(size=(10, 5)) * 2.0
    for scan_nodes in (False, True):
        net = _net(SoftmaxMixer(), batchnorm=True, scan_nodes=scan_nodes)
        p, inputs = _params(net, scale=3.0), _inputs()
        got = _cell_fn(net)(p, jnp.asarray(alpha), None, None, inputs)
        want = _by_hand(p, alpha, inputs, RNN_PRIMITIVES, batchnorm=True)
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_linear_mixer_is_sparsenas_free_a_cell_bit_for_bit():
    """``w = A``: the LinearMixer cell is the free-A cell exactly (float32, unrolled
    nodes), and so is SparseNAS' loss (through RNN_SPACE's supernet, scanned nodes)
    against the cell called directly."""
    a = jnp.asarray(np.random.default_rng(4).normal(size=(10, 4)), jnp.float32)
    inputs = _inputs(jnp.float32)
    net = _net(LinearMixer(), RNN_OPS, batchnorm=True)
    p = _params(net, jnp.float32, scale=1.0)
    got = _cell_fn(net)(p, a, None, None, inputs)
    free = jax.jit(lambda p, a, i: supernet_cell(p, a)(*i))
    np.testing.assert_array_equal(got, free(p, a, inputs))
    c = default_config("sparsenas_rnn")
    c.model.update(size=H, steps=STEPS, tar_beta=0.0)
    m = SparseNASRNN(c, vocab_size=V, steps_per_epoch=2)
    state = m.init(jax.random.PRNGKey(5), B)
    tokens = jax.random.randint(jax.random.PRNGKey(6), (B, T), 0, V)
    window, key = (tokens, jnp.roll(tokens, 1, axis=1), jnp.int32(T)), jax.random.PRNGKey(7)

    @jax.jit
    def both(params, arch):
        loss = m.loss(params, arch, window, state.h_train, key)[0]
        cell = supernet_cell(params, arch["recurrent"], scan_nodes=c.model.scan_nodes)
        logits = lm_forward(
            params, cell, tokens, state.h_train, window[2], dropouts=m.dropouts, rng=key, train=True
        )[0]
        return loss, lm_loss(logits, window[1], window[2])[0]

    loss, direct = both(state.params, state.arch)
    assert loss == direct


def test_gdas_hard_sample_is_the_discrete_cell_of_the_sampled_ops(x64):
    """GDAS' mixer with the 5 primitives: every edge but one per node is forced to
    ``none`` (logit gap 60 >> the Gumbel noise), the live edge samples one of the 4
    activations at random: the cell equals the discrete cell of the sampled pairs, for
    ``unselected_grad`` "zero" (weighted sum) and "bias" (the vmapped combine hook)."""
    rng = np.random.default_rng(5)
    live = [int(rng.integers(i)) for i in range(1, STEPS + 1)]  # node i's live predecessor
    alpha = np.zeros((10, 5))
    alpha[:, 0] = 30.0
    for i, j in enumerate(live, start=1):
        alpha[edge_index(i, j)] = np.r_[-30.0, rng.normal(size=4)]
    alpha = jnp.asarray(alpha)
    step_input = {"tau": jnp.float64(2.0)}
    seen = set()
    for seed, (grad, scan_nodes) in enumerate([("zero", False), ("bias", True), ("zero", True)]):
        net = _net(GumbelMixer(unselected_grad=grad), scan_nodes=scan_nodes)
        p, inputs, key = _params(net), _inputs(), jax.random.PRNGKey(seed)
        w = np.asarray(net.edge_weights({"recurrent": alpha}, key, step_input))
        assert set(np.unique(w)) == {0.0, 1.0} and np.all(w.sum(1) == 1)  # one-hot exactly
        pairs = []
        for i, j in enumerate(live, start=1):
            k = int(np.argmax(w[edge_index(i, j)]))
            assert k != 0 and all(w[edge_index(i, q), 0] == 1 for q in range(i) if q != j)
            pairs.append((RNN_PRIMITIVES[k], j))
        seen.update(f for f, _ in pairs)
        got = _cell_fn(net)(p, alpha, key, step_input, inputs)
        want = discrete_cell(_discrete_params(p), RNNGenotype.from_darts(pairs))(*inputs)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert len(seen) > 1  # the sample did vary


@dataclasses.dataclass(frozen=True)
class _ActiveMixer(Mixer):
    """``w = arch``; computes only the ops of weight > 1/2 (GDAS' ``active``)."""

    def active(self, w):
        return w > 0.5


def test_active_ops_are_exact_zeros_in_value_and_gradient(x64):
    """An inactive op adds nothing and its weight gets no gradient (as when it is not
    computed, the ``active`` contract); an active weight does get one (no BN: it would
    make a node with one active op invariant to that op's weight).  PR-DARTS' gate mixer
    (``active = w != 0``) is the free-A cell of its weights."""
    net = _net(_ActiveMixer(), RNN_OPS, scan_nodes=True)
    p, inputs = _params(net, scale=3.0), _inputs()
    a = np.random.default_rng(6).uniform(-1.0, 1.5, size=(10, 4))
    a[0, 0] = 1.0  # s_1 (one edge) not identically zero, so the edges out of it matter
    a = jnp.asarray(a)
    masked = jnp.where(a > 0.5, a, 0.0)

    plain = _net(LinearMixer(), RNN_OPS, scan_nodes=True)

    def out(arch, n=net):
        return jnp.sum(n.cell(p, {"recurrent": arch})(*inputs) ** 2)

    np.testing.assert_allclose(out(a), out(masked, plain), rtol=1e-12)
    # PR-DARTS' gates: the ops of weight 0 are not computed, the same function
    gates = _net(GateMixer(), RNN_OPS, scan_nodes=True)
    np.testing.assert_allclose(out(masked, gates), out(masked, plain), rtol=1e-12)
    g = np.asarray(jax.jit(jax.grad(out))(a))
    assert np.all(g[np.asarray(a) <= 0.5] == 0.0)
    assert np.all(g[np.asarray(a) > 0.5] != 0.0)


def test_mixers_the_cell_cannot_honour_raise_one_clear_error():
    for mixer, hook in [(BayesMixer(), "edge_input"), (ASMMixer(), "combiner")]:
        name = type(mixer).__name__
        with pytest.raises(ValueError, match=f"rnn space cannot use {name}: its {hook} hook"):
            _net(mixer)
    with pytest.raises(ValueError, match="distinct names of"):
        _net(SoftmaxMixer(), ("none",))
    with pytest.raises(ValueError, match="distinct names of"):
        _net(SoftmaxMixer(), ("tanh", "conv_3x3"))
    with pytest.raises(ValueError, match="expected \\(10, 5\\)"):
        _net(SoftmaxMixer()).edge_weights({"recurrent": jnp.zeros((10, 4))})
    with pytest.raises(NotImplementedError, match="RNN_SPACE.lm_supernet"):
        RNN_SPACE.supernet(SoftmaxMixer(), num_classes=10, model={}, primitives=RNN_OPS)
    assert RNN_SPACE.resolve_primitives("darts_rnn") == RNN_PRIMITIVES
    assert RNN_SPACE.resolve_primitives(list(RNN_PRIMITIVES)) == RNN_PRIMITIVES
