"""BayesNAS structured compression (App. B, Algorithm 3, Table S3): groups, updates,
pruning to a smaller network, FLOPs, the CLI, and a short real run on DIGITS."""

from __future__ import annotations

import itertools
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnas import bayes
from jaxnas import bayes_compress as bc
from jaxnas import bayes_groups as bg
from jaxnas import curvature as cv
from jaxnas.config import default_config
from jaxnas.models.lenet import LeNet5, LeNet300
from jaxnas.models.resnet18 import ResNet18
from jaxnas.xla import jit_init

SHAPE = (3, 2, 4, 5)  # Flax HWIO (M, K, C, N): all sizes distinct
M, K, C, N = SHAPE


# ---------------------------------------------------------------------------- Table S3


def _paper_groups(kind: str) -> dict[tuple, set]:
    """Group key -> member coordinates (m, k, c, n), straight from Table S3's prior
    column (``prod_groups N(0, gamma_group I)``), written independently of the module."""
    coords = list(itertools.product(range(M), range(K), range(C), range(N)))
    fixed = {  # which indices a group holds fixed
        "element": lambda m, k, c, n: (m, k, c, n),
        "shape": lambda m, k, c, n: (c, m, k),
        "row": lambda m, k, c, n: (c, m),
        "column": lambda m, k, c, n: (c, k),
        "channel": lambda m, k, c, n: (c,),
        "group_shape": lambda m, k, c, n: (m, k),
        "group_row": lambda m, k, c, n: (m,),
        "group_column": lambda m, k, c, n: (k,),
        "filter": lambda m, k, c, n: (n,),
    }
    out: dict[tuple, set] = {}
    if kind in fixed:
        for x in coords:
            out.setdefault(fixed[kind](*x), set()).add(x)
        return out
    # (d) / (i): group (c, m, k) = row m and column k of channel c (over all c for (i))
    per_channel = kind == "row_column"
    for c, m, k in itertools.product(range(C) if per_channel else [None], range(M), range(K)):
        out[(c, m, k)] = {
            x for x in coords if (c is None or x[2] == c) and (x[0] == m or x[1] == k)
        }
    return out


SIZES = {  # Table S3 group sizes for W in R^{N x C x M x K}
    "element": 1,
    "shape": N,
    "row": N * K,
    "column": N * M,
    "row_column": N * (K + M),
    "channel": N * M * K,
    "group_shape": N * C,
    "group_row": N * C * K,
    "group_column": N * C * M,
    "group_row_column": N * C * (K + M),
    "filter": C * M * K,
}


@pytest.mark.parametrize("name", sorted(bg.CONV_KINDS))
def test_membership_matches_table_s3(name):
    kind = bg.group_kind(name, 4)
    groups = bg.membership(kind, SHAPE)
    paper = _paper_groups(name)
    assert len(groups) == len(paper) == kind.num_groups(SHAPE)
    # sizes as Table S3 (a cross lists its crossing twice: W_bar is a concatenation)
    assert {len(g) for g in groups} == {SIZES[name]}
    mine = {frozenset(zip(*np.unravel_index(g, SHAPE))) for g in groups}
    assert mine == {frozenset(v) for v in paper.values()}
    counts = np.bincount(np.concatenate(groups), minlength=math.prod(SHAPE))
    # every weight is in exactly the groups the type defines
    expected = M + K if kind.cross else 1
    assert np.all(counts == expected)


