"""The tuning protocol: every method gets the same budget of hyperparameter configurations, trained on tuning
seeds that no evaluation uses, and one configuration per method is chosen for every task.

    search space   each method declares its grid next to its configuration (`Method.search_space`, the
                   product of its lists); `configurations` names its points c0, c1, ... in product order.
                   The protocol refuses methods whose spaces differ in size: the budget is equal.
    programs       configurations that differ only in fields the method's learner traces (learning rates,
                   discounts) train in one compiled program, configurations x seeds vmapped (`programs`);
                   a static field (the world model's state scaling) splits them into separate programs
    seeds          run i of a configuration uses the stream i of split(PRNGKey(seed), seeds), written "seed:i"
                   ("100:0", "100:1"): every configuration sees the same streams, and the evaluation uses
                   another base seed, so disjointness can be checked from the files (`seed_streams`)
    score          per run: the mean of its last `window` (10) evaluation returns, normalised per task
                   (random policy 0, best reference 1: `benchmark.normalized_score`)
    selection      per method: the configuration with the highest mean score over tasks x tuning seeds,
                   made only once the method's every configuration, task and seed is in (`select`)

Data (a folder, committed under docs/data/ by the experiments):

    DATA/references.json                         per task: random and best returns (`committed.references`)
    DATA/search_spaces.json                      method -> {"fields", "configs": {name: hyperparameters}}
    DATA/tuning/{task}-{method}/{config}/        one configuration's run: config.json, metrics.json (with the
                                                 program's seconds, machine and code commit), summary.txt,
                                                 COMPLETE (their sha256)
    DATA/tuning/scores.csv, summary.csv, tables.md, DATA/selected.json, DATA/sensitivity.png  (`write_report`)

Each configuration's run is committed as soon as its program finishes (a temporary folder, its marker, one
rename: `committed.copy_whole`); programs whose runs are all committed are skipped, and an interrupted program
continues from its checkpoints in OUT with `resume`.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import subprocess
import time
from pathlib import Path

import numpy as np

import awm_envs
from awm_jax.analysis.benchmark import normalized_score
from awm_jax.analysis.committed import copy_whole, holds, references
from awm_jax.core.config import Config
from awm_jax.core.methods import REGISTRY, make_train
from awm_jax.runner import brax_apg
from awm_jax.runner.plots import new_figure, save_figure
from awm_jax.runner.results import markdown_table, read_run_files, write_csv, write_run
from awm_jax.runner.run import run_training, seed_keys
from awm_jax.runner.run_folder import (
    FolderLock,
    atomic_write,
    check_complete,
    ensure_folder,
    group_name,
    is_complete,
    read_json,
)
from awm_jax.runner.sweep import SweepSpec

TUNING = "tuning"
# a tuning run's committed files: metrics.json holds every metric per period (metrics.csv would repeat it;
# 1,248 runs of the full protocol), summary.txt its final returns
TUNING_FILES = ("config.json", "metrics.json", "summary.txt")
SEARCH_SPACES = "search_spaces.json"
SELECTED = "selected.json"


# methods that train outside `make_train` (a host loop of another library) and their search spaces: the protocol
# scores and selects them from rows their experiment writes (`write_report(rows=...)`)
HOST_SPACES = {"brax_apg": brax_apg.SEARCH_SPACE}


def search_space(method: str) -> tuple:
    """((field, values), ...): `method`'s declared grid (`Method.search_space`, or `HOST_SPACES`)."""
    space = REGISTRY[method].search_space if method in REGISTRY else HOST_SPACES.get(method, ())
    if not space:
        raise ValueError(f"{method} declares no search space (awm_jax.core.methods: Method.search_space)")
    return space


def configurations(method: str) -> list[tuple[str, dict]]:
    """[(name, {field: value})] of `method`'s declared search space, named c0, c1, ... in the order of
    the product of its lists (the first field varies slowest)."""
    space = search_space(method)
    names = [n for n, _ in space]
    return [(f"c{i}", dict(zip(names, vals))) for i, vals in enumerate(itertools.product(*[v for _, v in space]))]


