"""Backpropagation-based policy optimisation (BPO): imagined rollouts and the policy objectives.

`imagine` rolls a policy out through any world model (or `TrueTask`) for a fixed number of steps:
at step t it builds the observation from the predicted state, samples a reparameterised action from
the policy (by default on a stop-gradient copy of that observation, as in the paper, so that the
gradient flows reward -> predicted state -> earlier actions -> policy, and reward -> action), scores
it with the task's true reward function, and advances the model one step.

Objectives (to minimise; all take the policy parameters first):
- `bpo_loss`: -mean over start states of [sum_t gamma^t r_t + alpha * (1/H) sum_t gamma^t (-log pi(a_t | s_t))],
  the full unroll of the paper (through a world model, or through the task itself for `true_bptt`).
  The entropy bonus is alpha times the MEAN over the H steps of the per-step entropy estimate, as in
  the paper's code (alpha = 0.1 is 0.001 per step at H = 100);
- `awm_jax.core.methods.svg.svg_loss`: the k-step unroll through a model plus a learned critic at the last
  state (markov_svg), with the same per-step entropy weight alpha / H.

`norm` maps model states to raw ones (the world model's scaling); `pnorm` (default: `norm`) is the
normaliser the policy's features use (`Policy.features`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from awm_jax.core.spaces import Normalizer, to_obs


class Rollout(NamedTuple):
    """An imagined trajectory: obs [T, n + 1] (raw, before each action), actions [T, m], logp [T],
    rewards [T], last_obs [n + 1] (after the last action)."""

    obs: jax.Array
    actions: jax.Array
    logp: jax.Array
    rewards: jax.Array
    last_obs: jax.Array


def imagine(model, model_params, policy, policy_params, task, norm: Normalizer, s0, key, length: int,
            t0=0, stop_state_grad: bool = True, pnorm: Normalizer | None = None) -> Rollout:
    """Roll `policy` out for `length` steps through `model` from raw model state s0 [n] at step t0.

    For an actions world model with a parallel training pass (the transformer AWM) and the stop-gradient
    on the policy's state input (the default), the differentiable part is recomputed in parallel
    (`_imagine_parallel`): same values, same gradient, and the backward pass goes through one full
    causal pass instead of `length` cached steps (4x faster on CPU)."""
    if stop_state_grad and model.parallel_predict and not model.feeds_back_predictions and t0 == 0:
        return _imagine_parallel(model, model_params, policy, policy_params, task, norm, s0, key, length, pnorm)
    return imagine_sequential(model, model_params, policy, policy_params, task, norm, s0, key, length, t0,
                              stop_state_grad, pnorm)


def imagine_sequential(model, model_params, policy, policy_params, task, norm: Normalizer, s0, key, length: int,
                       t0=0, stop_state_grad: bool = True, pnorm: Normalizer | None = None) -> Rollout:
    """`imagine` one step at a time (the model's `start`/`step`, e.g. with a key/value cache)."""
    pnorm = norm if pnorm is None else pnorm

    def body(carry, inp):
        mcarry, s = carry
        i, k = inp
        t = t0 + i
        obs = to_obs(s, t)
        pin = policy.features(pnorm, jax.lax.stop_gradient(obs) if stop_state_grad else obs)
        a, logp = policy.sample(policy_params, pin, k)
        r = task.reward(obs, a)
        mcarry, z = model.step(model_params, mcarry, a, i)
        return (mcarry, norm.denorm(z)), (obs, a, logp, r)

    carry0 = (model.start(model_params, norm.norm(s0)), s0)
    (_, s_last), (obs, acts, logp, rew) = jax.lax.scan(
        body, carry0, (jnp.arange(length), jax.random.split(key, length)))
    return Rollout(obs, acts, logp, rew, to_obs(s_last, t0 + length))


def _imagine_parallel(model, model_params, policy, policy_params, task, norm, s0, key, length, pnorm=None):
    """`imagine` for a model that never reads its own predictions, with the policy's state input
    stop-gradiented. Pass 1 generates the trajectory step by step without gradients; pass 2 recomputes
    the actions a_t = pi(sg(obs_t), eps_t) for all t at once and the predictions s^_1..s^_T from s_0
    and those actions with the model's training-time (full causal) pass. The values equal pass 1 and
    the gradient is the sequential one: actions depend on the parameters only through the policy, and
    predictions on the actions only through the model."""
    sg = jax.lax.stop_gradient
    pnorm = norm if pnorm is None else pnorm
    first = imagine_sequential(model, sg(model_params), policy, sg(policy_params), task, norm, s0, key, length,
                               pnorm=pnorm)
    obs = sg(first.obs)  # [T, n + 1]
    keys = jax.random.split(key, length)  # the same per-step noise as pass 1
    pin = policy.features(pnorm, obs)
    acts, logp = jax.vmap(lambda x, k: policy.sample(policy_params, x, k))(pin, keys)
    z0 = norm.norm(s0)
    states_in = jnp.concatenate([z0[None], jnp.zeros((length, z0.shape[-1]), z0.dtype)])  # only s_0 is read
    pred = norm.denorm(model.predict(model_params, states_in, acts))  # [T, n]: s^_1..s^_T
    states = jnp.concatenate([s0[None], pred[:-1]])
    obs_d = to_obs(states, jnp.arange(length))
    rew = jax.vmap(task.reward)(obs_d, acts)
    return Rollout(obs_d, acts, logp, rew, to_obs(pred[-1], length))


def discounted_sum(x, gamma):
    """sum_t gamma^t x_t over the last axis."""
    return jnp.sum(x * gamma ** jnp.arange(x.shape[-1], dtype=x.dtype), axis=-1)


def bpo_loss(policy_params, policy, model, model_params, task, norm, s0, key, *, alpha=0.1, gamma=1.0,
             stop_state_grad=True, pnorm=None):
    """Full-unroll BPO loss over start states s0 [B, n]: returns (loss, info dict of scalars).
    loss = -mean_B [sum_t gamma^t r_t - (alpha / H) sum_t gamma^t log pi(a_t | s_t)]."""
    keys = jax.random.split(key, s0.shape[0])
    ro = jax.vmap(lambda s, k: imagine(model, model_params, policy, policy_params, task, norm, s, k,
                                       task.horizon, 0, stop_state_grad, pnorm))(s0, keys)
    ret = discounted_sum(ro.rewards, gamma)
    entropy = -ro.logp.mean()
    loss = -jnp.mean(ret - alpha / task.horizon * discounted_sum(ro.logp, gamma))
    return loss, {"imagined_return": ret.mean(), "entropy": entropy}
