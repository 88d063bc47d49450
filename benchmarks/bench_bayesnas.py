"""Benchmark BayesNAS' Hessian / gamma update on the whole search supernet, per estimator.

For each size and each estimator of ``search.hessian`` (``jaxnas.search.bayesnas``) one
child process builds the method, then measures the jitted ``hessian_update`` (the
diagonal curvature of the mean cross entropy w.r.t. every gate on one batch, then the
closed-form Algorithm 2 update and pruning): compile time, steady time, and the child's
peak memory (max RSS, compilation included).  The row ``train`` is the search step at a
step without an update (one SGD step on each of the two batches, its compile includes
the update branch of the default estimator).  The exact estimators are refused above
``search.exact_max`` before anything is compiled; such rows carry the error message.
Writes JSON; not a test.

    python benchmarks/bench_bayesnas.py --out benchmarks/results/bayesnas.json
    python benchmarks/bench_bayesnas.py --sizes small --estimators paper,exact --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import load_rows, run_child, write_results  # noqa: E402

SIZES = {
    # configs/bayesnas_fmnist_tiny.py: C=4, 5 cells, batch 32, 28x28x1, the 7 ops
    "tiny": dict(init_channels=4, layers=5, batch=32, shape=(28, 28, 1), exact_max=256),
    # small enough for the exact Hessian (3 cells x 14 edges x 8 gates = 336 gates)
    "small": dict(init_channels=2, layers=3, batch=8, shape=(8, 8, 1), exact_max=400),
    # the paper's search network (configs/bayesnas_cifar10.py): C=16, 8 cells, batch 18
    "paper": dict(init_channels=16, layers=8, batch=18, shape=(32, 32, 3), exact_max=256),
}
# row -> (search.hessian, hessian_samples)
ESTIMATORS = {
    "train": ("paper", 8),
    "paper": ("paper", 8),
    "paper_meanfield": ("paper_meanfield", 8),
    "ggn_mc_1": ("ggn_mc", 1),
    "ggn_mc_8": ("ggn_mc", 8),
    "hutchinson_8": ("hutchinson", 8),
    "ggn_exact": ("ggn_exact", 1),
    "exact": ("exact", 1),
}


def measure(size: str, row: str, repeats: int) -> dict:
    """Child process: build, init, compile and time one row."""
    import jax
    import numpy as np

    from jaxnas.config import default_config
    from jaxnas.search import build

    s = SIZES[size]
    cfg = default_config("bayesnas")
    cfg.model.init_channels, cfg.model.layers = s["init_channels"], s["layers"]
    cfg.data.batch_size = s["batch"]
    cfg.search.hessian, cfg.search.hessian_samples = ESTIMATORS[row]
    cfg.search.exact_max = s["exact_max"]
    out = dict(size=size, row=row, hessian=cfg.search.hessian, samples=cfg.search.hessian_samples)
    try:
        method = build(cfg, steps_per_epoch=100, num_classes=10, input_shape=s["shape"])
    except ValueError as e:
        return dict(out, refused=str(e))
    rng = np.random.default_rng(0)
    batch = (
        rng.normal(size=(s["batch"], *s["shape"])).astype(np.float32),
        rng.integers(0, 10, s["batch"]).astype(np.int32),
    )
    state = method.init(jax.random.PRNGKey(0), batch[0])
    out["gates"] = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(state.arch))
    if row == "train":
        fn, args = method.train_step, (state, batch, batch)
    else:
        fn, args = jax.jit(method.hessian_update), (state, batch, jax.random.key(1))
    t = time.perf_counter()
    compiled = fn.lower(*args).compile()
    out["compile_s"] = round(time.perf_counter() - t, 2)
    jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t)
    out["time_s"] = round(float(np.median(times)), 4)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="benchmarks/results/bayesnas.json")
    p.add_argument("--sizes", default="tiny")
    p.add_argument("--estimators", default=",".join(ESTIMATORS))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--append", action="store_true", help="add rows to an existing --out")
    p.add_argument("--child", nargs=2, metavar=("SIZE", "ROW"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(measure(*a.child, a.repeats)))
        return
    rows = load_rows(a.out, a.append)
    for size in a.sizes.split(","):
        train = None
        for row in a.estimators.split(","):
            r = run_child(__file__, ["--child", size, row, "--repeats", str(a.repeats)])
            r.setdefault("size", size)
            r.setdefault("row", row)
            if row == "train" and "time_s" in r:
                train = r["time_s"]
            elif train and "time_s" in r:
                r["time_vs_train_step"] = round(r["time_s"] / train, 2)
            print(json.dumps(r), flush=True)
            rows.append(r)
    write_results(a.out, rows)


if __name__ == "__main__":
    main()