@pytest.mark.parametrize("name", sorted(bg.CONV_KINDS))
def test_vectorised_group_maths_equal_the_membership_lists(name, x64):
    kind = bg.group_kind(name, 4)
    rng = np.random.default_rng(0)
    w = rng.normal(size=SHAPE)
    h = rng.uniform(0.0, 2.0, size=SHAPE)
    groups = bg.membership(kind, SHAPE)
    gamma = rng.uniform(0.1, 3.0, size=kind.group_shape(SHAPE))
    flat_gamma = gamma.ravel()
    sq = np.array([np.sum(w.ravel()[g] ** 2) for g in groups])
    alpha = np.array(
        [np.sum(h.ravel()[g] / (1 + flat_gamma[i] * h.ravel()[g])) for i, g in enumerate(groups)]
    )
    np.testing.assert_allclose(np.asarray(bg.sq_norm(kind, jnp.asarray(w))).ravel(), sq)
    np.testing.assert_allclose(
        np.asarray(bg.alpha_sum(kind, jnp.asarray(h), jnp.asarray(gamma))).ravel(), alpha
    )
    dead = rng.uniform(size=gamma.shape) < 0.2
    want = np.zeros(math.prod(SHAPE), bool)
    for i, g in enumerate(groups):
        if dead.ravel()[i]:
            want[g] = True
    got = np.asarray(bg.dead_weights(kind, jnp.asarray(dead), SHAPE)).ravel()
    np.testing.assert_array_equal(got, want)
    omega = rng.uniform(0.5, 2.0, size=gamma.shape)
    pen = float(bg.group_penalty(kind, jnp.asarray(w), jnp.asarray(omega)))
    np.testing.assert_allclose(pen, np.sum(omega.ravel() * np.sqrt(sq)))


def test_dense_kinds_and_aliases():
    shape = (6, 4)  # (in, out)
    sizes = {"element": 1, "input": 4, "output": 6}
    for name, size in sizes.items():
        kind = bg.group_kind(name, 2)
        groups = bg.membership(kind, shape)
        assert {len(g) for g in groups} == {size}
        assert np.all(np.bincount(np.concatenate(groups)) == 1)
    assert bg.group_kind("shape", 2).name == "element"
    # rows of the paper's W (h = W a, C.1.1) are output neurons, as jaxnas.bayes
    assert bg.group_kind("row", 2).reduce == bayes.DENSE_GROUPS["row"]
    assert bg.group_kind("column", 2).reduce == bayes.DENSE_GROUPS["column"]
    with pytest.raises(ValueError, match="unknown group type 'filters'"):
        bg.group_kind("filters", 4)
    with pytest.raises(ValueError, match="dense .2-d. or conv .4-d."):
        bg.group_kind("shape", 3)


# ---------------------------------------------------------------------------- updates


def test_group_update_hand_made(x64):
    # one output neuron with incoming weights (3, 4): ||W_g|| = 5; omega(t-1) = 2
    kind = bg.group_kind("output", 2)
    w = jnp.array([[3.0], [4.0]])
    h = jnp.array([[2.0], [6.0]])
    gamma, omega = bg.group_update(kind, w, h, jnp.array([[2.0]]), lam=2.0)
    assert float(gamma[0, 0]) == pytest.approx(2.5)  # B.0.2
    # H' = H / lam = (1, 3); alpha = H'/(1 + gamma H') = 1/3.5 + 3/8.5   (B.0.3-B.0.4)
    assert float(omega[0, 0]) == pytest.approx(math.sqrt(1 / 3.5 + 3 / 8.5))  # B.0.5
    # alpha is -C/gamma^2 + 1/gamma with C = (1/gamma + H')^-1 (B.0.3, B.0.4 as printed)
    c = 1.0 / (1.0 / 2.5 + np.array([1.0, 3.0]))
    assert float(omega[0, 0]) ** 2 == pytest.approx(np.sum(-c / 2.5**2 + 1 / 2.5))


