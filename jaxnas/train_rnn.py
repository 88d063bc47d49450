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

:func:`train` is the loop: ``config.json``, ``genotype.json``, ``log.txt``,
``metrics.jsonl`` (one record per epoch), ``checkpoints/`` (orbax, every epoch,
exact resume), ``best/`` (lowest validation perplexity), ``summary.json`` (best
validation and its test perplexity, parameters).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxnas import plots
from jaxnas.config import config_to_json, validate
from jaxnas.data_text import TextStream, load_corpus
from jaxnas.genotype import GenotypeError
from jaxnas.rnn.genotype import RNNGenotype, get_rnn_genotype
from jaxnas.rnn.model import Dropouts, discrete_cell, init_discrete_params, lm_forward, lm_loss
from jaxnas.runtime import (
    FileLog,
    Meter,
    RunError,
    all_finite,
    append_jsonl,
    check_compatible,
    checkpoint_manager,
    diff_configs,
    first_nonfinite,
    restore,
)

__all__ = [
    "RNNTrainer",
    "RNNTrainState",
    "asgd_average",
    "default_config",
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
            dropout=0.75,
            dropouth=0.25,
            dropoutx=0.75,
            dropouti=0.2,
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
        self.dropouts = Dropouts(
            output=m.dropout,
            hidden=m.dropouth,
            x=m.dropoutx,
            input=m.dropouti,
            embedding=m.dropoute,
        )
        self.tx = optax.chain(
            optax.clip_by_global_norm(o.grad_clip),
            optax.add_decayed_weights(o.weight_decay),
            optax.scale(-1.0),
        )
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

        def cell(x_t, h, xm, hm):
            return discrete_cell(params, self.genotype, x_t, h, xm, hm)

        logits, h, raw = lm_forward(
            params, cell, x, hidden, n, dropouts=self.dropouts, rng=rng, train=train
        )
        tar = self.config.model.tar_beta if train else 0.0
        loss, (nll_sum, count) = lm_loss(logits, y, n, raw, tar)
        return loss, (h, nll_sum, count)

    def _train_step(self, state: RNNTrainState, window):
        key = jax.random.wrap_key_data(state.rng)
        rng_next, rng = jax.random.split(key)
        lr = self.config.optim.lr * window[2] / self.config.text.bptt  # DARTS: lr * seq_len / bptt
        (_, (h, nll_sum, count)), g = jax.value_and_grad(
            lambda w: self.loss(w, window, state.hidden, rng, train=True), has_aux=True
        )(state.params)
        upd, w_opt = self.tx.update(g, state.w_opt, state.params)
        params = jax.tree.map(lambda p, u: p + lr * u, state.params, upd)
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


def _genotype(config: ml_collections.ConfigDict, override: str | None) -> RNNGenotype:
    try:
        return get_rnn_genotype(override or config.model.genotype)
    except GenotypeError as e:
        raise RunError(f"model.genotype: {e}") from e


def train(
    config: ml_collections.ConfigDict,
    workdir: str | os.PathLike,
    *,
    genotype: str | None = None,
    resume: bool = False,
    progress: bool = True,
    corpus: Any = None,
) -> dict[str, Any]:
    """Train the cell ``model.genotype`` (or ``genotype``) and write ``workdir``.

    Returns the summary (also ``summary.json``): ``final`` (last epoch record),
    ``best`` (``{"epoch", "valid_ppl"}``), ``test_ppl`` (of the best state),
    ``params_M``, ``asgd_epoch`` (when averaging started, or None), ``metrics``.
    """
    import orbax.checkpoint as ocp
    from tqdm.auto import tqdm

    t_start = time.time()
    config = validate(config.to_dict() if hasattr(config, "to_dict") else dict(config))
    config.lock()
    root = os.fspath(workdir)
    os.makedirs(root, exist_ok=True)
    paths = {
        k: os.path.join(root, v)
        for k, v in dict(
            config="config.json",
            genotype="genotype.json",
            log="log.txt",
            metrics="metrics.jsonl",
            ckpt="checkpoints",
            best="best",
            summary="summary.json",
            curves="curves.png",
        ).items()
    }
    d, t, o = config.data, config.text, config.optim
    if d.dataset != "ptb":
        raise RunError("train_rnn reads PTB-format text: set data.dataset='ptb'")
    cell = _genotype(config, genotype)
    mngr = checkpoint_manager(paths["ckpt"], config.run.checkpoint_keep)
    best_mngr = checkpoint_manager(paths["best"], 1)
    try:
        latest = mngr.latest_step()
        if latest is not None and not resume:
            raise RunError(
                f"{root} already has checkpoints (last: epoch {latest}); pass --resume to "
                "continue, or use a fresh --workdir"
            )
        with FileLog(paths["log"]):
            if latest is not None and os.path.exists(paths["config"]):
                with open(paths["config"], encoding="utf-8") as f:
                    changed = diff_configs(json.load(f), json.loads(config_to_json(config)))
                if changed:
                    logger.warning("resuming with a changed config: %s", "; ".join(changed))
            with open(paths["config"], "w", encoding="utf-8") as f:
                f.write(config_to_json(config) + "\n")
            cell.save_json(paths["genotype"])
            corpus = corpus or load_corpus(os.path.expanduser(d.data_dir or "~/data/ptb"))
            try:
                kw = dict(bptt=t.bptt, seed=config.seed, max_delta=t.max_seq_len_delta)
                stream = TextStream(corpus.train, d.batch_size, mode=t.window, **kw)
                valid = TextStream(corpus.valid, config.train.eval_batch_size, **kw)
                test = TextStream(corpus.test, config.train.test_batch_size, **kw)
            except ValueError as e:
                raise RunError(f"data: {e}") from e
            trainer = RNNTrainer(config, cell, corpus.vocab_size)
            state = trainer.init(jax.random.key_data(jax.random.PRNGKey(config.seed)), d.batch_size)
            n_params = param_count(state.params)
            logger.info(
                "train_rnn: %s, %.3fM parameters, vocabulary %d, %d train tokens, workdir %s",
                cell,
                n_params / 1e6,
                corpus.vocab_size,
                len(corpus.train),
                root,
            )
            history: list[float] = []  # validation losses, for the non-monotone trigger
            best = {"epoch": 0, "valid_ppl": float("inf")}
            asgd_epoch = None
            start = 0
            if latest is not None:
                check_compatible(mngr, latest, state, paths["ckpt"])
                state = restore(mngr, latest, state, paths["ckpt"])
                start = latest
                records = [
                    r
                    for r in plots.read_metrics(paths["metrics"], kind=None)
                    if r.get("epoch", 0) <= latest
                ]
                with open(paths["metrics"], "w", encoding="utf-8") as f:
                    for r in records:
                        f.write(json.dumps(r, sort_keys=True) + "\n")
                for r in records:
                    history.append(r["valid/loss"])
                    if r["valid/ppl"] < best["valid_ppl"]:
                        best = {"epoch": r["epoch"], "valid_ppl": r["valid/ppl"]}
                    if r.get("asgd") and asgd_epoch is None:
                        asgd_epoch = r["epoch"]
                logger.info("resumed from %s/%d", paths["ckpt"], latest)
            elif os.path.exists(paths["metrics"]):
                os.remove(paths["metrics"])

            epochs = int(config.train.epochs)
            for epoch in range(start, epochs):
                t0 = time.time()
                state = state.replace(hidden=jnp.zeros_like(state.hidden))  # per-epoch reset
                meter = Meter()
                windows = stream.windows(epoch)
                bar = tqdm(
                    total=len(windows),
                    desc=f"epoch {epoch + 1}/{epochs}",
                    disable=not progress,
                    leave=False,
                    unit="step",
                )
                for k, window in enumerate(stream.epoch(epoch)):
                    t_step = time.time()
                    state, metrics = trainer.train_step(state, window)
                    meter.add(metrics)
                    if k == 0 and epoch == start:
                        jax.block_until_ready(metrics)
                        logger.info("first step (compiles) took %.1fs", time.time() - t_step)
                    bar.update(1)
                bar.close()
                means = meter.epoch_means()
                if (bad := first_nonfinite(means)) is not None or not bool(all_finite(state)):
                    kept = mngr.latest_step()
                    raise RunError(
                        f"non-finite {bad or 'state'} in epoch {epoch + 1}; stopped (last good "
                        f"checkpoint: {kept if kept is not None else 'none'} in {paths['ckpt']}); "
                        "try a lower optim.lr"
                    )
                val_ppl = trainer.evaluate(trainer.eval_params(state), valid)
                val_loss = float(np.log(val_ppl))
                switched = False
                if o.asgd and not bool(state.asgd) and nonmono_switch(history, val_loss, o.nonmono):
                    # averaging starts with the next iterate (AWD: ASGD(t0=0) from here)
                    state = state.replace(
                        asgd=jnp.ones((), bool),
                        avg=state.params,
                        avg_count=jnp.zeros((), jnp.int32),
                    )
                    asgd_epoch, switched = epoch + 1, True
                    logger.info("switching to ASGD after epoch %d", epoch + 1)
                history.append(val_loss)
                record = {
                    "kind": "epoch",
                    "epoch": epoch + 1,
                    "step": int(state.step),
                    "train/loss": means["loss"],
                    "train/ppl": float(np.exp(means["loss"])),
                    "valid/loss": val_loss,
                    "valid/ppl": val_ppl,
                    "lr": means["lr"],
                    "grad_norm": means["grad_norm"],
                    "asgd": bool(state.asgd),
                    "time": time.time() - t0,
                }
                if val_ppl < best["valid_ppl"]:
                    best = {"epoch": epoch + 1, "valid_ppl": val_ppl}
                    best_mngr.save(epoch + 1, args=ocp.args.StandardSave(state), force=True)
                    best_mngr.wait_until_finished()
                append_jsonl(paths["metrics"], record)
                mngr.save(epoch + 1, args=ocp.args.StandardSave(state))
                mngr.wait_until_finished()
                logger.info(
                    "epoch %d/%d  train ppl %.2f  valid ppl %.2f%s  (%.1fs)",
                    epoch + 1,
                    epochs,
                    record["train/ppl"],
                    val_ppl,
                    "  [ASGD]" if bool(state.asgd) and not switched else "",
                    record["time"],
                )

            best_step = best_mngr.latest_step()
            test_ppl = None
            if best_step is not None:
                best_state = restore(best_mngr, best_step, state, paths["best"])
                test_ppl = trainer.evaluate(trainer.eval_params(best_state), test)
                logger.info(
                    "best valid ppl %.2f (epoch %d), its test ppl %.2f",
                    best["valid_ppl"],
                    best["epoch"],
                    test_ppl,
                )
            records = plots.read_metrics(paths["metrics"])
            curves = None
            if records:
                try:
                    curves = plots.plot_curves(records, paths["curves"])
                except Exception as e:  # noqa: BLE001 - a picture never stops a run
                    logger.warning("could not draw %s: %s", paths["curves"], e)
            summary = {
                "workdir": root,
                "genotype": str(cell),
                "params_M": n_params / 1e6,
                "final": records[-1] if records else {},
                "best": best,
                "test_ppl": test_ppl,
                "asgd_epoch": asgd_epoch,
                "curves_plot": curves,
                "metrics": paths["metrics"],
                "checkpoints": paths["ckpt"],
                "wall_time": time.time() - t_start,
            }
            with open(paths["summary"], "w", encoding="utf-8") as f:
                json.dump(summary, f, indent=2, sort_keys=True)
                f.write("\n")
            return summary
    finally:
        for m in (mngr, best_mngr):
            m.wait_until_finished()
            m.close()
