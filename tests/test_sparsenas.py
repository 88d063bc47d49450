"""SparseNAS: the sparse mixed-path supernet, its search step (Alg. 1) and derivation."""

import pathlib
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxnas import data
from jaxnas.config import default_config, load_config
from jaxnas.genotype import CellGenotype, Genotype, validate
from jaxnas.models.darts_net import DiscreteCell, check_genotype
from jaxnas.models.summary import count_params
from jaxnas.ops import resolve_primitives
from jaxnas.optim import resolve_groups
from jaxnas.search import build
from jaxnas.search.sparsenas import (
    LinearMixer,
    cell_masks,
    clip_each_cell,
    derive_sparse,
    derive_sparse_cell,
    node_groups,
    pathwise_lambda,
)
from jaxnas.spaces.darts import DARTS_CELL
from jaxnas.supernet import SearchCell
from jaxnas.xla import jit_init

OPS7 = resolve_primitives("darts_no_zero")
A0 = 1.0 / 7  # the uniform init, 1/|O|
HAPG_LR = 0.025
CONFIGS = pathlib.Path(__file__).parents[1] / "configs"


def _config(**search):
    c = default_config("sparsenas")
    c.model.init_channels, c.model.layers = 2, 3
    c.optim.hapg_lr = HAPG_LR
    c.search.update(dict(epochs=2, order="first", optimizer="hapg", fuse_phases="yes"))
    c.search.update(search)
    return c


def _build(config):
    return build(config, steps_per_epoch=2, num_classes=10, input_shape=(28, 28, 1))


# ------------------------------------------------------------------ groups, schedule, init


def test_groups_are_nodes_with_sqrt_size_weights():
    arch = {k: jnp.zeros((14, 7)) for k in ("normal", "reduce")}
    g = resolve_groups(node_groups(cell_masks(OPS7)), arch)
    assert list(g.sizes) == [14, 21, 28, 35] * 2  # 2..5 edges x 7 ops, per cell type
    # cherry-picked space: 2 ops per cell type, the third op of the union is unpenalised
    prims = resolve_primitives("sparsenas_cherry_picked")
    masks = cell_masks(prims, "sparsenas_cherry_picked")
    assert prims == ("sep_conv_3x3", "skip_connect", "max_pool_3x3")
    np.testing.assert_array_equal(masks["normal"], [1, 1, 0])
    np.testing.assert_array_equal(masks["reduce"], [0, 1, 1])
    arch3 = {k: jnp.zeros((14, 3)) for k in ("normal", "reduce")}
    assert list(resolve_groups(node_groups(masks), arch3).sizes) == [4, 6, 8, 10] * 2
    # 'none' is never an op of the sparse supernet
    assert cell_masks(resolve_primitives("darts"))["normal"][0] == 0


def test_pathwise_lambda_schedule():
    lam = pathwise_lambda(0.01, steps_per_epoch=10)
    got = [float(lam(s)) for s in (0, 9, 10, 19, 20, 490)]
    np.testing.assert_allclose(got, [0.0, 0.0, 0.01, 0.01, 0.02, 0.49], atol=1e-7)
    assert float(pathwise_lambda(0.02, 5, lam_start=0.1)(7)) == pytest.approx(0.12)
    with pytest.raises(ValueError, match=">= 0"):
        pathwise_lambda(-0.01, 10)
    # the per-step ramp is the same line, sampled every step: it meets the per-epoch
    # staircase at every epoch boundary and lies above it (by < lam_step) in between
    ramp = pathwise_lambda(0.01, 10, every="step")
    np.testing.assert_allclose(
        [float(ramp(s)) for s in (0, 5, 9, 10, 25, 490)],
        [0.0, 0.005, 0.009, 0.01, 0.025, 0.49],
        atol=1e-7,
    )
    with pytest.raises(ValueError, match="'epoch' or 'step'"):
        pathwise_lambda(0.01, 10, every="batch")


