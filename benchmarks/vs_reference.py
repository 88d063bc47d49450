"""Side by side: the DARTS authors' PyTorch code and jaxnas, same shapes, same device.

Times the DARTS reference implementation (a checkout of its ``cnn/`` folder, given as
``--reference-dir``; imported from there at run time, never copied into jaxnas) and
jaxnas on identical inputs, each side in its own child process (``common.run_child``:
its peak RSS is its own, its compilation cold), and writes one JSON with both sides of
every row and their ratios (jaxnas / reference).

Rows (``--rows``; sizes are (C, cells, batch), 32x32x3 inputs, 10 classes):

* ``search1-proto`` (8, 5, 16), ``search1-paper`` (16, 8, 64): one first-order search
  iteration.  Reference: ``model_search.Network`` + ``architect.Architect.step(...,
  unrolled=False)`` then the weight step of ``train_search.train`` (SGD lr 0.025,
  momentum 0.9, weight decay 3e-4, ``clip_grad_norm_(5)``).  jaxnas: the DARTS method's
  ``train_step`` with its default config (``bench_supernet.search_row``).
* ``search2-proto``, ``search2-paper``: second order.  Reference: its finite-difference
  approximation (``unrolled=True``, which also builds a fresh ``Network`` per step as
  the reference does); jaxnas: the exact hypergradient (``search.hypergradient="exact"``).
* ``retrain-cifar``: one retraining step of DARTS_V2 on CIFAR-10 (C=36, 20 cells, batch
  96, auxiliary head weight 0.4, drop path 0.2, SGD momentum 0.9, clip 5).  Reference:
  ``model.NetworkCIFAR``; jaxnas: ``jaxnas.train.Trainer.train_step``
  (``bench_train.measure``).

Both sides get the same batch: ``numpy.random.default_rng(0)`` normal images and uniform
labels (the recipe of ``bench_supernet`` / ``bench_train``), NCHW for PyTorch and NHWC
for jaxnas; a search step uses it as both the training and the validation batch.

Measured per side: ``init_s`` (building the model and optimiser; jaxnas: its jitted
``init``), ``compile_s`` (jaxnas: ahead-of-time ``lower().compile()``; PyTorch has none),
``first_step_s`` (jaxnas: compile + the warm-up step; reference: its first step, which
includes cuDNN's autotuning on a GPU), ``step_s`` (median of ``--steps`` timed steps
after that first one; ``step_cpu_s`` the same in process CPU time, which grows much
less than wall time on a shared machine), ``peak_rss_gb`` (the child's maximum resident
memory) and, on a GPU, ``peak_device_gb`` (``torch.cuda.max_memory_allocated`` /
jax's ``memory_stats()["peak_bytes_in_use"]``).  ``ratio`` divides jaxnas' figure by the
reference's.

Threads: both children run on the same CPUs (``--threads N`` pins them to the first N of
this process's usable CPUs; default all of them); PyTorch gets
``torch.set_num_threads(N)``, XLA's CPU client sizes its pool by the CPUs it may use.
On a machine shared with other jobs PyTorch's OpenMP threads spin while they wait and
its steps slow down several times over (XLA's much less): measure on an idle machine;
``OMP_WAIT_POLICY=PASSIVE`` in the environment (recorded in the JSON's ``child_env``)
softens it for a check that the script runs.

What the reference needed under PyTorch 2.13 (done in the reference's child process, in
this file's code; the reference's files are imported unmodified):

* ``model_search.py`` and ``architect.py`` call ``.cuda()`` unconditionally (the
  alphas, ``Network.new``, ``Architect._construct_model_from_theta``): on the CPU
  ``torch.Tensor.cuda`` and ``torch.nn.Module.cuda`` return ``self``.
* ``utils.drop_path`` (used by ``model.Cell``) draws its mask in a
  ``torch.cuda.FloatTensor``: where that legacy constructor does not work (any CPU-only
  PyTorch) it is replaced by one that makes an uninitialised float32 tensor on the
  measured device.
* ``utils.py`` imports ``torchvision.transforms`` (for its data transforms only): where
  torchvision is missing, an empty stand-in module is registered.
* ``train_search.py`` / ``train.py`` cannot be imported on Python 3 (``.cuda(async=True)``
  is a syntax error since 3.7) and use PyTorch 0.3 idioms (``Variable(volatile=True)``,
  ``loss.data[0]``, ``nn.utils.clip_grad_norm``): the child drives the modules directly,
  replaying one iteration of ``train_search.train`` / ``train.train`` with their default
  hyperparameters (``SEARCH_HPARAMS``, ``RETRAIN_HPARAMS``).
* ``architect.py``'s deprecated overloads (``Tensor.sub(Number, Tensor)``,
  ``add_(Number, Tensor)``) still work under 2.13; their warnings are silenced.
* ``model.Cell.__init__`` prints channel counts: sent to stderr (the child's stdout
  carries its JSON).
* ``train.py`` ramps ``drop_path_prob`` per epoch; here it is the final 0.2, because
  jaxnas draws the drop-path masks at every step (its probability is a traced value).

GPU: ``--device gpu`` (both sides on the first GPU; a side that finds none fails its
rows).  ``--jobs N`` runs N jaxnas children at a time after the reference rows (which
always run one at a time, alone): their init and compilation overlap, their warm-up and
timed steps take turns under a file lock (``common.step_lock``).  ``--trace DIR`` also
writes a ``jax.profiler`` trace of one jaxnas first-order paper-size step (after its
warm-up) into DIR.  ``benchmarks/gpu.sh`` runs all of it unattended on a GPU machine.

Writes JSON after every child (an interrupted run keeps what it measured); not a test.

    python benchmarks/vs_reference.py --reference-dir ../shared/peers/darts/cnn
    python benchmarks/vs_reference.py --reference-dir DIR --quick --steps 2 \\
        --note "2-core machine shared with other jobs: not for publication"
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import types
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_supernet  # noqa: E402
import bench_train  # noqa: E402
from bench_suite import child_env  # noqa: E402
from common import (  # noqa: E402
    _report,
    machine,
    peak_rss_gb,
    run_child,
    step_lock,
    write_results,
)

#: identifies a file written by this script
TOOL = "jaxnas-vs-reference"
#: the reference's files this script imports (directly or through one another)
REFERENCE_FILES = (
    "model_search.py",
    "architect.py",
    "model.py",
    "operations.py",
    "genotypes.py",
    "utils.py",
)
#: row name -> what it measures; search sizes are ``bench_supernet.SIZES`` names, the
#: retraining network a ``bench_train.NETS`` name
ROWS: dict[str, dict] = {
    "search1-proto": dict(kind="search", order="first", size="proto"),
    "search1-paper": dict(kind="search", order="first", size="paper"),
    "search2-proto": dict(kind="search", order="second", size="proto"),
    "search2-paper": dict(kind="search", order="second", size="paper"),
    "retrain-cifar": dict(kind="retrain", net="cifar"),
}
#: ``--quick``: the small size only
QUICK_ROWS = ("search1-proto", "search2-proto")
#: the row whose jaxnas step ``--trace`` profiles
TRACE_ROW = "search1-paper"
NUM_CLASSES = 10
#: ``train_search.py``'s defaults (its argparse) and ``Architect``'s fixed Adam betas
SEARCH_HPARAMS = dict(
    lr=0.025,
    momentum=0.9,
    weight_decay=3e-4,
    grad_clip=5.0,
    arch_lr=3e-4,
    arch_betas=(0.5, 0.999),
    arch_weight_decay=1e-3,
)
#: ``train.py``'s defaults (drop path: its last epoch's value, see the module docstring)
RETRAIN_HPARAMS = dict(
    lr=0.025,
    momentum=0.9,
    weight_decay=3e-4,
    grad_clip=5.0,
    auxiliary_weight=0.4,
    drop_path_prob=0.2,
)
#: per side, the figures a row keeps at its top level for the table
SIDE_KEYS = (
    "init_s",
    "compile_s",
    "first_step_s",
    "step_s",
    "step_cpu_s",
    "peak_rss_gb",
    "peak_device_gb",
)
#: the figures divided (jaxnas / reference); compile_s has no reference counterpart
RATIO_KEYS = ("step_s", "step_cpu_s", "first_step_s", "init_s", "peak_rss_gb", "peak_device_gb")


# --------------------------------------------------------------------------- rows


def row_spec(row: str) -> dict:
    """Shapes of ``row``: ``kind``, ``order`` (search rows), ``init_channels`` (C),
    ``layers`` (cells), ``batch`` and ``input_shape`` (H, W, C), from the same tables that
    ``bench_supernet`` / ``bench_train`` use, so the rows here are their rows."""
    r = ROWS[row]
    if r["kind"] == "search":
        s = bench_supernet.SIZES[r["size"]]
        out = dict(kind="search", order=r["order"], size=r["size"])
    else:
        s = bench_train.NETS[r["net"]]
        out = dict(kind="retrain", net=r["net"], genotype="DARTS_V2")
    return dict(
        out,
        init_channels=s["init_channels"],
        layers=s["layers"],
        batch=s["batch"],
        input_shape=list(s["shape"]),
    )


def make_batch(spec: dict, layout: str):
    """The row's one batch as numpy ``(images, labels)``: ``default_rng(0)`` normal images
    then labels in ``[0, 10)``, the draws ``bench_supernet.search_row`` and
    ``bench_train.measure`` make, so both sides see the same numbers; ``layout``
    ``"NHWC"`` (jaxnas) or ``"NCHW"`` (PyTorch)."""
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(spec["batch"], *spec["input_shape"])).astype(np.float32)
    y = rng.integers(0, NUM_CLASSES, spec["batch"]).astype(np.int32)
    if layout == "NCHW":
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    elif layout != "NHWC":
        raise ValueError(f"layout must be NHWC or NCHW, got {layout!r}")
    return x, y


def jaxnas_search_config(row: str, remat: str = "default"):
    """The jaxnas config of a search row: ``default_config("darts")`` at the row's size
    and order (second order: the exact hypergradient, the default); ``remat`` ``"yes"`` /
    ``"no"`` overrides ``model.remat``, ``"default"`` keeps the library's choice."""
    from jaxnas.config import default_config

    spec = row_spec(row)
    cfg = default_config("darts")
    cfg.search.order = spec["order"]
    cfg.model.init_channels, cfg.model.layers = spec["init_channels"], spec["layers"]
    cfg.data.batch_size = spec["batch"]
    if remat != "default":
        cfg.model.remat = remat == "yes"
    return cfg


