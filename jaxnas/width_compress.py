"""``jaxnas compress`` for channel / dimension pruning: search, prune, fine-tune.

Thesis Algorithm 3 (F. Xue, PhD thesis, UC Irvine 2022, Sec. 4.2) end to end, and the
baselines in the same code:

* ``rarts-width``: search the channel scores (:class:`jaxnas.width.search.WidthSearch`,
  ``search.order`` = ``rarts`` | ``darts1`` | ``darts2``; split data, l1 on the
  scores), prune by ``|alpha|``, fine-tune with distillation from the unpruned network;
* ``netslim``: Network Slimming (Liu et al. 2017): train on the whole training set with
  the l1 subgradient on the BN scales (no split, scores fixed at 1), prune by
  ``|gamma_BN|``, fine-tune;
* ``random``: train plainly on the whole training set, prune random channels at the
  same ratio (thesis Table 4.2's baseline), fine-tune;
* ``sidt``: thesis Sec. 4.3, the same loop on a vision transformer's groups (one
  score per head dimension shared by Q, K, V, heads and windows, one per MLP hidden
  unit): ``model.name`` = ``swin_t`` | ``vit_tiny`` (:mod:`jaxnas.width.swin`,
  :mod:`jaxnas.width.vit`).

Pruning (:func:`jaxnas.width.surgery.choose_channels`): ``prune.mode = "ratio"``
(``prune.ratio`` of the channels, ``prune.scope`` global or per layer) or
``"nonzero"`` (keep the non-zero scores: the learned ratio of thesis Table 4.2).  The
network is then cut down (:func:`jaxnas.width.surgery.prune`: sliced kernels, not a
mask) and fine-tuned (:class:`jaxnas.width.finetune.FineTuner`) with its scores held
fixed; the teacher is the unpruned searched network.

A compress workdir holds::

  config.json, log.txt   the full config, the log lines
  search/, finetune/     the two phases, each a workdir of the one loop
                         (:mod:`jaxnas.loop`: config.json, log.txt, metrics.jsonl with
                         records that carry "phase", tb/, checkpoints/{step}, curves.png)
  scores.npz             the searched scores (NetSlim: BN scales; random: the draw)
  pruned.json            the model config and the kept channel indices per group
                         (:func:`load_pruned` rebuilds the pruned network)
  kept_widths.png        kept / total channels per group
  summary.json           params / MACs before and after, test errors of the unpruned,
                         the pruned (before fine-tuning) and the fine-tuned network
  classes.json           a class subset's classes (ImageNet-20: the drawn label indices
                         and WordNet ids, the example counts)

Data (:mod:`jaxnas.width.data`): the in-memory datasets of :mod:`jaxnas.data`, or
``imagenet2012`` / ``imagenet20`` streamed from tfds records; ``model.input_size``
resizes in-memory images on the device (CIFAR-100 at Swin-T's 224, thesis Table 4.4).
Optimisers: ``search.w_optimizer`` / ``finetune.optimizer`` = ``sgd`` | ``adamw`` (Swin's
recipe for the SiDT Swin configs).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import ml_collections
import numpy as np

from jaxnas import loop, xla
from jaxnas.common import classification_means
from jaxnas.config import config_to_json, validate
from jaxnas.files import write_text
from jaxnas.optional import require
from jaxnas.runtime import FileLog, RunError
from jaxnas.width.search import OPTIMIZERS, WeightOptim

__all__ = [
    "CNN_MODELS",
    "TRANSFORMER_MODELS",
    "build_model",
    "compress",
    "default_config",
    "load_pruned",
    "plot_kept_widths",
    "save_pruned",
]

logger = logging.getLogger("jaxnas")

CNN_MODELS = ("preresnet164", "preresnet", "mobilenetv2", "preactresnet")
#: transformer model name -> (module, factory); imported lazily
TRANSFORMER_MODELS = {
    "swin_t": ("jaxnas.width.swin", "swin_t"),
    "vit_tiny": ("jaxnas.width.vit", "vit_tiny"),
}
METHODS = ("rarts-width", "netslim", "random", "sidt")

#: The weight optimiser's settings and defaults, the same keys in the ``search`` and
#: ``finetune`` sections (whose optimizer is ``search.w_optimizer`` /
#: ``finetune.optimizer``): the fields of :class:`~jaxnas.width.search.WeightOptim`, the
#: keywords of WidthSearch and FineTuner, with NetSlim's step schedule.
_OPTIM_DEFAULTS = {
    k: v for k, v in dataclasses.asdict(WeightOptim(schedule="step")).items() if k != "optimizer"
}


#: The ``search`` keys that are :class:`~jaxnas.width.search.WidthSearch` keywords of the
#: same names (the architecture step's settings; its weight optimiser's: _OPTIM_DEFAULTS).
_SEARCH_KWARGS = ("gamma", "l1", "a_lr", "a_momentum", "lam", "beta", "w_init")


def _optim_kwargs(section: Mapping[str, Any], optimizer_key: str) -> dict[str, Any]:
    """The weight optimiser's keywords (WidthSearch, FineTuner) from a config section."""
    return {**{k: section[k] for k in _OPTIM_DEFAULTS}, "optimizer": section[optimizer_key]}


