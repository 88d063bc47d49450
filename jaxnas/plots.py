"""Pictures of a search: architecture weights over epochs, training curves.

Everything draws on a pyplot-free ``matplotlib.figure.Figure`` (the Agg canvas), so
the global backend and pyplot state are never touched and plots work headless.

Files these functions read (written by the search runs, :mod:`jaxnas.search_workdir`,
and the loop, :mod:`jaxnas.loop`):

  alphas/epoch_{e:03d}.npz   architecture weights after ``e`` epochs (e = 0: at init),
                             one array per cell type, e.g. ``normal`` (14, 8)
  alphas/meta.json           ``{"primitives": [...], "method": ..., "edge_labels": ...}``
  metrics.jsonl              one JSON object per line (``"kind": "epoch"`` or ``"step"``)

Redrawing a whole search workdir (its genotype too) is
:func:`jaxnas.search_workdir.regenerate`.
"""

from __future__ import annotations

import glob
import json
import math
import os
import re
from collections.abc import Mapping, Sequence

import numpy as np

from jaxnas.optional import require

__all__ = [
    "load_arch_history",
    "plot_arch_weights",
    "read_metrics",
    "plot_curves",
]

ArchHistory = list[tuple[int, dict[str, np.ndarray]]]

_EPOCH_FILE = re.compile(r"epoch_(\d+)\.npz$")


def load_arch_history(alphas_dir: str | os.PathLike) -> ArchHistory:
    """``alphas_dir/epoch_*.npz`` as ``[(epoch, {cell_type: array}), ...]``, by epoch."""
    history: ArchHistory = []
    for path in glob.glob(os.path.join(os.fspath(alphas_dir), "epoch_*.npz")):
        m = _EPOCH_FILE.search(os.path.basename(path))
        if not m:
            continue
        with np.load(path) as f:
            history.append((int(m.group(1)), {k: np.asarray(f[k]) for k in f.files}))
    history.sort(key=lambda item: item[0])
    return history


def _as_edges(w: np.ndarray) -> np.ndarray:
    """Arch weights as ``(n_edges, n_ops)``: 1-d -> one edge; >2-d -> flatten leading dims."""
    w = np.asarray(w, dtype=np.float64)
    if w.ndim == 0:
        return w.reshape(1, 1)
    if w.ndim == 1:
        return w[None, :]
    return w.reshape(-1, w.shape[-1])


