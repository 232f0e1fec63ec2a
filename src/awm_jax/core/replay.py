"""A fixed-size replay of whole episodes, written one step at a time (all arrays fixed-shape).

Slot `ep` holds the episode being written; sampling draws only from the `count` most recently
completed episodes, so a partially written episode is never read. `fit_normalizer` and
`running_normalizer` fit the state normaliser to what a replay holds.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from awm_jax.core.spaces import Normalizer


@struct.dataclass
class Replay:
    obs: jax.Array  # [E, H + 1, obs_size]
    actions: jax.Array  # [E, H, m]
    rewards: jax.Array  # [E, H]
    ep: jax.Array  # [] slot being written
    count: jax.Array  # [] completed episodes available (<= E - 1)

    @classmethod
    def empty(cls, episodes: int, horizon: int, obs_size: int, action_size: int, dtype=jnp.float32) -> Replay:
        return cls(
            obs=jnp.zeros((episodes, horizon + 1, obs_size), dtype),
            actions=jnp.zeros((episodes, horizon, action_size), dtype),
            rewards=jnp.zeros((episodes, horizon), dtype),
            ep=jnp.zeros((), jnp.int32),
            count=jnp.zeros((), jnp.int32),
        )

    @property
    def capacity(self) -> int:
        return self.obs.shape[0]

    def add(self, t, obs, action, reward, next_obs, done) -> Replay:
        """Write step t (obs_t, a_t, r_t) of the current episode; on `done` also its last observation,
        and move on to the next slot."""
        obs_buf = self.obs.at[self.ep, t].set(obs)
        obs_buf = obs_buf.at[self.ep, t + 1].set(next_obs)
        nxt = jnp.where(done, (self.ep + 1) % self.capacity, self.ep)
        return self.replace(
            obs=obs_buf,
            actions=self.actions.at[self.ep, t].set(action),
            rewards=self.rewards.at[self.ep, t].set(reward),
            ep=nxt,
            count=jnp.where(done, jnp.minimum(self.count + 1, self.capacity - 1), self.count),
        )

    def completed(self) -> jax.Array:
        """[E] bool: which slots hold a completed episode (the `count` slots before `ep`)."""
        return ((self.ep - 1 - jnp.arange(self.capacity)) % self.capacity) < self.count

    def sample_indices(self, key, n: int, half_life: float | None = None):
        """n slot indices of completed episodes, with replacement: uniformly (`half_life` None), or
        favouring recent ones, the episode completed j episodes before the newest drawn with weight
        0.5 ** (j / half_life)."""
        if half_life is None:
            j = jax.random.randint(key, (n,), 0, jnp.maximum(self.count, 1))
        else:
            age = jnp.arange(self.capacity)
            logits = jnp.where(age < jnp.maximum(self.count, 1), -jnp.log(2.0) * age / half_life, -jnp.inf)
            j = jax.random.categorical(key, logits, shape=(n,))
        return (self.ep - 1 - j) % self.capacity

    def sample(self, key, n: int, half_life: float | None = None):
        """n whole episodes (drawn as `sample_indices` says): obs [n, H + 1, obs_size], actions
        [n, H, m], rewards [n, H]."""
        idx = self.sample_indices(key, n, half_life)
        return self.obs[idx], self.actions[idx], self.rewards[idx]


def _fit_rows(replay: Replay, mask) -> Normalizer:
    """Mean and std of the model states in the replay rows where mask [E, H + 1] is set (the identity
    where none is)."""
    fitted = Normalizer.from_data(replay.obs[..., :-1], mask)
    ident = Normalizer.identity(fitted.mean.shape[0])
    return jax.tree.map(lambda a, b: jnp.where(mask.any(), a, b), fitted, ident)


def fit_normalizer(replay: Replay) -> Normalizer:
    """Per-dimension mean and std of the model states of the completed episodes in `replay` (the
    identity while there are none)."""
    return _fit_rows(replay, jnp.broadcast_to(replay.completed()[:, None], replay.obs.shape[:2]))


def running_normalizer(replay: Replay, t) -> Normalizer:
    """The normaliser of every model state written so far: the completed episodes and steps 0..t of the
    episode being written (t: the current step index; the identity before any state is written). The
    warm-up policy sees states through it, so z-scores stay bounded before the run's normaliser exists."""
    rows = jnp.arange(replay.obs.shape[1])
    current = (jnp.arange(replay.capacity) == replay.ep)[:, None] & (rows <= t)[None, :] & (t > 0)
    return _fit_rows(replay, replay.completed()[:, None] | current)