def search_spaces(methods) -> dict:
    """What DATA/search_spaces.json holds: {method: {"fields": {field: [values]}, "configs": {name: {...}}}}."""
    return {m: {"fields": {n: list(v) for n, v in search_space(m)},
                "configs": dict(configurations(m))} for m in methods}


@dataclasses.dataclass(frozen=True)
class TuningSpec:
    """What the protocol trains: every configuration of every method on every task, `seeds` tuning runs each
    from the streams of base seed `seed`, each on `base`'s schedule (its task options and sizes)."""

    base: Config
    tasks: tuple[str, ...]
    methods: tuple[str, ...]
    seeds: int = 2
    seed: int = 100
    window: int = 10

    def member(self, task: str, method: str, overrides: dict) -> Config:
        """The config one configuration's runs train (what their config.json records)."""
        return self.base.for_method(method, task=task, seeds=self.seeds, seed=self.seed, **overrides)

    def validate(self) -> None:
        """Every check before anything compiles: names, the equal budget, each configuration's config."""
        if self.seeds < 2:
            raise ValueError(f"tuning needs at least 2 seeds per configuration, got {self.seeds}")
        if self.window < 1:
            raise ValueError(f"the score's window must be at least 1 evaluation, got {self.window}")
        SweepSpec(base=self.base, tasks=tuple(self.tasks), methods=tuple(self.methods)).validate()  # the names
        sizes = {m: len(configurations(m)) for m in self.methods}
        if len(set(sizes.values())) > 1:
            raise ValueError("every method must get the same number of configurations (an equal tuning budget); "
                             f"the search spaces have {', '.join(f'{m} {n}' for m, n in sizes.items())}")
        for t, m in itertools.product(self.tasks, self.methods):
            for _, overrides in configurations(m):
                cfg = self.member(t, m, overrides)
                cfg.validate()
                cfg.validate(awm_envs.make(t, **cfg.task_options()))
                if self.window > cfg.periods:
                    raise ValueError(f"the score's window ({self.window} evaluations) is longer than a run of "
                                     f"{cfg.periods} evaluations")


def programs(spec: TuningSpec, task: str, method: str) -> list[dict]:
    """The compiled programs that train `method`'s configurations on `task`: configurations that differ only
    in traced fields share one. Each is {"name", "members": [(config name, Config)], "hparams": {traced
    hyperparameter: [members x seeds]}, "keys": [members x seeds, 2]}; its name is its static fields'
    values ("model_scaling=symlog"), or "all" where every configuration shares one program."""
    groups = {}
    for name, overrides in configurations(method):
        cfg = spec.member(task, method, overrides)
        learner = make_train(cfg)
        traced = learner.traced_fields()
        static = tuple((k, v) for k, v in overrides.items() if k not in traced)
        groups.setdefault(static, []).append((name, cfg, {h: learner.default_hparam(h) for h in learner.traced}))
    out = []
    for static, members in groups.items():
        keys = np.asarray(seed_keys(members[0][1]))
        out.append(dict(
            name="-".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in static) or "all",
            members=[(n, c) for n, c, _ in members],
            hparams={h: np.repeat(np.asarray([hp[h] for _, _, hp in members], np.float32), spec.seeds)
                     for h in members[0][2]},
            keys=np.tile(keys, (len(members), 1))))
    return out


def member_folder(data, task: str, method: str, name: str) -> Path:
    """DATA/tuning/{task}-{method}/{config}: where one configuration's runs are committed."""
    return Path(data) / TUNING / group_name(task, method) / name


