"""Print a Markdown table comparing two ``bench_suite.py`` result files.

Rows are matched by (method, size); for compile time, steady step time, peak host memory,
peak accelerator memory (GPU/TPU files) and the step's process CPU time the table gives the
old value, the new value and the ratio new / old (below 1: the new run is faster or
smaller).  Rows in only one file, or that failed in either (e.g. killed for memory), are
listed with a note instead of a ratio.

    python benchmarks/compare.py old_suite.json benchmarks/results/suite.json
    python benchmarks/compare.py benchmarks/results/suite.json    # one file's table
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_suite import SUITE  # noqa: E402

#: (row key, column title) of the compared quantities
METRICS = (
    ("compile_s", "compile s"),
    ("step_s", "step s"),
    ("peak_rss_gb", "peak GB"),
    ("peak_device_gb", "device GB"),  # the accelerator's peak (absent on a CPU)
    ("step_cpu_s", "step CPU s"),  # process CPU time: less sensitive to other jobs' load
)


class CompareError(ValueError):
    """A file that is not a suite result, or two files with nothing to compare."""


def load(path: str) -> dict:
    """A suite result file, checked: ``CompareError`` saying what is wrong otherwise."""
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise CompareError(f"{path}: no such file") from None
    except json.JSONDecodeError as e:
        raise CompareError(f"{path}: not JSON ({e})") from None
    if not isinstance(data, dict) or data.get("suite") != SUITE:
        raise CompareError(
            f'{path}: not a benchmarks/bench_suite.py result (no "suite": {SUITE!r}); the '
            "older per-script files (supernet.json, train.json, ...) are not comparable"
        )
    rows = data.get("results")
    if not isinstance(rows, list) or not all(
        isinstance(r, dict) and "method" in r and "size" in r for r in rows
    ):
        raise CompareError(f'{path}: "results" must be a list of rows with "method" and "size"')
    return data


def _fmt(v) -> str:
    if v is None:
        return "-"
    return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"


def ratio(old, new) -> float | None:
    """new / old, or None when either is missing or old is not positive."""
    if old is None or new is None or not old > 0:
        return None
    return new / old


def _machine(d: dict) -> str:
    keys = ("device", "backend", "cpu_model", "cpus_usable", "ram_gb", "jax", "datetime_utc")
    return ", ".join(f"{k} {d[k]}" for k in keys if d.get(k) is not None)


def compare(old: dict, new: dict) -> str:
    """The Markdown comparison of two loaded suite files (``load``).

    Raises ``CompareError`` when no (method, size) has a measurement in both.
    """
    o = {(r["method"], r["size"]): r for r in old["results"]}
    n = {(r["method"], r["size"]): r for r in new["results"]}
    keys = list(o) + [k for k in n if k not in o]
    both = [k for k in keys if k in o and k in n and "error" not in o[k] and "error" not in n[k]]
    if not both:
        raise CompareError(
            "the two files have no (method, size) row measured in both: "
            f"old has {sorted(o)}, new has {sorted(n)}"
        )
    head = ["method", "size"]
    for _, title in METRICS:
        head += [f"{title} old", f"{title} new", f"{title} ratio"]
    lines = [
        f"old: {_machine(old)}",
        f"new: {_machine(new)}",
        "",
        "| " + " | ".join(head + ["note"]) + " |",
        "|" + "---|" * (len(head) + 1),
    ]
    for k in keys:
        a, b = o.get(k, {}), n.get(k, {})
        cells = list(k)
        for key, _ in METRICS:
            r = ratio(a.get(key), b.get(key))
            cells += [_fmt(a.get(key)), _fmt(b.get(key)), "-" if r is None else f"{r:.2f}x"]
        note = []
        if k not in o or k not in n:
            note.append("only in " + ("new" if k not in o else "old"))
        note += [f"{which}: {r['error']}" for which, r in (("old", a), ("new", b)) if "error" in r]
        lines.append("| " + " | ".join(cells + ["; ".join(note)]) + " |")
    geo = [ratio(o[k].get("step_s"), n[k].get("step_s")) for k in both]
    geo = [v for v in geo if v]
    if geo:
        mean = math.exp(sum(map(math.log, geo)) / len(geo))
        lines += ["", f"geometric mean step-time ratio over {len(geo)} rows: {mean:.2f}x"]
    return "\n".join(lines)


def table(data: dict) -> str:
    """The Markdown table of one loaded suite file: one line per row, in file order."""
    head = "| method | size | model | init s | compile s | step s | peak GB | device GB "
    head += "| step CPU s | load avg | note |"
    lines = [f"machine: {_machine(data)}", "", head, "|" + "---|" * 11]
    for r in data["results"]:
        if "error" in r:
            model = "-"
        elif r.get("kind") == "train":
            model = f"C={r['init_channels']}, {r['layers']} cells, batch {r['batch']}, {r['dtype']}"
        else:
            model = f"C={r['init_channels']}, {r['layers']} cells, batch {r['batch']}"
            model += f", {r['order']} order" if r.get("order") in ("first", "second") else ""
            model += ", remat" if r.get("remat") else ""
        load = r.get("loadavg_end") or r.get("loadavg_start") or ["-"]
        cells = [r["method"], r["size"], model]
        keys = ("init_s", "compile_s", "step_s", "peak_rss_gb", "peak_device_gb", "step_cpu_s")
        cells += [_fmt(r.get(k)) for k in keys]
        cells += [_fmt(load[0]) if load != ["-"] else "-", r.get("error", "")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("old")
    p.add_argument("new", nargs="?", help="without it: the table of OLD alone")
    a = p.parse_args(argv)
    try:
        print(table(load(a.old)) if a.new is None else compare(load(a.old), load(a.new)))
    except CompareError as e:
        p.error(str(e))


if __name__ == "__main__":
    main()
