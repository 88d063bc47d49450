"""jaxnas.curvature: HVPs, exact Hessians, GGN diagonals, BayesNAS App. C recursions.

Closed-form comparisons run in float64 (``x64`` fixture).  Digest checks T8
(layer formulas vs ``jax.hessian``) and T9 (Monte-Carlo GGN unbiasedness).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnas import curvature as cv


def _rand(seed, *shape):
    """Test data from numpy (no XLA compile per shape); float64 under ``x64``."""
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape))


def _mse(sigma2=1.0):
    return lambda z, y: 0.5 * jnp.sum(jnp.square(z - y)) / sigma2


def _ce_mean(z, y):
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(z), y[:, None], axis=1))


# ----------------------------------------------------------------- HVP / Hessian


def test_hvp_and_hessian_diag_on_pytree(x64):
    params = {"a": _rand(0, 3), "b": _rand(1, 2, 2)}

    def f(p, c):
        return jnp.sum(jnp.sin(p["a"]) ** 2) * jnp.sum(p["b"] ** 3) + c * jnp.prod(p["a"])

    v = {"a": _rand(2, 3), "b": _rand(3, 2, 2)}
    flat_v = jax.flatten_util.ravel_pytree(v)[0]
    full = jax.jit(lambda p: cv.hessian(f, p, 0.7))(params)
    assert full.shape == (7, 7)
    np.testing.assert_allclose(full, full.T, atol=1e-12)
    hv = jax.jit(lambda p, t: cv.hvp(f, p, t, 0.7))(params, v)
    np.testing.assert_allclose(jax.flatten_util.ravel_pytree(hv)[0], full @ flat_v, rtol=1e-10)
    d = jax.jit(lambda p: cv.hessian_diag(f, p, 0.7))(params)
    assert jax.tree.structure(d) == jax.tree.structure(params)
    np.testing.assert_allclose(jax.flatten_util.ravel_pytree(d)[0], jnp.diagonal(full))
    # the diagonal entry of one coordinate by finite differences of the gradient
    eps = 1e-5
    e0 = {"a": jnp.zeros(3).at[0].set(eps), "b": jnp.zeros((2, 2))}
    g = jax.jit(jax.grad(f))
    fd = (
        g(jax.tree.map(jnp.add, params, e0), 0.7)["a"][0]
        - g(jax.tree.map(jnp.subtract, params, e0), 0.7)["a"][0]
    ) / (2 * eps)
    np.testing.assert_allclose(d["a"][0], fd, rtol=1e-6)


def test_size_limit_refuses_with_one_line():
    params = {"w": jnp.zeros((30, 30))}
    f = lambda p: jnp.sum(p["w"] ** 4)
    with pytest.raises(ValueError, match="900 parameters exceed max_params=100") as e:
        cv.hessian_diag(f, params, max_params=100)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="max_params"):
        cv.hessian(f, params, max_params=899)
    small = jax.jit(lambda p: cv.hessian_diag(f, p, max_params=3))({"w": jnp.ones(3)})
    np.testing.assert_allclose(small["w"], 12.0)  # at the limit it computes
    # the per-example-Jacobian GGN refuses too
    x = jnp.ones((8, 30))
    with pytest.raises(ValueError, match="ggn_diag_exact: the Jacobian has N\\*K\\*P") as e:
        cv.ggn_diag_exact(
            lambda p: x @ p["w"], params, lambda z: jnp.sum(z**2), max_jacobian_entries=1000
        )
    assert "\n" not in str(e.value)


def test_hutchinson_is_unbiased(x64):
    params = _rand(0, 6)
    f = lambda p: jnp.sum(jnp.cos(p) * p**2) + jnp.sum(p) ** 2
    exact = jax.jit(lambda p: cv.hessian_diag(f, p))(params)
    keys = jax.random.split(jax.random.key(1), 2000)
    samples = jax.jit(jax.vmap(lambda k: cv.hutchinson_diag(f, params, k)))(keys)
    mean, se = samples.mean(0), samples.std(0) / np.sqrt(len(keys))
    assert np.all(np.abs(mean - exact) <= 5 * se + 1e-12)
    avg = jax.jit(lambda k: cv.hutchinson_diag(f, params, k, num_samples=2000, probe_batch=500))(
        jax.random.key(2)
    )
    assert np.all(np.abs(avg - exact) <= 5 * se + 1e-12)  # the chunked average


# ------------------------------------------------------------------------ GGN


def test_output_hessian_blocks_match_jax_hessian(x64):
    z = _rand(0, 4, 3)
    y = jnp.array([0, 2, 1, 1])
    loss = lambda zz: _ce_mean(zz, y)
    blocks = jax.jit(lambda zz: cv.output_hessian_blocks(loss, zz))(z)
    full = jax.jit(jax.hessian(loss))(z)  # (4, 3, 4, 3)
    full = np.asarray(full)
    for n in range(4):
        np.testing.assert_allclose(blocks[n], full[n, :, n, :], atol=1e-14)
    zn = np.asarray(z)
    p = np.exp(zn) / np.exp(zn).sum(1, keepdims=True)
    expected = np.stack([np.diag(pn) - np.outer(pn, pn) for pn in p]) / 4
    np.testing.assert_allclose(blocks, expected, atol=1e-14)


@pytest.mark.parametrize("loss", ["mse", "ce"])
def test_ggn_equals_hessian_for_linear_models(x64, loss):
    """Outputs linear in the parameters: the GGN is the Hessian."""
    x, n, k = _rand(0, 7, 4), 7, 3
    params = {"w": _rand(1, 4, k), "b": _rand(2, k)}
    model = lambda p: x @ p["w"] + p["b"]
    y = jnp.arange(n) % k
    if loss == "mse":
        t = _rand(3, n, k)
        loss_fn = lambda z: _mse(0.3)(z, t)
    else:
        loss_fn = lambda z: _ce_mean(z, y)
    ggn = jax.jit(lambda p: cv.ggn_diag_exact(model, p, loss_fn))(params)
    hd = jax.jit(lambda p: cv.hessian_diag(lambda q: loss_fn(model(q)), p))(params)
    for key in params:
        np.testing.assert_allclose(ggn[key], hd[key], rtol=1e-10, atol=1e-14)
    if loss == "mse":  # closed form: sum_n x_ni^2 / sigma2
        np.testing.assert_allclose(ggn["w"], jnp.sum(x**2, 0)[:, None] / 0.3 * jnp.ones(k))


def _mlp(p, x):
    return jnp.tanh(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]


def test_ggn_equals_hessian_on_last_layer_only(x64):
    x, y = _rand(0, 6, 3), jnp.array([0, 1, 2, 0, 1, 2])
    params = {"w1": _rand(1, 3, 4), "b1": _rand(2, 4), "w2": _rand(3, 4, 3), "b2": _rand(4, 3)}
    loss_fn = lambda z: _ce_mean(z, y)
    ggn, hd = jax.jit(
        lambda p: (
            cv.ggn_diag_exact(lambda q: _mlp(q, x), p, loss_fn),
            cv.hessian_diag(lambda q: loss_fn(_mlp(q, x)), p),
        )
    )(params)
    for key in ("w2", "b2"):
        np.testing.assert_allclose(ggn[key], hd[key], rtol=1e-10, atol=1e-14)
    # the first layer's GGN is not its Hessian (tanh's curvature term is dropped) ...
    assert not np.allclose(ggn["w1"], hd["w1"], rtol=1e-3)
    # ... and the GGN is non-negative
    assert all(np.all(np.asarray(v) >= 0) for v in jax.tree.leaves(ggn))


def _mc_check(samples, exact, rel=0.1):
    """Unbiasedness: every coordinate within 5 standard errors, and the mean
    relative error small enough that a mis-scaled estimator would fail."""
    samples, exact = np.asarray(samples), np.asarray(exact)
    mean = samples.mean(0)
    se = samples.std(0, ddof=1) / np.sqrt(samples.shape[0])
    assert np.all(samples >= 0)
    assert np.all(np.abs(mean - exact) <= 5 * se + 1e-12 * np.abs(exact).max())
    big = exact > 1e-3 * exact.max()
    assert np.median(np.abs(mean[big] / exact[big] - 1)) < rel


@pytest.mark.parametrize(
    "noise", ["rademacher", "label", pytest.param("gaussian", marks=pytest.mark.slow)]
)
def test_ggn_mc_is_unbiased_cross_entropy(x64, noise):
    """T9: a tiny CE classifier (24 parameters); E[u^2] = exact GGN diagonal."""
    x = _rand(0, 6, 3)
    y = jnp.array([0, 1, 2, 0, 1, 2])
    params = {"w1": _rand(1, 3, 3), "b1": _rand(2, 3), "w2": _rand(3, 3, 3), "b2": _rand(4, 3)}
    model = lambda p: _mlp(p, x)
    exact = jax.jit(
        lambda p: jax.flatten_util.ravel_pytree(
            cv.ggn_diag_exact(model, p, lambda z: _ce_mean(z, y))
        )[0]
    )(params)
    sampler = cv.cross_entropy_sampler("mean", noise=noise)
    keys = jax.random.split(jax.random.key(7), 4000)
    one = jax.jit(
        jax.vmap(
            lambda k: jax.flatten_util.ravel_pytree(cv.ggn_diag_mc(model, params, k, sampler))[0]
        )
    )
    _mc_check(one(keys), exact)


def _small_regression():
    x = _rand(0, 5, 4)
    params = {"w": _rand(1, 4, 2), "v": _rand(2, 2)}
    model = lambda p: jnp.tanh(x @ p["w"]) * p["v"]
    t = _rand(3, 5, 2)
    # squared error with mean reduction, sigma2 = 0.5
    loss = lambda z: 0.5 * jnp.mean(jnp.sum((z - t) ** 2, -1)) / 0.5
    return params, model, loss


def _flat(tree):
    return jax.flatten_util.ravel_pytree(tree)[0]


def _probes(model, params, sampler, seed, n):
    """``n`` one-probe estimates (one key each), vmapped."""
    keys = jax.random.split(jax.random.key(seed), n)
    return jax.vmap(lambda k: _flat(cv.ggn_diag_mc(model, params, k, sampler)))(keys)


@pytest.mark.slow
def test_ggn_mc_generic_sampler(x64):
    """The eigen-decomposition sampler for any separable loss: a quadratic one
    and a non-quadratic one with non-diagonal output blocks."""
    params, model, loss = _small_regression()
    loss2 = lambda z: jnp.sum(jnp.logaddexp(0.0, z @ jnp.array([[1.0], [-2.0]]) - 0.3))

    @jax.jit
    def run():
        return (
            _flat(cv.ggn_diag_exact(model, params, loss)),
            _flat(cv.ggn_diag_exact(model, params, loss2)),
            _probes(model, params, cv.sampler_from_loss(loss), 3, 3000),
            _probes(model, params, cv.sampler_from_loss(loss2), 4, 3000),
        )

    exact, exact2, s_gen, s_gen2 = run()
    _mc_check(s_gen, exact)
    _mc_check(s_gen2, exact2)


def test_ggn_mc_squared_error_and_probe_batches(x64):
    params, model, loss = _small_regression()

    @jax.jit
    def run():
        return (
            _flat(cv.ggn_diag_exact(model, params, loss)),
            _probes(model, params, cv.squared_error_sampler(0.5, reduction="mean"), 3, 3000),
        )

    exact, s_sq = run()
    _mc_check(s_sq, exact)

    # num_samples > 1, all vmapped or in chunks of probe_batch: the mean over the same probes
    sampler = cv.squared_error_sampler(0.5, reduction="mean")

    @jax.jit
    def scan_vs_manual(p, key):
        avg = cv.ggn_diag_mc(model, p, key, sampler, num_samples=64)
        chunked = cv.ggn_diag_mc(model, p, key, sampler, num_samples=64, probe_batch=16)
        z, vjp = jax.vjp(model, p)
        per = jax.vmap(lambda k: jax.tree.map(jnp.square, vjp(sampler(z, k))[0]))(
            jax.random.split(key, 64)
        )
        return avg, chunked, jax.tree.map(lambda a: a.mean(0), per)

    avg, chunked, manual = scan_vs_manual(params, jax.random.key(5))
    for key in params:
        np.testing.assert_allclose(avg[key], manual[key], rtol=1e-10)
        np.testing.assert_allclose(chunked[key], manual[key], rtol=1e-10)
    with pytest.raises(ValueError, match="not a multiple of probe_batch"):
        cv.ggn_diag_mc(model, params, jax.random.key(5), sampler, num_samples=10, probe_batch=4)


# ------------------------------------------------ T8: BayesNAS App. C formulas


def test_gate_hessian_exact_and_meanfield(x64):
    """(a) a scalar gate on a tensor under squared error: H_w = sum b^2 h."""
    b, c, t = _rand(0, 3, 4, 4, 2), _rand(1, 3, 4, 4, 2), _rand(2, 3, 4, 4, 2)
    sigma2 = 0.25
    h = jnp.full(b.shape, 1 / sigma2)
    bs = 0.7 * jnp.sign(b)
    u = _rand(3, 5)

    @jax.jit
    def run():
        f = lambda w, bb: _mse(sigma2)(w * bb + c, t)
        g = lambda uu: _mse(sigma2)(1.3 * uu, t[0, 0, 0, 0])
        return dict(
            exact=jax.hessian(f)(1.3, b),
            exact_s=jax.hessian(f)(0.2, bs),
            rec=cv.gate_hessian(b, h),
            rec_mean=cv.gate_hessian(b, h, reduction="mean"),
            mf_s=cv.gate_hessian(bs, h, approx="meanfield"),
            mf=cv.gate_hessian(b, h, approx="meanfield"),
            pre=cv.gate_pre_hessian(jnp.full(5, 1 / sigma2), 1.3),
            pre_exact=jnp.diag(jax.hessian(g)(u)),
        )

    r = run()
    np.testing.assert_allclose(r["rec"], r["exact"], rtol=1e-12)
    np.testing.assert_allclose(r["rec_mean"], r["exact"] / 3, rtol=1e-12)
    # (C.3.2) is exact when |b| is constant, and smaller otherwise (E|b|^2 <= E b^2)
    np.testing.assert_allclose(r["mf_s"], r["exact_s"], rtol=1e-12)
    assert r["mf"] < 0.95 * r["exact"]
    # (C.3.1) the pre-Hessian behind the gate: d^2/du^2 L(w u) = w^2 h
    np.testing.assert_allclose(r["pre"], r["pre_exact"], rtol=1e-12)


@pytest.mark.parametrize("loss", ["mse", "ce"])
def test_dense_weight_hessian_exact(x64, loss):
    """(b) one dense layer: (C.1.4) sum_n a_n^2 (x) H_n is the exact diagonal
    for any separable loss when H_n is the diagonal of the output Hessian."""
    a, y, t = _rand(0, 6, 4), jnp.array([0, 1, 2, 0, 1, 1]), _rand(1, 6, 3)
    kernel = _rand(2, 4, 3)
    loss_fn = (lambda z: _mse(0.5)(z, t)) if loss == "mse" else (lambda z: _ce_mean(z, y))

    @jax.jit
    def run(k):
        z = a @ k
        h = (
            jnp.full(z.shape, 2.0)
            if loss == "mse"
            else cv.softmax_cross_entropy_hessian_diag(z, reduction="mean")
        )
        return cv.dense_weight_hessian(a, h), cv.hessian_diag(lambda kk: loss_fn(a @ kk), k)

    rec, exact = run(kernel)
    np.testing.assert_allclose(rec, exact, rtol=1e-12)


def _dtanh(u):
    return 1 - jnp.tanh(u) ** 2


def _d2tanh(u):
    return -2 * jnp.tanh(u) * (1 - jnp.tanh(u) ** 2)


@pytest.mark.parametrize("act", ["relu", "tanh"])
def test_dense_recursion_two_layers(x64, act):
    """(d) 2-layer MLPs under squared error: the output Hessian is diagonal, so
    the recursion (C.1.4)-(C.1.5) gives the exact Hessian diagonal of both
    layers -- for tanh only with the D term sigma'' dL/da."""
    x, t = _rand(0, 8, 3), _rand(1, 8, 2)
    w1, w2 = _rand(2, 3, 5), _rand(3, 5, 2)
    sigma2 = 0.5
    sig, d1, d2 = {
        "relu": (jax.nn.relu, lambda u: (u > 0).astype(u.dtype), jnp.zeros_like),
        "tanh": (jnp.tanh, _dtanh, _d2tanh),
    }[act]

    @jax.jit
    def run(w1, w2):
        exact = cv.hessian_diag(lambda p: _mse(sigma2)(sig(x @ p[0]) @ p[1], t), (w1, w2))
        u = x @ w1
        a1 = sig(u)
        z = a1 @ w2
        h2 = jnp.full(z.shape, 1 / sigma2)
        dl_da = ((z - t) / sigma2) @ w2.T
        h1 = cv.dense_pre_hessian(h2, w2, act_deriv=d1(u), act_curv=d2(u) * dl_da)
        h1_gn = cv.dense_pre_hessian(h2, w2, act_deriv=d1(u))
        rec = (cv.dense_weight_hessian(x, h1), cv.dense_weight_hessian(a1, h2))
        return exact, rec, cv.dense_weight_hessian(x, h1_gn)

    exact, rec, rec_gn = run(w1, w2)
    np.testing.assert_allclose(rec[1], exact[1], rtol=1e-10)
    np.testing.assert_allclose(rec[0], exact[0], rtol=1e-10)
    if act == "tanh":  # without D the tanh recursion is off
        assert not np.allclose(rec_gn, exact[0], rtol=1e-3)


def test_dense_recursion_three_layer_relu_ce(x64):
    """(d) 3-layer ReLU net with CE: last layer exact; earlier layers are a
    non-negative approximation of the GGN diagonal, strongly correlated."""
    x, y = _rand(0, 16, 4), jnp.arange(16) % 3
    p = (_rand(1, 4, 6), _rand(2, 6, 6), _rand(3, 6, 3))
    relu = jax.nn.relu

    @jax.jit
    def run(p):
        model = lambda q: relu(relu(x @ q[0]) @ q[1]) @ q[2]
        ggn = cv.ggn_diag_exact(model, p, lambda z: _ce_mean(z, y))
        u1 = x @ p[0]
        a1 = relu(u1)
        u2 = a1 @ p[1]
        a2 = relu(u2)
        h3 = cv.softmax_cross_entropy_hessian_diag(a2 @ p[2])
        h2 = cv.dense_pre_hessian(h3, p[2], act_deriv=(u2 > 0) * 1.0)
        h1 = cv.dense_pre_hessian(h2, p[1], act_deriv=(u1 > 0) * 1.0)
        rec = (
            cv.dense_weight_hessian(x, h1),
            cv.dense_weight_hessian(a1, h2),
            cv.dense_weight_hessian(a2, h3),
        )
        return ggn, rec

    ggn, rec = run(p)
    np.testing.assert_allclose(rec[2], ggn[2], rtol=1e-10)
    for r, g in zip(rec[:2], ggn[:2]):
        assert np.all(np.asarray(r) >= 0)
        assert np.corrcoef(np.ravel(r), np.ravel(g))[0, 1] > 0.8


def _conv(x, k, strides, padding, dilation=(1, 1)):
    return jax.lax.conv_general_dilated(
        x, k, strides, padding, rhs_dilation=dilation, dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


@pytest.mark.parametrize(
    "strides,padding,dilation",
    [((1, 1), "SAME", (1, 1)), ((2, 2), "VALID", (1, 1)), ((1, 2), ((1, 2), (0, 1)), (2, 1))],
)
def test_conv_weight_hessian_exact(x64, strides, padding, dilation):
    """(c) one conv layer under squared error: the im2col rows (C.2.1) summed
    give the exact diagonal; (C.2.3) is that divided by b*Ho*Wo; (C.2.4) is
    exact for a constant output Hessian."""
    x = _rand(0, 2, 6, 5, 3)
    kernel = _rand(1, 3, 2, 3, 4)
    conv = lambda k: _conv(x, k, strides, padding, dilation)
    z = conv(kernel)
    t, wts = _rand(2, *z.shape), jnp.exp(_rand(3, *z.shape))
    sigma2 = 0.5
    kw = dict(strides=strides, padding=padding, dilation=dilation)
    rows = z.shape[0] * z.shape[1] * z.shape[2]

    @jax.jit
    def run(k):
        h = jnp.full(z.shape, 1 / sigma2)
        # a position-dependent diagonal output Hessian: weighted squared error
        weighted = lambda kk: 0.5 * jnp.sum(wts * (conv(kk) - t) ** 2)
        return dict(
            exact=cv.hessian_diag(lambda kk: _mse(sigma2)(conv(kk), t), k),
            rows=cv.conv_weight_hessian(x, h, (3, 2), **kw),
            mean=cv.conv_weight_hessian(x, h, (3, 2), reduction="mean", **kw),
            meanfield=cv.conv_weight_hessian(x, h, (3, 2), approx="meanfield", **kw),
            exact_w=cv.hessian_diag(weighted, k),
            rows_w=cv.conv_weight_hessian(x, wts, (3, 2), **kw),
        )

    r = run(kernel)
    assert r["rows"].shape == kernel.shape
    np.testing.assert_allclose(r["rows"], r["exact"], rtol=1e-12)
    np.testing.assert_allclose(r["mean"], r["exact"] / rows, rtol=1e-12)
    np.testing.assert_allclose(r["meanfield"], r["exact"], rtol=1e-12)
    np.testing.assert_allclose(r["rows_w"], r["exact_w"], rtol=1e-12)


@pytest.mark.parametrize("strides", [(1, 1), (2, 2)])
def test_conv_pre_hessian_exact_for_input(x64, strides):
    """(C.2.2) + col2im: the diagonal of the Hessian w.r.t. the conv's
    pre-activation input is exact for a diagonal output Hessian, D term included."""
    u = _rand(0, 2, 5, 5, 2)
    kernel = _rand(1, 3, 3, 2, 3)
    conv = lambda a: _conv(a, kernel, strides, "SAME")
    t = _rand(2, *conv(u).shape)
    sigma2 = 0.5

    @jax.jit
    def run(u):
        loss = lambda uu: _mse(sigma2)(conv(jnp.tanh(uu)), t)
        exact = cv.hessian_diag(loss, u)
        th = jnp.tanh(u)
        h = jnp.full(conv(th).shape, 1 / sigma2)
        dl_da = jax.grad(lambda a: _mse(sigma2)(conv(a), t))(th)
        got = cv.conv_pre_hessian(
            h,
            kernel,
            u.shape,
            strides=strides,
            padding="SAME",
            act_deriv=_dtanh(u),
            act_curv=_d2tanh(u) * dl_da,
        )
        return exact, got

    exact, got = run(u)
    np.testing.assert_allclose(got, exact, rtol=1e-10, atol=1e-12)
