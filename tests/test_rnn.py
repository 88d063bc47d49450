"""SparseNAS' recurrent space: genotype, derivation, cells, dropouts, losses, ASGD, search."""

from __future__ import annotations

import json
import logging
import math
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnas.config import default_config, load_config
from jaxnas.genotype import GenotypeError
from jaxnas.rnn import (
    DARTS_V2,
    RNN_OPS,
    Dropouts,
    RNNGenotype,
    derive_rnn,
    discrete_cell,
    edge_index,
    init_discrete_params,
    init_supernet_params,
    lm_forward,
    lm_loss,
    node_groups,
    supernet_arch_for,
    supernet_cell,
)
from jaxnas.rnn.model import supernet_states
from jaxnas.train_rnn import asgd_average, nonmono_switch, param_count, perplexity

ROOT = os.path.dirname(os.path.dirname(__file__))
V, H, B, T = 11, 4, 3, 5

# jitted once: op-by-op dispatch of the unrolled cell is far slower than its compile
states_jit = jax.jit(supernet_states, static_argnames=("ops", "batchnorm"))
cell_jit = jax.jit(
    lambda p, a, *inputs, batchnorm=True: supernet_cell(p, a, batchnorm=batchnorm)(*inputs),
    static_argnames="batchnorm",
)
discrete_jit = jax.jit(lambda p, g, *inputs: discrete_cell(p, g)(*inputs), static_argnums=1)


def _params(seed=0, steps=8, scale=1.0):
    p = init_supernet_params(jax.random.PRNGKey(seed), V, H, steps)
    # larger weights than DARTS' U(-0.04, 0.04) so every nonlinearity matters in the checks
    return jax.tree.map(lambda x: x * scale, p)


def _inputs(seed=1, dtype=jnp.float64):
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    x = jax.random.normal(k1, (B, H), dtype)
    h = jax.random.normal(k2, (B, H), dtype)
    return x, h, jnp.ones((B, H), dtype), jnp.ones((B, H), dtype)


def _as64(tree):
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), tree)


def _group(i):
    return slice(edge_index(i, 0), edge_index(i, 0) + i)


# ------------------------------------------------------------------------------ genotype


def test_edges_and_groups_layout():
    rows = sorted(edge_index(i, j) for i in range(1, 9) for j in range(i))
    assert rows == list(range(36))
    ids = node_groups(len(RNN_OPS))
    assert ids.shape == (36, 4)
    sizes = [int(np.sum(ids == g)) for g in range(8)]
    assert sizes == [4 * i for i in range(1, 9)]  # group i: its 4 i incoming weights


def test_genotype_json_round_trip_and_darts_form(tmp_path):
    assert DARTS_V2.is_single_path and DARTS_V2.recurrent[5] == ("sigmoid", 5)
    assert DARTS_V2.concat == tuple(range(1, 9))
    mixed = RNNGenotype(nodes=((("tanh", 0), ("relu", 0)), (), (("identity", 1),)), concat=(1, 3))
    for g in (DARTS_V2, mixed):
        assert RNNGenotype.from_json(g.to_json()) == g
        g.save_json(tmp_path / "g.json")
        assert RNNGenotype.load(tmp_path / "g.json") == g
    d = json.loads(DARTS_V2.to_json())
    assert d["recurrent"][0] == ["sigmoid", 0] and "nodes" not in d


@pytest.mark.parametrize(
    "nodes, concat, match",
    [
        (((("conv", 0),),), (1,), "unknown op"),
        (((("tanh", 1),),), (1,), "predecessor 1"),
        ((((("tanh", 0),)), (), (("relu", 2),)), (1, 3), "dropped node"),
        (((("tanh", 0),), ()), (1, 2), "not a kept node"),
        (((("tanh", 0),),), (1, 1), "distinct"),
        ((("tanh", 0),), (1,), "pair"),
    ],
)
def test_genotype_validation(nodes, concat, match):
    with pytest.raises(GenotypeError, match=match):
        RNNGenotype(nodes=nodes, concat=concat)


def test_genotype_json_errors():
    with pytest.raises(GenotypeError, match="malformed"):
        RNNGenotype.from_json("{")
    with pytest.raises(GenotypeError, match="exactly one"):
        RNNGenotype.from_json('{"concat": [1]}')


