"""jaxnas.width (channel-scored CNNs, ranking, surgery) and the l1 transforms of jaxnas.optim.

Exact parameter counts against published numbers (NetSlim's PreResNet-164, torchvision's
MobileNetV2) and against hand-written closed forms; masked == sliced (a network whose
pruned scores are 0 computes what the physically smaller twin computes, in inference
and training mode); folding the scores is exact; the scores get a task gradient (BN
does not cancel them); ranking on hand-made scores; the l1 prox leaves exact zeros and
is the identity at gamma = 0.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxnas import optim
from jaxnas.models.prunable import normalize_keep
from jaxnas.models.summary import count_macs, count_params
from jaxnas.width import (
    ChannelGroup,
    MobileNetV2,
    PreActResNet,
    PreResNet,
    bn_scale_scores,
    check_groups,
    choose_channels,
    fold_scores,
    kept_widths,
    mask_scores,
    network_size,
    prune,
    pruning_summary,
    random_scores,
    slice_variables,
)
from jaxnas.xla import jit_init

# The programs these tests compile to compare values once (applies of the masked and the
# sliced networks, an init) go through jit_init: compiled without LLVM optimisation (a
# third less CPU time to compile, the same functions).  The training step and the
# evaluation over 2,000 images keep the run's optimisation.

# ---------------------------------------------------------------------------- helpers


def shapes_of(model, input_shape):
    x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
    return jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)


def randomize(variables, seed):
    """Random weights, BN affine and running statistics (var > 0), scores (float64 in x64)."""
    rng = np.random.default_rng(seed)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(variables)
    out = []
    for path, x in leaves:
        name = str(path[-1].key)
        if name == "var":
            v = rng.uniform(0.5, 2.0, x.shape)
        elif name == "scale":
            v = rng.uniform(0.5, 1.5, x.shape)
        elif name == "kernel":
            v = rng.normal(size=x.shape) * np.sqrt(2.0 / np.prod(x.shape[:-1]))
        else:  # bias, mean, scores
            v = rng.normal(size=x.shape) * 0.5
        out.append(jnp.asarray(v))
    return jax.tree_util.tree_unflatten(treedef, out)


def tree_shapes(tree):
    return jax.tree.map(lambda a: tuple(np.shape(a)), tree)


# ---------------------------------------------------------------------------- exact counts


def netslim_preresnet_counts(depth, num_classes, widths=None, selects=None, hw=32, c_in=3):
    """Parameters and conv + fc MACs of the NetSlim PreResNet, by hand (selection BN sliced)."""
    n = (depth - 2) // 9
    params = macs = 0
    params += 9 * c_in * 16
    macs += hw * hw * 9 * c_in * 16
    inplanes, res, i = 16, hw, 0
    for s, planes in enumerate((16, 32, 64)):
        for b in range(n):
            c1, c2 = widths[i] if widths else (planes, planes)
            n_in = len(selects[i]) if selects and selects[i] is not None else inplanes
            out, stride = 4 * planes, (2 if s > 0 and b == 0 else 1)
            res_out = res // stride
            params += 2 * n_in + n_in * c1 + 2 * c1 + 9 * c1 * c2 + 2 * c2 + c2 * out
            macs += res * res * n_in * c1 + res_out * res_out * (9 * c1 * c2 + c2 * out)
            if b == 0:
                params += inplanes * out
                macs += res_out * res_out * inplanes * out
            inplanes, res, i = out, res_out, i + 1
    n_final = len(selects[-1]) if selects and selects[-1] is not None else inplanes
    params += 2 * n_final + n_final * num_classes + num_classes
    macs += n_final * num_classes
    return params, macs


def test_preresnet164_exact_parameter_and_mac_counts():
    """1,703,258 parameters (NetSlim layout, 10 classes; thesis Table 4.1's 1.7M) and
    247,646,720 multiply-adds (the 2.48e8 "FLOPS" of Table 4.1); 1,726,388 at 100."""
    model = PreResNet(164, 10)
    v = shapes_of(model, (32, 32, 3))
    check_groups(model.channel_groups(), v)
    assert count_params(v["params"]) == 1_703_258
    assert count_macs(model, v, (32, 32, 3)) == 247_646_720
    assert netslim_preresnet_counts(164, 10) == (1_703_258, 247_646_720)
    assert count_params(shapes_of(PreResNet(164, 100, scored=False), (32, 32, 3))["params"]) == (
        1_726_388
    )
    # NetSlim's BN layers = the scored groups: 3 per bottleneck + the final BN.
    groups = model.channel_groups()
    assert len(groups) == 3 * 54 + 1
    assert "arch" in v and set(v["arch"]) == {g.name for g in groups}


def test_mobilenetv2_exact_parameter_count():
    """3,504,872 parameters at 1000 classes: torchvision's documented count for
    ``mobilenet_v2`` (``MobileNet_V2_Weights.IMAGENET1K_V1.meta["num_params"]``); the
    paper's 300M multiply-adds at 224x224 (Sandler et al. 2018, Table 4)."""
    model = MobileNetV2(1000)
    v = shapes_of(model, (224, 224, 3))
    check_groups(model.channel_groups(), v)
    assert count_params(v["params"]) == 3_504_872
    macs = count_macs(model, v, (224, 224, 3))
    assert abs(macs - 300e6) / 300e6 < 0.005
    # ImageNet-20: the same body, a 20-way classifier (1280 x 20 + 20).
    v20 = shapes_of(MobileNetV2(20, scored=False), (224, 224, 3))
    assert count_params(v20["params"]) == 3_504_872 - 980 * 1281
    # One hidden group per block (block 0's are the stem's channels) + the head.
    names = [g.name for g in model.channel_groups()]
    assert len(names) == 18 and names[0] == "block00.hidden" and names[-1] == "head"
    assert {g.name: g.size for g in model.channel_groups()}["block00.hidden"] == 32


def test_small_preact_resnet_counts_closed_form():
    stem, stages, c_in, k = 16, (16, 32, 64), 1, 10
    params, inplanes = 9 * c_in * stem, stem
    for out in stages:
        params += 2 * inplanes + 9 * inplanes * out + 2 * out + 9 * out * out
        params += inplanes * out if inplanes != out else 0
        inplanes = out
    params += 2 * inplanes + inplanes * k + k
    model = PreActResNet()
    v = shapes_of(model, (28, 28, c_in))
    check_groups(model.channel_groups(), v)
    assert count_params(v["params"]) == params == 77_562


def test_pruned_preresnet164_counts_match_closed_form():
    """The pruned model's config (widths, selections) gives the sizes a hand count gives."""
    model = PreResNet(47, 10)  # all three stages, identity blocks; cheaper to trace than 164
    groups = model.channel_groups()
    rng = np.random.default_rng(0)
    arch = {g.name: rng.normal(size=g.size) for g in groups}
    keep = choose_channels(arch, groups, ratio=0.4)
    pm = model.pruned(keep)
    widths = [(len(keep[f"{p}.mid1"]), len(keep[f"{p}.mid2"])) for p in _block_names(groups)]
    selects = [tuple(keep[f"{p}.in"]) for p in _block_names(groups)] + [tuple(keep["final"])]
    v = shapes_of(pm, (32, 32, 3))
    params, macs = netslim_preresnet_counts(47, 10, widths, selects)
    full_params, full_macs = netslim_preresnet_counts(47, 10)
    assert count_params(v["params"]) == params < full_params
    assert count_macs(pm, v, (32, 32, 3)) == macs < full_macs
    n = sum(g.size for g in groups)
    assert sum(k for k, _ in kept_widths(groups, keep).values()) == n - math.floor(0.4 * n)


def _block_names(groups):
    return [g.name[: -len(".in")] for g in groups if g.name.endswith(".in")]


def test_scores_are_not_parameters_and_unscored_has_no_arch():
    model = PreActResNet()
    scored, plain = shapes_of(model, (28, 28, 1)), shapes_of(model.clone(scored=False), (28, 28, 1))
    assert "arch" not in plain
    assert tree_shapes(scored["params"]) == tree_shapes(plain["params"])
    assert {k: v.shape for k, v in scored["arch"].items()} == {
        g.name: (g.size,) for g in model.channel_groups()
    }


# ---------------------------------------------------------------------------- masked == sliced

FAMILIES = {
    # Same block code as the full models; shallow / narrow for compile time.
    "preact": (
        PreActResNet(10, stages=(8, 16), blocks=(1, 2), strides=(1, 2), stem=8),
        (8, 8, 1),
    ),
    "preresnet20": (PreResNet(20, 10), (8, 8, 3)),
    # Block 0 is t = 1 and not residual (stem 16 -> 8): its group includes the stem.
    # (Channel counts are rounded to multiples of 8, as torchvision's.)
    "mobilenetv2": (
        MobileNetV2(
            10,
            setting=((1, 8, 1, 1), (4, 8, 2, 2), (4, 16, 2, 1)),
            stem=16,
            last_channel=32,
            dropout=0.0,
        ),
        (8, 8, 3),
    ),
}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def pruned_pair(request):
    """A randomised family member, its 40 % globally pruned twin, and both in eval/train."""
    model, shape = FAMILIES[request.param]
    with jax.enable_x64(True):
        x = jnp.asarray(np.random.default_rng(0).normal(size=(4, *shape)), jnp.float64)
        v = randomize(shapes_of(model, shape), 1)
        groups = model.channel_groups()
        keep = choose_channels(v["arch"], groups, ratio=0.4)
        if request.param == "mobilenetv2":
            # Keep exactly ``out`` = 8 stem channels: the pruned block must not turn residual.
            keep["block00.hidden"] = np.array([1, 3, 4, 6, 9, 10, 12, 15])
        masked = dict(v, arch=mask_scores(v["arch"], groups, keep))
        pm, pv = prune(model, v, keep)

        def run(m, variables, train):
            def f(variables):
                if train:
                    y, upd = m.apply(variables, x, train=True, mutable=["batch_stats"])
                    return y, upd["batch_stats"]
                return m.apply(variables, x, train=False)

            return jit_init(f)(variables)

        out = {
            "eval": (run(model, masked, False), run(pm, pv, False)),
            "train": (run(model, masked, True), run(pm, pv, True)),
        }
        return dict(
            name=request.param,
            model=model,
            shape=shape,
            x=x,
            v=v,
            keep=keep,
            pm=pm,
            pv=pv,
            out=out,
            groups=groups,
        )


def test_masked_equals_sliced_inference(pruned_pair):
    y_mask, y_cut = pruned_pair["out"]["eval"]
    assert np.max(np.abs(y_mask)) > 0.1
    np.testing.assert_allclose(y_cut, y_mask, rtol=1e-10, atol=1e-10)


def test_masked_equals_sliced_training_mode_and_bn_statistics(pruned_pair):
    """BN is per channel: batch statistics of the kept channels do not depend on the
    pruned ones, so outputs and the updated running statistics agree after slicing."""
    (y_mask, stats_mask), (y_cut, stats_cut) = pruned_pair["out"]["train"]
    np.testing.assert_allclose(y_cut, y_mask, rtol=1e-10, atol=1e-10)
    groups, keep = pruned_pair["groups"], pruned_pair["keep"]
    with jax.enable_x64(True):
        sliced = slice_variables({"batch_stats": stats_mask}, groups, keep)["batch_stats"]
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-12), sliced, stats_cut)
    changed = jax.tree.map(
        lambda a, b: not np.allclose(a, b), stats_cut, pruned_pair["pv"]["batch_stats"]
    )
    assert any(jax.tree.leaves(changed))  # the statistics did move