def test_clip_each_cell_bounds_each_cell_types_norm_alone():
    g = {"normal": jnp.full((14, 7), 10.0 / np.sqrt(98)), "reduce": jnp.full((14, 7), 0.01)}
    g["zero"] = jnp.zeros((3,))
    out, _ = clip_each_cell(5.0).update(g, optax.EmptyState())
    np.testing.assert_allclose(float(jnp.linalg.norm(out["normal"])), 5.0, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(out["normal"]), np.asarray(g["normal"]) / 2, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(out["reduce"]), np.asarray(g["reduce"]))
    np.testing.assert_array_equal(np.asarray(out["zero"]), 0.0)
    bad = _config()
    bad.optim.a_grad_clip = -1.0
    with pytest.raises(ValueError, match="a_grad_clip"):
        _build(bad)


def test_configs_load():
    for name, opt in (
        ("cifar10_hapg", "hapg"),
        ("cifar10_adamhapg", "adam_hapg"),
        ("fmnist_tiny", "adam_hapg"),
    ):
        c = load_config(CONFIGS / f"sparsenas_{name}.py")
        assert c.method == "sparsenas" and c.search.optimizer == opt
    c = load_config(CONFIGS / "sparsenas_cifar10_hapg.py")
    assert (c.search.alpha, c.search.lam_step, c.optim.hapg_lr) == (0.5, 0.01, 0.025)
    assert (c.model.layers, c.model.init_channels, c.search.epochs) == (8, 16, 50)


def test_arch_optimizer_group_zeros_and_masked_ops():
    """The method's A optimiser (one HAPG step, Eqs. 6-10) on a synthetic gradient: nodes
    whose shrunk group norm is under sqrt(p) eta lam (1 - alpha) become exactly zero
    (Eq. 10), the others survive; ops a cell type lacks (cherry-picked) stay exactly 0."""
    lam, alpha = 2.0, 0.5
    c = _config(lam_start=lam, alpha=alpha)
    c.model.primitives = "sparsenas_cherry_picked"
    m = _build(c)  # nothing is compiled: only the optax transform is used
    level = np.repeat([0.04, 0.5, 0.04, 0.5], [2, 3, 4, 5])[:, None]  # per node's rows
    arch = {k: jnp.asarray(level * m.masks[k], jnp.float32) for k in ("normal", "reduce")}
    rng = np.random.default_rng(0)
    grads = {k: jnp.asarray(0.1 * rng.normal(size=(14, 3)), jnp.float32) for k in arch}
    state = m.a_tx.init(arch)
    upd, state = m.a_tx.update(grads, state, arch)
    theta = jax.tree.map(np.asarray, m.theta(SimpleNamespace(a_opt=state)))
    a1 = jax.tree.map(lambda a, u: np.asarray(a + u), arch, upd)
    for k in arch:
        unused = m.masks[k] == 0
        assert np.all(theta[k][:, unused] == 0) and np.all(a1[k][:, unused] == 0)
        z = np.asarray(arch[k]) - HAPG_LR * np.asarray(grads[k]) * m.masks[k]  # Eq. 6
        y = np.sign(z) * np.maximum(np.abs(z) - HAPG_LR * lam * alpha, 0)  # Eq. 9
        dead = []
        for node in range(4):
            rows = list(DARTS_CELL.incoming(node))
            p = 2 * len(rows)  # group size: 2 ops per edge
            thr = np.sqrt(p) * HAPG_LR * lam * (1 - alpha)  # Eq. 10
            dead.append(bool(np.all(theta[k][rows] == 0)))
            assert dead[-1] == (np.linalg.norm(y[rows]) <= thr)
        assert dead == [True, False, True, False]


# --------------------------------------------------------------------------- the supernet


@pytest.fixture(scope="module")
def cell_fn():
    """A jitted normal search cell, C=2, 8x8 inputs, batch 4, float64: w -> node outputs."""
    with jax.enable_x64(True):
        cell = SearchCell(2, False, False, OPS7, LinearMixer(), train=True)
        rng = np.random.default_rng(0)
        s0, s1 = (jnp.asarray(rng.normal(size=(4, 8, 8, 3))) for _ in range(2))
        w0 = jnp.full((14, 7), A0, jnp.float64)
        # compiled through jit_init (without LLVM optimisation: the init runs once, f a few
        # times on this tiny cell; the same functions), the init not op by op
        variables = jit_init(cell.init)(jax.random.key(0), s0, s1, w0)
        variables = jax.tree.map(lambda a: a.astype(jnp.float64), variables)

        @jit_init
        def f(w):
            out, _ = cell.apply(variables, s0, s1, w, mutable=["batch_stats"])
            return out.reshape(*out.shape[:-1], 4, 2)  # (B, H, W, node, C)

        yield f, w0


