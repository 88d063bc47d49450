"""Every search method on the same Fashion-MNIST budget: search, retrain, test, compare.

For each method of the config (``configs/head_to_head_fmnist.py``: DARTS first and
exact second order, RARTS, SparseNAS with HAPG and AdamHAPG, BayesNAS, ASM-NAS,
PR-DARTS) and each seed:

1. ``jaxnas.run.search`` with the method's tiny config plus the shared ``search``
   overrides (same images, split, supernet size and epochs for every method); ASM-NAS
   then runs its selection (Algorithm 1) on its held-out half;
2. ``jaxnas.train.train`` of the derived genotype with the shared retraining config;
3. one ``result.json`` per (method, seed): test error, parameters, multiply-adds,
   search and retraining wall time, skip connections in the normal cell, and the
   number of CPUs the row ran on (XLA's thread count changes float summation order,
   and after training a row's test error can move by points, not digits).

Resumable: a (method, seed) with a ``result.json`` is never redone, and an interrupted
search or retraining continues from its last checkpoint.  Outputs under ``--workdir``:

  ``results.json``      every (method, seed) record
  ``table.md``          one row per method: test error mean ± std over the seeds, ...
  ``table.json``        the same rows as JSON
  ``cells.png``         each method's normal cell (first seed), side by side
  ``alphas.png``        each method's architecture-weight trajectories (first seed)
  ``<method>/seed<k>/`` the search (``search/``) and retraining (``retrain/``) workdirs

Usage::

    python experiments/fmnist_head_to_head.py --config configs/head_to_head_fmnist.py \
        --workdir runs/h2h [--quick] [--methods darts_1st,rarts] [--jobs 2] \
        [--set search.search.epochs=3] [--set rarts.search.lam=0.5]

``--jobs 2`` runs two rows at once, each in a child process pinned to one CPU (see
:func:`run_rows_in_children`); every row needs its own memory.  A row's result is
reproducible for the same number of CPUs per row: ``--jobs 1`` rows use every CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import logging
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

logger = logging.getLogger("jaxnas.head_to_head")

#: Columns of ``table.md``: (key in a row, header).
COLUMNS = (
    ("method", "method"),
    ("test_error", "test error % (mean ± std)"),
    ("params_M", "params (M)"),
    ("macs_M", "mult-adds (M)"),
    ("search_s", "search (s)"),
    ("retrain_s", "retrain (s)"),
    ("normal_skips", "skips in normal cell"),
    ("seeds", "seeds"),
)


# ------------------------------------------------------------------------------- config


def load_experiment(path: str, quick: bool, sets: Sequence[str] = ()) -> dict[str, Any]:
    """The experiment config of ``path`` as a plain dict, ``quick`` merged in (its
    ``seeds``, ``search`` and ``retrain`` overrides, and ``methods``: a row's own extra
    search overrides).

    ``sets`` are ``search.KEY=VALUE`` / ``retrain.KEY=VALUE`` overrides of the shared
    search and retraining overrides, or ``ROW.KEY=VALUE``: a search override of one
    row only (e.g. ``sparsenas_hapg.search.lam_start=0.1``).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"experiment config {path} does not exist")
    spec = importlib.util.spec_from_file_location("_h2h_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    c = module.get_config().to_dict()
    exp = {
        "methods": {name: (path, _as_overrides(ov, name)) for name, path, ov in c["methods"]},
        "seeds": tuple(c["seeds"]),
        "search": _as_overrides(c["search"], "search"),
        "retrain_config": c["retrain"]["config"],
        "retrain": _as_overrides(c["retrain"]["overrides"], "retrain.overrides"),
    }
    if quick:
        q = c.get("quick") or {}
        exp["seeds"] = tuple(q.get("seeds", exp["seeds"][:1]))
        exp["search"].update(_as_overrides(q.get("search") or (), "quick.search"))
        exp["retrain"].update(_as_overrides(q.get("retrain") or (), "quick.retrain"))
        for name, items in (q.get("methods") or {}).items():
            if name not in exp["methods"]:
                raise ValueError(
                    f"quick.methods names {name!r}, not a row; rows: {', '.join(exp['methods'])}"
                )
            exp["methods"][name][1].update(_as_overrides(items, f"quick.methods.{name}"))
    for item in sets:
        part, _, rest = item.partition(".")
        if part in ("search", "retrain"):
            exp[part].update(_as_overrides([rest], "--set"))
        elif part in exp["methods"]:  # one row's own search override
            exp["methods"][part][1].update(_as_overrides([rest], "--set"))
        else:
            raise ValueError(
                f"--set {item!r}: expected search.KEY=VALUE, retrain.KEY=VALUE or "
                f"ROW.KEY=VALUE with ROW one of {', '.join(exp['methods'])}"
            )
    return exp


def _as_overrides(items: Sequence[str], where: str) -> dict[str, str]:
    """``["KEY=VALUE", ...]`` as an ordered ``{KEY: VALUE}`` (later keys win)."""
    out = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        if not sep or not key:
            raise ValueError(f"{where}: {item!r} is not KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def _override_strings(overrides: Mapping[str, Any]) -> list[str]:
    return [f"{k}={v}" for k, v in overrides.items()]


# ------------------------------------------------------------------------ one method/seed


def normal_skips(genotype: Any) -> float:
    """Skip connections in the normal cell (mean over normal cells when per layer)."""
    if genotype.cells:
        reductions = set(genotype.reduction_cells(len(genotype.cells)))
        normals = [c for i, c in enumerate(genotype.cells) if i not in reductions]
    else:
        normals = [genotype.normal]
    counts = [sum(op == "skip_connect" for op, _ in cell.pairs) for cell in normals]
    return float(np.mean(counts)) if counts else 0.0


def _read_times(stage_file: str) -> dict[str, float]:
    if not os.path.exists(stage_file):
        return {}
    with open(stage_file, encoding="utf-8") as f:
        return json.load(f)


def _timed(stage_file: str, key: str, fn):
    """Run ``fn`` and add its wall time to ``stage_file[key]`` (summed over resumes, and
    counted also when ``fn`` stops with an exception: an interrupted stage's time is spent)."""
    times = _read_times(stage_file)
    t0 = time.time()
    try:
        out = fn()
    finally:
        times[key] = times.get(key, 0.0) + time.time() - t0
        with open(stage_file, "w", encoding="utf-8") as f:
            json.dump(times, f)
    return out, times[key]


def run_one(
    name: str, seed: int, exp: Mapping[str, Any], root: str, progress: bool
) -> dict[str, Any]:
    """Search, (select,) retrain and test method ``name`` with ``seed``; its record."""
    from jaxnas import genotype as genotype_lib
    from jaxnas.config import load_config
    from jaxnas.run import search
    from jaxnas.train import train

    folder = os.path.join(root, name, f"seed{seed}")
    result_path = os.path.join(folder, "result.json")
    if os.path.exists(result_path):
        with open(result_path, encoding="utf-8") as f:
            return json.load(f)
    os.makedirs(folder, exist_ok=True)
    times_path = os.path.join(folder, "times.json")
    config_path, method_overrides = exp["methods"][name]
    overrides = {**exp["search"], **method_overrides, "seed": seed}
    config = load_config(config_path, _override_strings(overrides))
    search_dir = os.path.join(folder, "search")
    summary_path = os.path.join(search_dir, "summary.json")
    if os.path.exists(summary_path):
        search_s = _read_times(times_path).get("search", float("nan"))
    else:
        logger.info("%s seed %d: search (%s)", name, seed, config_path)
        _, search_s = _timed(
            times_path,
            "search",
            lambda: search(config, search_dir, resume=True, progress=progress),
        )
    genotype_file = os.path.join(search_dir, "genotype.json")
    if config.method == "asmnas":
        genotype_file = _asmnas_selection(search_dir, times_path)
        search_s += _read_times(times_path).get("select", 0.0)
    genotype = genotype_lib.load(genotype_file)

    retrain_dir = os.path.join(folder, "retrain")
    retrain_overrides = {**exp["retrain"], "seed": seed}
    if genotype.cells:  # one cell per layer: the network has as many layers as cells
        retrain_overrides["model.layers"] = len(genotype.cells)
    rconfig = load_config(exp["retrain_config"], _override_strings(retrain_overrides))
    logger.info("%s seed %d: retrain %s", name, seed, genotype)
    s, retrain_s = _timed(
        times_path,
        "retrain",
        lambda: train(rconfig, retrain_dir, genotype=genotype_file, resume=True, progress=progress),
    )
    final = s.get("final") or {}
    record = {
        "method": name,
        "seed": seed,
        "search_config": config_path,
        "genotype": str(genotype),
        "genotype_json": os.path.relpath(genotype_file, root),
        "test_accuracy": final.get("test/accuracy"),
        "test_examples": final.get("test/examples"),
        "test_error": 100.0 * (1.0 - final["test/accuracy"]) if final else None,
        "params_M": s["params_M"],
        "macs_M": s["macs_M"],
        "search_s": search_s,
        "retrain_s": retrain_s,
        "normal_skips": normal_skips(genotype),
        "normal_png": None,
        # XLA's CPU thread pool has one thread per usable CPU, and the summation order
        # (so the trained network) depends on it: a row's provenance
        "cpus": len(_cpus()),
    }
    png = draw_normal_cell(genotype, os.path.join(folder, "genotype"))
    record["normal_png"] = os.path.relpath(png, root) if png else None
    with open(result_path, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1, sort_keys=True)
    return record


def _asmnas_selection(search_dir: str, times_path: str) -> str:
    """ASM-NAS' Algorithm-1 selection on the held-out half (once); its genotype file."""
    from jaxnas.asmnas_select import select_workdir

    out = os.path.join(search_dir, "selection")
    genotype_file = os.path.join(out, "genotype.json")
    if not os.path.exists(genotype_file):
        _timed(times_path, "select", lambda: select_workdir(search_dir, out=out))
    return genotype_file


# ------------------------------------------------------------------- rows in parallel


def _cpus() -> list[int]:
    """The CPUs this process may run on (all of them where affinity is not supported)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def run_rows_in_children(
    config_path: str,
    workdir: str,
    todo: Sequence[tuple[str, int]],
    *,
    quick: bool,
    sets: Sequence[str],
    jobs: int,
    poll_s: float = 0.5,
) -> None:
    """Run the ``(method, seed)`` rows of ``todo``, up to ``jobs`` at a time, each in a
    child process of this script (``--row METHOD:SEED``) pinned to one CPU.

    Why: at this size a row is dominated by XLA compilation, which runs on one thread,
    and the steps of a batch-32 network use a second core poorly, so two one-core rows
    at a time finish sooner than two rows one after the other on two cores.  Each
    child writes its own ``result.json`` (what :func:`run_one` reads back) and its log
    to ``<method>/seed<k>/row.log``.  A SIGTERM/SIGINT here is passed on to the running
    children, which checkpoint and stop; then :class:`jaxnas.runtime.Interrupted` is
    raised.  A child that fails stops the others the same way and raises
    :class:`jaxnas.runtime.RunError` naming its log.  Children run in their own session,
    so a terminal's Ctrl-C reaches them once, through this process.
    """
    import signal
    import subprocess

    from jaxnas.runtime import Interrupted, RunError, StopFlag

    cpus = _cpus()
    pending = list(todo)
    running: dict[subprocess.Popen, tuple[str, int, int, str]] = {}
    failed: list[tuple[str, int, int, str]] = []
    forwarded = False
    with StopFlag() as stop:
        try:
            while pending or running:
                while pending and len(running) < jobs and stop.signal is None and not failed:
                    name, seed = pending.pop(0)
                    slot = min(set(range(jobs)) - {v[2] for v in running.values()})
                    folder = os.path.join(workdir, name, f"seed{seed}")
                    os.makedirs(folder, exist_ok=True)
                    log_path = os.path.join(folder, "row.log")
                    cmd = [
                        sys.executable,
                        os.path.abspath(__file__),
                        "--config", config_path,
                        "--workdir", workdir,
                        "--row", f"{name}:{seed}",
                        "--cpu", str(cpus[slot % len(cpus)]),
                        *(["--quick"] if quick else []),
                        *[f"--set={item}" for item in sets],
                    ]  # fmt: skip
                    with open(log_path, "a", encoding="utf-8") as log:
                        proc = subprocess.Popen(
                            cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                        )
                    running[proc] = (name, seed, slot, log_path)
                    logger.info(
                        "%s seed %d: started on cpu %d (log %s)",
                        name,
                        seed,
                        cpus[slot % len(cpus)],
                        log_path,
                    )
                if (stop.signal is not None or failed) and not forwarded:
                    for proc in running:
                        proc.send_signal(signal.SIGTERM)
                    forwarded = True
                time.sleep(poll_s)
                for proc in [p for p in running if p.poll() is not None]:
                    name, seed, slot, log_path = running.pop(proc)
                    if proc.returncode == 0:
                        logger.info("%s seed %d: finished", name, seed)
                    elif not forwarded:
                        failed.append((name, seed, proc.returncode, log_path))
                if failed and not running:
                    break
        except BaseException:  # a second signal, or an error here: do not leave orphans
            for proc in running:
                proc.kill()
            raise
    if failed:
        name, seed, code, log_path = failed[0]
        raise RunError(f"{name} seed {seed} failed (exit status {code}); see {log_path}")
    if stop.signal is not None:
        raise Interrupted(f"{stop.name}: the running rows saved checkpoints; rerun to resume")


# ---------------------------------------------------------------------------- the table


def aggregate(records: Sequence[Mapping[str, Any]], order: Sequence[str]) -> list[dict]:
    """One row per method (in ``order``): means (and the error's std) over its seeds."""
    rows = []
    for name in order:
        rs = [r for r in records if r["method"] == name]
        if not rs:
            continue
        err = np.array([r["test_error"] for r in rs], dtype=float)
        row = {"method": name, "seeds": len(rs)}
        row["test_error_mean"] = float(err.mean())
        row["test_error_std"] = float(err.std(ddof=1)) if len(rs) > 1 else 0.0
        for key in ("params_M", "macs_M", "search_s", "retrain_s", "normal_skips"):
            row[key] = float(np.mean([r[key] for r in rs]))
        rows.append(row)
    return rows


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """``rows`` of :func:`aggregate` as a Markdown table."""
    lines = [
        "| " + " | ".join(h for _, h in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for r in rows:
        cells = []
        for key, _ in COLUMNS:
            if key == "test_error":
                cells.append(f"{r['test_error_mean']:.2f} ± {r['test_error_std']:.2f}")
            elif key == "method":
                cells.append(r["method"])
            elif key == "seeds":
                cells.append(str(r["seeds"]))
            elif key in ("params_M",):
                cells.append(f"{r[key]:.3f}")
            elif key in ("search_s", "retrain_s", "macs_M"):
                cells.append(f"{r[key]:.0f}" if math.isfinite(r[key]) else "-")
            else:
                cells.append(f"{r[key]:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _tile(images: Sequence[tuple[str, str]], path: str, cols: int) -> str | None:
    """Draw the PNG files ``images`` ((title, file) pairs) in a grid into ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = [(t, f) for t, f in images if f and os.path.exists(f)]
    if not images:
        return None
    cols = min(cols, len(images))
    rows = math.ceil(len(images) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.5 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (title, file) in zip(axes.flat, images):
        ax.imshow(plt.imread(file))
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def draw_normal_cell(genotype: Any, prefix: str) -> str | None:
    """Draw ``genotype`` at ``prefix`` (:func:`jaxnas.genotype.plot_genotype`); the PNG
    of its normal cell (the first normal layer's cell when there is one cell per layer)."""
    from jaxnas import genotype as genotype_lib

    try:
        written = genotype_lib.plot_genotype(genotype, prefix)
    except Exception as e:  # noqa: BLE001 - a missing picture must not lose the result
        logger.warning("could not draw %s: %s", prefix, e)
        return None
    if genotype.cells:
        reductions = set(genotype.reduction_cells(len(genotype.cells)))
        first = min(i for i in range(len(genotype.cells)) if i not in reductions)
        wanted = f"{prefix}_cell{first:02d}.png"
    else:
        wanted = f"{prefix}_normal.png"
    return wanted if wanted in written or os.path.exists(wanted) else None


def write_outputs(root: str, records: Sequence[Mapping[str, Any]], order: Sequence[str]) -> dict:
    """``results.json``, ``table.md/.json``, ``cells.png``, ``alphas.png`` under ``root``."""
    rows = aggregate(records, order)
    with open(os.path.join(root, "results.json"), "w", encoding="utf-8") as f:
        json.dump(list(records), f, indent=1, sort_keys=True)
    with open(os.path.join(root, "table.json"), "w", encoding="utf-8") as f:
        json.dump(rows, f, indent=1, sort_keys=True)
    table = markdown_table(rows)
    with open(os.path.join(root, "table.md"), "w", encoding="utf-8") as f:
        f.write(table)
    first = {}
    for r in records:
        first.setdefault(r["method"], r)
    cells, alphas = [], []
    for name in order:
        if name not in first:
            continue
        r = first[name]
        cells.append((name, os.path.join(root, r["normal_png"]) if r["normal_png"] else None))
        search_dir = os.path.join(root, name, f"seed{r['seed']}", "search")
        alphas.append((name, os.path.join(search_dir, "alphas.png")))
    return {
        "table": table,
        "cells_png": _tile(cells, os.path.join(root, "cells.png"), cols=4),
        "alphas_png": _tile(alphas, os.path.join(root, "alphas.png"), cols=4),
    }


@contextlib.contextmanager
def _workdir_lock(workdir: str):
    """Hold ``workdir/.lock`` (``fcntl.flock``) for the run: two runs in one workdir
    would retrain the same row into the same folder at once."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    with open(os.path.join(workdir, ".lock"), "w", encoding="utf-8") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(
                f"another head-to-head is running in {workdir}; wait for it, or use --jobs "
                "to run rows in parallel"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------------- main


def run(
    config_path: str,
    workdir: str,
    *,
    quick: bool = False,
    methods: Sequence[str] | None = None,
    sets: Sequence[str] = (),
    progress: bool = False,
    jobs: int = 1,
) -> dict[str, Any]:
    """Run (or finish) the head-to-head; returns ``write_outputs``' dict plus ``records``.

    ``jobs > 1`` runs the unfinished (method, seed) rows in that many child processes
    at once (:func:`run_rows_in_children`); ``jobs = 1`` runs them here, one by one.
    """
    if jobs < 1:
        raise ValueError(f"--jobs must be at least 1, got {jobs}")
    exp = load_experiment(config_path, quick, sets)
    order = list(exp["methods"])
    if methods:
        unknown = [m for m in methods if m not in exp["methods"]]
        if unknown:
            raise ValueError(f"unknown methods {unknown}; the config has {order}")
        order = [m for m in order if m in methods]
    os.makedirs(workdir, exist_ok=True)
    with _workdir_lock(workdir):
        # Finished (method, seed) results are reused, so they must come from the same settings.
        record = json.loads(json.dumps({**exp, "quick": quick}, default=list))
        exp_path = os.path.join(workdir, "experiment.json")
        if os.path.exists(exp_path):
            with open(exp_path, encoding="utf-8") as f:
                old = json.load(f)
            old_methods, new_methods = old.pop("methods", {}), record.pop("methods")
            same = old == record and all(
                old_methods.get(m) == new_methods[m] for m in order if m in old_methods
            )
            record["methods"] = {**old_methods, **new_methods}
            if not same:
                raise ValueError(
                    f"{workdir} holds a head-to-head with other settings ({exp_path}); "
                    "use a fresh --workdir"
                )
        with open(exp_path, "w", encoding="utf-8") as f:
            json.dump(record, f, indent=1, sort_keys=True)
        if jobs > 1:
            todo = [
                (name, seed)
                for seed in exp["seeds"]
                for name in order
                if not os.path.exists(os.path.join(workdir, name, f"seed{seed}", "result.json"))
            ]
            run_rows_in_children(config_path, workdir, todo, quick=quick, sets=sets, jobs=jobs)
        records = []
        t0 = time.time()
        for seed in exp["seeds"]:
            for name in order:
                records.append(run_one(name, seed, exp, workdir, progress))
                r = records[-1]
                logger.info(
                    "%s seed %d: test error %.2f %%, %.3fM params (%.0f s so far)",
                    name,
                    seed,
                    r["test_error"],
                    r["params_M"],
                    time.time() - t0,
                )
        out = write_outputs(workdir, records, order)
        out["records"] = records
        return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="configs/head_to_head_fmnist.py")
    p.add_argument("--workdir", required=True)
    p.add_argument("--quick", action="store_true", help="one seed, the config's quick budget")
    p.add_argument("--methods", default="", help="comma-separated subset of the config's rows")
    p.add_argument("--set", action="append", default=[], metavar="search.KEY=VALUE")
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="rows run at once, each in a child process on one CPU (default 1: in this process)",
    )
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--row", default="", help=argparse.SUPPRESS)  # METHOD:SEED, in a child
    p.add_argument("--cpu", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        # before jax is imported: XLA sizes its CPU thread pool from the affinity mask
        os.sched_setaffinity(0, {args.cpu})
    from jaxnas.logs import CliLogging
    from jaxnas.runtime import Interrupted, RunError
    from jaxnas.xla import enable_compilation_cache

    enable_compilation_cache()
    try:
        with CliLogging(verbose=False):
            if args.row:
                name, _, seed = args.row.rpartition(":")
                exp = load_experiment(args.config, args.quick, args.set)
                run_one(name, int(seed), exp, args.workdir, progress=False)
                return 0
            out = run(
                args.config,
                args.workdir,
                quick=args.quick,
                methods=[m for m in args.methods.split(",") if m],
                sets=args.set,
                progress=not args.no_progress and sys.stderr.isatty(),
                jobs=args.jobs,
            )
    except Interrupted as e:
        print(f"fmnist_head_to_head: {e}", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, RunError) as e:
        print(f"fmnist_head_to_head: error: {e}", file=sys.stderr)
        return 2
    print(out["table"], end="")
    for key in ("cells_png", "alphas_png"):
        if out.get(key):
            print(f"{key}: {out[key]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
