"""Robustness (paper section 5, extras): extra N(0, 1) distractor dimensions in the observation and
Gaussian state noise, one factor at a time, normalised final return per setting, kept as data like the
benchmark (experiments/myriad_benchmark.py).

    python experiments/robustness.py --out runs/robust --data docs/data/robustness \\
        [--distractors 0,4,16] [--noise 0,0.01,0.05] [--methods ...] [--seeds 3] [--resume]
    python experiments/robustness.py --data-only --data docs/data/robustness
    python experiments/robustness.py --out /tmp/r --quick

Settings: every distractor count without noise, and every noise level without distractors (the
setting with neither is run once). DATA/distractors{d}-noise{s}/ holds a setting's references.json
(distractors leave the references unchanged; state noise changes them) and its committed groups; run
folders are OUT/runs/{setting}/{task}-{method}/. Writes to DATA: scores.csv (one row per setting, task,
method and seed, with distractor_dims and state_noise columns), aggregate.csv, improvement.csv,
per_task.csv, change.csv (each method's score change from the setting without distractors and noise, and
awm_transformer's change minus the method's, with CIs), tables.md and robustness.png (IQM with 95% CIs
per setting and method). The report covers every default setting the data folder holds besides those
asked for.
"""

import dataclasses
from typing import Annotated

import numpy as np
import tyro

from awm_jax.analysis.committed import Setting
from awm_jax.analysis.report import write_report
from awm_jax.runner.plots import new_figure, save_figure
from awm_jax.runner.sweep import parse_list
from pipeline import (
    REFERENCE,
    BenchmarkOptions,
    base_config,
    data_arg,
    quick_defaults,
    report_scope,
    report_settings,
    run_experiment,
)

TASKS = "cancer_treatment"
METHODS_ = "awm_transformer,hwm_transformer,markov_mlp,true_bptt"
DATA = "docs/data/robustness"
DISTRACTORS, NOISE = "0,4,16", "0,0.01,0.05"


def settings_of(base, distractors, noise) -> list[Setting]:
    """(d, 0) for every distractor count d, then (0, s) for every noise level s not yet there."""
    pairs = list(dict.fromkeys([(d, 0.0) for d in distractors] + [(0, float(s)) for s in noise]))
    return [Setting(dataclasses.replace(base, distractor_dims=d, state_noise=s), folder=f"distractors{d}-noise{s:g}",
                    columns=(("distractor_dims", d), ("state_noise", s))) for d, s in pairs]


@dataclasses.dataclass(kw_only=True)
class Options(BenchmarkOptions):
    data: Annotated[str | None, data_arg(DATA)] = None
    tasks: str = TASKS
    methods: str = METHODS_
    seeds: int = 3
    distractors: str = DISTRACTORS
    """distractor dimensions to try (without noise)"""
    noise: str = NOISE
    """state-noise standard deviations to try (without distractors)"""


def main(argv=None):
    args = tyro.cli(Options, args=argv, description=__doc__)
    if args.quick:
        args = quick_defaults(args, methods="awm_transformer,true_bptt")
        args.distractors, args.noise, args.seeds = "0,4", "0.05", min(args.seeds, 2)
    tasks, methods = parse_list(args.tasks), parse_list(args.methods)
    base = base_config(args)
    settings = settings_of(base, parse_list(args.distractors, int), parse_list(args.noise, float))
    data = run_experiment(args, settings, tasks, methods)
    tasks, methods = report_scope(args, tasks, methods, parse_list(TASKS), parse_list(METHODS_))
    settings = report_settings(args, data, settings,
                               settings_of(base, parse_list(DISTRACTORS, int), parse_list(NOISE, float)))
    d, s = zip(*(tuple(v for _, v in x.columns) for x in settings))
    res = write_report(data, settings, tasks, methods, "Robustness",
                       f"python experiments/robustness.py --data-only --data {data} "
                       f"--distractors {_joined(x for x, y in zip(d, s) if y == 0)} "
                       f"--noise {_joined(y for x, y in zip(d, s) if x == 0)}", reference=REFERENCE, reps=args.reps,
                       baseline=next((x for x in settings if not any(v for _, v in x.columns)), None))
    plot_robustness(res["aggregate"], settings, methods, data / "robustness.png")
    print((data / "tables.md").read_text())


def _joined(values) -> str:
    return ",".join(dict.fromkeys(f"{v:g}" for v in values))


def plot_robustness(agg: list[dict], settings, methods, path) -> None:
    """Bars of the IQM (95% CI) per setting, one colour per method; absent groups leave a gap."""
    fig, ax = new_figure(figsize=(7, 4))
    width = 0.8 / len(methods)
    for i, m in enumerate(methods):
        cell = {(r["distractor_dims"], r["state_noise"]): r for r in agg if r["method"] == m}
        r = [cell.get(tuple(v for _, v in s.columns)) for s in settings]
        v = np.array([q["iqm"] if q else np.nan for q in r])
        err = [[q["iqm"] - q["iqm_lo"] if q else 0 for q in r], [q["iqm_hi"] - q["iqm"] if q else 0 for q in r]]
        ax.bar(np.arange(len(settings)) + i * width, np.nan_to_num(v), width, yerr=err, label=m, capsize=3)
    labels = [f"d={dict(s.columns)['distractor_dims']}, noise={dict(s.columns)['state_noise']:g}" for s in settings]
    ax.set_xticks(np.arange(len(settings)) + 0.4 - width / 2, labels, rotation=20)
    ax.axhline(1, color="k", lw=0.5, ls="--")
    ax.set_ylabel("normalised final return (IQM, 95% CI)")
    ax.legend(fontsize=7)
    save_figure(fig, path)


if __name__ == "__main__":
    main()
