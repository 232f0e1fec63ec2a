"""sac, ppo and td3 from rejax behind the `Learner` interface: `make_sac`, `make_ppo`, `make_td3`.

Same env-step budget and evaluation grid as the BPO learner (awm_jax.core.methods.bpo_learner):
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

Traced hyperparameters (`hparams`, by the config's names): `policy_lr` -> Adam learning rate of every
network (default `rl_lr`), `gamma` -> discount (default `rl_gamma`), `entropy` -> sac's fixed alpha
(default `rl_entropy`; not traced when sac tunes alpha itself) or ppo's entropy coefficient (rejax's
0.01; td3 has none). Any other name raises.

rejax is imported only here.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import optax
from flax import linen as nn
from flax import struct
from gymnax.environments import environment, spaces
from rejax import PPO, SAC, TD3
from rejax.buffers import Minibatch
from rejax.networks import DeterministicPolicy, QNetwork

from awm_jax.core.learner import Learner
from awm_jax.core.pieces import episode, init_opt

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


# -- the learners ---------------------------------------------------------------------------------
@struct.dataclass
class RejaxState:
    """rejax's train state (one fixed class per learner) and the traced hyperparameters."""

    ts: Any
    hparams: dict  # policy_lr, gamma (, entropy): [] float32 (may differ per vmapped member)


@dataclasses.dataclass(frozen=True, eq=False)
class RejaxLearner(Learner):
    """A rejax algorithm as a `Learner`; subclasses say how it is built, acts and iterates."""

    algo: Any = None  # the rejax SAC / PPO / TD3 object
    ts_class: type = None  # rejax builds a new state class per init; we keep one so every state has one treedef
    tx: Any = None  # Adam with its learning rate in the optimiser state (traced, like the seeds)

    traced = ("policy_lr", "gamma", "entropy")
    hparam_fields = {"policy_lr": "rl_lr", "gamma": "rl_gamma", "entropy": "rl_entropy"}
    keeps_replay: ClassVar[bool] = True  # whether warm-up steps fill a replay (off-policy)

    # -- what each algorithm says -----------------------------------------------------------------
    @classmethod
    def create(cls, config, task, common: dict):
        """The rejax algorithm object from the config and the arguments every algorithm shares."""
        raise NotImplementedError

    def iterations(self, steps: int) -> int:
        """rejax training iterations in `steps` env steps."""
        return steps

    def action(self, params, x):
        """The deterministic action [1, m] of the actor at normalised observations x [1, obs_size]."""
        raise NotImplementedError

    def default_hparam(self, name: str) -> float:
        value = getattr(self.config, self.hparam_fields[name])  # rl_entropy None (rejax tunes alpha): 0
        return float(value or 0.0)

    def with_numbers(self, hp):
        """The algorithm with this member's traced numbers."""
        return self.algo.replace(gamma=hp["gamma"])

    def setup(self, ts, hp):
        """rejax's state with our optimisers (and the algorithm's own settings) before the warm-up."""
        return ts.replace(actor_ts=self._opt(ts.actor_ts, hp), critic_ts=self._opt(ts.critic_ts, hp))

    def after_warmup(self, ts):
        return ts

    # -- the learner ------------------------------------------------------------------------------
    def init(self, key, hparams: dict | None = None) -> RejaxState:
        """rejax's initial state, our optimisers and the uniformly random warm-up."""
        hp = self.hparams(hparams)
        raw = self.algo.init_state(key)
        ts = self.ts_class(**{f.name: getattr(raw, f.name) for f in dataclasses.fields(self.ts_class)})
        ts = self.setup(jax.tree.map(_strong, ts), hp)
        ts = jax.lax.scan(lambda t, _: (self._random_step(t), None), ts, None, length=self.config.warmup_steps)[0]
        return RejaxState(ts=self.after_warmup(ts), hparams=hp)

    def evaluate(self, state: RejaxState, key) -> jax.Array:
        """Undiscounted return of one episode of the deterministic policy, from task.reset(key)."""
        return self._evaluate(state.ts, key)

    def _evaluate(self, ts, key):
        return episode(self.task, key, lambda carry, env: (self._mode(ts, env.obs), carry))[0]

    def _opt(self, train_state, hp):
        return train_state.replace(tx=self.tx, opt_state=init_opt(self.tx, train_state.params,
                                                                  learning_rate=hp["policy_lr"]))

    def _mode(self, ts, obs):
        """The deterministic action [action_size] at one observation [obs_size]."""
        if self.config.rl_normalize_obs:
            obs = self.algo.normalize_obs(ts.obs_rms_state, obs)
        return self.action(ts.actor_ts.params, obs[None])[0]

    def _random_step(self, ts):
        """One warm-up step with uniformly random actions: replay (sac, td3), observation statistics."""
        algo, n = self.algo, self.algo.num_envs
        rng, k_act, k_env = jax.random.split(ts.rng, 3)
        a = jax.random.uniform(k_act, (n, self.task.action_size), minval=-1.0, maxval=1.0)
        obs, env_state, reward, done, _ = algo.vmap_step(jax.random.split(k_env, n), ts.env_state, a,
                                                         algo.env_params)
        if self.config.rl_normalize_obs:
            ts = ts.replace(obs_rms_state=algo.update_obs_rms(ts.obs_rms_state, obs))
        if self.keeps_replay:
            batch = Minibatch(obs=ts.last_obs, action=a, reward=reward, next_obs=obs, done=done)
            ts = ts.replace(replay_buffer=ts.replay_buffer.extend(batch))
        return ts.replace(rng=rng, env_state=env_state, last_obs=obs, last_done=done,
                          global_step=ts.global_step + n)

    def _period(self, state: RejaxState):
        cfg = self.config
        algo = self.with_numbers(state.hparams)
        iterations = self.iterations(cfg.blocks_per_eval * cfg.policy_every)
        ts = jax.lax.scan(lambda t, _: (algo.train_iteration(t), None), state.ts, None, length=iterations)[0]
        rng, k_eval = jax.random.split(ts.rng)
        ts = ts.replace(rng=rng)
        metrics = {"eval/return": self._evaluate(ts, k_eval).astype(jnp.float32),
                   "eval/env_steps": ts.global_step.astype(jnp.int32),
                   "skipped_updates": jnp.zeros((), jnp.int32)}
        return state.replace(ts=ts), metrics


