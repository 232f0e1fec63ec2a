"""Seeds vs throughput on the current devices, per method, with the time of each phase, and the
transformer AWM's distance from the FLOP limit measured in the same run.

    python experiments/bench_scaling.py --out runs/scaling [--methods awm_transformer,awm_lstm,awm_ssm,true_bptt]
        [--seeds 1,2,4,8,16] [--task cancer_treatment] [--reps 3]
    python experiments/bench_scaling.py --out /tmp/scaling --quick     # about two minutes: 2 methods, 1 and 2 seeds
    python experiments/bench_scaling.py --out runs/gpu --max-seeds 1024   # an accelerator: 1, 2, 4, ... seeds until
                                                                          # memory runs out

For each method and seed count, each phase of a block is compiled alone (vmapped over the seeds, laid
over all devices) and timed: env steps (16 with the policy), world-model updates (8), imagination +
policy update (1), evaluation episode (1), and the compile time of the whole trainer. From these the
per-seed time of the paper's schedule (1,500 warm-up steps, then 220 blocks and 55 evaluations) is
estimated. The script also measures this machine's sustained matmul throughput on the transformer's
shapes (200 matmuls in one compiled loop) and, for every method, the FLOPs of one model and one policy
update, and prints each method's ratio of the per-seed time to its own FLOP limit (schedule FLOPs /
sustained FLOP/s), as shared PEER.md defines it. An update's FLOPs are the larger of XLA's cost analysis
(PEER.md's count; it counts a loop's body once) and the matmul FLOPs of its jaxpr with every loop body
counted as often as it runs (`awm_jax.analysis.flops`): the recurrent models' updates are loops.

The seeds of a row are computed as `awm-jax train` computes them (`--seed-batch auto`: the transformers
one seed after another on one CPU device, see `awm_jax.runner.sharding.seed_map`); `--seed-batch all`
vmaps them all.

Each row also gives the whole trainer program's memory (XLA's memory analysis of the compiled program:
arguments + outputs + temporaries, minus what outputs alias) and that per seed. `--max-seeds N` replaces
--seeds by 1, 2, 4, ... up to N and stops a method's doubling at the first seed count whose program does
not fit in the device's memory (RESOURCE_EXHAUSTED at compile or run time), which it reports. The last
table estimates the wall time of the full Myriad benchmark (8 tasks x 13 methods, `experiments/
myriad_benchmark.py`) at each seed count, from the measured methods' schedule times: one program per
(task, method) with all its seeds vmapped, methods not measured here counted at the mean of those that
were (an estimate, labelled as such).
"""

import dataclasses
import time
from pathlib import Path
from typing import Annotated

import jax
import tyro

from awm_jax.analysis.flops import matmul_flops
from awm_jax.core.config import Config
from awm_jax.core.methods import make_train
from awm_jax.runner.results import format_table
from awm_jax.runner.run_folder import atomic_write
from awm_jax.runner.sharding import SeedSharding, default_seed_batch, parse_seed_batch, seed_map
from pipeline import QUICK_CONFIG, quick_defaults

QUICK_HELP = ("smoke test (about two minutes on a laptop CPU): awm_transformer and true_bptt at 1 and 2 seeds with 1 "
              "repetition unless --methods, --seeds or --reps are given, on the benchmark experiments' quick schedule "
              "and sizes (20-step episodes, 400 env steps of which 200 warm-up, small batches), which the estimates "
              "then are for")


@dataclasses.dataclass(kw_only=True)
class Options:
    out: str
    """folder for scaling.md"""
    methods: str = "awm_transformer,awm_lstm,awm_ssm,true_bptt"
    """comma-separated methods (each is compared with its own FLOP limit)"""
    seeds: str = "1,2,4,8,16"
    """comma-separated numbers of seeds"""
    task: str = "cancer_treatment"
    """the task to train on"""
    reps: int = 3
    """timed repetitions of each phase (after one untimed call)"""
    seed_batch: str = "auto"
    """seeds computed together: auto (each method's default on this device), all (vmapped), or N"""
    max_seeds: int | None = None
    """time 1, 2, 4, ... seeds up to this many (replaces --seeds), each method until memory runs out"""
    quick: Annotated[bool, tyro.conf.arg(help=QUICK_HELP)] = False


BENCHMARK_TASKS, BENCHMARK_METHODS = 8, 13  # the Myriad benchmark's groups (experiments/myriad_benchmark.py)


def seed_counts(seeds: str, max_seeds: int | None) -> list[int]:
    """The seed counts to time: `seeds` as listed, or powers of two up to `max_seeds`."""
    if max_seeds is None:
        return [int(s) for s in seeds.split(",")]
    if max_seeds < 1:
        raise SystemExit(f"--max-seeds must be >= 1, got {max_seeds}")
    return [2 ** i for i in range(max_seeds.bit_length()) if 2 ** i <= max_seeds]


