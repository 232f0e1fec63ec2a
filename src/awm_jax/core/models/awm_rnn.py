"""Recurrent Actions World Models (`rnn`, `gru`, `lstm` cells): s^_t = dec(h_t), h_t = cell(h_{t-1}, emb(a_{t-1})).

The hidden state starts from an MLP embedding of s_0 (for the LSTM, both its cell and hidden
states); actions enter through an MLP embedding; an MLP decodes the absolute state. Predictions are
never fed back, but the gradient from s^_t to a_k still crosses t - k cell Jacobians, which is why
Corollary 1 bounds it by O(eta^H), like a Markov model (Proposition 1).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax.numpy as jnp

from awm_jax.core.models.base import WorldModel
from awm_jax.core.models.networks import MLP

CELLS = {"rnn": nn.SimpleCell, "gru": nn.GRUCell, "lstm": nn.OptimizedLSTMCell}


class RecurrentAWMNet(nn.Module):
    state_size: int
    cell_type: str = "lstm"
    hidden: int = 48
    embed: tuple = (64, 64)
    decoder: tuple = (64, 64)

    def setup(self):
        n_init = 2 * self.hidden if self.cell_type == "lstm" else self.hidden
        self.init_net = MLP(self.embed, n_init, "relu")
        self.action_net = MLP(self.embed, self.hidden, "relu")
        self.cell = CELLS[self.cell_type](features=self.hidden)
        self.head = MLP(self.decoder, self.state_size, "relu")

    def first(self, s0):
        h = self.init_net(s0)
        if self.cell_type == "lstm":
            return (h[: self.hidden], h[self.hidden :])
        return h

    def next(self, carry, action):
        carry, out = self.cell(carry, self.action_net(action))
        return carry, self.head(out)

    def __call__(self, s0, action):
        """Used by init only: one step from s0 [n] with action [m]."""
        return self.next(self.first(s0), action)


@dataclasses.dataclass(frozen=True)
class RecurrentAWM(WorldModel):
    cell: str = "lstm"
    hidden: int = 48
    embed: tuple = (64, 64)
    decoder: tuple = (64, 64)

    @classmethod
    def config_sizes(cls, config) -> dict:
        return dict(hidden=config.rnn_hidden, embed=config.mlp_hidden, decoder=config.mlp_hidden)

    feeds_back_predictions = False

    def __post_init__(self):
        if self.cell not in CELLS:
            raise ValueError(f"unknown recurrent cell {self.cell!r}; valid: {list(CELLS)}")

    @property
    def net(self):
        return RecurrentAWMNet(self.state_size, self.cell, self.hidden, tuple(self.embed), tuple(self.decoder))

    def init(self, key):
        return self.net.init(key, jnp.zeros((self.state_size,)), jnp.zeros((self.action_size,)))

    def predict(self, params, states, actions):
        return self.rollout(params, states[0], actions)  # an AWM reads s_0 and the actions only

    def start(self, params, s0):
        return self.net.apply(params, s0, method=RecurrentAWMNet.first)

    def step(self, params, carry, action, t):
        return self.net.apply(params, carry, action, method=RecurrentAWMNet.next)
