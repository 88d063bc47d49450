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
