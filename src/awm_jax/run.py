"""Host-side driver of a multi-seed run: compile once, advance in chunks with progress, write outputs.

The compiled program is `jax.jit(jax.vmap(trainer.run_chunk))` over the seed axis; chunking only
decides how often control returns to Python (progress lines, later checkpoints), not the results.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from awm_jax.config import Config
from awm_jax.trainer import make_train


def seed_keys(config: Config):
    """The per-seed keys of a run: split(PRNGKey(config.seed), config.seeds)."""
    return jax.random.split(jax.random.PRNGKey(config.seed), config.seeds)


def run_training(config: Config, out=None, chunk_periods: int = 8, verbose: bool = True):
    """Train `config.seeds` seeds in one vmapped program; returns (state, metrics [seeds, periods]).

    With `out`, writes the run folder (see `awm_jax.results`) and prints its summary line."""
    trainer = make_train(config)  # validates before anything compiles
    keys = seed_keys(config)
    chunk = max(1, min(chunk_periods, config.periods))
    log = print if verbose else (lambda *a, **k: None)
    t0 = time.time()
    init = jax.jit(jax.vmap(trainer.init)).lower(keys).compile()
    state = init(keys)
    step = jax.jit(jax.vmap(lambda s: trainer.run_chunk(s, chunk))).lower(state).compile()
    rest = config.periods % chunk
    tail = jax.jit(jax.vmap(lambda s: trainer.run_chunk(s, rest))).lower(state).compile() if rest else None
    compile_s = time.time() - t0
    log(f"[awm-jax] {config.task} / {config.method}, {config.seeds} seeds, {config.env_steps} env steps: "
        f"compiled in {compile_s:.1f}s")
    t1 = time.time()
    pieces = []
    done = 0
    while done < config.periods:
        fn, n = (step, chunk) if config.periods - done >= chunk else (tail, rest)
        state, metrics = fn(state)
        ret = np.asarray(metrics["eval/return"][:, -1])
        steps = int(np.asarray(metrics["eval/env_steps"])[0, -1])
        skipped = int(np.asarray(metrics["skipped_updates"])[:, -1].sum())
        pieces.append(metrics)
        done += n
        log(f"[awm-jax] env steps {steps:6d}/{config.env_steps}  {time.time() - t1:7.1f}s  "
            f"eval return {ret.mean():.4g} (+- {ret.std():.3g})" + (f"  skipped updates {skipped}" if skipped else ""))
    metrics = jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=1), *pieces)
    run_s = time.time() - t1
    if out is not None:
        from awm_jax.results import write_run

        line = write_run(out, config, metrics, extra={"compile_seconds": compile_s, "run_seconds": run_s})
        log(line)
        log(f"[awm-jax] wrote {out}/ (config.json, metrics.csv, metrics.json, returns.png, summary.txt)")
    return state, metrics
