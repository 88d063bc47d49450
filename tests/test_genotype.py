"""Tests for jaxnas.genotype: derivation, validation, JSON and drawing."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from jaxnas.genotype import (
    DARTS_V1,
    DARTS_V2,
    KNOWN_OPS,
    NAMED_GENOTYPES,
    PRDARTS,
    CellGenotype,
    Genotype,
    GenotypeError,
    derive,
    derive_cell,
    from_json,
    get_genotype,
    load,
    plot_cell,
    plot_genotype,
    reduction_layers,
    save,
    to_json,
    validate,
)
from jaxnas.ops import DARTS_PRIMITIVES
from jaxnas.spaces.darts import DARTS_CELL, CellTopology

P = DARTS_PRIMITIVES
OP = {name: i for i, name in enumerate(P)}

DARTS_V2_NORMAL = [
    ("sep_conv_3x3", 0),
    ("sep_conv_3x3", 1),
    ("sep_conv_3x3", 0),
    ("sep_conv_3x3", 1),
    ("sep_conv_3x3", 1),
    ("skip_connect", 0),
    ("skip_connect", 0),
    ("dil_conv_3x3", 2),
]
DARTS_V2_REDUCE = [
    ("max_pool_3x3", 0),
    ("max_pool_3x3", 1),
    ("skip_connect", 2),
    ("max_pool_3x3", 1),
    ("max_pool_3x3", 0),
    ("skip_connect", 2),
    ("skip_connect", 2),
    ("max_pool_3x3", 1),
]
DARTS_V1_NORMAL = [
    ("sep_conv_3x3", 1),
    ("sep_conv_3x3", 0),
    ("skip_connect", 0),
    ("sep_conv_3x3", 1),
    ("skip_connect", 0),
    ("sep_conv_3x3", 1),
    ("sep_conv_3x3", 0),
    ("skip_connect", 2),
]
DARTS_V1_REDUCE = [
    ("max_pool_3x3", 0),
    ("max_pool_3x3", 1),
    ("skip_connect", 2),
    ("max_pool_3x3", 0),
    ("max_pool_3x3", 0),
    ("skip_connect", 2),
    ("skip_connect", 2),
    ("avg_pool_3x3", 0),
]


def _edge(src: int, dst: int) -> int:
    return DARTS_CELL.edges.index((src, dst))


def _reference_parse(weights: np.ndarray, steps: int = 4) -> list[tuple[str, int]]:
    """Verbatim logic of DARTS model_search.Network.genotype._parse."""
    gene = []
    n = 2
    start = 0
    none = P.index("none")
    for _ in range(steps):
        end = start + n
        W = weights[start:end].copy()
        edges = sorted(
            range(len(W)),
            key=lambda x: -max(W[x][k] for k in range(len(W[x])) if k != none),
        )[:2]
        for j in edges:
            k_best = None
            for k in range(len(W[j])):
                if k != none and (k_best is None or W[j][k] > W[j][k_best]):
                    k_best = k
            gene.append((P[k_best], j))
        start = end
        n += 1
    return gene


# ------------------------------------------------------------------ derive


def test_derive_hand_made_alpha_with_none_and_ties():
    w = np.full((14, 8), 0.01)
    # node 0: 'none' dominates edge 0->2 but must be ignored; edge 1->2 is stronger
    # among real ops, so it comes first.
    w[_edge(0, 2), OP["none"]] = 0.9
    w[_edge(0, 2), OP["sep_conv_3x3"]] = 0.05
    w[_edge(1, 2), OP["max_pool_3x3"]] = 0.3
    # node 1: 'none' dominates edge 0->3, which must not be kept.
    w[_edge(0, 3), OP["none"]] = 0.95
    w[_edge(1, 3), OP["sep_conv_5x5"]] = 0.2
    w[_edge(2, 3), OP["dil_conv_3x3"]] = 0.3
    # node 2: all four edges tie at 0.5 -> lower edge index first (src 0, then 1);
    # op tie on edge 0->4 -> first op in primitive order (avg_pool before skip).
    w[_edge(0, 4), OP["avg_pool_3x3"]] = 0.5
    w[_edge(0, 4), OP["skip_connect"]] = 0.5
    w[_edge(1, 4), OP["sep_conv_3x3"]] = 0.5
    w[_edge(2, 4), OP["dil_conv_5x5"]] = 0.5
    w[_edge(3, 4), OP["max_pool_3x3"]] = 0.5
    # node 3: edges from intermediate nodes win.
    w[_edge(4, 5), OP["skip_connect"]] = 0.7
    w[_edge(3, 5), OP["sep_conv_5x5"]] = 0.6
    w[_edge(0, 5), OP["none"]] = 0.99

    cell = derive_cell(w, P)
    assert cell.nodes == (
        (("max_pool_3x3", 1), ("sep_conv_3x3", 0)),
        (("dil_conv_3x3", 2), ("sep_conv_5x5", 1)),
        (("avg_pool_3x3", 0), ("sep_conv_3x3", 1)),
        (("skip_connect", 4), ("sep_conv_5x5", 3)),
    )
    assert cell.concat == (2, 3, 4, 5)
    assert list(cell) == _reference_parse(w)

    g = derive(w, np.full((14, 8), 1 / 8), P)
    assert g.normal == cell
    # uniform weights: every node takes its first two edges and the first non-'none' op
    assert list(g.reduce) == [("max_pool_3x3", 0), ("max_pool_3x3", 1)] * 4


def test_derive_matches_darts_reference_on_random_alphas():
    rng = np.random.default_rng(0)
    for _ in range(20):
        logits = rng.normal(size=(2, 14, 8))
        w = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
        g = derive(w[0], w[1], P)
        assert list(g.normal) == _reference_parse(w[0])
        assert list(g.reduce) == _reference_parse(w[1])
        validate(g, inputs_per_node=2, n_nodes=4)


def test_derive_options_and_errors():
    w = np.zeros((14, 8))
    w[:, OP["skip_connect"]] = 1.0
    w[_edge(1, 2), OP["sep_conv_3x3"]] = 2.0
    # excluding skip_connect too (as some DARTS variants do)
    cell = derive_cell(w, P, exclude=("none", "skip_connect"))
    assert all(op != "skip_connect" for op, _ in cell)
    # k=None keeps every edge; threshold drops weak ones
    assert [len(n) for n in derive_cell(w, P, k=None).nodes] == [2, 3, 4, 5]
    thr = derive_cell(w, P, k=None, exclude=("none", "skip_connect"), threshold=1.0)
    assert thr.nodes == ((("sep_conv_3x3", 1),), (), (), ())
    # another topology
    topo = CellTopology(n_inputs=2, n_nodes=2)
    assert derive_cell(np.ones((topo.n_edges, 8)), P, topo).concat == (2, 3)
    with pytest.raises(GenotypeError, match="shape"):
        derive_cell(np.ones((14, 7)), P)
    with pytest.raises(GenotypeError, match="NaN"):
        derive_cell(np.full((14, 8), np.nan), P)


# ------------------------------------------------------------------ representation


def test_darts_flat_form_reproduces_reference_lists():
    assert list(DARTS_V2.normal) == DARTS_V2_NORMAL
    assert list(DARTS_V2.reduce) == DARTS_V2_REDUCE
    assert list(DARTS_V1.normal) == DARTS_V1_NORMAL
    assert list(DARTS_V1.reduce) == DARTS_V1_REDUCE
    for g in (DARTS_V1, DARTS_V2):
        assert g.normal_concat == (2, 3, 4, 5) and g.reduce_concat == (2, 3, 4, 5)
        assert g.normal.nodes[1] == tuple(g.normal.pairs[2:4])  # node k at 2k, 2k+1
    # DARTS NetworkCIFAR-style access
    op_names, indices = zip(*DARTS_V2.normal)
    assert op_names[7] == "dil_conv_3x3" and indices[7] == 2
    assert DARTS_V2.normal[7] == ("dil_conv_3x3", 2)
    assert DARTS_V2.normal.edges[7] == ("dil_conv_3x3", 2, 5)
    assert NAMED_GENOTYPES["DARTS"] is DARTS_V2
    assert str(DARTS_V2).startswith("Genotype(normal=[('sep_conv_3x3', 0), ")
    assert DARTS_V1 != DARTS_V2
    hash(DARTS_V2)


def test_cell_for_layer():
    assert reduction_layers(8) == (2, 5)
    assert reduction_layers(20) == (6, 13)
    assert [DARTS_V2.cell_for_layer(i, 8) is DARTS_V2.reduce for i in range(8)] == [
        i in (2, 5) for i in range(8)
    ]
    assert reduction_layers(6) == (2, 4)
    v1, v2 = DARTS_V1, DARTS_V2
    cells = [v1.normal, v2.normal, v1.reduce, v2.normal, v2.reduce, v1.normal]
    g = Genotype.from_cells(cells)
    assert g.reduce == v1.reduce and g.normal == v1.normal
    assert [g.cell_for_layer(i, 6) for i in range(6)] == cells
    with pytest.raises(GenotypeError, match="6 per-layer cells"):
        g.cell_for_layer(0, 8)
    with pytest.raises(IndexError):
        DARTS_V2.cell_for_layer(8, 8)


# ------------------------------------------------------------------ JSON


def test_json_round_trip_darts_v2(tmp_path):
    text = to_json(DARTS_V2)
    assert set(json.loads(text)) == {"normal", "normal_concat", "reduce", "reduce_concat"}
    assert from_json(text) == DARTS_V2
    save(DARTS_V2, tmp_path / "sub" / "g.json")
    assert load(tmp_path / "sub" / "g.json") == DARTS_V2
    assert get_genotype(str(tmp_path / "sub" / "g.json")) == DARTS_V2
    assert get_genotype("DARTS_V1") is DARTS_V1


def test_plain_darts_json_parses():
    plain = {
        "normal": [list(p) for p in DARTS_V1_NORMAL],
        "normal_concat": [2, 3, 4, 5],
        "reduce": [list(p) for p in DARTS_V1_REDUCE],
        "reduce_concat": [2, 3, 4, 5],
    }
    assert from_json(json.dumps(plain)) == DARTS_V1


def test_json_round_trip_general_form():
    odd = CellGenotype(
        nodes=((("sep_conv_3x3", 0),), (), (("skip_connect", 0), ("dil_conv_5x5", 1), ("none", 2))),
        concat=(2, 4),
    )
    g = Genotype.from_cells([DARTS_V2.normal, odd, DARTS_V2.reduce])
    text = to_json(g)
    assert json.loads(text)["format"] == "jaxnas-genotype-v1"
    back = from_json(text)
    assert back == g and back.cells[1].nodes[1] == ()
    single = Genotype(normal=odd, reduce=DARTS_V2.reduce)
    assert from_json(to_json(single)) == single


def _five_cells() -> list[CellGenotype]:
    """Five distinct cells (a DARTS-form cell each, so equality tells them apart)."""
    return [DARTS_V1.normal, DARTS_V2.normal, DARTS_V1.reduce, DARTS_V2.reduce, PRDARTS.normal]


def test_reductions_json_round_trip(tmp_path):
    """Reduction positions survive JSON in the general form, per-layer and shared; a
    genotype without them keeps the plain DARTS dict (test_json_round_trip_darts_v2)."""
    per_layer = Genotype.from_cells(_five_cells(), reductions=(0, 2))
    assert per_layer.reductions == (0, 2)
    assert per_layer.reduce == DARTS_V1.normal and per_layer.normal == DARTS_V2.normal
    obj = json.loads(to_json(per_layer))
    assert obj["format"] == "jaxnas-genotype-v1" and obj["reductions"] == [0, 2]
    assert len(obj["cells"]) == 5
    save(per_layer, tmp_path / "g.json")
    back = load(tmp_path / "g.json")
    assert back == per_layer and back.reductions == (0, 2)
    # shared normal/reduce cells with positions: no longer the DARTS dict
    shared = dataclasses.replace(DARTS_V2, reductions=(4, 9))
    assert not shared.is_darts_form() and "reductions" in repr(shared)
    obj = json.loads(to_json(shared))
    assert obj["reductions"] == [4, 9] and "cells" not in obj
    assert from_json(to_json(shared)) == shared
    # no reduction cell at all is a position list too, distinct from "not recorded"
    flat = dataclasses.replace(DARTS_V2, reductions=())
    assert from_json(to_json(flat)).reductions == ()
    assert flat != DARTS_V2 and from_json(to_json(DARTS_V2)).reductions is None
    # a hand-written plain DARTS dict may carry the positions
    plain = dict(json.loads(to_json(DARTS_V2)), reductions=[9, 4])
    assert from_json(json.dumps(plain)) == shared  # stored sorted


def test_reduction_positions_decide_the_layer_cells():
    shared = dataclasses.replace(DARTS_V2, reductions=(0, 3))
    assert shared.reduction_cells(5) == (0, 3)
    assert [shared.cell_for_layer(i, 5) is DARTS_V2.reduce for i in range(5)] == [
        True, False, False, True, False
    ]  # fmt: skip
    # without recorded positions: a setting, else DARTS' layers // 3, 2 * layers // 3
    assert DARTS_V2.reduction_cells(5) == (1, 3)
    assert DARTS_V2.reduction_cells(5, (4, 0)) == (0, 4)
    assert [DARTS_V2.cell_for_layer(i, 5, (4,)) is DARTS_V2.reduce for i in range(5)] == [
        False, False, False, False, True
    ]  # fmt: skip
    # a setting equal to the genotype's positions is fine; another one is an error
    assert shared.reduction_cells(5, (3, 0)) == (0, 3)
    msg = _one_line_error(shared.reduction_cells, 5, (1, 3))
    assert "conflicts with the genotype's reductions [0, 3]" in msg
    msg = _one_line_error(shared.cell_for_layer, 2, 5, (1, 3))
    assert "conflicts" in msg
    # positions recorded without cells are checked against the network's depth
    msg = _one_line_error(dataclasses.replace(DARTS_V2, reductions=(4, 9)).reduction_cells, 8)
    assert "layer index 9 is out of range for 8 layers" in msg
    assert "out of range for 5 layers" in _one_line_error(DARTS_V2.reduction_cells, 5, (5,))
    per_layer = Genotype.from_cells(_five_cells(), reductions=(1, 4))
    assert "5 per-layer cells but the network has 6" in _one_line_error(
        per_layer.reduction_cells, 6
    )
    # from_cells without positions picks DARTS' representatives and records nothing
    g = Genotype.from_cells(_five_cells())
    assert g.reductions is None and g.reduce == _five_cells()[1]
    none = Genotype.from_cells(_five_cells(), reductions=())
    assert none.reduce == none.normal == DARTS_V1.normal and none.reduction_cells(5) == ()


@pytest.mark.parametrize(
    "reductions, match",
    [
        ((1, 5), "layer index 5 is out of range for a genotype of 5 per-layer cells"),
        ((-1, 2), "layer index -1 is out of range"),
        ((2, 2), "duplicate layer index"),
        ((1.5,), "must be an integer"),
        ((True,), "must be an integer"),
        ("14", "must be a list"),
    ],
)
def test_reductions_validation_errors(reductions, match):
    msg = _one_line_error(Genotype.from_cells, _five_cells(), reductions=reductions)
    assert match in msg
    msg = _one_line_error(Genotype, DARTS_V2.normal, DARTS_V2.reduce, _five_cells(), reductions)
    assert match in msg


def test_reductions_role_conflicts():
    """What the representation can tell about roles: a reduction cell that concatenates
    its full-resolution inputs, and normal/reduce representatives at the wrong positions."""
    cells = _five_cells()
    cat_input = CellGenotype(DARTS_V2.normal.nodes, (1, 2, 3, 4, 5))
    bad = Genotype.from_cells(cells[:2] + [cat_input] + cells[3:], reductions=(2, 4))
    msg = _one_line_error(validate, bad)
    assert "cell 2 sits at a reduction position (reductions [2, 4])" in msg
    assert "input(s) [1]" in msg
    validate(Genotype.from_cells(cells[:2] + [cat_input] + cells[3:], reductions=(1, 4)))
    shared = Genotype(DARTS_V2.normal, cat_input, reductions=(1,))
    assert "the reduction cell sits at a reduction position" in _one_line_error(validate, shared)
    # representatives: reduce must be a cell at a reduction position, normal at a normal one
    msg = _one_line_error(validate, Genotype(cells[0], cells[1], tuple(cells), reductions=(2, 3)))
    assert "reduce cell is none of the cells at its reductions [2, 3]" in msg
    msg = _one_line_error(validate, Genotype(cells[2], cells[2], tuple(cells), reductions=(2, 3)))
    assert "normal cell is none of the cells at its normal positions" in msg
    validate(Genotype(cells[4], cells[3], tuple(cells), reductions=(2, 3)))
    # from_json validates: a role conflict in a file is a one-line error
    text = to_json(Genotype(cells[0], cells[1], tuple(cells), reductions=(2, 3)))
    assert "none of the cells at its reductions" in _one_line_error(from_json, text)
    # without recorded positions nothing is checked here (the network decides)
    validate(Genotype(cells[0], cells[1], tuple(cells)))


@pytest.mark.parametrize(
    "content, match",
    [
        ("{not json", "malformed genotype JSON"),
        ('{"normal": [["sep_conv_3x3", 0]], "normal_concat": [2]}', "missing key 'reduce'"),
        ("[1, 2]", "must be an object"),
        (
            '{"normal": [["sep_conv_3x3", "a"], ["skip_connect", 0]], "normal_concat": [2],'
            ' "reduce": [], "reduce_concat": [2]}',
            "must be an integer",
        ),
        (
            '{"normal": "abc", "normal_concat": [2], "reduce": [], "reduce_concat": [2]}',
            "must be a list",
        ),
        (
            '{"normal": [["sep_conv_3x3", 0], ["bogus_op", 1]], "normal_concat": [2],'
            ' "reduce": [["max_pool_3x3", 0], ["max_pool_3x3", 1]], "reduce_concat": [2]}',
            "unknown op 'bogus_op'",
        ),
    ],
)
def test_load_malformed_file_raises(tmp_path, content, match):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(GenotypeError, match=match) as err:
        load(path)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(str(path))


def test_load_missing_file_and_unknown_name(tmp_path):
    with pytest.raises(GenotypeError, match="cannot read") as err:
        load(tmp_path / "nope.json")
    assert "\n" not in str(err.value)
    with pytest.raises(GenotypeError, match="DARTS_V2"):
        get_genotype("NOT_A_GENOTYPE")


# ------------------------------------------------------------------ validation


def _with_normal(pairs, concat=(2, 3, 4, 5)):
    return Genotype(normal=CellGenotype.from_pairs(pairs, concat), reduce=DARTS_V2.reduce)


def _one_line_error(fn, *args, **kw) -> str:
    with pytest.raises(GenotypeError) as err:
        fn(*args, **kw)
    msg = str(err.value)
    assert "\n" not in msg and msg
    return msg


def test_validate_accepts_published_genotypes():
    for g in (DARTS_V1, DARTS_V2):
        assert validate(g, n_nodes=4, inputs_per_node=2) is g


def test_validate_unknown_op():
    bad = list(DARTS_V2_NORMAL)
    bad[3] = ("sep_conv_3x4", 1)
    msg = _one_line_error(validate, _with_normal(bad))
    assert "unknown op 'sep_conv_3x4'" in msg and "normal cell node 1" in msg
    assert "did you mean 'sep_conv_3x3'" in msg
    validate(_with_normal(bad), known_ops=None)  # op check can be disabled
    validate(
        _with_normal(bad),
        known_ops=KNOWN_OPS | {"sep_conv_3x4"},
        n_nodes=4,
    )


@pytest.mark.parametrize("index, src", [(0, 2), (3, 3), (7, 5), (5, -1)])
def test_validate_bad_node_index(index, src):
    bad = list(DARTS_V2_NORMAL)
    bad[index] = (bad[index][0], src)
    msg = _one_line_error(validate, _with_normal(bad))
    assert f"bad input node index {src}" in msg


def test_validate_wrong_entry_count():
    msg = _one_line_error(
        Genotype.from_darts, DARTS_V2_NORMAL[:7], [2, 3, 4, 5], DARTS_V2_REDUCE, [2, 3, 4, 5]
    )
    assert "wrong number of entries: got 7" in msg and msg.startswith("normal cell")
    msg = _one_line_error(
        Genotype.from_darts,
        DARTS_V2_NORMAL[:6],
        [2, 3, 4],
        DARTS_V2_REDUCE,
        [2, 3, 4, 5],
        n_nodes=4,
    )
    assert "got 6, expected 8" in msg
    three = CellGenotype(nodes=DARTS_V2.normal.nodes[:3], concat=(2, 3, 4))
    msg = _one_line_error(validate, Genotype(normal=three, reduce=DARTS_V2.reduce), n_nodes=4)
    assert "wrong number of nodes: got 3" in msg
    nodes = list(DARTS_V2.normal.nodes)
    nodes[2] = nodes[2] + (("skip_connect", 2),)
    extra = Genotype(normal=CellGenotype(tuple(nodes), (2, 3, 4, 5)), reduce=DARTS_V2.reduce)
    validate(extra)  # variable inputs are fine in general...
    msg = _one_line_error(validate, extra, inputs_per_node=2)  # ...but not in the DARTS form
    assert "node 2" in msg and "got 3, expected 2" in msg


@pytest.mark.parametrize(
    "concat, match", [((2, 3, 6), "bad concat index 6"), ((), "empty"), ((2, 2), "duplicate")]
)
def test_validate_bad_concat(concat, match):
    msg = _one_line_error(validate, _with_normal(DARTS_V2_NORMAL, concat))
    assert match in msg


def test_construction_type_errors_are_one_line():
    msg = _one_line_error(Genotype, DARTS_V2_NORMAL, DARTS_V2.reduce)
    assert "from_darts" in msg
    msg = _one_line_error(CellGenotype, (((3, 0),),), (2,))
    assert "op name must be a string" in msg


# ------------------------------------------------------------------ drawing


def test_plot_writes_png_and_svg(tmp_path):
    paths = plot_genotype(DARTS_V2, tmp_path / "plots" / "darts_v2")
    assert sorted(p.rsplit("/", 1)[1] for p in paths) == [
        "darts_v2_normal.png",
        "darts_v2_normal.svg",
        "darts_v2_reduce.png",
        "darts_v2_reduce.svg",
    ]
    for p in paths:
        data = open(p, "rb").read()
        assert len(data) > 1000
        if p.endswith(".png"):
            assert data[:8] == b"\x89PNG\r\n\x1a\n"
        else:
            assert b"<svg" in data[:2000]
    # a cell with a variable number of inputs per node also draws
    cell = derive_cell(np.random.default_rng(1).random((14, 8)), P, k=None)
    out = plot_cell(cell, str(tmp_path / "full.png"), title="all edges")
    assert open(out, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
