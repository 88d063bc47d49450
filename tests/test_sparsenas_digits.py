"""The DIGITS pruning study (experiments/sparsenas_digits.py, SparseNAS Fig. 3).

Fast: pruning, neuron cascade, counting and the group layout on hand-made
weights.  Slow: a reduced grid of the real study, where the proximal methods
must give exact zeros and AdamHAPG at least as many zero groups as Adam with
the 0.001 threshold at the same lambda.
"""

import importlib.util
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnas import optim

_PATH = pathlib.Path(__file__).parents[1] / "experiments" / "sparsenas_digits.py"
_spec = importlib.util.spec_from_file_location("sparsenas_digits", _PATH)
D = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("sparsenas_digits", D)  # dataclasses look their module up
_spec.loader.exec_module(D)


def _dense_params(value=0.5):
    params = D.init_mlp(jax.random.key(0))
    return {k: (jnp.full_like(v, value) if k.startswith("w") else v) for k, v in params.items()}


def test_group_layout_rows_of_kernels():
    params = D.init_mlp(jax.random.key(0))
    assert {k: v.shape for k, v in params.items() if k.startswith("w")} == {
        "w0": (64, 40),
        "w1": (40, 20),
        "w2": (20, 10),
    }
    g = optim.resolve_groups(D.group_spec(params), params)
    assert g.num_groups == 64 + 40 + 20
    np.testing.assert_array_equal(
        np.bincount(g.sizes), np.bincount([40] * 64 + [20] * 40 + [10] * 20)
    )
    for k, ids in zip(sorted(params), g.ids):  # leaves come in sorted-key order
        if k.startswith("b"):
            assert np.all(ids == -1)  # biases are not penalised
        else:
            assert np.all(ids == ids[:, :1])  # one group per row (outgoing weights)


def test_prune_threshold_and_neuron_cascade():
    p = _dense_params()
    w0, w1, w2 = np.array(p["w0"]), np.array(p["w1"]), np.array(p["w2"])
    w2[3, :] = 0.0009  # hidden unit 3 of layer 2: all outgoing weights below 0.001
    w1[5, :] = 0.0  # unit 5 of layer 1 feeds only unit 3 of layer 2 ...
    w1[5, 3] = 0.7
    w0[7, :] = 0.0  # ... and input feature 7 feeds only unit 5 of layer 1
    w0[7, 5] = 0.2
    w0[0, 0] = 0.001  # exactly at the threshold: kept
    p.update(w0=jnp.asarray(w0), w1=jnp.asarray(w1), w2=jnp.asarray(w2))
    m = D.prune_masks(p, 1e-3)
    c = {k: float(v) for k, v in D.count_structure(m).items()}
    assert c["features"] == 63 and c["neurons"] == 58
    # w2[3, :] (10); w1[:, 3] (40) + the other 19 of w1[5, :]; w0[:, 5] (64) + 39 more of w0[7, :]
    np.testing.assert_allclose(c["sparsity"], 100 * (10 + 59 + 103) / 3560, rtol=1e-6)
    assert bool(m["w0"][0, 0])
    # proximal pruning drops exact zeros only: a weight of 1e-9 keeps unit 3 and the chain
    w2[3, :] = 1e-9
    p["w2"] = jnp.asarray(w2)
    c0 = {k: float(v) for k, v in D.count_structure(D.prune_masks(p, 0.0)).items()}
    assert c0["features"] == 64 and c0["neurons"] == 60
    np.testing.assert_allclose(c0["sparsity"], 100 * (19 + 39) / 3560, rtol=1e-6)
    full = D.count_structure(D.prune_masks(_dense_params(), 0.0))
    assert (
        int(full["features"]) == 64 and int(full["neurons"]) == 60 and float(full["sparsity"]) == 0
    )


def test_data_split_is_deterministic_and_stratified():
    a, b = D.load_data(3), D.load_data(3)
    np.testing.assert_array_equal(a["x_val"], b["x_val"])
    assert a["x_train"].shape == (1437, 64) and a["x_val"].shape == (360, 64)
    assert 0.0 <= a["x_train"].min() and a["x_train"].max() <= 1.0
    assert np.bincount(a["y_val"]).min() >= 35  # stratified: every class present
    assert not np.array_equal(D.load_data(4)["x_val"], a["x_val"])


def test_cli_and_optimizer_errors():
    args = D.parse_args(["--quick", "--out", "x", "--seed", "2"])
    assert args.quick and args.seed == 2
    with pytest.raises(ValueError, match="unknown method"):
        D.make_optimizer("rmsprop", 0.1, 0.5, 10, D.DigitsConfig(), None)


@pytest.mark.slow
def test_proximal_methods_give_exact_zeros_and_more_zero_groups_than_adam():
    cfg = D.DigitsConfig(search_epochs=200, retrain_epochs=20)
    data = D.load_data(0)
    lams = np.array([1e-4, 2e-4], np.float32)
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(0), i))(jnp.zeros(2, int))
    alphas = np.full(2, D.PENALTIES["sgl"], np.float32)
    res = {}
    for method in ("adam", "hapg", "adam_hapg"):
        res[method] = D.run_method(
            method, keys, lams, alphas, data=data, cfg=cfg, retrain_nets=method == "adam_hapg"
        )
    assert np.all(res["adam"]["exact_zero_weights"] == 0)  # Adam: no exact zeros ...
    assert np.all(res["adam"]["zero_groups"] > 0)  # ... only the threshold prunes groups
    for method in ("hapg", "adam_hapg"):
        assert np.all(res[method]["exact_zero_weights"] > 0), method
        assert np.all(res[method]["acc_search"] > 0.9), method
        # proximal pruning drops exact zeros only: pruning does not change the network
        np.testing.assert_array_equal(res[method]["acc_pruned"], res[method]["acc_search"])
    assert np.all(res["adam_hapg"]["zero_groups"] >= res["adam"]["zero_groups"])
    assert np.all(res["adam_hapg"]["sparsity"] > res["adam"]["sparsity"])
    assert np.all(res["adam_hapg"]["acc_retrained"] > 0.25)  # 20 epochs: learns (chance 0.1)
