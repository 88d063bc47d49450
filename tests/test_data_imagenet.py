"""The ImageNet pipeline (jaxnas.data_imagenet) on tfds mock data and hand-made images."""

import io
import math

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from jaxnas import data
from jaxnas import data_imagenet as di

N_MOCK = 10
SMALL_TRAIN = di.TrainTransform(size=32)
SMALL_EVAL = di.EvalTransform(size=32, resize=40)


@pytest.fixture(scope="module")
def mock_source():
    """imagenet2012 'train' from tfds' random mock data (variable-size images, no files).

    The mock is only needed to open the source: its records stay readable afterwards, and
    leaving the context keeps it from hiding a real tfds from other tests."""
    with tfds.testing.mock_data(num_examples=N_MOCK, policy=tfds.testing.MockPolicy.USE_CODE):
        src = di.ImageNetSource("imagenet2012", "train")
    return src


def _pattern(h, w):
    """uint8 (h, w, 3) image whose pixel (y, x) encodes (y % 256, x % 256, x // 256)."""
    y, x = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return np.stack([y % 256, x % 256, x // 256], axis=-1).astype(np.uint8)


def test_mock_source_has_variable_sizes(mock_source):
    assert len(mock_source) == N_MOCK
    assert mock_source.num_classes == 1000
    assert mock_source.normalization == "imagenet2012"
    shapes = {mock_source.image(i).shape for i in range(N_MOCK)}
    assert len(shapes) > 1 and all(len(s) == 3 and s[-1] == 3 for s in shapes)
    img, label = mock_source[0]
    assert img.dtype == np.uint8 and 0 <= label < 1000


def test_missing_dataset_raises_how_to(tmp_path):
    with pytest.raises(data.DatasetNotFoundError, match="tfds build imagenet2012") as e:
        di.ImageNetSource("imagenet2012", "train", data_dir=str(tmp_path))
    assert "\n" not in str(e.value)


def test_encoded_records_are_decoded():
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8) for h, w in [(5, 9), (11, 4)]]
    records = []
    for a in arrays:
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="PNG")  # lossless, so pixels compare exactly
        records.append({"image": buf.getvalue(), "label": 3})
    gray = io.BytesIO()
    Image.fromarray(arrays[0][..., 0], "L").save(gray, format="JPEG")
    records.append({"image": np.bytes_(gray.getvalue()), "label": 1})
    records.append({"image": arrays[1][..., :1], "label": 2})  # decoded (H, W, 1)
    src = di.ImageNetSource.from_data_source(records, num_classes=5)
    np.testing.assert_array_equal(src.image(0), arrays[0])
    np.testing.assert_array_equal(src.image(1), arrays[1])
    assert src.image(2).shape == (5, 9, 3) and src.label(2) == 1
    np.testing.assert_array_equal(src.image(3), np.repeat(arrays[1][..., :1], 3, axis=-1))
    with pytest.raises(IndexError):
        src.read(4)


