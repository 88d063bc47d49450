"""Discrete networks from genotypes (jaxnas.models): sizes, shapes, drop path, supernet."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnas.cli import main
from jaxnas.genotype import DARTS_V2, CellGenotype, Genotype, GenotypeError
from jaxnas.models import (
    DiscreteCell,
    NetworkCIFAR,
    NetworkImageNet,
    OneHotMixer,
    check_genotype,
    count_macs,
    count_params,
    drop_path,
    make_network,
    one_hot_arch,
    variables_from_supernet,
)
from jaxnas.models.darts_net import scan_groups
from jaxnas.models.summary import layer_macs, summary
from jaxnas.ops import DepthwiseConv
from jaxnas.supernet import SuperNet
from jaxnas.xla import jit_init

# The programs these tests compile to compare values (networks' applies and gradients) go
# through jit_init: compiled without LLVM optimisation, which takes a third less CPU time
# to compile and computes the same functions (each runs a few times on tiny inputs).


def _shapes(model, input_shape, **kw):
    x = jax.ShapeDtypeStruct((2, *input_shape), jnp.float32)
    return jax.eval_shape(lambda x: model.init(jax.random.key(0), x, **kw), x)


# ------------------------------------------------------------------------ parameter counts


def test_darts_v2_cifar_parameter_count_matches_reference():
    """DARTS_V2, C=36, 20 layers, 10 classes: 3,349,342 parameters without the auxiliary
    head (the DARTS reference implementation's count; BN scale/bias in, running stats out)."""
    net = NetworkCIFAR(DARTS_V2, 10, init_channels=36, layers=20, auxiliary=True)
    v = _shapes(net, (32, 32, 3))
    assert "auxiliary_head" in v["params"]
    assert count_params(v["params"]) == 3_349_342
    # the filter only drops the auxiliary head
    n_aux = count_params(v["params"]["auxiliary_head"], exclude=())
    assert count_params(v["params"], exclude=()) == 3_349_342 + n_aux
    # running statistics are not parameters
    assert count_params(v["batch_stats"]) > 0


def test_darts_v2_imagenet_parameter_count_matches_paper():
    """Mobile setting, C=48, 14 layers, 1000 classes: the DARTS paper reports 4.7M."""
    net = NetworkImageNet(DARTS_V2, 1000, init_channels=48, layers=14)
    v = _shapes(net, (224, 224, 3))
    n = count_params(v["params"])
    assert round(n / 1e6, 1) == 4.7
    assert n == 4_718_752


def test_multiply_adds_closed_form():
    """Conv: out * k*k * C_in; dense: out * C_in; depthwise: out * k*k; BN/ReLU not counted."""

    class Tiny(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.Conv(16, (3, 3), strides=2, padding=1, use_bias=False)(x)  # 4x4x16
            x = nn.relu(nn.BatchNorm(use_running_average=True)(x))
            x = DepthwiseConv(5, padding=2)(x)  # 4x4x16
            x = nn.Dense(8)(x)  # 4x4x8
            return nn.Dense(3)(jnp.mean(x, axis=(1, 2)))

    model = Tiny()
    v = _shapes(model, (8, 8, 2))
    expected = 4 * 4 * 16 * 9 * 2 + 4 * 4 * 16 * 25 + 4 * 4 * 8 * 16 + 3 * 8
    recs = layer_macs(model, v, (8, 8, 2))
    assert [r.kind for r in recs] == ["conv", "depthwise", "dense", "dense"]
    assert sum(r.macs for r in recs) == expected
    # count_macs: the inference pass (train=False): no auxiliary head
    net = NetworkCIFAR(DARTS_V2, 10, init_channels=4, layers=8)
    v = _shapes(net, (32, 32, 3))
    infer = layer_macs(net, v, (32, 32, 3), train=False)
    assert count_macs(net, v, (32, 32, 3)) == sum(r.macs for r in infer)
    assert not any(r.path.startswith("auxiliary_head") for r in infer)
    train = layer_macs(net, v, (32, 32, 3), train=True, mutable=["batch_stats"])
    assert any(r.path.startswith("auxiliary_head") for r in train)


def test_auxiliary_head_needs_6x6():
    net = NetworkCIFAR(DARTS_V2, 10, init_channels=4, layers=3)  # 8 -> 4 -> 2 at 2/3 depth
    with pytest.raises(ValueError, match="at least 6x6 at 2/3 depth, got 2x2"):
        _shapes(net, (8, 8, 3))
    _shapes(net.clone(auxiliary=False), (8, 8, 3))


def test_darts_v2_multiply_adds():
    """Pinned to the convention of jaxnas.models.summary (conv + fc multiply-adds, one
    image): 528.4M on CIFAR-10 and 529.9M in the ImageNet mobile setting, where the paper
    reports 574M (see the summary module docstring for the 7.7% gap)."""
    s = summary(DARTS_V2, "cifar10")
    assert (s["params"], s["macs"]) == (3_349_342, 528_359_040)
    s = summary(DARTS_V2, "imagenet")
    assert (s["params"], s["macs"]) == (4_718_752, 529_911_552)
    assert 0.9 < s["macs"] / 574e6 < 1.0


# ---------------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("input_shape", [(32, 32, 3), (28, 28, 1)], ids=["cifar", "fmnist"])
def test_output_shapes_with_auxiliary_head(input_shape):
    net = NetworkCIFAR(DARTS_V2, 10, init_channels=8, layers=8, auxiliary=True)
    v = _shapes(net, input_shape)
    x = jax.ShapeDtypeStruct((2, *input_shape), jnp.float32)

    def train(v, x):
        return net.apply(
            v, x, train=True, drop_prob=0.2, rngs={"dropout": jax.random.key(1)},
            mutable=["batch_stats"],
        )[0]  # fmt: skip

    logits, aux = jax.eval_shape(train, v, x)
    assert logits.shape == (2, 10) and aux.shape == (2, 10)
    logits, aux = jax.eval_shape(lambda v, x: net.apply(v, x, train=False), v, x)
    assert logits.shape == (2, 10) and aux is None


def test_fmnist_auxiliary_head_pools_7x7_to_2x2():
    """Our adapted head: pool stride H - 5, i.e. 3 at 8x8 (the reference) and 2 at 7x7."""
    net, shape = make_network(DARTS_V2, "fashion_mnist", init_channels=8, layers=8)
    v = _shapes(net, shape)
    recs = layer_macs(net, v, shape, train=True, mutable=["batch_stats"])
    aux = {r.path.split("/")[-1]: r for r in recs if r.path.startswith("auxiliary_head")}
    assert aux["conv1"].in_shape == (1, 2, 2, 8 * 4 * 4)  # 7x7 pooled to 2x2
    assert aux["conv2"].out_shape == (1, 1, 1, 768)
    net, shape = make_network(DARTS_V2, "cifar10", init_channels=8, layers=8)
    recs = layer_macs(net, _shapes(net, shape), shape, train=True, mutable=["batch_stats"])
    aux = {r.path.split("/")[-1]: r for r in recs if r.path.startswith("auxiliary_head")}
    assert aux["conv1"].in_shape == (1, 2, 2, 8 * 4 * 4)  # 8x8 pooled to 2x2


def test_imagenet_network_shapes():
    net = NetworkImageNet(DARTS_V2, 1000, init_channels=8, layers=5)
    v = _shapes(net, (224, 224, 3))
    recs = layer_macs(net, v, (224, 224, 3), train=True, mutable=["batch_stats"])
    paths = {r.path: r for r in recs}
    assert paths["stem1_conv"].in_shape == (1, 56, 56, 8)  # s0 = stem0(x) at 56x56
    # the first cell reduces s0 (FactorizedReduce: two strided 1x1 convs of C/2 channels)
    assert paths["cell_00/preprocess0/conv_1"].out_shape == (1, 28, 28, 4)
    assert paths["cell_00/preprocess1/conv"].in_shape == (1, 28, 28, 8)  # s1 from stem1
    assert paths["auxiliary_head/conv1"].in_shape[1:3] == (2, 2)
    assert "bn2" not in v["params"]["auxiliary_head"]  # no BN after the 2x2 conv (reference)
    assert paths["classifier"].in_shape == (1, 8 * 4 * 4)


def _per_layer_genotype() -> Genotype:
    cells = [
        CellGenotype(((("sep_conv_3x3", 0),), (("skip_connect", 1), ("avg_pool_3x3", 2))), (2, 3)),
        CellGenotype(
            ((("max_pool_3x3", 0), ("dil_conv_5x5", 1), ("sep_conv_5x5", 1)), (("none", 2),)),
            (2, 3),
        ),
        CellGenotype(
            ((("dil_conv_3x3", 1), ("skip_connect", 0)), (("sep_conv_3x3", 2),), ()), (3, 1, 4)
        ),
        CellGenotype(((("skip_connect", 0), ("skip_connect", 1)),), (2,)),
        CellGenotype(((("avg_pool_3x3", 1),), (("max_pool_3x3", 0), ("skip_connect", 2))), (3,)),
    ]
    return Genotype.from_cells(cells)


def test_per_layer_genotype_builds_different_cells():
    g = _per_layer_genotype()
    net = NetworkCIFAR(g, 10, init_channels=4, layers=5, auxiliary=False)
    v = _shapes(net, (16, 16, 3))
    p = v["params"]
    # cell 0: sep_conv (params) then identity and a pool (no params)
    assert sorted(k for k in p["cell_00"] if k.startswith("ops_")) == ["ops_0"]
    # cell 1 (reduction): a strided dil_conv_5x5 and sep_conv_5x5
    assert p["cell_01"]["ops_1"]["dw_conv"]["kernel"].shape == (5, 5, 8)
    assert p["cell_01"]["ops_2"]["dw_conv2"]["kernel"].shape == (5, 5, 8)
    # cell 3 (reduction, skip_connect from inputs -> FactorizedReduce)
    assert set(p["cell_03"]["ops_0"]) == {"conv_1", "conv_2", "bn"}
    # channels follow len(concat): cell 2 concatenates 3 nodes (incl. input 1), cell 4 one
    assert p["cell_03"]["preprocess1"]["conv"]["kernel"].shape == (3 * 8, 16)
    assert p["cell_04"]["preprocess0"]["conv_1"]["kernel"].shape == (3 * 8, 8)  # FactRed.
    assert p["cell_04"]["preprocess1"]["conv"]["kernel"].shape == (1 * 16, 16)
    assert p["classifier"]["kernel"].shape == (16, 10)
    with pytest.raises(GenotypeError, match="5 per-layer cells but the network has 8"):
        _shapes(NetworkCIFAR(g, 10, init_channels=4, layers=8), (16, 16, 3))


def test_scan_groups():
    """Runs of identical normal cells with stable input shapes; the aux layer ends a run."""
    spans = [(g[0], g[-1]) for g in scan_groups(DARTS_V2, 20, [144] * 6 + [288] * 7 + [576] * 7)]
    assert spans == [(0, 0), (1, 1), (2, 5), (6, 6), (7, 7), (8, 12), (13, 13), (14, 14),
                     (15, 19)]  # fmt: skip
    net = NetworkCIFAR(DARTS_V2, 10, scan_cells=True)
    v = _shapes(net, (32, 32, 3))
    assert {k for k in v["params"] if k.startswith("cells_")} == {
        "cells_02_05",
        "cells_08_12",
        "cells_15_19",
    }
    assert v["params"]["cells_08_12"]["cell"]["ops_0"]["pw_conv1"]["kernel"].shape == (5, 72, 72)
    assert count_params(v["params"]) == 3_349_342
    # per-layer cells: only identical consecutive cells are grouped
    a, b, c, r = _per_layer_genotype().cells[:4]  # 11 layers: reductions at 3 and 7
    g = Genotype.from_cells([a, a, a, r, b, b, c, r, a, a, a])
    assert [len(x) for x in scan_groups(g, 11, [8] * 11)] == [1] * 9 + [2]


# ------------------------------------------------------------------ reduction positions


def _five_distinct_cells() -> list[CellGenotype]:
    from jaxnas.genotype import DARTS_V1, PRDARTS

    return [DARTS_V1.normal, DARTS_V2.normal, DARTS_V1.reduce, DARTS_V2.reduce, PRDARTS.reduce]


@pytest.mark.parametrize("red", [(1, 3), (0, 2), (2, 4)])
def test_per_layer_genotype_reductions_where_recorded(red):
    """5 layers, per-layer cells, reductions recorded in the genotype: the cells at ``red``
    halve the resolution and double the channels, and the network's parameter count is the
    sum of the stem, the classifier and the five cells built one by one with the roles the
    positions give them ((1, 3) are also DARTS' positions for 5 layers; (0, 2) and (2, 4)
    are not)."""
    cells = _five_distinct_cells()
    g = Genotype.from_cells(cells, reductions=red)
    c0, hw = 4, 16
    net = NetworkCIFAR(g, 10, init_channels=c0, layers=5, auxiliary=False)
    assert net.reduction_cells() == red
    v = _shapes(net, (hw, hw, 3))
    x = jax.ShapeDtypeStruct((1, hw, hw, 3), jnp.float32)
    _, inter = jax.eval_shape(
        lambda v, x: net.apply(v, x, capture_intermediates=True, mutable=["intermediates"]), v, x
    )
    # hand bookkeeping of the DARTS network: stem 3C at full size, then per cell (s0, s1)
    s0 = s1 = (hw, 3 * c0)
    c, total = c0, count_params(v["params"])
    by_hand = 3 * 3 * 3 * 3 * c0 + 2 * 3 * c0  # stem conv + BN
    for i, cell_g in enumerate(cells):
        reduction = i in red
        c = 2 * c if reduction else c
        cell = DiscreteCell(cell_g, c, reduction, i - 1 in red)
        args = (jnp.zeros((1, s0[0], s0[0], s0[1])), jnp.zeros((1, s1[0], s1[0], s1[1])), False)
        n_cell = count_params(
            jax.eval_shape(lambda a=args, m=cell: m.init(jax.random.key(0), *a))["params"]
        )
        assert count_params(v["params"][f"cell_{i:02d}"]) == n_cell, i
        by_hand += n_cell
        out = (s1[0] // 2 if reduction else s1[0], 4 * c)
        assert inter["intermediates"][f"cell_{i:02d}"]["__call__"][0].shape == (
            1,
            out[0],
            out[0],
            out[1],
        )
        s0, s1 = s1, out
    by_hand += 4 * c * 10 + 10  # classifier
    assert s1[0] == hw // 4 and total == by_hand
    # teeth: the same cells at DARTS' positions are another network
    if red != (1, 3):
        other = NetworkCIFAR(Genotype.from_cells(cells), 10, init_channels=c0, layers=5,
                             auxiliary=False)  # fmt: skip
        assert other.reduction_cells() == (1, 3)
        assert count_params(_shapes(other, (hw, hw, 3))["params"]) != total


def test_reductions_setting_and_conflicts():
    """A network setting places the reductions of a genotype that records none; it may not
    contradict a genotype that does (one-line error, whichever way the network is built)."""
    net = NetworkCIFAR(DARTS_V2, 10, init_channels=4, layers=5, auxiliary=False, reductions=(0, 3))
    v = _shapes(net, (16, 16, 3))
    # DARTS_V2's reduce cell (max pools, skip from node 2) sits at 0 and 3: its preprocess0
    # reads the stem at 16x16, and cell 1 reduces s0 (FactorizedReduce) after it
    assert "conv_1" in v["params"]["cell_01"]["preprocess0"]
    assert "conv_1" in v["params"]["cell_04"]["preprocess0"]
    assert "conv" in v["params"]["cell_02"]["preprocess0"]
    assert v["params"]["classifier"]["kernel"].shape == (4 * 16, 10)
    g = Genotype.from_cells(_five_distinct_cells(), reductions=(0, 2))
    for build in (
        lambda: _shapes(
            NetworkCIFAR(g, 10, init_channels=4, layers=5, reductions=(1, 3)), (16, 16, 3)
        ),  # fmt: skip
        lambda: make_network(g, "cifar10", init_channels=4, layers=5, reductions=(1, 3)),
        lambda: check_genotype(g, 5, (1, 3)),
        lambda: summary(g, "cifar10", init_channels=4, layers=5, reductions=(1, 3)),
    ):
        with pytest.raises(
            ValueError, match=r"conflicts with the genotype's reductions \[0, 2\]"
        ) as e:
            build()
        assert "\n" not in str(e.value)
    net, _ = make_network(g, "cifar10", init_channels=4, layers=5, reductions=(2, 0))  # agrees
    assert net.reduction_cells() == (0, 2)
    s = summary(g, "cifar10", init_channels=4, layers=5)
    assert s["reductions"] == [0, 2]
    assert summary(DARTS_V2, "cifar10", init_channels=4, layers=5)["reductions"] == [1, 3]
    with pytest.raises(GenotypeError, match="out of range for 5 layers"):
        make_network(DARTS_V2, "cifar10", init_channels=4, layers=5, reductions=(5,))


def test_auxiliary_head_reads_the_last_reduction_cell():
    """DARTS' head reads layer 2 * layers // 3, its second reduction; with other positions it
    reads the last reduction cell: (1, 4) of 5 layers puts it after cell 4 (4 * 4C channels),
    where 2 * 5 // 3 = 3 would give 4 * 2C."""
    net, shape = make_network(DARTS_V2, "cifar10", init_channels=4, layers=5, reductions=(1, 4))
    recs = layer_macs(net, _shapes(net, shape), shape, train=True, mutable=["batch_stats"])
    aux = {r.path.split("/")[-1]: r for r in recs if r.path.startswith("auxiliary_head")}
    assert aux["conv1"].in_shape == (1, 2, 2, 4 * 4 * 4)
    net, shape = make_network(DARTS_V2, "cifar10", init_channels=4, layers=5)  # DARTS: 1, 3
    recs = layer_macs(net, _shapes(net, shape), shape, train=True, mutable=["batch_stats"])
    aux = {r.path.split("/")[-1]: r for r in recs if r.path.startswith("auxiliary_head")}
    assert aux["conv1"].in_shape == (1, 2, 2, 4 * 4 * 4)  # layer 3, after reduction 3


def test_scan_groups_follow_the_reductions():
    """Scan groups break at the recorded reductions (not DARTS'), and the scanned network
    computes what the unrolled one does (inference, random weights)."""
    # 10 layers, reductions (1, 4): a stable run starts 2 layers after a reduction
    chans = [16] * 1 + [32] * 3 + [64] * 6
    spans = [(r[0], r[-1]) for r in scan_groups(DARTS_V2, 10, chans, (1, 4))]
    assert spans == [(0, 0), (1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (6, 9)]
    g = dataclasses.replace(DARTS_V2, reductions=(1, 4))
    assert [(r[0], r[-1]) for r in scan_groups(g, 10, chans)] == spans
    # 6 layers, one reduction at 1: cells 3-5 form one group
    g = dataclasses.replace(DARTS_V2, reductions=(1,))
    net = NetworkCIFAR(g, 3, init_channels=2, layers=6, auxiliary=False)
    scanned = net.clone(scan_cells=True)
    vs_shapes = _shapes(scanned, (8, 8, 1))
    assert {k for k in vs_shapes["params"] if k.startswith("cells_")} == {"cells_03_05"}
    v = _random_variables(net, (8, 8, 1))
    assert count_params(vs_shapes["params"]) == count_params(v["params"])
    vs = _stack_cells(v, vs_shapes)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 8, 8, 1)), jnp.float32)
    y, _ = jit_init(lambda v, x: net.apply(v, x, train=False))(v, x)
    ys, _ = jit_init(lambda v, x: scanned.apply(v, x, train=False))(vs, x)
    np.testing.assert_allclose(np.asarray(ys), np.asarray(y), rtol=1e-5, atol=1e-5)


def test_unknown_op_is_a_one_line_value_error():
    bad = Genotype.from_darts(
        [("sep_conv_3x3", 0), ("conv_9x9", 1)] * 4, [2, 3, 4, 5], DARTS_V2.reduce.pairs, [2, 3]
    )
    for build in (
        lambda: check_genotype(bad, 8),
        lambda: _shapes(NetworkCIFAR(bad, 10, init_channels=4, layers=5), (8, 8, 3)),
        lambda: make_network(bad, "cifar10"),
    ):
        with pytest.raises(ValueError, match="unknown op 'conv_9x9'") as e:
            build()
        assert "\n" not in str(e.value)
    # an op the genotype module knows but the op registry does not
    odd = Genotype.from_darts([("conv_7x1_1x7", 0)] * 8, [2, 3, 4, 5], [("skip_connect", 0)] * 8,
                              [2, 3, 4, 5])  # fmt: skip
    with pytest.raises(ValueError, match="unknown op 'conv_7x1_1x7'"):
        check_genotype(odd, 8)


def test_cli_summary_prints_parameter_count(capsys):
    assert main(["summary", "--genotype", "DARTS_V2"]) == 0
    out = capsys.readouterr().out
    assert "3.35M" in out and "3,349,342" in out and "528" in out
    assert main(["summary", "--genotype", "DARTS_V2", "--dataset", "mnist"]) == 2
    assert "unknown dataset 'mnist'" in capsys.readouterr().err


# ------------------------------------------------------------------------------- drop path


def test_drop_path_function():
    x = jnp.ones((64, 3, 3, 2))
    y = np.asarray(drop_path(x, 0.25, jax.random.key(0)))
    per_sample = y.reshape(64, -1)
    # whole samples are kept (scaled by 1/keep) or zeroed
    assert np.all((per_sample == 0) | np.isclose(per_sample, 1 / 0.75))
    assert np.all(per_sample.min(1) == per_sample.max(1))
    assert 0 < (per_sample[:, 0] == 0).sum() < 64
    assert np.array_equal(np.asarray(drop_path(x, 0.0, jax.random.key(0))), np.asarray(x))


def test_drop_path_skips_identity_ops():
    """As DARTS' Cell.forward: no drop path after an Identity, drop path after any other op."""
    s = jnp.asarray(np.random.default_rng(0).normal(size=(8, 4, 4, 4)), jnp.float32)
    skip = CellGenotype(((("skip_connect", 0), ("skip_connect", 1)),), (2,))
    pool = CellGenotype(((("avg_pool_3x3", 0), ("skip_connect", 1)),), (2,))
    for genotype, dropped in ((skip, False), (pool, True)):
        cell = DiscreteCell(genotype, 4, False, False)
        v = cell.init(jax.random.key(0), s, s, False)

        def run(key, cell=cell, v=v):
            out, _ = cell.apply(v, s, s, True, 0.5, rngs={"dropout": key}, mutable=["batch_stats"])
            return np.asarray(out)

        same = np.array_equal(run(jax.random.key(1)), run(jax.random.key(2)))
        assert same != dropped


def _random_variables(model, input_shape, seed=0):
    """Variables of ``model`` without compiling its init (a jitted init of a 10-cell network
    takes ~20 s on 2 CPU cores): kernels ~ N(0, 1/fan_in), BN scale ~ U(0.5, 1.5), biases
    and running means ~ N(0, 0.1), running variances ~ U(0.5, 1.5)."""
    rng = np.random.default_rng(seed)

    def fill(path, a):
        name = path[-1].key
        if name == "kernel":
            x = rng.normal(0, 1 / np.sqrt(np.prod(a.shape[:-1])), a.shape)
        elif name in ("scale", "var"):
            x = rng.uniform(0.5, 1.5, a.shape)
        else:
            x = rng.normal(0, 0.1, a.shape)
        return jnp.asarray(x, a.dtype)

    return jax.tree_util.tree_map_with_path(fill, _shapes(model, input_shape))


def _stack_cells(unrolled: dict, like: dict) -> dict:
    """Unrolled variables (``cell_08``, ``cell_09``) in the scanned layout (``cells_08_09``)."""
    out = {}
    for col, tree in like.items():
        out[col] = {}
        for key in tree:
            if key.startswith("cells_"):
                a, b = (int(t) for t in key.split("_")[1:])
                cells = [unrolled[col][f"cell_{i:02d}"] for i in range(a, b + 1)]
                out[col][key] = {"cell": jax.tree.map(lambda *xs: jnp.stack(xs), *cells)}
            else:
                out[col][key] = unrolled[col][key]
    return out


@pytest.fixture(scope="module")
def tiny_nets():
    """DARTS_V2, C=4, 10 layers on 8x8x1: reductions at 3 and 6, cells 8-9 form a scan group."""
    net = NetworkCIFAR(DARTS_V2, 10, init_channels=4, layers=10, auxiliary=False)
    scanned = net.clone(scan_cells=True)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 8, 8, 1)), jnp.float32)
    v = _random_variables(net, (8, 8, 1))
    vs = _stack_cells(v, _shapes(scanned, (8, 8, 1)))

    def make_train(model):
        @jit_init
        def train(v, x, key, p):
            return model.apply(v, x, True, p, rngs={"dropout": key}, mutable=["batch_stats"])

        return train

    return net, v, scanned, vs, x, make_train(net), make_train(scanned)


