"""Transformer History World Model: s^_{t+1} = h(s_0, a_0, s^_1, a_1, ..., s^_t, a_t).

The same causal transformer as the AWM, on tokens [s_t, a_t] (one linear embedding of the pair) at
position t; the feature at position t decodes to s^_{t+1}. Trained with teacher forcing (true states
as inputs); during imagination it feeds its own predictions back, which opens the combinatorially
many "circuitous" gradient paths through predicted states. Imagination uses a key/value cache.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from awm_jax.core.models.base import TransformerWorldModel
from awm_jax.core.models.networks import MLP, CausalTransformer


class TransformerHWMNet(nn.Module):
    state_size: int
    width: int = 48
    layers: int = 2
    heads: int = 3
    max_len: int = 100
    decoder: tuple = (64, 64)
    position_std: float = 0.1
    dtype: Any = None  # computation dtype (None: float32); predictions come out in float32
    weight_init: str = "gpt2"  # the token embedding's and blocks' init (networks.transformer_dense)

    def setup(self):
        self.body = CausalTransformer(self.width, self.layers, self.heads, self.max_len, pos_std=self.position_std,
                                      dtype=self.dtype, weight_init=self.weight_init)
        self.head = MLP(self.decoder, self.state_size, "relu", dtype=self.dtype)

    def __call__(self, states, actions):
        """states [H, n] (s_0..s_{H-1}), actions [H, m] -> s^_1..s^_H [H, n]."""
        return self.head(self.body(jnp.concatenate([states, actions], axis=-1)))

    def next(self, state, action, cache, pos):
        feat, cache = self.body.decode(jnp.concatenate([state, action]), cache, pos)
        return self.head(feat), cache


@dataclasses.dataclass(frozen=True)
class TransformerHWM(TransformerWorldModel):
    @property
    def net(self):
        return TransformerHWMNet(self.state_size, self.width, self.layers, self.heads, self.max_horizon,
                                 tuple(self.decoder), self.position_std, self.compute_dtype, self.weight_init)

    def init(self, key):
        H = self.max_horizon
        return self.net.init(key, jnp.zeros((H, self.state_size)), jnp.zeros((H, self.action_size)))

    def predict(self, params, states, actions):
        return self.net.apply(params, states[:-1], actions)

    def start(self, params, s0):
        return self.empty_cache(self.max_horizon, s0.dtype), s0

    def step(self, params, carry, action, t):
        cache, s = carry
        s_next, cache = self.net.apply(params, s, action, cache, t, method=TransformerHWMNet.next)
        return (cache, s_next), s_next
