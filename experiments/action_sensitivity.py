"""Do the world models know how the states respond to the actions? Their action Jacobians and open-loop
return gradients against the true simulator's, on the policy's own trajectory and on the warm-up data.

    python experiments/action_sensitivity.py --runs runs/bench/runs --out docs/data/action_sensitivity
    python experiments/action_sensitivity.py --out /tmp/as --quick     # trains tiny runs first

For every finished run folder {task}-{method} under --runs (with its saved final state) and every seed,
`awm_jax.analysis.action_sensitivity.seed_sensitivity` compares the trained world model's open-loop
rollout with the true task's on (policy) the deterministic policy's evaluation episode and (warmup)
the first --warmup warm-up episodes of the replay (the data the model was first fitted on; metrics
averaged over them): the cosine and relative Frobenius error of the action Jacobians d s_t / d a_k
(run z-scores) and the cosine of the one-step ones d s_{t+1} / d a_t alone; the cosine and norm ratio
(model / true) of the gradient of the open-loop return sum_t r(s_t, a_t) with respect to the actions
(the task's reward on the predicted states: what guides the policy) and the cosine of that gradient's
part through the predicted states only; and the model's open-loop state error (0.5 x mean squared
z-score error, as the runs log `model/error_eval`). true_bptt's model is the task: its agreement is 1
and its errors 0 (a check).

Writes OUT/action_sensitivity.csv (one row per task, method, seed, data) and OUT/action_sensitivity.md
(mean +- std over seeds per task, method and data) and prints the table. Runs saved by an older
awm_jax whose states carry fields the current state lacks (the benchmark's runs have critic fields in
every BPO state) are read with those fields skipped; `logged_state_error` (the run's last logged
`model/error_eval`) beside the recomputed `state_error` on the policy rows shows the restored model is
the one that was trained.
"""

import dataclasses
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import tyro

from awm_jax.runner.results import format_table, markdown_table, write_csv
from awm_jax.runner.run_folder import atomic_write
from pipeline import tiny_runs

TASKS = "cancer_treatment,timber_harvest"
METHODS = "awm_transformer,hwm_transformer,awm_lstm,markov_mlp,true_bptt"
COLUMNS = ("jac_cosine", "jac_rel_error", "jac_cosine_one_step", "return_grad_cosine", "return_grad_norm_ratio",
           "return_grad_cosine_dynamics", "state_error")


@dataclasses.dataclass(kw_only=True)
class Options:
    runs: str = "runs/bench/runs"
    """folder of finished {task}-{method} run folders with their final states"""
    out: str
    """folder for action_sensitivity.csv and .md"""
    tasks: str = TASKS
    """comma-separated task names"""
    methods: str = METHODS
    """comma-separated BPO methods"""
    warmup: int = 16
    """warm-up episodes (replay slots 0, 1, ...) per seed, at most the run's complete ones"""
    seed: int = 0
    """key of the evaluation episode (its start state) and of the task's own noise"""
    quick: bool = False
    """train tiny runs into OUT/quick first and report on them"""


def load(folder: Path):
    """(Run without state, seed-batched final TrainState) of a finished run folder. A state saved by an
    older awm_jax with fields the current state does not have is restored without them (orbax partial
    restore, after checking the files' checksums)."""
    from awm_jax.api import load_run
    from awm_jax.runner.run_folder import RunFolderError

    try:
        run = load_run(folder)
        return run, run.state
    except RunFolderError as e:
        if "tree structures do not match" not in str(e.__cause__):
            raise
    run = load_run(folder, state=False)
    return run, restore_partial(run, folder / "final_state")


def restore_partial(run, path: Path):
    """The seed-batched state in orbax folder `path` restored into the current TrainState of `run`'s
    trainer, skipping saved fields that state does not have."""
    from awm_jax.runner.checkpoint import restore_state

    trainer = run.trainer
    abstract = jax.eval_shape(jax.vmap(lambda k: trainer.init(k)), jax.ShapeDtypeStruct((run.seeds, 2), jnp.uint32))
    return restore_state(path, abstract, partial=True)


def run_rows(task: str, method: str, run, state, warmup: int, key) -> list[dict]:
    """One row per seed and data (policy, warmup) of one run."""
    from awm_jax.analysis.action_sensitivity import seed_sensitivity
    from awm_jax.api import seed_slice

    logged = run.metrics.get("model/error_eval")
    rows = []
    for i in range(run.seeds):
        res = seed_sensitivity(run.trainer, seed_slice(state, i), key, warmup)
        for data, m in res.items():
            row = dict(task=task, method=method, seed=i, data=data, episodes=m["episodes"],
                       **{c: m[c] for c in COLUMNS})
            row["logged_state_error"] = (float(logged[i, -1]) if data == "policy" and logged is not None
                                         else float("nan"))
            rows.append(row)
    return rows


def summary_rows(rows: list[dict]) -> list[dict]:
    """Mean +- std over seeds per (task, method, data), in the order of `rows`."""
    groups = {}
    for r in rows:
        groups.setdefault((r["task"], r["method"], r["data"]), []).append(r)
    out = []
    for (task, method, data), rs in groups.items():
        row = dict(task=task, method=method, data=data, seeds=len(rs), episodes=rs[0]["episodes"])
        for c in COLUMNS:
            v = np.array([r[c] for r in rs], np.float64)
            fmt = ".2g" if c == "state_error" else ".3f"
            row[c] = f"{v.mean():{fmt}} +- {v.std():{fmt}}"
        out.append(row)
    return out


def main(argv=None):
    args = tyro.cli(Options, args=argv, description=__doc__)
    out = Path(args.out)
    tasks, methods = args.tasks.split(","), args.methods.split(",")
    if args.quick:
        methods, tasks = ["awm_transformer", "markov_mlp", "true_bptt"], ["cancer_treatment"]
        args.runs = tiny_runs(out / "quick", methods)
    key = jax.random.PRNGKey(args.seed)
    rows, missing, start = [], [], time.time()
    for t in tasks:
        for mth in methods:
            folder = Path(args.runs) / f"{t}-{mth}"
            if not (folder / "final_state").exists():
                missing.append(f"{t}-{mth}")
                continue
            t0 = time.time()
            run, state = load(folder)
            rows += run_rows(t, mth, run, state, args.warmup, key)
            print(f"{t}-{mth}: {run.seeds} seeds in {time.time() - t0:.0f} s", flush=True)
    if not rows:
        raise SystemExit(f"action_sensitivity.py: no run folder with a final state under {args.runs} "
                         f"(missing: {', '.join(missing)})")
    write_csv(out / "action_sensitivity.csv", rows)
    table = summary_rows(rows)
    note = f"\n\nMissing: {', '.join(missing)}\n" if missing else "\n"
    atomic_write(out / "action_sensitivity.md", markdown_table(table) + note)
    print(format_table(table) + note + f"{time.time() - start:.0f} s; wrote {out}/action_sensitivity.csv and .md")


if __name__ == "__main__":
    main()
