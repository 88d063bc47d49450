"""PR-DARTS regularizers, tau schedule, derivation (jaxnas.search.prdarts_reg) and
Theorem 1 / the analysis model (experiments/support/prdarts_theory.py)."""

import math
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnas import gates
from jaxnas.common import tau_schedule
from jaxnas.genotype import CellGenotype, Genotype, validate
from jaxnas.ops import DARTS_PRIMITIVES
from jaxnas.search import prdarts_reg as R
from jaxnas.spaces.darts import DARTS_CELL

# the analysis model is experiment support code (experiments/support/), not library code
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "experiments"))
from support import prdarts_theory as T  # noqa: E402

OPS = DARTS_PRIMITIVES
SKIP = OPS.index("skip_connect")
CONVS = [OPS.index(n) for n in ("sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")]
POOLS = [OPS.index(n) for n in ("max_pool_3x3", "avg_pool_3x3")]
NONE = OPS.index("none")
CHAIN = (1, 4, 8, 13)
P0 = 1 / (1 + math.exp(-0.1 * math.log(11)))  # P(g != 0) at beta = 0, tau = 0.1: 0.5596618
PQ0 = P0 * (1 - P0)  # 0.2464405


def test_groups_and_chain():
    g = R.op_groups()
    assert g.skip == (SKIP,) and set(g.path) == set(CONVS) and g.pool == ()
    assert set(g.nonskip) == set(range(8)) - {SKIP}  # zero and pools are non-skip (paper)
    gc = R.op_groups(variant="code")
    assert set(gc.nonskip) == {NONE, *CONVS} and set(gc.pool) == set(POOLS)
    assert R.chain_edges() == CHAIN
    assert [DARTS_CELL.edges[e] for e in CHAIN] == [(1, 2), (2, 3), (3, 4), (4, 5)]
    with pytest.raises(ValueError):
        R.op_groups(("none", "max_pool_3x3", "sep_conv_3x3"))
    with pytest.raises(ValueError):
        R.group_terms(jnp.zeros((14, 7)), 0.1)


def test_paper_values_at_zero(x64):
    """Digest Sec. 9 item 6: L_skip = L_nonskip = 0.55966, L_path = (4 * 0.55966)^4 = 25.116."""
    t = R.prdarts_regularizer(jnp.zeros((14, 8)), 0.1)
    assert float(t.skip) == pytest.approx(0.5596618, abs=1e-7)
    assert float(t.nonskip) == pytest.approx(0.5596618, abs=1e-7)
    assert float(t.path) == pytest.approx(25.11554, abs=1e-4)
    assert float(t.pool) == 0.0
    expect = 0.01 * t.skip + 0.005 * t.nonskip - 0.005 * t.path
    assert float(t.total) == pytest.approx(float(expect), rel=1e-12)
    # two cell types: mean (default, as the code) or sum
    both = {"normal": jnp.zeros((14, 8)), "reduce": jnp.zeros((14, 8))}
    assert float(R.prdarts_regularizer(both, 0.1).total) == pytest.approx(float(t.total))
    assert float(R.prdarts_regularizer(both, 0.1, combine="sum").total) == pytest.approx(
        2 * float(t.total)
    )


def test_paper_gradients_at_zero(x64):
    beta = jnp.zeros((14, 8))
    grads = jax.jit(jax.jacrev(lambda b: R.group_terms(b, 0.1)))(beta)  # one compile
    g_skip = grads["skip"]
    expect = np.zeros((14, 8))
    expect[:, SKIP] = PQ0 / 14  # 0.017603
    np.testing.assert_allclose(g_skip, expect, rtol=1e-10, atol=1e-15)
    assert float(g_skip[0, SKIP]) == pytest.approx(0.017603, abs=1e-6)

    g_non = grads["nonskip"]
    expect = np.full((14, 8), PQ0 / (14 * 7))
    expect[:, SKIP] = 0
    np.testing.assert_allclose(g_non, expect, rtol=1e-10, atol=1e-15)

    g_path = grads["path"]
    expect = np.zeros((14, 8))
    for e in CHAIN:  # prod of the other three factors times p(1 - p)
        expect[e, CONVS] = (4 * P0) ** 3 * PQ0
    np.testing.assert_allclose(g_path, expect, rtol=1e-10, atol=1e-15)
    # the reward -lam3 L_path has negative gradient on chain convs: descent raises them
    g_total = jax.jit(jax.grad(lambda b: R.prdarts_regularizer(b, 0.1).total))(beta)
    assert bool(jnp.all(g_total[np.ix_(CHAIN, CONVS)] < 0))


