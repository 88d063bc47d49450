"""Benchmark the retraining step: compile time, step time, images/s, peak memory,
on one device and on several (host) devices.

Networks (DARTS_V2): ``cifar`` = the paper's CIFAR-10 network (C=36, 20 cells,
auxiliary head, batch 96, 32x32x3); ``imagenet`` = the mobile ImageNet network
(C=48, 14 cells, batch 128, 224x224x3); ``fmnist`` = ``configs/eval_fmnist_small.py``
(C=8, 5 cells, batch 64, 28x28x1). Each (network, devices) runs in a child process
with ``XLA_FLAGS=--xla_force_host_platform_device_count=D`` on CPU (the same global
batch split over D devices). ``--genotype FILE`` retrains another cell than DARTS_V2
(e.g. a SparseNAS mixed-path cell) and ``--group-ops no,yes`` compares
``model.group_ops`` off and on (one row each). Writes JSON; not a test.

    python benchmarks/bench_train.py --out benchmarks/results/train.json
    python benchmarks/bench_train.py --nets fmnist --devices 1,2 --steps 5
    python benchmarks/bench_train.py --nets fmnist --devices 1 --group-ops no,yes \
        --genotype benchmarks/genotypes/sparsenas_fmnist_dense.json --out group_ops.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import load_rows, run_child, time_step, write_results  # noqa: E402

NETS = {
    "cifar": dict(dataset="cifar10", init_channels=36, layers=20, batch=96, shape=(32, 32, 3)),
    "imagenet": dict(
        dataset="imagenet2012", init_channels=48, layers=14, batch=128, shape=(224, 224, 3)
    ),
    "fmnist": dict(dataset="fashion_mnist", init_channels=8, layers=5, batch=64, shape=(28, 28, 1)),
}


def measure(
    net: str,
    steps: int,
    dtype: str,
    batch: int = 0,
    genotype: str | None = None,
    group_ops: bool = False,
) -> dict:
    """In the child: build the Trainer, compile, time ``steps`` train steps
    (``common.time_step``); ``batch``: the global batch (0: the network's own);
    ``genotype``: a genotype JSON file (``None``: DARTS_V2); ``group_ops``:
    ``model.group_ops``."""
    import numpy as np

    from jaxnas.config import default_config
    from jaxnas.genotype import DARTS_V2
    from jaxnas.genotype import load as load_genotype
    from jaxnas.train import Trainer

    s = dict(NETS[net], **({"batch": batch} if batch else {}))
    cfg = default_config("train")
    cfg.data.dataset = s["dataset"]
    cfg.data.batch_size = s["batch"]
    cfg.model.init_channels, cfg.model.layers, cfg.model.dtype = (
        s["init_channels"],
        s["layers"],
        dtype,
    )
    cfg.model.group_ops = group_ops
    classes = 1000 if net == "imagenet" else 10
    g = load_genotype(genotype) if genotype else DARTS_V2
    t = Trainer(cfg, g, num_classes=classes, input_shape=s["shape"], steps_per_epoch=100)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(s["batch"], *s["shape"])).astype(np.float32)
    y = rng.integers(0, classes, s["batch"]).astype(np.int32)
    b = t.shard((x, y))
    r = time_step(lambda: t.init(0), t.train_step, lambda state: (state, b), steps)
    return dict(
        net=net,
        devices=t.mesh.size,
        dtype=dtype,
        genotype=genotype or "DARTS_V2",
        group_ops=group_ops,
        batch=s["batch"],
        init_channels=s["init_channels"],
        layers=s["layers"],
        auxiliary=bool(cfg.model.auxiliary),
        input_shape=list(s["shape"]),
        **{k: v for k, v in r.items() if k != "metrics"},
        images_per_s=round(s["batch"] / r["step_s"], 1),
        loss=r["metrics"]["loss"],
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="benchmarks/results/train.json")
    p.add_argument("--nets", default="fmnist,cifar")
    p.add_argument("--devices", default="1,2", help="host device counts to compare (CPU)")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--batch", type=int, default=0, help="global batch (0: each network's own)")
    p.add_argument("--genotype", help="genotype JSON file (default: DARTS_V2)")
    p.add_argument("--group-ops", default="no", help="model.group_ops values: no, yes or no,yes")
    p.add_argument("--append", action="store_true", help="add rows to an existing --out file")
    p.add_argument("--child", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        grouped = a.group_ops == "yes"
        print(json.dumps(measure(a.child, a.steps, a.dtype, a.batch, a.genotype, grouped)))
        return
    groups = a.group_ops.split(",")
    if not groups or any(v not in ("no", "yes") for v in groups):
        p.error(f"--group-ops takes no, yes or no,yes; got {a.group_ops!r}")
    rows = load_rows(a.out, a.append)
    for net in a.nets.split(","):
        for d in (int(v) for v in a.devices.split(",")):
            for grouped in groups:
                env = dict(os.environ)
                flags = env.get("XLA_FLAGS", "")
                env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={d}".strip()
                args = ["--child", net, "--steps", str(a.steps), "--dtype", a.dtype]
                args += ["--batch", str(a.batch), "--group-ops", grouped]
                args += ["--genotype", a.genotype] if a.genotype else []
                row = run_child(__file__, args, env)
                info = dict(net=net, devices=d, group_ops=grouped == "yes")
                rows.append(dict(info, **row) if "error" in row else row)
                print(json.dumps(rows[-1]), flush=True)
    write_results(a.out, rows)


if __name__ == "__main__":
    main()
