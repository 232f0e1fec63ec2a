"""The fair Myriad benchmark: every method tuned with the same budget on tuning seeds, then evaluated at its
selected configuration on fresh seeds.

    python experiments/fair_benchmark.py --out runs/fair --data docs/data/fair_benchmark --resume  # tune, evaluate
    python experiments/fair_benchmark.py --out runs/fair --data docs/data/fair_benchmark --resume --stage tune
    python experiments/fair_benchmark.py --data-only --data docs/data/fair_benchmark      # tables and figures
    python experiments/fair_benchmark.py --out /tmp/fair --quick                  # minutes: 1 task, 2 methods

Tuning (`awm_jax.analysis.tuning`): each method's declared search space (`Method.search_space`, 6
configurations for every method), each configuration trained on every task with --tuning-seeds streams of
base seed --tuning-seed (100:0, 100:1), configurations that share shapes in one compiled program; each
configuration's runs are committed to DATA/tuning/{task}-{method}/{config}/ as their program finishes, and
committed programs are skipped, so the command continues where it stopped. Once every run of a method is in,
its configuration with the best mean normalised last-10-evaluation score over tasks x seeds is written to
DATA/selected.json; DATA/sensitivity.png draws each method's score against its hyperparameters.

Evaluation: each selected method at its configuration on every task with --seeds streams of base seed
--eval-seed (200:0..200:3), one (task, method) group at a time kept as data like the benchmark
(`awm_jax.analysis.committed`) in DATA/evaluation/. Its report (`awm_jax.analysis.report`) has scores.csv (seed as
"base:member"), IQM and mean with stratified-bootstrap CIs, and here the probability of improvement of every
method over every other (improvement_matrix.csv, improvement_matrix.png). The report refuses data whose
evaluation streams meet a tuning stream of the same task and method.

Print-before-start: the tuning stage prints its estimate (from the benchmark's per-method rates) before it
trains; a full run is about 20 CPU-hours of tuning and 7 of evaluation on a 2-core CPU.
"""

import dataclasses
import shutil
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import tyro

from awm_jax.analysis import tuning
from awm_jax.analysis.benchmark import BENCHMARK_TASKS, plot_aggregate, probability_of_improvement
from awm_jax.analysis.committed import Setting, run_groups
from awm_jax.analysis.report import score_matrix, write_report
from awm_jax.core.config import METHODS
from awm_jax.runner.plots import new_figure, save_figure
from awm_jax.runner.results import write_csv
from awm_jax.runner.run_folder import atomic_write
from awm_jax.runner.sweep import parse_list
from pipeline import REFERENCE, BenchmarkOptions, base_config, data_arg, estimate, quick_defaults, report_scope

DATA = "docs/data/fair_benchmark"
EVALUATION = "evaluation"
QUICK_TASKS, QUICK_METHODS = "cancer_treatment", "true_bptt,markov_mlp"


@dataclasses.dataclass(kw_only=True)
class Options(BenchmarkOptions):
    data: Annotated[str | None, data_arg(DATA)] = None
    tasks: str = ",".join(BENCHMARK_TASKS)
    methods: str = ",".join(METHODS)
    seeds: int = 4
    """evaluation seeds per (task, method), streams of --eval-seed"""
    stage: Literal["all", "tune", "evaluate"] = "all"
    """tune: the tuning runs only; evaluate: the evaluation of the methods already selected; all: both"""
    tuning_seeds: int = 2
    """tuning seeds per (task, method, configuration), streams of --tuning-seed"""
    tuning_seed: int = 100
    """base seed of the tuning streams"""
    eval_seed: int = 200
    """base seed of the evaluation streams (must differ from --tuning-seed)"""
    window: int = 10
    """evaluations at the end of a tuning run whose mean return scores it"""


