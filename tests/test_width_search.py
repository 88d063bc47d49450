"""jaxnas.width.search: the width search step (thesis Algorithm 3) and its DARTS ablation.

Identities between two computations: the width step with gamma = 0 is ``rarts_step``
without a penalty; the subgradient form is ``rarts_step`` with ``P = ||alpha||_1``; the
DARTS-1 score step is ``-eta grad_alpha L_p`` computed directly; DARTS-2's exact
forward-over-reverse hypergradient equals reverse-over-reverse through the unrolled
step; NetSlim's l1 moves exactly the BN scales by ``eta gamma sgn``.  Known answers: a
huge gamma zeroes every score (the prox leaves exact zeros).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxnas.bilevel.hypergrad import hypergradient
from jaxnas.bilevel.rarts_update import RARTSState, rarts_step
from jaxnas.optim.l1 import l1_penalty
from jaxnas.width import PreActResNet
from jaxnas.width.search import WidthSearch, bn_scale_mask, make_schedule, weight_tx
from jaxnas.xla import jit_init

# The hand-written references these tests compile (gradients, updates, an init) go through
# jit_init: compiled without LLVM optimisation (less CPU time to compile, the same
# functions; each runs once or a few times on tiny inputs).

MODEL = PreActResNet(num_classes=5, stages=(4, 8), blocks=(1, 1), strides=(1, 2), stem=4)
LR = 0.05


def batches():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 4, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 5, size=(2, 4)).astype(np.int32)
    return (x[0], y[0]), (x[1], y[1])  # (D_a batch, D_p batch)


def search(**kw):
    kw = {"lr": LR, "schedule": "constant", "weight_decay": 1e-4, "momentum": 0.9, **kw}
    return WidthSearch(MODEL, **kw)


def allclose(a, b, **kw):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, **kw), a, b)


def ce_loss(rng_key):
    """The cross entropy written independently of WidthSearch.loss (BN in train mode)."""

    def f(params, arch, batch, aux):
        x, y = batch
        logits, upd = MODEL.apply(
            {"params": params, "arch": arch, "batch_stats": aux["stats"]},
            x,
            train=True,
            mutable=["batch_stats"],
        )
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        acc = jnp.mean(jnp.argmax(logits, -1) == y).astype(jnp.float32)
        return loss, {"stats": upd["batch_stats"], "acc": acc}

    return f


def direct_rarts(s, state, batch_a, batch_p, *, gamma=0.0, penalty=None, a_tx=None):
    zero = jnp.zeros((), jnp.float32)
    rs = RARTSState(
        u=state.params,
        w=state.aux["params"],
        alpha=state.arch,
        u_opt=state.opt,
        w_opt=state.aux["opt"],
        alpha_opt=(a_tx or optax.sgd(LR, momentum=0.9)).init(state.arch),
        u_aux={"stats": state.stats, "acc": zero},
        w_aux={"stats": state.aux["stats"], "acc": zero},
    )
    tx = weight_tx(lambda t: LR, momentum=0.9, weight_decay=1e-4)
    new, _ = jit_init(
        lambda rs, bp, ba: rarts_step(
            rs,
            bp,
            ba,
            loss_p=ce_loss(None),
            loss_a=ce_loss(None),
            tx_u=tx,
            tx_w=tx,
            tx_alpha=a_tx or optax.sgd(LR, momentum=0.9),
            lam=1.0,
            beta=1.0,
            gamma=gamma,
            penalty=penalty,
            has_aux=True,
        )
    )(rs, batch_p, batch_a)
    return new


def test_huge_gamma_prox_zeroes_every_score():
    s = search(order="rarts", gamma=1e6, l1="prox")
    batch_a, batch_p = batches()
    state = s.init(0, batch_a[0])
    assert all(np.all(np.asarray(a) == 1) for a in jax.tree.leaves(state.arch))
    new, metrics = s.train_step(state, batch_a, batch_p)
    for name, a in new.arch.items():
        assert np.all(np.asarray(a) == 0.0), name  # exact zeros, not small values
    assert float(metrics["zero_fraction"]) == 0.0  # metrics describe the iterate before
    assert int(new.step) == 1


def test_gamma_zero_is_the_rarts_step_without_penalty():
    s = search(order="rarts", gamma=0.0, l1="prox")
    batch_a, batch_p = batches()
    state = s.init(0, batch_a[0])
    ours, metrics = s.train_step(state, batch_a, batch_p)
    ref = direct_rarts(s, state, batch_a, batch_p)
    allclose(ours.params, ref.u, rtol=1e-5, atol=1e-6)
    allclose(ours.aux["params"], ref.w, rtol=1e-5, atol=1e-6)
    allclose(ours.arch, ref.alpha, rtol=1e-5, atol=1e-7)
    allclose(ours.stats, ref.u_aux["stats"], rtol=1e-5, atol=1e-6)
    # the scores moved (the task gradient reaches them), but none became 0
    diff = max(float(jnp.max(jnp.abs(a - 1))) for a in jax.tree.leaves(ours.arch))
    assert diff > 1e-4
    assert np.isfinite(float(metrics["lagrangian"]))


def test_subgradient_form_is_rarts_with_the_l1_penalty():
    gamma = 0.3  # large enough that the sign term dominates a wrong implementation
    s = search(order="rarts", gamma=gamma, l1="subgradient")
    batch_a, batch_p = batches()
    state = s.init(0, batch_a[0])
    # make some scores negative and one exactly 0 (sgn(0) = 0)
    arch = dict(state.arch)
    first = next(iter(arch))
    arch[first] = arch[first].at[0].set(-0.5).at[1].set(0.0)
    state = state.replace(arch=arch, a_opt=s.a_tx.init(arch))
    ours, _ = s.train_step(state, batch_a, batch_p)

    # ||alpha||_1 with the minimum-norm subgradient sgn(alpha) (jax.grad(abs)(0) is 1)
    def penalty(a):
        return l1_penalty(jax.tree.map(lambda v: v * jax.lax.stop_gradient(jnp.sign(v)), a))

    ref = direct_rarts(s, state, batch_a, batch_p, gamma=gamma, penalty=penalty)
    allclose(ours.arch, ref.alpha, rtol=1e-5, atol=1e-6)
    allclose(ours.params, ref.u, rtol=1e-5, atol=1e-6)


def test_darts1_score_step_is_minus_eta_grad_of_the_valid_loss():
    s = search(order="darts1", gamma=0.0, momentum=0.0)
    batch_a, batch_p = batches()
    state = s.init(0, batch_a[0])
    new, _ = s.train_step(state, batch_a, batch_p)

    def val(arch):  # L_p(w, alpha) on the D_p batch, written directly
        aux = {"stats": state.stats}
        return ce_loss(None)(state.params, arch, batch_p, aux)[0]

    g = jit_init(jax.grad(val))(state.arch)
    allclose(new.arch, jax.tree.map(lambda a, gi: a - LR * gi, state.arch, g), rtol=1e-5, atol=1e-7)
    # and the weights then took their step with the *new* scores on the D_a batch
    aux = {"stats": state.stats}
    gw = jit_init(jax.grad(lambda p: ce_loss(None)(p, new.arch, batch_a, aux)[0]))(state.params)
    want = jax.tree.map(lambda p, gi: p - LR * (gi + 1e-4 * p), state.params, gw)
    allclose(new.params, want, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_darts2_exact_hypergradient_equals_reverse_over_reverse():
    s = search(order="darts2", gamma=0.0, momentum=0.0)
    batch_a, batch_p = batches()
    state = s.init(0, batch_a[0])
    new, _ = s.train_step(state, batch_a, batch_p)

    def loss_fn(w, a, batch):
        return ce_loss(None)(w, a, batch, {"stats": state.stats})[0]

    g, _ = jit_init(
        lambda: hypergradient(
            loss_fn,
            state.params,
            state.arch,
            jax.tree.map(jnp.zeros_like, state.params),
            batch_a,
            batch_p,
            xi=LR,
            momentum=0.0,
            weight_decay=1e-4,
            mode="unrolled",
        )
    )()
    allclose(new.arch, jax.tree.map(lambda a, gi: a - LR * gi, state.arch, g), rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_netslim_l1_moves_exactly_the_bn_scales():
    """Two joint steps from the same state, gamma vs 0: the weights differ by exactly
    ``-eta gamma sgn(scale)`` on the groups' last BN scales and nowhere else; the scores
    stay at 1."""
    gamma = 0.01
    batch_a, _ = batches()
    outs = []
    for g in (gamma, 0.0):
        s = search(order="joint", target="bn", gamma=g, momentum=0.0)
        state = s.init(0, batch_a[0])
        outs.append(s.train_step(state, batch_a)[0])
    mask = bn_scale_mask(outs[0].params, MODEL.channel_groups())
    assert sum(jax.tree.leaves(mask)) == len(MODEL.channel_groups())
    diff = jax.tree.map(lambda a, b: np.asarray(a - b), outs[0].params, outs[1].params)
    want = jax.tree.map(
        lambda m, p: -LR * gamma * np.sign(np.asarray(p)) if m else np.zeros_like(p),
        mask,
        state.params,
    )
    allclose(diff, want, atol=1e-6)
    assert all(np.all(np.asarray(a) == 1) for a in jax.tree.leaves(outs[0].arch))


def test_schedules_and_errors():
    step = make_schedule("step", 0.1, 0.0, 4, 10)
    assert [float(step(t)) for t in (0, 19, 20, 29, 30, 39)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    )
    cos = make_schedule("cosine", 0.1, 0.0, 2, 5)
    assert float(cos(4)) == pytest.approx(0.1) and float(cos(5)) == pytest.approx(0.05)
    with pytest.raises(ValueError, match="order"):
        WidthSearch(MODEL, order="darts3")
    with pytest.raises(ValueError, match="joint"):
        WidthSearch(MODEL, order="rarts", target="bn")
    with pytest.raises(ValueError, match="scored"):
        WidthSearch(MODEL.clone(scored=False))
    with pytest.raises(ValueError, match="l1 form"):
        WidthSearch(MODEL, l1="l0")
    with pytest.raises(ValueError, match="schedule"):
        make_schedule("linear", 0.1, 0.0, 1, 1)
