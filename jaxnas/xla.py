"""Process-wide JAX/XLA settings of a run: XLA flags and the persistent compilation cache;
and :func:`jit_init`, the compile options of the programs that run once (a network's init).

Every run driver calls :func:`prepare` before it builds anything -- the searches
(:func:`jaxnas.run.search`, :func:`jaxnas.run_rnn.search`, ASM-NAS's selection),
the retraining runs (:func:`jaxnas.train.train`, :func:`jaxnas.train_rnn.train`) and the
compressions (:mod:`jaxnas.bayes_compress`, :mod:`jaxnas.width_compress`) -- so a run
started from Python gets what ``jaxnas search`` gets; the ``jaxnas`` command calls it
too, before it loads a config.  It is idempotent.

XLA reads ``XLA_FLAGS`` once, when the backend starts: a flag set here has no effect in
a process that has already run a JAX computation.
"""

from __future__ import annotations

import functools
import os

__all__ = [
    "CPU_ONEDNN",
    "CPU_OPT_LEVEL",
    "NO_TRITON_GEMM",
    "cpu_xla_flags",
    "enable_compilation_cache",
    "jit_init",
    "prepare",
    "search_xla_flags",
]

#: XLA's compile options for a program that runs once: no LLVM optimisation of its
#: kernels (:func:`jit_init`)
RUN_ONCE_OPTIONS = {"xla_backend_optimization_level": 0}

#: XLA's Triton GEMM fusion aborts while compiling the search supernets on a GPU
#: (``Check failed: subdim_size_accumulator == dim_size``, jax 0.11.2, H200); without it
#: they compile and run (benchmarks/RESULTS.md).  Harmless on a CPU.
NO_TRITON_GEMM = "--xla_gpu_enable_triton_gemm=false"


def search_xla_flags(flags: str) -> str:
    """``XLA_FLAGS`` for a search: ``flags`` plus :data:`NO_TRITON_GEMM`, unless the user
    already chose ``--xla_gpu_enable_triton_gemm`` either way."""
    if "--xla_gpu_enable_triton_gemm" in flags:
        return flags
    return f"{flags} {NO_TRITON_GEMM}".strip()


#: LLVM's optimisation level for the CPU backend's kernels (XLA's default is 2).  Level 1
#: ran the search steps faster and compiled them no slower (DARTS supernet, idle 2-core
#: CPU, one process each way, the same lowered step: first order C=16/8 cells/batch 64
#: 22.9 -> 19.3 s per step, compile 55 -> 43 s; C=8/5/16 1.70 -> 1.53 s, compile 42 -> 35 s;
#: exact second order C=8/5/16 4.55 -> 4.25 s, compile 69 -> 63 s; the DARTS_V2
#: retraining step the same, 12.8 vs 13.0 s, compile 43 -> 39 s).
CPU_OPT_LEVEL = "--xla_backend_optimization_level=1"

#: oneDNN for the CPU backend's matmuls and convolutions (XLA's default: off).  Idle 2-core
#: CPU, one process each way, at level 1: DARTS first order C=8/5 cells/batch 16 1.50 ->
#: 1.38 s per step, compile 32 -> 30 s; C=16/8/64 18.3 -> 17.2 s, compile 42 -> 35 s; the
#: DARTS_V2 retraining step 11.7 -> 11.3 s; three search steps of a small supernet gave
#: the same weights bit for bit.  (Its ``onednn_fusion_type`` fusions changed the
#: retraining loss and ran slower: not used.)
CPU_ONEDNN = "--xla_cpu_use_onednn=true"


def _accelerator_plugins() -> list[str]:
    """The installed JAX GPU/TPU backends (plugin packages and ``jax_plugins`` entry
    points): where there are none, JAX can only run on the CPU."""
    import importlib.metadata
    import importlib.util

    found = [m for m in ("libtpu", "jax_plugins") if importlib.util.find_spec(m)]
    try:
        found += [e.name for e in importlib.metadata.entry_points(group="jax_plugins")]
    except Exception:  # noqa: BLE001 - an unreadable package index: assume none
        pass
    return found


