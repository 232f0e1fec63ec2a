"""The true, differentiable task behind the world-model interface (for `true_bptt` and diagnostics).

Its "parameters" are a `TrueTaskParams`: the normaliser that maps model states to raw ones and a key
for the task's own randomness (state noise, distractors). Gradients flow through the task's step
function exactly as through a Markovian model.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import struct

from awm_jax.core.models.base import WorldModel
from awm_jax.core.spaces import Normalizer


@struct.dataclass
class TrueTaskParams:
    norm: Normalizer
    key: jax.Array


@dataclasses.dataclass(frozen=True)
class TrueTask(WorldModel):
    task: object = None  # an awm_envs.Task

    trainable = False

    @classmethod
    def of(cls, task) -> TrueTask:
        return cls(state_size=task.obs_size - 1, action_size=task.action_size, max_horizon=10**9, task=task)

    def params(self, norm: Normalizer, key) -> TrueTaskParams:
        return TrueTaskParams(norm, key)

    def bind(self, params, norm: Normalizer, key) -> TrueTaskParams:
        """Its parameters for imagination: the model-state normaliser and a key (no learned ones)."""
        return self.params(norm, key)

    def init(self, key):
        return TrueTaskParams(Normalizer.identity(self.state_size), key)

    def start(self, params, z0):
        s0 = params.norm.denorm(z0)
        task = self.task
        x = task.obs_state(jnp.concatenate([s0, jnp.zeros((1,), s0.dtype)]))
        state = task.reset(params.key)
        return state.replace(x=x.astype(state.x.dtype), obs=state.obs.at[:-1].set(s0))

    def step(self, params, state, action, t):
        state = self.task.step(state, action)
        return state, params.norm.norm(state.obs[:-1])

    def predict(self, params, states, actions):
        return self.rollout(params, states[0], actions)
