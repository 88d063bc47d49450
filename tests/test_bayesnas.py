"""BayesNAS cell search: BN-ReLU-Conv ops, the gated supernet, App. C.3 curvature, the
Alg. 2 update on the supernet, the entropy-rule derivation, the search step."""

import functools
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnas import bayes
from jaxnas import curvature as cv
from jaxnas.config import default_config, load_config
from jaxnas.genotype import Genotype
from jaxnas.models.darts_net import DiscreteCell, check_genotype
from jaxnas.models.summary import count_params
from jaxnas.ops import OPS, PRIMITIVE_SETS, OpsConfig, make_op, resolve_primitives
from jaxnas.search import build
from jaxnas.search.bayesnas import BayesMixer, BayesState, curvature_gate, derive_bayes_cell
from jaxnas.spaces.darts import DARTS_CELL
from jaxnas.supernet import MixedEdge

CONFIGS = pathlib.Path(__file__).parents[1] / "configs"
THR = bayes.ENTROPY_THRESHOLD
EDGE_OPS = ("none", "max_pool_3x3", "skip_connect", "bn_sep_conv_3x3", "bn_dil_conv_3x3")
STEP_OPS = ("none", "max_pool_3x3", "skip_connect")  # a short compile for the step tests
SHAPE = (8, 8, 1)
_CFG = OpsConfig()


def _config(ops=STEP_OPS, **search):
    c = default_config("bayesnas")
    c.model.init_channels, c.model.layers = 2, 3
    with c.ignore_type():
        c.model.primitives = tuple(ops)
    c.data.batch_size = 4
    c.search.update(search)
    return c


def _build(config, steps_per_epoch=2):
    return build(config, steps_per_epoch=steps_per_epoch, num_classes=10, input_shape=SHAPE)


# ------------------------------------------------------------------------------- the ops