# --------------------------------------------------------------------------- children


def pin_threads(threads: int | None) -> int:
    """Restrict this process to the first ``threads`` of its usable CPUs (``None``: keep
    them all) before PyTorch or XLA size their thread pools; returns the count."""
    cpus = sorted(os.sched_getaffinity(0))
    if threads:
        os.sched_setaffinity(0, cpus[:threads])
        return len(cpus[:threads])
    return len(cpus)


def _loadavg() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def _self(obj, *args, **kwargs):
    """``.cuda()`` on a CPU-only run: the object stays where it is."""
    return obj


def setup_torch(device: str, threads: int) -> tuple[Any, list[str]]:
    """Import torch for ``device`` with ``threads`` intra-op threads; returns ``(torch,
    shims)``, ``shims`` naming what was patched so that the reference runs there."""
    import torch

    torch.set_num_threads(threads)
    shims = []
    if device == "cpu":
        # the reference calls .cuda() on parameters and modules it creates itself
        torch.Tensor.cuda = _self
        torch.nn.Module.cuda = _self
        shims.append("torch.Tensor.cuda / torch.nn.Module.cuda return self (CPU run)")
    else:
        if not torch.cuda.is_available():
            raise SystemExit("--device gpu: PyTorch sees no CUDA device")
        torch.backends.cudnn.benchmark = True  # as train_search.py and train.py set it
    return torch, shims


