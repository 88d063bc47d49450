"""Datasets, the bi-level split, augmentation and batching (host-side numpy, NHWC).

Everything here runs on the host in numpy; TensorFlow is never imported. Images are kept in
memory as ``uint8`` arrays of shape ``(N, H, W, C)`` and only turned into normalised ``float32``
batch by batch, so a CIFAR-sized training set costs ~150 MB rather than ~600 MB.

Sources:

* ``fashion_mnist``: the IDX files of Debian's ``dataset-fashion-mnist`` package (real data, no
  network), or ``tensorflow_datasets`` when asked for (``source="tfds"``).
* ``mnist``, ``cifar10``, ``cifar100``, ``imagenet2012``: ``tfds.data_source`` (random
  access, needs the dataset prepared in the ``array_record`` file format; nothing is ever
  downloaded here).
* ``digits``: scikit-learn's 8x8 DIGITS set, split 80/20 with a fixed seed.

Typical search use::

    train, valid, test = search_loaders("cifar10", batch_size=64, seed=0)
    for epoch in range(epochs):
        for (xw, yw), (xa, ya) in zip(train.epoch(epoch), valid.epoch(epoch)):
            ...
"""

from __future__ import annotations

import dataclasses
import gzip
import math
import os
import struct
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxnas.optional import MissingExtraError, require

__all__ = [
    "DATASETS",
    "NORMALIZATION",
    "CLASS_SUBSETS",
    "ArrayDataset",
    "Augment",
    "DatasetCorruptError",
    "DatasetNotFoundError",
    "Loader",
    "augment_batch",
    "bilevel_split",
    "eval_batches",
    "load",
    "mean_std",
    "normalize",
    "search_loaders",
    "tfds_how_to",
    "to_device",
]

DATASETS: tuple[str, ...] = (
    "fashion_mnist",
    "mnist",
    "cifar10",
    "cifar100",
    "imagenet2012",
    "imagenet20",
    "digits",
)

#: Class subsets of a streamed dataset: name -> (base dataset, classes, draw seed).
#: ``imagenet20`` is the thesis's ImageNet-20 (F. Xue 2022, Sec. 4.2.2: 20 random classes,
#: ~26k train / 1k val images); its classes are not published, so they are drawn here
#: with a fixed seed (:func:`jaxnas.data_imagenet.draw_classes`), like DIGITS' split.
CLASS_SUBSETS: dict[str, tuple[str, int, int]] = {"imagenet20": ("imagenet2012", 20, 0)}

#: Per-channel (mean, std) in [0, 1] pixel units, computed on each training set.
NORMALIZATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    # DARTS, cnn/utils.py (_data_transforms_cifar10).
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "mnist": ((0.1307,), (0.3081,)),  # torchvision's MNIST example
    "imagenet2012": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "imagenet20": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    # Our 80/20 "train" split of sklearn's DIGITS after scaling 0..16 -> 0..255 (uint8);
    # tests/test_data.py recomputes these.
    "digits": ((0.3055,), (0.3759,)),
}

_NUM_CLASSES: dict[str, int] = {
    "fashion_mnist": 10,
    "mnist": 10,
    "cifar10": 10,
    "cifar100": 100,
    "imagenet2012": 1000,
    "imagenet20": 20,
    "digits": 10,
}

