"""DARTS searching its recurrent space (jaxnas.search.darts_rnn on the recurrent run)."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from jaxnas.config import load_config
from jaxnas.genotype import GenotypeError
from jaxnas.rnn import RNN_OPS, RNN_PRIMITIVES, RNNGenotype, edge_index
from jaxnas.rnn.genotype import derive_darts_rnn
from jaxnas.search_spaces import RNN_SPACE

ROOT = os.path.dirname(os.path.dirname(__file__))


def test_darts_rule_picks_per_node_the_strongest_pair_without_none():
    """DARTS' ``model_search.genotype``: per node the predecessor whose best non-``none``
    weight is largest, then that op; ``none`` never chosen, ties to the first."""
    w = np.full((6, 5), 0.1)  # 3 nodes
    w[edge_index(1, 0)] = [0.9, 0.02, 0.03, 0.01, 0.04]  # none strongest: still identity
    w[edge_index(2, 0), 2] = 0.5
    w[edge_index(2, 1), 3] = 0.6  # node 2: s_1, sigmoid
    w[edge_index(3, 0), 1] = 0.7
    w[edge_index(3, 2), 1] = 0.7  # a tie: the first predecessor
    w[edge_index(3, 1), 0] = 0.99  # none is never chosen
    want = RNNGenotype.from_darts([("identity", 0), ("sigmoid", 1), ("tanh", 0)])
    assert derive_darts_rnn(w, RNN_PRIMITIVES) == want
    assert derive_darts_rnn(w[:, 1:], RNN_OPS) == want  # the 4-op space: the same rule
    with pytest.raises(GenotypeError, match="triangular"):
        derive_darts_rnn(np.zeros((5, 5)))
    with pytest.raises(GenotypeError, match="besides 'none'"):
        derive_darts_rnn(np.zeros((6, 1)), ("none",))


@pytest.mark.slow
def test_tiny_darts_search_end_to_end(tmp_path):
    """One epoch of the tiny config (3 nodes, H = 8): alpha moves, the validation
    perplexity is finite, genotype.json is DARTS' rule on the saved softmax(alpha)."""
    from jaxnas.run_rnn import search

    over = ["search.epochs=1", "model.steps=3", "model.size=8"]
    cfg = load_config(os.path.join(ROOT, "configs", "darts_rnn_tiny.py"), over)
    out = search(cfg, tmp_path, progress=False)
    assert out["method"] == "darts_rnn" and math.isfinite(out["final"]["valid/ppl"])
    g = RNNGenotype.load(out["genotype_json"])
    assert g.is_single_path and str(g) == out["genotype"]
    with np.load(tmp_path / "alphas" / "epoch_000.npz") as f0:
        w0 = f0["recurrent"]
    with np.load(tmp_path / "alphas" / "epoch_001.npz") as f1:
        w1 = f1["recurrent"]
    assert w1.shape == (6, 5) and not np.allclose(w0, w1)  # softmax(alpha) moved
    np.testing.assert_allclose(w1.sum(axis=1), 1.0, rtol=1e-6)
    assert (
        derive_darts_rnn(w1)
        == g
        == RNN_SPACE.derive({"recurrent": w1}, RNN_PRIMITIVES, rule="darts")
    )
    meta = json.load(open(tmp_path / "alphas" / "meta.json"))
    assert meta["primitives"] == list(RNN_PRIMITIVES)
    assert os.path.exists(tmp_path / "genotype_recurrent.png")
