"""The NAS-Bench-201 / NATS-Bench topology space: cell, arch strings, networks, lookup, search.

Known answers come from the benchmark itself: its parameter and FLOP ranges over the
15625 cells (``get_cost_info``, NAS-Bench-201-v1_1 data: CIFAR-10 0.073306M-1.531546M
parameters and 7.78305M-220.11969M FLOPs, CIFAR-100 0.079156M-1.537396M,
ImageNet16-120 0.080456M-1.538696M and 1.9534M-55.03756M).  The smallest network is
any cell without a convolution, the largest the all-``nor_conv_3x3`` cell.
"""

from __future__ import annotations

import json
import os
import sys
import types
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnas import data
from jaxnas.config import default_config, load_config
from jaxnas.models import OneHotMixer
from jaxnas.models.nb201_net import (
    InferCell,
    NB201Network,
    NB201SuperNet,
    SearchCell,
    variables_from_supernet,
)
from jaxnas.models.summary import count_macs, count_params
from jaxnas.ops import OpsConfig
from jaxnas.search import build
from jaxnas.spaces import nb201
from jaxnas.supernet import SoftmaxMixer
from jaxnas.xla import jit_init

# The programs these tests compile to compare values go through jit_init: compiled without
# LLVM optimisation (less CPU time to compile, the same functions; each runs a few times on
# tiny inputs).

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALL_CONV = nb201.NB201Arch(("nor_conv_3x3",) * 6)
NO_CONV = nb201.parse(
    "|skip_connect~0|+|avg_pool_3x3~0|none~1|+|none~0|skip_connect~1|avg_pool_3x3~2|"
)
# the example of NATS-Bench's API docstring (query_index_by_arch)
EXAMPLE = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|"
    "+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
)


def _shapes(model, input_shape, **kw):
    x = jax.ShapeDtypeStruct((2, *input_shape), jnp.float32)
    return jax.eval_shape(lambda x: model.init(jax.random.key(0), x, **kw), x)


def _random_variables(model, input_shape, seed=0, **kw):
    """Variables without compiling init: kernels ~ N(0, 1/(4 C_in)), BN scale and running
    variance ~ U(0.5, 1.5), biases and running means ~ N(0, 0.1)."""
    rng = np.random.default_rng(seed)

    def fill(path, a):
        name = path[-1].key
        if name == "kernel":
            x = rng.normal(0, 0.5 / np.sqrt(a.shape[-2]), a.shape)  # stacked by the scans
        elif name in ("scale", "var"):
            x = rng.uniform(0.5, 1.5, a.shape)
        else:
            x = rng.normal(0, 0.1, a.shape)
        return jnp.asarray(x, a.dtype)

    return jax.tree_util.tree_map_with_path(fill, _shapes(model, input_shape, **kw))


# ---------------------------------------------------------------------------- the space


def test_space_has_6_edges_5_ops_15625_cells():
    """The benchmark's edge order is ``sorted('{i}<-{j}')`` (``edge2index`` of the search
    cell); every cell is distinct, and so is every arch string."""
    reference_order = sorted(f"{i}<-{j}" for i in range(1, 4) for j in range(i))
    assert [f"{d}<-{s}" for s, d in nb201.NB201_CELL.edges] == reference_order
    assert nb201.NB201_CELL.n_edges == 6 and len(nb201.NB201_PRIMITIVES) == 5
    archs = list(nb201.all_archs())
    assert len(archs) == nb201.NUM_ARCHS == 15625
    assert len(set(archs)) == 15625 and len({str(a) for a in archs}) == 15625
    assert [a.index for a in archs] == list(range(15625))


def test_arch_string_round_trip_on_every_cell():
    for a in nb201.all_archs():
        s = nb201.format_arch(a)
        assert nb201.parse(s) == a
        assert s.count("+") == 2 and s.count("~") == 6


