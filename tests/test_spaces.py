"""The search spaces as objects (``jaxnas.search_spaces``): one interface, wired right.

Every check is an identity that fails if a space object calls the wrong function or
the wrong space: derivation inverts the one-hot architecture, JSON round-trips and
writes the bytes the space's own writer writes, ``space_of`` finds each genotype's
space, and the networks built through a space object equal the ones built directly
(Flax modules compare by their fields).  Nothing here compiles a network.
"""

from __future__ import annotations

import json
import os
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnas import genotype as genotype_lib
from jaxnas import search_spaces
from jaxnas.config import default_config, load_config
from jaxnas.models.darts_net import NetworkCIFAR, NetworkImageNet
from jaxnas.models.nb201_net import NB201SuperNet, network_for_training
from jaxnas.ops import DARTS_PRIMITIVES, OpsConfig
from jaxnas.rnn import genotype as rnn_genotype
from jaxnas.search import build
from jaxnas.search.method import supernet_config
from jaxnas.spaces import GenotypeError, nb201
from jaxnas.spaces.darts import DARTS_CELL
from jaxnas.supernet import SoftmaxMixer, SuperNet, resolve_remat

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DARTS, NB201, RNN = search_spaces.DARTS_SPACE, search_spaces.NB201_SPACE, search_spaces.RNN_SPACE
NB201_EXAMPLE = nb201.parse(
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|"
)

#: a few genotypes of each space
GENOTYPES = {
    "darts": [genotype_lib.DARTS_V1, genotype_lib.DARTS_V2, genotype_lib.PRDARTS],
    "nb201": [
        NB201_EXAMPLE,
        nb201.NB201Arch(("none",) * 6),
        nb201.NB201Arch(("skip_connect",) * 6),
    ],
    "rnn": [rnn_genotype.DARTS_V1, rnn_genotype.DARTS_V2],
}


def _by_src(g: genotype_lib.Genotype) -> genotype_lib.Genotype:
    """``g`` with each node's pairs by source (the order the DARTS rule lists tied edges)."""
    cell = lambda c: genotype_lib.CellGenotype(
        tuple(tuple(sorted(n, key=lambda p: p[1])) for n in c.nodes), c.concat, c.n_inputs
    )
    return genotype_lib.Genotype(normal=cell(g.normal), reduce=cell(g.reduce))


def test_the_registry_names_every_space():
    assert search_spaces.get("darts") is DARTS and search_spaces.get("nb201") is NB201
    assert search_spaces.get("rnn") is RNN
    assert [s.name for s in search_spaces.SPACES.values()] == ["darts", "nb201", "rnn"]
    with pytest.raises(ValueError, match="unknown search space 'nb101'; known: darts, nb201"):
        search_spaces.get("nb101")
    # every model.space a search method accepts has its object
    from jaxnas.search import METHODS

    for cls in METHODS.values():
        for name in cls.spaces:
            assert search_spaces.get(name).name == name


def test_topologies_and_edge_labels():
    assert DARTS.topology is DARTS_CELL and DARTS.topology.n_edges == 14
    assert NB201.topology is nb201.NB201_CELL and NB201.topology.n_edges == 6
    assert NB201.edge_labels == ("0->1", "0->2", "1->2", "0->3", "1->3", "2->3")
    assert DARTS.edge_labels == ()  # the plots number DARTS' 14 edges
    # the recurrent cell's rows: s_j -> s_i at edge_index(i, j), every j < i
    assert RNN.topology.n_edges == rnn_genotype.n_edges() == 36
    for row, (j, i) in enumerate(RNN.topology.edges):
        assert rnn_genotype.edge_index(i, j) == row
    assert RNN.edge_labels[:3] == ("s0->s1", "s0->s2", "s1->s2")
    assert DARTS.primitives == DARTS_PRIMITIVES and NB201.primitives == nb201.NB201_PRIMITIVES
    assert RNN.primitives == rnn_genotype.RNN_OPS
    assert DARTS.resolve_primitives("darts") == DARTS_PRIMITIVES
    assert NB201.resolve_primitives("nb201") == nb201.NB201_PRIMITIVES
    assert RNN.resolve_primitives("rnn") == rnn_genotype.RNN_OPS
    with pytest.raises(ValueError, match="model.primitives='nb201'"):
        NB201.resolve_primitives("darts")