@dataclasses.dataclass(frozen=True, eq=False)
class SacLearner(RejaxLearner):
    """sac: 1 env step + 1 update (actor, twin critics) per iteration; tanh(mean) when evaluating."""

    frozen: Any = dataclasses.field(default_factory=optax.set_to_zero)  # sac's fixed alpha

    @property
    def traced(self) -> tuple[str, ...]:  # alpha is traced only when fixed (rl_entropy not None)
        return ("policy_lr", "gamma") + ("entropy",) * (self.config.rl_entropy is not None)

    def hparams(self, overrides: dict | None = None) -> dict:
        if self.config.rl_entropy is None and "entropy" in (overrides or {}):
            raise ValueError("sac cannot take hyperparameter 'entropy' here: it tunes alpha itself when rl_entropy "
                             "is None (set rl_entropy to fix alpha and sweep it)")
        return super().hparams(overrides)

    @classmethod
    def create(cls, config, task, common):
        return SAC.create(**common, **_replay(config), hidden_layer_sizes=tuple(config.rl_hidden))

    def action(self, params, x):
        return jnp.tanh(self.algo.actor.apply(params, x, method="_action_dist").mean())

    def setup(self, ts, hp):
        ts = super().setup(ts, hp)
        if self.config.rl_entropy is None:  # rejax tunes alpha
            return ts.replace(alpha_ts=self._opt(ts.alpha_ts, hp))
        log_alpha = {"log_alpha": jnp.log(hp["entropy"])}  # alpha fixed: log_alpha never moves
        return ts.replace(alpha_ts=ts.alpha_ts.replace(params=log_alpha, tx=self.frozen,
                                                       opt_state=self.frozen.init(log_alpha)))


