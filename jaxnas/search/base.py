"""What every search method provides to the shared runner (``jaxnas.run``), and the
files every search writes beside the loop's (:class:`SearchWorkdir`).

A method is built from its config by ``jaxnas.search.build``.  All state lives
in one pytree; ``train_step`` and ``eval_step`` are pure and jitted, so the
runner, checkpointing and ``jax.grad``/``jax.vmap`` users see plain functions.

Batches are ``(images, labels)``: float32 ``(B, H, W, C)`` normalised NHWC
images and int32 ``(B,)`` labels.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import jax
import numpy as np

from jaxnas import loop, plots
from jaxnas.genotype import Genotype
from jaxnas.runtime import write_json

logger = logging.getLogger("jaxnas")

Batch = tuple[jax.Array, jax.Array]
Metrics = dict[str, jax.Array]


class SearchMethod(Protocol):
    """The interface the runner uses; see ``jaxnas.search.darts.DARTS``."""

    name: str
    primitives: tuple[str, ...]

    def init(self, rng: jax.Array, sample_images: np.ndarray) -> Any:
        """Return the initial state pytree (weights, arch, optimiser states, step, rng)."""

    def train_step(self, state: Any, train_batch: Batch, valid_batch: Batch) -> tuple[Any, Metrics]:
        """One search iteration: arch update on ``valid_batch`` and weight update on
        ``train_batch`` (order and details are the method's own). Jitted."""

    def eval_step(self, state: Any, batch: Batch) -> Metrics:
        """``{"loss", "accuracy"}`` of the supernet in inference mode. Jitted."""

    def arch_weights(self, state: Any) -> dict[str, np.ndarray]:
        """Human-readable architecture weights per cell type, e.g. softmax(alpha)
        ``{"normal": (14, n_ops), "reduce": (14, n_ops)}``."""

    def genotype(self, state: Any) -> Genotype:
        """The discrete architecture the current state derives to."""


@dataclasses.dataclass(frozen=True)
class SearchWorkdir(loop.Workdir):
    """A search workdir: the loop's files (:class:`jaxnas.loop.Workdir`) and

    ::

      alphas/epoch_{e:03d}.npz  the architecture weights after ``e`` epochs (0: at init)
      alphas/meta.json          method name, op names and edge labels for the plots
      alphas.png                the architecture weights over the epochs
      genotype.json             the genotype derived after the last finished epoch
      genotype_*.{png,svg}      its picture (at the end of the search)
    """

    alphas = property(lambda self: self.path("alphas"))
    alphas_plot = property(lambda self: self.path("alphas.png"))
    genotype = property(lambda self: self.path("genotype.json"))
    genotype_prefix = property(lambda self: self.path("genotype"))

    def alphas_file(self, epoch: int) -> str:
        """``alphas/epoch_{epoch:03d}.npz``."""
        return self.path("alphas", f"epoch_{epoch:03d}.npz")


def write_arch_meta(
    wd: SearchWorkdir, method: str, primitives: Sequence[str], edge_labels: Sequence[str] = ()
) -> None:
    """``alphas/meta.json``: what the architecture-weight plots label their axes with."""
    os.makedirs(wd.alphas, exist_ok=True)
    meta: dict[str, Any] = {"method": method, "primitives": list(primitives)}
    if edge_labels:
        meta["edge_labels"] = list(edge_labels)
    write_json(os.path.join(wd.alphas, "meta.json"), meta)


def save_arch(
    wd: SearchWorkdir,
    epoch: int,
    arch: Mapping[str, Any],
    *,
    primitives: Sequence[str] | None = None,
    title: str = "",
    edge_labels: Sequence[str] | None = None,
) -> None:
    """Write ``alphas/epoch_{epoch:03d}.npz`` (atomically) and, given ``primitives``,
    redraw ``alphas.png`` from every epoch saved so far."""
    os.makedirs(wd.alphas, exist_ok=True)
    tmp = wd.alphas_file(epoch) + ".tmp.npz"
    np.savez(tmp, **{k: np.asarray(v) for k, v in arch.items()})
    os.replace(tmp, wd.alphas_file(epoch))
    if primitives is None:
        return
    try:
        plots.plot_arch_weights(
            plots.load_arch_history(wd.alphas),
            primitives,
            wd.alphas_plot,
            title=title,
            edge_labels=edge_labels,
        )
    except Exception as e:  # noqa: BLE001 - a picture never stops a search
        logger.warning("could not draw %s: %s", wd.alphas_plot, e)


def drop_arch_after(wd: SearchWorkdir, epoch: int) -> None:
    """Remove the architecture snapshots of epochs after ``epoch`` (a resume from a
    checkpoint with ``epoch`` epochs complete redoes them)."""
    for e, _ in plots.load_arch_history(wd.alphas):
        if e > epoch:
            os.remove(wd.alphas_file(e))
