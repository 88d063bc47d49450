"""ImageNet input pipeline for retraining: random-access tfds records, DARTS' transforms, batching.

``jaxnas.data`` keeps whole datasets in memory as one ``(N, H, W, C)`` array, which cannot hold
ImageNet (1.28M JPEGs of varying size). This module reads records one by one from a tfds
random-access data source (``tfds.data_source``, the ``array_record`` file format), decodes and
augments each image on the host in numpy/PIL, and batches them in a thread pool.

The transforms are those of DARTS' ``train_imagenet.py`` (torchvision, PIL backend)::

    train: RandomResizedCrop(224) -> RandomHorizontalFlip() ->
           ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.2) ->
           ToTensor() -> Normalize(mean, std)
    valid: Resize(256) -> CenterCrop(224) -> ToTensor() -> Normalize(mean, std)

re-implemented draw for draw with a ``numpy.random.Generator`` in place of torch's RNG (so the
numbers differ from torchvision's, the distributions do not), on PIL images with the same PIL
calls torchvision makes (so a transform with given parameters gives torchvision's pixels).

Typical use::

    src = ImageNetSource("imagenet2012", "train", data_dir=...)
    loader = ImageNetLoader(src, 256, seed=0, train=True, workers=16)
    for epoch in range(epochs):
        for images, labels in loader.epoch(epoch):   # (256, 224, 224, 3) float32, (256,) int32
            ...
    val = ImageNetSource("imagenet2012", "validation", data_dir=...)
    for images, labels, mask in eval_batches(val, 256):
        ...

Determinism: epoch ``e`` of a training loader permutes the examples with
``np.random.default_rng([seed, e])`` (as ``jaxnas.data.Loader`` does), and the augmentation of
the example at position ``p`` of that permutation draws only from
``np.random.default_rng([seed, e, AUGMENT_STREAM, p])``. Batches are therefore a pure function
of ``(source, seed, e)``: independent of the number of worker threads, of the order in which
threads finish, and of which rows of each batch a process decodes (``rows``).
"""

from __future__ import annotations

import collections
import concurrent.futures
import copy
import dataclasses
import io
import math
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from jaxnas.data import NORMALIZATION, DatasetNotFoundError, mean_std, normalize, tfds_how_to
from jaxnas.optional import MissingExtraError, require

# Pillow is the [data] extra; this module is imported only where ImageNet is loaded.
Image = require("PIL.Image", "the ImageNet loader")
ImageEnhance = require("PIL.ImageEnhance", "the ImageNet loader")

__all__ = [
    "AUGMENT_STREAM",
    "EvalTransform",
    "ImageNetLoader",
    "ImageNetSource",
    "SubsetSource",
    "TrainTransform",
    "adjust_hue",
    "center_crop",
    "center_crop_box",
    "class_names",
    "class_subset",
    "color_jitter",
    "draw_classes",
    "eval_batches",
    "eval_transform",
    "label_view",
    "random_resized_crop",
    "random_resized_crop_box",
    "resize_shorter",
    "resized_shorter_size",
    "scan_labels",
    "to_rgb",
    "train_transform",
]

#: Third word of the per-example augmentation seed ``[seed, epoch, AUGMENT_STREAM, position]``
#: (keeps these streams apart from the epoch's permutation stream ``[seed, epoch]``).
AUGMENT_STREAM = 0x1A6E


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


def to_rgb(value: Any) -> Image.Image:
    """Turn a record's image field into an RGB PIL image.

    Handles both forms tfds may hand out: an encoded image (``bytes``, ``np.bytes_``,
    ``memoryview``, a 0-d object/bytes array; decoded with PIL and converted with
    ``.convert("RGB")``, as torchvision's ``pil_loader`` does for ImageFolder, so grayscale and
    CMYK JPEGs work), or a decoded ``uint8`` array of shape ``(H, W)``, ``(H, W, 1)``,
    ``(H, W, 3)`` or ``(H, W, 4)`` (gray is replicated, alpha is dropped).

    Args:
      value: the image field of one record.

    Returns:
      A PIL image in mode ``"RGB"`` (``size == (W, H)``).
    """
    if isinstance(value, np.ndarray) and value.dtype.kind in ("O", "S") and value.ndim == 0:
        value = value.item()
    if isinstance(value, (bytes, bytearray, memoryview)):
        with Image.open(io.BytesIO(bytes(value))) as im:
            return im.convert("RGB")
    if isinstance(value, Image.Image):
        return value if value.mode == "RGB" else value.convert("RGB")
    arr = np.asarray(value)
    if arr.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image or encoded bytes, got dtype {arr.dtype}")
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        return Image.fromarray(np.ascontiguousarray(arr), "L").convert("RGB")
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        mode = "RGB" if arr.shape[-1] == 3 else "RGBA"
        im = Image.fromarray(np.ascontiguousarray(arr), mode)
        return im if mode == "RGB" else im.convert("RGB")
    raise ValueError(f"expected an (H, W[, 1|3|4]) image, got shape {arr.shape}")


