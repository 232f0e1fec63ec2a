"""The Myriad benchmark (paper section 5, experiment 3): every method on eight tasks, normalised
scores (random policy = 0, best reference = 1; see awm_jax/benchmark.py), per-task curves and an
aggregate with interquartile mean and bootstrap confidence intervals (rliable).

    python experiments/myriad_benchmark.py --out runs/benchmark [--seeds 4] [--methods ...] [--resume]
    python experiments/myriad_benchmark.py --out /tmp/b --quick      # minutes: 2 tasks, 3 methods
    python experiments/myriad_benchmark.py --out runs/all --combine runs/bpo,runs/baselines   # report together

Writes: references.json (per-task random, best constant, trajectory-optimised and best returns),
runs/ (one `awm-jax sweep` folder: per (task, method) run folders, summary, per-task raw curves),
scores.csv/.md (per task and method: mean +- std of the normalised final return), aggregate.csv/.md
and aggregate.png (IQM and mean over tasks x seeds with 95% CIs), curves_{task}.png (normalised
return vs env steps), config.json (the exact settings).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from awm_jax.benchmark import (
    BENCHMARK_TASKS,
    add_arguments,
    aggregate,
    base_config,
    collect,
    combine,
    plot_aggregate,
    run_benchmark,
    write_rows,
)
from awm_jax.config import METHODS
from awm_jax.results import atomic_write, new_figure, save_figure
from awm_jax.sweep import parse_list

QUICK_TASKS, QUICK_METHODS = "cancer_treatment,timber_harvest", "awm_transformer,markov_mlp,true_bptt"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(ap, ",".join(BENCHMARK_TASKS), ",".join(METHODS), seeds=4)
    ap.add_argument("--combine", default="", help="comma-separated finished benchmark folders (same tasks, other "
                                                  "methods) to report together in --out; trains nothing")
    args = ap.parse_args(argv)
    if args.combine:
        res = combine([collect(d) for d in parse_list(args.combine)])
        atomic_write(Path(args.out) / "config.json", json.dumps(dict(args=vars(args), base=res["base"].to_dict()),
                                                                indent=2))
        return report(res, res["tasks"], res["methods"], Path(args.out))
    if args.quick:
        args.tasks = QUICK_TASKS if args.tasks == ",".join(BENCHMARK_TASKS) else args.tasks
        args.methods = QUICK_METHODS if args.methods == ",".join(METHODS) else args.methods
        args.seeds = min(args.seeds, 2)
    tasks, methods = parse_list(args.tasks), parse_list(args.methods)
    base = base_config(args)
    out = Path(args.out)
    atomic_write(out / "config.json", json.dumps(dict(args=vars(args), base=base.to_dict()), indent=2))
    res = run_benchmark(base, tasks, methods, out, resume=args.resume)
    report(res, tasks, methods, out)


def report(res: dict, tasks, methods, out: Path) -> None:
    scores = res["scores"]
    rows = [dict(task=t, method=m, return_mean=float(res["returns"][m][:, j].mean()),
                 return_std=float(res["returns"][m][:, j].std()), score_mean=float(scores[m][:, j].mean()),
                 score_std=float(scores[m][:, j].std()))
            for j, t in enumerate(tasks) for m in methods]
    print(write_rows(out, "scores", rows))
    agg = aggregate(scores)
    rows = [dict(method=m, **agg[m]) for m in sorted(agg, key=lambda k: -agg[k]["iqm"])]
    print(write_rows(out, "aggregate", rows))
    plot_aggregate(agg, out / "aggregate.png", f"{len(tasks)} Myriad tasks x {scores[methods[0]].shape[0]} seeds")
    for t in tasks:
        fig, ax = new_figure()
        for m in methods:
            steps, norm = res["curves"][(t, m)]
            mu, sd = norm.mean(0), norm.std(0)
            ax.plot(steps, mu, label=m)
            ax.fill_between(steps, mu - sd, mu + sd, alpha=0.15)
        ax.axhline(0, color="k", lw=0.5)
        ax.axhline(1, color="k", lw=0.5, ls="--")
        ax.set_xlabel("env steps")
        ax.set_ylabel("normalised eval return (mean +- std)")
        ax.set_title(t)
        ax.legend(fontsize=7)
        save_figure(fig, out / f"curves_{t}.png")


if __name__ == "__main__":
    main()
