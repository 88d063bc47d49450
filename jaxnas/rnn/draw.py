"""Pictures of a recurrent cell (DARTS' RNN space, SparseNAS' mixed paths).

DARTS' recurrent cell (Liu et al., 2019, Fig. 4 and ``rnn/model.py``): ``x_t`` and
``h_{t-1}`` enter state ``s_0`` (a highway step, ``s_0 = h + c (tanh(W [x; h]) - h)``);
intermediate state ``s_i`` (``i = 1..8``) reads its predecessors ``s_j`` through an
activation each (tanh, relu, sigmoid, identity); the output ``h_t`` is the mean of the
``concat`` states. A SparseNAS cell may keep several ``(op, j)`` pairs per node
(several incoming edges, and several ops on one edge) and drop nodes altogether.

:func:`cell_graph` is what is drawn -- one node per surviving state, one edge per
``(j, i)`` with its ops, the states averaged into ``h_t`` -- and :func:`plot_recurrent_cell`
draws it in the style of the CNN cells (:func:`jaxnas.genotype.plot_cell`: same
curve routing, pyplot-free ``matplotlib.figure.Figure``, PNG or SVG by extension).
"""

from __future__ import annotations

import dataclasses
import os

from jaxnas.rnn.genotype import RNNGenotype
from jaxnas.spaces.drawing import (  # the CNN cell drawing's router and pieces
    cell_axes,
    draw_arrow,
    draw_label,
    draw_nodes,
    route_edges,
)

__all__ = ["CellGraph", "cell_graph", "plot_recurrent_cell", "replot", "save_pictures"]

X_IN, H_IN, H_OUT = "x", "h", "out"  # node ids besides the states 0..steps

OP_COLORS = {
    "tanh": "#1565c0",
    "relu": "#c62828",
    "sigmoid": "#2e7d32",
    "identity": "#333333",
}


@dataclasses.dataclass(frozen=True)
class CellGraph:
    """The drawn structure of a recurrent cell.

    Attributes:
      states: the surviving states, ``0`` first, then the kept nodes in order.
      edges: ``(j, i, ops)`` per predecessor edge ``s_j -> s_i`` of the genotype, ``ops``
        in the genotype's order (one label line per op).
      inputs: ``((X_IN, 0), (H_IN, 0))``: ``x_t`` and ``h_{t-1}`` into ``s_0``.
      output: the states averaged into ``h_t`` (the genotype's ``concat``).
    """

    states: tuple[int, ...]
    edges: tuple[tuple[int, int, tuple[str, ...]], ...]
    inputs: tuple[tuple[str, int], ...]
    output: tuple[int, ...]

    @property
    def labels(self) -> list[tuple[int, int, str]]:
        """One ``(j, i, op)`` per label drawn."""
        return [(j, i, op) for j, i, ops in self.edges for op in ops]


def cell_graph(genotype: RNNGenotype) -> CellGraph:
    """The nodes and labelled edges of ``genotype`` (dropped nodes are left out)."""
    states = (0, *(i for i, pairs in enumerate(genotype.nodes, start=1) if pairs))
    edges: dict[tuple[int, int], list[str]] = {}
    for i, pairs in enumerate(genotype.nodes, start=1):
        for op, j in pairs:
            edges.setdefault((j, i), []).append(op)
    return CellGraph(
        states=states,
        edges=tuple((j, i, tuple(ops)) for (j, i), ops in edges.items()),
        inputs=((X_IN, 0), (H_IN, 0)),
        output=tuple(genotype.concat),
    )


