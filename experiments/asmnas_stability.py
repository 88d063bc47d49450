"""ASM-NAS's stability study (Hao & Zhu 2021, Sec. 5.3.1, Fig. 3), first version.

Train an ASM-NAS supernet and a DARTS (first-order) supernet of the same size on
Fashion-MNIST; then, for one cell, replace the mixed op of one edge at a time by
the op the method selects (ASM-NAS: argmax of the mean attention coefficient on
held-out data; DARTS: argmax of softmax(alpha), the paper's description of DARTS'
choice, L62) and measure the test accuracy of the modified supernet against the
unmodified one.  The paper's claim: ASM-NAS's replacements change the accuracy
less than DARTS's.  Writes ``stability.json`` and ``stability.png`` (per edge:
baseline and modified accuracy, one panel per method).

DARTS shares one alpha between all normal (reduction) cells; the replacement here
touches the chosen cell only (the supernet is evaluated with per-cell copies of
the trained alphas).  Scale is a CPU toy by default; the paper's setting is the
15-cell search of ``configs/asmnas_cifar10.py`` (no numbers are published).

    python experiments/asmnas_stability.py --steps 200 --out runs/asm_stability
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np


def _train(method, train_loader, valid_loader, steps, seed):
    state = method.init(jax.random.PRNGKey(seed), next(iter(train_loader.epoch(0)))[0])
    done, epoch = 0, 0
    while done < steps:
        for tb, vb in zip(train_loader.epoch(epoch), valid_loader.epoch(epoch)):
            state, metrics = method.train_step(state, tb, vb)
            done += 1
            if done >= steps:
                break
        epoch += 1
    return state, float(metrics["loss"])


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=200, help="training steps of each supernet")
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--channels", type=int, default=4)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--limit", type=int, default=2048, help="training images (half held out)")
    p.add_argument("--cell", type=int, default=0, help="which cell's 14 edges to replace")
    p.add_argument("--eval-batches", type=int, default=8, help="test batches per accuracy")
    p.add_argument("--select-batches", type=int, default=8, help="held-out batches for ASM")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/asm_stability")
    a = p.parse_args(argv)

    from jaxnas import data
    from jaxnas.config import default_config
    from jaxnas.search import build

    train_loader, valid_loader, test = data.search_loaders(
        "fashion_mnist", batch_size=a.batch, seed=a.seed, limit=a.limit
    )
    test_loader = data.Loader(
        test, np.arange(len(test)), a.batch, seed=0, shuffle=False, augment=data.NO_AUGMENT
    )
    test_batches = list(test_loader.epoch(0))[: a.eval_batches]
    shape = tuple(test_batches[0][0].shape[1:])
    held_out = [b[0] for b in list(valid_loader.epoch(10_000))[: a.select_batches]]

    results = {}
    t0 = time.time()
    # ---- ASM-NAS -------------------------------------------------------------------
    cfg = default_config("asmnas")
    cfg.seed = a.seed
    cfg.model.init_channels, cfg.model.layers, cfg.model.reductions = a.channels, a.layers, ()
    asm = build(cfg, steps_per_epoch=len(train_loader), num_classes=10, input_shape=shape)
    state, loss = _train(asm, train_loader, valid_loader, a.steps, a.seed)
    choice = asm.select(state, held_out, mode="one_pass").choice[a.cell]

    def acc(method, st):
        return float(np.mean([float(method.eval_step(st, b)["accuracy"]) for b in test_batches]))

    base = acc(asm, state)
    mod = [
        acc(asm, state.replace(arch=asm.discretise(state.arch, a.cell, e, int(k))))
        for e, k in enumerate(choice)
    ]
    results["asmnas"] = dict(
        baseline=base, modified=mod, ops=[asm.primitives[k] for k in choice], train_loss=loss
    )

    # ---- DARTS (first order) -------------------------------------------------------
    cfg = default_config("darts")
    cfg.seed = a.seed
    cfg.model.init_channels, cfg.model.layers = a.channels, a.layers
    darts = build(cfg, steps_per_epoch=len(train_loader), num_classes=10, input_shape=shape)
    dstate, dloss = _train(darts, train_loader, valid_loader, a.steps, a.seed)
    per_cell = darts.model.clone(arch_sharing="cell")
    cell_type = darts.model.arch_name(a.cell)  # "normal" or "reduce": shared by its cells
    arch = {f"layer_{i:02d}": dstate.arch[darts.model.arch_name(i)] for i in range(a.layers)}
    d_choice = np.argmax(np.asarray(dstate.arch[cell_type]), -1)

    @jax.jit
    def d_eval(arch, images, labels):
        v = {"params": dstate.params, "arch": arch, "batch_stats": dstate.batch_stats}
        logits = per_cell.apply(v, images, train=False)
        return jnp.mean(jnp.argmax(logits, -1) == labels)

    def d_acc(arch):
        return float(np.mean([float(d_eval(arch, x, y)) for x, y in test_batches]))

    d_base = d_acc(arch)
    d_mod = []
    name = f"layer_{a.cell:02d}"
    for e, k in enumerate(d_choice):
        row = jnp.full((len(darts.primitives),), -1e9).at[int(k)].set(0.0)  # softmax: one-hot
        d_mod.append(d_acc(dict(arch, **{name: arch[name].at[e].set(row)})))
    results["darts"] = dict(
        baseline=d_base,
        modified=d_mod,
        ops=[darts.primitives[k] for k in d_choice],
        train_loss=dloss,
    )
    for r in results.values():
        r["mean_abs_change"] = float(np.mean(np.abs(np.array(r["modified"]) - r["baseline"])))
    results["setup"] = dict(vars(a), wall_s=round(time.time() - t0, 1))

    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "stability.json"), "w") as f:
        json.dump(results, f, indent=1)
    _plot(results, os.path.join(a.out, "stability.png"), a.cell)
    print(json.dumps({k: v.get("mean_abs_change") for k, v in results.items() if k != "setup"}))
    return results


def _plot(results: dict, path: str, cell: int) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.4))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, key, title in zip(axes, ("darts", "asmnas"), ("DARTS", "ASM-NAS")):
        r = results[key]
        x = np.arange(len(r["modified"]))
        ax.axhline(r["baseline"], color="red", label="supernet")
        ax.plot(x, r["modified"], "o-", color="green", label="one edge replaced")
        ax.set_xticks(x)
        ax.set_xlabel(f"edge index (cell {cell})")
        ax.set_title(f"{title}: mean |change| {r['mean_abs_change']:.3f}")
    axes[0].set_ylabel("test accuracy")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=130)


if __name__ == "__main__":
    main()
