"""Run plumbing shared by the search and the retraining loops.

Orbax checkpoint managers with a compatibility check before restoring, a metric
meter that averages step metrics on the host, JSON-lines records (and their
truncation on resume), atomic JSON files, the ``log.txt`` handler, the SIGTERM/SIGINT
flag a loop checks between steps (:class:`StopFlag`, :class:`Interrupted`), and
:class:`RunError`, the one-line error of a run that cannot start or continue.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import threading
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas.files import write_text

__all__ = [
    "RunError",
    "checkpoint_manager",
    "check_compatible",
    "restore",
    "all_finite",
    "Meter",
    "first_nonfinite",
    "append_jsonl",
    "diff_configs",
    "FileLog",
    "Interrupted",
    "StopFlag",
    "write_json",
    "truncate_metrics",
]

logger = logging.getLogger("jaxnas")


class RunError(RuntimeError):
    """A search cannot start or continue (reported as one line by the CLI)."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


def checkpoint_manager(path: str, keep: int):
    import orbax.checkpoint as ocp

    # cleanup_tmp_directories: a write that a kill cut short leaves a *.orbax-checkpoint-tmp
    # folder, which orbax never takes for a step; it is removed when the next run opens it
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max(1, keep), create=True, cleanup_tmp_directories=True
    )
    return ocp.CheckpointManager(
        path, options=options, item_handlers=ocp.StandardCheckpointHandler()
    )


def _shape_of(x: Any) -> tuple[int, ...]:
    if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        return tuple(jax.random.key_data(x).shape)
    return tuple(np.shape(x))


def check_compatible(mngr, step: int, target: Any, ckpt_dir: str) -> None:
    """RunError unless the checkpoint at ``step`` has ``target``'s keys and shapes."""
    import orbax.checkpoint as ocp

    try:
        saved = ocp.tree.to_flat_dict(mngr.item_metadata(step).tree)
    except Exception as e:  # noqa: BLE001 - unreadable metadata: one line
        raise RunError(f"cannot read checkpoint {ckpt_dir}/{step}: {type(e).__name__}: {e}") from e
    wanted = ocp.tree.to_flat_dict(ocp.tree.serialize_tree(target, keep_empty_nodes=True))
    problems = []
    for key in sorted(set(saved) | set(wanted), key=str):
        name = ".".join(str(k) for k in key)
        if key not in saved:
            problems.append(f"{name!r} is missing from the checkpoint")
        elif key not in wanted:
            problems.append(f"{name!r} is in the checkpoint but not in the model")
        else:
            s, w = getattr(saved[key], "shape", None), _shape_of(wanted[key])
            if s is not None and tuple(s) != w:
                problems.append(
                    f"{name!r} has shape {tuple(s)} in the checkpoint but {w} in the model"
                )
    if problems:
        more = f" (and {len(problems) - 1} more differences)" if len(problems) > 1 else ""
        raise RunError(
            f"checkpoint {ckpt_dir}/{step} does not match this config: {problems[0]}{more}; "
            "resume with the config it was written with, or use a fresh --workdir"
        )


@jax.jit
def all_finite(tree: Any) -> jax.Array:
    leaves = [
        jnp.all(jnp.isfinite(x))
        for x in jax.tree.leaves(tree)
        if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jnp.inexact)
    ]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


class Meter:
    """Averages step metrics over a logging window and over the epoch (on the host)."""

    def __init__(self):
        self.window: list[Mapping[str, Any]] = []
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, metrics: Mapping[str, Any]) -> None:
        self.window.append(metrics)

    def flush(self) -> dict[str, float]:
        """Means over the window (a device sync), folded into the epoch sums."""
        if not self.window:
            return {}
        host = jax.device_get(self.window)
        keys = host[0].keys()
        means = {}
        for k in keys:
            values = np.asarray([np.mean(np.asarray(m[k], np.float64)) for m in host])
            means[k] = float(values.mean())
            self.sums[k] = self.sums.get(k, 0.0) + float(values.sum())
        self.count += len(host)
        self.window = []
        return means

    def epoch_means(self) -> dict[str, float]:
        self.flush()
        return {k: v / max(self.count, 1) for k, v in self.sums.items()}


def first_nonfinite(values: Mapping[str, float]) -> str | None:
    for k, v in values.items():
        if not math.isfinite(v):
            return f"{k}={v}"
    return None


