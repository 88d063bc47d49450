"""Shared fixtures: float64 for closed-form and finite-difference checks.

Also, for the speed of the suite (CI runs it in two pytest-xdist workers on a 2-core
machine, where XLA compilation is most of the time):

* one persistent XLA compilation cache for the test session (a fresh temporary folder,
  removed at the end), shared by the xdist workers and the subprocesses that tests
  start: the same program built again (another test, the other worker, a child process)
  is read back instead of compiled again.  ``JAXNAS_TEST_XLA_CACHE=0`` turns it off.
* the longest tests start first (:func:`pytest_collection_modifyitems`), so that no
  worker is left idle while the other finishes a long test that started late.
"""

import os
import shutil
import tempfile

import pytest

# The CLI turns on JAX's persistent compilation cache in ~/.cache; keep test runs hermetic
# (no cache from another session is read).
os.environ["JAXNAS_CACHE_DIR"] = ""


def _run_xla_flags() -> None:
    """Compile what the tests run (here, in the xdist workers and in every subprocess,
    through the inherited ``XLA_FLAGS``) with the flags a ``jaxnas`` run uses on the CPU
    (:func:`jaxnas.xla.cpu_xla_flags`: LLVM level 1 and oneDNN): the tests then check the
    programs users run, and XLA's LLVM level 1 takes less CPU time to compile them than
    its default, which is most of the suite's time.  A test that starts a subprocess
    with flags of its own appends them to ``XLA_FLAGS``."""
    from jaxnas.xla import cpu_xla_flags

    os.environ["XLA_FLAGS"] = cpu_xla_flags(os.environ.get("XLA_FLAGS", ""))


_run_xla_flags()


def _session_compilation_cache() -> None:
    """Point JAX (here, in the xdist workers and in every subprocess) at one compilation
    cache folder for this session, through the ``JAX_*`` environment variables that
    ``jax.config`` reads when jax is imported."""
    if os.environ.get("JAXNAS_TEST_XLA_CACHE", "1") == "0":
        return
    if os.environ.get("PYTEST_XDIST_WORKER") is None and "_JAXNAS_TEST_XLA_CACHE_OWNER" not in (
        os.environ
    ):
        # the controller (or a run without xdist): create the folder; the workers, started
        # later, inherit the environment and so the folder
        path = tempfile.mkdtemp(prefix="jaxnas-test-xla-cache-")
        os.environ["_JAXNAS_TEST_XLA_CACHE_OWNER"] = str(os.getpid())
        os.environ["JAX_COMPILATION_CACHE_DIR"] = path
        # the smallest programs cost more to write and read than to compile
        os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.5"
        try:  # with a size limit, reads and writes of the cache take a file lock
            import filelock  # noqa: F401

            os.environ["JAX_COMPILATION_CACHE_MAX_SIZE"] = str(16 << 30)
        except ImportError:  # without: a read of an entry being written fails and recompiles
            pass
    import jax

    path = os.environ.get("JAX_COMPILATION_CACHE_DIR")
    if path and not jax.config.jax_compilation_cache_dir:  # jax imported before this
        jax.config.update("jax_compilation_cache_dir", path)
        jax.config.update(
            "jax_persistent_cache_min_compile_time_secs",
            float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]),
        )
        if "JAX_COMPILATION_CACHE_MAX_SIZE" in os.environ:
            jax.config.update(
                "jax_compilation_cache_max_size", int(os.environ["JAX_COMPILATION_CACHE_MAX_SIZE"])
            )


_session_compilation_cache()


def pytest_unconfigure(config):
    if os.environ.get("_JAXNAS_TEST_XLA_CACHE_OWNER") == str(os.getpid()):
        shutil.rmtree(os.environ.get("JAX_COMPILATION_CACHE_DIR", ""), ignore_errors=True)


#: About how long each of the longest test files takes (seconds of its tests in a full
#: ``-n 2`` run on the 2-core machine beside other jobs, from ``JAXNAS_TEST_TIMES``; most
#: of it XLA compilation).  Only the order of the files depends on these numbers: the
#: longest start first.
_FILE_SECONDS = {
    "test_search_dist.py": 170,
    "test_train.py": 140,
    "test_models.py": 135,
    "test_head_to_head.py": 125,
    "test_darts.py": 115,
    "test_run.py": 110,
    "test_prdarts.py": 97,
    "test_bayesnas.py": 95,
    "test_asmnas.py": 95,
    "test_gdas.py": 93,
    "test_prdarts_theory_experiments.py": 90,
    "test_supernet.py": 90,
    "test_rarts.py": 88,
    "test_rnn.py": 80,
    "test_bayes_compress.py": 75,
    "test_sparsenas.py": 75,
    "test_width_compress.py": 75,
    "test_prdarts_reg.py": 70,
    "test_nb201.py": 70,
    "test_ops.py": 60,
    "test_hypergrad.py": 57,
    "test_width.py": 50,
    "test_rnn_runtime.py": 85,  # + the 2-device RNN search (one ~35 s subprocess)
    "test_width_search.py": 40,
    "test_torch_weights.py": 25,
    "test_width_transformers.py": 35,
    "test_optim.py": 30,
    "test_width_data.py": 30,
    "test_width_optim.py": 25,
    "test_sparsenas_digits.py": 20,
    "test_loop.py": 20,
}


def pytest_collection_modifyitems(config, items):
    """Run the longest test files first (each file's tests stay together, in their order,
    so a module-scoped fixture is built once per worker).

    With ``--dist worksteal`` each xdist worker starts on its share of the collection in
    this order and an idle worker takes tests from the end of the other's share: when the
    long files come first, the run ends on short tests instead of one worker waiting for
    a long test that started late.  Files not listed keep their order, after the others.
    """
    first = {}  # file -> position of its first test
    for i, item in enumerate(items):
        first.setdefault(item.path.name, i)
    items.sort(key=lambda it: (-_FILE_SECONDS.get(it.path.name, 0), first[it.path.name]))


def pytest_runtest_logreport(report):
    """With ``JAXNAS_TEST_TIMES=FILE``: one line per test phase appended to FILE as it ends
    (``nodeid phase seconds outcome``), so a run that dies still says what took the time."""
    path = os.environ.get("JAXNAS_TEST_TIMES")
    if path and os.environ.get("PYTEST_XDIST_WORKER") is None:
        with open(path, "a") as f:
            f.write(f"{report.nodeid} {report.when} {report.duration:.2f} {report.outcome}\n")


import jax  # noqa: E402


@pytest.fixture
def x64():
    """Run the test body with 64-bit floats enabled."""
    with jax.enable_x64(True):
        yield


@pytest.fixture(autouse=True)
def _restore_xla_flags(monkeypatch):
    """``jaxnas search`` adds to ``XLA_FLAGS`` for the rest of its process; a test that
    runs it must not change the environment of the tests (and subprocesses) after it."""
    old = os.environ.get("XLA_FLAGS")
    monkeypatch.setenv("XLA_FLAGS", "")  # recorded: restored or removed at teardown
    if old is None:
        monkeypatch.delenv("XLA_FLAGS")
    else:
        monkeypatch.setenv("XLA_FLAGS", old)