def test_drop_path_in_the_network(tiny_nets):
    net, v, scanned, vs, x, train, train_scanned = tiny_nets
    k1, k2 = jax.random.key(1), jax.random.key(2)
    for step, variables in ((train, v), (train_scanned, vs)):
        # drop_prob = 0: the dropout rng does not matter (one compiled step, p is traced)
        (y1, _), _ = step(variables, x, k1, 0.0)
        (y2, _), _ = step(variables, x, k2, 0.0)
        np.testing.assert_array_equal(y1, y2)
        (y1, _), _ = step(variables, x, k1, 0.5)
        (y2, _), _ = step(variables, x, k2, 0.5)
        assert not np.allclose(y1, y2)
    # inference: drop path is off whatever the probability
    ev = jit_init(lambda v, x, p: net.apply(v, x, False, p)[0])
    np.testing.assert_array_equal(ev(v, x, 0.0), ev(v, x, 0.5))
    assert np.isfinite(np.asarray(ev(v, x, 0.0))).all()


def test_scanned_cells_compute_the_same_function(tiny_nets):
    """scan_cells=True: same parameter count, same outputs and BN updates (training mode)."""
    net, v, scanned, vs, x, train, train_scanned = tiny_nets
    assert {k for k in vs["params"] if k.startswith("cells_")} == {"cells_08_09"}
    assert count_params(vs["params"]) == count_params(v["params"])
    k = jax.random.key(0)
    (y, _), new = train(v, x, k, 0.0)
    (ys, _), new_s = train_scanned(vs, x, k, 0.0)
    np.testing.assert_allclose(ys, y, rtol=1e-5, atol=1e-5)
    want = _stack_cells(dict(new), dict(new_s))
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), want, dict(new_s)
    )


