"""SparseNAS' pruning study on DIGITS (Wu et al., Fig. 3 and its appendix setup).

A 64-40-20-10 ReLU MLP on scikit-learn's 8x8 DIGITS is trained with a sparsity
penalty on its weights (one-level problem, no NAS), pruned, and the pruned
network is retrained standalone:

* optimisers: SGD (momentum 0.9, lr 0.025 cosine) and Adam (lr 3e-4, betas
  (0.5, 0.999)) on loss + penalty (subgradient); HAPG (lr 0.05 cosine) and
  AdamHAPG (lr 3e-4, betas (0.5, 0.999)) with the exact prox (``jaxnas.optim``);
* penalties (Eq. 2): Lasso (alpha = 1), group Lasso (alpha = 0), SGL (alpha = 0.5);
  groups = the outgoing weights of each input / hidden unit (Scardapane et
  al. 2017), i.e. the rows of each kernel ``W[in, out]``; biases are not penalised;
* 500 epochs, batch 256; lam on a log grid over Fig. 3's range 1e-5 .. 10^-3.7;
* pruning: SGD / Adam drop weights with ``|w| < 0.001``, proximal methods drop
  exact zeros; a unit whose outgoing weights are all dropped is removed, with
  its incoming weights (repeated from the top layer down);
* retraining: the pruned architecture from a fresh initialisation, Adam lr
  3e-4, betas (0.5, 0.999), 3000 epochs, weights outside the mask held at 0.

Reported per (optimiser, penalty, lam, seed): validation accuracy after search,
after pruning and after retraining, kept input features (of 64), kept hidden
neurons (of 60) and weight sparsity (% of the 3560 weights removed).  Every
(optimiser) is one compiled program ``vmap`` ped over (lam, alpha, seed); the
retraining is one program for all.  Writes ``digits.json`` and ``digits.png``
(Fig. 3 layout) into ``--out``.

    python experiments/sparsenas_digits.py --out runs/sparsenas_digits           # full
    python experiments/sparsenas_digits.py --out runs/sparsenas_digits --quick   # ~1 min
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnas import optim

LAYERS = (64, 40, 20, 10)
METHODS = ("sgd", "adam", "hapg", "adam_hapg")
PROXIMAL = ("hapg", "adam_hapg")
PENALTIES = {"lasso": 1.0, "group_lasso": 0.0, "sgl": 0.5}
LABELS = {"sgd": "SGD", "adam": "Adam", "hapg": "HAPG", "adam_hapg": "AdamHAPG"}
PEN_LABELS = {"lasso": "Lasso", "group_lasso": "GL", "sgl": "SGL"}


@dataclasses.dataclass(frozen=True)
class DigitsConfig:
    """Hyperparameters of the study (defaults: the paper's appendix)."""

    search_epochs: int = 500
    retrain_epochs: int = 3000
    batch_size: int = 256
    threshold: float = 1e-3  # hard threshold for SGD / Adam (L287)
    val_fraction: float = 0.2
    sgd_lr: float = 0.025
    sgd_momentum: float = 0.9
    adam_lr: float = 3e-4
    hapg_lr: float = 0.05
    adam_hapg_lr: float = 3e-4
    b1: float = 0.5
    b2: float = 0.999
    retrain_lr: float = 3e-4


# ---------------------------------------------------------------------------- data, model


def load_data(seed: int, val_fraction: float = 0.2) -> dict[str, np.ndarray]:
    """DIGITS (1797 x 64, pixel values / 16 in [0, 1]); stratified split by ``seed``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int32)
    xt, xv, yt, yv = train_test_split(x, y, test_size=val_fraction, random_state=seed, stratify=y)
    return {"x_train": xt, "y_train": yt, "x_val": xv, "y_val": yv}


def init_mlp(key: jax.Array) -> dict[str, jax.Array]:
    """He-normal kernels ``w{l}: [in, out]``, zero biases ``b{l}: [out]``."""
    params = {}
    keys = jax.random.split(key, len(LAYERS) - 1)
    for ell, (k, n_in, n_out) in enumerate(zip(keys, LAYERS[:-1], LAYERS[1:])):
        params[f"w{ell}"] = jax.random.normal(k, (n_in, n_out)) * math.sqrt(2.0 / n_in)
        params[f"b{ell}"] = jnp.zeros((n_out,))
    return params


def mlp_apply(params: dict[str, jax.Array], x: jax.Array) -> jax.Array:
    """Logits ``[batch, 10]`` of the ReLU MLP for inputs ``[batch, 64]``."""
    n = len(LAYERS) - 1
    h = x
    for ell in range(n):
        h = h @ params[f"w{ell}"] + params[f"b{ell}"]
        if ell < n - 1:
            h = jax.nn.relu(h)
    return h


def group_spec(params: dict[str, jax.Array]) -> dict[str, Any]:
    """Groups: row ``i`` of kernel ``w{l}`` (the outgoing weights of unit i); biases: -1."""
    spec, offset = {}, 0
    for ell in range(len(LAYERS) - 1):
        n_in = params[f"w{ell}"].shape[0]
        spec[f"w{ell}"] = (np.arange(n_in) + offset)[:, None]
        spec[f"b{ell}"] = -1
        offset += n_in
    return spec


def cross_entropy(params, x, y) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(mlp_apply(params, x), y).mean()


def accuracy(params, x, y) -> jax.Array:
    return jnp.mean(jnp.argmax(mlp_apply(params, x), -1) == y)


# ---------------------------------------------------------------------------- training


def steps_per_epoch(n: int, batch_size: int) -> int:
    return -(-n // batch_size)


def _epoch_indices(key: jax.Array, n: int, batch_size: int) -> jax.Array:
    """``[steps, batch]`` indices: a fresh permutation, wrapped to fill the last batch."""
    steps = steps_per_epoch(n, batch_size)
    perm = jax.random.permutation(key, n)
    return jnp.resize(perm, (steps * batch_size,)).reshape(steps, batch_size)


def make_optimizer(method: str, lam, alpha, total_steps: int, cfg: DigitsConfig, groups):
    """The optax transform of ``method`` (``lam``, ``alpha`` may be traced scalars)."""
    if method == "sgd":
        return optax.sgd(optax.cosine_decay_schedule(cfg.sgd_lr, total_steps), cfg.sgd_momentum)
    if method == "adam":
        return optax.adam(cfg.adam_lr, b1=cfg.b1, b2=cfg.b2)
    if method == "hapg":
        lr = optax.cosine_decay_schedule(cfg.hapg_lr, total_steps)
        return optim.hapg(lr, lam, alpha, groups=groups)
    if method == "adam_hapg":
        return optim.adam_hapg(cfg.adam_hapg_lr, lam, alpha, groups=groups, b1=cfg.b1, b2=cfg.b2)
    raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")


def _train(loss_fn, opt, params, key, x, y, epochs: int, batch_size: int):
    """``epochs`` of minibatch training (``lax.scan`` over epochs and steps)."""
    n = x.shape[0]

    def step(carry, idx):
        p, s = carry
        grads = jax.grad(loss_fn)(p, x[idx], y[idx])
        updates, s = opt.update(grads, s, p)
        return (optax.apply_updates(p, updates), s), None

    def epoch(carry, k):
        return jax.lax.scan(step, carry, _epoch_indices(k, n, batch_size))[0], None

    keys = jax.random.split(key, epochs)
    return jax.lax.scan(epoch, (params, opt.init(params)), keys)[0]


def search(key, lam, alpha, *, method: str, data, cfg: DigitsConfig):
    """Train with the penalty; returns the final weights (``theta`` for HAPG / AdamHAPG)."""
    k_init, k_data = jax.random.split(key)
    params = init_mlp(k_init)
    groups = group_spec(params)
    x, y = data["x_train"], data["y_train"]
    total = cfg.search_epochs * steps_per_epoch(x.shape[0], cfg.batch_size)
    opt = make_optimizer(method, lam, alpha, total, cfg, groups)
    if method in PROXIMAL:
        loss_fn = cross_entropy  # the prox handles the penalty
    else:

        def loss_fn(p, xb, yb):
            return cross_entropy(p, xb, yb) + optim.sgl_penalty(p, lam, alpha, groups)

    params, state = _train(loss_fn, opt, params, k_data, x, y, cfg.search_epochs, cfg.batch_size)
    return state.theta if method in PROXIMAL else params


def prune_masks(params, threshold: float) -> dict[str, jax.Array]:
    """Boolean masks of the kept weights.

    A weight is kept if ``|w| >= threshold`` (``threshold = 0``: if ``w != 0``).
    Then, from the top hidden layer down, a unit whose outgoing weights are all
    dropped is removed together with its incoming weights.
    """
    n = len(LAYERS) - 1
    masks = {}
    for ell in range(n):
        w = params[f"w{ell}"]
        masks[f"w{ell}"] = (jnp.abs(w) >= threshold) & (w != 0)
    for ell in range(n - 1, 0, -1):
        alive = jnp.any(masks[f"w{ell}"], axis=1)  # hidden units feeding layer ell
        masks[f"w{ell - 1}"] = masks[f"w{ell - 1}"] & alive[None, :]
    return masks


def count_structure(masks) -> dict[str, jax.Array]:
    """Kept input features (of 64), kept hidden neurons (of 60), weight sparsity (%)."""
    n = len(LAYERS) - 1
    features = jnp.sum(jnp.any(masks["w0"], axis=1))
    neurons = sum(jnp.sum(jnp.any(masks[f"w{ell}"], axis=1)) for ell in range(1, n))
    kept = sum(jnp.sum(masks[f"w{ell}"]) for ell in range(n))
    total = sum(a * b for a, b in zip(LAYERS[:-1], LAYERS[1:]))
    return {
        "features": features,
        "neurons": neurons,
        "sparsity": 100.0 * (total - kept) / total,
    }


def apply_masks(params, masks):
    return {k: (v * masks[k] if k in masks else v) for k, v in params.items()}


def retrain(key, masks, *, data, cfg: DigitsConfig):
    """Train the pruned architecture from a fresh init with Adam (no penalty)."""
    k_init, k_data = jax.random.split(key)
    params = apply_masks(init_mlp(k_init), masks)
    opt = optax.adam(cfg.retrain_lr, b1=cfg.b1, b2=cfg.b2)

    def loss_fn(p, xb, yb):
        return cross_entropy(apply_masks(p, masks), xb, yb)

    params, _ = _train(
        loss_fn,
        opt,
        params,
        k_data,
        data["x_train"],
        data["y_train"],
        cfg.retrain_epochs,
        cfg.batch_size,
    )
    return apply_masks(params, masks)


def run_method(
    method: str, keys, lams, alphas, *, data, cfg: DigitsConfig, retrain_nets: bool = True
) -> dict[str, Any]:
    """Search + prune + retrain for a batch of configs (``vmap`` over ``keys, lams, alphas``).

    Returns numpy arrays with a leading batch axis: ``acc_search``,
    ``acc_pruned``, ``acc_retrained`` (if ``retrain_nets``), ``features``,
    ``neurons``, ``sparsity``, ``exact_zero_weights`` (fraction of exact zeros
    in the searched kernels) and ``zero_groups`` (units whose outgoing weights
    are all pruned: removed input features plus removed hidden neurons).
    """
    jd = {k: jnp.asarray(v) for k, v in data.items()}
    out, masks = _search_fn(method, cfg)(
        keys, jnp.asarray(lams, jnp.float32), jnp.asarray(alphas, jnp.float32), jd
    )
    if retrain_nets:
        rkeys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
        out["acc_retrained"] = _retrain_fn(cfg)(rkeys, masks, jd)
    return {k: np.asarray(v) for k, v in out.items()}


@functools.cache
def _search_fn(method: str, cfg: DigitsConfig):
    """One compiled, vmapped search + prune + count program per (method, config)."""
    thr = 0.0 if method in PROXIMAL else cfg.threshold

    @jax.jit
    def fn(keys, lams, alphas, jd):
        def one(k, lam, alpha):
            w = search(k, lam, alpha, method=method, data=jd, cfg=cfg)
            masks = prune_masks(w, thr)
            kern = [w[f"w{ell}"] for ell in range(len(LAYERS) - 1)]
            exact = sum(jnp.sum(k_ == 0) for k_ in kern) / sum(k_.size for k_ in kern)
            rows = [jnp.any(masks[f"w{ell}"], axis=1) for ell in range(len(LAYERS) - 1)]
            out = {
                "acc_search": accuracy(w, jd["x_val"], jd["y_val"]),
                "acc_pruned": accuracy(apply_masks(w, masks), jd["x_val"], jd["y_val"]),
                "exact_zero_weights": exact,
                "zero_groups": sum(jnp.sum(~r) for r in rows),
                **count_structure(masks),
            }
            return out, masks

        return jax.vmap(one)(keys, lams, alphas)

    return fn


@functools.cache
def _retrain_fn(cfg: DigitsConfig):
    """Validation accuracy after retraining each pruned net (one compiled program)."""

    @jax.jit
    def fn(keys, masks, jd):
        def one(k, m):
            return accuracy(retrain(k, m, data=jd, cfg=cfg), jd["x_val"], jd["y_val"])

        return jax.vmap(one)(keys, masks)

    return fn


# ---------------------------------------------------------------------------- study + figure


def run_study(
    cfg: DigitsConfig,
    lams: list[float],
    methods=METHODS,
    penalties=tuple(PENALTIES),
    seeds: int = 1,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """The full grid; ``results[method][penalty][metric]`` is a ``[len(lams), seeds]`` list."""
    from tqdm import tqdm

    data = load_data(seed, cfg.val_fraction)
    base = jax.random.key(seed)
    grid = [(m, p) for m in methods for p in penalties]
    results: dict[str, Any] = {m: {} for m in methods}
    lam_arr = np.repeat(np.asarray(lams, np.float32), seeds)  # [L * S]
    seed_idx = np.tile(np.arange(seeds), len(lams))
    # same init / data order for every (method, penalty, lam) given the seed index
    keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.asarray(seed_idx))
    for method, pen in tqdm(grid, desc="digits", disable=not progress):
        alphas = np.full_like(lam_arr, PENALTIES[pen])
        t0 = time.perf_counter()
        out = run_method(method, keys, lam_arr, alphas, data=data, cfg=cfg)
        res = {k: v.reshape(len(lams), seeds).tolist() for k, v in out.items()}
        res["wall_s"] = time.perf_counter() - t0
        results[method][pen] = res
        if progress:
            acc = np.asarray(res["acc_retrained"]).mean(1)
            feat = np.asarray(res["features"]).mean(1)
            tqdm.write(
                f"{LABELS[method]:>8s} {PEN_LABELS[pen]:>5s}: retrained acc "
                + " ".join(f"{a:.3f}" for a in acc)
                + " | features "
                + " ".join(f"{f:.0f}" for f in feat)
            )
    return {
        "config": dataclasses.asdict(cfg),
        "lams": list(map(float, lams)),
        "seeds": seeds,
        "seed": seed,
        "n_train": int(data["x_train"].shape[0]),
        "n_val": int(data["x_val"].shape[0]),
        "results": results,
    }


def plot_study(study: dict[str, Any], path: str) -> None:
    """Fig. 3 layout: accuracy, features, neurons, sparsity vs lam; rows compare
    optimisers (SGL) and penalties (HAPG, AdamHAPG)."""
    from matplotlib.figure import Figure

    lams = np.asarray(study["lams"])
    res = study["results"]
    metrics = [
        ("acc_retrained", "valid accuracy (retrained)"),
        ("features", "selected input features"),
        ("neurons", "remaining hidden neurons"),
        ("sparsity", "weight sparsity (%)"),
    ]
    rows = []
    if "sgl" in next(iter(res.values())):
        rows.append(("optimisers, SGL", [(m, "sgl", LABELS[m]) for m in res]))
    for m in ("hapg", "adam_hapg"):
        if m in res:
            rows.append((f"penalties, {LABELS[m]}", [(m, p, PEN_LABELS[p]) for p in res[m]]))
    fig = Figure(figsize=(16, 3.4 * len(rows)), layout="constrained")
    axes = fig.subplots(len(rows), len(metrics), squeeze=False)
    for r, (title, lines) in enumerate(rows):
        for c, (key, ylabel) in enumerate(metrics):
            ax = axes[r, c]
            for m, p, label in lines:
                v = np.asarray(res[m][p][key], float)
                mean, std = v.mean(1), v.std(1)
                ax.plot(lams, mean, marker="o", ms=3, label=label)
                ax.fill_between(lams, mean - std, mean + std, alpha=0.2)
            ax.set_xscale("log")
            ax.set_xlabel("$\\lambda$")
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
            if c == 0:
                ax.set_title(title, loc="left", fontsize=10)
                ax.legend(fontsize=8)
    fig.savefig(path, dpi=120)


def summary_table(study: dict[str, Any]) -> str:
    """Markdown table: mean over seeds of every metric at the smallest and largest lam."""
    lams = study["lams"]
    cols = ["acc_retrained", "acc_pruned", "features", "neurons", "sparsity", "zero_groups"]
    lines = [
        "| optimiser | penalty | lam | " + " | ".join(cols) + " |",
        "|---" * (3 + len(cols)) + "|",
    ]
    for m, by_pen in study["results"].items():
        for p, res in by_pen.items():
            for i in sorted({0, len(lams) - 1}):
                vals = [float(np.mean(res[c][i])) for c in cols]
                cells = " | ".join(
                    f"{v:.3f}" if c.startswith("acc") else f"{v:.1f}" for c, v in zip(cols, vals)
                )
                lines.append(f"| {LABELS[m]} | {PEN_LABELS[p]} | {lams[i]:.2e} | {cells} |")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/sparsenas_digits", help="output folder (created)")
    p.add_argument("--quick", action="store_true", help="3 lams, 40+60 epochs, 1 seed (~1 min)")
    p.add_argument("--seed", type=int, default=0, help="data split, inits and batch order")
    p.add_argument("--seeds", type=int, default=None, help="repeats per config (vmapped)")
    p.add_argument("--lams", type=float, nargs="+", default=None, help="lambda grid")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--penalties", nargs="+", default=list(PENALTIES), choices=list(PENALTIES))
    p.add_argument("--search-epochs", type=int, default=None)
    p.add_argument("--retrain-epochs", type=int, default=None)
    return p.parse_args(argv)


def main(argv=None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.quick:
        cfg = DigitsConfig(search_epochs=40, retrain_epochs=60)
        lams, seeds = [1e-5, 10**-4.35, 10**-3.7], 1
    else:
        cfg = DigitsConfig()
        lams, seeds = [float(v) for v in np.logspace(-5, -3.7, 6)], 3
    cfg = dataclasses.replace(
        cfg,
        search_epochs=args.search_epochs or cfg.search_epochs,
        retrain_epochs=args.retrain_epochs or cfg.retrain_epochs,
    )
    lams = args.lams or lams
    seeds = args.seeds or seeds
    if any(lam < 0 for lam in lams):
        raise SystemExit("error: --lams must be >= 0")
    os.makedirs(args.out, exist_ok=True)
    t0 = time.perf_counter()
    study = run_study(cfg, lams, args.methods, tuple(args.penalties), seeds, args.seed)
    study["wall_s"] = time.perf_counter() - t0
    study["argv"] = vars(args)
    with open(os.path.join(args.out, "digits.json"), "w") as f:
        json.dump(study, f, indent=1)
    plot_study(study, os.path.join(args.out, "digits.png"))
    print(summary_table(study))
    print(f"wrote {args.out}/digits.json and digits.png ({study['wall_s']:.1f} s)")
    return study


if __name__ == "__main__":
    main()