@pytest.mark.parametrize(
    "name, stride",
    [
        ("bn_sep_conv_3x3", 2),
        ("bn_dil_conv_5x5", 1),
        ("bn_full_dil_conv_3x3", 2),
        ("bn_skip_connect", 2),
    ],
)
def test_bn_relu_conv_ops_start_with_bn(name, stride):
    """BN first: in training mode the op cannot see a per-channel shift of its input
    (BN subtracts the batch mean), which DARTS' ReLU-Conv-BN ops do see."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(4, 8, 8, 4)), jnp.float32)
    shift = jnp.asarray(rng.normal(size=(4,)) * 3, jnp.float32)
    for op_name, invariant in ((name, True), (name.removeprefix("bn_"), False)):
        if op_name == "full_dil_conv_3x3":
            continue  # no DARTS counterpart
        op = make_op(op_name, 4, stride, affine=False, search=True, cfg=_CFG)
        v = op.init(jax.random.key(0), x, True)
        f = lambda z: op.apply(v, z, True, mutable=["batch_stats"])[0]  # noqa: B023
        y, ys = f(x), f(x + shift)
        assert y.shape == (4, 8 // stride, 8 // stride, 4)
        assert bool(jnp.allclose(y, ys, atol=1e-4)) == invariant, op_name


def _op_params(name, c, stride):
    op = make_op(name, c, stride, affine=True, search=False, cfg=_CFG)
    x = jax.ShapeDtypeStruct((2, 8, 8, c), jnp.float32)
    v = jax.eval_shape(lambda x: op.init(jax.random.key(0), x, False), x)
    return count_params(v.get("params", {}))


def test_bn_relu_conv_op_sizes():
    """The discrete (affine) forms have the hand-counted sizes (BN scale + bias = 2C)."""
    c = 4
    bn = 2 * c
    assert _op_params("bn_sep_conv_3x3", c, 1) == 2 * (bn + 9 * c + c * c)
    assert _op_params("bn_sep_conv_5x5", c, 2) == 2 * (bn + 25 * c + c * c)
    assert _op_params("bn_dil_conv_5x5", c, 1) == bn + 25 * c + c * c
    assert _op_params("bn_full_dil_conv_3x3", c, 1) == bn + 9 * c * c + c * c
    assert _op_params("bn_skip_connect", c, 2) == bn + c * c
    assert _op_params("bn_skip_connect", c, 1) == 0
    for ps in ("bayesnas", "bayesnas_code"):
        prims = resolve_primitives(ps)
        assert prims[0] == "none" and len(prims) == 8 and set(prims) <= set(OPS)


# ------------------------------------------------------------------------ the gated edge


@functools.cache
def _edge(edge_gate, curvature=""):
    return MixedEdge(EDGE_OPS, 1, BayesMixer(edge_gate, curvature), train=True)


@functools.cache
def _apply(edge):
    return jax.jit(lambda v, x, w: edge.apply(v, x, w, mutable=["batch_stats"])[0])


@pytest.fixture(scope="module")
def edge_setup():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(4, 8, 8, 3)), jnp.float32)
    w = jnp.ones((len(EDGE_OPS),), jnp.float32)
    variables = _edge("input").init(jax.random.key(0), x, w)
    return x, variables


def _run(edge, variables, x, w):
    return _apply(edge)(variables, x, w)


def _unit(o):
    """Gates with the zero-op gate and op ``o`` at 1, the other ops at 0."""
    return jnp.zeros((len(EDGE_OPS),), jnp.float32).at[0].set(1.0).at[o].set(1.0)


@pytest.mark.parametrize("edge_gate", ["input", "output"])
def test_gates_one_is_the_plain_sum_no_softmax(edge_setup, edge_gate):
    """All gates 1: the edge output is the plain sum of its op outputs; and no softmax:
    output-gated, scaling every gate by c scales the edge by c^2."""
    x, v = edge_setup
    edge = _edge(edge_gate)
    n = len(EDGE_OPS)
    total = _run(edge, v, x, jnp.ones((n,)))
    parts = 0.0
    for name in EDGE_OPS[1:]:  # each op alone, with the edge's own variables
        op = make_op(name, 3, 1, affine=False, search=True, cfg=_CFG)
        sub = {col: v[col][name] for col in v if name in v[col]}
        parts = parts + op.apply(sub, x, True, mutable=["batch_stats"])[0]
    np.testing.assert_allclose(total, parts, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        sum(_run(edge, v, x, _unit(o)) for o in range(1, n)), parts, atol=1e-5
    )
    assert float(jnp.abs(total).max()) > 0.1
    if edge_gate == "output":
        # atol as above: entries near 0 of an edge output of order 10 carry its round-off
        np.testing.assert_allclose(
            _run(edge, v, x, 3.0 * jnp.ones((n,))), 9.0 * total, rtol=1e-5, atol=1e-5
        )


@pytest.mark.parametrize("edge_gate", ["input", "output"])
def test_zero_op_gate_kills_the_edge(edge_setup, edge_gate):
    x, v = edge_setup
    edge = _edge(edge_gate)
    w = jnp.asarray(np.random.default_rng(2).normal(size=len(EDGE_OPS)), jnp.float32).at[0].set(0)
    for inp in (x, 5.0 * x + 1.0):
        assert np.all(np.asarray(_run(edge, v, inp, w)) == 0.0)


@pytest.mark.parametrize("edge_gate", ["input", "output"])
def test_curvature_gates_give_app_c3(edge_setup, edge_gate):
    """The Hessian pass: with a linear read-out r of the edge (so the cotangent at the
    edge output is r), the 'gradient' of every gate is App. C.3's sum B^2 H_j with
    H_j = (cotangent)^2, and the meanfield form is C.3.2's E(|B|)^2 sum H_j."""
    x, v = edge_setup
    r = jnp.asarray(np.random.default_rng(3).normal(size=(4, 8, 8, 3)), jnp.float32)
    w = jnp.asarray([0.8, 1.3, -0.6, 0.9, 1.1], jnp.float32)
    n = len(EDGE_OPS)
    plain = _edge(edge_gate)

    def read(edge):
        return lambda w, z: jnp.sum(r * _run(edge, v, z, w))

    np.testing.assert_allclose(read(_edge(edge_gate, "exact"))(w, x), read(plain)(w, x), rtol=1e-6)
    got = jax.grad(read(_edge(edge_gate, "exact")))(w, x)
    got_mf = jax.grad(read(_edge(edge_gate, "meanfield")))(w, x)
    if edge_gate == "input":
        xin = w[0] * x  # node i' of Sec. 4.2
        b = [_run(plain, v, xin, _unit(o)) for o in range(1, n)]  # un-gated op outputs
        g_op = [r] * (n - 1)
        w1 = w.at[0].set(1.0)
        g_in = jax.grad(lambda z: jnp.sum(r * _run(plain, v, z, w1)))(xin)  # cotangent at i'
        want0 = jnp.sum(x**2 * g_in**2)
    else:
        b = [_run(plain, v, x, _unit(o)) for o in range(1, n)]
        g_op = [w[0] * r] * (n - 1)  # the pre-activation Hessian behind w[0] (C.3.1)
        s = sum(w[o] * b[o - 1] for o in range(1, n))
        want0 = jnp.sum(s**2 * r**2)
    want = [want0] + [jnp.sum(bo**2 * go**2) for bo, go in zip(b, g_op)]
    want_mf = [jnp.mean(jnp.abs(bo)) ** 2 * jnp.sum(go**2) for bo, go in zip(b, g_op)]
    np.testing.assert_allclose(got, jnp.stack(want), rtol=2e-4)
    np.testing.assert_allclose(got_mf[1:], jnp.stack(want_mf), rtol=2e-4)