def default_config() -> ml_collections.ConfigDict:
    """Method-specific keys of the width methods, with PreResNet-164 / CIFAR-10 values.

    ``model``: ``name`` (``preresnet164``, ``preresnet`` (``depth = 9n + 2``),
    ``mobilenetv2`` (``width_mult``), ``preactresnet`` (``stages``, ``blocks``,
    ``strides``, ``stem``; the CPU demo), ``swin_t``, ``vit_tiny``), ``num_classes``
    (0: the dataset's), ``depthwise`` (MobileNetV2: ``"auto"`` = ``custom_vjp``, with a
    ``shifted`` twin for DARTS-2's forward mode), ``kwargs`` (JSON object passed to the
    transformer factories), ``input_size`` (the side ``S`` the network sees; 0: the
    images as loaded; in-memory datasets are resized bilinearly on the device, e.g.
    CIFAR-100 32 -> 224 for Swin-T; ImageNet crops ``S`` (0: 224); see
    :mod:`jaxnas.width.data`).

    ``search``: ``epochs``, ``order`` (``rarts`` | ``darts1`` | ``darts2``; the
    rarts-width / sidt search), ``lr``, ``lr_min``, ``schedule`` (``step``: NetSlim's
    /10 at 50 % and 75 %; ``cosine``; ``constant``), ``momentum``, ``weight_decay``,
    ``grad_clip`` (0: off), ``a_lr`` / ``a_momentum`` (the scores' SGD), ``gamma`` (the
    l1 weight: thesis 1e-4; NetSlim's on the BN scales), ``l1`` (``prox`` |
    ``subgradient``), ``lam`` / ``beta`` (RARTS, not given by the thesis: 1, 1),
    ``w_init``, ``w_optimizer`` (``sgd``: momentum SGD, coupled decay; ``adamw``: Swin's
    AdamW, ``b1``, ``b2``, ``eps``, decoupled decay on kernels only), ``warmup_epochs`` /
    ``warmup_lr`` (schedule ``warmup_cosine``: Swin's per-step linear warm-up then
    cosine).  Thesis values (L1208): lr 0.1, weight decay 1e-4, 160 epochs, gamma 1e-4.

    ``prune``: ``mode`` (``ratio`` | ``nonzero``), ``ratio``, ``scope`` (``global`` |
    ``layer``), ``min_keep``.

    ``finetune``: ``epochs``, ``lr``, ``lr_min``, ``schedule``, ``momentum``,
    ``weight_decay``, ``grad_clip``, ``label_smoothing``, ``kd_weight`` (0: plain CE),
    ``temperature`` (thesis: 4), ``optimizer`` / ``b1`` / ``b2`` / ``eps`` /
    ``warmup_epochs`` / ``warmup_lr`` (as the search's).
    """
    c = ml_collections.ConfigDict()
    c.model = ml_collections.ConfigDict(
        dict(
            name="preresnet164",
            num_classes=0,
            depth=164,
            width_mult=1.0,
            stages=(16, 32, 64),
            blocks=(1, 1, 1),
            strides=(1, 2, 2),
            stem=16,
            depthwise="auto",
            kwargs="{}",
            input_size=0,
        )
    )
    c.search = ml_collections.ConfigDict(
        dict(
            epochs=160,
            order="rarts",
            a_lr=0.1,
            a_momentum=0.9,
            gamma=1e-4,
            l1="prox",
            lam=1.0,
            beta=1.0,
            w_init="copy",
            w_optimizer="sgd",
            **_OPTIM_DEFAULTS,
        )
    )
    c.prune = ml_collections.ConfigDict(dict(mode="ratio", ratio=0.4, scope="global", min_keep=1))
    c.finetune = ml_collections.ConfigDict(
        dict(
            epochs=160,
            label_smoothing=0.0,
            kd_weight=1.0,
            temperature=4.0,
            optimizer="sgd",
            **_OPTIM_DEFAULTS,
        )
    )
    return c


