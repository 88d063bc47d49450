"""The PR-DARTS theory experiments ``fig2`` and ``thm4``: the fixed-cell CNNs of
experiments/support/prdarts_cnn.py, Theorem 4's two-branch analysis model in
experiments/support/prdarts_theory.py, and both subcommands of experiments/prdarts_theory.py."""

import importlib.util
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnas.genotype import PRDARTS, CellGenotype, Genotype, reduction_layers
from jaxnas.models.darts_net import NetworkCIFAR
from jaxnas.models.summary import count_params

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# experiment support code (experiments/support/), not library code
sys.path.insert(0, os.path.join(ROOT, "experiments"))
from support import prdarts_cnn as CNN  # noqa: E402
from support import prdarts_theory as T  # noqa: E402


def _experiments():
    spec = importlib.util.spec_from_file_location(
        "prdarts_theory_script", os.path.join(ROOT, "experiments", "prdarts_theory.py")
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def _param_shapes(genotype, channels=4, layers=5, hw=16):
    """Parameter shapes of the network (``jax.eval_shape``: nothing is compiled)."""
    net = NetworkCIFAR(genotype, 10, init_channels=channels, layers=layers, auxiliary=False)
    x = jnp.zeros((2, hw, hw, 1))
    return jax.eval_shape(lambda k: net.init(k, x, train=False), jax.random.key(0))["params"]


def _conv_params(c):
    return 9 * c * c + 2 * c  # 3x3 kernel, no bias; BN scale and bias


def _factorized_reduce_params(c):
    return 2 * c * (c // 2) + 2 * c  # two 1x1 convs to C/2 channels; BN


# ------------------------------------------------------------------------------- genotypes


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_fig2_genotype_has_k_skips_and_the_rest_convs_on_the_same_edges(seed):
    prev = {0: set(), 1: set()}
    for k in range(9):
        g = CNN.fig2_genotype(k, seed)
        for t, (cell, wiring) in enumerate(
            ((g.normal, PRDARTS.normal), (g.reduce, PRDARTS.reduce))
        ):
            ops = [op for op, _ in cell]
            assert ops.count("skip_connect") == k and ops.count(CNN.CONV_OP) == 8 - k
            assert [s for _, s in cell] == [s for _, s in wiring]  # the wiring is kept
            assert cell.concat == wiring.concat
            skips = {j for j, op in enumerate(ops) if op == "skip_connect"}
            assert prev[t] <= skips  # nested in k for a fixed seed
            prev[t] = skips
    # the seed decides where the skips go, independently per cell type
    draws = {CNN.skip_positions(3, 8, s, t) for s in range(20) for t in (0, 1)}
    assert len(draws) > 10


def test_fig2_network_has_k_identity_edges_and_each_skip_removes_one_conv():
    """Parameter identity: every replaced conv removes exactly ``9C^2 + 2C`` (its
    ReLU-conv3x3-BN) and adds 0 (identity) or ``C^2 + 2C`` (FactorizedReduce on a
    stride-2 edge of a reduction cell), C being that cell's channels."""
    layers, c0 = 5, 4
    red = reduction_layers(layers)
    chans = [c0 * 2 ** sum(r <= i for r in red) for i in range(layers)]
    base = count_params(_param_shapes(CNN.fig2_genotype(0, 0), c0, layers))
    for k, seed in ((3, 0), (5, 1), (8, 2)):
        g = CNN.fig2_genotype(k, seed)
        shapes = _param_shapes(g, c0, layers)
        expected = base
        for i in range(layers):
            cell = g.reduce if i in red else g.normal
            ops = shapes[f"cell_{i:02d}"]
            for j, (op, src) in enumerate(cell):
                c = chans[i]
                if op == CNN.CONV_OP:
                    assert ops[f"ops_{j}"]["conv"]["kernel"].shape == (3, 3, c, c)
                    continue
                expected -= _conv_params(c)
                if i in red and src < 2:  # stride 2: FactorizedReduce
                    assert ops[f"ops_{j}"]["conv_1"]["kernel"].shape == (c, c // 2)
                    expected += _factorized_reduce_params(c)
                else:  # an identity edge: no parameters at all
                    assert f"ops_{j}" not in ops
            if i not in red:
                assert sum(key.startswith("ops_") for key in ops) == 8 - k
        assert count_params(shapes) == expected


def test_chain_and_wide_cells_have_equal_parameters_and_depths_4_and_1():
    deep, wide = CNN.chain_cell(), CNN.wide_cell()
    assert CNN.cell_depth(deep) == 4 and CNN.cell_depth(wide) == 1
    assert sorted(op for op, _ in deep) == sorted(op for op, _ in wide) == [CNN.CONV_OP] * 8
    # the chain 1 -> 2 -> 3 -> 4 -> 5 that L_path rewards
    assert [(src, 2 + k) for k, node in enumerate(deep.nodes) for _, src in node][::2] == [
        (0, 2),
        (2, 3),
        (3, 4),
        (4, 5),
    ]
    p_deep = count_params(_param_shapes(Genotype(deep, deep)))
    assert p_deep == count_params(_param_shapes(Genotype(wide, wide)))


def test_cell_depth_counts_parameterised_ops_on_the_longest_path():
    cell = CellGenotype.from_pairs(
        [
            ("conv_3x3", 0),
            ("skip_connect", 1),  # node 2: depth 1
            ("skip_connect", 2),
            ("max_pool_3x3", 1),  # node 3: depth 1 (skips and pools count 0)
            ("conv_3x3", 3),
            ("none", 0),  # node 4: depth 2
            ("sep_conv_3x3", 4),
            ("conv_3x3", 1),  # node 5: depth 3
        ]
    )
    assert CNN.cell_depth(cell) == 3
    assert CNN.cell_depth(CellGenotype(cell.nodes, (2, 3))) == 1
    assert CNN.cell_depth(CNN.fig2_genotype(8, 0).normal) == 0


def test_bad_inputs_are_one_line_value_errors():
    with pytest.raises(ValueError, match="skips must be in"):
        CNN.fig2_genotype(9, 0)
    with pytest.raises(ValueError, match="distinct"):
        CNN.replace_ops(PRDARTS.normal, [1, 1])
    with pytest.raises(ValueError, match="even"):
        CNN.TrainSettings(channels=5)
    with pytest.raises(ValueError, match="prng_impl"):
        CNN.TrainSettings(prng_impl="mt19937")
    with pytest.raises(ValueError, match="even h"):
        T.shallow_edge_mask(5)
    with pytest.raises(ValueError, match="cell must be"):
        T.thm4_gd_losses(np.zeros((1, 15, 3)), [0], T.AnalysisConfig(h=6), "wide")


def test_pool_images_is_the_block_mean():
    x = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4, 1)
    out = CNN.pool_images(x, 2)
    assert out.shape == (2, 2, 2, 1) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, :, :, 0], [[2, 4], [10, 12]])  # means 2.5 -> 2 etc.
    np.testing.assert_array_equal(CNN.pool_images(x, 1), x)


