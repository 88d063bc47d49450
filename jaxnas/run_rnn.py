"""The recurrent cell search (SparseNAS or DARTS on DARTS' recurrent space) as an
experiment of the one loop (:mod:`jaxnas.loop`); the methods are
:class:`jaxnas.search.sparsenas_rnn.SparseNASRNN` (``method = "sparsenas_rnn"``) and
:class:`jaxnas.search.darts_rnn.DARTSRNN` (``"darts_rnn"``), both
:class:`jaxnas.search.rnn_search.RNNSearch`.

:func:`search` writes a search workdir (:class:`jaxnas.search_workdir.SearchWorkdir`:
``alphas/``, ``alphas.png``, ``genotype.json`` and its picture
``genotype_recurrent.{png,svg}`` (:mod:`jaxnas.rnn.draw`), beside the loop's files),
orbax checkpoints keyed by the global step every epoch and on SIGTERM/SIGINT, and a
resume from either ends with the same theta, genotype and records as an uninterrupted
run (bit-identical on CPU).  ``run.devices`` / ``run.distributed`` search on a data
mesh as the image search does (:func:`jaxnas.loop.run_mesh`,
:meth:`~jaxnas.search.sparsenas_rnn.SparseNASRNN.mesh_steps`): the windows' rows and
the hidden states split over the devices, the rest replicated.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxnas import loop, parallel, xla
from jaxnas.config import validate
from jaxnas.data_text import TextStream, load_corpus
from jaxnas.runtime import RunError
from jaxnas.search.darts_rnn import DARTSRNN
from jaxnas.search.rnn_search import RNNSearch, RNNSearchState
from jaxnas.search.sparsenas_rnn import SparseNASRNN
from jaxnas.search_workdir import (
    SearchWorkdir,
    drop_arch_after,
    save_arch,
    save_genotype,
    search_summary,
    write_arch_meta,
)

__all__ = ["RNN_METHODS", "RNNSearchExperiment", "evaluate_perplexity", "search"]

#: the recurrent searches by ``method``
RNN_METHODS: dict[str, type[RNNSearch]] = {c.name: c for c in (SparseNASRNN, DARTSRNN)}

logger = logging.getLogger("jaxnas")

#: the recurrent cell's pictures (:func:`jaxnas.rnn.draw.save_pictures`, through
#: ``jaxnas.search_spaces.RNN_SPACE``)
RNN_PICTURES = ("genotype_recurrent.png", "genotype_recurrent.svg")


def evaluate_perplexity(
    method: Any,
    state: Any,
    stream: TextStream,
    batch_size: int,
    *,
    mesh: Any = None,
    eval_step: Callable | None = None,
) -> float:
    """``exp(total NLL / tokens)`` over ``stream`` with the hidden state carried across
    windows; on the data mesh ``mesh`` (the ``batch_size`` rows split over its devices)
    with ``eval_step`` from ``method.mesh_steps(mesh)``."""
    hidden = np.zeros((batch_size, method.config.model.size), np.float32)
    if mesh is None:
        eval_step, hidden = method.eval_step, jnp.asarray(hidden)
    else:
        hidden = parallel.shard_batch(hidden, mesh)
    total, count = 0.0, 0.0
    for window in stream.epoch(0):
        s, c, hidden = eval_step(state, _on_mesh(window, mesh), hidden)
        total, count = total + float(s), count + float(c)
    return float(np.exp(total / count))


def _on_mesh(window: tuple, mesh: Any) -> tuple:
    """A window ``(x (B, T), y (B, T), n)`` as global arrays: rows split, ``n`` replicated."""
    if mesh is None:
        return window
    x, y, n = window
    return (*parallel.shard_batch((x, y), mesh), parallel.replicate(np.asarray(n), mesh))


def _streams(config: ml_collections.ConfigDict, corpus=None):
    d, t = config.data, config.text
    if d.dataset != "ptb":
        raise RunError(f"{config.method} reads PTB-format text: set data.dataset='ptb'")
    corpus = corpus or load_corpus(os.path.expanduser(d.data_dir or "~/data/ptb"))
    try:
        kw = dict(bptt=t.bptt, seed=config.seed, max_delta=t.max_seq_len_delta)
        train = TextStream(corpus.train, d.batch_size, mode=t.window, **kw)
        # architecture windows: the validation split at the training window's position
        arch = TextStream(corpus.valid, d.batch_size, mode="fixed", **kw)
        valid = TextStream(corpus.valid, t.eval_batch_size, mode="fixed", **kw)
    except ValueError as e:
        raise RunError(f"data: {e}") from e
    return corpus, train, arch, valid


def _arch_window(stream: TextStream, start: int, max_len: int):
    """DARTS: ``get_batch(search_data, i % (len - 1))``, length ``min(bptt, len - 1 - i)``."""
    n = stream.data.shape[1]
    i = start % (n - 1)
    seq_len = min(stream.bptt, n - 1 - i)
    x = np.zeros((stream.batch_size, max_len), np.int32)
    y = np.zeros_like(x)
    x[:, :seq_len] = stream.data[:, i : i + seq_len]
    y[:, :seq_len] = stream.data[:, i + 1 : i + 1 + seq_len]
    return x, y, np.int32(seq_len)


class RNNSearchExperiment(loop.Experiment):
    """A recurrent cell search as an experiment of the one loop (:func:`search`)."""

    workdir_class = SearchWorkdir
    outputs = ("genotype.json", "alphas", "alphas.png", *RNN_PICTURES)
    data_parallel = True

    def __init__(self, config: ml_collections.ConfigDict, corpus: Any):
        self.config = config
        self._corpus = corpus
        self.epochs = int(config.search.epochs)
        self.name = f"{config.method} search"
        self._windows: dict[int, list[tuple[int, int]]] = {}

    def setup(self, wd: SearchWorkdir, latest_step: int | None) -> None:
        config = self.config
        self.mesh = loop.run_mesh(config, batch_sizes=("text.eval_batch_size",))
        corpus, self.train, self.arch_stream, self.valid = _streams(config, self._corpus)
        try:
            self.method = RNN_METHODS[config.method](
                config, vocab_size=corpus.vocab_size, steps_per_epoch=len(self.train)
            )
        except ValueError as e:
            raise RunError(f"cannot set up method {config.method!r}: {e}") from e
        self.train_step, self.eval_step = self.method.train_step, self.method.eval_step
        devices = 1 if self.mesh is None else self.mesh.size
        if self.mesh is not None:  # the loop owns the state: its buffers are donated
            self.train_step, self.eval_step = self.method.mesh_steps(self.mesh, donate=True)
        logger.info(
            "%s search: vocabulary %d, %d train tokens, ~%d windows/epoch x %d epochs, "
            "global batch %d on %d device(s)%s, workdir %s",
            self.method.name,
            corpus.vocab_size,
            len(corpus.train),
            len(self.train),
            self.epochs,
            config.data.batch_size,
            devices,
            f" in {jax.process_count()} processes" if jax.process_count() > 1 else "",
            wd.root,
        )

    def windows(self, epoch: int) -> list[tuple[int, int]]:
        if epoch not in self._windows:
            self._windows = {epoch: self.train.windows(epoch)}
        return self._windows[epoch]

    def steps_in(self, epoch: int) -> int:
        return len(self.windows(epoch))

    def init(self) -> RNNSearchState:
        state = self.method.init(jax.random.PRNGKey(self.config.seed), self.config.data.batch_size)
        if self.mesh is None:
            return state
        return parallel.place(state, self.method.state_sharding(self.mesh))

    def batches(self, epoch: int):
        starts = [start for start, _ in self.windows(epoch)]
        for window, start in zip(self.train.epoch(epoch), starts):
            yield window, _arch_window(self.arch_stream, start, self.train.max_len)

    def step(self, state: RNNSearchState, batch: Any):
        return self.train_step(state, *(_on_mesh(w, self.mesh) for w in batch))

    def name_metrics(self, means):
        out = {}
        for k, v in means.items():
            if k == "loss":
                out["train/loss"], out["train/ppl"] = v, float(np.exp(v))
            else:
                out["arch/valid_loss" if k == "valid_loss" else k] = v
        return out

    def begin_epoch(self, state: RNNSearchState, epoch: int, skip: int) -> RNNSearchState:
        if skip == 0:  # DARTS resets both hidden states every epoch
            # two arrays, laid out as before: the mesh step donates each buffer once
            state = state.replace(
                h_train=jnp.zeros_like(state.h_train, device=state.h_train.sharding),
                h_valid=jnp.zeros_like(state.h_valid, device=state.h_valid.sharding),
            )
        return state

    def start(self, wd: SearchWorkdir, state: RNNSearchState, resumed_step: int | None) -> None:
        if not self.primary:
            return
        write_arch_meta(wd, self.method.name, self.method.primitives, self.method.edge_labels)
        if resumed_step is None:
            save_arch(wd, 0, self.method.arch_weights(state))
        else:
            drop_arch_after(wd, loop.locate_step(resumed_step, self.steps_in)[0])

    def end_epoch(self, wd: SearchWorkdir, state: RNNSearchState, epoch: int):
        method = self.method
        ppl = evaluate_perplexity(
            method,
            state,
            self.valid,
            self.config.text.eval_batch_size,
            mesh=self.mesh,
            eval_step=self.eval_step,
        )
        genotype = method.genotype(state)
        logger.info("genotype = %s", genotype)
        if self.primary:
            save_arch(
                wd,
                epoch,
                method.arch_weights(state),
                primitives=method.primitives,
                title=f"{method.name}: {method.arch_label}",
                edge_labels=method.edge_labels,
            )
            save_genotype(wd, genotype)
        return state, {
            "valid/loss": float(np.log(ppl)),
            "valid/ppl": ppl,
            "n_nodes": len([n for n in genotype.nodes if n]),
        }

    def finish(self, wd: SearchWorkdir, state: RNNSearchState, records: list[dict]):
        genotype = self.method.genotype(state)
        pictures = save_genotype(wd, genotype, pictures=True) if self.primary else []
        return search_summary(wd, self.method.name, genotype, pictures)


def search(
    config: ml_collections.ConfigDict,
    workdir: str | os.PathLike,
    *,
    resume: bool = False,
    progress: bool = True,
    corpus: Any = None,
    on_step: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Run a recurrent cell search and write everything to ``workdir``.

    Args:
      config: a ``sparsenas_rnn`` or ``darts_rnn`` config.
      workdir: output folder (a search workdir, :class:`jaxnas.search_workdir.SearchWorkdir`;
        the cell's picture is ``genotype_recurrent.{png,svg}``).
      resume: continue from the latest checkpoint (an epoch's end or a signal's step);
        ends with the same architecture, genotype and records as an uninterrupted run.
      progress: tqdm bar over each epoch's windows.
      corpus: a :class:`jaxnas.data_text.Corpus` to use instead of ``data.data_dir``.
      on_step: called as ``on_step(epoch, global_step)`` after every step (0-based epoch).

    Returns:
      The summary (also ``summary.json``): the loop's fields (:func:`jaxnas.loop.run`:
      ``final``, the last epoch record, ``curves_plot``, ``metrics``, ``checkpoints``,
      ``tensorboard``, ``wall_time``, ...) and ``method``, ``genotype`` (string),
      ``genotype_json``, ``genotype_pictures``, ``alphas_plot``.

    Raises:
      RunError: existing checkpoints without ``resume``, a checkpoint of another
        config, NaN/Inf (the last good checkpoint is kept), bad data settings, a
        workdir in use.
      jaxnas.runtime.Interrupted: SIGTERM/SIGINT, after a checkpoint of the current step
        (after the epoch's end when it came during the epoch's last window).
    """
    xla.prepare(search=True)
    config = validate(config.to_dict() if hasattr(config, "to_dict") else dict(config))
    config.lock()
    if config.run.distributed:
        parallel.initialize_distributed()
    # devices and batch splits checked before the workdir is touched
    loop.run_mesh(config, batch_sizes=("text.eval_batch_size",))
    return loop.run(
        RNNSearchExperiment(config, corpus),
        config,
        workdir,
        resume=resume,
        progress=progress,
        on_step=on_step,
    )
