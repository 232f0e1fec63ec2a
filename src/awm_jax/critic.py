"""State-value critic for `markov_svg`: V(s, t) learned from k-step imagined returns with a target network.

Target for a start state s_t: y = sum_{i<k} gamma^i (r_{t+i} - (alpha / H) log pi) + gamma^k V_target(s_{t+k}),
with the bootstrap dropped past the episode's end (n-step TD targets through the model). The target
network is a Polyak average of the critic (`polyak`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from awm_jax.bpo import imagine, k_step_return
from awm_jax.networks import MLP
from awm_jax.spaces import policy_input, to_obs


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


def critic_loss(critic_params, critic, target_params, policy, policy_params, model, model_params, task, norm, s, t,
                key, *, k=2, alpha=0.1, gamma=1.0, pnorm=None):
    """0.5 * mean squared error of V(s_t) against k-step imagined targets, start states s [B, n] at t [B].
    `norm`: the model's state scaling; `pnorm` (default `norm`): the normaliser of the critic's and the
    policy's features; the entropy weight per step is alpha / H (as in `bpo.svg_loss`)."""
    fnorm = norm if pnorm is None else pnorm
    keys = jax.random.split(key, s.shape[0])
    ro = jax.vmap(lambda s_, t_, k_: imagine(model, model_params, policy, policy_params, task, norm, s_, k_, k,
                                             t_, pnorm=fnorm))(s, t, keys)
    total, _ = k_step_return(ro, t, k, task.horizon, gamma, alpha / task.horizon,
                             critic.value(target_params, fnorm, ro.last_obs, task.horizon))
    y = jax.lax.stop_gradient(total)
    v = critic.value(critic_params, fnorm, to_obs(s, t), task.horizon)
    return 0.5 * jnp.mean((v - y) ** 2)


def polyak(target, online, tau):
    """target <- (1 - tau) target + tau online."""
    return jax.tree.map(lambda a, b: (1 - tau) * a + tau * b, target, online)