def test_sliced_variables_are_the_pruned_models_variables(pruned_pair):
    """Same tree and shapes as a fresh init of the smaller model; fewer params and MACs."""
    pm, pv, shape = pruned_pair["pm"], pruned_pair["pv"], pruned_pair["shape"]
    assert tree_shapes(pv) == tree_shapes(shapes_of(pm, shape))
    before = network_size(pruned_pair["model"], pruned_pair["v"], shape)
    after = network_size(pm, pv, shape)
    assert after["params"] < before["params"] and after["macs"] < before["macs"]
    for g in pm.channel_groups():
        assert g.size == len(pruned_pair["keep"][g.name])


def test_fold_scores_is_exact(pruned_pair):
    """Scores folded into the kernels that read them: the unscored net computes the same."""
    with jax.enable_x64(True):
        pm, pv, x = pruned_pair["pm"], pruned_pair["pv"], pruned_pair["x"]
        fm, fv = fold_scores(pm, pv)
        assert "arch" not in fv and not fm.scored
        np.testing.assert_allclose(
            jit_init(fm.apply)(fv, x), pruned_pair["out"]["eval"][1], rtol=1e-10, atol=1e-10
        )


def test_mobilenetv2_pruned_block_stays_non_residual():
    model, _ = FAMILIES["mobilenetv2"]
    pm = model.pruned({"block00.hidden": range(8)})  # 8 = the block's output width
    assert pm.stem == model.stem and pm.hidden[0] == 8
    assert [g.name for g in pm.channel_groups()][0] == "block00.hidden"