def out_of_memory(error: Exception) -> bool:
    """Whether an XLA error says the program did not fit in device memory."""
    text = str(error)
    return "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower()


def program_bytes(compiled) -> int | None:
    """Peak-memory estimate of a compiled program from XLA's memory analysis (None where the backend
    gives none): arguments + outputs + temporaries - output bytes that alias arguments."""
    m = compiled.memory_analysis()
    if m is None:
        return None
    return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes)


def benchmark_estimates(rows: list[dict]) -> list[dict]:
    """Estimated wall time of the full Myriad benchmark at each seed count measured for every method:
    BENCHMARK_TASKS x (the measured methods' schedule_s + compile_s, the unmeasured ones at their mean)."""
    methods = sorted({r["method"] for r in rows})
    out = []
    for n in sorted({r["seeds"] for r in rows}):
        per = [r["schedule_s"] + r["compile_s"] for r in rows if r["seeds"] == n]
        if len(per) < len(methods):
            continue  # some method did not fit at this count
        total = BENCHMARK_TASKS * (sum(per) + (BENCHMARK_METHODS - len(per)) * sum(per) / len(per))
        out.append(dict(seeds=n, measured_methods=len(per), benchmark_s=round(total, 1),
                        benchmark_h=round(total / 3600, 2)))
    return out


def _time(fn, *args, reps=3):
    jax.block_until_ready(fn(*args))
    t = time.perf_counter()
    for _ in range(reps):
        jax.block_until_ready(fn(*args))
    return (time.perf_counter() - t) / reps


def sustained_gflops(count: int = 200, reps: int = 3) -> float:
    """Sustained GFLOP/s of `count` [6464, 48] x [48, 192] float32 matmuls (the transformer MLP's shape,
    batch 64 x 101 tokens) inside one compiled loop, each depending on the last: the rate the model's
    own matmuls can reach, without the dispatch cost that a single timed call includes."""
    a = jax.random.normal(jax.random.PRNGKey(0), (6464, 48))
    b = jax.random.normal(jax.random.PRNGKey(1), (48, 192))

    def loop(a, b):
        def body(a, _):
            y = a @ b
            return a + 1e-30 * y[:, :48], None

        return jax.lax.scan(body, a, None, length=count)[0]

    return count * 2 * 6464 * 48 * 192 / _time(jax.jit(loop), a, b, reps=reps) / 1e9