def test_paper_estimator_matches_closed_form():
    """probe_vjp_mean over curvature gates on logits z = sum_o w_o B_o with mean cross
    entropy: the node's GGN diagonal is p(1 - p)/N, so E = sum_{n,k} B_o^2 p(1 - p)/N."""
    rng = np.random.default_rng(4)
    n, k, n_ops = 6, 5, 3
    basis = jnp.asarray(rng.normal(size=(n_ops, n, k)), jnp.float32)
    w = jnp.asarray([0.5, -1.0, 2.0], jnp.float32)
    logits = lambda w: sum(curvature_gate(w[o], basis[o], "exact") for o in range(n_ops))
    sampler = cv.cross_entropy_sampler("mean")
    estimate = jax.jit(
        lambda w: cv.probe_vjp_mean(logits, w, jax.random.key(0), sampler, num_samples=4000)
    )
    est = estimate(w)
    p = jax.nn.softmax(logits(w), -1)
    want = jnp.einsum("onk,nk->o", basis**2, p * (1 - p)) / n
    np.testing.assert_allclose(est, want, rtol=0.06)


# ------------------------------------------------------------------------- the method


def test_gate_shapes_and_groups():
    """Per-instance gates (n_edges, 1 + n_ops) start at 1; grouped per cell type they are
    (n_copies, n_edges, 1 + n_ops); the hyper-parameters are (n_edges, 1 + n_ops)."""
    c = _config()
    c.model.layers = 5  # reductions at cells 1 and 3
    m = _build(c)
    state = jax.eval_shape(lambda: m.init(jax.random.key(0), np.zeros((2, *SHAPE), np.float32)))
    k = len(STEP_OPS)
    assert {n: a.shape for n, a in state.arch.items()} == {
        f"layer_{i:02d}": (14, k) for i in range(5)
    }
    assert m.cell_types == {
        "normal": ("layer_00", "layer_02", "layer_04"),
        "reduce": ("layer_01", "layer_03"),
    }
    grouped = jax.eval_shape(m.gates_by_type, state.arch)
    assert {t: g.shape for t, g in grouped.items()} == {"normal": (3, 14, k), "reduce": (2, 14, k)}
    for field in (state.gamma, state.omega, state.mask):
        assert {t: g.shape for t, g in field.items()} == {"normal": (14, k), "reduce": (14, k)}


