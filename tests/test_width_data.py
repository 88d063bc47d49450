"""The data of ``jaxnas compress``: ImageNet-20 on tfds mock records, the bi-level split by
index sets, and the on-device resize (CIFAR-100 at Swin-T's 224).

Identities between two computations (the skip-decoding label scan vs full record reads;
the class subset vs a direct filter of the labels), invariants (the two halves of the
split are disjoint and cover the subset; labels relabelled into ``0..19``; a constant
image stays constant), a closed form (bilinear 2x2 -> 4x4 upsampling) and determinism
of the class draw.  Nothing is downloaded: ``tfds.testing.mock_data`` makes the records.
"""

import json

import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxnas import data
from jaxnas import data_imagenet as di
from jaxnas.config import default_config
from jaxnas.width import data as wdata

N_MOCK = 1500  # ~30 records per 20 drawn classes of 1000 (mock labels are uniform)


def _mock():
    return tfds.testing.mock_data(num_examples=N_MOCK, policy=tfds.testing.MockPolicy.USE_CODE)


def _config(**data_kw):
    c = default_config("rarts-width")
    c.seed = 3
    for k, v in data_kw.items():
        c.data[k] = v
    c.model.input_size = 16
    c.run.eval_limit = 0
    return c


def test_draw_classes_is_a_seeded_sorted_draw():
    a, b = di.draw_classes(1000, 20, 0), di.draw_classes(1000, 20, 0)
    np.testing.assert_array_equal(a, b)
    assert len(np.unique(a)) == 20 and np.all(np.diff(a) > 0) and 0 <= a[0] and a[-1] < 1000
    assert not np.array_equal(a, di.draw_classes(1000, 20, 1))
    assert data.CLASS_SUBSETS["imagenet20"] == ("imagenet2012", 20, 0)
    with pytest.raises(ValueError, match="cannot draw"):
        di.draw_classes(10, 11, 0)
    with pytest.raises(ValueError, match="streamed"):
        data.load("imagenet20")


def test_label_scan_and_class_subset_on_mock_imagenet(tmp_path):
    with _mock():
        src = di.ImageNetSource("imagenet2012", "train")
        cache = str(tmp_path / "labels.npy")
        labels = di.scan_labels(src, workers=2, chunk=256, cache=cache)
        direct = np.array([src.label(i) for i in range(N_MOCK)])
    np.testing.assert_array_equal(labels, direct)  # skip-decoding view == full reads
    # a cache of the right length is used as it is; one of another length is rescanned
    np.save(cache, np.full(N_MOCK, 7, np.int32))
    assert np.all(di.scan_labels(src, cache=cache) == 7)
    np.save(cache, np.zeros(3, np.int32))
    np.testing.assert_array_equal(di.scan_labels(src, workers=0, cache=cache), direct)

    classes = di.draw_classes(1000, 20, 0)
    sub = di.class_subset(src, classes, direct)
    want = np.flatnonzero(np.isin(direct, classes))
    assert len(want) > 0
    np.testing.assert_array_equal(sub.indices, want)
    assert sub.num_classes == 20
    new = np.array([sub.label(j) for j in range(len(sub))])
    np.testing.assert_array_equal(classes[new], direct[want])  # relabelled, not reordered
    assert set(new) <= set(range(20))
    img, lab = sub[0]
    assert img.ndim == 3 and img.shape[-1] == 3 and lab == new[0]
    with pytest.raises(ValueError, match="distinct"):
        di.class_subset(src, [1, 1], direct)
    with pytest.raises(ValueError, match="one label per record"):
        di.class_subset(src, classes, direct[:10])


