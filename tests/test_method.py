"""The method contract (``jaxnas.search.method``) and the shared SGD (``jaxnas.common``)."""

import inspect

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jaxnas.common import momentum_buffer, torch_sgd
from jaxnas.config import default_config
from jaxnas.search import METHODS, build
from jaxnas.search.method import (
    SearchMethodBase,
    SearchState,
    as_key,
    check_choices,
    step_on,
    supernet_config,
)
from jaxnas.supernet import resolve_remat


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_is_built_by_the_one_setup(name):
    """Every registered method subclasses the base and overrides hooks, never the
    constructor: the only ``__init__`` in its class chain is the base's."""
    cls = METHODS[name]
    assert issubclass(cls, SearchMethodBase)
    owners = [k for k in inspect.getmro(cls) if "__init__" in vars(k) and k is not object]
    assert owners == [SearchMethodBase]


def test_every_search_method_shares_the_core():
    """Image and recurrent methods alike take the one setup and the data-parallel entry
    points from ``MethodCore``: none defines ``set_up``, ``mesh_steps`` or ``mesh_entry``
    (the recurrent search gives only its layout, ``entry_shardings``)."""
    from jaxnas.search.core import MethodCore
    from jaxnas.search.sparsenas_rnn import SparseNASRNN

    for cls in [*METHODS.values(), SparseNASRNN]:
        assert issubclass(cls, MethodCore)
        for name in ("set_up", "mesh_steps", "mesh_entry"):
            owners = [k for k in inspect.getmro(cls) if name in vars(k)]
            assert owners == [MethodCore], (cls, name)


def test_one_registry_the_config_line_is_the_method(monkeypatch):
    """``jaxnas.search.METHODS`` is found from ``jaxnas.config.METHODS``, not listed
    twice: each class is the one its config line names (class ``name`` == key, module ==
    the line's module); a non-search kind, or a line whose module has no class of that
    name, gives None; an unknown name is a ``ConfigError``."""
    from jaxnas import config as config_module
    from jaxnas.search import method_class

    for name, cls in METHODS.items():
        assert cls.name == name
        assert config_module.METHODS[name] == cls.__module__
    assert method_class("train") is None
    assert method_class("rarts-width") is None
    # a config line whose module defines no class of that name registers no method
    monkeypatch.setitem(config_module.METHODS, "alias", "jaxnas.search.darts")
    assert method_class("alias") is None
    with pytest.raises(config_module.ConfigError, match="unknown method"):
        method_class("dartz")


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


def test_step_on_advances_step_and_key_and_keeps_the_rest():
    """``step_on``: step + 1, the new trees in place, the key stored as its data."""
    zero = jnp.zeros(())
    state = SearchState(
        step=jnp.asarray(4, jnp.int32),
        params=zero,
        arch=zero,
        batch_stats=zero,
        w_opt=zero,
        a_opt=zero,
        rng=jax.random.key_data(jax.random.key(0)),
    )
    key = jax.random.key(7)
    new = step_on(state, key, *(jnp.full((), float(i)) for i in range(1, 6)))
    assert int(new.step) == 5
    got = [new.params, new.arch, new.batch_stats, new.w_opt, new.a_opt]
    assert [float(x) for x in got] == [1.0, 2.0, 3.0, 4.0, 5.0]
    np.testing.assert_array_equal(new.rng, jax.random.key_data(key))


def test_check_choices_names_the_key_on_one_line():
    config = ml_collections.ConfigDict({"search": {"mode": "fast"}})
    check_choices(config, ("search.mode", ("fast", "slow")))
    config.search.mode = "medium"
    with pytest.raises(ValueError) as e:
        check_choices(config, ("search.mode", ("fast", "slow")))
    assert str(e.value) == "search.mode must be one of ('fast', 'slow'), got 'medium'"


def test_remat_by_backend_unless_set():
    """``model.remat=None`` (auto) rematerialises on the CPU only; a bool is kept; any
    other value is a one-line error; the method's supernet gets the resolved value."""
    assert resolve_remat(None, "cpu") is True
    assert resolve_remat(None, "gpu") is False and resolve_remat(None, "tpu") is False
    assert resolve_remat(False, "cpu") is False and resolve_remat(True, "gpu") is True
    with pytest.raises(ValueError, match="model.remat must be true, false or null"):
        resolve_remat("yes", "cpu")
    cfg = default_config("darts")
    cfg.model.update(init_channels=4, layers=2)
    for setting in (None, False, True):
        cfg.model.remat = setting
        method = build(cfg, steps_per_epoch=1, num_classes=10, input_shape=(8, 8, 1))
        assert method.model.remat == resolve_remat(setting)


def test_supernet_config_is_darts_network_with_changes():
    """The DARTS CIFAR-10 search network, keys changed or added by ``changes``."""
    base = supernet_config()
    assert (base.init_channels, base.layers, base.stem_multiplier) == (16, 8, 3)
    assert base.primitives == "darts" and base.depthwise == "auto" and base.remat is None
    c = supernet_config(layers=15, reductions=(4, 9))
    assert c.layers == 15 and tuple(c.reductions) == (4, 9) and c.init_channels == 16
    assert supernet_config().layers == 8  # a fresh section each call


def test_the_init_program_inside_another_trace_is_the_same_init():
    """``jaxnas.xla.jit_init`` (the init compiled without LLVM optimisation) is only
    the outermost program: ``method.init`` under ``jax.eval_shape`` or inside a
    caller's ``jax.jit`` (ASM-NAS' selection, the benchmarks) traces the plain init,
    with the same shapes and, to the samplers' rounding, the same values."""
    c = default_config("darts")
    c.model.init_channels, c.model.layers, c.model.primitives = 2, 1, "none,skip_connect"
    m = build(c, steps_per_epoch=1, num_classes=3, input_shape=(8, 8, 1))
    x = np.zeros((2, 8, 8, 1), np.float32)
    key = jax.random.key(3)
    top = m.init(key, x)
    shapes = jax.eval_shape(m.init, key, x)
    inside = jax.jit(m.init)(key, x)
    assert jax.tree.structure(top) == jax.tree.structure(shapes) == jax.tree.structure(inside)
    for a, s, b in zip(jax.tree.leaves(top), jax.tree.leaves(shapes), jax.tree.leaves(inside)):
        assert a.shape == s.shape == b.shape and a.dtype == s.dtype == b.dtype
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-6)