def test_parse_the_benchmark_example():
    a = nb201.parse(EXAMPLE)
    # edges 0->1 | 0->2, 1->2 | 0->3, 1->3, 2->3
    assert a.ops == (
        "nor_conv_3x3",
        "nor_conv_3x3",
        "avg_pool_3x3",
        "skip_connect",
        "nor_conv_3x3",
        "skip_connect",
    )
    assert str(a) == EXAMPLE
    assert a.nodes[2] == (("skip_connect", 0), ("nor_conv_3x3", 1), ("skip_connect", 2))
    assert a.skip_ratio == pytest.approx(2 / 6)
    # inputs listed in another order name the same cell
    assert (
        nb201.parse(
            EXAMPLE.replace("|skip_connect~0|nor_conv_3x3~1|", "|nor_conv_3x3~1|skip_connect~0|")
        )
        == a
    )


@pytest.mark.parametrize(
    "bad, words",
    [
        ("|nor_conv_3x3~0|+|none~0|none~1|", "3 nodes"),
        ("|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown op"),
        ("|none~0|+|none~0|none~0|+|none~0|none~1|none~2|", "repeated"),
        ("|none~0|+|none~0|none~2|+|none~0|none~1|none~2|", "not an earlier node"),
        ("|none~0|+|none~0|+|none~0|none~1|none~2|", "no input from node(s) [1]"),
        ("|none0|+|none~0|none~1|+|none~0|none~1|none~2|", "op~source"),
        ("none~0+|none~0|none~1|+|none~0|none~1|none~2|", "'|op~src|...|'"),
    ],
)
def test_malformed_arch_strings_are_one_line_errors(bad, words):
    with pytest.raises(nb201.NB201Error) as e:
        nb201.parse(bad)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_derive_keeps_none_like_nas_bench_201_darts():
    """NAS-Bench-201's DARTS rule is the argmax over all 5 ops per edge (``none`` wins
    where it is strongest), not DARTS' "strongest non-zero op"; ties go to the first op."""
    w = np.full((6, 5), 0.1)
    w[:, 3] = 0.2  # nor_conv_3x3 everywhere ...
    w[4, 0] = 0.5  # ... except edge 1->3, where none is strongest
    a = nb201.derive(w)
    assert a.ops[4] == "none" and a.ops[:4] + a.ops[5:] == ("nor_conv_3x3",) * 5
    assert nb201.derive(np.zeros((6, 5))) == nb201.NB201Arch(("none",) * 6)
    rng = np.random.default_rng(0)
    for _ in range(50):
        a = nb201.NB201Arch(tuple(rng.choice(nb201.NB201_PRIMITIVES, 6)))
        assert nb201.derive(nb201.one_hot(a)) == a
    # a reduced op list: columns name the ops
    prims = ("skip_connect", "nor_conv_3x3")
    assert (
        nb201.derive(np.eye(6, 2), prims).ops
        == ("skip_connect", "nor_conv_3x3") + ("skip_connect",) * 4
    )
    with pytest.raises(ValueError, match="shape"):
        nb201.derive(np.zeros((14, 5)))


def test_genotype_json_round_trip_and_dispatch(tmp_path):
    a = nb201.parse(EXAMPLE)
    path = tmp_path / "g.json"
    nb201.save(a, path)
    assert json.loads(path.read_text()) == {"format": nb201.JSON_FORMAT, "arch": EXAMPLE}
    assert nb201.load(path) == a and nb201.maybe_load(str(path)) == a
    assert nb201.maybe_load(EXAMPLE) == a and nb201.maybe_load(a) is a
    # DARTS genotypes (names, their JSON) are not NB201 cells
    assert nb201.maybe_load("DARTS_V2") is None
    darts = tmp_path / "darts.json"
    darts.write_text('{"normal": [], "normal_concat": [], "reduce": [], "reduce_concat": []}')
    assert nb201.maybe_load(str(darts)) is None
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": nb201.JSON_FORMAT, "arch": "|none~0|"}))
    with pytest.raises(nb201.NB201Error, match="bad.json"):
        nb201.load(bad)