def test_cell_is_linear_in_each_edge(cell_fn):
    """Eq. 1: an edge into node k is sum_o A^o o(x): node k is affine in that edge's A
    (exactly linear in t for A + t D), nodes before k do not move; an edge into the
    last node makes the whole cell output affine."""
    f, w0 = cell_fn
    rng = np.random.default_rng(1)
    with jax.enable_x64(True):
        for edge, node in ((12, 3), (3, 1)):
            d = np.zeros((14, 7))
            d[edge] = rng.normal(size=7)
            ys = [np.asarray(f(w0 + t * d)) for t in (0.0, 1.0, -2.0, 3.5)]
            for t, y in zip((1.0, -2.0, 3.5), ys[1:]):
                np.testing.assert_allclose(
                    y[..., node, :] - ys[0][..., node, :],
                    t * (ys[1][..., node, :] - ys[0][..., node, :]),
                    rtol=1e-9,
                    atol=1e-10,
                )
                np.testing.assert_array_equal(y[..., :node, :], ys[0][..., :node, :])
            assert np.abs(ys[1][..., node, :] - ys[0][..., node, :]).max() > 1e-3


def test_zero_group_zeroes_its_node(cell_fn):
    f, w0 = cell_fn
    with jax.enable_x64(True):
        for node in range(4):
            w = np.array(w0)
            w[list(DARTS_CELL.incoming(node))] = 0.0  # the node's whole group
            y = np.asarray(f(w))
            assert np.all(y[..., node, :] == 0.0)
            others = [k for k in range(4) if k != node]
            assert np.all(np.abs(y[..., others, :]).max(axis=(0, 1, 2, 4)) > 0)


# -------------------------------------------------------------------------------- derivation


def _theta(nonzero):
    """(14, 7) theta with the given {(edge, op): value} non-zeros."""
    t = np.zeros((14, 7))
    for (e, o), v in nonzero.items():
        t[e, o] = v
    return t


def test_derive_drops_zero_ops_and_dead_nodes():
    sep3, skip, dil5 = OPS7.index("sep_conv_3x3"), OPS7.index("skip_connect"), 6
    # node 0: edge 0->2 with two ops; node 1: whole group zero (dead);
    # node 2: edges from 1 and from the dead node 3 (the latter is dropped);
    # node 3: only an edge from dead node 3 -> dies too (pruning propagates)
    theta = _theta(
        {
            (0, sep3): 0.5,
            (0, skip): -0.9,  # negative weights are kept: A is real (Eq. 1)
            (6, dil5): 0.2,  # 1 -> 4
            (8, sep3): 0.7,  # 3 -> 4 : dead source
            (12, skip): 0.3,  # 3 -> 5 : dead source
        }
    )
    cell = derive_sparse_cell(theta, OPS7)
    assert cell.nodes == (
        (("skip_connect", 0), ("sep_conv_3x3", 0)),  # strongest |theta| first
        (),
        (("dil_conv_5x5", 1),),
        (),
    )
    assert cell.concat == (2, 4)
    validate(Genotype(cell, cell))


def test_derive_mixed_paths_threshold_and_empty_cell(caplog):
    theta = _theta({(e, o): 0.1 * (o + 1) for e in (0, 2, 5, 9) for o in range(7)})
    full = derive_sparse_cell(theta, OPS7)
    assert [len(n) for n in full.nodes] == [7, 7, 7, 7] and full.concat == (2, 3, 4, 5)
    cut = derive_sparse_cell(theta, OPS7, threshold=0.45)  # Adam/SGD-style hard threshold
    assert [len(n) for n in cut.nodes] == [3, 3, 3, 3]
    assert all(op in ("sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5") for op, _ in cut)
    empty = derive_sparse_cell(np.zeros((14, 7)), OPS7)
    assert empty.nodes == ((), (), (), ()) and empty.concat == (5,)
    assert "pruned" in caplog.text