def load_reference(ref_dir: str, torch, device: str) -> tuple[dict, list[str]]:
    """Import the reference's modules from ``ref_dir`` (their own files, unmodified),
    with the stand-ins the module docstring lists; returns ``(modules, shims)``."""
    shims = []
    try:
        import torchvision  # noqa: F401
    except ImportError:
        # utils.py imports torchvision.transforms for the data pipeline, unused here
        tv = types.ModuleType("torchvision")
        tv.transforms = types.ModuleType("torchvision.transforms")
        tv.datasets = types.ModuleType("torchvision.datasets")
        for mod in (tv, tv.transforms, tv.datasets):
            sys.modules[mod.__name__] = mod
        shims.append("torchvision: empty stand-in module (utils.py imports it)")
    dev = torch.device("cuda" if device == "gpu" else "cpu")
    try:
        torch.cuda.FloatTensor(1)
    except (TypeError, RuntimeError, AttributeError):
        # utils.drop_path draws its mask with this legacy constructor
        torch.cuda.FloatTensor = lambda *size: torch.empty(*size, dtype=torch.float32, device=dev)
        shims.append(f"torch.cuda.FloatTensor(*size) -> torch.empty(*size) on {dev}")
    warnings.filterwarnings("ignore", message="This overload of", category=UserWarning)
    sys.path.insert(0, os.path.abspath(ref_dir))
    import architect
    import genotypes
    import model
    import model_search

    mods = dict(model_search=model_search, architect=architect, model=model, genotypes=genotypes)
    for name, mod in mods.items():
        where = os.path.dirname(os.path.abspath(mod.__file__))
        if where != os.path.abspath(ref_dir):  # an installed module of the same name won
            raise SystemExit(f"imported {name} from {where}, not from {ref_dir}")
    return mods, shims


