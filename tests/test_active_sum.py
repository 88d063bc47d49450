"""The edge's sum over only the active ops (one ``lax.switch`` per slot, for a mixer with
``max_active`` that combines by ``weighted_sum``) against the general path (a
``lax.cond`` per op, zeros for the skipped ones, then ``combine``)."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxnas import gates, ops, supernet
from jaxnas.search.gdas import GumbelMixer
from jaxnas.search.prdarts import GateMixer
from jaxnas.supernet import SearchCell
from jaxnas.xla import jit_init

# the zero op, a pooling op with BN, the identity (a factorized reduction at stride 2)
# and a convolution
PRIMS = ("none", "max_pool_3x3", "skip_connect", "sep_conv_3x3")
N = len(PRIMS)


@dataclasses.dataclass(frozen=True)
class ZerosThenCombine(GateMixer):
    """GateMixer through the general path: skipped ops as zero tensors, then
    ``combine`` (``weighted_sum``) over all eight outputs."""

    def combines_by_weighted_sum(self) -> bool:
        return False


def _cell_fn(mixer, reduction, dtype):
    cell = SearchCell(4, reduction, False, PRIMS, mixer, True)
    r = np.random.default_rng(0)
    s0, s1 = (jnp.asarray(r.normal(size=(3, 8, 8, 5)), dtype) for _ in range(2))
    variables = jit_init(cell.init)(jax.random.key(0), s0, s1, jnp.ones((14, N), dtype))
    variables = jax.tree.map(lambda a: a.astype(dtype), variables)

    def loss(params, w):
        out, _ = cell.apply({**variables, "params": params}, s0, s1, w, mutable=["batch_stats"])
        return jnp.sum(jnp.sin(out))

    return variables["params"], jit_init(jax.value_and_grad(loss, argnums=(0, 1)))


def _both_ways(reduction, dtype):
    beta = 0.5 * jax.random.normal(jax.random.key(1), (14, N), dtype)
    w = gates.sample_two_ops(jax.random.key(2), beta, 0.5, mode="paper").weights
    # one edge with a single active op: the second slot adds nothing
    w = w.at[0].set(jnp.where(jnp.arange(N) == jnp.argmax(w[0]), w[0], 0))
    params, fast = _cell_fn(GateMixer(max_active=2), reduction, dtype)
    _, slow = _cell_fn(ZerosThenCombine(), reduction, dtype)
    return w, fast(params, w), slow(params, w)


def test_active_sum_is_the_general_path(monkeypatch):
    """A reduction cell (its input edges at stride 2, the others at 1) with two sampled
    ops per edge (PR-DARTS' gates; one edge with one),
    float64: the value and the weight and gate gradients agree to round-off (the same
    terms, but XLA may fuse a multiply-add, and the edge input's cotangent sums the
    ops' terms in another order), and a skipped op's gate gets a gradient of exactly
    0."""
    monkeypatch.setattr(supernet, "ACTIVE_SWITCH_MIN_SIZE", 0)  # these edges are tiny
    with jax.enable_x64():
        w, (v1, (gp1, gw1)), (v2, (gp2, gw2)) = _both_ways(True, jnp.float64)
    np.testing.assert_allclose(float(v1), float(v2), rtol=1e-13)
    for a, b in zip(jax.tree.leaves((gp1, gw1)), jax.tree.leaves((gp2, gw2)), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-12)
    assert np.all(np.asarray(gw1)[np.asarray(w) == 0] == 0)
    assert np.any(np.asarray(gw1) != 0)


def test_which_mixers_add_only_active_ops():
    """GDAS adds only the sampled op with ``unselected_grad="zero"``; with ``"bias"`` its
    combine adds the unselected weights, so it takes the general path."""
    assert GateMixer().combines_by_weighted_sum()
    assert GumbelMixer().max_active == 1 and GateMixer().max_active is None
    assert GumbelMixer(unselected_grad="zero").combines_by_weighted_sum()
    assert not GumbelMixer(unselected_grad="bias").combines_by_weighted_sum()
    assert not ZerosThenCombine().combines_by_weighted_sum()


class Poison(nn.Module):
    """An op whose output is NaN: a sum that computes it is NaN, even times 0."""

    stride: int = 1

    @nn.compact
    def __call__(self, x, train):
        return jnp.full_like(x[:, :: self.stride, :: self.stride], jnp.nan)


def test_a_skipped_op_is_not_computed(monkeypatch):
    """A NaN op never active leaves the output finite; active on one edge, it is NaN."""
    monkeypatch.setattr(supernet, "ACTIVE_SWITCH_MIN_SIZE", 0)
    monkeypatch.setitem(ops.OPS, "poison", lambda C, st, affine, search, cfg: Poison(st))
    cell = SearchCell(4, True, False, (*PRIMS, "poison"), GateMixer(max_active=2), True)
    s = jnp.ones((2, 8, 8, 5))
    variables = jit_init(cell.init)(jax.random.key(0), s, s, jnp.ones((14, N + 1)))
    apply = jit_init(lambda w: cell.apply(variables, s, s, w, mutable=["batch_stats"])[0])
    w = jnp.zeros((14, N + 1)).at[:, 2].set(1.0).at[:, 3].set(0.5)
    assert np.all(np.isfinite(np.asarray(apply(w))))
    assert np.any(np.isnan(np.asarray(apply(w.at[5, 3].set(0).at[5, N].set(1.0)))))


def _cond_branches(jaxpr) -> list[int]:
    """The branch count of every ``cond`` (``lax.switch`` too) in ``jaxpr``, nested."""
    out = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "cond":
            out.append(len(eqn.params["branches"]))
        for v in eqn.params.values():
            for sub in v if isinstance(v, (tuple, list)) else [v]:
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    out += _cond_branches(inner)
    return out


def test_small_edges_keep_a_cond_per_op(monkeypatch):
    """Below ``ACTIVE_SWITCH_MIN_SIZE`` every op gets a two-way cond; at or above it,
    each of the two slots gets one switch over the ops it can hold and "nothing" (4,
    then 3 branches)."""
    cell = SearchCell(4, False, False, PRIMS, GateMixer(max_active=2), True)
    s = jnp.ones((2, 8, 8, 5))
    variables = jit_init(cell.init)(jax.random.key(0), s, s, jnp.ones((14, N)))

    def branches():
        fn = lambda w: cell.apply(variables, s, s, w, mutable=["batch_stats"])[0]  # noqa: E731
        return sorted(_cond_branches(jax.make_jaxpr(fn)(jnp.ones((14, N))).jaxpr))

    assert branches() == [2] * (N - 1)  # edges of 2*8*8*4 elements: below the bound
    monkeypatch.setattr(supernet, "ACTIVE_SWITCH_MIN_SIZE", 2 * 8 * 8 * 4)
    assert branches() == [3, 4]  # the slots' switches: their ops and "nothing"
