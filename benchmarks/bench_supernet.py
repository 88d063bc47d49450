"""Benchmark the search step: compile time, steady step time, peak memory.

DARTS first / second order and, as variant ``asmnas``, the single-level ASM-NAS
step (Hao & Zhu 2021, Table 5) on the same supernet (same cells, reductions and
channels; one architecture and 14 attention modules per cell instead of alpha).
Variants ``prdarts`` / ``prdarts_code``: a PR-DARTS step (weight step + beta step, only
the two sampled ops of each edge computed; Zhou et al. 2020) on the DARTS supernet;
``gdas``: a GDAS step (weight step + alpha step, one Gumbel-sampled op per edge
computed; Dong & Yang 2019); ``darts``: DARTS first order with the library's defaults
(``model.remat``, ``search.fuse_phases``: auto), the step the sampled ones compare with.

Each (size, order) runs in its own subprocess so that peak memory (max RSS) is
that configuration's alone.  Writes JSON; not a test.

    python benchmarks/bench_supernet.py --out benchmarks/results/supernet.json
    python benchmarks/bench_supernet.py --sizes tiny --orders first --steps 3
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import load_rows, run_child, time_step, write_results  # noqa: E402

SIZES = {
    # the paper's search network: C=16, 8 cells, batch 64, CIFAR-sized input
    "paper": dict(init_channels=16, layers=8, batch=64, shape=(32, 32, 3)),
    # the throwaway prototype's shape in DESIGN.md
    "proto": dict(init_channels=8, layers=5, batch=16, shape=(32, 32, 3)),
    # configs/darts_fmnist_tiny.py
    "tiny": dict(init_channels=4, layers=5, batch=32, shape=(28, 28, 1)),
    # ASM-NAS Table 5: both supernets with 15 cells (C=16; batch not given: 64)
    "asm_paper": dict(init_channels=16, layers=15, batch=64, shape=(32, 32, 3)),
}
# variant -> (order, hypergradient, remat, fuse_phases)
ORDERS = {
    "first": ("first", "exact", False, "yes"),
    "first_separate": ("first", "exact", False, "no"),
    "second": ("second", "exact", False, "yes"),
    "second_separate": ("second", "exact", False, "no"),
    "second_fd": ("second", "finite_difference", False, "no"),
    "first_remat": ("first", "exact", True, "yes"),
    "first_separate_remat": ("first", "exact", True, "no"),
    "second_remat": ("second", "exact", True, "yes"),
    "asmnas": None,  # ASM-NAS single-level step (jaxnas.search.asmnas)
    "rarts": None,  # RARTS: two weight copies, Gauss-Seidel w, u, alpha (jaxnas.search.rarts)
    "prdarts": None,  # PR-DARTS: W + beta step, two sampled ops per edge computed (paper gates)
    "prdarts_code": None,  # the same with the authors' code's top-2 straight-through gates
    "gdas": None,  # GDAS: W step + alpha step, one sampled op per edge computed
    "darts": None,  # DARTS first order with the library's defaults for this backend
}


def search_row(cfg, shape: tuple[int, int, int], batch: int, steps: int) -> dict:
    """In a child process: build the search method of ``cfg`` for ``shape`` images,
    init, compile and time ``steps`` search steps (``common.time_step``) on one fixed
    random batch of ``batch`` images, used as both the train and the validation batch."""
    import jax
    import numpy as np

    from jaxnas.search import build

    method = build(cfg, steps_per_epoch=100, num_classes=10, input_shape=shape)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, *shape)).astype(np.float32)
    y = rng.integers(0, 10, batch).astype(np.int32)
    b = (jax.device_put(x), jax.device_put(y))
    return time_step(
        lambda: method.init(jax.random.key(0), x), method.train_step, lambda s: (s, b, b), steps
    )


def measure(size: str, order: str, steps: int) -> dict:
    """Run in a child process: init, compile and time ``steps`` steps of one variant."""
    from jaxnas.config import default_config

    s = SIZES[size]
    if order == "asmnas":
        cfg = default_config("asmnas")
        cfg.model.reductions = ()  # DARTS' positions: the same supernet as the DARTS rows
    elif order == "rarts":
        cfg = default_config("rarts")  # thesis defaults, no latency table
    elif order in ("prdarts", "prdarts_code"):
        cfg = default_config("prdarts")  # the paper's settings; step 0, so tau = 10
        cfg.search.gates = "code" if order == "prdarts_code" else "paper"
    elif order == "gdas":
        cfg = default_config("gdas")  # one sampled op per edge, tau = 10 at step 0
    elif order == "darts":
        cfg = default_config("darts")  # the library's defaults (remat, fuse_phases: auto)
    else:
        cfg = default_config("darts")
        cfg.search.order, cfg.search.hypergradient, cfg.model.remat, cfg.search.fuse_phases = (
            ORDERS[order]
        )
    cfg.model.init_channels, cfg.model.layers = s["init_channels"], s["layers"]
    r = search_row(cfg, s["shape"], s["batch"], steps)
    m = r.pop("metrics")
    return dict(
        size=size,
        order=order,
        **r,
        loss=m["loss"],
        **({"ops_per_edge": m["ops_per_edge"]} if "ops_per_edge" in m else {}),
        **{k: v for k, v in s.items() if k != "shape"},
        input_shape=list(s["shape"]),
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="benchmarks/results/supernet.json")
    p.add_argument("--sizes", default="tiny,paper")
    p.add_argument("--orders", default="first,second")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--append", action="store_true", help="add rows to an existing --out file")
    p.add_argument("--child", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        size, order = a.child.split(":")
        print(json.dumps(measure(size, order, a.steps)))
        return
    rows = load_rows(a.out, a.append)
    for size in a.sizes.split(","):
        for order in a.orders.split(","):
            args = ["--child", f"{size}:{order}", "--steps", str(a.steps)]
            row = run_child(__file__, args)
            rows.append(dict(size=size, order=order, **row) if "error" in row else row)
            print(json.dumps(rows[-1]), flush=True)
    write_results(a.out, rows)


if __name__ == "__main__":
    main()
