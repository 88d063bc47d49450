"""BayesNAS structured compression on Fashion-MNIST: a Table S4 / S5 on CPU.

Runs ``jaxnas compress`` (method ``bayes-group``, BayesNAS App. B / Algorithm 3) for
LeNet-300-100 and LeNet-5-Caffe over a few lambda values, starting from
``configs/bayes_group_lenet300_fmnist.py`` and ``configs/bayes_group_lenet5_fmnist.py``;
lambda = 0 is the dense baseline (no penalty, no pruning).  Writes, into ``--out``,

* ``table.md``: per model the rows "lambda | pruned architecture | test error (%) |
  FLOPs (M) | MACs | non-zero params | compression" as Tables S4 / S5
  (FLOPs = 2 x multiply-adds of the pruned architecture, one image);
* ``table.json``: the same rows plus every run's summary;
* one workdir per run (``<model>_lam<lambda>/``: metrics, log, summary, units.png).

    python experiments/bayes_compress_fmnist.py --out runs/bayes_compress_fmnist
    python experiments/bayes_compress_fmnist.py --out /tmp/bc --quick   # ~ a minute
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = {
    "lenet300": os.path.join(ROOT, "configs", "bayes_group_lenet300_fmnist.py"),
    "lenet5": os.path.join(ROOT, "configs", "bayes_group_lenet5_fmnist.py"),
}
PAPER = {  # Tables S4 / S5 (MNIST): the dense baseline and BayesNAS's row
    "lenet300": ("784-300-100 -> 465-37-90", 1.54, 0.04),
    "lenet5": ("20-50-800-500 -> 5-10-65-25", 1.00, 0.57),
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--models", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--lams", nargs="+", type=float, default=[0.0, 3e-4, 1e-3, 3e-3])
    p.add_argument("--epochs", type=int, default=0, help="override the configs' epochs")
    p.add_argument("--k", type=int, default=0, help="override the update period k")
    p.add_argument("--limit", type=int, default=-1, help="training images (0: all)")
    p.add_argument("--eval-limit", type=int, default=-1, help="test images (0: all)")
    p.add_argument("--quick", action="store_true", help="2 epochs on 3,000 images")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def _config(model: str, lam: float, args: argparse.Namespace):
    from jaxnas.config import load_config

    sets = [f"lam={lam}", f"seed={args.seed}", "run.tensorboard=False"]
    if args.quick:
        sets += ["epochs=2", "k=1", "data.limit=3000", "run.eval_limit=2000"]
    if args.epochs:
        sets.append(f"epochs={args.epochs}")
    if args.k:
        sets.append(f"k={args.k}")
    if args.limit >= 0:
        sets.append(f"data.limit={args.limit}")
    if args.eval_limit >= 0:
        sets.append(f"run.eval_limit={args.eval_limit}")
    return load_config(CONFIGS[model], sets)


def row(summary: dict[str, Any]) -> dict[str, Any]:
    """One table row from a ``bayes-group`` summary."""
    return {
        "lam": summary["lam"],
        "architecture": summary["architecture_after"],
        "error_pct": 100.0 * summary["error_after"],
        "flops_M": summary["flops_after"] / 1e6,
        "macs": summary["macs_after"],
        "params_nonzero": summary["params_nonzero_after"],
        "compression": summary["compression"],
        "time_s": summary["time_s"],
    }


def table(rows: dict[str, list[dict[str, Any]]], dense: dict[str, str]) -> str:
    lines = []
    for model, rs in rows.items():
        lines += [
            f"### {model} on Fashion-MNIST (dense {dense[model]})",
            "",
            "| lambda | pruned architecture | error (%) | FLOPs (M) | MACs | non-zero params "
            "| compression | time (s) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in rs:
            lam = "0 (dense)" if r["lam"] == 0 else f"{r['lam']:g}"
            lines.append(
                f"| {lam} | {r['architecture']} | {r['error_pct']:.2f} | {r['flops_M']:.3f} "
                f"| {r['macs']:,} | {r['params_nonzero']:,} | {r['compression']:.1f}x "
                f"| {r['time_s']:.0f} |"
            )
        arch, err, fl = PAPER[model]
        lines += ["", f"Paper (MNIST): {arch}, {err:.2f} % error, {fl} MFLOPs.", ""]
    return "\n".join(lines)


def main(argv=None) -> dict[str, Any]:
    from jaxnas.bayes_compress import compress

    args = parse_args(argv)
    if any(lam < 0 for lam in args.lams):
        raise SystemExit("error: --lams must be >= 0")
    os.makedirs(args.out, exist_ok=True)
    t0 = time.perf_counter()
    rows: dict[str, list[dict[str, Any]]] = {}
    summaries: dict[str, list[dict[str, Any]]] = {}
    dense: dict[str, str] = {}
    for model in args.models:
        for lam in sorted(args.lams):
            workdir = os.path.join(args.out, f"{model}_lam{lam:g}")
            config = _config(model, lam, args)
            resume = os.path.exists(os.path.join(workdir, "config.json"))
            s = compress(config, workdir, resume=resume)
            rows.setdefault(model, []).append(row(s))
            summaries.setdefault(model, []).append(s)
            dense[model] = s["architecture_before"]
            print(
                f"{model} lam={lam:g}: {s['architecture']} error {100 * s['error_after']:.2f} %",
                file=sys.stderr,
                flush=True,
            )
    md = table(rows, dense)
    result = {
        "rows": rows,
        "summaries": summaries,
        "argv": vars(args),
        "wall_s": time.perf_counter() - t0,
    }
    with open(os.path.join(args.out, "table.md"), "w", encoding="utf-8") as f:
        f.write(md + "\n")
    with open(os.path.join(args.out, "table.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1, default=str)
    print(md)
    print(f"wrote {args.out}/table.md and table.json ({result['wall_s']:.0f} s)")
    return result


if __name__ == "__main__":
    main()