def schedule_flops(trainer) -> dict:
    """FLOPs of one model update and one policy update (one seed; the larger of XLA's count and the
    jaxpr's matmul count, see the module doc) and of the schedule's updates: {model, policy, total,
    xla_model, xla_policy, matmul_model, matmul_policy} in FLOP."""
    cfg = trainer.config
    state = jax.jit(trainer.init)(jax.random.PRNGKey(0))
    k = jax.random.PRNGKey(1)
    flops = {f"{c}_model": 0.0 for c in ("xla", "matmul")} | {"model": 0.0}
    pieces = [("policy", trainer._policy_update)] + [("model", trainer._model_update)] * trainer.model.trainable
    for name, fn in pieces:
        ca = jax.jit(fn).lower(state, k).compile().cost_analysis()
        flops[f"xla_{name}"] = float((ca[0] if isinstance(ca, (list, tuple)) else ca)["flops"])
        flops[f"matmul_{name}"] = matmul_flops(fn, state, k)
        flops[name] = max(flops[f"xla_{name}"], flops[f"matmul_{name}"])
    flops["total"] = cfg.blocks * (cfg.policy_every // cfg.model_every * flops["model"] + flops["policy"])
    return flops


def phases(trainer, n: int, reps: int, seed_batch="auto"):
    """Seconds per phase for n seeds (computed together as `seed_batch` says), and the whole trainer's
    compile time."""
    cfg = trainer.config
    sh = SeedSharding.create(n)
    devices = 1 if sh.mesh is None else sh.mesh.devices.size
    batch = default_seed_batch(cfg.method, devices) if seed_batch == "auto" else seed_batch
    over_seeds = lambda fn: seed_map(fn, batch)
    keys = sh.pad(jax.random.split(jax.random.PRNGKey(0), n))
    t0 = time.perf_counter()
    whole = sh.compile(over_seeds(trainer), keys)
    compile_s = time.perf_counter() - t0
    state = sh.compile(over_seeds(trainer.init), keys)(keys)
    ks = sh.pad(jax.random.split(jax.random.PRNGKey(1), n))

    def env(s, k):
        return jax.lax.scan(lambda s, kk: (trainer._env_step(s, kk, trainer._policy_act), None), s,
                            jax.random.split(k, cfg.policy_every))[0]

    def model(s, k):
        return jax.lax.scan(trainer._model_update, s, jax.random.split(k, cfg.policy_every // cfg.model_every))[0]

    def evaluate(s, k):
        return trainer.evaluate(s, k)

    nbytes = program_bytes(whole)
    out = {"compile_s": compile_s, "program_mb": None if nbytes is None else nbytes / 2 ** 20}
    for name, fn in (("env_s", env), ("model_s", model), ("policy_s", lambda s, k: trainer._policy_update(s, k)[0]),
                     ("eval_s", evaluate)):
        if name == "model_s" and not trainer.model.trainable:
            out[name] = 0.0
            continue
        out[name] = _time(sh.compile(over_seeds(fn), state, ks), state, ks, reps=reps)
    return out, state


def main(argv=None):
    args = tyro.cli(Options, args=argv, description=__doc__)
    sizes = {}
    if args.quick:
        args, sizes = quick_defaults(args, methods="awm_transformer,true_bptt", seeds="1,2", reps=1), QUICK_CONFIG
    methods, counts = args.methods.split(","), seed_counts(args.seeds, args.max_seeds)
    try:
        seed_batch = parse_seed_batch(args.seed_batch)
    except ValueError as e:
        raise SystemExit(str(e)) from None
    trainers = {m: make_train(Config(task=args.task, method=m, **sizes)) for m in methods}  # validate first
    dev = jax.devices()
    print(f"devices: {len(dev)} x {dev[0].platform} ({dev[0].device_kind})")
    rows = []
    for m, tr in trainers.items():
        cfg = tr.config
        for n in counts:
            try:
                ph, _ = phases(tr, n, args.reps, seed_batch)
            except Exception as e:  # only memory exhaustion ends the doubling
                if not out_of_memory(e):
                    raise
                print(f"{m}: {n} seeds do not fit in device memory ({str(e).splitlines()[0][:160]})", flush=True)
                break
            mb = ph.pop("program_mb")
            block = ph["env_s"] + ph["model_s"] + ph["policy_s"]
            warm = ph["env_s"] * cfg.warmup_steps / cfg.policy_every  # the warm-up takes env steps only
            run = warm + cfg.blocks * block + cfg.periods * ph["eval_s"]
            rows.append(dict(method=m, seeds=n, **{k: round(v, 5) for k, v in ph.items()},
                             schedule_s=round(run, 2), per_seed_s=round(run / n, 3),
                             seed_steps_per_s=round(n * cfg.env_steps / run, 1),
                             program_mb=None if mb is None else round(mb, 1),
                             mb_per_seed=None if mb is None else round(mb / n, 2)))
            print(rows[-1], flush=True)
    gf = sustained_gflops()
    limits = []
    for m, tr in trainers.items():  # each method's own FLOP limit: its updates' FLOPs at the sustained rate
        f = schedule_flops(tr)
        limit = f["total"] / (gf * 1e9)
        best = min(r["per_seed_s"] for r in rows if r["method"] == m)
        sig = lambda x: float(f"{x:.4g}")
        limits.append(dict(method=m, model_gflop=sig(f["model"] / 1e9), policy_gflop=sig(f["policy"] / 1e9),
                           xla_model_gflop=sig(f["xla_model"] / 1e9), xla_policy_gflop=sig(f["xla_policy"] / 1e9),
                           schedule_tflop=sig(f["total"] / 1e12), flop_limit_s=sig(limit), best_per_seed_s=best,
                           x_limit=sig(best / limit)))
    text = (format_table(rows) + f"\n\nsustained matmul rate here: {gf:.0f} GFLOP/s (200 [6464, 48] x [48, 192] "
            "matmuls in one compiled loop); FLOP limit = the schedule's update FLOPs (one seed: the larger of "
            "XLA's cost analysis, xla_*, which counts a loop body once, and the jaxpr's matmuls with loops "
            "multiplied out) at that rate; x_limit = best measured seconds per seed / the limit\n\n"
            + format_table(limits))
    estimates = benchmark_estimates(rows)
    if estimates:
        text += (f"\n\nestimated wall time of the full Myriad benchmark ({BENCHMARK_TASKS} tasks x {BENCHMARK_METHODS} "
                 "methods, one program per group, its seeds computed as in the table; unmeasured methods at the "
                 "measured mean):\n\n"
                 + format_table(estimates))
    print(text)
    atomic_write(Path(args.out) / "scaling.md", text + "\n")


if __name__ == "__main__":
    main()