def test_prune_twice_equals_prune_once_with_composed_indices():
    """Selections compose: pruning the head of a pruned net indexes the original stream."""
    model = PreActResNet(10, stages=(8, 16), blocks=(1, 1), strides=(1, 2), stem=8)
    v = randomize(shapes_of(model, (8, 8, 1)), 3)
    k1 = {"final": [0, 2, 3, 5, 7, 8, 11, 15], "stage1_0.mid": [1, 2, 5]}
    m1, v1 = prune(model, v, k1)
    m2, v2 = prune(m1, v1, {"final": [1, 4, 7], "stage1_0.mid": [0, 2]})
    m3, v3 = prune(model, v, {"final": [2, 7, 15], "stage1_0.mid": [1, 5]})
    assert (m2.mids, m2.select) == (m3.mids, m3.select) == ((2, 16), (2, 7, 15))
    jax.tree.map(np.testing.assert_array_equal, v2, v3)


# ---------------------------------------------------------------------------- BN placement


def test_scores_get_a_task_gradient_bn_does_not_cancel_them():
    """Every score group has a clearly non-zero gradient in training mode (BN batch
    statistics); the trap (a score on a conv output *before* its BN) has almost none."""
    model = PreActResNet(10, stages=(8, 16), blocks=(1, 1), strides=(1, 2), stem=8)
    v = randomize(shapes_of(model, (8, 8, 1)), 0)
    v["arch"] = jax.tree.map(jnp.ones_like, v["arch"])
    rng = np.random.default_rng(1)
    x, y = jnp.asarray(rng.normal(size=(16, 8, 8, 1))), jnp.asarray(rng.integers(0, 10, 16))

    def loss(arch):
        logits, _ = model.apply(dict(v, arch=arch), x, train=True, mutable=["batch_stats"])
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    grads = jax.jit(jax.grad(loss))(v["arch"])
    for name, g in grads.items():
        assert float(jnp.linalg.norm(g)) > 1e-3, name

    # The trap: alpha * conv-output fed to a training-mode BN is normalised away.
    feat = jnp.asarray(rng.normal(size=(16, 4, 4, 8)) * 2.0 + 1.0)
    w = jnp.asarray(rng.normal(size=(16, 4, 4, 8)))

    def trap(alpha):
        h = feat * alpha
        mu, var = h.mean((0, 1, 2)), h.var((0, 1, 2))
        h = (h - mu) / jnp.sqrt(var + 1e-5) + 1.0
        return jnp.sum(w * jax.nn.relu(h)) / w.size

    def ours(alpha):
        mu, var = feat.mean((0, 1, 2)), feat.var((0, 1, 2))
        h = (feat - mu) / jnp.sqrt(var + 1e-5) + 1.0
        return jnp.sum(w * jax.nn.relu(h) * alpha) / w.size

    g_trap, g_ours = jax.jit(lambda a: (jax.grad(trap)(a), jax.grad(ours)(a)))(jnp.ones(8))
    assert np.max(np.abs(g_trap)) < 1e-5 and np.min(np.abs(g_ours)) > 1e-3


