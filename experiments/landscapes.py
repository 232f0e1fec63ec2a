"""Optimisation landscapes of the paper's hard toys, through the true simulator and through trained AWMs.

    python experiments/landscapes.py --out runs/landscapes [--quick]

Tasks: double_pendulum (a_0 x 180 sets the first rod's angle; chaotic; reward at the last step only)
and one_bounce (a_0 sets the ball's velocity 10 (a_0 - 2); an elastic bounce at the wall; reward at
the last step only). Both read a_0 alone, so the landscape is the 1-D slice a_0 = a, later actions 0
(awm_jax.analysis.landscapes): the true return R_true(a), and R_model(a), the task's reward on the states a
world model predicts for that action sequence.

Models: the transformer AWM (and, with --models, the RNN AWM), fitted with Adam on --episodes episodes
of uniformly random actions (--fit-steps updates, batch 32). Gradient ascent: --starts starting
actions drawn uniformly in [-1, 1], --steps Adam steps on the action (projected onto [-1, 1]) through
the true simulator ("true_sim") and through each model, at several learning rates (--lr-factors times a
per-task base rate, 2e-3 for double_pendulum, whose landscape has period 2 pi / 180 = 0.035 in a_0, and
1e-2 for one_bounce); the final actions are scored by the TRUE return ("near_best": the fraction within
5% of the landscape's range of the best return on the grid). Writes config.json, landscape.csv, ascent.csv,
summary.csv/.md and
landscapes.png to --out.
"""

import dataclasses
import json
import time
from pathlib import Path
from typing import Annotated

import jax
import jax.numpy as jnp
import numpy as np
import tyro

from pipeline import hidden_sizes, setting_args

TASKS = ("double_pendulum", "one_bounce")
LR = {"double_pendulum": 2e-3, "one_bounce": 1e-2}  # Adam step on the action, per task
SETTINGS = {
    "full": dict(episodes=2048, fit_steps=3000, grid=1001, starts=64, steps=300),
    "quick": dict(episodes=128, fit_steps=100, grid=201, starts=16, steps=50),
}
COLORS = {"true_sim": "k", "awm_transformer": "tab:blue", "awm_rnn": "tab:orange", "awm_gru": "tab:purple",
          "awm_lstm": "tab:brown", "awm_ssm": "tab:cyan", "markov_mlp": "tab:red", "hwm_transformer": "tab:green"}


setting = setting_args(SETTINGS)  # an option's help: its full and --quick defaults


@dataclasses.dataclass(kw_only=True)
class Options:
    out: str
    """folder for config.json, landscape.csv, ascent.csv, summary.csv/.md and landscapes.png"""
    quick: bool = False
    """small setting (about a minute on a laptop CPU)"""
    episodes: Annotated[int | None, setting("episodes")] = None
    fit_steps: Annotated[int | None, setting("fit_steps")] = None
    grid: Annotated[int | None, setting("grid")] = None
    starts: Annotated[int | None, setting("starts")] = None
    steps: Annotated[int | None, setting("steps")] = None
    tasks: str = ",".join(TASKS)
    """comma-separated tasks (double_pendulum, one_bounce)"""
    models: str = "awm_transformer"
    """comma list of world model kinds"""
    rnn_hidden: int = 48
    """hidden size of recurrent AWMs (awm_ssm: width)"""
    lr_factors: str = "1,0.1,10"
    """Adam learning rates as multiples of the per-task base rate; the first is plotted"""
    seed: int = 0
    """the PRNG seed of the data, the fits and the starting actions"""


def write_csv(path, rows):
    from awm_jax.runner.run_folder import atomic_write

    cols = list(rows[0])
    atomic_write(path, "\n".join([",".join(cols)] + [",".join(str(r[c]) for c in cols) for r in rows]) + "\n")


