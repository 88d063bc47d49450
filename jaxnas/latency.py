"""Latency lookup tables for the DARTS search space and the relaxed latency penalty.

Thesis (F. Xue, 2022) Sec. 3.1.4: with ``LAT_{i,j,k}`` the latency of candidate
op ``k`` on edge ``(i, j)``, measured on the target device, the relaxed latency
of an edge is (FasterSeg-style, unnumbered in the thesis)

    MLAT_{i,j} = sum_k softmax(alpha_{i,j})_k LAT_{i,j,k}

and the penalty of the regularised Lagrangian (Eq. 2.11) is ``P(alpha) = sum_{(i,j)}
MLAT_{i,j}``: a sum of ``R(z) = <softmax(z), c>`` terms (Eq. 2.38), whose gradient
``softmax(z) * (c - <softmax(z), c>)`` is Lipschitz (Prop. 2.9).

The thesis leaves the measurement open (device, units, batch; L1018: "via
PyTorch/TensorRT").  Here:

* an *edge shape* is ``(channels, height, width, stride)`` of an edge's input;
  :func:`supernet_edges` lists it for every edge of every cell of the configured
  supernet (the same layout as ``jaxnas.supernet.SuperNet``);
* :func:`measure_op` jits one candidate op (search form: ``affine=False``, BN after
  pooling, BN in inference mode) on a ``(batch, H, W, C)`` input, runs it ``warmup``
  times and returns the median of ``runs`` timed calls in **milliseconds**
  (dispatch overhead included: it adds the same constant to every op of an edge,
  and since ``sum_k softmax_k = 1`` a constant shift of ``LAT_{i,j}`` changes
  neither the gradient of ``P`` nor the search);
* the penalty sums over **every cell of the network** (Sec. 3.1.4: "the real latency of
  the architecture can be approximated by the sum of the latencies from all its
  operations"); cells of one type share alpha, so each alpha row is weighted by the
  sum of its edge's latency over the cells of that type (:func:`cell_type_latency`).

The table is JSON (:func:`save_table` / :func:`load_table`)::

    {"version": 1, "unit": "ms", "device": ..., "batch": 1, "runs": 50, "warmup": 5,
     "supernet": {"init_channels": 16, "layers": 8, "input_shape": [32, 32, 3],
                  "primitives": [...]},
     "shapes": {"c16_h32_w32_s1": {"channels": 16, "height": 32, "width": 32,
                                   "stride": 1, "latency": {"none": 0.01, ...}}, ...},
     "cells": [{"layer": 0, "type": "normal", "edges": ["c16_h32_w32_s1", ...]}, ...]}

Make one with ``jaxnas latency --config configs/rarts_cifar10.py --out lat.json``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas.ops import OpsConfig, make_op, resolve_primitives
from jaxnas.spaces.darts import DARTS_CELL, CellTopology
from jaxnas.supernet import reduction_layers

__all__ = [
    "DATASET_SHAPES",
    "EdgeShape",
    "cell_type_latency",
    "check_table",
    "input_shape_of",
    "latency_penalty",
    "load_table",
    "measure_op",
    "measure_table",
    "save_table",
    "supernet_edges",
]

TABLE_VERSION = 1
_DEFAULT_OPS = OpsConfig()

#: ``(H, W, C)`` of one image of each dataset before ``data.pad_to``.
DATASET_SHAPES: dict[str, tuple[int, int, int]] = {
    "cifar10": (32, 32, 3),
    "cifar100": (32, 32, 3),
    "fashion_mnist": (28, 28, 1),
    "digits": (8, 8, 1),
    "imagenet2012": (224, 224, 3),
}


@dataclasses.dataclass(frozen=True)
class EdgeShape:
    """The input of one edge: ``(B, height, width, channels)``, applied with ``stride``."""

    channels: int
    height: int
    width: int
    stride: int

    @property
    def key(self) -> str:
        """The table key, e.g. ``"c16_h32_w32_s1"``."""
        return f"c{self.channels}_h{self.height}_w{self.width}_s{self.stride}"


def supernet_edges(
    init_channels: int,
    layers: int,
    input_shape: Sequence[int],
    topology: CellTopology = DARTS_CELL,
) -> list[dict[str, Any]]:
    """The edge shapes of every cell of ``SuperNet(init_channels, layers)``.

    Follows ``jaxnas.supernet.SuperNet``: the stem keeps ``H x W``; channels double
    at the reduction cells (``reduction_layers``); both cell inputs are preprocessed
    to the cell's channels at the current resolution; a reduction cell's edges from
    its inputs have stride 2, its inner edges stride 1 at the halved resolution.

    Returns:
      ``[{"layer": i, "type": "normal" | "reduce", "edges": [EdgeShape] * n_edges}]``.
    """
    h, w = int(input_shape[0]), int(input_shape[1])
    c = int(init_channels)
    cells = []
    for i in range(layers):
        reduction = i in reduction_layers(layers)
        if reduction:
            c *= 2
            ho, wo = (h + 1) // 2, (w + 1) // 2
            edges = [
                EdgeShape(c, h, w, 2) if e in topology.input_edges else EdgeShape(c, ho, wo, 1)
                for e in range(topology.n_edges)
            ]
            h, w = ho, wo
        else:
            edges = [EdgeShape(c, h, w, 1)] * topology.n_edges
        cells.append(dict(layer=i, type="reduce" if reduction else "normal", edges=edges))
    return cells


def measure_op(
    name: str,
    shape: EdgeShape,
    *,
    batch: int = 1,
    runs: int = 50,
    warmup: int = 5,
    cfg: OpsConfig = _DEFAULT_OPS,
) -> float:
    """Median wall time in milliseconds of one jitted call of op ``name`` on ``shape``.

    The op is built as in the search network (``affine=False``, BN after pooling)
    and run in inference mode; compile time and ``warmup`` calls are not timed.
    """
    op = make_op(name, shape.channels, shape.stride, affine=False, search=True, cfg=cfg)
    rng = np.random.default_rng(0)
    x = jnp.asarray(
        rng.normal(size=(batch, shape.height, shape.width, shape.channels)), jnp.float32
    )
    variables = jax.jit(lambda x: op.init(jax.random.key(0), x, False))(x)
    f = jax.jit(lambda v, x: op.apply(v, x, False))
    for _ in range(max(1, warmup)):  # the first call compiles
        jax.block_until_ready(f(variables, x))
    times = []
    for _ in range(max(1, runs)):
        t = time.perf_counter()
        jax.block_until_ready(f(variables, x))
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def measure_table(
    *,
    init_channels: int,
    layers: int,
    input_shape: Sequence[int],
    primitives: str | Sequence[str] = "darts",
    batch: int = 1,
    runs: int = 50,
    warmup: int = 5,
    cfg: OpsConfig = _DEFAULT_OPS,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, Any]:
    """Measure every op on every distinct edge shape of the supernet; the table dict.

    Args:
      init_channels, layers, input_shape: the supernet (``input_shape = (H, W, C)``).
      primitives: the candidate op list (a named set or the names).
      batch, runs, warmup: see :func:`measure_op`.
      cfg: how ops are computed (e.g. the depthwise implementation the search uses).
      progress: called as ``progress(done, total, what)`` after each measurement.
    """
    prims = resolve_primitives(primitives if isinstance(primitives, str) else tuple(primitives))
    cells = supernet_edges(init_channels, layers, input_shape)
    shapes: dict[str, EdgeShape] = {}
    for cell in cells:
        for e in cell["edges"]:
            shapes.setdefault(e.key, e)
    total, done = len(shapes) * len(prims), 0
    out: dict[str, Any] = {}
    for key, s in shapes.items():
        lat = {}
        for name in prims:
            lat[name] = measure_op(name, s, batch=batch, runs=runs, warmup=warmup, cfg=cfg)
            done += 1
            if progress is not None:
                progress(done, total, f"{name} {key}")
        out[key] = dict(dataclasses.asdict(s), latency=lat)
    return dict(
        version=TABLE_VERSION,
        unit="ms",
        device=str(jax.devices()[0].device_kind),
        backend=jax.default_backend(),
        jax=jax.__version__,
        date=time.strftime("%Y-%m-%d %H:%M:%S"),
        batch=batch,
        runs=runs,
        warmup=warmup,
        depthwise=cfg.depthwise,
        supernet=dict(
            init_channels=int(init_channels),
            layers=int(layers),
            input_shape=[int(v) for v in input_shape],
            primitives=list(prims),
        ),
        shapes=out,
        cells=[
            dict(layer=c["layer"], type=c["type"], edges=[e.key for e in c["edges"]]) for c in cells
        ],
    )


def save_table(table: dict[str, Any], path: str | os.PathLike) -> None:
    """Write the table as indented JSON (creating folders)."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(table, f, indent=1)