# ---------------------------------------------------------------------------- ranking


def hand_groups(*sizes):
    return [ChannelGroup(f"g{i}", n, (), ()) for i, n in enumerate(sizes)]


ARCH = {
    "g0": np.array([0.1, 0.5, 0.05, 0.9]),
    "g1": np.array([0.2, -0.01, 0.3, 0.4, -0.6, 0.02]),
}


def test_global_vs_per_layer_ranking_on_hand_made_scores():
    groups = hand_groups(4, 6)
    # Global 40 % of 10: the 4 smallest |alpha| overall: 0.01, 0.02, 0.05, 0.1.
    keep = choose_channels(ARCH, groups, ratio=0.4, scope="global")
    assert keep["g0"].tolist() == [1, 3] and keep["g1"].tolist() == [0, 2, 3, 4]
    # Per layer: floor(1.6) = 1 from g0 (0.05), floor(2.4) = 2 from g1 (0.01, 0.02).
    keep = choose_channels(ARCH, groups, ratio=0.4, scope="layer")
    assert keep["g0"].tolist() == [0, 1, 3] and keep["g1"].tolist() == [0, 2, 3, 4]
    # Sign does not matter (|alpha|): floor(4.8) = 4 go, -0.6 and 0.4 stay.
    keep = choose_channels(ARCH, groups, ratio=0.8, scope="layer")
    assert keep["g1"].tolist() == [3, 4]


