"""The Brax benchmark: BPO through the true physics and through world models, model-free baselines and brax's
own analytic policy gradient agent (APG) on the three Brax tasks, every method tuned with the same budget under
the fair benchmark's protocol, then evaluated on fresh seeds.

    python experiments/brax_benchmark.py --out runs/brax --data docs/data/brax_benchmark --resume  # tune, evaluate
    python experiments/brax_benchmark.py --data-only --data docs/data/brax_benchmark    # tables and figures
    python experiments/brax_benchmark.py --out /tmp/brax --quick                # minutes: 1 task, 2 methods

The library's methods (sac, ppo, true_bptt, awm_transformer, awm_gru, hwm_transformer, markov_mlp) are tuned
and evaluated exactly as in fair_benchmark.py (`awm_jax.analysis.tuning`: 6 configurations x 2 tuning seeds x
the tasks, one configuration per method chosen by the mean normalised last-10-evaluation score, then 4 fresh
seeds). brax_apg (`awm_jax.runner.brax_apg`) is brax's host loop, not a `make_train` learner, so this script
trains it itself under the same protocol: its 6 configurations (`brax_apg.SEARCH_SPACE`: learning rate x
truncation horizon) on the same tuning streams "100:i" and evaluation streams "200:i" (brax's integer seed of
stream i is drawn from its key, `brax_apg.stream_seeds`), the same env-step budget (`--total-steps`; APG
spends all of it on its rollouts, from the first step), one deterministic evaluation episode per evaluation
as the library's methods have, about as many evaluations (`apg_settings`). Its runs are committed one
configuration at a time as DATA/tuning/{task}-brax_apg/{config}/ and DATA/evaluation/{task}-brax_apg/
(apg.json, metrics.json, summary.txt, COMPLETE), and its rows join the others' in every table.

Data (DATA = docs/data/brax_benchmark): references.json (random, best constant and best plan per task:
`awm_jax.analysis.references`), search_spaces.json, tuning/ (scores.csv, summary.csv, tables.md),
selected.json, sensitivity.png, and evaluation/ (scores.csv with task, method, seed, total_steps,
final_return, score; IQM and mean with CIs, the probability-of-improvement matrix, curves_{task}.png and
wall_time.csv: seconds per run of one seed, compile included).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Annotated

import numpy as np

import fair_benchmark
from awm_jax.analysis import tuning
from awm_jax.analysis.benchmark import BRAX_TASKS
from awm_jax.analysis.committed import copy_whole
from awm_jax.analysis.report import group_rows, plot_curves, read_scores
from awm_jax.runner import brax_apg
from awm_jax.runner.results import markdown_table, write_csv
from awm_jax.runner.run_folder import (
    FolderLock,
    atomic_write,
    check_complete,
    ensure_folder,
    group_name,
    is_complete,
    read_json,
)
from awm_jax.runner.sharding import SeedSharding
from fair_benchmark import EVALUATION, evaluate, report
from pipeline import base_config, data_arg, estimate, report_scope

DATA = "docs/data/brax_benchmark"
APG = "brax_apg"
LIBRARY_METHODS = ("sac", "ppo", "true_bptt", "awm_transformer", "awm_gru", "hwm_transformer", "markov_mlp")
METHODS = (*LIBRARY_METHODS, APG)
APG_FILES = ("apg.json", "metrics.json", "summary.txt")
QUICK_TASKS, QUICK_METHODS = "brax_reacher", f"true_bptt,{APG}"


@dataclasses.dataclass(kw_only=True)
class Options(fair_benchmark.Options):
    """The fair benchmark's options (stages, tuning and evaluation seeds, window) on the Brax tasks."""

    data: Annotated[str | None, data_arg(DATA)] = None
    tasks: str = ",".join(BRAX_TASKS)
    methods: str = ",".join(METHODS)


