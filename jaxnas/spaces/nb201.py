"""The NAS-Bench-201 / NATS-Bench topology search space (TSS): cells, arch strings, lookup.

References: Dong & Yang, "NAS-Bench-201", ICLR 2020; Dong et al., "NATS-Bench",
TPAMI 2021 (its topology space *is* NAS-Bench-201's); the authors' code
``D-X-Y/AutoDL-Projects`` (``lib/models/cell_operations.py``,
``lib/models/cell_searchs/search_cells.py``, ``search_model_darts.py``,
``cell_searchs/genotypes.py``).  RARTS reports its NATS-Bench result in thesis
Sec. 3.5 / Table 3.3.

The cell
--------
A DAG of 4 nodes: node 0 is the cell input, node ``i = 1, 2, 3`` is the sum over
every earlier node ``j < i`` of ``op_{i<-j}(x_j)``, and the cell output is node 3.
That is 6 edges, each carrying one of 5 ops::

    none  skip_connect  nor_conv_1x1  nor_conv_3x3  avg_pool_3x3

so ``5**6 = 15625`` cells.  The edges are in the benchmark's order (the search
code's ``edge2index``: ``sorted('{i}<-{j}')``), which is also the row order of alpha
``(6, 5)``::

    edge 0: 0 -> 1
    edge 1: 0 -> 2    edge 2: 1 -> 2
    edge 3: 0 -> 3    edge 4: 1 -> 3    edge 5: 2 -> 3

The whole network shares one cell (one alpha, ``"arch"`` entry ``"cell"``); the
networks themselves are in :mod:`jaxnas.models.nb201_net`.

Arch strings
------------
The benchmark names a cell by a string, node by node, each node listing its inputs
as ``op~source`` between bars, nodes joined by ``+``::

    |nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|

:func:`parse` / :func:`format_arch` convert between strings and :class:`NB201Arch`
(``parse(format_arch(a)) == a`` for all 15625 cells); :func:`derive` is the
NAS-Bench-201 DARTS rule: every edge keeps its argmax op over *all* 5 ops, ``none``
included (``TinyNetworkDarts.genotype`` in ``search_model_darts.py`` takes
``weights.argmax()`` over the full op list), so an edge may be dropped.

Benchmark lookup
----------------
:func:`lookup` reads the accuracy NATS-Bench recorded for a cell through the
``nats_bench`` package (an optional dependency: ``pip install 'jaxnas[nats]'``)::

    python -m jaxnas.spaces.nb201 lookup --arch '|nor_conv_3x3~0|+...' --benchmark PATH
    python -m jaxnas.spaces.nb201 lookup --arch runs/x/genotype.json --benchmark PATH

``PATH`` is the benchmark archive folder (``NATS-tss-v1_0-3ffb9-simple``, read lazily:
``fast_mode=True``) or the single file (``NATS-tss-v1_0-3ffb9.pickle.pbz2``).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from jaxnas.files import write_text
from jaxnas.optional import require
from jaxnas.spaces import GenotypeError
from jaxnas.spaces.darts import CellTopology

__all__ = [
    "BENCHMARK_DATASETS",
    "JSON_FORMAT",
    "NB201Arch",
    "NB201Error",
    "NATSBenchMissing",
    "NB201_CELL",
    "NB201_PRIMITIVES",
    "NUM_ARCHS",
    "all_archs",
    "derive",
    "format_arch",
    "from_json",
    "is_arch",
    "load",
    "lookup",
    "maybe_load",
    "one_hot",
    "parse",
    "plot_arch",
    "resolve_primitives",
    "save",
]

#: NAS-Bench-201's candidate ops, in its order (``cell_operations.NAS_BENCH_201``).
NB201_PRIMITIVES: tuple[str, ...] = (
    "none",
    "skip_connect",
    "nor_conv_1x1",
    "nor_conv_3x3",
    "avg_pool_3x3",
)

#: One input node (0), three computed nodes (1, 2, 3), every earlier node feeding each:
#: edges ``(0,1), (0,2), (1,2), (0,3), (1,3), (2,3)`` (by destination, then source).
NB201_CELL = CellTopology(n_inputs=1, n_nodes=3)
assert NB201_CELL.edges == ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))

N_EDGES = NB201_CELL.n_edges
NUM_ARCHS = len(NB201_PRIMITIVES) ** N_EDGES  # 15625

#: Tag of the genotype JSON of an NB201 cell (``{"format": ..., "arch": "|...|"}``).
JSON_FORMAT = "jaxnas-nb201-v1"

#: The benchmark's dataset names (``get_more_info``): ``cifar10-valid`` trains on the
#: 25k training half and reports the held-out half; ``cifar10`` trains on all 50k and
#: reports the test set; ``cifar100`` / ``ImageNet16-120`` report their own splits.
BENCHMARK_DATASETS: tuple[str, ...] = ("cifar10-valid", "cifar10", "cifar100", "ImageNet16-120")


class NB201Error(GenotypeError):
    """A malformed arch string or NB201 genotype file (one line; a ``ValueError``)."""


@dataclasses.dataclass(frozen=True)
class NB201Arch:
    """One NAS-Bench-201 cell: ``ops[e]`` is the op of edge ``e`` (order of :data:`NB201_CELL`).

    ``str(arch)`` is the benchmark's arch string; ``arch.nodes`` gives the
    ``((op, source), ...)`` inputs of nodes 1, 2, 3 (the reference's ``Structure``).
    """

    ops: tuple[str, ...]

    def __post_init__(self):
        ops = tuple(self.ops)
        object.__setattr__(self, "ops", ops)
        if len(ops) != N_EDGES:
            raise NB201Error(f"an NB201 cell has {N_EDGES} edges, got {len(ops)} ops: {ops}")
        for op in ops:
            if op not in NB201_PRIMITIVES:
                raise NB201Error(
                    f"unknown NB201 op {op!r}; NAS-Bench-201's ops: {', '.join(NB201_PRIMITIVES)}"
                )

    def __str__(self) -> str:
        return format_arch(self)

    @property
    def nodes(self) -> tuple[tuple[tuple[str, int], ...], ...]:
        """Inputs ``(op, source)`` of nodes 1, 2, 3, sources in increasing order."""
        return tuple(
            tuple((self.ops[e], NB201_CELL.edges[e][0]) for e in NB201_CELL.incoming(k))
            for k in range(NB201_CELL.n_nodes)
        )

    @property
    def index(self) -> int:
        """Position in :func:`all_archs` (base-5 digits, edge 0 most significant).

        This library's enumeration, not NATS-Bench's index (ask :func:`lookup`)."""
        return int(
            sum(
                NB201_PRIMITIVES.index(op) * 5 ** (N_EDGES - 1 - e) for e, op in enumerate(self.ops)
            )
        )

    @property
    def skip_ratio(self) -> float:
        """``#skip_connect / 6``: the skip-connection ratio ("#skip / #ops") of RARTS'
        Table 3.3 as the spec digest reads it (the thesis does not define it further)."""
        return self.ops.count("skip_connect") / N_EDGES

    def to_json(self) -> str:
        """``{"format": "jaxnas-nb201-v1", "arch": "|...|"}`` as JSON text."""
        return json.dumps({"format": JSON_FORMAT, "arch": str(self)}, indent=2) + "\n"

    def save_json(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_json` to ``path`` (atomically). The search runner calls this."""
        save(self, path)

    def save_pictures(self, path_prefix: str | os.PathLike[str]) -> list[str]:
        """Draw the cell to ``{prefix}_cell.png`` and ``.svg``; the search runner calls this."""
        prefix = os.fspath(path_prefix)
        return [plot_arch(self, f"{prefix}_cell.{ext}") for ext in ("png", "svg")]


# ------------------------------------------------------------------------------ strings


def format_arch(arch: NB201Arch | Sequence[str]) -> str:
    """The benchmark's string of a cell (``Structure.tostr``): ``|op~0|+|op~0|op~1|+|...|``."""
    if not isinstance(arch, NB201Arch):
        arch = NB201Arch(tuple(arch))
    return "+".join("|" + "|".join(f"{op}~{src}" for op, src in node) + "|" for node in arch.nodes)


def parse(text: str) -> NB201Arch:
    """An arch string (:func:`format_arch`'s form) as an :class:`NB201Arch`.

    Node ``i`` (1-based) must list every source ``0 .. i-1`` exactly once (in any
    order; the benchmark writes them in increasing order).

    Raises:
      NB201Error: one line saying what is wrong (not a string, wrong number of
        nodes, a token without ``~``, an unknown op, a missing or repeated source).
    """
    if not isinstance(text, str):
        raise NB201Error(f"an NB201 arch string must be a str, got {type(text).__name__}")
    s = text.strip()
    node_strs = s.split("+")
    if len(node_strs) != NB201_CELL.n_nodes:
        raise NB201Error(
            f"an NB201 arch string has {NB201_CELL.n_nodes} nodes joined by '+', got "
            f"{len(node_strs)} in {s!r}"
        )
    ops: dict[tuple[int, int], str] = {}
    for k, node in enumerate(node_strs):
        dst = k + 1
        if not (node.startswith("|") and node.endswith("|") and len(node) > 2):
            raise NB201Error(f"node {dst} of {s!r} must look like '|op~src|...|', got {node!r}")
        seen = []
        for token in node[1:-1].split("|"):
            op, sep, src = token.partition("~")
            if not sep or not src.isdigit():
                raise NB201Error(f"node {dst} of {s!r}: {token!r} is not of the form op~source")
            if op not in NB201_PRIMITIVES:
                raise NB201Error(
                    f"node {dst} of {s!r}: unknown op {op!r}; NAS-Bench-201's ops: "
                    f"{', '.join(NB201_PRIMITIVES)}"
                )
            j = int(src)
            if j >= dst or j in seen:
                raise NB201Error(
                    f"node {dst} of {s!r}: source {j} is "
                    + ("repeated" if j in seen else f"not an earlier node (0..{dst - 1})")
                )
            seen.append(j)
            ops[(j, dst)] = op
        if len(seen) != dst:
            missing = sorted(set(range(dst)) - set(seen))
            raise NB201Error(f"node {dst} of {s!r} has no input from node(s) {missing}")
    return NB201Arch(tuple(ops[e] for e in NB201_CELL.edges))


def all_archs() -> Iterator[NB201Arch]:
    """Every cell of the space, ``NB201Arch.index`` order (15625 of them)."""
    for ops in itertools.product(NB201_PRIMITIVES, repeat=N_EDGES):
        yield NB201Arch(ops)


# ---------------------------------------------------------------------------- derivation


def resolve_primitives(spec: str | Sequence[str]) -> tuple[str, ...]:
    """``model.primitives`` for the NB201 space: ``"nb201"`` or a subsequence of its ops
    (a sequence, or the names as one comma-separated string, as ``jaxnas.ops``)."""
    if isinstance(spec, str) and "," in spec:
        spec = tuple(p.strip() for p in spec.split(",") if p.strip())
    if isinstance(spec, str):
        if spec == "nb201":
            return NB201_PRIMITIVES
        raise ValueError(
            f"model.space='nb201' searches NAS-Bench-201's ops: set model.primitives='nb201' "
            f"(or a list of some of {', '.join(NB201_PRIMITIVES)}), not {spec!r}"
        )
    prims = tuple(spec)
    bad = [p for p in prims if p not in NB201_PRIMITIVES]
    if bad or len(set(prims)) != len(prims) or not prims:
        raise ValueError(
            f"model.primitives for model.space='nb201' must be distinct ops of "
            f"{', '.join(NB201_PRIMITIVES)}; got {prims}"
        )
    return prims


def derive(weights: Any, primitives: Sequence[str] = NB201_PRIMITIVES) -> NB201Arch:
    """The NAS-Bench-201 DARTS rule: every edge keeps its strongest op, ``none`` included.

    Args:
      weights: ``(6, len(primitives))`` architecture weights (e.g. ``softmax(alpha)``;
        the argmax is the same for alpha itself), rows in :data:`NB201_CELL` order.
      primitives: the op of each column.

    Returns:
      The cell whose edge ``e`` carries ``primitives[argmax(weights[e])]`` (first index
      on ties, like ``torch.argmax``), as in ``TinyNetworkDarts.genotype``.
    """
    w = np.asarray(weights)
    if w.shape != (N_EDGES, len(primitives)):
        raise ValueError(
            f"NB201 weights must have shape ({N_EDGES}, {len(primitives)}), got {w.shape}"
        )
    return NB201Arch(tuple(primitives[int(i)] for i in np.argmax(w, axis=-1)))


def one_hot(arch: NB201Arch, primitives: Sequence[str] = NB201_PRIMITIVES) -> np.ndarray:
    """``(6, len(primitives))`` float32, 1 at each edge's op: the alpha that selects ``arch``."""
    out = np.zeros((N_EDGES, len(primitives)), np.float32)
    for e, op in enumerate(arch.ops):
        if op not in primitives:
            raise ValueError(f"op {op!r} of edge {e} is not among the primitives {primitives}")
        out[e, list(primitives).index(op)] = 1.0
    return out


# ---------------------------------------------------------------------------------- JSON


def is_arch(obj: Any) -> bool:
    """True for an :class:`NB201Arch` (what a DARTS ``Genotype`` is for the DARTS space)."""
    return isinstance(obj, NB201Arch)


def save(arch: NB201Arch, path: str | os.PathLike[str]) -> None:
    """Write ``{"format": "jaxnas-nb201-v1", "arch": "|...|"}`` to ``path`` (atomically)."""
    write_text(path, arch.to_json())


def _from_obj(obj: Any, where: str) -> NB201Arch:
    if not isinstance(obj, Mapping) or obj.get("format") != JSON_FORMAT:
        raise NB201Error(f"{where}: not an NB201 genotype (expected format {JSON_FORMAT!r})")
    arch = obj.get("arch")
    if not isinstance(arch, str):
        raise NB201Error(f"{where}: key 'arch' must hold an NB201 arch string")
    try:
        return parse(arch)
    except NB201Error as e:
        raise NB201Error(f"{where}: {e}") from None


def from_json(text: str, where: str = "NB201 genotype JSON") -> NB201Arch:
    """The cell of :meth:`NB201Arch.to_json`'s text.

    Raises:
      NB201Error: malformed JSON, another format, a bad arch string (one line,
        starting with ``where``).
    """
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise NB201Error(f"{where}: malformed JSON: {e}") from None
    return _from_obj(obj, where)


def load(path: str | os.PathLike[str]) -> NB201Arch:
    """Read a file written by :func:`save`.

    Raises:
      NB201Error: unreadable file, malformed JSON, another format, a bad arch string.
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    except OSError as e:
        raise NB201Error(f"{path}: cannot read: {e.strerror or e}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise NB201Error(f"{path}: malformed JSON: {e}") from None
    return _from_obj(obj, path)


def maybe_load(spec: Any) -> NB201Arch | None:
    """``spec`` as an NB201 cell if it is one, else None (for code that also takes DARTS genotypes).

    An :class:`NB201Arch`, an arch string (starts with ``|``) or a JSON file in this
    module's format is an NB201 cell; anything else (a DARTS genotype, its name or
    file) gives None.  A malformed arch string or NB201 file still raises
    :class:`NB201Error`.
    """
    if isinstance(spec, NB201Arch):
        return spec
    if not isinstance(spec, (str, os.PathLike)):
        return None
    text = os.fspath(spec)
    if text.strip().startswith("|"):
        return parse(text)
    if os.path.isfile(text):
        try:
            with open(text, encoding="utf-8") as f:
                obj = json.load(f)
        except (OSError, ValueError):
            return None  # not ours: let the DARTS genotype reader report it
        if isinstance(obj, Mapping) and obj.get("format") == JSON_FORMAT:
            return _from_obj(obj, text)
    return None


# ------------------------------------------------------------------------------- drawing

_OP_COLORS = {
    "none": "#bdbdbd",
    "skip_connect": "#333333",
    "nor_conv_1x1": "#6d4c41",
    "nor_conv_3x3": "#1565c0",
    "avg_pool_3x3": "#558b2f",
}


def plot_arch(arch: NB201Arch, path: str | os.PathLike[str], title: str | None = None) -> str:
    """Draw the cell to ``path``: nodes in a row, one labelled arc per edge (``none`` dashed),
    arcs over two nodes above the row, the arc over three below it."""
    Figure = require("matplotlib.figure", "drawing a cell").Figure

    path = os.fspath(path)
    fig = Figure(figsize=(7.5, 3.4))
    ax = fig.add_axes((0.02, 0.02, 0.96, 0.86))
    n = NB201_CELL.n_inputs + NB201_CELL.n_nodes
    heights = {1: 0.0, 2: 1.0, 3: -1.4}  # arc height by how many nodes the edge spans
    t = np.linspace(0.0, 1.0, 60)
    for (src, dst), op in zip(NB201_CELL.edges, arch.ops):
        x0, x1, h = 2.0 * src, 2.0 * dst, heights[dst - src]
        # a parabola through both nodes, shortened so it stops at the node circles
        cut = 0.14 / (dst - src)
        t_in = t[(t > cut) & (t < 1 - cut)]
        xs, ys = x0 + (x1 - x0) * t_in, 4.0 * h * t_in * (1.0 - t_in)
        color, ls = _OP_COLORS[op], "--" if op == "none" else "-"
        ax.plot(xs, ys, color=color, ls=ls, lw=1.8)
        ax.annotate("", xy=(xs[-1], ys[-1]), xytext=(xs[-2], ys[-2]),
                    arrowprops=dict(arrowstyle="-|>", color=color, lw=1.8))  # fmt: skip
        ax.text(0.5 * (x0 + x1), h, op, ha="center", va="center", fontsize=8, color=color,
                bbox=dict(fc="white", ec="none", pad=0.6))  # fmt: skip
    for i in range(n):
        label = "in" if i == 0 else ("out" if i == n - 1 else str(i))
        ax.text(2.0 * i, 0, label, ha="center", va="center", fontsize=9,
                bbox=dict(boxstyle="circle", fc="#e3f2fd", ec="#1565c0"))  # fmt: skip
    ax.set_xlim(-0.6, 2.0 * (n - 1) + 0.6)
    ax.set_ylim(-1.7, 1.3)
    ax.axis("off")
    fig.suptitle(title or str(arch), fontsize=8)
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    fig.savefig(path, dpi=150, facecolor="white")
    return path


# ------------------------------------------------------------------------ NATS-Bench lookup


class NATSBenchMissing(ImportError, ValueError):
    """``nats_bench`` is not installed (a ``ValueError`` too, so config checks report it)."""


def require_nats_bench() -> Any:
    """The ``nats_bench`` module, or a one-line :class:`NATSBenchMissing` on how to get it."""
    try:
        import nats_bench
    except ImportError:
        raise NATSBenchMissing(
            "the NATS-Bench lookup needs the 'nats_bench' package, which is not installed: "
            "pip install 'jaxnas[nats]' (or: pip install nats_bench)"
        ) from None
    return nats_bench


def check_benchmark_path(path: str | os.PathLike[str]) -> str:
    """``path`` if it exists (the benchmark archive folder or file), else a one-line
    ``ValueError``."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(
            f"NATS-Bench benchmark {path!r} does not exist; download the topology archive "
            "(NATS-tss-v1_0-3ffb9-simple, see the NATS-Bench README) and pass its folder"
        )
    return path