def test_ranking_never_empties_a_group():
    groups = hand_groups(4, 2)
    arch = {"g0": np.array([1.0, 2.0, 3.0, 4.0]), "g1": np.array([2e-4, 1e-4])}
    # Global 50 % of 6 = 3: g1's two are the smallest, but g1 keeps one (its larger,
    # index 0); the third channel then comes from g0 (its two smallest).
    keep = choose_channels(arch, groups, ratio=0.5)
    assert keep["g1"].tolist() == [0] and keep["g0"].tolist() == [2, 3]
    # Per layer at 100 %: one channel (the largest |alpha|) per group.
    keep = choose_channels(arch, groups, ratio=1.0, scope="layer")
    assert keep["g0"].tolist() == [3] and keep["g1"].tolist() == [0]
    with pytest.raises(ValueError, match="cannot prune 6 of 6"):
        choose_channels(arch, groups, ratio=1.0)
    keep = choose_channels(arch, groups, ratio=1 / 3, min_keep=2)  # g1 may not lose any
    assert keep["g1"].tolist() == [0, 1] and keep["g0"].tolist() == [2, 3]
    with pytest.raises(ValueError, match="at most 2"):
        choose_channels(arch, groups, ratio=0.5, min_keep=2)
    with pytest.raises(ValueError, match="keeps no channel"):
        normalize_keep(groups, {"g0": []})