def test_plot_regenerates_the_cell_picture_of_an_nb201_workdir(tmp_path):
    from jaxnas.search_workdir import regenerate

    nb201.save(nb201.parse(EXAMPLE), tmp_path / "genotype.json")
    out = regenerate(tmp_path)
    assert sorted(os.path.basename(p) for p in out["genotype"]) == [
        "genotype_cell.png",
        "genotype_cell.svg",
    ]
    assert all(os.path.getsize(p) > 0 for p in out["genotype"])


# ---------------------------------------------------------------------------- networks


@pytest.mark.parametrize(
    "input_shape, classes, small, large",
    [
        ((32, 32, 3), 10, 73_306, 1_531_546),
        ((32, 32, 3), 100, 79_156, 1_537_396),
        ((16, 16, 3), 120, 80_456, 1_538_696),
    ],
    ids=["cifar10", "cifar100", "ImageNet16-120"],
)
def test_parameter_counts_match_the_benchmark(input_shape, classes, small, large):
    """C=16, N=5: the benchmark's smallest and largest parameter counts, exactly."""
    for arch, expected in ((NO_CONV, small), (ALL_CONV, large)):
        net = NB201Network(arch, classes)
        assert count_params(_shapes(net, input_shape)["params"]) == expected


@pytest.mark.parametrize(
    "input_shape, classes, small, large",
    [((32, 32, 3), 10, 7.78305, 220.11969), ((16, 16, 3), 120, 1.9534, 55.03756)],
    ids=["cifar10", "ImageNet16-120"],
)
def test_multiply_adds_match_the_benchmark_flops(input_shape, classes, small, large):
    """The benchmark's FLOPs are conv + linear multiply-adds plus the classifier's bias
    additions (``classes`` of them), in millions to 5 decimals.  Counted on the
    unrolled network: ``nn.scan`` traces a stage's cell once."""
    for arch, flops in ((NO_CONV, small), (ALL_CONV, large)):
        net = NB201Network(arch, classes, scan_cells=False)
        macs = count_macs(net, _shapes(net, input_shape), input_shape)
        assert round((macs + classes) / 1e6, 5) == pytest.approx(flops, abs=1e-9)


def test_ops_are_nas_bench_201s():
    """avg_pool_3x3 excludes the padding (``count_include_pad=False``: a constant image
    stays constant up to the border) and has no BN after it (no variables); the convs
    are ReLU-conv-BN (a negative input gives the BN of zeros: its bias)."""
    from jaxnas.models.nb201_net import make_op

    x = jnp.full((1, 5, 5, 2), 3.0)
    pool = make_op("avg_pool_3x3", 2, affine=False, cfg=OpsConfig())
    assert pool.init(jax.random.key(0), x, False) == {}
    np.testing.assert_allclose(np.asarray(pool.apply({}, x, False)), 3.0, rtol=1e-6)
    conv = make_op("nor_conv_3x3", 2, affine=True, cfg=OpsConfig())
    v = conv.init(jax.random.key(0), x, False)
    v["params"]["bn"]["bias"] = jnp.array([0.5, -1.0])
    np.testing.assert_allclose(
        np.asarray(conv.apply(v, -x, False)), np.broadcast_to([0.5, -1.0], x.shape)
    )
    assert make_op("none", 2, affine=False, cfg=OpsConfig()) is None


def test_none_edges_give_exact_zeros():
    """``none`` adds exactly 0: the supernet cell ignores its weight, a cell whose edges
    all weigh ``none`` outputs zeros, and so does a discrete all-``none`` cell."""
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 6, 6, 3)), jnp.float32)
    cell = SearchCell(nb201.NB201_PRIMITIVES, SoftmaxMixer(), train=False)
    w = jnp.asarray(np.random.default_rng(1).uniform(0.1, 1.0, size=(6, 5)), jnp.float32)
    v = _random_variables(cell, (6, 6, 3), w=w)
    f = jit_init(lambda v, w: cell.apply(v, x, w))
    y = f(v, w)
    assert float(jnp.max(jnp.abs(y))) > 0
    np.testing.assert_array_equal(np.asarray(f(v, w.at[:, 0].add(7.0))), np.asarray(y))
    only_none = jnp.zeros((6, 5)).at[:, 0].set(1.0)
    np.testing.assert_array_equal(np.asarray(f(v, only_none)), 0.0)
    infer = InferCell(nb201.NB201Arch(("none",) * 6))
    out = infer.apply(infer.init(jax.random.key(0), x, train=False), x, train=False)
    np.testing.assert_array_equal(np.asarray(out), 0.0)