def test_path_gradient_support(x64):
    """Off the chain and on non-conv ops the path term has exactly zero gradient (any beta)."""
    beta = jax.random.normal(jax.random.key(0), (14, 8), jnp.float64)
    for variant in ("paper", "code"):
        g = jax.jit(jax.grad(lambda b, v=variant: R.group_terms(b, 0.3, variant=v)["path"]))(beta)
        support = np.zeros((14, 8), bool)
        support[np.ix_(CHAIN, CONVS)] = True
        assert bool(jnp.all(jnp.where(support, 0.0, g) == 0.0))
        assert bool(jnp.all(g[support] > 0))


def test_skip_push_is_fourteen_times_nonskip(x64):
    """Per gate at equal p: lam1 * zeta * p(1-p) (skip) vs lam2 * zeta/(r-1) * p(1-p)
    (each non-skip gate), ratio lam1 (r - 1) / lam2 = 0.01 * 7 / 0.005 = 14.

    Checked on the full regularizer off the chain (no path term) at several beta and tau.
    """
    grad_total = jax.jit(jax.grad(lambda b, t: R.prdarts_regularizer(b, t).total))
    for beta0, tau in ((0.0, 0.1), (-1.0, 0.5), (1.5, 1.0)):
        beta = jnp.full((14, 8), beta0)
        g = grad_total(beta, tau)
        for e in (0, 2, 5, 9):  # edges off the chain
            for t in [NONE, *POOLS, *CONVS]:
                assert float(g[e, SKIP] / g[e, t]) == pytest.approx(14.0, rel=1e-10)
        assert R.LAMBDA_SKIP * 7 / R.LAMBDA_NONSKIP == pytest.approx(14.0)


def test_regularizer_only_descent(x64):
    """Digest Sec. 9 item 7: from beta = 0 at tau = 0.1, skip falls fastest, chain convs
    rise, off-chain convs and pools fall slowly."""
    beta = jnp.zeros((14, 8))
    grad = jax.jit(jax.grad(lambda b: R.prdarts_regularizer(b, 0.1).total))
    for _ in range(20):
        beta = beta - 1.0 * grad(beta)
    off = [e for e in range(14) if e not in CHAIN]
    assert bool(jnp.all(beta[np.ix_(CHAIN, CONVS)] > 0))
    assert bool(jnp.all(beta[:, SKIP] < 0))
    slow = beta[np.ix_(off, CONVS + POOLS)]
    assert bool(jnp.all(slow < 0)) and float(slow.min()) > float(beta[:, SKIP].max())


def test_saturation_at_high_tau(x64):
    beta = jax.random.uniform(jax.random.key(1), (14, 8), jnp.float64, -3.0, 3.0)
    for variant in ("paper", "code"):
        g = jax.jit(
            jax.grad(
                lambda b, v=variant: R.prdarts_regularizer(b, 10.0, variant=v, threshold=0.0).total
            )
        )(beta)
        assert float(jnp.linalg.norm(g)) < 1e-8