def test_keep_nonzeros_ties_and_subset():
    groups = hand_groups(4, 3)
    arch = {"g0": np.array([0.0, 0.3, 0.0, -0.2]), "g1": np.zeros(3)}
    keep = choose_channels(arch, groups)  # ratio None: the non-zeros
    assert keep["g0"].tolist() == [1, 3] and keep["g1"].tolist() == [0]  # all zero: first
    # Ties: equal scores go in group order, then channel order.
    tie = {"g0": np.full(4, 0.5), "g1": np.full(3, 0.5)}
    keep = choose_channels(tie, groups, ratio=3 / 7)
    assert keep["g0"].tolist() == [3] and keep["g1"].tolist() == [0, 1, 2]
    # Only g1 prunable: N = 3, g0 untouched.
    keep = choose_channels(
        ARCH | {"g1": np.array([3.0, 1.0, 2.0])}, groups, ratio=0.34, prunable=["g1"]
    )
    assert keep["g0"].tolist() == [0, 1, 2, 3] and keep["g1"].tolist() == [0, 2]


def test_ranking_errors():
    groups = hand_groups(4, 6)
    for kwargs, msg in [
        (dict(scope="block"), "scope"),
        (dict(ratio=1.5), "ratio"),
        (dict(ratio=0.5, min_keep=0), "min_keep"),
        (dict(ratio=0.5, prunable=["nope"]), "unknown"),
    ]:
        with pytest.raises(ValueError, match=msg):
            choose_channels(ARCH, groups, **kwargs)
    with pytest.raises(ValueError, match="6 channels"):
        choose_channels({"g0": ARCH["g0"], "g1": np.ones(5)}, groups, ratio=0.5)
    with pytest.raises(ValueError, match="distinct"):
        normalize_keep(groups, {"g0": [0, 0]})
    with pytest.raises(ValueError, match="unknown"):
        PreActResNet().pruned({"nope": [0]})
    with pytest.raises(ValueError, match="9n"):
        PreResNet(depth=21).channel_groups()


def test_pruning_summary_on_small_resnet():
    model = PreActResNet()
    v = randomize(shapes_of(model, (28, 28, 1)), 0)
    keep = choose_channels(v["arch"], model.channel_groups(), ratio=0.5)
    s = pruning_summary(model, v, keep, (28, 28, 1))
    assert s["channels"] == 176 and s["channels_kept"] == 88 and s["pruned_ratio"] == 0.5
    assert s["params"] == 77_562 and s["params_after"] < s["params"]
    assert s["macs_after"] < s["macs"]
    assert sum(k for k, _ in s["widths"].values()) == 88


def test_baseline_scores_netslim_bn_scales_and_random():
    model = PreResNet(20, 10)
    v = randomize(shapes_of(model, (8, 8, 3)), 0)
    groups = model.channel_groups()
    s, p = bn_scale_scores(v, groups), v["params"]
    # NetSlim ranks the scales of bn1 (before its channel selection), bn2, bn3, final bn.
    np.testing.assert_array_equal(s["layer1_0.in"], p["layer1_0"]["bn1"]["scale"])
    np.testing.assert_array_equal(s["layer2_1.mid1"], p["layer2_1"]["bn2"]["scale"])
    np.testing.assert_array_equal(s["layer3_1.mid2"], p["layer3_1"]["bn3"]["scale"])
    np.testing.assert_array_equal(s["final"], p["bn"]["scale"])
    mb, _ = FAMILIES["mobilenetv2"]
    vm = randomize(shapes_of(mb, (8, 8, 3)), 0)
    sm = bn_scale_scores(vm, mb.channel_groups())
    np.testing.assert_array_equal(sm["block00.hidden"], vm["params"]["block00"]["dw_bn"]["scale"])
    np.testing.assert_array_equal(sm["head"], vm["params"]["last_bn"]["scale"])
    # Random pruning: reproducible per seed, different across seeds, exact count.
    k1, k2, k3 = (choose_channels(random_scores(groups, i), groups, ratio=0.5) for i in (3, 3, 4))
    assert all(np.array_equal(k1[n], k2[n]) for n in k1)
    assert not all(np.array_equal(k1[n], k3[n]) for n in k1)
    n = sum(g.size for g in groups)
    assert sum(len(k) for k in k1.values()) == n - n // 2


