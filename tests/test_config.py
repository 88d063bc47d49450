"""Config files: defaults, key checking, overrides, JSON."""

from __future__ import annotations

import json
import pathlib
import textwrap

import ml_collections
import pytest

from jaxnas import config as config_lib
from jaxnas.config import ConfigError, default_config, load_config

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _write(tmp_path, body: str, name: str = "cfg.py") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return str(path)


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


def test_default_config_has_shared_and_method_keys():
    c = default_config("darts")
    assert c.method == "darts" and c.seed == 0
    assert c.data.dataset == "fashion_mnist" and c.data.batch_size == 64
    assert c.data.limit == 0 and c.data.portion == 0.5
    assert c.run.checkpoint_keep == 3 and c.run.eval_test is True and c.run.tensorboard is True
    # the method's own sections come from jaxnas.search.darts.default_config()
    assert c.search.epochs == 50 and c.model.layers == 8 and c.optim.w_lr == 0.025


def test_unknown_method_suggests_closest():
    with pytest.raises(ConfigError) as e:
        default_config("dart")
    assert "'darts'" in _one_line(e)


@pytest.mark.parametrize("path", ["configs/darts_cifar10.py", "configs/darts_fmnist_tiny.py"])
def test_shipped_configs_load(path):
    c = load_config(ROOT / path)
    assert c.method == "darts"
    layers = c.model.layers
    # both reductions exist and are distinct cells
    assert 0 < layers // 3 < 2 * layers // 3 < layers


def test_paper_config_values():
    c = load_config(ROOT / "configs/darts_cifar10.py")
    assert (c.data.dataset, c.model.layers, c.model.init_channels) == ("cifar10", 8, 16)
    assert (c.data.batch_size, c.search.epochs, c.data.portion) == (64, 50, 0.5)
    assert c.data.crop_padding == 4 and c.data.flip and c.search.order == "first"


def test_unknown_key_names_key_file_and_suggestion(tmp_path):
    path = _write(
        tmp_path,
        """
        from jaxnas.config import default_config

        def get_config():
            c = default_config("darts")
            c.search.epoch = 3
            return c
        """,
    )
    with pytest.raises(ConfigError) as e:
        load_config(path)
    msg = _one_line(e)
    assert "'search.epoch'" in msg and path in msg and "'search.epochs'" in msg


def test_unknown_top_level_key_in_plain_dict(tmp_path):
    path = _write(
        tmp_path,
        """
        import ml_collections

        def get_config():
            return ml_collections.ConfigDict({"method": "darts", "sead": 1})
        """,
    )
    with pytest.raises(ConfigError) as e:
        load_config(path)
    msg = _one_line(e)
    assert "'sead'" in msg and "'seed'" in msg


def test_partial_config_is_filled_from_defaults(tmp_path):
    path = _write(
        tmp_path,
        """
        def get_config():
            return {"method": "darts", "search": {"epochs": 2}, "data": {"limit": 100}}
        """,
    )
    c = load_config(path)
    assert c.search.epochs == 2 and c.data.limit == 100
    assert c.search.order == "first" and c.data.batch_size == 64  # defaults
    assert c.run.tensorboard is True


def test_wrong_type_is_an_error(tmp_path):
    path = _write(
        tmp_path,
        """
        def get_config():
            return {"method": "darts", "data": {"batch_size": "big"}}
        """,
    )
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert "'data.batch_size'" in _one_line(e)


def test_int_for_float_is_fine_and_converted(tmp_path):
    path = _write(tmp_path, 'def get_config():\n    return {"optim": {"w_lr": 1}}\n')
    c = load_config(path)
    assert c.optim.w_lr == 1.0 and isinstance(c.optim.w_lr, float)


def test_section_given_a_value(tmp_path):
    path = _write(tmp_path, 'def get_config():\n    return {"data": 3}\n')
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert "'data' is a section" in _one_line(e)