def plot_recurrent_cell(
    genotype: RNNGenotype, path: str | os.PathLike[str], title: str | None = None
) -> str:
    """Draw ``genotype`` (:func:`cell_graph`) to ``path`` (format by extension).

    ``x_t`` and ``h_{t-1}`` on the left, ``s_0`` next, the surviving states left to right
    (numbered as in the genotype), ``h_t`` on the right with dashed arrows from the
    averaged states; each edge carries its ops, one per line, in the op's colour.

    Returns:
      ``path`` as a string.
    """
    path = os.fspath(path)
    g = cell_graph(genotype)
    dx, r, line_h = 2.4, 0.42, 0.34
    pos: dict[object, tuple[float, float]] = {X_IN: (0.0, 1.4), H_IN: (0.0, -1.4), 0: (dx, 0.0)}
    for k, s in enumerate(g.states[1:]):
        pos[s] = (dx * (k + 2), 0.8 if k % 2 == 0 else -0.8)
    pos[H_OUT] = (dx * (len(g.states) + 1), 0.0)

    drawable = [("\n".join(ops), j, i) for j, i, ops in g.edges]
    fixed = [(a, b) for a, b in g.inputs] + [(s, H_OUT) for s in g.output]
    routes = route_edges(drawable, pos, r, fixed)
    n_out = len(g.output)
    title = (
        f"recurrent cell: $h_t$ = mean of {n_out} state{'s' * (n_out > 1)}"
        if title is None
        else title
    )
    fig, ax = cell_axes(pos, routes, title, 0.45, 12)

    names = {X_IN: "$x_t$", H_IN: "$h_{t-1}$", H_OUT: "$h_t$"}
    colors = {X_IN: "#b4eeb4", H_IN: "#b4eeb4", H_OUT: "#eee8aa"}
    styles = {node: (colors.get(node, "#add8e6"), names.get(node, str(node))) for node in pos}
    circles = draw_nodes(ax, pos, r, styles)
    for a, b in g.inputs:
        draw_arrow(ax, pos, circles, a, b, 0.0, color="#555555", lw=1.4)
    for s in g.output:
        draw_arrow(ax, pos, circles, s, H_OUT, 0.0, color="#888888", lw=1.0, linestyle="--")
    for (j, i, ops), (rad, lx, ly) in zip(g.edges, routes):
        color = OP_COLORS[ops[0]] if len(ops) == 1 else "#555555"
        draw_arrow(ax, pos, circles, j, i, rad, color=color, lw=1.6)
        for k, op in enumerate(ops):  # one label per (edge, op), stacked
            draw_label(ax, lx, ly + line_h * ((len(ops) - 1) / 2 - k), op, OP_COLORS[op], 0.12)
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    fig.savefig(path, dpi=150, facecolor="white")
    return path


def save_pictures(genotype: RNNGenotype, path_prefix: str | os.PathLike[str]) -> list[str]:
    """``{prefix}_recurrent.png`` and ``.svg`` (as the CNN runner's ``genotype_normal.*``)."""
    prefix = os.fspath(path_prefix)
    return [plot_recurrent_cell(genotype, f"{prefix}_recurrent.{ext}") for ext in ("png", "svg")]


def replot(workdir: str | os.PathLike[str]) -> dict[str, list[str] | str]:
    """Redraw the pictures of a recurrent workdir (a ``sparsenas_rnn`` search or a
    ``train_rnn`` run) from its saved files (``jaxnas plot``): ``alphas.png`` (theta
    over the epochs, a search's), ``curves.png``, ``genotype_recurrent.{png,svg}``.

    Returns:
      ``{"alphas": path, "curves": path, "genotype": [paths]}`` for what could be drawn.

    Raises:
      FileNotFoundError: none of the saved files is there.
      jaxnas.genotype.GenotypeError: ``genotype.json`` is malformed.
    """
    import json

    from jaxnas import plots

    root = os.fspath(workdir)
    out: dict[str, list[str] | str] = {}
    alphas = os.path.join(root, "alphas")
    history = plots.load_arch_history(alphas)
    if history:
        meta = {}
        if os.path.exists(os.path.join(alphas, "meta.json")):
            with open(os.path.join(alphas, "meta.json"), encoding="utf-8") as f:
                meta = json.load(f)
        out["alphas"] = plots.plot_arch_weights(
            history,
            meta.get("primitives", []),
            os.path.join(root, "alphas.png"),
            title=meta.get("title") or f"{meta.get('method', 'search')}: theta",
            edge_labels=meta.get("edge_labels"),
        )
    records = plots.read_metrics(os.path.join(root, "metrics.jsonl"))
    if records:
        out["curves"] = plots.plot_curves(records, os.path.join(root, "curves.png"))
    genotype = os.path.join(root, "genotype.json")
    if os.path.exists(genotype):
        out["genotype"] = save_pictures(RNNGenotype.load(genotype), os.path.join(root, "genotype"))
    if not out:
        raise FileNotFoundError(
            f"{root} has no alphas/, metrics.jsonl or genotype.json: is it a recurrent workdir?"
        )
    return out
