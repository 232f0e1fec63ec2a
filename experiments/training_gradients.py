"""The policy gradients the BPO methods followed while they trained, read from committed data. Every BPO
group logs, averaged over each evaluation period's policy updates (one value per period and seed):

- `policy/grad_norm`, the norm before the global-norm clip. Per (horizon,) task and method: its median,
  its largest finite value and the share not finite. Corollaries 1 and 2 in the training runs themselves:
  through a Markov model the norm should grow fastest with H and overflow; through an AWM it should stay
  bounded.
- `policy/grad_cosine`, the cosine between the model's policy gradient and the true simulator's on the
  same rollouts and parameters: the paper's gradient-quality measure, logged at every policy update as
  the paper's code does. Per group its mean, and per (horizon and) method the mean over tasks x seeds
  (each seed's mean over its periods) with rliable's stratified-bootstrap 95% CI. A cosine that is not
  finite (the model's gradient overflowed) counts as 0: the clip or the skipped update leaves no step
  along that gradient.

    python experiments/training_gradients.py --data docs/data/horizon_scaling

Reads every committed group under DATA (DATA/{task}-{method}/ or DATA/{setting}/{task}-{method}/; seed
parts and groups without the metrics are skipped), writes DATA/training_gradients.csv (one row per
group) and DATA/training_gradients_cosine.csv (one row per horizon and method) and prints both tables.
"""

import argparse
from pathlib import Path

import numpy as np

from awm_jax.analysis.benchmark import aggregate
from awm_jax.io.results import read_run_files, write_csv  # a horizon None (the task's default) writes as ''
from awm_jax.io.run_folder import group_name, is_complete

NORM, COSINE = "policy/grad_norm", "policy/grad_cosine"
COLUMNS = ("horizon", "task", "method", "values", "median", "max_finite", "nonfinite_share", "cosine_mean",
           "cosine_nonfinite_share")
COSINE_COLUMNS = ("horizon", "method", "tasks", "seeds", "cosine_mean", "cosine_lo", "cosine_hi")


def seed_cosines(metrics) -> np.ndarray:
    """Each seed's mean logged cosine over its periods, a non-finite value counted as 0: [seeds]."""
    c = np.asarray(metrics[COSINE], float)
    return np.where(np.isfinite(c), c, 0.0).mean(axis=1)


def groups(data):
    """(Config, metrics) of every committed group under `data` that logged NORM, sorted by horizon, task,
    method (a task's default horizon, None, first)."""
    found = []
    for folder in sorted(p for p in Path(data).rglob("*-*") if p.is_dir() and "parts" not in p.parts):
        if not is_complete(folder):
            continue
        cfg, metrics = read_run_files(folder)
        if NORM in metrics and folder.name == group_name(cfg.task, cfg.method):  # not a copy moved aside
            found.append((cfg, metrics))
    return sorted(found, key=lambda x: (x[0].horizon or 0, x[0].task, x[0].method))


def group_rows(found) -> list[dict]:
    """One row per group: the norm's median, largest finite value and share not finite; the cosine's mean
    (non-finite as 0) and share not finite (NaN where the group did not log it)."""
    rows = []
    for cfg, metrics in found:
        g = np.asarray(metrics[NORM], float).ravel()
        finite = g[np.isfinite(g)]
        c = np.asarray(metrics[COSINE], float) if COSINE in metrics else None
        rows.append(dict(horizon=cfg.horizon, task=cfg.task, method=cfg.method, values=g.size,
                         median=float(np.median(finite)) if finite.size else float("nan"),
                         max_finite=float(finite.max()) if finite.size else float("nan"),
                         nonfinite_share=1 - finite.size / g.size,
                         cosine_mean=float(seed_cosines(metrics).mean()) if c is not None else float("nan"),
                         cosine_nonfinite_share=float(np.mean(~np.isfinite(c))) if c is not None else float("nan")))
    return rows


def cosine_rows(found, reps: int = 2000) -> list[dict]:
    """Per horizon and method: the mean over tasks x seeds of the seeds' mean cosines, with rliable's
    stratified-bootstrap 95% CI (seeds resampled within each task). A method's tasks must hold the same
    number of seeds; the smallest is used."""
    cells: dict = {}
    for cfg, metrics in found:
        if COSINE in metrics:
            cells.setdefault((cfg.horizon, cfg.method), []).append(seed_cosines(metrics))
    rows = []
    for (horizon, method), per_task in cells.items():
        n = min(len(s) for s in per_task)
        agg = aggregate({method: np.stack([s[:n] for s in per_task], axis=1)}, reps=reps)[method]
        rows.append(dict(horizon=horizon, method=method, tasks=len(per_task), seeds=n, cosine_mean=agg["mean"],
                         cosine_lo=agg["mean_lo"], cosine_hi=agg["mean_hi"]))
    return sorted(rows, key=lambda r: (r["horizon"] or 0, -r["cosine_mean"]))


def markdown(rows, cosines) -> str:
    h = lambda r: r["horizon"] or "task default"
    cos = lambda v: "-" if np.isnan(v) else f"{v:.2f}"  # "-": not logged (true_bptt: no model)
    lines = ["| H | task | method | median norm | largest finite | not finite | mean cosine |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {h(r)} | {r['task']} | {r['method']} | {r['median']:.3g} | {r['max_finite']:.3g} | "
              f"{r['nonfinite_share']:.1%} | {cos(r['cosine_mean'])} |" for r in rows]
    lines += ["", "Mean cosine with the true simulator's policy gradient over tasks x seeds (95% CI):", "",
              "| H | method | tasks | seeds | mean cosine (95% CI) |", "|---|---|---|---|---|"]
    lines += [f"| {h(r)} | {r['method']} | {r['tasks']} | {r['seeds']} | {r['cosine_mean']:.2f} "
              f"({r['cosine_lo']:.2f} to {r['cosine_hi']:.2f}) |" for r in cosines]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="a data folder of committed groups (e.g. docs/data/horizon_scaling)")
    ap.add_argument("--reps", type=int, default=2000, help="bootstrap resamples for the cosine's CI")
    args = ap.parse_args(argv)
    if not Path(args.data).is_dir():
        ap.error(f"--data {args.data}: no such folder")
    found = groups(args.data)
    if not found:
        ap.error(f"--data {args.data}: no committed group logged {NORM}")
    rows, cosines = group_rows(found), cosine_rows(found, args.reps)
    write_csv(Path(args.data) / "training_gradients.csv", rows, COLUMNS)
    write_csv(Path(args.data) / "training_gradients_cosine.csv", cosines, COSINE_COLUMNS)
    print(markdown(rows, cosines))
    return rows, cosines


if __name__ == "__main__":
    main()
