"""The XLA CPU deadlock workaround (awm_jax/runner/xla_cpu.py), per jaxlib version: on 0.10.x the flag is set
on import and passed to the programs awm_jax compiles, on 0.11.x only passed to them, from 0.12 on neither;
the slow test reruns the configuration that used to stall, with XLA's default scheduler where the
installed jaxlib is not expected to need the workaround."""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import pytest

import awm_jax  # noqa: F401  (sets the flag)
from awm_jax.runner import xla_cpu


def test_each_jaxlib_gets_its_workaround():
    assert [xla_cpu.needs_workaround(v) for v in [(0, 9), (0, 10), (0, 11), (0, 12), (0, 13), (1, 0)]] == [
        "compile option", "flags", "compile option", "none", "none", "none"]
    assert xla_cpu.jaxlib_version() == tuple(int(x) for x in jax.lib.__version__.split(".")[:2])


def test_flag_set_on_import_and_passed_to_compile():
    need = xla_cpu.needs_workaround()
    on_cpu = jax.default_backend() == "cpu"
    assert (f"--{xla_cpu.FLAG}=false" in os.environ.get("XLA_FLAGS", "")) == (need == "flags")
    assert xla_cpu.compiler_options() == ({xla_cpu.FLAG: False} if on_cpu and need != "none" else {})


def test_compile_falls_back_without_an_unknown_option(monkeypatch):
    monkeypatch.setattr(xla_cpu, "compiler_options", lambda: {"xla_cpu_no_such_option": False})
    f = xla_cpu.compile(jax.jit(lambda x: 2 * x).lower(1.0))
    assert float(f(3.0)) == 6.0


def test_user_choice_is_kept(monkeypatch):
    monkeypatch.setattr(xla_cpu, "needs_workaround", lambda jaxlib=None: "flags")  # as on jaxlib 0.10.x
    monkeypatch.setenv("XLA_FLAGS", f"--{xla_cpu.FLAG}=true")
    xla_cpu.set_default_flags()
    assert os.environ["XLA_FLAGS"] == f"--{xla_cpu.FLAG}=true"
    assert xla_cpu.compiler_options() == {}
    monkeypatch.setenv("XLA_FLAGS", "--xla_backend_optimization_level=0")
    xla_cpu.set_default_flags()
    assert os.environ["XLA_FLAGS"] == f"--xla_backend_optimization_level=0 --{xla_cpu.FLAG}=false"


@pytest.mark.slow
def test_recurrent_awm_with_four_seeds_finishes(tmp_path):
    """awm_lstm, hidden 48, 4 vmapped seeds stalled for ever on a 2-core CPU with jaxlib 0.10.2 without the
    workaround: here it runs with awm_jax's setting where this jaxlib needs one, and with XLA's default
    scheduler switched on explicitly where it does not (finished in 59 s on jaxlib 0.12.1)."""
    cmd = [sys.executable, "-m", "awm_jax.cli", "train", "--method", "awm_lstm", "--seeds", "4", "--total-steps", "600",
           "--warmup-steps", "400", "--chunk-periods", "1", "--out", str(tmp_path / "run")]
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    if xla_cpu.needs_workaround() == "none":
        env["XLA_FLAGS"] = f"--{xla_cpu.FLAG}=true"
    subprocess.run(cmd, check=True, timeout=900, env=env)
    assert (tmp_path / "run" / "summary.txt").exists()
