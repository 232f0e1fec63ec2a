"""Sweeps: tasks x methods x seeds x numeric hyperparameters, one compiled program per (task, method).

Within a group every seed and every combination of numeric hyperparameters (the product of the
lists given, e.g. policy_lr x entropy) is one vmapped member of a single program, laid over all
devices. Each combination gets an output folder in the format of `awm-jax train`
(`OUT/{task}-{method}[-name=value...]`); the sweep writes `OUT/sweep.json` (its specification),
`OUT/summary.csv` and `OUT/summary.md` (final eval return per task, method and combination), and one
plot per task (`OUT/{task}.png`). `resume=True` skips combinations whose folders are complete and
continues unfinished groups from their checkpoints.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import time
from pathlib import Path

import numpy as np

import awm_envs
from awm_jax.core.config import Config
from awm_jax.core.legacy import METHOD_DEFAULT_FIELDS, with_legacy_defaults
from awm_jax.core.methods import make_train
from awm_jax.runner import interrupt, run_folder
from awm_jax.runner.checkpoint import config_diff
from awm_jax.runner.interrupt import Interrupted, check
from awm_jax.runner.plots import plot_learning_curves
from awm_jax.runner.results import markdown_table, read_run_files, skipped_warning, summary, write_csv, write_run
from awm_jax.runner.run import run_training, seed_keys
from awm_jax.runner.run_folder import atomic_write, is_complete, member_name


def group_configs(base: Config, tasks, methods) -> list[Config]:
    """The config of each (task, method) group over `base`, tasks in order, then methods: `base` for that
    method (`Config.for_method`: the fields it does not read at their defaults)."""
    return [base.for_method(m, task=t) for t in tasks for m in methods]


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    base: Config
    tasks: tuple[str, ...]
    methods: tuple[str, ...]
    grid: tuple[tuple[str, tuple[float, ...]], ...] = ()  # (numeric field, values), product taken

    def combos(self) -> list[dict]:
        names = [n for n, _ in self.grid]
        return [dict(zip(names, vals)) for vals in itertools.product(*[v for _, v in self.grid])] or [{}]

    def groups(self) -> list[Config]:
        return group_configs(self.base, self.tasks, self.methods)

    def folder(self, out, cfg: Config, combo: dict) -> Path:
        """The member folder of group `cfg` and grid values `combo` (awm_jax.runner.run_folder.member_name)."""
        return Path(out) / member_name(cfg.task, cfg.method, combo)

    def to_dict(self) -> dict:
        """What sweep.json holds: the base config, tasks, methods, grid, and per field of
        `legacy.METHOD_DEFAULT_FIELDS` (policy_lr, model_scaling) each method's value in force (the
        base's None means each method's default): {"policy_lr": {method: rate}, "model_scaling": {...}}."""
        return dict(base=self.base.to_dict(), tasks=list(self.tasks), methods=list(self.methods),
                    grid=[[n, list(v)] for n, v in self.grid],
                    **{k: {m: getattr(dataclasses.replace(self.base, method=m), f"{k}_value") for m in self.methods}
                       for k in METHOD_DEFAULT_FIELDS})

    def differences(self, saved: dict) -> list[str]:
        """What differs between this sweep and a saved `to_dict()`: tasks, methods, grid, each method's
        policy learning rate and model scaling in force, and the base config's other fields that some
        method of the sweep reads (see `Config.ignored_fields`)."""
        current = json.loads(json.dumps(self.to_dict()))
        diff = [f"{k}: saved {saved.get(k)!r}, now {current[k]!r}" for k in ("tasks", "methods", "grid")
                if saved.get(k) != current[k]]
        for name in METHOD_DEFAULT_FIELDS:
            if name not in dict(self.grid):
                old = saved_method_values(saved, name)
                diff += [f"{name} of {m}: saved {old.get(m)!r}, now {v!r}" for m, v in current[name].items()
                         if old.get(m) != v]
        ignore = {"task", "method", *METHOD_DEFAULT_FIELDS} | set.intersection(
            *[g.ignored_fields() for g in self.groups()])
        return diff + config_diff(saved.get("base", {}), current["base"], ignore=ignore, run=False)

    def validate(self) -> None:
        """Every check before anything compiles: names, counts, grid fields and values."""
        if not self.tasks or not self.methods:
            raise ValueError("a sweep needs at least one task and one method")
        for dup, what in ((self.tasks, "tasks"), (self.methods, "methods")):
            if len(set(dup)) != len(dup):
                raise ValueError(f"{what} are listed twice: {list(dup)}")
        for name, values in self.grid:
            if not values:
                raise ValueError(f"the list for {name} is empty")
            bad = [v for v in values if not math.isfinite(v)]
            if bad:
                raise ValueError(f"the {name} grid holds {', '.join(map(str, bad))}: every value must be a finite "
                                 "number")
        fields = {f.name for f in dataclasses.fields(Config)}
        for name, _ in self.grid:
            if name not in fields:
                raise ValueError(f"{name!r} is not a config field")
        for cfg in self.groups():
            traced = make_train(cfg).traced  # what one program can vary (static fields change shapes)
            static = [name for name, _ in self.grid if name not in traced]
            if static:
                raise ValueError(f"{', '.join(map(repr, static))} cannot be swept inside one program of {cfg.method}: "
                                 f"it traces {', '.join(traced)}")
            for combo in self.combos():
                c = dataclasses.replace(cfg, **combo)
                c.validate()
                c.validate(awm_envs.make(c.task, **c.task_options()))


def saved_method_values(saved: dict, name: str = "policy_lr") -> dict:
    """{method: the value in force of `name` (policy_lr or model_scaling)} of a saved sweep.json
    (`SweepSpec.to_dict`); older files, which lack the entry, meant the defaults then
    (`legacy.LEGACY_POLICY_LR`, `legacy.LEGACY_DEFAULTS`)."""
    if name in saved:
        return dict(saved[name])
    base = saved.get("base", {})
    return {m: with_legacy_defaults({**base, "method": m})[name] for m in saved.get("methods", ())}


def parse_list(text: str | None, cast=str) -> tuple:
    """'a,b,c' -> (a, b, c) with each item cast; None or '' -> ()."""
    if not text:
        return ()
    try:
        return tuple(cast(x.strip()) for x in text.split(",") if x.strip())
    except ValueError as e:
        raise ValueError(f"cannot read the list {text!r}: {e}") from None


def run_sweep(spec: SweepSpec, out, chunk_periods: int = 8, checkpoint_every: int = 0, resume: bool = False,
              verbose: bool = True, overwrite: bool = False, checkpoint_minutes: float = 10.0) -> list[dict]:
    """Run every group of `spec`, writing per-combination folders and the aggregate; returns its rows.

    checkpoint_every, checkpoint_minutes: each group's checkpoints, as `run.run_training`'s. SIGINT and
    SIGTERM stop the running group after its chunk with a checkpoint (or before the next group) and raise
    `awm_jax.runner.interrupt.Interrupted`; `resume=True` continues the sweep from there.

    The sweep folder is locked while the sweep runs and gets its COMPLETE marker (see
    `awm_jax.runner.run_folder`) after the aggregate. resume: continue the same sweep in `out` (finished
    members are skipped); overwrite: move whatever `out` holds aside (to `out.old-<time>`) first.
    Without either, a folder already holding a sweep or a run is refused."""
    spec.validate()
    if resume and overwrite:
        raise ValueError("--resume continues the sweep in --out and --overwrite moves it aside: pass one of them")
    out = Path(out)
    log = print if verbose else (lambda *a, **k: None)
    lock, status = run_folder.claim(out, overwrite=overwrite, log=log)
    try:
        spec_path = out / run_folder.SWEEP
        if spec_path.exists():
            diff = spec.differences(run_folder.read_json(spec_path, "sweep specification"))
            if diff:
                raise ValueError(f"{out} holds a different sweep (see {spec_path}); choose another --out (or pass "
                                 f"--overwrite to move it aside). Differences: {'; '.join(diff)}")
            if not resume:
                state = "a finished" if status == "complete" else "an unfinished"
                raise ValueError(f"{out} already holds {state} run of this sweep: pass --resume to continue it (its "
                                 "finished members are kept), --overwrite to move it aside and start again, or "
                                 "choose another --out")
        elif status != "new":
            raise run_folder.RunFolderError(
                f"{out} holds a run that is not a sweep ({', '.join(run_folder.run_content(out))}): choose another "
                "--out, or pass --overwrite to move it aside")
        run_folder.unmark(out)
        atomic_write(spec_path, json.dumps(spec.to_dict(), indent=2))
        with interrupt.watch():
            _run_groups(spec, out, chunk_periods, checkpoint_every, checkpoint_minutes, resume, verbose, log)
        rows = write_aggregate(spec, out)
        run_folder.mark_complete(out, [run_folder.SWEEP, "summary.csv", "summary.md"])
        return rows
    finally:
        lock.release()


def _run_groups(spec: SweepSpec, out: Path, chunk_periods, checkpoint_every, checkpoint_minutes, resume, verbose,
                log) -> None:
    groups, combos = spec.groups(), spec.combos()
    S = spec.base.seeds
    t0, steps_done, steps_here = time.time(), 0, 0  # steps_here: of groups run by this call (the rate)
    total_steps = sum(g.env_steps * S * len(combos) for g in groups)
    for gi, cfg in enumerate(groups):
        folders = [spec.folder(out, cfg, c) for c in combos]
        if resume and all(is_complete(f) for f in folders):
            log(f"[sweep] group {gi + 1}/{len(groups)} {cfg.task}/{cfg.method}: already done, skipped")
            steps_done += cfg.env_steps * S * len(combos)
            continue
        group = f"group {gi + 1}/{len(groups)} ({cfg.task} / {cfg.method})"
        check(f"sweep {out} before {group} started (the groups before it are kept)", out)
        keys = np.tile(np.asarray(seed_keys(cfg)), (len(combos), 1))
        hparams = {name: np.repeat([c[name] for c in combos], S) for name, _ in spec.grid}
        group_dir = run_folder.group_folder(out, cfg.task, cfg.method)
        try:
            _, metrics = run_training(cfg, out=group_dir, chunk_periods=chunk_periods,
                                      checkpoint_every=checkpoint_every, checkpoint_minutes=checkpoint_minutes,
                                      resume=resume, verbose=verbose, hparams=hparams or None, keys=keys,
                                      write_outputs=False)
        except Interrupted as e:
            if e.env_step is not None:  # name the sweep and the group
                raise Interrupted(e.signum, e.env_step, e.total, e.checkpoint, e.out,
                                  f"training {group} of sweep {out}") from None
            raise
        for j, (combo, folder) in enumerate(zip(combos, folders)):
            write_run(folder, dataclasses.replace(cfg, **combo), {k: v[j * S:(j + 1) * S] for k, v in metrics.items()})
        steps_done += cfg.env_steps * S * len(combos)
        steps_here += cfg.env_steps * S * len(combos)
        elapsed = time.time() - t0
        eta = elapsed / max(steps_here, 1) * (total_steps - steps_done)
        log(f"[sweep] group {gi + 1}/{len(groups)} {cfg.task}/{cfg.method} done; env steps {steps_done}/{total_steps}, "
            f"elapsed {elapsed:.0f}s, about {eta:.0f}s left")


def write_aggregate(spec: SweepSpec, out) -> list[dict]:
    """summary.csv, summary.md and one return plot per task from the per-combination folders."""
    rows, warnings = [], []
    for task in spec.tasks:
        curves, warmup = [], None
        for cfg in (g for g in spec.groups() if g.task == task):
            for combo in spec.combos():
                _, m = read_run_files(spec.folder(out, cfg, combo))
                s = summary(m)
                label = cfg.method + "".join(f" {k}={v:g}" for k, v in combo.items())
                rows.append(dict(task=task, method=cfg.method, **combo, mean=s["mean"], std=s["std"], min=s["min"],
                                 max=s["max"], seeds=s["seeds"], skipped_updates=" ".join(map(str, s["skipped"]))))
                warning = skipped_warning(s["skipped"], spec.folder(out, cfg, combo).name)
                if warning:
                    warnings.append(warning)
                curves.append((label, m["eval/env_steps"][0], m["eval/return"]))
                warmup = cfg.warmup_steps
        plot_learning_curves(Path(out) / f"{task}.png", curves, title=task, warmup_steps=warmup)
    write_csv(Path(out) / "summary.csv", rows)
    atomic_write(Path(out) / "summary.md", "\n".join([markdown_table(rows)] + [""] * bool(warnings) + warnings) + "\n")
    for warning in warnings:
        print(f"[sweep] {warning}")
    return rows
