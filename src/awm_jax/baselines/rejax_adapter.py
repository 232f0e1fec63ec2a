"""sac, ppo and td3 from rejax behind the trainer's interface: `make_rejax_trainer(config, task)`.

Same env-step budget and evaluation grid as the BPO trainer (awm_jax.trainer):
    init(key):  rejax's train state, then `warmup_steps` env steps with uniformly random actions. They
                fill the replay (sac, td3: updates start right after) and the running observation
                statistics (all three); ppo, being on-policy, learns nothing else from them.
    run_chunk(state, periods): `periods` x evaluation period =
        blocks_per_eval * policy_every env steps of rejax's own training iterations
            sac: 1 env step + 1 update (actor, twin critics) per iteration
            td3: 2 env steps + 2 critic updates + 1 actor update per iteration
            ppo: 1 rollout of the whole period (1 env), then its epochs of minibatch updates
        then one deterministic evaluation episode on the task (sac: tanh(mean); ppo: clip(mean);
        td3: the actor), undiscounted return.
Every random draw comes from the key in rejax's state: init, then any chunking, equals init, then one
run_chunk, to the last bit (run.py's path and checkpoint resumes); `trainer(key)`, init and run fused
in one XLA program, equals them up to rounding. Every leaf of a vmapped state has a leading seed axis.
Observations are normalised by rejax's running mean/std (rl_normalize_obs, default on: HIV states
near 800 and the time index up to the horizon), updated at every env step, warm-up included.

Numeric `hparams` (sweeps pass them by trainer.NUMERIC names) map onto the baselines: `policy_lr` ->
Adam learning rate of every network, `gamma` -> discount, `entropy` -> sac's fixed alpha or ppo's
entropy coefficient (td3 has none). Any other name raises.

rejax is imported only here.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import linen as nn
from flax import struct
from gymnax.environments import environment, spaces
from rejax import PPO, SAC, TD3
from rejax.buffers import Minibatch
from rejax.networks import DeterministicPolicy, QNetwork

HPARAMS = {"sac": ("policy_lr", "gamma", "entropy"), "ppo": ("policy_lr", "gamma", "entropy"),
           "td3": ("policy_lr", "gamma")}
PPO_ENTROPY = 0.01  # rejax's default entropy coefficient of ppo


# -- our task as a gymnax environment -------------------------------------------------------------
@struct.dataclass
class EnvParams:
    task: Any  # the awm_envs.Task (its numeric parameters are leaves)
    max_steps_in_episode: int = struct.field(pytree_node=False)


class TaskEnv(environment.Environment):
    """gymnax view of a task: obs [obs_size], actions in [-1, 1]^action_size, done after the horizon
    (auto-reset by gymnax's `step`). The task itself travels in `EnvParams`; this object is static."""

    def __init__(self, obs_size: int, action_size: int):
        self.obs_size, self.action_size = obs_size, action_size

    def reset_env(self, key, params: EnvParams):
        s = params.task.reset(key)
        return s.obs, s

    def step_env(self, key, state, action, params: EnvParams):
        nxt = params.task.step(state, action)  # the task's own key drives its noise
        return nxt.obs, nxt, nxt.reward, nxt.done, {}

    @property
    def num_actions(self) -> int:
        return self.action_size

    def action_space(self, params=None):
        return spaces.Box(-1.0, 1.0, (self.action_size,), jnp.float32)

    def observation_space(self, params=None):
        return spaces.Box(-jnp.inf, jnp.inf, (self.obs_size,), jnp.float32)


# -- the trainer ----------------------------------------------------------------------------------
@struct.dataclass
class RejaxState:
    """rejax's train state (one fixed class per trainer) and the numeric hyperparameters."""

    ts: Any
    hparams: dict  # lr, gamma, entropy: [] float32 (may differ per vmapped member)


def _make_algo(config, task):
    """The rejax algorithm object (static networks and schedule; its numbers come from `config`)."""
    env, params = TaskEnv(task.obs_size, task.action_size), EnvParams(task, task.horizon)
    period = config.blocks_per_eval * config.policy_every
    common = dict(env=env, env_params=params, learning_rate=config.rl_lr, gamma=config.rl_gamma,
                  normalize_observations=config.rl_normalize_obs, total_timesteps=config.env_steps,
                  eval_freq=period, skip_initial_evaluation=True)
    hidden = tuple(config.rl_hidden)
    replay = dict(num_envs=1, buffer_size=config.env_steps, batch_size=config.rl_batch,
                  fill_buffer=config.warmup_steps - 1)  # updates start with the first step after warm-up
    if config.method == "sac":
        return SAC.create(**common, **replay, hidden_layer_sizes=hidden)
    if config.method == "td3":  # rejax fixes td3's sizes at (64, 64): rebuild its networks
        algo = TD3.create(**common, **replay)
        return algo.replace(actor=DeterministicPolicy(task.action_size, (-1.0, 1.0), hidden, nn.swish),
                            critic=QNetwork(hidden, nn.swish))
    return PPO.create(**common, num_envs=1, num_steps=period, num_minibatches=config.rl_ppo_minibatches,
                      agent_kwargs=dict(hidden_layer_sizes=hidden))


@dataclasses.dataclass(frozen=True, eq=False)
class RejaxTrainer:
    """`make_rejax_trainer`'s result: `trainer(key)` trains one seed; `init` and `run_chunk` split it up."""

    config: Any
    task: Any
    algo: Any  # the rejax SAC / PPO / TD3 object
    ts_class: type  # rejax builds a new state class per init; we keep one so every state has one treedef
    tx: Any  # Adam with its learning rate in the optimiser state (traced, like the seeds)
    frozen: Any  # optax.set_to_zero(): sac's fixed alpha

    def __call__(self, key, hparams: dict | None = None):
        """Train one seed from `key`: (final RejaxState, metrics dict of [periods] arrays)."""
        return self.run_chunk(self.init(key, hparams), self.config.periods)

    def init(self, key, hparams: dict | None = None) -> RejaxState:
        """rejax's initial state, our optimisers and the uniformly random warm-up."""
        cfg, method = self.config, self.config.method
        unknown = sorted(set(hparams or {}) - set(HPARAMS[method]))
        if method == "sac" and cfg.rl_entropy is None and "entropy" in (hparams or {}):
            unknown.append("entropy (sac tunes alpha itself when rl_entropy is None)")
        if unknown:
            raise ValueError(f"{method} cannot take hyperparameters {unknown}; it takes {list(HPARAMS[method])} "
                             "(policy_lr: Adam learning rate, gamma: discount, entropy: sac's alpha / ppo's entropy "
                             "coefficient); set the rl_* config fields otherwise")
        hp = {"lr": cfg.rl_lr, "gamma": cfg.rl_gamma,
              "entropy": PPO_ENTROPY if method == "ppo" else (cfg.rl_entropy or 0.0)}
        names = {"policy_lr": "lr", "gamma": "gamma", "entropy": "entropy"}
        hp.update({names[k]: v for k, v in (hparams or {}).items()})
        hp = {k: jnp.asarray(v, jnp.float32) for k, v in hp.items()}
        raw = self.algo.init_state(key)
        ts = self.ts_class(**{f.name: getattr(raw, f.name) for f in dataclasses.fields(self.ts_class)})
        ts = jax.tree.map(_strong, ts)
        opt = lambda t: t.replace(tx=self.tx, opt_state=_with_lr(self.tx.init(t.params), hp["lr"]))
        ts = ts.replace(actor_ts=opt(ts.actor_ts), critic_ts=opt(ts.critic_ts))
        if method == "sac" and cfg.rl_entropy is not None:  # alpha fixed: log_alpha never moves
            log_alpha = {"log_alpha": jnp.log(hp["entropy"])}
            ts = ts.replace(alpha_ts=ts.alpha_ts.replace(params=log_alpha, tx=self.frozen,
                                                         opt_state=self.frozen.init(log_alpha)))
        elif method == "sac":
            ts = ts.replace(alpha_ts=opt(ts.alpha_ts))
        ts = jax.lax.scan(lambda t, _: (self._random_step(t), None), ts, None, length=cfg.warmup_steps)[0]
        if method == "ppo" and cfg.rl_normalize_obs:  # ppo keeps its last observation normalised
            ts = ts.replace(last_obs=self.algo.normalize_obs(ts.obs_rms_state, ts.last_obs))
        return RejaxState(ts=ts, hparams=hp)

    def run_chunk(self, state: RejaxState, periods: int):
        """Advance `periods` evaluation periods: (state, metrics dict of [periods] arrays)."""
        return jax.lax.scan(lambda s, _: self._period(s), state, None, length=periods)

    def evaluate(self, ts, key) -> jax.Array:
        """Undiscounted return of one episode of the deterministic policy, from task.reset(key)."""
        task = self.task

        def body(env, _):
            env = task.step(env, self._mode(ts, env.obs))
            return env, env.reward

        return jax.lax.scan(body, task.reset(key), None, length=task.horizon)[1].sum()

    # -- pieces -----------------------------------------------------------------------------------
    def _algo(self, hp):
        """The algorithm with this member's traced numbers."""
        if self.config.method == "ppo":
            return self.algo.replace(gamma=hp["gamma"], ent_coef=hp["entropy"])
        return self.algo.replace(gamma=hp["gamma"])

    def _mode(self, ts, obs):
        """The deterministic action [action_size] at one observation [obs_size]."""
        algo, params = self.algo, ts.actor_ts.params
        if self.config.rl_normalize_obs:
            obs = algo.normalize_obs(ts.obs_rms_state, obs)
        x = obs[None]
        if self.config.method == "td3":
            a = algo.actor.apply(params, x)
        else:
            mean = algo.actor.apply(params, x, method="_action_dist").mean()
            a = jnp.tanh(mean) if self.config.method == "sac" else jnp.clip(mean, -1.0, 1.0)
        return a[0]

    def _random_step(self, ts):
        """One warm-up step with uniformly random actions: replay (sac, td3), observation statistics."""
        algo, n = self.algo, self.algo.num_envs
        rng, k_act, k_env = jax.random.split(ts.rng, 3)
        a = jax.random.uniform(k_act, (n, self.task.action_size), minval=-1.0, maxval=1.0)
        obs, env_state, reward, done, _ = algo.vmap_step(jax.random.split(k_env, n), ts.env_state, a,
                                                         algo.env_params)
        if self.config.rl_normalize_obs:
            ts = ts.replace(obs_rms_state=algo.update_obs_rms(ts.obs_rms_state, obs))
        if self.config.method != "ppo":
            batch = Minibatch(obs=ts.last_obs, action=a, reward=reward, next_obs=obs, done=done)
            ts = ts.replace(replay_buffer=ts.replay_buffer.extend(batch))
        return ts.replace(rng=rng, env_state=env_state, last_obs=obs, last_done=done,
                          global_step=ts.global_step + n)

    def _period(self, state: RejaxState):
        cfg = self.config
        algo = self._algo(state.hparams)
        steps = cfg.blocks_per_eval * cfg.policy_every
        iterations = {"sac": steps, "td3": steps // 2, "ppo": 1}[cfg.method]
        ts = jax.lax.scan(lambda t, _: (algo.train_iteration(t), None), state.ts, None, length=iterations)[0]
        rng, k_eval = jax.random.split(ts.rng)
        ts = ts.replace(rng=rng)
        metrics = {"eval/return": self.evaluate(ts, k_eval).astype(jnp.float32),
                   "eval/env_steps": ts.global_step.astype(jnp.int32),
                   "skipped_updates": jnp.zeros((), jnp.int32)}
        return state.replace(ts=ts), metrics


def _strong(x):
    """A leaf as an array of a fixed (not weak) type, so that states restored from checkpoints match the
    compiled signature; rejax starts counters and statistics as Python numbers."""
    x = jnp.asarray(x)
    return x.astype(x.dtype)


def _with_lr(opt_state, lr):
    """An inject_hyperparams optimiser state with its learning rate replaced (a traced value)."""
    return opt_state._replace(hyperparams={**opt_state.hyperparams, "learning_rate": lr})


def make_rejax_trainer(config, task) -> RejaxTrainer:
    """The trainer-like object of `config.method` in ("sac", "ppo", "td3") on `task` (config validated)."""
    if config.method not in HPARAMS:
        raise ValueError(f"{config.method!r} is not a rejax method; valid: {', '.join(HPARAMS)}")
    algo = _make_algo(config, task)
    ts_class = type(jax.eval_shape(algo.init_state, jax.random.PRNGKey(0)))
    tx = optax.inject_hyperparams(optax.adam)(learning_rate=config.rl_lr)
    return RejaxTrainer(config, task, algo, ts_class, tx, optax.set_to_zero())
