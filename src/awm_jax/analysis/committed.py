"""Experiments kept as data: train (task, method) groups one at a time, copy each finished group's
small outputs into a data folder (committed under docs/data/), and skip the groups already there.

    DATA/[setting/]references.json       per task: random, best_constant, trajectory_opt and best returns
                                         (`benchmark.task_references`), computed once and reused
    DATA/[setting/]{task}-{method}/      config.json, metrics.json, metrics.csv, summary.txt, COMPLETE
    OUT/runs/[setting/]{task}-{method}/  the group's `awm-jax train` folder (checkpoints/, final_state/)

A group is one (task, method) with all its seeds in one vmapped program (`run.run_training`), or, with
`seed_parts`, one single-seed run per seed (the same per-seed keys), each committed on its own as soon
as it finishes and merged into the group once all are in:

    DATA/[setting/]parts/{task}-{method}/seed{i}/       seed i's small files (config.json is the group's)
    OUT/runs/[setting/]parts/{task}-{method}/seed{i}/   its run folder

so a group longer than the time a machine is held is done over several sessions without keeping its
checkpoints (where seeds run one at a time anyway, as the transformers' do on one CPU device, the parts
compute what the group's one program does). A
setting is one configuration of an experiment with its own subfolder and scores.csv columns
(horizon scaling: folder H400, column horizon=400); the benchmark has one setting and no subfolder.

A group is committed by copying its files into a temporary folder, writing its COMPLETE marker (their
sha256; `run_folder.mark_complete`) and renaming the folder into place: a data folder holds whole
groups only. `run_groups` skips every committed group (one committed with a different config is
refused), prints what remains (with an estimate of the time it takes where the caller gives one) and
trains the rest with the run-folder machinery (`resume=True` continues a killed group from its
checkpoints in OUT).
`awm_jax.analysis.report` builds the tables and figures from the data folder alone.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
import zlib
from pathlib import Path

import numpy as np

from awm_jax.analysis.benchmark import BENCHMARK_TASKS, task_references
from awm_jax.core.config import Config
from awm_jax.runner import interrupt, run_folder
from awm_jax.runner.checkpoint import config_diff
from awm_jax.runner.results import read_config, read_run_files, write_outputs
from awm_jax.runner.run import run_training, seed_keys
from awm_jax.runner.run_folder import (
    CONFIG,
    METRICS,
    FolderLock,
    atomic_write,
    check_complete,
    ensure_folder,
    group_name,
    is_complete,
    read_json,
)
from awm_jax.runner.sweep import SweepSpec, group_configs

GROUP_FILES = (CONFIG, METRICS, "metrics.csv", "summary.txt")
TMP = ".tmp-"  # prefix of a group copy not yet renamed into place
PARTS = "parts"  # DATA/[setting/]parts/{task}-{method}/seed{i}/: a group's committed single-seed parts

@dataclasses.dataclass(frozen=True)
class Setting:
    """One configuration of an experiment: its base Config, its subfolder of DATA and OUT/runs ("" for
    none) and the columns it adds to every scores.csv row, as ((name, value), ...)."""
    base: Config
    folder: str = ""
    columns: tuple = ()

    def groups(self, tasks, methods) -> list[Config]:
        return group_configs(self.base, tasks, methods)


def committed(data, cfg: Config) -> bool:
    """Whether data folder `data` holds the group of `cfg`, whole (its files match their COMPLETE
    marker). A group committed with a different config raises ValueError naming the differences."""
    return holds(Path(data) / group_name(cfg.task, cfg.method), cfg)


def committed_groups(data) -> list[tuple[str, Path, Config]]:
    """(setting, folder, Config) of every committed group anywhere under the data folder `data`, in folder
    order: seed parts, unfinished folders (no COMPLETE marker) and copies moved aside are left out. The
    setting is the group folder's parent relative to `data` ("H400"; "" for a group directly in it).
    Only config.json is read: each caller reads the metrics it needs."""
    found = []
    for folder in sorted(p for p in Path(data).rglob("*-*") if p.is_dir() and PARTS not in p.relative_to(data).parts):
        if not is_complete(folder):
            continue
        cfg = read_config(folder)
        if folder.name == group_name(cfg.task, cfg.method):  # not a copy moved aside
            setting = folder.parent.relative_to(data).as_posix()
            found.append(("" if setting == "." else setting, folder, cfg))
    return found


def part_folder(root, cfg: Config, seed: int) -> Path:
    """Where seed `seed`'s part of the group `cfg` lives under `root` (a data folder or OUT/runs)."""
    return Path(root) / PARTS / group_name(cfg.task, cfg.method) / f"seed{seed}"


