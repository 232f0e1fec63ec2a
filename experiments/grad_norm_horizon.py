"""Gradient norm vs horizon (Theorem 1, Corollaries 1 and 2) on a chaotic double pendulum.

    python experiments/grad_norm_horizon.py --out runs/grad_norm [--quick]
    python experiments/grad_norm_horizon.py --out runs/grad_norm_brax --system brax_double_pendulum

System (--system): the paper's double_pendulum toy (awm_envs, the default), run for H steps of dt = 0.05.
Its largest Lyapunov exponent is positive at high energy, so it is the "unstable system" of the
corollaries: the action a_0 sets the first rod's angle (x 180), and starting angles are drawn where the
motion is chaotic (theta_1 ~ U(2.5, 3.0) rad from hanging, near the top); later actions are uniform in
[-1, 1] (the true system ignores them; the models see them). Or brax_double_pendulum: a double inverted
pendulum on a cart in Brax's physics (awm_envs.brax_tasks), dt = 0.05 (5 physics steps of 0.01 s). It
starts upright (reset's start noise, from PRNGKey(0)), and every action is a cart force, uniform in
[-1, 1]: under random pushes the poles fall and swing, and the gradient runs through real contact-free
rigid-body dynamics.

Quantity: ||d s_H / d a_{0:H-1}||_F, the Frobenius norm of the Jacobian of the state at step H with
respect to every earlier action (raw state units), i.e. the model-dependent factor of the policy
gradient for a reward at step H; averaged in log space over --samples action sequences. The
Jacobian of the longest path, ||d s_H / d a_0||, is written as well.

Models: the true task (BPTT through the simulator), a Markov MLP, an RNN AWM (tanh cell), a transformer
AWM and a state-space AWM (awm_ssm: diagonal linear recurrences with |lambda| < 1), and on request
(--models) the GRU and LSTM AWMs, each in two variants: `init` (freshly initialised: the architecture
alone, which is what the theorem is about) and `trained` (Adam on random-action episodes of
--train-horizon steps; the transformer's position table is built for the longest H, so positions past
--train-horizon stay at their initial values). Everything is evaluated in float64, so that the true
gradient (about e^70 at H = 1000) does not overflow; norms that still overflow are dropped from the fits
and counted.

Fits per model: log norm = c + r H (exponential, rate r per step) and log norm = c + p log H
(polynomial, exponent p), each with R^2; the better fit is the one with the higher R^2, or
"bounded" when neither fit grows by more than 3x over the range of H (flat or vanishing norms). Writes
config.json, norms.csv, rates.csv, rates.md and grad_norm_horizon.png to --out.
"""

import dataclasses
import json
import time
from pathlib import Path
from typing import Annotated, Literal

import jax
import jax.numpy as jnp
import numpy as np
import tyro

from pipeline import setting_args

MODELS = ("true", "markov_mlp", "awm_rnn", "awm_transformer", "awm_ssm")  # the default run
CHOICES = MODELS + ("awm_gru", "awm_lstm")  # a model's index here picks its key: appended ones change no other
SETTINGS = {  # full and --quick defaults
    "full": dict(hmax=1000, num_h=12, hmin=10, train_horizon=100, episodes=512, train_steps=1000, samples=4),
    "quick": dict(hmax=100, num_h=6, hmin=5, train_horizon=30, episodes=64, train_steps=60, samples=2),
}


setting = setting_args(SETTINGS)  # an option's help: its full and --quick defaults


@dataclasses.dataclass(kw_only=True)
class Options:
    out: str
    """folder for config.json, norms.csv, rates.csv, rates.md and grad_norm_horizon.png"""
    quick: bool = False
    """small setting (about a minute on a laptop CPU)"""
    hmax: Annotated[int | None, setting("hmax")] = None
    num_h: Annotated[int | None, setting("num_h")] = None
    hmin: Annotated[int | None, setting("hmin")] = None
    train_horizon: Annotated[int | None, setting("train_horizon")] = None
    episodes: Annotated[int | None, setting("episodes")] = None
    train_steps: Annotated[int | None, setting("train_steps")] = None
    samples: Annotated[int | None, setting("samples")] = None
    models: Annotated[str, tyro.conf.arg(help=f"comma list of {CHOICES}")] = ",".join(MODELS)
    variants: str = "init,trained"
    """init, trained or both"""
    seed: int = 0
    """the PRNG seed of the data, the models and the evaluation sequences"""
    system: Literal["double_pendulum", "brax_double_pendulum"] = "double_pendulum"
    """the paper's double pendulum toy, or the Brax double inverted pendulum on a cart"""