# -------------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def tiny():
    """A 3-cell C=4 Fig. 2 network on 32 pooled Fashion-MNIST images (one compile)."""
    data = CNN.load_fmnist(32, 8)
    settings = CNN.TrainSettings(
        channels=4, layers=3, batch_size=8, steps=3, lr=0.02, eval_batch_size=8
    )
    trainer = CNN.make_trainer(CNN.fig2_genotype(3, 0), data, settings)
    return data, settings, trainer


def test_data_is_pooled_and_padded_to_a_multiple_of_four(tiny):
    data, _, _ = tiny
    assert data.train.images.shape == (32, 14, 14, 1) and data.pad_to == 16
    assert data.input_shape == (16, 16, 1)


def test_a_training_step_decreases_the_loss_on_a_fixed_batch(tiny):
    data, settings, trainer = tiny
    batch = next(CNN.train_batches(data, settings.batch_size, seed=0))
    with jax.default_prng_impl(settings.prng_impl):
        state = trainer.init(0)
        losses = []
        for _ in range(3):  # the reported loss is the batch loss before the update
            state, m = trainer.train_step(state, trainer.shard(batch))
            losses.append(float(m["loss"]))
    assert losses[1] < losses[0] and losses[2] < losses[1]


def test_a_run_is_determined_by_its_seed(tiny):
    data, settings, trainer = tiny
    a = CNN.train_run(trainer, data, settings, seed=0)
    b = CNN.train_run(trainer, data, settings, seed=0)
    c = CNN.train_run(trainer, data, settings, seed=1)
    assert a["losses"] == b["losses"] and a["test"] == b["test"]
    assert a["losses"] != c["losses"]
    assert a["finite"] and len(a["losses"]) == settings.steps
    assert a["params"] == count_params(_param_shapes(CNN.fig2_genotype(3, 0), 4, 3))