def lookup(
    arch: NB201Arch | str,
    benchmark: str | os.PathLike[str] | Any,
    *,
    datasets: Sequence[str] = BENCHMARK_DATASETS,
    hp: str = "200",
) -> dict[str, Any]:
    """What NATS-Bench recorded for a cell: accuracies after ``hp`` training epochs.

    Args:
      arch: the cell (an :class:`NB201Arch` or its string).
      benchmark: the benchmark path (archive folder: read lazily with
        ``fast_mode=True``; the ``.pickle.pbz2`` file: loaded whole) or an API object
        made by ``nats_bench.create(..., 'tss', ...)``.
      datasets: benchmark dataset names (:data:`BENCHMARK_DATASETS`).
      hp: the training budget: ``"200"`` (the benchmark's 200-epoch schedule,
        ``configs/nas-benchmark/hyper-opts/200E.config``) or ``"12"``.

    Returns:
      ``{"arch", "index" (NATS-Bench's), "hp", "results": {dataset: {...}}}`` where each
      dataset holds the benchmark's ``valid-accuracy`` / ``test-accuracy`` (percent,
      averaged over its seeds: ``is_random=False``) where it has them, plus ``params``
      (M) and ``flops`` (M) from ``get_cost_info``.

    Raises:
      NATSBenchMissing: ``nats_bench`` is not installed (one line: how to install it;
        an ``ImportError`` and a ``ValueError``).
      ValueError: ``benchmark`` is a path that does not exist, the benchmark does not
        know the cell, or a dataset name is unknown.
    """
    arch = parse(arch) if isinstance(arch, str) else arch
    if not is_arch(arch):
        raise ValueError(f"lookup needs an NB201 cell, got {type(arch).__name__}")
    for d in datasets:
        if d not in BENCHMARK_DATASETS:
            raise ValueError(f"unknown benchmark dataset {d!r}; known: {BENCHMARK_DATASETS}")
    if isinstance(benchmark, (str, os.PathLike)):
        nats_bench = require_nats_bench()
        path = check_benchmark_path(benchmark)
        api = nats_bench.create(path, "tss", fast_mode=os.path.isdir(path), verbose=False)
    else:
        api = benchmark
    index = int(api.query_index_by_arch(str(arch)))
    if index < 0:
        raise ValueError(f"the benchmark has no cell {arch}")
    results: dict[str, dict[str, float]] = {}
    for d in datasets:
        info = api.get_more_info(index, d, hp=hp, is_random=False)
        row = {k: float(info[k]) for k in ("valid-accuracy", "test-accuracy") if k in info}
        cost = api.get_cost_info(index, d, hp=hp)
        row.update(params=float(cost["params"]), flops=float(cost["flops"]))
        results[d] = row
    return {"arch": str(arch), "index": index, "hp": str(hp), "results": results}


