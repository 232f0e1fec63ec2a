"""Online Decision Transformer (Zheng, Zhang and Grover, ICML 2022) behind the `Learner` interface.

A return-conditioned causal transformer acts with a tanh-Gaussian head. One token per step:

    token_t = [g_t / c, normalised state s_t, a_{t-1}]   (a_{-1} = 0)            # [1 + n + m]

so the output at position t sees g_{<=t}, s_{<=t}, a_{<t}: the information of the state token of the
three-tokens-per-step DT, in a third of the sequence length. g_t is a return-to-go: in training the
hindsight one (the sum of the episode's rewards from t on), when acting a target decremented by the
rewards received. c is a constant per seed: the largest |return| of the warm-up episodes. A whole
episode is the context (positions 0..H-1), so no windowing is needed and nothing is truncated.

Loss (ODT): -mean log pi(a_t | context) - T * entropy, the entropy estimated with one reparameterised
sample per position; the temperature T = exp(log_temp) starts at `config.entropy` and, with
`dt_learn_temperature`, follows ODT's Lagrangian: minimise T * (entropy - target_entropy) over log T
with the entropy held fixed (held fixed otherwise). Adam (`dt_lr`, global-norm clip `grad_clip`) for the
transformer, Adam (`dt_temperature_lr`) for the temperature.

Targets: with R* the best episode return seen (a running maximum, warm-up included) and R0 the mean
warm-up (random-action) return, an episode is conditioned on R* + k (R* - R0), k = dt_online_target
when exploring (stochastic actions) and dt_eval_target when evaluating (tanh(mean) actions). Unlike
ODT's "2 x expert return" this needs no per-task constant and works for negative returns. The default
k = 0.2 aims a little above the best return seen. Measured on cancer_treatment at the paper schedule,
4 seeds: with k = 1 the DT extrapolates badly to targets far above its data, the exploring episodes
get worse, the replay fills with them and the final evaluation return is -29.1 +- 4.1 (after a peak
near -22 at about 2,500 steps); with k = 0.2 it is -24.4 +- 3.0 (two seeds stay near -21.5, two fall
from about -22 to -26 and -29 after about 3,500 steps, when the best return stops improving).

Acting recomputes the full causal pass over the current episode's H tokens at every step (row t read;
later rows are masked): exact with the current parameters, which change mid-episode, where a
key/value cache would hold keys computed with stale ones; its cost (H tokens per env step) is about 1%
of one block's updates (policy_every / model_every updates of model_batch x H tokens, backward too).

Schedule (the BPO trainer's, so `eval/env_steps` matches it): warm-up of `warmup_steps` uniformly
random env steps (the offline data ODT would pretrain on; it also fits the state normaliser, c and R0),
then `periods` x [blocks_per_eval x (policy_every env steps with the stochastic policy, then
policy_every // model_every DT updates on model_batch replayed whole episodes), one deterministic
evaluation episode].
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

import awm_envs
from awm_jax.core.learner import Learner
from awm_jax.core.models.networks import CausalTransformer
from awm_jax.core.models.policy import LOG_STD_MAX, LOG_STD_MIN, Policy
from awm_jax.core.pieces import act_steps, adam, env_step, episode, evaluation_period, guarded_update, init_opt
from awm_jax.core.replay import Replay, fit_normalizer
from awm_jax.core.spaces import Normalizer, model_state

_MID, _HALF = (LOG_STD_MAX + LOG_STD_MIN) / 2, (LOG_STD_MAX - LOG_STD_MIN) / 2
_ACTION_EPS = 1e-6  # replayed actions are clipped to [-1 + eps, 1 - eps] before atanh


class DTNet(nn.Module):
    """Causal transformer over step tokens [..., T, d] -> tanh-Gaussian (mean, log_std) [..., T, m]."""

    action_size: int
    width: int = 48
    layers: int = 2
    heads: int = 3
    max_len: int = 100

    @nn.compact
    def __call__(self, tokens):
        h = CausalTransformer(self.width, self.layers, self.heads, self.max_len, name="backbone")(tokens)
        init = nn.initializers.variance_scaling(0.01, "fan_avg", "uniform")
        mu, raw = jnp.split(nn.Dense(2 * self.action_size, kernel_init=init, name="head")(h), 2, axis=-1)
        # log_std squashed smoothly into [LOG_STD_MIN, LOG_STD_MAX]; raw = 0 gives std 1 (as Policy)
        return mu, _MID + _HALF * jnp.tanh(raw + jnp.arctanh(-_MID / _HALF))


def tanh_gaussian_log_prob(mu, log_std, a):
    """log-density [...] of actions a [..., m] in (-1, 1) under tanh(N(mu, exp(log_std)^2))."""
    a = jnp.clip(a, -1 + _ACTION_EPS, 1 - _ACTION_EPS)
    u = jnp.arctanh(a)
    z = (u - mu) * jnp.exp(-log_std)
    logp_u = jnp.sum(-0.5 * z**2 - log_std - 0.5 * jnp.log(2 * jnp.pi), axis=-1)
    return logp_u - jnp.sum(jnp.log1p(-a) + jnp.log1p(a), axis=-1)  # log(1 - a^2), exact near |a| = 1


def returns_to_go(rewards):
    """Hindsight returns-to-go [..., H] of rewards [..., H]: g_t = sum_{k >= t} r_k."""
    return jnp.flip(jnp.cumsum(jnp.flip(rewards, -1), -1), -1)


def make_tokens(norm: Normalizer, scale, rtg, obs, actions):
    """Step tokens [..., T, 1 + n + m] from returns-to-go [..., T], observations [..., T, n + 1] and
    the actions taken at those steps [..., T, m] (token t carries a_{t-1}, zero at t = 0)."""
    prev = jnp.concatenate([jnp.zeros_like(actions[..., :1, :]), actions[..., :-1, :]], axis=-2)
    return jnp.concatenate([(rtg / scale)[..., None], norm.norm(model_state(obs)), prev], axis=-1)


def dt_loss(params, temperature, net: DTNet, tokens, actions, key):
    """ODT's policy loss on tokens [B, T, d] and replayed actions [B, T, m]: -mean log-likelihood -
    temperature * entropy (one reparameterised sample per position estimates the entropy): (loss, info)."""
    mu, log_std = net.apply(params, tokens)
    nll = -jnp.mean(tanh_gaussian_log_prob(mu, log_std, actions))
    eps = jax.random.normal(key, mu.shape, mu.dtype)
    entropy = -jnp.mean(Policy.squash(mu, log_std, eps)[1])
    return nll - temperature * entropy, {"dt/nll": nll, "dt/entropy": entropy}


def temperature_grad(log_temp, entropy, target_entropy):
    """d/d log_temp of ODT's temperature loss exp(log_temp) * (entropy - target) (entropy held fixed)."""
    return jnp.exp(log_temp) * (entropy - target_entropy)


