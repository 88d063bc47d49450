"""Experiment configs: Python files with ``get_config() -> ml_collections.ConfigDict``.

A config is the shared keys (:func:`shared_defaults`: method, seed, data, run)
plus the keys of its method (``jaxnas.search.<method>.default_config()``).
:func:`load_config` loads a config file, applies ``key=value`` overrides and
checks every key against :func:`default_config` so that a typo is a one-line
:class:`ConfigError` naming the key, the file and the closest valid key,
instead of a silently ignored setting. Keys the file leaves out take their
default values.

A config file usually starts from the defaults::

    from jaxnas.config import default_config

    def get_config():
        config = default_config("darts")
        config.search.epochs = 3
        return config

but may also return a plain (partial) ``ConfigDict`` with ``method`` set.

Conventions:
  * ``data.limit = 0`` means "all training images" (a positive value keeps the
    first ``limit`` images before the bi-level split); ``data.pad_to = 0`` means
    no padding; ``data.data_dir = ""`` means the default location;
    ``run.eval_limit = 0`` means the whole test split. Integers rather than
    ``None`` keep every key typed, so ``--set data.limit=2000`` is checked.
"""

from __future__ import annotations

import ast
import difflib
import importlib
import importlib.util
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections

__all__ = [
    "METHODS",
    "ConfigError",
    "shared_defaults",
    "default_config",
    "load_config",
    "apply_overrides",
    "validate",
    "config_to_json",
    "config_from_json",
]

#: Config kinds by ``method`` -> module with ``default_config()``: the search methods
#: (``jaxnas search``; their modules also define the method class), ``"train"``,
#: a retraining config (``jaxnas train``), and the compress methods (``jaxnas compress``).
METHODS: dict[str, str] = {
    "darts": "jaxnas.search.darts",
    "train": "jaxnas.train",
    "rarts": "jaxnas.search.rarts",
    "asmnas": "jaxnas.search.asmnas",
    "sparsenas": "jaxnas.search.sparsenas",
    "bayesnas": "jaxnas.search.bayesnas",
    "prdarts": "jaxnas.search.prdarts",
    "sparsenas_rnn": "jaxnas.search.sparsenas_rnn",  # own loop (text data): its search()
    "train_rnn": "jaxnas.train_rnn",  # AWD-style retraining of a recurrent cell
    # compress methods (``jaxnas compress``, :data:`jaxnas.compress.COMPRESSORS`)
    "rarts-width": "jaxnas.width_compress",
    "netslim": "jaxnas.width_compress",
    "random": "jaxnas.width_compress",
    "sidt": "jaxnas.width_compress",
    "bayes-group": "jaxnas.bayes_compress",
}


class ConfigError(ValueError):
    """A bad config file, key, value or override (reported as one line)."""


def shared_defaults() -> ml_collections.ConfigDict:
    """The keys every search config has, with their defaults.

    Returns a ConfigDict with:
      method: name of the search method, a key of :data:`METHODS`.
      seed: the one seed; parameter init, data order and every random draw of a
        run derive from it, so a run is a pure function of its config.
      data: ``dataset`` (e.g. "fashion_mnist", "cifar10"), ``batch_size``,
        ``portion`` (fraction of the training set used to train the weights;
        the rest trains the architecture), ``limit`` (0: all training images),
        ``pad_to`` (0: no padding), ``data_dir`` ("": default location) and the
        augmentation ``crop_padding``, ``flip``, ``cutout`` (0: off).
      run: ``log_every_steps`` (progress-bar and metrics.jsonl step records;
        0: epoch records only), ``checkpoint_keep`` (orbax ``max_to_keep``),
        ``eval_test`` (evaluate the supernet on the test split after every
        epoch), ``eval_limit`` (test images for that; 0: all),
        ``tensorboard`` (write TensorBoard events under ``workdir/tb``).
    """
    c = ml_collections.ConfigDict()
    c.method = "darts"
    c.seed = 0
    c.data = ml_collections.ConfigDict(
        dict(
            dataset="fashion_mnist",
            batch_size=64,
            portion=0.5,
            limit=0,
            pad_to=0,
            data_dir="",
            crop_padding=0,
            flip=False,
            cutout=0,
        )
    )
    c.run = ml_collections.ConfigDict(
        dict(
            log_every_steps=50,
            checkpoint_keep=3,
            eval_test=True,
            eval_limit=0,
            tensorboard=True,
        )
    )
    return c