@pytest.mark.parametrize(
    "name",
    ["shape", "row", "column", "channel", "group_shape", "group_row", "group_column", "filter"],
)
def test_group_update_equals_jaxnas_bayes(name, x64):
    rng = np.random.default_rng(1)
    w = jnp.asarray(rng.normal(size=SHAPE))
    h = jnp.asarray(rng.uniform(0.0, 3.0, size=SHAPE))
    kind = bg.group_kind(name, 4)
    axes = bayes.group_axes(name, 4)
    omega0 = jnp.asarray(rng.uniform(0.5, 2.0, size=kind.group_shape(SHAPE)))
    gamma, omega = bg.group_update(kind, w, h, omega0, lam=0.3)
    state = bayes.GroupState(gamma=jnp.ones_like(omega0), omega=omega0, C=jnp.zeros(SHAPE))
    ref = bayes.compression_update(w, h, state, axes, lam=0.3)
    np.testing.assert_allclose(gamma, ref.gamma, rtol=1e-12)
    np.testing.assert_allclose(omega, ref.omega, rtol=1e-12)


def test_singleton_groups_reduce_to_the_elementwise_update(x64):
    rng = np.random.default_rng(2)
    w = jnp.asarray(rng.normal(size=(5, 3)))
    h = jnp.asarray(rng.uniform(0.0, 3.0, size=(5, 3)))
    omega0 = jnp.asarray(rng.uniform(0.5, 2.0, size=(5, 3)))
    gamma, omega = bg.group_update(bg.group_kind("element", 2), w, h, omega0, lam=0.5)
    ref = bayes.sbl_update(w, h, jnp.ones_like(w), omega=omega0, order="alg3", lam=0.5)
    np.testing.assert_allclose(gamma, ref.gamma, rtol=1e-12)
    np.testing.assert_allclose(omega, ref.omega, rtol=1e-12)


def test_per_example_ggn_equals_curvature_exact(x64):
    model = LeNet300(hidden=(6, 5), num_classes=4, num_inputs=7)
    x = jax.random.normal(jax.random.key(0), (8, 7))
    params = jax.tree.map(lambda a: a.astype(jnp.float64), model.init(jax.random.key(1), x))
    params = params["params"]

    def apply_fn(p, xb):
        return model.apply({"params": p}, xb)

    mine = bc.ggn_diag_per_example(apply_fn, params, x, chunk=4)
    ref = cv.ggn_diag_exact(
        lambda p: apply_fn(p, x), params, lambda z: jnp.mean(jax.nn.logsumexp(z, -1))
    )  # the CE's logit Hessian does not depend on the label
    for a, b in zip(jax.tree.leaves(mine), jax.tree.leaves(ref)):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-14)


# ---------------------------------------------------------------------------- pruning


def _random_masks(params, rng, p_dead=0.4):
    return jax.tree.map(
        lambda a: (rng.uniform(size=np.shape(a)) > p_dead).astype(np.float32), params
    )


def _check_twin(model, variables, masks, x, **kw):
    masks, alive = bc.close_masks(model, masks)
    masked = jax.tree.map(lambda p, m: p * m, variables["params"], masks)
    dense_vars = {**variables, "params": masked}
    keep = {g: np.nonzero(a)[0].tolist() for g, a in alive.items()}
    from jaxnas.width.surgery import slice_variables

    small_vars = slice_variables(jax.tree.map(np.asarray, dense_vars), model.channel_groups(), keep)
    small = model.pruned(keep)
    # one program each (jit_init: without LLVM optimisation, it runs once), not op by op
    y_dense = jit_init(lambda v: model.apply(v, x, **kw))(dense_vars)
    y_small = jit_init(lambda v: small.apply(v, x, **kw))(small_vars)
    np.testing.assert_allclose(y_small, y_dense, rtol=1e-5, atol=1e-5)
    return small, alive


def test_pruned_lenet300_equals_masked_dense():
    rng = np.random.default_rng(0)
    model = LeNet300(hidden=(12, 8), num_classes=3, num_inputs=16)
    x = jax.random.normal(jax.random.key(0), (5, 4, 4, 1))
    variables = jit_init(model.init)(jax.random.key(1), x)
    variables = {"params": jax.tree.map(lambda a: a + 0.1, variables["params"])}  # biases != 0
    masks = _random_masks(variables["params"], rng, 0.75)
    masks["fc1"]["kernel"][3] = 0  # input pixel 3 read by nobody
    small, alive = _check_twin(model, variables, masks, x)
    assert not alive["input"][3]
    assert small.hidden == (int(alive["fc1"].sum()), int(alive["fc2"].sum()))
    assert small.hidden[0] < 12 and small.n_in() < 16  # something was actually removed
    # pruning a twin again is the identity
    assert small.pruned({}).architecture() == small.architecture()