def main(argv=None):
    args = tyro.cli(Options, args=argv, description=__doc__)

    import awm_envs
    from awm_jax.analysis.gradient_growth import fit_world_model, random_action_episodes
    from awm_jax.analysis.landscapes import gradient_ascent, landscape, model_return, true_return
    from awm_jax.core.models import make_world_model
    from awm_jax.runner.plots import new_figure, save_figure
    from awm_jax.runner.results import format_table
    from awm_jax.runner.run_folder import atomic_write

    cfg = dict(SETTINGS["quick" if args.quick else "full"])
    cfg.update({k: getattr(args, k) for k in cfg if getattr(args, k) is not None})
    tasks, models = args.tasks.split(","), args.models.split(",")
    out = Path(args.out)
    t_start = time.time()
    factors = [float(f) for f in args.lr_factors.split(",")]
    config = dict(args=dataclasses.asdict(args), setting=cfg,
                  learning_rates={t: [LR[t] * f for f in factors] for t in tasks}, slice="a_0 = a, a_1..a_{H-1} = 0",
                  jax_version=jax.__version__)
    atomic_write(out / "config.json", json.dumps(config, indent=2))
    key = jax.random.PRNGKey(args.seed)
    grid = jnp.linspace(-1.0, 1.0, cfg["grid"])
    land_rows, ascent_rows, summary = [], [], []
    panels = {}
    for ti, name in enumerate(tasks):
        task = awm_envs.make(name)
        k_data, k_fit, k_start = jax.random.split(jax.random.fold_in(key, ti), 3)
        r_true = true_return(task)
        fns = {"true_sim": r_true}
        land = {"true_sim": np.asarray(landscape(r_true, grid))}
        if any(models):
            states, actions = random_action_episodes(task, k_data, cfg["episodes"])
        for mi, kind in enumerate(m for m in models if m):
            t0 = time.time()
            sizes = hidden_sizes(kind, args.rnn_hidden)
            wm = make_world_model(kind, task.state_size, task.action_size, task.horizon, **sizes)
            params, norm, losses = fit_world_model(wm, states, actions, jax.random.fold_in(k_fit, mi), cfg["fit_steps"])
            fns[kind] = model_return(task, wm, params, norm)
            land[kind] = np.asarray(landscape(fns[kind], grid))
            print(f"{name}: fitted {kind} in {time.time() - t0:.1f}s, final loss {float(losses[-10:].mean()):.4g}",
                  flush=True)
        starts = jax.random.uniform(k_start, (cfg["starts"],), minval=-1.0, maxval=1.0)
        start_true = np.asarray(landscape(r_true, starts))
        best = float(land["true_sim"].max())
        tol = 0.05 * float(land["true_sim"].max() - land["true_sim"].min())
        finals = {}
        lrs = [LR[name] * f for f in factors]
        for method, fn in fns.items():
            t0 = time.time()
            finals_all, _ = gradient_ascent(fn, starts, cfg["steps"], jnp.asarray(lrs))  # [L, S]
            for li, lr in enumerate(lrs):
                final = finals_all[li]
                final_true = np.asarray(landscape(r_true, final))
                final_model = np.asarray(landscape(fn, final))
                if li == 0:
                    finals[method] = (np.asarray(final), final_true)
                for i in range(len(starts)):
                    ascent_rows.append(dict(task=name, method=method, lr=lr, start=float(starts[i]),
                                            final_action=float(final[i]), start_true_return=float(start_true[i]),
                                            final_true_return=float(final_true[i]),
                                            final_own_return=float(final_model[i])))
                summary.append(dict(task=name, method=method, lr=lr, starts=len(starts),
                                    start_mean=float(start_true.mean()), final_mean=float(final_true.mean()),
                                    final_median=float(np.median(final_true)), final_best=float(final_true.max()),
                                    grid_best=best, near_best=float(np.mean(final_true >= best - tol)),
                                    moved=float(np.mean(np.abs(np.asarray(final) - np.asarray(starts)) > 1e-3))))
                print(f"{name}: ascent through {method:16s} lr {lr:.0e}  true return of final actions: "
                      f"mean {final_true.mean():.4g}, median {np.median(final_true):.4g}, near best "
                      f"{summary[-1]['near_best']:.2f} (starts {start_true.mean():.4g}, grid best {best:.4g})",
                      flush=True)
            print(f"{name}: ascent through {method} took {time.time() - t0:.1f}s", flush=True)
        for i, a in enumerate(np.asarray(grid)):
            land_rows.append(dict(task=name, action=float(a), **{f"{k}_return": float(v[i]) for k, v in land.items()}))
        panels[name] = (np.asarray(grid), land, np.asarray(starts), start_true, finals)

    for r in land_rows:  # one column per landscape, blank where a task lacks it
        for k in {k for row in land_rows for k in row}:
            r.setdefault(k, "")
    cols = ["task", "action", "true_sim_return"] + sorted({k for r in land_rows for k in r} -
                                                           {"task", "action", "true_sim_return"})
    write_csv(out / "landscape.csv", [{c: r[c] for c in cols} for r in land_rows])
    write_csv(out / "ascent.csv", ascent_rows)
    write_csv(out / "summary.csv", summary)
    table = format_table(summary)
    atomic_write(out / "summary.md", table + "\n")
    print(table)

    fig, _ = new_figure((13, 3.6 * len(panels)))
    fig.clf()
    axes = np.asarray(fig.subplots(len(panels), 3)).reshape(len(panels), 3)
    for row, (name, (g, land, starts, start_true, finals)) in zip(axes, panels.items()):
        for k, v in land.items():
            row[0].plot(g, v, color=COLORS.get(k), lw=0.8 if k == "true_sim" else 1.5,
                        label="true simulator" if k == "true_sim" else f"through {k}")
        row[0].set_title(f"{name}: return vs a_0 (later actions 0)", fontsize=9)
        row[0].set_xlabel("action a_0")
        row[0].set_ylabel("return")
        row[0].legend(fontsize=7)
        row[1].plot([-1, 1], [-1, 1], color="0.7", lw=0.8)
        for method, (final, _) in finals.items():
            row[1].scatter(starts, final, s=10, color=COLORS.get(method), label=method)
        row[1].set_title(f"gradient ascent (Adam, lr {LR[name] * factors[0]:g}): start -> final a_0", fontsize=9)
        row[1].set_xlabel("start a_0")
        row[1].set_ylabel("final a_0")
        row[1].legend(fontsize=7)
        lo = min([start_true.min()] + [f[1].min() for f in finals.values()])
        hi = max([start_true.max()] + [f[1].max() for f in finals.values()])
        bins = np.linspace(lo, hi + 1e-9, 21)
        row[2].hist(start_true, bins=bins, color="0.8", label="starts")
        for method, (_, final_true) in finals.items():
            row[2].hist(final_true, bins=bins, histtype="step", lw=1.5, color=COLORS.get(method), label=method)
        row[2].set_title("TRUE return of the final actions", fontsize=9)
        row[2].set_xlabel("true return")
        row[2].set_ylabel("count")
        row[2].legend(fontsize=7)
    save_figure(fig, out / "landscapes.png")
    print(f"wrote {out}/ (config.json, landscape.csv, ascent.csv, summary.csv, summary.md, landscapes.png) "
          f"in {time.time() - t_start:.0f}s")
    return summary


if __name__ == "__main__":
    main()