def _code_reference(beta_by_cell, mask_by_cell, tau, lam=(0.01, 0.005, 0.005), thr=0.2):
    """The authors' get_regularization, written independently with their op order
    (none, skip, sep3, sep5, dil3, dil5, avg, max) and numpy loops."""
    code_order = [
        "none", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
        "dil_conv_3x3", "dil_conv_5x5", "avg_pool_3x3", "max_pool_3x3",
    ]  # fmt: skip
    perm = [OPS.index(n) for n in code_order]
    shift = -tau * math.log(0.1 / 1.1)
    skip = nonskip = pool = path = 0.0
    for key in ("normal", "reduce"):
        b = np.asarray(beta_by_cell[key])[:, perm]
        m = np.asarray(mask_by_cell[key])[:, perm]
        p = 1 / (1 + np.exp(-(b + shift))) * m
        if m[:, 1].sum() > 0:
            skip += 0.5 * p[:, 1].sum() / m[:, 1].sum()
        npool = m[:, 6:8].sum()
        if npool:
            pool += 0.5 * p[:, 6:8].sum() / npool
        nnon = m.sum() - m[:, 1].sum() - npool
        if nnon:
            nonskip += 0.5 * (p[:, 0].sum() + p[:, 2:6].sum()) / nnon
        sel = [e for e in CHAIN if m[e, 2:6].sum() > 0]
        if sel:
            path += 0.5 * np.prod([p[e, 2:6].sum() / m[e, 2:6].sum() for e in sel])
    hinge = lambda v: v - thr if v > thr else 0.0
    return lam[0] * hinge(skip) + lam[1] * (hinge(nonskip) + hinge(pool)) - lam[2] * path


def test_code_variant_matches_reference(x64):
    rng = np.random.default_rng(2)

    def two_per_row():  # a mask with two sampled ops per edge
        m = np.zeros((14, 8))
        for e in range(14):
            m[e, rng.choice(8, 2, replace=False)] = 1
        return jnp.asarray(m)

    for tau in (0.1, 0.5, 1.0):
        betas = {k: jnp.asarray(rng.normal(size=(14, 8))) for k in ("normal", "reduce")}
        masks = {k: two_per_row() for k in betas}
        got = R.prdarts_regularizer(betas, tau, variant="code", mask=masks).total
        assert float(got) == pytest.approx(_code_reference(betas, masks, tau), rel=1e-10)
    # no sampled conv on any chain edge: path term is 0; an unmasked cell uses every op
    m = jnp.ones((14, 8)).at[np.ix_(CHAIN, CONVS)].set(0.0)
    t = R.group_terms(jnp.zeros((14, 8)), 0.1, variant="code", mask=m)
    assert float(t["path"]) == 0.0
    t = R.prdarts_regularizer(jnp.zeros((14, 8)), 0.1, variant="code")
    assert float(t.skip) == pytest.approx(P0 - 0.2) and float(t.path) == pytest.approx(P0**4)


def test_code_hinge_kills_small_terms(x64):
    beta = jnp.full((14, 8), -4.0)  # p ~ 0.02 < 0.2 at tau = 0.1
    g = jax.jit(jax.grad(lambda b: R.prdarts_regularizer(b, 0.1, variant="code").total))(beta)
    assert float(R.prdarts_regularizer(beta, 0.1, variant="code").skip) == 0.0
    off = [e for e in range(14) if e not in CHAIN]
    assert bool(jnp.all(g[np.asarray(off)] == 0.0))


def test_tau_schedule():
    assert tau_schedule(0, 200) == pytest.approx(10.0)
    assert tau_schedule(199, 200) == pytest.approx(0.1)
    taus = np.array([tau_schedule(e, 5) for e in range(5)])
    np.testing.assert_allclose(np.diff(taus), -(10 - 0.1) / 4)
    traced = jax.jit(lambda e: tau_schedule(e, 5, 1.0, 0.1))(jnp.arange(5))
    np.testing.assert_allclose(traced, np.linspace(1.0, 0.1, 5), rtol=1e-6)
    assert tau_schedule(0, 1) == 10.0
    with pytest.raises(ValueError):
        tau_schedule(0, 0)


# --------------------------------------------------------------------------------------
# derivation
# --------------------------------------------------------------------------------------


