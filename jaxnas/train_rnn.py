"""Retraining a recurrent cell on PTB-format text, AWD-LSTM / DARTS style (``train_rnn``).

DARTS' ``rnn/train.py`` (after Merity et al., 2018, "AWD-LSTM"), which the
SparseNAS paper follows with batch 64 and 4000 epochs:

    w <- w - lr_t (clip_0.25(grad loss) + wd w),     lr_t = lr * seq_len_t / bptt

with ``loss`` = mean NLL + ``tar_beta`` * temporal activation regularisation,
SGD lr 20, weight decay 8e-7, embedding = hidden = 850, dropouts output 0.75,
hidden 0.25, x 0.75, input 0.2, embedding (words) 0.1, variable BPTT windows
(``seq_len ~ N(35, 5)`` or ``N(17.5, 5)``, clipped to [5, 55];
:func:`jaxnas.data_text.window_lengths`), hidden state carried across windows.

**ASGD** (averaged SGD, AWD's NT-ASGD): once the validation loss stops
improving -- the *non-monotone* trigger ``len(history) > n and val > min(history[:-n])``
with ``n = 5`` (:func:`nonmono_switch`) -- the update stays the same SGD step
but a running average of the iterates is kept from then on,

    a_k = a_{k-1} + (w_k - a_{k-1}) / k        (= mean of w_1 .. w_k, :func:`asgd_average`)

and evaluation, the best checkpoint and the test perplexity use the average.
Perplexity is ``exp(mean NLL)`` over every predicted token of a split.

:func:`train` runs on the one experiment loop (:mod:`jaxnas.loop`): ``config.json``,
``genotype.json`` and its picture, ``log.txt`` (a line per epoch), ``metrics.jsonl``,
TensorBoard scalars under ``tb/`` (``run.tensorboard``: train/valid loss and
perplexity, lr, gradient norm, ``asgd`` and ``asgd_switch_epoch``), a progress bar,
orbax ``checkpoints/`` keyed by the global step, every epoch and on SIGTERM/SIGINT
(:class:`jaxnas.runtime.StopFlag`), a bit-exact resume from either, ``best/`` +
``best.json`` (lowest validation perplexity), ``summary.json`` (best validation and
its test perplexity, parameters). :func:`evaluate` re-reads a checkpoint and reports
test loss and perplexity (``jaxnas eval``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxnas import loop, plots, xla
from jaxnas.config import validate
from jaxnas.data_text import TextStream, load_corpus
from jaxnas.rnn.draw import save_pictures
from jaxnas.rnn.genotype import RNNGenotype, get_rnn_genotype
from jaxnas.rnn.model import (
    DARTS_DROPOUTS,
    Dropouts,
    discrete_cell,
    init_discrete_params,
    lm_forward,
    lm_loss,
)
from jaxnas.rnn.sgd import darts_sgd, sgd_apply, window_lr
from jaxnas.runtime import RunError, restore_for_eval, write_json
from jaxnas.spaces import GenotypeError

__all__ = [
    "RNNTrainer",
    "RNNTrainState",
    "asgd_average",
    "default_config",
    "evaluate",
    "nonmono_switch",
    "param_count",
    "perplexity",
    "train",
]

logger = logging.getLogger("jaxnas")


def default_config() -> ml_collections.ConfigDict:
    """Keys of ``method = "train_rnn"`` with DARTS' PTB evaluation values (module docstring).

    model: ``genotype`` (``"darts_v2"``, ``"darts_v1"`` or a genotype JSON, e.g. a
      search's ``genotype.json``), ``size`` (embedding = hidden), dropouts, ``tar_beta``.
    optim: ``lr``, ``weight_decay``, ``grad_clip``, ``asgd`` (switch to averaging),
      ``nonmono`` (the trigger's window).
    train: ``epochs``, ``eval_batch_size`` (DARTS 10), ``test_batch_size`` (DARTS 1).
    text: ``bptt``, ``window`` (``"normal"``: DARTS' train.py), ``max_seq_len_delta``.
    The shared ``data`` keys used: ``dataset`` (``"ptb"``), ``data_dir``, ``batch_size``.
    """
    c = ml_collections.ConfigDict()
    c.model = ml_collections.ConfigDict(
        dict(
            genotype="darts_v2",
            size=850,
            **DARTS_DROPOUTS,
            dropoute=0.1,
            tar_beta=1e-3,
        )
    )
    c.optim = ml_collections.ConfigDict(
        dict(lr=20.0, weight_decay=8e-7, grad_clip=0.25, asgd=True, nonmono=5)
    )
    c.train = ml_collections.ConfigDict(dict(epochs=4000, eval_batch_size=10, test_batch_size=1))
    c.text = ml_collections.ConfigDict(dict(bptt=35, window="normal", max_seq_len_delta=20))
    return c


# ----------------------------------------------------------------------- pure pieces


def asgd_average(avg: Any, count: jax.Array, params: Any) -> tuple[Any, jax.Array]:
    """One ASGD averaging step: ``k = count + 1``, ``a_k = a_{k-1} + (w - a_{k-1}) / k``.

    Starting from ``count = 0`` the result after ``k`` calls is the arithmetic mean
    of the ``k`` iterates passed in.  (PyTorch's ``ASGD(t0=0)``, used by AWD/DARTS,
    restarts its average at the second iterate; ours includes the first.)
    """
    k = count + 1
    new = jax.tree.map(lambda a, w: a + (w - a) / k.astype(a.dtype), avg, params)
    return new, k


def nonmono_switch(history: Sequence[float], val_loss: float, nonmono: int) -> bool:
    """AWD-LSTM's non-monotone trigger: switch to ASGD when ``len(history) > nonmono``
    and ``val_loss`` is worse than the best of all but the last ``nonmono`` epochs."""
    return len(history) > nonmono and val_loss > min(history[:-nonmono])


def perplexity(nll_sum: float, count: float) -> float:
    """``exp(total NLL / predicted tokens)``."""
    return float(np.exp(nll_sum / count))


def param_count(params: Any) -> int:
    """Weights of the language model (the decoder shares the embedding)."""
    return int(sum(np.size(x) for x in jax.tree.leaves(params)))


class RNNTrainState(flax.struct.PyTreeNode):
    step: jax.Array  # int32
    params: Any
    avg: Any  # the ASGD average (equal to params until the switch)
    avg_count: jax.Array  # int32: iterates averaged
    asgd: jax.Array  # bool: averaging on
    w_opt: Any
    hidden: jax.Array  # (B, H) carried across windows
    rng: jax.Array  # uint32 key data


class RNNTrainer:
    """The jitted ``train_step(state, window)`` and ``eval_step(params, window, hidden)``."""

    def __init__(self, config: ml_collections.ConfigDict, genotype: RNNGenotype, vocab_size: int):
        m, o = config.model, config.optim
        self.config, self.genotype, self.vocab_size = config, genotype, vocab_size
        self.dropouts = Dropouts.from_config(m)
        self.tx = darts_sgd(o.grad_clip, o.weight_decay)
        self.train_step = jax.jit(self._train_step)
        self.eval_step = jax.jit(self._eval_step)

    def init(self, rng: jax.Array, batch_size: int) -> RNNTrainState:
        key = jax.random.wrap_key_data(jnp.asarray(rng, jnp.uint32))
        k_w, k_s = jax.random.split(key)
        params = init_discrete_params(k_w, self.vocab_size, self.config.model.size, self.genotype)
        return RNNTrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            avg=params,
            avg_count=jnp.zeros((), jnp.int32),
            asgd=jnp.zeros((), bool),
            w_opt=self.tx.init(params),
            hidden=jnp.zeros((batch_size, self.config.model.size), jnp.float32),
            rng=jax.random.key_data(k_s),
        )

    def loss(self, params, window, hidden, rng, *, train):
        x, y, n = window

        cell = discrete_cell(params, self.genotype)
        logits, h, raw = lm_forward(
            params, cell, x, hidden, n, dropouts=self.dropouts, rng=rng, train=train
        )
        tar = self.config.model.tar_beta if train else 0.0
        loss, (nll_sum, count) = lm_loss(logits, y, n, raw, tar)
        return loss, (h, nll_sum, count)

    def _train_step(self, state: RNNTrainState, window):
        key = jax.random.wrap_key_data(state.rng)
        rng_next, rng = jax.random.split(key)
        lr = window_lr(self.config.optim.lr, window[2], self.config.text.bptt)
        (_, (h, nll_sum, count)), g = jax.value_and_grad(
            lambda w: self.loss(w, window, state.hidden, rng, train=True), has_aux=True
        )(state.params)
        params, w_opt = sgd_apply(self.tx, g, state.w_opt, state.params, lr)
        avg, count_avg = asgd_average(state.avg, state.avg_count, params)
        keep = state.asgd
        avg = jax.tree.map(lambda a, old: jnp.where(keep, a, old), avg, state.avg)
        new = state.replace(
            step=state.step + 1,
            params=params,
            avg=avg,
            avg_count=jnp.where(keep, count_avg, state.avg_count),
            w_opt=w_opt,
            hidden=h,
            rng=jax.random.key_data(rng_next),
        )
        return new, {"loss": nll_sum / count, "lr": lr, "grad_norm": optax.tree.norm(g)}

    def _eval_step(self, params, window, hidden):
        _, (h, nll_sum, count) = self.loss(params, window, hidden, None, train=False)
        return nll_sum, count, h

    def eval_params(self, state: RNNTrainState) -> Any:
        """The ASGD average once averaging is on, else the weights."""
        return state.avg if bool(state.asgd) else state.params

    def evaluate(self, params: Any, stream: TextStream) -> float:
        """Perplexity over ``stream`` (hidden state carried across its windows)."""
        hidden = jnp.zeros((stream.batch_size, self.config.model.size), jnp.float32)
        total, count = 0.0, 0.0
        for window in stream.epoch(0):
            s, c, hidden = self.eval_step(params, window, hidden)
            total, count = total + float(s), count + float(c)
        return perplexity(total, count)


# -------------------------------------------------------------------------------- loop


def _genotype(config: ml_collections.ConfigDict, override: Any) -> RNNGenotype:
    if isinstance(override, RNNGenotype):
        return override
    try:
        return get_rnn_genotype(override or config.model.genotype)
    except GenotypeError as e:
        raise RunError(f"model.genotype: {e}") from e


def _streams(config: ml_collections.ConfigDict, corpus: Any = None):
    """``(corpus, train, valid, test)``: the splits as BPTT window streams."""
    d, t = config.data, config.text
    if d.dataset != "ptb":
        raise RunError("train_rnn reads PTB-format text: set data.dataset='ptb'")
    corpus = corpus or load_corpus(os.path.expanduser(d.data_dir or "~/data/ptb"))
    try:
        kw = dict(bptt=t.bptt, seed=config.seed, max_delta=t.max_seq_len_delta)
        train = TextStream(corpus.train, d.batch_size, mode=t.window, **kw)
        valid = TextStream(corpus.valid, config.train.eval_batch_size, **kw)
        test = TextStream(corpus.test, config.train.test_batch_size, **kw)
    except ValueError as e:
        raise RunError(f"data: {e}") from e
    return corpus, train, valid, test


def _check_settings(config: ml_collections.ConfigDict) -> None:
    if int(config.optim.nonmono) < 1:
        raise RunError(f"optim.nonmono must be >= 1, got {config.optim.nonmono}")
    if int(config.train.epochs) < 1:
        raise RunError(f"train.epochs must be >= 1, got {config.train.epochs}")


@dataclasses.dataclass(frozen=True)
class RNNTrainWorkdir(loop.Workdir):
    """A ``train_rnn`` workdir: the loop's files (:class:`jaxnas.loop.Workdir`), the
    cell's ``genotype.json`` and picture, ``eval.json``."""

    genotype = property(lambda self: self.path("genotype.json"))
    genotype_prefix = property(lambda self: self.path("genotype"))
    eval_json = property(lambda self: self.path("eval.json"))


class RNNTrainExperiment(loop.Experiment):
    """AWD-style retraining of a recurrent cell as an experiment of the one loop.

    What a resume restores on the host comes back from the (truncated) records: the
    validation history that the non-monotone trigger reads and the ASGD switch epoch.
    """

    name = "train_rnn"
    best_metric = "valid/ppl"
    best_mode = "min"
    outputs = ("eval.json",)
    workdir_class = RNNTrainWorkdir

    def __init__(self, config: ml_collections.ConfigDict, genotype: Any, corpus: Any):
        self.config = config
        self.genotype = genotype
        self._corpus = corpus
        self.epochs = int(config.train.epochs)
        self.history: list[float] = []  # validation losses, for the non-monotone trigger
        self.asgd_epoch: int | None = None
        self._windows: dict[int, int] = {}

    def setup(self, wd: RNNTrainWorkdir, latest_step: int | None) -> None:
        config = self.config
        self.cell = loop.resumed_artifact(
            wd.genotype, self.genotype, lambda g: _genotype(config, g), latest_step
        )
        corpus, self.stream, self.valid, self.test = _streams(config, self._corpus)
        self.trainer = RNNTrainer(config, self.cell, corpus.vocab_size)
        logger.info(
            "train_rnn: %s, vocabulary %d, %d train tokens, ~%d windows/epoch x %d epochs, "
            "workdir %s",
            self.cell,
            corpus.vocab_size,
            len(corpus.train),
            len(self.stream),
            self.epochs,
            wd.root,
        )

    def steps_in(self, epoch: int) -> int:
        if epoch not in self._windows:
            self._windows = {epoch: len(self.stream.windows(epoch))}
        return self._windows[epoch]

    def init(self) -> RNNTrainState:
        state = self.trainer.init(
            jax.random.key_data(jax.random.PRNGKey(self.config.seed)), self.config.data.batch_size
        )
        self.n_params = param_count(state.params)
        logger.info("%.3fM parameters", self.n_params / 1e6)
        return state

    def batches(self, epoch: int):
        return self.stream.epoch(epoch)

    def step(self, state: RNNTrainState, window: Any):
        return self.trainer.train_step(state, window)

    def name_metrics(self, means):
        return _named(means)

    def begin_epoch(self, state: RNNTrainState, epoch: int, skip: int) -> RNNTrainState:
        if skip == 0:  # the hidden state is carried across windows, reset per epoch
            state = state.replace(hidden=jnp.zeros_like(state.hidden))
        return state

    def start(self, wd: RNNTrainWorkdir, state: RNNTrainState, resumed_step: int | None) -> None:
        if self.primary:
            self.cell.save_json(wd.genotype)
        for r in plots.read_metrics(wd.metrics):  # the records up to the checkpoint
            self.history.append(r["valid/loss"])
            if r.get("asgd_switch_epoch") and self.asgd_epoch is None:
                self.asgd_epoch = r["epoch"]

    def end_epoch(self, wd: RNNTrainWorkdir, state: RNNTrainState, epoch: int):
        trainer, o = self.trainer, self.config.optim
        val_ppl = trainer.evaluate(trainer.eval_params(state), self.valid)
        val_loss = float(np.log(val_ppl))
        record: dict[str, Any] = {"valid/loss": val_loss, "valid/ppl": val_ppl}
        if o.asgd and not bool(state.asgd) and nonmono_switch(self.history, val_loss, o.nonmono):
            # averaging starts with the next iterate (AWD: ASGD(t0=0) from here)
            state = state.replace(
                asgd=jnp.ones((), bool), avg=state.params, avg_count=jnp.zeros((), jnp.int32)
            )
            self.asgd_epoch = epoch
            record["asgd_switch_epoch"] = epoch
            logger.info("switching to ASGD after epoch %d", epoch)
        self.history.append(val_loss)
        record["asgd"] = bool(state.asgd)
        return state, record

    def finish(self, wd: RNNTrainWorkdir, state: RNNTrainState, records: list[dict]):
        trainer = self.trainer
        test_ppl = None
        if records:
            best, _, step = restore_for_eval(wd.best, wd.checkpoints, state, root=wd.root)
            test_ppl = trainer.evaluate(trainer.eval_params(best), self.test)
            logger.info("the best state (step %d) has test perplexity %.2f", step, test_ppl)
        pictures: list[str] = []
        if self.primary:
            try:
                pictures = save_pictures(self.cell, wd.genotype_prefix)
            except Exception as e:  # noqa: BLE001 - a picture never stops a run
                logger.warning("could not draw the cell: %s", e)
        return {
            "genotype": str(self.cell),
            "genotype_pictures": pictures,
            "params_M": self.n_params / 1e6,
            "test_ppl": test_ppl,
            "asgd_epoch": self.asgd_epoch,
        }


def train(
    config: ml_collections.ConfigDict,
    workdir: str | os.PathLike,
    *,
    genotype: str | RNNGenotype | None = None,
    resume: bool = False,
    progress: bool = True,
    corpus: Any = None,
    on_step: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Train the cell ``model.genotype`` (or ``genotype``) and write ``workdir``.

    Args:
      config: a ``train_rnn`` config (:func:`default_config`).
      workdir: output folder: the loop's files (:mod:`jaxnas.loop`: ``config.json``,
        ``log.txt``, ``metrics.jsonl`` with an epoch record per epoch and a step record
        every ``run.log_every_steps``, ``tb/``, ``checkpoints/<step>`` every epoch and on
        SIGTERM/SIGINT, ``best/<step>`` + ``best.json`` for the lowest validation
        perplexity, ``curves.png``, ``summary.json``), ``genotype.json`` and its
        picture ``genotype_recurrent.{png,svg}``.
      genotype: a cell, a name (``darts_v2``) or a genotype JSON; default
        ``model.genotype``. A resumed run reads ``genotype.json`` back (and refuses a
        different ``genotype``).
      resume: continue from the latest checkpoint (an epoch's end or a signal's step);
        the result is bit-identical on CPU to an uninterrupted run.
      progress: a tqdm bar over each epoch's windows.
      corpus: a :class:`jaxnas.data_text.Corpus` to use instead of ``data.data_dir``.
      on_step: called as ``on_step(epoch, global_step)`` after every step (0-based epoch).

    Returns:
      The summary (also ``summary.json``): the loop's fields (``final``, the last epoch
      record; ``best``, the lowest ``valid/ppl`` as ``value`` with its ``epoch`` and
      ``step``; paths) and ``test_ppl`` (of the best state), ``params_M``,
      ``asgd_epoch`` (when averaging started, or None), ``genotype``.

    Raises:
      RunError: existing checkpoints without ``resume``; a checkpoint of another
        model; NaN/Inf (the last good checkpoint is kept); bad data settings.
      jaxnas.runtime.Interrupted: SIGTERM/SIGINT, after saving a checkpoint of the
        current step (after the epoch's end when it came during the last window).
    """
    xla.prepare()
    config = validate(config.to_dict() if hasattr(config, "to_dict") else dict(config))
    if config.method != "train_rnn":
        raise RunError(
            f"a recurrent retraining config has method='train_rnn', not {config.method!r}"
        )
    _check_settings(config)
    config.lock()
    return loop.run(
        RNNTrainExperiment(config, genotype, corpus),
        config,
        workdir,
        resume=resume,
        progress=progress,
        on_step=on_step,
    )


def _named(means: dict[str, float]) -> dict[str, float]:
    """Step metrics as record keys: ``train/loss`` (+ ``train/ppl``), ``lr``, ``grad_norm``."""
    out = {("train/" + k if k == "loss" else k): v for k, v in means.items()}
    if "train/loss" in out:
        out["train/ppl"] = float(np.exp(out["train/loss"]))
    return out


# -------------------------------------------------------------------------------- evaluation


def evaluate(
    checkpoint: str | os.PathLike,
    *,
    overrides: dict[str, Any] | None = None,
    which: str = "best",
    corpus: Any = None,
) -> dict[str, Any]:
    """Test (and validation) loss and perplexity of a ``train_rnn`` checkpoint (``jaxnas eval``).

    Args:
      checkpoint: a ``train_rnn`` workdir (its ``which`` state: ``"best"``, falling back
        to the latest, or ``"latest"``) or a folder ``workdir/{checkpoints,best}/<step>``.
      overrides: config values to change first (e.g. ``{"data.data_dir": ...}``).
      corpus: a :class:`jaxnas.data_text.Corpus` instead of ``data.data_dir``.

    Returns:
      ``test/loss`` (mean NLL per token), ``test/ppl``, ``valid/loss``, ``valid/ppl``
      (with the ASGD average once averaging was on, as training evaluates), ``params``,
      ``params_M``, ``asgd``, ``checkpoint``, ``step``; also written to ``workdir/eval.json``.

    Raises:
      RunError: not a ``train_rnn`` workdir or checkpoint, no checkpoint yet, or one of
        another model.
    """
    root, step, folder_which, config = loop.eval_target(checkpoint, "train_rnn", overrides)
    which = folder_which or which
    if which not in ("best", "latest", "checkpoints"):
        raise RunError(f"which must be 'best' or 'latest', got {which!r}")
    wd = RNNTrainWorkdir(root)
    if not os.path.exists(wd.genotype):
        raise RunError(f"{root} has no genotype.json")
    cell = _genotype(config, wd.genotype)
    corpus, _, valid, test = _streams(config, corpus)
    trainer = RNNTrainer(config, cell, corpus.vocab_size)
    target = trainer.init(
        jax.random.key_data(jax.random.PRNGKey(config.seed)), config.data.batch_size
    )
    state, folder, step = restore_for_eval(
        wd.best, wd.checkpoints, target, which=which, step=step, root=root
    )
    params = trainer.eval_params(state)
    test_ppl = trainer.evaluate(params, test)
    valid_ppl = trainer.evaluate(params, valid)
    n_params = param_count(state.params)
    out = {
        "test/loss": float(np.log(test_ppl)),
        "test/ppl": test_ppl,
        "valid/loss": float(np.log(valid_ppl)),
        "valid/ppl": valid_ppl,
        "params": n_params,
        "params_M": n_params / 1e6,
        "asgd": bool(state.asgd),
        "checkpoint": os.path.join(folder, str(step)),
        "step": int(step),
    }
    write_json(wd.eval_json, out)
    return out
