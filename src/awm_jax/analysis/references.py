"""Reference returns of a task: a uniformly random policy, the best constant action and the best
open-loop plan through the true task.

They anchor the normalised score (`benchmark.normalized_score`): random = 0, the best of the
references = 1.

Tasks whose start state is random (the Brax tasks: start noise, the reacher's target) take
``starts`` > 1: the constant and the plan are then scored as means over that many start states,
one plan optimised per start state, as the random policy is over its episodes. A plan may also be
found by a horizon curriculum (``stages``), which a swing-up needs: Adam through whole 100-step
episodes of the pendulum found plans worth 4.8 to 17.7 (16 to 64 restarts), planning the first 20
steps, then the first 40 from there, and so on, one worth 32.2.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax


def random_return(task, key, episodes: int = 256) -> float:
    """Mean undiscounted return of uniformly random actions in [-1, 1]."""
    k_act, k_env = jax.random.split(key)
    acts = jax.random.uniform(k_act, (episodes, task.horizon, task.action_size), minval=-1.0, maxval=1.0)
    rets = jax.jit(jax.vmap(task.episode_return))(jax.random.split(k_env, episodes), acts)
    return float(jnp.mean(rets))


def start_keys(key, starts: int) -> jax.Array:
    """The keys [starts, 2] of the start states a reference averages over: `key` itself for one
    start (the deterministic Myriad tasks' references, as they always were), else split(key, starts)."""
    return key[None] if starts == 1 else jax.random.split(key, starts)


def best_constant_return(task, key, points: int = 201, starts: int = 1) -> tuple[float, np.ndarray]:
    """The best return of a constant action over a grid of `points` values per action dimension
    (at most ~4,000 candidates in all): (return, action). With `starts` > 1 a candidate's return is
    its mean over that many start states (split from `key`)."""
    per_dim = max(2, int(round(min(points, 4000 ** (1 / task.action_size)))))
    grid = np.linspace(-1.0, 1.0, per_dim)
    cands = np.array(list(itertools.product(grid, repeat=task.action_size)), np.float32)
    acts = jnp.broadcast_to(jnp.asarray(cands)[:, None, :], (len(cands), task.horizon, task.action_size))
    keys = start_keys(key, starts)
    mean_ret = lambda a: jnp.mean(jax.vmap(lambda k: task.episode_return(k, a))(keys))
    rets = np.asarray(jax.jit(jax.vmap(mean_ret))(acts))
    i = int(np.nanargmax(rets))
    return float(rets[i]), cands[i]


def _stages(task, stages) -> tuple[int, ...]:
    H = task.horizon
    if isinstance(stages, int) and not isinstance(stages, bool):  # n equal stages
        stages = tuple(round(H * (k + 1) / stages) for k in range(max(stages, 0)))
    stages = (H,) if stages is None else tuple(int(h) for h in stages)
    if not stages or list(stages) != sorted(set(stages)) or stages[0] < 1 or stages[-1] != H:
        raise ValueError(f"stages must be increasing horizons ending at the task's horizon {H}; got {stages}")
    return stages


def _initial_plans(task, key, restarts: int) -> jax.Array:
    """Restarts [R, H, m] in z = arctanh(action): constant sequences at -0.5, 0, 0.5, then random ones."""
    H, m = task.horizon, task.action_size
    consts = jnp.arctanh(jnp.array([-0.5, 0.0, 0.5]))
    return jnp.concatenate([jnp.broadcast_to(consts[:, None, None], (3, H, m)),
                            0.5 * jax.random.normal(key, (max(restarts - 3, 0), H, m))])[:restarts]


def _best_plans(task, env_keys, z0, steps: int, lr: float, stages) -> tuple[np.ndarray, np.ndarray]:
    """Adam on open-loop plans z0 [S, R, H, m] (actions = tanh(z)) from the start states
    reset(env_keys[s]), one curriculum stage after another: (the best full return seen [S, R],
    the plans that gave it [S, R, H, m] in action space)."""
    H = task.horizon
    tx = optax.adam(lr)

    def partial_return(z, key, h):
        rewards = task.rollout(key, jnp.tanh(z))[1].reward
        return jnp.sum(jnp.where(jnp.arange(H) < h, rewards, 0.0))

    def one(z, key, h):
        ret = lambda z: partial_return(z, key, h)

        def body(carry, _):
            z, opt, best, best_z = carry
            r, g = jax.value_and_grad(ret)(z)
            better = r > best
            best, best_z = jnp.where(better, r, best), jnp.where(better, z, best_z)
            g = jnp.where(jnp.isfinite(g), g, 0.0)
            upd, opt = tx.update(-g, opt)  # ascend
            return (optax.apply_updates(z, upd), opt, best, best_z), None

        init = (z, tx.init(z), jnp.asarray(-jnp.inf, jnp.float32), z)
        (z, _, best, best_z), _ = jax.lax.scan(body, init, None, length=steps)
        r = ret(z)
        return jnp.where(r > best, r, best), jnp.where(r > best, z, best_z)

    restarts = jax.vmap(one, in_axes=(0, None, None))
    run = jax.jit(jax.vmap(restarts, in_axes=(0, 0, None)))  # h is traced: one compile for every stage
    z = z0
    for h in stages:
        best, z = run(z, env_keys, jnp.asarray(h, jnp.int32))
    return np.asarray(best), np.tanh(np.asarray(z))


def trajectory_optimum(task, key, restarts: int = 16, steps: int = 300, lr: float = 0.05,
                       stages=None) -> tuple[float, np.ndarray]:
    """Best return of an open-loop action sequence [H, m] found by Adam through the true task from
    the start state reset(split(key)[0]): (return, actions). `stages`: a horizon curriculum, e.g.
    (20, 40, 60, 80, 100), or 5 for five equal stages: `steps` Adam steps on the return of the
    first h steps for each h in turn, each stage starting from the previous one's best plans; the
    last is the task's horizon. Default: one stage, the whole horizon."""
    stages = _stages(task, stages)
    k_env, k_z = jax.random.split(key)
    best, plans = _best_plans(task, k_env[None], _initial_plans(task, k_z, restarts)[None], steps, lr, stages)
    i = int(np.nanargmax(best[0]))
    return float(best[0, i]), plans[0, i]


def plan_returns(task, key, starts: int, restarts: int = 16, steps: int = 300, lr: float = 0.05,
                 stages=None) -> np.ndarray:
    """The best open-loop plan's return from each of `starts` start states [starts]: for start s,
    `trajectory_optimum(task, start_keys(key, starts)[s], ...)`'s return, all optimised in one program."""
    stages = _stages(task, stages)
    pairs = jax.vmap(jax.random.split)(start_keys(key, starts))  # [S, 2, 2]: (env key, plan key) per start
    z0 = jax.vmap(lambda k: _initial_plans(task, k, restarts))(pairs[:, 1])
    best, _ = _best_plans(task, pairs[:, 0], z0, steps, lr, stages)
    return np.nanmax(best, axis=1)
