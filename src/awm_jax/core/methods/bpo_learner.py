"""Backpropagation-based policy optimisation through a world model, online, as one pure compiled
function: the learner of the world-model methods and of `true_bptt` (whose world model is the task
itself, `TrueTask`, given its parameters through the same model interface).

    learner = make_train(Config(task="cancer_treatment", method="awm_transformer"))
    state, metrics = jax.jit(jax.vmap(learner))(jax.random.split(key, 8))   # 8 seeds, one program

Schedule (static: nested scans of fixed length, no branch on a traced value):
    init(key):  parameters, optimisers, empty replay, then `warmup_steps` env steps acted by the
                initial stochastic policy (the paper; `warmup_policy="uniform"`: uniformly random
                actions); the warm-up data fixes the state normaliser for the whole run; then
                `model_pretrain_updates` world-model updates (0 by default). The world model's
                learning rate is constant (the paper) or, with `model_lr_decay` < 1, follows a cosine
                over all its updates down to that fraction of `model_lr`
    run_chunk(state, periods): `periods` x evaluation period =
        blocks_per_eval x block = [policy_every env steps with the current (stochastic) policy,
                                   policy_every / model_every world-model updates on replayed episodes
                                   (none when the model is the task itself),
                                   1 policy update (imagine from replayed start states, BPO loss) with
                                   the model-vs-true gradient diagnostics]
        then one deterministic evaluation episode (tanh(mean) actions, undiscounted return).
`markov_svg` (awm_jax.core.methods.svg) changes only the policy loss and adds a critic update.

Every leaf of a vmapped `TrainState` and of the metrics has a leading seed axis; `awm_jax.seed_slice`
picks one seed. Metrics are dicts of arrays [periods] (per seed), namespaced `eval/`, `model/`,
`policy/`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

import awm_envs
from awm_jax.core.diagnostics import gradient_agreement, open_loop_error
from awm_jax.core.learner import Learner
from awm_jax.core.methods.bpo import bpo_loss
from awm_jax.core.models import world_model_from_config
from awm_jax.core.models.base import WorldModel
from awm_jax.core.models.policy import Policy
from awm_jax.core.models.true_task import TrueTask
from awm_jax.core.pieces import (
    act_steps,
    adam,
    env_step,
    episode,
    evaluation_period,
    guarded_update,
    init_opt,
    set_hyperparams,
)
from awm_jax.core.replay import Replay, fit_normalizer, running_normalizer
from awm_jax.core.spaces import Normalizer, SymlogNormalizer


@struct.dataclass
class TrainState:
    """Everything a BPO run carries (fixed shapes; no functions): checkpoint it whole to resume."""

    model_params: Any
    model_opt: Any
    policy_params: Any
    policy_opt: Any
    replay: Replay
    env: awm_envs.TaskState
    norm: Normalizer
    hparams: dict  # the traced hyperparameters (may differ per vmapped member)
    key: jax.Array
    env_steps: jax.Array
    skipped_updates: jax.Array  # updates dropped because their loss or gradient was not finite


def model_lr_factor(count, total: int, final: float) -> jax.Array:
    """The world model's learning rate at update `count` (0-based) of `total`, as a fraction of model_lr:
    cosine from 1 to `final` at the last update."""
    frac = jnp.clip(count / max(total - 1, 1), 0.0, 1.0)
    return final + (1.0 - final) * 0.5 * (1.0 + jnp.cos(jnp.pi * frac))


@dataclasses.dataclass(frozen=True, eq=False)
class BPOLearner(Learner):
    """`make_bpo`'s result: `learner(key)` trains one seed; `init` and `run_chunk` split it up."""

    model: WorldModel  # a learned world model, or TrueTask (true_bptt)
    policy: Policy
    model_tx: Any = dataclasses.field(default_factory=adam)
    policy_tx: Any = dataclasses.field(default_factory=lambda: adam(clip=True))

    @property
    def traced(self) -> tuple[str, ...]:
        return ("model_lr",) * self.model.trainable + ("policy_lr", "entropy", "gamma", "grad_clip")

    # -- public pieces ----------------------------------------------------------------------------
    def init(self, key, hparams: dict | None = None) -> TrainState:
        """Parameters, optimisers and the warm-up: a state ready for `run_chunk`."""
        cfg, task = self.config, self.task
        hp = self.hparams(hparams)
        k_model, k_policy, k_extra, k_env, k_warm, k_pre, key = jax.random.split(key, 7)
        model_params = self.model.init(k_model) if self.model.trainable else {}
        policy_params = self.policy.init(k_policy)
        state = self.state_class(
            model_params=model_params,
            model_opt=init_opt(self.model_tx, model_params, learning_rate=hp.get("model_lr", 0.0)),
            policy_params=policy_params,
            policy_opt=init_opt(self.policy_tx, policy_params, learning_rate=hp["policy_lr"],
                                grad_clip=hp["grad_clip"]),
            replay=Replay.empty(cfg.replay_capacity(task.horizon), task.horizon, task.obs_size, task.action_size),
            env=task.reset(k_env),
            norm=Normalizer.identity(task.obs_size - 1),
            hparams=hp,
            key=key,
            env_steps=jnp.zeros((), jnp.int32),
            skipped_updates=jnp.zeros((), jnp.int32),
            **self._extra_state(k_extra, hp),
        )
        if cfg.warmup_policy == "uniform":
            act = lambda s, obs, k: jax.random.uniform(k, (task.action_size,), minval=-1.0, maxval=1.0)
        else:  # the initial policy, on the states seen so far
            act = lambda s, obs, k: self.policy.sample(
                s.policy_params, self.policy.features(running_normalizer(s.replay, s.env.t), obs), k)[0]
        state = act_steps(self._env_step, state, act, k_warm, cfg.warmup_steps)
        state = state.replace(norm=fit_normalizer(state.replay))
        if self.model.trainable and cfg.model_pretrain_updates:
            state = jax.lax.scan(self._model_update, state, jax.random.split(k_pre, cfg.model_pretrain_updates))[0]
        return state

    def evaluate(self, state, key) -> jax.Array:
        """Undiscounted return of one episode with the deterministic action tanh(mean)."""
        return self.eval_episode(state.policy_params, state.norm, key)[0]

    def eval_episode(self, policy_params, norm: Normalizer, key):
        """One evaluation episode (deterministic action tanh(mean)): (undiscounted return,
        observations [H + 1, obs_size], actions [H, m])."""
        act = lambda carry, env: (self.policy.mode(policy_params, self.policy.features(norm, env.obs)), carry)
        return episode(self.task, key, act)

    def warmup_episodes(self, most: int = 16) -> int:
        """How many warm-up episodes (replay slots 0, 1, ...) the model error is measured on: the
        complete warm-up episodes, at most `most`; 0 when the replay may overwrite them."""
        cfg, H = self.config, self.task.horizon
        total = -(-cfg.env_steps // H)
        return min(cfg.warmup_steps // H, most) if cfg.replay_capacity(H) > total else 0

    def model_norm(self, state: TrainState) -> Normalizer:
        """How model states are scaled for the world model (`Config.model_scaling_value`): the run's
        normaliser ("zscore", fitted on the warm-up), the identity ("raw"), a log scale around it ("symlog",
        `SymlogNormalizer`) or z-scores refitted to every completed episode in the replay so far
        ("running": the scale follows the data as the policy moves). The policy's features always use
        `state.norm`. true_bptt's model, the task itself, reads no scaling: the warm-up's z-scores."""
        scaling = self.config.model_scaling_value if self.model.trainable else "zscore"
        if scaling == "running":
            return fit_normalizer(state.replay)
        if scaling == "raw":
            return Normalizer.identity(state.norm.mean.shape[-1], state.norm.mean.dtype)
        if scaling == "symlog":
            return SymlogNormalizer.around(state.norm)
        return state.norm

    # -- what a variant of BPO changes (awm_jax.core.methods.svg) --------------------------------------
    state_class = TrainState

    def _extra_state(self, key, hp) -> dict:
        """Fields a subclass's state adds to TrainState (from its own key)."""
        return {}

    def _policy_loss(self, state, idx, key_t, key_loss, model_params, kw):
        """(loss function of the policy parameters -> (loss, info), context for `_after_policy_update`):
        the full-unroll BPO loss from the replayed episodes idx's start states."""
        s0 = state.replay.obs[idx, 0, :-1]
        return (lambda p: bpo_loss(p, self.policy, self.model, model_params, self.task, self.model_norm(state),
                                   s0, key_loss, **kw)), None

    def _after_policy_update(self, state, context, key):
        """(state, metrics) after the policy update: nothing here (markov_svg updates its critic)."""
        return state, {}

    # -- the pieces of a period -------------------------------------------------------------------
    def _evaluation(self, state: TrainState, key) -> dict:
        """The evaluation metrics of a period: the return and, with `model_error`, the world model's
        open-loop error (run z-scores, `diagnostics.open_loop_error`) on that episode
        (`model/error_eval`) and on the first warm-up episodes (`model/error_warmup`), and the largest
        |z-score| the episode's states reach (`eval/max_abs_z`: how far the policy leaves the warm-up data)."""
        ret, obs, actions = self.eval_episode(state.policy_params, state.norm, key)
        metrics = {"eval/return": ret}
        if self.model.trainable and self.config.model_error:
            err = lambda o, a: open_loop_error(self.model, state.model_params, self.model_norm(state), state.norm,
                                               o[:, :-1], a)
            metrics["model/error_eval"] = err(obs, actions)
            metrics["eval/max_abs_z"] = jnp.abs(state.norm.norm(obs[:, :-1])).max()
            W = self.warmup_episodes()
            if W:
                metrics["model/error_warmup"] = jax.vmap(err)(state.replay.obs[:W], state.replay.actions[:W]).mean()
        return metrics

    def _policy_act(self, state, obs, key):
        return self.policy.sample(state.policy_params, self.policy.features(state.norm, obs), key)[0]

    def _env_step(self, state: TrainState, key, act_fn) -> TrainState:
        k_act, k_reset = jax.random.split(key)
        _, env, replay = env_step(self.task, state.env, state.replay, act_fn(state, state.env.obs, k_act), k_reset)
        return state.replace(env=env, replay=replay, env_steps=state.env_steps + 1)

    def _model_update(self, state: TrainState, key):
        obs, acts, _ = state.replay.sample(key, self.config.model_batch, self.config.replay_half_life)
        s = self.model_norm(state).norm(obs[..., :-1])
        mask = jnp.ones(acts.shape[:2], s.dtype)
        loss, g = jax.value_and_grad(self.model.loss)(state.model_params, s, acts, mask)
        opt = state.model_opt
        if self.config.model_lr_decay != 1.0:  # the rate Adam uses lives in the optimiser state
            cfg = self.config
            lr = state.hparams["model_lr"] * model_lr_factor(opt.count, cfg.model_updates, cfg.model_lr_decay)
            opt = set_hyperparams(opt, learning_rate=lr)
        params, opt, skipped = guarded_update(self.model_tx, loss, g, state.model_params, opt)
        return state.replace(model_params=params, model_opt=opt,
                             skipped_updates=state.skipped_updates + skipped), loss

    def _policy_update(self, state: TrainState, key):
        cfg, task, hp = self.config, self.task, state.hparams
        k_idx, k_t, k_loss, k_true, k_extra = jax.random.split(key, 5)
        idx = state.replay.sample_indices(k_idx, cfg.imagined_rollouts)
        kw = dict(alpha=hp["entropy"], gamma=hp["gamma"], stop_state_grad=cfg.stop_state_grad, pnorm=state.norm)
        mnorm = self.model_norm(state)
        model_params = self.model.bind(state.model_params, mnorm, k_true)
        loss_fn, context = self._policy_loss(state, idx, k_t, k_loss, model_params, kw)
        (loss, info), g = jax.value_and_grad(loss_fn, has_aux=True)(state.policy_params)
        metrics = {"policy/loss": loss, "policy/imagined_return": info["imagined_return"],
                   "policy/entropy": info["entropy"], "policy/grad_norm": optax.tree.norm(g)}
        if cfg.gradient_cosine and self.model.trainable:  # the true gradient on the same rollouts
            true = TrueTask.of(task)
            s0 = state.replay.obs[idx, 0, :-1]
            g_true = jax.grad(lambda p: bpo_loss(p, self.policy, true, true.bind({}, mnorm, k_true), task, mnorm, s0,
                                                 k_loss, **kw)[0])(state.policy_params)
            agree = gradient_agreement(g, g_true)
            metrics.update({"policy/true_grad_norm": agree["true_grad_norm"], "policy/grad_cosine": agree["cosine"],
                            "policy/grad_sq_error": agree["sq_error"]})
        params, opt, skipped = guarded_update(self.policy_tx, loss, g, state.policy_params, state.policy_opt)
        state = state.replace(policy_params=params, policy_opt=opt, skipped_updates=state.skipped_updates + skipped)
        state, extra = self._after_policy_update(state, context, k_extra)
        return state, {**metrics, **extra}

    def _block(self, state: TrainState):
        cfg = self.config
        key, k_env, k_model, k_policy = jax.random.split(state.key, 4)
        state = state.replace(key=key)
        state = act_steps(self._env_step, state, self._policy_act, k_env, cfg.policy_every)
        metrics = {}
        if self.model.trainable:
            state, losses = jax.lax.scan(self._model_update, state,
                                         jax.random.split(k_model, cfg.policy_every // cfg.model_every))
            metrics["model/loss"] = losses.mean()
        state, pm = self._policy_update(state, k_policy)
        return state, {**metrics, **pm}

    def _period(self, state: TrainState):
        return evaluation_period(state, self._block, self.config.blocks_per_eval, self._evaluation)


def world_model(config, task) -> WorldModel:
    """The world model of `config.model_kind` for `task`, sized by the config; the task itself
    (`TrueTask`) for "true_task"."""
    if config.model_kind == "true_task":
        return TrueTask.of(task)
    model = world_model_from_config(config.model_kind, config, task.obs_size - 1, task.action_size,
                                    config.max_positions or task.horizon)
    model.check_horizon(task.horizon)
    return model


def make_policy(config, task) -> Policy:
    return Policy(task.obs_size, task.action_size, tuple(config.policy_hidden), horizon=task.horizon,
                  parameterisation=config.parameterisation)


def make_bpo(config, task, cls=BPOLearner, **extra) -> BPOLearner:
    """The BPO learner of a validated `config` on `task` (no tracing happens here)."""
    return cls(config, task, world_model(config, task), make_policy(config, task), **extra)
