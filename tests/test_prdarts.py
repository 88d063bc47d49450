"""PR-DARTS search: the gate supernet (two ops per edge, only those computed), the step,
the derivation, the configs, and a short real search.

Compile time dominates on CPU, so the supernet checks run on one normal cell (the 8
DARTS ops, C=4, 8x8, batch 4) and the step checks on one PRDARTS instance (C=2, 3 cells,
four ops) whose ``step_with`` takes tau and the lambdas as traced scalars: every step
below reuses one compiled program.
"""

import dataclasses
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnas import gates, ops
from jaxnas.config import ConfigError, default_config, load_config
from jaxnas.search import build
from jaxnas.search.prdarts import PRDARTS, GateMixer
from jaxnas.search.prdarts_reg import chain_edges
from jaxnas.spaces.darts import DARTS_CELL
from jaxnas.supernet import Mixer, SearchCell
from jaxnas.xla import jit_init

# The programs these tests compile to compare values (the cell's init, applies and
# gradients) go through jit_init: compiled without LLVM optimisation (a third less CPU time
# to compile, the same functions; each runs a few times on tiny inputs).

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRIMS = ops.DARTS_PRIMITIVES
TAU = 0.5


@dataclasses.dataclass(frozen=True)
class DenseMixer(Mixer):
    """The same weighted sum as :class:`GateMixer` but with the base class's ``active``
    (None): every op is computed and multiplied by its weight (zeros included)."""

    def init_arch(self, rng, shape):
        return jnp.zeros(shape)

    def edge_weights(self, arch, rng=None, step_input=None):
        return arch


class Poison(nn.Module):
    """An op whose output is NaN: any weighted sum that computes it is NaN (0 * NaN)."""

    stride: int = 1

    @nn.compact
    def __call__(self, x, train):
        return jnp.full_like(x[:, :: self.stride, :: self.stride], jnp.nan)


def _inputs():
    r = np.random.default_rng(0)
    return tuple(jnp.asarray(r.normal(size=(4, 8, 8, 3)), jnp.float32) for _ in range(2))


def _cell(prims, mixer):
    return SearchCell(4, False, False, tuple(prims), mixer, True)


@pytest.fixture(scope="module")
def cell_setup():
    """A normal cell with the 8 DARTS ops, its variables and a two-op gate sample."""
    s0, s1 = _inputs()
    cell = _cell(PRIMS, GateMixer())
    variables = jit_init(cell.init)(jax.random.key(0), s0, s1, jnp.ones((14, 8)))
    beta = 0.5 * jax.random.normal(jax.random.key(1), (14, 8))
    sample = gates.sample_two_ops(jax.random.key(2), beta, TAU, mode="paper")
    return cell, variables, (s0, s1), beta, sample


def _apply(cell, variables, s, w):
    out, _ = cell.apply(variables, *s, w, mutable=["batch_stats"])
    return out


def test_two_ops_per_edge_carry_weight(cell_setup):
    *_, beta, sample = cell_setup
    mask = np.asarray(sample.mask)
    np.testing.assert_array_equal(mask.sum(-1), 2)
    w = np.asarray(sample.weights)
    assert np.all(w[mask == 0] == 0) and np.all((w >= 0) & (w <= 1))
    np.testing.assert_array_equal(w[mask == 1], np.asarray(sample.gates)[mask == 1])
    # the authors' form: forward weight exactly 1 on the two kept ops, 0 elsewhere
    code = gates.sample_two_ops(jax.random.key(3), beta, TAU, mode="code")
    np.testing.assert_array_equal(np.asarray(code.weights), np.asarray(code.mask))
    np.testing.assert_array_equal(np.asarray(code.mask).sum(-1), 2)


def test_unselected_ops_are_not_computed(cell_setup, monkeypatch):
    """With a NaN-producing op among the candidates and never selected, the gate cell's
    output is finite (the op never ran), the dense cell's is NaN (it ran, times 0), and
    the gate cell equals the dense weighted sum over the 8 DARTS ops with the same gates
    (zeros elsewhere)."""
    _, variables, s, _, sample = cell_setup
    monkeypatch.setitem(ops.OPS, "poison", lambda C, st, affine, search, cfg: Poison(st))
    prims = (*PRIMS, "poison")
    w = jnp.concatenate([sample.weights, jnp.zeros((14, 1))], axis=-1)
    sparse = np.asarray(jit_init(lambda w: _apply(_cell(prims, GateMixer()), variables, s, w))(w))
    dense_poison = jit_init(lambda w: _apply(_cell(prims, DenseMixer()), variables, s, w))(w)
    dense = jit_init(lambda w: _apply(_cell(PRIMS, DenseMixer()), variables, s, w))(w[:, :8])
    assert np.all(np.isfinite(sparse))
    assert np.all(np.isnan(np.asarray(dense_poison)))
    np.testing.assert_allclose(sparse, np.asarray(dense), rtol=1e-5, atol=1e-6)
    # sanity: once selected on one edge, the poison is computed and reaches the output
    w_hit = w.at[3, 8].set(0.5)
    hit = jit_init(lambda w: _apply(_cell(prims, GateMixer()), variables, s, w))(w_hit)
    assert np.any(np.isnan(np.asarray(hit)))


