"""Reference returns of a task: a uniformly random policy and the best constant action.

With the open-loop optimum (`benchmark.trajectory_optimum`) they anchor the normalised score
(`benchmark.normalized_score`): random = 0, the best of the references = 1.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np


def random_return(task, key, episodes: int = 256) -> float:
    """Mean undiscounted return of uniformly random actions in [-1, 1]."""
    k_act, k_env = jax.random.split(key)
    acts = jax.random.uniform(k_act, (episodes, task.horizon, task.action_size), minval=-1.0, maxval=1.0)
    rets = jax.jit(jax.vmap(task.episode_return))(jax.random.split(k_env, episodes), acts)
    return float(jnp.mean(rets))


def best_constant_return(task, key, points: int = 201) -> tuple[float, np.ndarray]:
    """The best return of a constant action over a grid of `points` values per action dimension
    (at most ~4,000 candidates in all): (return, action)."""
    per_dim = max(2, int(round(min(points, 4000 ** (1 / task.action_size)))))
    grid = np.linspace(-1.0, 1.0, per_dim)
    cands = np.array(list(itertools.product(grid, repeat=task.action_size)), np.float32)
    acts = jnp.broadcast_to(jnp.asarray(cands)[:, None, :], (len(cands), task.horizon, task.action_size))
    rets = np.asarray(jax.jit(jax.vmap(lambda a: task.episode_return(key, a)))(acts))
    i = int(np.nanargmax(rets))
    return float(rets[i]), cands[i]