class ImageNetSource:
    """Random access to a tfds image-classification split whose images may differ in size.

    Wraps ``tfds.data_source(name, split=split, data_dir=data_dir, download=False)`` (needs the
    dataset prepared in the ``array_record`` format; nothing is downloaded). Records are read
    lazily, one per call, so this is safe for ImageNet's 1.28M images. Reads may happen from
    several threads at once (``ImageNetLoader`` does).

    Attributes:
      name: the tfds dataset name.
      split: the split string.
      num_classes: number of classes (from the label feature).
      normalization: the key of ``jaxnas.data.NORMALIZATION`` used to normalise its images.
    """

    def __init__(
        self,
        name: str = "imagenet2012",
        split: str = "train",
        *,
        data_dir: str | None = None,
        limit: int | None = None,
        normalization: str | None = None,
        image_key: str = "image",
        label_key: str = "label",
    ) -> None:
        """Open a split.

        Args:
          name: a tfds dataset name (``"imagenet2012"``, or any image-classification dataset).
          split: a tfds split string (``"train"``, ``"validation"``, ``"train[:1%]"``, ...).
          data_dir: the tfds data dir (default: tfds' own).
          limit: expose only the first ``limit`` records.
          normalization: a key of ``NORMALIZATION`` (default: ``name`` if it is one, else
            ``"imagenet2012"``).
          image_key, label_key: the record fields holding the image and the integer label.

        Raises:
          DatasetNotFoundError: the split is not prepared in ``data_dir``; the one-line message
            says how to prepare it.
          ValueError: tfds knows no dataset ``name``, or ``limit`` is negative.
        """
        try:
            tfds = require("tensorflow_datasets", name)
        except MissingExtraError as e:
            raise DatasetNotFoundError(str(e)) from None
        try:
            src = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
        except tfds.core.registered.DatasetNotFoundError as e:
            raise ValueError(f"tensorflow_datasets knows no dataset {name!r}") from e
        except (KeyError, NotImplementedError, FileNotFoundError, AssertionError) as e:
            err = _not_found(tfds, name, split, data_dir, e)
            if err is e:
                raise
            raise err from e
        try:
            num_classes = int(src.dataset_info.features[label_key].num_classes)
        except (AttributeError, KeyError, TypeError) as e:
            raise ValueError(f"{name}: no class label feature {label_key!r}") from e
        self._init(src, name, split, num_classes, limit, normalization, image_key, label_key)

    @classmethod
    def from_data_source(
        cls,
        data_source: Sequence[dict[str, Any]],
        *,
        num_classes: int,
        name: str = "imagenet2012",
        split: str = "train",
        limit: int | None = None,
        normalization: str | None = None,
        image_key: str = "image",
        label_key: str = "label",
    ) -> ImageNetSource:
        """Wrap any random-access sequence of records (e.g. a list of dicts, for tests).

        Args:
          data_source: supports ``len`` and ``[i]``; record ``i`` is a mapping with an image
            field (encoded bytes or a uint8 array, see ``to_rgb``) and an integer label field.
          num_classes: number of classes.
          name, split, limit, normalization, image_key, label_key: as for the constructor.
        """
        self = cls.__new__(cls)
        self._init(
            data_source, name, split, num_classes, limit, normalization, image_key, label_key
        )
        return self

    def _init(
        self,
        src: Any,
        name: str,
        split: str,
        num_classes: int,
        limit: int | None,
        normalization: str | None,
        image_key: str,
        label_key: str,
    ) -> None:
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        norm = normalization or (name if name in NORMALIZATION else "imagenet2012")
        mean, _ = mean_std(norm)
        if mean.shape[0] != 3:
            raise ValueError(f"normalisation {norm!r} is not for RGB images")
        self._src = src
        self.name = name
        self.split = split
        self.num_classes = int(num_classes)
        self.normalization = norm
        self._n = len(src) if limit is None else min(len(src), int(limit))
        self._image_key, self._label_key = image_key, label_key

    def __len__(self) -> int:
        """Number of records."""
        return self._n

    def _check(self, index: int) -> int:
        i = int(index)
        if not 0 <= i < self._n:
            raise IndexError(f"record {index} out of range [0, {self._n})")
        return i

    def read(self, index: int) -> tuple[Image.Image, int]:
        """Read and decode record ``index``: ``(RGB PIL image, label)``."""
        rec = self._src[self._check(index)]
        return to_rgb(rec[self._image_key]), int(rec[self._label_key])

    def image(self, index: int) -> np.ndarray:
        """Record ``index``'s image as a ``uint8`` ``(H, W, 3)`` RGB array."""
        return np.asarray(self.read(index)[0], dtype=np.uint8)

    def label(self, index: int) -> int:
        """Record ``index``'s label, in ``[0, num_classes)`` (reads the whole record)."""
        return int(self._src[self._check(index)][self._label_key])

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        """``(uint8 (H, W, 3) image, label)`` of record ``index``."""
        im, label = self.read(index)
        return np.asarray(im, dtype=np.uint8), label

    def __repr__(self) -> str:
        return (
            f"ImageNetSource({self.name!r}, {self.split!r}, n={self._n}, "
            f"num_classes={self.num_classes})"
        )


