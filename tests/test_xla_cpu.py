"""The XLA CPU deadlock workaround (awm_jax/loop/xla_cpu.py): the flag is set on import and passed to
the programs awm_jax compiles; the slow test reruns the configuration that used to stall."""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import pytest

import awm_jax  # noqa: F401  (sets the flag)
from awm_jax.loop import xla_cpu


def test_flag_set_on_import_and_passed_to_compile():
    assert f"--{xla_cpu.FLAG}=false" in os.environ["XLA_FLAGS"]
    assert xla_cpu.compiler_options() == ({xla_cpu.FLAG: False} if jax.default_backend() == "cpu" else {})


def test_compile_falls_back_without_an_unknown_option(monkeypatch):
    monkeypatch.setattr(xla_cpu, "compiler_options", lambda: {"xla_cpu_no_such_option": False})
    f = xla_cpu.compile(jax.jit(lambda x: 2 * x).lower(1.0))
    assert float(f(3.0)) == 6.0


def test_user_choice_is_kept(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", f"--{xla_cpu.FLAG}=true")
    xla_cpu.set_default_flags()
    assert os.environ["XLA_FLAGS"] == f"--{xla_cpu.FLAG}=true"
    assert xla_cpu.compiler_options() == {}


@pytest.mark.slow
def test_recurrent_awm_with_four_seeds_finishes(tmp_path):
    """awm_lstm, hidden 48, 4 vmapped seeds stalled for ever on a 2-core CPU without the workaround."""
    cmd = [sys.executable, "-m", "awm_jax.cli", "train", "--method", "awm_lstm", "--seeds", "4", "--total-steps", "600",
           "--warmup-steps", "400", "--chunk-periods", "1", "--out", str(tmp_path / "run")]
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    subprocess.run(cmd, check=True, timeout=900, env=env)
    assert (tmp_path / "run" / "summary.txt").exists()