def test_derivation_on_hand_made_theta(caplog):
    ops = RNN_OPS
    th = np.zeros((36, 4))
    th[edge_index(1, 0), ops.index("tanh")] = 0.5
    th[edge_index(1, 0), ops.index("relu")] = -0.7  # |theta| orders the pairs
    th[edge_index(2, 1), ops.index("sigmoid")] = 0.3
    # node 3: whole group zero -> dropped; node 4 only reads node 3 -> dropped too
    th[edge_index(4, 3), ops.index("tanh")] = 0.9
    # node 5: an edge from the dead node 3 (dropped) and one from node 2 (kept)
    th[edge_index(5, 3), ops.index("relu")] = 0.4
    th[edge_index(5, 2), ops.index("identity")] = 0.2
    th[edge_index(6, 5), ops.index("tanh")] = 1e-4  # below the threshold below
    g = derive_rnn(th, ops)
    assert g.nodes[0] == (("relu", 0), ("tanh", 0))
    assert g.nodes[1] == (("sigmoid", 1),)
    assert g.nodes[2] == () and g.nodes[3] == ()
    assert g.nodes[4] == (("identity", 2),)
    assert g.nodes[5] == (("tanh", 5),)
    assert g.concat == (1, 2, 5, 6)
    g = derive_rnn(th, ops, threshold=1e-3)  # the Adam/SGD baselines' hard threshold
    assert g.nodes[5] == () and g.concat == (1, 2, 5)
    with caplog.at_level(logging.WARNING):
        g = derive_rnn(np.zeros((36, 4)), ops)
    assert g.concat == (0,) and "pruned" in caplog.text
    with pytest.raises(GenotypeError, match="shape"):
        derive_rnn(np.zeros((36, 5)), ops)
    with pytest.raises(GenotypeError, match="triangular"):
        derive_rnn(np.zeros((35, 4)), ops)


# --------------------------------------------------------------------------------- cells


def test_supernet_node_is_linear_in_its_group(x64):
    p = _as64(_params(steps=4, scale=10.0))  # 4 nodes keep the compile short
    x, h, xm, hm = _inputs()
    rng = np.random.default_rng(0)
    base = jnp.asarray(rng.normal(size=(10, 4)))
    for i in (1, 2, 4):
        u, v = rng.normal(size=(i, 4)), rng.normal(size=(i, 4))

        def s_i(group, i=i):
            a = base.at[_group(i)].set(group)
            return states_jit(p, a, x, h, xm, hm, batchnorm=False)[i]

        a_, b_ = 1.7, -0.6
        np.testing.assert_allclose(
            s_i(a_ * u + b_ * v), a_ * s_i(u) + b_ * s_i(v), rtol=1e-10, atol=1e-12
        )
        # with the search cell's BN the node is invariant to a positive scale of its group
        s_bn = [states_jit(p, base.at[_group(i)].set(c * u), x, h, xm, hm)[i] for c in (1.0, 3.0)]
        np.testing.assert_allclose(s_bn[0], s_bn[1], atol=1e-4)  # up to BN's eps = 1e-5


@pytest.mark.parametrize(
    "genotype",
    [
        DARTS_V2,
        RNNGenotype(  # mixed path, every node kept, several pairs and predecessors
            nodes=(
                (("tanh", 0), ("relu", 0)),
                (("sigmoid", 1),),
                (("identity", 0), ("tanh", 2), ("relu", 1)),
                (("sigmoid", 3), ("identity", 2)),
            ),
            concat=(1, 2, 3, 4),
        ),
    ],
)
def test_one_hot_supernet_equals_discrete_cell(x64, genotype):
    p = _as64(_params(steps=genotype.steps, scale=10.0))
    arch = jnp.asarray(supernet_arch_for(genotype), jnp.float64)
    dp = dict(p, ws={str(i): p["ws"][i - 1] for i in range(1, genotype.steps + 1)})
    x, h, xm, hm = _inputs()
    np.testing.assert_allclose(
        cell_jit(p, arch, x, h, xm, hm, batchnorm=False),
        discrete_jit(dp, genotype, x, h, xm, hm),
        rtol=1e-12,
        atol=1e-12,
    )
    if genotype.steps == 8:
        return  # the language-model check below runs on the 4-node cell (compile time)
    # the same through the whole language model, dropout masks included
    tokens = jax.random.randint(jax.random.PRNGKey(3), (B, T), 0, V)
    d = Dropouts(output=0.3, hidden=0.2, x=0.4, input=0.1, embedding=0.2)
    key = jax.random.PRNGKey(4)

    @jax.jit
    def run_both(p, dp):
        def run(cell, params):
            return lm_forward(
                params, cell, tokens, h, jnp.int32(T), dropouts=d, rng=key, train=True
            )

        sup = run(supernet_cell(p, arch, batchnorm=False), p)
        dis = run(discrete_cell(dp, genotype), dp)
        return sup, dis

    sup, dis = run_both(p, dp)
    for a, b in zip(sup, dis):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_scanned_nodes_equal_unrolled_nodes(x64):
    p = _as64(_params(steps=4, scale=10.0))
    x, h, xm, hm = _inputs()
    arch = jnp.asarray(np.random.default_rng(2).normal(size=(10, 4)))
    for bn in (False, True):
        a = states_jit(p, arch, x, h, xm, hm, batchnorm=bn)
        b = jax.jit(supernet_states, static_argnames=("batchnorm", "scan_nodes"))(
            p, arch, x, h, xm, hm, batchnorm=bn, scan_nodes=True
        )
        for sa, sb in zip(a, b):
            np.testing.assert_allclose(sa, sb, rtol=1e-10, atol=1e-12)