def test_missing_or_broken_file(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path / "nope.py")
    assert "does not exist" in _one_line(e)
    path = _write(tmp_path, "x = 1\n", "noget.py")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert "get_config" in _one_line(e)
    path = _write(tmp_path, "def get_config(:\n", "syntax.py")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert "syntax error" in _one_line(e)
    path = _write(tmp_path, "def get_config():\n    return 1 / 0\n", "raises.py")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert "ZeroDivisionError" in _one_line(e)


def test_loaded_config_is_locked(tmp_path):
    c = load_config(ROOT / "configs/darts_fmnist_tiny.py")
    with pytest.raises(AttributeError):
        c.search.epoch = 3


# ----------------------------------------------------------------------------- overrides


@pytest.mark.parametrize(
    "text,key,value",
    [
        ("search.epochs=3", "search.epochs", 3),
        ("optim.w_lr=0.1", "optim.w_lr", 0.1),
        ("optim.w_lr=1", "optim.w_lr", 1.0),
        ("run.tensorboard=false", "run.tensorboard", False),
        ("run.tensorboard=True", "run.tensorboard", True),
        ("data.dataset=cifar10", "data.dataset", "cifar10"),
        ("data.dataset='cifar100'", "data.dataset", "cifar100"),
        ("data.data_dir=/tmp/x=y", "data.data_dir", "/tmp/x=y"),
        ("search.order=second", "search.order", "second"),
        ("seed=7", "seed", 7),
        ("data.limit=2000", "data.limit", 2000),
    ],
)
def test_override_parsing(text, key, value):
    c = load_config(ROOT / "configs/darts_fmnist_tiny.py", [text])
    node = c
    for part in key.split("."):
        node = node[part]
    assert node == value and type(node) is type(value)


def test_overrides_apply_in_order_and_keep_the_rest():
    c = load_config(ROOT / "configs/darts_fmnist_tiny.py", ["seed=1", "seed=2"])
    assert c.seed == 2 and c.model.init_channels == 4  # file value kept


@pytest.mark.parametrize(
    "text,needle",
    [
        ("search.epoch=3", "'search.epochs'"),
        ("serch.epochs=3", "'search.epochs'"),
        ("search.epochs=three", "expects int"),
        ("run.tensorboard=1", "expects bool"),
        ("search=3", "is a section"),
        ("search.epochs", "key=value"),
        ("=3", "empty key"),
        ("method=dart", "'darts'"),
    ],
)
def test_bad_overrides(text, needle):
    with pytest.raises(ConfigError) as e:
        load_config(ROOT / "configs/darts_fmnist_tiny.py", [text])
    msg = _one_line(e)
    assert needle in msg, msg


def test_apply_overrides_does_not_modify_input():
    c = default_config("darts")
    out = config_lib.apply_overrides(c, ["search.epochs=1"])
    assert out.search.epochs == 1 and c.search.epochs == 50


def test_registered_method_extends_defaults(monkeypatch):
    import sys
    import types

    mod = types.ModuleType("fake_method_for_test")
    mod.default_config = lambda: ml_collections.ConfigDict({"search": {"epochs": 1, "gamma": 0.5}})
    monkeypatch.setitem(sys.modules, "fake_method_for_test", mod)
    monkeypatch.setitem(config_lib.METHODS, "fake", "fake_method_for_test")
    c = config_lib.apply_overrides(default_config("darts"), ["method=fake", "search.gamma=2"])
    assert c.method == "fake" and c.search.gamma == 2.0 and "model" not in c
    assert c.data.batch_size == 64


# ----------------------------------------------------------------------------- JSON


def test_json_round_trip():
    c = load_config(ROOT / "configs/darts_cifar10.py", ["search.epochs=3"])
    text = config_lib.config_to_json(c)
    assert json.loads(text)["search"]["epochs"] == 3
    back = config_lib.config_from_json(text)
    assert back.to_dict() == c.to_dict()


def test_json_unknown_key():
    with pytest.raises(ConfigError) as e:
        config_lib.config_from_json('{"method": "darts", "run": {"eval_limt": 3}}')
    assert "'run.eval_limit'" in _one_line(e)
