"""jaxnas.optim.path_snapshot: the sparse solution at a chosen sparsity along a lambda path."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxnas import optim

# A least-squares problem whose minimiser has entries of many sizes, so that a rising
# lambda zeroes them one after another.
TARGET = {"a": jnp.array([3.0, -2.5, 2.0, 1.5, -1.0, 0.7, 0.4, -0.2]), "b": jnp.array([1.0, -0.1])}


def _run(tx, steps):
    """``steps`` ISTA/HAPG steps on ``0.5 ||x - TARGET||^2``: (params, states, thetas) per step."""
    params = jax.tree.map(jnp.zeros_like, TARGET)
    state = tx.init(params)
    trace = []
    for _ in range(steps):
        grads = jax.tree.map(lambda x, t: x - t, params, TARGET)
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        theta = optax.tree_utils.tree_get(state, "theta")
        trace.append((params, state, jax.tree.map(np.asarray, theta)))
    return trace


def _hapg(lam_per_step):
    return optim.hapg(0.5, lambda c: lam_per_step * c, alpha=1.0, momentum=0.0)


def test_path_snapshot_ends_each_leafs_path_at_max_nonzeros():
    steps, k = 60, 3
    plain = _run(_hapg(0.1), steps)
    wrapped = _run(optim.path_snapshot(_hapg(0.1), k), steps)
    state = wrapped[-1][1]
    for leaf in ("a", "b"):
        # where the plain path first has 1..k non-zeros, found by scanning it by hand
        path = [t[leaf] for _, _, t in plain]
        nnz = [int(np.count_nonzero(t)) for t in path]
        end = next(i for i, n in enumerate(nnz) if 0 < n <= k)
        np.testing.assert_array_equal(np.asarray(state.snapshot[leaf]), path[end])
        assert bool(state.frozen[leaf])
        # up to that step the wrapped run is the plain one; after it the leaf stands still
        for i in range(end + 1):
            np.testing.assert_array_equal(wrapped[i][0][leaf], plain[i][0][leaf])
        for i in range(end + 1, steps):
            np.testing.assert_array_equal(wrapped[i][0][leaf], plain[end][0][leaf])
    # "a" passes through k non-zeros on the plain path, which then empties it
    nnz_a = [int(np.count_nonzero(t["a"])) for _, _, t in plain]
    assert k in nnz_a and nnz_a[-1] == 0
    assert int(np.count_nonzero(state.snapshot["a"])) == k


def test_path_snapshot_keeps_the_last_nonempty_theta_when_lambda_jumps_past():
    # lambda 0 for 10 steps (theta converges towards TARGET, dense), then so large that
    # one prox step zeroes everything: the snapshot is the dense theta before the jump
    # and the params stay where they gave it.
    tx = optim.hapg(0.5, lambda c: jnp.where(c < 10, 0.0, 100.0), alpha=1.0, momentum=0.0)
    plain = _run(tx, 15)
    trace = _run(optim.path_snapshot(tx, 2), 15)
    assert np.count_nonzero(plain[-1][2]["a"]) == 0
    state = trace[-1][1]
    np.testing.assert_array_equal(np.asarray(state.snapshot["a"]), plain[9][2]["a"])
    assert np.count_nonzero(state.snapshot["a"]) == TARGET["a"].size
    np.testing.assert_array_equal(trace[-1][0]["a"], plain[9][0]["a"])


def test_path_snapshot_is_jittable_and_rejects_bad_counts():
    tx = optim.path_snapshot(_hapg(0.1), 2)
    params = jax.tree.map(jnp.zeros_like, TARGET)
    state = tx.init(params)
    step = jax.jit(tx.update)
    jit_state = state
    for _ in range(40):
        grads = jax.tree.map(lambda x, t: x - t, params, TARGET)
        updates, state = tx.update(grads, state, params)
        _, jit_state = step(grads, jit_state, params)
        params = optax.apply_updates(params, updates)
    jax.tree.map(np.testing.assert_allclose, state.snapshot, jit_state.snapshot)
    with pytest.raises(ValueError, match="max_nonzeros must be >= 1"):
        optim.path_snapshot(_hapg(0.1), 0)