def test_mixed_path_cell_builds_with_hand_counted_params():
    """A mixed-path cell (an edge with two ops, a node with three inputs, dead nodes,
    concat of 2 nodes) builds in the discrete network and has the hand-counted size."""
    c, c0, c1 = 4, 6, 5
    cell = CellGenotype(
        nodes=(
            (("sep_conv_3x3", 0), ("skip_connect", 0), ("max_pool_3x3", 1)),
            (),
            (("dil_conv_3x3", 2), ("sep_conv_5x5", 2), ("avg_pool_3x3", 0)),
            (),
        ),
        concat=(2, 4),
    )
    check_genotype(Genotype(cell, cell), layers=3)
    mod = DiscreteCell(cell, c, reduction=False, reduction_prev=False)
    s0, s1 = jnp.ones((2, 8, 8, c0)), jnp.ones((2, 8, 8, c1))
    variables = jax.eval_shape(lambda: mod.init(jax.random.key(0), s0, s1, False))
    bn = 2 * c  # affine BN: scale + bias
    pre = (c0 * c + bn) + (c1 * c + bn)  # ReLU-conv1x1-BN on both inputs
    sep = lambda k: 2 * (k * k * c + c * c + bn)  # (depthwise kxk, pointwise, BN) x 2
    dil = lambda k: k * k * c + c * c + bn
    assert count_params(variables["params"]) == pre + sep(3) + dil(3) + sep(5)
    out = jax.eval_shape(lambda v: mod.apply(v, s0, s1, False), variables)
    assert out.shape == (2, 8, 8, 2 * c)  # only the 2 surviving nodes are concatenated


# ----------------------------------------------------------------------- the search step


@pytest.fixture(scope="module")
def batches():
    try:
        ds = data.load("fashion_mnist", "train", limit=8)
    except data.DatasetNotFoundError as e:
        pytest.skip(str(e))
    x = data.normalize(ds.images, "fashion_mnist")
    return [(x[i : i + 4], ds.labels[i : i + 4]) for i in range(0, 8, 4)]


@pytest.fixture(scope="module")
def stepped(batches):
    """One real search step in the cherry-picked space (3 ops in the supernet, 2 per cell
    type: few ops keep the compile short).  HAPG with alpha = 1 and lambda chosen so that
    the L1 threshold eta lam alpha equals A_0 = 1/2: theta_i = max(-eta g_i, 0)."""
    c = _config(alpha=1.0, lam_start=0.5 / HAPG_LR)
    c.model.primitives = "sparsenas_cherry_picked"
    m = _build(c)
    s0 = m.init(jax.random.key(0), batches[0][0])
    s1, metrics = m.train_step(s0, batches[0], batches[1])
    return m, s0, s1, metrics


def test_init_is_uniform_over_the_cell_types_ops(stepped):
    m, s0, _, _ = stepped
    for k in ("normal", "reduce"):
        np.testing.assert_allclose(np.asarray(s0.arch[k]), np.tile(m.masks[k] / 2, (14, 1)))
        np.testing.assert_array_equal(m.arch_weights(s0)[k], np.asarray(s0.arch[k]))


