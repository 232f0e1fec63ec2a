"""The interface every world model answers, and the pieces they share.

World models work on *model states*: the observation without its time index (the task's physical
state x and, when the task has them, the distractor dimensions, which a model cannot predict and
whose best prediction is their mean), already normalised by the caller (`awm_jax.core.spaces`). The time
index is not predicted: it is the step count, added back when observations are rebuilt.

All functions act on one episode; vmap them over a batch.
- `init(key) -> params`
- `predict(params, states [H+1, n], actions [H, m]) -> [H, n]`: the training-time predictions of
  s_1..s_H. Actions world models read only states[0]; history and Markov models read the true
  states as inputs (teacher forcing).
- `start(params, s0 [n]) -> carry` and `step(params, carry, action [m], t) -> (carry, s_{t+1} [n])`:
  imagination one step at a time; history and Markov models feed their own predictions back in.
- `rollout(params, s0, actions [H, m]) -> [H, n]`: `step` run over a fixed action sequence.
- `loss(params, states [B, H+1, n], actions [B, H, m], mask [B, H]) -> []`: 0.5 * masked mean over
  steps and state dimensions of the squared error of `predict` (mask 0 marks steps past an episode's end).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class WorldModel:
    """Base class: static sizes; subclasses implement init, predict, start and step."""

    state_size: int
    action_size: int
    max_horizon: int  # longest action sequence the model accepts

    # Whether the model feeds its own predictions back as inputs during imagination.
    feeds_back_predictions = True
    # Whether `predict` is a parallel (non-recurrent) pass: then BPO recomputes imagination through it.
    parallel_predict = False
    # Whether the learner fits it to data (False: the task itself, `TrueTask`).
    trainable = True

    def bind(self, params, norm, key):
        """The parameters imagination uses, given the learned ones, the model-state normaliser and a key
        for the model's own randomness: the learned ones (`TrueTask` builds its own from norm and key)."""
        return params

    @classmethod
    def config_sizes(cls, config) -> dict:
        """The constructor's size options read from an awm_jax Config (each kind names the fields it uses)."""
        raise NotImplementedError

    def init(self, key):
        raise NotImplementedError

    def predict(self, params, states, actions):
        raise NotImplementedError

    def start(self, params, s0):
        raise NotImplementedError

    def step(self, params, carry, action, t):
        raise NotImplementedError

    def rollout(self, params, s0, actions):
        """Open-loop predictions s^_1..s^_H [H, n] of an action sequence [H, m] from s0 [n]."""

        def body(carry, inp):
            t, a = inp
            carry, s = self.step(params, carry, a, t)
            return carry, s

        T = actions.shape[0]
        return jax.lax.scan(body, self.start(params, s0), (jnp.arange(T), actions))[1]

    def loss(self, params, states, actions, mask):
        """0.5 * masked mean squared error of the training-time predictions, over a batch."""
        pred = jax.vmap(lambda s, a: self.predict(params, s, a))(states, actions)
        err = jnp.mean((pred - states[:, 1:]) ** 2, axis=-1)  # [B, H]
        return 0.5 * jnp.sum(err * mask) / jnp.maximum(jnp.sum(mask), 1.0)

    def check_horizon(self, horizon: int) -> None:
        """Raise before compilation when a horizon exceeds what the model was built for."""
        if horizon > self.max_horizon:
            raise ValueError(
                f"{type(self).__name__} was built for horizons up to {self.max_horizon} "
                f"(its position table), got {horizon}; build it with max_horizon >= {horizon}"
            )


@dataclasses.dataclass(frozen=True)
class TransformerWorldModel(WorldModel):
    """Shared sizes of the transformer world models (defaults: the paper's) and their empty cache."""

    width: int = 48
    layers: int = 2
    heads: int = 3
    decoder: tuple = (64, 64)
    position_std: float = 0.1  # position table init std (the paper's lecun-uniform table: ~0.1; GPT-2's 0.02)
    dtype: str = "float32"  # computation dtype of the layers; "bfloat16": parameters, softmax and outputs stay float32
    weight_init: str = "gpt2"  # embeddings and blocks: "lecun" (flax) or "gpt2" (N(0, 0.02), the paper code)

    @classmethod
    def config_sizes(cls, config) -> dict:
        return dict(width=config.width, layers=config.layers, heads=config.heads, decoder=config.mlp_hidden,
                    position_std=config.position_std, dtype=config.model_dtype, weight_init=config.transformer_init)

    @property
    def compute_dtype(self):
        """The flax modules' `dtype`: None (their float32 default) or the reduced precision asked for."""
        return None if self.dtype == "float32" else jnp.dtype(self.dtype)

    def empty_cache(self, positions: int, dtype):
        """Key/value cache [layers, 2, positions, heads, head_dim] of zeros (in the computation dtype when
        that is reduced)."""
        dtype = self.compute_dtype or dtype
        return jnp.zeros((self.layers, 2, positions, self.heads, self.width // self.heads), dtype)