def _method_module(method: str, source: str | None = None):
    if method not in METHODS:
        raise ConfigError(
            f"{_where(source)}unknown method {method!r}{_suggest(method, METHODS)}"
            f" (known: {', '.join(sorted(METHODS))})"
        )
    return importlib.import_module(METHODS[method])


def default_config(method: str = "darts") -> ml_collections.ConfigDict:
    """Shared defaults plus ``jaxnas.search.<method>.default_config()`` (unlocked)."""
    config = shared_defaults()
    config.method = method
    specific = _method_module(method).default_config()
    for key, value in specific.items():
        if key in config:
            raise ConfigError(f"method {method!r} redefines the shared config key {key!r}")
        config[key] = value
    return config


# --------------------------------------------------------------------------- checks


def _where(source: str | None) -> str:
    return f"{source}: " if source else ""


def _suggest(key: str, candidates) -> str:
    close = difflib.get_close_matches(key, list(candidates), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _is_section(x: Any) -> bool:
    """A nested config section (ConfigDict is not a ``collections.abc.Mapping``)."""
    return isinstance(x, (Mapping, ml_collections.ConfigDict, ml_collections.FrozenConfigDict))


def _all_keys(cfg: Mapping, prefix: str = "") -> list[str]:
    keys = []
    for k, v in cfg.items():
        keys.append(prefix + k)
        if _is_section(v):
            keys.extend(_all_keys(v, prefix + k + "."))
    return keys


def _typename(value: Any) -> str:
    return type(value).__name__


def _coerce(default: Any, value: Any, key: str, source: str | None) -> Any:
    """``value`` converted to the type of ``default``, or ConfigError."""

    def bad():
        return ConfigError(
            f"{_where(source)}config key {key!r} expects {_typename(default)} "
            f"(default {default!r}), got {_typename(value)} {value!r}"
        )

    if default is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise bad()
    if isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad()
    if isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise bad()
    if isinstance(default, str):
        if isinstance(value, str):
            return value
        raise bad()
    if isinstance(default, (tuple, list)):
        if isinstance(value, (tuple, list)):
            return type(default)(value)
        raise bad()
    if isinstance(value, type(default)):
        return value
    raise bad()


def _merge(
    defaults: ml_collections.ConfigDict,
    given: Mapping,
    prefix: str,
    source: str | None,
    full_defaults: ml_collections.ConfigDict,
) -> None:
    """Write ``given`` into ``defaults`` in place, checking keys and types."""
    for key, value in given.items():
        name = prefix + key
        if key not in defaults:
            raise ConfigError(
                f"{_where(source)}unknown config key {name!r}"
                f"{_suggest(name, _all_keys(full_defaults))}"
            )
        default = defaults[key]
        if _is_section(default):
            if not _is_section(value):
                raise ConfigError(
                    f"{_where(source)}config key {name!r} is a section; "
                    f"set its keys ({', '.join(default.keys())}), not {value!r}"
                )
            _merge(default, value, name + ".", source, full_defaults)
        elif _is_section(value):
            raise ConfigError(f"{_where(source)}config key {name!r} is a value, not a section")
        else:
            defaults[key] = _coerce(default, value, name, source)


def validate(config: Mapping, source: str | None = None) -> ml_collections.ConfigDict:
    """A complete, checked copy of ``config``: defaults of ``config.method`` with
    ``config``'s values written over them.

    Raises:
      ConfigError: unknown method, unknown key (with the closest valid key) or a
        value of the wrong type. ``source`` (a file name) prefixes the message.
    """
    method = config.get("method", "darts")
    if not isinstance(method, str):
        raise ConfigError(f"{_where(source)}config key 'method' must be a string, got {method!r}")
    _method_module(method, source)
    full = default_config(method)
    _merge(full, config, "", source, default_config(method))
    return full


# --------------------------------------------------------------------------- overrides


def _parse_value(text: str) -> Any:
    """``ast.literal_eval`` with true/false/none spelled any way; else the raw string."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def apply_overrides(
    config: ml_collections.ConfigDict, overrides: Sequence[str]
) -> ml_collections.ConfigDict:
    """Apply ``key=value`` strings (e.g. ``"search.epochs=3"``) to a validated config.

    Values are Python literals (``3``, ``0.1``, ``true``, ``(1, 2)``); anything
    that does not parse is a string (``data.dataset=cifar10``). String keys take
    the text as written. Returns a new ConfigDict; ``config`` is not modified.
    Changing ``method`` re-bases the config on that method's defaults.
    """
    parsed: list[tuple[str, str, str]] = []
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. seed=1)")
        key, text = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"override {item!r} has an empty key")
        parsed.append((key, text, item))

    base = config.to_dict()
    for key, text, _ in parsed:
        if key == "method":  # re-base: keep the shared sections, drop the old method's
            shared = shared_defaults()
            base = {k: v for k, v in base.items() if k in shared}
            base["method"] = text.strip()
    result = validate(base, source="--set")
    full = default_config(result.method)
    for key, text, item in parsed:
        if key == "method":
            continue
        parts = key.split(".")
        node, default_node = result, full
        for i, part in enumerate(parts):
            name = ".".join(parts[: i + 1])
            if not _is_section(node) or part not in node:
                raise ConfigError(
                    f"--set {item}: unknown config key {name!r}{_suggest(key, _all_keys(full))}"
                )
            if i < len(parts) - 1:
                node, default_node = node[part], default_node[part]
        leaf = parts[-1]
        default = default_node[leaf]
        if _is_section(default):
            raise ConfigError(
                f"--set {item}: {key!r} is a section; set one of its keys, e.g. "
                f"{key}.{next(iter(default.keys()))}=..."
            )
        value = text if isinstance(default, str) else _parse_value(text)
        if isinstance(default, str) and len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
            value = text[1:-1]
        node[leaf] = _coerce(default, value, key, f"--set {item}")
    return result


# --------------------------------------------------------------------------- files


def _load_file(path: str) -> ml_collections.ConfigDict:
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} does not exist")
    spec = importlib.util.spec_from_file_location(
        f"_jaxnas_config_{abs(hash(os.path.abspath(path)))}", path
    )
    if spec is None or spec.loader is None:
        raise ConfigError(f"{path}: not a Python config file")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ConfigError:
        raise
    except SyntaxError as e:
        raise ConfigError(f"{path}:{e.lineno}: syntax error: {e.msg}") from e
    except Exception as e:  # noqa: BLE001 - report any error in user code in one line
        raise ConfigError(f"{path}: error while loading: {type(e).__name__}: {e}") from e
    get_config = getattr(module, "get_config", None)
    if not callable(get_config):
        raise ConfigError(f"{path}: defines no get_config() function")
    try:
        cfg = get_config()
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001
        msg = str(e).splitlines()[0] if str(e) else ""
        raise ConfigError(f"{path}: get_config() failed: {type(e).__name__}: {msg}") from e
    if isinstance(cfg, ml_collections.ConfigDict):
        return cfg
    if isinstance(cfg, Mapping):
        return ml_collections.ConfigDict(dict(cfg))
    raise ConfigError(f"{path}: get_config() must return a ConfigDict, got {_typename(cfg)}")


def load_config(
    path: str | os.PathLike, overrides: Sequence[str] = ()
) -> ml_collections.ConfigDict:
    """Load, check and complete the config in ``path``, then apply ``overrides``.

    Args:
      path: a Python file defining ``get_config()``.
      overrides: ``key=value`` strings (see :func:`apply_overrides`).

    Returns:
      A locked ConfigDict with every key of ``default_config(config.method)``
      (locked: reading or setting a misspelled key raises instead of adding it).

    Raises:
      ConfigError: the file is missing or broken, a key does not exist (the
        message names the key, the file and the closest valid key), or a value
        has the wrong type.
    """
    path = os.fspath(path)
    config = validate(_load_file(path), source=path)
    if overrides:
        config = apply_overrides(config, overrides)
    config.lock()
    return config


def config_to_json(config: ml_collections.ConfigDict) -> str:
    """The config as indented, key-sorted JSON (tuples become lists)."""
    return json.dumps(config.to_dict(), indent=2, sort_keys=True)


def config_from_json(text: str) -> ml_collections.ConfigDict:
    """Inverse of :func:`config_to_json` (validated against the defaults; locked)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"config JSON is malformed: {e}") from e
    config = validate(data, source="config.json")
    config.lock()
    return config
