"""The Myriad benchmark (the paper's section 5): every method on eight tasks, kept as data.

    python experiments/myriad_benchmark.py --out runs/bench --data docs/data/myriad_benchmark \\
        [--tasks ...] [--methods ...] [--seeds 4] [--resume]       # train what the data folder lacks
    python experiments/myriad_benchmark.py --data-only --data docs/data/myriad_benchmark   # report only
    python experiments/myriad_benchmark.py --out /tmp/b --quick     # minutes: 2 tasks, 3 methods

Trains one (task, method) group at a time, all its seeds in one vmapped program (run folder
OUT/runs/{task}-{method}/, checkpointed every --checkpoint-every chunks), and as each finishes copies
its config.json, metrics.json, metrics.csv and summary.txt into DATA/{task}-{method}/ (see
awm_jax/analysis/committed.py). Groups already in DATA are skipped; what remains is printed with an estimate
of its time. A killed run continues with the same command and --resume.

Then (and with --data-only, from DATA alone) writes to DATA: scores.csv (one row per task, method and
seed: total_steps, env_steps, final_return, score), aggregate.csv, improvement.csv, per_task.csv and
tables.md (awm_jax/analysis/report.py), aggregate.png (IQM and mean over tasks x seeds with 95% CIs, and the
probability that awm_transformer improves on each method) and curves_{task}.png (normalised return vs
env steps, mean +- std). Scores: random policy 0, best reference 1, with the references computed once
per task into DATA/references.json (awm_jax/analysis/benchmark.py). Missing groups are listed in tables.md.
"""

import dataclasses
from pathlib import Path
from typing import Annotated

import tyro

from awm_jax.analysis.benchmark import BENCHMARK_TASKS, plot_aggregate
from awm_jax.analysis.committed import Setting, committed_groups
from awm_jax.analysis.report import plot_curves, write_report
from awm_jax.core.config import METHODS
from awm_jax.runner.sweep import parse_list
from pipeline import REFERENCE, BenchmarkOptions, base_config, data_arg, quick_defaults, report_scope, run_experiment

QUICK_TASKS, QUICK_METHODS = "cancer_treatment,timber_harvest", "awm_transformer,markov_mlp,true_bptt"
DATA = "docs/data/myriad_benchmark"


@dataclasses.dataclass(kw_only=True)
class Options(BenchmarkOptions):
    data: Annotated[str | None, data_arg(DATA)] = None
    tasks: str = ",".join(BENCHMARK_TASKS)
    methods: str = ",".join(METHODS)
    seeds: int = 4


def main(argv=None):
    args = tyro.cli(Options, args=argv, description=__doc__)
    if args.quick:
        args = quick_defaults(args, tasks=QUICK_TASKS, methods=QUICK_METHODS)
        args.seeds = min(args.seeds, 2)
    tasks, methods = parse_list(args.tasks), parse_list(args.methods)
    settings = [Setting(base_config(args))]
    data = run_experiment(args, settings, tasks, methods)
    report(data, settings, *report_scope(args, tasks, methods, BENCHMARK_TASKS, METHODS), reps=args.reps)


def report(data: Path, settings, tasks, methods, reps: int = 2000) -> dict:
    """scores.csv, the tables and the figures from the committed groups in `data`."""
    res = write_report(data, settings, tasks, methods, "The Myriad benchmark",
                       f"python experiments/myriad_benchmark.py --data-only --data {data}", reference=REFERENCE,
                       reps=reps)
    agg = {r["method"]: r for r in res["aggregate"]}
    if agg:
        n = max(r["tasks"] for r in agg.values())
        seeds = "/".join(map(str, sorted({r["seeds"] for r in agg.values()})))
        plot_aggregate(agg, data / "aggregate.png",
                       f"Myriad benchmark: up to {n} of {len(tasks)} tasks x {seeds} seeds",
                       improvement={r["method"]: r for r in res["improvement"]}, reference=REFERENCE)
    warmup = {cfg.warmup_steps for _, _, cfg in committed_groups(data)}  # the groups share one schedule
    plot_curves(res["curves"], "", tasks, methods, data, warmup_steps=warmup.pop() if len(warmup) == 1 else None)
    print((data / "tables.md").read_text())
    return res


if __name__ == "__main__":
    main()
