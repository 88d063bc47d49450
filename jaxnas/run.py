"""The image search as an experiment of the one loop (:mod:`jaxnas.loop`).

``search(config, workdir)`` builds the method (``jaxnas.search.build``) and the
bi-level data (``jaxnas.data.search_loaders``), then runs ``config.search.epochs``
epochs of ``method.train_step`` over the weight ("train") and architecture
("valid") halves zipped together, as DARTS' ``train_search.py`` does. It knows
nothing about any method beyond ``jaxnas.search.base.SearchMethod``; the one config
key it reads outside ``seed``/``data``/``run`` is ``search.epochs``. The loop owns
the workdir, checkpoints, resume, signals, NaN stops and records; this module adds
what a search writes:

  alphas/epoch_{e:03d}.npz  ``method.arch_weights`` after ``e`` epochs (e = 0: at init)
  alphas/meta.json          op names (``method.primitives``) for the plots
  alphas.png                architecture weights over the epochs (``jaxnas.plots``)
  genotype.json             the genotype derived after the last finished epoch
  genotype_{normal,reduce}.{png,svg}   its picture (at the end of the search); a search
                            on the NB201 space writes the cell's arch string to
                            genotype.json and draws genotype_cell.{png,svg}
  summary.json              also ``method``, ``genotype`` and ``benchmark``
                            (``method.benchmark_report``, e.g. NATS-Bench)

besides the loop's ``config.json``, ``log.txt``, ``metrics.jsonl``, ``tb/``,
``checkpoints/{step}/`` and ``curves.png``. Epoch records carry ``train/*`` and
``valid/*`` (the method's ``valid_*`` metrics), ``lr`` and, with ``run.eval_test``,
``test/*`` of the supernet on the first ``run.eval_limit`` test images.

``run.devices`` (``jaxnas search --devices N``) other than 1, or ``run.distributed``,
searches data parallel on a device mesh: the method's ``mesh_steps`` (state replicated
and donated, batches of ``data.batch_size`` rows, the global batch, split over the
devices); ``run.distributed`` first joins the other processes
(``jaxnas.parallel.initialize_distributed``), each feeding only its own devices' rows
of the same deterministic batches, and only process 0 writes files.  Checkpoints hold
replicated arrays, restored onto the current mesh: a resume may change the devices.

A SIGTERM or SIGINT saves a checkpoint after the current step and raises
:class:`jaxnas.runtime.Interrupted` (the CLI exits with status 130); ``resume=True``
continues from it to the same architecture weights, genotype and records as an
uninterrupted run (bit-identical on CPU).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np

from jaxnas import loop, parallel, xla
from jaxnas.config import validate
from jaxnas.runtime import Meter, RunError
from jaxnas.search_workdir import (
    SearchWorkdir,
    drop_arch_after,
    regenerate,
    save_arch,
    save_genotype,
    search_summary,
    write_arch_meta,
)

__all__ = ["RunError", "SearchExperiment", "Workdir", "search", "replot"]

logger = logging.getLogger("jaxnas")


Workdir = SearchWorkdir  # the name this module always had


# --------------------------------------------------------------------------------- helpers


def _make_loaders(config: ml_collections.ConfigDict, mesh: Any = None):
    """The search's ``(train, valid, test)`` data; with several processes each loader
    yields only this process's rows of every batch (``parallel.local_rows``)."""
    from jaxnas import data

    rows = None
    if mesh is not None and jax.process_count() > 1:
        rows = parallel.local_rows(mesh, int(config.data.batch_size))

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
            rows=rows,
        )
    except data.DatasetNotFoundError:
        raise
    except ValueError as e:
        raise RunError(f"data: {e}") from e


