"""Where a world model can guide the policy: its open-loop error on the states the policy visits,
against its error on the warm-up data, over training, beside the policy-gradient cosine.

    python experiments/model_error.py --data docs/data/myriad_benchmark --out docs/data/model_error
    python experiments/model_error.py --out /tmp/me --quick        # trains a tiny run first (~2 min)

Every BPO run logs, at each evaluation (`BPOLearner._evaluation`): model/error_eval, the model's open-loop
error (0.5 x mean squared error of s^_1..s^_H predicted from s_0 and the actions, in the run's
z-scores) on that evaluation episode, i.e. on the trajectory the current deterministic policy actually
visits; model/error_warmup, the same on the first warm-up episodes (the data the normaliser was fitted
on); eval/max_abs_z, the largest |z-score| the evaluation episode's states reach; and, at every policy
update, policy/grad_cosine, the cosine between the model's and the true simulator's policy gradients.
This script reads those from finished run folders named {task}-{method} under --data (the benchmark's
committed groups) and writes OUT/model_error.csv and .md (per task and method: final return, both
errors and their ratio, cosine and max |z| over the first and the last 10 evaluations, mean over
seeds; the errors as geometric means) and OUT/model_error.png (per task: errors, cosine and max |z|
against env steps).
"""

import dataclasses
from pathlib import Path

import numpy as np
import tyro

from awm_jax.runner.plots import new_figure, save_figure
from awm_jax.runner.results import format_table, markdown_table, read_run_files, write_csv
from awm_jax.runner.run_folder import atomic_write
from pipeline import tiny_runs

TASKS = "cancer_treatment,timber_harvest"
METHODS = "awm_transformer,hwm_transformer,awm_lstm,markov_mlp"
WINDOW = 10  # evaluations averaged at the start and at the end


@dataclasses.dataclass(kw_only=True)
class Options:
    data: str = "docs/data/myriad_benchmark"
    """folder of {task}-{method} run folders"""
    out: str
    """folder for model_error.csv, .md and .png"""
    tasks: str = TASKS
    """comma-separated task names"""
    methods: str = METHODS
    """comma-separated methods"""
    window: int = WINDOW
    """evaluations averaged at the start and the end"""
    quick: bool = False
    """train tiny runs into OUT/quick first and report on them"""


def window_rows(runs: dict, window: int = WINDOW) -> list[dict]:
    """One row per (task, method) of `runs` {(task, method): metrics {name: [seeds, periods]}}."""
    rows = []
    for (task, method), m in runs.items():
        first, last = slice(0, window), slice(-window, None)
        geo = lambda x: float(np.exp(np.mean(np.log(np.maximum(x, 1e-30)))))
        row = dict(task=task, method=method, seeds=m["eval/return"].shape[0],
                   final_return=float(m["eval/return"][:, -1].mean()),
                   final_return_std=float(m["eval/return"][:, -1].std()))
        for name, part in (("first", first), ("last", last)):
            e, w = m["model/error_eval"][:, part], m["model/error_warmup"][:, part]
            row[f"error_eval_{name}"] = geo(e)
            row[f"error_warmup_{name}"] = geo(w)
            row[f"ratio_{name}"] = geo(e / np.maximum(w, 1e-30))
            row[f"cosine_{name}"] = float(np.nanmean(m["policy/grad_cosine"][:, part]))
            row[f"max_abs_z_{name}"] = float(m["eval/max_abs_z"][:, part].mean())
        rows.append(row)
    return rows


def compact(rows: list[dict]) -> list[dict]:
    """The table docs/results/model_error.md shows: one row per (task, method), first -> last window."""
    g = lambda v: f"{v:.2g}"
    return [{"task": r["task"], "method": r["method"],
             "final return": f"{r['final_return']:.4g} +- {r['final_return_std']:.2g}",
             "error on the policy's states": f"{g(r['error_eval_first'])} -> {g(r['error_eval_last'])}",
             "error on warm-up data": f"{g(r['error_warmup_first'])} -> {g(r['error_warmup_last'])}",
             "ratio": f"{g(r['ratio_first'])} -> {g(r['ratio_last'])}",
             "gradient cosine": f"{r['cosine_first']:.2f} -> {r['cosine_last']:.2f}",
             "max abs z": f"{r['max_abs_z_first']:.3g} -> {r['max_abs_z_last']:.3g}"} for r in rows]


def read_runs(data, tasks, methods) -> tuple[dict, list[str]]:
    """({(task, method): metrics} of the groups present in `data` that log the model error, [missing])."""
    runs, missing = {}, []
    for t in tasks:
        for mth in methods:
            folder = Path(data) / f"{t}-{mth}"
            if not (folder / "metrics.json").exists():
                missing.append(f"{t}-{mth}")
                continue
            _, m = read_run_files(folder)
            if "model/error_eval" not in m:
                missing.append(f"{t}-{mth} (trained before the model error was logged)")
                continue
            runs[(t, mth)] = m
    return runs, missing


def plot(runs: dict, tasks, path) -> None:
    import matplotlib

    colors = matplotlib.colormaps["tab10"]
    methods = sorted({m for _, m in runs})
    fig, _ = new_figure(figsize=(13, 3.6 * len(tasks)))
    fig.clear()
    axes = fig.subplots(len(tasks), 3, squeeze=False)
    for i, t in enumerate(tasks):
        for j, mth in enumerate(methods):
            if (t, mth) not in runs:
                continue
            m, c = runs[(t, mth)], colors(j)
            steps = m["eval/env_steps"][0]
            axes[i, 0].plot(steps, np.exp(np.log(m["model/error_eval"]).mean(0)), color=c,
                            label=f"{mth}: policy's states")
            axes[i, 0].plot(steps, np.exp(np.log(m["model/error_warmup"]).mean(0)), color=c, ls="--",
                            label=f"{mth}: warm-up data")
            axes[i, 1].plot(steps, np.nanmean(m["policy/grad_cosine"], 0), color=c, label=mth)
            axes[i, 2].plot(steps, m["eval/max_abs_z"].mean(0), color=c, label=mth)
        axes[i, 0].set_yscale("log")
        for ax, what in zip(axes[i], ("model open-loop error (z-scores, geo. mean)", "policy-gradient cosine",
                                      "max |z| of the policy's states")):
            ax.set_title(f"{t}: {what}", fontsize=9)
            ax.set_xlabel("env steps")
        axes[i, 0].legend(fontsize=6)
        axes[i, 1].legend(fontsize=7)
    save_figure(fig, path)


def main(argv=None):
    args = tyro.cli(Options, args=argv, description=__doc__)
    out = Path(args.out)
    tasks, methods = args.tasks.split(","), args.methods.split(",")
    if args.quick:
        methods, tasks, args.window = ["awm_transformer", "markov_mlp"], ["cancer_treatment"], 3
        args.data = tiny_runs(out / "quick", methods, total_steps=1500)
    runs, missing = read_runs(args.data, tasks, methods)
    if not runs:
        raise SystemExit(f"model_error.py: no run folder under {args.data} logs the model error "
                         f"(missing: {', '.join(missing)})")
    rows = window_rows(runs, args.window)
    write_csv(out / "model_error.csv", rows)
    note = f"\n\nMissing: {', '.join(missing)}\n" if missing else "\n"
    atomic_write(out / "model_error.md", markdown_table(compact(rows)) + note)
    plot(runs, [t for t in tasks if any(k[0] == t for k in runs)], out / "model_error.png")
    print(format_table(rows) + note + f"wrote {out}/model_error.csv, .md and .png")


if __name__ == "__main__":
    main()
