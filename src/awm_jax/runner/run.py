"""Host-side driver of a multi-seed run: compile once, advance in chunks with progress, checkpoint,
resume, write outputs.

The compiled program is `jax.jit(jax.vmap(trainer.run_chunk))` over the seed axis (laid over every
device by `awm_jax.runner.sharding` when there are several; on one CPU device the transformers map their
seeds one after another instead, see `sharding.seed_map`); chunking only decides how often control
returns to Python (progress lines, checkpoints), never the results.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import jax
import numpy as np

from awm_jax.core.config import Config
from awm_jax.core.methods import make_train
from awm_jax.runner import interrupt, run_folder
from awm_jax.runner.checkpoint import Checkpointer, check_resume_config, restore_members, save_state
from awm_jax.runner.interrupt import Interrupted
from awm_jax.runner.results import read_run_files, write_metrics
from awm_jax.runner.results import write_outputs as write_files
from awm_jax.runner.run_folder import FINAL_STATE, atomic_write
from awm_jax.runner.sharding import SeedSharding, default_seed_batch, seed_map


def seed_keys(config: Config):
    """The per-seed keys of a run: split(PRNGKey(config.seed), config.seeds)."""
    return jax.random.split(jax.random.PRNGKey(config.seed), config.seeds)


def chunk_size(periods: int, requested: int) -> int:
    """The chunk length actually run: the largest divisor of `periods` up to `requested`, so that every
    chunk is the same compiled program (a remainder would need a second whole-loop program)."""
    return max(d for d in range(1, min(requested, periods) + 1) if periods % d == 0)


def run_training(config: Config, out=None, chunk_periods: int = 8, checkpoint_every: int = 0, keep: int = 2,
                 resume: bool = False, shard: bool = True, verbose: bool = True, hparams: dict | None = None,
                 keys=None, write_outputs: bool = True, overwrite: bool = False, seed_batch: int | None | str = "auto",
                 checkpoint_minutes: float = 10.0):
    """Train `config.seeds` seeds in one vmapped program; returns (state, metrics {name: [seeds, periods]}).

    SIGINT and SIGTERM (with `out`): the run stops after the chunk that is running, saves a checkpoint of
    it and raises `awm_jax.runner.interrupt.Interrupted` (its signal, env step and checkpoint folder);
    `resume=True` continues from there to the results an uninterrupted run gives. A second signal raises
    KeyboardInterrupt at once (the command line ends the process instead), leaving the previous checkpoint.

    out: run folder (config.json, metrics, plot, summary, final_state/, COMPLETE; checkpoints/ when
        checkpointing). It is locked while the run writes it (a second writer is refused) and gets its
        COMPLETE marker last; see `awm_jax.runner.run_folder`.
    chunk_periods: evaluation periods per compiled call, at most (see `chunk_size`: the largest divisor
        of the run's periods up to it, so one program serves every chunk).
    checkpoint_every: save every that many chunks (and at the end); 0: by wall time only.
    checkpoint_minutes: with `out`, save after the first chunk that ends at least this many minutes after
        the start of training or the previous checkpoint (never at the end: the outputs follow); 0 turns it
        off, so only checkpoint_every and a signal save. A run shorter than that saves no checkpoint.
    resume: continue the unfinished run in `out` from its newest intact checkpoint (from the start if
        it has none; refused if its config differs); on a finished run, return its saved results.
    overwrite: move whatever run `out` holds aside (to `out.old-<time>`) and start afresh. Without
        resume or overwrite, a folder that already holds a run (finished or not) is refused.
    shard: lay the seed axis over all devices (padding the seed count to a multiple of them).
    keys, hparams: the vmapped members (default: the config's seed keys, its own hyperparameters);
        hparams is {name: [members] array} of traced hyperparameters (see the learner's `traced`).
    write_outputs: write the plot, metrics.csv and summary to `out` (a sweep writes its own per-member
        folders; its group folder gets config.json, metrics.json and the final state).
    seed_batch: seeds computed together (`awm_jax.runner.sharding.seed_map`): None vmaps them all, n runs
        groups of n one after another in the program (one device only); "auto": the method's choice on a
        single CPU device (1 for the transformers), None elsewhere. Results equal to float32 rounding.
    """
    trainer = make_train(config)  # validates before anything compiles
    if chunk_periods < 1 or checkpoint_every < 0 or keep < 1 or not checkpoint_minutes >= 0:
        raise ValueError("need chunk_periods >= 1, checkpoint_every >= 0, checkpoint_minutes >= 0 and keep >= 1")
    if seed_batch != "auto":
        seed_map(lambda x: x, seed_batch)  # raises on a bad value
        if seed_batch is not None and shard and jax.device_count() > 1:
            raise ValueError("a seed batch needs one device: pass shard=False (--no-shard) or seed_batch=None")
    if (resume or checkpoint_every) and out is None:
        raise ValueError("checkpointing and --resume need an output folder (--out)")
    if resume and overwrite:
        raise ValueError("--resume continues the run in --out and --overwrite moves it aside: pass one of them")
    log = print if verbose and jax.process_index() == 0 else (lambda *a, **k: None)
    lock = None
    if out is not None and jax.process_index() == 0:
        lock, status = run_folder.claim(out, overwrite=overwrite, log=log)
    try:
        if lock is not None:
            if resume:
                check_resume_config(out, config)
                if status == "complete":
                    return _finished(out, log)
            elif status != "new":
                raise run_folder.RunFolderError(_occupied(out, status))
            atomic_write(Path(out) / run_folder.CONFIG, json.dumps(config.resolved().to_dict(), indent=2))
        with interrupt.watch() if out is not None else contextlib.nullcontext(None) as watch:
            return _train(trainer, config, out, chunk_periods, checkpoint_every, checkpoint_minutes, keep, resume,
                          shard, log, hparams, keys, write_outputs, seed_batch, watch)
    finally:
        if lock is not None:
            lock.release()


def _occupied(out, status: str) -> str:
    """Why a fresh run may not start in `out`, and what to pass instead."""
    if status == "complete":
        done = run_folder.read_json(Path(out) / run_folder.COMPLETE, "COMPLETE marker").get("completed", "?")
        return (f"{out} already holds a finished run (completed {done}): pass --overwrite to move it aside (to "
                f"{Path(out).name}.old-<time>) and train again, --resume to take its saved results, or choose "
                "another --out")
    if any((Path(out) / "checkpoints").glob("[0-9]*")):
        return (f"{out} already holds checkpoints of an unfinished run: pass --resume to continue it, --overwrite "
                "to move it aside and start again, or choose another --out")
    found = ", ".join(run_folder.run_content(out))
    return (f"{out} holds an unfinished run without checkpoints ({found}): pass --resume to start it again there, "
            "--overwrite to move it aside, or choose another --out")


def _finished(out, log):
    """The saved (state, metrics) of the finished run in `out` (state None if it saved none), as
    `awm_jax.load_run` reads them: metrics from its files, the state rebuilt from its saved config."""
    marker = run_folder.check_complete(out)
    saved = any(name.startswith(FINAL_STATE + "/") for name in marker.get("files", {}))
    config, metrics = read_run_files(out)
    state = restore_members(make_train(config), Path(out) / FINAL_STATE, len(metrics["eval/return"])) if saved \
        else None
    log(f"[awm-jax] {out} already holds this run, finished {marker.get('completed', '?')}: nothing to train "
        "(its saved state and metrics are returned; --overwrite trains it again)")
    return state, metrics


def _train(trainer, config, out, chunk_periods, checkpoint_every, checkpoint_minutes, keep, resume, shard, log,
           hparams, keys, write_outputs, seed_batch, watch):
    """run_training once the folder is claimed: compile, (resume,) train in chunks, checkpoint (every
    `checkpoint_every` chunks, by wall time, on a signal of `watch`), write outputs."""
    ck_dir = Path(out) / run_folder.CHECKPOINTS if out is not None else None
    keys = seed_keys(config) if keys is None else keys
    hp = {} if hparams is None else {k: np.asarray(v, np.float32) for k, v in hparams.items()}
    sharding = SeedSharding.create(len(keys)) if shard else SeedSharding.single(len(keys))
    keys, hp = sharding.pad(keys), {k: sharding.pad(v) for k, v in hp.items()}
    devices = 1 if sharding.mesh is None else sharding.mesh.devices.size
    if seed_batch == "auto":
        seed_batch = default_seed_batch(config.method, devices)

    t0 = time.time()
    init = sharding.compile(seed_map(lambda k, h: trainer.init(k, h), seed_batch), keys, hp)
    compile_s = time.time() - t0  # compiling only: running init (the warm-up) is training time
    state = init(keys, sharding.put(hp))
    shapes = jax.eval_shape(jax.vmap(lambda s: trainer.run_chunk(s, 1)), state)[1]
    S, P = len(keys), config.periods
    metrics = {k: np.full((S, P), np.nan, np.float64) for k in shapes}
    done = 0
    checkpointer = Checkpointer(ck_dir, keep) if ck_dir is not None else None
    env_step = lambda periods: int(metrics["eval/env_steps"][0, periods - 1]) if periods else 0
    if watch is not None:
        watch.saved, watch.out = None, out
    try:
        if resume:
            restored = checkpointer.restore_latest(state, metrics, log=log)
            if restored is not None:
                done, state, metrics = restored
                state = sharding.put(state)
                metrics = {k: np.asarray(v) for k, v in metrics.items()}
                log(f"[awm-jax] resumed {out} after {done}/{P} evaluation periods (env step {env_step(done)})")
                if watch is not None:
                    watch.saved = (env_step(done), ck_dir / str(done))
            else:
                log(f"[awm-jax] {out} holds no checkpoint: the run starts again from env step 0")
        saved = done if resume and done else None  # the periods of the newest checkpoint on disk

        def stop_if_signalled(signum):
            """Save the chunk just completed (unless saved already) and raise Interrupted (orbax is closed
            below, before it leaves this function)."""
            nonlocal saved
            if not signum:
                return
            if done and saved != done:
                checkpointer.save(done, state, metrics)
                saved = done
            raise Interrupted(signum, env_step(done) if saved else 0, config.env_steps,
                              ck_dir / str(saved) if saved else None, out, f"training {config.task} / {config.method}")

        timed = P - done  # run_seconds covers these periods (fewer than P after a resume)
        # one program for every chunk (a resumed run sizes its chunks to the periods left)
        chunk = chunk_size(P - done, chunk_periods) if done < P else 0
        t0 = time.time()
        step = sharding.compile(seed_map(lambda s: trainer.run_chunk(s, chunk), seed_batch), state) if chunk else None
        compile_s += time.time() - t0
        M = sharding.seeds
        how = "" if seed_batch is None or seed_batch >= M else f" ({seed_batch} at a time)"
        log(f"[awm-jax] {config.task} / {config.method}, {M} seeds{how} on {sharding.describe()}, "
            f"{config.env_steps} env steps in chunks of {chunk} evaluation periods: compiled in {compile_s:.1f}s")
        if watch is not None:  # a signal while compiling: nothing computed since the last checkpoint
            stop_if_signalled(watch.agree()[0])
        t1 = last_save = time.time()
        chunks = 0
        while done < P:
            state, m = step(state)
            for k, v in sharding.gather(m).items():
                metrics[k][:, done:done + chunk] = v
            done += chunk
            chunks += 1
            ret = metrics["eval/return"][:M, done - 1]
            skipped = int(metrics["skipped_updates"][:M, done - 1].sum())
            log(f"[awm-jax] env steps {int(metrics['eval/env_steps'][0, done - 1]):6d}/{config.env_steps}  "
                f"{time.time() - t1:7.1f}s  eval return {ret.mean():.4g} (+- {ret.std():.3g})"
                + (f"  skipped non-finite updates {skipped}" if skipped else ""))
            if watch is None:
                continue
            timed_due = bool(checkpoint_minutes) and done < P and time.time() - last_save >= 60 * checkpoint_minutes
            signum, timed_due = watch.agree(timed_due)  # the same decision on every process
            if signum and done < P:
                stop_if_signalled(signum)
            if timed_due or (checkpoint_every and (chunks % checkpoint_every == 0 or done == P)):
                checkpointer.save(done, state, metrics)
                saved, last_save = done, time.time()
                watch.saved = (env_step(done), ck_dir / str(done))
    finally:
        if checkpointer is not None:
            checkpointer.close()
    run_s = time.time() - t1
    if jax.process_count() == 1:  # with several processes the state stays a global (padded) array
        state = sharding.unpad(state)
    metrics = {k: v[:M] for k, v in metrics.items()}
    if out is not None and jax.process_index() == 0:
        # small files first, then the large state, then the marker: a failure (disk full) keeps the
        # metrics and leaves no COMPLETE, so nothing unfinished looks finished
        extra = {"compile_seconds": compile_s, "run_seconds": run_s, "timed_periods": timed,
                 "machine": sharding.machine()}
        if write_outputs:
            line, names = write_files(out, config, metrics, extra=extra)
            log(line)
        else:
            run_folder.unmark(out)
            names = write_metrics(out, config, metrics, extra=extra)
        if jax.process_count() == 1:  # the final state, for awm_jax.load_run (not saved by multi-process runs)
            save_state(Path(out) / FINAL_STATE, state)
            names.append(FINAL_STATE)
        run_folder.mark_complete(out, names)
        if write_outputs:
            log(f"[awm-jax] wrote {out}/ ({', '.join(names)}, {run_folder.COMPLETE})")
    return state, metrics