def append_jsonl(path: str, record: Mapping[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")
        f.flush()


def diff_configs(old: Mapping, new: Mapping, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += diff_configs(a, b, prefix + k + ".")
        elif a != b:
            out.append(f"{prefix}{k}: {a!r} -> {b!r}")
    return out


class FileLog:
    """Adds a ``log.txt`` handler to the ``jaxnas`` logger for the duration of a run.

    An exception that leaves the block is logged as its last line, ``"<outcome>:
    <type>: <message>"``; ``outcome`` is ``"stopped"`` unless the caller set it (the
    loop says ``"not started"`` for a run refused before its first step).
    """

    def __init__(self, path: str):
        self.outcome = "stopped"
        self.handler = logging.FileHandler(path, encoding="utf-8")
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        self.handler.setLevel(logging.INFO)

    def __enter__(self):
        logger.addHandler(self.handler)
        if logger.level == logging.NOTSET or logger.level > logging.INFO:
            self._old_level = logger.level
            logger.setLevel(logging.INFO)
        else:
            self._old_level = None
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:  # the reason a run stopped goes to log.txt too
            reason = " ".join(str(exc).split())
            text = f"{self.outcome}: {exc_type.__name__}" + (f": {reason}" if reason else "")
            record = logger.makeRecord(logger.name, logging.ERROR, __file__, 0, text, (), None)
            self.handler.handle(record)
        logger.removeHandler(self.handler)
        self.handler.close()
        if self._old_level is not None:
            logger.setLevel(self._old_level)


def restore(mngr, step: int, target: Any, ckpt_dir: str) -> Any:
    """The checkpoint at ``step`` restored into ``target``'s structure.

    Callers check the structure first (:func:`check_compatible`), so a failure here
    means the files themselves are bad (a corrupt or truncated data file).

    Raises:
      RunError: one line naming the checkpoint and what went wrong.
    """
    import orbax.checkpoint as ocp

    try:
        return mngr.restore(step, args=ocp.args.StandardRestore(target))
    except Exception as e:  # noqa: BLE001 - orbax / tensorstore raise many kinds
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise RunError(
            f"checkpoint {ckpt_dir}/{step} cannot be read (corrupt or incomplete: "
            f"{type(e).__name__}: {first[:200]})"
        ) from e


def restore_for_eval(
    best_dir: str,
    latest_dir: str,
    target: Any,
    *,
    which: str = "best",
    step: int | None = None,
    root: str = "",
) -> tuple[Any, str, int]:
    """``(state, folder, step)`` to evaluate: ``step`` (default: the newest) of
    ``best_dir`` when ``which == "best"``, else of ``latest_dir``.  With ``which ==
    "best"`` and no best state saved yet, the newest checkpoint of ``latest_dir``.

    Raises:
      RunError: no checkpoint at all (naming ``root``), or one of another shape.
    """
    folder = best_dir if which == "best" else latest_dir
    mngr = checkpoint_manager(folder, 1_000_000)
    try:
        if step is None:
            step = mngr.latest_step()
            if step is None and which == "best":
                mngr.close()
                folder, mngr = latest_dir, checkpoint_manager(latest_dir, 1_000_000)
                step = mngr.latest_step()
        if step is None:
            raise RunError(f"{root or folder} has no checkpoints yet")
        check_compatible(mngr, step, target, folder)
        return restore(mngr, step, target, folder), folder, step
    finally:
        mngr.close()


def write_json(path: str, obj: Any) -> None:
    """``obj`` as indented, key-sorted JSON and a newline, written atomically
    (:func:`jaxnas.files.write_text`)."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def truncate_metrics(path: str, step: int) -> None:
    """Keep the records of a ``metrics.jsonl`` with ``step <= step`` (a resume drops what
    was written after its checkpoint, so no record is duplicated)."""
    if not os.path.exists(path):
        return
    keep = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill
            if rec.get("step", 0) <= step:
                keep.append(rec)
    write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in keep))


class Interrupted(RuntimeError):
    """A SIGTERM/SIGINT stopped a run after a checkpoint was written."""


class StopFlag:
    """Turns SIGTERM/SIGINT into a flag checked between steps (a second signal aborts).

    A context manager: installs the handlers on entry (main thread only) and restores
    the previous ones on exit. The loop polls :attr:`signal` (None until a signal came),
    saves a checkpoint and raises :class:`Interrupted`.
    """

    def __init__(self):
        self.signal: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signal is not None:  # second signal: stop now
            raise KeyboardInterrupt
        self.signal = signum
        logger.warning(
            "%s: saving a checkpoint after this step, then stopping",
            signal.Signals(signum).name,
        )

    @property
    def name(self) -> str:
        return signal.Signals(self.signal).name if self.signal is not None else ""

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