def _random_state(m, rng):
    k = len(m.primitives)
    scale = 10.0 ** rng.uniform(-3, 0.5, (14, k))  # per (edge, op), shared by the copies
    arch = {
        n: jnp.asarray(scale * rng.uniform(-1.0, 1.5, (14, k)), jnp.float32)
        for n in m.model.arch_names()
    }
    per_type = lambda lo, hi: {
        t: jnp.asarray(rng.uniform(lo, hi, (14, k)), jnp.float32) for t in m.cell_types
    }
    zero = jnp.zeros((), jnp.int32)
    state = BayesState(
        step=zero,
        params={},
        arch=arch,
        batch_stats={},
        w_opt=(),
        a_opt=(),
        rng=zero,
        gamma=per_type(0.1, 2.0),
        omega=per_type(0.1, 2.0),
        mask={t: jnp.ones((14, k), jnp.float32) for t in m.cell_types},
        hess=jax.tree.map(jnp.zeros_like, arch),
        updates=zero,
    )
    hess = {n: jnp.asarray(rng.gamma(0.5, 0.02, (14, k)), jnp.float32) for n in arch}
    return state, hess


@pytest.mark.parametrize("dependency, order", [("code", "alg1"), ("paper", "alg3")])
def test_supernet_update_follows_jaxnas_bayes(dependency, order):
    """bayes_update on the supernet's gates equals jaxnas.bayes.cell_update called by hand
    per cell type (groups = stacked copies), with H / lam_w; pruning zeroes exactly the
    gates whose gamma fails the entropy rule (or whose edge / source died), in every copy."""
    lam_w, lam_edge = 0.02, 0.05
    c = _config(lam_w=lam_w, lam_edge=lam_edge, dependency=dependency, order=order)
    c.model.layers = 5
    m = _build(c)
    state, hess = _random_state(m, np.random.default_rng(5))
    new = m.bayes_update(state, hess)
    assert int(new.updates) == 1
    pruned_any = False
    for t, names in m.cell_types.items():
        gates = jnp.stack([state.arch[n] for n in names])
        h = jnp.stack([hess[n] for n in names])
        cs, info = bayes.cell_update(
            gates,
            h,
            bayes.CellState(state.gamma[t], state.omega[t]),
            DARTS_CELL,
            dependency=dependency,
            lam_edge=lam_edge,
            lam_op=lam_w,
            order=order,
        )
        np.testing.assert_allclose(new.gamma[t], cs.gamma, rtol=1e-6)
        np.testing.assert_allclose(new.omega[t], cs.omega, rtol=1e-6)
        keep = np.asarray(info.keep)
        np.testing.assert_array_equal(np.asarray(new.mask[t]) == 1, keep)
        np.testing.assert_array_equal(keep, np.asarray(bayes.cell_keep(new.gamma[t], DARTS_CELL)))
        for n in names:
            a, a0 = np.asarray(new.arch[n]), np.asarray(state.arch[n])
            np.testing.assert_array_equal(a, np.where(keep, a0, 0.0))
        pruned_any |= bool((~keep).any()) and bool(keep.any())
    assert pruned_any  # the random case prunes some gates, not all
    # pruned gates stay pruned: w = 0 gives s = 0, so gamma = 0 at the next update
    again = m.bayes_update(new, hess)
    for t in m.cell_types:
        assert np.all(np.asarray(again.mask[t]) <= np.asarray(new.mask[t]))
        assert np.all(np.asarray(again.gamma[t])[np.asarray(new.mask[t]) == 0] == 0)


def test_update_without_pruning_keeps_the_gates():
    c = _config(prune=False)
    m = _build(c)
    state, hess = _random_state(m, np.random.default_rng(6))
    new = m.bayes_update(state, hess)
    for n in state.arch:
        np.testing.assert_array_equal(new.arch[n], state.arch[n])
    for t in m.cell_types:
        np.testing.assert_array_equal(new.mask[t], state.mask[t])
    assert any(np.any(np.asarray(new.gamma[t]) <= THR) for t in m.cell_types)


