"""Pictures of cells: the curve router and drawing pieces every cell picture shares,
and the DARTS cell's picture.

:func:`route_edges` bends each edge of a cell graph (a quadratic Bezier curve,
matplotlib's ``arc3``) and places its label where it overlaps the fewest nodes,
curves and labels; :func:`cell_axes`, :func:`draw_nodes`, :func:`draw_arrow` and
:func:`draw_label` draw the figure on a pyplot-free ``matplotlib.figure.Figure``.
:func:`plot_cell` / :func:`plot_genotype` draw DARTS-space cells with them, and so
does the recurrent cell's picture (:mod:`jaxnas.rnn.draw`).  matplotlib is optional
(``jaxnas.optional.require``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxnas.optional import require
from jaxnas.spaces.darts_genotype import CellGenotype, Genotype

__all__ = [
    "cell_axes",
    "draw_arrow",
    "draw_label",
    "draw_nodes",
    "plot_cell",
    "plot_genotype",
    "route_edges",
]

_OP_COLORS = {
    "none": "#9e9e9e",
    "skip_connect": "#333333",
    "max_pool_3x3": "#2e7d32",
    "max_pool_5x5": "#2e7d32",
    "avg_pool_3x3": "#558b2f",
    "sep_conv_3x3": "#1565c0",
    "sep_conv_5x5": "#283593",
    "sep_conv_7x7": "#4527a0",
    "dil_conv_3x3": "#c62828",
    "dil_conv_5x5": "#ad1457",
    "conv_7x1_1x7": "#ef6c00",
    "conv_1x1": "#6d4c41",
    "conv_3x3": "#5d4037",
}


def _input_name(i: int, n_inputs: int) -> str:
    lag = n_inputs - i
    return f"$c_{{k-{lag}}}$"


def _bezier(p0: np.ndarray, p2: np.ndarray, rad: float, t: np.ndarray) -> np.ndarray:
    """Points of matplotlib's ``arc3,rad=rad`` curve (equal aspect) at parameters ``t``."""
    d = p2 - p0
    c = (p0 + p2) / 2 + rad * np.array([d[1], -d[0]])
    t = t[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * c + t**2 * p2


def route_edges(
    edges: Sequence[tuple[str, int, int]],
    pos: dict[int, tuple[float, float]],
    r: float,
    fixed: Sequence[tuple[int, int]],
) -> list[tuple[float, float, float]]:
    """Greedily choose a curvature and label position for each edge.

    Each edge (in order) gets the ``arc3`` curvature and label parameter that
    minimise overlaps with nodes, previously routed curves and previous labels.

    Returns:
      ``(rad, label_x, label_y)`` per edge.
    """
    ts = np.linspace(0.0, 1.0, 41)
    inner = (ts > 0.2) & (ts < 0.8)
    rads = np.linspace(-0.6, 0.6, 25)
    label_ts = (0.5, 0.4, 0.6, 0.3, 0.7)
    centers = {n: np.asarray(p, dtype=float) for n, p in pos.items()}
    curves = [_bezier(centers[a], centers[b], 0.0, ts)[inner] for a, b in fixed]
    labels: list[tuple[np.ndarray, float, float]] = []  # center, half width, half height
    out = []
    for op, src, dst in edges:
        p0, p2 = centers[src], centers[dst]
        lines = op.split("\n")  # a mixed-path edge: one label line per op
        half_w, half_h = 0.05 * max(map(len, lines)) + 0.08, 0.17 * len(lines)
        best = None
        for rad in rads:
            pts = _bezier(p0, p2, rad, ts)
            cost = 0.4 * abs(rad)
            for n, c in centers.items():
                if n in (src, dst):
                    continue
                dmin = np.min(np.linalg.norm(pts - c, axis=1))
                cost += 40.0 * max(0.0, r + 0.3 - dmin)
            mid = pts[inner]
            for prev in curves:
                dist = np.min(np.linalg.norm(mid[:, None, :] - prev[None, :, :], axis=2), axis=1)
                cost += 2.0 * float(np.mean(dist < 0.15))
            for lt in label_ts:
                lc = _bezier(p0, p2, rad, np.array([lt]))[0]
                lcost = 0.3 * abs(lt - 0.5)
                for c2, hw, hh in labels:
                    ox = hw + half_w - abs(lc[0] - c2[0])
                    oy = hh + half_h - abs(lc[1] - c2[1])
                    if ox > 0 and oy > 0:
                        lcost += 10.0 + 10.0 * min(ox, oy)
                for c in centers.values():
                    ox = r + half_w - abs(lc[0] - c[0])
                    oy = r + half_h - abs(lc[1] - c[1])
                    if ox > 0 and oy > 0:
                        lcost += 10.0 + 10.0 * min(ox, oy)
                for prev in curves:
                    inside = (np.abs(prev[:, 0] - lc[0]) < half_w) & (
                        np.abs(prev[:, 1] - lc[1]) < half_h
                    )
                    lcost += 1.0 * float(np.mean(inside))
                if best is None or cost + lcost < best[0]:
                    best = (cost + lcost, float(rad), lc)
        assert best is not None
        _, rad, lc = best
        curves.append(_bezier(p0, p2, rad, ts)[inner])
        labels.append((lc, half_w, half_h))
        out.append((rad, float(lc[0]), float(lc[1])))
    return out


def cell_axes(
    pos: dict[Any, tuple[float, float]],
    routes: Sequence[tuple[float, float, float]],
    title: str | None,
    title_h: float,
    title_size: int,
) -> tuple[Any, Any]:
    """A pyplot-free ``(figure, axes)`` framing the nodes ``pos`` and the edge labels at
    ``(x, y)`` of ``routes`` (``(rad, x, y)`` each, :func:`route_edges`) with margins 1.0
    (x) and 0.8 (y), 0.75 inch a unit, equal aspect, no axis; ``title_h`` inches above
    for ``title`` in ``title_size`` points (no title when empty)."""
    Figure = require("matplotlib.figure", "drawing a cell").Figure
    xs = [p[0] for p in pos.values()] + [x for _, x, _ in routes]
    ys = [p[1] for p in pos.values()] + [y for _, _, y in routes]
    x0, x1 = min(xs) - 1.0, max(xs) + 1.0
    y0, y1 = min(ys) - 0.8, max(ys) + 0.8
    scale = 0.75
    height = (y1 - y0) * scale
    fig = Figure(figsize=((x1 - x0) * scale, height + title_h))
    ax = fig.add_axes((0, 0, 1, height / (height + title_h)))
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal")
    ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=title_size, y=1 - 0.1 * title_h / (height + title_h))
    return fig, ax


