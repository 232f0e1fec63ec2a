"""The policy learning-rate sweep behind `Config.policy_lr`'s defaults: score finished sweeps.

    awm-jax sweep --tasks cancer_treatment,...,invasive_plant --methods true_bptt --seeds 2 \\
        --policy-lr-grid 1e-4,3e-4,1e-3,3e-3,1e-2 --out runs/lr_true_norm          # ours ("normalized")
    awm-jax sweep ... --parameterisation paper --policy-lr-grid 3e-5,1e-4,3e-4 --out runs/lr_true_paper
    python experiments/lr_sweep.py --sweeps runs/lr_true_norm,runs/lr_true_paper --out docs/data/lr_sweep
    python experiments/lr_sweep.py --out /tmp/lr --quick      # runs a tiny sweep into OUT/quick first (< 1 min)
    python experiments/lr_sweep.py --runs docs/data/lr_stability --out docs/data/lr_stability   # paired runs

Reads each sweep's summary.csv and sweep.json, scores every (task, method, parameterisation,
policy_lr) final return against the task's references (random = 0, best of constant action and
open-loop optimisation = 1; `awm_jax.analysis.benchmark`), and writes OUT/returns.csv (one row per task,
method, parameterisation and rate), OUT/scores.csv (mean score over the tasks per method,
parameterisation and rate) and OUT/lr_sweep.md (both tables), printing the second. With --data-only
it rebuilds them from OUT/returns.csv alone (the committed data). --runs scores single `awm-jax train`
runs instead (folders, or folders of them, with a COMPLETE marker): the same rate compared on the same
seeds, as in docs/data/lr_stability, where the benchmark's final evaluation alone can land in a passing
collapse; each row then also has `last10`, the mean return over the last 10 evaluations, and its score,
and the model scaling in force (`model_scaling`), which the mean-score table also groups by.
Such runs are the benchmark's groups at another rate, so they are scored against the benchmark's
references (`awm_jax.analysis.committed.references`). --quick (a smoke test) first runs a
tiny sweep itself (true_bptt on cancer_treatment, policy_lr 1e-3 and 1e-2, 2 seeds of 400 env steps)
into OUT/quick and scores that instead of --sweeps.
"""

import csv
import dataclasses
import io
import json
from pathlib import Path
from typing import Annotated

import numpy as np
import tyro

from awm_jax.analysis.benchmark import normalized_score, task_references
from awm_jax.analysis.committed import references
from awm_jax.core.config import Config
from awm_jax.runner.results import format_table
from awm_jax.runner.run_folder import atomic_write
from awm_jax.runner.sweep import saved_method_values

QUICK_HELP = ("smoke test (under a minute on a laptop CPU): run a tiny sweep (true_bptt on cancer_treatment, policy_lr "
              "1e-3 and 1e-2, 2 seeds of 400 env steps) into OUT/quick, continuing it if there, and score it instead "
              "of --sweeps")


@dataclasses.dataclass(kw_only=True)
class Options:
    sweeps: str = ""
    """comma-separated finished sweep folders"""
    runs: str = ""
    """comma-separated finished `awm-jax train` run folders, or folders holding them (instead of --sweeps)"""
    out: str
    """folder for returns.csv, scores.csv and lr_sweep.md (and the references.json cache)"""
    data_only: bool = False
    """rebuild the tables from OUT/returns.csv"""
    quick: Annotated[bool, tyro.conf.arg(help=QUICK_HELP)] = False


def quick_sweep(out: Path) -> Path:
    """The tiny sweep of --quick in OUT/quick (continued if already there); the task keeps its default
    options, which the references are computed for."""
    from awm_jax.runner.sweep import SweepSpec, run_sweep

    base = Config(task="cancer_treatment", method="true_bptt", seeds=2, total_steps=400, warmup_steps=200,
                  eval_every=64)
    spec = SweepSpec(base, ("cancer_treatment",), ("true_bptt",), (("policy_lr", (1e-3, 1e-2)),))
    run_sweep(spec, out / "quick", resume=(out / "quick" / "sweep.json").exists(), verbose=False)
    return out / "quick"


def read_sweeps(folders) -> list[dict]:
    """Rows {task, method, parameterisation, policy_lr, mean, std, seeds} of finished sweeps."""
    rows = []
    for folder in folders:
        spec = json.loads((Path(folder) / "sweep.json").read_text())
        base, rates = Config.from_dict(spec["base"], run=False), saved_method_values(spec)
        with open(Path(folder) / "summary.csv") as f:
            for r in csv.DictReader(f):
                lr = float(r["policy_lr"]) if r.get("policy_lr") else rates[r["method"]]
                rows.append(dict(task=r["task"], method=r["method"], parameterisation=base.parameterisation,
                                 policy_lr=lr, mean=float(r["mean"]), std=float(r["std"]), seeds=int(r["seeds"])))
    return rows