# -- brax_apg under the protocol ----------------------------------------------------------------------------
def apg_settings(base, hyperparameters: dict) -> brax_apg.APGSettings:
    """APG's settings for one configuration on `base`'s schedule: as many evaluations as the library's runs
    have (`base.periods`, plus the one before any update), fewer where the longest truncation buys fewer
    updates; one deterministic episode each, as the library evaluates."""
    longest = max(brax_apg.SEARCH_SPACE[1][1])
    evals = min(base.periods, base.total_steps // longest) + 1
    return brax_apg.APGSettings(evals=evals, num_eval_envs=1, **hyperparameters)


def apg_record(base, task: str, hyperparameters: dict, seeds: int, seed: int) -> dict:
    """What apg.json records of a brax_apg run (and what a committed one must match to be reused)."""
    return dict(method=APG, task=task, seed=seed, seeds=seeds, brax_seeds=brax_apg.stream_seeds(seed, seeds),
                total_steps=base.total_steps, task_options=base.task_options(),
                settings=dataclasses.asdict(apg_settings(base, hyperparameters)))


def apg_holds(folder: Path, record: dict) -> bool:
    """Whether `folder` holds a whole committed brax_apg run of `record`; one of other settings is an error."""
    if not is_complete(folder):
        return False
    check_complete(folder, verify=APG_FILES)
    saved = read_json(folder / "apg.json", "brax_apg record")
    diff = sorted(k for k in record if saved.get(k) != json.loads(json.dumps(record[k])))
    if diff:
        raise ValueError(f"{folder} holds brax_apg trained with other {', '.join(diff)}: use another --data folder, "
                         "or remove it to train it again")
    return True


def train_apg_run(record: dict, folder: Path, work: Path, verbose: bool = True) -> None:
    """Train the brax_apg run `record` (one seed after another) and commit it to `folder` (through `work`)."""
    settings = brax_apg.APGSettings(**record["settings"])
    t0 = time.time()
    m = brax_apg.train_apg(record["task"], total_steps=record["total_steps"], settings=settings, verbose=verbose,
                           brax_seeds=record["brax_seeds"], **record["task_options"])
    seconds = time.time() - t0
    metrics = {k: np.asarray(v).tolist() for k, v in m.items()}
    atomic_write(work / "apg.json", json.dumps(dict(record, code_commit=tuning.code_commit()), indent=2) + "\n")
    atomic_write(work / "metrics.json", json.dumps(dict(metrics=metrics, seconds=seconds,
                                                        machine=SeedSharding.single(1).machine())) + "\n")
    ret = m["eval/return"][:, -1]
    atomic_write(work / "summary.txt", f"{record['task']} {APG}: final eval return {ret.mean():.4g} +- "
                 f"{ret.std():.3g} ({len(ret)} seeds); {seconds:.0f} s\n")
    copy_whole(work, folder, print if verbose else (lambda *a: None), APG_FILES)


def read_apg(folder: Path) -> tuple[dict, dict]:
    """(apg.json, metrics.json) of a committed brax_apg run, checksums verified."""
    check_complete(folder, verify=APG_FILES)
    return read_json(folder / "apg.json", "brax_apg record"), read_json(folder / "metrics.json", "brax_apg metrics")


def train_apg_runs(lock_folder: Path, runs, verbose: bool = True) -> None:
    """Train each (record, folder, work) of `runs` that `folder` does not already hold, with `lock_folder`
    locked meanwhile."""
    lock = FolderLock(ensure_folder(lock_folder))
    try:
        for record, folder, work in runs:
            if not apg_holds(folder, record):
                train_apg_run(record, folder, work, verbose)
    finally:
        lock.release()


def tune_apg(base, data: Path, out: Path, tasks, seeds: int, seed: int, verbose: bool = True) -> None:
    """Train every brax_apg configuration on every task that DATA/tuning lacks."""
    train_apg_runs(data / tuning.TUNING, [
        (apg_record(base, t, hp, seeds, seed), tuning.member_folder(data, t, APG, name),
         out / APG / tuning.TUNING / group_name(t, APG) / name)
        for t in tasks for name, hp in tuning.configurations(APG)], verbose)


def evaluate_apg(base, data: Path, out: Path, tasks, hyperparameters: dict, seeds: int, seed: int,
                 verbose: bool = True) -> None:
    """Train brax_apg at its selected configuration on every task that DATA/evaluation lacks."""
    train_apg_runs(data / EVALUATION, [
        (apg_record(base, t, hyperparameters, seeds, seed), data / EVALUATION / group_name(t, APG),
         out / APG / EVALUATION / group_name(t, APG)) for t in tasks], verbose)


def apg_tuning_rows(data: Path, tasks, window: int) -> list[dict]:
    """brax_apg's rows as `tuning.tuning_rows` gives the library's: one per committed run and seed stream."""
    refs = read_json(data / "references.json", "references")["tasks"]
    rows = []
    for t in tasks:
        for name, hp in tuning.configurations(APG):
            folder = tuning.member_folder(data, t, APG, name)
            if is_complete(folder):
                record, metrics = read_apg(folder)
                ret = metrics["metrics"]["eval/return"]
                rows += tuning.score_rows(t, APG, name, [f"{record['seed']}:{i}" for i in range(len(ret))], ret,
                                          refs[t], window, hp)
    return rows


def read_with_apg(data, settings, tasks, methods, streams: bool = False):
    """`report.read_scores` of the library's methods, with brax_apg's committed evaluation groups beside them."""
    by_setting, curves, missing = read_scores(data, settings, tasks, [m for m in methods if m != APG], streams)
    if APG not in methods:
        return by_setting, curves, missing
    refs = read_json(Path(data) / "references.json", "references")["tasks"]
    s = settings[0]
    for t in tasks:
        folder = Path(data) / group_name(t, APG)
        if not is_complete(folder):
            missing.append((s, t, APG))
            continue
        record, metrics = read_apg(folder)
        ret = metrics["metrics"]["eval/return"]
        seeds = [f"{record['seed']}:{i}" if streams else i for i in range(len(ret))]
        rows, curves[(s.folder, t, APG)] = group_rows(t, APG, seeds, record["total_steps"],
                                                      metrics["metrics"]["eval/env_steps"], ret, refs[t])
        by_setting[s.folder] += rows
    return by_setting, curves, missing


def wall_times(ev: Path, tasks, methods) -> list[dict]:
    """Per method: its evaluation groups' mean wall seconds per seed (compile included) over the tasks, and
    the slowest task's."""
    out = []
    for m in methods:
        per = []
        for t in tasks:
            folder = ev / group_name(t, m)
            if not is_complete(folder):
                continue
            metrics = read_json(folder / "metrics.json", "metrics")
            if m == APG:
                per.append(metrics["seconds"] / len(metrics["metrics"]["eval/return"]))
            else:
                seeds = read_json(folder / "config.json", "config")["seeds"]
                per.append((metrics.get("compile_seconds", 0.0) + metrics["run_seconds"]) / seeds)
        if per:
            out.append(dict(method=m, tasks=len(per), seconds_per_seed=float(np.mean(per)),
                            slowest_task=float(max(per))))
    return out


def main(argv=None):
    args, data, tasks, methods = fair_benchmark.parse(Options, argv, __doc__, QUICK_TASKS, QUICK_METHODS)
    unknown = sorted(set(tasks) - set(BRAX_TASKS))
    if unknown:
        raise SystemExit(f"error: not a Brax task: {', '.join(unknown)} (the Brax tasks: {', '.join(BRAX_TASKS)})")
    base = base_config(args)
    library = [m for m in methods if m != APG]
    spec = tuning.TuningSpec(base, tasks, library, seeds=args.tuning_seeds, seed=args.tuning_seed, window=args.window)
    spec.validate()  # every name and option before anything trains or reads
    if APG in methods:
        for _, hp in tuning.configurations(APG):
            apg_settings(base, hp).validate(base.total_steps)
    training = not args.data_only
    if training and args.stage in ("all", "tune"):
        tuning.run_tuning(spec, Path(args.out) / "tuning", data, resume=args.resume, chunk_periods=args.chunk_periods,
                          checkpoint_every=args.checkpoint_every, estimate=estimate)
        if APG in methods:
            tune_apg(base, data, Path(args.out), tasks, args.tuning_seeds, args.tuning_seed)
        atomic_write(data / tuning.SEARCH_SPACES, json.dumps(tuning.search_spaces(methods), indent=2) + "\n")
    r_tasks, r_methods = report_scope(args, tasks, methods, BRAX_TASKS, METHODS)
    rows = (tuning.tuning_rows(data, r_tasks, [m for m in r_methods if m != APG], args.window)
            + (apg_tuning_rows(data, r_tasks, args.window) if APG in r_methods else []))
    tuned = tuning.write_report(data, r_tasks, r_methods, args.tuning_seeds, args.window, rows=rows)
    selected = tuned["selected"]
    if training and args.stage in ("all", "evaluate"):
        evaluate(args, base, data, tasks, [m for m in library if m in selected], selected)
        if APG in methods and APG in selected:
            evaluate_apg(base, data, Path(args.out), tasks, selected[APG]["hyperparameters"], args.seeds,
                         args.eval_seed)
    chosen = [m for m in r_methods if m in selected]
    res = report(data, base, r_tasks, chosen, tuned, args.reps, title="The Brax benchmark",
                 command=("python experiments/brax_benchmark.py --out /tmp/brax --quick" if args.quick else
                          f"python experiments/brax_benchmark.py --data-only --data {data}"), read=read_with_apg)
    if res is None:
        return
    ev = data / EVALUATION
    plot_curves(res["curves"], "", r_tasks, chosen, ev, warmup_steps=base.warmup_steps)
    times = wall_times(ev, r_tasks, chosen)
    write_csv(ev / "wall_time.csv", times, ["method", "tasks", "seconds_per_seed", "slowest_task"])
    md = (ev / "tables.md").read_text() + (
        f"\n## Wall time per run of one seed ({base.total_steps} env steps, compile included; the machine is in "
        "each group's metrics.json)\n\n" + (markdown_table(times) if times else "(no group yet)") + "\n")
    atomic_write(ev / "tables.md", md)
    print(md[md.index("## Wall time"):])


if __name__ == "__main__":
    main()