def test_bad_settings_are_clear_errors():
    with pytest.raises(ValueError, match="exact_max"):
        _build(_config(hessian="exact", exact_max=125))  # 3 layers x 14 edges x 3 gates
    _build(_config(hessian="exact", exact_max=126))  # at the limit: accepted
    with pytest.raises(ValueError, match="ggn_exact.*40 backward passes"):
        _build(_config(hessian="ggn_exact", exact_max=39))
    with pytest.raises(ValueError, match="zero-op gate"):
        _build(_config(ops=("max_pool_3x3", "skip_connect")))
    with pytest.raises(ValueError, match="search.hessian"):
        _build(_config(hessian="diag"))
    with pytest.raises(ValueError, match="lam_w"):
        _build(_config(lam_w=0.0))


# ---------------------------------------------------------------------------- derivation


def _gamma(values, k=5):
    """(14, k) gamma, everything pruned (0) but the {(edge, col): value} entries."""
    g = np.zeros((14, k))
    for (e, o), val in values.items():
        g[e, o] = val
    return g


def test_entropy_rule_derivation():
    """Every op above 1/(2 pi e) with a live edge gate and source survives (two on one
    edge here); a node without inputs is dead, leaves the concat and kills its out-edges;
    a dead zero-op gate kills its ops."""
    ops = EDGE_OPS  # none, max, skip, bn_sep3, bn_dil3
    g = _gamma(
        {
            # node 0 (id 2) <- edge 0 (0->2): max and bn_sep3 survive, skip just below
            (0, 0): 5.0,
            (0, 1): 0.4,
            (0, 2): THR - 1e-4,
            (0, 3): 0.9,
            # edge 1 (1->2): ops alive but the zero-op gate is dead
            (1, 0): 0.05,
            (1, 4): 3.0,
            # node 1 (id 3) <- edges 2, 3, 4: nothing above threshold -> dead
            (2, 0): 1.0,
            (2, 1): 0.05,
            (4, 0): 1.0,
            # node 2 (id 4) <- edge 6 (1->4) with bn_dil3 just above; edge 8 from dead 3
            (6, 0): 1.0,
            (6, 4): THR + 1e-4,
            (8, 0): 9.0,
            (8, 3): 9.0,
            # node 3 (id 5) <- only edge 12 (3->5) from the dead node 3 -> dead
            (12, 0): 2.0,
            (12, 2): 2.0,
        }
    )
    cell = derive_bayes_cell(g, ops)
    assert cell.nodes == (
        (("bn_sep_conv_3x3", 0), ("max_pool_3x3", 0)),  # largest gamma first
        (),
        (("bn_dil_conv_3x3", 1),),
        (),
    )
    assert cell.concat == (2, 4)
    check_genotype(Genotype(cell, cell), layers=3)
    # the BN-ReLU-conv ops are known ops: the genotype survives JSON with the default check
    from jaxnas.genotype import from_json, to_json

    assert from_json(to_json(Genotype(cell, cell))) == Genotype(cell, cell)
    # the discrete cell builds two ops on one edge; size = its kept ops + preprocessing
    c, c0, c1 = 4, 6, 5
    mod = DiscreteCell(cell, c, reduction=False, reduction_prev=False)
    s0, s1 = jnp.ones((2, 8, 8, c0)), jnp.ones((2, 8, 8, c1))
    v = jax.eval_shape(lambda: mod.init(jax.random.key(0), s0, s1, False))
    bn = 2 * c
    pre = (c0 * c + bn) + (c1 * c + bn)
    assert count_params(v["params"]) == pre + 2 * (bn + 9 * c + c * c) + (bn + 9 * c + c * c)
    out = jax.eval_shape(lambda v: mod.apply(v, s0, s1, False), v)
    assert out.shape == (2, 8, 8, 2 * c)