def _hand_beta():
    beta = np.full((14, 8), -5.0)
    beta[:, NONE] = 9.0  # 'none' is never selected, however large
    # node 2 (edges 0: 0->2, 1: 1->2): two strong ops on edge 0
    beta[0, OPS.index("sep_conv_3x3")] = 3.0
    beta[0, OPS.index("dil_conv_3x3")] = 2.5
    beta[1, OPS.index("skip_connect")] = 2.0
    # node 3 (edges 2, 3, 4)
    beta[4, OPS.index("sep_conv_5x5")] = 1.0
    beta[2, OPS.index("max_pool_3x3")] = 0.5
    # node 4 (edges 5..8)
    beta[8, OPS.index("dil_conv_5x5")] = 2.0
    beta[6, OPS.index("avg_pool_3x3")] = 1.5
    beta[6, OPS.index("skip_connect")] = 1.4
    # node 5 (edges 9..13)
    beta[13, OPS.index("sep_conv_3x3")] = 0.3
    beta[9, OPS.index("sep_conv_3x3")] = 0.2
    return beta


def test_derive_paper_rule_on_hand_made_beta():
    cell = R.prdarts_derive_cell(_hand_beta())
    assert isinstance(cell, CellGenotype)
    assert cell.nodes == (
        (("sep_conv_3x3", 0), ("dil_conv_3x3", 0)),  # both from predecessor 0 (paper rule)
        (("sep_conv_5x5", 2), ("max_pool_3x3", 0)),
        (("dil_conv_5x5", 3), ("avg_pool_3x3", 1)),
        (("sep_conv_3x3", 4), ("sep_conv_3x3", 0)),
    )
    assert cell.concat == (2, 3, 4, 5) and cell.n_inputs == 2


def test_derive_darts_rule_distinct_predecessors():
    cell = R.prdarts_derive_cell(_hand_beta(), rule="darts")
    assert cell.nodes[0] == (("sep_conv_3x3", 0), ("skip_connect", 1))
    assert cell.nodes[2] == (("dil_conv_5x5", 3), ("avg_pool_3x3", 1))
    rng = np.random.default_rng(0)
    for _ in range(20):
        cell = R.prdarts_derive_cell(rng.normal(size=(14, 8)), rule="darts")
        for node in cell.nodes:
            assert len({src for _, src in node}) == 2


def test_derive_code_rule_ranks_by_edge_softmax():
    beta = np.full((14, 8), -5.0)
    beta[0, CONVS[0]] = beta[0, CONVS[1]] = 3.0  # edge 0: mass split over two ops
    beta[1, CONVS[2]] = 2.9  # edge 1: one op takes the whole softmax
    paper = R.prdarts_derive_cell(beta).nodes[0]
    code = R.prdarts_derive_cell(beta, rule="code").nodes[0]
    assert {src for _, src in paper} == {0}
    assert code[0] == (OPS[CONVS[2]], 1)


def test_derive_properties_random_beta(x64):
    rng = np.random.default_rng(1)
    for _ in range(20):
        beta = rng.normal(size=(14, 8))
        beta[:, NONE] += 3.0
        cell = R.prdarts_derive_cell(beta)
        for k, node in enumerate(cell.nodes):
            assert len(node) == 2
            assert all(op != "none" and 0 <= src < 2 + k for op, src in node)
        # ranking by P(g != 0) at any tau is ranking by beta
        for tau in (0.1, 1.0, 10.0):
            p = np.asarray(gates.p_nonzero(jnp.asarray(beta), tau))
            assert R.prdarts_derive_cell(p) == cell
    geno = R.prdarts_derive(rng.normal(size=(14, 8)), rng.normal(size=(14, 8)))
    assert isinstance(geno, Genotype)
    validate(geno, n_nodes=4, inputs_per_node=2)
    with pytest.raises(ValueError):
        R.prdarts_derive_cell(np.zeros((14, 8)), rule="x")
    with pytest.raises(ValueError):
        R.prdarts_derive_cell(np.zeros((13, 8)))


# --------------------------------------------------------------------------------------
# Theorem 1 and the analysis model
# --------------------------------------------------------------------------------------


def test_thm1_reference_values():
    """Digest Sec. 9 item 10 (h = 5): 1.48, 0.65, 0.023, 0.010."""
    lam = {n: float(T.thm1_rate(T.alpha_config(n, 5), 5)) for n in T.NAMED_ALPHAS}
    assert lam["skip-inner/conv-last"] == pytest.approx(1.4795, abs=1e-3)
    assert lam["all-conv"] == pytest.approx(0.6465, abs=1e-3)
    assert lam["all-skip"] == pytest.approx(0.0231, abs=1e-3)
    assert lam["all-zero"] == pytest.approx(0.0101, abs=1e-3)
    assert max(lam, key=lam.get) == "skip-inner/conv-last"


