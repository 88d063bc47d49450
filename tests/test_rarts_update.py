"""RARTS (Xue 2022, Ch. 2): the generic Gauss-Seidel step and the solvable model.

* the solvable model (Example 2.4) reaches the thesis's closed-form equilibrium;
  DARTS-1 / MiLeNAS-1 go to (2, 2) and exact DARTS-2 to 2 / (1 + 2 xi);
* the first iterates, computed by hand, pin the w -> u -> alpha order of Eq. 2.12
  (a Jacobi ordering gives other numbers);
* Theorem 2.2: below the step-size bounds c1, c2, c3 the Lagrangian never increases,
  and the per-step inequality (2.18) holds;
* on nested-dict pytrees: block gradients are those of the Lagrangian (2.11), each batch
  reaches only its blocks, large beta keeps u and w together, aux (BN-statistics-like)
  state is threaded per copy, and ``jax.grad`` goes through a scan of steps.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxnas.bilevel import hypergrad
from jaxnas.bilevel.rarts_update import (
    RARTSState,
    lagrangian,
    make_rarts_step,
    rarts_init,
    rarts_step,
    sq_distance,
)
from jaxnas.toys import rarts_solvable as toy

# ---------------------------------------------------------------------------------------
# the solvable model


def _rarts_limit(lam, beta, steps, scale=0.9, u0=0.0, w0=-2.0, alpha0=2.0):
    c1, c2, c3 = toy.step_size_bounds(lam, beta)
    r = toy.run_rarts(
        lam, beta, u0=u0, w0=w0, alpha0=alpha0,
        eta_u=scale * c1, eta_w=scale * c2, eta_alpha=scale * c3, steps=steps,
    )  # fmt: skip
    return r, np.array([r["u"][-1], r["w"][-1], r["alpha"][-1]])


def test_closed_form_at_lambda_beta_10(x64):
    """The thesis's worked numbers: (u, w, alpha) = (34/37, 38/37, 40/37), L* = -3/37."""
    expected = np.array([34, 38, 40]) / 37
    np.testing.assert_allclose(np.array(toy.rarts_equilibrium(10.0, 10.0)), expected, rtol=1e-14)
    np.testing.assert_allclose(toy.rarts_min_value(10.0, 10.0), -3 / 37, rtol=1e-14)
    r, limit = _rarts_limit(10.0, 10.0, steps=4000)
    np.testing.assert_allclose(limit, expected, atol=1e-11)
    np.testing.assert_allclose(r["lagrangian"][-1], -3 / 37, atol=1e-12)


LAM_BETA = [
    (1.0, 1.0),
    (1.0, 10.0),
    (10.0, 1.0),
    (5.0, 10.0),
    (10.0, 20.0),
    (2.0, 3.0),
    (100.0, 100.0),
]


@pytest.mark.parametrize("lam,beta", LAM_BETA)
def test_rarts_reaches_closed_form(x64, lam, beta):
    d = 4 * beta * lam - beta - 2 * lam
    expected = (
        np.array([4 * beta * lam - 2 * beta - 4 * lam, 4 * beta * lam - 2 * beta, 4 * beta * lam])
        / d
    )
    # the closed form is a critical point of the Lagrangian (equilibrium equations 2.19)
    grads = jax.grad(toy.lagrangian, argnums=(0, 1, 2))(*map(jnp.asarray, expected), lam, beta)
    np.testing.assert_allclose(np.array(grads), 0.0, atol=1e-12)
    np.testing.assert_allclose(np.array(toy.rarts_equilibrium(lam, beta)), expected, rtol=1e-13)
    # and the iteration, started far away, goes there
    _, limit = _rarts_limit(lam, beta, steps=30000, u0=3.0)
    np.testing.assert_allclose(limit, expected, atol=1e-9)
    assert abs(limit[0] + limit[2] - 2) < 1e-9  # u + alpha = 2 at every equilibrium


BASE = dict(w0=-2.0, alpha0=2.0, eta_w=0.05, eta_alpha=0.05, steps=4000)


def test_darts1_and_milenas1_go_to_the_spurious_point(x64):
    r = toy.run_darts1(**BASE)
    np.testing.assert_allclose([r["w"][-1], r["alpha"][-1]], [2.0, 2.0], atol=1e-10)
    for lam in (0.5, 1.0, 3.0):
        r = toy.run_milenas1(**BASE, lam=lam)
        np.testing.assert_allclose([r["w"][-1], r["alpha"][-1]], [2.0, 2.0], atol=1e-10)


