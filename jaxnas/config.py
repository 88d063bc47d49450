"""Experiment configs: Python files with ``get_config() -> ml_collections.ConfigDict``.

A config is the shared keys (:func:`shared_defaults`: method, seed, data, run)
plus the keys of its method (``jaxnas.search.<method>.default_config()``).
:func:`load_config` loads a config file, applies ``key=value`` overrides and
checks every key against :func:`default_config` so that a typo is a one-line
:class:`ConfigError` naming the key, the file and the closest valid key,
instead of a silently ignored setting. Keys the file leaves out take their
default values. :func:`check_values` then checks the values, after the overrides
(``search.epochs >= 1``, ``0 < data.portion < 1``, no NaN, a known
``search.order``, the method module's own ``check_config(config)``), so that a
bad value is one line before a run loads data or touches its workdir.

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
import dataclasses
import difflib
import importlib
import importlib.util
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections

__all__ = [
    "COMMANDS",
    "DEFAULT_REPLOT",
    "KINDS",
    "Kind",
    "METHODS",
    "method_module",
    "ConfigError",
    "shared_defaults",
    "default_config",
    "load_config",
    "apply_overrides",
    "validate",
    "check_values",
    "config_to_json",
    "config_from_json",
]

#: What ``jaxnas plot`` runs on a workdir whose kind does not say otherwise (or is not
#: known): the loop's pictures and a cell's (:func:`jaxnas.run.replot`).
DEFAULT_REPLOT = "jaxnas.run:replot"

#: The subcommands that run a config, and what their configs are called in messages.
COMMANDS: dict[str, str] = {"search": "search", "train": "retraining", "compress": "compress"}


@dataclasses.dataclass(frozen=True)
class Kind:
    """One config kind (a value of ``method``): where its keys come from and what the
    command line does with it.

    Functions are named ``"module:function"``; the command line (the top layer) imports
    one when it runs it, so this table, in the core, imports nothing above it.

    Attributes:
      module: the module with ``default_config()`` (and optionally ``check_config``);
        a search method's module also defines its class, whose ``name`` is the key.
      command: the subcommand that runs a config of this kind, a key of :data:`COMMANDS`.
      run: that subcommand's driver, ``(config, workdir, *, resume, progress) ->
        summary`` (``jaxnas train`` passes ``genotype`` too).
      replot: what ``jaxnas plot`` runs on a workdir of this kind, ``workdir -> {what:
        path or paths}``.
      evaluate: what ``jaxnas eval`` runs on a checkpoint of this kind, ``(checkpoint, *,
        overrides, which) -> results``; ``""``: not evaluable.
    """

    module: str
    command: str
    run: str
    replot: str = DEFAULT_REPLOT
    evaluate: str = ""


def _search(module: str, **kw: str) -> Kind:
    """An image search method (or, with ``run``, one with its own driver)."""
    return Kind(module, "search", kw.pop("run", "jaxnas.run:search"), **kw)


def _compress(module: str) -> Kind:
    """A compress method: :func:`jaxnas.compress.compress` runs the module's ``compress``."""
    return Kind(module, "compress", "jaxnas.compress:compress")


_RNN_REPLOT = "jaxnas.rnn.draw:replot"  # recurrent cells: alphas, curves, the cell

#: Config kinds by ``method``; a line here is the one place a new kind is registered:
#: the search methods (``jaxnas search``), the retraining configs (``jaxnas train``,
#: ``jaxnas eval``) and the compress methods (``jaxnas compress``).
KINDS: dict[str, Kind] = {
    "darts": _search("jaxnas.search.darts"),
    "train": Kind("jaxnas.train", "train", "jaxnas.train:train", evaluate="jaxnas.train:evaluate"),
    "rarts": _search("jaxnas.search.rarts"),
    "asmnas": _search("jaxnas.search.asmnas"),
    "sparsenas": _search("jaxnas.search.sparsenas"),
    "bayesnas": _search("jaxnas.search.bayesnas"),
    "prdarts": _search("jaxnas.search.prdarts"),
    "gdas": _search("jaxnas.search.gdas"),
    # the recurrent cell search on text and the AWD-style retraining of a recurrent cell
    "sparsenas_rnn": _search(
        "jaxnas.search.sparsenas_rnn", run="jaxnas.run_rnn:search", replot=_RNN_REPLOT
    ),
    "darts_rnn": _search(
        "jaxnas.search.darts_rnn", run="jaxnas.run_rnn:search", replot=_RNN_REPLOT
    ),
    "train_rnn": Kind(
        "jaxnas.train_rnn",
        "train",
        "jaxnas.train_rnn:train",
        replot=_RNN_REPLOT,
        evaluate="jaxnas.train_rnn:evaluate",
    ),
    "rarts-width": _compress("jaxnas.width_compress"),
    "netslim": _compress("jaxnas.width_compress"),
    "random": _compress("jaxnas.width_compress"),
    "sidt": _compress("jaxnas.width_compress"),
    "bayes-group": _compress("jaxnas.bayes_compress"),
}