def holds(folder: Path, cfg: Config, names=GROUP_FILES) -> bool:
    """Whether `folder` holds whole small files `names` (matching their COMPLETE marker) of a run of `cfg`."""
    if not is_complete(folder):
        return False
    check_complete(folder, verify=names)
    diff = config_diff(read_json(folder / CONFIG, "config"), cfg.to_dict(), ignore=cfg.ignored_fields())
    if diff:
        raise ValueError(f"{folder} holds this group trained with another configuration ({'; '.join(diff)}): "
                         "pass the options it was trained with, use another --data folder, or remove that group "
                         "from the data folder to train it again")
    return True


def commit_group(run_dir, data, log=print) -> Path:
    """Copy the small files of the finished run in `run_dir` to DATA/{task}-{method}/ as a whole group:
    a temporary folder, its COMPLETE marker, one rename. An unfinished copy already there (no marker)
    is moved aside. Returns the group's data folder."""
    run_folder.check_complete(run_dir)
    cfg, _ = read_run_files(run_dir)
    return copy_whole(run_dir, Path(data) / group_name(cfg.task, cfg.method), log)


def copy_whole(run_dir, dest: Path, log=print, names=GROUP_FILES) -> Path:
    """Copy the files `names` of `run_dir` to `dest` through a temporary folder, its marker and one rename."""
    tmp = dest.parent / f"{TMP}{dest.name}"
    shutil.rmtree(tmp, ignore_errors=True)  # a copy killed before its rename (the data folder is locked)
    for name in names:
        atomic_write(tmp / name, (Path(run_dir) / name).read_bytes())
    run_folder.mark_complete(tmp, names)
    if dest.exists():
        log(f"[data] {dest} holds an unfinished copy: moved to {run_folder.move_aside(dest)}")
    os.rename(tmp, dest)
    return dest


def merge_parts(parts, out) -> Path:
    """Write the group run folder `out` from its committed single-seed `parts` (in seed order): the
    parts' config (they must agree), their metrics stacked on the seed axis, their compile and run
    seconds summed (and the periods those seconds cover, `timed_periods`, where every part says), the
    machine they ran on (`machine`: the parts' one machine, or the list of theirs where they differ; left out
    where a part does not say) and its COMPLETE marker over GROUP_FILES. Returns `out`."""
    configs, metrics, seconds, timed, machines = [], [], dict(compile_seconds=0.0, run_seconds=0.0), [], []
    for p in parts:
        run_folder.check_complete(p, verify=GROUP_FILES)
        cfg, m = read_run_files(p)
        if len(m["eval/return"]) != 1:
            raise ValueError(f"{p} holds {len(m['eval/return'])} seeds: a part holds one")
        configs.append(cfg)
        metrics.append(m)
        payload = run_folder.read_json(Path(p) / METRICS, "metrics file")
        for k in seconds:
            seconds[k] += float(payload.get(k, 0.0))
        timed.append(payload.get("timed_periods"))
        machines.append(payload.get("machine"))
    if len(parts) != configs[0].seeds or any(c != configs[0] for c in configs):
        raise ValueError(f"the parts {[str(p) for p in parts]} are not the {configs[0].seeds} seeds of one config")
    merged = {k: np.concatenate([m[k] for m in metrics]) for k in metrics[0]}
    if None not in timed:  # parts written before timed_periods was recorded do not say
        seconds["timed_periods"] = sum(timed)
    if None not in machines:
        distinct = [m for i, m in enumerate(machines) if m not in machines[:i]]
        seconds["machine"] = distinct[0] if len(distinct) == 1 else distinct
    write_outputs(out, configs[0], merged, extra=dict(seconds, seed_parts=len(parts)))
    run_folder.mark_complete(out, GROUP_FILES)
    return Path(out)