def build_reference(row: str, mods: dict, torch, device: str) -> dict:
    """The reference's side of ``row``, ready to step: ``model``, ``optimizer``,
    ``architect`` (search rows), ``batch`` (images, labels on the device) and ``step``,
    a function that runs one iteration as the reference's train script does and returns
    its loss tensor."""
    spec = row_spec(row)
    dev = torch.device("cuda" if device == "gpu" else "cpu")
    x, y = make_batch(spec, "NCHW")
    x, y = torch.from_numpy(x).to(dev), torch.from_numpy(y).long().to(dev)
    torch.manual_seed(0)
    crit = torch.nn.CrossEntropyLoss().to(dev)
    clip = torch.nn.utils.clip_grad_norm_
    if spec["kind"] == "search":
        h = SEARCH_HPARAMS
        net = mods["model_search"].Network(spec["init_channels"], NUM_CLASSES, spec["layers"], crit)
        net = net.to(dev)
        opt = torch.optim.SGD(
            net.parameters(), h["lr"], momentum=h["momentum"], weight_decay=h["weight_decay"]
        )
        # Architect reads its hyperparameters from train_search's argparse namespace
        args = types.SimpleNamespace(
            momentum=h["momentum"],
            weight_decay=h["weight_decay"],
            arch_learning_rate=h["arch_lr"],
            arch_weight_decay=h["arch_weight_decay"],
        )
        arch = mods["architect"].Architect(net, args)
        unrolled = spec["order"] == "second"

        def step():
            # train_search.train, one iteration (the valid batch is the train batch here)
            arch.step(x, y, x, y, h["lr"], opt, unrolled=unrolled)
            opt.zero_grad()
            loss = crit(net(x), y)
            loss.backward()
            clip(net.parameters(), h["grad_clip"])
            opt.step()
            return loss

        return dict(model=net, optimizer=opt, architect=arch, batch=(x, y), step=step)
    h = RETRAIN_HPARAMS
    with contextlib.redirect_stdout(sys.stderr):  # model.Cell prints its channel counts
        net = mods["model"].NetworkCIFAR(
            spec["init_channels"], NUM_CLASSES, spec["layers"], True, mods["genotypes"].DARTS_V2
        )
    net = net.to(dev)
    net.drop_path_prob = h["drop_path_prob"]
    net.train()
    opt = torch.optim.SGD(
        net.parameters(), h["lr"], momentum=h["momentum"], weight_decay=h["weight_decay"]
    )

    def step():
        # train.train, one iteration
        opt.zero_grad()
        logits, logits_aux = net(x)
        loss = crit(logits, y) + h["auxiliary_weight"] * crit(logits_aux, y)
        loss.backward()
        clip(net.parameters(), h["grad_clip"])
        opt.step()
        return loss

    return dict(model=net, optimizer=opt, batch=(x, y), step=step)


def time_eager(build: Callable[[], Callable[[], Any]], steps: int, sync: Callable[[], None]):
    """Time an eager (PyTorch) step the way ``common.time_step`` times a jitted one:
    ``build()`` makes the step function (``init_s``), its first call is ``first_step_s``
    (there is nothing to compile ahead), then ``steps`` timed calls (``step_s``: median,
    ``step_s_all``: each; ``step_cpu_s``: median process CPU time).  ``sync()`` waits for
    the device.  Steps run under ``common.step_lock``; partial results are reported for a
    child that gets killed."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    t = time.perf_counter()
    step = build()
    sync()
    init_s = time.perf_counter() - t
    _report(dict(init_s=round(init_s, 2), peak_rss_gb=peak_rss_gb()))
    with step_lock() as waited:
        t, c = time.perf_counter(), time.process_time()
        step()
        sync()
        first_s, first_cpu = time.perf_counter() - t, time.process_time() - c
        times, cpu, loss = [], [], None
        for _ in range(steps):
            _report(
                dict(
                    init_s=round(init_s, 2),
                    first_step_s=round(first_s, 4),
                    step_s_all=[round(v, 4) for v in times],
                    peak_rss_gb=peak_rss_gb(),
                )
            )
            t, c = time.perf_counter(), time.process_time()
            loss = step()
            sync()
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
    return dict(
        init_s=round(init_s, 2),
        first_step_s=round(first_s, 4),
        first_step_cpu_s=round(first_cpu, 4),
        step_s=round(statistics.median(times), 4),
        step_s_all=[round(v, 4) for v in times],
        step_cpu_s=round(statistics.median(cpu), 4),
        peak_rss_gb=peak_rss_gb(),
        step_lock_wait_s=round(waited, 2),
        loss=float(loss),
    )


def reference_child(ref_dir: str, row: str, steps: int, device: str, threads: int) -> dict:
    """In a child process: the reference's side of ``row``."""
    load0 = _loadavg()
    torch, shims = setup_torch(device, threads)
    mods, more = load_reference(ref_dir, torch, device)
    gpu = device == "gpu"
    sync = torch.cuda.synchronize if gpu else (lambda: None)
    r = time_eager(lambda: build_reference(row, mods, torch, device)["step"], steps, sync)
    return dict(
        side="reference",
        row=row,
        **r,
        peak_device_gb=round(torch.cuda.max_memory_allocated() / 2**30, 2) if gpu else None,
        device=torch.cuda.get_device_name(0) if gpu else "cpu",
        torch=torch.__version__,
        torch_threads=torch.get_num_threads(),
        cudnn_benchmark=bool(torch.backends.cudnn.benchmark) if gpu else None,
        shims=shims + more,
        hparams=SEARCH_HPARAMS if ROWS[row]["kind"] == "search" else RETRAIN_HPARAMS,
        loadavg_start=load0,
        loadavg_end=_loadavg(),
    )


