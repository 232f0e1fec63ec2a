"""The functional task interface shared by every control task.

A task is a `Task`: an immutable pytree whose numeric parameters (`params`, a dict of scalars or
arrays) are leaves that can be vmapped, and whose shapes and dynamics (`system`, `horizon`, `dt`,
`distractor_dims`, `dtype`) are static. Its functions are pure:

    state = task.reset(key)            # TaskState at t = 0, reward 0
    state = task.step(state, action)   # action in [-1, 1]^action_size
    r = task.reward(obs, action)       # == task.step(s, action).reward for s.obs == obs

Observation layout (every task): ``obs = [distractors (distractor_dims), x (state_size), t]`` where
``x`` is the physical state, ``t`` the integer step index stored as a float, and the distractors are
fresh N(0, 1) draws at every step. `task.obs_state(obs)` and `task.obs_time(obs)` pick the parts out;
`task.make_obs(x, t, distractors)` puts them back (used by world models, which predict ``x`` only).

The dynamics live in a `System` (static, hashable): it maps actions to controls, advances the state,
and scores a step. Systems know nothing of distractors, time-index observations or state noise:
`Task` adds those in one place for every family of tasks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

Array = jax.Array
Params = Mapping[str, Any]


@struct.dataclass
class TaskState:
    """What a task carries between steps (all leaves fixed-shape).

    obs: [obs_size] observation; reward: [] reward of the step that produced this state (0 after
    reset); done: [] bool, True once `horizon` steps were taken; x: [state_size] physical state;
    t: [] int32 step index; key: PRNG key for the noise and distractors of later steps.
    """

    obs: Array
    reward: Array
    done: Array
    x: Array
    t: Array
    key: Array


class System:
    """Dynamics and reward of one family member, independent of observation conventions.

    Subclasses set the class attributes and implement `init_state`, `next_state` and `reward`.
    All methods are pure functions of their arguments; `params` is the task's parameter dict.
    """

    name: str
    state_size: int
    action_size: int
    default_horizon: int = 100
    time_span: float | None = None  # T of a continuous-time problem; None when discrete
    source: str = ""
    # The options a task of this system accepts besides the generic ones (name -> default).
    default_params: Mapping[str, float] = {}

    def init_state(self, params: Params, key: Array, dtype) -> Array:
        """The initial physical state x_0: [state_size]."""
        raise NotImplementedError

    def next_state(self, params: Params, x: Array, action: Array, t: Array, dt: float, key: Array) -> Array:
        """x_{t+1} from x_t [state_size], action [action_size] in [-1, 1] and step index t, before
        `clip_state` (the task adds state noise, then clips)."""
        raise NotImplementedError

    def reward(self, params: Params, x: Array, action: Array, t: Array, dt: float, horizon: int) -> Array:
        """Reward [] of taking `action` in state x at step index t (t may be a float)."""
        raise NotImplementedError

    def clip_state(self, params: Params, x: Array) -> Array:
        """Project a state onto the state bounds (identity where there are none)."""
        return x

    def dt_for(self, horizon: int, fixed_dt: bool) -> float:
        """Step length for a horizon: T / horizon, or T / 100 with `fixed_dt`; 1 when discrete."""
        if self.time_span is None:
            return 1.0
        return self.time_span / (100 if fixed_dt else horizon)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def is_last_step(t: Array, horizon: int) -> Array:
    """Whether step index t (int or float) is the episode's last, H - 1."""
    return jnp.abs(t - (horizon - 1)) < 0.5


def affine_controls(action: Array, lo, hi) -> Array:
    """Map an action in [-1, 1] affinely onto control bounds [lo, hi]."""
    lo = jnp.asarray(lo, action.dtype)
    hi = jnp.asarray(hi, action.dtype)
    return lo + (action + 1.0) * (hi - lo) / 2.0