#: ``method`` -> the module with its ``default_config()`` (from :data:`KINDS`).
METHODS: dict[str, str] = {name: kind.module for name, kind in KINDS.items()}


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
        ``tensorboard`` (write TensorBoard events under ``workdir/tb``), ``devices``
        (devices of a search's data mesh, ``data.batch_size`` the global batch
        split over them; 1: one device, the plain step; 0: all devices) and
        ``distributed`` (join the other processes of a multi-host search through
        ``jax.distributed``; every device of every process then searches).
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
            devices=1,
            distributed=False,
        )
    )
    return c


def method_module(method: str, source: str | None = None):
    """The module of config kind ``method`` (a key of :data:`METHODS`), imported; an
    unknown name raises :class:`ConfigError` with the closest known one."""
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
    specific = method_module(method).default_config()
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


def validate(
    config: Mapping, source: str | None = None, *, check: bool = True
) -> ml_collections.ConfigDict:
    """A complete, checked copy of ``config``: defaults of ``config.method`` with
    ``config``'s values written over them.

    Args:
      config: a (partial) config with ``method``.
      source: a file name that prefixes the messages.
      check: also check the values (:func:`check_values`); False only checks keys
        and types (a config that overrides will still change).

    Raises:
      ConfigError: unknown method, unknown key (with the closest valid key), a
        value of the wrong type, or (``check``) a value out of its range.
    """
    method = config.get("method", "darts")
    if not isinstance(method, str):
        raise ConfigError(f"{_where(source)}config key 'method' must be a string, got {method!r}")
    method_module(method, source)
    full = default_config(method)
    _merge(full, config, "", source, default_config(method))
    if check:
        check_values(full, source)
    return full


# --------------------------------------------------------------------------- values

#: Integer keys and their smallest valid value, checked wherever a config has the key
#: (``data.limit = 0``: all images; ``run.log_every_steps = 0``: epoch records only; ...).
_INT_MIN: dict[str, int] = {
    "data.batch_size": 1,
    "data.limit": 0,
    "data.pad_to": 0,
    "data.crop_padding": 0,
    "data.cutout": 0,
    "run.log_every_steps": 0,
    "run.checkpoint_keep": 1,
    "run.eval_limit": 0,
    "run.devices": 0,
    "search.epochs": 1,
    "train.epochs": 1,
    "finetune.epochs": 0,
    "model.init_channels": 1,
    "model.layers": 1,
    "model.stem_multiplier": 1,
    "model.size": 1,
    "model.steps": 1,
    "train.accumulate": 1,
    "train.eval_every": 1,
    "train.eval_batch_size": 0,
    "train.test_batch_size": 1,
    "train.num_devices": 0,
    "text.bptt": 1,
    "text.eval_batch_size": 1,
}

#: Float keys in a half-open or open interval: key -> (low, high, high included).
_FLOAT_RANGE: dict[str, tuple[float, float, bool]] = {
    "model.drop_path_prob": (0.0, 1.0, False),
    "optim.label_smoothing": (0.0, 1.0, False),
    "finetune.label_smoothing": (0.0, 1.0, False),
}

#: String keys with a closed set of values, by method: what the method's own setup
#: checks again, here so that a typo fails before a run touches its workdir.
_SEARCH_ORDERS = {
    "darts": ("first", "second"),
    "sparsenas": ("first", "second"),
    "sparsenas_rnn": ("first", "second"),
    "darts_rnn": ("first", "second"),
    "bayesnas": ("alg1", "alg3"),
    "rarts-width": ("rarts", "darts1", "darts2"),
    "sidt": ("rarts", "darts1", "darts2"),
}
_CHOICES: dict[str, dict[str, tuple[str, ...]]] = {
    **{m: {"search.order": orders} for m, orders in _SEARCH_ORDERS.items()},
    "train": {"optim.schedule": ("cosine", "exponential"), "model.dtype": ("float32", "bfloat16")},
}
for _m in ("darts", "sparsenas"):
    _CHOICES[_m] = {
        **_CHOICES[_m],
        "search.hypergradient": ("exact", "unrolled", "finite_difference"),
        "search.fuse_phases": ("auto", "yes", "no"),
    }
del _m

_LR = re.compile(r"(^|_)lr($|_)")