def horizons(hmin, hmax, num):
    """num log-spaced integer horizons from hmin to hmax (duplicates removed)."""
    return sorted(set(int(round(h)) for h in np.logspace(np.log10(hmin), np.log10(hmax), num)))


def to_f64(tree):
    return jax.tree.map(lambda x: x.astype(jnp.float64) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


def main(argv=None):
    args = tyro.cli(Options, args=argv, description=__doc__)
    jax.config.update("jax_enable_x64", True)  # before anything is traced

    import awm_envs
    from awm_jax.analysis.gradient_growth import (
        final_state_jacobian_norms,
        fit_growth,
        fit_world_model,
        random_action_episodes,
        raw_rollout,
        true_rollout,
    )
    from awm_jax.core.models import make_world_model
    from awm_jax.runner.plots import new_figure, save_figure
    from awm_jax.runner.results import format_table
    from awm_jax.runner.run_folder import atomic_write

    cfg = dict(SETTINGS["quick" if args.quick else "full"])
    cfg.update({k: getattr(args, k) for k in cfg if getattr(args, k) is not None})
    models = args.models.split(",")
    variants = args.variants.split(",")
    bad = sorted(set(models) - set(CHOICES)) + sorted(set(variants) - {"init", "trained"})
    if bad:
        raise SystemExit(f"unknown models/variants {bad}")
    hs = horizons(cfg["hmin"], cfg["hmax"], cfg["num_h"])
    out = Path(args.out)
    key = jax.random.PRNGKey(args.seed)
    t_start = time.time()

    toy = args.system == "double_pendulum"
    task32 = awm_envs.make(args.system)  # data and training in float32
    task64 = awm_envs.make(args.system, dtype="float64")  # evaluation
    n, m, dt = task32.state_size, task32.action_size, task32.dt
    start = dict(start_angle_range_rad=[2.5, 3.0]) if toy else dict(start="reset(PRNGKey(0)): upright, start noise")
    config = dict(args=dataclasses.asdict(args), setting=cfg, horizons=hs, system=args.system, dt=dt,
                  quantity="||d s_H / d a_{0:H-1}||_F (raw state units), log-mean over samples",
                  **start, models=models, variants=variants, jax_version=jax.__version__)
    atomic_write(out / "config.json", json.dumps(config, indent=2))

    # evaluation action sequences: uniform; on the toy a_0 is a start angle in the chaotic range
    k_theta, k_acts, k_data, k_fit = jax.random.split(key, 4)
    acts = jax.random.uniform(k_acts, (cfg["samples"], cfg["hmax"], m), jnp.float64, -1.0, 1.0)
    if toy:
        theta = jax.random.uniform(k_theta, (cfg["samples"],), jnp.float64, 2.5, 3.0)
        acts = acts.at[:, 0, 0].set(theta / task64.params["angle_scale"])
    s0 = task64.reset(jax.random.PRNGKey(0)).obs[:-1]

    need_data = "trained" in variants and any(k != "true" for k in models)
    if need_data:
        states, actions = random_action_episodes(task32, k_data, cfg["episodes"], cfg["train_horizon"])

    def norms_of(rollout):
        # one sample at a time (lax.map) to bound memory; see final_state_jacobian_norms
        f = jax.jit(lambda A: jax.lax.map(lambda a: final_state_jacobian_norms(rollout, s0, a, hs), A))
        full, first, leak = f(acts)
        return np.asarray(full), np.asarray(first), float(jnp.max(leak))

    rows, curves = [], []
    for kind in models:
        for variant in (["-"] if kind == "true" else variants):
            t0 = time.time()
            train_loss = ""  # not trained
            if kind == "true":
                rollout = true_rollout(task64)
            else:
                wm = make_world_model(kind, n, m, cfg["hmax"])
                k = jax.random.fold_in(k_fit, CHOICES.index(kind))
                if variant == "trained":
                    params, norm, losses = fit_world_model(wm, states, actions, k, cfg["train_steps"])
                    train_loss = float(jnp.mean(losses[-max(1, len(losses) // 10):]))
                else:
                    from awm_jax.core.spaces import Normalizer

                    params, norm = wm.init(k), Normalizer.identity(n)
                rollout = raw_rollout(wm, to_f64(params), to_f64(norm))
            full, first, leak = norms_of(rollout)
            with np.errstate(divide="ignore", invalid="ignore"):
                log_full, log_first = np.log(full).mean(0), np.log(first).mean(0)
            g_full, g_first = np.exp(log_full), np.exp(log_first)
            fit = fit_growth(hs, g_full)
            label = kind if kind == "true" else f"{kind} ({variant})"
            rows.append(dict(model=kind, variant=variant, exp_rate=fit["exp_rate"],
                             exp_rate_per_s=fit["exp_rate"] / dt, exp_r2=fit["exp_r2"],
                             poly_exponent=fit["poly_exponent"], poly_r2=fit["poly_r2"], better=fit["better"],
                             norm_at_hmin=float(g_full[0]), norm_at_hmax=float(g_full[-1]),
                             dropped=fit["dropped"], causal_leak=leak, train_loss=train_loss))
            curves.append((label, kind, variant, g_full, g_first, full))
            print(f"{label:28s} {time.time() - t0:6.1f}s  rate/step {fit['exp_rate']:+.4f} (R2 {fit['exp_r2']:.3f})"
                  f"  exponent {fit['poly_exponent']:+.3f} (R2 {fit['poly_r2']:.3f})  -> {fit['better']}", flush=True)

    # tables
    cols = list(rows[0])
    atomic_write(out / "rates.csv", "\n".join([",".join(cols)] + [",".join(str(r[c]) for c in cols)
                                                                  for r in rows]) + "\n")
    lines = ["model,variant,H,norm_full_logmean,norm_first_logmean,norm_full_min,norm_full_max"]
    for _label, kind, variant, g_full, g_first, full in curves:
        for i, h in enumerate(hs):
            vals = (g_full[i], g_first[i], full[:, i].min(), full[:, i].max())
            lines.append(f"{kind},{variant},{h}," + ",".join(repr(float(v)) for v in vals))
    atomic_write(out / "norms.csv", "\n".join(lines) + "\n")
    table = format_table(rows, ["model", "variant", "exp_rate", "exp_r2", "poly_exponent", "poly_r2", "better",
                                "norm_at_hmin", "norm_at_hmax", "dropped"])
    header = (f"{args.system}, ||d s_H / d a||_F for H in {hs}; exp_rate per step of dt = {dt} "
              f"(per second: divide by dt); {time.time() - t_start:.0f}s\n\n")
    atomic_write(out / "rates.md", header + table + "\n")
    print(table)

    # plot: the same curves on semi-log (exponential = straight) and log-log (polynomial = straight) axes
    fig, axes = new_figure((11, 4.2))
    fig.clf()
    axes = fig.subplots(1, 2)
    colors = {"true": "k", "markov_mlp": "tab:red", "awm_rnn": "tab:orange", "awm_transformer": "tab:blue",
              "awm_ssm": "tab:cyan", "awm_gru": "tab:purple", "awm_lstm": "tab:brown"}
    for label, kind, variant, g_full, _, _ in curves:
        style = "--" if variant == "init" else "-"
        for ax in axes:
            ax.plot(hs, g_full, style, marker="o", ms=3, color=colors[kind], label=label)
    finite = np.concatenate([c[3][np.isfinite(c[3])] for c in curves])
    top = 10 ** min(40.0, np.ceil(np.log10(finite.max())) + 1)
    if finite.max() > 1e40:  # keep the other curves readable; the clipped ones are named in the title
        clipped = ", ".join(c[0] for c in curves if not np.all(c[3][np.isfinite(c[3])] <= 1e40))
        axes[0].text(0.02, 0.97, f"clipped above 1e40: {clipped}", transform=axes[0].transAxes, va="top", fontsize=7)
    for ax in axes:
        ax.set_ylim(10 ** np.floor(np.log10(finite.min()) - 0.5), top)
    axes[0].set_yscale("log")
    axes[0].set_title("semi-log: exponential growth is a line")
    axes[1].set_xscale("log")
    axes[1].set_yscale("log")
    axes[1].set_title("log-log: polynomial growth is a line")
    for ax in axes:
        ax.set_xlabel(f"horizon H (steps of {dt:g} s)")
        ax.set_ylabel("||d s_H / d a||_F")
        ax.grid(alpha=0.3, which="both")
    axes[1].legend(fontsize=7)
    fig.suptitle(f"{args.system}: gradient norm vs horizon (dashed: initialised, solid: trained)", fontsize=10)
    save_figure(fig, out / "grad_norm_horizon.png")
    print(f"wrote {out}/ (config.json, rates.csv, rates.md, norms.csv, grad_norm_horizon.png) "
          f"in {time.time() - t_start:.0f}s")
    return rows


if __name__ == "__main__":
    main()