def test_gradients_of_unselected_ops_are_zero_and_beta_gets_the_chain_rule(cell_setup):
    """d loss / d W is exactly 0 for every op an edge did not compute (and non-zero for
    the selected convs with a non-zero gate); d loss / d beta through the reparameterised
    gates equals d loss / d w * mask * (b - a) g_bar (1 - g_bar) / tau inside the stretch
    and 0 where the gate is clipped (paper gates)."""
    cell, variables, s, beta, sample = cell_setup
    key = jax.random.key(2)

    def loss(params, w):
        out = _apply(cell, {**variables, "params": params}, s, w)
        return jnp.mean(out**2)

    g_params, g_w = jit_init(jax.grad(loss, (0, 1)))(variables["params"], sample.weights)
    w = np.asarray(sample.weights)
    edge_params = g_params["edges"]["edge"]
    convs = [i for i, p in enumerate(PRIMS) if "conv" in p]
    for o in convs:
        norms = np.stack(
            [
                np.abs(np.asarray(leaf)).reshape(14, -1).sum(-1)
                for leaf in jax.tree.leaves(edge_params[PRIMS[o]])
            ]
        ).sum(0)  # (14,): one per edge
        assert np.all(norms[w[:, o] == 0] == 0), PRIMS[o]
        assert np.all(norms[w[:, o] != 0] > 0), PRIMS[o]
    assert any(np.any(w[:, o] != 0) for o in convs)  # the check above was not vacuous

    g_beta = jit_init(
        jax.grad(
            lambda b: loss(
                variables["params"], gates.sample_two_ops(key, b, TAU, mode="paper").weights
            )
        )
    )(beta)
    noise = gates.logistic_noise(jax.random.split(key, 3)[0], beta.shape)
    g_bar = np.asarray(gates.concrete(beta, noise, TAU))
    np.testing.assert_allclose(np.asarray(gates.stretch_clip(g_bar)), np.asarray(sample.gates))
    inside = (g_bar > -gates.A / (gates.B - gates.A)) & (
        g_bar < (1 - gates.A) / (gates.B - gates.A)
    )
    expected = (
        np.asarray(g_w)
        * np.asarray(sample.mask)
        * inside
        * (gates.B - gates.A)
        * g_bar
        * (1 - g_bar)
    ) / TAU
    np.testing.assert_allclose(np.asarray(g_beta), expected, rtol=2e-4, atol=1e-7)
    assert np.count_nonzero(np.asarray(g_beta)) > 0


# ---------------------------------------------------------------------------------------
# the search step, on a small instance

OPS4 = ("none", "max_pool_3x3", "skip_connect", "sep_conv_3x3")
SHAPE = (8, 8, 1)


def _config(**search):
    c = default_config("prdarts")
    c.model.init_channels, c.model.layers = 2, 1  # one (reduction) cell: short compile
    with c.ignore_type():
        c.model.primitives = OPS4
    c.search.epochs = 3
    for k, v in search.items():
        c.search[k] = v
    return c


@pytest.fixture(scope="module")
def method():
    return build(_config(), steps_per_epoch=2, num_classes=3, input_shape=SHAPE)


@pytest.fixture(scope="module")
def state0(method):
    x = np.zeros((2, *SHAPE), np.float32)
    return method.init(jax.random.key(0), x)


@pytest.fixture(scope="module")
def batches():
    r = np.random.default_rng(0)
    mk = lambda: (
        jnp.asarray(r.normal(size=(4, *SHAPE)), jnp.float32),
        jnp.asarray(r.integers(0, 3, 4), jnp.int32),
    )
    return mk(), mk()


def _hyper(tau, lam=(0.01, 0.005, 0.005)):
    f = lambda v: jnp.asarray(v, jnp.float32)
    return dict(tau=f(tau), lambda_skip=f(lam[0]), lambda_nonskip=f(lam[1]), lambda_path=f(lam[2]))


def _leaves_equal(a, b):
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b))


