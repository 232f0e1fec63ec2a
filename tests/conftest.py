"""Shared fixtures."""

import jax
import pytest


@pytest.fixture
def x64():
    """Run one test with 64-bit JAX, restoring the previous setting afterwards."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", previous)
