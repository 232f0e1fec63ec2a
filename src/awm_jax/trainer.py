"""The whole online BPO training loop as one pure, compiled function: `make_train(config)`.

    trainer = make_train(Config(task="cancer_treatment", method="awm_transformer"))
    state, metrics = jax.jit(jax.vmap(trainer))(jax.random.split(key, 8))   # 8 seeds, one program

Schedule (static: nested scans of fixed length, no branch on a traced value):
    init(key):  parameters, optimisers, empty replay, then `warmup_steps` env steps acted by the
                initial stochastic policy (the paper; `warmup_policy="uniform"`: uniformly random
                actions); the warm-up data fixes the state normaliser for the whole run; then
                `model_pretrain_updates` world-model updates (0 by default). The world model's
                learning rate is constant (the paper) or, with `model_lr_decay` < 1, follows a cosine
                over all its updates down to that fraction of `model_lr`
    run_chunk(state, periods): `periods` x evaluation period =
        blocks_per_eval x block = [policy_every env steps with the current (stochastic) policy,
                                   policy_every / model_every world-model updates on replayed episodes,
                                   1 policy update (imagine from replayed start states, BPO loss) with
                                   the model-vs-true gradient diagnostics (and, for markov_svg, a
                                   critic update)]
        then one deterministic evaluation episode (tanh(mean) actions, undiscounted return).
Chunked runs equal one call: every random draw comes from the key carried in the state.

Every leaf of a vmapped `TrainState` and of the metrics has a leading seed axis; `awm_jax.seed_slice`
picks one seed. Metrics are dicts of arrays [periods] (per seed), namespaced `eval/`, `model/`,
`policy/`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import awm_envs
import jax
import jax.numpy as jnp
import optax
from flax import struct
from jax.flatten_util import ravel_pytree

from awm_jax.bpo import bpo_loss, svg_loss
from awm_jax.config import BASELINES, NUMERIC, Config
from awm_jax.critic import Critic, critic_loss, polyak
from awm_jax.diagnostics import open_loop_error
from awm_jax.policy import Policy
from awm_jax.replay import Replay
from awm_jax.spaces import Normalizer
from awm_jax.world_models import make_world_model
from awm_jax.world_models.true_task import TrueTask

__all__ = ["NUMERIC", "TrainState", "Trainer", "evaluation_period", "fit_normalizer", "make_train"]


@struct.dataclass
class TrainState:
    """Everything a run carries (fixed shapes; no functions): checkpoint it whole to resume."""

    model_params: Any
    model_opt: Any
    policy_params: Any
    policy_opt: Any
    critic_params: Any
    critic_target: Any
    critic_opt: Any
    replay: Replay
    env: awm_envs.TaskState
    norm: Normalizer
    hparams: dict  # the numeric hyperparameters (may differ per vmapped member)
    key: jax.Array
    env_steps: jax.Array
    skipped_updates: jax.Array  # updates dropped because their loss or gradient was not finite


def _adam(clip: bool = False):
    """Adam (after global-norm clipping when `clip`) with its hyperparameters in the optimiser state,
    so that they may be traced values (vmapped like seeds)."""
    if clip:
        return optax.inject_hyperparams(
            lambda learning_rate, grad_clip: optax.chain(optax.clip_by_global_norm(grad_clip), optax.adam(learning_rate)))
    return optax.inject_hyperparams(lambda learning_rate: optax.adam(learning_rate))


def model_lr_factor(count, total: int, final: float) -> jax.Array:
    """The world model's learning rate at update `count` (0-based) of `total`, as a fraction of model_lr:
    cosine from 1 to `final` at the last update."""
    frac = jnp.clip(count / max(total - 1, 1), 0.0, 1.0)
    return final + (1.0 - final) * 0.5 * (1.0 + jnp.cos(jnp.pi * frac))


def _finite(tree) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def _guarded_apply(loss, grads, params, opt_state, updates, new_opt_state):
    """Apply an update only if the loss, the gradient and the new parameters are all finite (per seed,
    by selection; no branching). Returns (params, opt_state, 1 if the update was skipped else 0)."""
    new_params = optax.apply_updates(params, updates)
    ok = jnp.isfinite(loss) & _finite(grads) & _finite(new_params)
    pick = lambda new, old: jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)
    return pick(new_params, params), pick(new_opt_state, opt_state), (~ok).astype(jnp.int32)


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


def evaluation_period(state, block, blocks: int, evaluate):
    """The shape every trainer's evaluation period shares: `blocks` x `block(state) -> (state, metrics)`
    in a scan, the block metrics averaged, then `evaluate(state, key) -> {name: value}` with a key split
    off the state's key, and the env-step and skipped-update counters."""
    state, block_metrics = jax.lax.scan(lambda s, _: block(s), state, None, length=blocks)
    key, k_eval = jax.random.split(state.key)
    state = state.replace(key=key)
    metrics = {k: v.mean() for k, v in block_metrics.items()}
    metrics.update(evaluate(state, k_eval))
    metrics["eval/env_steps"] = state.env_steps
    metrics["skipped_updates"] = state.skipped_updates
    return state, metrics