@pytest.mark.parametrize("xi", [0.0, 0.1, 0.5, 1.0])
def test_exact_darts2_limit(x64, xi):
    r = toy.run_darts2(**BASE, xi=xi)
    expected = 2 / (1 + 2 * xi)
    assert toy.darts2_equilibrium(xi) == pytest.approx(expected)
    np.testing.assert_allclose([r["w"][-1], r["alpha"][-1]], [expected] * 2, atol=1e-10)
    if xi == 0.5:  # one inner step of size 1/2 solves the inner problem: the true optimum
        np.testing.assert_allclose([r["w"][-1], r["alpha"][-1]], [1.0, 1.0], atol=1e-10)


def test_darts2_hypergradient_formula(x64):
    """``d/dalpha L_p(w - xi grad_w L_a, alpha) = (1 - 2 xi) w + 4 xi alpha - 2`` (all modes)."""
    w, a, xi = jnp.asarray(0.3), jnp.asarray(-1.7), 0.35
    for mode in ("unrolled", "exact"):
        g, _ = hypergrad.hypergradient(
            toy.bilevel_loss, w, a, jnp.zeros(()), "a", "p",
            xi=xi, momentum=0.0, weight_decay=0.0, mode=mode,
        )  # fmt: skip
        np.testing.assert_allclose(g, (1 - 2 * xi) * w + 4 * xi * a - 2, rtol=1e-13)


# ---------------------------------------------------------------------------------------
# Gauss-Seidel order, checked against hand computation


def test_first_iterates_pin_gauss_seidel_order(x64):
    lam, beta, eta_u, eta_w, eta_a = 2.0, 3.0, 0.2, 0.1, 0.05
    u, w, a = 0.5, -1.0, 2.0
    r = toy.run_rarts(
        lam, beta, u0=u, w0=w, alpha0=a, eta_u=eta_u, eta_w=eta_w, eta_alpha=eta_a, steps=2
    )
    # iterate 1 by hand, Eq. 2.12 on the toy:
    # w1 = -1 - 0.1 (2*2*(-1 - 2) + 3 (-1 - 0.5)) = -1 + 1.65           = 0.65
    # u1 = 0.5 - 0.2 (2 + 3 (0.5 - 0.65))          = 0.5 - 0.31         = 0.19
    # a1 = 2 - 0.05 ((0.19 - 2) + 2*2*(2 - 0.65))  = 2 - 0.05 * 3.59    = 1.8205
    np.testing.assert_allclose([r["w"][1], r["u"][1], r["alpha"][1]], [0.65, 0.19, 1.8205])

    def gauss_seidel(u, w, a):
        w = w - eta_w * (2 * lam * (w - a) + beta * (w - u))
        u = u - eta_u * (a + beta * (u - w))
        a = a - eta_a * ((u - 2) + 2 * lam * (a - w))
        return u, w, a

    u2, w2, a2 = gauss_seidel(*gauss_seidel(u, w, a))
    np.testing.assert_allclose([r["u"][2], r["w"][2], r["alpha"][2]], [u2, w2, a2], rtol=1e-14)

    # Jacobi (every block from the old iterate) gives other numbers:
    # u1 = 0.5 - 0.2 (2 + 3 (0.5 + 1)) = -0.8,  a1 = 2 - 0.05 ((0.5 - 2) + 4 (2 + 1)) = 1.475
    ju = u - eta_u * (a + beta * (u - w))
    ja = a - eta_a * ((u - 2) + 2 * lam * (a - w))
    np.testing.assert_allclose([ju, ja], [-0.8, 1.475])
    assert abs(r["u"][1] - ju) > 0.5 and abs(r["alpha"][1] - ja) > 0.3


# ---------------------------------------------------------------------------------------
# Theorem 2.2


def test_step_size_bounds_for_the_toy():
    """c1 = 1/2 [beta/2 + L]^-1, c2 = 1/2 [beta/2 + lam L]^-1, c3 = 1/2 [(1 + lam) L]^-1, L = 4."""
    np.testing.assert_allclose(toy.step_size_bounds(10.0, 10.0), (1 / 18, 1 / 90, 1 / 88))
    np.testing.assert_allclose(toy.step_size_bounds(1.0, 2.0, gamma=2.0), (0.1, 0.1, 1 / 24))


