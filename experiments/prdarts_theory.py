"""PR-DARTS theory experiments (Zhou et al., NeurIPS 2020, Sec. 3.2 and 4.2).

Subcommands (each writes a figure, a JSON file and a short verdict to ``--out``):

  analysis   Theorem 1 on the analysis model of Eqs. 3-6: full-batch GD with fixed
             op weightings alpha from one shared init per seed; compares the
             measured training-loss decrease with Theorem 1's rate lambda(alpha).

Usage::

    python experiments/prdarts_theory.py analysis --out runs/prdarts_theory
    python experiments/prdarts_theory.py analysis --out /tmp/t --seeds 2 --steps 50  # smoke

More subcommands (the Fig. 2 miniature, the Fig. 1 ablation) register in
``SUBCOMMANDS`` at the bottom: each is ``(add_arguments(parser), run(args) -> dict)``.
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

from jaxnas.search import prdarts_theory as T

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
# CLI
# --------------------------------------------------------------------------------------

Subcommand = tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], Any]]

#: name -> (add_arguments, run); add the Fig. 2 miniature and the ablation here.
SUBCOMMANDS: dict[str, Subcommand] = {
    "analysis": (add_analysis_arguments, run_analysis),
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
