"""jaxnas.bayes: BayesNAS's closed-form updates (digest checks T1-T7).

The key check (T3) runs Algorithm 1 on orthogonal linear-Gaussian problems,
where the sparse-Bayesian-learning fixed point is known in closed form.
"""

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnas import bayes
from jaxnas import curvature as cv
from jaxnas.spaces.darts import DARTS_CELL, CellTopology

THR = 1 / (2 * math.pi * math.e)


# ------------------------------------------------------------------ T1, T2


def test_omega_closed_form(x64):
    """T1: sqrt(gamma - C)/gamma = sqrt(-C/gamma^2 + 1/gamma) = sqrt(H/(1+gamma H))."""
    rng = np.random.default_rng(0)
    gamma = rng.uniform(0.01, 10, 200)
    h = rng.uniform(0, 50, 200)

    @jax.jit
    def run(gamma, h):
        z = jnp.zeros_like(gamma)
        return dict(
            c=bayes.posterior_variance(gamma, h),
            om=bayes.reweight(gamma, h),
            om_h0=bayes.reweight(gamma, z),  # H = 0 -> omega = 0 (no penalty)
            om_g0=bayes.reweight(z, h),  # gamma = 0 -> omega = sqrt(H), no NaN
            c_g0=bayes.posterior_variance(z, h),  # ... and C = 0
            om_tiny=bayes.reweight(jnp.full_like(gamma, 1e-12), h),
            om_neg=bayes.reweight(gamma, -h),  # negative H: clipped ...
            om_abs=bayes.reweight(gamma, -h, negative="abs"),  # ... or |H| (authors' code)
            tree=bayes.reweight({"a": gamma, "b": (gamma,)}, {"a": h, "b": (h,)}),
        )

    r = run(jnp.asarray(gamma), jnp.asarray(h))
    c = 1 / (1 / gamma + h)
    np.testing.assert_allclose(r["c"], c, rtol=1e-13)  # eq. 17
    np.testing.assert_allclose(r["om"], np.sqrt(gamma - c) / gamma, rtol=1e-9)  # eq. 18
    np.testing.assert_allclose(r["om"], np.sqrt(-c / gamma**2 + 1 / gamma), rtol=1e-9)
    assert np.all(np.asarray(r["om_h0"]) == 0)
    np.testing.assert_allclose(r["om_g0"], np.sqrt(h), rtol=1e-15)
    assert np.all(np.asarray(r["c_g0"]) == 0)
    np.testing.assert_allclose(r["om_tiny"], np.sqrt(h), rtol=1e-9)  # the limit
    assert np.all(np.asarray(r["om_neg"]) == 0)
    np.testing.assert_allclose(r["om_abs"], r["om"], rtol=1e-15)
    np.testing.assert_allclose(r["tree"]["b"][0], r["om"])


def test_entropy_threshold(x64):
    """T2: 1/2 ln(2 pi e gamma) <= 0 iff gamma <= 1/(2 pi e) = 0.0585498."""
    assert abs(bayes.ENTROPY_THRESHOLD - 0.0585498) < 1e-7
    np.testing.assert_allclose(bayes.entropy(jnp.array(THR)), 0.0, atol=1e-15)
    ent = bayes.entropy(jnp.array([0.0585, 0.0586]))
    np.testing.assert_allclose(ent, [-4.3e-4, 4.3e-4], atol=2e-5)
    assert bayes.keep_mask(jnp.array([0.0585, 0.0586, 0.0])).tolist() == [False, True, False]
    g = jnp.asarray(np.random.default_rng(1).uniform(0, 0.2, 1000))
    np.testing.assert_array_equal(bayes.keep_mask(g), bayes.entropy(g) > 0)


# ------------------------------------------------------------- T3, T4, T5