# ------------------------------------------------------------------------------ models


def _kwargs(model_cfg: Mapping[str, Any]) -> dict[str, Any]:
    try:
        kw = json.loads(model_cfg["kwargs"] or "{}")
    except json.JSONDecodeError as e:
        raise ValueError(
            f"model.kwargs must be a JSON object, got {model_cfg['kwargs']!r}: {e}"
        ) from e
    if not isinstance(kw, dict):
        raise ValueError(f"model.kwargs must be a JSON object, got {model_cfg['kwargs']!r}")
    return kw


def build_model(
    model_cfg: Mapping[str, Any], num_classes: int, *, forward_mode: bool = False
) -> Any:
    """The scored width model named by ``model_cfg["name"]`` (see :func:`default_config`).

    ``forward_mode``: MobileNetV2 with the depthwise conv written without a custom VJP
    (``OpsConfig(depthwise="shifted")``: same function, ``jax.jvp`` works), for DARTS-2.
    """
    from jaxnas.ops import OpsConfig
    from jaxnas.width import MobileNetV2, PreActResNet, PreResNet

    name = model_cfg["name"]
    if name == "preresnet164":
        return PreResNet(depth=164, num_classes=num_classes)
    if name == "preresnet":
        return PreResNet(depth=int(model_cfg["depth"]), num_classes=num_classes)
    if name == "mobilenetv2":
        dw = model_cfg["depthwise"]
        dw = ("shifted" if forward_mode else "custom_vjp") if dw == "auto" else dw
        if forward_mode and dw == "custom_vjp":
            raise ValueError(
                "DARTS-2 needs forward mode: set model.depthwise to 'shifted' or 'auto'"
            )
        return MobileNetV2(
            num_classes=num_classes,
            width_mult=float(model_cfg["width_mult"]),
            cfg=OpsConfig(depthwise=dw),
        )
    if name == "preactresnet":
        return PreActResNet(
            num_classes=num_classes,
            stages=tuple(model_cfg["stages"]),
            blocks=tuple(model_cfg["blocks"]),
            strides=tuple(model_cfg["strides"]),
            stem=int(model_cfg["stem"]),
        )
    if name in TRANSFORMER_MODELS:
        module, factory = TRANSFORMER_MODELS[name]
        try:
            mod = importlib.import_module(module)
        except ImportError as e:
            raise ValueError(
                f"model {name!r} needs {module} (the SiDT transformer models), which is not "
                f"available: {e}"
            ) from e
        return getattr(mod, factory)(num_classes=num_classes, **_kwargs(model_cfg))
    known = CNN_MODELS + tuple(TRANSFORMER_MODELS)
    raise ValueError(f"unknown width model {name!r}; known: {', '.join(known)}")


def save_pruned(
    path: str, model_cfg: Mapping[str, Any], num_classes: int, keep: Mapping[str, Any], **extra: Any
) -> None:
    """Write the pruned network as JSON: the model config and the kept indices per group."""
    obj = {
        "model": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(model_cfg).items()},
        "num_classes": int(num_classes),
        "keep": {k: [int(i) for i in np.asarray(v)] for k, v in keep.items()},
        **extra,
    }
    write_text(path, json.dumps(obj, indent=1, sort_keys=True))


