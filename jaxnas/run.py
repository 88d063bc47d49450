"""The search runner shared by every method: data, loop, logs, checkpoints, pictures.

``search(config, workdir)`` builds the method (``jaxnas.search.build``) and the
bi-level data (``jaxnas.data.search_loaders``), then runs ``config.search.epochs``
epochs of ``method.train_step`` over the weight ("train") and architecture
("valid") halves zipped together, as DARTS' ``train_search.py`` does. The runner
knows nothing about any method beyond ``jaxnas.search.base.SearchMethod``; the one
config key it reads outside ``seed``/``data``/``run`` is ``search.epochs``.

What a search workdir holds::

  config.json               the full config of the run
  log.txt                   the log lines (one per epoch, plus the genotype)
  metrics.jsonl             one JSON object per epoch ("kind": "epoch") and every
                            ``run.log_every_steps`` steps ("kind": "step")
  tb/                       TensorBoard events (``run.tensorboard``)
  alphas/epoch_{e:03d}.npz  ``method.arch_weights`` after ``e`` epochs (e = 0: at init)
  alphas/meta.json          op names (``method.primitives``) for the plots
  alphas.png                architecture weights over the epochs (``jaxnas.plots``)
  curves.png                loss / accuracy / lr over the epochs
  genotype.json             the genotype derived after the last finished epoch
  genotype_{normal,reduce}.{png,svg}   its picture (at the end of the search); a search
                            on the NB201 space writes the cell's arch string to
                            genotype.json and draws genotype_cell.{png,svg}
  checkpoints/{e}/          orbax checkpoints of the state after ``e`` epochs
  summary.json              paths and final metrics (at the end of the search), and
                            ``benchmark`` (``method.benchmark_report``, e.g. NATS-Bench)

Epoch ``e`` (0-based) reads ``loader.epoch(e)``, whose order and augmentation are a
pure function of ``(seed, e)``; all other randomness lives in the state. So a run
killed at any point and resumed (``resume=True``) from its last checkpoint ends
with the same architecture weights and genotype as an uninterrupted run
(bit-identical on CPU). Records written after the last checkpoint are dropped on
resume. A SIGTERM or SIGINT stops the search after the current step (raising
:class:`jaxnas.runtime.Interrupted`; the CLI exits with status 130); a resume then
redoes that epoch from the checkpoint of the epoch before it.  Steps run
asynchronously, so a signal that comes after the epoch's last step was queued
stops the search after that epoch and its checkpoint instead.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import ml_collections
import numpy as np

from jaxnas import plots
from jaxnas.config import config_to_json, validate
from jaxnas.runtime import (
    FileLog,
    Interrupted,
    Meter,
    RunError,
    StopFlag,
    all_finite,
    append_jsonl,
    check_compatible,
    checkpoint_manager,
    diff_configs,
    first_nonfinite,
    restore,
)

__all__ = ["RunError", "Workdir", "search", "replot"]

logger = logging.getLogger("jaxnas")


@dataclasses.dataclass(frozen=True)
class Workdir:
    """The paths of a search workdir (see the module docstring)."""

    root: str

    def __post_init__(self):
        object.__setattr__(self, "root", os.path.abspath(os.fspath(self.root)))

    def _p(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    @property
    def config(self) -> str:
        return self._p("config.json")

    @property
    def log(self) -> str:
        return self._p("log.txt")

    @property
    def metrics(self) -> str:
        return self._p("metrics.jsonl")

    @property
    def tensorboard(self) -> str:
        return self._p("tb")

    @property
    def alphas(self) -> str:
        return self._p("alphas")

    def alphas_file(self, epoch: int) -> str:
        return self._p("alphas", f"epoch_{epoch:03d}.npz")

    @property
    def alphas_plot(self) -> str:
        return self._p("alphas.png")

    @property
    def curves_plot(self) -> str:
        return self._p("curves.png")

    @property
    def genotype(self) -> str:
        return self._p("genotype.json")

    @property
    def genotype_prefix(self) -> str:
        return self._p("genotype")

    @property
    def checkpoints(self) -> str:
        return self._p("checkpoints")

    @property
    def summary(self) -> str:
        return self._p("summary.json")


# --------------------------------------------------------------------------------- helpers


def _metric_name(key: str) -> str:
    """``train_step`` metric key -> record key: ``valid_x`` -> ``valid/x``, ``lr*`` as is,
    ``x`` -> ``train/x``."""
    if key.startswith("lr"):
        return key
    if key.startswith("valid_"):
        return "valid/" + key[len("valid_") :]
    return "train/" + key


def _truncate_after(wd: Workdir, epoch: int) -> None:
    """Drop what was written after the checkpoint of ``epoch`` (used when resuming)."""
    if os.path.exists(wd.metrics):
        keep = [r for r in plots.read_metrics(wd.metrics, kind=None) if r.get("epoch", 0) <= epoch]
        tmp = wd.metrics + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            for r in keep:
                f.write(json.dumps(r, sort_keys=True) + "\n")
        os.replace(tmp, wd.metrics)
    for e, _ in plots.load_arch_history(wd.alphas):
        if e > epoch:
            os.remove(wd.alphas_file(e))


def _fresh_outputs(wd: Workdir) -> None:
    """Remove the outputs of an earlier run in this workdir that never checkpointed."""
    for path in (wd.metrics, wd.summary, wd.genotype, wd.alphas_plot, wd.curves_plot):
        if os.path.exists(path):
            os.remove(path)
    for path in (wd.alphas, wd.tensorboard):
        if os.path.isdir(path):
            shutil.rmtree(path)


def _write_config(wd: Workdir, config: ml_collections.ConfigDict) -> None:
    with open(wd.config, "w", encoding="utf-8") as f:
        f.write(config_to_json(config) + "\n")


def _save_arch(wd: Workdir, epoch: int, arch: Mapping[str, Any]) -> None:
    os.makedirs(wd.alphas, exist_ok=True)
    tmp = wd.alphas_file(epoch) + ".tmp.npz"
    np.savez(tmp, **{k: np.asarray(v) for k, v in arch.items()})
    os.replace(tmp, wd.alphas_file(epoch))


def _make_loaders(config: ml_collections.ConfigDict):
    from jaxnas import data

    d = config.data
    if d.dataset not in data.DATASETS:
        import difflib

        close = difflib.get_close_matches(d.dataset, data.DATASETS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise RunError(
            f"unknown dataset {d.dataset!r} in data.dataset{hint}; "
            f"known: {', '.join(data.DATASETS)}"
        )
    augment = data.Augment(crop_padding=d.crop_padding, flip=d.flip, cutout=d.cutout)
    try:
        return data.search_loaders(
            d.dataset,
            batch_size=d.batch_size,
            seed=config.seed,
            portion=d.portion,
            limit=d.limit or None,
            augment=augment,
            data_dir=d.data_dir or None,
            pad_to=d.pad_to or None,
        )
    except data.DatasetNotFoundError:
        raise
    except ValueError as e:
        raise RunError(f"data: {e}") from e


def _test_batches(test_dataset: Any, config: ml_collections.ConfigDict):
    """A deterministic Loader over the first ``run.eval_limit`` test images (full batches)."""
    from jaxnas import data

    n = len(test_dataset)
    if config.run.eval_limit:
        n = min(n, config.run.eval_limit)
    bs = min(config.data.batch_size, n)
    if n == 0:
        raise RunError("run.eval_test is on but the test split is empty")
    return data.Loader(
        test_dataset,
        np.arange(n),
        bs,
        seed=0,
        shuffle=False,
        augment=data.NO_AUGMENT,
        drop_last=True,
        pad_to=config.data.pad_to or None,
    )


def _evaluate(method: Any, state: Any, loader: Any) -> dict[str, float]:
    meter = Meter()
    for batch in loader.epoch(0):
        meter.add(method.eval_step(state, batch))
    means = meter.epoch_means()
    means["examples"] = float(meter.count * loader.batch_size)
    return means


def _fmt(record: Mapping[str, Any], key: str, label: str, fmt: str = ".4f") -> str | None:
    if key in record:
        return f"{label} {record[key]:{fmt}}"
    return None


def _log_line(record: Mapping[str, Any], epochs: int) -> str:
    parts = [f"epoch {record['epoch']}/{epochs}"]
    groups = [
        ("train", [("train/loss", "loss"), ("train/accuracy", "acc")]),
        ("valid", [("valid/loss", "loss"), ("valid/accuracy", "acc")]),
        ("test", [("test/loss", "loss"), ("test/accuracy", "acc")]),
    ]
    for name, keys in groups:
        items = [s for k, lbl in keys if (s := _fmt(record, k, lbl)) is not None]
        if items:
            parts.append(f"{name} " + " ".join(items))
    if "lr" in record:
        parts.append(f"lr {record['lr']:.3g}")
    parts.append(f"{record['time']:.1f}s")
    return " | ".join(parts)


# --------------------------------------------------------------------------------- search

StepCallback = Callable[[int, int], None]
EpochCallback = Callable[[int, Mapping[str, Any]], None]


def search(
    config: ml_collections.ConfigDict,
    workdir: str | os.PathLike,
    *,
    resume: bool = False,
    progress: bool = True,
    build: Callable[..., Any] | None = None,
    loaders: tuple[Any, Any, Any] | None = None,
    on_step: StepCallback | None = None,
    on_epoch_end: EpochCallback | None = None,
) -> dict[str, Any]:
    """Run an architecture search and write everything to ``workdir``.

    Args:
      config: a config (``jaxnas.config.load_config``); checked and completed with
        the defaults again here. Reads ``seed``, ``data.*``, ``run.*`` and
        ``search.epochs``; the rest is the method's.
      workdir: output folder (created). See the module docstring for its contents.
      resume: continue from the latest checkpoint in ``workdir`` (a workdir without
        checkpoints starts from scratch). ``search.epochs`` may be raised to train
        longer, but a method whose schedule depends on it then differs from a run
        that had the larger value from the start.
      progress: show a tqdm progress bar over the steps of each epoch.
      build: called as ``build(config, steps_per_epoch=..., num_classes=...,
        input_shape=(H, W, C))`` to make the ``SearchMethod``; default
        ``jaxnas.search.build``.
      loaders: ``(train_loader, valid_loader, test_dataset)`` to use instead of
        ``jaxnas.data.search_loaders(...)`` (``test_dataset`` may be None).
      on_step: called as ``on_step(epoch, global_step)`` after every step (0-based
        epoch, 1-based step); raising in it stops the run like a kill would.
      on_epoch_end: called as ``on_epoch_end(epochs_done, record)`` after each epoch
        is checkpointed.

    Returns:
      The summary (also written to ``summary.json``): ``workdir``, ``method``,
      ``epochs``, ``steps_per_epoch``, ``final`` (the last epoch record),
      ``genotype`` (its string form), the paths ``genotype_json``,
      ``genotype_pictures``, ``alphas_plot``, ``curves_plot``, ``metrics``,
      ``checkpoints``, ``tensorboard`` and ``wall_time`` (seconds of this call).

    Raises:
      RunError: checkpoints exist but ``resume`` is False; the checkpoint does not
        match the config; a loss or the state became NaN/Inf (the last good
        checkpoint is kept); bad data settings.
      jaxnas.config.ConfigError: a bad config.
      jaxnas.data.DatasetNotFoundError: the dataset is not on disk.
      jaxnas.runtime.Interrupted: SIGTERM/SIGINT; the checkpoint of the last finished
        epoch is kept.
    """
    t_start = time.time()
    config = validate(config.to_dict() if hasattr(config, "to_dict") else dict(config))
    config.lock()
    wd = Workdir(os.fspath(workdir))
    os.makedirs(wd.root, exist_ok=True)
    epochs = int(config.search.epochs)

    mngr = checkpoint_manager(wd.checkpoints, config.run.checkpoint_keep)
    writer = None
    stop = StopFlag()
    try:
        stop.__enter__()
        latest = mngr.latest_step()
        if latest is not None and not resume:
            raise RunError(
                f"{wd.root} already has checkpoints (last: epoch {latest}); pass --resume to "
                "continue that search, or use a fresh --workdir"
            )
        with FileLog(wd.log):
            if latest is None:
                _fresh_outputs(wd)
                _write_config(wd, config)
            elif os.path.exists(wd.config):
                with open(wd.config, encoding="utf-8") as f:
                    old = json.load(f)
                changed = diff_configs(old, json.loads(config_to_json(config)))
                if changed:
                    logger.warning(
                        "resuming with a changed config (the result will differ from an "
                        "uninterrupted run of either config): %s",
                        "; ".join(changed),
                    )

            train_loader, valid_loader, test_dataset = loaders or _make_loaders(config)
            steps_per_epoch = min(len(train_loader), len(valid_loader))
            if steps_per_epoch == 0:
                raise RunError("an epoch has no steps: lower data.batch_size or raise data.limit")
            sample_images, _ = next(iter(train_loader.epoch(0)))
            input_shape = tuple(int(s) for s in sample_images.shape[1:])
            num_classes = _num_classes(train_loader, test_dataset)
            if build is None:
                from jaxnas import search as methods

                build = methods.build
            try:
                method = build(
                    config,
                    steps_per_epoch=steps_per_epoch,
                    num_classes=num_classes,
                    input_shape=input_shape,
                )
            except ValueError as e:  # a bad method setting in the config
                raise RunError(f"cannot set up method {config.method!r}: {e}") from e
            test_loader = None
            if config.run.eval_test and test_dataset is not None:
                test_loader = _test_batches(test_dataset, config)

            logger.info(
                "%s search: %s %s, %d classes, %d steps/epoch x %d epochs, workdir %s",
                method.name,
                config.data.dataset,
                "x".join(map(str, input_shape)),
                num_classes,
                steps_per_epoch,
                epochs,
                wd.root,
            )
            t0 = time.time()
            state = method.init(jax.random.PRNGKey(config.seed), sample_images)
            jax.block_until_ready(state)
            logger.info("initialised the %s state in %.1fs", method.name, time.time() - t0)

            os.makedirs(wd.alphas, exist_ok=True)
            with open(os.path.join(wd.alphas, "meta.json"), "w", encoding="utf-8") as f:
                meta = {"method": method.name, "primitives": list(method.primitives)}
                if getattr(method, "edge_labels", None):
                    meta["edge_labels"] = list(method.edge_labels)
                json.dump(meta, f)

            start = 0
            if latest is not None:
                check_compatible(mngr, latest, state, wd.checkpoints)
                state = restore(mngr, latest, state, wd.checkpoints)
                start = latest
                _truncate_after(wd, latest)
                _write_config(wd, config)
                logger.info("resumed from %s/%d (epoch %d done)", wd.checkpoints, latest, latest)
            else:
                _save_arch(wd, 0, method.arch_weights(state))

            if config.run.tensorboard:
                from tensorboardX import SummaryWriter

                writer = SummaryWriter(wd.tensorboard, purge_step=start * steps_per_epoch + 1)

            if start > epochs:
                logger.warning(
                    "the checkpoint has %d epochs, more than search.epochs=%d", start, epochs
                )
            for epoch in range(start, epochs):
                state, record = _run_epoch(
                    method,
                    state,
                    epoch=epoch,
                    epochs=epochs,
                    batches=zip(train_loader.epoch(epoch), valid_loader.epoch(epoch)),
                    steps_per_epoch=steps_per_epoch,
                    config=config,
                    wd=wd,
                    writer=writer,
                    progress=progress,
                    on_step=on_step,
                    test_loader=test_loader,
                    mngr=mngr,
                    first_call=epoch == start,
                    stop=stop,
                )
                if on_epoch_end is not None:
                    on_epoch_end(epoch + 1, record)
                # Steps are dispatched asynchronously: a signal that came after the epoch's
                # last step was queued is seen only here, after its checkpoint.
                if stop.signal is not None:
                    raise Interrupted(
                        f"{stop.name} after epoch {epoch + 1}; last checkpoint: epoch "
                        f"{epoch + 1} in {wd.checkpoints}; continue with --resume"
                    )

            genotype = method.genotype(state)
            return _finish(config, wd, method, genotype, epochs, steps_per_epoch, t_start)
    except (KeyboardInterrupt, Interrupted):
        last = mngr.latest_step()
        where = f"epoch {last}" if last is not None else "none yet"
        logger.warning("interrupted; last checkpoint: %s; continue with --resume", where)
        raise
    finally:
        stop.__exit__(None, None, None)
        if writer is not None:
            writer.close()
        mngr.wait_until_finished()
        mngr.close()


def _num_classes(train_loader: Any, test_dataset: Any) -> int:
    for obj in (getattr(train_loader, "ds", None), test_dataset):
        n = getattr(obj, "num_classes", None)
        if n:
            return int(n)
    raise RunError("cannot tell the number of classes: the dataset has no num_classes")


def _run_epoch(
    method: Any,
    state: Any,
    *,
    epoch: int,
    epochs: int,
    batches: Iterable,
    steps_per_epoch: int,
    config: ml_collections.ConfigDict,
    wd: Workdir,
    writer: Any,
    progress: bool,
    on_step: StepCallback | None,
    test_loader: Any,
    mngr: Any,
    first_call: bool,
    stop: StopFlag | None = None,
) -> tuple[Any, dict[str, Any]]:
    """One epoch: steps, NaN checks, evaluation, records, pictures, checkpoint.

    ``stop``: a signal flagged there ends the epoch after the current step with
    :class:`Interrupted` (nothing of the unfinished epoch is checkpointed)."""
    import orbax.checkpoint as ocp
    from tqdm.auto import tqdm

    t0 = time.time()
    meter = Meter()
    log_every = int(config.run.log_every_steps)
    done = epoch * steps_per_epoch
    bar = tqdm(
        total=steps_per_epoch,
        desc=f"epoch {epoch + 1}/{epochs}",
        disable=not progress,
        leave=False,
        dynamic_ncols=True,
        unit="step",
    )
    last_good = mngr.latest_step()

    def nan_error(what: str, step: int) -> RunError:
        kept = f"epoch {last_good}" if last_good is not None else "none (the initial state)"
        return RunError(
            f"non-finite {what} at epoch {epoch + 1} step {step}; stopped. The last good "
            f"checkpoint is {kept} in {wd.checkpoints}; try a lower learning rate or "
            "stronger gradient clipping"
        )

    try:
        for i, (train_batch, valid_batch) in enumerate(batches):
            if i >= steps_per_epoch:
                break
            t_step = time.time()
            state, metrics = method.train_step(state, train_batch, valid_batch)
            meter.add(metrics)
            if i == 0 and first_call:
                jax.block_until_ready(metrics)
                logger.info("first step (compiles the step) took %.1fs", time.time() - t_step)
            step = done + i + 1
            if log_every > 0 and step % log_every == 0:
                window = {_metric_name(k): v for k, v in meter.flush().items()}
                if (bad := first_nonfinite(window)) is not None:
                    raise nan_error(bad, step)
                append_jsonl(
                    wd.metrics, {"kind": "step", "epoch": epoch + 1, "step": step, **window}
                )
                if writer is not None:
                    for k, v in window.items():
                        writer.add_scalar(f"step/{k}", v, step)
                bar.set_postfix(
                    {k.split("/")[-1][:4]: f"{v:.3f}" for k, v in window.items() if "train/" in k},
                    refresh=False,
                )
            bar.update(1)
            if on_step is not None:
                on_step(epoch, step)
            if stop is not None and stop.signal is not None:
                kept = f"epoch {last_good}" if last_good is not None else "none yet"
                raise Interrupted(
                    f"{stop.name} at epoch {epoch + 1} step {step}; last checkpoint: {kept} "
                    f"in {wd.checkpoints}; continue with --resume"
                )
    finally:
        bar.close()
    step = done + steps_per_epoch
    means = {_metric_name(k): v for k, v in meter.epoch_means().items()}
    if (bad := first_nonfinite(means)) is not None:
        raise nan_error(bad, step)
    if not bool(all_finite(state)):
        raise nan_error("state (weights or architecture)", step)

    record: dict[str, Any] = {"kind": "epoch", "epoch": epoch + 1, "step": step, **means}
    if test_loader is not None:
        test = _evaluate(method, state, test_loader)
        record.update({f"test/{k}": v for k, v in test.items()})
    arch = method.arch_weights(state)
    genotype = method.genotype(state)
    record["time"] = time.time() - t0

    # everything for this epoch is written before its checkpoint: a kill in between
    # leaves records that the resume drops (see _truncate_after)
    _save_arch(wd, epoch + 1, arch)
    _save_genotype(genotype, wd.genotype)
    append_jsonl(wd.metrics, record)
    if writer is not None:
        for k, v in record.items():
            if k not in ("kind", "epoch", "step") and isinstance(v, (int, float)):
                writer.add_scalar(k, v, step)
        writer.flush()
    try:
        plots.plot_arch_weights(
            plots.load_arch_history(wd.alphas),
            method.primitives,
            wd.alphas_plot,
            title=f"{method.name}: architecture weights",
            edge_labels=getattr(method, "edge_labels", None),
        )
    except Exception as e:  # noqa: BLE001 - a picture never stops a search
        logger.warning("could not draw %s: %s", wd.alphas_plot, e)

    mngr.save(epoch + 1, args=ocp.args.StandardSave(state))
    mngr.wait_until_finished()
    logger.info(_log_line(record, epochs))
    logger.info("genotype = %s", genotype)
    return state, record


def _save_genotype(genotype: Any, path: str) -> None:
    """A DARTS genotype via ``jaxnas.genotype.save``; an architecture of another space
    (an NB201 cell) in its own format, through its ``save_json(path)``."""
    from jaxnas import genotype as genotype_lib

    save_json = getattr(genotype, "save_json", None)
    if save_json is not None:
        save_json(path)
    else:
        genotype_lib.save(genotype, path)


def _finish(
    config: ml_collections.ConfigDict,
    wd: Workdir,
    method: Any,
    genotype: Any,
    epochs: int,
    steps_per_epoch: int,
    t_start: float,
) -> dict[str, Any]:
    from jaxnas import genotype as genotype_lib

    _save_genotype(genotype, wd.genotype)
    pictures: list[str] = []
    try:
        draw = getattr(genotype, "save_pictures", None)  # another space's own (NB201 cell)
        if draw is not None:
            pictures = draw(wd.genotype_prefix)
        else:
            pictures = genotype_lib.plot_genotype(genotype, wd.genotype_prefix)
    except Exception as e:  # noqa: BLE001
        logger.warning("could not draw the genotype: %s", e)
    benchmark = None  # e.g. NATS-Bench's accuracy of an NB201 cell (search.nats_bench)
    report_fn = getattr(method, "benchmark_report", None)
    if report_fn is not None:
        try:
            benchmark = report_fn(genotype)
        except Exception as e:  # noqa: BLE001 - the search itself is done and saved
            logger.warning("benchmark lookup failed: %s", e)
            benchmark = {"error": " ".join(str(e).split())}
        if benchmark:
            logger.info("benchmark: %s", json.dumps(benchmark, sort_keys=True))
    records = plots.read_metrics(wd.metrics)
    curves = None
    if records:
        try:
            curves = plots.plot_curves(records, wd.curves_plot)
        except Exception as e:  # noqa: BLE001
            logger.warning("could not draw %s: %s", wd.curves_plot, e)
    summary = {
        "workdir": wd.root,
        "method": method.name,
        "dataset": config.data.dataset,
        "seed": config.seed,
        "epochs": epochs,
        "steps_per_epoch": steps_per_epoch,
        "final": records[-1] if records else {},
        "genotype": str(genotype),
        "genotype_json": wd.genotype,
        "genotype_pictures": pictures,
        "benchmark": benchmark,
        "alphas_plot": wd.alphas_plot if os.path.exists(wd.alphas_plot) else None,
        "curves_plot": curves,
        "metrics": wd.metrics,
        "checkpoints": wd.checkpoints,
        "tensorboard": wd.tensorboard if config.run.tensorboard else None,
        "wall_time": time.time() - t_start,
    }
    with open(wd.summary, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, sort_keys=True)
        f.write("\n")
    logger.info("search done in %.1fs; genotype in %s", summary["wall_time"], wd.genotype)
    return summary


def replot(workdir: str | os.PathLike) -> dict[str, Any]:
    """Redraw the pictures of a search workdir from its saved files (``jaxnas plot``).

    Raises:
      RunError: ``workdir`` is not a search workdir.
      jaxnas.genotype.GenotypeError: its ``genotype.json`` is malformed.
    """
    wd = Workdir(os.fspath(workdir))
    if not os.path.isdir(wd.root):
        raise RunError(f"workdir {wd.root} does not exist")
    try:
        return plots.regenerate(wd.root)
    except FileNotFoundError as e:
        raise RunError(str(e)) from e