def draw_nodes(
    ax: Any, pos: dict[Any, tuple[float, float]], r: float, styles: dict[Any, tuple[str, str]]
) -> dict[Any, Any]:
    """A circle of radius ``r`` at each node of ``pos``, filled and labelled by
    ``styles[node] = (colour, label)``; returns ``{node: circle}`` (for :func:`draw_arrow`)."""
    Circle = require("matplotlib.patches", "drawing a cell").Circle
    circles = {}
    for node, (x, y) in pos.items():
        color, label = styles[node]
        circ = Circle((x, y), r, facecolor=color, edgecolor="black", lw=1.2, zorder=3)
        ax.add_patch(circ)
        circles[node] = circ
        ax.text(x, y, label, ha="center", va="center", fontsize=12, zorder=4)
    return circles


def draw_arrow(
    ax: Any,
    pos: dict[Any, tuple[float, float]],
    circles: dict[Any, Any],
    src: Any,
    dst: Any,
    rad: float,
    **kw: Any,
) -> None:
    """An arrow ``src -> dst`` between the node circles, bent by ``rad`` (matplotlib's
    ``arc3``), styled by ``kw`` (``color``, ``lw``, ``linestyle``)."""
    FancyArrowPatch = require("matplotlib.patches", "drawing a cell").FancyArrowPatch
    ax.add_patch(
        FancyArrowPatch(
            pos[src],
            pos[dst],
            connectionstyle=f"arc3,rad={rad}",
            arrowstyle="-|>",
            mutation_scale=14,
            patchA=circles[src],
            patchB=circles[dst],
            shrinkA=1,
            shrinkB=1,
            zorder=2,
            **kw,
        )
    )


