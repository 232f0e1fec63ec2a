"""Transformer Actions World Model: s^_t = g(s_0, a_0, ..., a_{t-1}) with a causal transformer.

Token 0 embeds s_0 and token t (t >= 1) embeds a_{t-1} (separate linear embeddings straight into the
width-`width` stream, as the paper's; `token_mixer=True` adds a shared Dense after them; then a learned
position table, init std `position_std`, 0.1 like the paper's lecun-uniform table); the feature at
position t decodes, through an MLP, to the absolute state s^_t. Predictions never become inputs, so the
gradient from s^_t to a_k stays inside the network. Imagination runs one token per step with a key/value cache.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from awm_jax.core.models.base import TransformerWorldModel
from awm_jax.core.models.networks import MLP, CausalTransformer, transformer_dense


class TransformerAWMNet(nn.Module):
    state_size: int
    action_size: int
    width: int = 48
    layers: int = 2
    heads: int = 3
    max_len: int = 101
    decoder: tuple = (64, 64)
    position_std: float = 0.1
    token_mixer: bool = False
    dtype: Any = None  # computation dtype (None: float32); predictions come out in float32
    weight_init: str = "gpt2"  # the token embeddings' and blocks' init (networks.transformer_dense)

    def setup(self):
        self.embed_s = transformer_dense(self.width, self.weight_init, self.dtype)
        self.embed_a = transformer_dense(self.width, self.weight_init, self.dtype)
        self.body = CausalTransformer(self.width, self.layers, self.heads, self.max_len, pos_std=self.position_std,
                                      embed_input=self.token_mixer, dtype=self.dtype, weight_init=self.weight_init)
        self.head = MLP(self.decoder, self.state_size, "relu", dtype=self.dtype)

    def __call__(self, s0, actions):
        """s0 [n], actions [H, m] -> predictions s^_1..s^_H [H, n] (one full causal pass)."""
        tokens = jnp.concatenate([self.embed_s(s0)[None], self.embed_a(actions)], axis=0)
        return self.head(self.body(tokens)[1:])

    def first(self, s0, cache):
        feat, cache = self.body.decode(self.embed_s(s0), cache, 0)
        return cache

    def next(self, action, cache, pos):
        feat, cache = self.body.decode(self.embed_a(action), cache, pos)
        return self.head(feat), cache


@dataclasses.dataclass(frozen=True)
class TransformerAWM(TransformerWorldModel):
    feeds_back_predictions = False
    parallel_predict = True
    token_mixer: bool = False  # a shared Dense after the per-type token embeddings (the paper's has none)

    @classmethod
    def config_sizes(cls, config) -> dict:
        return dict(super().config_sizes(config), token_mixer=config.token_mixer)

    @property
    def net(self):
        return TransformerAWMNet(self.state_size, self.action_size, self.width, self.layers, self.heads,
                                 self.max_horizon + 1, tuple(self.decoder), self.position_std, self.token_mixer,
                                 self.compute_dtype, self.weight_init)

    def init(self, key):
        s0 = jnp.zeros((self.state_size,))
        return self.net.init(key, s0, jnp.zeros((self.max_horizon, self.action_size)))

    def predict(self, params, states, actions):
        return self.net.apply(params, states[0], actions)

    def start(self, params, s0):
        return self.net.apply(params, s0, self.empty_cache(self.max_horizon + 1, s0.dtype),
                              method=TransformerAWMNet.first)

    def step(self, params, cache, action, t):
        s, cache = self.net.apply(params, action, cache, t + 1, method=TransformerAWMNet.next)
        return cache, s