@pytest.mark.parametrize("product", ["printed", "chain"])
def test_thm1_monotone_and_independent(product, x64):
    h = 5
    edges = T.analysis_edges(h)
    alpha = jax.random.uniform(jax.random.key(3), (len(edges), 3), jnp.float64, 0.05, 1.0)
    grad = np.asarray(jax.jit(jax.grad(lambda a: T.thm1_rate(a, h, product)))(alpha))
    assert np.all(grad >= 0)  # non-decreasing in every weight
    for e, (s, d) in enumerate(edges):
        assert grad[e, T.ZERO] == 0  # zero weights never matter
        if d == h - 1:
            assert grad[e, T.CONV] > 0 and grad[e, T.SKIP] == 0  # conv into the last node
        else:
            assert grad[e, T.CONV] == 0  # conv weights off the last node do not matter
            on_path = product == "printed" or d == s + 1
            assert (grad[e, T.SKIP] > 0) == on_path  # skip on the shared path
    # independent of zero weights: change them arbitrarily
    other = alpha.at[:, T.ZERO].set(jax.random.uniform(jax.random.key(4), (len(edges),)))
    assert float(T.thm1_rate(other, h, product)) == float(T.thm1_rate(alpha, h, product))


def test_analysis_model_conv_matches_lax(x64):
    cfg = T.AnalysisConfig(m=4, h=2)
    params, x, _ = T.setup(0, cfg, n=4)
    x = x.astype(jnp.float64)
    w = params["stem"].astype(jnp.float64)
    out = T.conv_layer(w, x, cfg)
    kernel = w.reshape(cfg.m, cfg.m_in, cfg.k_c)  # rows of Phi are channel-major
    ref = jax.lax.conv_general_dilated(x, kernel, (1,), [(1, 1)]) / np.sqrt(w.shape[1])
    np.testing.assert_allclose(out, jnp.tanh(ref), rtol=1e-10, atol=1e-12)
    gram = jax.jit(T.ntk_gram, static_argnums=3)(
        params, T.alpha_config("uniform", 2), x.astype(jnp.float32), cfg
    )
    np.testing.assert_allclose(gram, gram.T, rtol=1e-4)
    assert float(jnp.linalg.eigvalsh(gram.astype(jnp.float64))[0]) > 0


def test_analysis_model_zero_heavy_is_slowest():
    """The one ordering the digest marks safe that also holds in this model's runs:
    zero-heavy weights converge slowest.  (Its other "safe" ordering, conv into the
    last node beating skip there, did NOT hold with this scaling -- see
    experiments/prdarts_theory.py -- so it is not asserted.)"""
    cfg = T.AnalysisConfig(m=16)
    names = ["all-zero", "all-conv", "all-skip", "skip-inner/conv-last", "uniform"]
    alphas = np.stack([T.alpha_config(n, cfg.h) for n in names])
    losses = T.gd_losses(alphas, seeds=[0, 1, 2], cfg=cfg, n=16, eta=0.5, steps=60)
    assert np.all(np.isfinite(losses))
    rel = losses[:, :, -1] / losses[:, :, 0]
    assert np.all(rel < 1.0)
    assert np.all(np.argmax(rel, axis=1) == 0)  # every seed


@pytest.mark.slow
def test_analysis_model_zero_heavy_is_slowest_full_size():
    cfg = T.AnalysisConfig()
    names = list(T.NAMED_ALPHAS)
    alphas = np.stack([T.alpha_config(n, cfg.h) for n in names])
    for eta in (0.5, 0.1):
        losses = T.gd_losses(alphas, seeds=[0, 1, 2], cfg=cfg, n=32, eta=eta, steps=150)
        rel = np.log(losses[:, :, -1] / losses[:, :, 0]).mean(0)
        assert names[int(np.argmax(rel))] == "all-zero"