def cpu_xla_flags(flags: str) -> str:
    """``XLA_FLAGS`` for a run: ``flags`` plus :data:`CPU_OPT_LEVEL` and :data:`CPU_ONEDNN`
    where JAX will run on the CPU (``JAX_PLATFORMS=cpu``, or no GPU/TPU backend
    installed), each unless the user has set that flag either way; else ``flags``
    unchanged."""
    platforms = os.environ.get("JAX_PLATFORMS", "").strip().lower()
    on_cpu = platforms == "cpu" if platforms else not _accelerator_plugins()
    if not on_cpu:
        return flags
    for flag in (CPU_OPT_LEVEL, CPU_ONEDNN):
        if flag.split("=")[0] not in flags:
            flags = f"{flags} {flag}".strip()
    return flags


def enable_compilation_cache() -> str | None:
    """Turn on JAX's persistent compilation cache so that a second run (a resume,
    the same config again) does not recompile the supernet step.

    The directory is ``$JAXNAS_CACHE_DIR`` or ``~/.cache/jaxnas/xla``; set
    ``JAXNAS_CACHE_DIR=""`` to switch it off.  A cache directory set already (by the
    user, ``JAX_COMPILATION_CACHE_DIR``) is kept.  Returns the directory turned on here.
    """
    import jax

    path = os.environ.get("JAXNAS_CACHE_DIR", os.path.expanduser("~/.cache/jaxnas/xla"))
    if not path or jax.config.jax_compilation_cache_dir:
        return None
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 2.0)
    return path


def prepare(*, search: bool = False) -> str | None:
    """What a run sets before it compiles anything: with ``search``, ``XLA_FLAGS``
    without Triton GEMM fusion (:func:`search_xla_flags`); always, on the CPU, LLVM
    level :data:`CPU_OPT_LEVEL` and oneDNN (:func:`cpu_xla_flags`), and the persistent
    compilation cache (:func:`enable_compilation_cache`).  Returns the cache directory it turned on
    (None: switched off, or set already)."""
    flags = os.environ.get("XLA_FLAGS", "")
    flags = cpu_xla_flags(search_xla_flags(flags) if search else flags)
    if flags:
        os.environ["XLA_FLAGS"] = flags
    return enable_compilation_cache()


def jit_init(fn, **jit_kwargs):
    """``jax.jit(fn, **jit_kwargs)`` compiled for one run: a network's init.

    An init program is the random-number generator of every parameter (a threefry hash
    and a sampler per leaf: some 1,600 kernels for the DARTS supernet at C = 8 with 5
    cells) and constant fills; the forward pass it traces is dead code.  It runs once, in
    milliseconds, but its kernels took most of its compile time in LLVM's optimisation
    passes: :data:`RUN_ONCE_OPTIONS` skips them (DARTS supernet, 2-core CPU: C = 16 with
    8 cells 22.7 -> 13.5 s, C = 4 with 2 cells 3.4 -> 1.4 s; run 0.05 -> 0.25 s).  The
    values are the same distributions from the same keys, the floating-point samplers
    rounded differently (3e-7 relative); a given seed still gives the same init.

    Called inside another trace (``jax.eval_shape`` or ``jax.jit`` of a caller: any
    argument a tracer), it is the plain ``jax.jit(fn)``: compile options belong to the
    outermost program only.
    """
    import jax

    once = jax.jit(fn, compiler_options=dict(RUN_ONCE_OPTIONS), **jit_kwargs)
    nested = jax.jit(fn, **jit_kwargs)

    @functools.wraps(fn)
    def init(*args, **kwargs):
        traced = any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves((args, kwargs)))
        return (nested if traced else once)(*args, **kwargs)

    return init
