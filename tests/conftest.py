"""Shared fixtures."""

import os
import tempfile

import jax
import pytest

# The CLI keeps JAX's persistent compilation cache in $XDG_CACHE_HOME/awm_jax by default: tests that
# call it write into a throwaway folder, never the user's cache.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="awm-test-cache-")


@pytest.fixture
def x64():
    """Run one test with 64-bit JAX, restoring the previous setting afterwards."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", previous)
