"""PR-DARTS theory experiments (Zhou et al., NeurIPS 2020, Sec. 3.2 and 4.2).

Subcommands (each writes a figure, a JSON file and a short verdict to ``--out``):

  analysis   Theorem 1 on the analysis model of Eqs. 3-6: full-batch GD with fixed
             op weightings alpha from one shared init per seed; compares the
             measured training-loss decrease with Theorem 1's rate lambda(alpha).
  ablation   Fig. 1: the tiny Fashion-MNIST search with DARTS, gates + sparsity only,
             the path reward only, and both; skip count and depth of the normal cells.
  fig2       Fig. 2 miniature: 8 cells of conv_3x3 ops with 0 / 3 / 5 of the 8 ops per
             cell turned into skips, trained on a Fashion-MNIST subset over seeds;
             training-loss curves and final test accuracy per skip count.
  thm4       Theorem 4: the deep cell vs the two-branch shallow cell on the analysis
             model (GD, relative loss), and a deep chain cell vs a shallow wide cell
             (same parameters) in the fig2 CNN.

Usage::

    python experiments/prdarts_theory.py analysis --out runs/prdarts_theory
    python experiments/prdarts_theory.py analysis --out /tmp/t --seeds 2 --steps 50  # smoke
    python experiments/prdarts_theory.py ablation --out runs/prdarts_theory
    python experiments/prdarts_theory.py ablation --out /tmp/t --epochs 1 --limit 256  # smoke
    python experiments/prdarts_theory.py fig2 --out runs/prdarts_theory
    python experiments/prdarts_theory.py thm4 --out runs/prdarts_theory

Subcommands register in ``SUBCOMMANDS`` at the bottom: each is
``(add_arguments(parser), run(args) -> dict)``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # experiments/support
from support import prdarts_theory as T  # noqa: E402

# --------------------------------------------------------------------------------------
# analysis: Theorem 1 on the analysis model
# --------------------------------------------------------------------------------------

#: (name, description, faster config, slower config) -- "faster" per the theory.
PAIR_CLAIMS: tuple[tuple[str, str, str, str], ...] = (
    (
        "conv_last_given_skip_inner",
        "with skip-heavy inner edges, conv-heavy edges into the last node converge faster "
        "than skip-heavy ones (digest: reproduced in its toy)",
        "skip-inner/conv-last",
        "all-skip",
    ),
    (
        "conv_last_given_conv_inner",
        "with conv-heavy inner edges, conv-heavy edges into the last node converge faster "
        "than skip-heavy ones",
        "all-conv",
        "conv-inner/skip-last",
    ),
    (
        "skip_inner_given_conv_last",
        "with conv-heavy last edges, skip-heavy inner edges converge faster than "
        "conv-heavy ones (digest: NOT reproduced in its toy)",
        "skip-inner/conv-last",
        "all-conv",
    ),
    (
        "skip_inner_given_skip_last",
        "with skip-heavy last edges, skip-heavy inner edges converge faster than conv-heavy ones",
        "all-skip",
        "conv-inner/skip-last",
    ),
)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation with average ranks for ties."""

    def ranks(x: np.ndarray) -> np.ndarray:
        order = np.argsort(x, kind="stable")
        r = np.empty(len(x))
        r[order] = np.arange(len(x), dtype=float)
        for v in np.unique(x):
            sel = x == v
            r[sel] = r[sel].mean()
        return r

    ra, rb = ranks(np.asarray(a, float)), ranks(np.asarray(b, float))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = np.sqrt((ra**2).sum() * (rb**2).sum())
    return float((ra * rb).sum() / den) if den > 0 else float("nan")


def evaluate_claims(
    names: Sequence[str], lam: np.ndarray, log_rel: np.ndarray
) -> list[dict[str, Any]]:
    """Which Theorem-1 claims hold for one run.

    Args:
      names: configuration names.
      lam: Theorem 1 rate per configuration.
      log_rel: ``log(L_K / L_0)`` per configuration (mean over seeds); lower = faster.

    Returns:
      One dict per claim: ``name, text, held`` and the numbers behind it.
    """
    idx = {n: i for i, n in enumerate(names)}
    out: list[dict[str, Any]] = []
    if "all-zero" in idx:
        slowest = names[int(np.argmax(log_rel))]
        out.append(
            dict(
                name="zero_heavy_slowest",
                text="zero-heavy weights converge slowest (digest: reproduced in its toy)",
                held=slowest == "all-zero",
                slowest=slowest,
            )
        )
    for name, text, fast, slow in PAIR_CLAIMS:
        if fast in idx and slow in idx:
            out.append(
                dict(
                    name=name,
                    text=text,
                    held=bool(log_rel[idx[fast]] < log_rel[idx[slow]]),
                    faster_expected=fast,
                    log_rel_faster_expected=float(log_rel[idx[fast]]),
                    log_rel_slower_expected=float(log_rel[idx[slow]]),
                )
            )
    rho = _spearman(lam, -log_rel)
    fastest = names[int(np.argmin(log_rel))]
    top = names[int(np.argmax(lam))]
    out.append(
        dict(
            name="lambda_ranking",
            text="the ranking by Theorem 1's lambda is the ranking by convergence speed "
            "(Spearman >= 0.9 and the largest lambda converges fastest; digest: NOT reproduced)",
            held=bool(rho >= 0.9 and fastest == top),
            spearman=rho,
            fastest=fastest,
            largest_lambda=top,
        )
    )
    return out


def add_analysis_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--configs", nargs="+", default=list(T.NAMED_ALPHAS), help="alpha weightings")
    p.add_argument("--etas", nargs="+", type=float, default=[0.5, 0.1], help="GD step sizes")
    p.add_argument("--steps", type=int, default=200, help="GD steps K")
    p.add_argument("--seeds", type=int, default=5, help="seeds (init + data) per setting")
    p.add_argument("--n", type=int, default=32, help="training samples")
    p.add_argument("--m", type=int, default=64, help="channels per node")
    p.add_argument("--p", type=int, default=16, help="input length")
    p.add_argument("--m-in", type=int, default=3, help="input channels")
    p.add_argument("--k-c", type=int, default=3, help="kernel size")
    p.add_argument("--h", type=int, default=5, help="nodes")
    p.add_argument("--ntk-seeds", type=int, default=3, help="seeds for the NTK eigenvalues")
    p.add_argument("--activation", default="tanh", choices=["tanh", "softplus"])
    p.add_argument(
        "--input-gain",
        type=float,
        default=None,
        help="multiplier of the unit-norm samples (default sqrt(m_in p): unit-variance stem)",
    )


