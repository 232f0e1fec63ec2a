"""markov_svg: stochastic value gradients through a Markov world model, with a learned critic.

The policy loss is the k-step SVG loss (`svg_loss`: the imagined k-step return from replayed states
plus gamma^k V(s_{t+k})); after each policy update the state-value critic V(s, t) takes one step on
k-step imagined targets through a target network:

    y = sum_{i<k} gamma^i (r_{t+i} - (alpha / H) log pi) + gamma^k V_target(s_{t+k}),

with the bootstrap dropped past the episode's end (n-step TD targets through the model). The target
network is a Polyak average of the critic (`polyak`). Everything else is the BPO learner's.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from awm_jax.core.methods.bpo import Rollout, discounted_sum, imagine
from awm_jax.core.methods.bpo_learner import BPOLearner, TrainState, make_bpo
from awm_jax.core.models.networks import MLP
from awm_jax.core.pieces import adam, guarded_update, init_opt
from awm_jax.core.spaces import policy_input, to_obs


@dataclasses.dataclass(frozen=True)
class Critic:
    input_size: int
    hidden: tuple = (64, 64)
    activation: str = "swish"

    @property
    def net(self):
        return MLP(tuple(self.hidden), 1, self.activation)

    def init(self, key):
        return self.net.init(key, jnp.zeros((self.input_size,)))

    def value(self, params, norm, obs, horizon):
        """V of raw observations [..., n + 1] -> [...]."""
        return self.net.apply(params, policy_input(norm, obs, horizon))[..., 0]


def svg_loss(policy_params, policy, model, model_params, critic, critic_params, task, norm, s, t, key, *,
             k=2, alpha=0.1, gamma=1.0, stop_state_grad=True, pnorm=None):
    """k-step SVG loss from raw model states s [B, n] at step indices t [B]: the imagined k-step
    return plus gamma^k V(s_{t+k}) (zero past the episode's end), entropy weight alpha / H per step.
    Returns (loss, info)."""
    keys = jax.random.split(key, s.shape[0])
    ro = jax.vmap(lambda s_, t_, k_: imagine(model, model_params, policy, policy_params, task, norm, s_, k_, k,
                                             t_, stop_state_grad, pnorm))(s, t, keys)
    fnorm = norm if pnorm is None else pnorm  # the critic sees the policy's normalised features
    total, ret = k_step_return(ro, t, k, task.horizon, gamma, alpha / task.horizon,
                               critic.value(critic_params, fnorm, ro.last_obs, task.horizon))
    return -jnp.mean(total), {"imagined_return": ret.mean(), "entropy": -ro.logp.mean()}


def critic_loss(critic_params, critic, target_params, policy, policy_params, model, model_params, task, norm, s, t,
                key, *, k=2, alpha=0.1, gamma=1.0, pnorm=None):
    """0.5 * mean squared error of V(s_t) against k-step imagined targets, start states s [B, n] at t [B].
    `norm`: the model's state scaling; `pnorm` (default `norm`): the normaliser of the critic's and the
    policy's features; the entropy weight per step is alpha / H (as in `svg_loss`)."""
    fnorm = norm if pnorm is None else pnorm
    keys = jax.random.split(key, s.shape[0])
    ro = jax.vmap(lambda s_, t_, k_: imagine(model, model_params, policy, policy_params, task, norm, s_, k_, k,
                                             t_, pnorm=fnorm))(s, t, keys)
    total, _ = k_step_return(ro, t, k, task.horizon, gamma, alpha / task.horizon,
                             critic.value(target_params, fnorm, ro.last_obs, task.horizon))
    y = jax.lax.stop_gradient(total)
    v = critic.value(critic_params, fnorm, to_obs(s, t), task.horizon)
    return 0.5 * jnp.mean((v - y) ** 2)


def k_step_return(ro: Rollout, t, k: int, horizon: int, gamma, alpha, last_value):
    """k-step imagined returns from step indices t [B]: (sum_{i<k} gamma^i (r - alpha log pi) (alpha: per
    step) + gamma^k V(s_{t+k}), the same without the bootstrap), both [B]; steps and the bootstrap past
    the episode's end count zero."""
    alive = (jnp.arange(k)[None] + t[:, None]) < horizon
    ret = discounted_sum(ro.rewards * alive, gamma) - alpha * discounted_sum(ro.logp * alive, gamma)
    return ret + gamma**k * jnp.where(t + k < horizon, last_value, 0.0), ret


def polyak(target, online, tau):
    """target <- (1 - tau) target + tau online."""
    return jax.tree.map(lambda a, b: (1 - tau) * a + tau * b, target, online)


@struct.dataclass
class SVGState(TrainState):
    """The BPO TrainState and the critic's parameters, target and optimiser."""

    critic_params: Any
    critic_target: Any
    critic_opt: Any


@dataclasses.dataclass(frozen=True, eq=False)
class SVGLearner(BPOLearner):
    critic: Critic = None
    critic_tx: Any = dataclasses.field(default_factory=adam)

    state_class = SVGState

    @property
    def traced(self) -> tuple[str, ...]:
        return super().traced + ("critic_lr", "target_tau")

    def _extra_state(self, key, hp) -> dict:
        params = self.critic.init(key)
        return dict(critic_params=params, critic_target=params,
                    critic_opt=init_opt(self.critic_tx, params, learning_rate=hp["critic_lr"]))

    def _policy_loss(self, state, idx, key_t, key_loss, model_params, kw):
        t = jax.random.randint(key_t, (idx.shape[0],), 0, self.task.horizon)
        s = state.replay.obs[idx, t, :-1]
        loss = lambda p: svg_loss(p, self.policy, self.model, model_params, self.critic, state.critic_params,
                                  self.task, self.model_norm(state), s, t, key_loss, k=self.config.svg_k, **kw)
        return loss, (s, t)

    def _after_policy_update(self, state, context, key):
        s, t = context
        hp = state.hparams
        loss, g = jax.value_and_grad(critic_loss)(
            state.critic_params, self.critic, state.critic_target, self.policy, state.policy_params, self.model,
            state.model_params, self.task, self.model_norm(state), s, t, key, k=self.config.svg_k,
            alpha=hp["entropy"], gamma=hp["gamma"], pnorm=state.norm)
        params, opt, skipped = guarded_update(self.critic_tx, loss, g, state.critic_params, state.critic_opt)
        target = polyak(state.critic_target, params, hp["target_tau"])
        state = state.replace(critic_params=params, critic_opt=opt, critic_target=target,
                              skipped_updates=state.skipped_updates + skipped)
        return state, {"critic/loss": loss}


def make_svg(config, task) -> SVGLearner:
    """The markov_svg learner of a validated `config` on `task`."""
    return make_bpo(config, task, SVGLearner, critic=Critic(task.obs_size, tuple(config.mlp_hidden)))