def test_derivation_all_pruned_and_errors(caplog):
    cell = derive_bayes_cell(np.zeros((14, 5)), EDGE_OPS)
    assert cell.nodes == ((), (), (), ()) and cell.concat == (5,)
    assert "pruned" in caplog.text
    full = derive_bayes_cell(np.ones((14, 5)), EDGE_OPS)  # gamma(0) = 1: the supernet
    assert [len(n) for n in full.nodes] == [8, 12, 16, 20] and full.concat == (2, 3, 4, 5)
    with pytest.raises(ValueError, match="none"):
        derive_bayes_cell(np.ones((14, 4)), EDGE_OPS[1:])
    with pytest.raises(ValueError, match="shape"):
        derive_bayes_cell(np.ones((14, 4)), EDGE_OPS)


def test_configs_load():
    c = load_config(CONFIGS / "bayesnas_cifar10.py")
    assert c.method == "bayesnas" and c.search.lam_w == 0.01 and c.data.batch_size == 18
    assert (c.model.layers, c.model.init_channels, c.search.epochs) == (8, 16, 1)
    assert (c.search.warmup_epochs, c.optim.w_lr, c.optim.w_weight_decay) == (0.1, 0.1, 1e-4)
    for lam in (0.007, 0.005):
        assert (
            load_config(CONFIGS / "bayesnas_cifar10.py", [f"search.lam_w={lam}"]).search.lam_w
            == lam
        )
    t = load_config(CONFIGS / "bayesnas_fmnist_tiny.py")
    assert t.method == "bayesnas" and t.data.dataset == "fashion_mnist"


# ---------------------------------------------------------------------------- the step


def _batches(n, seed=0):
    rng = np.random.default_rng(seed)
    return [
        (
            jnp.asarray(rng.normal(size=(4, *SHAPE)), jnp.float32),
            jnp.asarray(rng.integers(0, 10, 4), jnp.int32),
        )
        for _ in range(n)
    ]


@pytest.fixture(scope="module")
def run3():
    """Three steps, 2 steps per epoch: step 1 is the warm-up (0.5 epoch), step 2 ends
    epoch 1 with an update, step 3 none.  No hard pruning, so the gates the update saw
    are in the state."""
    c = _config(warmup_epochs=0.5, update_every=1, prune=False, hessian_samples=4)
    m = _build(c, steps_per_epoch=2)
    s0 = m.init(jax.random.key(0), np.zeros((4, *SHAPE), np.float32))
    bs = _batches(6)
    states, metrics = [s0], []
    for i in range(3):
        s, met = m.train_step(states[-1], bs[2 * i], bs[2 * i + 1])
        states.append(s)
        metrics.append(jax.device_get(met))
    return m, bs, states, metrics


def test_schedule_warmup_then_one_update(run3):
    m, _, (s0, s1, s2, s3), met = run3
    assert (m.warmup_steps, m.update_period) == (1, 2)
    assert [bool(m.is_update_step(i)) for i in range(5)] == [False, True, False, True, False]
    for a in jax.tree.leaves(s0.arch) + jax.tree.leaves(s1.arch):
        assert np.all(np.asarray(a) == 1.0)  # gates start at 1 and are frozen in the warm-up
    assert not jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), s0.params, s1.params))
    assert any(np.any(np.asarray(a) != 1.0) for a in jax.tree.leaves(s2.arch))
    assert [int(s.updates) for s in (s1, s2, s3)] == [0, 1, 1]
    assert [m["warmup"] for m in met] == [1.0, 0.0, 0.0]
    assert all(np.all(np.asarray(g) == 1.0) for g in jax.tree.leaves(s1.gamma))
    for t in s2.gamma:
        assert np.any(np.asarray(s2.gamma[t]) != 1.0)
        np.testing.assert_array_equal(s3.gamma[t], s2.gamma[t])  # no update at step 3
    assert all(np.all(np.asarray(h) >= 0) and np.any(np.asarray(h) > 0) for h in s2.hess.values())


