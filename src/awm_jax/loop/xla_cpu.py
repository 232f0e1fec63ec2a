"""A workaround for an XLA CPU runtime deadlock that awm_jax programs hit with jax 0.10.2.

With XLA's concurrency-optimised scheduler (the CPU default), the recurrent AWMs (awm_lstm and
awm_gru at hidden size 48, 4 vmapped seeds, on a 2-core machine) stalled for ever: every XLA thread
idle, the host waiting on a result that never became ready. Switching that scheduler off
(`--xla_cpu_enable_concurrency_optimized_scheduler=false`) removed the stall and changes no result.

awm_jax therefore switches it off in two places: in `XLA_FLAGS` when `awm_jax` is imported (effective
for every later compilation in the process, `jax.jit` in a notebook included, unless XLA already read
its flags or the user set the flag) and as a compile option of the programs `awm_jax.loop.run` compiles.
Set `XLA_FLAGS=--xla_cpu_enable_concurrency_optimized_scheduler=true` to opt back in.

XLA aborts the process on an unknown flag in XLA_FLAGS, so the environment variable is only set for the
jaxlib line where the flag was checked (0.10.x); elsewhere only the compile option is tried, and
`compile` falls back to no option if that XLA does not know it.
"""

from __future__ import annotations

import os

FLAG = "xla_cpu_enable_concurrency_optimized_scheduler"


CHECKED_JAXLIB = "0.10."


def set_default_flags() -> None:
    """Add `--{FLAG}=false` to XLA_FLAGS unless the user already chose a value (jaxlib 0.10.x only)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        if not version("jaxlib").startswith(CHECKED_JAXLIB):
            return
    except PackageNotFoundError:
        return
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


def compile(lowered):
    """`lowered.compile()` with `compiler_options()`, retried without them if this XLA lacks the flag."""
    opts = compiler_options()
    if not opts:
        return lowered.compile()
    try:
        return lowered.compile(compiler_options=opts)
    except Exception as e:  # an XLA without the option: INVALID_ARGUMENT "No such compile option"
        if "compile option" not in str(e):
            raise
        return lowered.compile()