def _train_in_parts(train, cfg: Config, runs: Path, data: Path, log, **kw) -> tuple[Path, bool]:
    """Train the group `cfg` seed by seed (each seed's key of `run.seed_keys(cfg)`), committing each part
    to `data` as it finishes and skipping those committed; merge them into OUT/runs/[setting/]parts/
    {task}-{method}/merged. Returns (that folder, whether every part was trained from the start here)."""
    keys, fresh = seed_keys(cfg), True
    for i in range(cfg.seeds):
        part = part_folder(data, cfg, i)
        if holds(part, cfg):
            log(f"[data] seed {i} of {group_name(cfg.task, cfg.method)} is committed ({part}): not trained again")
            fresh = False
            continue
        run_dir = part_folder(runs, cfg, i)
        fresh &= kw["overwrite"] or not run_dir.exists()
        train(cfg, out=run_dir, keys=keys[i:i + 1], **kw)
        log(f"[data] committed seed {i} of {cfg.seeds}: {copy_whole(run_dir, part, log)}")
    merged = part_folder(runs, cfg, 0).parent / "merged"
    shutil.rmtree(merged, ignore_errors=True)  # rebuilt from the committed parts every time
    return merge_parts([part_folder(data, cfg, i) for i in range(cfg.seeds)], merged), fresh


def reference_key(task: str) -> int:
    """The PRNG key of a task's references: its place in BENCHMARK_TASKS (as the benchmark always
    used), whatever subset of tasks a run asks for."""
    return BENCHMARK_TASKS.index(task) if task in BENCHMARK_TASKS else 100 + zlib.crc32(task.encode()) % 10_000


def references(base: Config, tasks, data, verbose: bool = True) -> dict:
    """{task: reference returns} under `base`'s task options, computed once into DATA/references.json."""
    out = {}
    for t in tasks:
        out |= task_references(base, [t], data, key=reference_key(t), verbose=verbose)
    return out


def _hms(seconds: float) -> str:
    m = int(round(seconds / 60))
    return f"{m // 60}h{m % 60:02d}m" if m >= 60 else f"{m}m"