def test_one_hot_supernet_equals_discrete_network():
    """A supernet whose op weights are one-hot on a cell computes (inference) the
    discrete network of that cell built with the search ops (``affine=False``), weights
    and running statistics copied across.  The cell has a node without inputs (node 2)
    that feeds a conv, whose BN turns those zeros into non-zeros in both networks."""
    arch = nb201.parse(
        "|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|avg_pool_3x3~1|nor_conv_1x1~2|"
    )
    shape = (8, 8, 3)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, *shape)), jnp.float32)
    sup = NB201SuperNet(5, init_channels=4, cells_per_stage=2, mixer=OneHotMixer())
    sv = _random_variables(sup, shape, seed=1)
    sv["arch"] = {"cell": jnp.asarray(nb201.one_hot(arch))}
    net = NB201Network(arch, 5, init_channels=4, cells_per_stage=2, affine=False)
    dv = variables_from_supernet(sv, arch)
    expected = _shapes(net, shape)
    assert jax.tree.map(lambda a: a.shape, expected) == jax.tree.map(lambda a: a.shape, dv)
    sup_fn = jit_init(lambda v: sup.apply(v, x, train=False))
    y_net, aux = jit_init(lambda v: net.apply(v, x, train=False))(dv)
    assert aux is None
    np.testing.assert_allclose(np.asarray(y_net), np.asarray(sup_fn(sv)), rtol=1e-5, atol=1e-5)
    other = nb201.parse(
        "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|skip_connect~0|avg_pool_3x3~1|nor_conv_1x1~2|"
    )
    y_other = sup_fn(dict(sv, arch={"cell": jnp.asarray(nb201.one_hot(other))}))
    assert not np.allclose(np.asarray(y_other), np.asarray(y_net), rtol=1e-3, atol=1e-4)


def test_reduction_block_needs_even_sizes():
    net = NB201Network(NO_CONV, 10, init_channels=4, cells_per_stage=1)
    with pytest.raises(ValueError, match="even spatial size"):
        _shapes(net, (7, 7, 1))


# ------------------------------------------------------------------- search and training


def _tiny(method="darts", **search):
    cfg = load_config(os.path.join(ROOT, f"configs/{method}_nb201_fmnist_tiny.py"))
    cfg.unlock()
    for k, v in search.items():
        cfg.search[k] = v
    return cfg


def test_darts_and_rarts_build_the_nb201_supernet():
    """``model.space`` picks the supernet; alpha is one (6, 5) array shared by all cells,
    derived by NAS-Bench-201's rule (no state needed beyond ``arch``)."""
    alpha = np.random.default_rng(0).normal(size=(6, 5)).astype(np.float32)
    for method in ("darts", "rarts"):
        m = build(_tiny(method), steps_per_epoch=4, num_classes=10, input_shape=(28, 28, 1))
        assert isinstance(m.model, NB201SuperNet) and m.model.cells_per_stage == 2
        assert m.primitives == nb201.NB201_PRIMITIVES and m.space == "nb201"
        assert m.edge_labels == ("0->1", "0->2", "1->2", "0->3", "1->3", "2->3")
        state = SimpleNamespace(arch={"cell": jnp.asarray(alpha)})
        w = m.arch_weights(state)["cell"]
        np.testing.assert_allclose(w, jax.nn.softmax(alpha, -1), rtol=1e-6)
        assert m.genotype(state) == nb201.derive(alpha)
        assert m.benchmark_report(m.genotype(state)) is None  # no search.nats_bench


