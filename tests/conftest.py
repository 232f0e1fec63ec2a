"""Shared fixtures."""

import os
import sys
import tempfile
from pathlib import Path

import jax
import pytest

# The experiment scripts import their shared module `pipeline` from experiments/, which `python
# experiments/NAME.py` puts on the path: the tests that load a script, or `pipeline` itself, need it there too.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

# The CLI keeps JAX's persistent compilation cache in $XDG_CACHE_HOME/awm_jax by default: tests that
# call it write into a throwaway folder, never the user's cache.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="awm-test-cache-")

# The test programs are tiny, so compiling them is most of the test run's time. At LLVM optimisation level 0
# XLA's CPU backend compiles them faster (markov_svg's contract tests: 44 s -> 27 s on the 2-core machine,
# 30 November 2026); the maths is the same, only the machine code is less optimised. AWM_TEST_XLA_OPT=default
# tests with XLA's own level (what users run). Set here, before JAX's backend starts; subprocesses inherit it.
if os.environ.get("AWM_TEST_XLA_OPT", "0") != "default" and "xla_backend_optimization_level" not in os.environ.get(
        "XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip()


@pytest.fixture
def x64():
    """Run one test with 64-bit JAX, restoring the previous setting afterwards."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", previous)