@struct.dataclass
class ODTState:
    """Everything an online-DT run carries (fixed shapes, no functions)."""

    params: Any
    opt: Any
    log_temp: jax.Array  # [] log of the entropy temperature
    temp_opt: Any
    replay: Replay
    env: awm_envs.TaskState
    norm: Normalizer  # fitted on the warm-up data, as TrainState.norm
    rtg_scale: jax.Array  # [] c: returns-to-go enter the network as g / c
    ref_return: jax.Array  # [] R0: mean warm-up return
    best_return: jax.Array  # [] R*: best completed episode return so far
    ep_return: jax.Array  # [] return of the current episode so far
    ctx_rtg: jax.Array  # [H] target returns-to-go the current episode was conditioned on
    hparams: dict
    key: jax.Array
    env_steps: jax.Array
    skipped_updates: jax.Array


@dataclasses.dataclass(frozen=True, eq=False)
class OnlineDT(Learner):
    """`make_online_dt`'s result (a `Learner`)."""

    net: DTNet = None
    tx: Any = dataclasses.field(default_factory=lambda: adam(clip=True))  # the transformer's
    temp_tx: Any = dataclasses.field(default_factory=adam)  # the temperature's

    traced = ("dt_temperature_lr", "entropy", "grad_clip", "dt_lr", "dt_online_target", "dt_eval_target")

    # -- public pieces ----------------------------------------------------------------------------
    def init(self, key, hparams: dict | None = None) -> ODTState:
        """Parameters, optimisers and the random-action warm-up: a state ready for `run_chunk`."""
        cfg, task, H = self.config, self.task, self.task.horizon
        hp = self.hparams(hparams)
        k_net, k_env, k_warm, key = jax.random.split(key, 4)
        params = self.net.init(k_net, jnp.zeros((H, self.token_size)))
        log_temp = jnp.log(hp["entropy"])
        state = ODTState(
            params=params,
            opt=init_opt(self.tx, params, learning_rate=hp["dt_lr"], grad_clip=hp["grad_clip"]),
            log_temp=log_temp,
            temp_opt=init_opt(self.temp_tx, log_temp, learning_rate=hp["dt_temperature_lr"]),
            replay=Replay.empty(cfg.replay_capacity(H), H, task.obs_size, task.action_size),
            env=task.reset(k_env),
            norm=Normalizer.identity(task.obs_size - 1),
            rtg_scale=jnp.ones(()),
            ref_return=jnp.zeros(()),
            best_return=jnp.full((), -jnp.inf),
            ep_return=jnp.zeros(()),
            ctx_rtg=jnp.zeros((H,)),
            hparams=hp,
            key=key,
            env_steps=jnp.zeros((), jnp.int32),
            skipped_updates=jnp.zeros((), jnp.int32),
        )
        uniform = lambda s, k: jax.random.uniform(k, (task.action_size,), minval=-1.0, maxval=1.0)
        state = act_steps(self._env_step, state, uniform, k_warm, cfg.warmup_steps)
        # the warm-up fixes the normaliser, c and R0 (validation guarantees one completed episode)
        replay = state.replay
        valid = replay.completed()
        returns = replay.rewards.sum(-1)
        ref = jnp.sum(jnp.where(valid, returns, 0.0)) / jnp.maximum(replay.count, 1)
        scale = jnp.max(jnp.where(valid, jnp.abs(returns), 0.0))
        state = state.replace(norm=fit_normalizer(replay), ref_return=ref,
                              rtg_scale=jnp.where(scale > 0, scale, 1.0))
        # the episode in progress is conditioned on the online target from its start
        g0 = self.target(state, state.hparams["dt_online_target"])
        received = jnp.concatenate([jnp.zeros(1), jnp.cumsum(replay.rewards[replay.ep])[:-1]])
        return state.replace(ctx_rtg=g0 - received)

    def target(self, state: ODTState, k) -> jax.Array:
        """The return an episode is conditioned on: R* + k (R* - R0)."""
        return state.best_return + k * (state.best_return - state.ref_return)

    def evaluate(self, state: ODTState, key) -> jax.Array:
        """Undiscounted return of one episode with tanh(mean) actions, conditioned on the eval target."""
        task, H = self.task, self.task.horizon

        def act(carry, env):  # the context so far and the target return-to-go, less the last reward
            (obs, acts, rtg), g = carry
            t, g = env.t, g - env.reward
            obs, rtg = obs.at[t].set(env.obs), rtg.at[t].set(g)
            mu, _ = self._dist(state.params, state, rtg, obs, acts, t)
            a = jnp.tanh(mu)
            return a, ((obs, acts.at[t].set(a), rtg), g)

        ctx = (jnp.zeros((H, task.obs_size)), jnp.zeros((H, task.action_size)), jnp.zeros((H,)))
        return episode(task, key, act, (ctx, self.target(state, state.hparams["dt_eval_target"])))[0]

    # -- the pieces of a period -------------------------------------------------------------------
    @property
    def token_size(self) -> int:
        return self.task.obs_size + self.task.action_size  # 1 (return) + n (state) + m (previous action)

    @property
    def target_entropy(self) -> float:
        te = self.config.dt_target_entropy
        return -float(self.task.action_size) if te is None else float(te)

    def _dist(self, params, state: ODTState, rtg, obs, acts, t):
        """(mean, log_std) [m] of the action at step t given the episode's context arrays [H, ...]."""
        mu, log_std = self.net.apply(params, make_tokens(state.norm, state.rtg_scale, rtg, obs, acts))
        return mu[t], log_std[t]

    def _act(self, state: ODTState, key):
        """A stochastic action at the current step, conditioned on the current episode so far."""
        r, t = state.replay, state.env.t
        obs = r.obs[r.ep, :-1].at[t].set(state.env.obs)  # the slot holds steps < t of this episode
        mu, log_std = self._dist(state.params, state, state.ctx_rtg, obs, r.actions[r.ep], t)
        return Policy.squash(mu, log_std, jax.random.normal(key, mu.shape, mu.dtype))[0]

    def _env_step(self, state: ODTState, key, act_fn) -> ODTState:
        k_act, k_reset = jax.random.split(key)
        env = state.env
        nxt, after, replay = env_step(self.task, env, state.replay, act_fn(state, k_act), k_reset)
        ep_return = state.ep_return + nxt.reward
        best = jnp.where(nxt.done, jnp.maximum(state.best_return, ep_return), state.best_return)
        state = state.replace(replay=replay, best_return=best, env_steps=state.env_steps + 1)
        # next step's target return-to-go: decremented by the reward, or a fresh target on reset
        fresh_ctx = jnp.zeros_like(state.ctx_rtg).at[0].set(self.target(state, state.hparams["dt_online_target"]))
        ctx = jnp.where(nxt.done, fresh_ctx, state.ctx_rtg.at[nxt.t % self.task.horizon].set(
            state.ctx_rtg[env.t] - nxt.reward))
        return state.replace(env=after, ep_return=jnp.where(nxt.done, 0.0, ep_return), ctx_rtg=ctx)

    def _update(self, state: ODTState, key):
        """One DT gradient step on model_batch replayed whole episodes (hindsight returns-to-go)."""
        k_batch, k_ent = jax.random.split(key)
        obs, acts, rews = state.replay.sample(k_batch, self.config.model_batch)
        tokens = make_tokens(state.norm, state.rtg_scale, returns_to_go(rews), obs[:, :-1], acts)
        temp = jnp.exp(state.log_temp)
        (loss, info), g = jax.value_and_grad(dt_loss, has_aux=True)(state.params, temp, self.net, tokens, acts, k_ent)
        params, opt, skipped = guarded_update(self.tx, loss, g, state.params, state.opt)
        state = state.replace(params=params, opt=opt)
        if self.config.dt_learn_temperature:
            g_temp = temperature_grad(state.log_temp, info["dt/entropy"], self.target_entropy)
            log_temp, t_opt, t_skipped = guarded_update(self.temp_tx, g_temp, g_temp, state.log_temp, state.temp_opt)
            state = state.replace(log_temp=log_temp, temp_opt=t_opt)
            skipped = jnp.maximum(skipped, t_skipped)
        info = {"dt/loss": loss, "dt/grad_norm": optax.tree.norm(g), "dt/temperature": temp, **info}
        return state.replace(skipped_updates=state.skipped_updates + skipped), info

    def _block(self, state: ODTState):
        cfg = self.config
        key, k_env, k_upd = jax.random.split(state.key, 3)
        state = state.replace(key=key)
        state = act_steps(self._env_step, state, self._act, k_env, cfg.policy_every)
        state, info = jax.lax.scan(self._update, state, jax.random.split(k_upd, cfg.policy_every // cfg.model_every))
        return state, {k: v.mean() for k, v in info.items()}

    def _period(self, state: ODTState):
        def evaluate(state, k_eval):
            r = state.replay
            return {"dt/best_return": state.best_return,
                    "dt/episode_return": r.rewards[(r.ep - 1) % r.capacity].sum(),  # the last completed episode
                    "eval/target_return": self.target(state, state.hparams["dt_eval_target"]),
                    "eval/return": self.evaluate(state, k_eval)}

        return evaluation_period(state, self._block, self.config.blocks_per_eval, evaluate)


def make_online_dt(config, task: awm_envs.Task) -> OnlineDT:
    """The online DT learner of a validated `config` on `task` (no tracing happens here)."""
    H = task.horizon
    return OnlineDT(config, task, DTNet(task.action_size, config.width, config.layers, config.heads,
                                        config.max_positions or H))