def load_pruned(path: str) -> tuple[Any, Any, dict[str, list[int]]]:
    """``(full_model, pruned_model, keep)`` from a ``pruned.json`` (:func:`save_pruned`)."""
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
        model_cfg, num_classes, keep = obj["model"], int(obj["num_classes"]), obj["keep"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a pruned-network JSON ({type(e).__name__}: {e})") from e
    full = build_model(model_cfg, num_classes)
    return full, full.pruned(keep), {k: list(v) for k, v in keep.items()}


def plot_kept_widths(widths: Mapping[str, Any], path: str, title: str = "") -> str:
    """Bar chart of kept (dark) over total (light) channels per group, in group order."""
    require("matplotlib", "plotting").use("Agg")
    plt = require("matplotlib.pyplot", "plotting")

    names = list(widths)
    kept = np.array([widths[n][0] for n in names])
    total = np.array([widths[n][1] for n in names])
    fig, ax = plt.subplots(figsize=(max(6.0, 0.12 * len(names) + 3), 3.5))
    x = np.arange(len(names))
    ax.bar(x, total, color="#cfd8e3", label="total")
    ax.bar(x, kept, color="#2b5d8a", label="kept")
    ax.set_xlabel("channel group (layer order)")
    ax.set_ylabel("channels")
    if len(names) <= 40:
        ax.set_xticks(x, names, rotation=90, fontsize=6)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(title or f"kept widths: {kept.sum()} of {total.sum()} channels")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------ data


def _data(config, split: bool):
    """:func:`jaxnas.width.data.build_data`, its errors as RunError."""
    from jaxnas.width.data import build_data

    try:
        return build_data(config, split)
    except ValueError as e:
        raise RunError(f"data: {e}") from e


def _evaluate(eval_step, state, batches: Iterable) -> dict[str, float]:
    """Test ``loss``, ``accuracy`` (top-1) and ``error`` of ``eval_step``'s
    :func:`~jaxnas.common.classification_sums` over ``batches``."""
    m = classification_means(jax.device_get([eval_step(state, b) for b in batches]))
    return {"loss": m["loss"], "accuracy": m["accuracy"], "error": 1 - m["accuracy"]}


# ------------------------------------------------------------------------------ loop


class PhaseExperiment(loop.Experiment):
    """One phase of :func:`compress` (the search or the fine-tuning) as an experiment of
    the one loop, in its own sub-workdir; every record carries ``"phase"``. After the run,
    :attr:`state` is the phase's final state (also when a resume found it finished)."""

    def __init__(
        self,
        phase: str,
        *,
        init: Callable[[], Any],
        step: Callable[..., Any],
        eval_step: Callable[..., Any],
        batches: Callable[[int], Iterable],
        steps_per_epoch: int,
        epochs: int,
        test_batches: Callable[[], Iterable] | None,
    ):
        self.name = phase
        self.tags = {"phase": phase}
        self.epochs = int(epochs)
        self._init, self._step, self._eval = init, step, eval_step
        self._batches, self._spe, self._test = batches, int(steps_per_epoch), test_batches
        self.state: Any = None

    def steps_in(self, epoch: int) -> int:
        return self._spe

    def init(self) -> Any:
        return self._init()

    def batches(self, epoch: int) -> Iterable:
        return self._batches(epoch)

    def step(self, state: Any, batch: Any):
        return self._step(state, *batch)

    def name_metrics(self, means):
        return {f"train/{k}": v for k, v in means.items()}

    def end_epoch(self, wd: loop.Workdir, state: Any, epoch: int):
        if self._test is None:
            return state, {}
        return state, {
            f"test/{k}": v for k, v in _evaluate(self._eval, state, self._test()).items()
        }

    def finish(self, wd: loop.Workdir, state: Any, records: list[dict]) -> dict[str, Any]:
        self.state = state
        return {}


def _score_source(
    method: str, search, state, groups, variables, seed: int
) -> dict[str, np.ndarray]:
    from jaxnas.width.surgery import bn_scale_scores, random_scores

    if method == "netslim":
        return bn_scale_scores(variables, groups)
    if method == "random":
        return random_scores(groups, seed)
    return {k: np.asarray(v) for k, v in variables["arch"].items()}


def compress(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    resume: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Search (or train), prune and fine-tune; write the workdir (module doc).

    Returns the summary (also ``summary.json``): ``method``, ``model``, ``params`` /
    ``params_after``, ``macs`` / ``macs_after``, ``channels`` / ``channels_kept`` /
    ``pruned_ratio``, ``error_unpruned`` (the searched / trained network with all its
    channels), ``error_pruned`` (the sliced network before fine-tuning),
    ``error_finetuned``, ``score_zero_fraction``, paths and ``wall_time``.

    Raises:
      RunError: bad settings, checkpoints present without ``resume``, NaN losses.
    """
    from jaxnas.width.finetune import FineTuner
    from jaxnas.width.search import WidthSearch
    from jaxnas.width.surgery import choose_channels, prune, pruning_summary

    t_start = time.time()
    xla.prepare()
    config = validate(config.to_dict() if hasattr(config, "to_dict") else dict(config))
    config.lock()
    method = config.method
    if method not in METHODS:
        raise RunError(f"jaxnas.width_compress runs {', '.join(METHODS)}, not {method!r}")
    m, s, p, f = config.model, config.search, config.prune, config.finetune
    if method == "sidt" and m.name not in TRANSFORMER_MODELS:
        raise RunError(
            "sidt searches transformer dimensions: model.name must be one of "
            f"{sorted(TRANSFORMER_MODELS)}, got {m.name!r}"
        )
    if p.mode not in ("ratio", "nonzero"):
        raise RunError(f"prune.mode must be 'ratio' or 'nonzero', got {p.mode!r}")
    if p.mode == "nonzero" and method in ("netslim", "random"):
        raise RunError(
            f"{method} prunes to a ratio: set prune.mode='ratio' (nonzero needs exact-zero scores)"
        )
    for key, name in (("search.w_optimizer", s.w_optimizer), ("finetune.optimizer", f.optimizer)):
        if name not in OPTIMIZERS:
            raise RunError(f"{key} must be one of {', '.join(OPTIMIZERS)}, got {name!r}")
    for key, sec, optimizer_key in (("search", s, "w_optimizer"), ("finetune", f, "optimizer")):
        try:  # fail before the search, not after it, on a schedule the fine-tuning can't use
            WeightOptim(**_optim_kwargs(sec, optimizer_key)).lr_schedule(max(sec.epochs, 1), 1)
        except ValueError as e:
            raise RunError(f"{key}: {e}") from e
    searching = method in ("rarts-width", "sidt")
    if searching and s.order not in ("rarts", "darts1", "darts2"):
        raise RunError(f"search.order must be rarts, darts1 or darts2, got {s.order!r}")
    order = s.order if searching else "joint"
    target = "scores" if searching else ("bn" if method == "netslim" else "none")

    wd = loop.Workdir(os.fspath(workdir))
    wd.make()
    paths = {
        k: wd.path(v)
        for k, v in dict(
            config="config.json",
            log="log.txt",
            scores="scores.npz",
            pruned="pruned.json",
            plot="kept_widths.png",
            summary="summary.json",
        ).items()
    }
    phase_dirs = {p: wd.path(p) for p in ("search", "finetune")}

    with FileLog(paths["log"]):
        with open(paths["config"], "w", encoding="utf-8") as fh:
            fh.write(config_to_json(config) + "\n")
        data = _data(config, split=order != "joint")
        la, lp, full = data.weights, data.arch, data.full
        if data.info:  # a class subset (ImageNet-20): which classes, for the record
            with open(wd.path("classes.json"), "w", encoding="utf-8") as fh:
                json.dump(data.info, fh, indent=1)
        num_classes = int(m.num_classes or data.num_classes)
        input_shape = tuple(int(v) for v in data.input_shape)
        sample = np.zeros((1, *input_shape), np.float32)
        try:
            model = build_model(m, num_classes)
            hvp = build_model(m, num_classes, forward_mode=True) if order == "darts2" else None
            spe = len(la) if lp is None else min(len(la), len(lp))
            search = WidthSearch(
                model,
                order=order,
                target=target,
                epochs=max(s.epochs, 1),
                steps_per_epoch=spe,
                hvp_model=hvp,
                **{k: s[k] for k in _SEARCH_KWARGS},
                **_optim_kwargs(s, "w_optimizer"),
            )
        except ValueError as e:
            raise RunError(f"cannot set up {method}: {e}") from e
        if spe == 0:
            raise RunError("an epoch has no steps: lower data.batch_size or raise data.limit")
        logger.info(
            "%s (%s, order %s): %s on %s %s, %d classes, %d steps/epoch x %d epochs, workdir %s",
            method,
            target,
            order,
            m.name,
            config.data.dataset,
            "x".join(map(str, input_shape)),
            num_classes,
            spe,
            s.epochs,
            wd.root,
        )
        test_batches = data.test if config.run.eval_test else None
        if lp is None:
            batches = lambda e: ((b,) for b in data.epochs(la)(e))
        else:  # (D_a batch, D_p batch)
            batches = lambda e: zip(data.epochs(la)(e), data.epochs(lp)(e))
        phase = PhaseExperiment(
            "search",
            init=lambda: search.init(config.seed, sample),
            step=search.train_step,
            eval_step=search.eval_step,
            batches=batches,
            steps_per_epoch=spe,
            epochs=s.epochs,
            test_batches=test_batches,
        )
        loop.run(phase, config, phase_dirs["search"], resume=resume, progress=progress)
        state = phase.state
        variables = search.variables(state)
        groups = model.channel_groups()
        before = _evaluate(search.eval_step, state, data.test())

        # ---- prune (thesis Algorithm 3, pruning stage) ----
        scores = _score_source(method, search, state, groups, variables, config.seed)
        np.savez(paths["scores"], **scores)
        try:
            keep = choose_channels(
                scores,
                groups,
                ratio=None if p.mode == "nonzero" else p.ratio,
                scope=p.scope,
                min_keep=p.min_keep,
            )
        except ValueError as e:
            raise RunError(f"prune: {e}") from e
        small, small_vars = prune(model, variables, keep)
        sizes = pruning_summary(model, variables, keep, input_shape)
        save_pruned(
            paths["pruned"],
            m.to_dict(),
            num_classes,
            keep,
            method=method,
            input_shape=list(input_shape),
            widths=sizes["widths"],
        )
        try:
            plot_kept_widths(
                sizes["widths"],
                paths["plot"],
                title=f"{method}: {sizes['channels_kept']} of {sizes['channels']} channels kept",
            )
        except Exception as e:  # noqa: BLE001 - a picture never stops a run
            logger.warning("could not draw %s: %s", paths["plot"], e)
        logger.info(
            "pruned %d of %d channels (%.1f %%): params %d -> %d, MACs %d -> %d",
            sizes["channels"] - sizes["channels_kept"],
            sizes["channels"],
            100 * sizes["pruned_ratio"],
            sizes["params"],
            sizes["params_after"],
            sizes["macs"],
            sizes["macs_after"],
        )

        # ---- fine-tune (warm start, KD from the unpruned network) ----
        f_spe = len(full)
        try:
            tuner = FineTuner(
                small,
                teacher=(model, variables),
                kd_weight=f.kd_weight,
                temperature=f.temperature,
                label_smoothing=f.label_smoothing,
                epochs=max(f.epochs, 1),
                steps_per_epoch=f_spe,
                **_optim_kwargs(f, "optimizer"),
            )
        except ValueError as e:
            raise RunError(f"cannot set up fine-tuning: {e}") from e
        pruned_err = _evaluate(
            tuner.eval_step, tuner.init(small_vars, seed=config.seed), data.test()
        )
        phase = PhaseExperiment(
            "finetune",
            init=lambda: tuner.init(small_vars, seed=config.seed),
            step=tuner.train_step,
            eval_step=tuner.eval_step,
            batches=lambda e: ((b,) for b in data.epochs(full)(1000 + e)),
            steps_per_epoch=f_spe,
            epochs=f.epochs,
            test_batches=test_batches,
        )
        loop.run(phase, config, phase_dirs["finetune"], resume=resume, progress=progress)
        ft_state = phase.state
        after = _evaluate(tuner.eval_step, ft_state, data.test()) if f.epochs else pruned_err
        zero = float(
            np.mean(np.concatenate([np.ravel(v) for v in variables["arch"].values()]) == 0)
        )
        summary = {
            "method": method,
            "order": order,
            "model": m.name,
            "dataset": config.data.dataset,
            **{k: v for k, v in sizes.items() if k != "widths"},
            "error_unpruned": before["error"],
            "error_pruned": pruned_err["error"],
            "error_finetuned": after["error"],
            "score_zero_fraction": zero,
            "workdir": wd.root,
            "pruned_json": paths["pruned"],
            "kept_widths_plot": paths["plot"],
            "metrics": {p: os.path.join(d, "metrics.jsonl") for p, d in phase_dirs.items()},
            "wall_time": time.time() - t_start,
        }
        with open(paths["summary"], "w", encoding="utf-8") as fh:
            json.dump(summary, fh, indent=1, sort_keys=True)
        logger.info(
            "%s: error %.4f unpruned, %.4f pruned, %.4f fine-tuned; params %d -> %d",
            method,
            before["error"],
            pruned_err["error"],
            after["error"],
            sizes["params"],
            sizes["params_after"],
        )
        return summary
