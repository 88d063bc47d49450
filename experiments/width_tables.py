"""Thesis Tables 4.1, 4.2 and 4.4 (width search and SiDT), on GPU or as CPU miniatures.

F. Xue, PhD thesis (UC Irvine 2022), Ch. 4.  Each subcommand runs ``jaxnas compress``
(:func:`jaxnas.width_compress.compress`) once per row and writes ``table.md`` and
``table.json`` (error vs pruning ratio vs parameters / MACs) and ``kept_widths.png``
(kept channels per layer of every row) under ``--out``:

* ``table41``: PreResNet-164 on CIFAR-10 at 40 % and 60 % pruned channels: RARTS vs
  Network Slimming vs random pruning, and the unpruned baseline
  (``configs/width_preresnet164_cifar10.py``); ``--fmnist``: the small PreActResNet on
  Fashion-MNIST (``configs/width_fmnist_tiny.py``).
* ``table42``: the MobileNetV2 ablation: scores searched by RARTS, DARTS-1, DARTS-2
  with the learned ratio (keep the non-zero scores), random pruning at RARTS' ratio
  (``configs/width_mobilenetv2_imagenet.py``); ``--fmnist``: the PreActResNet demo.
* ``table44``: SiDT on Swin-T at 20/40/60/80 %, CIFAR-100 resized to 224x224
  (``configs/sidt_swin_t_cifar100.py`` or ``--config``); ``--fmnist``: ViT-tiny on
  Fashion-MNIST (``configs/sidt_vit_fmnist_tiny.py``).
* ``table45``: the same rows on ImageNet-20 (``configs/sidt_swin_t_imagenet20.py``).

A method's search (or training) does not depend on the pruning ratio: the first ratio
runs it, the other ratios reuse its checkpoints (``resume``) and only prune and
fine-tune.  ``--set key=value`` overrides every run's config (e.g. shorter budgets).

    python experiments/width_tables.py table41 --fmnist --out runs/width_table41_fmnist
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CONFIGS = {
    ("table41", False): "configs/width_preresnet164_cifar10.py",
    ("table41", True): "configs/width_fmnist_tiny.py",
    ("table42", False): "configs/width_mobilenetv2_imagenet.py",
    ("table42", True): "configs/width_fmnist_tiny.py",
    ("table44", False): "configs/sidt_swin_t_cifar100.py",
    ("table44", True): "configs/sidt_vit_fmnist_tiny.py",
    ("table45", False): "configs/sidt_swin_t_imagenet20.py",
    ("table45", True): "configs/sidt_vit_fmnist_tiny.py",
}

#: NetSlim's l1 is a subgradient *before* momentum SGD: a constant push gamma sgn(s)
#: becomes a step of eta gamma / (1 - mu) = 10 eta gamma, where RARTS' prox shrinks by
#: eta gamma.  The fmnist miniature gives NetSlim gamma / 10 of the RARTS demo's 0.1
#: (0.1 there drove every BN scale to ~0 within an epoch and training stalled at 11 %).
NETSLIM_FMNIST = ("search.gamma=0.01",)

#: the fmnist Table 4.2 miniature: the learned ratio needs exact zeros in a few hundred
#: steps, hence a larger gamma than the Table 4.1 demo's (see the README)
TABLE42_FMNIST = ("search.gamma=0.4",)


def rows(table: str, fmnist: bool = False) -> list[dict[str, Any]]:
    """The runs of a table: ``name``, ``method``, ``overrides``, ``share`` (the run whose
    search checkpoints this one reuses)."""
    if table == "table41":
        out = []
        for method, label in (("rarts-width", "RARTS"), ("netslim", "NS"), ("random", "Random")):
            for ratio in (0.4, 0.6):
                out.append(
                    dict(
                        name=f"{method}_{int(ratio * 100)}",
                        label=f"{label} ({int(ratio * 100)} % PRC)",
                        method=method,
                        overrides=[
                            f"prune.ratio={ratio}",
                            "prune.mode=ratio",
                            *(NETSLIM_FMNIST if fmnist and method == "netslim" else ()),
                        ],
                        share=f"{method}_40" if ratio != 0.4 else None,
                    )
                )
        return out
    if table == "table42":
        out = [
            dict(
                name=order,
                label={"rarts": "RARTS", "darts1": "DARTS-1", "darts2": "DARTS-2"}[order],
                method="rarts-width",
                overrides=[f"search.order={order}", "prune.mode=nonzero"],
                share=None,
            )
            for order in ("rarts", "darts1", "darts2")
        ]
        out.append(
            dict(
                name="random",
                label="Random pruning",
                method="random",
                overrides=["prune.mode=ratio"],  # ratio set from the RARTS row
                share=None,
                ratio_from="rarts",
            )
        )
        return out
    if table in ("table44", "table45"):
        return [
            dict(
                name=f"sidt_{int(r * 100)}",
                label=f"{int(r * 100)} %",
                method="sidt",
                overrides=[f"prune.ratio={r}", "prune.mode=ratio"],
                share="sidt_20" if r != 0.2 else None,
            )
            for r in (0.2, 0.4, 0.6, 0.8)
        ]
    raise ValueError(f"unknown table {table!r}")


def run_row(row, config_path: str, out: str, extra: Sequence[str], progress: bool) -> dict:
    from jaxnas.config import load_config
    from jaxnas.width_compress import compress

    wd = os.path.join(out, row["name"])
    from jaxnas.config import validate

    # a sibling method of the config's family: keep every section (``--set method=``
    # would re-base the config on that method's defaults), then apply the row's keys
    data = load_config(config_path).to_dict()
    data["method"] = row["method"]
    config = load_config_from(validate(data, source=config_path), [*row["overrides"], *extra])
    done = os.path.join(wd, "summary.json")
    if os.path.exists(done):  # finished earlier: the table is rebuilt from it
        with open(done, encoding="utf-8") as f:
            return json.load(f)
    resume = os.path.isdir(os.path.join(wd, "search", "checkpoints"))
    if row.get("share") and not resume:
        src = os.path.join(out, row["share"], "search")  # the shared row's search phase
        if os.path.isdir(os.path.join(src, "checkpoints")):
            shutil.copytree(src, os.path.join(wd, "search"))
            resume = True
    return compress(config, wd, resume=resume, progress=progress)


def load_config_from(config, overrides: Sequence[str]):
    """``config`` with ``key=value`` overrides applied, locked."""
    from jaxnas.config import apply_overrides

    config = apply_overrides(config, overrides) if overrides else config
    config.lock()
    return config


def _fmt_int(v: float) -> str:
    return f"{v / 1e6:.2f}M" if v >= 1e6 else f"{int(v):,}"


def write_table(table: str, results: list[tuple[dict, dict]], out: str) -> str:
    """``table.md`` / ``table.json`` and the kept-widths plot; returns the Markdown."""
    lines = [
        f"# {table}: error vs pruning ratio vs size",
        "",
        "| run | pruned channels | params | MACs | err unpruned | err pruned | err fine-tuned |",
        "|---|---|---|---|---|---|---|",
    ]
    seen = set()
    for row, s in results:  # each method's own network before pruning
        if row["method"] + str(s.get("order")) in seen:
            continue
        seen.add(row["method"] + str(s.get("order")))
        lines.append(
            f"| unpruned, {row['label'].split(' (')[0]}'s weights | 0 % | "
            f"{_fmt_int(s['params'])} | {_fmt_int(s['macs'])} | "
            f"{100 * s['error_unpruned']:.2f} | - | - |"
        )
    for row, s in results:
        lines.append(
            f"| {row['label']} | {100 * s['pruned_ratio']:.1f} % | {_fmt_int(s['params_after'])} | "
            f"{_fmt_int(s['macs_after'])} | {100 * s['error_unpruned']:.2f} | "
            f"{100 * s['error_pruned']:.2f} | {100 * s['error_finetuned']:.2f} |"
        )
    md = "\n".join(lines) + "\n"
    with open(os.path.join(out, "table.md"), "w", encoding="utf-8") as f:
        f.write(md)
    with open(os.path.join(out, "table.json"), "w", encoding="utf-8") as f:
        json.dump([{"row": r, "summary": s} for r, s in results], f, indent=1, sort_keys=True)
    plot_widths(results, os.path.join(out, "kept_widths.png"), table)
    return md


def plot_widths(results, path: str, title: str) -> None:
    """Kept fraction of every group (layer order), one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.5))
    for row, s in results:
        with open(s["pruned_json"], encoding="utf-8") as f:
            pruned = json.load(f)
        keep = pruned["keep"]
        widths = pruned.get("widths") or {}
        names = list(keep)
        frac = [len(keep[n]) / widths[n][1] if n in widths else np.nan for n in names]
        ax.plot(np.arange(len(names)), frac, marker=".", label=row["label"])
    ax.set_xlabel("channel group (layer order)")
    ax.set_ylabel("kept fraction")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"{title}: kept widths per layer")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("table", choices=("table41", "table42", "table44", "table45"))
    parser.add_argument("--fmnist", action="store_true", help="the CPU miniature")
    parser.add_argument("--config", default=None, help="override the table's config file")
    parser.add_argument("--out", required=True, help="output folder (one workdir per row)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--only", default=None, help="comma-separated row names to run")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args(argv)

    config_path = args.config or os.path.join(ROOT, CONFIGS[(args.table, args.fmnist)])
    extra = list(args.set)
    if args.table == "table42" and args.fmnist:
        extra = [*TABLE42_FMNIST, *extra]
    os.makedirs(args.out, exist_ok=True)
    results = []
    only = set(args.only.split(",")) if args.only else None
    by_name: dict[str, dict] = {}
    for row in rows(args.table, args.fmnist):
        if only and row["name"] not in only:
            continue
        if row.get("ratio_from") in by_name:  # random pruning at RARTS' learned ratio
            ratio = by_name[row["ratio_from"]]["pruned_ratio"]
            row = {**row, "overrides": [*row["overrides"], f"prune.ratio={ratio:.6f}"]}
        summary = run_row(row, config_path, args.out, extra, args.progress)
        by_name[row["name"]] = summary
        results.append((row, summary))
        print(f"{row['name']}: {json.dumps({k: summary[k] for k in _KEYS})}", flush=True)
    if results:
        print(write_table(args.table, results, args.out))
    return 0


_KEYS = ("pruned_ratio", "params_after", "error_unpruned", "error_pruned", "error_finetuned")

if __name__ == "__main__":
    sys.exit(main())
