"""The policy gradients the BPO methods followed while they trained, read from committed data. Every BPO
group logs, averaged over each evaluation period's policy updates (one value per period and seed):

- `policy/grad_norm`, the norm before the global-norm clip. Per (setting,) task and method: its median,
  its largest finite value and the share not finite. Corollaries 1 and 2 in the training runs themselves:
  through a Markov model the norm should grow fastest with H and overflow; through an AWM it should stay
  bounded.
- `policy/grad_cosine`, the cosine between the model's policy gradient and the true simulator's on the
  same rollouts and parameters: the paper's gradient-quality measure, logged at every policy update as
  the paper's code does. Per group its mean, and per (setting and) method the mean over tasks x seeds
  (each seed's mean over its periods) with rliable's stratified-bootstrap 95% CI. A cosine that is not
  finite (the model's gradient overflowed) counts as 0: the clip or the skipped update leaves no step
  along that gradient.
- Whether the returns follow the alignment: per (setting and) task, Spearman's rank correlation over
  every seed of the BPO world models between the seed's mean cosine and its final normalised score (the
  report's score, from the setting's references.json), with a 95% CI from a bootstrap that resamples
  seeds within each method; per setting also the mean over tasks of that correlation. markov_svg is left
  out: its gradient is of another objective (a one-step model and a critic), so its cosine measures how
  far that objective is from the return's, not how closely a model follows the simulator.

    python experiments/training_gradients.py --data docs/data/horizon_scaling

Reads every committed group under DATA (DATA/{task}-{method}/ or DATA/{setting}/{task}-{method}/; seed
parts and groups without the metrics are skipped), writes DATA/training_gradients.csv (one row per
group), DATA/training_gradients_cosine.csv (one row per setting and method) and, where a setting's
folder holds references.json, DATA/training_gradients_returns.csv (one row per setting and task, and per
setting their mean, task "mean"), and prints the tables.
"""

import argparse
from pathlib import Path

import numpy as np
from scipy.stats import rankdata

from awm_jax.analysis.benchmark import aggregate, normalized_score
from awm_jax.analysis.committed import committed_groups
from awm_jax.runner.results import read_run_files, write_csv  # a horizon None (the task's default) writes as ''
from awm_jax.runner.run_folder import read_json

NORM, COSINE = "policy/grad_norm", "policy/grad_cosine"
COLUMNS = ("setting", "horizon", "task", "method", "values", "median", "max_finite", "nonfinite_share", "cosine_mean",
           "cosine_nonfinite_share")
COSINE_COLUMNS = ("setting", "horizon", "method", "tasks", "seeds", "cosine_mean", "cosine_lo", "cosine_hi")
RETURN_COLUMNS = ("setting", "horizon", "task", "methods", "seeds", "spearman", "spearman_lo", "spearman_hi")
NOT_ALIGNMENT = ("markov_svg",)  # its cosine compares another objective's gradient with the return's


def seed_cosines(metrics) -> np.ndarray:
    """Each seed's mean logged cosine over its periods, a non-finite value counted as 0: [seeds]."""
    c = np.asarray(metrics[COSINE], float)
    return np.where(np.isfinite(c), c, 0.0).mean(axis=1)


def groups(data):
    """(setting, folder, Config, metrics) of the committed groups under `data` (committed.committed_groups)
    that logged NORM, sorted by horizon, setting, task, method (a task's default horizon, None, first)."""
    found = []
    for setting, folder, cfg in committed_groups(data):
        metrics = read_run_files(folder)[1]
        if NORM in metrics:
            found.append((setting, folder, cfg, metrics))
    return sorted(found, key=lambda x: (x[2].horizon or 0, x[0], x[2].task, x[2].method))


def group_rows(found) -> list[dict]:
    """One row per group: the norm's median, largest finite value and share not finite; the cosine's mean
    (non-finite as 0) and share not finite (NaN where the group did not log it)."""
    rows = []
    for setting, _, cfg, metrics in found:
        g = np.asarray(metrics[NORM], float).ravel()
        finite = g[np.isfinite(g)]
        c = np.asarray(metrics[COSINE], float) if COSINE in metrics else None
        rows.append(dict(setting=setting, horizon=cfg.horizon, task=cfg.task, method=cfg.method, values=g.size,
                         median=float(np.median(finite)) if finite.size else float("nan"),
                         max_finite=float(finite.max()) if finite.size else float("nan"),
                         nonfinite_share=1 - finite.size / g.size,
                         cosine_mean=float(seed_cosines(metrics).mean()) if c is not None else float("nan"),
                         cosine_nonfinite_share=float(np.mean(~np.isfinite(c))) if c is not None else float("nan")))
    return rows


def cosine_rows(found, reps: int = 2000) -> list[dict]:
    """Per setting and method: the mean over tasks x seeds of the seeds' mean cosines, with rliable's
    stratified-bootstrap 95% CI (seeds resampled within each task). A method's tasks must hold the same
    number of seeds; the smallest is used."""
    cells: dict = {}
    for setting, _, cfg, metrics in found:
        if COSINE in metrics:
            cells.setdefault((setting, cfg.horizon, cfg.method), []).append(seed_cosines(metrics))
    rows = []
    for (setting, horizon, method), per_task in cells.items():
        n = min(len(s) for s in per_task)
        agg = aggregate({method: np.stack([s[:n] for s in per_task], axis=1)}, reps=reps)[method]
        rows.append(dict(setting=setting, horizon=horizon, method=method, tasks=len(per_task), seeds=n,
                         cosine_mean=agg["mean"], cosine_lo=agg["mean_lo"], cosine_hi=agg["mean_hi"]))
    return sorted(rows, key=lambda r: (r["horizon"] or 0, r["setting"], -r["cosine_mean"]))


