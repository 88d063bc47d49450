"""Data parallelism over every device of every host, with ``jit`` and ``NamedSharding``.

One 1-D mesh with axis ``"data"`` spans the devices; batches are split along their
first axis over it, the train state is replicated. A jitted step over such arrays
is the single-device program with the batch axis partitioned: XLA inserts the
all-reduces, so batch-norm statistics are over the *global* batch (synchronised BN)
and gradients are the global-batch gradients, bit for bit the same maths as one
device (up to the order of floating-point sums).

Several hosts (``jax.distributed``): every process runs the same program on the
same global mesh; each feeds only the rows of the global batch that live on its
own devices (:func:`shard_batch`). Launch::

    # SLURM, one process per GPU node (JAX reads SLURM's variables itself):
    srun --nodes=4 --ntasks-per-node=1 --gpus-per-node=8 \\
        jaxnas train --config configs/eval_cifar10.py --genotype DARTS_V2 \\
            --workdir /shared/runs/c10 --set train.distributed=true
    # TPU pod slice (every worker runs the same command):
    gcloud compute tpus tpu-vm ssh NAME --worker=all --command \\
        "jaxnas train ... --set train.distributed=true"

``train.distributed=true`` calls ``jax.distributed.initialize()`` without arguments,
which finds the coordinator on SLURM, Open MPI and Cloud TPU; elsewhere set
``JAXNAS_COORDINATOR`` (``host:port``), ``JAXNAS_NUM_PROCESSES`` and
``JAXNAS_PROCESS_ID`` (how the tests join two CPU processes on localhost).
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

__all__ = [
    "DATA_AXIS",
    "initialize_distributed",
    "data_mesh",
    "replicated",
    "replicate",
    "place",
    "batch_sharding",
    "shard_batch",
    "local_rows",
]

DATA_AXIS = "data"
_initialized = False


def initialize_distributed() -> None:
    """Join the other processes of a multi-host run (``jax.distributed.initialize``).

    Reads ``JAXNAS_COORDINATOR``, ``JAXNAS_NUM_PROCESSES``, ``JAXNAS_PROCESS_ID`` when
    set (explicit cluster), else lets JAX detect SLURM / MPI / Cloud TPU. On CPU it
    selects the gloo collectives so that CPU processes can all-reduce. Idempotent.
    """
    global _initialized
    if _initialized:
        return
    # CPU processes need gloo to all-reduce; GPU/TPU devices ignore the setting
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    kwargs: dict[str, Any] = {}
    if os.environ.get("JAXNAS_COORDINATOR"):
        kwargs = dict(
            coordinator_address=os.environ["JAXNAS_COORDINATOR"],
            num_processes=int(os.environ["JAXNAS_NUM_PROCESSES"]),
            process_id=int(os.environ["JAXNAS_PROCESS_ID"]),
        )
    jax.distributed.initialize(**kwargs)
    _initialized = True


def data_mesh(num_devices: int = 0, key: str = "train.num_devices") -> Mesh:
    """A 1-D mesh (axis ``"data"``) over the first ``num_devices`` global devices.

    Args:
      num_devices: 0 for all devices (of all processes); a positive number uses the
        first ones (single process only).
      key: the config key that set ``num_devices``, named by the errors.

    Raises:
      ValueError: more devices asked for than exist, or a subset in a multi-process run.
    """
    devices = jax.devices()
    if num_devices < 0:
        raise ValueError(f"{key} must be >= 0 (0: all), got {num_devices}")
    if num_devices > len(devices):
        raise ValueError(
            f"{key}={num_devices} but only {len(devices)} "
            f"{devices[0].platform.upper()} device(s) exist "
            "(on CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N makes N)"
        )
    if num_devices and num_devices != len(devices) and jax.process_count() > 1:
        raise ValueError(f"a multi-process run uses all devices: set {key}=0")
    return Mesh(np.array(devices[: num_devices or len(devices)]), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array (the train state)."""
    return NamedSharding(mesh, P())


def replicate(tree: Any, mesh: Mesh) -> Any:
    """``tree``'s arrays as global arrays held whole by every device of ``mesh``.

    Every process must pass the same values (a state built from the one seed); each
    array is copied to the host once and put on this process's devices, so it works
    with several processes, where ``jax.device_put`` onto other hosts' devices cannot.
    """
    return place(tree, replicated(mesh))


def place(tree: Any, shardings: Any) -> Any:
    """``tree``'s arrays as global arrays laid out by ``shardings`` (one sharding, or a
    pytree prefix of ``tree`` with one per subtree), from the same whole values in
    every process (as :func:`replicate`, for a state with batch-split leaves too)."""

    def put(sharding, sub):
        def leaf(x):
            x = np.asarray(x)
            return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

        return jax.tree.map(leaf, sub)

    return jax.tree.map(
        put, shardings, tree, is_leaf=lambda s: isinstance(s, jax.sharding.Sharding)
    )


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """The first axis split over ``"data"`` (batches)."""
    return NamedSharding(mesh, P(DATA_AXIS))


def local_rows(mesh: Mesh, n: int) -> slice:
    """Rows of an ``n``-row global batch that live on this process's devices."""
    per = n // mesh.size
    mine = [i for i, d in enumerate(mesh.devices.flat) if d.process_index == jax.process_index()]
    if mine != list(range(mine[0], mine[-1] + 1)):
        raise ValueError("this process's devices are not contiguous in the data mesh")
    return slice(mine[0] * per, (mine[-1] + 1) * per)


def shard_batch(batch: Any, mesh: Mesh, *, local: bool = False) -> Any:
    """Global arrays from a *global* host batch (every process passes the same batch),
    or, with ``local=True``, from just this process's rows (:func:`local_rows`).

    Each process keeps only the rows of its own devices (so with several hosts the
    batch's other rows never leave the host that loaded them; a loader may also
    produce just those rows and pass them through ``make_array_from_process_local_data``).

    Args:
      batch: pytree of numpy arrays with the global batch size ``B`` as first axis,
        ``B`` divisible by ``mesh.size``.
    """
    sharding = batch_sharding(mesh)

    def put(x):
        x = np.asarray(x)
        if local:
            return jax.make_array_from_process_local_data(sharding, x)
        if x.shape[0] % mesh.size:
            raise ValueError(
                f"batch of {x.shape[0]} does not split evenly over {mesh.size} devices"
            )
        if jax.process_count() == 1:
            return jax.device_put(x, sharding)
        return jax.make_array_from_process_local_data(sharding, x[local_rows(mesh, x.shape[0])])

    return jax.tree.map(put, batch)
