"""Between task observations and what networks see: model states, normalisation, policy inputs.

- A *model state* is the observation without its time index, `obs[..., :-1]`: the task's physical
  state and, when the task has them, its distractor dimensions. World models predict model states;
  the time index is the step count and is added back by `to_obs`.
- `Normalizer` holds a per-dimension shift and scale for model states (from data, e.g. the warm-up
  episodes, or the identity). World models and the policy work on normalised model states; rewards
  are always computed on raw observations.
- The "normalized" policy's input is [normalised model state, t / horizon] (`policy_input`); the
  "paper" policy reads the raw observation (`awm_jax.models.policy.Policy.features`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


def model_state(obs):
    """[..., obs_size] -> [..., obs_size - 1]: the observation without its time index."""
    return obs[..., :-1]


def to_obs(state, t):
    """Model state [..., n] and step index t [...] -> observation [..., n + 1]."""
    t = jnp.broadcast_to(jnp.asarray(t, state.dtype), state.shape[:-1])
    return jnp.concatenate([state, t[..., None]], axis=-1)


@struct.dataclass
class Normalizer:
    """z = (s - mean) / std for model states s [..., n]; mean, std: [n]."""

    mean: jax.Array
    std: jax.Array

    @classmethod
    def identity(cls, n: int, dtype=jnp.float32) -> Normalizer:
        return cls(jnp.zeros((n,), dtype), jnp.ones((n,), dtype))

    @classmethod
    def from_data(cls, states, mask=None, min_std: float = 1e-3) -> Normalizer:
        """Per-dimension mean and std of states [..., n] (rows with mask 0 ignored)."""
        flat = states.reshape(-1, states.shape[-1])
        w = jnp.ones(flat.shape[0], flat.dtype) if mask is None else mask.reshape(-1).astype(flat.dtype)
        total = jnp.maximum(w.sum(), 1.0)
        mean = (flat * w[:, None]).sum(0) / total
        var = (((flat - mean) ** 2) * w[:, None]).sum(0) / total
        return cls(mean, jnp.maximum(jnp.sqrt(var), min_std))

    def norm(self, s):
        return (s - self.mean) / self.std

    def denorm(self, z):
        return z * self.std + self.mean


def policy_input(norm: Normalizer, obs, horizon: int):
    """Observation [..., n + 1] -> policy input [..., n + 1]: normalised state and t / horizon."""
    return jnp.concatenate([norm.norm(model_state(obs)), obs[..., -1:] / horizon], axis=-1)