def _jax_setup(row: str, device: str):
    """Prepare XLA as ``jaxnas search`` / ``jaxnas train`` would (``jaxnas.xla.prepare``
    without the compilation cache: search rows without the Triton GEMM fusion, LLVM level
    1 on the CPU), then import jax and check the backend."""
    from jaxnas.xla import cpu_xla_flags, search_xla_flags

    flags = os.environ.get("XLA_FLAGS", "")
    if ROWS[row]["kind"] == "search":
        flags = search_xla_flags(flags)
    if cpu_xla_flags(flags):  # read when the backend starts, i.e. after this
        os.environ["XLA_FLAGS"] = cpu_xla_flags(flags)
    import jax

    backend = jax.default_backend()
    if (device == "gpu") != (backend == "gpu"):
        raise SystemExit(f"--device {device}: jax runs on {backend}")
    return jax


def jaxnas_child(row: str, steps: int, device: str, remat: str) -> dict:
    """In a child process: jaxnas' side of ``row``, timed by ``common.time_step``
    through ``bench_supernet.search_row`` / ``bench_train.measure``."""
    load0 = _loadavg()
    jax = _jax_setup(row, device)
    spec = row_spec(row)
    out = dict(side="jaxnas", row=row)
    if spec["kind"] == "search":
        from jaxnas.supernet import resolve_remat

        cfg = jaxnas_search_config(row, remat)
        r = bench_supernet.search_row(cfg, tuple(spec["input_shape"]), spec["batch"], steps)
        m = r.pop("metrics")
        out.update(
            r,
            loss=m.get("loss"),
            order=cfg.search.order,
            hypergradient=cfg.search.hypergradient if cfg.search.order == "second" else None,
            fuse_phases=cfg.search.fuse_phases,
            remat=resolve_remat(cfg.model.remat, jax.default_backend()),
            depthwise=cfg.model.depthwise,
        )
    else:
        out.update(bench_train.measure(spec["net"], steps, "float32"))
    out["first_step_s"] = round(out["compile_s"] + out["warmup_step_s"], 4)
    out.update(
        device=str(jax.devices()[0].device_kind),
        backend=jax.default_backend(),
        jax=jax.__version__,
        xla_flags=os.environ.get("XLA_FLAGS", ""),
        loadavg_start=load0,
        loadavg_end=_loadavg(),
    )
    return out


def trace_child(row: str, trace_dir: str, device: str, remat: str, traced: int = 1) -> dict:
    """In a child process: compile jaxnas' step of ``row``, run two warm-up steps, then
    write a ``jax.profiler`` trace (TensorBoard's xplane and a Perfetto JSON) of
    ``traced`` steps into ``trace_dir``; returns the traced steps' wall times."""
    jax = _jax_setup(row, device)
    from jaxnas.search import build

    spec = row_spec(row)
    cfg = jaxnas_search_config(row, remat)
    shape = tuple(spec["input_shape"])
    method = build(cfg, steps_per_epoch=100, num_classes=NUM_CLASSES, input_shape=shape)
    x, y = make_batch(spec, "NHWC")
    b = (jax.device_put(x), jax.device_put(y))
    state = jax.block_until_ready(method.init(jax.random.key(0), x))
    compiled = method.train_step.lower(state, b, b).compile()
    with step_lock():
        for _ in range(2):  # warm-up: the trace shows steady steps only
            state, _ = jax.block_until_ready(compiled(state, b, b))
        times = []
        with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
            for i in range(traced):
                t = time.perf_counter()
                with jax.profiler.StepTraceAnnotation("train_step", step_num=i):
                    state, _ = jax.block_until_ready(compiled(state, b, b))
                times.append(round(time.perf_counter() - t, 4))
    out = dict(side="trace", row=row, trace_dir=trace_dir, traced_step_s=times)
    try:
        out["summary"] = summarize_trace(trace_dir)
    except (OSError, ValueError, KeyError, IndexError) as e:  # the trace itself is kept
        out["summary_error"] = f"{type(e).__name__}: {e}"
    return out


