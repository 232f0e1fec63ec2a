"""Backpropagation-based policy optimisation (BPO): imagined rollouts and the policy objectives.

`imagine` rolls a policy out through any world model (or `TrueTask`) for a fixed number of steps:
at step t it builds the observation from the predicted state, samples a reparameterised action from
the policy (by default on a stop-gradient copy of that observation, as in the paper, so that the
gradient flows reward -> predicted state -> earlier actions -> policy, and reward -> action), scores
it with the task's true reward function, and advances the model one step.

Objectives (to minimise; all take the policy parameters first):
- `bpo_loss`: -mean over start states of sum_t gamma^t (r_t - alpha log pi(a_t | s_t)), the full
  unroll of the paper (through a world model, or through the task itself for `true_bptt`);
- `svg_loss`: the k-step unroll through a model plus a learned critic at the last state (markov_svg).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from awm_jax.spaces import Normalizer, policy_input, to_obs


class Rollout(NamedTuple):
    """An imagined trajectory: obs [T, n + 1] (raw, before each action), actions [T, m], logp [T],
    rewards [T], last_obs [n + 1] (after the last action)."""

    obs: jax.Array
    actions: jax.Array
    logp: jax.Array
    rewards: jax.Array
    last_obs: jax.Array


def imagine(model, model_params, policy, policy_params, task, norm: Normalizer, s0, key, length: int,
            t0=0, stop_state_grad: bool = True) -> Rollout:
    """Roll `policy` out for `length` steps through `model` from raw model state s0 [n] at step t0."""

    def body(carry, inp):
        mcarry, s = carry
        i, k = inp
        t = t0 + i
        obs = to_obs(s, t)
        pin = policy_input(norm, jax.lax.stop_gradient(obs) if stop_state_grad else obs, task.horizon)
        a, logp = policy.sample(policy_params, pin, k)
        r = task.reward(obs, a)
        mcarry, z = model.step(model_params, mcarry, a, i)
        return (mcarry, norm.denorm(z)), (obs, a, logp, r)

    carry0 = (model.start(model_params, norm.norm(s0)), s0)
    (_, s_last), (obs, acts, logp, rew) = jax.lax.scan(
        body, carry0, (jnp.arange(length), jax.random.split(key, length)))
    return Rollout(obs, acts, logp, rew, to_obs(s_last, t0 + length))


def discounted_sum(x, gamma):
    """sum_t gamma^t x_t over the last axis."""
    return jnp.sum(x * gamma ** jnp.arange(x.shape[-1], dtype=x.dtype), axis=-1)


def bpo_loss(policy_params, policy, model, model_params, task, norm, s0, key, *, alpha=0.1, gamma=1.0,
             stop_state_grad=True):
    """Full-unroll BPO loss over start states s0 [B, n]: returns (loss, info dict of scalars)."""
    keys = jax.random.split(key, s0.shape[0])
    ro = jax.vmap(lambda s, k: imagine(model, model_params, policy, policy_params, task, norm, s, k,
                                       task.horizon, 0, stop_state_grad))(s0, keys)
    ret = discounted_sum(ro.rewards, gamma)
    entropy = -ro.logp.mean()
    loss = -jnp.mean(ret - alpha * discounted_sum(ro.logp, gamma))
    return loss, {"imagined_return": ret.mean(), "entropy": entropy}


def svg_loss(policy_params, policy, model, model_params, critic, critic_params, task, norm, s, t, key, *,
             k=2, alpha=0.1, gamma=1.0, stop_state_grad=True):
    """k-step SVG loss from raw model states s [B, n] at step indices t [B]: the imagined k-step
    return plus gamma^k V(s_{t+k}) (zero past the episode's end). Returns (loss, info)."""
    keys = jax.random.split(key, s.shape[0])
    ro = jax.vmap(lambda s_, t_, k_: imagine(model, model_params, policy, policy_params, task, norm, s_, k_, k,
                                             t_, stop_state_grad))(s, t, keys)
    alive = (jnp.arange(k)[None] + t[:, None]) < task.horizon  # steps past the end earn nothing
    ret = discounted_sum(ro.rewards * alive, gamma) - alpha * discounted_sum(ro.logp * alive, gamma)
    boot = critic.value(critic_params, norm, ro.last_obs, task.horizon)
    boot = jnp.where(t + k < task.horizon, boot, 0.0)
    loss = -jnp.mean(ret + gamma**k * boot)
    return loss, {"imagined_return": ret.mean(), "entropy": -ro.logp.mean()}