@pytest.mark.parametrize("name", ["darts", "nb201", "rnn"])
def test_derive_inverts_the_one_hot_architecture(name):
    space = search_spaces.get(name)
    for g in GENOTYPES[name]:
        weights = space.one_hot(g)
        assert tuple(weights) == space.arch_names
        for w in weights.values():
            assert w.shape == (space.topology.n_edges, len(space.primitives))
        want = _by_src(g) if name == "darts" else g  # DARTS lists tied edges by source
        assert space.derive(weights) == want


def test_derive_is_each_space_rule_on_random_weights():
    rng = np.random.default_rng(0)
    wn, wr = rng.random((14, 8)), rng.random((14, 8))
    assert DARTS.derive({"normal": wn, "reduce": wr}) == genotype_lib.derive(wn, wr)
    assert DARTS.derive({"normal": wn, "reduce": wr}, k=None, threshold=0.5) == (
        genotype_lib.derive(wn, wr, k=None, threshold=0.5)
    )
    w = rng.random((6, 5))
    assert NB201.derive({"cell": w}) == nb201.derive(w)
    theta = rng.normal(size=(36, 4)) * (rng.random((36, 4)) > 0.7)
    assert RNN.derive({"recurrent": theta}, threshold=0.1) == rnn_genotype.derive_rnn(
        theta, threshold=0.1
    )


@pytest.mark.parametrize("name", ["darts", "nb201", "rnn"])
def test_json_round_trip_writes_what_the_space_writer_writes(name, tmp_path):
    space = search_spaces.get(name)
    old_writer = {
        "darts": genotype_lib.save,
        "nb201": nb201.save,
        "rnn": lambda g, p: g.save_json(p),
    }[name]
    for i, g in enumerate(GENOTYPES[name]):
        assert space.from_json(space.to_json(g)) == g
        new, old = tmp_path / f"new{i}.json", tmp_path / f"old{i}.json"
        space.save(g, new)
        old_writer(g, old)
        assert new.read_bytes() == old.read_bytes() == space.to_json(g).encode()
        assert space.load(new) == g and space.maybe_load(str(new)) == g
        assert space.get_genotype(str(new)) == g
        # no other space claims this file
        for other in search_spaces.SPACES.values():
            if other is not space:
                assert other.maybe_load(str(new)) is None


def test_space_of_finds_each_genotype_space():
    for name, gs in GENOTYPES.items():
        for g in gs:
            assert search_spaces.space_of(g) is search_spaces.get(name)
            assert [s.name for s in search_spaces.SPACES.values() if s.owns(g)] == [name]
    with pytest.raises(TypeError, match="no search space owns a str"):
        search_spaces.space_of("DARTS_V2")


def test_resolve_genotype_reads_names_strings_and_files(tmp_path):
    resolve = search_spaces.resolve_genotype
    assert resolve("DARTS_V2") is genotype_lib.DARTS_V2
    assert resolve(str(NB201_EXAMPLE)) == NB201_EXAMPLE
    assert resolve(NB201_EXAMPLE) is NB201_EXAMPLE
    nb, dg = tmp_path / "nb.json", tmp_path / "darts.json"
    nb201.save(NB201_EXAMPLE, nb)
    genotype_lib.save(genotype_lib.PRDARTS, dg)
    assert resolve(str(nb)) == NB201_EXAMPLE and resolve(str(dg)) == genotype_lib.PRDARTS
    # unknown: the DARTS reader's own message, as jaxnas.genotype.get_genotype gives it
    with pytest.raises(GenotypeError) as new:
        resolve("DARTS_V9")
    with pytest.raises(GenotypeError) as old:
        genotype_lib.get_genotype("DARTS_V9")
    assert str(new.value) == str(old.value)
    # an unregistered op: strict reads refuse it, a redraw (strict=False) reads it
    obj = json.loads(genotype_lib.to_json(genotype_lib.DARTS_V2).replace("dil_conv_3x3", "my_op"))
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps(obj))
    with pytest.raises(GenotypeError, match="unknown op 'my_op'"):
        resolve(str(odd))
    assert resolve(str(odd), strict=False).normal.nodes[3][1] == ("my_op", 2)
    # the recurrent space on request only
    assert resolve("darts_v2", ("rnn",)) is rnn_genotype.DARTS_V2
    with pytest.raises(GenotypeError, match="unknown genotype 'darts_v2'"):
        resolve("darts_v2")


