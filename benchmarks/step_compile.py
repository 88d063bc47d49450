"""Where the first step of a DARTS search goes: trace + lower, compile, run.

One process builds the DARTS search method at a ``bench_supernet`` size, lowers its
``train_step`` once (``trace_lower_s``: Python tracing, autodiff and lowering to
StableHLO), then compiles that lowered step once per ``--opt-levels`` entry
(``compile_s``; ``d`` is XLA's default, an integer ``xla_backend_optimization_level``)
and times ``--steps`` steps of each compiled program (``step_min_s``,
``step_median_s``).  Run it at two commits, or under two ``XLA_FLAGS``, to compare
what a change does to each part; it reads ``XLA_FLAGS`` as the process starts and
records them.  Writes JSON (``--out``) and prints it; not a test.

    python benchmarks/step_compile.py --order first --size proto --steps 5 --opt-levels 1
    XLA_FLAGS=--xla_cpu_use_onednn=true python benchmarks/step_compile.py --size paper
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_supernet import SIZES  # noqa: E402


def measure(order: str, size: str, steps: int, opt_levels: list[str]) -> dict:
    """The row: trace + lower once, then per opt level compile and ``steps`` timed steps."""
    import jax
    import numpy as np

    from jaxnas.config import default_config
    from jaxnas.search import build

    s = SIZES[size]
    cfg = default_config("darts")
    cfg.model.init_channels, cfg.model.layers = s["init_channels"], s["layers"]
    cfg.search.order = order
    m = build(cfg, steps_per_epoch=10, num_classes=10, input_shape=s["shape"])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, s["batch"], *s["shape"])).astype(np.float32)
    y = rng.integers(0, 10, (2, s["batch"])).astype(np.int32)
    train, valid = (x[0], y[0]), (x[1], y[1])
    state = m.init(jax.random.key(0), x[0])
    t = time.perf_counter()
    lowered = m.train_step.lower(state, train, valid)
    out = dict(
        order=order,
        size=size,
        xla_flags=os.environ.get("XLA_FLAGS", ""),
        trace_lower_s=round(time.perf_counter() - t, 2),
        levels={},
    )
    for level in opt_levels:
        options = {} if level == "d" else {"xla_backend_optimization_level": int(level)}
        t = time.perf_counter()
        compiled = lowered.compile(compiler_options=options)
        compile_s = time.perf_counter() - t
        jax.block_until_ready(compiled(state, train, valid))  # warm-up
        times = []
        for _ in range(steps):
            t = time.perf_counter()
            jax.block_until_ready(compiled(state, train, valid))
            times.append(time.perf_counter() - t)
        out["levels"][level] = dict(
            compile_s=round(compile_s, 2),
            step_min_s=round(min(times), 4),
            step_median_s=round(float(np.median(times)), 4),
        )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--order", choices=("first", "second"), default="first")
    p.add_argument("--size", choices=sorted(SIZES), default="proto")
    p.add_argument("--steps", type=int, default=5, help="timed steps after the warm-up")
    p.add_argument(
        "--opt-levels",
        nargs="+",
        default=["1"],
        help="XLA backend optimisation levels to compile at ('d': XLA's default)",
    )
    p.add_argument("--out", help="JSON file to write")
    a = p.parse_args()
    if a.steps < 1:
        p.error(f"--steps must be >= 1, got {a.steps}")
    for level in a.opt_levels:
        if level != "d" and not level.isdigit():
            p.error(f"--opt-levels takes 'd' or integers, got {level!r}")
    row = measure(a.order, a.size, a.steps, a.opt_levels)
    text = json.dumps(row, indent=1)
    print(text)
    if a.out:
        with open(a.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
