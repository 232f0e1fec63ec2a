"""Gradient quality on the credit_assignment toy: Jacobian heatmaps d s^_t / d a_k and the cosine between
each model's policy gradient and the true one during training.

    python experiments/gradient_quality.py --out runs/gradient_quality [--quick]

Part 1 (Jacobians): each world model (transformer AWM, transformer HWM, Markov MLP, RNN AWM) is fitted
with Adam on --episodes episodes of uniformly random actions (--fit-steps updates, batch 32); on 16
held-out random-action episodes the script computes d s^_t / d a_k (raw state units) through the model
and through the true task. In the true task s_t = (a_0, distractor) for t >= 1, so the only non-zero
entries are d s_t[0] / d a_0 = 1: the credit for the final reward must travel from step 20 back to a_0.
Heatmap: mean over episodes of ||d s^_t / d a_k|| (rows t, columns k). Table: relative Frobenius error
against the true Jacobian, the mean of d s^_t[0] / d a_0 over t (true: 1), the mass on later actions
(true: 0), held-out model loss.

Part 2 (cosine during training): the online trainer (awm_jax.runner.run.run_training, the paper's schedule
scaled by --total-steps / --warmup-steps) trains each method for --seeds vmapped seeds with
gradient_cosine on; the trainer logs, at every policy update, the cosine between the policy gradient
through the model and through the true task for the same parameters, start states and noise
(`policy/grad_cosine`, averaged per evaluation period). The RNN AWM uses --rnn-hidden (default 16).

Writes config.json, jacobians.csv (long format), jacobian_table.csv/.md, jacobians.png, cosine.csv,
cosine_summary.csv/.md and cosine.png to --out.
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

JAC_MODELS = ("awm_transformer", "hwm_transformer", "markov_mlp", "awm_rnn")
METHODS = ("awm_transformer", "awm_rnn", "hwm_transformer", "markov_mlp")
SETTINGS = {
    "full": dict(episodes=4096, fit_steps=1500, seeds=4, total_steps=5000, warmup_steps=1500),
    "quick": dict(episodes=64, fit_steps=100, seeds=1, total_steps=520, warmup_steps=200),
}
COLORS = {"awm_transformer": "tab:blue", "awm_rnn": "tab:orange", "hwm_transformer": "tab:green",
          "markov_mlp": "tab:red"}


setting = setting_args(SETTINGS)  # an option's help: its full and --quick defaults


@dataclasses.dataclass(kw_only=True)
class Options:
    out: str
    """folder for config.json, the Jacobian and cosine tables and their figures"""
    quick: bool = False
    """small setting (a couple of minutes on a laptop CPU)"""
    episodes: Annotated[int | None, setting("episodes")] = None
    fit_steps: Annotated[int | None, setting("fit_steps")] = None
    seeds: Annotated[int | None, setting("seeds")] = None
    total_steps: Annotated[int | None, setting("total_steps")] = None
    warmup_steps: Annotated[int | None, setting("warmup_steps")] = None
    jac_models: str = ",".join(JAC_MODELS)
    """models of the Jacobian heatmaps"""
    methods: str = ",".join(METHODS)
    """methods of the cosine curves"""
    rnn_hidden: int = 16
    """hidden size of the RNN AWM (both parts)"""
    parts: str = "jacobians,cosine"
    """the parts to run: jacobians, cosine or both"""
    seed: int = 0
    """the PRNG seed of the Jacobian part and of the trainer's runs"""


def write_csv(path, rows):
    from awm_jax.runner.run_folder import atomic_write

    cols = list(rows[0])
    atomic_write(path, "\n".join([",".join(cols)] + [",".join(str(r[c]) for c in cols) for r in rows]) + "\n")