def test_supernets_through_the_space_equal_the_direct_ones():
    model = supernet_config(init_channels=8, layers=5, remat=True)
    cfg, mixer = OpsConfig(depthwise="shifted"), SoftmaxMixer()
    kw = dict(num_classes=10, model=model, cfg=cfg)
    direct = dict(num_classes=10, init_channels=8, layers=5, stem_multiplier=3, remat=True)
    direct.update(primitives=DARTS_PRIMITIVES, mixer=mixer, cfg=cfg)
    assert DARTS.supernet(mixer, primitives=DARTS_PRIMITIVES, **kw) == SuperNet(**direct)
    per_layer = DARTS.supernet(mixer, primitives=DARTS_PRIMITIVES, reductions=[1, 3], **kw)
    assert per_layer == SuperNet(**direct, arch_sharing="cell", reductions=(1, 3))
    assert per_layer != SuperNet(**direct)  # the comparison sees the fields
    prims = nb201.NB201_PRIMITIVES[1:]
    net = NB201.supernet(mixer, primitives=prims, **kw)
    assert net == NB201SuperNet(
        num_classes=10,
        init_channels=8,
        cells_per_stage=5,
        primitives=prims,
        mixer=mixer,
        cfg=cfg,
        remat=True,
    )
    with pytest.raises(ValueError, match="no per-layer architectures"):
        NB201.supernet(mixer, primitives=prims, reductions=(1, 3), **kw)
    with pytest.raises(NotImplementedError, match="rnn space has no supernet"):
        RNN.supernet(mixer, primitives=RNN.primitives, **kw)
    # the traced "arch" collection has the space's names and shapes (no compile)
    tiny = supernet_config(init_channels=4, layers=1)
    small = NB201.supernet(mixer, primitives=prims, num_classes=3, model=tiny, cfg=OpsConfig())
    shapes = jax.eval_shape(
        lambda k: small.init({"params": k}, jnp.zeros((1, 8, 8, 1)), train=False),
        jax.random.key(0),
    )
    assert {k: v.shape for k, v in shapes["arch"].items()} == {"cell": (6, 4)}


def test_the_method_contract_builds_and_derives_through_the_space():
    kw = dict(steps_per_epoch=2, num_classes=10, input_shape=(28, 28, 1))
    cfg = load_config(os.path.join(ROOT, "configs/darts_nb201_fmnist_tiny.py"))
    m = build(cfg, **kw)
    assert m.search_space is NB201
    assert m.model == NB201.supernet(
        m.make_mixer(),
        num_classes=10,
        model=cfg.model,
        primitives=m.primitives,
        cfg=m.model.cfg,
    )
    alpha = np.random.default_rng(1).normal(size=(6, len(m.primitives)))
    state = types.SimpleNamespace(arch={"cell": jnp.asarray(alpha, jnp.float32)})
    assert m.genotype(state) == NB201.derive(m.arch_weights(state), m.primitives)
    d = build(default_config("darts"), **kw)
    assert d.search_space is DARTS and d.edge_labels == ()
    assert d.model == DARTS.supernet(
        d.make_mixer(),
        num_classes=10,
        model=d.config.model,
        primitives=d.primitives,
        cfg=d.model.cfg,
    )


