"""What the experiment scripts share that is about running them as commands, not about the library:
`run_experiment` trains what a benchmark experiment's data folder lacks and stops on a bad combination of
options as a command-line parser does (exit status 2).

The scripts import it as `pipeline` (`python experiments/NAME.py` puts experiments/ on the path; the
tests add it there too).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from awm_jax.analysis.committed import run_groups
from awm_jax.runner.interrupt import exit_on_interrupt


def _usage_error(message: str):
    """Stop like a command-line parser does on a bad combination of options (exit status 2)."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def run_experiment(args, settings, tasks, methods) -> Path:
    """Train the groups of `settings` x tasks x methods not committed in the data folder yet (unless
    --data-only) and return the data folder; the caller writes the report from it. `args`: the
    experiment's options (`awm_jax.analysis.options.BenchmarkOptions`). SIGINT or SIGTERM stops the
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
                       checkpoint_minutes=args.checkpoint_minutes, seed_parts=args.seed_parts)
    return data