def test_zero_group_zeroes_its_node(x64):
    """A zero group gives ``s_i = sum 0 * hw = 0`` exactly: not its predecessors'
    highway value, zero.  Its ``W_i`` then has no effect, and with the search BN the
    edges out of it add the constant ``A sigmoid(0) f(0)`` that BN removes -- which is
    why the derivation may drop them."""
    p = _as64(_params(steps=5, scale=10.0))
    x, h, xm, hm = _inputs()
    arch = jnp.asarray(np.random.default_rng(1).normal(size=(15, 4))).at[_group(3)].set(0.0)
    for bn in (False, True):
        s = states_jit(p, arch, x, h, xm, hm, batchnorm=bn)
        assert np.all(np.asarray(s[3]) == 0.0)

    @jax.jit
    def out(ws3, a):
        q = dict(p, ws=p["ws"].at[2].set(ws3))
        return supernet_cell(q, a)(x, h, xm, hm)

    other_w3 = p["ws"][2] + 3.0
    assert np.array_equal(out(p["ws"][2], arch), out(other_w3, arch))  # W_3 has no effect
    changed = arch
    for i in range(4, 6):  # every edge out of node 3, every op (sigmoid: a nonzero constant)
        changed = changed.at[edge_index(i, 3)].set(np.random.default_rng(i).normal(size=4) * 5)
    np.testing.assert_allclose(
        out(p["ws"][2], arch), out(p["ws"][2], changed), rtol=1e-6, atol=1e-6
    )
    no_bn = [cell_jit(p, a, x, h, xm, hm, batchnorm=False) for a in (arch, changed)]
    assert not np.allclose(no_bn[0], no_bn[1])  # without BN the constant is there


# ------------------------------------------------------------------------------ dropouts


def _identity_lm(cell, tokens, d, seed=0):
    p = _params()
    h0 = jnp.zeros((B, H))
    logits, h, raw = lm_forward(
        p, cell, tokens, h0, jnp.int32(T), dropouts=d, rng=jax.random.PRNGKey(seed), train=True
    )
    return p, raw


def test_variational_masks_are_constant_across_time():
    same = jnp.full((B, T), 2)  # one word repeated: any change over time is the mask's
    # input dropout (locked): the cell passes x_t through
    p, raw = _identity_lm(lambda x, h, xm, hm: x, same, Dropouts(input=0.5))
    emb = p["embedding"][2]
    ratio = np.asarray(raw / emb)  # (B, T, H): 0 or 1 / (1 - p)
    assert set(np.round(np.unique(ratio), 6)) <= {0.0, 2.0}
    assert np.all(ratio == ratio[:, :1])  # the same mask at every time step
    assert 0 < np.mean(ratio == 0) < 1
    # x and h masks of the cell
    for d, pick in (
        (Dropouts(x=0.5), lambda xm, hm: xm),
        (Dropouts(hidden=0.5), lambda xm, hm: hm),
    ):
        _, raw = _identity_lm(lambda x, h, xm, hm, pick=pick: pick(xm, hm), same, d, seed=1)
        assert np.all(raw == raw[:, :1]) and set(np.unique(np.asarray(raw))) == {0.0, 2.0}