@pytest.mark.parametrize("lam,beta", [(10.0, 10.0), (1.0, 10.0), (100.0, 100.0), (0.25, 0.5)])
def test_theorem_2_2_lagrangian_never_increases(x64, lam, beta):
    """(0.25, 0.5) has D < 0: L is unbounded below, yet must still descend every step."""
    c1, c2, c3 = toy.step_size_bounds(lam, beta)
    eta_u, eta_w, eta_a = 0.99 * c1, 0.99 * c2, 0.99 * c3
    rng = np.random.default_rng(int(lam * 100 + beta))
    for u0, w0, a0 in rng.normal(scale=3.0, size=(3, 3)):
        r = toy.run_rarts(
            lam, beta, u0=u0, w0=w0, alpha0=a0,
            eta_u=eta_u, eta_w=eta_w, eta_alpha=eta_a, steps=1500,
        )  # fmt: skip
        lag = np.asarray(r["lagrangian"])
        dL = np.diff(lag)
        assert np.all(dL <= 1e-12 * np.maximum(1.0, np.abs(lag[1:])))
        # the sharper per-step inequality (2.18) with L = 4, gamma = 0
        du, dw, da = (np.diff(np.asarray(r[k])) ** 2 for k in ("u", "w", "alpha"))
        L = toy.LIPSCHITZ
        bound = (
            (-1 / eta_u + L + beta / 2) * du
            + (-1 / eta_w + lam * L + beta / 2) * dw
            + (-1 / eta_a + (1 + lam) * L) * da
        )
        assert np.all(dL <= bound + 1e-12 * np.maximum(1.0, np.abs(lag[1:])))
        assert lag[-1] < lag[0]


def test_too_large_steps_can_increase_the_lagrangian(x64):
    """The bounds matter: a common eta = 0.1 at lam = beta = 10 (c2 = 1/90) makes L rise."""
    r = toy.run_rarts(10.0, 10.0, u0=0.0, w0=-2.0, alpha0=2.0,
                      eta_u=0.1, eta_w=0.1, eta_alpha=0.1, steps=200)  # fmt: skip
    assert np.max(np.diff(np.asarray(r["lagrangian"]))) > 0


# ---------------------------------------------------------------------------------------
# generic pytrees


def _model_loss(params, alpha, batch):
    """A tiny 'supernet': two candidate ops mixed by softmax(alpha), scaled by a gate."""
    x, y = batch
    h = jnp.tanh(x @ params["enc"]["k"])
    ops = jnp.stack([h, h**2])  # (2, n, 2)
    mix = jnp.einsum("o,onc->nc", jax.nn.softmax(alpha["mix"]["a"]), ops)
    pred = alpha["gate"] * mix + params["head"]["b"]
    return jnp.mean((pred - y) ** 2)


def _penalty(alpha):
    return jnp.sum(jax.nn.softmax(alpha["mix"]["a"]) * jnp.array([1.0, 3.0])) + alpha["gate"] ** 2


def _setup(seed=0):
    rng = np.random.default_rng(seed)
    f = lambda *s: jnp.asarray(rng.normal(size=s))
    u = {"enc": {"k": f(3, 2)}, "head": {"b": f(2)}}
    w = {"enc": {"k": f(3, 2)}, "head": {"b": f(2)}}
    alpha = {"mix": {"a": f(2)}, "gate": f()}
    batch_p, batch_a = (f(8, 3), f(8, 2)), (f(8, 3), f(8, 2))
    return u, w, alpha, batch_p, batch_a


ETA = dict(u=0.07, w=0.05, alpha=0.03)
HYP = dict(lam=2.5, beta=1.5, gamma=0.3)


def _sgd_step(beta=HYP["beta"], penalty=_penalty, **kw):
    txs = dict(tx_u=optax.sgd(ETA["u"]), tx_w=optax.sgd(ETA["w"]), tx_alpha=optax.sgd(ETA["alpha"]))
    hyp = dict(HYP, beta=beta)
    step = make_rarts_step(
        loss_p=_model_loss, loss_a=_model_loss, penalty=penalty, **hyp, **txs, **kw
    )
    return jax.jit(step), txs