def test_random_resized_crop_box_bounds():
    rng = np.random.default_rng(0)
    lo, hi = 3 / 4, 4 / 3
    for _ in range(300):
        h, w = (int(v) for v in rng.integers(50, 600, size=2))
        top, left, ch, cw = di.random_resized_crop_box(h, w, rng)
        assert 0 <= top and top + ch <= h and 0 <= left and left + cw <= w and ch > 0 and cw > 0
        fallback = (top, left) == ((h - ch) // 2, (w - cw) // 2) and (ch == h or cw == w)
        if not fallback:
            # rounding w and h to integers moves area and ratio by at most ~1 pixel per side
            assert 0.08 * h * w - (ch + cw + 1) <= ch * cw <= h * w
            assert lo * (1 - 1 / ch) - 1 / ch <= cw / ch <= hi * (1 + 1 / ch) + 1 / ch


def test_random_resized_crop_box_fallback():
    rng = np.random.default_rng(0)
    # 1000x10: any crop of >= 8% of the area with ratio in [3/4, 4/3] is wider than 10 pixels
    assert di.random_resized_crop_box(1000, 10, rng) == ((1000 - 13) // 2, 0, 13, 10)
    assert di.random_resized_crop_box(10, 1000, rng) == (0, (1000 - 13) // 2, 10, 13)
    # an impossible scale with an in-range aspect ratio: the whole image
    assert di.random_resized_crop_box(40, 50, rng, scale=(2.0, 3.0)) == (0, 0, 40, 50)


def test_random_resized_crop_output_and_aspect():
    img = Image.fromarray(_pattern(37, 91))
    out = di.random_resized_crop(img, np.random.default_rng(1), 24)
    assert out.size == (24, 24) and out.mode == "RGB"
    # ratio pinned to 1 and scale to 1/4: a square crop of side round(sqrt(37 * 91 / 4))
    box = di.random_resized_crop_box(
        37, 91, np.random.default_rng(2), scale=(0.25, 0.25), ratio=(1.0, 1.0)
    )
    side = round(math.sqrt(37 * 91 / 4))
    assert box[2:] == (side, side)


def test_eval_geometry_resize_and_center_crop():
    assert di.resized_shorter_size(300, 400, 256) == (256, 341)
    assert di.resized_shorter_size(400, 300, 256) == (341, 256)
    assert di.center_crop_box(256, 341, 224) == (16, 58)  # round(58.5) == 58 (half to even)
    # shorter side already 256: Resize is the identity, so the crop is exact
    img = _pattern(256, 333)
    out = di.eval_transform(img)
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8
    top, left = di.center_crop_box(256, 333, 224)
    assert (top, left) == (16, 54)
    np.testing.assert_array_equal(out, img[top : top + 224, left : left + 224])
    # an odd-size image: output size, and a constant image stays constant
    flat = np.full((101, 57, 3), (10, 120, 250), np.uint8)
    out = di.eval_transform(flat, di.EvalTransform(size=40, resize=50))
    assert out.shape == (40, 40, 3)
    np.testing.assert_array_equal(out, np.broadcast_to(flat[0, 0], out.shape))
    # left half dark, right half bright (wide image): the crop is centred
    half = np.zeros((64, 192, 3), np.uint8)
    half[:, 96:] = 255
    out = di.eval_transform(half, di.EvalTransform(size=48, resize=64))
    np.testing.assert_array_equal(out[:, :20], 0)
    np.testing.assert_array_equal(out[:, 28:], 255)


def test_color_jitter_zero_is_identity_and_train_identity():
    rng = np.random.default_rng(0)
    img = Image.fromarray(np.random.default_rng(1).integers(0, 256, (13, 17, 3), dtype=np.uint8))
    assert di.color_jitter(img, rng, 0.0, 0.0, 0.0, 0.0) is img
    jittered = di.color_jitter(img, rng)
    assert jittered.size == img.size and not np.array_equal(np.asarray(jittered), np.asarray(img))
    # whole-image crop at the output size, no flip, no jitter: the identity
    arr = _pattern(32, 32)
    ident = di.TrainTransform(
        size=32, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=False, brightness=0, contrast=0,
        saturation=0, hue=0,
    )  # fmt: skip
    np.testing.assert_array_equal(di.train_transform(arr, rng, ident), arr)
    # hue 0: only PIL's RGB -> HSV -> RGB round trip
    roundtrip = np.asarray(Image.fromarray(arr).convert("HSV").convert("RGB"))
    np.testing.assert_array_equal(np.asarray(di.adjust_hue(Image.fromarray(arr), 0.0)), roundtrip)


def test_train_transform_deterministic_on_odd_sizes():
    for h, w in [(7, 300), (333, 5), (1, 1), (501, 377)]:
        img = np.random.default_rng(h).integers(0, 256, (h, w, 3), dtype=np.uint8)
        a = di.train_transform(img, np.random.default_rng([h, w]), SMALL_TRAIN)
        b = di.train_transform(img, np.random.default_rng([h, w]), SMALL_TRAIN)
        assert a.shape == (32, 32, 3) and a.dtype == np.uint8
        np.testing.assert_array_equal(a, b)


def test_loader_shapes_normalisation_and_determinism(mock_source):
    loader = di.ImageNetLoader(mock_source, 4, seed=3, train=True, workers=2)
    assert len(loader) == N_MOCK // 4 and loader.batch_size == 4
    assert loader.ds.num_classes == 1000
    batches = list(loader.epoch(0))
    assert len(batches) == 2
    x, y = batches[0]
    assert x.shape == (4, 224, 224, 3) and x.dtype == np.float32
    assert y.shape == (4,) and y.dtype == np.int32
    # batch rows are normalize(train_transform(record, rng of its position)) of the permutation
    order = np.random.default_rng([3, 0]).permutation(N_MOCK)
    for p in (0, 5):
        img, label = mock_source.read(order[p])
        rng = np.random.default_rng([3, 0, di.AUGMENT_STREAM, p])
        want = data.normalize(di.train_transform(img, rng), "imagenet2012")
        np.testing.assert_array_equal(batches[p // 4][0][p % 4], want)
        assert batches[p // 4][1][p % 4] == label
    again = list(di.ImageNetLoader(mock_source, 4, seed=3, train=True, workers=0).epoch(0))
    for (xa, ya), (xb, yb) in zip(batches, again, strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    other = next(iter(loader.epoch(1)))[0]
    assert not np.array_equal(other, x)


def test_loader_workers_and_rows(mock_source):
    def run(**kw):
        ld = di.ImageNetLoader(mock_source, 5, seed=7, train=True, transform=SMALL_TRAIN, **kw)
        return list(ld.epoch(2))

    full = run(workers=0)
    for workers in (1, 3):
        for (xa, ya), (xb, yb) in zip(full, run(workers=workers, prefetch=1), strict=True):
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya, yb)
    for rows in (slice(1, 4), slice(0, 2), slice(4, None)):
        part = run(workers=2, rows=rows)
        assert len(part) == len(full)
        for (xa, ya), (xb, yb) in zip(full, part, strict=True):
            np.testing.assert_array_equal(xa[rows], xb)
            np.testing.assert_array_equal(ya[rows], yb)
    with pytest.raises(ValueError, match="contiguous"):
        di.ImageNetLoader(mock_source, 5, seed=0, train=True, rows=slice(0, 4, 2))


def test_eval_batches_padding_and_rows(mock_source):
    batches = list(di.eval_batches(mock_source, 4, limit=7, workers=2, transform=SMALL_EVAL))
    assert len(batches) == 2
    x, y, m = batches[1]
    assert x.shape == (4, 32, 32, 3) and y.dtype == np.int32 and m.dtype == np.float32
    np.testing.assert_array_equal(m, [1, 1, 1, 0])
    np.testing.assert_array_equal(x[3], 0)
    assert y[3] == 0
    np.testing.assert_array_equal(batches[0][2], 1)
    for i in (0, 6):
        img, label = mock_source.read(i)
        want = data.normalize(di.eval_transform(img, SMALL_EVAL), "imagenet2012")
        np.testing.assert_array_equal(batches[i // 4][0][i % 4], want)
        assert batches[i // 4][1][i % 4] == label
    part = list(di.eval_batches(mock_source, 4, limit=7, rows=slice(2, 4), transform=SMALL_EVAL))
    for full, half in zip(batches, part, strict=True):
        for a, b in zip(full, half, strict=True):
            np.testing.assert_array_equal(a[2:4], b)
    padded = next(di.eval_batches(mock_source, 4, pad_to=36, transform=SMALL_EVAL, workers=0))
    assert padded[0].shape == (4, 36, 36, 3)
    np.testing.assert_array_equal(padded[0][:, 2:34, 2:34], batches[0][0])
    mean, std = (np.asarray(v, np.float32) for v in data.NORMALIZATION["imagenet2012"])
    np.testing.assert_allclose(padded[0][:, 0, 0], np.broadcast_to(-mean / std, (4, 3)))
    # the eval-mode loader has the same rows, the last batch short
    ld = di.ImageNetLoader(mock_source, 4, seed=0, train=False, limit=7, transform=SMALL_EVAL)
    tail = list(ld.epoch(0))[-1]
    assert len(ld) == 2 and tail[0].shape[0] == 3
    np.testing.assert_array_equal(tail[0], x[:3])


def test_worker_errors_reach_the_consumer():
    records = [{"image": np.zeros((8, 8, 3), np.uint8), "label": 0}] * 3
    records.append({"image": np.zeros((8, 8, 3), np.float32), "label": 0})
    src = di.ImageNetSource.from_data_source(records, num_classes=2)
    loader = di.ImageNetLoader(src, 4, seed=0, train=True, workers=2, transform=SMALL_TRAIN)
    with pytest.raises(ValueError, match="uint8"):
        list(loader.epoch(0))