class Task(struct.PyTreeNode):
    """A control task: static shapes and dynamics, numeric parameters as vmappable leaves."""

    params: dict
    system: System = struct.field(pytree_node=False)
    horizon: int = struct.field(pytree_node=False)
    dt: float = struct.field(pytree_node=False)
    distractor_dims: int = struct.field(pytree_node=False, default=0)
    state_noise: float = struct.field(pytree_node=False, default=0.0)
    dtype: Any = struct.field(pytree_node=False, default=jnp.float32)

    # -- sizes and layout ---------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.system.name

    @property
    def state_size(self) -> int:
        """Size of the physical state x that world models predict."""
        return self.system.state_size

    @property
    def action_size(self) -> int:
        return self.system.action_size

    @property
    def obs_size(self) -> int:
        return self.distractor_dims + self.state_size + 1

    def obs_state(self, obs: Array) -> Array:
        """The physical state part of observations: [..., obs_size] -> [..., state_size]."""
        d = self.distractor_dims
        return obs[..., d : d + self.state_size]

    def obs_time(self, obs: Array) -> Array:
        """The step index of observations (float): [..., obs_size] -> [...]."""
        return obs[..., -1]

    def make_obs(self, x: Array, t: Array, distractors: Array | None = None) -> Array:
        """Assemble observations from x [..., state_size], t [...] and distractors [..., distractor_dims]."""
        x = jnp.asarray(x, self.dtype)
        t = jnp.broadcast_to(jnp.asarray(t, self.dtype), x.shape[:-1])[..., None]
        if distractors is None:
            distractors = jnp.zeros(x.shape[:-1] + (self.distractor_dims,), self.dtype)
        return jnp.concatenate([jnp.asarray(distractors, self.dtype), x, t], axis=-1)

    # -- the pure functions -------------------------------------------------------------------
    def reset(self, key: Array) -> TaskState:
        """Initial state: t = 0, reward 0, done False."""
        key, k_init, k_obs = jax.random.split(key, 3)
        x = jnp.asarray(self.system.init_state(self.params, k_init, self.dtype), self.dtype)
        t = jnp.zeros((), jnp.int32)
        return TaskState(
            obs=self._observe(x, t, k_obs),
            reward=jnp.zeros((), self.dtype),
            done=jnp.zeros((), bool),
            x=x,
            t=t,
            key=key,
        )

    def step(self, state: TaskState, action: Array) -> TaskState:
        """Advance one step: x_{t+1} (plus state noise, if any), reward r(obs_t, a_t), t + 1."""
        action = self.check_action(action)
        key, k_dyn, k_noise, k_obs = jax.random.split(state.key, 4)
        x = self.system.next_state(self.params, state.x, action, state.t, self.dt, k_dyn)
        if self.state_noise > 0:
            x = x + self.state_noise * jax.random.normal(k_noise, x.shape, x.dtype)
        x = jnp.asarray(self.system.clip_state(self.params, x), self.dtype)
        t = state.t + 1
        return TaskState(
            obs=self._observe(x, t, k_obs),
            reward=self.system.reward(self.params, state.x, action, state.t, self.dt, self.horizon).astype(self.dtype),
            done=t >= self.horizon,
            x=x,
            t=t,
            key=key,
        )

    def reward(self, obs: Array, action: Array) -> Array:
        """Reward of `action` at observation `obs` [obs_size]; pure and differentiable in both."""
        action = self.check_action(action)
        return self.system.reward(
            self.params, self.obs_state(obs), action, self.obs_time(obs), self.dt, self.horizon
        ).astype(self.dtype)

    def check_action(self, action) -> Array:
        """Cast to the task dtype and check the (static) shape is [action_size]."""
        action = jnp.asarray(action)
        if action.shape != (self.action_size,):
            raise ValueError(
                f"task {self.name!r} takes actions of shape ({self.action_size},), got {action.shape}"
            )
        return action.astype(self.dtype)

    def _observe(self, x: Array, t: Array, key: Array) -> Array:
        distractors = jax.random.normal(key, (self.distractor_dims,), self.dtype)
        return self.make_obs(x, t, distractors)

    # -- conveniences -------------------------------------------------------------------------
    def replace_params(self, **params) -> Task:
        """A copy with some numeric parameters replaced (values may be traced, e.g. under vmap)."""
        unknown = sorted(set(params) - set(self.params))
        if unknown:
            raise ValueError(f"unknown parameters {unknown} for task {self.name!r}; valid: {sorted(self.params)}")
        return self.replace(params={**self.params, **params})

    def rollout(self, key: Array, actions: Array) -> tuple[TaskState, TaskState]:
        """Run an action sequence [T, action_size] from reset(key): (final state, states [T] after each step)."""
        def body(state, a):
            nxt = self.step(state, a)
            return nxt, nxt

        return jax.lax.scan(body, self.reset(key), actions)

    def episode_return(self, key: Array, actions: Array) -> Array:
        """Undiscounted return of an action sequence [T, action_size] from reset(key)."""
        return self.rollout(key, actions)[1].reward.sum()


TaskFactory = Callable[..., Task]


def describe(task: Task) -> dict:
    """A row for the task table: name, sizes, horizon, dt and source."""
    return dict(
        name=task.name,
        state=task.state_size,
        action=task.action_size,
        obs=task.obs_size,
        horizon=task.horizon,
        dt=task.dt,
        source=task.system.source,
    )

