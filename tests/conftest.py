"""Shared fixtures: float64 for closed-form and finite-difference checks."""

import os

import jax
import pytest


@pytest.fixture
def x64():
    """Run the test body with 64-bit floats enabled."""
    with jax.enable_x64(True):
        yield


# The CLI turns on JAX's persistent compilation cache; keep test runs hermetic.
os.environ["JAXNAS_CACHE_DIR"] = ""


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
