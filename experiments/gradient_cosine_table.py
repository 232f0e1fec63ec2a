"""Cosine similarity between each world model's policy gradient and the true one, at a random policy.

    python experiments/gradient_cosine_table.py --out runs/cosine [--task cancer_treatment] [--steps 400]
    python experiments/gradient_cosine_table.py --out /tmp/cosine --quick     # about a minute: 2 models, 50 updates

Each world model is trained briefly (Adam 1e-3, batches of 32) on random-action episodes of the task;
then, for a freshly initialised policy, the BPO policy gradient through the model is compared with the
gradient through the true task on the same 16 start states and policy noise. Prints and writes a
table (cosine.md): model, held-out 0.5 MSE (normalised), cosine, model and true gradient norms.
"""

import dataclasses
from pathlib import Path
from typing import Annotated

import jax
import jax.numpy as jnp
import optax
import tyro

import awm_envs
from awm_jax.analysis.diagnostics import policy_gradient_comparison
from awm_jax.analysis.options import quick_defaults
from awm_jax.io.results import atomic_write, format_table
from awm_jax.loop.spaces import Normalizer
from awm_jax.models import KINDS, make_world_model
from awm_jax.models.policy import Policy

QUICK_MODELS = ("awm_transformer", "markov_mlp")
QUICK_HELP = (f"smoke test (about a minute on a laptop CPU): only {', '.join(QUICK_MODELS)} instead of every world "
              "model, with 50 model updates on 16 episodes unless --steps or --episodes are given")


@dataclasses.dataclass(kw_only=True)
class Options:
    out: str
    """folder for cosine.md"""
    task: str = "cancer_treatment"
    """the task whose random-action episodes train the models"""
    steps: int = 400
    """model updates (Adam 1e-3, batches of 32)"""
    episodes: int = 64
    """random-action training episodes"""
    quick: Annotated[bool, tyro.conf.arg(help=QUICK_HELP)] = False


def random_episodes(task, key, count):
    """Model states [count, H + 1, n] and actions [count, H, m] of uniformly random actions."""
    k_act, k_env = jax.random.split(key)
    acts = jax.random.uniform(k_act, (count, task.horizon, task.action_size), minval=-1, maxval=1)

    def one(k, a):
        first = task.reset(k).obs[None]
        return jnp.concatenate([first, task.rollout(k, a)[1].obs])[:, :-1]

    return jax.vmap(one)(jax.random.split(k_env, count), acts), acts


def train_model(wm, norm, states, actions, key, steps, batch=32, lr=1e-3):
    params = wm.init(key)
    opt = optax.adam(lr)
    mask = jnp.ones(actions.shape[:2])

    @jax.jit
    def run(params, key):
        def step(carry, k):
            p, o = carry
            idx = jax.random.randint(k, (batch,), 0, states.shape[0])
            loss, g = jax.value_and_grad(wm.loss)(p, norm.norm(states[idx]), actions[idx], mask[idx])
            upd, o = opt.update(g, o)
            return (optax.apply_updates(p, upd), o), loss

        return jax.lax.scan(step, (params, opt.init(params)), jax.random.split(key, steps))[0][0]

    return run(params, key)


def main(argv=None):
    args = tyro.cli(Options, args=argv, description=__doc__)
    kinds = tuple(KINDS)
    if args.quick:
        args, kinds = quick_defaults(args, steps=50, episodes=16), QUICK_MODELS
    task = awm_envs.make(args.task)
    key = jax.random.PRNGKey(0)
    train_s, train_a = random_episodes(task, jax.random.fold_in(key, 1), args.episodes)
    test_s, test_a = random_episodes(task, jax.random.fold_in(key, 2), 32)
    norm = Normalizer.from_data(train_s)
    n = task.obs_size - 1
    policy = Policy(n + 1, task.action_size, horizon=task.horizon)
    pparams = policy.init(jax.random.fold_in(key, 3))
    s0 = test_s[:16, 0]
    rows = []
    for kind in kinds:
        wm = make_world_model(kind, n, task.action_size, task.horizon)
        params = train_model(wm, norm, train_s, train_a, jax.random.fold_in(key, 4), args.steps)
        test_loss = float(wm.loss(params, norm.norm(test_s), test_a, jnp.ones(test_a.shape[:2])))
        _, _, info = policy_gradient_comparison(policy, pparams, wm, params, task, norm, s0, jax.random.fold_in(key, 5))
        rows.append(dict(model=kind, test_loss=test_loss, cosine=float(info["cosine"]),
                         model_grad_norm=float(info["model_grad_norm"]), true_grad_norm=float(info["true_grad_norm"])))
        print(rows[-1], flush=True)
    text = format_table(rows)
    print(text)
    atomic_write(Path(args.out) / "cosine.md", f"task {args.task}, {args.steps} model updates\n\n" + text + "\n")


if __name__ == "__main__":
    main()