def test_embedding_dropout_drops_whole_words():
    tokens = jnp.tile(jnp.arange(T)[None] % 3, (B, 1))  # words 0, 1, 2 at several positions
    p, raw = _identity_lm(lambda x, h, xm, hm: x, tokens, Dropouts(embedding=0.5), seed=2)
    seen = set()
    for w in range(3):
        pos = np.asarray(tokens) == w
        r = np.asarray(raw)[pos] / np.asarray(p["embedding"][w])  # (n_pos, H)
        np.testing.assert_allclose(r, r[0:1].repeat(len(r), 0))  # same at every position
        assert np.allclose(r, 0.0) or np.allclose(r, 2.0)  # dropped or scaled by 1/(1-p)
        seen.add(bool(np.allclose(r, 0.0)))
    assert seen == {True, False} or len(seen) == 1  # random, but whole words either way


def test_eval_mode_has_no_dropout():
    tokens = jnp.full((B, T), 1)
    p = _params()
    d = Dropouts(output=0.5, hidden=0.5, x=0.5, input=0.5, embedding=0.5)
    runs = [
        lm_forward(
            p,
            lambda x, h, xm, hm: x * xm * hm,
            tokens,
            jnp.zeros((B, H)),
            jnp.int32(T),
            dropouts=d,
            rng=None,
            train=False,
        )[2]
        for _ in range(2)
    ]
    np.testing.assert_array_equal(runs[0], jnp.broadcast_to(p["embedding"][1], (B, T, H)))


# ---------------------------------------------------------------------- loss and ASGD


def test_perplexity_is_exp_mean_nll_and_padding_is_ignored(x64):
    # uniform logits: NLL = log V per token, perplexity V
    logits = jnp.zeros((2, 4, V))
    targets = jnp.zeros((2, 4), jnp.int32)
    loss, (s, c) = lm_loss(logits, targets, jnp.int32(4))
    assert float(loss) == pytest.approx(math.log(V)) and perplexity(float(s), float(c)) == (
        pytest.approx(V)
    )
    # hand case: p(target) = 1/2 then 1/4 -> perplexity exp((ln 2 + ln 4) / 2) = 2^1.5
    lg = jnp.log(jnp.array([[[0.5, 0.25, 0.25], [0.25, 0.5, 0.25], [9.0, -9.0, 3.0]]]))
    lg = jnp.nan_to_num(lg, nan=0.0)
    loss, (s, c) = lm_loss(lg, jnp.array([[0, 0, 1]]), jnp.int32(2))  # position 2 is padding
    assert float(c) == 2 and perplexity(float(s), float(c)) == pytest.approx(2**1.5)


def test_asgd_average_is_the_mean_of_the_iterates(x64):
    rng = np.random.default_rng(0)
    iterates = [{"w": rng.normal(size=(3, 2)), "b": rng.normal(size=4)} for _ in range(7)]
    avg, count = jax.tree.map(jnp.zeros_like, iterates[0]), jnp.zeros((), jnp.int32)
    for k, it in enumerate(iterates, start=1):
        avg, count = asgd_average(avg, count, it)
        mean = jax.tree.map(lambda *xs: np.mean(xs, axis=0), *iterates[:k])
        for key in ("w", "b"):
            np.testing.assert_allclose(avg[key], mean[key], rtol=1e-12)
    assert int(count) == 7


def test_nonmono_trigger():
    assert not nonmono_switch([5.0, 4.0, 3.0], 3.5, 5)  # too short a history
    hist = [5.0, 4.0, 3.0, 2.9, 2.8, 2.7]
    assert not nonmono_switch(hist, 2.6, 5)  # still improving on hist[:-5] = [5.0]
    assert nonmono_switch(hist, 5.1, 5)  # worse than the best of all but the last 5
    assert nonmono_switch([3.0, 9, 9, 9, 9, 9], 3.01, 5)
    assert not nonmono_switch([3.0, 9, 9, 9, 9, 9], 2.99, 5)


def test_ptb_parameter_count_is_darts_23m():
    shapes = jax.eval_shape(
        lambda k: init_discrete_params(k, 10000, 850, DARTS_V2), jax.random.PRNGKey(0)
    )
    n = param_count(shapes)
    # tied embedding V H + bias V + W_0 (2H)^2 + 8 W_i H 2H (Table 3: 23M)
    assert n == 10000 * 850 + 10000 + 1700 * 1700 + 8 * 850 * 1700 == 22_960_000