def test_step_update_is_the_pure_update(run3):
    """The update inside the jitted step is jaxnas.bayes.cell_update on the trained gates
    and the stored Hessian, with gamma(t-1) = omega(t-1) = 1."""
    m, _, (_, s1, s2, _), _ = run3
    for t, names in m.cell_types.items():
        cs, _ = bayes.cell_update(
            jnp.stack([s2.arch[n] for n in names]),
            jnp.stack([s2.hess[n] for n in names]),
            bayes.CellState(s1.gamma[t], s1.omega[t]),
            DARTS_CELL,
            lam_edge=m.lam_edge,
            lam_op=m.lam_op,
        )
        np.testing.assert_allclose(s2.gamma[t], cs.gamma, rtol=1e-5)
        np.testing.assert_allclose(s2.omega[t], cs.omega, rtol=1e-5)
    g = m.genotype(s2)
    check_genotype(g, layers=3)
    assert set(m.arch_weights(s2)) == {"normal", "reduce", "entropy_normal", "entropy_reduce"}


def test_step_is_deterministic(run3):
    m, bs, states, _ = run3
    s = m.init(jax.random.key(0), np.zeros((4, *SHAPE), np.float32))
    for i in range(3):
        s, _ = m.train_step(s, bs[2 * i], bs[2 * i + 1])
    same = jax.tree.map(lambda a, b: bool(np.array_equal(a, b)), s, states[-1])
    assert jax.tree.all(same)


@pytest.mark.slow
def test_step_hessian_is_the_estimator_on_the_last_batch(run3):
    """The Hessian stored by the step equals gate_hessian called on the trained state and
    the step's last batch with the step's probe key."""
    m, bs, (_, s1, s2, _), _ = run3
    _, key = jax.random.split(jax.random.wrap_key_data(s1.rng))
    h = jax.jit(m.gate_hessian)(s2.params, s2.arch, s2.batch_stats, bs[3], key)
    for n in h:
        np.testing.assert_allclose(h[n], s2.hess[n], rtol=1e-4, atol=1e-7)


@pytest.mark.slow
def test_tiny_search_end_to_end(tmp_path):
    """Two epochs of the tiny Fashion-MNIST config through the shared runner (shrunk):
    one warm-up, two updates, the genotype file and its picture."""
    from jaxnas import data
    from jaxnas.genotype import load
    from jaxnas.plots import read_metrics
    from jaxnas.run import search

    try:
        data.load("fashion_mnist", "train", limit=8)
    except data.DatasetNotFoundError as e:
        pytest.skip(str(e))
    # the runner takes named op lists only: name a short one (a shorter compile); its conv
    # is BayesNAS' BN-first dilated one (one depthwise + pointwise block where
    # bn_sep_conv_3x3 stacks two: the same kind of op, a shorter compile)
    PRIMITIVE_SETS.setdefault(
        "test_bayesnas_4", ("none", "max_pool_3x3", "skip_connect", "bn_dil_conv_3x3")
    )
    cfg = load_config(
        CONFIGS / "bayesnas_fmnist_tiny.py",
        [
            "data.limit=128",
            "data.batch_size=16",
            # one (reduction) cell: the warm-up, the update steps and the genotype file
            # are the runner's and the method's, whatever the cells; compile time is not
            "model.layers=1",
            "model.init_channels=2",
            "model.primitives=test_bayesnas_4",
            "search.hessian_samples=2",
            "search.warmup_epochs=0.25",  # 4 steps per epoch: 1 warm-up step
            "run.log_every_steps=1",
            "run.eval_limit=32",
            "run.tensorboard=false",
        ],
    )
    summary = search(cfg, tmp_path / "run", progress=False)
    assert summary["method"] == "bayesnas" and summary["epochs"] == 2
    steps = [r for r in read_metrics(summary["metrics"], kind=None) if r["kind"] == "step"]
    assert [r["train/warmup"] for r in steps] == [1.0] + [0.0] * 7
    assert [r["train/gamma_updates"] for r in steps] == [0, 0, 0, 1, 1, 1, 1, 2]
    assert 0.0 <= steps[-1]["train/kept_ops"] <= 1.0
    g = load(summary["genotype_json"])  # what `jaxnas train --genotype` reads
    check_genotype(g, layers=3)
    assert summary["genotype_pictures"]