def _orthogonal_problem(s, q, sigma2=0.1, n=40, seed=0):
    """Phi (n, d) with orthogonal columns and y such that phi_i^T phi_i / sigma2 = S_i
    and phi_i^T y / sigma2 = Q_i (plus a residual orthogonal to all columns)."""
    s, q = np.asarray(s, float), np.asarray(q, float)
    d = len(s)
    u, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(n, n)))
    norms = np.sqrt(s * sigma2)
    phi = u[:, :d] * norms
    y = u[:, :d] @ (q * sigma2 / norms) + u[:, d:] @ np.random.default_rng(seed + 1).normal(
        size=n - d
    )
    return jnp.asarray(phi), jnp.asarray(y)


def _gamma_star(s, q, lam):
    g = np.maximum(0.0, (q**2 - lam * s) / s**2)
    return g, g * q / (lam + g * s)


def _sbl(phi, y, sigma2, lam, iters, order="alg1"):
    """Algorithm 1 (or 3's order) on E_D = |y - Phi w|^2 / (2 sigma2) with the
    exact lasso step, from gamma = omega = 1; returns the gamma and w paths."""
    e_d = lambda w: 0.5 * jnp.sum((y - phi @ w) ** 2) / sigma2
    d = phi.shape[1]
    w0 = jnp.zeros(d)
    hess = cv.hessian_diag(e_d, w0)  # S: E_D is quadratic, so H is constant
    lin = -jax.grad(e_d)(w0)  # Q

    def lasso(omega):  # argmin E_D/lam + sum omega |w|, exact for orthogonal Phi
        qq, hh = lin / lam, hess / lam
        return jnp.sign(qq) * jnp.maximum(jnp.abs(qq) - omega, 0.0) / hh

    def step(carry, _):
        gamma, omega = carry
        w = lasso(omega)  # step 1, with the omega of the previous update
        upd = bayes.sbl_update(w, hess, gamma, omega=omega, order=order, lam=lam)  # steps 2-3
        return (upd.gamma, upd.omega), (upd.gamma, w)

    _, (gammas, ws) = jax.lax.scan(step, (jnp.ones(d), jnp.ones(d)), None, length=iters)
    return gammas, ws, hess, lin


def _alg3_elementwise(phi, y, sigma2, lam, iters):
    """The same with compression_update (Algorithm 3, one-element groups)."""
    e_d = lambda w: 0.5 * jnp.sum((y - phi @ w) ** 2) / sigma2
    d = phi.shape[1]
    hess, lin = jnp.diag(phi.T @ phi) / sigma2, phi.T @ y / sigma2

    def step(st, _):
        w = jnp.sign(lin) * jnp.maximum(jnp.abs(lin / lam) - st.omega, 0.0) / (hess / lam)
        return bayes.compression_update(w, hess, st, (), lam=lam), None

    del e_d
    st, _ = jax.lax.scan(step, bayes.init_group_state((d,), (), phi.dtype), None, length=iters)
    return st.gamma


def _type2_cost(gamma, s, q):
    """-2 log marginal likelihood per coordinate (up to constants), scaled problem."""
    return jnp.log1p(gamma * s) - gamma * q**2 / (1 + gamma * s)


@jax.jit
def _sbl_1d(phi, y, lam):
    return _sbl(phi, y, 0.1, lam, 300)[:2]


