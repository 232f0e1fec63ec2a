"""The policy gradients the BPO methods followed while they trained, read from committed data: per
(horizon,) task and method, the median and largest finite value of `policy/grad_norm` (the norm before
the global-norm clip, averaged over each evaluation period's policy updates: one value per period and
seed) and the share that was not finite.
Corollaries 1 and 2 in the training runs themselves: through a Markov model the norm should grow
fastest with H and overflow; through an AWM it should stay bounded.

    python experiments/training_grad_norms.py --data docs/data/horizon_scaling

Reads every committed group under DATA (DATA/{task}-{method}/ or DATA/{setting}/{task}-{method}/; seed
parts and groups without the metric are skipped), writes DATA/training_grad_norms.csv and prints the
table in markdown.
"""

import argparse
from pathlib import Path

import numpy as np

from awm_jax.io.results import atomic_write, read_run_files
from awm_jax.io.run_folder import group_name, is_complete

METRIC = "policy/grad_norm"
COLUMNS = ("horizon", "task", "method", "values", "median", "max_finite", "nonfinite_share")


def grad_norm_rows(data) -> list[dict]:
    """One row per committed group under `data` that logged METRIC, sorted by horizon, task, method."""
    rows = []
    for folder in sorted(p for p in Path(data).rglob("*-*") if p.is_dir() and "parts" not in p.parts):
        if not is_complete(folder):
            continue
        cfg, metrics = read_run_files(folder)
        if METRIC not in metrics or folder.name != group_name(cfg.task, cfg.method):
            continue  # no policy gradient through a model, or a copy moved aside
        g = np.asarray(metrics[METRIC], float).ravel()
        finite = g[np.isfinite(g)]
        rows.append(dict(horizon=cfg.horizon, task=cfg.task, method=cfg.method, values=g.size,
                         median=float(np.median(finite)) if finite.size else float("nan"),
                         max_finite=float(finite.max()) if finite.size else float("nan"),
                         nonfinite_share=1 - finite.size / g.size))
    return sorted(rows, key=lambda r: (r["horizon"] or 0, r["task"], r["method"]))


def markdown(rows) -> str:
    lines = ["| H | task | method | median norm | largest finite | not finite |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['horizon'] or 'task default'} | {r['task']} | {r['method']} | {r['median']:.3g} | "
              f"{r['max_finite']:.3g} | {r['nonfinite_share']:.1%} |" for r in rows]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="a data folder of committed groups (e.g. docs/data/horizon_scaling)")
    args = ap.parse_args(argv)
    if not Path(args.data).is_dir():
        ap.error(f"--data {args.data}: no such folder")
    rows = grad_norm_rows(args.data)
    if not rows:
        ap.error(f"--data {args.data}: no committed group logged {METRIC}")
    cell = lambda v: "" if v is None else str(v)  # horizon None: the task's default
    csv = ",".join(COLUMNS) + "\n" + "".join(",".join(cell(r[c]) for c in COLUMNS) + "\n" for r in rows)
    atomic_write(Path(args.data) / "training_grad_norms.csv", csv)
    print(markdown(rows))
    return rows


if __name__ == "__main__":
    main()