def test_macs_of_scanned_and_grouped_networks_count_every_layer():
    """An nn.scan / nn.vmap body is traced once for many layers or ops: count_macs and
    layer_macs count such a network as its unrolled, one-module-per-op twin."""
    g = _mixed_path_genotype()
    kw = dict(init_channels=4, layers=3, auxiliary=False)
    plain = NetworkCIFAR(g, 10, **kw)
    x = jax.ShapeDtypeStruct((1, 16, 16, 3), jnp.float32)
    shapes = jax.eval_shape(lambda x: plain.init(jax.random.key(0), x, train=False), x)
    want = count_macs(plain, shapes, (16, 16, 3))
    rows = len(layer_macs(plain, shapes, (16, 16, 3), train=False))
    for net in (
        plain.clone(scan_cells=True),
        plain.clone(cfg=dataclasses.replace(plain.cfg, group_ops=True)),
        plain.clone(scan_cells=True, cfg=dataclasses.replace(plain.cfg, group_ops=True)),
    ):
        v = jax.eval_shape(lambda x, net=net: net.init(jax.random.key(0), x, train=False), x)
        assert count_macs(net, v, (16, 16, 3)) == want > 0
        assert len(layer_macs(net, v, (16, 16, 3), train=False)) == rows


# ----------------------------------------------------------------- supernet consistency