def plot_arch_weights(
    history: Sequence[tuple[int, Mapping[str, np.ndarray]]],
    primitives: Sequence[str],
    path: str | os.PathLike,
    *,
    title: str | None = None,
    edge_labels: Sequence[str] | None = None,
    ncols: int = 7,
) -> str:
    """Plot every edge's op weights against the epoch.

    One subplot per edge per cell type (cell types as blocks of rows, edges
    row-major inside a block), one line per op, one shared legend with the op
    names.

    Args:
      history: ``[(epoch, {cell_type: weights}), ...]`` with weights of shape
        ``(n_edges, n_ops)`` (e.g. ``softmax(alpha)``, ``(14, 8)`` for DARTS); 1-d
        weights count as one edge.
      primitives: op names, ``len == n_ops`` (missing names become ``op i``).
      path: output file; its extension picks the format (``.png``, ``.svg``, ...).
      title: figure title.
      edge_labels: optional names of the edges (e.g. ``"0->2"``), per row.
      ncols: subplots per row.

    Returns:
      ``path`` as a string.
    """
    Figure = require("matplotlib.figure", "plotting").Figure
    Line2D = require("matplotlib.lines", "plotting").Line2D

    path = os.fspath(path)
    if not history:
        raise ValueError("no architecture weights to plot")
    epochs = np.array([e for e, _ in history])
    cell_types = list(history[-1][1].keys())
    series = {
        ct: np.stack([_as_edges(weights[ct]) for _, weights in history if ct in weights])
        for ct in cell_types
    }  # (T, n_edges, n_ops)
    x_of = {ct: np.array([e for e, w in history if ct in w]) for ct in cell_types}
    n_ops = max(s.shape[-1] for s in series.values())
    names = [primitives[i] if i < len(primitives) else f"op {i}" for i in range(n_ops)]

    ncols = max(1, min(ncols, max(s.shape[1] for s in series.values())))
    rows_of = {ct: math.ceil(series[ct].shape[1] / ncols) for ct in cell_types}
    nrows = sum(rows_of.values())
    # a fixed layout: matplotlib's constrained layout doubles the drawing time
    height = 1.8 * nrows + 1.1
    fig = Figure(figsize=(2.3 * ncols, height))
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True)
    fig.subplots_adjust(
        left=0.35 / (2.3 * ncols),
        right=0.995,
        bottom=0.8 / height,
        top=1 - 0.6 / height,
        hspace=0.45,
        wspace=0.3,
    )
    colors = [f"C{i % 10}" for i in range(n_ops)]
    styles = ["-" if i < 10 else "--" for i in range(n_ops)]
    row0 = 0
    for ct in cell_types:
        s, x = series[ct], x_of[ct]
        for e in range(s.shape[1]):
            ax = axes[row0 + e // ncols, e % ncols]
            for o in range(s.shape[2]):
                ax.plot(x, s[:, e, o], color=colors[o], ls=styles[o], lw=1.2)
            label = edge_labels[e] if edge_labels and e < len(edge_labels) else f"edge {e}"
            ax.set_title(f"{ct} {label}", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
        for e in range(s.shape[1], rows_of[ct] * ncols):
            axes[row0 + e // ncols, e % ncols].axis("off")
        row0 += rows_of[ct]
    for ax in axes[-1]:
        ax.set_xlabel("epoch", fontsize=7)
    if len(epochs) <= 12:
        for ax in axes.flat:
            ax.set_xticks(epochs)
    handles = [Line2D([], [], color=colors[o], ls=styles[o], lw=1.5) for o in range(n_ops)]
    fig.legend(handles, names, loc="lower center", ncols=min(n_ops, 8))
    fig.suptitle(title or "architecture weights", fontsize=11)
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    fig.savefig(path, dpi=100, facecolor="white")
    return path


def read_metrics(path: str | os.PathLike, kind: str | None = "epoch") -> list[dict]:
    """Records of ``metrics.jsonl`` (only those with ``"kind" == kind`` unless ``kind`` is None)."""
    records = []
    if not os.path.exists(path):
        return records
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill
            if kind is None or rec.get("kind") == kind:
                records.append(rec)
    return records


def plot_curves(records: Sequence[Mapping], path: str | os.PathLike) -> str:
    """Loss and accuracy (train / valid / test) and learning rate against the epoch.

    Args:
      records: epoch records of ``metrics.jsonl`` (keys like ``train/loss``,
        ``valid/accuracy``, ``test/accuracy``, ``lr``; absent keys are skipped).
      path: output file.

    Returns:
      ``path`` as a string.
    """
    Figure = require("matplotlib.figure", "plotting").Figure

    path = os.fspath(path)
    keys = sorted({k for r in records for k, v in r.items() if isinstance(v, (int, float))})
    panels = [
        ("loss", [k for k in keys if k.split("/")[-1] == "loss"]),
        ("accuracy", [k for k in keys if k.split("/")[-1] == "accuracy"]),
        ("learning rate", [k for k in keys if k.split("/")[-1].startswith("lr")]),
    ]
    panels = [(t, ks) for t, ks in panels if ks]
    fig = Figure(figsize=(4.2 * max(1, len(panels)), 3.2), layout="constrained")
    axes = fig.subplots(1, max(1, len(panels)), squeeze=False)[0]
    for ax, (title, ks) in zip(axes, panels):
        for k in ks:
            pts = [(r["epoch"], r[k]) for r in records if k in r and "epoch" in r]
            if pts:
                x, y = zip(*pts)
                ax.plot(x, y, marker="o", ms=3, label=k)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    fig.savefig(path, dpi=100, facecolor="white")
    return path