def run_analysis(args: argparse.Namespace) -> dict[str, Any]:
    """Run the analysis experiment; write ``analysis.{json,png}``, ``analysis_verdict.txt``."""
    cfg = T.AnalysisConfig(
        m_in=args.m_in,
        p=args.p,
        k_c=args.k_c,
        m=args.m,
        h=args.h,
        activation=args.activation,
        input_gain=args.input_gain,
    )
    names = list(args.configs)
    alphas = np.stack([T.alpha_config(n, cfg.h) for n in names])
    lam = np.array([float(T.thm1_rate(a, cfg.h)) for a in alphas])
    lam_chain = np.array([float(T.thm1_rate(a, cfg.h, product="chain")) for a in alphas])
    seeds = list(range(args.seeds))
    # empirical NTK at init: lambda_min(H) sets the actual early GD rate
    gram = jax.jit(jax.vmap(lambda p, a, x: T.ntk_gram(p, a, x, cfg), in_axes=(None, 0, None)))
    ntk_min = []
    for seed in seeds[: args.ntk_seeds]:
        params, x, _ = T.setup(seed, cfg, args.n)
        ntk_min.append(np.linalg.eigvalsh(np.asarray(gram(params, alphas, x), np.float64))[:, 0])
    ntk_min = np.exp(np.mean(np.log(np.maximum(np.stack(ntk_min), 1e-30)), axis=0))
    checkpoints = sorted({max(1, args.steps // 4), max(1, args.steps // 2), args.steps})
    runs = []
    for eta in args.etas:
        t0 = time.perf_counter()
        losses = T.gd_losses(alphas, seeds, cfg, n=args.n, eta=eta, steps=args.steps)
        wall = time.perf_counter() - t0
        rel = losses / losses[:, :, :1]  # (seeds, configs, K+1)
        log_rel = np.log(np.maximum(rel, 1e-30))
        claims = {k: evaluate_claims(names, lam, log_rel[:, :, k].mean(0)) for k in checkpoints}
        ntk_rho = {str(k): _spearman(ntk_min, -log_rel[:, :, k].mean(0)) for k in checkpoints}
        runs.append(
            dict(
                eta=eta,
                wall_s=round(wall, 2),
                finite=bool(np.all(np.isfinite(losses))),
                loss0=losses[:, :, 0].mean(0).tolist(),
                rel_loss={
                    str(k): {
                        n: dict(
                            geomean=float(np.exp(log_rel[:, i, k].mean())),
                            per_seed=rel[:, i, k].tolist(),
                        )
                        for i, n in enumerate(names)
                    }
                    for k in checkpoints
                },
                claims={str(k): v for k, v in claims.items()},
                spearman_ntk_min_vs_speed=ntk_rho,
                curves=np.exp(log_rel.mean(0)).tolist(),
            )
        )
    # a claim "held" if it held at every checkpoint and every step size
    summary: dict[str, dict[str, Any]] = {}
    for r in runs:
        for k, cl in r["claims"].items():
            for c in cl:
                s = summary.setdefault(c["name"], dict(text=c["text"], held=True, failed_at=[]))
                if not c["held"]:
                    s["held"] = False
                    s["failed_at"].append(dict(eta=r["eta"], K=int(k)))
    result = dict(
        experiment="analysis",
        model=dict(vars(cfg), n=args.n, scaling="NTK: 1/sqrt(fan_in) in every layer"),
        steps=args.steps,
        seeds=seeds,
        configs=names,
        alphas={n: a.tolist() for n, a in zip(names, alphas)},
        thm1_lambda=dict(zip(names, lam.tolist())),
        thm1_lambda_chain=dict(zip(names, lam_chain.tolist())),
        ntk_lambda_min=dict(zip(names, ntk_min.tolist())),
        checkpoints=checkpoints,
        runs=runs,
        summary=summary,
    )
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "analysis.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    _plot_analysis(result, os.path.join(args.out, "analysis.png"))
    text = _verdict_analysis(result)
    with open(os.path.join(args.out, "analysis_verdict.txt"), "w", encoding="utf-8") as f:
        f.write(text)
    print(text)
    return result


def _verdict_analysis(result: dict[str, Any]) -> str:
    m = result["model"]
    lines = [
        "PR-DARTS Theorem 1 on the analysis model (Eqs. 3-6)",
        f"model: h={m['h']} m={m['m']} p={m['p']} m_in={m['m_in']} k_c={m['k_c']} "
        f"n={m['n']} act={m['activation']}; full-batch GD, K={result['steps']}, "
        f"{len(result['seeds'])} seeds, eta in {[r['eta'] for r in result['runs']]}",
        "L_K/L_0 (geometric mean over seeds) at K = "
        + ", ".join(str(k) for k in result["checkpoints"]),
    ]
    for r in result["runs"]:
        lines.append(f"  eta={r['eta']}:")
        for n in result["configs"]:
            vals = " ".join(
                f"{r['rel_loss'][str(k)][n]['geomean']:.2e}" for k in result["checkpoints"]
            )
            lines.append(
                f"    {n:22s} lambda={result['thm1_lambda'][n]:.4f} "
                f"ntk_min={result['ntk_lambda_min'][n]:.3e}  {vals}"
            )
        rho = ", ".join(f"K={k}: {v:.2f}" for k, v in r["spearman_ntk_min_vs_speed"].items())
        lines.append(f"    Spearman(lambda_min(NTK at init), speed): {rho}")
        rho = ", ".join(
            f"K={k}: {c['spearman']:.2f}"
            for k, cl in r["claims"].items()
            for c in cl
            if c["name"] == "lambda_ranking"
        )
        lines.append(f"    Spearman(Theorem 1 lambda, speed):        {rho}")
    lines.append("claims (held = at every checkpoint and step size):")
    for name, s in result["summary"].items():
        where = ""
        if s["failed_at"]:
            where = " (failed at " + ", ".join(f"eta={f['eta']} K={f['K']}" for f in s["failed_at"])
            where += ")"
        lines.append(f"  [{'HELD' if s['held'] else 'NOT HELD'}] {name}: {s['text']}{where}")
    return "\n".join(lines) + "\n"


def _plot_analysis(result: dict[str, Any], path: str) -> None:
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter

    runs = result["runs"]
    fig = Figure(figsize=(16, 4.2 * len(runs)))
    names = result["configs"]
    colors = {n: f"C{i}" for i, n in enumerate(names)}
    k_last = str(result["checkpoints"][-1])
    for row, r in enumerate(runs):
        ax = fig.add_subplot(len(runs), 3, 3 * row + 1)
        curves = np.asarray(r["curves"])
        for i, n in enumerate(names):
            lam = result["thm1_lambda"][n]
            ax.plot(curves[i], color=colors[n], label=f"{n} (λ={lam:.3f})")
        ax.set_yscale("log")
        ax.set_xlabel("GD step k")
        ax.set_ylabel("L_k / L_0 (geo-mean over seeds)")
        ax.set_title(f"analysis model (Eqs. 3-6), η={r['eta']}")
        ax.legend(fontsize=8)
        for col, (key, xlabel) in enumerate(
            [
                ("thm1_lambda", "Theorem 1 λ(α) (larger = faster, per the theory)"),
                ("ntk_lambda_min", "λ_min of the empirical NTK Gram at init"),
            ]
        ):
            ax2 = fig.add_subplot(len(runs), 3, 3 * row + 2 + col)
            for n in names:
                vals = np.maximum(np.asarray(r["rel_loss"][k_last][n]["per_seed"]), 1e-12)
                xv = result[key][n]
                ax2.scatter(np.full(len(vals), xv), vals, color=colors[n], s=12)
                geo = max(r["rel_loss"][k_last][n]["geomean"], 1e-12)
                ax2.scatter([xv], [geo], color=colors[n], marker="D", s=50, edgecolor="black")
            ax2.set_xscale("log")
            ax2.xaxis.set_minor_formatter(NullFormatter())
            ax2.set_yscale("log")
            ax2.set_xlabel(xlabel)
            ax2.set_ylabel(f"L_K / L_0 at K={k_last}")
            ax2.set_title("measured speed vs " + ("Theorem 1's rate" if col == 0 else "NTK"))
    fig.tight_layout()
    fig.savefig(path, dpi=110, facecolor="white")


# --------------------------------------------------------------------------------------
# ablation: Fig. 1 (DARTS vs gates only vs path only vs both) on the tiny Fashion-MNIST
# search
# --------------------------------------------------------------------------------------

#: variant -> (method, config overrides).  Fig. 1: (a) DARTS, (b) gates with the
#: group-structured sparsity terms only, (c) the path-depth reward only, (d) PR-DARTS.
ABLATION_VARIANTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "darts": ("darts", ()),
    "gates": ("prdarts", ("search.lambda_path=0.0",)),
    "path": ("prdarts", ("search.lambda_skip=0.0", "search.lambda_nonskip=0.0")),
    "both": ("prdarts", ()),
}
_PATH_OPS = ("sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")


def cell_stats(cell: Any, path_ops: Sequence[str] = _PATH_OPS) -> dict[str, int]:
    """Shape of a derived cell (a ``jaxnas.genotype.CellGenotype``).

    Returns:
      ``skips``: number of ``skip_connect`` inputs; ``depth``: the longest path, in ops,
      from a cell input to an output node; ``conv_depth``: the same counting only paths
      of parameterised ops (the convolutions, Eq. 8's O_p); ``conv_chain``: how many
      edges of the chain c_{k-1} -> 2 -> 3 -> 4 -> 5 (Eq. 8's path) carry a convolution,
      counted from c_{k-1} until the first gap (4 = the full chain).
    """
    depth = dict.fromkeys(range(cell.n_inputs), 0)
    conv = dict.fromkeys(range(cell.n_inputs), 0)
    for k, node in enumerate(cell.nodes):
        j = cell.n_inputs + k
        depth[j] = 1 + max((depth[s] for _, s in node), default=-1)
        conv[j] = max((conv[s] + 1 for op, s in node if op in path_ops), default=0)
    chain = 0
    for k, node in enumerate(cell.nodes):
        if not any(op in path_ops and s == cell.n_inputs - 1 + k for op, s in node):
            break
        chain += 1
    return dict(
        skips=sum(op == "skip_connect" for op, _ in cell.pairs),
        depth=max(depth[j] for j in cell.concat),
        conv_depth=max(conv[j] for j in cell.concat),
        conv_chain=chain,
    )


def ablation_claims(mean: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """Fig. 1's claims, checked on the per-variant means of :func:`cell_stats` (normal cell).

    Only claims whose variants are all present are returned; ``held`` is a bool.
    """
    have = lambda *vs: all(v in mean for v in vs)
    m = lambda v, k: float(mean[v][k])
    out: list[dict[str, Any]] = []
    if have("darts", "both"):
        out.append(
            dict(
                name="darts_most_skips",
                text="DARTS' normal cell has more skip connections than PR-DARTS' (Fig. 1a vs 1d)",
                held=m("darts", "skips") > m("both", "skips"),
                darts=m("darts", "skips"),
                both=m("both", "skips"),
            )
        )
    if have("darts", "gates"):
        out.append(
            dict(
                name="sparsity_fewer_skips",
                text="gates with the group sparsity terms give fewer skips than DARTS "
                "(Fig. 1a vs 1b)",
                held=m("gates", "skips") < m("darts", "skips"),
                darts=m("darts", "skips"),
                gates=m("gates", "skips"),
            )
        )
    if have("gates", "both"):
        out.append(
            dict(
                name="sparsity_alone_shallow",
                text="gates with sparsity alone give a shallower cell than with the path "
                "reward added (Fig. 1b vs 1d; Theorem 4)",
                held=m("gates", "depth") < m("both", "depth"),
                gates=m("gates", "depth"),
                both=m("both", "depth"),
            )
        )
    if have("gates", "path"):
        out.append(
            dict(
                name="path_reward_deepens",
                text="the path reward alone gives a deeper conv path than sparsity alone "
                "(Fig. 1c vs 1b)",
                held=m("path", "conv_depth") > m("gates", "conv_depth"),
                gates=m("gates", "conv_depth"),
                path=m("path", "conv_depth"),
            )
        )
    if have("both"):
        out.append(
            dict(
                name="full_conv_chain",
                text="PR-DARTS' normal cell holds the conv chain c_{k-1} -> 2 -> 3 -> 4 -> 5 "
                "(Fig. 1d and the released cell)",
                held=m("both", "conv_chain") == 4,
                both=m("both", "conv_chain"),
            )
        )
    return out


def _shared_step_build(config: Any, **kw: Any) -> Any:
    """``jaxnas.search.build``, but a PR-DARTS method gets tau and the lambdas as
    arguments of its compiled step, so the PR-DARTS variants (they differ only in the
    lambdas) run one XLA program (compiled once with the persistent cache)."""
    from jaxnas.search import build
    from jaxnas.search.prdarts import PRDARTS

    method = build(config, **kw)
    if isinstance(method, PRDARTS):
        step = method.step_with
        method.train_step = lambda state, tb, vb: step(state, tb, vb, method.hyper_at(state.step))
    return method


def add_ablation_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--variants", nargs="+", default=list(ABLATION_VARIANTS), choices=list(ABLATION_VARIANTS)
    )
    p.add_argument("--seeds", type=int, default=1, help="searches per variant (seeds 0..n-1)")
    p.add_argument("--epochs", type=int, default=2, help="search epochs")
    p.add_argument("--limit", type=int, default=1200, help="training images (half for beta)")
    p.add_argument("--tau-max", type=float, default=1.0, help="PR-DARTS tau at epoch 0")
    p.add_argument("--tau-min", type=float, default=0.1, help="PR-DARTS tau at the last epoch")
    p.add_argument("--darts-config", default="configs/darts_fmnist_tiny.py")
    p.add_argument("--prdarts-config", default="configs/prdarts_fmnist_tiny.py")
    p.add_argument(
        "--no-cache", action="store_true", help="no persistent compilation cache (cold compiles)"
    )


def run_ablation(args: argparse.Namespace) -> dict[str, Any]:
    """Run the Fig. 1 ablation; write ``ablation.{json,png}`` and ``ablation_verdict.txt``.

    Every variant runs the tiny Fashion-MNIST search (``jaxnas.run.search``, workdirs
    under ``<out>/ablation_runs``) for ``--epochs`` epochs; the derived cells'
    :func:`cell_stats` are compared across variants (means over seeds).
    """
    import shutil

    from jaxnas import genotype as G
    from jaxnas.config import load_config
    from jaxnas.run import search
    from jaxnas.search.prdarts_reg import prdarts_derive
    from jaxnas.xla import enable_compilation_cache

    if args.no_cache:  # jaxnas.run.search turns the cache on itself unless this is empty
        os.environ["JAXNAS_CACHE_DIR"] = ""
    else:
        enable_compilation_cache()
    root = os.path.join(args.out, "ablation_runs")
    runs: list[dict[str, Any]] = []
    t_all = time.perf_counter()
    for seed in range(args.seeds):
        for v in args.variants:
            method, extra = ABLATION_VARIANTS[v]
            overrides = [
                f"seed={seed}",
                f"search.epochs={args.epochs}",
                f"data.limit={args.limit}",
                "run.eval_test=false",
                "run.tensorboard=false",
                "run.checkpoint_keep=1",
                "run.log_every_steps=0",
            ]
            if method == "prdarts":
                overrides += [f"search.tau_max={args.tau_max}", f"search.tau_min={args.tau_min}"]
            config = load_config(
                args.darts_config if method == "darts" else args.prdarts_config,
                [*overrides, *extra],
            )
            wd = os.path.join(root, f"{v}_seed{seed}")
            if os.path.isdir(wd):  # this script's own output: start the search afresh
                shutil.rmtree(wd)
            t0 = time.perf_counter()
            summary = search(config, wd, progress=False, build=_shared_step_build)
            wall = time.perf_counter() - t0
            geno = G.load(summary["genotype_json"])
            with open(os.path.join(wd, "alphas", "meta.json"), encoding="utf-8") as f:
                prims = json.load(f)["primitives"]
            last = np.load(os.path.join(wd, "alphas", f"epoch_{args.epochs:03d}.npz"))
            w = last["normal"]
            conv_cols = [i for i, p in enumerate(prims) if p in _PATH_OPS]
            # the other rule (two distinct predecessors); P(g != 0) ranks like beta
            alt = geno if method == "darts" else prdarts_derive(w, last["reduce"], rule="darts")
            final = summary["final"]
            runs.append(
                dict(
                    variant=v,
                    method=method,
                    seed=seed,
                    wall_s=round(wall, 1),
                    genotype=str(geno),
                    normal=cell_stats(geno.normal),
                    reduce=cell_stats(geno.reduce),
                    genotype_darts_rule=str(alt),
                    normal_darts_rule=cell_stats(alt.normal),
                    # DARTS: softmax weights; PR-DARTS: P(g != 0), normal cell, last epoch
                    skip_weight=float(w[:, prims.index("skip_connect")].mean()),
                    conv_weight=float(w[:, conv_cols].mean()),
                    train_loss=final.get("train/loss"),
                    valid_loss=final.get("valid/loss"),
                )
            )
            print(f"[ablation] {v} seed {seed}: {runs[-1]['normal']} ({wall:.0f}s)", flush=True)
    keys = ("skips", "depth", "conv_depth", "conv_chain")

    def means(field: str) -> dict[str, dict[str, float]]:
        return {
            v: {k: float(np.mean([r[field][k] for r in runs if r["variant"] == v])) for k in keys}
            for v in args.variants
        }

    mean, mean_alt = means("normal"), means("normal_darts_rule")
    claims = ablation_claims(mean)
    result = dict(
        experiment="ablation",
        setup=dict(
            epochs=args.epochs,
            limit=args.limit,
            seeds=args.seeds,
            tau=[args.tau_max, args.tau_min],
            darts_config=args.darts_config,
            prdarts_config=args.prdarts_config,
        ),
        variants={v: dict(method=m, overrides=list(o)) for v, (m, o) in ABLATION_VARIANTS.items()},
        runs=runs,
        normal_mean=mean,
        claims=claims,
        # the same with PR-DARTS cells derived by the DARTS rule (distinct predecessors)
        normal_mean_darts_rule=mean_alt,
        claims_darts_rule=ablation_claims(mean_alt),
        wall_s=round(time.perf_counter() - t_all, 1),
    )
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "ablation.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    _plot_ablation(result, os.path.join(args.out, "ablation.png"))
    text = _verdict_ablation(result)
    with open(os.path.join(args.out, "ablation_verdict.txt"), "w", encoding="utf-8") as f:
        f.write(text)
    print(text)
    return result


def _verdict_ablation(result: dict[str, Any]) -> str:
    s = result["setup"]
    lines = [
        "PR-DARTS Fig. 1 ablation on the tiny Fashion-MNIST search",
        f"{s['epochs']} epochs, {s['limit']} images, {s['seeds']} seed(s), PR-DARTS tau "
        f"{s['tau'][0]} -> {s['tau'][1]}; wall {result['wall_s']:.0f}s",
    ]
    if s["seeds"] < 3:
        lines.append(
            "note: under 3 seeds one search decides each row; at this size beta moves by about "
            "a_lr per step, so read a claim as established only if it holds across seeds"
        )
    for title, mean_key, claims_key, geno_key in (
        (
            "each method's own rule (PR-DARTS: top 2 pairs per node)",
            "normal_mean",
            "claims",
            "genotype",
        ),
        (
            "PR-DARTS cells by the DARTS rule (2 distinct predecessors)",
            "normal_mean_darts_rule",
            "claims_darts_rule",
            "genotype_darts_rule",
        ),
    ):
        lines.append(f"derived by {title}")
        lines.append("  normal cell (mean over seeds): skips / depth / conv depth / conv chain")
        for v, m in result[mean_key].items():
            lines.append(
                f"    {v:6s} {m['skips']:.2f} / {m['depth']:.2f} / {m['conv_depth']:.2f} / "
                f"{m['conv_chain']:.2f}"
            )
        for r in result["runs"]:
            lines.append(f"    {r['variant']} seed {r['seed']}: {r[geno_key]}")
        lines.append("  claims:")
        for c in result[claims_key]:
            lines.append(f"    [{'HELD' if c['held'] else 'NOT HELD'}] {c['name']}: {c['text']}")
    return "\n".join(lines) + "\n"


def _plot_ablation(result: dict[str, Any], path: str) -> None:
    from matplotlib.figure import Figure

    variants = list(result["normal_mean"])
    keys = (
        ("skips", "skip connections"),
        ("depth", "depth (ops)"),
        ("conv_depth", "conv depth (ops)"),
    )
    fig = Figure(figsize=(13, 4.2))
    axes = fig.subplots(1, len(keys) + 1, gridspec_kw=dict(width_ratios=[1, 1, 1, 1.6]))
    x = np.arange(len(variants))
    for ax, (key, label) in zip(axes, keys):
        ax.bar(x, [result["normal_mean"][v][key] for v in variants], color="C0", alpha=0.6)
        for i, v in enumerate(variants):
            vals = [r["normal"][key] for r in result["runs"] if r["variant"] == v]
            ax.scatter(np.full(len(vals), i), vals, color="black", s=14, zorder=3)
        ax.set_xticks(x, variants)
        ax.set_ylabel(label)
        ax.set_title(f"normal cell: {label}", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    ax = axes[-1]
    ax.bar(x - 0.2, [_mean_of(result, v, "skip_weight") for v in variants], 0.4, label="skip")
    ax.bar(x + 0.2, [_mean_of(result, v, "conv_weight") for v in variants], 0.4, label="convs")
    ax.set_xticks(x, variants)
    ax.set_ylabel("mean weight, last epoch")
    ax.set_title("normal cell: DARTS softmax / PR-DARTS P(g≠0)", fontsize=10)
    ax.legend(fontsize=8)
    s = result["setup"]
    fig.suptitle(
        f"Fig. 1 ablation, tiny Fashion-MNIST search ({s['epochs']} epochs, {s['seeds']} seed(s))"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110, facecolor="white")


def _mean_of(result: dict[str, Any], variant: str, key: str) -> float:
    return float(np.mean([r[key] for r in result["runs"] if r["variant"] == variant]))


# --------------------------------------------------------------------------------------
# fig2 and thm4: fixed-cell CNNs on Fashion-MNIST (Fig. 2) and deep vs shallow cells
# (Theorem 4) -- the helpers of support.prdarts_cnn and the thm4_* functions of
# support.prdarts_theory
# --------------------------------------------------------------------------------------


def _add_cnn_arguments(p: argparse.ArgumentParser, steps: int) -> None:
    p.add_argument("--seeds", type=int, default=3, help="runs per network (seeds 0..n-1)")
    p.add_argument("--steps", type=int, default=steps, help="SGD steps per run")
    p.add_argument("--channels", type=int, default=8, help="C of the first cells")
    p.add_argument("--layers", type=int, default=8, help="cells (paper: 8)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05, help="constant SGD learning rate")
    p.add_argument("--n-train", type=int, default=2000, help="Fashion-MNIST training images")
    p.add_argument("--n-test", type=int, default=1000, help="Fashion-MNIST test images")
    p.add_argument("--pool", type=int, default=2, help="mean-pool images by this factor")
    p.add_argument(
        "--window", type=int, default=0, help="steps per smoothing window (0: steps // 20)"
    )
    p.add_argument(
        "--no-cache", action="store_true", help="no persistent compilation cache (cold compiles)"
    )


def _cnn_setup(args: argparse.Namespace) -> tuple[Any, Any, int]:
    """``(data, settings, window)`` from the shared CNN arguments."""
    from support import prdarts_cnn as CNN

    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    if not args.no_cache:
        from jaxnas.xla import enable_compilation_cache

        enable_compilation_cache()
    settings = CNN.TrainSettings(
        channels=args.channels,
        layers=args.layers,
        batch_size=args.batch_size,
        steps=args.steps,
        lr=args.lr,
    )
    data = CNN.load_fmnist(args.n_train, args.n_test, pool=args.pool)
    window = args.window or max(1, args.steps // 20)
    if window > args.steps:
        raise ValueError(f"--window {window} exceeds --steps {args.steps}")
    return data, settings, window


def _cnn_stats(runs: Sequence[dict[str, Any]], window: int) -> dict[str, Any]:
    """Seed statistics of one network's runs: ``auc_K`` = mean training loss over steps
    ``0..K-1`` (area under the curve: lower = faster), ``loss_K`` = mean over the last
    ``window`` steps before ``K``, for ``K`` = a quarter, half and all of the steps;
    final test / training-subset accuracy and loss (evaluation mode)."""
    losses = np.asarray([r["losses"] for r in runs])  # (seeds, steps)
    steps = losses.shape[1]
    ks = sorted({max(window, steps // 4), max(window, steps // 2), steps})
    out: dict[str, Any] = dict(checkpoints=ks)
    for k in ks:
        auc, win = losses[:, :k].mean(1), losses[:, k - window : k].mean(1)
        out[f"auc_{k}"] = dict(mean=float(auc.mean()), std=float(auc.std()), per_seed=auc.tolist())
        out[f"loss_{k}"] = dict(mean=float(win.mean()), std=float(win.std()), per_seed=win.tolist())
    for split in ("test", "train_eval"):
        for key in ("accuracy", "loss"):
            v = np.asarray([r[split][key] for r in runs])
            out[f"{split}_{key}"] = dict(
                mean=float(v.mean()), std=float(v.std()), per_seed=v.tolist()
            )
    out["params"] = sorted({int(r["params"]) for r in runs})
    out["finite"] = all(r["finite"] for r in runs)
    return out


def _ordered_claim(
    name: str, text: str, stats: dict[str, Any], order: Sequence[str], key: str
) -> dict[str, Any]:
    """``held`` if ``stats[c][key]["mean"]`` strictly increases along ``order``; also the
    number of seeds whose own values are ordered."""
    means = [stats[c][key]["mean"] for c in order]
    per_seed = np.asarray([stats[c][key]["per_seed"] for c in order])  # (configs, seeds)
    seeds_ok = int(np.all(np.diff(per_seed, axis=0) > 0, axis=0).sum())
    return dict(
        name=name,
        text=text,
        held=bool(np.all(np.diff(means) > 0)),
        order=list(order),
        key=key,
        means=means,
        seeds_ordered=seeds_ok,
        seeds=per_seed.shape[1],
    )


def _smooth(y: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average along the last axis (shorter windows at the start)."""
    c = np.cumsum(np.asarray(y, float), axis=-1)
    out = c.copy()
    out[..., window:] = c[..., window:] - c[..., :-window]
    n = np.minimum(np.arange(1, y.shape[-1] + 1), window)
    return out / n


def _plot_loss_bands(ax, curves: dict[str, np.ndarray], window: int, title: str) -> None:
    """Smoothed training loss, mean +- one std over seeds, one line per network."""
    for i, (label, losses) in enumerate(curves.items()):
        sm = _smooth(losses, window)
        mean, std = sm.mean(0), sm.std(0)
        steps = np.arange(1, len(mean) + 1)
        ax.plot(steps, mean, color=f"C{i}", label=label)
        ax.fill_between(steps, mean - std, mean + std, color=f"C{i}", alpha=0.2)
    ax.set_yscale("log")
    ax.set_xlabel("SGD step")
    ax.set_ylabel(f"training loss (moving mean of {window} steps)")
    ax.set_title(title)
    ax.legend(fontsize=8)


def _plot_accuracy(ax, stats: dict[str, dict[str, Any]], labels: dict[str, str]) -> None:
    """Final test accuracy per network: seeds as dots, mean +- std as a bar."""
    for i, s in enumerate(stats.values()):
        v = np.asarray(s["test_accuracy"]["per_seed"])
        ax.bar(i, v.mean(), yerr=v.std(), color=f"C{i}", alpha=0.5, capsize=4)
        ax.scatter(np.full(len(v), i), v, color="black", s=12, zorder=3)
    ax.set_xticks(range(len(stats)), [labels[c] for c in stats], fontsize=8)
    lo = min(min(s["test_accuracy"]["per_seed"]) for s in stats.values())
    ax.set_ylim(max(0.0, lo - 0.05), None)
    ax.set_ylabel("final test accuracy")
    ax.set_title("test accuracy after the last step")


def _claim_lines(claims: Sequence[dict[str, Any]]) -> list[str]:
    lines = []
    for c in claims:
        seeds = f", {c['seeds_ordered']}/{c['seeds']} seeds" if "seeds_ordered" in c else ""
        lines.append(f"  [{'HELD' if c['held'] else 'NOT HELD'}] {c['name']}: {c['text']}{seeds}")
    return lines


# ---- fig2 ----------------------------------------------------------------------------


def add_fig2_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--skips", type=int, nargs="+", default=[0, 3, 5], help="skips per cell")
    p.add_argument("--wiring", default="PRDARTS", help="genotype whose edges the cells keep")
    p.add_argument(
        "--placement",
        choices=["per-seed", "shared"],
        default="per-seed",
        help="skip positions drawn per seed, or seed 0's for every seed",
    )
    _add_cnn_arguments(p, steps=150)


def run_fig2(args: argparse.Namespace) -> dict[str, Any]:
    """The Fig. 2 miniature; write ``fig2.{json,png}`` and ``fig2_verdict.txt``.

    Networks: :func:`support.prdarts_cnn.fig2_genotype` -- ``--layers`` cells whose
    8 ops are ``conv_3x3`` with ``k`` of them (``--skips``) replaced by skips, in the
    edges of ``--wiring``.  Each ``(k, seed)`` trains from the seed's init and batch
    order (the same for every ``k``).  Fig. 2's claim (L98: "more skip connections
    gives faster convergence") is checked on the training loss: its mean over the
    first quarter / all steps (lower = faster) and its level at the end should fall
    as ``k`` grows.  The final test accuracy is reported too; Fig. 2 makes no claim
    about it (the paper's Sec. 1 says skip-dominated cells perform worse).
    """
    from support import prdarts_cnn as CNN

    from jaxnas.genotype import get_genotype

    data, settings, window = _cnn_setup(args)
    wiring = get_genotype(args.wiring)
    n_ops = len(wiring.normal)
    skips = sorted(set(args.skips))
    for k in skips:
        if not 0 <= k <= min(n_ops, len(wiring.reduce)):
            raise ValueError(f"--skips: {k} is not in [0, {n_ops}] ({args.wiring} cells)")
    trainers: dict[Any, Any] = {}
    runs: dict[int, list[dict[str, Any]]] = {k: [] for k in skips}
    t_all = time.perf_counter()
    for seed in range(args.seeds):
        for k in skips:
            g = CNN.fig2_genotype(k, seed if args.placement == "per-seed" else 0, wiring)
            if g not in trainers:
                trainers[g] = CNN.make_trainer(g, data, settings)
            r = CNN.train_run(trainers[g], data, settings, seed)
            r.update(
                seed=seed,
                genotype=g.to_darts_dict(),
                depth=dict(normal=CNN.cell_depth(g.normal), reduce=CNN.cell_depth(g.reduce)),
            )
            runs[k].append(r)
            print(
                f"[fig2] skips={k} seed={seed}: loss {np.mean(r['losses'][:window]):.3f} -> "
                f"{np.mean(r['losses'][-window:]):.3f}, test acc {r['test']['accuracy']:.3f} "
                f"({r['wall_s']:.0f}s)",
                flush=True,
            )
    stats = {str(k): _cnn_stats(runs[k], window) for k in skips}
    order = [str(k) for k in reversed(skips)]  # most skips first: expected lowest loss
    ks = stats[order[0]]["checkpoints"]
    claims = []
    if len(skips) > 1:
        claims = [
            _ordered_claim(
                "faster_early",
                f"more skips -> lower mean training loss over the first {ks[0]} steps "
                "(Fig. 2, L98)",
                stats,
                order,
                f"auc_{ks[0]}",
            ),
            _ordered_claim(
                "faster_whole_run",
                f"more skips -> lower mean training loss over all {ks[-1]} steps (Fig. 2, L98)",
                stats,
                order,
                f"auc_{ks[-1]}",
            ),
            _ordered_claim(
                "lower_final_train_loss",
                f"more skips -> lower training loss over the last {window} steps (Fig. 2, L98)",
                stats,
                order,
                f"loss_{ks[-1]}",
            ),
            _ordered_claim(
                "worse_test_accuracy",
                "more skips -> lower final test accuracy (NOT a Fig. 2 claim; the paper's "
                "'skip-dominated cells perform worse')",
                stats,
                order,
                "test_accuracy",
            ),
        ]
    result = dict(
        experiment="fig2",
        setup=dict(
            vars(settings),
            seeds=args.seeds,
            n_train=len(data.train),
            n_test=len(data.test),
            input_shape=list(data.input_shape),
            wiring=args.wiring,
            placement=args.placement,
            ops_per_cell=n_ops,
            window=window,
            conv_op=CNN.CONV_OP,
        ),
        skips=skips,
        stats=stats,
        claims=claims,
        runs={str(k): v for k, v in runs.items()},
        wall_s=round(time.perf_counter() - t_all, 1),
    )
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "fig2.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    _plot_fig2(result, os.path.join(args.out, "fig2.png"))
    text = _verdict_fig2(result)
    with open(os.path.join(args.out, "fig2_verdict.txt"), "w", encoding="utf-8") as f:
        f.write(text)
    print(text)
    return result


def _verdict_fig2(result: dict[str, Any]) -> str:
    s = result["setup"]
    lines = [
        "PR-DARTS Fig. 2 miniature: conv_3x3 cells with k of 8 ops turned into skips",
        f"{s['layers']} cells, C={s['channels']}, Fashion-MNIST {s['n_train']} train / "
        f"{s['n_test']} test at {s['input_shape'][0]}x{s['input_shape'][1]}, batch "
        f"{s['batch_size']}, SGD lr {s['lr']} (constant), {s['steps']} steps, "
        f"{s['seeds']} seeds, {s['wiring']} wiring, skip placement {s['placement']}; "
        f"wall {result['wall_s']:.0f}s",
        "skips  params            depth(normal)  train loss: mean over first K / all steps, "
        "last window; test acc (mean +- std over seeds)",
    ]
    for k in result["skips"]:
        st = result["stats"][str(k)]
        ks = st["checkpoints"]
        depth = sorted({r["depth"]["normal"] for r in result["runs"][str(k)]})
        params = "/".join(f"{p:,}" for p in st["params"])
        lines.append(
            f"  {k:<4d} {params:17s} {depth!s:14s} "
            f"{st[f'auc_{ks[0]}']['mean']:.3f} / {st[f'auc_{ks[-1]}']['mean']:.3f}, "
            f"{st[f'loss_{ks[-1]}']['mean']:.3f}; "
            f"{st['test_accuracy']['mean']:.3f} +- {st['test_accuracy']['std']:.3f}"
        )
    lines.append("claims (on the means over seeds):")
    lines += _claim_lines(result["claims"])
    return "\n".join(lines) + "\n"


def _plot_fig2(result: dict[str, Any], path: str) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 4.5))
    ax = fig.add_subplot(1, 2, 1)
    n_ops = result["setup"]["ops_per_cell"]
    labels = {str(k): f"{k}/{n_ops} skips ({100 * k / n_ops:.1f}%)" for k in result["skips"]}
    curves = {
        labels[str(k)]: np.asarray([r["losses"] for r in result["runs"][str(k)]])
        for k in result["skips"]
    }
    s = result["setup"]
    _plot_loss_bands(
        ax,
        curves,
        s["window"],
        f"Fig. 2 miniature: {s['layers']} conv_3x3 cells, C={s['channels']}, "
        f"{s['seeds']} seeds (mean ± std)",
    )
    _plot_accuracy(fig.add_subplot(1, 2, 2), result["stats"], labels)
    fig.tight_layout()
    fig.savefig(path, dpi=110, facecolor="white")


# ---- thm4 ----------------------------------------------------------------------------

#: Gate configurations of the analysis-model part: the named weightings of
#: ``prdarts_theory.NAMED_ALPHAS`` (rows (zero, skip, conv)), every gate equal to
#: ``half`` = 0.5 / ``ones`` = 1, or ``chain``: gates 0.5 on the chain edges
#: ``l-1 -> l`` and 0 elsewhere.  With ``chain`` A is a chain of ``h - 1`` edges and B two
#: chains of ``h/2 - 1`` edges (the chain edge between the branches is B's second stem),
#: so depth differs while the weights in use nearly match (B: one stem more, one conv less).
_EQUAL_GATES = {"half": 0.5, "ones": 1.0}
_THM4_GATES = (*_EQUAL_GATES, "chain")


def _thm4_alpha(name: str, h: int) -> np.ndarray:
    edges = T.analysis_edges(h)
    if name in _EQUAL_GATES:
        return np.full((len(edges), 3), _EQUAL_GATES[name])
    if name == "chain":
        return np.array([[0.5] * 3 if d == s + 1 else [0.0] * 3 for s, d in edges])
    return T.alpha_config(name, h)


def add_thm4_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--parts", nargs="+", default=["analysis", "cnn"], choices=["analysis", "cnn"])
    p.add_argument(
        "--configs",
        nargs="+",
        default=["half", "chain", "all-conv", "skip-inner/conv-last"],
        help="gate configurations of the analysis model ("
        + ", ".join([*_THM4_GATES, *T.NAMED_ALPHAS])
        + ")",
    )
    p.add_argument("--etas", nargs="+", type=float, default=[0.5, 0.1], help="GD step sizes")
    p.add_argument("--gd-steps", type=int, default=150, help="GD steps of the analysis model")
    p.add_argument("--gd-seeds", type=int, default=3, help="seeds of the analysis model")
    p.add_argument("--h", type=int, default=6, help="nodes of the analysis cell (even)")
    p.add_argument("--m", type=int, default=32, help="channels of the analysis model")
    p.add_argument("--n", type=int, default=32, help="samples of the analysis model")
    _add_cnn_arguments(p, steps=150)


def run_thm4(args: argparse.Namespace) -> dict[str, Any]:
    """Theorem 4's deep-vs-shallow comparison; write ``thm4.{json,png}``, ``thm4_verdict.txt``.

    Two parts, each comparing the training-loss decrease of a deep and a shallow cell
    under the same optimiser from the same init:

    * ``analysis`` -- the theorem's own setting.  Deep cell A = the analysis model of
      Eqs. 3-5 with ``h`` nodes (every node fed by all earlier ones); shallow cell B =
      two branches of ``h/2`` nodes each fed by ``X`` (Fig. 3b,
      :func:`support.prdarts_theory.forward_shallow`), every gate B has equal to
      A's.  Full-batch GD (Eq. 6) at fixed step sizes; compared quantity: the
      relative loss ``L_K / L_0`` (geometric mean over seeds) at K = a quarter, half
      and all of the steps.  Theorem 4 says ``F(W(k+1)) <= (1 - eta lambda / 4) F(W(k))``
      with ``lambda_B > lambda_A``, i.e. a faster geometric decrease for B: B's
      ``L_K / L_0`` should be lower.  The theorem's bound (``thm4_rates``) and the
      empirical NTK's smallest eigenvalue at init (which sets the actual early rate)
      are reported beside it.  With every gate non-zero B has fewer weights than A
      (``thm4_sizes``: 6 edges against 15 at h = 6), as in the paper; the ``chain``
      gates (0.5 on the edges ``l-1 -> l`` only) compare a chain of depth ``h`` with
      two chains of depth ``h/2`` at nearly the same weights in use.
    * ``cnn`` -- the search-space reading: the fig2 network with the deep chain cell
      (:func:`~support.prdarts_cnn.chain_cell`, conv path depth 4) against the
      shallow wide cell (:func:`~support.prdarts_cnn.wide_cell`, depth 1), both 8
      ``conv_3x3`` ops per cell, hence exactly the same parameters.  Compared: the
      training loss averaged over the first quarter / all steps and at the end (lower =
      faster: Theorem 4 predicts the wide cell), and the final test accuracy (Sec. 4.2
      says deep cells "can achieve superior final performance", the reason for L_path).
    """
    from support import prdarts_cnn as CNN

    t_all = time.perf_counter()
    result: dict[str, Any] = dict(experiment="thm4", parts=list(args.parts))
    claims: list[dict[str, Any]] = []
    if "analysis" in args.parts:
        part = _thm4_analysis(args)
        result["analysis"] = part
        claims += part["claims"]
    if "cnn" in args.parts:
        data, settings, window = _cnn_setup(args)
        cells = {"deep": CNN.chain_cell(), "shallow": CNN.wide_cell()}
        runs: dict[str, list[dict[str, Any]]] = {c: [] for c in cells}
        for name, cell in cells.items():
            g = _both_cells(cell)
            trainer = CNN.make_trainer(g, data, settings)
            for seed in range(args.seeds):
                r = CNN.train_run(trainer, data, settings, seed)
                r.update(seed=seed)
                runs[name].append(r)
                print(
                    f"[thm4] {name} cell seed={seed}: loss {np.mean(r['losses'][:window]):.3f}"
                    f" -> {np.mean(r['losses'][-window:]):.3f}, test acc "
                    f"{r['test']['accuracy']:.3f} ({r['wall_s']:.0f}s)",
                    flush=True,
                )
        stats = {c: _cnn_stats(runs[c], window) for c in cells}
        ks = stats["deep"]["checkpoints"]
        cnn_claims = [
            _ordered_claim(
                "cnn_shallow_faster_early",
                f"CNN: the wide (shallow) cell has the lower mean training loss over the first "
                f"{ks[0]} steps (Theorem 4)",
                stats,
                ["shallow", "deep"],
                f"auc_{ks[0]}",
            ),
            _ordered_claim(
                "cnn_shallow_faster_whole_run",
                f"CNN: the wide cell has the lower mean training loss over all {ks[-1]} steps "
                "(Theorem 4)",
                stats,
                ["shallow", "deep"],
                f"auc_{ks[-1]}",
            ),
            _ordered_claim(
                "cnn_deep_better_test",
                "CNN: the deep chain cell ends with the higher test accuracy (Sec. 4.2)",
                stats,
                ["shallow", "deep"],
                "test_accuracy",
            ),
        ]
        result["cnn"] = dict(
            setup=dict(
                vars(settings),
                seeds=args.seeds,
                n_train=len(data.train),
                n_test=len(data.test),
                input_shape=list(data.input_shape),
                window=window,
                conv_op=CNN.CONV_OP,
            ),
            cells={
                c: dict(
                    genotype=[list(p) for p in cell.pairs],
                    depth=CNN.cell_depth(cell),
                    params=stats[c]["params"],
                )
                for c, cell in cells.items()
            },
            stats=stats,
            claims=cnn_claims,
            runs=runs,
        )
        claims += cnn_claims
    result["claims"] = claims
    result["wall_s"] = round(time.perf_counter() - t_all, 1)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "thm4.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    _plot_thm4(result, os.path.join(args.out, "thm4.png"))
    text = _verdict_thm4(result)
    with open(os.path.join(args.out, "thm4_verdict.txt"), "w", encoding="utf-8") as f:
        f.write(text)
    print(text)
    return result


def _both_cells(cell: Any) -> Any:
    """A genotype with ``cell`` as both its normal and its reduction cell."""
    from jaxnas.genotype import Genotype

    return Genotype(normal=cell, reduce=cell)


def _thm4_analysis(args: argparse.Namespace) -> dict[str, Any]:
    """The analysis-model part of :func:`run_thm4`."""
    cfg = T.AnalysisConfig(m=args.m, h=args.h)
    names = list(args.configs)
    for n in names:
        if n not in _THM4_GATES and n not in T.NAMED_ALPHAS:
            known = ", ".join([*_THM4_GATES, *T.NAMED_ALPHAS])
            raise ValueError(f"unknown gate configuration {n!r}; known: {known}")
    alphas = np.stack([_thm4_alpha(n, cfg.h) for n in names])
    rates = [T.thm4_rates(a, cfg.h) for a in alphas]
    seeds = list(range(args.gd_seeds))
    checkpoints = sorted({max(1, args.gd_steps // 4), max(1, args.gd_steps // 2), args.gd_steps})
    cells = list(T.THM4_CELLS)
    # lambda_min of the empirical NTK at init, geometric mean over (up to) 3 seeds
    ntk = {}
    for cell in cells:
        gram = jax.jit(
            jax.vmap(lambda p, a, x, c=cell: T.thm4_ntk_gram(p, a, x, cfg, c), (None, 0, None))
        )
        vals = []
        for seed in seeds[:3]:
            params, x, _ = T.thm4_setup(seed, cfg, args.n)
            g = np.asarray(gram(params, jax.numpy.asarray(alphas, "float32"), x), np.float64)
            vals.append(np.linalg.eigvalsh(g)[:, 0])
        ntk[cell] = np.exp(np.mean(np.log(np.maximum(vals, 1e-30)), axis=0)).tolist()
    runs = []
    claims = []
    for eta in args.etas:
        rel = {}
        for cell in cells:
            losses = T.thm4_gd_losses(
                alphas, seeds, cfg, cell, n=args.n, eta=eta, steps=args.gd_steps
            )
            rel[cell] = losses / losses[:, :, :1]  # (seeds, configs, K+1)
        geo = {
            c: np.exp(np.log(np.maximum(r, 1e-30)).mean(0)) for c, r in rel.items()
        }  # (configs, K+1)
        finite = {c: bool(np.all(np.isfinite(r))) for c, r in rel.items()}
        runs.append(
            dict(
                eta=eta,
                finite=finite,
                rel_loss={
                    str(k): {
                        n: {c: float(geo[c][i, k]) for c in cells} for i, n in enumerate(names)
                    }
                    for k in checkpoints
                },
                seeds_shallow_lower={
                    str(k): {
                        n: int((rel["shallow"][:, i, k] < rel["deep"][:, i, k]).sum())
                        for i, n in enumerate(names)
                    }
                    for k in checkpoints
                },
                curves={c: geo[c].tolist() for c in cells},
            )
        )
    for n in names:
        failed = [
            dict(eta=r["eta"], K=int(k), config=n)
            for r in runs
            for k, per in r["rel_loss"].items()
            if not per[n]["shallow"] < per[n]["deep"]
        ]
        claims.append(
            dict(
                name=f"analysis_shallow_faster[{n}]",
                text=f"analysis model, gates {n!r}: the two-branch cell B reaches the lower "
                "L_K/L_0 than the deep cell A at every step size and checkpoint (Theorem 4)",
                held=not failed,
                failed_at=failed,
            )
        )
    # lambda_min of the NTK at init against the measured order at the last checkpoint
    k_last = str(checkpoints[-1])
    agree = [
        (ntk["shallow"][i] > ntk["deep"][i])
        == (r["rel_loss"][k_last][n]["shallow"] < r["rel_loss"][k_last][n]["deep"])
        for r in runs
        for i, n in enumerate(names)
    ]
    claims.append(
        dict(
            name="analysis_ntk_predicts_winner",
            text="diagnostic: the cell with the larger lambda_min(NTK at init) is the faster "
            f"one at K={k_last}",
            held=all(agree),
            agree=f"{sum(agree)}/{len(agree)}",
        )
    )
    claims.append(
        dict(
            name="analysis_bound_orders",
            text="Theorem 4's bound: lambda_B >= lambda_A + extra > lambda_A for every gate "
            "configuration (a property of the formula)",
            held=all(float(b) > float(a) for a, b in rates),
        )
    )
    return dict(
        model=dict(vars(cfg), n=args.n),
        sizes=T.thm4_sizes(cfg),
        configs=names,
        alphas={n: a.tolist() for n, a in zip(names, alphas)},
        lambda_A=dict(zip(names, [float(a) for a, _ in rates])),
        lambda_B_bound=dict(zip(names, [float(b) for _, b in rates])),
        ntk_lambda_min=ntk,
        steps=args.gd_steps,
        seeds=seeds,
        checkpoints=checkpoints,
        runs=runs,
        claims=claims,
    )


def _verdict_thm4(result: dict[str, Any]) -> str:
    lines = ["PR-DARTS Theorem 4: deep vs shallow cells"]
    if "analysis" in result:
        a = result["analysis"]
        m, sz = a["model"], a["sizes"]
        lines += [
            f"analysis model (Eqs. 3-6): h={m['h']} m={m['m']} p={m['p']} n={m['n']}, "
            f"full-batch GD, K={a['steps']}, {len(a['seeds'])} seeds",
            f"  deep A: {sz['deep']['params']:,} weights, {sz['deep']['edges']} edges, conv "
            f"depth {sz['deep']['depth']}; shallow B: {sz['shallow']['params']:,} weights, "
            f"{sz['shallow']['edges']} edges, conv depth {sz['shallow']['depth']}",
            "  L_K/L_0 deep vs shallow (geometric mean over seeds) at K = "
            + ", ".join(str(k) for k in a["checkpoints"]),
        ]
        for r in a["runs"]:
            lines.append(f"  eta={r['eta']}  (finite: {r['finite']})")
            for i, n in enumerate(a["configs"]):
                vals = "  ".join(
                    f"{r['rel_loss'][str(k)][n]['deep']:.2e}/{r['rel_loss'][str(k)][n]['shallow']:.2e}"
                    for k in a["checkpoints"]
                )
                lines.append(
                    f"    {n:22s} lam_A={a['lambda_A'][n]:.4f} lam_B>={a['lambda_B_bound'][n]:.4f}"
                    f" ntk_min A/B={a['ntk_lambda_min']['deep'][i]:.2e}/"
                    f"{a['ntk_lambda_min']['shallow'][i]:.2e}  {vals}"
                )
    if "cnn" in result:
        c = result["cnn"]
        s = c["setup"]
        lines += [
            f"CNN: {s['layers']} cells, C={s['channels']}, Fashion-MNIST {s['n_train']} / "
            f"{s['n_test']} at {s['input_shape'][0]}x{s['input_shape'][1]}, batch "
            f"{s['batch_size']}, SGD lr {s['lr']}, {s['steps']} steps, {s['seeds']} seeds",
        ]
        for name, cell in c["cells"].items():
            st = c["stats"][name]
            ks = st["checkpoints"]
            lines.append(
                f"  {name:8s} cell (depth {cell['depth']}, {cell['params'][0]:,} params): "
                f"train loss {st[f'auc_{ks[0]}']['mean']:.3f} / {st[f'auc_{ks[-1]}']['mean']:.3f}"
                f" (mean over first {ks[0]} / all steps), last window "
                f"{st[f'loss_{ks[-1]}']['mean']:.3f}; test acc "
                f"{st['test_accuracy']['mean']:.3f} +- {st['test_accuracy']['std']:.3f}"
            )
    lines.append("claims:")
    lines += _claim_lines(result["claims"])
    for cl in result["claims"]:
        if cl.get("failed_at"):
            where = ", ".join(f"eta={f['eta']} K={f['K']}" for f in cl["failed_at"])
            lines.append(f"  {cl['name']} failed at: {where}")
    lines.append(f"wall {result['wall_s']:.0f}s")
    return "\n".join(lines) + "\n"


def _plot_thm4(result: dict[str, Any], path: str) -> None:
    from matplotlib.figure import Figure

    rows = []
    if "analysis" in result:
        rows.append("analysis")
    if "cnn" in result:
        rows.append("cnn")
    n_cols = max(2, len(result["analysis"]["runs"]) if "analysis" in result else 2)
    fig = Figure(figsize=(6.5 * n_cols, 4.5 * len(rows)))
    for row, part in enumerate(rows):
        if part == "analysis":
            a = result["analysis"]
            for col, r in enumerate(a["runs"]):
                ax = fig.add_subplot(len(rows), n_cols, row * n_cols + col + 1)
                for i, n in enumerate(a["configs"]):
                    for cell, style in (("deep", "-"), ("shallow", "--")):
                        ax.plot(
                            np.asarray(r["curves"][cell][i]),
                            style,
                            color=f"C{i}",
                            label=f"{n} ({'A deep' if cell == 'deep' else 'B shallow'})",
                        )
                ax.set_yscale("log")
                ax.set_xlabel("GD step k")
                ax.set_ylabel("L_k / L_0 (geo-mean over seeds)")
                ax.set_title(f"Theorem 4 on the analysis model, η={r['eta']}")
                ax.legend(fontsize=7)
        else:
            c = result["cnn"]
            labels = {n: f"{n} cell (depth {cell['depth']})" for n, cell in c["cells"].items()}
            curves = {
                labels[n]: np.asarray([r["losses"] for r in c["runs"][n]]) for n in c["cells"]
            }
            s = c["setup"]
            _plot_loss_bands(
                fig.add_subplot(len(rows), n_cols, row * n_cols + 1),
                curves,
                s["window"],
                f"CNN, {s['layers']} cells, C={s['channels']}, {s['seeds']} seeds (mean ± std)",
            )
            _plot_accuracy(fig.add_subplot(len(rows), n_cols, row * n_cols + 2), c["stats"], labels)
    fig.tight_layout()
    fig.savefig(path, dpi=110, facecolor="white")


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------

Subcommand = tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], Any]]

#: name -> (add_arguments, run); add the Fig. 2 miniature and the ablation here.
SUBCOMMANDS: dict[str, Subcommand] = {
    "analysis": (add_analysis_arguments, run_analysis),
    "ablation": (add_ablation_arguments, run_ablation),
    "fig2": (add_fig2_arguments, run_fig2),
    "thm4": (add_thm4_arguments, run_thm4),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (add_args, _) in SUBCOMMANDS.items():
        p = sub.add_parser(name)
        p.add_argument("--out", default="runs/prdarts_theory", help="output folder")
        add_args(p)
    args = parser.parse_args(argv)
    SUBCOMMANDS[args.command][1](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