# ------------------------------------------------------------------- Theorem 4, analysis


CFG4 = T.AnalysisConfig(m=8, h=6)


def _readout_only(params, nodes):
    keep = np.zeros(CFG4.h, bool)
    keep[list(nodes)] = True
    return {**params, "readout": params["readout"] * keep[:, None, None]}


def _gates(seed=0):
    return jnp.asarray(np.random.default_rng(seed).uniform(0.2, 1.0, (15, 3)), jnp.float32)


def test_shallow_cell_branch_one_is_the_deep_cells_first_nodes():
    """Nodes 0..h/2-1 are computed alike in A and B: read out only there, they agree."""
    params, x, _ = T.thm4_setup(0, CFG4, n=4)
    alpha = _gates()
    p = _readout_only(params, range(3))
    fwd = jax.jit(T.thm4_forward, static_argnums=(3, 4))
    deep = fwd(p, alpha, x, CFG4, "deep")
    np.testing.assert_allclose(fwd(p, alpha, x, CFG4, "shallow"), deep, rtol=1e-6)
    # "deep" is the analysis model itself; B's extra stem is ignored there
    full = fwd(params, alpha, x, CFG4, "deep")
    ref = jax.jit(T.forward, static_argnums=3)(params, alpha, x, CFG4)
    np.testing.assert_allclose(full, ref, rtol=1e-5)


def test_shallow_cell_branch_two_is_a_copy_of_branch_one_fed_by_x():
    """With B's second stem, convs, gates and read-out copied from branch one, branch two
    reads out exactly what branch one does: it is an independent cell on the input X."""
    params, x, _ = T.thm4_setup(1, CFG4, n=4)
    alpha = np.array(_gates(1))
    edges = T.analysis_edges(CFG4.h)
    idx = {e: i for i, e in enumerate(edges)}
    convs = np.asarray(params["convs"]).copy()
    for s, d in [(0, 1), (0, 2), (1, 2)]:
        convs[idx[(s + 3, d + 3)]] = convs[idx[(s, d)]]
        alpha[idx[(s + 3, d + 3)]] = alpha[idx[(s, d)]]
    readout = np.asarray(params["readout"]).copy()
    readout[3:] = readout[:3]
    p = {**params, "stem2": params["stem"], "convs": jnp.asarray(convs)}
    p["readout"] = jnp.asarray(readout)
    one = T.forward_shallow(_readout_only(p, range(3)), alpha, x, CFG4)
    two = T.forward_shallow(_readout_only(p, range(3, 6)), alpha, x, CFG4)
    np.testing.assert_allclose(two, one, rtol=1e-5)


def test_thm4_sizes_and_depths_match_the_gradients():
    """The weights with a non-zero gradient are ``thm4_sizes``'s parameter counts; B's last
    node depends on its second stem and not on the first (two branches), A's on the stem
    through the whole chain."""
    params, x, y = T.thm4_setup(0, CFG4, n=8)
    alpha = _gates()
    sizes = T.thm4_sizes(CFG4)
    mask = T.shallow_edge_mask(CFG4.h)
    assert sizes["deep"]["edges"] == 15 and sizes["shallow"]["edges"] == int(mask.sum()) == 6
    assert sizes["deep"]["depth"] == 6 and sizes["shallow"]["depth"] == 3
    grad = jax.jit(jax.grad(T.thm4_loss), static_argnums=(4, 5))
    for cell in T.THM4_CELLS:
        g = grad(params, alpha, x, y, CFG4, cell)
        used = sum(int((np.asarray(v) != 0).sum()) for v in jax.tree.leaves(g))
        assert used == sizes[cell]["params"]
        rows = np.abs(np.asarray(g["convs"])).sum(axis=(1, 2)) > 0
        np.testing.assert_array_equal(rows, np.ones(15, bool) if cell == "deep" else mask)
    last = _readout_only(params, [CFG4.h - 1])
    gd, gs = (grad(last, alpha, x, y, CFG4, cell) for cell in T.THM4_CELLS)
    assert np.abs(gd["stem"]).sum() > 0 and np.abs(gd["stem2"]).sum() == 0
    assert np.abs(gs["stem"]).sum() == 0 and np.abs(gs["stem2"]).sum() > 0