@pytest.mark.parametrize("per_layer", [False, True], ids=["normal_reduce", "per_layer"])
def test_one_hot_supernet_equals_discrete_network(per_layer):
    """A supernet whose op weights are one-hot on a genotype's edges and ops computes the
    same function (inference) as the discrete network of that genotype with the same weights.

    The discrete network is built with the search ops (``affine=False`` BN and BN after
    pooling, ``pool_bn=True``), so that pooling ops are compared too; weights and running
    statistics are random and copied across (:func:`variables_from_supernet`).
    """
    layers = 3
    if per_layer:
        r = DARTS_V2.reduce
        n = CellGenotype(
            ((("max_pool_3x3", 1), ("dil_conv_5x5", 0)), (("sep_conv_5x5", 2), ("avg_pool_3x3", 0)),
             (("skip_connect", 3), ("sep_conv_3x3", 1)), (("dil_conv_3x3", 4), ("none", 2))),
            (2, 3, 4, 5),
        )  # fmt: skip
        genotype, sharing = Genotype.from_cells([n, r, r]), "cell"
    else:
        genotype, sharing = DARTS_V2, "cell_type"
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 16, 16, 3)), jnp.float32)
    sup = SuperNet(3, init_channels=4, layers=layers, mixer=OneHotMixer(), arch_sharing=sharing)
    sv = _random_variables(sup, (16, 16, 3), seed=1)  # random weights and running stats
    sv["arch"] = one_hot_arch(genotype, layers, arch_sharing=sharing)
    net = NetworkCIFAR(
        genotype, 3, init_channels=4, layers=layers, auxiliary=False, affine=False, pool_bn=True
    )
    dv = variables_from_supernet(sv, genotype, layers)
    # the mapping fills exactly the discrete network's variable tree
    expected = _shapes(net, (16, 16, 3))
    assert jax.tree.structure(expected) == jax.tree.structure(dv)
    assert jax.tree.map(lambda a: a.shape, expected) == jax.tree.map(lambda a: a.shape, dv)
    sup_fn = jit_init(lambda v, x: sup.apply(v, x, train=False))
    y_sup = sup_fn(sv, x)
    y_net, aux = jit_init(lambda v, x: net.apply(v, x, train=False))(dv, x)
    assert aux is None
    np.testing.assert_allclose(np.asarray(y_net), np.asarray(y_sup), rtol=1e-5, atol=1e-5)
    # the check has teeth: the same supernet on other edges computes another function
    y_other = sup_fn(dict(sv, arch=jax.tree.map(lambda a: a[::-1], sv["arch"])), x)
    assert not np.allclose(np.asarray(y_other), np.asarray(y_net), rtol=1e-3, atol=1e-4)


