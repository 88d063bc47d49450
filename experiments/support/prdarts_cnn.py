"""Fixed-cell CNNs for the PR-DARTS theory experiments (Fig. 2 and Theorem 4).

Zhou et al. (NeurIPS 2020) support Theorem 1 with Fig. 2 (L96-98): "we first set
all operations in NAS cell (normal and reduction cells) as convolution (3x3), and
randomly select 0%, 37.5% and 62.5% operations as skip connections.  Next, we stack
8 NAS cells to build a network and train on CIFAR10 with same settings.  Fig. 2
shows that more skip connections gives faster convergence."  A derived DARTS cell
has 8 ops (4 nodes x 2 inputs), so the three networks have 0, 3 and 5 skips per
cell.  Theorem 4 (L141-151) says shallow cells reduce the training loss faster
than deep ones; Sec. 4.2 adds that deep cells "can achieve superior final
performance", which is why PR-DARTS rewards depth.

This module builds those networks from hand-made genotypes with the discrete
DARTS network builder (:class:`jaxnas.models.darts_net.NetworkCIFAR`) and trains
them with the shared retraining :class:`jaxnas.train.Trainer` on a Fashion-MNIST
subset:

* :func:`fig2_genotype`: every op of a cell wiring (default: the released PR-DARTS
  genotype's, whose normal cell is the conv chain 1->2->3->4->5) set to
  ``conv_3x3``, then ``k`` of the 8 ops per cell turned into ``skip_connect``.  The
  skip positions are the first ``k`` of a random permutation drawn from the seed,
  one per cell type, so for a given seed the 3-skip cell's skips are a subset of
  the 5-skip cell's.
* :func:`chain_cell` / :func:`wide_cell`: the deep and the shallow cell of the
  Theorem-4 CNN comparison, both 8 ``conv_3x3`` ops (exactly the same parameters):
  the chain feeds node ``l`` from node ``l-1`` (conv path depth 4), the wide cell
  feeds every node from the two cell inputs only (depth 1).

**The op.**  The paper's "convolution (3x3)" is not one of the DARTS search ops; it
is ``conv_3x3`` of :data:`jaxnas.ops.OPS`: ReLU, 3x3 conv (stride 2 on the input
edges of a reduction cell, padding 1, no bias), BN -- DARTS' ``ReLUConvBN(C, C, 3, s, 1)``,
:class:`jaxnas.ops.ReLUConvBN`.  Its parameters: ``9 C^2 + 2 C`` (affine BN).  A
skip is the identity, except on the stride-2 edges of a reduction cell, where
DARTS' ``skip_connect`` is a ``FactorizedReduce`` (``C^2 + 2 C`` parameters).

**Training** (our choices; the paper's Fig. 2 says only "same settings"): SGD with
momentum 0.9, a constant learning rate (the theory compares rates of gradient
descent at a fixed step size), weight decay 3e-4 and gradient clipping 5 as in
DARTS' ``train.py``; no augmentation, no auxiliary head, no drop path; the first
``n_train`` training and ``n_test`` test images of Fashion-MNIST, optionally
average-pooled 2x (28x28 -> 14x14) and zero-padded to a multiple of 4 so that both
reductions see even sizes (14 -> 16 -> 8 -> 4).  The training loss recorded at
step ``t`` is the cross entropy of the mini-batch of step ``t`` before the update
(BN in training mode), as a training curve plots it.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import numpy as np

from jaxnas import data as jdata
from jaxnas.genotype import PRDARTS, CellGenotype, Genotype

__all__ = [
    "CONV_OP",
    "NON_PARAMETERISED",
    "ImageData",
    "TrainSettings",
    "cell_depth",
    "chain_cell",
    "fig2_genotype",
    "load_fmnist",
    "make_trainer",
    "pool_images",
    "replace_ops",
    "skip_positions",
    "train_batches",
    "train_run",
    "wide_cell",
]

#: The plain 3x3 convolution of Fig. 2 (ReLU-conv-BN in :data:`jaxnas.ops.OPS`).
CONV_OP = "conv_3x3"

#: Ops that do not count towards the depth of a path (Sec. 4.2: skip, zero and pooling
#: "make a network shallow"); a strided skip (``FactorizedReduce``) counts as a skip.
NON_PARAMETERISED: frozenset[str] = frozenset(
    {"none", "skip_connect", "max_pool_3x3", "avg_pool_3x3"}
)


# --------------------------------------------------------------------------------------
# genotypes
# --------------------------------------------------------------------------------------


def replace_ops(cell: CellGenotype, skips: Sequence[int], conv_op: str = CONV_OP) -> CellGenotype:
    """``cell``'s wiring with op ``j`` (flat, node by node) set to ``skip_connect`` for
    ``j`` in ``skips`` and to ``conv_op`` otherwise.

    Raises:
      ValueError: a skip position outside ``0 .. len(cell) - 1`` or repeated.
    """
    n = len(cell)
    skips = [int(j) for j in skips]
    if len(set(skips)) != len(skips) or any(not 0 <= j < n for j in skips):
        raise ValueError(f"skip positions must be distinct and in [0, {n}), got {skips}")
    chosen = set(skips)
    nodes, j = [], 0
    for node in cell.nodes:
        new = []
        for _, src in node:
            new.append(("skip_connect" if j in chosen else conv_op, src))
            j += 1
        nodes.append(tuple(new))
    return CellGenotype(tuple(nodes), cell.concat, cell.n_inputs)


def skip_positions(k: int, n_ops: int, seed: int, cell_type: int) -> tuple[int, ...]:
    """The first ``k`` entries of a permutation of ``range(n_ops)`` drawn from
    ``np.random.default_rng([seed, cell_type])``: nested in ``k`` for a fixed seed.

    Raises:
      ValueError: ``k`` outside ``0 .. n_ops``.
    """
    if not 0 <= k <= n_ops:
        raise ValueError(f"the number of skips must be in [0, {n_ops}], got {k}")
    perm = np.random.default_rng([int(seed), int(cell_type)]).permutation(n_ops)
    return tuple(sorted(int(j) for j in perm[:k]))


def fig2_genotype(
    k: int, seed: int, wiring: Genotype = PRDARTS, conv_op: str = CONV_OP
) -> Genotype:
    """The Fig. 2 network's cells: ``wiring``'s edges, ``k`` skips and ``len - k`` convs.

    The normal and the reduction cell get independent skip positions
    (:func:`skip_positions` with ``cell_type`` 0 and 1).
    """
    normal = replace_ops(wiring.normal, skip_positions(k, len(wiring.normal), seed, 0), conv_op)
    reduce = replace_ops(wiring.reduce, skip_positions(k, len(wiring.reduce), seed, 1), conv_op)
    return Genotype(normal=normal, reduce=reduce)


def chain_cell(conv_op: str = CONV_OP, n_nodes: int = 4) -> CellGenotype:
    """The deep cell: node ``2`` reads ``c_{k-2}`` and ``c_{k-1}``; node ``l > 2`` reads
    node ``l - 1`` and ``c_{k-1}``; every op is ``conv_op``.  Conv path depth ``n_nodes``
    (the chain ``1 -> 2 -> ... -> n_nodes + 1`` that PR-DARTS' ``L_path`` rewards)."""
    nodes = [((conv_op, 0), (conv_op, 1))]
    nodes += [((conv_op, 1 + k), (conv_op, 1)) for k in range(1, n_nodes)]
    return CellGenotype(tuple(nodes), tuple(range(2, 2 + n_nodes)))


def wide_cell(conv_op: str = CONV_OP, n_nodes: int = 4) -> CellGenotype:
    """The shallow cell: every node reads ``c_{k-2}`` and ``c_{k-1}`` through ``conv_op``
    (conv path depth 1); the same ops, hence parameters, as :func:`chain_cell`."""
    nodes = [((conv_op, 0), (conv_op, 1)) for _ in range(n_nodes)]
    return CellGenotype(tuple(nodes), tuple(range(2, 2 + n_nodes)))


def cell_depth(cell: CellGenotype, non_parameterised: frozenset[str] = NON_PARAMETERISED) -> int:
    """The largest number of parameterised ops on a path from a cell input to a node in
    ``cell.concat`` (ops in ``non_parameterised`` count 0)."""
    depth = [0] * cell.n_inputs
    for node in cell.nodes:
        depth.append(
            max((depth[src] + (op not in non_parameterised) for op, src in node), default=0)
        )
    return max(depth[c] for c in cell.concat)


# --------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------


def pool_images(images: np.ndarray, factor: int) -> np.ndarray:
    """``uint8`` ``(N, H, W, C)`` -> ``(N, H/f, W/f, C)`` by ``f x f`` mean pooling (rounded).

    Raises:
      ValueError: ``factor < 1`` or ``H``, ``W`` not divisible by it.
    """
    if factor < 1:
        raise ValueError(f"pooling factor must be >= 1, got {factor}")
    if factor == 1:
        return images
    n, h, w, c = images.shape
    if h % factor or w % factor:
        raise ValueError(f"{h}x{w} images do not pool by {factor}")
    blocks = images.reshape(n, h // factor, factor, w // factor, factor, c).astype(np.float32)
    return np.rint(blocks.mean(axis=(2, 4))).astype(np.uint8)


@dataclasses.dataclass(frozen=True)
class ImageData:
    """A train and a test set, both spatially padded to ``pad_to`` (or not, if ``None``)."""

    train: jdata.ArrayDataset
    test: jdata.ArrayDataset
    pad_to: int | None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` as the network sees it."""
        h, w, c = self.train.images.shape[1:]
        return (self.pad_to or h, self.pad_to or w, c)


def load_fmnist(
    n_train: int, n_test: int, *, pool: int = 2, data_dir: str | None = None
) -> ImageData:
    """The first ``n_train`` / ``n_test`` Fashion-MNIST train / test images, mean-pooled by
    ``pool`` and padded to the next multiple of 4 (two reductions need even sizes).

    Raises:
      ValueError: non-positive sizes; DatasetNotFoundError: no local Fashion-MNIST.
    """
    if n_train < 1 or n_test < 1:
        raise ValueError(f"n_train and n_test must be positive, got {n_train}, {n_test}")
    out = []
    for split, n in (("train", n_train), ("test", n_test)):
        ds = jdata.load("fashion_mnist", split, data_dir=data_dir, limit=n)
        out.append(dataclasses.replace(ds, images=pool_images(ds.images, pool)))
    h = out[0].images.shape[1]
    pad = -(-h // 4) * 4
    return ImageData(out[0], out[1], pad if pad != h else None)


# --------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """Network size and optimiser of one training run (see the module docstring).

    Attributes:
      channels: ``C`` of the first cells (doubled at each reduction).
      layers: number of cells (Fig. 2: 8; reductions at ``layers // 3``, ``2 layers // 3``).
      batch_size: training mini-batch.
      steps: SGD steps.
      lr: constant learning rate.
      momentum, weight_decay, grad_clip: SGD settings (DARTS' ``train.py``).
      eval_batch_size: batch of the final evaluation passes.
      prng_impl: JAX PRNG implementation of the init (and of the train state's key).
        ``"rbg"``: the jitted init of these networks compiles about twice as fast as
        with threefry (measured 6 s vs 10 s for the 8-cell C=8 network), and every
        distinct genotype compiles its own init.  Deterministic on one backend.
    """

    channels: int = 8
    layers: int = 8
    batch_size: int = 64
    steps: int = 150
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    eval_batch_size: int = 250
    prng_impl: str = "rbg"

    def __post_init__(self):
        for name in ("channels", "layers", "batch_size", "steps", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.channels % 2:
            raise ValueError(f"channels must be even (FactorizedReduce), got {self.channels}")
        if self.layers < 3:
            raise ValueError(f"layers must be >= 3 (two reduction cells), got {self.layers}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.prng_impl not in ("threefry2x32", "rbg", "unsafe_rbg"):
            raise ValueError(f"unknown prng_impl {self.prng_impl!r}")


def make_trainer(genotype: Genotype, data: ImageData, settings: TrainSettings):
    """A :class:`jaxnas.train.Trainer` for ``genotype`` (one compiled step per genotype;
    reuse it across seeds)."""
    from jaxnas.config import default_config
    from jaxnas.train import Trainer

    if len(data.train) < settings.batch_size:
        raise ValueError(
            f"batch_size {settings.batch_size} exceeds the {len(data.train)} training images"
        )
    c = default_config("train")
    c.data.dataset = "fashion_mnist"
    c.data.batch_size = settings.batch_size
    c.data.pad_to = data.pad_to or 0
    c.model.init_channels = settings.channels
    c.model.layers = settings.layers
    c.model.auxiliary = False
    c.model.drop_path_prob = 0.0
    c.model.scan_cells = False
    c.optim.lr = settings.lr
    c.optim.schedule = "exponential"  # decay_rate 1: a constant learning rate
    c.optim.decay_rate = 1.0
    c.optim.momentum = settings.momentum
    c.optim.weight_decay = settings.weight_decay
    c.optim.grad_clip = settings.grad_clip
    c.train.num_devices = 1
    steps_per_epoch = len(data.train) // settings.batch_size
    c.train.epochs = max(1, math.ceil(settings.steps / steps_per_epoch))
    return Trainer(
        c,
        genotype,
        num_classes=data.train.num_classes,
        input_shape=data.input_shape,
        steps_per_epoch=steps_per_epoch,
    )


def train_batches(data: ImageData, batch_size: int, seed: int) -> Iterator[tuple[np.ndarray, ...]]:
    """Shuffled training batches of ``data.train``, epoch after epoch, without end."""
    loader = jdata.Loader(
        data.train, None, batch_size, seed=seed, shuffle=True, drop_last=True, pad_to=data.pad_to
    )
    epoch = 0
    while True:
        yield from loader.epoch(epoch)
        epoch += 1


def _evaluate(trainer, state, ds: jdata.ArrayDataset, data: ImageData, batch: int) -> dict:
    res = trainer.evaluate(state, jdata.eval_batches(ds, batch, pad_to=data.pad_to))
    return dict(loss=res["loss"], accuracy=res["accuracy"])


def train_run(
    trainer,
    data: ImageData,
    settings: TrainSettings,
    seed: int,
    *,
    on_step: Callable[[int, float], None] | None = None,
) -> dict[str, Any]:
    """Train ``trainer``'s network from the init of ``seed`` for ``settings.steps`` steps.

    The init (``trainer.init(seed)``) and the batch order (``Loader`` seeded with ``seed``)
    depend on ``seed`` only, so a run is reproducible.

    Returns:
      ``losses`` and ``accuracies``: per-step mini-batch training cross entropy and
      accuracy, ``(steps,)`` float lists; ``test`` and ``train_eval``: ``{loss,
      accuracy}`` of the final weights in evaluation mode on the test set and on the
      training subset; ``params``: parameter count; ``finite``; ``wall_s``.
    """
    from jaxnas.models.summary import count_params

    t0 = time.perf_counter()
    eb = settings.eval_batch_size
    # the state's key is raw key data of this implementation: init and steps share it
    with jax.default_prng_impl(settings.prng_impl):
        state = trainer.init(seed)
        n_params = count_params(state.params)
        metrics = []
        batches = train_batches(data, settings.batch_size, seed)
        for step in range(settings.steps):
            state, m = trainer.train_step(state, trainer.shard(next(batches)))
            metrics.append((m["loss"], m["accuracy"]))
            if on_step is not None:
                on_step(step, m["loss"])
        values = np.asarray(jax.device_get(metrics), np.float64).reshape(settings.steps, 2)
        test = _evaluate(trainer, state, data.test, data, eb)
        train_eval = _evaluate(trainer, state, data.train, data, eb)
    return dict(
        losses=values[:, 0].tolist(),
        accuracies=values[:, 1].tolist(),
        test=test,
        train_eval=train_eval,
        params=n_params,
        finite=bool(np.all(np.isfinite(values))),
        wall_s=round(time.perf_counter() - t0, 2),
    )