def spearman(x, y) -> np.ndarray:
    """Spearman's rank correlation along the last axis (ties get their mean rank); NaN where either
    side is constant."""
    rx, ry = (r - r.mean(-1, keepdims=True) for r in (rankdata(x, axis=-1), rankdata(y, axis=-1)))
    den = np.sqrt((rx ** 2).sum(-1) * (ry ** 2).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rx * ry).sum(-1) / den, np.nan)


def return_rows(found, reps: int = 2000, seed: int = 0) -> list[dict]:
    """Per setting and task: Spearman's correlation, over every seed of the groups that logged COSINE
    (NOT_ALIGNMENT left out), between the seed's mean cosine and its final normalised score, with a
    percentile 95% CI over `reps` bootstrap resamples of the seeds within each method; per setting with
    more than one task, a row "mean": the mean of the tasks' correlations, its CI from the same resamples.
    Groups whose setting folder has no references.json or none for their task (no score) are left out."""
    cells: dict = {}
    for setting, folder, cfg, metrics in found:
        refs = folder.parent / "references.json"
        if COSINE not in metrics or cfg.method in NOT_ALIGNMENT or not refs.exists():
            continue
        r = read_json(refs, "references")["tasks"].get(cfg.task)
        if r is None:  # a references.json without this task: no score
            continue
        score = normalized_score(np.asarray(metrics["eval/return"], float)[:, -1], r["random"], r["best"])
        cells.setdefault((setting, cfg.horizon, cfg.task), []).append((seed_cosines(metrics), score))
    rng, rows = np.random.default_rng(seed), []
    for setting, horizon in dict.fromkeys((s, h) for s, h, _ in cells):  # in `found`'s order
        tasks, boots = [t for s, _, t in cells if s == setting], []
        for task in tasks:
            per = cells[setting, horizon, task]
            x, y = (np.concatenate([p[i] for p in per]) for i in (0, 1))
            starts = np.cumsum([0] + [len(c) for c, _ in per[:-1]])
            idx = np.concatenate([s + rng.integers(0, len(c), (reps, len(c))) for s, (c, _) in zip(starts, per)], 1)
            boots.append(spearman(x[idx], y[idx]))
            rows.append(dict(setting=setting, horizon=horizon, task=task, methods=len(per), seeds=len(x),
                             spearman=float(spearman(x, y)),
                             spearman_lo=float(np.nanpercentile(boots[-1], 2.5)),
                             spearman_hi=float(np.nanpercentile(boots[-1], 97.5))))
        if len(tasks) > 1:
            mine, mean = rows[-len(tasks):], np.nanmean(boots, axis=0)
            rows.append(dict(setting=setting, horizon=horizon, task="mean", methods=max(r["methods"] for r in mine),
                             seeds=sum(r["seeds"] for r in mine),
                             spearman=float(np.mean([r["spearman"] for r in mine])),
                             spearman_lo=float(np.nanpercentile(mean, 2.5)),
                             spearman_hi=float(np.nanpercentile(mean, 97.5))))
    return rows


def markdown(rows, cosines, returns=()) -> str:
    h = lambda r: f"{r['setting'] or '-'} | {r['horizon'] or 'task default'}"
    cos = lambda v: "-" if np.isnan(v) else f"{v:.2f}"  # "-": not logged (true_bptt: no model)
    lines = ["| setting | H | task | method | median norm | largest finite | not finite | mean cosine |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {h(r)} | {r['task']} | {r['method']} | {r['median']:.3g} | {r['max_finite']:.3g} | "
              f"{r['nonfinite_share']:.1%} | {cos(r['cosine_mean'])} |" for r in rows]
    lines += ["", "Mean cosine with the true simulator's policy gradient over tasks x seeds (95% CI):", "",
              "| setting | H | method | tasks | seeds | mean cosine (95% CI) |", "|---|---|---|---|---|---|"]
    lines += [f"| {h(r)} | {r['method']} | {r['tasks']} | {r['seeds']} | {r['cosine_mean']:.2f} "
              f"({r['cosine_lo']:.2f} to {r['cosine_hi']:.2f}) |" for r in cosines]
    if returns:
        lines += ["", "Spearman correlation over seeds between a seed's mean cosine and its final score (95% CI):", "",
                  "| setting | H | task | methods | seeds | Spearman (95% CI) |", "|---|---|---|---|---|---|"]
        lines += [f"| {h(r)} | {r['task']} | {r['methods']} | {r['seeds']} | {r['spearman']:.2f} "
                  f"({r['spearman_lo']:.2f} to {r['spearman_hi']:.2f}) |" for r in returns]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="a data folder of committed groups (e.g. docs/data/horizon_scaling)")
    ap.add_argument("--reps", type=int, default=2000, help="bootstrap resamples for the CIs")
    args = ap.parse_args(argv)
    if not Path(args.data).is_dir():
        ap.error(f"--data {args.data}: no such folder")
    found = groups(args.data)
    if not found:
        ap.error(f"--data {args.data}: no committed group logged {NORM}")
    rows, cosines, returns = group_rows(found), cosine_rows(found, args.reps), return_rows(found, args.reps)
    write_csv(Path(args.data) / "training_gradients.csv", rows, COLUMNS)
    write_csv(Path(args.data) / "training_gradients_cosine.csv", cosines, COSINE_COLUMNS)
    if returns:
        write_csv(Path(args.data) / "training_gradients_returns.csv", returns, RETURN_COLUMNS)
    print(markdown(rows, cosines, returns))
    return rows, cosines, returns


if __name__ == "__main__":
    main()
