"""Host-side driver of a multi-seed run: compile once, advance in chunks with progress, checkpoint,
resume, write outputs.

The compiled program is `jax.jit(jax.vmap(trainer.run_chunk))` over the seed axis (laid over every
device by `awm_jax.sharding` when there are several); chunking only decides how often control
returns to Python (progress lines, checkpoints), never the results.
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
import numpy as np

from awm_jax.config import Config
from awm_jax.trainer import make_train


def seed_keys(config: Config):
    """The per-seed keys of a run: split(PRNGKey(config.seed), config.seeds)."""
    return jax.random.split(jax.random.PRNGKey(config.seed), config.seeds)


def run_training(config: Config, out=None, chunk_periods: int = 8, checkpoint_every: int = 0, keep: int = 2,
                 resume: bool = False, shard: bool = True, verbose: bool = True, hparams: dict | None = None,
                 keys=None, write_outputs: bool = True):
    """Train `config.seeds` seeds in one vmapped program; returns (state, metrics {name: [seeds, periods]}).

    out: run folder (config.json, metrics, plot, summary, final_state/; checkpoints/ when checkpointing).
    checkpoint_every: save every that many chunks (and at the end); 0 saves nothing.
    resume: continue from the newest readable checkpoint in `out` (refused if its config differs).
    shard: lay the seed axis over all devices (padding the seed count to a multiple of them).
    keys, hparams: the vmapped members (default: the config's seed keys, its own hyperparameters);
        hparams is {name: [members] array} of numeric hyperparameters (see trainer.NUMERIC).
    write_outputs: write metrics/plot/summary to `out` (a sweep writes its own per-member folders).
    """
    from awm_jax import checkpoint as ckpt
    from awm_jax.results import atomic_write, write_run
    from awm_jax.sharding import SeedSharding

    trainer = make_train(config)  # validates before anything compiles
    if chunk_periods < 1 or checkpoint_every < 0 or keep < 1:
        raise ValueError("need chunk_periods >= 1, checkpoint_every >= 0 and keep >= 1")
    if (resume or checkpoint_every) and out is None:
        raise ValueError("checkpointing and --resume need an output folder (--out)")
    ck_dir = Path(out) / "checkpoints" if out is not None else None
    if out is not None:
        if resume:
            ckpt.check_resume_config(out, config)
        elif ck_dir.exists() and any(ck_dir.iterdir()):
            raise ValueError(f"{out} already holds checkpoints of a run: pass --resume to continue it, "
                             "or choose another --out")
        import json

        if jax.process_index() == 0:
            atomic_write(Path(out) / ckpt.CONFIG_NAME, json.dumps(config.to_dict(), indent=2))
    log = print if verbose and jax.process_index() == 0 else (lambda *a, **k: None)
    keys = seed_keys(config) if keys is None else keys
    hp = {} if hparams is None else {k: np.asarray(v, np.float32) for k, v in hparams.items()}
    sharding = SeedSharding.create(len(keys)) if shard else SeedSharding.single(len(keys))
    keys, hp = sharding.pad(keys), {k: sharding.pad(v) for k, v in hp.items()}
    chunk = min(chunk_periods, config.periods)
    rest = config.periods % chunk

    t0 = time.time()
    init = sharding.compile(jax.vmap(lambda k, h: trainer.init(k, h)), keys, hp)
    state = init(keys, sharding.put(hp))
    step = sharding.compile(jax.vmap(lambda s: trainer.run_chunk(s, chunk)), state)
    tail = sharding.compile(jax.vmap(lambda s: trainer.run_chunk(s, rest)), state) if rest else None
    compile_s = time.time() - t0
    shapes = jax.eval_shape(jax.vmap(lambda s: trainer.run_chunk(s, 1)), state)[1]
    S, P = len(keys), config.periods
    metrics = {k: np.full((S, P), np.nan, np.float64) for k in shapes}
    done = 0
    checkpointer = ckpt.Checkpointer(ck_dir, keep) if checkpoint_every or resume else None
    if resume:
        restored = checkpointer.restore_latest(state, metrics)
        if restored is not None:
            done, state, metrics = restored
            state = sharding.put(state)
            metrics = {k: np.asarray(v) for k, v in metrics.items()}
            log(f"[awm-jax] resumed {out} after {done}/{P} evaluation periods")
    M = sharding.seeds
    log(f"[awm-jax] {config.task} / {config.method}, {M} seeds on {sharding.describe()}, "
        f"{config.env_steps} env steps: compiled in {compile_s:.1f}s")
    t1 = time.time()
    chunks = 0
    while done < P:
        fn, n = (step, chunk) if P - done >= chunk else (tail, rest)
        state, m = fn(state)
        for k, v in sharding.gather(m).items():
            metrics[k][:, done:done + n] = v
        done += n
        chunks += 1
        ret = metrics["eval/return"][:M, done - 1]
        skipped = int(metrics["skipped_updates"][:M, done - 1].sum())
        log(f"[awm-jax] env steps {int(metrics['eval/env_steps'][0, done - 1]):6d}/{config.env_steps}  "
            f"{time.time() - t1:7.1f}s  eval return {ret.mean():.4g} (+- {ret.std():.3g})"
            + (f"  skipped non-finite updates {skipped}" if skipped else ""))
        if checkpointer is not None and checkpoint_every and (chunks % checkpoint_every == 0 or done == P):
            checkpointer.save(done, state, metrics)
    if checkpointer is not None:
        checkpointer.close()
    run_s = time.time() - t1
    if jax.process_count() == 1:  # with several processes the state stays a global (padded) array
        state = sharding.unpad(state)
    metrics = {k: v[:M] for k, v in metrics.items()}
    if out is not None and jax.process_count() == 1:  # the final state, for awm_jax.load_run
        from awm_jax.results import FINAL_STATE, save_state

        save_state(Path(out) / FINAL_STATE, state)
    if out is not None and write_outputs and jax.process_index() == 0:
        line = write_run(out, config, metrics, extra={"compile_seconds": compile_s, "run_seconds": run_s})
        log(line)
        log(f"[awm-jax] wrote {out}/ (config.json, metrics.csv, metrics.json, returns.png, summary.txt)")
    return state, metrics
