"""Trainer benchmark on the current device: the single compiled scan at 1, 4, 16 vmapped seeds, and
the same updates driven by a Python loop.

    python experiments/bench_trainer.py --out runs/bench [--method awm_transformer] [--task cancer_treatment]
        [--seeds 1,4,16] [--total-steps 5000] [--warmup-steps 1500] [--loop-blocks 20]
    python experiments/bench_trainer.py --out /tmp/bench --quick     # about a minute: 1 and 2 seeds, tiny schedule

Prints (and writes bench.md / bench.csv) one row per seed count: compile time, wall time, env steps
per second (all seeds together) and per seed, per-seed throughput relative to 1 seed, and the final
eval return with the fraction of the random -> best-constant gap it closes (both references are
computed here). Then the Python-loop comparison: one seed, the same jitted env-step, model-update and
policy-update functions called one at a time for `--loop-blocks` blocks, against the scan's per-block
time measured above.
"""

import dataclasses
import time
from pathlib import Path
from typing import Annotated

import jax
import numpy as np
import tyro

import awm_envs
from awm_jax.analysis.benchmark import QUICK_CONFIG
from awm_jax.analysis.options import quick_defaults
from awm_jax.analysis.references import best_constant_return, closed_gap, random_return
from awm_jax.config import Config
from awm_jax.io.results import atomic_write, format_table
from awm_jax.methods import make_train

QUICK_HELP = ("smoke test (about a minute on a laptop CPU): 1 and 2 seeds and 3 loop blocks unless --seeds or "
              "--loop-blocks are given, and the benchmark experiments' quick schedule (20-step episodes, 400 env steps "
              "of which 200 warm-up, small batches; it replaces --total-steps and --warmup-steps)")


@dataclasses.dataclass(kw_only=True)
class Options:
    out: str
    """folder for bench.md and bench.csv"""
    method: str = "awm_transformer"
    """the method to time"""
    task: str = "cancer_treatment"
    """the task to train on"""
    seeds: str = "1,4,16"
    """comma-separated numbers of vmapped seeds to time"""
    total_steps: int = 5000
    """env steps per run (paper: 5000)"""
    warmup_steps: int = 1500
    """env steps before any update (paper: 1500)"""
    loop_blocks: int = 20
    """blocks the Python-loop comparison runs (one seed)"""
    quick: Annotated[bool, tyro.conf.arg(help=QUICK_HELP)] = False


def time_scan(cfg: Config, seeds: int):
    """Compile and run `seeds` vmapped seeds: (compile s, run s, final eval returns [seeds])."""
    trainer = make_train(cfg)
    keys = jax.random.split(jax.random.PRNGKey(cfg.seed), seeds)
    t0 = time.perf_counter()
    fn = jax.jit(jax.vmap(trainer)).lower(keys).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, metrics = fn(keys)
    ret = np.asarray(jax.block_until_ready(metrics["eval/return"]))[:, -1]
    return compile_s, time.perf_counter() - t0, ret


def time_python_loop(cfg: Config, blocks: int) -> float:
    """Seconds per block when a Python loop calls the jitted pieces one at a time (one seed)."""
    trainer = make_train(cfg)
    state = jax.jit(trainer.init)(jax.random.PRNGKey(cfg.seed))
    env_step = jax.jit(lambda s, k: trainer._env_step(s, k, trainer._policy_act))
    model_update = jax.jit(trainer._model_update)
    policy_update = jax.jit(trainer._policy_update)
    keys = iter(jax.random.split(jax.random.PRNGKey(1), blocks * (cfg.policy_every * 2 + 2) + 8))

    def block(state):
        for _ in range(cfg.policy_every):
            state = env_step(state, next(keys))
        if trainer.model.trainable:
            for _ in range(cfg.policy_every // cfg.model_every):
                state, _ = model_update(state, next(keys))
        state, _ = policy_update(state, next(keys))
        return state

    state = jax.block_until_ready(block(state))  # compile every piece once, untimed
    t0 = time.perf_counter()
    for _ in range(blocks):
        state = block(state)
    jax.block_until_ready(state)
    return (time.perf_counter() - t0) / blocks


def main(argv=None):
    args = tyro.cli(Options, args=argv, description=__doc__)
    schedule = dict(total_steps=args.total_steps, warmup_steps=args.warmup_steps)
    if args.quick:
        args, schedule = quick_defaults(args, seeds="1,2", loop_blocks=3), QUICK_CONFIG
    cfg = Config(task=args.task, method=args.method, **schedule)
    make_train(cfg)  # validate before any compilation
    task = awm_envs.make(cfg.task, **cfg.task_options())
    rand = random_return(task, jax.random.PRNGKey(1))
    best, _ = best_constant_return(task, jax.random.PRNGKey(1))
    device = jax.devices()[0]
    print(f"device: {device.platform} ({device.device_kind}), {jax.device_count()} device(s); "
          f"{cfg.task} / {cfg.method}, {cfg.env_steps} env steps, {cfg.blocks} policy updates per seed")
    rows = []
    for n in [int(s) for s in args.seeds.split(",")]:
        compile_s, run_s, ret = time_scan(cfg, n)
        sps = n * cfg.env_steps / run_s
        rows.append(dict(seeds=n, compile_s=compile_s, run_s=run_s, env_steps_per_s=sps,
                         per_seed_steps_per_s=sps / n, return_mean=float(ret.mean()), return_std=float(ret.std()),
                         closed_gap=float(closed_gap(ret.mean(), rand, best))))
        print(rows[-1], flush=True)
    base = rows[0]["per_seed_steps_per_s"] if rows[0]["seeds"] == 1 else None
    for r in rows:
        r["total_throughput_vs_1_seed"] = r["env_steps_per_s"] / base if base else float("nan")
    scan_block = rows[0]["run_s"] / cfg.blocks / rows[0]["seeds"]  # includes warm-up and evals: an upper bound
    loop_block = time_python_loop(cfg, args.loop_blocks)
    text = (format_table(rows) + f"\n\nrandom policy {rand:.4g}, best constant action {best:.4g}"
            f"\nper block (16 env steps + updates), one seed: scan {scan_block:.4f} s (whole run / blocks), "
            f"Python loop over the same jitted pieces {loop_block:.4f} s: "
            f"scan is {loop_block / scan_block:.2f}x faster")
    print(text)
    out = Path(args.out)
    atomic_write(out / "bench.md", f"device {device.platform} ({device.device_kind})\n\n" + text + "\n")
    keys = list(rows[0])
    atomic_write(out / "bench.csv", "\n".join([",".join(keys)] + [",".join(str(r[k]) for k in keys) for r in rows])
                 + "\n")


if __name__ == "__main__":
    main()