def _test_batches(test_dataset: Any, config: ml_collections.ConfigDict, devices: int = 1):
    """A deterministic Loader over the first ``run.eval_limit`` test images (full batches
    of a multiple of ``devices`` rows)."""
    from jaxnas import data

    n = len(test_dataset)
    if config.run.eval_limit:
        n = min(n, config.run.eval_limit)
    bs = min(config.data.batch_size, n)
    if n == 0:
        raise RunError("run.eval_test is on but the test split is empty")
    bs -= bs % devices
    if bs == 0:
        raise RunError(
            f"run.eval_test is on but the test split has {n} image(s), fewer than "
            f"the {devices} device(s)"
        )
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


def _evaluate(eval_step: Callable, state: Any, loader: Any, mesh: Any) -> dict[str, float]:
    meter = Meter()
    for batch in loader.epoch(0):
        meter.add(eval_step(state, batch if mesh is None else parallel.shard_batch(batch, mesh)))
    means = meter.epoch_means()
    means["examples"] = float(meter.count * loader.batch_size)
    return means


def _num_classes(train_loader: Any, test_dataset: Any) -> int:
    for obj in (getattr(train_loader, "ds", None), test_dataset):
        n = getattr(obj, "num_classes", None)
        if n:
            return int(n)
    raise RunError("cannot tell the number of classes: the dataset has no num_classes")


# ------------------------------------------------------------------------------ experiment