def test_step_is_gauss_seidel_on_the_lagrangian(x64):
    """Each block moves along -eta times the block gradient of Eq. 2.11 at the newest values."""
    u, w, alpha, bp, ba = _setup()
    step, txs = _sgd_step()
    state, info = step(rarts_init(u, w, alpha, **txs), bp, ba)

    L = lambda u_, w_, a_: lagrangian(
        u_, w_, a_, bp, ba, loss_p=_model_loss, loss_a=_model_loss, penalty=_penalty, **HYP
    )
    sub = lambda x, g, eta: jax.tree.map(lambda xi, gi: xi - eta * gi, x, g)

    @jax.jit
    def by_hand(u, w, alpha):
        w1 = sub(w, jax.grad(L, 1)(u, w, alpha), ETA["w"])
        u1 = sub(u, jax.grad(L, 0)(u, w1, alpha), ETA["u"])
        return u1, w1, sub(alpha, jax.grad(L, 2)(u1, w1, alpha), ETA["alpha"])

    u1, w1, a1 = by_hand(u, w, alpha)
    for got, want in ((state.w, w1), (state.u, u1), (state.alpha, a1)):
        jax.tree.map(
            lambda g, e: np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-14), got, want
        )
    np.testing.assert_allclose(info.lagrangian, L(u, w, alpha), rtol=1e-13)
    np.testing.assert_allclose(info.loss_p, _model_loss(u, alpha, bp), rtol=1e-13)
    np.testing.assert_allclose(info.loss_a, _model_loss(w, alpha, ba), rtol=1e-13)
    np.testing.assert_allclose(info.sq_distance, sq_distance(u, w), rtol=1e-13)
    np.testing.assert_allclose(info.penalty, _penalty(alpha), rtol=1e-13)


def _changed(a, b):
    return [
        not np.allclose(x, y, rtol=0, atol=0)
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    ]


def test_each_batch_reaches_only_its_blocks(x64):
    """w-step: D_a only; u-step: D_p only (plus beta-coupling to the new w); alpha: both."""
    u, w, alpha, bp, ba = _setup(1)
    bump = lambda b: (b[0] + 0.3, b[1] - 0.2)
    for beta in (HYP["beta"], 0.0):
        step, txs = _sgd_step(beta=beta)
        s0 = rarts_init(u, w, alpha, **txs)
        ref, _ = step(s0, bp, ba)
        # perturb the D_p batch: w is untouched, u and alpha move
        sp, _ = step(s0, bump(bp), ba)
        assert not any(_changed(sp.w, ref.w))
        assert all(_changed(sp.u, ref.u)) and all(_changed(sp.alpha, ref.alpha))
        # perturb the D_a batch: w and alpha move; u only through beta (u - w^{t+1})
        sa, _ = step(s0, bp, bump(ba))
        assert all(_changed(sa.w, ref.w)) and all(_changed(sa.alpha, ref.alpha))
        # SGD: u' - u = eta_u beta (w^{t+1}' - w^{t+1}) exactly
        jax.tree.map(
            lambda uu, ur, wa, wr, b=beta: np.testing.assert_allclose(
                uu - ur, ETA["u"] * b * (wa - wr), atol=1e-14
            ),
            sa.u, ref.u, sa.w, ref.w,
        )  # fmt: skip
        if beta == 0.0:
            assert not any(_changed(sa.u, ref.u))


def test_large_beta_keeps_u_and_w_together(x64):
    u, w, alpha, bp, ba = _setup(2)
    gap0 = float(sq_distance(u, w))

    def gap_after(beta, steps=40):
        eta = 0.5 / beta if beta else 0.5 / 1000.0  # same small steps for beta = 0
        txs = dict(tx_u=optax.sgd(eta), tx_w=optax.sgd(eta), tx_alpha=optax.sgd(0.01))
        step = jax.jit(
            make_rarts_step(loss_p=_model_loss, loss_a=_model_loss, lam=1.0, beta=beta, **txs)
        )
        s = rarts_init(u, w, alpha, **txs)
        for _ in range(steps):
            s, _ = step(s, bp, ba)
        return float(sq_distance(s.u, s.w))

    assert gap_after(1000.0) < 1e-6 * gap0
    assert gap_after(0.0) > 0.5 * gap0