def code_commit() -> str | None:
    """The git commit of the code that runs (this package's checkout), or None outside a git checkout."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                              text=True, check=True).stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        return None


def run_tuning(spec: TuningSpec, out, data, resume: bool = False, chunk_periods: int = 8, checkpoint_every: int = 2,
               verbose: bool = True, train=None, estimate=None) -> dict:
    """Train every program of `spec` whose runs are not all committed in `data` yet (cheapest method first
    with `estimate`) and commit each configuration's runs as soon as its program finishes. Everything is
    validated and the references computed first; DATA/tuning is locked meanwhile. Programs train in OUT/{task}-{method}/
    {program}/ (`run.run_training`, `train` by default; resume continues them from their checkpoints).
    estimate: when given (as `committed.run_groups` takes it), the methods train cheapest first and the
    progress lines say how long the rest should take; else in the order of `spec.methods`.
    Returns {'skipped': [...], 'trained': [(task, method, program)]}."""
    spec.validate()
    train = train or run_training
    log = print if verbose else (lambda *a, **k: None)
    data = ensure_folder(data)
    ensure_folder(data / TUNING)
    lock = FolderLock(data / TUNING)
    try:
        references(spec.base, spec.tasks, data, verbose=verbose)
        atomic_write(data / SEARCH_SPACES, json.dumps(search_spaces(sorted(REGISTRY)), indent=2) + "\n")
        cost = lambda m: estimate(spec.member(spec.tasks[0], m, {}), {}, seeds=1)  # seconds per seed: an order
        todo, skipped = [], []
        for m in sorted(spec.methods, key=cost) if estimate is not None else spec.methods:
            for t in spec.tasks:
                for p in programs(spec, t, m):
                    done = all(holds(member_folder(data, t, m, n), c, TUNING_FILES) for n, c in p["members"])
                    (skipped if done else todo).append((t, m, p))
        left = lambda items: sum(estimate(p["members"][0][1], {}, seeds=len(p["keys"])) for _, _, p in items)
        about = lambda items, what: "" if estimate is None else f", about {left(items) / 3600:.1f} h {what}"
        log(f"[tuning] {len(skipped)} of {len(skipped) + len(todo)} programs committed in {data / TUNING}; "
            f"{len(todo)} to train" + about(todo, "(a first estimate from the benchmark's rates)"))
        commit = code_commit()
        t_start = time.time()
        for i, (t, m, p) in enumerate(todo):
            run_dir = Path(out) / group_name(t, m) / p["name"]
            _, metrics = train(p["members"][0][1], out=run_dir, keys=p["keys"], hparams=p["hparams"],
                               write_outputs=False, resume=resume, chunk_periods=chunk_periods,
                               checkpoint_every=checkpoint_every, verbose=verbose)
            program = read_json(run_dir / "metrics.json", "metrics file")
            extra = {k: program[k] for k in ("compile_seconds", "run_seconds", "timed_periods", "machine")
                     if k in program}
            extra.update(program_name=p["name"], program_members=len(p["keys"]), code_commit=commit)
            for j, (name, cfg) in enumerate(p["members"]):
                sl = slice(j * spec.seeds, (j + 1) * spec.seeds)
                member_dir = Path(out) / group_name(t, m) / "members" / name
                write_run(member_dir, cfg, {k: v[sl] for k, v in metrics.items()}, extra=extra)
                copy_whole(member_dir, member_folder(data, t, m, name), log, TUNING_FILES)
            log(f"[tuning] committed {t}/{m} program {p['name']} ({len(p['members'])} configurations); "
                f"{i + 1}/{len(todo)} programs in {(time.time() - t_start) / 60:.0f} min"
                f"{about(todo[i + 1:], 'left by the first estimate')}")
        return dict(skipped=[(t, m, p["name"]) for t, m, p in skipped], trained=[(t, m, p["name"]) for t, m, p in todo])
    finally:
        lock.release()


# -- scoring and selection: from the data folder alone ------------------------------------------------------
def seed_streams(cfg: Config) -> list[str]:
    """The random streams of a run's seeds: "base:member" for each key of split(PRNGKey(cfg.seed), cfg.seeds)."""
    return [f"{cfg.seed}:{i}" for i in range(cfg.seeds)]


def tuning_rows(data, tasks, methods, window: int = 10) -> list[dict]:
    """One row per committed tuning run: task, method, config, seed ("base:member"), score (the normalised
    mean of the last `window` evaluations), final_return, last_return_mean, and the run's hyperparameters
    as its config.json records them (the method's search-space fields)."""
    refs = read_json(Path(data) / "references.json", "references")["tasks"]
    rows = []
    for t in tasks:
        for m in methods:
            fields = [n for n, _ in search_space(m)]
            for name, _ in configurations(m):
                folder = member_folder(data, t, m, name)
                if not is_complete(folder):
                    continue
                check_complete(folder, verify=TUNING_FILES)
                cfg, metrics = read_run_files(folder)
                rows += score_rows(t, m, name, seed_streams(cfg), metrics["eval/return"], refs[t], window,
                                   {f: getattr(cfg, f) for f in fields})
    return rows