def test_thm4_rates_closed_form_at_h4(x64):
    """h = 4: lambda_A = (a^3_{0,3})^2 + (a^3_{1,3})^2 (a^1_{0,2})^2
    + (a^3_{2,3})^2 (a^2_{0,2} a^2_{1,2})^2 and the bound adds (a^3_{2,3})^2."""
    alpha = np.random.default_rng(3).uniform(0.1, 1.0, (6, 3))
    idx = {e: i for i, e in enumerate(T.analysis_edges(4))}
    a = lambda s, d, t: alpha[idx[(s, d)], t]  # noqa: E731
    lam_a = a(0, 3, 2) ** 2 + a(1, 3, 2) ** 2 * a(0, 1, 1) ** 2
    lam_a += a(2, 3, 2) ** 2 * (a(0, 2, 1) * a(1, 2, 1)) ** 2
    got_a, got_b = T.thm4_rates(jnp.asarray(alpha), 4)
    np.testing.assert_allclose(got_a, lam_a, rtol=1e-12)
    np.testing.assert_allclose(got_b, lam_a + a(2, 3, 2) ** 2, rtol=1e-12)


def test_thm4_gd_starts_from_one_init_and_decreases_the_loss():
    alphas = np.stack([np.full((15, 3), 0.5), T.alpha_config("all-conv", 6)])
    deep = T.thm4_gd_losses(alphas, [0, 1], CFG4, "deep", n=8, eta=0.1, steps=10)
    shallow = T.thm4_gd_losses(alphas, [0, 1], CFG4, "shallow", n=8, eta=0.1, steps=10)
    assert deep.shape == shallow.shape == (2, 2, 11)
    assert np.all(np.isfinite(deep)) and np.all(np.isfinite(shallow))
    assert np.all(deep[..., -1] < deep[..., 0]) and np.all(shallow[..., -1] < shallow[..., 0])
    # deep's loss at init is the analysis model's own (setup's weights and data)
    params, x, y = T.setup(1, CFG4, 8)
    np.testing.assert_allclose(
        deep[1, 1, 0],
        jax.jit(T.loss, static_argnums=4)(params, jnp.asarray(alphas[1], jnp.float32), x, y, CFG4),
        rtol=1e-5,
    )


# ------------------------------------------------------------------------ end to end


MICRO = [
    "--seeds", "2", "--steps", "2", "--n-train", "16", "--n-test", "8", "--channels", "4",
    "--layers", "3", "--batch-size", "8", "--no-cache",
]  # fmt: skip


@pytest.mark.slow
def test_fig2_subcommand_writes_json_png_and_verdict(tmp_path):
    mod = _experiments()
    argv = ["fig2", "--out", str(tmp_path), "--skips", "0", "5", "--placement", "shared"]
    assert mod.main([*argv, *MICRO]) == 0
    res = json.loads((tmp_path / "fig2.json").read_text())
    assert res["skips"] == [0, 5] and len(res["runs"]["5"]) == 2
    assert {c["name"] for c in res["claims"]} >= {"faster_early", "worse_test_accuracy"}
    assert res["stats"]["0"]["params"][0] > res["stats"]["5"]["params"][0]
    assert (tmp_path / "fig2.png").stat().st_size > 0
    assert "NOT a Fig. 2 claim" in (tmp_path / "fig2_verdict.txt").read_text()


@pytest.mark.slow
def test_thm4_subcommand_writes_json_png_and_verdict(tmp_path):
    mod = _experiments()
    argv = ["thm4", "--out", str(tmp_path), *MICRO, "--gd-steps", "4", "--gd-seeds", "2"]
    argv += ["--etas", "0.5"]
    assert mod.main([*argv, "--m", "8", "--n", "8", "--configs", "half", "chain"]) == 0
    res = json.loads((tmp_path / "thm4.json").read_text())
    cells = res["cnn"]["cells"]
    assert cells["deep"]["depth"] == 4 and cells["shallow"]["depth"] == 1
    assert cells["deep"]["params"] == cells["shallow"]["params"]
    assert res["analysis"]["sizes"]["deep"]["depth"] == 6
    assert {c["name"] for c in res["claims"]} >= {
        "analysis_shallow_faster[half]",
        "analysis_shallow_faster[chain]",
        "analysis_ntk_predicts_winner",
        "cnn_deep_better_test",
    }
    assert (tmp_path / "thm4.png").stat().st_size > 0
    assert (tmp_path / "thm4_verdict.txt").read_text().startswith("PR-DARTS Theorem 4")