@dataclasses.dataclass(frozen=True, eq=False)
class Trainer:
    """`make_train`'s result: `trainer(key)` trains one seed; `init` and `run_chunk` split it up."""

    config: Config
    task: awm_envs.Task
    model: Any  # a WorldModel, or TrueTask for true_bptt
    policy: Policy
    critic: Critic | None

    # -- public pieces ----------------------------------------------------------------------------
    def __call__(self, key, hparams: dict | None = None):
        """Train one seed from `key`: (final TrainState, metrics dict of [periods] arrays)."""
        return self.run_chunk(self.init(key, hparams), self.config.periods)

    def init(self, key, hparams: dict | None = None) -> TrainState:
        """Parameters, optimisers and the warm-up: a state ready for `run_chunk`."""
        cfg, task = self.config, self.task
        hp = {k: jnp.asarray(v, jnp.float32) for k, v in cfg.numeric().items()}
        hp.update({k: jnp.asarray(v, jnp.float32) for k, v in (hparams or {}).items()})
        k_model, k_policy, k_critic, k_env, k_warm, k_pre, key = jax.random.split(key, 7)
        model_params = self.model.init(k_model) if cfg.model_kind else {}
        policy_params = self.policy.init(k_policy)
        critic_params = self.critic.init(k_critic) if self.critic else {}
        m_tx = _adam()(learning_rate=hp["model_lr"])
        p_tx = _adam(clip=True)(learning_rate=hp["policy_lr"], grad_clip=hp["grad_clip"])
        c_tx = _adam()(learning_rate=hp["critic_lr"])
        state = TrainState(
            model_params=model_params,
            model_opt=m_tx.init(model_params),
            policy_params=policy_params,
            policy_opt=p_tx.init(policy_params),
            critic_params=critic_params,
            critic_target=critic_params,
            critic_opt=c_tx.init(critic_params),
            replay=Replay.empty(cfg.replay_capacity(task.horizon), task.horizon, task.obs_size, task.action_size),
            env=task.reset(k_env),
            norm=Normalizer.identity(task.obs_size - 1),
            hparams=hp,
            key=key,
            env_steps=jnp.zeros((), jnp.int32),
            skipped_updates=jnp.zeros((), jnp.int32),
        )
        if cfg.warmup_policy == "uniform":
            act = lambda s, obs, k: jax.random.uniform(k, (task.action_size,), minval=-1.0, maxval=1.0)
        else:  # the initial policy, on the states seen so far
            act = lambda s, obs, k: self.policy.sample(
                s.policy_params, self.policy.features(running_normalizer(s.replay, s.env.t), obs), k)[0]
        state = jax.lax.scan(lambda s, k: (self._env_step(s, k, act), None), state,
                             jax.random.split(k_warm, cfg.warmup_steps))[0]
        state = state.replace(norm=fit_normalizer(state.replay))
        if cfg.model_pretrain_updates and cfg.model_kind is not None:
            state = jax.lax.scan(self._model_update, state, jax.random.split(k_pre, cfg.model_pretrain_updates))[0]
        return state

    def run_chunk(self, state: TrainState, periods: int):
        """Advance `periods` evaluation periods: (state, metrics dict of [periods] arrays)."""
        return jax.lax.scan(lambda s, _: self._period(s), state, None, length=periods)

    def evaluate(self, policy_params, norm: Normalizer, key) -> jax.Array:
        """Undiscounted return of one episode with the deterministic action tanh(mean)."""
        return self.eval_episode(policy_params, norm, key)[0]

    def eval_episode(self, policy_params, norm: Normalizer, key):
        """One evaluation episode (deterministic action tanh(mean)): (undiscounted return,
        observations [H + 1, obs_size], actions [H, m])."""
        task = self.task

        def body(env, _):
            a = self.policy.mode(policy_params, self.policy.features(norm, env.obs))
            nxt = task.step(env, a)
            return nxt, (nxt.reward, env.obs, a)

        last, (rewards, obs, actions) = jax.lax.scan(body, task.reset(key), None, length=task.horizon)
        return rewards.sum(), jnp.concatenate([obs, last.obs[None]]), actions

    def _evaluation(self, state: TrainState, key) -> dict:
        """The evaluation metrics of a period: the return and, with `model_error`, the world model's
        open-loop error (run z-scores, `diagnostics.open_loop_error`) on that episode
        (`model/error_eval`) and on the first warm-up episodes (`model/error_warmup`), and the largest
        |z-score| the episode's states reach (`eval/max_abs_z`: how far the policy leaves the warm-up data)."""
        ret, obs, actions = self.eval_episode(state.policy_params, state.norm, key)
        metrics = {"eval/return": ret}
        if self.config.model_error and self.config.model_kind is not None:
            err = lambda o, a: open_loop_error(self.model, state.model_params, self.model_norm(state), state.norm,
                                               o[:, :-1], a)
            metrics["model/error_eval"] = err(obs, actions)
            metrics["eval/max_abs_z"] = jnp.abs(state.norm.norm(obs[:, :-1])).max()
            W = self.warmup_episodes()
            if W:
                metrics["model/error_warmup"] = jax.vmap(err)(state.replay.obs[:W], state.replay.actions[:W]).mean()
        return metrics

    def warmup_episodes(self, most: int = 16) -> int:
        """How many warm-up episodes (replay slots 0, 1, ...) the model error is measured on: the
        complete warm-up episodes, at most `most`; 0 when the replay may overwrite them."""
        cfg, H = self.config, self.task.horizon
        total = -(-cfg.env_steps // H)
        return min(cfg.warmup_steps // H, most) if cfg.replay_capacity(H) > total else 0

    def model_norm(self, state: TrainState) -> Normalizer:
        """How model states are scaled for the world model: the run's normaliser (`model_scaling`
        "zscore") or the identity ("raw"). The policy's features always use `state.norm`."""
        if self.config.model_scaling == "raw":
            return Normalizer.identity(state.norm.mean.shape[-1], state.norm.mean.dtype)
        return state.norm

    # -- the pieces of a period -------------------------------------------------------------------
    def _policy_act(self, state, obs, key):
        return self.policy.sample(state.policy_params, self.policy.features(state.norm, obs), key)[0]

    def _env_step(self, state: TrainState, key, act_fn) -> TrainState:
        k_act, k_reset = jax.random.split(key)
        env = state.env
        a = act_fn(state, env.obs, k_act)
        nxt = self.task.step(env, a)
        replay = state.replay.add(env.t, env.obs, a, nxt.reward, nxt.obs, nxt.done)
        fresh = self.task.reset(k_reset)
        env = jax.tree.map(lambda r, n: jnp.where(nxt.done, r, n), fresh, nxt)
        return state.replace(env=env, replay=replay, env_steps=state.env_steps + 1)

    def _model_update(self, state: TrainState, key):
        obs, acts, _ = state.replay.sample(key, self.config.model_batch)
        s = self.model_norm(state).norm(obs[..., :-1])
        mask = jnp.ones(acts.shape[:2], s.dtype)
        loss, g = jax.value_and_grad(self.model.loss)(state.model_params, s, acts, mask)
        opt = state.model_opt
        if self.config.model_lr_decay != 1.0:  # the rate Adam uses lives in the optimiser state
            cfg = self.config
            lr = state.hparams["model_lr"] * model_lr_factor(opt.count, cfg.model_updates, cfg.model_lr_decay)
            opt = opt._replace(hyperparams={**opt.hyperparams, "learning_rate": lr})
        tx = _adam()(learning_rate=state.hparams["model_lr"])
        upd, opt = tx.update(g, opt, state.model_params)
        params, opt, skipped = _guarded_apply(loss, g, state.model_params, state.model_opt, upd, opt)
        return state.replace(model_params=params, model_opt=opt,
                             skipped_updates=state.skipped_updates + skipped), loss

    def _true_model(self, state, key):
        true = TrueTask.of(self.task)
        return true, true.params(self.model_norm(state), key)

    def _policy_update(self, state: TrainState, key):
        cfg, task, hp = self.config, self.task, state.hparams
        k_idx, k_t, k_loss, k_true, k_critic = jax.random.split(key, 5)
        R = cfg.imagined_rollouts
        idx = state.replay.sample_indices(k_idx, R)
        kw = dict(alpha=hp["entropy"], gamma=hp["gamma"], stop_state_grad=cfg.stop_state_grad, pnorm=state.norm)
        mnorm = self.model_norm(state)
        true_model, true_params = self._true_model(state, k_true)
        if cfg.method == "true_bptt":
            model, model_params = true_model, true_params
        else:
            model, model_params = self.model, state.model_params
        s0 = state.replay.obs[idx, 0, :-1]
        if cfg.method == "markov_svg":
            t = jax.random.randint(k_t, (R,), 0, task.horizon)
            s = state.replay.obs[idx, t, :-1]
            loss_fn = lambda p: svg_loss(p, self.policy, model, model_params, self.critic, state.critic_params, task,
                                         mnorm, s, t, k_loss, k=cfg.svg_k, **kw)
        else:
            loss_fn = lambda p: bpo_loss(p, self.policy, model, model_params, task, mnorm, s0, k_loss, **kw)
        (loss, info), g = jax.value_and_grad(loss_fn, has_aux=True)(state.policy_params)
        metrics = {"policy/loss": loss, "policy/imagined_return": info["imagined_return"],
                   "policy/entropy": info["entropy"], "policy/grad_norm": optax.tree.norm(g)}
        if cfg.gradient_cosine and cfg.method != "true_bptt":
            g_true = jax.grad(lambda p: bpo_loss(p, self.policy, true_model, true_params, task, mnorm, s0, k_loss,
                                                 **kw)[0])(state.policy_params)
            vm, vt = ravel_pytree(g)[0], ravel_pytree(g_true)[0]
            metrics["policy/true_grad_norm"] = jnp.linalg.norm(vt)
            metrics["policy/grad_cosine"] = jnp.dot(vm, vt) / (jnp.linalg.norm(vm) * jnp.linalg.norm(vt) + 1e-12)
            metrics["policy/grad_sq_error"] = jnp.sum((vm - vt) ** 2)
        tx = _adam(clip=True)(learning_rate=hp["policy_lr"], grad_clip=hp["grad_clip"])
        upd, opt = tx.update(g, state.policy_opt, state.policy_params)
        params, opt, skipped = _guarded_apply(loss, g, state.policy_params, state.policy_opt, upd, opt)
        state = state.replace(policy_params=params, policy_opt=opt, skipped_updates=state.skipped_updates + skipped)
        if cfg.method == "markov_svg":
            state, metrics["critic/loss"] = self._critic_update(state, s, t, k_critic)
        return state, metrics

    def _critic_update(self, state, s, t, key):
        cfg, hp = self.config, state.hparams
        loss, g = jax.value_and_grad(critic_loss)(
            state.critic_params, self.critic, state.critic_target, self.policy, state.policy_params, self.model,
            state.model_params, self.task, self.model_norm(state), s, t, key, k=cfg.svg_k, alpha=hp["entropy"],
            gamma=hp["gamma"], pnorm=state.norm)
        tx = _adam()(learning_rate=hp["critic_lr"])
        upd, opt = tx.update(g, state.critic_opt, state.critic_params)
        params, opt, skipped = _guarded_apply(loss, g, state.critic_params, state.critic_opt, upd, opt)
        target = polyak(state.critic_target, params, hp["target_tau"])
        return state.replace(critic_params=params, critic_opt=opt, critic_target=target,
                             skipped_updates=state.skipped_updates + skipped), loss

    def _block(self, state: TrainState):
        cfg = self.config
        key, k_env, k_model, k_policy = jax.random.split(state.key, 4)
        state = state.replace(key=key)
        state = jax.lax.scan(lambda s, k: (self._env_step(s, k, self._policy_act), None), state,
                             jax.random.split(k_env, cfg.policy_every))[0]
        metrics = {}
        if cfg.model_kind is not None:
            state, losses = jax.lax.scan(self._model_update, state,
                                         jax.random.split(k_model, cfg.policy_every // cfg.model_every))
            metrics["model/loss"] = losses.mean()
        state, pm = self._policy_update(state, k_policy)
        return state, {**metrics, **pm}

    def _period(self, state: TrainState):
        return evaluation_period(state, self._block, self.config.blocks_per_eval,
                                 self._evaluation)


def make_train(config: Config) -> Trainer:
    """Validate `config` and build the trainer (no tracing happens here).

    Returns a `Trainer`: `trainer(key) -> (TrainState, metrics)` with `key` one PRNG key ([2] uint32,
    `jax.random.PRNGKey(s)`) is pure and safe under `jax.jit(jax.vmap(...))` over keys [seeds, 2];
    metrics is {name: [periods]} per seed ([seeds, periods] vmapped: `eval/return`, `eval/env_steps`,
    `model/loss`, `policy/...`, `skipped_updates`) and every TrainState leaf gains a leading seed axis.
    `trainer.init(key, hparams=None)` and `trainer.run_chunk(state, periods)` split it into chunks with
    identical results; `hparams` {name: scalar} overrides the numeric fields of `trainer.NUMERIC`
    (vmap them like keys to sweep them in one program). For the model-free methods (sac, ppo, td3,
    online_dt) it returns their trainer with the same interface. Raises ValueError for unknown tasks or
    methods and for shapes or schedules that do not fit, naming the valid choices.
    """
    config.validate()
    task = awm_envs.make(config.task, **config.task_options())
    config.validate(task)
    if config.method in BASELINES:  # model-free: their own loops behind the same init/run_chunk interface
        from awm_jax.baselines import make_baseline

        return make_baseline(config, task)
    n, m, H = task.obs_size - 1, task.action_size, task.horizon
    kind = config.model_kind
    if kind is None:
        model = TrueTask.of(task)
    else:
        transformer = dict(width=config.width, layers=config.layers, heads=config.heads, decoder=config.mlp_hidden,
                           position_std=config.position_std)
        recurrent = dict(hidden=config.rnn_hidden, embed=config.mlp_hidden, decoder=config.mlp_hidden)
        sizes = {
            "awm_transformer": dict(transformer, token_mixer=config.token_mixer),
            "hwm_transformer": transformer,
            "markov_mlp": dict(hidden=config.mlp_hidden),
            "awm_ssm": dict(recurrent, layers=config.layers, ssm_state=config.ssm_state),
        }.get(kind, recurrent)
        model = make_world_model(kind, n, m, config.max_positions or H, **sizes)
        model.check_horizon(H)
    policy = Policy(n + 1, m, tuple(config.policy_hidden), horizon=H, parameterisation=config.parameterisation)
    critic = Critic(n + 1, tuple(config.mlp_hidden)) if config.method == "markov_svg" else None
    return Trainer(config, task, model, policy, critic)
