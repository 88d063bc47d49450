"""Tests for jaxnas.data: loading real local data, the bi-level split, augmentation, Loader."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from jaxnas import data

FMNIST_DIR = Path(data.FMNIST_DEFAULT_DIR)
needs_fmnist = pytest.mark.skipif(
    not (FMNIST_DIR / "train-labels-idx1-ubyte.gz").is_file(),
    reason="Debian package dataset-fashion-mnist is not installed",
)


@pytest.fixture(autouse=True)
def _no_fmnist_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(data.FMNIST_ENV_VAR, raising=False)


@pytest.fixture(scope="module")
def fmnist_train() -> data.ArrayDataset:
    if not (FMNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    return data.load("fashion_mnist", "train")


def _index_dataset(n: int, h: int = 4, w: int = 4) -> data.ArrayDataset:
    """A dataset whose label i identifies example i (image pixels also encode i mod 256)."""
    images = np.broadcast_to(
        (np.arange(n) % 256).astype(np.uint8)[:, None, None, None], (n, h, w, 1)
    ).copy()
    return data.ArrayDataset(images, np.arange(n, dtype=np.int32), n, "fashion_mnist")


# ------------------------------------------------------------------------------- loading


@needs_fmnist
def test_fashion_mnist_train_is_the_real_dataset(fmnist_train: data.ArrayDataset) -> None:
    ds = fmnist_train
    assert ds.images.shape == (60000, 28, 28, 1)
    assert ds.images.dtype == np.uint8
    assert ds.labels.shape == (60000,) and ds.labels.dtype == np.int32
    assert ds.num_classes == 10 and ds.name == "fashion_mnist"
    assert ds.labels.min() == 0 and ds.labels.max() == 9
    # Fashion-MNIST is balanced: 6000 training images per class.
    np.testing.assert_array_equal(np.bincount(ds.labels), np.full(10, 6000))
    assert ds.images.max() == 255 and ds.images.min() == 0


@needs_fmnist
def test_fashion_mnist_test_split() -> None:
    ds = data.load("fashion_mnist", "test")
    assert ds.images.shape == (10000, 28, 28, 1) and ds.images.dtype == np.uint8
    assert ds.num_classes == 10
    np.testing.assert_array_equal(np.bincount(ds.labels, minlength=10), np.full(10, 1000))


@needs_fmnist
def test_first_example_matches_raw_idx_bytes(fmnist_train: data.ArrayDataset) -> None:
    with gzip.open(FMNIST_DIR / "train-labels-idx1-ubyte.gz", "rb") as f:
        raw_labels = f.read(8 + 3)
    magic, count = struct.unpack(">II", raw_labels[:8])
    assert magic == 2049 and count == 60000
    with gzip.open(FMNIST_DIR / "train-images-idx3-ubyte.gz", "rb") as f:
        raw_images = f.read(16 + 784)
    assert struct.unpack(">IIII", raw_images[:16]) == (2051, 60000, 28, 28)
    assert fmnist_train.labels[0] == raw_labels[8]
    assert list(fmnist_train.labels[:3]) == list(raw_labels[8:11])
    assert fmnist_train.labels[0] == 9  # the first Fashion-MNIST training image is an ankle boot
    first = np.frombuffer(raw_images[16:], dtype=np.uint8).reshape(28, 28)
    np.testing.assert_array_equal(fmnist_train.images[0, :, :, 0], first)


@needs_fmnist
def test_limit_keeps_the_first_examples(fmnist_train: data.ArrayDataset) -> None:
    small = data.load("fashion_mnist", "train", limit=100)
    assert small.images.shape == (100, 28, 28, 1)
    np.testing.assert_array_equal(small.images, fmnist_train.images[:100])
    np.testing.assert_array_equal(small.labels, fmnist_train.labels[:100])
    assert len(data.load("fashion_mnist", "test", limit=0)) == 0


@needs_fmnist
def test_env_var_and_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(data.FMNIST_ENV_VAR, str(tmp_path))
    with pytest.raises(data.DatasetNotFoundError):
        data.load("fashion_mnist", limit=5)
    # An explicit data_dir wins over the environment variable.
    assert len(data.load("fashion_mnist", data_dir=str(FMNIST_DIR), limit=5)) == 5
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        (tmp_path / name).symlink_to(FMNIST_DIR / name)
    assert data.load("fashion_mnist", limit=7).images.shape == (7, 28, 28, 1)


@pytest.mark.parametrize("source", ["local", "auto"])
def test_missing_files_raise_one_line_how_to(tmp_path: Path, source: str) -> None:
    with pytest.raises(data.DatasetNotFoundError) as info:
        data.load("fashion_mnist", "train", data_dir=str(tmp_path), source=source)
    assert isinstance(info.value, FileNotFoundError)
    message = str(info.value)
    assert "\n" not in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert str(tmp_path) in message


def test_unknown_name_split_and_source_raise_value_error() -> None:
    with pytest.raises(ValueError, match="cifar10"):
        data.load("svhn")
    with pytest.raises(ValueError):
        data.load("fashion_mnist", "validation")
    with pytest.raises(ValueError):
        data.load("digits", "valid")
    with pytest.raises(ValueError):
        data.load("fashion_mnist", source="s3")
    with pytest.raises(ValueError):
        data.load("cifar10", source="local")
    with pytest.raises(ValueError):
        data.load("digits", limit=-1)


def test_digits() -> None:
    train, test = data.load("digits", "train"), data.load("digits", "test")
    assert train.images.shape[1:] == (8, 8, 1) and train.images.dtype == np.uint8
    assert train.num_classes == 10 and train.name == "digits"
    assert (len(train), len(test)) == (1437, 360)  # 80/20 of sklearn's 1797 images
    assert train.images.max() == 255 and train.labels.dtype == np.int32
    assert set(np.unique(train.labels)) == set(range(10))
    # The split is fixed: loading again gives the same arrays.
    np.testing.assert_array_equal(data.load("digits", "test").labels, test.labels)
    assert len(data.load("digits", limit=10)) == 10


def test_digits_normalization_constants_are_honest() -> None:
    x = data.load("digits", "train").images / 255.0
    mean, std = data.NORMALIZATION["digits"]
    assert mean[0] == pytest.approx(x.mean(), abs=1e-4)
    assert std[0] == pytest.approx(x.std(), abs=1e-4)


def test_tfds_cifar10_through_mock_data() -> None:
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=12):
        ds = data.load("cifar10", "train")
        small = data.load("cifar10", "test", limit=5)
    assert ds.images.shape == (12, 32, 32, 3) and ds.images.dtype == np.uint8
    assert ds.labels.dtype == np.int32 and ds.num_classes == 10 and ds.name == "cifar10"
    assert ((ds.labels >= 0) & (ds.labels < 10)).all()
    assert small.images.shape == (5, 32, 32, 3)


@pytest.mark.parametrize("name", ["mnist", "cifar10", "imagenet2012"])
def test_tfds_not_prepared_raises_one_line_how_to(tmp_path: Path, name: str) -> None:
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(data.DatasetNotFoundError) as info:
        data.load(name, "train", data_dir=str(tmp_path))
    message = str(info.value)
    assert "\n" not in message
    assert f"tfds build {name}" in message
    if name == "imagenet2012":
        assert "downloads/manual" in message


# ------------------------------------------------------------------------- normalisation


@needs_fmnist
def test_normalize_standardises_fashion_mnist(fmnist_train: data.ArrayDataset) -> None:
    x = data.normalize(fmnist_train.images[:5000], "fashion_mnist")
    assert x.dtype == np.float32 and x.shape == (5000, 28, 28, 1)
    assert abs(float(x.mean())) < 0.05
    assert abs(float(x.std()) - 1.0) < 0.05


def test_normalize_formula_and_channel_check() -> None:
    img = np.full((1, 2, 2, 3), 255, np.uint8)
    x = data.normalize(img, "cifar10")
    mean, std = data.NORMALIZATION["cifar10"]
    np.testing.assert_allclose(x[0, 0, 0], (1 - np.array(mean)) / np.array(std), rtol=1e-6)
    with pytest.raises(ValueError):
        data.normalize(img, "fashion_mnist")
    assert set(data.DATASETS) <= set(data.NORMALIZATION)


# ------------------------------------------------------------------------- bi-level split


@pytest.mark.parametrize("n,portion", [(0, 0.5), (1, 0.5), (7, 0.5), (100, 0.5), (101, 0.3)])
def test_bilevel_split_partitions(n: int, portion: float) -> None:
    a, b = data.bilevel_split(n, seed=3, portion=portion)
    assert len(a) == int(np.floor(portion * n)) and len(b) == n - len(a)
    assert not set(a.tolist()) & set(b.tolist())
    np.testing.assert_array_equal(np.sort(np.concatenate([a, b])), np.arange(n))


def test_bilevel_split_seeding() -> None:
    a1, b1 = data.bilevel_split(1000, seed=0)
    a2, b2 = data.bilevel_split(1000, seed=0)
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(b1, b2)
    a3, _ = data.bilevel_split(1000, seed=1)
    assert not np.array_equal(np.sort(a1), np.sort(a3))
    assert len(a1) == len(b1) == 500
    with pytest.raises(ValueError):
        data.bilevel_split(10, seed=0, portion=1.5)


# -------------------------------------------------------------------------- augmentation


def _random_images(b: int = 32, h: int = 8, w: int = 8, c: int = 3) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(b, h, w, c)).astype(np.float32)


def test_no_augmentation_is_identity() -> None:
    x = _random_images()
    y = data.augment_batch(x, np.random.default_rng(1), data.Augment())
    np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize(
    "aug", [data.Augment(crop_padding=4, flip=True, cutout=3), data.Augment(crop_padding=1)]
)
def test_augmentation_keeps_shape_and_dtype(aug: data.Augment) -> None:
    x = _random_images(b=5, h=7, w=9, c=2)
    y = data.augment_batch(x, np.random.default_rng(1), aug)
    assert y.shape == x.shape and y.dtype == x.dtype


def test_flip_gives_input_or_mirror() -> None:
    x = _random_images(b=64)
    y = data.augment_batch(x, np.random.default_rng(5), data.Augment(flip=True))
    same = [np.array_equal(y[i], x[i]) for i in range(64)]
    mirrored = [np.array_equal(y[i], x[i, :, ::-1]) for i in range(64)]
    assert all(s != m for s, m in zip(same, mirrored))  # exactly one (images not symmetric)
    assert 10 < sum(mirrored) < 54


def test_crop_is_a_window_of_the_padded_image() -> None:
    b, h, w, p = 40, 5, 6, 2
    x = (np.arange(b * h * w, dtype=np.float32).reshape(b, h, w, 1)) + 1.0
    y = data.augment_batch(x, np.random.default_rng(2), data.Augment(crop_padding=p), fill=-7.0)
    padded = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), constant_values=-7.0)
    offsets = set()
    for i in range(b):
        hits = [
            (dy, dx)
            for dy in range(2 * p + 1)
            for dx in range(2 * p + 1)
            if np.array_equal(y[i], padded[i, dy : dy + h, dx : dx + w])
        ]
        assert len(hits) == 1
        offsets.add(hits[0])
    assert len(offsets) > 5  # offsets actually vary


def test_cutout_zeroes_a_clipped_square() -> None:
    b, h, w, length = 200, 10, 12, 4
    x = np.ones((b, h, w, 3), np.float32)
    y = data.augment_batch(x, np.random.default_rng(3), data.Augment(cutout=length))
    clipped = 0
    for i in range(b):
        zero = y[i] == 0
        assert (zero == zero[..., :1]).all()  # same hole in every channel
        rows = np.flatnonzero(zero[..., 0].any(axis=1))
        cols = np.flatnonzero(zero[..., 0].any(axis=0))
        assert len(rows) and len(cols)  # the centre is inside the image: never empty
        # The zeros fill exactly their bounding box and nothing else changed.
        assert zero[..., 0].sum() == len(rows) * len(cols)
        assert np.ptp(rows) + 1 == len(rows) and np.ptp(cols) + 1 == len(cols)
        assert (y[i][~zero] == 1).all()
        # Each side is the full length unless the square was clipped at that border.
        for idx, size in ((rows, h), (cols, w)):
            assert len(idx) <= length
            if len(idx) < length:
                assert idx[0] == 0 or idx[-1] == size - 1
                clipped += 1
    assert 0 < clipped < 2 * b  # both clipped and unclipped holes occurred


# -------------------------------------------------------------------------------- Loader


def test_loader_is_a_pure_function_of_seed_and_epoch() -> None:
    ds = _index_dataset(50)
    aug = data.Augment(crop_padding=1, flip=True, cutout=2)
    loader = data.Loader(ds, None, 8, seed=11, augment=aug)
    first = list(loader.epoch(2))
    again = list(loader.epoch(2))
    resumed = list(data.Loader(ds, None, 8, seed=11, augment=aug).epoch(2))
    assert len(first) == len(loader) == 6
    for (x1, y1), (x2, y2), (x3, y3) in zip(first, again, resumed):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(x1, x3)
        np.testing.assert_array_equal(y1, y2)
        np.testing.assert_array_equal(y1, y3)
        assert x1.shape == (8, 4, 4, 1) and x1.dtype == np.float32 and y1.dtype == np.int32
    other = list(loader.epoch(3))
    assert not np.array_equal(
        np.concatenate([y for _, y in first]), np.concatenate([y for _, y in other])
    )
    other_seed = list(data.Loader(ds, None, 8, seed=12, augment=aug).epoch(2))
    assert not np.array_equal(first[0][1], other_seed[0][1])


def test_loader_rows_are_those_rows_of_the_whole_batches() -> None:
    """A loader of one process's ``rows`` (multi-host runs) yields exactly those rows of
    every global batch, crop, flip and cutout included, and the processes' rows put
    together are the whole batch."""
    ds = _index_dataset(50)
    aug = data.Augment(crop_padding=1, flip=True, cutout=2)
    whole = list(data.Loader(ds, None, 8, seed=11, augment=aug, pad_to=6).epoch(2))
    parts = [
        list(data.Loader(ds, None, 8, seed=11, augment=aug, pad_to=6, rows=r).epoch(2))
        for r in (slice(0, 4), slice(4, 8))
    ]
    assert len(parts[0]) == len(whole) == 6
    for (x, y), (x0, y0), (x1, y1) in zip(whole, *parts):
        assert x0.shape == (4, 6, 6, 1)
        np.testing.assert_array_equal(np.concatenate([x0, x1]), x)
        np.testing.assert_array_equal(np.concatenate([y0, y1]), y)
    with pytest.raises(ValueError, match="rows"):
        data.Loader(ds, None, 8, seed=11, rows=slice(8, 12))


def test_loader_covers_each_index_once_without_drop_last() -> None:
    ds = _index_dataset(100)
    subset = np.arange(3, 100, 3)  # 33 indices
    loader = data.Loader(ds, subset, 8, seed=0, drop_last=False)
    assert len(loader) == 5
    batches = list(loader.epoch(0))
    assert [len(y) for _, y in batches] == [8, 8, 8, 8, 1]
    seen = np.concatenate([y for _, y in batches])
    np.testing.assert_array_equal(np.sort(seen), subset)
    assert not np.array_equal(seen, subset)  # shuffled
    # Images travel with their labels.
    for x, y in batches:
        expected = data.normalize(ds.images[y], "fashion_mnist")
        np.testing.assert_array_equal(x, expected)
    dropped = data.Loader(ds, subset, 8, seed=0, drop_last=True)
    assert len(dropped) == 4 and len(list(dropped.epoch(0))) == 4
    ordered = data.Loader(ds, subset, 8, seed=0, shuffle=False, drop_last=False)
    np.testing.assert_array_equal(np.concatenate([y for _, y in ordered.epoch(4)]), subset)


def test_loader_pad_to_pads_with_black() -> None:
    ds = _index_dataset(10, h=28, w=28)
    loader = data.Loader(ds, None, 5, seed=0, pad_to=32, shuffle=False)
    x, y = next(loader.epoch(0))
    assert x.shape == (5, 32, 32, 1)
    black = data.normalize(np.zeros((1, 1, 1, 1), np.uint8), "fashion_mnist")[0, 0, 0, 0]
    assert np.allclose(x[:, :2], black) and np.allclose(x[:, :, -2:], black)
    np.testing.assert_array_equal(x[:, 2:30, 2:30], data.normalize(ds.images[y], "fashion_mnist"))
    with pytest.raises(ValueError):
        data.Loader(ds, None, 20, seed=0)  # drop_last would leave no batch


@needs_fmnist
def test_search_loaders_on_fashion_mnist() -> None:
    train, valid, test = data.search_loaders(
        "fashion_mnist", batch_size=16, seed=0, limit=200, pad_to=32
    )
    assert len(train) == len(valid) == 6 and len(test) == 200
    assert not set(train.indices.tolist()) & set(valid.indices.tolist())
    assert len(train.indices) + len(valid.indices) == 200
    assert train.seed != valid.seed
    assert train.augment == data.Augment(crop_padding=2, flip=True)
    x, y = next(train.epoch(0))
    assert x.shape == (16, 32, 32, 1) and y.shape == (16,)
    again, _, _ = data.search_loaders("fashion_mnist", batch_size=16, seed=0, limit=200)
    np.testing.assert_array_equal(again.indices, train.indices)


def test_to_device_round_trips() -> None:
    x, y = np.ones((2, 3, 3, 1), np.float32), np.arange(2, dtype=np.int32)
    dx, dy = data.to_device((x, y))
    np.testing.assert_array_equal(np.asarray(dx), x)
    np.testing.assert_array_equal(np.asarray(dy), y)