@dataclasses.dataclass(frozen=True, eq=False)
class Td3Learner(RejaxLearner):
    """td3: 2 env steps + 2 critic updates + 1 actor update per iteration; the actor when evaluating."""

    traced = ("policy_lr", "gamma")

    @classmethod
    def create(cls, config, task, common):  # rejax fixes td3's sizes at (64, 64): rebuild its networks
        algo, hidden = TD3.create(**common, **_replay(config)), tuple(config.rl_hidden)
        return algo.replace(actor=DeterministicPolicy(task.action_size, (-1.0, 1.0), hidden, nn.swish),
                            critic=QNetwork(hidden, nn.swish))

    def iterations(self, steps: int) -> int:
        return steps // 2

    def action(self, params, x):
        return self.algo.actor.apply(params, x)


@dataclasses.dataclass(frozen=True, eq=False)
class PpoLearner(RejaxLearner):
    """ppo: 1 rollout of the whole evaluation period (1 env), then its epochs of minibatch updates;
    clip(mean) when evaluating. On-policy: the warm-up only fills the observation statistics."""

    keeps_replay = False

    @classmethod
    def create(cls, config, task, common):
        return PPO.create(**common, num_envs=1, num_steps=common["eval_freq"],
                          num_minibatches=config.rl_ppo_minibatches,
                          agent_kwargs=dict(hidden_layer_sizes=tuple(config.rl_hidden)))

    def iterations(self, steps: int) -> int:
        return 1

    def default_hparam(self, name: str) -> float:
        return PPO_ENTROPY if name == "entropy" else super().default_hparam(name)

    def action(self, params, x):
        return jnp.clip(self.algo.actor.apply(params, x, method="_action_dist").mean(), -1.0, 1.0)

    def with_numbers(self, hp):
        return self.algo.replace(gamma=hp["gamma"], ent_coef=hp["entropy"])

    def after_warmup(self, ts):  # ppo keeps its last observation normalised
        if self.config.rl_normalize_obs:
            return ts.replace(last_obs=self.algo.normalize_obs(ts.obs_rms_state, ts.last_obs))
        return ts


def _strong(x):
    """A leaf as an array of a fixed (not weak) type, so that states restored from checkpoints match the
    compiled signature; rejax starts counters and statistics as Python numbers."""
    x = jnp.asarray(x)
    return x.astype(x.dtype)


def _make(cls, config, task) -> RejaxLearner:
    """The learner `cls` of a validated `config` on `task`: the rejax algorithm built from the config
    (static networks and schedule; its traced numbers come from the state)."""
    env, params = TaskEnv(task.obs_size, task.action_size), EnvParams(task, task.horizon)
    period = config.blocks_per_eval * config.policy_every
    common = dict(env=env, env_params=params, learning_rate=config.rl_lr, gamma=config.rl_gamma,
                  normalize_observations=config.rl_normalize_obs, total_timesteps=config.env_steps,
                  eval_freq=period, skip_initial_evaluation=True)
    algo = cls.create(config, task, common)
    ts_class = type(jax.eval_shape(algo.init_state, jax.random.PRNGKey(0)))
    tx = optax.inject_hyperparams(optax.adam)(learning_rate=config.rl_lr)
    return cls(config, task, algo, ts_class, tx)


def _replay(config) -> dict:
    """The replay arguments of the off-policy algorithms: every transition kept; updates start with the
    first step after the warm-up."""
    return dict(num_envs=1, buffer_size=config.env_steps, batch_size=config.rl_batch,
                fill_buffer=config.warmup_steps - 1)


def make_sac(config, task) -> SacLearner:
    return _make(SacLearner, config, task)


def make_ppo(config, task) -> PpoLearner:
    return _make(PpoLearner, config, task)


def make_td3(config, task) -> Td3Learner:
    return _make(Td3Learner, config, task)