def test_step_reproducible_from_the_key_and_tau_never_recompiles(method, state0, batches):
    tb, vb = batches
    s1, m1 = method.step_with(state0, tb, vb, _hyper(0.5))
    s2, m2 = method.step_with(state0, tb, vb, _hyper(0.5))
    assert _leaves_equal(jax.tree.leaves(s1), jax.tree.leaves(s2))
    assert all(np.isfinite(float(v)) for v in m1.values())
    # another gate key (everything else equal): other gates, another step
    other = state0.replace(rng=jax.random.key_data(jax.random.key(7)))
    s3, _ = method.step_with(other, tb, vb, _hyper(0.5))
    assert not _leaves_equal(jax.tree.leaves(s1.arch), jax.tree.leaves(s3.arch))
    assert not _leaves_equal(jax.tree.leaves(s1.params), jax.tree.leaves(s3.params))
    # annealing tau (and changing the lambdas) reuses the compiled step
    for tau in (10.0, 1.0, 0.1):
        s1, _ = method.step_with(s1, tb, vb, _hyper(tau))
    method.step_with(s1, tb, vb, _hyper(0.1, (0.0, 0.0, 0.0)))
    assert method.step_with._cache_size() == 1
    assert float(m1["tau"]) == 0.5 and 0 < float(m1["ops_per_edge"]) <= 2


def test_beta_gets_a_gradient_through_the_gates(method, state0, batches):
    """With the regularizers off, the beta gradient is the cross entropy's, which reaches
    beta only through the sampled gates."""
    tb, vb = batches
    _, m = method.step_with(state0, tb, vb, _hyper(0.5, (0.0, 0.0, 0.0)))
    assert float(m["reg"]) == 0.0
    assert float(m["arch_grad_norm"]) > 0


def test_tau_schedule_per_epoch(method):
    # 3 epochs of 2 steps: tau 10, 5.05, 0.1 (linear per epoch, L188)
    taus = [float(method.tau_at(k)) for k in range(8)]
    np.testing.assert_allclose(taus, [10, 10, 5.05, 5.05, 0.1, 0.1, 0.1, 0.1], rtol=1e-5)


def test_arch_weights_are_activation_probabilities(method, state0):
    w = method.arch_weights(state0)  # step 0: tau = 10
    for k, beta in state0.arch.items():
        expected = 1 / (1 + np.exp(-(np.asarray(beta, np.float64) + 10 * np.log(11))))
        np.testing.assert_allclose(w[k], expected, rtol=1e-6)


def test_derivation_on_hand_made_beta(method, state0):
    """``none`` has the largest beta everywhere and is never picked; the paper rule may
    take both inputs of a node from one predecessor, the DARTS rule may not."""
    skip, conv, pool = (OPS4.index(n) for n in ("skip_connect", "sep_conv_3x3", "max_pool_3x3"))
    beta = np.full((14, 4), -1.0)
    beta[:, OPS4.index("none")] = 5.0
    chain = chain_edges(DARTS_CELL)  # 1->2, 2->3, 3->4, 4->5
    for e in chain:
        beta[e, conv] = 2.0
        beta[e, pool] = 1.5  # second best on the chain edge itself
    beta[0, skip] = 1.0  # 0 -> 2
    state = state0.replace(arch={"normal": jnp.asarray(beta), "reduce": jnp.asarray(beta)})
    g = method.genotype(state)
    assert all(op != "none" for op, _ in g.normal.pairs)
    assert g.normal.nodes == (
        (("sep_conv_3x3", 1), ("max_pool_3x3", 1)),
        (("sep_conv_3x3", 2), ("max_pool_3x3", 2)),
        (("sep_conv_3x3", 3), ("max_pool_3x3", 3)),
        (("sep_conv_3x3", 4), ("max_pool_3x3", 4)),
    )
    darts_rule = build(
        _config(derive="darts"), steps_per_epoch=2, num_classes=3, input_shape=SHAPE
    ).genotype(state)
    assert darts_rule.normal.nodes[0] == (("sep_conv_3x3", 1), ("skip_connect", 0))
    for node in darts_rule.normal.nodes:
        assert len({src for _, src in node}) == 2
        assert all(op != "none" for op, _ in node)


def test_bad_settings_are_one_line_errors():
    kw = dict(steps_per_epoch=2, num_classes=3, input_shape=SHAPE)
    for key, value in [
        ("gates", "random"),
        ("reg_variant", "both"),
        ("derive", "best"),
        ("ops_per_edge", 5),
        ("tau_min", 20.0),
        ("lambda_path", -1.0),
    ]:
        with pytest.raises(ValueError, match=key):
            PRDARTS(_config(**{key: value}), **kw)
    c = _config()
    with c.ignore_type():
        c.model.primitives = ("none", "max_pool_3x3", "sep_conv_3x3")
    with pytest.raises(ValueError, match="skip_connect"):
        PRDARTS(c, **kw)