def test_imagenet20_split_is_disjoint_covers_the_subset_and_streams(tmp_path, monkeypatch):
    monkeypatch.setenv(wdata.CACHE_ENV_VAR, str(tmp_path))
    with _mock():
        d = wdata.build_data(_config(dataset="imagenet20", batch_size=4, flip=True), split=True)
        again = wdata.build_data(_config(dataset="imagenet20", batch_size=4), split=True)
        ref = di.ImageNetSource("imagenet2012", "train")
        labels = np.array([ref.label(i) for i in range(N_MOCK)])
        val = di.ImageNetSource("imagenet2012", "validation")
        val_labels = np.array([val.label(i) for i in range(N_MOCK)])
        classes = di.draw_classes(1000, 20, 0)
        subset = d.full.ds  # the class subset of the train split (no limit)
        a = subset.indices[d.weights.ds.indices]  # record indices of the two halves
        p = subset.indices[d.arch.ds.indices]
        assert len(np.intersect1d(a, p)) == 0
        np.testing.assert_array_equal(np.sort(np.concatenate([a, p])), subset.indices)
        np.testing.assert_array_equal(subset.indices, np.flatnonzero(np.isin(labels, classes)))
        assert abs(len(a) - len(p)) <= 1  # portion 0.5
        np.testing.assert_array_equal(again.weights.ds.indices, d.weights.ds.indices)
        assert d.num_classes == 20 and d.input_shape == (16, 16, 3)
        assert d.info["labels"] == [int(c) for c in classes] and len(d.info["wnids"]) == 20
        assert d.info["wnids"][0] == di.class_names(ref)[classes[0]]

        x, y = next(iter(d.epochs(d.weights)(0)))
        assert x.shape == (4, 16, 16, 3) and y.dtype == np.int32
        np.testing.assert_array_equal(y, [d.weights.ds.label(i) for i in _first_batch(d.weights)])
        seen = np.concatenate([b[1][b[2] > 0] for b in d.test()])
        want = np.flatnonzero(np.isin(val_labels, classes))
        np.testing.assert_array_equal(seen, np.searchsorted(classes, val_labels[want]))
    json.dumps(d.info)  # what compress writes to classes.json


def _first_batch(loader):
    order = np.random.default_rng([loader.seed, 0]).permutation(loader.n)
    return order[: loader.batch_size]


def test_bilinear_upsampling_closed_form_and_constants():
    a, b = 1.0, 5.0
    img = jnp.array([[a, b], [a, b]], jnp.float32)[None, :, :, None]
    out = np.asarray(wdata.resize_images(img, 4))[0, :, :, 0]
    # half-pixel centres: output column j samples input x = (j + 0.5) / 2 - 0.5, clamped
    row = [a, 0.75 * a + 0.25 * b, 0.25 * a + 0.75 * b, b]
    np.testing.assert_allclose(out, np.tile(row, (4, 1)), rtol=1e-6)
    const = jnp.full((2, 7, 5, 3), -0.3, jnp.float32)
    np.testing.assert_allclose(np.asarray(wdata.resize_images(const, 20)), -0.3, rtol=1e-6)
    assert wdata.resize_images(const[:, :5], 5) is not None
    with pytest.raises(ValueError, match="B, H, W, C"):
        wdata.resize_images(const[0], 4)


def test_in_memory_resize_keeps_labels_and_gives_the_asked_shape():
    config = _config(dataset="digits", batch_size=8, limit=64)
    d = wdata.build_data(config, split=True)
    assert d.input_shape == (16, 16, 1) and d.num_classes == 10
    raw = list(d.weights.epoch(0))
    prepared = list(d.epochs(d.weights)(0))
    assert len(raw) == len(prepared) > 0
    for (x0, y0), (x1, y1) in zip(raw, prepared):
        assert x0.shape == (8, 8, 8, 1) and x1.shape == (8, 16, 16, 1)
        np.testing.assert_array_equal(y0, y1)
        # bilinear weights sum to one: the mean brightness is kept (up to edge effects)
        assert abs(float(np.mean(x1)) - float(np.mean(x0))) < 0.05
    (xt, yt, mt), *_ = list(d.test())
    assert xt.shape == (8, 16, 16, 1) and mt.shape == (8,)
    # the split halves are disjoint and cover the first 64 examples
    a, p = d.weights.indices, d.arch.indices
    assert len(np.intersect1d(a, p)) == 0 and sorted(np.concatenate([a, p])) == list(range(64))
    config.model.input_size = -1
    with pytest.raises(ValueError, match="input_size"):
        wdata.build_data(config, split=False)