def test_space_config_errors_are_one_line():
    kw = dict(steps_per_epoch=4, num_classes=10, input_shape=(28, 28, 1))
    cfg = _tiny()
    cfg.model.primitives = "darts"
    with pytest.raises(ValueError, match="model.primitives='nb201'"):
        build(cfg, **kw)
    cfg = _tiny()
    cfg.model.space = "nb101"
    with pytest.raises(ValueError, match="model.space must be one of"):
        build(cfg, **kw)
    darts_cfg = default_config("darts")
    darts_cfg.search.nats_bench = "/somewhere"
    with pytest.raises(ValueError, match="needs model.space='nb201'"):
        build(darts_cfg, **kw)
    with pytest.raises(ValueError, match="DARTS space only"):
        build(_tiny("rarts", latency_table="lat.json"), **kw)


def test_lookup_without_nats_bench_is_a_clear_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "nats_bench", None)  # `import nats_bench` fails
    with pytest.raises(ImportError, match=r"pip install 'jaxnas\[nats\]'"):
        nb201.lookup(EXAMPLE, str(tmp_path))
    # the same check runs when a search is set up, before any training
    with pytest.raises(ValueError, match="nats_bench"):
        build(
            _tiny(nats_bench=str(tmp_path)),
            steps_per_epoch=4,
            num_classes=10,
            input_shape=(28, 28, 1),
        )
    assert nb201.main(["lookup", "--arch", EXAMPLE, "--benchmark", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "nats_bench" in err and "\n" not in err


class _FakeAPI:
    """The four calls ``lookup`` makes of a NATS-Bench topology API, with canned records."""

    def __init__(self):
        self.calls = []
        self.archs = {EXAMPLE: 1462}

    def query_index_by_arch(self, arch):
        self.calls.append(("query", arch))
        return self.archs.get(arch, -1)

    def get_more_info(self, index, dataset, iepoch=None, hp="12", is_random=True):
        self.calls.append(("info", index, dataset, hp, is_random))
        info = {"train-accuracy": 99.0, "test-accuracy": 93.5}
        if dataset != "cifar10":
            info["valid-accuracy"] = 91.25
        return info

    def get_cost_info(self, index, dataset, hp="12"):
        return {"params": 1.073, "flops": 153.27, "latency": 0.01}


def test_lookup_reads_the_benchmark_through_its_api(monkeypatch, tmp_path, capsys):
    api = _FakeAPI()
    created = []

    def create(path, space, fast_mode=False, verbose=True):
        created.append((path, space, fast_mode, verbose))
        return api

    monkeypatch.setitem(sys.modules, "nats_bench", types.SimpleNamespace(create=create))
    report = nb201.lookup(nb201.parse(EXAMPLE), str(tmp_path), datasets=("cifar10", "cifar100"))
    assert created == [(str(tmp_path), "tss", True, False)]  # a folder: the lazy archive
    assert ("query", EXAMPLE) in api.calls
    assert ("info", 1462, "cifar10", "200", False) in api.calls  # 200 epochs, mean of seeds
    assert report["index"] == 1462 and report["hp"] == "200"
    assert report["results"]["cifar10"] == {"test-accuracy": 93.5, "params": 1.073, "flops": 153.27}
    assert report["results"]["cifar100"]["valid-accuracy"] == 91.25
    with pytest.raises(ValueError, match="has no cell"):
        nb201.lookup(ALL_CONV, api)
    # the command: an arch string or a genotype JSON
    g = tmp_path / "g.json"
    nb201.save(nb201.parse(EXAMPLE), g)
    assert nb201.main(["lookup", "--arch", str(g), "--benchmark", str(tmp_path), "--json"]) == 0
    assert (
        json.loads(capsys.readouterr().out)["results"]["cifar10-valid"]["valid-accuracy"] == 91.25
    )


def test_trainer_builds_the_nb201_network(tmp_path):
    """``jaxnas train`` with an arch string (or its JSON) trains NAS-Bench-201's network;
    its report counts the benchmark's parameters and FLOPs (multiply-adds of the
    unrolled cells, although the trainer scans them)."""
    from jaxnas.train import Trainer, network_report, resolve_genotype

    cfg = load_config(os.path.join(ROOT, "configs/eval_nb201_cifar10.py"))
    arch = resolve_genotype(cfg, None)
    assert arch == nb201.parse(
        "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|none~2|"
    )
    g = tmp_path / "g.json"
    nb201.save(ALL_CONV, g)
    assert resolve_genotype(cfg, str(g)) == ALL_CONV
    cfg.unlock()
    cfg.data.batch_size = 8
    t = Trainer(cfg, ALL_CONV, num_classes=10, input_shape=(32, 32, 3), steps_per_epoch=2)
    assert isinstance(t.model, NB201Network) and t.model.scan_cells
    state = jax.eval_shape(t._init_state, jax.random.key_data(jax.random.key(0)))
    report = network_report(t, state)
    assert report["params"] == 1_531_546 and report["macs"] + 10 == 220_119_690
    assert report.get("reductions", [5, 11]) == [5, 11]  # the two ResNet blocks
    cfg.model.auxiliary = True
    with pytest.raises(ValueError, match="auxiliary"):
        Trainer(cfg, ALL_CONV, num_classes=10, input_shape=(32, 32, 3), steps_per_epoch=2)


# ------------------------------------------------------------------ end to end (slow)


def _needs_fmnist():
    try:
        data.load("fashion_mnist", "train", limit=1)
    except data.DatasetNotFoundError as e:
        pytest.skip(str(e))


def _one_short_epoch(cfg, workdir):
    from jaxnas.run import search

    cfg.search.epochs = 1
    cfg.data.batch_size = 8
    cfg.data.limit = 48  # 24 + 24 -> 3 steps
    cfg.model.init_channels, cfg.model.layers = 2, 1
    cfg.run.eval_limit = 16
    cfg.run.tensorboard = False
    return search(cfg, workdir, progress=False)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["darts", "rarts"])
def test_search_one_epoch_end_to_end(method, tmp_path, monkeypatch):
    """A real one-epoch search on the NB201 space through the runner: the genotype file
    holds the arch string, the cell is drawn, and with ``search.nats_bench`` set the
    summary carries the benchmark's record of the found cell (a stand-in API here)."""
    _needs_fmnist()
    api = _FakeAPI()
    monkeypatch.setitem(
        sys.modules, "nats_bench", types.SimpleNamespace(create=lambda *a, **k: api)
    )
    cfg = _tiny(method, nats_bench=str(tmp_path))
    s = _one_short_epoch(cfg, str(tmp_path / "run"))
    arch = nb201.load(s["genotype_json"])
    assert str(arch) == s["genotype"] and s["method"] == method
    assert any(p.endswith("genotype_cell.png") for p in s["genotype_pictures"])
    assert np.isfinite(s["final"]["test/accuracy"])
    assert ("query", str(arch)) in api.calls
    if str(arch) in api.archs:
        assert s["benchmark"]["results"]["cifar10"]["test-accuracy"] == 93.5
    else:  # the stand-in knows one cell only: the search still ends, the miss is reported
        assert "has no cell" in s["benchmark"]["error"]
    with open(os.path.join(s["workdir"], "alphas", "meta.json")) as f:
        assert json.load(f)["primitives"] == list(nb201.NB201_PRIMITIVES)


@pytest.mark.slow
def test_retrain_one_epoch_end_to_end(tmp_path):
    """``jaxnas train`` on an NB201 cell: one short epoch, the arch string in the workdir."""
    from jaxnas.train import train

    _needs_fmnist()
    cfg = load_config(os.path.join(ROOT, "configs/eval_nb201_fmnist_small.py"))
    cfg.unlock()
    cfg.train.epochs, cfg.data.batch_size, cfg.data.limit = 1, 16, 48
    cfg.model.init_channels, cfg.model.layers = 2, 1
    cfg.run.eval_limit, cfg.run.tensorboard = 32, False
    s = train(cfg, str(tmp_path / "t"), genotype=EXAMPLE, progress=False)
    assert s["genotype"] == EXAMPLE and np.isfinite(s["final"]["test/accuracy"])
    assert nb201.load(tmp_path / "t" / "genotype.json") == nb201.parse(EXAMPLE)