def test_prdarts_released_genotype_has_the_papers_size():
    """PR-DARTS' released cell (digest §9 item 11, an analytic count of the DARTS
    evaluation network): 3,444,814 parameters on CIFAR-10 (paper 3.4M), 3,496,744 on
    CIFAR-100, 4,981,312 on ImageNet (paper 4.98M).  Its ImageNet multiply-adds under our
    convention, 543.4M, match the paper's 543M (while DARTS_V2's 529.9M is 7.7% under
    DARTS' 574M): the PR-DARTS authors counted as we do."""
    from jaxnas.genotype import get_genotype

    g = get_genotype("PRDARTS")
    assert summary(g, "cifar10")["params"] == 3_444_814
    assert summary(g, "cifar100")["params"] == 3_496_744
    s = summary(g, "imagenet")
    assert s["params"] == 4_981_312
    assert s["macs"] == 543_374_400


def _mixed_path_genotype() -> Genotype:
    """SparseNAS-like cells: several ops of one kind into a node, edges with several ops,
    strided and unstrided ops of one kind into the same node of the reduction cell."""
    normal = CellGenotype(
        (
            (("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("max_pool_3x3", 0), ("skip_connect", 1)),
            (("sep_conv_3x3", 2), ("dil_conv_3x3", 0), ("sep_conv_3x3", 1), ("skip_connect", 2)),
        ),
        (2, 3),
    )
    reduce = CellGenotype(
        (
            (("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("skip_connect", 0), ("avg_pool_3x3", 1)),
            (("sep_conv_3x3", 2), ("sep_conv_3x3", 0), ("skip_connect", 2), ("skip_connect", 1)),
        ),
        (2, 3),
    )
    return Genotype(normal=normal, reduce=reduce)


def _grouped_variables(cell_vars: dict, cell: CellGenotype, reduction: bool) -> dict:
    """The per-op cell's variables (``ops_j``) restacked as the grouped cell's
    (``node{k}_{name}_s{stride}/op``, edges in node order)."""
    out = {k: v for k, v in cell_vars.items() if not k.startswith("ops_")}
    j = 0
    for k, node in enumerate(cell.nodes):
        groups: dict[str, list] = {}
        for name, src in node:
            stride = 2 if reduction and src < cell.n_inputs else 1
            groups.setdefault(f"node{k}_{name}_s{stride}", []).append(cell_vars.get(f"ops_{j}", {}))
            j += 1
        for key, parts in groups.items():
            if parts[0]:
                out[key] = {"op": jax.tree.map(lambda *a: jnp.stack(a), *parts)}
    return out


@pytest.mark.parametrize("train", [False, True])
def test_grouped_ops_cell_equals_the_per_op_cell(train):
    """``OpsConfig(group_ops=True)`` computes the same network as one module per op, with
    the same variables restacked; the BN statistics it updates are the same too."""
    g = _mixed_path_genotype()
    kw = dict(init_channels=4, layers=3, auxiliary=False)
    plain = NetworkCIFAR(g, 10, **kw)
    grouped = NetworkCIFAR(g, 10, cfg=dataclasses.replace(plain.cfg, group_ops=True), **kw)
    x = jax.random.normal(jax.random.key(1), (3, 16, 16, 3))
    # compiled programs, not op by op (init without LLVM optimisation: it runs once)
    v = jit_init(lambda: plain.init(jax.random.key(0), x, train=False))()
    red = plain.reduction_cells()
    regroup = {}
    for col, tree in v.items():
        regroup[col] = {
            name: _grouped_variables(
                sub, g.cell_for_layer(int(name[5:]), 3, red), int(name[5:]) in red
            )
            if name.startswith("cell_")
            else sub
            for name, sub in tree.items()
        }
    # the grouped network's own init has exactly this structure and these shapes
    shapes = jax.eval_shape(lambda: grouped.init(jax.random.key(0), x, train=False))
    same = jax.tree.map(lambda a, b: a.shape == b.shape, shapes, regroup)
    assert all(jax.tree.leaves(same)) and jax.tree.structure(shapes) == jax.tree.structure(regroup)
    # 4 sep_conv_3x3 into node 0 of the normal cell's edges from 0 and 1: one group of 2
    assert (
        regroup["params"]["cell_00"]["node0_sep_conv_3x3_s1"]["op"]["dw_conv1"]["kernel"].shape[0]
        == 2
    )
    mutable = ["batch_stats"] if train else False
    a = jit_init(lambda v: plain.apply(v, x, train=train, mutable=mutable))(v)
    b = jit_init(lambda v: grouped.apply(v, x, train=train, mutable=mutable))(regroup)
    if train:
        (a, sa), (b, sb) = a, b
        sa = {"batch_stats": sa["batch_stats"]}
        want = dict(regroup, batch_stats=None)
        want["batch_stats"] = {
            name: _grouped_variables(
                sub, g.cell_for_layer(int(name[5:]), 3, red), int(name[5:]) in red
            )
            if name.startswith("cell_")
            else sub
            for name, sub in sa["batch_stats"].items()
        }
        np.testing.assert_allclose(
            np.concatenate([np.ravel(t) for t in jax.tree.leaves(sb["batch_stats"])]),
            np.concatenate([np.ravel(t) for t in jax.tree.leaves(want["batch_stats"])]),
            rtol=1e-5,
            atol=1e-6,
        )
    logits_a = a[0] if isinstance(a, tuple) else a
    logits_b = b[0] if isinstance(b, tuple) else b
    np.testing.assert_allclose(logits_b, logits_a, rtol=1e-4, atol=1e-5)


def test_remat_cells_are_the_same_network():
    """``remat=True`` (each cell under ``nn.remat``) changes no variable, no random
    stream and no value: the same initial variables, the same training-mode logits with
    drop path on (the same per-sample masks), the same gradients to float32 rounding.
    5 layers with scanned cells: single normal cells 0 and 1 (their inputs differ in
    shape), a scanned group (cells 2-3) and a reduction cell (4).  DARTS_V2 with each
    sep_conv_3x3 as a dil_conv_3x3 (one depthwise + pointwise + BN block where the
    separable conv stacks two: the same kinds of ops, drop path and random streams, at a
    shorter compile)."""
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 16, 16, 3)), jnp.float32)
    y = jnp.arange(4) % 10
    light = lambda cell: CellGenotype(
        tuple(tuple((op.replace("sep_", "dil_"), src) for op, src in node) for node in cell.nodes),
        cell.concat,
    )
    genotype = Genotype(normal=light(DARTS_V2.normal), reduce=light(DARTS_V2.reduce))
    assert "sep_conv_3x3" not in str(genotype) and "dil_conv_3x3" in str(genotype)
    kw = dict(init_channels=4, layers=5, reductions=(4,), auxiliary=False, scan_cells=True)
    nets = [NetworkCIFAR(genotype, 10, remat=r, **kw) for r in (False, True)]
    variables = [jit_init(lambda n=n: n.init(jax.random.key(0), x, train=False))() for n in nets]
    assert jax.tree.structure(variables[0]) == jax.tree.structure(variables[1])
    assert {"cell_00", "cell_01", "cells_02_03", "cell_04"} <= set(variables[0]["params"])
    for a, b in zip(jax.tree.leaves(variables[0]), jax.tree.leaves(variables[1])):
        np.testing.assert_array_equal(a, b)

    def loss(net, params):
        logits, _ = net.apply(
            {**variables[0], "params": params},
            x,
            train=True,
            drop_prob=0.5,
            rngs={"dropout": jax.random.key(1)},
            mutable=["batch_stats"],
        )[0]
        return jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(4), y]), logits

    (v0, l0), g0 = jit_init(jax.value_and_grad(lambda p: loss(nets[0], p), has_aux=True))(
        variables[0]["params"]
    )
    (v1, l1), g1 = jit_init(jax.value_and_grad(lambda p: loss(nets[1], p), has_aux=True))(
        variables[0]["params"]
    )
    np.testing.assert_allclose(l0, l1, rtol=1e-6, atol=1e-6)
    assert np.count_nonzero(np.asarray(l0)) > 0
    for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
