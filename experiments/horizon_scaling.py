"""Horizon scaling (paper claim: transformer AWMs degrade least as the horizon grows): the benchmark's
methods at H in {100, 200, 400, 800} with dt fixed at T/100 (so a longer horizon is a longer problem,
not a finer one), final normalised return vs H. References (random, best) are recomputed per H.

    python experiments/horizon_scaling.py --out runs/horizon [--horizons 100,200,400,800] [--tasks ...]
    python experiments/horizon_scaling.py --out /tmp/h --quick      # minutes: H in {10, 20, 40}

Writes: H{h}/ (a benchmark folder per horizon: references, runs, scores), scaling.csv/.md (method,
H, IQM and mean normalised score with 95% CIs over tasks x seeds), scaling.png, config.json.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from awm_jax.benchmark import add_arguments, base_config, run_settings, write_rows
from awm_jax.results import new_figure, save_figure
from awm_jax.sweep import parse_list

TASKS = "cancer_treatment,timber_harvest,mould_fungicide"
METHODS_ = "awm_transformer,awm_rnn,hwm_transformer,markov_mlp,true_bptt,sac"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(ap, TASKS, METHODS_, seeds=4)
    ap.add_argument("--horizons", default="100,200,400,800")
    args = ap.parse_args(argv)
    horizons = parse_list(args.horizons, int)
    if args.quick:
        horizons = horizons if args.horizons != "100,200,400,800" else (10, 20, 40)
        args.tasks = "cancer_treatment" if args.tasks == TASKS else args.tasks
        args.methods = "awm_transformer,true_bptt" if args.methods == METHODS_ else args.methods
        args.seeds = min(args.seeds, 2)
    tasks, methods = parse_list(args.tasks), parse_list(args.methods)
    base = base_config(args)
    # the warm-up must hold at least one whole episode
    bases = {H: dataclasses.replace(base, horizon=H, fixed_dt=True, warmup_steps=max(base.warmup_steps, H))
             for H in horizons}
    out = Path(args.out)
    rows = run_settings(bases, tasks, methods, out, "H", args=vars(args), resume=args.resume)
    print(write_rows(out, "scaling", rows))
    fig, ax = new_figure()
    for m in methods:
        r = [x for x in rows if x["method"] == m]
        Hs = [x["H"] for x in r]
        ax.plot(Hs, [x["iqm"] for x in r], marker="o", label=m)
        ax.fill_between(Hs, [x["iqm_lo"] for x in r], [x["iqm_hi"] for x in r], alpha=0.15)
    ax.set_xscale("log")
    ax.set_xticks(list(horizons), [str(h) for h in horizons])
    ax.axhline(0, color="k", lw=0.5)
    ax.axhline(1, color="k", lw=0.5, ls="--")
    ax.set_xlabel("horizon H (fixed dt)")
    ax.set_ylabel("normalised final return (IQM, 95% CI)")
    ax.legend(fontsize=7)
    save_figure(fig, out / "scaling.png")


if __name__ == "__main__":
    main()
