"""The data of ``jaxnas compress``: in-memory datasets, streamed ImageNet / ImageNet-20,
the bi-level split of thesis Algorithm 3, and resizing to the model's input size.

Thesis Algorithm 3 (F. Xue, PhD thesis, UC Irvine 2022, Sec. 4.2) searches on two
disjoint parts of the training set (``D_a`` for the weights, ``D_p`` for the scores;
:func:`jaxnas.data.bilevel_split` of the record indices) and fine-tunes on all of it.

* In-memory datasets (``fashion_mnist``, ``cifar10``, ``cifar100``, ``digits``, ...):
  :class:`jaxnas.data.Loader` over index sets, test batches from
  :func:`jaxnas.data.eval_batches`.
* ``imagenet2012`` and its class subsets (``imagenet20``,
  :data:`jaxnas.data.CLASS_SUBSETS`): JPEGs streamed by
  :class:`jaxnas.data_imagenet.ImageNetLoader` (DARTS' transforms:
  ``RandomResizedCrop(S)``, flip, colour jitter; evaluation ``Resize(S * 256 / 224)``,
  ``CenterCrop(S)``, ``S = model.input_size or 224``), the split as
  :class:`~jaxnas.data_imagenet.SubsetSource` views.  ImageNet-20: 20 classes drawn
  from the 1000 with a fixed seed (:func:`jaxnas.data_imagenet.draw_classes`), every
  train / validation image of those classes (about 26,000 / 1,000, as the thesis's),
  labels relabelled to ``0..19``.  Finding them needs every record's label once: the
  scan is cached under ``$JAXNAS_CACHE_DIR`` (default ``~/.cache/jaxnas``).
* ``model.input_size`` for in-memory datasets: every batch (training and test) is
  resized bilinearly to ``S x S`` **on the device**, in one jitted call before the step
  (:func:`resize_images`): the host sends the small images (a 32x32 CIFAR batch is 49x
  smaller than its 224x224 version), which keeps the host-to-device copy and the
  host's numpy work at the small size.  Thesis Table 4.4 runs Swin-T (4.49 G
  multiply-adds: the 224x224 count) on CIFAR-100, so the images were upsampled to 224.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["CACHE_ENV_VAR", "WidthData", "build_data", "label_cache_path", "resize_images"]

CACHE_ENV_VAR = "JAXNAS_CACHE_DIR"
#: DARTS' ImageNet evaluation resizes the shorter side to 256 for a 224 crop
EVAL_RESIZE = 256 / 224


def resize_images(x: jax.Array, size: int) -> jax.Array:
    """Bilinear resize of ``(B, H, W, C)`` images to ``(B, size, size, C)``.

    ``jax.image.resize(..., "bilinear")`` with half-pixel centres (PyTorch's
    ``interpolate(..., align_corners=False)``; upsampling needs no antialiasing).  A
    constant image stays constant (the interpolation weights sum to one).
    """
    if x.ndim != 4:
        raise ValueError(f"expected (B, H, W, C) images, got shape {x.shape}")
    if size < 1:
        raise ValueError(f"resize size must be >= 1, got {size}")
    b, h, w, c = x.shape
    if (h, w) == (size, size):
        return x
    return jax.image.resize(x, (b, size, size, c), method="bilinear")


@dataclasses.dataclass
class WidthData:
    """What the compress loop reads.

    Attributes:
      weights: loader of the weight step (``D_a``; the whole training set without the
        split); ``epoch(e)`` yields ``(x, y)``.
      arch: loader of ``D_p`` (None without the split).
      full: loader of the whole training set (fine-tuning).
      test_batches: ``() -> iterator of (x, y, mask)`` (fixed-size, masked).
      num_classes: the dataset's classes.
      input_shape: ``(H, W, C)`` the model sees.
      resize: the on-device resize side (0: none); :meth:`batches` applies it.
      info: written to ``classes.json`` (a class subset's classes), else ``{}``.
    """

    weights: Any
    arch: Any
    full: Any
    test_batches: Callable[[], Iterator]
    num_classes: int
    input_shape: tuple[int, int, int]
    resize: int = 0
    info: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        size = self.resize
        self._resize = jax.jit(lambda x: resize_images(x, size)) if size else None

    def prepare(self, batch: tuple) -> tuple:
        """``batch`` with its images resized on the device (unchanged without ``resize``)."""
        if self._resize is None:
            return batch
        return (self._resize(jnp.asarray(batch[0])), *batch[1:])

    def epochs(self, loader: Any) -> Callable[[int], Iterator[tuple]]:
        """``e -> (x, y)`` batches of ``loader``'s epoch ``e``, prepared."""
        return lambda e: (self.prepare(b) for b in loader.epoch(e))

    def test(self) -> Iterator[tuple]:
        """The test batches ``(x, y, mask)``, prepared."""
        return (self.prepare(b) for b in self.test_batches())


def label_cache_path(name: str, split: str, n: int, data_dir: str | None) -> str:
    """Where the label scan of ``name``/``split`` (``n`` records) under ``data_dir`` is
    cached: ``$JAXNAS_CACHE_DIR`` (default ``~/.cache/jaxnas``), keyed by a hash of the
    data dir so two copies of a dataset never share a cache."""
    root = os.environ.get(CACHE_ENV_VAR) or os.path.join(
        os.path.expanduser("~"), ".cache", "jaxnas"
    )
    where = os.path.abspath(os.path.expanduser(data_dir)) if data_dir else "<tfds default>"
    tag = hashlib.sha1(where.encode()).hexdigest()[:10]
    return os.path.join(root, f"{name}_{split.replace('/', '_')}_{n}_{tag}_labels.npy")


def _seeds(seed: int) -> list[int]:
    # the two halves' loaders draw from different streams of the run's seed
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(2)]