def run_folders(paths) -> list[Path]:
    """The finished run folders among `paths` and their subfolders, each once (sorted), a COMPLETE marker each."""
    found = []
    for p in map(Path, paths):
        found += [p] if (p / "COMPLETE").exists() else sorted(q for q in p.iterdir() if (q / "COMPLETE").exists())
    if not found:
        raise SystemExit(f"lr_sweep.py: no finished run folder (with a COMPLETE marker) in {list(map(str, paths))}")
    return sorted(set(found))


def read_runs(folders, window: int = 10) -> list[dict]:
    """Rows {task, method, parameterisation, model_scaling, policy_lr, mean, std, seeds, last10} of finished
    runs: the final evaluation return's mean and std over seeds, and `last10` the mean over seeds and the
    last `window` evaluations."""
    from awm_jax.runner.results import read_run_files, summary

    rows = []
    for folder in folders:
        cfg, metrics = read_run_files(folder)
        final = summary(metrics)
        rows.append(dict(task=cfg.task, method=cfg.method, parameterisation=cfg.parameterisation,
                         model_scaling=cfg.model_scaling_value, policy_lr=cfg.policy_lr_value,
                         mean=final["mean"], std=final["std"], seeds=final["seeds"],
                         last10=float(metrics["eval/return"][:, -window:].mean())))  # [seeds, periods]
    return sorted(rows, key=lambda r: (r["task"], r["method"], r["parameterisation"], r["model_scaling"],
                                       r["policy_lr"]))


def score(rows: list[dict], refs: dict) -> tuple[list[dict], list[dict]]:
    """Adds `score` (and `last10_score` where a row has `last10`) to each row; returns (rows, per
    (method, parameterisation, model scaling where the rows have it, lr) mean and lowest score over the
    tasks)."""
    for r in rows:
        ref = refs[r["task"]]
        r["score"] = float(normalized_score(r["mean"], ref["random"], ref["best"]))
        if "last10" in r:
            r["last10_score"] = float(normalized_score(r["last10"], ref["random"], ref["best"]))
    groups = {}
    for r in rows:
        groups.setdefault((r["method"], r["parameterisation"], r.get("model_scaling"), r["policy_lr"]), []).append(r)
    table = []
    for (m, p, sc, lr), g in sorted(groups.items(), key=lambda kv: (*kv[0][:2], kv[0][2] or "", kv[0][3])):
        row = dict(method=m, parameterisation=p) | ({"model_scaling": sc} if sc else {}) | dict(
            policy_lr=lr, tasks=len(g), mean_score=float(np.mean([r["score"] for r in g])),
            min_score=float(np.min([r["score"] for r in g])))
        if all("last10" in r for r in g):
            row["mean_last10_score"] = float(np.mean([r["last10_score"] for r in g]))
        table.append(row)
    return rows, table


def _csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def main(argv=None):
    args = tyro.cli(Options, args=argv, description=__doc__)
    if sum(map(bool, (args.quick, args.data_only, args.sweeps, args.runs))) != 1:
        raise SystemExit("lr_sweep.py: pass one of --sweeps, --runs, --quick (runs and scores a tiny sweep) and "
                         "--data-only (reads OUT/returns.csv)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.quick:
        rows = read_sweeps([quick_sweep(out)])
    elif args.data_only:
        with open(out / "returns.csv") as f:
            rows = [dict(r, policy_lr=float(r["policy_lr"]), mean=float(r["mean"]), std=float(r["std"]),
                         seeds=int(r["seeds"])) | ({"last10": float(r["last10"])} if r.get("last10") else {})
                    for r in csv.DictReader(f)]
        rows = [{k: v for k, v in r.items() if k not in ("score", "last10_score")} for r in rows]
    elif args.runs:
        rows = read_runs(run_folders([s for s in args.runs.split(",") if s]))
    else:
        rows = read_sweeps([s for s in args.sweeps.split(",") if s])
    tasks = sorted({r["task"] for r in rows})
    paired = any("last10" in r for r in rows)  # single runs: the benchmark's groups at another rate
    refs = (references(Config(), tasks, out, verbose=False) if paired
            else task_references(Config(), tasks, out, verbose=False))
    rows, table = score(rows, refs)
    atomic_write(out / "returns.csv", _csv(rows))
    atomic_write(out / "scores.csv", _csv(table))
    md = ("# Policy learning-rate sweep\n\nMean normalised score over the tasks (random 0, best reference 1):\n\n```\n"
          + format_table(table) + "\n```\n\nFinal evaluation return per task (mean over seeds):\n\n```\n"
          + format_table(rows) + "\n```\n")
    atomic_write(out / "lr_sweep.md", md)
    print(format_table(table))
    print(f"\nwrote {out}/returns.csv, scores.csv, lr_sweep.md")


if __name__ == "__main__":
    main()