def parse(options, argv, doc: str, quick_tasks: str, quick_methods: str):
    """(args, data folder, tasks, methods) from the command line `argv` read as `options` (this script's
    Options or a subclass), with the checks every fair-protocol benchmark makes before anything trains."""
    args = tyro.cli(options, args=argv, description=doc)
    if args.quick:
        args = quick_defaults(args, tasks=quick_tasks, methods=quick_methods, seeds=2, window=2)
    if args.eval_seed == args.tuning_seed:
        raise SystemExit("error: --eval-seed must differ from --tuning-seed: the evaluation's seeds are fresh ones")
    if not args.data_only and not args.out:
        raise SystemExit("error: --out is required to train (or pass --data-only to regenerate the report)")
    if not (args.data or args.out):
        raise SystemExit("error: --data-only needs --data, the data folder to read")
    return args, Path(args.data or args.out), parse_list(args.tasks), parse_list(args.methods)


def main(argv=None):
    args, data, tasks, methods = parse(Options, argv, __doc__, QUICK_TASKS, QUICK_METHODS)
    base = base_config(args)
    spec = tuning.TuningSpec(base, tasks, methods, seeds=args.tuning_seeds, seed=args.tuning_seed, window=args.window)
    if not args.data_only and args.stage in ("all", "tune"):  # validates everything before it trains
        tuning.run_tuning(spec, Path(args.out) / "tuning", data, resume=args.resume, chunk_periods=args.chunk_periods,
                          checkpoint_every=args.checkpoint_every, estimate=estimate)
    else:
        spec.validate()  # every name and option before anything trains or reads
    r_tasks, r_methods = report_scope(args, tasks, methods, BENCHMARK_TASKS, METHODS)
    tuned = tuning.write_report(data, r_tasks, r_methods, args.tuning_seeds, args.window)
    selected = tuned["selected"]
    if not args.data_only and args.stage in ("all", "evaluate"):
        evaluate(args, base, data, tasks, [m for m in methods if m in selected], selected)
    report(data, base, r_tasks, [m for m in r_methods if m in selected], tuned, args.reps, quick=args.quick)


def method_config(base, method: str, selected: dict, seed: int):
    """The config a selected method is evaluated with: `base` with its chosen hyperparameters."""
    return base.for_method(method, seed=seed, **selected[method]["hyperparameters"])


def evaluate(args, base, data: Path, tasks, methods, selected) -> None:
    """Train the evaluation groups the data folder lacks, one method at a time (each at its configuration)."""
    ev = data / EVALUATION
    ev.mkdir(parents=True, exist_ok=True)
    if (data / "references.json").exists() and not (ev / "references.json").exists():
        shutil.copy(data / "references.json", ev / "references.json")  # the same tasks, options and keys
    for m in methods:
        run_groups([Setting(method_config(base, m, selected, args.eval_seed))], tasks, [m],
                   Path(args.out) / EVALUATION, ev, resume=args.resume, overwrite=args.overwrite,
                   chunk_periods=args.chunk_periods, checkpoint_every=args.checkpoint_every, estimate=estimate)


def check_disjoint(tuning_rows: list[dict], eval_rows: list[dict]) -> None:
    """Refuse evaluation rows whose seed stream is one a tuning run (`tuning.tuning_rows`) of the same task
    and method used."""
    tuned = {(r["task"], r["method"], r["seed"]) for r in tuning_rows}
    clash = sorted({(r["task"], r["method"], r["seed"]) for r in eval_rows} & tuned)
    if clash:
        raise SystemExit(f"error: evaluation runs reuse tuning seed streams: {clash[:5]}")


def improvement_matrix(rows: list[dict], methods, reps: int) -> list[dict]:
    """rliable's probability that each method improves on each other one, over the tasks both have:
    rows {x, y, tasks, p_improve, p_lo, p_hi} for every ordered pair x != y present."""
    have = {m: {r["task"] for r in rows if r["method"] == m} for m in methods}
    present = [m for m in methods if have[m]]
    pairs, n = {}, {}
    for x in present:
        for y in present:
            common = [t for t in dict.fromkeys(r["task"] for r in rows) if t in have[x] and t in have[y]]
            if x != y and common:
                pairs[(x, y)] = (score_matrix(rows, x, common)[1], score_matrix(rows, y, common)[1])
                n[(x, y)] = len(common)
    p = probability_of_improvement({f"{x}>{y}": v for (x, y), v in pairs.items()}, reps=reps) if pairs else {}
    return [dict(x=x, y=y, tasks=n[(x, y)], **p[f"{x}>{y}"]) for x, y in pairs]