def jacobian_part(task, args, cfg, out, key):
    """Fit each model on random-action data; Jacobian heatmaps and errors against the true task."""
    from awm_jax.analysis.gradient_growth import (
        episode_jacobians,
        fit_world_model,
        jacobian_summary,
        random_action_episodes,
        raw_rollout,
        true_rollout,
    )
    from awm_jax.core.models import make_world_model
    from awm_jax.runner.plots import new_figure, save_figure
    from awm_jax.runner.results import format_table
    from awm_jax.runner.run_folder import atomic_write

    k_train, k_test, k_fit = jax.random.split(key, 3)
    states, actions = random_action_episodes(task, k_train, cfg["episodes"])
    test_s, test_a = random_action_episodes(task, k_test, 16)
    n, m, H = task.state_size, task.action_size, task.horizon
    jac_true = episode_jacobians(true_rollout(task), test_s[:, 0], test_a)
    results = {"true": jacobian_summary(jac_true, jac_true) | dict(jac=np.asarray(jac_true), test_loss=0.0)}
    for kind in args.jac_models.split(","):
        t0 = time.time()
        sizes = hidden_sizes(kind, args.rnn_hidden)
        wm = make_world_model(kind, n, m, H, **sizes)
        params, norm, _ = fit_world_model(wm, states, actions, jax.random.fold_in(k_fit, JAC_MODELS.index(kind)),
                                          cfg["fit_steps"])
        test_loss = float(wm.loss(params, norm.norm(test_s), test_a, jnp.ones(test_a.shape[:2])))
        jac = episode_jacobians(raw_rollout(wm, params, norm), test_s[:, 0], test_a)
        results[kind] = jacobian_summary(jac, jac_true) | dict(jac=np.asarray(jac), test_loss=test_loss)
        print(f"jacobians {kind:16s} {time.time() - t0:6.1f}s  rel error {results[kind]['rel_error']:.3f}  "
              f"held-out loss {test_loss:.4f}", flush=True)
    rows, long = [], []
    for name, r in results.items():
        J = r["jac"]  # [B, H, n, H, m]
        rows.append(dict(model=name, rel_error=r["rel_error"], ds0_da0_mean=float(J[:, :, 0, 0, 0].mean()),
                         ds0_da0_min=float(J[:, :, 0, 0, 0].min()),
                         later_action_mass=float(np.abs(J[:, :, :, 1:]).sum(axis=(1, 2, 3, 4)).mean()),
                         causal_leak=r["causal_leak"], heldout_loss=r["test_loss"]))
        for t in range(H):
            for k in range(H):
                long.append(dict(model=name, t=t + 1, k=k, mean_norm=float(r["heat"][t, k])))
    write_csv(out / "jacobians.csv", long)
    write_csv(out / "jacobian_table.csv", rows)
    table = format_table(rows)
    atomic_write(out / "jacobian_table.md", table + "\n")
    print(table, flush=True)

    names = list(results)
    fig, _ = new_figure((2.7 * len(names) + 0.6, 3.2))
    fig.clf()
    *axes, cax = fig.subplots(1, len(names) + 1, gridspec_kw=dict(width_ratios=[1] * len(names) + [0.06]))
    vmax = 2.0  # the true Jacobian's entries are 0 and 1; larger model entries saturate (colour bar arrow)
    for ax, name in zip(axes, names):
        im = ax.imshow(results[name]["heat"], origin="upper", cmap="viridis", vmin=0, vmax=vmax,
                       extent=(-0.5, H - 0.5, H + 0.5, 0.5))
        ax.set_title(f"{name}\nrel. error {results[name]['rel_error']:.2f}", fontsize=9)
        ax.set_xlabel("action index k")
    axes[0].set_ylabel("state index t")
    fig.colorbar(im, cax=cax, label="mean ||d s^_t / d a_k|| (clipped at 2)", extend="max")
    fig.suptitle("credit_assignment: Jacobians d s^_t / d a_k (true: 1 in column k = 0, 0 elsewhere)", fontsize=10)
    save_figure(fig, out / "jacobians.png")
    return rows