def summarize_trace(trace_dir: str, top: int = 8) -> dict:
    """What a ``jax.profiler`` trace's Perfetto file (``perfetto_trace.json.gz``, Chrome
    trace events) holds per process (``/host:CPU``, ``/device:GPU:0``, ...): ``events``
    (complete events), ``sum_dur_ms`` (their summed durations; nested host events count
    twice, a GPU stream's kernels do not nest, so there it is the busy time), ``span_ms``
    (first start to last end) and the ``top`` threads (GPU: streams) by event count, each
    with the same three figures.  On a GPU the device's ``events`` over the traced steps
    is the kernel count, ``span_ms - sum_dur_ms`` of a stream its idle gaps."""
    import glob
    import gzip

    found = sorted(
        glob.glob(os.path.join(trace_dir, "**", "perfetto_trace.json.gz"), recursive=True)
    )
    if not found:
        raise ValueError(f"no perfetto_trace.json.gz under {trace_dir}")
    with gzip.open(found[-1], "rt") as f:
        events = json.load(f)["traceEvents"]
    procs, threads, stats = {}, {}, {}
    for e in events:
        if e.get("ph") == "M" and e.get("name") == "process_name":
            procs[e["pid"]] = e["args"]["name"]
        elif e.get("ph") == "M" and e.get("name") == "thread_name":
            threads[e["pid"], e["tid"]] = e["args"]["name"]
    for e in events:
        if e.get("ph") != "X":
            continue
        start, end = float(e["ts"]), float(e["ts"]) + float(e.get("dur", 0.0))
        for key in ((e["pid"],), (e["pid"], e.get("tid"))):
            n, dur, lo, hi = stats.get(key, (0, 0.0, start, end))
            stats[key] = (n + 1, dur + end - start, min(lo, start), max(hi, end))

    def fig(key):
        n, dur, lo, hi = stats[key]
        return dict(events=n, sum_dur_ms=round(dur / 1e3, 3), span_ms=round((hi - lo) / 1e3, 3))

    out = {}
    for pid in sorted({k[0] for k in stats if len(k) == 1}, key=str):
        tids = [k for k in stats if len(k) == 2 and k[0] == pid]
        tids.sort(key=lambda k: -stats[k][0])
        out[procs.get(pid, str(pid))] = dict(
            fig((pid,)),
            threads={threads.get(k, str(k[1])): fig(k) for k in tids[:top]},
        )
    return out


# --------------------------------------------------------------------------- results


def ratio(new: Any, old: Any) -> float | None:
    """``new / old`` rounded to 3 digits, ``None`` where either is not a positive number."""
    ok = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (new, old))
    return round(new / old, 3) if ok and old > 0 and new >= 0 else None


def combine(row: str, reference: dict | None, jaxnas: dict | None) -> dict:
    """One output row: the row's shapes (:func:`row_spec`), each side's full result
    (``None`` if not measured yet; a failed side is ``{"error": ...}``), the figures of
    ``SIDE_KEYS`` side by side and ``ratio`` (jaxnas / reference, :func:`ratio`) of
    ``RATIO_KEYS``."""
    ref, jx = reference or {}, jaxnas or {}
    ok = "error" not in ref and "error" not in jx
    return dict(
        row=row,
        **row_spec(row),
        reference=reference,
        jaxnas=jaxnas,
        ratio={k: ratio(jx.get(k), ref.get(k)) if ok else None for k in RATIO_KEYS},
        **{f"reference_{k}": ref.get(k) for k in SIDE_KEYS if k != "compile_s"},
        **{f"jaxnas_{k}": jx.get(k) for k in SIDE_KEYS},
    )


def _fmt(v: Any, spec: str = "{:.3g}") -> str:
    return "-" if v is None else spec.format(v)


def table(rows: Sequence[dict]) -> str:
    """A markdown table of combined rows: step times, ratio, peak memory, jaxnas' compile
    and each side's first step; a failed side shows its error."""
    head = (
        "| row | (C, cells, batch) | reference step s | jaxnas step s | jaxnas / ref "
        "| peak RSS ref / jaxnas GB | device GB ref / jaxnas | jaxnas compile s "
        "| first step ref / jaxnas s |"
    )
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        errs = [f"{s}: {r[s]['error']}" for s in ("reference", "jaxnas") if "error" in (r[s] or {})]
        size = f"({r['init_channels']}, {r['layers']}, {r['batch']})"
        if errs:
            lines.append(f"| {r['row']} | {size} | " + "; ".join(errs) + " |" + " |" * 7)
            continue
        g = r.get
        lines.append(
            f"| {r['row']} | {size} | {_fmt(g('reference_step_s'))} | {_fmt(g('jaxnas_step_s'))}"
            f" | {_fmt(r['ratio']['step_s'], '{:.2f}x')}"
            f" | {_fmt(g('reference_peak_rss_gb'))} / {_fmt(g('jaxnas_peak_rss_gb'))}"
            f" | {_fmt(g('reference_peak_device_gb'))} / {_fmt(g('jaxnas_peak_device_gb'))}"
            f" | {_fmt(g('jaxnas_compile_s'))}"
            f" | {_fmt(g('reference_first_step_s'))} / {_fmt(g('jaxnas_first_step_s'))} |"
        )
    return "\n".join(lines)