def _in_memory(config: Any, split: bool) -> WidthData:
    from jaxnas import data

    d = config.data
    kw = dict(data_dir=d.data_dir or None)
    pad = d.pad_to or None
    aug = data.Augment(crop_padding=d.crop_padding, flip=d.flip, cutout=d.cutout)
    train = data.load(d.dataset, "train", limit=d.limit or None, **kw)
    test = data.load(d.dataset, "test", **kw)
    full = data.Loader(train, None, d.batch_size, seed=config.seed, augment=aug, pad_to=pad)
    la, lp = full, None
    if split:
        a_idx, p_idx = data.bilevel_split(len(train), seed=config.seed, portion=d.portion)
        la, lp = (
            data.Loader(train, idx, d.batch_size, seed=s, augment=aug, pad_to=pad)
            for idx, s in zip((a_idx, p_idx), _seeds(config.seed))
        )
    h, w, c = train.images.shape[1:]
    if pad:
        h, w = pad, pad
    size = int(config.model.input_size)
    if size:
        h = w = size
    return WidthData(
        weights=la,
        arch=lp,
        full=full,
        test_batches=lambda: data.eval_batches(
            test, d.batch_size, pad_to=pad, limit=config.run.eval_limit
        ),
        num_classes=test.num_classes,
        input_shape=(h, w, c),
        resize=size,
    )


def _streamed(config: Any, split: bool) -> WidthData:
    from jaxnas import data
    from jaxnas import data_imagenet as inet

    d = config.data
    base, k, class_seed = data.CLASS_SUBSETS.get(d.dataset, (d.dataset, 0, 0))
    data_dir = d.data_dir or None
    workers = min(16, os.cpu_count() or 1)
    train: Any = inet.ImageNetSource(base, "train", data_dir=data_dir)
    test: Any = inet.ImageNetSource(base, "validation", data_dir=data_dir)
    info: dict[str, Any] = {}
    if k:
        classes = inet.draw_classes(train.num_classes, k, class_seed)
        names = inet.class_names(train)
        subsets = []
        for src in (train, test):
            cache = label_cache_path(base, src.split, len(src), data_dir)
            labels = inet.scan_labels(src, workers=workers, cache=cache)
            subsets.append(inet.class_subset(src, classes, labels))
        train, test = subsets
        info = dict(
            dataset=d.dataset,
            base=base,
            draw_seed=class_seed,
            labels=[int(c) for c in classes],
            wnids=None if names is None else [names[c] for c in classes],
            train_examples=len(train),
            test_examples=len(test),
        )
    if d.limit:
        train = inet.SubsetSource(train, np.arange(min(int(d.limit), len(train))))
    size = int(config.model.input_size) or 224
    ttf = inet.TrainTransform(size=size, flip=bool(d.flip))
    etf = inet.EvalTransform(size=size, resize=int(round(size * EVAL_RESIZE)))

    def loader(src, seed):
        return inet.ImageNetLoader(
            src, d.batch_size, seed=seed, train=True, workers=workers, transform=ttf
        )

    full = loader(train, config.seed)
    la, lp = full, None
    if split:
        a_idx, p_idx = data.bilevel_split(len(train), seed=config.seed, portion=d.portion)
        la, lp = (
            loader(inet.SubsetSource(train, idx), s)
            for idx, s in zip((a_idx, p_idx), _seeds(config.seed))
        )
    return WidthData(
        weights=la,
        arch=lp,
        full=full,
        test_batches=lambda: inet.eval_batches(
            test, d.batch_size, limit=config.run.eval_limit, workers=workers, transform=etf
        ),
        num_classes=test.num_classes,
        input_shape=(size, size, 3),
        info=info,
    )


def build_data(config: Any, split: bool) -> WidthData:
    """The loaders of ``config.data`` (module doc); ``split``: the two halves of
    Algorithm 3 (``weights`` = ``D_a``, ``arch`` = ``D_p``), else both the whole set.

    Raises:
      ValueError: unknown dataset, batch larger than a part, bad sizes.
      jaxnas.data.DatasetNotFoundError: the data are not on disk (how to get them).
    """
    from jaxnas import data

    d = config.data
    if d.dataset not in data.DATASETS:
        raise ValueError(f"unknown dataset {d.dataset!r}; known: {', '.join(data.DATASETS)}")
    if int(config.model.input_size) < 0:
        raise ValueError(f"model.input_size must be >= 0, got {config.model.input_size}")
    if d.dataset == "imagenet2012" or d.dataset in data.CLASS_SUBSETS:
        return _streamed(config, split)
    return _in_memory(config, split)