# ---------------------------------------------------------------------------- l1 transforms


def test_l1_prox_matches_soft_threshold_and_leaves_exact_zeros():
    p = {"a": jnp.array([0.30, -0.02, 0.01, -0.50, 0.0, 0.049])}
    g = {"a": jnp.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.01])}
    lr, gamma = 0.5, 0.1  # threshold lr * gamma = 0.05
    tx = optax.chain(optax.sgd(lr), optim.l1_prox(lr, gamma))
    upd, _ = tx.update(g, tx.init(p), p)
    new = optax.apply_updates(p, upd)["a"]
    z = np.asarray(p["a"]) - lr * np.asarray(g["a"])
    expect = np.sign(z) * np.maximum(np.abs(z) - lr * gamma, 0.0)
    np.testing.assert_allclose(new, expect, atol=1e-7)
    zero = np.abs(z) <= lr * gamma
    assert zero.tolist() == [False, True, True, False, True, True]
    assert np.all(np.asarray(new)[zero] == 0.0)  # exact zeros, not 1e-9


def test_l1_prox_ista_converges_to_lasso_solution():
    """f = 1/2 ||x - b||^2: the minimiser of f + gamma ||x||_1 is S_gamma(b) (closed form)."""
    b = jnp.array([2.0, -0.3, 0.05, -1.0, 0.15])
    gamma, lr = 0.2, 0.3
    tx = optax.chain(optax.sgd(lr), optim.l1_prox(lr, gamma))
    x = jnp.zeros(5) + 1.0
    state = tx.init(x)
    step = jax.jit(lambda x, s: tx.update(x - b, s, x))
    for _ in range(100):
        upd, state = step(x, state)
        x = optax.apply_updates(x, upd)
    expect = np.sign(b) * np.maximum(np.abs(b) - gamma, 0.0)
    np.testing.assert_allclose(x, expect, atol=1e-6)
    assert np.all(np.asarray(x)[expect == 0] == 0.0)


def test_l1_transforms_are_identity_at_gamma_zero():
    rng = np.random.default_rng(0)
    p = {"w": jnp.asarray(rng.normal(size=50) * 10 ** rng.uniform(-6, 2, 50), jnp.float32)}
    g = {"w": jnp.asarray(rng.normal(size=50) * 10 ** rng.uniform(-6, 2, 50), jnp.float32)}
    p["w"] = p["w"].at[:3].set(0.0)
    for tx in (optim.l1_prox(0.1, 0.0), optim.add_l1_subgradient(0.0)):
        upd, _ = tx.update(g, tx.init(p), p)
        np.testing.assert_array_equal(upd["w"], g["w"])  # bit for bit
    base = optax.sgd(0.1, momentum=0.9)
    both = optax.chain(base, optim.l1_prox(0.1, 0.0))
    sb, s2 = base.init(p), both.init(p)
    pb = p2 = p
    for _ in range(3):
        ub, sb = base.update(g, sb, pb)
        u2, s2 = both.update(g, s2, p2)
        pb, p2 = optax.apply_updates(pb, ub), optax.apply_updates(p2, u2)
    np.testing.assert_array_equal(p2["w"], pb["w"])


def test_l1_subgradient_and_schedule_under_jit():
    p = jnp.array([0.5, 0.0, -2.0])
    g = jnp.array([0.1, 0.2, 0.3])
    tx = optim.add_l1_subgradient(0.01)
    upd, _ = tx.update(g, tx.init(p), p)
    np.testing.assert_allclose(upd, [0.11, 0.2, 0.29], rtol=1e-6)  # sgn(0) = 0
    assert float(optim.l1_penalty({"a": p, "b": -p})) == pytest.approx(5.0)
    # A gamma schedule: threshold 0 at step 0, then 0.5 * 1.0.
    tx = optax.chain(optax.sgd(0.5), optim.l1_prox(0.5, lambda t: jnp.where(t > 0, 1.0, 0.0)))
    s = tx.init(p)
    upd, s = jax.jit(tx.update)(jnp.zeros(3), s, p)
    np.testing.assert_array_equal(optax.apply_updates(p, upd), p)
    upd, s = jax.jit(tx.update)(jnp.zeros(3), s, p)
    np.testing.assert_allclose(optax.apply_updates(p, upd), [0.0, 0.0, -1.5])
    with pytest.raises(ValueError, match="gamma must be >= 0"):
        optim.l1_prox(0.1, -1.0)
    with pytest.raises(ValueError, match="needs params"):
        optim.l1_prox(0.1, 0.1).update(g, optim.l1_prox(0.1, 0.1).init(p))


