"""Selectable weight optimisers of the width search and fine-tuning (Swin's AdamW recipe).

Identities between two computations: a search step (joint order, and RARTS' w-block,
thesis Eq. 2.12a) and a fine-tuning step with ``optimizer="adamw"`` equal a hand-written
``optax.adamw`` step (with global-norm clipping and the warm-up cosine schedule) on the
same gradient; closed forms of the warm-up cosine schedule; the weight-decay mask by
parameter name; clear errors for bad names.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxnas.config import load_config
from jaxnas.runtime import RunError
from jaxnas.width.finetune import FineTuner
from jaxnas.width.search import WidthSearch, decay_mask, make_schedule, weight_tx
from jaxnas.width.vit import vit_tiny
from jaxnas.width_compress import compress
from jaxnas.xla import jit_init

# The hand-written references these tests compile (gradients, updates, an init) go through
# jit_init: compiled without LLVM optimisation (less CPU time to compile, the same
# functions; each runs once or a few times on tiny inputs).

HP = dict(lr=0.01, lr_min=1e-4, b1=0.8, b2=0.95, eps=1e-6, weight_decay=0.3, grad_clip=0.5)
WARM = dict(schedule="warmup_cosine", warmup_epochs=1.0, warmup_lr=1e-3, epochs=3)
WARM_ONLY = dict(warmup_epochs=1.0, warmup_lr=1e-3)
SPE = 2  # steps per epoch: step 0 and 1 warm up
DEMO = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "configs",
    "sidt_vit_fmnist_tiny.py",
)


def _model():
    return vit_tiny(num_classes=3, image_size=8, patch_size=4, dim=8, depth=1, heads=2, mlp_dim=8)


def _batch(seed, n=4):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8, 8, 1)).astype(np.float32)
    return jnp.asarray(x), jnp.asarray(rng.integers(0, 3, size=n).astype(np.int32))


def _hand_tx(sched):
    return optax.chain(
        optax.clip_by_global_norm(HP["grad_clip"]),
        optax.adamw(
            sched,
            b1=HP["b1"],
            b2=HP["b2"],
            eps=HP["eps"],
            weight_decay=HP["weight_decay"],
            mask=decay_mask,
        ),
    )


def _close(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=2e-5, atol=1e-7)


def _search(order):
    return WidthSearch(
        _model(),
        order=order,
        target="scores" if order == "rarts" else "none",
        optimizer="adamw",
        momentum=0.9,  # ignored by adamw
        a_lr=0.01,
        steps_per_epoch=SPE,
        **HP,
        **WARM,
    )


def test_warmup_cosine_closed_form():
    s = make_schedule("warmup_cosine", 1.0, 0.1, 4, 10, warmup_epochs=1.0, warmup_lr=0.01)
    np.testing.assert_allclose(float(s(0)), 0.01, rtol=1e-6)
    np.testing.assert_allclose(float(s(5)), 0.01 + 0.5 * (1.0 - 0.01), rtol=1e-6)
    np.testing.assert_allclose(float(s(10)), 1.0, rtol=1e-6)
    np.testing.assert_allclose(float(s(25)), 0.1 + 0.45, rtol=1e-6)  # half-way down the cosine
    np.testing.assert_allclose(float(s(40)), 0.1, rtol=1e-6)
    with pytest.raises(ValueError, match="warmup_epochs"):
        make_schedule("warmup_cosine", 1.0, 0.0, 2, 5, warmup_epochs=2.0)


def test_decay_mask_follows_swin_recipe():
    v = jax.eval_shape(lambda: _model().init(jax.random.key(0), jnp.zeros((1, 8, 8, 1))))
    flat = jax.tree_util.tree_flatten_with_path(decay_mask(v["params"]))[0]
    seen = {}
    for path, decays in flat:
        name = path[-1].key
        seen.setdefault(name, set()).add(bool(decays))
    assert seen["kernel"] == {True}
    for name in ("bias", "scale", "pos_embed", "cls_token"):
        assert seen[name] == {False}, name


def test_joint_search_step_equals_hand_written_adamw():
    search = _search("joint")
    state = search.init(0, np.zeros((1, 8, 8, 1), np.float32))
    sched = make_schedule("warmup_cosine", HP["lr"], HP["lr_min"], 3, SPE, **WARM_ONLY)
    tx = _hand_tx(sched)
    params, opt = state.params, tx.init(state.params)
    # jitted: an eager grad through flax costs seconds per call on CPU
    grad = jit_init(lambda *a: jax.grad(search.loss, has_aux=True)(*a)[0])
    first = jax.tree.leaves(params)
    for step in range(2):  # the second step sees the moments and the warm-up's next lr
        batch = _batch(step)
        rng_a = jax.random.key_data(jax.random.split(jax.random.wrap_key_data(state.rng), 3)[1])
        g = grad(params, state.arch, state.stats, batch, rng_a)
        upd, opt = jit_init(tx.update)(g, opt, params)
        params = optax.apply_updates(params, upd)
        state, _ = search.train_step(state, batch)
        _close(state.params, params)
    moved = [not np.allclose(a, b) for a, b in zip(first, jax.tree.leaves(state.params))]
    assert all(moved)  # every leaf took a step (decayed or not)


@pytest.mark.slow
def test_rarts_w_block_is_adamw_on_lam_times_gradient():
    """Eq. 2.12a with ``w^0 = u^0`` (``w_init="copy"``): the coupling term is zero, so the
    w-update is AdamW on ``lam * grad_w L_a(w, alpha)`` (lam = 1)."""
    search = _search("rarts")
    state = search.init(0, np.zeros((1, 8, 8, 1), np.float32))
    ba, bp = _batch(1), _batch(2)
    rng_a = jax.random.key_data(jax.random.split(jax.random.wrap_key_data(state.rng), 3)[1])
    w = state.aux["params"]
    g = jit_init(
        lambda p: jax.grad(search.loss, has_aux=True)(p, state.arch, state.aux["stats"], ba, rng_a)[
            0
        ]
    )(w)
    tx = _hand_tx(search.lr)
    upd, _ = jit_init(tx.update)(g, tx.init(w), w)
    new, _ = search.train_step(state, ba, bp)
    _close(new.aux["params"], optax.apply_updates(w, upd))


def test_finetune_step_equals_hand_written_adamw():
    model = _model()
    v = jit_init(model.init)(jax.random.key(1), jnp.zeros((1, 8, 8, 1)))  # eager init: ~10 s
    tuner = FineTuner(model, optimizer="adamw", steps_per_epoch=SPE, **HP, **WARM)
    state = tuner.init(v, seed=0)
    batch = _batch(3)
    rng = jax.random.key_data(jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step))
    g = jit_init(jax.grad(lambda p: tuner.loss(p, state, *batch, None, rng)[0]))(state.params)
    tx = _hand_tx(tuner.lr)
    upd, _ = jit_init(tx.update)(g, tx.init(state.params), state.params)
    new, _ = tuner.train_step(state, batch)
    _close(new.params, optax.apply_updates(state.params, upd))


def test_bad_optimizer_names_raise():
    sched = make_schedule("constant", 0.1, 0.0, 1, 1)
    with pytest.raises(ValueError, match="weight optimizer"):
        weight_tx(sched, momentum=0.9, weight_decay=0.0, optimizer="adam")
    with pytest.raises(ValueError, match="weight optimizer"):
        WidthSearch(_model(), optimizer="lamb")
    with pytest.raises(ValueError, match="darts2"):
        WidthSearch(_model(), order="darts2", optimizer="adamw")
    with pytest.raises(ValueError, match="weight optimizer"):
        FineTuner(_model(), optimizer="rmsprop")
    with pytest.raises(ValueError, match="schedule"):
        make_schedule("linear", 0.1, 0.0, 1, 1)


def test_compress_rejects_bad_optimizer_before_any_work(tmp_path):
    for key in ("search.w_optimizer", "finetune.optimizer"):
        config = load_config(DEMO, [f"{key}=adam"])
        with pytest.raises(RunError, match=key.replace(".", r"\.")):
            compress(config, str(tmp_path / "wd"))
    config = load_config(
        DEMO,
        ["finetune.schedule=warmup_cosine", "finetune.warmup_epochs=5.0"],
    )
    with pytest.raises(RunError, match="finetune"):
        compress(config, str(tmp_path / "wd"))
    assert not (tmp_path / "wd" / "search").exists()  # no phase ran
