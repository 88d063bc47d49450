"""Retraining a discrete architecture from scratch, and evaluating it.

Every search ends here: the genotype it found is built into the DARTS evaluation
network (:func:`jaxnas.models.make_network`) and trained as DARTS' ``train.py`` /
``train_imagenet.py`` do:

    loss = CE_ls(logits, y) + aux_weight * CE_ls(logits_aux, y)
    w <- SGD(w, clip_5(grad loss) + wd * w, lr_e, momentum 0.9)

with ``CE_ls`` the cross entropy with label smoothing ``ls`` (0 on CIFAR, 0.1 on
ImageNet), the learning rate set per epoch (cosine to ``lr_min`` on CIFAR; ``lr *
0.97^e`` on ImageNet) and the drop-path probability ramped linearly over the
epochs (``p * e / epochs``, DARTS' ``model.drop_path_prob``).

:class:`Trainer` holds the pure, jitted ``train_step(state, batch) -> (state,
metrics)`` and ``eval_step(state, batch) -> sums``, data parallel over a device
mesh (:mod:`jaxnas.parallel`: synchronised BN, several hosts), with gradient
accumulation (``train.accumulate`` micro-batches per step) and a bf16 compute
option (``model.dtype``). :func:`train` runs it on the one experiment loop
(:mod:`jaxnas.loop`): a workdir with logs, metrics, TensorBoard, curves, orbax
checkpoints every epoch and on
SIGTERM/SIGINT (last ``run.checkpoint_keep`` plus the best), bit-exact resume.
:func:`evaluate` re-reads a workdir's checkpoint and reports test top-1/top-5,
parameters, multiply-adds and images/s (``jaxnas eval``).

A train workdir holds::

  config.json, genotype.json   what was trained (genotype.json: the genotype itself)
  log.txt, metrics.jsonl, tb/  log lines, records per epoch / per logging window
  curves.png                   learning curves
  checkpoints/{step}/          the last run.checkpoint_keep states (one per epoch,
                               plus one where a SIGTERM/SIGINT stopped the run)
  best/{step}/, best.json      the state with the best test top-1 so far
  summary.json                 final metrics, parameters, multiply-adds, timings
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxnas import loop, parallel, search_spaces, xla
from jaxnas.common import (
    classification_means,
    classification_sums,
    lr_schedule,
    smoothed_cross_entropy,
)
from jaxnas.config import validate
from jaxnas.data import eval_batches
from jaxnas.ops import OpsConfig
from jaxnas.runtime import Interrupted, RunError, restore_for_eval, write_json
from jaxnas.spaces import GenotypeError
from jaxnas.spaces.darts_genotype import Genotype
from jaxnas.spaces.nb201 import NB201Arch

__all__ = [
    "default_config",
    "TrainState",
    "Trainer",
    "train",
    "evaluate",
    "Interrupted",
]

logger = logging.getLogger("jaxnas")


def default_config() -> ml_collections.ConfigDict:
    """Keys of a retraining config (``method = "train"``), with DARTS' CIFAR-10 values.

    ``model``: ``genotype`` (a shipped name such as ``"DARTS_V2"`` or a JSON file;
    ``jaxnas train --genotype`` overrides it; an NB201 arch string ``|op~0|+...`` or its
    JSON builds NAS-Bench-201's network, with ``layers`` = cells per stage, see
    ``configs/eval_nb201_cifar10.py``), ``init_channels`` (C), ``layers``,
    ``reductions`` (0-based reduction cells; ``()``: the genotype's recorded positions,
    else DARTS' ``layers // 3, 2 * layers // 3``; positions that contradict the
    genotype's are an error),
    ``auxiliary`` + ``auxiliary_weight``, ``drop_path_prob`` (reached at the last
    epoch, linear ramp from 0), ``scan_cells`` (share compiled bodies of identical
    cells), ``group_ops`` (run a node's ops of one kind as one ``nn.vmap``: fewer
    compiled bodies for mixed-path cells, :class:`jaxnas.ops.OpsConfig`), ``depthwise``
    (``"custom_vjp"``, ``"shifted"``, ``"lax"``), ``dtype``
    (``"float32"`` or ``"bfloat16"``: compute precision; weights stay float32),
    ``remat`` (DARTS-space cells recompute their intermediates in the backward pass;
    ``None``: on for the CPU, where it halves the memory at no step time,
    :func:`jaxnas.supernet.resolve_remat`).

    ``optim``: SGD ``lr``, ``schedule`` (``"cosine"``: per-epoch cosine to
    ``lr_min``; ``"exponential"``: ``lr * decay_rate^epoch``), ``momentum`` (``nesterov``:
    Nesterov's variant, PyTorch's ``SGD(nesterov=True)``),
    ``weight_decay`` (coupled, on every weight as PyTorch's SGD), ``grad_clip``
    (global norm; 0: off), ``label_smoothing``.

    ``train``: ``epochs``, ``accumulate`` (micro-batches per step: ``data.batch_size``
    is the global batch of one optimiser step), ``num_devices`` (0: all),
    ``distributed`` (join other hosts with ``jax.distributed.initialize``),
    ``eval_every`` (epochs between test evaluations; the last epoch always),
    ``eval_batch_size`` (0: ``data.batch_size``).

    The shared ``data`` keys give the dataset and augmentation (``portion`` is unused:
    retraining uses the whole training split); ``run`` the logging and checkpoints.
    """
    c = ml_collections.ConfigDict()
    c.model = ml_collections.ConfigDict(
        dict(
            genotype="DARTS_V2",
            init_channels=36,
            layers=20,
            reductions=(),
            auxiliary=True,
            auxiliary_weight=0.4,
            drop_path_prob=0.2,
            scan_cells=True,
            group_ops=False,
            depthwise="custom_vjp",
            dtype="float32",
            remat=None,
        )
    )
    c.optim = ml_collections.ConfigDict(
        dict(
            lr=0.025,
            schedule="cosine",
            lr_min=0.0,
            decay_rate=0.97,
            momentum=0.9,
            nesterov=False,
            weight_decay=3e-4,
            grad_clip=5.0,
            label_smoothing=0.0,
        )
    )
    c.train = ml_collections.ConfigDict(
        dict(
            epochs=600,
            accumulate=1,
            num_devices=0,
            distributed=False,
            eval_every=1,
            eval_batch_size=0,
        )
    )
    return c


class TrainState(flax.struct.PyTreeNode):
    """The retraining state (a pytree of arrays, replicated over the mesh)."""

    step: jax.Array  # int32 scalar: optimiser steps done
    params: Any
    batch_stats: Any
    opt_state: optax.OptState
    rng: jax.Array  # raw uint32 key; step t draws drop-path masks from fold_in(rng, t)


class Trainer:
    """The network of a genotype, its optimiser, and the jitted steps over a device mesh.

    Args:
      config: a validated retraining config (see :func:`default_config`).
      genotype: the architecture.
      num_classes, input_shape: of the data (``input_shape = (H, W, C)``).
      steps_per_epoch: optimiser steps per epoch (for the schedules).
      mesh: the data mesh (:func:`jaxnas.parallel.data_mesh`); default all devices.

    ``train_step(state, (images, labels))`` takes the *global* batch (``B`` =
    ``data.batch_size`` rows, sharded over the mesh), splits it into
    ``train.accumulate`` micro-batches (row ``i`` goes to micro-batch ``i mod k``, so
    every micro-batch spans all devices), averages their gradients (BN statistics are
    updated micro-batch after micro-batch, as ``k`` PyTorch forward passes would) and
    makes one SGD step. Metrics (replicated scalars): ``loss`` (cross entropy of the
    main head), ``accuracy``, ``grad_norm``, ``lr``.

    ``eval_step(state, (images, labels, mask))`` returns sums over the batch's
    ``mask``-ed rows: ``loss``, ``top1``, ``top5``, ``count``.
    """

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        genotype: Genotype,
        *,
        num_classes: int,
        input_shape: tuple[int, int, int],
        steps_per_epoch: int,
        mesh: Any = None,
    ):
        from jaxnas.models.darts_net import DATASET_SPECS

        self.config = config
        self.genotype = genotype
        self.num_classes = int(num_classes)
        self.input_shape = tuple(int(s) for s in input_shape)
        self.steps_per_epoch = int(steps_per_epoch)
        self.mesh = mesh if mesh is not None else parallel.data_mesh(config.train.num_devices)
        m, o, t = config.model, config.optim, config.train
        # unknown ops, reductions contradicting the genotype's etc.: one line, before compiling
        reductions = tuple(int(r) for r in m.reductions) or None
        space = search_spaces.space_of(genotype)
        space.check_genotype(genotype, int(m.layers), reductions)
        self.epochs = int(t.epochs)
        self.accumulate = int(t.accumulate)
        if self.accumulate < 1:
            raise ValueError(f"train.accumulate must be >= 1, got {self.accumulate}")
        if m.dtype not in ("float32", "bfloat16"):
            raise ValueError(f"model.dtype must be 'float32' or 'bfloat16', got {m.dtype!r}")
        bs = int(config.data.batch_size)
        if bs % (self.accumulate * self.mesh.size):
            raise ValueError(
                f"data.batch_size={bs} must be divisible by train.accumulate ({self.accumulate}) "
                f"x devices ({self.mesh.size})"
            )
        spec = DATASET_SPECS.get(config.data.dataset)
        family = (
            spec.family if spec else ("imagenet" if min(self.input_shape[:2]) > 64 else "cifar")
        )
        cfg = OpsConfig(
            depthwise=m.depthwise, dtype=jnp.dtype(m.dtype), group_ops=bool(m.get("group_ops"))
        )
        # DARTS: NetworkCIFAR / NetworkImageNet; NB201: model.layers = cells per stage
        self.model = space.discrete_network(
            genotype, self.num_classes, model=m, cfg=cfg, family=family
        )
        self.lr = lr_schedule(o, self.epochs, self.steps_per_epoch)
        parts = [optax.clip_by_global_norm(o.grad_clip)] if o.grad_clip > 0 else []
        self.tx = optax.chain(
            *parts,
            optax.add_decayed_weights(o.weight_decay),
            optax.sgd(self.lr, momentum=o.momentum or None, nesterov=bool(o.nesterov)),
        )
        rep, data = parallel.replicated(self.mesh), parallel.batch_sharding(self.mesh)
        self._rep, self._data = rep, data
        self._init = xla.jit_init(self._init_state, out_shardings=rep)
        self.train_step = jax.jit(
            self._train_step, in_shardings=(rep, data), out_shardings=(rep, rep), donate_argnums=0
        )
        self.eval_step = jax.jit(self._eval_step, in_shardings=(rep, data), out_shardings=rep)

    # ---- state ------------------------------------------------------------------------

    def init(self, seed: int) -> TrainState:
        """The initial state (replicated over the mesh) from an integer seed."""
        return self._init(jax.random.key_data(jax.random.key(seed)))

    def _init_state(self, raw_key: jax.Array) -> TrainState:
        rng_init, rng_state = jax.random.split(jax.random.wrap_key_data(raw_key))
        x = jnp.zeros((2, *self.input_shape), jnp.float32)
        variables = self.model.init({"params": rng_init}, x, train=False)
        params = variables["params"]
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            batch_stats=variables["batch_stats"],
            opt_state=self.tx.init(params),
            rng=jax.random.key_data(rng_state),
        )

    def drop_prob(self, step: jax.Array) -> jax.Array:
        """``drop_path_prob * epoch / epochs`` (DARTS sets it at the start of each epoch)."""
        e = (step // self.steps_per_epoch).astype(jnp.float32)
        return jnp.float32(self.config.model.drop_path_prob) * e / self.epochs

    # ---- steps ------------------------------------------------------------------------

    def _loss(self, params, batch_stats, images, labels, rng, drop_prob):
        m, o = self.config.model, self.config.optim
        (logits, aux), upd = self.model.apply(
            {"params": params, "batch_stats": batch_stats},
            images,
            train=True,
            drop_prob=drop_prob,
            rngs={"dropout": rng},
            mutable=["batch_stats"],
        )
        main = smoothed_cross_entropy(logits, labels, o.label_smoothing)
        total = main
        if aux is not None:
            total = main + m.auxiliary_weight * smoothed_cross_entropy(
                aux, labels, o.label_smoothing
            )
        acc = jnp.mean(jnp.argmax(logits, -1) == labels)
        return total, (upd["batch_stats"], main, acc)

    def _train_step(self, state: TrainState, batch):
        images, labels = batch
        k = self.accumulate
        rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
        p = self.drop_prob(state.step)
        grad_fn = jax.grad(self._loss, has_aux=True)

        def micro(carry, inp):
            stats, g_sum, sums = carry
            x, y, j = inp
            g, (stats, main, acc) = grad_fn(
                state.params, stats, x, y, jax.random.fold_in(rng, j), p
            )
            g_sum = jax.tree.map(jnp.add, g_sum, g)
            return (stats, g_sum, sums + jnp.stack([main, acc])), None

        if k == 1:
            g, (stats, main, acc) = grad_fn(state.params, state.batch_stats, images, labels, rng, p)
            loss_acc = jnp.stack([main, acc])
        else:
            # row i -> micro-batch i mod k: each micro-batch keeps the batch's sharding
            split = lambda a: jnp.swapaxes(a.reshape(-1, k, *a.shape[1:]), 0, 1)
            zeros = jax.tree.map(jnp.zeros_like, state.params)
            (stats, g, sums), _ = jax.lax.scan(
                micro,
                (state.batch_stats, zeros, jnp.zeros(2)),
                (split(images), split(labels), jnp.arange(k)),
            )
            g = jax.tree.map(lambda a: a / k, g)
            loss_acc = sums / k
        updates, opt_state = self.tx.update(g, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new = state.replace(
            step=state.step + 1, params=params, batch_stats=stats, opt_state=opt_state
        )
        metrics = dict(
            loss=loss_acc[0],
            accuracy=loss_acc[1],
            grad_norm=optax.tree.norm(g),
            lr=self.lr(state.step),
        )
        return new, metrics

    def _eval_step(self, state: TrainState, batch):
        images, labels, mask = batch
        logits, _ = self.model.apply(
            {"params": state.params, "batch_stats": state.batch_stats}, images, train=False
        )
        return classification_sums(logits, labels, mask)

    # ---- helpers ----------------------------------------------------------------------

    def shard(self, batch: Any, local: bool = False) -> Any:
        """A host batch (global rows, or only this process's with ``local``) as arrays
        sharded over the mesh."""
        return parallel.shard_batch(batch, self.mesh, local=local)

    def evaluate(
        self, state: TrainState, batches: Iterator, local: bool = False
    ) -> dict[str, float]:
        """Test loss, top-1 and top-5 accuracy over ``(images, labels, mask)`` batches
        (``local``: each batch holds only this process's rows)."""
        pending = [self.eval_step(state, self.shard(b, local)) for b in batches]
        return classification_means(jax.device_get(pending))


# ------------------------------------------------------------------------------ data


def _load_data(config: ml_collections.ConfigDict, mesh: Any):
    """``(train_loader, test_source)`` for retraining (the whole training split).

    In-memory datasets use :class:`jaxnas.data.Loader`; ImageNet streams JPEGs through
    :class:`jaxnas.data_imagenet.ImageNetLoader` (DARTS' train transforms); either way
    each process gathers and augments only its own devices' rows.
    """
    from jaxnas import data

    d = config.data
    if d.dataset not in data.DATASETS:
        raise RunError(f"unknown dataset {d.dataset!r} in data.dataset; known: {data.DATASETS}")
    bs = int(d.batch_size)
    if d.dataset == "imagenet2012":
        from jaxnas import data_imagenet as inet

        rows = parallel.local_rows(mesh, bs) if jax.process_count() > 1 else None
        workers = min(16, os.cpu_count() or 1)
        train_src = inet.ImageNetSource(d.dataset, "train", data_dir=d.data_dir or None)
        test_src = inet.ImageNetSource(d.dataset, "validation", data_dir=d.data_dir or None)
        loader = inet.ImageNetLoader(
            train_src,
            bs,
            seed=config.seed,
            train=True,
            limit=d.limit or None,
            workers=workers,
            rows=rows,
        )
        return loader, test_src
    train_ds = data.load(d.dataset, "train", data_dir=d.data_dir or None, limit=d.limit or None)
    # data.limit shortens the training split only; run.eval_limit the test split
    test_ds = data.load(d.dataset, "test", data_dir=d.data_dir or None)
    augment = data.Augment(crop_padding=d.crop_padding, flip=d.flip, cutout=d.cutout)
    try:
        loader = data.Loader(
            train_ds,
            None,
            bs,
            seed=config.seed,
            augment=augment,
            drop_last=True,
            pad_to=d.pad_to or None,
            rows=parallel.local_rows(mesh, bs) if jax.process_count() > 1 else None,
        )
    except ValueError as e:
        raise RunError(f"data: {e}") from e
    return loader, test_ds


def _test_batches(test_ds: Any, config: ml_collections.ConfigDict, mesh: Any):
    """``(batches, local)``: the test split in fixed-size masked batches."""
    bs = int(config.train.eval_batch_size or config.data.batch_size)
    if bs % mesh.size:
        raise RunError(f"eval batch {bs} does not split over {mesh.size} devices")
    limit = int(config.run.eval_limit)
    if config.data.dataset == "imagenet2012":
        from jaxnas import data_imagenet as inet

        rows = parallel.local_rows(mesh, bs) if jax.process_count() > 1 else None
        workers = min(16, os.cpu_count() or 1)
        batches = inet.eval_batches(test_ds, bs, limit=limit, rows=rows, workers=workers)
        return batches, rows is not None
    return eval_batches(test_ds, bs, pad_to=config.data.pad_to or None, limit=limit), False


# ------------------------------------------------------------------------------ the run


def resolve_genotype(config: ml_collections.ConfigDict, genotype: Any) -> Genotype | NB201Arch:
    """A DARTS genotype (name or JSON) or an NB201 cell (arch string or its JSON):
    ``genotype``, else ``model.genotype`` (:func:`jaxnas.search_spaces.resolve_genotype`)."""
    spec = genotype if genotype is not None else config.model.genotype
    return search_spaces.resolve_genotype(spec, ("nb201", "darts"))


@dataclasses.dataclass(frozen=True)
class TrainWorkdir(loop.Workdir):
    """A retraining workdir: the loop's files (:class:`jaxnas.loop.Workdir`) and the
    trained ``genotype.json``, ``eval.json``."""

    genotype = property(lambda self: self.path("genotype.json"))
    eval_json = property(lambda self: self.path("eval.json"))


def network_report(trainer: Trainer, state: TrainState) -> dict[str, Any]:
    """Parameters (without the auxiliary head, and of it), multiply-adds per image and the
    reduction cells of ``trainer``'s network with ``state``'s weights."""
    from jaxnas.models.summary import count_macs, count_params

    variables = {"params": state.params, "batch_stats": state.batch_stats}
    shapes = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), variables)
    params = count_params(state.params)
    macs = count_macs(trainer.model, shapes, trainer.input_shape)  # unrolls scan / vmap
    red = getattr(trainer.model, "reduction_cells", None)  # DARTS networks
    return {
        **({"reductions": list(red())} if red is not None else {}),
        "params": params,
        "params_M": params / 1e6,
        "params_auxiliary": count_params(state.params, exclude=()) - params,
        "macs": macs,
        "macs_M": macs / 1e6,
    }


class TrainExperiment(loop.Experiment):
    """Retraining a genotype from scratch as an experiment of :func:`jaxnas.loop.run`."""

    best_metric = "test/accuracy"
    workdir_class = TrainWorkdir
    name = "retraining"

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        genotype: Genotype | str | None,
        datasets: tuple[Any, Any] | None = None,
    ):
        self.config = config
        self.genotype = genotype
        self._datasets = datasets
        self.report: dict[str, Any] = {}

    def setup(self, wd: TrainWorkdir, latest_step: int | None) -> None:
        config = self.config
        self.genotype = genotype = loop.resumed_artifact(
            wd.genotype, self.genotype, lambda g: resolve_genotype(config, g), latest_step
        )
        try:
            self.mesh = mesh = parallel.data_mesh(int(config.train.num_devices))
        except ValueError as e:
            raise RunError(str(e)) from e
        self.loader, self.test_ds = self._datasets or _load_data(config, mesh)
        self.local = getattr(self.loader, "rows", None) is not None  # yields only our rows
        self.steps_per_epoch = len(self.loader)
        if self.steps_per_epoch == 0:
            raise RunError("an epoch has no steps: lower data.batch_size or raise data.limit")
        sample, _ = next(iter(self.loader.epoch(0)))
        input_shape = tuple(int(s) for s in sample.shape[1:])
        num_classes = int(getattr(self.loader.ds, "num_classes", 0) or self.test_ds.num_classes)
        try:
            self.trainer = trainer = Trainer(
                config,
                genotype,
                num_classes=num_classes,
                input_shape=input_shape,
                steps_per_epoch=self.steps_per_epoch,
                mesh=mesh,
            )
        except GenotypeError:
            raise
        except ValueError as e:  # bad settings: devices, batch split, dtype
            raise RunError(str(e)) from e
        self.epochs = trainer.epochs
        self.examples_per_step = int(self.loader.batch_size)
        self.eval_every = max(1, int(config.train.eval_every))
        logger.info(
            "retraining %s on %s (%s, %d classes): C=%d, %d layers, %d steps/epoch x %d "
            "epochs, global batch %d on %d device(s)%s",
            type(trainer.model).__name__,
            config.data.dataset,
            "x".join(map(str, input_shape)),
            num_classes,
            config.model.init_channels,
            config.model.layers,
            self.steps_per_epoch,
            self.epochs,
            config.data.batch_size,
            mesh.size,
            f" in {jax.process_count()} processes" if jax.process_count() > 1 else "",
        )

    def steps_in(self, epoch: int) -> int:
        return self.steps_per_epoch

    def init(self) -> TrainState:
        state = self.trainer.init(self.config.seed)
        self.report = network_report(self.trainer, state)
        logger.info(
            "%.3fM parameters (without auxiliary head), %.1fM multiply-adds per image",
            self.report["params_M"],
            self.report["macs_M"],
        )
        return state

    def batches(self, epoch: int):
        return self.loader.epoch(epoch)

    def step(self, state: TrainState, batch: Any):
        return self.trainer.train_step(state, self.trainer.shard(batch, self.local))

    def start(self, wd: TrainWorkdir, state: TrainState, resumed_step: int | None) -> None:
        if self.primary:
            search_spaces.space_of(self.genotype).save(self.genotype, wd.genotype)

    def end_epoch(self, wd: TrainWorkdir, state: TrainState, epoch: int):
        record: dict[str, Any] = {
            "drop_prob": float(
                self.trainer.drop_prob(jnp.int32((epoch - 1) * self.steps_per_epoch))
            )
        }
        if self.test_ds is not None and (epoch % self.eval_every == 0 or epoch == self.epochs):
            batches, local_eval = _test_batches(self.test_ds, self.config, self.mesh)
            test = self.trainer.evaluate(state, batches, local_eval)
            record.update({f"test/{k}": v for k, v in test.items()})
        return state, record

    def finish(self, wd: TrainWorkdir, state: TrainState, records: list[dict]) -> dict[str, Any]:
        return {
            "genotype": str(self.genotype),
            "devices": self.mesh.size,
            "processes": jax.process_count(),
            **self.report,
        }


def train(
    config: ml_collections.ConfigDict,
    workdir: str | os.PathLike,
    *,
    genotype: Genotype | str | None = None,
    resume: bool = False,
    progress: bool = True,
    on_step: Callable[[int, int], None] | None = None,
    datasets: tuple[Any, Any] | None = None,
) -> dict[str, Any]:
    """Retrain ``genotype`` from scratch and write everything to ``workdir``.

    Args:
      config: a retraining config (``method = "train"``, :func:`default_config`).
      workdir: output folder (see the module docstring).
      genotype: a :class:`Genotype`, a shipped name or a JSON file; default
        ``config.model.genotype``. Written to ``workdir/genotype.json``; a resumed run
        reads that file back (and refuses a different one).
      resume: continue from the latest checkpoint (epoch end or signal); bit-exact on CPU.
      progress: a tqdm bar over the steps of each epoch.
      on_step: called as ``on_step(epoch, global_step)`` after each step (0-based epoch).
      datasets: ``(train_loader, test_dataset)`` to use instead of loading ``config.data``.

    Returns:
      The summary (also ``summary.json``): the loop's fields (:func:`jaxnas.loop.run`:
      ``final``, the last epoch record; ``best``, the best test top-1 as ``value`` and
      its ``epoch``; ``images_per_s``, training, after the first epoch's compile;
      ``wall_time``, paths), network size (``params``, ``params_M`` without the
      auxiliary head, ``macs``), ``genotype``, ``devices``, ``processes``.

    Raises:
      RunError: existing checkpoints without ``resume``; a checkpoint of another
        architecture; NaN/Inf (the last good checkpoint is kept); more devices asked
        for than exist; bad data or model settings; a workdir in use.
      Interrupted: SIGTERM/SIGINT (after saving a checkpoint of the current step).
    """
    xla.prepare()
    config = validate(config.to_dict() if hasattr(config, "to_dict") else dict(config))
    if config.method != "train":
        raise RunError(f"a retraining config has method='train', this one {config.method!r}")
    config.lock()
    if config.train.distributed:
        parallel.initialize_distributed()
    return loop.run(
        TrainExperiment(config, genotype, datasets),
        config,
        workdir,
        resume=resume,
        progress=progress,
        on_step=on_step,
    )


# ------------------------------------------------------------------------------ evaluation


def evaluate(
    checkpoint: str | os.PathLike,
    *,
    overrides: Mapping[str, Any] | None = None,
    which: str = "best",
) -> dict[str, Any]:
    """Evaluate a retraining checkpoint on the test split (``jaxnas eval``).

    Args:
      checkpoint: a train workdir (uses ``which``: its ``"best"`` state, else the
        latest), or one checkpoint folder inside it (``workdir/checkpoints/<step>``
        or ``workdir/best/<step>``).
      overrides: config values to change first (e.g. ``{"data.data_dir": ...}``).
      which: ``"best"`` or ``"latest"`` for a workdir.

    Returns:
      ``test/loss``, ``test/accuracy`` (top-1), ``test/top5``, ``examples``,
      ``params`` / ``params_M`` (without the auxiliary head), ``macs``,
      ``images_per_s`` (inference, after compilation), ``checkpoint`` (the folder
      evaluated). Also written to ``workdir/eval.json``.

    Raises:
      RunError: not a train workdir / checkpoint, or one of another architecture.
    """
    root, step, folder_which, config = loop.eval_target(checkpoint, "train", overrides)
    which = folder_which or which
    wd = TrainWorkdir(root)
    genotype = resolve_genotype(config, wd.genotype)
    mesh = parallel.data_mesh(int(config.train.num_devices))
    _, test_ds = _load_data(config, mesh)
    batches, local = _test_batches(test_ds, config, mesh)
    batches = list(batches)
    input_shape = tuple(int(s) for s in batches[0][0].shape[1:])
    trainer = Trainer(
        config,
        genotype,
        num_classes=test_ds.num_classes,
        input_shape=input_shape,
        steps_per_epoch=1,
        mesh=mesh,
    )
    target = trainer.init(config.seed)
    state, folder, step = restore_for_eval(
        wd.best, wd.checkpoints, target, which=which, step=step, root=root
    )
    trainer.evaluate(state, batches[:1], local)  # compile
    t0 = time.time()
    result = trainer.evaluate(state, batches, local)
    seconds = time.time() - t0
    out = {f"test/{k}": v for k, v in result.items() if k != "examples"}
    out.update(
        examples=result["examples"],
        images_per_s=result["examples"] / max(seconds, 1e-9),
        checkpoint=os.path.join(folder, str(step)),
        step=step,
        **network_report(trainer, state),
    )
    if jax.process_index() == 0:
        write_json(wd.eval_json, out)
    return out