def test_step_leaves_exact_zeros_in_theta(stepped):
    m, s0, s1, metrics = stepped
    theta = m.arch_weights(s1)
    fracs = []
    for k in ("normal", "reduce"):
        used = m.masks[k] > 0
        t, a = theta[k][:, used], np.asarray(s1.arch[k])
        assert np.all(theta[k][:, ~used] == 0) and np.all(a[:, ~used] == 0)
        zeros = t == 0.0
        fracs.append(zeros.mean())
        assert 0.1 < zeros.mean() < 0.9  # exact zeros, not all
        assert np.all(t[~zeros] > 0)  # survivors had g < 0: theta = -eta g
        # Eq. 8 with u_1 = -1/2, v_1 = theta_1 - A_0: the network's A_1 = (theta_1 + A_0) / 2,
        # not sparse -- the architecture is read from theta
        np.testing.assert_allclose(a[:, used], (t + 0.5) / 2, rtol=1e-5)
        assert np.all(a[:, used][zeros] != 0)
    assert float(metrics["lam"]) == pytest.approx(0.5 / HAPG_LR)
    assert float(metrics["theta_zero_frac"]) == pytest.approx(np.mean(fracs))
    g = m.genotype(s1)
    for k, cell in (("normal", g.normal), ("reduce", g.reduce)):
        kept = set(cell.edges)
        assert 0 < len(kept) <= int(np.sum(theta[k] != 0))
        for op, src, dst in kept:
            e, o = DARTS_CELL.edges.index((src, dst)), m.primitives.index(op)
            assert theta[k][e, o] != 0 and m.masks[k][o] == 1
    check_genotype(g, layers=3)


@pytest.mark.slow
def test_short_search_end_to_end(tmp_path):
    """One short epoch of the tiny Fashion-MNIST config (AdamHAPG, first order) through the
    shared runner: metrics, exact zeros, the genotype file and its picture."""
    from jaxnas.run import search

    try:
        data.load("fashion_mnist", "train", limit=8)
    except data.DatasetNotFoundError as e:
        pytest.skip(str(e))
    cfg = load_config(
        CONFIGS / "sparsenas_fmnist_tiny.py",
        [
            "search.epochs=1",
            "data.limit=128",
            "data.batch_size=16",
            # one (reduction) cell of 3 ops: the checks are the runner's and AdamHAPG's,
            # whatever the cells; the compile is shorter
            "model.layers=1",
            "model.init_channels=2",
            "model.primitives=sparsenas_cherry_picked",
            "search.fuse_phases=yes",
            "search.lam_start=100.0",  # AdamHAPG: thresholds eta lam alpha / sqrt(s_hat)
            "run.eval_limit=32",
            "run.tensorboard=false",
        ],
    )
    summary = search(cfg, tmp_path / "run", progress=False)
    rec = summary["final"]
    assert rec["epoch"] == 1 and np.isfinite(rec["train/loss"])
    assert rec["train/theta_zero_frac"] > 0
    assert (tmp_path / "run" / "genotype.json").exists() and summary["genotype_pictures"]
    assert "test/accuracy" in rec


def test_max_ops_ends_the_path_before_lambda_empties_the_cell(batches):
    """``search.max_ops``: step 1 as in ``stepped`` (some exact zeros, at most 28 ops per
    cell type: the path ends there), then lambda so large that the prox zeroes all of
    theta in step 2; the cell is still step 1's and A stands still."""
    c = _config(alpha=1.0, lam_start=0.5 / HAPG_LR, lam_step=1e4, lam_every="step", max_ops=28)
    c.model.primitives = "sparsenas_cherry_picked"
    m = _build(c)
    s0 = m.init(jax.random.key(0), batches[0][0])
    s1, _ = m.train_step(s0, batches[0], batches[1])
    s2, metrics = m.train_step(s1, batches[1], batches[0])
    theta1 = m.arch_weights(s1)
    for k in ("normal", "reduce"):
        assert 0 < np.count_nonzero(theta1[k]) <= 28  # 14 edges x 2 ops
        assert not np.any(np.asarray(m.theta(s2)[k]))  # the prox did empty it
        np.testing.assert_array_equal(m.arch_weights(s2)[k], theta1[k])
        np.testing.assert_array_equal(np.asarray(s2.arch[k]), np.asarray(s1.arch[k]))
    assert int(metrics["path_frozen"]) == 2
    zero = np.mean([np.mean(theta1[k][:, m.masks[k] > 0] == 0) for k in theta1])
    assert float(metrics["theta_zero_frac"]) == pytest.approx(zero)
    assert m.genotype(s2) == derive_sparse(theta1["normal"], theta1["reduce"], m.primitives)
    with pytest.raises(ValueError, match="max_ops"):
        _build(_config(max_ops=-1))