def draw_label(ax: Any, x: float, y: float, text: str, color: str, pad: float) -> None:
    """An op name at ``(x, y)`` in its colour on a white rounded box (padding ``pad``)."""
    ax.text(
        x,
        y,
        text,
        ha="center",
        va="center",
        fontsize=9,
        color=color,
        zorder=5,
        bbox=dict(boxstyle=f"round,pad={pad}", fc="white", ec="none", alpha=0.85),
    )


def plot_cell(cell: CellGenotype, path: str | os.PathLike[str], title: str = "") -> str:
    """Draw a cell like the DARTS paper figures and save it to ``path``.

    Inputs ``c_{k-2}``, ``c_{k-1}`` are on the left, intermediate nodes ``0..n-1``
    left to right, and the output ``c_{k}`` on the right with dashed arrows from the
    ``concat`` nodes.  Edges are labelled with their op names and curved to avoid
    nodes and each other; the ops of one edge (mixed paths) share an arrow and
    are listed one per line.  The file format follows the extension of ``path``
    (``.png``, ``.svg``, ``.pdf``, ...).  Uses a pyplot-free
    ``matplotlib.figure.Figure``, so the global matplotlib backend is not touched.

    Returns:
      ``path`` as a string.
    """
    path = os.fspath(path)
    n_in, n = cell.n_inputs, cell.n_nodes
    dx, r = 2.4, 0.42
    pos: dict[int, tuple[float, float]] = {}
    for i in range(n_in):
        pos[i] = (0.0, (n_in - 1) / 2 * 2.8 - 2.8 * i)
    for k in range(n):
        pos[n_in + k] = (dx * (k + 1), 0.8 if k % 2 == 0 else -0.8)
    out_id = n_in + n
    pos[out_id] = (dx * (n + 1), 0.0)

    drawable = [(op, s, d) for op, s, d in cell.edges if s in pos and d in pos and s != d]
    merged: dict[tuple[int, int], list[str]] = {}  # several ops on one edge: one arrow
    for op, s, d in drawable:
        merged.setdefault((s, d), []).append(op)
    drawable = [("\n".join(ops), s, d) for (s, d), ops in merged.items()]
    concat = [c for c in dict.fromkeys(cell.concat) if c in pos and c != out_id]
    routes = route_edges(drawable, pos, r, [(c, out_id) for c in concat])
    fig, ax = cell_axes(pos, routes, title, 0.45 if title else 0.0, 13)

    styles = {i: ("#b4eeb4", _input_name(i, n_in)) for i in range(n_in)}
    styles.update({n_in + k: ("#add8e6", str(k)) for k in range(n)})
    styles[out_id] = ("#eee8aa", "$c_{k}$")
    circles = draw_nodes(ax, pos, r, styles)
    for c in concat:
        draw_arrow(ax, pos, circles, c, out_id, 0.0, color="#888888", lw=1.0, linestyle="--")
    for (op, src, dst), (rad, lx, ly) in zip(drawable, routes):
        color = _OP_COLORS.get(op, "black")
        draw_arrow(ax, pos, circles, src, dst, rad, color=color, lw=1.6)
        draw_label(ax, lx, ly, op, color, 0.15)

    fig.savefig(path, dpi=150, facecolor="white")
    return path


def plot_genotype(genotype: Genotype, path_prefix: str | os.PathLike[str]) -> list[str]:
    """Draw the normal and reduction cells (and any per-layer cells) to PNG and SVG.

    Writes ``{prefix}_normal.{png,svg}`` and ``{prefix}_reduce.{png,svg}``, plus
    ``{prefix}_cell{i:02d}.{png,svg}`` for each per-layer cell.

    Returns:
      The written paths.
    """
    prefix = os.fspath(path_prefix)
    parent = os.path.dirname(prefix)
    if parent:
        os.makedirs(parent, exist_ok=True)
    jobs = [
        ("normal", genotype.normal, "normal cell"),
        ("reduce", genotype.reduce, "reduction cell"),
    ]
    red = genotype.reductions or ()
    for i, c in enumerate(genotype.cells or ()):
        jobs.append((f"cell{i:02d}", c, f"cell {i}" + (", reduction" if i in red else "")))
    written = []
    for suffix, cell, title in jobs:
        for ext in ("png", "svg"):
            written.append(plot_cell(cell, f"{prefix}_{suffix}.{ext}", title=title))
    return written