def test_discrete_networks_through_the_space_equal_the_direct_ones():
    cfg = OpsConfig(depthwise="shifted")
    model = default_config("train").model  # the retraining config's model section
    model.update(init_channels=8, layers=5, auxiliary=True, scan_cells=True, reductions=(1, 3))
    kw = dict(init_channels=8, layers=5, auxiliary=True, scan_cells=True, cfg=cfg)
    g = genotype_lib.DARTS_V2
    auto = resolve_remat(None)  # model.remat=None: by backend
    assert DARTS.discrete_network(g, 10, model=model, cfg=cfg) == NetworkCIFAR(
        g, 10, reductions=(1, 3), remat=auto, **kw
    )
    assert DARTS.discrete_network(g, 10, model=model, cfg=cfg, family="imagenet") == (
        NetworkImageNet(g, 10, reductions=(1, 3), remat=auto, **kw)
    )
    model.remat = not auto
    assert DARTS.discrete_network(g, 10, model=model, cfg=cfg).remat is (not auto)
    model.update(auxiliary=False, reductions=(), drop_path_prob=0.0)
    assert NB201.discrete_network(NB201_EXAMPLE, 10, model=model, cfg=cfg) == (
        network_for_training(NB201_EXAMPLE, 10, **dict(kw, auxiliary=False))
    )
    model.drop_path_prob = 0.2
    with pytest.raises(ValueError, match="no drop path"):
        NB201.discrete_network(NB201_EXAMPLE, 10, model=model, cfg=cfg)
    with pytest.raises(NotImplementedError, match="rnn space has no discrete Flax network"):
        RNN.discrete_network(rnn_genotype.DARTS_V2, 10, model=model, cfg=cfg)
    # the DARTS check before compiling; an NB201 cell is checked when parsed
    bad = genotype_lib.Genotype.from_cells([g.normal] * 4)
    with pytest.raises(GenotypeError, match="4 per-layer cells"):
        DARTS.check_genotype(bad, 5)
    NB201.check_genotype(NB201_EXAMPLE, 5)


def test_pictures_have_the_space_file_names(tmp_path):
    pytest.importorskip("matplotlib")
    got = NB201.save_pictures(NB201_EXAMPLE, tmp_path / "g")
    assert got == [str(tmp_path / "g_cell.png"), str(tmp_path / "g_cell.svg")]
    got = RNN.save_pictures(rnn_genotype.DARTS_V2, tmp_path / "r")
    assert [os.path.basename(p) for p in got] == ["r_recurrent.png", "r_recurrent.svg"]
    for p in got:
        assert os.path.getsize(p) > 0


def test_benchmark_lookup_only_where_there_is_one(monkeypatch, tmp_path):
    assert [s.name for s in search_spaces.SPACES.values() if s.has_benchmark] == ["nb201"]
    assert DARTS.lookup(genotype_lib.DARTS_V2, "/x") is None
    assert RNN.lookup(rnn_genotype.DARTS_V2, "/x") is None
    with pytest.raises(ValueError, match="darts space has no tabular benchmark"):
        DARTS.check_benchmark(str(tmp_path))

    class API:
        def query_index_by_arch(self, arch):
            return 7

        def get_more_info(self, index, dataset, hp="12", is_random=True):
            return {"test-accuracy": 90.0 + index}

        def get_cost_info(self, index, dataset, hp="12"):
            return {"params": 1.0, "flops": 2.0}

    report = NB201.lookup(NB201_EXAMPLE, API(), datasets=("cifar10",))
    assert report == nb201.lookup(NB201_EXAMPLE, API(), datasets=("cifar10",))
    assert report["results"]["cifar10"]["test-accuracy"] == 97.0
    monkeypatch.setitem(sys.modules, "nats_bench", None)  # `import nats_bench` fails
    with pytest.raises(nb201.NATSBenchMissing):
        NB201.check_benchmark(str(tmp_path))