@pytest.mark.parametrize(
    "q,s,lam,g_star,w_star",
    [(5.0, 4.0, 1.0, 1.3125, 1.05), (10.0, 2.0, 3.0, 23.5, 4.7), (1.9, 4.0, 1.0, 0.0, 0.0)],
)
def test_sbl_fixed_point_digest_examples(x64, q, s, lam, g_star, w_star):
    """T3 with the digest's worked examples (third: an exact zero)."""
    phi, y = _orthogonal_problem([s], [q], sigma2=0.1)
    gammas, ws = _sbl_1d(phi, y, lam)
    np.testing.assert_allclose(gammas[-1, 0], g_star, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(ws[-1, 0], w_star, rtol=1e-8, atol=1e-12)
    if g_star == 0:
        assert float(gammas[-1, 0]) == 0.0 and float(ws[-1, 0]) == 0.0
    # T5 as the digest checked it: monotone along these Algorithm 1 runs
    cost = np.asarray(_type2_cost(gammas[:, 0], s / lam, q / lam))
    assert np.all(np.diff(cost) <= 1e-12)


def test_sbl_fixed_point_monotone_sparsity_and_cost(x64):
    """T3-T5 on a 20-dim orthogonal toy: the fixed point is the closed form for
    every lambda (vmapped) and both update orders; sparsity is non-decreasing
    in lambda; the type-II cost never rises along the CCCP (Algorithm 3 order)."""
    rng = np.random.default_rng(3)
    s = rng.uniform(0.5, 4.0, 20)
    q = rng.normal(0, 2.5, 20)
    sigma2 = 0.1
    phi, y = _orthogonal_problem(s, q, sigma2=sigma2)
    lams = jnp.array([0.25, 0.5, 1.0, 2.0, 4.0])

    @jax.jit
    def run(lams):
        alg1 = jax.vmap(lambda lam: _sbl(phi, y, sigma2, lam, 400))(lams)
        alg3 = jax.vmap(lambda lam: _sbl(phi, y, sigma2, lam, 400, "alg3")[0])(lams)
        comp = jax.vmap(lambda lam: _alg3_elementwise(phi, y, sigma2, lam, 400))(lams)
        return alg1, alg3, comp

    (gammas, ws, hess, lin), g3, g_comp = run(lams)
    np.testing.assert_allclose(hess[0], s, rtol=1e-10)  # the curvature module gives S
    np.testing.assert_allclose(lin[0], q, rtol=1e-10)
    np.testing.assert_allclose(g_comp, g3[:, -1], rtol=1e-12)
    zeros, pruned = [], []
    for i, lam in enumerate(np.asarray(lams)):
        g_star, w_star = _gamma_star(s, q, lam)
        np.testing.assert_allclose(gammas[i, -1], g_star, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(ws[i, -1], w_star, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(g3[i, -1], g_star, rtol=1e-6, atol=1e-9)
        zeros.append(int(np.sum(np.asarray(gammas[i, -1]) == 0)))
        pruned.append(int(np.sum(~np.asarray(bayes.keep_mask(gammas[i, -1])))))
        # T5: the CCCP never increases the type-II cost (scaled problem S/lam, Q/lam)
        cost = np.asarray(_type2_cost(g3[i], s / lam, q / lam))
        assert np.all(np.diff(cost, axis=0) <= 1e-10)
        if i:  # T4: gamma* coordinate-wise non-increasing in lambda
            assert np.all(np.asarray(gammas[i, -1]) <= np.asarray(gammas[i - 1, -1]) + 1e-9)
    assert zeros == sorted(zeros) and pruned == sorted(pruned)
    assert zeros[-1] > zeros[0]  # the toy is not degenerate
    # Algorithm 1's literal order (omega lagged by one update) is not a CCCP:
    # same fixed point, but the cost rises somewhere on this toy
    rises = [
        np.diff(np.asarray(_type2_cost(gammas[i], s / lam, q / lam)), axis=0).max()
        for i, lam in enumerate(np.asarray(lams))
    ]
    assert max(rises) > 1e-3


# ----------------------------------------------------------------------- T6


def test_harmonic_combination(x64):
    rng = np.random.default_rng(0)
    a, b, c = (jnp.asarray(rng.uniform(0.01, 5, 100)) for _ in range(3))

    @jax.jit
    def run(a, b, c):
        zero, inf = jnp.zeros_like(a), jnp.full_like(a, jnp.inf)
        grad = jax.grad(lambda x: bayes.harmonic(x, jnp.array(0.0), jnp.array(2.0)))(1.0)
        return bayes.harmonic(a, b, c), bayes.harmonic(a, zero, c), bayes.harmonic(a, inf), grad

    h, h0, hinf, grad = run(a, b, c)
    np.testing.assert_allclose(h, a * b * c / (a * b + b * c + c * a), rtol=1e-12)
    assert np.all(h <= jnp.minimum(jnp.minimum(a, b), c))
    assert np.all(h0 == 0)  # a dead term kills the combination
    np.testing.assert_allclose(hinf, a)  # an infinite term is neutral
    assert np.isfinite(grad)  # NaN-free gradients at a dead term


def _reference_paper_gamma(s, topo):
    """Eq. 8 with dead predecessors OFF, written independently in numpy."""
    s = np.asarray(s)

    def harm(*t):
        return 0.0 if min(t) <= 0 else 1.0 / sum(1.0 / x for x in t)

    gamma = np.zeros_like(s)
    for e, (src, _) in enumerate(topo.edges):
        if src < topo.n_inputs:
            g_edge = s[e, 0]
        else:
            p = sum(
                s[f, o]
                for f, (_, d) in enumerate(topo.edges)
                if d == src
                for o in range(1, s.shape[1])
                if gamma[f, o] > THR
            )
            g_edge = harm(s[e, 0], p)
        gamma[e, 0] = g_edge
        for o in range(1, s.shape[1]):
            gamma[e, o] = harm(g_edge, s[e, o])
    return gamma


def _check_structure(gamma, keep, topo, dependency):
    gamma, keep = np.asarray(gamma), np.asarray(keep)
    # a dead edge gate kills its ops; gamma_op <= gamma_edge
    assert np.all(gamma[:, 1:] <= gamma[:, :1] + 1e-12)
    assert not np.any(keep[:, 1:] & ~keep[:, :1])
    assert not np.any(keep[gamma[:, 0] <= THR])
    for node in range(topo.n_nodes):
        nid = topo.n_inputs + node
        outgoing = [e for e, (src, _) in enumerate(topo.edges) if src == nid]
        if not keep[list(topo.incoming(node)), 1:].any():  # a dead node ...
            assert not keep[outgoing].any()  # ... kills its outgoing edges
            if dependency == "paper":  # ... and, in eq. 8, their gamma itself
                dead_in = gamma[list(topo.incoming(node)), 1:].max() <= THR
                assert not dead_in or np.all(gamma[outgoing] == 0)


def _gamma_keep_impl(s, topology, dependency):
    gamma = bayes.cell_gamma(s, topology, dependency=dependency)
    return gamma, bayes.cell_keep(gamma, topology)


_gamma_keep_jit = jax.jit(_gamma_keep_impl, static_argnums=(1, 2))


def _gamma_keep(s, topology, dependency="code"):
    return _gamma_keep_jit(s, topology, dependency)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("dependency", ["code", "paper"])
def test_cell_dependency_random_switches(x64, seed, dependency):
    """T6 over random switch tensors (log-uniform, many below the threshold)."""
    rng = np.random.default_rng(seed)
    topo = DARTS_CELL
    s = 10 ** rng.uniform(-3.5, 0.5, (topo.n_edges, 8))
    s[rng.uniform(size=s.shape) < 0.1] = 0.0
    s = jnp.asarray(s)
    gamma, keep = _gamma_keep(s, topo, dependency)
    if dependency == "code":
        sn = np.asarray(s)
        with np.errstate(divide="ignore"):
            ref = np.concatenate([sn[:, :1], 1 / (1 / sn[:, :1] + 1 / sn[:, 1:])], axis=1)
    else:
        ref = _reference_paper_gamma(s, topo)
    np.testing.assert_allclose(gamma, ref, rtol=1e-12)
    _check_structure(gamma, keep, topo, dependency)


def test_dead_node_kills_outgoing_edges_fig1b(x64):
    """Fig. 1b: everything entering node 2 is pruned -> the edges out of node 2
    (to nodes 3, 4, 5: edges 4, 7, 11) are removed; other edges stay."""
    topo = DARTS_CELL
    s = jnp.ones((topo.n_edges, 8)).at[jnp.array([0, 1]), 1:].set(0.01)
    out2 = [e for e, (src, _) in enumerate(topo.edges) if src == 2]
    assert out2 == [4, 7, 11]
    for dep in ("code", "paper"):
        gamma, keep = _gamma_keep(s, topo, dep)
        keep = np.asarray(keep)
        assert not keep[[0, 1], 1:].any() and not keep[out2].any()
        others = [e for e in range(topo.n_edges) if e not in (0, 1, *out2)]
        assert keep[others].all()
        if dep == "paper":
            assert np.all(np.asarray(gamma)[out2] == 0)
        else:  # the 2-term variant only prunes them through the keep mask
            assert np.all(np.asarray(gamma)[out2] > THR)
    # the edge gate: a dead zero-op gate kills the ops of its edge
    s2 = jnp.ones((topo.n_edges, 8)).at[5, 0].set(0.03)
    keep = np.asarray(_gamma_keep(s2, topo)[1])
    assert not keep[5].any() and keep[np.arange(topo.n_edges) != 5].all()


def test_cell_gamma_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown dependency"):
        bayes.cell_gamma(jnp.ones((14, 8)), DARTS_CELL, dependency="both")
    with pytest.raises(ValueError, match="14"):
        bayes.cell_gamma(jnp.ones((8, 8)), DARTS_CELL)


# ----------------------------------------------------------------------- T7


_cell_update_jit = jax.jit(bayes.cell_update, static_argnames=("topology", "dependency", "order"))


def _cell_update(gates, hess, state, topology=DARTS_CELL, **kw):
    return _cell_update_jit(gates, hess, state, topology=topology, **kw)


def _cell_inputs(seed, copies, topo=DARTS_CELL, n_ops=7):
    rng = np.random.default_rng(seed)
    shape = (copies, topo.n_edges, 1 + n_ops)
    gates = jnp.asarray(rng.normal(1.0, 0.5, shape))
    hess = jnp.asarray(rng.uniform(0, 3, shape))
    gamma = jnp.asarray(rng.uniform(0.05, 2, shape[1:]))
    return gates, hess, bayes.CellState(gamma=gamma, omega=jnp.ones(shape[1:]))


def test_cell_update_single_copy_is_algorithm_1(x64):
    gates, hess, state = _cell_inputs(0, 1)
    new, info = _cell_update(gates, hess, state, lam_edge=0.5, lam_op=0.01)
    lam = jnp.array([0.5] + [0.01] * 7)
    ref = jax.jit(bayes.sbl_update)(gates[0], hess[0] / lam, state.gamma)
    np.testing.assert_allclose(new.omega, ref.omega, rtol=1e-12)
    np.testing.assert_allclose(info.s, ref.s, rtol=1e-12)
    np.testing.assert_allclose(info.C[0], ref.C, rtol=1e-12)
    gamma, keep = _gamma_keep(ref.s, DARTS_CELL)
    np.testing.assert_allclose(new.gamma, gamma, rtol=1e-12)
    np.testing.assert_array_equal(info.keep, keep)
    # Algorithm 3's order: s from the training phase's omega, then omega from gamma(t)
    new3, info3 = _cell_update(gates, hess, state, lam_edge=0.5, lam_op=0.01, order="alg3")
    ref3 = jax.jit(partial(bayes.sbl_update, order="alg3"))(
        gates[0], hess[0] / lam, state.gamma, omega=state.omega
    )
    np.testing.assert_allclose(info3.s, ref3.s, rtol=1e-12)
    np.testing.assert_allclose(new3.omega, bayes.reweight(new3.gamma, hess[0] / lam), rtol=1e-12)


def test_cell_update_groups(x64):
    """T7: omega_g = sqrt(sum_i omega_i^2), s_g = ||w_g|| / omega_g, and aleph
    identical copies give the single copy's s and gamma (the digest's "H -> aleph H"
    holds for omega^2 = aleph H/(1 + gamma H), not for H inside the update)."""
    gates, hess, state = _cell_inputs(1, 5)
    new, info = _cell_update(gates, hess, state)
    g, h, gam = np.asarray(gates), np.asarray(hess), np.asarray(state.gamma)
    per_copy_sq = h / (1 + gam * h)  # omega_i^2 of each copy (eq. 18)
    np.testing.assert_allclose(new.omega, np.sqrt(per_copy_sq.sum(0)), rtol=1e-12)
    np.testing.assert_allclose(info.s, np.linalg.norm(g, axis=0) / new.omega, rtol=1e-12)
    # aleph identical copies: omega_g = sqrt(aleph) omega_1 and s_g = s_1 (so gamma too)
    aleph = 5
    g1, h1, st1 = _cell_inputs(2, 1)
    tiled, t_info = _cell_update(jnp.tile(g1, (aleph, 1, 1)), jnp.tile(h1, (aleph, 1, 1)), st1)
    single, s_info = _cell_update(g1, h1, st1)
    np.testing.assert_allclose(tiled.gamma, single.gamma, rtol=1e-12)
    np.testing.assert_allclose(tiled.omega, math.sqrt(aleph) * single.omega, rtol=1e-12)
    np.testing.assert_allclose(t_info.s, s_info.s, rtol=1e-12)


def test_cell_penalty_and_safe_gradients(x64):
    gates, _, state = _cell_inputs(3, 4)
    omega = jnp.asarray(np.random.default_rng(4).uniform(0, 2, state.gamma.shape))
    zero = gates.at[:, 2, :].set(0.0)
    st = bayes.init_cell_state(14, 7, jnp.float64)

    @jax.jit
    def run(gates, zero, omega):
        pen = lambda g: bayes.cell_penalty(g, omega, lam_edge=0.3, lam_op=0.01)
        w = {"a": gates[0], "b": gates[1]}
        l1 = bayes.l1_penalty(w, {"a": omega, "b": omega}, 0.1)
        # vmappable over several independent searches (e.g. seeds)
        batched = jax.vmap(lambda g: bayes.cell_update(g, jnp.ones_like(g), st, DARTS_CELL)[0])(
            jnp.stack([gates, 2 * gates])
        )
        return pen(gates), jax.grad(pen)(zero), l1, batched.gamma

    pen, grad, l1, batched = run(gates, zero, omega)
    g, om = np.asarray(gates), np.asarray(omega)
    lam = np.array([0.3] + [0.01] * 7)
    np.testing.assert_allclose(pen, np.sum(lam * om * np.linalg.norm(g, axis=0)), rtol=1e-12)
    assert np.all(np.isfinite(grad)) and np.all(np.asarray(grad)[:, 2] == 0)
    # eq. 16: the plain re-weighted l1 penalty on a pytree
    np.testing.assert_allclose(l1, 0.1 * np.sum(np.abs(om * g[:2])), rtol=1e-12)
    assert batched.shape == (2, 14, 8)


def test_smaller_topology():
    """The dependency logic uses only the topology: a 3-node cell."""
    topo = CellTopology(n_inputs=1, n_nodes=2)  # edges (0,1), (0,2), (1,2)
    s = jnp.array([[1.0, 0.01, 0.02], [1.0, 1.0, 1.0], [1.0, 2.0, 2.0]])
    gamma, keep = _gamma_keep(s, topo, "paper")
    keep = np.asarray(keep)
    assert not keep[0, 1:].any() and np.all(np.asarray(gamma[2]) == 0) and not keep[2].any()
    assert keep[1].all()


# ------------------------------------------------ structured (group) priors


def test_group_axes_table_s3():
    shape = (3, 2, 4, 5)  # (kh, kw, C_in, C_out) = paper's (M, K, C, N)
    n_groups = {
        "element": 120,
        "shape": 24,
        "row": 12,
        "column": 8,
        "channel": 4,
        "group_shape": 6,
        "group_row": 3,
        "group_column": 2,
        "filter": 5,
    }
    for kind, n in n_groups.items():
        axes = bayes.group_axes(kind, 4)
        assert math.prod(bayes.group_shape(shape, axes)) == n, kind
    # which weights share a group: filter n = kernel[..., n]; channel c = kernel[:, :, c]
    k = jnp.zeros(shape).at[..., 3].set(1.0)
    nrm = bayes.safe_norm(k, bayes.group_axes("filter", 4), keepdims=True)
    assert nrm.shape == (1, 1, 1, 5) and np.count_nonzero(nrm) == 1
    k = jnp.zeros(shape).at[:, :, 1].set(1.0)
    nrm = bayes.safe_norm(k, bayes.group_axes("channel", 4), keepdims=True)
    assert nrm.shape == (1, 1, 4, 1) and np.count_nonzero(nrm) == 1
    # dense (in, out): "row" = an output neuron, "column" = an input neuron
    assert bayes.group_axes("row", 2) == (0,) and bayes.group_axes("column", 2) == (1,)
    with pytest.raises(ValueError, match="unknown group kind 'diagonal'"):
        bayes.group_axes("diagonal", 4)
    with pytest.raises(ValueError, match="2 \\(dense\\) or 4 \\(conv\\)"):
        bayes.group_axes("row", 3)


def test_compression_update_prunes_a_dead_filter(x64):
    """Algorithm 3 step 3 for a conv kernel with filter-wise groups."""
    rng = np.random.default_rng(0)
    shape = (3, 3, 2, 4)
    w = rng.normal(size=shape)
    w[..., 1] = 0.0
    hess = rng.uniform(0.5, 2, shape)
    axes = bayes.group_axes("filter", 4)
    st = bayes.init_group_state(shape, axes, jnp.float64)

    @jax.jit
    def run(w, hess, st):
        new = bayes.compression_update(w, hess, st, axes, lam=0.5)
        pen = lambda x: bayes.group_l1_penalty(x, new.omega, axes, lam=0.1)
        return new, pen(w), jax.grad(pen)(w)

    new, pen, grad = run(jnp.asarray(w), jnp.asarray(hess), st)
    norms = np.linalg.norm(w.reshape(-1, 4), axis=0).reshape(1, 1, 1, 4)
    np.testing.assert_allclose(new.gamma, norms / 1.0, rtol=1e-12)  # B.0.2 with omega(0) = 1
    h = hess / 0.5
    gam = np.asarray(new.gamma)
    np.testing.assert_allclose(
        new.omega, np.sqrt(np.sum(h / (1 + gam * h), axis=axes, keepdims=True)), rtol=1e-12
    )
    np.testing.assert_allclose(new.C, gam / (1 + gam * h), rtol=1e-12)
    assert (np.asarray(new.gamma).ravel() > THR).tolist() == [True, False, True, True]
    # the group penalty (eq. 21 / B.0.1) and its gradient at the dead filter
    np.testing.assert_allclose(pen, 0.1 * np.sum(np.asarray(new.omega) * norms), rtol=1e-12)
    assert np.all(np.isfinite(grad)) and np.all(np.asarray(grad)[..., 1] == 0)


def test_update_is_differentiable(x64):
    """Pure functions: d gamma(t) / d H through sbl_update matches the closed form
    gamma(t) = |w| sqrt((1 + gamma H') / H'), H' = H / lam."""
    w, gamma, lam = jnp.array([0.7, -1.2]), jnp.array([0.5, 2.0]), 0.3
    f = jax.jit(jax.grad(lambda h: jnp.sum(bayes.sbl_update(w, h, gamma, lam=lam).gamma)))
    h = np.array([2.0, 0.4])
    hp = h / lam
    # d/dH' of |w| sqrt(1/H' + gamma) = -|w| / (2 H'^2 sqrt(1/H' + gamma)), times 1/lam
    expected = -np.abs(w) / (2 * hp**2 * np.sqrt(1 / hp + np.asarray(gamma))) / lam
    np.testing.assert_allclose(f(jnp.asarray(h)), expected, rtol=1e-10)
