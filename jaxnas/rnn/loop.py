"""Plumbing shared by the two recurrent loops (the SparseNAS search and ``train_rnn``).

Both loops run over variable-length BPTT windows, so an epoch has a different number
of steps each time (:func:`jaxnas.data_text.window_lengths`, a pure function of
``(seed, epoch)``). Checkpoints are keyed by the global step (the state's ``step``);
:func:`locate_step` turns such a step back into ``(epoch, windows done)``. A signal
checkpoint is never written after an epoch's last window (the loops finish that
epoch first), so a step on an epoch boundary always means "that epoch is complete".
A signal checkpoint also keeps the step metrics not yet averaged (:func:`save_pending`),
so the records of a resumed run equal an uninterrupted run's too.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from jaxnas.runtime import write_json

__all__ = ["load_pending", "locate_step", "save_pending", "write_scalars"]


def locate_step(step: int, windows_in: Callable[[int], int]) -> tuple[int, int]:
    """``(epoch, skip)`` of global ``step``: ``epoch`` (0-based) is the epoch to run next
    and ``skip`` its windows already done (0 at an epoch boundary).

    Args:
      step: optimiser steps done.
      windows_in: the number of windows (steps) of epoch ``e``.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    epoch, done = 0, 0
    while True:
        n = windows_in(epoch)
        if n < 1:
            raise ValueError(f"epoch {epoch} has no windows")
        if done + n > step:
            return epoch, step - done
        done += n
        epoch += 1


def write_scalars(writer: Any, record: Mapping[str, Any], step: int, prefix: str = "") -> None:
    """The numbers of ``record`` (bools as 0/1) as TensorBoard scalars at ``step``;
    ``kind``, ``epoch`` and ``step`` are the record's coordinates, not scalars."""
    if writer is None:
        return
    for k, v in record.items():
        if k in ("kind", "epoch", "step") or not isinstance(v, (bool, int, float)):
            continue
        writer.add_scalar(prefix + k, float(v), step)


def save_pending(path: str, step: int, meters: Sequence[Any]) -> None:
    """Write the step metrics the ``meters`` (:class:`jaxnas.runtime.Meter`) hold but have
    not averaged yet, next to a signal checkpoint of ``step``.

    The resumed run puts them back (:func:`load_pending`), so the epoch's record and the
    logging window cut by the signal average the same values, in the same order, as an
    uninterrupted run: bit-identical records, not only parameters.
    """
    import jax

    pending = [
        [{k: float(np.asarray(v)) for k, v in m.items()} for m in jax.device_get(meter.window)]
        for meter in meters
    ]
    write_json(path, {"step": int(step), "pending": pending})


def load_pending(path: str, step: int) -> list[list[dict[str, float]]] | None:
    """The pending metrics :func:`save_pending` wrote for ``step`` (None if none)."""
    try:
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
    except (OSError, ValueError):
        return None
    return saved["pending"] if saved.get("step") == step else None