def test_pruned_lenet5_equals_masked_dense():
    rng = np.random.default_rng(3)
    model = LeNet5(conv=(4, 6), hidden=10, num_classes=3)
    x = jax.random.normal(jax.random.key(0), (3, 28, 28, 1))
    variables = jit_init(model.init)(jax.random.key(1), x)
    variables = {"params": jax.tree.map(lambda a: a + 0.05, variables["params"])}
    masks = _random_masks(variables["params"], rng, 0.3)
    # kill one conv2 filter and one conv1 filter outright
    masks["conv2"]["kernel"][..., 2] = 0
    masks["conv1"]["kernel"][..., 1] = 0
    small, alive = _check_twin(model, variables, masks, x)
    assert not alive["conv2"][2] and not alive["conv1"][1]
    assert small.conv == (3, int(alive["conv2"].sum()))
    assert small.n_flat() == int(alive["flat"].sum()) < 96


@pytest.mark.slow  # ~20 conv layers to compile twice
def test_pruned_resnet18_equals_masked_dense():
    rng = np.random.default_rng(4)
    model = ResNet18(num_classes=3, width=4)
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
    variables = jit_init(model.init)(jax.random.key(1), x)
    params = jax.tree.map(lambda a: a + 0.05 * rng.normal(size=np.shape(a)), variables["params"])
    variables = {"params": params, "batch_stats": variables["batch_stats"]}
    masks = jax.tree.map(lambda a: np.ones(np.shape(a), np.float32), params)
    for i in range(8):  # kill half of every block's internal filters
        masks[f"block{i}"]["conv1"]["kernel"][..., ::2] = 0
    small, _ = _check_twin(model, variables, masks, x, train=False)
    assert small.mids == (2, 2, 4, 4, 8, 8, 16, 16)


# ---------------------------------------------------------------------------- FLOPs


def _macs(model, input_shape):
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, *input_shape))))
    return bc.flops(model, shapes, input_shape)


def test_flops_closed_form_lenet300():
    dense = _macs(LeNet300(), (28, 28, 1))
    assert dense["macs"] == 784 * 300 + 300 * 100 + 100 * 10 == 266_200
    assert dense["flops"] == 2 * 266_200  # 0.53 MFLOPs, Table S4's baseline
    # BayesNAS's 465-37-90: 21,435 MACs = 0.043 MFLOPs (Table S4 prints 0.04)
    pruned = _macs(LeNet300(hidden=(37, 90), input_index=tuple(range(465))), (28, 28, 1))
    assert pruned["macs"] == 465 * 37 + 37 * 90 + 90 * 10 == 21_435
    assert LeNet300(hidden=(37, 90), input_index=tuple(range(465))).architecture() == "465-37-90"


def test_flops_closed_form_lenet5():
    dense = _macs(LeNet5(), (28, 28, 1))
    conv1 = 24 * 24 * 20 * 25
    conv2 = 8 * 8 * 50 * 20 * 25
    assert dense["macs"] == conv1 + conv2 + 800 * 500 + 500 * 10
    twin = LeNet5(conv=(5, 10), hidden=25, flat_index=tuple(range(65)))
    assert twin.architecture() == "5-10-65-25"
    assert _macs(twin, (28, 28, 1))["macs"] == 24 * 24 * 5 * 25 + 64 * 10 * 5 * 25 + 65 * 25 + 250


# ---------------------------------------------------------------------------- CLI / config


