"""Hard-concrete gates (jaxnas.gates): support, Theorem 3 closed forms, pathwise gradient,
straight-through and deterministic gates, two-op selection."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnas import gates

LN11 = math.log(11.0)


def test_log_odds_shift_and_bad_limits():
    assert gates.log_odds_shift() == pytest.approx(LN11, abs=1e-12)
    with pytest.raises(ValueError):
        gates.log_odds_shift(0.1, 1.1)
    with pytest.raises(ValueError):
        gates.p_one(0.0, 1.0, -0.1, 0.9)


def test_samples_lie_in_unit_interval():
    beta = jnp.linspace(-3.0, 3.0, 7)[:, None] * jnp.ones((7, 4000))
    for i, tau in enumerate((0.1, 0.5, 1.0, 10.0)):
        g = gates.sample_hard_concrete(jax.random.key(i), beta, tau)
        assert g.shape == beta.shape and g.dtype == beta.dtype
        assert float(g.min()) >= 0.0 and float(g.max()) <= 1.0
        if tau <= 1.0:  # exact zeros and ones occur
            assert float(jnp.mean(g == 0.0)) > 0.0 and float(jnp.mean(g == 1.0)) > 0.0
        else:  # tau = 10: g ~ 0.5 + 0.03 beta, never clipped for |beta| <= 3
            assert not bool(jnp.any((g == 0.0) | (g == 1.0)))
            assert float(jnp.std(g[3])) == pytest.approx(0.054, abs=0.005)


def test_reference_values(x64):
    """Digest Sec. 9 item 2 / 9.2 reference values of the closed forms."""
    cases = [  # (beta, tau, P(g != 0), P(g == 1))
        (0.0, 0.1, 0.5596618, 0.4403382),
        (0.0, 1.0, 11 / 12, 1 / 12),
        (-1.0, 0.5, 0.5496, 0.0998),
    ]
    for beta, tau, pnz, p1 in cases:
        assert float(gates.p_nonzero(jnp.float64(beta), tau)) == pytest.approx(pnz, abs=1e-4)
        assert float(gates.p_one(jnp.float64(beta), tau)) == pytest.approx(p1, abs=1e-4)
    assert float(gates.p_nonzero(0.0, 0.1)) == pytest.approx(0.5596618, abs=1e-7)


def test_theorem3_closed_forms_match_monte_carlo(x64):
    """Frequencies of g != 0 and g == 1 match sigmoid(beta +- tau ln 11).

    N samples per cell; each frequency is Binomial(N, p)/N, so a 5-sigma band
    sqrt(p(1-p)/N) * 5 gives a family-wise false-alarm rate ~1e-5 over the 40 checks
    (and the seed is fixed, so the test is deterministic).
    """
    n = 200_000
    betas = jnp.array([-3.0, -1.0, 0.0, 1.0, 3.0], jnp.float64)
    for i, tau in enumerate((0.1, 0.5, 1.0, 10.0)):
        g = gates.sample_hard_concrete(
            jax.random.key(100 + i), betas[:, None] * jnp.ones((1, n)), tau
        )
        for freq, p in (
            (jnp.mean(g != 0.0, axis=1), gates.p_nonzero(betas, tau)),
            (jnp.mean(g == 1.0, axis=1), gates.p_one(betas, tau)),
        ):
            sigma = np.sqrt(np.asarray(p * (1 - p)) / n)
            np.testing.assert_array_less(np.abs(np.asarray(freq - p)), 5 * sigma + 1e-12)


def test_corrected_theorem3_intervals(x64):
    """g = 0 iff g_bar <= -a/(b-a); g = 1 iff g_bar >= (1-a)/(b-a) (intervals in g_bar)."""
    a, b = gates.A, gates.B
    noise = gates.logistic_noise(jax.random.key(3), (50_000,), jnp.float64)
    g_bar = gates.concrete(0.2, noise, 0.7)
    g = gates.hard_concrete(0.2, noise, 0.7)
    lo, hi = -a / (b - a), (1 - a) / (b - a)
    np.testing.assert_array_equal(np.asarray(g == 0), np.asarray(g_bar <= lo))
    np.testing.assert_array_equal(np.asarray(g == 1), np.asarray(g_bar >= hi))
    inside = (g_bar > lo) & (g_bar < hi)
    np.testing.assert_allclose(g[inside], a + (b - a) * g_bar[inside], rtol=1e-12)


def test_small_tau_recovers_bernoulli(x64):
    n = 100_000
    betas = jnp.array([-1.5, 0.0, 0.7])
    g = gates.sample_hard_concrete(jax.random.key(7), betas[:, None] * jnp.ones((1, n)), 1e-3)
    assert float(jnp.mean((g > 0) & (g < 1))) < 2e-3  # essentially binary
    p = jax.nn.sigmoid(betas)
    sigma = np.sqrt(np.asarray(p * (1 - p)) / n)
    np.testing.assert_array_less(np.abs(np.asarray(jnp.mean(g == 1, axis=1) - p)), 5 * sigma)


def test_symmetry_about_one_half(x64):
    """With a + b = 1: g(beta, L) + g(-beta, -L) = 1 pathwise, so E[g](b) + E[g](-b) = 1."""
    noise = gates.logistic_noise(jax.random.key(11), (10_000,), jnp.float64)
    for beta, tau in ((0.0, 0.1), (1.3, 0.5), (-2.0, 2.0)):
        total = gates.hard_concrete(beta, noise, tau) + gates.hard_concrete(-beta, -noise, tau)
        np.testing.assert_allclose(total, 1.0, atol=1e-12)
    g0 = gates.sample_hard_concrete(jax.random.key(12), jnp.zeros(200_000), 0.3)
    assert float(g0.mean()) == pytest.approx(0.5, abs=5 * 0.5 / np.sqrt(200_000))


def test_pathwise_gradient_per_sample(x64):
    """dg/dbeta = (b - a) g_bar (1 - g_bar) / tau inside the stretch, exactly 0 where clipped."""
    a, b, tau = gates.A, gates.B, 0.4
    noise = gates.logistic_noise(jax.random.key(5), (4000,), jnp.float64)
    beta = 0.3 * jnp.ones(4000)
    grad = jax.jit(jax.vmap(jax.grad(lambda bb, nz: gates.hard_concrete(bb, nz, tau))))(beta, noise)
    g_bar = gates.concrete(beta, noise, tau)
    g_tilde = a + (b - a) * g_bar
    inside = (g_tilde > 0) & (g_tilde < 1)
    assert 0 < int(inside.sum()) < 4000  # both regimes are exercised
    np.testing.assert_allclose(
        grad[inside], ((b - a) * g_bar * (1 - g_bar) / tau)[inside], rtol=1e-10
    )
    assert bool(jnp.all(grad[~inside] == 0.0))


def test_pathwise_gradient_is_unbiased(x64):
    """MC mean of dg/dbeta matches a finite difference of E[g] computed by quadrature."""
    tau, beta, h = 0.5, 0.3, 1e-4
    u = (jnp.arange(400_000, dtype=jnp.float64) + 0.5) / 400_000  # midpoint rule in u

    def expected_g(bb):
        return jnp.mean(gates.hard_concrete(bb, jnp.log(u) - jnp.log1p(-u), tau))

    fd = (expected_g(beta + h) - expected_g(beta - h)) / (2 * h)
    noise = gates.logistic_noise(jax.random.key(9), (200_000,), jnp.float64)
    grads = jax.jit(jax.vmap(jax.grad(lambda bb, nz: gates.hard_concrete(bb, nz, tau)), (None, 0)))(
        beta, noise
    )
    se = float(jnp.std(grads)) / np.sqrt(grads.size)
    assert abs(float(grads.mean() - fd)) < 5 * se


def test_straight_through_is_bernoulli_with_pathwise_gradient(x64):
    n = 200_000
    for beta, tau in ((0.8, 10.0), (-0.5, 0.3)):
        z = gates.sample_binary_gate(jax.random.key(21), beta * jnp.ones(n), tau)
        assert set(np.unique(np.asarray(z))) <= {0.0, 1.0}
        p = float(jax.nn.sigmoid(beta))  # P(g > 1/2) = sigmoid(beta) at every tau
        assert float(z.mean()) == pytest.approx(p, abs=5 * np.sqrt(p * (1 - p) / n))
    noise = gates.logistic_noise(jax.random.key(22), (64,), jnp.float64)
    st = jax.jit(
        jax.vmap(jax.grad(lambda bb, nz: gates.straight_through(gates.hard_concrete(bb, nz, 0.5))))
    )
    hc = jax.jit(jax.vmap(jax.grad(lambda bb, nz: gates.hard_concrete(bb, nz, 0.5))))
    np.testing.assert_allclose(st(jnp.zeros(64), noise), hc(jnp.zeros(64), noise))


def test_deterministic_gate(x64):
    beta = jnp.linspace(-4, 4, 81)
    for tau in (0.1, 1.0, 10.0):
        g = gates.deterministic_gate(beta, tau)
        assert float(g.min()) >= 0 and float(g.max()) <= 1
        # the median of the hard-concrete distribution: the noise-free sample
        np.testing.assert_allclose(g, gates.hard_concrete(beta, jnp.zeros_like(beta), tau))
        assert bool(jnp.all(jnp.diff(g) >= 0))
    np.testing.assert_array_equal(
        gates.deterministic_gate(beta, 0.1, binary=True), (beta > 0).astype(beta.dtype)
    )


def test_tau_is_traced_no_recompile():
    traces = []

    def f(key, beta, tau):
        traces.append(1)
        return gates.sample_two_ops(key, beta, tau, mode="code").weights.sum()

    f = jax.jit(f)
    beta = jnp.zeros((14, 8))
    for tau in (10.0, 5.0, 0.1):
        f(jax.random.key(0), beta, tau)
    assert len(traces) == 1


N_KEYS = 2000
KEYS = jax.random.split(jax.random.key(5), N_KEYS)


@functools.partial(jax.jit, static_argnames=("mode",))
def _samples(keys, beta, tau, mode="paper", drop_prob=0.4):
    """sample_two_ops for many keys; one compiled program per mode (tau, drop_prob traced)."""
    return jax.vmap(lambda k: gates.sample_two_ops(k, beta, tau, mode=mode, drop_prob=drop_prob))(
        keys
    )


def _np_samples(keys, beta, tau, mode="paper", drop_prob=0.4) -> gates.OpSample:
    """:func:`_samples` as numpy arrays (checks below run in numpy: no eager XLA ops)."""
    out = _samples(keys, jnp.asarray(beta, jnp.float32), tau, mode=mode, drop_prob=drop_prob)
    return gates.OpSample(*(np.asarray(v) for v in out))


@pytest.mark.parametrize("mode", ["paper", "code"])
def test_two_ops_per_edge(mode):
    beta = jnp.asarray(0.5 * np.random.default_rng(1).normal(size=(14, 8)), jnp.float32)
    sample = _np_samples(KEYS, beta, 0.5, mode=mode)
    assert sample.mask.shape == (N_KEYS, 14, 8)
    np.testing.assert_array_equal(sample.mask.sum(-1), 2.0)  # exactly two ops per edge
    assert np.all(sample.weights[sample.mask == 0] == 0.0)
    assert sample.gates.min() >= 0 and sample.gates.max() <= 1
    if mode == "code":  # straight-through: forward value exactly 1 on the kept ops
        np.testing.assert_array_equal(sample.weights, sample.mask)
        np.testing.assert_array_equal((sample.weights != 0).sum(-1), 2)
    else:  # the continuous gate on the selected ops
        np.testing.assert_array_equal(sample.weights, sample.mask * sample.gates)

    # gradient: only the selected ops, and there dg/dbeta = (b - a) g_bar (1 - g_bar) / tau
    key, tau = jax.random.key(3), 0.5
    coef = np.random.default_rng(4).normal(size=(14, 8)).astype(np.float32)

    @jax.jit
    def grad_and_sample(b):
        f = lambda bb: jnp.sum(coef * gates.sample_two_ops(key, bb, tau, mode=mode).weights)
        return jax.grad(f)(b), gates.sample_two_ops(key, b, tau, mode=mode)

    grad, s = jax.tree.map(np.asarray, grad_and_sample(beta))
    a, b = gates.A, gates.B
    g_bar = (s.gates - a) / (b - a)
    dg = np.where((s.gates > 0) & (s.gates < 1), (b - a) * g_bar * (1 - g_bar) / tau, 0.0)
    np.testing.assert_allclose(grad, coef * s.mask * dg, rtol=1e-4, atol=1e-6)


def test_paper_selection_is_uniform_and_code_selection_follows_gates():
    se = 5 * np.sqrt(0.25 * 0.75 / N_KEYS)
    beta = np.zeros((14, 8), np.float32)
    beta[:, 3] = 6.0  # beta does not matter to the paper's choice
    freq = _np_samples(KEYS, beta, 1.0).mask.mean(0)  # each op w.p. 2/8
    assert np.abs(freq - 0.25).max() < se

    # code, no drops: the top-2 by sampled gate (two ops strongly on, the rest off)
    beta = np.full((14, 8), -20.0, np.float32)
    beta[:, [4, 6]] = 20.0
    masks = _np_samples(KEYS, beta, 0.1, mode="code", drop_prob=0.0).mask
    expect = np.zeros((14, 8))
    expect[:, [4, 6]] = 1
    np.testing.assert_array_equal(masks, np.broadcast_to(expect, masks.shape))
    # ties (all gates exactly 0) are broken uniformly at random
    off = np.full((14, 8), -20.0, np.float32)
    masks = _np_samples(KEYS, off, 0.1, mode="code", drop_prob=0.0).mask
    assert np.abs(masks.mean(0) - 0.25).max() < se
    # drops demote ops: a dropped "on" op (gate 1 - 1 = 0) ties with the undropped "off"
    # ops (gate 0); ties are broken uniformly.  K = number of undropped off ops.
    masks = _np_samples(KEYS, beta, 0.1, mode="code").mask
    both = float(np.mean(masks[:, :, 4] * masks[:, :, 6]))
    ks = np.arange(7)
    pk = np.array([math.comb(6, k) * 0.6**k * 0.4 ** (6 - k) for k in ks])
    expect = 0.36 + 0.48 * np.sum(pk / (ks + 1)) + 0.16 * np.sum(pk * 2 / ((ks + 2) * (ks + 1)))
    assert both == pytest.approx(expect, abs=5 * np.sqrt(expect * (1 - expect) / (N_KEYS * 14)))


def test_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        gates.sample_two_ops(jax.random.key(0), jnp.zeros((14, 8)), 1.0, mode="x")
    with pytest.raises(ValueError, match="k must"):
        gates.sample_two_ops(jax.random.key(0), jnp.zeros((14, 8)), 1.0, k=9)