FMNIST_DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
FMNIST_ENV_VAR = "JAXNAS_FMNIST_DIR"
_FMNIST_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_DIGITS_SPLIT_SEED = 0
_DIGITS_TRAIN_PORTION = 0.8


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is not available locally; the message (one line) says how to get it."""


class DatasetCorruptError(DatasetNotFoundError):
    """A dataset file is there but unreadable (truncated, not gzip, not IDX); the message
    (one line) names the file and how to get a good copy. A :class:`DatasetNotFoundError`
    too: no usable copy of the data is on disk."""


@dataclasses.dataclass(frozen=True)
class ArrayDataset:
    """An in-memory labelled image dataset.

    Attributes:
      images: ``uint8`` array of shape ``(N, H, W, C)``.
      labels: ``int32`` array of shape ``(N,)`` with values in ``[0, num_classes)``.
      num_classes: number of classes.
      name: dataset name (a key of ``NORMALIZATION``).
    """

    images: np.ndarray
    labels: np.ndarray
    num_classes: int
    name: str

    def __len__(self) -> int:
        """Number of examples."""
        return int(self.labels.shape[0])


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def load(
    name: str,
    split: str = "train",
    *,
    data_dir: str | None = None,
    limit: int | None = None,
    source: str = "auto",
) -> ArrayDataset:
    """Load a dataset split into memory.

    Args:
      name: one of ``DATASETS``.
      split: ``"train"`` or ``"test"`` (tfds-backed datasets also accept any tfds split string,
        e.g. ``"train[:10%]"`` or imagenet's ``"validation"``).
      data_dir: for ``fashion_mnist`` read locally, the folder holding the IDX files (default:
        ``$JAXNAS_FMNIST_DIR``, else ``/usr/share/datasets/fashion-mnist``); for tfds-backed
        datasets, the tfds data dir (default: tfds' own, ``~/tensorflow_datasets``). Ignored
        for ``digits``.
      limit: keep only the first ``limit`` examples (for tiny configs and tests).
      source: ``fashion_mnist`` only: ``"local"`` (IDX files), ``"tfds"``, or ``"auto"`` (the
        IDX files when present, else a prepared tfds copy).

    Returns:
      An ``ArrayDataset`` with ``uint8`` NHWC images and ``int32`` labels.

    Raises:
      ValueError: unknown ``name``/``source``/``split``, or negative ``limit``.
      DatasetNotFoundError: the data is not on disk; the message says how to get it.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    if source not in ("auto", "local", "tfds"):
        raise ValueError(f"source must be 'auto', 'local' or 'tfds', got {source!r}")
    native = {"fashion_mnist": ("local", "tfds"), "digits": ("local",)}.get(name, ("tfds",))
    if source != "auto" and source not in native:
        raise ValueError(f"source={source!r} is not available for {name!r}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")

    if name in CLASS_SUBSETS:
        raise ValueError(
            f"{name} is a class subset of {CLASS_SUBSETS[name][0]} and is streamed, not loaded "
            "into memory: use jaxnas.width.data (jaxnas compress) or jaxnas.data_imagenet"
        )
    if name == "digits":
        return _load_digits(split, limit)
    if name == "fashion_mnist":
        return _load_fashion_mnist(split, data_dir, limit, source)
    return _load_tfds(name, split, data_dir, limit)


def _fmnist_dir(data_dir: str | None) -> Path:
    if data_dir is not None:
        return Path(data_dir)
    return Path(os.environ.get(FMNIST_ENV_VAR) or FMNIST_DEFAULT_DIR)


def _find_idx(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def _read_idx(path: Path, expected_ndim: int, limit: int | None, how_to: str = "") -> np.ndarray:
    """Read an unsigned-byte IDX file (optionally gzipped), stopping after ``limit`` items.

    Raises:
      DatasetCorruptError: the file is truncated, not gzip or not an IDX file of
        ``expected_ndim`` dimensions (the message names it and appends ``how_to``).
    """

    def corrupt(why: str) -> DatasetCorruptError:
        return DatasetCorruptError(
            f"{path} is corrupt ({why}): delete it and get a good copy{how_to}"
        )

    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            header = f.read(4)
            if len(header) != 4 or header[:3] != b"\x00\x00\x08" or header[3] != expected_ndim:
                raise corrupt(f"not a {expected_ndim}-d unsigned-byte IDX file")
            raw_dims = f.read(4 * expected_ndim)
            if len(raw_dims) != 4 * expected_ndim:
                raise corrupt("truncated in its header")
            dims = struct.unpack(f">{expected_ndim}I", raw_dims)
            n = dims[0] if limit is None else min(dims[0], limit)
            item = math.prod(dims[1:])
            data = f.read(n * item)
    except DatasetCorruptError:
        raise
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
        raise corrupt(" ".join(str(e).split()) or type(e).__name__) from None
    if len(data) != n * item:
        raise corrupt(f"truncated: {len(data)} of {n * item} bytes")
    return np.frombuffer(data, dtype=np.uint8).reshape((n, *dims[1:]))


def _load_fashion_mnist(
    split: str, data_dir: str | None, limit: int | None, source: str
) -> ArrayDataset:
    if source == "tfds":
        return _load_tfds("fashion_mnist", split, data_dir, limit)
    if split not in _FMNIST_FILES:
        raise ValueError(f"fashion_mnist split must be 'train' or 'test', got {split!r}")
    folder = _fmnist_dir(data_dir)
    image_stem, label_stem = _FMNIST_FILES[split]
    image_path, label_path = _find_idx(folder, image_stem), _find_idx(folder, label_stem)
    if image_path is None or label_path is None:
        if source == "auto" and _tfds_prepared("fashion_mnist", data_dir):
            return _load_tfds("fashion_mnist", split, data_dir, limit)
        missing = image_stem if image_path is None else label_stem
        raise DatasetNotFoundError(
            f"Fashion-MNIST file {missing}.gz not found in {folder}: run "
            f"`apt-get install dataset-fashion-mnist` (installs {FMNIST_DEFAULT_DIR}), or point "
            f"data_dir / ${FMNIST_ENV_VAR} at a folder with the IDX files, or use source='tfds'"
        )
    how_to = (
        f" (`apt-get install --reinstall dataset-fashion-mnist` restores {FMNIST_DEFAULT_DIR}), "
        f"or point data_dir / ${FMNIST_ENV_VAR} at a folder with good IDX files"
    )
    images = _read_idx(image_path, 3, limit, how_to)[..., None]
    labels = _read_idx(label_path, 1, limit, how_to).astype(np.int32)
    if images.shape[0] != labels.shape[0]:
        raise DatasetCorruptError(
            f"{image_path} holds {images.shape[0]} images but {label_path} {labels.shape[0]} "
            f"labels: get good copies of both{how_to}"
        )
    return ArrayDataset(images=images, labels=labels, num_classes=10, name="fashion_mnist")


def _load_digits(split: str, limit: int | None) -> ArrayDataset:
    try:
        load_digits = require("sklearn.datasets", "the DIGITS dataset").load_digits
    except MissingExtraError as e:
        raise DatasetNotFoundError(str(e)) from None

    if split not in ("train", "test"):
        raise ValueError(f"digits split must be 'train' or 'test', got {split!r}")
    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    labels = bunch.target.astype(np.int32)
    train_idx, test_idx = bilevel_split(
        len(labels), seed=_DIGITS_SPLIT_SEED, portion=_DIGITS_TRAIN_PORTION
    )
    idx = train_idx if split == "train" else test_idx
    if limit is not None:
        idx = idx[:limit]
    return ArrayDataset(images=images[idx], labels=labels[idx], num_classes=10, name="digits")


def tfds_how_to(name: str, builder_dir: str) -> str:
    """How to prepare the tfds dataset ``name`` (for the error of a missing one)."""
    build = f"`tfds build {name} --file_format=array_record --data_dir=<data_dir>`"
    if name == "imagenet2012":
        return (
            "download ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar from image-net.org "
            f"into <data_dir>/downloads/manual, then run {build} (looked in {builder_dir})"
        )
    return f"prepare it with {build} (looked in {builder_dir}); nothing is downloaded here"


def _tfds_prepared(name: str, data_dir: str | None) -> bool:
    try:
        tfds = require("tensorflow_datasets", name)
        return bool(tfds.builder(name, data_dir=data_dir).is_prepared())
    except Exception:  # any failure means "not usable"
        return False


def _load_tfds(name: str, split: str, data_dir: str | None, limit: int | None) -> ArrayDataset:
    try:
        tfds = require("tensorflow_datasets", name)
    except MissingExtraError as e:
        raise DatasetNotFoundError(str(e)) from None
    try:
        src = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except (KeyError, NotImplementedError, FileNotFoundError, AssertionError) as e:
        try:
            builder = tfds.builder(name, data_dir=data_dir)
            builder_dir, prepared = str(builder.data_dir), builder.is_prepared()
        except Exception:
            builder_dir, prepared = str(data_dir or "~/tensorflow_datasets"), False
        if prepared and isinstance(e, NotImplementedError):
            raise DatasetNotFoundError(
                f"{name} in {builder_dir} is not in a random-access format: rebuild it with "
                f"`tfds build {name} --file_format=array_record --data_dir=<data_dir>`"
            ) from e
        if prepared:
            raise
        raise DatasetNotFoundError(
            f"{name} ({split}) is not prepared for tfds: {tfds_how_to(name, builder_dir)}"
        ) from e
    n = len(src) if limit is None else min(len(src), limit)
    return _stack_records(name, src, n)


def _stack_records(name: str, src: Any, n: int, chunk: int = 4096) -> ArrayDataset:
    images: list[np.ndarray] = []
    labels = np.empty((n,), dtype=np.int32)
    shape: tuple[int, ...] | None = None
    batched = hasattr(src, "__getitems__")
    for start in range(0, n, chunk):
        keys = list(range(start, min(n, start + chunk)))
        records: Sequence[dict[str, Any]] | None = None
        if batched:
            try:
                records = src.__getitems__(keys)
            except TypeError:
                # tfds.testing.mock_data (tfds 4.9.x) installs a broken __getitems__;
                # per-item reads work everywhere (and re-raise any genuine error).
                batched = False
        if records is None:
            records = [src[k] for k in keys]
        for k, rec in zip(keys, records):
            img = np.asarray(rec["image"], dtype=np.uint8)
            if img.ndim == 2:
                img = img[..., None]
            if shape is None:
                shape = img.shape
            elif img.shape != shape:
                raise ValueError(
                    f"{name}: images have different sizes ({shape} vs {img.shape}); resize or "
                    "crop them to a fixed size first (e.g. a tfds *_resized variant)"
                )
            images.append(img)
            labels[k] = int(rec["label"])
    stacked = np.stack(images) if images else np.zeros((0, 0, 0, 0), np.uint8)
    return ArrayDataset(images=stacked, labels=labels, num_classes=_NUM_CLASSES[name], name=name)


# --------------------------------------------------------------------------------------------
# Bi-level split, normalisation, augmentation
# --------------------------------------------------------------------------------------------


def bilevel_split(n: int, *, seed: int, portion: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(n)`` into DARTS' two halves: weights ("train") and architecture ("valid").

    DARTS (``train_search.py``) takes the first ``floor(portion * n)`` indices of the training
    set for the weights and the rest for the architecture, without permuting. We first permute
    ``range(n)`` with ``np.random.default_rng(seed)`` and then cut, so the halves are random but
    a pure function of ``(n, seed, portion)``.

    Args:
      n: number of examples.
      seed: permutation seed.
      portion: fraction that goes to the first (weights) half, in ``[0, 1]``.

    Returns:
      ``(train_idx, valid_idx)``: disjoint ``int64`` index arrays of sizes
      ``floor(portion * n)`` and ``n - floor(portion * n)`` that together cover ``range(n)``.
    """
    if not 0.0 <= portion <= 1.0:
        raise ValueError(f"portion must be in [0, 1], got {portion}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    perm = np.random.default_rng(seed).permutation(n)
    cut = int(math.floor(portion * n))
    return perm[:cut], perm[cut:]


def mean_std(dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """The per-channel ``(mean, std)`` of :data:`NORMALIZATION` as float32 arrays."""
    if dataset not in NORMALIZATION:
        raise ValueError(f"no normalisation for {dataset!r}; known: {', '.join(NORMALIZATION)}")
    mean, std = NORMALIZATION[dataset]
    return np.asarray(mean, np.float32), np.asarray(std, np.float32)


def normalize(images_uint8: np.ndarray, dataset: str) -> np.ndarray:
    """Map ``uint8`` NHWC images to ``float32`` ``(x / 255 - mean) / std`` per channel.

    Args:
      images_uint8: ``(..., H, W, C)`` array of pixel values in ``[0, 255]``.
      dataset: a key of ``NORMALIZATION``.

    Returns:
      ``float32`` array of the same shape.
    """
    mean, std = mean_std(dataset)
    if images_uint8.shape[-1] != mean.shape[0]:
        raise ValueError(
            f"{dataset} normalisation has {mean.shape[0]} channels, "
            f"images have {images_uint8.shape[-1]}"
        )
    x = images_uint8.astype(np.float32) * np.float32(1.0 / 255.0)
    return (x - mean) / std


@dataclasses.dataclass(frozen=True)
class Augment:
    """Training-time augmentation (applied by ``augment_batch`` in this order).

    Attributes:
      crop_padding: random crop of the original size after padding each side by this many
        pixels (DARTS: 4 on CIFAR); 0 disables.
      flip: random horizontal flip with probability 1/2.
      cutout: side length of the square hole of DARTS' ``utils.Cutout`` (applied after
        normalisation, sets zeros); 0 disables.
    """

    crop_padding: int = 0
    flip: bool = False
    cutout: int = 0


NO_AUGMENT = Augment()


def augment_batch(
    images: np.ndarray,
    rng: np.random.Generator,
    aug: Augment,
    *,
    fill: float | np.ndarray = 0.0,
    rows: slice | None = None,
    batch: int | None = None,
) -> np.ndarray:
    """Randomly crop, flip and cut out a batch of normalised images (vectorised numpy).

    Per image, in this order (DARTS' order; the random draws are made in this order too):

    1. crop: pad by ``aug.crop_padding`` with ``fill`` and take a crop of the original size at
       a uniform offset in ``[0, 2 * crop_padding]`` along each axis;
    2. flip: mirror left-right with probability 1/2;
    3. cutout: pick a centre ``(y, x)`` uniform over the image and set the square
       ``[y - L//2, y + L//2) x [x - L//2, x + L//2)`` (clipped at the borders) to 0 in all
       channels, as DARTS' ``Cutout`` does on normalised tensors.

    Args:
      images: ``float32`` ``(B, H, W, C)``, already normalised.
      rng: source of randomness (consumed only by the enabled steps).
      aug: which steps to apply; ``Augment()`` returns ``images`` unchanged.
      fill: value of the crop padding, a scalar or one value per channel. ``Loader`` passes
        the normalised value of a black pixel, ``-mean / std``, which equals zero-padding the
        ``uint8`` image before normalising (torchvision's ``RandomCrop(32, padding=4)`` in
        DARTS).
      rows, batch: ``images`` are the rows ``rows`` of a batch of ``batch`` images: the
        draws are made for the whole batch (so ``rng`` moves on as it would) and each
        row gets the crop, flip and cutout it gets in the whole batch (one process of a
        multi-host run augments only its own rows).

    Returns:
      An array of the same shape and dtype.
    """
    if images.ndim != 4:
        raise ValueError(f"expected (B, H, W, C) images, got shape {images.shape}")
    b, h, w, c = images.shape
    whole = b if batch is None else int(batch)
    mine = slice(0, b) if rows is None else rows
    if len(range(whole)[mine]) != b:
        raise ValueError(f"rows {mine} of a batch of {whole} are not the {b} images given")

    def draw(values: np.ndarray) -> np.ndarray:  # the whole batch's draws, our rows
        return values[mine]

    out = images
    if aug.crop_padding > 0:
        p = aug.crop_padding
        padded = np.empty((b, h + 2 * p, w + 2 * p, c), dtype=images.dtype)
        padded[...] = np.asarray(fill, dtype=images.dtype)
        padded[:, p : p + h, p : p + w] = images
        oy = draw(rng.integers(0, 2 * p + 1, size=whole))
        ox = draw(rng.integers(0, 2 * p + 1, size=whole))
        iy = oy[:, None, None] + np.arange(h)[None, :, None]
        ix = ox[:, None, None] + np.arange(w)[None, None, :]
        out = padded[np.arange(b)[:, None, None], iy, ix]
    if aug.flip:
        mirror = draw(rng.random(whole)) < 0.5
        out = np.where(mirror[:, None, None, None], out[:, :, ::-1], out)
    if aug.cutout > 0:
        half = aug.cutout // 2
        cy = draw(rng.integers(0, h, size=whole))
        cx = draw(rng.integers(0, w, size=whole))
        ys, xs = np.arange(h), np.arange(w)
        in_y = (ys[None, :] >= (cy - half)[:, None]) & (ys[None, :] < (cy + half)[:, None])
        in_x = (xs[None, :] >= (cx - half)[:, None]) & (xs[None, :] < (cx + half)[:, None])
        hole = in_y[:, :, None, None] & in_x[:, None, :, None]
        out = np.where(hole, np.zeros((), dtype=images.dtype), out)
    return out


# --------------------------------------------------------------------------------------------
# Batching
# --------------------------------------------------------------------------------------------


class Loader:
    """Deterministic epoch iterator over an in-memory ArrayDataset subset.

    Each batch is gathered from the ``uint8`` images, normalised with ``NORMALIZATION[ds.name]``,
    optionally padded to ``pad_to x pad_to``, then augmented. The order and all augmentation
    randomness of epoch ``e`` come from ``np.random.default_rng([seed, e])`` only, so a run
    resumed at epoch ``k`` sees exactly the batches an uninterrupted run would, and calling
    ``epoch(e)`` twice gives identical batches.

    Padding (both ``pad_to`` and the crop padding of ``augment``) uses the normalised value of
    a black pixel (``-mean / std``), i.e. it is the same as zero-padding the ``uint8`` images
    before normalisation. ``pad_to`` pads symmetrically (an odd remainder goes bottom/right).

    With ``rows`` (one process of a multi-host run: ``jaxnas.parallel.local_rows``) each
    batch holds only those rows of the global batch, exactly as they are in it: the
    order and the augmentation draws are the global batch's, the gathering,
    normalisation and augmentation work only this process's.
    """

    def __init__(
        self,
        ds: ArrayDataset,
        indices: np.ndarray | None,
        batch_size: int,
        *,
        seed: int,
        shuffle: bool = True,
        augment: Augment = NO_AUGMENT,
        drop_last: bool = True,
        pad_to: int | None = None,
        rows: slice | None = None,
    ) -> None:
        """Set up the loader.

        Args:
          ds: the dataset.
          indices: which examples of ``ds`` to iterate over (``None``: all).
          batch_size: examples per batch.
          seed: base seed; epoch ``e`` uses ``np.random.default_rng([seed, e])``.
          shuffle: permute the indices every epoch (else keep their given order).
          augment: augmentation applied to every batch.
          drop_last: drop the final incomplete batch (keeps batch shapes static for ``jit``).
          pad_to: zero-pad images spatially to ``pad_to x pad_to`` (e.g. 28 -> 32).
          rows: yield only these rows of each ``batch_size`` batch (class docstring);
            needs ``drop_last`` (every batch whole).
        """
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if rows is not None and (not drop_last or not len(range(batch_size)[rows])):
            raise ValueError(f"rows {rows} need drop_last and rows within batch_size {batch_size}")
        self.rows = rows
        self.ds = ds
        self.indices = (
            np.arange(len(ds)) if indices is None else np.asarray(indices, dtype=np.int64)
        )
        if self.indices.ndim != 1:
            raise ValueError("indices must be a 1-d array")
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.augment = augment
        self.drop_last = drop_last
        self.pad_to = pad_to
        if drop_last and len(self.indices) < batch_size:
            raise ValueError(
                f"batch_size {batch_size} exceeds the {len(self.indices)} examples of this "
                "loader and drop_last=True: an epoch would have no batches"
            )
        h, w = ds.images.shape[1:3]
        if pad_to is not None and (pad_to < h or pad_to < w):
            raise ValueError(f"pad_to={pad_to} is smaller than the images ({h}x{w})")
        mean, std = mean_std(ds.name)
        self._black = -mean / std

    def __len__(self) -> int:
        """Number of batches per epoch."""
        n = len(self.indices)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _pad(self, x: np.ndarray) -> np.ndarray:
        if self.pad_to is None:
            return x
        b, h, w, c = x.shape
        top, left = (self.pad_to - h) // 2, (self.pad_to - w) // 2
        out = np.empty((b, self.pad_to, self.pad_to, c), dtype=x.dtype)
        out[...] = self._black
        out[:, top : top + h, left : left + w] = x
        return out

    def epoch(self, epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield the batches of one epoch.

        Args:
          epoch: epoch number; together with the seed it fixes order and augmentation.

        Yields:
          ``(images, labels)``: ``float32`` ``(B, H, W, C)`` normalised and augmented images
          and ``int32`` ``(B,)`` labels.
        """
        rng = np.random.default_rng([self.seed, int(epoch)])
        order = rng.permutation(self.indices) if self.shuffle else self.indices
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            mine = idx if self.rows is None else idx[self.rows]
            x = self._pad(normalize(self.ds.images[mine], self.ds.name))
            x = augment_batch(
                x, rng, self.augment, fill=self._black, rows=self.rows, batch=len(idx)
            )
            yield x, self.ds.labels[mine].astype(np.int32, copy=False)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Iterate over epoch 0 (use ``epoch(e)`` in training loops)."""
        return self.epoch(0)


def eval_batches(
    dataset: Any, batch_size: int, *, pad_to: int | None = None, limit: int = 0
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Every example of ``dataset`` (the first ``limit``; 0: all) once, in order, as
    ``(images, labels, mask)`` batches of exactly ``batch_size`` rows: the last batch is
    padded with masked rows, so one compiled eval step sees every example."""
    n = len(dataset) if not limit else min(limit, len(dataset))
    loader = Loader(dataset, np.arange(n), 1, seed=0, shuffle=False, drop_last=False, pad_to=pad_to)
    for start in range(0, n, batch_size):
        idx = np.arange(start, min(start + batch_size, n))
        x = loader._pad(normalize(dataset.images[idx], dataset.name))
        y = dataset.labels[idx].astype(np.int32)
        mask = np.ones(len(idx), np.float32)
        if len(idx) < batch_size:
            extra = batch_size - len(idx)
            x = np.concatenate([x, np.zeros((extra, *x.shape[1:]), x.dtype)])
            y = np.concatenate([y, np.zeros(extra, np.int32)])
            mask = np.concatenate([mask, np.zeros(extra, np.float32)])
        yield x, y, mask


def to_device(batch: Any, sharding: Any = None) -> Any:
    """Put a batch (any pytree of arrays) on the accelerator with ``jax.device_put``.

    Args:
      batch: e.g. the ``(images, labels)`` tuple a ``Loader`` yields.
      sharding: optional ``jax.sharding.Sharding`` (or pytree of them); default device if None.

    Returns:
      The same pytree of ``jax.Array``.
    """
    import jax

    return jax.device_put(batch, sharding)


#: Default search-phase augmentation per dataset (see ``search_loaders``).
SEARCH_AUGMENT: dict[str, Augment] = {
    "cifar10": Augment(crop_padding=4, flip=True),
    "cifar100": Augment(crop_padding=4, flip=True),
    "fashion_mnist": Augment(crop_padding=2, flip=True),
    "mnist": Augment(),  # digits are not mirror-symmetric
    "imagenet2012": Augment(flip=True),
    "imagenet20": Augment(flip=True),
    "digits": Augment(),
}


def search_loaders(
    name: str,
    *,
    batch_size: int,
    seed: int,
    portion: float = 0.5,
    limit: int | None = None,
    augment: Augment | None = None,
    data_dir: str | None = None,
    pad_to: int | None = None,
    rows: slice | None = None,
) -> tuple[Loader, Loader, ArrayDataset]:
    """Build DARTS' search-phase data: the two halves of the training set, and the test set.

    Loads ``name``'s train split (first ``limit`` examples), splits it with
    ``bilevel_split(n, seed=seed, portion=portion)`` and wraps each half in a shuffling
    ``Loader`` with ``drop_last=True``. The two loaders get different seeds derived from
    ``seed``. As in DARTS, both halves use the same (training) augmentation.

    The default augmentation (``SEARCH_AUGMENT``): CIFAR crop 4 + flip (DARTS'
    ``train_search.py``, no cutout); Fashion-MNIST crop 2 + flip (clothes are roughly
    left-right symmetric); ImageNet flip only (cropping/resizing is the caller's business);
    DIGITS none (8x8 digits are not mirror-symmetric and too small to crop).

    Args:
      name: one of ``DATASETS``.
      batch_size: batch size of both loaders.
      seed: seeds the split and (through derived seeds) both loaders.
      portion: fraction of the training set used for the weights.
      limit: load only the first ``limit`` examples of each split.
      augment: override the default augmentation.
      data_dir: passed to ``load``.
      pad_to: passed to both loaders (e.g. 32 to run CIFAR-shaped networks on 28x28 images).
      rows: passed to both loaders: only these rows of each batch (one process's).

    Returns:
      ``(train_loader, valid_loader, test_dataset)``.
    """
    train = load(name, "train", data_dir=data_dir, limit=limit)
    test = load(
        name, "test" if name != "imagenet2012" else "validation", data_dir=data_dir, limit=limit
    )
    train_idx, valid_idx = bilevel_split(len(train), seed=seed, portion=portion)
    aug = SEARCH_AUGMENT[name] if augment is None else augment
    w_seed, a_seed = (int(s) for s in np.random.SeedSequence(seed).generate_state(2))
    loaders = tuple(
        Loader(
            train, idx, batch_size, seed=s, augment=aug, drop_last=True, pad_to=pad_to, rows=rows
        )
        for idx, s in ((train_idx, w_seed), (valid_idx, a_seed))
    )
    return loaders[0], loaders[1], test
