"""What the experiment scripts (experiments/*.py) share that belongs to this paper's pipeline, not to the
library:

    options       `BenchmarkOptions` (the benchmark experiments kept as data, read by tyro like the `awm-jax`
                  command line), `data_arg` (its --data help naming an experiment's committed folder),
                  `quick_defaults` (--quick's values for the options left at their defaults), `setting_args`,
                  `tiny_runs` (the diagnostics scripts' --quick runs), `hidden_sizes` (a world model's size
                  from a script's --rnn-hidden)
    settings      `QUICK`, `QUICK_CONFIG` and `base_config` (the Config every run of an experiment shares),
                  `report_scope` and `report_settings` (what a report covers), `REFERENCE` (the method the
                  reports compare every other one with: the paper's transformer AWM)
    time          `estimate` (a group's expected wall time from the 2-core CPU's measured per-method rates,
                  `SECONDS_PER_SEED_KSTEP`, scaled by `horizon_factor`) for the progress lines of
                  `committed.run_groups` and `tuning.run_tuning`
    running       `run_experiment`: train what a benchmark experiment's data folder lacks, stopping on a bad
                  combination of options as a command-line parser does (exit status 2)

The scripts import it as `pipeline` (`python experiments/NAME.py` puts experiments/ on the path; the
tests add it there too).
"""

from __future__ import annotations

import dataclasses
import shlex
import sys
from pathlib import Path
from typing import Annotated

import tyro

from awm_jax.analysis.committed import run_groups
from awm_jax.core.config import BPO_METHODS, Config
from awm_jax.core.models import KINDS, SSMAWM, RecurrentAWM
from awm_jax.runner.interrupt import exit_on_interrupt
from awm_jax.runner.run import run_training

REFERENCE = "awm_transformer"  # the reports' probability of improvement and change against it

# -- options ----------------------------------------------------------------------------------------
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
    folder = Path(folder)
    for method in methods:
        cfg = Config(task=task, method=method, seeds=2, total_steps=total_steps, warmup_steps=400, eval_every=32,
                     model_batch=16, imagined_rollouts=4, width=16, heads=2, layers=1)
        run_training(cfg, out=folder / f"{task}-{method}", resume=True, verbose=False)
    return folder


def hidden_sizes(kind: str, rnn_hidden: int) -> dict:
    """The size options of world model `kind` that a script's --rnn-hidden sets: {"hidden": rnn_hidden} for the
    kinds whose width a Config's `rnn_hidden` gives (the recurrent AWMs and the state-space AWM, as their
    `config_sizes` read it), {} for the others."""
    return {"hidden": rnn_hidden} if issubclass(KINDS[kind][0], (RecurrentAWM, SSMAWM)) else {}


# -- settings ---------------------------------------------------------------------------------------
def report_scope(args, tasks, methods, default_tasks, default_methods) -> tuple[list, list]:
    """The tasks and methods a report covers: every group the experiment defines (its default tasks and
    methods) and any others asked for, so that a run that trains a few groups rewrites the whole report
    from everything committed; with --quick, only what it ran."""
    if args.quick:
        return list(tasks), list(methods)
    return list(dict.fromkeys([*default_tasks, *tasks])), list(dict.fromkeys([*default_methods, *methods]))


def report_settings(args, data, asked, defined) -> list:
    """The settings a report covers: those asked for, and every setting the experiment defines (its
    default settings) whose folder the data folder holds, defined ones first, so that a run of a few
    settings (`--horizons 800`) rewrites the whole report from everything committed instead of a report of
    those settings alone; with --quick, only those asked for."""
    if args.quick:
        return list(asked)
    mine = {s.folder: s for s in asked}
    kept = [mine.pop(s.folder, s) for s in defined if s.folder in mine or (Path(data) / s.folder).is_dir()]
    return kept + list(mine.values())


QUICK = dict(total_steps=400, warmup_steps=200, horizon=20, eval_every=64)
# the Config overrides of the experiments' --quick: the short episodes and schedule above, small batches
QUICK_CONFIG = dict(QUICK, model_batch=8, imagined_rollouts=4, gradient_cosine=False)


def base_config(args, **overrides):
    """The Config every run of an experiment shares (quick mode: short episodes and schedule)."""
    kw = dict(seeds=args.seeds, total_steps=args.total_steps, warmup_steps=args.warmup_steps,
              model_batch=args.model_batch)
    if args.quick:
        kw.update(QUICK_CONFIG)
    kw.update(overrides)
    return Config(**kw)


