"""What every benchmark script shares: child processes, timing, the machine's description, JSON.

Each measured configuration runs in its own child process, so that its peak memory
(max RSS) is its own and its compile cache starts cold.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

#: environment variables that decide how many threads the CPU backend (and BLAS) use
#: names the file a child reports its partial measurements to (set by ``run_child``)
PARTIAL_VAR = "JAXNAS_BENCH_PARTIAL"
#: names a lock file that children running side by side take around their timed steps
STEP_LOCK_VAR = "JAXNAS_BENCH_STEP_LOCK"
THREAD_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
)


def _rss_gb(pid: int) -> float:
    """Resident memory of process ``pid`` in GiB (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 0.0


def run_child(
    script: str,
    args: list[str],
    env: dict | None = None,
    *,
    max_rss_gb: float | None = None,
    timeout_s: float | None = None,
) -> dict:
    """Run ``python script args`` and parse the JSON object on its last stdout line.

    On failure the row is ``{"error": ...}``: the last stderr line, or why the child was
    stopped.  ``max_rss_gb``: the child is killed as soon as its resident memory exceeds
    this (polled twice a second), so that one configuration too big for a shared machine
    costs only its own row; ``timeout_s``: the same for wall time.  A failed row also
    carries ``partial``: what the child's ``time_step`` had measured before it stopped
    (e.g. ``init_s`` and ``compile_s`` of a row killed during its steps), and
    ``observed_peak_gb``, the largest resident memory the watchdog saw.
    """
    env = dict(os.environ if env is None else env)
    with (
        tempfile.TemporaryFile("w+") as out,
        tempfile.TemporaryFile("w+") as err,
        tempfile.NamedTemporaryFile("w+", suffix=".json") as partial,
    ):
        env[PARTIAL_VAR] = partial.name
        # files, not pipes: a chatty child cannot fill a pipe and stall while we poll
        proc = subprocess.Popen([sys.executable, script, *args], stdout=out, stderr=err, env=env)
        t0, why, seen = time.monotonic(), None, 0.0
        while proc.poll() is None:
            seen = max(seen, _rss_gb(proc.pid))
            if max_rss_gb and seen > max_rss_gb:
                why = f"killed: resident memory passed the {max_rss_gb:g} GB limit"
            elif timeout_s and time.monotonic() - t0 > timeout_s:
                why = f"killed: ran past the {timeout_s:g} s limit"
            if why:
                proc.kill()
                proc.wait()
                break
            time.sleep(0.5)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
        try:
            with open(partial.name) as f:
                done = json.load(f)
        except (OSError, ValueError):
            done = {}
    if not why and proc.returncode:
        lines = stderr.strip().splitlines()
        if proc.returncode < 0:
            fatal = fatal_line(stderr)
            why = f"killed by signal {-proc.returncode}" + (
                f": {fatal}" if fatal else " (out of memory?)"
            )
        else:
            why = lines[-1] if lines else f"exit {proc.returncode} (out of memory?)"
    if why:
        row = {"error": why, "observed_peak_gb": round(seen, 2)}
        return dict(row, partial=done) if done else row
    return json.loads(stdout.strip().splitlines()[-1])


_FATAL = re.compile(r"^F\d{4} ")  # an absl/glog FATAL line: "F1126 01:54:38.26 file.cc:703] ..."


def fatal_line(stderr: str) -> str | None:
    """What the last fatal log line of ``stderr`` says (an XLA / absl ``F``-level line; of
    a failed ``CHECK``, from "Check failed" on), stripped; ``None`` if there is none.  A
    child that aborts (SIGABRT) prints one, and it says more than the signal does."""
    found = None
    for line in stderr.splitlines():
        line = line.strip()
        if "Check failed" in line:
            found = line[line.index("Check failed") :]
        elif _FATAL.match(line):
            found = line
    return found


def _report(progress: dict) -> None:
    """Write what a child measured so far where ``run_child`` looks for it."""
    path = os.environ.get(PARTIAL_VAR)
    if path:
        with open(path, "w") as f:
            json.dump(progress, f)


def peak_rss_gb() -> float:
    """This process's maximum resident memory so far, in GiB (Linux: ru_maxrss is KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)


def peak_device_gb() -> float | None:
    """The default device's peak allocated memory in GiB, where its allocator reports it
    (GPU/TPU: ``peak_bytes_in_use``); ``None`` on a CPU, whose memory is the RSS."""
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return None if peak is None else round(peak / 2**30, 2)


@contextlib.contextmanager
def step_lock():
    """Hold the file lock named by ``$JAXNAS_BENCH_STEP_LOCK`` (no-op when unset).

    Children that run side by side (``bench_suite.py --jobs N``) compile in parallel but
    take this lock for their warm-up and timed steps, so that no two rows' steps share
    the device (or the cores) while they are timed.  Yields the seconds spent waiting.
    """
    path = os.environ.get(STEP_LOCK_VAR)
    if not path:
        yield 0.0
        return
    with open(path, "a") as f:
        t = time.perf_counter()
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield time.perf_counter() - t
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def time_step(
    init: Callable[[], Any],
    step: Any,
    args: Callable[[Any], Sequence[Any]],
    steps: int,
) -> dict:
    """Time a jitted step the same way for every benchmark.

    ``init()`` makes the state (timed as ``init_s``, blocked until ready); ``step`` is a
    ``jax.jit`` function and ``args(state)`` its arguments (the state first).  The step
    is lowered and compiled ahead of time (``compile_s``), run once as warm-up, then
    ``steps`` times: ``step_s`` is the median, ``step_s_all`` every time.  ``compile_cpu_s``
    and ``step_cpu_s`` are the same in process CPU time (all threads): on a machine shared
    with other jobs the wall times grow with the load, the CPU times much less.  Returns also
    ``peak_rss_gb`` (the process's maximum RSS, compilation included), ``peak_device_gb``
    (:func:`peak_device_gb`: the accelerator's peak, ``None`` on a CPU) and ``metrics``,
    the last step's metrics as floats.  The warm-up and timed steps run under
    :func:`step_lock` (``step_lock_wait_s``: the time spent waiting for it).
    """
    import jax
    import numpy as np

    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    t = time.perf_counter()
    state = jax.block_until_ready(init())
    init_s = time.perf_counter() - t
    _report(dict(init_s=round(init_s, 2)))
    t, c = time.perf_counter(), time.process_time()
    compiled = step.lower(*args(state)).compile()
    compile_s, compile_cpu_s = time.perf_counter() - t, time.process_time() - c
    _report(dict(init_s=round(init_s, 2), compile_s=round(compile_s, 2), peak_rss_gb=peak_rss_gb()))
    with step_lock() as waited:
        state, m, timed = _timed_steps(compiled, state, args, steps, init_s, compile_s)
    warmup_s, times, cpu = timed
    return dict(
        init_s=round(init_s, 2),
        compile_s=round(compile_s, 2),
        warmup_step_s=round(warmup_s, 4),
        step_s=round(float(np.median(times)), 4),
        step_s_all=[round(v, 4) for v in times],
        compile_cpu_s=round(compile_cpu_s, 2),
        step_cpu_s=round(float(np.median(cpu)), 4),
        peak_rss_gb=peak_rss_gb(),
        peak_device_gb=peak_device_gb(),
        step_lock_wait_s=round(waited, 2),
        metrics={k: float(np.asarray(v).mean()) for k, v in m.items() if np.size(v) >= 1},
    )


def _timed_steps(compiled, state, args, steps: int, init_s: float, compile_s: float):
    """One warm-up step, then ``steps`` timed ones: ``(state, last metrics, (warm-up s,
    step wall times, step CPU times))``."""
    import jax

    t = time.perf_counter()
    state, _ = jax.block_until_ready(compiled(*args(state)))  # warm-up
    warmup_s = time.perf_counter() - t
    times, cpu = [], []
    for _ in range(steps):
        _report(
            dict(
                init_s=round(init_s, 2),
                compile_s=round(compile_s, 2),
                warmup_step_s=round(warmup_s, 4),
                step_s_all=[round(v, 4) for v in times],
                peak_rss_gb=peak_rss_gb(),
            )
        )
        t, c = time.perf_counter(), time.process_time()
        state, m = jax.block_until_ready(compiled(*args(state)))
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return state, m, (warmup_s, times, cpu)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gb() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def machine() -> dict:
    """The machine and software a result came from.

    Keys: device, cpu_count, platform, jax, date (the old scripts' keys) and cpu_model,
    cpus_usable (this process's affinity), ram_gb, python, jaxlib, flax, optax,
    datetime_utc, xla_flags, threads (the thread variables that are set) and loadavg
    (1, 5, 15 min) when the description is taken.
    """
    import jax

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return dict(
        device=str(jax.devices()[0].device_kind),
        backend=jax.default_backend(),
        cpu_count=os.cpu_count(),
        cpus_usable=usable,
        cpu_model=_cpu_model(),
        ram_gb=_ram_gb(),
        platform=platform.platform(),
        python=platform.python_version(),
        jax=jax.__version__,
        jaxlib=_version("jaxlib"),
        flax=_version("flax"),
        optax=_version("optax"),
        date=time.strftime("%Y-%m-%d"),
        datetime_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        xla_flags=os.environ.get("XLA_FLAGS", ""),
        threads={k: os.environ[k] for k in THREAD_VARS if k in os.environ},
        loadavg=[round(v, 2) for v in os.getloadavg()],
    )


def load_rows(path: str, append: bool) -> list[dict]:
    """The rows already in ``path`` when appending, else none."""
    if append and os.path.exists(path):
        with open(path) as f:
            return json.load(f)["results"]
    return []


def write_results(
    path: str, rows: list[dict], machine_info: dict | None = None, **extra: Any
) -> None:
    """``{machine..., **extra, "results": rows}`` as indented JSON; the machine is this
    one (:func:`machine`) unless ``machine_info`` gives another's description."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(dict(**(machine_info or machine()), **extra, results=rows), f, indent=2)
    print(f"wrote {path}")