def score_rows(task: str, method: str, config: str, streams, ret, refs: dict, window: int,
               hyperparameters: dict) -> list[dict]:
    """The tuning rows of one run: per seed stream, its score (the normalised mean of the last `window` of
    `ret` [seeds, evaluations], on the task's references {random, best}), final_return, last_return_mean
    and `hyperparameters`."""
    ret = np.asarray(ret)
    last = ret[:, -window:].mean(1)
    score = normalized_score(last, refs["random"], refs["best"])
    return [dict(task=task, method=method, config=config, seed=stream, score=float(score[i]),
                 final_return=float(ret[i, -1]), last_return_mean=float(last[i]), **hyperparameters)
            for i, stream in enumerate(streams)]


def summarise(rows, tasks, methods, seeds: int) -> list[dict]:
    """Per method and configuration: its hyperparameters, runs (tasks x seeds committed), complete (every
    task and seed in), mean_score over them and worst_task_score, the lowest of its per-task mean scores
    (how fragile the configuration is)."""
    out = []
    for m in methods:
        for name, overrides in configurations(m):
            g = [r for r in rows if r["method"] == m and r["config"] == name]
            per_task = [np.mean([r["score"] for r in g if r["task"] == t]) for t in tasks if any(r["task"] == t
                                                                                               for r in g)]
            out.append(dict(method=m, config=name, **{k: overrides[k] for k in overrides}, runs=len(g),
                            complete=len(g) == len(tasks) * seeds,
                            mean_score=float(np.mean([r["score"] for r in g])) if g else float("nan"),
                            worst_task_score=float(min(per_task)) if per_task else float("nan")))
    return out


def select(summary: list[dict], methods) -> dict:
    """{method: {"config", "hyperparameters", "mean_score", "runs"}}: each method whose every configuration
    is complete gets its best by mean score (the first in the search space's order on a tie)."""
    chosen = {}
    for m in methods:
        rows = [r for r in summary if r["method"] == m]
        if not rows or not all(r["complete"] for r in rows):
            continue
        best = max(rows, key=lambda r: r["mean_score"])  # max keeps the first of equal scores
        chosen[m] = dict(config=best["config"], hyperparameters=dict(configurations(m))[best["config"]],
                         mean_score=best["mean_score"], runs=best["runs"])
    return chosen


