"""The one experiment loop: workdir, checkpoints, resume, signals, NaN stops, records.

Every long run of jaxnas (a search, a retraining) is an :class:`Experiment` run by
:func:`run`, in the manner of jaxline's experiment protocol or Flax's
``train_and_evaluate``: the experiment says how to build its state, which batches an
epoch reads, what one step does and what to evaluate and write at an epoch's end; the
loop owns everything else, once:

* the workdir (:class:`Workdir`) and a lock against a second run in it
  (:class:`WorkdirLock`; the lock dies with its process, so a ``kill -9`` leaves none);
* the config snapshot ``config.json`` (written only after the experiment was set up,
  so a bad config or missing data destroys nothing);
* orbax checkpoints keyed by the global step: one per epoch, and one where a
  SIGTERM/SIGINT stopped the run (:class:`jaxnas.runtime.StopFlag`), with the step
  metrics not yet averaged kept beside it (``pending.json``), so that a resume gives
  records, not only parameters, bit-identical to an uninterrupted run (CPU);
* a signal on an epoch's last step finishes that epoch first (its evaluation,
  records and checkpoint), so a resume never starts an epoch whose record is missing;
* NaN/Inf in a logging window, in the epoch means or in the state: one-line
  :class:`jaxnas.runtime.RunError` naming the last good checkpoint, which is kept;
* ``metrics.jsonl`` (a ``"step"`` record every ``run.log_every_steps`` steps, the
  mean of the steps since the previous one of the same epoch; an ``"epoch"`` record
  per epoch, the means of its steps and what :meth:`Experiment.end_epoch` adds),
  TensorBoard (``run.tensorboard``), ``log.txt`` (ending with ``stopped: <error>``
  when a run fails, ``not started: <error>`` when it is refused before its first
  step, which changes no other file of an existing workdir and removes a workdir the
  call created), a progress bar, ``curves.png`` and ``summary.json``;
* the best state (``best/{step}``, ``best.json``) by ``Experiment.best_metric``
  (``best_mode`` "max" or "min"), saved before the epoch's checkpoint so that a kill
  between the two never leaves a finished-looking run with a stale best.

Epoch ``e`` (0-based) must read the same batches whenever it is run (a pure function
of the seed and ``e``); all other randomness lives in the state. That is what makes a
resume exact: the loop replays the interrupted epoch's batches and skips those done.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
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

from jaxnas import parallel, plots
from jaxnas.config import config_to_json
from jaxnas.files import write_text
from jaxnas.optional import require
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
    truncate_metrics,
    write_json,
)

__all__ = [
    "Experiment",
    "PLACEMENT_KEYS",
    "Workdir",
    "WorkdirLock",
    "eval_target",
    "locate_step",
    "resumed_artifact",
    "log_line",
    "metric_name",
    "run",
    "run_mesh",
]

logger = logging.getLogger("jaxnas")

StepCallback = Callable[[int, int], None]
EpochCallback = Callable[[int, Mapping[str, Any]], None]


# ----------------------------------------------------------------------------- workdir


def _committed(state: Any) -> Any:
    """``state`` with each (single-process) array committed to the devices it lies on.

    A restored checkpoint's arrays are committed; a jitted init's outputs are not, and
    ``jax.jit`` compiles a separate program for committed arguments: without this a
    resumed run compiled its steps a second time.
    """
    return jax.tree.map(
        lambda a: (
            jax.device_put(a, a.sharding)
            if isinstance(a, jax.Array) and a.is_fully_addressable
            else a
        ),
        state,
    )


@dataclasses.dataclass(frozen=True)
class Workdir:
    """The paths of a run's workdir; an experiment adds its own files with :meth:`path`.

    ::

      config.json      the full config of the run
      log.txt          log lines (one per epoch and the run's messages)
      metrics.jsonl    "step" records every run.log_every_steps steps, "epoch" records
      tb/              TensorBoard events (run.tensorboard)
      checkpoints/{s}/ orbax checkpoints after global step s
      pending.json     step metrics not yet averaged at a signal checkpoint
      best/{s}/, best.json   the state with the best Experiment.best_metric
      digests.json     sha256 of each checkpoint's state, checked on resume
      corrupt/         checkpoints a resume found unusable (moved aside, not deleted)
      curves.png       learning curves
      summary.json     what the run reports at its end
      .lock            held by the live run (fcntl), with its PID
    """

    root: str

    def __post_init__(self):
        object.__setattr__(self, "root", os.path.abspath(os.fspath(self.root)))

    def path(self, *parts: str) -> str:
        """``root/parts...``."""
        return os.path.join(self.root, *parts)

    config = property(lambda self: self.path("config.json"))
    log = property(lambda self: self.path("log.txt"))
    metrics = property(lambda self: self.path("metrics.jsonl"))
    tensorboard = property(lambda self: self.path("tb"))
    checkpoints = property(lambda self: self.path("checkpoints"))
    pending = property(lambda self: self.path("pending.json"))
    best = property(lambda self: self.path("best"))
    best_json = property(lambda self: self.path("best.json"))
    curves_plot = property(lambda self: self.path("curves.png"))
    summary = property(lambda self: self.path("summary.json"))
    lock = property(lambda self: self.path(".lock"))
    digests = property(lambda self: self.path("digests.json"))

    def make(self) -> None:
        """Create the folder; one-line :class:`RunError` when that cannot be done."""
        if not self.root or os.path.isfile(self.root):
            raise RunError(f"workdir {self.root} is a file; give a folder for --workdir")
        try:
            os.makedirs(self.root, exist_ok=True)
        except OSError as e:
            raise RunError(f"cannot create workdir {self.root}: {e.strerror or e}") from e
        if not os.access(self.root, os.W_OK):
            raise RunError(f"workdir {self.root} is not writable")


def eval_target(
    checkpoint: str | os.PathLike,
    method: str,
    overrides: Mapping[str, Any] | None = None,
) -> tuple[str, int | None, str | None, ml_collections.ConfigDict]:
    """What ``jaxnas eval`` reads: ``(root, step, which, config)`` for ``checkpoint``, a
    workdir of a ``method`` run (``step`` and ``which`` None: the caller's choice) or a
    checkpoint folder ``root/{checkpoints,best}/<step>`` inside one (that ``step``, and
    ``which`` the folder's name); ``config`` is the run's, with ``overrides`` applied.

    Raises:
      RunError: neither, or a workdir of another method.
    """
    from jaxnas.config import apply_overrides, config_from_json

    path = os.path.abspath(os.fspath(checkpoint))
    step, which = None, None
    wd = Workdir(path)
    if os.path.isfile(wd.config) and os.path.isdir(wd.checkpoints):
        root = path
    else:
        parent = os.path.dirname(path)
        root = os.path.dirname(parent)
        if not (
            os.path.basename(path).isdigit()
            and os.path.basename(parent) in ("checkpoints", "best")
            and os.path.isfile(Workdir(root).config)
        ):
            raise RunError(
                f"{path} is neither a {method} workdir (with config.json and checkpoints/) nor "
                "a checkpoint folder inside one (workdir/checkpoints/<step>, workdir/best/<step>)"
            )
        step, which = int(os.path.basename(path)), os.path.basename(parent)
    with open(Workdir(root).config, encoding="utf-8") as f:
        config = config_from_json(f.read())
    if config.method != method:
        raise RunError(f"{root} is a {config.method!r} workdir, not a {method} one")
    if overrides:
        config = apply_overrides(config, [f"{k}={v}" for k, v in overrides.items()])
    return root, step, which, config


class WorkdirLock:
    """An exclusive ``fcntl`` lock on ``workdir/.lock`` for the duration of a run.

    A second run on the same workdir is refused with one line naming the first one's
    PID. The kernel drops the lock when its process dies, however it dies, so a lock
    left by a killed run never blocks the next one (the file stays, the lock does not).
    """

    def __init__(self, wd: Workdir):
        self.wd = wd
        self._fd: int | None = None

    def __enter__(self) -> WorkdirLock:
        import fcntl

        fd = os.open(self.wd.lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            try:
                with open(self.wd.lock, encoding="utf-8") as f:
                    owner = f.read().strip() or "?"
            except OSError:
                owner = "?"
            raise RunError(
                f"{self.wd.root} is in use by another jaxnas run (pid {owner}); wait for it "
                "to end or use another --workdir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the flock
            self._fd = None


# -------------------------------------------------------------------------- experiment


class Experiment:
    """What a run is; :func:`run` drives it. Subclasses set the attributes and override
    :meth:`setup`, :meth:`init`, :meth:`batches`, :meth:`step` and the optional hooks.

    Attributes:
      name: what the log lines call the run (``"darts search"``).
      epochs: epochs to run (set in :meth:`setup` at the latest).
      best_metric: an epoch-record key whose best value's state is kept in ``best/``
        (None: no best state); ``best_mode``: "max" or "min".
      examples_per_step: examples per step, for the ``images_per_s`` record (None: off).
      tags: fields added to every record (``{"phase": "search"}``).
      outputs: files and folders (relative to the workdir) that a fresh run removes
        because they belong to an earlier run that never checkpointed.
      workdir_class: the :class:`Workdir` subclass that names the experiment's files;
        the hooks receive one.
      data_parallel: the experiment runs on the mesh of ``run.devices`` and
        ``run.distributed`` (the image search); for any other the loop refuses a
        setting of those keys other than 1 device, one process (one line).
      primary: set by the loop: whether this process writes files (process 0 of a
        multi-process run). Every process calls every hook, since evaluations are
        collective; the hooks write files only when ``primary``.
    """

    name: str = "run"
    epochs: int = 0
    best_metric: str | None = None
    best_mode: str = "max"
    examples_per_step: int | None = None
    outputs: tuple[str, ...] = ()
    tags: Mapping[str, Any] = {}
    workdir_class: type[Workdir] = Workdir
    data_parallel: bool = False
    primary: bool = True

    def setup(self, wd: Workdir, latest_step: int | None) -> None:
        """Load data and build models; raise :class:`RunError` on bad settings. Runs
        before the loop writes or removes anything in the workdir; ``latest_step`` is
        the checkpoint a resume will continue from (None: a fresh run)."""

    def steps_in(self, epoch: int) -> int:
        """Steps of epoch ``epoch`` (0-based); the default is the same every epoch."""
        raise NotImplementedError

    def init(self) -> Any:
        """The initial state pytree (also the restore target of a resume)."""
        raise NotImplementedError

    def batches(self, epoch: int) -> Iterable[Any]:
        """The batches of epoch ``epoch``: the same ones every time it is asked for."""
        raise NotImplementedError

    def step(self, state: Any, batch: Any) -> tuple[Any, Mapping[str, Any]]:
        """One jitted step: ``(new_state, metrics)`` with scalar array metrics."""
        raise NotImplementedError

    def name_metrics(self, means: Mapping[str, float]) -> dict[str, float]:
        """Averaged step metrics as record keys (default :func:`metric_name`)."""
        return {metric_name(k): v for k, v in means.items()}

    def begin_epoch(self, state: Any, epoch: int, skip: int) -> Any:
        """The state to start epoch ``epoch`` (0-based) with, ``skip`` steps of it done
        (a resume); e.g. a recurrent model resets its hidden state when ``skip == 0``."""
        return state

    def start(self, wd: Workdir, state: Any, resumed_step: int | None) -> None:
        """Called once before the first step: ``resumed_step`` is None for a fresh run
        (write what belongs to step 0) or the restored step (drop this experiment's
        files written after it)."""

    def end_epoch(self, wd: Workdir, state: Any, epoch: int) -> tuple[Any, dict[str, Any]]:
        """After epoch ``epoch`` (1-based count of epochs done): evaluate, write the
        epoch's own files; return the state to checkpoint (a method may switch a mode
        here, as AWD's ASGD trigger does) and extra fields for the epoch's record.
        Everything written here comes before the epoch's checkpoint, so a kill in
        between leaves files that the resume's :meth:`start` drops."""
        return state, {}

    def finish(self, wd: Workdir, state: Any, records: list[dict]) -> dict[str, Any]:
        """At the end of the run: final files; fields for ``summary.json``."""
        return {}


# ------------------------------------------------------------------------------ helpers


def locate_step(step: int, steps_in: Callable[[int], int]) -> tuple[int, int]:
    """``(epoch, skip)`` of global ``step``: ``epoch`` (0-based) is the epoch to run next
    and ``skip`` its steps already done (0 at an epoch boundary).

    Args:
      step: steps done.
      steps_in: the number of steps of epoch ``e``.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    epoch, done = 0, 0
    while True:
        n = steps_in(epoch)
        if n < 1:
            raise ValueError(f"epoch {epoch} has no steps")
        if done + n > step:
            return epoch, step - done
        done += n
        epoch += 1


def resumed_artifact(
    saved: str, given: Any, resolve: Callable[[Any], Any], latest_step: int | None
) -> Any:
    """What a run trains: ``resolve(given)``, except that a resume (``latest_step`` not
    None) with the file ``saved`` keeps what that file holds and refuses a ``given``
    that differs (a resumed run must go on with the architecture it started with).

    Raises:
      RunError: ``given`` is not what the run being resumed trained.
    """
    if latest_step is None or not os.path.exists(saved):
        return resolve(given)
    kept = resolve(saved)
    if given is not None and resolve(given) != kept:
        raise RunError(
            f"--genotype differs from the one this run trained ({saved}); use a fresh --workdir"
        )
    return kept


def metric_name(key: str) -> str:
    """Step metric key -> record key: ``valid_x`` -> ``valid/x``, ``lr*`` as is, a key
    with a ``/`` as is, any other ``x`` -> ``train/x``."""
    if key.startswith("lr") or "/" in key:
        return key
    if key.startswith("valid_"):
        return "valid/" + key[len("valid_") :]
    return "train/" + key


#: config keys that place a run on devices and hosts without changing its result (the
#: step is the global batch's on any mesh): a resume may change them without a warning
PLACEMENT_KEYS = ("run.devices", "run.distributed", "train.num_devices", "train.distributed")

_LOG_GROUPS = ("train", "valid", "test")
_LOG_KEYS = (
    ("loss", "loss", ".4f"),
    ("accuracy", "acc", ".4f"),
    ("top5", "top5", ".4f"),
    ("ppl", "ppl", ".2f"),
)


def log_line(record: Mapping[str, Any], epochs: int) -> str:
    """The one-line summary of an epoch record."""
    parts = [f"epoch {record['epoch']}/{epochs}"]
    for group in _LOG_GROUPS:
        items = [
            f"{label} {record[f'{group}/{key}']:{fmt}}"
            for key, label, fmt in _LOG_KEYS
            if f"{group}/{key}" in record
        ]
        if items:
            parts.append(f"{group} " + " ".join(items))
    if "lr" in record:
        parts.append(f"lr {record['lr']:.3g}")
    if record.get("images_per_s"):
        parts.append(f"{record['images_per_s']:.0f} img/s")
    parts.append(f"{record['time']:.1f}s")
    return " | ".join(parts)


def _write_scalars(writer: Any, record: Mapping[str, Any], step: int, prefix: str = "") -> None:
    if writer is None:
        return
    for k, v in record.items():
        if k in ("kind", "epoch", "step") or not isinstance(v, (bool, int, float)):
            continue
        writer.add_scalar(prefix + k, float(v), step)


def _meter_state(meter: Meter) -> dict[str, Any]:
    window = [{k: float(np.asarray(v)) for k, v in m.items()} for m in jax.device_get(meter.window)]
    return {"window": window, "sums": dict(meter.sums), "count": meter.count}


def _load_meter(meter: Meter, saved: Mapping[str, Any]) -> None:
    meter.window = [dict(m) for m in saved["window"]]
    meter.sums = dict(saved["sums"])
    meter.count = int(saved["count"])


def state_digest(state: Any) -> str:
    """sha256 over every leaf's dtype, shape and bytes (typed PRNG keys by their key
    data), in tree order: what a restored checkpoint is checked against."""

    def raw(x):
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.key_data(x)
        return x

    h = hashlib.sha256()
    for leaf in jax.device_get(jax.tree.leaves(jax.tree.map(raw, state))):
        a = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _read_digests(path: str, key: str = "checkpoints") -> dict[str, str]:
    try:
        with open(path, encoding="utf-8") as f:
            return dict(json.load(f).get(key, {}))
    except (OSError, ValueError):
        return {}


def _write_digests(path: str, key: str, digests: Mapping[str, str]) -> None:
    try:
        with open(path, encoding="utf-8") as f:
            everything = json.load(f)
    except (OSError, ValueError):
        everything = {}
    everything[key] = dict(digests)
    write_json(path, everything)


def _disk_full(e: BaseException) -> str | None:
    """The path (or "") of a write that failed because the disk is full, else None."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            return e.filename or ""
        text = str(e)
        if "No space left on device" in text or "RESOURCE_EXHAUSTED" in text:
            return ""
        e = e.__cause__ or e.__context__
    return None


def run_mesh(config: ml_collections.ConfigDict, *, batch_sizes: Iterable[str] = ()) -> Any:
    """The data mesh of a data-parallel experiment (:attr:`Experiment.data_parallel`):
    ``run.devices`` devices, all of every process with ``run.distributed``; None for
    one device (the plain jitted step).

    Checked before any data is read or step compiled: more devices than exist, and a
    global batch (``data.batch_size`` and the ``batch_sizes`` keys, dotted) that does
    not split over them, are one-line :class:`RunError` s.
    """
    devices = int(config.run.devices)
    if devices == 1 and not config.run.distributed:
        return None
    try:
        mesh = parallel.data_mesh(devices, key="run.devices")
    except ValueError as e:
        raise RunError(str(e)) from e
    for key in ("data.batch_size", *batch_sizes):
        section, name = key.split(".")
        if int(config[section][name]) % mesh.size:
            raise RunError(
                f"{key}={config[section][name]} (the global batch) does not split "
                f"over {mesh.size} devices (run.devices)"
            )
    return mesh


def _remove(path: str) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.exists(path):
        os.remove(path)


# ---------------------------------------------------------------------------------- run


def run(
    experiment: Experiment,
    config: ml_collections.ConfigDict,
    workdir: str | os.PathLike,
    *,
    resume: bool = False,
    progress: bool = True,
    on_step: StepCallback | None = None,
    on_epoch_end: EpochCallback | None = None,
) -> dict[str, Any]:
    """Run ``experiment`` in ``workdir`` (see the module docstring).

    Args:
      experiment: what to run.
      config: the run's full config; reads ``seed``, ``run.checkpoint_keep``,
        ``run.log_every_steps``, ``run.tensorboard`` (and ``data.dataset`` for the
        summary); written to ``config.json``.
      workdir: output folder (created; removed again when this call created it and
        fails before the first step, so a refused command leaves nothing behind).
      resume: continue from the latest checkpoint (a workdir without checkpoints starts
        afresh).
      progress: a tqdm bar over the steps of each epoch.
      on_step: called as ``on_step(epoch, global_step)`` after every step (0-based
        epoch, 1-based step); raising in it stops the run like a kill would.
      on_epoch_end: called as ``on_epoch_end(epochs_done, record)`` after an epoch's
        checkpoint.

    Returns:
      The summary (also ``summary.json``): the experiment's :meth:`Experiment.finish`
      fields plus ``workdir``, ``dataset``, ``seed``, ``epochs``, ``steps_per_epoch``,
      ``final`` (the last epoch record), ``best`` (with a ``best_metric``),
      ``images_per_s`` (with ``examples_per_step``), ``metrics``, ``checkpoints``,
      ``tensorboard``, ``curves_plot`` and ``wall_time``.

    Raises:
      RunError: the workdir is in use, has checkpoints without ``resume``, or cannot be
        written; a checkpoint of another config; NaN/Inf; bad settings.
      Interrupted: SIGTERM/SIGINT, after saving a checkpoint.
    """
    t_start = time.time()
    if not experiment.data_parallel and (
        int(config.run.get("devices", 1)) != 1 or config.run.get("distributed", False)
    ):
        raise RunError(
            f"{experiment.name} runs on one device: run.devices and run.distributed are the "
            "image search's (retraining: train.num_devices, train.distributed)"
        )
    if config.run.tensorboard:  # a missing extra is one line before anything is touched
        require("tensorboardX", "TensorBoard logging (run.tensorboard)")
    wd = experiment.workdir_class(os.fspath(workdir))
    primary = jax.process_index() == 0
    # a workdir this call creates is removed again when the run fails before its first
    # step (bad data, a setting its setup refuses): a failed command leaves nothing
    created = primary and not os.path.exists(wd.root)
    if primary:
        wd.make()
    began: list[bool] = []
    try:
        return _run_locked(
            experiment, config, wd, primary, resume, progress, on_step, on_epoch_end, t_start, began
        )
    except BaseException:
        if created and not began:
            shutil.rmtree(wd.root, ignore_errors=True)
        raise


def _run_locked(
    experiment, config, wd, primary, resume, progress, on_step, on_epoch_end, t_start, began
):
    """:func:`run` with the workdir made: the lock, the checkpoint managers, the phases
    (``began`` gets an entry once the state is initialised and the steps begin)."""
    with WorkdirLock(wd) if primary else _null():
        mngr = checkpoint_manager(wd.checkpoints, int(config.run.checkpoint_keep))
        best_mngr = checkpoint_manager(wd.best, 1) if experiment.best_metric else None
        loop = None
        try:
            latest = mngr.latest_step()
            if latest is not None and not resume:
                raise RunError(
                    f"{wd.root} already has checkpoints (last: step {latest}); pass --resume "
                    "to continue that run, or use a fresh --workdir"
                )
            with FileLog(wd.log) if primary else _null() as log, StopFlag() as stop:
                log.outcome = "not started"  # a setting or file refused: nothing ran
                experiment.primary = primary
                experiment.setup(wd, latest)
                loop = _Loop(experiment, config, wd, mngr, best_mngr, stop, primary)
                state = loop.begin(latest)
                began.append(True)
                log.outcome = "stopped"
                state = loop.epochs(
                    state, progress=progress, on_step=on_step, on_epoch_end=on_epoch_end
                )
                return loop.finish(state, t_start)
        except (KeyboardInterrupt, Interrupted):
            last = mngr.latest_step()
            where = f"step {last}" if last is not None else "none yet"
            logger.warning("interrupted; last checkpoint: %s; continue with --resume", where)
            raise
        except Exception as e:  # noqa: BLE001 - a full disk surfaces as many kinds
            path = _disk_full(e)
            if path is None:
                raise
            raise RunError(
                f"no space left on the device writing {path or wd.root}; the checkpoints "
                f"before it in {wd.checkpoints} are intact: free space, then --resume"
            ) from e
        finally:
            if loop is not None and loop.writer is not None:
                loop.writer.close()
            for m in (mngr, best_mngr):
                if m is not None:
                    try:
                        m.wait_until_finished()
                        m.close()
                    except Exception as e:  # noqa: BLE001 - the run's own error goes first
                        logger.warning("closing %s: %s", m.directory, e)


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class _Loop:
    """The state of one :func:`run` between its phases."""

    def __init__(self, exp, config, wd, mngr, best_mngr, stop, primary):
        self.exp, self.config, self.wd = exp, config, wd
        self.mngr, self.best_mngr, self.stop, self.primary = mngr, best_mngr, stop, primary
        self.writer = None
        self.start = 0
        self.step = 0  # global step of the state
        self.best: dict[str, Any] = {"value": None, "epoch": 0, "step": 0}
        self.pending: dict[str, Any] | None = None
        self.throughput: list[float] = []

    # ---- before the first step -----------------------------------------------------

    def begin(self, latest: int | None) -> Any:
        exp, wd, config = self.exp, self.wd, self.config
        if self.primary:
            if latest is None:
                for rel in (
                    "metrics.jsonl",
                    "summary.json",
                    "best.json",
                    "pending.json",
                    "curves.png",
                    "tb",
                    *exp.outputs,
                ):
                    _remove(wd.path(rel))
            elif os.path.exists(wd.config):
                with open(wd.config, encoding="utf-8") as f:
                    old = json.load(f)
                changed = diff_configs(old, json.loads(config_to_json(config)))
                moved = [c for c in changed if c.split(":")[0] in PLACEMENT_KEYS]
                changed = [c for c in changed if c not in moved]
                if moved:
                    logger.info("resuming on other devices: %s", "; ".join(moved))
                if changed:
                    logger.warning(
                        "resuming with a changed config (the result will differ from an "
                        "uninterrupted run of either config): %s",
                        "; ".join(changed),
                    )

        t0 = time.time()
        state = _committed(exp.init())
        jax.block_until_ready(state)
        logger.info("initialised the %s state in %.1fs", exp.name, time.time() - t0)
        resumed = None
        if latest is not None:
            state, resumed = self._restore_newest_good(state)
            self.start = self.step = resumed
            self._resume_files()
            logger.info("resumed from %s/%d", wd.checkpoints, resumed)
        if self.primary:  # after the restore: a checkpoint that does not fit changes nothing
            write_text(wd.config, config_to_json(config) + "\n")
        exp.start(wd, state, resumed)
        if config.run.tensorboard and self.primary:
            tbx = require("tensorboardX", "TensorBoard logging (run.tensorboard)")
            self.writer = tbx.SummaryWriter(wd.tensorboard, purge_step=self.start + 1)
        return state

    def _restore_newest_good(self, target: Any) -> tuple[Any, int]:
        """The newest checkpoint that reads back whole: ``(state, step)``.

        A checkpoint that is incomplete (a stray or unfinished folder), unreadable, not
        the bytes that were saved (its digest differs from the one recorded when it
        was written) or not finite is moved to ``corrupt/`` with a warning, and the
        one before it is tried. A checkpoint of another config is an error, not a
        fallback: it says the config is wrong, not the files.
        """
        wd, mngr = self.wd, self.mngr
        digests = _read_digests(wd.digests)
        for step in sorted(mngr.all_steps(), reverse=True):
            folder = os.path.join(wd.checkpoints, str(step))
            why = None
            if not os.path.exists(os.path.join(folder, "_CHECKPOINT_METADATA")):
                why = "it is incomplete (no _CHECKPOINT_METADATA)"
            else:
                try:
                    mngr.item_metadata(step).tree  # noqa: B018 - reading is the check
                except Exception as e:  # noqa: BLE001 - whatever orbax raises: unreadable
                    why = f"its metadata is unreadable ({type(e).__name__})"
            if why is None:
                check_compatible(mngr, step, target, wd.checkpoints)  # another config: raise
                try:
                    state = restore(mngr, step, target, wd.checkpoints)
                except RunError as e:
                    why = str(e)
            if why is None:
                saved = digests.get(str(step))
                if saved is not None and saved != state_digest(state):
                    why = "its data differ from what was saved (digest mismatch)"
                elif not bool(all_finite(state)):
                    why = "it holds non-finite values"
            if why is None:
                return state, int(step)
            if self.primary:
                os.makedirs(wd.path("corrupt"), exist_ok=True)
                aside = wd.path("corrupt", f"checkpoint_{step}_{int(time.time())}")
                os.replace(folder, aside)
                digests.pop(str(step), None)
                _write_digests(wd.digests, "checkpoints", digests)
                logger.warning(
                    "checkpoint %s is not usable: %s; moved to %s, trying the one before it",
                    folder,
                    why,
                    aside,
                )
            mngr.reload()
        raise RunError(
            f"no usable checkpoint in {wd.checkpoints} (the bad ones are in "
            f"{wd.path('corrupt')}); start again in a fresh --workdir"
        )

    def _save(self, mngr: Any, folder: str, step: int, state: Any, key: str) -> None:
        """Checkpoint ``state`` at ``step`` and record its digest under ``key``."""
        import orbax.checkpoint as ocp

        mngr.save(step, args=ocp.args.StandardSave(state), force=True)
        mngr.wait_until_finished()
        if self.primary:
            digests = _read_digests(self.wd.digests, key)
            digests[str(step)] = state_digest(state)
            keep = {str(s) for s in mngr.all_steps()}
            _write_digests(self.wd.digests, key, {k: v for k, v in digests.items() if k in keep})

    def _resume_files(self) -> None:
        wd, step = self.wd, self.start
        if self.primary:
            truncate_metrics(wd.metrics, step)
        try:
            with open(wd.pending, encoding="utf-8") as f:
                saved = json.load(f)
            self.pending = saved if saved.get("step") == step else None
        except (OSError, ValueError):
            self.pending = None
        if self.best_mngr is not None:
            # a best state newer than the checkpoint we resume from is redone
            for s in self.best_mngr.all_steps():
                if s > step:
                    self.best_mngr.delete(s)
            if os.path.exists(wd.best_json):
                with open(wd.best_json, encoding="utf-8") as f:
                    best = json.load(f)
                if best.get("step", 0) <= step and best.get("value") is not None:
                    self.best = best

    # ---- the epochs ------------------------------------------------------------------

    def epochs(self, state, *, progress, on_step, on_epoch_end):
        exp = self.exp
        epoch, skip = locate_step(self.start, exp.steps_in)
        first_epoch = epoch
        if epoch > exp.epochs or (epoch == exp.epochs and skip > 0):
            logger.warning(
                "the checkpoint is past the configured %d epochs (step %d)", exp.epochs, self.start
            )
        while epoch < exp.epochs:
            state, record = self._epoch(
                state,
                epoch,
                skip,
                progress=progress,
                on_step=on_step,
                first=epoch == first_epoch,
            )
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, record)
            # Steps are dispatched asynchronously: a signal that came after the epoch's
            # last step was queued is seen only here, after its checkpoint.
            if self.stop.signal is not None:
                raise Interrupted(
                    f"stopped by {self.stop.name} after epoch {epoch + 1} (step "
                    f"{record['step']}); checkpoint saved, continue with --resume"
                )
            epoch, skip = epoch + 1, 0
        return state

    def _nan_error(self, what: str, epoch: int, step: int) -> RunError:
        last = self.mngr.latest_step()
        kept = f"step {last}" if last is not None else "none (the initial state)"
        return RunError(
            f"non-finite {what} at epoch {epoch + 1} step {step}; stopped. The last good "
            f"checkpoint is {kept} in {self.wd.checkpoints}; try a lower learning rate or "
            "stronger gradient clipping"
        )

    def _epoch(self, state, epoch, skip, *, progress, on_step, first):
        from tqdm.auto import tqdm

        exp, wd, config = self.exp, self.wd, self.config
        n = exp.steps_in(epoch)
        done = self.step - skip  # global step before this epoch's first step
        state = exp.begin_epoch(state, epoch, skip)
        log_every = int(config.run.log_every_steps)
        epoch_meter, window = Meter(), Meter()
        if skip and self.pending is not None:
            _load_meter(epoch_meter, self.pending["epoch"])
            _load_meter(window, self.pending["window"])
        t0 = time.time()
        t_steady, n_steady = None, 0
        bar = tqdm(
            total=n,
            initial=skip,
            desc=f"epoch {epoch + 1}/{exp.epochs}",
            disable=not (progress and self.primary),
            leave=False,
            dynamic_ncols=True,
            unit="step",
        )
        try:
            for i, batch in enumerate(exp.batches(epoch)):
                if i < skip:  # resumed mid-epoch: the epoch's batches replay exactly
                    continue
                if i >= n:
                    break
                t_step = time.time()
                state, metrics = exp.step(state, batch)
                epoch_meter.add(metrics)
                window.add(metrics)
                step = done + i + 1
                if i == skip and first:
                    jax.block_until_ready(metrics)
                    logger.info("first step (compiles the step) took %.1fs", time.time() - t_step)
                if i == skip + 1:
                    jax.block_until_ready(metrics)
                    t_steady, n_steady = time.time(), 0
                elif t_steady is not None:
                    n_steady += 1
                if log_every > 0 and step % log_every == 0:
                    means = exp.name_metrics(window.flush())
                    window = Meter()
                    if (bad := first_nonfinite(means)) is not None:
                        raise self._nan_error(bad, epoch, step)
                    if self.primary:
                        append_jsonl(
                            wd.metrics,
                            {**exp.tags, "kind": "step", "epoch": epoch + 1, "step": step, **means},
                        )
                    _write_scalars(self.writer, means, step, prefix="step/")
                    bar.set_postfix(
                        {k[6:][:4]: f"{v:.3f}" for k, v in means.items() if k.startswith("train/")},
                        refresh=False,
                    )
                bar.update(1)
                if on_step is not None:
                    on_step(epoch, step)
                # a signal on the epoch's last step lets the epoch finish (evaluation,
                # record, checkpoint); the caller stops after it
                if self.stop.signal is not None and i + 1 < n:
                    if not bool(all_finite(state)):
                        raise self._nan_error("state", epoch, step)
                    if self.primary:
                        write_json(
                            wd.pending,
                            {
                                "step": step,
                                "epoch": _meter_state(epoch_meter),
                                "window": _meter_state(window),
                            },
                        )
                    self._save(self.mngr, wd.checkpoints, step, state, "checkpoints")
                    raise Interrupted(
                        f"stopped by {self.stop.name} at step {step} (epoch {epoch + 1}); "
                        "checkpoint saved, continue with --resume"
                    )
        finally:
            bar.close()
        step = done + n
        means = exp.name_metrics(epoch_meter.epoch_means())
        if (bad := first_nonfinite(means)) is not None:
            raise self._nan_error(bad, epoch, step)
        if not bool(all_finite(state)):
            raise self._nan_error("state (weights or architecture)", epoch, step)
        record: dict[str, Any] = {
            **exp.tags,
            "kind": "epoch",
            "epoch": epoch + 1,
            "step": step,
            **means,
        }
        if exp.examples_per_step and t_steady is not None and n_steady > 0:
            jax.block_until_ready(state)
            ips = n_steady * exp.examples_per_step / (time.time() - t_steady)
            record["images_per_s"] = ips
            if not first:
                self.throughput.append(ips)
        state, extra = exp.end_epoch(wd, state, epoch + 1)
        record.update(extra)
        record["time"] = time.time() - t0

        # the record and the best state come before the checkpoint: a kill in between
        # leaves what the resume drops (records after the checkpoint, a newer best)
        if self.primary:
            append_jsonl(wd.metrics, record)
            _write_scalars(self.writer, record, step)
            if self.writer is not None:
                self.writer.flush()
        value = record.get(exp.best_metric) if exp.best_metric else None
        better = lambda a, b: a > b if exp.best_mode == "max" else a < b
        if value is not None and (self.best["value"] is None or better(value, self.best["value"])):
            self.best = {
                "metric": exp.best_metric,
                "value": value,
                "epoch": epoch + 1,
                "step": step,
            }
            self._save(self.best_mngr, wd.best, step, state, "best")
            if self.primary:
                write_json(wd.best_json, self.best)
        self._save(self.mngr, wd.checkpoints, step, state, "checkpoints")
        self.pending = None
        self.step = step
        logger.info(log_line(record, exp.epochs))
        return state, record

    # ---- the end ---------------------------------------------------------------------

    def finish(self, state, t_start: float) -> dict[str, Any]:
        exp, wd, config = self.exp, self.wd, self.config
        summary: dict[str, Any] = {}
        summary.update(exp.finish(wd, state, plots.read_metrics(wd.metrics)))
        records = plots.read_metrics(wd.metrics)
        curves = None
        if records and self.primary:
            try:
                curves = plots.plot_curves(records, wd.curves_plot)
            except Exception as e:  # noqa: BLE001 - a picture never stops a run
                logger.warning("could not draw %s: %s", wd.curves_plot, e)
        summary.update(
            workdir=wd.root,
            dataset=config.data.dataset,
            seed=config.seed,
            epochs=exp.epochs,
            steps_per_epoch=exp.steps_in(0),
            final=records[-1] if records else {},
            metrics=wd.metrics,
            checkpoints=wd.checkpoints,
            tensorboard=wd.tensorboard if config.run.tensorboard else None,
            curves_plot=curves,
            wall_time=time.time() - t_start,
        )
        if exp.best_metric:
            summary["best"] = self.best if self.best["value"] is not None else None
        if exp.examples_per_step:
            summary["images_per_s"] = float(np.mean(self.throughput)) if self.throughput else None
        if self.primary:
            write_json(wd.summary, summary)
        logger.info("%s done in %.1fs", exp.name, summary["wall_time"])
        return summary
