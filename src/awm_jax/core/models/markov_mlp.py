"""Markovian world model: s^_{t+1} = s^_t + MLP([s^_t, a_t]) (swish MLP predicting the difference).

Trained on one-step predictions from true states; imagination chains its own predictions, so
d s^_t / d a_k is a product of t - k step Jacobians.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from awm_jax.core.models.base import WorldModel
from awm_jax.core.models.networks import MLP


@dataclasses.dataclass(frozen=True)
class MarkovMLP(WorldModel):
    hidden: tuple = (64, 64)
    activation: str = "swish"

    @classmethod
    def config_sizes(cls, config) -> dict:
        return dict(hidden=config.mlp_hidden)

    @property
    def net(self):
        return MLP(tuple(self.hidden), self.state_size, self.activation)

    def init(self, key):
        return self.net.init(key, jnp.zeros((self.state_size + self.action_size,)))

    def delta(self, params, s, a):
        """s [..., n], a [..., m] -> s + MLP([s, a])."""
        return s + self.net.apply(params, jnp.concatenate([s, a], axis=-1))

    def predict(self, params, states, actions):
        return self.delta(params, states[:-1], actions)

    def start(self, params, s0):
        return s0

    def step(self, params, s, action, t):
        s_next = self.delta(params, s, action)
        return s_next, s_next