def _not_found(tfds: Any, name: str, split: str, data_dir: str | None, err: Exception) -> Exception:
    """The error to raise when ``tfds.data_source`` failed (mirrors ``jaxnas.data``)."""
    try:
        builder = tfds.builder(name, data_dir=data_dir)
        builder_dir, prepared = str(builder.data_dir), bool(builder.is_prepared())
    except Exception:  # any failure means "not usable"
        builder_dir, prepared = str(data_dir or "~/tensorflow_datasets"), False
    if prepared and isinstance(err, NotImplementedError):
        return DatasetNotFoundError(
            f"{name} in {builder_dir} is not in a random-access format: rebuild it with "
            f"`tfds build {name} --file_format=array_record --data_dir=<data_dir>`"
        )
    if prepared:
        return err
    return DatasetNotFoundError(
        f"{name} ({split}) is not prepared for tfds: {tfds_how_to(name, builder_dir)}"
    )


# --------------------------------------------------------------------------------------------
# Transforms (torchvision semantics, PIL backend)
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TrainTransform:
    """DARTS' ImageNet training transform (``train_imagenet.py``); the defaults are DARTS'.

    Attributes:
      size: output side (``RandomResizedCrop(size)``).
      scale: range of the crop area as a fraction of the image area.
      ratio: range of the crop aspect ratio ``w / h`` (sampled log-uniformly).
      flip: ``RandomHorizontalFlip(p=0.5)``.
      brightness, contrast, saturation, hue: ``ColorJitter`` strengths; 0 disables one
        (no draw is made for it, as in torchvision).
    """

    size: int = 224
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
    flip: bool = True
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.2


@dataclasses.dataclass(frozen=True)
class EvalTransform:
    """DARTS' ImageNet evaluation transform: ``Resize(resize)`` then ``CenterCrop(size)``.

    Attributes:
      size: output side.
      resize: the shorter side is resized to this first.
    """

    size: int = 224
    resize: int = 256


