"""What awm_jax's XLA CPU scheduler workaround costs (`awm_jax.runner.xla_cpu`): the model update of each
method timed with XLA's concurrency-optimised scheduler off (awm_jax's setting) and on (XLA's default),
its seeds computed as `awm-jax train` computes them on this device (`awm_jax.runner.sharding.seed_map`).

    python experiments/bench_xla_scheduler.py --out runs/xla_scheduler [--methods ...] [--seeds 4] [--reps 3]

Each (method, setting) runs in a subprocess of its own with a time limit: with the scheduler on, the
recurrent AWMs stalled for ever on jaxlib 0.10.2 (see xla_cpu.py), and a stall is reported as such.
Writes scheduler.md to --out: ms per model update per seed, each setting, and their ratio.
"""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import tyro

from awm_jax.runner.results import format_table
from awm_jax.runner.run_folder import atomic_write

PROBE = r"""
import json, sys, time
import jax
from awm_jax.core.config import Config
from awm_jax.runner import xla_cpu
from awm_jax.runner.sharding import default_seed_batch, seed_map
from awm_jax.core.methods import make_train
method, seeds, reps, on = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "on"
L = make_train(Config(method=method, task="cancer_treatment", seeds=seeds))
batch = default_seed_batch(method, 1)
keys = jax.random.split(jax.random.PRNGKey(0), seeds)
state = jax.jit(seed_map(L.init, batch))(keys)
updates = L.config.policy_every // L.config.model_every
loop = lambda s, k: jax.lax.scan(L._model_update, s, jax.random.split(k, updates))[0]
run = jax.jit(seed_map(loop, batch)).lower(state, keys).compile(compiler_options={xla_cpu.FLAG: on})
jax.block_until_ready(run(state, keys))
ts = []
for _ in range(reps):
    t = time.perf_counter()
    jax.block_until_ready(run(state, keys))
    ts.append((time.perf_counter() - t) / updates / seeds)
print(json.dumps({"ms": 1e3 * min(ts), "batch": batch}))
"""


@dataclasses.dataclass(kw_only=True)
class Options:
    out: str
    """folder for scheduler.md"""
    methods: str = "awm_transformer,hwm_transformer,awm_lstm,awm_gru,markov_mlp"
    """comma-separated methods (world-model learners: their model update is timed)"""
    seeds: int = 4
    """seeds per program"""
    reps: int = 3
    """timed calls of 8 model updates each (the best is kept)"""
    timeout: int = 300
    """seconds before a (method, setting) counts as stalled"""


def probe(method: str, seeds: int, reps: int, on: bool, timeout: int) -> dict:
    try:
        out = subprocess.run([sys.executable, "-c", PROBE, method, str(seeds), str(reps), "on" if on else "off"],
                             capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"ms": None, "note": f"stalled (> {timeout} s)"}
    if out.returncode:
        return {"ms": None, "note": out.stderr.strip().splitlines()[-1][:100]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    args = tyro.cli(Options, args=argv, description=__doc__)
    rows = []
    for m in args.methods.split(","):
        off, on = (probe(m, args.seeds, args.reps, flag, args.timeout) for flag in (False, True))
        ratio = None if off["ms"] is None or on["ms"] is None else round(on["ms"] / off["ms"], 3)
        rows.append(dict(method=m, seed_batch=off.get("batch") or "all", ms_off=off["ms"] and round(off["ms"], 2),
                         ms_on=on["ms"] and round(on["ms"], 2), on_over_off=ratio,
                         note=on.get("note") or off.get("note") or ""))
        print(rows[-1], flush=True)
    text = (f"model update, ms per seed ({args.seeds} seeds per program, best of {args.reps}); off: "
            "--xla_cpu_enable_concurrency_optimized_scheduler=false (awm_jax's setting), on: XLA's default\n\n"
            + format_table(rows))
    print(text)
    atomic_write(Path(args.out) / "scheduler.md", text + "\n")


if __name__ == "__main__":
    main()