def test_label_view_skips_image_decoding_on_a_copy():
    import dataclasses

    @dataclasses.dataclass
    class FakeTfdsSource:  # the fields scan_labels relies on, as in ArrayRecordDataSource
        decoders: object = None

        def __len__(self):
            return 3

        def __getitem__(self, i):
            image = b"jpeg" if self.decoders else np.zeros((2, 2, 3), np.uint8)
            return {"image": image, "label": 10 + i}

    src = di.ImageNetSource.from_data_source(FakeTfdsSource(), num_classes=20)
    view = di.label_view(src)
    assert view is not src._src and src._src.decoders is None
    assert isinstance(view.decoders["image"], tfds.decode.SkipDecoding)
    assert view[0]["image"] == b"jpeg"
    np.testing.assert_array_equal(di.scan_labels(src), [10, 11, 12])


@pytest.mark.slow
def test_compress_on_mock_imagenet20_writes_the_classes(tmp_path, monkeypatch):
    """``jaxnas compress`` end to end on mock ImageNet-20 records (16x16 crops, a tiny
    PreActResNet, one search and one fine-tuning epoch): runs, and ``classes.json`` holds
    the seeded draw and its WordNet ids."""
    from jaxnas.width_compress import compress

    monkeypatch.setenv(wdata.CACHE_ENV_VAR, str(tmp_path / "cache"))
    c = _config(dataset="imagenet20", batch_size=4, flip=True)
    c.model.name = "preactresnet"
    c.model.stages, c.model.blocks, c.model.strides, c.model.stem = (4, 8), (1, 1), (1, 2), 4
    c.search.epochs = c.finetune.epochs = 1
    c.search.schedule = c.finetune.schedule = "constant"
    c.run.log_every_steps = 0
    c.run.eval_limit = 8
    with _mock():
        s = compress(c, str(tmp_path / "wd"))
    info = json.load(open(tmp_path / "wd" / "classes.json"))
    assert info["labels"] == [int(v) for v in di.draw_classes(1000, 20, 0)]
    assert len(info["wnids"]) == 20 and all(w.startswith("n") for w in info["wnids"])
    assert info["train_examples"] > 0 and s["dataset"] == "imagenet20"
    assert 0.0 <= s["error_finetuned"] <= 1.0


@pytest.mark.slow
def test_compress_with_input_size_runs_at_the_resized_shape(tmp_path):
    """``model.input_size`` through ``jaxnas compress`` (DIGITS 8x8 -> 16x16 on device): the
    pruned network is recorded at 16x16, and its multiply-adds are 4x those at 8x8 for
    this all-conv network up to the head (each conv's output grows by (16/8)^2)."""
    from jaxnas.width_compress import compress

    def run(size, name):
        c = _config(dataset="digits", batch_size=8, limit=64)
        c.model.name = "preactresnet"
        c.model.stages, c.model.blocks, c.model.strides, c.model.stem = (4,), (1,), (1,), 4
        c.model.input_size = size
        c.search.epochs = c.finetune.epochs = 1
        c.search.schedule = c.finetune.schedule = "constant"
        c.run.log_every_steps = 0
        c.run.eval_limit = 16
        return compress(c, str(tmp_path / name))

    big, small = run(16, "r16"), run(0, "r8")
    pruned = json.load(open(big["pruned_json"]))
    assert pruned["input_shape"] == [16, 16, 1]
    head = 4 * 10  # the linear head's multiply-adds do not depend on the input size
    assert big["macs"] - head == 4 * (small["macs"] - head)