def _write_config(tmp_path, **overrides):
    lines = ["from jaxnas.config import default_config", "def get_config():"]
    lines.append("    c = default_config('bayes-group')")
    for key, value in overrides.items():
        lines.append(f"    c.{key} = {value!r}")
    lines.append("    return c")
    path = tmp_path / "cfg.py"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_cli_compress_errors(tmp_path, capsys):
    from jaxnas.cli import main

    cfg = _write_config(tmp_path, model="vgg16", **{"data.dataset": "digits"})
    rc = main(
        ["compress", "--config", cfg, "--method", "bayes-group", "--workdir", str(tmp_path / "w")]
    )
    assert rc != 0
    assert "unknown model 'vgg16'" in capsys.readouterr().err  # before any data is loaded
    cfg = _write_config(tmp_path, model="lenet300", **{"groups.dense": "element,neuron"})
    rc = main(
        [
            "compress",
            "--config",
            cfg,
            "--workdir",
            str(tmp_path / "w2"),
            "--set",
            "data.dataset=digits",
        ]
    )
    assert rc != 0
    assert "unknown group type 'neuron'" in capsys.readouterr().err
    rc = main(["compress", "--config", cfg, "--workdir", str(tmp_path / "w3"), "--set", "lamda=1"])
    assert rc != 0
    assert "lamda" in capsys.readouterr().err


def test_config_keys():
    c = default_config("bayes-group")
    assert c.method == "bayes-group" and c.model in bc.MODELS
    assert c.threshold == pytest.approx(1 / (2 * math.pi * math.e))


# ---------------------------------------------------------------------------- real runs


def _digits_config(lam: float, epochs: int = 18):
    c = default_config("bayes-group")
    c.data.dataset = "digits"
    c.data.batch_size = 32
    c.model = "lenet300"
    c.widths = "64,32"
    c.lam = lam
    c.k = 3
    c.epochs = epochs
    c.optim.lr = 0.1
    c.hessian.examples = 512
    c.run.checkpoint_keep = 1
    c.eval_batch_size = 360
    return c


@pytest.mark.slow
def test_digits_units_shrink_with_lambda_and_accuracy_holds(tmp_path):
    runs = {}
    for lam in (0.0, 1e-3, 1e-2, 3e-2):
        runs[lam] = bc.compress(_digits_config(lam), str(tmp_path / f"lam{lam}"))
    units = {lam: [s["units"][g][0] for g in ("input", "fc1", "fc2")] for lam, s in runs.items()}
    lams = sorted(runs)
    for a, b in zip(lams, lams[1:]):
        assert all(x >= y for x, y in zip(units[a], units[b])), units
    assert sum(units[lams[-1]]) < sum(units[0.0])  # the largest lambda really prunes
    for s in runs.values():
        assert s["error_after"] == pytest.approx(s["error_before"], abs=1e-9)  # pruned == masked
    # moderate lambda: smaller network, test error within 2 points of the dense one's
    assert runs[1e-2]["macs_after"] < runs[0.0]["macs_after"]
    assert runs[1e-2]["error_after"] <= runs[0.0]["error_after"] + 0.02, runs


@pytest.mark.slow
def test_resume_ends_where_an_uninterrupted_run_ends(tmp_path):
    import shutil

    c = _digits_config(1e-3, epochs=6)
    full = bc.compress(c, str(tmp_path / "a"))
    bc.compress(c, str(tmp_path / "b"))
    ckpts = tmp_path / "b" / "checkpoints"
    shutil.rmtree(ckpts / max(os.listdir(ckpts), key=int))  # as if killed after epoch 5
    resumed = bc.compress(c, str(tmp_path / "b"), resume=True)
    assert resumed["architecture"] == full["architecture"]
    assert resumed["error_after"] == full["error_after"]
    lines = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    epochs = [json.loads(x) for x in lines if json.loads(x)["kind"] == "epoch"]
    assert [r["epoch"] for r in epochs] == list(range(1, 7))
    with pytest.raises(Exception, match="--resume"):
        bc.compress(c, str(tmp_path / "a"))
