"""Closed gap on the paper's schedule: each method's final return against a random policy and the
best constant action, which this script computes itself.

    python experiments/gap_closure.py --out runs/gap [--tasks cancer_treatment,timber_harvest]
        [--methods awm_transformer,true_bptt] [--seeds 4] [--total-steps 5000]
    python experiments/gap_closure.py --out /tmp/gap --quick     # about a minute: cancer_treatment, 2 seeds

Prints and writes (gap.md, gap.csv) a table: task, method, final eval return mean +- std over seeds,
random and best-constant returns, and the closed fraction (random = 0, best constant = 1).
"""

import dataclasses
from pathlib import Path
from typing import Annotated

import jax
import tyro

import awm_envs
from awm_jax.analysis.benchmark import QUICK_CONFIG
from awm_jax.analysis.options import quick_defaults
from awm_jax.analysis.references import best_constant_return, closed_gap, random_return
from awm_jax.config import Config
from awm_jax.io.results import atomic_write, format_table, summary
from awm_jax.loop.run import run_training

QUICK_HELP = ("smoke test (about a minute on a laptop CPU): cancer_treatment only unless --tasks is given, at most 2 "
              "seeds, and the benchmark experiments' quick schedule (20-step episodes, 400 env steps of which 200 "
              "warm-up, small batches; it replaces --total-steps and --warmup-steps); the references use the same "
              "episodes")


@dataclasses.dataclass(kw_only=True)
class Options:
    out: str
    """folder for each run ({task}-{method}/) and the tables gap.md and gap.csv"""
    tasks: str = "cancer_treatment,timber_harvest"
    """comma-separated task names"""
    methods: str = "awm_transformer,true_bptt"
    """comma-separated methods"""
    seeds: int = 4
    """seeds per (task, method), vmapped"""
    total_steps: int = 5000
    """env steps per run (paper: 5000)"""
    warmup_steps: int = 1500
    """env steps before any update (paper: 1500)"""
    quick: Annotated[bool, tyro.conf.arg(help=QUICK_HELP)] = False


def main(argv=None):
    args = tyro.cli(Options, args=argv, description=__doc__)
    schedule = dict(total_steps=args.total_steps, warmup_steps=args.warmup_steps)
    if args.quick:
        args = quick_defaults(args, tasks="cancer_treatment")
        args.seeds, schedule = min(args.seeds, 2), QUICK_CONFIG
    tasks, methods = args.tasks.split(","), args.methods.split(",")
    configs = [Config(task=t, method=m, seeds=args.seeds, **schedule) for t in tasks for m in methods]
    for c in configs:  # every config is checked before anything compiles
        c.validate(awm_envs.make(c.task, **c.task_options()))
    rows = []
    for t in tasks:
        task = awm_envs.make(t, **configs[0].task_options())  # the episodes the runs see
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
