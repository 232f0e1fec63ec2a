"""Robustness (paper section 5, extras): extra N(0, 1) distractor dimensions in the observation and
Gaussian state noise, the transformer AWM against the strongest baseline (default: true_bptt, the
best non-AWM method of our benchmark run; pass --methods to choose), normalised final return per
setting.

    python experiments/robustness.py --out runs/robust [--distractors 0,4,16] [--noise 0,0.01,0.05]
    python experiments/robustness.py --out /tmp/r --quick

Writes: {setting}/ (a benchmark folder per setting), robustness.csv/.md (method, setting, IQM and mean
normalised score with 95% CIs), robustness.png, config.json. References are computed per setting
(distractors leave them unchanged; state noise changes them).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from awm_jax.benchmark import add_arguments, base_config, run_settings, write_rows
from awm_jax.results import new_figure, save_figure
from awm_jax.sweep import parse_list

TASKS = "cancer_treatment,timber_harvest,mould_fungicide"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(ap, TASKS, "awm_transformer,true_bptt", seeds=4)
    ap.add_argument("--distractors", default="0,4,16", help="distractor dimensions to try")
    ap.add_argument("--noise", default="0.01,0.05", help="state-noise standard deviations to try (0 is the first "
                                                          "distractor setting)")
    args = ap.parse_args(argv)
    if args.quick:
        args.tasks = "cancer_treatment" if args.tasks == TASKS else args.tasks
        args.distractors, args.noise, args.seeds = "0,4", "0.05", min(args.seeds, 2)
    tasks, methods = parse_list(args.tasks), parse_list(args.methods)
    base = base_config(args)
    settings = {f"distractors={d}": dataclasses.replace(base, distractor_dims=d)
                for d in parse_list(args.distractors, int)}
    settings |= {f"noise={s:g}": dataclasses.replace(base, state_noise=s) for s in parse_list(args.noise, float)}
    out = Path(args.out)
    rows = run_settings(settings, tasks, methods, out, "setting", args=vars(args), resume=args.resume)
    print(write_rows(out, "robustness", rows))
    fig, ax = new_figure(figsize=(7, 4))
    names = list(settings)
    width = 0.8 / len(methods)
    for i, m in enumerate(methods):
        r = [next(x for x in rows if x["method"] == m and x["setting"] == n) for n in names]
        x = [j + i * width for j in range(len(names))]
        v = [q["iqm"] for q in r]
        ax.bar(x, v, width, yerr=[[q["iqm"] - q["iqm_lo"] for q in r], [q["iqm_hi"] - q["iqm"] for q in r]],
               label=m, capsize=3)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(names))], names, rotation=20)
    ax.axhline(1, color="k", lw=0.5, ls="--")
    ax.set_ylabel("normalised final return (IQM, 95% CI)")
    ax.legend(fontsize=7)
    save_figure(fig, out / "robustness.png")


if __name__ == "__main__":
    main()
