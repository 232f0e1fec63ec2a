"""The command-line options the experiment scripts (experiments/*.py) share, read by tyro like the
`awm-jax` command line: `BenchmarkOptions` (the benchmark experiments kept as data), `data_arg` (its
--data help naming an experiment's committed folder) and `quick_defaults` (--quick's values for the
options left at their defaults)."""

from __future__ import annotations

import dataclasses
from typing import Annotated

import tyro

from awm_jax.core.config import Config
from awm_jax.runner.run import run_training

_DATA_HELP = ("data folder: each finished group's small files (skipped when already there), references.json, "
              "scores.csv, tables and figures (default: --out; the committed one: {data})")


def data_arg(data: str):
    """--data's annotation for an experiment whose committed data folder is `data`:
    `data: Annotated[str | None, data_arg(DATA)] = None` in its BenchmarkOptions subclass."""
    return tyro.conf.arg(help=_DATA_HELP.format(data=data), help_behavior_hint="")  # the help names the default


@dataclasses.dataclass(kw_only=True)
class BenchmarkOptions:
    """The options every benchmark experiment shares (tyro reads each field's docstring, or the help in its
    annotation, as the flag's help).

    An experiment subclasses it to give --tasks, --methods and --seeds their defaults, name its committed
    data folder in --data's help (`data_arg`) and add its own options."""

    out: Annotated[str | None, tyro.conf.arg(help=(
        "training folder: OUT/runs/[setting/]{task}-{method}/ is each group's run folder (checkpoints, final "
        "state); needed unless --data-only"))] = None
    data: Annotated[str | None, data_arg("the experiment's data folder")] = None
    data_only: bool = False
    """train nothing: regenerate scores.csv, the tables and figures from --data alone"""
    quick: bool = False
    """a few minutes on a laptop CPU (smoke test)"""
    tasks: str
    """comma-separated task names"""
    methods: str
    """comma-separated methods"""
    seeds: int
    """seeds per (task, method), vmapped"""
    total_steps: int = 5000
    """env steps per run (paper: 5000)"""
    warmup_steps: int = 1500
    """env steps before any update (paper: 1500)"""
    model_batch: int = 64
    """episodes per world-model batch (paper: 64)"""
    resume: Annotated[bool, tyro.conf.arg(help=(
        "continue the groups' interrupted runs in --out from their checkpoints (finished ones: their saved "
        "results)"))] = False
    overwrite: bool = False
    """move each group's run folder in --out aside and train it afresh (committed groups are never retrained)"""
    checkpoint_every: int = 2
    """save a group's whole train state every N chunks of --chunk-periods evaluations, for --resume"""
    checkpoint_minutes: float = 10.0
    """also save it after the first chunk that ends this many minutes after the previous save (0: off)"""
    chunk_periods: int = 8
    """evaluation periods per compiled chunk"""
    seed_parts: bool = False
    """train each group one seed at a time and commit each seed as it finishes (merged into the group once
    all are in): a group longer than the machine is held for is done over several sessions"""
    reps: int = 2000
    """bootstrap resamples of the confidence intervals"""


def quick_defaults(args, **values):
    """`args` (an experiment's options dataclass) with --quick's `values` for the options still at their
    defaults: what the command line sets explicitly is kept."""
    default = {f.name: f.default for f in dataclasses.fields(args)}
    return dataclasses.replace(args, **{k: v for k, v in values.items() if getattr(args, k) == default[k]})


def setting_args(settings: dict):
    """For scripts with full and --quick settings ({"full": {...}, "quick": {...}}): a function
    `key -> annotation` for each option of the settings, whose help names both defaults (the option's
    None default keeps the chosen setting's value)."""
    return lambda key: tyro.conf.arg(help=f"default {settings['full'][key]} (quick: {settings['quick'][key]})",
                                     help_behavior_hint="")


def tiny_runs(folder, methods, total_steps: int = 800, task: str = "cancer_treatment"):
    """Train tiny runs of `methods` on `task` (2 seeds, small networks and batches; seconds each) into
    FOLDER/{task}-{method}, the layout the diagnostics scripts read; a finished one is kept. Returns
    FOLDER as a Path (the diagnostics scripts' --quick)."""
    from pathlib import Path

    folder = Path(folder)
    for method in methods:
        cfg = Config(task=task, method=method, seeds=2, total_steps=total_steps, warmup_steps=400, eval_every=32,
                     model_batch=16, imagined_rollouts=4, width=16, heads=2, layers=1)
        run_training(cfg, out=folder / f"{task}-{method}", resume=True, verbose=False)
    return folder
