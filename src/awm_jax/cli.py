"""The `awm-jax` command line: `awm-jax tasks` (later issues add train and sweep)."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import re
import sys
import typing
from typing import Annotated

import tyro

import awm_envs
from awm_jax.analysis.benchmark import normalized_score, reference_returns
from awm_jax.core.config import Config, unread_message
from awm_jax.core.methods import method as method_named
from awm_jax.runner.interrupt import exit_on_interrupt
from awm_jax.runner.plots import plot_learning_curves
from awm_jax.runner.results import format_table, summary
from awm_jax.runner.run import run_training
from awm_jax.runner.run_folder import atomic_write
from awm_jax.runner.sharding import init_distributed, parse_seed_batch
from awm_jax.runner.sweep import SweepSpec, parse_list, run_sweep

CACHE_HELP = ("JAX's persistent compilation cache: 'auto' (default) keeps compiled programs in "
              "$XDG_CACHE_HOME/awm_jax/jax (~/.cache/awm_jax/jax), so a second run of the same config skips "
              "the compile; 'off' disables it; anything else is the cache folder")


def tasks() -> None:
    """List every control task: state/action/observation sizes, default horizon, step length dt, source."""
    print(format_table(awm_envs.table()))
    print(f"\n{len(awm_envs.names())} tasks. Observation = [distractors, state, t]; actions in [-1, 1].")


def train(config: Annotated[Config, tyro.conf.arg(name="")], preset: str = "default", out: str = "runs/train",
          chunk_periods: int = 8,
          checkpoint_every: int = 0, checkpoint_minutes: float = 10.0, keep: int = 2, resume: bool = False,
          overwrite: bool = False, shard: bool = True,
          compilation_cache: Annotated[str, tyro.conf.arg(help=CACHE_HELP)] = "auto", coordinator: str | None = None,
          num_processes: int | None = None, process_id: int | None = None, seed_batch: str = "auto") -> None:
    """Train `--seeds` seeds of one method on one task as a single vmapped program and write
    config.json, metrics.csv/json, returns.png, summary.txt, final_state/ and, last, COMPLETE to --out.

    --preset NAME starts from the method's named preset ("default"; "paper": the paper code's settings,
    for the BPO methods; "tuned": the fair benchmark's selection, where it finished), then applies the
    other flags. `awm-jax train --method NAME --help` lists the flags method NAME takes (traced ones only
    change numbers); a flag for a field the method does not read is refused, naming the method's own fields.

    The whole train state is saved under OUT/checkpoints (the last --keep kept) after the first chunk of
    --chunk-periods evaluation periods that ends --checkpoint-minutes (default 10; 0: off) after the start or
    the previous checkpoint, and with --checkpoint-every N every N chunks (and at the end); --resume
    continues from the newest intact checkpoint. Ctrl-C (SIGINT) or SIGTERM stops after the running chunk
    with a checkpoint and one line saying how to resume (exit status 130 or 143); a second one stops at
    once (docs/guide/training.md). A folder that already holds a run is refused unless --resume (continue
    it) or --overwrite (move it aside to OUT.old-<time>, then train afresh); one process writes a folder
    at a time. Seeds are laid over every device (--no-shard: one device).
    --seed-batch N computes N seeds together and the groups one after another (one device); "all" vmaps
    every seed; "auto" (default) is "all" except for the transformers on one CPU device (1: faster there).
    Several hosts: --coordinator HOST:PORT --num-processes N --process-id I on every process (or the
    cluster's environment variables that jax.distributed.initialize reads, with --coordinator auto)."""
    del preset  # applied to the config's defaults before the flags are parsed (`_with_method`)
    _distributed(coordinator, num_processes, process_id)
    _compilation_cache(compilation_cache)

    try:
        batch = parse_seed_batch(seed_batch)
    except ValueError as e:
        raise SystemExit(str(e)) from None
    run_training(config, out=out, chunk_periods=chunk_periods, checkpoint_every=checkpoint_every, keep=keep,
                 resume=resume, overwrite=overwrite, shard=shard, seed_batch=batch,
                 checkpoint_minutes=checkpoint_minutes)


def sweep(config: Annotated[Config, tyro.conf.arg(name="")], tasks: str = "cancer_treatment",
          methods: str = "awm_transformer,true_bptt", out: str = "runs/sweep", policy_lr_grid: str | None = None,
          model_lr_grid: str | None = None, entropy_grid: str | None = None, chunk_periods: int = 8,
          checkpoint_every: int = 0, checkpoint_minutes: float = 10.0, resume: bool = False, overwrite: bool = False,
          compilation_cache: Annotated[str, tyro.conf.arg(help=CACHE_HELP)] = "auto") -> None:
    """Sweep --tasks x --methods (comma-separated) with --seeds seeds each; the *-grid flags take
    comma-separated values whose product is vmapped with the seeds inside each (task, method) program.
    Writes per-combination folders like `train`, OUT/summary.csv, OUT/summary.md and OUT/{task}.png;
    --resume skips finished groups and continues unfinished ones from their checkpoints; --overwrite
    moves a previous sweep in OUT aside (to OUT.old-<time>) first. Checkpoints and Ctrl-C/SIGTERM as in
    `train` (the checkpoints are each group's, under OUT/groups/)."""
    grid = tuple((name, parse_list(text, float)) for name, text in
                 (("policy_lr", policy_lr_grid), ("model_lr", model_lr_grid), ("entropy", entropy_grid)) if text)
    spec = SweepSpec(config, parse_list(tasks), parse_list(methods), grid)
    _compilation_cache(compilation_cache)
    rows = run_sweep(spec, out, chunk_periods=chunk_periods, checkpoint_every=checkpoint_every, resume=resume,
                     overwrite=overwrite, checkpoint_minutes=checkpoint_minutes)
    print("\n" + format_table(rows))
    print(f"\nwrote {out}/summary.csv, {out}/summary.md and one plot per task")


def _flag_value(argv: list[str], flag: str) -> str | None:
    """The value the last `flag` in `argv` is given (`--flag V` or `--flag=V`; "" where none follows); None
    where `flag` is absent."""
    values = [a.split("=", 1)[1] if "=" in a else (argv[i + 1] if i + 1 < len(argv) else "")
              for i, a in enumerate(argv) if a == flag or a.startswith(flag + "=")]
    return values[-1] if values else None


def field_help() -> dict[str, str]:
    """Each Config field's help: the comment after it in its field group's source, the text tyro shows for
    Config itself."""
    comment = re.compile(r"^    (\w+): [^#]*#\s?(.*)$")
    return {m[1]: m[2] for cls in Config.__mro__ if dataclasses.is_dataclass(cls)
            for m in map(comment.match, inspect.getsource(cls).splitlines()) if m}


def method_flags(base: Config) -> type:
    """A dataclass of the fields `base.method` reads (`Method.reads`; every field where it declares none),
    defaulting to `base`'s values, with Config's help and static/traced marks: `train`'s flags for that method,
    so that `awm-jax train --method NAME --help` lists only what applies."""
    reads = method_named(base.method).reads or tuple(f.name for f in dataclasses.fields(Config))
    hints, helps = typing.get_type_hints(Config), field_help()
    helps["method"] += "; `--method NAME --help` lists the flags NAME takes"
    traced = set(Config.traced_fields())
    return dataclasses.make_dataclass(f"{base.method}_flags", [
        (f, Annotated[hints[f], tyro.conf.arg(help=helps.get(f, "") + (" (traced)" if f in traced else ""))],
         dataclasses.field(default=getattr(base, f))) for f in reads], frozen=True)


def unread_flags(argv: list[str], name: str) -> dict[str, str]:
    """{field: value as written} of the Config flags in `argv` that method `name` does not read."""
    reads = method_named(name).reads
    if reads is None:
        return {}
    hints = typing.get_type_hints(Config)
    stray = {}
    for i, a in enumerate(argv):
        if not a.startswith("--"):
            continue
        flag, eq, value = a.removeprefix("--").partition("=")
        key = flag.replace("-", "_")
        if key.startswith("no_") and hints.get(key[3:]) is bool:
            key, value = key[3:], "False"
        elif hints.get(key) is bool and not eq:
            value = "True"
        elif not eq:
            value = argv[i + 1] if i + 1 < len(argv) else ""
        if key in hints and key not in reads:
            stray[key] = value
    return stray


def _with_method(argv: list[str]) -> dict:
    """COMMANDS, with `train` taking the flags of the method `argv` names (--method, default Config's), at the
    values of the preset it names (--preset, default "default"), so that `--help` shows that method's flags,
    the other flags apply on top of the preset, and a flag the method does not read is refused before parsing."""
    if argv[:1] != ["train"]:
        return COMMANDS
    base = Config.preset(_flag_value(argv, "--method") or Config.method, _flag_value(argv, "--preset") or "default")
    stray = unread_flags(argv, base.method)
    if stray:
        raise ValueError(unread_message(base.method, stray))
    flags = method_flags(base)

    @functools.wraps(train)
    def train_method(config, **kwargs):
        return train(dataclasses.replace(base, **dataclasses.asdict(config)), **kwargs)

    del train_method.__wrapped__  # tyro reads the annotations and defaults below, not train's
    annotation = Annotated[flags, tyro.conf.arg(name="")]
    train_method.__annotations__ = {**typing.get_type_hints(train, include_extras=True), "config": annotation}
    sig = inspect.signature(train)
    train_method.__signature__ = sig.replace(parameters=[
        p.replace(default=flags(), annotation=annotation) if p.name == "config" else p
        for p in sig.parameters.values()])
    return {**COMMANDS, "train": train_method}


def _distributed(coordinator: str | None, num_processes: int | None, process_id: int | None) -> None:
    """Start multi-host JAX when asked (before anything touches a device)."""
    if coordinator is not None:
        init_distributed(None if coordinator == "auto" else coordinator, num_processes, process_id)


def cache_folder(setting: str) -> str | None:
    """The persistent compilation cache folder of a --compilation-cache setting (None: off)."""
    import os

    if setting == "off":
        return None
    if setting == "auto":
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        return os.path.join(base, "awm_jax", "jax")
    return setting


def _compilation_cache(setting: str) -> None:
    """Switch on JAX's persistent compilation cache (see CACHE_HELP) for programs that take >= 1 s to compile."""
    path = cache_folder(setting)
    if path:
        import jax

        jax.config.update("jax_compilation_cache_dir", path)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def quickstart(out: str = "runs/quickstart", seeds: int = 4, total_steps: int = 1200, warmup_steps: int = 400,
               overwrite: bool = False,
               compilation_cache: Annotated[str, tyro.conf.arg(help=CACHE_HELP)] = "auto") -> None:
    """The README's main job: a small sweep (cancer_treatment; true_bptt and awm_transformer;
    a shortened schedule) that finishes in minutes on a laptop CPU, then prints and plots the result.
    Runs already finished in --out are reused (--overwrite moves them aside and trains again)."""
    from pathlib import Path

    import jax
    import numpy as np

    _compilation_cache(compilation_cache)
    rows = []
    for method in ("true_bptt", "awm_transformer"):
        cfg = Config(task="cancer_treatment", method=method, seeds=seeds, total_steps=total_steps,
                     warmup_steps=warmup_steps)
        _, metrics = run_training(cfg, out=Path(out) / method, resume=not overwrite, overwrite=overwrite)
        rows.append((method, metrics))
    ref = reference_returns(awm_envs.make("cancer_treatment"), jax.random.PRNGKey(1))
    table = []
    for m, x in rows:
        sm = summary(x)
        table.append(dict(method=m, first_eval=float(np.asarray(x["eval/return"])[:, 0].mean()),
                          **{**sm, "skipped": " ".join(map(str, sm["skipped"]))},
                          gap_share=float(normalized_score(sm["mean"], ref["random"], ref["best"]))))
    text = (format_table(table) + f"\n\nrandom policy {ref['random']:.4g}, best constant action "
            f"{ref['best_constant']:.4g}, best open-loop plan {ref['trajectory_opt']:.4g}; gap_share = (final mean - "
            "random) / (best - random), the share of the gap from a random policy to the best plan closed")
    print("\n" + text)
    atomic_write(Path(out) / "summary.txt", text + "\n")
    refs = {"random policy": ref["random"], "best constant action": ref["best_constant"], "best plan": ref["best"]}
    _plot_methods(Path(out) / "returns.png", rows, refs, warmup_steps)
    print(f"\nwrote {out}/summary.txt and {out}/returns.png")


def _plot_methods(path, rows, references, warmup_steps) -> None:
    plot_learning_curves(path, [(method, m["eval/env_steps"][0], m["eval/return"]) for method, m in rows],
                         title="cancer_treatment", references=references, warmup_steps=warmup_steps)


COMMANDS = {"tasks": tasks, "train": train, "sweep": sweep, "quickstart": quickstart}
TRAINING = ("train", "sweep", "quickstart")  # the commands that stop cleanly on SIGINT and SIGTERM


def resume_command(argv: list[str]) -> str:
    """The command line that continues an interrupted `awm-jax` command: the same arguments without
    --overwrite, with --resume (quickstart resumes by itself)."""
    import shlex

    args = [a for a in argv if a not in ("--overwrite", "--overwrite=True")]
    if argv[:1] != ["quickstart"] and "--resume" not in args:
        args.append("--resume")
    return shlex.join(["awm-jax", *args])


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `awm-jax` console script."""
    argv = sys.argv[1:] if argv is None else argv
    training = argv[:1] and argv[0] in TRAINING and not {"-h", "--help"} & set(argv)
    try:
        with exit_on_interrupt(resume_command(argv)) if training else contextlib.nullcontext():
            tyro.extras.subcommand_cli_from_dict(_with_method(argv), args=argv, prog="awm-jax")
    except ValueError as e:  # configuration and run-folder errors: say what is wrong, no traceback
        sys.exit(f"awm-jax: error: {e}")
    except OSError as e:  # filesystem errors (disk full, permissions, --out a file): the path and the cause
        sys.exit(f"awm-jax: error: {os_error_line(e)}")


def os_error_line(e: OSError) -> str:
    """'PATH: cause' of an OSError (its text alone when it names no path)."""
    if e.filename is not None and e.strerror:
        return f"{e.filename}: {e.strerror}"
    return str(e)


if __name__ == "__main__":
    main()
