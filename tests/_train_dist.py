"""Subprocess worker for tests/test_train.py: a few retraining steps on fixed batches.

python tests/_train_dist.py devices OUT.npz   (run with 2 forced host devices)
    -> params after 2 steps for: 1 device; 2 devices; 2 devices with accumulate=2
       on every row doubled
python tests/_train_dist.py host OUT.npz      (JAXNAS_COORDINATOR etc. set, or not)
    -> params after 2 steps with train.distributed on every device of every process
"""

import sys

import jax
import numpy as np

from jaxnas import parallel
from jaxnas.config import default_config
from jaxnas.genotype import CellGenotype, Genotype
from jaxnas.train import Trainer

BATCH = 8
SHAPE = (28, 28, 1)
# cheap to compile (what is tested is the data parallelism, not the cell): pools and
# skips between the BN-ed preprocessing convs of each cell
_CELL = CellGenotype(
    ((("max_pool_3x3", 0), ("skip_connect", 1)), (("avg_pool_3x3", 1), ("skip_connect", 2))),
    (2, 3),
)
GENOTYPE = Genotype(normal=_CELL, reduce=_CELL)


def config(accumulate=1, num_devices=0, distributed=False):
    c = default_config("train")
    c.data.batch_size = BATCH * accumulate
    c.model.init_channels = 4
    c.model.layers = 3
    c.train.epochs = 2
    c.train.accumulate = accumulate
    c.train.num_devices = num_devices
    c.train.distributed = distributed
    return c


def batches():
    rng = np.random.default_rng(0)
    for _ in range(2):
        x = rng.normal(size=(BATCH, *SHAPE)).astype(np.float32)
        y = rng.integers(0, 10, BATCH).astype(np.int32)
        yield x, y


def run(cfg, double=False):
    if cfg.train.distributed:
        parallel.initialize_distributed()
    mesh = parallel.data_mesh(cfg.train.num_devices)
    t = Trainer(cfg, GENOTYPE, num_classes=10, input_shape=SHAPE, steps_per_epoch=100, mesh=mesh)
    state = t.init(0)
    p0 = _flat(state.params)
    losses = []
    for x, y in batches():
        if double:  # row i of the batch at rows 2i and 2i+1: both micro-batches are the batch
            x, y = np.repeat(x, 2, axis=0), np.repeat(y, 2, axis=0)
        state, m = t.train_step(state, t.shard((x, y)))
        losses.append(float(m["loss"]))
    return p0, _flat(state.params), np.array(losses)


def _flat(params):
    return np.concatenate([np.ravel(a) for a in jax.tree.leaves(jax.device_get(params))])


def main():
    mode, out = sys.argv[1], sys.argv[2]
    if mode == "devices":
        p0, p1, l1 = run(config(num_devices=1))
        _, p2, l2 = run(config(num_devices=2))
        _, pa, la = run(config(accumulate=2, num_devices=2), double=True)
        np.savez(out, p0=p0, p1=p1, l1=l1, p2=p2, l2=l2, pa=pa, la=la, n=len(jax.devices()))
    else:
        p0, p, loss = run(config(distributed=True))
        if jax.process_index() == 0:
            np.savez(out, p0=p0, p=p, l=loss, n=len(jax.devices()), procs=jax.process_count())


if __name__ == "__main__":
    main()
