"""ASM-NAS (Hao & Zhu, 2021): the attention mixer, single-level step, selection, per-cell nets.

Tiny shapes (C=2, 2 cells: one normal, one reduction, 8x8x1 images, batch 4); one
module-scoped method so init, the step and the selection pass compile once each.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnas.config import default_config
from jaxnas.genotype import CellGenotype, Genotype
from jaxnas.models.darts_net import make_network
from jaxnas.models.summary import count_params
from jaxnas.search import build
from jaxnas.search.asmnas import (
    AttentionCombiner,
    attention_bounds,
    cells_from_choice,
    op_embeddings,
    save_selection,
)

LO, HI = attention_bounds(8)
B, HW = 4, 8


def _outs(rng, scale=1.0, batch=B):
    """8 fake op outputs (B, 4, 4, 3); op 0 is the zero op (None)."""
    ys = [None] + [scale * rng.normal(size=(batch, 4, 4, 3)).astype(np.float32) for _ in range(7)]
    return [None if y is None else jnp.asarray(y) for y in ys]


def test_bounds_closed_form():
    assert LO == pytest.approx(1 / (1 + 7 * math.e)) and LO == pytest.approx(0.04993, abs=1e-5)
    assert HI == pytest.approx(0.27971, abs=1e-5)


def test_none_gives_exact_zero_embedding_and_eq_4_3():
    outs = _outs(np.random.default_rng(0))
    e = op_embeddings(outs)
    assert e.shape == (B, 8)
    assert np.all(np.asarray(e[:, 0]) == 0.0)  # exact zero, not merely small
    for k in range(1, 8):
        np.testing.assert_allclose(e[:, k], outs[k].mean(axis=(1, 2, 3)), rtol=1e-6)


@pytest.fixture(scope="module")
def combiner():
    rng = np.random.default_rng(1)
    outs = _outs(rng)
    mod = AttentionCombiner(hidden=(16, 16, 16))
    w = jnp.ones((8,))
    variables = mod.init(jax.random.key(0), outs, w)
    apply = jax.jit(
        lambda v, outs, w: mod.apply(v, outs, w, mutable=["intermediates"]),
    )

    def run(v, outs, w=w):
        y, inter = apply(v, outs, w)
        return y, inter["intermediates"]["coefficients"][0]

    return variables, run, outs


def test_coefficients_bounded_simplex_input_dependent(combiner):
    variables, run, outs = combiner
    y, a = run(variables, outs)
    a = np.asarray(a)
    assert a.shape == (B, 8)
    np.testing.assert_allclose(a.sum(-1), 1.0, rtol=1e-6)
    assert np.all(a > LO) and np.all(a < HI)
    # Eq. (4.2): the edge output is the coefficient-weighted sum of the op outputs
    ref = sum(a[:, k, None, None, None] * np.asarray(outs[k]) for k in range(1, 8))
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)
    # input dependence: different samples differ, a repeated sample repeats
    assert not np.allclose(a[0], a[1])
    rep = [None if o is None else jnp.broadcast_to(o[:1], o.shape) for o in outs]
    a_rep = np.asarray(run(variables, rep)[1])
    np.testing.assert_allclose(a_rep, np.broadcast_to(a_rep[:1], a_rep.shape), rtol=1e-6)
    # adversarially large weights saturate the sigmoid: still inside the closed bounds
    big = jax.tree.map(lambda x: x * 1e3, variables)
    a_big = np.asarray(run(big, _outs(np.random.default_rng(2), scale=10.0))[1])
    assert np.all(a_big >= LO - 1e-6) and np.all(a_big <= HI + 1e-6)
    assert np.all(a_big.max(-1) / a_big.min(-1) <= math.e * (1 + 1e-5))


def test_uniform_attention_and_fixed_mask(combiner):
    variables, run, outs = combiner
    p = variables["params"]["attention"]
    zero4 = jax.tree.map(jnp.zeros_like, p["fc4"])
    v = {"params": {"attention": dict(p, fc4=zero4)}}
    y, a = run(v, outs)  # z = 0.5 everywhere -> a = 1/8
    np.testing.assert_allclose(a, 1 / 8, rtol=1e-6)
    np.testing.assert_allclose(y, sum(np.asarray(o) for o in outs[1:]) / 8, rtol=1e-5, atol=1e-6)
    # a one-hot selection mask replaces the mixture by that op (weight 1)
    y, _ = run(variables, outs, jnp.eye(8)[5])
    np.testing.assert_array_equal(y, outs[5])
    y, _ = run(variables, outs, jnp.eye(8)[0])  # 'none' selected: the edge is zero
    assert np.all(np.asarray(y) == 0)


# ------------------------------------------------------------------------ supernet


def _config():
    c = default_config("asmnas")
    c.model.init_channels, c.model.layers, c.model.reductions = 2, 2, (1,)
    c.optim.weight_decay, c.optim.grad_clip = 0.0, 0.0  # update = -lr * gradient
    c.search.epochs = 1
    return c


@pytest.fixture(scope="module")
def method():
    return build(_config(), steps_per_epoch=2, num_classes=10, input_shape=(HW, HW, 1))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=(B, HW, HW, 1)).astype(np.float32) for _ in range(4)]
    ys = [rng.integers(0, 10, B).astype(np.int32) for _ in range(4)]
    return list(zip(xs, ys))


@pytest.fixture(scope="module")
def states(method, data):
    s0 = method.init(jax.random.key(0), data[0][0])
    s1, metrics = method.train_step(s0, data[0], data[3])
    s2, _ = method.train_step(s1, data[1], data[2])
    return s0, s1, s2, metrics


def test_arch_collection_is_only_the_selection_mask(method, states):
    s0, s1, s2, metrics = states
    assert sorted(s0.arch) == ["layer_00", "layer_01"]
    for s in (s0, s2):  # never trained
        for v in s.arch.values():
            np.testing.assert_array_equal(v, np.ones((14, 8)))
    # 14 attention modules per cell, 4 dense layers each, in "params"
    for cell, scans in (("cell_00", ("edges",)), ("cell_01", ("input_edges", "inner_edges"))):
        n = sum(
            s0.params[cell][sc]["edge"]["mixer"]["attention"]["fc1"]["kernel"].shape[0]
            for sc in scans
        )
        assert n == 14
        assert sorted(s0.params[cell][scans[0]]["edge"]["mixer"]["attention"]) == [
            "fc1",
            "fc2",
            "fc3",
            "fc4",
        ]
    assert np.isfinite(float(metrics["loss"])) and int(s2.step) == 2


def test_probe_is_the_held_out_batch(states, data):
    _, s1, s2, _ = states
    np.testing.assert_array_equal(s1.probe[0], data[3][0])
    np.testing.assert_array_equal(s2.probe[0], data[3][0])  # kept after the first step


def test_one_gradient_reaches_ops_and_attention(method, states):
    """Single level: one step of -lr * grad L_train moved op weights and all four
    attention layers of every edge (weight decay and clipping are off here)."""
    s0, s1, _, _ = states
    for cell, scan in (
        ("cell_00", "edges"),
        ("cell_01", "input_edges"),
        ("cell_01", "inner_edges"),
    ):
        e0, e1 = s0.params[cell][scan]["edge"], s1.params[cell][scan]["edge"]
        for layer in ("fc1", "fc2", "fc3", "fc4"):
            d = np.abs(
                np.asarray(e1["mixer"]["attention"][layer]["kernel"])
                - np.asarray(e0["mixer"]["attention"][layer]["kernel"])
            )
            assert np.all(d.reshape(d.shape[0], -1).max(-1) > 0), (cell, scan, layer)
        for op in ("sep_conv_3x3", "dil_conv_5x5"):
            d = jax.tree.map(
                lambda a, b: np.abs(np.asarray(a) - np.asarray(b)).max(), e0[op], e1[op]
            )
            assert max(jax.tree.leaves(d)) > 0, (cell, scan, op)


def test_selection_coefficients_and_determinism(method, states, data):
    _, _, s2, _ = states
    batches = [data[2], data[3]]
    params_before = jax.tree.map(np.asarray, s2.params)
    a = method.select(s2, batches, mode="one_pass")
    b = method.select(s2, batches, mode="one_pass")
    np.testing.assert_array_equal(a.choice, b.choice)
    np.testing.assert_array_equal(a.coefficients, b.coefficients)
    for x, y in zip(jax.tree.leaves(params_before), jax.tree.leaves(s2.params)):
        np.testing.assert_array_equal(x, y)  # selection only reads the weights
    assert a.coefficients.shape == (2, 14, 8) and a.examples == 2 * B
    np.testing.assert_allclose(a.coefficients.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(a.votes.sum(-1), 1.0, rtol=1e-6)
    assert np.all(a.coefficients > LO) and np.all(a.coefficients < HI)
    np.testing.assert_array_equal(a.choice, a.coefficients.argmax(-1))
    # input dependent: another held-out batch gives other coefficients
    c = method.select(s2, [data[0]], mode="one_pass")
    assert not np.allclose(c.coefficients, a.coefficients)
    # per-layer genotype: every edge keeps its argmax op unless it is 'none'
    g = a.genotype
    assert len(g.cells) == 2 and g.reduce == g.cells[1]
    kept = sum(len(node) for node in g.cells[0].nodes)
    assert kept == int(np.sum(a.choice[0] != 0))
    # the runner's per-epoch views (on the probe)
    w = method.arch_weights(s2)
    assert sorted(w) == ["layer_00", "layer_01"] and w["layer_00"].shape == (14, 8)
    assert len(method.genotype(s2).cells) == 2


def test_cell_by_cell_discretises_earlier_cells(method, states, data):
    _, _, s2, _ = states
    batches = [data[2], data[3]]
    one = method.select(s2, batches, mode="one_pass")
    seq = method.select(s2, batches, mode="cell_by_cell")
    # cell 0 sees the same input either way; cell 1 is read behind a discretised cell 0
    np.testing.assert_allclose(seq.coefficients[0], one.coefficients[0], rtol=1e-6)
    assert not np.allclose(seq.coefficients[1], one.coefficients[1], rtol=1e-6, atol=1e-7)


def test_one_pass_equals_cell_by_cell_when_cells_do_not_interact(method, states, data):
    """Zero Theta_1..Theta_3 kernels and biases: every edge's attention is sigmoid(b4)
    whatever its input, so discretising earlier cells cannot change later choices."""
    _, _, s2, _ = states
    rng = np.random.default_rng(3)

    def fix(path, x):
        names = [getattr(k, "key", "") for k in path]
        if "attention" not in names:
            return x
        if names[-2] == "fc4" and names[-1] == "bias":
            return jnp.asarray(3 * rng.normal(size=x.shape), x.dtype)
        if names[-2] in ("fc1", "fc2", "fc3"):
            return jnp.zeros_like(x)
        return x

    params = jax.tree_util.tree_map_with_path(fix, s2.params)
    state = s2.replace(params=params)
    batches = [data[2], data[3]]
    one = method.select(state, batches, mode="one_pass")
    seq = method.select(state, batches, mode="cell_by_cell")
    np.testing.assert_array_equal(one.choice, seq.choice)
    np.testing.assert_allclose(one.coefficients, seq.coefficients, rtol=1e-6)
    assert one.genotype == seq.genotype
    assert one.genotype.cells[0] != one.genotype.cells[1]
    vote = method.select(state, batches, mode="one_pass", aggregate="vote")
    np.testing.assert_array_equal(vote.choice, one.choice)  # constant attention: votes agree


def test_save_selection_writes_heatmaps(method, states, data, tmp_path):
    _, _, s2, _ = states
    sel = method.select(s2, [data[2]], mode="one_pass")
    files = save_selection(sel, tmp_path, method.primitives, method.reductions)
    for path in files.values():
        assert (tmp_path / path.split("/")[-1]).stat().st_size > 0
    saved = np.load(files["coefficients"])
    np.testing.assert_array_equal(saved["choice"], sel.choice)


def test_selected_genotype_records_reductions_and_retrains(method, states, data, tmp_path):
    """The supernet reduces at cell 1 only (DARTS' rule for 2 layers would reduce at 0 and
    1): the selected genotype records (1,), survives JSON, and ``jaxnas.train``'s Trainer
    builds, initialises and evaluates the 2-cell network with its reduction there; a config
    that places the reductions elsewhere is refused."""
    from jaxnas.genotype import GenotypeError, get_genotype, reduction_layers, save
    from jaxnas.train import Trainer

    _, _, s2, _ = states
    assert method.reductions == (1,) != reduction_layers(2)
    g = method.select(s2, [data[2]], mode="one_pass").genotype
    assert g.reductions == (1,) and method.genotype(s2).reductions == (1,)
    save(g, tmp_path / "genotype.json")
    g = get_genotype(str(tmp_path / "genotype.json"))
    assert g.reductions == (1,) and len(g.cells) == 2
    config = default_config("train")
    config.data.dataset, config.data.batch_size = "fashion_mnist", B
    config.model.init_channels, config.model.layers, config.model.auxiliary = 2, 2, False
    config.train.epochs, config.train.num_devices = 1, 1
    trainer = Trainer(config, g, num_classes=10, input_shape=(HW, HW, 1), steps_per_epoch=1)
    assert trainer.model.reduction_cells() == (1,)
    state = trainer.init(0)
    # one reduction: the classifier reads 4 nodes x 2C channels (two would give 4 x 4C)
    assert state.params["classifier"]["kernel"].shape == (4 * 2 * 2, 10)
    x, y = data[0]
    out = trainer.eval_step(state, (jnp.asarray(x), jnp.asarray(y), jnp.ones((B,), bool)))
    assert np.isfinite(float(out["loss"])) and float(out["count"]) == B
    config.model.reductions = (0, 1)
    with pytest.raises(GenotypeError, match="conflicts with the genotype's reductions"):
        Trainer(config, g, num_classes=10, input_shape=(HW, HW, 1), steps_per_epoch=1)


# ------------------------------------------------------------------------ discrete networks


def test_fifteen_distinct_cells_build():
    rng = np.random.default_rng(0)
    coef = rng.random((15, 14, 8))
    cells = cells_from_choice(coef.argmax(-1), coef, tuple(default_primitives()))
    assert len(set(cells)) == 15
    g = Genotype.from_cells(cells, reductions=(4, 9))  # the paper's 5th and 10th cells
    assert g.reduce == cells[4]
    net, shape = make_network(g, "fashion_mnist", init_channels=4, layers=15, auxiliary=False)
    assert net.reduction_cells() == (4, 9)
    v = jax.eval_shape(lambda: net.init(jax.random.key(0), jnp.zeros((1, *shape)), train=False))
    assert sorted(k for k in v["params"] if k.startswith("cell_")) == [
        f"cell_{i:02d}" for i in range(15)
    ]
    # cell 4 reduces (stride-2 edges from its inputs read 28x28 s1 of 4 * 4 channels),
    # cell 5 reduces its s0 (FactorizedReduce), cell 10 its s0 after cell 9
    assert v["params"]["cell_04"]["preprocess1"]["conv"]["kernel"].shape == (16, 8)
    for i in range(15):
        fact = "conv_1" in v["params"][f"cell_{i:02d}"]["preprocess0"]
        assert fact == (i in (5, 10)), i
    assert count_params(v["params"]) > 0


def default_primitives():
    from jaxnas.ops import DARTS_PRIMITIVES

    return DARTS_PRIMITIVES


def test_parameter_count_matches_hand_count():
    """3 cells (reductions at 1 and 2), C=4, 1 input channel, 10 classes."""
    c0 = CellGenotype(
        ((("sep_conv_3x3", 0),), (("skip_connect", 1),), (("max_pool_3x3", 2),), ()), (2, 3, 4, 5)
    )
    c1 = CellGenotype(
        ((("skip_connect", 0),), (("dil_conv_3x3", 1),), (("avg_pool_3x3", 2),), ()), (2, 3, 4, 5)
    )
    c2 = CellGenotype(
        ((("sep_conv_5x5", 1),), (("skip_connect", 2),), (("max_pool_3x3", 0),), ()), (2, 3, 4, 5)
    )
    g = Genotype(normal=c0, reduce=c1, cells=(c0, c1, c2))
    net, shape = make_network(g, "fashion_mnist", init_channels=4, layers=3, auxiliary=False)
    v = jax.eval_shape(lambda: net.init(jax.random.key(0), jnp.zeros((1, *shape)), train=False))
    bn = lambda c: 2 * c
    relu_conv_bn = lambda cin, c: cin * c + bn(c)
    fact_reduce = lambda cin, c: 2 * cin * (c // 2) + bn(c)
    sep = lambda k, c: 2 * (k * k * c + c * c + bn(c))
    dil = lambda k, c: k * k * c + c * c + bn(c)
    stem = 9 * 1 * 12 + bn(12)
    cell0 = relu_conv_bn(12, 4) + relu_conv_bn(12, 4) + sep(3, 4)  # skip, pool: 0
    cell1 = relu_conv_bn(12, 8) + relu_conv_bn(16, 8) + fact_reduce(8, 8) + dil(3, 8)
    cell2 = fact_reduce(16, 16) + relu_conv_bn(32, 16) + sep(5, 16)  # skip from node 2: identity
    classifier = 64 * 10 + 10
    assert count_params(v["params"]) == stem + cell0 + cell1 + cell2 + classifier == 3710


@pytest.mark.slow
def test_search_one_epoch_and_select(tmp_path):
    """A real 1-epoch search through the shared runner on Fashion-MNIST, then
    Algorithm 1's selection on the held-out half of that run."""
    from jaxnas import data as data_lib
    from jaxnas.asmnas_select import select_workdir
    from jaxnas.config import load_config
    from jaxnas.run import search

    try:
        data_lib.load("fashion_mnist", "train", limit=8)
    except data_lib.DatasetNotFoundError as e:
        pytest.skip(str(e))
    config = load_config(
        "configs/asmnas_fmnist_tiny.py",
        [
            "search.epochs=1",
            "data.limit=256",
            "data.batch_size=16",
            "model.layers=2",
            "model.reductions=(1,)",
            "model.init_channels=2",
            # four ops, every kind (zero, skip, pool, conv): a shorter compile; the conv is
            # the single ReLU-conv-BN (sep_conv_3x3 stacks two depthwise-separable blocks)
            "model.primitives=none,skip_connect,max_pool_3x3,conv_3x3",
            "run.eval_test=false",
            "run.tensorboard=false",
        ],
    )
    summary = search(config, tmp_path, progress=False)
    assert summary["method"] == "asmnas" and np.isfinite(summary["final"]["train/loss"])
    selection, files = select_workdir(tmp_path, limit_batches=2)
    assert len(selection.genotype.cells) == 2 and selection.examples == 32
    assert selection.mode == "cell_by_cell"
    for path in files.values():
        assert path and open(path, "rb").read(1)
    # both genotype files (the runner's and the selection's) carry the searched reductions
    from jaxnas.genotype import load

    assert load(files["genotype"]).reductions == (1,)
    assert load(tmp_path / "genotype.json").reductions == (1,)