def plot_sensitivity(summary: list[dict], methods, path, selected: dict | None = None, budget: str = "",
                     window: int = 10) -> None:
    """One panel per method: mean normalised tuning score against its first search-space field (log scale
    for rates), one line per value of its second, its worst task's mean score dashed beneath, the selected
    configuration ringed."""
    methods = [m for m in methods if any(r["method"] == m and r["runs"] for r in summary)]
    if not methods:
        return
    cols = min(4, len(methods))
    rows_n = -(-len(methods) // cols)
    fig, _ = new_figure(figsize=(3.6 * cols, 2.9 * rows_n + 0.6))
    fig.clear()
    axes = np.atleast_1d(fig.subplots(rows_n, cols, squeeze=False)).ravel()
    for ax, m in zip(axes, methods):
        space = search_space(m)
        (x_name, x_vals), rest = space[0], space[1:]
        lines = list(itertools.product(*[v for _, v in rest])) or [()]
        for k, combo in enumerate(lines):
            pick = dict(zip([n for n, _ in rest], combo))
            pts = [(r[x_name], r["mean_score"], r["worst_task_score"]) for r in summary if r["method"] == m
                   and r["runs"] and all(r[n] == v for n, v in pick.items())]
            if pts:
                xs, ys, worst = zip(*sorted(pts))
                label = ", ".join(f"{n}={v}" for n, v in pick.items()) or "mean"
                ax.plot(xs, ys, "o-", color=f"C{k}", label=label, ms=4)
                ax.plot(xs, worst, "--", color=f"C{k}", lw=0.8, label="worst task" if k == 0 else None)
        sel = (selected or {}).get(m)
        if sel:
            hp = sel["hyperparameters"]
            ax.plot([hp[x_name]], [sel["mean_score"]], "o", ms=12, mfc="none", mec="k", label="selected")
        if all(isinstance(v, float) and v > 0 for v in x_vals):
            ax.set_xscale("log")
        ax.axhline(1.0, color="k", lw=0.5, ls="--")
        ax.axhline(0.0, color="k", lw=0.5)
        mine = [r for r in summary if r["method"] == m]
        done = all(r["complete"] for r in mine)
        ax.set_title(m if done else f"{m}\nstill tuning: {sum(r['runs'] for r in mine)} runs so far, not all tasks",
                     fontsize=9, color="k" if done else "0.45")
        ax.set_xlabel(x_name, fontsize=8)
        ax.set_ylabel("mean normalised score", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
    for ax in axes[len(methods):]:
        ax.set_visible(False)
    fig.suptitle(f"Tuning sensitivity: mean over tasks x tuning seeds of the last-{window}-evaluation score"
                 + (f"\n{budget}" if budget else ""), fontsize=10)
    save_figure(fig, path)


def write_report(data, tasks, methods, seeds: int, window: int = 10, rows: list[dict] | None = None) -> dict:
    """DATA/tuning/scores.csv, summary.csv and tables.md, DATA/selected.json and DATA/sensitivity.png from the
    committed tuning runs alone. rows: the runs' rows as `tuning_rows` gives them (default: read from DATA for
    `methods`), for an experiment whose methods include one of `HOST_SPACES`. Returns {'rows', 'summary',
    'selected'}."""
    data = Path(data)
    rows = tuning_rows(data, tasks, methods, window) if rows is None else rows
    summary = summarise(rows, tasks, methods, seeds)
    selected = select(summary, methods)
    fields = list(dict.fromkeys(n for m in methods for n, _ in search_space(m)))
    write_csv(data / TUNING / "scores.csv", rows, ["task", "method", "config", "seed", "score", "final_return",
                                                     "last_return_mean", *fields])
    write_csv(data / TUNING / "summary.csv", summary, ["method", "config", *fields, "runs", "complete", "mean_score",
                                                       "worst_task_score"])
    atomic_write(data / SELECTED, json.dumps(selected, indent=2) + "\n")
    n_configs = {len(configurations(m)) for m in methods}
    budget = (f"budget: {'/'.join(map(str, sorted(n_configs)))} configurations x {seeds} tuning seeds x "
              f"{len(tasks)} task{'s' * (len(tasks) > 1)} for every method")
    plot_sensitivity(summary, methods, data / "sensitivity.png", selected, budget, window)
    streams = sorted({r["seed"] for r in rows})
    lines = ["# Tuning", "", f"The tuning {budget}. Score: the normalised mean of each run's last {window} "
             "evaluation returns (random policy 0, best reference 1); a method's configuration is chosen by its "
             "mean over tasks x seeds, once all its runs are in.", "",
             f"Tuning seed streams: {', '.join(streams) or 'none yet'}.", "",
             "## Mean score per configuration", "",
             markdown_table([dict(method=r["method"], config=r["config"], hyperparameters=_hp(r, r["method"]),
                                  runs=r["runs"], complete=r["complete"], mean_score=r["mean_score"],
                                  worst_task_score=r["worst_task_score"]) for r in summary if r["runs"]])
             if any(r["runs"] for r in summary) else "(no run committed yet)",
             "", "## Selected", "",
             markdown_table([dict(method=m, config=s["config"], hyperparameters=_hp(s["hyperparameters"], m),
                                  mean_score=s["mean_score"]) for m, s in selected.items()])
             if selected else "(no method complete yet)", "",
             "## Methods still tuning", "",
             "\n".join(f"- {m}: {sum(r['runs'] for r in summary if r['method'] == m)} of "
                       f"{len(configurations(m)) * len(tasks) * seeds} runs" for m in methods if m not in selected)
             or "none", ""]
    atomic_write(data / TUNING / "tables.md", "\n".join(lines))
    return dict(rows=rows, summary=summary, selected=selected)


def _hp(values: dict, method: str) -> str:
    """'policy_lr=0.001, model_scaling=zscore': `method`'s search-space fields in `values`."""
    return ", ".join(f"{n}={values[n]}" for n, _ in search_space(method))