# -------------------------------------------------------------------------------- search


def _tiny_search_config(**over):
    c = default_config("sparsenas_rnn")
    c.model.size, c.model.steps, c.model.scan_nodes = 4, 2, False
    c.text.bptt = 4
    c.data.batch_size = B
    for k, v in over.items():
        section, key = k.split(".")
        c[section][key] = v
    return c


def test_second_order_hypergradient_matches_finite_differences(x64):
    from jaxnas.search.sparsenas_rnn import SparseNASRNN

    c = _tiny_search_config(**{"search.order": "second"})
    m = SparseNASRNN(c, vocab_size=V, steps_per_epoch=5)
    state = m.init(jax.random.PRNGKey(0), B)
    state = state.replace(
        params=_as64(jax.tree.map(lambda a: a * 10, state.params)),
        arch=_as64(state.arch),
        h_train=_as64(state.h_train),
        h_valid=_as64(state.h_valid),
    )
    r = np.random.default_rng(0)
    win = lambda: (  # noqa: E731
        jnp.asarray(r.integers(0, V, (B, 4)), jnp.int32),
        jnp.asarray(r.integers(0, V, (B, 4)), jnp.int32),
        jnp.int32(3),
    )
    tw, vw = win(), win()
    kt, kv = jax.random.PRNGKey(5), jax.random.PRNGKey(6)
    xi = 0.3
    arch_gradient = jax.jit(m.arch_gradient)
    g, lv, _ = arch_gradient(state, tw, vw, xi, kt, kv)
    d = {"recurrent": jnp.asarray(r.normal(size=state.arch["recurrent"].shape))}

    def f(t):
        a = jax.tree.map(lambda x, y: x + t * y, state.arch, d)
        return float(arch_gradient(state.replace(arch=a), tw, vw, xi, kt, kv)[1])

    eps = 1e-5
    fd = (f(eps) - f(-eps)) / (2 * eps)
    assert float(jnp.sum(g["recurrent"] * d["recurrent"])) == pytest.approx(fd, rel=1e-5)
    # xi = 0 is the first-order gradient
    g0 = arch_gradient(state, tw, vw, 0.0, kt, kv)[0]
    m1 = SparseNASRNN(_tiny_search_config(**{"search.order": "first"}), vocab_size=V,
                      steps_per_epoch=5)  # fmt: skip
    g1 = jax.jit(m1.arch_gradient)(state, tw, vw, 0.0, kt, kv)[0]
    np.testing.assert_allclose(g0["recurrent"], g1["recurrent"], rtol=1e-12)


def test_search_config_errors():
    from jaxnas.search.sparsenas_rnn import SparseNASRNN

    for key, value, match in (
        ("search.optimizer", "adam", "optimizer"),
        ("search.order", "third", "order"),
        ("model.arch_init", "zeros", "arch_init"),
    ):
        with pytest.raises(ValueError, match=match):
            SparseNASRNN(_tiny_search_config(**{key: value}), vocab_size=V, steps_per_epoch=2)