def plot_matrix(matrix: list[dict], methods, path, title: str) -> None:
    """Heatmap of P(row method > column method) with the CI's lower and upper ends in each cell."""
    present = [m for m in methods if any(r["x"] == m for r in matrix)]
    if not present:
        return
    idx = {m: i for i, m in enumerate(present)}
    p = np.full((len(present),) * 2, np.nan)
    fig, _ = new_figure(figsize=(0.75 * len(present) + 3, 0.6 * len(present) + 2))
    fig.clear()
    ax = fig.subplots()
    for r in matrix:
        p[idx[r["x"]], idx[r["y"]]] = r["p_improve"]
    im = ax.imshow(p, vmin=0, vmax=1, cmap="RdBu")
    for r in matrix:
        i, j = idx[r["x"]], idx[r["y"]]
        strong = r["p_lo"] > 0.5 or r["p_hi"] < 0.5  # the CI excludes a tie
        ax.text(j, i, f"{r['p_improve']:.2f}" + ("*" if strong else ""), ha="center", va="center", fontsize=6)
    ax.set_xticks(range(len(present)), present, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(present)), present, fontsize=7)
    ax.set_xlabel("method Y")
    ax.set_ylabel("method X")
    fig.colorbar(im, ax=ax, label="P(X > Y)")
    ax.set_title(title + "\n* 95% CI excludes 0.5", fontsize=9)
    save_figure(fig, path)


def report(data: Path, base, tasks, methods, tuned: dict, reps: int = 2000, quick: bool = False,
           title: str = "The fair Myriad benchmark", command: str | None = None, read=None) -> dict | None:
    """The evaluation's tables and figures from DATA/evaluation alone (nothing until a method is selected);
    `tuned`: the tuning report (`tuning.write_report`), whose choices and runs it names and checks against;
    title, command: the report's (command: what regenerates it, default this script's); read: what reads
    its groups (`report.write_report`'s)."""
    ev = data / EVALUATION
    selected = tuned["selected"]
    if not methods or not ev.is_dir():
        print((data / tuning.TUNING / "tables.md").read_text())
        return None
    budget = (f"Every method was tuned with the same budget: {len(tuning.configurations(methods[0]))} configurations "
              "x the tuning seeds x the tasks (DATA/tuning/tables.md); these are fresh seeds.")
    chosen = "; ".join(f"{m} {selected[m]['config']} " + ", ".join(f"{k}={v}" for k, v in
                                                                  selected[m]["hyperparameters"].items())
                       for m in methods if m in selected)
    command = command or ("python experiments/fair_benchmark.py --out /tmp/fair --quick" if quick else
                          f"python experiments/fair_benchmark.py --data-only --data {data}")
    res = write_report(ev, [Setting(base)], tasks, methods, f"{title}: evaluation", command,
                       reference=REFERENCE, reps=reps, streams=True,
                       notes=(budget, f"Selected configurations: {chosen}."), read=read)
    rows = res["by_setting"][""]
    check_disjoint(tuned["rows"], rows)
    matrix = improvement_matrix(rows, methods, reps)
    write_csv(ev / "improvement_matrix.csv", matrix, ["x", "y", "tasks", "p_improve", "p_lo", "p_hi"])
    agg = {r["method"]: r for r in res["aggregate"]}
    if agg:
        n = max(r["tasks"] for r in agg.values())
        seeds = "/".join(map(str, sorted({r["seeds"] for r in agg.values()})))
        plot_aggregate(agg, ev / "aggregate.png", f"{title}: {n} of {len(tasks)} tasks x {seeds} fresh seeds, "
                       "every method tuned with the same budget")
        plot_matrix(matrix, methods, ev / "improvement_matrix.png", f"{title}: probability of improvement")
    md = (ev / "tables.md").read_text()
    md += "\n## Probability that X improves on Y (rliable, 95% CI), every pair\n\n" + (
        "\n".join(f"- P({r['x']} > {r['y']}) = {r['p_improve']:.3f} ({r['p_lo']:.3f} to {r['p_hi']:.3f}), "
                  f"{r['tasks']} tasks" for r in matrix) or "(no pair yet)") + "\n"
    atomic_write(ev / "tables.md", md)
    print(md)
    return res


if __name__ == "__main__":
    main()