def reference_hashes(ref_dir: str) -> dict[str, str]:
    """sha256 (first 16 hex digits) of each reference file: which code was measured."""
    out = {}
    for name in REFERENCE_FILES:
        path = os.path.join(ref_dir, name)
        if os.path.exists(path):
            with open(path, "rb") as f:
                out[name] = hashlib.sha256(f.read()).hexdigest()[:16]
    return out


# --------------------------------------------------------------------------- command line


def resolve_reference_dir(path: str) -> str:
    """The folder holding the reference's ``cnn/`` files: ``path`` itself or its ``cnn/``
    subfolder (a checkout of the whole repository); ``ValueError`` with a one-line
    message if neither has them."""
    if not os.path.isdir(path):
        raise ValueError(f"--reference-dir {path}: no such directory")
    for d in (path, os.path.join(path, "cnn")):
        if all(os.path.isfile(os.path.join(d, f)) for f in REFERENCE_FILES):
            return os.path.abspath(d)
    missing = [f for f in REFERENCE_FILES if not os.path.isfile(os.path.join(path, f))]
    raise ValueError(
        f"--reference-dir {path}: not the DARTS code's cnn/ folder (missing {', '.join(missing)})"
    )


def parse_rows(text: str | None, quick: bool) -> list[str]:
    """The rows to measure: ``--rows`` (comma separated, in the order given), the quick
    rows, or all; ``ValueError`` naming an unknown row and the known ones."""
    if text and quick:
        raise ValueError("--quick and --rows: give one of them")
    if quick:
        return list(QUICK_ROWS)
    if not text:
        return list(ROWS)
    rows = [r.strip() for r in text.split(",") if r.strip()]
    for r in rows:
        if r not in ROWS:
            raise ValueError(f"unknown row {r!r}; rows: {', '.join(ROWS)}")
    if not rows:
        raise ValueError("--rows names no row")
    return list(dict.fromkeys(rows))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reference-dir", required=True, help="the DARTS code's cnn/ folder")
    p.add_argument("--out", help="JSON file (default: benchmarks/results/vs_reference_DEVICE.json)")
    p.add_argument("--rows", help=f"comma-separated rows (default all): {', '.join(ROWS)}")
    p.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK_ROWS)}")
    p.add_argument("--steps", type=int, default=5, help="timed steps after the first")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--threads", type=int, help="CPUs for each child (default: all usable)")
    p.add_argument(
        "--remat",
        choices=("default", "yes", "no"),
        default="default",
        help="jaxnas search rows' model.remat (default: the library's default)",
    )
    p.add_argument("--jobs", type=int, default=1, help="jaxnas children at a time")
    p.add_argument("--timeout-s", type=float, help="kill a child after this many seconds")
    p.add_argument("--max-rss-gb", type=float, help="kill a child above this resident memory")
    p.add_argument("--trace", metavar="DIR", help=f"also trace jaxnas' {TRACE_ROW} step into DIR")
    p.add_argument("--note", default="", help="written to the JSON's notes (e.g. the load)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    return p


def check_args(a: argparse.Namespace) -> list[str]:
    """Validate the parsed arguments (``a.reference_dir`` becomes the resolved folder);
    returns the rows to measure, or raises ``ValueError`` with a one-line message."""
    a.reference_dir = resolve_reference_dir(a.reference_dir)
    rows = parse_rows(a.rows, a.quick)
    if a.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {a.steps}")
    if a.jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {a.jobs}")
    usable = len(os.sched_getaffinity(0))
    if a.threads is not None and not 1 <= a.threads <= usable:
        raise ValueError(f"--threads must be in 1..{usable} (this process's CPUs), got {a.threads}")
    return rows


def run_child_side(a: argparse.Namespace, task: str, env: dict) -> dict:
    """Run one child (``task`` = ``"reference:ROW"``, ``"jaxnas:ROW"`` or ``"trace:ROW"``)
    with the command's limits; a failed child's result is ``{"error": ...}`` plus what
    it had measured (``common.run_child``)."""
    args = ["--child", task, "--reference-dir", a.reference_dir, "--steps", str(a.steps)]
    args += ["--device", a.device, "--remat", a.remat]
    args += ["--threads", str(a.threads)] if a.threads else []
    args += ["--trace", a.trace] if a.trace else []
    t = time.monotonic()
    load0 = _loadavg()
    r = run_child(__file__, args, env, max_rss_gb=a.max_rss_gb, timeout_s=a.timeout_s)
    if "error" in r:
        r = dict(side=task.split(":")[0], row=task.split(":")[1], **r, loadavg_start=load0)
    r["wall_s"] = round(time.monotonic() - t, 1)
    return r


def main(argv: Sequence[str] | None = None) -> int:
    """The command line (see the module docstring); returns the exit status."""
    p = _parser()
    a = p.parse_args(argv)
    if a.child:
        return _child_main(a)
    try:
        rows = check_args(a)
    except ValueError as e:
        print(f"vs_reference.py: error: {e}", file=sys.stderr)
        return 2
    out = a.out or os.path.join(HERE, "results", f"vs_reference_{a.device}.json")
    # this process only describes the machine: it must not take the accelerator (jax
    # would preallocate most of a GPU's memory) that the children measure on
    os.environ["JAX_PLATFORMS"] = "cpu"
    info = machine()
    threads = a.threads or len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as tmp:
        env = child_env(jobs=a.jobs, lock_path=os.path.join(tmp, "step.lock"))
        env["JAX_PLATFORMS"] = "cuda" if a.device == "gpu" else "cpu"
        results: dict[tuple[str, str], dict] = {}
        meta = dict(
            tool=TOOL,
            device_requested=a.device,
            row_names=rows,
            steps=a.steps,
            threads_per_side=threads,
            threads_how=(
                f"each child pinned to {threads} CPUs; torch.set_num_threads({threads}); "
                "XLA's CPU pool: one thread per CPU the child may use"
            ),
            remat=a.remat,
            jobs=a.jobs,
            reference_dir=a.reference_dir,
            reference_files_sha256=reference_hashes(a.reference_dir),
            command=" ".join([os.path.relpath(__file__), *sys.argv[1:]]),
            notes=a.note,
            child_env=dict(
                xla_flags=env.get("XLA_FLAGS", ""),
                jax_platforms=env["JAX_PLATFORMS"],
                omp_wait_policy=env.get("OMP_WAIT_POLICY"),
                preallocate=env.get("XLA_PYTHON_CLIENT_PREALLOCATE"),
            ),
            loadavg_start=info.pop("loadavg"),
        )
        lock = threading.Lock()

        def record(task: str, r: dict) -> None:
            side, row = task.split(":")
            with lock:
                results[side, row] = r
                print(json.dumps(r), flush=True)
                done = [
                    combine(x, results.get(("reference", x)), results.get(("jaxnas", x)))
                    for x in rows
                ]
                extra = dict(meta, loadavg_end=_loadavg())
                _describe_measured(info, extra, results)
                write_results(out, done, info, **extra)

        # the reference rows first, one at a time with the machine to themselves
        for row in rows:
            record(f"reference:{row}", run_child_side(a, f"reference:{row}", env))
        tasks = [f"jaxnas:{row}" for row in rows] + ([f"trace:{TRACE_ROW}"] if a.trace else [])
        with ThreadPoolExecutor(max_workers=a.jobs) as pool:
            futures = [(t, pool.submit(run_child_side, a, t, env)) for t in tasks]
            for t, f in futures:
                record(t, f.result())
    with open(out) as f:
        print(table(json.load(f)["results"]))
    return 0


def _describe_measured(info: dict, extra: dict, results: dict) -> None:
    """Put what the children saw into the file's description: the device they measured
    on (the parent describes the host only), torch's version, the trace."""
    for (side, _), r in results.items():
        if "error" in r:
            continue
        if side == "jaxnas":
            info["device"], info["backend"] = r["device"], r["backend"]
            info["jax"] = r["jax"]
        elif side == "reference":
            extra["torch"] = r["torch"]
            extra["reference_device"] = r["device"]
            extra["reference_shims"] = r["shims"]
        elif side == "trace":
            extra["trace"] = r


def _child_main(a: argparse.Namespace) -> int:
    """A child process: one side of one row, its result as JSON on the last stdout line."""
    side, row = a.child.split(":")
    threads = pin_threads(a.threads)
    if side == "reference":
        r = reference_child(a.reference_dir, row, a.steps, a.device, threads)
    elif side == "jaxnas":
        r = jaxnas_child(row, a.steps, a.device, a.remat)
    elif side == "trace":
        r = trace_child(row, a.trace, a.device, a.remat)
    else:
        raise SystemExit(f"unknown child side {side!r}")
    print(json.dumps(dict(r, threads=threads)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