@pytest.mark.slow
def test_tiny_search_end_to_end_and_resume(tmp_path):
    from jaxnas.run_rnn import search

    over = [
        "search.epochs=2",
        "search.order=first",
        "model.steps=3",
        "model.size=8",
        "search.lam_step=3.0",
        "optim.a_lr=0.05",
        "run.tensorboard=true",
    ]
    cfg = os.path.join(ROOT, "configs", "sparsenas_rnn_tiny.py")
    full = search(load_config(cfg, over), tmp_path / "full", progress=False)
    g = RNNGenotype.load(full["genotype_json"])
    assert str(g) == full["genotype"]
    records = [json.loads(x) for x in open(tmp_path / "full" / "metrics.jsonl")]
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == [1, 2]
    final = full["final"]
    assert math.isfinite(final["valid/ppl"]) and final["theta_zero_frac"] > 0  # exact zeros
    with np.load(tmp_path / "full" / "alphas" / "epoch_002.npz") as f:
        theta = f["recurrent"]
    assert theta.shape == (6, 4) and np.any(theta == 0)
    assert derive_rnn(theta) == g
    # TensorBoard: every epoch record's numbers at the epoch's last step
    from test_rnn_runtime import _read_events  # tests/ is on sys.path (pytest prepend mode)

    ends = [r["step"] for r in records if r["kind"] == "epoch"]
    tags = _read_events(tmp_path / "full" / "tb")
    for tag in ("train/loss", "valid/ppl", "theta_zero_frac", "lam", "n_nodes"):
        assert [s for s, _ in tags[tag]] == ends, tag
    # SIGTERM in the middle of epoch 2 (a checkpoint of that step), resumed: the same
    # architecture as the uninterrupted run, bit for bit
    from jaxnas.runtime import Interrupted

    kill_at = ends[0] + 3

    def on_step(epoch, step):
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(Interrupted, match=f"at step {kill_at}"):
        search(load_config(cfg, over), tmp_path / "part", progress=False, on_step=on_step)
    assert sorted(os.listdir(tmp_path / "part" / "checkpoints")) == sorted(
        [str(ends[0]), str(kill_at)]
    )
    part = search(load_config(cfg, over), tmp_path / "part", resume=True, progress=False)
    assert part["genotype"] == full["genotype"]
    with np.load(tmp_path / "part" / "alphas" / "epoch_002.npz") as f:
        np.testing.assert_array_equal(f["recurrent"], theta)
    part_records = [json.loads(x) for x in open(tmp_path / "part" / "metrics.jsonl")]
    assert [{k: v for k, v in r.items() if k != "time"} for r in part_records] == [
        {k: v for k, v in r.items() if k != "time"} for r in records
    ]  # the cut epoch's record too: its step metrics were kept for the resume
    assert os.path.exists(tmp_path / "part" / "genotype_recurrent.png")


@pytest.mark.slow
def test_tiny_retraining_beats_the_unigram_perplexity(tmp_path):
    from jaxnas.data_text import load_corpus, unigram_perplexity
    from jaxnas.train_rnn import train

    cfg = load_config(os.path.join(ROOT, "configs", "eval_rnn_tiny.py"), ["train.epochs=25"])
    s = train(cfg, tmp_path / "run", progress=False)
    corpus = load_corpus(cfg.data.data_dir)
    unigram = unigram_perplexity(corpus)
    assert s["best"]["value"] < 0.95 * unigram, (s["best"], unigram)
    assert math.isfinite(s["test_ppl"]) and s["asgd_epoch"] is not None


@pytest.mark.parametrize(
    "name, method",
    [
        ("sparsenas_ptb", "sparsenas_rnn"),
        ("sparsenas_rnn_tiny", "sparsenas_rnn"),
        ("eval_ptb", "train_rnn"),
        ("eval_rnn_tiny", "train_rnn"),
    ],
)
def test_shipped_rnn_configs_load(name, method):
    c = load_config(os.path.join(ROOT, "configs", f"{name}.py"))
    assert c.method == method and c.data.dataset == "ptb"
    if name.endswith("ptb"):  # the paper's settings
        assert c.data.batch_size == (256 if method == "sparsenas_rnn" else 64)
        assert c.optim.get("a_lr", 1e-4) == 1e-4 and c.text.bptt == 35


def test_missing_ptb_is_a_one_line_run_error(tmp_path):
    from jaxnas.data import DatasetNotFoundError
    from jaxnas.run_rnn import search

    c = load_config(
        os.path.join(ROOT, "configs", "sparsenas_ptb.py"), [f"data.data_dir={tmp_path}"]
    )
    with pytest.raises(DatasetNotFoundError, match="ptb.train.txt"):
        search(c, tmp_path / "wd", progress=False)


@pytest.mark.parametrize(
    "command, config", [("search", "sparsenas_rnn_tiny"), ("train", "eval_rnn_tiny")]
)
def test_cli_dispatches_rnn_configs(tmp_path, capsys, command, config):
    from jaxnas import cli

    argv = [command, "--config", os.path.join(ROOT, "configs", f"{config}.py")]
    argv += ["--workdir", str(tmp_path / "wd"), "--set", f"data.data_dir={tmp_path}"]
    assert cli.main(argv) == 2  # reached the text loader: the one-line missing-data error
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ptb.train.txt" in err[0]
    # a retraining config is refused by `jaxnas search` before any data is read
    if command == "train":
        assert cli.main(["search", *argv[1:]]) == 2
        assert "jaxnas train" in capsys.readouterr().err