class SearchExperiment(loop.Experiment):
    """An image search of a :class:`jaxnas.search.base.SearchMethod` (see :func:`search`)."""

    outputs = ("genotype.json", "alphas", "alphas.png")
    workdir_class = Workdir
    data_parallel = True

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        *,
        build: Callable[..., Any] | None = None,
        loaders: tuple[Any, Any, Any] | None = None,
    ):
        self.config = config
        self._build = build
        self._loaders = loaders
        self.epochs = int(config.search.epochs)
        self.name = f"{config.method} search"

    def setup(self, wd: Workdir, latest_step: int | None) -> None:
        config = self.config
        self.mesh = loop.run_mesh(config)
        self.train_loader, self.valid_loader, test_dataset = self._loaders or _make_loaders(
            config, self.mesh
        )
        self.local = getattr(self.train_loader, "rows", None) is not None  # only our rows
        self.steps_per_epoch = min(len(self.train_loader), len(self.valid_loader))
        if self.steps_per_epoch == 0:
            raise RunError("an epoch has no steps: lower data.batch_size or raise data.limit")
        self.sample_images, _ = next(iter(self.train_loader.epoch(0)))
        input_shape = tuple(int(s) for s in self.sample_images.shape[1:])
        num_classes = _num_classes(self.train_loader, test_dataset)
        build = self._build
        if build is None:
            from jaxnas import search as methods

            build = methods.build
        try:
            self.method = build(
                config,
                steps_per_epoch=self.steps_per_epoch,
                num_classes=num_classes,
                input_shape=input_shape,
            )
        except ValueError as e:  # a bad method setting in the config
            raise RunError(f"cannot set up method {config.method!r}: {e}") from e
        self.name = f"{self.method.name} search"
        self.train_step, self.eval_step = self.method.train_step, self.method.eval_step
        devices = 1 if self.mesh is None else self.mesh.size
        if self.mesh is not None:  # the loop owns the state: its buffers are donated
            self.train_step, self.eval_step = self.method.mesh_steps(self.mesh, donate=True)
        self.test_loader = None
        if config.run.eval_test and test_dataset is not None:
            self.test_loader = _test_batches(test_dataset, config, devices)
        logger.info(
            "%s search: %s %s, %d classes, %d steps/epoch x %d epochs, global batch %d "
            "on %d device(s)%s, workdir %s",
            self.method.name,
            config.data.dataset,
            "x".join(map(str, input_shape)),
            num_classes,
            self.steps_per_epoch,
            self.epochs,
            config.data.batch_size,
            devices,
            f" in {jax.process_count()} processes" if jax.process_count() > 1 else "",
            wd.root,
        )

    def steps_in(self, epoch: int) -> int:
        return self.steps_per_epoch

    def init(self) -> Any:
        state = self.method.init(jax.random.PRNGKey(self.config.seed), self.sample_images)
        return state if self.mesh is None else parallel.replicate(state, self.mesh)

    def batches(self, epoch: int):
        return zip(self.train_loader.epoch(epoch), self.valid_loader.epoch(epoch))

    def step(self, state: Any, batch: Any):
        if self.mesh is not None:
            batch = [parallel.shard_batch(b, self.mesh, local=self.local) for b in batch]
        return self.train_step(state, *batch)

    def start(self, wd: Workdir, state: Any, resumed_step: int | None) -> None:
        method = self.method
        if not self.primary:
            return
        write_arch_meta(wd, method.name, method.primitives, getattr(method, "edge_labels", ()))
        if resumed_step is None:
            save_arch(wd, 0, method.arch_weights(state))
        else:
            drop_arch_after(wd, resumed_step // self.steps_per_epoch)  # epochs complete

    def end_epoch(self, wd: Workdir, state: Any, epoch: int) -> tuple[Any, dict[str, Any]]:
        method = self.method
        extra: dict[str, Any] = {}
        if self.test_loader is not None:
            test = _evaluate(self.eval_step, state, self.test_loader, self.mesh)
            extra.update({f"test/{k}": v for k, v in test.items()})
        genotype = method.genotype(state)
        logger.info("genotype = %s", genotype)
        if not self.primary:
            return state, extra
        save_arch(
            wd,
            epoch,
            method.arch_weights(state),
            primitives=method.primitives,
            title=f"{method.name}: architecture weights",
            edge_labels=getattr(method, "edge_labels", None),
        )
        save_genotype(wd, genotype)
        return state, extra

    def finish(self, wd: Workdir, state: Any, records: list[dict]) -> dict[str, Any]:
        method = self.method
        genotype = method.genotype(state)
        pictures = save_genotype(wd, genotype, pictures=True) if self.primary else []
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
        return search_summary(wd, method.name, genotype, pictures, benchmark=benchmark)


# --------------------------------------------------------------------------------- search


def search(
    config: ml_collections.ConfigDict,
    workdir: str | os.PathLike,
    *,
    resume: bool = False,
    progress: bool = True,
    build: Callable[..., Any] | None = None,
    loaders: tuple[Any, Any, Any] | None = None,
    on_step: loop.StepCallback | None = None,
    on_epoch_end: loop.EpochCallback | None = None,
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
      The summary (also written to ``summary.json``): the loop's fields
      (:func:`jaxnas.loop.run`: ``workdir``, ``epochs``, ``steps_per_epoch``,
      ``final``, ``metrics``, ``checkpoints``, ``tensorboard``, ``curves_plot``,
      ``wall_time``, ...) and ``method``, ``genotype`` (its string form),
      ``genotype_json``, ``genotype_pictures``, ``benchmark``, ``alphas_plot``.

    Raises:
      RunError: checkpoints exist but ``resume`` is False; the workdir is in use by
        another run; the checkpoint does not match the config; a loss or the state
        became NaN/Inf (the last good checkpoint is kept); bad data settings.
      jaxnas.config.ConfigError: a bad config.
      jaxnas.data.DatasetNotFoundError: the dataset is not on disk.
      jaxnas.runtime.Interrupted: SIGTERM/SIGINT; a checkpoint of the current step is
        kept.
    """
    xla.prepare(search=True)
    config = validate(config.to_dict() if hasattr(config, "to_dict") else dict(config))
    config.lock()
    if config.run.distributed:
        parallel.initialize_distributed()
    loop.run_mesh(config)  # devices and batch split checked before the workdir is touched
    experiment = SearchExperiment(config, build=build, loaders=loaders)
    return loop.run(
        experiment,
        config,
        workdir,
        resume=resume,
        progress=progress,
        on_step=on_step,
        on_epoch_end=on_epoch_end,
    )


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
        return regenerate(wd.root)
    except FileNotFoundError as e:
        raise RunError(str(e)) from e