def load_table(path: str | os.PathLike) -> dict[str, Any]:
    """Read and structurally check a table; ValueError (one line) if it is not one."""
    path = os.fspath(path)
    hint = f"make one with `jaxnas latency --config <config> --out {path}`"
    if not os.path.isfile(path):
        raise ValueError(f"latency table {path!r} does not exist; {hint}")
    try:
        with open(path, encoding="utf-8") as f:
            table = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"latency table {path!r} is not readable JSON: {e}") from e
    if not isinstance(table, dict) or table.get("version") != TABLE_VERSION:
        raise ValueError(f"{path!r} is not a version-{TABLE_VERSION} latency table; {hint}")
    for key in ("supernet", "shapes", "cells"):
        if key not in table:
            raise ValueError(f"latency table {path!r} has no {key!r} entry; {hint}")
    prims = table["supernet"]["primitives"]
    for cell in table["cells"]:
        for k in cell["edges"]:
            lat = table["shapes"].get(k, {}).get("latency")
            if lat is None or any(p not in lat for p in prims):
                raise ValueError(f"latency table {path!r}: edge shape {k!r} lacks some ops")
    return table


def check_table(
    table: dict[str, Any],
    *,
    init_channels: int,
    layers: int,
    input_shape: Sequence[int],
    primitives: Sequence[str],
    source: str = "latency table",
) -> None:
    """ValueError naming the first difference between the table's supernet and this one."""
    s = table["supernet"]
    want = dict(
        init_channels=int(init_channels),
        layers=int(layers),
        input_hw=[int(v) for v in input_shape[:2]],
        primitives=list(primitives),
    )
    have = dict(
        init_channels=s["init_channels"],
        layers=s["layers"],
        input_hw=list(s["input_shape"][:2]),
        primitives=list(s["primitives"]),
    )
    for k, v in want.items():
        if have[k] != v:
            raise ValueError(
                f"{source} was measured for {k}={have[k]}, the search uses {k}={v}; "
                "measure it again with `jaxnas latency` for this config"
            )


