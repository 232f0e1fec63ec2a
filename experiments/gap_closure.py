"""Closed gap on the paper's schedule: each method's final return against a random policy and the
best constant action, which this script computes itself.

    python experiments/gap_closure.py --out runs/gap [--tasks cancer_treatment,timber_harvest]
        [--methods awm_transformer,true_bptt] [--seeds 4] [--total-steps 5000]

Prints and writes (gap.md, gap.csv) a table: task, method, final eval return mean +- std over seeds,
random and best-constant returns, and the closed fraction (random = 0, best constant = 1).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax

import awm_envs
from awm_jax.analysis.references import best_constant_return, closed_gap, random_return
from awm_jax.config import Config
from awm_jax.io.results import atomic_write, format_table, summary
from awm_jax.loop.run import run_training


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--tasks", default="cancer_treatment,timber_harvest")
    ap.add_argument("--methods", default="awm_transformer,true_bptt")
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--total-steps", type=int, default=5000)
    ap.add_argument("--warmup-steps", type=int, default=1500)
    args = ap.parse_args(argv)
    tasks, methods = args.tasks.split(","), args.methods.split(",")
    configs = [Config(task=t, method=m, seeds=args.seeds, total_steps=args.total_steps,
                      warmup_steps=args.warmup_steps) for t in tasks for m in methods]
    for c in configs:  # every config is checked before anything compiles
        c.validate(awm_envs.make(c.task, **c.task_options()))
    rows = []
    for t in tasks:
        task = awm_envs.make(t)
        rand = random_return(task, jax.random.PRNGKey(1))
        best, _ = best_constant_return(task, jax.random.PRNGKey(1))
        for c in (c for c in configs if c.task == t):
            _, metrics = run_training(c, out=Path(args.out) / f"{t}-{c.method}")
            s = summary(metrics)
            rows.append(dict(task=t, method=c.method, mean=s["mean"], std=s["std"], random=rand, best_constant=best,
                             closed_gap=float(closed_gap(s["mean"], rand, best))))
    text = format_table(rows)
    print(text)
    atomic_write(Path(args.out) / "gap.md", text + "\n")
    keys = list(rows[0])
    atomic_write(Path(args.out) / "gap.csv", "\n".join([",".join(keys)] + [",".join(str(r[k]) for k in keys)
                                                                          for r in rows]) + "\n")


if __name__ == "__main__":
    main()