# ---------------------------------------------------------------------------- real data (slow)


@pytest.mark.slow
def test_small_resnet_trains_on_fashion_mnist_and_surgery_keeps_its_predictions():
    """The CPU demo network learns Fashion-MNIST in 160 SGD steps of 64 images (weights and
    scores jointly, the thesis's gamma = 1e-4 as a subgradient); cutting 40 % of its
    channels by |alpha| gives a network that predicts exactly what the masked one does."""
    from jaxnas import data

    try:
        train = data.load("fashion_mnist", "train", limit=20_000)
        test = data.load("fashion_mnist", "test", limit=2_000)
    except data.DatasetNotFoundError as e:
        pytest.skip(str(e))
    xtr, ytr = data.normalize(train.images, "fashion_mnist"), train.labels
    xte, yte = data.normalize(test.images, "fashion_mnist"), test.labels
    model = PreActResNet()
    v = jit_init(model.init)(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
    steps, batch = 160, 64
    w_tx = optax.chain(
        optax.add_decayed_weights(1e-4),
        optax.sgd(optax.cosine_decay_schedule(0.05, steps), momentum=0.9),
    )
    a_tx = optax.chain(optim.add_l1_subgradient(1e-4), optax.adam(1e-3))

    @jax.jit
    def step(state, x, y):
        p, s, a, ow, oa = state

        def loss(p, a):
            logits, upd = model.apply(
                {"params": p, "batch_stats": s, "arch": a}, x, train=True, mutable=["batch_stats"]
            )
            ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
            return ce, upd["batch_stats"]

        (_, s), (gp, ga) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(p, a)
        up, ow = w_tx.update(gp, ow, p)
        ua, oa = a_tx.update(ga, oa, a)
        return optax.apply_updates(p, up), s, optax.apply_updates(a, ua), ow, oa

    state = (v["params"], v["batch_stats"], v["arch"], w_tx.init(v["params"]), a_tx.init(v["arch"]))
    rng = np.random.default_rng(0)
    for _ in range(steps):
        idx = rng.integers(0, len(ytr), batch)
        state = step(state, xtr[idx], ytr[idx])
    trained = {"params": state[0], "batch_stats": state[1], "arch": state[2]}

    def logits(m, variables):
        f = jax.jit(lambda v, x: m.apply(v, x, train=False))
        return np.concatenate([f(variables, xte[i : i + 500]) for i in range(0, len(yte), 500)])

    acc = np.mean(np.argmax(logits(model, trained), -1) == yte)
    assert acc >= 0.65, acc  # 0.731 measured (2,000 test images; chance is 0.1)

    groups = model.channel_groups()
    keep = choose_channels(trained["arch"], groups, ratio=0.4)
    masked = dict(trained, arch=mask_scores(trained["arch"], groups, keep))
    pm, pv = prune(model, trained, keep)
    y_mask, y_cut = logits(model, masked), logits(pm, pv)
    np.testing.assert_allclose(y_cut, y_mask, rtol=1e-4, atol=1e-4)
    assert np.mean(np.argmax(y_cut, -1) == np.argmax(y_mask, -1)) >= 0.999
    assert network_size(pm, pv, (28, 28, 1))["params"] < 0.6 * 77_562
