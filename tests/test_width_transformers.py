"""SiDT vision transformers (jaxnas.width.swin, jaxnas.width.vit, jaxnas.width.attention).

Exact Swin-T parameter counts against the thesis's Tables 4.4 / 4.5 (shapes only, via
``jax.eval_shape``); the relative position index and the shifted-window mask against
hand computations; masked == sliced (a network whose pruned scores are 0 computes what
its physically smaller twin computes) for a Swin block in float64, a small Swin and the
ViT; folding the scores is exact; Table 4.3's scaling (attention and MLP parameters and
multiply-adds shrink by exactly the kept fraction); the closed-form multiply-adds agree
with the traced count on the layers the tracer sees.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnas.models.summary import count_macs, count_params
from jaxnas.width import (
    check_groups,
    choose_channels,
    fold_scores,
    mask_scores,
    network_size,
    prune,
    slice_variables,
)
from jaxnas.width.attention import attend, attention_group, mlp_group
from jaxnas.width.swin import (
    SwinBlock,
    SwinTransformer,
    relative_position_index,
    shifted_window_mask,
    swin_t,
    window_partition,
    window_reverse,
)
from jaxnas.width.vit import ViT, vit_tiny
from jaxnas.xla import jit_init

# The programs these tests compile to compare values once (applies, gradients, inits) go
# through jit_init: compiled without LLVM optimisation (less CPU time to compile, the same
# functions).

# ---------------------------------------------------------------------------- helpers

SMALL_SWIN = dict(
    num_classes=5, image_size=16, patch_size=2, embed_dim=16, depths=(2, 2), heads=(2, 4), window=4
)  # stage 1: 8x8 tokens, 4 windows, shifted 2nd block; stage 2: 4x4 = one window
SMALL_VIT = dict(num_classes=5, image_size=16, patch_size=4, dim=32, depth=2, heads=4, mlp_dim=48)


def shapes_of(model, input_shape):
    x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
    return jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)


def randomize(variables, seed, dtype=np.float32):
    """Random weights, biases, LayerNorm affine and scores (scores in (-1.5, 1.5), not 1,
    so that masking and folding are tested on scores that matter)."""
    rng = np.random.default_rng(seed)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(variables)
    out = []
    for _, x in leaves:
        shape = np.shape(x)
        fan = np.prod(shape[:-1]) if len(shape) > 1 else 4.0
        out.append(jnp.asarray((rng.normal(size=shape) / np.sqrt(fan)).astype(dtype)))
    out = jax.tree_util.tree_unflatten(treedef, out)
    if "arch" in out:
        out["arch"] = {
            k: jnp.asarray(rng.uniform(-1.5, 1.5, np.shape(a)).astype(dtype))
            for k, a in out["arch"].items()
        }
    return out


def leaf_size(params, *path):
    node = params
    for k in path:
        node = node[k]
    return int(np.prod(np.shape(node)))


# ---------------------------------------------------------------------------- Swin-T sizes


def test_swin_t_exact_parameter_counts_and_macs():
    """27,596,254 parameters at 100 classes (thesis Table 4.4: 27.60 M), 27,534,734 at 20
    (Table 4.5: 27.53 M), 28,288,354 at 1000 (official Swin-T: 28.3 M); 4.49 G
    multiply-adds (the thesis's 4.49 G "FLOPS", Swin paper 4.5 G)."""
    expected = {100: 27_596_254, 20: 27_534_734, 1000: 28_288_354}
    for classes, n in expected.items():
        model = swin_t(classes)
        v = shapes_of(model, (224, 224, 3))
        check_groups(model.channel_groups(), v)
        assert count_params(v["params"]) == n
        assert network_size(model, v, (224, 224, 3))["params"] == n
    assert round(swin_t(1000).macs((224, 224, 3)) / 1e9, 2) == 4.49
    # scores: 12 blocks x (head dimension 32 + MLP 4 C_s)
    groups = swin_t(100).channel_groups()
    assert len(groups) == 24
    assert sum(g.size for g in groups if g.name.endswith(".attn")) == 12 * 32
    mlp = sum(g.size for g in groups if g.name.endswith(".mlp"))
    assert mlp == 4 * (2 * 96 + 2 * 192 + 6 * 384 + 2 * 768)


def test_swin_t_uniform_pruning_matches_the_digest_sizes():
    """Every block keeping ``round(rho n)`` of its head dimensions and MLP units (Table 4.3's
    uniform rho): 22.524 / 17.180 / 12.103 / 6.759 M parameters at rho = 0.8 / 0.6 / 0.4 /
    0.2 (100 classes), the digest's independent counts (its Sec. 7 and check 21).  At
    rho = 3/4 and 1/2 (integer widths everywhere) the count is affine in rho."""
    model = swin_t(100)
    groups = model.channel_groups()

    def params_at(rho):
        keep = {g.name: range(round(g.size * rho)) for g in groups}
        return count_params(shapes_of(model.pruned(keep), (224, 224, 3))["params"])

    got = [round(params_at(rho) / 1e6, 3) for rho in (0.8, 0.6, 0.4, 0.2)]
    assert got == [22.524, 17.180, 12.103, 6.759]
    p1, p34, p12 = 27_596_254, params_at(0.75), params_at(0.5)
    assert p1 - p34 == p34 - p12  # affine in rho


def test_closed_form_macs_agree_with_traced_layers():
    """The layers a tracer sees (conv, dense) have the same multiply-adds in the closed
    form (embed, mlp, reduction, head) as in :func:`count_macs`; for a pruned model too."""
    traced_parts = {"embed", "mlp", "reduction", "head"}
    for model, shape in (
        (SwinTransformer(**SMALL_SWIN), (16, 16, 3)),
        (ViT(**SMALL_VIT), (16, 16, 1)),
        (ViT(**SMALL_VIT, pool="mean"), (16, 16, 1)),
    ):
        groups = model.channel_groups()
        for m in (model, model.pruned({g.name: range(g.size // 2) for g in groups})):
            v = shapes_of(m, shape)
            closed = sum(x for _, part, x in m.mac_parts(shape) if part in traced_parts)
            assert closed == count_macs(m, v, shape)


# ---------------------------------------------------------------------------- windows


def test_relative_position_index_2x2_by_hand():
    """M = 2: tokens (0,0), (0,1), (1,0), (1,1); entry (dy + 1) * 3 + (dx + 1)."""
    expected = np.array([[4, 3, 1, 0], [5, 4, 2, 1], [7, 6, 4, 3], [8, 7, 5, 4]])
    np.testing.assert_array_equal(relative_position_index(2), expected)
    idx = relative_position_index(7)
    assert idx.min() == 0 and idx.max() == 13**2 - 1 and np.all(np.diag(idx) == 6 * 13 + 6)


def test_window_partition_roundtrip():
    x = jnp.arange(2 * 8 * 8 * 3, dtype=jnp.float32).reshape(2, 8, 8, 3)
    w = window_partition(x, 4)
    assert w.shape == (8, 16, 3)
    np.testing.assert_array_equal(w[1], x[0, :4, 4:].reshape(16, 3))  # window (0, 1)
    np.testing.assert_array_equal(window_reverse(w, 4, 8, 8), x)


def test_shifted_window_mask_blocks_tokens_from_different_regions():
    """After rolling by -s, two tokens of a window were neighbours iff they wrapped
    around the same way along each axis (rolled position >= H - s): exactly those pairs
    are unmasked, and the attention weights between the others vanish."""
    h, m, s = 8, 4, 2
    mask = shifted_window_mask(h, h, m, s)
    assert mask.shape == (4, 16, 16)
    ys, xs = np.meshgrid(np.arange(h), np.arange(h), indexing="ij")
    wrap = np.stack([ys >= h - s, xs >= h - s], -1).astype(np.float32)  # (H, W, 2)
    wrap = np.asarray(window_partition(jnp.asarray(wrap)[None], m))  # (nW, N, 2)
    same = np.all(wrap[:, :, None, :] == wrap[:, None, :, :], axis=-1)
    np.testing.assert_array_equal(mask == 0, same)
    # window 0 is whole; windows 1 / 2 are split in two along x / y, window 3 in four
    assert [len(np.unique(same[w], axis=0)) for w in range(4)] == [1, 2, 2, 4]

    rng = np.random.default_rng(0)
    q, k, v = (jnp.asarray(rng.normal(size=(2 * 4, 16, 2, 8)), jnp.float32) for _ in range(3))
    _, weights = attend(q, k, v, 8**-0.5, mask=jnp.asarray(mask))
    weights = np.asarray(weights).reshape(2, 4, 2, 16, 16)
    cross = np.broadcast_to(~same[None, :, None], weights.shape)
    assert weights[cross].max() < 1e-30
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-6)


# ---------------------------------------------------------------------------- masked == sliced


def test_swin_block_masked_equals_sliced_float64(x64):
    """A shifted Swin block (4 windows, 2 heads of 8, MLP 32), float64: zero scores on a
    subset of head dimensions / hidden units == the block with W_qkv columns (per head),
    W_O rows, W_1 columns and W_2 rows removed, attention scale kept at 8^{-1/2}."""
    block = SwinBlock(heads=2, attn_dim=8, head_dim=8, mlp_dim=32, window=4, shift=2)
    x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 8, 8, 16)))
    a_attn, a_mlp = jnp.ones(8), jnp.ones(32)
    v = randomize(jax.eval_shape(block.init, jax.random.key(0), x, a_attn, a_mlp), 2, np.float64)
    groups = [attention_group("attn", ("attn",), 8), mlp_group("mlp", ("mlp",), 32)]
    check_groups(groups, v)
    rng = np.random.default_rng(3)
    arch = {"attn": rng.uniform(-1.5, 1.5, 8), "mlp": rng.uniform(-1.5, 1.5, 32)}
    keep = {"attn": [0, 2, 3, 6, 7], "mlp": sorted(rng.choice(32, 13, replace=False))}
    masked_arch = mask_scores(arch, groups, keep)
    masked = jit_init(block.apply)(v, x, masked_arch["attn"], masked_arch["mlp"])
    sliced_arch = {k: a[np.asarray(keep[k])] for k, a in arch.items()}
    small = block.clone(attn_dim=5, mlp_dim=13)
    sliced = jit_init(small.apply)(slice_variables(v, groups, keep), x, *sliced_arch.values())
    assert masked.dtype == jnp.float64
    np.testing.assert_allclose(sliced, masked, rtol=1e-12, atol=1e-12)
    # the scores matter: unmasked scores give another output
    assert np.abs(jit_init(block.apply)(v, x, *arch.values()) - masked).max() > 1e-3


@pytest.mark.parametrize("which", ["swin", "vit", "vit_mean"])
def test_masked_equals_sliced_and_fold(which):
    """Small Swin (shifted windows, patch merging) and ViT (cls / mean pooling), float32:
    global ranking at 40 % -> ``prune`` (sliced weights + smaller model) equals the full
    model with the pruned scores zeroed; folding the scores gives the unscored twin."""
    if which == "swin":
        model, shape = SwinTransformer(**SMALL_SWIN), (16, 16, 3)
    else:
        model, shape = ViT(**SMALL_VIT, pool="mean" if which == "vit_mean" else "cls"), (16, 16, 1)
    v = randomize(shapes_of(model, shape), 4)
    groups = model.channel_groups()
    check_groups(groups, v)
    x = jnp.asarray(np.random.default_rng(5).normal(size=(3, *shape)), jnp.float32)
    keep = choose_channels(v["arch"], groups, ratio=0.4)
    n_total = sum(g.size for g in groups)
    assert sum(len(k) for k in keep.values()) == n_total - int(0.4 * n_total)
    assert any(len(keep[g.name]) not in (g.size, int(0.6 * g.size)) for g in groups)

    masked_vars = {**v, "arch": mask_scores(v["arch"], groups, keep)}
    masked = jit_init(model.apply)(masked_vars, x)
    small, small_vars = prune(model, v, keep)
    sliced = jit_init(small.apply)(small_vars, x)
    np.testing.assert_allclose(sliced, masked, rtol=1e-5, atol=1e-5)
    assert count_params(small_vars["params"]) < count_params(v["params"])
    assert network_size(small, small_vars, shape)["macs"] < model.macs(shape)

    if which == "swin":
        return  # folding is model-independent (the groups' ``fold`` axes): ViT covers it
    folded_model, folded_vars = fold_scores(small, small_vars)
    assert "arch" not in folded_vars and not folded_model.scored
    folded = jit_init(folded_model.apply)(folded_vars, x)
    np.testing.assert_allclose(folded, sliced, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------- Table 4.3


@pytest.mark.parametrize("frac", [0.25, 0.5])
def test_table_4_3_scaling(frac):
    """Keeping a fraction rho = 1 - f of every block's head dimensions and MLP units
    shrinks each block's attention weights (qkv kernel + qkv bias + W_O) and MLP weights
    (W_1 + b_1 + W_2) by exactly rho, and their multiply-adds (qkv, Q K^T and a V, W_O;
    fc1 + fc2) too; the rest (W_O and W_2 biases, bias tables, norms, embedding, merging,
    head) is unchanged."""
    rho = 1 - frac
    for model, shape in (
        (SwinTransformer(**SMALL_SWIN), (16, 16, 3)),
        (ViT(**SMALL_VIT), (16, 16, 1)),
    ):
        groups = model.channel_groups()
        small = model.pruned({g.name: range(int(g.size * rho)) for g in groups})
        p0, p1 = shapes_of(model, shape)["params"], shapes_of(small, shape)["params"]
        attn_leaves = [
            ("attn", "qkv", "kernel"),
            ("attn", "qkv", "bias"),
            ("attn", "proj", "kernel"),
        ]
        mlp_leaves = [("mlp", "fc1", "kernel"), ("mlp", "fc1", "bias"), ("mlp", "fc2", "kernel")]
        blocks = sorted({g.name.split(".")[0] for g in groups})
        scaled = 0
        for b in blocks:
            for leaves in (attn_leaves, mlp_leaves):
                before = sum(leaf_size(p0, b, *lf) for lf in leaves)
                after = sum(leaf_size(p1, b, *lf) for lf in leaves)
                assert after == rho * before
                scaled += before
        total0, total1 = count_params(p0), count_params(p1)
        assert total0 - total1 == frac * scaled  # nothing else changed

        parts0, parts1 = model.mac_parts(shape), small.mac_parts(shape)
        assert [p[:2] for p in parts0] == [p[:2] for p in parts1]
        for (_, part, m0), (_, _, m1) in zip(parts0, parts1):
            assert m1 == (rho * m0 if part in ("qkv", "attn", "proj", "mlp") else m0)


# ---------------------------------------------------------------------------- scores, errors


def test_scores_get_a_task_gradient_and_unit_scores_are_the_plain_network():
    """Both score kinds reach the loss (thesis: searched by gradient descent); with all
    scores 1 (their initial value) the scored network computes the unscored one."""
    model = vit_tiny(num_classes=5, image_size=16, patch_size=4, dim=32, depth=1, heads=4)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 16, 16, 1)), jnp.float32)
    v = randomize(shapes_of(model, (16, 16, 1)), 6)
    v["arch"] = {k: jnp.ones_like(a) for k, a in v["arch"].items()}
    plain = jit_init(model.clone(scored=False).apply)({"params": v["params"]}, x)
    np.testing.assert_allclose(jit_init(model.apply)(v, x), plain, rtol=1e-6, atol=1e-6)

    def loss(arch):
        return jnp.sum(model.apply({**v, "arch": arch}, x) ** 2)

    grads = jit_init(jax.grad(loss))(v["arch"])
    assert set(grads) == {"block0.attn", "block0.mlp"}
    assert all(float(jnp.abs(g).max()) > 1e-6 for g in grads.values())