def cell_type_latency(table: dict[str, Any]) -> dict[str, np.ndarray]:
    """``LAT`` per alpha row: ``{"normal": (n_edges, n_ops), "reduce": ...}``, the
    latency of op ``k`` on edge ``e`` summed over all cells of that type (ms).

    A type without cells (e.g. no normal cell in a 2-cell net) gets zeros.
    """
    prims = table["supernet"]["primitives"]
    n_edges = max((len(c["edges"]) for c in table["cells"]), default=DARTS_CELL.n_edges)
    out = {t: np.zeros((n_edges, len(prims)), np.float64) for t in ("normal", "reduce")}
    for cell in table["cells"]:
        for e, key in enumerate(cell["edges"]):
            lat = table["shapes"][key]["latency"]
            out[cell["type"]][e] += [float(lat[p]) for p in prims]
    return out


def latency_penalty(arch: dict[str, jax.Array], lat: dict[str, jax.Array]) -> jax.Array:
    """``P(alpha) = sum_type sum_e <softmax(alpha_type[e]), LAT_type[e]>`` (Sec. 3.1.4
    MLAT; Eq. 2.38 summed as in Prop. 2.9).  ``lat`` as :func:`cell_type_latency`."""
    terms = [
        jnp.sum(jax.nn.softmax(a, axis=-1) * jnp.asarray(lat[k], a.dtype)) for k, a in arch.items()
    ]
    return sum(terms[1:], terms[0])


def input_shape_of(config: Any) -> tuple[int, int, int]:
    """``(H, W, C)`` the search sees for ``config.data`` (dataset + ``pad_to``)."""
    d = config.data
    if d.dataset not in DATASET_SHAPES:
        raise ValueError(
            f"no known input shape for dataset {d.dataset!r}; known: {', '.join(DATASET_SHAPES)}"
        )
    h, w, c = DATASET_SHAPES[d.dataset]
    if d.pad_to:
        h, w = max(h, d.pad_to), max(w, d.pad_to)
    return h, w, c


def _table_from_config(config: Any, **kw) -> dict[str, Any]:
    m = config.model
    depthwise = "custom_vjp" if m.depthwise == "auto" else m.depthwise
    return measure_table(
        init_channels=m.init_channels,
        layers=m.layers,
        input_shape=input_shape_of(config),
        primitives=m.primitives,
        cfg=OpsConfig(depthwise=depthwise),
        **kw,
    )


def run_cli(args: Any) -> int:
    """``jaxnas latency`` (parser in ``jaxnas.cli``): measure the table of ``args.config``
    and save it to ``args.out``."""
    import sys

    from jaxnas.config import load_config
    from jaxnas.runtime import RunError

    config = load_config(args.config, args.set or ())
    if config.method == "train" or "init_channels" not in config.get("model", {}):
        raise RunError(f"{args.config} has no supernet (model.init_channels, model.layers)")
    tty = not args.no_progress and sys.stderr.isatty()

    def progress(done, total, what):
        if tty:
            print(f"\r[{done}/{total}] {what:<40}", end="", file=sys.stderr, flush=True)

    t = time.time()
    try:
        table = _table_from_config(
            config, batch=args.batch, runs=args.runs, warmup=args.warmup, progress=progress
        )
    except ValueError as e:
        raise RunError(str(e)) from e
    if tty:
        print(file=sys.stderr)
    save_table(table, args.out)
    lat = cell_type_latency(table)
    prims = table["supernet"]["primitives"]
    per_op = {p: float(sum(v[:, i].sum() for v in lat.values())) for i, p in enumerate(prims)}
    print(
        f"latency table: {args.out} ({len(table['shapes'])} edge shapes x {len(prims)} ops, "
        f"{table['device']}, batch {args.batch}, median of {args.runs}, {time.time() - t:.0f}s)"
    )
    print("supernet total if every edge used one op (ms):")
    for p, v in per_op.items():
        print(f"  {p:<14} {v:9.3f}")
    print(f"use it: --set search.latency_table={args.out}")
    return 0
