"""Optimisation landscapes of one-action toys: return vs action through the true simulator and through a
world model, and gradient ascent on the action through each (experiments/landscapes.py).

The paper's hard toys (double_pendulum, one_bounce) read one action, a_0; later actions are ignored.
The landscape is the 1-D slice a_0 = a, a_1 = ... = a_{H-1} = 0:

    R_true(a)  = the task's undiscounted return of that action sequence;
    R_model(a) = sum_t r(s^_t, a_t) with the task's true reward evaluated on the model's predicted states
                 s^_0 = s_0, s^_1, ..., s^_{H-1} (only the dynamics are learned, as in the paper's BPO).

`gradient_ascent` maximises either return over a from many starting actions at once (Adam on the
action, projected onto [-1, 1] after every step); the true return of the final actions says whether
the gradient through that landscape finds good actions.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from awm_jax.core.spaces import Normalizer, to_obs


def slice_actions(task, a):
    """The 1-D slice: a [] -> actions [H, m] with a_0 = (a, 0, ...) and every later action 0."""
    return jnp.zeros((task.horizon, task.action_size), jnp.result_type(a, task.dtype)).at[0, 0].set(a)


def true_return(task, key=None):
    """a [] -> the task's return of `slice_actions(task, a)` from reset(key)."""
    key = jax.random.PRNGKey(0) if key is None else key
    return lambda a: task.episode_return(key, slice_actions(task, a).astype(task.dtype))


def model_return(task, model, params, norm: Normalizer, key=None):
    """a [] -> the return of `slice_actions(task, a)` scored by the task's reward on the model's open-loop
    predictions from the task's s_0 (reset(key)); the model works on normalised states (`norm`)."""
    key = jax.random.PRNGKey(0) if key is None else key
    s0 = task.reset(key).obs[:-1]

    def ret(a):
        acts = slice_actions(task, a).astype(s0.dtype)
        pred = norm.denorm(model.rollout(params, norm.norm(s0), acts))  # s^_1..s^_H
        states = jnp.concatenate([s0[None], pred[:-1]])  # the state each action is taken in
        return jnp.sum(jax.vmap(task.reward)(to_obs(states, jnp.arange(task.horizon)), acts))

    return ret


def landscape(return_fn, grid):
    """Returns [G] of return_fn at actions grid [G] (one compiled, vmapped call)."""
    return jax.jit(jax.vmap(return_fn))(grid)


def gradient_ascent(return_fn, starts, steps: int, lr):
    """Adam ascent on the action from each start [S], projected onto [-1, 1] after every step, for one
    learning rate or several (lr [] or [L], one compiled program). Returns (final actions [S] or [L, S],
    returns along the way [steps + 1, S] or [L, steps + 1, S] as return_fn sees them)."""
    value_and_grad = jax.vmap(jax.value_and_grad(return_fn))

    def one(a, lr):
        opt = optax.adam(lr)

        def step(carry, _):
            a, o = carry
            r, g = value_and_grad(a)
            g = jnp.where(jnp.isfinite(g), g, 0.0)
            upd, o = opt.update(-g, o)  # optax minimises: ascend on the return
            return (jnp.clip(optax.apply_updates(a, upd), -1.0, 1.0), o), r

        (a, _), rs = jax.lax.scan(step, (a, opt.init(a)), None, length=steps)
        return a, jnp.concatenate([rs, jax.vmap(return_fn)(a)[None]])

    lr = jnp.asarray(lr, jnp.result_type(float))
    run = jax.jit(jax.vmap(one, in_axes=(None, 0))) if lr.ndim else jax.jit(one)
    return run(starts, lr)