def random_resized_crop_box(
    height: int,
    width: int,
    rng: np.random.Generator,
    *,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
    attempts: int = 10,
) -> tuple[int, int, int, int]:
    """The crop of torchvision's ``RandomResizedCrop.get_params``.

    Up to ``attempts`` times: draw ``s ~ U(scale)`` and ``r = exp(U(log ratio))``, set
    ``w = round(sqrt(s * H * W * r))``, ``h = round(sqrt(s * H * W / r))``; if
    ``0 < w <= W`` and ``0 < h <= H``, draw ``top ~ U{0..H-h}``, ``left ~ U{0..W-w}`` and
    return. Otherwise fall back to a central crop: the whole image when its aspect ratio
    ``W / H`` lies in ``ratio``, else the largest central crop with the nearest bound of
    ``ratio`` (``h = round(W / ratio[0])`` for too tall, ``w = round(H * ratio[1])`` for too
    wide images), at ``((H - h) // 2, (W - w) // 2)``.

    Draws from ``rng``, in order: per attempt ``rng.uniform`` (scale) and ``rng.uniform``
    (log ratio), then on success ``rng.integers`` (top) and ``rng.integers`` (left).

    Args:
      height, width: image size ``H, W``.
      rng: source of randomness.
      scale: range of the crop area as a fraction of ``H * W``.
      ratio: range of the aspect ratio ``w / h``.
      attempts: tries before the fallback (torchvision: 10).

    Returns:
      ``(top, left, h, w)`` with ``0 <= top``, ``top + h <= H``, ``0 <= left``,
      ``left + w <= W``.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"empty image {height}x{width}")
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(attempts):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w = width
        h = int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        h = height
        w = int(round(h * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def random_resized_crop(
    img: Image.Image,
    rng: np.random.Generator,
    size: int,
    *,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
) -> Image.Image:
    """torchvision's ``RandomResizedCrop(size, scale, ratio)`` (bilinear) on a PIL image.

    Crops ``random_resized_crop_box`` and resizes it to ``size x size`` with
    ``PIL.Image.resize(..., BILINEAR)`` (``F.resized_crop``).
    """
    top, left, h, w = random_resized_crop_box(img.height, img.width, rng, scale=scale, ratio=ratio)
    return img.crop((left, top, left + w, top + h)).resize((size, size), Image.Resampling.BILINEAR)


def adjust_hue(img: Image.Image, hue_factor: float) -> Image.Image:
    """torchvision's ``adjust_hue`` (PIL backend): rotate the hue by ``hue_factor`` turns.

    Converts to PIL's 8-bit HSV, adds ``int(hue_factor * 255)`` to H modulo 256 and converts
    back. (torchvision adds ``np.array(hue_factor * 255).astype(np.uint8)``, whose cast of a
    negative float is the same truncate-then-wrap on x86; we spell it out.)

    Args:
      img: an RGB image.
      hue_factor: in ``[-0.5, 0.5]``.
    """
    if not -0.5 <= hue_factor <= 0.5:
        raise ValueError(f"hue_factor must be in [-0.5, 0.5], got {hue_factor}")
    h, s, v = img.convert("HSV").split()
    shift = np.uint8(int(hue_factor * 255) % 256)
    np_h = np.asarray(h, dtype=np.uint8) + shift  # wraps modulo 256
    return Image.merge("HSV", (Image.fromarray(np_h, "L"), s, v)).convert(img.mode)


def color_jitter(
    img: Image.Image,
    rng: np.random.Generator,
    brightness: float = 0.4,
    contrast: float = 0.4,
    saturation: float = 0.4,
    hue: float = 0.2,
) -> Image.Image:
    """torchvision's ``ColorJitter(brightness, contrast, saturation, hue)`` on a PIL image.

    Draws a random order of the four adjustments (``rng.permutation(4)``), then the factors of
    the enabled ones in the order brightness, contrast, saturation, hue:
    ``b, c, s ~ U(max(0, 1 - x), 1 + x)`` and ``h ~ U(-hue, hue)``; a strength of 0 disables
    its adjustment and makes no draw (torchvision sets it to ``None``). The adjustments, in the
    drawn order: ``ImageEnhance.Brightness(img).enhance(b)``, ``ImageEnhance.Contrast``,
    ``ImageEnhance.Color`` (saturation) and ``adjust_hue`` — the PIL calls of torchvision's
    ``F.adjust_*``.

    Returns:
      The adjusted image; ``img`` itself when all four strengths are 0.
    """
    strengths = {"brightness": brightness, "contrast": contrast, "saturation": saturation}
    for label, x in strengths.items():
        if x < 0:
            raise ValueError(f"{label} must be >= 0, got {x}")
    if not 0 <= hue <= 0.5:
        raise ValueError(f"hue must be in [0, 0.5], got {hue}")
    order = rng.permutation(4)

    def factor(x: float) -> float | None:
        return float(rng.uniform(max(0.0, 1.0 - x), 1.0 + x)) if x > 0 else None

    b, c, s = factor(brightness), factor(contrast), factor(saturation)
    h = float(rng.uniform(-hue, hue)) if hue > 0 else None
    for fn in order:
        if fn == 0 and b is not None:
            img = ImageEnhance.Brightness(img).enhance(b)
        elif fn == 1 and c is not None:
            img = ImageEnhance.Contrast(img).enhance(c)
        elif fn == 2 and s is not None:
            img = ImageEnhance.Color(img).enhance(s)
        elif fn == 3 and h is not None:
            img = adjust_hue(img, h)
    return img


def resized_shorter_size(height: int, width: int, size: int) -> tuple[int, int]:
    """Output ``(h, w)`` of torchvision's ``Resize(size)`` with an int ``size``.

    The shorter side becomes ``size`` and the longer ``int(size * long / short)`` (truncated).
    """
    if width <= height:
        return int(size * height / width), size
    return size, int(size * width / height)


def resize_shorter(img: Image.Image, size: int) -> Image.Image:
    """torchvision's ``Resize(size)`` (int ``size``, bilinear) on a PIL image.

    Resizes to ``resized_shorter_size``; returns ``img`` unchanged when it already has that
    size (as torchvision does).
    """
    h, w = resized_shorter_size(img.height, img.width, size)
    if (h, w) == (img.height, img.width):
        return img
    return img.resize((w, h), Image.Resampling.BILINEAR)


def center_crop_box(height: int, width: int, size: int) -> tuple[int, int]:
    """Top-left corner ``(top, left)`` of torchvision's ``CenterCrop(size)``.

    ``top = round((H - size) / 2)``, ``left = round((W - size) / 2)`` with Python's ``round``
    (half to even), as ``F.center_crop``. A side shorter than ``size`` is zero-padded first by
    ``(size - H) // 2`` before (the odd pixel after), so its offset is ``-((size - H) // 2)``.
    """

    def offset(n: int) -> int:
        return int(round((n - size) / 2.0)) if n >= size else -((size - n) // 2)

    return offset(height), offset(width)


def center_crop(img: Image.Image, size: int) -> Image.Image:
    """torchvision's ``CenterCrop(size)`` on a PIL image: the ``size x size`` crop at
    ``center_crop_box`` (out-of-image pixels of a too-small image are zeros)."""
    top, left = center_crop_box(img.height, img.width, size)
    return img.crop((left, top, left + size, top + size))


def train_transform(
    image: Image.Image | np.ndarray,
    rng: np.random.Generator,
    transform: TrainTransform = TrainTransform(),
) -> np.ndarray:
    """DARTS' training transform without the normalisation.

    ``RandomResizedCrop(size, scale, ratio)`` -> ``RandomHorizontalFlip()`` (mirror when
    ``rng.random() < 0.5``) -> ``ColorJitter(...)``; all draws from ``rng`` in that order.

    Args:
      image: an RGB PIL image, or anything ``to_rgb`` accepts (e.g. ``uint8 (H, W, 3)``).
      rng: source of randomness.
      transform: the parameters.

    Returns:
      ``uint8`` array of shape ``(size, size, 3)``.
    """
    t = transform
    img = to_rgb(image)
    img = random_resized_crop(img, rng, t.size, scale=t.scale, ratio=t.ratio)
    if t.flip and rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    img = color_jitter(img, rng, t.brightness, t.contrast, t.saturation, t.hue)
    return np.asarray(img, dtype=np.uint8)


def eval_transform(
    image: Image.Image | np.ndarray, transform: EvalTransform = EvalTransform()
) -> np.ndarray:
    """DARTS' evaluation transform without the normalisation: ``Resize(resize)`` (shorter side,
    bilinear) then ``CenterCrop(size)``.

    Args:
      image: an RGB PIL image, or anything ``to_rgb`` accepts.
      transform: the parameters.

    Returns:
      ``uint8`` array of shape ``(size, size, 3)``.
    """
    img = resize_shorter(to_rgb(image), transform.resize)
    return np.asarray(center_crop(img, transform.size), dtype=np.uint8)


# --------------------------------------------------------------------------------------------
# Batching
# --------------------------------------------------------------------------------------------


def _resolve_rows(rows: slice | None, batch_size: int) -> tuple[int, int]:
    if rows is None:
        return 0, batch_size
    if not isinstance(rows, slice):
        raise TypeError(f"rows must be a slice or None, got {type(rows).__name__}")
    start, stop, step = rows.indices(batch_size)
    if step != 1:
        raise ValueError(f"rows must be a contiguous slice, got step {rows.step}")
    return start, max(start, stop)


def _iterate(
    batches: Iterator[tuple[Any, ...]],
    work: Callable[..., None],
    workers: int,
    prefetch: int,
) -> Iterator[Any]:
    """Run ``work(*task)`` for every task of every batch, ``prefetch`` batches ahead.

    ``batches`` yields ``(result, tasks)``; ``result`` is yielded once all of its tasks ran
    (they fill it in place). With ``workers == 0`` everything runs in the calling thread.
    """
    if workers == 0:
        for result, tasks in batches:
            for task in tasks:
                work(*task)
            yield result
        return
    pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="jaxnas-imagenet")
    pending: collections.deque[tuple[Any, list[concurrent.futures.Future]]] = collections.deque()
    try:
        for result, tasks in batches:
            pending.append((result, [pool.submit(work, *task) for task in tasks]))
            if len(pending) > prefetch:
                done, futures = pending.popleft()
                for f in futures:
                    f.result()  # re-raises a worker's exception
                yield done
        while pending:
            done, futures = pending.popleft()
            for f in futures:
                f.result()
            yield done
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class ImageNetLoader:
    """Deterministic epoch iterator over an ``ImageNetSource`` with DARTS' transforms.

    The same interface as ``jaxnas.data.Loader``: ``epoch(e)`` yields ``(images, labels)``,
    ``len(loader)`` is the number of batches per epoch, ``loader.batch_size`` the (global)
    batch size and ``loader.ds.num_classes`` the number of classes.

    ``train=True``: each epoch visits a permutation (``np.random.default_rng([seed, e])``) of
    the first ``limit`` records, drops the last incomplete batch, and augments with
    ``train_transform``; the example at position ``p`` of the permutation draws from
    ``np.random.default_rng([seed, e, AUGMENT_STREAM, p])`` only (see the module docstring).
    ``train=False``: the records in order with ``eval_transform``, the last batch shorter
    (prefer ``eval_batches``, whose batches all have ``batch_size`` rows).

    Records are read, decoded, transformed and normalised in a pool of ``workers`` threads
    (PIL and numpy release the GIL), ``prefetch`` batches ahead of the consumer.

    With ``rows``, only those rows of every global batch are read and yielded (multi-host
    data parallelism: each process decodes just its own devices' rows), and the rows are the
    exact rows the full batch would have; ``batch_size`` and ``len`` stay global.
    """

    def __init__(
        self,
        source: ImageNetSource,
        batch_size: int,
        *,
        seed: int,
        train: bool,
        limit: int | None = None,
        workers: int = 8,
        rows: slice | None = None,
        transform: TrainTransform | EvalTransform | None = None,
        prefetch: int = 2,
    ) -> None:
        """Set up the loader.

        Args:
          source: the records (anything with ``len``, ``read(i) -> (PIL image, label)``,
            ``num_classes`` and ``normalization``, e.g. an ``ImageNetSource``).
          batch_size: global examples per batch.
          seed: base seed (all processes of a multi-host run must pass the same one).
          train: training (shuffle, augment, drop last) or evaluation order and transform.
          limit: use only the first ``limit`` records.
          workers: decoding threads (0: decode in the consuming thread).
          rows: the slice of each global batch to produce (contiguous; default all rows).
          transform: override the default ``TrainTransform()`` / ``EvalTransform()``; must
            match ``train``.
          prefetch: batches prepared ahead of the one being consumed.
        """
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if workers < 0 or prefetch < 0:
            raise ValueError(f"workers and prefetch must be >= 0, got {workers}, {prefetch}")
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        if transform is None:
            transform = TrainTransform() if train else EvalTransform()
        want = TrainTransform if train else EvalTransform
        if not isinstance(transform, want):
            raise TypeError(f"train={train} needs a {want.__name__}, got {transform!r}")
        self.ds = source
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.train = bool(train)
        self.n = len(source) if limit is None else min(len(source), int(limit))
        self.workers = int(workers)
        self.prefetch = int(prefetch)
        self.transform = transform
        self.rows = _resolve_rows(rows, self.batch_size)
        if self.train and self.n < self.batch_size:
            raise ValueError(
                f"batch_size {batch_size} exceeds the {self.n} examples of this training "
                "loader: an epoch would have no batches"
            )

    def __len__(self) -> int:
        """Number of batches per epoch."""
        if self.train:
            return self.n // self.batch_size
        return -(-self.n // self.batch_size)

    def _fill(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        row: int,
        index: int,
        seed_words: tuple[int, ...] | None,
    ) -> None:
        img, label = self.ds.read(int(index))
        if seed_words is None:
            out = eval_transform(img, self.transform)
        else:
            out = train_transform(img, np.random.default_rng(seed_words), self.transform)
        images[row] = normalize(out, self.ds.normalization)
        labels[row] = label

    def _batches(self, epoch: int) -> Iterator[tuple[Any, list[tuple[Any, ...]]]]:
        e = int(epoch)
        order = (
            np.random.default_rng([self.seed, e]).permutation(self.n)
            if self.train
            else np.arange(self.n)
        )
        lo, hi = self.rows
        side = self.transform.size
        for b in range(len(self)):
            start = b * self.batch_size
            stop = min(start + self.batch_size, self.n)
            first, last = start + lo, min(start + hi, stop)
            k = max(0, last - first)
            images = np.empty((k, side, side, 3), np.float32)
            labels = np.empty((k,), np.int32)
            tasks = [
                (
                    images,
                    labels,
                    p - first,
                    order[p],
                    (self.seed, e, AUGMENT_STREAM, p) if self.train else None,
                )
                for p in range(first, last)
            ]
            yield (images, labels), tasks

    def epoch(self, epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield the batches of one epoch.

        Args:
          epoch: epoch number; with the seed it fixes the order and every augmentation.

        Yields:
          ``(images, labels)``: ``float32`` ``(R, size, size, 3)`` images normalised with
          ``NORMALIZATION[source.normalization]`` and ``int32`` ``(R,)`` labels, where ``R``
          is ``batch_size`` (or the length of ``rows``).
        """
        return _iterate(self._batches(epoch), self._fill, self.workers, self.prefetch)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Iterate over epoch 0 (use ``epoch(e)`` in training loops)."""
        return self.epoch(0)


def eval_batches(
    source: ImageNetSource,
    batch_size: int,
    *,
    pad_to: int | None = None,
    limit: int = 0,
    workers: int = 8,
    rows: slice | None = None,
    transform: EvalTransform = EvalTransform(),
    prefetch: int = 2,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Every record of ``source`` (the first ``limit``; 0: all) once, in order, with
    ``eval_transform``, as ``(images, labels, mask)`` batches of exactly ``batch_size`` rows.

    The contract of ``jaxnas.data.eval_batches``: the last batch is padded with rows of zero
    images, label 0 and mask 0, so one compiled eval step sees every example.

    Args:
      source: the records (see ``ImageNetLoader``).
      batch_size: rows per (global) batch.
      pad_to: zero-pad (with the normalised black, as ``jaxnas.data.Loader``) the
        ``size x size`` images to ``pad_to x pad_to``; ``None``: no padding.
      limit: only the first ``limit`` records (0: all).
      workers, prefetch: as for ``ImageNetLoader``.
      rows: produce only this slice of every global batch (multi-host).
      transform: the evaluation transform.

    Yields:
      ``float32`` ``(R, S, S, 3)`` normalised images (``S = pad_to or size``), ``int32``
      ``(R,)`` labels and ``float32`` ``(R,)`` mask, ``R`` = ``batch_size`` or the length of
      ``rows``.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    size = transform.size
    if pad_to is not None and pad_to < size:
        raise ValueError(f"pad_to={pad_to} is smaller than the images ({size}x{size})")
    side = pad_to or size
    off0 = (side - size) // 2
    mean, std = mean_std(source.normalization)
    black = -mean / std
    loader = ImageNetLoader(
        source,
        batch_size,
        seed=0,
        train=False,
        limit=limit or None,
        workers=workers,
        rows=rows,
        transform=transform,
        prefetch=prefetch,
    )
    lo, hi = loader.rows
    n = loader.n

    def fill(images: np.ndarray, labels: np.ndarray, row: int, index: int) -> None:
        img, label = source.read(int(index))
        x = normalize(eval_transform(img, transform), source.normalization)
        if side != size:
            images[row] = black
        images[row, off0 : off0 + size, off0 : off0 + size] = x
        labels[row] = label

    def batches() -> Iterator[tuple[Any, list[tuple[Any, ...]]]]:
        for start in range(0, n, batch_size):
            first, last = start + lo, start + hi
            images = np.zeros((last - first, side, side, 3), np.float32)
            labels = np.zeros((last - first,), np.int32)
            mask = (np.arange(first, last) < n).astype(np.float32)
            tasks = [(images, labels, p - first, p) for p in range(first, min(last, n))]
            yield (images, labels, mask), tasks

    return _iterate(batches(), fill, workers, prefetch)


# --------------------------------------------------------------------------------------------
# Subsets: index sets and class subsets (ImageNet-20)
# --------------------------------------------------------------------------------------------


class SubsetSource:
    """A view of ``indices`` of a source, optionally with its labels mapped to new ones.

    Record ``i`` of the view is record ``indices[i]`` of ``source``, with label
    ``label_map[label]`` when ``label_map`` is given (a record whose mapped label is
    negative, i.e. outside the subset's classes, raises ValueError). It has what
    :class:`ImageNetLoader` and :func:`eval_batches` read (``len``, ``read``,
    ``num_classes``, ``normalization``), so the loaders stream a subset unchanged; views
    nest (a bi-level half of a class subset).

    Attributes:
      indices: ``int64`` ``(n,)`` record indices into ``source``.
      num_classes: the view's number of classes.
    """

    def __init__(
        self,
        source: Any,
        indices: Sequence[int] | np.ndarray,
        *,
        label_map: np.ndarray | None = None,
        num_classes: int | None = None,
    ) -> None:
        idx = np.asarray(indices, dtype=np.int64)
        if idx.ndim != 1:
            raise ValueError(f"indices must be 1-d, got shape {idx.shape}")
        if idx.size and (idx.min() < 0 or idx.max() >= len(source)):
            raise ValueError(f"indices must lie in [0, {len(source)}) (the source's records)")
        self.source = source
        self.indices = idx
        self.label_map = None if label_map is None else np.asarray(label_map, np.int64)
        if num_classes is None:
            num_classes = source.num_classes if label_map is None else int(self.label_map.max()) + 1
        self.num_classes = int(num_classes)
        self.normalization = source.normalization
        self.name = getattr(source, "name", "subset")
        self.split = getattr(source, "split", "")

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def _label(self, label: int) -> int:
        if self.label_map is None:
            return int(label)
        new = int(self.label_map[int(label)])
        if new < 0:
            raise ValueError(f"label {label} is not one of this subset's classes")
        return new

    def read(self, index: int) -> tuple[Image.Image, int]:
        """``(RGB PIL image, label)`` of record ``index`` of the view."""
        img, label = self.source.read(int(self.indices[index]))
        return img, self._label(label)

    def label(self, index: int) -> int:
        return self._label(self.source.label(int(self.indices[index])))

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        im, label = self.read(index)
        return np.asarray(im, dtype=np.uint8), label

    def __repr__(self) -> str:
        return f"SubsetSource({self.source!r}, n={len(self)}, num_classes={self.num_classes})"


def label_view(source: Any) -> Any:
    """The records of ``source`` read without decoding the image when tfds allows it.

    A tfds data source (a dataclass with a ``decoders`` field, e.g.
    ``ArrayRecordDataSource``) is shallow-copied with ``SkipDecoding`` on the image field
    (its NumPy path hands out the encoded bytes): scanning ImageNet's 1.28M labels then
    costs the reads, not 1.28M JPEG decodes. A copy, not ``dataclasses.replace``: that
    re-runs ``__post_init__``, which re-opens the files. Anything else is read as it is."""
    src = getattr(source, "_src", None)
    if src is None:
        return None
    key = getattr(source, "_image_key", "image")
    if dataclasses.is_dataclass(src) and any(f.name == "decoders" for f in dataclasses.fields(src)):
        try:
            tfds = require("tensorflow_datasets", "a label scan")
            view = copy.copy(src)
            view.decoders = {key: tfds.decode.SkipDecoding()}
            return view
        except Exception:  # noqa: BLE001 - fall back to full reads
            return src
    return src


def scan_labels(
    source: Any, *, workers: int = 8, chunk: int = 2048, cache: str | None = None
) -> np.ndarray:
    """Every record's label, ``int32`` ``(len(source),)``, read in ``workers`` threads.

    On ImageNet this reads the whole split once (the labels are in the records, and the
    train records are shuffled), so ``cache`` (an ``.npy`` path) keeps the result: a cache
    of the right length is loaded instead of scanning, a missing one is written.
    """
    n = len(source)
    if cache and os.path.exists(cache):
        labels = np.load(cache)
        if labels.shape == (n,):
            return labels.astype(np.int32, copy=False)
    view = label_view(source)
    label_key = getattr(source, "_label_key", "label")

    def read(start: int) -> list[int]:
        keys = list(range(start, min(n, start + chunk)))
        if view is None:
            return [int(source.label(k)) for k in keys]
        if hasattr(view, "__getitems__"):  # array_record reads a batch of keys at once
            try:
                return [int(r[label_key]) for r in view.__getitems__(keys)]
            except TypeError:  # tfds.testing.mock_data's __getitems__ is broken (see data.py)
                pass
        return [int(view[k][label_key]) for k in keys]

    starts = list(range(0, n, chunk))
    if workers > 0 and len(starts) > 1:
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            parts = list(pool.map(read, starts))
    else:
        parts = [read(s) for s in starts]
    labels = np.asarray([v for p in parts for v in p], dtype=np.int32)
    if cache:
        os.makedirs(os.path.dirname(os.path.abspath(cache)), exist_ok=True)
        tmp = cache + ".tmp.npy"
        np.save(tmp, labels)
        os.replace(tmp, cache)
    return labels


def draw_classes(num_classes: int, k: int, seed: int) -> np.ndarray:
    """``k`` distinct classes of ``range(num_classes)``, drawn with
    ``np.random.default_rng(seed)`` and sorted (the subset's label ``j`` is the ``j``-th)."""
    if not 0 < k <= num_classes:
        raise ValueError(f"cannot draw {k} of {num_classes} classes")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(num_classes, size=k, replace=False)).astype(np.int64)


def class_subset(source: Any, classes: Sequence[int], labels: np.ndarray) -> SubsetSource:
    """The records of ``source`` whose label is in ``classes``, relabelled to
    ``0..len(classes)-1`` in the order of ``classes``; ``labels`` are all of the source's
    labels (:func:`scan_labels`). The records keep their order."""
    classes = np.asarray(classes, np.int64)
    labels = np.asarray(labels)
    if labels.shape != (len(source),):
        raise ValueError(f"need one label per record: {labels.shape} for {len(source)} records")
    if len(np.unique(classes)) != len(classes):
        raise ValueError("classes must be distinct")
    if classes.size and (classes.min() < 0 or classes.max() >= source.num_classes):
        raise ValueError(f"classes must lie in [0, {source.num_classes})")
    label_map = np.full(source.num_classes, -1, np.int64)
    label_map[classes] = np.arange(len(classes))
    idx = np.flatnonzero(label_map[labels] >= 0)
    return SubsetSource(source, idx, label_map=label_map, num_classes=len(classes))


def class_names(source: Any) -> list[str] | None:
    """The label names of a tfds source (ImageNet: WordNet ids such as ``n01440764``), or
    None when the source has none."""
    try:
        feature = source._src.dataset_info.features[getattr(source, "_label_key", "label")]
        return [str(v) for v in feature.names]
    except (AttributeError, KeyError, TypeError):
        return None
