"""The method contract (``jaxnas.search.method``) and the shared SGD (``jaxnas.common``)."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxnas.common import momentum_buffer, torch_sgd
from jaxnas.search import METHODS
from jaxnas.search.method import SearchMethodBase, as_key


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_is_built_by_the_one_setup(name):
    """Every registered method subclasses the base and overrides hooks, never the
    constructor: the only ``__init__`` in its class chain is the base's."""
    cls = METHODS[name]
    assert issubclass(cls, SearchMethodBase)
    owners = [k for k in inspect.getmro(cls) if "__init__" in vars(k) and k is not object]
    assert owners == [SearchMethodBase]


@pytest.mark.parametrize("clip", [0.0, 0.5])
@pytest.mark.parametrize("nesterov", [False, True])
def test_torch_sgd_closed_form(clip, nesterov):
    """Two steps against PyTorch's SGD written out: g <- clip(g), g <- g + wd w,
    m <- mu m + g, w <- w - lr m (Nesterov: w - lr (g + mu m))."""
    lr, mu, wd = 0.1, 0.9, 0.01
    w = {"a": jnp.array([1.0, -2.0]), "b": jnp.array([3.0])}
    grads = [
        {"a": jnp.array([0.3, 0.4]), "b": jnp.array([1.2])},
        {"a": jnp.array([-1.0, 0.5]), "b": jnp.array([0.0])},
    ]
    tx = torch_sgd(lr, momentum=mu, weight_decay=wd, grad_clip=clip, nesterov=nesterov)
    state = tx.init(w)
    ref_w = {k: np.asarray(v, np.float64) for k, v in w.items()}
    ref_m = {k: np.zeros_like(v) for k, v in ref_w.items()}
    for g in grads:
        upd, state = tx.update(g, state, w)
        w = optax.apply_updates(w, upd)
        g = {k: np.asarray(v, np.float64) for k, v in g.items()}
        norm = np.sqrt(sum(np.sum(v**2) for v in g.values()))
        scale = min(1.0, clip / norm) if clip > 0 else 1.0
        d = {k: scale * g[k] + wd * ref_w[k] for k in g}
        ref_m = {k: mu * ref_m[k] + d[k] for k in g}
        step = {k: d[k] + mu * ref_m[k] if nesterov else ref_m[k] for k in g}
        ref_w = {k: ref_w[k] - lr * step[k] for k in g}
    for k in w:
        np.testing.assert_allclose(w[k], ref_w[k], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(momentum_buffer(state)[k], ref_m[k], rtol=1e-6, atol=1e-7)


def test_as_key_accepts_typed_and_raw_keys():
    """A raw uint32 key and the typed key it wraps give the same key."""
    key = jax.random.key(3)
    raw = jax.random.key_data(key)
    np.testing.assert_array_equal(jax.random.key_data(as_key(raw)), raw)
    assert as_key(key) is key
