"""The PTB-format text loader: vocabulary, <eos>/<unk>, batchify, BPTT windows."""

from __future__ import annotations

import os

import numpy as np
import pytest
from scipy.stats import norm

from jaxnas.data import DatasetNotFoundError
from jaxnas.data_text import (
    EOS,
    UNK,
    TextStream,
    batchify,
    load_corpus,
    read_words,
    unigram_perplexity,
    window_lengths,
)

TINY = os.path.join(os.path.dirname(__file__), "data", "tiny_ptb")


@pytest.fixture(scope="module")
def corpus():
    return load_corpus(TINY)


def _write(tmp_path, train, valid, test):
    for name, text in (("train", train), ("valid", valid), ("test", test)):
        (tmp_path / f"ptb.{name}.txt").write_text(text)
    return tmp_path


def test_tiny_corpus_vocab_eos_unk(corpus):
    lines = open(os.path.join(TINY, "ptb.train.txt"), encoding="utf-8").read().splitlines()
    words = [w for line in lines for w in line.split()]
    assert len(corpus.train) == len(words) + len(lines)  # every line ends in <eos>
    assert corpus.vocab[0] == words[0]  # order of first appearance
    assert set(corpus.vocab) == set(words) | {EOS}
    assert UNK in corpus.vocab and EOS in corpus.vocab
    eos = corpus.vocab.index(EOS)
    assert int(np.sum(corpus.train == eos)) == len(lines)
    # ids decode back to the file's words
    decoded = [corpus.vocab[i] for i in corpus.train[: len(lines[0].split()) + 1]]
    assert decoded == lines[0].split() + [EOS]
    for split in (corpus.valid, corpus.test):
        assert split.min() >= 0 and split.max() < corpus.vocab_size


def test_out_of_vocabulary_words_become_unk(tmp_path):
    d = _write(tmp_path, "a b a\nb\n", "a c\n", "d\n")
    c = load_corpus(d)
    assert c.vocab == ("a", "b", EOS, UNK)  # train had no <unk>: appended
    assert [c.vocab[i] for i in c.valid] == ["a", UNK, EOS]
    assert [c.vocab[i] for i in c.test] == [UNK, EOS]
    assert read_words(d / "ptb.train.txt") == ["a", "b", "a", EOS, "b", EOS]


def test_missing_data_is_one_line_error_with_where_to_get_it(tmp_path):
    with pytest.raises(DatasetNotFoundError) as e:
        load_corpus(tmp_path / "nowhere")
    msg = str(e.value)
    assert "\n" not in msg and "ptb.train.txt" in msg and "github.com" in msg


def test_batchify_contiguous_streams():
    b = batchify(np.arange(23), 4)
    assert b.shape == (4, 5) and b.dtype == np.int32
    for row in range(4):
        np.testing.assert_array_equal(b[row], np.arange(5 * row, 5 * row + 5))
    with pytest.raises(ValueError, match="too few"):
        batchify(np.arange(5), 4)


def test_windows_cover_the_stream_and_are_deterministic():
    n = 5000
    for mode in ("normal", "two_point", "fixed"):
        w = window_lengths(n, 35, seed=3, epoch=2, mode=mode)
        assert w == window_lengths(n, 35, seed=3, epoch=2, mode=mode)
        starts = [s for s, _ in w]
        assert starts[0] == 0
        assert all(s + ln == s2 for (s, ln), s2 in zip(w, starts[1:]))  # contiguous
        # DARTS stops when fewer than 2 tokens are left (while i < n - 1 - 1)
        assert w[-1][0] + w[-1][1] in (n - 2, n - 1)
    assert window_lengths(n, 35, seed=3, epoch=2) != window_lengths(n, 35, seed=3, epoch=3)
    assert window_lengths(n, 35, seed=3, epoch=2) != window_lengths(n, 35, seed=4, epoch=2)


def test_window_length_distribution_matches_darts():
    n = 400_000
    # train_search.py: int(bptt) or int(bptt / 2), the short one with probability 0.05
    lens = np.array([ln for _, ln in window_lengths(n, 35, seed=0, epoch=0, mode="two_point")])
    body = lens[:-1]
    assert set(body.tolist()) == {35, 17}
    assert abs(np.mean(body == 17) - 0.05) < 0.01
    # train.py: max(5, int(N(base, 5))) clipped at bptt + 20, base 35 (0.95) or 17.5
    lens = np.array([ln for _, ln in window_lengths(n, 35, seed=0, epoch=0, mode="normal")])
    body = lens[:-1]
    assert body.min() >= 5 and body.max() <= 55
    k = np.arange(-100, 200)  # P(int(X) = k) = Phi(k + 1) - Phi(k) for X > 0
    pmf = sum(
        w * (norm.cdf((k + 1 - base) / 5) - norm.cdf((k - base) / 5))
        for w, base in ((0.95, 35.0), (0.05, 17.5))
    )
    expected = np.sum(pmf * np.clip(k, 5, 55))
    assert abs(body.mean() - expected) < 0.15  # std of the mean ~ 0.05
    assert window_lengths(100, 35, seed=0, epoch=0, mode="fixed")[0] == (0, 35)


def test_stream_windows_are_shifted_padded_and_reassemble(corpus):
    s = TextStream(corpus.train, 4, 10, seed=1, mode="normal", max_delta=5)
    seen = []
    for x, y, n in s.epoch(0):
        assert x.shape == y.shape == (4, 15)
        n = int(n)
        np.testing.assert_array_equal(x[:, 1:n], y[:, : n - 1])  # targets = inputs shifted
        assert not x[:, n:].any() and not y[:, n:].any()
        seen.append(x[:, :n])
    seen = np.concatenate(seen, 1)
    assert seen.shape[1] >= s.data.shape[1] - 2
    np.testing.assert_array_equal(seen, s.data[:, : seen.shape[1]])


def test_unigram_perplexity_hand_case(tmp_path):
    c = load_corpus(_write(tmp_path, "a a b\n", "a b\n", "a\n"))
    # p(a) = 2/4, p(b) = 1/4, p(<eos>) = 1/4; valid: a b <eos>
    assert unigram_perplexity(c) == pytest.approx(2 ** (5 / 3))
