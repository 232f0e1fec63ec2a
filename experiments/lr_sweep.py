"""The policy learning-rate sweep behind `Config.policy_lr`'s defaults: score finished sweeps.

    awm-jax sweep --tasks cancer_treatment,...,invasive_plant --methods true_bptt --seeds 2 \\
        --policy-lr-grid 1e-4,3e-4,1e-3,3e-3,1e-2 --out runs/lr_true_norm          # ours ("normalized")
    awm-jax sweep ... --parameterisation paper --policy-lr-grid 3e-5,1e-4,3e-4 --out runs/lr_true_paper
    python experiments/lr_sweep.py --sweeps runs/lr_true_norm,runs/lr_true_paper --out docs/data/lr_sweep
    python experiments/lr_sweep.py --out /tmp/lr --quick      # runs a tiny sweep into OUT/quick first (< 1 min)

Reads each sweep's summary.csv and sweep.json, scores every (task, method, parameterisation,
policy_lr) final return against the task's references (random = 0, best of constant action and
open-loop optimisation = 1; `awm_jax.analysis.benchmark`), and writes OUT/returns.csv (one row per task,
method, parameterisation and rate), OUT/scores.csv (mean score over the tasks per method,
parameterisation and rate) and OUT/lr_sweep.md (both tables), printing the second. With --data-only
it rebuilds them from OUT/returns.csv alone (the committed data). --quick (a smoke test) first runs a
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
from awm_jax.config import Config
from awm_jax.io.results import atomic_write, format_table
from awm_jax.loop.sweep import saved_rates

QUICK_HELP = ("smoke test (under a minute on a laptop CPU): run a tiny sweep (true_bptt on cancer_treatment, policy_lr "
              "1e-3 and 1e-2, 2 seeds of 400 env steps) into OUT/quick, continuing it if there, and score it instead "
              "of --sweeps")


@dataclasses.dataclass(kw_only=True)
class Options:
    sweeps: str = ""
    """comma-separated finished sweep folders"""
    out: str
    """folder for returns.csv, scores.csv and lr_sweep.md (and the references.json cache)"""
    data_only: bool = False
    """rebuild the tables from OUT/returns.csv"""
    quick: Annotated[bool, tyro.conf.arg(help=QUICK_HELP)] = False


def quick_sweep(out: Path) -> Path:
    """The tiny sweep of --quick in OUT/quick (continued if already there); the task keeps its default
    options, which the references are computed for."""
    from awm_jax.loop.sweep import SweepSpec, run_sweep

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
        base, rates = Config.from_dict(spec["base"], run=False), saved_rates(spec)
        with open(Path(folder) / "summary.csv") as f:
            for r in csv.DictReader(f):
                lr = float(r["policy_lr"]) if r.get("policy_lr") else rates[r["method"]]
                rows.append(dict(task=r["task"], method=r["method"], parameterisation=base.parameterisation,
                                 policy_lr=lr, mean=float(r["mean"]), std=float(r["std"]), seeds=int(r["seeds"])))
    return rows


def score(rows: list[dict], refs: dict) -> tuple[list[dict], list[dict]]:
    """Adds `score` to each row; returns (rows, per (method, parameterisation, lr) mean over tasks)."""
    for r in rows:
        ref = refs[r["task"]]
        r["score"] = float(normalized_score(r["mean"], ref["random"], ref["best"]))
    groups = {}
    for r in rows:
        groups.setdefault((r["method"], r["parameterisation"], r["policy_lr"]), []).append(r)
    table = [dict(method=m, parameterisation=p, policy_lr=lr, tasks=len(g),
                  mean_score=float(np.mean([r["score"] for r in g])),
                  min_score=float(np.min([r["score"] for r in g])))
             for (m, p, lr), g in sorted(groups.items())]
    return rows, table


def _csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def main(argv=None):
    args = tyro.cli(Options, args=argv, description=__doc__)
    if args.quick and args.data_only:
        raise SystemExit("lr_sweep.py: --quick runs and scores a sweep, --data-only reads OUT/returns.csv: pass one")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.quick:
        rows = read_sweeps([quick_sweep(out)])
    elif args.data_only:
        with open(out / "returns.csv") as f:
            rows = [dict(r, policy_lr=float(r["policy_lr"]), mean=float(r["mean"]), std=float(r["std"]),
                         seeds=int(r["seeds"])) for r in csv.DictReader(f)]
        rows = [{k: v for k, v in r.items() if k != "score"} for r in rows]
    else:
        rows = read_sweeps([s for s in args.sweeps.split(",") if s])
    tasks = sorted({r["task"] for r in rows})
    refs = task_references(Config(), tasks, out, verbose=False)
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