def format_lookup(report: Mapping[str, Any]) -> str:
    """Human-readable lines of a :func:`lookup` report."""
    lines = [f"{report['arch']}  (NATS-Bench index {report['index']}, {report['hp']} epochs)"]
    for d, row in report["results"].items():
        accs = ", ".join(
            f"{k.split('-')[0]} {row[k]:.2f}%"
            for k in ("valid-accuracy", "test-accuracy")
            if k in row
        )
        lines.append(f"  {d:15s} {accs}  ({row['params']:.3f}M params, {row['flops']:.1f}M FLOPs)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m jaxnas.spaces.nb201 lookup --arch STR|FILE --benchmark PATH``."""
    parser = argparse.ArgumentParser(
        prog="python -m jaxnas.spaces.nb201",
        description="NAS-Bench-201 / NATS-Bench topology space tools.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("lookup", help="the benchmark's accuracy of a cell (needs nats_bench)")
    p.add_argument("--arch", required=True, help="an arch string '|op~0|+...' or a genotype JSON")
    p.add_argument("--benchmark", required=True, help="NATS-tss archive folder or .pickle.pbz2")
    p.add_argument(
        "--dataset", action="append", choices=BENCHMARK_DATASETS, help="repeatable; default: all"
    )
    p.add_argument("--hp", default="200", choices=("12", "200"), help="training epochs (200)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    try:
        arch = maybe_load(args.arch)
        if arch is None:
            raise NB201Error(f"--arch {args.arch!r} is neither an NB201 arch string nor its JSON")
        report = lookup(
            arch, args.benchmark, datasets=args.dataset or BENCHMARK_DATASETS, hp=args.hp
        )
    except (ImportError, OSError, ValueError) as e:
        print(f"{parser.prog}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2) if args.json else format_lookup(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
