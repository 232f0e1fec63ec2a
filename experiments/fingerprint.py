"""A fixed-seed fingerprint of every method: run a small schedule, keep every metric, compare two runs.

    python experiments/fingerprint.py --out runs/fp_before            # before a refactor
    python experiments/fingerprint.py --out runs/fp_after --compare runs/fp_before
    python experiments/fingerprint.py --out /tmp/fp --quick      # 3 methods: awm_transformer, true_bptt, sac

Each method runs the same small schedule (cancer_treatment, 200 warm-up steps, 3 evaluation periods,
2 vmapped seeds, small networks) from PRNGKey(0). `--compare` prints, per method, whether every metric
is bit-identical to the other folder's, or else the largest difference relative to the metric's scale,
so a change that should not alter results can say so per method (bit for bit, or float32 rounding).
"""

import dataclasses
import json
from pathlib import Path
from typing import Annotated

import jax
import numpy as np
import tyro

from awm_jax import Config, make_train
from awm_jax.analysis.options import quick_defaults
from awm_jax.config import METHODS

SMALL = dict(task="cancer_treatment", total_steps=392, warmup_steps=200, eval_every=64, model_batch=16,
             imagined_rollouts=4, width=16, heads=2, layers=1, rnn_hidden=16, ssm_state=8, rl_hidden=(32, 32))
QUICK_METHODS = "awm_transformer,true_bptt,sac"  # a world model, the true gradient, a model-free baseline


@dataclasses.dataclass(kw_only=True)
class Options:
    out: str
    """folder for one .npz of metrics per method"""
    methods: Annotated[str, tyro.conf.arg(help="comma-separated methods (default: all)", help_behavior_hint="")] = (
        ",".join(METHODS))
    compare: str | None = None
    """a folder written earlier by this script: print the differences"""
    quick: Annotated[bool, tyro.conf.arg(help=(
        f"smoke test (about a minute on a laptop CPU): only {QUICK_METHODS} (a world model, the true gradient, a "
        "model-free baseline) unless --methods is given; the same schedule, so their files compare with a full "
        "fingerprint's"))] = False


def fingerprint(method: str, seeds: int = 2) -> dict:
    """{metric name: [seeds, periods] array} of `method` on the small schedule."""
    trainer = make_train(Config(method=method, **SMALL))
    _, metrics = jax.jit(jax.vmap(trainer))(jax.random.split(jax.random.PRNGKey(0), seeds))
    return {k: np.asarray(v) for k, v in metrics.items()}


def compare(a: dict, b: dict) -> str:
    """'bit-identical', or the largest |a - b| / (max |a| + tiny) over shared metrics, naming the worst."""
    if set(a) != set(b):
        return f"different metrics: only before {sorted(set(a) - set(b))}, only after {sorted(set(b) - set(a))}"
    if all(np.array_equal(a[k], b[k], equal_nan=True) for k in a):
        return "bit-identical"
    worst = max(a, key=lambda k: _rel(a[k], b[k]))
    return f"max relative difference {_rel(a[worst], b[worst]):.2e} ({worst})"


def _rel(x, y) -> float:
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return float(np.nanmax(np.abs(x - y)) / (np.nanmax(np.abs(x)) + 1e-30)) if x.size else 0.0


def main(argv=None) -> None:
    args = tyro.cli(Options, args=argv, description=__doc__.splitlines()[0])
    if args.quick:
        args = quick_defaults(args, methods=QUICK_METHODS)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for method in args.methods.split(","):
        metrics = fingerprint(method)
        np.savez(out / f"{method}.npz", **metrics)
        line = f"{method:16s} final return {metrics['eval/return'][:, -1].round(4).tolist()}"
        if args.compare:
            with np.load(Path(args.compare) / f"{method}.npz") as before:
                line += "  " + compare(dict(before), metrics)
        print(line, flush=True)
        rows.append(line)
    (out / "summary.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