def run_groups(settings, tasks, methods, out, data, resume: bool = False, overwrite: bool = False,
               chunk_periods: int = 8, checkpoint_every: int = 2, verbose: bool = True, train=None,
               seed_parts: bool = False, checkpoint_minutes: float = 10.0, estimate=None) -> dict:
    """Train every (setting, task, method) group not committed in `data` yet and commit each as soon
    as it finishes. Everything is validated and the references computed first; the data folder is
    locked while this runs. resume/overwrite are `run.run_training`'s, for the groups' run folders in
    OUT/runs. `train` (default `run.run_training`) is called as train(cfg, out=..., ...). seed_parts:
    train each group one seed at a time, committing each seed (see the module docstring); a group's
    parts are removed from `data` once the whole group is committed. checkpoint_every, checkpoint_minutes:
    the groups' checkpoints (`run.run_training`). SIGINT and SIGTERM stop the running group after its chunk
    with a checkpoint (or before the next group; committed groups are kept) and raise
    `awm_jax.runner.interrupt.Interrupted`; resume=True continues from there. estimate: when given,
    estimate(cfg, measured, seeds=n) -> the expected wall seconds of n seeds of the group `cfg` (all of them
    for None), `measured` {(method, horizon): (seconds, seed-ksteps)} of the groups this call trained from
    the start; the progress lines then say how long the rest should take.
    Returns {'skipped': [(folder, task, method)], 'trained': [...]}."""
    train = train or run_training
    log = print if verbose else (lambda *a, **k: None)
    for s in settings:  # every name and option before anything computes
        SweepSpec(base=s.base, tasks=tuple(tasks), methods=tuple(methods)).validate()
    data = ensure_folder(data)
    lock = FolderLock(data)
    try:
        with interrupt.watch():
            groups = [(s, cfg) for s in settings for cfg in s.groups(tasks, methods)]
            for stale in (p for s in settings for pattern in (f"{TMP}*", f"{PARTS}/*/{TMP}*")
                          for p in (data / s.folder).glob(pattern)):
                shutil.rmtree(stale, ignore_errors=True)  # copies killed before their rename (we hold the lock)
            done = [(s, cfg) for s, cfg in groups if committed(data / s.folder, cfg)]
            todo = [g for g in groups if g not in done]
            for s in settings:
                references(s.base, tasks, data / s.folder, verbose=verbose)
            names = [f"{s.folder + '/' if s.folder else ''}{group_name(c.task, c.method)}" for s, c in todo]
            seeds_left = [sum(not holds(part_folder(data / s.folder, c, i), c) for i in range(c.seeds))
                          if seed_parts else c.seeds for s, c in todo]  # committed parts are not trained again

            def about(first: int, measured: dict) -> str:
                """', about 1h05m': the estimated time of the groups from `first` on ('' without `estimate`)."""
                if estimate is None:
                    return ""
                left = zip(todo[first:], seeds_left[first:])
                return f", about {_hms(sum(estimate(c, measured, seeds=n) for (_, c), n in left))}"

            first_estimate = " (a first estimate)" if estimate is not None else ""
            log(f"[data] {len(done)}/{len(groups)} groups already committed in {data}; {len(todo)} to train"
                f"{about(0, {})}{first_estimate}: {', '.join(names) or 'none'}")
            measured, t_start = {}, time.time()
            kw = dict(chunk_periods=chunk_periods, checkpoint_every=checkpoint_every,
                      checkpoint_minutes=checkpoint_minutes, resume=resume, overwrite=overwrite, verbose=verbose)
            for i, (s, cfg) in enumerate(todo):
                interrupt.check(f"before group {s.folder + '/' if s.folder else ''}"
                                f"{group_name(cfg.task, cfg.method)} ({i + 1}/{len(todo)} to train; the committed "
                                "groups are kept)", out)
                runs, t0 = Path(out) / "runs" / s.folder, time.time()
                if seed_parts:
                    run_dir, fresh = _train_in_parts(train, cfg, runs, data / s.folder, log, **kw)
                else:
                    run_dir = runs / group_name(cfg.task, cfg.method)
                    fresh = overwrite or not run_dir.exists()  # a resumed run does not measure a rate
                    train(cfg, out=run_dir, **kw)
                dest = commit_group(run_dir, data / s.folder, log=log)
                if seed_parts:  # the group holds every seed now
                    shutil.rmtree(part_folder(data / s.folder, cfg, 0).parent)
                if fresh:
                    measured[(cfg.method, cfg.horizon)] = (time.time() - t0, cfg.seeds * cfg.env_steps / 1000)
                log(f"[data] committed {dest} ({time.time() - t0:.0f}s); {i + 1}/{len(todo)} groups done in "
                    f"{_hms(time.time() - t_start)}, {len(todo) - i - 1} left{about(i + 1, measured)}")
            key = lambda g: (g[0].folder, g[1].task, g[1].method)
            return dict(skipped=[key(g) for g in done], trained=[key(g) for g in todo])
    finally:
        lock.release()
