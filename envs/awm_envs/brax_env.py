"""Any task as a brax `Env`, so that brax's own training agents (`brax.training.agents`, its analytic policy
gradient `apg` above all) train on exactly our dynamics, reward and horizon.

    env = awm_envs.brax_env.as_brax_env(awm_envs.make("brax_pendulum_swingup"))
    state = env.reset(key); state = env.step(state, action)   # brax.envs.State

The brax state carries the task's `TaskState` as its `pipeline_state`; obs, reward and done are the task's
(done as a float, brax's convention). The reward of a step is scored on the state before it, as for every
task, so the return of an episode through the adapter equals `task.episode_return`. brax's training wrapper
(`brax.envs.wrappers.training.wrap`) adds the episode length, action repeat and automatic reset: an episode that ends
restarts from the same first state of that environment (brax's AutoResetWrapper), not from a fresh draw.
Brax is imported when an adapter is built, never by `import awm_envs`.
"""

from __future__ import annotations

import jax.numpy as jnp

from awm_envs.core import Task


def as_brax_env(task: Task):
    """A `brax.envs.Env` that steps `task` (actions in [-1, 1]^action_size, as brax's tanh policies give)."""
    try:
        from brax.envs.base import Env, State
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("as_brax_env needs brax (pip install brax)") from e

    class TaskEnv(Env):
        def reset(self, rng):
            s = task.reset(rng)
            return State(pipeline_state=s, obs=s.obs, reward=s.reward, done=s.done.astype(jnp.float32))

        def step(self, state, action):
            s = task.step(state.pipeline_state, action)
            return state.replace(pipeline_state=s, obs=s.obs, reward=s.reward, done=s.done.astype(jnp.float32))

        @property
        def observation_size(self) -> int:
            return task.obs_size

        @property
        def action_size(self) -> int:
            return task.action_size

        @property
        def backend(self) -> str:
            return "awm_envs"

    TaskEnv.__name__ = TaskEnv.__qualname__ = f"{task.name}_brax_env"
    return TaskEnv()
