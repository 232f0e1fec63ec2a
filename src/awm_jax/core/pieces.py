"""The pieces of a training loop that every learner uses.

- `adam(clip)`: Adam (after global-norm clipping when `clip`) whose hyperparameters live in the
  optimiser state, built once per learner; `init_opt` sets them to traced values (vmapped like seeds).
- `guarded_update`: an optimiser step applied only where the loss, the gradient and the new
  parameters are all finite (per seed, by selection).
- `env_step`: one env step written to an episode replay, with autoreset; `act_steps`: a scan of them
  (the warm-up, a block's acting).
- `episode`: one evaluation episode of any acting function; `evaluation_period`: the period shape
  (a scan of blocks, the block metrics averaged, one evaluation) every learner shares.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def adam(clip: bool = False) -> optax.GradientTransformation:
    """Adam, after global-norm clipping when `clip`, with its learning rate (and clip) in the optimiser
    state: build it once, `init_opt` it with traced values; `update` reads them from the state."""
    if clip:
        clipped = lambda learning_rate, grad_clip: optax.chain(optax.clip_by_global_norm(grad_clip),
                                                               optax.adam(learning_rate))
        return optax.inject_hyperparams(clipped)(learning_rate=1.0, grad_clip=1.0)
    return optax.inject_hyperparams(lambda learning_rate: optax.adam(learning_rate))(learning_rate=1.0)


def set_hyperparams(opt_state, **values):
    """An `optax.inject_hyperparams` state with hyperparameters replaced (traced values are fine), each
    kept at the dtype the optimiser chose for it."""
    hp = opt_state.hyperparams
    return opt_state._replace(hyperparams={**hp, **{k: jnp.asarray(v, hp[k].dtype) for k, v in values.items()}})


def init_opt(tx, params, **hyperparams):
    """`tx.init(params)` with its hyperparameters (learning_rate, grad_clip) set to `hyperparams`."""
    return set_hyperparams(tx.init(params), **hyperparams)


def all_finite(tree) -> jax.Array:
    """[] bool: every element of every leaf is finite."""
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def guarded_update(tx, loss, grads, params, opt_state):
    """One step of optimiser `tx`, applied only if the loss, the gradient and the new parameters are all
    finite (per seed, by selection; no branching). Returns (params, opt_state, 1 if skipped else 0)."""
    updates, new_opt_state = tx.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    ok = jnp.isfinite(loss) & all_finite(grads) & all_finite(new_params)
    pick = lambda new, old: jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)
    return pick(new_params, params), pick(new_opt_state, opt_state), (~ok).astype(jnp.int32)


def env_step(task, env, replay, action, reset_key):
    """Take `action` in `env`, write the step to `replay` and reset when the episode ends:
    (the step's result `nxt` (reward, done), the env to continue from, the replay)."""
    nxt = task.step(env, action)
    replay = replay.add(env.t, env.obs, action, nxt.reward, nxt.obs, nxt.done)
    fresh = task.reset(reset_key)
    return nxt, jax.tree.map(lambda r, n: jnp.where(nxt.done, r, n), fresh, nxt), replay


def act_steps(step, state, act, key, n: int):
    """`n` env steps `step(state, key, act) -> state`, one key each split from `key`, in a scan: the
    warm-up (acting with the warm-up policy) and each block's acting share it."""
    return jax.lax.scan(lambda s, k: (step(s, k, act), None), state, jax.random.split(key, n))[0]


def episode(task, key, act, carry=()):
    """One whole episode from `task.reset(key)` acting with `act(carry, env) -> (action, carry)` (env: the
    task state before the action; its `reward` is the previous step's, 0 at reset): (undiscounted
    return, observations [H + 1, obs_size], actions [H, m])."""

    def body(c, _):
        env, carry = c
        a, carry = act(carry, env)
        nxt = task.step(env, a)
        return (nxt, carry), (nxt.reward, env.obs, a)

    (last, _), (rewards, obs, actions) = jax.lax.scan(body, (task.reset(key), carry), None, length=task.horizon)
    return rewards.sum(), jnp.concatenate([obs, last.obs[None]]), actions


def evaluation_period(state, block, blocks: int, evaluate):
    """The shape every learner's evaluation period shares: `blocks` x `block(state) -> (state, metrics)`
    in a scan, the block metrics averaged, then `evaluate(state, key) -> {name: value}` with a key split
    off the state's key, and the env-step and skipped-update counters (`state.env_steps`,
    `state.skipped_updates`)."""
    state, block_metrics = jax.lax.scan(lambda s, _: block(s), state, None, length=blocks)
    key, k_eval = jax.random.split(state.key)
    state = state.replace(key=key)
    metrics = {k: v.mean() for k, v in block_metrics.items()}
    metrics.update(evaluate(state, k_eval))
    metrics["eval/env_steps"] = state.env_steps
    metrics["skipped_updates"] = state.skipped_updates
    return state, metrics
