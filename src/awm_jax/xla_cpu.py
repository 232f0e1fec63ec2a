"""A workaround for an XLA CPU runtime deadlock that awm_jax programs hit with jax 0.10.2.

With XLA's concurrency-optimised scheduler (the CPU default), the recurrent AWMs (awm_lstm and
awm_gru at hidden size 48, 4 vmapped seeds, on a 2-core machine) stalled for ever: every XLA thread
idle, the host waiting on a result that never became ready. Switching that scheduler off
(`--xla_cpu_enable_concurrency_optimized_scheduler=false`) removed the stall and changes no result.

awm_jax therefore switches it off in two places: in `XLA_FLAGS` when `awm_jax` is imported (effective
for every later compilation in the process, `jax.jit` in a notebook included, unless XLA already read
its flags or the user set the flag) and as a compile option of the programs `awm_jax.run` compiles.
Set `XLA_FLAGS=--xla_cpu_enable_concurrency_optimized_scheduler=true` to opt back in.
"""

from __future__ import annotations

import os

FLAG = "xla_cpu_enable_concurrency_optimized_scheduler"


def set_default_flags() -> None:
    """Add `--{FLAG}=false` to XLA_FLAGS unless the user already chose a value."""
    flags = os.environ.get("XLA_FLAGS", "")
    if FLAG not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --{FLAG}=false".strip()


def compiler_options() -> dict:
    """Compile options for `jax.jit(...).lower(...).compile(compiler_options=...)` on the CPU backend
    ({} elsewhere, or when the user set the flag explicitly)."""
    import jax

    if jax.default_backend() != "cpu" or f"--{FLAG}=" in os.environ.get("XLA_FLAGS", "").replace(f"--{FLAG}=false", ""):
        return {}
    return {FLAG: False}