def test_bad_configs_raise():
    with pytest.raises(ValueError, match="not divisible by window"):
        SwinTransformer(**{**SMALL_SWIN, "window": 3}).channel_groups()
    with pytest.raises(ValueError, match="not divisible by 4 heads"):
        ViT(**{**SMALL_VIT, "dim": 30}).channel_groups()
    with pytest.raises(ValueError, match="pool"):
        ViT(**SMALL_VIT, pool="max").channel_groups()
    with pytest.raises(ValueError, match="attn_dims needs 4"):
        SwinTransformer(**SMALL_SWIN, attn_dims=(8,)).channel_groups()
    with pytest.raises(ValueError, match="in \\[0, 8\\)"):
        SwinTransformer(**SMALL_SWIN).pruned({"stage1_0.attn": [9]})
    with pytest.raises(ValueError, match="built for 16x16"):
        SwinTransformer(**SMALL_SWIN).macs((32, 32, 3))


# ---------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_sidt_compress_end_to_end_on_a_tiny_vit(tmp_path):
    """``jaxnas compress --method sidt`` on a one-block ViT (Fashion-MNIST, a few steps):
    the search runs through the width loop, 40 % of the dimensions go (global ranking),
    and the reported sizes are those of the network ``pruned.json`` rebuilds."""
    import json

    from jaxnas.config import load_config
    from jaxnas.width_compress import compress, load_pruned

    config = load_config("configs/sidt_vit_fmnist_tiny.py")
    config.unlock()
    config.model.kwargs = json.dumps(dict(dim=16, depth=1, heads=2, mlp_dim=32))
    config.data.limit = 256
    config.data.batch_size = 32
    config.search.epochs = 1
    config.finetune.epochs = 1
    config.run.eval_limit = 128
    summary = compress(config, str(tmp_path))
    full, small, keep = load_pruned(summary["pruned_json"])
    groups = full.channel_groups()
    n = sum(g.size for g in groups)
    assert summary["channels"] == n == 8 + 32
    assert summary["channels_kept"] == sum(len(k) for k in keep.values()) == n - int(0.4 * n)
    assert summary["params"] == count_params(shapes_of(full, (28, 28, 1))["params"])
    assert summary["params_after"] == count_params(shapes_of(small, (28, 28, 1))["params"])
    assert summary["macs_after"] == small.macs((28, 28, 1)) < summary["macs"]
    assert 0.0 <= summary["error_finetuned"] <= 1.0