def _leaves(cfg: Any, prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for k, v in cfg.items():
        if _is_section(v):
            out.extend(_leaves(v, prefix + k + "."))
        else:
            out.append((prefix + k, v))
    return out


def _value_problem(method: str, key: str, value: Any) -> str | None:
    """Why ``value`` is not valid for ``key`` (None: it is)."""
    leaf = key.rsplit(".", 1)[-1]
    if isinstance(value, float):
        if math.isnan(value):
            return "must be a number, got nan"
        rate = _LR.search(leaf) or "weight_decay" in leaf or "grad_clip" in leaf
        if rate and not (math.isfinite(value) and value >= 0):
            return f"must be a finite number >= 0, got {value}"
        if leaf.endswith("momentum") and not 0.0 <= value <= 1.0:
            return f"must be in [0, 1], got {value}"
        if leaf.startswith("dropout") and not 0.0 <= value < 1.0:
            return f"must be in [0, 1), got {value}"
        if key == "data.portion" and not 0.0 < value < 1.0:
            return (
                f"must be in (0, 1) (the fraction of the training images that train the "
                f"weights; the rest trains the architecture), got {value}"
            )
        if key in _FLOAT_RANGE:
            low, high, closed = _FLOAT_RANGE[key]
            if not (low <= value <= high if closed else low <= value < high):
                return f"must be in [{low:g}, {high:g}{']' if closed else ')'}, got {value}"
    elif isinstance(value, int) and not isinstance(value, bool) and key in _INT_MIN:
        if value < _INT_MIN[key]:
            return f"must be >= {_INT_MIN[key]}, got {value}"
    elif isinstance(value, str) and key in _CHOICES.get(method, {}):
        allowed = _CHOICES[method][key]
        if value not in allowed:
            return (
                f"must be one of {', '.join(map(repr, allowed))}, got {value!r}"
                f"{_suggest(value, allowed)}"
            )
    return None


def check_values(
    config: ml_collections.ConfigDict,
    source: str | None = None,
    overrides: Sequence[str] = (),
) -> None:
    """Check the values of a complete config (:func:`validate` does the keys and types).

    Ranges of the shared and common keys (``search.epochs >= 1``, ``data.batch_size >=
    1``, ``0 < data.portion < 1``, no NaN anywhere, learning rates finite and >= 0, ...),
    the closed sets of a few method settings (``search.order``), then the method
    module's own ``check_config(config)`` where it has one (a ``ValueError`` there is a
    bad setting). Everything here is cheap: a bad value fails before a run loads data
    or touches its workdir.

    Args:
      config: a complete config (:func:`validate`).
      source: the config file, named in the message.
      overrides: the ``key=value`` overrides applied to it; a bad value that came from
        one is reported as ``--set key=value``.

    Raises:
      ConfigError: one line naming the key, its valid range and where it was set.
    """

    def where(key: str) -> str:
        for item in reversed(list(overrides)):
            if item.split("=", 1)[0].strip() == key:
                return f"--set {item}: "
        return _where(source)

    method = config.get("method", "darts")
    for key, value in _leaves(config):
        problem = _value_problem(method, key, value)
        if problem:
            raise ConfigError(f"{where(key)}config key {key!r} {problem}")
    check = getattr(method_module(method, source), "check_config", None)
    if callable(check):
        try:
            check(config)
        except ValueError as e:
            text = " ".join(str(e).split())
            named = [
                k
                for k, _ in _leaves(config)
                if re.search(rf"(?<![\w.]){re.escape(k)}(?![\w])", text)
            ]
            raise ConfigError(
                f"{where(max(named, key=len)) if named else _where(source)}{method}: {text}"
            ) from e


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
    config: ml_collections.ConfigDict, overrides: Sequence[str], *, check: bool = True
) -> ml_collections.ConfigDict:
    """Apply ``key=value`` strings (e.g. ``"search.epochs=3"``) to a validated config.

    Values are Python literals (``3``, ``0.1``, ``true``, ``(1, 2)``); anything
    that does not parse is a string (``data.dataset=cifar10``). String keys take
    the text as written. Returns a new ConfigDict; ``config`` is not modified.
    Changing ``method`` re-bases the config on that method's defaults. With ``check``
    the values of the result are checked (:func:`check_values`; a bad one that an
    override set is reported as ``--set key=value``).
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
    result = validate(base, source="--set", check=False)
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
    if check:
        check_values(result, "--set", [item for _, _, item in parsed])
    return result


# --------------------------------------------------------------------------- files


def _exit_message(path: str, when: str, e: SystemExit) -> str:
    return (
        f"{path}: called sys.exit({e.code!r}) {when}; a config file must define "
        "get_config() and return a config from it"
    )


def _load_file(path: str) -> ml_collections.ConfigDict:
    if os.path.isdir(path):
        raise ConfigError(
            f"config file {path!r} is a directory; give a Python file that defines "
            "get_config(), e.g. configs/darts_fmnist_tiny.py"
        )
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
    except SystemExit as e:  # sys.exit() in a config file: not a config, not a success
        raise ConfigError(_exit_message(path, "while loading", e)) from None
    except Exception as e:  # noqa: BLE001 - report any error in user code in one line
        raise ConfigError(f"{path}: error while loading: {type(e).__name__}: {e}") from e
    get_config = getattr(module, "get_config", None)
    if not callable(get_config):
        raise ConfigError(f"{path}: defines no get_config() function")
    try:
        cfg = get_config()
    except ConfigError:
        raise
    except SystemExit as e:
        raise ConfigError(_exit_message(path, "in get_config()", e)) from None
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
        message names the key, the file and the closest valid key), a value
        has the wrong type or is out of its range (:func:`check_values`).
    """
    path = os.fspath(path)
    config = validate(_load_file(path), source=path, check=False)
    if overrides:
        config = apply_overrides(config, overrides, check=False)
    check_values(config, path, overrides)
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
    config = validate(data, source="config.json", check=False)
    config.lock()
    return config
