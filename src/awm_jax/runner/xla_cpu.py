"""A workaround for an XLA CPU runtime deadlock that awm_jax programs hit with jaxlib 0.10.x.

With XLA's concurrency-optimised scheduler (the CPU default), the recurrent AWMs (awm_lstm and
awm_gru at hidden size 48, 4 vmapped seeds, on a 2-core machine) stalled for ever: every XLA thread
idle, the host waiting on a result that never became ready. Switching that scheduler off
(`--xla_cpu_enable_concurrency_optimized_scheduler=false`) removed the stall and changes no result.

Per jaxlib version (`needs_workaround`):
- 0.10.x (checked: stalls): awm_jax switches the scheduler off in two places, in `XLA_FLAGS` when
  `awm_jax` is imported (effective for every later compilation in the process, `jax.jit` in a notebook
  included, unless XLA already read its flags or the user set the flag) and as a compile option of the
  programs `awm_jax.runner.run` compiles;
- 0.11.x (not checked): only the compile option; XLA aborts the process on an unknown flag in
  XLA_FLAGS, so the environment variable is left alone where the flag was not seen to exist, and
  `compile` falls back to no option if that XLA does not know it;
- 0.12 and newer (checked on 0.12.1: the same awm_lstm run with the scheduler on finishes): nothing.
Set `XLA_FLAGS=--xla_cpu_enable_concurrency_optimized_scheduler=true` to opt back in on any version.
"""

from __future__ import annotations

import os

FLAG = "xla_cpu_enable_concurrency_optimized_scheduler"


CHECKED_JAXLIB = (0, 10)  # the jaxlib line where the stall was seen and the flag is known to XLA_FLAGS
FIXED_JAXLIB = (0, 12)  # from here on the scheduler no longer stalls (checked on 0.12.1)


def jaxlib_version() -> tuple[int, int] | None:
    """(major, minor) of the installed jaxlib, None when it is absent or its version unreadable."""
    import re
    from importlib.metadata import PackageNotFoundError, version

    try:
        m = re.match(r"(\d+)\.(\d+)", version("jaxlib"))
    except PackageNotFoundError:
        return None
    return (int(m[1]), int(m[2])) if m else None


def needs_workaround(jaxlib: tuple[int, int] | None = None) -> str:
    """What this jaxlib gets: "flags" (XLA_FLAGS and the compile option, 0.10.x), "compile option"
    (0.11.x: not checked, and its XLA_FLAGS may not know the flag) or "none" (0.12 on, or no jaxlib)."""
    v = jaxlib_version() if jaxlib is None else jaxlib
    if v is None or v >= FIXED_JAXLIB:
        return "none"
    return "flags" if v == CHECKED_JAXLIB else "compile option"


def set_default_flags() -> None:
    """Add `--{FLAG}=false` to XLA_FLAGS unless the user already chose a value (jaxlib 0.10.x only)."""
    if needs_workaround() != "flags":
        return
    flags = os.environ.get("XLA_FLAGS", "")
    if FLAG not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --{FLAG}=false".strip()


def compiler_options() -> dict:
    """Compile options for `jax.jit(...).lower(...).compile(compiler_options=...)` on the CPU backend
    ({} elsewhere, on a jaxlib that does not need it, or when the user set the flag explicitly)."""
    import jax

    user_chose = f"--{FLAG}=" in os.environ.get("XLA_FLAGS", "").replace(f"--{FLAG}=false", "")
    if needs_workaround() == "none" or jax.default_backend() != "cpu" or user_chose:
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