def test_configs():
    paper = load_config(os.path.join(ROOT, "configs/prdarts_cifar10.py"))
    assert paper.method == "prdarts" and paper.search.epochs == 200
    assert (paper.search.tau_max, paper.search.tau_min) == (10.0, 0.1)
    assert (paper.model.init_channels, paper.model.layers, paper.data.batch_size) == (16, 8, 128)
    s = paper.search
    assert (s.lambda_skip, s.lambda_nonskip, s.lambda_path) == (0.01, 0.005, 0.005)
    tiny = load_config(os.path.join(ROOT, "configs/prdarts_fmnist_tiny.py"))
    assert tiny.data.dataset == "fashion_mnist" and tiny.search.ops_per_edge == 2
    with pytest.raises(ConfigError, match="lambda_path"):
        load_config(os.path.join(ROOT, "configs/prdarts_fmnist_tiny.py"), ["search.lambda_pth=0"])


@pytest.mark.slow
def test_real_search_one_epoch(tmp_path):
    """One short epoch of the tiny Fashion-MNIST config (one reduction cell at C = 2, 128
    images, four ops: zero, pooling, skip, a separable conv) through the runner
    (checkpoint, evaluation, arch weights, genotype)."""
    import json

    from jaxnas import data
    from jaxnas.run import search

    try:
        data.load("fashion_mnist", "train", limit=1)
    except data.DatasetNotFoundError as e:
        pytest.skip(str(e))
    c = load_config(
        os.path.join(ROOT, "configs/prdarts_fmnist_tiny.py"),
        # 1 cell instead of 5 and 4 ops instead of DARTS' 8: the same program structure
        # (every kind of op PR-DARTS groups; the regulariser still combines both cell
        # types' gates) at a shorter compile.  The separable conv is the dilated one (one
        # depthwise + pointwise + BN block where sep_conv_3x3 stacks two; both are the
        # path group of PR-DARTS' regulariser)
        [
            "search.epochs=1",
            "data.limit=128",
            "model.layers=1",
            "model.init_channels=2",
            "model.primitives=" + ",".join(OPS4).replace("sep_conv_3x3", "dil_conv_3x3"),
            "run.eval_limit=32",
            "run.tensorboard=false",
        ],
    )
    s = search(c, str(tmp_path / "run"), progress=False)
    final = s["final"]
    assert s["method"] == "prdarts" and s["epochs"] == 1
    for k in ("train/loss", "valid/loss", "test/accuracy", "train/reg", "train/tau"):
        assert np.isfinite(final[k]), k
    assert 0 < final["train/ops_per_edge"] <= 2
    g = json.load(open(s["genotype_json"]))
    assert "none" not in json.dumps(g)
    w = np.load(os.path.join(s["workdir"], "alphas", "epoch_001.npz"))
    assert set(w.files) == {"normal", "reduce"} and np.all((w["normal"] > 0) & (w["normal"] < 1))


# ---------------------------------------------------------------------------------------
# the Fig. 1 ablation's bookkeeping (experiments/prdarts_theory.py ablation)


def _theory_module():
    import importlib.util
    import sys

    path = os.path.join(ROOT, "experiments", "prdarts_theory.py")
    spec = importlib.util.spec_from_file_location("prdarts_theory_experiment", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("prdarts_theory_experiment", mod)
    spec.loader.exec_module(mod)
    return mod


def test_ablation_cell_stats_and_claims():
    from jaxnas.genotype import DARTS_V2, PRDARTS

    E = _theory_module()
    # the released PR-DARTS cell: one skip, the full conv chain 1 -> 2 -> 3 -> 4 -> 5
    assert E.cell_stats(PRDARTS.normal) == dict(skips=1, depth=4, conv_depth=4, conv_chain=4)
    # DARTS_V2: two skips; only node 5 reads another intermediate node (dil_conv from 2)
    assert E.cell_stats(DARTS_V2.normal) == dict(skips=2, depth=2, conv_depth=2, conv_chain=1)
    darts, pr = E.cell_stats(DARTS_V2.normal), E.cell_stats(PRDARTS.normal)
    claims = {c["name"]: c["held"] for c in E.ablation_claims(dict(darts=darts, both=pr))}
    assert claims == {"darts_most_skips": True, "full_conv_chain": True}
    claims = E.ablation_claims(dict(darts=pr, gates=pr, path=darts, both=darts))
    assert not any(c["held"] for c in claims)
