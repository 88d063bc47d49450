"""The performance suite: every search method at two sizes, and the retraining steps.

Rows (``--only``, names in ``BENCHES``):

* search methods -- ``darts_1st``, ``darts_2nd`` (exact hypergradient), ``rarts``,
  ``sparsenas_hapg``, ``sparsenas_adamhapg``, ``bayesnas``, ``asmnas``, ``prdarts``, ``gdas`` -- at
  ``tiny`` (the method's ``configs/*_fmnist_tiny.py``: C=4, 5 cells, batch 32, 28x28x1)
  and ``paper`` (the method's CIFAR-10 config with the papers' common search size
  C=16, 8 cells, batch 64, 32x32x3; ASM-NAS keeps its own 15 cells).  One row is one
  ``train_step(state, train_batch, valid_batch)`` of the method, as the runner calls it.
* retraining -- ``retrain_darts_v2`` (tiny: ``eval_fmnist_small``'s C=8, 5 cells, batch
  64, 28x28x1; paper: the DARTS_V2 CIFAR-10 network, C=36, 20 cells, auxiliary head,
  batch 96) and ``retrain_imagenet`` (paper only: C=48, 14 cells, 224x224x3, batch
  ``--imagenet-batch``), each also as ``*_bf16`` (``model.dtype=bfloat16``);
  ``--cifar-batch`` shrinks the CIFAR row's batch where memory forces it.

Each (row, size) runs in its own child process (``common.run_child``): its peak memory
(max RSS, compilation included) is its own, its compilation starts cold (no persistent
cache), and a child that passes ``--max-rss-gb`` or ``--timeout`` is killed and recorded
as such without stopping the suite.  Measurement: ``common.time_step`` (init, ahead-of-
time compile, one warm-up step, the median of ``--steps`` steps).  Each row records the
load average before and after it: on a shared machine the times are upper bounds.

``--jobs N`` measures N rows at a time: their init and compilation overlap (compile times
are then those of a shared machine), but each child takes a file lock for its warm-up and
timed steps (``common.step_lock``), so step times are measured alone.

Threads: the children get XLA's default CPU thread pool (one intra-op thread per core)
and one host device: ``--xla_force_host_platform_device_count`` is removed from
``XLA_FLAGS`` and ``JAX_COMPILATION_CACHE_DIR`` from the environment; both are written
to the JSON (``child_env``).  Writes JSON; not a test.

    python benchmarks/bench_suite.py --sizes tiny --steps 5
    python benchmarks/bench_suite.py --sizes paper --only darts_1st --steps 2 --append
    python benchmarks/compare.py old.json benchmarks/results/suite.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from common import STEP_LOCK_VAR, load_rows, run_child, write_results  # noqa: E402

#: identifies a suite file for ``compare.py``
SUITE = "jaxnas-bench-suite"
SIZES = ("tiny", "paper")
#: the papers' common search size and the tiny CPU size (model and batch of a search row)
SEARCH_SIZES = {
    "tiny": dict(init_channels=4, layers=5, batch=32, shape=(28, 28, 1)),
    "paper": dict(init_channels=16, layers=8, batch=64, shape=(32, 32, 3)),
}
_DARTS = dict(tiny="darts_fmnist_tiny.py", paper="darts_cifar10.py")
_SPARSE_TINY = "sparsenas_fmnist_tiny.py"
#: row name -> kind, config per size, overrides (all sizes) and, per size, own overrides
BENCHES: dict[str, dict] = {
    "darts_1st": dict(kind="search", configs=_DARTS, set=["search.order=first"]),
    "darts_2nd": dict(
        kind="search", configs=_DARTS, set=["search.order=second", "search.hypergradient=exact"]
    ),
    # the paper config names a latency table measured on its GPU: none here
    "rarts": dict(
        kind="search",
        configs=dict(tiny="rarts_fmnist_tiny.py", paper="rarts_cifar10.py"),
        set=["search.latency_table="],
    ),
    # the tiny config is first order (its docstring), the paper configs exact second order
    "sparsenas_hapg": dict(
        kind="search",
        configs=dict(tiny=_SPARSE_TINY, paper="sparsenas_cifar10_hapg.py"),
        set=["search.optimizer=hapg"],
    ),
    "sparsenas_adamhapg": dict(
        kind="search",
        configs=dict(tiny=_SPARSE_TINY, paper="sparsenas_cifar10_adamhapg.py"),
        set=["search.optimizer=adam_hapg"],
    ),
    # no warm-up: the timed steps are joint weight + gate steps, not the weights-only
    # warm-up the first 10 % of an epoch would be; the Hessian update (once per epoch)
    # is benchmarks/bench_bayesnas.py's
    "bayesnas": dict(
        kind="search",
        configs=dict(tiny="bayesnas_fmnist_tiny.py", paper="bayesnas_cifar10.py"),
        set=["search.warmup_epochs=0.0"],
    ),
    # ASM-NAS' own search network (Sec. 5.2): 15 cells, reductions at 4 and 9
    "asmnas": dict(
        kind="search",
        configs=dict(tiny="asmnas_fmnist_tiny.py", paper="asmnas_cifar10.py"),
        set=[],
        own_layers=("paper",),
    ),
    "prdarts": dict(
        kind="search",
        configs=dict(tiny="prdarts_fmnist_tiny.py", paper="prdarts_cifar10.py"),
        set=[],
    ),
    # GDAS (one Gumbel-sampled op per edge computed): DARTS' search size
    "gdas": dict(
        kind="search",
        configs=dict(tiny="gdas_fmnist_tiny.py", paper="gdas_cifar10.py"),
        set=[],
    ),
    "retrain_darts_v2": dict(
        kind="train", nets=dict(tiny="fmnist", paper="cifar"), dtype="float32"
    ),
    "retrain_imagenet": dict(kind="train", nets=dict(paper="imagenet"), dtype="float32"),
    "retrain_darts_v2_bf16": dict(
        kind="train", nets=dict(tiny="fmnist", paper="cifar"), dtype="bfloat16"
    ),
    "retrain_imagenet_bf16": dict(kind="train", nets=dict(paper="imagenet"), dtype="bfloat16"),
}
#: what runs without ``--only``: bf16 on a CPU is emulated, ask for it by name
DEFAULT_ONLY = tuple(b for b in BENCHES if not b.endswith("_bf16"))


def parse_list(text: str, known, what: str) -> list[str]:
    """A comma-separated selection, checked against ``known`` (order kept, duplicates
    dropped); ``ValueError`` naming the unknown entries and the known ones."""
    names = list(dict.fromkeys(v.strip() for v in text.split(",") if v.strip()))
    if not names:
        raise ValueError(f"empty {what} list {text!r}; known: {', '.join(known)}")
    bad = [n for n in names if n not in known]
    if bad:
        raise ValueError(f"unknown {what} {', '.join(map(repr, bad))}; known: {', '.join(known)}")
    return names


def parse_only(text: str) -> list[str]:
    """``--only``: benchmark rows from :data:`BENCHES`."""
    return parse_list(text, tuple(BENCHES), "benchmark")


def sizes_of(bench: str) -> tuple[str, ...]:
    """The sizes a row exists at."""
    b = BENCHES[bench]
    return tuple(b["configs"] if b["kind"] == "search" else b["nets"])


def child_env(environ: dict | None = None, *, jobs: int = 1, lock_path: str | None = None) -> dict:
    """The children's environment: XLA's default CPU threads, one host device, no
    persistent compilation cache (compile times are cold).  With ``jobs > 1`` the children
    share the step lock ``lock_path`` (``common.step_lock``) and, unless the caller chose
    otherwise, do not preallocate accelerator memory (several share one GPU)."""
    env = dict(os.environ if environ is None else environ)
    flags = re.sub(r"--xla_force_host_platform_device_count=\S+", "", env.get("XLA_FLAGS", ""))
    env["XLA_FLAGS"] = " ".join(flags.split())
    if not env["XLA_FLAGS"]:
        del env["XLA_FLAGS"]
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    env.pop(STEP_LOCK_VAR, None)
    if jobs > 1:
        if not lock_path:
            raise ValueError("jobs > 1 needs a lock_path for the timed steps")
        env[STEP_LOCK_VAR] = lock_path
        env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH", "")) if p)
    return env


def search_config(bench: str, size: str, remat: bool):
    """The config of a search row: the method's config file at this size, its
    overrides, the common model size and batch (ASM-NAS' paper size: its own layers)."""
    from jaxnas.config import load_config

    b, s = BENCHES[bench], SEARCH_SIZES[size]
    cfg = load_config(os.path.join(ROOT, "configs", b["configs"][size]), b["set"])
    cfg.unlock()
    cfg.model.init_channels = s["init_channels"]
    if size not in b.get("own_layers", ()):
        cfg.model.layers = s["layers"]
    cfg.data.batch_size = s["batch"]
    cfg.model.remat = remat
    return cfg


def measure(bench: str, size: str, steps: int, remat: bool, batches: dict[str, int]) -> dict:
    """In the child: one row."""
    load0 = [round(v, 2) for v in os.getloadavg()]
    b = BENCHES[bench]
    out = dict(method=bench, size=size, kind=b["kind"], steps=steps)
    if b["kind"] == "search":
        from bench_supernet import search_row

        cfg = search_config(bench, size, remat)
        s = SEARCH_SIZES[size]
        r = search_row(cfg, s["shape"], cfg.data.batch_size, steps)
        m = r.pop("metrics")
        out.update(
            config=f"configs/{b['configs'][size]}",
            overrides=b["set"],
            order=cfg.search.get("order"),
            remat=remat,
            init_channels=cfg.model.init_channels,
            layers=cfg.model.layers,
            batch=cfg.data.batch_size,
            input_shape=list(s["shape"]),
            **r,
            loss=m.get("loss"),
        )
    else:
        from bench_train import measure as train_row

        net = b["nets"][size]
        r = train_row(net, steps, b["dtype"], batches.get(net, 0))
        out.update(r)
        out["method"] = bench  # train_row has no method key; keep ours
    out["loadavg_start"] = load0
    out["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    return out


#: keys of a suite file that are not the machine's description
_NOT_MACHINE = ("results", "suite", "steps", "child_env", "merged")
#: what must agree between merged files (they describe one machine)
_SAME_MACHINE = ("device", "backend", "cpu_model", "jax")


def merge(out: str, files: list[str]) -> None:
    """Write ``out`` with the rows of ``files`` (and of ``out`` first, if it exists); a
    later file's row replaces an earlier one with the same method and size.  The machine
    description and ``child_env`` are the first file's (the merge may run elsewhere);
    ``ValueError`` if the files come from different machines (``_SAME_MACHINE``)."""
    rows, env, info = [], None, None
    for path in [out, *files] if os.path.exists(out) else files:
        with open(path) as f:
            data = json.load(f)
        mine = {k: v for k, v in data.items() if k not in _NOT_MACHINE}
        if info is None:
            info = mine
        differ = [k for k in _SAME_MACHINE if mine.get(k) != info.get(k)]
        if differ:
            raise ValueError(
                f"{path} comes from another machine ({', '.join(differ)}: "
                + ", ".join(f"{mine.get(k)!r} vs {info.get(k)!r}" for k in differ)
                + ")"
            )
        env = env or data.get("child_env")
        for r in data["results"]:
            rows = [q for q in rows if (q["method"], q["size"]) != (r["method"], r["size"])]
            rows.append(r)
    write_results(out, rows, machine_info=info, suite=SUITE, child_env=env, merged=files)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="benchmarks/results/suite.json")
    p.add_argument("--only", default=",".join(DEFAULT_ONLY), help="rows: " + ", ".join(BENCHES))
    p.add_argument("--sizes", default="tiny,paper")
    p.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step")
    p.add_argument(
        "--remat",
        default="auto",
        choices=("auto", "yes", "no"),
        help="model.remat of search rows (auto: at the paper size only, to stay in memory)",
    )
    p.add_argument("--imagenet-batch", type=int, default=128)
    p.add_argument("--cifar-batch", type=int, default=96, help="batch of retrain_darts_v2:paper")
    p.add_argument("--max-rss-gb", type=float, default=12.0, help="kill a row above this RSS")
    p.add_argument("--timeout", type=float, default=3600.0, help="kill a row after this (s)")
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="rows measured at a time: their compilations overlap, their timed steps do not "
        "(a file lock); on a GPU the children then do not preallocate its memory",
    )
    p.add_argument("--append", action="store_true", help="add rows to --out (same row replaced)")
    p.add_argument(
        "--merge",
        nargs="+",
        metavar="FILE",
        help="measure nothing: add the rows of these suite files (e.g. of a run in parallel) "
        "to --out, a later file's row replacing an earlier one with the same method and size",
    )
    p.add_argument("--child", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.merge:
        try:
            merge(a.out, a.merge)
        except ValueError as e:
            p.error(str(e))
        return
    if a.steps < 1:
        p.error(f"--steps must be >= 1, got {a.steps}")
    try:
        only = parse_only(a.only)
        sizes = parse_list(a.sizes, SIZES, "size")
    except ValueError as e:
        p.error(str(e))
    if a.child:
        bench, size = a.child.split(":")
        remat = a.remat == "yes" or (a.remat == "auto" and size == "paper")
        batches = dict(imagenet=a.imagenet_batch, cifar=a.cifar_batch)
        print(json.dumps(measure(bench, size, a.steps, remat, batches)))
        return
    if a.jobs < 1:
        p.error(f"--jobs must be >= 1, got {a.jobs}")
    tasks = [(b, s) for s in sizes for b in only if s in sizes_of(b)]
    with tempfile.TemporaryDirectory() as tmp:
        env = child_env(jobs=a.jobs, lock_path=os.path.join(tmp, "step.lock"))
        run_rows(a, tasks, env)


def run_rows(a: argparse.Namespace, tasks: list[tuple[str, str]], env: dict) -> None:
    """Measure ``tasks`` ((row, size) pairs) in child processes, ``a.jobs`` at a time, and
    write ``a.out`` after every finished row (an interrupted suite keeps what it measured)."""
    rows = load_rows(a.out, a.append)
    done = threading.Lock()
    meta = dict(
        suite=SUITE,
        steps=a.steps,
        child_env=dict(
            xla_flags=env.get("XLA_FLAGS", ""),
            threads="XLA default CPU thread pool (one intra-op thread per core); "
            "one host device; no persistent compilation cache",
            max_rss_gb=a.max_rss_gb,
            jobs=a.jobs,
            parallel="one row at a time"
            if a.jobs == 1
            else f"{a.jobs} rows at a time: init and compile overlap, the warm-up and timed "
            "steps of one row at a time (a file lock)",
        ),
    )

    def one(task: tuple[str, str]) -> None:
        nonlocal rows
        bench, size = task
        args = ["--child", f"{bench}:{size}", "--steps", str(a.steps), "--remat", a.remat]
        args += ["--imagenet-batch", str(a.imagenet_batch), "--cifar-batch", str(a.cifar_batch)]
        load0 = [round(v, 2) for v in os.getloadavg()]
        t = time.monotonic()
        row = run_child(__file__, args, env, max_rss_gb=a.max_rss_gb, timeout_s=a.timeout)
        if "error" in row:
            row = dict(method=bench, size=size, **row, loadavg_start=load0)
        row["wall_s"] = round(time.monotonic() - t, 1)
        with done:
            rows = [r for r in rows if (r["method"], r["size"]) != (bench, size)] + [row]
            print(json.dumps(row), flush=True)
            write_results(a.out, rows, **meta)

    with ThreadPoolExecutor(max_workers=a.jobs) as pool:
        for f in [pool.submit(one, t) for t in tasks]:
            f.result()


if __name__ == "__main__":
    main()
