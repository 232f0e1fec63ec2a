"""Between task observations and what networks see: model states, normalisation, policy inputs.

- A *model state* is the observation without its time index, `obs[..., :-1]`: the task's physical
  state and, when the task has them, its distractor dimensions. World models predict model states;
  the time index is the step count and is added back by `to_obs`.
- `Normalizer` holds a per-dimension shift and scale for model states (from data, e.g. the warm-up
  episodes, or the identity). World models and the policy work on normalised model states; rewards
  are always computed on raw observations.
- The "normalized" policy's input is [normalised model state, t / horizon] (`policy_input`); the
  "paper" policy reads the raw observation (`awm_jax.core.models.policy.Policy.features`).
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


def symlog(s):
    """sign(s) log(1 + |s|): the identity's slope at 0, logarithmic for large |s|. (Written with
    maximum, whose gradient splits evenly at a tie, so the gradient at s = 0 is 1, not the 0 of
    sign(s) and |s|.)"""
    return jnp.log1p(jnp.maximum(s, 0)) - jnp.log1p(jnp.maximum(-s, 0))


def symexp(y):
    """The inverse of `symlog`: sign(y) (exp|y| - 1), with gradient 1 at y = 0."""
    return jnp.expm1(jnp.maximum(y, 0)) - jnp.expm1(jnp.maximum(-y, 0))


@struct.dataclass
class SymlogNormalizer:
    """z = (symlog(s) - center) / scale for model states s [..., n]: a log scale for states that range
    over orders of magnitude, built from a z-score normaliser by the delta method, so that near the
    data's mean it agrees with that z-score to first order (dz/ds = 1 / std there) and far above it
    grows like log(s). center = symlog(mean), scale = std / (1 + |mean|) (at least 1e-3)."""

    center: jax.Array
    scale: jax.Array

    @classmethod
    def around(cls, norm: Normalizer) -> SymlogNormalizer:
        return cls(symlog(norm.mean), jnp.maximum(norm.std / (1 + jnp.abs(norm.mean)), 1e-3))

    def norm(self, s):
        return (symlog(s) - self.center) / self.scale

    def denorm(self, z):
        return symexp(z * self.scale + self.center)


def policy_input(norm: Normalizer, obs, horizon: int):
    """Observation [..., n + 1] -> policy input [..., n + 1]: normalised state and t / horizon."""
    return jnp.concatenate([norm.norm(model_state(obs)), obs[..., -1:] / horizon], axis=-1)
