"""The files a search run writes beside the loop's: :class:`SearchWorkdir`, the
architecture snapshots and their pictures, and :func:`regenerate` to redraw them.

The image search (:mod:`jaxnas.run`), the recurrent search (:mod:`jaxnas.run_rnn`) and
ASM-NAS's selection on a finished search (:mod:`jaxnas.asmnas_select`) use them.  They
sit above the loop (a :class:`SearchWorkdir` is a :class:`jaxnas.loop.Workdir`) and
below the runs; the search methods (:mod:`jaxnas.search`) never see a workdir (the
import contract in ``pyproject.toml``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxnas import loop, plots, search_spaces
from jaxnas.runtime import write_json

__all__ = [
    "SearchWorkdir",
    "drop_arch_after",
    "regenerate",
    "save_arch",
    "save_genotype",
    "search_summary",
    "write_arch_meta",
]

logger = logging.getLogger("jaxnas")


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
    alphas_meta = property(lambda self: self.path("alphas", "meta.json"))
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
    write_json(wd.alphas_meta, meta)


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


def save_genotype(wd: SearchWorkdir, genotype: Any, *, pictures: bool = False) -> list[str]:
    """Write ``genotype.json`` in the format of the genotype's space
    (:func:`jaxnas.search_spaces.space_of`) and, with ``pictures``, draw it to
    ``genotype_*.{png,svg}`` (the space's pictures).

    Returns:
      The pictures' paths; none when ``pictures`` is False or drawing failed (a
      picture never stops a search: the failure is logged).
    """
    space = search_spaces.space_of(genotype)
    space.save(genotype, wd.genotype)
    if not pictures:
        return []
    try:
        return space.save_pictures(genotype, wd.genotype_prefix)
    except Exception as e:  # noqa: BLE001 - a picture never stops a search
        logger.warning("could not draw the genotype: %s", e)
        return []


def search_summary(
    wd: SearchWorkdir, method_name: str, genotype: Any, pictures: list[str], **extra: Any
) -> dict[str, Any]:
    """What a finished search reports (logging where its genotype is): ``method``,
    ``genotype`` (its string), ``genotype_json``, ``genotype_pictures``, the ``extra``
    entries (e.g. ``benchmark``) and ``alphas_plot`` (None when none was drawn)."""
    logger.info("genotype in %s", wd.genotype)
    return {
        "method": method_name,
        "genotype": str(genotype),
        "genotype_json": wd.genotype,
        "genotype_pictures": pictures,
        **extra,
        "alphas_plot": wd.alphas_plot if os.path.exists(wd.alphas_plot) else None,
    }


def drop_arch_after(wd: SearchWorkdir, epoch: int) -> None:
    """Remove the architecture snapshots of epochs after ``epoch`` (a resume from a
    checkpoint with ``epoch`` epochs complete redoes them)."""
    for e, _ in plots.load_arch_history(wd.alphas):
        if e > epoch:
            os.remove(wd.alphas_file(e))


def regenerate(workdir: str | os.PathLike) -> dict[str, list[str] | str]:
    """Redraw ``alphas.png``, ``curves.png`` and the genotype pictures of a search workdir.

    Returns:
      ``{"alphas": path, "curves": path, "genotype": [paths]}`` for what could be drawn.

    Raises:
      FileNotFoundError: the workdir has none of the saved files.
      jaxnas.genotype.GenotypeError: ``genotype.json`` is malformed.
    """
    workdir = os.fspath(workdir)
    wd = SearchWorkdir(workdir)
    out: dict[str, list[str] | str] = {}
    history = plots.load_arch_history(wd.alphas)
    if history:
        meta = {}
        if os.path.exists(wd.alphas_meta):
            with open(wd.alphas_meta, encoding="utf-8") as f:
                meta = json.load(f)
        out["alphas"] = plots.plot_arch_weights(
            history,
            meta.get("primitives", []),
            wd.alphas_plot,
            title=meta.get("title"),
            edge_labels=meta.get("edge_labels"),
        )
    records = plots.read_metrics(wd.metrics)
    if records:
        out["curves"] = plots.plot_curves(records, wd.curves_plot)
    if os.path.exists(wd.genotype):
        # an NB201 cell's JSON, else a DARTS genotype whose ops need not be registered here
        g = search_spaces.resolve_genotype(wd.genotype, ("nb201", "darts"), strict=False)
        out["genotype"] = search_spaces.space_of(g).save_pictures(g, wd.genotype_prefix)
    if not out:
        raise FileNotFoundError(
            f"{workdir} has no alphas/, metrics.jsonl or genotype.json: is it a search workdir?"
        )
    return out