# -- time -------------------------------------------------------------------------------------------
# Rough wall seconds per seed per 1,000 env steps at H = 100 on the 2-core CPU (4 vmapped seeds), plus
# COMPILE_SECONDS a group, for the first estimate only: once a group of a method finishes, this run's
# measured time takes over, and the others are scaled by how far the measured groups were off. The
# medians over the 8 tasks of the committed benchmark groups (docs/data/myriad_benchmark, run_seconds /
# (4 seeds x 5.02 ksteps); the CPU was sometimes shared, so a method's slowest task ran up to 3x its median).
SECONDS_PER_SEED_KSTEP = dict(awm_transformer=28.0, hwm_transformer=30.0, awm_rnn=4.0, awm_gru=4.6, awm_lstm=5.4,
                              awm_ssm=23.0, markov_mlp=2.6, markov_svg=0.6, true_bptt=0.3, sac=3.1, ppo=0.3, td3=4.2,
                              online_dt=33.0)
TRANSFORMER_METHODS = ("awm_transformer", "hwm_transformer")  # attention over the episode: cost grows as H^2
COMPILE_SECONDS = 20.0  # compiling a group's program: 6-40 s on the 2-core CPU


def horizon_factor(method: str, horizon: int | None) -> float:
    """How a group's time grows with the episode length, relative to H = 100: the BPO methods' updates
    cost in proportion to H, and the transformers' attention adds a part in proportion to H^2 (x =
    H/100: x (1 + x) / 2, so 1, 10 and 36 at H 100, 400 and 800; measured on the 2-core CPU at H 800 in
    seed parts, a seed took 3,500-3,900 s for awm_transformer and 5,700-7,800 s for hwm_transformer, whose
    imagination runs step by step over a key/value cache: 25-28 and 38-52 times the seed's share of an H 100
    benchmark group); the model-free baselines' cost does not depend on H."""
    if method not in BPO_METHODS:
        return 1.0
    x = (horizon or 100) / 100
    return x * (1 + x) / 2 if method in TRANSFORMER_METHODS else x


def estimate(cfg: Config, measured: dict, seeds: int | None = None) -> float:
    """Expected wall seconds of the group `cfg`, or of `seeds` of its seeds (those not committed as
    parts yet). `measured` is {(method, horizon): (seconds, seed-ksteps)} of the groups this run trained
    from the start: a group of the same method and horizon is scaled by its seed-ksteps; otherwise the
    table's estimate (its rate scaled by `horizon_factor`, plus the compile) times the ratio of the
    measured groups' total time to their tabled total."""
    ksteps = (cfg.seeds if seeds is None else seeds) * cfg.env_steps / 1000
    key = (cfg.method, cfg.horizon)
    if key in measured:
        seconds, k = measured[key]
        return seconds * ksteps / k
    table = lambda method, horizon, k: COMPILE_SECONDS + SECONDS_PER_SEED_KSTEP.get(method, 20.0) * k * horizon_factor(
        method, horizon)
    factor = (sum(s for s, _ in measured.values()) / sum(table(*g, k) for g, (_, k) in measured.items())
              if measured else 1.0)
    return table(*key, ksteps) * factor


# -- running ----------------------------------------------------------------------------------------
def _usage_error(message: str):
    """Stop like a command-line parser does on a bad combination of options (exit status 2)."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def run_experiment(args, settings, tasks, methods) -> Path:
    """Train the groups of `settings` x tasks x methods not committed in the data folder yet (unless
    --data-only) and return the data folder; the caller writes the report from it. `args`: the
    experiment's options (`BenchmarkOptions`). SIGINT or SIGTERM stops the
    training as `awm-jax train` does: the running group after its chunk, with a checkpoint, and one line
    naming the command that resumes (exit status 130 or 143)."""
    if not args.data_only and not args.out:
        _usage_error("--out is required to train (or pass --data-only to regenerate the report from --data)")
    if args.data_only and not (args.data or args.out):
        _usage_error("--data-only needs --data (the data folder)")
    data = Path(args.data or args.out)
    if args.data_only and not data.is_dir():
        _usage_error(f"--data {data} is not a folder")
    if not args.data_only:
        argv = [a for a in sys.argv if a not in ("--overwrite", "--overwrite=True")]
        resume = shlex.join(["python", *argv, *(["--resume"] if "--resume" not in argv else [])])
        with exit_on_interrupt(resume, prefix=""):
            run_groups(settings, tasks, methods, args.out, data, resume=args.resume, overwrite=args.overwrite,
                       chunk_periods=args.chunk_periods, checkpoint_every=args.checkpoint_every,
                       checkpoint_minutes=args.checkpoint_minutes, seed_parts=args.seed_parts, estimate=estimate)
    return data