def cosine_part(args, cfg, out):
    """Train each method online with the gradient-cosine diagnostic on; curves and a summary."""
    from awm_jax.core.config import Config
    from awm_jax.runner.plots import new_figure, save_figure
    from awm_jax.runner.results import format_table
    from awm_jax.runner.run import run_training
    from awm_jax.runner.run_folder import atomic_write

    curves, rows, summary = {}, [], []
    for method in args.methods.split(","):
        c = Config(task="credit_assignment", method=method, seeds=cfg["seeds"], total_steps=cfg["total_steps"],
                   warmup_steps=cfg["warmup_steps"], rnn_hidden=args.rnn_hidden, gradient_cosine=True,
                   seed=args.seed)
        t0 = time.time()
        _, m = run_training(c, out=None, verbose=False)
        cos = np.asarray(m["policy/grad_cosine"])
        ret = np.asarray(m["eval/return"])
        steps = np.asarray(m["eval/env_steps"])[0]
        curves[method] = (steps, cos, ret)
        for s in range(cos.shape[0]):
            for p in range(cos.shape[1]):
                rows.append(dict(method=method, seed=s, period=p, env_steps=int(steps[p]), grad_cosine=float(cos[s, p]),
                                 eval_return=float(ret[s, p]), model_loss=float(m["model/loss"][s, p])))
        summary.append(dict(method=method, seeds=cos.shape[0], cosine_mean=float(np.nanmean(cos)),
                            cosine_first=float(np.nanmean(cos[:, 0])), cosine_last=float(np.nanmean(cos[:, -1])),
                            final_return=float(np.nanmean(ret[:, -1])), config=dataclasses.asdict(c)))
        print(f"cosine {method:16s} {time.time() - t0:6.1f}s  mean cosine {summary[-1]['cosine_mean']:+.3f}  "
              f"final return {summary[-1]['final_return']:.3f}", flush=True)
    write_csv(out / "cosine.csv", rows)
    flat = [{k: v for k, v in r.items() if k != "config"} for r in summary]
    write_csv(out / "cosine_summary.csv", flat)
    table = format_table(flat)
    atomic_write(out / "cosine_summary.md", table + "\n")
    print(table, flush=True)

    fig, _ = new_figure((11, 4))
    fig.clf()
    axes = fig.subplots(1, 2)
    for method, (steps, cos, ret) in curves.items():
        for ax, y in zip(axes, (cos, ret)):
            ax.plot(steps, np.nanmean(y, 0), color=COLORS.get(method), label=method)
            if y.shape[0] > 1:
                ax.fill_between(steps, np.nanmin(y, 0), np.nanmax(y, 0), color=COLORS.get(method), alpha=0.15)
    axes[0].set_ylabel("cos(model policy gradient, true policy gradient)")
    axes[0].axhline(0, color="k", lw=0.5)
    axes[1].set_ylabel("eval return")
    for ax in axes:
        ax.set_xlabel("env steps")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"credit_assignment: mean over {cfg['seeds']} seeds (band: min..max)", fontsize=10)
    save_figure(fig, out / "cosine.png")
    return [s["config"] for s in summary]


def main(argv=None):
    args = tyro.cli(Options, args=argv, description=__doc__)

    import awm_envs
    from awm_jax.runner.run_folder import atomic_write

    cfg = dict(SETTINGS["quick" if args.quick else "full"])
    cfg.update({k: getattr(args, k) for k in cfg if getattr(args, k) is not None})
    out = Path(args.out)
    t_start = time.time()
    task = awm_envs.make("credit_assignment")
    config = dict(args=dataclasses.asdict(args), setting=cfg, task="credit_assignment", horizon=task.horizon,
                  jax_version=jax.__version__)
    atomic_write(out / "config.json", json.dumps(config, indent=2))
    parts = args.parts.split(",")
    if "jacobians" in parts:
        jacobian_part(task, args, cfg, out, jax.random.PRNGKey(args.seed))
    if "cosine" in parts:
        config["trainer_configs"] = cosine_part(args, cfg, out)
        atomic_write(out / "config.json", json.dumps(config, indent=2))
    print(f"wrote {out}/ in {time.time() - t_start:.0f}s")


if __name__ == "__main__":
    main()