def test_aux_is_threaded_per_copy(x64):
    """has_aux: u's aux sees only D_p batches, w's only D_a (like separate BN statistics);
    the iterates are those of the aux-free step."""
    u, w, alpha, bp, ba = _setup(3)

    def loss_aux(params, a, batch, aux):
        stats = {"mean": 0.9 * aux["mean"] + 0.1 * jnp.mean(batch[0], 0), "n": aux["n"] + 1}
        return _model_loss(params, a, batch), stats

    aux0 = {"mean": jnp.zeros(3), "n": jnp.zeros((), jnp.int32)}
    txs = dict(tx_u=optax.sgd(0.05), tx_w=optax.sgd(0.05), tx_alpha=optax.sgd(0.05))
    kw = dict(lam=2.0, beta=1.0, **txs)
    s_aux = rarts_init(u, w, alpha, u_aux=aux0, **txs)
    s_plain = rarts_init(u, w, alpha, **txs)
    step_aux = jax.jit(make_rarts_step(loss_p=loss_aux, loss_a=loss_aux, has_aux=True, **kw))
    step_plain = jax.jit(make_rarts_step(loss_p=_model_loss, loss_a=_model_loss, **kw))
    for _ in range(3):
        s_aux, info = step_aux(s_aux, bp, ba)
        s_plain, _ = step_plain(s_plain, bp, ba)
    decay = 1 - 0.9**3
    np.testing.assert_allclose(s_aux.u_aux["mean"], decay * jnp.mean(bp[0], 0), rtol=1e-12)
    np.testing.assert_allclose(s_aux.w_aux["mean"], decay * jnp.mean(ba[0], 0), rtol=1e-12)
    assert int(s_aux.u_aux["n"]) == 3 and int(s_aux.w_aux["n"]) == 3  # weight steps only
    # the alpha-step evaluates at the updated aux; its output is reported, not kept
    assert int(info.alpha_aux_p["n"]) == 4 and int(info.alpha_aux_a["n"]) == 4
    for a, b in ((s_aux.u, s_plain.u), (s_aux.w, s_plain.w), (s_aux.alpha, s_plain.alpha)):
        jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-13), a, b)


def test_grad_through_a_scan_of_steps(x64):
    """d/d(alpha0, lam) of L_p after 3 steps (momentum SGD, Adam inside) vs finite differences."""
    u, w, alpha, bp, ba = _setup(4)
    txs = dict(tx_u=optax.sgd(0.05, momentum=0.9), tx_w=optax.sgd(0.05), tx_alpha=optax.adam(0.01))

    def objective(a0, lam):
        step = make_rarts_step(
            loss_p=_model_loss, loss_a=_model_loss, lam=lam, beta=1.0, gamma=0.1, penalty=_penalty,
            **txs,
        )  # fmt: skip
        s, _ = jax.lax.scan(lambda s, _: step(s, bp, ba), rarts_init(u, w, a0, **txs), length=3)
        return _model_loss(s.u, s.alpha, bp)

    lam0 = jnp.asarray(2.0)
    g_a, g_lam = jax.jit(jax.grad(objective, argnums=(0, 1)))(alpha, lam0)
    objective = jax.jit(objective)
    eps = 1e-6
    fd_lam = (objective(alpha, lam0 + eps) - objective(alpha, lam0 - eps)) / (2 * eps)
    np.testing.assert_allclose(g_lam, fd_lam, rtol=1e-6)
    leaves, treedef = jax.tree.flatten(alpha)
    for i, leaf in enumerate(leaves):
        for j in np.ndindex(leaf.shape):
            bumped = lambda d, i=i, j=j: treedef.unflatten(
                [x.at[j].add(d) if k == i else x for k, x in enumerate(leaves)]
            )
            fd = (objective(bumped(eps), lam0) - objective(bumped(-eps), lam0)) / (2 * eps)
            np.testing.assert_allclose(jax.tree.leaves(g_a)[i][j], fd, rtol=1e-5, atol=1e-9)


def test_state_is_a_pytree_and_validates_structure(x64):
    u, w, alpha, bp, ba = _setup(5)
    txs = dict(tx_u=optax.sgd(0.1), tx_w=optax.sgd(0.1), tx_alpha=optax.sgd(0.1))
    s = rarts_init(u, None, alpha, **txs)  # w starts as a copy of u
    assert isinstance(s, RARTSState) and sq_distance(s.u, s.w) == 0
    s2, _ = jax.jit(lambda s: rarts_step(s, bp, ba, loss_p=_model_loss, loss_a=_model_loss,
                                         lam=1.0, beta=1.0, **txs))(s)  # fmt: skip
    assert jax.tree.structure(s2) == jax.tree.structure(s)
    with pytest.raises(ValueError, match="same tree structure"):
        rarts_init(u, {"enc": w["enc"]}, alpha, **txs)
