"""Subprocess worker for tests/test_search_dist.py (run with 2 forced host devices).

python tests/_search_dist.py steps OUT.npz [CASE ...]
    -> per case: the state before one search step (``s0``), after the 1-device step
       (``s1``, ``method.train_step``) and after the 2-device step on the same global
       batch (``s2``, ``method.mesh_steps``; ``s3``: ``method.mesh_entry("step_with")``
       with the config's hyperparameters, RARTS and PR-DARTS), leaf by leaf:
       ``{case}/{i}/s0`` etc.;
       ``{case}~genotype``: ``str(method.genotype(s))`` of s1 and s2 (the reading of
       the architecture, ASM-NAS' selection included, on the replicated state).
python tests/_search_dist.py search WORKDIR DEVICES EPOCHS_BEFORE_STOP
    -> a tiny ``jaxnas.run.search`` on DEVICES devices, stopped after that many epochs
       (0: run to the end); a workdir with checkpoints is resumed.
python tests/_search_dist.py host WORKDIR   (JAXNAS_COORDINATOR etc. set)
    -> the same search with run.distributed on every device of every process.
"""

import sys

import jax
import numpy as np

from jaxnas import parallel
from jaxnas.config import default_config
from jaxnas.search import build

BATCH = 8
SHAPE = (28, 28, 1)
#: the cheapest ops with BN: conv_3x3 (ReLU-conv-BN) beside the zero op and the skip
#: (factorized reduce, ReLU-conv-BN, in the reduction cell); XLA's compile time, most of
#: these tests' time, grows with the ops per edge
OPS = "none,skip_connect,conv_3x3"


#: case -> (method, search keys, ops); every case at C = 4, one cell (a reduction cell:
#: DARTS' layers // 3 = 0; XLA's compile time, most of this test's time, grows with the
#: cells).  One cell has all that the 2-device step splits or sums: batch-norm statistics
#: of a batch split across devices, the weights' and architecture variables' gradients
#: and each method's own update of them (Hessian, selection, sampling) on the cell's
#: edges; a second cell adds the same ops again.
CASES = {
    "darts_first": ("darts", dict(order="first"), OPS),
    "darts_exact": ("darts", dict(order="second", hypergradient="exact"), OPS),
    "rarts": ("rarts", {}, OPS),
    "sparsenas": ("sparsenas", {}, OPS),
    # the step ends with Alg. 1's Hessian / gamma update (every step, no warm-up)
    "bayesnas": ("bayesnas", dict(warmup_epochs=0.0, update_unit="step"), OPS),
    "asmnas": ("asmnas", {}, OPS),
    # PR-DARTS' path regularizer needs a separable or dilated conv (dilated: one conv
    # per op, the shorter compile)
    "prdarts": ("prdarts", {}, "none,skip_connect,dil_conv_3x3"),
    "gdas": ("gdas", {}, OPS),
}


def case_config(case: str):
    name, search, ops = CASES[case]
    c = default_config(name)
    c.model.init_channels, c.model.layers = 4, 1
    if "reductions" in c.model:
        c.model.reductions = (0,)
    with c.ignore_type():
        c.model.primitives = ops
    c.data.batch_size = BATCH
    c.search.update(search)
    return c


def batches(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2, BATCH, *SHAPE)).astype(np.float32)
    y = rng.integers(0, 10, size=(2, BATCH)).astype(np.int32)
    return (x[0], y[0]), (x[1], y[1])


def steps(out: str, cases) -> None:
    mesh = parallel.data_mesh(2)
    train, valid = batches()
    result = {}
    for case in cases:
        m = build(case_config(case), steps_per_epoch=2, num_classes=10, input_shape=SHAPE)
        s0 = m.init(jax.random.key(0), train[0])
        s1, _ = m.train_step(s0, train, valid)
        step, _ = m.mesh_steps(mesh)
        s2, _ = step(
            parallel.replicate(s0, mesh),
            parallel.shard_batch(train, mesh),
            parallel.shard_batch(valid, mesh),
        )
        assert all(len(x.sharding.device_set) == 2 for x in jax.tree.leaves(s2))
        states = {"s0": s0, "s1": s1, "s2": s2}
        if "step_with" in m.entry_points:  # RARTS, PR-DARTS: the step of traced hyper
            states["s3"], _ = m.mesh_entry("step_with", mesh)(
                parallel.replicate(s0, mesh),
                parallel.shard_batch(train, mesh),
                parallel.shard_batch(valid, mesh),
                parallel.replicate(m.hyper_at(s0.step), mesh),
            )
        for k, s in states.items():
            for i, v in enumerate(jax.tree.leaves(s)):
                result[f"{case}/{i:04d}/{k}"] = np.asarray(v)
        result[f"{case}~genotype"] = np.array([str(m.genotype(s)) for s in (s1, s2)])
        print(case, "done", flush=True)
    np.savez(out, **result)


def search_config(devices: int, distributed: bool = False):
    c = default_config("darts")
    # one cell, as in CASES: the move between device counts and processes is of the
    # whole state, whatever the cells
    c.model.init_channels, c.model.layers = 4, 1
    c.model.primitives = OPS
    c.search.epochs = 2
    c.data.dataset = "fashion_mnist"
    c.data.batch_size = BATCH
    c.data.limit = 32  # 16 + 16 -> 2 steps per epoch
    c.run.log_every_steps = 1
    c.run.eval_limit = 16
    c.run.tensorboard = False
    c.run.devices = devices
    c.run.distributed = distributed
    return c


class Stop(Exception):
    pass


def search(workdir: str, devices: int, stop_after: int, distributed: bool = False) -> None:
    import os

    from jaxnas.run import search as run_search

    def on_epoch_end(done, record):
        if stop_after and done >= stop_after:
            raise Stop

    resume = os.path.isdir(os.path.join(workdir, "checkpoints"))
    try:
        run_search(
            search_config(devices, distributed),
            workdir,
            resume=resume,
            progress=False,
            on_epoch_end=on_epoch_end,
        )
    except Stop:
        print("stopped", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "steps":
        steps(sys.argv[2], sys.argv[3:] or list(CASES))
    elif sys.argv[1] == "host":
        search(sys.argv[2], 0, 0, distributed=True)
    else:
        search(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
